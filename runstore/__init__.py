"""The run store: one run directory = run.json (metadata) + run.db (SQLite, WAL) (+ tb/ mirror).

Torch-free, so the dashboard and diagnostics can read runs without importing torch.
"""

from . import schema, tags
from .reader import HistSeries, Run, RunReadError, effective_status, is_run_dir, load_run, pid_alive, read_meta
from .writer import Batch, RunExistsError, RunWriter, write_json_atomic

__all__ = ["schema", "tags", "HistSeries", "Run", "RunReadError", "effective_status", "is_run_dir", "load_run",
           "read_meta", "pid_alive", "Batch", "RunExistsError", "RunWriter", "write_json_atomic"]
