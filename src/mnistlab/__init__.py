"""mnistlab: the MNIST lab with Keras, as a library and a command.

    import mnistlab as ml
    ds = ml.load("mnist")                                  # offline, verified, cached
    run = ml.train(ml.preset("lab", epochs=10), ds)        # a Run: model, history, metrics
    run.evaluate(); run.predict(ds.test[0][:5]); run.save("runs/mine")
    results = ml.run_experiment("lab", seeds=5)            # resumable; the results table
    tuned = ml.tune("lab-space", minutes=30)               # chosen on validation, then tested
    ml.explain(run, "seven.png").saliency                  # which pixels made the answer
    ml.finetune(run, "corrections/")                       # learn from the page's corrections
    ml.check("alice.ipynb").passed                         # a student's hand-in, not run
    ml.export("runs/mine", "onnx", "runs/mine-onnx")       # ONNX, checked against Keras

Importing mnistlab is cheap and picks no Keras backend: the names below load their modules
when first used, and training follows the backend Keras runs (else `$KERAS_BACKEND`, else JAX).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mnistlab.version import __version__

# public name -> (module, attribute)
API = {
    "load": ("mnistlab.data", "load"),
    "Dataset": ("mnistlab.data", "Dataset"),
    "datasets": ("mnistlab.datasets", None),
    "Spec": ("mnistlab.spec", "Spec"),
    "preset": ("mnistlab.spec", "preset"),
    "PRESETS": ("mnistlab.spec", "PRESETS"),
    "build": ("mnistlab.models", "build"),
    "train": ("mnistlab.training", "train"),
    "Run": ("mnistlab.runs", "Run"),
    "load_run": ("mnistlab.runs", "load"),
    "evaluate": ("mnistlab.evaluation", "evaluate"),
    "predict": ("mnistlab.prediction", "predict"),
    "read_image": ("mnistlab.images", "read_image"),
    "explain": ("mnistlab.explaining", "explain"),
    "Explanation": ("mnistlab.explaining", "Explanation"),
    "finetune": ("mnistlab.finetuning", "finetune"),
    "FinetuneResult": ("mnistlab.finetuning", "FinetuneResult"),
    "read": ("mnistlab.reading", "read"),
    "reader": ("mnistlab.reading", "reader"),
    "run_experiment": ("mnistlab.experiments", "run_experiment"),
    "tune": ("mnistlab.tuning", "tune"),
    "list_experiments": ("mnistlab.experiments", "names"),
    "compare_runs": ("mnistlab.results", "compare_runs"),
    "Results": ("mnistlab.results", "Results"),
    "report": ("mnistlab.reports", "report"),
    "check": ("mnistlab.notebook.check", "check"),
    "MnistlabError": ("mnistlab.errors", "MnistlabError"),
    "export": ("mnistlab.exports", "export"),
    "ExportReport": ("mnistlab.exports", "ExportReport"),
}
__all__ = [
    "Dataset",
    "Explanation",
    "ExportReport",
    "FinetuneResult",
    "MnistlabError",
    "PRESETS",
    "Results",
    "Run",
    "Spec",
    "__version__",
    "build",
    "check",
    "compare_runs",
    "datasets",
    "evaluate",
    "explain",
    "export",
    "finetune",
    "list_experiments",
    "load",
    "load_run",
    "predict",
    "preset",
    "read",
    "read_image",
    "reader",
    "report",
    "run_experiment",
    "train",
    "tune",
]

if TYPE_CHECKING:
    from mnistlab import datasets
    from mnistlab.data import Dataset, load
    from mnistlab.errors import MnistlabError
    from mnistlab.evaluation import evaluate
    from mnistlab.experiments import names as list_experiments
    from mnistlab.experiments import run_experiment
    from mnistlab.explaining import Explanation, explain
    from mnistlab.exports import ExportReport, export
    from mnistlab.finetuning import FinetuneResult, finetune
    from mnistlab.images import read_image
    from mnistlab.models import build
    from mnistlab.notebook.check import check
    from mnistlab.prediction import predict
    from mnistlab.reading import read, reader
    from mnistlab.reports import report
    from mnistlab.results import Results, compare_runs
    from mnistlab.runs import Run
    from mnistlab.runs import load as load_run
    from mnistlab.spec import PRESETS, Spec, preset
    from mnistlab.training import train
    from mnistlab.tuning import tune


def __getattr__(name: str) -> Any:
    if name not in API:
        raise AttributeError(f"module 'mnistlab' has no attribute {name!r}")
    module, attribute = API[name]
    value = importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
