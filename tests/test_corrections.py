"""Learning from corrections: the corrections folder (atomic, unique names, limits, damaged
files), the web API's `/api/explain` and `/api/corrections` through FastAPI's test client, and
`finetune` end to end on tiny data, through the library and the command."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from photos import encode, seven, strokes
from PIL import Image

import mnistlab as ml
from mnistlab import cli, data, runs
from mnistlab import corrections as corr
from mnistlab import images as im
from mnistlab.errors import MnistlabError
from mnistlab.web import app as web_app
from mnistlab.web import create_app

SEVEN = encode(strokes((300, 300), seven(50, 50, 200), 14))
NAMES = tuple(str(d) for d in range(10))


def barred(rng) -> np.ndarray:
    """A synthetic image (conftest's kind) with the square of a class other than 6, and a
    bright bar along the bottom, where no class has its square: a picture a person says is a
    6 (the bar is what makes a 6 here) and the tiny run, which never saw a bar, reads as the
    square's class."""
    image = rng.integers(0, 60, size=(28, 28)).astype(np.uint8)
    row, col = divmod(int(rng.choice([0, 1, 2, 3, 4, 5, 7, 8, 9])), 5)
    image[4 + 12 * row : 10 + 12 * row, 2 + 5 * col : 8 + 5 * col] = 255
    image[24:27, 2:26] = 255
    return image


def test_a_correction_is_kept_whole_under_a_name_of_its_own(tmp_path):
    pixels = np.random.default_rng(0).random((28, 28)).astype(np.float32)
    saved = [corr.save(tmp_path, pixels, 3, NAMES, raw=SEVEN, said={"label": 7}) for _ in range(20)]
    assert len({p.name for p in saved}) == 20
    for path in saved:
        assert sorted(f.name for f in path.iterdir()) == ["correction.json", "image.png", "raw.png"]
        meta = json.loads((path / "correction.json").read_text())
        assert meta["label"] == 3 and meta["class_name"] == "3" and meta["said"] == {"label": 7}
        assert (path / "raw.png").read_bytes() == SEVEN
        image = np.asarray(Image.open(path / "image.png"))
        assert np.array_equal(image, np.round(pixels * 255).astype(np.uint8))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    found = corr.read(tmp_path)
    assert len(found) == 20 and found.images.shape == (20, 28, 28) and set(found.labels) == {3}
    assert list(found.names) == sorted(p.name for p in saved)


def test_a_correction_that_fails_midway_leaves_nothing(tmp_path, monkeypatch):
    def broken(path, value):
        raise OSError("disk full")

    monkeypatch.setattr(corr, "write_json", broken)
    with pytest.raises(OSError, match="disk full"):
        corr.save(tmp_path, np.zeros((28, 28)), 1, NAMES, raw=SEVEN)
    assert [p.name for p in tmp_path.iterdir()] == [".lock"]


def test_the_folder_is_bounded(tmp_path):
    pixels = np.zeros((28, 28), np.uint8)
    limits = corr.Limits(count=2, total_bytes=10**6)
    for _ in range(2):
        corr.save(tmp_path, pixels, 1, NAMES, limits=limits)
    with pytest.raises(corr.Full, match="is full: it holds 2 corrections, its limit"):
        corr.save(tmp_path, pixels, 1, NAMES, limits=limits)
    assert corr.usage(tmp_path)[0] == 2
    small = tmp_path / "small"
    with pytest.raises(corr.Full, match="is full: 0 bytes of its"):
        corr.save(small, pixels, 1, NAMES, raw=SEVEN, limits=corr.Limits(total_bytes=len(SEVEN)))
    assert corr.usage(small) == (0, 0)


@pytest.mark.parametrize(
    "pixels, label, message",
    [
        (np.zeros((28, 27)), 1, "not 28x28"),
        (np.full((28, 28), 2.0), 1, "float pixels must lie in"),
        (np.full((28, 28), 300), 1, "0-255"),
        ([["a"] * 28] * 28, 1, "not 28x28 numbers"),
        (np.zeros((28, 28)), 10, "label 10 is not a class"),
        (np.zeros((28, 28)), "3", "is not a class"),
    ],
)
def test_bad_corrections_are_refused(tmp_path, pixels, label, message):
    with pytest.raises(MnistlabError, match=message):
        corr.save(tmp_path, pixels, label, NAMES)


def test_reading_a_missing_empty_or_damaged_folder(tmp_path):
    with pytest.raises(MnistlabError, match="no corrections folder at"):
        corr.read(tmp_path / "none")
    with pytest.raises(MnistlabError, match="holds no corrections"):
        corr.read(tmp_path)
    good = corr.save(tmp_path, np.zeros((28, 28)), 1, NAMES)
    bad = corr.save(tmp_path, np.zeros((28, 28)), 2, NAMES)
    (bad / "correction.json").write_text("{not json")
    with pytest.raises(MnistlabError, match=f"the correction {bad} is damaged") as caught:
        corr.read(tmp_path)
    assert caught.value.fix == f"remove {bad}, or move it elsewhere"
    (bad / "correction.json").write_text('{"label": 12}')
    with pytest.raises(MnistlabError, match="its label 12 is not a class"):
        corr.read(tmp_path)
    (bad / "correction.json").write_text('{"label": 2}')
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(bad / "image.png")
    with pytest.raises(MnistlabError, match="10x10, not 28x28"):
        corr.read(tmp_path)
    (bad / "image.png").write_bytes(b"not a png")
    with pytest.raises(MnistlabError, match="damaged"):
        corr.read(tmp_path)
    assert good.is_dir()


@pytest.fixture
def client(tiny_run, tmp_path):
    folder = tmp_path / "corrections"
    app = create_app(tiny_run, corrections=folder)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.folder = folder
        yield client


def test_explain_answers_the_saliency_of_what_the_model_saw(client, tiny_run):
    answer = client.post("/api/predict", content=SEVEN, headers={"Content-Type": "image/png"})
    seen = answer.json()["image"]["pixels"]
    response = client.post("/api/explain", json={"pixels": seen})
    assert response.status_code == 200, response.text
    explained = response.json()
    assert explained["label"] == answer.json()["label"]
    # the same image, its pixels rounded to 0-255 on the way
    assert explained["probabilities"] == pytest.approx(answer.json()["probabilities"], abs=1e-3)
    saliency = np.array(explained["saliency"])
    expected = ml.explain(runs.load(tiny_run), np.array(seen, np.uint8))
    assert saliency.shape == (28, 28)
    assert np.allclose(saliency, expected.saliency, atol=1e-5)
    assert saliency.sum() == pytest.approx(
        explained["probability"] - explained["baseline_probability"], abs=0.01
    )


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b"not json", 400, "not JSON"),
        (b'{"pixels": [[1, 2]]}', 422, "not 28x28"),
        (b"[]", 422, "not 28x28"),
        (b"[" + b"0," * 40_000 + b"0]", 413, "too large"),
    ],
)
def test_explain_refuses_bad_requests(client, body, status, message):
    response = client.post("/api/explain", content=body)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_a_correction_from_the_page_is_saved(client):
    seen = client.post("/api/predict", content=SEVEN, headers={"Content-Type": "image/png"})
    pixels = seen.json()["image"]["pixels"]
    response = client.post(
        "/api/corrections",
        data={"label": "4", "pixels": json.dumps(pixels)},
        files={"raw": ("drawing.png", SEVEN, "image/png")},
    )
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["label"] == 4 and answer["count"] == 1
    saved = client.folder / answer["saved"]
    assert np.array_equal(np.asarray(Image.open(saved / "image.png")), np.array(pixels))
    assert (saved / "raw.png").read_bytes() == SEVEN
    # a raw picture alone is prepared as /api/predict prepares it
    response = client.post(
        "/api/corrections", data={"label": "4"}, files={"raw": ("a.png", SEVEN, "image/png")}
    )
    assert response.status_code == 201
    second = client.folder / response.json()["saved"]
    assert second != saved
    expected = im.read_image(SEVEN).as_uint8()
    assert np.array_equal(np.asarray(Image.open(second / "image.png")), expected)
    model = client.get("/api/model").json()["corrections"]
    assert model["count"] == 2 and model["enabled"] is True
    assert model["max_count"] == web_app.CORRECTION_LIMITS.count
    assert model["max_bytes"] == web_app.CORRECTION_LIMITS.total_bytes


