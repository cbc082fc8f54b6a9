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
from dashboard.settings import SettingsError, exposure_note, parse_args
from dashboard.ui import sidebar
from dashboard.ui.context import AppContext, set_context
from dashboard.ui.guard import failed

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
# One bad run, or a bug no test met, costs at most the sidebar or the page it is on (ui/guard.py).
try:
    context = sidebar.render(settings)
except Exception as e:  # noqa: BLE001
    with st.sidebar:
        failed("The run menu", e)
    context = AppContext(settings=settings, refs=[])
set_context(context)
for problem in problems:
    st.sidebar.warning(md_escape(problem))
exposure = exposure_note(st.get_option("server.address"))  # .streamlit/config.toml: localhost
if exposure is not None and exposure[0] == "warning":
    st.sidebar.warning(md_escape(exposure[1]), icon=":material/public:")
elif exposure is not None:
    st.sidebar.caption(f":material/public: {md_escape(exposure[1])}")
try:
    menu.run()
except Exception as e:  # noqa: BLE001
    failed("This page", e)
