"""Figures and the report page: PNG files written atomically, and one self-contained HTML page.

    report.run_report(run, data, out)        # a run folder: samples, curves, confusions, mistakes
    report.results_report(folder, out, best)  # a sweep: the results table and accuracy plot too

The report's figures have fixed sizes in pixels (`SIZES` at `DPI`), so a page lays out the same
every time and a test can check each file.
"""

import base64
import html
import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no window: works on machines without a screen

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mnistlab.data import Dataset, atomic_write  # noqa: E402
from mnistlab.errors import MnistlabError  # noqa: E402

DPI = 100
# Inches at DPI: the report's figures are exactly this many pixels times 100.
SIZES = {
    "samples": (10.0, 2.9),
    "history": (10.0, 3.8),
    "confusion": (7.5, 6.5),
    "per-class": (8.0, 4.0),
    "mistakes": (12.0, 4.6),
}
MISTAKES = 16  # the most confident wrong predictions shown


def write_figure(figure: Figure, path: Path, exact: bool = False) -> Path:
    """Save as PNG to a temporary file beside `path`, then rename into place. `exact` keeps the
    figure's own size (a constrained layout fits it) instead of cropping it to its content."""
    if path.suffix.lower() != ".png":
        raise MnistlabError(f"{path} does not end in .png", "name a .png file")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        figure.savefig(tmp, dpi=DPI, bbox_inches=None if exact else "tight")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(figure)
    return path


def image(picture: np.ndarray, title: str, path: Path) -> Path:
    """One 28x28 image, grey on black as MNIST stores it, with a title."""
    figure, ax = plt.subplots(figsize=(3, 3.3))
    ax.imshow(picture, cmap="gray", vmin=0, vmax=255 if picture.dtype == np.uint8 else 1)
    ax.set_title(title)
    ax.axis("off")
    return write_figure(figure, path)


def grid(
    images: np.ndarray,
    titles: Sequence[str],
    path: Path,
    columns: int = 10,
    size: tuple[float, float] | None = None,
) -> Path:
    """Images in a grid, each with its title; `size` (inches) fixes the figure's size."""
    columns = min(len(images), columns)
    rows = math.ceil(len(images) / columns)
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=size or (1.3 * columns, 1.5 * rows),
        squeeze=False,
        layout="constrained" if size else None,
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, picture, title in zip(axes.flat, images, titles, strict=False):
        ax.imshow(picture, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=8)
    return write_figure(figure, path, exact=size is not None)


