"""Is the process recording a "running" run still alive? run.json stores the writer's pid and host;
the `info` table of run.db its heartbeat (`last_flush`, rewritten on every flush).

A pid alone is not enough: it may be bogus (0 or -1 would signal a whole process group, 2**70
overflows), and after the writer dies the OS may give its pid to an unrelated process. On Linux a
process's start time (/proc/<pid>/stat) settles reuse exactly: the writer started before it created
its run, a process that reused the pid started after. Where the start time cannot be read, or for a
run recorded on another host, the heartbeat decides: a writer flushes at least every `flush_secs`
(seconds) while it trains, so no flush for STALE_AFTER_S means it is gone.
"""

from __future__ import annotations

import os
import socket
import time

from . import schema
from . import meta as _meta  # meta imports this module too: read its function at call time

# pid_t is a signed 32-bit integer on every OS Python runs on; 0 and negative values address
# process groups in kill(2), never one process.
MAX_PID = 2 ** 31 - 1
# No flush for this long and the writer is taken for gone. Generous on purpose: writers flush every
# few seconds while training, but a long evaluation or checkpoint save makes no steps, and calling a
# live run "killed" is worse than noticing a dead one a few minutes late.
STALE_AFTER_S = 600.0
# A process started this much after the run was created is not its writer. Covers the one-second
# resolution of the boot time the start time is computed from, and small clock adjustments.
START_SLACK_S = 5.0


def valid_pid(pid) -> bool:
    """True for a pid one process can have (an int from 1 to MAX_PID, not a bool)."""
    return isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid <= MAX_PID


def pid_alive(pid) -> bool:
    """Whether a process with this pid exists on this machine (False for anything not a valid pid)."""
    if not valid_pid(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except (OSError, OverflowError, ValueError):
        return False
    return True


_BOOT_TIME: list[float | None] = []


def _boot_time() -> float | None:
    if not _BOOT_TIME:
        boot = None
        try:
            with open("/proc/stat", "rb") as f:
                for line in f:
                    if line.startswith(b"btime "):
                        boot = float(line.split()[1])
                        break
        except (OSError, ValueError, IndexError):
            pass
        _BOOT_TIME.append(boot)
    return _BOOT_TIME[0]


def process_started(pid) -> float | None:
    """When the process `pid` started (Unix time), or None where that cannot be read (no /proc)."""
    if not valid_pid(pid):
        return None
    boot = _boot_time()
    if boot is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        # "pid (comm) state ppid ..." where comm may hold spaces and parentheses; field 22 is the
        # start time in clock ticks after boot, the 20th field after the closing parenthesis.
        ticks = int(data[data.rindex(b")") + 2:].split()[19])
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def writer_alive(meta: dict, last_flush: float | None, *, now: float | None = None) -> bool:
    """Whether the process that recorded `meta` (a run.json saying "running") still lives."""
    now = time.time() if now is None else now
    flushed = _meta.clean_number(last_flush)
    stale = flushed is not None and now - flushed > STALE_AFTER_S
    if meta.get("host") != socket.gethostname():
        return not stale  # another machine's process: only its heartbeat tells
    pid = meta.get("pid")
    if not pid_alive(pid):
        return False  # no valid pid, or no such process
    started, created = process_started(pid), _meta.clean_number(meta.get("created"))
    if started is not None and created is not None:
        return started <= created + START_SLACK_S  # a later process reused the pid
    return not stale


def effective_status(meta: dict, last_flush: float | None, *, now: float | None = None) -> str:
    """The stored status, except that a "running" run whose writer is gone becomes "killed". A
    status that is not one of schema.STATUSES counts as "running" (its writer decides)."""
    status = meta.get("status", schema.RUNNING) if isinstance(meta, dict) else schema.RUNNING
    if status in schema.ENDED or status == schema.IMPORTED:
        return status
    return schema.RUNNING if writer_alive(meta if isinstance(meta, dict) else {}, last_flush, now=now) \
        else schema.KILLED
