"""AppTest: each page's download button is drawn by the page's full run and its offer holds the page's view.

The clicks themselves (a deferred download over Streamlit's websocket while the page refreshes) are checked in
headless Chromium by tests/test_downloads_browser.py.
"""
from __future__ import annotations

import io

import pandas as pd
import pytest

from dashboard import downloads
from dashboard.export import BAR_COLUMNS
from tests.conftest import assert_no_exception

OFFERS = "_tickdesk_download_offers"


def _csv(at, key: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(at.session_state[OFFERS][key]()))


def _labels(at) -> list[str]:
    return [b.proto.label for b in at.get("download_button")]


@pytest.mark.parametrize("page, key, label, check", [
    (None, "dl-market-bars", "Bars (CSV)", lambda df: list(df.columns) == BAR_COLUMNS and len(df) > 50),
    ("app_pages/pairs.py", "dl-pair-series", "Analytics series (CSV)",
     lambda df: {"close_ETHUSDT", "close_BTCUSDT", "zscore_ols"} <= set(df.columns) and len(df) > 50),
    ("app_pages/backtest.py", "dl-bt-trades", "Trades (CSV)",
     lambda df: {"entry_time", "exit_time", "side"} <= set(df.columns)),
])
def test_the_offer_holds_the_view_on_the_page(app, tick_db, page, key, label, check):
    at = app(tick_db, page=page)
    assert_no_exception(at)
    assert label in _labels(at)
    df = _csv(at, key)
    assert check(df), df.head()


def test_a_page_without_data_offers_a_note_not_an_empty_file(app, empty_tick_db):
    at = app(empty_tick_db)
    assert_no_exception(at)
    df = _csv(at, "dl-market-bars")
    assert list(df.columns) == ["note"] and df["note"][0].startswith("Nothing to download: the Market page shows")


def test_an_offer_returns_its_newest_content():
    o = downloads.Offer()
    assert b"not computed this view yet" in o()
    o.set(lambda: b"a\n1\n")
    assert o() == b"a\n1\n"
    o.set(lambda: b"a\n2\n")  # a refresh replaces what the same button gives
    assert o() == b"a\n2\n"
    o.withhold('no "bars" here')
    assert pd.read_csv(io.BytesIO(o()))["note"][0] == "Nothing to download: no 'bars' here."
