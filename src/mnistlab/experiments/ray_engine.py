"""Run a sweep's runs as Ray tasks, on this machine or on a Ray cluster.

    with ray_engine.connect(address, backend):
        events = experiments.sweep(plan, out, ray_engine.engine(data), report)

Each run (variant x seed) is one Ray task, named after its run ("wide-256 seed 2") so that
`ray list tasks`, the dashboard and `ps` show which run a worker is making. The driver loads
and verifies the data set once and puts it into Ray's object store, which holds one copy per
machine that its workers read without copying, so a worker needs neither a data cache nor a
network of its own. A task trains in memory, then saves the run in a temporary folder on its
worker and sends the folder's files back; the driver writes them into the sweep folder
atomically (`runs.unpack`), so no shared file system is needed and the plan, resuming and
failure records are the sweep's own, the same as the local engine's. Each run's `run.json`
names the machine that trained it (`trained_on`). A worker that dies takes only its running
task with it: Ray runs that task again `retries` times, then the run is recorded as failed and
the rest of the sweep goes on.

Joining a cluster fails fast with the fix, where `ray.init` would retry for 20 s and then
blame the address (`reach`): nothing answers there, or the cluster wants a token this machine
does not have. A run that asks for more CPUs than any machine of the cluster has, which Ray
would keep waiting for, is refused before any is started.

Checkpoints live on the driver's machine, in the sweep folder, where the local engine keeps
them (`runs/VARIANT/.seed-N.checkpoint`): a task sends each of its checkpoints to a small
actor on the driver's machine (`DriverFiles`, no CPU of its own) that writes it there, and
asks it for one when it starts. So a task that Ray runs again, on any machine, goes on from
the last epoch that reached the driver, and so does the same sweep run again later, with
either engine. The price is a transfer of the model and optimiser state to the driver at most
every `checkpoints.CHECKPOINT_SECONDS` (10.3 MB for `cnn`). If the driver dies, the sweep
stops: running it again resumes from the checkpoints in its folder.

Ray is an optional extra (`pip install 'mnistlab[ray]'`); every machine of a cluster needs
mnistlab installed with the same versions, since the workers import it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from mnistlab import runs
from mnistlab.data import Dataset
from mnistlab.errors import MnistlabError
from mnistlab.experiments.sweep import Engine, Job, Outcome, failed
from mnistlab.files import write_bytes
from mnistlab.spec import Spec

INSTALL = "install it with: pip install 'mnistlab[ray]'"
TOKEN_FIX = (
    "set RAY_AUTH_TOKEN=... (from `ray get-auth-token` on the head) or put it in ~/.ray/auth_token"
)
REACH_SECONDS = 5  # for the head's port to answer: a cluster on a network answers in far less
TEMP_PREFIX = "mnistlab-run-"  # + the worker's process id + "-": a task's temporary run folder


def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise MnistlabError("--engine ray needs Ray, which is not installed", INSTALL) from None
    return ray


def reach(address: str) -> None:
    """Make sure the Ray cluster at `address` (HOST:PORT) answers and lets this process in,
    in a second rather than after `ray.init`'s 20 s of retries, or say what is wrong.

    Ray 2.60 clusters want a token when their head has one (`ray get-auth-token`), but a
    driver given an address sends it only when RAY_AUTH_MODE=token is set, even on the head.
    A driver with a token at hand and no RAY_AUTH_MODE of its own is switched to token mode
    here, for the rest of the process, as `ray.init` does when it starts a cluster."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto", a Ray Client address (ray://): Ray's own errors say it
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_SECONDS).close()
    except OSError as e:
        raise MnistlabError(
            f"nothing answers at {address} ({e.strerror or e})",
            "start Ray there with `ray start --head --port PORT`, or check --address",
        ) from None
    ray = ray_module()
    mode = os.environ.get("RAY_AUTH_MODE")
    tokens_on = ray._raylet.get_authentication_mode() == ray._raylet.AuthenticationMode.TOKEN
    if tokens_on and not has_token(ray):  # Ray would abort the process, not raise
        raise MnistlabError(
            f"RAY_AUTH_MODE={mode} here, but this machine has no Ray token", TOKEN_FIX
        )
    if lets_in(ray, address):
        return
    if mode is not None and not tokens_on:
        raise MnistlabError(
            f"the Ray cluster at {address} wants a token, and RAY_AUTH_MODE={mode} here sends none",
            f"unset RAY_AUTH_MODE or set it to token, and {TOKEN_FIX}",
        )
    if not tokens_on:
        if not has_token(ray):
            raise MnistlabError(
                f"the Ray cluster at {address} wants a token, and this machine has none",
                TOKEN_FIX,
            )
        token_mode(ray)
        if lets_in(ray, address):
            return
    raise MnistlabError(
        f"the Ray cluster at {address} refused the token in {token_source()}",
        f"use the head's: {TOKEN_FIX}",
    )


