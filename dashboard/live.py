"""Live refresh plumbing: the sidebar watcher that reruns the whole app when the source's symbols change."""
from __future__ import annotations

import streamlit as st

from dashboard import data
from dashboard.catalog import Catalog
from dashboard.settings import Settings


def _signature(cat: Catalog, market: str) -> tuple:
    return (cat.usable, None if cat.usable else cat.state, cat.markets, cat.symbols_of(market))


def watch_catalog(s: Settings, cat: Catalog) -> None:
    """Every refresh, check the source's markets/symbols; when they change (file created, first ticks, new symbol)
    rerun the app so the sidebar offers them. Page fragments refresh their own data."""
    seen = _signature(cat, s.market)

    @st.fragment(run_every=s.run_every)
    def _watch() -> None:
        now = data.catalog(s.db_path, s.source, s.refresh_s)
        if _signature(now, s.market) != seen:
            st.rerun()

    _watch()
