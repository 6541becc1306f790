"""`mnistlab check`: the figures and the code it reads, files that are not notebooks, the
student's notebook blank and filled in, the reference notebook (executed on the tiny sample
of test_notebook.py) passing, and hand-ins broken by editing its JSON, each with its finding;
`--rerun` under its limits."""

import copy
import json
import re
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from test_notebook import write_sample

from mnistlab import cli, notebook
from mnistlab.errors import MnistlabError
from mnistlab.limits import GIB, Limits
from mnistlab.notebook import check as checking
from mnistlab.notebook.handin import Fit, Reader, figure, stated_accuracies

# the lab's experiments on one seed: each of the four ideas once
EXPERIMENTS = """
dataset = "mnist"
seeds = [1]
[base]
backend = "jax"
[[variants]]
name = "baseline"
[[variants]]
name = "wide-256"
hidden = [256]
[[variants]]
name = "deep-128-64"
hidden = [128, 64]
[[variants]]
name = "epochs-10"
epochs = 10
[[variants]]
name = "dropout-0.2"
dropout = 0.2
"""


def failed(handin) -> list[str]:
    return [f.message for f in handin.failed]


# ---------------------------------------------------------------------------------------------
# What it reads


@pytest.mark.parametrize(
    "text", ["97.65%", "97.6 %", "97.7%", "98%", "0.9765", "0.977", "97.65 percent"]
)
def test_a_text_states_a_printed_accuracy_within_rounding(text):
    assert stated_accuracies(f"It reached {text}.")[0].states(figure("0.9765", False))


@pytest.mark.parametrize("text", ["97.56%", "97.5%", "96%", "0.9756", "0.967"])
def test_a_mistyped_accuracy_is_not_stated(text):
    assert not stated_accuracies(f"It reached {text}.")[0].states(figure("0.9765", False))


def test_only_figures_that_can_be_accuracies_are_read_from_a_text():
    text = "256 units, dropout 0.2, 10 epochs, JAX 0.10.2: 97.6% (was 0.9712, loss 0.0812), 150%"
    assert [f.shown for f in stated_accuracies(text)] == ["97.6%", "0.9712"]


def test_the_reader_finds_models_their_epochs_and_placeholders_without_running_them():
    reader = Reader()
    assert reader.read("EPOCHS = 10\nUNITS = 256").placeholders == []
    code = reader.read(
        "wide = keras.Sequential([keras.Input(shape=(784,)),\n"
        "    keras.layers.Dense(UNITS, activation='relu'), layers.Dropout(rate=0.2),\n"
        "    keras.layers.Dense(10)])\n"
        "wide.fit(x, y, epochs=EPOCHS)\n"
        "%timeit wide.predict(x)\n"
    )
    assert code.parsed and [name for name, _ in code.models] == ["wide"]
    (fit,) = code.fits
    assert (fit.model.hidden, fit.model.dropout, fit.epochs) == ((256,), 0.2, 10)
    code = reader.read("deep = Sequential()\ndeep.add(Dense(128))\ndeep.add(Dense(64))\n")
    assert reader.read("deep.add(Dense(10))\ndeep.fit(x, y)").fits[0].model.hidden == (128, 64)
    assert reader.read("deep.fit(x, y)").fits[0].epochs == 1  # Keras's default
    assert reader.read("other.fit(x, y, epochs=n)").fits == [Fit(None, None)]
    assert reader.read("model = ...\nloss, accuracy = ..., ...").placeholders == [
        "model",
        "(loss, accuracy)",
    ]
    assert not reader.read("def f(:\n").parsed


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"cells": [', "damaged JSON: Expecting value at line 1, column 12"),
        (b"\x89PNG\r\n\x1a\n", "not text: byte 0 is not UTF-8"),
        ("[1, 2]", "JSON, but not a notebook: it has no list of cells"),
        (
            '{"cells": [], "nbformat": 3}',
            "a notebook of format 3, not 4: open it in Jupyter, save it",
        ),
        ('{"cells": [{"cell_type": "image"}], "nbformat": 4}', "cell 1 is not a notebook cell"),
        (
            '{"cells": [{"cell_type": "code", "source": "", "outputs": [{"output_type": 1}]}], '
            '"nbformat": 4}',
            "cell 1: an output of unknown type 1",
        ),
        ("[" * 100_000 + "]" * 100_000, "damaged JSON: nested too deep"),
    ],
)
def test_a_file_that_is_not_a_notebook_is_one_clear_finding(tmp_path, content, message):
    handin = checking.check(write(tmp_path / "x.ipynb", content))
    (finding,) = handin.findings
    assert not handin.passed and finding.group == "notebook"
    assert finding.message == f"not a notebook that can be checked: {message}"


