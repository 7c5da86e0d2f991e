"""quantlib.pairs: spread arithmetic, correlations against numpy/scipy, alignment, and pair_summary
consistency with the standalone functions on cointegrated and independent pairs."""
from __future__ import annotations

import math
import threading

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from quantlib import _blas, pairs, regression, stattests
from quantlib.pairs import align, correlation_matrix, pair_summary, rolling_correlation, spread


def _prices(n=1500, seed=0, cointegrated=True):
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")
    x = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    if cointegrated:
        e = rng.normal(0, 0.05, n)
        s = np.zeros(n)
        for t in range(1, n):
            s[t] = 0.9 * s[t - 1] + e[t]
        y = 20 + 1.5 * x + s
    else:
        y = 170 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    return pd.Series(y, idx, name="ETHUSDT"), pd.Series(x, idx, name="BTCUSDT")


def test_spread_with_scalar_and_time_varying_beta():
    y, x = _prices(50)
    np.testing.assert_allclose(spread(y, x, 1.5, 20.0), y - 20 - 1.5 * x)
    beta = pd.Series(np.linspace(1, 2, 50), index=y.index)
    out = spread(y, x, beta)
    np.testing.assert_allclose(out, y - beta * x)
    assert out.name == "spread" and out.index.equals(y.index)


def test_rolling_correlation_on_returns_and_levels():
    y, x = _prices(300, seed=1)
    out = rolling_correlation(y, x, 30)
    ry, rx = np.diff(np.log(y.to_numpy())), np.diff(np.log(x.to_numpy()))
    assert out.iloc[:30].isna().all()  # 30 returns need 31 prices
    assert out.iloc[30] == pytest.approx(np.corrcoef(ry[:30], rx[:30])[0, 1], rel=1e-10)
    assert out.iloc[-1] == pytest.approx(np.corrcoef(ry[-30:], rx[-30:])[0, 1], rel=1e-10)
    lv = rolling_correlation(y, x, 30, on="levels")
    assert lv.iloc[-1] == pytest.approx(np.corrcoef(y[-30:], x[-30:])[0, 1], rel=1e-10)
    with pytest.raises(ValueError, match="on must be one of"):
        rolling_correlation(y, x, 30, on="prices")


def test_correlation_matrix_on_log_returns():
    y, x = _prices(400, seed=2)
    z = pd.Series(50 * np.exp(np.cumsum(np.random.default_rng(3).normal(0, 1e-3, 400))), y.index, name="SOLUSDT")
    frame = pd.concat([y, x, z], axis=1)
    out = correlation_matrix(frame)
    rets = np.diff(np.log(frame.to_numpy()), axis=0)
    np.testing.assert_allclose(out.to_numpy(), np.corrcoef(rets.T), rtol=1e-10)
    assert list(out.columns) == ["ETHUSDT", "BTCUSDT", "SOLUSDT"]
    sp = correlation_matrix(frame, method="spearman")
    assert sp.iloc[0, 1] == pytest.approx(spearmanr(rets[:, 0], rets[:, 1]).statistic, rel=1e-10)
    with pytest.raises(ValueError, match="NaN"):
        correlation_matrix(frame.assign(SOLUSDT=frame.SOLUSDT.where(frame.index != frame.index[5])))


def test_align_inner_and_ffill():
    idx = pd.date_range("2024-01-01", periods=6, freq="1s", tz="UTC")
    a = pd.Series([1.0, 2, 3, 4, 5, 6], idx, name="A")
    b = pd.Series([10.0, 30, 60], idx[[0, 2, 5]], name="B")
    ia, ib = align(a, b)
    assert list(ia) == [1, 3, 6] and list(ib) == [10, 30, 60] and ia.name == "A"
    fa, fb = align(a, b, how="ffill")
    assert list(fa) == [1, 2, 3, 4, 5, 6] and list(fb) == [10, 10, 30, 30, 30, 60]


