"""The job supervisor: starts, lists and stops training jobs, each a `python -m playground train`
process (jobs.launch) recording one run directory directly inside a runs folder.

No Streamlit (the dashboard's Train page wraps it) and no torch: the training runs in its own
process, so the app stays responsive, a crash cannot take the app down, and GPU memory is
released when the process ends.

Everything the supervisor knows lives in the run directories themselves, so a page reload, a
second browser tab or a restarted app finds the same jobs again. Besides what the training
process records (runstore), a job's folder <runs>/<slug>-<YYYYmmdd-HHMMSS>/ holds the job record
(schema.JOB_FILE: pid, command, start time, stop request), the Config it trains
(schema.CONFIG_FILE) and the process's output (schema.LOG_FILE).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import unicodedata
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: the limit then holds within one app process only
    fcntl = None

import runstore
from playground.config import Config, ConfigError
from runstore import effective_status, is_run_dir, pid_alive, schema, write_json_atomic
from runstore.files import read_json_or_none
from runstore.liveness import valid_pid
from runstore.meta import clean_time

from .launcher import PLAYGROUND_ROOT, LaunchError, argument_text, child_env, launch

STARTING = "starting"  # the process is up but has not created run.json yet (importing torch, loading data)
LIVE_STATES = (STARTING, schema.RUNNING)
# Seconds a job gets to stop cleanly after SIGTERM (it stops at the next step and closes its run)
# before it is killed.
DEFAULT_GRACE_S = 10.0
MAX_JOBS_LIMIT = 64
# The lock file in a runs folder that every app starting jobs there holds (flock) while it counts
# the live jobs and records a new one, so the limit holds across app processes, not only threads.
JOBS_LOCK = ".jobs.lock"
# How long start() waits for another app that is starting a job in the same runs folder.
LOCK_TIMEOUT_S = 30.0
# The device probe is a fixed program (no user input): it imports torch in a child process so the
# app itself never does.
_DEVICE_PROBE = "import json; from playground.config import available_devices; print(json.dumps(available_devices()))"


class JobError(RuntimeError):
    """A job could not be started or stopped; the message says why in the user's terms."""


class JobLimitError(JobError):
    """As many jobs as the concurrency limit allows are already training."""


@dataclass(frozen=True)
class Slots:
    """The concurrency limit and what holds its slots: this folder's training jobs and the other
    processes the manager is told about (a sweep's workers on this machine)."""

    limit: int
    jobs: int
    others: int
    others_label: str

    @property
    def used(self) -> int:
        return self.jobs + self.others

    @property
    def free(self) -> int:
        return max(0, self.limit - self.used)

    @property
    def others_words(self) -> str:
        """"1 sweep worker", "2 sweep workers"."""
        label = self.others_label[:-1] if self.others == 1 and self.others_label.endswith("s") else self.others_label
        return f"{self.others} {label}"

    def text(self) -> str:
        """"1 training job and 2 sweep workers running, limit 4"."""
        jobs = f"{self.jobs} training job{'s' if self.jobs != 1 else ''}"
        others = f" and {self.others_words}" if self.others else ""
        return f"{jobs}{others} running, limit {self.limit}"


def cpu_cores() -> int:
    """CPU cores this process may use (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_max_jobs(cores: int | None = None) -> int:
    """Half the cores, at least one: each job's PyTorch uses several threads, so more jobs than
    that would only slow every job down."""
    return max(1, (cores or cpu_cores()) // 2)


def slugify(text: str, *, max_len: int = 40) -> str:
    """Lower-case ASCII letters, digits and dashes only, e.g. "LR 0.5 / test" -> "lr-0-5-test".
    Nothing the user types can become a path separator, "..", or a hidden file name."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_len].strip("-") or "run"


def new_run_dir(runs_dir: str | os.PathLike, name: str, *, now: float | None = None) -> Path:
    """Create and return a fresh, uniquely named run directory directly inside `runs_dir`."""
    root = Path(runs_dir).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now if now is not None else time.time()))
    base = f"{slugify(name)}-{stamp}"
    for i in range(1, 1000):
        candidate = root / (base if i == 1 else f"{base}-{i}")
        if candidate.resolve().parent != root:  # cannot happen with a slug; a last line of defence
            raise JobError(f"refusing to create {candidate}: it is not inside the runs folder {root}.")
        try:
            candidate.mkdir()  # atomic claim: two sessions starting at once get different folders
        except FileExistsError:
            continue
        return candidate
    raise JobError(f"could not find a free folder name for {base!r} in {root}.")


