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
import numpy as np

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
    fitted = math.floor(len(x_train) * (1 - spec.validation_split))  # where Keras splits
    steps = math.ceil(fitted / spec.batch_size)
    # A whole epoch per compiled call: each call costs a fixed overhead that dwarfs a step of
    # the lab's small model. Lab recipe on 2 cores, seconds per epoch after the first, one step
    # a call / 100 / a whole epoch (benchmarks/steps_per_execution.py): TensorFlow 3.3 / 2.0 /
    # 1.7; JAX 0.76 / 0.55 / 0.61. The arithmetic is the same (tests/test_train.py).
    model = build(spec, steps, steps_per_execution=steps)
    timer = EpochTimer()
    fit_options = dict(epochs=spec.epochs, verbose=verbose, callbacks=[timer, *callbacks])
    if spec.shift:
        x = x_train[:fitted]
        shifted = ShiftedImages(x, y_train[:fitted], spec.batch_size, spec.shift, spec.seed)
        held_out = (preprocess(x_train[fitted:]), y_train[fitted:])
        fit = model.fit(shifted, validation_data=held_out, **fit_options)
    else:
        fit = model.fit(
            preprocess(x_train),
            y_train,
            batch_size=spec.batch_size,
            validation_split=spec.validation_split,
            **fit_options,
        )
    history = {k: [float(v) for v in vs] for k, vs in fit.history.items()}
    history["seconds"] = timer.seconds
    return model, history


class ShiftedImages(keras.utils.PyDataset):
    """Training batches in a new order each epoch, each image moved by up to `shift` pixels
    in each direction (empty border filled with 0): the network sees new variants of the
    digits every epoch. NumPy does it on integer shifts, several times faster here than Keras's
    RandomTranslation layer on the JAX backend (1024x2 network: 44 s an epoch against 7 s)."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, batch_size: int, shift: int, seed: int
    ) -> None:
        super().__init__()
        self.images, self.labels = images, labels
        self.batch_size, self.shift = batch_size, shift
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(images))

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return preprocess(shift_images(self.images[chosen], self.shift, self.rng)), self.labels[
            chosen
        ]

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.images))


def shift_images(images: np.ndarray, shift: int, rng: np.random.Generator) -> np.ndarray:
    """Each image moved by its own random (dy, dx) in [-shift, shift], the edge filled with 0."""
    n, height, width = images.shape
    padded = np.pad(images, ((0, 0), (shift, shift), (shift, shift)))
    dy, dx = rng.integers(0, 2 * shift + 1, size=(2, n))
    rows = dy[:, None] + np.arange(height)[None, :]
    cols = dx[:, None] + np.arange(width)[None, :]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


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
