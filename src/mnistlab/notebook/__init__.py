"""The lab's hand-in: a Jupyter notebook that follows the lab part by part, executed headless,
with every output and figure in the file and text cells that report the measured results.

    nb = build(settings("mnist", quick=True))  # the cells of lab.py, set up
    nb = fill(execute(nb, folder, progress=print))  # run every cell; write the text
    write(nb, path); write_html(nb, path.with_suffix(".html"))

The notebook's cells are a Python file, `lab.py` beside this module, in jupytext's
percent format, so the linters and the type checker read its code like the package's. `build`
reads it and changes only three things: the cell tagged `parameters` gets the settings' values
(papermill's convention: one cell at the top holds everything that differs between notebooks),
`{field}`s in its text cells get the title, the experiment's file name and the like, and the
text cell for a variant becomes one cell per variant.

Two passes keep the text honest: code cells hand the values the text needs to `keep(...)`,
which shows them in the cell's output (a `text/plain` line for people and a JSON bundle of type
`VALUES_MIME` for mnistlab); after execution, `fill` writes each text cell from those outputs
alone. No number in a text cell is typed in. Each `keep(...)` is a cell of its own with its
input hidden (`jupyter.source_hidden`, which JupyterLab honours, and the `remove-input` tag,
which the HTML export honours) rather than a line in the lab's cells: the reader sees the lab's
code and the values line its text comes from, not the plumbing; its output stays visible so
that every number in the text can be checked against the cell above it. `keep` and `show` live
in `notebook.kernel`, imported in the setup cell with one line.

The kernel is this Python (`sys.executable`), named by a kernel spec in a temporary folder,
not whichever `python3` kernel the machine has registered: the notebook runs with the mnistlab
that wrote it. `progress` hears of each part (the cells under a `## ` heading) as it finishes.

The student's notebook, `build_student(dataset)` (`mnistlab notebook --student`), is another
percent-format file beside it, `student.py`: the same parts with the teacher's code for the
data, its shapes and the first image, and blanks for the student elsewhere. It is written, not
run; `mnistlab check` (`notebook.check`) reads what a student hands in.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_markdown_cell

from mnistlab.backend import default as default_backend
from mnistlab.data import DATASETS, load_sample
from mnistlab.errors import MnistlabError
from mnistlab.experiments import Experiment, find, names
from mnistlab.experiments.plan import source
from mnistlab.files import check_writable, write_bytes
from mnistlab.limits import Limits
from mnistlab.notebook.kernel import VALUES_MIME
from mnistlab.results import describe
from mnistlab.text import plural
from mnistlab.version import __version__

CELLS = "lab.py"  # the notebook's cells, beside this module
STUDENT_CELLS = "student.py"  # the student's notebook's cells
ANSWER = "Your answer here."  # in italics, where a student's notebook waits for an answer
KERNEL_NAME = "mnistlab-python"
CELL_TIMEOUT = 7200  # seconds for one cell: the full experiments take about 6 minutes here
STARTUP_TIMEOUT = 180  # seconds for the kernel to start, on a busy 2-core machine
QUICK_SEEDS = 2
QUICK_EPOCHS_DIVISOR = 5  # the lab's 5 epochs become 1, the 10-epoch variants 2
QUICK_EPOCHS = 2  # the lab's own training and the bonus in the quick notebook
PENDING = "*(Written from the results when the notebook has run.)*"
TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
LAB_TARGET = 0.98  # the lab asks for ideas that beat 98%
HIDDEN = "remove-input"  # the tag of the cells whose code the HTML export leaves out


@dataclass(frozen=True)
class Settings:
    dataset: str = "mnist"
    experiment: str = "lab"  # a shipped experiment's name, or an experiment file's full path
    quick: bool = False
    sample: Path | None = None  # a folder of mnist/ and fashion-mnist/ samples, unverified
    seed: int = 1
    work: str = "lab-files"  # folder beside the notebook for its figures and run folders

    @property
    def experiment_file(self) -> str:
        """The experiment's file name, for the reader: `lab.toml`, `mine.toml`."""
        return source(self.experiment)[1]

    def plan(self) -> Experiment:
        plan = find(self.experiment)
        if plan.dataset != self.dataset:
            raise MnistlabError(
                f"{self.experiment_file} is an experiment on {plan.dataset}, "
                f"the notebook is on {self.dataset}",
                "pass --experiments with a file for the same data set",
            )
        backends = {v.spec.backend for v in plan.variants}
        if len(backends) > 1:
            raise MnistlabError(
                f"{self.experiment_file}: variants use several backends",
                "set one backend in [base]: a notebook's kernel runs one",
            )
        return plan.shortened(QUICK_SEEDS, QUICK_EPOCHS_DIVISOR) if self.quick else plan

    @property
    def epochs(self) -> int:
        return QUICK_EPOCHS if self.quick else 5

    @property
    def bonus(self) -> str:
        """The lab's bonus is Fashion-MNIST; on Fashion-MNIST it is MNIST, for comparison."""
        return "fashion-mnist" if self.dataset == "mnist" else "mnist"


