"""load_run: one entry point for our run directories and TensorBoard log directories."""

from __future__ import annotations

import os
from pathlib import Path

import runstore
from runstore import Run, RunReadError, schema

from . import tb_import


def load_run(path: str | os.PathLike) -> Run:
    """Load a run directory written by probes, or a TensorBoard log directory / event file.

    Raises RunReadError with a message in the user's terms when the path cannot be read as either;
    a damaged but partly readable run loads with `run.warnings` saying what was skipped.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise RunReadError(f"{p} does not exist.")
    if runstore.is_run_dir(p):
        return _load_ours(p)
    if p.is_dir() and not os.access(p, os.R_OK | os.X_OK):
        raise RunReadError(f"{p} cannot be read (permission denied).")
    if tb_import.is_tensorboard_dir(p):
        return tb_import.load_tensorboard(p)
    if p.is_dir():
        inner = sorted(c.name for c in p.iterdir() if c.is_dir() and runstore.is_run_dir(c))
        if inner:
            listed = ", ".join(inner[:5]) + (f" and {len(inner) - 5} more" if len(inner) > 5 else "")
            raise RunReadError(f"{p} is a folder of {len(inner)} runs ({listed}), not a run; pass one of them.")
        if not any(p.iterdir()):
            raise RunReadError(f"{p} is empty: no run has been written there yet.")
    raise RunReadError(f"{p} is neither a run directory (no {schema.META_FILE} or {schema.DB_FILE}) nor a "
                       f"TensorBoard log (no event files).")


def _load_ours(p: Path) -> Run:
    try:
        run = runstore.load_run(p)
    except RunReadError:  # includes a database runstore could not read
        raise
    except (OSError, ValueError) as e:
        raise RunReadError(f"{p} could not be read: {type(e).__name__}: {e}") from None
    if not run.meta and not run.scalar_tags() and not run.hist_tags():
        raise RunReadError(f"{p} holds neither readable metadata nor any recorded numbers. "
                           + " ".join(run.warnings))
    return run
