"""Learn from corrections: fine-tune a run on the pictures people said it misread, mixed with
its own training data so that it does not forget the rest.

    result = ml.finetune("runs/lab", "runs/lab/corrections", epochs=3)
    result.before, result.after     # MNIST's test set and the held-out corrections
    result.path                     # the new run folder; the source run is never touched

A share of the corrections (`holdout`, drawn by `seed`) is held out: never trained on, it says
whether the lesson carries to new drawings, not only whether the model learnt those it was
shown. Each epoch is `per_epoch` training images drawn afresh from the data set plus the
other corrections, repeated so that they make `share` of it: a handful of corrections among
60,000 images would change nothing, and on their own they would teach the model to forget
MNIST. The optimiser is the run's, at a lower rate (`learning_rate`), starting afresh.
Augmentation is not applied here. The new run folder's `run.json` says what was done under
`finetuned`, with both accuracies before and after and the names of the held-out corrections.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnistlab import corrections as corr
from mnistlab.errors import MnistlabError
from mnistlab.text import plural

if TYPE_CHECKING:
    from mnistlab.data import Dataset
    from mnistlab.runs import Run

MIN_CORRECTIONS = 5  # one held out, four to learn from, at the least
EPOCHS = 3
HOLDOUT = 0.25  # of the corrections, never trained on
SHARE = 0.1  # of each epoch's images that are corrections
PER_EPOCH = 12_000  # data set training images in an epoch, drawn anew each epoch
LEARNING_RATE = 1e-4  # a tenth of adam's default, the lab's rate: a nudge, not a new training


@dataclass(frozen=True)
class FinetuneResult:
    """A fine-tuning's outcome: the new `run` (saved at `path`), the corrections learnt from and
    held out, and the accuracies `before` and `after`, each a dict of `test` (the data set's
    test set), `held_out` and `learnt` (the corrections held out and trained on)."""

    run: Run
    path: Path
    source: Path | None
    corrections: Path
    learnt: tuple[str, ...]
    held_out: tuple[str, ...]
    test_images: int
    before: dict[str, float]
    after: dict[str, float]
    epochs: int
    seconds: float

    def rows(self) -> list[tuple[str, float, float]]:
        """The table: what was measured, before, after."""
        return [
            (
                f"{self.run.dataset} test set ({plural(self.test_images, 'image')})",
                self.before["test"],
                self.after["test"],
            ),
            (
                f"held-out corrections ({len(self.held_out)})",
                self.before["held_out"],
                self.after["held_out"],
            ),
            (
                f"corrections trained on ({len(self.learnt)})",
                self.before["learnt"],
                self.after["learnt"],
            ),
        ]


def finetune(
    run: Run | str | Path,
    corrections: str | Path,
    out: str | Path | None = None,
    *,
    epochs: int = EPOCHS,
    holdout: float = HOLDOUT,
    share: float = SHARE,
    per_epoch: int = PER_EPOCH,
    learning_rate: float = LEARNING_RATE,
    seed: int = 1,
    data: Dataset | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> FinetuneResult:
    """Fine-tune `run` (a `Run` or its folder) on the corrections in the folder `corrections`
    mixed with its data set's training images, and save the result as a new run folder at
    `out` (default: beside the run, `NAME-finetuned-TIME`). `data` is the data set (default:
    the run's, loaded); `progress` gets a line per epoch. Bad input is refused before any
    training: a missing, empty or damaged corrections folder, too few corrections to hold
    some out, an `out` that exists."""
    from mnistlab import runs
    from mnistlab.files import check_new

    if epochs < 1:
        raise MnistlabError(f"{epochs} epochs is not a fine-tuning", "give 1 epoch or more")
    if not 0 < holdout < 1:
        raise MnistlabError(f"holdout {holdout} is not a share", "give a number in (0, 1)")
    if not 0 < share < 1:
        raise MnistlabError(f"share {share} is not a share", "give a number in (0, 1)")
    source = Path(run) if isinstance(run, str | Path) else run.path
    if out is None:
        if source is None:
            raise MnistlabError("the run is not saved", "save it first, or pass out=FOLDER")
        out = source.with_name(f"{source.name}-finetuned-{datetime.now():%Y%m%d-%H%M%S}")
    out = Path(out)
    check_new(out)
    if isinstance(run, str | Path):
        classes = len(runs.read_meta(Path(run))["class_names"])
    else:
        classes = len(run.class_names)
    found = corr.read(Path(corrections), classes)
    held = max(1, round(holdout * len(found)))
    if len(found) < MIN_CORRECTIONS:
        raise MnistlabError(
            f"too few corrections to hold some out: {corrections} holds "
            f"{plural(len(found), 'correction')}",
            f"make at least {MIN_CORRECTIONS} (one is held out to test on)",
        )
    if isinstance(run, str | Path):
        run = runs.load(run)
    if data is None:
        from mnistlab import data as datamod

        data = datamod.load(run.dataset)
    order = np.random.default_rng(seed).permutation(len(found))
    test_part, train_part = np.sort(order[:held]), np.sort(order[held:])

    start = time.perf_counter()
    model = copy_model(run.model, run.spec.optimizer, learning_rate)
    shifts = run.spec.test_shifts
    before = measure(run.model, data, found, test_part, train_part, shifts)
    history = fit(model, data, found, train_part, epochs, share, per_epoch, seed, run, progress)
    from mnistlab.evaluation import evaluate

    trained = time.perf_counter()
    metrics = evaluate(model, *data.test, shifts)
    after = measure(model, data, found, test_part, train_part, shifts, metrics["accuracy"])
    names = found.names
    learnt, held_out = [names[i] for i in train_part], [names[i] for i in test_part]
    done: dict[str, Any] = {
        "from": str(source) if source else None,
        "corrections": str(Path(corrections)),
        "learnt": learnt,
        "held_out": held_out,
        "epochs": epochs,
        "share": share,
        "per_epoch": per_epoch,
        "learning_rate": learning_rate,
        "seed": seed,
        "before": before,
        "after": after,
    }
    new = runs.Run(
        model=model,
        spec=run.spec,
        dataset=run.dataset,
        class_names=run.class_names,
        history=history,
        metrics=metrics,
        seconds={"train": trained - start, "evaluate": time.perf_counter() - trained},
        source=run.source,
        info=runs.describe_machine() | {"finetuned": done},
    )
    new.save(out)
    return FinetuneResult(
        run=new,
        path=out,
        source=source,
        corrections=Path(corrections),
        learnt=tuple(learnt),
        held_out=tuple(held_out),
        test_images=len(data.test[1]),
        before=before,
        after=after,
        epochs=epochs,
        seconds=time.perf_counter() - start,
    )


def copy_model(model: Any, optimizer: str, learning_rate: float) -> Any:
    """A copy of `model` with its weights, compiled with a fresh `optimizer` at
    `learning_rate`: the source run's model is left as it was."""
    import keras

    from mnistlab.models import LOSS

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    chosen = keras.optimizers.get({"class_name": optimizer, "config": {}})
    chosen.learning_rate = learning_rate
    copy.compile(optimizer=chosen, loss=LOSS, metrics=["accuracy"])
    return copy


def measure(
    model: Any,
    data: Dataset,
    found: corr.Corrections,
    test_part: np.ndarray,
    train_part: np.ndarray,
    shifts: int = 0,
    test_accuracy: float | None = None,
) -> dict[str, float]:
    from mnistlab.prediction import predict

    def accuracy(images: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(predict(model, images, shifts).argmax(axis=1) == labels))

    return {
        "test": test_accuracy if test_accuracy is not None else accuracy(*data.test),
        "held_out": accuracy(found.images[test_part], found.labels[test_part]),
        "learnt": accuracy(found.images[train_part], found.labels[train_part]),
    }


def fit(
    model: Any,
    data: Dataset,
    found: corr.Corrections,
    train_part: np.ndarray,
    epochs: int,
    share: float,
    per_epoch: int,
    seed: int,
    run: Run,
    progress: Callable[[str], None],
) -> dict[str, list[float]]:
    """Train `model` for `epochs`, each on `per_epoch` training images drawn afresh and the
    corrections of `train_part` repeated to make `share` of the epoch; the per-epoch history."""
    import keras

    from mnistlab.data import preprocess

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x_train, y_train = data.train
    drawn = min(per_epoch, len(x_train))
    repeats = max(1, math.ceil(share / (1 - share) * drawn / len(train_part)))
    x_corr = np.repeat(found.images[train_part], repeats, axis=0)
    y_corr = np.repeat(found.labels[train_part], repeats)
    history: dict[str, list[float]] = {"loss": [], "accuracy": [], "seconds": []}
    for epoch in range(1, epochs + 1):
        began = time.perf_counter()
        chosen = rng.choice(len(x_train), size=drawn, replace=False)
        x = np.concatenate([x_train[chosen], x_corr])
        y = np.concatenate([y_train[chosen], y_corr]).astype(np.int64)
        mixed = rng.permutation(len(x))
        result = model.fit(
            preprocess(x[mixed]), y[mixed], batch_size=run.spec.batch_size, epochs=1, verbose=0
        )
        seconds = time.perf_counter() - began
        for key in ("loss", "accuracy"):
            history[key].append(float(result.history[key][-1]))
        history["seconds"].append(seconds)
        progress(
            f"epoch {epoch}/{epochs}: {plural(len(x), 'image')} ({len(x_corr)} corrections), "
            f"loss {history['loss'][-1]:.4f}, {seconds:.1f} s"
        )
    return history
