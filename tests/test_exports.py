"""Exports: each format written from a run, run by its own runtime and compared with Keras; the
int8 models; prediction through ONNX Runtime alone; and the errors, before any work.

The runs are the conftest's tiny ones (one epoch on synthetic images). The exports run on
TensorFlow: in this process on the TensorFlow pass of ./run-tests, in a child process on the
JAX pass (Keras runs one backend per process), so both paths are tested.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mnistlab import cli, exports
from mnistlab.errors import MnistlabError
from mnistlab.exports import engine
from mnistlab.exports.checks import compare, probabilities


def invoke(*args):
    return CliRunner().invoke(cli.cli, [str(a) for a in args], prog_name="mnistlab")


def keras_probabilities(run_dir: Path, pixels: np.ndarray) -> np.ndarray:
    from mnistlab.runs import load

    return load(run_dir).predict(pixels)


@pytest.fixture(scope="module")
def onnx_export(tiny_run, tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "onnx"
    return exports.export(tiny_run, "onnx", out, quantize=True, data=tiny)


def test_onnx_export_is_checked_against_keras(onnx_export, tiny_run, tiny):
    report = onnx_export
    assert report.passed
    assert [m.path.name for m in report.models] == ["model.onnx", "model.int8.onnx"]
    float_model, small = report.models
    assert float_model.check.images == len(tiny.test[0]) == 100
    assert float_model.check.differing == 0
    assert float_model.check.max_difference < 1e-4
    assert float_model.check.runtime.startswith("onnxruntime ")
    assert float_model.check.accuracy == float_model.check.keras_accuracy
    assert small.int8 and not float_model.int8
    # int8 weights: the tiny run's 25,450 parameters take a quarter of the bytes, and more
    assert 3.0 < float_model.bytes / small.bytes < 4.2
    assert report.folder_bytes == sum(f.stat().st_size for f in report.out.iterdir())

    # The check's own numbers, measured again here with ONNX Runtime and Keras
    pixels = tiny.test[0].reshape(100, -1).astype(np.float32) / 255
    mine = engine.OnnxModel(report.out / "model.onnx").predict_on_batch(pixels)
    assert np.abs(mine - keras_probabilities(tiny_run, pixels)).max() < 1e-4


def test_export_json_describes_the_model(onnx_export, tiny_run):
    meta = json.loads((onnx_export.out / "export.json").read_text())
    assert meta["format"] == "onnx"
    assert meta["class_names"] == [str(d) for d in range(10)]
    assert meta["input"]["shape"] == [None, 784]
    assert meta["input"]["dtype"] == "float32"
    assert "pixel / 255" in meta["preprocessing"]["scale"]
    assert "20x20" in meta["preprocessing"]["digits"]
    assert meta["mnistlab_version"] == __import__("mnistlab").__version__
    assert meta["run"]["path"] == str(tiny_run)
    assert [m["file"] for m in meta["models"]] == ["model.onnx", "model.int8.onnx"]
    assert meta["models"][0]["check"]["differing"] == 0


def test_saved_model_export_is_checked(tiny_run, tiny, tmp_path):
    report = exports.export(tiny_run, "saved_model", tmp_path / "sm", data=tiny)
    assert report.passed
    float_model = report.float_model
    assert float_model.check.differing == 0
    assert float_model.check.max_difference < 1e-4
    assert (float_model.path / "saved_model.pb").is_file()
    assert float_model.check.runtime.startswith("tensorflow ")
    assert report.int8_model is None


def test_a_model_that_differs_fails_its_check(onnx_export, tiny, tmp_path):
    """The check can fail: an ONNX file whose last bias favours class 0 is caught."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(onnx_export.out / "model.onnx")
    biases = [t for t in model.graph.initializer if numpy_helper.to_array(t).shape == (10,)]
    assert biases, "no output bias found"
    changed = numpy_helper.to_array(biases[-1]).copy()
    changed[0] += 50.0
    biases[-1].CopyFrom(numpy_helper.from_array(changed, biases[-1].name))
    onnx.save(model, tmp_path / "bad.onnx")

    pixels = tiny.test[0].reshape(100, -1).astype(np.float32) / 255
    reference, _ = probabilities(onnx_export.out / "model.onnx", "onnx", pixels)
    answers, runtime = probabilities(tmp_path / "bad.onnx", "onnx", pixels)
    check = compare(answers, reference, tiny.test[1], runtime)
    assert check.differing == int((reference.argmax(axis=1) != 0).sum()) > 0
    assert check.max_difference > 0.5
    bad = exports.Exported(tmp_path / "bad.onnx", 1, False, check)
    assert not bad.passed
    assert exports.Exported(tmp_path / "bad.onnx", 1, True, check).passed  # int8 may differ


