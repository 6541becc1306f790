"""Training images varied anew each epoch: pen widths, blur, shifts, rotations, elastic
distortions and mirroring, done with NumPy and SciPy on whole batches."""

from __future__ import annotations

import math
import random
from typing import Any

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
    variants of the images every epoch; for a spec that varies nothing, only the new order
    (`training.fit` feeds TensorFlow every spec so, see there). NumPy and SciPy do it on whole
    batches, several times faster here than Keras's RandomTranslation layer on the JAX backend
    (1024x2 network: 44 s an epoch against 7 s).

    Each epoch's images are all varied at once, between epochs, while the network waits:
    varied batch by batch as the network trained, NumPy's work and TensorFlow's threads
    contended for the 2 cores, and an epoch of preset `handwriting` took 21 s where its
    training alone takes 6 and its variations 3."""

    CHUNK = 1024  # images varied at once: temporaries of a few MB each

    def __init__(self, images: np.ndarray, labels: np.ndarray, spec: Spec) -> None:
        super().__init__()
        self.images, self.labels, self.spec = images, labels, spec
        self.rng = np.random.default_rng(spec.seed)
        self.held: tuple[Any, Any] | None = None  # the epoch in TensorFlow variables: `feed`
        self.draw()

    def draw(self) -> None:
        """The next epoch: a new order and new variants of every image. `state` is the
        generator's state before it, from which `restore` draws the same epoch again."""
        self.state = self.rng.bit_generator.state
        order = self.rng.permutation(len(self.images))
        varied = [
            self.vary(self.images[order[i : i + self.CHUNK]])
            for i in range(0, len(order), self.CHUNK)
        ]
        # one assignment: a batch read meanwhile comes whole from one epoch or the other
        self.epoch = (order, np.concatenate(varied))
        if self.held is not None:
            self.held[0].assign(self.epoch[1])
            self.held[1].assign(self.labels[order])

    def restore(self, state: dict[str, Any]) -> None:
        """Draw again the epoch that was drawn from `state` (a checkpoint's)."""
        self.rng.bit_generator.state = state
        self.draw()

    def vary(self, images: np.ndarray) -> np.ndarray:
        spec = self.spec
        changed = np.ones(len(images), bool)
        if spec.varied < 1:  # the others only shifted and flipped: digits as MNIST has them
            changed = self.rng.random(len(images)) < spec.varied
        some = bool(changed.any())
        if some and (spec.pen or spec.blur or spec.rotate or spec.elastic):
            images = images.copy()
        if some and spec.pen:
            images[changed] = pen_width(images[changed], spec.pen, self.rng)
        if some and spec.blur:
            images[changed] = blur(images[changed], spec.blur, self.rng)
        if spec.shift:
            images = shift_images(images, spec.shift, self.rng)
        if some and (spec.rotate or spec.elastic):
            images[changed] = distort(images[changed], spec.rotate, spec.elastic, self.rng)
        if spec.flip:  # clothes look the same mirrored; digits do not
            mirrored = self.rng.random(len(images)) < 0.5
            images = np.where(mirrored[:, None, None], images[:, :, ::-1], images)
        return images

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.spec.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        order, images = self.epoch
        size = self.spec.batch_size
        chosen = slice(index * size, (index + 1) * size)
        return preprocess(images[chosen]), self.labels[order[chosen]]

    def on_epoch_end(self) -> None:
        self.draw()

    def feed(self) -> tuple[Any, keras.callbacks.Callback]:
        """On TensorFlow, the batches `model.fit` takes from this `PyDataset`, in the same
        order, as a `tf.data` pipeline; and the callback (to come first among `fit`'s) that
        draws the epochs and shuffles the order of the batches (with Python's `random`) where
        Keras does, before the other callbacks see them: the same weights as `model.fit(self)`
        (tests/test_train.py).

        The epoch's uint8 images and labels are held in TensorFlow variables, new ones assigned
        as each epoch is drawn, and each batch is sliced and scaled (float32 / 255, as
        `preprocess`) in TensorFlow's graph. Handed over from Python batch by batch, as Keras
        feeds a `PyDataset`, an epoch of preset `fast-99.65` took 9.36 s on the 2 cores here
        against 8.97 s, `fast-99.5` 5.48 s against 5.20: about 4% (the medians of 3,
        alternated, in benchmarks/augmented_feed.py)."""
        import tensorflow as tf

        order, images = self.epoch
        pixels = tf.Variable(images, trainable=False)
        labels = tf.Variable(self.labels[order], trainable=False)
        self.held = (pixels, labels)
        size, count = self.spec.batch_size, len(self.images)
        shuffled = tf.Variable(tf.range(len(self), dtype=tf.int64), trainable=False)

        def batch(index: Any) -> tuple[Any, Any]:
            start = shuffled[index] * size
            stop = tf.minimum(start + size, count)
            scaled = tf.cast(pixels[start:stop], tf.float32) / 255.0
            return tf.reshape(scaled, (-1, images[0].size)), labels[start:stop]

        batches = tf.data.Dataset.range(len(self)).map(batch)
        return batches, NextEpoch(self, shuffled)


