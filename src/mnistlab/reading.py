"""Numbers, not only digits: every digit in a picture, left to right, read by one model.

    reading = ml.read("photo.jpg")            # the default reading model, trained once
    reading.text, [d.probability for d in reading.digits]
    ml.read("photo.jpg", run="runs/mine")     # a run of your own

`read_picture(model, image)` finds the digits and classifies them: the picture's ink as
`images.ink_of` cleans it (frames, ruled lines, specks gone), cut into pieces (connected
components), the pieces of one digit joined (a 5 whose top is not joined to its body lies over
it: the pieces that overlap horizontally by half the narrower one are one digit), and a piece
wider than SPLIT_AT of its height may be split: lines are drawn down it where a cut may go
(`cut_lines`: straight down and along the path of least ink, `least_ink_path`), and of all the
ways of cutting it at some of them the one whose digits read best wins (`best_split`, dynamic
programming over the lines): the sum of its digits' log-probabilities (each part read upright
and turned by TURNS, averaged), each digit's width as its class's digits are wide in MNIST
(`SHAPES`), a cost for a part much lower than the piece (a 2's base cut off) and for each stroke
a cut crosses beyond one (half a 0 read surely as a 6 is not a digit). Chosen on numbers made
of MNIST's TRAINING digits (`benchmarks/handwriting_variants.py --digits-from train`). Each
digit is then brought into MNIST's form as `images.prepare` brings a picture of one digit.

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
PRIOR = 0.0  # a cost for each digit more (0 chose best on the training digits: 83% to 81%;
# with the cut lines below, -0.5 gave 83.5% and -1.0 80.8% on 600 numbers)
# Chosen on 300 numbers of MNIST's training digits (--digits-from train, seed 1), preset
# handwriting's model: 1.0 for the widths' weight gave 79.7%, 0.5 81.3%, 2.0 74.3%
SHAPE_WEIGHT = 0.5
# A part lower than TALL of its group (a stroke's tail, the top half of a 4) loses SHORT_COST.
# On 600 numbers of training digits with the cut lines below: TALL 0.75 and 3.0 gave 84.8%, 0.6
# and 2.0 83.0% (on 300: 0.7 and 2.0 85.3%, 0.6 and 4.0 84.7%; the digits of a number differ in
# height by up to 0.85 / 1.15 = 0.74)
SHORT_COST = 3.0
TALL = 0.75
# Cut lines (`cut_lines`). On 300 numbers of training digits, each changed alone: PATH_REACH
# 0.25 gave 83.7%, 0.08 84.0%, 0.15 84.7%; SEPARATE 0.04 82.0%; NARROWEST 0.2 81.7%; WIDEST
# 1.3 84.7% (the same); SPLIT_AT 0.6 82.7% and 0.45 82.7% (narrow digits cut into two 1s)
NARROWEST = 0.12  # a part is at least this share of the group's height wide (a 1)
WIDEST = 1.6  # ... and at most this (a wide 2)
STEP = 0.03  # cut lines start every this share of the height across the group
PATH_REACH = 0.15  # a path of least ink strays at most this share of the height from its start
SEPARATE = 0.08  # a line is kept when it crosses the least ink this near it
CUTS_PER_DIGIT = 8  # lines kept, at most, for each DIGIT_WIDTH of a group's width ...
MAX_CUTS = 48  # ... and in all: the parts read in a group are bounded by the lines' count
CROSS_COST = 2.0  # each stroke a cut crosses beyond one (1.0 gave 78.7%, 2.0 79.7%, 4.0 80.0%;
# with the cut lines, 1.0 81.7%, 2.0 84.7%, 4.0 84.7% on 300 numbers)
# Each part is read upright and turned by these angles (degrees), the log-probabilities
# averaged: a piece of a digit read surely upright is read less surely turned, a digit as
# surely. On 600 numbers of training digits, preset handwriting's model: none 84.8%, +-12
# 85.8%, +-10 and +-20 87.0%, these 87.3%. Only with a run trained on turned digits (its spec's
# `rotate` over 0): the lab's model, never shown one, read 300 numbers 79.7% upright, 79.3%
# with +-10, 75.7% with these
TURNS = (-30.0, -20.0, -10.0, 10.0, 20.0, 30.0)
# Each class's width as a share of its height in MNIST's training set (mean, spread; ink over
# 64/255): a 1 is 0.44 +- 0.20, the others 0.69 to 0.96
SHAPES = {
    0: (0.917, 0.178),
    1: (0.437, 0.198),
    2: (0.954, 0.214),
    3: (0.808, 0.166),
    4: (0.803, 0.167),
    5: (0.960, 0.250),
    6: (0.739, 0.160),
    7: (0.786, 0.171),
    8: (0.773, 0.170),
    9: (0.688, 0.142),
}
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
    turns = TURNS if getattr(getattr(model, "spec", None), "rotate", 0) > 0 else ()
    if isinstance(source, Image.Image):
        picture = source
    else:
        raw = im.read_file(Path(source)) if isinstance(source, str | Path) else source
        picture = im.decode(raw)
    paper = im.ink_of(picture)

    def looks(parts: list[tuple[np.ndarray, tuple[int, int, int, int]]]) -> list[np.ndarray]:
        """Each part (its mask within its box, its box) as the model sees it."""
        return [
            im.digit(paper.ink[top:bottom, left:right], mask, (0, 0, bottom - top, right - left))
            for mask, (top, left, bottom, right) in parts
        ]

    def probabilities(parts: list[tuple[np.ndarray, tuple[int, int, int, int]]]) -> np.ndarray:
        seen = np.stack(looks(parts))
        turned = [ndimage.rotate(seen, a, axes=(1, 2), reshape=False, order=1) for a in turns]
        out = classify(keras_model, np.concatenate([seen, *turned]))
        out = out.reshape(1 + len(turns), len(seen), out.shape[-1])
        chances = np.exp(np.log(out + 1e-9).mean(axis=0))
        return chances / chances.sum(axis=1, keepdims=True)

    digits = []
    for group in groups(paper.pieces):
        parts, chances = best_split(group, probabilities)
        for (_, box), p, pixels in zip(parts, chances, looks(parts), strict=True):
            label = int(np.argmax(p))
            digits.append(Digit(label, float(p[label]), paper.to_picture(box), pixels))
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
    """The group as one digit, or split into the digits that read best. Lines are drawn across
    it where a cut may go (`cut_lines`), and of all the ways of cutting it at some of them,
    the one whose digits score best wins (the sum of `fit`: each digit's log-probability and
    its width as its class's digits are wide, `SHAPES`; less CROSS_COST for each stroke a cut
    crosses beyond one: half a 0 read surely as a 6 is not a digit), found by dynamic
    programming over the lines, left to right, each part between two lines read once. A part
    is (its mask within its box, its box in the picture)."""
    top, left, bottom, right = bounds(group)
    height, width = bottom - top, right - left
    sub = group[top:bottom, left:right]
    whole = [(sub, (top, left, bottom, right))]
    if width <= SPLIT_AT * height:
        return whole, probabilities(whole)
    lines = [np.zeros(height, np.int64), *cut_lines(sub), np.full(height, width, np.int64)]
    strokes = [0, *(stroke_runs(sub, line) for line in lines[1:-1]), 0]
    index = np.arange(width)[None, :]
    parts: dict[tuple[int, int], tuple[np.ndarray, tuple[int, int, int, int]]] = {}
    for i in range(len(lines)):
        for j in range(i + 1, len(lines)):
            span = float(np.mean(lines[j] - lines[i]))
            if (i, j) != (0, len(lines) - 1) and (
                np.any(lines[j] < lines[i]) or not NARROWEST * height <= span <= WIDEST * height
            ):
                continue
            mask = sub & (index >= lines[i][:, None]) & (index < lines[j][:, None])
            if mask.sum() >= 4:
                t, lo, b, r = bounds(mask)
                parts[i, j] = (mask[t:b, lo:r], (top + t, left + lo, top + b, left + r))
    chances = dict(zip(parts, probabilities(list(parts.values())), strict=True))
    # best[j]: the best way found of cutting the ink left of line j into digits, and its score
    best: list[tuple[float, list[tuple[int, int]]] | None] = [None] * len(lines)
    best[0] = (0.0, [])
    for j in range(1, len(lines)):
        for i in range(j):
            before = best[i]
            if before is None or (i, j) not in parts or len(before[1]) >= MAX_DIGITS:
                continue
            score = before[0] + fit(chances[i, j], parts[i, j][1], height) - PRIOR
            if j < len(lines) - 1:
                score -= CROSS_COST * max(strokes[j] - 1, 0)
            now = best[j]
            if now is None or score > now[0]:
                best[j] = (score, [*before[1], (i, j)])
    found = best[-1]
    assert found is not None  # the whole group is always a way
    return [parts[k] for k in found[1]], np.stack([chances[k] for k in found[1]])


def cut_lines(sub: np.ndarray) -> list[np.ndarray]:
    """Where a group (its box's pixels) may be cut: lines from top to bottom (each row's
    column where the right part starts), straight down and along the path of least ink
    (`least_ink_path`, within PATH_REACH of the group's height of where it starts), from every
    STEP of the height across, keeping those that cross the least ink within SEPARATE of the
    height on either side, at most CUTS_PER_DIGIT for each DIGIT_WIDTH of the group's width
    and MAX_CUTS in all (the least ink first): the parts read are bounded by the lines'
    count, whatever the picture."""
    height, width = sub.shape
    margin, step = max(1, int(NARROWEST * height)), max(1, round(STEP * height))
    reach, apart = max(2, round(PATH_REACH * height)), max(1, round(SEPARATE * height))
    rows = np.arange(height)
    kept = []
    for path in (False, True):
        columns = list(range(margin, width - margin + 1, step))
        lines = [least_ink_path(sub, c, reach) if path else np.full(height, c) for c in columns]
        ink = [int(sub[rows, np.minimum(line, width - 1)].sum()) for line in lines]
        for k, c in enumerate(columns):
            near = [ink[m] for m in range(len(columns)) if abs(columns[m] - c) <= apart]
            # Along a run of columns crossing as little ink, only the run's first: one line
            # each SEPARATE along it gave 85.3% on 600 numbers of training digits, this 87.3%
            if ink[k] == min(near) and (k == 0 or ink[k - 1] != ink[k]):
                kept.append((ink[k], c, lines[k]))
    room = min(MAX_CUTS, CUTS_PER_DIGIT * int(np.ceil(width / (DIGIT_WIDTH * height))))
    unique: dict[bytes, tuple[int, int, np.ndarray]] = {}
    for ink_crossed, c, line in sorted(kept, key=lambda k: k[0]):
        unique.setdefault(line.tobytes(), (ink_crossed, c, line))
    chosen = list(unique.values())[:room]
    return [line for _, _, line in sorted(chosen, key=lambda k: float(np.mean(k[2])))]


def stroke_runs(sub: np.ndarray, line: np.ndarray) -> int:
    """How many strokes a cut line crosses: runs of rows with ink on both sides of it."""
    rows = np.arange(len(line))
    inside = (line > 0) & (line < sub.shape[1])
    left = np.zeros(len(line), bool)
    right = np.zeros(len(line), bool)
    left[inside] = sub[rows[inside], line[inside] - 1]
    right[inside] = sub[rows[inside], line[inside]]
    touching = (left & right).astype(np.int8)
    return int(np.sum(np.diff(np.r_[0, touching, 0]) == 1))


def fit(p: np.ndarray, box: tuple[int, int, int, int], height: int) -> float:
    """How well one part reads as a digit: the log-probability of its class, plus the
    log-likelihood of its width for that class (`SHAPES`, weighted by SHAPE_WEIGHT), and a
    part much lower than the group (a stroke's tail cut off) loses SHORT_COST."""
    label = int(np.argmax(p))
    own = max(box[2] - box[0], 1)
    mean, spread = SHAPES[label]
    aspect = (box[3] - box[1]) / own
    score = float(np.log(p[label] + 1e-9)) - SHAPE_WEIGHT * 0.5 * ((aspect - mean) / spread) ** 2
    if own < TALL * height:
        score -= SHORT_COST
    return score


def least_ink_path(group: np.ndarray, column: int, reach: int) -> np.ndarray:
    """Each row's column of the path from top to bottom crossing the least ink, moving at most
    one column a row and staying within `reach` of `column`."""
    low, high = max(column - reach, 0), min(column + reach + 1, group.shape[1])
    cost = group[:, low:high].astype(float) + 0.01 * np.abs(np.arange(low, high) - column)
    total = cost.copy()
    moves = np.zeros(cost.shape, np.int64)
    for row in range(1, len(cost)):
        previous = total[row - 1]
        options = np.stack([np.r_[np.inf, previous[:-1]], previous, np.r_[previous[1:], np.inf]])
        moves[row] = np.argmin(options, axis=0) - 1
        total[row] += options.min(axis=0)
    lines = np.empty(len(cost), np.int64)
    lines[-1] = int(np.argmin(total[-1]))
    for row in range(len(cost) - 1, 0, -1):
        lines[row - 1] = lines[row] + moves[row][lines[row]]
    return lines + low


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
    # 225 to 241 s alone here, and the recipe before it 15 to 21 minutes in float32 at a load
    # average of 7 to 12 (docs/results.md). On JAX (a notebook) its bfloat16 convolutions are
    # about 20% slower than in float32 on a CPU, and TensorFlow's 5 times faster than either.
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
