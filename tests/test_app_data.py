"""AppTest: the Data page — ingestion health, tick and bar downloads (CSV format), validation of the tick range."""
from __future__ import annotations

import datetime as dt
import io

import duckdb
import pandas as pd

from dashboard import export, tables
from tests.conftest import assert_no_exception, make_tick_db, page_text, plotly_specs, table_value


def test_health_section_reads_the_status_table(app, tick_market):
    at = app(tick_market.path, page="app_pages/data.py")
    assert_no_exception(at)
    health = table_value(at.table[0], tables.HEALTH_COLUMNS)  # a few symbols: a static table
    assert list(health["symbol"]) == ["BTCUSDT", "ETHUSDT"]
    assert list(health["gaps_filled"]) == [1, 1] and list(health["reconnects"]) == [2, 2]
    assert (health["last_tick_age_s"] > 0).all()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Gaps filled / found"] == "2 / 2"
    assert metrics["Ticks/s"] == "3.0"
    events = table_value(at.table[1], tables.EVENT_COLUMNS)
    assert set(events["kind"]) == {"gap_filled"}
    text = page_text(at)
    assert "Bars** — sidebar symbols" in text


def test_tick_download_counts_the_requested_range(app, tick_market):
    at = app(tick_market.path, page="app_pages/data.py")
    end = tick_market.end.replace(tzinfo=None, second=0)
    start = end - dt.timedelta(minutes=10)
    at.selectbox(key="dl_tick_symbol").set_value("ETHUSDT")
    at.datetime_input(key="dl_tick_start").set_value(start)
    at.datetime_input(key="dl_tick_end").set_value(end)
    at.button[0].click().run()
    assert_no_exception(at)
    con = duckdb.connect(str(tick_market.path), read_only=True)
    n = con.execute("SELECT count(*) FROM ticks WHERE symbol = 'ETHUSDT' AND ts >= $s AND ts < $e",
                    {"s": start.replace(tzinfo=dt.UTC), "e": end.replace(tzinfo=dt.UTC)}).fetchone()[0]
    con.close()
    labels = [b.proto.label for b in at.get("download_button")]
    assert any(label.startswith(f"ETHUSDT ticks CSV ({n:,} rows") for label in labels), labels


def test_tick_range_is_validated(app, tick_market):
    at = app(tick_market.path, page="app_pages/data.py")
    end = tick_market.end.replace(tzinfo=None, second=0)
    at.datetime_input(key="dl_tick_start").set_value(end)
    at.datetime_input(key="dl_tick_end").set_value(end - dt.timedelta(minutes=5))
    at.button[0].click().run()
    assert_no_exception(at)
    assert "must be after the start" in page_text(at)
    at.datetime_input(key="dl_tick_start").set_value(end - dt.timedelta(hours=30))
    at.datetime_input(key="dl_tick_end").set_value(end)
    at.button[0].click().run()
    assert "tick downloads are limited to 24 h" in page_text(at)


def test_csv_exports_use_utc_iso_timestamps():
    idx = pd.DatetimeIndex(["2024-05-01 12:00:00.123456", "2024-05-01 12:01:00"], tz="UTC", name="ts")
    bars = pd.DataFrame({"open": [1.0, 2.0], "high": [2.0, 3.0], "low": [0.5, 1.5], "close": [1.5, 2.5],
                         "volume": [10.0, 20.0], "quote_volume": [15.0, 50.0], "trades": [3, 4],
                         "vwap": [1.5, 2.5]}, index=idx)
    text = export.bars_csv({"BTCUSDT": bars}).decode()
    lines = text.splitlines()
    assert lines[0] == ",".join(export.BAR_COLUMNS)
    assert lines[1].startswith("2024-05-01T12:00:00.123456Z,BTCUSDT,1,2,0.5,1.5,10,15,3,1.5")
    ticks = pd.DataFrame({"trade_id": [7], "ts": pd.to_datetime(["2024-05-01T12:00:00Z"]), "price": [100.5],
                          "qty": [0.25], "is_buyer_maker": [True]})
    t = pd.read_csv(io.StringIO(export.ticks_csv(ticks, "ETHUSDT").decode()))
    assert list(t.columns) == export.TICK_COLUMNS
    assert t.loc[0, "ts"] == "2024-05-01T12:00:00.000000Z"
    trades = pd.DataFrame({"entry_time": idx, "holding_time": pd.to_timedelta([60, 120], unit="s")})
    tr = pd.read_csv(io.StringIO(export.to_csv(trades).decode()))
    assert list(tr.columns) == ["entry_time", "holding_time_s"] and list(tr["holding_time_s"]) == [60.0, 120.0]
    assert export.filename("ETHUSDT", "ticks", idx[0]) == "ETHUSDT-ticks-20240501T1200Z.csv"


def test_tick_rate_chart_on_recent_data(app, tmp_path):
    # a file ending now: the session's shared tick file is older than the chart's 15-minute window in a long run
    market = make_tick_db(tmp_path / "recent.duckdb", hours=0.5)
    at = app(market.path, page="app_pages/data.py")
    specs = plotly_specs(at)
    assert len(specs) == 1
    assert {t["name"] for t in specs[0]["data"]} == {"BTCUSDT", "ETHUSDT"}
