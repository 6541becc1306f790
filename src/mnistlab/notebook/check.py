"""A student's hand-in, checked without running it: `check(path)` reads an executed notebook and
returns a `HandIn`, a `Finding` for each thing the lab asks for; `notebook.verdict` renders it
(lines, a table, JSON, a page) for `mnistlab check`.

    handin = check("alice.ipynb")                      # reads the file; runs nothing
    handin.passed, [f.message for f in handin.failed]

Nothing in the file is trusted or run: it is read as JSON, at most `handin.MAX_BYTES`, its code
with `ast` and its outputs as text (`notebook.handin`). What is checked, and how:

- run: every code cell ran, in order, in one session: execution counts 1, 2, 3... with no gap
  (a gap means a cell ran twice, or ran and was deleted), no code cell unrun, no error output.
- answers: no `...` placeholder or comment-only `# TODO:` cell of the student's notebook is
  left, and no text cell still says "Your answer here.".
- lab: the outputs show the shapes, (60000, 28, 28), (60000,), (10000, 28, 28), (10000,) and,
  flattened, (60000, 784) and (10000, 784); the first cell that divides by 255 shows 0.0 and
  1.0; 101,770 (the lab's model) and 50,890 (64 units) appear in the outputs, and 50,890 in a
  text too; the first prediction is 7 (Ankle boot on Fashion-MNIST): the first line saying
  "predict..." in the output of a cell that calls `predict(`.
- experiments: the models trained after the lab's model, and how each differs from it. The
  lab's model is the one the first `.fit(` trains, and its accuracy the first "Test accuracy"
  line from there on (Part 9). After it, each run of code cells between two texts that builds
  or trains a model is an experiment, read from its code: the `Sequential([...])` given to a
  name (and that name's `.add(...)`s) with its `Dense` sizes, the last one the output, and
  `Dropout`s; the epochs of the `.fit(` on that name (or another call's `epochs=`, for a
  helper of the student's). Literals and names set to them (`EPOCHS = 5`) are read, anything
  else is reported as unreadable. Or the experiments ran in
  mnistlab's experiment runner, as in the reference notebook: then the experiment file it
  prints (parsed as `mnistlab experiment` reads it) says what each variant changes, and the
  results table its mean accuracy. A wider first hidden layer, more hidden layers, more
  epochs, a Dropout: each of the lab's four ideas must be among them (a combination counts
  for each of its changes).
- texts: each model's accuracy, the last "Test accuracy: 0.9765" line (or 97.65%) its cells
  print, or the runner's mean, is stated by the text right below them, within rounding:
  97.6%, 97.7% and 97.65% all state 0.9765; 97.56% does not.
- best: the text under the Conclusion heading names the model with the highest accuracy, in
  bold or else anywhere, by its own name or by words for its change ("wider", "dropout").
- bonus: a part on the other data set (the cells under a heading that says Bonus, else from
  the first cell that loads it) prints its test accuracy, and its text states it.

`sample=True` is for notebooks run on a sample of the data (`mnistlab notebook --sample-data`,
or a class's smaller set): the sizes are read from the notebook's own shapes output and the
others must agree with them, and the first prediction may be any class. `rerun_limits` (a
`Limits`) also runs the notebook again, in a fresh kernel under a time and memory limit
(`mnistlab.limits`), in a temporary folder, and compares what it prints with what was handed
in: the same shapes, counts and first prediction, each accuracy (and each mean of the
runner's table) within `RERUN_TOLERANCE`. That runs
the hand-in's code, which can do whatever its user can: the command says so first.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnistlab.errors import MnistlabError
from mnistlab.limits import Limits
from mnistlab.notebook import ANSWER
from mnistlab.notebook.handin import (
    MAX_BYTES,
    Cell,
    Code,
    Figure,
    Model,
    Reader,
    Unreadable,
    cells_of,
    figure,
    printed_accuracies,
    read,
    stated_accuracies,
)

PARAMETERS = 101_770  # the lab's model: 784 x 128 + 128 + 128 x 10 + 10
SMALL_PARAMETERS = 50_890  # the same with 64 units
# A model trained again differs by the draw of its seed: over 5 seeds the widest range of the
# lab's experiments is 1.03 points (deep-128-64, 96.55% to 97.58%, docs/results.md).
RERUN_TOLERANCE = 0.011
IDEAS = {  # the lab's four ideas, as a finding names them
    "wider": "a wider layer",
    "second layer": "a second layer",
    "more epochs": "more epochs",
    "dropout": "dropout",
}
WORDS = {  # words a text may name a model by, for what it changes
    "baseline": ("baseline", "lab's model", "lab model", "lab's recipe", "original model"),
    "wider": ("wider", "wide", "more units", "wider layer"),
    "second layer": ("second layer", "two layers", "2 layers", "two hidden layers", "deeper"),
    "more epochs": ("more epochs", "longer training", "trained longer"),
    "dropout": ("dropout",),
}
GROUPS = ("notebook", "run", "answers", "lab", "experiments", "texts", "best", "bonus", "rerun")


@dataclass(frozen=True)
class Lab:
    """What the lab's outputs show on one data set."""

    train: int = 60_000
    test: int = 10_000
    first: tuple[str, ...] = ("7",)  # test image 0's class, as a number or a name
    bonus: str = r"fashion[-_ ]?mnist"  # how the bonus part names its data set
    bonus_title: str = "Fashion-MNIST"


