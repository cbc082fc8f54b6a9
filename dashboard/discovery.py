"""Find runs under folders: run directories (run.json / run.db) and TensorBoard log directories."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from runstore import schema

RUN = "run"
TENSORBOARD = "tensorboard"
# Deep enough for runs/<project>/<sweep>/<run>, shallow enough that pointing the app at a home
# directory by mistake does not walk the whole disk.
MAX_DEPTH = 4
_SKIP_DIRS = {".git", "__pycache__", ".venv", "node_modules", ".ipynb_checkpoints"}


@dataclass(frozen=True)
class RunRef:
    """A run found on disk: where, what kind, and under which scanned folder."""

    path: str        # absolute, the run's identity everywhere in the app
    kind: str        # RUN or TENSORBOARD
    folder: str      # the scanned folder it was found under

    @property
    def label(self) -> str:
        """Path relative to its folder, e.g. "sweep1/lr0.1"."""
        rel = os.path.relpath(self.path, self.folder)
        return Path(self.path).name if rel == "." else rel


def run_ids(refs) -> dict[str, str]:
    """A short, stable id for each run path, for links (`?run=<id>`) and colours: the run's path
    relative to its scanned folder ("lr_too_high", "sweep1/lr0.1"); where two folders hold runs
    of the same name, the folder's name goes first ("sample_runs/baseline"). The same folders give
    the same ids in every session."""
    refs = list(refs)
    counts: dict[str, int] = {}
    for r in refs:
        counts[r.label] = counts.get(r.label, 0) + 1
    out: dict[str, str] = {}
    used: set[str] = set()
    for r in refs:
        ident = r.label if counts[r.label] == 1 else f"{Path(r.folder).name}/{r.label}"
        base, n = ident, 2
        while ident in used:  # two folders with the same name: number the later ones
            ident, n = f"{base}~{n}", n + 1
        used.add(ident)
        out[r.path] = ident
    return out


def _has_tb_events(names: list[str]) -> bool:
    return any(n.startswith("events.out.tfevents") for n in names)


def find_runs(folders, *, max_depth: int = MAX_DEPTH) -> tuple[list[RunRef], list[str]]:
    """All runs under `folders` (in folder order, then path order), and notes about folders that
    could not be scanned. A run directory's own `tb/` mirror is not listed a second time."""
    refs: list[RunRef] = []
    notes: list[str] = []
    seen: set[str] = set()
    for folder in folders:
        root = Path(folder).expanduser()
        if not root.exists():
            notes.append(f"{folder} does not exist (yet).")
            continue
        if not root.is_dir():
            notes.append(f"{folder} is a file, not a folder of runs.")
            continue
        base = os.path.abspath(root)
        for ref in _walk(base, base, 0, max_depth, notes):
            if ref.path not in seen:
                seen.add(ref.path)
                refs.append(ref)
    return refs, notes


def _walk(folder: str, base: str, depth: int, max_depth: int, notes: list[str]):
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        notes.append(f"{folder} cannot be read ({e.strerror}).")
        return
    names = [e.name for e in entries]
    if schema.META_FILE in names or schema.DB_FILE in names:
        yield RunRef(folder, RUN, base)
        return  # a run's tb/ mirror and rank<r>/ folders are part of this run
    if _has_tb_events(names):
        yield RunRef(folder, TENSORBOARD, base)
        # TensorBoard keeps sub-runs in sub-folders; keep walking for them
    if depth >= max_depth:
        return
    for e in entries:
        if e.name in _SKIP_DIRS or e.name.startswith("."):
            continue
        try:
            is_dir = e.is_dir()
        except OSError:
            continue
        if is_dir:
            yield from _walk(e.path, base, depth + 1, max_depth, notes)
