"""The compiled epoch on JAX (`mnistlab.compiled`): the same arithmetic as `model.fit` from the
same start and the same order of images, the augmentations done on the device, the callbacks
the fronts use, and the choice of loop named in the run's record."""

import json

import keras
import numpy as np
import pytest

from mnistlab import compiled
from mnistlab.callbacks import EpochLine
from mnistlab.data import preprocess
from mnistlab.errors import MnistlabError
from mnistlab.models import build
from mnistlab.spec import Spec
from mnistlab.training import fit, loop_for, train

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="the compiled epoch is JAX's; fit runs elsewhere"
)


def both(spec, tiny):
    """The model of `spec` trained one epoch on the tiny set's first 320 images in order, by
    the compiled loop and by `model.fit`, from the same initial weights."""
    x, y = tiny.train
    keras.utils.set_random_seed(spec.seed)
    ours = build(spec, 7)
    history = compiled.fit_epochs(ours, spec, (x[:320], y[:320]), (x[320:], y[320:]), shuffle=False)
    keras.utils.set_random_seed(spec.seed)
    theirs = build(spec, 7)
    kept = theirs.fit(
        preprocess(x),
        y,
        batch_size=spec.batch_size,
        epochs=1,
        validation_split=0.2,
        shuffle=False,
        verbose=0,
    )
    return ours, history, theirs, kept.history


@pytest.mark.parametrize(
    "spec",
    [
        Spec(epochs=1, batch_size=320),  # one step: the whole 320 images
        Spec(epochs=1, batch_size=48),  # 6 full steps and one of the 32 left
        Spec(  # batch norm's statistics, dropout's masks and a schedule
            epochs=1,
            batch_size=48,
            hidden=(32, 16),
            batchnorm=True,
            dropout=0.3,
            schedule="cosine",
        ),
    ],
    ids=["one-step", "partial-last-batch", "batchnorm-dropout-cosine"],
)
def test_an_epoch_gives_the_weights_and_history_of_fit(tiny, spec):
    ours, history, theirs, expected = both(spec, tiny)
    assert (
        int(ours.optimizer.iterations)
        == int(theirs.optimizer.iterations)
        == -(-320 // spec.batch_size)
    )
    assert len(ours.variables) == len(theirs.variables)
    for a, b in zip(ours.variables, theirs.variables, strict=True):
        np.testing.assert_allclose(np.asarray(a.value), np.asarray(b.value), rtol=1e-4, atol=1e-5)
    assert list(history) == list(expected) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    for key, values in expected.items():
        assert history[key] == pytest.approx(values, rel=1e-5, abs=1e-6)


def test_the_lab_and_the_augmented_specs_take_the_compiled_loop_scipys_do_not():
    assert loop_for(Spec()) == "compiled"
    assert loop_for(Spec(shift=2, rotate=10.0, flip=True, hidden=(32,))) == "compiled"
    assert loop_for(Spec(shift=2, varied=0.5)) == "compiled"  # varied: pen, blur, turns
    for scipys in (dict(elastic=20.0), dict(pen=1), dict(blur=1.0), dict(rotate=8.0, varied=0.5)):
        assert loop_for(Spec(**scipys)) == "fit"
    assert loop_for(Spec(conv=(4,))) == ("fit" if compiled.on_cpu() else "compiled")
    assert compiled.loop_for(Spec(), "tensorflow") == "fit"
    with pytest.raises(MnistlabError, match="compiled loop cannot train this spec: elastic"):
        loop_for(Spec(elastic=20.0), "compiled")
    with pytest.raises(MnistlabError, match="unknown loop 'fast'"):
        loop_for(Spec(), "fast")


def test_the_run_records_its_loop(tiny, tmp_path):
    run = train(Spec(epochs=1, hidden=(16,)), tiny)
    assert run.info["loop"] == "compiled"
    run.save(tmp_path / "run")
    assert json.loads((tmp_path / "run" / "run.json").read_text())["loop"] == "compiled"
    # and the model the loop trained is Keras's own: evaluate and predict agree with it
    loss, accuracy = run.model.evaluate(preprocess(tiny.test[0]), tiny.test[1], verbose=0)
    assert run.metrics["accuracy"] == pytest.approx(accuracy)
    assert run.metrics["loss"] == pytest.approx(loss, abs=1e-5)


class Counter(keras.callbacks.Callback):
    def __init__(self, stop_after=None):
        super().__init__()
        self.batches, self.epochs, self.stop_after = [], [], stop_after

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append((batch, dict(logs)))

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)
        if self.stop_after is not None and epoch + 1 == self.stop_after:
            self.model.stop_training = True


