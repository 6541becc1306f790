"""Search spaces: which spec fields a search tries, over which ranges or choices, checked like
experiment files before any training.

A space file (TOML):

    dataset = "mnist"
    refit = true            # the final runs train on the whole training set (the default)
    [fixed]                 # spec fields (or units, layers, filters, convs) every trial shares
    backend = "jax"
    [search]                # what the search chooses, each a range or a list of choices
    units = { low = 64, high = 1024, log = true }    # whole numbers: the field's own type
    dropout = { low = 0.0, high = 0.5 }
    learning_rate = { low = 1e-4, high = 1e-2, log = true }
    batch_size = { choices = [32, 64, 128, 256] }

Besides the spec's own fields, `units` and `layers` make `hidden` (`layers` Dense layers of
`units` each) and `filters` and `convs` make `conv` (`convs` convolutions, the first with
`filters`, each next one with twice as many). The trials train with seed 0; the final runs
use seeds 1, 2, 3... The shipped spaces (`spaces/`) are found by name: `find("lab-space")`.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistlab.data import DATASETS
from mnistlab.errors import MnistlabError
from mnistlab.files import read_text
from mnistlab.spec import TYPES, Spec, check_type

if TYPE_CHECKING:
    import optuna

TOP_KEYS = {"name", "dataset", "refit", "fixed", "search"}
RANGE_KEYS = {"low", "high", "log", "step"}
SEARCH_SEED = 0  # every trial's seed; the final runs take 1, 2, 3...
# Names that stand for a part of a list field: hidden = (units,) * layers; conv = filters,
# 2 x filters... (convs of them). Their defaults where the space sets only one of a pair.
DERIVED = {"units": 128, "layers": 1, "filters": 32, "convs": 2}
MAKES = {"units": "hidden", "layers": "hidden", "filters": "conv", "convs": "conv"}
# Not searched: the seed is the search's own; a backend is one per process; lists are made
# from the derived names; the validation split decides what the score is measured on.
NOT_SEARCHED = {"seed", "backend", "hidden", "conv", "validation_split"}
SEARCHED = sorted((set(TYPES) - NOT_SEARCHED) | set(DERIVED))


@dataclass(frozen=True)
class Param:
    """One searched name: a range (`low` to `high`, on a log scale or in steps) or choices."""

    name: str
    kind: type  # int, float, str or bool
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.trial.Trial) -> Any:
        """A value for this name, drawn by the study's sampler for `trial`."""
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        low, high = self.low or 0, self.high or 0
        if self.kind is int:
            step = int(self.step or 1)
            return trial.suggest_int(self.name, int(low), int(high), step=step, log=self.log)
        return trial.suggest_float(self.name, low, high, step=self.step, log=self.log)

    def values(self) -> list[Any]:
        """The values a check of the space tries: the ends of a range, or every choice."""
        return list(self.choices) if self.choices else [self.kind(self.low), self.kind(self.high)]

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(json.dumps(c) for c in self.choices)
        scale = ", log scale" if self.log else f", step {self.step:g}" if self.step else ""
        return f"{self.low:g} to {self.high:g}{scale}"


@dataclass(frozen=True)
class Space:
    name: str
    dataset: str
    fixed: tuple[tuple[str, Any], ...]  # (key, value), in the file's order
    params: tuple[Param, ...]
    refit: bool = True  # final runs on the whole training set (validation_split 0)

    def spec(self, values: dict[str, Any]) -> Spec:
        """The spec of a trial: the fixed fields and the searched `values`, seed 0."""
        given = {**dict(self.fixed), **values}
        fields = {k: v for k, v in given.items() if k not in DERIVED}
        if "units" in given or "layers" in given:
            units = given.get("units", DERIVED["units"])
            fields["hidden"] = [units] * given.get("layers", DERIVED["layers"])
        if "filters" in given or "convs" in given:
            filters = given.get("filters", DERIVED["filters"])
            fields["conv"] = [filters * 2**i for i in range(given.get("convs", DERIVED["convs"]))]
        return Spec.from_dict({**fields, "seed": SEARCH_SEED})

    def suggest(self, trial: optuna.trial.Trial) -> Spec:
        """The spec of `trial`, its values drawn by the study's sampler."""
        return self.spec({p.name: p.suggest(trial) for p in self.params})

    def final(self, spec: Spec, seed: int) -> Spec:
        """The chosen trial's spec as the final runs train it: on the whole training set when
        `refit`, with seed `seed`."""
        return spec.replace(seed=seed, **({"validation_split": 0.0} if self.refit else {}))

    def describe(self) -> dict[str, Any]:
        """The space as plain values: what a study records to refuse a changed space."""
        return {
            "dataset": self.dataset,
            "refit": self.refit,
            "fixed": {k: list(v) if isinstance(v, list | tuple) else v for k, v in self.fixed},
            "search": {p.name: p.describe() for p in self.params},
        }


