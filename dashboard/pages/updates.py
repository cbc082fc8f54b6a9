"""Updates page script, run by st.navigation from app.py; the page itself is dashboard.views.updates."""

from dashboard.views import updates

updates.render()
