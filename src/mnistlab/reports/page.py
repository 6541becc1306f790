"""The report: figures and one self-contained HTML page for a run folder or a sweep folder.

make(folder, out)    # -> (index.html, [figures])
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mnistlab import runs
from mnistlab.data import Dataset
from mnistlab.errors import MnistlabError
from mnistlab.files import check_writable, read_text, write_text
from mnistlab.reports.figures import (
    SIZES,
    accuracy_by_variant,
    confusion,
    embedding,
    grid,
    history,
    mistakes,
    per_class,
    weights,
)
from mnistlab.results import Results
from mnistlab.text import plural


@dataclass(frozen=True)
class Section:
    title: str
    text: str  # HTML
    figures: tuple[Path, ...] = ()


def run_figures(run: runs.Run, data: Dataset, out: Path, prefix: str = "") -> list[Path]:
    """The figures of a run (a `runs.Run`) on the test set of `data`: samples, training curves,
    confusion matrix, per-class accuracy, most confident mistakes, the first layer's weights
    and the map of the last hidden layer. Returns their paths."""
    from mnistlab import explaining as explain
    from mnistlab.data import preprocess
    from mnistlab.evaluation import metrics
    from mnistlab.prediction import predict

    (x_train, y_train), (x_test, y_test) = data.train, data.test
    names = data.class_names
    probabilities = predict(run.model, x_test, run.spec.test_shifts)
    measured = metrics(probabilities, y_test)
    shown = min(20, len(x_train))
    chosen, places = explain.embedding(run.model, preprocess(x_test))
    return [
        grid(
            x_train[:shown],
            [f"{i}: {names[y]}" for i, y in enumerate(y_train[:shown])],
            out / f"{prefix}samples.png",
            size=SIZES["samples"],
        ),
        history(run.history, out / f"{prefix}history.png"),
        confusion(measured["confusion_matrix"], names, out / f"{prefix}confusion.png"),
        per_class(measured["per_class_accuracy"], names, out / f"{prefix}per-class.png"),
        mistakes(x_test, y_test, probabilities, names, out / f"{prefix}mistakes.png"),
        weights(*explain.first_layer(run.model), out / f"{prefix}weights.png"),
        embedding(
            places,
            y_test[chosen],
            probabilities[chosen].argmax(axis=1),
            names,
            out / f"{prefix}embedding.png",
        ),
    ]


def run_section(run: runs.Run, data: Dataset, out: Path, prefix: str = "") -> Section:
    meta = run.meta
    stored = meta["metrics"]
    spec = meta["spec"]
    layers = ", ".join(str(h) for h in spec["hidden"])
    conv = f"convolutions {spec['conv']}, " if spec.get("conv") else ""
    facts = [
        ("data set", f"{meta['dataset']} (test set: {plural(len(data.test[1]), 'image')})"),
        (
            "model",
            f"{conv}hidden {layers}, dropout {spec['dropout']}; "
            f"{meta.get('parameters', 0):,} parameters",
        ),
        (
            "training",
            f"{plural(spec['epochs'], 'epoch')}, batch {spec['batch_size']}, {spec['optimizer']} "
            f"{spec['learning_rate']}, seed {spec['seed']}, {meta['backend']}, "
            f"{meta['seconds']['train']:.1f} s",
        ),
        ("test accuracy", f"{stored['accuracy']:.2%} (loss {stored['loss']:.4f})"),
        ("run folder", str(run.path) if run.path else "not saved"),
    ]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
    figures = run_figures(run, data, out, prefix)
    name = run.path.name if run.path else "(not saved)"
    return Section(f"Run {name}", f"<table class='facts'>{rows}</table>", tuple(figures))


def results_section(results: Results, out: Path) -> Section:
    """The table of a sweep's (or a comparison's) results and its accuracy plot."""
    from mnistlab.reports.tables import html as table_html

    plot = accuracy_by_variant(
        results.rows, results.baseline, "Test accuracy by variant", out / "accuracy.png"
    )
    return Section("Results", table_html(results), (plot,))


def page(title: str, sections: Sequence[Section]) -> str:
    """One HTML page that holds everything: the figures are embedded as data URIs."""
    parts = [
        "<!doctype html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>{section.text}")
        for figure in section.figures:
            data = base64.b64encode(figure.read_bytes()).decode()
            parts.append(
                f"<figure><img alt='{html.escape(figure.stem)}' "
                f"src='data:image/png;base64,{data}'>"
                f"<figcaption>{html.escape(figure.name)}</figcaption></figure>"
            )
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;"
    "padding:3px 8px;text-align:left}.results td{white-space:nowrap}"
    ".results td:nth-child(n+2){text-align:right}.results td:last-child{text-align:left}"
    "tr.best{background:#fff3d6}figure{margin:1.5em 0}img{max-width:100%}"
    "figcaption{color:#666;font-size:0.85em}"
)


def write_page(path: Path, title: str, sections: Sequence[Section]) -> Path:
    write_text(path, page(title, sections))
    return path


def make(
    target: str | Path | Results | runs.Run,
    out: str | Path | None = None,
    load: Callable[[str], Dataset] | None = None,
) -> tuple[Path, list[Path]]:
    """The report of a run (a `Run` or its folder) or of a sweep (its `Results`, or a sweep or
    `compare --out` folder with `results.json`): the figures and `index.html` in `out`
    (default: the folder's `report/`). `load(dataset)` gives the data a run is tested on
    (default: `data.load`). For a sweep, the best variant's run on its first seed is shown too."""
    from mnistlab import data as datamod

    load = load or datamod.load
    if isinstance(target, runs.Run):
        run, folder = target, target.path
    elif isinstance(target, Results):
        run, folder = None, target.path
    else:
        run, folder = None, Path(target)
    if folder is None and not isinstance(target, runs.Run):
        raise MnistlabError("the results were not written to a folder", "pass the sweep folder")
    if out is None:
        if folder is None:
            raise MnistlabError("the run is not saved", "save it first, or pass out=FOLDER")
        out = folder / "report"
    out = Path(out)
    check_writable(out, folder=True)  # before the data is loaded and the figures drawn
    if run is None and folder is not None and (folder / runs.META_FILE).is_file():
        run = runs.load(folder)
    if run is not None:
        sections = [run_section(run, load(run.dataset), out)]
        name = run.path.name if run.path else "unsaved"
        title = f"mnistlab report: run {name} on {run.dataset}"
    else:
        assert folder is not None
        results = target if isinstance(target, Results) else read_results(folder)
        sections = [results_section(results, out)]
        best_runs = runs.SweepFolder(folder).finished_runs(results.best.variant)
        if best_runs:
            best = runs.load(best_runs[0])
            section = run_section(best, load(best.dataset), out, prefix="best-")
            title_best = f"The best variant, {results.best.variant}, on seed {best.spec.seed}"
            sections.append(Section(title_best, section.text, section.figures))
        title = f"mnistlab report: {folder.name} on {results.dataset}"
    figures = [f for s in sections for f in s.figures]
    return write_page(out / "index.html", title, sections), figures


RESULTS_LIMIT = 64 << 20  # bytes: a results.json is a few kB per variant


def read_results(folder: Path) -> Results:
    """The `results.json` of a sweep or comparison folder."""
    path = runs.SweepFolder(folder).results_json
    if not path.is_file():
        raise MnistlabError(
            f"{folder} is neither a run folder (no {runs.META_FILE}) nor a sweep folder "
            f"(no {path.name})",
            "pass a folder made by `mnistlab train`, `mnistlab experiment` or `compare --out`",
        )
    try:
        values = json.loads(read_text(path, "a results file", limit=RESULTS_LIMIT))
    except ValueError as e:
        raise MnistlabError(
            f"{path} is damaged ({e})",
            "write it again with `mnistlab experiment` (finished runs are kept)",
        ) from e
    return Results.from_json(values, folder)