def settings(
    dataset: str = "mnist",
    experiments: str | Path | None = None,
    quick: bool = False,
    sample: Path | None = None,
    out: Path = Path("lab.ipynb"),
) -> Settings:
    """The settings of a notebook at `out`, checked before any kernel starts: `experiments` is
    a shipped experiment's name or a TOML file (default: the lab's grid for the data set)."""
    check_out(out)
    experiment = str(experiments or ("lab" if dataset == "mnist" else "fashion"))
    source(experiment)  # a clear error for a file that cannot be read, named as given
    if experiment not in names():  # a file: the kernel runs beside the notebook, elsewhere
        experiment = str(Path(experiment).resolve())
    chosen = Settings(
        dataset=dataset,
        experiment=experiment,
        quick=quick,
        sample=Path(sample).resolve() if sample else None,
        work=f"{out.stem}-files",
    )
    chosen.plan()  # refuse a bad experiment file before starting a kernel
    if chosen.sample is not None:  # and a sample folder its first cell would fail on
        for name in (chosen.dataset, chosen.bonus):
            load_sample(name, chosen.sample / name)
    return chosen


# ---------------------------------------------------------------------------------------------
# Building the notebook


def filled(kind: str, **args: Any) -> NotebookNode:
    """A text cell that `fill` writes from the executed results."""
    cell = new_markdown_cell(PENDING)
    cell.metadata["mnistlab"] = {"text": kind, "args": args}
    return cell


def cells(name: str = CELLS) -> NotebookNode:
    """The notebook of `lab.py` (or `name`) as it is: its cells start at the first `# %%`
    (above is the file's docstring, for readers of the package)."""
    import jupytext

    text = resources.files("mnistlab.notebook").joinpath(name).read_text()
    first = re.search(r"^# %%", text, re.M)
    if first is None:
        raise ValueError(f"{name} has no cells")
    nb = jupytext.reads(text[first.start() :], fmt="py:percent")
    nb.metadata.pop("jupytext", None)  # a notebook of its own, not paired with the file
    return nb


def build(settings: Settings) -> NotebookNode:
    """The lab's notebook, not yet executed."""
    plan = settings.plan()
    quick = (
        f"\n\n**Quick version** (`--quick`): the lab's model trains for "
        f"{plural(settings.epochs, 'epoch')} instead of 5, and the experiments run on "
        f"{plural(len(plan.seeds), 'seed')} with a "
        f"fifth of their epochs (at least 1), so that the whole notebook runs in minutes. "
        "Its numbers are lower and noisier than the full notebook's (`mnistlab notebook`)."
        if settings.quick
        else ""
    )
    sample = (
        f"\n\n**Sample data**: the data come from the sample folder `{settings.sample}`, "
        "not checked against the published checksums; the numbers say nothing about the "
        "real data sets."
        if settings.sample
        else ""
    )
    fields = {
        "title": title(settings.dataset),
        "version": __version__,
        "date": f"{datetime.now(UTC):%Y-%m-%d}",
        "notes": quick + sample,
        "experiment_file": settings.experiment_file,
        "work": settings.work,
        "bonus_title": TITLES[settings.bonus],
    }
    nb = cells()
    built = []
    for cell in nb.cells:
        text = cell.metadata.get("mnistlab") if cell.cell_type == "markdown" else None
        if text and text["text"] == "variant":
            built += [
                filled("variant", name=v.name, change=change(v.spec.to_dict(), plan))
                for v in plan.variants
            ]
        elif text:
            built.append(filled(text["text"], **text.get("args", {})))
        elif cell.cell_type == "markdown":
            cell.source = cell.source.format_map(fields)
            built.append(cell)
        else:
            if "parameters" in cell.metadata.get("tags", []):
                cell.source = with_values(cell.source, parameters(settings, plan))
            built.append(cell)
    nb.cells = built
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["mnistlab"] = {
        "version": __version__,
        "dataset": settings.dataset,
        "bonus": settings.bonus,
        "quick": settings.quick,
        "experiments": settings.experiment_file,
        "sample": str(settings.sample) if settings.sample else None,
    }
    return nb


KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def title(dataset: str) -> str:
    digits = DATASETS[dataset].class_names == tuple(str(d) for d in range(10))
    return "MNIST digit classification" if digits else "Fashion-MNIST classification"


def build_student(dataset: str = "mnist") -> NotebookNode:
    """The lab's notebook for a student to fill in, not executed: the cells of `student.py`
    with their `{field}`s filled, on Fashion-MNIST with the two data sets' loaders swapped."""
    bonus = Settings(dataset=dataset).bonus
    fields = {
        "title": title(dataset),
        "version": __version__,
        "answer": ANSWER,
        "module": MODULES[dataset],
        "bonus_module": MODULES[bonus],
        "bonus_title": TITLES[bonus],
    }
    nb = cells(STUDENT_CELLS)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = cell.source.format_map(fields)
        elif dataset != "mnist":  # the lab's part on Fashion-MNIST, the bonus on MNIST
            cell.source = re.sub(r"datasets\.(fashion_mnist|mnist)\b", swap, cell.source)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["mnistlab"] = {"version": __version__, "dataset": dataset, "student": True}
    return nb


MODULES = {"mnist": "mnist", "fashion-mnist": "fashion_mnist"}  # mnistlab.datasets.NAME


def swap(found: re.Match[str]) -> str:
    return "datasets." + ("mnist" if found[1] == "fashion_mnist" else "fashion_mnist")


def write_student(dataset: str, out: Path) -> Path:
    """Write the student's notebook at `out`; nothing runs."""
    check_out(out, work=False)
    return write(build_student(dataset), out)


def parameters(settings: Settings, plan: Experiment) -> dict[str, Any]:
    """The values of the notebook's parameters cell."""
    return {
        "DATASET": settings.dataset,
        "BONUS": settings.bonus,
        "EXPERIMENT": settings.experiment,
        "BACKEND": plan.variants[0].spec.backend or default_backend(),
        "EPOCHS": settings.epochs,
        "SEED": settings.seed,
        "QUICK": settings.quick,
        "QUICK_SEEDS": QUICK_SEEDS,
        "QUICK_EPOCHS_DIVISOR": QUICK_EPOCHS_DIVISOR,
        "SAMPLE": str(settings.sample) if settings.sample else None,
        "WORK": settings.work,
    }


ASSIGNMENT = re.compile(r"^(?P<name>[A-Z_]+)(?P<type>: [^=]+)? = .+?(?P<note>  # .*)?$")


def with_values(cell: str, values: dict[str, Any]) -> str:
    """The parameters cell `cell`, one `NAME = value  # note` a line, with `values` in place of
    its own: every name of one is a name of the other."""
    lines, seen = [], set()
    for line in cell.splitlines():
        found = ASSIGNMENT.match(line)
        if found is None and (not line.strip() or line.lstrip().startswith("#")):
            lines.append(line)
            continue
        if found is None or found["name"] not in values:
            raise ValueError(f"{CELLS}: {line!r} is not a parameter mnistlab sets")
        name, value = found["name"], values[found["name"]]
        literal = json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)
        lines.append(f"{name}{found['type'] or ''} = {literal}{found['note'] or ''}")
        seen.add(name)
    if missing := [name for name in values if name not in seen]:
        raise ValueError(f"{CELLS}: the parameters cell has no {', '.join(missing)}")
    return "\n".join(lines)


def change(spec: dict[str, Any], plan: Experiment) -> str:
    """What a variant changes from the baseline's spec, in words (an input, not a result)."""
    base = next(v for v in plan.variants if v.name == plan.baseline).spec.to_dict()
    if spec == base:
        return "the lab's recipe" if describe(spec) == "lab" else "the baseline"
    parts = []
    for key, value in spec.items():
        if key in ("seed", "backend", "epochs") or value == base[key]:
            continue
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        parts.append(f"{key.replace('_', ' ')} {shown}")
    if spec["epochs"] != base["epochs"]:  # the text states the epochs themselves
        parts.append("more epochs" if spec["epochs"] > base["epochs"] else "fewer epochs")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# Running it


