"""mnistlab: the MNIST lab with Keras, as software. See README.md."""

__version__ = "0.1.0"
