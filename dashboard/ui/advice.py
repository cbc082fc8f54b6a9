"""Advice cards: one per finding, in the order diagnostics ranked them (most severe and most likely
root cause first). A card shows what was found, what to try and the suggested change; the
evidence numbers are one click away, in words. Run-derived text is escaped, never Markdown."""

from __future__ import annotations

from typing import Callable

import pandas as pd
import streamlit as st

from diagnostics.finding import SEVERITIES
from diagnostics.grouping import group
from runstore.layers import LayerModel

from .. import navigation
from ..colors import SEVERITY_COLORS
from ..format import md_escape, value, words
from . import cache
from .context import FOCUS, get_context

# Extra buttons under each card, e.g. "rerun with this fix" (the Train feature registers one).
CardAction = Callable[[object, str], None]
# Layers named on a card before "+N more".
LAYERS_SHOWN = 4


def severity_counts(findings) -> str:
    """E.g. "1 critical · 2 warnings · 1 info"."""
    parts = []
    for sev in reversed(SEVERITIES):  # most severe first
        n = sum(1 for f in findings if f.severity == sev)
        if n:
            parts.append(f"{n} {sev}{'s' if n > 1 and sev == 'warning' else ''}")
    return " · ".join(parts)


def _steps(v):
    """A (first, last) step pair as 'a–b'; anything else unchanged."""
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        return f"{v[0]:,}–{v[1]:,}" if v[0] != v[1] else f"{v[0]:,}"
    return v


def _is_table(v) -> bool:
    return isinstance(v, (list, tuple)) and bool(v) and all(isinstance(x, dict) for x in v)


def evidence_rows(evidence: dict, *, titles: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """A finding's evidence as (words, value) pairs: 'lr_at_blowup' -> 'Learning rate at blowup',
    numbers as the messages write them, step pairs as 'a–b', rule ids as the titles of those
    findings. Lists of records (e.g. per-layer verdicts) are left to `evidence_tables`."""
    rows = []
    for k, v in (evidence or {}).items():
        if _is_table(v):
            continue
        if k == "likely_caused_by" and titles:
            v = [titles.get(x, x) for x in (v if isinstance(v, (list, tuple)) else [v])]
        rows.append((words(k), value(_steps(v) if "step" in k else v)))
    return rows


def evidence_tables(evidence: dict) -> list[tuple[str, pd.DataFrame]]:
    """Evidence values that are lists of records (per-layer verdicts), each as a table of text."""
    out = []
    for k, v in (evidence or {}).items():
        if _is_table(v):
            cols = list(dict.fromkeys(c for row in v for c in row))
            data = [{words(c): value(_steps(row.get(c)) if "step" in c else row.get(c)) for c in cols} for row in v]
            out.append((words(k), pd.DataFrame(data)))
    return out


def fix_text(fix: dict) -> str:
    """'learning rate → 0.01, grad clip → 1' (plain text)."""
    return ", ".join(f"{words(k).lower()} → {value(v)}" for k, v in (fix or {}).items())


def card_head(f, *, compact: bool = False) -> None:
    """The top of an advice card: severity badge, title, message and what to try (as a caption
    when `compact`, for the Train page's narrower monitor)."""
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.badge(f.severity, color=SEVERITY_COLORS.get(f.severity, "gray"))
        st.markdown(f"**{md_escape(f.title)}**")
    st.markdown(md_escape(f.message))
    if f.advice:
        if compact:
            st.caption(f"What to try: {md_escape(f.advice)}")
        else:
            st.markdown(f"**What to try:** {md_escape(f.advice)}")


def _layer_labels(run_path: str) -> LayerModel:
    """The run's layer model (from its cached run.json), for labels like 'relu2 (ReLU)'."""
    ref = get_context().ref(run_path)
    meta = cache.meta(ref) if ref is not None else None
    return LayerModel(meta if isinstance(meta, dict) else None)


def _where(f, model: LayerModel) -> str:
    """'Steps 145–239 · relu2 (ReLU), fc1.weight (Linear)' (escaped for Markdown)."""
    bits = []
    if f.steps:
        a, b = f.steps
        bits.append(f"step {a:,}" if a == b else f"steps {a:,}–{b:,}")
    if f.layers:
        shown = ", ".join(model.label(x) for x in f.layers[:LAYERS_SHOWN])
        more = f" and {len(f.layers) - LAYERS_SHOWN} more" if len(f.layers) > LAYERS_SHOWN else ""
        bits.append(f"{'layer' if len(f.layers) == 1 else 'layers'} {shown}{more}")
    return md_escape(" · ".join(bits))


def _jump(f, run_path: str, page_key: str) -> None:
    st.session_state[FOCUS] = {"page": page_key, "run": run_path, "layers": list(f.layers or ()),
                               "steps": list(f.steps) if f.steps else None, "title": f.title,
                               "rule": f.rule, "applied": False}


def _evidence(f, titles: dict[str, str]) -> None:
    rows, tables = evidence_rows(f.evidence, titles=titles), evidence_tables(f.evidence)
    n = len(rows) + len(tables)
    if not n:
        return
    with st.expander(f"Evidence ({n} {'value' if n == 1 else 'values'})"):
        if rows:
            st.markdown("\n".join(f"- {md_escape(k)}: **{md_escape(v)}**" for k, v in rows))
        for name, table in tables:
            st.caption(md_escape(name))
            st.dataframe(table, hide_index=True)


def advice_cards(findings, *, run_path: str, error: str | None = None, current_page: str = "overview",
                 actions: CardAction | None = None) -> None:
    """All findings of a run as cards; a calm message when there are none."""
    if error:
        st.warning(md_escape(error), icon=":material/warning:")
    if not findings:
        if not error:
            st.success("No problems found: every check passed on the data recorded so far.",
                       icon=":material/check_circle:")
        return
    problems, notes = group(findings)
    count = f"{len(problems)} independent problem{'s' * (len(problems) != 1)} · " if problems else ""
    st.caption(count + severity_counts(findings))
    model = _layer_labels(run_path)
    titles = {f.rule: f.title for f in findings}
    # Each problem is its root cause's card with the findings it explains inside (diagnostics.group).
    cards = [(p.root, p.consequences) for p in problems] + [(f, ()) for f in notes]
    i = 0
    for root, consequences in cards:
        with st.container(border=True, key=f"advice-{i}"):
            _card(root, i, model, titles, run_path, current_page, actions)
            i += 1
            if consequences:
                st.caption(f"Likely consequences of this problem ({len(consequences)}):")
            for f in consequences:
                with st.container(border=True, key=f"advice-{i}"):
                    _card(f, i, model, titles, run_path, current_page, actions)
                i += 1


def _card(f, i: int, model: LayerModel, titles: dict, run_path: str, current_page: str,
          actions: CardAction | None) -> None:
    """One finding's card body (the caller draws the border)."""
    card_head(f)
    if f.fix:
        st.markdown(f"**Suggested change:** {md_escape(fix_text(f.fix))}")
    where = _where(f, model)
    if where:
        st.caption(where)
    with st.container(horizontal=True, vertical_alignment="center"):
        target = navigation.page(f.chart) if f.chart else None
        if target is not None:
            label = f"Show on {target.title}" if target.key != current_page else "Highlight on the charts"
            if st.button(label, key=f"jump-{i}", icon=":material/arrow_forward:", type="tertiary"):
                _jump(f, run_path, target.key)
                if target.key == current_page:
                    st.rerun()
                st.switch_page(target.script)
        if actions is not None:
            actions(f, f"advice-{i}")
    _evidence(f, titles)
