"""Prediction through ONNX Runtime alone: no Keras, no JAX, no TensorFlow is imported
(tests/test_exports.py checks `sys.modules` in a fresh process).

`OnnxModel(path)` answers `predict_on_batch(pixels)` as a Keras model does, so the one path of
`mnistlab.prediction` (`classify`, `answer_files`, `answer_test_image`) and the picture reading of
`mnistlab.images` serve it unchanged. `locate(path)` finds the model an export wrote and the
class names its `export.json` gives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.errors import MnistlabError

MODEL_FILE = "model.onnx"
META_FILE = "export.json"  # exports.META_FILE; importing the package would be as cheap
# Where `mnistlab export RUN_DIR --format F` writes by default, so that a run folder names its
# ONNX model: the plain export first, then the web page's copy of the same model
IN_RUN = ("exports/onnx", "exports/web")
NO_MODEL_FIX = (
    "export it first: `mnistlab export RUN_DIR --format onnx`, then name RUN_DIR, the export "
    "folder or its model.onnx"
)


class OnnxModel:
    """An ONNX classifier of 784 float pixels, run by ONNX Runtime on the CPU."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # One thread: the lab's model is 0.1 M multiply-adds an image, less than a thread pool
        # takes to wake up; the 10,000 test images take 0.1 s on one core.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # a damaged file or not ONNX: ONNX Runtime raises its own kinds
            raise MnistlabError(
                f"{path} cannot be loaded by ONNX Runtime ({type(e).__name__}: {e})",
                "export the run again",
            ) from None
        (given,) = self.session.get_inputs()
        self.input_name = given.name
        self.output_shape = tuple(self.session.get_outputs()[0].shape)

    def predict_on_batch(self, pixels: Any) -> np.ndarray:
        x = np.ascontiguousarray(pixels, dtype=np.float32).reshape(len(pixels), -1)
        (answer,) = self.session.run(None, {self.input_name: x})
        return np.asarray(answer)


def locate(path: str | Path) -> tuple[Path, tuple[str, ...], str]:
    """The ONNX model that `path` names (a .onnx file, an export folder, or a run folder that
    holds an export), its class names and its data set (from export.json beside it; MNIST's
    digits without one)."""
    path = Path(path)
    if path.is_file():
        model = path
    elif path.is_dir():
        found = [path / MODEL_FILE, *(path / place / MODEL_FILE for place in IN_RUN)]
        model = next((p for p in found if p.is_file()), path / MODEL_FILE)
        if not model.is_file():
            raise MnistlabError(f"{path} holds no ONNX model", NO_MODEL_FIX)
    else:
        raise MnistlabError(f"no ONNX model or folder at {path}", NO_MODEL_FIX)
    meta_file = model.parent / META_FILE
    names: tuple[str, ...] = tuple(str(d) for d in range(10))
    dataset = "mnist"
    if meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text())
            names, dataset = tuple(meta["class_names"]), str(meta["dataset"])
        except (ValueError, KeyError, TypeError) as e:
            raise MnistlabError(f"{meta_file} is damaged ({e})", "export the run again") from e
    return model, names, dataset


def load(path: str | Path) -> tuple[OnnxModel, tuple[str, ...], str]:
    """The model `path` names, ready to answer, its class names and its data set."""
    model_path, names, dataset = locate(path)
    model = OnnxModel(model_path)
    outputs = model.output_shape[-1]
    if outputs != len(names):
        raise MnistlabError(
            f"{model_path} answers {outputs} classes but its {META_FILE} names {len(names)}",
            "export the run again",
        )
    return model, names, dataset
