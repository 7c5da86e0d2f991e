"""Upload / import messages and small wording fixes, checked in the pages (AppTest) and in the helpers behind them."""
from __future__ import annotations

import pytest

from dashboard import uploads
from dashboard.uploads import UploadError, parse_csv
from tests.conftest import assert_no_exception, page_text, plotly_specs, share_apptest_caches
from tests.test_app_uploads import _upload, klines_csv, synthetic_bars


# ---------------------------------------------------------------- upload messages
def test_finer_timeframe_than_the_uploaded_bars_is_worded_for_the_pick():
    ds = uploads.combine([parse_csv("BTCUSDT-1m.csv", klines_csv(synthetic_bars(30)))])
    frames, note = ds.bars("1s")
    assert len(frames["BTCUSDT"]) == 30
    assert note == ("The uploaded bars are 1m long, longer than the 1s timeframe picked, so they are shown as they "
                    "are; a timeframe of 1m or longer resamples them.")
    assert "pick 1s" not in note
    assert ds.bars("1m")[1] is None and ds.bars("5m")[1] is None
    assert uploads.bar_label(90) == "1m 30s" and uploads.bar_label(3600) == "1h" and uploads.bar_label(7) == "7s"


def test_malformed_row_names_the_file_the_line_and_the_expected_fields():
    body = (b"time,open,high,low,close,volume\n2024-05-01T00:00:00Z,1,2,0.5,1.5,10\n"
            b"2024-05-01T00:01:00Z,1,2,0.5,1.5,10,7\n")
    with pytest.raises(UploadError) as err:
        parse_csv("BTCUSDT-1m.csv", body)
    msg = str(err.value)
    assert msg == ("BTCUSDT-1m.csv: line 3 has 7 comma-separated fields; expected 6, as in the header "
                   "(`time,open,high,low,close,volume`). Fix or remove that line and upload again.")
    assert "tokenizing" not in msg and "C error" not in msg


def test_unclosed_quote_and_binary_file_messages():
    with pytest.raises(UploadError) as err:
        parse_csv("BTCUSDT.csv", b'time,price,qty\n2024-05-01T00:00:00Z,1,2\n"2024-05-01T00:00:01Z,1,2\n')
    assert str(err.value).startswith("BTCUSDT.csv: a quote") and "never closed" in str(err.value)
    assert "EOF" not in str(err.value)
    with pytest.raises(UploadError) as err:
        parse_csv("BTCUSDT-trades-2024-05-01.zip", b"PK\x03\x04\xff\xfe\x00\x9c")
    msg = str(err.value)
    assert "Import Binance history" in msg and "ingestor.py" not in msg


def test_malformed_upload_in_the_page(app, tick_db):
    at = app(tick_db, page="app_pages/data.py")
    _upload(at, [("ETHUSDT-1m.csv", b"time,open,high,low,close,volume\n2024-05-01T00:00:00Z,1,2,0.5,1.5,10,3\n")])
    assert_no_exception(at)
    errors = [e.value for e in at.error]
    assert any(e.startswith("ETHUSDT-1m.csv: line 2 has 7 comma-separated fields; expected 6") for e in errors), errors
    assert not any("tokenizing" in e for e in errors)


# ---------------------------------------------------------------- an upload survives a reload
@pytest.mark.slow
def test_upload_is_kept_across_a_reload(app, tick_db):
    at = app(tick_db, page="app_pages/data.py")
    _upload(at, [("SOLUSDT-1m-2024-05-01.csv", klines_csv(synthetic_bars(120, price=150.0)))])
    next(b for b in at.button if b.label == "Analyse this upload").click().run()
    assert_no_exception(at)
    uid = at.query_params[uploads.KEEP_PARAM]
    uid = uid[0] if isinstance(uid, list) else uid
    assert uploads.kept().get(uid) is not None
    at.switch_page("app_pages/market.py").run()   # a page switch keeps the id in the URL
    kept_id = at.query_params[uploads.KEEP_PARAM]
    assert (kept_id[0] if isinstance(kept_id, list) else kept_id) == uid
    # a reload: a new session with the same URL
    again = app(tick_db, query={"src": "upload", uploads.KEEP_PARAM: uid})
    assert_no_exception(again)
    assert "source: **upload**" in page_text(again)
    assert again.table[0].value.index.tolist() == ["SOLUSDT"]
    assert plotly_specs(again)[0]["data"][0]["type"] == "candlestick"
    # removing it forgets it: the id no longer restores anything
    again.switch_page("app_pages/data.py").run()
    next(b for b in again.button if b.label == "Remove upload").click().run()
    assert uploads.kept().get(uid) is None