LABS = {
    "mnist": Lab(),
    "fashion-mnist": Lab(
        first=("9", "Ankle boot"), bonus=r"datasets\.mnist\b|(?<![\w-])mnist\b", bonus_title="MNIST"
    ),
}


@dataclass(frozen=True)
class Finding:
    group: str  # of GROUPS: the table's column it counts in
    name: str  # what was checked: "shapes", "dropout", "text: wide-256"
    passed: bool
    message: str
    cell: int | None = None  # the cell it is about, counted from 1 as a reader counts

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def ok(group: str, name: str, message: str, cell: Cell | None = None) -> Finding:
    return Finding(group, name, True, message, cell.number if cell else None)


def fail(group: str, name: str, message: str, cell: Cell | None = None) -> Finding:
    return Finding(group, name, False, message, cell.number if cell else None)


@dataclass(frozen=True)
class HandIn:
    """One hand-in's findings: it passes when every one does."""

    path: Path
    findings: tuple[Finding, ...]
    dataset: str = "mnist"
    sample: bool = False

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.findings)

    @property
    def failed(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.passed)

    def group(self, name: str) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.group == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "passed": self.passed,
            "dataset": self.dataset,
            "sample": self.sample,
            "failed": len(self.failed),
            "findings": [f.to_json() for f in self.findings],
        }


# ---------------------------------------------------------------------------------------------
# Finding the lab's parts


@dataclass(frozen=True)
class Result:
    """A model's test accuracy as its cells print it, and the text that reports it."""

    name: str
    ideas: frozenset[str]  # of IDEAS, or "baseline"
    cell: Cell  # the cell that prints its accuracy, or that trains it
    accuracy: Figure | None
    text: Cell | None  # the text right below
    words: tuple[str, ...] = ()  # its own names, which a text may use, its first the likeliest
    problem: str = ""  # what the checker could not read about it
    validation: float | None = None  # mean validation accuracy, where mnistlab's table gives it


@dataclass
class Reading:
    """The cells, and the lab's parts found in them."""

    cells: list[Cell]
    codes: dict[int, Code]  # by cell index
    lab_model: Result | None = None
    experiments: list[Result] = field(default_factory=list)
    runner: Cell | None = None  # the cell that ran mnistlab's experiment runner, if any
    bonus: Result | None = None
    problems: list[Finding] = field(default_factory=list)

    @property
    def code(self) -> list[Cell]:
        return [c for c in self.cells if c.kind == "code"]

    def block(self, cell: Cell) -> list[Cell]:
        """`cell` and the code cells around it with no text between them."""
        start = end = cell.index
        while start > 0 and self.cells[start - 1].kind == "code":
            start -= 1
        while end + 1 < len(self.cells) and self.cells[end + 1].kind == "code":
            end += 1
        return self.cells[start : end + 1]

    def text_after(self, cell: Cell) -> Cell | None:
        """The text cell right after `cell`'s block, unless it is a heading."""
        after = self.block(cell)[-1].index + 1
        text = self.cells[after] if after < len(self.cells) else None
        return text if text and text.kind == "markdown" and not text.heading else None


