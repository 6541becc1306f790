"""What to train: one typed, frozen value, with named presets and checked overrides.

    spec = preset("lab").replace(hidden=(256,), epochs=10)

The default preset `lab` is the lab's recipe exactly; `wide`, `deep`, `long` and `dropout` are
the lab's four experiment ideas. `Spec.from_dict` takes overrides from a file or the command
line and refuses unknown keys and wrong types, naming the key; `Spec.from_file` reads a TOML
file of spec fields (`to_toml` writes one), such as the best spec `mnistlab tune` writes.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab.backend import BACKENDS
from mnistlab.errors import MnistlabError
from mnistlab.files import read_text

MAX_EPOCHS = 1000
MAX_BATCH = 60000  # the whole training set
MAX_SEED = 2**32 - 1
MAX_TEST_SHIFT = 2
MAX_PARAMETERS = 50_000_000  # 800 MB with Adam's two moments: a bound on memory
CLASSES = 10  # both data sets have ten classes
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "nadam")
SCHEDULES = ("constant", "cosine")
ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid", "elu", "selu", "swish")
PRECISIONS = ("float32", "bfloat16")


@dataclass(frozen=True)
class Spec:
    conv: tuple[int, ...] = ()  # filters of each 3x3 convolution, each then 2x2 max pooling
    hidden: tuple[int, ...] = (128,)  # units of each hidden Dense layer
    activation: str = "relu"
    dropout: float = 0.0  # rate of the Dropout after each hidden layer; 0 means none
    batchnorm: bool = False  # batch normalisation before each hidden activation
    shift: int = 0  # pixels: each training image moved by up to this much, anew each epoch
    rotate: float = 0.0  # degrees: each training image turned by up to this much, anew each epoch
    elastic: float = 0.0  # Simard et al.'s alpha for elastic distortions (sigma 4 px); 0 is none
    flip: bool = False  # mirror half the training images left to right, anew each epoch
    pen: int = 0  # pixels: strokes thickened or thinned by up to this much (pen width), anew
    blur: float = 0.0  # pixels: each training image blurred by a Gaussian of up to this sigma
    varied: float = 1.0  # the share of training images that pen, blur, rotate and elastic
    # change each epoch, drawn anew each epoch; the others are only shifted and flipped
    epochs: int = 5
    batch_size: int = 32
    validation_split: float = 0.2  # the last fraction of the training set, as Keras takes it
    optimizer: str = "adam"
    learning_rate: float = 0.001  # Keras's default for adam
    schedule: str = "constant"  # or "cosine": decay to 0 over all the training steps
    # "bfloat16": Keras's mixed precision, bfloat16 arithmetic on float32 weights; on the CPUs
    # here (Xeons with AMX) TensorFlow trains preset `fast` in 10.5 s against 14.3 s (README)
    precision: str = "float32"
    # pixels: a run answers an image with the mean of its network's probabilities for it and
    # its 8 copies moved by this many pixels (test-time shifts), in evaluation, validation and
    # prediction; 0: the image alone. Exports and the reading of numbers run the network alone.
    test_shifts: int = 0
    seed: int = 1
    backend: str | None = None  # None: the backend Keras runs ($KERAS_BACKEND, else jax)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check_type(f.name, getattr(self, f.name), TYPES[f.name])
        if len(self.conv) > 3 or any(f < 1 for f in self.conv):
            raise invalid("conv", self.conv, "up to 3 filter counts, each at least 1")
        if any(h < 1 for h in self.hidden) or not (self.hidden or self.conv):
            raise invalid("hidden", self.hidden, "one or more layer sizes, each at least 1")
        if not 0 <= self.dropout < 1:
            raise invalid("dropout", self.dropout, "a rate in [0, 1)")
        if not 0 <= self.shift <= 8:
            raise invalid("shift", self.shift, "a number of pixels from 0 to 8")
        if not 0 <= self.rotate <= 45:
            raise invalid("rotate", self.rotate, "a number of degrees from 0 to 45")
        if not 0 <= self.elastic <= 100:
            raise invalid("elastic", self.elastic, "from 0 (none) to 100 (Simard et al. use 34)")
        if not 0 <= self.pen <= 2:
            raise invalid("pen", self.pen, "a number of pixels from 0 to 2")
        if not 0 <= self.blur <= 3:
            raise invalid("blur", self.blur, "a Gaussian's sigma in pixels, from 0 to 3")
        if not 0 <= self.test_shifts <= MAX_TEST_SHIFT:
            raise invalid("test_shifts", self.test_shifts, f"pixels from 0 to {MAX_TEST_SHIFT}")
        if not 0 < self.varied <= 1:
            raise invalid("varied", self.varied, "a share of the training images in (0, 1]")
        if not 1 <= self.epochs <= MAX_EPOCHS:
            raise invalid("epochs", self.epochs, f"from 1 to {MAX_EPOCHS:,}")
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise invalid("batch_size", self.batch_size, f"from 1 to {MAX_BATCH:,}")
        if not 0 <= self.validation_split < 1:
            raise invalid(
                "validation_split",
                self.validation_split,
                "a fraction in [0, 1); 0 trains on the whole training set, with no validation",
            )
        if not 0 < self.learning_rate <= 10:  # also refuses nan
            raise invalid("learning_rate", self.learning_rate, "greater than 0, at most 10")
        if not 0 <= self.seed <= MAX_SEED:
            raise invalid("seed", self.seed, f"from 0 to {MAX_SEED:,} (NumPy's seeds)")
        if parameter_count(self) > MAX_PARAMETERS:
            raise invalid(
                "hidden" if not self.conv else "conv",
                self.conv or self.hidden,
                f"a network of at most {MAX_PARAMETERS:,} parameters, not "
                f"{parameter_count(self):,} (the weights and Adam's state would take "
                f"{16 * parameter_count(self) / 2**30:.1f} GiB)",
            )
        for key, allowed in (
            ("optimizer", OPTIMIZERS),
            ("activation", ACTIVATIONS),
            ("schedule", SCHEDULES),
            ("precision", PRECISIONS),
        ):
            if getattr(self, key) not in allowed:
                raise invalid(key, getattr(self, key), f"one of {', '.join(allowed)}")
        if self.backend is not None and self.backend not in BACKENDS:
            raise invalid("backend", self.backend, f"one of {', '.join(BACKENDS)}")

    def replace(self, **changes: Any) -> Spec:
        return Spec.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()}

    @staticmethod
    def from_dict(values: dict[str, Any]) -> Spec:
        # Run folders before 0.2 stored the class count, now the data set's, in the spec
        values = {k: v for k, v in values.items() if k != "num_classes"}
        unknown = sorted(set(values) - set(TYPES))
        if unknown:
            raise MnistlabError(
                f"unknown spec key {unknown[0]!r}", f"known keys: {', '.join(TYPES)}"
            )
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return Spec(**values)

    @staticmethod
    def from_file(path: str | Path) -> Spec:
        """The spec in a TOML file of spec fields (`hidden = [512, 512]`, `dropout = 0.2`...),
        the others at their defaults; unknown keys and wrong types are refused, naming the key."""
        path = Path(path)
        try:
            values = tomllib.loads(read_text(path, "a spec file"))
        except FileNotFoundError:
            raise MnistlabError(f"no spec file at {path}", "check the path") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise MnistlabError(
                f"{path}: not a readable TOML file ({e})", "write spec fields as key = value"
            ) from e
        try:
            return Spec.from_dict(values)
        except MnistlabError as e:
            raise MnistlabError(f"{path}: {e.problem}", e.fix) from e

    def to_toml(self) -> str:
        """The spec as the lines of a TOML file that `from_file` reads back to this spec; a
        backend of None (whichever Keras runs) is left out."""
        lines = []
        for key, value in self.to_dict().items():
            if value is None:
                continue
            # JSON's numbers, lists of whole numbers, true/false and ASCII strings are TOML's
            lines.append(f"{key} = {json.dumps(value)}")
        return "\n".join(lines) + "\n"


TYPES: dict[str, Any] = typing.get_type_hints(Spec)


def check_type(key: str, value: Any, kind: Any) -> None:
    if kind == (str | None):
        if value is None:
            return
        kind = str
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return  # 1 is a fine learning rate
    if typing.get_origin(kind) is tuple:
        ok = isinstance(value, tuple) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
    else:
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
    if not ok:
        want = "a list of whole numbers" if typing.get_origin(kind) is tuple else kind.__name__
        raise MnistlabError(f"spec key {key!r} must be {want}, not {value!r}")


def invalid(key: str, value: object, want: str) -> MnistlabError:
    return MnistlabError(f"{key} = {value!r} is out of range", f"{key} must be {want}")


PRESETS: dict[str, dict[str, Any]] = {
    "lab": {},  # Dense(128, relu), Dense(10, softmax); adam; 5 epochs; batch 32; split 0.2
    "wide": {"hidden": (256,)},
    "deep": {"hidden": (128, 64)},
    "long": {"epochs": 10},
    "dropout": {"dropout": 0.2},
    # A small convolutional network: 99.52% ± 0.01 over 3 seeds, 7 minutes a seed here (README).
    # TensorFlow: convolutions run 4x faster on it here (10 s an epoch against 40 s on JAX).
    "cnn": {
        "conv": (32, 64),
        "hidden": (256,),
        "dropout": 0.25,
        "shift": 2,
        "epochs": 25,
        "batch_size": 128,
        "learning_rate": 0.002,
        "schedule": "cosine",
        "backend": "tensorflow",
    },
    # The strongest single network trained here: three convolutions with batch normalisation,
    # shifts and rotations anew each epoch, a cosine schedule. 99.67% ± 0.06 over 3 seeds, 18
    # minutes a seed here (README).
    "best": {
        "conv": (32, 64, 128),
        "hidden": (256,),
        "batchnorm": True,
        "dropout": 0.4,
        "shift": 2,
        "rotate": 10.0,
        "epochs": 30,
        "batch_size": 128,
        "learning_rate": 0.003,
        "schedule": "cosine",
        "backend": "tensorflow",
    },
    # For reading real people's handwriting (mnistlab read, serve): `cnn`'s network, trained
    # on digits shifted and, half of them each epoch, drawn with other pens (thinner and
    # thicker strokes), blurred, turned and elastically distorted, so that a marker's 1, a
    # fine liner's 7 and a blurry scan look like something it has seen (issue 15), and
    # MNIST's own digits too. 99.55% ± 0.04 over 3 seeds, 225 to 241 s a seed alone here,
    # bfloat16; chosen on validation (docs/results.md); the README's real-world variants of
    # MNIST's test digits measure what it reads.
    "handwriting": {
        "conv": (32, 64),
        "hidden": (256,),
        "dropout": 0.25,
        "pen": 1,
        "blur": 1.0,
        "shift": 2,
        "rotate": 8.0,
        "elastic": 20.0,
        "varied": 0.5,
        "epochs": 24,
        "batch_size": 128,
        "learning_rate": 0.003,
        "schedule": "cosine",
        "precision": "bfloat16",
        "backend": "tensorflow",
    },
    # The fewest seconds of training to 99.0% test accuracy found here (`mnistlab bench --to
    # 99.0`; chosen on validation among the candidates in docs/results.md): half the filters of
    # `cnn` (3.5 times less arithmetic), bfloat16 arithmetic, 2 epochs, each image answered
    # with its copies moved by a pixel (test shifts).
    "fast": {
        "conv": (16, 32),
        "hidden": (128,),
        "epochs": 2,
        "batch_size": 128,
        "learning_rate": 0.008,
        "schedule": "cosine",
        "precision": "bfloat16",
        "test_shifts": 1,
        "backend": "tensorflow",
    },
    # The same for 99.5% (`mnistlab bench --to 99.5`): `cnn` in bfloat16, 14 epochs of its 25,
    # test shifts of a pixel.
    "fast-99.5": {
        "conv": (32, 64),
        "hidden": (256,),
        "dropout": 0.25,
        "shift": 2,
        "epochs": 14,
        "batch_size": 128,
        "learning_rate": 0.002,
        "schedule": "cosine",
        "precision": "bfloat16",
        "test_shifts": 1,
        "backend": "tensorflow",
    },
    # For 99.65% (`mnistlab bench --to 99.65`): `best`'s convolutions without batch
    # normalisation (most of its cost on TensorFlow's CPU kernels), in bfloat16, `handwriting`'s
    # turns and distortions on half the images, 40 epochs, test shifts of a pixel. 99.67% ±
    # 0.04 over 3 seeds in 334 s a seed here. No candidate reached 99.65% on validation; this
    # one has the highest validation accuracy under 600 s, 99.64% (docs/results.md).
    "fast-99.65": {
        "conv": (32, 64, 128),
        "hidden": (256,),
        "dropout": 0.4,
        "shift": 2,
        "rotate": 8.0,
        "elastic": 20.0,
        "varied": 0.5,
        "epochs": 40,
        "batch_size": 128,
        "learning_rate": 0.003,
        "schedule": "cosine",
        "precision": "bfloat16",
        "test_shifts": 1,
        "backend": "tensorflow",
    },
}


def preset(name: str = "lab", **changes: Any) -> Spec:
    """The named recipe, with `changes` to its fields: `preset("lab", epochs=10)`."""
    if name not in PRESETS:
        raise MnistlabError(f"unknown preset {name!r}", f"choose one of: {', '.join(PRESETS)}")
    spec = Spec(**PRESETS[name])
    return spec.replace(**changes) if changes else spec


def parameter_count(spec: Spec) -> int:
    """Weights and biases of the model `models.build(spec)` makes, without building it."""
    # With batch normalisation a layer has no bias but 4 numbers per unit: scale, shift and
    # the moving mean and variance (the last two not trained, but saved and counted by Keras).
    per_unit = 4 if spec.batchnorm else 1
    count, channels, side = 0, 1, 28
    for filters in spec.conv:
        count += 9 * channels * filters + per_unit * filters
        channels, side = filters, side // 2
    sizes = [side * side * channels, *spec.hidden]
    count += sum(a * b + per_unit * b for a, b in zip(sizes, sizes[1:], strict=False))
    return count + sizes[-1] * CLASSES + CLASSES


def multiply_adds(spec: Spec) -> int:
    """Multiply-adds of one image's forward pass: what a training step costs, unlike the
    parameter count for convolutions, which reuse few weights at every pixel."""
    count, channels, side = 0, 1, 28
    for filters in spec.conv:
        count += side * side * 9 * channels * filters
        channels, side = filters, side // 2
    sizes = [side * side * channels, *spec.hidden, CLASSES]
    return count + sum(a * b for a, b in zip(sizes, sizes[1:], strict=False))