SPACES = resources.files("mnistlab.tuning") / "spaces"


def names() -> list[str]:
    """The search spaces shipped with mnistlab, by name."""
    return sorted(
        f.name.removesuffix(".toml") for f in SPACES.iterdir() if f.name.endswith(".toml")
    )


def source(name_or_path: str | Path) -> tuple[str, Path]:
    """The text of a shipped space or a space file, and the path that names it."""
    text = str(name_or_path)
    if isinstance(name_or_path, str) and text in names():
        return (SPACES / f"{text}.toml").read_text(), Path(f"{text}.toml")
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        raise MnistlabError(
            f"no shipped search space named {text!r} and no file {path}",
            f"choose one of: {', '.join(names())}; or give the path of a TOML file",
        )
    try:
        return read_text(path, "a search space file"), path
    except FileNotFoundError:
        raise MnistlabError(f"no search space file at {path}", "check the path") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MnistlabError(f"cannot read the search space file {path} ({e})", "check it") from e


def find(name_or_path: str | Path) -> Space:
    """A shipped space by name (`lab-space`), or a space file by path."""
    text, path = source(name_or_path)
    return parse(text, path)


def bad(path: Path, problem: str) -> MnistlabError:
    return MnistlabError(
        f"{path}: {problem}", "see `mnistlab tune lab-space --show` for the format"
    )


