"""Every page runs through streamlit_app.py: `through_entrypoint()` is the first statement of each page file.

Streamlit still has its legacy `pages/`-folder mode: when a session's first request is a page URL (a bookmark such
as /pairs?tf=5m) it runs that page file directly, without the entrypoint, its st.navigation and the shared
sidebar. `st.navigation` switches that mode off, so a page that finds it on restarts the run through the
entrypoint, which then lands on the same page (same URL path). Called before the page's own imports (pandas,
plotly, quantlib: ~1 s on a fresh server), the restart is immediate and the entrypoint's plotly.js preload
reaches the browser that much sooner. This module imports nothing but Streamlit.
"""
from __future__ import annotations

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager


def through_entrypoint() -> None:
    """Restart this run through streamlit_app.py if Streamlit ran a page file on its own."""
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
