"""Hostile run directories: whatever is on disk, reading a run yields a run (with warnings) or one
RunReadError, never another exception and never a hang; nothing the writer recorded is lost without
the reader saying so; a live run is never overwritten; a full disk is recorded; liveness survives
bogus pids and pid reuse.

The tests run as root in CI, where permission bits do not stop reads: "unreadable" is simulated by
making the system call fail with EACCES, as it does for any other user."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

import runstore
from runstore import schema
from runstore import tags as T

ROOT = Path(__file__).resolve().parents[1]
HOST = socket.gethostname()


def _run(path, n=20, *, name="r") -> Path:
    """A finished run of n loss values."""
    w = _live(path, n, name=name)
    w.close()
    return Path(path)


def _live(path, n=20, *, name="r") -> runstore.RunWriter:
    """A run still being written (the returned writer is open)."""
    w = runstore.RunWriter(path, {"name": name, "hparams": {"lr": 0.1}})
    w.write(runstore.Batch(scalars={T.TRAIN_LOSS: (np.arange(n), np.linspace(2, 1, n))}), last_step=n - 1)
    return w


def _within(fn, seconds=10.0, unblock=None):
    """fn() in a thread; fails the test (after unblocking the thread) if it has not returned in time."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = e
    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        if unblock is not None:
            unblock()
        pytest.fail(f"{fn} hung")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _meta_file(d: Path, text: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / schema.META_FILE).write_text(text)
    return d


def _total(path):
    """load_run that must either return a Run or raise RunReadError (anything else fails the test)."""
    try:
        return runstore.load_run(path)
    except runstore.RunReadError as e:
        assert str(e)
        return e


# -- 1. every read is total ---------------------------------------------------------------------
@pytest.mark.parametrize("text,kind", [("[]", "list"), ("null", "null"), ("1", "number"), ('"hello"', "string"),
                                       ("true", "boolean")])
def test_run_json_that_is_json_but_not_an_object(tmp_path, text, kind):
    d = _meta_file(tmp_path / "r", text)
    with pytest.raises(runstore.RunReadError, match=f"holds a JSON {kind}, not an object"):
        runstore.read_meta(d)
    assert runstore.read_meta_or_none(d) is None
    with pytest.raises(runstore.RunReadError):
        runstore.load_run(d)  # no numbers either: nothing to show
    _run(tmp_path / "with_db")
    (tmp_path / "with_db" / schema.META_FILE).write_text(text)
    run = runstore.load_run(tmp_path / "with_db")  # the numbers are still shown, with the reason
    assert len(run.series(T.TRAIN_LOSS)) == 20 and any("not an object" in w for w in run.warnings)
    assert run.status == schema.FINISHED  # stored in run.db too when the writer closed the run


def test_fields_of_the_wrong_type_are_dropped_with_a_warning(tmp_path):
    d = _run(tmp_path / "r")
    meta = json.loads((d / schema.META_FILE).read_text())
    meta.update({"status": ["x"], "hparams": "lr=0.1", "created": 1e20, "ended": 1e300, "pid": 2 ** 70,
                 "host": HOST, "name": 5, "description": None, "model": [], "total_steps": "10", "error": 3,
                 "world_size": True, "parent": {"a": 1}, "extra": "kept"})
    (d / schema.META_FILE).write_text(json.dumps(meta))
    clean = runstore.read_meta(d)
    assert clean["hparams"] == {} and clean["description"] == "" and clean["extra"] == "kept"
    for key in ("created", "ended", "pid", "name", "model", "total_steps", "error", "world_size", "parent"):
        assert key not in clean, key
    assert clean["status"] in schema.STATUSES
    run = runstore.load_run(d)
    assert run.status in schema.STATUSES and run.hparams == {} and run.name == "r"
    for field in ("status", "hparams", "created", "ended", "pid", "name"):
        assert any(repr(field) in w for w in run.warnings), (field, run.warnings)
    assert len(run.series(T.TRAIN_LOSS)) == 20


