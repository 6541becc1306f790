"""Checkpoints: a run that is stopped (killed, Ctrl-C, its Ray worker lost) goes on from its last
saved epoch when it is made again, and ends with the same weights and history as a run that was
never stopped (tests/test_checkpoint.py).

    run = ml.train(spec, data, checkpoint="runs/.mine.checkpoint")  # resumes if one is there
    run.save("runs/mine")                                           # and removes it

A checkpoint is one file beside the run folder it leads to (`runs.checkpoint_path`: the run
folder `runs/VARIANT/seed-3` has `runs/VARIANT/.seed-3.checkpoint`), written at the end of an
epoch under a temporary name and renamed over the previous one, so a kill while writing leaves
the previous checkpoint whole. One file rather than a folder because a file is replaced by one
atomic rename, and a folder that exists is not. It is an uncompressed `.npz` of:

- the model's variables (`model.variables`): weights, batch-norm statistics and the state of
  each Dropout layer's `SeedGenerator`, which draws its masks; `model.save` leaves that state
  out (Keras 3.15's `Layer.save_own_variables` stores weights only), so a model saved and loaded
  would draw other dropout masks than the run it came from;
- the optimiser's variables: the step count (which the cosine schedule reads) and its moments;
- the epochs done, the history so far, the spec and a fingerprint of the training data;
- the random state that `model.fit` and the augmentation draw from between epochs (Keras 3.15,
  `trainers/data_adapters`): NumPy's global generator (on JAX, arrays are shuffled by
  `np.random.permutation` at the start of each epoch), Python's `random` (a `PyDataset`, the
  augmented path, has its batches shuffled by `random.shuffle` each epoch, on both backends;
  on TensorFlow `AugmentedImages.feed`'s callback shuffles them as Keras would),
  and the augmentation's own generator (`AugmentedImages.state`: the epoch it drew next is
  drawn again from it).
  Leaving out any of these makes the resumed weights differ (checked one by one on both
  backends). On TensorFlow, `training.fit` feeds unvaried images through
  `AugmentedImages.feed` too: Keras's array path there shuffles with `tf.random.shuffle`
  inside a tf.data function whose seeds the global seed (`seed_everything`) fixes, and gave
  the same order every epoch.
  The compiled loop on JAX (`compiled`) draws from none of these: its order and augmentation
  come from the spec's seed and the epoch's number, its dropout from the seed generators
  among the model's variables. A checkpoint names the loop that made it and is used only by
  that loop, each drawing its own numbers.

All of it is restored after `model.fit` has started (`on_train_begin`), because `fit` itself
draws from these generators before the first epoch (it reads a batch to build the model's
metrics, then starts the data set's epoch over), in a resumed run as in the first.

A checkpoint made with another spec (backend included) or other training data, one that cannot
be read or whose arrays do not fit the model is not used: a `CheckpointWarning` says why and the
run starts from its first epoch, replacing the file at its first checkpoint. Resuming says so
with a `CheckpointWarning` too. A checkpoint that cannot be written is skipped with one: a
checkpoint never stops a run.

Checkpoints are written at most every CHECKPOINT_SECONDS, and after the last epoch; see there
for the cost. Where they are kept is a `Place`: a `File` here, or the Ray engine's, which sends
them to the machine that runs the sweep (`ray_engine`).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from mnistlab import backend
from mnistlab.files import write_bytes
from mnistlab.spec import Spec

backend.use()  # Keras reads its backend at import: mnistlab's choice, if it is the first
import keras  # noqa: E402

if TYPE_CHECKING:
    from mnistlab.augment import AugmentedImages
    from mnistlab.callbacks import EpochTimer
    from mnistlab.data import Dataset

# Seconds between checkpoints, at least. One costs 6 to 10 ms for the lab's model on JAX (1.3 MB)
# against epochs of 0.5 to 1.2 s: about 1%; 70 to 110 ms for `cnn`'s on TensorFlow (10.3 MB)
# against epochs of 22 to 37 s: under 0.5% (benchmarks/checkpoints.py, real MNIST, 2 cores shared
# with other work: epoch times with and without differ by less than their noise). Cheap either
# way, but a Ray worker sends each one to the driver, and a lab sweep on many workers would pour
# megabytes a second per worker into one process. At most every 10 s: a stopped run loses at
# most 10 s and an epoch of work; the long runs this is for (`cnn`, `best`: epochs of 10 to 40
# s) keep every epoch; the lab's 5-epoch run writes one, after its last epoch, which is always
# kept (through the test evaluation and the saving).
CHECKPOINT_SECONDS = 10.0
FORMAT = 2  # of the file: a checkpoint of another format is not used


class CheckpointWarning(UserWarning):
    """A run resumed from its checkpoint, or set an unusable checkpoint aside and started over."""


class Place(Protocol):
    """Where a run's checkpoint is kept: the bytes of the last one, if any."""

    def read(self) -> bytes | None: ...

    def write(self, raw: bytes) -> None: ...

    def remove(self) -> None: ...


