"""Images in, class probabilities out: the one path that evaluation and prediction share
(evaluation is a thin layer over it, as airbench's `evaluate` is over `infer`).

`predict(model, images)` takes the data set's uint8 images, `classify(model, pixels)` float
images in [0, 1] as `preprocess` or `images.prepare` makes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnistlab.data import preprocess
from mnistlab.errors import MnistlabError
from mnistlab.text import plural

if TYPE_CHECKING:  # Keras is imported where it is used, once the backend is chosen
    import keras

    from mnistlab.data import Dataset


BATCH = 1000  # images per call when predicting many


def predict(model: keras.Model, images: np.ndarray, shifts: int = 0) -> np.ndarray:
    """Probabilities of shape (N, classes) for uint8 images of shape (N, 28, 28); `shifts` as
    `classify`'s."""
    return classify(model, preprocess(images), shifts)


def classify(model: keras.Model, pixels: np.ndarray, shifts: int = 0) -> np.ndarray:
    """Probabilities of shape (N, classes) for float images in [0, 1] of shape (N, 28, 28)
    or (N, 784), as `preprocess` or `prepare` makes them. With `shifts` (a run's
    `spec.test_shifts`), each image's are the mean of the model's for the image and its 8
    copies moved by that many pixels (`views`)."""
    x = np.asarray(pixels, dtype=np.float32).reshape(len(pixels), -1)
    parts = [answer(model, x[i : i + BATCH], shifts) for i in range(0, len(x), BATCH)]
    return np.concatenate(parts) if parts else np.zeros((0, model.output_shape[-1]), np.float32)


def answer(model: keras.Model, x: np.ndarray, shifts: int) -> np.ndarray:
    """`classify`'s probabilities for at most BATCH flattened images (views of BATCH * 9)."""
    if not shifts:
        return np.asarray(model.predict_on_batch(x))
    side = math.isqrt(x.shape[1])
    seen = classify(model, views(x.reshape(len(x), side, side), shifts))
    return seen.reshape(len(x), len(MOVES), -1).mean(axis=1)


MOVES = [(0, 0)] + [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


def views(images: np.ndarray, shifts: int) -> np.ndarray:
    """Each image, then its 8 copies moved by `shifts` pixels (up, down, left, right and the
    diagonals; the edge filled with 0), of shape (N * 9, height, width)."""
    n, height, width = images.shape
    padded = np.pad(images, ((0, 0), (shifts, shifts), (shifts, shifts)))
    at = [(shifts * (1 - dy), shifts * (1 - dx)) for dy, dx in MOVES]
    moved = [padded[:, y : y + height, x : x + width] for y, x in at]
    return np.stack(moved, axis=1).reshape(n * len(MOVES), height, width)


def as_pixels(images: Any) -> tuple[np.ndarray, bool]:
    """Images of any form the API takes, as float pixels in [0, 1] of shape (N, 784), and
    whether one image was given: uint8 images as the data sets hold them, float images in
    [0, 1], 28x28 or flattened, or pictures `read_image` prepared (one, or a list)."""
    if isinstance(images, list | tuple) and images and hasattr(images[0], "pixels"):
        images = np.stack([np.asarray(i.pixels) for i in images])
    elif hasattr(images, "pixels"):
        images = np.asarray(images.pixels)
    array = np.asarray(images)
    single = array.shape in ((28, 28), (784,))
    if single:
        array = array[None]
    if array.ndim not in (2, 3) or array.shape[1:] not in ((28, 28), (784,)):
        raise MnistlabError(
            f"images of shape {array.shape} cannot be read",
            "pass 28x28 images (or rows of 784 values), one or a batch of them",
        )
    if array.dtype == np.uint8:
        return preprocess(array), single
    if not np.issubdtype(array.dtype, np.number):
        raise MnistlabError(f"images of type {array.dtype} cannot be read", "pass numbers")
    pixels = array.reshape(len(array), -1).astype(np.float32)
    if pixels.size and (pixels.min() < 0 or pixels.max() > 1):
        raise MnistlabError(
            f"float images must lie in [0, 1], these run from {pixels.min():g} to {pixels.max():g}",
            "divide pixels by 255, or pass the uint8 images as they are",
        )
    return pixels, single


def top(probabilities: np.ndarray, k: int = 3) -> list[tuple[int, float]]:
    """The k most likely classes of one image, most likely first."""
    order = np.argsort(probabilities)[::-1][:k]
    return [(int(c), float(probabilities[c])) for c in order]


def describe(probabilities: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """One image's answer as JSON-ready values: the most likely class, its name, the top
    three and all probabilities."""
    label = int(np.argmax(probabilities))
    return {
        "label": label,
        "class_name": class_names[label],
        "probability": round(float(probabilities[label]), 6),
        "top": [
            {"label": c, "class_name": class_names[c], "probability": round(p, 6)}
            for c, p in top(probabilities)
        ],
        "probabilities": [round(float(p), 6) for p in probabilities],
    }


def answer_test_image(
    model: keras.Model, class_names: Sequence[str], data: Dataset, index: int, shifts: int = 0
) -> dict[str, Any]:
    """Test image `index` of `data`: the class predicted and the label, each with its name,
    and every probability (`reports.figures.answer` draws it); `shifts` as `classify`'s."""
    images, labels = data.test
    if not 0 <= index < len(images):
        raise MnistlabError(
            f"index {index} is out of range: the test set has {plural(len(images), 'image')}",
            f"choose an index from 0 to {len(images) - 1}",
        )
    probabilities = predict(model, images[index : index + 1], shifts)[0]
    guess, actual = int(np.argmax(probabilities)), int(labels[index])
    answer: dict[str, Any] = {
        "index": index,
        "prediction": guess,
        "prediction_name": class_names[guess],
        "label": actual,
        "label_name": class_names[actual],
        "probabilities": [round(float(p), 6) for p in probabilities],
    }
    return answer


def answer_files(
    model: keras.Model,
    class_names: Sequence[str],
    paths: Sequence[Path],
    show: Path | None = None,
    shifts: int = 0,
) -> list[dict[str, Any]]:
    """Read each picture file (one digit each) into MNIST's form and classify it. Each answer
    is `describe`'s with the file and whether its ink was dark on light (`inverted`); a file
    that cannot be read gets `{"file", "error", "fix"}` instead and the others are still read.
    With `show`, the 28x28 image the model saw is written there as `NAME-28x28.png`.
    `shifts` as `classify`'s."""
    from mnistlab.files import check_writable, write_bytes
    from mnistlab.images import png, read_image

    if show is not None:
        check_writable(show, folder=True)
    answers: list[dict[str, Any]] = []
    taken: set[str] = set()
    for path in paths:
        try:
            prepared = read_image(Path(path))
        except MnistlabError as e:
            answers.append({"file": str(path), "error": e.problem, "fix": e.fix})
            continue
        probabilities = classify(model, prepared.pixels[None], shifts)[0]
        answer = {"file": str(path)} | describe(probabilities, class_names)
        answer["inverted"] = prepared.inverted
        if show is not None:
            name = unique_name(f"{Path(path).stem}-28x28", taken)
            answer["shown"] = str(write_bytes(show / f"{name}.png", png(prepared.pixels)))
        answers.append(answer)
    return answers


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or `name-2`, `name-3` ... if two input files share a name."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate)
    return candidate
