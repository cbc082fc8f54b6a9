"""On-disk layout of a run directory (format version 1).

    <run_dir>/run.json     human-readable metadata, rewritten atomically (tmp file + rename)
    <run_dir>/run.db       SQLite in WAL mode: one writer (the training process), many readers
    <run_dir>/tb/          optional TensorBoard mirror (event files)
    <run_dir>/train.log    optional log of a training process started by the playground

Numbers are stored in chunks: one row per tag per flush, holding little-endian numpy arrays as
BLOBs. A run of 100,000 steps with 30 layers is then a few thousand rows instead of millions,
which is what makes loading it take well under a second. Rows are only ever appended, so a
reader can poll `WHERE id > last_seen` while training runs.

No pickle anywhere: BLOBs are raw float/int arrays and everything else is JSON or plain columns.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

FORMAT_VERSION = 1
META_FILE = "run.json"
DB_FILE = "run.db"
TB_DIR = "tb"
LOG_FILE = "train.log"

# Status values stored in run.json. "running" is only what the writer last said; the reader
# turns a "running" run whose process is gone into "killed" (see reader.effective_status).
RUNNING, FINISHED, FAILED, STOPPED, KILLED = "running", "finished", "failed", "stopped", "killed"
STATUSES = (RUNNING, FINISHED, FAILED, STOPPED, KILLED)

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


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """Open run.db. Readers open read-only through a URI so they can never create or lock it."""
    if readonly:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0, check_same_thread=False)
    else:
        con = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable against a killed process (the WAL survives); only an OS crash can lose
        # the last commits, which is an acceptable trade for not fsyncing every flush.
        con.execute("PRAGMA synchronous=NORMAL")
        con.executescript(DDL)
        con.commit()
    return con