def has_token(ray: Any) -> bool:
    """Whether Ray finds a token on this machine (RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH
    names, else ~/.ray/auth_token), looking again rather than at what it found before."""
    loader = ray._raylet.AuthenticationTokenLoader.instance()
    loader.reset_cache()
    try:
        return bool(loader.has_token(ignore_auth_mode=True))
    except ray.exceptions.AuthenticationError:  # RAY_AUTH_TOKEN_PATH names an unreadable file
        return False


def token_source() -> str:
    """Where Ray takes this machine's token from, in the order it looks."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return "RAY_AUTH_TOKEN"
    return os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token"


def token_mode(ray: Any) -> None:
    """Send this machine's token from now on, as `ray.init` does for a cluster of its own
    (ray/_private/authentication/authentication_token_setup.py)."""
    os.environ["RAY_AUTH_MODE"] = "token"
    ray._raylet.Config.initialize("")
    ray._raylet.AuthenticationTokenLoader.instance().reset_cache()


def lets_in(ray: Any, address: str) -> bool:
    """Whether the cluster's head takes this process's token (or none): one try of what
    `ray.init` tries 20 times, a second apart, whatever the answer."""
    try:
        ray._raylet.GcsClient(address=address)
    except ray.exceptions.AuthenticationError:
        return False
    except ray.exceptions.RayError as e:
        raise MnistlabError(
            f"the Ray cluster at {address} does not answer ({e})",
            "check that `ray start --head` runs there, with this version of Ray",
        ) from None
    return True


@contextlib.contextmanager
def connect(address: str | None, backend_name: str) -> Iterator[None]:
    """Join the Ray cluster at `address`, or start a Ray instance on this machine with its
    cores when `address` is None; disconnect (and stop what was started) afterwards. While
    connected, what Ray prints goes to stderr (`StatusOnStderr`)."""
    ray = ray_module()
    if address is not None:
        reach(address)
    options: dict[str, Any] = {
        # Workers start with the sweep's Keras backend: Keras reads it once, at import.
        "runtime_env": {"env_vars": {"KERAS_BACKEND": backend_name, "TF_CPP_MIN_LOG_LEVEL": "2"}},
        "log_to_driver": False,  # progress is one line per run; a failure's traceback is kept
        "logging_level": logging.WARNING,
    }
    if address is None:
        # A Ray instance of this sweep alone: no dashboard, and reachable from this machine only
        options["include_dashboard"] = False
        options["_node_ip_address"] = "127.0.0.1"
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(sys.stderr),
            on_loopback(ray) if address is None else contextlib.nullcontext(),
        ):
            # Ray starts its processes by fork and exec, which JAX's warning on fork cannot
            # tell apart from a bare fork
            warnings.filterwarnings("ignore", r"os\.fork\(\) was called", RuntimeWarning)
            ray.init(address=address, **options)
    except ray.exceptions.AuthenticationError as e:  # `reach` said what it could: Ray's words
        raise MnistlabError(f"Ray refused this process ({e.message})", TOKEN_FIX) from None
    except ConnectionError as e:
        raise MnistlabError(
            f"could not join the Ray cluster at {address} ({e})",
            "start it with `ray start --head` on that machine, or check --address",
        ) from e
    status = StatusOnStderr(sys.stdout)
    sys.stdout = status
    try:
        yield
    finally:
        if sys.stdout is status:
            sys.stdout = status.stdout
        with contextlib.redirect_stdout(sys.stderr):  # the messages Ray held back, if any
            ray.shutdown()


@contextlib.contextmanager
def on_loopback(ray: Any) -> Iterator[None]:
    """While a Ray instance of this sweep alone starts: keep it on the 127.0.0.1 it is given.
    Ray 2.60 on Linux replaces 127.0.0.1 by this machine's network address, and its processes
    then listen on every interface, unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 was set before
    Ray was imported (`resolve_ip_for_localhost` in ray/_private/services.py); this is that
    setting, for the start alone."""
    constants = ray._private.ray_constants
    before = constants.ENABLE_RAY_CLUSTER
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = before


class StatusOnStderr:
    """`sys.stdout` while Ray is connected. Ray's driver prints the cluster's messages (a
    worker died, a task that cannot be scheduled) to stdout from threads of its own; they are
    status, so they go to stderr, and stdout keeps only what the program prints itself."""

    RAY_THREADS = ("ray_listen_error_messages", "ray_print_logs")  # ray/_private/worker.py

    def __init__(self, stdout: TextIO) -> None:
        self.stdout = stdout

    def write(self, text: str) -> int:
        ray_thread = threading.current_thread().name in self.RAY_THREADS
        return (sys.stderr if ray_thread else self.stdout).write(text)

    def flush(self) -> None:
        self.stdout.flush()
        sys.stderr.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stdout, name)


class DriverFiles:
    """A Ray actor on the driver's machine: reads and writes checkpoint files for the tasks.
    Plain files, no Keras: it starts in a moment and holds little memory."""

    def read(self, path: str) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, path: str, raw: bytes) -> None:
        write_bytes(Path(path), raw)


@dataclass(frozen=True)
class OnDriver:
    """A task's `checkpoints.Place`: the file `path` on the driver's machine, through
    `DriverFiles`. The driver removes it once the run folder is in place (`store`)."""

    files: Any  # the DriverFiles actor's handle
    path: str

    def read(self) -> bytes | None:
        raw: bytes | None = ray_module().get(self.files.read.remote(self.path))
        return raw

    def write(self, raw: bytes) -> None:
        ray_module().get(self.files.write.remote(self.path, raw))

    def remove(self) -> None:
        pass  # not before the driver has the run folder

    def __str__(self) -> str:
        return f"checkpoint {self.path} (on the driver's machine)"


def train_task(
    spec: Spec, data: Dataset, checkpoint: OnDriver | None = None
) -> tuple[dict[str, Any], dict, float]:
    """On a worker: train (from and with `checkpoint`) and evaluate a run, save it in a
    temporary folder; return its test metrics, the folder's files and the seconds taken. The
    folder exists only while the run is saved, so a worker killed while training (nearly all of
    a task's time) leaves nothing; one killed while saving leaves a folder that the next task on
    its machine removes."""
    import ray

    from mnistlab.training import train

    start = time.perf_counter()
    clear_stale_temp()
    run = train(spec, data, checkpoint=checkpoint)
    context = ray.get_runtime_context()
    run.info["trained_on"] = {
        "engine": "ray",
        "node": ray.util.get_node_ip_address(),
        "hostname": socket.gethostname(),
        "node_id": context.get_node_id(),
        "task": context.get_task_name(),
    }
    tmp = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-")
    try:
        files = runs.pack(run.save(Path(tmp) / "run"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return run.metrics, files, time.perf_counter() - start


def clear_stale_temp() -> None:
    """Remove the temporary run folders of workers on this machine that were killed while
    saving (their process is gone)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*-*"):
        pid = folder.name.removeprefix(TEMP_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        pass
    return True


def check_cpus(ray: Any, cpus_per_run: float) -> None:
    """Refuse runs that no machine of the cluster has the CPUs for: Ray would wait for such a
    machine forever, saying nothing. A cluster that can add machines (one made by Ray's
    cluster launcher, which leaves ~/ray_bootstrap_config.yaml on its head, as Ray Tune
    checks) may be waiting for one; it is not refused."""
    alive_nodes = [n for n in ray.nodes() if n.get("Alive")]
    largest = max((float(n.get("Resources", {}).get("CPU", 0)) for n in alive_nodes), default=0)
    if cpus_per_run <= largest or Path("~/ray_bootstrap_config.yaml").expanduser().exists():
        return
    machines = f"{len(alive_nodes)} machine{'s' if len(alive_nodes) != 1 else ''}"
    raise MnistlabError(
        f"each run asks for {cpus_per_run:g} CPUs, but the largest of the Ray cluster's "
        f"{machines} has {largest:g}",
        f"give --cpus-per-run {largest:g} or less"
        if largest > 0
        else "start Ray with CPUs on a machine of the cluster (`ray start --num-cpus N`)",
    )


def engine(data: Dataset, cpus_per_run: float = 1, retries: int = 1) -> Engine:
    """An engine that runs every job as a Ray task needing `cpus_per_run` CPUs, as many at a
    time as the cluster has CPUs for, each run again up to `retries` times if its worker
    dies. Call it inside `connect()`: it refuses `cpus_per_run` beyond every machine's."""
    ray = ray_module()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    check_cpus(ray, cpus_per_run)
    task = ray.remote(train_task)

    def run(jobs: Sequence[Job]) -> Iterator[Outcome]:
        if not jobs:
            return
        shared = ray.put(data)  # once; each machine fetches it once
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        files = ray.remote(DriverFiles).options(num_cpus=0, scheduling_strategy=here).remote()
        pending = {}
        for job in jobs:
            # absolute: the actor's working folder is not the driver's
            checkpoint = OnDriver(files, str(runs.checkpoint_path(job.folder).absolute()))
            submitted = task.options(
                num_cpus=cpus_per_run,
                max_retries=retries,
                retry_exceptions=False,
                name=f"{job.variant} seed {job.spec.seed}",
            ).remote(job.spec, shared, checkpoint)
            pending[submitted] = (job, time.perf_counter())
        try:
            while pending:
                [ready], _ = ray.wait(list(pending), num_returns=1)
                job, submitted = pending.pop(ready)
                yield store(ray, ready, job, submitted)
        finally:  # interrupted: the runs still going are stopped, the finished ones are kept
            for ref in pending:
                ray.cancel(ref, force=True)

    return run


def store(ray: Any, ref: Any, job: Job, submitted: float) -> Outcome:
    """Write the run folder a task sent back, or turn its failure into an outcome."""
    try:
        metrics, files, seconds = ray.get(ref)
    except ray.exceptions.RayTaskError as e:  # the run raised: report the run's own error
        cause = e.cause if isinstance(e.cause, BaseException) else e
        return failed(job, time.perf_counter() - submitted, cause, str(e))
    except ray.exceptions.RayError as e:  # its worker or machine died, retries spent
        return failed(job, time.perf_counter() - submitted, e)
    try:
        runs.unpack(files, job.folder)
    except (OSError, ValueError, MnistlabError) as e:
        return failed(job, seconds, e)
    runs.checkpoint_path(job.folder).unlink(missing_ok=True)  # the run is safe
    return Outcome(job, metrics, seconds)
