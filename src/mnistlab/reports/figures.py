"""Figures as PNG files, each written atomically: images, grids, probabilities, training curves,
the confusion matrix, per-class accuracy, the most confident mistakes, accuracy by variant, and
what is inside a model: a saliency map, the first layer's weights, the map of the last hidden
layer (`mnistlab.explaining` computes them).

The report's figures have fixed sizes in pixels (`SIZES` at `DPI`), so a page lays out the same
every time and a test can check each file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # files only, no window: works on machines without a screen

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mnistlab.errors import MnistlabError  # noqa: E402
from mnistlab.files import check_writable, writing  # noqa: E402
from mnistlab.text import plural  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from mnistlab.data import Dataset
    from mnistlab.explaining import Explanation
    from mnistlab.results import Row


DPI = 100


# Inches at DPI: the report's figures are exactly this many pixels times 100.
SIZES = {
    "samples": (10.0, 2.9),
    "history": (10.0, 3.8),
    "confusion": (7.5, 6.5),
    "per-class": (8.0, 4.0),
    "mistakes": (12.0, 4.6),
    "weights": (9.0, 9.8),
    "embedding": (9.0, 7.5),
}
EXPLANATION_SIZE = (11.0, 3.6)  # `explanation`: the image, its saliency, its probabilities


MISTAKES = 16  # the most confident wrong predictions shown
LABELLED = 100  # mistakes on the map named with the class said (the lab's model makes ~60)
MAX_GRID = 400  # images in one grid: 40 rows of 10, a figure of 13 x 60 inches


def check_png(path: Path) -> None:
    """Refuse, before any work, a path that is not a .png file that can be written."""
    if Path(path).suffix.lower() != ".png":
        raise MnistlabError(f"{path} does not end in .png", "name a .png file")
    check_writable(path)


def write_figure(figure: Figure, path: Path, exact: bool = False) -> Path:
    """Save as PNG to a temporary file beside `path`, then rename into place. `exact` keeps the
    figure's own size (a constrained layout fits it) instead of cropping it to its content."""
    try:
        check_png(path)
        with writing(path, suffix=".png") as tmp:
            figure.savefig(tmp, dpi=DPI, bbox_inches=None if exact else "tight")
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


def answer(picture: np.ndarray, answer: dict[str, Any], names: Sequence[str], path: Path) -> Path:
    """A test image's answer (`prediction.answer_test_image`): the image, titled with the
    prediction and the label, beside its probabilities."""
    title = f"predicted {answer['prediction_name']}, actual {answer['label_name']}"
    return probabilities(picture, np.asarray(answer["probabilities"]), names, title, path)


def accuracy_by_variant(rows: Sequence[Row], baseline: str, title: str, path: Path) -> Path:
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


def show_images(
    data: Dataset, path: Path, index: int = 0, count: int | None = None, split: str = "train"
) -> Path:
    """Image `index` of a data set's `split` with its label as the title ("label 5"), or
    `count` images from `index` on in a grid, each titled with its index and label."""
    check_png(path)
    images, labels = data.train if split == "train" else data.test
    if not 0 <= index < len(images):
        raise MnistlabError(
            f"index {index} is out of range: the {split} set has {plural(len(images), 'image')}",
            f"choose an index from 0 to {len(images) - 1}",
        )
    names = data.class_names
    if count is None:
        return image(images[index], f"label {names[labels[index]]}", path)
    if not 1 <= count <= MAX_GRID:
        raise MnistlabError(
            f"a grid of {count} images is out of range", f"ask for 1 to {MAX_GRID} images"
        )
    chosen = slice(index, min(index + count, len(images)))
    titles = [f"{i}: {names[y]}" for i, y in enumerate(labels[chosen], start=index)]
    return grid(images[chosen], titles, path)


