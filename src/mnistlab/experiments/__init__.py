"""Experiment grids: named variants of a spec, each trained on several seeds, resumable, with a
results table that says which differences from the baseline hold up.

    results = run_experiment("lab", seeds=5)      # a shipped grid by name, or a TOML file
    results.best.variant; results.rows             # a `results.Results`

`plan` reads experiment files (`names()` lists the shipped ones), `sweep` runs them through an
engine (`local` here, or `ray_engine` on a Ray cluster) into a sweep folder whose layout
`runs.SweepFolder` owns; `run_experiment` puts it together: check, load the data once, run
what is not finished, record, tabulate and write the results files.
"""

from __future__ import annotations

import contextlib
import socket
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistlab import backend, runs
from mnistlab.data import Dataset
from mnistlab.errors import MnistlabError
from mnistlab.experiments.plan import Experiment, Variant, find, names, parse, read
from mnistlab.experiments.sweep import (
    Engine,
    Event,
    Job,
    Outcome,
    estimate_seconds,
    failed,
    finished,
    local,
    sweep,
)
from mnistlab.files import check_writable
from mnistlab.spec import Spec

if TYPE_CHECKING:  # SciPy's statistics take half a second to import: loaded when tabulating
    from mnistlab.results import Results

__all__ = [
    "Engine",
    "Event",
    "Experiment",
    "Job",
    "Outcome",
    "Planned",
    "Variant",
    "collect",
    "estimate_seconds",
    "failed",
    "find",
    "finished",
    "local",
    "names",
    "parse",
    "plan_runs",
    "read",
    "run_experiment",
    "sweep",
]

LONG_RUN_SECONDS = 60  # runs expected to take longer report each epoch (`on_epoch`)
ENGINES = ("local", "ray")


class TrackerWarning(UserWarning):
    """A tracker could not record a run; the run is safe in its folder, and a rerun logs it."""


@dataclass(frozen=True)
class Planned:
    """One run of a plan: its variant, seed and spec, whether it is finished in the sweep
    folder, and a rough estimate of its seconds on this project's 2-core machine."""

    index: int
    variant: str
    seed: int
    spec: Spec
    finished: bool
    estimate: float


def resolve(experiment: str | Path | Experiment, seeds: int | None = None) -> Experiment:
    """An experiment by shipped name, by file, or as it is; with `seeds` seeds if given."""
    plan = experiment if isinstance(experiment, Experiment) else find(experiment)
    plan = plan.with_backend(backend.default())  # as the runs will record it
    one_backend(plan)
    return plan.with_seeds(seeds) if seeds is not None else plan


def default_out(plan: Experiment) -> Path:
    return Path("runs") / "experiments" / plan.name


def plan_runs(experiment: Experiment, out: Path) -> list[Planned]:
    """Every variant x seed of `experiment`, marked finished where `out` holds it already."""
    folders = runs.SweepFolder(out)
    planned = []
    for index, (variant, seed) in enumerate(experiment.plan(), start=1):
        spec = variant.spec.replace(seed=seed)
        done = finished(folders.run(variant.name, seed), spec) if out.is_dir() else False
        planned.append(Planned(index, variant.name, seed, spec, done, estimate_seconds(spec)))
    return planned


def collect(experiment: Experiment, out: Path) -> dict[str, list[dict[str, Any]]]:
    """The finished runs of a sweep folder (their `run.json`), by variant, in the plan's order."""
    folders = runs.SweepFolder(out)
    return {
        variant.name: [
            runs.read_meta(folders.run(variant.name, seed))
            for seed in experiment.seeds
            if folders.finished(variant.name, seed)
        ]
        for variant in experiment.variants
    }


def results_of(experiment: Experiment, out: Path, failed_runs: tuple[str, ...] = ()) -> Results:
    """The results table of a sweep folder, from its finished runs."""
    from mnistlab.results import tabulate

    return tabulate(
        collect(experiment, out),
        experiment.baseline,
        f"Experiment {experiment.name}",
        experiment.dataset,
        experiment.seeds,
        failed_runs,
        out,
    )


