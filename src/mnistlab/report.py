"""Figures: images with their labels, as PNG files written atomically."""

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no window: works on machines without a screen

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mnistlab.errors import MnistlabError  # noqa: E402


def write_figure(figure: Figure, path: Path) -> Path:
    """Save as PNG to a temporary file beside `path`, then rename into place."""
    if path.suffix.lower() != ".png":
        raise MnistlabError(f"{path} does not end in .png", "name a .png file")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        figure.savefig(tmp, dpi=100, bbox_inches="tight")
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


def grid(images: np.ndarray, titles: Sequence[str], path: Path) -> Path:
    """Images in a grid, each with its title."""
    columns = min(len(images), 10)
    rows = math.ceil(len(images) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, picture, title in zip(axes.flat, images, titles, strict=False):
        ax.imshow(picture, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=8)
    return write_figure(figure, path)


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
    figure, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(rows) + 2), 4))
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
    return write_figure(figure, path)
