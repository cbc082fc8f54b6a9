"""Train page script, run by st.navigation from app.py; the page itself is dashboard.views.train."""

from dashboard.views import train

train.render()
