"""mnistlab's compiled epoch against the floor: the lab's 1500 steps as a bare `jax.lax.scan`.

    python benchmarks/epoch_floor.py [ROUNDS]

The floor is the loop the issue measured by hand: the images shuffled and gathered once, then
one `jax.lax.scan` of the Keras model's `stateless_call` and Adam's `stateless_apply` over the
epoch's batches, nothing else. mnistlab's is `compiled.Program.steps` as `training.fit` runs it
(the shuffle and each batch's gather inside the loop, the loss and accuracy summed). Both on
the lab's model, from the same weights, alternated in one process; the validation pass (about
0.02 s) and the callbacks are left out of both. Prints each round's seconds and the medians.
"""

from __future__ import annotations

import os
import sys
import time
from statistics import median

os.environ.setdefault("KERAS_BACKEND", "jax")

from mnistlab import backend  # noqa: E402

backend.own_process()
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from mnistlab import compiled, data  # noqa: E402
from mnistlab.models import build  # noqa: E402
from mnistlab.spec import preset  # noqa: E402


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    spec = preset("lab")
    images, labels = data.load("mnist").train
    n, size = 48_000, spec.batch_size
    keras.utils.set_random_seed(spec.seed)
    model = build(spec, n // size)
    model.optimizer.build(model.trainable_variables)
    optimizer = model.optimizer
    x, y = jnp.asarray(images[:n]), jnp.asarray(labels[:n].astype(np.int32))

    def step(state, batch):
        trainable, non_trainable, moments = state
        pixels = (batch[0].astype(jnp.float32) / 255.0).reshape(size, -1)

        def loss_of(trainable):
            probabilities, _ = model.stateless_call(trainable, non_trainable, pixels)
            losses = keras.losses.sparse_categorical_crossentropy(batch[1], probabilities)
            return jnp.mean(losses)

        grads = jax.grad(loss_of)(trainable)
        trainable, moments = optimizer.stateless_apply(moments, grads, trainable)
        return (trainable, non_trainable, moments), None

    @jax.jit
    def floor(state, key):
        order = jax.random.permutation(key, n)
        batches = (x[order].reshape(n // size, size, 28, 28), y[order].reshape(n // size, size))
        return jax.lax.scan(step, state, batches)[0]

    program = compiled.Program(model, spec, n, shuffle=True)
    start = program.read()

    def ours(epoch):
        order = program.order(epoch)
        return program.steps(start, program.zeros(), x, y, order, epoch, 0, n // size)

    def theirs(epoch):
        return floor(start, jax.random.key(epoch))

    timings: dict[str, list[float]] = {"mnistlab": [], "floor": []}
    for epoch in range(rounds + 1):  # the first round compiles
        for name, epoch_of in (("mnistlab", ours), ("floor", theirs)):
            began = time.perf_counter()
            jax.block_until_ready(epoch_of(epoch))
            if epoch:
                timings[name].append(time.perf_counter() - began)
    for name, seconds in timings.items():
        each = ", ".join(f"{s:.3f}" for s in seconds)
        print(f"{name:9} median {median(seconds):.3f} s an epoch ({each})")


if __name__ == "__main__":
    main()
