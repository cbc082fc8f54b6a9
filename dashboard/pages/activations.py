"""Activations page script, run by st.navigation from app.py; the page itself is dashboard.views.activations."""

from dashboard.views import activations

activations.render()