def test_the_command_fails_with_1_when_a_check_fails(monkeypatch, onnx_export, tmp_path):
    """What the command does with a report whose float model differs from Keras."""
    first = onnx_export.float_model
    differing = exports.Check(first.check.runtime, 100, 4, 0.7, 0.5, 0.6)
    report = exports.ExportReport(
        "onnx",
        None,
        tmp_path / "out",
        tmp_path / "out" / "export.json",
        (exports.Exported(first.path, first.bytes, False, differing),),
        first.bytes,
        "mnist",
    )
    monkeypatch.setattr(exports, "export", lambda *args, **kwargs: report)
    result = invoke("export", onnx_export.run, "--format", "onnx", "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert "4 with another class than Keras" in result.output
    assert (
        "error: model.onnx chose another class than Keras for 4 of 100 test images: the export "
        "is not to be trusted" in result.output
    )


def test_the_command_exports_litert_and_prints_each_check(tiny_run, tmp_path, monkeypatch, tiny):
    from mnistlab import data

    monkeypatch.setattr(data, "load", lambda *args, **kwargs: tiny)
    out = tmp_path / "litert"
    result = invoke(
        "export", tiny_run, "--format", "litert", "--quantize", "--out", out, "--offline"
    )
    assert result.exit_code == 0, result.output
    assert f"Exported {tiny_run} as litert to {out}" in result.output
    assert "model.tflite: " in result.output
    assert "ai-edge-litert" in result.output
    assert "0 with another class than Keras" in result.output
    assert "int8: " in result.output and "x smaller" in result.output
    meta = json.loads((out / "export.json").read_text())
    float_model, small = meta["models"]
    assert (float_model["file"], small["file"]) == ("model.tflite", "model.int8.tflite")
    assert float_model["check"]["differing"] == 0
    assert float_model["check"]["max_difference"] < 1e-4
    assert float_model["check"]["images"] == 100
    assert float_model["bytes"] / small["bytes"] > 3.0
    assert small["int8"] and (out / "model.int8.tflite").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "pdf"], "'--format': 'pdf' is not one of 'onnx', 'litert'"),
        (
            ["--format", "saved_model", "--quantize"],
            "error: --quantize is for onnx and litert, not saved_model. leave it out",
        ),
        (["--format", "web", "--quantize"], "--quantize is for onnx and litert, not web"),
    ],
)
def test_bad_requests_are_refused_before_any_work(tiny_run, tmp_path, args, message):
    result = invoke("export", tiny_run, *args, "--out", tmp_path / "x")
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "x").exists()


def test_a_folder_that_is_not_a_run_or_a_full_out_is_refused(tiny_run, tmp_path):
    result = invoke("export", tmp_path, "--format", "onnx", "--out", tmp_path / "x")
    assert result.exit_code == 2
    assert f"error: {tmp_path} is not an mnistlab run folder (no run.json)" in result.output
    full = tmp_path / "full"
    full.mkdir()
    (full / "something").write_text("mine")
    result = invoke("export", tiny_run, "--format", "onnx", "--out", full)
    assert result.exit_code == 2
    assert f"error: {full} already exists and is not empty" in result.output
    with pytest.raises(MnistlabError, match="'tflite' is not an export format"):
        exports.export(tiny_run, "tflite", tmp_path / "y")


def test_the_cli_and_the_library_name_the_same_formats():
    from mnistlab.cli import export

    assert export.FORMATS == exports.FORMATS


def test_the_default_out_is_where_predict_finds_the_model(tiny_run, tmp_path, onnx_export):
    """`export RUN_DIR --format onnx` writes RUN_DIR/exports/onnx; `predict --engine onnx
    RUN_DIR` reads it there. (A copy of the run, with the module's export placed there.)"""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.copytree(onnx_export.out, run / "exports" / "onnx")
    model, names, dataset = engine.load(run)
    assert names == tuple(str(d) for d in range(10)) and dataset == "mnist"
    assert engine.locate(run)[0] == run / "exports" / "onnx" / "model.onnx"
    assert engine.locate(onnx_export.out / "model.int8.onnx")[0].name == "model.int8.onnx"
    with pytest.raises(MnistlabError, match="holds no ONNX model. export it first"):
        engine.load(tiny_run)
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(MnistlabError, match="cannot be loaded by ONNX Runtime"):
        engine.load(tmp_path / "bad.onnx")


@pytest.fixture(scope="module")
def drawings(tmp_path_factory, tiny):
    folder = tmp_path_factory.mktemp("drawings")
    paths = []
    for i in range(3):
        path = folder / f"{i}.png"
        Image.fromarray(255 - tiny.test[0][i]).save(path)  # dark on light, as on paper
        paths.append(path)
    return paths


