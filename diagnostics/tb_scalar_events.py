"""Decode the commonest event of a TensorBoard log with numpy, many records at once.

torch's SummaryWriter.add_scalar (and TensorFlow 1's tf.summary.scalar) write one Event per value:
wall_time, step and a Summary with one Value holding a tag and a simple_value. Parsing each with
protobuf costs a few microseconds of Python per record, most of the time of reading a log of a
million scalars. In protobuf's wire format such a record is, byte for byte:

    09 <wall_time: 8 bytes>  [10 <step: varint>]  2a <L1>  0a <L2>  0a <T> <tag: T bytes>  15 <value: 4 bytes>

with L2 = T + 7 and L1 = L2 + 2 (all under 128, so one byte each) and nothing after the value.
Records matching that exactly are decoded here; every other record (other fields, several values,
tensors, histograms, a tag that is not valid UTF-8) is left to protobuf, so the result is the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_WALL, _STEP, _SUMMARY, _VALUE, _TAG, _SIMPLE = 0x09, 0x10, 0x2A, 0x0A, 0x0A, 0x15
_MIN_LEN = 9 + 2 + 2 + 2 + 5  # wall, summary header, value header, tag header, simple_value
# Multiplier of the tag hash that groups records by tag (FNV-1a's 64-bit prime); groups are then
# checked byte for byte, so a collision only sends records to protobuf.
_PRIME = np.uint64(1099511628211)


@dataclass
class SimpleScalars:
    """The decoded records: `ok[i]` says whether record i was one; for those, in record order,
    tag index (into `tags`), wall time, step and value."""
    ok: np.ndarray
    tags: list[str]
    tag_id: np.ndarray
    wall: np.ndarray
    step: np.ndarray
    value: np.ndarray


def _at(data: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return data.take(idx, mode="clip")  # out-of-record reads only ever fail a check below


def _varint(data: np.ndarray, start: np.ndarray, want: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(value as int64, length in bytes, decoded) of the varints at `start` where `want`."""
    value = np.zeros(len(start), dtype=np.uint64)
    length = np.zeros(len(start), dtype=np.int64)
    done = ~want
    for k in range(10):
        active = ~done
        if not active.any():
            break
        byte = _at(data, start + k)
        value |= np.where(active, (byte & 0x7F).astype(np.uint64) << np.uint64(7 * k), np.uint64(0))
        end = active & (byte < 0x80) & ((k < 9) | (byte <= 1))
        length[end] = k + 1
        done |= end
    return value.view(np.int64), length, done


def decode(buf: bytes, starts: np.ndarray, lens: np.ndarray) -> SimpleScalars:
    data = np.frombuffer(buf, dtype=np.uint8)
    s, n = starts, lens
    ok = (n >= _MIN_LEN) & (_at(data, s) == _WALL)
    has_step = ok & (_at(data, s + 9) == _STEP)
    step, step_len, decoded = _varint(data, s + 10, has_step)
    ok &= decoded
    p = s + 9 + np.where(has_step, 1 + step_len, 0)  # the summary field
    l1 = _at(data, p + 1).astype(np.int64)
    l2 = _at(data, p + 3).astype(np.int64)
    t = _at(data, p + 5).astype(np.int64)
    ok &= ((_at(data, p) == _SUMMARY) & (l1 < 0x80) & (p + 2 + l1 == s + n)
           & (_at(data, p + 2) == _VALUE) & (l2 == l1 - 2)
           & (_at(data, p + 4) == _TAG) & (l2 == t + 7) & (_at(data, p + 6 + t) == _SIMPLE))
    idx = np.flatnonzero(ok)
    tag_at, t = p[idx] + 6, t[idx]
    tags, tag_id, good = _group_tags(buf, data, tag_at, t)
    ok[idx[~good]] = False
    idx, tag_at, t, tag_id = idx[good], tag_at[good], t[good], tag_id[good]
    wall = data[s[idx, None] + 1 + np.arange(8)].view("<f8").ravel()
    value = data[(tag_at + t + 1)[:, None] + np.arange(4)].view("<f4").ravel().astype(np.float64)
    return SimpleScalars(ok, tags, tag_id, wall, step[idx], value)


def _group_tags(buf: bytes, data: np.ndarray, at: np.ndarray, length: np.ndarray):
    """(tags, tag index per record, decoded per record): records grouped by their tag bytes."""
    h = length.astype(np.uint64)
    width = int(length.max()) if len(length) else 0
    for j in range(width):
        h = np.where(j < length, h * _PRIME ^ _at(data, at + j).astype(np.uint64), h)
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    rep = first[inverse]  # each record's group representative
    good = length == length[rep]
    for j in range(width):
        good &= (j >= length) | (_at(data, at + j) == _at(data, at[rep] + j))
    tags: list[str] = []
    group_tag = np.full(len(first), -1, dtype=np.int64)
    for g, r in enumerate(first.tolist()):
        try:
            tag = buf[int(at[r]):int(at[r] + length[r])].decode("utf-8")
        except UnicodeDecodeError:
            continue  # protobuf decides what an invalid string is
        group_tag[g] = len(tags)
        tags.append(tag)
    tag_id = group_tag[inverse.ravel()]
    return tags, tag_id, good & (tag_id >= 0)
