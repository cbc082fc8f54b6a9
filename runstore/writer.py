"""Append-only writer of one run directory. Synchronous and single-threaded by design: the probes
call it from their background writer thread, never from the training loop."""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import time
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import files, schema
from .liveness import writer_alive
from .meta import clean_meta
from .reader import read_info

# The writer folds its WAL into run.db (a PASSIVE checkpoint, which never waits for readers) after
# a flush once this many seconds passed since the last time, so a run whose -wal file is lost (a
# copy made without it, a crash of the file system) misses at most the last few seconds of numbers.
# SQLite's own checkpoint waits for 1000 pages (4 MB): minutes of a small run.
CHECKPOINT_EVERY_S = 2.0
# On close the WAL is folded in and run.db switched to a rollback journal, so a finished run needs
# no -wal/-shm and opens from a read-only folder. That switch needs the file to itself: a reader
# polling the run right then is waited for this long, after which the run stays in WAL mode
# (still readable: see reader.open_db).
JOURNAL_SWITCH_WAIT_S = 2.0

# RunWriters of this process that are open, by resolved run directory: overwrite=True must never
# pull a run from under a writer that is still recording it.
_OPEN_WRITERS: "weakref.WeakValueDictionary[str, RunWriter]" = weakref.WeakValueDictionary()


class RunExistsError(FileExistsError):
    """The run directory already holds another run (or one that is still being recorded)."""


class RunWriteError(OSError):
    """The end of a run could not be recorded in run.json (it could not be rewritten, e.g. a full
    disk). Keeps the errno of the failure. run.json still says "running"; runstore.Run reads the
    final status from run.db when the writer could store it there, else reports the run as killed
    once its process has ended."""


def _json_safe(obj):
    """JSON has no NaN/Inf; store them as strings so run.json stays valid for any reader."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return _json_safe(obj.item())
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON so that a reader sees either the old or the new file, never half of one. On any
    failure (a full disk) the old file is kept, no temporary file is left behind, and the OSError
    is raised."""
    path = Path(path)
    text = json.dumps(_json_safe(data), indent=2, sort_keys=False).encode("utf-8")
    # Unique per call: two threads of one process (the job supervisor's stop timer and a page) may
    # rewrite the same file at once.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        try:
            view = memoryview(text)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)  # the data is on disk before the rename makes it the file
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@dataclass
class Batch:
    """Everything one flush writes, in one transaction."""

    scalars: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    hists: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    tables: list[tuple[str, int, dict]] = field(default_factory=list)
    events: list[tuple[int | None, float, str, str]] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # run.json fields learnt while training (e.g. n_classes)

    def empty(self) -> bool:
        return not (self.scalars or self.hists or self.tables or self.events or self.meta)


