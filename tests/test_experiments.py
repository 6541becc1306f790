"""Experiment files, sweeps that resume, the statistics, and the experiment CLI."""

import json
import math
import os
import re
import socket
import subprocess
import tempfile
import textwrap

import keras
import pytest
from click.testing import CliRunner

from mnistlab import cli, data, results, runs
from mnistlab import experiments as ex
from mnistlab.errors import MnistlabError
from mnistlab.reports import tables
from mnistlab.spec import Spec
from mnistlab.training import train

GOOD = """
    name = "tiny"
    dataset = "mnist"
    seeds = [1, 2]
    [base]
    epochs = 1
    hidden = [16]
    [[variants]]
    name = "base"
    [[variants]]
    name = "wide"
    hidden = [32]
"""


def write(tmp_path, text, name="exp.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_good_file(tmp_path):
    plan = ex.read(write(tmp_path, GOOD))
    assert plan.name == "tiny"
    assert plan.seeds == (1, 2)
    assert plan.baseline == "base"
    assert [v.name for v in plan.variants] == ["base", "wide"]
    assert plan.variants[0].spec == Spec(epochs=1, hidden=(16,))
    assert plan.variants[1].spec == Spec(epochs=1, hidden=(32,))
    assert [(v.name, s) for v, s in plan.plan()] == [
        ("base", 1),
        ("base", 2),
        ("wide", 1),
        ("wide", 2),
    ]


def test_the_shipped_files_are_valid_and_found_by_name():
    plans = {name: ex.find(name) for name in ex.names()}
    assert {"lab", "fashion", "best-mlp", "cnn", "best", "best-fashion"} <= set(plans)
    lab = plans["lab"]
    assert lab.variants[0].spec == Spec(backend="jax")
    assert {"wide-256", "deep-128-64", "epochs-10", "dropout-0.2"} <= {v.name for v in lab.variants}
    assert plans["fashion"].dataset == "fashion-mnist"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sedes = [1]\n" + GOOD, "unknown key 'sedes'"),
        (GOOD + "hiden = [3]\n", "variant 'wide': unknown spec key 'hiden'"),
        (GOOD + "epochs = 'ten'\n", "variant 'wide': spec key 'epochs' must be int"),
        (GOOD + "dropout = 1.5\n", "variant 'wide': dropout = 1.5 is out of range"),
        (GOOD + "seed = 3\n", "set seeds with the top-level key 'seeds'"),
        (GOOD + "[[variants]]\nname = 'wide'\n", "variant name 'wide' is used twice"),
        (GOOD + "[[variants]]\nepochs = 2\n", "variant 3 needs a name"),
        (GOOD + "[[variants]]\nname = 'a/b'\n", "variant name 'a/b': use letters"),
        ('baseline = "nope"\n' + GOOD, "baseline 'nope' is not one of the variants"),
        ('dataset = "cifar"\nseeds = [1]\n[[variants]]\nname = "a"\n', "dataset 'cifar' is not"),
        ("seeds = [1, 1]\n[[variants]]\nname = 'a'\n", "seeds must be a list of distinct"),
        ("seeds = []\n[[variants]]\nname = 'a'\n", "seeds must be a list of distinct"),
        ("seeds = [1]\n", "it needs at least one [[variants]] table"),
        ("seeds = [1\n", "not valid TOML"),
    ],
)
def test_bad_files_name_the_key(tmp_path, text, message):
    with pytest.raises(MnistlabError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ex.read(write(tmp_path, text))


def test_a_missing_file(tmp_path):
    with pytest.raises(MnistlabError, match="no experiment file at"):
        ex.read(tmp_path / "nope.toml")


def test_more_or_fewer_seeds(tmp_path):
    plan = ex.read(write(tmp_path, GOOD))
    assert plan.with_seeds(1).seeds == (1,)
    assert plan.with_seeds(4).seeds == (1, 2, 3, 4)
    with pytest.raises(MnistlabError, match="--seeds 0 is out of range"):
        plan.with_seeds(0)


# ---------------------------------------------------------------------------------------------
# Statistics on fixed numbers


def test_welch_t_test_on_fixed_numbers():
    # t = 0.005 / sqrt(2 * 0.002**2 / 3) = 3.062 with 4 degrees of freedom: p = 0.0376
    assert results.welch([0.975, 0.977, 0.979], [0.970, 0.972, 0.974]) == pytest.approx(
        0.03759, abs=1e-4
    )
    assert math.isnan(results.welch([0.97], [0.96, 0.97]))
    assert math.isnan(results.welch([0.97, 0.97], [0.96, 0.96]))


@pytest.mark.parametrize(
    ("difference", "p", "verdict"),
    [
        (0.004, 0.01, "better"),
        (-0.004, 0.01, "worse"),
        (0.004, 0.2, "no clear difference"),
        (0.004, math.nan, "too few runs to tell"),
    ],
)
def test_verdicts(difference, p, verdict):
    assert results.verdict(difference, p) == verdict


def meta(accuracy, seed, hidden=(128,), seconds=2.0, validation=None):
    return {
        "spec": Spec(hidden=hidden, seed=seed).to_dict(),
        "parameters": 1000,
        "metrics": {"accuracy": accuracy},
        "validation": {} if validation is None else {"accuracy": validation},
        "seconds": {"train": seconds},
    }


def test_rows_of_the_table():
    groups = {
        "base": [meta(0.970, 1), meta(0.972, 2), meta(0.974, 3)],
        "wide": [meta(0.975, 1, (256,), 4), meta(0.977, 2, (256,), 6), meta(0.979, 3, (256,), 5)],
    }
    base, wide = results.compare(groups, "base")
    assert base.mean == pytest.approx(0.972)
    assert base.std == pytest.approx(0.002)  # sample standard deviation
    assert (min(wide.accuracies), max(wide.accuracies)) == (0.975, 0.979)
    assert wide.seconds == pytest.approx(5.0)
    assert wide.difference == pytest.approx(0.005)
    assert wide.p_value == pytest.approx(0.03759, abs=1e-4)
    assert wide.verdict == "better"
    assert base.verdict == ""
    assert results.best([base, wide]).variant == "wide"
    table = results.Results("T", (base, wide), "base", "mnist", (1, 2, 3), 6, ("jax",), "here", 30)
    text = tables.markdown(table)
    assert (
        "| wide | 1,000 | 5 | n/a | 97.70% ± 0.20 | 97.50% | 97.90% | 3 | 5.0 "
        "| +0.50 pts | 0.038 | better |" in text
    )
    assert "Best: **wide**, 97.70% ± 0.20 over 3 seeds. Chosen on test accuracy: some" in text
    csv = tables.csv(table).splitlines()
    assert csv[0].startswith("variant,parameters,epochs,mean_accuracy,std_accuracy")
    assert csv[2].startswith(
        "wide,1000,5,0.977000,0.002000,0.975000,0.979000,3,5.00,0.005000,0.0375901,better"
    )


def test_the_best_is_chosen_on_validation_not_on_the_test_set():
    # "wide" scores higher on the test set, "deep" on the held-out validation images.
    groups = {
        "base": [meta(0.970, s, validation=0.968) for s in (1, 2)],
        "wide": [meta(0.979, s, (256,), validation=0.970) for s in (1, 2)],
        "deep": [meta(0.975, s, (128, 64), validation=0.974) for s in (1, 2)],
    }
    rows = tuple(results.compare(groups, "base"))
    table = results.Results("T", rows, "base", "mnist", (1, 2), 6, ("jax",), "here", 30)
    assert (table.best.variant, table.chosen_on) == ("deep", "validation")
    text = tables.markdown(table)
    assert "| deep | 1,000 | 5 | 97.40% | 97.50% ± 0.00 |" in text
    assert "Best: **deep**, 97.50% ± 0.00 over 2 seeds. Chosen on validation accuracy" in text
    again = results.Results.from_json(table.to_json())
    assert (again.best.variant, again.rows[2].validation) == ("deep", pytest.approx(0.974))
    # one run without held-out images: the test set is all there is, and the table says so
    groups["deep"][1] = meta(0.975, 2, (128, 64))
    rows = tuple(results.compare(groups, "base"))
    table = results.Results("T", rows, "base", "mnist", (1, 2), 6, ("jax",), "here", 30)
    assert (table.best.variant, table.chosen_on) == ("wide", "test")


def test_run_folders_keep_the_last_epochs_validation():
    assert runs.validation({"val_accuracy": [0.9, 0.95], "val_loss": [0.3, 0.2]}) == {
        "loss": 0.2,
        "accuracy": 0.95,
    }
    assert runs.validation({"accuracy": [0.9]}) == {}


# ---------------------------------------------------------------------------------------------
# Sweeps


class Trainer:
    """Train and save, counting calls; fails for the variants named in `broken`."""

    def __init__(self, broken=()):
        self.calls = []
        self.broken = set(broken)

    def __call__(self, spec, data, folder):
        self.calls.append((folder.parent.name, spec.seed))
        if folder.parent.name in self.broken:
            raise RuntimeError("out of memory")
        run = train(spec, data)
        run.save(folder)
        return run.metrics


def test_a_tiny_grid_on_synthetic_data(tmp_path, tiny):
    plan = ex.read(write(tmp_path, GOOD))
    out = tmp_path / "sweep"
    events = ex.sweep(plan, out, ex.local(tiny, Trainer()))
    assert [e.status for e in events] == ["done"] * 4
    for variant, seed in (("base", 1), ("base", 2), ("wide", 1), ("wide", 2)):
        meta_ = runs.read_meta(out / "runs" / variant / f"seed-{seed}")
        assert meta_["spec"]["seed"] == seed
    rows = ex.results_of(plan, out).rows
    assert [r.variant for r in rows] == ["base", "wide"]
    assert [r.parameters for r in rows] == [784 * 16 + 16 + 170, 784 * 32 + 32 + 330]
    assert all(len(r.accuracies) == 2 for r in rows)


def test_an_interrupted_sweep_resumes_without_redoing_finished_runs(tmp_path, tiny):
    plan = ex.read(write(tmp_path, GOOD))
    out = tmp_path / "sweep"
    first = Trainer()

    def stop_after_two(event):
        if event.index == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ex.sweep(plan, out, ex.local(tiny, first), stop_after_two)
    assert first.calls == [("base", 1), ("base", 2)]
    # A process killed while saving leaves its temporary folder: it is cleared and redone.
    stale = out / "runs" / "wide" / ".seed-1.abc.tmp"
    stale.mkdir(parents=True)

    second = Trainer()
    events = ex.sweep(plan, out, ex.local(tiny, second))
    assert [e.status for e in events] == ["skipped", "skipped", "done", "done"]
    assert second.calls == [("wide", 1), ("wide", 2)]
    assert not stale.exists()
    assert (
        events[0].accuracy
        == runs.read_meta(out / "runs" / "base" / "seed-1")["metrics"]["accuracy"]
    )


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path, tiny):
    plan = ex.read(write(tmp_path, GOOD))
    out = tmp_path / "sweep"
    events = ex.sweep(plan, out, ex.local(tiny, Trainer(broken={"base"})))
    assert [e.status for e in events] == ["failed", "failed", "done", "done"]
    record = json.loads((out / "failed" / "base-seed-1.json").read_text())
    assert record["error"] == "RuntimeError: out of memory"
    assert "Traceback" in record["traceback"]

    events = ex.sweep(plan, out, ex.local(tiny, Trainer()))
    assert [e.status for e in events] == ["done", "done", "skipped", "skipped"]
    assert not (out / "failed" / "base-seed-1.json").exists()


