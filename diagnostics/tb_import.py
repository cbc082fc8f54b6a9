"""Import a TensorBoard log directory (event files from SummaryWriter, Lightning, Keras, ...) as a
runstore.Run, keeping every value (no reservoir sampling).

Reading uses TensorBoard's own EventFileLoader, which also migrates legacy summaries
(simple_value, histo) to tensors, so one code path handles old and new writers. Unlike
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
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from runstore import HistSeries, Run, RunReadError

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
    """Event files under `path` (itself, if it is one), sorted by path."""
    if path.is_file():
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
    for l, r, c, w in zip(left, right, count, width):
        if c == 0:
            continue
        if w <= 0:  # a point mass
            out[min(bins - 1, max(0, int((l - lo) / (hi - lo) * bins)))] += c
            continue
        overlap = np.clip(np.minimum(edges[1:], r) - np.maximum(edges[:-1], l), 0, None)
        out += c * overlap / w
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


def load_tensorboard(path: str | os.PathLike, *, hist_bins: int = HIST_BINS) -> Run:
    """Read every event file under `path` into a Run (see the module docstring for the mapping)."""
    try:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        from tensorboard.util import tensor_util
    except ImportError:
        raise RunReadError("Reading TensorBoard logs needs the tensorboard package: pip install tensorboard") from None
    path = Path(path)
    files = find_event_files(path)
    if not files:
        raise RunReadError(f"{path} holds no TensorBoard event files (names containing '{EVENT_MARK}').")
    root = path if path.is_dir() else path.parent
    dirs = sorted({f.parent for f in files})
    versions = [d for d in dirs if re.fullmatch(r"version_\d+", d.name)]
    if len(versions) > 1:
        raise RunReadError(f"{path} holds {len(versions)} separate runs ({', '.join(d.name for d in versions[:5])}); "
                           f"point at one of them.")
    prefix_dirs = len(dirs) > 1

    scalars: dict[str, list] = defaultdict(list)   # tag -> [(wall, order, step, value)]
    hists: dict[str, list] = defaultdict(list)
    hparams, warnings = {}, []
    walls, order = [], 0
    for f in files:
        rel = f.parent.relative_to(root).as_posix() if f.parent != root else ""
        plugin_of: dict[str, str] = {}
        try:
            for event in EventFileLoader(str(f)).Load():
                if not event.HasField("summary"):
                    continue
                walls.append(event.wall_time)
                for value in event.summary.value:
                    if value.metadata.plugin_data.plugin_name:
                        plugin_of.setdefault(value.tag, value.metadata.plugin_data.plugin_name)
                    plugin = plugin_of.get(value.tag, "")
                    tag = f"{rel}/{value.tag}" if prefix_dirs and rel else value.tag
                    order += 1
                    if plugin == "hparams":
                        hparams.update(_hparams(value))
                    elif value.HasField("tensor") and plugin in ("scalars", ""):
                        arr = tensor_util.make_ndarray(value.tensor)
                        if arr.size == 1 and arr.dtype.kind in "fiub":
                            scalars[tag].append((event.wall_time, order, event.step, float(arr.reshape(-1)[0])))
                    elif value.HasField("tensor") and plugin == "histograms":
                        arr = tensor_util.make_ndarray(value.tensor)
                        if arr.ndim == 2 and arr.shape[1] == 3:
                            hists[tag].append((event.wall_time, order, event.step, arr))
        except Exception as e:  # a truncated last record: keep what was read before it
            warnings.append(f"{f.name}: stopped reading at a damaged record ({type(e).__name__}: {e}); "
                            f"kept the values before it.")
    if not scalars and not hists:
        raise RunReadError(f"{path} has TensorBoard event files but no scalars or histograms in them.")

    mapped: dict[str, tuple] = {}
    claims: dict[str, list[str]] = defaultdict(list)
    for tag in scalars:
        target = map_scalar_tag(tag)
        if target:
            claims[target].append(tag)
    rename = {}
    for target, sources in claims.items():
        # Prefer per-step series over per-epoch aggregates when both map to one tag.
        best = sorted(sources, key=lambda t: ("epoch" in t.lower(), -len(scalars[t]), t))[0]
        rename[best] = target
        if len(sources) > 1:
            warnings.append(f"{', '.join(s for s in sources if s != best)} kept under own name(s); {best} -> {target}.")
    for tag, rows in scalars.items():
        rows.sort(key=lambda r: (r[0], r[1]))
        last = {}
        for _, _, step, val in rows:
            last[int(step)] = val  # a step written twice (restarted writer) keeps the last value
        steps = np.array(sorted(last), dtype=np.int64)
        name = rename.get(tag, tag)
        if name in mapped:
            name = tag
        mapped[name] = (steps, np.array([last[s] for s in steps], dtype=np.float64))
    hist_series = {}
    for tag, rows in hists.items():
        rows.sort(key=lambda r: (r[0], r[1]))
        last = {int(step): arr for _, _, step, arr in rows}
        steps = np.array(sorted(last), dtype=np.int64)
        lo, hi, counts = np.zeros(len(steps)), np.zeros(len(steps)), np.zeros((len(steps), hist_bins), np.float32)
        for i, s in enumerate(steps):
            lo[i], hi[i], counts[i] = _rebin(last[s], hist_bins)
        hist_series[tag] = HistSeries(steps, lo, hi, counts)
    meta = {
        "name": path.name if path.is_dir() else path.parent.name,
        "description": f"Imported from TensorBoard event files ({len(files)} file(s))",
        "source": "tensorboard", "status": "unknown", "hparams": hparams,
        "created": min(walls) if walls else None, "ended": max(walls) if walls else None,
        "tensorboard": {"files": [str(f.relative_to(root)) for f in files], "tag_map": rename},
    }
    return Run.from_arrays(path, meta, scalars=mapped, hists=hist_series, warnings=warnings)
