"""The sidebar under the page menu: which run the run pages show (also kept in the URL as
`?run=<id>`), and which folders are scanned."""

from __future__ import annotations

import os

import streamlit as st

from .. import status
from ..colors import run_colors
from ..discovery import TENSORBOARD, RunRef, run_ids
from ..format import md_escape
from ..settings import Settings, split_dirs
from . import cache, urlstate
from .context import CURRENT_RUN, EXTRA_DIRS, RUN_PICKER, AppContext

RUN_PARAM = "run"  # the URL parameter naming the current run (its discovery.run_ids id)


def run_label(ref: RunRef) -> str:
    """"name · status" from run.json, cheap enough for every run in a menu (a menu shows text as it
    is: no escaping). A run whose run.json cannot be read is "folder · unreadable"."""
    if ref.kind == TENSORBOARD:
        return f"{ref.label} · TensorBoard"
    try:
        info = cache.info(ref)
        return f"{info.name} · {status.label(info.live_status())}"
    except Exception:  # noqa: BLE001 - a menu label must never fail
        return f"{ref.label} · {status.label(status.UNREADABLE)}"


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
    ids = run_ids(refs)
    by_id = run_colors(ids.values())
    ctx = AppContext(settings=settings, refs=refs, notes=notes, folders=folders, ids=ids,
                     colors={p: by_id[i] for p, i in ids.items()})

    with st.sidebar:
        paths = [r.path for r in refs]
        if paths:
            _follow_link(ctx)
            if st.session_state.get(CURRENT_RUN) not in paths:
                st.session_state[CURRENT_RUN] = paths[0]
            st.session_state[RUN_PICKER] = st.session_state[CURRENT_RUN]
            labels = {r.path: run_label(r) for r in refs}
            current = st.selectbox("Run", paths, key=RUN_PICKER, format_func=lambda p: labels.get(p, p),
                                   on_change=_picked,
                                   help="The run the Overview, Activations, Gradients, Updates and "
                                        "Predictions pages show. Pick several on the Runs page to compare.")
            ctx.current = ctx.ref(current)
            urlstate.write(RUN_PARAM, ids.get(current, []))
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
                n = counts.get(f, 0)
                st.caption(f"{md_escape(_short(f))} — {n} run{'' if n == 1 else 's'}")
            for n in notes:
                st.caption(f":material/warning: {md_escape(n)}")
            if st.button("Rescan folders", key="rescan", icon=":material/refresh:"):
                cache.discover.clear()
                st.rerun()
    return ctx


def _follow_link(ctx: AppContext) -> None:
    """Open the run a link names (`?run=<id>`) once; an id no run has is reported, not followed."""
    wanted = urlstate.incoming(RUN_PARAM)
    if not wanted:
        return
    path = ctx.path_of(wanted[0])
    if path is not None:
        st.session_state[CURRENT_RUN] = path
    else:
        st.warning(f"The link names a run ({md_escape(wanted[0][:80])}) that is not in the scanned folders; "
                   "showing another run.", icon=":material/link_off:")


def _picked() -> None:
    st.session_state[CURRENT_RUN] = st.session_state[RUN_PICKER]


def _short(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith("..") else path
