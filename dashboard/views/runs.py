"""The Runs page: every run found, with status, workload, key hyperparameters, final losses and
the number of warnings; filter, sort, and pick one or several."""

from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st

from .. import navigation, status
from ..format import TABLE_FORMAT, md_escape
from ..summary import COLUMNS
from ..ui import cache
from ..ui.context import COMPARE_RUNS, CURRENT_RUN, SELECTED_RUNS, get_context
from ..ui.runpage import healthy, problem_card
from ..ui.training import live_jobs_panel

# While runs' numbers are read in the background, the table shows the new ones this often (seconds).
PENDING_REFRESH_S = 2.0
# Unreadable runs get a card each under the table, up to this many (the table lists them all).
MAX_PROBLEM_CARDS = 5
SORTS = {"newest first": ("created", False), "name": ("run", True), "status": ("status", True),
         "most warnings": ("warnings_total", False), "lowest val loss": ("val loss", True),
         "lowest train loss": ("train loss", True), "most steps": ("steps", False)}


def table(ctx) -> tuple[pd.DataFrame, int]:
    """One row per run from the cached summaries (summary.SummaryStore: run.json for every run,
    run.db once per change), and how many runs' numbers are still being read in the background."""
    store = cache.summaries()
    with st.spinner(f"Reading {len(ctx.refs)} runs…"):  # slow only while a few runs are new or changed
        pending = store.refresh(ctx.refs)
    df = pd.DataFrame(store.rows(ctx.refs), columns=COLUMNS)
    for col in ("critical", "warnings", "steps"):
        df[col] = df[col].astype("Int64")
    df["warnings_total"] = df["critical"] + df["warnings"]
    return df, pending


def filtered(df: pd.DataFrame, *, text: str, statuses: list[str], only_warnings: bool, sort: str) -> pd.DataFrame:
    """Rows matching the filters, in the chosen order."""
    if df.empty:
        return df
    keep = pd.Series(True, index=df.index)
    if text:
        hay = (df["run"].astype(str) + " " + df["workload"].astype(str) + " " + df["hyperparameters"].astype(str)
               + " " + df["path"].astype(str)).str.lower()
        for word in text.lower().split():
            keep &= hay.str.contains(word, regex=False)
    if statuses:
        keep &= df["status"].isin(statuses)
    if only_warnings:
        keep &= (df["warnings_total"] > 0).fillna(False)
    col, asc = SORTS.get(sort, SORTS["name"])
    return df[keep].sort_values(col, ascending=asc, na_position="last", kind="stable").reset_index(drop=True)


def _live_interval(df: pd.DataFrame, pending: int, refresh_s: float) -> float | None:
    """Refresh the table while a run is live, or while runs' numbers are still being read."""
    if pending:  # not more often: each refresh takes the interpreter from the background reader
        return max(refresh_s, PENDING_REFRESH_S)
    return refresh_s if not df.empty and (df["status"] == status.RUNNING).any() else None


def render() -> None:
    """The Runs page."""
    ctx = get_context()
    st.markdown("### Runs")
    healthy("a run finishes with its validation loss near its training loss, its accuracy still rising "
            "or levelled off, and no critical or warning findings.")
    live_jobs_panel()
    if not ctx.refs:
        st.info("No runs found in " + ", ".join(md_escape(f) for f in ctx.folders) + ". Record one with "
                "`probes.attach(model, optimizer, run_dir='runs/my_run')`, or add a folder in the sidebar.")
        return
    df, pending = table(ctx)
    with st.container(horizontal=True, vertical_alignment="bottom"):
        text = st.text_input("Filter", key="runs_filter", placeholder="name, workload, lr=0.1 …", width=240,
                             persist_state="session")
        present = [s for s in status.ORDER if s in set(df["status"])]
        statuses = st.multiselect("Status", present, key="runs_status", persist_state="session",
                                  format_func=status.label, width=260)
        only_warn = st.toggle("Only runs with warnings", key="runs_warn", persist_state="session")
        sort = st.selectbox("Sort by", list(SORTS), key="runs_sort", persist_state="session", width=180)
    first = {"table": (df, pending)}  # this rerun's table; the fragment's own reruns read it again

    def body():
        now_df, now_pending = first.pop("table", None) or table(ctx)
        _table(ctx, now_df, now_pending, text, statuses, only_warn, sort)
        if pending and not now_pending:
            st.rerun()  # every run is read: redraw the page once, which stops the timer

    st.fragment(body, run_every=_live_interval(df, pending, ctx.settings.refresh_s), key="runs-table")()


