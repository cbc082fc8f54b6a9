"""Streamlit pieces of the training-jobs feature that several pages use: the shared job manager,
"Rerun with changes", the one-click "Apply: <change>" rerun of an advice card, a crashed job's log,
and the list of live jobs."""

from __future__ import annotations

import math
import os
import time

import streamlit as st

from playground.config import ConfigError

from .. import navigation
from ..fixes import AppliedFix, FixError, apply_fix, config_from_hparams
from ..jobs import JobError, JobInfo, JobManager, log_tail
from . import cache
from .advice import card_head
from .context import COMPARE_RUNS, CURRENT_RUN, SELECTED_RUNS, get_context

TRAIN_PAGE = "train"
TRAIN_SCRIPT = "dashboard/pages/train.py"
# Session-state keys shared with the Train page.
PREFILL = "_train_prefill"        # {"hparams", "parent", "parent_name", "note"}: load into the form
PENDING_WATCH = "_train_watch_pending"  # run dir the Train page should show next
FLASH = "_train_flash"            # (kind, message) shown once on the Train page
STATE_WORDS = {"starting": "starting", "running": "live", "finished": "finished", "failed": "failed",
               "stopped": "stopped", "killed": "not finished"}
STATE_COLORS = {"starting": "violet", "running": "green", "finished": "blue", "failed": "red", "stopped": "gray",
                "killed": "orange"}


@st.cache_resource(show_spinner=False, max_entries=16)
def _manager(runs_dir: str) -> JobManager:
    return JobManager(runs_dir)


def manager() -> JobManager:
    """The process-wide job manager of the user's runs folder (shared by all tabs and sessions)."""
    return _manager(os.path.abspath(get_context().settings.user_dir))


def train_script() -> str:
    page = navigation.page(TRAIN_PAGE)
    return page.script if page is not None else TRAIN_SCRIPT


