"""The student's notebook for the lab, in jupytext's percent format like `lab.py`: the
teacher's code for the data, its shapes and the first image, and blanks elsewhere. A blank
code cell starts with `# TODO:` and a one-line `# Hint:`, and holds `...` where the answer
goes (or only the comments, where no name is new); a blank text cell holds `ANSWER` (see
`mnistlab.notebook`) under the lab's question. Like `lab.py` this file is the notebook, not a
module: nothing imports it; ruff and mypy check its cells as if they ran from top to bottom.

`mnistlab notebook --student` writes it as it is, not executed (a student fills it in), with
two changes only (`notebook.build_student`):
- `{name}` in a text cell becomes a field (`{title}`, `{module}`...), so a brace meant
  literally is written twice;
- on Fashion-MNIST, `datasets.mnist` and `datasets.fashion_mnist` swap places in the code
  cells, so the lab's part and the bonus change data sets.

Cell metadata `mnistlab={"todo": KIND}` and `mnistlab={"answer": KIND}` name the blanks for the
tests, which fill them in; `mnistlab check` does not read them: it reads a hand-in's code and
outputs (see `notebook.check`).
"""
# The imports follow the backend's choice, as in any notebook:
# ruff: noqa: E402

# %% [markdown]
# # {title} with TensorFlow and Keras
#
# **Your notebook for the lab** (mnistlab {version}). The cells for the data, its shapes and
# the first image are done. Each code cell that starts with `# TODO:` is yours to write: it
# says what to do and gives a hint; replace its `...` with your code. Each text cell with a
# question is yours too: write your answer in place of its line in italics, with the numbers
# your outputs show.
#
# Print each test accuracy on a line of its own, as `Test accuracy: 0.9765`: the checker reads
# those lines. When it is done, run **Kernel → Restart Kernel and Run All Cells**, check that
# every cell ran without an error, save, and hand in the `.ipynb` file.

# %% [markdown]
# ## Setting up
# Keras runs on the backend chosen before it is first imported: JAX here ("tensorflow" works
# too, and gives slightly different numbers).

# %%
import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is first imported
import keras
import matplotlib.pyplot as plt
import numpy as np

import mnistlab

print(f"Keras {keras.__version__} on {keras.backend.backend()}")

# %% [markdown]
# ## Part 1: Getting the data
# The lab downloads the data with `keras.datasets.{module}.load_data()`. This notebook runs
# offline: `mnistlab.datasets.{module}.load_data()` is a drop-in for it, the same call giving
# the same four arrays, read from mnistlab's cache, where each file was checked against its
# published SHA-256 when it was fetched.

# %%
(x_train, y_train), (x_test, y_test) = mnistlab.datasets.mnist.load_data()

# %% [markdown]
# ## Part 2: The shapes of the data

# %%
print("x_train shape:", x_train.shape)
print("y_train shape:", y_train.shape)
print("x_test shape: ", x_test.shape)
print("y_test shape: ", y_test.shape)
print("Labels:", np.unique(y_train))

# %% [markdown] mnistlab={"answer": "shapes"}
# How many training and test images are there, and how many pixels does each have?
#
# *{answer}*

# %% [markdown]
# ## Part 3: The first image and its label

# %%
print("Label of the first training image:", y_train[0])
plt.imshow(x_train[0], cmap="gray")
plt.title(f"label {y_train[0]}")
plt.axis("off")
plt.show()

# %% [markdown]
# ## Part 4: Normalising the pixels
# Pixels are bytes from 0 to 255; the network learns better from values in [0, 1].

# %% mnistlab={"todo": "normalise"}
# TODO: scale x_train and x_test to [0, 1], then print the smallest and the largest pixel.
# Hint: make them float32 and divide by 255.0; print(x_train.min(), x_train.max())

# %% [markdown]
# ## Part 5: Flattening each image into a row

# %% mnistlab={"todo": "flatten"}
# TODO: make each 28 x 28 image a row of 784 numbers, then print the two new shapes.
# Hint: x_train.reshape(len(x_train), -1), the same for x_test

# %% [markdown]
# ## Part 6: The model
# The lab's network: every pixel feeds 128 units with ReLU, which feed 10 units with softmax,
# one probability for each class.

# %% mnistlab={"todo": "model"}
# TODO: build the lab's model as `model` and show its summary.
# Hint: keras.Sequential([keras.Input(shape=(784,)), keras.layers.Dense(128, ...), ...])
model = ...

# %% [markdown] mnistlab={"answer": "model"}
# How many parameters does the model have, and where does each layer's count come from?
#
# *{answer}*

# %% [markdown]
# ### The parameter count for 64 units
# Work it out by hand first: a Dense layer has a weight for each input and unit, and a bias for
# each unit. Then let Keras count it.

# %% mnistlab={"todo": "count"}
# TODO: build the same model with 64 units as `small` and print its parameter count.
# Hint: small.count_params()
small = ...

# %% [markdown] mnistlab={"answer": "count"}
# Your count for 64 units, layer by layer, and whether Keras agrees.
#
# *{answer}*

