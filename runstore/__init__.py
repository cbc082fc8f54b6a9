"""The run store: one run directory = run.json (metadata) + run.db (SQLite, WAL) (+ tb/ mirror).

It owns the run directory: its file names (schema), reading and writing it, and its life cycle
(rundir: ending a run, heartbeat, change signature, compaction). Nothing outside runstore/ opens
run.db or spells a file name of the directory.

Torch-free, so the dashboard and diagnostics can read runs without importing torch.
"""

from . import schema, tags
from .reader import HistSeries, Run, RunReadError, effective_status, is_run_dir, load_run, pid_alive, read_meta
from .rundir import (Heartbeat, compact, has_data, heartbeat, log_tail, mark_ended, mark_killed, mark_never_started,
                     meta_signature, read_meta_or_none, signature)
from .writer import Batch, RunExistsError, RunWriter, write_json_atomic

__all__ = ["schema", "tags", "HistSeries", "Run", "RunReadError", "effective_status", "is_run_dir", "load_run",
           "read_meta", "pid_alive", "Heartbeat", "compact", "has_data", "heartbeat", "log_tail", "mark_ended",
           "mark_killed", "mark_never_started", "meta_signature", "read_meta_or_none", "signature", "Batch",
           "RunExistsError", "RunWriter", "write_json_atomic"]
