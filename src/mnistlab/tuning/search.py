"""The search itself: an Optuna study in a storage that every worker shares, TPE sampling,
and pruning on each epoch's validation accuracy (Optuna's PercentilePruner).

    url = storage_url(None, out)          # sqlite:///OUT/study.db, or a database URL
    run(space, url, data, Budget(trials=20, deadline=None), workers=2, report=print)

Every trial lives in the study's storage as it starts and ends, so a search that is killed
resumes from the same storage without redoing a finished trial; workers in other processes,
or on other machines given the same database URL, draw their trials from the same study.
A trial whose process died is seen by its stopped heartbeat and tried once more
(Optuna's `RetryHeartbeatStaleTrialCallback`, new in Optuna 4.9).

Each trial trains its spec with seed 0 and is scored by its validation accuracy after its
last epoch: the model the final runs make is the one after the last epoch too, so the score
credits no epoch that they do not keep. The test accuracy of each trial is measured and
recorded (a user attribute), and never read by the search.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistlab.errors import MnistlabError
from mnistlab.tuning.space import Space

if TYPE_CHECKING:
    import optuna

    from mnistlab.data import Dataset

SQLITE_FILE = "study.db"
HEARTBEAT_SECONDS = 10  # a running trial's process writes a heartbeat this often
GRACE_SECONDS = 60  # a running trial with no heartbeat for this long has died: tried again
# TPE draws this many trials at random before it models the good ones, and the pruner lets
# this many finish before it prunes any: a 30-minute search of lab-space here ran 43 and 77.
STARTUP_TRIALS = 5
WARMUP_EPOCHS = 2  # no trial is pruned on its first epochs, when every network is still poor
# A trial is pruned when its best validation accuracy so far is in the bottom quarter of the
# finished trials' at the same epoch. Not the median (Optuna's MedianPruner): long, strongly
# regularised runs start slower, and the median pruner would have pruned at its third epoch
# the best trial seen on lab-space (98.40% validation after 24 epochs: 97.35% at epoch 3, the
# median of a 30-minute search's finished trials 97.37%); it pruned 24 of that search's 43
# trials, 14 of them asking for 12 epochs or more. The quarter is no cure: the next 30-minute
# search pruned 67 of 77, 41 asking for 12 epochs or more, as its few finished trials were
# all good ones (README: Search). Both chose specs above 98.5% on 3 seeds.
PRUNE_PERCENTILE = 25.0
FAILURES_IN_A_ROW = 3  # a worker stops when its last trials all failed: something is wrong
POLL_SECONDS = 2.0  # how often a search with worker processes looks for ended trials
OBJECTIVE = "validation accuracy after the last epoch"


@dataclass(frozen=True)
class Budget:
    """When a search stops: when the study holds `trials` ended trials (finished or pruned),
    or once `deadline` (a `time.time()`) has passed. Trials running then are finished."""

    trials: int | None = None
    deadline: float | None = None

    def spent(self, ended: int) -> bool:
        return (self.trials is not None and ended >= self.trials) or (
            self.deadline is not None and time.time() >= self.deadline
        )


@dataclass(frozen=True)
class TrialEvent:
    """A trial that ended: `state` is "finished", "pruned" or "failed"."""

    number: int
    state: str
    validation: float  # the score; for a pruned trial, its last epoch's
    test: float  # measured, never used to choose; nan unless finished
    epochs: int  # epochs trained
    seconds: float
    params: dict[str, Any] = field(default_factory=dict)
    worker: str = ""
    error: str = ""


STATES = {"COMPLETE": "finished", "PRUNED": "pruned", "FAIL": "failed"}


def event(trial: optuna.trial.FrozenTrial) -> TrialEvent:
    steps = trial.intermediate_values
    value = trial.value if trial.value is not None else steps[max(steps)] if steps else math.nan
    return TrialEvent(
        number=trial.number,
        state=STATES.get(trial.state.name, trial.state.name.lower()),
        validation=float(value),
        test=float(trial.user_attrs.get("test_accuracy", math.nan)),
        epochs=len(steps),
        seconds=trial.duration.total_seconds() if trial.duration else math.nan,
        params=dict(trial.params),
        worker=str(trial.user_attrs.get("worker", "")),
        error=str(
            trial.user_attrs.get("error", "")
            or ("its process stopped mid-trial" if trial.state.name == "FAIL" else "")
        ),
    )


def storage_url(storage: str | None, out: Path) -> str:
    """The study's storage: SQLite in the output folder by default, or a database URL.
    `postgresql://` is read as `postgresql+psycopg://` (psycopg 3, in the tune extra)."""
    if storage is None:
        return f"sqlite:///{(out / SQLITE_FILE).resolve()}"
    for plain in ("postgresql://", "postgres://"):
        if storage.startswith(plain):
            return "postgresql+psycopg://" + storage.removeprefix(plain)
    return storage


def shown(url: str) -> str:
    """The URL with any password hidden, for messages and reports."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: opening it says so
        return url


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Optuna's log lines (each trial's, and a failed trial's warning) and its warnings about
    experimental options (multivariate TPE, the constant liar) silenced: the library prints
    nothing; its callers report each trial, a failed one with its error."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


