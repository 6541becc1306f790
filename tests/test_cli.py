"""The command line through Click's runner: output, files and exit codes."""

import json
import os
import shutil
import threading
from pathlib import Path

import click
import keras
import pytest
from click.testing import CliRunner
from PIL import Image

from mnistlab import cli, data
from mnistlab.cli.common import DATASETS
from mnistlab.spec import PRESETS


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def fake_data(monkeypatch, tiny):
    """Every command that loads a data set gets the synthetic one."""
    calls = []

    def load(name, **options):
        calls.append(name)
        return tiny

    monkeypatch.setattr(data, "load", load)
    return calls


def invoke(runner, *args):
    return runner.invoke(cli.cli, list(args), prog_name="mnistlab")


def test_summary_prints_the_parameter_count(runner):
    result = invoke(runner, "summary")
    assert result.exit_code == 0
    assert "Total params: 101,770" in result.output
    assert "Total params: 50,890" in invoke(runner, "summary", "--hidden", "64").output
    assert "Total params: 109,386" in invoke(runner, "summary", "--preset", "deep").output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["summary", "--hidden", "12,abc"],
            "error: --hidden '12,abc' is not a list of sizes",
        ),
        (
            ["summary", "--epochs", "0"],
            "error: epochs = 0 is out of range. epochs must be from 1 to 1,000",
        ),
        (["summary", "--dropout", "1"], "error: dropout = 1.0 is out of range"),
        (["summary", "--validation-split", "1.5"], "error: validation_split = 1.5 is out of range"),
        (["summary", "--preset", "huge"], "error: Invalid value for '--preset': 'huge' is not"),
        (
            ["train", "--shift", "9"],
            "error: shift = 9 is out of range. shift must be a number of pixels from 0 to 8",
        ),
        (["train", "--lr", "0"], "error: learning_rate = 0.0 is out of range"),
        (["lab", "--epochs", "0"], "error: epochs = 0 is out of range"),
        (["summary", "--epochs", "many"], "'many' is not a valid integer"),
        (["summary", "--colour"], "No such option '--colour'"),
        (["summary", "--backend", "torch"], "'torch' is not one of 'tensorflow', 'jax'"),
        (["train", "--dataset", "cifar"], "'cifar' is not one of 'mnist', 'fashion-mnist'"),
        (["data", "info", "emnist"], "'emnist' is not one of"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_code_2(runner, args, message):
    result = invoke(runner, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["train", "--epochss", "3"],  # not '--epoch': it is close to '--spec' too
            "error: No such option '--epochss'. Did you mean '--epochs'? "
            "See `mnistlab train --help`",
        ),
        (["data", "--colour"], "error: No such option '--colour'. See `mnistlab data --help`"),
        (["evaluate"], "error: Missing argument 'RUN_DIR'. See `mnistlab evaluate --help`"),
        (
            ["data", "info"],
            "error: Missing argument 'DATASET'. Choose from: mnist, fashion-mnist. "
            "See `mnistlab data info --help`",
        ),
        (
            ["train", "--dataset"],
            "error: Option '--dataset' requires an argument. See `mnistlab train --help`",
        ),
        (
            ["data", "show", "mnist", "--out"],
            "error: Option '--out' requires an argument. See `mnistlab data show --help`",
        ),
        (
            ["train", "--preset", "huge"],
            "error: Invalid value for '--preset': 'huge' is not one of 'lab', 'wide', 'deep', "
            "'long', 'dropout', 'cnn', 'best', 'handwriting', 'fast', 'fast-99.5', "
            "'fast-99.65'. "
            "See `mnistlab train --help`",
        ),
        (
            ["data", "verify", "emnist"],
            "error: Invalid value for 'DATASET': 'emnist' is not one of 'mnist', "
            "'fashion-mnist'. See `mnistlab data verify --help`",
        ),
        (
            ["summary", "--epochs", "many"],
            "error: Invalid value for '--epochs': 'many' is not a valid integer. "
            "See `mnistlab summary --help`",
        ),
        (["frobnicate"], "error: No such command 'frobnicate'. See `mnistlab --help`"),
        (["data", "frob"], "error: No such command 'frob'. See `mnistlab data --help`"),
        (
            ["train", "--epochs", "0"],
            "error: epochs = 0 is out of range. epochs must be from 1 to 1,000",
        ),
    ],
)
def test_usage_errors_are_one_line_naming_the_command_and_exit_2(runner, args, line):
    result = invoke(runner, *args)
    assert result.exit_code == 2
    assert result.stderr == line + "\n"
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        ([], "Usage: mnistlab [OPTIONS] COMMAND [ARGS]..."),
        (["--help"], "Usage: mnistlab [OPTIONS] COMMAND [ARGS]..."),
        (["data"], "Usage: mnistlab data [OPTIONS] COMMAND [ARGS]..."),
        (["data", "-h"], "Usage: mnistlab data [OPTIONS] COMMAND [ARGS]..."),
        (["data", "show", "--help"], "Usage: mnistlab data show [OPTIONS] DATASET"),
        (["train", "-h"], "Usage: mnistlab train [OPTIONS]"),
    ],
)
def test_a_group_alone_and_help_print_help_and_exit_0(runner, args, usage):
    result = invoke(runner, *args)
    assert result.exit_code == 0
    assert result.stdout.startswith(usage + "\n")
    assert result.stderr == ""


