"""On-disk layout of a run directory (format version 1).

    <run_dir>/run.json     human-readable metadata, rewritten atomically (tmp file + rename)
    <run_dir>/run.db       SQLite in WAL mode while recording, a rollback journal once ended: one
                           writer (the training process), many readers
    <run_dir>/tb/          optional TensorBoard mirror (event files)
    <run_dir>/train.log    optional log of a training process started as a job (jobs/)
    <run_dir>/config.json  the playground Config a job trains (jobs/)
    <run_dir>/job.json     the job's pid, command and stop request (jobs/)

This module is the only place these names are spelled; everything outside runstore/ uses the
constants below or the functions of runstore/rundir.py.

Numbers are stored in chunks: one row per tag per flush, holding little-endian numpy arrays as
BLOBs. A run of 100,000 steps with 30 layers is then a few thousand rows instead of millions,
which is what makes loading it take well under a second. Rows are only ever appended, so a
reader can poll `WHERE id > last_seen` while training runs.

No pickle anywhere: BLOBs are raw float/int arrays and everything else is JSON or plain columns.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from urllib.parse import urlencode

FORMAT_VERSION = 1
META_FILE = "run.json"
DB_FILE = "run.db"
# SQLite's companions of run.db in WAL mode: the write-ahead log and its shared-memory index.
DB_WAL = DB_FILE + "-wal"
DB_SHM = DB_FILE + "-shm"
TB_DIR = "tb"
LOG_FILE = "train.log"
CONFIG_FILE = "config.json"
JOB_FILE = "job.json"
# Every file name of a run directory (TB_DIR is a folder).
FILES = (META_FILE, DB_FILE, DB_WAL, DB_SHM, LOG_FILE, CONFIG_FILE, JOB_FILE)

# Status values stored in run.json. "running" is only what the writer last said; the reader
# turns a "running" run whose process is gone into "killed" (see reader.effective_status).
RUNNING, FINISHED, FAILED, STOPPED, KILLED = "running", "finished", "failed", "stopped", "killed"
STATUSES = (RUNNING, FINISHED, FAILED, STOPPED, KILLED)
# Runs imported from other formats (TensorBoard logs) do not say whether their writer still lives.
IMPORTED = "unknown"


ENDED = tuple(s for s in STATUSES if s != RUNNING)


def require_ended(status: str) -> str:
    """`status` if a run can end with it; ValueError otherwise (e.g. "running")."""
    if status not in ENDED:
        raise ValueError(f"an ended run's status is one of {', '.join(ENDED)}; got {status!r}")
    return status


def end_fields(meta: dict, status: str, *, error: str | None = None, now: float | None = None,
               last_step: int | None = None) -> dict:
    """`meta` updated in place to say the run ended with `status` (and why, if `error`). The one
    definition of an ended run: a final status, an `ended` time (kept if already set), the error, and
    the last step its numbers reach (`last_step`, when known), so a reader can tell recorded numbers
    that went missing from numbers never recorded."""
    require_ended(status)
    meta["status"] = status
    meta["ended"] = meta.get("ended") or (now if now is not None else time.time())
    if error:
        meta["error"] = error
    if last_step is not None:
        meta["last_step"] = int(last_step)
    return meta


DDL = """
CREATE TABLE IF NOT EXISTS tags (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL              -- 'scalar' | 'hist' | 'table'
);
CREATE TABLE IF NOT EXISTS scalar_chunks (
    id     INTEGER PRIMARY KEY,
    tag_id INTEGER NOT NULL,
    n      INTEGER NOT NULL,
    steps  BLOB NOT NULL,           -- int64[n]
    vals   BLOB NOT NULL            -- float64[n]; NaN and +-Inf are kept as they are
);
CREATE TABLE IF NOT EXISTS hist_chunks (
    id     INTEGER PRIMARY KEY,
    tag_id INTEGER NOT NULL,
    n      INTEGER NOT NULL,
    bins   INTEGER NOT NULL,
    steps  BLOB NOT NULL,           -- int64[n]
    lo     BLOB NOT NULL,           -- float64[n]  lower edge of bin 0
    hi     BLOB NOT NULL,           -- float64[n]  upper edge of the last bin (equal-width bins)
    counts BLOB NOT NULL            -- float32[n * bins], row-major
);
CREATE TABLE IF NOT EXISTS tables_ (
    id     INTEGER PRIMARY KEY,
    tag_id INTEGER NOT NULL,
    step   INTEGER NOT NULL,
    data   TEXT NOT NULL            -- JSON object of equal-length lists (a small table)
);
CREATE TABLE IF NOT EXISTS events (
    id      INTEGER PRIMARY KEY,
    step    INTEGER,
    wall    REAL NOT NULL,
    kind    TEXT NOT NULL,          -- e.g. 'nonfinite_loss', 'skipped_step', 'warning', 'error'
    message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS info (   -- small mutable facts: heartbeat, last step
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def db_uri(path: Path, **params) -> str:
    """SQLite URI of a file: the path percent-encoded, so a folder named "a#b", "q?x" or "r%41" opens
    that folder's file (a raw "file:" + path would cut it at "#" or "?", or decode "%41" to "A")."""
    uri = Path(os.path.abspath(path)).as_uri()
    return uri + ("?" + urlencode(params) if params else "")


def connect(path: Path, *, readonly: bool, immutable: bool = False) -> sqlite3.Connection:
    """Open run.db. Readers open read-only through a URI so they can never create or lock it.
    `immutable` (readers only) tells SQLite the file cannot change: no locks, no -wal/-shm files,
    which is how an ended run is read from a folder nobody may write to."""
    if readonly:
        params = {"mode": "ro", **({"immutable": 1} if immutable else {})}
        con = sqlite3.connect(db_uri(path, **params), uri=True, timeout=5.0, check_same_thread=False)
        # Text a damaged or foreign file holds may not be UTF-8: read it anyway.
        con.text_factory = lambda b: b.decode("utf-8", "replace")
    else:
        con = sqlite3.connect(db_uri(path), uri=True, timeout=30.0, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable against a killed process (the WAL survives); only an OS crash can lose
        # the last commits, which is an acceptable trade for not fsyncing every flush.
        con.execute("PRAGMA synchronous=NORMAL")
        con.executescript(DDL)
        con.commit()
    return con


def decode_info(rows) -> dict:
    """The `info` table's (key, JSON value) rows as a dict; values that are not JSON are left out."""
    out = {}
    for key, value in rows:
        try:
            out[key] = json.loads(value)
        except (TypeError, ValueError, RecursionError):  # a damaged or forged value
            pass
    return out
