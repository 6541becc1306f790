"""The lab's notebook: its structure, its parameters cell, the text written from results, a
failing cell, progress by part, the command's errors, and one whole notebook executed in a
kernel on a tiny sample data set, whose text cells must state the numbers its outputs print."""

import base64
import html
import re
import struct
import time
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from conftest import synthetic
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mnistlab import cli, notebook
from mnistlab.data import FILES, encode_idx
from mnistlab.errors import MnistlabError
from mnistlab.limits import GIB, Limits
from mnistlab.reports import figures as report

TINY_EXPERIMENTS = """
dataset = "mnist"
seeds = [1]
[base]
backend = "jax"
[[variants]]
name = "baseline"
[[variants]]
name = "wide"
hidden = [256]
"""
WRONG_LABELS = 10  # test images given another label: the model's sure mistakes


def write_sample(folder: Path) -> Path:
    """mnist/ and fashion-mnist/ of 300 training and 100 test images; 10 test labels wrong."""
    (x_train, y_train), (x_test, y_test) = synthetic(300, 0), synthetic(100, 1)
    y_test = y_test.copy()
    y_test[:WRONG_LABELS] = (y_test[:WRONG_LABELS] + 1) % 10
    for name in ("mnist", "fashion-mnist"):
        (folder / name).mkdir(parents=True)
        for file, array in zip(FILES, (x_train, y_train, x_test, y_test), strict=True):
            (folder / name / file).write_bytes(encode_idx(array))
    return folder


@pytest.fixture(scope="module")
def tiny_toml(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("experiments") / "tiny.toml"
    path.write_text(TINY_EXPERIMENTS)
    return path


def settings(experiment: Path, **changes):
    return notebook.Settings(experiment=str(experiment), **changes)


def parameters(nb) -> str:
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    return cell.source


def hidden(cell) -> bool:
    return notebook.HIDDEN in cell.metadata.get("tags", []) and cell.metadata["jupyter"] == {
        "source_hidden": True
    }


def test_build_follows_the_lab(tiny_toml):
    nb = notebook.build(settings(tiny_toml, quick=True, sample=Path("/tmp/sample")))
    nbformat.validate(nb)
    headings = [
        c.source.splitlines()[0] for c in nb.cells if c.cell_type == "markdown" and "#" in c.source
    ]
    parts = [h for h in headings if h.startswith("## Part")]
    assert [int(re.match(r"## Part (\d+)", h)[1]) for h in parts] == list(range(1, 12))
    assert headings[-2:] == ["## Conclusion", "## Bonus: Fashion-MNIST"]
    assert "**Quick version**" in nb.cells[0].source
    assert "**Sample data**" in nb.cells[0].source
    kinds = [c.metadata["mnistlab"]["text"] for c in nb.cells if "mnistlab" in c.metadata]
    assert kinds.count("variant") == 2 and kinds.count("prediction") == 2
    assert "conclusion" in kinds and "bonus" in kinds and "count" in kinds
    assert "`tiny.toml`" in next(c.source for c in nb.cells if "## Part 11" in c.source)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].metadata["tags"] == ["parameters"]  # the first code cell: papermill's place
    assert parameters(nb).splitlines()[3:] == [
        "BACKEND = \"jax\"  # Keras's backend: the experiment's",
        "EPOCHS = 2  # the lab's model's, and the bonus's",
        "SEED = 1",
        "QUICK = True  # True: the experiments shortened as below, so that the notebook runs in "
        "minutes",
        "QUICK_SEEDS = 2  # the quick experiments run on their first seeds only",
        "QUICK_EPOCHS_DIVISOR = 5  # and on their epochs divided by this (at least 1)",
        'SAMPLE: str | None = "/tmp/sample"  # a folder of small unverified samples, or None for '
        "the real data",
        'WORK = "lab-files"  # figures and run folders, beside the notebook',
    ]
    assert f'EXPERIMENT = "{tiny_toml}"' in parameters(nb)
    assert 'os.environ["KERAS_BACKEND"] = BACKEND' in code[1].source
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert "jupytext" not in nb.metadata
    full = notebook.build(settings(tiny_toml))
    assert "EPOCHS = 5" in parameters(full) and "SAMPLE: str | None = None" in parameters(full)
    assert "Quick" not in full.cells[0].source and "Sample" not in full.cells[0].source


