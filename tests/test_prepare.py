"""The one path from a picture to the model's input: where the ink lands, and how big it is.

Every picture here is made by the test: a seven drawn with lines, inverted, moved, shrunk,
enlarged, on a transparent canvas, on noisy uneven paper, and blank pages.
"""

import os
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from photos import encode, one, seven, strokes
from PIL import Image, ImageFile
from scipy import ndimage

from mnistlab import images as pr
from mnistlab.errors import MnistlabError


def ink_box(pixels: np.ndarray) -> tuple[int, int]:
    """Height and width of the ink (pixels above 0.2) in a 28x28 result."""
    rows, cols = np.flatnonzero((pixels > 0.2).any(1)), np.flatnonzero((pixels > 0.2).any(0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def assert_mnist_form(pixels: np.ndarray, tall: bool = True) -> None:
    """28x28 in [0, 1], the ink's longest side 19-20 pixels, centre of mass at (14, 14) as in
    MNIST (the box itself may then reach an edge, as MNIST's sevens do)."""
    assert pixels.shape == (28, 28)
    assert pixels.dtype == np.float32
    assert pixels.min() == 0 and pixels.max() == pytest.approx(1)
    height, width = ink_box(pixels)
    assert 19 <= (height if tall else max(height, width)) <= 20
    assert np.allclose(ndimage.center_of_mass(pixels), (14, 14), atol=0.5)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """A seven, 200 pixels tall with 14-pixel strokes, black on a white 300x300 page."""
    return pr.prepare(strokes((300, 300), seven(50, 50, 200), 14)).pixels


def similar(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_dark_ink_on_white_becomes_white_on_black_fitted_and_centred(reference):
    assert_mnist_form(reference)
    prepared = pr.prepare(strokes((300, 300), seven(50, 50, 200), 14))
    assert prepared.inverted
    # The ink's box in the picture's own pixels: the lines' flat ends at x = 50 and y = 250,
    # the bar's top edge half a stroke above y = 50, the rounded corner's edge at x = 177.
    top, left, bottom, right = prepared.ink_box
    assert abs(top - 43) <= 3 and abs(left - 50) <= 3
    assert abs(bottom - 252) <= 3 and abs(right - 177) <= 3
    # A seven is taller than wide: 20 tall, its width in proportion (134 / 214 * 20 = 12.5).
    assert 11 <= ink_box(reference)[1] <= 14


def test_light_ink_on_black_is_read_the_same(reference):
    prepared = pr.prepare(strokes((300, 300), seven(50, 50, 200), 14, ink=255, paper=0))
    assert not prepared.inverted
    assert similar(prepared.pixels, reference) > 0.97


@pytest.mark.parametrize(("x", "y", "size"), [(10, 10, (300, 300)), (600, 380, (900, 600))])
def test_off_centre_ink_lands_in_the_middle(reference, x, y, size):
    pixels = pr.prepare(strokes(size, seven(x, y, 200), 14)).pixels
    assert_mnist_form(pixels)
    assert similar(pixels, reference) > 0.97


def test_a_tiny_digit_is_enlarged_to_the_box():
    pixels = pr.prepare(strokes((64, 64), seven(40, 30, 10), 2)).pixels
    assert_mnist_form(pixels)
    width = ink_box(pixels)[1]
    assert 10 <= width <= 16


def test_a_huge_photo_with_a_thin_pen_keeps_its_strokes():
    # 4000x3000 pixels, a 2000-pixel seven drawn with a 6-pixel pen: 0.06 pixels wide once
    # shrunk to 20 without thickening.
    picture = strokes((4000, 3000), seven(1200, 400, 2000), 6, mode="RGB")
    prepared = pr.prepare(picture)
    assert_mnist_form(prepared.pixels)
    top, left, bottom, right = prepared.ink_box
    assert abs(top - 397) <= 16 and abs(left - 1200) <= 16 and abs(right - 2403) <= 16
    assert abs(bottom - 2400) <= 16
    # MNIST's strokes are 2.6 pixels wide: a seven's two strokes, ~35 pixels long, hold ~90
    # pixels' worth of ink; a 0.06-pixel line would hold 2.
    assert prepared.pixels.sum() > 40


def test_a_one_keeps_its_aspect_ratio():
    pixels = pr.prepare(strokes((200, 200), one(100, 20, 160), 12)).pixels
    assert_mnist_form(pixels)
    assert ink_box(pixels)[1] <= 5  # a narrow upright stroke, not stretched into a square


def test_a_transparent_canvas_is_read_like_paper(reference):
    # As a browser's canvas gives it: black strokes, everything else transparent (0, 0, 0, 0).
    page = strokes((300, 300), seven(50, 50, 200), 14)
    alpha = 255 - np.asarray(page)
    rgba = np.zeros((300, 300, 4), np.uint8)
    rgba[..., 3] = alpha
    prepared = pr.prepare(Image.fromarray(rgba, mode="RGBA"))
    assert prepared.inverted
    assert similar(prepared.pixels, reference) > 0.97
    # White strokes on a transparent canvas.
    rgba[..., :3] = 255
    assert similar(pr.prepare(Image.fromarray(rgba, mode="RGBA")).pixels, reference) > 0.97


def test_palette_and_16_bit_images(reference):
    page = strokes((300, 300), seven(50, 50, 200), 14)
    palette = pr.decode(encode(page.convert("P")))
    assert palette.mode == "P"
    assert similar(pr.prepare(palette).pixels, reference) > 0.97
    deep = Image.fromarray(np.asarray(page).astype(np.uint16) * 257)  # 0..65535
    deep = pr.decode(encode(deep))
    assert deep.mode.startswith("I")
    assert similar(pr.prepare(deep).pixels, reference) > 0.97


def test_noisy_uneven_paper_with_a_shadow(reference):
    rng = np.random.default_rng(0)
    ink = 1 - np.asarray(strokes((400, 400), seven(120, 90, 200), 14), np.float64) / 255
    yy, xx = np.mgrid[0:400, 0:400] / 400
    paper = 0.85 - 0.4 * xx * yy + 0.05 * np.sin(7 * xx)  # darker towards a corner
    grey = paper * (1 - ink) + 0.15 * ink + rng.normal(0, 0.04, ink.shape)
    specks = rng.random(ink.shape) < 0.001  # dust: lone black pixels
    grey[specks] = 0
    picture = Image.fromarray(np.clip(grey * 255, 0, 255).astype(np.uint8))
    for data in (encode(picture), encode(picture.convert("RGB"), "JPEG", quality=80)):
        prepared = pr.read_image(data)
        assert prepared.inverted
        assert_mnist_form(prepared.pixels)
        assert similar(prepared.pixels, reference) > 0.9


@pytest.mark.parametrize(
    "picture",
    [
        Image.new("L", (300, 200), 255),
        Image.new("RGB", (300, 200), (20, 20, 20)),
        Image.new("RGBA", (300, 200), (0, 0, 0, 0)),
        Image.fromarray(
            np.clip(np.random.default_rng(1).normal(200, 8, (300, 300)), 0, 255).astype(np.uint8)
        ),
    ],
    ids=["white", "black", "transparent", "noisy-grey"],
)
def test_an_empty_page_is_an_error_not_a_guess(picture):
    with pytest.raises(MnistlabError, match="no ink found"):
        pr.prepare(picture)


def test_a_faint_smudge_is_not_ink():
    page = np.full((200, 200), 200, np.uint8)
    page[80:120, 80:120] = 195  # 2% darker: a shadow, not a stroke
    with pytest.raises(MnistlabError, match="no ink found"):
        pr.prepare(Image.fromarray(page))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"just some text, not a picture", "the file is not an image that can be read"),
        (encode(Image.new("L", (50, 50)))[:60], "the image is damaged or truncated"),
    ],
)
def test_files_that_are_not_images(data, message):
    with pytest.raises(MnistlabError, match=message):
        pr.decode(data)


