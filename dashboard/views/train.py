"""The Train page: every playground hyperparameter as a widget, Start, and a live monitor of the
training jobs (step counter, progress bar with ETA, loss chart, advice, Stop). "Rerun with changes"
fills the form from any run and links the new run to it."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from jobs import MAX_JOBS_LIMIT, STARTING, JobError, JobInfo, JobManager, changes_between
from playground.config import WORKLOADS, Config, ConfigError
from runstore import has_data, log_tail, schema, tags

from ..colors import RUN_PALETTE
from ..discovery import RUN, RunRef
from ..figures.base import Curve, NoDataError, lines_figure
from ..format import md_escape
from ..train_form import (INTEGER, LOG_SLIDER, SELECT, TOGGLE, GROUP_TITLES, Widget, coerce, device_options,
                          fmt_stop, form_widgets, log_grid, max_depth, model_options, snap, steps_summary)
from ..ui import cache
from ..ui.context import get_context
from ..ui.runpage import chart
from ..ui.training import (FLASH, PENDING_WATCH, PREFILL, advice_list, clock, crash_details, job_label, manager,
                           open_in_form, show_run, state_badge, compare_with_parent, take_rerun_request)

WATCH = "train_watch"          # the job the monitor shows
PARENT = "train_parent"        # {"path", "name", "hparams"} of the run being rerun
NOTE = "train_note"            # what loading the parent adjusted (e.g. cuda -> auto)
NAME, DESCRIPTION = "train_name", "train_description"
HEALTHY = ("the training loss falls steadily, the validation loss follows it, and no advice card appears.")


def _code(text) -> str:
    """Run-derived text (a folder name) as inline code: a backtick is the only way out of one."""
    return "`" + str(text).replace("`", "'") + "`"


def _key(name: str) -> str:
    return f"tf_{name}"


def _log_key(name: str) -> str:
    return f"tf_{name}__log"


# -- form state ------------------------------------------------------------------------------------
def _load_values(values: dict) -> None:
    """Put config values into the form's widgets (before they are drawn)."""
    for group in form_widgets().values():
        for w in group:
            if w.name in values:
                st.session_state[_key(w.name)] = values[w.name]
                if w.kind == LOG_SLIDER:
                    st.session_state[_log_key(w.name)] = snap(values[w.name], log_grid(w.spec))


def _init_form() -> None:
    take_rerun_request()
    prefill = st.session_state.pop(PREFILL, None)
    if prefill:
        _load_values(prefill["hparams"])
        st.session_state[PARENT] = {"path": prefill["parent"], "name": prefill["parent_name"],
                                    "hparams": prefill.get("parent_hparams") or prefill["hparams"]}
        st.session_state[NOTE] = prefill.get("note") or ""
        st.session_state[NAME] = f"{prefill['parent_name']} rerun"
        st.session_state[DESCRIPTION] = ""
        return
    defaults = Config().to_dict()
    missing = {k: v for k, v in defaults.items() if _key(k) not in st.session_state}
    if missing:
        _load_values(missing)
    st.session_state.setdefault(NAME, "")
    st.session_state.setdefault(DESCRIPTION, "")


def _from_slider(name: str) -> None:
    st.session_state[_key(name)] = st.session_state[_log_key(name)]


def _from_number(name: str, grid: list[float]) -> None:
    st.session_state[_log_key(name)] = snap(st.session_state.get(_key(name)), grid)


def _field(w: Widget, *, options: list | None = None):
    """Draw one field's widget and return its value."""
    k = _key(w.name)
    if w.kind == SELECT:
        opts = list(options if options is not None else w.spec.choices)
        if st.session_state.get(k) not in opts:
            st.session_state[k] = opts[0]
        return st.selectbox(w.label, opts, key=k, help=w.help, persist_state="session")
    if w.kind == TOGGLE:
        return st.toggle(w.label, key=k, help=w.help, persist_state="session")
    if w.kind == LOG_SLIDER:
        grid = log_grid(w.spec)
        lk = _log_key(w.name)
        if st.session_state.get(lk) not in grid:
            st.session_state[lk] = snap(st.session_state.get(k), grid)
        left, right = st.columns([0.66, 0.34], vertical_alignment="bottom")
        with left:
            st.select_slider(f"{w.label} (log scale)", options=grid, key=lk, format_func=fmt_stop, help=w.help,
                             on_change=_from_slider, args=(w.name,), persist_state="session")
        with right:
            return st.number_input(f"{w.label}, exact", key=k, step=min(g for g in grid if g > 0), format="%g",
                                   on_change=_from_number, args=(w.name, grid), persist_state="session",
                                   help="Type any value, e.g. 3e-4; the slider follows.")
    value = st.session_state.get(k)
    if w.kind == INTEGER:
        if isinstance(value, float) and value.is_integer():
            st.session_state[k] = int(value)
        return st.number_input(w.label, key=k, step=1, format="%d", help=w.help, persist_state="session")
    if isinstance(value, int) and not isinstance(value, bool):
        st.session_state[k] = float(value)
    return st.number_input(w.label, key=k, step=float(w.step or 0.1), format="%g", help=w.help,
                           persist_state="session")