@dataclass(frozen=True)
class File:
    """A checkpoint in a file, replaced atomically."""

    path: Path

    def read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def write(self, raw: bytes) -> None:
        write_bytes(self.path, raw)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def __str__(self) -> str:
        return f"checkpoint {self.path}"


def place(checkpoint: str | Path | Place) -> Place:
    return File(Path(checkpoint)) if isinstance(checkpoint, str | Path) else checkpoint


@dataclass
class Saved:
    """What a checkpoint holds, read back."""

    epochs: int  # done
    history: dict[str, list[float]]
    model: list[np.ndarray]
    optimizer: list[np.ndarray]
    random: dict[str, Any]  # states of the generators, see `random_state`


class Unusable(Exception):
    """Why a checkpoint cannot be used."""


def fingerprint(data: Dataset) -> str:
    """The training images and labels, in 16 hex digits (SHA-256: 30 ms for MNIST's 47 MB)."""
    digest = hashlib.sha256()
    for array in data.train:
        digest.update(str((array.dtype.str, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()[:16]


def encode(
    spec: Spec,
    data_print: str,
    epochs: int,
    history: dict[str, list[float]],
    model: keras.Model,
    augmented: AugmentedImages | None,
    loop: str = "fit",
) -> bytes:
    state = random_state(augmented)
    numpy_keys = state["numpy"].pop("keys")
    meta = {
        "format": FORMAT,
        "spec": spec.to_dict(),
        "data": data_print,
        "epochs": epochs,
        "history": history,
        "random": state,
        "loop": loop,
    }
    arrays = {
        f"model/{i}": keras.ops.convert_to_numpy(v.value) for i, v in enumerate(model.variables)
    }
    for i, v in enumerate(model.optimizer.variables):
        arrays[f"optimizer/{i}"] = keras.ops.convert_to_numpy(v.value)
    arrays["numpy_keys"] = numpy_keys
    out = io.BytesIO()
    np.savez(out, meta=np.array(json.dumps(meta)), **arrays)
    return out.getvalue()


def decode(raw: bytes, spec: Spec, data_print: str, loop: str = "fit") -> Saved:
    """The checkpoint in `raw`, if it was made for `spec` and this training data by the
    training loop `loop` (`training.loop_for`: each draws its own random numbers); else
    `Unusable` says why."""
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        meta = json.loads(str(arrays.pop("meta")))
        if meta.get("format") != FORMAT:
            raise Unusable(f"it is of another format ({meta.get('format')!r}, not {FORMAT})")
        if meta["spec"] != spec.to_dict():
            changed = [k for k, v in spec.to_dict().items() if meta["spec"].get(k) != v]
            raise Unusable(f"it was made with another spec ({', '.join(changed) or 'its keys'})")
        if meta["data"] != data_print:
            raise Unusable("it was made on other training data")
        if meta.get("loop", "fit") != loop:  # checkpoints before the compiled loop: fit's
            raise Unusable(f"it was made by the {meta.get('loop', 'fit')} loop, not {loop}")
        state = meta["random"]
        state["numpy"]["keys"] = arrays.pop("numpy_keys")
        return Saved(
            epochs=int(meta["epochs"]),
            history={k: [float(v) for v in vs] for k, vs in meta["history"].items()},
            model=numbered(arrays, "model"),
            optimizer=numbered(arrays, "optimizer"),
            random=state,
        )
    except Unusable:
        raise
    except Exception as e:  # a truncated or foreign file: zipfile, NumPy and json raise many kinds
        raise Unusable(f"it is damaged ({type(e).__name__}: {e})") from None


def numbered(arrays: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    count = sum(1 for name in arrays if name.startswith(prefix + "/"))
    return [arrays[f"{prefix}/{i}"] for i in range(count)]


def random_state(augmented: AugmentedImages | None) -> dict[str, Any]:
    name, keys, position, has_gauss, gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "numpy": {
            "name": name,
            "keys": keys,
            "pos": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(gauss),
        },
        "python": [version, list(internal), gauss_next],
    }
    if augmented is not None:
        state["augment"] = augmented.state
    return state


def set_random_state(state: dict[str, Any], augmented: AugmentedImages | None) -> None:
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"], n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if augmented is not None:
        augmented.restore(state["augment"])


def check(variables: list[Any], values: list[np.ndarray], what: str) -> None:
    if len(values) != len(variables):
        raise Unusable(f"it holds {len(values)} {what} variables, the model has {len(variables)}")
    for variable, value in zip(variables, values, strict=True):
        if tuple(value.shape) != tuple(variable.shape):
            raise Unusable(
                f"its {what} variable {variable.path} has shape {value.shape}, "
                f"not {tuple(variable.shape)}"
            )


def note(message: str) -> None:
    warnings.warn(message, CheckpointWarning, stacklevel=2)


class Keeper(keras.callbacks.Callback):
    """Writes a run's checkpoint at the end of its epochs (at most every `every` seconds, and
    after the last), and puts a model just built back where its checkpoint left it.

        keeper = Keeper(place, spec, data, timer)  # reads the checkpoint, if there is one
        keeper.restore(model)                      # its variables; `keeper.epochs` are done
        model.fit(..., initial_epoch=keeper.epochs, callbacks=[timer, keeper, ...])
        keeper.history                             # every epoch's, earlier processes' too

    `timer` (an `EpochTimer`, earlier in the callbacks) gives the seconds of each epoch;
    `loop` is the training loop (default: `training.loop_for(spec)`'s), which a checkpoint
    must share."""

    def __init__(
        self,
        where: Place,
        spec: Spec,
        data: Dataset,
        timer: EpochTimer,
        every: float | None = None,
        loop: str | None = None,
    ) -> None:
        super().__init__()
        # as `train` records it: a checkpoint of one backend is not used on the other
        spec = spec if spec.backend else spec.replace(backend=keras.backend.backend())
        from mnistlab.compiled import loop_for

        self.where, self.spec, self.timer = where, spec, timer
        self.loop = loop or loop_for(spec)
        self.every = CHECKPOINT_SECONDS if every is None else every
        self.dataset = data
        self.augmented: AugmentedImages | None = None  # set by the caller when it augments
        self.saved = self.read()
        self.history: dict[str, list[float]] = dict(self.saved.history) if self.saved else {}

    @functools.cached_property
    def data_print(self) -> str:  # only when there is a checkpoint to read or to write
        return fingerprint(self.dataset)

    @property
    def epochs(self) -> int:
        """Epochs done before this process: where `model.fit` starts."""
        return self.saved.epochs if self.saved else 0

    def read(self) -> Saved | None:
        try:
            raw = self.where.read()
            return None if raw is None else decode(raw, self.spec, self.data_print, self.loop)
        except Unusable as e:
            note(f"not using the {self.where}: {e}; starting from epoch 1")
        except Exception as e:  # a file system's or Ray's: a checkpoint never stops a run
            note(f"cannot read the {self.where} ({type(e).__name__}: {e}); starting from epoch 1")
        return None

    def restore(self, model: keras.Model) -> None:
        """Set the variables of `model` (built and compiled, not fitted) and of its optimiser
        to the checkpoint's; its random state follows when `fit` starts."""
        if self.saved is None:
            return
        model.optimizer.build(model.trainable_variables)  # as fit would, with zeros
        pairs = (
            (model.variables, self.saved.model),
            (model.optimizer.variables, self.saved.optimizer),
        )
        try:
            for (variables, values), what in zip(pairs, ("model", "optimizer"), strict=True):
                check(variables, values, what)
        except Unusable as e:
            note(f"not using the {self.where}: {e}; starting from epoch 1")
            self.saved, self.history = None, {}
            return
        for variables, values in pairs:
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)
        done = self.saved.epochs
        if done < self.spec.epochs:
            note(f"resuming from epoch {done + 1} of {self.spec.epochs} ({self.where})")
        else:
            note(f"all {done} epochs were done ({self.where}): evaluating")

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.last = time.monotonic()
        if self.saved is not None:  # after what fit draws as it starts
            set_random_state(self.saved.random, self.augmented)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.history.setdefault("seconds", []).append(self.timer.seconds[-1])
        last = epoch + 1 == self.spec.epochs
        if last or time.monotonic() - self.last >= self.every:
            raw = encode(
                self.spec,
                self.data_print,
                epoch + 1,
                self.history,
                self.model,
                self.augmented,
                self.loop,
            )
            try:
                self.where.write(raw)
            except Exception as e:  # a full disk, a lost driver: the run goes on without
                note(f"cannot write the {self.where} ({type(e).__name__}: {e}); training goes on")
            self.last = time.monotonic()
