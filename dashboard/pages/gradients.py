"""Gradients page script, run by st.navigation from app.py; the page itself is dashboard.views.gradients."""

from dashboard.views import gradients

gradients.render()
