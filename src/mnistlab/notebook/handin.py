"""Reading a hand-in without trusting it, for `notebook.check`: the file as bounded JSON
(`read`), its code with `ast` (parsed, never run: `Reader`), and the accuracies its outputs
print and its texts state (`Figure`).

    cells = read(Path("alice.ipynb"))     # or Unreadable("damaged JSON: ... at line 3, ...")
    reader = Reader(); [reader.read(c.source) for c in cells if c.kind == "code"]
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnistlab.errors import MnistlabError
from mnistlab.files import open_regular

MAX_BYTES = 64 * 2**20  # a hand-in above this is not read: the lab's executed notebook is 0.6 MB
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # Keras's and IPython's colours in outputs


class Unreadable(Exception):
    """The file is not a notebook that can be checked; the message says why."""


@dataclass
class Cell:
    index: int  # from 0
    kind: str  # "code", "markdown" or "raw"
    source: str
    count: int | None = None  # the execution count, for code
    text: str = ""  # the outputs as text: streams, text/plain, text/markdown
    errors: list[str] = field(default_factory=list)  # "ValueError: boom", one per error output
    part: str = ""  # the `## ` heading above it, "Part 6: The model"
    section: str = ""  # the nearest heading above it, of any level

    @property
    def number(self) -> int:
        """The cell's place as a reader counts, from 1."""
        return self.index + 1

    @property
    def where(self) -> str:
        """ "cell 14 (Part 6)", for a finding."""
        short = self.part.split(":")[0].strip()
        return f"cell {self.number}" + (f" ({short})" if short else "")

    @property
    def heading(self) -> bool:
        return self.kind == "markdown" and self.source.lstrip().startswith("#")


