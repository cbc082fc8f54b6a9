"""runstore owns the run directory: no module outside runstore/ imports sqlite3 or spells a file
name of a run directory (run.json, run.db and its -wal/-shm companions, train.log, config.json,
job.json, tb/). They use runstore.schema's constants and runstore's functions instead, so the
layout can change in one place.

The scan reads the source with `ast`: docstrings (and other bare string statements) may name the
files, code may not, however the string is put together (a literal, a concatenation, an
f-string, % formatting)."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

from runstore import schema

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {"runstore", "tests", ".git", "__pycache__", "build", "dist", ".venv", "venv", "node_modules"}
HOLE = "\0"  # stands for the value of an f-string field: {x}
_EDGE = r"(?:^|(?<=[^\w.-]))"
_END = r"(?=$|[^\w.-])"
FILE_NAMES = re.compile(_EDGE + "(" + "|".join(re.escape(n) for n in schema.FILES) + ")" + _END)
# The WAL companions put together from their suffix, e.g. f"{db}-wal" or DB_FILE + "-wal".
WAL_SUFFIX = re.compile(r"(?:^|(?<=[^\w]))-(?:wal|shm)" + _END)
SQLITE_MODULE = re.compile(r"^_?sqlite3(?:\.|$)")


def production_files() -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel = Path(dirpath).relative_to(ROOT)
        dirnames[:] = [d for d in dirnames if not (rel == Path(".") and d in SKIP_DIRS)
                       and d not in ("__pycache__", ".git") and not d.endswith(".egg-info")]
        out += [Path(dirpath) / f for f in filenames if f.endswith(".py")]
    return sorted(out)


def _fold(node: ast.AST) -> str | None:
    """The text a string expression evaluates to, with HOLE for parts only known at run time;
    None if it is not built from string constants."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else HOLE for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        left, right = _fold(node.left), _fold(node.right)
        if isinstance(node.op, ast.Add):
            if left is None and right is None:
                return None
            return (left if left is not None else HOLE) + (right if right is not None else HOLE)
        if left is not None:  # "run.%s" % x: every conversion becomes a hole
            return re.sub(r"%[-#0 +]*\d*(?:\.\d+)?[sdrfgei]", HOLE, left)
    return None


def _bare_strings(tree: ast.AST) -> set[int]:
    """ids of string statements that do nothing (docstrings, string "comments")."""
    return {id(n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Expr) and isinstance(n.value, (ast.Constant, ast.JoinedStr))}


def _spells_file_name(text: str) -> str | None:
    m = FILE_NAMES.search(text) or WAL_SUFFIX.search(text)
    if m:
        return m.group(0)
    # A name completed at run time, e.g. f"run.{ext}" or "train.%s" % ext: a word that starts with
    # a file's stem and its dot and, with anything in its holes, can be that file.
    for word in re.split(r"[^\w.\-" + HOLE + "]+", text):
        if HOLE not in word:
            continue
        pattern = "".join(".*" if c == HOLE else re.escape(c) for c in word)
        for name in schema.FILES:
            if word.startswith(name.split(".")[0] + ".") and re.fullmatch(pattern, name):
                return name
    parts = text.replace("\\", "/").split("/")
    if text == schema.TB_DIR or (len(parts) > 1 and schema.TB_DIR in parts):
        return schema.TB_DIR
    return None


def violations(source: str, filename: str = "<src>") -> list[str]:
    """Every place in `source` that imports sqlite3 or spells a run-directory file name."""
    tree = ast.parse(source, filename)
    skip = _bare_strings(tree)
    found, seen = [], set()
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            found += [f"{filename}:{line}: import {a.name}" for a in node.names if SQLITE_MODULE.match(a.name)]
        elif isinstance(node, ast.ImportFrom) and SQLITE_MODULE.match(node.module or ""):
            found.append(f"{filename}:{line}: from {node.module} import ...")
        elif isinstance(node, ast.Attribute) and node.attr in ("sqlite3", "_sqlite3"):
            found.append(f"{filename}:{line}: .{node.attr}")
        if id(node) in skip or id(node) in seen:
            continue
        text = _fold(node)
        if text is None:
            continue
        # A folded expression is reported once, not again for each of its parts.
        seen.update(id(n) for n in ast.walk(node))
        if SQLITE_MODULE.match(text):
            found.append(f"{filename}:{line}: names the module {text!r}")
        name = _spells_file_name(text)
        if name is not None:
            found.append(f"{filename}:{line}: spells {name!r} in {text.replace(HOLE, '{…}')!r}")
    return found


def test_only_runstore_touches_the_run_directory_files():
    files = production_files()
    rel = {f.relative_to(ROOT).as_posix() for f in files}
    # the scan covers the packages that use run directories (and nothing it should not)
    assert {"app.py", "dashboard/loading.py", "dashboard/ui/cache.py", "diagnostics/loading.py",
            "jobs/supervisor.py", "playground/samples.py", "probes/recorder.py"} <= rel
    assert not any(r.startswith(("runstore/", "tests/")) for r in rel)
    problems = [v for f in files for v in violations(f.read_text(encoding="utf-8"), str(f.relative_to(ROOT)))]
    assert not problems, ("use runstore.schema's constants and runstore's functions instead:\n"
                          + "\n".join(problems))


@pytest.mark.parametrize("code", [
    "import sqlite3",
    "import sqlite3 as db",
    "from sqlite3 import connect",
    "import importlib; importlib.import_module('sqlite3')",
    "con = runstore.reader.sqlite3.connect(p)",
    "p = d / 'run.json'",
    "p = os.path.join(d, 'train.log')",
    "p = d / ('run' + '.json')",
    "p = d / ('run.%s' % ext)",
    "p = d / f'train.{ext}'",
    "p = f'{d}/run.db-wal'",
    "p = f'run.db{suffix}'",
    "p = schema.DB_FILE + '-shm'",
    "p = f'{db}-wal'",
    "p = d / 'job.json'",
    "cfg = load(run_dir + '/config.json')",
    "p = d / 'tb'",
    "p = f'{d}/tb/events'",
    "label = 'Last lines of train.log'",
    "def f():\n    '''Reads run.json.'''\n    return open('run.json')",
])
def test_the_scan_catches_spelled_names_and_sqlite(code):
    assert violations(code)


@pytest.mark.parametrize("code", [
    "'''Module docstring naming run.json, run.db and train.log.'''",
    "def f():\n    '''Reads run.json and job.json.'''\n    return schema.META_FILE",
    "p = d / schema.META_FILE",
    "status = 'running'",
    "kind = 'json'",
    "name = 'my_run.json'",
    "name = 'run.jsonl'",
    "name = 'tbx'",
    "log = 'training log'",
    "text = f'{n} rows in {table}'",
    "import json",
    "mode = '%s-wall' % x",
    "stamp = folder / f'{name}.spec.json'",
    "p = f'{name}.json'",
    "p = f'my_run.{ext}'",
])
def test_the_scan_leaves_legitimate_code_alone(code):
    assert violations(code) == []
