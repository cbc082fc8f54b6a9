"""Import a TensorBoard log directory (event files from SummaryWriter, Lightning, Keras, ...) as a
runstore.Run, keeping every value (no reservoir sampling).

Records are read by tb_records (regular files only, size limits, checksums, incremental) and decoded
here with TensorBoard's Event protobuf; legacy summaries (simple_value, histo) are read the way
TensorBoard's data_compat migrates them, so old and new writers give the same series. Unlike
EventAccumulator with its default size guidance (10,000 scalars and 1 histogram per tag, sampled),
nothing is dropped.

- Scalars keep every step; a step written twice (restarted writer) keeps the last value written.
- Histograms (buckets [left, right, count]) are re-binned onto HIST_BINS equal-width bins between
  the smallest left and largest right edge, spreading each bucket's count uniformly over its width
  (runstore's HistSeries holds equal-width bins). Counts are preserved exactly; shapes inside a
  bucket are approximated.
- Tags are mapped onto our scheme where the meaning is unambiguous (see map_scalar_tag):
  'Loss/train', 'train_loss', 'loss' -> train/loss; 'val_loss', 'Loss/val' -> val/loss; accuracy the
  same way; 'lr', 'learning_rate', 'lr-Adam' -> lr/group0. Anything else keeps its own name.
- Event files in several subdirectories (Keras' train/ and validation/, add_scalars' Loss_train/)
  get the subdirectory as a tag prefix, so 'validation/epoch_loss' becomes val/loss.
- hparams written with add_hparams become run.meta['hparams'].
- What could not be read (a damaged record, a file that is not a regular file or is too large) is
  named in run.warnings, with the file and byte offset; the values read are kept.

A log read before is kept in tb_cache: reading it again reads only the event files that changed,
and of a file that grew only its new records, so the dashboard can re-read a live log cheaply.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from runstore import HistSeries, Run, RunReadError, schema

from . import tb_cache
from . import tb_scalar_events
from .tb_records import HEADER_BYTES, EventFileReader, Records, SkippedFile, TooLarge, size_text

HIST_BINS = 40
EVENT_MARK = "tfevents"
# Tags already in our scheme (e.g. the tb/ mirror that probes write) pass through unchanged.
_OURS = re.compile(r"^((train|val|test)/(loss|accuracy|confidence|entropy)|lr/group\d+|"
                   r"(act|grad|weight|update_ratio|sys)/.+)$")

_SPLITS = {"train": "train", "training": "train", "trn": "train",
           "val": "val", "valid": "val", "validation": "val", "eval": "val", "evaluation": "val", "dev": "val",
           "test": "test", "testing": "test"}
_METRICS = {"loss": "loss", "acc": "accuracy", "accuracy": "accuracy", "top1": "accuracy"}


def find_event_files(path: Path) -> list[Path]:
    """Event files under `path` (itself, if it is one), sorted by path. Names only: whether a file
    may be read (a regular file, not too large) is for the reader to say, with the reason."""
    if not path.is_dir():
        return [path] if EVENT_MARK in path.name else []
    out = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        out += [Path(root) / f for f in sorted(files) if EVENT_MARK in f]
    return out


def is_tensorboard_dir(path: Path) -> bool:
    return bool(find_event_files(path))


def map_scalar_tag(tag: str) -> str | None:
    """Our tag for a foreign scalar tag, or None to keep its own name."""
    if _OURS.match(tag):
        return tag
    tokens = [t for t in re.split(r"[/_\-\s.:]+", tag.lower()) if t]
    if not tokens:
        return None
    if "lr" in tokens or "learning" in tokens or "learningrate" in tokens or tokens[0].startswith("lr"):
        pg = next((int(m.group(1)) for t in tokens if (m := re.fullmatch(r"pg(\d+)", t))), None)
        return f"lr/group{pg - 1 if pg else 0}"
    metrics = {_METRICS[t] for t in tokens if t in _METRICS}
    splits = {_SPLITS[t] for t in tokens if t in _SPLITS}
    if len(metrics) != 1 or len(splits) > 1:
        return None
    known = set(_METRICS) | set(_SPLITS) | {"step", "epoch", "batch", "iter", "iteration", "avg", "mean"}
    if any(t not in known for t in tokens):
        return None  # e.g. 'loss_reconstruction' or 'grad_norm': some other quantity
    split = splits.pop() if splits else "train"
    return f"{split}/{metrics.pop()}"


# Limits for one log, so a shared folder cannot make the reader run out of memory: an event file
# larger than MAX_FILE_BYTES is skipped, and so are files once MAX_LOG_BYTES were read in all.
MAX_FILE_BYTES = 1 << 30
MAX_LOG_BYTES = 2 << 30
# A histogram with more buckets than this, or a scalar tensor claiming more than one element, is
# not decoded: TensorBoard's make_ndarray fills a tensor's declared shape from a single value.
MAX_HIST_BUCKETS = 100_000
# An incomplete last record is what a running writer leaves between two writes; only when its file
# has not changed for this long is it reported (TensorBoard writers flush every 2 minutes or less).
LIVE_WRITE_GRACE_S = 300.0


def _rebin(buckets: np.ndarray, bins: int) -> tuple[float, float, np.ndarray]:
    """(lo, hi, counts[bins]) from TensorBoard buckets [[left, right, count], ...]."""
    if buckets.size == 0:
        return 0.0, 0.0, np.zeros(bins)
    left, right, count = buckets[:, 0].astype(float), buckets[:, 1].astype(float), buckets[:, 2].astype(float)
    lo, hi = float(np.min(left)), float(np.max(right))
    out = np.zeros(bins)
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        out[0] = count.sum()
        return lo, hi, out
    edges = np.linspace(lo, hi, bins + 1)
    width = right - left
    point = (width <= 0) & (count != 0)  # point masses go to the bin holding them
    np.add.at(out, np.clip(((left[point] - lo) / (hi - lo) * bins).astype(np.int64), 0, bins - 1), count[point])
    spread = (width > 0) & (count != 0)
    l, r, c, w = left[spread, None], right[spread, None], count[spread, None], width[spread, None]
    overlap = np.clip(np.minimum(edges[1:], r) - np.maximum(edges[:-1], l), 0, None)
    out += (c * overlap / w).sum(axis=0)
    return lo, hi, out


def _hparams(value) -> dict:
    from tensorboard.plugins.hparams import metadata as hp_meta

    try:
        info = hp_meta.parse_session_start_info_plugin_data(value.metadata.plugin_data.content)
    except Exception:
        return {}
    out = {}
    for k, v in info.hparams.items():
        kind = v.WhichOneof("kind")
        if kind:
            out[k] = getattr(v, kind)
    return out


def _elements(tensor) -> int | None:
    """Elements a TensorProto declares (None for an unknown dimension)."""
    n = 1
    for d in tensor.tensor_shape.dim:
        if d.size < 0:
            return None
        n *= d.size
    return n


def _tensor(value, max_elements: int) -> np.ndarray | None:
    from tensorboard.util import tensor_util

    n = _elements(value.tensor)
    if n is None or n > max_elements:
        return None
    return tensor_util.make_ndarray(value.tensor)


class _FileRows:
    """The values of one event file, appended to block by block as the file is read."""

    def __init__(self, hist_bins: int):
        self.hist_bins = hist_bins
        # raw tag -> chunks of (wall, step, value), one per block read
        self.scalars: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        self.hists: dict[str, list[tuple]] = {}  # raw tag -> [(wall, step, lo, hi, counts)]
        self.hparams: dict = {}
        self.plugin_of: dict[str, str] = {}  # tag -> plugin of its first value that names one
        self.wall_lo, self.wall_hi = float("inf"), float("-inf")
        self.not_events: list[int] = []     # offsets of records that are no Event
        self.bad_values: list[int] = []     # offsets of records with a value that could not be decoded
        self.n_values = 0

    def add(self, records: Records) -> None:
        from google.protobuf.message import DecodeError
        from tensorboard.compat.proto.event_pb2 import Event

        fast = tb_scalar_events.decode(records.buf, records.starts, records.lens)
        fast_tags = set(fast.tags)
        parse, mv = Event.FromString, memoryview(records.buf)
        pending: dict[str, tuple[list, list, list]] = {}
        # Values protobuf decodes for a tag the fast decoder also saw here wait, to be taken in
        # file order with the fast ones (the first value of a tag decides its plugin).
        waiting: dict[str, list[tuple]] = defaultdict(list)
        for i in np.flatnonzero(~fast.ok).tolist():
            start = int(records.starts[i])
            offset = records.offset + start - HEADER_BYTES
            try:
                event = parse(mv[start:start + int(records.lens[i])])
            except DecodeError:
                self.not_events.append(offset)
                continue
            if not event.HasField("summary"):
                continue
            wall, step = event.wall_time, event.step
            self.wall_lo, self.wall_hi = min(self.wall_lo, wall), max(self.wall_hi, wall)
            for value in event.summary.value:
                if value.tag in fast_tags:
                    waiting[value.tag].append((i, value, wall, step, offset))
                else:
                    self._value(value, wall, step, offset, pending)
        if len(fast.wall):
            self.wall_lo, self.wall_hi = min(self.wall_lo, fast.wall.min()), max(self.wall_hi, fast.wall.max())
        record = np.flatnonzero(fast.ok)
        order = np.argsort(fast.tag_id, kind="stable")
        bounds = np.searchsorted(fast.tag_id[order], np.arange(len(fast.tags) + 1))
        for k, tag in enumerate(fast.tags):
            rows = order[bounds[k]:bounds[k + 1]]
            if tag in waiting:
                both = [(int(record[r]), None, fast.wall[r], fast.step[r], fast.value[r]) for r in rows]
                for _, value, wall, step, x in sorted(both + waiting[tag], key=lambda item: item[0]):
                    if value is None:
                        self._scalar(tag, wall, step, x, pending)
                    else:
                        self._value(value, wall, step, x, pending)
            elif self.plugin_of.setdefault(tag, "scalars") in ("scalars", ""):
                self._append(tag, fast.wall[rows], fast.step[rows], fast.value[rows])
        for tag, (w, st, v) in pending.items():
            self._append(tag, np.array(w, np.float64), np.array(st, np.int64), np.array(v, np.float64))

    def _append(self, tag: str, wall: np.ndarray, step: np.ndarray, value: np.ndarray) -> None:
        if len(wall):
            self.scalars.setdefault(tag, []).append((wall, step, value))
            self.n_values += len(wall)

    def _scalar(self, tag: str, wall: float, step: int, x: float, pending: dict) -> None:
        """A simple_value (its plugin is 'scalars', as TensorBoard's data_compat migrates it)."""
        if self.plugin_of.setdefault(tag, "scalars") in ("scalars", ""):
            _push(pending, tag, wall, step, x)

    def _value(self, value, wall: float, step: int, offset: int, pending: dict) -> None:
        if value.WhichOneof("value") == "simple_value":
            self._scalar(value.tag, wall, step, value.simple_value, pending)
            return
        try:
            self._other(value.tag, value, wall, step, pending)
        except Exception:  # noqa: BLE001 - one undecodable value must not end the import
            self.bad_values.append(offset)

    def _other(self, tag: str, value, wall: float, step: int, pending: dict) -> None:
        """A value other than a simple_value: new-style tensors, legacy histograms, hparams."""
        from tensorboard import data_compat

        if value.WhichOneof("value") == "histo":
            if len(value.histo.bucket) > MAX_HIST_BUCKETS:
                return
            value = data_compat.migrate_value(value)
        if value.metadata.plugin_data.plugin_name:
            self.plugin_of.setdefault(tag, value.metadata.plugin_data.plugin_name)
        plugin = self.plugin_of.get(tag, "")
        if plugin == "hparams":
            self.hparams.update(_hparams(value))
        elif value.HasField("tensor") and plugin in ("scalars", ""):
            arr = _tensor(value, 1)
            if arr is not None and arr.size == 1 and arr.dtype.kind in "fiub":
                _push(pending, tag, wall, step, float(arr.reshape(-1)[0]))
        elif value.HasField("tensor") and plugin == "histograms":
            arr = _tensor(value, 3 * MAX_HIST_BUCKETS)
            if arr is not None and arr.ndim == 2 and arr.shape[1] == 3:
                lo, hi, counts = _rebin(arr, self.hist_bins)
                self.hists.setdefault(tag, []).append((wall, step, lo, hi, counts))
                self.n_values += 1

    def scalar_arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(wall, step, value) per raw tag, in file order; chunks are merged once, for later reads."""
        for tag, chunks in self.scalars.items():
            if len(chunks) > 1:
                chunks[:] = [tuple(np.concatenate(c) for c in zip(*chunks))]
        return {tag: chunks[0] for tag, chunks in self.scalars.items()}


def _push(pending: dict, tag: str, wall: float, step: int, x: float) -> None:
    rows = pending.get(tag) or pending.setdefault(tag, ([], [], []))
    rows[0].append(wall)
    rows[1].append(step)
    rows[2].append(x)


def _last_per_step(wall: np.ndarray, step: np.ndarray, *columns: np.ndarray):
    """(steps ascending, columns at those steps): rows ordered by wall time (stable, so file order
    breaks ties) and a step written twice (a restarted writer) keeps the last value written."""
    if len(wall) > 1 and not np.all(wall[1:] >= wall[:-1]):
        order = np.argsort(wall, kind="stable")
        step, columns = step[order], tuple(c[order] for c in columns)
    if np.all(step[1:] > step[:-1]):
        return step, columns
    steps, first_from_end = np.unique(step[::-1], return_index=True)
    last = len(step) - 1 - first_from_end
    return steps, tuple(c[last] for c in columns)


class _Log:
    """One log directory (or event file) as read so far: a reader per event file, and the merged
    series, rebuilt only when a file changed."""

    def __init__(self, hist_bins: int):
        self.hist_bins = hist_bins
        self.lock = threading.RLock()
        self.readers: dict[str, EventFileReader] = {}
        self._merged_for = None
        self._merged: dict = {}

    def n_values(self) -> int:
        return sum(r.rows.n_values for r in list(self.readers.values()))

    def load(self, path: Path, root: Path, files: list[Path]) -> Run:
        self.readers = {str(f): self.readers.get(str(f)) or EventFileReader(str(f), lambda: _FileRows(self.hist_bins))
                        for f in files}
        skipped, left = {}, MAX_LOG_BYTES
        for name, reader in self.readers.items():
            try:
                reader.sync(min(MAX_FILE_BYTES, left))
            except TooLarge as e:
                skipped[name] = str(e) if e.size > MAX_FILE_BYTES else \
                    f"would take the log over the limit of {size_text(MAX_LOG_BYTES)} of event files in all"
            except SkippedFile as e:
                skipped[name] = str(e)
            else:
                left -= reader.signature[2]
        rel = {name: str(Path(name).relative_to(root)) for name in self.readers}
        key = tuple((name, r.version, name in skipped) for name, r in self.readers.items())
        if key != self._merged_for:
            self._merged = self._merge(root, files, skipped)
            self._merged_for = key
        m = self._merged
        warnings = [f"{rel[name]} skipped: it {why}." for name, why in skipped.items()]
        if not m["scalars"] and not m["hists"]:
            if len(skipped) == len(files):
                raise RunReadError(f"{path}: none of its TensorBoard event files could be read: " + " ".join(warnings))
            raise RunReadError(f"{path} has TensorBoard event files but no scalars or histograms in them."
                               + "".join(" " + w for w in warnings))
        for name, reader in self.readers.items():
            if name not in skipped:
                warnings += _file_warnings(rel[name], reader)
        warnings += m["collisions"]
        meta = {
            "name": path.name if path.is_dir() else path.parent.name,
            "description": f"Imported from TensorBoard event files ({len(files)} file(s))",
            "source": "tensorboard", "status": schema.IMPORTED, "hparams": dict(m["hparams"]),
            "created": m["created"], "ended": m["ended"],
            "tensorboard": {"files": [rel[str(f)] for f in files], "tag_map": dict(m["rename"])},
        }
        # Copies: the merged arrays stay cached for the next read.
        hists = {t: HistSeries(h.steps.copy(), h.lo.copy(), h.hi.copy(), h.counts.copy())
                 for t, h in m["hists"].items()}
        return Run.from_arrays(path, meta, scalars=m["scalars"], hists=hists, warnings=warnings)

    def _merge(self, root: Path, files: list[Path], skipped: dict) -> dict:
        prefix_dirs = len({f.parent for f in files}) > 1
        raw: dict[str, list] = defaultdict(list)    # tag -> (wall, step, value) per file, in file order
        hraw: dict[str, list] = defaultdict(list)
        hparams, lo, hi = {}, float("inf"), float("-inf")
        for f in files:
            if str(f) in skipped:
                continue
            rows: _FileRows = self.readers[str(f)].rows
            sub = f.parent.relative_to(root).as_posix() if f.parent != root else ""
            prefix = f"{sub}/" if prefix_dirs and sub else ""
            for tag, arrays in rows.scalar_arrays().items():
                raw[prefix + tag].append(arrays)
            for tag, items in rows.hists.items():
                hraw[prefix + tag] += items
            hparams.update(rows.hparams)
            lo, hi = min(lo, rows.wall_lo), max(hi, rows.wall_hi)
        counts = {tag: sum(len(a[0]) for a in parts) for tag, parts in raw.items()}
        claims: dict[str, list[str]] = defaultdict(list)
        for tag in raw:
            target = map_scalar_tag(tag)
            if target:
                claims[target].append(tag)
        rename, collisions = {}, []
        for target, sources in claims.items():
            # Prefer per-step series over per-epoch aggregates when both map to one tag.
            best = sorted(sources, key=lambda t: ("epoch" in t.lower(), -counts[t], t))[0]
            rename[best] = target
            if len(sources) > 1:
                collisions.append(f"{', '.join(s for s in sources if s != best)} kept under own name(s); "
                                  f"{best} -> {target}.")
        scalars = {}
        for tag, parts in raw.items():
            wall, step, value = (np.concatenate(c) for c in zip(*parts))
            steps, (values,) = _last_per_step(wall, step, value)
            name = rename.get(tag, tag)
            if name in scalars:
                name = tag
            scalars[name] = (steps, values)
        hists = {}
        for tag, items in hraw.items():
            wall = np.array([i[0] for i in items], np.float64)
            step = np.array([i[1] for i in items], np.int64)
            steps, (h_lo, h_hi, counts) = _last_per_step(
                wall, step, np.array([i[2] for i in items], np.float64), np.array([i[3] for i in items], np.float64),
                np.array([i[4] for i in items], np.float32).reshape(len(items), self.hist_bins))
            hists[tag] = HistSeries(steps, h_lo, h_hi, counts)
        finite = np.isfinite([lo, hi])
        return {"scalars": scalars, "hists": hists, "hparams": hparams, "rename": rename, "collisions": collisions,
                "created": lo if finite[0] else None, "ended": hi if finite[1] else None}


def _file_warnings(name: str, reader: EventFileReader) -> list[str]:
    """What could not be read from one event file, with byte offsets."""
    out = []
    bad = [o for o, what in reader.damage if what == "data"]
    if bad:
        out.append(f"{name}: {len(bad)} damaged record(s) skipped (checksum mismatch), the first at byte {bad[0]}.")
    for offset in (o for o, what in reader.damage if what == "header"):
        out.append(f"{name}: damaged record at byte {offset} (its length fails the checksum); stopped reading "
                   f"there and kept the values before it.")
    rows: _FileRows = reader.rows
    if rows.not_events:
        out.append(f"{name}: {len(rows.not_events)} record(s) that are not TensorBoard events skipped, the first "
                   f"at byte {rows.not_events[0]}.")
    if rows.bad_values:
        out.append(f"{name}: {len(rows.bad_values)} value(s) that could not be decoded skipped, the first in the "
                   f"record at byte {rows.bad_values[0]}.")
    if reader.tail and time.time() - reader.mtime > LIVE_WRITE_GRACE_S:
        out.append(f"{name}: the last record (from byte {reader.offset}, {reader.tail} bytes) is incomplete: the "
                   f"writer stopped in the middle of it. Kept the values before it.")
    return out


def load_tensorboard(path: str | os.PathLike, *, hist_bins: int = HIST_BINS) -> Run:
    """Read every event file under `path` into a Run (see the module docstring for the mapping).

    A log read before in this process is brought up to date from what changed on disk only."""
    try:
        import tensorboard.compat.proto.event_pb2  # noqa: F401
    except ImportError:
        raise RunReadError("Reading TensorBoard logs needs the tensorboard package: pip install tensorboard") from None
    path = Path(path)
    files = find_event_files(path)
    if not files:
        raise RunReadError(f"{path} holds no TensorBoard event files (names containing '{EVENT_MARK}').")
    root = path if path.is_dir() else path.parent
    versions = sorted({f.parent for f in files if re.fullmatch(r"version_\d+", f.parent.name)})
    if len(versions) > 1:
        raise RunReadError(f"{path} holds {len(versions)} separate runs ({', '.join(d.name for d in versions[:5])}); "
                           f"point at one of them.")
    log = tb_cache.entry((os.path.abspath(path), hist_bins), lambda: _Log(hist_bins))
    try:
        with log.lock:
            return log.load(path, root, files)
    finally:
        tb_cache.trim()