def test_the_values_for_the_text_are_kept_in_hidden_cells(tiny_toml):
    nb = notebook.build(settings(tiny_toml))
    keeps = [c for c in nb.cells if c.cell_type == "code" and "keep(" in c.source]
    assert len(keeps) == 12 and all(hidden(c) and c.source.startswith("keep(") for c in keeps)
    for i, cell in enumerate(nb.cells):
        if "mnistlab" in cell.metadata:  # the code cell nearest above a results text keeps
            assert next(c for c in reversed(nb.cells[:i]) if c.cell_type == "code") in keeps


def test_with_values_writes_the_parameters_cell():
    cell = "# settings\nA = 1  # a note\nB: str | None = None\n"
    assert notebook.with_values(cell, {"A": 2, "B": 'say "hi"'}) == (
        '# settings\nA = 2  # a note\nB: str | None = "say \\"hi\\""'
    )
    with pytest.raises(ValueError, match="the parameters cell has no C"):
        notebook.with_values(cell, {"A": 2, "B": None, "C": 3})
    with pytest.raises(ValueError, match="'A = 1  # a note' is not a parameter mnistlab sets"):
        notebook.with_values(cell, {"B": None})


def test_on_fashion_mnist_the_bonus_is_mnist():
    chosen = notebook.settings("fashion-mnist")
    assert (chosen.experiment, chosen.experiment_file) == ("fashion", "fashion.toml")
    nb = notebook.build(chosen)
    assert nb.cells[0].source.startswith("# Fashion-MNIST classification")
    assert "## Bonus: MNIST" in [c.source.splitlines()[0] for c in nb.cells]
    assert 'DATASET = "fashion-mnist"' in parameters(nb)
    assert 'BONUS = "mnist"' in parameters(nb) and 'EXPERIMENT = "fashion"' in parameters(nb)


def test_settings_refuse_an_experiment_on_another_data_set(tiny_toml):
    with pytest.raises(MnistlabError, match="tiny.toml is an experiment on mnist"):
        settings(tiny_toml, dataset="fashion-mnist").plan()


def test_settings_name_an_experiment_file_by_its_full_path(tiny_toml, monkeypatch):
    monkeypatch.chdir(tiny_toml.parent)
    chosen = notebook.settings("mnist", "tiny.toml", out=Path("mine.ipynb"))
    assert (chosen.experiment, chosen.work) == (str(tiny_toml), "mine-files")


def test_quick_shortens_the_experiments():
    plan = notebook.settings("mnist", quick=True).plan()
    assert plan.seeds == (1, 2)
    assert {v.name: v.spec.epochs for v in plan.variants}["epochs-10"] == 2
    assert {v.name: v.spec.epochs for v in plan.variants}["baseline"] == 1


def kept(**values):
    return {"output_type": "display_data", "metadata": {}, "data": {notebook.VALUES_MIME: values}}


def test_fill_writes_text_from_kept_values_only():
    nb = new_notebook(cells=[new_code_cell("")])
    nb.cells[0].outputs = [
        kept(units=64, hidden_params=50240, output_params=650, by_hand=50890, counted=50891),
        kept(by_hand=50890),  # a later value of the same name wins
    ]
    nb.cells.append(notebook.filled("count"))
    assert nb.cells[1].source == notebook.PENDING
    text = notebook.fill(nb).cells[1].source
    assert "50,240 in the hidden layer" in text and "Keras counts 50,891" in text
    assert "**they differ**" in text


@pytest.mark.notebook
def test_a_failing_cell_is_reported_with_the_notebook_so_far(tmp_path, monkeypatch):
    cells = [
        new_markdown_cell("## Part 1: Fine"),
        new_code_cell("x = 1"),
        new_markdown_cell("## Part 2: Failing"),
        new_code_cell("raise ValueError('boom')"),
        new_code_cell("y = 2"),
    ]
    failing = new_notebook(cells=cells)
    monkeypatch.setattr(notebook, "build", lambda s: failing)
    lines = []
    with pytest.raises(MnistlabError, match="ValueError: boom") as caught:
        notebook.make(notebook.Settings(), tmp_path / "lab.ipynb", progress=lines.append)
    assert [re.sub(r"\d+\.\d s$", "S", line) for line in lines] == [
        "Part 1: Fine ... S",
        "Part 2: Failing ... failed after S",
    ]
    saved = nbformat.read(tmp_path / "lab.failed.ipynb", as_version=4)
    assert saved.cells[3].outputs[0]["ename"] == "ValueError"
    assert "execution_count" in saved.cells[4] and saved.cells[4].execution_count is None
    assert str(tmp_path / "lab.failed.ipynb") in caught.value.fix
    assert not (tmp_path / "lab.ipynb").exists()