class NextEpoch(keras.callbacks.Callback):
    """Draws `augmented`'s epochs and shuffles the order of its batches into `shuffled` when
    and as `model.fit` does for a `PyDataset` (Keras 3.15's `EpochIterator`): a draw as
    training begins, a shuffle as each epoch begins, a draw as each ends (see
    `AugmentedImages.feed`)."""

    def __init__(self, augmented: AugmentedImages, shuffled: Any) -> None:
        super().__init__()
        self.augmented, self.shuffled = augmented, shuffled

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.augmented.draw()  # as `fit` starts a PyDataset's epoch over before the first

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        order = list(range(len(self.augmented)))
        random.shuffle(order)  # as Keras's PyDataset adapter does, from the same generator
        self.shuffled.assign(order)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.augmented.draw()


def augments(spec: Spec) -> bool:
    """Whether the spec varies its training images (and so trains from `AugmentedImages`)."""
    return bool(spec.shift or spec.rotate or spec.elastic or spec.flip or spec.pen or spec.blur)


def pen_width(images: np.ndarray, pen: int, rng: np.random.Generator) -> np.ndarray:
    """Each image's strokes drawn with a wider or narrower pen: a third of the images thinned
    by a grey erosion, a third thickened by a grey dilation, a third kept, with a cross of
    radius 1 or up to `pen` pixels. Real pens run from fine liners to markers, MNIST's strokes
    are 2.6 pixels wide in their 20x20 box (images.STROKE); a model that has seen only those
    reads a marker's 1 as an 8 (issue 15)."""
    out = images.copy()
    step = rng.integers(-1, 2, size=len(images))  # -1 thinner, 0 as written, 1 thicker
    radius = rng.integers(1, pen + 1, size=len(images))
    for r in range(1, pen + 1):
        cross = ndimage.generate_binary_structure(2, 1)
        footprint = ndimage.iterate_structure(cross, r)[None]
        for sign, grow in ((1, ndimage.grey_dilation), (-1, ndimage.grey_erosion)):
            chosen = (step == sign) & (radius == r)
            if chosen.any():
                changed = grow(images[chosen], footprint=footprint)
                # an erosion that would wipe a thin digit out keeps it as written
                keep = changed.reshape(len(changed), -1).max(axis=1) < 128
                changed[keep] = images[chosen][keep]
                out[chosen] = changed
    return out


