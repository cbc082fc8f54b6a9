"""The last line of defence: a page or the sidebar that fails on something no check foresaw says so
in one line, with the traceback one click away, and the rest of the app keeps working."""

from __future__ import annotations

import traceback

import streamlit as st

from ..format import md_escape
from ..loading import short_error

# How such a failure reads (the tests look for it: a page that needed it has a bug to fix).
NOT_SHOWN = "could not be shown"


def failed(what: str, e: Exception) -> None:
    """Show that `what` ("This page") failed with `e`. Call it from an `except Exception` around
    the page: Streamlit's own control flow (st.stop, st.rerun, st.switch_page) raises
    BaseExceptions, which pass through such a handler."""
    st.error(f"{what} {NOT_SHOWN}: {md_escape(short_error(e))}", icon=":material/error:")
    with st.expander("Technical details"):
        st.code(traceback.format_exc(), language="text")
