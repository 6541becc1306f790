"""The report: each figure is a PNG of its stated size, the page holds them all, for a run
folder and for a sweep folder; and the command's errors."""

import base64
import json
import re
import struct

import numpy as np
import pytest
from click.testing import CliRunner

from mnistlab import cli, data, experiments
from mnistlab.errors import MnistlabError
from mnistlab.reports import figures, page
from mnistlab.spec import Spec
from mnistlab.training import train

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(raw: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header chunk."""
    assert raw[:8] == PNG_SIGNATURE and raw[12:16] == b"IHDR"
    return struct.unpack(">II", raw[16:24])


def expected(inches: tuple[float, float]) -> tuple[int, int]:
    return round(inches[0] * figures.DPI), round(inches[1] * figures.DPI)


def test_confident_mistakes_most_confident_first():
    labels = np.array([0, 1, 2, 0, 1])
    probabilities = np.array(
        [
            [0.9, 0.1, 0.0],  # right
            [0.7, 0.3, 0.0],  # wrong, 0.7
            [0.05, 0.95, 0.0],  # wrong, 0.95
            [0.2, 0.8, 0.0],  # wrong, 0.8
            [0.0, 1.0, 0.0],  # right
        ]
    )
    assert figures.confident_mistakes(labels, probabilities) == [2, 3, 1]
    assert figures.confident_mistakes(labels, probabilities, count=1) == [2]
    assert figures.confident_mistakes(labels[[0, 4]], probabilities[[0, 4]]) == []


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny):
    path = tmp_path_factory.mktemp("report") / "run"
    train(Spec(epochs=2), tiny).save(path)
    return path


def test_run_report_figures_and_page(run_dir, tiny, tmp_path):
    out = tmp_path / "report"
    index, drawn = page.make(run_dir, out, lambda name: tiny)
    assert [f.name for f in drawn] == [f"{name}.png" for name in figures.SIZES]
    for figure, name in zip(drawn, figures.SIZES, strict=True):
        raw = figure.read_bytes()
        assert len(raw) > 5000, figure  # drawn, not blank
        assert png_size(raw) == expected(figures.SIZES[name]), figure
    html = index.read_text()
    embedded = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert [base64.b64decode(e) for e in embedded] == [f.read_bytes() for f in drawn]
    assert "http" not in html  # self-contained: nothing to fetch
    assert "Run run" in html
    # what is inside: the first layer's weights and the map of the last hidden layer
    assert "<figcaption>weights.png</figcaption>" in html
    assert "<figcaption>embedding.png</figcaption>" in html
    metrics = json.loads((run_dir / "run.json").read_text())["metrics"]
    assert f"{metrics['accuracy']:.2%}" in html


def test_sweep_report_has_the_table_the_plot_and_the_best_run(tmp_path, tiny):
    plan = experiments.Experiment(
        "tiny",
        "mnist",
        (1, 2),
        (
            experiments.Variant("baseline", Spec(epochs=1)),
            experiments.Variant("wide", Spec(epochs=1, hidden=(256,))),
        ),
        "baseline",
    )
    sweep = tmp_path / "sweep"
    results = experiments.run_experiment(plan, out=sweep, data=tiny)
    rows, best = results.rows, results.best.variant

    index, drawn = page.make(results, sweep / "report", lambda name: tiny)
    names = [f.name for f in drawn]
    assert names == ["accuracy.png"] + [f"best-{name}.png" for name in figures.SIZES]
    assert png_size(drawn[0].read_bytes()) == expected(figures.accuracy_size(2))
    for figure in drawn[1:]:
        assert png_size(figure.read_bytes()) == expected(figures.SIZES[figure.stem[5:]])
    html = index.read_text()
    assert html.count("data:image/png;base64,") == len(drawn)
    assert "<td>baseline</td>" in html and "<td>wide</td>" in html
    assert f"The best variant, {best}, on seed 1" in html
    for row in rows:
        assert f"{row.mean:.2%} ± {row.std * 100:.2f}" in html


def test_report_refuses_other_folders(tmp_path):
    with pytest.raises(MnistlabError, match="neither a run folder") as caught:
        page.make(tmp_path, tmp_path / "out", lambda name: None)
    assert "mnistlab train" in caught.value.fix
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(MnistlabError, match="damaged results"):
        page.make(tmp_path, tmp_path / "out", lambda name: None)


def test_report_command(run_dir, tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "load", lambda name, **options: tiny)
    runner = CliRunner()
    out = tmp_path / "pages"
    result = runner.invoke(cli.cli, ["report", str(run_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"Wrote {out / 'index.html'}" in result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["index.html", *(f"{name}.png" for name in figures.SIZES)]
    )
    result = runner.invoke(cli.cli, ["report", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert result.output.startswith("error: ")
    assert "neither a run folder" in result.output
