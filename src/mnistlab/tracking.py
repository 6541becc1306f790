"""Record finished runs in the trackers people already read: TensorBoard and MLflow.

    trackers = tracking.open_trackers(tensorboard_dir, mlflow_uri, "lab", sweep_folder)
    for tracker in trackers:
        tracker.record(run_folder, "wide-256", seed=1)

A tracker reads a run folder once it is stored (`run.json`, `history.json`, `model.keras`), on
the machine that holds the sweep folder, so the local and the Ray engine log alike, whichever
machine trained the run. Each run is logged once: a tracker first looks for what it would
write (the run's TensorBoard folder, an MLflow run tagged with the run's place) and leaves a
run it already has alone, so a resumed sweep logs only its new runs, and a tracker added to a
finished sweep logs all of them. Nothing is logged through autologging.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mnistlab import runs
from mnistlab.errors import MnistlabError
from mnistlab.files import new_folder

# history.json key -> the name each tracker shows
EPOCH_METRICS = {
    "loss": "loss",
    "accuracy": "accuracy",
    "val_loss": "val_loss",
    "val_accuracy": "val_accuracy",
    "seconds": "epoch_seconds",
}


class Tracker(Protocol):
    name: str

    def record(self, folder: Path, variant: str, seed: int) -> bool:
        """Log the run at `folder`; False when it was logged before."""
        ...


def read_run(folder: Path) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """The run's `run.json` and its per-epoch history."""
    return runs.read_meta(folder), runs.read_history(folder)


class TensorBoard:
    """Event files under `logdir/VARIANT/seed-N/`: `train` and `validation` (epoch_loss and
    epoch_accuracy at each epoch, overlaid as Keras's TensorBoard callback draws them), and
    `test` (test loss and accuracy at the last epoch, and the spec as text)."""

    name = "TensorBoard"

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir

    def record(self, folder: Path, variant: str, seed: int) -> bool:
        target = self.logdir / variant / f"seed-{seed}"
        if target.is_dir() and any(target.iterdir()):
            return False
        meta, history = read_run(folder)
        with new_folder(target) as tmp:
            write_events(tmp, meta, history)
        return True


def write_events(folder: Path, meta: dict[str, Any], history: dict[str, list[float]]) -> None:
    import tensorflow as tf  # a dependency of mnistlab; it writes TensorBoard's format

    def scalars(split: str, values: dict[str, list[float]]) -> None:
        writer = tf.summary.create_file_writer(str(folder / split))
        with writer.as_default():
            for name, series in values.items():
                for epoch, value in enumerate(series, start=1):
                    tf.summary.scalar(name, value, step=epoch)
        writer.close()

    scalars(
        "train",
        {
            "epoch_loss": history["loss"],
            "epoch_accuracy": history["accuracy"],
            "epoch_seconds": history.get("seconds", []),
        },
    )
    if "val_loss" in history:
        scalars(
            "validation",
            {"epoch_loss": history["val_loss"], "epoch_accuracy": history["val_accuracy"]},
        )
    epochs = len(history["loss"])
    writer = tf.summary.create_file_writer(str(folder / "test"))
    with writer.as_default():
        tf.summary.scalar("test_loss", meta["metrics"]["loss"], step=epochs)
        tf.summary.scalar("test_accuracy", meta["metrics"]["accuracy"], step=epochs)
        spec = json.dumps(meta["spec"], indent=2)
        tf.summary.text("spec", f"```\n{spec}\n```", step=epochs)
    writer.close()


