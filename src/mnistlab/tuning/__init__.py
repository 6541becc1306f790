"""Hyper-parameter search that chooses on validation accuracy alone, resumes, and shares one
study between worker processes and machines.

    tuned = tune("lab-space", minutes=30)          # a shipped space by name, or a TOML file
    tuned.best; tuned.final_mean, tuned.final_std   # chosen on validation, then tested
    tuned.test_choice.test, tuned.optimism          # what choosing on the test set claims

`space` reads search spaces (`names()` lists the shipped ones), `search` runs the trials of an
Optuna study (TPE sampling, pruning on each epoch's validation accuracy) in its storage,
`outcome` holds what the search found and `report` renders it and writes its files. `tune`
puts it together: search until the budget is spent, take the trial with the best validation
accuracy, train its spec on several seeds (an ordinary sweep folder, resumable), test each
once, and write the results beside the study.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from mnistlab import backend
from mnistlab.errors import MnistlabError
from mnistlab.files import check_writable
from mnistlab.spec import Spec
from mnistlab.tuning import search
from mnistlab.tuning.outcome import Tuned
from mnistlab.tuning.search import Budget, TrialEvent, event, open_study, quiet, shown, storage_url
from mnistlab.tuning.space import Param, Space, find, names, parse

if TYPE_CHECKING:
    from mnistlab.data import Dataset
    from mnistlab.experiments import Event

__all__ = [
    "Budget",
    "Param",
    "Space",
    "TrialEvent",
    "Tuned",
    "default_out",
    "find",
    "names",
    "parse",
    "tune",
]


def default_out(space: Space) -> Path:
    return Path("runs") / "tune" / space.name


def check_budget(trials: int | None, minutes: float | None, workers: int, seeds: int) -> None:
    """Refuse a budget that cannot work, before any work."""
    if trials is None and minutes is None:
        raise MnistlabError("the search has no budget", "give a number of trials, minutes, or both")
    if trials is not None and trials < 0:
        raise MnistlabError(f"trials {trials} is out of range", "give 0 or more")
    if minutes is not None and not minutes >= 0:
        raise MnistlabError(f"minutes {minutes} is out of range", "give 0 or more")
    if workers < 1:
        raise MnistlabError(f"workers {workers} is out of range", "give 1 or more")
    if seeds < 1:
        raise MnistlabError(f"seeds {seeds} is out of range", "give 1 or more")


def tune(
    space: str | Path | Space = "lab-space",
    *,
    trials: int | None = None,
    minutes: float | None = None,
    storage: str | None = None,
    workers: int = 1,
    seeds: int = 3,
    out: str | Path | None = None,
    data: Dataset | None = None,
    progress: Callable[[TrialEvent], None] | None = None,
    final_progress: Callable[[Event], None] | None = None,
) -> Tuned:
    """Search `space` (a shipped space's name, a TOML file, or a `Space`) until the study
    holds `trials` ended trials (finished or pruned) or `minutes` have passed in this call,
    whichever comes first (trials running then are finished); then train the spec of the trial
    with the best validation accuracy on seeds 1 to `seeds`, test each run once, and write the
    results, the plots and the best spec into `out` (default `runs/tune/NAME`).

    The study lives in `storage`, a database URL (default: SQLite in `out`): calling again with
    the same storage goes on from the trials there; workers on other machines given the same
    URL share it. `workers` processes search on this machine. `progress` is called with a
    `TrialEvent` as each trial ends, `final_progress` with an `experiments.Event` as each final
    run ends. Returns the `Tuned` value that the files render."""
    check_budget(trials, minutes, workers, seeds)
    plan = space if isinstance(space, Space) else find(space)
    folder = Path(out) if out is not None else default_out(plan)
    check_writable(folder, folder=True)
    backend.use(dict(plan.fixed).get("backend"), what=f"the search space {plan.name}")
    folder.mkdir(parents=True, exist_ok=True)
    url = storage_url(storage, folder)
    if data is None:
        from mnistlab import data as datamod

        data = datamod.load(plan.dataset)
    deadline = None if minutes is None else time.time() + 60 * minutes
    start = time.perf_counter()
    search.run(plan, url, data, Budget(trials, deadline), workers, progress)
    searched = time.perf_counter() - start
    from optuna.storages import fail_stale_trials

    with quiet():
        study = open_study(plan, url)
        # A trial whose process died (a killed search) is failed now, once its heartbeat is
        # older than the grace period, and its values queued to be tried again first
        fail_stale_trials(study)
    events = tuple(event(t) for t in study.get_trials(deepcopy=False) if t.state.is_finished())
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not finished:
        errors = [e.error for e in events if e.error]
        raise MnistlabError(
            f"no trial of the study {plan.name} has finished"
            + (f" (the last failed with {errors[-1]})" if errors else ""),
            "give the search more trials or minutes" if not errors else "fix the cause",
        )
    # The highest validation accuracy, the earliest trial of a tie (Optuna's best_trial leaves
    # the order of ties to the database); the test set is not read
    chosen = max(finished, key=lambda t: (t.value or 0.0, -t.number))
    trial_spec = Spec.from_dict(chosen.user_attrs["spec"])
    start = time.perf_counter()
    accuracies, seed_list = final_runs(
        plan, trial_spec, chosen.number, seeds, folder, data, final_progress
    )
    tuned = Tuned(
        space=plan.name,
        dataset=plan.dataset,
        storage=shown(url),
        trials=events,
        chosen=chosen.number,
        spec=plan.final(trial_spec, seed_list[0]),
        refit=plan.refit,
        seeds=seed_list,
        accuracies=accuracies,
        search_seconds=searched,
        final_seconds=time.perf_counter() - start,
        workers=workers,
        path=folder,
    )
    from mnistlab.tuning import report

    left_out = report.write(tuned, study, folder)
    return replace(tuned, path=folder, left_out=left_out)


def final_runs(
    plan: Space,
    spec: Spec,
    number: int,
    seeds: int,
    folder: Path,
    data: Dataset,
    progress: Callable[[Event], None] | None,
) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """The chosen spec trained on seeds 1 to `seeds` (on the whole training set where the space
    says `refit`), each tested once: an ordinary sweep folder, `final/trial-N`, so that a
    stopped search resumes its final runs too. Their test accuracies and seeds."""
    from mnistlab.experiments import Experiment, Variant, run_experiment

    name = f"trial-{number}"
    experiment = Experiment(
        name=name,
        dataset=plan.dataset,
        seeds=tuple(range(1, seeds + 1)),
        variants=(Variant("chosen", plan.final(spec, 1)),),
        baseline="chosen",
    )
    results = run_experiment(experiment, out=folder / "final" / name, data=data, progress=progress)
    if results.failed:
        raise MnistlabError(
            f"{len(results.failed)} of the final runs failed ({results.failed[0]})",
            "fix the cause and run the same command again: finished trials and runs are kept",
        )
    row = results.row("chosen")
    return row.accuracies, row.seeds