def blur(images: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Each image blurred as by a Gaussian of its own sigma in [0, `sigma`] pixels, then its
    peak brought back to 255 (prepare scales a scan's ink so): a mix of the image and its
    blur at `sigma`, by a weight drawn per image, which costs one filter for the batch."""
    blurred = ndimage.gaussian_filter(images.astype(np.float32), sigma=(0, sigma, sigma))
    weight = rng.uniform(0, 1, size=(len(images), 1, 1)).astype(np.float32)
    mixed = (1 - weight) * images + weight * blurred
    peak = mixed.reshape(len(mixed), -1).max(axis=1)[:, None, None]
    mixed = mixed * (255 / np.maximum(peak, 1))
    return np.clip(np.rint(mixed), 0, 255).astype(images.dtype)


def shift_images(images: np.ndarray, shift: int, rng: np.random.Generator) -> np.ndarray:
    """Each image moved by its own random (dy, dx) in [-shift, shift], the edge filled with 0."""
    n, height, width = images.shape
    padded = np.pad(images, ((0, 0), (shift, shift), (shift, shift)))
    dy, dx = rng.integers(0, 2 * shift + 1, size=(2, n))
    rows = dy[:, None] + np.arange(height)[None, :]
    cols = dx[:, None] + np.arange(width)[None, :]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


ELASTIC_SIGMA = 4.0  # pixels: the smoothing of the displacement field, as Simard et al. (2003)
COARSE = 4  # the field is drawn on a grid this many times coarser, then smoothed and enlarged
# The standard deviation of Simard's field on 28x28 (uniform [-1, 1] noise smoothed by
# ELASTIC_SIGMA with SciPy's reflecting edges): 0.051, measured over 400 fields.
FULL_SIZE_SPREAD = 0.051


def distort(
    images: np.ndarray, rotate: float, elastic: float, rng: np.random.Generator
) -> np.ndarray:
    """Each image turned about its centre by its own random angle in [-rotate, rotate]
    degrees, then elastically distorted: a field of random displacements in [-1, 1] pixels,
    smoothed by a Gaussian of ELASTIC_SIGMA and scaled by `elastic` (Simard et al.'s alpha).
    Bilinear interpolation, black outside the image; same shape and dtype back.

    The field is drawn on a grid COARSE times coarser, smoothed there by ELASTIC_SIGMA / COARSE
    and enlarged bilinearly, its spread matched to the full-size field's; and the bilinear
    lookup is NumPy's gathers: 48,000 images in 3 s here where the full-size field and
    `ndimage.map_coordinates` took 20 s, most of an epoch of preset `handwriting`."""
    n, height, width = images.shape
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cy, cx = (height - 1) / 2, (width - 1) / 2
    angle = np.deg2rad(rng.uniform(-rotate, rotate, size=(n, 1, 1))).astype(np.float32)
    cos, sin = np.cos(angle), np.sin(angle)
    rows = cy + (y - cy) * cos - (x - cx) * sin
    cols = cx + (y - cy) * sin + (x - cx) * cos
    if elastic:
        field = elastic_field(n, height, width, rng)
        rows, cols = rows + elastic * field[0], cols + elastic * field[1]
    return bilinear(images, rows, cols)


def elastic_field(n: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random displacements of shape (2, n, height, width), with the spread Simard et
    al.'s field has: uniform noise in [-1, 1] smoothed by a Gaussian of ELASTIC_SIGMA."""
    small = (-(-height // COARSE) + 2, -(-width // COARSE) + 2)
    noise = rng.random((2, n, *small), dtype=np.float32) * 2 - 1
    sigma = ELASTIC_SIGMA / COARSE
    field = ndimage.gaussian_filter(noise, sigma=(0, 0, sigma, sigma), mode="wrap")
    field *= FULL_SIZE_SPREAD / max(float(field.std()), 1e-6)
    return (field.reshape(2 * n, -1) @ enlarging(small, height, width)).reshape(2, n, height, width)


def enlarging(small: tuple[int, int], height: int, width: int) -> np.ndarray:
    """The matrix that enlarges a coarse field of shape `small` bilinearly to height x width
    (each coarse cell centred on COARSE x COARSE pixels): one product for the whole batch."""
    r = (np.arange(height, dtype=np.float32) + 0.5) / COARSE + 0.5
    c = (np.arange(width, dtype=np.float32) + 0.5) / COARSE + 0.5
    rr, cc = np.meshgrid(r, c, indexing="ij")
    basis = np.eye(small[0] * small[1], dtype=np.float32).reshape(-1, *small)
    shape = (len(basis), height, width)
    moved = bilinear(basis, np.broadcast_to(rr, shape), np.broadcast_to(cc, shape))
    return moved.reshape(len(basis), -1)


def bilinear(images: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Each image looked up at its own (rows, cols), bilinearly, 0 outside; same dtype back
    (rounded for whole numbers)."""
    n, height, width = images.shape
    rows, cols = np.broadcast_arrays(rows, cols)
    padded = np.pad(images.astype(np.float32), ((0, 0), (1, 1), (1, 1))).reshape(n, -1)
    r = np.clip(rows + 1, 0, height + 1)
    c = np.clip(cols + 1, 0, width + 1)
    r0 = np.minimum(np.floor(r).astype(np.intp), height)
    c0 = np.minimum(np.floor(c).astype(np.intp), width)
    wr, wc = (r - r0).astype(np.float32), (c - c0).astype(np.float32)
    stride = width + 2
    base = (r0 * stride + c0).reshape(n, -1)
    base += (np.arange(n) * padded.shape[1])[:, None]
    wr, wc = wr.reshape(n, -1), wc.reshape(n, -1)
    flat = padded.ravel()

    def at(offset: int) -> np.ndarray:
        return flat.take(base + offset if offset else base)

    top = at(0) * (1 - wc) + at(1) * wc
    bottom = at(stride) * (1 - wc) + at(stride + 1) * wc
    out = (top * (1 - wr) + bottom * wr).reshape(rows.shape)
    if np.issubdtype(images.dtype, np.integer):
        info = np.iinfo(images.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(images.dtype)
    return out.astype(images.dtype)
