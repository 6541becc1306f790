"""`mnistlab check`: students' hand-ins of the lab's notebook, checked."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mnistlab.cli.common import dataset_option, log, on_terminal, say
from mnistlab.files import check_writable, write_text
from mnistlab.limits import GIB, Limits

WARNING = (
    "warning: --rerun runs the code of each hand-in, and a notebook can run any code. It runs "
    "in a fresh kernel in a temporary folder, limited to {seconds} s and {memory:g} GiB, which "
    "is not a sandbox: it can read and write your files and use the network. Rerun hand-ins "
    "only in an account or container that holds nothing else."
)


@click.command()
@click.argument("notebooks", nargs=-1, required=True, type=click.Path(path_type=Path))
@dataset_option
@click.option(
    "--sample",
    is_flag=True,
    help="The hand-ins ran on a sample of the data (`notebook --sample-data`): take the sizes "
    "from their own shapes output, and any first prediction.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option(
    "--html",
    "html_out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the findings as one HTML page.",
)
@click.option(
    "--rerun",
    is_flag=True,
    help="Also run each hand-in again in a fresh kernel, with a time and memory limit, and "
    "compare its outputs. This runs the hand-in's code.",
)
@click.option(
    "--timeout",
    type=click.IntRange(min=1),
    default=Limits.seconds,
    show_default=True,
    help="With --rerun: seconds for the whole notebook.",
)
@click.option(
    "--memory",
    type=click.FloatRange(min=0.1),
    default=Limits.memory / GIB,
    show_default=True,
    help="With --rerun: GiB of memory for its kernel.",
)
def check(
    notebooks: tuple[Path, ...],
    dataset: str,
    sample: bool,
    as_json: bool,
    html_out: Path | None,
    rerun: bool,
    timeout: int,
    memory: float,
) -> None:
    """Check hand-ins of the lab's notebook (files, or folders of them), without running them:
    every cell ran in order without an error, the lab's shapes, pixels, parameter counts and
    first prediction, the four experiments, each text's accuracy against its output, the best
    model named, and the bonus part. Exit code 0 when all pass, 1 when one fails."""
    from mnistlab.notebook import check as checking
    from mnistlab.notebook import verdict

    if html_out is not None:
        check_writable(html_out, option="--html")  # before the checks, which may rerun
    limits = Limits(timeout, round(memory * GIB)) if rerun else None
    if limits is not None:
        log(WARNING.format(seconds=limits.seconds, memory=memory))
    progress = log if rerun else None  # a rerun takes minutes; reading takes a moment
    handins = checking.check_all(notebooks, dataset, sample, limits, progress=progress)
    if as_json:
        say(json.dumps(verdict.to_json(handins), indent=2))
    else:
        for i, handin in enumerate(handins):
            say("\n".join(([""] if i else []) + verdict.lines(handin)))
        if len(handins) > 1:
            say()
            say(verdict.terminal(handins) if on_terminal() else verdict.markdown(handins).rstrip())
    if html_out is not None:
        log(f"Wrote {write_text(html_out, verdict.page(handins))}")
    if not all(h.passed for h in handins):
        sys.exit(1)  # not click's Exit(1), which `Group.main` returns as a value


COMMANDS = [check]
