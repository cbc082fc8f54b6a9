"""Streamlit building blocks shared by the pages: context, caching, sidebar, header, cards."""
