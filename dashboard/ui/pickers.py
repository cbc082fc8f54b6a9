"""Layer and step pickers whose choices are remembered per run and survive page switches and
live refreshes; a jump from an advice card preselects the finding's layers once."""

from __future__ import annotations

import numpy as np
import streamlit as st

from ..layers import default_pick


def _key(base: str, path: str) -> str:
    return f"{base}::{path}"


def layer_multiselect(label: str, options: list[str], *, base_key: str, path: str, focus: dict | None,
                      k: int = 8, help: str | None = None) -> list[str]:
    """Multiselect of layers; defaults to k layers spread over the depth."""
    key = _key(base_key, path)
    if focus and focus.get("layers") and not focus.get(f"applied:{base_key}"):
        wanted = [x for x in focus["layers"] if x in options]
        if wanted:
            st.session_state[key] = wanted
        focus[f"applied:{base_key}"] = True
    if key in st.session_state:
        st.session_state[key] = [x for x in st.session_state[key] if x in options]
    else:
        st.session_state[key] = default_pick(options, k)
    return st.multiselect(label, options, key=key, persist_state="session", help=help)


def layer_select(label: str, options: list[str], *, base_key: str, path: str, focus: dict | None,
                 default: str | None = None) -> str:
    """Selectbox of one layer (e.g. for a histogram heatmap)."""
    key = _key(base_key, path)
    if focus and focus.get("layers") and not focus.get(f"applied:{base_key}"):
        wanted = [x for x in focus["layers"] if x in options]
        if wanted:
            st.session_state[key] = wanted[0]
        focus[f"applied:{base_key}"] = True
    if st.session_state.get(key) not in options:
        st.session_state[key] = default if default in options else options[0]
    return st.selectbox(label, options, key=key, persist_state="session")


def step_select(label: str, steps, *, key: str, default: str = "last") -> int:
    """Slider over recorded steps; follows the newest step until the user moves it."""
    steps = [int(s) for s in np.asarray(steps).tolist()]
    if len(steps) == 1:
        st.caption(f"{label}: {steps[0]:,} (the only recorded step)")
        return steps[0]
    newest_key = f"{key}::newest"  # the newest step when the slider was last drawn
    current = st.session_state.get(key)
    if current not in steps or current == st.session_state.get(newest_key):
        # unset, or left at the newest step: follow the run as it grows
        st.session_state[key] = steps[-1] if default == "last" else steps[0]
    st.session_state[newest_key] = steps[-1]
    return st.select_slider(label, options=steps, key=key, format_func=lambda s: f"{s:,}")
