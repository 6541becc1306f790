"""Renderers of one `Results` value: Markdown, CSV, JSON, HTML and a terminal table. Each cell's
text comes from `cells`, so every rendering says the same thing.

    write_results(results, folder)   # results.md, .csv, .json and accuracy.png, atomically
"""

from __future__ import annotations

import html as html_lib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from mnistlab import runs
from mnistlab.files import check_writable, write_text
from mnistlab.results import SIGNIFICANCE, Results, Row, fmt_p, format_duration
from mnistlab.text import plural

if TYPE_CHECKING:
    from rich.table import Table

HEADER = (
    "variant",
    "parameters",
    "epochs",
    "validation accuracy (mean)",
    "test accuracy (mean ± std)",
    "min",
    "max",
    "seeds",
    "mean seconds",
    "vs baseline",
    "Welch p",
    "verdict",
)
RIGHT = set(HEADER[1:-1])  # numbers: right-aligned


def cells(row: Row, baseline: str) -> list[str]:
    """One row's cells, as every table shows them."""
    base = row.variant == baseline
    return [
        row.variant,
        f"{row.parameters:,}",
        str(row.epochs),
        "n/a" if math.isnan(row.validation) else f"{row.validation:.2%}",
        f"{row.mean:.2%} ± {row.std * 100:.2f}",
        f"{min(row.accuracies):.2%}",
        f"{max(row.accuracies):.2%}",
        str(len(row.accuracies)),
        f"{row.seconds:.1f}",
        "baseline" if base else f"{row.difference * 100:+.2f} pts",
        "" if base else fmt_p(row.p_value),
        row.verdict,
    ]


def facts_line(results: Results) -> str:
    return (
        f"Data set {results.dataset}; seeds {list(results.seeds)}; "
        f"{plural(results.runs, 'run')} on "
        f"{', '.join(results.backends)}; machine: {results.machine}; "
        f"training and evaluation time in all: {format_duration(results.wall_seconds)}."
    )


def best_line(results: Results, bold: bool = False) -> str:
    top = results.best
    name = f"**{top.variant}**" if bold else top.variant
    return (
        f"Best: {name}, {top.mean:.2%} ± {top.std * 100:.2f} over "
        f"{plural(len(top.accuracies), 'seed')}. {chosen_line(results)}"
    )


def chosen_line(results: Results) -> str:
    if results.chosen_on == "validation":
        return (
            f"Chosen on validation accuracy ({results.best.validation:.2%}), not on the test set."
        )
    return "Chosen on test accuracy: some runs held out no validation images."


TEST_LINE = (
    "Welch's t-test (two-sided, unequal variances) of each variant's test accuracies "
    f"against the baseline's; a difference counts at p < {SIGNIFICANCE}."
)


def markdown(results: Results) -> str:
    align = ["---:" if h in RIGHT else "---" for h in HEADER]
    lines = [f"# {results.title}", "", facts_line(results), ""]
    lines += ["| " + " | ".join(HEADER) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cells(r, results.baseline)) + " |" for r in results.rows]
    lines += ["", best_line(results, bold=True), "", TEST_LINE]
    if results.failed:
        lines += ["", "Failed runs (see `failed/`): " + "; ".join(results.failed)]
    return "\n".join(lines) + "\n"


def csv(results: Results) -> str:
    header = (
        "variant,parameters,epochs,mean_accuracy,std_accuracy,min_accuracy,max_accuracy,"
        "seeds,mean_seconds,difference,p_value,verdict,mean_validation_accuracy"
    )
    lines = [header]
    for r in results.rows:
        values = (
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
            "" if math.isnan(r.validation) else f"{r.validation:.6f}",
        )
        lines.append(",".join(str(v) for v in values))
    return "\n".join(lines) + "\n"


def html(results: Results) -> str:
    """The table as an HTML fragment, the best row marked, with its facts and verdict."""
    head = "<tr>" + "".join(f"<th>{html_lib.escape(h)}</th>" for h in HEADER) + "</tr>"
    body = []
    for r in results.rows:
        style = " class='best'" if r.variant == results.best.variant else ""
        row = "".join(f"<td>{html_lib.escape(c)}</td>" for c in cells(r, results.baseline))
        body.append(f"<tr{style}>{row}</tr>")
    return (
        f"<p>{html_lib.escape(facts_line(results))}</p>"
        f"<table class='results'>{head}{''.join(body)}</table>"
        f"<p>{html_lib.escape(best_line(results))} {html_lib.escape(TEST_LINE)}</p>"
    )


def terminal(results: Results) -> Table:
    """The table for a terminal, as a `rich` table (the best row in bold)."""
    from rich.table import Table

    table = Table(title=results.title, caption=f"{facts_line(results)}\n{best_line(results)}")
    for name in HEADER:
        table.add_column(name, justify="right" if name in RIGHT else "left")
    for r in results.rows:
        bold = r.variant == results.best.variant
        table.add_row(*cells(r, results.baseline), style="bold" if bold else None)
    return table


def write_results(results: Results, folder: Path) -> list[Path]:
    """results.md, results.csv, results.json and accuracy.png in the sweep folder `folder`."""
    from mnistlab.reports.figures import accuracy_by_variant

    check_writable(folder, folder=True)
    files = runs.SweepFolder(folder)
    write_text(files.results_md, markdown(results))
    write_text(files.results_csv, csv(results))
    write_text(files.results_json, json.dumps(results.to_json(), indent=2) + "\n")
    accuracy_by_variant(results.rows, results.baseline, results.title, files.accuracy_png)
    return files.results_files
