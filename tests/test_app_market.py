"""AppTest: the Market page on a real DuckDB tick file (synthetic BTCUSDT/ETHUSDT, 3 h)."""
from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from dashboard import tables
from tests.conftest import assert_no_exception, make_tick_db, page_text, plotly_specs, table_value
from tickstore.writer import TickBuffer, TickWriter


def _last_prices(db) -> dict[str, float]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return dict(con.execute("SELECT symbol, arg_max(price, trade_id) FROM ticks GROUP BY 1").fetchall())
    finally:
        con.close()


def test_market_page_draws_candles_overlays_and_panels(app, tick_market):
    at = app(tick_market.path)
    assert_no_exception(at)
    specs = plotly_specs(at)
    assert len(specs) == 1
    traces = [(t["type"], t.get("name")) for t in specs[0]["data"]]
    assert traces[0] == ("candlestick", "BTCUSDT")
    names = [n for _, n in traces]
    assert {"SMA 20", "EMA 50", "RSI", "volatility", "volume"} <= set(names)
    # 2 h of 1m bars (anchored at the newest tick): 120 or 121 candles
    assert 119 <= len(specs[0]["data"][0]["x"]) <= 121
    assert specs[0]["layout"]["uirevision"] == "live:spot:1m:2h:BTCUSDT"
    text = page_text(at)
    assert "source: **live file**" in text and "1m bars" in text and "lookback 2h" in text


def test_market_stats_match_the_file(app, tick_market):
    at = app(tick_market.path)
    stats = table_value(at.table[0], tables.STATS_COLUMNS)
    assert list(stats.index) == ["BTCUSDT", "ETHUSDT"]
    last = _last_prices(tick_market.path)
    for sym in stats.index:
        assert stats.loc[sym, "last"] == pytest.approx(last[sym])
        assert stats.loc[sym, "low"] <= stats.loc[sym, "vwap"] <= stats.loc[sym, "high"]
        assert stats.loc[sym, "dist_vwap"] == pytest.approx(stats.loc[sym, "last"] / stats.loc[sym, "vwap"] - 1)
        # ~1.5 trades/s per symbol in the synthetic file
        assert 1.0 < stats.loc[sym, "trades_per_s"] < 2.0
    summary = table_value(at.table[1], tables.SUMMARY_COLUMNS)
    assert set(summary.index) == {"BTCUSDT", "ETHUSDT"}
    assert summary.loc["ETHUSDT", "last_price"] == pytest.approx(last["ETHUSDT"])
    assert int(summary["trades"].sum()) == sum(tick_market.ticks_per_symbol.values())


def test_focus_symbol_and_url_settings(app, tick_market):
    at = app(tick_market.path, query={"tf": "5m", "lb": "6h", "sma": "10", "focus": "ETHUSDT"})
    assert_no_exception(at)
    spec = plotly_specs(at)[0]
    assert spec["data"][0]["name"] == "ETHUSDT"
    assert "SMA 10" in [t.get("name") for t in spec["data"]]
    # the file holds 3 h: 6 h of 5m bars gives all 36-37 of them
    assert 36 <= len(spec["data"][0]["x"]) <= 37
    assert "5m bars · lookback 6h" in page_text(at)
    at.segmented_control(key="focus").set_value("BTCUSDT").run()
    assert plotly_specs(at)[0]["data"][0]["name"] == "BTCUSDT"


def test_window_too_short_is_explained(app, tick_market):
    at = app(tick_market.path, query={"lb": "15m", "win": "60", "rsi": "20"})
    assert_no_exception(at)
    names = [t.get("name") for t in plotly_specs(at)[0]["data"]]
    assert "volatility" not in names and "RSI" not in names
    text = page_text(at)
    assert "volatility needs more than 60 bars" in text and "RSI needs more than 20 bars" in text


def test_symbol_without_recent_data_is_explained(app, tmp_path):
    db = tmp_path / "t.duckdb"
    make_tick_db(db, hours=1.0)
    old = int((dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).timestamp() * 1e6)
    buf = TickBuffer()
    buf.extend([("spot", "SOLUSDT", i, old + i * 1_000_000, 150.0 + i * 0.01, 1.0, False, old, "rest")
                for i in range(50)])
    TickWriter(db, buf).flush_once()
    at = app(db, query={"focus": "SOLUSDT", "sym": ["BTCUSDT", "ETHUSDT", "SOLUSDT"]})
    assert_no_exception(at)
    assert "No SOLUSDT trades in the last 2h" in page_text(at)
    assert plotly_specs(at) == []
    # the other symbols are still in the stats table
    stats = table_value(at.table[0], tables.STATS_COLUMNS)
    assert stats.loc["BTCUSDT", "last"] > 0


def test_refreshes_show_new_ticks_and_a_backfill_of_old_ones(app, tick_market):
    """Closed bars are kept between refreshes (dashboard.bar_cache): the next refresh shows the ticks written since,
    and a REST backfill of hour-old ticks inside the window is not hidden by the kept bars."""
    import streamlit as st

    at = app(tick_market.path)
    base = int(table_value(at.table[1], tables.SUMMARY_COLUMNS)["trades"].sum())
    end_us = int(tick_market.end.timestamp() * 1e6)
    writer = TickWriter(tick_market.path, TickBuffer())
    writer.buffer.extend([("spot", "BTCUSDT", 9_000_000 + i, end_us + 1_000_000 * (i + 1), 100.0 + i, 1.0, True,
                           None, "ws") for i in range(5)])
    writer.flush_once()
    st.cache_data.clear()  # the next refresh interval
    at.run()
    assert_no_exception(at)
    assert int(table_value(at.table[1], tables.SUMMARY_COLUMNS)["trades"].sum()) == base + 5
    assert table_value(at.table[0], tables.STATS_COLUMNS).loc["BTCUSDT", "last"] == 104.0
    writer.buffer.extend([("spot", "ETHUSDT", 8_000_000 + i, end_us - 3_600_000_000 + 1000 * i, 1.0, 1.0, True, None,
                           "backfill") for i in range(3)])
    writer.flush_once()
    st.cache_data.clear()
    at.run()
    assert_no_exception(at)
    assert int(table_value(at.table[1], tables.SUMMARY_COLUMNS)["trades"].sum()) == base + 8
    assert table_value(at.table[0], tables.STATS_COLUMNS).loc["ETHUSDT", "low"] == 1.0
