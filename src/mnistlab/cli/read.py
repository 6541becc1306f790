"""`mnistlab read IMAGE... [--run RUN_DIR] [--json]`: the number written in each picture."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mnistlab.cli.common import log, say
from mnistlab.errors import MnistlabError
from mnistlab.text import plural


@click.command()
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--run",
    "run_dir",
    type=click.Path(path_type=Path),
    help="Read with this run's model (trained on MNIST); default: the reading model, "
    "trained once on first use (preset handwriting) and kept in the cache.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def read(images: tuple[Path, ...], run_dir: Path | None, as_json: bool) -> None:
    """Read the number written in each picture (photos, scans, drawings): every digit, left
    to right, with its probability and its box (top, left, bottom, right, in the picture's
    pixels).

    A file that cannot be read gets its own error line and the others are still read; the exit
    code is then 2.
    """
    if not images:
        raise MnistlabError("no image files given", "e.g. `mnistlab read photo.jpg`")
    from mnistlab.reading import read_files, reader

    run = reader(run_dir, log=log)
    if run.dataset != "mnist":
        raise MnistlabError(
            f"the run {run_dir} was trained on {run.dataset}, not on digits",
            "give a run trained on mnist, or no --run for the default reading model",
        )
    answers = read_files(run, images)
    failed = [a for a in answers if "error" in a]
    for answer in answers:
        if "error" in answer:
            log(f"error: {answer['file']}: {answer['error']}. {answer['fix']}")
        elif not as_json:
            parts = ", ".join(
                f"{d['label']} {d['probability']:.1%} at {tuple(d['box'])}"
                for d in answer["digits"]
            )
            say(f"{answer['file']}: {answer['text']}  ({parts})")
    if as_json:
        say(json.dumps(answers, indent=2))
    if failed:
        raise MnistlabError(
            f"{len(failed)} of {plural(len(images), 'file')} could not be read",
            "see the lines above",
        )


COMMANDS = [read]