def analyse(cells: list[Cell], lab: Lab) -> Reading:
    reader = Reader()
    reading = Reading(cells, {c.index: reader.read(c.source) for c in cells if c.kind == "code"})
    first_fit = next((c for c in reading.code if reading.codes[c.index].fits), None)
    if first_fit is None:
        return reading
    lab_fit = reading.codes[first_fit.index].fits[0]
    later = [c for c in reading.code if c.index >= first_fit.index]
    # the bonus part: under a heading that says so, else from the first cell that loads its data
    bonus = next((c for c in later if "bonus" in c.part.lower()), None) or next(
        (c for c in later if re.search(lab.bonus, uncommented(c.source))), None
    )
    end = bonus.index if bonus else len(cells)
    later, after_bonus = [c for c in later if c.index < end], [c for c in later if c.index >= end]
    # the lab's model: the first test accuracy printed from its training on
    shown = next((c for c in later if printed_accuracies(c.text)), first_fit)
    accuracy = printed_accuracies(shown.text)
    reading.lab_model = Result(
        "the lab's model",
        frozenset({"baseline"}),
        shown,
        accuracy[0] if accuracy else None,
        reading.text_after(shown),
    )
    seen = {c.index for c in reading.block(shown) + reading.block(first_fit)}
    for cell in later:
        block = reading.block(cell)
        if cell.index in seen or not any(
            reading.codes[c.index].fits or reading.codes[c.index].models for c in block
        ):
            continue
        seen |= {c.index for c in block}
        reading.experiments.append(experiment(reading, block, lab_fit.model, lab_fit.epochs))
    reading.runner = next((c for c in later if RESULTS_TABLE.search(c.text)), None)
    if reading.runner is not None:
        reading.experiments += runner_results(reading, reading.runner)
    if after_bonus and any(re.search(lab.bonus, c.source + c.text, re.I) for c in after_bonus):
        shown = next((c for c in after_bonus if printed_accuracies(c.text)), after_bonus[0])
        accuracy = printed_accuracies(shown.text)
        name = f"the bonus on {lab.bonus_title}"
        text = reading.text_after(shown)
        reading.bonus = Result(name, frozenset(), shown, accuracy[0] if accuracy else None, text)
    return reading


def uncommented(source: str) -> str:
    return "\n".join(line.split("#")[0] for line in source.splitlines())


GENERIC = {"model", "m", "net", "network", "nn", "clf", "classifier", "new_model"}


def experiment(
    reading: Reading, block: list[Cell], base: Model | None, base_epochs: int | None
) -> Result:
    """A run of code cells after the lab's model that builds or trains a model: what it
    changes, from its code, and the accuracy it prints."""
    codes = [reading.codes[c.index] for c in block]
    fits = [f for code in codes for f in code.fits]
    built = [m for code in codes for _, m in code.models]
    problems = []
    if len(set(fits)) > 1:
        problems.append("it trains several models: give each experiment its cells and a text")
    model = fits[-1].model if fits and fits[-1].model else (built[-1] if built else None)
    if fits:
        epochs = fits[-1].epochs
    else:  # built here, trained by a helper of the student's
        epochs = next((c.epochs for c in codes if c.epochs is not None), base_epochs)
    # its own names, for the conclusion: the names it was built as, unless as general as "model"
    names = [n.replace("_", " ") for c in codes for n, _ in c.models if n.lower() not in GENERIC]
    ideas, words = set(), names
    if model is None or model.hidden is None or base is None or base.hidden is None:
        problems.append("its layers cannot be read from the code")
    else:
        if model.hidden and base.hidden and model.hidden[0] > base.hidden[0]:
            ideas.add("wider")
            words.append(f"{model.hidden[0]} units")
        if len(model.hidden) > len(base.hidden):
            ideas.add("second layer")
            words.append("-".join(map(str, model.hidden)))
    if model is not None and model.dropout != 0:
        ideas.add("dropout")
    if epochs is None:
        problems.append("its epochs cannot be read from the code")
    elif base_epochs is not None and epochs > base_epochs:
        ideas.add("more epochs")
        words.append(f"{epochs} epochs")
    heading = re.sub(r"^experiment \d+\s*:\s*", "", block[0].section.lower())
    if heading and block[0].section != block[0].part:
        words.append(heading)
    parts = [model.describe()] if model and model.hidden is not None else []
    parts += [f"{epochs} epoch{'s' if epochs != 1 else ''}"] if epochs is not None else []
    name = " + ".join(i for i in IDEAS if i in ideas) or "no change"
    shown = [c for c in block if printed_accuracies(c.text)]
    accuracy = printed_accuracies(shown[-1].text)[-1] if shown else None
    return Result(
        f"{name} ({', '.join(parts)})" if parts else name,
        frozenset(ideas),
        shown[-1] if shown else block[-1],
        accuracy,
        reading.text_after(block[-1]),
        tuple(words),
        "; ".join(problems),
    )


