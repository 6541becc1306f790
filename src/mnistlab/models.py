"""Build and compile the Keras model that a spec describes.

The lab's model, `build(preset("lab"))`: Input(784) -> Dense(128, relu) -> Dense(10, softmax),
101,770 parameters; adam, sparse categorical cross-entropy, accuracy.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from mnistlab.spec import CLASSES, Spec

if TYPE_CHECKING:  # imported where it is used, once the backend is chosen
    import keras

INPUT_SIZE = 28 * 28
LOSS = "sparse_categorical_crossentropy"


def build(spec: Spec, steps_per_epoch: int = 1500, steps_per_execution: int = 1) -> keras.Model:
    """A compiled `Sequential` model; seed first (`keras.utils.set_random_seed`) to fix weights.
    `steps_per_epoch` sets the length of a cosine schedule (1500 for the lab's 48,000 images
    in batches of 32); `steps_per_execution` how many training steps one compiled call runs,
    which changes the speed, not the arithmetic."""
    from mnistlab import backend

    backend.use(spec.backend)
    import keras

    # Mixed precision computes every layer but the last in bfloat16 on float32 weights; the
    # softmax stays in float32, as Keras's mixed-precision guide advises
    dtype = {"dtype": "mixed_bfloat16"} if spec.precision == "bfloat16" else {}
    layers: list[keras.layers.Layer] = []
    if spec.conv:
        layers.append(keras.layers.Reshape((28, 28, 1), **dtype))
        for filters in spec.conv:
            layers += activated(
                keras.layers.Conv2D, filters, spec, kernel_size=3, padding="same", **dtype
            )
            layers.append(keras.layers.MaxPooling2D(2, **dtype))
        layers.append(keras.layers.Flatten(**dtype))
    for units in spec.hidden:
        layers += activated(keras.layers.Dense, units, spec, **dtype)
        if spec.dropout:
            layers.append(keras.layers.Dropout(spec.dropout, **dtype))
    layers.append(keras.layers.Dense(CLASSES, activation="softmax", dtype="float32"))
    model = keras.Sequential([keras.Input((INPUT_SIZE,)), *layers], name="mnistlab")
    rate: float | keras.optimizers.schedules.LearningRateSchedule = spec.learning_rate
    if spec.schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            spec.learning_rate, decay_steps=spec.epochs * steps_per_epoch
        )
    optimizer = keras.optimizers.get({"class_name": spec.optimizer, "config": {}})
    optimizer.learning_rate = rate
    model.compile(
        optimizer=optimizer,
        loss=LOSS,
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
    return model


def activated(
    kind: type[keras.layers.Layer], size: int, spec: Spec, **options: Any
) -> list[keras.layers.Layer]:
    """A layer with its activation, or with batch normalisation between the two, as Ioffe and
    Szegedy place it; the layer's bias is then dropped, the normalisation's shift replacing it."""
    import keras

    if not spec.batchnorm:
        return [kind(size, activation=spec.activation, **options)]
    dtype = {k: v for k, v in options.items() if k == "dtype"}
    return [
        kind(size, use_bias=False, **options),
        keras.layers.BatchNormalization(**dtype),
        keras.layers.Activation(spec.activation, **dtype),
    ]


def in_float32(model: keras.Model, spec: Spec) -> keras.Model:
    """`model`, or where `spec` computes in bfloat16, its weights (float32 either way) in a
    model that computes in float32: what runtimes without bfloat16 run (ONNX, LiteRT)."""
    if spec.precision == "float32":
        return model
    plain = build(spec.replace(precision="float32", backend=None))
    plain.set_weights(model.get_weights())
    return plain


def summary_text(model: keras.Model) -> str:
    """Keras's own summary table, as text."""
    out = io.StringIO()
    model.summary(print_fn=lambda line, line_break=True: out.write(line + "\n"))
    return out.getvalue().rstrip() + "\n"
