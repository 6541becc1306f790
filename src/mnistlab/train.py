"""Train a spec on a data set: seed everything, preprocess, build, fit.

    model, history = train(spec, data)

Same spec (seed included), same backend, same machine: the same weights and the same numbers.
"""

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras

from mnistlab import runs
from mnistlab.data import Dataset, preprocess
from mnistlab.evaluate import evaluate
from mnistlab.models import build
from mnistlab.spec import Spec


def seed_everything(spec: Spec) -> None:
    """Python's, NumPy's and the backend's random generators, and TensorFlow's op determinism."""
    keras.utils.set_random_seed(spec.seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def train(
    spec: Spec,
    data: Dataset,
    verbose: int | str = "auto",
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> tuple[keras.Model, dict[str, Any]]:
    """Fit the model of `spec` on the training set, holding out the last `validation_split` of it
    for validation as Keras does. Returns the model and the per-epoch history, with seconds."""
    if keras.backend.backend() != spec.backend:
        raise RuntimeError(f"spec asks for {spec.backend}, Keras runs {keras.backend.backend()}")
    seed_everything(spec)
    x_train, y_train = data.train
    fitted = len(x_train) - int(len(x_train) * spec.validation_split)  # as Keras splits
    model = build(spec, steps_per_epoch=math.ceil(fitted / spec.batch_size))
    timer = EpochTimer()
    fit = model.fit(
        preprocess(x_train),
        y_train,
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        validation_split=spec.validation_split,
        verbose=verbose,
        callbacks=[timer, *callbacks],
    )
    history = {k: [float(v) for v in vs] for k, vs in fit.history.items()}
    history["seconds"] = timer.seconds
    return model, history


class EpochTimer(keras.callbacks.Callback):
    """Wall-clock seconds of each epoch, validation included."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.seconds.append(time.perf_counter() - self.start)


def train_and_save(
    spec: Spec, data: Dataset, dataset: str, out: Path, verbose: int | str = 0
) -> dict[str, Any]:
    """Train, evaluate on the test set and write the run folder `out`; returns the test
    metrics. An existing non-empty `out` is refused before any training."""
    runs.check_new(out)
    start = time.perf_counter()
    model, history = train(spec, data, verbose=verbose)
    trained = time.perf_counter()
    metrics = evaluate(model, *data.test)
    seconds = {"train": trained - start, "evaluate": time.perf_counter() - trained}
    runs.save(out, model, spec, dataset, data.class_names, history, metrics, seconds, data.source)
    return metrics