# The validation column is new in mnistlab 0.2: hand-ins made before it have none
RESULTS_TABLE = re.compile(
    r"^\| variant \| parameters \| epochs \| (?:validation accuracy \(mean\) \| )?test accuracy",
    re.M,
)
TABLE_ROW = re.compile(
    r"^\| (\S+) \| [\d,]+ \| (\d+) \| (?:([\d.]+%|n/a) \| )?(\d+\.\d+)% ± [\d.]+ \|", re.M
)
PRINTED_FILE = re.compile(r"^(\S+\.toml):\n(.*?)\n\n\d+ variants? x", re.S | re.M)


def runner_results(reading: Reading, cell: Cell) -> list[Result]:
    """The variants of mnistlab's experiment runner, as the reference notebook prints them:
    the experiment file says what each changes, the results table gives its mean."""
    from mnistlab.experiments.plan import parse

    rows = {m[1]: (int(m[2]), figure(m[4], True)) for m in TABLE_ROW.finditer(cell.text)}
    found = TABLE_ROW.finditer(cell.text)
    validations = {m[1]: float(m[3][:-1]) / 100 for m in found if m[3] and m[3] != "n/a"}
    printed = PRINTED_FILE.search(cell.text)
    try:
        plan = parse(printed[2], Path(printed[1])) if printed else None
    except (MnistlabError, ValueError, TypeError, KeyError):
        plan = None
    if plan is None:
        reading.problems.append(
            fail(
                "experiments",
                "runner",
                f"{cell.where}: the experiment file it prints is not readable",
                cell,
            )
        )
        return []
    base = next(v.spec for v in plan.variants if v.name == plan.baseline)
    base_epochs = rows.get(plan.baseline, (base.epochs, None))[0]
    texts = []
    for later in reading.cells[cell.index + 1 :]:
        if later.heading and later.source.startswith("## "):
            break
        texts += [later] if later.kind == "markdown" else []
    results = []
    for variant in plan.variants:
        spec, name = variant.spec, variant.name
        epochs, accuracy = rows.get(name, (spec.epochs, None))
        ideas = {"baseline"} if name == plan.baseline else set()
        if spec.hidden and base.hidden and spec.hidden[0] > base.hidden[0]:
            ideas.add("wider")
        if len(spec.hidden) > len(base.hidden):
            ideas.add("second layer")
        if spec.dropout > 0:
            ideas.add("dropout")
        if epochs > base_epochs:
            ideas.add("more epochs")
        bold = re.compile(rf"\*\*{re.escape(name)}\*\*")
        text = next((t for t in texts if bold.search(t.source)), None)
        results.append(
            Result(name, frozenset(ideas), cell, accuracy, text, (name,), "", validations.get(name))
        )
    return results


# ---------------------------------------------------------------------------------------------
# The checks


def listed(cells: Sequence[Cell], most: int = 5) -> str:
    more = f" and {len(cells) - most} more" if len(cells) > most else ""
    return ", ".join(c.where for c in cells[:most]) + more


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def check_run(reading: Reading) -> list[Finding]:
    """Every code cell ran, once, in order, without an error. Empty cells do not run (Jupyter
    and nbclient skip them)."""
    code = [c for c in reading.code if c.source.strip()]
    ran = [c for c in code if c.count is not None]
    if not ran:
        return [fail("run", "never run", f"none of its {plural(len(code), 'code cell')} ran")]
    findings = []
    if unrun := [c for c in code if c.count is None]:
        message = f"{plural(len(unrun), 'code cell')} never ran: {listed(unrun)}"
        findings.append(fail("run", "never run", message, unrun[0]))
    counts = [c.count or 0 for c in ran]
    for expected, cell in enumerate(ran, start=1):
        if cell.count != expected:
            after = f"after [{expected - 1}]" if expected > 1 else "first"
            if sorted(counts) == list(range(1, len(ran) + 1)):
                why = "the cells ran out of order"
            elif (cell.count or 0) > expected:
                why = f"[{expected}] is missing: a cell ran twice, or ran and was deleted"
            else:
                why = "the kernel restarted, or cells ran out of order"
            message = (
                f"{cell.where} ran as [{cell.count}] {after}: {why}; "
                "run them top to bottom (Restart Kernel and Run All Cells)"
            )
            findings.append(fail("run", "order", message, cell))
            break
    findings += [fail("run", "error", f"{c.where}: {e}", c) for c in ran for e in c.errors]
    span = f"[1] to [{len(code)}]"
    return findings or [
        ok("run", "run", f"all {len(code)} code cells ran in order, {span}, without an error")
    ]


