"""Uploads: CSV parsing and validation (unit), and analysing uploaded files in the pages (AppTest)."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from dashboard import export, tables, uploads
from dashboard.uploads import UploadError, parse_csv
from tests.conftest import assert_no_exception, make_tick_db, page_text, plotly_specs, table_value
from tickstore import queries

T0 = pd.Timestamp("2024-05-01T00:00:00Z")


def klines_csv(bars: pd.DataFrame, unit: str = "ms", header: bool = False) -> bytes:
    """Binance klines rows (open_time, o, h, l, c, v, close_time, quote_volume, count, taker_buy_v, taker_buy_q, 0)."""
    scale = {"ms": 1_000, "us": 1_000_000}[unit]
    t = (bars.index.as_unit("us").asi8 // 1_000_000) * scale
    rows = [f"{a},{o},{h},{lo},{c},{v},{a + 60 * scale - 1},{q},{n},{v / 2},{q / 2},0"
            for a, o, h, lo, c, v, q, n in zip(t, bars.open, bars.high, bars.low, bars.close, bars.volume,
                                                bars.quote_volume, bars.trades)]
    head = ",".join(uploads.KLINE_COLUMNS) + "\n" if header else ""
    return (head + "\n".join(rows) + "\n").encode()


def synthetic_bars(n: int = 240, seed: int = 1, price: float = 100.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    open_ = np.concatenate([[price], close[:-1]])
    high = np.maximum(open_, close) * 1.0005
    low = np.minimum(open_, close) * 0.9995
    vol = rng.uniform(1, 10, n)
    idx = pd.date_range(T0, periods=n, freq="1min", name="ts")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": vol,
                         "quote_volume": vol * close, "trades": rng.integers(1, 50, n)}, index=idx)


# ---------------------------------------------------------------- parsing (unit)
@pytest.mark.parametrize("unit,header", [("ms", False), ("us", False), ("ms", True)])
def test_binance_klines(unit, header):
    bars = synthetic_bars()
    p = parse_csv("BTCUSDT-1m-2024-05-01.csv", klines_csv(bars, unit, header))
    assert p.kind == "ohlc" and list(p.frames) == ["BTCUSDT"] and p.bar_seconds == 60
    got = p.frames["BTCUSDT"]
    assert got.index[0] == T0 and len(got) == len(bars)
    np.testing.assert_allclose(got["close"], bars["close"], rtol=1e-12)
    np.testing.assert_allclose(got["vwap"], bars["quote_volume"] / bars["volume"], rtol=1e-12)


def test_plain_ohlc_iso_and_epoch_seconds():
    text = "time,open,high,low,close,volume\n2024-05-01T00:00:00Z,1,2,0.5,1.5,10\n2024-05-01 00:05:00,1.5,2,1,1.8,5\n"
    p = parse_csv("x.csv", text.encode(), symbol="ethusdt")
    b = p.frames["ETHUSDT"]
    assert list(b.index) == [T0, T0 + pd.Timedelta("5min")] and p.bar_seconds == 300
    assert b["quote_volume"].iloc[0] == pytest.approx(10 * (2 + 0.5 + 1.5) / 3)  # typical-price estimate
    epoch = "timestamp,open,high,low,close,volume\n1714521600,1,2,0.5,1.5,10\n"
    assert parse_csv("SOLUSDT_1m.csv", epoch.encode()).frames["SOLUSDT"].index[0] == T0


def test_tick_csv_round_trips_our_own_download():
    ticks = pd.DataFrame({"trade_id": [1, 2, 3], "ts": pd.to_datetime(["2024-05-01T00:00:00.5Z"] * 2 +
                                                                        ["2024-05-01T00:00:01.25Z"]),
                          "price": [10.0, 10.5, 10.25], "qty": [1.0, 2.0, 0.5], "is_buyer_maker": [True, False, True]})
    p = parse_csv("whatever.csv", export.ticks_csv(ticks, "BTCUSDT"))
    assert p.kind == "ticks"
    t = p.frames["BTCUSDT"]
    assert list(t["trade_id"]) == [1, 2, 3] and list(t["is_buyer_maker"]) == [True, False, True]
    assert t["ts"].iloc[2] == pd.Timestamp("2024-05-01T00:00:01.25Z")


def test_binance_trades_dump_without_header():
    rows = "100,10.5,0.1,1.05,1714521600000,true,true\n101,10.6,0.2,2.12,1714521601000,false,true\n"
    p = parse_csv("ETHUSDT-trades-2024-05-01.csv", rows.encode())
    t = p.frames["ETHUSDT"]
    assert p.kind == "ticks" and list(t["trade_id"]) == [100, 101] and t["ts"].iloc[0] == T0


@pytest.mark.parametrize("name,body,expected", [
    ("BTCUSDT.csv", b"", "the file is empty"),
    ("BTCUSDT.csv", b"time,open,high,low,close,volume\n", "only a header row"),
    ("BTCUSDT.csv", b"time,price\n2024-05-01T00:00:00Z,1\n", "missing column(s) qty"),
    ("BTCUSDT.csv", b"date,open,high,close\n2024-05-01,1,2,1.5\n", "missing column(s) low, volume"),
    ("BTCUSDT.csv", b"foo,bar\n1,2\n", "unrecognised columns foo, bar"),
    ("BTCUSDT.csv", b"time,open,high,low,close,volume\nyesterday,1,2,0.5,1.5,10\n", "not timestamps (first: 'yesterday' on line 2)"),
    ("BTCUSDT.csv", b"time,open,high,low,close,volume\n99,1,2,0.5,1.5,10\n", "outside 2009"),
    ("BTCUSDT.csv", b"time,open,high,low,close,volume\n2024-05-01T00:00:00Z,1,0.9,0.5,1.5,10\n", "high/low do not bracket"),
    ("BTCUSDT.csv", b"time,open,high,low,close,volume\n2024-05-01T00:00:00Z,1,2,0.5,abc,10\n", "column `close`"),
    ("prices.csv", b"time,price,qty\n2024-05-01T00:00:00Z,1,2\n", "cannot tell which symbol"),
    ("BTCUSDT.csv", b"1,2,3\n", "3 columns without a header row"),
    ("BTCUSDT.csv", b"\xff\xfe\x00garbage", "not a text CSV"),
])
def test_rejections_say_what_is_wrong(name, body, expected):
    with pytest.raises(UploadError) as err:
        parse_csv(name, body)
    assert expected in str(err.value)
    assert str(err.value).startswith(name)


def _tick_file(n: int, edits: dict[tuple[int, int], str] = {}) -> bytes:
    """`time,price,qty,symbol,trade_id` rows (line 1 is the header); `edits` {(line, column): text}."""
    lines = ["time,price,qty,symbol,trade_id"]
    for i in range(n):
        t = (T0 + pd.Timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{t},{100 + i / 10},{i % 5 / 10},{['BTCUSDT', 'ethusdt'][i % 2]},{1000 + i}")
    for (line, col), text in edits.items():
        parts = lines[line - 1].split(",")
        parts[col] = text
        lines[line - 1] = ",".join(parts)
    return ("\n".join(lines) + "\n").encode()


def _outcome(name: str, body: bytes):
    try:
        p = parse_csv(name, body)
    except UploadError as exc:
        return str(exc)
    return {s: f.to_dict("list") for s, f in p.frames.items()}


CHUNKED_CASES = [
    ({(13, 1): "abc", (26, 1): "def", (4, 2): "zz"},
     "column `price`: 2 value(s) are not numbers (first: 'abc' on line 13)"),
    ({(13, 0): "yesterday", (26, 0): "nope", (4, 1): "zz"},
     "2 value(s) are not timestamps (first: 'yesterday' on line 13)"),
    ({(13, 0): "1800-01-01T00:00:00Z", (23, 0): "2200-01-01"}, "2 timestamp(s) outside 2009–2100 (first: "
                                                               "'1800-01-01T00:00:00Z' on line 13)"),
    ({(13, 0): "1714521600"}, "1 value(s) are not timestamps (first: '1714521600' on line 13)"),
    ({(13, 1): "-1", (26, 2): "-3"}, "2 row(s) with price <= 0 or negative qty (first on line 13)"),
    ({(9, 3): "../x", (20, 3): "<s>"}, "column `symbol`: '../x' on line 9 is not a symbol"),
    ({(13, 4): "x"}, None),   # a trade id that is no number: the ids are left out, the rest is kept
    ({}, None),
]


@pytest.mark.parametrize("edits,expected", CHUNKED_CASES)
@pytest.mark.parametrize("chunk_rows", [1, 3, 7])
def test_chunked_parse_equals_one_read(monkeypatch, edits, expected, chunk_rows):
    """Counts over the whole file, the first bad value and its line, and the parsed frames do not depend on
    how many rows are parsed at a time."""
    body = _tick_file(30, edits)
    whole = _outcome("BTCUSDT.csv", body)
    monkeypatch.setattr(uploads, "CHUNK_ROWS", chunk_rows)
    chunked = _outcome("BTCUSDT.csv", body)
    assert chunked == whole
    if expected is None:
        assert isinstance(chunked, dict) and sum(len(f["ts"]) for f in chunked.values()) == 30
        assert ("trade_id" in chunked["BTCUSDT"]) == (edits == {})
    else:
        assert expected in chunked, chunked


@pytest.mark.parametrize("chunk_rows", [1, 4])
def test_chunked_parse_of_klines_and_malformed_rows(monkeypatch, chunk_rows):
    kl = klines_csv(synthetic_bars(40)).decode().splitlines()
    bad_close = list(kl)
    bad_close[29] = ",".join(v if i != 4 else "abc" for i, v in enumerate(kl[29].split(",")))
    dup = kl + [kl[5]]
    extra = kl[:20] + [kl[20] + ",7"] + kl[21:]
    cases = [("\n".join(x) + "\n").encode() for x in (kl, bad_close, dup, extra)]
    whole = [_outcome("BTCUSDT-1m.csv", c) for c in cases]
    monkeypatch.setattr(uploads, "CHUNK_ROWS", chunk_rows)
    assert [_outcome("BTCUSDT-1m.csv", c) for c in cases] == whole
    assert "column `close`: 1 value(s) are not numbers (first: 'abc' on line 30)" in whole[1]
    assert "1 duplicate bar time(s)" in whole[2] and whole[3].startswith("BTCUSDT-1m.csv: line 21 has 13 comma-separated fields; expected 12")


def test_oversized_file_is_rejected_before_parsing():
    with pytest.raises(UploadError, match=r"the file is 2 MB; the limit is 1 MB"):
        parse_csv("BTCUSDT.csv", b"x" * (2 * 2**20), max_bytes=2**20)


def test_mixing_bars_and_ticks_is_rejected():
    a = parse_csv("BTCUSDT-1m.csv", klines_csv(synthetic_bars()))
    b = parse_csv("ETHUSDT-trades.csv", b"100,10.5,0.1,1.05,1714521600000,true,true\n")
    with pytest.raises(UploadError, match="mix OHLC bars and ticks"):
        uploads.combine([a, b])


def test_coarser_timeframe_aggregates_uploaded_bars():
    ds = uploads.combine([parse_csv("BTCUSDT-1m.csv", klines_csv(synthetic_bars(240)))])
    five, note = ds.bars("5m")
    b = five["BTCUSDT"]
    src = synthetic_bars(240)
    assert note is None and len(b) == 48
    assert b["open"].iloc[1] == pytest.approx(src["open"].iloc[5]) and b["close"].iloc[1] == pytest.approx(src["close"].iloc[9])
    assert b["high"].iloc[0] == pytest.approx(src["high"].iloc[:5].max())
    assert b["volume"].sum() == pytest.approx(src["volume"].sum())
    same, note = ds.bars("1s")
    assert len(same["BTCUSDT"]) == 240 and "shown as they are" in note


def test_uploaded_bars_are_aggregated_by_quantlib_bars():
    """One aggregation implementation: the upload path calls quantlib.bars.aggregate (which equals
    resampling the ticks and tickstore's SQL bars, see test_quantlib_bars)."""
    from quantlib.bars import aggregate

    assert not hasattr(uploads, "aggregate_bars")
    ds = uploads.combine([parse_csv("BTCUSDT-1m.csv", klines_csv(synthetic_bars(240)))])
    for tf in ("5m", "15m", "1h"):
        got, _ = ds.bars(tf)
        pd.testing.assert_frame_equal(got["BTCUSDT"], aggregate(ds.frames["BTCUSDT"], tf))


# ---------------------------------------------------------------- pages on uploaded data (AppTest)
def _upload(at, files, symbol=""):
    if symbol:
        at.text_input(key="upload_symbol").set_value(symbol)
    at.file_uploader(key="upload_files").set_value([(name, body, "text/csv") for name, body in files]).run()
    return at


@pytest.mark.slow
def test_uploaded_klines_drive_market_and_pairs(app, tick_db, tmp_path):
    # The uploaded bars come from a file with a fixed end: bars cut from the clock-anchored tick_db shift with
    # the second the suite runs, and on some seconds the 2 h window's Engle-Granger p-value crosses 5 %.
    source = make_tick_db(tmp_path / "upload-source.duckdb", end=dt.datetime(2024, 5, 1, 3, tzinfo=dt.UTC)).path
    frames = queries.bars_wide("spot", ["BTCUSDT", "ETHUSDT"], "1m", pd.Timestamp("2000-01-01", tz="UTC"),
                               path=source)
    files = [(f"{s}-1m-2024-05-01.csv", klines_csv(frames[s])) for s in ("BTCUSDT", "ETHUSDT")]
    at = app(tick_db, page="app_pages/data.py")
    _upload(at, files)
    assert_no_exception(at)
    assert "**Uploaded:** BTCUSDT-1m-2024-05-01.csv, ETHUSDT-1m-2024-05-01.csv" in page_text(at)
    next(b for b in at.button if b.label == "Analyse this upload").click().run()
    assert at.segmented_control(key="src").value == "upload"
    assert "The pages are analysing this upload" in page_text(at)
    at.switch_page("app_pages/market.py").run()
    assert_no_exception(at)
    assert "source: **upload**" in page_text(at)
    stats = table_value(at.table[0], tables.STATS_COLUMNS)
    assert stats.loc["ETHUSDT", "last"] == pytest.approx(frames["ETHUSDT"]["close"].iloc[-1])
    assert plotly_specs(at)[0]["data"][0]["type"] == "candlestick"
    at.switch_page("app_pages/pairs.py").run()
    assert_no_exception(at)
    assert any(r.startswith("cointegrated") for r in table_value(at.table[0], tables.TESTS_COLUMNS)["verdict"])
    at.switch_page("app_pages/backtest.py").run()
    assert_no_exception(at)
    assert len(plotly_specs(at)) == 1


@pytest.mark.slow
def test_uploaded_ticks_are_resampled(app, tick_db):
    ticks = queries.ticks("spot", "BTCUSDT", pd.Timestamp("2000-01-01", tz="UTC"), path=tick_db)
    at = app(tick_db, page="app_pages/data.py")
    _upload(at, [("mine.csv", export.ticks_csv(ticks, "BTCUSDT"))])
    next(b for b in at.button if b.label == "Analyse this upload").click().run()
    at.switch_page("app_pages/market.py").run()
    assert_no_exception(at)
    stats = table_value(at.table[0], tables.STATS_COLUMNS)
    assert stats.loc["BTCUSDT", "last"] == pytest.approx(ticks["price"].iloc[-1])
    summary = table_value(at.table[1], tables.SUMMARY_COLUMNS)
    assert int(summary.loc["BTCUSDT", "trades"]) == len(ticks)


@pytest.mark.parametrize("name,body,expected", [
    ("BTCUSDT.csv", b"", "the file is empty"),
    ("BTCUSDT.csv", b"a,b,c\nx,y,z\n", "unrecognised columns a, b, c"),
    ("BTCUSDT.csv", b"time,open,high,low,close,volume\n2024-13-45T00:00:00Z,1,2,0.5,1.5,10\n", "not timestamps"),
])
def test_bad_uploads_show_a_message_in_the_page(app, tick_db, name, body, expected):
    at = app(tick_db, page="app_pages/data.py")
    _upload(at, [(name, body)])
    assert_no_exception(at)
    errors = [e.value for e in at.error]
    assert any(expected in e for e in errors), errors
    assert "**Uploaded:**" not in page_text(at)


def test_oversized_upload_in_the_page(app, tick_db, monkeypatch):
    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 1024)
    at = app(tick_db, page="app_pages/data.py")
    _upload(at, [("BTCUSDT-1m.csv", klines_csv(synthetic_bars(100)))])
    assert_no_exception(at)
    assert any("the limit is 1 KB" in e.value for e in at.error), [e.value for e in at.error]


def test_upload_source_without_a_file_is_explained(app, tick_db):
    at = app(tick_db, query={"src": "upload"})
    assert_no_exception(at)
    assert "No file uploaded yet" in page_text(at)
    assert plotly_specs(at) == []
