"""TensorBoard logs are shared between people, so importing one must survive what a damaged or
hostile folder holds: truncated and corrupted event files, a FIFO, a link to /dev/zero, a huge
file, tensors declaring absurd shapes. And it must stay cheap on a log that is still growing."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import diagnostics
from diagnostics import RunReadError, tb_cache, tb_import, tb_records, tb_scalar_events
from runstore import tags as T

ROOT = Path(__file__).resolve().parents[1]
STEPS = 300


@pytest.fixture(autouse=True)
def _fresh_cache():
    tb_cache.clear()
    yield
    tb_cache.clear()


def _write_log(logdir: Path, steps: int = STEPS) -> Path:
    """A SummaryWriter log: train loss every step, val loss every 10 steps; returns its file."""
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(logdir))
    for s in range(1, steps + 1):
        w.add_scalar("Loss/train", 2.0 / s, s)
        if s % 10 == 0:
            w.add_scalar("val_loss", 2.2 / s, s)
    w.close()
    return next(logdir.glob("*tfevents*"))


def _record_offsets(data: bytes) -> list[int]:
    """Start of every record, framed independently of the code under test."""
    out, pos = [], 0
    while pos + 12 <= len(data):
        out.append(pos)
        pos += 16 + struct.unpack_from("<Q", data, pos)[0]
    return out


def _record(payload: bytes) -> bytes:
    """A TFRecord framed with TensorBoard's own (pure-Python) checksum."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    head = struct.pack("<Q", len(payload))
    return head + struct.pack("<I", masked_crc32c(head)) + payload + struct.pack("<I", masked_crc32c(payload))


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def _same_run(a, b) -> None:
    assert sorted(a.scalar_tags()) == sorted(b.scalar_tags())
    for tag in a.scalar_tags():
        assert a.series(tag).equals(b.series(tag)), tag
    assert sorted(a.hist_tags()) == sorted(b.hist_tags())
    for tag in a.hist_tags():
        ha, hb = a.histograms(tag), b.histograms(tag)
        assert np.array_equal(ha.steps, hb.steps) and np.array_equal(ha.counts, hb.counts), tag


# -- damaged files ------------------------------------------------------------------------------
def test_incomplete_last_record_of_a_stale_file_is_reported_and_the_rest_kept(tmp_path):
    f = _write_log(tmp_path / "tb")
    data = f.read_bytes()
    last = _record_offsets(data)[-1]
    f.write_bytes(data[:-5])  # the writer was killed in the middle of its last record
    _age(f, 3600)
    run = diagnostics.load_run(tmp_path / "tb")
    assert len(run.series(T.TRAIN_LOSS)) == STEPS  # the cut record is the closing val_loss at step 300
    assert len(run.series("val/loss")) == STEPS // 10 - 1
    assert [w for w in run.warnings if f.name in w and f"byte {last}" in w and "incomplete" in w]


def test_incomplete_last_record_of_a_live_file_is_read_once_complete(tmp_path):
    f = _write_log(tmp_path / "tb")
    data = f.read_bytes()
    f.write_bytes(data[:-5])  # a writer in the middle of writing
    run = diagnostics.load_run(tmp_path / "tb")
    assert len(run.series("val/loss")) == STEPS // 10 - 1 and run.warnings == []
    f.write_bytes(data)  # ... and done
    run = diagnostics.load_run(tmp_path / "tb")
    assert len(run.series("val/loss")) == STEPS // 10 and run.warnings == []


def test_record_failing_its_checksum_mid_file_is_skipped_with_its_offset(tmp_path):
    f = _write_log(tmp_path / "tb")
    data = bytearray(f.read_bytes())
    offsets = _record_offsets(bytes(data))
    bad = offsets[len(offsets) // 2]
    data[bad + 14] ^= 0xFF  # a flipped bit in the record's data, not its length
    f.write_bytes(bytes(data))
    run = diagnostics.load_run(tmp_path / "tb")
    n = len(run.series(T.TRAIN_LOSS)) + len(run.series("val/loss"))
    assert n == STEPS + STEPS // 10 - 1  # only the damaged record is lost, the ones after it are read
    assert [w for w in run.warnings if f.name in w and f"byte {bad}" in w and "checksum" in w]
    assert "rule_failed" not in [x.rule for x in diagnostics.advise(run)]


def test_damaged_length_mid_file_stops_there_and_keeps_what_came_before(tmp_path):
    f = _write_log(tmp_path / "tb")
    data = bytearray(f.read_bytes())
    offsets = _record_offsets(bytes(data))
    k = len(offsets) // 2
    data[offsets[k] + 1] ^= 0x01  # the length no longer matches its checksum
    f.write_bytes(bytes(data))
    run = diagnostics.load_run(tmp_path / "tb")
    n = len(run.series(T.TRAIN_LOSS)) + len(run.series("val/loss"))
    assert n == k - 1  # the records before it, less the file_version record that opens every file
    assert [w for w in run.warnings if f.name in w and f"byte {offsets[k]}" in w and "stopped reading" in w]


def test_records_that_are_not_events_and_absurd_tensors_are_skipped(tmp_path):
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.compat.proto.types_pb2 import DT_FLOAT

    # TensorBoard's make_ndarray would fill this declared shape (10^12 floats) from the one value.
    bomb = TensorProto(dtype=DT_FLOAT, float_val=[1.0],
                       tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=10 ** 12)]))
    good = [Event(wall_time=1.0 + s, step=s, summary=Summary(value=[Summary.Value(tag="loss", simple_value=1.0 / s)]))
            for s in range(1, 6)]
    blob = b"".join(_record(e.SerializeToString()) for e in good[:2])
    not_event = len(blob)
    blob += _record(b"\xff\xff\xff not a protobuf")
    blob += _record(Event(wall_time=3.5, step=3, summary=Summary(value=[Summary.Value(tag="w", tensor=bomb)]))
                    .SerializeToString())
    blob += b"".join(_record(e.SerializeToString()) for e in good[2:])
    (tmp_path / "tb").mkdir()
    (tmp_path / "tb" / "events.out.tfevents.1.host").write_bytes(blob)
    run = diagnostics.load_run(tmp_path / "tb")
    assert list(run.series(T.TRAIN_LOSS).index) == [1, 2, 3, 4, 5] and "w" not in run.scalar_tags()
    assert [w for w in run.warnings if f"byte {not_event}" in w and "not TensorBoard events" in w]


