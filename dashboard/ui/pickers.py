"""Layer and step pickers whose choices are remembered per run, survive page switches and live
refreshes and are kept in the URL; a jump from an advice card preselects the finding's layers once.

What a layer picker starts with, first match wins: the layers of the finding the user jumped from,
layers from a shared link, the user's earlier choice for this run, `preferred` (e.g. the layers
the judgement flagged), then `default_pick` (layers spread evenly over the depth).
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from . import urlstate


def default_pick(names: list[str], k: int = 8) -> list[str]:
    """At most k names evenly spread from first to last, so a deep net's picker starts readable."""
    if len(names) <= k:
        return list(names)
    idx = sorted({round(i * (len(names) - 1) / (k - 1)) for i in range(k)})
    return [names[i] for i in idx]


def _key(base: str, path: str) -> str:
    return f"{base}::{path}"


def _wanted(base_key: str, options: list[str], focus: dict | None) -> list[str] | None:
    """Layers asked for from outside the picker: a finding jumped from (once), else the URL."""
    if focus and focus.get("layers") and not focus.get(f"applied:{base_key}"):
        focus[f"applied:{base_key}"] = True
        wanted = [x for x in focus["layers"] if x in options]
        if wanted:
            return wanted
    from_url = urlstate.incoming(base_key)
    if from_url:
        return [x for x in dict.fromkeys(from_url) if x in options] or None
    return None


def _formatter(labels: dict[str, str] | None):
    return (lambda x: labels.get(x, x)) if labels else str


def layer_multiselect(label: str, options: list[str], *, base_key: str, path: str, focus: dict | None,
                      k: int = 8, preferred: list[str] | None = None, labels: dict[str, str] | None = None,
                      help: str | None = None) -> list[str]:
    """Multiselect of layers. Starts with `preferred` (those in `options`, at most k) when given,
    else k layers spread over the depth. `labels` maps a layer name to what the user reads
    (LayerModel.label: '1 (Conv2d)')."""
    key = _key(base_key, path)
    wanted = _wanted(base_key, options, focus)
    if wanted:
        st.session_state[key] = wanted
    elif key in st.session_state:
        st.session_state[key] = [x for x in st.session_state[key] if x in options]
    else:
        flagged = [x for x in (preferred or ()) if x in options][:k]
        st.session_state[key] = flagged or default_pick(options, k)
    picked = st.multiselect(label, options, key=key, persist_state="session", help=help,
                            format_func=_formatter(labels))
    urlstate.write(base_key, picked)
    return picked


def layer_select(label: str, options: list[str], *, base_key: str, path: str, focus: dict | None,
                 default: str | None = None, preferred: list[str] | None = None,
                 labels: dict[str, str] | None = None) -> str:
    """Selectbox of one layer (e.g. for a histogram heatmap). Starts with the first of `preferred`
    in `options`, else `default`, else the first layer."""
    key = _key(base_key, path)
    wanted = _wanted(base_key, options, focus)
    if wanted:
        st.session_state[key] = wanted[0]
    elif st.session_state.get(key) not in options:
        flagged = [x for x in (preferred or ()) if x in options]
        st.session_state[key] = flagged[0] if flagged else default if default in options else options[0]
    picked = st.selectbox(label, options, key=key, persist_state="session", format_func=_formatter(labels))
    urlstate.write(base_key, [picked] if picked is not None else [])
    return picked


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