def read(path: Path, max_bytes: int = MAX_BYTES) -> list[Cell]:
    """The hand-in's cells, or `Unreadable` saying why not; at most `max_bytes` are read, of
    a regular file only (a named pipe waited for a writer)."""
    try:
        with open_regular(path, "a notebook") as f:
            raw = f.read(max_bytes + 1)
    except OSError as e:
        raise Unreadable(f"cannot be read: {e.strerror or e}") from None
    except MnistlabError as e:
        raise Unreadable(e.problem.removeprefix(f"cannot read {path}: ")) from None
    if len(raw) > max_bytes:
        raise Unreadable(f"larger than {max_bytes / 2**20:g} MB: not read")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise Unreadable(f"not text: byte {e.start} is not UTF-8") from None
    except json.JSONDecodeError as e:
        raise Unreadable(f"damaged JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except RecursionError:
        raise Unreadable("damaged JSON: nested too deep") from None
    return cells_of(data)


def cells_of(data: Any) -> list[Cell]:
    """The cells of a notebook's JSON (nbformat 4), each checked for the fields used."""
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise Unreadable("JSON, but not a notebook: it has no list of cells")
    if data.get("nbformat") != 4:
        version = data.get("nbformat")
        raise Unreadable(f"a notebook of format {version!r}, not 4: open it in Jupyter, save it")
    cells, part, section = [], "", ""
    for index, raw in enumerate(data["cells"]):
        where = f"cell {index + 1}"
        if not isinstance(raw, dict) or raw.get("cell_type") not in ("code", "markdown", "raw"):
            raise Unreadable(f"{where} is not a notebook cell")
        cell = Cell(index, raw["cell_type"], joined(raw.get("source", ""), where))
        if cell.heading:
            section = cell.source.lstrip().splitlines()[0].lstrip("#").strip()
            part = section if cell.source.lstrip().startswith("## ") else part
        cell.part, cell.section = part, section
        if cell.kind == "code":
            count = raw.get("execution_count")
            cell.count = count if type(count) is int else None
            outputs = raw.get("outputs", [])
            if not isinstance(outputs, list):
                raise Unreadable(f"{where}: its outputs are not a list")
            texts = []
            for output in outputs:
                text, error = output_text(output, where)
                texts.append(text)
                cell.errors += [error] if error is not None else []
            cell.text = ANSI.sub("", "".join(texts))
        cells.append(cell)
    return cells


def joined(value: Any, what: str) -> str:
    """nbformat's multi-line strings: a string, or a list of strings."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)
    raise Unreadable(f"{what} is not text")


def output_text(output: Any, where: str) -> tuple[str, str | None]:
    """An output's text for people, and its error line if it is an error."""
    if not isinstance(output, dict):
        raise Unreadable(f"{where}: an output is not a JSON object")
    kind = output.get("output_type")
    if kind == "stream":
        return joined(output.get("text", ""), f"{where}'s output"), None
    if kind in ("execute_result", "display_data"):
        data = output.get("data", {})
        if not isinstance(data, dict):
            raise Unreadable(f"{where}: an output's data is not a JSON object")
        kinds = [m for m in ("text/plain", "text/markdown") if m in data]
        return "\n".join(joined(data[m], f"{where}'s {m}") for m in kinds) + "\n", None
    if kind == "error":
        error = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".strip()
        return "", ANSI.sub("", error)
    raise Unreadable(f"{where}: an output of unknown type {kind!r}")


# ---------------------------------------------------------------------------------------------
# The code: models and their training


@dataclass(frozen=True)
class Model:
    hidden: tuple[int, ...] | None  # units of each hidden Dense layer; None: not readable
    dropout: float | None  # the largest Dropout rate, 0 for none; None: a rate not readable

    def describe(self) -> str:
        if self.hidden is None:
            return "layers not readable"
        text = "-".join(map(str, self.hidden)) or "no hidden layer"
        if self.dropout is None:
            return text + ", dropout of a rate not readable"
        return text + (f", dropout {self.dropout:g}" if self.dropout else "")


@dataclass(frozen=True)
class Fit:
    model: Model | None  # None: trained by a name no Sequential was given to
    epochs: int | None  # None: not readable


@dataclass
class Code:
    """What one code cell does with models, in order."""

    models: list[tuple[str, Model]] = field(default_factory=list)  # built here, by name
    fits: list[Fit] = field(default_factory=list)
    epochs: int | None = None  # an `epochs=` given to a call other than fit
    placeholders: list[str] = field(default_factory=list)  # `name = ...`, as the student got it
    parsed: bool = True


class Reader:
    """Reads code cells in order, keeping the models built so far by name and the names set
    to numbers (`EPOCHS = 5`), so that a later cell's `model.fit(epochs=EPOCHS)` is read."""

    def __init__(self) -> None:
        self.constants: dict[str, float] = {}
        self.layers: dict[str, list[tuple[str, float | None]]] = {}

    def read(self, source: str) -> Code:
        code = Code()
        try:
            tree = ast.parse(magic_free(source))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            code.parsed = False
            return code
        assigned: dict[
            int, str
        ] = {}  # the call each name is set to, for `model = keras.Sequential([...])`
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                (target,) = node.targets
                if isinstance(target, ast.Name):
                    assigned[id(node.value)] = target.id
                    if (value := number(node.value, {})) is not None:
                        self.constants[target.id] = value
                if is_placeholder(node.value):
                    code.placeholders.append(ast.unparse(target))
        for call in in_order(tree):
            name, owner = called(call.func), receiver(call.func)
            epochs = next((k.value for k in call.keywords if k.arg == "epochs"), None)
            if name == "Sequential" and id(call) in assigned:
                built = assigned[id(call)]
                given = argument(call, 0, "layers")
                self.layers[built] = layers_in(given, self.constants) if given else []
                code.models.append((built, model_of(self.layers[built])))
            elif name == "add" and owner in self.layers and call.args:
                self.layers[owner] += layers_in(call.args[0], self.constants)
                code.models.append((owner, model_of(self.layers[owner])))
            elif name == "fit":
                model = model_of(self.layers[owner]) if owner in self.layers else None
                value = number(epochs, self.constants) if epochs is not None else 1.0  # Keras's
                code.fits.append(Fit(model, int(value) if value is not None else None))
            elif epochs is not None and (value := number(epochs, self.constants)) is not None:
                code.epochs = int(value)
        return code


def magic_free(source: str) -> str:
    """IPython's `%magic` and `!shell` lines blanked (a `%%cell` magic: all of it), so that
    `ast` reads the rest."""
    lines = source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        return ""
    return "\n".join("" if line.lstrip()[:1] in ("%", "!") else line for line in lines)


def is_placeholder(node: ast.expr) -> bool:
    """`...`, or `..., ...`: a blank of the student's notebook."""
    values = node.elts if isinstance(node, ast.Tuple) else [node]
    return all(isinstance(v, ast.Constant) and v.value is Ellipsis for v in values)


def in_order(tree: ast.AST) -> list[ast.Call]:
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    return sorted(calls, key=lambda n: (n.lineno, n.col_offset))


def called(node: ast.expr) -> str:
    """The name a call is made by: `keras.layers.Dense(...)` -> "Dense"."""
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def receiver(node: ast.expr) -> str | None:
    """The name a method is called on: `wide.fit(...)` -> "wide"."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.value.id
    return None


def argument(call: ast.Call, position: int, keyword: str) -> ast.expr | None:
    if len(call.args) > position:
        return call.args[position]
    return next((k.value for k in call.keywords if k.arg == keyword), None)


def number(node: ast.expr | None, constants: dict[str, float]) -> float | None:
    """A literal number, or a name set to one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return None if isinstance(node.value, bool) else float(node.value)
    return constants.get(node.id) if isinstance(node, ast.Name) else None


def layers_in(node: ast.expr, constants: dict[str, float]) -> list[tuple[str, float | None]]:
    """("dense", units) and ("dropout", rate) for the layers built in `node`, in order."""
    found = []
    for call in in_order(node):
        if (name := called(call.func)) == "Dense":
            found.append(("dense", number(argument(call, 0, "units"), constants)))
        elif name == "Dropout":
            found.append(("dropout", number(argument(call, 0, "rate"), constants)))
    return found


def model_of(layers: list[tuple[str, float | None]]) -> Model:
    """The last Dense layer is the output; the others are hidden."""
    units = [u for kind, u in layers if kind == "dense"]
    rates = [r for kind, r in layers if kind == "dropout"]
    hidden = tuple(int(u) for u in units[:-1] if u is not None)
    readable = bool(units) and None not in units
    dropout = None if None in rates else max((r for r in rates if r is not None), default=0.0)
    return Model(hidden if readable else None, dropout)


# ---------------------------------------------------------------------------------------------
# Accuracies, printed and stated


@dataclass(frozen=True)
class Figure:
    """An accuracy as written: its value as a fraction, and the place of its last digit."""

    value: float
    shown: str  # as written: "0.9765", "97.65%"
    unit: float  # 0.0001 for both of those

    def states(self, printed: Figure) -> bool:
        """Whether this figure, from a text, states `printed`, from an output, within
        rounding: rounded or cut to fewer digits, so 97.6% and 97.7% both state 0.9765."""
        return abs(self.value - printed.value) <= self.unit + printed.unit / 2 + 1e-9

    @property
    def percent(self) -> str:
        return f"{self.value:.2%}"


def figure(digits: str, percent: bool) -> Figure:
    decimals = len(digits.partition(".")[2])
    value, unit = float(digits), 10.0**-decimals
    if percent or value > 1:  # 97.65% or 97.65
        value, unit = value / 100, unit / 100
    return Figure(value, digits + ("%" if percent else ""), unit)


# "Test accuracy: 0.9765", "test_acc = 97.65%", "Test accuracy on fashion-mnist: 0.8485"
PRINTED = re.compile(
    r"test[ _-]?acc(?:uracy)?\b[^:=\n]{0,40}?[:=]\s*(?:np\.float\d*\()?(\d+(?:\.\d+)?)\s*(%)?",
    re.I,
)
# in a text: 97.65%, 97.65 % or 97.65 percent, or 0.9765 (two decimals at least: not a dropout
# rate of 0.2), but not a version number (0.10.2)
STATED = re.compile(
    r"(?<![\d.])(\d{1,3}(?:\.\d+)?)\s?(?:%|percent\b)|(?<![\d.])(0\.\d{2,})(?!\.?\d)", re.I
)


def printed_accuracies(text: str) -> list[Figure]:
    """The "Test accuracy: 0.9765" lines of an output, in order."""
    found = [figure(m[1], bool(m[2])) for m in PRINTED.finditer(text)]
    return [f for f in found if 0 <= f.value <= 1]


def stated_accuracies(text: str) -> list[Figure]:
    """The figures in a text that can be accuracies: 97.6%, 0.9765; not a loss (0.0812)."""
    found = [
        figure(m[1], True) if m[1] else figure(m[2], False)
        for m in STATED.finditer(text)
        if m[1] or "loss" not in text[max(0, m.start() - 12) : m.start()].lower()
    ]
    return [f for f in found if 0 <= f.value <= 1]
