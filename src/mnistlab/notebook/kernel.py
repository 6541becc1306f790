"""The two helpers the lab's notebook imports in its setup cell: `show` a figure file, and `keep`
the values its text cells are written from. They run in the notebook's kernel.

`keep(test_accuracy=0.9731, ...)` displays one output with two representations: a line for
people ("For the text: test_accuracy = 0.9731, ...") and a JSON bundle of type `VALUES_MIME`,
which `notebook.fill` reads after the run to write each text cell. Every `keep` sits in a code
cell of its own right above the text it feeds, with its input hidden (`lab.py` says
how), so a reader sees the lab's code, its output, the values line, then the text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

VALUES_MIME = "application/vnd.mnistlab.values+json"


def show(path: Path) -> None:
    """Display a PNG file in the cell's output (embedded in the notebook)."""
    from IPython.display import Image, display

    display(Image(filename=str(path)))


def keep(**values: Any) -> None:
    """Show JSON-able values for the text cells; mnistlab writes them in after the run."""
    from IPython.display import display

    line = ", ".join(f"{name} = {value}" for name, value in values.items())
    display({"text/plain": f"For the text: {line}", VALUES_MIME: values}, raw=True)
