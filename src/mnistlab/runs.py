"""Runs: a trained model with everything needed to use it again, and the folders that hold them.

    run = ml.train(spec, data)            # a Run: model, spec, history, metrics, seconds
    run.evaluate(); run.predict(images)   # test metrics; probabilities
    run.save("runs/mine"); run = ml.load_run("runs/mine")

A run folder holds `model.keras`, `run.json` (spec, data set, class names, preprocessing, test
metrics, seconds, versions), `history.json` and `history.csv`. It is written in a temporary
folder beside its destination and renamed into place when complete, so a failed or interrupted
run never leaves a half-written folder and never touches an existing one. A run trained with a
checkpoint (`checkpoint_path(folder)`, beside the folder) removes it once the folder is in place.

This module owns every file name of a run folder and of a sweep folder (`SweepFolder`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import platform
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnistlab.errors import MnistlabError
from mnistlab.files import new_folder, read_text, write_json, write_text
from mnistlab.spec import Spec
from mnistlab.version import __version__

if TYPE_CHECKING:  # Keras is imported where it is used, after the backend is chosen
    import keras

    from mnistlab.checkpoints import Place
    from mnistlab.data import Dataset

PREPROCESSING = "pixels / 255 as float32, 28x28 flattened to 784"
MODEL_FILE = "model.keras"
META_FILE = "run.json"
HISTORY_LIMIT = 64 << 20  # bytes: a history of 1,000 epochs takes about 100 kB
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
NOT_A_RUN = "pass a folder made by `mnistlab train` or `Run.save`"
# What `run.json` says of where and how a run was made; `trained_on` (the engine of a sweep and
# the machine: {"engine": "ray", "node": IP, "hostname": ..., "node_id": ..., "task": ...})
# is written by the sweep's engines; `loop`, how the epochs ran ("compiled" or "fit"), by `train`;
# `finetuned` (what `finetune` did) by fine-tuning
INFO_KEYS = ("backend", "device", "loop", "versions", "created", "trained_on", "finetuned")


@dataclass
class Run:
    """A trained model and what describes it: the spec it was trained from (seed and backend
    included), the data set and its class names, the per-epoch history (with seconds), the
    test metrics measured when it was trained, and the seconds taken. `path` is the run
    folder it was saved to or loaded from, if any; `checkpoint` where its training kept its
    checkpoint, removed by `save`."""

    model: keras.Model
    spec: Spec
    dataset: str
    class_names: tuple[str, ...]
    history: dict[str, list[float]]
    metrics: dict[str, Any]
    seconds: dict[str, float]
    source: str = ""
    # loss and accuracy on the held-out images measured after training, with the spec's test
    # shifts; empty: the last epoch's, as the history has them
    validated: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=lambda: describe_machine())  # backend, device...
    path: Path | None = None
    checkpoint: Place | None = None

    @property
    def accuracy(self) -> float:
        """Test accuracy, measured when the run was trained."""
        return float(self.metrics["accuracy"])

    @property
    def validation(self) -> dict[str, float]:
        """Loss and accuracy on the held-out images, answered as the test set is: what to
        choose a run by. Empty with none held out."""
        return self.validated or validation(self.history)

    @property
    def meta(self) -> dict[str, Any]:
        """What `run.json` holds."""
        return {
            "dataset": self.dataset,
            "class_names": list(self.class_names),
            "preprocessing": PREPROCESSING,
            "spec": self.spec.to_dict(),
            "parameters": self.model.count_params(),
            "metrics": self.metrics,
            "validation": self.validation,
            "seconds": self.seconds,
            "data_source": self.source,
            **self.info,
        }

    def predict(self, images: Any) -> np.ndarray:
        """Class probabilities: (N, classes) for a batch, (classes,) for one image. Takes the
        data set's uint8 images, float images in [0, 1] (28x28 or flattened to 784), or
        pictures that `ml.read_image` prepared."""
        from mnistlab.prediction import as_pixels, classify

        pixels, single = as_pixels(images)
        probabilities = classify(self.model, pixels, self.spec.test_shifts)
        return probabilities[0] if single else probabilities

    def evaluate(self, data: Dataset | None = None) -> dict[str, Any]:
        """Loss, accuracy, per-class accuracy and confusion matrix on the test set of `data`,
        by default the run's own data set (loaded offline from the cache, or fetched)."""
        from mnistlab import data as datamod
        from mnistlab.evaluation import evaluate

        data = data if data is not None else datamod.load(self.dataset)
        return evaluate(self.model, *data.test, self.spec.test_shifts)

    def save(self, path: str | Path) -> Path:
        """Write the run folder at `path`, atomically; an existing non-empty `path` is refused.
        Then the checkpoint of its training, if any, is removed: the run is safe."""
        path = Path(path)
        with new_folder(path) as tmp:
            self.model.save(tmp / MODEL_FILE)
            write_json(tmp / META_FILE, self.meta)
            write_json(tmp / HISTORY_JSON, self.history)
            write_text(tmp / HISTORY_CSV, history_csv(self.history))
        self.path = path
        if self.checkpoint is not None:
            self.checkpoint.remove()
            self.checkpoint = None
        return path

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        return (
            f"Run(dataset={self.dataset!r}, accuracy={self.accuracy:.4f}, "
            f"parameters={self.model.count_params():,}, epochs={self.spec.epochs}{where})"
        )


