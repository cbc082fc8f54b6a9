"""Reading a file of a run directory that may be anything: a FIFO (opening it would block until
someone writes), a device (/dev/zero never ends), a folder, a symlink loop, a file of gigabytes,
or JSON nested deeper than the parser's recursion limit.

Only regular files are opened (checked with stat before and fstat after opening, so a file swapped
in between is caught too), without blocking (O_NONBLOCK), and read up to a size cap. Every failure
is an OSError (FileNotFoundError when the file is absent) or, for JSON that is no JSON object, a
ValueError, with a message in the user's terms.
"""

from __future__ import annotations

import errno
import json
import os
import stat

# run.json of a model with thousands of modules is a few hundred KB; anything bigger is not ours.
MAX_META_BYTES = 4 * 1024 * 1024
# Small JSON files of a run directory besides run.json: job.json, config.json.
MAX_SMALL_JSON_BYTES = 1024 * 1024
# Deeper than any run.json the probes write (hparams are nested a few levels at most); deeper
# values would only make every consumer that walks them recurse.
MAX_JSON_DEPTH = 64


class NotARegularFile(OSError):
    """The path exists but is a FIFO, a device, a folder, a socket ...: it is never opened.
    `why` says what it is instead, e.g. "it is a named pipe (FIFO), not a regular file"."""

    def __init__(self, path, why: str):
        super().__init__(f"{path} cannot be read: {why}")
        self.why = why


class FileTooLarge(OSError):
    """The file is larger than the cap for its kind; `why` says so in words."""

    def __init__(self, path, why: str):
        super().__init__(f"{path} cannot be read: {why}")
        self.why = why


def _what(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def regular_file_problem(path) -> str | None:
    """None if `path` is a regular file (symlinks followed) that can be stat'ed, else why not: "missing"
    when it does not exist, or a phrase like "a named pipe (FIFO)" / "cannot be read (...)"."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError) as e:  # ELOOP, EACCES, ENAMETOOLONG, an embedded NUL byte
        return f"cannot be read ({_reason(e)})"
    if not stat.S_ISREG(st.st_mode):
        return f"is {_what(st.st_mode)}, not a regular file"
    return None


def is_regular_file(path) -> bool:
    """True if `path` is a regular file; False for anything else, including paths the OS rejects."""
    return regular_file_problem(path) is None


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB" if n >= 1024 * 1024 else f"{n} bytes"


def _reason(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def read_bytes(path, *, max_bytes: int) -> bytes:
    """The content of a regular file of at most `max_bytes` bytes. Raises FileNotFoundError,
    NotARegularFile, FileTooLarge, or another OSError whose message says why it cannot be read."""
    try:
        st = os.stat(path)
    except ValueError as e:  # a path with a NUL byte: no file can have that name
        raise FileNotFoundError(errno.ENOENT, f"no such file ({e})", str(path)) from None
    if not stat.S_ISREG(st.st_mode):
        raise NotARegularFile(path, f"it is {_what(st.st_mode)}, not a regular file")
    if st.st_size > max_bytes:
        raise FileTooLarge(path, f"it is larger than {_size(max_bytes)}")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced between the stat and the open
            raise NotARegularFile(path, f"it is {_what(st.st_mode)}, not a regular file")
        parts, size = [], 0
        while size <= max_bytes:
            block = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not block:
                break
            parts.append(block)
            size += len(block)
        if size > max_bytes:  # it grew while being read
            raise FileTooLarge(path, f"it is larger than {_size(max_bytes)}")
        return b"".join(parts)
    finally:
        os.close(fd)


def _depth_exceeds(value, limit: int) -> bool:
    """True if `value` nests lists/dicts deeper than `limit` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = v.values()
        elif not isinstance(v, list):
            continue
        if d > limit:
            return True
        stack.extend((c, d + 1) for c in v if isinstance(c, (dict, list)))
    return False


_JSON_KIND = {list: "list", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def parse_json_object(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> dict:
    """`data` parsed as a JSON object. ValueError (with the reason) for anything else: invalid JSON
    or text, another JSON value ([], null, 1, "x"), nesting deeper than `max_depth`."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError(f"it is nested more than {max_depth} levels deep") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer of 5,000 digits
        raise ValueError(str(e)) from None
    if not isinstance(value, dict):
        raise ValueError(f"it holds a JSON {_JSON_KIND.get(type(value), type(value).__name__)}, not an object")
    if _depth_exceeds(value, max_depth):
        raise ValueError(f"it is nested more than {max_depth} levels deep")
    return value


def read_json_object(path, *, max_bytes: int = MAX_SMALL_JSON_BYTES) -> dict:
    """A small JSON file that must hold an object: OSError when it cannot be read (see read_bytes),
    ValueError when it is not a JSON object."""
    return parse_json_object(read_bytes(path, max_bytes=max_bytes))


def read_json_or_none(path, *, max_bytes: int = MAX_SMALL_JSON_BYTES) -> dict | None:
    """read_json_object, or None for any failure (for records whose absence is a normal state)."""
    try:
        return read_json_object(path, max_bytes=max_bytes)
    except (OSError, ValueError):
        return None