def test_the_public_api_checks_a_hand_in(tmp_path):
    import mnistlab as ml

    handin = ml.check(write(tmp_path / "x.ipynb", "{}"))
    assert isinstance(handin, checking.HandIn) and not handin.passed
    assert handin.to_json()["findings"][0]["message"].startswith("not a notebook")


def test_a_huge_hand_in_is_not_read(tmp_path):
    path = write(tmp_path / "huge.ipynb", '{"cells": []}' + " " * 2000)
    (finding,) = checking.check(path, max_bytes=1000).findings
    assert (
        finding.message
        == "not a notebook that can be checked: larger than 0.000953674 MB: not read"
    )


def test_the_command_reports_a_damaged_file_and_refuses_a_missing_one(tmp_path):
    damaged = write(tmp_path / "damaged.ipynb", '{"cells": [')
    result = CliRunner().invoke(cli.cli, ["check", str(damaged)])
    assert result.exit_code == 1, result.output
    assert "  FAIL  notebook     not a notebook that can be checked: damaged JSON" in result.stdout
    assert result.stdout.splitlines()[-1] == f"{damaged}: FAIL, 1 of 1 checks failed"
    result = CliRunner().invoke(cli.cli, ["check", str(tmp_path / "gone.ipynb")])
    assert result.exit_code == 2
    assert (
        result.output
        == f"error: {tmp_path / 'gone.ipynb'} does not exist. name notebooks or their folder\n"
    )
    result = CliRunner().invoke(cli.cli, ["check"])
    assert result.exit_code == 2 and "Missing argument 'NOTEBOOKS...'" in result.output


