"""Read a run directory into numpy/pandas, also while it is being written. Never imports torch."""

from __future__ import annotations

import os
import sqlite3
import stat
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from . import files, schema
from .liveness import effective_status
from .meta import clean_int, clean_meta, clean_time
from .wal import wal_problems


_SQLITE_CANTOPEN = 14  # sqlite3.SQLITE_CANTOPEN (exported from Python 3.11 on)


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


def _meta_checked(run_dir: str | os.PathLike) -> tuple[dict, list[str]]:
    """(run.json with its field types checked, warnings about fields dropped); RunReadError if it is
    missing or cannot be read as a JSON object."""
    path = Path(run_dir) / schema.META_FILE
    try:
        data = files.read_bytes(path, max_bytes=files.MAX_META_BYTES)
    except FileNotFoundError:
        raise RunReadError(f"{run_dir} is not a run directory: it has no {schema.META_FILE}.") from None
    except files.NotARegularFile as e:
        raise RunReadError(f"{path} cannot be read: {e.why}.") from None
    except files.FileTooLarge as e:
        raise RunReadError(f"{path} cannot be read: {e.why}, far more than any {schema.META_FILE} the probes "
                           f"write.") from None
    except OSError as e:  # permission denied, a symlink loop, an I/O error
        raise RunReadError(f"{path} cannot be read ({e.strerror or e}).") from None
    try:
        raw = files.parse_json_object(data)
    except ValueError as e:
        raise RunReadError(f"{path} is corrupt: {e}. The run's numbers may still be in {schema.DB_FILE}.") from None
    return clean_meta(raw)


def read_meta(run_dir: str | os.PathLike) -> dict:
    """run.json as a dict whose known fields have their documented types (runstore.meta.clean_meta);
    RunReadError if it is missing, unreadable or not a JSON object."""
    return _meta_checked(run_dir)[0]


def is_run_dir(path: str | os.PathLike) -> bool:
    """True if `path` holds a run.json or a run.db (regular files); False for anything else,
    including paths that cannot be read or named."""
    try:
        p = Path(path)
    except TypeError:
        return False
    return files.is_regular_file(p / schema.META_FILE) or files.is_regular_file(p / schema.DB_FILE)


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def open_db(db: Path, warn=lambda msg: None) -> sqlite3.Connection:
    """run.db opened read-only, checked readable (sqlite3.Error if not). A -wal/-shm that is not a
    regular file is ignored (with a warning): opening a FIFO would block. A run closed in WAL mode
    opens from a read-only folder too, where SQLite cannot create its -shm index: nothing is left in
    its WAL then, so it is read as an immutable file."""
    immutable = False
    for side in (schema.DB_WAL, schema.DB_SHM):
        problem = files.regular_file_problem(db.with_name(side))
        if problem not in (None, "missing"):
            warn(f"{side} {problem}; it is ignored, so the numbers of the last flushes may be missing.")
            immutable = True
    con = schema.connect(db, readonly=True, immutable=immutable)
    try:
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return con
    except sqlite3.OperationalError as e:
        con.close()
        try:
            wal_bytes = os.stat(db.with_name(schema.DB_WAL)).st_size
        except OSError:
            wal_bytes = 0
        # Only "cannot open" (the -shm cannot be created) is a read-only folder; "locked" means a
        # writer is busy with the file, which an immutable read must not race. Numbers in the WAL
        # would be missed: then say what failed instead.
        cannot_open = getattr(e, "sqlite_errorcode", None) == _SQLITE_CANTOPEN or "unable to open" in str(e)
        if immutable or wal_bytes > 0 or not cannot_open:
            raise
    con = schema.connect(db, readonly=True, immutable=True)
    try:
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        con.close()
        raise
    return con


def read_info(run_dir: str | os.PathLike) -> dict:
    """The `info` table of run.db with checked types: the heartbeat (last_flush, last_step) and,
    once the writer closed the run, its final `status`; {} while run.db does not exist, has no
    tables yet, or cannot be read."""
    db = Path(run_dir) / schema.DB_FILE
    if not files.is_regular_file(db):
        return {}
    try:
        con = open_db(db)
    except sqlite3.Error:
        return {}
    try:
        return _clean_info(schema.decode_info(con.execute("SELECT key, value FROM info").fetchall()))
    except sqlite3.Error:
        return {}
    finally:
        con.close()


def _clean_info(info: dict) -> dict:
    out = {}
    flush, step = clean_time(info.get("last_flush")), clean_int(info.get("last_step"), -1)
    if flush is not None:
        out["last_flush"] = flush
    if step is not None:
        out["last_step"] = step
    if info.get("status") in schema.ENDED:
        out["status"] = info["status"]
        if isinstance(info.get("error"), str):
            out["error"] = info["error"]
    return out