class MLflow:
    """One MLflow run per run of the sweep, in the MLflow experiment named after the sweep's:
    the spec and data set as parameters; loss, accuracy, val_loss, val_accuracy and
    epoch_seconds at each epoch; test_loss, test_accuracy and train_seconds; the model as an
    MLflow Keras model under `model/`, and the run folder's run.json and history.csv."""

    name = "MLflow"
    SWEEP_TAG = "mnistlab.sweep"
    RUN_TAG = "mnistlab.run"

    def __init__(self, uri: str, experiment: str, sweep: Path) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise MnistlabError(
                "--mlflow needs MLflow, which is not installed",
                "install it with: pip install 'mnistlab[mlflow]'",
            ) from None
        try:
            self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = (
                found.experiment_id
                if found
                else self.client.create_experiment(experiment, artifact_location(uri))
            )
        except Exception as e:  # MLflow raises its own and its stores' errors
            raise MnistlabError(
                f"cannot use the MLflow tracking URI {uri!r} ({type(e).__name__}: {e})",
                "give a store MLflow can open, e.g. sqlite:///mlflow.db or an http:// server",
            ) from e
        self.sweep = str(sweep.resolve())
        self.logged = self.finished_runs()

    def finished_runs(self) -> set[str]:
        """The runs of this sweep already logged; half-logged ones are deleted, to log anew."""
        logged, token = set(), None
        while True:
            page = self.client.search_runs([self.experiment_id], page_token=token)
            for run in page:
                if run.data.tags.get(self.SWEEP_TAG) != self.sweep:
                    continue
                if run.info.status == "FINISHED":
                    logged.add(run.data.tags[self.RUN_TAG])
                else:
                    self.client.delete_run(run.info.run_id)
            token = page.token
            if not token:
                return logged

    def record(self, folder: Path, variant: str, seed: int) -> bool:
        from mlflow.entities import Metric, Param

        key = f"{variant}/seed-{seed}"
        if key in self.logged:
            return False
        meta, history = read_run(folder)
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{variant}-seed-{seed}",
            tags={self.SWEEP_TAG: self.sweep, self.RUN_TAG: key, "mnistlab.variant": variant},
        )
        run_id = run.info.run_id
        try:
            now = run.info.start_time
            metrics = [
                Metric(shown, float(value), now, epoch)
                for name, shown in EPOCH_METRICS.items()
                for epoch, value in enumerate(history.get(name, []), start=1)
            ]
            epochs = len(history["loss"])
            metrics += [
                Metric("test_loss", float(meta["metrics"]["loss"]), now, epochs),
                Metric("test_accuracy", float(meta["metrics"]["accuracy"]), now, epochs),
                Metric("train_seconds", float(meta["seconds"]["train"]), now, epochs),
            ]
            params = [Param(k, text(v)) for k, v in meta["spec"].items()]
            params += [
                Param("dataset", meta["dataset"]),
                Param("variant", variant),
                Param("parameters", str(meta["parameters"])),
                Param("data_source", meta["data_source"][:500]),
            ]
            for start in range(0, len(metrics), 1000):  # MLflow's limit per batch
                self.client.log_batch(run_id, metrics=metrics[start : start + 1000])
            self.client.log_batch(run_id, params=params)
            self.log_model(run_id, folder, meta)
            self.client.set_terminated(run_id, "FINISHED")
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")  # deleted and logged again next time
            raise
        self.logged.add(key)
        return True

    def log_model(self, run_id: str, folder: Path, meta: dict[str, Any]) -> None:
        import mlflow.keras
        from mlflow.models import ModelSignature
        from mlflow.types import Schema, TensorSpec

        versions = meta["versions"]
        # Given, not inferred: inferring starts a process that loads the model again.
        requirements = [
            f"{package}=={versions[package]}"
            for package in ("keras", "jax", "jaxlib", "tensorflow-cpu")
            if package in versions
        ]
        # What the model takes and gives: preprocessed images (pixels / 255, flattened to
        # 784, as runs.PREPROCESSING says) and one probability per class.
        signature = ModelSignature(
            inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 784))]),
            outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(meta["class_names"])))]),
        )
        with tempfile.TemporaryDirectory(prefix="mnistlab-mlflow-") as tmp:
            model_dir = Path(tmp) / "model"
            mlflow.keras.save_model(
                runs.load(folder).model,
                str(model_dir),
                signature=signature,
                pip_requirements=requirements,
            )
            self.client.log_artifacts(run_id, str(model_dir), "model")
        for name in (runs.META_FILE, runs.HISTORY_CSV):
            self.client.log_artifact(run_id, str(folder / name), "run")


def artifact_location(uri: str) -> str | None:
    """Where a new MLflow experiment keeps its files: beside the database for an SQLite
    store (MLflow's default there is `mlruns` in whatever folder the command ran in), the
    store's or server's choice otherwise."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    database = Path(uri[len(prefix) :]).resolve()
    return (database.parent / f"{database.stem}-artifacts").as_uri()


def text(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def open_trackers(
    tensorboard: Path | None, mlflow_uri: str | None, experiment: str, sweep: Path
) -> list[Tracker]:
    trackers: list[Tracker] = []
    if tensorboard is not None:
        trackers.append(TensorBoard(tensorboard))
    if mlflow_uri is not None:
        trackers.append(MLflow(mlflow_uri, experiment, sweep))
    return trackers
