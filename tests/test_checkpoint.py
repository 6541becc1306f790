"""Checkpoints on the tiny synthetic data: a run stopped after an epoch and made again ends as
the run that was never stopped, weights and history alike; a checkpoint of another spec, of
other data, damaged or not fitting the model is not used, and says so; a saved run leaves no
checkpoint; a sweep and `mnistlab train` go on where they were stopped."""

import io
import json
import textwrap

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import CLASS_NAMES, synthetic

from mnistlab import checkpoints, cli, data, runs
from mnistlab import experiments as ex
from mnistlab.callbacks import EpochTimer
from mnistlab.checkpoints import CheckpointWarning
from mnistlab.data import Dataset
from mnistlab.models import build
from mnistlab.spec import Spec
from mnistlab.training import fit, train

AUGMENTED = Spec(epochs=4, hidden=(32,), dropout=0.3, shift=2, flip=True)  # a PyDataset
ARRAYS = Spec(epochs=4, hidden=(32,), dropout=0.3, batchnorm=True, schedule="cosine")
OTHER_BACKEND = "tensorflow" if keras.backend.backend() == "jax" else "jax"


class Stop(keras.callbacks.Callback):
    """Ctrl-C after epoch `after`, once its checkpoint is written (the checkpoint's callback
    comes before the caller's)."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.after:
            raise KeyboardInterrupt


class Made:
    """Fits that several tests compare with, made once: compiling is most of a tiny fit."""

    def __init__(self, tiny, folder):
        self.tiny, self.folder = tiny, folder
        self.wholes, self.stops = {}, {}

    def whole(self, spec):
        """The model and history of `spec` never stopped, without checkpoints."""
        if spec not in self.wholes:
            self.wholes[spec] = fit(spec, self.tiny)
        return self.wholes[spec]

    def stopped(self, spec):
        """The bytes of the checkpoint of `spec` stopped after its second epoch."""
        if spec not in self.stops:
            path = self.folder / f"stopped-{len(self.stops)}"
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(checkpoints, "CHECKPOINT_SECONDS", 0.0)
                with pytest.raises(KeyboardInterrupt):
                    fit(spec, self.tiny, callbacks=[Stop(2)], checkpoint=path)
            self.stops[spec] = path.read_bytes()
        return self.stops[spec]


@pytest.fixture(scope="module")
def made(tiny, tmp_path_factory):
    return Made(tiny, tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(autouse=True)
def every_epoch(monkeypatch):
    """A checkpoint after every epoch: the tiny runs' epochs last milliseconds."""
    monkeypatch.setattr(checkpoints, "CHECKPOINT_SECONDS", 0.0)


def state(model):
    """Everything that decides what the model does next: weights, batch-norm statistics,
    the dropout layers' seed states, the optimiser's step and moments."""
    values = [*model.variables, *model.optimizer.variables]
    return [keras.ops.convert_to_numpy(v.value) for v in values]


def assert_same_state(a, b):
    for x, y in zip(state(a), state(b), strict=True):
        np.testing.assert_array_equal(x, y)


def assert_same_weights(a, b):
    for x, y in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)


def without_seconds(history):
    return {k: v for k, v in history.items() if k != "seconds"}


def meta(path):
    with np.load(path) as npz:
        return json.loads(str(npz["meta"]))


@pytest.mark.parametrize("spec", [AUGMENTED, ARRAYS], ids=["augmented", "arrays"])
def test_a_stopped_run_goes_on_to_the_same_weights_and_history(tmp_path, made, spec):
    """Augmented: Python's `random` orders the batches, the augmentation's generator moves and
    mirrors the images. Arrays: on JAX NumPy's global generator orders the images. Both: the
    dropout layer's seed state, the optimiser's step (the cosine schedule) and moments."""
    whole, whole_history = made.whole(spec)
    path = tmp_path / ".run.checkpoint"
    path.write_bytes(made.stopped(spec))
    assert meta(path)["epochs"] == 2
    earlier_seconds = meta(path)["history"]["seconds"]

    with pytest.warns(CheckpointWarning, match=f"resuming from epoch 3 of 4 \\(checkpoint {path}"):
        resumed, history = fit(spec, made.tiny, checkpoint=path)

    assert any("seed_generator" in v.path for v in resumed.variables)  # compared below
    assert_same_state(resumed, whole)
    assert without_seconds(history) == without_seconds(whole_history)
    assert len(history["seconds"]) == 4
    assert history["seconds"][:2] == earlier_seconds  # the first two epochs were not run again
    assert meta(path)["epochs"] == 4


