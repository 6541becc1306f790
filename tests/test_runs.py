"""Run folders are checked once, when loaded: a damaged or foreign one is one clear error, on
the command line too, never a traceback."""

import json
import os
import shutil
from pathlib import Path

import keras
import pytest
from click.testing import CliRunner

from mnistlab import cli, files, runs
from mnistlab.errors import MnistlabError


@pytest.fixture
def run_dir(tiny_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    return copy


def edit_meta(run_dir, change):
    meta = json.loads((run_dir / "run.json").read_text())
    change(meta)
    (run_dir / "run.json").write_text(json.dumps(meta))


def refused(run_dir, message):
    with pytest.raises(MnistlabError, match=message) as caught:
        runs.load(run_dir)
    result = CliRunner().invoke(cli.cli, ["predict", str(run_dir), "--index", "0"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and "Traceback" not in result.output
    return caught.value


def test_a_good_run_loads(run_dir):
    run = runs.load(run_dir)
    assert run.dataset == "mnist" and len(run.class_names) == 10


def test_a_model_file_with_bad_crcs(run_dir):
    raw = bytearray((run_dir / "model.keras").read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 64] = bytes(64)  # zeroes inside a member: its CRC no longer holds
    (run_dir / "model.keras").write_bytes(bytes(raw))
    error = refused(run_dir, "model.keras cannot be loaded")
    assert error.fix == "train it again"


@pytest.mark.parametrize("key", ["class_names", "dataset", "metrics", "spec"])
def test_run_json_missing_a_key(run_dir, key):
    edit_meta(run_dir, lambda meta: meta.pop(key))
    refused(run_dir, f"run.json has no '{key}'")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("class_names", "0123456789", "'class_names' is not a list"),
        ("metrics", [0.9], "'metrics' is not a dict"),
        ("dataset", "cifar", "unknown data set 'cifar'"),
        ("class_names", [1, 2], "class names are not a list of names"),
        ("spec", {"epochs": "five"}, "its spec: spec key 'epochs' must be int"),
        ("validation", {"accuracy": "high"}, "'validation' is not an object of numbers"),
        ("validation", [0.9], "'validation' is not an object of numbers"),
    ],
)
def test_run_json_with_wrong_types(run_dir, key, value, message):
    edit_meta(run_dir, lambda meta: meta.update({key: value}))
    refused(run_dir, message)


def save_model(run_dir, inputs, outputs):
    model = keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(outputs)])
    model.save(run_dir / "model.keras")


def test_a_model_that_does_not_take_mnist_images(run_dir):
    save_model(run_dir, 100, 10)
    refused(run_dir, r"takes input of shape \(100,\), not 784 pixels")


def test_a_model_with_other_outputs_than_class_names(run_dir):
    save_model(run_dir, 784, 3)
    refused(run_dir, "answers 3 classes but run.json names 10")


def test_compare_names_the_damaged_run(run_dir, tiny_run):
    edit_meta(run_dir, lambda meta: meta.pop("spec"))
    result = CliRunner().invoke(cli.cli, ["compare", str(tiny_run), str(run_dir)])
    assert result.exit_code == 2
    assert f"error: {run_dir} holds a damaged run: run.json has no 'spec'" in result.output


@pytest.mark.parametrize("name", ["run.json", "history.json"])
def test_a_pipe_in_place_of_a_runs_files_is_refused_not_waited_on(run_dir, tiny_run, name):
    (run_dir / name).unlink()
    os.mkfifo(run_dir / name)  # reading it would wait for a writer forever
    result = CliRunner().invoke(cli.cli, ["compare", str(tiny_run), str(run_dir)])
    if name == "history.json":  # not needed for the table: passed over, not waited on
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2, result.output
    assert f"cannot read {run_dir / name}: it is a pipe" in result.output


@pytest.mark.parametrize("where", ["under-a-file", "read-only"])
def test_an_output_that_cannot_be_written_is_refused_before_training(tmp_path, where, monkeypatch):
    if where == "under-a-file":
        (tmp_path / "F").write_text("mine")
        out = tmp_path / "F" / "run"
        why = "is a file, not a folder"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        out = locked / "deeper" / "run"
        why = "is not writable"
        # root may write into a read-only folder (not onto a read-only file system): answer as
        # the kernel answers other users, so the test means the same whoever runs it
        real_access = os.access
        monkeypatch.setattr(
            files.os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode)
        )
    result = CliRunner().invoke(cli.cli, ["train", "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: cannot write {out}:") and why in result.output
    assert "Training on" not in result.output