def check_answers(reading: Reading) -> list[Finding]:
    """No blank of the student's notebook is left."""

    def todo(cell: Cell) -> bool:
        lines = [line.strip() for line in cell.source.splitlines()]
        comments_only = all(not line or line.startswith("#") for line in lines)
        return bool(reading.codes[cell.index].placeholders) or (
            "TODO" in cell.source and comments_only
        )

    findings = []
    if todos := [c for c in reading.code if todo(c)]:
        message = f"{plural(len(todos), 'TODO cell')} not filled in: {listed(todos)}"
        findings.append(fail("answers", "TODO", message, todos[0]))
    if blank := [c for c in reading.cells if c.kind == "markdown" and ANSWER in c.source]:
        message = f"{plural(len(blank), 'question')} not answered ({ANSWER!r}): {listed(blank)}"
        findings.append(fail("answers", "questions", message, blank[0]))
    return findings or [ok("answers", "answers", "no TODO or unanswered question left")]


def shape(*sizes: int) -> re.Pattern[str]:
    inner = r",\s*".join(map(str, sizes)) + (r",\s*" if len(sizes) == 1 else "")
    return re.compile(r"\(\s*" + inner + r"\s*\)")


def count(n: int) -> re.Pattern[str]:
    """101,770 or 101770 or 101_770."""
    return re.compile(rf"(?<![\d,._]){n // 1000}[,_]?{n % 1000:03d}(?![\d,])")


def showing(cells: Iterable[Cell], pattern: re.Pattern[str]) -> Cell | None:
    return next((c for c in cells if c.kind == "code" and pattern.search(c.text)), None)


def check_shapes(reading: Reading, lab: Lab, sample: bool) -> Finding:
    train, test, note = lab.train, lab.test, ""
    if sample:  # the notebook's own sizes, read from its first output with two image shapes
        sizes = (re.findall(r"\((\d+),\s*28,\s*28\)", c.text) for c in reading.code)
        found = next((s for s in sizes if len(s) >= 2), None)
        if found is None:
            return fail("lab", "shapes", "no output shows the shapes of x_train and x_test")
        train, test, note = int(found[0]), int(found[1]), " (sample data: its own sizes)"
    wanted = [(train, 28, 28), (train,), (test, 28, 28), (test,), (train, 784), (test, 784)]
    if missing := [w for w in wanted if showing(reading.code, shape(*w)) is None]:
        shapes = ", ".join(map(str, missing))
        return fail("lab", "shapes", f"no output shows {shapes}: print the shapes (Parts 2 and 5)")
    message = f"{train:,} training and {test:,} test images of 28 × 28, flattened to 784{note}"
    return ok("lab", "shapes", message, showing(reading.code, shape(*wanted[0])))


def check_pixels(reading: Reading) -> Finding:
    divides = re.compile(r"/\s*255(\.0*)?\b")

    def scales(cell: Cell) -> bool:
        return any(divides.search(line.split("#")[0]) for line in cell.source.splitlines())

    cell = next((c for c in reading.code if scales(c)), None)
    if cell is None:
        return fail("lab", "pixels", "no cell divides the pixels by 255 (Part 4)")
    text = "".join(c.text for c in reading.block(cell))
    low, high = (re.search(rf"(?<![\d.]){n}\.0+(?!\d)", text) for n in (0, 1))
    if not (low and high):
        message = (
            f"{cell.where} divides by 255 but does not show the new range, 0.0 to 1.0: "
            "print(x_train.min(), x_train.max())"
        )
        return fail("lab", "pixels", message, cell)
    return ok("lab", "pixels", f"{cell.where} scales the pixels to [0, 1]: 0.0 to 1.0", cell)


def check_counts(reading: Reading) -> list[Finding]:
    findings = []
    for n, what in ((PARAMETERS, "the lab's model"), (SMALL_PARAMETERS, "64 units")):
        cell, name = showing(reading.code, count(n)), f"{n:,} parameters"
        stated = any(c.kind == "markdown" and count(n).search(c.source) for c in reading.cells)
        if cell is None:
            findings.append(fail("lab", name, f"no output shows {n:,}, the count for {what}"))
        elif n == SMALL_PARAMETERS and not stated:
            message = f"{cell.where} shows {n:,} for {what}, but no text states it"
            findings.append(fail("lab", name, message, cell))
        else:
            findings.append(
                ok("lab", name, f"{cell.where} shows {n:,}, the count for {what}", cell)
            )
    return findings