def keeper(path, spec, tiny):
    return checkpoints.Keeper(checkpoints.File(path), spec, tiny, EpochTimer())


def truncated(raw):
    return raw[: len(raw) // 2]


@pytest.mark.parametrize(
    "spec, other_data, damage, message",
    [
        (ARRAYS.replace(epochs=5), False, None, r"made with another spec \(epochs\)"),
        (ARRAYS.replace(hidden=(64,), seed=2), False, None, r"another spec \(hidden, seed\)"),
        (ARRAYS.replace(backend=OTHER_BACKEND), False, None, r"another spec \(backend\)"),
        (ARRAYS, True, None, "it was made on other training data"),
        (ARRAYS, False, truncated, r"it is damaged \(BadZipFile: "),
        (ARRAYS, False, lambda raw: b"", r"it is damaged \(\w+"),
        (ARRAYS, False, lambda raw: b"not a checkpoint", r"it is damaged \(\w+"),
    ],
    ids=["epochs", "network", "backend", "data", "truncated", "empty", "foreign"],
)
def test_a_checkpoint_that_cannot_be_used_is_not_and_says_why(
    tmp_path, made, spec, other_data, damage, message
):
    path = tmp_path / "c"
    raw = made.stopped(ARRAYS)
    path.write_bytes(damage(raw) if damage else raw)
    tiny = made.tiny
    if other_data:
        tiny = Dataset(synthetic(400, 7), tiny.test, CLASS_NAMES, "synthetic", "mnist")
    with pytest.warns(CheckpointWarning, match=message + ".*; starting from epoch 1$"):
        kept = keeper(path, spec, tiny)
    assert kept.epochs == 0
    assert kept.saved is None


def test_a_damaged_checkpoint_is_replaced_by_the_runs_own(tmp_path, made):
    path = tmp_path / "c"
    path.write_bytes(truncated(made.stopped(ARRAYS)))
    with pytest.warns(CheckpointWarning, match=f"not using the checkpoint {path}: it is damaged"):
        model, history = fit(ARRAYS, made.tiny, checkpoint=path)
    whole, whole_history = made.whole(ARRAYS)
    assert_same_state(model, whole)  # trained from the first epoch
    assert without_seconds(history) == without_seconds(whole_history)
    assert meta(path)["epochs"] == 4


def test_a_checkpoint_that_does_not_fit_the_model_is_not_used(tmp_path, made):
    """Its spec and data match but an array does not: a note, and no variable is set."""
    path = tmp_path / "c"
    with np.load(io.BytesIO(made.stopped(ARRAYS))) as npz:
        arrays = dict(npz)
    moment = next(k for k, v in arrays.items() if k.startswith("optimizer/") and v.ndim == 2)
    arrays[moment] = arrays[moment][:10]
    out = io.BytesIO()
    np.savez(out, **arrays)
    path.write_bytes(out.getvalue())
    keras.utils.set_random_seed(1)
    model = build(ARRAYS)
    before = [keras.ops.convert_to_numpy(v.value) for v in model.variables]
    kept = keeper(path, ARRAYS, made.tiny)
    assert kept.epochs == 2
    with pytest.warns(CheckpointWarning, match=r"its optimizer variable .* has shape \(10, "):
        kept.restore(model)
    assert kept.epochs == 0
    for x, y in zip(before, model.variables, strict=True):
        np.testing.assert_array_equal(x, keras.ops.convert_to_numpy(y.value))


def test_a_kill_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c"
    checkpoints.File(path).write(b"epoch 2")

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr("mnistlab.files.os.replace", killed)  # the bytes written, not renamed
    with pytest.raises(KeyboardInterrupt):
        checkpoints.File(path).write(b"epoch 3")
    monkeypatch.undo()
    assert path.read_bytes() == b"epoch 2"
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # no temporary file left


class Broken:
    """A place that cannot be read or written: a full disk, a driver gone."""

    def read(self):
        raise OSError("input/output error")

    def write(self, raw):
        raise OSError("no space left on device")

    def remove(self):
        pass

    def __str__(self):
        return "checkpoint nowhere"


def test_a_checkpoint_that_cannot_be_read_or_written_does_not_stop_the_run(tiny):
    with pytest.warns(CheckpointWarning) as notes:
        _, history = fit(Spec(epochs=2, hidden=(16,)), tiny, checkpoint=Broken())
    assert len(history["loss"]) == 2
    unwritten = "cannot write the checkpoint nowhere (OSError: no space left on device)"
    assert [str(n.message) for n in notes if n.category is CheckpointWarning] == [
        "cannot read the checkpoint nowhere (OSError: input/output error); starting from epoch 1",
        f"{unwritten}; training goes on",
        f"{unwritten}; training goes on",
    ]


def test_the_checkpoint_goes_once_the_run_folder_is_saved_and_a_finished_one_is_not_redone(
    tmp_path, tiny
):
    spec = ARRAYS.replace(epochs=2)
    folder = tmp_path / "runs" / "mine"
    path = runs.checkpoint_path(folder)
    assert path == tmp_path / "runs" / ".mine.checkpoint"
    first = train(spec, tiny, checkpoint=path)
    assert meta(path)["epochs"] == 2  # the last epoch is kept, through the test evaluation

    # killed while it evaluated or saved: made again, it only evaluates
    with pytest.warns(CheckpointWarning, match="all 2 epochs were done"):
        again = train(spec, tiny, checkpoint=path)
    assert again.history == first.history
    assert again.metrics == first.metrics
    assert_same_state(again.model, first.model)

    again.save(folder)
    assert not path.exists()
    assert runs.load(folder).history == first.history


SWEEP = """
    name = "long"
    dataset = "mnist"
    seeds = [1]
    [base]
    epochs = 4
    hidden = [32]
    dropout = 0.3
    shift = 2
    flip = true
    [[variants]]
    name = "base"
"""


def test_a_sweep_stopped_in_a_run_goes_on_from_its_checkpoint(tmp_path, made):
    (tmp_path / "long.toml").write_text(textwrap.dedent(SWEEP))
    plan = ex.read(tmp_path / "long.toml")
    assert plan.variants[0].spec == AUGMENTED
    out = tmp_path / "sweep"
    folders = runs.SweepFolder(out)

    def stopped_after_two(spec, data, folder):
        train(spec, data, callbacks=[Stop(2)], checkpoint=runs.checkpoint_path(folder))

    with pytest.raises(KeyboardInterrupt):
        ex.sweep(plan, out, ex.local(made.tiny, stopped_after_two))
    checkpoint = folders.checkpoint("base", 1)
    assert checkpoint == out / "runs" / "base" / ".seed-1.checkpoint"
    assert meta(checkpoint)["epochs"] == 2
    stale = out / "runs" / "base" / ".seed-1.checkpoint.x1y2.tmp"  # one killed while written
    stale.write_bytes(b"half")

    with pytest.warns(CheckpointWarning, match="resuming from epoch 3 of 4"):
        results = ex.run_experiment(plan, out=out, data=made.tiny)  # the local engine
    assert results.runs == 1
    assert not checkpoint.exists()
    assert not stale.exists()
    resumed = runs.load(folders.run("base", 1))
    whole, whole_history = made.whole(AUGMENTED)
    assert_same_weights(resumed.model, whole)
    assert without_seconds(resumed.history) == without_seconds(whole_history)

    # killed between saving the run folder and removing its checkpoint: removed next time
    checkpoint.write_bytes(b"left over")
    events = ex.sweep(plan, out, ex.local(made.tiny, lambda *args: pytest.fail("made again")))
    assert [e.status for e in events] == ["skipped"]
    assert not checkpoint.exists()


def test_train_on_the_command_line_goes_on_where_it_was_stopped(tmp_path, tiny, monkeypatch):
    monkeypatch.setattr(data, "load", lambda name, **options: tiny)
    out = tmp_path / "run"
    original = checkpoints.Keeper.on_epoch_end

    def ctrl_c_after_one(self, epoch, logs=None):
        original(self, epoch, logs)
        raise KeyboardInterrupt

    args = ["train", "--epochs", "2", "--hidden", "32", "--shift", "1", "--out", str(out)]
    with monkeypatch.context() as patch:
        patch.setattr(checkpoints.Keeper, "on_epoch_end", ctrl_c_after_one)
        result = CliRunner().invoke(cli.cli, args)
    assert result.exit_code == 130, result.output
    checkpoint = tmp_path / ".run.checkpoint"
    assert f"{checkpoint} keeps the epochs done: the same command with --out {out} goes on" in (
        result.output
    )
    assert not out.exists()

    result = CliRunner().invoke(cli.cli, args)
    assert result.exit_code == 0, result.output
    assert f"resuming from epoch 2 of 2 (checkpoint {checkpoint})\n" in result.output
    assert not checkpoint.exists()
    assert len(runs.load(out).history["loss"]) == 2
