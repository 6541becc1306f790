"""The wheel as a user gets it: built from the source, installed with its web and notebook extras
into a fresh venv outside the checkout, and run from another folder. A file that only the
checkout has (a grid left out of package-data, a module that imports a package no extra names)
fails here and nowhere else.

40 s here, 30 of them the install, so marked `wheel`; ./run-tests runs it once, on JAX.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import platformdirs
import pytest

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 900  # seconds for one step; the install took 30 s here, the lab 5 s
GRIDS = "mnistlab/experiments/grids"
PACKAGE_DATA = ("mnistlab/web/static/index.html", f"{GRIDS}/lab.toml")
API = ("load", "train", "preset", "load_run", "run_experiment", "read_image", "report")

# The README's first Python example, as a user runs it in a fresh environment
EXAMPLE = re.findall(r"^```python\n(.*?)^```$", (ROOT / "README.md").read_text(), re.S | re.M)[0]

# Commands a user runs after `pip install 'mnistlab[web,notebook]'`. Each runs in an empty folder
# of its own with the venv's bin first on PATH (argv[0] is looked up there), and must exit 0,
# print every pattern (regular expressions) and write every file (relative to its folder).
WHEEL_COMMANDS = [
    (["python", "-c", EXAMPLE], [r"^test accuracy 9\d\.\d\d%$"], ["runs/mine/model.keras"]),
    (
        ["mnistlab", "notebook", "--quick", "--out", "lab.ipynb"],
        [r"^Part 11: Experiments \.\.\. ", r"^Wrote .*lab\.ipynb$"],
        ["lab.ipynb"],
    ),
    (
        ["mnistlab", "lab", "--epochs", "1", "--out", "out"],
        [r"Test accuracy: 9\d\.\d\d%", r"Model prediction: \d"],  # 1 epoch: 95.58% here
        ["out/run/model.keras", "out/samples.png", "out/prediction.png"],
    ),
]

IMPORT_CHECK = """
import json, sys
import mnistlab as ml
heavy = [m for m in ("keras", "jax", "tensorflow") if m in sys.modules]
print(json.dumps({"file": ml.__file__, "names": dir(ml), "heavy": heavy}))
"""


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command to its end (or TIMEOUT), assert it exits 0 and return what it printed."""
    result = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of what it is made of: a build writes egg-info and build/
    into its source folder, and the checkout is left alone."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("*.egg-info", "__pycache__")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignore)
    dist = tmp_path_factory.mktemp("dist")
    pip = [sys.executable, "-m", "pip"]
    run([*pip, "wheel", "--no-deps", "--quiet", "-w", str(dist), str(source)], source)
    (built,) = dist.glob("mnistlab-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Iterator[Path]:
    """The bin folder of a fresh venv with the wheel and its web and notebook extras, at the
    versions constraints.txt pins. Removed afterwards: 0.9 GB, and pytest keeps 3 runs."""
    env = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", str(env)], env)
    constraints = str(ROOT / "constraints.txt")
    pip = [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", "-c", constraints]
    run([*pip, f"{wheel}[web,notebook]"], env)
    yield env / "bin"
    shutil.rmtree(env)


@pytest.fixture(scope="module")
def user_env(venv: Path) -> dict[str, str]:
    """The environment of a user of the venv. The data cache is the one the other tests use, so
    nothing is fetched twice. No KERAS_BACKEND: the venv has no TensorFlow, so JAX, the
    default, runs even in run-tests' TensorFlow pass."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "KERAS_BACKEND")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = f"{venv}{os.pathsep}{env.get('PATH', '')}"
    env["MNISTLAB_DATA"] = os.environ.get("MNISTLAB_DATA") or platformdirs.user_cache_dir(
        "mnistlab"
    )
    return env


def shipped(wheel: Path, prefix: str) -> dict[str, bytes]:
    """The wheel's files under `prefix`, by path."""
    with zipfile.ZipFile(wheel) as z:
        return {n: z.read(n) for n in z.namelist() if n.startswith(prefix)}


def test_the_wheel_holds_the_page_and_every_grid(wheel):
    files = shipped(wheel, "mnistlab/")
    assert [name for name in PACKAGE_DATA if name not in files] == []
    grids = {f"{GRIDS}/{p.name}" for p in (ROOT / "src" / GRIDS).glob("*.toml")}
    assert sorted(grids - set(files)) == []
    assert b"<html" in files["mnistlab/web/static/index.html"].lower()


def test_importing_gives_the_api_from_the_venv_and_no_backend(venv, user_env, tmp_path):
    out = run([str(venv / "python"), "-c", IMPORT_CHECK], tmp_path, user_env)
    found = json.loads(out.splitlines()[-1])
    # the venv's copy, not the checkout's src/
    assert Path(found["file"]).resolve().is_relative_to(venv.parent.resolve()), found["file"]
    assert [name for name in API if name not in found["names"]] == []
    assert found["heavy"] == []


def test_help_lists_the_commands(venv, user_env, tmp_path):
    out = run([str(venv / "mnistlab"), "--help"], tmp_path, user_env)
    assert out.startswith("Usage: mnistlab [OPTIONS] COMMAND")
    for command in ("lab", "train", "predict", "experiment", "serve", "notebook"):
        assert re.search(rf"^  {command} ", out, re.M), command


def test_a_dry_run_names_every_variant_and_writes_nothing(wheel, venv, user_env, tmp_path):
    grid = tomllib.loads(shipped(wheel, f"{GRIDS}/lab.toml")[f"{GRIDS}/lab.toml"].decode())
    names = [variant["name"] for variant in grid["variants"]]
    out = run([str(venv / "mnistlab"), "experiment", "lab", "--dry-run"], tmp_path, user_env)
    assert f"{len(names)} variants x {len(grid['seeds'])} seeds" in out
    for name in names:
        assert re.search(rf"^  {re.escape(name)} +seed 1 ", out, re.M), name
    assert list(tmp_path.iterdir()) == []


def test_the_list_names_every_shipped_grid(wheel, venv, user_env, tmp_path):
    out = run([str(venv / "mnistlab"), "experiment", "--list"], tmp_path, user_env)
    names = sorted(Path(path).stem for path in shipped(wheel, f"{GRIDS}/"))
    assert len(names) >= 7
    for name in names:
        assert re.search(rf"^{re.escape(name)} +(mnist|fashion-mnist) ", out, re.M), name
    assert re.search(r"^lab +mnist +8 variants +x 5 seeds$", out, re.M)


@pytest.mark.parametrize(
    ("argv", "patterns", "files"),
    WHEEL_COMMANDS,
    ids=["README example" if c[0][0] == "python" else " ".join(c[0]) for c in WHEEL_COMMANDS],
)
def test_a_user_command_works_from_the_wheel(argv, patterns, files, venv, user_env, tmp_path):
    out = run([str(venv / argv[0]), *argv[1:]], tmp_path, user_env)
    for pattern in patterns:
        assert re.search(pattern, out, re.M), f"{pattern!r} not in:\n{out}"
    assert [f for f in files if not (tmp_path / f).is_file()] == []
