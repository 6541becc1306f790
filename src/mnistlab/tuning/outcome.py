"""What a search found: one typed value, `Tuned`, that the Markdown table, the terminal table
and the JSON file only render.

    tuned.chosen; tuned.final_mean, tuned.final_std   # chosen on validation, then tested
    tuned.test_choice; tuned.optimism                  # what choosing on the test set claims
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.spec import Spec
from mnistlab.tuning.search import OBJECTIVE, TrialEvent


@dataclass(frozen=True)
class Tuned:
    """A search's trials, the one chosen on validation accuracy, and its final runs: its spec
    trained on `seeds` and tested once each. `spec` is the final runs' spec (seed: the first)."""

    space: str
    dataset: str
    storage: str  # its password hidden
    trials: tuple[TrialEvent, ...]  # every trial of the study, by number
    chosen: int  # the trial with the best validation accuracy
    spec: Spec
    refit: bool  # the final runs trained on the whole training set
    seeds: tuple[int, ...]
    accuracies: tuple[float, ...]  # test accuracy of the final runs, by seed
    search_seconds: float  # this session's search, wall-clock
    final_seconds: float  # training and testing the final runs in this session
    workers: int
    machine: str = field(
        default_factory=lambda: f"{platform.machine()}, {os.cpu_count()} CPU cores"
    )
    path: Path | None = field(default=None, compare=False)
    left_out: dict[str, str] = field(default_factory=dict, compare=False)  # plot: why not drawn

    def count(self, state: str) -> int:
        return sum(t.state == state for t in self.trials)

    def trial(self, number: int) -> TrialEvent:
        return next(t for t in self.trials if t.number == number)

    @property
    def finished(self) -> list[TrialEvent]:
        return [t for t in self.trials if t.state == "finished"]

    @property
    def best(self) -> TrialEvent:
        return self.trial(self.chosen)

    @property
    def final_mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def final_std(self) -> float:
        """Sample standard deviation (n - 1); 0 for one seed."""
        return float(np.std(self.accuracies, ddof=1)) if len(self.accuracies) > 1 else 0.0

    @property
    def test_choice(self) -> TrialEvent:
        """The finished trial with the best test accuracy: what a search that peeked at the
        test set would have chosen, and claimed."""
        return max(self.finished, key=lambda t: (t.test, -t.number))

    @property
    def optimism(self) -> float:
        """How much higher the test-chosen trial's test accuracy is than the validation-chosen
        trial's own, on the same footing (one run each, seed 0, the same training images)."""
        return self.test_choice.test - self.best.test

    def to_json(self) -> dict[str, Any]:
        def clean(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {
            "space": self.space,
            "dataset": self.dataset,
            "storage": self.storage,
            "objective": OBJECTIVE,
            "trials": {state: self.count(state) for state in ("finished", "pruned", "failed")},
            "chosen": {
                "trial": self.chosen,
                "validation_accuracy": self.best.validation,
                "test_accuracy_of_its_trial": clean(self.best.test),
                "params": self.best.params,
            },
            "final": {
                "spec": self.spec.to_dict(),
                "refit": self.refit,
                "seeds": list(self.seeds),
                "test_accuracies": list(self.accuracies),
                "mean": self.final_mean,
                "std": self.final_std,
            },
            "test_choice": {
                "trial": self.test_choice.number,
                "test_accuracy": self.test_choice.test,
                "optimism": self.optimism,
            },
            "search_seconds": round(self.search_seconds, 1),
            "final_seconds": round(self.final_seconds, 1),
            "workers": self.workers,
            "machine": self.machine,
            "all_trials": [
                {
                    "number": t.number,
                    "state": t.state,
                    "validation_accuracy": clean(t.validation),
                    "test_accuracy": clean(t.test),
                    "epochs": t.epochs,
                    "seconds": clean(t.seconds),
                    "params": t.params,
                    "worker": t.worker,
                    "error": t.error,
                }
                for t in self.trials
            ],
        }
