"""Numbers, not only digits: every digit in a picture, left to right, read by one model.

    reading = ml.read("photo.jpg")            # the default reading model, trained once
    reading.text, [d.probability for d in reading.digits]
    ml.read("photo.jpg", run="runs/mine")     # a run of your own

`read_picture(model, image)` finds the digits and classifies them: the picture's ink as
`images.ink_of` cleans it (frames, ruled lines, specks gone), cut into pieces (connected
components), the pieces of one digit joined (a 5 whose top is not joined to its body lies over
it: the pieces that overlap horizontally by half the narrower one are one digit), and a piece
too wide for one digit split where its column ink profile is lowest, into as many digits as
the model reads best (each split scored by the mean log-probability of its digits, with a
prior on the width a digit has: about 0.75 of its height). Each digit is then brought into
MNIST's form as `images.prepare` brings a picture of one digit.

`reader(run_dir)` is the model to read with: a run folder's, or with none, the default reading
model: preset `handwriting`, trained once on first use and kept in the cache
(`$MNISTLAB_MODELS`, else `models/` in mnistlab's data cache), a file lock letting two processes
started side by side train it once. `$MNISTLAB_READER_SPEC` (a TOML file of spec fields) trains
another spec instead, for tests that need a model in seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage

from mnistlab.errors import MnistlabError
from mnistlab.spec import Spec, preset

if TYPE_CHECKING:
    from mnistlab.runs import Run

Log = Callable[[str], None]
DIGIT_WIDTH = 0.75  # a digit's usual width, as a share of its height (MNIST's median is 0.6
# to 0.8 of the box for all but the 1s)
SPLIT_AT = 0.8  # a piece wider than this many times its height may be several digits (two
# touching digits, one of them a 1, can be that narrow)
SHORT = 0.5  # a piece less high than this share of the writing's is part of a digit
MAX_DIGITS = 8  # in one piece, at most
PRIOR = 0.35  # the weight of the width prior against the mean log-probability
READER_PRESET = "handwriting"
SPEC_ENV = "MNISTLAB_READER_SPEC"
MODELS_ENV = "MNISTLAB_MODELS"


@dataclass(frozen=True)
class Digit:
    """One digit read: its label and probability, its box (top, left, bottom, right) in the
    picture's own pixels, and the 28x28 image the model saw."""

    label: int
    probability: float
    box: tuple[int, int, int, int]
    pixels: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "probability": round(self.probability, 6),
            "box": list(self.box),
        }


@dataclass(frozen=True)
class Reading:
    """The digits of a picture, left to right, and the number they write (`text`)."""

    digits: tuple[Digit, ...]
    inverted: bool

    @property
    def text(self) -> str:
        return "".join(str(d.label) for d in self.digits)

    def to_dict(self, file: str | None = None) -> dict[str, Any]:
        """`{"file", "text", "digits": [{"label", "probability", "box"}]}`, the file only
        when given."""
        head = {"file": file} if file is not None else {}
        return head | {"text": self.text, "digits": [d.to_dict() for d in self.digits]}


def read_picture(model: Any, source: str | Path | bytes | IO[bytes] | Any) -> Reading:
    """Every digit in a picture (a path, bytes, an open binary file or a PIL image), left to
    right, read by `model` (a Keras model or a `Run`)."""
    from PIL import Image

    from mnistlab import images as im
    from mnistlab.prediction import classify

    keras_model = getattr(model, "model", model)
    if isinstance(source, Image.Image):
        picture = source
    else:
        raw = im.read_file(Path(source)) if isinstance(source, str | Path) else source
        picture = im.decode(raw)
    paper = im.ink_of(picture)

    def probabilities(parts: list[tuple[np.ndarray, tuple[int, int, int, int]]]) -> np.ndarray:
        pixels = np.stack([im.digit(paper.ink, mask, box) for mask, box in parts])
        return classify(keras_model, pixels)

    digits = []
    for group in groups(paper.pieces):
        parts, chances = best_split(group, probabilities)
        for (mask, box), p in zip(parts, chances, strict=True):
            label = int(np.argmax(p))
            digits.append(
                Digit(label, float(p[label]), paper.to_picture(box), im.digit(paper.ink, mask, box))
            )
    return Reading(tuple(digits), paper.inverted)


def groups(pieces: np.ndarray) -> list[np.ndarray]:
    """The ink cut into digits' worth of pieces, left to right: connected components, those
    that overlap horizontally by `images.OVERLAP` of the narrower joined (`images.stacks`),
    and a piece under SHORT of the writing's height (a 5's top that overhangs its body, the
    bottom of a broken 2) joined to the digit nearest it."""
    from mnistlab.images import stacks

    labels, count = ndimage.label(pieces, structure=np.ones((3, 3)))
    found = [np.isin(labels, [i + 1 for i in m]) for m in stacks(ndimage.find_objects(labels))]
    while len(found) > 1:
        boxes = [bounds(g) for g in found]
        heights = [b[2] - b[0] for b in boxes]
        short = int(np.argmin(heights))
        if heights[short] >= SHORT * float(np.median(heights)):
            break
        gaps = [
            max(boxes[j][1] - boxes[short][3], boxes[short][1] - boxes[j][3])
            if j != short
            else np.inf
            for j in range(len(found))
        ]
        nearest = int(np.argmin(gaps))
        found[nearest] = found[nearest] | found[short]
        del found[short]
    return found


def bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def best_split(
    group: np.ndarray,
    probabilities: Callable[[list[tuple[np.ndarray, tuple[int, int, int, int]]]], np.ndarray],
) -> tuple[list[tuple[np.ndarray, tuple[int, int, int, int]]], np.ndarray]:
    """The group as one digit, or split into the number of digits that reads best."""
    top, left, bottom, right = bounds(group)
    height, width = bottom - top, right - left
    whole = [(group, (top, left, bottom, right))]
    if width <= SPLIT_AT * height:
        return whole, probabilities(whole)
    expected = width / (DIGIT_WIDTH * height)
    best: tuple[float, Any, Any] | None = None
    for k in range(1, min(MAX_DIGITS, int(np.ceil(expected)) + 1) + 1):
        parts = split(group, k) if k > 1 else whole
        if len(parts) != k:
            continue
        chances = probabilities(parts)
        score = float(np.mean(np.log(chances.max(axis=1) + 1e-9))) - PRIOR * abs(k - expected)
        if best is None or score > best[0]:
            best = (score, parts, chances)
    assert best is not None
    return best[1], best[2]


def split(group: np.ndarray, k: int) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """The group cut into k parts at the columns of least ink near each k-th of its width."""
    top, left, bottom, right = bounds(group)
    width = right - left
    profile = ndimage.uniform_filter1d(group[:, left:right].sum(axis=0).astype(float), 3)
    cuts = [left]
    for i in range(1, k):
        centre, reach = i * width / k, 0.3 * width / k
        low, high = int(centre - reach), int(np.ceil(centre + reach)) + 1
        cuts.append(left + low + int(np.argmin(profile[low:high])))
    cuts.append(right)
    parts = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        mask = np.zeros_like(group)
        mask[:, a:b] = group[:, a:b]
        if mask.sum() < 4:
            return []
        parts.append((mask, bounds(mask)))
    return parts


def models_dir() -> Path:
    """Where the default reading model is kept: `$MNISTLAB_MODELS`, else `models/` in the data
    cache (`$MNISTLAB_DATA`, else the user's cache folder)."""
    from mnistlab.data.cache import cache_dir

    env = os.environ.get(MODELS_ENV)
    return Path(env).expanduser() if env else cache_dir() / "models"


def reader_spec() -> Spec:
    """The default reading model's spec: preset `handwriting`, or `$MNISTLAB_READER_SPEC`'s."""
    path = os.environ.get(SPEC_ENV)
    return Spec.from_file(path) if path else preset(READER_PRESET)


def reader_folder(spec: Spec) -> Path:
    """The run folder of the default reading model of `spec`: named by the spec's hash, so a
    changed preset trains anew rather than reusing an older model."""
    values = spec.to_dict()
    values.pop("backend", None)  # a model trained on either backend loads on both
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()
    return models_dir() / f"reader-{digest[:12]}"


def reader(
    run_dir: str | Path | None = None, spec: Spec | None = None, log: Log | None = None
) -> Run:
    """The model to read with: the run at `run_dir`, or the default reading model (of `spec`,
    else `reader_spec()`), trained on MNIST on first use and kept in `models_dir()`. `log`
    hears what happens, the training's epochs included."""
    from mnistlab import runs

    if run_dir is not None:
        return runs.load(run_dir)
    import filelock

    spec = spec or reader_spec()
    folder = reader_folder(spec)
    say = log or (lambda message: None)
    if (folder / runs.META_FILE).is_file():
        return runs.load(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(folder.parent / f".{folder.name}.lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        say("Waiting for another mnistlab process that is training the reading model")
        lock.acquire()
    try:
        if (folder / runs.META_FILE).is_file():  # trained meanwhile, by the lock's holder
            return runs.load(folder)
        return train_reader(spec, folder, say)
    finally:
        lock.release()


def reader_backend(spec: Spec) -> str:
    """The backend to train the reading model on: the one Keras already runs in this process
    (a notebook on JAX), else the spec's if it is installed (TensorFlow: its convolutions are
    about 5 times faster here), else the default."""
    import importlib.util

    from mnistlab import backend

    if backend.running() is not None:
        return backend.default()
    wanted = spec.backend or backend.default()
    return wanted if importlib.util.find_spec(wanted) else backend.default()


def train_reader(spec: Spec, folder: Path, say: Log) -> Run:
    from mnistlab import backend

    spec = spec.replace(backend=reader_backend(spec))
    backend.use(spec.backend)
    from mnistlab.callbacks import EpochLine
    from mnistlab.experiments.sweep import estimate_seconds
    from mnistlab.training import train

    # The sweeps' rough estimate leaves out the augmentation: preset handwriting's seeds took
    # 15 to 21 minutes here at a load average of 7 to 12 (docs/results.md)
    minutes = max(1, round(estimate_seconds(spec) / 60))
    say(
        f"No reading model yet: training preset {READER_PRESET} once (at least {minutes} "
        f"minute{'s' if minutes > 1 else ''} on 2 idle cores, several times that on busy "
        f"ones), kept in {folder}"
    )
    run = train(spec, "mnist", callbacks=[EpochLine("reading model", spec.epochs, say)])
    run.save(folder)
    say(f"Reading model trained: {run.accuracy:.2%} on MNIST's test set")
    return run


def read(
    source: str | Path | bytes | IO[bytes],
    run: str | Path | Run | None = None,
    log: Log | None = None,
) -> Reading:
    """Every digit in a picture, left to right: with the run (a folder or a `Run`) if given,
    else with the default reading model (trained once, on first use)."""
    from mnistlab.runs import Run as RunType

    model = run if isinstance(run, RunType) else reader(run, log=log)
    return read_picture(model, source)


def read_files(model: Any, paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Each file read as a number: `Reading.to_dict(file)`, or `{"file", "error", "fix"}` for a
    file that cannot be read (the others are still read)."""
    answers = []
    for path in paths:
        try:
            answers.append(read_picture(model, Path(path)).to_dict(str(path)))
        except MnistlabError as e:
            answers.append({"file": str(path), "error": e.problem, "fix": e.fix})
    return answers