def test_a_changed_file_does_not_mix_with_old_runs(tmp_path, tiny):
    out = tmp_path / "sweep"
    ex.sweep(ex.read(write(tmp_path, GOOD)).with_seeds(1), out, ex.local(tiny, Trainer()))
    changed = ex.read(write(tmp_path, GOOD.replace("hidden = [32]", "hidden = [64]")))
    with pytest.raises(MnistlabError, match="was made with another spec"):
        ex.sweep(changed.with_seeds(1), out, ex.local(tiny, Trainer()))


def test_a_packed_run_folder_is_written_back_whole_or_not_at_all(tmp_path):
    """How the Ray engine's workers send a run folder to the driver."""
    made = tmp_path / "made"
    made.mkdir()
    (made / "run.json").write_text("{}")
    (made / "model.keras").write_bytes(bytes(range(256)))
    files = runs.pack(made)

    back = runs.unpack(files, tmp_path / "sweep" / "runs" / "base" / "seed-1")
    assert {p.name: p.read_bytes() for p in back.iterdir()} == files
    with pytest.raises(MnistlabError, match="already exists and is not empty"):
        runs.unpack(files, back)
    with pytest.raises(ValueError, match="a packed run folder holds a file named '../x'"):
        runs.unpack({**files, "../x": b""}, tmp_path / "other")
    with pytest.raises(ValueError, match="has no run.json"):
        runs.unpack({"model.keras": b""}, tmp_path / "other")
    assert not (tmp_path / "other").exists()
    assert sorted(p.name for p in (tmp_path / "sweep" / "runs" / "base").iterdir()) == ["seed-1"]
    assert not list(tmp_path.glob(".other*"))  # no temporary folder left