def predictions(cells: list[Cell]) -> list[tuple[Cell, str]]:
    """What the outputs of cells that call `predict(` say after "predict...", or bare."""
    said = []
    for cell in cells:
        if cell.kind != "code" or "predict(" not in cell.source:
            continue
        for line in cell.text.splitlines():
            found = re.search(r"predict\w*\W+(.+)", line, re.I) or re.fullmatch(
                r"\s*(?:np\.int\d+\(|array\(\[)?(\d+)(?:\)|\]\))?\s*", line
            )
            if found:  # np.int64(7) and array([7]) are 7
                said.append((cell, re.sub(r"^(?:np\.\w+\(|array\(\[)(\w+)[)\]]*", r"\1", found[1])))
    return said


def check_prediction(reading: Reading, lab: Lab, sample: bool) -> Finding:
    said = predictions(reading.cells)
    if not said:
        message = 'no output gives the first test image\'s prediction: print "Prediction: 7"'
        return fail("lab", "prediction", message)
    cell, first = said[0]
    guess = first.split()[0] if first.split() else first
    if sample:
        return ok("lab", "prediction", f"{cell.where} predicts {guess} (sample data)", cell)
    if any(re.match(re.escape(label) + r"(?!\w)", first, re.I) for label in lab.first):
        return ok(
            "lab", "prediction", f"{cell.where} predicts {lab.first[-1]} for test image 0", cell
        )
    message = f"{cell.where} predicts {guess} for the first test image, not {lab.first[-1]}"
    return fail("lab", "prediction", message, cell)


def check_experiments(reading: Reading) -> list[Finding]:
    if reading.lab_model is None:
        return [
            fail("experiments", idea, f"no experiment with {text}: no model is trained (`.fit(`)")
            for idea, text in IDEAS.items()
        ]
    findings = list(reading.problems)
    for idea, text in IDEAS.items():
        having = [r for r in reading.experiments if idea in r.ideas]
        if not having:
            findings.append(fail("experiments", idea, f"no experiment with {text}"))
            continue
        chosen = min(having, key=lambda r: len(r.ideas))  # the one that changes least
        findings.append(
            ok("experiments", idea, f"{text}: {chosen.name}, {chosen.cell.where}", chosen.cell)
        )
    for result in reading.experiments:
        if result.problem:
            message = f"{result.cell.where}: {result.problem}"
            findings.append(fail("experiments", result.name, message, result.cell))
    return findings


def check_text(result: Result, group: str = "texts") -> Finding:
    """The text below a result states its accuracy."""
    name, cell = f"text: {result.name}", result.cell
    if result.accuracy is None:
        message = f'{result.name}: {cell.where} prints no "Test accuracy: 0.9765" line'
        return fail(group, name, message, cell)
    printed = f"{cell.where} printed {result.accuracy.shown}"
    if result.text is None:
        return fail(
            group, name, f"{result.name}: no text right below {cell.where} reports it", cell
        )
    stated, where = stated_accuracies(result.text.source), f"cell {result.text.number}"
    agreeing = next((f for f in stated if f.states(result.accuracy)), None)
    if not stated:
        return fail(
            group,
            name,
            f"{result.name}: the text ({where}) gives no accuracy; {printed}",
            result.text,
        )
    if agreeing is None:
        says = ", ".join(list(dict.fromkeys(f.shown for f in stated))[:3])
        return fail(
            group,
            name,
            f"{result.name}: the text ({where}) says {says}, but {printed}",
            result.text,
        )
    return ok(
        group,
        name,
        f"{result.name}: {printed}, the text ({where}) says {agreeing.shown}",
        result.text,
    )


def mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def named(results: list[Result], text: str) -> list[Result]:
    """The results `text` names: by a name of their own first, else by the most words for
    their changes, else the one that changes least; several if that does not decide."""
    text = text.lower().replace("’", "'")
    scored = []
    for result in results:
        own = [w.lower() for w in result.words[:1]]
        score = 100 * any(mentions(text, w) for w in own)
        score += sum(mentions(text, w) for w in {w for i in result.ideas for w in WORDS.get(i, ())})
        score += sum(mentions(text, w.lower()) for w in result.words[1:])
        if score:
            scored.append(((score, -len(result.ideas)), result))
    scored.sort(key=lambda s: s[0], reverse=True)
    return [r for key, r in scored if key == scored[0][0]]


