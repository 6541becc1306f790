"""The search: space files and their errors, choosing on validation alone, the files a search
writes, resuming, two worker processes on one study, a killed search resumed, a study shared
through a real PostgreSQL server, and `mnistlab tune` and `train --spec` through Click's runner.

The searches train on the 400 synthetic images of `tiny`, one small network a trial, a few
seconds each (most of them JAX compiling the new model)."""

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.exc import IntegrityError

from mnistlab import cli, data
from mnistlab.errors import MnistlabError
from mnistlab.spec import Spec
from mnistlab.tuning import outcome, report, search, space, tune
from mnistlab.tuning.search import TrialEvent

TESTS = Path(__file__).resolve().parent
# Two numbers searched, one epoch: the trials differ, and each is quick
TINY_SPACE = """
    [fixed]
    epochs = 1
    [search]
    units = { low = 8, high = 32, log = true }
    learning_rate = { low = 1e-3, high = 1e-2, log = true }
"""


def parse(text: str, name: str = "tiny-space.toml") -> space.Space:
    return space.parse(textwrap.dedent(text), Path(name))


def study_of(url: str, name: str = "tiny-space"):
    import optuna

    return optuna.load_study(study_name=name, storage=url)


def ended(study) -> list:
    return [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]


def test_tune_is_in_the_public_api():
    import mnistlab as ml

    assert ml.tune is tune and "tune" in dir(ml)


# Space files


def test_the_shipped_spaces_are_found_by_name():
    assert space.names() == ["cnn-space", "lab-space"]
    lab = space.find("lab-space")
    assert [p.name for p in lab.params] == [
        "units",
        "layers",
        "dropout",
        "epochs",
        "learning_rate",
        "batch_size",
        "schedule",
    ]
    assert dict(lab.fixed) == {"backend": "jax"}
    # The lab's dense networks: no convolution and no augmentation, at any corner of the space
    for values in (
        {p.name: p.values()[0] for p in lab.params},
        {p.name: p.values()[-1] for p in lab.params},
    ):
        spec = lab.spec(values)
        assert (spec.conv, spec.shift, spec.rotate, spec.elastic, spec.flip) == ((), 0, 0, 0, False)
        assert spec.seed == space.SEARCH_SEED and spec.validation_split == 0.2
    largest = lab.spec({p.name: p.values()[-1] for p in lab.params})
    assert largest.hidden == (1024, 1024, 1024)
    cnn = space.find("cnn-space")
    assert cnn.spec({"filters": 16, "convs": 3}).conv == (16, 32, 64)


