"""Exports that run without Python's Keras: ONNX, LiteRT, TensorFlow SavedModel, and a static web
page that reads digits drawn in the browser. Each export is checked, not trusted.

    report = ml.export("runs/mine", "onnx", "exports/mine-onnx", quantize=True)
    report.passed                    # every float model chose Keras's class on every test image
    report.models[0].check.differing # images whose class differs from Keras's (0 for float)

`export(run_or_dir, format, out)` converts the run's model with Keras's own exporters
(`model.export(path, format=...)`), writes `export.json` beside it (the input it expects, the
preprocessing, the class names, the mnistlab version and the source run), then runs every model
it wrote on the whole test set through the model's own runtime (ONNX Runtime, LiteRT's
interpreter, TensorFlow for a SavedModel; the web page's ONNX file through ONNX Runtime) and
compares each with Keras: how many images get another class, and the largest difference in a
probability. `quantize=True` adds an int8 model (ONNX, LiteRT) beside the float one, with its
size and test accuracy.

Keras's LiteRT and SavedModel exporters need the TensorFlow backend, and its ONNX exporter on
TensorFlow uses tf2onnx (on JAX it needs jax2onnx, which brings Flax, Orbax and 20 more
packages), so the conversion runs on TensorFlow: in this process when Keras runs TensorFlow or is
not imported yet, else in a child process (Keras runs one backend per process). A model trained
on JAX loads on TensorFlow unchanged. Needs `pip install 'mnistlab[export]'`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistlab.errors import MnistlabError

if TYPE_CHECKING:
    from mnistlab.data import Dataset
    from mnistlab.runs import Run

Log = Callable[[str], None]

FORMATS = ("onnx", "litert", "saved_model", "web")
QUANTIZABLE = ("onnx", "litert")
META_FILE = "export.json"
# What each format needs beyond mnistlab's core, and the package that brings it
NEEDS = {
    "onnx": ("tensorflow", "tf2onnx", "onnx", "onnxruntime"),
    "litert": ("tensorflow", "ai_edge_litert"),
    "saved_model": ("tensorflow",),
    "web": ("tensorflow", "tf2onnx", "onnx", "onnxruntime"),
}
# The targets of --quantize (issue 16): at least 3x smaller, at most 0.1 points of accuracy lost
SMALLER = 3.0
POINTS = 0.1


@dataclass(frozen=True)
class Check:
    """An exported model run by its own runtime on a whole test set, beside Keras."""

    runtime: str  # e.g. "onnxruntime 1.32.0"
    images: int
    differing: int  # images whose most likely class differs from Keras's
    max_difference: float  # the largest absolute difference in one probability
    accuracy: float  # the export's own test accuracy
    keras_accuracy: float


@dataclass(frozen=True)
class Exported:
    """One model file (or SavedModel folder) an export wrote, its size and its check."""

    path: Path
    bytes: int
    int8: bool
    check: Check

    @property
    def passed(self) -> bool:
        """A float model must choose Keras's class for every image; an int8 one may not."""
        return self.int8 or self.check.differing == 0


@dataclass(frozen=True)
class ExportReport:
    """What `export` wrote and what its checks found: `models` has the float model first,
    then the int8 one with `quantize`."""

    format: str
    run: Path | None
    out: Path
    meta: Path
    models: tuple[Exported, ...]
    folder_bytes: int
    dataset: str
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # the web page's runtime, for one

    @property
    def passed(self) -> bool:
        return all(m.passed for m in self.models)

    @property
    def float_model(self) -> Exported:
        return self.models[0]

    @property
    def int8_model(self) -> Exported | None:
        return next((m for m in self.models if m.int8), None)

    def quantize_targets(self) -> tuple[bool, bool] | None:
        """Whether the int8 model is at least SMALLER times smaller, and loses at most POINTS
        points of test accuracy against the float model; None without one."""
        small = self.int8_model
        if small is None:
            return None
        ratio = self.float_model.bytes / small.bytes
        lost = 100 * (self.float_model.check.accuracy - small.check.accuracy)
        return ratio >= SMALLER, lost <= POINTS

    def to_dict(self) -> dict[str, Any]:
        value = asdict(self)
        return json.loads(json.dumps(value, default=str))

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> ExportReport:
        models = tuple(
            Exported(Path(m["path"]), m["bytes"], m["int8"], Check(**m["check"]))
            for m in value["models"]
        )
        run = Path(value["run"]) if value.get("run") else None
        return cls(
            value["format"],
            run,
            Path(value["out"]),
            Path(value["meta"]),
            models,
            value["folder_bytes"],
            value["dataset"],
            value.get("seconds", 0.0),
            value.get("extra", {}),
        )


