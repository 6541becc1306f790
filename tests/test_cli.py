"""The command line through Click's runner: output, files and exit codes."""

import json

import keras
import pytest
from click.testing import CliRunner
from PIL import Image

from mnistlab import cli, data


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
    return runner.invoke(cli.cli, list(args))


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
            "error: epochs = 0 is out of range. epochs must be at least 1",
        ),
        (["summary", "--dropout", "1"], "error: dropout = 1.0 is out of range"),
        (["summary", "--validation-split", "1.5"], "error: validation_split = 1.5 is out of range"),
        (["summary", "--preset", "huge"], "error: Invalid value for '--preset': 'huge' is not"),
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

    result = invoke(runner, "evaluate", str(out))
    assert result.exit_code == 0, result.output
    accuracy = meta["metrics"]["accuracy"]
    assert f"Test accuracy: {accuracy:.2%}" in result.output
    assert result.output.count("%") == 11  # overall and one line per class

    report = json.loads(invoke(runner, "evaluate", str(out), "--json").output)
    assert report["accuracy"] == pytest.approx(accuracy)
    assert len(report["per_class_accuracy"]) == 10

    result = invoke(runner, "predict", str(out), "--index", "0", "--out", str(tmp_path / "p.png"))
    assert result.exit_code == 0, result.output
    label = int(tiny.test[1][0])
    assert f"Actual label: {label}" in result.output
    assert "Model prediction: " in result.output
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    answer = json.loads(invoke(runner, "predict", str(out), "--index", "5", "--json").output)
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
    assert "error: 1 cached file(s) failed their check" in result.output


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


def test_bench_prints_both_paths_and_the_ratio_of_later_epochs(runner, monkeypatch):
    timing = {"backend": "jax", "device": "CPU", "parameters": 101_770}
    fake_bench(
        monkeypatch,
        {
            "plain": {**timing, "path": "plain", "seconds": [9.0, 4.0, 4.0], "test_accuracy": 0.97},
            "mnistlab": {
                **timing,
                "path": "mnistlab",
                "seconds": [3.0, 0.5, 0.5],
                "test_accuracy": 0.9712,
            },
        },
    )
    result = invoke(runner, "bench")
    assert result.exit_code == 0, result.output
    assert "Ratio (plain / mnistlab, seconds per epoch after the first): 8.0x" in result.output
    assert "97.12%" in result.output
    assert invoke(runner, "bench", "--epochs", "0").exit_code == 2


def to_99(accuracies):
    return {
        "device": "CPU",
        "seconds": [8.0, 6.5, 6.0][: len(accuracies)],
        "test_accuracies": accuracies,
        "epochs": len(accuracies),
        "reached": accuracies[-1] >= 0.99,
        "seconds_to_target": 20.5 if accuracies[-1] >= 0.99 else None,
    }


def test_bench_to_99_prints_each_epoch_and_the_time_to_99(runner, monkeypatch):
    fake_bench(monkeypatch, {"to-99": to_99([0.982, 0.988, 0.9912])})
    result = invoke(runner, "bench", "--to-99")
    assert result.exit_code == 0, result.output
    assert "    3     6.0s    20.5s    99.12%" in result.output
    assert "Time to 99.0%: 20.5 s of training (3 epochs; test evaluations not counted)" in (
        result.output
    )


def test_bench_to_99_says_so_when_99_is_not_reached(runner, monkeypatch):
    fake_bench(monkeypatch, {"to-99": to_99([0.982, 0.985, 0.9897])})
    result = invoke(runner, "bench", "--to-99")
    assert result.exit_code == 2
    assert "did not reach 99.0% in 3 epochs (best 98.97%)" in result.output


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
    args = [str(tmp_path / n) for n in names] + [str(jpeg), "--show", str(show)]
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
        (["x.png", "--out", "p.png"], "error: --out goes with --index"),
        (["--index", "0", "--show", "seen"], "error: --show goes with image files"),
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
