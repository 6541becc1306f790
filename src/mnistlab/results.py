"""The results of a sweep or a comparison: one typed value, `Results`, that the Markdown table,
the CSV and JSON files, the HTML page, the terminal table and the notebook's text only render.

    results = compare_runs(groups, baseline)      # rows tested against the baseline
    results.best.variant; results.rows; results.to_json(); Results.from_json(...)

Each row is a variant's test accuracies over its seeds, with Welch's t-test against the
baseline's: whether a difference is more than the spread between seeds. The best variant is
chosen on the held-out validation images, never on the test set, unless some runs held out none;
`Results.chosen_on` says which.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab import runs
from mnistlab.errors import MnistlabError
from mnistlab.spec import Spec

SIGNIFICANCE = 0.05  # two-sided Welch's t-test


@dataclass(frozen=True)
class Row:
    variant: str
    parameters: int
    epochs: int
    accuracies: tuple[float, ...]
    seeds: tuple[int, ...]
    seconds: float  # mean training seconds
    validations: tuple[float, ...] = ()  # last epoch's validation accuracy, by seed; () if none
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

    @property
    def validation(self) -> float:
        """Mean validation accuracy; nan when a run held out no validation images."""
        if len(self.validations) != len(self.accuracies):
            return math.nan
        return float(np.mean(self.validations))


def welch(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances); nan when it cannot be computed
    (fewer than two runs on a side, or no spread at all)."""
    if len(a) < 2 or len(b) < 2 or (np.std(a) == 0 and np.std(b) == 0):
        return math.nan
    from scipy import stats  # 1.7 s to import: only when a table is made, not for every command

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
                validations=validations(metas),
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


def validations(metas: list[dict[str, Any]]) -> tuple[float, ...]:
    found = [m.get("validation") for m in metas]
    values = [v.get("accuracy") for v in found if isinstance(v, dict)]
    numbers = [float(v) for v in values if isinstance(v, (int, float))]
    return tuple(numbers) if len(numbers) == len(metas) else ()


def chosen_on(rows: Iterable[Row]) -> str:
    """ "validation" when every row has its validation accuracies, else "test"."""
    return "test" if any(math.isnan(r.validation) for r in rows) else "validation"


def best(rows: Sequence[Row]) -> Row:
    """The row with the highest mean validation accuracy; the highest test accuracy only when
    some runs held out no validation images (see `chosen_on`)."""
    if chosen_on(rows) == "validation":
        return max(rows, key=lambda r: r.validation)
    return max(rows, key=lambda r: r.mean)


def fmt_p(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


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


@dataclass(frozen=True)
class Results:
    """A results table: its rows, the baseline they are tested against, and the facts a table
    states besides (data set, seeds, machine, time); `path` is the folder it was written to."""

    title: str
    rows: tuple[Row, ...]
    baseline: str
    dataset: str
    seeds: tuple[int, ...]
    runs: int
    backends: tuple[str, ...]
    machine: str
    wall_seconds: float
    failed: tuple[str, ...] = ()  # "VARIANT seed N: error" for each run that failed
    path: Path | None = field(default=None, compare=False)

    @property
    def best(self) -> Row:
        return best(self.rows)

    @property
    def chosen_on(self) -> str:
        """What the best variant was chosen on: "validation" or, lacking it, "test"."""
        return chosen_on(self.rows)

    def row(self, variant: str) -> Row:
        return next(r for r in self.rows if r.variant == variant)

    def to_json(self) -> dict[str, Any]:
        def clean(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {
            "title": self.title,
            "dataset": self.dataset,
            "seeds": list(self.seeds),
            "runs": self.runs,
            "backends": list(self.backends),
            "machine": self.machine,
            "wall_seconds": self.wall_seconds,
            "baseline": self.baseline,
            "best": self.best.variant,
            "best_chosen_on": self.chosen_on,
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
                    "validation_accuracies": list(r.validations),
                    "validation_mean": clean(r.validation),
                    "mean_seconds": r.seconds,
                    "difference": clean(r.difference),
                    "p_value": clean(r.p_value),
                    "verdict": r.verdict,
                }
                for r in self.rows
            ],
        }

    @staticmethod
    def from_json(values: dict[str, Any], path: Path | None = None) -> Results:
        """The value `to_json` wrote; a clear error for a damaged file."""
        try:
            rows = tuple(
                Row(
                    variant=r["variant"],
                    parameters=int(r["parameters"]),
                    epochs=int(r["epochs"]),
                    accuracies=tuple(float(a) for a in r["accuracies"]),
                    seeds=tuple(int(s) for s in r["seeds"]),
                    seconds=float(r["mean_seconds"]),
                    validations=tuple(float(a) for a in r.get("validation_accuracies", ())),
                    difference=math.nan if r["difference"] is None else r["difference"],
                    p_value=math.nan if r["p_value"] is None else r["p_value"],
                    verdict=r["verdict"],
                )
                for r in values["rows"]
            )
            if not rows:
                raise ValueError("no rows")
            return Results(
                title=str(values.get("title", "Results")),
                rows=rows,
                baseline=str(values["baseline"]),
                dataset=str(values["dataset"]),
                seeds=tuple(values["seeds"]),
                runs=int(values["runs"]),
                backends=tuple(values.get("backends", ())),
                machine=str(values.get("machine", "")),
                wall_seconds=float(values.get("wall_seconds", 0.0)),
                path=path,
            )
        except (KeyError, TypeError, ValueError) as e:
            where = f"{path}: " if path else ""
            raise MnistlabError(
                f"{where}damaged results ({type(e).__name__}: {e})",
                "write them again with `mnistlab experiment` (finished runs are kept)",
            ) from e


def tabulate(
    groups: dict[str, list[dict[str, Any]]],
    baseline: str,
    title: str,
    dataset: str,
    seeds: Sequence[int],
    failed: Sequence[str] = (),
    path: Path | None = None,
) -> Results:
    """The results of groups of finished runs (their `run.json` contents), by variant."""
    if not any(groups.values()):
        where = f" in {path}" if path else ""
        raise MnistlabError(f"no finished runs{where}", "run the experiment first")
    known = facts(groups, dataset, list(seeds))
    return Results(
        title=title,
        rows=tuple(compare(groups, baseline)),
        baseline=baseline,
        dataset=dataset,
        seeds=tuple(seeds),
        runs=known["runs"],
        backends=tuple(known["backends"]),
        machine=known["machine"],
        wall_seconds=known["wall_seconds"],
        failed=tuple(failed),
        path=path,
    )


def compare_runs(paths: Iterable[Path]) -> Results:
    """The table for runs made by hand: runs whose specs differ only in their seed form one
    row, named by what differs from the lab's recipe; the first row is the baseline."""
    groups, dataset = group_runs(paths)
    seeds = sorted({m["spec"]["seed"] for ms in groups.values() for m in ms})
    return tabulate(groups, next(iter(groups)), "Comparison", dataset, seeds)