def parts(nb: NotebookNode) -> dict[int, str]:
    """The part each code cell belongs to, by cell index: the `## ` heading above it."""
    part, found = "", {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            part = cell.source.splitlines()[0].removeprefix("## ").strip()
        elif cell.cell_type == "code" and part:
            found[index] = part
    return found


class PartClock:
    """nbclient's cell hooks, turned into a line for each part when its last cell has run,
    "Part 3: The first image and its label ... 0.4 s", or as one of its cells fails."""

    def __init__(self, nb: NotebookNode, progress: Callable[[str], None]) -> None:
        self.part = parts(nb)
        self.last = {part: index for index, part in self.part.items()}
        self.started: dict[str, float] = {}
        self.progress = progress

    def start(self, cell_index: int, **_: Any) -> None:
        if cell_index in self.part:
            self.started.setdefault(self.part[cell_index], time.perf_counter())

    def executed(self, cell_index: int, execute_reply: dict[str, Any], **_: Any) -> None:
        part = self.part.get(cell_index)
        if part is None:
            return
        seconds = time.perf_counter() - self.started[part]
        if execute_reply["content"]["status"] != "ok":  # nbclient raises the error next
            self.progress(f"{part} ... failed after {seconds:.1f} s")
        elif self.last[part] == cell_index:
            self.progress(f"{part} ... {seconds:.1f} s")


def execute(
    nb: NotebookNode,
    folder: Path,
    timeout: int = CELL_TIMEOUT,
    progress: Callable[[str], None] | None = None,
    limits: Limits | None = None,
) -> NotebookNode:
    """Run every code cell in a fresh kernel of this Python, in `folder`; the outputs are
    stored in `nb`, and `progress` gets a line as each part finishes. A failing cell raises
    `ExecutionFailed` holding the notebook so far. With `limits` (for a notebook someone else
    wrote), the kernel starts under them and all the cells share `limits.seconds`: each may run
    for the time that is left."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    with tempfile.TemporaryDirectory(prefix="mnistlab-kernel-") as kernels:
        spec_dir = Path(kernels) / KERNEL_NAME
        spec_dir.mkdir()
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (spec_dir / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": limits.wrap(argv) if limits else argv,
                    "display_name": "Python (mnistlab)",
                    "language": "python",
                    # TensorFlow's C++ start-up lines would go to the terminal, not the notebook
                    "env": {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")},
                }
            )
        )
        ipc = str(Path(kernels) / "ipc")

        class Manager(AsyncKernelManager):
            """Finds only this kernel spec; IPC sockets in the temporary folder, so nothing
            listens on the network. nbclient owns it, so it shuts the kernel down."""

            def __init__(self, **kwargs: Any) -> None:
                specs = KernelSpecManager(kernel_dirs=[kernels])
                super().__init__(kernel_spec_manager=specs, transport="ipc", ip=ipc, **kwargs)

        client = NotebookClient(
            nb,
            kernel_manager_class=Manager,
            kernel_name=KERNEL_NAME,
            timeout=timeout,
            startup_timeout=STARTUP_TIMEOUT,
            resources={"metadata": {"path": str(folder)}},
        )
        if limits is not None:
            deadline = time.monotonic() + limits.seconds
            client.timeout_func = lambda cell: max(1, round(deadline - time.monotonic()))
        if progress is not None:
            clock = PartClock(nb, progress)
            client.on_cell_start = clock.start
            client.on_cell_executed = clock.executed
        try:
            client.execute()
        except CellTimeoutError as e:  # its first line: "A cell timed out ..., after N seconds."
            raise ExecutionFailed(nb, str(e).splitlines()[0]) from e
        except (CellExecutionError, DeadKernelError) as e:
            raise ExecutionFailed(nb, first_line(str(e))) from e
    return nb


class ExecutionFailed(Exception):
    def __init__(self, nb: NotebookNode, reason: str) -> None:
        super().__init__(reason)
        self.nb = nb
        self.reason = reason


def first_line(message: str) -> str:
    """The error's name and value from nbclient's long message (its last non-empty line),
    without the terminal colours IPython puts in tracebacks."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", message)
    lines = [line.strip() for line in plain.splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


# ---------------------------------------------------------------------------------------------
# Writing the text from the results


def kept_values(nb: NotebookNode) -> dict[str, Any]:
    """Every value the code cells handed to `keep`, read from their outputs, in order."""
    values: dict[str, Any] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "display_data" and VALUES_MIME in output["data"]:
                values.update(output["data"][VALUES_MIME])
    return values


def pct(x: float) -> str:
    return f"{x:.2%}"


def p_text(p: float | None) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "not computable with these seeds"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def text_shapes(v: dict[str, Any]) -> str:
    return (
        f"{v['train_images']:,} training images and {v['test_images']:,} test images, each "
        f"{v['height']} × {v['width']} pixels, each with its label."
    )


def text_first_image(v: dict[str, Any]) -> str:
    return f"The first training image carries the label **{v['first_label']}**."


def text_pixel(v: dict[str, Any]) -> str:
    return (
        f"Pixel ({v['row']}, {v['col']}) of the first image was {v['before']} and is now "
        f"{v['after']:.4f}, which is {v['before']} / 255; all training pixels now lie between "
        f"{v['low']:g} and {v['high']:g}."
    )


def text_flat(v: dict[str, Any]) -> str:
    return (
        f"Each image is now a row of {v['flat']} numbers ({v['height']} × {v['width']}), "
        "exactly what mnistlab's own preprocessing gives."
    )


def text_model(v: dict[str, Any]) -> str:
    return f"The lab's model has **{v['parameters']:,}** trainable parameters."


def text_count(v: dict[str, Any]) -> str:
    agree = "the two agree" if v["by_hand"] == v["counted"] else "**they differ**"
    return (
        f"With {v['units']} units: 784 × {v['units']} weights and {v['units']} biases make "
        f"{v['hidden_params']:,} in the hidden layer; {v['units']} × 10 + 10 = "
        f"{v['output_params']:,} in the output layer; {v['by_hand']:,} in all by hand, and "
        f"Keras counts {v['counted']:,}: {agree}."
    )


def text_training(v: dict[str, Any]) -> str:
    return (
        f"After {plural(v['epochs'], 'epoch')} the model gets {pct(v['train_accuracy'])} of "
        f"its training images right and {pct(v['val_accuracy'])} of the held-out validation images."
    )


def text_evaluation(v: dict[str, Any]) -> str:
    return (
        f"On the {v['test_images']:,} test images, which it never saw in training, the model is "
        f"right {pct(v['test_accuracy'])} of the time (loss {v['test_loss']:.4f}). Its weakest "
        f"class is {v['worst_class']}, at {pct(v['worst_accuracy'])}."
    )


def text_prediction(v: dict[str, Any], key: str) -> str:
    p = v[key]
    right = "right" if p["prediction"] == p["label"] else "**wrong**"
    return (
        f"Test image {p['index']}: the model says **{p['prediction']}** with "
        f"{p['confidence']:.1%} probability; its label is {p['label']}, so the model is {right}."
    )


def row(v: dict[str, Any], name: str) -> dict[str, Any]:
    """A variant's row of the experiment's results, kept as `Results.to_json` gives them."""
    return next(r for r in v["experiment"]["rows"] if r["variant"] == name)


def text_variant(v: dict[str, Any], name: str, change: str) -> str:
    r = row(v, name)
    seeds, accuracies = len(r["seeds"]), r["accuracies"]
    head = (
        f"**{name}** ({change}; {r['parameters']:,} parameters, {plural(r['epochs'], 'epoch')}): "
        f"{pct(r['mean'])} ± {r['std'] * 100:.2f} over {plural(seeds, 'seed')} "
        f"(from {pct(min(accuracies))} to {pct(max(accuracies))})"
    )
    if name == v["experiment"]["baseline"]:
        return head + ". This is the baseline the others are compared with."
    return (
        f"{head}; {r['difference'] * 100:+.2f} points against the baseline, Welch p "
        f"{p_text(r['p_value'])}: **{r['verdict']}**."
    )


def text_conclusion(v: dict[str, Any]) -> str:
    best, baseline = v["experiment"]["best"], v["experiment"]["baseline"]
    r, base = row(v, best), row(v, baseline)
    target = "reaches" if r["mean"] >= LAB_TARGET else "does not reach"
    on_validation = v["experiment"].get("best_chosen_on") == "validation"
    chosen = (
        f"chosen on the validation images ({pct(r['validation_mean'])}), not on the test set"
        if on_validation
        else "chosen on the test set, as some runs held out no validation images"
    )
    top = max(v["experiment"]["rows"], key=lambda x: x["mean"])
    also = (
        f" On the test set {top['variant']} scored higher ({pct(top['mean'])}), but choosing "
        "it for that would use the test set to choose, and its figure would be optimistic."
        if on_validation and top["variant"] != best
        else ""
    )
    if best == baseline:
        return (
            f"No variant beats the baseline: the lab's recipe is the best model here "
            f"({chosen}), at {pct(base['mean'])} on the test set. Its mean {target} the lab's "
            f"target of {pct(LAB_TARGET)}.{also}"
        )
    trust = (
        "a difference that holds up across the seeds"
        if r["verdict"] == "better"
        else "but with these seeds the difference is within the noise"
    )
    return (
        f"The best model, {chosen}, is **{best}**: {pct(r['mean'])} ± {r['std'] * 100:.2f} on "
        f"the test set over {plural(len(r['seeds']), 'seed')}, {r['difference'] * 100:+.2f} "
        f"points above the baseline's {pct(base['mean'])}: Welch p {p_text(r['p_value'])}, "
        f"{trust}. Its mean {target} the lab's target of {pct(LAB_TARGET)}.{also}"
    )


def text_bonus(v: dict[str, Any]) -> str:
    return (
        f"On the bonus data set the same model reaches {pct(v['bonus_accuracy'])} after "
        f"{plural(v['bonus_epochs'], 'epoch')}, against {pct(v['test_accuracy'])} above. "
        f"Its hardest class is {v['bonus_hardest']} ({pct(v['bonus_hardest_accuracy'])}), "
        f"its easiest {v['bonus_easiest']} ({pct(v['bonus_easiest_accuracy'])})."
    )


TEXTS: dict[str, Callable[..., str]] = {
    "shapes": text_shapes,
    "first_image": text_first_image,
    "pixel": text_pixel,
    "flat": text_flat,
    "model": text_model,
    "count": text_count,
    "training": text_training,
    "evaluation": text_evaluation,
    "prediction": text_prediction,
    "variant": text_variant,
    "conclusion": text_conclusion,
    "bonus": text_bonus,
}


def fill(nb: NotebookNode) -> NotebookNode:
    """Write every results text cell from the values the executed code cells kept."""
    values = kept_values(nb)
    for cell in nb.cells:
        spec = cell.metadata.get("mnistlab") if cell.cell_type == "markdown" else None
        if spec:
            cell.source = TEXTS[spec["text"]](values, **spec["args"])
    return nb


# ---------------------------------------------------------------------------------------------
# Files


def write(nb: NotebookNode, path: Path) -> Path:
    """Validate and write the notebook atomically."""
    nbformat.validate(nb)
    write_bytes(path, nbformat.writes(nb).encode())
    return path


# JupyterLab's look without the scripts it loads from a CDN (require.js, MathJax, Mermaid),
# which the page does not need: its outputs are text and PNGs, its text has no formulas.
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock -%}
{%- block html_head_js_mathjax -%}{%- endblock -%}
{%- block html_head_js_mermaidjs -%}{%- endblock -%}
"""


def write_html(nb: NotebookNode, path: Path) -> Path:
    """The notebook as one HTML page that needs no network; its figures are embedded as data
    URIs."""
    import jinja2
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    config = Config()
    config.TagRemovePreprocessor.remove_input_tags = {HIDDEN}  # the `keep(...)` cells' code
    exporter = HTMLExporter(
        config=config,
        template_name="lab",
        template_file="offline.html.j2",
        extra_loaders=[jinja2.DictLoader({"offline.html.j2": OFFLINE_TEMPLATE})],
    )
    body, _ = exporter.from_notebook_node(nb)
    write_bytes(path, body.encode())
    return path


def check_out(out: Path, html: bool = False, work: bool = True) -> None:
    """Refuse, before a kernel starts, a notebook path that is not a .ipynb file that can be
    written, with its NAME-files/ folder beside it (`work`) and NAME.html (`html`)."""
    if out.suffix != ".ipynb":
        raise MnistlabError(f"{out} does not end in .ipynb", "name a .ipynb file")
    check_writable(out)
    if work:
        check_writable(out.with_name(f"{out.stem}-files"), folder=True)
    if html:
        check_writable(out.with_suffix(".html"))


def make(
    settings: Settings,
    out: Path,
    html: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Build, execute, fill and write the notebook at `out` (and `out` as .html); returns the
    files written. A failing cell leaves the notebook so far as `NAME.failed.ipynb`."""
    check_out(out, html)
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    nb = build(settings)
    try:
        nb = execute(nb, out.parent, progress=progress)
    except ExecutionFailed as e:
        failed = write(e.nb, out.with_suffix(".failed.ipynb"))
        raise MnistlabError(
            f"the notebook failed while running: {e.reason}",
            f"see the cell that failed in {failed}",
        ) from e
    written = [write(fill(nb), out)]
    if html:
        written.append(write_html(nb, out.with_suffix(".html")))
    return written