def _expects_data(meta: dict) -> bool:
    """Does run.json say run.db holds numbers? It does once a run ended with a last step, and for a
    run still recording: the writer creates run.db (with its tables) before it writes run.json."""
    last = meta.get("last_step")
    return (isinstance(last, int) and last >= 0) or (
        meta.get("status") == schema.RUNNING and "format_version" in meta and "pid" in meta)


def _lost(meta: dict, what: str) -> str:
    last = meta.get("last_step")
    said = (f"run.json says steps up to {last} were recorded" if isinstance(last, int) and last >= 0 else
            "run.json says the run is recording, and its writer creates run.db first")
    return f"{what}, but {said}: the run's data was lost or damaged."


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
        self._closed_as: str | None = None  # the final status the writer stored in run.db
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
        run.last_flush, run._closed_as = None, None
        run.last_step = max((int(np.max(s)) for s, _ in (scalars or {}).values() if len(s)), default=-1)
        run._in_memory = True
        return run

    # -- loading ----------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Read metadata and any rows appended since the last call. Returns True if anything new."""
        if getattr(self, "_in_memory", False):
            return False
        if not _is_dir(self.path):
            raise RunReadError(f"{self.path} does not exist or is not a directory.")
        db = self.path / schema.DB_FILE
        db_problem = files.regular_file_problem(db)
        try:
            self.meta, notes = _meta_checked(self.path)
            for note in notes:
                self._warn(note)
        except RunReadError as e:
            if db_problem == "missing":
                raise
            if db_problem is not None:
                raise RunReadError(f"{e} And {db.name} {db_problem}: there is nothing to show.") from None
            self._warn(str(e))
        if db_problem == "missing":
            self._warn(_lost(self.meta, f"{db.name} is missing") if _expects_data(self.meta) else
                       f"{db.name} is missing: the run has metadata but no recorded numbers yet.")
            return False
        if db_problem is not None:
            self._warn(f"{db.name} {db_problem}; the run's numbers cannot be read.")
            return False
        for problem in wal_problems(db, live=self.status == schema.RUNNING):
            self._warn(problem)
        try:
            con = open_db(db, self._warn)
        except sqlite3.Error as e:  # not a database, or not one SQLite can open here
            self._warn(f"{db} cannot be opened ({e}); its numbers cannot be read.")
            return False
        try:
            new = self._read_new(con)
        except sqlite3.DatabaseError as e:
            # A truncated or overwritten file: keep whatever was read before and say so.
            self._warn(f"{db} is damaged ({e}); showing what could be read.")
            return False
        except sqlite3.Error as e:  # e.g. the connection could not be used: nothing to show
            raise RunReadError(f"{db} could not be read: {type(e).__name__}: {e}") from None
        finally:
            con.close()
        last = self.meta.get("last_step")
        if isinstance(last, int) and last > self.last_step:
            self._warn(f"run.json says steps up to {last} were recorded, but {db.name} ends at step "
                       f"{self.last_step}: the last flushes were lost ({schema.DB_WAL} deleted or damaged?).")
        return new

    def _warn(self, msg: str) -> None:
        if msg not in self.warnings:
            self.warnings.append(msg)

    def _skipped(self, what: str, tids: set) -> None:
        if tids:
            ids = ", ".join(map(str, sorted(tids, key=str)[:5])) + (", ..." if len(tids) > 5 else "")
            self._warn(f"{schema.DB_FILE} holds {what} of unknown tags (tag ids {ids}); skipped.")

    def _read_new(self, con: sqlite3.Connection) -> bool:
        try:
            rows = con.execute("SELECT id, name FROM tags").fetchall()
        except sqlite3.OperationalError:
            self._warn(_lost(self.meta, f"{schema.DB_FILE} holds no tables") if _expects_data(self.meta) else
                       f"{schema.DB_FILE} has no tables yet (the run is just starting).")
            return False
        names = self._tag_names
        for tid, name in rows:
            if isinstance(tid, int) and isinstance(name, str) and name:
                names[tid] = name
        new = False
        unknown: set = set()
        # One read transaction so all tables are read at the same WAL snapshot.
        con.execute("BEGIN")
        # Blobs are kept as bytes here and decoded per tag on first use (series()): one join and
        # one frombuffer per tag instead of two per chunk makes opening a long run several times faster.
        rows = con.execute("SELECT id, tag_id, n, steps, vals FROM scalar_chunks WHERE id > ? ORDER BY id",
                           (self._seen["scalar_chunks"],)).fetchall()
        if rows:
            new = True
            self._seen["scalar_chunks"] = rows[-1][0]
            chunks = self._scalars
            for _, tid, n, steps, vals in rows:
                name = names.get(tid)
                if name is None:
                    unknown.add(tid)
                elif not (isinstance(n, int) and isinstance(steps, bytes) and isinstance(vals, bytes)
                          and len(steps) == 8 * n == len(vals)):
                    self._warn(f"a scalar chunk of {name} is truncated or damaged; skipped.")
                else:
                    chunks.setdefault(name, []).append((steps, vals))
        self._skipped("scalar chunks", unknown)
        # Histograms are only indexed here; their blobs (most of a run's bytes) are read when a
        # page asks for that tag (histograms()), so opening a run reads scalars alone.
        unknown = set()
        for rid, tid in con.execute("SELECT id, tag_id FROM hist_chunks WHERE id > ? ORDER BY id",
                                    (self._seen["hist_chunks"],)):
            self._seen["hist_chunks"] = rid
            new = True
            name = names.get(tid)
            if name is None:
                unknown.add(tid)
                continue
            self._hist_pending.setdefault(name, []).append(rid)
            self._hists.setdefault(name, [])
        self._skipped("histogram chunks", unknown)
        unknown = set()
        for tid, step, data, rid in con.execute(
                "SELECT tag_id, step, data, id FROM tables_ WHERE id > ? ORDER BY id", (self._seen["tables_"],)):
            self._seen["tables_"] = rid
            new = True
            name = names.get(tid)
            if name is None:
                unknown.add(tid)
                continue
            try:
                if not isinstance(data, (str, bytes)) or clean_int(step) is None:
                    raise ValueError("not a table")
                self._tables.append((name, step, files.parse_json_object(data)))
            except ValueError:
                self._warn(f"table {name} at step {step} is not a JSON object; skipped.")
        self._skipped("tables", unknown)
        for rid, step, wall, kind, message in con.execute(
                "SELECT id, step, wall, kind, message FROM events WHERE id > ? ORDER BY id", (self._seen["events"],)):
            self._events.append((clean_int(step), _float_or_nan(wall), _text(kind), _text(message)))
            self._seen["events"] = rid
            new = True
        info = _clean_info(schema.decode_info(con.execute("SELECT key, value FROM info").fetchall()))
        con.execute("COMMIT")
        self.last_flush = info.get("last_flush", self.last_flush)
        self._closed_as = info.get("status", self._closed_as)
        self.last_step = info.get("last_step", self.last_step)
        if new:
            self.__dict__.pop("scalars", None)
            self._series_cache = {}
        return new

    # -- metadata ---------------------------------------------------------------------------
    @property
    def status(self) -> str:
        """run.json's status as runstore.effective_status judges it. When run.json cannot be read,
        or still says "running" because rewriting it failed at the end (a full disk), the final
        status the writer also stored in run.db counts."""
        if self._closed_as is not None and self.meta.get("status", schema.RUNNING) == schema.RUNNING:
            return self._closed_as
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
        db = self.path / schema.DB_FILE
        try:
            if not files.is_regular_file(db):
                raise sqlite3.OperationalError(f"{db.name} is not a regular file any more")
            con = open_db(db)
        except sqlite3.Error as e:
            self._warn(f"histograms of {tag} could not be read ({e}).")
            return
        try:
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                rows = con.execute(f"SELECT n, bins, steps, lo, hi, counts FROM hist_chunks WHERE id IN "
                                   f"({','.join('?' * len(part))}) ORDER BY id", part).fetchall()
                for n, bins, steps, lo, hi, counts in rows:
                    if not (isinstance(n, int) and isinstance(bins, int) and n >= 0 and bins > 0
                            and all(isinstance(b, bytes) for b in (steps, lo, hi, counts))
                            and len(steps) == len(lo) == len(hi) == 8 * n and len(counts) == 4 * n * bins):
                        self._warn(f"a histogram chunk of {tag} is truncated or damaged; skipped.")
                        continue
                    self._hists[tag].append((np.frombuffer(steps, "<i8"), np.frombuffer(lo, "<f8"),
                                             np.frombuffer(hi, "<f8"),
                                             np.frombuffer(counts, "<f4").reshape(n, bins)))
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


def _float_or_nan(value) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            pass
    return float("nan")


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ("" if value is None else str(value))


def load_run(path: str | os.PathLike) -> Run:
    """Load a run directory written by probes. Raises RunReadError with a clear message if it is
    not a run at all; a damaged but partly readable run loads with `run.warnings` set. Never raises
    anything else, and never blocks on a file that is not a regular file."""
    try:
        path = Path(path)
    except TypeError as e:
        raise RunReadError(f"{path!r} is not a path ({e}).") from None
    if not is_run_dir(path):
        raise RunReadError(f"{path} is not a run directory (no readable {schema.META_FILE} or {schema.DB_FILE}).")
    try:
        return Run(path)
    except (OSError, ValueError, RecursionError, MemoryError) as e:  # a last line of defence
        raise RunReadError(f"{path} could not be read: {type(e).__name__}: {e}") from None
