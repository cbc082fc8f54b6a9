"""Read the records of TensorBoard event files safely, and only the new ones when a file grows.

An event file is a sequence of TFRecords: uint64 length, uint32 masked CRC-32C of those 8 bytes,
`length` bytes of data (one serialized Event), uint32 masked CRC-32C of the data. Event files come
from other people's machines, so:

- only regular files are opened: a FIFO would block the reader forever and /dev/zero never ends.
  The type is checked before opening (opening some devices has side effects), and the open is
  non-blocking and checked again, so a file swapped for a FIFO in between cannot hang it;
- a file larger than the caller's limit is skipped whole, with the reason (SkippedFile);
- a record whose header fails its checksum ends the file: every length after it would be garbage.
  A record whose data fails its checksum is skipped (its header says where the next one starts).
  Both are reported with the file offset, and everything read before is kept;
- an incomplete last record is normal while a writer is running: it is left unread and read
  again next time, once complete.

EventFileReader remembers how far its file was read. When the file has grown and the bytes it
already read are unchanged (same inode, same first bytes and the same bytes before the offset), only
the new records are read; otherwise (replaced, rewritten, shrunk) it starts again from byte 0.

CRC-32C is computed with numpy over all records of a block at once: TensorBoard's pure-Python one
(one Python step per byte) was most of the time of importing a large log.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

HEADER_BYTES, FOOTER_BYTES = 12, 4
# New bytes are read in blocks of this size, so a large file never sits in memory whole.
BLOCK_BYTES = 32 << 20
# Bytes compared at the start of a file and just before the read offset, to tell an appended file
# from a rewritten one without reading what was read before again.
_PROBE_BYTES = 64

_U64 = struct.Struct("<Q")
_CRC_MASK_DELTA = 0xA282EAD8
_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected


class SkippedFile(Exception):
    """An event file that is not read at all; the message says why, in the user's terms."""


class TooLarge(SkippedFile):
    """An event file over the size limit it was read with."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"is {size_text(size)}, over the {size_text(limit)} limit")
        self.size = size


def _crc_tables() -> np.ndarray:
    """Slicing-by-4 tables: [0] is the classic byte table, [k] advances a byte k more zero bytes."""
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ np.uint32(_POLY), t >> 1).astype(np.uint32)
    tables = [t]
    for _ in range(3):
        tables.append((tables[-1] >> 8) ^ t[tables[-1] & 0xFF])
    return np.stack(tables)


_T = _crc_tables()
# Records longer than this are checksummed in chunks of this many bytes, combined afterwards:
# checksumming column by column costs numpy calls in proportion to the longest record.
_CHUNK = 1024


def _zero_runs() -> np.ndarray:
    """_ZERO[n]: the register after n zero bytes from the initial 0xFFFFFFFF. The register is
    linear in (initial value, data), so crc(data) = crc_from_0(data) ^ _ZERO[len(data)]."""
    out, r = [0xFFFFFFFF], 0xFFFFFFFF
    table = _T[0].tolist()
    for _ in range(_CHUNK):
        r = table[r & 0xFF] ^ (r >> 8)
        out.append(r)
    return np.array(out, dtype=np.uint32)


_ZERO = _zero_runs()
_shift_tables: np.ndarray | None = None


def _from_zero(data: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """The CRC register after data[starts[i]:starts[i] + lens[i]], from a zero register, four
    bytes per numpy step. Zero bytes do not move a zero register, so each record is read as if
    left-padded with zeros to whole 4-byte words, and the records are right-aligned: word column j
    concerns the rows with at least (width - j) words, a prefix once sorted longest first."""
    n = len(lens)
    out = np.zeros(n, dtype=np.uint32)
    if n == 0 or not lens.max():
        return out
    words = (lens + 3) // 4
    pad = 4 * words - lens
    order = np.argsort(-words, kind="stable")
    base, words, pad = (starts - pad)[order], words[order], pad[order]
    if base.min() < 0:  # a record in the first 3 bytes: shift everything so padding reads exist
        data, base = np.concatenate([np.zeros(4, np.uint8), data]), base + 4
    # every 4-byte word at every byte offset, little-endian (unaligned reads)
    at = np.ndarray((len(data) - 3,), dtype="<u4", buffer=data, strides=(1,))
    lead = (np.uint64(0xFFFFFFFF) << (8 * pad).astype(np.uint64)).astype(np.uint32)  # masks the padding
    width = int(words[0])
    active = np.searchsorted(-words, -(width - np.arange(width)), side="right")
    col0 = base - 4 * (width - words)  # row i's word at column j is at byte col0[i] + 4 j
    reg = np.zeros(n, dtype=np.uint32)
    first = 0
    for j in range(width):
        k = int(active[j])
        w = at[col0[:k] + 4 * j]
        if first < k:  # rows starting at this column: their first word holds the padding
            w[first:k] &= lead[first:k]
            first = k
        r = reg[:k] ^ w
        reg[:k] = _T[3][r & 0xFF] ^ _T[2][(r >> 8) & 0xFF] ^ _T[1][(r >> 16) & 0xFF] ^ _T[0][r >> 24]
    out[order] = reg
    return out


def _zero_shift_tables() -> np.ndarray:
    """4 x 256 tables giving what _CHUNK zero bytes do to a register (a linear map over GF(2))."""
    global _shift_tables
    if _shift_tables is None:
        basis = (np.uint32(1) << np.arange(32, dtype=np.uint32)).astype(np.uint32)
        for _ in range(_CHUNK):
            basis = _T[0][basis & 0xFF] ^ (basis >> 8)
        v = np.arange(256, dtype=np.uint32)
        tables = np.zeros((4, 256), dtype=np.uint32)
        for b in range(4):
            for bit in range(8):
                tables[b] ^= np.where((v >> bit) & 1, basis[8 * b + bit], 0).astype(np.uint32)
        _shift_tables = tables
    return _shift_tables


def crc32c_many(data: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """CRC-32C of data[starts[i]:starts[i] + lens[i]] for every i (uint8 data, int64 offsets)."""
    starts, lens = np.asarray(starts, np.int64), np.asarray(lens, np.int64)
    out = np.zeros(len(lens), dtype=np.uint32)
    short = lens <= _CHUNK
    out[short] = ~(_from_zero(data, starts[short], lens[short]) ^ _ZERO[lens[short]])
    if not short.all():
        out[~short] = _crc_long(data, starts[~short], lens[~short])
    return out


def _crc_long(data: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """CRC-32C of long records: a first chunk of 1.._CHUNK bytes from the usual initial register,
    then whole chunks from a zero register, all checksummed together; the register is linear, so
    reg(a + b) = shift(reg(a), len(b)) ^ reg_from_0(b), applied chunk after chunk for all records at once."""
    n_full = (lens - 1) // _CHUNK
    first = lens - n_full * _CHUNK
    reg = _from_zero(data, starts, first) ^ _ZERO[first]
    # whole chunks, record by record: chunk t of record i starts at starts[i] + first[i] + t * _CHUNK
    rows = np.argsort(-n_full, kind="stable")
    counts = n_full[rows]
    chunk_start = np.repeat(starts[rows] + first[rows], counts) + _CHUNK * _ranks(counts)
    chunk_reg = _from_zero(data, chunk_start, np.full(len(chunk_start), _CHUNK, np.int64))
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    shift = _zero_shift_tables()
    r = reg[rows]
    for t in range(int(counts[0])):
        k = int(np.searchsorted(-counts, -(t + 1), side="right"))
        x = r[:k]
        r[:k] = (shift[0][x & 0xFF] ^ shift[1][(x >> 8) & 0xFF] ^ shift[2][(x >> 16) & 0xFF]
                 ^ shift[3][x >> 24] ^ chunk_reg[offsets[:k] + t])
    out = np.empty(len(lens), dtype=np.uint32)
    out[rows] = ~r
    return out


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0..c-1 for each c in counts, concatenated."""
    total = int(counts.sum())
    ends = np.cumsum(counts)
    return np.arange(total, dtype=np.int64) - np.repeat(ends - counts, counts)


