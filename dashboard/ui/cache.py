"""Process-wide caches, shared by every session: the open runs (a bounded HandlePool), the runs'
summaries (SummaryStore: run.json per run, run.db once per change), and discovery results for a
few seconds."""

from __future__ import annotations

import streamlit as st

from ..discovery import RunRef, find_runs
from ..loading import HandlePool, RunHandle
from ..summary import RunInfo, SummaryStore


@st.cache_resource(show_spinner=False)
def _pool() -> HandlePool:
    return HandlePool()


@st.cache_resource(show_spinner=False)
def summaries() -> SummaryStore:
    """The summaries of every run listed (see dashboard.summary)."""
    return SummaryStore(_pool())


def handle(ref: RunRef, *, min_interval: float = 1.0) -> RunHandle:
    """The shared in-memory handle of a run the user opened, brought up to date with the disk."""
    return _pool().get(ref).sync(min_interval=min_interval)


@st.cache_data(show_spinner=False, ttl=3.0, max_entries=64)
def discover(folders: tuple[str, ...]) -> tuple[list[RunRef], list[str]]:
    """find_runs, re-scanned at most every 3 seconds (new runs appear without a reload)."""
    return find_runs(folders)


def meta(ref: RunRef) -> dict | str:
    """run.json of a run (a copy), or the reason it cannot be read. Re-read only when the file changes."""
    return summaries().meta(ref)


def info(ref: RunRef) -> RunInfo:
    """What run.json says about a run (name, status, ...), for labels and the Runs table."""
    return summaries().info(ref)
