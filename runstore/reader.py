"""Read a run directory into numpy/pandas, also while it is being written. Never imports torch."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from . import schema


class RunReadError(Exception):
    """A run directory could not be read at all; the message says why and what to do."""


@dataclass
class HistSeries:
    """Histograms of one tag over time: row i is the histogram at steps[i] with `bins` equal-width
    bins from lo[i] to hi[i]."""

    steps: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    counts: np.ndarray  # shape (len(steps), bins)

    @property
    def bins(self) -> int:
        return self.counts.shape[1] if self.counts.ndim == 2 else 0

    def edges(self, i: int) -> np.ndarray:
        return np.linspace(self.lo[i], self.hi[i], self.bins + 1)

    def to_frame(self) -> pd.DataFrame:
        """One row per recorded step: step, lo, hi, counts (an array per row)."""
        return pd.DataFrame({"step": self.steps, "lo": self.lo, "hi": self.hi, "counts": list(self.counts)})


def _decode(chunks: list[tuple[bytes, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one scalar tag from its raw chunks."""
    return (np.frombuffer(b"".join(c[0] for c in chunks), "<i8"),
            np.frombuffer(b"".join(c[1] for c in chunks), "<f8"))


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


# A writer flushes at least every few seconds while it lives; with no flush for this long, a
# "running" run on another host is reported as killed.
STALE_AFTER_S = 600.0


def effective_status(meta: dict, last_flush: float | None) -> str:
    """The stored status, except that a "running" run whose writer is gone becomes "killed"."""
    status = meta.get("status", schema.RUNNING)
    if status != schema.RUNNING:
        return status
    pid, host = meta.get("pid"), meta.get("host")
    if host == socket.gethostname() and isinstance(pid, int):
        return schema.RUNNING if pid_alive(pid) else schema.KILLED
    if last_flush is not None and time.time() - last_flush > STALE_AFTER_S:
        return schema.KILLED
    return schema.RUNNING


def read_meta(run_dir: str | os.PathLike) -> dict:
    """run.json as a dict; RunReadError if it is missing or not JSON."""
    path = Path(run_dir) / schema.META_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunReadError(f"{run_dir} is not a run directory: it has no {schema.META_FILE}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunReadError(f"{path} is corrupt ({e}); the run's numbers may still be in {schema.DB_FILE}.") from None
    except OSError as e:  # permission denied, a folder of that name, ...
        raise RunReadError(f"{path} cannot be read ({e.strerror or e}).") from None


def is_run_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / schema.META_FILE).is_file() or (p / schema.DB_FILE).is_file()