@pytest.mark.parametrize("fmt", ["EPS", "ICO", "PPM", "TGA", "JPEG2000", "PDF"])
def test_only_the_documented_formats_are_opened(fmt):
    # Pillow reads all but the PDF; an EPS would run Ghostscript. A seven that any of them
    # would show is refused as not an image, as a text file is.
    data = encode(strokes((120, 120), seven(20, 20, 80), 8, mode="RGB"), fmt)
    with pytest.raises(MnistlabError) as refused:
        pr.read_image(data)
    assert refused.value.problem == "the file is not an image that can be read"
    assert refused.value.fix == "it must be a PNG, JPEG, GIF, BMP, TIFF or WebP image"


def test_a_multi_picture_jpeg_is_decoded_small_too():
    # MPO (a JPEG followed by more JPEGs, as some cameras write) is read as the JPEG it starts
    # with, at a reduced scale like any JPEG.
    picture = strokes((3000, 2400), seven(1000, 600, 1500), 40, mode="RGB")
    data = encode(picture, "MPO", save_all=True, append_images=[picture])
    image = pr.decode(data)
    assert max(image.size) < 1500


def test_size_limits(monkeypatch):
    # A 60-megapixel PNG of one colour is a few kilobytes: its header is read, its pixels not.
    bomb = encode(Image.new("1", (10_000, 6_000)))
    assert len(bomb) < 100_000
    with pytest.raises(MnistlabError, match="10000x6000 pixels, over the limit of 50,000,000"):
        pr.decode(bomb)
    monkeypatch.setattr(pr, "MAX_BYTES", 1000)
    with pytest.raises(MnistlabError, match="over the limit of"):
        pr.decode(b"x" * 1001)


