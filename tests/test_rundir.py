"""The run directory's life cycle (runstore/rundir.py): ending a run, the heartbeat, the change
signature the dashboard polls, the log tail and compaction for shipping."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

import runstore
from runstore import schema
from runstore import tags as T


def _live(path, n=10) -> runstore.RunWriter:
    w = runstore.RunWriter(path, {"name": "live", "hparams": {"lr": 0.1}})
    w.write(runstore.Batch(scalars={T.TRAIN_LOSS: (np.arange(n), np.linspace(2, 1, n))}), last_step=n - 1)
    return w


def test_heartbeat_says_what_the_writer_last_flushed(tmp_path):
    assert runstore.heartbeat(tmp_path) == runstore.Heartbeat()  # no run.db yet
    w = _live(tmp_path / "r", n=10)
    beat = runstore.heartbeat(tmp_path / "r")
    assert beat.last_step == 9 and isinstance(beat.last_flush, float)
    w.write(runstore.Batch(), last_step=12)
    assert runstore.heartbeat(tmp_path / "r").last_step == 12
    w.close()


def test_signature_changes_with_each_flush_and_status_change_only(tmp_path):
    w = _live(tmp_path / "r")
    first = runstore.signature(tmp_path / "r")
    assert runstore.signature(tmp_path / "r") == first  # nothing happened
    w.write(runstore.Batch(scalars={T.TRAIN_LOSS: (np.array([10]), np.array([0.9]))}), last_step=10)
    second = runstore.signature(tmp_path / "r")
    assert second != first
    meta_stamp = runstore.meta_signature(tmp_path / "r")
    w.close()
    assert runstore.signature(tmp_path / "r") != second
    assert runstore.meta_signature(tmp_path / "r") != meta_stamp  # run.json now says finished
    assert runstore.meta_signature(tmp_path / "nothing") == -1


def test_mark_killed_ends_a_running_run_once_and_never_rewrites_an_ended_one(tmp_path):
    w = _live(tmp_path / "r")
    w._con.close()  # the writer dies without closing the run
    meta = runstore.mark_killed(tmp_path / "r", "Not finished: the process is gone.")
    on_disk = runstore.read_meta(tmp_path / "r")
    assert meta == on_disk and on_disk["status"] == schema.KILLED and on_disk["ended"]
    assert on_disk["error"] == "Not finished: the process is gone." and on_disk["name"] == "live"
    assert on_disk["last_step"] == 9  # from the heartbeat: numbers up to step 9 were recorded
    ended = on_disk["ended"]
    again = runstore.mark_ended(tmp_path / "r", schema.FAILED, error="later")
    assert again["status"] == schema.KILLED and runstore.read_meta(tmp_path / "r")["ended"] == ended
    assert runstore.mark_killed(tmp_path / "missing", "x") is None
    with pytest.raises(ValueError, match="running"):
        runstore.mark_ended(tmp_path / "r", schema.RUNNING)


def test_the_writer_ends_a_run_the_same_way(tmp_path):
    w = _live(tmp_path / "r")
    w.close(schema.FAILED, error="RuntimeError: boom")
    meta = runstore.read_meta(tmp_path / "r")
    assert meta["status"] == schema.FAILED and meta["error"] == "RuntimeError: boom" and meta["ended"]
    assert runstore.load_run(tmp_path / "r").status == schema.FAILED


def test_mark_never_started_writes_a_run_json_only_when_there_is_none(tmp_path):
    d = tmp_path / "job"
    d.mkdir()
    meta = runstore.mark_never_started(d, schema.FAILED, error="exited with status 2", name="job",
                                       hparams={"lr": 0.1})
    assert runstore.read_meta(d) == meta and meta["status"] == schema.FAILED and meta["name"] == "job"
    assert meta["format_version"] == schema.FORMAT_VERSION and meta["ended"]
    assert runstore.load_run(d).status == schema.FAILED  # it lists like any run, with its reason
    assert sorted(p.name for p in d.iterdir()) == [schema.META_FILE]  # no temporary file left behind
    # The training process got there first: its run.json is kept.
    w = _live(tmp_path / "raced")
    kept = runstore.mark_never_started(tmp_path / "raced", schema.STOPPED, error="stopped")
    assert kept["status"] == schema.RUNNING and runstore.read_meta(tmp_path / "raced")["status"] == schema.RUNNING
    w.close()


def test_log_tail_keeps_the_last_lines_and_progress_redraws(tmp_path):
    assert runstore.log_tail(tmp_path) == ""
    (tmp_path / schema.LOG_FILE).write_bytes(b"start\n[#---] 1/4\r[##--] 2/4\r[###-] 3/4\n\nTraceback: \xff boom\n")
    assert runstore.log_tail(tmp_path, 2) == "[###-] 3/4\nTraceback: \ufffd boom"


def test_compact_leaves_a_self_contained_read_only_friendly_run(tmp_path):
    w = _live(tmp_path / "r", n=50)
    w.close()
    before = runstore.load_run(tmp_path / "r").series(T.TRAIN_LOSS)
    runstore.compact(tmp_path / "r")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [schema.DB_FILE, schema.META_FILE]
    with sqlite3.connect(tmp_path / "r" / schema.DB_FILE) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    after = runstore.load_run(tmp_path / "r")
    assert after.series(T.TRAIN_LOSS).equals(before) and after.status == schema.FINISHED
    with pytest.raises(FileNotFoundError):
        runstore.compact(tmp_path / "nothing")


def test_mark_ended_keeps_fields_the_reader_would_drop(tmp_path):
    """Ending a run rewrites run.json as it is: fields of a type the reader ignores are not lost."""
    w = _live(tmp_path / "r")
    w._con.close()
    raw = json.loads((tmp_path / "r" / schema.META_FILE).read_text())
    raw["hparams"] = "lr=0.1"
    (tmp_path / "r" / schema.META_FILE).write_text(json.dumps(raw))
    meta = runstore.mark_killed(tmp_path / "r", "gone")
    assert meta["status"] == schema.KILLED and meta["hparams"] == {}
    assert json.loads((tmp_path / "r" / schema.META_FILE).read_text())["hparams"] == "lr=0.1"


def test_the_writer_records_its_last_step_and_leaves_one_file(tmp_path):
    w = _live(tmp_path / "r", n=10)
    w.write(runstore.Batch(), last_step=12)
    w.close()
    assert runstore.read_meta(tmp_path / "r")["last_step"] == 12
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [schema.DB_FILE, schema.META_FILE]


def test_unreadable_metadata_is_a_read_error_not_a_crash(tmp_path):
    (tmp_path / schema.META_FILE).mkdir()  # a folder where run.json should be
    with pytest.raises(runstore.RunReadError, match="cannot be read"):
        runstore.read_meta(tmp_path)
    assert runstore.read_meta_or_none(tmp_path) is None
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / schema.META_FILE).write_text(json.dumps([1, 2]))
    assert runstore.read_meta_or_none(tmp_path / "list") is None