# -- files that must not be opened or read whole ---------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.timeout(120)  # a reader blocked on a FIFO hangs forever: fail instead
def test_fifo_is_skipped_without_hanging_the_cli(tmp_path):
    _write_log(tmp_path / "tb")
    os.mkfifo(tmp_path / "tb" / "events.out.tfevents.2.fifo")
    out = subprocess.run([sys.executable, "-m", "diagnostics", "advise", str(tmp_path / "tb")], cwd=ROOT,
                         capture_output=True, text=True, timeout=100)
    assert out.returncode == 0, out.stderr
    assert "events.out.tfevents.2.fifo skipped: it is a FIFO, not a regular file" in out.stderr
    os.mkfifo(tmp_path / "only.tfevents")
    with pytest.raises(RunReadError, match="only.tfevents skipped: it is a FIFO"):
        diagnostics.load_run(tmp_path / "only.tfevents")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.timeout(120)  # a reader of /dev/zero never reaches the end: fail instead
def test_link_to_dev_zero_is_skipped(tmp_path):
    _write_log(tmp_path / "tb")
    os.symlink("/dev/zero", tmp_path / "tb" / "events.out.tfevents.2.zero")
    run = diagnostics.load_run(tmp_path / "tb")
    assert len(run.series(T.TRAIN_LOSS)) == STEPS
    assert "events.out.tfevents.2.zero skipped: it is a character device, not a regular file." in run.warnings
    (tmp_path / "zero").mkdir()
    os.symlink("/dev/zero", tmp_path / "zero" / "events.out.tfevents.1.zero")
    with pytest.raises(RunReadError, match="none of its TensorBoard event files could be read.*character device"):
        diagnostics.load_run(tmp_path / "zero")


def test_file_over_the_size_limit_is_refused_without_reading_it(tmp_path):
    (tmp_path / "tb").mkdir()
    huge = tmp_path / "tb" / "events.out.tfevents.1.huge"
    with open(huge, "wb") as fh:
        fh.truncate(tb_import.MAX_FILE_BYTES + 1)  # sparse: no disk used, and never read
    with pytest.raises(RunReadError, match=r"events.out.tfevents.1.huge skipped: it is 1.0 GiB, over the 1.0 GiB"):
        diagnostics.load_run(tmp_path / "tb")


def test_log_over_the_total_limit_keeps_the_files_that_fit(tmp_path, monkeypatch):
    first = _write_log(tmp_path / "tb" / "a")
    _write_log(tmp_path / "tb" / "b")
    monkeypatch.setattr(tb_import, "MAX_LOG_BYTES", first.stat().st_size + 100)
    run = diagnostics.load_run(tmp_path / "tb")
    assert len(run.series("a/Loss/train")) == STEPS and "b/Loss/train" not in run.scalar_tags()
    assert [w for w in run.warnings if w.startswith("b/") and "in all" in w]


