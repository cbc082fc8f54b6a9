"""Process-wide caches: one RunHandle per run path, discovery results for a few seconds."""

from __future__ import annotations

import streamlit as st

from runstore import RunReadError, meta_signature, read_meta

from ..discovery import RunRef, find_runs
from ..loading import RunHandle


@st.cache_resource(show_spinner=False, max_entries=512)
def _handle(path: str, kind: str, folder: str) -> RunHandle:
    return RunHandle(RunRef(path, kind, folder))


def handle(ref: RunRef, *, min_interval: float = 1.0) -> RunHandle:
    """The shared in-memory handle of a run, brought up to date with the disk."""
    return _handle(ref.path, ref.kind, ref.folder).sync(min_interval=min_interval)


@st.cache_data(show_spinner=False, ttl=3.0, max_entries=64)
def discover(folders: tuple[str, ...]) -> tuple[list[RunRef], list[str]]:
    """find_runs, re-scanned at most every 3 seconds (new runs appear without a reload)."""
    return find_runs(folders)


@st.cache_data(show_spinner=False, max_entries=2048)
def _meta(path: str, signature: int) -> dict | str:
    try:
        return read_meta(path)
    except RunReadError as e:
        return str(e)


def meta(ref: RunRef) -> dict | str:
    """run.json of a run (cheap, for labels), or the reason it cannot be read. Re-read only when
    the file changes."""
    return _meta(ref.path, meta_signature(ref.path))
