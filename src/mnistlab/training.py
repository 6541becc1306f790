"""Train a spec on a data set: seed everything, preprocess, build, fit, evaluate on the test set.

    run = train(preset("lab", epochs=10), load("mnist"))   # a runs.Run

Same spec (seed included), same backend, same machine: the same weights and the same numbers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mnistlab import backend
from mnistlab.runs import Run
from mnistlab.spec import Spec, preset

if TYPE_CHECKING:
    from pathlib import Path

    from mnistlab.checkpoints import Place
    from mnistlab.data import Dataset

BAR_UPDATES = 20  # times a progress bar moves in an epoch (verbose=1); see steps_per_call


def seed_everything(spec: Spec) -> None:
    """Python's, NumPy's and the backend's random generators, and TensorFlow's op determinism."""
    import keras

    keras.utils.set_random_seed(spec.seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def steps_per_call(steps: int, verbose: int | str) -> int:
    """Training steps one compiled call runs. A whole epoch: each call costs a fixed overhead
    that dwarfs a step of the lab's small model (TensorFlow compiles the epoch into one loop;
    Keras on JAX still runs each compiled step from Python, which gains less). Lab recipe on
    2 cores, seconds per epoch after the first, one step a call / 100 / a whole epoch
    (benchmarks/steps_per_execution.py): TensorFlow 3.3 / 2.0 / 1.7; JAX 0.76 / 0.55 / 0.61.
    A progress bar moves only between calls, so with one it moves BAR_UPDATES times an epoch.
    The arithmetic is the same either way (tests/test_train.py). The compiled loop on JAX
    (`compiled`) runs its full batches in calls of as many steps, for the same reason."""
    if verbose == 1:
        return max(1, math.ceil(steps / BAR_UPDATES))
    return steps


def split(spec: Spec, images: int) -> int:
    """How many of `images` training images are fitted; the rest are held out for validation
    (where Keras's `validation_split` splits)."""
    return math.floor(images * (1 - spec.validation_split))


def loop_for(spec: Spec, loop: str | None = None) -> str:
    """How `fit` trains `spec` on the backend Keras runs: "compiled" (each epoch one compiled
    JAX program, see `compiled`) where that serves the spec, else "fit" (Keras's `model.fit`).
    `loop` asks for one: "fit" always serves; "compiled" where it cannot is refused, saying
    why."""
    from mnistlab import compiled
    from mnistlab.errors import MnistlabError

    if loop is not None and loop not in compiled.LOOPS:
        raise MnistlabError(f"unknown loop {loop!r}", f"choose one of: {', '.join(compiled.LOOPS)}")
    why = compiled.unserved(spec)
    if loop == "compiled" and why:
        raise MnistlabError(
            f"the compiled loop cannot train this spec: {why}", "leave the loop to mnistlab"
        )
    return loop or ("fit" if why else "compiled")


def train(
    spec: Spec | None = None,
    data: Dataset | str = "mnist",
    *,
    verbose: int = 0,
    callbacks: Sequence[Any] = (),
    checkpoint: str | Path | Place | None = None,
    loop: str | None = None,
) -> Run:
    """Fit the model of `spec` (default: the lab's recipe) on the training set of `data` (a
    `Dataset`, or a data set's name to load), holding out the last `validation_split` of it for
    validation as Keras does (none at 0), then evaluate it on the test set. `verbose` is
    Keras's: 0 silent, 1 a progress bar, 2 a line per epoch; `callbacks` are Keras callbacks.
    `checkpoint` (a file, e.g. `runs.checkpoint_path(run_folder)`): go on from the checkpoint
    there, if one of this spec and data is, and keep one there as training goes; `Run.save`
    removes it (see `checkpoints`). Returns the `Run`: model, spec (with the backend it
    trained on), history with seconds per epoch (earlier processes' epochs included), test
    metrics, validation figures (`Run.validation`) and seconds (of this process); its
    `info["loop"]` names how it was trained (`loop_for`: `loop` None chooses, "fit" or
    "compiled" asks)."""
    from mnistlab import checkpoints
    from mnistlab import data as datamod
    from mnistlab.runs import describe_machine

    spec = spec if spec is not None else preset("lab")
    spec = spec.replace(backend=backend.use(spec.backend))
    loop = loop_for(spec, loop)  # before the data: a refusal comes first
    if isinstance(data, str):
        data = datamod.load(data)
    start = time.perf_counter()
    model, history = fit(spec, data, verbose, callbacks, checkpoint, loop)
    trained = time.perf_counter()
    from mnistlab.evaluation import evaluate

    metrics = evaluate(model, *data.test, spec.test_shifts)
    validated = {}
    x_train, y_train = data.train
    fitted = split(spec, len(x_train))
    if spec.test_shifts and fitted < len(x_train):  # as the test set is answered
        held_out = evaluate(model, x_train[fitted:], y_train[fitted:], spec.test_shifts)
        validated = {key: held_out[key] for key in ("loss", "accuracy")}
    seconds = {"train": trained - start, "evaluate": time.perf_counter() - trained}
    return Run(
        model=model,
        spec=spec,
        dataset=data.name,
        class_names=tuple(data.class_names),
        history=history,
        metrics=metrics,
        seconds=seconds,
        source=data.source,
        validated=validated,
        info=describe_machine() | {"loop": loop},
        checkpoint=checkpoints.place(checkpoint) if checkpoint is not None else None,
    )


def fit(
    spec: Spec,
    data: Dataset,
    verbose: int | str = 0,
    callbacks: Sequence[Any] = (),
    checkpoint: str | Path | Place | None = None,
    loop: str | None = None,
) -> tuple[Any, dict[str, list[float]]]:
    """The model of `spec`, fitted on `data`'s training set, and its per-epoch history; from
    and with a checkpoint if `checkpoint` is given (see `train`). Each epoch is one compiled
    program where `loop_for(spec, loop)` says so, else `model.fit` trains."""
    from mnistlab import checkpoints
    from mnistlab.augment import AugmentedImages, augments
    from mnistlab.callbacks import EpochTimer
    from mnistlab.data import preprocess
    from mnistlab.models import build

    loop = loop_for(spec, loop)
    seed_everything(spec)
    x_train, y_train = data.train
    fitted = split(spec, len(x_train))
    steps = math.ceil(fitted / spec.batch_size)
    model = build(spec, steps, steps_per_execution=steps_per_call(steps, verbose))
    timer = EpochTimer()
    keeper = None
    if checkpoint is not None:
        keeper = checkpoints.Keeper(checkpoints.place(checkpoint), spec, data, timer, loop=loop)
        keeper.restore(model)
        callbacks = [keeper, *callbacks]
    if loop == "compiled":
        from mnistlab.compiled import fit_epochs

        held_out = (x_train[fitted:], y_train[fitted:]) if fitted < len(x_train) else None
        history = fit_epochs(
            model,
            spec,
            (x_train[:fitted], y_train[:fitted]),
            held_out,
            initial_epoch=keeper.epochs if keeper else 0,
            verbose=verbose,
            callbacks=[timer, *callbacks],
            steps_per_call=steps_per_call(steps, verbose),
        )
        history["seconds"] = timer.seconds
        return model, keeper.history if keeper else history
    fit_options = dict(
        epochs=spec.epochs,
        initial_epoch=keeper.epochs if keeper else 0,
        verbose=verbose,
        callbacks=[timer, *callbacks],
    )
    tensorflow = backend.running() == "tensorflow"
    # On TensorFlow the images come through `AugmentedImages.feed` varied or not: Keras's own
    # array path draws its order with `tf.random.shuffle` in a tf.data function that the
    # global seed (`seed_everything`) fixes, so every epoch took one order
    # (tensorflow/tensorflow#35682); `AugmentedImages` draws a new one with NumPy each epoch.
    if augments(spec) or tensorflow:
        x = x_train[:fitted]
        augmented = AugmentedImages(x, y_train[:fitted], spec)
        if keeper:
            keeper.augmented = augmented
        held_out = (
            (preprocess(x_train[fitted:]), y_train[fitted:]) if fitted < len(x_train) else None
        )
        if tensorflow:  # batches from TensorFlow's graph, not Python
            batches, next_epoch = augmented.feed()
            fit_options["callbacks"] = [next_epoch, timer, *callbacks]
            result = model.fit(batches, validation_data=held_out, shuffle=False, **fit_options)
        else:
            result = model.fit(augmented, validation_data=held_out, **fit_options)
    else:
        result = model.fit(
            preprocess(x_train),
            y_train,
            batch_size=spec.batch_size,
            validation_split=spec.validation_split,
            **fit_options,
        )
    history = {k: [float(v) for v in vs] for k, vs in result.history.items()}
    history["seconds"] = timer.seconds
    return model, keeper.history if keeper else history
