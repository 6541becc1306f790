"""Test-time shifts (`spec.test_shifts`): a run answers with the mean of its network's
probabilities for each image and its 8 copies moved by a few pixels, in evaluation,
validation and prediction alike."""

import numpy as np
import pytest
from click.testing import CliRunner

from mnistlab import cli, runs
from mnistlab.errors import MnistlabError
from mnistlab.prediction import classify, views
from mnistlab.spec import Spec
from mnistlab.training import train


def test_views_are_the_image_then_its_eight_moves():
    image = np.zeros((1, 5, 5), np.float32)
    image[0, 2, 2] = 1
    seen = views(image, 2)
    assert seen.shape == (9, 5, 5)
    assert seen[0, 2, 2] == 1 and seen[0].sum() == 1
    places = {tuple(int(i) for i in np.argwhere(v)[0]) for v in seen}
    assert places == {(r, c) for r in (0, 2, 4) for c in (0, 2, 4)}  # every move, none lost


def test_a_shifted_answer_is_the_mean_over_the_views(tiny):
    run = train(Spec(epochs=1, hidden=(16,)), tiny)
    pixels = tiny.test[0][:7] / 255.0
    by_view = [classify(run.model, views(pixels, 1)[i::9]) for i in range(9)]
    np.testing.assert_allclose(classify(run.model, pixels, 1), np.mean(by_view, axis=0), atol=1e-6)
    np.testing.assert_allclose(classify(run.model, pixels, 0), by_view[0], atol=1e-6)
    assert not np.allclose(by_view[0], by_view[1])  # the moves change what the network sees


@pytest.mark.parametrize("shifts", [-1, 3])
def test_out_of_range_shifts_are_refused(shifts):
    with pytest.raises(MnistlabError, match=f"test_shifts = {shifts} is out of range"):
        Spec(test_shifts=shifts)


def test_a_run_with_shifts_is_evaluated_validated_and_answers_with_them(tiny, tmp_path):
    spec = Spec(epochs=2, hidden=(16,), test_shifts=1)
    run = train(spec, tiny)
    x_train, y_train = tiny.train
    held = x_train[320:] / 255.0  # the last 20% of 400
    shifted = classify(run.model, held, 1)
    assert run.validation["accuracy"] == pytest.approx(np.mean(shifted.argmax(1) == y_train[320:]))
    assert run.validation != runs.validation(run.history)  # not the last epoch's
    x_test, y_test = tiny.test
    answers = classify(run.model, x_test / 255.0, 1)
    assert run.accuracy == pytest.approx(np.mean(answers.argmax(1) == y_test))
    np.testing.assert_allclose(run.predict(x_test), answers, atol=1e-6)

    run.save(tmp_path / "run")
    again = runs.load(tmp_path / "run")
    assert again.validation == run.validation and again.spec.test_shifts == 1
    np.testing.assert_allclose(again.predict(x_test[:3]), answers[:3], atol=1e-6)
    assert again.evaluate(tiny)["accuracy"] == run.accuracy


def test_the_command_line_takes_test_shifts(tmp_path):
    result = CliRunner().invoke(
        cli.cli, ["train", "--test-shifts", "5", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2 and "test_shifts = 5 is out of range" in result.output