def test_units_and_layers_make_hidden_and_a_range_gives_its_ends():
    tiny = parse(
        """
        [fixed]
        layers = 2
        [search]
        units = { low = 16, high = 64, step = 16 }
        dropout = { choices = [0, 0.5] }
        """
    )
    assert tiny.spec({"units": 48, "dropout": 0.5}).hidden == (48, 48)
    units, dropout = tiny.params
    assert units.values() == [16, 64] and units.describe() == "16 to 64, step 16"
    assert dropout.values() == [0.0, 0.5] and dropout.kind is float
    assert tiny.final(tiny.spec({"units": 16, "dropout": 0.0}), 3).validation_split == 0.0
    assert tiny.final(Spec(), 3).seed == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 1\n[search]\nunits = {low=1, high=2}", "unknown key 'colour'"),
        ("[fixed]\nepochs = 1", "it needs a [search] table"),
        ("[search]\nunit = {low=1, high=2}", "search.unit cannot be searched: unknown"),
        ("[search]\nseed = {low=1, high=2}", "search.seed cannot be searched: the search's own"),
        ("[search]\nhidden = {choices=[1]}", "search.hidden cannot be searched: search units"),
        (
            "[search]\nvalidation_split = {low=0.1, high=0.3}",
            "search.validation_split cannot be searched: what the score is measured on",
        ),
        ("[search]\nunits = 64", "search.units must be a table: { low = A, high = B }"),
        ("[search]\nunits = {low=64.5, high=128}", "search.units.low must be a whole number"),
        ("[search]\ndropout = {low='a', high=0.5}", "search.dropout.low must be a number"),
        ("[search]\nunits = {low=128, high=64}", "search.units: the range from 128 to 64 is empty"),
        ("[search]\nunits = {low=64, high=64}", "the range holds only 64: put it in [fixed]"),
        ("[search]\nunits = {low=0, high=64, log=true}", "a log scale needs low above 0, not 0"),
        ("[search]\nunits = {low=1, high=64, log=1}", "search.units.log must be true or false"),
        ("[search]\nunits = {low=1, high=64, scale=2}", "search.units: unknown key 'scale'"),
        ("[search]\nunits = {low=1}", "search.units needs both low and high"),
        ("[search]\nunits = {choices=[]}", "search.units.choices must be a list of one or more"),
        (
            "[search]\nbatch_size = {choices=[32, 'big']}",
            "search.batch_size.choices: spec key 'batch_size' must be int, not 'big'",
        ),
        ("[search]\nunits = {choices=[8, 8]}", "search.units.choices has a value twice"),
        ("[search]\nunits = {choices=[8], low=1}", "choices go alone, without 'low'"),
        ("[search]\noptimizer = {low=1, high=2}", "search.optimizer is not a number"),
        (
            "[search]\ndropout = {low=0.0, high=1.0}",
            "search.dropout = 1.0: dropout = 1.0 is out of range",
        ),
        (
            "[search]\nunits = {low=1000, high=50000}\nlayers = {low=1, high=3}",
            "the highest values of [search] together: hidden = (50000, 50000, 50000) is out",
        ),
        ("[fixed]\nseed = 3\n[search]\nunits = {low=1, high=2}", "fixed.seed: the trials use"),
        ("[fixed]\ncolour = 3\n[search]\nunits = {low=1, high=2}", "fixed: unknown key 'colour'"),
        ("[fixed]\nepochs = 0\n[search]\nunits = {low=1, high=2}", "[fixed]: epochs = 0 is out"),
        (
            "[fixed]\nvalidation_split = 0\n[search]\nunits = {low=1, high=2}",
            "fixed.validation_split must be above 0: the search scores on validation",
        ),
        (
            "[fixed]\nhidden = [64]\n[search]\nunits = {low=1, high=2}",
            "'units' makes 'hidden', which [fixed] sets too",
        ),
        (
            "[fixed]\nunits = 8\n[search]\nunits = {low=1, high=2}",
            "'units' is both fixed and searched",
        ),
        ("dataset = 'cifar'\n[search]\nunits = {low=1, high=2}", "dataset 'cifar' is not one"),
        ("refit = 'yes'\n[search]\nunits = {low=1, high=2}", "refit must be true or false"),
        ("[search\n", "not valid TOML"),
    ],
)
def test_a_bad_space_is_refused_with_the_key_named(text, message):
    with pytest.raises(MnistlabError, match="^bad-space.toml: ") as caught:
        space.parse(text, Path("bad-space.toml"))
    assert message in str(caught.value)


def test_an_unknown_space_names_the_shipped_ones(tmp_path):
    with pytest.raises(MnistlabError, match="no shipped search space named 'nope'.*lab-space"):
        space.find("nope")
    with pytest.raises(MnistlabError, match="no search space file at"):
        space.find(tmp_path / "missing.toml")
    file = tmp_path / "mine.toml"
    file.write_text(textwrap.dedent(TINY_SPACE))
    assert space.find(file).name == "mine"


# Spec files


def test_a_spec_file_round_trips_and_refuses_unknown_keys(tmp_path):
    spec = Spec(hidden=(512, 512), dropout=0.25, learning_rate=3e-4, backend="jax", seed=2)
    (tmp_path / "best.toml").write_text("# a comment\n" + spec.to_toml())
    assert Spec.from_file(tmp_path / "best.toml") == spec
    assert "backend" not in Spec().to_toml()  # None: whichever Keras runs
    (tmp_path / "bad.toml").write_text("hiden = [64]\n")
    with pytest.raises(MnistlabError, match="bad.toml: unknown spec key 'hiden'"):
        Spec.from_file(tmp_path / "bad.toml")
    (tmp_path / "typed.toml").write_text("epochs = 'ten'\n")
    with pytest.raises(MnistlabError, match="typed.toml: spec key 'epochs' must be int"):
        Spec.from_file(tmp_path / "typed.toml")
    with pytest.raises(MnistlabError, match="no spec file at"):
        Spec.from_file(tmp_path / "none.toml")


# What a search reports, from trials made by hand