def test_times_and_numbers_are_usable_as_they_are_given(tmp_path):
    now = time.time()
    d = _meta_file(tmp_path / "r", json.dumps({"status": "finished", "created": now - 5, "ended": now,
                                               "total_steps": 10.0, "pid": 123, "n_classes": 3}))
    meta = runstore.read_meta(d)
    assert datetime.fromtimestamp(meta["created"]) < datetime.fromtimestamp(meta["ended"])
    assert meta["total_steps"] == 10 and isinstance(meta["total_steps"], int) and meta["pid"] == 123
    for bad in ("NaN", "Infinity", "-1", "1e20"):
        (d / schema.META_FILE).write_text(f'{{"status": "finished", "ended": {bad}}}')
        assert "ended" not in runstore.read_meta(d), bad


def test_strings_that_cannot_be_encoded_are_repaired(tmp_path):
    d = _meta_file(tmp_path / "r", '{"name": "a\\ud800b", "hparams": {"k": "\\udfff"}}')
    meta = runstore.read_meta(d)
    assert meta["name"] == "a\ufffdb" and meta["hparams"]["k"] == "\ufffd"
    json.dumps(meta, ensure_ascii=False).encode("utf-8")  # what every consumer does, one way or another


@pytest.mark.parametrize("depth", [100, 5000, 200_000])
def test_deeply_nested_json_is_a_read_error(tmp_path, depth):
    d = _meta_file(tmp_path / "r", '{"hparams": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(runstore.RunReadError, match="nested"):
        runstore.read_meta(d)
    assert runstore.read_meta_or_none(d) is None


def test_run_json_that_is_a_folder_or_a_symlink_loop(tmp_path):
    (tmp_path / "dir" / schema.META_FILE).mkdir(parents=True)
    with pytest.raises(runstore.RunReadError, match="not a regular file"):
        runstore.read_meta(tmp_path / "dir")
    (tmp_path / "loop").mkdir()
    os.symlink(tmp_path / "loop" / schema.META_FILE, tmp_path / "loop" / schema.META_FILE)
    with pytest.raises(runstore.RunReadError, match="cannot be read"):
        runstore.read_meta(tmp_path / "loop")
    assert isinstance(_total(tmp_path / "loop"), runstore.RunReadError)


def test_run_json_that_is_a_fifo_does_not_hang(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    fifo = d / schema.META_FILE
    os.mkfifo(fifo)

    def unblock():  # a reader blocked in open() returns once a writer opens the FIFO
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    with pytest.raises(runstore.RunReadError, match="named pipe"):
        _within(lambda: runstore.read_meta(d), unblock=unblock)
    assert isinstance(_within(lambda: _total(d), unblock=unblock), runstore.RunReadError)


def test_run_json_that_is_a_device_or_too_large_is_not_read(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    os.symlink("/dev/zero", d / schema.META_FILE)
    with pytest.raises(runstore.RunReadError, match="device"):
        _within(lambda: runstore.read_meta(d))
    os.unlink(d / schema.META_FILE)
    with open(d / schema.META_FILE, "w") as f:
        f.write("{" + " " * (runstore.files.MAX_META_BYTES + 1) + "}")
    with pytest.raises(runstore.RunReadError, match="larger than"):
        runstore.read_meta(d)


def _eacces(real, victims):
    def fake(path, *args, **kwargs):
        if any(str(path).startswith(str(v)) for v in victims):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path, *args, **kwargs)
    return fake


def test_unreadable_run_json_is_a_read_error(tmp_path, monkeypatch):
    d = _run(tmp_path / "r")
    os.chmod(d / schema.META_FILE, 0)  # enough for a normal user; root needs the simulation below
    monkeypatch.setattr(os, "open", _eacces(os.open, [d / schema.META_FILE]))
    with pytest.raises(runstore.RunReadError, match="cannot be read .*[Pp]ermission denied"):
        runstore.read_meta(d)
    run = runstore.load_run(d)  # the numbers are still there
    assert len(run.series(T.TRAIN_LOSS)) == 20 and any("ermission denied" in w for w in run.warnings)


def test_run_folder_without_the_execute_bit(tmp_path, monkeypatch):
    d = _run(tmp_path / "r")
    os.chmod(d, 0o600)  # list but not enter; root is not stopped by it, so stat is made to fail too
    monkeypatch.setattr(os, "stat", _eacces(os.stat, [d / schema.META_FILE, d / schema.DB_FILE]))
    monkeypatch.setattr(os, "open", _eacces(os.open, [d / schema.META_FILE, d / schema.DB_FILE]))
    try:
        assert runstore.is_run_dir(d) is False
        with pytest.raises(runstore.RunReadError):
            runstore.load_run(d)
        assert runstore.read_meta_or_none(d) is None
    finally:
        os.chmod(d, 0o755)


def test_paths_the_os_cannot_name_are_read_errors(tmp_path):
    assert runstore.is_run_dir(str(tmp_path) + "/a\0b") is False
    with pytest.raises(runstore.RunReadError):
        runstore.load_run(str(tmp_path) + "/a\0b")
    with pytest.raises(runstore.RunReadError):
        runstore.read_meta(str(tmp_path) + "/a\0b")


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "garbage", "folder"])
def test_run_db_that_is_not_a_database(tmp_path, kind):
    d = _run(tmp_path / "r")
    db = d / schema.DB_FILE
    db.unlink()
    if kind == "fifo":
        os.mkfifo(db)
    elif kind == "dev_zero":
        os.symlink("/dev/zero", db)
    elif kind == "garbage":
        db.write_bytes(b"SQLite format 3\0" + os.urandom(5000))
    else:
        db.mkdir()

    def unblock():
        if kind == "fifo":
            os.close(os.open(db, os.O_WRONLY | os.O_NONBLOCK))
    run = _within(lambda: runstore.load_run(d), unblock=unblock)
    assert run.meta["name"] == "r" and run.warnings and run.scalar_tags() == []
    assert _within(lambda: runstore.heartbeat(d), unblock=unblock) == runstore.Heartbeat()


