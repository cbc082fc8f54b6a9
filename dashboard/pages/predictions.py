"""Predictions page script, run by st.navigation from app.py; the page itself is dashboard.views.predictions."""

from dashboard.views import predictions

predictions.render()
