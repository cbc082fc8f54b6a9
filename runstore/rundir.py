"""The life of a run directory besides its numbers: how a run ends, its heartbeat, the signature
readers poll for changes, the log of the process that trained it, and compaction for shipping.

The writer (RunWriter.close), the training-job supervisor (jobs/) and the playground's sample
maker all end and compact runs through these functions, so "ended" means the same everywhere.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import schema
from .files import MAX_META_BYTES, is_regular_file, read_json_or_none
from .meta import clean_meta
from .reader import RunReadError, read_info, read_meta
from .writer import write_json_atomic


@dataclass(frozen=True)
class Heartbeat:
    """What the writer last said in run.db's `info` table: when it flushed and its last step."""

    last_flush: float | None = None
    last_step: int | None = None


def heartbeat(run_dir: str | os.PathLike) -> Heartbeat:
    """The run's heartbeat, or an empty one while run.db does not exist or cannot be read yet."""
    info = read_info(run_dir)
    return Heartbeat(last_flush=info.get("last_flush"), last_step=info.get("last_step"))


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
    return is_regular_file(d / schema.META_FILE) and is_regular_file(d / schema.DB_FILE)


def read_meta_or_none(run_dir: str | os.PathLike) -> dict | None:
    """run.json as a dict, or None when it is missing, unreadable or not a JSON object."""
    try:
        meta = read_meta(run_dir)
    except RunReadError:
        return None
    return meta if isinstance(meta, dict) else None


def log_tail(run_dir: str | os.PathLike, lines: int = 30, *, max_bytes: int = 64_000) -> str:
    """The last `lines` non-empty lines of the run's train.log ("" if there is none, or it is not a
    regular file: a FIFO would block). Progress bars redraw with carriage returns; each redraw
    counts as a line."""
    path = Path(run_dir) / schema.LOG_FILE
    try:
        if not is_regular_file(path):
            return ""
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            size = os.fstat(fd).st_size
            data = os.pread(fd, max_bytes, max(0, size - max_bytes))
        finally:
            os.close(fd)
    except (OSError, ValueError):
        return ""
    text = data.decode("utf-8", "replace").replace("\r", "\n")
    kept = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


# -- ending a run ------------------------------------------------------------------------------------
def mark_ended(run_dir: str | os.PathLike, status: str, *, error: str | None = None) -> dict | None:
    """Rewrite run.json (atomically) to say a run that still says "running" ended with `status`,
    e.g. `killed` when its process is gone. A run that already ended is left as it is; one whose
    writer stored its end in run.db but could not rewrite run.json gets that end instead. Returns
    run.json as it is now, or None when there is none (see mark_never_started)."""
    schema.require_ended(status)
    path = Path(run_dir) / schema.META_FILE
    raw = read_json_or_none(path, max_bytes=MAX_META_BYTES)
    if raw is None:
        return None
    meta = clean_meta(raw)[0]
    if meta["status"] != schema.RUNNING:
        return meta
    # The file as it is, only ended: fields the reader would drop are not the rewrite's business.
    info = read_info(run_dir)
    if "status" in info:  # the writer did close the run, but could not rewrite run.json (a full disk)
        status, error = info["status"], info.get("error")
    write_json_atomic(path, schema.end_fields(raw, status, error=error, last_step=info.get("last_step")))
    return clean_meta(raw)[0]


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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.new")
    write_json_atomic(tmp, meta)
    try:
        os.link(tmp, path)  # create-if-absent in one step: never replaces a run.json written meanwhile
    except FileExistsError:
        return read_meta_or_none(run_dir) or clean_meta(meta)[0]
    except OSError:  # a file system without hard links
        if os.path.lexists(path):
            return read_meta_or_none(run_dir) or clean_meta(meta)[0]
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return clean_meta(meta)[0]


# -- shipping ----------------------------------------------------------------------------------------
def compact(run_dir: str | os.PathLike) -> None:
    """Make an ended run self-contained for shipping: fold the WAL into run.db, switch it to a
    rollback journal (so read-only checkouts can open it and readers leave no -wal/-shm files
    behind) and vacuum it. Only for a run no process writes any more."""
    d = Path(run_dir)
    if not is_regular_file(d / schema.DB_FILE):
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
