"""mnistlab.backend: which Keras backend runs, the errors that say how to switch, and what the
JAX path leaves unimported. A process runs one backend, so the checks of a fresh process run in
a child Python on the tiny synthetic data of conftest.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from mnistlab import backend
from mnistlab.errors import MnistlabError

TESTS = Path(__file__).parent


def child(code: str, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `code` with `args` in a fresh Python, in `tmp_path`, with the tests folder importable
    and `env` set."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=tmp_path,
        env=os.environ | {"PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])} | env,
        capture_output=True,
        text=True,
        timeout=300,
    )


TRAIN_SAVE_LOAD = """
import importlib, json, sys
from mnistlab import backend
skipping = sys.argv[1:] == ["skip-extras"]
if skipping:
    backend.skip_keras_extras()
from conftest import CLASS_NAMES, synthetic  # conftest chooses the backend: $KERAS_BACKEND
from mnistlab import Dataset, Spec, load_run, train
data = Dataset(synthetic(200, 0), synthetic(50, 1), CLASS_NAMES, "synthetic", "mnist")
train(Spec(epochs=1, hidden=(16,)), data).save("run")
run = load_run("run")
probabilities = run.predict(data.test[0][:3])
imported = sorted(m for m in ("tensorflow", *backend.KERAS_EXTRAS) if m in sys.modules)
if skipping:
    import keras.src.wrappers.fixes
    assert keras.src.wrappers.fixes.sklearn is None, "Keras found scikit-learn after all"
    for extra in backend.KERAS_EXTRAS:
        importlib.import_module(extra)  # still there for the code that wants it
print(json.dumps({"backend": run.spec.backend, "shape": list(probabilities.shape),
                  "imported": imported}))
"""


def test_training_and_saving_on_jax_import_no_tensorflow(tmp_path):
    """Keras on JAX imports TensorFlow (4 s) to ask whether values are TensorFlow's, unless
    `keep_tensorflow_asleep` tells it that TensorFlow is absent."""
    result = child(TRAIN_SAVE_LOAD, tmp_path, KERAS_BACKEND="jax")

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.splitlines()[-1])
    assert answer["backend"] == "jax"
    assert answer["shape"] == [3, 10]
    assert "tensorflow" not in answer["imported"]
    assert (tmp_path / "run" / "model.keras").is_file()


def test_without_the_keras_extras_training_saving_and_loading_work_and_they_import_later(
    tmp_path,
):
    """What the `mnistlab` command does: Keras, without its scikit-learn, pandas and matplotlib
    integrations, trains, saves and loads the lab's models; the packages still import after."""
    for extra in backend.KERAS_EXTRAS:
        pytest.importorskip(extra)
    result = child(TRAIN_SAVE_LOAD, tmp_path, "skip-extras", KERAS_BACKEND="jax")

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.splitlines()[-1])
    assert answer["shape"] == [3, 10]
    assert answer["imported"] == []


COMPILED = """
import json, sys
from pathlib import Path
from mnistlab import backend
backend.keep_compiled_programs(Path(sys.argv[1]))
from conftest import CLASS_NAMES, synthetic
from mnistlab import Dataset, Spec, train
data = Dataset(synthetic(200, 0), synthetic(50, 1), CLASS_NAMES, "synthetic", "mnist")
run = train(Spec(epochs=1, hidden=(16,)), data)
print(json.dumps({"loss": run.history["loss"], "p": run.predict(data.test[0][:5]).tolist()}))
"""


def kept(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith("-cache"))


def test_a_process_that_keeps_compiled_programs_reuses_them_with_the_same_numbers(tmp_path):
    folder = tmp_path / "compiled"
    first = child(COMPILED, tmp_path, str(folder), KERAS_BACKEND="jax")
    assert first.returncode == 0, first.stderr
    programs = kept(folder)
    assert programs, "nothing was kept"

    second = child(COMPILED, tmp_path, str(folder), KERAS_BACKEND="jax")

    assert second.returncode == 0, second.stderr
    assert kept(folder) == programs  # all found: nothing compiled, nothing written
    assert json.loads(second.stdout.splitlines()[-1]) == json.loads(first.stdout.splitlines()[-1])
    assert "compilation cache" not in first.stderr + second.stderr  # no warnings of JAX's


