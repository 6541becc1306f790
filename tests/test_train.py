import json

import keras
import numpy as np
import pytest

from mnistlab import runs
from mnistlab.augment import AugmentedImages, distort, shift_images
from mnistlab.callbacks import EpochLine
from mnistlab.data import Dataset, preprocess
from mnistlab.errors import MnistlabError
from mnistlab.evaluation import evaluate
from mnistlab.models import build
from mnistlab.prediction import predict, top
from mnistlab.spec import Spec
from mnistlab.training import fit, seed_everything

QUICK = Spec(epochs=2, batch_size=32)


@pytest.fixture(scope="module")
def trained(tiny):
    return fit(QUICK, tiny)


def test_history_has_keras_metrics_and_seconds_per_epoch(trained):
    _, history = trained
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"}
    assert all(len(values) == QUICK.epochs for values in history.values())
    assert all(s > 0 for s in history["seconds"])


def test_the_lab_recipe_learns_the_synthetic_classes(trained, tiny):
    model, history = trained
    assert history["loss"][-1] < history["loss"][0]
    assert evaluate(model, *tiny.test)["accuracy"] >= 0.9


def test_validation_is_the_last_fifth_of_the_training_set(tiny):
    # Keras holds out the last 20% before shuffling: 400 images -> 320 train, 80 validation,
    # so 10 steps of 32 per epoch.
    model, _ = fit(Spec(epochs=1), tiny)
    assert int(model.optimizer.iterations) == 10


def test_loss_falls_when_overfitting_a_small_batch(tiny):
    (x, y), _ = tiny.train, tiny.test
    small = Dataset((x[:40], y[:40]), tiny.test, tiny.class_names, "synthetic")
    _, history = fit(Spec(epochs=40, batch_size=8, validation_split=0.2), small)
    assert history["loss"][-1] < 0.1 * history["loss"][0]
    assert history["accuracy"][-1] == 1.0


