"""`mnistlab tune`: a hyper-parameter search that chooses on validation accuracy alone, then
trains the chosen spec on several seeds and tests it once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from mnistlab.cli.common import data_options, load_data, log, on_terminal, out_folder, say
from mnistlab.errors import MnistlabError
from mnistlab.text import plural

if TYPE_CHECKING:
    from mnistlab.experiments import Event
    from mnistlab.tuning import TrialEvent


@click.command()
@click.argument("space", required=False)
@click.option("--list", "list_all", is_flag=True, help="List the shipped search spaces.")
@click.option("--show", is_flag=True, help="Print the space's TOML file and train nothing.")
@click.option(
    "--trials",
    type=click.IntRange(min=0),
    help="Stop when the study holds this many trials, finished or pruned (resumes count).",
)
@click.option(
    "--timeout",
    "minutes",
    type=click.FloatRange(min=0),
    help="Start no trial after this many minutes of this command's search.",
)
@click.option(
    "--storage",
    help="Database URL of the study, e.g. postgresql://USER:PASSWORD@HOST/DB: every machine "
    "given the same URL and command shares the search (default: SQLite in --out).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes on this machine, sharing the study.",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Seeds the chosen spec is trained on at the end, each run tested once.",
)
@out_folder(
    "Folder for the study, the final runs and the results (default: runs/tune/NAME); "
    "rerun to resume."
)
@data_options
def tune(
    space: str | None,
    list_all: bool,
    show: bool,
    trials: int | None,
    minutes: float | None,
    storage: str | None,
    workers: int,
    seeds: int,
    out: Path | None,
    data_dir: Path | None,
    offline: bool,
) -> None:
    """Search a space of specs on validation accuracy, then test the chosen one on seeds.

    SPACE is a shipped space's name (`--list` names them) or a TOML file. The study lives in
    its storage: the same command again goes on from its trials.
    """
    from mnistlab import tuning

    if list_all:
        for name in tuning.names():
            found = tuning.find(name)
            say(f"{name:12} {found.dataset:14} {', '.join(p.name for p in found.params)}")
        return
    if space is None:
        raise MnistlabError(
            "name a search space", "e.g. `mnistlab tune lab-space --trials 20`; `--list` shows them"
        )
    if show:
        text, _ = tuning.space.source(space)
        say(text.rstrip())
        return
    tuning.check_budget(trials, minutes, workers, seeds)
    plan = tuning.find(space)
    out = out or tuning.default_out(plan)
    budget = " or ".join(
        part
        for part in (
            f"until the study holds {plural(trials, 'trial')}" if trials is not None else "",
            f"for {minutes:g} min" if minutes is not None else "",
        )
        if part
    )
    say(f"Search {plan.name} on {plan.dataset} {budget}, {plural(workers, 'worker')}; into {out}")
    data = load_data(plan.dataset, data_dir, offline)
    tuned = tuning.tune(
        plan,
        trials=trials,
        minutes=minutes,
        storage=storage,
        workers=workers,
        seeds=seeds,
        out=out,
        data=data,
        progress=lambda e: say(trial_line(e)),
        final_progress=lambda e: say(final_line(e)),
    )
    from mnistlab.tuning import report

    say()
    say(report.terminal(tuned) if on_terminal() else report.markdown(tuned))
    written = [out / name for name in (report.RESULTS_MD, report.BEST_SPEC)]
    say(f"Wrote {written[0]}, {written[1].name}, results.json and the plots in {out}")
    for name, why in tuned.left_out.items():
        log(f"note: {name} was not drawn ({why})")
    log(f"Train the chosen spec: mnistlab train --spec {written[1]}")


def trial_line(event: TrialEvent) -> str:
    params = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in event.params.items()
    )
    if event.state == "failed":
        return f"trial {event.number}: FAILED after {event.seconds:.0f} s: {event.error}"
    what = (
        f"{event.validation:.2%} validation, test {event.test:.2%} (not used)"
        if event.state == "finished"
        else f"pruned at {event.validation:.2%} validation"
    )
    return (
        f"trial {event.number}: {what} after {plural(event.epochs, 'epoch')}, "
        f"{event.seconds:.0f} s; {params}"
    )


def final_line(event: Event) -> str:
    if event.status == "failed":
        return f"final run, seed {event.seed}: FAILED: {event.error}"
    kept = " (finished earlier, kept)" if event.status == "skipped" else ""
    return f"final run, seed {event.seed}: {event.accuracy:.2%} test accuracy{kept}"


COMMANDS = [tune]