def made_trials() -> outcome.Tuned:
    def trial(number, state, validation, test=math.nan):
        return TrialEvent(number, state, validation, test, 3, 10.0, {"units": 8 * (number + 1)})

    trials = (
        trial(0, "finished", 0.970, 0.965),
        trial(1, "finished", 0.980, 0.975),  # the best on validation
        trial(2, "finished", 0.975, 0.985),  # the best on test: a peek would choose it
        trial(3, "pruned", 0.50),
        TrialEvent(4, "failed", math.nan, math.nan, 0, 1.0, {"units": 8}, error="Boom: no"),
    )
    return outcome.Tuned(
        space="tiny-space",
        dataset="mnist",
        storage="sqlite:///x.db",
        trials=trials,
        chosen=1,
        spec=Spec(hidden=(16,), seed=1, validation_split=0.0),
        refit=True,
        seeds=(1, 2, 3),
        accuracies=(0.970, 0.972, 0.974),
        search_seconds=600,
        final_seconds=60,
        workers=2,
    )


def test_the_report_says_what_the_test_set_would_have_claimed():
    tuned = made_trials()
    assert tuned.test_choice.number == 2
    assert tuned.optimism == pytest.approx(0.010)
    assert (tuned.count("finished"), tuned.count("pruned"), tuned.count("failed")) == (3, 1, 1)
    assert tuned.final_mean == pytest.approx(0.972) and tuned.final_std == pytest.approx(0.002)
    text = report.markdown(tuned)
    assert "3 trials finished, 1 pruned, 1 failed" in text
    assert "Chosen on validation: trial 1, 98.00% validation accuracy (units=16)" in text
    assert "on seeds 1, 2, 3: 97.20% ± 0.20 test accuracy" in text
    assert "Had the test set chosen: trial 2 claimed 98.50%; trial 1's own run scored 97.50%" in (
        text
    )
    assert "+1.00 pts of optimism" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| 1", "| 2", "| 0", "| 3", "| 4"]
    assert "| 1 | finished, chosen | 98.00% | 97.50% |" in text
    assert "| 2 | finished, best on test | 97.50% | 98.50% |" in text
    assert "| 3 | pruned | 50.00% (when pruned) |" in text
    assert "failed: Boom: no" in text
    values = tuned.to_json()
    assert values["test_choice"] == {
        "trial": 2,
        "test_accuracy": 0.985,
        "optimism": pytest.approx(0.010),
    }
    assert values["all_trials"][4]["validation_accuracy"] is None
    json.dumps(values)  # no nan: strict JSON
    assert "# Train it: mnistlab train --spec best-spec.toml" in report.spec_file(tuned)


def test_the_plots_are_drawn_or_left_out_with_the_reason(tmp_path, monkeypatch):
    import optuna
    from optuna.distributions import IntDistribution

    study = optuna.create_study(direction="maximize")
    for units, curve in ((8, [0.90, 0.95]), (16, [0.92, 0.97]), (32, [0.91, 0.96])):
        study.add_trial(
            optuna.trial.create_trial(
                params={"units": units},
                distributions={"units": IntDistribution(8, 32)},
                value=curve[-1],
                intermediate_values=dict(enumerate(curve)),
            )
        )
    assert report.figures(study, tmp_path) == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(report.FIGURES)

    def without_scikit_learn(study):
        raise ImportError("fANOVA needs scikit-learn")

    monkeypatch.setattr(
        optuna.visualization.matplotlib, "plot_param_importances", without_scikit_learn
    )
    skipped = report.figures(study, tmp_path / "again")
    assert skipped == {"importances.png": "ImportError: fANOVA needs scikit-learn"}
    assert not (tmp_path / "again" / "importances.png").exists()
    assert (tmp_path / "again" / "history.png").stat().st_size > 0


def test_storage_urls():
    out = Path("/tmp/somewhere")
    assert search.storage_url(None, out) == "sqlite:////tmp/somewhere/study.db"
    assert search.storage_url("postgresql://u:pw@h/db", out) == "postgresql+psycopg://u:pw@h/db"
    assert search.shown("postgresql+psycopg://u:secret@h:5432/db") == (
        "postgresql+psycopg://u:***@h:5432/db"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "the search has no budget"),
        ({"trials": -1}, "trials -1 is out of range"),
        ({"minutes": -1.0}, "minutes -1.0 is out of range"),
        ({"trials": 1, "workers": 0}, "workers 0 is out of range"),
        ({"trials": 1, "seeds": 0}, "seeds 0 is out of range"),
    ],
)
def test_a_budget_that_cannot_work_is_refused_before_any_work(tmp_path, tiny, options, message):
    with pytest.raises(MnistlabError, match=message):
        tune(parse(TINY_SPACE), out=tmp_path, data=tiny, **options)
    assert not (tmp_path / "study.db").exists()