def test_predict_with_onnx_imports_no_keras_jax_or_tensorflow(onnx_export, tiny_run, drawings):
    """The whole command in a fresh process: the same answers as the Keras engine, and none of
    Keras, JAX or TensorFlow in sys.modules at the end."""
    code = (
        "import json, sys\n"
        "from mnistlab.cli import main\n"
        "sys.argv = ['mnistlab', *sys.argv[1:]]\n"
        "try:\n    main()\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = [m for m in ('keras', 'jax', 'tensorflow', 'jaxlib') if m in sys.modules]\n"
        "print(json.dumps(heavy), file=sys.stderr)\n"
    )
    args = ["predict", "--engine", "onnx", str(onnx_export.out), *map(str, drawings), "--json"]
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stderr.strip().splitlines()[-1]) == []
    answers = json.loads(result.stdout)

    keras_result = invoke("predict", tiny_run, *drawings, "--json")
    assert keras_result.exit_code == 0, keras_result.output
    expected = json.loads(keras_result.output)
    for mine, theirs in zip(answers, expected, strict=True):
        assert mine["label"] == theirs["label"]
        assert mine["inverted"] is theirs["inverted"] is True
        assert np.abs(np.subtract(mine["probabilities"], theirs["probabilities"])).max() < 1e-4


def test_predict_with_onnx_reads_a_test_image(onnx_export, monkeypatch, tiny):
    from mnistlab import data

    monkeypatch.setattr(data, "load", lambda *args, **kwargs: tiny)
    result = invoke("predict", "--engine", "onnx", onnx_export.out / "model.onnx", "--index", "3")
    assert result.exit_code == 0, result.output
    assert f"Actual label: {tiny.test[1][3]}" in result.output


def test_without_the_npm_registry_the_web_export_says_how_to_go_on(tmp_path, monkeypatch):
    """An empty cache and a registry that cannot be reached: one clear error, before any
    conversion, naming the package and the way to bring it by hand; a tarball that is not the
    published one is refused by its checksum."""
    from mnistlab.exports import web

    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")  # nothing listens there
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    monkeypatch.delenv("MNISTLAB_ORT_WEB", raising=False)
    with pytest.raises(MnistlabError) as error:
        web.runtime_files(lambda message: None)
    assert error.value.problem.startswith(
        "cannot fetch onnxruntime-web 1.30.0 from the npm registry (request to "
        "http://127.0.0.1:9/onnxruntime-web failed, reason: connect ECONNREFUSED"
    )
    assert "npm pack onnxruntime-web@1.30.0" in error.value.fix
    assert "MNISTLAB_ORT_WEB" in error.value.fix

    fake = tmp_path / "onnxruntime-web-1.30.0.tgz"
    fake.write_bytes(b"not the package")
    monkeypatch.setenv("MNISTLAB_ORT_WEB", str(fake))
    with pytest.raises(MnistlabError, match="is not onnxruntime-web 1.30.0 as the npm registry"):
        web.runtime_files(lambda message: None)
    assert not (tmp_path / "cache" / "onnxruntime-web-1.30.0").exists()


def test_a_run_in_memory_exports_and_keeps_its_own_state(tiny, tmp_path):
    """A Run never saved is exported as it is; the caller's Run is left as it was."""
    from mnistlab.spec import Spec
    from mnistlab.training import train

    run = train(Spec(epochs=1, hidden=(16,)), tiny)
    assert run.path is None
    report = exports.export(run, "onnx", tmp_path / "onnx", data=tiny)
    assert report.passed and report.float_model.check.differing == 0
    assert run.path is None
    pixels = tiny.test[0].reshape(100, -1).astype(np.float32) / 255
    mine = engine.OnnxModel(report.out / "model.onnx").predict_on_batch(pixels)
    assert np.abs(mine - run.predict(pixels)).max() < 1e-4


def test_a_bfloat16_run_is_exported_computing_in_float32(tiny, tmp_path):
    """ONNX has no mixed bfloat16 MatMul: the run's float32 weights are exported in a model
    that computes in float32, and checked against Keras computing so."""
    from mnistlab.spec import Spec
    from mnistlab.training import train

    run = train(Spec(epochs=1, hidden=(16,), precision="bfloat16"), tiny)
    run.save(tmp_path / "run")
    report = exports.export(tmp_path / "run", "onnx", tmp_path / "onnx", data=tiny)
    assert report.passed and report.float_model.check.differing == 0
    assert report.float_model.check.max_difference < 1e-4
    pixels = tiny.test[0].reshape(100, -1).astype(np.float32) / 255
    mine = engine.OnnxModel(report.out / "model.onnx").predict_on_batch(pixels)
    assert np.abs(mine - run.predict(pixels)).max() < 0.05  # bfloat16 keeps 3 digits


def test_the_package_names_the_export():
    import mnistlab as ml

    assert ml.export is exports.export
    assert ml.ExportReport is exports.ExportReport