def conclusion(reading: Reading) -> Cell | None:
    """The text cells under the Conclusion heading, as one."""
    heading = next(
        (
            c
            for c in reading.cells
            if c.heading and "conclusion" in c.source.splitlines()[0].lower()
        ),
        None,
    )
    texts = []
    for cell in reading.cells[heading.index + 1 :] if heading else []:
        if cell.kind != "markdown" or cell.heading:
            break
        texts.append(cell)
    return Cell(texts[0].index, "markdown", "\n\n".join(c.source for c in texts)) if texts else None


def check_best(reading: Reading) -> Finding:
    if reading.runner:  # its variants, the baseline among them
        pool = [r for r in reading.experiments if r.cell is reading.runner]
    else:
        pool = ([reading.lab_model] if reading.lab_model else []) + reading.experiments
    results = [r for r in pool if r.accuracy is not None]
    if not results:
        return fail("best", "best", "no accuracies to choose the best model from")
    # mnistlab's runner chooses on validation accuracy where its table has it; a hand-written
    # experiment has its test accuracies only
    on_validation = all(r.validation is not None for r in results)

    def score(r: Result) -> float:
        if on_validation:
            return r.validation or 0.0
        return r.accuracy.value if r.accuracy else 0.0

    best = max(results, key=score)
    top = (
        f"{score(best):.2%} on validation"
        if on_validation
        else (best.accuracy.percent if best.accuracy else "")
    )
    text = conclusion(reading)
    if text is None:
        return fail("best", "best", "no text under a Conclusion heading names the best model")
    where = f"the conclusion (cell {text.number})"
    choices: list[Result] = []
    for phrase in [a or b for a, b in re.findall(r"\*\*(.+?)\*\*|__(.+?)__", text.source)] + [
        text.source
    ]:
        if choices := named(results, phrase):
            break
    if not choices:
        message = (
            f"{where} names none of the models; the best is {best.name}, {top}: name it in bold"
        )
        return fail("best", "best", message, text)
    if len(choices) > 1:
        message = (
            f"{where} names {choices[0].name} and {choices[1].name} alike: name the best in bold"
        )
        return fail("best", "best", message, text)
    (chosen,) = choices
    assert chosen.accuracy is not None and best.accuracy is not None
    if score(chosen) < score(best) - 1e-9:
        at = f"{score(chosen):.2%} on validation" if on_validation else chosen.accuracy.percent
        message = (
            f"{where} names {chosen.name}, at {at}, but {best.name} has the highest accuracy, {top}"
        )
        return fail("best", "best", message, text)
    return ok("best", "best", f"{where} names {chosen.name}, the highest accuracy: {top}", text)


def check_bonus(reading: Reading, lab: Lab) -> list[Finding]:
    if reading.bonus is None:
        return [fail("bonus", "bonus", f"no part on {lab.bonus_title} after the experiments")]
    cell = reading.bonus.cell
    part = ok("bonus", "bonus", f"the part on {lab.bonus_title} is there, {cell.where}", cell)
    return [part, check_text(reading.bonus, "bonus")]


def findings_of(cells: list[Cell], lab: Lab, sample: bool) -> list[Finding]:
    reading = analyse(cells, lab)
    findings = check_run(reading) + check_answers(reading)
    findings += [check_shapes(reading, lab, sample), check_pixels(reading)]
    findings += check_counts(reading) + [check_prediction(reading, lab, sample)]
    findings += check_experiments(reading)
    results = ([reading.lab_model] if reading.lab_model else []) + reading.experiments
    findings += [check_text(r) for r in results]
    return findings + [check_best(reading)] + check_bonus(reading, lab)


# ---------------------------------------------------------------------------------------------
# Running it again


def measured(cells: list[Cell]) -> dict[str, Any]:
    """What a run printed that a rerun must reproduce: each cell's test accuracies (and the
    means of the experiment runner's table), and the exact facts: the shapes, the parameter
    counts, the first prediction."""
    values: dict[str, Any] = {}
    for cell in cells:
        for i, accuracy in enumerate(printed_accuracies(cell.text)):
            values[f"{cell.where}, test accuracy" + (f" {i + 1}" if i else "")] = accuracy
        for row in TABLE_ROW.finditer(cell.text):
            values[f"{cell.where}, {row[1]}"] = figure(row[3], True)
    text = "".join(c.text for c in cells)
    said = predictions(cells)
    values["exact"] = {
        "shapes": sorted(set(re.findall(r"\(\d+(?:,\s*\d+)*,?\)", text))),
        "parameter counts": [
            f"{n:,}" for n in (PARAMETERS, SMALL_PARAMETERS) if count(n).search(text)
        ],
        "first prediction": said[0][1] if said else None,
    }
    return values


