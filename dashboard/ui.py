"""Small drawing helpers shared by the pages: notices in plain words, charts with stable keys, the status line."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from dashboard import livechart
from dashboard.catalog import Catalog
from dashboard.settings import Settings

PLOTLY_CONFIG = {"displaylogo": False, "scrollZoom": True,
                 "modeBarButtonsToRemove": ["lasso2d", "select2d", "autoScale2d"]}


def explain(state: str, message: str | None) -> None:
    """Show why a panel has no (or old) data. 'stale' is a one-line caption; the rest are info/warning boxes."""
    if not message:
        return
    if state == "stale":
        st.caption(f":material/lock_clock: {message}")
    elif state in ("missing", "empty", "no-upload", "no-data", "short"):
        st.info(message, icon=":material/info:")
    else:
        st.warning(message, icon=":material/warning:")


def sentence(text: str | None) -> str:
    """`text` as a sentence: capital first letter, ending with a full stop (a message from below may lack both)."""
    text = (text or "").strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def chart(fig: dict, key: str) -> None:
    """Draw a Plotly figure under a stable key; live refreshes update it in place and, with the figure's
    `uirevision`, keep the user's zoom / pan (see dashboard.livechart)."""
    livechart.draw(fig, key, PLOTLY_CONFIG)


def age(seconds: float | None) -> str:
    if seconds is None or pd.isna(seconds):
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def status_line(s: Settings, cat: Catalog) -> None:
    """One caption: source, market, newest tick and its age, refresh state."""
    now = dt.datetime.now(dt.UTC)
    if s.source == "upload":
        where = "source: **upload**"
    else:
        where = f"source: **live file** `{s.db_path}`"
    last = cat.last_ts(s.market) if cat.usable else None
    tail = ""
    if last is not None:
        tail = f" · last tick {pd.Timestamp(last):%Y-%m-%d %H:%M:%S} UTC"
        if s.source == "live":
            tail += f" ({age((now - last).total_seconds())} ago)"
    live = " · paused" if s.paused and s.source == "live" else (f" · refresh {s.refresh}" if s.source == "live" else "")
    st.caption(f"{where} · {s.market} · {s.timeframe} bars · lookback {s.lookback}{tail}{live}")


def need_catalog(cat: Catalog) -> bool:
    """Explain an unusable source; True when the page can go on."""
    if cat.usable:
        if cat.state == "stale":
            explain("stale", cat.message)
        return True
    explain(cat.state, cat.message)
    return False