class RunWriter:
    """Creates a run directory and appends to it.

    `meta` becomes run.json; the writer adds format, status, pid, host and timestamps.
    """

    def __init__(self, run_dir: str | os.PathLike, meta: dict, *, overwrite: bool = False):
        self.run_dir = Path(run_dir)
        self._con = None
        self._check_free(overwrite)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        self.meta = {
            "format_version": schema.FORMAT_VERSION,
            "status": schema.RUNNING,
            "created": now,
            "ended": None,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            **meta,
        }
        # run.db (with its tables) exists before run.json: a reader seeing run.json can rely on it.
        self._con = schema.connect(self.run_dir / schema.DB_FILE, readonly=False)
        _OPEN_WRITERS[_key(self.run_dir)] = self
        self._tag_ids: dict[str, int] = {}
        self._last_step = -1
        self._flushes = self._failed_flushes = 0
        self._first_error: BaseException | None = None
        self._checkpointed = time.monotonic()
        try:
            self.write_meta()
            self._set_info({"last_flush": now, "last_step": -1})
            self._con.commit()
        except BaseException:
            self._con.close()
            self._con = None
            raise

    def _check_free(self, overwrite: bool) -> None:
        meta_path = self.run_dir / schema.META_FILE
        db_path = self.run_dir / schema.DB_FILE
        if not (os.path.lexists(meta_path) or os.path.lexists(db_path)):
            return
        old = files.read_json_or_none(meta_path, max_bytes=files.MAX_META_BYTES)
        old = clean_meta(old)[0] if old is not None else {}
        if not overwrite:
            desc = f" (run {old.get('name') or old.get('run_id')!r}, status {old.get('status')})" if old else ""
            raise RunExistsError(
                f"{self.run_dir} already holds a run{desc}. Choose a new run_dir, or pass "
                f"overwrite=True to replace it."
            )
        mine = _OPEN_WRITERS.get(_key(self.run_dir))
        if mine is not None and mine._con is not None:
            raise RunExistsError(
                f"{self.run_dir} is being recorded by this process (a RunWriter or probes recorder that was "
                f"not closed): close it first, then overwrite the run.")
        pid = old.get("pid")
        if (old.get("status") == schema.RUNNING and not (pid == os.getpid() and old.get("host") == socket.gethostname())
                and writer_alive(old, read_info(self.run_dir).get("last_flush"))):
            raise RunExistsError(
                f"{self.run_dir} is being recorded right now by process {pid} on {old.get('host')}; stop it "
                f"(or wait for it to end) before overwriting the run.")
        for name in (schema.META_FILE, schema.DB_FILE, schema.DB_WAL, schema.DB_SHM):
            (self.run_dir / name).unlink(missing_ok=True)

    # -- metadata -------------------------------------------------------------------------
    def write_meta(self) -> None:
        write_json_atomic(self.run_dir / schema.META_FILE, self.meta)

    def update_meta(self, **fields) -> None:
        self.meta.update(fields)
        self.write_meta()

    # -- numbers --------------------------------------------------------------------------
    def _tag_id(self, name: str, kind: str) -> int:
        tid = self._tag_ids.get(name)
        if tid is None:
            cur = self._con.execute("INSERT OR IGNORE INTO tags(name, kind) VALUES (?, ?)", (name, kind))
            tid = cur.lastrowid if cur.rowcount else self._con.execute(
                "SELECT id FROM tags WHERE name = ?", (name,)).fetchone()[0]
            self._tag_ids[name] = tid
        return tid

    def _set_info(self, values: dict) -> None:
        self._con.executemany(
            "INSERT INTO info(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [(k, json.dumps(v)) for k, v in values.items()],
        )

    def write(self, batch: Batch, *, last_step: int | None = None) -> None:
        """Append one batch in a single transaction, so a reader never sees half a flush. A failure
        (a full disk) is raised, and remembered: close() then records the run as failed."""
        self._flushes += 1
        try:
            self._write(batch, last_step)
        except BaseException as e:
            self._failed_flushes += 1
            if self._first_error is None:
                self._first_error = e
            raise
        if last_step is not None:
            self._last_step = int(last_step)
        if time.monotonic() - self._checkpointed >= CHECKPOINT_EVERY_S:
            self._checkpoint("PASSIVE")

    def _write(self, batch: Batch, last_step: int | None) -> None:
        if batch.meta:
            self.update_meta(**batch.meta)
        con = self._con
        with con:
            for tag, (steps, vals) in batch.scalars.items():
                steps = np.ascontiguousarray(steps, dtype="<i8")
                vals = np.ascontiguousarray(vals, dtype="<f8")
                con.execute(
                    "INSERT INTO scalar_chunks(tag_id, n, steps, vals) VALUES (?, ?, ?, ?)",
                    (self._tag_id(tag, "scalar"), len(steps), steps.tobytes(), vals.tobytes()),
                )
            for tag, (steps, lo, hi, counts) in batch.hists.items():
                counts = np.ascontiguousarray(counts, dtype="<f4")
                steps = np.ascontiguousarray(steps, dtype="<i8")
                con.execute(
                    "INSERT INTO hist_chunks(tag_id, n, bins, steps, lo, hi, counts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (self._tag_id(tag, "hist"), len(steps), counts.shape[1], steps.tobytes(),
                     np.ascontiguousarray(lo, "<f8").tobytes(), np.ascontiguousarray(hi, "<f8").tobytes(),
                     counts.tobytes()),
                )
            for tag, step, data in batch.tables:
                con.execute("INSERT INTO tables_(tag_id, step, data) VALUES (?, ?, ?)",
                            (self._tag_id(tag, "table"), int(step), json.dumps(_json_safe(data))))
            if batch.events:
                con.executemany("INSERT INTO events(step, wall, kind, message) VALUES (?, ?, ?, ?)", batch.events)
            info = {"last_flush": time.time()}
            if last_step is not None:
                info["last_step"] = int(last_step)
            self._set_info(info)

    def _checkpoint(self, mode: str) -> None:
        """Fold the WAL into run.db as far as readers allow; a failure (a full disk) keeps the
        numbers in the WAL, where readers find them too."""
        self._checkpointed = time.monotonic()
        try:
            self._con.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        except sqlite3.Error:
            pass

    def _to_rollback_journal(self) -> None:
        """Switch run.db out of WAL mode (deleting -wal and -shm), waiting a little for readers."""
        deadline = time.monotonic() + JOURNAL_SWITCH_WAIT_S
        while True:
            try:
                if self._con.execute("PRAGMA journal_mode=DELETE").fetchone()[0].lower() == "delete":
                    return
            except sqlite3.OperationalError:  # "database is locked": a reader holds it
                pass
            except sqlite3.Error:
                return
            if time.monotonic() >= deadline:
                return
            time.sleep(0.02)

    def _loss_note(self, error: str | None) -> str | None:
        """What close() adds to the run's error when flushes failed, unless the caller said it."""
        e = self._first_error
        if e is None:
            return None
        said = getattr(e, "strerror", None) or str(e)
        if error and said and said in error:
            return None
        return (f"{self._failed_flushes} of {self._flushes} flushes could not be written to {schema.DB_FILE} "
                f"({type(e).__name__}: {e})")

    def close(self, status: str = schema.FINISHED, *, error: str | None = None) -> None:
        """Record the final status, end time, error (if any) and last step; safe to call twice.

        A run some of whose flushes failed is recorded as failed, with how many were lost. The WAL
        is folded into run.db and the database switched to a rollback journal, so the ended run is
        one self-contained file. The database is closed even when run.json cannot be rewritten;
        that failure is raised as RunWriteError (its errno kept). The final status is stored in
        run.db's `info` table too, where readers find it when run.json cannot say it."""
        if self._con is None:
            return
        note = self._loss_note(error)
        if note:
            status, error = schema.FAILED, f"{error}; {note}" if error else note
        schema.end_fields(self.meta, status, error=error, last_step=self._last_step)
        try:  # also in run.db: the status survives a run.json that is damaged or cannot be rewritten
            with self._con:
                self._set_info({"status": status, "ended": self.meta["ended"], "error": error})
        except sqlite3.Error:
            pass
        failure = None
        try:
            try:
                self.write_meta()
            except OSError as e:
                failure = e
        finally:
            try:
                self._checkpoint("TRUNCATE")
                self._to_rollback_journal()
            finally:
                self._con.close()
                self._con = None
        if failure is not None:
            raise RunWriteError(failure.errno, f"could not record the end of the run in {self.run_dir} "
                                f"({failure.strerror or failure}); its run.json still says it is running") \
                from failure


def _key(run_dir: Path) -> str:
    try:
        return str(Path(run_dir).resolve())
    except (OSError, RuntimeError):
        return os.path.abspath(run_dir)
