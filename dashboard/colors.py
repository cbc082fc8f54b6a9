"""Colours: one per run, the same on every page and in every session; one per layer of a run,
with neighbouring layers clearly apart.

Every colour here has a contrast of at least 3:1 against both Streamlit backgrounds (white and the
dark theme's #0e1117), so a line reads in either theme (tests/test_dashboard_data.py checks it).
"""

from __future__ import annotations

import hashlib

# Ten hues, mid luminance, no red (red is kept for alerts: NaN markers, threshold lines). In this
# order consecutive entries are far apart on the colour wheel, so layers coloured in network order
# never get a neighbour's colour, and the first runs of a comparison differ at a glance.
PALETTE = ("#2563eb", "#d97706", "#0d9488", "#c026d3", "#16a34a", "#7c3aed", "#ea580c", "#0284c7",
           "#db2777", "#8c564b")
RUN_PALETTE = PALETTE
# The colours of the severity badges (st.badge colour names), keyed by diagnostics.finding.SEVERITIES.
SEVERITY_COLORS = {"critical": "red", "warning": "orange", "info": "blue"}
GOOD_BAND = "rgba(22, 163, 74, 0.16)"
REFERENCE_LINE = "#9ca3af"
ALERT_LINE = "#e15759"


def _slot(identity: str) -> int:
    """The palette slot a run prefers: a hash of its identity (not Python's hash(), which changes
    between processes), so the colour does not depend on the session or the order runs were met."""
    return int.from_bytes(hashlib.sha1(identity.encode("utf-8")).digest()[:4], "big") % len(PALETTE)


def run_color(identity: str) -> str:
    """The colour of one run on its own (e.g. its loss curve on the Overview)."""
    return PALETTE[_slot(identity)]


def run_colors(identities, keep: dict[str, str] | None = None) -> dict[str, str]:
    """A colour for each run identity, distinct as long as there are no more runs than colours.
    Runs in `keep` keep their colour. The others, in identity order, take their preferred slot
    (`run_color`) or the next free one, so the result is a pure function of the set: the same runs
    get the same colours in every session and on every page."""
    out = dict(keep or {})
    taken = set(out.values())
    for ident in sorted(set(identities) - set(out)):
        if len(taken) >= len(PALETTE):
            taken = set()  # more runs than colours: start another round
        i = _slot(ident)
        while PALETTE[i] in taken:
            i = (i + 1) % len(PALETTE)
        out[ident] = PALETTE[i]
        taken.add(PALETTE[i])
    return out


def layer_colors(names) -> dict[str, str]:
    """A colour for every layer of a run, given in network order: the palette in turn, so
    adjacent layers always differ and a layer keeps its colour whatever else is picked."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def depth_colors(n: int) -> list[str]:
    """The colours of n layers in network order (layer_colors without the names)."""
    return [PALETTE[i % len(PALETTE)] for i in range(max(0, n))]