def clock(seconds: float | None) -> str:
    """12:34 or 1:02:03; "--:--" when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "--:--"
    s = int(round(max(0.0, seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def state_badge(state: str) -> None:
    st.badge(STATE_WORDS.get(state, state), color=STATE_COLORS.get(state, "gray"),
             icon=":material/fiber_manual_record:" if state == "running" else None)


def job_label(job: JobInfo) -> str:
    """E.g. "digits lr 0.01 · started 14:02:31" (stable while the job runs)."""
    return f"{job.name} · started {time.strftime('%H:%M:%S', time.localtime(job.started))}"


# -- rerun with changes ----------------------------------------------------------------------------
def open_in_form(hparams: dict, *, parent: str, parent_name: str, note: str | None = None) -> None:
    """Load a run's hyperparameters into the Train page's form and go there."""
    try:
        config, notes = config_from_hparams(hparams, devices=manager().devices())
    except FixError as e:
        st.error(str(e), icon=":material/block:")
        return
    st.session_state[PREFILL] = {"hparams": config.to_dict(), "parent": parent, "parent_name": parent_name,
                                 "parent_hparams": dict(hparams), "note": " ".join(([note] if note else []) + notes)}
    go_to_train()


def go_to_train() -> None:
    """Switch to the Train page (or redraw it when already there)."""
    if navigation.page(TRAIN_PAGE) is None:
        st.rerun()
    st.switch_page(train_script())


def rerun_button(run, *, key: str) -> None:
    """A "Rerun with changes" button for a run the playground trained (other runs get none: their
    training code is not the dashboard's to rerun)."""
    hparams = (run.meta or {}).get("hparams") or {}
    try:
        config_from_hparams(hparams)
    except FixError:
        return
    if st.button("Rerun with changes", key=key, icon=":material/replay:", type="tertiary",
                 help="Open this run's hyperparameters in the Train page, change some, and start a new run "
                      "linked to this one."):
        open_in_form(hparams, parent=str(run.path), parent_name=run.name)


# -- apply the advice ------------------------------------------------------------------------------
def applied_fix(finding, hparams: dict) -> AppliedFix | None:
    """The rerun config a finding implies for a run, or None if it implies no change here."""
    try:
        applied = apply_fix(hparams, finding, devices=manager().devices())
    except FixError:
        return None
    return applied if applied.changed else None


def start_rerun(applied: AppliedFix, *, parent: str, parent_name: str, why: str) -> JobInfo | None:
    """Start the fixed config as a new job linked to `parent`; show the error in place if it cannot start."""
    try:
        job = manager().start(applied.config, name=f"{parent_name} {applied.sentence}",
                              description=f"Rerun of {parent_name} with {applied.sentence}, as advised ({why}).",
                              parent=parent)
    except (ConfigError, JobError) as e:
        st.error(f"Not started: {e}", icon=":material/block:")
        st.toast(f"Not started: {e}", icon=":material/block:")  # outlives a live panel's next refresh
        return None
    st.session_state[PENDING_WATCH] = str(job.run_dir)
    st.session_state[FLASH] = ("success", f"Started **{job.name}** with {applied.sentence} (advice: {why}).")
    return job


def apply_button(finding, *, run_path: str, run_name: str, hparams: dict, key: str) -> None:
    """An "Apply: lr 0.5 -> 0.05" button: one click starts the rerun and opens the Train page."""
    applied = applied_fix(finding, hparams)
    if applied is None:
        return
    help_text = "Start a new run of this workload with exactly this change, linked to this run."
    if applied.skipped:
        help_text += " Left out: " + "; ".join(applied.skipped) + "."
    if st.button(f"Apply: {applied.sentence}", key=key, icon=":material/play_arrow:", help=help_text):
        if start_rerun(applied, parent=run_path, parent_name=run_name, why=finding.title):
            go_to_train()


def apply_actions(run) -> callable:
    """A CardAction for ui.advice.advice_cards that adds the Apply button to each card."""
    hparams = (run.meta or {}).get("hparams") or {}

    def action(finding, key: str) -> None:
        apply_button(finding, run_path=str(run.path), run_name=run.name, hparams=hparams, key=f"apply-{key}")

    return action


def advice_list(findings, *, run, key: str, error: str | None = None) -> None:
    """Compact advice cards for the Train page's monitor, each with its Apply button."""
    if error:
        st.warning(error, icon=":material/warning:")
    if not findings:
        if not error:
            st.caption(":material/check_circle: No problems found in the data recorded so far.")
        return
    hparams = (run.meta or {}).get("hparams") or {}
    for i, f in enumerate(findings):
        with st.container(border=True):
            card_head(f, compact=True)
            apply_button(f, run_path=str(run.path), run_name=run.name, hparams=hparams, key=f"{key}-apply-{i}")


# -- crashes and live jobs -------------------------------------------------------------------------
def crash_details(run_dir, *, status: str, error: str | None, lines: int = 25, expanded: bool = True) -> None:
    """For a failed or unfinished run: its error message and the last lines of its train.log."""
    if status not in ("failed", "killed"):
        return
    if error:
        st.error(error, icon=":material/error:")
    tail = log_tail(run_dir, lines)
    if tail:
        with st.expander(f"Last {min(lines, tail.count(chr(10)) + 1)} lines of train.log", expanded=expanded):
            st.code(tail, language="text")


def unfinished_details(run) -> None:
    """On a run's pages: why a run did not finish, and the last lines of its train.log."""
    status = run.status
    if status not in ("failed", "killed"):
        return
    if status == "killed":
        st.warning(run.meta.get("error") or "Not finished: the process recording this run is gone (it crashed or "
                   "was killed) and never closed the run; what it recorded until then is shown.",
                   icon=":material/warning:")
    tail = log_tail(run.path, 25)
    if tail:
        with st.expander("Last lines of train.log (the training process's output)", expanded=True):
            st.code(tail, language="text")


def live_jobs_panel(*, key: str = "live-jobs") -> None:
    """Live training jobs and the concurrency limit, with a link to watch each on the Train page."""
    mgr = manager()
    live = mgr.live_jobs()
    st.caption(f"Training jobs: {len(live)} of {mgr.max_jobs} running (limit from {mgr.cores} CPU cores; "
               "change it on the Train page).")
    for j in live:
        with st.container(horizontal=True, vertical_alignment="center"):
            state_badge(j.state)
            st.markdown(f"**{j.name}**" + (f" · step {j.step:,}/{j.total:,}" if j.step is not None and j.step >= 0
                                            and j.total else ""))
            if st.button("Watch", key=f"{key}-{j.run_dir.name}", icon=":material/visibility:", type="tertiary"):
                st.session_state[PENDING_WATCH] = str(j.run_dir)
                go_to_train()


def show_run(run_dir: str) -> None:
    """Open a run in the one-run pages (Overview first)."""
    st.session_state[CURRENT_RUN] = str(run_dir)
    page = navigation.page("overview")
    if page is not None:
        cache.discover.clear()  # a run that just started may not be in the cached scan yet
        st.switch_page(page.script)


def compare_with_parent(run_dir: str, parent: str) -> None:
    """Open the Compare page on a run and the run it was rerun from."""
    page = navigation.page("compare")
    if page is None:
        return
    cache.discover.clear()
    st.session_state[SELECTED_RUNS] = [str(run_dir), os.path.abspath(parent)]
    st.session_state[COMPARE_RUNS] = [str(run_dir), os.path.abspath(parent)]
    st.switch_page(page.script)
