"""How well runs read digits written as people write them: MNIST's TEST digits redrawn on paper
with other pens and scanners, and 3-digit numbers made of them. Never trained on: only the
test set's digits are used, and only here.

    python benchmarks/handwriting_variants.py RUN_DIR... [--per-variant 300] [--numbers 200]
    python benchmarks/handwriting_variants.py --default ...     # the default reading model too
    python benchmarks/handwriting_variants.py RUN_DIR --digits-from train --per-variant 0

`--digits-from train` makes the pictures from MNIST's TRAINING digits instead (seed 1 unless
`--seed` is given): the set to tune `mnistlab read`'s segmentation on, so that the test
digits' figure stays a measure, not a target. `--per-variant 0` measures the numbers only.

Each variant draws its own digits from the test set (seeded), enlarges each 28x28 digit 6
times (bicubic) and writes it dark on light, slightly noisy paper, then changes it:

- paper: as written, off-centre on a page twice its size
- marker: strokes thickened by a disc of radius 5 (about twice MNIST's width)
- fine pen: strokes thinned to a third of their width
- blur: a Gaussian of sigma 6 (a scan out of focus)
- low-res: the digit scanned at 12 pixels high, then enlarged back without smoothing
- frame: a drawn rectangle round the digit, near it
- ruled: ruled lines across the page, one through the digit's lower part
- underline: a line under the digit
- corner: the digit small, in a corner of a large page

Each picture goes through `images.prepare` (what `mnistlab predict` does) and each run's
model; the numbers go through `reading.read_picture` (what `mnistlab read` does), three
digits side by side with a random gap from -0.15 (overlapping, touching) to 0.6 of the
narrower neighbour's width, each digit its own size and baseline, and a number counts only
when all three digits are read, and only them. Prints a Markdown table: accuracy per variant
and run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mnistlab import images as im  # noqa: E402
from mnistlab.reading import read_picture  # noqa: E402

SCALE = 6  # the 28x28 digit enlarged this many times: a 168-pixel digit, a phone scan's size
PAPER, INK = 235, 35  # grey levels of the paper and of the darkest ink


def enlarge(digit: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """A 28x28 uint8 digit as ink in [0, 1], `scale` times larger (bicubic)."""
    big = Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(big, np.float64) / 255, 0, 1)


def on_paper(ink: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Ink in [0, 1] written dark on light paper with a little noise, as a grey picture."""
    grey = PAPER - ink * (PAPER - INK) + rng.normal(0, 4, ink.shape)
    return Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8))


def place(ink: np.ndarray, shape: tuple[int, int], at: tuple[int, int]) -> np.ndarray:
    page = np.zeros(shape)
    top, left = at
    h, w = ink.shape
    page[top : top + h, left : left + w] = np.maximum(page[top : top + h, left : left + w], ink)
    return page