def test_the_memory_to_decode_is_limited_from_the_header(monkeypatch):
    # 1,000x1,000 pixels of 16-bit grey take 2 MB decoded, of palette 1 MB; a WebP passes
    # through libwebp's canvases, 4 times the picture. Nothing is decoded to find out.
    monkeypatch.setattr(pr, "MAX_DECODED", 2**20)
    deep = encode(Image.fromarray(np.zeros((1000, 1000), np.uint16)))
    rgba = Image.new("RGBA", (500, 500))
    decoded: list[str] = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: decoded.append(image.format))
    for data, problem in [
        (deep, "the image has 1000x1000 pixels in mode I;16, 1.9 MiB to decode"),
        (encode(rgba, "WEBP", lossless=True), "500x500 pixels in mode RGBA, 3.8 MiB to decode"),
    ]:
        with pytest.raises(MnistlabError) as refused:
            pr.decode(data)
        assert refused.value.problem.endswith(f"{problem}, over the limit of 1.0 MiB"), problem
    assert decoded == []
    monkeypatch.undo()
    monkeypatch.setattr(pr, "MAX_DECODED", 2**20)
    assert pr.decode(encode(Image.new("P", (1000, 1000)))).size == (1000, 1000)
    assert pr.decode(encode(rgba)).size == (500, 500)  # 1,000,000 bytes as a PNG


def test_a_jpeg_counts_at_the_scale_it_is_decoded(monkeypatch):
    # 3000x2400 in RGB is 28.8 MB at full scale; a JPEG decodes at 1/4 (750x600, 1.8 MB).
    monkeypatch.setattr(pr, "MAX_DECODED", 4 * 2**20)
    picture = strokes((3000, 2400), seven(1000, 600, 1500), 40, mode="RGB")
    assert pr.decode(encode(picture, "JPEG")).size == (750, 600)
    with pytest.raises(MnistlabError, match="3000x2400 pixels in mode RGB, 27.5 MiB to decode"):
        pr.decode(encode(picture, "PNG"))


def test_a_16_bit_picture_is_prepared_without_full_size_copies(reference):
    # Its grey levels were made floats at full size: 8 bytes a pixel, three times over.
    page = strokes((300, 300), seven(50, 50, 200), 14).resize((3000, 3000))
    deep = Image.fromarray(np.asarray(page).astype(np.uint16) * 257)
    tracemalloc.start()
    try:
        prepared = pr.prepare(deep)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20  # the picture is 18 MB; as floats, 72 MB
    assert similar(prepared.pixels, reference) > 0.97