# -- a log that grows ----------------------------------------------------------------------------
def test_growing_log_is_read_incrementally_with_the_same_result_as_a_full_read(tmp_path):
    import torch
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path / "tb"), flush_secs=3600)
    gen = torch.Generator().manual_seed(0)
    step = 0

    def write(n):
        nonlocal step
        for _ in range(n):
            step += 1
            w.add_scalar("Loss/train", 1.0 / step, step)
            w.add_scalar("lr", 0.1, step)
            if step % 50 == 0:
                w.add_histogram("fc.weight", torch.randn(200, generator=gen), step)
        w.flush()

    write(200)
    f = next((tmp_path / "tb").glob("*tfevents*"))
    assert len(diagnostics.load_run(tmp_path / "tb").series(T.TRAIN_LOSS)) == 200
    write(100)
    data = f.read_bytes()
    f.write_bytes(data + _record(b"\x09" + b"\x00" * 20)[:10])  # plus half a record being written
    grown = diagnostics.load_run(tmp_path / "tb")
    log = tb_cache.cached((os.path.abspath(tmp_path / "tb"), tb_import.HIST_BINS))
    assert log.readers[str(f)].bytes_read < len(data) + 100  # the first 200 steps were not read again
    tb_cache.clear()
    full = diagnostics.load_run(tmp_path / "tb")
    _same_run(grown, full)
    assert len(grown.series(T.TRAIN_LOSS)) == 300 and list(grown.histograms("fc.weight").steps) == [50, 100, 150,
                                                                                                      200, 250, 300]
    w.close()


def test_rewritten_file_is_read_again_from_the_start(tmp_path):
    f = _write_log(tmp_path / "tb", steps=100)
    assert diagnostics.load_run(tmp_path / "tb").series(T.TRAIN_LOSS).iloc[0] == pytest.approx(2.0)
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary

    # Same name, longer, other values: not an append, so nothing read before may be kept.
    f.write_bytes(b"".join(_record(Event(wall_time=1.0 + s, step=s, summary=Summary(value=[
        Summary.Value(tag="Loss/train", simple_value=5.0)])).SerializeToString()) for s in range(1, 400)))
    loss = diagnostics.load_run(tmp_path / "tb").series(T.TRAIN_LOSS)
    assert len(loss) == 399 and (loss == 5.0).all()


def test_cache_keeps_a_bounded_number_of_logs(tmp_path, monkeypatch):
    monkeypatch.setattr(tb_cache, "MAX_LOGS", 2)
    for name in ("a", "b", "c"):
        _write_log(tmp_path / name, steps=20)
        diagnostics.load_run(tmp_path / name)
    kept = [tb_cache.cached((os.path.abspath(tmp_path / n), tb_import.HIST_BINS)) is not None for n in "abc"]
    assert kept == [False, True, True]


# -- the fast decoder and the checksum give what protobuf and TensorBoard give ------------------------
def test_vectorized_scalar_decoder_agrees_with_protobuf(tmp_path, monkeypatch):
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path / "tb"))
    for s in [-3, 0, 1, 127, 128, 2 ** 40, 5]:  # negative, zero (no step field) and long varints
        w.add_scalar("Loss/train", s / 7, s)
        w.add_scalar("ünïcode/tag", 1.5, s)
        w.add_scalar("both", 0.5, s)
        w.add_scalar("both", 0.25, s, new_style=True)  # tensor-style values of a tag also written the old way
    w.add_scalars("group", {"a": 1.0, "b": 2.0}, 3)
    w.close()
    f = next((tmp_path / "tb").glob("*tfevents*"))
    two_values = Event(wall_time=9.0, step=9, summary=Summary(value=[Summary.Value(tag="Loss/train", simple_value=1.0),
                                                                    Summary.Value(tag="x", simple_value=2.0)]))
    with open(f, "ab") as fh:
        fh.write(_record(two_values.SerializeToString()))
    fast = diagnostics.load_run(tmp_path / "tb")
    tb_cache.clear()
    real = tb_scalar_events.decode
    monkeypatch.setattr(tb_scalar_events, "decode", lambda buf, starts, lens: _nothing_decoded(real, buf, starts, lens))
    slow = diagnostics.load_run(tmp_path / "tb")
    _same_run(fast, slow)
    assert fast.series("ünïcode/tag").index.tolist() == [-3, 0, 1, 5, 127, 128, 2 ** 40]
    assert len(fast.series("both")) == 7


def _nothing_decoded(real, buf, starts, lens):
    """The fast decoder declining every record: protobuf reads them all."""
    out = real(buf, starts[:0], lens[:0])
    out.ok = np.zeros(len(starts), dtype=bool)
    return out


def test_checksums_match_tensorboards():
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    rng = np.random.default_rng(0)
    lens = np.array([0, 1, 7, 8, 9, 1023, 1024, 1025, 3000, 5000, 64], dtype=np.int64)
    data = rng.integers(0, 256, int(lens.sum()) + 3, dtype=np.uint8)
    starts = 3 + np.concatenate([[0], np.cumsum(lens)[:-1]])
    got = tb_records.masked_crc32c_many(data, starts, lens)
    assert got.tolist() == [masked_crc32c(data[s:s + n].tobytes()) for s, n in zip(starts, lens)]


def test_an_imported_log_is_neither_live_nor_killed(tmp_path):
    """A TensorBoard log says nothing about its writer: it reads as imported, never as a live run."""
    from torch.utils.tensorboard import SummaryWriter

    import diagnostics
    from runstore import schema

    w = SummaryWriter(str(tmp_path / "log"))
    for i in range(30):
        w.add_scalar("loss", 1.0 / (i + 1), i)
    w.close()
    run = diagnostics.load_run(tmp_path / "log")
    assert run.status == schema.IMPORTED