@pytest.mark.parametrize("side", [schema.DB_WAL, schema.DB_SHM])
def test_wal_companions_that_are_fifos_do_not_hang(tmp_path, side):
    d = _run(tmp_path / "r")
    os.mkfifo(d / side)

    def unblock():
        os.close(os.open(d / side, os.O_RDWR | os.O_NONBLOCK))
    run = _within(lambda: runstore.load_run(d), unblock=unblock)
    assert any(side in w for w in run.warnings)


def test_chunks_of_unknown_tags_or_wrong_types_are_skipped_with_a_warning(tmp_path):
    w = _live(tmp_path / "r")
    d = w.run_dir
    con = sqlite3.connect(d / schema.DB_FILE)
    con.execute("INSERT INTO scalar_chunks(tag_id, n, steps, vals) VALUES (999, 1, ?, ?)",
                (np.array([5], "<i8").tobytes(), np.array([1.0]).tobytes()))
    con.execute("INSERT INTO scalar_chunks(tag_id, n, steps, vals) VALUES (1, 1, 'text', 3.5)")
    con.execute("INSERT INTO hist_chunks(tag_id, n, bins, steps, lo, hi, counts) VALUES (999, 1, 2, ?, ?, ?, ?)",
                (b"\0" * 8, b"\0" * 8, b"\0" * 8, b"\0" * 8))
    con.execute("INSERT INTO tables_(tag_id, step, data) VALUES (999, 1, '{}')")
    con.execute("INSERT INTO tables_(tag_id, step, data) VALUES (1, 1, ?)", ("[" * 5000 + "]" * 5000,))
    con.execute("INSERT INTO tags(id, name, kind) VALUES (50, 'h', 'hist')")
    con.execute("INSERT INTO hist_chunks(tag_id, n, bins, steps, lo, hi, counts) VALUES (50, 2, 3, ?, ?, ?, ?)",
                (b"\0" * 7, b"\0" * 16, b"\0" * 16, b"\0" * 24))
    con.execute("INSERT INTO events(step, wall, kind, message) VALUES ('x', 'y', 3, X'00ff')")
    con.execute("UPDATE info SET value = '1e400' WHERE key = 'last_flush'")  # inf once parsed
    con.execute("UPDATE info SET value = '1e30' WHERE key = 'last_step'")
    con.commit()
    con.close()
    run = runstore.load_run(d)
    assert len(run.series(T.TRAIN_LOSS)) == 20
    assert sum("unknown tag" in w for w in run.warnings) >= 1, run.warnings
    assert run.histograms("h") is None and any("histogram chunk of h" in w for w in run.warnings)
    ev = run.events
    assert list(ev.columns) == ["step", "wall", "kind", "message"]
    assert all(isinstance(k, str) for k in ev["kind"]) and all(isinstance(m, str) for m in ev["message"])
    assert run.last_flush is None or np.isfinite(run.last_flush)
    assert run.status in schema.STATUSES


