"""Compare page script, run by st.navigation from app.py; the page itself is dashboard.views.compare."""

from dashboard.views import compare

compare.render()
