"""Experiment files: named variants of a spec, each trained on several seeds.

An experiment file (TOML):

    name = "lab"                  # optional; the file's stem by default
    dataset = "mnist"
    seeds = [1, 2, 3, 4, 5]
    baseline = "baseline"         # optional; the first variant by default
    [base]                        # spec fields shared by every variant
    backend = "jax"
    [[variants]]
    name = "baseline"
    [[variants]]
    name = "wide"
    hidden = [256]

The files shipped with mnistlab (`grids/`) are run by name: `find("lab")`; `names()` lists them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mnistlab.data import DATASETS
from mnistlab.errors import MnistlabError
from mnistlab.files import read_text
from mnistlab.spec import Spec

TOP_KEYS = {"name", "dataset", "seeds", "baseline", "base", "variants"}


@dataclass(frozen=True)
class Variant:
    name: str
    spec: Spec  # the seed field is replaced by each of the experiment's seeds


@dataclass(frozen=True)
class Experiment:
    name: str
    dataset: str
    seeds: tuple[int, ...]
    variants: tuple[Variant, ...]
    baseline: str

    def plan(self) -> list[tuple[Variant, int]]:
        return [(v, seed) for v in self.variants for seed in self.seeds]

    def with_seeds(self, count: int) -> Experiment:
        """The first `count` seeds of the file, or more counted on from its last one."""
        if count < 1:
            raise MnistlabError(f"--seeds {count} is out of range", "ask for at least 1 seed")
        seeds = list(self.seeds[:count])
        while len(seeds) < count:
            seeds.append(max(seeds, default=0) + 1)
        return Experiment(self.name, self.dataset, tuple(seeds), self.variants, self.baseline)

    def with_backend(self, name: str) -> Experiment:
        """The variants as they will run: on backend `name` where they name none."""
        variants = tuple(
            Variant(v.name, v.spec if v.spec.backend else v.spec.replace(backend=name))
            for v in self.variants
        )
        return Experiment(self.name, self.dataset, self.seeds, variants, self.baseline)

    def shortened(self, seeds: int, epochs_divisor: int) -> Experiment:
        """The first `seeds` seeds, each variant's epochs divided (at least 1): a quick look."""
        variants = tuple(
            Variant(v.name, v.spec.replace(epochs=max(1, v.spec.epochs // epochs_divisor)))
            for v in self.variants
        )
        return Experiment(self.name, self.dataset, self.seeds[:seeds], variants, self.baseline)


GRIDS = resources.files("mnistlab.experiments") / "grids"


def names() -> list[str]:
    """The experiment files shipped with mnistlab, by name."""
    return sorted(f.name.removesuffix(".toml") for f in GRIDS.iterdir() if f.name.endswith(".toml"))


def find(name_or_path: str | Path) -> Experiment:
    """A shipped experiment by name (`lab`), or an experiment file by path."""
    text = str(name_or_path)
    if isinstance(name_or_path, str) and text in names():
        return parse((GRIDS / f"{text}.toml").read_text(), Path(f"{text}.toml"))
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        raise MnistlabError(
            f"no shipped experiment named {text!r} and no file {path}",
            f"choose one of: {', '.join(names())}; or give the path of a TOML file",
        )
    return read(path)


def source(name_or_path: str | Path) -> tuple[str, str]:
    """The text and file name of a shipped experiment or an experiment file."""
    text = str(name_or_path)
    if isinstance(name_or_path, str) and text in names():
        return (GRIDS / f"{text}.toml").read_text(), f"{text}.toml"
    path = Path(name_or_path)
    try:
        return read_text(path, "an experiment file"), path.name
    except (OSError, UnicodeDecodeError) as e:
        raise MnistlabError(
            f"cannot read the experiment file {path} ({e})",
            f"give one of: {', '.join(names())}; or the path of a TOML file",
        ) from e


PLAIN_NAME = "use letters, digits, '-', '_' and '.', not starting with '.'"


def plain_name(name: object) -> bool:
    """A name that is one plain file name: a variant's or an experiment's folder."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= 100
        and all(c.isascii() and (c.isalnum() or c in "-_.") for c in name)
        and not name.startswith(".")
    )


def bad_file(path: Path, problem: str) -> MnistlabError:
    return MnistlabError(
        f"{path}: {problem}", "see `mnistlab experiment --show lab` for the format"
    )


def read(path: Path) -> Experiment:
    """Parse and check an experiment file; every problem names the key."""
    try:
        text = read_text(path, "an experiment file")
    except FileNotFoundError:
        raise MnistlabError(f"no experiment file at {path}", "check the path") from None
    except UnicodeDecodeError as e:
        raise bad_file(path, f"not valid TOML ({e})") from e
    except OSError as e:
        raise bad_file(path, f"cannot be read ({e.strerror})") from e
    return parse(text, path)


def parse(text: str, path: Path) -> Experiment:
    """An experiment from the text of a file; `path` names it (its stem is the default name)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise bad_file(path, f"not valid TOML ({e})") from e
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise bad_file(path, f"unknown key {unknown[0]!r} (known: {', '.join(sorted(TOP_KEYS))})")
    dataset = raw.get("dataset", "mnist")
    if not isinstance(dataset, str) or dataset not in DATASETS:
        raise bad_file(path, f"dataset {dataset!r} is not one of {', '.join(DATASETS)}")
    seeds = raw.get("seeds", [1, 2, 3])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise bad_file(path, f"seeds must be a list of distinct whole numbers >= 0, not {seeds!r}")
    base = raw.get("base", {})
    if not isinstance(base, dict):
        raise bad_file(path, "[base] must be a table of spec fields")
    variants_raw = raw.get("variants")
    if not isinstance(variants_raw, list) or not variants_raw:
        raise bad_file(path, "it needs at least one [[variants]] table")
    variants = []
    for i, entry in enumerate(variants_raw, start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise bad_file(path, f"variant {i} needs a name")
        name = entry["name"]
        if not plain_name(name):
            raise bad_file(path, f"variant name {name!r}: {PLAIN_NAME}")
        fields = {**base, **{k: v for k, v in entry.items() if k != "name"}}
        if "seed" in fields:
            raise bad_file(path, f"variant {name!r}: set seeds with the top-level key 'seeds'")
        try:
            spec = Spec.from_dict(fields)
        except MnistlabError as e:
            raise bad_file(path, f"variant {name!r}: {e}") from e
        variants.append(Variant(name, spec))
    names = [v.name for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise bad_file(path, f"variant name {duplicates[0]!r} is used twice")
    baseline = raw.get("baseline", names[0])
    if baseline not in names:
        raise bad_file(path, f"baseline {baseline!r} is not one of the variants")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not plain_name(name):
        # The name is a folder under runs/experiments: nothing that climbs out of it
        raise bad_file(path, f"name {name!r}: {PLAIN_NAME}")
    return Experiment(name, dataset, tuple(seeds), tuple(variants), baseline)
