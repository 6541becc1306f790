"""The Ray engine on a Ray cluster the test starts on 127.0.0.1 (`ray start --head` with two
CPUs: two worker processes), on the tiny synthetic data set: the same table as the local
engine, a worker killed mid-sweep, and runs that go on from their checkpoints on the driver's
machine, a task run again after its worker died too. Marked `ray`: each test starts Ray
processes, so they run once, on the default backend (see run-tests)."""

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
import test_checkpoint as checked
from click.testing import CliRunner
from conftest import CLASS_NAMES, synthetic
from test_checkpoint import AUGMENTED, SWEEP, Made, assert_same_weights, meta
from test_experiments import GOOD, write

from mnistlab import cli, data, runs
from mnistlab import experiments as ex
from mnistlab.data import Dataset
from mnistlab.training import train

pytestmark = pytest.mark.ray

ONE_VARIANT = """
    dataset = "mnist"
    seeds = [1, 2, 3]
    [base]
    epochs = 1
    hidden = [16]
    [[variants]]
    name = "base"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster():
    """The address of a one-machine Ray cluster with 2 CPUs, started and stopped here."""
    # A token of its own, for the head and this process (the driver), rather than the one
    # Ray keeps in ~/.ray, which any other Ray on the machine may replace. Ray reads it when
    # it is first imported, so nothing here imports Ray before (the command does, later).
    assert "ray" not in sys.modules
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_AUTH_MODE", "token")
        env.setenv("RAY_AUTH_TOKEN", secrets.token_hex(16))
        yield from start_head()


def start_head():
    # Ray's socket paths must fit in 107 bytes: a short folder of our own, not pytest's.
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    port = free_port()
    ports = [f"--{name}={free_port()}" for name in ("dashboard-agent-listen-port",)]
    head = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "ray"),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp}",
            *ports,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its processes form a group, stopped together below
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # until the head's GCS answers on its port
            assert head.poll() is None, "ray start --head exited"
            assert time.monotonic() < deadline, "the Ray head did not start in 60 s"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()  # `ray start --block` stops what it started (in 4 s here)
        try:
            head.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):  # anything of its group left over
                os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def grid(tmp_path, monkeypatch, tiny):
    # The driver (this process) loads the data and Ray hands it to the workers: synthetic
    # data reaches them as real data would.
    monkeypatch.setattr(data, "load", lambda name, **options: tiny)
    return write(tmp_path, GOOD, "grid.toml")


def experiment(*args: str):
    return CliRunner().invoke(cli.cli, ["experiment", *args])


def without_seconds(results: dict) -> dict:
    """results.json less what differs between two sweeps of the same runs: the time taken."""
    rows = [{k: v for k, v in row.items() if k != "mean_seconds"} for row in results["rows"]]
    return {**{k: v for k, v in results.items() if k != "wall_seconds"}, "rows": rows}


def test_the_ray_engine_gives_the_local_engines_table(tmp_path, grid, cluster):
    local = experiment(str(grid), "--out", str(tmp_path / "local"))
    assert local.exit_code == 0, local.output
    on_ray = experiment(
        str(grid), "--out", str(tmp_path / "ray"), "--engine", "ray", "--address", cluster
    )
    assert on_ray.exit_code == 0, on_ray.output
    assert on_ray.output.count(" seed ") == 4
    assert "[4/4] " in on_ray.output

    tables = [json.loads((tmp_path / e / "results.json").read_text()) for e in ("local", "ray")]
    assert without_seconds(tables[0]) == without_seconds(tables[1])
    for variant in ("base", "wide"):
        for seed in (1, 2):
            metas = [runs.read_meta(runs_of(tmp_path / e, variant, seed)) for e in ("local", "ray")]
            assert metas[0]["metrics"] == metas[1]["metrics"]  # loss, per class, confusion
            assert metas[1]["spec"]["seed"] == seed
            # the folder came back whole: the model loads and gives the same test accuracy
            model = runs.load(runs_of(tmp_path / "ray", variant, seed)).model
            assert model.count_params() == metas[0]["parameters"]


def runs_of(out: Path, variant: str, seed: int) -> Path:
    return out / "runs" / variant / f"seed-{seed}"


def running_tasks() -> list[int]:
    """Process ids of Ray workers under this process that are running a run now (Ray titles
    a worker `ray::FUNCTION` while it runs a task, `ray::IDLE` otherwise)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and descends_from(int(proc.name), os.getpid()):
            try:
                title = (proc / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if title.startswith(b"ray::train_task"):
                found.append(int(proc.name))
    return found


def descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the parent's id
        if pid == ancestor:
            return True
    return False


def test_a_killed_worker_loses_only_its_run_and_the_rerun_completes(tmp_path, grid, tiny):
    """On a Ray instance the sweep starts here (no address), with no retries: the run whose
    worker is killed is recorded as failed; the finished ones are kept. Three runs on two
    workers: when the first ends, the second is running and is killed, the third runs."""
    grid.write_text(textwrap.dedent(ONE_VARIANT))
    out = tmp_path / "sweep"
    killed = []

    def kill_a_worker_after_the_first_run(event):
        if event.status == "done" and not killed:
            deadline = time.monotonic() + 30
            while not (busy := running_tasks()):
                assert time.monotonic() < deadline, "no run in progress to kill"
                time.sleep(0.05)
            os.kill(busy[0], signal.SIGKILL)
            killed.append(busy[0])

    first = ex.run_experiment(
        grid,
        out=out,
        data=tiny,
        engine="ray",
        retries=0,
        progress=kill_a_worker_after_the_first_run,
    )
    assert killed
    [failed] = first.failed
    assert "Worker" in failed and "died" in failed.lower()
    [failure] = (out / "failed").iterdir()
    record = json.loads(failure.read_text())
    assert "Worker" in record["error"] and "died" in record["error"].lower()
    kept = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/seed-*/run.json")}
    assert len(kept) == 2
    assert first.runs == 2

    events = []
    again = ex.run_experiment(grid, out=out, data=tiny, engine="ray", progress=events.append)
    assert [e.status for e in events].count("skipped") == 2
    assert not again.failed
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # not trained again
    assert not failure.exists()
    assert json.loads((out / "results.json").read_text())["runs"] == 3


@pytest.fixture(scope="module")
def made(tiny, tmp_path_factory):
    return Made(tiny, tmp_path_factory.mktemp("checkpoints"))


def test_a_ray_task_goes_on_from_the_checkpoint_on_the_drivers_machine(tmp_path, made):
    """The checkpoint a stopped run left in the sweep folder reaches the Ray worker, which
    goes on from it; the driver removes it once it has the run folder."""
    (tmp_path / "long.toml").write_text(textwrap.dedent(SWEEP))
    plan = ex.read(tmp_path / "long.toml")
    out = tmp_path / "sweep"
    checkpoint = runs.SweepFolder(out).checkpoint("base", 1)
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(made.stopped(AUGMENTED))
    earlier_seconds = meta(checkpoint)["history"]["seconds"]

    results = ex.run_experiment(plan, out=out, data=made.tiny, engine="ray", retries=0)
    assert not results.failed
    assert not checkpoint.exists()
    resumed = runs.load(runs.SweepFolder(out).run("base", 1))
    assert resumed.history["seconds"][:2] == earlier_seconds  # not run again
    whole, whole_history = made.whole(AUGMENTED)
    assert_same_weights(resumed.model, whole)
    assert checked.without_seconds(resumed.history) == checked.without_seconds(whole_history)


def test_a_ray_task_run_again_after_its_worker_died_goes_on_from_its_last_checkpoint(tmp_path):
    """A worker killed in a run: Ray runs the task again, which goes on from the last
    checkpoint the first one sent to the driver, to the weights of a run never stopped. The
    run lasts some 10 to 30 s here: the first checkpoint comes after 10 s (a task keeps the
    default interval)."""
    bigger = Dataset(synthetic(12800, 0), synthetic(100, 1), CLASS_NAMES, "synthetic", "mnist")
    (tmp_path / "long.toml").write_text(
        textwrap.dedent(SWEEP.replace("epochs = 4", "epochs = 100").replace("[32]", "[16]"))
    )
    plan = ex.read(tmp_path / "long.toml")
    out = tmp_path / "sweep"
    checkpoint = runs.SweepFolder(out).checkpoint("base", 1)
    seen: list[dict] = []
    over = threading.Event()

    def kill_after_the_first_checkpoint():
        while not checkpoint.exists() and not over.is_set():
            time.sleep(0.05)
        if checkpoint.exists() and (busy := running_tasks()):
            seen.append(meta(checkpoint))
            os.kill(busy[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_after_the_first_checkpoint, daemon=True)
    killer.start()
    try:
        results = ex.run_experiment(plan, out=out, data=bigger, engine="ray", retries=1)
    finally:
        over.set()
        killer.join()
    if not seen or seen[0]["epochs"] == 100:
        pytest.skip("the run was over before its first checkpoint: a faster machine")
    assert not results.failed
    assert not checkpoint.exists()
    resumed = runs.load(runs.SweepFolder(out).run("base", 1))
    done = seen[0]["epochs"]
    assert resumed.history["seconds"][:done] == seen[0]["history"]["seconds"]
    whole = train(plan.variants[0].spec.replace(seed=1), bigger)
    assert_same_weights(resumed.model, whole.model)
    assert checked.without_seconds(resumed.history) == checked.without_seconds(whole.history)
