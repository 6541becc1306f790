"""Which Keras backend runs: mnistlab follows the one Keras already runs, and chooses only when
Keras is not imported yet. Keras reads `KERAS_BACKEND` once, at import, so a process (a notebook
kernel) runs one backend.

`use(name)` makes sure Keras runs `name` (None: whatever Keras runs, or will run: its
`KERAS_BACKEND`, else JAX), importing Keras if it is not imported yet. A request for another
backend than the one running is a clear error before any work, saying how to switch.
Importing mnistlab imports no backend; the functions that need Keras call `use`. A process that
mnistlab owns (the `mnistlab` command) first calls `own_process()`: `skip_keras_extras()`, so
that Keras imports in half the time, and `keep_compiled_programs()`, so that JAX compiles a
model's programs once per machine rather than once per process.

JAX is the default: it trains the lab's model 6 times faster than the lab's plain TensorFlow
recipe here (`mnistlab bench`). TensorFlow, the engine the lab names, is an extra
(`pip install 'mnistlab[tensorflow]'`).
"""

import contextlib
import importlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path

from mnistlab.errors import MnistlabError

DEFAULT = "jax"
BACKENDS = ("tensorflow", "jax")
# What Keras imports, when installed, only to offer integrations that mnistlab never uses: its
# scikit-learn wrappers, pandas inputs to fit, its image gallery. 1.0 s of the 2.1 s that Keras
# and JAX take to import here (`python -X importtime`; they come with MLflow's extra).
KERAS_EXTRAS = ("sklearn", "pandas", "matplotlib")
skipping_keras_extras = False  # set by skip_keras_extras(), for the whole process
compiled_programs: Path | None = None  # set by keep_compiled_programs(), for the whole process
COMPILED_PROGRAMS_BYTES = 256 * 2**20  # the least recently used go beyond this (lab: 0.2 MB)


def running() -> str | None:
    """The backend Keras runs in this process, or None before Keras is imported."""
    if "keras" not in sys.modules:
        return None
    import keras

    return str(keras.backend.backend())


def default() -> str:
    """The backend `use()` gives: the one Keras runs, else `$KERAS_BACKEND`, else JAX."""
    return running() or os.environ.get("KERAS_BACKEND") or DEFAULT


def use(name: str | None = None, what: str = "the spec") -> str:
    """Make sure Keras runs `name` (None: `default()`), importing Keras if needed, and return
    the backend's name. `what` names who asks, in the error."""
    if name is not None and name not in BACKENDS:
        raise MnistlabError(
            f"{what} asks for the backend {name!r}", f"choose one of: {', '.join(BACKENDS)}"
        )
    current = running()
    if current is not None:
        if name is not None and name != current:
            raise MnistlabError(
                f"{what} asks for {name}, but Keras already runs {current} in this process",
                f"set KERAS_BACKEND={name} before Keras is first imported (in a notebook: "
                f"restart the kernel, then set it first), or ask for {current}",
            )
        if current not in BACKENDS:
            raise MnistlabError(
                f"Keras runs {current}, which mnistlab does not support",
                f"set KERAS_BACKEND to one of {', '.join(BACKENDS)} before importing Keras",
            )
        return current
    name = name or default()
    if name not in BACKENDS:
        raise MnistlabError(
            f"KERAS_BACKEND={name} is not a backend mnistlab supports",
            f"set it to one of: {', '.join(BACKENDS)}",
        )
    if importlib.util.find_spec(name) is None:
        raise MnistlabError(
            f"{what} asks for {name}, which is not installed",
            f"install it with: pip install 'mnistlab[{name}]'",
        )
    os.environ["KERAS_BACKEND"] = name
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if name == "tensorflow":
        import_quietly("tensorflow")
    with absent(KERAS_EXTRAS) if skipping_keras_extras else contextlib.nullcontext():
        importlib.import_module("keras")
    if name == "jax":
        keep_tensorflow_asleep()
        if compiled_programs is not None:
            cache_compiled_programs(compiled_programs)
    return name