def _form(devices: list[str] | None) -> dict:
    """All config fields, one tab per group; returns {field: value} as the widgets hold them."""
    groups = form_widgets()
    values: dict = {}
    tabs = st.tabs([GROUP_TITLES.get(g, g) for g in groups])
    for tab, (group, widgets) in zip(tabs, groups.items()):
        with tab:
            plain = [w for w in widgets if w.kind != LOG_SLIDER]
            for w in (w for w in widgets if w.kind == LOG_SLIDER):
                values[w.name] = coerce(w, _field(w))
            cols = st.columns(2)
            for i, w in enumerate(plain):
                with cols[i % 2]:
                    options = None
                    if w.name == "model":
                        options = list(model_options(st.session_state.get(_key("workload"))))
                    elif w.name == "device":
                        options = device_options(devices)
                    values[w.name] = coerce(w, _field(w, options=options))
                    if w.name == "depth":
                        st.caption(f"At most {max_depth(values.get('model', st.session_state.get(_key('model'))))} "
                                   f"for {st.session_state.get(_key('model'))}.")
                    if w.name == "device" and devices is None:
                        st.caption("Checking for CUDA / MPS devices…")
    return values


# -- starting --------------------------------------------------------------------------------------
def _parent_banner(config: Config | None) -> None:
    parent = st.session_state.get(PARENT)
    if not parent:
        return
    with st.container(border=True):
        text = f":material/replay: Rerun of **{md_escape(parent['name'])}**."
        if config is not None:
            diff = changes_between(parent["hparams"], config)
            text += (" Changed: " + ", ".join(f"`{c.text()}`" for c in diff) + ".") if diff else \
                " No changes yet: edit the fields below."
        if st.session_state.get(NOTE):
            text += f"\n\n{md_escape(st.session_state[NOTE])}"
        st.markdown(text)
        if st.button("Unlink (start a fresh run instead)", key="train_unlink", type="tertiary",
                     icon=":material/link_off:"):
            st.session_state.pop(PARENT, None)
            st.session_state.pop(NOTE, None)
            st.rerun()


def _from_existing_run(ctx) -> None:
    """Pick any playground run (sample, finished or live) and load its hyperparameters."""
    choices = {}
    for ref in ctx.refs:
        if ref.kind != RUN:
            continue
        info = cache.info(ref)  # run.json's summary, cached: cheap for every run listed
        if info.problem is None and info.hparams.get("workload") in WORKLOADS:
            choices[ref.path] = (info.name, ref)
    with st.expander("Start from an existing run", icon=":material/replay:"):
        if not choices:
            st.caption("No playground runs found yet.")
            return
        paths = list(choices)
        if st.session_state.get("train_from_run") not in paths:
            st.session_state["train_from_run"] = ctx.current.path if ctx.current and ctx.current.path in choices \
                else paths[0]
        path = st.selectbox("Run", paths, key="train_from_run", format_func=lambda p: choices[p][0],
                            help="Its hyperparameters fill the form; the new run records it as its parent.")
        if st.button("Load its hyperparameters", key="train_load", icon=":material/input:"):
            name, ref = choices[path]
            meta = cache.meta(ref)
            open_in_form((meta.get("hparams") or {}) if isinstance(meta, dict) else {}, parent=path, parent_name=name)


def _start(mgr: JobManager, config: Config | None, error: str | None) -> None:
    started = st.button("Start training", type="primary", icon=":material/play_arrow:", key="train_start")
    if error:
        st.error(("Not started. " if started else "") + error, icon=":material/error:")
        return
    if not started:
        st.caption(steps_summary(config) + f" on {config.device}.")
        slots = mgr.slots()
        if slots.free < 1:
            st.warning(f"No slot free: {slots.text()}. Stop a job or sweep worker, or raise the limit.",
                       icon=":material/hourglass_top:")
        return
    parent = st.session_state.get(PARENT)
    description = st.session_state.get(DESCRIPTION, "").strip()
    if parent and not description:
        diff = changes_between(parent["hparams"], config)
        description = f"Rerun of {parent['name']}" + (f" with {', '.join(c.text() for c in diff)}." if diff else ".")
    try:
        job = mgr.start(config, name=st.session_state.get(NAME, ""), description=description,
                        parent=parent["path"] if parent else None)
    except (ConfigError, JobError) as e:
        st.error(f"Not started. {e}", icon=":material/error:")
        return
    st.session_state[PENDING_WATCH] = str(job.run_dir)
    st.session_state[FLASH] = ("success", f"Started **{md_escape(job.name)}** in {_code(job.run_dir)}.")
    cache.discover.clear()  # so the sidebar and the Runs page list it as soon as it records
    st.rerun()  # redraw the whole page: the monitor's refresh timer starts with the job


