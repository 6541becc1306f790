"""What `notebook.check` found, rendered: a line per finding and a summary per hand-in
(`lines`), a table of hand-ins for a terminal (`terminal`) or in Markdown (`markdown`), JSON
(`to_json`) and one HTML page (`page`). They only render the `HandIn` values; none decides.

A table cell is "ok" when every finding of its column passed, else the number that failed
("1 failed"); "–" when the column has none (a file that is not a notebook).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from mnistlab.notebook.check import GROUPS, HandIn

COLUMNS = [g for g in GROUPS if g != "notebook"]


def summary(handin: HandIn) -> str:
    total, failed = len(handin.findings), len(handin.failed)
    if handin.passed:
        return f"{handin.path}: pass, all {total} checks"
    return f"{handin.path}: FAIL, {failed} of {total} checks failed"


def lines(handin: HandIn) -> list[str]:
    """The hand-in's name, a line per finding, and the summary."""
    width = max(len(g) for g in GROUPS)
    found = [
        f"  {'ok  ' if f.passed else 'FAIL'}  {f.group:<{width}}  {f.message}"
        for f in handin.findings
    ]
    return [str(handin.path), *found, summary(handin)]


def columns(handins: Sequence[HandIn]) -> list[str]:
    used = {f.group for h in handins for f in h.findings}
    return [c for c in COLUMNS if c != "rerun" or c in used]


def cell(handin: HandIn, group: str) -> str:
    findings = handin.group(group)
    if not findings:
        return "–"
    failed = sum(not f.passed for f in findings)
    return f"{failed} failed" if failed else "ok"


def rows(handins: Sequence[HandIn]) -> tuple[list[str], list[list[str]]]:
    shown = columns(handins)
    header = ["hand-in", "result", *shown, "failed"]
    body = [
        [
            handin.path.name,
            "pass" if handin.passed else "FAIL",
            *(cell(handin, g) for g in shown),
            str(len(handin.failed)),
        ]
        for handin in handins
    ]
    return header, body


def markdown(handins: Sequence[HandIn]) -> str:
    header, body = rows(handins)
    passed = sum(h.passed for h in handins)
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join([*out, "", f"{passed} of {len(handins)} hand-ins pass."]) + "\n"


def terminal(handins: Sequence[HandIn]) -> Any:
    """The table as a `rich` table, failures in red."""
    from rich.table import Table

    header, body = rows(handins)
    passed = sum(h.passed for h in handins)
    table = Table(caption=f"{passed} of {len(handins)} hand-ins pass")
    for name in header:
        table.add_column(name)
    for row in body:
        table.add_row(*row, style=None if row[1] == "pass" else "red")
    return table


def to_json(handins: Sequence[HandIn]) -> dict[str, Any]:
    return {
        "handins": [h.to_json() for h in handins],
        "passed": sum(h.passed for h in handins),
        "failed": sum(not h.passed for h in handins),
    }


STYLE = """body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
.fail { color: #b00020; } .ok { color: #1b5e20; }
li { margin: .15em 0; } code { font-size: 90%; }"""


def page(handins: Sequence[HandIn], title: str = "Hand-ins checked") -> str:
    """One HTML page: the table, then each hand-in's findings. No script, nothing fetched."""
    header, body = rows(handins)
    e = html.escape
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>{sum(h.passed for h in handins)} of {len(handins)} hand-ins pass.</p>",
        "<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>",
    ]
    for i, row in enumerate(body):
        kind = "ok" if row[1] == "pass" else "fail"
        link = f'<a href="#h{i}">{e(row[0])}</a>'
        cells = [link, *(e(v) for v in row[1:])]
        out.append(f'<tr class="{kind}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    for i, handin in enumerate(handins):
        out.append(f'<h2 id="h{i}">{e(str(handin.path))}</h2><ul>')
        for f in handin.findings:
            kind = "ok" if f.passed else "fail"
            mark = "ok" if f.passed else "FAIL"
            out.append(f'<li class="{kind}"><b>{mark}</b> {e(f.group)}: {e(f.message)}</li>')
        out.append(f"</ul><p><b>{e(summary(handin))}</b></p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