# %% [markdown]
# ## Part 7: Compiling
# Adam adjusts the weights; sparse categorical cross-entropy compares the ten probabilities
# with the label given as a number; accuracy is reported as it trains.

# %% mnistlab={"todo": "compile"}
# TODO: compile the model with the adam optimizer, that loss and the accuracy metric.
# Hint: model.compile(optimizer=..., loss="sparse_categorical_crossentropy", metrics=[...])

# %% [markdown]
# ## Part 8: Training
# Hold out the last 20% of the training images to validate each epoch.

# %% mnistlab={"todo": "fit"}
# TODO: train the model for 5 epochs, validating on 20% of the training images.
# Hint: history = model.fit(x_train, y_train, epochs=..., validation_split=...)
history = ...

# %% [markdown]
# ## Part 9: Evaluating on the test set

# %% mnistlab={"todo": "evaluate"}
# TODO: measure the model on the test images and print "Test accuracy: 0.9765" with its own.
# Hint: test_loss, test_accuracy = model.evaluate(x_test, y_test); then an f-string with :.4f
test_loss, test_accuracy = ..., ...

# %% [markdown] mnistlab={"answer": "evaluate"}
# How often is the model right on images it never saw in training?
#
# *{answer}*

# %% [markdown]
# ## Part 10: Predicting one image

# %% mnistlab={"todo": "predict"}
# TODO: predict the first test image; print "Prediction:" with the class, then its real label.
# Hint: probabilities = model.predict(x_test[:1]); np.argmax(probabilities[0]); y_test[0]
probabilities = ...

# %% [markdown] mnistlab={"answer": "predict"}
# What does the model predict for the first test image, and is it right?
#
# *{answer}*

# %% [markdown]
# ## Part 11: Experiments
# The lab's ideas for doing better. Try each one below in its own cell, changing one thing
# from the lab's model: build, compile, train and test a new model there as in Parts 6 to 9,
# and print its test accuracy as `Test accuracy: 0.9765`. Under each, say what you changed and
# what it gave against the lab's model. Add cells for combinations if you like. One run is one
# draw: the same cell run again gives a slightly different accuracy (about ± 0.2 points).

# %% [markdown]
# ### Experiment 1: a wider layer
# 256 units in the hidden layer instead of 128.

# %% mnistlab={"todo": "wider"}
# TODO: the lab's model with 256 hidden units: build, compile, train, print its test accuracy.
# Hint: copy Parts 6 to 9 here with keras.layers.Dense(256, activation="relu")
wider = ...

# %% [markdown] mnistlab={"answer": "wider"}
# What did you change, and what test accuracy did it reach against the lab's model's?
#
# *{answer}*

# %% [markdown]
# ### Experiment 2: a second layer
# A second hidden layer of 64 units after the first.

# %% mnistlab={"todo": "second_layer"}
# TODO: the lab's model with a second hidden layer: build, compile, train, print its accuracy.
# Hint: keras.layers.Dense(64, activation="relu") right after the 128-unit layer
second_layer = ...

# %% [markdown] mnistlab={"answer": "second_layer"}
# What did you change, and what test accuracy did it reach against the lab's model's?
#
# *{answer}*

# %% [markdown]
# ### Experiment 3: more epochs
# The lab's model trained for 10 epochs instead of 5.

# %% mnistlab={"todo": "more_epochs"}
# TODO: a new lab's model trained for 10 epochs: build, compile, train, print its accuracy.
# Hint: a fresh copy of the lab's model, then .fit(..., epochs=10, validation_split=0.2)
more_epochs = ...

# %% [markdown] mnistlab={"answer": "more_epochs"}
# What did you change, and what test accuracy did it reach against the lab's model's?
#
# *{answer}*

# %% [markdown]
# ### Experiment 4: dropout
# Dropout of 20% of the hidden layer's outputs while training.

# %% mnistlab={"todo": "dropout"}
# TODO: the lab's model with dropout: build, compile, train, print its test accuracy.
# Hint: keras.layers.Dropout(0.2) right after the hidden layer
dropout = ...

# %% [markdown] mnistlab={"answer": "dropout"}
# What did you change, and what test accuracy did it reach against the lab's model's?
#
# *{answer}*

# %% [markdown]
# ## Conclusion
# Which model is best? Write its name in bold as its heading above calls it (the lab's model,
# a wider layer, a second layer, more epochs, dropout, or your combination), with its test
# accuracy, and say whether you would trust the difference from one run each.

# %% [markdown] mnistlab={"answer": "conclusion"}
# *{answer}*

# %% [markdown]
# ## Bonus: {bonus_title}
# The same recipe on {bonus_title}, loaded with `mnistlab.datasets.{bonus_module}.load_data()`.

# %% mnistlab={"todo": "bonus"}
# TODO: load the bonus data set, prepare it and train the lab's model on it; print its accuracy.
# Hint: (bx_train, by_train), (bx_test, by_test) = mnistlab.datasets.fashion_mnist.load_data()
bonus = ...

# %% [markdown] mnistlab={"answer": "bonus"}
# What test accuracy does the lab's model reach on {bonus_title}, against the lab's data set?
#
# *{answer}*
