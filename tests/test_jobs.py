"""Training jobs (the `jobs` package behind the Train page): the one launcher, real
`python -m playground train` processes, safe run folder names, the concurrency limit, clean stop,
forced stop, rediscovery after an app restart, and runs left "running" by a dead process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import runstore
from jobs import (JOBS_LOCK, JobError, JobLimitError, JobManager, LaunchError, default_max_jobs, launch, new_run_dir,
                  slugify, wait_for)
from jobs import launcher
from jobs import supervisor
from playground.config import Config, ConfigError
from runstore.schema import JOB_FILE

TINY = dict(workload="spirals", epochs=1, batch_size=100, eval_every=5, probe_every=5)  # 15 steps
LONG = dict(workload="spirals", epochs=3000, batch_size=100, eval_every=50, probe_every=50)  # minutes


def _forget_children():
    """Simulate an app restart: the new app process holds no Popen handles of the old one."""
    with supervisor._CHILDREN_LOCK:
        supervisor._CHILDREN.clear()


def test_launch_trains_every_field_of_the_config_in_its_own_process(tmp_path):
    """The one launcher (the job manager starts every job through it): an argument list, the
    Config in the run directory, the output in its log, values starting with "-" kept as values."""
    cfg = Config(workload="spirals", train_subset=64, batch_size=32, epochs=1, lr=3e-4, normalize_inputs=False,
                 device="cpu")
    proc = launch(cfg, tmp_path / "r", name="--lr 5", description="launched")
    assert proc.args[1:4] == ["-m", "playground", "train"]
    assert proc.wait(timeout=120) == 0
    run = runstore.load_run(tmp_path / "r")
    assert run.status == "finished" and run.meta["description"] == "launched" and run.meta["name"] == "--lr 5"
    assert Config.from_dict(run.hparams) == cfg  # every field travelled, and "--lr 5" stayed a name
    assert f"finished: {tmp_path / 'r'}" in runstore.log_tail(tmp_path / "r", 5)
    with pytest.raises(ConfigError, match="lr"):
        launch(Config(lr=-1.0), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("name,expected", [
    ("../../etc/passwd", "etc-passwd"), ("/abs/path", "abs-path"), ("..", "run"), ("", "run"),
    ("LR 0.5 · test", "lr-0-5-test"), ("Ünïcödé run", "unicode-run"), (".hidden", "hidden"),
    ("a" * 100, "a" * 40), ("-rf --no-preserve-root", "rf-no-preserve-root"),
])
def test_slugify_never_makes_a_path(name, expected):
    assert slugify(name) == expected


def test_new_run_dirs_stay_inside_the_runs_folder_and_never_collide(tmp_path):
    a = new_run_dir(tmp_path / "runs", "../../escape", now=0)
    b = new_run_dir(tmp_path / "runs", "../../escape", now=0)
    assert a != b
    for d in (a, b):
        assert d.parent == (tmp_path / "runs").resolve() and d.is_dir()
    assert not (tmp_path / "escape").exists()


def test_default_limit_is_half_the_cores():
    assert [default_max_jobs(c) for c in (1, 2, 3, 8, 16)] == [1, 1, 1, 4, 8]
    with pytest.raises(JobError, match="whole number from 1"):
        JobManager("unused", devices=["cpu"], max_jobs=0)


def test_a_short_job_trains_the_given_config_into_its_run_dir(tmp_path):
    mgr = JobManager(tmp_path / "runs", devices=["cpu"], max_jobs=1)
    config = Config(**TINY, lr=0.02, optimizer="momentum", dropout=0.1)
    job = mgr.start(config, name="tiny run", description="a test")
    assert job.run_dir.parent == (tmp_path / "runs").resolve() and job.run_dir.name.startswith("tiny-run-")
    record = json.loads((job.run_dir / JOB_FILE).read_text())
    assert isinstance(record["argv"], list) and record["argv"][1:4] == ["-m", "playground", "train"]
    assert Config.load(job.run_dir / "config.json") == config  # the file the job's argv names
    assert f"--config={job.run_dir / 'config.json'}" in record["argv"]
    done = wait_for(mgr, job.run_dir, lambda j: not j.live, timeout=90)
    assert done.state == "finished", (done.error, runstore.log_tail(job.run_dir))
    assert done.step == done.total == 15 and done.fraction == 1.0
    run = runstore.load_run(job.run_dir)
    assert run.hparams == config.to_dict()
    assert run.meta["name"] == "tiny run" and run.meta["description"] == "a test"
    assert len(run.series("train/loss")) == 15
    assert (job.run_dir / "train.log").is_file()


def test_invalid_config_starts_nothing(tmp_path):
    mgr = JobManager(tmp_path / "runs", devices=["cpu"])
    with pytest.raises(ConfigError, match="lr"):
        mgr.start(Config(lr=-1.0))
    with pytest.raises(ConfigError, match="device: 'cuda' is not present"):
        mgr.start(Config(device="cuda"))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert mgr.jobs() == []


def test_limit_stop_and_rediscovery_after_an_app_restart(tmp_path):
    runs = tmp_path / "runs"
    mgr = JobManager(runs, devices=["cpu"], max_jobs=1)
    job = mgr.start(Config(**LONG), name="long")
    with pytest.raises(JobLimitError, match="1 training job running, limit 1: no slot is free"):
        mgr.start(Config(**TINY))
    running = wait_for(mgr, job.run_dir, lambda j: j.state == "running" and (j.step or 0) > 0, timeout=90)
    assert 0 < running.fraction < 1 and running.eta_s() is not None

    # The app restarts: a new manager, no process handles, finds the job from the folder alone.
    _forget_children()
    again = JobManager(runs, devices=["cpu"], max_jobs=1)
    [found] = again.jobs()
    assert found.run_dir == job.run_dir and found.state == "running"

    stopped_at = again.stop(found.run_dir)
    assert stopped_at.stop_requested
    final = wait_for(again, job.run_dir, lambda j: not j.live, timeout=30)
    assert final.state == "stopped"
    run = runstore.load_run(job.run_dir)
    assert run.status == "stopped" and 0 < run.last_step < final.total
    assert len(run.series("train/loss")) > 0  # the data is kept
    assert again.live_jobs() == []


def test_a_killed_process_is_reported_not_finished(tmp_path):
    mgr = JobManager(tmp_path / "runs", devices=["cpu"], max_jobs=1)
    job = mgr.start(Config(**LONG), name="doomed")
    wait_for(mgr, job.run_dir, lambda j: j.state == "running", timeout=90)
    os.kill(job.pid, signal.SIGKILL)  # e.g. the OOM killer: no chance to close the run
    final = wait_for(mgr, job.run_dir, lambda j: not j.live, timeout=30)
    assert final.state == "killed" and "Not finished" in final.error and "SIGKILL" in final.error
    meta = runstore.read_meta(job.run_dir)
    assert meta["status"] == "killed"  # marked in run.json, so every reader agrees


def test_left_running_by_a_dead_process_is_marked_killed_on_restart(tmp_path):
    """A run dir from an earlier app session whose process is gone (here: a pid that has exited)."""
    runs = tmp_path / "runs"
    d = new_run_dir(runs, "old")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    (d / JOB_FILE).write_text(json.dumps({"pid": dead.pid, "host": host, "started": time.time() - 60, "name": "old"}))
    runstore.write_json_atomic(d / "run.json", {"status": "running", "pid": dead.pid, "host": host,
                                                "created": time.time() - 59, "name": "old", "hparams": {}})
    [job] = JobManager(runs, devices=["cpu"]).jobs()
    assert job.state == "killed" and not job.live
    assert runstore.read_meta(d)["status"] == "killed"


def test_a_crash_before_recording_shows_its_error_and_log(tmp_path):
    """The manager believes there is a GPU (as on the device machine) but the training process
    finds none: it exits with the config error, and the run says so."""
    mgr = JobManager(tmp_path / "runs", devices=["cuda", "cpu"])
    job = mgr.start(Config(**TINY, device="cuda"))
    final = wait_for(mgr, job.run_dir, lambda j: not j.live, timeout=90)
    if final.state == "finished":
        pytest.skip("this machine has a CUDA device")
    assert final.state == "failed"
    assert "device: 'cuda' is not present" in final.error and "exited with status 2" in final.error
    assert "device: 'cuda' is not present" in runstore.log_tail(job.run_dir, 5)
    run = runstore.load_run(job.run_dir)  # listed like any run, with the reason
    assert run.status == "failed" and run.hparams["device"] == "cuda"


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path, monkeypatch):
    stub = tmp_path / "stubborn.py"
    stub.write_text(textwrap.dedent("""
        import json, os, signal, socket, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        run_dir = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--run-dir="))
        with open(os.path.join(run_dir, "run.json"), "w") as f:
            json.dump({"status": "running", "pid": os.getpid(), "host": socket.gethostname(),
                       "created": time.time(), "name": "stubborn", "hparams": {}}, f)
        print("ignoring SIGTERM", flush=True)
        time.sleep(120)
    """))
    real_popen = subprocess.Popen

    def popen(argv, **kw):
        # the manager's own argument list, run by a stub that ignores SIGTERM instead of the playground
        assert argv[1:4] == ["-m", "playground", "train"]
        return real_popen([argv[0], str(stub)] + argv[1:], **kw)

    mgr = JobManager(tmp_path / "runs", devices=["cpu"], grace_s=1.0)
    monkeypatch.setattr(launcher.subprocess, "Popen", popen)
    job = mgr.start(Config(**TINY), name="stubborn")
    monkeypatch.undo()
    wait_for(mgr, job.run_dir, lambda j: j.state == "running", timeout=30)
    t0 = time.monotonic()
    mgr.stop(job.run_dir)
    time.sleep(0.5)
    assert mgr.info(job.run_dir).live  # SIGTERM alone did not end it
    final = wait_for(mgr, job.run_dir, lambda j: not j.live, timeout=20)
    assert time.monotonic() - t0 >= 0.9  # the grace period was given before the SIGKILL
    assert final.state == "killed" and "stopped by force" in final.error


def _sleeper_launch(arrived: list, second: threading.Event):
    """A stand-in for jobs.launch: a process that sleeps, named like a training process of its run
    directory (so the manager recognises it); the first caller waits (1 s at most) for a second one
    to arrive, which is what happens when two apps start a job at the same moment."""
    def fake(config, run_dir, **kw):
        arrived.append(run_dir)
        if len(arrived) == 1:
            second.wait(1.0)
        else:
            second.set()
        run_dir.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "playground", str(run_dir)],
                                start_new_session=True)
    return fake


def _already_set() -> threading.Event:
    """For a single start: nobody to wait for."""
    event = threading.Event()
    event.set()
    return event


def test_the_job_limit_holds_across_managers_of_one_folder(tmp_path, monkeypatch):
    """Two apps (two managers, each with its own thread lock) start a job at once with a limit of 1."""
    arrived, second = [], threading.Event()
    monkeypatch.setattr(supervisor, "launch", _sleeper_launch(arrived, second))
    managers = [JobManager(tmp_path / "runs", devices=["cpu"], max_jobs=1) for _ in range(2)]
    outcomes = []

    def start(mgr, name):
        try:
            outcomes.append(mgr.start(Config(**TINY), name=name))
        except JobLimitError as e:
            outcomes.append(e)
    threads = [threading.Thread(target=start, args=(m, f"app{i}")) for i, m in enumerate(managers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        started = [o for o in outcomes if not isinstance(o, Exception)]
        assert len(outcomes) == 2 and len(started) == 1, outcomes
        assert [j.run_dir for j in managers[1].live_jobs()] == [started[0].run_dir]
        assert len(arrived) == 1  # the second app never got as far as starting a process
    finally:
        for job in managers[0].jobs():
            with supervisor._CHILDREN_LOCK:
                proc = supervisor._CHILDREN.pop(str(job.run_dir), None)
            if proc is not None:
                proc.kill()
                proc.wait()


def test_a_start_waits_for_another_process_holding_the_folder_lock(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    runs.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, sys, time
        f = open({str(runs / JOBS_LOCK)!r}, "a")
        fcntl.flock(f, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(supervisor, "LOCK_TIMEOUT_S", 0.3)
        mgr = JobManager(runs, devices=["cpu"], max_jobs=4)
        with pytest.raises(JobError, match="another app is starting a job"):
            mgr.start(Config(**TINY), name="waits")
        assert [p.name for p in runs.iterdir()] == [JOBS_LOCK]  # nothing was created meanwhile
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("field", ["name", "description"])
@pytest.mark.parametrize("bad", ["a\0b", "bell\x07", "esc\x1b[31m", "del\x7f", "broken\ud800"])
def test_control_characters_in_a_name_or_description_create_nothing(tmp_path, field, bad):
    mgr = JobManager(tmp_path / "runs", devices=["cpu"], max_jobs=1)
    with pytest.raises(JobError, match=field):
        mgr.start(Config(**TINY), **{field: bad})
    assert not (tmp_path / "runs").exists() or not [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    with pytest.raises(LaunchError, match=field):
        launch(Config(**TINY), tmp_path / "direct", **{field: bad})
    assert not (tmp_path / "direct").exists()


def test_line_breaks_and_tabs_in_a_description_are_kept_as_spaces(tmp_path, monkeypatch):
    monkeypatch.setattr(supervisor, "launch", _sleeper_launch([], _already_set()))
    mgr = JobManager(tmp_path / "runs", devices=["cpu"], max_jobs=2)
    job = mgr.start(Config(**TINY), name="two\nlines", description="a\tb\r\nc")
    try:
        assert job.name == "two lines" and job.description == "a b c"
    finally:
        with supervisor._CHILDREN_LOCK:
            proc = supervisor._CHILDREN.pop(str(job.run_dir))
        proc.kill()
        proc.wait()


def test_a_job_that_cannot_be_recorded_is_not_left_running(tmp_path, monkeypatch):
    monkeypatch.setattr(supervisor, "launch", _sleeper_launch([], _already_set()))

    def full_disk(path, data):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(supervisor, "write_json_atomic", full_disk)
    mgr = JobManager(tmp_path / "runs", devices=["cpu"], max_jobs=1)
    with pytest.raises(JobError, match="could not record the job .*No space left on device"):
        mgr.start(Config(**TINY), name="unrecorded")
    runs = str((tmp_path / "runs").resolve())
    assert not [d for d in supervisor._CHILDREN if d.startswith(runs)] and mgr.live_jobs() == []
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [JOBS_LOCK]  # no orphan folder either


def test_hostile_job_records_are_listed_not_fatal(tmp_path):
    runs = tmp_path / "runs"
    bad = {"pid": 2 ** 70, "host": socket.gethostname(), "started": "yesterday", "grace_s": "long",
           "name": ["x"], "description": None, "stop_requested": 1e300, "forced_stop": "now"}
    for i, record in enumerate([json.dumps(bad), "[" * 5000 + "]" * 5000, "null", "{not json"]):
        d = new_run_dir(runs, f"bad{i}")
        (d / JOB_FILE).write_text(record)
    d = new_run_dir(runs, "fifo")
    os.mkfifo(d / JOB_FILE)  # opening it to read would block until someone writes
    d = new_run_dir(runs, "zero")
    os.symlink("/dev/zero", d / JOB_FILE)
    mgr = JobManager(runs, devices=["cpu"])
    [job] = mgr.jobs()  # the one whose record is an object; the others are not jobs
    assert job.pid is None and job.started == 0.0 and not job.live and job.state == "failed"
    assert job.name.startswith("bad0")


def test_jobs_never_imports_torch_streamlit_or_plotly():
    code = ("import sys, jobs; bad = {'torch', 'streamlit', 'plotly'} & {m.split('.')[0] for m in sys.modules}; "
            "print(sorted(bad)); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stdout + out.stderr


def _sleeper(*argv: str) -> subprocess.Popen:
    """A process that only sleeps (a stand-in for a training job or sweep worker: no torch)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", *argv])


