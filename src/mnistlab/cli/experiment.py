"""`mnistlab experiment|compare`: grids of runs over seeds, and the table that says which
differences hold up."""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mnistlab.cli.common import (
    ExperimentCommand,
    complete_experiment,
    data_options,
    load_data,
    log,
    on_terminal,
    out_folder,
    say,
)
from mnistlab.errors import MnistlabError
from mnistlab.files import check_writable
from mnistlab.text import plural

if TYPE_CHECKING:
    from mnistlab.experiments import Event, Planned
    from mnistlab.results import Results


@click.command(cls=ExperimentCommand)
@click.argument("experiment", required=False, shell_complete=complete_experiment)
@click.option("--list", "list_all", is_flag=True, help="List the shipped experiments.")
@click.option("--show", is_flag=True, help="Print the experiment's TOML file and train nothing.")
@click.option(
    "--seeds",
    "seed_count",
    type=click.IntRange(1, 1000),
    help="Run this many seeds instead of the file's.",
)
@out_folder("Sweep folder (default: runs/experiments/NAME); rerun to resume.")
@click.option("--dry-run", is_flag=True, help="List the runs and a rough time; train nothing.")
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: one run after another here; ray: each run a Ray task (pip install mnistlab[ray]).",
)
@click.option(
    "--address",
    help="With --engine ray: join the Ray cluster there (HOST:PORT); default: start Ray here.",
)
@click.option(
    "--cpus-per-run",
    type=click.FloatRange(min=0, min_open=True),
    help="With --engine ray: CPUs each run reserves (default 1).",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    help="With --engine ray: times a run is started again when its worker dies (default 1).",
)
@click.option(
    "--tensorboard",
    "tensorboard_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Also write TensorBoard logs of every run there.",
)
@click.option(
    "--mlflow",
    "mlflow_uri",
    help="Also log every run to this MLflow tracking URI (pip install mnistlab[mlflow]).",
)
@data_options
def experiment(
    experiment: str | None,
    list_all: bool,
    show: bool,
    seed_count: int | None,
    out: Path | None,
    dry_run: bool,
    engine: str,
    address: str | None,
    cpus_per_run: float | None,
    retries: int | None,
    tensorboard_dir: Path | None,
    mlflow_uri: str | None,
    data_dir: Path | None,
    offline: bool,
) -> None:
    """Train every variant of an experiment on every seed, then tabulate and plot.

    EXPERIMENT is a shipped experiment's name (`--list` describes them) or a TOML file
    (`--show lab` prints one to start from).
    """
    from mnistlab import experiments as ex

    if list_all:
        for name in ex.names():
            plan = ex.find(name)
            say(
                f"{name:18} {plan.dataset:14} {plural(len(plan.variants), 'variant'):12} "
                f"x {plural(len(plan.seeds), 'seed')}"
            )
        return
    if experiment is None:
        raise MnistlabError(
            "name an experiment", "e.g. `mnistlab experiment lab`; `--list` shows them all"
        )
    if show:
        text, _ = ex.plan.source(experiment)
        say(text.rstrip())
        return
    ray_options = {"--address": address, "--cpus-per-run": cpus_per_run, "--retries": retries}
    given = [name for name, value in ray_options.items() if value is not None]
    if engine != "ray" and given:
        raise MnistlabError(f"{given[0]} is an option of the Ray engine", "add --engine ray")
    cpus, tries = cpus_per_run if cpus_per_run is not None else 1, 1 if retries is None else retries
    ex.check_engine(engine, address, cpus, tries)
    plan = ex.resolve(experiment, seed_count)
    out = out or ex.default_out(plan)
    planned = ex.plan_runs(plan, out)
    if not dry_run:  # before the data is loaded
        check_writable(out, folder=True)
        if tensorboard_dir is not None:
            check_writable(tensorboard_dir, folder=True, option="--tensorboard")
    (say if dry_run else log)(  # the plan is what --dry-run answers; else status, as progress
        f"Experiment {plan.name}: {plural(len(plan.variants), 'variant')} x "
        f"{plural(len(plan.seeds), 'seed')} {list(plan.seeds)} on {plan.dataset} = "
        f"{plural(len(planned), 'run')}, into {out}"
    )
    if dry_run:
        print_plan(planned)
        return
    data = load_data(plan.dataset, data_dir, offline)
    if engine == "ray":
        log(
            f"Ray: {f'joining the cluster at {address}' if address else 'starting on this machine'}"
        )
    with progress_shown(planned) as shown, warnings_shown():
        results = ex.run_experiment(
            plan,
            out=out,
            data=data,
            engine=engine,
            address=address,
            cpus_per_run=cpus,
            retries=tries,
            tensorboard=tensorboard_dir,
            mlflow=mlflow_uri,
            progress=shown,
            on_epoch=log,
        )
    print_results(results)
    if tensorboard_dir is not None:
        say(f"TensorBoard logs in {tensorboard_dir}: tensorboard --logdir {tensorboard_dir}")
    if mlflow_uri is not None:
        say(
            f"MLflow experiment {plan.name!r} at {mlflow_uri}: "
            f"mlflow ui --backend-store-uri {mlflow_uri}"
        )
    if results.failed:
        raise MnistlabError(
            f"{len(results.failed)} of {plural(len(planned), 'run')} failed (see {out / 'failed'})",
            "fix the cause and run the same command again: finished runs are kept",
        )


