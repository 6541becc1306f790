"""Each exported model run by its own runtime, and compared with Keras: the class it chooses for
every test image and the largest difference in a probability.

The runtimes are those a user of the format has: ONNX Runtime for ONNX (the web page's file
too: onnxruntime-web runs the same file on the same kernels compiled to WebAssembly), LiteRT's
interpreter (`ai_edge_litert`, not TensorFlow's copy of it) for LiteRT, TensorFlow's loader
for a SavedModel.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np

from mnistlab.exports import Check

BATCH = 1000  # images per call


def probabilities(path: Path, kind: str, pixels: np.ndarray) -> tuple[np.ndarray, str]:
    """The model's probabilities for float pixels (N, 784), and the runtime that made them."""
    if kind == "onnx":
        from mnistlab.exports.engine import OnnxModel

        model = OnnxModel(path)
        return model.predict_on_batch(pixels), f"onnxruntime {metadata.version('onnxruntime')}"
    if kind == "litert":
        return litert(path, pixels), f"ai-edge-litert {metadata.version('ai-edge-litert')}"
    if kind == "saved_model":
        return saved_model(path, pixels), f"tensorflow {tensorflow_version()}"
    raise ValueError(f"no runtime for {kind!r}")


def litert(path: Path, pixels: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    (given,), (answer,) = interpreter.get_input_details(), interpreter.get_output_details()
    parts = []
    for i in range(0, len(pixels), BATCH):
        batch = np.ascontiguousarray(pixels[i : i + BATCH], dtype=np.float32)
        # The model's batch is 1 as converted (its signature says -1): resize to each batch.
        interpreter.resize_tensor_input(given["index"], list(batch.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(given["index"], batch)
        interpreter.invoke()
        parts.append(interpreter.get_tensor(answer["index"]).copy())
    return np.concatenate(parts)


def saved_model(path: Path, pixels: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    serve = loaded.signatures["serving_default"]  # what TF Serving and other loaders call
    (name,) = serve.structured_input_signature[1]
    parts = []
    for i in range(0, len(pixels), BATCH):
        (value,) = serve(**{name: tf.constant(pixels[i : i + BATCH])}).values()
        parts.append(value.numpy())
    return np.concatenate(parts)


def tensorflow_version() -> str:
    for name in ("tensorflow-cpu", "tensorflow"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "?"


def compare(answers: np.ndarray, keras: np.ndarray, labels: np.ndarray, runtime: str) -> Check:
    """How far an export's answers are from Keras's on the same images."""
    answers = np.asarray(answers, dtype=np.float64)
    keras = np.asarray(keras, dtype=np.float64)
    if answers.shape != keras.shape:
        raise ValueError(f"the export answered {answers.shape}, Keras {keras.shape}")
    chosen, expected = answers.argmax(axis=1), keras.argmax(axis=1)
    return Check(
        runtime=runtime,
        images=len(answers),
        differing=int((chosen != expected).sum()),
        max_difference=float(np.abs(answers - keras).max()) if len(answers) else 0.0,
        accuracy=float((chosen == labels).mean()) if len(answers) else 0.0,
        keras_accuracy=float((expected == labels).mean()) if len(answers) else 0.0,
    )
