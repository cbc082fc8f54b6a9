"""The TensorBoard logs read so far, kept so that reading one again costs only what changed on disk.

The CLI reads a log once, but the dashboard re-reads a log each time one of its event files
changes (a run still training): with the per-file read offsets and values kept here, that costs
the appended records instead of the whole log. Bounded: at most MAX_LOGS logs and MAX_VALUES values
in all, least recently read first out (the log just read always stays). Thread-safe: the dashboard
serves several sessions at once; each log carries its own lock for reading it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable, Protocol, TypeVar

MAX_LOGS = 8
# About 40 bytes are kept per value (wall time, step and value per file, the merged series): 400 MB.
MAX_VALUES = 10_000_000


class Cached(Protocol):
    lock: threading.RLock

    def n_values(self) -> int: ...


E = TypeVar("E", bound=Cached)

_lock = threading.Lock()
_logs: "OrderedDict[Hashable, Cached]" = OrderedDict()


def entry(key: Hashable, make: Callable[[], E]) -> E:
    """The cached state for `key`, made by `make()` the first time; marks it most recently used."""
    with _lock:
        log = _logs.get(key)
        if log is None:
            log = _logs[key] = make()
        _logs.move_to_end(key)
        return log


def trim() -> None:
    """Forget the least recently read logs while over the bounds."""
    with _lock:
        total = sum(log.n_values() for log in _logs.values())
        while len(_logs) > 1 and (len(_logs) > MAX_LOGS or total > MAX_VALUES):
            _, log = _logs.popitem(last=False)
            total -= log.n_values()


def clear() -> None:
    with _lock:
        _logs.clear()


def cached(key: Hashable) -> Cached | None:
    with _lock:
        return _logs.get(key)
