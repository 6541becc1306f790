"""TensorBoard logs and MLflow runs of a sweep, on the tiny synthetic data set: what they hold,
and that a resumed sweep logs each run once. MLflow uses a local SQLite store."""

import json
import textwrap

import mlflow.keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnistlab import cli, data, runs
from mnistlab.data import preprocess

GRID = """
    name = "tracked"
    dataset = "mnist"
    seeds = [1, 2]
    [base]
    epochs = 2
    [[variants]]
    name = "wide"
    hidden = [32]
"""


@pytest.fixture
def sweep(tmp_path, monkeypatch, tiny):
    monkeypatch.setattr(data, "load", lambda name, **options: tiny)
    grid = tmp_path / "grid.toml"
    grid.write_text(textwrap.dedent(GRID))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def run(*args: str):
        result = CliRunner().invoke(
            cli.cli,
            [
                "experiment",
                str(grid),
                "--out",
                str(tmp_path / "sweep"),
                "--tensorboard",
                str(tmp_path / "tb"),
                "--mlflow",
                uri,
                *args,
            ],
        )
        assert result.exit_code == 0, result.output
        return result

    return run, tmp_path, uri


def scalars(folder, tag):
    """(steps, values) of a TensorBoard scalar."""
    events = EventAccumulator(str(folder))
    events.Reload()
    found = events.Tensors(tag)
    return [e.step for e in found], [float(tf.make_ndarray(e.tensor_proto)) for e in found]


def by_epoch(values):
    return list(range(1, len(values) + 1)), pytest.approx(values)


def test_a_sweep_shows_up_in_tensorboard_and_mlflow_once_each(sweep):
    run, tmp_path, uri = sweep
    first = run("--seeds", "1")
    assert f"mlflow ui --backend-store-uri {uri}" in first.output
    assert f"tensorboard --logdir {tmp_path / 'tb'}" in first.output
    run()  # resumed: seed 1 is kept, seed 2 is new

    folder = tmp_path / "sweep" / "runs" / "wide" / "seed-2"
    meta = runs.read_meta(folder)
    history = json.loads((folder / "history.json").read_text())

    board = tmp_path / "tb" / "wide" / "seed-2"
    assert len(history["loss"]) == 2
    assert scalars(board / "train", "epoch_loss") == by_epoch(history["loss"])
    assert scalars(board / "validation", "epoch_accuracy") == by_epoch(history["val_accuracy"])
    assert scalars(board / "test", "test_accuracy") == (
        [2],
        pytest.approx([meta["metrics"]["accuracy"]]),
    )
    logged = sorted(str(p.relative_to(tmp_path / "tb")) for p in (tmp_path / "tb").glob("*/*"))
    assert logged == ["wide/seed-1", "wide/seed-2"]
    assert not list((tmp_path / "tb").glob("*/.*"))  # no temporary folders left

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tracked")
    logged = client.search_runs([experiment.experiment_id])
    # each run once, though seed 1 was there when the sweep resumed
    assert sorted(r.info.run_name for r in logged) == ["wide-seed-1", "wide-seed-2"]
    assert all(r.info.status == "FINISHED" for r in logged)
    [wide2] = [r for r in logged if r.info.run_name == "wide-seed-2"]
    assert wide2.data.params["hidden"] == "32"
    assert wide2.data.params["seed"] == "2"
    assert wide2.data.params["dataset"] == "mnist"
    assert wide2.data.metrics["test_accuracy"] == pytest.approx(meta["metrics"]["accuracy"])
    val = client.get_metric_history(wide2.info.run_id, "val_accuracy")
    # one value per epoch: logged once, not by a callback and autolog both
    assert ([m.step for m in val], [m.value for m in val]) == by_epoch(history["val_accuracy"])
    assert str(tmp_path) in experiment.artifact_location  # beside the database

    model_dir = client.download_artifacts(wide2.info.run_id, "model", str(tmp_path))
    model = mlflow.keras.load_model(model_dir)
    images = preprocess(np.zeros((3, 28, 28), dtype=np.uint8) + 100)
    saved = runs.load(folder).model
    assert np.allclose(model.predict_on_batch(images), saved.predict_on_batch(images))
    artifacts = {a.path for a in client.list_artifacts(wide2.info.run_id, "run")}
    assert artifacts == {"run/run.json", "run/history.csv"}


def test_an_unreachable_mlflow_store_is_refused_before_training(tmp_path, monkeypatch, tiny):
    monkeypatch.setattr(data, "load", lambda name, **options: tiny)
    grid = tmp_path / "grid.toml"
    grid.write_text(textwrap.dedent(GRID))
    result = CliRunner().invoke(
        cli.cli,
        ["experiment", str(grid), "--out", str(tmp_path / "s"), "--mlflow", "nosuch://x"],
    )
    assert result.exit_code == 2
    assert "error: cannot use the MLflow tracking URI 'nosuch://x'" in result.output
    assert not (tmp_path / "s" / "runs").exists()
