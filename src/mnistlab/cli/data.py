"""`mnistlab data info|show|verify`: fetch, check and look at the data sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from mnistlab.cli.common import (
    DATASETS,
    MAX_GRID,
    Argument,
    Group,
    data_options,
    load_data,
    say,
)
from mnistlab.errors import MnistlabError
from mnistlab.text import plural


@click.group(cls=Group)
def data() -> None:
    """Fetch, check and look at the data sets."""


DATASET = click.argument("dataset", type=click.Choice(DATASETS), metavar="DATASET")


@data.command()
@DATASET
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@data_options
def info(dataset: str, as_json: bool, data_dir: Path | None, offline: bool) -> None:
    """The four array shapes, class counts, pixel range, source and checksums.

    DATASET: mnist or fashion-mnist.
    """
    from mnistlab.data import summary

    facts = summary(load_data(dataset, data_dir, offline))
    if as_json:
        say(json.dumps(facts, indent=2))
        return
    print_info(dataset, facts)


def print_info(dataset: str, facts: dict[str, Any]) -> None:
    shapes = facts["shapes"]
    say(f"Data set: {dataset}")
    for key in ("x_train", "y_train", "x_test", "y_test"):
        say(f"{key + ' shape:':16}{tuple(shapes[key])}")
    low, high = facts["pixel_range"]
    say(
        f"Pixel values:   {facts['dtype']} from {low} to {high} "
        f"(mean / 255 = {facts['mean_pixel']})"
    )
    names = facts["class_names"]
    if names != [str(i) for i in range(len(names))]:
        say("Classes:        " + ", ".join(f"{i} {n}" for i, n in enumerate(names)))
    else:
        say(f"Classes:        the digits 0 to {len(names) - 1}")
    say(f"Train counts:   {facts['train_counts']}")
    say(f"Test counts:    {facts['test_counts']}")
    say(f"Source:         {facts['source']}")
    say(f"Checksums:      {facts['checksums']}")


@data.command()
@DATASET
@click.option(
    "--index", type=click.IntRange(min=0), default=0, show_default=True, help="Which image."
)
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True)
@click.option(
    "--grid",
    type=click.IntRange(1, MAX_GRID),
    help="Save this many images (from --index on) in a grid.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The PNG file to write.",
)
@data_options
def show(
    dataset: str,
    index: int,
    split: str,
    grid: int | None,
    out: Path,
    data_dir: Path | None,
    offline: bool,
) -> None:
    """Save an image with its label in the title (or a grid of them) as PNG.

    DATASET: mnist or fashion-mnist.
    """
    from mnistlab.reports.figures import check_png, show_images

    check_png(out)  # before the data is loaded
    say(f"Wrote {show_images(load_data(dataset, data_dir, offline), out, index, grid, split)}")


@data.command()
@click.argument(
    "datasets", nargs=-1, type=click.Choice(DATASETS), metavar="[DATASET]...", cls=Argument
)
def verify(datasets: tuple[str, ...]) -> None:
    """Re-check the cached files against their published SHA-256.

    DATASET: mnist or fashion-mnist; all of them by default.
    """
    from mnistlab.data import cache_dir, verify_cache

    bad = 0
    say(f"Cache: {cache_dir()}")
    for status in verify_cache(datasets or DATASETS):
        bad += status.status == "bad"
        say(
            f"{status.status:8}{status.dataset}/{status.file}"
            + (f"  {status.detail}" if status.status == "bad" else "")
        )
    if bad:
        raise MnistlabError(
            f"{plural(bad, 'cached file')} failed {'its' if bad == 1 else 'their'} check",
            "run `mnistlab data info DATASET`: it moves them aside and fetches them again",
        )


COMMANDS = [data]
