"""Reading real pens and paper, and numbers: the cleaning `images.prepare` does (frames, ruled
lines, underlines, a marker's strokes, low-resolution scans, mnistlab's own `data show`
figure), the cutting of a number into digits (`reading`), `mnistlab read`, `POST /api/read`
and the default reading model, trained once on first use.

The tests marked `realdata` train on MNIST: a figure of a 5 read as 5, a composed number read
exactly, and the default reading model made from a tiny spec ($MNISTLAB_READER_SPEC).
"""

import json
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from photos import encode, one, seven, strokes
from PIL import Image, ImageDraw
from scipy import ndimage

from mnistlab import cli, reading
from mnistlab import images as im
from mnistlab.data import Dataset
from mnistlab.web import create_app

SEVEN = seven(50, 50, 200)


def similar(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """A seven, 200 pixels tall with 14-pixel strokes, black on a white 300x300 page."""
    return im.prepare(strokes((300, 300), SEVEN, 14)).pixels


def with_lines(image: Image.Image, lines: list[tuple[int, int, int, int]], width: int) -> Image:
    image = image.copy()
    draw = ImageDraw.Draw(image)
    for line in lines:
        draw.line(line, fill=0, width=width)
    return image


def test_ruled_lines_across_the_page_and_through_the_digit_are_removed(reference):
    page = strokes((300, 300), SEVEN, 14)
    ruled = with_lines(page, [(0, y, 300, y) for y in (30, 110, 190, 270)], 3)
    prepared = im.prepare(ruled)
    assert similar(prepared.pixels, reference) > 0.9
    # Not removed, the lines would make the ink as wide as the page
    assert prepared.ink_box[3] - prepared.ink_box[1] < 150


def test_a_frame_round_the_digit_and_an_underline_are_removed(reference):
    page = strokes((300, 300), SEVEN, 14)
    framed = with_lines(page, [(20, 20, 280, 20), (280, 20, 280, 280), (280, 280, 20, 280)], 5)
    framed = with_lines(framed, [(20, 280, 20, 20)], 5)
    assert similar(im.prepare(framed).pixels, reference) > 0.9
    big = strokes((400, 400), SEVEN, 14)
    underlined = with_lines(big, [(40, 275, 200, 278)], 8)
    assert similar(im.prepare(underlined).pixels, reference) > 0.9


def test_a_seven_filling_the_picture_keeps_its_bar():
    # A run as long as the digit is high is a stroke, not a ruled line: the bar stays
    tight = strokes((130, 210), seven(4, 4, 200), 10)
    prepared = im.prepare(tight).pixels
    assert prepared[5:9].sum() > 5  # the bar, at the top of the 20x20 box


def test_the_figure_of_data_show_is_read_as_its_digit(tmp_path):
    """`mnistlab data show` draws the digit white on black inside a white figure with a title:
    the figure's margin is ink that touches the picture's edge, and is dropped."""
    from mnistlab.reports.figures import show_images

    digit = np.asarray(strokes((28, 28), seven(8, 4, 20), 2, ink=255, paper=0))
    data = Dataset(
        (digit[None], np.array([7])),
        (digit[None], np.array([7])),
        tuple("0123456789"),
        "test",
        "mnist",
    )
    path = show_images(data, tmp_path / "seven.png", 0, None, "train")
    prepared = im.read_image(path)
    plain = im.prepare(Image.fromarray(digit).resize((280, 280))).pixels
    assert similar(prepared.pixels, plain) > 0.85
    top, left, bottom, right = prepared.ink_box
    with Image.open(path) as figure:
        width, height = figure.size
    # Within the black square, not the whole figure
    assert top > 0.1 * height and left > 0.1 * width and right < 0.95 * width


def test_a_marker_is_thinned_and_a_fine_pen_thickened_toward_mnist():
    # Shrunk as they are, a 3-pixel pen's strokes would be 0.2 pixels wide in the 20x20 box,
    # a 70-pixel marker's 4.5; MNIST's median is 2.6 (500 test digits, measured so)
    for width in (3, 14, 40, 70):
        pixels = im.prepare(strokes((400, 400), seven(80, 80, 240), width)).pixels
        measured = im.stroke_width(pixels > 0.5)
        assert 2.0 <= measured <= 3.5, (width, measured)


def test_a_low_resolution_scan_reads_like_a_sharp_one(reference):
    page = strokes((300, 300), SEVEN, 14)
    small = page.resize((24, 24), Image.Resampling.BOX)
    blocky = small.resize((72, 72), Image.Resampling.NEAREST)
    for picture in (small, blocky):
        prepared = im.prepare(picture).pixels
        assert similar(prepared, reference) > 0.85
        assert np.allclose(ndimage.center_of_mass(prepared), (14, 14), atol=0.6)


def number(xs: list[float], height: float = 100, width: int = 14) -> Image.Image:
    lines = []
    for x in xs:
        lines += seven(x, 30, height)
    return strokes((int(max(xs) + 120), 160), lines, width)


def test_the_digits_of_a_number_are_found_left_to_right():
    paper = im.ink_of(number([20, 110, 200]))
    groups = reading.groups(paper.pieces)
    assert len(groups) == 3
    lefts = [reading.bounds(g)[1] for g in groups]
    assert lefts == sorted(lefts) and abs(lefts[0] - 20) <= 8 and abs(lefts[2] - 200) <= 8


def test_specks_are_ignored_and_a_broken_digit_is_one():
    picture = strokes((330, 160), seven(20, 30, 100) + seven(110, 30, 100), 14)
    draw = ImageDraw.Draw(picture)
    draw.ellipse((190, 140, 193, 143), fill=0)  # a speck of dust
    # A five whose top bar is not joined to its body: two pieces, one digit
    draw.line((230, 35, 280, 35), fill=0, width=12)
    draw.line((232, 40, 232, 80), fill=0, width=12)
    draw.arc((220, 70, 285, 135), -120, 150, fill=0, width=12)
    paper = im.ink_of(picture)
    groups = reading.groups(paper.pieces)
    assert len(groups) == 3
    assert reading.bounds(groups[2])[1] >= 215


def test_a_short_piece_joins_the_digit_nearest_it():
    # A 5 whose top bar overhangs its body to the right, a quarter over it: not a digit alone
    picture = strokes((360, 160), seven(20, 30, 100), 14)
    draw = ImageDraw.Draw(picture)
    draw.line((270, 35, 330, 35), fill=0, width=12)
    draw.line((222, 50, 222, 80), fill=0, width=12)
    draw.arc((212, 70, 285, 135), -120, 150, fill=0, width=12)
    paper = im.ink_of(picture)
    groups = reading.groups(paper.pieces)
    assert len(groups) == 2
    assert reading.bounds(groups[1])[3] >= 325  # the bar is in the second digit


class ByWidth:
    """A model that reads a 28x28 digit by how many columns its ink spans: `narrow` (at 0.95)
    under 10, `half` (at 0.999, surer than of the whole) under 18, else `wide` at 0.9. Like a
    real model sure of half a digit, it makes the segmenting choose between readings."""

    output_shape = (None, 10)

    def __init__(self, narrow: int, half: int, wide: int) -> None:
        self.labels = (narrow, half, wide)

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        out = np.full((len(x), 10), 1e-4, np.float32)
        for row, image in zip(out, x.reshape(len(x), 28, 28), strict=True):
            span = int(np.ptp(np.flatnonzero(image.max(axis=0) > 0.3))) + 1
            which = 0 if span < 10 else 1 if span < 18 else 2
            row[self.labels[which]] = (0.95, 0.999, 0.9)[which]
        return out


def test_a_wide_zero_read_surely_in_halves_is_not_cut_in_two():
    """Half a 0 is read as a 6 more surely than the whole as a 0, but the cut crosses two
    strokes where two touching digits meet in one: it stays one digit."""
    page = Image.new("L", (260, 160), 255)
    ImageDraw.Draw(page).ellipse((40, 30, 180, 130), outline=0, width=12)
    assert reading.read_picture(ByWidth(1, 6, 0), page).text == "0"


def test_a_touching_one_and_seven_are_read_as_two_digits():
    picture = strokes(
        (300, 160), one(20, 30, 100) + seven(70, 30, 100) + [[(20, 130), (85, 130)]], 12
    )
    paper = im.ink_of(picture)
    assert len(reading.groups(paper.pieces)) == 1  # they touch: one piece
    result = reading.read_picture(ByWidth(1, 7, 4), picture)
    # Two digits: the 1 on the left, the 7 whole on the right. Which of them keeps the stroke
    # joining their feet is the model's to say: this one reads a 1 with a foot as a 7
    [first, second] = result.digits
    assert first.box[1] <= 20 and first.box[3] <= 95
    assert second.label == 7 and second.box[1] >= 60 and second.box[3] >= 105


def test_a_one_touching_a_wide_digit_far_from_the_middle_is_cut_off():
    """A 1 joined to a 0 by a short stroke: the valley between them lies at a fifth of the
    piece's width, where no cut near the middle goes. A stand-in model reads the 1 and the 0
    surely, the whole piece and any other part unsurely."""
    rows, cols = np.mgrid[:140, :130]
    ring = ((cols - 70) / 40) ** 2 + ((rows - 70) / 50) ** 2
    one = (cols >= 10) & (cols < 26) & (rows >= 20) & (rows < 120)
    joint = (cols >= 26) & (cols < 32) & (rows >= 65) & (rows < 75)
    group = one | joint | ((ring <= 1) & (ring >= 0.6))

    def probabilities(parts):
        out = np.full((len(parts), 10), 0.01)
        for row, (_, (_, left, _, right)) in zip(out, parts, strict=True):
            if left <= 12 and 24 <= right <= 34:
                row[1] = 0.91
            elif 24 <= left <= 34 and right >= 109:
                row[0] = 0.91
            else:
                row[0 if (left, right) == (10, 111) else 8] = 0.3
        return out

    parts, chances = reading.best_split(group, probabilities)
    assert [int(np.argmax(p)) for p in chances] == [1, 0]
    assert parts[0][1][3] <= 32 <= parts[1][1][1] + 8


def test_the_parts_read_in_a_long_noisy_piece_are_bounded():
    """Noise 12 times wider than high: the cut lines are capped (MAX_CUTS), so the parts read
    stay a few hundred, whatever the picture."""
    group = np.random.default_rng(0).random((100, 1200)) < 0.3
    read = []

    def probabilities(parts):
        read.append(len(parts))
        return np.full((len(parts), 10), 0.1)

    parts, _ = reading.best_split(group, probabilities)
    assert 1 <= len(parts) <= reading.MAX_DIGITS
    assert sum(read) <= reading.MAX_CUTS * 20


def test_a_cut_follows_the_valley_of_least_ink():
    """Two blocks of ink touching along a slanted gap: the straight column crosses ink, the
    path of least ink goes down the gap."""
    rows, cols = np.mgrid[:60, :80]
    gap = 30 + rows // 3  # slants from column 30 to 49
    group = (np.abs(cols - gap) > 1) & (cols > 5) & (cols < 75)
    path = reading.least_ink_path(group, 40, 15)
    assert not group[np.arange(60), path].any()
    assert reading.stroke_runs(group, path) == 0  # ink on both sides in no row
    assert reading.stroke_runs(group, np.full(60, 40)) == 2  # straight: above the gap, below


def test_the_width_of_a_part_counts_in_how_well_it_reads():
    p = np.full(10, 1e-4)
    p[1] = 0.99
    tall_thin = reading.fit(p, (0, 0, 100, 40), 100)
    wide = reading.fit(p, (0, 0, 100, 100), 100)
    low = reading.fit(p, (60, 0, 100, 18), 100)  # a stroke's tail, under TALL of the piece
    assert tall_thin > wide and tall_thin > low


class Fixed:
    """A model that reads everything as `label` with probability 0.9: reading's segmenting,
    not its model, is what the tests below check."""

    output_shape = (None, 10)

    def __init__(self, label: int) -> None:
        self.label = label

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        out = np.full((len(x), 10), 0.1 / 9, np.float32)
        out[:, self.label] = 0.9
        return out


def test_read_picture_gives_text_boxes_and_images():
    result = reading.read_picture(Fixed(7), encode(number([20, 110, 200])))
    assert result.text == "777"
    boxes = [d.box for d in result.digits]
    assert [b[1] for b in boxes] == sorted(b[1] for b in boxes)
    assert all(d.pixels.shape == (28, 28) for d in result.digits)
    as_dict = result.to_dict("n.png")
    assert set(as_dict) == {"file", "text", "digits"}
    assert set(as_dict["digits"][0]) == {"label", "probability", "box"}
    assert as_dict["digits"][0]["probability"] == pytest.approx(0.9)


def test_the_read_command(tiny_run, tmp_path):
    path = tmp_path / "n.png"
    path.write_bytes(encode(number([20, 110])))
    runner = CliRunner()
    result = runner.invoke(cli.cli, ["read", str(path), "--run", str(tiny_run), "--json"])
    assert result.exit_code == 0, result.output
    [answer] = json.loads(result.stdout)
    assert answer["file"] == str(path) and len(answer["text"]) == 2
    assert [d["box"][1] for d in answer["digits"]] == sorted(d["box"][1] for d in answer["digits"])
    text = runner.invoke(
        cli.cli, ["read", str(path), str(tmp_path / "no.png"), "--run", str(tiny_run)]
    )
    assert text.exit_code == 2
    assert f"{path}: {answer['text']}  (" in text.stdout
    assert "no.png: no such file" in text.stderr
    none = runner.invoke(cli.cli, ["read"])
    assert none.exit_code == 2 and "no image files given" in none.stderr


def test_post_api_read(tiny_run):
    with TestClient(create_app(tiny_run)) as client:
        body = encode(number([20, 110, 200]))
        answer = client.post("/api/read", content=body, headers={"Content-Type": "image/png"})
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert len(result["text"]) == 3 and result["inverted"] is True
        assert result["digits"][0]["image"].startswith("data:image/png;base64,")
        blank = encode(Image.new("L", (100, 100), 255))
        refused = client.post("/api/read", content=blank, headers={"Content-Type": "image/png"})
        assert refused.status_code == 422 and "no ink" in refused.json()["error"]
        assert (
            client.post(
                "/api/read", content=b"x", headers={"Content-Type": "text/plain"}
            ).status_code
            == 415
        )


def test_the_reader_of_a_run_folder_is_that_run(tiny_run):
    assert reading.reader(tiny_run).path == tiny_run


def test_the_reading_model_trains_on_the_backend_this_process_runs():
    # preset handwriting names TensorFlow; a notebook on JAX must still be able to train it,
    # and a model trained on either backend is the same reading model
    import keras

    spec = reading.reader_spec()
    assert reading.reader_backend(spec) == keras.backend.backend()
    other = "jax" if spec.backend == "tensorflow" else "tensorflow"
    assert reading.reader_folder(spec) == reading.reader_folder(spec.replace(backend=other))


@pytest.mark.realdata
def test_the_default_reading_model_is_trained_once_and_kept(tmp_path, monkeypatch):
    spec = tmp_path / "tiny.toml"
    spec.write_text("hidden = [64]\nepochs = 2\nbatch_size = 128\n")
    monkeypatch.setenv(reading.MODELS_ENV, str(tmp_path / "models"))
    monkeypatch.setenv(reading.SPEC_ENV, str(spec))
    heard: list[str] = []
    runs = []
    threads = [
        threading.Thread(target=lambda: runs.append(reading.reader(log=heard.append)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(line.startswith("No reading model yet: training") for line in heard) == 1
    assert runs[0].path == runs[1].path and runs[0].path.parent == tmp_path / "models"
    assert runs[0].accuracy > 0.93
    # The command with no run uses it, without training again
    path = tmp_path / "n.png"
    path.write_bytes(encode(number([20, 110])))
    result = CliRunner().invoke(cli.cli, ["read", str(path)])
    assert result.exit_code == 0, result.output
    assert "No reading model yet" not in result.stderr and len(result.stdout.split(":")[1]) > 2

    # The case: mnistlab's own figure of the first training digit, a 5, was read as 3
    figure = tmp_path / "five.png"
    shown = CliRunner().invoke(
        cli.cli, ["data", "show", "mnist", "--index", "0", "--out", str(figure)]
    )
    assert shown.exit_code == 0, shown.output
    assert reading.read(figure).text == "5"
    # A number made of MNIST's first three test digits, 7 2 1, dark on paper
    from mnistlab import data

    images = data.load("mnist").test[0]
    page = np.zeros((40, 100), np.uint8)
    for k in range(3):
        page[6:34, 5 + 30 * k : 33 + 30 * k] = images[k]
    picture = Image.fromarray(255 - page).resize((400, 160), Image.Resampling.BILINEAR)
    assert reading.read(encode(picture), run=runs[0]).text == "721"


class Counting(Fixed):
    """`Fixed`, counting the images it reads."""

    def __init__(self, label: int) -> None:
        super().__init__(label)
        self.seen = 0

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        self.seen += len(x)
        return super().predict_on_batch(x)


@pytest.mark.parametrize("rotate", [0.0, 8.0])
def test_parts_are_read_turned_too_by_a_model_trained_on_turned_digits(rotate):
    model = Counting(7)
    run = SimpleNamespace(model=model, spec=SimpleNamespace(rotate=rotate))
    result = reading.read_picture(run, encode(number([20])))
    assert result.text == "7" and result.digits[0].probability == pytest.approx(0.9)
    assert model.seen == (1 + len(reading.TURNS) if rotate else 1)
