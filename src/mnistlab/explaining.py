"""See inside a model: which pixels made it say what it said.

    e = ml.explain(run, "seven.png")      # or a test image: ml.explain(run, x_test[0])
    e.label, e.probabilities, e.saliency  # the answer, every class's probability, 28x28

The saliency map is integrated gradients (Sundararajan, Taly and Yan, "Axiomatic attribution
for deep networks", 2017): the gradient of the predicted class's probability with respect to
the pixels, averaged along the straight path from a black image (MNIST's background, the
absence of ink) to the image, times the image minus that baseline. Its pixels add up to the
probability at the image minus the probability at the baseline ("completeness"), so a map is
read in units of probability: positive pixels pushed towards the answer, negative ones away
from it. The integral is taken by the trapezoidal rule on `STEPS` steps, all in one batch;
`Explanation.gap` says how far from exact that sum came out (a test holds it small).

The gradient is the Keras backend's own: on JAX, `jax.grad` of the model's `stateless_call`,
compiled once per `Explainer`; on TensorFlow, a `tf.GradientTape` in a `tf.function`. Keras 3
has no backend-neutral gradient (`keras.ops` has none), hence the two.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from mnistlab.errors import MnistlabError

if TYPE_CHECKING:  # Keras is imported where it is used, once the backend is chosen
    import keras

    from mnistlab.runs import Run

STEPS = 64  # trapezoids along the path, 65 images in one batch: the attributions' sum came
# within 0.007 of the probability's change on the lab's model (test images 0 and 8, `mnistlab
# explain`), within 0.01 on the tests' tiny model (tests/test_explain.py)
SIDE = 28


@dataclass(frozen=True)
class Explanation:
    """What a model saw and said of one image, and why. `pixels` is the 28x28 image in [0, 1]
    that the model saw (white ink on black), `probabilities` its answer for every class,
    `label` the class it chose, `saliency` the 28x28 integrated gradients of that class's
    probability (positive: towards it), `baseline_probability` that class's probability for
    a black image, the path's start."""

    pixels: np.ndarray
    probabilities: np.ndarray
    label: int
    class_names: tuple[str, ...]
    saliency: np.ndarray
    baseline_probability: float
    steps: int = STEPS

    @property
    def class_name(self) -> str:
        return self.class_names[self.label]

    @property
    def probability(self) -> float:
        return float(self.probabilities[self.label])

    @property
    def gap(self) -> float:
        """How far the attributions' sum is from the change of probability they explain."""
        change = self.probability - self.baseline_probability
        return float(self.saliency.sum() - change)


class Explainer:
    """Integrated gradients for one Keras model, its gradient compiled once (the web app keeps
    one for every request)."""

    def __init__(self, model: keras.Model, steps: int = STEPS) -> None:
        if steps < 1:
            raise MnistlabError(f"{steps} steps cannot make a path", "use 1 or more steps")
        self.model = model
        self.steps = steps
        self.gradient = gradient_function(model)

    def __call__(self, pixels: np.ndarray, class_names: tuple[str, ...]) -> Explanation:
        """The explanation of one image: float pixels in [0, 1], 28x28 or 784."""
        from mnistlab.prediction import classify

        x = np.asarray(pixels, np.float32).reshape(1, SIDE * SIDE)
        probabilities = classify(self.model, x)[0]
        label = int(np.argmax(probabilities))
        baseline = np.zeros_like(x)
        alphas = np.linspace(0.0, 1.0, self.steps + 1, dtype=np.float32)[:, None]
        path = baseline + alphas * (x - baseline)  # (steps + 1, 784), baseline first
        values, grads = self.gradient(path, label)
        # trapezoidal rule: the mean of the gradients with the two ends weighted by a half
        weights = np.full(self.steps + 1, 1.0 / self.steps, np.float32)
        weights[[0, -1]] /= 2
        average = (weights[:, None] * grads).sum(axis=0)
        saliency = ((x - baseline)[0] * average).reshape(SIDE, SIDE)
        return Explanation(
            pixels=x.reshape(SIDE, SIDE),
            probabilities=probabilities,
            label=label,
            class_names=tuple(class_names),
            saliency=saliency.astype(np.float32),
            baseline_probability=float(values[0]),
            steps=self.steps,
        )


Gradient = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def gradient_function(model: keras.Model) -> Gradient:
    """`f(images, c) -> (probabilities of class c, their gradients)` for a batch of flat images,
    with the backend Keras runs on."""
    import keras

    name = keras.backend.backend()
    if name == "jax":
        return jax_gradient(model)
    if name == "tensorflow":
        return tensorflow_gradient(model)
    raise MnistlabError(
        f"saliency maps need the JAX or TensorFlow backend, not {name}",
        "set KERAS_BACKEND=jax (or tensorflow)",
    )


def jax_gradient(model: keras.Model) -> Gradient:
    import jax

    def total(x: jax.Array, trainable: Any, fixed: Any, label: int) -> tuple[jax.Array, Any]:
        out, _ = model.stateless_call(trainable, fixed, x, training=False)
        values = out[:, label]
        return values.sum(), values  # each image's output depends on that image alone

    compiled = jax.jit(jax.grad(total, has_aux=True), static_argnums=3)

    def gradient(x: np.ndarray, label: int) -> tuple[np.ndarray, np.ndarray]:
        # the variables' current values, passed in: Keras replaces their buffers as it runs
        trainable = [v.value for v in model.trainable_variables]
        fixed = [v.value for v in model.non_trainable_variables]
        grads, values = compiled(x, trainable, fixed, label)
        return np.asarray(values), np.asarray(grads)

    return gradient