def open_study(space: Space, url: str) -> optuna.Study:
    """The study of `space` in the storage at `url`, made if it is not there; a study made with
    another space is refused rather than mixed in."""
    import optuna
    import sqlalchemy.exc
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    options: dict[str, Any] = {}
    if url.startswith("sqlite"):  # workers wait for each other's writes instead of failing
        options["connect_args"] = {"timeout": 60}

    def connect() -> RDBStorage:
        return RDBStorage(
            url,
            engine_kwargs=options,
            heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=GRACE_SECONDS,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
        )

    try:
        try:
            storage = connect()
        except sqlalchemy.exc.IntegrityError:
            # Workers started together on a new database: another one made Optuna's tables
            # (and its schema version row) first. They are there now.
            time.sleep(1)
            storage = connect()
    except ModuleNotFoundError as e:
        raise MnistlabError(
            f"the storage {shown(url)} needs the module {e.name!r}, which is not installed",
            "install it: pip install 'mnistlab[tune]' (psycopg for PostgreSQL)",
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError) as e:
        reason = getattr(e, "orig", None) or e
        raise MnistlabError(
            f"cannot open the study storage {shown(url)} ({str(reason).strip().splitlines()[0]})",
            "check the URL, and that the database server runs and lets you in",
        ) from None
    study = optuna.create_study(
        storage=storage,
        study_name=space.name,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(
            n_startup_trials=STARTUP_TRIALS, multivariate=True, constant_liar=True
        ),
        pruner=optuna.pruners.PercentilePruner(
            PRUNE_PERCENTILE, n_startup_trials=STARTUP_TRIALS, n_warmup_steps=WARMUP_EPOCHS
        ),
        load_if_exists=True,
    )
    recorded = study.user_attrs.get("space")
    if recorded is None:
        study.set_user_attr("space", space.describe())
        study.set_user_attr("objective", OBJECTIVE)
    elif recorded != space.describe():
        raise MnistlabError(
            f"the study {space.name!r} in {shown(url)} was made with another search space",
            "give another --out (or --storage) for the changed space, or restore the file",
        )
    return study