def checkpoint_path(folder: Path) -> Path:
    """Where the training of the run folder `folder` keeps its checkpoint: beside it, hidden."""
    return folder.with_name(f".{folder.name}.checkpoint")


def versions() -> dict[str, str]:
    found = {"mnistlab": __version__, "python": platform.python_version()}
    for package in ("keras", "numpy", "tensorflow-cpu", "tensorflow", "jax", "jaxlib"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


def describe_machine() -> dict[str, Any]:
    """The backend, device, package versions and time of a run, for its `run.json`."""
    import keras

    from mnistlab import backend

    return {
        "backend": keras.backend.backend(),
        "device": backend.device(),
        "versions": versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def history_csv(history: dict[str, list[float]]) -> str:
    out = io.StringIO()
    keys = list(history)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["epoch", *keys])
    for epoch, values in enumerate(zip(*(history[k] for k in keys), strict=True), start=1):
        writer.writerow([epoch, *(f"{v:.6g}" for v in values)])
    return out.getvalue()


def read_meta(path: Path) -> dict[str, Any]:
    """The `run.json` of a run folder, without loading its model."""
    path = Path(path)
    if not path.is_dir():
        raise MnistlabError(f"no run folder at {path}", NOT_A_RUN)
    try:
        meta: dict[str, Any] = json.loads(read_text(path / META_FILE, f"a run's {META_FILE}"))
    except FileNotFoundError:
        raise MnistlabError(
            f"{path} is not an mnistlab run folder (no {META_FILE})", NOT_A_RUN
        ) from None
    except ValueError as e:
        raise MnistlabError(f"{path} holds a damaged {META_FILE} ({e})", "train it again") from e
    meta = check_meta(meta, path)
    if "validation" not in meta and (path / HISTORY_JSON).is_file():  # made before it was kept
        meta["validation"] = validation(read_history(path))
    return meta


def validation(history: dict[str, list[float]]) -> dict[str, float]:
    """The last epoch's loss and accuracy on the held-out images: what a sweep chooses its
    best variant by, so that the test set is not used to choose. Empty with no held-out data."""
    return {
        key.removeprefix("val_"): float(history[key][-1])
        for key in ("val_loss", "val_accuracy")
        if history.get(key)
    }


def read_history(path: Path) -> dict[str, list[float]]:
    try:
        text = read_text(Path(path) / HISTORY_JSON, f"a run's {HISTORY_JSON}", HISTORY_LIMIT)
        values: dict[str, list[float]] = json.loads(text)
    except (OSError, ValueError) as e:
        raise MnistlabError(
            f"{path} has no readable {HISTORY_JSON} ({e})", "train the run again"
        ) from e
    return values


def load(path: str | Path) -> Run:
    """The run saved at `path`, with its model loaded, checked once here: a clear error for a
    folder that is not a run, a damaged one, or a model that does not fit its description."""
    path = Path(path)
    if not path.is_dir():
        raise MnistlabError(f"no run folder at {path}", NOT_A_RUN)
    meta_file, model_file = path / META_FILE, path / MODEL_FILE
    if not meta_file.is_file() or not model_file.is_file():
        raise MnistlabError(
            f"{path} is not an mnistlab run folder (no {META_FILE} or {MODEL_FILE})", NOT_A_RUN
        )
    meta = read_meta(path)
    spec = Spec.from_dict(meta["spec"])
    from mnistlab import backend

    backend.use(meta.get("backend"), what=f"the run {path}")
    import keras

    try:
        model = keras.saving.load_model(model_file)
    except Exception as e:  # a damaged zip, a foreign or crafted model: Keras raises many kinds
        raise damaged(path, f"{MODEL_FILE} cannot be loaded ({type(e).__name__}: {e})") from None
    check_model(model, meta, path)
    history = read_history(path) if (path / HISTORY_JSON).is_file() else {}
    return Run(
        model=model,
        spec=spec,
        dataset=meta["dataset"],
        class_names=tuple(meta["class_names"]),
        history=history,
        metrics=dict(meta["metrics"]),
        seconds=dict(meta.get("seconds", {})),
        source=str(meta.get("data_source", "")),
        validated=dict(meta.get("validation") or {}),
        info={k: meta[k] for k in INFO_KEYS if k in meta},
        path=path,
    )


def damaged(path: Path, problem: str) -> MnistlabError:
    return MnistlabError(f"{path} holds a damaged run: {problem}", "train it again")


def check_meta(meta: Any, path: Path) -> dict[str, Any]:
    """`run.json`'s contents, if they have what a run needs, of the right types."""
    from mnistlab.data import DATASETS

    if not isinstance(meta, dict):
        raise damaged(path, f"{META_FILE} is not a JSON object")
    wanted = {"dataset": str, "class_names": list, "spec": dict, "metrics": dict}
    for key, kind in wanted.items():
        if key not in meta:
            raise damaged(path, f"{META_FILE} has no {key!r}")
        if not isinstance(meta[key], kind):
            raise damaged(path, f"{META_FILE}'s {key!r} is not a {kind.__name__}")
    if meta["dataset"] not in DATASETS:
        raise damaged(path, f"{META_FILE} names an unknown data set {meta['dataset']!r}")
    names = meta["class_names"]
    if not names or not all(isinstance(n, str) for n in names):
        raise damaged(path, f"{META_FILE}'s class names are not a list of names")
    figures = meta.get("validation", {})
    if not isinstance(figures, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in figures.values()
    ):
        raise damaged(path, f"{META_FILE}'s 'validation' is not an object of numbers")
    backend_name = meta.get("backend")
    if backend_name is not None and not isinstance(backend_name, str):
        raise damaged(path, f"{META_FILE}'s 'backend' is not a name")
    try:
        Spec.from_dict(meta["spec"])
    except MnistlabError as e:
        raise damaged(path, f"its spec: {e}") from None
    return meta


def check_model(model: Any, meta: dict[str, Any], path: Path) -> None:
    """The model takes MNIST's images and answers one probability per class."""
    shapes = [tuple(model.input_shape[1:])] if hasattr(model, "input_shape") else []
    if not shapes or shapes[0] not in ((784,), (28, 28), (28, 28, 1)):
        shown = shapes[0] if shapes else "unknown"
        raise damaged(path, f"its model takes input of shape {shown}, not 784 pixels")
    outputs = model.output_shape[-1] if hasattr(model, "output_shape") else None
    if outputs != len(meta["class_names"]):
        raise damaged(
            path,
            f"its model answers {outputs} classes but {META_FILE} names {len(meta['class_names'])}",
        )


def pack(path: Path) -> dict[str, bytes]:
    """The files of a run folder, to send to another machine; `unpack` writes them back."""
    return {f.name: f.read_bytes() for f in sorted(path.iterdir()) if f.is_file()}


def unpack(files: dict[str, bytes], path: Path) -> Path:
    """Write a packed run folder at `path`, atomically."""
    if META_FILE not in files:
        raise ValueError(f"a packed run folder for {path} has no {META_FILE}")
    with new_folder(path) as tmp:
        for name, raw in files.items():
            if Path(name).name != name or name.startswith("."):
                raise ValueError(f"a packed run folder holds a file named {name!r}")
            (tmp / name).write_bytes(raw)
    return path


@dataclass(frozen=True)
class SweepFolder:
    """The layout of a sweep folder: one run folder per variant and seed, a record of each
    failed run, and the results files."""

    path: Path

    def run(self, variant: str, seed: int) -> Path:
        return self.path / "runs" / variant / f"seed-{seed}"

    def checkpoint(self, variant: str, seed: int) -> Path:
        return checkpoint_path(self.run(variant, seed))

    def failure(self, variant: str, seed: int) -> Path:
        return self.path / "failed" / f"{variant}-seed-{seed}.json"

    @property
    def failures(self) -> Path:
        return self.path / "failed"

    @property
    def results_md(self) -> Path:
        return self.path / "results.md"

    @property
    def results_csv(self) -> Path:
        return self.path / "results.csv"

    @property
    def results_json(self) -> Path:
        return self.path / "results.json"

    @property
    def accuracy_png(self) -> Path:
        return self.path / "accuracy.png"

    def finished(self, variant: str, seed: int) -> bool:
        run = self.run(variant, seed)
        return (run / META_FILE).is_file() and (run / MODEL_FILE).is_file()

    def finished_runs(self, variant: str) -> list[Path]:
        """The folders of the variant's finished runs, by seed."""
        found = (self.path / "runs" / variant).glob(f"seed-*/{META_FILE}")
        done = [f.parent for f in found if (f.parent / MODEL_FILE).is_file()]
        return sorted(done, key=lambda p: int(p.name.removeprefix("seed-")))

    @property
    def results_files(self) -> list[Path]:
        return [self.results_md, self.results_csv, self.results_json, self.accuracy_png]

    def set_aside(self, variant: str, seed: int) -> Path:
        """Rename an incomplete run folder out of the way, so the run can be made again."""
        run = self.run(variant, seed)
        aside = run.with_name(f"damaged-{run.name}-{datetime.now():%Y%m%d-%H%M%S-%f}")
        run.rename(aside)
        return aside

    def clear_stale(self) -> None:
        """Remove the temporary folders and files of runs whose process was killed while
        saving a run folder or a checkpoint; the checkpoints themselves stay, to resume from."""
        for stale in self.path.glob("runs/*/.seed-*.tmp"):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
