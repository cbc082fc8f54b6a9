"""The life of a run directory besides its numbers: how a run ends, its heartbeat, the signature
readers poll for changes, the log of the process that trained it, and compaction for shipping.

The writer (RunWriter.close), the training-job supervisor (jobs/) and the playground's sample
maker all end and compact runs through these functions, so "ended" means the same everywhere.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from . import schema
from .reader import RunReadError, read_meta
from .writer import write_json_atomic


@dataclass(frozen=True)
class Heartbeat:
    """What the writer last said in run.db's `info` table: when it flushed and its last step."""

    last_flush: float | None = None
    last_step: int | None = None


def heartbeat(run_dir: str | os.PathLike) -> Heartbeat:
    """The run's heartbeat, or an empty one while run.db does not exist or cannot be read yet."""
    db = Path(run_dir) / schema.DB_FILE
    if not db.is_file():
        return Heartbeat()
    try:
        con = schema.connect(db, readonly=True)
    except sqlite3.Error:
        return Heartbeat()
    try:
        info = schema.decode_info(con.execute("SELECT key, value FROM info").fetchall())
    except sqlite3.Error:  # no tables yet (the writer is just starting) or a damaged file
        return Heartbeat()
    finally:
        con.close()
    flush, step = info.get("last_flush"), info.get("last_step")
    return Heartbeat(last_flush=float(flush) if isinstance(flush, (int, float)) and not isinstance(flush, bool)
                     else None,
                     last_step=step if isinstance(step, int) and not isinstance(step, bool) else None)


def _stat(path: Path):
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def signature(run_dir: str | os.PathLike) -> tuple:
    """Changes whenever the run's metadata or numbers change on disk (a status change, a flush);
    cheap enough to poll every second. Compare two signatures with ==."""
    d = Path(run_dir)
    return tuple(_stat(d / name) for name in (schema.META_FILE, schema.DB_FILE, schema.DB_WAL))


def meta_signature(run_dir: str | os.PathLike) -> int:
    """Changes whenever run.json is rewritten (-1 while there is none): the key for caching labels."""
    st = _stat(Path(run_dir) / schema.META_FILE)
    return st[0] if st is not None else -1


def has_data(run_dir: str | os.PathLike) -> bool:
    """True once the writer has created both run.json and run.db (the run can be opened)."""
    d = Path(run_dir)
    return (d / schema.META_FILE).is_file() and (d / schema.DB_FILE).is_file()


def read_meta_or_none(run_dir: str | os.PathLike) -> dict | None:
    """run.json as a dict, or None when it is missing, unreadable or not a JSON object."""
    try:
        meta = read_meta(run_dir)
    except RunReadError:
        return None
    return meta if isinstance(meta, dict) else None


def log_tail(run_dir: str | os.PathLike, lines: int = 30, *, max_bytes: int = 64_000) -> str:
    """The last `lines` non-empty lines of the run's train.log ("" if there is none). Progress
    bars redraw with carriage returns; each redraw counts as a line."""
    try:
        with open(Path(run_dir) / schema.LOG_FILE, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace").replace("\r", "\n")
    kept = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


# -- ending a run ------------------------------------------------------------------------------------
def mark_ended(run_dir: str | os.PathLike, status: str, *, error: str | None = None) -> dict | None:
    """Rewrite run.json (atomically) to say a run that still says "running" ended with `status`,
    e.g. `killed` when its process is gone. A run that already ended is left as it is. Returns
    run.json as it is now, or None when there is none (see mark_never_started)."""
    schema.require_ended(status)
    path = Path(run_dir) / schema.META_FILE
    meta = read_meta_or_none(run_dir)
    if meta is None or meta.get("status", schema.RUNNING) != schema.RUNNING:
        return meta
    write_json_atomic(path, schema.end_fields(meta, status, error=error))
    return meta


def mark_killed(run_dir: str | os.PathLike, error: str) -> dict | None:
    """mark_ended with status `killed`: the process recording the run is gone without closing it."""
    return mark_ended(run_dir, schema.KILLED, error=error)


def mark_never_started(run_dir: str | os.PathLike, status: str, *, error: str | None = None, **fields) -> dict:
    """Write run.json for a run whose process ended before it created one (a bad config, a crash
    while loading, a stop during startup), so the run lists with its reason. `fields` are run.json
    fields known without the process (name, hparams, parent, ...). When run.json exists after all
    (the process got there first), it is returned unchanged."""
    path = Path(run_dir) / schema.META_FILE
    meta = {"format_version": schema.FORMAT_VERSION, **fields}
    schema.end_fields(meta, status, error=error)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    write_json_atomic(tmp, meta)
    try:
        os.link(tmp, path)  # create-if-absent in one step: never replaces a run.json written meanwhile
    except FileExistsError:
        return read_meta_or_none(run_dir) or meta
    except OSError:  # a file system without hard links
        if path.exists():
            return read_meta_or_none(run_dir) or meta
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return meta


# -- shipping ----------------------------------------------------------------------------------------
def compact(run_dir: str | os.PathLike) -> None:
    """Make an ended run self-contained for shipping: fold the WAL into run.db, switch it to a
    rollback journal (so read-only checkouts can open it and readers leave no -wal/-shm files
    behind) and vacuum it. Only for a run no process writes any more."""
    d = Path(run_dir)
    if not (d / schema.DB_FILE).is_file():
        raise FileNotFoundError(f"{d} has no {schema.DB_FILE} to compact.")
    con = sqlite3.connect(d / schema.DB_FILE)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.execute("PRAGMA journal_mode=DELETE")
        con.execute("VACUUM")
    finally:
        con.close()
    for name in (schema.DB_WAL, schema.DB_SHM):
        (d / name).unlink(missing_ok=True)
