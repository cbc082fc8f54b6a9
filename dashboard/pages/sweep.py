"""Sweep page script, run by st.navigation from app.py; the page itself is dashboard.views.sweep."""

from dashboard.views import sweep

sweep.render()