def masked_crc32c_many(data: np.ndarray, starts, lens) -> np.ndarray:
    crc = crc32c_many(data, starts, lens).astype(np.uint64)
    return ((((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF).astype(np.uint32)


def _u32_at(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return data[offsets[:, None] + np.arange(4)].view("<u4").ravel()


@dataclass
class Records:
    """Complete, checksummed records of one block: record i's data is
    buf[starts[i]:starts[i] + lens[i]] and its header starts at file offset offset + starts[i] - 12."""
    buf: bytes
    starts: np.ndarray
    lens: np.ndarray
    offset: int

    def __len__(self) -> int:
        return len(self.starts)


@dataclass
class _Scan:
    records: Records
    consumed: int                  # bytes of buf framed (complete records, good or damaged)
    bad_data: list[int] = field(default_factory=list)  # file offsets of records failing the data check
    bad_header: int | None = None  # file offset of a header failing its check: nothing after it is framed


def scan(buf: bytes, offset: int) -> _Scan:
    """Frame and check the records in `buf`, which starts at file offset `offset` on a record
    boundary. An incomplete record at the end is left unconsumed."""
    n, pos = len(buf), 0
    heads = []
    unpack = _U64.unpack_from
    while pos + HEADER_BYTES <= n:  # the one loop over records in Python: lengths chain
        end = pos + HEADER_BYTES + unpack(buf, pos)[0] + FOOTER_BYTES
        if end > n:
            break
        heads.append(pos)
        pos = end
    data = np.frombuffer(buf, dtype=np.uint8)
    bounds = np.array(heads + [pos], dtype=np.int64)
    h, ln = bounds[:-1], np.diff(bounds) - HEADER_BYTES - FOOTER_BYTES
    # The header of an incomplete last record is checked too: a damaged length looks incomplete.
    check = bounds if pos + HEADER_BYTES <= n else h
    bad = np.flatnonzero(masked_crc32c_many(data, check, np.full(len(check), 8)) != _u32_at(data, check + 8))
    bad_header = None
    if len(bad):
        cut = int(bad[0])
        bad_header, pos = offset + int(check[cut]), int(check[cut])
        h, ln = h[:cut], ln[:cut]
    starts = h + HEADER_BYTES
    ok = masked_crc32c_many(data, starts, ln) == _u32_at(data, starts + ln)
    bad_data = [offset + int(x) for x in h[~ok]]
    return _Scan(Records(buf, starts[ok], ln[ok], offset), pos, bad_data, bad_header)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def size_text(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def stat_regular(path: str, max_bytes: int) -> os.stat_result:
    """os.stat of an event file that may be read, else SkippedFile saying why not."""
    try:
        st = os.stat(path)  # follows a symlink: a link to a regular file is fine
    except OSError as e:
        raise SkippedFile(f"cannot be read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise SkippedFile(f"is {_kind(st.st_mode)}, not a regular file")
    if st.st_size > max_bytes:
        raise TooLarge(st.st_size, max_bytes)
    return st


def _open_regular(path: str, expected: os.stat_result) -> int:
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise SkippedFile(f"cannot be read ({e.strerror or e})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (expected.st_dev, expected.st_ino):
        os.close(fd)
        raise SkippedFile("changed while it was being opened")
    return fd


def _pread(fd: int, n: int, offset: int) -> bytes:
    """Up to n bytes at offset (fewer only at the end of the file)."""
    parts, got = [], 0
    os.lseek(fd, offset, os.SEEK_SET)
    while got < n:
        part = os.read(fd, n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


class RecordSink(Protocol):
    def add(self, records: Records) -> None: ...


class EventFileReader:
    """One event file read incrementally into `rows` (made by `new_rows`, fed Records blocks).

    sync() brings `rows` up to date with the file; `damage` lists (offset, what) for checksum
    failures, `tail` counts the bytes of an incomplete last record left for next time."""

    def __init__(self, path: str, new_rows: Callable[[], RecordSink]):
        self.path, self._new_rows = path, new_rows
        self.bytes_read = 0   # all bytes ever read from the file, to see incremental reading work
        self.version = 0      # bumped whenever `rows` changes
        self._restart()

    def _restart(self) -> None:
        self.rows = self._new_rows()
        self.signature = None
        self.mtime = 0.0
        self.offset = 0          # end of the last complete record
        self.tail = 0
        self.damage: list[tuple[int, str]] = []
        self.stopped = False     # a damaged header: nothing after it can be read
        self._head = self._last = b""
        self.version += 1

    def sync(self, max_bytes: int) -> bool:
        """Read what is new in the file; True if `rows` changed. SkippedFile if it must not be read
        (then the rows of an earlier read are dropped too)."""
        try:
            st = stat_regular(self.path, max_bytes)
        except SkippedFile:
            self._restart()
            raise
        sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if sig == self.signature:
            return False
        fd = _open_regular(self.path, st)
        try:
            before = self.version
            size = os.fstat(fd).st_size
            if size > max_bytes:
                raise TooLarge(size, max_bytes)
            if not self._continues(fd, st, size):
                self._restart()
            if not self.stopped:
                self._read(fd, size)
            self.signature, self.mtime = sig, st.st_mtime
            return self.version != before
        except SkippedFile:
            self._restart()
            raise
        finally:
            os.close(fd)

    def _continues(self, fd: int, st: os.stat_result, size: int) -> bool:
        """True if the file is the one read before, with the bytes read so far unchanged."""
        if self.offset == 0:
            return not self.stopped  # nothing read yet: only a damaged start must be forgotten
        if self.signature is None or (st.st_dev, st.st_ino) != self.signature[:2] or size < self.offset:
            return False
        return (_pread(fd, len(self._head), 0) == self._head
                and _pread(fd, len(self._last), self.offset - len(self._last)) == self._last)

    def _read(self, fd: int, size: int) -> None:
        pos, carry = self.offset, b""
        while pos < size:
            want = BLOCK_BYTES
            if len(carry) >= HEADER_BYTES:  # a record longer than a block: read the rest at once
                want = max(want, HEADER_BYTES + _U64.unpack_from(carry)[0] + FOOTER_BYTES - len(carry))
            chunk = _pread(fd, min(want, size - pos), pos)
            if not chunk:
                break
            self.bytes_read += len(chunk)
            buf = carry + chunk if carry else chunk
            start = pos - len(carry)
            pos += len(chunk)
            found = scan(buf, start)
            if len(found.records):
                self.rows.add(found.records)
            if len(found.records) or found.bad_data or found.bad_header is not None:
                self.version += 1
            self.damage += [(o, "data") for o in found.bad_data]
            carry = buf[found.consumed:]
            self.offset = start + found.consumed
            if found.bad_header is not None:
                self.damage.append((found.bad_header, "header"))
                self.stopped, carry = True, b""
                break
        self.tail = len(carry)
        n = min(_PROBE_BYTES, self.offset)
        self._head = _pread(fd, n, 0)
        self._last = _pread(fd, n, self.offset - n)
