"""Experiment grids: named variants of a spec, each trained on several seeds, resumable, with a
results table that says which differences from the baseline hold up.

An experiment file (TOML):

    name = "lab"                  # optional; the file's stem by default
    dataset = "mnist"
    seeds = [1, 2, 3, 4, 5]
    baseline = "baseline"         # optional; the first variant by default
    [base]                        # spec fields shared by every variant
    backend = "jax"
    [[variants]]
    name = "baseline"
    [[variants]]
    name = "wide"
    hidden = [256]

A sweep folder holds one ordinary run folder per variant and seed (`runs/VARIANT/seed-N`),
each written atomically as it ends, so a sweep that is stopped in any way resumes by skipping
the finished runs. A run that fails is recorded in `failed/` and the sweep goes on.

`sweep` plans, skips and records; an engine only makes the runs it is handed: `local` here,
one after another in this process, or `ray_engine.engine`, as Ray tasks on a cluster.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import time
import tomllib
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from mnistlab import runs
from mnistlab.data import DATASETS, Dataset
from mnistlab.errors import MnistlabError
from mnistlab.spec import Spec

TOP_KEYS = {"name", "dataset", "seeds", "baseline", "base", "variants"}
SIGNIFICANCE = 0.05  # two-sided Welch's t-test


@dataclass(frozen=True)
class Variant:
    name: str
    spec: Spec  # the seed field is replaced by each of the experiment's seeds


@dataclass(frozen=True)
class Experiment:
    name: str
    dataset: str
    seeds: tuple[int, ...]
    variants: tuple[Variant, ...]
    baseline: str

    def plan(self) -> list[tuple[Variant, int]]:
        return [(v, seed) for v in self.variants for seed in self.seeds]

    def with_seeds(self, count: int) -> Experiment:
        """The first `count` seeds of the file, or more counted on from its last one."""
        if count < 1:
            raise MnistlabError(f"--seeds {count} is out of range", "ask for at least 1 seed")
        seeds = list(self.seeds[:count])
        while len(seeds) < count:
            seeds.append(max(seeds, default=0) + 1)
        return Experiment(self.name, self.dataset, tuple(seeds), self.variants, self.baseline)

    def shortened(self, seeds: int, epochs_divisor: int) -> Experiment:
        """The first `seeds` seeds, each variant's epochs divided (at least 1): a quick look."""
        variants = tuple(
            Variant(v.name, v.spec.replace(epochs=max(1, v.spec.epochs // epochs_divisor)))
            for v in self.variants
        )
        return Experiment(self.name, self.dataset, self.seeds[:seeds], variants, self.baseline)


def bad_file(path: Path, problem: str) -> MnistlabError:
    return MnistlabError(f"{path}: {problem}", "see experiments/lab.toml for the format")


def read(path: Path) -> Experiment:
    """Parse and check an experiment file; every problem names the key."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise MnistlabError(f"no experiment file at {path}", "check the path") from None
    except UnicodeDecodeError as e:
        raise bad_file(path, f"not valid TOML ({e})") from e
    return parse(text, path)


def parse(text: str, path: Path) -> Experiment:
    """An experiment from the text of a file; `path` names it (its stem is the default name)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise bad_file(path, f"not valid TOML ({e})") from e
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise bad_file(path, f"unknown key {unknown[0]!r} (known: {', '.join(sorted(TOP_KEYS))})")
    dataset = raw.get("dataset", "mnist")
    if dataset not in DATASETS:
        raise bad_file(path, f"dataset {dataset!r} is not one of {', '.join(DATASETS)}")
    seeds = raw.get("seeds", [1, 2, 3])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise bad_file(path, f"seeds must be a list of distinct whole numbers >= 0, not {seeds!r}")
    base = raw.get("base", {})
    if not isinstance(base, dict):
        raise bad_file(path, "[base] must be a table of spec fields")
    variants_raw = raw.get("variants")
    if not isinstance(variants_raw, list) or not variants_raw:
        raise bad_file(path, "it needs at least one [[variants]] table")
    variants = []
    for i, entry in enumerate(variants_raw, start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise bad_file(path, f"variant {i} needs a name")
        name = entry["name"]
        if not name or not all(c.isalnum() or c in "-_." for c in name) or name[0] == ".":
            raise bad_file(path, f"variant name {name!r}: use letters, digits, '-', '_', '.'")
        fields = {**base, **{k: v for k, v in entry.items() if k != "name"}}
        if "seed" in fields:
            raise bad_file(path, f"variant {name!r}: set seeds with the top-level key 'seeds'")
        try:
            spec = Spec.from_dict(fields)
        except MnistlabError as e:
            raise bad_file(path, f"variant {name!r}: {e}") from e
        variants.append(Variant(name, spec))
    names = [v.name for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise bad_file(path, f"variant name {duplicates[0]!r} is used twice")
    baseline = raw.get("baseline", names[0])
    if baseline not in names:
        raise bad_file(path, f"baseline {baseline!r} is not one of the variants")
    name = raw.get("name", path.stem)
    if not isinstance(name, str):
        raise bad_file(path, "name must be a string")
    return Experiment(name, dataset, tuple(seeds), tuple(variants), baseline)


# ---------------------------------------------------------------------------------------------
# Running a sweep


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


def run_folder(out: Path, variant: str, seed: int) -> Path:
    return out / "runs" / variant / f"seed-{seed}"


def failure_file(out: Path, variant: str, seed: int) -> Path:
    return out / "failed" / f"{variant}-seed-{seed}.json"


def finished(path: Path, spec: Spec) -> bool:
    """Whether a complete run of exactly `spec` is at `path`; a different spec is an error."""
    if not (path / runs.META_FILE).is_file():
        return False
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
    as it is skipped, done or failed. Returns the events in the plan's order."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("runs/*/.seed-*.tmp"):  # left by a process killed while saving
        shutil.rmtree(stale, ignore_errors=True)
    plan = experiment.plan()
    events, jobs = [], []
    for index, (variant, seed) in enumerate(plan, start=1):
        spec = variant.spec.replace(seed=seed)
        folder = run_folder(out, variant.name, seed)
        if finished(folder, spec):
            metrics = runs.read_meta(folder)["metrics"]
            event = Event("skipped", variant.name, seed, index, len(plan), metrics["accuracy"])
            events.append(event)
            report(event)
        else:
            jobs.append(Job(index, variant.name, spec, folder))
    for outcome in engine(jobs):
        event = record(out, outcome, len(plan))
        events.append(event)
        report(event)
    return sorted(events, key=lambda e: e.index)


def record(out: Path, outcome: Outcome, total: int) -> Event:
    """A failed run leaves its error and traceback in `failed/`; a finished one clears it."""
    job = outcome.job
    failure = failure_file(out, job.variant, job.spec.seed)
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
    runs.write_json(
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


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Row:
    variant: str
    parameters: int
    epochs: int
    accuracies: tuple[float, ...]
    seeds: tuple[int, ...]
    seconds: float  # mean training seconds
    difference: float = math.nan  # mean accuracy minus the baseline's
    p_value: float = math.nan  # Welch's t-test against the baseline
    verdict: str = ""

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        """Sample standard deviation (n - 1); 0 for a single run."""
        return float(np.std(self.accuracies, ddof=1)) if len(self.accuracies) > 1 else 0.0


def welch(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances); nan when it cannot be computed
    (fewer than two runs on a side, or no spread at all)."""
    if len(a) < 2 or len(b) < 2 or (np.std(a) == 0 and np.std(b) == 0):
        return math.nan
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def verdict(difference: float, p_value: float) -> str:
    if math.isnan(p_value):
        return "too few runs to tell"
    if p_value >= SIGNIFICANCE:
        return "no clear difference"
    return "better" if difference > 0 else "worse"


def compare(groups: dict[str, list[dict[str, Any]]], baseline: str) -> list[Row]:
    """One row per group of run metadata (`run.json` contents), tested against `baseline`."""
    rows = []
    for name, metas in groups.items():
        if not metas:
            continue
        spec = metas[0]["spec"]
        rows.append(
            Row(
                variant=name,
                parameters=int(metas[0].get("parameters", 0)),
                epochs=int(spec["epochs"]),
                accuracies=tuple(float(m["metrics"]["accuracy"]) for m in metas),
                seeds=tuple(int(m["spec"]["seed"]) for m in metas),
                seconds=float(np.mean([m["seconds"]["train"] for m in metas])),
            )
        )
    base = next((r for r in rows if r.variant == baseline), None)
    if base is None:
        return rows
    tested = []
    for row in rows:
        if row.variant == baseline:
            tested.append(row)
            continue
        difference = row.mean - base.mean
        p = welch(row.accuracies, base.accuracies)
        tested.append(
            Row(
                **{
                    **row.__dict__,
                    "difference": difference,
                    "p_value": p,
                    "verdict": verdict(difference, p),
                }
            )
        )
    return tested


def collect(experiment: Experiment, out: Path) -> dict[str, list[dict[str, Any]]]:
    """The finished runs of a sweep folder, by variant, in the experiment's order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for variant in experiment.variants:
        folders = [run_folder(out, variant.name, seed) for seed in experiment.seeds]
        groups[variant.name] = [
            runs.read_meta(f) for f in folders if (f / runs.META_FILE).is_file()
        ]
    return groups


def best(rows: Iterable[Row]) -> Row:
    return max(rows, key=lambda r: r.mean)


def fmt_p(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def markdown(rows: Sequence[Row], baseline: str, title: str, facts: Sequence[str]) -> str:
    lines = [f"# {title}", "", *facts, ""]
    lines += [
        "| variant | parameters | epochs | test accuracy (mean ± std) | min | max | seeds "
        "| mean seconds | vs baseline | Welch p | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        vs = "baseline" if r.variant == baseline else f"{r.difference * 100:+.2f} pts"
        lines.append(
            f"| {r.variant} | {r.parameters:,} | {r.epochs} | {r.mean:.2%} ± {r.std * 100:.2f} "
            f"| {min(r.accuracies):.2%} | {max(r.accuracies):.2%} | {len(r.accuracies)} "
            f"| {r.seconds:.1f} | {vs} | {'' if r.variant == baseline else fmt_p(r.p_value)} "
            f"| {r.verdict} |"
        )
    top = best(rows)
    lines += [
        "",
        f"Best: **{top.variant}**, {top.mean:.2%} ± {top.std * 100:.2f} over "
        f"{len(top.accuracies)} seeds.",
        "",
        "Welch's t-test (two-sided, unequal variances) of each variant's test accuracies "
        f"against the baseline's; a difference counts at p < {SIGNIFICANCE}.",
    ]
    return "\n".join(lines) + "\n"


def table_csv(rows: Sequence[Row]) -> str:
    header = (
        "variant,parameters,epochs,mean_accuracy,std_accuracy,min_accuracy,max_accuracy,"
        "seeds,mean_seconds,difference,p_value,verdict"
    )
    lines = [header]
    for r in rows:
        lines.append(
            ",".join(
                str(v)
                for v in (
                    r.variant,
                    r.parameters,
                    r.epochs,
                    f"{r.mean:.6f}",
                    f"{r.std:.6f}",
                    f"{min(r.accuracies):.6f}",
                    f"{max(r.accuracies):.6f}",
                    len(r.accuracies),
                    f"{r.seconds:.2f}",
                    "" if math.isnan(r.difference) else f"{r.difference:.6f}",
                    "" if math.isnan(r.p_value) else f"{r.p_value:.6g}",
                    r.verdict,
                )
            )
        )
    return "\n".join(lines) + "\n"


def table_json(rows: Sequence[Row], baseline: str, facts: dict[str, Any]) -> dict[str, Any]:
    def clean(x: float) -> float | None:
        return None if math.isnan(x) else x

    return {
        **facts,
        "baseline": baseline,
        "best": best(rows).variant,
        "test": "Welch's t-test, two-sided, against the baseline",
        "rows": [
            {
                "variant": r.variant,
                "parameters": r.parameters,
                "epochs": r.epochs,
                "accuracies": list(r.accuracies),
                "seeds": list(r.seeds),
                "mean": r.mean,
                "std": r.std,
                "mean_seconds": r.seconds,
                "difference": clean(r.difference),
                "p_value": clean(r.p_value),
                "verdict": r.verdict,
            }
            for r in rows
        ],
    }


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def facts(
    groups: dict[str, list[dict[str, Any]]], dataset: str, seeds: list[int]
) -> dict[str, Any]:
    """What a results table states besides its rows: seeds, machine, total time."""
    metas = [m for ms in groups.values() for m in ms]
    return {
        "dataset": dataset,
        "seeds": seeds,
        "runs": len(metas),
        "backends": sorted({m["backend"] for m in metas}),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "wall_seconds": round(
            sum(m["seconds"]["train"] + m["seconds"].get("evaluate", 0) for m in metas), 1
        ),
    }


def write_results(
    rows: Sequence[Row], baseline: str, title: str, facts: dict[str, Any], out: Path
) -> str:
    """results.md, results.csv, results.json and accuracy.png in `out`; returns the Markdown."""
    from mnistlab import report

    line = (
        f"Data set {facts['dataset']}; seeds {facts['seeds']}; {facts['runs']} runs on "
        f"{', '.join(facts['backends'])}; machine: {facts['machine']}; "
        f"training and evaluation time in all: {format_duration(facts['wall_seconds'])}."
    )
    text = markdown(rows, baseline, title, [line])
    runs.write_text(out / "results.md", text)
    runs.write_text(out / "results.csv", table_csv(rows))
    runs.write_json(out / "results.json", table_json(rows, baseline, facts))
    report.accuracy_by_variant(rows, baseline, title, out / "accuracy.png")
    return text


def describe(spec_values: dict[str, Any]) -> str:
    """A short name for a run's spec: what differs from the lab's recipe, seed aside."""
    spec, lab = Spec.from_dict(spec_values), Spec()
    changes = [
        f"{key}={','.join(map(str, value)) if isinstance(value, tuple) else value}"
        for key, value in vars(spec).items()
        if key not in ("seed", "backend") and value != getattr(lab, key)
    ]
    return " ".join(changes) or "lab"


def group_runs(paths: Iterable[Path]) -> tuple[dict[str, list[dict[str, Any]]], str]:
    """Run folders made by hand, grouped by spec (seed aside), and their one data set."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        meta = runs.read_meta(path)
        groups.setdefault(describe(meta["spec"]), []).append(meta)
    datasets = {m["dataset"] for ms in groups.values() for m in ms}
    if len(datasets) > 1:
        raise MnistlabError(
            f"the runs are on different data sets ({', '.join(sorted(datasets))})",
            "compare runs of one data set",
        )
    return groups, datasets.pop()


# Rough cost model for --dry-run, fitted to this project's CI machine (2 cores): seconds per
# training step = overhead + 6 x multiply-adds x batch / rate. Seconds per epoch measured: lab
# recipe, TensorFlow 1.7, JAX 0.6; 1024x1024 dense at batch 128 on JAX, 4.5; preset cnn on
# TensorFlow, 11 to 22 (441 s for 25 epochs).
STEP_OVERHEAD = {"tensorflow": 0.9e-3, "jax": 0.2e-3}  # seconds
FLOP_RATE = 100e9  # multiply-adds x 2 per second, effective


def estimate_seconds(spec: Spec, multiply_adds: int, train_images: int = 60000) -> float:
    steps = math.ceil(train_images * (1 - spec.validation_split) / spec.batch_size)
    per_step = STEP_OVERHEAD[spec.backend] + 6 * multiply_adds * spec.batch_size / FLOP_RATE
    return spec.epochs * steps * per_step * 1.1  # plus validation and evaluation
