"""tickdesk — the dashboard entrypoint: page navigation and the shared sidebar.

Run with `streamlit run streamlit_app.py` (the file comes from TICKDESK_DB, else data/ticks.duckdb).
The sidebar lives here so its settings survive page switches; every setting is mirrored in the URL.
"""
from __future__ import annotations

import streamlit as st

from dashboard import livechart

st.set_page_config(page_title="tickdesk", page_icon="📈", layout="wide")  # an emoji: a material icon favicon is fetched from the internet
# First, before the heavier imports below: the browser fetches and compiles plotly.js (4.8 MB, ~2 s in a fresh
# browser) while this process imports pandas and queries the file for the first page.
with st.sidebar:
    livechart.preload()

from core.paths import default_db_path  # noqa: E402
from dashboard import alerts_ui, data, settings, warmup  # noqa: E402
from dashboard.live import watch_catalog  # noqa: E402

PAGES = {
    "Desk": [
        st.Page("app_pages/market.py", title="Market", icon=":material/candlestick_chart:", default=True),
        st.Page("app_pages/pairs.py", title="Pairs", icon=":material/compare_arrows:"),
        st.Page("app_pages/screener.py", title="Screener", icon=":material/manage_search:"),
        st.Page("app_pages/backtest.py", title="Backtest", icon=":material/query_stats:"),
        st.Page("app_pages/basis.py", title="Basis", icon=":material/percent:"),
        st.Page("app_pages/alerts.py", title="Alerts", icon=":material/notifications:"),
    ],
    "Data": [
        st.Page("app_pages/data.py", title="Data", icon=":material/database:"),
    ],
}

page = st.navigation(PAGES)
warmup.start()  # statsmodels for the tests, imported while the first run waits on the file
db_path = default_db_path()
catalog = data.catalog(str(db_path), settings.requested_source())
current = settings.sidebar(catalog, db_path, page.url_path)
watch_catalog(current, catalog)
alerts_ui.toast_poller(str(db_path))  # toasts each new alert event once per session

page.run()
