"""The frame of a one-run page: pick up the current run, show its header (live badge, latest
step), keep it refreshing while it is written, and show an error card if it cannot be read."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Callable

import streamlit as st

from jobs import rerunnable
from runstore import log_tail, schema

from .. import navigation, status
from ..format import md_escape
from ..loading import RunHandle
from . import cache
from .context import FOCUS, AppContext, get_context

# A run the header's "Rerun with changes" hands to the Train page ({"path", "name"}); the Train
# page loads its hyperparameters into the form.
RERUN_REQUEST = "_rerun_request"


def current_handle(ctx: AppContext | None = None) -> RunHandle:
    """The synced handle of the run picked in the sidebar; stops the page with a message if
    there is none or it cannot be read (the rest of the app keeps working)."""
    ctx = ctx or get_context()
    if ctx.current is None:
        st.info("No run to show. Runs appear here once a folder with runs is added in the sidebar.")
        st.stop()
    h = cache.handle(ctx.current, min_interval=min(1.0, ctx.settings.refresh_s / 2))
    if h.error is not None:
        error_card(h)
        st.stop()
    return h


def error_card(h: RunHandle) -> None:
    """A run that could not be read: what failed and where, in the user's terms."""
    problem_card(h.ref, h.error, getattr(h, "trace", None))


def problem_card(ref, why: str, trace: str | None = None) -> None:
    """The card of a run that cannot be read (`why`: one line), with the traceback one click away."""
    with st.container(border=True):
        st.error(f"**{md_escape(ref.label)}** could not be read.\n\n{md_escape(why)}", icon=":material/error:")
        st.caption(f"Folder: {md_escape(ref.path)}. Other runs are not affected; pick another one in the sidebar.")
        if trace:
            with st.expander("Technical details"):
                st.code(trace, language="text")


def header(h: RunHandle, *, page_title: str) -> None:
    """Run name, status badge (live runs: a green 'live' badge), latest step and when it was
    last written, workload and any warnings met while reading."""
    run = h.run
    look = status.look(run.status)
    cols = st.columns([0.7, 0.3], vertical_alignment="bottom")
    with cols[0]:
        st.markdown(f"### {page_title} · {md_escape(run.name)}")
    with cols[1]:
        with st.container(horizontal=True, horizontal_alignment="right"):
            st.badge(look.label, color=look.color, help=look.help or None,
                     icon=":material/fiber_manual_record:" if run.status == schema.RUNNING else None)
            if run.last_step >= 0:
                st.badge(f"step {run.last_step:,}", color="gray")
    bits = []
    if run.meta.get("workload"):
        bits.append(f"workload **{md_escape(run.meta['workload'])}**")
    if run.last_flush and run.status == schema.RUNNING:
        bits.append(f"last written {max(0, time.time() - run.last_flush):.0f} s ago")
    elif run.meta.get("ended"):
        try:
            bits.append(f"ended {datetime.fromtimestamp(run.meta['ended']):%Y-%m-%d %H:%M}")
        except (TypeError, ValueError, OverflowError, OSError):
            pass
    if run.meta.get("description"):
        bits.append(md_escape(run.meta["description"]))
    with st.container(horizontal=True, vertical_alignment="center"):
        if bits:
            st.caption(" · ".join(bits))
        _rerun_link(run, key=f"rerun-{page_title}")
    if run.status == schema.FAILED and run.meta.get("error"):
        st.error(f"Training failed: {md_escape(run.meta['error'])}")
    _unfinished_details(run)
    for w in run.warnings:
        st.warning(md_escape(w), icon=":material/warning:")


def _rerun_link(run, *, key: str) -> None:
    """"Rerun with changes" for a run the playground trained, when the app has a Train page (other
    runs get none: their training code is not the dashboard's to rerun)."""
    train = navigation.page("train")
    if train is None or not rerunnable(run.hparams):
        return
    if st.button("Rerun with changes", key=key, icon=":material/replay:", type="tertiary",
                 help="Open this run's hyperparameters in the Train page, change some, and start a new run "
                      "linked to this one."):
        st.session_state[RERUN_REQUEST] = {"path": str(run.path), "name": run.name}
        st.switch_page(train.script)


def _unfinished_details(run) -> None:
    """Why a run did not finish, and the last lines of the log of the process that trained it."""
    if run.status not in (schema.FAILED, schema.KILLED):
        return
    if run.status == schema.KILLED:
        why = md_escape(run.meta.get("error") or "")
        st.warning(why or "Not finished: the process recording this run is gone (it crashed or was killed) and "
                          "never closed the run; what it recorded until then is shown.", icon=":material/warning:")
    tail = log_tail(run.path, 25)
    if tail:
        with st.expander(f"Last lines of {schema.LOG_FILE} (the training process's output)", expanded=True):
            st.code(tail, language="text")


def live_section(h: RunHandle, body: Callable[[RunHandle], None], *, key: str) -> None:
    """Run `body(handle)`; while the run is live, re-run just this part every few seconds so
    new steps appear without reloading the page or touching the user's selections."""
    ctx = get_context()
    interval = ctx.settings.refresh_s if h.is_live else None

    def _body():
        fresh = cache.handle(h.ref, min_interval=min(1.0, ctx.settings.refresh_s / 2))
        if fresh.error is not None:
            error_card(fresh)
            return
        body(fresh)
        if interval and not fresh.is_live:
            st.rerun()  # the run ended: redraw the whole page once, without a timer

    st.fragment(_body, run_every=interval, key=key)()


def focus_for(page_key: str, path: str) -> dict | None:
    """The finding the user jumped here from (layers, steps, title), if it is for this page and run."""
    f = st.session_state.get(FOCUS)
    if f and f.get("page") == page_key and f.get("run") == path:
        return f
    return None


def focus_banner(focus: dict | None) -> tuple[int, int] | None:
    """Say which finding is highlighted and offer to clear it; returns the steps to shade."""
    if not focus:
        return None
    cols = st.columns([0.85, 0.15], vertical_alignment="center")
    steps = focus.get("steps")
    where = f" (steps {steps[0]:,}–{steps[1]:,} shaded)" if steps else ""
    cols[0].info(f"Showing the evidence for **{md_escape(focus.get('title'))}**{where}.", icon=":material/search:")
    if cols[1].button("Clear", key=f"clear-focus-{focus.get('page')}"):
        st.session_state.pop(FOCUS, None)
        st.rerun()
    return tuple(steps) if steps else None


def healthy(text: str) -> None:
    """The one sentence saying what a healthy picture looks like on this page."""
    st.caption(f":material/check_circle: **Healthy:** {text}")


def missing(what: str, how: str = "") -> None:
    """Say that the run lacks data for a chart (instead of drawing an empty one)."""
    st.info(f"This run has no {what}." + (f" {how}" if how else ""), icon=":material/info:")


def chart(fig, *, key: str) -> None:
    """Show a Plotly figure in the page theme (light or dark) with a lean toolbar."""
    st.plotly_chart(fig, key=key, theme="streamlit",
                    config={"displaylogo": False, "modeBarButtonsToRemove": ["select2d", "lasso2d"]})