def _read_json(path: Path) -> dict | None:
    """A small JSON object file of a job (never blocks on a FIFO, never reads a huge file)."""
    return read_json_or_none(path)


def _read_job(path: Path) -> dict | None:
    """job.json with the types the supervisor relies on (it is a file anyone can edit): a valid pid
    or None, times as floats or None, texts as strings."""
    job = _read_json(path)
    if job is None:
        return None
    out = dict(job)
    out["pid"] = job.get("pid") if valid_pid(job.get("pid")) else None
    for key in ("host", "parent", "job_id"):
        out[key] = job.get(key) if isinstance(job.get(key), str) else None
    for key in ("name", "description"):
        out[key] = job.get(key) if isinstance(job.get(key), str) else ""
    out["started"] = clean_time(job.get("started")) or 0.0
    for key in ("stop_requested", "forced_stop"):
        out[key] = clean_time(job.get(key))
    grace = job.get("grace_s")
    out["grace_s"] = float(grace) if isinstance(grace, (int, float)) and not isinstance(grace, bool) \
        and math.isfinite(grace) and 0 <= grace <= 86_400 else None
    return out


def _cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return None


def _exit_words(code: int | None) -> str:
    if code is None:
        return "it exited (exit status unknown: the app that started it was restarted)"
    if code < 0:
        try:
            return f"it was ended by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"it was ended by signal {-code}"
    return f"it exited with status {code}"