def keep_tensorflow_asleep() -> None:
    """On JAX, Keras asks whether TensorFlow is installed, importing it (4 s here), only to
    check whether a value it saves or seeds is TensorFlow's; on JAX none is. Tell Keras's lazy
    TensorFlow module that it is absent, unless something imported TensorFlow already. Training
    and saving on JAX then import no TensorFlow (tests/test_backend.py)."""
    if "tensorflow" in sys.modules:
        return
    from keras.src.utils import module_utils

    module_utils.tensorflow._available = False


def own_process() -> None:
    """What the `mnistlab` command does first, in a process that is mnistlab's alone:
    `skip_keras_extras()` and `keep_compiled_programs()`."""
    skip_keras_extras()
    keep_compiled_programs()


def skip_keras_extras() -> None:
    """For a process that mnistlab owns, before Keras is imported: when `use` imports Keras,
    Keras finds `KERAS_EXTRAS` absent and skips its integrations with them. The packages
    themselves still import as usual afterwards (mnistlab's figures, MLflow); only Keras's own
    references to them stay empty, which is why a library call must not do this to its
    caller's process."""
    global skipping_keras_extras
    skipping_keras_extras = True


def keep_compiled_programs(folder: Path | None = None) -> None:
    """For a process that mnistlab owns, before Keras is imported: on JAX, `use` has JAX keep
    the programs XLA compiles in `folder` (default: `jax` in mnistlab's folder of the user's
    cache), and load them from there instead of compiling them again in the next process.
    Compiling is most of the cost of a first epoch, and more besides: the lab's model compiles
    for 0.9 s before its first step here and 0.6 s more within its first epoch. JAX's own
    settings come first: `JAX_COMPILATION_CACHE_DIR` names another folder, and
    `JAX_ENABLE_COMPILATION_CACHE=false` turns this off. Not for a library call: the setting
    is the whole process's."""
    global compiled_programs
    if folder is None:
        import platformdirs

        folder = Path(platformdirs.user_cache_dir("mnistlab")) / "jax"
    compiled_programs = folder


def cache_compiled_programs(folder: Path) -> None:
    """Point JAX's persistent compilation cache at `folder`, unless JAX already has a folder.
    JAX runs what it finds there, so the folder must be this user's alone: it is made private
    (0o700), and one that others may write to is not used; nor one that cannot be written."""
    import jax

    if getattr(jax.config, "jax_compilation_cache_dir", None) is not None:  # the user's
        return
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        private = folder.stat().st_mode & 0o022 == 0 and os.access(folder, os.W_OK)
    except OSError:
        private = False
    if not private:
        return
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # small programs too
    jax.config.update("jax_compilation_cache_max_size", COMPILED_PROGRAMS_BYTES)


class Absent(importlib.abc.MetaPathFinder):
    """An import finder that answers "not installed" for some top-level packages."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = set(names)

    def find_spec(self, fullname: str, path: object, target: object = None) -> ModuleSpec | None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


@contextlib.contextmanager
def absent(names: Sequence[str]) -> Iterator[None]:
    """Within the block, importing `names` (not imported yet) fails as if they were not
    installed."""
    finder = Absent(names)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def device() -> str:
    """The device Keras computes on, in words: "CPU", or the accelerator's name."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        first = jax.devices()[0]
        return "CPU" if first.platform == "cpu" else f"{first.platform.upper()} {first.device_kind}"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"GPU {details.get('device_name', gpus[0].name)}"


NOISE = ("I0000 ", "WARNING: All log messages before absl", "To enable the following instructions")


def import_quietly(module: str) -> None:
    """Import `module` with its C++ start-up notices dropped: TensorFlow 2.21 writes its info
    lines (oneDNN, CPU features) to stderr before any log level applies. Other lines, and all
    of them if the import fails, are passed on."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        failed = True
        try:
            importlib.import_module(module)
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines(keepends=True):
                if failed or not line.startswith(NOISE):
                    sys.stderr.write(line)
