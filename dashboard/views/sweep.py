"""The Sweep page: start an Optuna sweep over the playground's config (ranges, budget, workers within
the job limit, pruner), watch its trials live (status, value, why each pruned trial was pruned,
parallel coordinates, objective vs learning rate), open any trial in the other pages, stop the
sweep, narrow it around the best trials, and rerun the best trial with more epochs.

The page wraps the `sweep` package (the CLI `python -m playground sweep` does the same things):
studies live in <runs>/sweeps.db, trials record into <runs>/<study>/trial-NNNN and train in
worker processes, so closing the page or the app does not stop a sweep."""

from __future__ import annotations

import os
import time

import pandas as pd
import streamlit as st

from jobs import JobError, cpu_cores
from playground.config import WORKLOADS, Config, ConfigError, defaults_for

from .. import navigation
from ..figures.base import NoDataError
from ..format import MISSING, TABLE_FORMAT, md_escape, number
from ..train_form import model_options
from ..ui import cache, urlstate
from ..ui.context import get_context
from ..ui.runpage import chart
from ..ui.training import FLASH, PENDING_WATCH, go_to_train, manager, show_run

WATCH = "sweep_watch"            # the study the monitor shows
PENDING = "_sweep_watch_pending"  # a study just started: show it next
NOTE = "_sweep_flash"            # (kind, text) shown once
TRIAL = "sweep_trial"            # the trial picked in the detail panel
STATE_COLORS = {"running": "green", "complete": "blue", "pruned": "orange", "failed": "red", "stopped": "gray",
                "waiting": "violet"}
INSTALL = "pip install 'traindiag[sweep]'"


def _code(text) -> str:
    return "`" + str(text).replace("`", "'") + "`"


def _sweep_module():
    """The sweep package, or None (with a note on the page) when Optuna is not installed."""
    try:
        import sweep  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name != "optuna":
            raise
        st.info(f"Sweeps need Optuna, which is not installed here: `{INSTALL}`.", icon=":material/info:")
        return None
    return sweep


def _runs_dir() -> str:
    return os.path.abspath(get_context().settings.user_dir)


# -- workers and the job limit ---------------------------------------------------------------------
def _exists(url: str) -> bool:
    """Whether the runs folder's study database exists (looking must not create it)."""
    return os.path.exists(url[len("sqlite:///"):])


def _free_slots(url: str) -> tuple[int, str]:
    """How many more workers may start within the Train page's job limit (training jobs and this
    machine's sweep workers share it: jobs.JobManager.slots), and the sentence why."""
    slots = manager().slots()
    return slots.free, (f"{slots.free} of {slots.limit} slots free: {slots.text()} (the limit is the Train "
                        "page's, shared by training jobs and sweep workers).")


