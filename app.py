"""Training diagnostics dashboard: `streamlit run app.py [-- --runs-dir PATH ...]`.

Thin on purpose: page config, the command-line run folders, the sidebar and the page menu.
The pages live in dashboard/views (see dashboard/navigation.py for the list); a page's URL is
/<page key>?run=<run id>&... (dashboard/ui/urlstate.py), so a link reopens the same view.
"""

import sys

import streamlit as st

from dashboard import navigation
from dashboard.figures.base import set_webgl
from dashboard.format import md_escape
from dashboard.settings import SettingsError, parse_args
from dashboard.ui import sidebar
from dashboard.ui.context import set_context

st.set_page_config(page_title="Training diagnostics", page_icon=":material/monitor_heart:", layout="wide")

try:
    settings, problems = parse_args(sys.argv[1:])
except SettingsError as e:
    st.error(md_escape(e))
    st.stop()

set_webgl(settings.webgl)
menu = st.navigation({
    section: [st.Page(p.script, title=p.title, icon=p.icon, url_path=p.key, default=p.default) for p in pages]
    for section, pages in navigation.sections().items()
})
set_context(sidebar.render(settings))
for problem in problems:
    st.sidebar.warning(md_escape(problem))
menu.run()
