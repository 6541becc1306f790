"""Train a spec on a data set: seed everything, preprocess, build, fit.

    model, history = train(spec, data)

Same spec (seed included), same backend, same machine: the same weights and the same numbers.
"""

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from scipy import ndimage

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
    for validation as Keras does (none at 0). Returns the model and the per-epoch history, with
    seconds."""
    if keras.backend.backend() != spec.backend:
        raise RuntimeError(f"spec asks for {spec.backend}, Keras runs {keras.backend.backend()}")
    seed_everything(spec)
    x_train, y_train = data.train
    fitted = math.floor(len(x_train) * (1 - spec.validation_split))  # where Keras splits
    steps = math.ceil(fitted / spec.batch_size)
    # A whole epoch per call: each call costs a fixed overhead that dwarfs a step of the lab's
    # small model (TensorFlow compiles the epoch into one loop; Keras on JAX still runs each
    # compiled step from Python, which gains less). Lab recipe on 2 cores, seconds per epoch
    # after the first, one step a call / 100 / a whole epoch (benchmarks/steps_per_execution.py):
    # TensorFlow 3.3 / 2.0 / 1.7; JAX 0.76 / 0.55 / 0.61. The arithmetic is the same
    # (tests/test_train.py).
    model = build(spec, steps, steps_per_execution=steps)
    timer = EpochTimer()
    fit_options = dict(epochs=spec.epochs, verbose=verbose, callbacks=[timer, *callbacks])
    if spec.shift or spec.rotate or spec.elastic or spec.flip:
        x = x_train[:fitted]
        augmented = AugmentedImages(x, y_train[:fitted], spec)
        held_out = (
            (preprocess(x_train[fitted:]), y_train[fitted:]) if fitted < len(x_train) else None
        )
        fit = model.fit(augmented, validation_data=held_out, **fit_options)
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


class AugmentedImages(keras.utils.PyDataset):
    """Training batches in a new order each epoch, each image moved by up to `spec.shift`
    pixels in each direction (empty border filled with 0), then turned, elastically distorted
    and mirrored as `spec.rotate`, `spec.elastic` and `spec.flip` ask: the network sees new
    variants of the images every epoch. NumPy and SciPy do it on whole batches, several times
    faster here than Keras's RandomTranslation layer on the JAX backend (1024x2 network: 44 s
    an epoch against 7 s)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, spec: Spec) -> None:
        super().__init__()
        self.images, self.labels, self.spec = images, labels, spec
        self.rng = np.random.default_rng(spec.seed)
        self.order = self.rng.permutation(len(images))

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.spec.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        size = self.spec.batch_size
        chosen = self.order[index * size : (index + 1) * size]
        images = self.images[chosen]
        if self.spec.shift:
            images = shift_images(images, self.spec.shift, self.rng)
        if self.spec.rotate or self.spec.elastic:
            images = distort(images, self.spec.rotate, self.spec.elastic, self.rng)
        if self.spec.flip:  # clothes look the same mirrored; digits do not
            mirrored = self.rng.random(len(images)) < 0.5
            images = np.where(mirrored[:, None, None], images[:, :, ::-1], images)
        return preprocess(images), self.labels[chosen]

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


ELASTIC_SIGMA = 4.0  # pixels: the smoothing of the displacement field, as Simard et al. (2003)


def distort(
    images: np.ndarray, rotate: float, elastic: float, rng: np.random.Generator
) -> np.ndarray:
    """Each image turned about its centre by its own random angle in [-rotate, rotate]
    degrees, then elastically distorted: a field of random displacements in [-1, 1] pixels,
    smoothed by a Gaussian of ELASTIC_SIGMA and scaled by `elastic` (Simard et al.'s alpha).
    Bilinear interpolation, black outside the image; same shape and dtype back."""
    n, height, width = images.shape
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cy, cx = (height - 1) / 2, (width - 1) / 2
    angle = np.deg2rad(rng.uniform(-rotate, rotate, size=(n, 1, 1)))
    cos, sin = np.cos(angle), np.sin(angle)
    rows = cy + (y - cy) * cos - (x - cx) * sin
    cols = cx + (y - cy) * sin + (x - cx) * cos
    if elastic:
        field = rng.uniform(-1, 1, size=(2, n, height, width))
        field = ndimage.gaussian_filter(field, sigma=(0, 0, ELASTIC_SIGMA, ELASTIC_SIGMA))
        rows, cols = rows + elastic * field[0], cols + elastic * field[1]
    index = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], rows.shape)
    moved = ndimage.map_coordinates(
        images.astype(np.float32), [index, rows, cols], order=1, mode="grid-constant", cval=0.0
    )
    return np.clip(np.rint(moved), 0, 255).astype(images.dtype)


class EpochTimer(keras.callbacks.Callback):
    """Wall-clock seconds of each epoch, validation included."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.seconds.append(time.perf_counter() - self.start)


class EpochLine(keras.callbacks.Callback):
    """A line after each epoch through `say`: "NAME: epoch 3/30, validation 99.12%, 37 s", or
    the training accuracy where nothing is held out."""

    def __init__(self, name: str, epochs: int, say: Callable[[str], None]) -> None:
        super().__init__()
        self.name, self.epochs, self.say = name, epochs, say

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        part = "validation" if "val_accuracy" in logs else "training"
        accuracy = logs.get("val_accuracy", logs.get("accuracy", math.nan))
        self.say(
            f"{self.name}: epoch {epoch + 1}/{self.epochs}, {part} {accuracy:.2%}, "
            f"{time.perf_counter() - self.start:.0f} s"
        )


def train_and_save(
    spec: Spec,
    data: Dataset,
    dataset: str,
    out: Path,
    verbose: int | str = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> dict[str, Any]:
    """Train, evaluate on the test set and write the run folder `out`; returns the test
    metrics. An existing non-empty `out` is refused before any training."""
    runs.check_new(out)
    start = time.perf_counter()
    model, history = train(spec, data, verbose=verbose, callbacks=callbacks)
    trained = time.perf_counter()
    metrics = evaluate(model, *data.test)
    seconds = {"train": trained - start, "evaluate": time.perf_counter() - trained}
    runs.save(out, model, spec, dataset, data.class_names, history, metrics, seconds, data.source)
    return metrics