def fake_job(runs, name: str) -> subprocess.Popen:
    """A live job as the manager finds it from the folder alone: job.json naming a process of this
    host whose command line holds "playground" and the run folder (it has not written run.json yet:
    "starting")."""
    run_dir = new_run_dir(runs, name)
    proc = _sleeper("playground", str(run_dir))
    cmdline = f"/proc/{proc.pid}/cmdline"
    deadline = time.monotonic() + 30  # until it runs its own command (before, /proc shows the parent's)
    while os.path.exists(cmdline) and str(run_dir).encode() not in open(cmdline, "rb").read():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    (run_dir / JOB_FILE).write_text(json.dumps({"job_id": name, "pid": proc.pid, "host": socket.gethostname(),
                                                "started": time.time(), "name": name}))
    return proc


def test_one_limit_covers_training_jobs_and_sweep_workers(tmp_path):
    """Training jobs and the processes the manager is told about (this machine's sweep workers)
    share the limit, both ways: a job does not start while workers fill it, workers do not start
    beyond the free slots, and workers count from the moment they start."""
    runs = tmp_path / "runs"
    workers: set[int] = set()  # what the sweep storage would report
    mgr = JobManager(runs, devices=["cpu"], max_jobs=3, other_pids=lambda: set(workers))
    procs = [fake_job(runs, "a"), fake_job(runs, "b")]
    try:
        assert mgr.slots().text() == "2 training jobs running, limit 3" and mgr.slots().free == 1
        with pytest.raises(JobLimitError, match="2 training jobs running, limit 3: 1 slot free for 2 sweep workers"):
            mgr.start_others(2, lambda: pytest.fail("no worker may start beyond the limit"))
        [worker] = mgr.start_others(1, lambda: [_sleeper()])  # counted at once, before it registers anywhere
        procs.append(worker)
        slots = mgr.slots()
        assert (slots.jobs, slots.others, slots.free) == (2, 1, 0)
        assert slots.text() == "2 training jobs and 1 sweep worker running, limit 3"
        with pytest.raises(JobLimitError, match="2 training jobs and 1 sweep worker running, limit 3: no slot is free"):
            mgr.start(Config(**TINY))
        workers.add(worker.pid)  # it registered with its study: still one worker, not two
        assert mgr.slots().others == 1
        other_app = JobManager(runs, devices=["cpu"], max_jobs=3, other_pids=lambda: set(workers))
        assert other_app.slots().used == 3  # another app sees the worker through the storage
        worker.kill()
        worker.wait()
        workers.clear()
        assert mgr.slots().free == 1
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert mgr.slots().used == 0
