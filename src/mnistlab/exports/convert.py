"""The conversions, on Keras's TensorFlow backend: Keras's own exporters write each format,
ONNX Runtime's and LiteRT's quantizers the int8 models; then `checks` runs each model written.

Imported by `mnistlab.exports.export` only where Keras runs TensorFlow or is not imported yet.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnistlab.exports import (
    META_FILE,
    Check,
    Exported,
    ExportReport,
    Log,
)
from mnistlab.exports.checks import compare, probabilities
from mnistlab.files import new_folder, write_json
from mnistlab.version import __version__

if TYPE_CHECKING:
    import keras

    from mnistlab.data import Dataset
    from mnistlab.runs import Run

# Training images the LiteRT quantizer sees to choose each tensor's int8 range. 1,000 gave the
# same test accuracy as the float model on the lab's run (97.07% against 97.01%; README).
CALIBRATION = 1000
ONNX_OPSET = 17  # supported by ONNX Runtime 1.17 and newer, and by onnxruntime-web


def export_here(
    run_or_dir: Run | str | Path,
    format: str,
    out: Path,
    quantize: bool,
    data: Dataset | None,
    progress: Log,
) -> ExportReport:
    started = time.perf_counter()
    web_files: dict[str, bytes] = {}
    if format == "web":  # first: without the registry, stop before any conversion
        from mnistlab.exports.web import runtime_files

        web_files = runtime_files(progress)
    model, meta, run_path = load_model(run_or_dir)
    from mnistlab.models import in_float32
    from mnistlab.spec import Spec

    # A bfloat16 run is exported computing in float32 (ONNX Runtime and LiteRT have no mixed
    # bfloat16 kernels for it), and checked against Keras computing so
    model = in_float32(model, Spec.from_dict(meta["spec"]))
    if data is None:
        from mnistlab.data import load

        data = load(meta["dataset"], log=progress)
    x_test, y_test = data.test
    from mnistlab.data import preprocess
    from mnistlab.prediction import classify

    pixels = preprocess(x_test)
    progress(f"Keras: the {len(pixels):,} test images")
    reference = classify(model, pixels)
    with new_folder(out) as tmp:
        written = write_models(model, format, tmp, quantize, data, progress)
        extra: dict[str, Any] = {}
        if format == "web":
            from mnistlab.exports.web import write_page

            extra = write_page(tmp, web_files)
        models = []
        for path, int8 in written:
            kind = "onnx" if format == "web" else format
            progress(f"Checking {path.name} with its own runtime on {len(pixels):,} test images")
            answers, runtime = probabilities(path, kind, pixels)
            check = compare(answers, reference, y_test, runtime)
            models.append(Exported(out / path.name, size(path), int8, check))
        description = describe(meta, run_path, format, models, data.name or meta["dataset"])
        write_json(tmp / META_FILE, description | ({"web": extra} if extra else {}))
    return ExportReport(
        format=format,
        run=run_path,
        out=out,
        meta=out / META_FILE,
        models=tuple(models),
        folder_bytes=size(out),
        dataset=data.name or meta["dataset"],
        seconds=time.perf_counter() - started,
        extra=extra,
    )


def load_model(run_or_dir: Run | str | Path) -> tuple[keras.Model, dict[str, Any], Path | None]:
    """The run's Keras model on the TensorFlow backend, its `run.json` and its folder."""
    from mnistlab import backend

    if not isinstance(run_or_dir, str | Path):
        backend.use("tensorflow", what="the export")
        return run_or_dir.model, run_or_dir.meta, run_or_dir.path
    from mnistlab.runs import MODEL_FILE, check_model, damaged, read_meta

    path = Path(run_or_dir)
    meta = read_meta(path)
    if not (path / MODEL_FILE).is_file():
        from mnistlab.errors import MnistlabError
        from mnistlab.runs import NOT_A_RUN

        raise MnistlabError(f"{path} is not an mnistlab run folder (no {MODEL_FILE})", NOT_A_RUN)
    # A run trained on JAX loads on TensorFlow as it is: a .keras file names no backend.
    backend.use("tensorflow", what="the export")
    import keras

    try:
        model = keras.saving.load_model(path / MODEL_FILE)
    except Exception as e:  # as runs.load: a damaged or foreign file raises many kinds
        raise damaged(path, f"{MODEL_FILE} cannot be loaded ({type(e).__name__}: {e})") from None
    check_model(model, meta, path)
    return model, meta, path