# Searches on the synthetic data


def test_a_search_chooses_on_validation_writes_its_files_and_resumes(tmp_path, tiny):
    events = []
    tuned = tune(
        parse(TINY_SPACE), trials=3, seeds=2, out=tmp_path, data=tiny, progress=events.append
    )
    study = study_of(f"sqlite:///{tmp_path / 'study.db'}")
    finished = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(ended(study)) == 3 and sorted(e.number for e in events) == [0, 1, 2]
    # Chosen on validation accuracy, its test accuracy recorded beside and never used
    best = max(finished, key=lambda t: (t.value, -t.number))
    assert tuned.chosen == best.number  # the earliest of a tie: all 100% is common here
    assert best.value == study.best_trial.value
    assert all(0 <= t.user_attrs["test_accuracy"] <= 1 for t in finished)
    assert all(t.user_attrs["spec"]["seed"] == 0 for t in finished)
    assert tuned.best.validation == best.value
    assert tuned.test_choice.test == max(t.user_attrs["test_accuracy"] for t in finished)
    # The final runs: the chosen spec on the whole training set, seeds 1 and 2, tested once
    assert tuned.seeds == (1, 2) and len(tuned.accuracies) == 2
    trial_spec = Spec.from_dict(best.user_attrs["spec"])
    assert tuned.spec == trial_spec.replace(seed=1, validation_split=0.0)
    final = tmp_path / "final" / f"trial-{best.number}" / "runs" / "chosen"
    assert sorted(p.name for p in final.iterdir()) == ["seed-1", "seed-2"]
    for name in ("results.md", "results.json", "best-spec.toml", *report.FIGURES):
        assert (tmp_path / name).stat().st_size > 0, name
    assert tuned.left_out == {}
    assert Spec.from_file(tmp_path / "best-spec.toml") == tuned.spec
    values = json.loads((tmp_path / "results.json").read_text())
    assert values["chosen"]["trial"] == best.number
    assert values["final"]["test_accuracies"] == list(tuned.accuracies)
    assert f"Chosen on validation: trial {best.number}" in (tmp_path / "results.md").read_text()

    # The same call again: no trial run again, the final runs kept
    started = {t.number: t.datetime_start for t in study.trials}
    again = tune(parse(TINY_SPACE), trials=3, seeds=2, out=tmp_path, data=tiny)
    assert {
        t.number: t.datetime_start for t in study_of(f"sqlite:///{tmp_path / 'study.db'}").trials
    } == started
    assert again.accuracies == tuned.accuracies and again.chosen == tuned.chosen
    # One more trial: exactly one is run
    tune(parse(TINY_SPACE), trials=4, seeds=2, out=tmp_path, data=tiny)
    assert len(ended(study_of(f"sqlite:///{tmp_path / 'study.db'}"))) == 4
    # A changed space is refused rather than mixed in
    changed = TINY_SPACE.replace("high = 32", "high = 64")
    with pytest.raises(MnistlabError, match="was made with another search space"):
        tune(parse(changed), trials=5, out=tmp_path, data=tiny)


def test_two_worker_processes_share_one_study(tmp_path, tiny):
    events = []
    tuned = tune(
        parse(TINY_SPACE),
        trials=4,
        workers=2,
        seeds=1,
        out=tmp_path,
        data=tiny,
        progress=events.append,
    )
    study = study_of(f"sqlite:///{tmp_path / 'study.db'}")
    trials = ended(study)
    # Trials running when the fourth ends are finished too: up to one more per other worker
    assert 4 <= len(trials) <= 5
    assert len({t.number for t in trials}) == len(trials)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2, workers  # each process drew trials from the one study
    assert all(w.split(":")[1] != str(os.getpid()) for w in workers)  # none ran here
    assert sorted(e.number for e in events) == sorted(t.number for t in trials)
    assert tuned.workers == 2 and len(tuned.accuracies) == 1


SEARCH_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from conftest import CLASS_NAMES, synthetic
from mnistlab.data import Dataset
from mnistlab.tuning import tune

if __name__ == "__main__":
    tiny = Dataset(synthetic(400, 0), synthetic(100, 1), CLASS_NAMES, "synthetic", "mnist")
    tune({space!r}, trials=100, seeds=1, out={out!r}, data=tiny)
