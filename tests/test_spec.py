import dataclasses

import pytest

from mnistlab.errors import MnistlabError
from mnistlab.spec import PRESETS, Spec, preset


def test_lab_preset_is_the_labs_recipe():
    spec = preset("lab")
    assert spec == Spec()
    assert spec.hidden == (128,)
    assert (spec.activation, spec.dropout, spec.optimizer) == ("relu", 0.0, "adam")
    assert (spec.epochs, spec.batch_size, spec.validation_split) == (5, 32, 0.2)
    assert spec.learning_rate == 0.001


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("wide", "hidden", (256,)),
        ("deep", "hidden", (128, 64)),
        ("long", "epochs", 10),
        ("dropout", "dropout", 0.2),
    ],
)
def test_experiment_presets_change_one_thing(name, field, value):
    spec = preset(name)
    assert getattr(spec, field) == value
    changed = [
        f.name for f in dataclasses.fields(Spec) if getattr(spec, f.name) != getattr(Spec(), f.name)
    ]
    assert changed == [field]


def test_unknown_preset_names_the_choices():
    with pytest.raises(MnistlabError, match="unknown preset 'huge'.*lab, wide, deep, long"):
        preset("huge")
    assert set(PRESETS) >= {"lab", "wide", "deep", "long", "dropout"}


def test_round_trip_through_a_dict():
    spec = Spec(hidden=(256, 64), dropout=0.3, seed=7)
    assert Spec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["hidden"] == [256, 64]


def test_replace_returns_a_new_checked_spec():
    spec = Spec()
    assert spec.replace(epochs=2).epochs == 2
    assert spec.epochs == 5
    with pytest.raises(
        MnistlabError, match="epochs = 0 is out of range. epochs must be from 1 to 1,000"
    ):
        spec.replace(epochs=0)


def test_unknown_key_is_named():
    with pytest.raises(MnistlabError, match="unknown spec key 'hiden'"):
        Spec.from_dict({"hiden": [64]})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("epochs", "5", "spec key 'epochs' must be int, not '5'"),
        ("epochs", True, "spec key 'epochs' must be int, not True"),
        ("hidden", [128, "a"], "spec key 'hidden' must be a list of whole numbers"),
        ("dropout", "0.2", "spec key 'dropout' must be float"),
        ("optimizer", 3, "spec key 'optimizer' must be str"),
    ],
)
def test_wrong_types_are_refused_with_the_key(key, value, message):
    with pytest.raises(MnistlabError, match=message):
        Spec.from_dict({key: value})


def test_integers_are_fine_where_floats_are_asked():
    assert Spec.from_dict({"learning_rate": 1}).learning_rate == 1


@pytest.mark.parametrize(
    ("key", "value", "want"),
    [
        ("epochs", 0, "from 1 to 1,000"),
        ("epochs", 99999999999999999999, "from 1 to 1,000"),
        ("batch_size", 0, "from 1 to 60,000"),
        ("dropout", 1.0, r"a rate in \[0, 1\)"),
        ("dropout", -0.1, r"a rate in \[0, 1\)"),
        ("validation_split", -0.1, r"a fraction in \[0, 1\)"),
        ("validation_split", 1.0, r"a fraction in \[0, 1\)"),
        ("learning_rate", 0.0, "greater than 0"),
        ("learning_rate", float("nan"), "greater than 0, at most 10"),
        ("learning_rate", float("inf"), "greater than 0, at most 10"),
        ("seed", -1, "from 0 to 4,294,967,295"),
        ("seed", 2**32, "from 0 to 4,294,967,295"),
        ("hidden", (3_000_000_000,), "a network of at most 50,000,000 parameters"),
        ("hidden", (), "one or more layer sizes"),
        ("hidden", (128, 0), "one or more layer sizes"),
        ("optimizer", "adamax", "one of adam, adamw"),
        ("backend", "torch", "one of tensorflow, jax"),
        ("activation", "relu6", "one of relu"),
        ("schedule", "step", "one of constant, cosine"),
        ("shift", 9, "a number of pixels from 0 to 8"),
        ("rotate", 46.0, "a number of degrees from 0 to 45"),
        ("rotate", -1.0, "a number of degrees from 0 to 45"),
        ("elastic", 101.0, r"from 0 \(none\) to 100"),
        ("conv", (8, 8, 8, 8), "up to 3 filter counts"),
        ("conv", (0,), "up to 3 filter counts"),
    ],
)
def test_out_of_range_values_say_what_is_allowed(key, value, want):
    with pytest.raises(MnistlabError, match=f"{key} = .* is out of range. {key} must be {want}"):
        Spec.from_dict({key: value})