def test_a_dropped_upload_falls_back_to_the_live_file_and_says_so(app, tick_db):
    at = app(tick_db, query={"src": "upload", uploads.KEEP_PARAM: "no-such-upload"})
    assert_no_exception(at)
    assert at.segmented_control(key="src").value == "live file"
    assert uploads.KEEP_PARAM not in at.query_params and at.query_params.get("src") in (None, [], "live file")
    notes = [i.value for i in at.sidebar.info]
    assert any("no longer held by the server" in n and "Upload the file again" in n for n in notes), notes
    assert "source: **live file**" in page_text(at)
    assert not at.error
    at.segmented_control(key="src").set_value("upload").run()  # the user's next choice clears the notice
    assert not any("no longer held" in i.value for i in at.sidebar.info)


def test_kept_uploads_are_bounded(monkeypatch):
    ds = uploads.combine([parse_csv("BTCUSDT-1m.csv", klines_csv(synthetic_bars(10)))])
    store = uploads._Kept()
    monkeypatch.setattr(uploads, "MAX_KEPT", 3)
    ids = [store.put(ds) for _ in range(5)]
    assert len(store) == 3 and store.get(ids[0]) is None and store.get(ids[-1]) is ds
    monkeypatch.setattr(uploads, "MAX_KEPT_BYTES", 1)   # over the byte budget: only the newest stays
    newest = store.put(ds)
    assert len(store) == 1 and store.get(newest) is ds


# ---------------------------------------------------------------- the import panel under `make demo`
def test_import_panel_on_the_demo_file_imports_into_the_live_file(tmp_path):
    import duckdb

    from tests.test_history_import import csv_text, make_rows, snapshot
    from tests.test_history_panel import run_upload
    from tickstore.connection import init_db, write_connection
    from tickstore.state import claim_file

    demo = tmp_path / "demo.duckdb"
    init_db(demo)
    with write_connection(demo) as con:
        claim_file(con, "demo")
    before = snapshot(demo)
    files = [("BTCUSDT-trades-2024-01-01.csv", csv_text(make_rows(40), "spot", "trades", False, "ms").encode(),
              "text/csv")]
    at = run_upload(demo, files)
    assert not at.exception and not at.error
    live = tmp_path / "ticks.duckdb"
    info = " ".join(i.value for i in at.info)
    assert f"the import goes into the live tick file `{live}` instead" in info and "**Upload** above" in info
    assert at.button(key="import_dump_go").label == "Import into ticks.duckdb"
    assert at.success[0].value.startswith(f"Imported 40 new ticks from 1 file(s) into `{live}`")
    assert snapshot(demo) == before                       # the simulated data is untouched
    with duckdb.connect(str(live), read_only=True) as con:
        assert con.execute("SELECT market, symbol, count(*) FROM ticks GROUP BY ALL").fetchall() == \
            [("spot", "BTCUSDT", 40)]


def test_import_panel_on_a_live_file_says_nothing_about_demo(tmp_path):
    from tests.test_history_panel import panel_app
    from streamlit.testing.v1 import AppTest
    from tickstore.connection import init_db

    db = tmp_path / "ticks.duckdb"
    init_db(db)
    share_apptest_caches()
    at = AppTest.from_function(panel_app, kwargs={"db_path": str(db)}, default_timeout=30).run()
    assert not at.info and at.button(key="import_dump_go").label == "Import into the tick file"


# ---------------------------------------------------------------- small wording
def test_hedge_methods_by_display_name():
    from dashboard import analysis
    from dashboard.backtest_ui import HEDGE_WORDS

    assert [analysis.method_name(m) for m in ("ols", "huber", "theil_sen", "kalman")] == \
        ["OLS", "Huber", "Theil-Sen", "Kalman"]
    assert HEDGE_WORDS["static"].format(m=analysis.method_name("theil_sen"), w=60).startswith("one Theil-Sen fit")


