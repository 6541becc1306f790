"""Run a sweep's runs as Ray tasks, on this machine or on a Ray cluster.

    with ray_engine.connect(address, backend):
        events = experiments.sweep(plan, out, ray_engine.engine(data), report)

Each run (variant x seed) is one Ray task. The driver loads and verifies the data set once and
puts it into Ray's object store, which holds one copy per machine that its workers read without
copying, so a worker needs neither a data cache nor a network of its own. A task trains into a
temporary folder on its worker and sends the run folder's files back; the driver writes them
into the sweep folder atomically (`runs.unpack`), so no shared file system is needed and the
plan, resuming and failure records are the sweep's own, the same as the local engine's. A
worker that dies takes only its running task with it: Ray runs that task again `retries`
times, then the run is recorded as failed and the rest of the sweep goes on.

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
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab import runs
from mnistlab.data import Dataset
from mnistlab.errors import MnistlabError
from mnistlab.experiments.sweep import Engine, Job, Outcome, failed
from mnistlab.files import write_bytes
from mnistlab.spec import Spec

INSTALL = "install it with: pip install 'mnistlab[ray]'"


def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise MnistlabError("--engine ray needs Ray, which is not installed", INSTALL) from None
    return ray


@contextlib.contextmanager
def connect(address: str | None, backend_name: str) -> Iterator[None]:
    """Join the Ray cluster at `address`, or start a Ray instance on this machine with its
    cores when `address` is None; disconnect (and stop what was started) afterwards."""
    ray = ray_module()
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
        with warnings.catch_warnings():
            # Ray starts its processes by fork and exec, which JAX's warning on fork cannot
            # tell apart from a bare fork
            warnings.filterwarnings("ignore", r"os\.fork\(\) was called", RuntimeWarning)
            ray.init(address=address, **options)
    except ConnectionError as e:
        raise MnistlabError(
            f"could not join the Ray cluster at {address} ({e})",
            "start it with `ray start --head` on that machine, or check --address",
        ) from e
    try:
        yield
    finally:
        ray.shutdown()


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
    """On a worker: train (from and with `checkpoint`), evaluate and save a run in a temporary
    folder; return its test metrics, the folder's files and the seconds taken."""
    from mnistlab.training import train

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mnistlab-run-") as tmp:
        run = train(spec, data, checkpoint=checkpoint)
        folder = run.save(Path(tmp) / "run")
        return run.metrics, runs.pack(folder), time.perf_counter() - start


def engine(data: Dataset, cpus_per_run: float = 1, retries: int = 1) -> Engine:
    """An engine that runs every job as a Ray task needing `cpus_per_run` CPUs, as many at a
    time as the cluster has CPUs for, each run again up to `retries` times if its worker
    dies. Call it inside `connect()`."""
    ray = ray_module()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(train_task).options(
        num_cpus=cpus_per_run, max_retries=retries, retry_exceptions=False
    )

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
            pending[task.remote(job.spec, shared, checkpoint)] = (job, time.perf_counter())
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
