"""Pictures into MNIST's form: the one path that brings any picture of a digit (a photo, a scan,
a drawing) to what the models were trained on.

`read_image(source)` takes a file's path or bytes and returns it `Prepared`: `decode(data)`
reads the bytes with the limits below, `prepare(image)` turns the picture into what MNIST's
images are. The command line (`mnistlab predict RUN_DIR IMAGE...`), the web app and the
Python API all call it.

MNIST's digits were size-normalised to fit a 20x20 box keeping their aspect ratio, anti-aliased,
and centred by centre of mass in a 28x28 image, white ink on black (LeCun, Cortes and Burges,
"The MNIST database"). A model trained on them misreads a digit that is dark on white,
off-centre, too small, or drawn with a thin pen, so `prepare` rebuilds that form:

1. grey levels in [0, 1], transparent pixels laid on the background the picture implies;
2. the polarity from the picture itself: the background is the median grey, and the ink is the
   tail that reaches further from it (dark ink on paper, or light ink on a dark canvas);
3. the paper's unevenness (shadows, gradients) removed with a morphological top-hat: the
   background is what a grey opening (or closing) with a window a quarter of the picture wide
   leaves, which follows a linear gradient exactly and drops any stroke narrower than that;
4. the ink: pixels well above the noise floor (median + 5 robust standard deviations), in
   connected pieces that hold at least a tenth of the largest piece's ink, so specks of dust
   and noise are left out; none at all is an error, not a guess;
5. strokes thinner than MNIST's (2.6 px wide in the 20x20 box, the median over 500 test digits)
   are thickened before shrinking, so a fine pen or a 1-pixel line does not fade away;
6. the crop fitted into 20x20, keeping its aspect ratio, placed in 28x28 so that its centre of
   mass is at the centre, scaled to [0, 1] with the strokes' core at 1.

The accuracy on photographs made this way is in the README (`benchmarks/photo_accuracy.py`).
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageMode, ImageOps, JpegImagePlugin, UnidentifiedImageError
from scipy import ndimage

from mnistlab.errors import MnistlabError
from mnistlab.text import plural

MAX_BYTES = 16 * 2**20  # an image file; a 12-megapixel phone JPEG is 3 to 6 MB
MAX_PIXELS = 50_000_000  # width x height, checked from the header before decoding (a small
# PNG can declare a huge image: a decompression bomb)
MAX_DECODED = 64 * 2**20  # bytes of decoded pixels, width x height x the bytes a pixel of its
# mode takes (1 for grey or palette, 2 for 16-bit grey, 4 for colour, alpha, 32-bit; a WebP 4
# times that), checked from the header, after a JPEG's reduced scale is chosen: a 111 KB PNG of
# 7000x7000 16-bit grey is 98 MB decoded. 64 MiB holds a 16-megapixel colour PNG, 33 megapixels
# of 16-bit grey, 50 of 8-bit grey or palette, a 4-megapixel WebP; a JPEG decodes at 1/8 scale
# where that leaves WORK_SIDE, so any JPEG within MAX_PIXELS fits.
WORK_SIDE = 512  # pictures are shrunk to this longest side first: ample for a 20x20 result
TILE = 1024  # ... converted a tile of about this side at a time: no full-size copy is made
BOX = 20  # MNIST's digits fit a 20x20 box ...
SIDE = 28  # ... centred by centre of mass in 28x28
CENTRE = 14.0  # where MNIST's centre of mass lies, as a row or column index
STROKE = 2.6 / BOX  # MNIST's median stroke width, as a fraction of the box
THICK = 1.5  # strokes wider than this many times MNIST's are thinned toward it
SMALL_SIDE = 96  # pictures smaller than this (pixels, longest side) are enlarged to it first
MIN_CONTRAST = 0.08  # the least ink contrast (of the full grey range) that counts as ink
FORMATS = "PNG, JPEG, GIF, BMP, TIFF or WebP"
# Pillow's names for them: no other reader is tried, so an EPS file (which Pillow renders by
# running Ghostscript), an ICO or a PDF is "not an image that can be read".
PILLOW_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")
DEEP_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # more than 8 bits a grey level
DECODED_AT = "mnistlab.decoded_at"  # image.info key: the file's pixels per decoded pixel


@dataclass(frozen=True)
class Prepared:
    """An image in MNIST's form: `pixels` float32 (28, 28) in [0, 1], white ink on black.
    `inverted` says whether the picture had dark ink on a light ground; `ink_box` is the
    ink's bounding box (top, left, bottom, right) in the picture's own pixels (the file's, for
    a JPEG that `decode` read at a reduced scale), upright."""

    pixels: np.ndarray
    inverted: bool
    ink_box: tuple[int, int, int, int]

    def as_uint8(self) -> np.ndarray:
        return np.round(self.pixels * 255).astype(np.uint8)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.pixels if dtype is None else self.pixels.astype(dtype)


def decode(data: bytes | IO[bytes]) -> Image.Image:
    """Decode an image file, its bytes or a binary file open for reading, refusing empty,
    oversized and non-image input, and pictures that would take too much memory decoded;
    turned upright as its EXIF orientation says (phone photos)."""
    if isinstance(data, bytes):
        size, data = len(data), io.BytesIO(data)
    else:
        size = data.seek(0, io.SEEK_END)
        data.seek(0)
    if not size:
        raise MnistlabError("the file is empty", f"it must be a {FORMATS} image")
    if size > MAX_BYTES:
        raise too_large(size)
    # Pillow's decoders answer a malformed file with many kinds of exception (OSError,
    # ValueError, SyntaxError, EOFError, struct.error ...: found by mutating PNG, JPEG, GIF,
    # BMP, TIFF and WebP files at random), so any of them means a damaged file.
    try:
        image = Image.open(data, formats=PILLOW_FORMATS)
    except UnidentifiedImageError:
        raise MnistlabError(
            "the file is not an image that can be read", f"it must be a {FORMATS} image"
        ) from None
    except Image.DecompressionBombError:
        raise too_many_pixels(None) from None
    except Exception as e:
        raise damaged(e) from None
    if image.width * image.height > MAX_PIXELS:
        raise too_many_pixels(image.size)
    if image.width < 1 or image.height < 1:
        raise MnistlabError("the image has no pixels", f"it must be a {FORMATS} image")
    try:
        width = image.width
        if isinstance(image, JpegImagePlugin.JpegImageFile):  # JPEG, and MPO (JPEG + JPEGs)
            # Decode at 1/2, 1/4 or 1/8 scale where that still leaves WORK_SIDE: a phone photo
            # then decodes in a fraction of the time and memory.
            image.draft(image.mode, (WORK_SIDE, WORK_SIDE))
        if decoded_bytes(image) > MAX_DECODED:
            raise too_much_memory(image)
        image.load()
        # In place: without an orientation, exif_transpose would return a full-size copy.
        ImageOps.exif_transpose(image, in_place=True)
        image.info[DECODED_AT] = width / image.width
        return image
    except MnistlabError:
        raise
    except Image.DecompressionBombError:
        raise too_many_pixels(None) from None
    except Exception as e:
        raise damaged(e) from None


def decoded_bytes(image: Image.Image) -> int:
    """The memory it takes to decode an image: Pillow keeps a pixel of one band in 1, 2 or 4
    bytes (grey and palette, 16-bit grey, 32-bit), and one of 2 to 4 bands in 4; a WebP passes
    through libwebp's two canvases and a copy on the way, 4 times the picture (measured with
    benchmarks/upload_memory.py's method: 256 MB to read a 4096x4096 WebP)."""
    try:
        mode = ImageMode.getmode(image.mode)
        depth = 4 if len(mode.bands) > 1 else np.dtype(mode.typestr).itemsize
    except (KeyError, TypeError):
        depth = 4
    copies = 4 if image.format == "WEBP" else 1
    return image.width * image.height * depth * copies


