"""Pictures of digits made for the tests: strokes on a canvas, and "photos" of MNIST digits
written dark on uneven, noisy paper with a shadow across it, at a camera's size.

`benchmarks/photo_accuracy.py` uses `photo` too, to measure how well a trained run reads them.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def strokes(
    size: tuple[int, int],
    lines: list[list[tuple[float, float]]],
    width: int,
    ink: int = 0,
    paper: int = 255,
    mode: str = "L",
) -> Image.Image:
    """Polylines of `width` pixels in grey `ink` on `paper`."""
    image = Image.new(mode, size, paper if mode == "L" else (paper, paper, paper))
    draw = ImageDraw.Draw(image)
    for line in lines:
        fill = ink if mode == "L" else (ink, ink, ink)
        draw.line(line, fill=fill, width=width, joint="curve")
    return image


def seven(x: float, y: float, height: float) -> list[list[tuple[float, float]]]:
    """A seven whose bounding box's top-left is (x, y): a bar and a slanted stem."""
    w = 0.6 * height
    return [[(x, y), (x + w, y), (x + 0.25 * w, y + height)]]


def one(x: float, y: float, height: float) -> list[list[tuple[float, float]]]:
    """A vertical stroke: a one, `height` tall."""
    return [[(x, y), (x, y + height)]]


def photo(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """An RGB "photo" of a 28x28 MNIST digit written dark on paper: the digit enlarged to 150
    to 600 pixels, slightly rotated, half of them with a finer pen, placed off-centre on a
    400 to 900 pixel sheet whose grey varies slowly, with a shadow that darkens one side by
    15 to 35%, and camera noise."""
    height, width = int(rng.integers(400, 900)), int(rng.integers(400, 900))
    size = int(rng.integers(150, min(height, width) * 0.7))
    glyph = Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC)
    glyph = glyph.rotate(float(rng.uniform(-10, 10)), resample=Image.Resampling.BICUBIC)
    alpha = np.clip((np.asarray(glyph, np.float64) / 255 - 0.15) / 0.6, 0, 1)
    if rng.random() < 0.5:  # a fine pen: strokes a third to a half as wide as MNIST's
        alpha = ndimage.grey_erosion(alpha, size=max(2, size // 40))
    top = int(rng.integers(0, height - size))
    left = int(rng.integers(0, width - size))
    cover = np.zeros((height, width))
    cover[top : top + size, left : left + size] = alpha

    paper = rng.uniform(0.7, 0.95)
    # Slow variations of the paper's grey, some 100 pixels across: smoothed noise on a grid 8
    # times coarser, enlarged (as fast as smoothing at full size, 50 times over).
    coarse = ndimage.gaussian_filter(rng.normal(0, 1, (height // 8 + 2, width // 8 + 2)), 5)
    blotches = ndimage.zoom(coarse, 8, order=1)[:height, :width]
    blotches *= 0.04 / max(float(blotches.std()), 1e-9)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width]
    ramp = (np.cos(angle) * xx / width + np.sin(angle) * yy / height + 1) / 2  # 0..1 across
    shadow = 1 - rng.uniform(0.15, 0.35) * ramp
    tint = np.array([1.0, 0.98, 0.93])  # warm paper
    ground = (paper + blotches)[..., None] * shadow[..., None] * tint
    ink = np.array(rng.choice([[0.12, 0.12, 0.15], [0.1, 0.15, 0.45]]))  # pencil-black or blue
    ink = ink[None, None, :] * shadow[..., None]
    rgb = ground * (1 - cover[..., None]) + ink * cover[..., None]
    rgb += rng.normal(0, 0.02, rgb.shape)
    return Image.fromarray(np.clip(rgb * 255, 0, 255).astype(np.uint8), mode="RGB")
