"""The Ray engine on a cluster of two machines that the tests start on this one, on 127.0.0.1
(`ray start --head` and `ray start --address`, one CPU each, with a token of their own), on the
tiny synthetic data set: the same table as the local engine, the machine and the task named in
each run, runs that no machine has the CPUs for, a driver without the token or with nothing at
its address, what the command prints on stdout; on a Ray instance the sweep starts, 127.0.0.1
alone and a worker killed mid-sweep; and runs that go on from their checkpoints on the
driver's machine, a task run again after its worker died too. Marked `ray`: each test starts
Ray processes, so they run once, on the default backend (see run-tests)."""

import contextlib
import json
import os
import re
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
RAY = str(Path(sys.executable).parent / "ray")
DRIVER = Path(__file__).with_name("ray_driver.py")
TOKEN = secrets.token_hex(16)
# What Ray reads once, when it is first imported, in this process (a driver, or the instance a
# sweep starts here), the nodes and the drivers started here:
# - a token of their own, rather than the one Ray keeps in ~/.ray, which any other Ray on the
#   machine may replace;
# - Ray on 127.0.0.1 only, as this project's machines require: Ray 2.60 on Linux otherwise
#   replaces 127.0.0.1 by the machine's address and listens on every interface;
# - nodes that stop at once when told, rather than draining for 30 s.
RAY_ENV = {
    "RAY_AUTH_MODE": "token",
    "RAY_AUTH_TOKEN": TOKEN,
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
}
# A second node: `ray start --address` refuses to start one with
# RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ("not supported on Windows and OSX"), and with 1 turns
# --node-ip-address 127.0.0.1 into the machine's address; here it keeps 127.0.0.1 as given.
SECOND_NODE = (
    "import sys; import ray._private.services as s; s.resolve_ip_for_localhost = lambda h: h; "
    "from ray.scripts.scripts import main; sys.exit(main())"
)


@pytest.fixture(scope="module", autouse=True)
def ray_env():
    assert "ray" not in sys.modules  # so that Ray reads RAY_ENV (the tests import it later)
    with pytest.MonkeyPatch.context() as env:
        for name, value in RAY_ENV.items():
            env.setenv(name, value)
        yield


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster():
    """The address of a Ray cluster of two machines with one CPU each, both on this one: a
    head and a second node, each a `ray start --block` in a process group of its own, stopped
    here with the workers they started."""
    # Ray's socket paths must fit in 107 bytes: a short folder of our own, not pytest's.
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    port = free_port()
    address = f"127.0.0.1:{port}"
    nodes = []
    try:
        nodes.append(
            ray_start(
                "--head",
                f"--port={port}",
                "--include-dashboard=false",
                f"--ray-client-server-port={free_port()}",
                f"--temp-dir={temp}",
            )
        )
        wait_until(lambda: answers(port), nodes, "the Ray head did not start in 60 s")
        nodes.append(ray_start(f"--address={address}", cluster_mode=True))
        wait_until(lambda: machines(address) == 2, nodes, "the second node did not join in 60 s")
        yield address
    finally:
        stop(nodes)
        shutil.rmtree(temp, ignore_errors=True)


def ray_start(*args: str, cluster_mode: bool = False) -> subprocess.Popen:
    """A Ray node on 127.0.0.1 with one CPU, until it is stopped."""
    command = [sys.executable, "-c", SECOND_NODE] if cluster_mode else [RAY]
    return subprocess.Popen(
        [
            *command,
            "start",
            "--block",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            "--disable-usage-stats",
            f"--dashboard-agent-listen-port={free_port()}",
            *args,
        ],
        env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"} if cluster_mode else None,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its processes form a group, stopped together below
    )


def wait_until(ready, nodes: list[subprocess.Popen], message: str) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        assert all(n.poll() is None for n in nodes), "a `ray start` exited"
        assert time.monotonic() < deadline, message
        time.sleep(0.5)


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def machines(address: str) -> int:
    """The number of machines `ray status` counts as active in the cluster."""
    status = subprocess.run(
        [RAY, "status", f"--address={address}"], capture_output=True, text=True, timeout=30
    ).stdout
    active = status.partition("Active:")[2].partition("Pending:")[0]
    return len(re.findall(r"\bnode_[0-9a-f]+", active))


def stop(nodes: list[subprocess.Popen]) -> None:
    """Stop the nodes, their process groups, and the workers they started, which Ray puts in
    process groups of their own: every process whose raylet was one of the nodes'."""
    raylets = {pid for node in nodes for pid in group(node.pid)}
    workers = [pid for pid in processes() if environ(pid).get("RAY_RAYLET_PID") in raylets]
    for node in nodes:
        node.terminate()  # `ray start --block` stops what it started
    for node in nodes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # anything of its group left over
            os.killpg(node.pid, signal.SIGKILL)
        node.wait()
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def processes() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def group(pgid: int) -> set[str]:
    found = set()
    for pid in processes():
        with contextlib.suppress(OSError, IndexError):
            if int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                found.add(str(pid))
    return found


def environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(v.decode(errors="replace").partition("=")[::2] for v in raw.split(b"\0") if v)


@pytest.fixture
def grid(tmp_path, monkeypatch, tiny):
    # The driver (this process) loads the data and Ray hands it to the workers: synthetic
    # data reaches them as real data would.
    monkeypatch.setattr(data, "load", lambda name, **options: tiny)
    return write(tmp_path, GOOD, "grid.toml")


def experiment(*args: str):
    return CliRunner().invoke(cli.cli, ["experiment", *args])


def driver(*args: str, home: Path, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    """`mnistlab ARGS` in a process of its own (tests/ray_driver.py), with this process's Ray
    settings less its token and RAY_AUTH_MODE, plus `env`; `home` as its home folder, so that
    it sees no ~/.ray/auth_token but one put there."""
    base = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    return subprocess.run(
        [sys.executable, str(DRIVER), *args],
        env={**base, "HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


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
            # the machine that made it, and the Ray task, named after the run
            assert metas[0]["trained_on"] == {"engine": "local", "hostname": socket.gethostname()}
            made = metas[1]["trained_on"]
            assert made["engine"] == "ray"
            assert made["node"] == "127.0.0.1"
            assert made["hostname"] == socket.gethostname()
            assert re.fullmatch("[0-9a-f]{56}", made["node_id"])
            assert made["task"] == f"{variant} seed {seed}"


def runs_of(out: Path, variant: str, seed: int) -> Path:
    return out / "runs" / variant / f"seed-{seed}"


def test_runs_that_no_machine_has_the_cpus_for_are_refused(tmp_path, cluster):
    """Two CPUs in the cluster, one a machine: Ray would wait for a machine with two forever."""
    grid = write(tmp_path, ONE_VARIANT, "grid.toml")
    args = ["experiment", str(grid), "--out", str(tmp_path / "out"), "--engine", "ray"]
    args += ["--address", cluster, "--cpus-per-run", "2"]
    result = driver(*args, home=tmp_path, timeout=120, RAY_AUTH_TOKEN=TOKEN)
    assert result.returncode == 2, result.stderr
    assert (
        "error: each run asks for 2 CPUs, but the largest of the Ray cluster's 2 machines has 1."
        " give --cpus-per-run 1 or less"
    ) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "runs").exists()


@pytest.mark.parametrize(
    ("env", "problem", "fix"),
    [
        ({}, "wants a token, and this machine has none", "(from `ray get-auth-token` on the head)"),
        (
            {"RAY_AUTH_TOKEN": "not-the-token"},
            "refused the token in RAY_AUTH_TOKEN",
            "use the head's: set RAY_AUTH_TOKEN=...",
        ),
        (
            {"RAY_AUTH_TOKEN": TOKEN, "RAY_AUTH_MODE": "disabled"},
            "wants a token, and RAY_AUTH_MODE=disabled here sends none",
            "unset RAY_AUTH_MODE or set it to token",
        ),
    ],
    ids=["no token", "wrong token", "tokens turned off"],
)
def test_a_driver_without_the_clusters_token_is_told_how_to_get_it(
    tmp_path, cluster, env, problem, fix
):
    """At once, in one line, where Ray would retry for 20 s, a warning a second, then blame
    the address."""
    grid = write(tmp_path, ONE_VARIANT, "grid.toml")
    args = ["experiment", str(grid), "--engine", "ray", "--address", cluster]
    result = driver(*args, home=tmp_path, **env)
    assert result.returncode == 2, result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert error.startswith(f"error: the Ray cluster at {cluster} {problem}. ")
    assert fix in error
    assert result.stderr.count("Failed to get cluster ID") <= 2  # one a try: Ray's own warning
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_driver_with_the_token_in_its_file_joins_and_prints_only_results(tmp_path, cluster):
    """The token in ~/.ray/auth_token, as on the head, and no RAY_AUTH_MODE: Ray would not
    send it. Its stdout holds the results alone: Ray's messages and the progress are status,
    on stderr."""
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text(TOKEN)
    grid = write(tmp_path, ONE_VARIANT, "grid.toml")
    out = tmp_path / "out"
    args = ["experiment", str(grid), "--seeds", "1", "--out", str(out), "--engine", "ray"]
    result = driver(*args, "--address", cluster, home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[1/1] base seed 1: " in result.stderr
    assert result.stdout.splitlines()[:2] == ["", "# Experiment grid"]
    assert result.stdout.rstrip().endswith("results.csv, results.json, accuracy.png")
    for line in result.stdout.splitlines():
        assert not re.match(r"\[?\d{4}-\d\d-\d\d", line), line  # Ray's log lines
        assert not re.search(r"\b(INFO|WARNING|ERROR) \w+\.py:\d+|\(raylet\)|\[\d+/\d+\]", line)
    assert runs.read_meta(runs_of(out, "base", 1))["trained_on"]["task"] == "base seed 1"


def test_nothing_answering_at_the_address_is_said_at_once(tmp_path):
    port = free_port()  # closed again: nothing listens there
    address = f"127.0.0.1:{port}"
    args = [str(write(tmp_path, GOOD)), "--out", str(tmp_path / "out"), "--engine", "ray"]
    result = experiment(*args, "--address", address)
    assert result.exit_code == 2
    assert f"error: nothing answers at 127.0.0.1:{port} (Connection refused). " in result.output


def test_a_ray_instance_of_the_sweeps_own_is_on_127_0_0_1_only(tmp_path, short_temp):
    """Without this module's RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, as a user runs it: the run
    was made on a node whose address is 127.0.0.1 (Ray's processes listen on that address
    alone), not this machine's network address."""
    grid = write(tmp_path, ONE_VARIANT, "grid.toml")
    out = tmp_path / "out"
    args = ["experiment", str(grid), "--seeds", "1", "--out", str(out), "--engine", "ray"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    result = subprocess.run(
        [sys.executable, str(DRIVER), *args],
        env={**env, "HOME": str(tmp_path), "TMPDIR": str(short_temp)},  # Ray's files there
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert runs.read_meta(runs_of(out, "base", 1))["trained_on"]["node"] == "127.0.0.1"


def running_tasks() -> list[int]:
    """Process ids of Ray workers under this process that are making a run now (Ray titles a
    worker `ray::TASK` while it runs a task, `ray::IDLE` otherwise; a run's task is named
    `VARIANT seed N`)."""
    found = []
    for pid in processes():
        if descends_from(pid, os.getpid()):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if re.fullmatch(rb"ray::\S+ seed \d+", title):
                found.append(pid)
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


@pytest.fixture
def short_temp():
    """A temporary folder of a test's own, short enough for Ray's socket paths (107 bytes)."""
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    yield temp
    shutil.rmtree(temp, ignore_errors=True)


def test_a_killed_worker_loses_only_its_run_and_the_rerun_completes(
    tmp_path, grid, tiny, monkeypatch, capfd, short_temp
):
    """On a Ray instance the sweep starts here (no address), with no retries: the run whose
    worker is killed is recorded as failed, and Ray's word of it is on stderr; the finished
    ones are kept, and nothing of the killed one is left in the temporary folder of its
    machine. Three runs on two workers: when the first ends, the second is running and is
    killed, the third runs."""
    grid.write_text(textwrap.dedent(ONE_VARIANT))
    out = tmp_path / "sweep"
    monkeypatch.setenv("TMPDIR", str(short_temp))  # the workers' temporary folder, and Ray's
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
    assert not list(short_temp.glob("mnistlab-run-*"))
    [failed] = first.failed
    assert "Worker" in failed and "died" in failed.lower()
    [failure] = (out / "failed").iterdir()
    record = json.loads(failure.read_text())
    assert "Worker" in record["error"] and "died" in record["error"].lower()
    kept = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/seed-*/run.json")}
    assert len(kept) == 2
    assert first.runs == 2
    # no temporary folder in the sweep folder; the killed run's checkpoint, if it made one,
    # stays there for the rerun to go on from
    left = [p.name for p in out.glob("runs/*/.seed-*")]
    assert all(name.endswith(".checkpoint") for name in left), left
    printed = capfd.readouterr()
    assert "(raylet)" not in printed.out  # Ray's word on the dead worker is status
    assert "(raylet)" in printed.err

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
    run lasts some 30 to 60 s here: the first checkpoint comes after 10 s (a task keeps the
    default interval), and 100 epochs were over before it on a fast day."""
    bigger = Dataset(synthetic(12800, 0), synthetic(100, 1), CLASS_NAMES, "synthetic", "mnist")
    (tmp_path / "long.toml").write_text(
        textwrap.dedent(SWEEP.replace("epochs = 4", "epochs = 300").replace("[32]", "[16]"))
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
    if not seen or seen[0]["epochs"] == 300:
        pytest.skip("the run was over before its first checkpoint: a faster machine")
    assert not results.failed
    assert not checkpoint.exists()
    resumed = runs.load(runs.SweepFolder(out).run("base", 1))
    done = seen[0]["epochs"]
    assert resumed.history["seconds"][:done] == seen[0]["history"]["seconds"]
    whole = train(plan.variants[0].spec.replace(seed=1), bigger)
    assert_same_weights(resumed.model, whole.model)
    assert checked.without_seconds(resumed.history) == checked.without_seconds(whole.history)
