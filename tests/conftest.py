"""Shared fixtures: a small synthetic data set that a model can learn in one epoch."""

from pathlib import Path

import numpy as np
import pytest

from mnistlab import backend

backend.use()  # before anything imports Keras: $KERAS_BACKEND, else JAX

from mnistlab.data import Dataset  # noqa: E402

CLASS_NAMES = tuple(str(d) for d in range(10))


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise images in which class c has a bright 6x6 square at its own place."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    for image, label in zip(images, labels, strict=True):
        row, col = divmod(int(label), 5)
        image[4 + 12 * row : 10 + 12 * row, 2 + 5 * col : 8 + 5 * col] = 255
    return images, labels


def tiny_dataset() -> Dataset:
    """400 training and 100 test images of 10 classes, named as MNIST so that runs trained on
    them answer as MNIST runs do."""
    return Dataset(synthetic(400, 0), synthetic(100, 1), CLASS_NAMES, "synthetic", "mnist")


@pytest.fixture(scope="session")
def tiny() -> Dataset:
    return tiny_dataset()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny) -> Path:
    """A run folder trained for one epoch on the synthetic data: it cannot read digits, but it
    answers in the run folder's own format."""
    from mnistlab.spec import Spec
    from mnistlab.training import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(Spec(epochs=1, hidden=(32,)), tiny).save(out)
    return out