def probabilities(
    picture: np.ndarray, probs: np.ndarray, names: Sequence[str], title: str, path: Path
) -> Path:
    """The image beside a bar for each class's probability."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(7, 3), width_ratios=(1, 1.6))
    left.imshow(picture, cmap="gray", vmin=0, vmax=255)
    left.set_title(title)
    left.axis("off")
    colours = ["tab:blue"] * len(probs)
    colours[int(np.argmax(probs))] = "tab:orange"
    right.barh(range(len(probs)), probs, color=colours)
    right.set_yticks(range(len(probs)), labels=list(names))
    right.invert_yaxis()
    right.set_xlim(0, 1)
    right.set_xlabel("probability")
    return write_figure(figure, path)


def accuracy_by_variant(rows: Sequence[Any], baseline: str, title: str, path: Path) -> Path:
    """Mean test accuracy of each variant with error bars of one standard deviation, each
    seed's result as a dot, and the baseline's mean as a dashed line."""
    figure, ax = plt.subplots(figsize=accuracy_size(len(rows)), layout="constrained")
    positions = np.arange(len(rows))
    means = [100 * r.mean for r in rows]
    ax.errorbar(
        positions,
        means,
        yerr=[100 * r.std for r in rows],
        fmt="o",
        capsize=5,
        color="tab:blue",
        label="mean ± std over seeds",
    )
    for x, row in zip(positions, rows, strict=True):
        ax.scatter(
            [x + 0.12] * len(row.accuracies),
            [100 * a for a in row.accuracies],
            s=10,
            color="tab:gray",
            zorder=3,
        )
    base = next((r for r in rows if r.variant == baseline), None)
    if base is not None:
        ax.axhline(100 * base.mean, color="tab:orange", linestyle="--", label="baseline mean")
    ax.set_xticks(positions, labels=[r.variant for r in rows], rotation=30, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return write_figure(figure, path, exact=True)


def accuracy_size(variants: int) -> tuple[float, float]:
    """Inches of the accuracy-by-variant plot: wider with more variants."""
    return (max(5.0, 0.9 * variants + 2), 4.0)


def history(values: dict[str, list[float]], path: Path) -> Path:
    """Loss and accuracy per epoch, on the training part and on the held-out validation part."""
    figure, axes = plt.subplots(1, 2, figsize=SIZES["history"], layout="constrained")
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        curves = ((metric, "training", "-o"), (f"val_{metric}", "validation", "--o"))
        for key, label, style in curves:
            if key in values:
                epochs = range(1, len(values[key]) + 1)
                ax.plot(epochs, values[key], style, label=label, markersize=4)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} per epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return write_figure(figure, path, exact=True)


def confusion(matrix: Sequence[Sequence[int]], names: Sequence[str], path: Path) -> Path:
    """The confusion matrix: rows the true class, columns the predicted one, counts written in."""
    counts = np.asarray(matrix)
    figure, ax = plt.subplots(figsize=SIZES["confusion"], layout="constrained")
    shown = ax.imshow(counts, cmap="Blues", norm=matplotlib.colors.PowerNorm(0.4))
    figure.colorbar(shown, ax=ax, shrink=0.8, label="test images")
    high = counts.max() if counts.size else 0
    for (row, col), count in np.ndenumerate(counts):
        if count:
            colour = "white" if count > high / 3 else "black"
            ax.text(col, row, str(count), ha="center", va="center", fontsize=7, color=colour)
    ticks = range(len(names))
    ax.set_xticks(ticks, labels=list(names), rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, labels=list(names), fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix on the test set")
    return write_figure(figure, path, exact=True)


def per_class(accuracies: Sequence[float], names: Sequence[str], path: Path) -> Path:
    """Test accuracy of each class, the overall mean as a line."""
    figure, ax = plt.subplots(figsize=SIZES["per-class"], layout="constrained")
    percent = [100 * a for a in accuracies]
    bars = ax.bar(range(len(percent)), percent, color="tab:blue")
    worst = int(np.argmin(percent)) if percent else 0
    if percent:
        bars[worst].set_color("tab:orange")
    for x, value in enumerate(percent):
        ax.text(x, value, f"{value:.1f}", ha="center", va="bottom", fontsize=7)
    low = min(percent, default=0)
    ax.set_ylim(max(0.0, low - 5), 100.5)
    ax.set_xticks(range(len(names)), labels=list(names), rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy per class (the weakest in orange)")
    ax.grid(axis="y", alpha=0.3)
    return write_figure(figure, path, exact=True)


def confident_mistakes(
    labels: np.ndarray, probabilities: np.ndarray, count: int = MISTAKES
) -> list[int]:
    """Indices of the wrong predictions made with the highest probability, most confident
    first (ties by index)."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    order = np.lexsort((wrong, -confidence))
    return [int(i) for i in wrong[order][:count]]