def write_models(
    model: keras.Model, format: str, folder: Path, quantize: bool, data: Dataset, progress: Log
) -> list[tuple[Path, bool]]:
    """Write the float model (and the int8 one) into `folder`: [(path, int8)]."""
    # Keras's ONNX exporter asks that the model was called once (a loaded model was not).
    model(np.zeros((1, *model.input_shape[1:]), np.float32))
    written: list[tuple[Path, bool]] = []
    if format in ("onnx", "web"):
        progress("Exporting to ONNX (Keras, tf2onnx)")
        path = folder / "model.onnx"
        with quiet_logs():
            model.export(str(path), format="onnx", verbose=False, opset_version=ONNX_OPSET)
        written.append((path, False))
        if quantize:
            progress("Quantizing to int8 (ONNX Runtime, dynamic, per channel)")
            written.append((quantize_onnx(path, folder / "model.int8.onnx"), True))
    elif format == "litert":
        progress("Exporting to LiteRT (Keras, TensorFlow's converter)")
        path = folder / "model.tflite"
        with quiet_logs():
            model.export(str(path), format="litert", verbose=False)
        written.append((path, False))
        if quantize:
            progress(f"Quantizing to int8 (LiteRT, calibrated on {CALIBRATION:,} training images)")
            written.append((quantize_litert(model, folder / "model.int8.tflite", data), True))
    elif format == "saved_model":
        progress("Exporting to a TensorFlow SavedModel (Keras)")
        path = folder / "saved_model"
        with quiet_logs():
            model.export(str(path), format="tf_saved_model", verbose=False)
        written.append((path, False))
    return written


def quantize_onnx(path: Path, target: Path) -> Path:
    """Weights as int8, one scale per output channel; activations quantized on the fly (the
    dynamic scheme, which needs no calibration). Per channel: 3 test images of 10,000 change
    class on the lab's run, against 11 with one scale per tensor (README)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_logs():
        quantize_dynamic(path, target, weight_type=QuantType.QInt8, per_channel=True)
    return target


def quantize_litert(model: keras.Model, target: Path, data: Dataset) -> Path:
    """Post-training int8 of weights and activations, the activations' ranges measured on
    training images (never the test set). Input and output stay float32, so the preprocessing
    and the answers are those of the float model."""
    import tensorflow as tf

    from mnistlab.data import preprocess

    images = data.train[0]
    step = max(1, len(images) // CALIBRATION)
    calibration = preprocess(images[::step][:CALIBRATION])

    def representative() -> Iterator[list[np.ndarray]]:
        for i in range(len(calibration)):
            yield [calibration[i : i + 1]]

    with quiet_logs():
        model.export(
            str(target),
            format="litert",
            verbose=False,
            optimizations=[tf.lite.Optimize.DEFAULT],
            representative_dataset=representative,
        )
    return target


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """tf2onnx, TensorFlow and ONNX Runtime's quantizer log each step at INFO or WARNING on the
    root logger; the command shows its own progress instead."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    loggers = [logging.getLogger(n) for n in ("tf2onnx", "tensorflow", "absl")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # Keras's tf2onnx patch asks NumPy 2 for np.object (a FutureWarning): not ours
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        root.setLevel(level)
        for lg, old in zip(loggers, levels, strict=True):
            lg.setLevel(old)


def size(path: Path) -> int:
    """Bytes of a file, or of every file in a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def describe(
    meta: dict[str, Any],
    run_path: Path | None,
    format: str,
    models: list[Exported],
    dataset: str,
) -> dict[str, Any]:
    """What `export.json` holds: how to feed the model, what it answers, where it came from,
    and what its check found."""
    classes = len(meta["class_names"])
    return {
        "format": format,
        "models": [
            {"file": m.path.name, "int8": m.int8, "bytes": m.bytes, "check": check_dict(m.check)}
            for m in models
        ],
        "input": {
            "shape": [None, 784],
            "dtype": "float32",
            "layout": "a batch of 28x28 grey images, each flattened row by row to 784 values",
        },
        "output": {
            "shape": [None, classes],
            "dtype": "float32",
            "meaning": "the probability of each class (softmax), in the order of class_names",
        },
        "preprocessing": {
            "scale": "pixel / 255, so that 0 (black) is 0.0 and 255 (white) is 1.0",
            "flatten": "row-major: value i is row i // 28, column i % 28",
            "digits": "white ink on black; a picture of a digit is first brought into MNIST's "
            "form: cropped to its ink, fitted into a 20x20 box keeping its aspect ratio, and "
            "centred by centre of mass in 28x28 (mnistlab.images.prepare; the web export's "
            "prepare.js does the same in the browser)",
            "test_shifts": "none: the model answers each image alone, where the run "
            "(spec.test_shifts) may average it with shifted copies",
        },
        "class_names": list(meta["class_names"]),
        "dataset": meta["dataset"],
        "checked_on": f"the test set of {dataset}",
        "mnistlab_version": __version__,
        "run": {
            "path": str(run_path) if run_path is not None else None,
            "spec": meta.get("spec"),
            "test_accuracy": meta.get("metrics", {}).get("accuracy"),
            "backend": meta.get("backend"),
            "created": meta.get("created"),
        },
    }


def check_dict(check: Check) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(check)
