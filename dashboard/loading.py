"""Keep runs in memory and bring them up to date cheaply; run the advice once per new data.

No Streamlit here: `ui/cache.py` keeps one HandlePool per process in `st.cache_resource`, so all
sessions and reruns share a run's RunHandle, and a rerun only reads what the writer appended since.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections import OrderedDict
from pathlib import Path

from runstore import Run, RunReadError, load_run, read_meta, schema, signature

from .discovery import RUN, TENSORBOARD, RunRef

# The advice of a live run is refreshed at most this often (and less often when the rules are slow
# on a big run, see RunHandle.findings), so the cards keep up with the live charts.
LIVE_ADVICE_INTERVAL_S = 1.0


def _diagnostics():
    """The diagnostics package, imported late so the charts work even if it is broken."""
    import diagnostics  # noqa: PLC0415

    return diagnostics


def _stat(path: str):
    try:
        st = os.stat(path)
        return st.st_mtime_ns, st.st_size
    except OSError:
        return None


# Runs kept in memory at once (the run pages' current run, the runs picked on Compare, the Train
# page's jobs); the least recently used is dropped first. Runs are never loaded just to be listed
# (summary.SummaryStore reads what the Runs table needs and lets the run go).
MAX_OPEN_RUNS = 64


def short_error(e: BaseException) -> str:
    """One line saying why something failed, in the reader's words when it is a RunReadError."""
    msg = " ".join((str(e).strip() or type(e).__name__).split())
    return msg if isinstance(e, RunReadError) else f"{type(e).__name__}: {msg}"


def disk_signature(ref: RunRef):
    """Changes whenever the run's files change on disk (runstore.signature; for a TensorBoard log,
    its event files); cheap enough to poll for every run listed."""
    if ref.kind == TENSORBOARD:
        try:
            names = sorted(n for n in os.listdir(ref.path) if n.startswith("events.out.tfevents"))
        except OSError:
            return None
        return tuple((n, _stat(os.path.join(ref.path, n))) for n in names)
    return signature(ref.path)


class RunHandle:
    """One run kept in memory: `sync()` re-reads only what changed on disk, `findings()` runs the
    rules once per new data. Safe to share between Streamlit sessions (one lock per run)."""

    def __init__(self, ref: RunRef):
        self.ref = ref
        self.run: Run | None = None
        self.error: str | None = None
        self.version = 0  # bumped whenever the in-memory data changes
        self._lock = threading.RLock()
        self._signature = None
        self._checked = 0.0
        self._advice: tuple[int, list, str | None] | None = None
        self._advice_at = 0.0
        self._advice_cost = 0.0
        self.trace: str | None = None  # traceback of the last load failure, for the error card

    @property
    def path(self) -> str:
        return self.ref.path

    @property
    def is_live(self) -> bool:
        return self.run is not None and self.run.status == schema.RUNNING

    # -- disk ----------------------------------------------------------------------------------
    def _disk_signature(self):
        return disk_signature(self.ref)

    def _load(self) -> Run:
        if self.ref.kind == TENSORBOARD:
            return _diagnostics().load_run(self.path)
        return load_run(self.path)

    def _replaced(self) -> bool:
        """True if run.json now describes another run (the folder was overwritten)."""
        try:
            meta = read_meta(self.path)
        except Exception:  # noqa: BLE001 - unreadable now: refresh() says why
            return False
        old = self.run.meta
        return (meta.get("run_id"), meta.get("created")) != (old.get("run_id"), old.get("created"))

    def sync(self, *, min_interval: float = 1.0) -> "RunHandle":
        """Re-read the run if its files changed (checked at most every `min_interval` seconds)."""
        with self._lock:
            now = time.monotonic()
            if (self.run is not None or self.error is not None) and now - self._checked < min_interval:
                return self
            self._checked = now
            sig = self._disk_signature()
            if sig == self._signature and (self.run is not None or self.error is not None):
                return self
            self._signature = sig
            try:
                if self.run is None or self.ref.kind == TENSORBOARD or self._replaced():
                    self.run = self._load()
                else:
                    # run.json is re-read too: a status change alone is news
                    self.run.refresh()
                self.error = None
            except Exception as e:  # noqa: BLE001 - any failure becomes this run's error card
                self.run, self.error = None, short_error(e)
                self.trace = traceback.format_exc()
            self.version += 1
            return self

    # -- advice ---------------------------------------------------------------------------------
    def judgement(self):
        """(diagnostics.Judgement or None, error message if the rules failed): the findings and the
        per-layer verdicts every page shows, computed once per new data."""
        with self._lock:
            if self.run is None:
                return None, None
            cached = self._advice
            if cached is not None and cached[0] == self.version:
                return cached[1], cached[2]
            # While a run is live, re-run the rules at most every second, or less often when they are
            # slow on a big run (at most ~10% of the time spent on advice), so the cards keep up
            # with the charts without making the page sluggish.
            wait = max(LIVE_ADVICE_INTERVAL_S, 10 * self._advice_cost)
            if cached is not None and self.is_live and time.monotonic() - self._advice_at < wait:
                return cached[1], cached[2]
            t0 = time.monotonic()
            try:
                judged, err = _diagnostics().judge(self.run), None
            except Exception as e:  # noqa: BLE001 - broken rules must not take the charts down
                judged, err = None, f"The advice could not be computed: {short_error(e)}"
            self._advice = (self.version, judged, err)
            self._advice_at = time.monotonic()
            self._advice_cost = self._advice_at - t0
            return judged, err

    def findings(self) -> tuple[list, str | None]:
        """(findings, most severe and most likely root cause first; error message if the rules failed)."""
        judged, err = self.judgement()
        return (judged.findings if judged is not None else []), err


class HandlePool:
    """The RunHandles of the runs open in the app, at most `max_open`; the least recently used is
    dropped first (its memory goes with it; opening it again reads it again). Thread-safe."""

    def __init__(self, max_open: int = MAX_OPEN_RUNS):
        self.max_open = max_open
        self._handles: OrderedDict[str, RunHandle] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ref: RunRef) -> RunHandle:
        """The run's handle, created (not yet synced) if the run is not open."""
        with self._lock:
            h = self._handles.get(ref.path)
            if h is None or h.ref != ref:
                h = self._handles[ref.path] = RunHandle(ref)
            self._handles.move_to_end(ref.path)
            while len(self._handles) > self.max_open:
                self._handles.popitem(last=False)
            return h

    def peek(self, path: str) -> RunHandle | None:
        """The handle of an open run, or None; does not open it."""
        with self._lock:
            return self._handles.get(path)

    def __contains__(self, path: str) -> bool:
        with self._lock:
            return path in self._handles

    def __len__(self) -> int:
        with self._lock:
            return len(self._handles)


def load_handle(path: str | os.PathLike, kind: str = RUN, folder: str | None = None) -> RunHandle:
    """A synced handle for one run path (convenience for scripts and tests)."""
    p = os.path.abspath(path)
    return RunHandle(RunRef(p, kind, folder or str(Path(p).parent))).sync(min_interval=0)
