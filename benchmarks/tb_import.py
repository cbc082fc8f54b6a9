"""How long importing a large TensorBoard log takes: cold, unchanged (cache hit), and after it grew.

Writes a synthetic event file the way torch's SummaryWriter.add_scalar does (one Event with one
simple_value per call; by default 1.5M scalars: 'Loss/train', 'lr' and 'grad_norm' every step,
'val_loss' and 'Accuracy/val' every 100 steps, about 63 MB), then times
diagnostics.tb_import.load_tensorboard:

- full parse: a process that has not read the log before (cache cleared);
- re-parse: the same log again, unchanged;
- after appending 1% more records: only the new records are read;
- full parse of the grown log, for comparison.

    python benchmarks/tb_import.py [--scalars 1500000] [--old]

--old also times the import as it was at git HEAD (TensorBoard's EventFileLoader with its
pure-Python CRC; minutes on the default size) and checks both give the same series.
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diagnostics import tb_cache, tb_import  # noqa: E402
from diagnostics.tb_records import masked_crc32c_many  # noqa: E402

PER_STEP = ("Loss/train", "lr", "grad_norm")
PER_100 = ("val_loss", "Accuracy/val")


def _events(first_step: int, n_scalars: int, rng) -> list[bytes]:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary

    out, step = [], first_step
    while len(out) < n_scalars:
        tags = PER_STEP + (PER_100 if step % 100 == 0 else ())
        for tag in tags:
            value = float(np.float32(2.3 * np.exp(-step / 2e5) + 0.01 * rng.standard_normal()))
            ev = Event(wall_time=1.7e9 + step * 0.01, step=step,
                       summary=Summary(value=[Summary.Value(tag=tag, simple_value=value)]))
            out.append(ev.SerializeToString())
        step += 1
    return out[:n_scalars]


def _frame(payloads: list[bytes]) -> bytes:
    """TFRecord framing; checksums computed with numpy, a sample re-checked with TensorBoard's own."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    lens = np.array([len(p) for p in payloads], np.int64)
    heads = b"".join(struct.pack("<Q", n) for n in lens)
    head_crc = masked_crc32c_many(np.frombuffer(heads, np.uint8), np.arange(len(lens)) * 8, np.full(len(lens), 8))
    blob = b"".join(payloads)
    data_crc = masked_crc32c_many(np.frombuffer(blob, np.uint8), np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    for i in range(0, len(payloads), max(1, len(payloads) // 50)):
        assert data_crc[i] == masked_crc32c(payloads[i]) and head_crc[i] == masked_crc32c(heads[8 * i:8 * i + 8])
    return b"".join(struct.pack("<QI", n, hc) + p + struct.pack("<I", dc)
                    for n, hc, p, dc in zip(lens.tolist(), head_crc.tolist(), payloads, data_crc.tolist()))


def _timed(fn):
    """(wall seconds, result); the CPU seconds of this process are printed with the wall time
    (on a busy machine they are the fairer number)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    _timed.cpu = time.process_time() - c0
    return time.perf_counter() - t0, out


def _cpu() -> str:
    return f"(cpu {_timed.cpu:.3f} s)"


def _old_loader():
    """load_tensorboard as it was at git HEAD."""
    src = subprocess.run(["git", "show", "HEAD:diagnostics/tb_import.py"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    mod = types.ModuleType("tb_import_at_head")
    exec(compile(src, "HEAD:diagnostics/tb_import.py", "exec"), mod.__dict__)
    return mod.load_tensorboard


def _same(a, b) -> bool:
    if sorted(a.scalar_tags()) != sorted(b.scalar_tags()):
        return False
    return all(a.series(t).equals(b.series(t)) for t in a.scalar_tags())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scalars", type=int, default=1_500_000)
    ap.add_argument("--old", action="store_true", help="also time the import at git HEAD (slow)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "logdir"
        log.mkdir()
        f = log / "events.out.tfevents.1700000000.bench.1.0"
        t, payloads = _timed(lambda: _events(0, args.scalars, rng))
        f.write_bytes(_frame(payloads))
        last_step = int(np.ceil(args.scalars / len(PER_STEP)))
        print(f"log: {args.scalars:,} scalars, {f.stat().st_size / 1e6:.1f} MB (generated in {t:.1f} s)")

        tb_cache.clear()
        t_full, run = _timed(lambda: tb_import.load_tensorboard(log))
        n = sum(len(run.series(tag)) for tag in run.scalar_tags())
        print(f"full parse:            {t_full:7.2f} s {_cpu()}   {n:,} values")
        t_hit, _ = _timed(lambda: tb_import.load_tensorboard(log))
        print(f"re-parse, unchanged:   {t_hit:7.3f} s {_cpu()}")
        extra = _frame(_events(last_step + 1, args.scalars // 100, rng))
        with open(f, "ab") as fh:
            fh.write(extra)
        t_inc, grown = _timed(lambda: tb_import.load_tensorboard(log))
        print(f"after appending 1%:    {t_inc:7.3f} s {_cpu()}   +{len(extra) / 1e6:.2f} MB")
        tb_cache.clear()
        t_full2, full = _timed(lambda: tb_import.load_tensorboard(log))
        print(f"full parse, grown log: {t_full2:7.2f} s {_cpu()}")
        assert _same(grown, full), "incremental read differs from a full read"
        if args.old:
            old = _old_loader()
            t_old, old_run = _timed(lambda: old(log))
            print(f"import at git HEAD:    {t_old:7.2f} s {_cpu()}   same series: {_same(old_run, full)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