# -- the monitor -----------------------------------------------------------------------------------
def _limit_control(mgr: JobManager) -> None:
    def _set_limit():
        mgr.max_jobs = int(st.session_state["train_limit"])

    st.session_state["train_limit"] = mgr.max_jobs  # another tab may have changed it
    with st.popover(f"Limit: {mgr.max_jobs} at once", icon=":material/tune:"):
        st.number_input("Training jobs at the same time", min_value=1, max_value=MAX_JOBS_LIMIT, step=1,
                        key="train_limit", on_change=_set_limit,
                        help=f"Default: half of the {mgr.cores} CPU cores, at least 1. Each job's PyTorch "
                             "uses several threads, so more jobs than that slow each other down. Sweep "
                             "workers started on this machine (Sweep page) count against the same limit.")


def _loss_chart(run, color: str | None) -> None:
    curves = []
    for split, dash in (("train", None), ("val", "dash")):
        tag = tags.TRAIN_LOSS if split == "train" else tags.split_metric(split, "loss")
        if tag in run.scalar_tags():
            curves.append(Curve(f"{split} loss", run.series(tag), color=color, dash=dash,
                                width=1.8 if split == "train" else 2.6))
    try:
        positive = all((c.series.dropna() > 0).all() for c in curves)
        fig = lines_figure(curves, title="Loss", y_title="loss", log_y=positive, smoothing=0.6, mark_nonfinite=True,
                           height=320)
    except NoDataError:
        st.caption("The loss chart appears with the first recorded steps.")
        return
    chart(fig, key="train-loss")


def _last(run, tag: str) -> float | None:
    s = run.series(tag).dropna() if tag in run.scalar_tags() else None
    return float(s.iloc[-1]) if s is not None and len(s) else None


def _job_panel(mgr: JobManager, job: JobInfo) -> None:
    ctx = get_context()
    with st.container(horizontal=True, vertical_alignment="center"):
        st.markdown(f"##### {md_escape(job.name)}")
        state_badge(job.state)
    bits = [] if job.name == job.run_dir.name else [f"`{job.run_dir.name}`"]
    if job.parent:
        bits.append(f"rerun of {_code(Path(job.parent).name)}")
    if job.description:
        bits.append(md_escape(job.description))
    st.caption(" · ".join(bits))

    has_run = has_data(job.run_dir)
    handle = cache.handle(RunRef(str(job.run_dir), RUN, str(mgr.runs_dir)), min_interval=0.5) if has_run else None
    run = handle.run if handle is not None and handle.error is None else None

    step = max(job.step or 0, 0)
    total = job.total or 0
    cols = st.columns(4)
    cols[0].metric(f"Step of {total:,}" if total else "Step", f"{step:,}")
    train_loss = _last(run, tags.TRAIN_LOSS) if run is not None else None
    val_loss = _last(run, tags.split_metric("val", "loss")) if run is not None else None
    cols[1].metric("Train loss", f"{train_loss:.4g}" if train_loss is not None else "—")
    cols[2].metric("Val loss", f"{val_loss:.4g}" if val_loss is not None else "—")
    if job.live:
        cols[3].metric("ETA", clock(job.eta_s()))
    else:
        end = (run.meta.get("ended") if run is not None else None) or job.last_flush
        cols[3].metric("Took", clock((end - job.started) if end else None))
    pct = f"{100 * job.fraction:.0f}%"
    st.progress(job.fraction, text=f"{pct} · elapsed {clock(job.elapsed_s() if job.live else None)} · "
                                   f"ETA {clock(job.eta_s())}" if job.live else f"{pct} of the planned steps")

    with st.container(horizontal=True):
        if job.live:
            if st.button("Stop", key="job-stop", icon=":material/stop_circle:", type="primary",
                         disabled=bool(job.stop_requested),
                         help="Ends the run at the next step; it is marked 'stopped' and keeps everything recorded."):
                try:
                    job = mgr.stop(job.run_dir)
                except JobError as e:
                    st.error(md_escape(e))
                st.rerun(scope="fragment")
        if has_run and st.button("Open in Overview", key="job-open", icon=":material/monitoring:"):
            show_run(str(job.run_dir))
        if job.config and st.button("Rerun with changes", key="job-rerun", icon=":material/replay:"):
            open_in_form(job.config, parent=str(job.run_dir), parent_name=job.name)
        if has_run and job.parent and st.button("Compare with its parent", key="job-compare",
                                                icon=":material/stacked_line_chart:"):
            compare_with_parent(str(job.run_dir), job.parent)
    if job.stop_requested and job.live:
        st.caption("Stop requested: the run ends at its next step.")

    if job.state == STARTING:
        st.info("Starting: loading PyTorch and the data. The charts appear with the first recorded steps.",
                icon=":material/hourglass_top:")
    elif job.state == schema.STOPPED:
        st.info(md_escape(job.error or "Stopped on request") + ". Everything recorded so far is kept.",
                icon=":material/stop_circle:")
    crash_details(job.run_dir, status=job.state, error=job.error)
    if run is not None:
        _loss_chart(run, ctx.color(str(job.run_dir)) or RUN_PALETTE[0])
        findings, err = handle.findings()
        st.markdown("###### Advice")
        advice_list(findings, run=run, key="job", error=err)
    elif handle is not None and handle.error:
        st.warning(md_escape(handle.error))
    if job.state not in (schema.FAILED, schema.KILLED):
        tail = log_tail(job.run_dir, 8)
        if tail:
            with st.expander(schema.LOG_FILE, expanded=False):
                st.code(tail, language="text")