def mistakes(
    images: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    names: Sequence[str],
    path: Path,
) -> Path:
    """The most confident mistakes, each with its index, true label and predicted label."""
    chosen = confident_mistakes(labels, probabilities)
    figure, axes = plt.subplots(2, MISTAKES // 2, figsize=SIZES["mistakes"], layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, chosen, strict=False):
        guess = int(probabilities[index].argmax())
        ax.imshow(images[index], cmap="gray", vmin=0, vmax=255)
        ax.set_title(
            f"#{index} true {names[labels[index]]}\n"
            f"said {names[guess]} {probabilities[index, guess]:.0%}",
            fontsize=7,
        )
    if not chosen:
        axes.flat[0].text(0, 0.5, "no mistakes on the test set", fontsize=10)
    figure.suptitle("The most confident mistakes on the test set")
    return write_figure(figure, path, exact=True)


# ---------------------------------------------------------------------------------------------
# The report: figures and one HTML page


@dataclass(frozen=True)
class Section:
    title: str
    text: str  # HTML
    figures: tuple[Path, ...] = ()


def run_figures(run: Any, data: Dataset, out: Path, prefix: str = "") -> list[Path]:
    """The figures of a run (a `runs.Run`) on the test set of `data`: samples, training curves,
    confusion matrix, per-class accuracy, most confident mistakes. Returns their paths."""
    from mnistlab.evaluate import metrics
    from mnistlab.predict import predict

    (x_train, y_train), (x_test, y_test) = data.train, data.test
    names = data.class_names
    probabilities = predict(run.model, x_test)
    measured = metrics(probabilities, y_test)
    shown = min(20, len(x_train))
    return [
        grid(
            x_train[:shown],
            [f"{i}: {names[y]}" for i, y in enumerate(y_train[:shown])],
            out / f"{prefix}samples.png",
            size=SIZES["samples"],
        ),
        history(read_history(run.path), out / f"{prefix}history.png"),
        confusion(measured["confusion_matrix"], names, out / f"{prefix}confusion.png"),
        per_class(measured["per_class_accuracy"], names, out / f"{prefix}per-class.png"),
        mistakes(x_test, y_test, probabilities, names, out / f"{prefix}mistakes.png"),
    ]


def read_history(run_dir: Path) -> dict[str, list[float]]:
    try:
        values: dict[str, list[float]] = json.loads((run_dir / "history.json").read_text())
    except (OSError, ValueError) as e:
        raise MnistlabError(
            f"{run_dir} has no readable history.json ({e})", "train the run again"
        ) from e
    return values


def run_section(run: Any, data: Dataset, out: Path, prefix: str = "") -> Section:
    meta = run.meta
    stored = meta["metrics"]
    spec = meta["spec"]
    layers = ", ".join(str(h) for h in spec["hidden"])
    conv = f"convolutions {spec['conv']}, " if spec.get("conv") else ""
    facts = [
        ("data set", f"{meta['dataset']} (test set: {len(data.test[1]):,} images)"),
        (
            "model",
            f"{conv}hidden {layers}, dropout {spec['dropout']}; "
            f"{meta.get('parameters', 0):,} parameters",
        ),
        (
            "training",
            f"{spec['epochs']} epochs, batch {spec['batch_size']}, {spec['optimizer']} "
            f"{spec['learning_rate']}, seed {spec['seed']}, {meta['backend']}, "
            f"{meta['seconds']['train']:.1f} s",
        ),
        ("test accuracy", f"{stored['accuracy']:.2%} (loss {stored['loss']:.4f})"),
        ("run folder", str(run.path)),
    ]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
    figures = run_figures(run, data, out, prefix)
    return Section(f"Run {run.path.name}", f"<table class='facts'>{rows}</table>", tuple(figures))


def results_section(results: dict[str, Any], out: Path) -> Section:
    """The table of a sweep's (or a comparison's) `results.json` and its accuracy plot."""
    from mnistlab.experiments import Row, fmt_p

    rows = [
        Row(
            variant=r["variant"],
            parameters=r["parameters"],
            epochs=r["epochs"],
            accuracies=tuple(r["accuracies"]),
            seeds=tuple(r["seeds"]),
            seconds=r["mean_seconds"],
            difference=math.nan if r["difference"] is None else r["difference"],
            p_value=math.nan if r["p_value"] is None else r["p_value"],
            verdict=r["verdict"],
        )
        for r in results["rows"]
    ]
    baseline = results["baseline"]
    head = (
        "<tr><th>variant</th><th>parameters</th><th>epochs</th><th>test accuracy</th>"
        "<th>min</th><th>max</th><th>seeds</th><th>mean seconds</th><th>vs baseline</th>"
        "<th>Welch p</th><th>verdict</th></tr>"
    )
    body = []
    for r in rows:
        base = r.variant == baseline
        cells = [
            r.variant,
            f"{r.parameters:,}",
            str(r.epochs),
            f"{r.mean:.2%} ± {r.std * 100:.2f}",
            f"{min(r.accuracies):.2%}",
            f"{max(r.accuracies):.2%}",
            str(len(r.accuracies)),
            f"{r.seconds:.1f}",
            "baseline" if base else f"{r.difference * 100:+.2f} pts",
            "" if base else fmt_p(r.p_value),
            r.verdict,
        ]
        style = " class='best'" if r.variant == results["best"] else ""
        body.append(f"<tr{style}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    top = next(r for r in rows if r.variant == results["best"])
    text = (
        f"<p>Data set {html.escape(str(results['dataset']))}; seeds "
        f"{html.escape(str(results['seeds']))}; {results['runs']} runs; machine: "
        f"{html.escape(str(results['machine']))}.</p>"
        f"<table class='results'>{head}{''.join(body)}</table>"
        f"<p>Best: <b>{html.escape(top.variant)}</b>, {top.mean:.2%} ± {top.std * 100:.2f} over "
        f"{len(top.accuracies)} seeds. {html.escape(str(results['test']))}; a difference "
        "counts at p &lt; 0.05.</p>"
    )
    plot = accuracy_by_variant(rows, baseline, "Test accuracy by variant", out / "accuracy.png")
    return Section("Results", text, (plot,))


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
    atomic_write(path, page(title, sections).encode())
    return path


RESULTS_FILE = "results.json"


def make(folder: Path, out: Path, load: Callable[[str], Dataset]) -> tuple[Path, list[Path]]:
    """The report of a run folder, or of a sweep (or comparison) folder with its `results.json`:
    the figures and `index.html` in `out`. `load(dataset)` gives the data a run is tested on.
    For a sweep, the best variant's run on its first seed is shown as well."""
    from mnistlab import runs

    if (folder / runs.META_FILE).is_file():
        run = runs.load(folder)
        sections = [run_section(run, load(run.dataset), out)]
        title = f"mnistlab report: run {folder.name} on {run.dataset}"
    elif (folder / RESULTS_FILE).is_file():
        try:
            results = json.loads((folder / RESULTS_FILE).read_text())
            sections = [results_section(results, out)]
        except (ValueError, KeyError, TypeError, StopIteration) as e:
            raise MnistlabError(
                f"{folder / RESULTS_FILE} is damaged ({type(e).__name__}: {e})",
                "write it again with `mnistlab experiment FILE` (finished runs are kept)",
            ) from e
        best_runs = sorted(
            (folder / "runs" / results["best"]).glob("seed-*/run.json"),
            key=lambda p: int(p.parent.name.removeprefix("seed-")),
        )
        if best_runs:
            run = runs.load(best_runs[0].parent)
            section = run_section(run, load(run.dataset), out, prefix="best-")
            title_best = f"The best variant, {results['best']}, on seed {run.spec.seed}"
            sections.append(Section(title_best, section.text, section.figures))
        title = f"mnistlab report: {folder.name} on {results['dataset']}"
    else:
        raise MnistlabError(
            f"{folder} is neither a run folder (no run.json) nor a sweep folder "
            f"(no {RESULTS_FILE})",
            "pass a folder made by `mnistlab train`, `mnistlab experiment` or `compare --out`",
        )
    figures = [f for s in sections for f in s.figures]
    return write_page(out / "index.html", title, sections), figures