def _table(ctx, df, pending, text, statuses, only_warn, sort) -> None:
    shown = filtered(df, text=text, statuses=statuses, only_warnings=only_warn, sort=sort)
    paths = shown["path"].tolist() if not shown.empty else []
    selected = [p for p in st.session_state.get(SELECTED_RUNS) or [] if p in paths]
    default_rows = [paths.index(p) for p in selected]
    # The key follows the rows shown, so a stale selection never points at the wrong run after
    # filtering or sorting; the remembered paths reselect the same runs.
    key = "runs_table_" + hashlib.sha1("\n".join(paths).encode()).hexdigest()[:10]
    display = shown.drop(columns=["warnings_total", "folder"], errors="ignore")
    if not display.empty:
        display["status"] = display["status"].map(status.label)
    event = st.dataframe(
        display, key=key, on_select="rerun", selection_mode="multi-row", hide_index=True, placeholder="—",
        height=min(36 * (len(display) + 1) + 4, 760),
        selection_default={"selection": {"rows": default_rows}},
        column_config={
            "run": st.column_config.TextColumn("run", pinned=True),
            "lr": st.column_config.NumberColumn("lr", format=TABLE_FORMAT, help="learning rate (first group)"),
            "steps": st.column_config.NumberColumn("steps", format="localized"),
            "train loss": st.column_config.NumberColumn("train loss", format=TABLE_FORMAT,
                                                        help="mean of the last 20 steps; empty if it ended NaN/Inf"),
            "val loss": st.column_config.NumberColumn("val loss", format=TABLE_FORMAT, help="at the last evaluation"),
            "val accuracy": st.column_config.NumberColumn("val acc", format=TABLE_FORMAT,
                                                          help="at the last evaluation"),
            "critical": st.column_config.NumberColumn("critical", help="critical findings"),
            "warnings": st.column_config.NumberColumn("warnings", help="warning findings"),
            "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
            "hyperparameters": st.column_config.TextColumn("hyperparameters", width="large"),
            "path": st.column_config.TextColumn("path", width="medium"),
        },
    )
    rows = list(event.selection.rows) if event is not None else default_rows
    picked = [paths[i] for i in rows if i < len(paths)]
    if sorted(rows) != sorted(default_rows):
        st.session_state[SELECTED_RUNS] = picked
        st.session_state.pop(COMPARE_RUNS, None)  # the Compare page starts from the new pick
        if picked:
            st.session_state[CURRENT_RUN] = picked[0]
        st.rerun(scope="app")
    read = f" · still reading the numbers of {pending} of {len(df)} runs…" if pending else ""
    st.caption(f"{len(shown)} of {len(df)} runs shown{read} · select rows to pick runs "
               "(the first picked run opens in the run pages, all picked runs in Compare).")
    with st.container(horizontal=True):
        if st.button("Open overview", icon=":material/monitoring:", disabled=not picked, key="open-overview"):
            st.switch_page(navigation.page("overview").script)
        if st.button(f"Compare {len(picked)} runs" if len(picked) > 1 else "Compare",
                     icon=":material/stacked_line_chart:", disabled=len(picked) < 2, key="open-compare"):
            st.switch_page(navigation.page("compare").script)
    problems = cache.summaries().problems(ctx.refs)
    for ref, why, trace in problems[:MAX_PROBLEM_CARDS]:
        problem_card(ref, why, trace)
    if len(problems) > MAX_PROBLEM_CARDS:
        st.caption(f"{len(problems) - MAX_PROBLEM_CARDS} more runs cannot be read: pick the status "
                   f"“{status.label(status.UNREADABLE)}” above to list them with the reason.")