def _spawn(url: str, name: str, n: int) -> None:
    """Start `n` workers within the shared limit (JobLimitError when the slots are taken meanwhile)."""
    from sweep.worker import spawn

    mgr = manager()
    mgr.start_others(n, lambda: spawn(url, name, _runs_dir(), n, threads=max(1, cpu_cores() // mgr.max_jobs)))


# -- starting --------------------------------------------------------------------------------------
def _start_form(url: str) -> None:
    from sweep.space import SpaceError, default_space, parse_space, space_text
    from sweep.spec import OBJECTIVE_WORDS, PRUNER_WORDS, PRUNERS, SAMPLERS, SpecError, SweepSpec, check_study_name
    from sweep.study import StudyError, create_study

    st.markdown("#### Start a sweep")
    st.session_state.setdefault("sweep_name", f"sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    st.text_input("Study name", key="sweep_name", help="Also the folder its trials are recorded in: letters, digits, "
                  "'.', '_' and '-'.")
    cols = st.columns(3)
    workload = cols[0].selectbox("Workload", WORKLOADS, key="sweep_workload")
    models = list(model_options(workload))
    if st.session_state.get("sweep_model") not in models:
        st.session_state["sweep_model"] = models[0]
    model = cols[1].selectbox("Model", models, key="sweep_model")
    epochs = cols[2].number_input("Epochs per trial", min_value=1, max_value=10_000, value=10, step=1, key="sweep_epochs")
    try:
        base = Config(**{**defaults_for(workload), "model": model, "epochs": int(epochs)}).validate(check_device=False)
        default = space_text(default_space(base))
    except (ConfigError, SpaceError) as e:
        st.error(md_escape(e))
        return
    space_key = f"sweep_space_{workload}_{model}"
    st.session_state.setdefault(space_key, default)
    text = st.text_area("Search space, one field per line", key=space_key, height=190,
                        help="FIELD=LOW:HIGH for a range (add :log or :lin; lr, weight_decay, l1, width, batch_size "
                             "are log-scaled by default), FIELD=A,B,C for choices. The same syntax as the command "
                             "line's --param. Other fields keep the playground defaults.")
    cols = st.columns(2)
    n_trials = cols[0].number_input("Trials", min_value=1, max_value=10_000, value=20, step=1, key="sweep_trials",
                                    help="The budget, over all workers.")
    free, why = _free_slots(url)
    workers = cols[1].number_input("Workers", min_value=1, max_value=max(1, free), value=min(max(1, free), 1),
                                   step=1, key="sweep_workers", help=why)
    pruner = st.selectbox("Pruner", PRUNERS, key="sweep_pruner", format_func=lambda k: PRUNER_WORDS[k],
                          help="diagnosis: prune a trial when a critical finding (NaN loss, lr far too high or "
                               "low, dead or saturated units, vanishing or exploding gradients) makes it hopeless; "
                               "conservative by default (see docs/sweeps.md).")
    cols = st.columns([0.46, 0.3, 0.24])
    objective = cols[0].selectbox("Objective", list(OBJECTIVE_WORDS), key="sweep_objective",
                                  format_func=lambda k: OBJECTIVE_WORDS[k])
    sampler = cols[1].selectbox("Sampler", SAMPLERS, key="sweep_sampler",
                                help="random: random search (trial N gets the same config for the same seed); "
                                     "tpe: Optuna's TPE.")
    seed = cols[2].number_input("Seed", min_value=0, max_value=2 ** 31 - 1, value=0, step=1, key="sweep_seed")
    st.caption(why)
    if not st.button("Start sweep", type="primary", icon=":material/play_arrow:", key="sweep_start",
                     disabled=free < 1):
        return
    try:
        name = check_study_name(st.session_state.get("sweep_name", "").strip())
        spec = SweepSpec(base=base, space=parse_space(text), n_trials=int(n_trials), objective=objective,
                         pruner=pruner, sampler=sampler, seed=int(seed)).validate()
        create_study(url, name, spec)
        _spawn(url, name, int(workers))
    except (SpaceError, SpecError, StudyError, JobError, OSError) as e:
        st.error(f"Not started. {md_escape(e)}", icon=":material/error:")
        return
    st.session_state[PENDING] = name
    st.session_state[NOTE] = ("success", f"Started sweep **{md_escape(name)}**: {int(n_trials)} trials, "
                                         f"{int(workers)} worker{'s' if int(workers) > 1 else ''}.")
    st.session_state.pop("sweep_name", None)  # a fresh default name for the next sweep
    cache.discover.clear()
    st.rerun()


# -- the monitor -----------------------------------------------------------------------------------
def _state_badges(p, n_workers: int) -> None:
    with st.container(horizontal=True, vertical_alignment="center"):
        st.badge(f"{p.finished} of {p.n_trials} trials", color="blue")
        for state in ("running", "pruned", "failed", "stopped"):
            if p.counts.get(state):
                st.badge(f"{p.counts[state]} {state}", color=STATE_COLORS[state])
        st.badge(f"{n_workers} worker{'s' if n_workers != 1 else ''} here", color="green" if n_workers else "gray")
        if p.stop_requested:
            st.badge("sweep stopped", color="gray", icon=":material/stop_circle:")


def _table(rows, spec) -> None:
    from sweep.study import best_row

    best = best_row(rows, spec.maximize)
    data = []
    for r in rows:
        # A trial that did not complete shows the last value it reported (at the step shown), not
        # an empty cell; "why" says where and why it stopped.
        rec = {"#": r.number, "state": r.state, spec.objective: r.value if r.value is not None else r.last_value,
               "step": f"{r.last_step:,}/{r.total_steps:,}" if r.state != "complete" and r.last_step
               is not None and r.total_steps else (f"{r.total_steps:,}" if r.total_steps else MISSING),
               "why": r.reason or ("best so far" if best is not None and r.number == best.number else ""),
               "seconds": round(r.duration_s, 1) if r.duration_s is not None else None}
        for p in spec.space:
            v = r.params.get(p.name)
            rec[p.name] = ("true" if v else "false") if isinstance(v, bool) else v
        data.append(rec)
    df = pd.DataFrame(data)
    config = {spec.objective: st.column_config.NumberColumn(spec.objective, format=TABLE_FORMAT,
                                                             help="a completed trial's result; a pruned, stopped "
                                                                  "or running trial's last reported value, at the "
                                                                  "step shown"),
              "#": st.column_config.NumberColumn("#", pinned=True),
              "why": st.column_config.TextColumn("why", width="large",
                                                 help="why a trial was pruned or failed: the finding that pruned it")}
    for p in spec.space:
        if p.kind == "float":
            config[p.name] = st.column_config.NumberColumn(p.name, format=TABLE_FORMAT)
    st.dataframe(df, hide_index=True, column_config=config, key="sweep_table",
                 column_order=["#", "state", spec.objective, "step", "why", *[p.name for p in spec.space], "seconds"])


def _charts(rows, spec) -> None:
    from ..figures.sweep import objective_scatter, parallel_coordinates

    numeric = [p for p in spec.space if p.kind != "categorical"]
    x = next((p for p in spec.space if p.name == "lr"), numeric[0] if numeric else None)
    left, right = st.columns(2)
    with left:
        if x is None:
            st.caption("No numeric field is searched: nothing to plot the objective against.")
        else:
            try:
                chart(objective_scatter(rows, x.name, objective=spec.objective, log_x=x.log), key="sweep-scatter")
            except NoDataError:
                st.caption(f"The {spec.objective} vs {x.name} chart appears with the first evaluations.")
    with right:
        try:
            chart(parallel_coordinates(rows, spec.space, objective=spec.objective, maximize=spec.maximize),
                  key="sweep-parcoords")
        except NoDataError:
            st.caption("Parallel coordinates appear once a trial has completed.")


def _trial_panel(rows, spec) -> None:
    """One trial: why it ended as it did (the finding that pruned it), and links into the run pages."""
    ctx = get_context()
    if not rows:
        return
    by_number = {r.number: r for r in rows}
    if st.session_state.get(TRIAL) not in by_number:
        pruned = [r for r in rows if r.state == "pruned"]
        st.session_state[TRIAL] = (pruned[-1] if pruned else rows[-1]).number
    number_ = st.selectbox("Trial", list(by_number), key=TRIAL,
                           format_func=lambda n: f"#{n} · {by_number[n].state}",
                           help="Pick a trial to see why it ended as it did and to open its run.")
    r = by_number[number_]
    params = ", ".join(f"{k} {('true' if v else 'false') if isinstance(v, bool) else number(v) if isinstance(v, float) else v}"
                       for k, v in r.params.items())
    st.caption(md_escape(params))
    reason = r.pruned or {}
    if r.state == "pruned" and reason.get("by") == "diagnosis":
        with st.container(border=True):
            st.markdown(f"**Pruned at step {int(reason.get('step', 0)):,}: {md_escape(reason.get('title', ''))}** "
                        f"({_code(reason.get('rule', ''))}, {md_escape(reason.get('severity', ''))})")
            st.markdown(md_escape(reason.get("message", "")))
            if reason.get("advice"):
                st.markdown(f"*Advice:* {md_escape(reason['advice'])}")
    elif r.reason:
        (st.warning if r.state in ("pruned", "failed") else st.info)(md_escape(r.reason))
    elif r.value is not None:
        st.caption(f"Completed: {spec.objective} {number(r.value)}.")
    run_dir = r.run_dir
    here = bool(run_dir) and os.path.isdir(run_dir)
    if not here:
        st.caption("Its run folder is not on this machine" + (f" (trained on {md_escape(r.host)})." if r.host else "."))
        return
    with st.container(horizontal=True):
        if st.button("Open in Overview", key="sweep-open", icon=":material/monitoring:"):
            show_run(run_dir)
        page = navigation.page(reason.get("chart", "")) if reason.get("by") == "diagnosis" else None
        if page is not None and page.key != "overview" and st.button(
                f"Open in {page.title}", key="sweep-open-chart", icon=page.icon):
            st.session_state["current_run"] = run_dir
            cache.discover.clear()
            st.switch_page(page.script)
    if ctx.ref(run_dir) is None:
        st.caption(f"Run folder: {_code(run_dir)}")


def _actions(url: str, study, spec, rows, p, alive: int) -> None:
    from sweep.study import StudyError, clear_stop, narrowed, request_stop, rerun_best
    from sweep.study import create_study as create
    from sweep.study import budget_left

    with st.container(horizontal=True):
        if alive or (p.running and not p.stop_requested):
            if st.button("Stop sweep", key="sweep-stop", icon=":material/stop_circle:", type="primary",
                         disabled=p.stop_requested,
                         help="Every worker (on any machine) stops: running trials end at their next step."):
                request_stop(study)
                st.rerun()
        elif budget_left(study, spec) > 0:
            free, why = _free_slots(url)
            if st.button("Resume", key="sweep-resume", icon=":material/play_arrow:", disabled=free < 1,
                         help=f"Start {min(free, 1) or 1} worker on the trials left. {why}"):
                clear_stop(study)  # before the worker starts, or it would stop at once
                try:
                    _spawn(url, study.study_name, 1)
                except (JobError, OSError) as e:
                    st.error(f"Not resumed. {md_escape(e)}", icon=":material/error:")
                else:
                    st.rerun()
            if free < 1:
                st.caption(why)
    if p.best is None:
        return
    with st.expander("Rerun the best trial with more epochs", icon=":material/replay:"):
        epochs = st.number_input("Epochs", min_value=1, max_value=10_000, step=1,
                                 value=min(10_000, 2 * spec.base.epochs), key="sweep_rerun_epochs")
        st.caption(f"Trial {p.best.number} ({spec.objective} {number(p.best.value)}) trained {spec.base.epochs} epochs. "
                   "The rerun is a Train-page job linked to the trial's run.")
        if st.button("Start the rerun", key="sweep-rerun", icon=":material/play_arrow:"):
            try:
                config, best = rerun_best(study, spec, epochs=int(epochs))
                job = manager().start(config, name=f"{study.study_name} best #{best.number} x{int(epochs)} epochs",
                                      description=f"Best trial {best.number} of sweep {study.study_name} rerun with "
                                                  f"{int(epochs)} epochs.", parent=best.run_dir)
            except (StudyError, ConfigError, JobError) as e:
                st.error(f"Not started. {md_escape(e)}", icon=":material/error:")
            else:
                st.session_state[PENDING_WATCH] = str(job.run_dir)
                st.session_state[FLASH] = ("success", f"Started **{md_escape(job.name)}**.")
                go_to_train()
    with st.expander("Coarse to fine: a new study around the best trials", icon=":material/zoom_in:"):
        try:
            fine = narrowed(study, spec, name=study.study_name)
        except Exception as e:  # noqa: BLE001 - a SpaceError or SpecError in the user's terms
            st.caption(md_escape(e))
            return
        for line in fine.notes:
            st.markdown(f"- {md_escape(line)}")
        name = f"{study.study_name}-fine"
        st.caption(f"A new study {_code(name)} with the same budget ({spec.n_trials} trials) and base config.")
        if st.button("Start the narrowed sweep", key="sweep-narrow", icon=":material/zoom_in:"):
            free, why = _free_slots(url)
            try:
                if free < 1:
                    raise StudyError(why)
                create(url, name, fine)
                _spawn(url, name, 1)
            except (StudyError, JobError, OSError) as e:
                st.error(f"Not started. {md_escape(e)}", icon=":material/error:")
            else:
                st.session_state[PENDING] = name
                st.rerun()


def _monitor(url: str) -> None:
    from sweep.study import StudyError, load, progress, study_names, trial_rows, workers
    from sweep.worker import reap

    reap()
    names = study_names(url) if _exists(url) else []
    st.markdown("#### Sweeps")
    if not names:
        st.info("No sweeps yet. Set the search space on the left and press **Start sweep**, or run "
                "`python -m playground sweep --study NAME` in this folder.", icon=":material/info:")
        return
    pending = st.session_state.pop(PENDING, None)
    linked = (urlstate.incoming("study") or [None])[0]  # ?study=<name>: a link or a reload
    if pending in names:
        st.session_state[WATCH] = pending
    elif linked in names:
        st.session_state[WATCH] = linked
    if st.session_state.get(WATCH) not in names:
        st.session_state[WATCH] = names[0]
    name = st.selectbox("Study", names, key=WATCH, help="Studies in this runs folder's sweeps.db, newest first.")
    urlstate.write("study", name)
    try:
        study, spec = load(url, name)
    except StudyError as e:
        st.warning(md_escape(e))
        return
    attrs = study.user_attrs
    rows = trial_rows(study)
    p = progress(study, spec, rows, attrs)
    alive = sum(1 for w in workers(study, attrs) if w.alive)
    _state_badges(p, alive)
    best = (f"Best {spec.objective}: **{number(p.best.value)}** (trial {p.best.number})." if p.best is not None
            else "No trial has completed yet.")
    extra = f" Narrowed from {_code(spec.parent)}." if spec.parent else ""
    st.markdown(f"{best} Pruner: {md_escape(spec.pruner)}, sampler: {md_escape(spec.sampler)}, "
                f"{spec.base.workload}/{spec.base.model}, {spec.base.epochs} epochs per trial.{extra}")
    _actions(url, study, spec, rows, p, alive)
    if not rows:
        st.caption("Waiting for the first trial (the workers are importing PyTorch and loading the data).")
        return
    _table(rows, spec)
    _charts(rows, spec)
    _trial_panel(rows, spec)
    # The timer runs while any worker of this machine runs (render: _is_live), whichever study is
    # watched; only when none is left is the page redrawn once without it (comparing with the
    # watched study's workers instead reran forever while another study's worker ran).
    if st.session_state.get("_sweep_live") and not _is_live(url):
        st.session_state["_sweep_live"] = False
        st.rerun()  # everything ended: redraw once without the timer


def render() -> None:
    """The Sweep page."""
    ctx = get_context()
    st.markdown("### Sweep")
    st.caption("Search hyperparameters with Optuna. Trials the diagnostics find hopeless (NaN loss, a learning rate "
               "far too high or far too low, dead or saturated units, vanishing or exploding gradients) are pruned "
               "early, with the finding as the reason; every trial is a recorded run you can open in the other "
               "pages.")
    if _sweep_module() is None:
        return
    from sweep.storage import StorageError, default_url

    url = default_url(_runs_dir())
    note = st.session_state.pop(NOTE, None)
    if note:
        st.success(note[1], icon=":material/rocket_launch:")
    left, right = st.columns([0.38, 0.62], gap="large")
    try:
        with left:
            _start_form(url)
        with right:
            live = _is_live(url)
            st.session_state["_sweep_live"] = live
            interval = ctx.settings.refresh_s if live else None
            st.fragment(lambda: _monitor(url), run_every=interval, key="sweep-monitor")()
    except StorageError as e:
        st.error(md_escape(e), icon=":material/error:")


def _is_live(url: str) -> bool:
    """Whether a worker of this machine is running (the monitor then refreshes itself)."""
    from sweep.worker import local_worker_pids, reap

    return reap() > 0 or bool(local_worker_pids(url))