def test_same_seed_same_numbers_other_seed_other_numbers(tiny):
    spec = Spec(epochs=1)
    (m1, h1), (m2, h2) = fit(spec, tiny), fit(spec, tiny)
    m3, h3 = fit(spec.replace(seed=2), tiny)
    for a, b in zip(m1.get_weights(), m2.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert h1["loss"] == h2["loss"]
    assert h1["loss"] != h3["loss"]


def test_evaluate_agrees_with_keras_and_with_predict(trained, tiny):
    model, _ = trained
    images, labels = tiny.test
    metrics = evaluate(model, images, labels)
    keras_loss, keras_accuracy = model.evaluate(preprocess(images), labels)
    assert metrics["loss"] == pytest.approx(keras_loss, abs=1e-5)
    assert metrics["accuracy"] == pytest.approx(keras_accuracy)
    predicted = predict(model, images).argmax(axis=1)
    assert metrics["accuracy"] == np.mean(predicted == labels)
    confusion = np.array(metrics["confusion_matrix"])
    assert confusion.sum() == metrics["count"] == 100
    assert np.trace(confusion) == np.sum(predicted == labels)
    assert len(metrics["per_class_accuracy"]) == 10


def test_predict_one_image_matches_the_batch(trained, tiny):
    model, _ = trained
    images = tiny.test[0]
    batch = predict(model, images)
    assert batch.shape == (100, 10)
    np.testing.assert_allclose(batch.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(predict(model, images[3:4])[0], batch[3], rtol=1e-5, atol=1e-7)
    ranked = top(batch[3])
    assert [c for c, _ in ranked][0] == int(batch[3].argmax())
    assert ranked[0][1] >= ranked[1][1] >= ranked[2][1]


def save_run(path, trained, tiny):
    model, history = trained
    metrics = evaluate(model, *tiny.test)
    run = runs.Run(model, QUICK, "mnist", tiny.class_names, history, metrics, {"train": 1.0})
    return run.save(path)


def test_run_folder_describes_itself(tmp_path, trained, tiny):
    path = save_run(tmp_path / "run", trained, tiny)
    assert sorted(p.name for p in path.iterdir()) == [
        "history.csv",
        "history.json",
        "model.keras",
        "run.json",
    ]
    meta = json.loads((path / "run.json").read_text())
    assert meta["dataset"] == "mnist"
    assert meta["class_names"] == list(tiny.class_names)
    assert meta["spec"] == QUICK.to_dict()
    assert meta["preprocessing"].startswith("pixels / 255")
    assert {"keras", "numpy", "mnistlab", "python"} <= set(meta["versions"])
    assert 0 <= meta["metrics"]["accuracy"] <= 1
    lines = (path / "history.csv").read_text().splitlines()
    assert lines[0] == "epoch,accuracy,loss,val_accuracy,val_loss,seconds"
    assert len(lines) == 1 + QUICK.epochs

    run = runs.load(path)
    assert run.spec == QUICK
    np.testing.assert_allclose(
        predict(run.model, tiny.test[0]), predict(trained[0], tiny.test[0]), rtol=1e-6
    )


def test_existing_destination_is_refused_and_kept(tmp_path, trained, tiny):
    path = tmp_path / "run"
    path.mkdir()
    (path / "notes.txt").write_text("mine")
    with pytest.raises(MnistlabError, match="already exists and is not empty"):
        save_run(path, trained, tiny)
    assert (path / "notes.txt").read_text() == "mine"


def test_a_failed_save_leaves_nothing_behind(tmp_path, trained, tiny, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(trained[0], "save", broken)
    with pytest.raises(OSError, match="disk full"):
        save_run(tmp_path / "run", trained, tiny)
    assert list(tmp_path.iterdir()) == []


def test_loading_what_is_not_a_run(tmp_path):
    with pytest.raises(MnistlabError, match="no run folder at"):
        runs.load(tmp_path / "missing")
    with pytest.raises(MnistlabError, match="is not an mnistlab run folder"):
        runs.load(tmp_path)
    (tmp_path / "run.json").write_text("{broken")
    (tmp_path / "model.keras").write_bytes(b"not a zip")
    with pytest.raises(MnistlabError, match="holds a damaged run"):
        runs.load(tmp_path)


def test_a_cosine_run_saves_and_loads(tmp_path, tiny):
    spec = Spec(epochs=1, schedule="cosine")
    model, history = fit(spec, tiny)
    # 400 images, 80 held out, batches of 32: 10 steps, the whole schedule.
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-8)
    metrics = evaluate(model, *tiny.test)
    runs.Run(model, spec, "mnist", tiny.class_names, history, metrics, {}).save(tmp_path / "run")
    assert runs.load(tmp_path / "run").spec.schedule == "cosine"


@pytest.mark.parametrize("conv", [(), (4,)], ids=["dense", "conv"])
def test_a_bfloat16_run_learns_saves_loads_and_predicts_as_it_did(tmp_path, tiny, conv):
    spec = Spec(epochs=4, conv=conv, hidden=(32,), precision="bfloat16")
    model, history = fit(spec, tiny)
    metrics = evaluate(model, *tiny.test)
    assert history["loss"][-1] < history["loss"][0] and metrics["accuracy"] >= 0.8
    runs.Run(model, spec, "mnist", tiny.class_names, history, metrics, {}).save(tmp_path / "run")
    loaded = runs.load(tmp_path / "run")
    assert loaded.spec.precision == "bfloat16"
    assert loaded.model.layers[0].compute_dtype == "bfloat16"
    x = tiny.test[0][:16]
    np.testing.assert_array_equal(predict(loaded.model, x), predict(model, x))


def test_shift_images_moves_each_image_within_the_limit():
    rng = np.random.default_rng(0)
    images = np.zeros((200, 28, 28), np.uint8)
    images[:, 13, 13] = 255  # one lit pixel in the middle
    shifted = shift_images(images, 2, rng)
    assert shifted.shape == images.shape
    assert shifted.dtype == np.uint8
    rows, cols = np.nonzero(shifted.reshape(200, -1) == 255)
    assert np.array_equal(rows, np.arange(200))  # each image keeps its one pixel
    dy, dx = cols // 28 - 13, cols % 28 - 13
    assert set(dy) == set(dx) == {-2, -1, 0, 1, 2}  # every shift in range occurs, no other


def test_shift_images_fills_the_edge_with_black():
    rng = np.random.default_rng(1)
    images = np.full((50, 28, 28), 255, np.uint8)
    shifted = shift_images(images, 3, rng)
    moved = (shifted == 0).any(axis=(1, 2))
    assert moved.mean() > 0.8  # most images moved, and what came in is black
    assert (shifted[~moved] == 255).all()


def test_training_with_shifts_is_deterministic_and_keeps_the_validation_split(tiny):
    spec = Spec(epochs=2, shift=2)
    (m1, h1), (m2, h2) = fit(spec, tiny), fit(spec, tiny)
    assert h1["loss"] == h2["loss"]
    assert set(h1) == {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"}
    for a, b in zip(m1.get_weights(), m2.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert m1.count_params() == 101_770  # the augmentation adds no weights
    plain = fit(Spec(epochs=2), tiny)[1]
    assert plain["loss"] != h1["loss"]

    model, _ = fit(Spec(epochs=1, shift=2), tiny)
    assert (
        int(model.optimizer.iterations) == 10
    )  # 320 of the 400 images, the last 80 held out as without shifts


@pytest.mark.parametrize("shift", [0, 2])
def test_a_validation_split_of_0_trains_on_every_image_and_holds_none_out(tiny, shift):
    lines: list[str] = []
    spec = Spec(epochs=1, shift=shift, validation_split=0.0)
    model, history = fit(spec, tiny, callbacks=[EpochLine("all", 1, lines.append)])
    assert int(model.optimizer.iterations) == 13  # all 400 images, 32 a batch
    assert set(history) == {"loss", "accuracy", "seconds"}
    assert lines[0].startswith("all: epoch 1/1, training ")


def test_a_tiny_rotation_leaves_the_image_as_it_was():
    images = np.random.default_rng(2).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    turned = distort(images, 1e-9, 0.0, np.random.default_rng(0))
    assert turned.dtype == np.uint8
    np.testing.assert_array_equal(turned, images)


def test_rotation_turns_each_image_about_its_centre_within_the_limit():
    images = np.zeros((300, 28, 28), np.uint8)
    images[:, 4:24, 13:15] = 255  # a vertical bar through the centre
    turned = distort(images, 30.0, 0.0, np.random.default_rng(0))
    angles = []
    for image in turned.astype(float):
        rows, cols = np.nonzero(image)
        weights = image[rows, cols]
        assert np.average(rows, weights=weights) == pytest.approx(13.5, abs=0.3)
        assert np.average(cols, weights=weights) == pytest.approx(13.5, abs=0.3)
        slope = np.polyfit(rows, cols, 1, w=weights)[0]  # columns moved per row down the bar
        angles.append(np.degrees(np.arctan(slope)))
    assert max(np.abs(angles)) <= 31  # within the limit, bilinear blur aside
    assert min(angles) < -20 and max(angles) > 20  # and each image turned its own way


def test_elastic_distortion_is_smooth_keeps_the_ink_and_differs_per_image():
    images = np.zeros((20, 28, 28), np.uint8)
    images[:, 6:22, 6:22] = 255
    warped = distort(images, 0.0, 34.0, np.random.default_rng(0))
    assert warped.shape == images.shape
    ink = warped.astype(float).sum(axis=(1, 2)) / images.astype(float).sum(axis=(1, 2))
    assert np.all((ink > 0.6) & (ink < 1.5))  # a warp, not an erasure
    assert not np.array_equal(warped[0], warped[1])
    assert (warped != images).any(axis=(1, 2)).all()
    again = distort(images, 0.0, 34.0, np.random.default_rng(0))
    np.testing.assert_array_equal(warped, again)  # the seed decides


def test_training_with_every_augmentation_and_batchnorm_is_deterministic(tiny):
    spec = Spec(
        epochs=2, conv=(4,), hidden=(16,), batchnorm=True, shift=1, rotate=10.0, elastic=20.0
    )
    (m1, h1), (m2, h2) = fit(spec, tiny), fit(spec, tiny)
    assert h1["loss"] == h2["loss"]
    for a, b in zip(m1.get_weights(), m2.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    shifted_only = fit(spec.replace(rotate=0.0, elastic=0.0), tiny)[1]
    assert shifted_only["loss"] != h1["loss"]


def test_varied_changes_that_share_of_the_images_and_only_shifts_the_others(tiny):
    x, y = tiny.train
    spec = Spec(batch_size=400, pen=1, blur=1.0, rotate=20.0, elastic=20.0, varied=0.5)
    batches = AugmentedImages(x, y, spec)
    images, _ = batches[0]
    chosen = batches.epoch[0][:400]
    same = (images == preprocess(x[chosen])).all(axis=1)
    assert 0.35 < same.mean() < 0.65  # a turned, blurred or distorted digit is not the same
    with pytest.raises(MnistlabError, match="varied = 0 is out of range"):
        Spec(varied=0)


def test_flips_mirror_about_half_the_images_and_only_those(tiny):
    x, y = tiny.train
    batches = AugmentedImages(x, y, Spec(batch_size=400, flip=True))
    flipped, labels = batches[0]
    chosen = batches.epoch[0][:400]
    plain = preprocess(x[chosen])
    mirrored = preprocess(x[chosen][:, :, ::-1])
    is_plain = (flipped == plain).all(axis=1)
    is_mirrored = (flipped == mirrored).all(axis=1)
    assert (is_plain | is_mirrored).all()
    assert 0.4 < is_mirrored.mean() < 0.6
    np.testing.assert_array_equal(labels, y[chosen])


def test_the_fast_path_trains_what_plain_fit_trains(tiny):
    """A whole epoch a call trains what the lab's one step a call trains, from the batches
    that `fit` is given: on JAX the arrays (Keras shuffles them with NumPy each epoch), on
    TensorFlow `AugmentedImages`, which draws a new order each epoch where Keras's own array
    path there repeats one (so this fails on TensorFlow if `fit` trains from the arrays)."""
    spec = Spec(epochs=2)
    fast, _ = fit(spec, tiny, loop="fit")
    assert fast.steps_per_execution == 10  # the whole epoch in one call

    keras.utils.set_random_seed(spec.seed)  # the lab's own cells: one step a call
    plain = build(spec, steps_per_execution=1)
    x, y = tiny.train
    if keras.backend.backend() == "tensorflow":
        batches = AugmentedImages(x[:320], y[:320], spec)
        plain.fit(batches, validation_data=(preprocess(x[320:]), y[320:]), epochs=2, verbose=0)
    else:
        plain.fit(preprocess(x), y, epochs=2, batch_size=32, validation_split=0.2, verbose=0)
    assert plain.count_params() == fast.count_params() == 101_770
    assert plain.loss == fast.loss
    for a, b in zip(plain.get_weights(), fast.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    accuracies = [evaluate(m, *tiny.test)["accuracy"] for m in (plain, fast)]
    assert accuracies[0] == pytest.approx(accuracies[1], abs=0.02)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the tf.data feed is TensorFlow's"
)
def test_tensorflow_is_fed_a_new_order_of_the_images_each_epoch(tiny):
    """An unvaried spec's images as `training.fit` feeds them to TensorFlow: each epoch all of
    them, once each, in another order (Keras's array path gave one order every epoch)."""
    x, y = tiny.train
    batches, next_epoch = AugmentedImages(x[:320], y[:320], Spec()).feed()
    next_epoch.on_train_begin()
    epochs = []
    for epoch in range(2):
        next_epoch.on_epoch_begin(epoch)
        images = np.concatenate([np.asarray(b[0]) for b in batches])
        next_epoch.on_epoch_end(epoch)
        epochs.append(images)
    first, second = epochs
    assert first.shape == second.shape == (320, 784)
    assert not np.array_equal(first, second)
    for images in epochs:  # every image once, unchanged
        assert sorted(map(bytes, (images * 255).round().astype(np.uint8))) == sorted(
            map(bytes, x[:320].reshape(320, -1))
        )


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the tf.data feed is TensorFlow's"
)
def test_the_augmented_feed_trains_what_fit_trains_from_the_pydataset(tiny):
    """TensorFlow takes the varied batches from its graph (`AugmentedImages.feed`): the same
    batches in the same order, drawn and shuffled at the same points, as `model.fit` takes
    them from the `PyDataset`, so the same weights. 320 images in batches of 30: a partial
    batch ends each epoch."""
    spec = Spec(epochs=3, batch_size=30, hidden=(32,), dropout=0.3, shift=2, rotate=10.0)
    fed, fed_history = fit(spec, tiny, loop="fit")

    seed_everything(spec)
    plain = build(spec, 11, steps_per_execution=11)
    x, y = tiny.train
    batches = AugmentedImages(x[:320], y[:320], spec)
    held_out = (preprocess(x[320:]), y[320:])
    plain_history = plain.fit(batches, validation_data=held_out, epochs=3, verbose=0).history
    for a, b in zip(fed.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    del fed_history["seconds"]
    assert fed_history == plain_history
