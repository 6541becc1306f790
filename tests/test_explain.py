"""See inside a model: integrated gradients (shape, finiteness, completeness, and that they
point at the pixels that decide), the first layer's weights and the hidden layer's map, the
explanation figure and `mnistlab explain` through Click's runner, on both backends."""

import struct

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import mnistlab as ml
from mnistlab import cli, data, runs
from mnistlab import explaining as ex
from mnistlab.errors import MnistlabError
from mnistlab.models import build
from mnistlab.reports import figures
from mnistlab.spec import Spec


@pytest.fixture(scope="module")
def run(tiny):
    """A tiny run sure of its answers (5 epochs), so that there is a change to explain."""
    from mnistlab.training import train

    return train(Spec(epochs=5, hidden=(32,)), tiny)


def png_size(path) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", raw[16:24])


def test_integrated_gradients_add_up_to_the_change_of_probability(run, tiny):
    images, labels = tiny.test
    for index in range(5):
        e = ml.explain(run, images[index])
        assert e.saliency.shape == (28, 28) and e.pixels.shape == (28, 28)
        assert np.isfinite(e.saliency).all()
        assert e.probabilities == pytest.approx(run.predict(images[index]), abs=1e-5)
        assert e.label == int(np.argmax(e.probabilities))
        assert e.class_name == str(e.label)
        # completeness: the attributions' sum is the probability's change from black
        change = e.probability - e.baseline_probability
        assert abs(e.saliency.sum() - change) < 0.01 + 0.02 * abs(change), (index, e.gap)
        assert abs(e.gap) < 0.01 + 0.02 * abs(change)
        assert abs(change) > 0.05  # a change to explain, not 0 = 0


def test_saliency_points_at_the_square_that_decides(run, tiny):
    """Each class of the synthetic data is a bright square at its own place: the pixels that
    pushed towards the answer most lie in the predicted class's square."""
    images, labels = tiny.test
    inside = []
    for image in images[:20]:
        e = ml.explain(run, image)
        row, col = divmod(e.label, 5)
        square = np.zeros((28, 28), bool)
        square[4 + 12 * row : 10 + 12 * row, 2 + 5 * col : 8 + 5 * col] = True
        top = np.argsort(e.saliency.ravel())[::-1][:10]
        inside.append(square.ravel()[top].mean())
    assert np.mean(inside) > 0.5, inside  # 36 of 784 pixels: 5% by chance


def test_explain_takes_files_and_prepared_pictures(run, tmp_path):
    picture = np.full((60, 60), 255, np.uint8)
    picture[10:50, 25:33] = 0  # a dark stroke on white paper
    path = tmp_path / "one.png"
    Image.fromarray(picture).save(path)
    by_path = ml.explain(run, path)
    by_name = ml.explain(run, str(path))
    prepared = ml.explain(run, ml.read_image(path))
    for e in (by_name, prepared):
        assert np.array_equal(e.pixels, by_path.pixels)
        assert np.allclose(e.saliency, by_path.saliency, atol=1e-6)
    with pytest.raises(MnistlabError, match="one image, not 2"):
        ml.explain(run, np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(MnistlabError, match="not an image that can be read"):
        ml.explain(run, np.zeros((60, 60), np.uint8).tobytes())  # bytes, but not of a picture


def test_first_layer_as_pictures():
    kind, tiles = ex.first_layer(build(Spec(hidden=(100, 16))))
    assert kind == "dense" and tiles.shape == (64, 28, 28)
    model = build(Spec(hidden=(8,)))
    kind, tiles = ex.first_layer(model)
    assert kind == "dense" and tiles.shape == (8, 28, 28)
    kernel = model.layers[0].kernel.numpy()
    assert np.array_equal(tiles[3], kernel[:, 3].reshape(28, 28))  # unit 3's 784 weights
    kind, tiles = ex.first_layer(build(Spec(conv=(6,), hidden=(8,))))
    assert kind == "conv" and tiles.shape == (6, 3, 3)


def test_hidden_features_and_their_map(run, tiny):
    pixels = data.preprocess(tiny.test[0])
    features = ex.hidden_features(run.model, pixels)
    assert features.shape == (100, 32)  # the tiny run's one hidden layer of 32 units
    assert (features >= 0).all()  # after its relu
    chosen, places = ex.embedding(run.model, pixels, count=60)
    assert len(chosen) == 60 and len(set(chosen.tolist())) == 60
    assert places.shape == (60, 2) and np.isfinite(places).all()
    again, same = ex.embedding(run.model, pixels, count=60)
    assert np.array_equal(chosen, again) and np.allclose(places, same)
    with pytest.raises(MnistlabError, match="at least 5"):
        ex.embed(features[:3])


def test_explanation_figure(run, tiny, tmp_path):
    e = ml.explain(run, tiny.test[0][0])
    path = figures.explanation(e, "test image 0", tmp_path / "e.png")
    assert png_size(path) == tuple(round(v * figures.DPI) for v in figures.EXPLANATION_SIZE)
    assert path.stat().st_size > 10_000


def test_the_explain_command(tiny_run, tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "load", lambda name, **options: tiny)
    runner = CliRunner()
    out = tmp_path / "why.png"
    result = runner.invoke(cli.cli, ["explain", str(tiny_run), "--index", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    e = ml.explain(runs.load(tiny_run), tiny.test[0][3])
    assert f"Model prediction: {e.class_name} ({e.probability:.1%})" in result.output
    assert f"Actual label: {tiny.test[1][3]}" in result.output
    assert f"Wrote {out}" in result.output
    assert png_size(out)[0] > 1000

    picture = tmp_path / "seven.png"
    Image.fromarray(255 - tiny.test[0][0]).save(picture)
    out = tmp_path / "file.png"
    result = runner.invoke(cli.cli, ["explain", str(tiny_run), str(picture), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    out = tmp_path / "train.png"
    args = ["explain", str(tiny_run), "--index", "0", "--dataset-split", "train", "--out", str(out)]
    result = runner.invoke(cli.cli, args)
    assert result.exit_code == 0 and f"Actual label: {tiny.train[1][0]}" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "nothing to explain"),
        (["x.png", "--index", "0"], "give either an image file or --index N, not both"),
        (["--index", "100"], "index 100 is out of range: the test set has 100 images"),
        (["--index", "0", "--out", "x.jpg"], "does not end in .png"),
        (["missing.png", "--out", "m.png"], "missing.png"),
    ],
)
def test_the_explain_command_refuses_bad_input(
    tiny_run, tiny, tmp_path, monkeypatch, args, message
):
    monkeypatch.setattr(data, "load", lambda name, **options: tiny)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli.cli, ["explain", str(tiny_run), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