def test_a_progress_bar_moves_during_the_epoch_and_stopping_stops(tiny):
    seen = Counter(stop_after=2)
    lines: list[str] = []
    model, history = fit(
        Spec(epochs=5, batch_size=8),
        tiny,
        verbose=1,
        callbacks=[seen, EpochLine("t", 5, lines.append)],
    )
    assert seen.epochs == [0, 1]  # stopped after the second of five epochs
    assert len(history["loss"]) == len(history["seconds"]) == 2
    assert int(model.optimizer.iterations) == 2 * 40
    # 40 steps an epoch in calls of ceil(40 / 20) = 2: the bar moves 20 times an epoch
    assert [b for b, _ in seen.batches[:20]] == list(range(1, 40, 2))
    assert seen.batches[19][1]["loss"] == pytest.approx(history["loss"][0])
    assert lines[1].startswith("t: epoch 2/5, validation ")


def test_a_learning_rate_schedule_callback_is_obeyed(tiny):
    spec = Spec(epochs=2, hidden=(16,))
    keras.utils.set_random_seed(spec.seed)
    start = [np.asarray(w) for w in build(spec).get_weights()]
    frozen = keras.callbacks.LearningRateScheduler(lambda epoch, rate: 0.0)
    model, _ = fit(spec, tiny, callbacks=[frozen])
    assert int(model.optimizer.iterations) == 20
    for a, b in zip(model.get_weights(), start, strict=True):
        np.testing.assert_array_equal(a, b)


def test_device_shifts_stay_in_range_and_each_image_moves_its_own_way():
    import jax

    images = np.zeros((200, 28, 28), np.float32)
    images[:, 13, 13] = 255
    moved = np.asarray(compiled.shifted(images, 2, jax.random.key(0)))
    rows, cols = np.nonzero(moved.reshape(200, -1) == 255)
    assert np.array_equal(rows, np.arange(200))
    dy, dx = cols // 28 - 13, cols % 28 - 13
    assert set(dy) == set(dx) == {-2, -1, 0, 1, 2}
    full = np.asarray(compiled.shifted(np.full((50, 28, 28), 255.0), 3, jax.random.key(1)))
    assert set(np.unique(full)) == {0.0, 255.0}  # what comes in at the edge is black


def test_device_rotations_match_the_numpy_ones_in_kind():
    import jax

    images = np.zeros((300, 28, 28), np.float32)
    images[:, 4:24, 13:15] = 255  # a vertical bar through the centre
    turned = np.asarray(compiled.turned(images, 30.0, jax.random.key(0)))
    angles = []
    for image in turned:
        rows, cols = np.nonzero(image)
        weights = image[rows, cols]
        assert np.average(rows, weights=weights) == pytest.approx(13.5, abs=0.3)
        assert np.average(cols, weights=weights) == pytest.approx(13.5, abs=0.3)
        angles.append(np.degrees(np.arctan(np.polyfit(rows, cols, 1, w=weights)[0])))
    assert max(np.abs(angles)) <= 31
    assert min(angles) < -20 and max(angles) > 20
    still = np.asarray(compiled.turned(images[:3], 1e-9, jax.random.key(0)))
    np.testing.assert_array_equal(still, images[:3])


def test_device_flips_mirror_about_half_the_images_and_only_those():
    import jax

    images = np.random.default_rng(0).integers(0, 256, (400, 28, 28)).astype(np.float32)
    out = np.asarray(compiled.flipped(images, jax.random.key(0)))
    plain = (out == images).all(axis=(1, 2))
    mirrored = (out == images[:, :, ::-1]).all(axis=(1, 2))
    assert (plain | mirrored).all()
    assert 0.4 < mirrored.mean() < 0.6


def test_augmented_training_is_deterministic_and_differs_from_plain(tiny):
    spec = Spec(epochs=2, hidden=(16,), shift=2, rotate=10.0, flip=True)
    (m1, h1), (m2, h2) = fit(spec, tiny), fit(spec, tiny)
    assert h1["loss"] == h2["loss"]
    for a, b in zip(m1.get_weights(), m2.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert fit(spec.replace(rotate=0.0), tiny)[1]["loss"] != h1["loss"]


def test_the_checkpoint_tests_run_the_compiled_loop_and_a_checkpoint_keeps_to_its_loop(tiny):
    from test_checkpoint import ARRAYS, AUGMENTED

    from mnistlab import checkpoints

    # tests/test_checkpoint.py's resumed runs end as runs never stopped: on JAX, by this loop
    assert loop_for(AUGMENTED) == loop_for(ARRAYS) == "compiled"
    spec = Spec(epochs=1, hidden=(8,), backend="jax")
    model = build(spec)
    model.optimizer.build(model.trainable_variables)
    raw = checkpoints.encode(spec, "print", 1, {}, model, None, "fit")
    assert checkpoints.decode(raw, spec, "print", "fit").epochs == 1
    with pytest.raises(checkpoints.Unusable, match="made by the fit loop, not compiled"):
        checkpoints.decode(raw, spec, "print", "compiled")