def test_a_ray_task_removes_what_killed_workers_left_in_the_temporary_folder(tmp_path, monkeypatch):
    """A worker killed while saving a run leaves its folder; the next task on the machine
    removes it, and leaves those of the workers still alive."""
    from mnistlab.experiments import ray_engine

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    child = subprocess.Popen(["true"])
    child.wait()  # a process id that no process has now
    dead = tmp_path / f"mnistlab-run-{child.pid}-abc"
    living = tmp_path / f"mnistlab-run-{os.getpid()}-abc"
    other = tmp_path / "mnistlab-run-abc"  # not named as mnistlab names them: not ours
    for folder in (dead, living, other):
        (folder / "run").mkdir(parents=True)
    ray_engine.clear_stale_temp()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([living.name, other.name])


# ---------------------------------------------------------------------------------------------
# The command line


@pytest.fixture
def fake_data(monkeypatch, tiny):
    monkeypatch.setattr(data, "load", lambda name, **options: tiny)


def test_dry_run_lists_the_runs_and_trains_nothing(tmp_path):
    out = tmp_path / "sweep"
    result = CliRunner().invoke(
        cli.cli,
        ["experiment", str(write(tmp_path, GOOD)), "--out", str(out), "--dry-run", "--seeds", "3"],
    )
    assert result.exit_code == 0, result.output
    assert "2 variants x 3 seeds [1, 2, 3] on mnist = 6 runs" in result.output
    assert result.output.count(" seed ") == 6
    assert "Rough estimate for what is left:" in result.output
    assert not out.exists()


