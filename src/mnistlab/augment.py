"""Training images varied anew each epoch: shifts, rotations, elastic distortions and mirroring,
done with NumPy and SciPy on whole batches."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from mnistlab import backend
from mnistlab.data import preprocess
from mnistlab.spec import Spec

backend.use()  # Keras reads its backend at import: mnistlab's choice, if it is the first
import keras  # noqa: E402


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
