"""Advice cards: one per finding, most severe first, with its evidence and a jump to the chart."""

from __future__ import annotations

from typing import Callable

import streamlit as st

from .. import navigation
from ..colors import SEVERITY_COLORS
from diagnostics.finding import SEVERITY_RANK
from ..summary import fmt_value
from .context import FOCUS

# Evidence numbers shown on the card itself; the rest are one click away.
EVIDENCE_INLINE = 4
# Extra buttons under each card, e.g. "rerun with this fix" (the Train feature registers one).
CardAction = Callable[[object, str], None]


def severity_counts(findings) -> str:
    """E.g. "1 critical · 2 warnings"."""
    parts = []
    for sev, word in (("critical", "critical"), ("warning", "warning"), ("info", "note")):
        n = sum(1 for f in findings if f.severity == sev)
        if n:
            parts.append(f"{n} {word}{'s' if n > 1 and sev != 'critical' else ''}")
    return " · ".join(parts)


def evidence_text(evidence: dict) -> str:
    """Evidence numbers as "name = value" pairs."""
    return " · ".join(f"`{k}` = {fmt_value(v)}" for k, v in (evidence or {}).items())


def card_head(f, *, compact: bool = False) -> None:
    """The top of an advice card: severity badge, title, message and what to try (as a caption
    when `compact`, for the Train page's narrower monitor)."""
    with st.container(horizontal=True, vertical_alignment="center"):
        st.badge(f.severity, color=SEVERITY_COLORS.get(f.severity, "gray"))
        st.markdown(f"**{f.title}**")
    st.markdown(f.message)
    if f.advice:
        if compact:
            st.caption(f"What to try: {f.advice}")
        else:
            st.markdown(f"**What to try:** {f.advice}")


def _where(f) -> str:
    bits = []
    if f.steps:
        a, b = f.steps
        bits.append(f"step {a:,}" if a == b else f"steps {a:,}–{b:,}")
    if f.layers:
        shown = ", ".join(f"`{x}`" for x in f.layers[:4])
        more = f" (+{len(f.layers) - 4} more)" if len(f.layers) > 4 else ""
        bits.append(f"layers {shown}{more}")
    return " · ".join(bits)


def _jump(f, run_path: str, page_key: str) -> None:
    st.session_state[FOCUS] = {"page": page_key, "run": run_path, "layers": list(f.layers or ()),
                               "steps": list(f.steps) if f.steps else None, "title": f.title,
                               "rule": f.rule, "applied": False}


def advice_cards(findings, *, run_path: str, error: str | None = None, current_page: str = "overview",
                 actions: CardAction | None = None) -> None:
    """All findings of a run as cards; a calm message when there are none."""
    if error:
        st.warning(error, icon=":material/warning:")
    if not findings:
        if not error:
            st.success("No problems found: every check passed on the data recorded so far.",
                       icon=":material/check_circle:")
        return
    findings = sorted(findings, key=lambda f: -SEVERITY_RANK.get(f.severity, -1))
    st.caption(severity_counts(findings))
    for i, f in enumerate(findings):
        with st.container(border=True, key=f"advice-{i}"):
            card_head(f)
            where = _where(f)
            if where:
                st.caption(where)
            if f.evidence:
                items = list(f.evidence.items())
                st.caption(f"Evidence: {evidence_text(dict(items[:EVIDENCE_INLINE]))}"
                           + (" …" if len(items) > EVIDENCE_INLINE else ""))
                if len(items) > EVIDENCE_INLINE:
                    with st.expander(f"All evidence ({len(items)} values)"):
                        st.markdown("\n".join(f"- `{k}`: {fmt_value(v)}" for k, v in items))
            if f.fix:
                st.caption("Suggested config change: " + ", ".join(f"`{k}` → {fmt_value(v)}" for k, v in f.fix.items()))
            with st.container(horizontal=True):
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
