"""The sidebar under the page menu: which run the run pages show, and which folders are scanned."""

from __future__ import annotations

import os

import streamlit as st

from runstore import effective_status

from ..colors import assign_run_colors
from ..discovery import TENSORBOARD, RunRef
from ..settings import Settings, split_dirs
from ..summary import STATUS_ICONS
from . import cache
from .context import CURRENT_RUN, EXTRA_DIRS, RUN_COLORS, RUN_PICKER, AppContext


def run_label(ref: RunRef) -> str:
    """"name · status" from run.json, cheap enough for every run in a menu."""
    if ref.kind == TENSORBOARD:
        return f"{ref.label} · TensorBoard"
    meta = cache.meta(ref)
    if isinstance(meta, str):
        return f"{ref.label} · unreadable"
    status = effective_status(meta, None)
    return f"{meta.get('name') or ref.label} · {STATUS_ICONS.get(status, status)}"


def _folders(settings: Settings) -> tuple[str, ...]:
    extra = split_dirs([st.session_state.get(EXTRA_DIRS, "")])
    seen: dict[str, None] = {}
    for p in list(extra) + list(settings.folders):
        seen.setdefault(os.path.abspath(p), None)
    return tuple(seen)


def render(settings: Settings) -> AppContext:
    """Draw the sidebar and return the context of this rerun."""
    folders = _folders(settings)
    refs, notes = cache.discover(folders)
    colors = assign_run_colors([r.path for r in refs], st.session_state.get(RUN_COLORS))
    st.session_state[RUN_COLORS] = colors
    ctx = AppContext(settings=settings, refs=refs, notes=notes, folders=folders, colors=colors)

    with st.sidebar:
        paths = [r.path for r in refs]
        if paths:
            if st.session_state.get(CURRENT_RUN) not in paths:
                st.session_state[CURRENT_RUN] = paths[0]
            st.session_state[RUN_PICKER] = st.session_state[CURRENT_RUN]
            labels = {r.path: run_label(r) for r in refs}
            current = st.selectbox("Run", paths, key=RUN_PICKER, format_func=lambda p: labels.get(p, p),
                                   on_change=_picked,
                                   help="The run the Overview, Activations, Gradients, Updates and "
                                        "Predictions pages show. Pick several on the Runs page to compare.")
            ctx.current = ctx.ref(current)
        else:
            st.info("No runs found yet. Record one with `probes.attach(model, run_dir='runs/my_run')`.")
        with st.expander("Run folders", expanded=not paths):
            st.text_input("Add folders (comma-separated)", key=EXTRA_DIRS,
                          placeholder="/path/to/runs, ~/tb_logs",
                          help="Run directories and TensorBoard log directories under these folders are "
                               "listed too. From the command line: streamlit run app.py -- --runs-dir PATH")
            counts: dict[str, int] = {}
            for r in refs:
                counts[r.folder] = counts.get(r.folder, 0) + 1
            for f in folders:
                st.caption(f"`{_short(f)}` — {counts.get(f, 0)} run(s)")
            for n in notes:
                st.caption(f"⚠️ {n}")
            if st.button("Rescan folders", key="rescan", icon=":material/refresh:"):
                cache.discover.clear()
                st.rerun()
    return ctx


def _picked() -> None:
    st.session_state[CURRENT_RUN] = st.session_state[RUN_PICKER]


def _short(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith("..") else path
