"""Running a sweep: every variant x seed of an experiment not yet finished in its folder, by an
engine, each run recorded as it ends.

A sweep folder holds one ordinary run folder per variant and seed (`runs/VARIANT/seed-N`),
each written atomically as it ends, so a sweep that is stopped in any way resumes by skipping
the finished runs; a run that was stopped goes on from its checkpoint, beside its folder
(`runs/VARIANT/.seed-N.checkpoint`, see `checkpoints`), which both engines keep in the sweep
folder. A run that fails is recorded in `failed/` and the sweep goes on.

`sweep` plans, skips and records; an engine only makes the runs it is handed: `local` here,
one after another in this process, or `ray_engine.engine`, as Ray tasks on a cluster.
"""

from __future__ import annotations

import contextlib
import math
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock

from mnistlab import runs
from mnistlab.backend import default as default_backend
from mnistlab.data import Dataset
from mnistlab.errors import MnistlabError
from mnistlab.experiments.plan import Experiment
from mnistlab.files import write_json
from mnistlab.spec import Spec


@dataclass(frozen=True)
class Event:
    """What the sweep reports after each run: `status` is "done", "skipped" or "failed"."""

    status: str
    variant: str
    seed: int
    index: int  # 1-based position in the plan
    total: int
    accuracy: float = math.nan
    seconds: float = 0.0
    error: str = ""


def finished(path: Path, spec: Spec) -> bool:
    """Whether a complete run of exactly `spec` is at `path`; a different spec is an error."""
    if not (path / runs.META_FILE).is_file() or not (path / runs.MODEL_FILE).is_file():
        return False  # a run folder is complete, or it is made again
    made = Spec.from_dict(runs.read_meta(path)["spec"])
    if made != spec:
        raise MnistlabError(
            f"{path} was made with another spec than the experiment file now gives",
            "use a new --out for the changed experiment, or restore the file",
        )
    return True


@dataclass(frozen=True)
class Job:
    """One run an engine is asked to make: train `spec` and leave its run folder at `folder`."""

    index: int  # 1-based position in the plan
    variant: str
    spec: Spec
    folder: Path


@dataclass(frozen=True)
class Outcome:
    """What became of a job: its test metrics, or the error that stopped it."""

    job: Job
    metrics: dict[str, Any] | None  # None when the run failed
    seconds: float
    error: str = ""
    traceback: str = ""


# An engine makes the runs it is given, in any order and as many at a time as it can, and
# yields each outcome once the run folder is in place (or the run has failed). The plan,
# resuming and the records are the sweep's, the same whatever the engine.
Engine = Callable[[Sequence[Job]], Iterator[Outcome]]


TrainRun = Callable[[Spec, Dataset, Path], dict[str, Any]]


def failed(job: Job, seconds: float, error: BaseException, trace: str = "") -> Outcome:
    return Outcome(
        job,
        None,
        seconds,
        f"{type(error).__name__}: {error}",
        trace or "".join(traceback.format_exception(error)),
    )


def local(data: Dataset, train_run: TrainRun) -> Engine:
    """The default engine: one run after another in this process."""

    def run(jobs: Sequence[Job]) -> Iterator[Outcome]:
        for job in jobs:
            start = time.perf_counter()
            try:
                metrics = train_run(job.spec, data, job.folder)
            except Exception as e:  # one bad run does not stop the sweep
                yield failed(job, time.perf_counter() - start, e)
                continue
            yield Outcome(job, metrics, time.perf_counter() - start)

    return run


def sweep(
    experiment: Experiment,
    out: Path,
    engine: Engine,
    report: Callable[[Event], None] = lambda event: None,
) -> list[Event]:
    """Have `engine` make every variant x seed not yet finished under `out`; report each run
    as it is skipped, done or failed. Returns the events in the plan's order. One sweep at a
    time in a folder: a second process gets a clear error rather than training it all twice."""
    out.mkdir(parents=True, exist_ok=True)
    with sweep_lock(out):
        return sweep_locked(experiment, out, engine, report)


