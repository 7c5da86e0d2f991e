"""quantlib.bars: hand-checked bars, a pandas groupby reference, the empty-bar policy, and agreement with
tickstore's SQL resampling on the same ticks in a real DuckDB file."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantlib.bars import BAR_COLUMNS, aggregate, fill_gaps, resample
from quantlib.timeframes import TIMEFRAMES, bars_per_year, timeframe_seconds

T0 = pd.Timestamp("2024-03-01 12:00:00", tz="UTC")


def _ticks(offsets_s, prices, qtys, ids=None) -> pd.DataFrame:
    df = pd.DataFrame({"ts": T0 + pd.to_timedelta(offsets_s, unit="s"), "price": prices, "qty": qtys})
    if ids is not None:
        df["trade_id"] = ids
    return df


def _random_ticks(seed: int, n: int = 3000, span_s: float = 4 * 3600, unit: str = "us") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    off = np.sort(rng.uniform(0, span_s, n))
    if n > 20:
        off[10:20] = off[10]  # a run of trades with the same timestamp
    ts = (T0 + pd.to_timedelta(np.round(off * 1e6).astype(np.int64), unit="us")).as_unit(unit)
    return pd.DataFrame({
        "ts": ts, "price": 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n))),
        "qty": rng.exponential(0.5, n).round(6), "trade_id": np.arange(1_000, 1_000 + n),
    })


def _pandas_reference(ticks: pd.DataFrame, tf: str) -> pd.DataFrame:
    """Independent reference: pandas groupby on ts floored to the bar length (ticks already ordered)."""
    t = ticks.assign(bucket=ticks["ts"].dt.floor(f"{timeframe_seconds(tf)}s"), notional=ticks.price * ticks.qty)
    g = t.groupby("bucket")
    ref = pd.DataFrame({
        "open": g.price.first(), "high": g.price.max(), "low": g.price.min(), "close": g.price.last(),
        "volume": g.qty.sum(), "quote_volume": g.notional.sum(), "trades": g.price.count().astype("int64"),
    })
    ref["vwap"] = (ref.quote_volume / ref.volume).where(ref.volume > 0)
    ref.index.name = "ts"
    return ref


def test_timeframes():
    assert TIMEFRAMES == {"1s": 1, "5s": 5, "15s": 15, "1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400,
                          "1d": 86400}
    assert bars_per_year("1m") == 525_600
    assert bars_per_year("1h") == 8_760
    with pytest.raises(ValueError, match="1s, 5s, 15s, 1m, 5m"):
        timeframe_seconds("2m")


def test_hand_example_with_trade_id_ties_and_unsorted_input():
    # 12:00:00.5 p=1 q=1 | 12:00:59 p=3 q=1 id 3 | 12:00:59 p=2 q=2 id 2 | 12:03:00 p=5 q=0 (zero qty)
    ticks = _ticks([0.5, 59, 59, 180], [1.0, 3.0, 2.0, 5.0], [1.0, 1.0, 2.0, 0.0], ids=[1, 3, 2, 4])
    bars = resample(ticks.iloc[::-1], "1m")  # reversed input: order comes from (ts, trade_id)
    assert list(bars.columns) == list(BAR_COLUMNS)
    assert bars.index.name == "ts" and str(bars.index.tz) == "UTC"
    assert list(bars.index) == [T0, T0 + pd.Timedelta(minutes=3)]  # 12:01, 12:02 have no trades: dropped
    first = bars.iloc[0]
    assert (first.open, first.high, first.low, first.close) == (1.0, 3.0, 1.0, 3.0)  # close: id 3 after id 2
    assert (first.volume, first.quote_volume, first.trades) == (4.0, 8.0, 3)
    assert first.vwap == pytest.approx(2.0)
    assert bars.iloc[1].volume == 0 and np.isnan(bars.iloc[1].vwap)
    assert bars["trades"].dtype == np.int64
    one_s = resample(ticks.set_index("ts"), "1s")  # ts as the index works too
    assert one_s.loc[T0 + pd.Timedelta(seconds=59), ["open", "close"]].tolist() == [2.0, 3.0]


def test_without_trade_id_input_order_breaks_ties():
    ticks = _ticks([1, 1, 1], [10.0, 11.0, 9.0], [1, 1, 1])
    bar = resample(ticks, "1m").iloc[0]
    assert (bar.open, bar.close, bar.high, bar.low) == (10.0, 9.0, 11.0, 9.0)


@pytest.mark.parametrize("tf", ["1s", "1m", "5m", "15m", "1h"])
def test_matches_pandas_groupby_reference(tf):
    ticks = _random_ticks(seed=7)
    bars = resample(ticks, tf)
    ref = _pandas_reference(ticks, tf)
    pd.testing.assert_frame_equal(bars, ref[list(BAR_COLUMNS)], check_exact=False, rtol=1e-12, check_freq=False)
    step = timeframe_seconds(tf) * 1_000_000
    assert (bars.index.as_unit("us").asi8 % step == 0).all()  # epoch-aligned bar starts


def test_nanosecond_and_other_timezone_input():
    ticks = _random_ticks(seed=3, n=500, unit="ns")
    us = _random_ticks(seed=3, n=500, unit="us")
    a, b = resample(ticks, "1m"), resample(us, "1m")
    np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float))
    assert a.index.as_unit("us").equals(b.index)
    tokyo = us.assign(ts=us.ts.dt.tz_convert("Asia/Tokyo"))
    pd.testing.assert_frame_equal(resample(tokyo, "1h"), resample(us, "1h"))


def test_empty_input_gives_empty_frame_with_columns():
    empty = _random_ticks(seed=1).iloc[:0]
    out = resample(empty, "5m")
    assert out.empty and list(out.columns) == list(BAR_COLUMNS) and out.index.name == "ts"
    assert fill_gaps(out, "5m").empty


def test_fill_gaps_carries_close_with_zero_volume_and_flag():
    ticks = _ticks([0.5, 59, 59, 180], [1.0, 3.0, 2.0, 5.0], [1.0, 1.0, 2.0, 0.5], ids=[1, 3, 2, 4])
    bars = resample(ticks, "1m")
    grid = fill_gaps(bars, "1m")
    assert len(grid) == 4 and grid["filled"].tolist() == [False, True, True, False]
    gap = grid.iloc[1]
    assert (gap.open, gap.high, gap.low, gap.close) == (3.0, 3.0, 3.0, 3.0)
    assert (gap.volume, gap.quote_volume, gap.trades) == (0.0, 0.0, 0) and np.isnan(gap.vwap)
    pd.testing.assert_frame_equal(grid.loc[~grid.filled, list(BAR_COLUMNS)], bars, check_freq=False)
    with pytest.raises(ValueError, match="grid"):
        fill_gaps(bars.set_axis([T0, T0 + pd.Timedelta(seconds=90)]), "1m")


@pytest.mark.parametrize("bad, match", [
    (lambda t: t.drop(columns="qty"), "missing columns"),
    (lambda t: t.assign(ts=t.ts.dt.tz_localize(None)), "naive"),
    (lambda t: t.assign(price=np.where(t.index == 5, np.nan, t.price)), "NaN"),
    (lambda t: t.assign(price=-t.price), "price > 0"),
    (lambda t: t.rename(columns={"ts": "time"}), "'ts' column"),
])
def test_bad_ticks_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        resample(bad(_random_ticks(seed=2, n=50)), "1m")
    with pytest.raises(ValueError, match="unknown timeframe"):
        resample(_random_ticks(seed=2, n=50), "7m")


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 300), tf=st.sampled_from(["1s", "1m", "5m"]))
def test_properties_conservation_and_order_invariance(seed, n, tf):
    ticks = _random_ticks(seed, n=n, span_s=900)
    bars = resample(ticks, tf)
    assert bars["trades"].sum() == n
    assert bars["volume"].sum() == pytest.approx(ticks.qty.sum())
    assert (bars.high >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars.low <= bars[["open", "close"]].min(axis=1)).all()
    assert bars.index.is_monotonic_increasing and bars.index.is_unique
    shuffled = ticks.sample(frac=1.0, random_state=seed)
    pd.testing.assert_frame_equal(resample(shuffled, tf), bars)


def test_agrees_with_tickstore_sql_resampling(tmp_path):
    """Same ticks through tickstore (DuckDB SQL bars) and quantlib.bars.resample."""
    queries = pytest.importorskip("tickstore.queries")
    connection = pytest.importorskip("tickstore.connection")
    writer = pytest.importorskip("tickstore.writer")
    ticks = _random_ticks(seed=11, n=4000, span_s=3 * 3600)
    ticks = ticks[ticks.index % 7 != 3]  # leave holes so some 1s bars are empty
    path = tmp_path / "ticks.duckdb"
    connection.init_db(path)
    ts_us = ticks.ts.dt.as_unit("us").astype("int64")
    rows = [("spot", "BTCUSDT", int(i), int(t), float(p), float(q), False, int(t), "test")
            for i, t, p, q in zip(ticks.trade_id, ts_us, ticks.price, ticks.qty)]
    with connection.write_connection(path) as con:
        writer.insert_batch(con, writer.rows_to_arrow(rows))
    for tf in TIMEFRAMES:  # the one table both sides read (core.timeframes)
        sql = queries.bars("spot", ["BTCUSDT"], tf, T0 - pd.Timedelta(days=1), path=path)
        sql = sql.drop(columns="symbol").set_index("ts")
        ours = resample(ticks, tf)
        assert len(sql) == len(ours), tf
        assert (sql.index.as_unit("us") == ours.index.as_unit("us")).all(), tf
        np.testing.assert_array_equal(sql["trades"].to_numpy(), ours["trades"].to_numpy())
        np.testing.assert_allclose(sql[list(BAR_COLUMNS)].to_numpy(float), ours.to_numpy(float), rtol=1e-12)


def test_string_trade_ids_are_read_as_numbers():
    """Trade ids as text (a CSV read with dtype=str) used to crash np.diff with a TypeError."""
    ticks = _random_ticks(seed=4, n=400)
    as_text = ticks.assign(trade_id=ticks.trade_id.astype(str))
    pd.testing.assert_frame_equal(resample(as_text, "1m"), resample(ticks, "1m"))
    shuffled = as_text.sample(frac=1.0, random_state=1)
    pd.testing.assert_frame_equal(resample(shuffled, "1m"), resample(ticks, "1m"))
    with pytest.raises(ValueError, match="'trade_id' must be integers; 1 value"):
        resample(as_text.assign(trade_id=np.where(as_text.index == 7, "abc", as_text.trade_id)), "1m")
    with pytest.raises(ValueError, match="'trade_id' must be integers"):
        resample(ticks.assign(trade_id=ticks.trade_id + 0.5), "1m")


@pytest.mark.parametrize("fine, coarse", [("1s", "1m"), ("1s", "5m"), ("1m", "5m"), ("1m", "1h"), ("5m", "15m"),
                                          ("15m", "1h")])
def test_aggregate_finer_bars_equals_resampling_the_ticks(fine, coarse):
    """One resampling definition: bars aggregated from finer bars are the bars of the ticks (and so, by
    test_agrees_with_tickstore_sql_resampling, tickstore's SQL bars)."""
    ticks = _random_ticks(seed=21, n=5000, span_s=6 * 3600)
    ticks = ticks[ticks.index % 5 != 2]
    out = aggregate(resample(ticks, fine), coarse)
    pd.testing.assert_frame_equal(out, resample(ticks, coarse), check_exact=False, rtol=1e-12, check_freq=False)
    assert aggregate(resample(ticks, fine), timeframe_seconds(coarse)).equals(out)


def test_aggregate_validation_and_empty_input():
    bars = resample(_random_ticks(seed=2, n=300), "5m")
    assert aggregate(bars.iloc[:0], "1h").empty
    with pytest.raises(ValueError, match="longer than the 60 s target"):
        aggregate(bars, "1m")
    with pytest.raises(ValueError, match="missing columns"):
        aggregate(bars.drop(columns="vwap"), "1h")
    with pytest.raises(ValueError, match="unknown timeframe"):
        aggregate(bars, "7m")
    with pytest.raises(ValueError, match="tz-aware"):
        aggregate(bars.tz_localize(None), "1h")


def test_aggregate_agrees_with_tickstore_sql_resampling(tmp_path):
    queries = pytest.importorskip("tickstore.queries")
    connection = pytest.importorskip("tickstore.connection")
    writer = pytest.importorskip("tickstore.writer")
    ticks = _random_ticks(seed=13, n=3000, span_s=2 * 3600)
    path = tmp_path / "ticks.duckdb"
    connection.init_db(path)
    ts_us = ticks.ts.dt.as_unit("us").astype("int64")
    rows = [("spot", "ETHUSDT", int(i), int(t), float(p), float(q), False, int(t), "test")
            for i, t, p, q in zip(ticks.trade_id, ts_us, ticks.price, ticks.qty)]
    with connection.write_connection(path) as con:
        writer.insert_batch(con, writer.rows_to_arrow(rows))
    one_s = queries.bars("spot", ["ETHUSDT"], "1s", T0 - pd.Timedelta(days=1), path=path)
    one_s = one_s.drop(columns="symbol").set_index("ts")
    for tf in ("1m", "5m", "15m", "1h"):
        sql = queries.bars("spot", ["ETHUSDT"], tf, T0 - pd.Timedelta(days=1), path=path)
        sql = sql.drop(columns="symbol").set_index("ts")
        ours = aggregate(one_s, tf)
        assert (sql.index.as_unit("us") == ours.index.as_unit("us")).all(), tf
        np.testing.assert_allclose(sql[list(BAR_COLUMNS)].to_numpy(float), ours.to_numpy(float), rtol=1e-12)