def disc(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return x**2 + y**2 <= radius**2


def offset_page(ink: np.ndarray, rng: np.random.Generator, margin: float = 0.5) -> np.ndarray:
    """The ink on a page `1 + 2 * margin` times its size, placed anywhere on it."""
    h, w = ink.shape
    shape = (int(h * (1 + 2 * margin)), int(w * (1 + 2 * margin)))
    top = int(rng.integers(0, shape[0] - h + 1))
    left = int(rng.integers(0, shape[1] - w + 1))
    return place(ink, shape, (top, left))


def paper(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    return on_paper(offset_page(enlarge(d), rng), rng)


def marker(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    ink = ndimage.grey_dilation(enlarge(d), footprint=disc(5))
    return on_paper(offset_page(ink, rng), rng)


def fine_pen(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    solid = enlarge(d) > 0.5
    thin = ndimage.binary_erosion(solid, structure=disc(4))
    # Strokes narrower than the erosion keep their middle line
    distance = ndimage.distance_transform_edt(solid)
    ridge = solid & (distance >= ndimage.maximum_filter(distance, size=5))
    ink = ndimage.binary_dilation(thin | ridge, structure=disc(1)).astype(float)
    return on_paper(offset_page(ink, rng), rng)


def blur(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    ink = ndimage.gaussian_filter(offset_page(enlarge(d), rng), 6)
    return on_paper(ink / max(ink.max(), 1e-6), rng)


def low_res(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    page = offset_page(enlarge(d), rng)
    small = Image.fromarray((page * 255).astype(np.uint8)).resize(
        (page.shape[1] * 12 // 168, page.shape[0] * 12 // 168), Image.Resampling.BOX
    )
    back = small.resize((page.shape[1], page.shape[0]), Image.Resampling.NEAREST)
    return on_paper(np.asarray(back, np.float64) / 255, rng)


def frame(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    page = offset_page(enlarge(d), rng, margin=0.35)
    rows, cols = np.flatnonzero(page.max(1) > 0.3), np.flatnonzero(page.max(0) > 0.3)
    gap = int(rng.integers(8, 30))
    box = Image.new("L", page.shape[::-1])
    ImageDraw.Draw(box).rectangle(
        (
            max(0, cols[0] - gap),
            max(0, rows[0] - gap),
            min(page.shape[1] - 1, cols[-1] + gap),
            min(page.shape[0] - 1, rows[-1] + gap),
        ),
        outline=255,
        width=int(rng.integers(3, 9)),
    )
    return on_paper(np.maximum(page, np.asarray(box) / 255), rng)


def ruled(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    page = offset_page(enlarge(d), rng, margin=0.4)
    rows = np.flatnonzero(page.max(1) > 0.3)
    lines = Image.new("L", page.shape[::-1])
    draw = ImageDraw.Draw(lines)
    spacing = int(rng.integers(50, 80))
    first = int(rows[0] + 0.8 * (rows[-1] - rows[0])) % spacing
    for y in range(first, page.shape[0], spacing):
        draw.line((0, y, page.shape[1], y), fill=150, width=int(rng.integers(2, 5)))
    return on_paper(np.maximum(page, np.asarray(lines) / 255), rng)


def underline(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    page = offset_page(enlarge(d), rng, margin=0.5)
    rows, cols = np.flatnonzero(page.max(1) > 0.3), np.flatnonzero(page.max(0) > 0.3)
    y = min(page.shape[0] - 4, rows[-1] + int(rng.integers(4, 20)))
    mark = Image.new("L", page.shape[::-1])
    ImageDraw.Draw(mark).line(
        (max(0, cols[0] - 30), y, min(page.shape[1], cols[-1] + 30), y + int(rng.integers(-6, 7))),
        fill=255,
        width=int(rng.integers(4, 10)),
    )
    return on_paper(np.maximum(page, np.asarray(mark) / 255), rng)


def corner(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    ink = enlarge(d, 3)
    shape = (500, 400)
    top = int(rng.choice([5, shape[0] - ink.shape[0] - 5]))
    left = int(rng.choice([5, shape[1] - ink.shape[1] - 5]))
    return on_paper(place(ink, shape, (top, left)), rng)


VARIANTS: dict[str, Callable[[np.ndarray, np.random.Generator], Image.Image]] = {
    "paper": paper,
    "marker": marker,
    "fine pen": fine_pen,
    "blur": blur,
    "low-res": low_res,
    "frame": frame,
    "ruled": ruled,
    "underline": underline,
    "corner": corner,
}


def number(digits: list[np.ndarray], rng: np.random.Generator) -> Image.Image:
    """Three digits side by side: each its own size (0.85 to 1.15) and baseline (+-8%), a gap
    from -0.15 (overlapping, touching) to 0.6 of the narrower neighbour's width: a 1
    touches its neighbour, it is not written inside it."""
    inks = []
    for d in digits:
        ink = enlarge(d, 4)
        size = float(rng.uniform(0.85, 1.15))
        ink = ndimage.zoom(ink, size, order=1)
        cols = np.flatnonzero(ink.max(0) > 0.1)
        inks.append(ink[:, cols[0] : cols[-1] + 1])
    height = max(i.shape[0] for i in inks) + 60
    width = sum(i.shape[1] for i in inks) + 200
    page = np.zeros((height, width))
    left = 60
    for k, ink in enumerate(inks):
        top = 30 + int(rng.uniform(-0.08, 0.08) * ink.shape[0])
        top = max(0, min(height - ink.shape[0], top))
        h, w = ink.shape
        page[top : top + h, left : left + w] = np.maximum(page[top : top + h, left : left + w], ink)
        narrower = min(w, inks[k + 1].shape[1]) if k + 1 < len(inks) else w
        left += w + int(rng.uniform(-0.15, 0.6) * narrower)
    return on_paper(page[:, : left + 60], rng)


def measure(
    model: object, per_variant: int, numbers: int, seed: int, digits_from: str = "test"
) -> dict[str, float]:
    """Accuracy on each variant's digits, and the share of numbers read exactly, with digits
    from MNIST's `digits_from` set ("test" or "train"). The same seed makes the same pictures
    for every model."""
    import mnistlab as ml
    from mnistlab.prediction import classify

    data = ml.load("mnist")
    x, y = data.train if digits_from == "train" else data.test
    rng = np.random.default_rng(seed)
    rows = {}
    start = time.perf_counter()
    for name, make in VARIANTS.items() if per_variant > 0 else ():
        chosen = rng.choice(len(x), per_variant, replace=False)
        pixels = []
        for i in chosen:
            try:
                pixels.append(im.prepare(make(x[i], rng)).pixels)
            except ml.MnistlabError:
                pixels.append(np.zeros((28, 28), np.float32))  # counted wrong
        guesses = classify(getattr(model, "model", model), np.stack(pixels)).argmax(1)
        rows[name] = float(np.mean(guesses == y[chosen]))
        print(f"{name}: {rows[name]:.1%}, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    right = 0
    for _ in range(numbers):
        chosen = rng.choice(len(x), 3, replace=False)
        picture = number([x[i] for i in chosen], rng)
        try:
            right += read_picture(model, picture).text == "".join(str(y[i]) for i in chosen)
        except ml.MnistlabError:
            continue  # no ink found: not read
    rows["3-digit numbers read exactly"] = right / max(numbers, 1)
    print(f"numbers: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", help="run folders (trained on MNIST)")
    parser.add_argument("--default", action="store_true", help="also the default reading model")
    parser.add_argument("--per-variant", type=int, default=300)
    parser.add_argument("--numbers", type=int, default=200)
    parser.add_argument("--seed", type=int, help="0 for the test digits, 1 for the training's")
    parser.add_argument(
        "--digits-from",
        choices=["test", "train"],
        default="test",
        help="MNIST's set the digits come from: train to tune on, test to measure once",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # measure this run here, print JSON
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else int(args.digits_from == "train")
    if args.one is not None:
        import mnistlab as ml

        model = ml.reader(None if args.one == "default" else args.one, log=print_err)
        print(json.dumps(measure(model, args.per_variant, args.numbers, seed, args.digits_from)))
        return
    # Each run in a process of its own: one process runs one Keras backend
    names = [*args.runs, *(["default"] if args.default else [])]
    columns = {}
    for name in names:
        options = ["--per-variant", str(args.per_variant), "--numbers", str(args.numbers)]
        options += ["--digits-from", args.digits_from]
        out = subprocess.run(
            [sys.executable, __file__, "--one", name, *options, "--seed", str(seed)],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout
        columns[name if name != "default" else "default reading model"] = json.loads(out)
    rows = list(next(iter(columns.values())))
    print("| variant | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    digits = [r for r in rows if r in VARIANTS]
    for row in rows:
        if row not in VARIANTS and digits:
            means = [np.mean([c[r] for r in digits]) for c in columns.values()]
            print(
                "| mean of the digits' variants | " + " | ".join(f"{m:.1%}" for m in means) + " |"
            )
        print(f"| {row} | " + " | ".join(f"{c[row]:.1%}" for c in columns.values()) + " |")


def print_err(message: str) -> None:
    print(message, file=sys.stderr)


if __name__ == "__main__":
    main()