@contextlib.contextmanager
def sweep_lock(out: Path) -> Iterator[None]:
    """Hold the sweep folder to this process (an OS lock, released however the process ends)."""
    lock = filelock.FileLock(out / ".sweep.lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise MnistlabError(
            f"another mnistlab process is running a sweep in {out}",
            "wait for it to finish, or give another --out",
        ) from None
    try:
        yield
    finally:
        lock.release()


def sweep_locked(
    experiment: Experiment, out: Path, engine: Engine, report: Callable[[Event], None]
) -> list[Event]:
    folders = runs.SweepFolder(out)
    folders.clear_stale()  # left by a process killed while saving
    plan = experiment.with_backend(default_backend()).plan()  # as the runs record it
    events, jobs = [], []
    for index, (variant, seed) in enumerate(plan, start=1):
        spec = variant.spec.replace(seed=seed)
        folder = folders.run(variant.name, seed)
        if finished(folder, spec):
            folders.failure(variant.name, seed).unlink(missing_ok=True)  # it ran since
            folders.checkpoint(variant.name, seed).unlink(missing_ok=True)  # killed as it saved
            metrics = runs.read_meta(folder)["metrics"]
            event = Event("skipped", variant.name, seed, index, len(plan), metrics["accuracy"])
            events.append(event)
            report(event)
        else:
            if folder.exists():  # incomplete (its model deleted?): kept aside, made again
                folders.set_aside(variant.name, seed)
            jobs.append(Job(index, variant.name, spec, folder))
    for outcome in engine(jobs):
        event = record(folders, outcome, len(plan))
        events.append(event)
        report(event)
    return sorted(events, key=lambda e: e.index)


def record(folders: runs.SweepFolder, outcome: Outcome, total: int) -> Event:
    """A failed run leaves its error and traceback in `failed/`; a finished one clears it."""
    job = outcome.job
    failure = folders.failure(job.variant, job.spec.seed)
    if outcome.metrics is not None:
        failure.unlink(missing_ok=True)
        return Event(
            "done",
            job.variant,
            job.spec.seed,
            job.index,
            total,
            outcome.metrics["accuracy"],
            outcome.seconds,
        )
    write_json(
        failure,
        {
            "variant": job.variant,
            "seed": job.spec.seed,
            "spec": job.spec.to_dict(),
            "error": outcome.error,
            "traceback": outcome.traceback,
        },
    )
    return Event(
        "failed",
        job.variant,
        job.spec.seed,
        job.index,
        total,
        seconds=outcome.seconds,
        error=outcome.error,
    )


# Rough cost model for --dry-run, fitted to this project's CI machine (2 cores): seconds per
# training step = overhead + 6 x multiply-adds x batch / rate. Seconds per epoch measured: lab
# recipe, TensorFlow 1.7, JAX 0.6; 1024x1024 dense at batch 128 on JAX, 4.5; preset cnn on
# TensorFlow, 11 to 22 (441 s for 25 epochs).
# A run also pays a fixed cost: building and compiling the model, the test evaluation, saving
# (the lab's 5-epoch run: 4.8 s measured on JAX, of which 2.6 s are steps).
STEP_OVERHEAD = {"tensorflow": 0.9e-3, "jax": 0.35e-3}  # seconds
RUN_OVERHEAD = {"tensorflow": 4.0, "jax": 2.5}  # seconds
FLOP_RATE = 100e9  # multiply-adds x 2 per second, effective


def estimate_seconds(spec: Spec, train_images: int = 60000) -> float:
    """Rough seconds to train and evaluate `spec` on this project's 2-core machine."""
    from mnistlab.backend import default
    from mnistlab.spec import multiply_adds

    name = spec.backend or default()
    steps = math.ceil(train_images * (1 - spec.validation_split) / spec.batch_size)
    per_step = STEP_OVERHEAD[name] + 6 * multiply_adds(spec) * spec.batch_size / FLOP_RATE
    if spec.precision == "bfloat16" and name == "tensorflow":
        per_step *= 0.7  # AMX here: preset fast 10.5 s against 14.3, handwriting 14.5 against 22
    return spec.epochs * steps * per_step * 1.1 + RUN_OVERHEAD[name]  # 1.1: validation
