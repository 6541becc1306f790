"""Drop-in replacements for `keras.datasets.mnist` and `keras.datasets.fashion_mnist`, offline
and verified:

    (x_train, y_train), (x_test, y_test) = mnistlab.datasets.mnist.load_data()
"""

from mnistlab.datasets import fashion_mnist, mnist

__all__ = ["fashion_mnist", "mnist"]
