"""Append-only writer of one run directory. Synchronous and single-threaded by design: the probes
call it from their background writer thread, never from the training loop."""

from __future__ import annotations

import json
import math
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import schema


class RunExistsError(FileExistsError):
    """The run directory already holds another run."""


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
    """Write JSON so that a reader sees either the old or the new file, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_json_safe(data), indent=2, sort_keys=False))
    os.replace(tmp, path)


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
        self._con = schema.connect(self.run_dir / schema.DB_FILE, readonly=False)
        self._tag_ids: dict[str, int] = {}
        self.write_meta()
        self._set_info({"last_flush": now, "last_step": -1})
        self._con.commit()

    def _check_free(self, overwrite: bool) -> None:
        meta_path = self.run_dir / schema.META_FILE
        db_path = self.run_dir / schema.DB_FILE
        if not (meta_path.exists() or db_path.exists()):
            return
        if not overwrite:
            desc = ""
            try:
                old = json.loads(meta_path.read_text())
                desc = f" (run {old.get('name') or old.get('run_id')!r}, status {old.get('status')})"
            except Exception:
                pass
            raise RunExistsError(
                f"{self.run_dir} already holds a run{desc}. Choose a new run_dir, or pass "
                f"overwrite=True to replace it."
            )
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
        """Append one batch in a single transaction, so a reader never sees half a flush."""
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

    def close(self, status: str = schema.FINISHED, *, error: str | None = None) -> None:
        """Record the final status, end time and error (if any); safe to call twice."""
        if self._con is None:
            return
        schema.end_fields(self.meta, status, error=error)
        self.write_meta()
        self._con.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._con.close()
        self._con = None
