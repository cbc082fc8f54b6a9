"""The Streamlit dashboard: run discovery, cached loading, pure Plotly figure builders and pages.

`app.py` at the repository root is the entry point (`streamlit run app.py`). Everything here that
does not start with `ui/`, `views/` or `pages/` is free of Streamlit and tested on its own.
"""
