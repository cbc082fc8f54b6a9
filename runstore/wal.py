"""Is run.db's write-ahead log whole? SQLite itself ignores a damaged WAL without a word (a bad
header: the whole log; a torn last frame: that frame), so a reader would show a run with its last
flushes silently missing. Two checks make that visible:

- the WAL's own header (magic number, page size, checksum) and its length, a whole number of frames;
- the WAL index (run.db-shm), which outlives a deleted or truncated WAL and says how many frames
  the log held (mxFrame) and how many are already copied into run.db (nBackfill): a log shorter
  than that lost the frames in between.

Both files are read without SQLite and without locking; a writer changing them meanwhile is caught by
reading the index twice. Layouts: https://www.sqlite.org/fileformat2.html#walformat
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

from . import schema

_WAL_MAGIC = (0x377F0682, 0x377F0683)  # checksums little-endian / big-endian
_WAL_HEADER = 32
_FRAME_HEADER = 24
_SHM_VERSION = 3007000
_SHM_HEADER = 136  # two copies of the 48-byte index header, then the checkpoint info


def _read_head(path: Path, n: int) -> tuple[bytes, int] | None:
    """(first n bytes, size) of a regular file, or None (missing, not a regular file, unreadable)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError):
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        return os.pread(fd, n, 0), st.st_size
    except OSError:
        return None
    finally:
        os.close(fd)


def _checksum(data: bytes, big_endian: bool) -> tuple[int, int]:
    s1 = s2 = 0
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s1 = (s1 + words[i] + s2) & 0xFFFFFFFF
        s2 = (s2 + words[i + 1] + s1) & 0xFFFFFFFF
    return s1, s2


def _wal_header_problem(head: bytes, size: int) -> str | None:
    if len(head) < _WAL_HEADER:
        return "is damaged (shorter than its header)"
    magic, _version, page, _seq, _salt1, _salt2, c1, c2 = struct.unpack(">8I", head[:_WAL_HEADER])
    if magic not in _WAL_MAGIC or page < 512 or page > 65536 or page & (page - 1):
        return "is damaged (its header is not SQLite's: overwritten?)"
    if _checksum(head[:24], magic & 1 == 1) != (c1, c2):
        return "is damaged (its header checksum does not match)"
    if (size - _WAL_HEADER) % (page + _FRAME_HEADER):
        return "is damaged (truncated: it ends inside a frame)"
    return None


def _index(shm: Path) -> tuple[int, int, int] | None:
    """(mxFrame, nBackfill, page size) from run.db-shm when its header is consistent, else None."""
    got = _read_head(shm, _SHM_HEADER)
    if got is None or len(got[0]) < _SHM_HEADER:
        return None
    head = got[0]
    if head[:48] != head[48:96]:  # being rewritten right now, or not an index at all
        return None
    version, = struct.unpack_from("=I", head, 0)
    is_init, page, mx = head[12], struct.unpack_from("=H", head, 14)[0], struct.unpack_from("=I", head, 16)[0]
    if version != _SHM_VERSION or is_init != 1:
        return None
    backfill, = struct.unpack_from("=I", head, 96)
    return mx, backfill, (65536 if page == 1 else page)


def wal_problems(db: Path, *, live: bool = False) -> list[str]:
    """Warnings about run.db's WAL (empty when it is whole, or when there is none to check).

    `live`: a writer may be appending right now. Its log then ends inside a frame for a moment
    and its header is rewritten when the log restarts, so only the index check is made, which
    stays sound: a writer appends frames before it counts them in the index."""
    db = Path(db)
    wal, shm = db.with_name(schema.DB_WAL), db.with_name(schema.DB_SHM)
    out = []
    before = _index(shm)
    got = _read_head(wal, _WAL_HEADER)
    size = got[1] if got is not None else 0
    if got is not None and size > 0 and not live:
        problem = _wal_header_problem(*got)
        if problem:
            out.append(f"{schema.DB_WAL} {problem}: the numbers of the last flushes before the run stopped "
                       f"may be missing.")
            return out
    if before is not None and before[0] > before[1] and _index(shm) == before:
        mx, _backfill, page = before
        needed = _WAL_HEADER + mx * (page + _FRAME_HEADER)
        if size < needed:
            out.append(f"{schema.DB_WAL} was lost or cut short: its index ({schema.DB_SHM}) counts {mx} frames "
                       f"not yet copied into {schema.DB_FILE}, so the numbers of the last flushes are missing.")
    return out
