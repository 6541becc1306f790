"""A whole training epoch as one compiled JAX program: `training.fit`'s path on JAX.

    loop_for(spec)          # "compiled" where this module serves the spec, else "fit"
    history = fit_epochs(model, spec, fitted, held_out, epochs=..., callbacks=...)

Keras 3.15's `model.fit` on JAX compiles a training step but runs each one from Python, with
its callbacks and iterators around it: about 0.5-0.7 s an epoch for the lab's model on the 2
cores here, where the arithmetic takes about half of that. Here each epoch (the shuffle, the
augmentation, every optimiser step, the loss and accuracy) is one `jax.lax.scan` inside one
`jax.jit`, over the training images held on the device as uint8, driving the Keras model
through its stateless API (`model.stateless_call`, `optimizer.stateless_apply`; Keras's guide
"Writing a training loop from scratch in JAX"). The validation set is one compiled call too.

What it keeps of `model.fit`, so that the fronts see no difference:
- the arithmetic of a step: the same loss (Keras's `sparse_categorical_crossentropy` on the
  softmax output, the mean over the batch), the same optimiser update, schedule included (it
  reads the optimiser's step count), dropout drawn from the model's own seed generators and
  batch-normalisation statistics kept in its variables. The last batch of an epoch, when the
  batch size does not divide the training set, is a step of its own of the remaining images,
  as Keras makes it (tests/test_compiled.py: one step and one epoch give `fit`'s weights);
- the history: `loss` and `accuracy` as the mean over the epoch's images, `val_loss` and
  `val_accuracy` on the held-out images;
- the callbacks, called as `fit` calls them (a `keras.callbacks.CallbackList`, with Keras's
  progress bar and history): train begin, epoch begin, batch end after each compiled call,
  epoch end with the logs, train end; `model.stop_training` stops after the epoch. The
  variables are read from the Keras model as each epoch starts and written back as it ends, so
  a callback sees (and may change: a learning-rate schedule, a checkpoint's restore) the
  model as `fit` would show it at those points.

Randomness: each epoch's order and augmentation come from a key made of the spec's seed and the
epoch's number, and dropout from the model's seed generators (variables, kept in checkpoints),
so a run resumed from a checkpoint at any epoch ends with the weights of a run never stopped.
The numbers drawn differ from `fit`'s (NumPy's shuffle, `AugmentedImages`' generator): the
same kind of training, other draws, so equal over seeds, not run for run
(benchmarks/compiled_vs_fit.py).

Not served, so trained by `model.fit`: another backend than JAX, elastic distortions (a
Gaussian-smoothed random field), pen widths and blur (done with SciPy in `augment`), rotations
of only some images (`varied` under 1), and convolutional networks on a CPU (see `unserved`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from mnistlab import backend
from mnistlab.spec import Spec

backend.use()  # Keras reads its backend at import: mnistlab's choice, if it is the first
import keras  # noqa: E402

LOOPS = ("compiled", "fit")
# Steps per iteration of the scan's loop: 4 or 16 gave no gain for the lab's model here (within
# the noise of a loaded machine) and compiled 1.1 to 2 times longer.
UNROLL = 1
VALIDATION_BATCH = 1000  # images a validation step sees: bounds the memory of a conv network's


def unserved(spec: Spec, backend_name: str | None = None) -> str | None:
    """Why the compiled epoch cannot train `spec` on `backend_name` (default: Keras's), or None
    where it can."""
    name = backend_name or spec.backend or keras.backend.backend()
    if name != "jax":
        return f"the {name} backend (the compiled epoch is JAX's)"
    if spec.elastic or spec.pen or spec.blur:
        return "elastic distortions, pen widths or blur (done with SciPy on the CPU)"
    if spec.varied < 1 and spec.rotate:
        return "rotations of only some of the images (varied under 1)"
    if spec.conv and on_cpu():
        # XLA's CPU convolutions inside the scan's while loop ran 15 times slower a step of
        # preset `fast` than the same steps unrolled out of a loop (1240 ms against 84 ms,
        # batch 128, load 6 on the 2 cores), which only match Keras's own step (92 ms); and
        # TensorFlow's step is 5 times faster than either (18.5 ms): no gain to have here.
        return "convolutions on a CPU (slower in a compiled loop than in model.fit here)"
    return None


def on_cpu() -> bool:
    import jax

    return bool(jax.default_backend() == "cpu")


def loop_for(spec: Spec, backend_name: str | None = None) -> str:
    """The training loop that `training.fit` takes for `spec`: "compiled" or "fit"."""
    return "fit" if unserved(spec, backend_name) else "compiled"


def fit_epochs(
    model: keras.Model,
    spec: Spec,
    fitted: tuple[np.ndarray, np.ndarray],
    held_out: tuple[np.ndarray, np.ndarray] | None,
    *,
    initial_epoch: int = 0,
    verbose: int | str = 0,
    callbacks: Sequence[Any] = (),
    steps_per_call: int | None = None,
    shuffle: bool = True,
) -> dict[str, list[float]]:
    """Train `model` (built and compiled by `models.build`) for epochs `initial_epoch` to
    `spec.epochs` on the uint8 images and labels `fitted`, evaluating on `held_out` after each;
    return the history of these epochs as `model.fit` gives it. `steps_per_call`: full batches
    one compiled call runs (default: the epoch's), after each of which the callbacks' batch end
    is called (a progress bar moves). `shuffle=False` takes the images in order (the tests
    compare with `fit(shuffle=False)`)."""
    import jax.numpy as jnp

    images, labels = fitted
    n = len(images)
    full, last = divmod(n, spec.batch_size)
    steps = full + (1 if last else 0)
    per_call = max(1, min(steps_per_call or full, full)) if full else 0
    program = Program(model, spec, n, shuffle)
    x = jnp.asarray(images)
    y = jnp.asarray(labels.astype(np.int32))
    if held_out is not None:
        x_val, y_val = jnp.asarray(held_out[0]), jnp.asarray(held_out[1].astype(np.int32))

    hooks = keras.callbacks.CallbackList(
        list(callbacks),
        add_history=True,
        add_progbar=verbose != 0,
        verbose=verbose,
        epochs=spec.epochs,
        steps=steps,
        model=model,
    )
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    history: dict[str, list[float]] = {}
    model.stop_training = False
    hooks.on_train_begin()
    logs: dict[str, float] = {}
    for epoch in range(initial_epoch, spec.epochs):
        hooks.on_epoch_begin(epoch)
        state = program.read()
        order = program.order(epoch)
        totals = program.zeros()
        done = 0
        while done < steps:
            hooks.on_train_batch_begin(done)
            if done < full:
                count = min(per_call, full - done)
                state, totals = program.steps(state, totals, x, y, order, epoch, done, count)
                done += count
            else:
                state, totals = program.last(state, totals, x, y, order, epoch)
                done += 1
            logs = program.logs(totals)
            hooks.on_train_batch_end(done - 1, logs)
        program.write(state)
        if held_out is not None:
            logs |= program.validate(state, x_val, y_val)
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    hooks.on_train_end(logs)
    return history


State = tuple[list[Any], list[Any], list[Any]]  # trainable, non-trainable, optimiser values


class Program:
    """The compiled pieces of one model's training: `steps` (a scan over full batches), `last`
    (the partial batch), `validate`, and moving the variables to and from the Keras model."""

    def __init__(self, model: keras.Model, spec: Spec, n: int, shuffle: bool) -> None:
        import jax

        self.model, self.spec, self.n, self.shuffle = model, spec, n, shuffle
        self.seed = jax.random.key(spec.seed)
        self.optimizer = model.optimizer
        self.steps = jax.jit(self._steps, static_argnames=("count",))
        self.last = jax.jit(self._last)
        self._validate = jax.jit(self._validation)
        self._order = jax.jit(self._shuffled)

    def read(self) -> State:
        m = self.model
        return (
            [v.value for v in m.trainable_variables],
            [v.value for v in m.non_trainable_variables],
            [v.value for v in self.optimizer.variables],
        )

    def write(self, state: State) -> None:
        m = self.model
        variables = (m.trainable_variables, m.non_trainable_variables, self.optimizer.variables)
        for group, values in zip(variables, state, strict=True):
            for variable, value in zip(group, values, strict=True):
                variable.assign(value)

    @staticmethod
    def zeros() -> Any:
        import jax.numpy as jnp

        return jnp.zeros(3, jnp.float32)  # loss summed over images, images right, images

    @staticmethod
    def logs(totals: Any) -> dict[str, float]:
        loss, right, count = (float(v) for v in np.asarray(totals))
        return {"accuracy": right / count, "loss": loss / count}  # in fit's order

    def order(self, epoch: int) -> Any:
        return self._order(epoch)

    def validate(self, state: State, x: Any, y: Any) -> dict[str, float]:
        loss, right = (float(v) for v in np.asarray(self._validate(state, x, y)))
        return {"val_accuracy": right / len(x), "val_loss": loss / len(x)}

    # What follows is traced by JAX.

    def _keys(self, epoch: Any) -> tuple[Any, Any]:
        import jax

        key = jax.random.fold_in(self.seed, epoch)
        return jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)

    def _shuffled(self, epoch: Any) -> Any:
        import jax
        import jax.numpy as jnp

        if not self.shuffle:
            return jnp.arange(self.n)
        return jax.random.permutation(self._keys(epoch)[0], self.n)

    def _step(self, state: State, totals: Any, x: Any, y: Any, key: Any) -> tuple[State, Any]:
        """One optimiser step on the uint8 images `x` and labels `y` of a batch."""
        import jax
        import jax.numpy as jnp

        x = augmented(x.astype(jnp.float32), self.spec, key)
        x = (x / 255.0).reshape(len(x), -1)  # as data.preprocess: float32 pixels / 255
        trainable, non_trainable, optimizer = state

        def loss_of(trainable: list[Any], non_trainable: list[Any]) -> Any:
            probabilities, non_trainable = self.model.stateless_call(
                trainable, non_trainable, x, training=True
            )
            losses = keras.losses.sparse_categorical_crossentropy(y, probabilities)
            right = jnp.sum(jnp.argmax(probabilities, axis=-1) == y)
            return jnp.mean(losses), (non_trainable, jnp.sum(losses), right)

        grad = jax.value_and_grad(loss_of, has_aux=True)
        (_, (non_trainable, summed, right)), grads = grad(trainable, non_trainable)
        trainable, optimizer = self.optimizer.stateless_apply(optimizer, grads, trainable)
        totals = totals + jnp.stack([summed, right.astype(jnp.float32), jnp.float32(len(x))])
        return (trainable, non_trainable, optimizer), totals

    def _steps(
        self,
        state: State,
        totals: Any,
        x: Any,
        y: Any,
        order: Any,
        epoch: Any,
        first: Any,
        count: int,
    ) -> tuple[State, Any]:
        """Full batches `first` to `first + count` of the epoch, in one scan."""
        import jax
        import jax.numpy as jnp

        size = self.spec.batch_size
        keys = self._keys(epoch)[1]

        def body(carry: tuple[State, Any], step: Any) -> tuple[tuple[State, Any], None]:
            chosen = jax.lax.dynamic_slice(order, (step * size,), (size,))
            key = jax.random.fold_in(keys, step)
            return self._step(*carry, x[chosen], y[chosen], key), None

        (state, totals), _ = jax.lax.scan(
            body, (state, totals), first + jnp.arange(count), unroll=UNROLL
        )
        return state, totals

    def _last(
        self, state: State, totals: Any, x: Any, y: Any, order: Any, epoch: Any
    ) -> tuple[State, Any]:
        """The partial batch that ends the epoch: the images after the last full batch."""
        import jax

        full = self.n // self.spec.batch_size
        chosen = order[full * self.spec.batch_size :]
        key = jax.random.fold_in(self._keys(epoch)[1], full)
        return self._step(state, totals, x[chosen], y[chosen], key)

    def _validation(self, state: State, x: Any, y: Any) -> Any:
        """Loss summed and images right over uint8 images `x`, in inference mode."""
        import jax
        import jax.numpy as jnp

        trainable, non_trainable, _ = state

        def measure(images: Any, labels: Any) -> Any:
            pixels = (images.astype(jnp.float32) / 255.0).reshape(len(images), -1)
            probabilities, _ = self.model.stateless_call(
                trainable, non_trainable, pixels, training=False
            )
            losses = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
            right = jnp.sum(jnp.argmax(probabilities, axis=-1) == labels)
            return jnp.stack([jnp.sum(losses), right.astype(jnp.float32)])

        size = min(VALIDATION_BATCH, len(x))
        full = len(x) // size
        batches = x[: full * size].reshape(full, size, *x.shape[1:])
        targets = y[: full * size].reshape(full, size)
        sums = jax.lax.map(lambda pair: measure(*pair), (batches, targets)).sum(axis=0)
        if full * size < len(x):
            sums = sums + measure(x[full * size :], y[full * size :])
        return sums


def augmented(images: Any, spec: Spec, key: Any) -> Any:
    """A batch of float images in [0, 255] shifted, turned and mirrored as `spec` asks, on the
    device, in the order `augment.AugmentedImages` applies them."""
    import jax

    shift_key, turn_key, flip_key = jax.random.split(key, 3)
    if spec.shift:
        images = shifted(images, spec.shift, shift_key)
    if spec.rotate:
        images = turned(images, spec.rotate, turn_key)
    if spec.flip:
        images = flipped(images, flip_key)
    return images


def shifted(images: Any, shift: int, key: Any) -> Any:
    """Each image moved by its own random (dy, dx) in [-shift, shift], the edge filled with 0:
    a random crop of the image padded by `shift` (as airbench does on the device)."""
    import jax
    import jax.numpy as jnp

    n, height, width = images.shape
    padded = jnp.pad(images, ((0, 0), (shift, shift), (shift, shift)))
    corners = jax.random.randint(key, (n, 2), 0, 2 * shift + 1)
    crop: Callable[[Any, Any], Any] = partial(_crop, size=(height, width))
    return jax.vmap(crop)(padded, corners)


def _crop(image: Any, corner: Any, size: tuple[int, int]) -> Any:
    import jax

    return jax.lax.dynamic_slice(image, (corner[0], corner[1]), size)


def turned(images: Any, degrees: float, key: Any) -> Any:
    """Each image turned about its centre by its own random angle in [-degrees, degrees]:
    bilinear resampling, black outside the image, rounded to whole grey levels as
    `augment.distort` does."""
    import jax
    import jax.numpy as jnp
    from jax.scipy.ndimage import map_coordinates

    n, height, width = images.shape
    y, x = jnp.mgrid[0:height, 0:width].astype(jnp.float32)
    cy, cx = (height - 1) / 2, (width - 1) / 2
    angle = jnp.deg2rad(jax.random.uniform(key, (n, 1, 1), minval=-degrees, maxval=degrees))
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    rows = cy + (y - cy) * cos - (x - cx) * sin
    cols = cx + (y - cy) * sin + (x - cx) * cos

    def one(image: Any, r: Any, c: Any) -> Any:
        return map_coordinates(image, [r, c], order=1, mode="constant", cval=0.0)

    return jnp.clip(jnp.rint(jax.vmap(one)(images, rows, cols)), 0, 255)


def flipped(images: Any, key: Any) -> Any:
    """Half the images, drawn at random, mirrored left to right."""
    import jax
    import jax.numpy as jnp

    mirrored = jax.random.uniform(key, (len(images),)) < 0.5
    return jnp.where(mirrored[:, None, None], images[:, :, ::-1], images)
