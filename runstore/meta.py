"""run.json as consumers may trust it: every known field has its documented type, or is absent.

run.json is untrusted input (edited by hand, written by another tool, damaged): clean_meta is the
one place its field types are checked, so code that shows a run (datetime.fromtimestamp(created),
hparams.items(), ...) never meets a list where it expects a string. A field of the wrong type is
dropped with a warning; unknown fields are kept as they are. Strings that cannot be encoded as
UTF-8 (lone surrogates, legal in JSON) are repaired everywhere, since every consumer encodes them.
"""

from __future__ import annotations

import math
import re

from . import schema
from . import liveness  # liveness imports this module too: read valid_pid at call time

# Known fields by type (docs/architecture.md, "run.json fields").
TEXT_FIELDS = ("run_id", "name", "host", "workload", "parent", "device", "torch_version", "error", "source")
OBJECT_FIELDS = ("hparams", "model", "optimizer", "probes")
TIME_FIELDS = ("created", "ended")
# Whole numbers and the smallest value each may take.
INT_FIELDS = {"format_version": 0, "world_size": 1, "rank": 0, "total_steps": 0, "train_examples": 0,
              "n_classes": 1, "last_step": -1}
# A time datetime.fromtimestamp accepts everywhere: from 1970 to the year 9999.
MAX_TIME = 253_402_300_799.0
MAX_INT = 2 ** 63 - 1  # what numpy's int64 and SQLite hold
_SURROGATE = re.compile("[\ud800-\udfff]")
DEFAULTS = {"status": schema.RUNNING, "hparams": {}, "description": ""}


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _repair(value):
    """`value` with every string made encodable (lone surrogates replaced by U+FFFD)."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_repair(k): _repair(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_repair(v) for v in value]
    return value


def clean_number(value) -> float | None:
    """A finite real number as a float, else None (bools, strings, NaN, Inf, 2**2000)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def clean_time(value) -> float | None:
    """A Unix time from 1970 to 9999 as a float, else None (NaN, 1e300, -1, "yesterday")."""
    value = clean_number(value)
    return value if value is not None and 0 <= value <= MAX_TIME else None


def clean_int(value, lo: int = -MAX_INT, hi: int = MAX_INT) -> int | None:
    """A whole number in [lo, hi] (3.0 counts as 3), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and lo <= value <= hi else None


def clean_meta(raw: dict) -> tuple[dict, list[str]]:
    """(run.json with every known field of its documented type, warnings about what was dropped)."""
    meta = _repair(dict(raw))
    warnings: list[str] = []

    def drop(key, why):
        warnings.append(f"{schema.META_FILE}: {key!r} {why} ({_short(meta.pop(key))}); ignored.")

    for key in TEXT_FIELDS:
        if key in meta and meta[key] is not None and not isinstance(meta[key], str):
            drop(key, f"should be text, not {_kind(meta[key])}")
    if "description" in meta and not isinstance(meta["description"], str):
        if meta["description"] is None:
            meta.pop("description")
        else:
            drop("description", f"should be text, not {_kind(meta['description'])}")
    for key in OBJECT_FIELDS:
        if key in meta and meta[key] is not None and not isinstance(meta[key], dict):
            drop(key, f"should be an object, not {_kind(meta[key])}")
    for key in TIME_FIELDS:
        if key in meta and meta[key] is not None:
            t = clean_time(meta[key])
            if t is None:
                drop(key, "is not a time")
            else:
                meta[key] = t
    for key, lo in INT_FIELDS.items():
        if key in meta and meta[key] is not None:
            n = clean_int(meta[key], lo)
            if n is None:
                drop(key, f"should be a whole number of at least {lo}")
            else:
                meta[key] = n
    if "pid" in meta and meta["pid"] is not None and not liveness.valid_pid(meta["pid"]):
        drop("pid", "is not a process id")
    if "sample" in meta and not isinstance(meta["sample"], bool):
        drop("sample", "should be true or false")
    if "status" in meta and meta["status"] not in schema.STATUSES + (schema.IMPORTED,):
        drop("status", f"is not one of {', '.join(schema.STATUSES)}")
    if meta.get("hparams") is None:
        meta.pop("hparams", None)
    for key, default in DEFAULTS.items():
        meta.setdefault(key, default if not isinstance(default, dict) else {})
    return meta, warnings