def test_an_open_file_is_read_as_its_bytes_are(tmp_path, reference, monkeypatch):
    picture = tmp_path / "seven.png"
    picture.write_bytes(encode(strokes((300, 300), seven(50, 50, 200), 14)))
    with picture.open("rb") as f:
        assert np.array_equal(pr.read_image(f).pixels, reference)
    monkeypatch.setattr(pr, "MAX_BYTES", 1000)
    with picture.open("rb") as f, pytest.raises(MnistlabError, match="over the limit of 1,000"):
        pr.read_image(f)


def test_read_file_refuses_before_reading(tmp_path, monkeypatch):
    with pytest.raises(MnistlabError, match="no such file"):
        pr.read_file(tmp_path / "missing.png")
    with pytest.raises(MnistlabError, match="it is a folder"):
        pr.read_file(tmp_path)
    big = tmp_path / "big.png"
    big.write_bytes(b"x" * 2048)
    monkeypatch.setattr(pr, "MAX_BYTES", 1024)
    with pytest.raises(
        MnistlabError, match="the file is 2,048 bytes, over the limit of 1,024 bytes"
    ):
        pr.read_file(big)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_read_file_reads_regular_files_only(tmp_path):
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    outcome: list[object] = []

    def read() -> None:
        try:
            outcome.append(pr.read_file(pipe))
        except MnistlabError as e:
            outcome.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # it waits for a writer: let it go, then fail
        os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=10)
    assert isinstance(outcome[0], MnistlabError), outcome
    assert outcome[0].problem == "it is a pipe, not an image file"
    if Path("/dev/zero").exists():  # a device of endless zeros: read until memory runs out
        with pytest.raises(MnistlabError) as refused:
            pr.read_file(Path("/dev/zero"))
        assert refused.value.problem == "it is a device, not an image file"


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc")
def test_read_file_reads_no_more_than_the_limit(monkeypatch):
    # /proc's files say they hold 0 bytes, as a file that grows after its size was read would
    # say too little: the reading itself stops past the limit.
    maps = Path("/proc/self/maps")
    assert maps.stat().st_size == 0 and len(maps.read_bytes()) > 1000
    monkeypatch.setattr(pr, "MAX_BYTES", 1000)
    with pytest.raises(MnistlabError, match="^the file is too large, over the limit of 1,000 b"):
        pr.read_file(maps)


def test_the_png_is_what_the_model_saw(reference):
    saved = np.asarray(Image.open(__import__("io").BytesIO(pr.png(reference))))
    assert saved.shape == (28, 28)
    assert np.array_equal(saved, np.round(reference * 255).astype(np.uint8))


def test_a_large_jpeg_is_decoded_small_and_its_ink_box_is_in_the_files_pixels():
    picture = strokes((3000, 2400), seven(1000, 600, 1500), 40, mode="RGB")
    image = pr.decode(encode(picture, "JPEG", quality=90))
    assert max(image.size) < 1500  # decoded at 1/2, 1/4 or 1/8 of 3000
    top, left, bottom, right = pr.prepare(image).ink_box
    assert abs(top - 580) <= 30 and abs(left - 1000) <= 30 and abs(bottom - 2100) <= 30


def test_damaged_files_are_errors_not_crashes():
    # Random bytes changed, and files cut short, in each format: a damaged upload must be a
    # clear error, never an exception of Pillow's own (which the web app would answer with 500).
    rng = np.random.default_rng(0)
    base = strokes((120, 120), seven(20, 20, 80), 8, mode="RGB")
    files = [encode(base, fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")]
    outcomes = {"read": 0, "refused": 0}
    for trial in range(300):
        data = bytearray(files[trial % len(files)])
        for _ in range(int(rng.integers(1, 6))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        if trial % 5 == 0:
            data = data[: int(rng.integers(1, len(data)))]
        try:
            pr.read_image(bytes(data))
            outcomes["read"] += 1
        except MnistlabError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 50 and outcomes["read"] > 50
