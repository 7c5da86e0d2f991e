"""tickstore.queries.closes_wide / stored_symbols over a file whose older half lives in the Parquet archive.

Reference: the closes recomputed in pandas from the raw tick rows the file was built from (last trade by id per
epoch-aligned bar), independent of the SQL.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from tests.screen_db import END, MIDNIGHT, START, UNIVERSE, make_universe_db, universe_rows
from tickstore import queries


@pytest.fixture(scope="module")
def universe(tmp_path_factory):
    return make_universe_db(tmp_path_factory.mktemp("closes") / "ticks.duckdb")


def reference_closes(timeframe: str, start: dt.datetime, end: dt.datetime, symbols=None) -> pd.DataFrame:
    rows = pd.DataFrame(universe_rows(), columns=["market", "symbol", "trade_id", "ts_us", "price", "qty", "m", "r", "s"])
    rows = rows[(rows.ts_us >= start.timestamp() * 1e6) & (rows.ts_us < end.timestamp() * 1e6)]
    step = queries.tf_seconds(timeframe) * 1_000_000
    rows = rows.assign(bucket=(rows.ts_us // step) * step).sort_values("trade_id")
    wide = rows.groupby(["bucket", "symbol"])["price"].last().unstack("symbol")
    wide.index = pd.to_datetime(wide.index, unit="us", utc=True)
    return wide[sorted(wide.columns) if symbols is None else symbols]


def test_universe_is_split_between_archive_and_hot(universe):
    assert universe.archived_rows > 0
    with_archive = queries.closes_wide("spot", ["BTCUSDT"], "1h", START, END, path=universe.path)
    assert with_archive.index[0] == pd.Timestamp(START) and with_archive.index[-1] == pd.Timestamp(END) - pd.Timedelta("1h")
    assert (with_archive.index < pd.Timestamp(MIDNIGHT)).sum() == 4          # 20:00..23:00 come from Parquet


@pytest.mark.parametrize("timeframe", ["1m", "5m", "1h"])
def test_closes_equal_pandas_reference_over_archive_and_hot(universe, timeframe):
    got = queries.closes_wide("spot", None, timeframe, START, END, path=universe.path)
    ref = reference_closes(timeframe, START, END)
    assert list(got.columns) == sorted(UNIVERSE)
    assert isinstance(got.index, pd.DatetimeIndex) and str(got.index.tz) == "UTC" and got.index.is_monotonic_increasing
    pd.testing.assert_frame_equal(got, ref, check_names=False, check_freq=False, check_index_type=False, rtol=0, atol=0)


def test_closes_agree_with_bars(universe):
    got = queries.closes_wide("spot", ["ETHUSDT", "SOLUSDT"], "15m", START, END, path=universe.path)
    for sym in ("ETHUSDT", "SOLUSDT"):
        b = queries.bars("spot", [sym], "15m", START, END, path=universe.path).set_index("ts")["close"]
        np.testing.assert_array_equal(got[sym].dropna().to_numpy(), b.to_numpy())


def test_lookback_counts_back_from_the_bar_after_the_newest_tick(universe):
    got = queries.closes_wide("spot", None, "1m", dt.timedelta(hours=2), path=universe.path)
    assert got.attrs["end"] == END and got.attrs["start"] == END - dt.timedelta(hours=2)
    assert len(got) == 120 and got.index[-1] == pd.Timestamp(END) - pd.Timedelta("1m")
    # explicit end: exactly [end - lookback, end)
    end = dt.datetime(2024, 1, 2, 0, 30, tzinfo=dt.UTC)
    got = queries.closes_wide("spot", ["btcusdt", "ethusdt"], "5m", dt.timedelta(hours=1), end, path=universe.path)
    assert list(got.columns) == ["BTCUSDT", "ETHUSDT"]
    pd.testing.assert_frame_equal(got, reference_closes("5m", end - dt.timedelta(hours=1), end, ["BTCUSDT", "ETHUSDT"]),
                                  check_names=False, check_freq=False, rtol=0, atol=0)


def test_requested_symbol_without_trades_is_an_empty_column_and_empty_window_is_empty(universe):
    got = queries.closes_wide("spot", ["BTCUSDT", "NOPEUSDT"], "1h", START, END, path=universe.path)
    assert got["NOPEUSDT"].isna().all() and got["BTCUSDT"].notna().all()
    empty = queries.closes_wide("spot", None, "1m", dt.datetime(2023, 1, 1, tzinfo=dt.UTC),
                                dt.datetime(2023, 1, 2, tzinfo=dt.UTC), path=universe.path)
    assert empty.shape == (0, 0) and str(empty.index.tz) == "UTC"
    none = queries.closes_wide("usdm", None, "1m", dt.timedelta(hours=1), path=universe.path)
    assert none.empty and none.attrs["end"] is None


def test_stored_symbols_lists_hot_and_archived(universe):
    cat = queries.stored_symbols("spot", universe.path)
    assert list(cat["symbol"]) == sorted(UNIVERSE) and set(cat["market"]) == {"spot"}
    assert queries.stored_symbols("usdm", universe.path).empty


def test_bad_timeframe_is_a_value_error(universe):
    with pytest.raises(ValueError, match="unknown timeframe"):
        queries.closes_wide("spot", None, "7m", START, END, path=universe.path)