def test_pair_summary_on_a_cointegrated_pair():
    y, x = _prices(seed=4)
    ps = pair_summary(y, x, window=60, timeframe="1m")
    assert (ps.y_name, ps.x_name, ps.nobs) == ("ETHUSDT", "BTCUSDT", 1500)
    ref = regression.hedge_ratio(y, x)
    assert ps.hedge.beta == pytest.approx(ref.beta) and ps.hedge.beta == pytest.approx(1.5, abs=0.05)
    np.testing.assert_allclose(ps.spread, ref.residuals)
    assert ps.adf.statistic == pytest.approx(stattests.adf(ref.residuals).statistic)
    assert ps.engle_granger.cointegrated and ps.johansen.rank_trace >= 1
    assert ps.half_life.mean_reverting
    assert ps.half_life.half_life == pytest.approx(-math.log(2) / math.log(0.9), rel=0.35)
    assert ps.hurst.hurst < 0.45
    assert ps.zscore.index.equals(y.index) and ps.zscore.iloc[:59].isna().all()
    assert math.isfinite(ps.last_zscore) and ps.last_zscore == ps.zscore.iloc[-1]
    assert ps.volatility_x == pytest.approx(1e-3 * math.sqrt(525_600), rel=0.1)
    table = ps.table()
    assert list(table.columns) == ["test", "statistic", "p_value", "verdict"]
    assert {"Engle-Granger", "ADF on spread", "Johansen trace", "half-life (bars)", "Hurst exponent"} <= set(table.test)
    assert table.set_index("test").loc["Engle-Granger", "p_value"] == ps.engle_granger.pvalue
    assert ps.to_frame().equals(table) and "ETHUSDT ~ BTCUSDT" in ps.summary()


def test_pair_summary_on_independent_walks_and_other_methods():
    y, x = _prices(seed=5, cointegrated=False)
    ps = pair_summary(y, x, window=60)
    assert not ps.engle_granger.cointegrated
    assert "not cointegrated" in ps.table().set_index("test").loc["Engle-Granger", "verdict"]
    robust = pair_summary(*_prices(seed=4), window=60, method="huber")
    assert robust.hedge.method == "huber" and robust.hedge.beta == pytest.approx(1.5, abs=0.05)


def test_pair_summary_validation():
    y, x = _prices(40)
    with pytest.raises(ValueError, match="need >= 61 bars, got 40"):
        pair_summary(y, x, window=60)
    with pytest.raises(ValueError, match="same length"):
        pair_summary(y, x.iloc[:-1])
    with pytest.raises(ValueError, match="strictly positive"):
        pair_summary(-y, x, window=10)


def test_single_threaded_blas_limits_and_restores():
    from threadpoolctl import threadpool_info

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    seen = []

    @_blas.single_threaded
    def inner():
        seen.append(blas_threads())

    @_blas.single_threaded
    def outer():
        inner()
        seen.append(blas_threads())

    outer()
    assert seen == [[1] * len(before)] * 2  # limited inside, also after a nested call returned
    assert blas_threads() == before
    worker = threading.Thread(target=outer)  # other threads may call it; nothing breaks or sticks
    worker.start()
    worker.join()
    assert blas_threads() == before


def test_spread_rejects_coefficients_on_another_index():
    """A beta Series on another index used to be reindexed silently (100 % NaN spread)."""
    y, x = _prices(50)
    other = pd.Series(1.5, index=y.index + pd.Timedelta(days=1))
    with pytest.raises(ValueError, match="beta must share y's index"):
        spread(y, x, other)
    with pytest.raises(ValueError, match="alpha must share y's index"):
        spread(y, x, 1.5, alpha=other)
    with pytest.raises(ValueError, match="one value per bar"):
        spread(y, x, np.ones(49))
    with pytest.raises(ValueError, match="beta must be finite"):
        spread(y, x, float("nan"))
    np.testing.assert_allclose(spread(y, x, np.full(50, 1.5), 20.0), y - 20 - 1.5 * x)
    warm = pd.Series(np.r_[np.full(10, np.nan), np.full(40, 1.5)], index=y.index)  # a rolling fit's warm-up
    assert spread(y, x, warm).isna().sum() == 10


def test_align_rejects_duplicates_and_mixed_time_zones():
    idx = pd.date_range("2024-01-01", periods=5, freq="1s", tz="UTC")
    a = pd.Series(np.arange(5.0), idx, name="A")
    dup = pd.Series([1.0, 2.0, 3.0], idx[[0, 1, 1]], name="B")
    with pytest.raises(ValueError, match="x has 1 duplicate timestamps"):
        align(a, dup)
    with pytest.raises(ValueError, match="y has 1 duplicate timestamps"):
        align(dup, a, how="ffill")
    naive = pd.Series(np.arange(5.0), idx.tz_localize(None), name="N")
    with pytest.raises(ValueError, match="x has a naive DatetimeIndex"):
        align(a, naive)  # used to return two empty series
    with pytest.raises(ValueError, match="both have a DatetimeIndex"):
        align(a, pd.Series(np.arange(5.0)))
    tokyo = a.tz_convert("Asia/Tokyo").rename("T")
    ia, it = align(a, tokyo)
    assert len(ia) == 5 and str(ia.index.tz) == "UTC" and ia.index.equals(it.index)