def test_version_is_the_one_runs_record(runner):
    from mnistlab.version import __version__

    result = invoke(runner, "--version")
    assert result.exit_code == 0
    assert result.stdout == f"mnistlab, version {__version__}\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "show", "mnist", "--index", "-1"], "'--index': -1 is not in the range x>=0"),
        (["data", "show", "mnist", "--grid", "0"], "'--grid': 0 is not in the range 1<=x<=400"),
        (["data", "show", "mnist", "--grid", "401"], "'--grid': 401 is not in the range"),
        (["predict", "RUN", "--index", "-3"], "'--index': -3 is not in the range x>=0"),
        (["bench", "--epochs", "0"], "'--epochs': 0 is not in the range x>=1"),
        (["experiment", "lab", "--seeds", "0"], "'--seeds': 0 is not in the range 1<=x<=1000"),
        (["experiment", "lab", "--seeds", "1001"], "'--seeds': 1001 is not in the range"),
        (["serve", "RUN", "--port", "0"], "'--port': 0 is not in the range 1<=x<=65535"),
    ],
)
def test_numbers_out_of_range_are_refused_before_any_work(runner, fake_data, args, message):
    result = invoke(runner, *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: Invalid value for {message}")
    assert fake_data == []  # no data set loaded


def test_the_grid_limit_is_the_library_s():
    from mnistlab.cli.common import MAX_GRID
    from mnistlab.reports.figures import MAX_GRID as LIBRARY_MAX_GRID

    assert MAX_GRID == LIBRARY_MAX_GRID


def all_commands(group=None, path=()):
    """Every command of `mnistlab`, by its path: {("data", "show"): command, ...}."""
    group = group or cli.cli
    found = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found |= all_commands(command, (*path, name))
        else:
            found[(*path, name)] = command
    return found


def test_out_is_a_folder_except_where_one_file_is_the_point():
    from mnistlab.cli.common import Folder

    kinds = {
        " ".join(path): "folder" if isinstance(option.type, Folder) else "file"
        for path, command in all_commands().items()
        for option in command.params
        if option.name == "out"
    }
    assert kinds == {
        "train": "folder",
        "tune": "folder",
        "lab": "folder",
        "predict": "folder",
        "experiment": "folder",
        "compare": "folder",
        "report": "folder",
        "finetune": "folder",
        "export": "folder",
        "data show": "file",
        "notebook": "file",
        "explain": "file",
    }
    assert "--out is where a command writes what it makes" in cli.cli.help


@pytest.mark.parametrize("command", ["train", "summary"])
def test_every_spec_field_has_a_flag(command):
    import dataclasses

    from mnistlab.spec import Spec

    options = {p.name: p for p in cli.cli.commands[command].params}
    given = cli.cli.commands[command].make_context(command, []).params
    for field in dataclasses.fields(Spec):
        assert field.name in options, f"no flag for Spec.{field.name} on mnistlab {command}"
        assert isinstance(options[field.name], click.Option)
        assert given[field.name] is None  # not given: the preset's value stands


def test_train_evaluate_predict(runner, fake_data, tmp_path, tiny):
    out = tmp_path / "run"
    result = invoke(runner, "train", "--epochs", "1", "--hidden", "32", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"Training on mnist with {keras.backend.backend()} (CPU): hidden [32]" in result.output
    assert "Test accuracy: " in result.output
    assert f"Saved run to {out}" in result.output
    assert (out / "model.keras").is_file()
    meta = json.loads((out / "run.json").read_text())
    assert meta["spec"]["hidden"] == [32]
    assert meta["spec"]["epochs"] == 1
    loop = "compiled" if keras.backend.backend() == "jax" else "fit"
    assert meta["loop"] == loop
    said = {"compiled": "; each epoch one compiled program", "fit": "; Keras's model.fit"}
    assert said[loop] in result.output

    result = invoke(runner, "evaluate", str(out))
    assert result.exit_code == 0, result.output
    accuracy = meta["metrics"]["accuracy"]
    assert f"Test accuracy: {accuracy:.2%}" in result.output
    assert result.output.count("%") == 11  # overall and one line per class

    report = json.loads(invoke(runner, "evaluate", str(out), "--json").output)
    assert report["accuracy"] == pytest.approx(accuracy)
    assert len(report["per_class_accuracy"]) == 10

    result = invoke(runner, "predict", str(out), "--index", "0", "--out", str(tmp_path / "seen"))
    assert result.exit_code == 0, result.output
    label = int(tiny.test[1][0])
    assert f"Actual label: {label}" in result.output
    assert "Model prediction: " in result.output
    figure = tmp_path / "seen" / "prediction-0.png"
    assert f"Wrote {figure}" in result.output
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    result = invoke(
        runner, "predict", str(out), "--index", "5", "--json", "--out", str(figure.parent)
    )
    answer = json.loads(result.output)
    assert answer["shown"] == str(tmp_path / "seen" / "prediction-5.png")
    assert sorted(p.name for p in figure.parent.iterdir()) == [
        "prediction-0.png",
        "prediction-5.png",
    ]
    assert answer["label"] == int(tiny.test[1][5])
    assert sum(answer["probabilities"]) == pytest.approx(1, abs=1e-4)
    assert answer["prediction"] == max(range(10), key=answer["probabilities"].__getitem__)

    result = invoke(runner, "predict", str(out), "--index", "100")
    assert result.exit_code == 2
    assert "error: index 100 is out of range: the test set has 100 images" in result.output


def test_train_refuses_a_used_folder_before_training(runner, fake_data, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    result = invoke(runner, "train", "--out", str(tmp_path))
    assert result.exit_code == 2
    assert "already exists and is not empty" in result.output
    assert "Training on" not in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_missing_and_foreign_run_folders(runner, tmp_path):
    result = invoke(runner, "evaluate", str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert "error: no run folder at" in result.output
    result = invoke(runner, "predict", str(tmp_path), "--index", "0")
    assert result.exit_code == 2
    assert "is not an mnistlab run folder" in result.output


def test_data_info_and_show(runner, fake_data, tmp_path):
    result = invoke(runner, "data", "info", "mnist")
    assert result.exit_code == 0
    assert "x_train shape:  (400, 28, 28)" in result.output
    assert "y_test shape:   (100,)" in result.output
    assert json.loads(invoke(runner, "data", "info", "mnist", "--json").output)["shapes"][
        "x_test"
    ] == [100, 28, 28]

    png = tmp_path / "first.png"
    result = invoke(runner, "data", "show", "mnist", "--index", "0", "--out", str(png))
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    result = invoke(
        runner, "data", "show", "mnist", "--grid", "12", "--out", str(tmp_path / "g.png")
    )
    assert result.exit_code == 0
    assert (tmp_path / "g.png").stat().st_size > png.stat().st_size

    result = invoke(runner, "data", "show", "mnist", "--index", "400", "--out", str(png))
    assert result.exit_code == 2
    assert "index 400 is out of range: the train set has 400 images" in result.output
    result = invoke(runner, "data", "show", "mnist", "--out", str(tmp_path / "first.jpg"))
    assert result.exit_code == 2
    assert "does not end in .png" in result.output


def test_data_verify_reports_a_bad_cache(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path))
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01junk")
    result = invoke(runner, "data", "verify", "mnist")
    assert result.exit_code == 2
    assert "bad     mnist/t10k-labels-idx1-ubyte" in result.output
    assert "missing mnist/train-images-idx3-ubyte" in result.output
    assert "error: 1 cached file failed its check" in result.output


def test_lab_runs_every_step(runner, fake_data, tmp_path):
    out = tmp_path / "lab"
    result = invoke(runner, "lab", "--epochs", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    for step in (
        "1. The data",
        "2. A first look",
        "3. The model",
        "4. Training",
        "5. Evaluation",
        "6. Prediction",
        "Total params: 101,770",
        "Model prediction:",
    ):
        assert step in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "first-image.png",
        "prediction.png",
        "run",
        "samples.png",
    ]


def fake_bench(monkeypatch, results):
    from mnistlab import bench

    monkeypatch.setattr(bench, "run", lambda path, epochs=0: results[path])


def test_bench_prints_both_paths_and_the_ratios_of_later_epochs_and_whole_processes(
    runner, monkeypatch
):
    timing = {"backend": "jax", "device": "CPU", "parameters": 101_770}
    plain = {"path": "plain", "loop": "fit", "seconds": [9.0, 4.0, 4.0], "test_accuracy": 0.97}
    fast = {
        "path": "mnistlab",
        "loop": "compiled",
        "seconds": [3.0, 0.5, 0.5],
        "test_accuracy": 0.9712,
    }
    fake_bench(
        monkeypatch,
        {
            "plain": timing | plain | {"process_seconds": 24.0},
            "mnistlab": timing | fast | {"process_seconds": 7.5},
        },
    )
    result = invoke(runner, "bench")
    assert result.exit_code == 0, result.output
    assert (
        "Ratio (plain / mnistlab, seconds per epoch after the first): 8.0x (target 9x)"
        in result.output
    )
    assert (
        "Ratio (plain / mnistlab, whole process of 3 epochs, start to exit): 3.2x" in result.output
    )
    assert (
        "mnistlab   jax         compiled  CPU                         3.00s    0.50s    7.50s"
        "    97.12%" in result.output
    )
    answer = json.loads(invoke(runner, "bench", "--json").stdout)
    assert (answer["ratio"], answer["process_ratio"]) == (8.0, 3.2)
    assert [p["process_seconds"] for p in answer["paths"]] == [24.0, 7.5]
    assert invoke(runner, "bench", "--epochs", "0").exit_code == 2


def test_bench_rounds_alternate_the_paths_and_give_the_median_ratios(runner, monkeypatch):
    from mnistlab import bench

    timing = {"backend": "jax", "device": "CPU", "loop": "fit", "test_accuracy": 0.97}
    plains = iter([[9.0, 4.0], [9.0, 5.0], [9.0, 3.0]])
    order = []

    def run(path, epochs):
        order.append(path)
        seconds = next(plains) if path == "plain" else [3.0, 0.5]
        return timing | {"path": path, "seconds": seconds, "process_seconds": 2 * seconds[0]}

    monkeypatch.setattr(bench, "run", run)
    result = invoke(runner, "bench", "--rounds", "3")
    assert result.exit_code == 0, result.output
    assert order == ["plain", "mnistlab"] * 3
    assert (
        "seconds per epoch after the first): 8.0x, median of 3 rounds (8.0x, 10.0x, 6.0x) "
        "(target 9x)" in result.output
    )
    assert "start to exit): 3.0x, median of 3 rounds (3.0x, 3.0x, 3.0x)" in result.output
    assert invoke(runner, "bench", "--rounds", "0").exit_code == 2


def to_accuracy(target, tests, validations=None):
    """What `bench.run("to", target, seed)` returns, for each seed's test accuracy."""
    validations = validations or [None] * len(tests)
    runs = iter(
        {
            "device": "CPU",
            "backend": "tensorflow",
            "loop": "fit",
            "seed": seed,
            "seconds": [3.0, 2.5, 2.0],
            "train_seconds": 7.5 + seed / 10,
            "evaluate_seconds": 1.25,
            "spec": {"test_shifts": 1},
            "validation_accuracy": validation,
            "test_accuracy": test,
        }
        for seed, (test, validation) in enumerate(zip(tests, validations, strict=True), start=1)
    )
    return lambda path, target_asked, seed, *backend: next(runs)


def test_bench_to_trains_the_targets_preset_once_a_seed_and_prints_the_means(runner, monkeypatch):
    from mnistlab import bench

    asked = []
    answers = to_accuracy("99.5", [0.9950, 0.9956, 0.9953], [0.9941, 0.9944, 0.9939])

    def run(path, target, seed):
        asked.append((path, target, seed))
        return answers(path, target, seed)

    monkeypatch.setattr(bench, "run", run)
    result = invoke(runner, "bench", "--to", "99.5")
    assert result.exit_code == 0, result.output
    assert asked == [("to", "99.5", 1), ("to", "99.5", 2), ("to", "99.5", 3)]
    assert (
        f"preset {bench.TARGETS['99.5'][0]}: tensorflow, fit loop, CPU, test shifts of 1 px)"
        in result.output
    )
    assert "   2      3     3.0s      7.7s   99.44%    99.56%      1.2s" in result.output
    assert "Mean of 3 seeds: 99.53% ± 0.03% test accuracy (target 99.5%) in 7.7 s" in (
        result.output
    )
    assert "(target 120 s;" in result.output


def test_bench_to_trains_on_the_backend_asked_for_and_only_with_to(runner, monkeypatch):
    from mnistlab import bench

    asked = []
    monkeypatch.setattr(bench, "run", lambda *args: asked.append(args) or next(iter([{}])))
    monkeypatch.setattr("mnistlab.cli.bench.print_to_accuracy", lambda *args: None)
    assert (
        invoke(runner, "bench", "--to", "99.0", "--seeds", "1", "--backend", "jax").exit_code == 0
    )
    assert asked == [("to", "99.0", 1, "jax")]
    result = invoke(runner, "bench", "--backend", "jax")
    assert result.exit_code == 2 and "--backend applies to --to only" in result.output


def test_bench_to_says_so_when_the_mean_falls_short(runner, monkeypatch):
    from mnistlab import bench

    monkeypatch.setattr(bench, "run", to_accuracy("99.0", [0.9912, 0.9885]))
    result = invoke(runner, "bench", "--to-99", "--seeds", "2")
    assert result.exit_code == 2
    assert "preset fast reached 98.98%, short of 99.0%, over 2 seeds" in result.output
    assert "   1      3     3.0s      7.6s        -    99.12%" in result.output


def test_counts_of_one_take_the_singular(runner, monkeypatch, tiny_run):
    from mnistlab import bench

    monkeypatch.setattr(bench, "run", to_accuracy("99.0", [0.9912]))
    result = invoke(runner, "bench", "--to-99", "--seeds", "1")
    assert "Mean of 1 seed: 99.12% ± 0.00%" in result.output

    result = invoke(runner, "compare", str(tiny_run))
    assert result.exit_code == 0, result.output
    assert "seeds [1]; 1 run on " in result.output
    assert "over 1 seed." in result.output


def test_plural():
    from mnistlab.text import plural

    assert [plural(n, "epoch") for n in (0, 1, 2, 1000)] == [
        "0 epochs",
        "1 epoch",
        "2 epochs",
        "1,000 epochs",
    ]
    assert plural(1, "class", "classes") == "1 class"
    assert plural(3, "class", "classes") == "3 classes"


def test_predict_image_files(runner, tiny_run, tmp_path, monkeypatch):
    from photos import encode, seven, strokes

    from mnistlab import images as pr

    good = tmp_path / "seven.png"
    good.write_bytes(encode(strokes((300, 300), seven(50, 50, 200), 14)))
    jpeg = tmp_path / "also" / "seven.jpg"
    jpeg.parent.mkdir()
    jpeg.write_bytes(encode(strokes((300, 300), seven(80, 60, 200), 14), "JPEG"))
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "blank.png").write_bytes(encode(strokes((100, 100), [], 1)))
    (tmp_path / "big.png").write_bytes(b"\0" * 5000)
    monkeypatch.setattr(pr, "MAX_BYTES", 4000)
    names = ["seven.png", "notes.txt", "empty.png", "missing.png", "blank.png", "big.png"]
    show = tmp_path / "seen"
    args = [str(tmp_path / n) for n in names] + [str(jpeg), "--out", str(show)]
    result = invoke(runner, "predict", str(tiny_run), *args)
    assert result.exit_code == 2
    lines = result.output.splitlines()
    ok = [line for line in lines if line.startswith(str(tmp_path)) and line.endswith("%")]
    assert len(ok) == 2  # both sevens, each with its three most likely classes
    assert all(line.count("%") == 3 for line in ok)
    for name, message in [
        ("notes.txt", "the file is not an image that can be read"),
        ("empty.png", "the file is empty"),
        ("missing.png", "no such file"),
        ("blank.png", "no ink found"),
        ("big.png", "the file is 5,000 bytes, over the limit of 4,000 bytes"),
    ]:
        assert f"error: {tmp_path / name}: {message}" in result.output
    assert "error: 5 of 7 files could not be read" in result.output
    assert f"Wrote the 2 images the model saw (28x28) into {show}" in result.stdout
    seen = sorted(p.name for p in show.iterdir())
    assert seen == ["seven-28x28-2.png", "seven-28x28.png"]  # two files named seven
    assert Image.open(show / "seven-28x28.png").size == (28, 28)


def test_predict_image_files_as_json(runner, tiny_run, tmp_path):
    from photos import encode, seven, strokes

    picture = tmp_path / "seven.png"
    picture.write_bytes(encode(strokes((300, 300), seven(50, 50, 200), 14)))
    result = invoke(runner, "predict", str(tiny_run), str(picture), "--json")
    assert result.exit_code == 0, result.output
    (answer,) = json.loads(result.output)
    assert answer["file"] == str(picture)
    assert answer["inverted"] is True
    assert len(answer["probabilities"]) == 10
    assert answer["label"] == max(range(10), key=answer["probabilities"].__getitem__)
    assert [t["label"] for t in answer["top"]][0] == answer["label"]
    assert answer["class_name"] == str(answer["label"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "error: nothing to predict"),
        (["x.png", "--index", "0"], "error: give either image files or --index N, not both"),
        (
            ["--index", "0", "--out", "p.png"],
            "error: Invalid value for '--out': 'p.png' is the name of a file, and --out is the "
            "folder that `mnistlab predict` writes its files into: name a folder. "
            "See `mnistlab predict --help`",
        ),
        (["x.png", "--show", "seen"], "error: No such option '--show'"),
    ],
)
def test_predict_needs_images_or_an_index(runner, tiny_run, args, message):
    result = invoke(runner, "predict", str(tiny_run), *args)
    assert result.exit_code == 2
    assert message in result.output


def test_serve_refuses_a_port_in_use(runner, tiny_run):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = invoke(runner, "serve", str(tiny_run), "--port", str(port))
    assert result.exit_code == 2
    assert f"error: cannot listen on 127.0.0.1:{port}" in result.output
    result = invoke(runner, "serve", "/nonexistent/run")
    assert result.exit_code == 2
    assert "error: no run folder at /nonexistent/run" in result.output


def completions(args, incomplete):
    """What `mnistlab ARGS INCOMPLETE<TAB>` offers, through Click's completion machinery."""
    from click.shell_completion import ShellComplete

    complete = ShellComplete(cli.cli, {}, "mnistlab", "_MNISTLAB_COMPLETE")
    return [(item.type, item.value) for item in complete.get_completions(args, incomplete)]


def plain(*values):
    return [("plain", value) for value in values]


@pytest.mark.parametrize(
    ("args", "incomplete", "expected"),
    [
        ([], "tr", plain("train")),
        (["data"], "", plain("info", "show", "verify")),
        (["train", "--preset"], "", plain(*PRESETS)),
        (["summary", "--preset"], "d", plain("deep", "dropout")),
        (["train", "--dataset"], "", plain("mnist", "fashion-mnist")),
        (["lab", "--dataset"], "f", plain("fashion-mnist")),
        (["notebook", "--dataset"], "m", plain("mnist")),
        (["data", "info"], "", plain("mnist", "fashion-mnist")),
        (["data", "show"], "fa", plain("fashion-mnist")),
        (["data", "verify", "mnist"], "", plain("mnist", "fashion-mnist")),
        (["train", "--backend"], "", plain("tensorflow", "jax")),
        (["experiment"], "best-m", [("file", "best-m"), *plain("best-mlp", "best-mlp-fashion")]),
        (["experiment"], "./mine", [("file", "./mine")]),
        (["notebook", "--experiments"], "fa", [("file", "fa"), *plain("fashion")]),
        (["train", "--out"], "ru", [("dir", "ru")]),
    ],
)
def test_shell_completion_offers_the_names(args, incomplete, expected):
    assert completions(args, incomplete) == expected


def test_experiment_completion_offers_every_shipped_name_and_files():
    from mnistlab.cli.common import shipped_experiments
    from mnistlab.experiments import names

    assert shipped_experiments() == names()
    assert {"lab", "fashion", "best"} <= set(names())
    assert completions(["experiment"], "") == [("file", ""), *plain(*names())]


def test_shell_completion_through_the_environment_as_the_shell_scripts_call_it(runner):
    def complete(shell, words, cword):
        env = {"_MNISTLAB_COMPLETE": f"{shell}_complete", "COMP_WORDS": words}
        result = runner.invoke(
            cli.cli, [], prog_name="mnistlab", env=env | {"COMP_CWORD": str(cword)}
        )
        assert result.exit_code == 0
        return result.stdout.splitlines()

    assert complete("bash", "mnistlab experiment fa", 2) == ["file,fa", "plain,fashion"]
    assert complete("bash", "mnistlab data info ", 3) == ["plain,mnist", "plain,fashion-mnist"]
    # zsh's script skips an empty value and would misread what follows: files come last there
    zsh = complete("zsh", "mnistlab experiment ", 2)
    assert zsh[:3] == ["plain", "best", "_"]
    assert zsh[-3:] == ["file", "", "_"]
    source = runner.invoke(
        cli.cli, [], prog_name="mnistlab", env={"_MNISTLAB_COMPLETE": "bash_source"}
    )
    assert "complete -o nosort -F _mnistlab_completion mnistlab" in source.stdout


PRESET_CHOICE = f"--preset [{'|'.join(PRESETS)}]"
DATASET_CHOICE = f"--dataset [{'|'.join(DATASETS)}]"
DATASET_ARGUMENT = f"DATASET: {' or '.join(DATASETS)}"


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["train"], (PRESET_CHOICE, DATASET_CHOICE)),
        (["summary"], (PRESET_CHOICE,)),
        (["lab"], (DATASET_CHOICE,)),
        (["notebook"], (DATASET_CHOICE,)),
        (["data", "info"], (DATASET_ARGUMENT,)),
        (["data", "show"], (DATASET_ARGUMENT,)),
        (["data", "verify"], (DATASET_ARGUMENT,)),
    ],
)
def test_help_names_the_presets_and_data_sets(runner, args, shown):
    result = invoke(runner, *args, "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for names in shown:
        assert names in text


def test_experiment_help_names_the_shipped_experiments(runner):
    from mnistlab.experiments import names

    text = " ".join(invoke(runner, "experiment", "--help").output.split())
    assert f"Shipped experiments: {', '.join(names())}." in text


# ---------------------------------------------------------------------------------------------
# Where a command writes is checked before any work: a file in the way, a read-only folder,
# a read-only working folder

TINY_EXPERIMENT = """
name = "tiny"
dataset = "mnist"
seeds = [1]
baseline = "a"

[base]
epochs = 1
hidden = [8]

[[variants]]
name = "a"
"""


def writing_commands(tmp_path, tiny_run):
    """Each command that writes, as a function of where it writes (None: its default)."""
    picture = tmp_path / "seven.png"
    Image.new("L", (28, 28), 255).save(picture)
    experiment = tmp_path / "tiny.toml"
    experiment.write_text(TINY_EXPERIMENT)
    run = str(tiny_run)

    def out(path, name=""):
        return ["--out", str(path / name if name else path)] if path is not None else []

    return {
        "data-show": lambda p: ["data", "show", "mnist", *out(p or Path("."), "a.png")],
        "predict-index": lambda p: ["predict", run, "--index", "0", *out(p or Path("shown"))],
        "predict-files": lambda p: ["predict", run, str(picture), *out(p or Path("shown"))],
        "report": lambda p: ["report", run, *out(p or Path("report"))],
        "compare": lambda p: ["compare", run, *out(p or Path("table"))],
        "notebook": lambda p: ["notebook", "--quick", *out(p, "lab.ipynb")],
        "notebook-html": lambda p: ["notebook", "--quick", "--html", *out(p, "lab.ipynb")],
        "experiment": lambda p: ["experiment", str(experiment), *out(p)],
    }


COMMANDS_THAT_WRITE = [
    "data-show",
    "predict-index",
    "predict-files",
    "report",
    "compare",
    "notebook",
    "notebook-html",
    "experiment",
]


def locked_folder(tmp_path, monkeypatch):
    """A folder nobody may write into: root may all the same (mode 0o555 binds other users
    only), so os.access answers for it as the kernel answers them."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda p, mode, **kw: (
            real_access(p, mode, **kw) and not (mode & os.W_OK and Path(p) == locked)
        ),
    )
    return locked


@pytest.mark.parametrize("where", ["under-a-file", "read-only", "read-only-working-folder"])
@pytest.mark.parametrize("command", COMMANDS_THAT_WRITE)
def test_a_place_that_cannot_be_written_is_refused_before_any_work(
    runner, fake_data, tiny_run, tmp_path, monkeypatch, command, where
):
    args = writing_commands(tmp_path, tiny_run)[command]
    if where == "under-a-file":
        (tmp_path / "F").write_text("mine")
        argv, why = args(tmp_path / "F" / "deeper"), f"{tmp_path / 'F'} is a file, not a folder"
    else:
        locked = locked_folder(tmp_path, monkeypatch)
        why = f"{locked} is not writable"
        if where == "read-only":
            argv = args(locked / "deeper")
        else:
            monkeypatch.chdir(locked)
            argv = args(None)  # the default place, in the working folder, or a relative one
    result = invoke(runner, *argv)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: cannot write ") and "Traceback" not in result.output
    assert f": {why}. choose another place with --out" in result.output
    assert fake_data == []  # refused before the data was loaded
    if where == "under-a-file":
        assert (tmp_path / "F").read_text() == "mine"
    else:
        assert list(locked.iterdir()) == []


def test_a_read_only_run_folder_is_refused_by_report(
    runner, fake_data, tiny_run, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda p, mode, **kw: (
            real_access(p, mode, **kw) and not (mode & os.W_OK and Path(p) == run)
        ),
    )
    result = invoke(runner, "report", str(run))
    assert result.exit_code == 2
    assert f"error: cannot write {run / 'report'}: {run} is not writable" in result.output
    assert fake_data == []


def test_experiment_refuses_a_tensorboard_folder_that_cannot_be_written(
    runner, fake_data, tmp_path, tiny_run
):
    (tmp_path / "F").write_text("mine")
    argv = writing_commands(tmp_path, tiny_run)["experiment"](tmp_path / "sweep")
    result = invoke(runner, *argv, "--tensorboard", str(tmp_path / "F" / "tb"))
    assert result.exit_code == 2
    assert "is a file, not a folder. choose another place with --tensorboard" in result.output
    assert fake_data == []


def test_the_library_refuses_the_same_places_with_a_mnistlab_error(tiny, tiny_run, tmp_path):
    from mnistlab import experiments, notebook, prediction, runs
    from mnistlab.errors import MnistlabError
    from mnistlab.reports import figures, page, tables
    from mnistlab.results import compare_runs

    (tmp_path / "F").write_text("mine")
    bad = tmp_path / "F" / "deeper"
    run = runs.load(tiny_run)
    experiment = tmp_path / "tiny.toml"
    experiment.write_text(TINY_EXPERIMENT)
    calls = {
        "show_images": lambda: figures.show_images(tiny, bad / "a.png"),
        "report": lambda: page.make(run, bad, lambda name: tiny),
        "write_results": lambda: tables.write_results(compare_runs([tiny_run]), bad),
        "answer_files": lambda: prediction.answer_files(run.model, run.class_names, [], bad),
        "run_experiment": lambda: experiments.run_experiment(experiment, out=bad, data=tiny),
        "notebook": lambda: notebook.settings(out=bad / "lab.ipynb"),
    }
    for name, call in calls.items():
        with pytest.raises(MnistlabError, match=f"^cannot write {bad}") as caught:
            call()
        assert f"{tmp_path / 'F'} is a file, not a folder" in caught.value.problem, name
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------
# Settings files that are not regular files are refused by name, not read without end


@pytest.fixture
def not_files(tmp_path):
    pipe = tmp_path / "pipe.toml"
    os.mkfifo(pipe)
    big = tmp_path / "big.toml"
    with big.open("wb") as f:
        f.truncate(2 << 20)
    return {"device": Path("/dev/zero"), "pipe": pipe, "folder": tmp_path, "over-1-MiB": big}


SETTINGS_FILES = {
    "experiment": (["experiment", "{}", "--dry-run"], "an experiment file"),
    "notebook": (
        ["notebook", "--experiments", "{}", "--out", "{tmp}/lab.ipynb"],
        "an experiment file",
    ),
    "train-spec": (["train", "--spec", "{}"], "a spec file"),
}


@pytest.mark.parametrize(
    ("command", "kind"),
    [
        (command, kind)
        for command in SETTINGS_FILES
        for kind in ("device", "pipe", "folder", "over-1-MiB")
        if (command, kind) != ("train-spec", "folder")  # Click refuses it: dir_okay=False
    ],
)
def test_a_settings_file_that_is_not_a_file_is_refused_by_name(
    runner, not_files, tmp_path, command, kind
):
    path = not_files[kind]
    argv, what = SETTINGS_FILES[command]
    args = [a.replace("{}", str(path)).replace("{tmp}", str(tmp_path)) for a in argv]
    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.append(invoke(runner, *args)), daemon=True)
    worker.start()
    worker.join(30)
    assert outcome, "still reading"  # a pipe waited for a writer, /dev/zero filled memory
    result = outcome[0]
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: cannot read {path}: it is "), result.output
    assert f"{what}. name {what}" in result.output


def test_a_search_space_file_that_is_not_a_file_is_refused_by_name(not_files):
    from mnistlab.errors import MnistlabError
    from mnistlab.tuning import space

    for kind in ("device", "pipe"):
        with pytest.raises(MnistlabError, match=f"it is a {kind}, not a search space file"):
            space.source(not_files[kind])


def test_a_write_that_fails_during_the_work_is_one_line(runner, fake_data, tmp_path, monkeypatch):
    import errno

    from mnistlab import files

    def full(*args, dir=None, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dir))

    monkeypatch.setattr(files.tempfile, "mkstemp", full)
    result = invoke(runner, "data", "show", "mnist", "--out", str(tmp_path / "a.png"))
    assert result.exit_code == 2
    assert result.output == (
        f"error: {tmp_path}: No space left on device (OSError). check the path, its permissions "
        "and the free space, then run the command again\n"
    )


def test_notebook_checks_its_sample_folder_before_a_kernel_starts(runner, tmp_path):
    sample = tmp_path / "sample"
    (sample / "mnist").mkdir(parents=True)
    out = tmp_path / "lab.ipynb"
    args = ["notebook", "--quick", "--sample-data", str(sample), "--out", str(out)]
    result = invoke(runner, *args)
    assert result.exit_code == 2
    assert result.output == (
        f"error: sample folder {sample / 'mnist'} has no train-images-idx3-ubyte (nor "
        "train-images-idx3-ubyte.gz). put the four IDX files of a sample there\n"
    )  # not "the notebook failed while running", after a kernel started
    assert list(tmp_path.iterdir()) == [sample]


def test_check_refuses_a_pipe_as_a_hand_in_and_an_html_place_before_checking(runner, tmp_path):
    pipe = tmp_path / "handin.ipynb"
    os.mkfifo(pipe)
    outcome: list = []
    worker = threading.Thread(
        target=lambda: outcome.append(invoke(runner, "check", str(pipe))), daemon=True
    )
    worker.start()
    worker.join(30)
    assert outcome, "waiting for a writer"
    assert outcome[0].exit_code == 1
    assert "not a notebook that can be checked: it is a pipe, not a notebook" in outcome[0].output

    (tmp_path / "F").write_text("mine")
    html = tmp_path / "F" / "report.html"
    result = invoke(runner, "check", str(pipe), "--html", str(html))
    assert result.exit_code == 2
    assert result.output == (
        f"error: cannot write {html}: {tmp_path / 'F'} is a file, not a folder. choose another "
        "place with --html\n"
    )  # before any hand-in was checked