def tensorflow_gradient(model: keras.Model) -> Gradient:
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def compiled(x: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            values = tf.gather(model(x, training=False), label, axis=1)
        return values, tape.gradient(values, x)

    def gradient(x: np.ndarray, label: int) -> tuple[np.ndarray, np.ndarray]:
        values, grads = compiled(tf.constant(x), tf.constant(label))
        return values.numpy(), grads.numpy()

    return gradient


def explain(run: Run, image: Any, steps: int = STEPS) -> Explanation:
    """Explain the run's answer for one image: a picture file's path or bytes (read as
    `ml.read_image` reads it), what `read_image` made, or one image as `run.predict` takes it
    (the data set's uint8 28x28, or float pixels in [0, 1])."""
    from mnistlab.prediction import as_pixels

    if isinstance(image, str | Path | bytes) or hasattr(image, "read"):
        from mnistlab.images import read_image

        source = picture_source(image)
        try:
            image = read_image(source)
        except MnistlabError as e:
            if not isinstance(source, Path):
                raise
            raise MnistlabError(f"{source}: {e.problem}", e.fix) from None
    pixels, single = as_pixels(image)
    if not single:
        raise MnistlabError(
            f"explain takes one image, not {len(pixels)}", "pass one image, e.g. x_test[0]"
        )
    return Explainer(run.model, steps)(pixels[0], run.class_names)


def picture_source(image: str | Path | bytes | IO[bytes]) -> Path | bytes | IO[bytes]:
    return Path(image) if isinstance(image, str) else image


TILES = 64  # the first layer's units or filters shown as pictures
EMBEDDED = 2000  # test images placed on the 2-D map: t-SNE on 2,000 takes about 10 s here


def first_layer(model: keras.Model, count: int = TILES) -> tuple[str, np.ndarray]:
    """The first layer's weights as pictures: ("dense", (units, 28, 28)), each unit's 784
    weights laid out as the image they multiply, or ("conv", (filters, k, k)), each filter's
    kernel; at most `count` of them, the first ones."""
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        weights = np.asarray(kernel.numpy() if hasattr(kernel, "numpy") else kernel)
        if weights.ndim == 2 and weights.shape[0] == SIDE * SIDE:
            return "dense", weights.T[:count].reshape(-1, SIDE, SIDE)
        if weights.ndim == 4:  # (k, k, channels in, filters): the first layer sees one channel
            return "conv", np.moveaxis(weights[:, :, 0, :count], -1, 0)
        break
    raise MnistlabError(
        "the model's first layer is neither a Dense layer on 784 pixels nor a convolution",
        "pass a model built by mnistlab",
    )


def hidden_features(model: keras.Model, pixels: np.ndarray, batch: int = 1000) -> np.ndarray:
    """What the last hidden layer gives for float pixels (N, 784): the input of the output
    layer, dropout off. A model with no hidden layer gives the pixels themselves."""
    import keras

    parts = []
    for start in range(0, len(pixels), batch):
        x = keras.ops.convert_to_tensor(np.asarray(pixels[start : start + batch], np.float32))
        for layer in model.layers[:-1]:
            x = layer(x, training=False)
        parts.append(keras.ops.convert_to_numpy(x).reshape(len(x), -1))
    return np.concatenate(parts) if parts else np.zeros((0, SIDE * SIDE), np.float32)


def embed(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """A 2-D map of feature vectors by t-SNE (scikit-learn's, Barnes-Hut), after PCA to 50
    dimensions as van der Maaten and Hinton advise; points close on the map are close in
    the features. `seed` fixes the map."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    features = np.asarray(features, np.float32)
    if len(features) < 5:
        raise MnistlabError(
            f"a map needs at least 5 images, not {len(features)}", "use a larger test set"
        )
    if features.shape[1] > 50 and len(features) > 50:
        features = PCA(50, random_state=seed).fit_transform(features)
    perplexity = min(30.0, (len(features) - 1) / 3)
    tsne = TSNE(2, perplexity=perplexity, init="pca", random_state=seed)
    # One OpenMP thread: on this 2-core machine, shared, t-SNE of 2,000 points took 27 s on
    # one thread and 122 s on two, whose threads wait for each other (load average 10).
    with threadpool_limits(1, user_api="openmp"):
        return np.asarray(tsne.fit_transform(features), np.float32)


def embedding(
    model: keras.Model, pixels: np.ndarray, count: int = EMBEDDED, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A 2-D map of `count` images drawn at random (by `seed`) from float pixels (N, 784), by
    the model's last hidden layer: (the images' indices, their (count, 2) places)."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(pixels), size=min(count, len(pixels)), replace=False))
    return chosen, embed(hidden_features(model, pixels[chosen]), seed)


def pick(data: Any, index: int, split: str = "test") -> tuple[np.ndarray, int]:
    """Image `index` of a data set's `split` ("test" or "train") and its label."""
    from mnistlab.text import plural

    images, labels = data.test if split == "test" else data.train
    if not 0 <= index < len(images):
        raise MnistlabError(
            f"index {index} is out of range: the {split} set has {plural(len(images), 'image')}",
            f"choose an index from 0 to {len(images) - 1}",
        )
    return images[index], int(labels[index])