# -- 2. nothing is lost silently ----------------------------------------------------------------
_CHILD = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    import numpy as np
    import runstore
    from runstore import writer
    writer.CHECKPOINT_EVERY_S = float(sys.argv[2])
    w = runstore.RunWriter(sys.argv[1], {{"name": "killed"}})
    for i in range(int(sys.argv[3])):
        w.write(runstore.Batch(scalars={{"train/loss": (np.array([i]), np.array([1.0]))}}), last_step=i)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def _killed_writer(d: Path, *, checkpoint_every_s: float, flushes: int) -> None:
    code = _CHILD.format(root=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code, str(d), str(checkpoint_every_s), str(flushes)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == -signal.SIGKILL, out.stderr


def test_the_writer_checkpoints_so_a_lost_wal_loses_only_the_last_flush(tmp_path):
    """A killed writer's WAL is deleted (e.g. a copy that left it behind): with a checkpoint after
    every flush (interval 0 here; a few seconds by default) everything but the last flush survives."""
    d = tmp_path / "r"
    _killed_writer(d, checkpoint_every_s=0, flushes=30)
    assert (d / schema.DB_WAL).exists()
    (d / schema.DB_WAL).unlink()
    run = runstore.load_run(d)
    assert len(run.series(T.TRAIN_LOSS)) >= 29


@pytest.fixture(scope="module")
def uncheckpointed(tmp_path_factory) -> Path:
    """A run whose writer was killed before any checkpoint: all its numbers are in the WAL."""
    d = tmp_path_factory.mktemp("killed") / "r"
    _killed_writer(d, checkpoint_every_s=1e9, flushes=10)
    return d


def test_a_lost_wal_is_reported(tmp_path, uncheckpointed):
    """No checkpoint since the start: the -shm index still counts frames the missing WAL held."""
    d = Path(shutil.copytree(uncheckpointed, tmp_path / "r"))
    assert len(runstore.load_run(d).series(T.TRAIN_LOSS)) == 10  # all there while the WAL is
    (d / schema.DB_WAL).unlink()
    run = runstore.load_run(d)
    assert any("lost" in w and schema.DB_WAL in w for w in run.warnings), run.warnings


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_a_damaged_wal_is_reported(tmp_path, uncheckpointed, damage):
    d = Path(shutil.copytree(uncheckpointed, tmp_path / "r"))
    wal = d / schema.DB_WAL
    data = wal.read_bytes()
    wal.write_bytes(data[: len(data) // 2 + 7] if damage == "truncated" else os.urandom(len(data)))
    run = runstore.load_run(d)
    assert any(schema.DB_WAL in w and ("damaged" in w or "lost" in w) for w in run.warnings), run.warnings


def test_a_closed_run_needs_no_wal_and_reading_it_creates_no_file(tmp_path):
    d = _run(tmp_path / "r")
    assert sorted(p.name for p in d.iterdir()) == [schema.DB_FILE, schema.META_FILE]
    with sqlite3.connect(d / schema.DB_FILE) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    con.close()
    run = runstore.load_run(d)
    run.histograms("x")
    runstore.heartbeat(d)
    assert sorted(p.name for p in d.iterdir()) == [schema.DB_FILE, schema.META_FILE]  # fine in a read-only folder


def test_a_run_closed_while_a_reader_held_it_reads_from_a_read_only_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(runstore.writer, "JOURNAL_SWITCH_WAIT_S", 0.0)  # do not wait for the reader
    writer = _live(tmp_path / "r")
    d = writer.run_dir
    reader = sqlite3.connect(f"{(d / schema.DB_FILE).as_uri()}?mode=ro", uri=True)
    reader.execute("SELECT count(*) FROM tags").fetchone()  # a dashboard poll holds the file open
    writer.close()
    reader.close()
    with sqlite3.connect(d / schema.DB_FILE) as con:  # the journal could not be switched meanwhile
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    for side in (schema.DB_WAL, schema.DB_SHM):  # a copy made without them, into a folder nobody may write to
        (d / side).unlink(missing_ok=True)
    assert _read_in_read_only_folder(d, tmp_path / "ro").startswith("20 finished")


_READ = "import sys, runstore; r = runstore.load_run(sys.argv[1]); print(len(r.series('train/loss')), r.status, r.warnings)"


def _read_in_read_only_folder(d: Path, dest: Path) -> str:
    """What _READ prints for a copy of run directory `d` in a folder the reader cannot write to:
    permission bits for a normal user; for root (whom they do not stop) a read-only bind mount in
    a private mount namespace. Skips where neither is possible."""
    shutil.copytree(d, dest)
    if os.geteuid() != 0:
        for p in dest.iterdir():
            p.chmod(0o444)
        dest.chmod(0o555)
        try:
            cmd = [sys.executable, "-c", _READ, str(dest)]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
        finally:
            dest.chmod(0o755)
    else:
        probe = ["unshare", "-rm", "sh", "-c", 'mount --bind -o ro "$1" "$1"', "sh", str(dest)]
        if shutil.which("unshare") is None or subprocess.run(probe, capture_output=True).returncode != 0:
            pytest.skip("root without mount namespaces: no way to make a read-only folder here")
        script = 'mount --bind -o ro "$1" "$1" && exec "$2" -c "$3" "$1"'
        out = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(dest), sys.executable, _READ],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.mark.parametrize("name", ["r%41", "a#b", "q?x=1", "sp ace", "pct%2523"])
def test_run_folders_with_uri_characters_open_their_own_database(tmp_path, name):
    # The folder a raw "file:<path>" URI would open instead: "%41" decoded, "#..." a fragment,
    # "?..." a query.
    decoy = {"r%41": "rA", "a#b": "a", "q?x=1": "q", "sp ace": None, "pct%2523": "pct%23"}[name]
    if decoy:
        _run(tmp_path / decoy, n=5, name="decoy")
    w = _live(tmp_path / name, n=42, name="mine")
    d = w.run_dir
    run = runstore.load_run(d)
    assert run.meta["name"] == "mine" and len(run.series(T.TRAIN_LOSS)) == 42 and run.last_step == 41
    assert runstore.heartbeat(d).last_step == 41
    w.close()
    assert len(runstore.load_run(d).series(T.TRAIN_LOSS)) == 42


def test_missing_or_empty_db_of_a_run_that_recorded_steps_says_data_lost(tmp_path):
    d = _run(tmp_path / "r")
    assert runstore.read_meta(d)["last_step"] == 19  # recorded in run.json when the run ends
    (d / schema.DB_FILE).unlink()
    run = runstore.load_run(d)
    assert any("lost or damaged" in w for w in run.warnings) and not any("yet" in w for w in run.warnings)
    (d / schema.DB_FILE).write_bytes(b"")
    run = runstore.load_run(d)
    assert any("lost or damaged" in w for w in run.warnings) and not any("just starting" in w for w in run.warnings)
    # A live run: the writer creates run.db before run.json, so run.json without it means it was lost.
    w = _live(tmp_path / "live")
    live = w.run_dir
    for name in (schema.DB_FILE, schema.DB_WAL, schema.DB_SHM):
        (live / name).unlink(missing_ok=True)
    assert any("lost or damaged" in w for w in runstore.load_run(live).warnings)
    w._con.close()


# -- 3. overwrite never replaces a live run -----------------------------------------------------
def test_overwrite_refuses_a_run_this_process_is_still_writing(tmp_path):
    w = _live(tmp_path / "r")
    with pytest.raises(runstore.RunExistsError, match="is being recorded"):
        runstore.RunWriter(tmp_path / "r", {"name": "new"}, overwrite=True)
    assert runstore.read_meta(tmp_path / "r")["name"] == "r"
    w.close()
    runstore.RunWriter(tmp_path / "r", {"name": "new"}, overwrite=True).close()
    assert runstore.read_meta(tmp_path / "r")["name"] == "new"


def test_overwrite_refuses_a_run_another_live_process_records(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        d = _run(tmp_path / "r")
        meta = runstore.read_meta(d)
        meta.update(status="running", pid=proc.pid, host=HOST, created=time.time(), ended=None)
        runstore.write_json_atomic(d / schema.META_FILE, meta)
        with pytest.raises(runstore.RunExistsError, match=f"process {proc.pid}"):
            runstore.RunWriter(d, {"name": "new"}, overwrite=True)
    finally:
        proc.kill()
        proc.wait()
    runstore.RunWriter(d, {"name": "new"}, overwrite=True).close()  # its process is gone: replaced
    assert runstore.read_meta(d)["name"] == "new"


# -- 4. a full disk ---------------------------------------------------------------------------------
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_write_json_atomic_on_a_full_disk_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    runstore.write_json_atomic(path, {"v": 1})
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(OSError) as info:
        runstore.write_json_atomic(path, {"v": 2})
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_a_full_database_fails_the_run_with_the_reason(tmp_path):
    w = _live(tmp_path / "r")
    d = w.run_dir
    pages = w._con.execute("PRAGMA page_count").fetchone()[0]
    w._con.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "disk full"
    big = np.arange(200_000)
    with pytest.raises(sqlite3.OperationalError, match="full"):
        w.write(runstore.Batch(scalars={T.TRAIN_LOSS: (big, big * 1.0)}), last_step=200_000)
    w.close()  # the caller says "finished": the run was not recorded in full, so it is failed
    meta = runstore.read_meta(d)
    assert meta["status"] == schema.FAILED and "full" in meta["error"] and "1 of 2" in meta["error"]
    assert len(runstore.load_run(d).series(T.TRAIN_LOSS)) == 20  # what was written is kept


def test_close_on_a_full_disk_closes_the_database_and_raises_one_clear_error(tmp_path, monkeypatch):
    w = _live(tmp_path / "r")
    d = w.run_dir
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(runstore.RunWriteError, match=r"could not record the end of the run .*No space left") as e:
        w.close()
    assert e.value.errno == errno.ENOSPC and w._con is None
    monkeypatch.undo()
    w.close()  # a second close is a no-op
    assert not [p.name for p in d.iterdir() if p.name.endswith(".tmp")]
    assert runstore.read_meta(d)["status"] == schema.RUNNING
    assert runstore.load_run(d).status == schema.FINISHED  # the writer stored the end in run.db too
    # Space is back and the job supervisor ends the run it finds "running": the writer's end wins.
    meta = runstore.mark_killed(d, "Not finished: the process is gone.")
    assert meta["status"] == schema.FINISHED and "error" not in meta and meta["last_step"] == 19


# -- 5. liveness --------------------------------------------------------------------------------------
@pytest.mark.parametrize("pid", [0, -1, "minus-own-pid", 2 ** 31, 2 ** 70, True, 1.5, "1", None])
def test_bogus_pids_are_never_live(pid):
    if pid == "minus-own-pid":  # kill(-pid) would signal a whole process group
        pid = -os.getpid()
    assert runstore.pid_alive(pid) is False
    meta = {"status": schema.RUNNING, "pid": pid, "host": HOST, "created": time.time()}
    assert runstore.effective_status(meta, time.time()) == schema.KILLED


def test_a_reused_pid_is_not_the_writer(monkeypatch):
    """The run's process died and its pid now belongs to a process started after the run was."""
    created = time.time() - 3600
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        meta = {"status": schema.RUNNING, "pid": proc.pid, "host": HOST, "created": created}
        assert runstore.effective_status(meta, time.time() - 3000) == schema.KILLED
        # The writer itself: started before its run was created, alive and flushing.
        mine = {"status": schema.RUNNING, "pid": proc.pid, "host": HOST, "created": time.time() + 60}
        assert runstore.effective_status(mine, time.time()) == schema.RUNNING
        # Where the process start time cannot be read (no /proc), a stale heartbeat decides.
        monkeypatch.setattr(runstore.liveness, "process_started", lambda pid: None)
        assert runstore.effective_status(meta, time.time() - 2 * runstore.liveness.STALE_AFTER_S) == schema.KILLED
        assert runstore.effective_status(meta, time.time()) == schema.RUNNING
    finally:
        proc.kill()
        proc.wait()
    assert runstore.effective_status(meta, time.time()) == schema.KILLED  # gone


def test_another_hosts_run_is_killed_once_its_heartbeat_is_stale():
    meta = {"status": schema.RUNNING, "pid": 4242, "host": "elsewhere.example", "created": time.time()}
    assert runstore.effective_status(meta, time.time()) == schema.RUNNING
    assert runstore.effective_status(meta, time.time() - 2 * runstore.liveness.STALE_AFTER_S) == schema.KILLED
    assert runstore.effective_status({"status": ["x"]}, None) in schema.STATUSES