def test_a_folder_is_its_notebooks_by_name(tmp_path):
    for name in ("b.ipynb", "a.ipynb", "a.failed.ipynb", "notes.txt"):
        write(tmp_path / name, "{}")
    assert checking.handins([tmp_path]) == [tmp_path / "a.ipynb", tmp_path / "b.ipynb"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(MnistlabError, match="empty holds no .ipynb file"):
        checking.handins([tmp_path / "empty"])


@pytest.mark.parametrize(
    "dataset, printed, message",
    [
        ("mnist", "Model prediction: 7 (99.9%)", "cell 1 predicts 7 for test image 0"),
        (
            "mnist",
            "Prediction: np.int64(2)\nLabel: 7",
            "cell 1 predicts 2 for the first test image, not 7",
        ),
        ("mnist", "np.int64(7)", "cell 1 predicts 7 for test image 0"),
        (
            "fashion-mnist",
            "Model prediction: Ankle boot (95.0%)",
            "cell 1 predicts Ankle boot for test image 0",
        ),
        ("fashion-mnist", "Predicted: 9", "cell 1 predicts Ankle boot for test image 0"),
        (
            "fashion-mnist",
            "Predicted: 7",
            "cell 1 predicts 7 for the first test image, not Ankle boot",
        ),
    ],
)
def test_the_first_prediction_is_read_from_the_predicting_cell(tmp_path, dataset, printed, message):
    cell = new_code_cell("p = model.predict(x_test[:1])", execution_count=1)
    cell.outputs = [new_output("stream", name="stdout", text=printed + "\n")]
    path = tmp_path / "handin.ipynb"
    nbformat.write(new_notebook(cells=[cell]), path)
    (finding,) = [f for f in checking.check(path, dataset).findings if f.name == "prediction"]
    assert finding.message == message


RUN_AGAIN = "run them top to bottom (Restart Kernel and Run All Cells)"


@pytest.mark.parametrize(
    "counts, messages",
    [
        ([1, 2, 3], []),
        (
            [1, 2, 4],
            [
                f"cell 3 ran as [4] after [2]: [3] is missing: a cell ran twice, or ran "
                f"and was deleted; {RUN_AGAIN}"
            ],
        ),
        ([1, 3, 2], [f"cell 2 ran as [3] after [1]: the cells ran out of order; {RUN_AGAIN}"]),
        (
            [1, 2, 1],
            [
                f"cell 3 ran as [1] after [2]: the kernel restarted, or cells ran out of "
                f"order; {RUN_AGAIN}"
            ],
        ),
        ([1, None, 2], ["1 code cell never ran: cell 2"]),
        ([None, None, None], ["none of its 3 code cells ran"]),
    ],
)
def test_every_cell_ran_once_in_order(tmp_path, counts, messages):
    cells = [new_code_cell(f"x = {i}", execution_count=n) for i, n in enumerate(counts)]
    cells.append(new_code_cell("  \n"))  # empty: Jupyter does not run it
    path = tmp_path / "handin.ipynb"
    nbformat.write(new_notebook(cells=cells), path)
    assert [f.message for f in checking.check(path).group("run") if not f.passed] == messages


def test_the_blank_student_notebook_fails_until_it_is_filled_in(tmp_path):
    path = notebook.write_student("mnist", tmp_path / "student.ipynb")
    handin = checking.check(path)
    assert not handin.passed
    messages = failed(handin)
    assert messages[:3] == [
        "none of its 17 code cells ran",
        "13 TODO cells not filled in: cell 12 (Part 4), cell 14 (Part 5), cell 16 (Part 6), "
        "cell 19 (Part 6), cell 22 (Part 7) and 8 more",
        "11 questions not answered ('Your answer here.'): cell 8 (Part 2), cell 17 (Part 6), "
        "cell 20 (Part 6), cell 27 (Part 9), cell 30 (Part 10) and 6 more",
    ]
    assert "no experiment with dropout: no model is trained (`.fit(`)" in messages
    assert not [f for f in handin.findings if f.passed]


# ---------------------------------------------------------------------------------------------
# The reference notebook and hand-ins made from it


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("check")
    write_sample(folder / "sample")
    return folder


@pytest.fixture(scope="module")
def reference(folder) -> Path:
    """`mnistlab notebook --quick --sample-data`, with the four experiments on one seed."""
    (folder / "lab.toml").write_text(EXPERIMENTS)
    out = folder / "reference" / "reference.ipynb"
    args = ["notebook", "--quick", "--sample-data", str(folder / "sample")]
    args += ["--experiments", str(folder / "lab.toml"), "--out", str(out)]
    result = CliRunner().invoke(cli.cli, args)
    assert result.exit_code == 0, result.output
    return out


def edited(reference: Path, name: str, change) -> Path:
    """A copy of the reference notebook beside it, `change`d."""
    nb = nbformat.read(reference, as_version=4)
    change(nb)
    path = reference.parent / name
    nbformat.write(nb, path)
    return path


def text_cell(nb, kind, **args):
    return next(
        c
        for c in nb.cells
        if c.metadata.get("mnistlab", {}).get("text") == kind
        and all(c.metadata["mnistlab"]["args"].get(k) == v for k, v in args.items())
    )


def code_cell(nb, part):
    return next(c for c in nb.cells if c.cell_type == "code" and part in c.source)


@pytest.mark.notebook
def test_the_reference_notebook_passes(reference):
    result = CliRunner().invoke(cli.cli, ["check", "--sample", str(reference)])
    assert result.exit_code == 0, result.output
    handin = checking.check(reference, sample=True)
    assert handin.passed, failed(handin)
    messages = [f.message for f in handin.findings]
    assert messages[0].startswith("all 28 code cells ran in order, [1] to [28]")
    assert "300 training and 100 test images of 28 × 28, flattened to 784" in messages[2]
    ideas = [f.message for f in handin.group("experiments")]
    assert ideas == [
        "a wider layer: wide-256, cell 49 (Part 11)",
        "a second layer: deep-128-64, cell 49 (Part 11)",
        "more epochs: epochs-10, cell 49 (Part 11)",
        "dropout: dropout-0.2, cell 49 (Part 11)",
    ]
    texts = [f.name for f in handin.group("texts")]
    assert texts == ["text: the lab's model"] + [
        f"text: {v}" for v in ("baseline", "wide-256", "deep-128-64", "epochs-10", "dropout-0.2")
    ]
    assert result.stdout.splitlines()[-1] == f"{reference}: pass, all 20 checks"


@pytest.mark.notebook
def test_on_the_real_data_sizes_the_sample_reference_fails_its_shapes(reference):
    shapes = next(f for f in checking.check(reference).findings if f.name == "shapes")
    assert not shapes.passed
    assert shapes.message.startswith("no output shows (60000, 28, 28), (60000,), (10000, 28, 28)")


@pytest.mark.realdata
@pytest.mark.notebook
def test_the_quick_reference_notebook_on_the_real_data_passes(tmp_path):
    out = tmp_path / "reference.ipynb"
    result = CliRunner().invoke(cli.cli, ["notebook", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    handin = checking.check(out)
    assert handin.passed, failed(handin)
    lab = [f.message for f in handin.group("lab")]
    assert lab[0] == "60,000 training and 10,000 test images of 28 × 28, flattened to 784"
    assert lab[-1] == "cell 42 (Part 10) predicts 7 for test image 0"
    assert len(handin.group("texts")) == 9  # the lab's model and the 8 variants of lab.toml


def drop_dropout(nb):
    runner = code_cell(nb, "run_experiment(")
    for output in runner.outputs:
        if output.get("name") == "stdout":
            output.text = output.text.replace(
                '[[variants]]\nname = "dropout-0.2"\ndropout = 0.2\n', ""
            )
        if "text/markdown" in output.get("data", {}):
            table = output.data["text/markdown"]
            output.data["text/markdown"] = re.sub(r"^\| dropout-0\.2 .*\n", "", table, flags=re.M)
    nb.cells.remove(text_cell(nb, "variant", name="dropout-0.2"))


def mistype(nb):
    cell = text_cell(nb, "evaluation")
    cell.source = cell.source.replace("right 90.00%", "right 99.00%")


def error_in_training(nb):
    code_cell(nb, "model.fit(").outputs.append(
        new_output("error", ename="ValueError", evalue="boom", traceback=[])
    )


def out_of_order(nb):
    first, second = code_cell(nb, "x_train.reshape"), code_cell(nb, "model.summary()")
    first.execution_count, second.execution_count = second.execution_count, first.execution_count


def best_is_another(nb):
    # mnistlab's table gives each variant's validation accuracy, which the best is chosen on:
    # epochs-10 is made the best there, and the conclusion names the baseline
    runner = code_cell(nb, "run_experiment(")
    for output in runner.outputs:
        if "text/markdown" in output.get("data", {}):
            output.data["text/markdown"] = re.sub(
                r"^(\| (\S+) \| [\d,]+ \| \d+ \| )[\d.]+%",
                lambda m: m[1] + ("99.00%" if m[2] == "epochs-10" else "50.00%"),
                output.data["text/markdown"],
                flags=re.M,
            )
    text_cell(nb, "conclusion").source = "The best model is **baseline**."


@pytest.mark.notebook
@pytest.mark.parametrize(
    "change, messages",
    [
        (drop_dropout, ["no experiment with dropout"]),
        (
            mistype,
            [
                "the lab's model: the text (cell 40) says 99.00%, 80.00%, but cell 38 (Part 9) "
                "printed 0.9000"
            ],
        ),
        (error_in_training, ["cell 34 (Part 8): ValueError: boom"]),
        (
            out_of_order,
            [
                "cell 20 (Part 5) ran as [12] after [9]: the cells ran out of order; run them top "
                "to bottom (Restart Kernel and Run All Cells)"
            ],
        ),
        (
            best_is_another,
            [
                "the conclusion (cell 57) names baseline, at 50.00% on validation, but epochs-10 "
                "has the highest accuracy, 99.00% on validation"
            ],
        ),
    ],
)
def test_each_broken_hand_in_gets_its_finding_and_only_that(reference, change, messages):
    path = edited(reference, f"{change.__name__}.ipynb", change)
    assert failed(checking.check(path, sample=True)) == messages


@pytest.mark.notebook
def test_a_folder_of_hand_ins_gets_a_table(reference, tmp_path):
    folder = tmp_path / "handins"
    folder.mkdir()
    (folder / "reference.ipynb").write_bytes(reference.read_bytes())
    for change in (drop_dropout, mistype):
        edited(reference, f"{change.__name__}.ipynb", change).rename(
            folder / f"{change.__name__}.ipynb"
        )
    page = tmp_path / "report.html"
    result = CliRunner().invoke(cli.cli, ["check", "--sample", str(folder), "--html", str(page)])
    assert result.exit_code == 1
    table = result.stdout[result.stdout.index("| hand-in") :].splitlines()
    assert table == [
        "| hand-in | result | run | answers | lab | experiments | texts | best | bonus | failed |",
        "|---|---|---|---|---|---|---|---|---|---|",
        "| drop_dropout.ipynb | FAIL | ok | ok | ok | 1 failed | ok | ok | ok | 1 |",
        "| mistype.ipynb | FAIL | ok | ok | ok | ok | 1 failed | ok | ok | 1 |",
        "| reference.ipynb | pass | ok | ok | ok | ok | ok | ok | ok | 0 |",
        "",
        "1 of 3 hand-ins pass.",
    ]
    assert f"Wrote {page}" in result.stderr
    html = page.read_text()
    assert html.count('<tr class="fail">') == 2 and "no experiment with dropout" in html
    result = CliRunner().invoke(cli.cli, ["check", "--sample", "--json", str(folder)])
    values = json.loads(result.stdout)
    assert (values["passed"], values["failed"]) == (1, 2)
    assert [h["failed"] for h in values["handins"]] == [1, 1, 0]


# ---------------------------------------------------------------------------------------------
# The student's notebook, filled in


def trained(name, layers, epochs=5, data="x"):
    """An experiment's cell: build, compile, train and test a model, print its accuracy."""
    labels = data.replace("x", "y")
    return (
        f"{name} = keras.Sequential([keras.Input(shape=(784,)), {layers}, "
        'keras.layers.Dense(10, activation="softmax")])\n'
        f'{name}.compile(optimizer="adam", loss="sparse_categorical_crossentropy", '
        'metrics=["accuracy"])\n'
        f"{name}.fit({data}_train, {labels}_train, epochs={epochs}, validation_split=0.2, "
        "verbose=0)\n"
        f"_, accuracy = {name}.evaluate({data}_test, {labels}_test, verbose=0)\n"
        'print(f"Test accuracy: {accuracy:.4f}")'
    )


DENSE = 'keras.layers.Dense({}, activation="relu")'
ANSWERS = {
    "normalise": 'x_train = x_train.astype("float32") / 255.0\n'
    'x_test = x_test.astype("float32") / 255.0\n'
    "print(x_train.min(), x_train.max())",
    "flatten": "x_train = x_train.reshape(len(x_train), -1)\n"
    "x_test = x_test.reshape(len(x_test), -1)\n"
    'print("x_train shape:", x_train.shape)\nprint("x_test shape:", x_test.shape)',
    "model": "keras.utils.set_random_seed(1)\n"
    f"model = keras.Sequential([keras.Input(shape=(784,)), {DENSE.format(128)}, "
    'keras.layers.Dense(10, activation="softmax")])\nmodel.summary()',
    "count": f"small = keras.Sequential([keras.Input(shape=(784,)), {DENSE.format(64)}, "
    'keras.layers.Dense(10, activation="softmax")])\nprint(f"Keras: {small.count_params():,}")',
    "compile": 'model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", '
    'metrics=["accuracy"])',
    "fit": "history = model.fit(x_train, y_train, epochs=5, validation_split=0.2, verbose=2)",
    "evaluate": "test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)\n"
    'print(f"Test accuracy: {test_accuracy:.4f}")',
    "predict": "probabilities = model.predict(x_test[:1], verbose=0)\n"
    'print("Prediction:", np.argmax(probabilities[0]))\nprint("Label:", y_test[0])',
    "wider": trained("wider", DENSE.format(256)),
    "second_layer": trained("second_layer", f"{DENSE.format(128)}, {DENSE.format(64)}"),
    "more_epochs": trained("more_epochs", DENSE.format(128), epochs=10),
    "dropout": trained("dropout", f"{DENSE.format(128)}, keras.layers.Dropout(0.2)"),
    "bonus": "(bx_train, by_train), (bx_test, by_test) = "
    "mnistlab.datasets.fashion_mnist.load_data()\n"
    'bx_train = bx_train.reshape(len(bx_train), -1).astype("float32") / 255.0\n'
    'bx_test = bx_test.reshape(len(bx_test), -1).astype("float32") / 255.0\n'
    + trained("bonus", DENSE.format(128), data="bx"),
}
NAMES = {  # how a student names each model in the conclusion
    "evaluate": "the lab's model",
    "wider": "a wider layer",
    "second_layer": "a second layer",
    "more_epochs": "more epochs",
    "dropout": "dropout",
}


def fill_in(nb, sample: Path):
    """The student's notebook with every TODO answered; the data from the sample folder."""
    for cell in nb.cells:
        todo = cell.metadata.get("mnistlab", {}).get("todo")
        if todo:
            cell.source = "\n".join(cell.source.splitlines()[:2] + [ANSWERS[todo]])
        if cell.cell_type == "code":  # the sample's copies in place of the data sets
            cell.source = re.sub(
                r"mnistlab\.datasets\.(\w+)\.load_data\(\)",
                lambda m: f"sampled({m[1].replace('_', '-')!r})",
                cell.source,
            )
    setup = next(c for c in nb.cells if c.cell_type == "code")
    setup.source += (
        "\n\nfrom pathlib import Path\n\nfrom mnistlab.data import load_sample\n\n\n"
        "def sampled(name):\n"
        f"    data = load_sample(name, Path({str(sample)!r}) / name)\n"
        "    return data.train, data.test\n"
    )
    return nb


def answer(nb):
    """The text cells answered from the outputs above them, as a student would."""
    printed = {}
    for i, cell in enumerate(nb.cells):
        kind = cell.metadata.get("mnistlab", {}).get("answer")
        if not kind:
            continue
        above = next(c for c in reversed(nb.cells[:i]) if c.cell_type == "code")
        text = "".join(o.get("text", "") for o in above.outputs)
        found = re.search(r"Test accuracy: ([\d.]+)", text)
        if kind == "conclusion":
            best = max((k for k in printed if k in NAMES), key=lambda k: printed[k])
            cell.source = f"The best is **{NAMES[best]}**, {printed[best]:.2%}; one run each."
        elif found:
            printed[kind] = float(found[1])
            cell.source = f"It is right {printed[kind]:.1%} of the time."
        elif kind == "count":
            cell.source = "784 × 64 + 64 = 50,240 and 64 × 10 + 10 = 650: 50,890. Keras agrees."
        else:
            cell.source = "Answered."
    return nb


@pytest.fixture(scope="module")
def filled(folder) -> Path:
    nb = fill_in(notebook.build_student("mnist"), folder / "sample")
    out = folder / "student" / "filled.ipynb"
    out.parent.mkdir()
    nb = notebook.execute(nb, out.parent)
    notebook.write(answer(nb), out)
    return out


@pytest.mark.notebook
def test_the_student_notebook_once_filled_in_runs_and_passes(filled):
    handin = checking.check(filled, sample=True)
    assert handin.passed, failed(handin)
    ideas = [f.message.split(",")[0] for f in handin.group("experiments")]
    assert ideas == [
        "a wider layer: wider (256",
        "a second layer: second layer (128-64",
        "more epochs: more epochs (128",
        "dropout: dropout (128",
    ]
    assert len(handin.group("texts")) == 5  # the lab's model and the four experiments
    assert handin.group("bonus")[1].passed


@pytest.mark.notebook
def test_a_filled_in_student_notebook_without_its_answers_fails_on_them(filled, tmp_path):
    nb = nbformat.read(filled, as_version=4)
    blank = copy.deepcopy(nb)
    for cell in blank.cells:
        if cell.metadata.get("mnistlab", {}).get("answer") == "wider":
            cell.source = f"*{notebook.ANSWER}*"
    nbformat.write(blank, tmp_path / "blank.ipynb")
    messages = failed(checking.check(tmp_path / "blank.ipynb", sample=True))
    assert messages[0].startswith("1 question not answered ('Your answer here.'): cell ")
    assert "the text (cell" in messages[1] and "gives no accuracy" in messages[1]


# ---------------------------------------------------------------------------------------------
# Running a hand-in again


def ran(*cells) -> object:
    """A notebook of code cells with their outputs, as handed in."""
    nb = new_notebook()
    for count, (source, printed) in enumerate(cells, start=1):
        cell = new_code_cell(source, execution_count=count)
        cell.outputs = [new_output("stream", name="stdout", text=printed)] if printed else []
        nb.cells.append(cell)
    return nb


def rerun_findings(tmp_path, nb, limits=None):
    path = tmp_path / "handin.ipynb"
    nbformat.write(nb, path)
    return checking.check(path, rerun_limits=limits or Limits(120)).group("rerun")


@pytest.mark.notebook
def test_a_rerun_that_prints_what_was_handed_in_agrees(tmp_path):
    nb = ran(
        ('print("x_train shape:", (300, 28, 28))', "x_train shape: (300, 28, 28)\n"),
        ('print("Test accuracy: 0.9000")', "Test accuracy: 0.9000\n"),
    )
    findings = rerun_findings(tmp_path, nb)
    assert [(f.passed, f.message) for f in findings] == [
        (True, "the same shapes, parameter counts, first prediction again"),
        (True, "cell 2, test accuracy: 0.9000 handed in, 0.9000 again"),
    ]


@pytest.mark.notebook
def test_a_rerun_finds_outputs_that_were_typed_in(tmp_path):
    nb = ran(
        ('print("x_train shape:", (300, 28, 28))', "x_train shape: (60000, 28, 28)\n"),
        ('print("Test accuracy: 0.9000")', "Test accuracy: 0.9500\n"),
    )
    findings = rerun_findings(tmp_path, nb)
    assert [(f.passed, f.message) for f in findings] == [
        (False, "shapes: ['(60000, 28, 28)'] handed in, ['(300, 28, 28)'] again"),
        (
            False,
            "cell 2, test accuracy: 0.9500 handed in, 0.9000 again: more than 1.1 points apart",
        ),
    ]


@pytest.mark.notebook
def test_a_rerun_stops_at_its_memory_limit(tmp_path):
    nb = ran(("import numpy as np\nbig = np.ones(2**28)", ""))  # 2 GiB
    findings = rerun_findings(tmp_path, nb, Limits(120, GIB))
    assert findings[0].message.startswith(
        "the rerun stopped: MemoryError: Unable to allocate 2.00 GiB"
    )
    assert findings[0].message.endswith("(limits: 120 s, 1 GiB)")


@pytest.mark.notebook
def test_the_command_warns_before_running_a_hand_in(tmp_path):
    nb = ran(('print("Test accuracy: 0.9000")', "Test accuracy: 0.9000\n"))
    path = tmp_path / "handin.ipynb"
    nbformat.write(nb, path)
    result = CliRunner().invoke(cli.cli, ["check", "--rerun", "--timeout", "60", str(path)])
    assert result.stderr.startswith(
        "warning: --rerun runs the code of each hand-in, and a notebook can run any code. It "
        "runs in a fresh kernel in a temporary folder, limited to 60 s and 4 GiB"
    )
    assert "  ok    rerun        cell 1, test accuracy: 0.9000 handed in, 0.9000 again" in (
        result.stdout
    )


def test_nothing_is_run_without_rerun(tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("a kernel was started")

    monkeypatch.setattr(notebook, "execute", never)
    nb = ran(("import os; os.remove('everything')", ""))
    nb.cells.insert(0, new_markdown_cell("# A hand-in"))
    path = tmp_path / "handin.ipynb"
    nbformat.write(nb, path)
    assert checking.check(path).group("rerun") == ()