def _monitor_body(mgr: JobManager, interval: float | None) -> None:
    jobs = mgr.jobs()
    live = [j for j in jobs if j.live]
    with st.container(horizontal=True, vertical_alignment="center"):
        st.markdown("#### Training jobs")
        slots = mgr.slots()
        workers = f" + {slots.others_words}" if slots.others else ""
        st.badge(f"{len(live)}{workers} of {slots.limit} running", color="green" if slots.used else "gray")
        _limit_control(mgr)
    if not jobs:
        st.info("No training jobs yet. Set the hyperparameters on the left and press **Start training**.",
                icon=":material/info:")
        return
    by_path = {str(j.run_dir): j for j in jobs}
    pending = st.session_state.pop(PENDING_WATCH, None)
    if pending in by_path:
        st.session_state[WATCH] = pending
    if st.session_state.get(WATCH) not in by_path:
        st.session_state[WATCH] = str((live or jobs)[0].run_dir)
    # Labels must not change while a job runs: the browser keeps showing the label it first drew.
    path = st.selectbox("Job", list(by_path), key=WATCH, format_func=lambda p: job_label(by_path[p]),
                        help="Jobs started from this page, newest first (also those started in another tab "
                             "or before the app was restarted).")
    job = by_path[path]
    recording = st.session_state.setdefault("_train_recording", [])
    if job.state == schema.RUNNING and str(job.run_dir) not in recording:
        # It just began recording: redraw the whole page once so the sidebar and menus list it.
        recording.append(str(job.run_dir))
        cache.discover.clear()
        st.rerun()
    _job_panel(mgr, job)
    if interval and not live:
        st.rerun()  # every job has ended: redraw the page once, without the timer


# -- the page --------------------------------------------------------------------------------------
def render() -> None:
    """The Train page."""
    ctx = get_context()
    mgr = manager()
    _init_form()
    st.markdown("### Train")
    st.caption("Train a built-in workload in its own process and watch it live. "
               f":material/check_circle: **Healthy:** {HEALTHY}")
    flash = st.session_state.pop(FLASH, None)
    with st.container():  # always drawn, so the form's tabs keep their place (and the open tab)
        if flash:
            st.success(flash[1], icon=":material/rocket_launch:")
    if mgr.device_note:
        st.caption(mgr.device_note)
    left, right = st.columns([0.44, 0.56], gap="large")
    with left:
        banner = st.container()  # filled once the form's config is known (it shows the changes)
        _from_existing_run(ctx)
        with st.container(horizontal=True):
            st.text_input("Run name (optional)", key=NAME, placeholder="e.g. digits lr 0.01",
                          help="Shown in the dashboard; the folder name is made from it plus the start time.",
                          persist_state="session")
            st.text_input("Description (optional)", key=DESCRIPTION, placeholder="what this run tries",
                          persist_state="session")
        values = _form(mgr.devices())
        try:
            config, error = Config.from_dict(values, validate=True, check_device=False), None
        except (ConfigError, TypeError) as e:
            config, error = None, str(e)
        with banner:
            _parent_banner(config)
        _start(mgr, config, error)
    with right:
        interval = ctx.settings.refresh_s if mgr.live_jobs() else None
        st.fragment(lambda: _monitor_body(mgr, interval), run_every=interval, key="train-monitor")()
