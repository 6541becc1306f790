"""Run folders: everything needed to rebuild, evaluate and predict from the folder alone.

A run folder holds `model.keras`, `run.json` (spec, data set, class names, preprocessing,
test metrics, seconds, versions), `history.json` and `history.csv`. It is written in a
temporary folder beside its destination and renamed into place when complete, so a failed or
interrupted run never leaves a half-written folder and never touches an existing one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistlab import __version__, backend
from mnistlab.data import atomic_write
from mnistlab.errors import MnistlabError
from mnistlab.spec import Spec

if TYPE_CHECKING:  # Keras is imported where it is used, after the backend is chosen
    import keras

PREPROCESSING = "pixels / 255 as float32, 28x28 flattened to 784"
MODEL_FILE = "model.keras"
META_FILE = "run.json"


@dataclass(frozen=True)
class Run:
    path: Path
    model: keras.Model
    spec: Spec
    meta: dict[str, Any]

    @property
    def dataset(self) -> str:
        return str(self.meta["dataset"])

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])


def versions() -> dict[str, str]:
    found = {"mnistlab": __version__, "python": platform.python_version()}
    for package in ("keras", "numpy", "tensorflow-cpu", "tensorflow", "jax", "jaxlib"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


def check_new(path: Path) -> None:
    """Refuse a destination that holds anything, before any work is done."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise MnistlabError(
            f"{path} already exists and is not empty", "choose another --out, or remove it"
        )


def history_csv(history: dict[str, list[float]]) -> str:
    out = io.StringIO()
    keys = list(history)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["epoch", *keys])
    for epoch, values in enumerate(zip(*(history[k] for k in keys), strict=True), start=1):
        writer.writerow([epoch, *(f"{v:.6g}" for v in values)])
    return out.getvalue()


def save(
    path: Path,
    model: keras.Model,
    spec: Spec,
    dataset: str,
    class_names: tuple[str, ...] | list[str],
    history: dict[str, list[float]],
    metrics: dict[str, Any],
    seconds: dict[str, float],
    source: str,
) -> Path:
    """Write a complete run folder at `path`, atomically."""
    import keras

    check_new(path)
    meta = {
        "dataset": dataset,
        "class_names": list(class_names),
        "preprocessing": PREPROCESSING,
        "spec": spec.to_dict(),
        "parameters": model.count_params(),
        "metrics": metrics,
        "seconds": seconds,
        "data_source": source,
        "backend": keras.backend.backend(),
        "device": backend.device(),
        "versions": versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with new_folder(path) as tmp:
        model.save(tmp / MODEL_FILE)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / "history.json").write_text(json.dumps(history, indent=2) + "\n")
        (tmp / "history.csv").write_text(history_csv(history))
    return path


@contextlib.contextmanager
def new_folder(path: Path) -> Iterator[Path]:
    """A temporary folder beside `path` to fill, renamed to `path` when the block ends well
    and removed when it does not. Refuses a `path` that holds anything."""
    check_new(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if path.is_dir():
            path.rmdir()  # empty, checked above
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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


def write_json(path: Path, value: Any) -> None:
    write_text(path, json.dumps(value, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    atomic_write(path, text.encode())


def read_meta(path: Path) -> dict[str, Any]:
    """The `run.json` of a run folder, without loading its model."""
    if not path.is_dir():
        raise MnistlabError(f"no run folder at {path}", "pass a folder made by `mnistlab train`")
    try:
        meta: dict[str, Any] = json.loads((path / META_FILE).read_text())
    except FileNotFoundError:
        raise MnistlabError(
            f"{path} is not an mnistlab run folder (no {META_FILE})",
            "pass a folder made by `mnistlab train`",
        ) from None
    except ValueError as e:
        raise MnistlabError(f"{path} holds a damaged {META_FILE} ({e})", "train it again") from e
    return meta


def load(path: Path) -> Run:
    """The run at `path`, with its model loaded; a clear error for anything else."""
    if not path.is_dir():
        raise MnistlabError(f"no run folder at {path}", "pass a folder made by `mnistlab train`")
    meta_file, model_file = path / META_FILE, path / MODEL_FILE
    if not meta_file.is_file() or not model_file.is_file():
        raise MnistlabError(
            f"{path} is not an mnistlab run folder (no {META_FILE} or {MODEL_FILE})",
            "pass a folder made by `mnistlab train`",
        )
    try:
        meta = json.loads(meta_file.read_text())
        spec = Spec.from_dict(meta["spec"])
        import keras

        model = keras.saving.load_model(model_file)
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise MnistlabError(
            f"{path} holds a damaged run ({type(e).__name__}: {e})", "train it again"
        ) from e
    return Run(path, model, spec, meta)
