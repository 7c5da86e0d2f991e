"""quantlib.indicators against closed forms, loops written here, and published RSI values."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantlib.indicators import ema, realized_volatility, rsi, sma, zscore

# StockCharts ChartSchool "Relative Strength Index (RSI)" worked example (cs-rsi.xls): closes and the
# published 14-period Wilder RSI, rounded to 2 decimals, starting at the 15th close.
STOCKCHARTS_CLOSE = [
    44.3389, 44.0902, 44.1497, 43.6124, 44.3278, 44.8264, 45.0955, 45.4245, 45.8433, 46.0826, 45.8931,
    46.0328, 45.6140, 46.2820, 46.2820, 46.0028, 46.0328, 46.4116, 46.2222, 45.6439, 46.2122, 46.2521,
    45.7137, 46.4515, 45.7835, 45.3548, 44.0288, 44.1783, 44.2181, 44.5672, 43.4205, 42.6628, 43.1314,
]
STOCKCHARTS_RSI = [70.53, 66.32, 66.55, 69.41, 66.36, 57.97, 62.93, 63.26, 56.06, 62.38, 54.71, 50.42,
                   39.99, 41.46, 41.87, 45.46, 37.30, 33.08, 37.77]


def _utc_series(values, freq="1min"):
    idx = pd.date_range("2024-01-01", periods=len(values), freq=freq, tz="UTC")
    return pd.Series(np.asarray(values, dtype=float), index=idx)


def _walk(n=500, seed=0):
    rng = np.random.default_rng(seed)
    return _utc_series(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))))


def test_sma_matches_convolution():
    s = _walk()
    out = sma(s, 20)
    ref = np.convolve(s.to_numpy(), np.ones(20) / 20, mode="valid")
    assert out.iloc[:19].isna().all()
    np.testing.assert_allclose(out.iloc[19:].to_numpy(), ref, rtol=1e-12)
    assert out.index.equals(s.index)


def test_ema_matches_recursion_seeded_with_first_value():
    s = _walk()
    alpha = 2 / (10 + 1)
    ref = [s.iloc[0]]
    for v in s.iloc[1:]:
        ref.append(alpha * v + (1 - alpha) * ref[-1])
    np.testing.assert_allclose(ema(s, 10).to_numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(ema(s.to_numpy(), 10).to_numpy(), ref, rtol=1e-12)  # plain arrays work


def test_rsi_matches_stockcharts_published_values():
    out = rsi(STOCKCHARTS_CLOSE, 14)
    assert out.iloc[:14].isna().all()
    np.testing.assert_array_equal(np.round(out.iloc[14:].to_numpy(), 2), STOCKCHARTS_RSI)


def test_rsi_hand_computed_small_example():
    # closes 1,2,3,2,3 -> changes +1,+1,-1,+1; n=3 seed at bar 3: gain 2/3, loss 1/3 -> RS 2 -> 66.67
    # bar 4: gain (2/3*2 + 1)/3 = 7/9, loss (1/3*2 + 0)/3 = 2/9 -> RS 3.5 -> 100 - 100/4.5 = 77.78
    out = rsi([1.0, 2.0, 3.0, 2.0, 3.0], 3)
    assert out.iloc[:3].isna().all()
    assert out.iloc[3] == pytest.approx(100 - 100 / 3)
    assert out.iloc[4] == pytest.approx(100 - 100 / 4.5)


def test_rsi_loop_reference_and_edge_cases():
    s = _walk(300, seed=4)
    d = np.diff(s.to_numpy())
    g, l = np.clip(d, 0, None), np.clip(-d, 0, None)
    ag, al = g[:14].mean(), l[:14].mean()
    ref = [100 - 100 / (1 + ag / al)]
    for gi, li in zip(g[14:], l[14:]):
        ag, al = (ag * 13 + gi) / 14, (al * 13 + li) / 14
        ref.append(100 - 100 / (1 + ag / al))
    np.testing.assert_allclose(rsi(s).iloc[14:].to_numpy(), ref, rtol=1e-10)
    assert (rsi(np.arange(1.0, 40.0)).dropna() == 100).all()  # only gains
    assert (rsi(np.full(30, 5.0)).dropna() == 50).all()  # flat
    with pytest.raises(ValueError, match="need >= 15 observations"):
        rsi(np.arange(1.0, 10.0))


def test_realized_volatility_and_annualization():
    s = _walk(400, seed=2)
    lr = np.diff(np.log(s.to_numpy()))
    per_bar = realized_volatility(s, 30)
    assert per_bar.iloc[:30].isna().all() and not np.isnan(per_bar.iloc[30])
    assert per_bar.iloc[30] == pytest.approx(np.std(lr[:30], ddof=1), rel=1e-12)
    assert per_bar.iloc[-1] == pytest.approx(np.std(lr[-30:], ddof=1), rel=1e-12)
    annual = realized_volatility(s, 30, timeframe="1m")
    np.testing.assert_allclose(annual.dropna(), per_bar.dropna() * math.sqrt(365 * 24 * 60), rtol=1e-12)
    hourly = realized_volatility(s, 30, timeframe="1h")
    assert hourly.iloc[-1] == pytest.approx(per_bar.iloc[-1] * math.sqrt(8760))
    with pytest.raises(ValueError, match="strictly positive"):
        realized_volatility(-s, 30)


def test_zscore_matches_manual_window():
    s = _walk(200, seed=5)
    z = zscore(s, 25)
    w = s.iloc[100 - 24 : 101].to_numpy()
    assert z.iloc[100] == pytest.approx((w[-1] - w.mean()) / w.std(ddof=1), rel=1e-10)
    assert z.iloc[:24].isna().all()
    flat = zscore(np.r_[np.full(30, 2.0), np.arange(10.0)], 10)
    assert flat.iloc[9:30].isna().all()  # flat window: std 0 -> NaN, never inf
    assert np.isfinite(flat.iloc[-1])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), t=st.integers(0, 149), n=st.integers(2, 30))
def test_causal_indicators_have_no_look_ahead(seed, t, n):
    rng = np.random.default_rng(seed)
    s = _utc_series(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 150))))
    changed = s.copy()
    changed.iloc[t + 1 :] = changed.iloc[t + 1 :] * np.exp(rng.normal(0, 0.2, 149 - t))
    for f in (lambda v: zscore(v, n), lambda v: sma(v, n), lambda v: ema(v, n), lambda v: rsi(v, n),
              lambda v: realized_volatility(v, n)):
        pd.testing.assert_series_equal(f(s).iloc[: t + 1], f(changed).iloc[: t + 1])


def test_input_validation():
    s = _walk(50)
    with pytest.raises(ValueError, match="NaN"):
        sma(s.where(s.index != s.index[7]), 5)
    with pytest.raises(ValueError, match="naive"):
        sma(s.tz_localize(None), 5)
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        zscore(s, 1)
    with pytest.raises(ValueError, match="1-D"):
        sma(np.ones((5, 2)), 2)
    ny = s.tz_convert("America/New_York")
    assert str(sma(ny, 5).index.tz) == "UTC"  # other zones are converted to UTC


@pytest.mark.parametrize("level", [1e-10, 1e-8, 1e-4, 1.0, 1e4, 1e9])
def test_zscore_is_scale_free(level):
    """The flat-window guard was absolute below 1 (std <= 1e-12 * max(|mean|, 1)): a 1e-10-level series got
    NaN z-scores on 40-60 % of bars. It is now relative to the window's magnitude."""
    rng = np.random.default_rng(8)  # 1m-like moves (5 bp per bar): a 30-bar std of ~0.2 % of the level
    s = _utc_series(np.exp(np.cumsum(rng.normal(0, 5e-4, 600))))
    ref = zscore(s, 30)
    out = zscore(s * level, 30)
    assert out.iloc[29:].notna().all()
    np.testing.assert_allclose(out.to_numpy()[29:], ref.to_numpy()[29:], rtol=1e-7, atol=1e-9)
    flat = zscore(level * np.r_[np.full(30, 2.0), 2.0 + np.arange(10.0)], 10)
    assert flat.iloc[9:30].isna().all() and np.isfinite(flat.iloc[-1])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), level=st.floats(1e-8, 1e9), n=st.integers(2, 40),
       length=st.integers(2, 80))
def test_property_zscore_scale_and_short_samples(seed, level, n, length):
    """Any level 1e-8..1e9, windows up to the sample length: z is NaN exactly during warm-up and on flat
    windows, finite elsewhere, bounded by (n-1)/sqrt(n), and the same as at unit scale."""
    rng = np.random.default_rng(seed)
    base = np.exp(np.cumsum(rng.normal(0, 0.01, length)))
    base[rng.random(length) < 0.2] = base[0]  # repeated prices make some flat windows
    z1, zl = zscore(base, n), zscore(base * level, n)
    assert z1.iloc[: n - 1].isna().all()
    np.testing.assert_allclose(zl.to_numpy(), z1.to_numpy(), rtol=1e-6, atol=1e-8)
    finite = zl.dropna()
    assert (finite.abs() <= (n - 1) / math.sqrt(n) + 1e-9).all()