def print_plan(planned: list[Planned]) -> None:
    from mnistlab.results import format_duration

    for run in planned:
        say(
            f"  {run.variant:24} seed {run.seed:<4} {run.spec.backend or 'default':10} "
            + ("finished" if run.finished else f"~{run.estimate:5.0f} s")
        )
    left = sum(r.estimate for r in planned if not r.finished)
    say(f"Rough estimate for what is left: {format_duration(left)} on 2 cores")


class Lines:
    """Progress without a terminal: one line per run as it ends, on stderr as all status, with
    a counter and the time left: the rough estimates of the runs still to come, scaled by the
    wall-clock time of this session's runs against their own estimates (so that runs made side
    by side by the Ray engine count as faster)."""

    def __init__(self, planned: list[Planned]) -> None:
        self.estimates = {r.index: r.estimate for r in planned}
        self.left = sum(r.estimate for r in planned)
        self.expected = 0.0
        self.reported = 0
        self.start = time.perf_counter()

    def eta(self, event: Event) -> str:
        from mnistlab.results import format_duration

        self.reported += 1
        estimate = self.estimates[event.index]
        self.left -= estimate
        if event.status != "skipped":
            self.expected += estimate
        if self.left <= 0 or not self.expected:
            return ""
        elapsed = time.perf_counter() - self.start
        return f"; about {format_duration(self.left * elapsed / self.expected)} left"

    def __call__(self, event: Event) -> None:
        eta = self.eta(event)
        log(f"[{self.reported}/{event.total}] {describe(event)}{eta}")


def describe(event: Event) -> str:
    where = f"{event.variant} seed {event.seed}"
    if event.status == "failed":
        return f"{where}: FAILED after {event.seconds:.1f} s: {event.error}"
    if event.status == "skipped":
        return f"{where}: {event.accuracy:.2%} (finished earlier, kept)"
    return f"{where}: {event.accuracy:.2%} in {event.seconds:.1f} s"


@contextmanager
def progress_shown(planned: list[Planned]) -> Iterator[Any]:
    """A callback for the sweep's events: on a terminal, a bar whose units are the runs'
    estimated seconds, so that the time left it shows is calibrated on the runs finished so
    far; else a line per run."""
    if not sys.stderr.isatty():  # where progress goes
        yield Lines(planned)
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    estimates = {r.index: 0.0 if r.finished else r.estimate for r in planned}
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[runs]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),  # status: stdout keeps the results table
    )
    with bar:
        task = bar.add_task(
            "sweep", total=sum(estimates.values()) or 1, runs=f"0/{plural(len(planned), 'run')}"
        )
        ended = 0

        def shown(event: Event) -> None:
            nonlocal ended
            ended += 1
            bar.console.print(describe(event))
            bar.update(
                task, advance=estimates[event.index], runs=f"{ended}/{plural(len(planned), 'run')}"
            )

        yield shown


@contextmanager
def warnings_shown() -> Iterator[None]:
    """Library warnings (a tracker that could not log a run) as one line each on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            for warning in caught:
                log(f"warning: {warning.message}")


def print_results(results: Results) -> None:
    from mnistlab.reports.tables import markdown, terminal
    from mnistlab.runs import SweepFolder

    say()
    say(terminal(results) if on_terminal() else markdown(results))
    if results.path is not None:
        written = SweepFolder(results.path).results_files
        say(f"Wrote {written[0]}, " + ", ".join(f.name for f in written[1:]))


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@out_folder("Also write results.md/.csv/.json and accuracy.png into this folder.")
def compare(run_dirs: tuple[Path, ...], out: Path | None) -> None:
    """The experiment table for runs made by hand: runs that differ only in seed are grouped,
    and the first group is the baseline."""
    from dataclasses import replace

    from mnistlab.reports.tables import write_results
    from mnistlab.results import compare_runs

    if out is not None:
        check_writable(out, folder=True)  # before the runs are loaded
    results = compare_runs(run_dirs)
    if out is not None:
        results = replace(results, path=out)
        write_results(results, out)
    print_results(results)


COMMANDS = [experiment, compare]