def test_one_duration_formatter_for_half_lives_and_holding_times():
    import numpy as np
    import pandas as pd

    from core.durations import duration_text
    from dashboard.tables import duration_text as table_text
    from quantlib.stattests import half_life

    assert [duration_text(x) for x in (0.25, 12, 96, 300, 7500, 273_600)] == \
        ["0.25 s", "12 s", "1 min 36 s", "5 min", "2 h 05 min", "3 d 4 h"]
    assert table_text(pd.Timedelta(seconds=96)) == "1 min 36 s" and table_text(None) == "—"
    rng = np.random.default_rng(3)
    x = np.zeros(2000)
    for i in range(1, len(x)):
        x[i] = 0.9 * x[i - 1] + rng.normal()
    hl = half_life(pd.Series(x, index=pd.date_range("2024-05-01", periods=len(x), freq="1s", tz="UTC")))
    assert f"(~{duration_text(hl.half_life_time.total_seconds())})" in hl.verdict
    assert "days" not in hl.verdict and "00:0" not in hl.verdict


def test_no_negative_zero_percent():
    import pandas as pd

    from dashboard import tables

    idx = pd.date_range("2024-05-01", periods=3, freq="1min", tz="UTC")
    bars = pd.DataFrame({"open": [100.0, 100.0, 100.0], "high": [100.01] * 3, "low": [99.99] * 3,
                         "close": [100.0, 100.0, 99.9999], "volume": [1.0] * 3, "quote_volume": [100.0] * 3,
                         "trades": [1] * 3}, index=idx)
    stats = tables.market_stats({"BTCUSDT": bars}, 60)
    assert stats.loc["BTCUSDT", "change"] == 0.0 and str(stats.loc["BTCUSDT", "change"]) == "0.0"
    assert tables.zero_small(-0.0123) == -0.0123
    assert tables._fmt(-0.00001, "+.2%") == "0.00%" and tables._fmt(-0.0123, "+.2%") == "-1.23%"


def test_alerts_missing_file_notice_is_a_sentence(app, tmp_path):
    at = app(tmp_path / "none.duckdb", page="app_pages/alerts.py")
    assert_no_exception(at)
    notes = [i.value for i in at.info if "Alert rules live in the tick file" in i.value]
    assert notes and notes[0].startswith("Tick file ") and ". Alert rules live in the tick file." in notes[0], notes


# ---------------------------------------------------------------- out-of-range numbers are not silently kept
@pytest.mark.parametrize("typed,used", [(0, 2), (1001, 1000), (-5, 2)])
def test_out_of_range_sma_says_so_and_uses_the_bound(app, tick_db, typed, used):
    at = app(tick_db)
    at.number_input(key="sma").set_value(typed).run()
    assert_no_exception(at)
    warnings = [w.value for w in at.warning]
    assert f"**SMA length (bars)**: {typed:,} is out of range; expected 2 to 1,000. Using {used:,}." in warnings
    overlays = [t["name"] for t in plotly_specs(at)[0]["data"] if str(t.get("name", "")).startswith("SMA")]
    assert overlays == [f"SMA {used}"], overlays
    at.number_input(key="sma").set_value(30).run()
    assert not any("out of range" in w.value for w in at.warning)


def test_out_of_range_window_and_bands(app, tick_db):
    at = app(tick_db, page="app_pages/pairs.py")
    at.number_input(key="win").set_value(2).run()
    at.number_input(key="zin").set_value(9.0).run()
    assert_no_exception(at)
    side = [w.value for w in at.sidebar.warning]
    assert "**Window (bars)**: 2 is out of range; expected 5 to 5,000. Using 5." in side, side
    assert any("**Entry band (|z|)**: 9 is out of range; expected 0.5 to 6. Using 6." == w.value for w in at.warning)


def test_out_of_range_backtest_entry(app, tick_db):
    at = app(tick_db, page="app_pages/backtest.py")
    at.number_input(key="bt_entry").set_value(0.1)
    next(b for b in at.button if b.label == "Run backtest").click().run()  # the form's submit
    assert_no_exception(at)
    assert any(w.value == "**Entry |z|**: 0.1 is out of range; expected 0.5 to 6. Using 0.5." for w in at.warning), \
        [w.value for w in at.warning]


def test_deleting_the_rule_a_history_filter_shows_resets_it_to_all_rules(app, tick_db):
    from alerts.rules import RuleStore

    r = RuleStore(tick_db).create({"symbol": "BTCUSDT", "metric": "price", "op": ">", "threshold": 1})
    at = app(tick_db, page="app_pages/alerts.py")
    at.selectbox(key="ah_rule").set_value(r.id).run()
    at.selectbox(key="alerts_rule").set_value(r.id).run()
    at.button(key="alerts_delete").click().run()
    assert_no_exception(at)
    for key, shown in (("ah_rule", "All rules"), ("alerts_rule", "+ New rule")):
        box = at.selectbox(key=key)
        assert box.index is not None and box.options[box.index] == shown, (key, box.value)