@pytest.mark.notebook
def test_progress_has_a_line_for_each_part_as_it_finishes(tmp_path, monkeypatch):
    cells = [
        new_code_cell("before = 1"),  # above any part: no line
        new_markdown_cell("## Part 1: Two cells\nText."),
        new_code_cell("import time"),
        new_code_cell("time.sleep(0.3)"),
        new_markdown_cell("## Only text"),  # no code: no line
        new_markdown_cell("## Part 2: One cell"),
        new_code_cell("x = 2"),
    ]
    monkeypatch.setattr(notebook, "build", lambda s: new_notebook(cells=cells))
    lines = []
    notebook.make(notebook.Settings(), tmp_path / "lab.ipynb", progress=lines.append)
    assert [re.sub(r"\d+\.\d s$", "S", line) for line in lines] == [
        "Part 1: Two cells ... S",
        "Part 2: One cell ... S",
    ]
    assert float(lines[0].split()[-2]) >= 0.3


@pytest.mark.notebook
def test_the_kernel_keeps_tensorflows_start_up_lines_quiet(tmp_path, monkeypatch):
    # They are written by C++ to the terminal that runs the command, not into the notebook.
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    nb = new_notebook(cells=[new_code_cell("import os; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])")])
    notebook.execute(nb, tmp_path)
    assert nb.cells[0].outputs[0]["text"] == "2\n"


@pytest.mark.notebook
def test_limits_hold_in_the_kernel_and_bound_its_memory_and_time(tmp_path):
    limits = Limits(120, GIB)
    shown = notebook.execute(
        new_notebook(
            cells=[new_code_cell("import resource\nresource.getrlimit(resource.RLIMIT_DATA)")]
        ),
        tmp_path,
        limits=limits,
    )
    assert shown.cells[0].outputs[0]["data"]["text/plain"] == f"({GIB}, {GIB})"
    big = new_notebook(cells=[new_code_cell("import numpy as np\nbig = np.ones(2**28)")])  # 2 GiB
    with pytest.raises(notebook.ExecutionFailed, match="MemoryError: Unable to allocate 2.00 GiB"):
        notebook.execute(big, tmp_path, limits=limits)
    slow = new_notebook(cells=[new_code_cell("import time"), new_code_cell("time.sleep(60)")])
    started = time.monotonic()
    with pytest.raises(notebook.ExecutionFailed, match=r"^A cell timed out .*, after \d+ seconds"):
        notebook.execute(slow, tmp_path, limits=Limits(15))
    assert time.monotonic() - started < 45  # the notebook's 15 s, and the kernel's start and end


@pytest.mark.parametrize(
    "args, message",
    [
        (["--experiments", "no-such.toml"], "cannot read the experiment file no-such.toml"),
        (["--experiments", "no-such"], "cannot read the experiment file no-such"),
        (["--dataset", "fashion-mnist", "--experiments", "{tiny}"], "an experiment on mnist"),
        (["--out", "lab.txt", "--experiments", "{tiny}"], "lab.txt does not end in .ipynb"),
    ],
)
def test_notebook_command_errors(tmp_path, args, message):
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(TINY_EXPERIMENTS)
    args = [a.replace("{tiny}", str(tiny)) for a in args]
    result = CliRunner().invoke(cli.cli, ["notebook", *args])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and message in result.output


# ---------------------------------------------------------------------------------------------
# The whole notebook, executed


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("notebook")
    sample = write_sample(folder / "sample")
    experiments = folder / "tiny.toml"
    experiments.write_text(TINY_EXPERIMENTS)
    out = folder / "out" / "lab.ipynb"
    args = ["notebook", "--quick", "--html", "--sample-data", str(sample)]
    args += ["--experiments", str(experiments), "--out", str(out)]
    result = CliRunner().invoke(cli.cli, args)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-2:] == [f"Wrote {out}", f"Wrote {out.with_suffix('.html')}"]
    return out, nbformat.read(out, as_version=4), result.stderr


def stdout(cell) -> str:
    return "".join(o["text"] for o in cell.outputs if o.get("name") == "stdout")


def after(nb, kind, **args):
    """The code cell a reader sees before the filled text cell of `kind`, and that text."""
    for i, cell in enumerate(nb.cells):
        spec = cell.metadata.get("mnistlab")
        if spec and spec["text"] == kind and all(spec["args"].get(k) == v for k, v in args.items()):
            code = next(
                c for c in reversed(nb.cells[:i]) if c.cell_type == "code" and not hidden(c)
            )
            return code, cell.source
    raise AssertionError(f"no text cell {kind} {args}")