def test_compiled_programs_are_not_kept_in_a_folder_that_others_may_write(tmp_path, monkeypatch):
    """JAX runs what it finds in the folder, so it must be this user's alone."""
    import jax

    settings: list[tuple[str, object]] = []
    monkeypatch.setattr(jax.config, "update", lambda name, value: settings.append((name, value)))
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)

    backend.cache_compiled_programs(shared)
    assert settings == []

    backend.cache_compiled_programs(tmp_path / "mine")
    assert settings[0] == ("jax_compilation_cache_dir", str(tmp_path / "mine"))
    assert (tmp_path / "mine").stat().st_mode & 0o777 == 0o700


def test_another_backend_than_the_running_one_is_refused_with_how_to_switch():
    running = keras.backend.backend()
    other = "tensorflow" if running == "jax" else "jax"

    with pytest.raises(MnistlabError) as e:
        backend.use(other, what="the run runs/old")

    assert e.value.problem == (
        f"the run runs/old asks for {other}, but Keras already runs {running} in this process"
    )
    assert e.value.fix == (
        f"set KERAS_BACKEND={other} before Keras is first imported (in a notebook: restart the "
        f"kernel, then set it first), or ask for {running}"
    )
    assert backend.use(running) == running
    assert backend.use() == running


def test_an_unknown_backend_is_refused():
    with pytest.raises(MnistlabError) as e:
        backend.use("torch")
    assert str(e.value) == "the spec asks for the backend 'torch'. choose one of: tensorflow, jax"


def test_keras_backend_torch_in_the_environment_is_refused_before_keras_is_imported(tmp_path):
    code = (
        "import sys\nfrom mnistlab import backend\ntry:\n    backend.use()\n"
        "except Exception as e:\n    print(type(e).__name__, e, 'keras' in sys.modules)"
    )
    result = child(code, tmp_path, KERAS_BACKEND="torch")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "MnistlabError KERAS_BACKEND=torch is not a backend mnistlab supports. "
        "set it to one of: tensorflow, jax False"
    )


def test_keras_already_running_an_unsupported_backend_is_refused(tmp_path):
    code = (
        "import keras\nfrom mnistlab import backend\ntry:\n    backend.use()\n"
        "except Exception as e:\n    print(type(e).__name__, e)"
    )
    result = child(code, tmp_path, KERAS_BACKEND="numpy")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "MnistlabError Keras runs numpy, which mnistlab does not support. "
        "set KERAS_BACKEND to one of tensorflow, jax before importing Keras"
    )


def test_a_backend_that_is_not_installed_is_named_with_its_extra(monkeypatch):
    monkeypatch.setattr(backend, "running", lambda: None)
    monkeypatch.setattr(backend.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MnistlabError) as e:
        backend.use("tensorflow", what="the experiment lab")
    assert str(e.value) == (
        "the experiment lab asks for tensorflow, which is not installed. "
        "install it with: pip install 'mnistlab[tensorflow]'"
    )


def test_the_command_line_imports_nothing_heavy_until_a_command_runs(tmp_path):
    # `mnistlab --help` and the start of every command: 0.06 s of CPU (README), not the 1 s
    # that SciPy's stats, NumPy, nbformat or a backend would cost.
    code = "import sys, mnistlab.cli; print(' '.join(sorted(set(sys.argv[1:]) & set(sys.modules))))"
    heavy = ["numpy", "scipy", "nbformat", "keras", "jax", "tensorflow", "onnxruntime", "PIL"]
    result = child(code, tmp_path, *heavy)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