"""


def test_a_killed_search_resumes_without_redoing_its_finished_trials(tmp_path, tiny, monkeypatch):
    space_file = tmp_path / "tiny-space.toml"
    space_file.write_text(textwrap.dedent(TINY_SPACE))
    out = tmp_path / "out"
    script = tmp_path / "search.py"
    script.write_text(SEARCH_SCRIPT.format(tests=str(TESTS), space=str(space_file), out=str(out)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    process = subprocess.Popen([sys.executable, str(script)], env=env)
    url = f"sqlite:///{out / 'study.db'}"
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            time.sleep(1)
            assert process.poll() is None, "the search ended by itself"
            if not (out / "study.db").exists():
                continue
            try:
                study = study_of(url)
            except (KeyError, IntegrityError):  # the database is being made by the search
                continue
            trials = study.trials
            if len(ended(study)) >= 2 and any(t.state.name == "RUNNING" for t in trials):
                break  # killed mid-trial
        process.send_signal(signal.SIGKILL)  # no chance to clean up
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    before = {t.number: t for t in study_of(url).trials}
    done = {n: t for n, t in before.items() if t.state.name in ("COMPLETE", "PRUNED")}
    running = [n for n, t in before.items() if t.state.name == "RUNNING"]
    assert len(done) >= 2 and len(running) == 1
    # A trial whose process died is seen by its stopped heartbeat, after the grace period
    monkeypatch.setattr(search, "GRACE_SECONDS", 1)
    time.sleep(2)
    tune(space_file, trials=len(done) + 1, seeds=1, out=out, data=tiny)
    after = {t.number: t for t in study_of(url).trials}
    for number, trial in done.items():  # kept as they were, not run again
        assert after[number].state == trial.state
        assert after[number].value == trial.value
        assert after[number].datetime_complete == trial.datetime_complete
    assert len(ended(study_of(url))) == len(done) + 1  # exactly one more trial
    for number in running:  # the killed trial failed, and its values were tried once more
        if after[number].state.name == "RUNNING":
            continue  # its heartbeat not yet stale when the rerun ended (a loaded machine)
        assert after[number].state.name == "FAIL"
        retried = [t for t in after.values() if t.system_attrs.get("failed_trial") == number]
        assert len(retried) == 1
        if before[number].params:  # killed after its values were drawn: the same ones again
            assert retried[0].params == before[number].params


def postgres_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    debian = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(debian[-1]) if debian else None


@pytest.fixture
def postgres():
    """A PostgreSQL server of our own on a free port of 127.0.0.1, in a temporary folder.
    PostgreSQL refuses to run as root: as root, it runs as the `postgres` user (Debian's
    postgresql package makes it)."""
    initdb, pg_ctl = postgres_binary("initdb"), postgres_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="pip install 'mnistlab[tune]' installs psycopg")
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            subprocess.run(["id", "postgres"], check=True, capture_output=True)
        except subprocess.CalledProcessError:
            pytest.skip("as root, PostgreSQL needs a `postgres` user to run as")
        as_user = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="mnistlab-pg-"))  # pytest's tmp_path is root's alone
    if as_user:
        shutil.chown(folder, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = folder / "db"
    run = dict(check=True, capture_output=True, timeout=120)
    subprocess.run([*as_user, initdb, "-D", str(db), "-U", "mnistlab", "--auth=trust"], **run)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={folder}"
    subprocess.run(
        [*as_user, pg_ctl, "-D", str(db), "-o", options, "-l", str(folder / "log"), "-w", "start"],
        **run,
    )
    try:
        yield f"postgresql://mnistlab@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(db), "-m", "immediate", "stop"], **run)
        shutil.rmtree(folder, ignore_errors=True)


def test_machines_share_a_study_through_postgresql(tmp_path, tiny, postgres):
    # Two "machines": the same space and URL, each its own folder for its files
    first = tune(
        parse(TINY_SPACE), trials=2, seeds=1, storage=postgres, out=tmp_path / "a", data=tiny
    )
    second = tune(
        parse(TINY_SPACE), trials=3, seeds=1, storage=postgres, out=tmp_path / "b", data=tiny
    )
    assert [t.number for t in first.trials] == [0, 1]
    assert [t.number for t in second.trials] == [0, 1, 2]  # went on from the first's trials
    assert second.trials[:2] == first.trials
    assert not (tmp_path / "a" / "study.db").exists()
    assert "mnistlab@127.0.0.1" in first.storage
    with pytest.raises(MnistlabError, match="cannot open the study storage"):
        tune(
            parse(TINY_SPACE),
            trials=1,
            storage="postgresql://nobody@127.0.0.1:1/none",
            out=tmp_path / "c",
            data=tiny,
        )


# The command line


@pytest.fixture
def fake_data(monkeypatch, tiny):
    monkeypatch.setattr(data, "load", lambda name, **options: tiny)


def test_tune_command_searches_resumes_and_its_spec_trains(tmp_path, fake_data):
    runner = CliRunner()
    space_file = tmp_path / "tiny-space.toml"
    space_file.write_text(textwrap.dedent(TINY_SPACE))
    out = tmp_path / "out"
    args = ["tune", str(space_file), "--trials", "2", "--seeds", "1", "--out", str(out)]
    result = runner.invoke(cli.cli, args)
    assert result.exit_code == 0, result.output
    assert "Search tiny-space on mnist until the study holds 2 trials, 1 worker" in result.output
    assert "trial 0: " in result.output and "trial 1: " in result.output
    assert "final run, seed 1: " in result.output
    assert "Had the test set chosen: trial" in result.output
    assert f"Wrote {out / 'results.md'}, best-spec.toml" in result.output
    again = runner.invoke(cli.cli, args)
    assert again.exit_code == 0, again.output
    assert "trial 0: " not in again.output  # nothing searched again
    assert "(finished earlier, kept)" in again.output
    trained = runner.invoke(
        cli.cli, ["train", "--spec", str(out / "best-spec.toml"), "--out", str(tmp_path / "run")]
    )
    assert trained.exit_code == 0, trained.output
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert Spec.from_dict(meta["spec"]) == Spec.from_file(out / "best-spec.toml")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tune"], "error: name a search space"),
        (["tune", "lab-space"], "error: the search has no budget"),
        (["tune", "nope", "--trials", "1"], "error: no shipped search space named 'nope'"),
        (["tune", "lab-space", "--trials", "-1"], "-1 is not in the range x>=0"),
        (["tune", "lab-space", "--trials", "1", "--workers", "0"], "0 is not in the range x>=1"),
    ],
)
def test_tune_command_errors(args, message):
    result = CliRunner().invoke(cli.cli, args)
    assert result.exit_code == 2
    assert message in result.output


def test_tune_command_lists_and_shows_spaces():
    runner = CliRunner()
    listed = runner.invoke(cli.cli, ["tune", "--list"])
    assert listed.exit_code == 0
    assert "lab-space    mnist          units, layers, dropout, epochs" in listed.output
    shown = runner.invoke(cli.cli, ["tune", "lab-space", "--show"])
    assert shown.exit_code == 0
    assert "batch_size = { choices = [32, 64, 128, 256] }" in shown.output


def test_train_takes_a_spec_file_and_options_change_it(tmp_path, fake_data):
    (tmp_path / "spec.toml").write_text("hidden = [24]\nepochs = 2\ndropout = 0.1\n")
    runner = CliRunner()
    result = runner.invoke(
        cli.cli,
        [
            "train",
            "--spec",
            str(tmp_path / "spec.toml"),
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 0, result.output
    spec = json.loads((tmp_path / "run" / "run.json").read_text())["spec"]
    assert (spec["hidden"], spec["epochs"], spec["dropout"]) == ([24], 1, 0.1)
    both = runner.invoke(
        cli.cli, ["train", "--spec", str(tmp_path / "spec.toml"), "--preset", "wide"]
    )
    assert both.exit_code == 2 and "error: give --spec or --preset, not both" in both.output
    (tmp_path / "bad.toml").write_text("hiden = [24]\n")
    bad = runner.invoke(cli.cli, ["train", "--spec", str(tmp_path / "bad.toml")])
    assert bad.exit_code == 2 and "bad.toml: unknown spec key 'hiden'" in bad.output


@pytest.mark.realdata
def test_tune_lab_space_on_mnist(tmp_path):
    """Two trials of the lab's space on the real MNIST, then the chosen spec on one seed."""
    out = tmp_path / "tune"
    result = CliRunner().invoke(
        cli.cli,
        [
            "tune",
            "lab-space",
            "--trials",
            "2",
            "--timeout",
            "10",
            "--seeds",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    values = json.loads((out / "results.json").read_text())
    assert values["trials"]["finished"] + values["trials"]["pruned"] >= 2
    assert values["chosen"]["validation_accuracy"] > 0.9
    assert values["final"]["mean"] > 0.9
    assert Spec.from_file(out / "best-spec.toml").conv == ()