class Run:
    """A loaded run. `refresh()` appends what the writer flushed since the last read.

    Attributes: path, meta (run.json), status (effective), last_step, warnings (problems met
    while reading that did not stop it), and the data accessors below.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.warnings: list[str] = []
        self._scalars: dict[str, list[tuple[bytes, bytes]]] = {}  # raw little-endian chunks per tag
        self._hists: dict[str, list[tuple]] = {}
        self._tables: list[tuple[str, int, dict]] = []
        self._events: list[tuple] = []
        self._seen = {"scalar_chunks": 0, "hist_chunks": 0, "tables_": 0, "events": 0}
        self._tag_names: dict[int, str] = {}
        self.last_flush: float | None = None
        self.last_step: int = -1
        self.meta: dict = {}
        self._series_cache: dict[str, pd.Series] = {}
        self._hist_pending: dict[str, list[int]] = {}  # tag -> ids of chunks not read yet
        self.refresh()

    @classmethod
    def from_arrays(cls, path, meta: dict, *, scalars: dict[str, tuple] | None = None,
                    hists: dict[str, HistSeries] | None = None, tables=(), events=(),
                    warnings=()) -> "Run":
        """Build a Run from data read elsewhere (e.g. a TensorBoard log). It has no database, so
        refresh() on it reads nothing new."""
        run = cls.__new__(cls)
        run.path, run.meta, run.warnings = Path(path), dict(meta), list(warnings)
        run._scalars = {t: [(np.asarray(s, "<i8").tobytes(), np.asarray(v, "<f8").tobytes())]
                        for t, (s, v) in (scalars or {}).items()}
        run._hists = {t: [(h.steps, h.lo, h.hi, h.counts)] for t, h in (hists or {}).items()}
        run._tables, run._events = list(tables), list(events)
        run._seen, run._tag_names, run._series_cache, run._hist_pending = {}, {}, {}, {}
        run.last_flush = None
        run.last_step = max((int(np.max(s)) for s, _ in (scalars or {}).values() if len(s)), default=-1)
        run._in_memory = True
        return run

    # -- loading ----------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Read metadata and any rows appended since the last call. Returns True if anything new."""
        if getattr(self, "_in_memory", False):
            return False
        if not self.path.is_dir():
            raise RunReadError(f"{self.path} does not exist or is not a directory.")
        try:
            self.meta = read_meta(self.path)
        except RunReadError as e:
            if not (self.path / schema.DB_FILE).exists():
                raise
            self._warn(str(e))
        db = self.path / schema.DB_FILE
        if not db.exists():
            self._warn(f"{db.name} is missing: the run has metadata but no recorded numbers yet.")
            return False
        try:
            con = schema.connect(db, readonly=True)
        except sqlite3.Error as e:
            raise RunReadError(f"{db} cannot be opened ({e}).") from None
        try:
            return self._read_new(con)
        except sqlite3.DatabaseError as e:
            # A truncated or overwritten file: keep whatever was read before and say so.
            self._warn(f"{db} is damaged ({e}); showing what could be read.")
            return False
        except sqlite3.Error as e:  # e.g. the connection could not be used: nothing to show
            raise RunReadError(f"{db} could not be read: {type(e).__name__}: {e}") from None
        finally:
            con.close()

    def _warn(self, msg: str) -> None:
        if msg not in self.warnings:
            self.warnings.append(msg)

    def _read_new(self, con: sqlite3.Connection) -> bool:
        try:
            rows = con.execute("SELECT id, name FROM tags").fetchall()
        except sqlite3.OperationalError:
            self._warn("run.db has no tables yet (the run is just starting).")
            return False
        self._tag_names.update(rows)
        new = False
        # One read transaction so all tables are read at the same WAL snapshot.
        con.execute("BEGIN")
        # Blobs are kept as bytes here and decoded per tag on first use (series()): one join and
        # one frombuffer per tag instead of two per chunk makes opening a long run several times faster.
        rows = con.execute("SELECT id, tag_id, n, steps, vals FROM scalar_chunks WHERE id > ? ORDER BY id",
                           (self._seen["scalar_chunks"],)).fetchall()
        if rows:
            new = True
            self._seen["scalar_chunks"] = rows[-1][0]
            names, chunks = self._tag_names, self._scalars
            for _, tid, n, steps, vals in rows:
                if len(steps) != 8 * n or len(vals) != 8 * n:
                    self._warn(f"a scalar chunk of {names.get(tid)} is truncated; skipped.")
                    continue
                chunks.setdefault(names[tid], []).append((steps, vals))
        # Histograms are only indexed here; their blobs (most of a run's bytes) are read when a
        # page asks for that tag (histograms()), so opening a run reads scalars alone.
        for rid, tid in con.execute("SELECT id, tag_id FROM hist_chunks WHERE id > ? ORDER BY id",
                                    (self._seen["hist_chunks"],)):
            self._hist_pending.setdefault(self._tag_names[tid], []).append(rid)
            self._hists.setdefault(self._tag_names[tid], [])
            self._seen["hist_chunks"] = rid
            new = True
        for tid, step, data, rid in con.execute(
                "SELECT tag_id, step, data, id FROM tables_ WHERE id > ? ORDER BY id", (self._seen["tables_"],)):
            try:
                self._tables.append((self._tag_names[tid], step, json.loads(data)))
            except json.JSONDecodeError:
                self._warn(f"table {self._tag_names.get(tid)} at step {step} is not valid JSON; skipped.")
            self._seen["tables_"] = rid
            new = True
        for rid, step, wall, kind, message in con.execute(
                "SELECT id, step, wall, kind, message FROM events WHERE id > ? ORDER BY id", (self._seen["events"],)):
            self._events.append((step, wall, kind, message))
            self._seen["events"] = rid
            new = True
        info = schema.decode_info(con.execute("SELECT key, value FROM info").fetchall())
        con.execute("COMMIT")
        if isinstance(info.get("last_flush"), (int, float)):
            self.last_flush = info["last_flush"]
        if isinstance(info.get("last_step"), int):
            self.last_step = info["last_step"]
        if new:
            self.__dict__.pop("scalars", None)
            self._series_cache = {}
        return new

    # -- metadata ---------------------------------------------------------------------------
    @property
    def status(self) -> str:
        return effective_status(self.meta, self.last_flush)

    @property
    def name(self) -> str:
        return self.meta.get("name") or self.path.name

    @property
    def hparams(self) -> dict:
        return self.meta.get("hparams") or {}

    # -- scalars ----------------------------------------------------------------------------
    def scalar_tags(self) -> list[str]:
        return list(self._scalars)

    def hist_tags(self) -> list[str]:
        return list(self._hists)

    def has(self, tag: str) -> bool:
        return tag in self._scalars or tag in self._hists

    def series(self, tag: str) -> pd.Series:
        """Values of one scalar tag indexed by step (empty Series if the tag was never recorded)."""
        cache = self._series_cache
        if tag not in cache:
            chunks = self._scalars.get(tag)
            if not chunks:
                return pd.Series(dtype=float, name=tag, index=pd.Index([], dtype=np.int64, name="step"))
            steps, vals = _decode(chunks)
            s = pd.Series(vals, index=pd.Index(steps, name="step"), name=tag)
            if not s.index.is_monotonic_increasing:
                s = s.sort_index(kind="stable")
            cache[tag] = s
        return cache[tag]

    @cached_property
    def scalars(self) -> pd.DataFrame:
        """All scalars in long form: columns tag (categorical), step, value."""
        tags, steps, vals = [], [], []
        for tag, chunks in self._scalars.items():
            s, v = _decode(chunks)
            tags.append(np.full(len(s), tag, dtype=object))
            steps.append(s)
            vals.append(v)
        if not tags:
            return pd.DataFrame({"tag": pd.Categorical([]), "step": np.array([], np.int64), "value": np.array([])})
        return pd.DataFrame({"tag": pd.Categorical(np.concatenate(tags)), "step": np.concatenate(steps),
                             "value": np.concatenate(vals)})

    # -- histograms, tables, events ---------------------------------------------------------
    def _load_hist_chunks(self, tag: str) -> None:
        ids = self._hist_pending.pop(tag, None)
        if not ids:
            return
        try:
            con = schema.connect(self.path / schema.DB_FILE, readonly=True)
        except sqlite3.Error as e:
            self._warn(f"histograms of {tag} could not be read ({e}).")
            return
        try:
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                rows = con.execute(f"SELECT n, bins, steps, lo, hi, counts FROM hist_chunks WHERE id IN "
                                   f"({','.join('?' * len(part))}) ORDER BY id", part).fetchall()
                for n, bins, steps, lo, hi, counts in rows:
                    c = np.frombuffer(counts, "<f4")
                    if c.size != n * bins:
                        self._warn(f"a histogram chunk of {tag} is truncated; skipped.")
                        continue
                    self._hists[tag].append((np.frombuffer(steps, "<i8"), np.frombuffer(lo, "<f8"),
                                             np.frombuffer(hi, "<f8"), c.reshape(n, bins)))
        except sqlite3.DatabaseError as e:
            self._warn(f"histograms of {tag} are damaged ({e}); showing what could be read.")
        finally:
            con.close()

    def histograms(self, tag: str) -> HistSeries | None:
        """Histograms of one tag over time (read from disk on first use), or None if never recorded."""
        self._load_hist_chunks(tag)
        chunks = self._hists.get(tag)
        if not chunks:
            return None
        bins = {c[3].shape[1] for c in chunks}
        if len(bins) > 1:  # bin count changed between flushes: keep the most common one
            common = max(bins, key=lambda b: sum(c[3].shape[0] for c in chunks if c[3].shape[1] == b))
            chunks = [c for c in chunks if c[3].shape[1] == common]
        return HistSeries(*(np.concatenate([c[i] for c in chunks]) for i in range(4)))

    def tables(self, tag: str) -> list[tuple[int, dict]]:
        """[(step, table)] for one table tag, e.g. val/calibration."""
        return [(step, data) for t, step, data in self._tables if t == tag]

    @property
    def events(self) -> pd.DataFrame:
        return pd.DataFrame(self._events, columns=["step", "wall", "kind", "message"])


def load_run(path: str | os.PathLike) -> Run:
    """Load a run directory written by probes. Raises RunReadError with a clear message if it is
    not a run at all; a damaged but partly readable run loads with `run.warnings` set."""
    path = Path(path)
    if not is_run_dir(path):
        raise RunReadError(f"{path} is not a run directory (no {schema.META_FILE} or {schema.DB_FILE}).")
    return Run(path)
