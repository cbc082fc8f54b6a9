"""Overview page script, run by st.navigation from app.py; the page itself is dashboard.views.overview."""

from dashboard.views import overview

overview.render()
