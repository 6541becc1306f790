"""What people look at: figures, the report page and the results tables.

    report(target, out)   # a Run, a run folder, a sweep's Results or folder -> index.html

`figures` draws PNG files, `page` makes the self-contained HTML report, `tables` renders a
`Results` value as Markdown, CSV, JSON, HTML or a terminal table. The lab's notebook, a front
that runs the whole lab, is `mnistlab.notebook`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mnistlab.data import Dataset
    from mnistlab.results import Results
    from mnistlab.runs import Run


def report(
    target: str | Path | Results | Run,
    out: str | Path | None = None,
    load: Callable[[str], Dataset] | None = None,
) -> Path:
    """Write the report of a run or a sweep (figures and `index.html`) to `out`, by default the
    folder's `report/`; returns the page. See `page.make`."""
    from mnistlab.reports.page import make

    page, _ = make(target, out, load)
    return page
