"""What app.py works out on every rerun and the pages read: settings, runs found, the current
run, run ids (for links) and colours. Kept in st.session_state so each browser session has its own."""

from __future__ import annotations

from dataclasses import dataclass, field

import streamlit as st

from ..colors import run_colors
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


@dataclass
class AppContext:
    """The state of one rerun of the app."""

    settings: Settings
    refs: list[RunRef]
    notes: list[str] = field(default_factory=list)
    folders: tuple[str, ...] = ()
    current: RunRef | None = None
    ids: dict[str, str] = field(default_factory=dict)     # path -> stable id (discovery.run_ids)
    colors: dict[str, str] = field(default_factory=dict)  # path -> colour (colors.run_colors of the ids)

    def ref(self, path: str) -> RunRef | None:
        return next((r for r in self.refs if r.path == path), None)

    def path_of(self, ident: str) -> str | None:
        """The run path with this id (e.g. from a link), or None for an id no run has."""
        return next((p for p, i in self.ids.items() if i == ident), None)

    def color(self, path: str) -> str | None:
        """The run's colour: the same on every page and in every session."""
        return self.colors.get(path)

    def colors_for(self, paths) -> dict[str, str]:
        """Colours for runs drawn together (Compare): each keeps its own colour unless an earlier
        one of them has it already (possible with more runs than colours), then takes a free one."""
        paths = list(dict.fromkeys(paths))
        keep: dict[str, str] = {}
        for p in paths:
            c = self.colors.get(p)
            if c is not None and c not in keep.values():
                keep[self.ids.get(p, p)] = c
        by_id = run_colors([self.ids.get(p, p) for p in paths], keep=keep)
        return {p: by_id[self.ids.get(p, p)] for p in paths}


def set_context(ctx: AppContext) -> None:
    st.session_state[_KEY] = ctx


def get_context() -> AppContext:
    """The context app.py stored for this rerun; pages are only meant to run under app.py."""
    ctx = st.session_state.get(_KEY)
    if ctx is None:
        st.error("This page is part of the dashboard: start it with `streamlit run app.py`.")
        st.stop()
    return ctx
