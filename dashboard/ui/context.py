"""What app.py works out on every rerun and the pages read: settings, runs found, the current
run, run colours. Kept in st.session_state so each browser session has its own."""

from __future__ import annotations

from dataclasses import dataclass, field

import streamlit as st

from ..discovery import RunRef
from ..settings import Settings

_KEY = "_app_context"
# Session-state keys shared by pages. The current run is kept under a plain key, not the picker
# widget's key: Streamlit drops a widget's value when st.switch_page changes the page mid-run.
CURRENT_RUN = "current_run"
RUN_PICKER = "run"
SELECTED_RUNS = "selected_runs"
COMPARE_RUNS = "compare_runs"
FOCUS = "focus"
EXTRA_DIRS = "extra_dirs"
RUN_COLORS = "run_colors"


@dataclass
class AppContext:
    """The state of one rerun of the app."""

    settings: Settings
    refs: list[RunRef]
    notes: list[str] = field(default_factory=list)
    folders: tuple[str, ...] = ()
    current: RunRef | None = None
    colors: dict[str, str] = field(default_factory=dict)

    def ref(self, path: str) -> RunRef | None:
        return next((r for r in self.refs if r.path == path), None)

    def color(self, path: str) -> str | None:
        return self.colors.get(path)


def set_context(ctx: AppContext) -> None:
    st.session_state[_KEY] = ctx


def get_context() -> AppContext:
    """The context app.py stored for this rerun; pages are only meant to run under app.py."""
    ctx = st.session_state.get(_KEY)
    if ctx is None:
        st.error("This page is part of the dashboard: start it with `streamlit run app.py`.")
        st.stop()
    return ctx
