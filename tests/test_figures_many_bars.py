"""The Market figure above CANDLE_MAX_BARS bars: lines in a band instead of one SVG path per candle / volume bar,
the same numbers drawn."""
from __future__ import annotations

import numpy as np
import pandas as pd

from dashboard import figures


def _bars(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    close = 100 + np.cumsum(rng.normal(0, 0.1, n))
    open_ = np.r_[close[0], close[:-1]]
    spread = rng.uniform(0.01, 0.2, n)
    idx = pd.date_range("2026-01-01", periods=n, freq="1s", tz="UTC")
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close) + spread,
                         "low": np.minimum(open_, close) - spread, "close": close,
                         "volume": rng.uniform(0, 5, n)}, index=idx)


def _fig(bars: pd.DataFrame) -> dict:
    return figures.market(bars, "BTCUSDT", {"SMA 20": bars["close"].rolling(20).mean()}, None, None, "u")


def test_up_to_the_limit_candles_and_volume_bars():
    fig = _fig(_bars(figures.CANDLE_MAX_BARS))
    types = [(t["type"], t["name"]) for t in fig["data"]]
    assert types[0] == ("candlestick", "BTCUSDT") and ("bar", "volume") in types


def test_above_the_limit_close_line_in_its_high_low_band_and_a_volume_line():
    bars = _bars(figures.CANDLE_MAX_BARS + 1)
    fig = _fig(bars)
    by_name = {t["name"]: t for t in fig["data"]}
    assert {t["type"] for t in fig["data"]} == {"scatter"}
    np.testing.assert_array_equal(by_name["BTCUSDT"]["y"], bars["close"].to_numpy())
    np.testing.assert_array_equal(by_name["high"]["y"], bars["high"].to_numpy())
    np.testing.assert_array_equal(by_name["low"]["y"], bars["low"].to_numpy())
    assert by_name["high"]["fill"] == "tonexty"  # the band fills down to the low line drawn just before it
    assert [t["name"] for t in fig["data"]].index("low") + 1 == [t["name"] for t in fig["data"]].index("high")
    np.testing.assert_array_equal(by_name["volume"]["y"], bars["volume"].to_numpy())
    assert by_name["volume"]["yaxis"] == "y2" and by_name["BTCUSDT"]["yaxis"] == "y"
    assert len(by_name["BTCUSDT"]["x"]) == len(bars)
