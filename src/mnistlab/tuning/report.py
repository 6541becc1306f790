"""Renderers of one `Tuned` value, and the files a search writes in its folder:

results.md     the summary and a row per trial (Markdown); `terminal` is the same for a TTY
results.json   every figure of `Tuned`, and every trial
best-spec.toml the chosen spec as its final runs trained it: `mnistlab train --spec FILE`
history.png, importances.png, parallel.png, intermediate.png: Optuna's own plots
  (optuna.visualization.matplotlib): the best validation accuracy over the trials, each
  parameter's importance (fANOVA), the trials on parallel axes, and each trial's
  validation accuracy by epoch (where the pruned ones stopped)
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mnistlab.files import write_text
from mnistlab.results import format_duration
from mnistlab.text import plural
from mnistlab.tuning.outcome import Tuned
from mnistlab.tuning.search import OBJECTIVE, TrialEvent, quiet

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure
    from rich.console import Group

RESULTS_MD = "results.md"
RESULTS_JSON = "results.json"
BEST_SPEC = "best-spec.toml"
FIGURES = ("history.png", "importances.png", "parallel.png", "intermediate.png")
HEADER = ("trial", "state", "validation accuracy", "test accuracy (not used to choose)")
AFTER = ("epochs run", "seconds")
MAX_LEGEND = 12  # entries; the intermediate values' plot names every trial


def percent(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.2%}"


def value(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def facts(tuned: Tuned) -> list[str]:
    """The sentences every rendering states before its table."""
    best, peek = tuned.best, tuned.test_choice
    trials = f"{tuned.count('finished')} trials finished, {tuned.count('pruned')} pruned" + (
        f", {tuned.count('failed')} failed" if tuned.count("failed") else ""
    )
    final = "retrained on the whole training set" if tuned.refit else "trained as in the search"
    return [
        f"Study {tuned.space} in {tuned.storage}: {trials}. This session searched for "
        f"{format_duration(tuned.search_seconds)} with {plural(tuned.workers, 'worker')} and "
        f"trained the final runs in "
        f"{format_duration(tuned.final_seconds)}; machine: {tuned.machine}.",
        f"Each trial trained with seed 0 and was scored by its {OBJECTIVE} on the held-out "
        f"part of the training set; the test set chose nothing.",
        f"Chosen on validation: trial {best.number}, {best.validation:.2%} validation accuracy "
        f"({', '.join(f'{k}={value(v)}' for k, v in best.params.items())}).",
        f"Its final runs, {final}, on seeds {', '.join(map(str, tuned.seeds))}: "
        f"{tuned.final_mean:.2%} ± {tuned.final_std * 100:.2f} test accuracy.",
        f"Had the test set chosen: trial {peek.number} claimed {peek.test:.2%}; trial "
        f"{best.number}'s own run scored {best.test:.2%} on the same footing (seed 0, the same "
        f"training images): {tuned.optimism * 100:+.2f} pts of optimism.",
    ]


def ordered(tuned: Tuned) -> list[TrialEvent]:
    """Finished trials by validation accuracy, then the pruned and the failed by number."""
    rank = {"finished": 0, "pruned": 1}
    return sorted(
        tuned.trials,
        key=lambda t: (
            rank.get(t.state, 2),
            -t.validation if t.state == "finished" else 0,
            t.number,
        ),
    )


def columns(tuned: Tuned) -> list[str]:
    names: list[str] = []
    for t in tuned.trials:
        names += [k for k in t.params if k not in names]
    return [*HEADER, *AFTER, *names]


def cells(tuned: Tuned, t: TrialEvent, names: list[str]) -> list[str]:
    marks = (("chosen", tuned.chosen), ("best on test", tuned.test_choice.number))
    state = ", ".join([t.state, *(mark for mark, n in marks if n == t.number)])
    shown = percent(t.validation) + (" (when pruned)" if t.state == "pruned" else "")
    return [
        str(t.number),
        state if not t.error else f"{state}: {t.error}",
        shown,
        percent(t.test),
        str(t.epochs),
        "" if math.isnan(t.seconds) else f"{t.seconds:.0f}",
        *(value(t.params[k]) if k in t.params else "" for k in names[len(HEADER) + 2 :]),
    ]


def markdown(tuned: Tuned) -> str:
    names = columns(tuned)
    align = ["---" if n == "state" else "---:" for n in names]
    lines = [f"# Search {tuned.space} on {tuned.dataset}", "", *facts(tuned), ""]
    lines += ["| " + " | ".join(names) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cells(tuned, t, names)) + " |" for t in ordered(tuned)]
    return "\n".join(lines) + "\n"


def terminal(tuned: Tuned) -> Group:
    """The same for a terminal: the facts, then a `rich` table (the chosen trial in bold)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    names = columns(tuned)
    table = Table(title=f"Search {tuned.space} on {tuned.dataset}")
    for name in names:
        table.add_column(name, justify="left" if name == "state" else "right")
    for t in ordered(tuned):
        table.add_row(*cells(tuned, t, names), style="bold" if t.number == tuned.chosen else None)
    return Group(table, *(Text(line) for line in facts(tuned)))


def spec_file(tuned: Tuned) -> str:
    best = tuned.best
    how = "the whole training set" if tuned.refit else "the search's training images"
    return (
        f"# Chosen by `mnistlab tune {tuned.space}` on validation accuracy alone: trial "
        f"{best.number} ({best.validation:.2%}).\n"
        f"# Its final runs ({how}, seeds {', '.join(map(str, tuned.seeds))}): "
        f"{tuned.final_mean:.2%} ± {tuned.final_std * 100:.2f} test accuracy.\n"
        f"# Train it: mnistlab train --spec {BEST_SPEC}\n" + tuned.spec.to_toml()
    )


def figures(study: optuna.Study, folder: Path) -> dict[str, str]:
    """Optuna's plots of the study as PNG files; a plot that the trials cannot make yet (the
    importances need two finished trials) or this install cannot (fANOVA's importances need
    scikit-learn) is left out, with the reason."""
    from optuna.visualization import matplotlib as plots

    from mnistlab.reports.figures import write_figure

    makers: tuple[Callable[[optuna.Study], Any], ...] = (
        plots.plot_optimization_history,
        plots.plot_param_importances,
        plots.plot_parallel_coordinate,
        plots.plot_intermediate_values,
    )
    skipped = {}
    with quiet(), warnings.catch_warnings():
        # Trials that all scored the same make a flat axis, which matplotlib widens, saying so
        warnings.filterwarnings("ignore", "Attempting to set identical", UserWarning)
        for name, make in zip(FIGURES, makers, strict=True):
            try:
                axes = make(study)
            except (ImportError, ValueError, RuntimeError, ZeroDivisionError) as e:
                skipped[name] = f"{type(e).__name__}: {e}"
                continue
            legend = axes.get_legend()
            if legend is not None and len(legend.get_texts()) > MAX_LEGEND:
                legend.remove()  # a name per trial: it would crowd the curves out
            figure = cast("Figure", axes.figure)  # each of these plots is one Axes
            figure.set_size_inches(10, 6)
            write_figure(figure, folder / name)
    return skipped


def write(tuned: Tuned, study: optuna.Study, folder: Path) -> dict[str, str]:
    """results.md, results.json, best-spec.toml and the plots, each written atomically; the
    plots left out, with the reason."""
    write_text(folder / RESULTS_MD, markdown(tuned))
    write_text(folder / RESULTS_JSON, json.dumps(tuned.to_json(), indent=2) + "\n")
    write_text(folder / BEST_SPEC, spec_file(tuned))
    return figures(study, folder)
