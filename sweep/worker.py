"""Sweep workers: processes that take trials of a study from its storage and train them, until
the budget is used or the sweep is stopped.

Any number of workers, on any number of machines, can work on one study: Optuna's storage hands
out trial numbers, and each worker trains its trials in its own process and records their runs
in its own runs folder (<runs>/<study>/trial-NNNN). `spawn` starts workers on this machine as
`python -m playground sweep --worker ...` processes (what the CLI and the Sweep page do);
`run_worker` is the worker loop itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: local workers may overshoot the budget by one
    fcntl = None

from jobs import child_env
from jobs.launcher import PLAYGROUND_ROOT

from . import records
from .study import budget_left, load, register_worker, stop_requested, update_worker

# The storage URL travels to spawned workers in the environment, not on the command line, where
# any user of the machine could read a database password (ps).
STORAGE_ENV = "TRAINDIAG_SWEEP_STORAGE"
WORKERS_LOG = "workers.log"  # in the study's folder: what every worker of this machine printed
TRIALS_LOCK = ".trials.lock"  # in the study's folder: serialises taking a trial between local workers

# Worker processes this process started; polling them reaps them, so a finished worker is not
# kept "alive" as a zombie.
_CHILDREN: list[subprocess.Popen] = []
_CHILDREN_LOCK = threading.Lock()


class _Log:
    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def __call__(self, message: str) -> None:
        self.stream.write(f"{time.strftime('%H:%M:%S')} worker {os.getpid()}: {message}\n")
        self.stream.flush()


def run_worker(storage_url: str, study_name: str, runs_dir, *, worker_index: int = 0,
               stop: threading.Event | None = None, log=None, max_trials: int | None = None, pruner=None,
               stop_poll_s: float | None = None) -> int:
    """Train trials of the study until its budget is used, the sweep is stopped, `stop` is set or
    this worker has run `max_trials`; returns how many trials it ran. pruner: instead of the one
    the study's settings name."""
    from .trainer import STOP_POLL_S, PlaygroundObjective

    log = log or _Log()
    stop = stop if stop is not None else threading.Event()
    study, spec = load(storage_url, study_name, worker_index=worker_index, pruner=pruner)
    key = register_worker(study, str(Path(runs_dir).expanduser().resolve()))
    lock = _AskLock(records.study_dir(runs_dir, study_name))
    objective = PlaygroundObjective(spec, runs_dir, storage_url=storage_url, stop=stop, log=log,
                                    stop_poll_s=stop_poll_s or STOP_POLL_S, started=lock.release)
    ran = 0
    log(f"joined study {study_name!r} ({spec.n_trials} trials, pruner {spec.pruner}, sampler {spec.sampler})")
    try:
        while not stop.is_set() and (max_trials is None or ran < max_trials):
            if stop_requested(study):
                log("the sweep was stopped")
                break
            # The budget check and the new trial's creation happen under a lock shared by this
            # machine's workers (released as soon as the objective has its trial), so they never
            # both take the last trial; workers on other machines can overshoot by one each.
            lock.acquire()
            try:
                if budget_left(study, spec) <= 0:
                    log("the budget is used up")
                    break
                study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False)
            finally:
                lock.release()
            ran += 1
            update_worker(study, key, trials=ran)
    finally:
        update_worker(study, key, ended=time.time(), trials=ran)
        log(f"leaves after {ran} trial{'s' if ran != 1 else ''}")
    return ran


class _AskLock:
    """An exclusive flock on <study folder>/.trials.lock, held from the budget check until the
    objective starts its trial. Releasing twice is harmless."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / TRIALS_LOCK
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            if fcntl is not None:
                fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError:  # a file system without locks: the budget may be overshot by one
            self.release()

    def release(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)  # releases the flock


def worker_main(storage_url: str, study_name: str, runs_dir, *, worker_index: int = 0) -> int:
    """A worker process: SIGTERM and SIGINT stop it cleanly (the running trial ends at its next
    step as stopped); returns the exit code."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the worker logs one line per trial itself
    stop = threading.Event()

    def handle(signum, frame):
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handle)
    run_worker(storage_url, study_name, runs_dir, worker_index=worker_index, stop=stop)
    return 0


def spawn(storage_url: str, study_name: str, runs_dir, n: int, *, threads: int | None = None,
          python: str | None = None, first_index: int = 0) -> list[subprocess.Popen]:
    """Start `n` worker processes on this machine (each in its own session, output appended to
    <runs>/<study>/workers.log); returns them at once."""
    folder = records.study_dir(runs_dir, study_name)
    folder.mkdir(parents=True, exist_ok=True)
    env = child_env(threads=threads)
    env[STORAGE_ENV] = storage_url
    procs = []
    with open(folder / WORKERS_LOG, "ab") as out:
        for i in range(n):
            argv = [python or sys.executable, "-m", "playground", "sweep", "--worker", f"--study={study_name}",
                    f"--runs-dir={Path(runs_dir).expanduser().resolve()}", f"--worker-index={first_index + i}"]
            procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                          cwd=str(PLAYGROUND_ROOT), env=env, close_fds=True,
                                          start_new_session=True))
    with _CHILDREN_LOCK:
        _CHILDREN.extend(procs)
    return procs


def local_worker_pids(storage_url: str) -> set[int]:
    """Pids of the sweep workers alive on this machine, over every study of the storage (a SQLite
    file that does not exist yet holds none, and is not created by looking)."""
    from .storage import is_sqlite, open_storage
    from .study import workers

    if is_sqlite(storage_url):
        path = storage_url[len("sqlite:///"):]
        if path != ":memory:" and not os.path.isfile(path):
            return set()
    return {w.pid for s in open_storage(storage_url).get_all_studies()
            for w in workers(None, s.user_attrs) if w.alive}


def reap() -> int:
    """Poll the workers this process started (reaping the ended ones); how many still run."""
    with _CHILDREN_LOCK:
        _CHILDREN[:] = [p for p in _CHILDREN if p.poll() is None]
        return len(_CHILDREN)


def terminate(procs, *, grace_s: float = 10.0) -> None:
    """SIGTERM workers (their running trials stop at the next step), SIGKILL those still there
    after `grace_s`."""
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except OSError:
                pass
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()