def parse(text: str, path: Path) -> Space:
    """A space from the text of a file; `path` names it (its stem is the default name)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise bad(path, f"not valid TOML ({e})") from e
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise bad(path, f"unknown key {unknown[0]!r} (known: {', '.join(sorted(TOP_KEYS))})")
    name = raw.get("name", path.stem)
    from mnistlab.experiments.plan import PLAIN_NAME, plain_name

    if not plain_name(name):
        raise bad(path, f"name {name!r}: {PLAIN_NAME}")
    dataset = raw.get("dataset", "mnist")
    if not isinstance(dataset, str) or dataset not in DATASETS:
        raise bad(path, f"dataset {dataset!r} is not one of {', '.join(DATASETS)}")
    refit = raw.get("refit", True)
    if not isinstance(refit, bool):
        raise bad(path, f"refit must be true or false, not {refit!r}")
    fixed, search = raw.get("fixed", {}), raw.get("search")
    if not isinstance(fixed, dict):
        raise bad(path, "[fixed] must be a table of spec fields")
    if not isinstance(search, dict) or not search:
        raise bad(path, "it needs a [search] table with at least one field to search")
    for key, value in fixed.items():
        check_fixed(path, key, value)
    params = tuple(param(path, key, value) for key, value in search.items())
    for key in fixed:
        if key in search:
            raise bad(path, f"{key!r} is both fixed and searched")
    names_given = set(fixed) | set(search)
    for part, whole in MAKES.items():
        if part in names_given and whole in fixed:
            raise bad(path, f"{part!r} makes {whole!r}, which [fixed] sets too: keep one")
    space = Space(name, dataset, tuple(fixed.items()), params, refit)
    check_specs(path, space)
    return space


def check_fixed(path: Path, key: str, value: Any) -> None:
    if key == "seed":
        raise bad(path, "fixed.seed: the trials use seed 0 and the final runs seeds 1, 2, 3...")
    if key not in TYPES and key not in DERIVED:
        raise bad(path, f"fixed: unknown key {key!r} (known: {', '.join(sorted(TYPES))})")
    if key in DERIVED and (not isinstance(value, int) or isinstance(value, bool)):
        raise bad(path, f"fixed.{key} must be a whole number, not {value!r}")
    if key == "validation_split" and value == 0:
        raise bad(path, "fixed.validation_split must be above 0: the search scores on validation")


def kind_of(key: str) -> type:
    kind = int if key in DERIVED else TYPES[key]
    return kind if isinstance(kind, type) else str


def param(path: Path, key: str, value: Any) -> Param:
    """A searched name's range or choices, every problem named by its key."""
    where = f"search.{key}"
    if key not in SEARCHED:
        why = (
            "the search's own (seed 0 for trials, then 1, 2, 3...)"
            if key == "seed"
            else "what the score is measured on; set it in [fixed]"
            if key == "validation_split"
            else "one backend runs a process; set it in [fixed]"
            if key == "backend"
            else "search units and layers"
            if key == "hidden"
            else "search filters and convs"
            if key == "conv"
            else f"unknown; searchable: {', '.join(SEARCHED)}"
        )
        raise bad(path, f"{where} cannot be searched: {why}")
    if not isinstance(value, dict):
        raise bad(
            path, f"{where} must be a table: {{ low = A, high = B }} or {{ choices = [...] }}"
        )
    kind = kind_of(key)
    if "choices" in value:
        others = sorted(set(value) - {"choices"})
        if others:
            raise bad(path, f"{where}: choices go alone, without {others[0]!r}")
        choices = value["choices"]
        if not isinstance(choices, list) or not choices:
            raise bad(path, f"{where}.choices must be a list of one or more values")
        for choice in choices:
            try:
                check_type(key, choice, kind)
            except MnistlabError as e:
                raise bad(path, f"{where}.choices: {e}") from None
        if len({json.dumps(c) for c in choices}) != len(choices):
            raise bad(path, f"{where}.choices has a value twice")
        return Param(key, kind, choices=tuple(kind(c) for c in choices))
    unknown = sorted(set(value) - RANGE_KEYS)
    if unknown:
        raise bad(
            path, f"{where}: unknown key {unknown[0]!r} (known: choices, {', '.join(RANGE_KEYS)})"
        )
    if kind not in (int, float):
        raise bad(path, f"{where} is not a number: give {{ choices = [...] }}")
    if "low" not in value or "high" not in value:
        raise bad(path, f"{where} needs both low and high (or choices)")
    for end in ("low", "high", "step"):
        if end in value:
            number = value[end]
            whole = isinstance(number, int) and not isinstance(number, bool)
            if (kind is int and not whole) or not (whole or isinstance(number, float)):
                want = "a whole number" if kind is int else "a number"
                raise bad(path, f"{where}.{end} must be {want}, not {number!r}")
            if not math.isfinite(number):
                raise bad(path, f"{where}.{end} must be finite, not {number!r}")
    low, high = value["low"], value["high"]
    if low > high:
        raise bad(path, f"{where}: the range from {low} to {high} is empty")
    if low == high:
        raise bad(path, f"{where}: the range holds only {low}: put it in [fixed]")
    log = value.get("log", False)
    if not isinstance(log, bool):
        raise bad(path, f"{where}.log must be true or false, not {log!r}")
    step = value.get("step")
    if log and low <= 0:
        raise bad(path, f"{where}: a log scale needs low above 0, not {low}")
    if step is not None:
        if log:
            raise bad(path, f"{where}: a log scale takes no step")
        if step <= 0 or step > high - low:
            raise bad(path, f"{where}.step must be above 0 and at most high - low, not {step}")
    return Param(key, kind, low, high, log, step)


def check_specs(path: Path, space: Space) -> None:
    """The fixed fields alone make a valid spec; so does every end of every range, and every
    choice, with the other fields at their lowest or first; and all the highest values
    together (the largest network)."""
    try:
        Space(space.name, space.dataset, space.fixed, ()).spec({})
    except MnistlabError as e:
        raise bad(path, f"[fixed]: {e.problem}") from None
    firsts = {p.name: p.values()[0] for p in space.params}
    for p in space.params:
        for value in p.values():
            try:
                space.spec({**firsts, p.name: value})
            except MnistlabError as e:
                raise bad(path, f"search.{p.name} = {value!r}: {e.problem}") from None
    lasts = {p.name: p.values()[-1] for p in space.params}
    try:
        space.spec(lasts)
    except MnistlabError as e:
        raise bad(path, f"the highest values of [search] together: {e.problem}") from None