def too_much_memory(image: Image.Image) -> MnistlabError:
    return MnistlabError(
        f"the image has {image.width}x{image.height} pixels in mode {image.mode}, "
        f"{size_text(decoded_bytes(image))} to decode, over the limit of "
        f"{size_text(MAX_DECODED)}",
        "send a smaller image, or one with 8 bits a pixel "
        "(a digit needs only a few hundred pixels a side)",
    )


def damaged(e: Exception) -> MnistlabError:
    return MnistlabError(
        f"the image is damaged or truncated ({e})", f"it must be a complete {FORMATS} file"
    )


def size_text(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else plural(count, "byte")


def too_large(size: int | None, what: str = "the upload is too large") -> MnistlabError:
    if size is not None:
        what = f"the file is {size_text(size)}"
    return MnistlabError(
        f"{what}, over the limit of {size_text(MAX_BYTES)}",
        "send a smaller image (a digit needs only a few hundred pixels a side)",
    )


def too_many_pixels(size: tuple[int, int] | None) -> MnistlabError:
    what = f"{size[0]}x{size[1]} pixels" if size else "far too many pixels"
    return MnistlabError(
        f"the image has {what}, over the limit of {MAX_PIXELS:,}",
        "send a smaller image (a digit needs only a few hundred pixels a side)",
    )


def read_image(source: str | Path | bytes | IO[bytes]) -> Prepared:
    """A picture of one digit, from a file's path, its bytes or a binary file open for
    reading, in MNIST's form."""
    raw = read_file(Path(source)) if isinstance(source, str | Path) else source
    return prepare(decode(raw))


def prepare(image: Image.Image) -> Prepared:
    """The picture of one digit, in any size and mode, as MNIST shows its digits."""
    paper = ink_of(image)
    pieces, box = paper.pieces, paper.box
    return Prepared(digit(paper.ink, pieces, box), paper.inverted, paper.to_picture(box))


@dataclass(frozen=True)
class Paper:
    """A picture's ink, ready to cut into digits: `ink` (how far each pixel is from the paper,
    at the working size), `pieces` (the pixels that are ink, frames, ruled lines and specks
    removed), `box` their bounding box (top, left, bottom, right), `inverted` (dark ink on
    light paper), and `scale`, the picture's pixels per working pixel."""

    ink: np.ndarray
    pieces: np.ndarray
    box: tuple[int, int, int, int]
    inverted: bool
    scale: float

    def to_picture(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """A box at the working size, in the picture's own pixels."""
        top, left, bottom, right = (int(round(v * self.scale)) for v in box)
        return top, left, bottom, right


def ink_of(image: Image.Image) -> Paper:
    """The ink of a picture (one digit, or a number), cleaned of what is not writing."""
    try:
        grey, scale = grey_levels(image)
    except Exception as e:  # a mode or a frame Pillow cannot convert
        raise damaged(e) from None
    scale *= float(image.info.get(DECODED_AT, 1.0))
    # A low-resolution scan (a digit a few dozen pixels high) is enlarged first, so that the
    # top-hat's window, the cleaning and the stroke width have pixels to work with.
    if 1 < max(grey.shape) < SMALL_SIDE:
        factor = int(np.ceil(SMALL_SIDE / max(grey.shape)))
        grey = np.clip(ndimage.zoom(grey, factor, order=1, grid_mode=True, mode="nearest"), 0, 1)
        scale /= factor
    side = max(grey.shape)
    smooth = ndimage.gaussian_filter(grey, sigma=min(1.0, side / 256))
    background = float(np.median(smooth))
    inverted = background - smooth.min() > smooth.max() - background
    window = max(3, side // 4)
    if inverted:
        ink = ndimage.grey_closing(smooth, size=window) - smooth
    else:
        ink = smooth - ndimage.grey_opening(smooth, size=window)
    pieces, box = find_ink(ink)
    return Paper(ink, pieces, box, bool(inverted), scale)


def digit(ink: np.ndarray, pieces: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The ink of `pieces` inside `box`, its strokes brought to MNIST's width, fitted into
    20x20 and centred by centre of mass in 28x28."""
    top, left, bottom, right = box
    crop = np.where(pieces, ink, 0.0)[top:bottom, left:right]
    crop = pen_width(crop, pieces[top:bottom, left:right])
    return fit_and_centre(crop)


def grey_levels(image: Image.Image) -> tuple[np.ndarray, float]:
    """Grey levels in [0, 1], the longest side at most WORK_SIDE, and the factor back to the
    picture's own pixels. Transparent pixels are laid on a background: a drawing on a
    transparent canvas (mostly transparent) on the opposite of its strokes' grey; a picture with
    transparent margins (mostly opaque) on its own median grey, so the margins vanish."""
    deep = image.mode in DEEP_MODES
    has_alpha = not deep and (
        image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    )
    small = shrink(image, "RGBA" if has_alpha else "L")
    scale = max(image.size) / WORK_SIDE
    if scale > 1:
        size = (max(1, round(image.width / scale)), max(1, round(image.height / scale)))
        small = small.resize(size, Image.Resampling.BOX)  # area average keeps thin strokes' ink
    else:
        scale = 1.0
    if not has_alpha:
        return np.asarray(small, dtype=np.float64) / 255, scale
    la = np.asarray(small.convert("LA"), dtype=np.float64) / 255
    grey, alpha = la[..., 0], la[..., 1]
    opaque = alpha > 0.5
    if not opaque.any():
        return np.zeros_like(grey), scale  # fully transparent: nothing drawn
    if opaque.mean() < 0.5:
        ground = 0.0 if np.median(grey[opaque]) > 0.5 else 1.0
    else:
        ground = float(np.median(grey[opaque]))
    return grey * alpha + ground * (1 - alpha), scale


def shrink(image: Image.Image, mode: str) -> Image.Image:
    """The picture in `mode` ("L" or "RGBA"), reduced by the largest whole factor that leaves
    twice WORK_SIDE (a box average, as Pillow's `reducing_gap` does), made a tile at a time: a
    full-size copy of a 7000x7000 palette PNG in RGBA would take 196 MB, of a 16-bit one as
    floats 392 MB, beside the picture."""
    factor = max(1, max(image.size) // (2 * WORK_SIDE))
    step = factor * -(-TILE // factor)  # a whole number of boxes, at least TILE
    width, height = image.size
    top_value = 255.0
    if image.mode in DEEP_MODES:  # 16-bit grey, or 32-bit integers or floats: one band
        _, high = image.getextrema()
        assert isinstance(high, int | float)
        top_value = 65535.0 if image.mode.startswith("I;16") or high > 255 else 255.0
    out = Image.new(mode, (-(-width // factor), -(-height // factor)))
    for top in range(0, height, step):
        for left in range(0, width, step):
            tile = image.crop((left, top, min(width, left + step), min(height, top + step)))
            if tile.mode in DEEP_MODES:
                values = np.asarray(tile, dtype=np.float64) / top_value * 255
                tile = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))
            tile = tile if tile.mode == mode else tile.convert(mode)
            out.paste(tile.reduce(factor) if factor > 1 else tile, (left // factor, top // factor))
    return out


def find_ink(ink: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The pixels that are ink (in pieces that matter) and their bounding box, or an error."""
    median = float(np.median(ink))
    spread = 1.4826 * float(np.median(np.abs(ink - median)))  # a standard deviation, robustly
    floor = median + 5 * spread
    peak = float(ink.max())
    if peak - floor < MIN_CONTRAST:
        raise no_ink()
    mask = clean(ink > floor + 0.25 * (peak - floor))
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if not count:
        raise no_ink()
    mass = np.asarray(ndimage.sum_labels(ink, labels, index=np.arange(1, count + 1)))
    keep = np.flatnonzero(mass >= 0.1 * mass.max()) + 1
    core = np.isin(labels, keep)
    side = max(ink.shape)
    if core.sum() < max(4, (side / 128) ** 2):
        raise no_ink()
    # Widen to the strokes' faint anti-aliased edges, which lie under the threshold; the box
    # holds what is clearly ink, as MNIST's box held the strokes and not their blur.
    pieces = ndimage.binary_dilation(core, iterations=2) & (ink > floor)
    visible = pieces & (ink > floor + 0.15 * (peak - floor))
    rows, cols = np.flatnonzero(visible.any(axis=1)), np.flatnonzero(visible.any(axis=0))
    return pieces, (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)


def clean(mask: np.ndarray) -> np.ndarray:
    """The ink mask without what is not writing, when writing is left beside it: ruled lines,
    underlines and the sides of frames (`remove_lines`), then frames and borders: ink that
    touches the picture's edge and spans half of it (the frame of a figure, the edge of a
    sheet), or a hollow piece whose box holds all the other ink (a box drawn round a digit)."""
    mask = remove_lines(mask)
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count < 2:
        return mask
    height, width = mask.shape
    boxes = ndimage.find_objects(labels)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    drop = np.zeros(count + 1, bool)
    for i, box in enumerate(boxes, start=1):
        rows, cols = box
        tall, wide = rows.stop - rows.start, cols.stop - cols.start
        edge = rows.start == 0 or cols.start == 0 or rows.stop == height or cols.stop == width
        spans = tall >= height / 2 or wide >= width / 2
        hollow = sizes[i - 1] < 0.3 * tall * wide and encloses(box, boxes, i)
        drop[i] = (edge and spans) or hollow or underlines(box, boxes, i)
    if sizes[~drop[1:]].sum() < 0.02 * sizes.sum():
        return mask  # nothing would be left: the ink is the writing (a 1 from edge to edge)
    return mask & ~drop[labels]


def underlines(box: tuple[slice, ...], boxes: list[Any], index: int) -> bool:
    """Whether `box` is a flat stroke (at least UNDERLINE times wider than high) under all
    the other ink and half as wide as it is high at least: an underline, not a digit's
    stroke (a 7's bar lies on top; a broken 2's base is not that flat)."""
    tall, wide = box[0].stop - box[0].start, box[1].stop - box[1].start
    others = [b for j, b in enumerate(boxes, start=1) if j != index and b is not None]
    if not others or wide < UNDERLINE * tall:
        return False
    top = min(b[0].start for b in others)
    bottom = max(b[0].stop for b in others)
    return box[0].start >= bottom - 0.1 * (bottom - top) and wide >= 0.5 * (bottom - top)


def encloses(box: tuple[slice, ...], boxes: list[Any], index: int) -> bool:
    """Whether `box` holds every other piece's box, and there is at least one."""
    others = [b for j, b in enumerate(boxes, start=1) if j != index and b is not None]
    return bool(others) and all(
        box[0].start <= b[0].start
        and b[0].stop <= box[0].stop
        and box[1].start <= b[1].start
        and b[1].stop <= box[1].stop
        for b in others
    )


UNDERLINE = 6  # a piece this many times wider than high, under the writing, underlines it
PAST = 0.15  # ... or one reaching this share of its height past the writing on both sides
LINE = 1.6  # a straight run this many times the writing's height is a ruled line or underline


def remove_lines(mask: np.ndarray) -> np.ndarray:
    """The mask without horizontal and vertical runs LINE times longer than the writing is
    high, or reaching past it on both sides by PAST of its height: first those half the
    picture long (ruled lines, a frame's sides), then, the writing's height measured without
    them, shorter ones (an underline). A run as long as a digit is high, or one that ends
    where the digit does, is a digit's stroke (a 7's bar, a 1, a 2's base), and stays."""
    height, width = mask.shape
    for horizontal, vertical in ((width // 2, height // 2), (None, None)):
        if horizontal is None or vertical is None:  # runs a digit high at least
            horizontal = vertical = int(writing_height(mask))
        lines = np.zeros_like(mask)
        if 2 <= horizontal < width:
            lines |= straight_runs(mask, horizontal, axis=1)
        if 2 <= vertical < height:
            lines |= straight_runs(mask, vertical, axis=0)
        if not lines.any():
            continue
        rest = substantial(mask & ~ndimage.binary_dilation(lines, iterations=2))
        if not rest.any():
            continue
        tall = writing_height(rest)
        top, left, bottom, right = extent(rest)
        margin = PAST * tall
        labels, count = ndimage.label(lines, structure=np.ones((3, 3)))
        long = [False]
        for b in ndimage.find_objects(labels):
            rows, cols = b
            past = (cols.start <= left - margin and cols.stop >= right + margin) or (
                rows.start <= top - margin and rows.stop >= bottom + margin
            )
            length = max(rows.stop - rows.start, cols.stop - cols.start)
            long.append(length >= LINE * tall or past)
        lines = np.asarray(long, bool)[labels]
        # The lines' anti-aliased edges go with them
        kept = mask & ~ndimage.binary_dilation(lines, iterations=1)
        if kept.sum() >= 0.02 * mask.sum():
            mask = kept
    return mask


def straight_runs(mask: np.ndarray, length: int, axis: int) -> np.ndarray:
    """The pixels of runs at least `length` long along `axis`: a morphological opening with a
    line, made of SciPy's 1-D minimum and maximum filters, whose cost does not grow with the
    line's length (`binary_opening` with a 256-pixel line made preparing a photo 4 times
    slower)."""
    length |= 1  # odd: the filters are centred, so the opening puts the runs back in place
    ink = mask.astype(np.uint8)
    eroded = ndimage.minimum_filter1d(ink, length, axis=axis, mode="constant", cval=0)
    return ndimage.maximum_filter1d(eroded, length, axis=axis, mode="constant", cval=0) > 0


def substantial(mask: np.ndarray) -> np.ndarray:
    """The mask's pieces that hold at least a twentieth of the largest one's pixels: no
    slivers of a line's edge, no specks."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if not count:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    return sizes[labels] >= 0.05 * sizes.max()


def extent(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The bounding box (top, left, bottom, right) of a mask that is not empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def writing_height(mask: np.ndarray) -> float:
    """The height of the writing: the median height of its digits (`stacks` of pieces: a
    digit cut by a ruled line is one), each counted by its ink; 0 for an empty mask."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if not count:
        return 0.0
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    boxes = ndimage.find_objects(labels)
    heights, weights = [], []
    for members in stacks(boxes):
        heights.append(
            max(boxes[i][0].stop for i in members) - min(boxes[i][0].start for i in members)
        )
        weights.append(sum(int(sizes[i]) for i in members))
    order = np.argsort(heights)
    middle = int(np.searchsorted(np.cumsum(np.asarray(weights)[order]), sum(weights) / 2))
    return float(np.asarray(heights)[order][min(middle, len(heights) - 1)])


OVERLAP = 0.5  # pieces overlapping by this share of the narrower one's width are one digit


def stacks(boxes: list[Any]) -> list[list[int]]:
    """Pieces (their boxes, as `ndimage.find_objects` gives them) grouped into digits, left
    to right: those that overlap horizontally by OVERLAP of the narrower one are one (a 5's
    top over its body, a digit cut by a ruled line). Indices into `boxes`."""
    spans = sorted(([b[1].start, b[1].stop], [i]) for i, b in enumerate(boxes) if b is not None)
    merged: list[tuple[list[int], list[int]]] = []
    for span, members in spans:
        for other, others in merged:
            overlap = min(span[1], other[1]) - max(span[0], other[0])
            narrower = min(span[1] - span[0], other[1] - other[0])
            if overlap >= OVERLAP * narrower:
                other[0], other[1] = min(other[0], span[0]), max(other[1], span[1])
                others.extend(members)
                break
        else:
            merged.append((span, members))
    merged.sort(key=lambda m: m[0][0])
    return [members for _, members in merged]


def no_ink() -> MnistlabError:
    return MnistlabError(
        "no ink found: the image is blank or its strokes are too faint to tell from the paper",
        "send a picture of one digit, drawn darker or lighter than its background",
    )


def stroke_width(solid: np.ndarray) -> float:
    """The width of a mask's strokes in pixels: a stroke of width w and length L covers w*L
    pixels and has L of boundary on each side."""
    boundary = solid & ~ndimage.binary_erosion(solid)
    return 2 * float(solid.sum()) / max(int(boundary.sum()), 1)


def pen_width(crop: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    """Scale the ink so its strokes' core is 1, and bring strokes toward MNIST's width: a fine
    pen's thickened (a grey dilation), a marker's thinned (the solid strokes kept where they
    lie deeper than the excess from their edge, soft-edged). A blurred stroke's skirt is cut
    at half its core level, as the solid strokes are measured."""
    core_level = float(np.percentile(crop[pieces], 65))
    crop = np.clip(crop / max(core_level, 1e-6), 0, 1)
    solid = crop > 0.5
    width = stroke_width(solid)
    wanted = STROKE * max(crop.shape)
    grow = int(round(wanted - width))
    if grow >= 1:
        return ndimage.grey_dilation(crop, size=(grow + 1, grow + 1))
    if width > THICK * wanted:
        # A marker's strokes: thinned from both sides by half the excess, measured from the
        # middle lines, so each stroke keeps its length and a thin join is not cut.
        distance = ndimage.distance_transform_edt(solid)
        cut = (width - wanted) / 2
        thinned = np.clip(distance - cut, 0, 1)
        if thinned.sum() >= 0.2 * solid.sum():
            return thinned
    return crop


def fit_and_centre(crop: np.ndarray) -> np.ndarray:
    """Fit into BOX x BOX keeping the aspect ratio, then centre by centre of mass in SIDE x SIDE."""
    height, width = crop.shape
    factor = BOX / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    # Pillow's bilinear filter widens its support when shrinking, so it averages areas then.
    small = Image.fromarray(crop.astype(np.float32)).resize(size, Image.Resampling.BILINEAR)
    box = np.clip(np.asarray(small, dtype=np.float64), 0, 1)
    if box.max() <= 0:
        raise no_ink()
    box /= box.max()
    rows, cols = ndimage.center_of_mass(box)
    # MNIST's centre of mass, in row and column indices, is at (14.0, 14.0) (mean over 2,000
    # test images, standard deviation 0.3): half a pixel below and right of the geometric centre.
    top_ = int(np.clip(round(CENTRE - rows), 0, SIDE - box.shape[0]))
    left = int(np.clip(round(CENTRE - cols), 0, SIDE - box.shape[1]))
    out = np.zeros((SIDE, SIDE), np.float32)
    out[top_ : top_ + box.shape[0], left : left + box.shape[1]] = box
    return out


def read_file(path: Path) -> bytes:
    """The bytes of an image file. Only a regular file is read: a folder, a device (/dev/zero
    would be read until memory runs out) or a pipe (which waits for a writer) is refused by
    name. A file over MAX_BYTES is refused before it is read, and no more than MAX_BYTES + 1
    bytes are ever read, so a file that grows meanwhile, or whose size the system does not
    know (/proc), is refused too."""
    try:
        regular_file(path.stat())
        # Opened without blocking, and checked again: a path swapped for a pipe after the check
        # above would otherwise wait for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as f:
            regular_file(os.fstat(f.fileno()))
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise MnistlabError("no such file", "check the path") from None
    except PermissionError as e:
        raise MnistlabError(f"cannot read it ({e.strerror})", "check its permissions") from None
    except OSError as e:
        raise MnistlabError(f"cannot read it ({e.strerror})", "check the path") from None
    if len(data) > MAX_BYTES:
        raise too_large(None, "the file is too large")
    return data


def regular_file(info: os.stat_result) -> None:
    """Refuse, naming what it is, anything but a regular file of at most MAX_BYTES."""
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        raise MnistlabError("it is a folder, not an image file", "name the image files in it")
    if not stat.S_ISREG(mode):
        kinds = [(stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISFIFO, "a pipe")]
        kind = next((name for test, name in kinds if test(mode)), "a special file")
        raise MnistlabError(f"it is {kind}, not an image file", "name an image file")
    if info.st_size > MAX_BYTES:
        raise too_large(info.st_size)


def png(pixels: np.ndarray) -> bytes:
    """A 28x28 image in [0, 1] as a grey PNG file of 28x28 pixels."""
    out = io.BytesIO()
    Image.fromarray(np.round(np.asarray(pixels) * 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()