def run_experiment(
    experiment: str | Path | Experiment,
    *,
    seeds: int | None = None,
    out: str | Path | None = None,
    data: Dataset | None = None,
    engine: str = "local",
    address: str | None = None,
    cpus_per_run: float = 1,
    retries: int = 1,
    tensorboard: str | Path | None = None,
    mlflow: str | None = None,
    progress: Callable[[Event], None] | None = None,
    on_epoch: Callable[[str], None] | None = None,
) -> Results:
    """Train every variant of `experiment` (a shipped grid's name, a TOML file, or an
    `Experiment`) on each of its seeds (or the first `seeds`), into the sweep folder `out`
    (default `runs/experiments/NAME`), skipping the runs finished there already; then write
    the results files there and return the `Results`.

    `engine` "ray" makes each run a Ray task (on the cluster at `address`, else on Ray started
    here), each reserving `cpus_per_run` CPUs and started again `retries` times if its worker
    dies. `tensorboard` (a folder) and `mlflow` (a tracking URI) log every run once.
    `progress` is called with an `Event` as each run is skipped, done or failed; `on_epoch`
    with a line after each epoch of runs estimated at a minute or more (local engine).
    A run that fails is recorded in `failed/` and named in `Results.failed`; the others go on.
    """
    check_engine(engine, address, cpus_per_run, retries)
    plan = resolve(experiment, seeds)
    backend.use(one_backend(plan), what=f"the experiment {plan.name}")
    folder = Path(out) if out is not None else default_out(plan)
    check_writable(folder, folder=True)  # before the data is loaded and any run is trained
    if tensorboard is not None:
        check_writable(Path(tensorboard), folder=True, option="tensorboard=")
    from mnistlab import tracking

    trackers = tracking.open_trackers(
        Path(tensorboard) if tensorboard is not None else None, mlflow, plan.name, folder
    )
    if data is None:
        from mnistlab import data as datamod

        data = datamod.load(plan.dataset)
    folders = runs.SweepFolder(folder)

    def report(event: Event) -> None:
        if event.status != "failed":  # a tracker added to a finished sweep logs it all
            track(trackers, folders.run(event.variant, event.seed), event)
        if progress is not None:
            progress(event)

    with make_engine(engine, data, plan, address, cpus_per_run, retries, on_epoch) as runner:
        events = sweep(plan, folder, runner, report)
    failures = tuple(
        f"{e.variant} seed {e.seed}: {e.error}" for e in events if e.status == "failed"
    )
    results = results_of(plan, folder, failures)
    from mnistlab.reports.tables import write_results

    write_results(results, folder)
    return results


def check_engine(engine: str, address: str | None, cpus_per_run: float, retries: int) -> None:
    """Refuse engine options that cannot work, before any work."""
    if engine not in ENGINES:
        raise MnistlabError(f"unknown engine {engine!r}", f"choose one of: {', '.join(ENGINES)}")
    if engine != "ray" and address is not None:
        raise MnistlabError("an address is an option of the Ray engine", "use engine 'ray'")
    if cpus_per_run <= 0:
        raise MnistlabError(f"cpus per run {cpus_per_run} is out of range", "give more than 0")
    if retries < 0:
        raise MnistlabError(f"retries {retries} is out of range", "give 0 or more")
    if engine == "ray":
        from mnistlab.experiments import ray_engine

        ray_engine.ray_module()  # installed? Said before the data is loaded
        if address is not None:
            ray_engine.reach(address)  # answers, and lets this process in?


def one_backend(plan: Experiment) -> str | None:
    """The one backend the variants name; Keras runs one a process."""
    named = {v.spec.backend for v in plan.variants}
    if len(named) > 1:
        raise MnistlabError(
            f"the variants of {plan.name} use several backends "
            f"({', '.join(sorted(str(n) for n in named))})",
            "Keras runs one backend per process: split the file, or set one backend in [base]",
        )
    return named.pop()


@contextlib.contextmanager
def make_engine(
    engine: str,
    data: Dataset,
    plan: Experiment,
    address: str | None,
    cpus_per_run: float,
    retries: int,
    on_epoch: Callable[[str], None] | None,
) -> Iterator[Engine]:
    if engine == "ray":
        from mnistlab.experiments import ray_engine

        with ray_engine.connect(address, backend.default()):
            yield ray_engine.engine(data, cpus_per_run, retries)
        return

    def train_run(spec: Spec, data: Dataset, folder: Path) -> dict[str, Any]:
        from mnistlab.training import train

        callbacks = []
        if on_epoch is not None and estimate_seconds(spec) >= LONG_RUN_SECONDS:
            from mnistlab.callbacks import EpochLine

            callbacks.append(
                EpochLine(f"  {folder.parent.name} seed {spec.seed}", spec.epochs, on_epoch)
            )
        run = train(spec, data, callbacks=callbacks, checkpoint=runs.checkpoint_path(folder))
        run.info["trained_on"] = {"engine": "local", "hostname": socket.gethostname()}
        run.save(folder)  # and removes the checkpoint
        return run.metrics

    yield local(data, train_run)


def track(trackers: list[Any], folder: Path, event: Event) -> None:
    for tracker in trackers:
        try:
            tracker.record(folder, event.variant, event.seed)
        except Exception as e:  # the run is safe in its folder, and a rerun logs it
            warnings.warn(
                f"{tracker.name} could not record {event.variant} seed {event.seed} "
                f"({type(e).__name__}: {e}); run the command again to retry",
                TrackerWarning,
                stacklevel=2,
            )
