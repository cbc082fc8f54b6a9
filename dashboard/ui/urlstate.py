"""What the page shows, mirrored in the URL (`st.query_params`) so a reload or a shared link opens
the same view: the run (`?run=<id>`, see discovery.run_ids) and each layer picker's choice
(`?<picker key>=<layer>&<picker key>=<layer>`). The page itself is the URL path (navigation).

The session is the source of truth while it lives; the URL only seeds it. A value is taken from
the URL when it is not what this session last wrote there: a new session (reload, shared link) or
the browser's back/forward. Streamlit clears the parameters on a page switch; the next rerun
writes them again. URL values are never trusted: callers keep only values they know.
"""

from __future__ import annotations

import streamlit as st

_WRITTEN = "_url_written"  # session-state key: {param: values this session last wrote}


def _written() -> dict[str, list[str]]:
    return st.session_state.setdefault(_WRITTEN, {})


def incoming(name: str) -> list[str] | None:
    """The values of URL parameter `name` if they came from outside this session (a link, a
    reload, back/forward), else None. Reading marks them as seen."""
    values = st.query_params.get_all(name)
    if not values or values == _written().get(name):
        return None
    _written()[name] = list(values)
    return list(values)


def write(name: str, values) -> None:
    """Put `values` (a string or strings) in the URL as parameter `name`; none removes it."""
    values = [values] if isinstance(values, str) else [str(v) for v in values or ()]
    _written()[name] = values
    if st.query_params.get_all(name) == values:
        return
    if values:
        st.query_params[name] = values if len(values) > 1 else values[0]
    elif name in st.query_params:
        del st.query_params[name]