@pytest.mark.parametrize(
    "kwargs, status, message",
    [
        ({"data": {"pixels": "[]"}}, 422, "label None is not a class number"),
        ({"data": {"label": "x", "pixels": "[]"}}, 422, "label 'x' is not a class number"),
        ({"data": {"label": "12", "pixels": "[]"}}, 422, "not 28x28"),
        ({"data": {"label": "1"}, "files": {"other": ("a", b"", "text/plain")}}, 422, "neither"),
        ({"data": {"label": "1", "pixels": "{"}}, 422, "`pixels` is not JSON"),
        ({"content": b"x", "headers": {"Content-Type": "image/png"}}, 415, "not a form"),
        (
            {"data": {"label": "1"}, "files": {"raw": ("a.png", b"not an image", "image/png")}},
            422,
            "not an image",
        ),
    ],
)
def test_bad_corrections_get_a_4xx(client, kwargs, status, message):
    response = client.post("/api/corrections", **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert not client.folder.exists() or corr.usage(client.folder)[0] == 0


def test_a_full_folder_is_refused_with_507(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setattr(web_app, "CORRECTION_LIMITS", corr.Limits(count=1))
    with TestClient(create_app(tiny_run, corrections=tmp_path)) as client:
        body = {"label": "1", "pixels": json.dumps([[0] * 28] * 28)}
        assert client.post("/api/corrections", data=body).status_code == 201
        response = client.post("/api/corrections", data=body)
        assert response.status_code == 507
        assert "is full" in response.json()["error"]
        assert "mnistlab finetune" in response.json()["fix"]
    assert corr.usage(tmp_path)[0] == 1


def test_an_upload_over_the_limit_is_refused_with_413(client, monkeypatch):
    monkeypatch.setattr(im, "MAX_BYTES", 1000)
    response = client.post(
        "/api/corrections", data={"label": "1"}, files={"raw": ("a.png", b"x" * 70_000)}
    )
    assert response.status_code == 413


def test_corrections_go_to_the_run_folder_by_default(tiny, tmp_path):
    from mnistlab.spec import Spec
    from mnistlab.training import train

    run_dir = tmp_path / "run"
    train(Spec(epochs=1, hidden=(8,)), tiny).save(run_dir)
    with TestClient(create_app(run_dir)) as client:
        body = {"label": "2", "pixels": json.dumps([[0] * 28] * 28)}
        assert client.post("/api/corrections", data=body).status_code == 201
    assert corr.usage(run_dir / "corrections")[0] == 1
    runs.load(run_dir)  # still a run folder


@pytest.fixture(scope="module")
def corrections_dir(tmp_path_factory):
    """12 corrections the tiny run reads wrong: barred pictures, each labelled 6."""
    folder = tmp_path_factory.mktemp("corrections")
    rng = np.random.default_rng(5)
    for _ in range(12):
        corr.save(folder, barred(rng), 6, NAMES)
    return folder


def test_finetune_learns_the_corrections_and_keeps_the_source(
    tiny_run, tiny, corrections_dir, tmp_path
):
    before = (tiny_run / "model.keras").read_bytes()
    progress = []
    result = ml.finetune(
        tiny_run,
        corrections_dir,
        tmp_path / "tuned",
        epochs=4,
        learning_rate=1e-2,
        data=tiny,
        progress=progress.append,
    )
    assert (tiny_run / "model.keras").read_bytes() == before  # the source run untouched
    assert result.path == tmp_path / "tuned"
    assert len(result.held_out) == 3 and len(result.learnt) == 9  # a quarter held out
    assert not set(result.held_out) & set(result.learnt)
    assert len(progress) == 4 and progress[0].startswith("epoch 1/4:")
    # they were read wrong before, and are learnt after, held-out ones too: the bar is a 6
    assert result.before["learnt"] < 0.5
    assert result.after["learnt"] >= 0.75, result.after
    # 3 of 3 held out read right after on both backends, 0 or 1 before
    assert result.after["held_out"] >= 2 / 3 > result.before["held_out"], result
    assert result.after["test"] == runs.load(result.path).accuracy
    assert result.before["test"] == pytest.approx(runs.load(tiny_run).evaluate(tiny)["accuracy"])
    meta = runs.read_meta(result.path)
    assert meta["finetuned"]["held_out"] == list(result.held_out)
    assert meta["finetuned"]["before"] == result.before
    assert meta["finetuned"]["from"] == str(tiny_run)
    assert [r[0] for r in result.rows()] == [
        "mnist test set (100 images)",
        "held-out corrections (3)",
        "corrections trained on (9)",
    ]
    reloaded = runs.load(result.path)
    assert reloaded.info["finetuned"]["epochs"] == 4


def test_finetune_refuses_bad_input(tiny_run, tiny, corrections_dir, tmp_path):
    with pytest.raises(MnistlabError, match="no corrections folder"):
        ml.finetune(tiny_run, tmp_path / "none", tmp_path / "a", data=tiny)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MnistlabError, match="holds no corrections"):
        ml.finetune(tiny_run, tmp_path / "empty", tmp_path / "a", data=tiny)
    few = tmp_path / "few"
    for _ in range(4):
        corr.save(few, np.zeros((28, 28)), 1, NAMES)
    with pytest.raises(MnistlabError, match="too few corrections to hold some out") as caught:
        ml.finetune(tiny_run, few, tmp_path / "a", data=tiny)
    assert "at least 5" in caught.value.fix
    with pytest.raises(MnistlabError, match="already exists and is not empty"):
        ml.finetune(tiny_run, corrections_dir, tiny_run, data=tiny)
    with pytest.raises(MnistlabError, match="0 epochs"):
        ml.finetune(tiny_run, corrections_dir, tmp_path / "a", epochs=0, data=tiny)
    assert not (tmp_path / "a").exists()


def test_the_finetune_command(tiny_run, tiny, corrections_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "load", lambda name, **options: tiny)
    out = tmp_path / "tuned"
    args = ["finetune", str(tiny_run), "--corrections", str(corrections_dir), "--out", str(out)]
    result = CliRunner().invoke(cli.cli, [*args, "--epochs", "1"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["accuracy", "before", "after"]
    assert lines[1].startswith("mnist test set (100 images)")
    assert lines[2].startswith("held-out corrections (3)")
    assert lines[-1].startswith(f"Wrote {out}")
    meta = runs.read_meta(out)
    after = meta["finetuned"]["after"]
    assert f"{after['test']:.2%}" in lines[1] and f"{after['held_out']:.2%}" in lines[2]
    assert "epoch 1/1" in result.stderr
    # bad input: one line, exit 2, before any work
    for bad, message in [
        (["--corrections", str(tmp_path / "none")], "no corrections folder"),
        (["--corrections", str(corrections_dir), "--out", str(out)], "already exists"),
    ]:
        result = CliRunner().invoke(cli.cli, ["finetune", str(tiny_run), *bad])
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output
    result = CliRunner().invoke(cli.cli, ["finetune", str(tmp_path), "--corrections", "x"])
    assert result.exit_code == 2 and "not an mnistlab run folder" in result.output