def explanation(e: Explanation, title: str, path: Path) -> Path:
    """An `Explanation`: the 28x28 image the model saw, its saliency map (red pushed towards
    the answer, blue away from it; the ink's outline in black; the pixels add up to the
    probability's change from a black image), and the probability of every class."""
    figure, (seen, over, bars) = plt.subplots(
        1, 3, figsize=EXPLANATION_SIZE, width_ratios=(1, 1.25, 1.5), layout="constrained"
    )
    seen.imshow(e.pixels, cmap="gray", vmin=0, vmax=1)
    seen.set_title(title, fontsize=9)
    seen.axis("off")
    limit = float(np.abs(e.saliency).max()) or 1.0
    shown = over.imshow(e.saliency, cmap="RdBu_r", vmin=-limit, vmax=limit)
    over.contour(e.pixels, levels=[0.5], colors="black", linewidths=0.6, alpha=0.6)
    over.set_title(f"why {e.class_name}: integrated gradients", fontsize=9)
    over.set_xticks([])
    over.set_yticks([])
    figure.colorbar(shown, ax=over, shrink=0.8, pad=0.02).set_label("attribution", fontsize=8)
    colours = ["tab:blue"] * len(e.probabilities)
    colours[e.label] = "tab:orange"
    bars.barh(range(len(e.probabilities)), e.probabilities, color=colours)
    bars.set_yticks(range(len(e.probabilities)), labels=list(e.class_names), fontsize=8)
    bars.invert_yaxis()
    bars.set_xlim(0, 1)
    bars.set_xlabel("probability")
    bars.set_title(f"said {e.class_name}, {e.probability:.1%}", fontsize=9)
    return write_figure(figure, path, exact=True)


def weights(kind: str, tiles: np.ndarray, path: Path) -> Path:
    """The first layer's weights as pictures (`explain.first_layer`): for a dense layer each
    unit's 784 weights as a 28x28 image, for a convolution each filter; red positive, blue
    negative, each tile on its own scale (white is 0)."""
    columns = 8
    rows = max(1, math.ceil(len(tiles) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=SIZES["weights"], layout="constrained")
    axes = np.atleast_1d(axes).reshape(rows, columns)
    for ax in axes.flat:
        ax.axis("off")
    what = "unit" if kind == "dense" else "filter"
    for i, (ax, tile) in enumerate(zip(axes.flat, tiles, strict=False)):
        limit = float(np.abs(tile).max()) or 1.0
        ax.imshow(tile, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"{what} {i}", fontsize=7)
    side = f"{tiles.shape[1]}x{tiles.shape[2]}" if len(tiles) else ""
    layer = "Dense" if kind == "dense" else "convolution"
    figure.suptitle(
        f"The first layer's weights: the first {plural(len(tiles), what)} of the {layer} "
        f"layer, each as {side}\nred positive, blue negative, white 0; each on its own scale"
    )
    return write_figure(figure, path, exact=True)


def embedding(
    places: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    names: Sequence[str],
    path: Path,
) -> Path:
    """A 2-D map of test images by the last hidden layer (`explain.embedding`), each a dot of
    its true class's colour; the mistakes ringed in black, with the class said."""
    figure, ax = plt.subplots(figsize=SIZES["embedding"], layout="constrained")
    colours = plt.get_cmap("tab10")
    for c, name in enumerate(names):
        mine = labels == c
        x, y = places[mine].T
        ax.scatter(x, y, s=6, color=colours(c % 10), label=name, alpha=0.7)
    wrong = np.flatnonzero(predicted != labels)
    ax.scatter(
        places[wrong, 0],
        places[wrong, 1],
        s=40,
        facecolors="none",
        edgecolors="black",
        linewidths=0.9,
        label=f"mistakes ({len(wrong)})",
    )
    for i in wrong[:LABELLED]:  # what was said: beyond LABELLED the names would cover the map
        ax.annotate(
            names[predicted[i]],
            places[i],
            fontsize=6,
            xytext=(3, 3),
            ha="left",
            textcoords="offset points",
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(
        f"The last hidden layer of {plural(len(labels), 'test image')} drawn in 2-D by t-SNE\n"
        "coloured by true class; mistakes ringed, with the class the model said"
    )
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, markerscale=2)
    return write_figure(figure, path, exact=True)