def export(
    run_or_dir: Run | str | Path,
    format: str,
    out: str | Path,
    quantize: bool = False,
    data: Dataset | None = None,
    progress: Log = lambda message: None,
) -> ExportReport:
    """Export a run (a `Run`, or a run folder) as `format` into the new folder `out`, then check
    every model written against Keras on the test set of `data` (default: the run's own data
    set). The report says whether the checks held (`passed`); the folder is written either way,
    so a failed check can be looked into."""
    check_request(format, quantize)
    out = Path(out)
    from mnistlab.files import check_new

    if isinstance(run_or_dir, str | Path):
        from mnistlab.runs import read_meta

        read_meta(Path(run_or_dir))  # a clear error for a folder that is not a run, at once
    check_new(out)
    missing = [name for name in NEEDS[format] if not installed(name)]
    if missing:
        raise MnistlabError(
            f"exporting to {format} needs {', '.join(missing)}, which is not installed",
            "install the export extra: pip install 'mnistlab[export]'",
        )
    from mnistlab import backend

    running = backend.running()
    if running in (None, "tensorflow"):
        from mnistlab.exports.convert import export_here

        return export_here(run_or_dir, format, out, quantize, data, progress)
    return export_in_child(run_or_dir, format, out, quantize, data, progress)


def check_request(format: str, quantize: bool) -> None:
    if format not in FORMATS:
        raise MnistlabError(
            f"{format!r} is not an export format", f"choose one of: {', '.join(FORMATS)}"
        )
    if quantize and format not in QUANTIZABLE:
        raise MnistlabError(
            f"--quantize is for {' and '.join(QUANTIZABLE)}, not {format}",
            f"leave it out, or export to {' or '.join(QUANTIZABLE)}",
        )


def installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def export_in_child(
    run_or_dir: Run | str | Path,
    format: str,
    out: Path,
    quantize: bool,
    data: Dataset | None,
    progress: Log,
) -> ExportReport:
    """The export in a child process on TensorFlow (`python -m mnistlab.exports`), for a
    process whose Keras runs another backend. Its progress lines come back to `progress`."""
    with tempfile.TemporaryDirectory(prefix="mnistlab-export-") as tmp:
        folder = run_folder_of(run_or_dir, Path(tmp))
        command = [sys.executable, "-m", "mnistlab.exports", str(folder), format, str(out)]
        if quantize:
            command.append("--quantize")
        if data is not None:
            import numpy as np

            arrays = Path(tmp) / "data.npz"
            (x_train, y_train), (x_test, y_test) = data
            np.savez(arrays, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
            described = {"class_names": list(data.class_names), "source": data.source}
            (Path(tmp) / "data.json").write_text(json.dumps(described | {"name": data.name}))
            command += ["--data", str(arrays)]
        env = os.environ | {"KERAS_BACKEND": "tensorflow"}
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as child:
            assert child.stdout is not None
            answer: dict[str, Any] = {}
            for line in child.stdout:
                try:
                    message = json.loads(line)
                except ValueError:  # a native library's own print: passed on as it came
                    sys.stderr.write(line)
                    continue
                if "progress" in message:
                    progress(message["progress"])
                else:
                    answer = message
        if "error" in answer:
            raise MnistlabError(answer["error"], answer.get("fix", ""))
        if child.returncode or "report" not in answer:
            raise RuntimeError(f"the export's child process failed (exit {child.returncode})")
        return ExportReport.from_dict(answer["report"])


def run_folder_of(run_or_dir: Run | str | Path, tmp: Path) -> Path:
    """The run's folder: its own, or one saved for it in `tmp`."""
    if isinstance(run_or_dir, str | Path):
        return Path(run_or_dir)
    if run_or_dir.path is not None and run_or_dir.path.is_dir():
        return run_or_dir.path
    # A copy saves: the caller's Run keeps its path and its checkpoint
    return replace(run_or_dir, path=None, checkpoint=None).save(tmp / "run")
