"""The run store: one run directory = run.json (metadata) + run.db (SQLite, WAL) (+ tb/ mirror).

It owns the run directory: its file names (schema), reading and writing it, and its life cycle
(rundir: ending a run, heartbeat, change signature, compaction). Nothing outside runstore/ opens
run.db or spells a file name of the directory. Run data is untrusted: files opens only regular
files, size-capped; meta checks run.json's field types; wal tells a lost or damaged WAL; liveness
decides whether a "running" run's writer still lives.

Torch-free, so the dashboard and diagnostics can read runs without importing torch.
"""

from . import files, liveness, schema, tags
from .liveness import effective_status, pid_alive
from .meta import clean_meta
from .reader import HistSeries, Run, RunReadError, is_run_dir, load_run, read_info, read_meta
from .rundir import (Heartbeat, compact, has_data, heartbeat, log_tail, mark_ended, mark_killed, mark_never_started,
                     meta_signature, read_meta_or_none, signature)
from .writer import Batch, RunExistsError, RunWriteError, RunWriter, write_json_atomic

__all__ = ["files", "liveness", "schema", "tags", "HistSeries", "Run", "RunReadError", "clean_meta",
           "effective_status", "is_run_dir", "load_run", "read_info", "read_meta", "pid_alive", "Heartbeat",
           "compact", "has_data", "heartbeat", "log_tail", "mark_ended", "mark_killed", "mark_never_started",
           "meta_signature", "read_meta_or_none", "signature", "Batch", "RunExistsError", "RunWriteError",
           "RunWriter", "write_json_atomic"]
