"""Runs page script, run by st.navigation from app.py; the page itself is dashboard.views.runs."""

from dashboard.views import runs

runs.render()