def ended(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def objective(space: Space, data: Dataset, worker: str) -> Callable[[Any], float]:
    """Train the trial's spec, reporting each epoch's validation accuracy to the pruner;
    score it by the run's (`Run.validation`: the last epoch's, or with the spec's test shifts
    once trained). Its test accuracy is recorded, never returned."""
    from mnistlab import backend

    backend.use(dict(space.fixed).get("backend"))  # before anything imports Keras
    from optuna_integration.keras import KerasPruningCallback

    from mnistlab.training import train

    def run(trial: optuna.trial.Trial) -> float:
        import keras
        import optuna

        keras.backend.clear_session()  # the last trial's model goes
        spec = space.suggest(trial)
        spec = spec.replace(backend=backend.use(spec.backend))
        trial.set_user_attr("spec", spec.to_dict())
        trial.set_user_attr("worker", worker)
        # Raises optuna.TrialPruned out of Keras's fit when the pruner says so
        pruning = KerasPruningCallback(trial, "val_accuracy")
        try:
            result = train(spec, data, callbacks=[pruning])
        except Exception as e:  # Optuna records the trial as failed, and logs no reason
            if not isinstance(e, optuna.TrialPruned):
                trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            raise
        trial.set_user_attr("test_accuracy", result.accuracy)
        trial.set_user_attr("train_seconds", result.seconds["train"])
        return result.validation["accuracy"]

    return run


def work(
    space: Space,
    url: str,
    data: Dataset,
    budget: Budget,
    report: Callable[[TrialEvent], None] | None = None,
) -> None:
    """One worker, in this process: trials until the budget is spent."""
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    worker = f"{socket.gethostname()}:{os.getpid()}"
    with quiet():
        study = open_study(space, url)
        if budget.spent(len(ended(study))):
            return
        failures = 0

        def after(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            nonlocal failures
            failures = failures + 1 if trial.state == TrialState.FAIL else 0
            if failures >= FAILURES_IN_A_ROW:
                study.stop()
            if report is not None:
                report(event(trial))

        callbacks: list[Callable[..., None]] = [after]
        if budget.trials is not None:
            callbacks.append(
                MaxTrialsCallback(budget.trials, states=(TrialState.COMPLETE, TrialState.PRUNED))
            )
        timeout = None if budget.deadline is None else max(0.0, budget.deadline - time.time())
        study.optimize(
            objective(space, data, worker),
            timeout=timeout,
            callbacks=callbacks,
            catch=(Exception,),  # a failed trial is recorded, and the search goes on
        )


WORKER = "import sys; from mnistlab.tuning.search import worker_main; worker_main(sys.argv[1])"


def worker_main(job: str) -> None:
    """A worker process's whole life: the space, storage, data and budget from the pickle
    file `job`, then trials until the budget is spent."""
    with open(job, "rb") as f:
        space, url, data, budget = pickle.load(f)
    work(space, url, data, budget)


def run(
    space: Space,
    url: str,
    data: Dataset,
    budget: Budget,
    workers: int = 1,
    report: Callable[[TrialEvent], None] | None = None,
) -> None:
    """Run trials of `space` into the study at `url` until `budget` is spent: here with one
    worker, else in `workers` processes (each reported here as its trials end)."""
    if workers == 1:
        work(space, url, data, budget, report)
        return
    with quiet():
        study = open_study(space, url)  # made once, before the workers race to make it
        seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    # Fresh interpreters, not multiprocessing's: its spawn imports the caller's main module
    # again (a script without `if __name__ == "__main__"` would start the search anew) and a
    # fork would copy JAX's threads. The job travels in a private temporary file.
    fd, job = tempfile.mkstemp(prefix="mnistlab-tune-", suffix=".pickle")
    with os.fdopen(fd, "wb") as f:
        pickle.dump((space, url, data, budget), f)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(workers):
            processes.append(subprocess.Popen([sys.executable, "-c", WORKER, job], env=env))
        while any(p.poll() is None for p in processes):
            time.sleep(POLL_SECONDS)
            seen |= report_new(study, seen, report)
        report_new(study, seen, report)
    finally:
        for process in processes:  # Ctrl-C or an error here: no worker is left behind
            if process.poll() is None:
                process.terminate()
                process.wait()
        os.unlink(job)
    failed = [p.returncode for p in processes if p.returncode != 0]
    if failed:
        raise MnistlabError(
            f"{len(failed)} of {workers} worker processes stopped with an error "
            f"(exit code {failed[0]})",
            "the trials they finished are kept in the study: run the same command again",
        )


def report_new(
    study: optuna.Study, seen: set[int], report: Callable[[TrialEvent], None] | None
) -> set[int]:
    new = set()
    for trial in study.get_trials(deepcopy=False):
        if trial.state.is_finished() and trial.number not in seen:
            new.add(trial.number)
            if report is not None:
                report(event(trial))
    return new
