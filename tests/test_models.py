import keras
import numpy as np
import pytest

from mnistlab.errors import MnistlabError
from mnistlab.models import LOSS, build, summary_text
from mnistlab.spec import Spec, multiply_adds, parameter_count, preset

# Pinned: the lab's model has 101,770 parameters, and 50,890 with 64 hidden units
# (784*64 + 64 + 64*10 + 10).
PARAMS = {
    "lab": 101_770,
    "wide": 203_530,
    "deep": 109_386,
    "long": 101_770,
    "dropout": 101_770,
    "cnn": 824_458,
    "best": 391_850,
    "fast": 206_922,
    "fast-99.5": 824_458,
    "fast-99.65": 390_410,
}


@pytest.mark.parametrize(("name", "count"), PARAMS.items())
def test_parameter_counts_are_pinned(name, count):
    assert build(preset(name, backend=None)).count_params() == count  # on either backend


def test_64_units_has_50890_parameters():
    assert build(Spec(hidden=(64,))).count_params() == 50_890


def test_lab_model_layers_loss_and_optimizer():
    model = build(preset("lab"))
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [128, 10]
    assert [d.activation.__name__ for d in dense] == ["relu", "softmax"]
    assert model.input_shape == (None, 784)
    assert model.loss == LOSS == "sparse_categorical_crossentropy"
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.001)


def test_dropout_follows_each_hidden_layer():
    model = build(Spec(hidden=(128, 64), dropout=0.2))
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Dense", "Dropout", "Dense", "Dropout", "Dense"]
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [
        0.2,
        0.2,
    ]


def test_optimizer_and_learning_rate_from_the_spec():
    model = build(Spec(optimizer="sgd", learning_rate=0.05))
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)


def test_summary_is_keras_own_table():
    text = summary_text(build(preset("lab")))
    assert "Total params: 101,770" in text
    assert "Dense" in text


def test_a_cosine_schedule_decays_to_zero_over_all_steps():
    model = build(Spec(schedule="cosine", epochs=2, learning_rate=0.01), steps_per_epoch=50)
    schedule = model.optimizer._learning_rate
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(50)) == pytest.approx(0.005, rel=1e-4)  # half way: cos(pi / 2)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-8)


def test_constant_rate_is_the_lab_default():
    model = build(preset("lab"))
    assert not isinstance(
        model.optimizer._learning_rate, keras.optimizers.schedules.LearningRateSchedule
    )


@pytest.mark.parametrize(
    "spec",
    [
        Spec(),
        Spec(hidden=(256, 64)),
        Spec(conv=(32, 64)),
        Spec(conv=(16,), hidden=()),
        Spec(conv=(8, 16, 32), hidden=(64,)),
        Spec(batchnorm=True),
        Spec(conv=(8, 16), hidden=(64, 32), batchnorm=True),
    ],
)
def test_parameter_count_without_building_matches_keras(spec):
    assert parameter_count(spec) == build(spec).count_params()


def test_a_convolutional_spec():
    model = build(Spec(conv=(32, 64), hidden=(128,), dropout=0.3))
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == [
        "Reshape",
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
        "Dropout",
        "Dense",
    ]
    assert model.input_shape == (None, 784)  # the same flattened input as the lab's model
    assert model.count_params() == 421_642


def test_multiply_adds_of_a_forward_pass():
    assert multiply_adds(preset("lab")) == 784 * 128 + 128 * 10
    # 28x28 pixels x 9 x 1 x 8, then 14x14 x 9 x 8 x 16, then 7x7x16 -> 10
    assert multiply_adds(Spec(conv=(8, 16), hidden=())) == 56_448 + 225_792 + 7_840


def test_batchnorm_sits_between_each_hidden_layer_and_its_activation():
    model = build(Spec(conv=(8,), hidden=(32,), batchnorm=True, dropout=0.1))
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == [
        "Reshape",
        "Conv2D",
        "BatchNormalization",
        "Activation",
        "MaxPooling2D",
        "Flatten",
        "Dense",
        "BatchNormalization",
        "Activation",
        "Dropout",
        "Dense",
    ]
    assert not model.layers[1].use_bias and not model.layers[6].use_bias
    assert model.layers[-1].use_bias  # the output layer keeps its bias and softmax


def test_bfloat16_computes_every_layer_but_the_softmax_in_bfloat16_on_float32_weights():
    spec = Spec(conv=(4,), hidden=(8,), batchnorm=True, dropout=0.1, precision="bfloat16")
    model = build(spec)
    *inner, last = model.layers
    assert {layer.compute_dtype for layer in inner} == {"bfloat16"}
    assert last.compute_dtype == "float32"  # the softmax, and so the probabilities
    assert {v.dtype for v in model.weights} == {"float32"}
    assert (
        model.count_params()
        == parameter_count(spec)
        == build(spec.replace(precision="float32")).count_params()
    )
    out = model.predict(np.zeros((2, 784), "float32"), verbose=0)
    assert out.dtype == np.float32 and np.allclose(out.sum(axis=1), 1, atol=1e-3)


def test_an_unknown_precision_is_refused_naming_the_choices():
    with pytest.raises(MnistlabError, match="precision") as caught:
        Spec(precision="float16")
    assert "float32, bfloat16" in caught.value.fix