@pytest.mark.notebook
def test_every_cell_ran_without_errors(executed):
    path, nb, _ = executed
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    for cell in code:
        for output in cell.outputs:
            assert output["output_type"] != "error", output
            assert "Traceback" not in output.get("text", "")
    assert not [c for c in nb.cells if c.cell_type == "markdown" and c.source == notebook.PENDING]
    assert "Source: sample" in stdout(code[2])  # after the parameters and the setting up


@pytest.mark.notebook
def test_the_command_reports_each_part_as_it_finishes(executed):
    _, nb, stderr = executed
    lines = [line for line in stderr.splitlines() if re.search(r" \.\.\. \d+\.\d s$", line)]
    parts = [line.split(" ... ")[0] for line in lines]
    assert parts[0] == "Setting up" and parts[-1] == "Bonus: Fashion-MNIST"
    assert [int(re.match(r"Part (\d+):", p)[1]) for p in parts[1:-1]] == list(range(1, 12))
    headings = [c.source.splitlines()[0][3:] for c in nb.cells if c.source.startswith("## Part")]
    assert parts[1:-1] == headings


@pytest.mark.notebook
def test_figures_are_embedded_and_of_their_size(executed):
    path, nb, _ = executed
    images = [
        base64.b64decode(o["data"]["image/png"])
        for c in nb.cells
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    assert len(images) == 12
    for raw in images:
        assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 2000
    files = path.parent / "lab-files"
    for name, inches in report.SIZES.items():
        if name in ("weights", "embedding"):  # the report's looks inside the model, not the lab's
            continue
        raw = (files / f"{name}.png").read_bytes()
        assert struct.unpack(">II", raw[16:24]) == (round(inches[0] * 100), round(inches[1] * 100))
        assert raw in images
    html = path.with_suffix(".html").read_text()
    assert html.count('src="data:image/png;base64,') == len(images)
    assert re.findall(r'(?:src|href)="https?:', html) == []  # nothing fetched from elsewhere


def percent(fraction: str) -> str:
    return f"{float(fraction):.2%}"


@pytest.mark.notebook
def test_text_cells_state_the_printed_results(executed):
    _, nb, _ = executed
    code, text = after(nb, "shapes")
    assert "x_train shape: (300, 28, 28)" in stdout(code)
    assert text.startswith("300 training images and 100 test images, each 28 × 28 pixels")

    code, text = after(nb, "count")
    printed = re.search(r"total ([\d,]+)\nKeras:\s+([\d,]+)", stdout(code))
    assert printed[1] == printed[2] == "50,890"
    assert f"{printed[1]} in all by hand, and Keras counts {printed[2]}: the two agree" in text

    code, text = after(nb, "evaluation")
    test_accuracy = re.search(r"Test accuracy: ([\d.]+)", stdout(code))[1]
    assert float(test_accuracy) <= 1 - WRONG_LABELS / 100
    assert f"right {percent(test_accuracy)} of the time" in text

    for key in ("first_prediction", "other_prediction"):
        code, text = after(nb, "prediction", key=key)
        out = stdout(code).split("Test image ")[-1]
        guess, confidence = re.search(r"Model prediction: (\S+) \(([\d.]+%)\)", out).groups()
        label = re.search(r"Actual label:\s+(\S+)", out)[1]
        assert f"says **{guess}** with {confidence} probability; its label is {label}" in text

    code, _ = after(nb, "variant", name="baseline")
    shown = [o.get("data", {}) for o in code.outputs]
    table = next(data["text/markdown"] for data in shown if "text/markdown" in data)
    rows = re.findall(
        r"^\| (\S+) \| ([\d,]+) \| (\d+) \| [\d.]+% \| ([\d.]+% ± [\d.]+) \|", table, re.M
    )
    assert [r[0] for r in rows] == ["baseline", "wide"]
    for name, parameters, epochs, accuracy in rows:
        _, text = after(nb, "variant", name=name)
        assert text.startswith(f"**{name}** (")
        assert f"{parameters} parameters, {epochs} epoch" in text
        assert f": {accuracy} over 1 seed " in text
    best = re.search(r"Best: \*\*(\S+)\*\*, ([\d.]+%)", table)
    _, conclusion = after(nb, "conclusion")
    if best[1] == "baseline":
        assert "the lab's recipe is the best model here (chosen on the validation" in conclusion
        assert f"at {best[2]} on the test set" in conclusion
    else:
        assert "chosen on the validation images" in conclusion
        assert f"is **{best[1]}**: {best[2]}" in conclusion

    code, text = after(nb, "bonus")
    bonus = re.search(r"Test accuracy on fashion-mnist: ([\d.]+)", stdout(code))[1]
    assert text.startswith(f"On the bonus data set the same model reaches {percent(bonus)} after")
    assert f"against {percent(test_accuracy)} above" in text


@pytest.mark.notebook
def test_the_html_holds_the_text(executed):
    path, nb, _ = executed
    page = html.unescape(re.sub(r"<[^>]+>", "", path.with_suffix(".html").read_text()))
    for kind in ("conclusion", "bonus"):
        _, text = after(nb, kind)
        assert text.replace("**", "") in page
    assert "Quick version" in page
    assert "For the text: test_accuracy = " in page and "keep(" not in page  # hidden code


# ---------------------------------------------------------------------------------------------
# The student's notebook


LOADER = "(x_train, y_train), (x_test, y_test) = mnistlab.datasets.mnist.load_data()"


def test_the_student_notebook_keeps_the_data_parts_and_leaves_the_rest_blank():
    nb = notebook.build_student("mnist")
    nbformat.validate(nb)
    headings = [c.source.splitlines()[0] for c in nb.cells if c.source.startswith("## ")]
    parts = [h for h in headings if h.startswith("## Part")]
    assert [int(re.match(r"## Part (\d+)", h)[1]) for h in parts] == list(range(1, 12))
    assert headings[-2:] == ["## Conclusion", "## Bonus: Fashion-MNIST"]
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is None and c.outputs == [] for c in code)  # written, not run
    given = [c for c in code if "mnistlab" not in c.metadata]
    assert len(given) == 4 and LOADER in given[1].source.splitlines()  # the one line
    assert "x_train shape:" in given[2].source and "plt.imshow(x_train[0]" in given[3].source
    assert not [c for c in given if "TODO" in c.source]
    todos = {c.metadata["mnistlab"]["todo"]: c.source.splitlines() for c in code if c not in given}
    assert list(todos) == [
        *("normalise", "flatten", "model", "count", "compile", "fit", "evaluate", "predict"),
        *("wider", "second_layer", "more_epochs", "dropout", "bonus"),
    ]
    for kind, lines in todos.items():
        assert lines[0].startswith("# TODO: ") and lines[1].startswith("# Hint: "), kind
        assert all(line.startswith("# ") for line in lines[:2]) and len(lines) <= 4, kind
        assert all(line.endswith("= ...") or line.endswith("..., ...") for line in lines[2:])
    answers = [c for c in nb.cells if "answer" in c.metadata.get("mnistlab", {})]
    assert [c.metadata["mnistlab"]["answer"] for c in answers] == [
        *("shapes", "model", "count", "evaluate", "predict"),
        *("wider", "second_layer", "more_epochs", "dropout", "conclusion", "bonus"),
    ]
    assert all(c.source.endswith(f"*{notebook.ANSWER}*") for c in answers)
    blanks = [c for c in nb.cells if notebook.ANSWER in c.source]
    assert blanks == answers  # no other text says it: `check` counts it as unanswered
    assert "`mnistlab.datasets.mnist.load_data()` is a drop-in" in nb.cells[3].source
    assert nb.metadata["mnistlab"]["student"] is True


def test_the_student_notebook_on_fashion_mnist_swaps_the_data_sets():
    nb = notebook.build_student("fashion-mnist")
    assert nb.cells[0].source.startswith("# Fashion-MNIST classification")
    text = "\n".join(c.source for c in nb.cells)
    assert LOADER.replace(".mnist.", ".fashion_mnist.") in text and LOADER not in text
    assert "## Bonus: MNIST" in text and "= mnistlab.datasets.mnist.load_data()" in text


def test_notebook_student_writes_it_and_runs_nothing(tmp_path):
    out = tmp_path / "mine.ipynb"
    result = CliRunner().invoke(cli.cli, ["notebook", "--student", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output == f"Wrote {out}\n"
    written, built = nbformat.read(out, as_version=4), notebook.build_student("mnist")
    assert [c.source for c in written.cells] == [c.source for c in built.cells]
    assert not (tmp_path / "mine-files").exists()
    result = CliRunner().invoke(cli.cli, ["notebook", "--student", "--quick", "--out", str(out)])
    assert result.exit_code == 2
    assert "error: --quick is for a notebook that runs, not for --student" in result.output
