"""Streamlit pieces of the training-jobs feature (the `jobs` package) that several pages use: the
shared job manager, "Rerun with changes", the one-click "Apply: <change>" rerun of an advice card,
a crashed job's log, and the list of live jobs."""

from __future__ import annotations

import math
import os
import time

import streamlit as st

from jobs import AppliedFix, FixError, JobError, JobInfo, JobManager, apply_fix, config_from_hparams
from playground.config import ConfigError
from runstore import log_tail, read_meta_or_none, schema

from .. import navigation
from ..format import md_escape
from ..status import look as status_look
from . import cache
from .advice import card_head
from .context import COMPARE_RUNS, CURRENT_RUN, SELECTED_RUNS, get_context
from .runpage import RERUN_REQUEST

TRAIN_PAGE = "train"
TRAIN_SCRIPT = "dashboard/pages/train.py"
# Session-state keys shared with the Train page.
PREFILL = "_train_prefill"        # {"hparams", "parent", "parent_name", "note"}: load into the form
PENDING_WATCH = "_train_watch_pending"  # run dir the Train page should show next
FLASH = "_train_flash"            # (kind, message) shown once on the Train page


@st.cache_resource(show_spinner=False, max_entries=16)
def _manager(runs_dir: str) -> JobManager:
    # One limit for training jobs and this machine's sweep workers (the Sweep page starts those
    # through the same manager, JobManager.start_others).
    return JobManager(runs_dir, other_pids=lambda: sweep_worker_pids(runs_dir))


def sweep_worker_pids(runs_dir: str) -> set[int]:
    """The sweep workers alive on this machine in the runs folder's study storage (none without
    the optional sweep extra), read at most every REFRESH_WORKERS_S per folder: the Train page asks
    on every refresh, and opening the study storage is not free."""
    now = time.monotonic()
    got = _worker_pids.get(runs_dir)
    if got is not None and now - got[0] < REFRESH_WORKERS_S:
        return got[1]
    try:
        from sweep.storage import default_url
        from sweep.worker import local_worker_pids
    except ImportError:  # optuna not installed: no sweeps
        pids: set[int] = set()
    else:
        pids = local_worker_pids(default_url(runs_dir))  # the storage the Sweep page uses
    _worker_pids[runs_dir] = (now, pids)
    return pids


REFRESH_WORKERS_S = 2.0
_worker_pids: dict[str, tuple[float, set[int]]] = {}


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
    """A job's state as the run pages show a run's status (dashboard.status)."""
    look = status_look(state)
    st.badge(look.label, color=look.color, help=look.help or None,
             icon=":material/fiber_manual_record:" if state == schema.RUNNING else None)


def job_label(job: JobInfo) -> str:
    """E.g. "digits lr 0.01 · started 14:02:31" (stable while the job runs)."""
    return f"{job.name} · started {time.strftime('%H:%M:%S', time.localtime(job.started))}"


# -- rerun with changes ----------------------------------------------------------------------------
def prefill_form(hparams: dict, *, parent: str, parent_name: str, note: str | None = None) -> bool:
    """Queue a run's hyperparameters for the Train page's form; False (with the reason shown) if
    they are not a playground config."""
    try:
        config, notes = config_from_hparams(hparams, devices=manager().devices())
    except FixError as e:
        st.error(md_escape(e), icon=":material/block:")
        return False
    st.session_state[PREFILL] = {"hparams": config.to_dict(), "parent": parent, "parent_name": parent_name,
                                 "parent_hparams": dict(hparams), "note": " ".join(([note] if note else []) + notes)}
    return True


def open_in_form(hparams: dict, *, parent: str, parent_name: str, note: str | None = None) -> None:
    """Load a run's hyperparameters into the Train page's form and go there."""
    if prefill_form(hparams, parent=parent, parent_name=parent_name, note=note):
        go_to_train()


def take_rerun_request() -> None:
    """Prefill the form with the run a run page's "Rerun with changes" handed over (if any)."""
    request = st.session_state.pop(RERUN_REQUEST, None)
    if not request:
        return
    meta = read_meta_or_none(request["path"]) or {}
    prefill_form(meta.get("hparams") or {}, parent=request["path"], parent_name=request.get("name") or "")


def go_to_train() -> None:
    """Switch to the Train page (or redraw it when already there)."""
    if navigation.page(TRAIN_PAGE) is None:
        st.rerun()
    st.switch_page(train_script())


# -- apply the advice ------------------------------------------------------------------------------
def applied_fix(finding, hparams: dict) -> AppliedFix | None:
    """The rerun config of a finding's fix for a run, or None if its fix changes nothing here."""
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
        st.error(f"Not started: {md_escape(e)}", icon=":material/block:")
        st.toast(f"Not started: {md_escape(e)}", icon=":material/block:")  # outlives a live panel's next refresh
        return None
    st.session_state[PENDING_WATCH] = str(job.run_dir)
    st.session_state[FLASH] = ("success", f"Started **{md_escape(job.name)}** with `{applied.sentence}` "
                                          f"(advice: {md_escape(why)}).")
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
        st.warning(md_escape(error), icon=":material/warning:")
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
    """For a failed or unfinished job: its error message and the last lines of its log."""
    if status not in (schema.FAILED, schema.KILLED):
        return
    if error:
        st.error(md_escape(error), icon=":material/error:")
    tail = log_tail(run_dir, lines)
    if tail:
        with st.expander(f"Last {min(lines, tail.count(chr(10)) + 1)} lines of {schema.LOG_FILE}", expanded=expanded):
            st.code(tail, language="text")


def live_jobs_panel(*, key: str = "live-jobs") -> None:
    """Live training jobs and the concurrency limit, with a link to watch each on the Train page."""
    mgr = manager()
    live = mgr.live_jobs()
    slots = mgr.slots()
    workers = f", plus {slots.others_words} sharing the limit" if slots.others else ""
    st.caption(f"Training jobs: {len(live)} of {mgr.max_jobs} running{workers} (limit from {mgr.cores} CPU cores; "
               "change it on the Train page).")
    for j in live:
        with st.container(horizontal=True, vertical_alignment="center"):
            state_badge(j.state)
            st.markdown(f"**{md_escape(j.name)}**" + (f" · step {j.step:,}/{j.total:,}" if j.step is not None and j.step >= 0
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