@dataclass(frozen=True)
class JobInfo:
    """One training job as found on disk: its state, progress and what it trains."""

    run_dir: Path
    name: str
    state: str  # starting | running | finished | failed | stopped | killed
    pid: int | None
    started: float
    config: dict = field(default_factory=dict)
    parent: str | None = None
    description: str = ""
    step: int | None = None
    total: int | None = None
    recording_since: float | None = None  # run.json "created": when training (not startup) began
    last_flush: float | None = None
    error: str | None = None
    stop_requested: float | None = None

    @property
    def live(self) -> bool:
        """True while the process is starting or training."""
        return self.state in LIVE_STATES

    @property
    def fraction(self) -> float:
        """Share of the planned steps done, 0..1 (0 while starting)."""
        if not self.total or self.step is None or self.step < 0:
            return 0.0
        return min(1.0, self.step / self.total)

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds until the last step at the pace so far, or None before there is a pace."""
        if not self.live or not self.total or not self.step or self.step <= 0 or not self.recording_since:
            return None
        ref = self.last_flush or time.time()
        elapsed = ref - self.recording_since
        if elapsed <= 0:
            return None
        left = (self.total - self.step) * elapsed / self.step
        return max(0.0, left - max(0.0, (now or time.time()) - ref))

    def elapsed_s(self, now: float | None = None) -> float:
        """Seconds since the job was started."""
        return max(0.0, (now or time.time()) - self.started)


# Processes this app started, by run directory. Polling them reaps them, so a job that died is
# not kept "alive" as a zombie. Process-wide: shared by every session and every manager.
_CHILDREN: dict[str, subprocess.Popen] = {}
_CHILDREN_LOCK = threading.RLock()


class JobManager:
    """Starts, lists and stops the training jobs of one runs folder.

    max_jobs: how many may train at once (default: half the CPU cores). devices: the devices
    this machine trains on, e.g. ["cuda", "cpu"]; None probes them once in a background process.
    other_pids: a callable returning the pids of other training processes on this machine that
    hold slots of the same limit (the dashboard passes the sweep workers of the runs folder's
    study storage; jobs/ does not know sweeps), named others_label in messages. Processes
    started through start_others() count from the moment they start, before they show up there.
    """

    def __init__(self, runs_dir: str | os.PathLike, *, max_jobs: int | None = None,
                 grace_s: float = DEFAULT_GRACE_S, python: str | None = None, devices: list[str] | None = None,
                 other_pids=None, others_label: str = "sweep workers"):
        self.runs_dir = Path(runs_dir).expanduser().resolve()
        self.grace_s = float(grace_s)
        self.python = python or sys.executable
        self.cores = cpu_cores()
        self._max_jobs = default_max_jobs(self.cores)
        if max_jobs is not None:
            self.max_jobs = max_jobs
        self._lock = threading.RLock()
        self._other_pids = other_pids
        self.others_label = others_label
        self._started_others: list = []  # processes start_others() started, until they end
        self._devices: list[str] | None = list(devices) if devices is not None else None
        self.device_note: str | None = None
        self._probe: threading.Thread | None = None
        if self._devices is None:
            self._probe = threading.Thread(target=self._probe_devices, name="device-probe", daemon=True)
            self._probe.start()

    # -- settings --------------------------------------------------------------------------------
    @property
    def max_jobs(self) -> int:
        """How many jobs may train at the same time."""
        return self._max_jobs

    @max_jobs.setter
    def max_jobs(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_JOBS_LIMIT:
            raise JobError(f"the limit of parallel jobs must be a whole number from 1 to {MAX_JOBS_LIMIT}, "
                           f"got {value!r}.")
        self._max_jobs = value

    # -- devices ---------------------------------------------------------------------------------
    def _threads(self) -> int:
        """Threads per job: the cores shared out between the jobs that may run at once."""
        return max(1, self.cores // self._max_jobs)

    def _probe_devices(self) -> None:
        try:
            out = subprocess.run([self.python, "-c", _DEVICE_PROBE], capture_output=True, text=True, timeout=180,
                                 env=child_env(threads=self._threads()), cwd=str(PLAYGROUND_ROOT))
            found = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else None
            if not (isinstance(found, list) and all(isinstance(d, str) for d in found)):
                raise ValueError((out.stderr or "no output").strip().splitlines()[-1:])
            self._devices = found if "cpu" in found else found + ["cpu"]
        except Exception as e:  # noqa: BLE001 - any failure means: train on the CPU
            self._devices = ["cpu"]
            self.device_note = f"Could not check for GPUs ({type(e).__name__}: {e}); only the CPU is offered."

    def devices(self, *, wait: float = 0.0) -> list[str] | None:
        """Devices present here (e.g. ["cuda", "cpu"]), or None while they are still being probed."""
        if self._devices is None and self._probe is not None and wait > 0:
            self._probe.join(wait)
        return list(self._devices) if self._devices is not None else None

    # -- starting --------------------------------------------------------------------------------
    def start(self, config: Config, *, name: str = "", description: str = "", parent: str | None = None) -> JobInfo:
        """Validate `config`, create a run directory and start training it in a new process.

        Raises ConfigError for an invalid config (nothing is created) and JobError/JobLimitError
        when the job cannot start.
        """
        if not isinstance(config, Config):
            raise ConfigError(f"expected a playground Config, got {type(config).__name__}.")
        config = config.validate(check_device=False)
        if config.device in ("cuda", "mps"):
            present = self.devices(wait=180) or ["cpu"]
            if config.device not in present:
                raise ConfigError(f"device: {config.device!r} is not present on this machine; available: "
                                  f"{', '.join(['auto'] + present)}.")
        try:  # before any folder exists: a NUL byte or a control character cannot be an argument
            name = " ".join(argument_text("name", name).split())[:120]
            description = " ".join(argument_text("description", description).split())[:500]
        except LaunchError as e:
            raise JobError(str(e)) from None
        parent_path = self._parent_path(parent)
        with self._folder_lock():
            slots = self.slots()
            if slots.free < 1:
                raise JobLimitError(f"{slots.text()}: no slot is free. Stop one (or raise the limit) and start again.")
            run_dir = new_run_dir(self.runs_dir, name or f"{config.workload}-{config.model}")
            return self._launch(run_dir, config, name or run_dir.name, description, parent_path)

    # -- the limit shared with other processes (sweep workers) -----------------------------------
    def other_pids(self) -> set[int]:
        """Live pids of the other processes holding slots: those other_pids reports and those
        start_others started that have not ended."""
        pids: set[int] = set()
        if self._other_pids is not None:
            try:
                pids = {int(p) for p in self._other_pids()}
            except Exception:  # noqa: BLE001 - an unreadable study storage must not block training jobs
                pids = set()
        with self._lock:
            # poll() reaps an ended child, so it is not counted as a zombie
            self._started_others = [p for p in self._started_others if p.poll() is None]
            return pids | {int(p.pid) for p in self._started_others}

    def slots(self) -> Slots:
        """The limit and what holds its slots now."""
        return Slots(self._max_jobs, len(self.live_jobs()), len(self.other_pids()), self.others_label)

    def start_others(self, n: int, start) -> list:
        """Start `n` processes that share the limit (sweep workers) with `start()` -> processes
        (subprocess.Popen), under the same lock as start(), so jobs and workers started at
        the same time by several tabs or apps never exceed it together. JobLimitError when fewer
        than `n` slots are free."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise JobError(f"the number of processes to start must be a whole number >= 1, got {n!r}.")
        with self._folder_lock():
            slots = self.slots()
            if n > slots.free:
                raise JobLimitError(f"{slots.text()}: {slots.free} slot{'s' if slots.free != 1 else ''} free for "
                                    f"{n} {self.others_label}. Stop something (or raise the limit on the Train page) "
                                    "and start again.")
            procs = list(start())
            with self._lock:
                self._started_others.extend(procs)
            return procs

    @contextmanager
    def _folder_lock(self):
        """Held while counting the live jobs and recording a new one: by this manager's threads (a
        thread lock) and by every app process on this runs folder (flock on JOBS_LOCK; locks of
        separate open() calls exclude each other even within one process)."""
        with self._lock:
            try:
                self.runs_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.runs_dir / JOBS_LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            except OSError as e:
                raise JobError(f"cannot start a job in {self.runs_dir}: {e.strerror or e}.") from None
            try:
                if fcntl is not None:
                    deadline = time.monotonic() + LOCK_TIMEOUT_S
                    while True:
                        try:
                            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                            break
                        except BlockingIOError:
                            if time.monotonic() >= deadline:
                                raise JobError(f"another app is starting a job in {self.runs_dir} and has not "
                                               f"finished within {LOCK_TIMEOUT_S:g} s; try again.") from None
                            time.sleep(0.05)
                        except OSError:  # a file system without flock (some network mounts)
                            break
                yield
            finally:
                os.close(fd)  # releases the flock

    def _parent_path(self, parent) -> str | None:
        if not parent:
            return None
        p = Path(str(parent)).expanduser()
        if not is_run_dir(p):
            raise JobError(f"the run to rerun from, {parent}, is not a run directory (any more).")
        return str(p.resolve())

    def _launch(self, run_dir: Path, config: Config, name: str, description: str, parent: str | None) -> JobInfo:
        started = time.time()
        try:
            proc = launch(config, run_dir, name=name, description=description, parent=parent, python=self.python,
                          threads=self._threads())
        except ConfigError:
            _remove_unstarted(run_dir)
            raise
        except (LaunchError, OSError, ValueError) as e:
            _remove_unstarted(run_dir)
            raise JobError(str(e)) from None
        with _CHILDREN_LOCK:
            _CHILDREN[str(run_dir)] = proc
        job = {"job_id": uuid.uuid4().hex[:12], "pid": proc.pid, "host": socket.gethostname(), "started": started,
               "argv": proc.args, "name": name, "description": description, "parent": parent,
               "config": schema.CONFIG_FILE, "stop_requested": None, "grace_s": self.grace_s}
        try:
            write_json_atomic(run_dir / schema.JOB_FILE, job)
        except OSError as e:  # e.g. a full disk: a job nobody can see or stop must not keep running
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # its session (launch starts one), helpers included
            except OSError:
                pass
            proc.kill()
            proc.wait()
            with _CHILDREN_LOCK:
                _CHILDREN.pop(str(run_dir), None)
            _remove_unstarted(run_dir)
            raise JobError(f"could not record the job in {run_dir} ({e.strerror or e}); it was stopped.") from None
        return self._info(run_dir, job)

    # -- listing ---------------------------------------------------------------------------------
    def _job_dir(self, run_dir: str | os.PathLike) -> Path | None:
        """The job folder `run_dir` names, if it is a job of this runs folder (else None)."""
        try:
            p = Path(run_dir).expanduser().resolve()
        except (OSError, RuntimeError):
            return None
        if p.parent != self.runs_dir or not (p / schema.JOB_FILE).is_file():
            return None
        return p

    def jobs(self) -> list[JobInfo]:
        """Every job started from the dashboard in this runs folder, newest first."""
        try:
            entries = list(os.scandir(self.runs_dir))
        except OSError:
            return []
        out = []
        for e in entries:
            if e.name.startswith(".") or not os.path.isfile(os.path.join(e.path, schema.JOB_FILE)):
                continue
            job = _read_job(Path(e.path) / schema.JOB_FILE)
            if job is not None:
                out.append(self._info(Path(e.path), job))
        out.sort(key=lambda j: j.started, reverse=True)
        return out

    def live_jobs(self) -> list[JobInfo]:
        """Jobs starting or training now."""
        return [j for j in self.jobs() if j.live]

    def info(self, run_dir: str | os.PathLike) -> JobInfo | None:
        """The job recording into `run_dir`, or None if that is not a job of this runs folder."""
        p = self._job_dir(run_dir)
        if p is None:
            return None
        job = _read_job(p / schema.JOB_FILE)
        return self._info(p, job) if job is not None else None

    def _alive(self, run_dir: Path, job: dict) -> tuple[bool, int | None]:
        """(is the job's process alive, its exit code if this app saw it end)."""
        with _CHILDREN_LOCK:
            proc = _CHILDREN.get(str(run_dir))
        if proc is not None:
            code = proc.poll()  # reaps it when it has ended
            return code is None, code
        pid = job.get("pid")
        if not valid_pid(pid) or job.get("host") != socket.gethostname():
            return False, None
        return self._owns(pid, run_dir), None

    @staticmethod
    def _owns(pid: int, run_dir: Path) -> bool:
        """Is `pid` alive and still our training process (not a new process that reused the pid)?"""
        if not pid_alive(pid):
            return False
        cmd = _cmdline(pid)
        if cmd is None:
            return not Path("/proc/self").exists()  # no /proc (macOS): trust the live pid
        return "playground" in cmd and str(run_dir) in cmd

    def _info(self, run_dir: Path, job: dict) -> JobInfo:
        alive, code = self._alive(run_dir, job)
        meta = runstore.read_meta_or_none(run_dir)
        stop_requested = job.get("stop_requested")
        if job.get("host") != socket.gethostname():
            # Started by an app on another machine (a shared folder): report, never touch.
            state = STARTING if meta is None else effective_status(meta, runstore.heartbeat(run_dir).last_flush)
            error = None if meta is None else meta.get("error")
        elif meta is None:
            if alive:
                state, error = STARTING, None
                self._escalate_if_due(run_dir, job, stop_requested)
            else:
                meta = self._record_early_end(run_dir, job, code)
        if meta is not None and job.get("host") == socket.gethostname():
            state = meta.get("status", schema.RUNNING)
            if state == schema.RUNNING and not alive:
                meta = self._record_killed(run_dir, job, code) or meta
                state = meta.get("status", schema.KILLED)
            elif state == schema.RUNNING:
                self._escalate_if_due(run_dir, job, stop_requested)
            error = meta.get("error")
        beat = runstore.heartbeat(run_dir) if meta is not None else runstore.Heartbeat()
        hp = (meta or {}).get("hparams") or _read_json(run_dir / schema.CONFIG_FILE) or {}
        total = (meta or {}).get("total_steps")
        if not isinstance(total, int):
            try:
                total = Config.from_dict(hp, validate=False).total_steps() if hp else None
            except Exception:  # noqa: BLE001 - a damaged config only loses the step total
                total = None
        return JobInfo(
            run_dir=run_dir, name=str((meta or {}).get("name") or job.get("name") or run_dir.name), state=state,
            pid=job.get("pid"), started=job.get("started") or 0.0, config=hp,
            parent=(meta or {}).get("parent") or job.get("parent"),
            description=str((meta or {}).get("description") or job.get("description") or ""),
            step=beat.last_step, total=total,
            recording_since=(meta or {}).get("created"), last_flush=beat.last_flush, error=error,
            stop_requested=stop_requested)

    def _record_early_end(self, run_dir: Path, job: dict, code: int | None) -> dict:
        """The process ended before it created run.json (a bad config, a crash while loading, or a
        stop during startup): write a run.json saying so, so the run lists with its reason."""
        if job.get("stop_requested"):
            status, error = schema.STOPPED, "stopped on request before training began"
        else:
            status = schema.FAILED
            error = f"The training process ended before it began recording: {_exit_words(code)}."
            last = runstore.log_tail(run_dir, 1)
            if last:
                error += f" Last log line: {last}"
        hp = _read_json(run_dir / schema.CONFIG_FILE) or {}
        with _CHILDREN_LOCK:
            return runstore.mark_never_started(
                run_dir, status, error=error, run_id=job.get("job_id"), name=job.get("name"),
                description=job.get("description") or "", created=job.get("started"), pid=job.get("pid"),
                host=job.get("host"), hparams=hp, workload=hp.get("workload"), parent=job.get("parent"))

    def _record_killed(self, run_dir: Path, job: dict, code: int | None) -> dict | None:
        """run.json still says "running" but the process is gone: mark the run "killed" (not finished)."""
        with _CHILDREN_LOCK:
            meta = runstore.read_meta_or_none(run_dir)  # re-read: it may have closed in the meantime
            if meta is None or meta.get("status") != schema.RUNNING:
                return meta
            if meta.get("host") not in (None, socket.gethostname()):
                return meta  # another machine's process: leave it to runstore.effective_status
            if job.get("forced_stop"):
                grace = job.get("grace_s") if job.get("grace_s") is not None else self.grace_s
                why = (f"stopped by force: the training process did not stop within {grace:g} s "
                       f"of the stop request, so it was killed")
            else:
                why = f"the training process ended without closing the run ({_exit_words(code)})"
            last = "" if job.get("forced_stop") else runstore.log_tail(run_dir, 1)
            return runstore.mark_killed(run_dir, f"Not finished: {why}." + (f" Last log line: {last}" if last else ""))

    # -- stopping --------------------------------------------------------------------------------
    def stop(self, run_dir: str | os.PathLike) -> JobInfo:
        """Ask a job to stop: SIGTERM now (it finishes the current step, closes its run as
        "stopped" and keeps its data), SIGKILL if it is still running after the grace period."""
        p = self._job_dir(run_dir)
        if p is None:
            raise JobError(f"{run_dir} is not a training job of the runs folder {self.runs_dir}.")
        job = _read_job(p / schema.JOB_FILE) or {}
        info = self._info(p, job)
        if not info.live:
            return info
        if not job.get("stop_requested"):
            job["stop_requested"] = time.time()
            write_json_atomic(p / schema.JOB_FILE, job)
        self._signal(p, job, signal.SIGTERM)
        timer = threading.Timer(self.grace_s, self._escalate, args=(p,))
        timer.daemon = True
        timer.start()
        return self._info(p, job)

    def _signal(self, run_dir: Path, job: dict, sig: int) -> bool:
        with _CHILDREN_LOCK:
            proc = _CHILDREN.get(str(run_dir))
        try:
            if proc is not None:
                if proc.poll() is not None:
                    return False
                if sig == signal.SIGKILL:
                    os.killpg(proc.pid, sig)  # the job's whole session, in case it started helpers
                else:
                    proc.send_signal(sig)
                return True
            pid = job.get("pid")
            if valid_pid(pid) and job.get("host") == socket.gethostname() and self._owns(pid, run_dir):
                if sig == signal.SIGKILL:
                    os.killpg(pid, sig)
                else:
                    os.kill(pid, sig)
                return True
        except (ProcessLookupError, PermissionError):
            return False
        return False

    def _escalate_if_due(self, run_dir: Path, job: dict, stop_requested) -> None:
        # Also covers an app restarted between the stop request and the end of its grace period.
        if isinstance(stop_requested, (int, float)) and time.time() - stop_requested > self.grace_s + 1:
            self._escalate(run_dir)

    def _escalate(self, run_dir: Path) -> None:
        """SIGKILL a job that ignored its stop request, then mark its run "killed"."""
        job = _read_job(run_dir / schema.JOB_FILE) or {}
        alive, _ = self._alive(run_dir, job)
        if not alive:
            return
        job["forced_stop"] = time.time()
        write_json_atomic(run_dir / schema.JOB_FILE, job)
        if self._signal(run_dir, job, signal.SIGKILL):
            with _CHILDREN_LOCK:
                proc = _CHILDREN.get(str(run_dir))
            if proc is not None:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        self._info(run_dir, job)  # records the outcome in run.json


def _remove_unstarted(run_dir: Path) -> None:
    """Remove the folder of a job whose process could not start (it holds only what launch() wrote),
    so no orphan folder is left behind."""
    ours = {schema.CONFIG_FILE, schema.LOG_FILE}
    try:
        entries = list(os.scandir(run_dir))
        if all(e.name in ours and e.is_file(follow_symlinks=False) for e in entries):
            for e in entries:
                os.unlink(e.path)
            os.rmdir(run_dir)
    except OSError:
        pass


def wait_for(manager: JobManager, run_dir, predicate, *, timeout: float = 60.0, poll: float = 0.2) -> JobInfo:
    """Poll a job until `predicate(info)` holds (for scripts and tests); TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    info = manager.info(run_dir)
    while time.monotonic() < deadline:
        info = manager.info(run_dir)
        if info is not None and predicate(info):
            return info
        time.sleep(poll)
    raise TimeoutError(f"job {run_dir} did not reach the expected state within {timeout:g} s (last: "
                       f"{info.state if info else 'not found'}).")