def rerun(path: Path, cells: list[Cell], limits: Limits) -> list[Finding]:
    """Run the hand-in again in a fresh kernel under `limits`, in a temporary folder, and
    compare what it prints with what was handed in."""
    import nbformat

    from mnistlab.notebook import ExecutionFailed, execute

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:  # read already, so a notebook; nbformat may still refuse it
        return [fail("rerun", "rerun", f"nbformat cannot read it to run it again: {e}")]
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    stopped = ""
    with tempfile.TemporaryDirectory(prefix="mnistlab-rerun-") as folder:
        try:
            nb = execute(nb, Path(folder), limits=limits)
        except ExecutionFailed as e:
            nb, stopped = e.nb, e.reason
        except Exception as e:  # the kernel did not start: a finding, not a traceback
            return [fail("rerun", "rerun", f"the kernel did not run it: {e}")]
    findings = []
    if stopped:
        limit = f"limits: {limits.seconds} s, {limits.memory / 2**30:g} GiB"
        findings.append(fail("rerun", "rerun", f"the rerun stopped: {stopped} ({limit})"))
    before, after = measured(cells), measured(cells_of(nb))
    exact, again = before.pop("exact"), after.pop("exact")
    if differ := [name for name, value in exact.items() if value != again[name]]:
        changes = "; ".join(f"{n}: {exact[n]} handed in, {again[n]} again" for n in differ)
        findings.append(fail("rerun", "exact", changes))
    else:
        findings.append(ok("rerun", "exact", f"the same {', '.join(exact)} again"))
    for name, value in before.items():
        new = after.get(name)
        if not isinstance(new, Figure):
            findings.append(fail("rerun", name, f"{name}: {value.shown} handed in, none again"))
            continue
        close = abs(new.value - value.value) <= RERUN_TOLERANCE
        far = "" if close else f": more than {RERUN_TOLERANCE * 100:g} points apart"
        message = f"{name}: {value.shown} handed in, {new.shown} again{far}"
        findings.append(Finding("rerun", name, close, message))
    return findings


# ---------------------------------------------------------------------------------------------
# The hand-ins


def check(
    path: Path | str,
    dataset: str = "mnist",
    sample: bool = False,
    rerun_limits: Limits | None = None,
    max_bytes: int = MAX_BYTES,
) -> HandIn:
    """Check one hand-in. With `rerun_limits`, also run it again under them: that runs the
    hand-in's code."""
    path = Path(path)
    if dataset not in LABS:
        raise MnistlabError(f"unknown data set {dataset!r}", f"use one of {', '.join(LABS)}")
    try:
        cells = read(path, max_bytes)
    except Unreadable as e:
        finding = fail("notebook", "notebook", f"not a notebook that can be checked: {e}")
        return HandIn(path, (finding,), dataset, sample)
    findings = findings_of(cells, LABS[dataset], sample)
    if rerun_limits is not None:
        findings += rerun(path, cells, rerun_limits)
    return HandIn(path, tuple(findings), dataset, sample)


def check_all(
    paths: Iterable[Path | str],
    dataset: str = "mnist",
    sample: bool = False,
    rerun_limits: Limits | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[HandIn]:
    """Check each notebook of `paths` (files, and folders of them: `handins`); `progress`
    hears of each as it starts."""
    checked = []
    for path in handins(paths):
        if progress is not None:
            progress(f"Checking {path}" + (" (running it again)" if rerun_limits else ""))
        checked.append(check(path, dataset, sample, rerun_limits))
    return checked


def handins(paths: Iterable[Path | str]) -> list[Path]:
    """The notebooks to check: each file as given, and each folder's `*.ipynb` by name (not
    the `.failed.ipynb` that `mnistlab notebook` leaves)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = [
                p for p in sorted(path.glob("*.ipynb")) if not p.name.endswith(".failed.ipynb")
            ]
            if not inside:
                raise MnistlabError(
                    f"{path} holds no .ipynb file", "name notebooks or their folder"
                )
            found += inside
        elif path.exists():
            found.append(path)
        else:
            raise MnistlabError(f"{path} does not exist", "name notebooks or their folder")
    return found