@pytest.mark.parametrize("level", [1e-8, 1e-4, 1.0, 1e4, 1e9])
def test_pair_summary_is_scale_free(level):
    """Every number of the pair summary that is unit-free (tests, half-life, Hurst, z-scores) is the same for
    legs at 1e-8 or 1e9."""
    y, x = _prices(600, seed=8)
    ref = pair_summary(y, x, window=60)
    out = pair_summary(y * level, x * level, window=60)
    assert out.engle_granger.statistic == pytest.approx(ref.engle_granger.statistic, rel=1e-6)
    assert out.adf.statistic == pytest.approx(ref.adf.statistic, rel=1e-6)
    assert out.half_life.half_life == pytest.approx(ref.half_life.half_life, rel=1e-6)
    assert out.hurst.hurst == pytest.approx(ref.hurst.hurst, rel=1e-6)
    np.testing.assert_allclose(out.zscore.to_numpy(), ref.zscore.to_numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out.johansen.trace_stat, ref.johansen.trace_stat, rtol=1e-5)


def test_pair_summary_with_a_constant_leg_says_so():
    y, _ = _prices(200, seed=9)
    peg = pd.Series(1.0, index=y.index, name="USDCUSDT")
    with pytest.raises(ValueError, match="constant"):
        pair_summary(y, peg, window=30)
    with pytest.raises(ValueError, match="constant"):  # the peg as y: used to read "cointegrated, p < 0.001"
        pair_summary(peg, y, window=30)


@pytest.mark.parametrize("method", ["ols", "huber", "theil_sen"])
def test_pair_summary_causal_zscore_has_no_look_ahead(method):
    """The audit: changing bars >= 400 moved the in-sample z-score history (full-sample hedge) by up to 1.96
    while the Pairs page plotted it against entry / exit bands. `zscore_causal` uses a hedge refitted on the
    bars up to each bar, so the past never moves; the in-sample one is kept for the tests table."""
    y, x = _prices(800, seed=10)
    y2 = y.copy()
    y2.iloc[400:] = y2.iloc[400:] * np.exp(np.linspace(0, 0.05, 400))  # the future drifts away
    a, b = pair_summary(y, x, window=60, method=method), pair_summary(y2, x, window=60, method=method)
    pd.testing.assert_series_equal(a.zscore_causal.iloc[:400], b.zscore_causal.iloc[:400])
    pd.testing.assert_series_equal(a.spread_causal.iloc[:400], b.spread_causal.iloc[:400])
    assert (a.zscore.iloc[60:400] - b.zscore.iloc[60:400]).abs().max() > 0.05  # the in-sample one moves
    warm = pairs.CAUSAL_WARMUP  # the first fit on 20 bars, then a 60-bar z-score: z from bar 20 + 60 - 1
    live = regression.expanding_hedge_ratio(y, x, warm, method=method)
    np.testing.assert_allclose(a.spread_causal, y - live["alpha"] - live["beta"] * x)
    assert a.spread_causal.iloc[: warm - 1].isna().all() and a.spread_causal.iloc[warm - 1 :].notna().all()
    assert a.zscore_causal.iloc[: warm + 60 - 2].isna().all() and a.zscore_causal.iloc[warm + 60 - 2 :].notna().all()
    assert a.spread_causal.iloc[-1] == pytest.approx(a.spread.iloc[-1], rel=1e-6, abs=1e-9)  # last bar: same fit
    assert "in-sample" in a.table().set_index("test").loc["latest z-score", "verdict"]


def test_pair_summary_volatility_annualized_from_the_index():
    """Daily bars with no timeframe: annualized by 365 (the observed rate), not left per bar."""
    y, x = _prices(400, seed=11)
    daily = pd.date_range("2023-01-01", periods=400, freq="1D", tz="UTC")
    ps = pair_summary(y.set_axis(daily), x.set_axis(daily), window=30)
    rx = np.diff(np.log(x.to_numpy()))
    assert ps.volatility_x == pytest.approx(rx.std(ddof=1) * math.sqrt(365), rel=1e-9)