def test_experiment_and_compare_from_the_command_line(tmp_path, fake_data):
    out = tmp_path / "sweep"
    result = CliRunner().invoke(
        cli.cli, ["experiment", str(write(tmp_path, GOOD)), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "[1/4] base seed 1: " in result.stderr  # progress is status
    assert "[4/4] wide seed 2: " in result.stderr
    assert result.stdout.splitlines()[:2] == ["", "# Experiment tiny"]  # the results alone
    assert "Best: **" in result.stdout
    for name in ("results.md", "results.csv", "results.json", "accuracy.png"):
        assert (out / name).stat().st_size > 0
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == [1, 2]
    assert [r["variant"] for r in results["rows"]] == ["base", "wide"]
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    meta = runs.read_meta(out / "runs" / "wide" / "seed-2")
    assert meta["trained_on"] == {"engine": "local", "hostname": socket.gethostname()}
    assert runs.load(out / "runs" / "wide" / "seed-2").meta["trained_on"] == meta["trained_on"]

    again = CliRunner().invoke(
        cli.cli, ["experiment", str(write(tmp_path, GOOD)), "--out", str(out)]
    )
    assert again.output.count("(finished earlier, kept)") == 4

    folders = [str(p) for p in sorted((out / "runs").glob("*/seed-*"))]
    result = CliRunner().invoke(cli.cli, ["compare", *folders])
    assert result.exit_code == 0, result.output
    assert "| hidden=16 epochs=1 |" in result.output
    assert "| hidden=32 epochs=1 |" in result.output


def test_long_runs_show_each_epoch(tmp_path, fake_data, monkeypatch):
    text = GOOD.replace("epochs = 1", "epochs = 2")
    out = tmp_path / "sweep"
    monkeypatch.setattr(ex, "LONG_RUN_SECONDS", 0)  # every run counts as long
    result = CliRunner().invoke(
        cli.cli, ["experiment", str(write(tmp_path, text)), "--out", str(out), "--seeds", "1"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    first = lines.index(next(line for line in lines if line.startswith("[1/2]")))
    assert re.fullmatch(r"  base seed 1: epoch 1/2, validation \d+\.\d\d%, \d+ s", lines[first - 2])
    assert lines[first - 1].startswith("  base seed 1: epoch 2/2, validation ")

    monkeypatch.setattr(ex, "LONG_RUN_SECONDS", 10**9)  # and none does
    result = CliRunner().invoke(
        cli.cli,
        [
            "experiment",
            str(write(tmp_path, text)),
            "--out",
            str(tmp_path / "other"),
            "--seeds",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "epoch 1/2" not in result.output


def test_mixed_backends_are_refused(tmp_path):
    other = "tensorflow" if keras.backend.backend() == "jax" else "jax"
    text = GOOD + f'backend = "{other}"\n'
    result = CliRunner().invoke(cli.cli, ["experiment", str(write(tmp_path, text))])
    assert result.exit_code == 2
    assert "use several backends (jax, tensorflow)" in result.output


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--address", "127.0.0.1:6379"], "--address is an option of the Ray engine"),
        (["--retries", "2"], "--retries is an option of the Ray engine"),
        (["--engine", "ray", "--cpus-per-run", "0"], "Invalid value for '--cpus-per-run': 0.0"),
        (["--engine", "ray", "--retries", "-1"], "Invalid value for '--retries': -1"),
    ],
)
def test_engine_options_are_checked(tmp_path, options, message):
    result = CliRunner().invoke(cli.cli, ["experiment", str(write(tmp_path, GOOD)), *options])
    assert result.exit_code == 2
    assert f"error: {message}" in result.output


@pytest.mark.parametrize("name", ["cnn", "best", "handwriting"])
def test_the_preset_files_are_their_presets(name):
    from mnistlab.spec import preset

    plan = ex.find(name)
    assert plan.variants[0].spec == preset(name)


def test_the_speed_file_holds_the_presets_bench_trains_for_each_target():
    from mnistlab.bench import TARGETS
    from mnistlab.spec import preset

    variants = {v.name: v.spec for v in ex.find("speed").variants}
    chosen = {name for name, _ in TARGETS.values()}
    assert set(variants) == chosen
    assert all(spec == preset(name) for name, spec in variants.items())


@pytest.mark.parametrize("name", ["../../../elsewhere", "/tmp/abs", "", ".hidden", "a/b"])
def test_an_experiment_name_is_one_plain_folder_name(tmp_path, name):
    text = GOOD.replace('name = "tiny"', f"name = {name!r}")
    assert text != GOOD
    with pytest.raises(MnistlabError, match=f"name {re.escape(repr(name))}: use letters"):
        ex.read(write(tmp_path, text))


def test_a_dataset_that_is_not_a_name_is_refused(tmp_path):
    text = GOOD.replace('dataset = "mnist"', 'dataset = ["mnist"]')
    with pytest.raises(MnistlabError, match=r"dataset \['mnist'\] is not one of"):
        ex.read(write(tmp_path, text))


def test_a_second_sweep_on_the_same_folder_is_refused(tmp_path, tiny):
    plan = ex.read(write(tmp_path, GOOD)).with_seeds(1)
    out = tmp_path / "sweep"
    second = []

    def start_another(event):
        with pytest.raises(MnistlabError, match="another mnistlab process is running a sweep"):
            ex.sweep(plan, out, ex.local(tiny, Trainer()))
        second.append(event)

    ex.sweep(plan, out, ex.local(tiny, Trainer()), start_another)
    assert len(second) == 2  # tried after each run; the first sweep went on


def test_a_run_folder_without_its_model_is_made_again_and_kept_aside(tmp_path, tiny):
    plan = ex.read(write(tmp_path, GOOD)).with_seeds(1)
    out = tmp_path / "sweep"
    ex.sweep(plan, out, ex.local(tiny, Trainer()))
    (out / "runs" / "base" / "seed-1" / "model.keras").unlink()
    again = Trainer()
    events = ex.sweep(plan, out, ex.local(tiny, again))
    assert [e.status for e in events] == ["done", "skipped"]
    assert again.calls == [("base", 1)]
    [aside] = (out / "runs" / "base").glob("damaged-seed-1-*")
    assert (aside / "run.json").is_file()


def test_failure_records_of_runs_finished_since_are_cleared(tmp_path, tiny):
    plan = ex.read(write(tmp_path, GOOD)).with_seeds(1)
    out = tmp_path / "sweep"
    ex.sweep(plan, out, ex.local(tiny, Trainer()))
    stale = out / "failed" / "base-seed-1.json"
    stale.parent.mkdir()
    stale.write_text("{}")  # left by an earlier sweep of the same runs
    events = ex.sweep(plan, out, ex.local(tiny, Trainer()))
    assert [e.status for e in events] == ["skipped", "skipped"]
    assert not stale.exists()
