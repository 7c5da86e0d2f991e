"""quantlib.regression against statsmodels / scipy / closed forms, robustness to outliers, rolling and
Kalman hedge ratios against independent implementations, and causality of the time-varying ones."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import theilslopes
from statsmodels.regression.rolling import RollingOLS
from threadpoolctl import threadpool_limits

from quantlib.regression import expanding_hedge_ratio, hedge_ratio, kalman_hedge_ratio, rolling_hedge_ratio



@pytest.fixture(autouse=True)
def _one_blas_thread():
    """The statsmodels references run with one BLAS thread too (fast and steady on a busy machine)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield

def _pair(n=1000, beta=1.5, alpha=2.0, noise=1.0, seed=0):
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")
    x = 100 + np.cumsum(rng.normal(0, 1, n))
    y = alpha + beta * x + rng.normal(0, noise, n)
    return pd.Series(y, idx, name="Y"), pd.Series(x, idx, name="X")


@pytest.mark.parametrize("add_const", [True, False])
def test_ols_matches_statsmodels(add_const):
    y, x = _pair(seed=1)
    exog = sm.add_constant(x.to_numpy()) if add_const else x.to_numpy()[:, None]
    ref = sm.OLS(y.to_numpy(), exog).fit()
    h = hedge_ratio(y, x, "ols", add_const=add_const)
    assert h.beta == pytest.approx(ref.params[-1], rel=1e-10)
    assert h.alpha == pytest.approx(ref.params[0] if add_const else 0.0, rel=1e-8, abs=1e-12)
    assert h.r_squared == pytest.approx(ref.rsquared, rel=1e-10)
    assert h.beta_stderr == pytest.approx(ref.bse[-1], rel=1e-8)
    np.testing.assert_allclose(h.residuals.to_numpy(), ref.resid, atol=1e-8)
    assert h.residuals.index.equals(y.index) and h.nobs == len(y)
    assert "ols" in h.summary()


def test_huber_matches_statsmodels_rlm():
    y, x = _pair(seed=2)
    ref = sm.RLM(y.to_numpy(), sm.add_constant(x.to_numpy()), M=sm.robust.norms.HuberT()).fit()
    h = hedge_ratio(y, x, "huber")
    assert (h.alpha, h.beta) == pytest.approx(tuple(ref.params), rel=1e-10)


def test_theil_sen_exact_matches_scipy_and_sampled_is_close():
    y, x = _pair(n=400, seed=3)
    ref = theilslopes(y.to_numpy(), x.to_numpy())
    h = hedge_ratio(y, x, "theil_sen")
    assert h.beta == pytest.approx(ref.slope, rel=1e-12)
    assert h.alpha == pytest.approx(ref.intercept, rel=1e-10)
    sampled = hedge_ratio(y, x, "theil_sen", max_pairs=20_000, seed=5)
    assert sampled.beta == pytest.approx(ref.slope, abs=0.01)
    no_const = hedge_ratio(y, x, "theil_sen", add_const=False)
    assert no_const.alpha == 0 and no_const.beta == pytest.approx(np.median(y / x))


def test_tls_matches_closed_form_and_is_symmetric():
    y, x = _pair(n=500, noise=3.0, seed=4)
    xv, yv = x.to_numpy(), y.to_numpy()
    sxx, syy = np.var(xv), np.var(yv)
    sxy = np.mean((xv - xv.mean()) * (yv - yv.mean()))
    closed = (syy - sxx + math.sqrt((syy - sxx) ** 2 + 4 * sxy**2)) / (2 * sxy)  # Deming, delta = 1
    h = hedge_ratio(y, x, "tls")
    assert h.beta == pytest.approx(closed, rel=1e-10)
    assert h.alpha == pytest.approx(yv.mean() - closed * xv.mean(), rel=1e-8)
    # orthogonal regression treats both legs alike: x on y gives exactly 1 / beta
    assert hedge_ratio(x, y, "tls").beta == pytest.approx(1 / h.beta, rel=1e-10)
    # OLS is attenuated relative to TLS when x is noisy
    assert hedge_ratio(y, x, "ols").beta < h.beta


def test_robust_methods_resist_gross_outliers_while_ols_is_pulled():
    rng = np.random.default_rng(6)
    n = 2000
    x = rng.uniform(50, 150, n)
    y = 10 + 1.5 * x + rng.normal(0, 1, n)
    bad = rng.choice(n, size=n // 20, replace=False)  # 5 % gross outliers
    y[bad] += 3.0 * (x[bad] - 50) + rng.normal(0, 5, bad.size)
    ols = hedge_ratio(y, x, "ols").beta
    assert abs(ols - 1.5) > 0.1
    for method in ("huber", "theil_sen"):
        assert hedge_ratio(y, x, method).beta == pytest.approx(1.5, abs=0.03), method


@pytest.mark.parametrize("method", ["ols", "huber", "theil_sen", "tls"])
def test_every_method_recovers_beta_without_intercept(method):
    rng = np.random.default_rng(7)
    x = rng.uniform(10, 20, 600)
    y = 0.8 * x + rng.normal(0, 0.05, 600)
    h = hedge_ratio(y, x, method, add_const=False)
    assert h.alpha == 0 and h.beta == pytest.approx(0.8, abs=0.01)


def test_rolling_ols_matches_statsmodels_rolling_ols_and_a_loop():
    y, x = _pair(n=1500, seed=8)
    y = y + 1e4  # large levels: the closed form must stay accurate
    out = rolling_hedge_ratio(y, x, 60)
    ref = RollingOLS(y.to_numpy(), sm.add_constant(x.to_numpy()), window=60).fit().params
    assert out.index.equals(y.index) and list(out.columns) == ["alpha", "beta"]
    assert out.iloc[:59].isna().all().all()
    np.testing.assert_allclose(out["beta"].to_numpy()[59:], ref[59:, 1], rtol=1e-7)
    np.testing.assert_allclose(out["alpha"].to_numpy()[59:], ref[59:, 0], rtol=1e-7)
    nc = rolling_hedge_ratio(y, x, 60, add_const=False)
    for end in (60, 700, 1500):
        yw, xw = y.to_numpy()[end - 60 : end], x.to_numpy()[end - 60 : end]
        assert nc["beta"].iloc[end - 1] == pytest.approx(xw @ yw / (xw @ xw), rel=1e-10)
        assert nc["alpha"].iloc[end - 1] == 0


def test_rolling_tls_huber_theil_sen_equal_static_fits_on_each_window():
    y, x = _pair(n=400, seed=9, noise=2.0)
    for method, step in (("tls", 1), ("huber", 25), ("theil_sen", 25)):
        out = rolling_hedge_ratio(y, x, 50, method=method, step=step)
        for end in (50, 75, 200, 400):
            if (end - 50) % step:
                continue
            ref = hedge_ratio(y.iloc[end - 50 : end], x.iloc[end - 50 : end], method)
            assert out["beta"].iloc[end - 1] == pytest.approx(ref.beta, rel=1e-8), (method, end)
            assert out["alpha"].iloc[end - 1] == pytest.approx(ref.alpha, rel=1e-6, abs=1e-8), (method, end)
        if step > 1:  # between refits the last fit is carried forward
            assert out["beta"].iloc[50] == out["beta"].iloc[49 + step - 1]
    with pytest.raises(ValueError, match="step applies"):
        rolling_hedge_ratio(y, x, 50, step=5)


def _kalman_reference(y, x, theta0, p0, q, r, start):
    """Textbook matrix Kalman filter (numpy), for comparison."""
    theta, p = np.array(theta0, float), np.array(p0, float)
    out = np.full((len(y), 3), np.nan)
    for t in range(start, len(y)):
        p = p + q
        h = np.array([1.0, x[t]])
        e = y[t] - h @ theta
        s = h @ p @ h + r
        k = p @ h / s
        theta = theta + k * e
        p = p - np.outer(k, h) @ p
        out[t] = theta[0], theta[1], e
    return out


def test_kalman_matches_matrix_reference_filter():
    y, x = _pair(n=600, seed=10)
    res = kalman_hedge_ratio(y, x, delta=1e-3, warmup=40)
    yw, xw = y.to_numpy()[:40], x.to_numpy()[:40]
    ols = sm.OLS(yw, sm.add_constant(xw)).fit()
    p0 = ols.cov_params()  # prior: OLS fit of the warm-up window
    assert res.obs_var == pytest.approx(ols.scale, rel=1e-10)
    # default Q relative to the data: q * obs_var for alpha, q * obs_var / mean(x_w^2) for beta
    q = 1e-3 / (1 - 1e-3) * ols.scale * np.diag([1.0, 1.0 / np.mean(xw * xw)])
    ref = _kalman_reference(y.to_numpy(), x.to_numpy(), ols.params, p0, q, ols.scale, 40)
    assert res.beta.iloc[:40].isna().all() and res.spread.iloc[:40].isna().all()
    np.testing.assert_allclose(res.alpha.to_numpy()[40:], ref[40:, 0], rtol=1e-8)
    np.testing.assert_allclose(res.beta.to_numpy()[40:], ref[40:, 1], rtol=1e-8)
    np.testing.assert_allclose(res.spread.to_numpy()[40:], ref[40:, 2], rtol=1e-7, atol=1e-9)
    assert res.zscore.index.equals(y.index) and "Kalman" in res.summary()
    assert res.state_var == pytest.approx((q[0, 0], q[1, 1]), rel=1e-10)
    # Chan's absolute convention is still available through state_var
    chan = kalman_hedge_ratio(y, x, warmup=40, state_var=1e-3 / (1 - 1e-3))
    ref = _kalman_reference(y.to_numpy(), x.to_numpy(), ols.params, p0, np.eye(2) * 1e-3 / (1 - 1e-3), ols.scale, 40)
    np.testing.assert_allclose(chan.beta.to_numpy()[40:], ref[40:, 1], rtol=1e-8)


def test_kalman_tracks_a_beta_change():
    rng = np.random.default_rng(11)
    n = 3000
    x = 100 + np.cumsum(rng.normal(0, 1, n))
    beta = np.where(np.arange(n) < n // 2, 1.0, 2.0)
    y = 5 + beta * x + rng.normal(0, 0.5, n)
    res = kalman_hedge_ratio(y, x, delta=1e-4)
    assert res.beta.iloc[n // 2 - 1] == pytest.approx(1.0, abs=0.05)
    assert res.beta.iloc[-1] == pytest.approx(2.0, abs=0.05)
    # standardized innovations away from the break (the break itself shows as large z for ~1/sqrt(q) bars)
    z = pd.concat([res.zscore.iloc[100 : n // 2], res.zscore.iloc[n // 2 + 500 :]])
    assert abs(z.mean()) < 0.2 and 0.5 < z.std() < 2.0
    assert res.zscore.iloc[n // 2 : n // 2 + 20].abs().min() > 3  # the break stands out
    nc = kalman_hedge_ratio(0.7 * x + rng.normal(0, 0.1, n), x, add_const=False)
    assert (nc.alpha.dropna() == 0).all() and nc.beta.iloc[-1] == pytest.approx(0.7, abs=0.01)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), t=st.integers(60, 298))
def test_rolling_and_kalman_have_no_look_ahead(seed, t):
    y, x = _pair(n=300, seed=seed % 1000)
    rng = np.random.default_rng(seed)
    y2 = y.copy()
    y2.iloc[t + 1 :] += rng.normal(0, 50, 299 - t)
    for f in (lambda a: rolling_hedge_ratio(a, x, 30), lambda a: rolling_hedge_ratio(a, x, 30, "tls"),
              lambda a: kalman_hedge_ratio(a, x).beta, lambda a: kalman_hedge_ratio(a, x).spread):
        before, after = f(y), f(y2)
        pd.testing.assert_frame_equal(pd.DataFrame(before).iloc[: t + 1], pd.DataFrame(after).iloc[: t + 1])


def test_input_validation():
    y, x = _pair(n=100)
    with pytest.raises(ValueError, match="same length, got 100 and 99"):
        hedge_ratio(y, x.iloc[:99].to_numpy())
    with pytest.raises(ValueError, match="share the same index"):
        hedge_ratio(y, x.shift(1, freq="1min"))
    with pytest.raises(ValueError, match="NaN"):
        hedge_ratio(y.where(y.index != y.index[3]), x)
    with pytest.raises(ValueError, match="need >= 3 observations"):
        hedge_ratio([1.0, 2.0], [1.0, 3.0])
    with pytest.raises(ValueError, match="method must be one of"):
        hedge_ratio(y, x, "lasso")
    with pytest.raises(ValueError, match="constant"):
        hedge_ratio(y, np.ones(100))
    with pytest.raises(ValueError, match="need >= 200 observations"):
        rolling_hedge_ratio(y, x, 200)
    with pytest.raises(ValueError, match=r"need >= 51 observations \(warmup 50"):
        kalman_hedge_ratio(y.iloc[:50], x.iloc[:50])
    with pytest.raises(ValueError, match="delta"):
        kalman_hedge_ratio(y, x, delta=1.5)
    # a plain array takes the other leg's index
    assert hedge_ratio(y, x.to_numpy()).residuals.index.equals(y.index)


@pytest.mark.parametrize("sy, sx", [(1e-8, 1e-8), (1e-4, 1.0), (1.0, 1e-4), (3e4, 9.2e4), (1e9, 1e9)])
def test_kalman_default_noise_is_relative_to_the_data(sy, sx):
    """Rescaling either leg (prices from 1e-8 to 1e9, other units) leaves the Kalman z-score unchanged and
    scales beta by sy / sx. With the old absolute default (state noise 1e-4 in beta units) BTC at 92,000
    gave an innovation std ~300x the spread's and z-scores ~0."""
    y, x = _pair(n=800, seed=12, noise=0.5)
    ref = kalman_hedge_ratio(y, x, warmup=50)
    out = kalman_hedge_ratio(y * sy, x * sx, warmup=50)
    np.testing.assert_allclose(out.zscore.to_numpy()[50:], ref.zscore.to_numpy()[50:], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out.beta.to_numpy()[50:], ref.beta.to_numpy()[50:] * sy / sx, rtol=1e-6)
    z = ref.zscore.dropna()
    assert 0.7 < z.std() < 1.5  # innovations standardized by their own predicted sd


def test_kalman_perfect_warmup_fit_is_floored_relative_to_the_level():
    x = (np.arange(200) + 1000.0) * 2.0**-20  # ~1e-3, exact in binary: the warm-up OLS fit is exact
    y = 3.0 * x
    res = kalman_hedge_ratio(y, x, warmup=20)
    # the old floor was an absolute 1e-12: a noise sd of 1e-6, 0.1 % of these prices
    assert 0 < res.obs_var <= (1e-8 * np.abs(y[:20]).max()) ** 2 * (1 + 1e-9)
    assert np.isfinite(res.beta.iloc[-1]) and res.beta.iloc[-1] == pytest.approx(3.0, rel=1e-6)


@pytest.mark.parametrize("level", [1e-8, 3.7e-5, 0.1, 1.0, 1e9])
@pytest.mark.parametrize("method", ["ols", "huber", "theil_sen", "tls"])
def test_constant_x_is_rejected_at_any_level(level, method):
    """x - mean(x) of a constant need not be exactly 0 (e.g. 30 copies of 1e-8), which let OLS return a
    meaningless beta from a 1e-48 variance; constancy is now tested exactly."""
    y = np.cumsum(np.random.default_rng(0).normal(size=30)) + 100
    with pytest.raises(ValueError, match="constant"):
        hedge_ratio(y, np.full(30, level), method)
    with pytest.raises(ValueError, match="constant"):
        kalman_hedge_ratio(y, np.full(30, level), warmup=10)


def test_expanding_hedge_ratio_is_the_static_fit_on_each_prefix():
    y, x = _pair(n=500, seed=13, noise=2.0)
    y = y + 1e5  # large level: the cumulative moments must stay accurate
    for method, step in (("ols", None), ("tls", None), ("huber", 40), ("theil_sen", 40)):
        out = expanding_hedge_ratio(y, x, 30, method=method, step=step)
        assert out.iloc[:29].isna().all().all() and out.index.equals(y.index)
        ends = (30, 31, 150, 500) if step is None else (30, 70, 270, 500)
        for end in ends:
            ref = hedge_ratio(y.iloc[:end], x.iloc[:end], method)
            assert out["beta"].iloc[end - 1] == pytest.approx(ref.beta, rel=1e-8), (method, end)
            assert out["alpha"].iloc[end - 1] == pytest.approx(ref.alpha, rel=1e-8), (method, end)
    doubling = expanding_hedge_ratio(y, x, 30, method="huber")  # default: refit at 30, 60, 120, 240, 480, 500
    for end in (60, 240, 480, 500):
        assert doubling["beta"].iloc[end - 1] == pytest.approx(hedge_ratio(y.iloc[:end], x.iloc[:end], "huber").beta,
                                                              rel=1e-8)
    assert doubling["beta"].iloc[300] == doubling["beta"].iloc[239]  # carried forward between refits
    ols = expanding_hedge_ratio(y, x, 30)
    ref = sm.OLS(y.to_numpy()[:200], sm.add_constant(x.to_numpy()[:200])).fit()
    assert ols["beta"].iloc[199] == pytest.approx(ref.params[1], rel=1e-9)
    nc = expanding_hedge_ratio(y, x, 30, add_const=False)
    assert nc["beta"].iloc[99] == pytest.approx(hedge_ratio(y.iloc[:100], x.iloc[:100], add_const=False).beta)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), t=st.integers(40, 298), method=st.sampled_from(["ols", "tls", "huber"]))
def test_expanding_hedge_ratio_has_no_look_ahead(seed, t, method):
    y, x = _pair(n=300, seed=seed % 1000)
    y2 = y.copy()
    y2.iloc[t + 1 :] += np.random.default_rng(seed).normal(0, 50, 299 - t)
    a = expanding_hedge_ratio(y, x, 30, method=method, step=10)
    b = expanding_hedge_ratio(y2, x, 30, method=method, step=10)
    pd.testing.assert_frame_equal(a.iloc[: t + 1], b.iloc[: t + 1])


def test_huber_scale_is_statsmodels_mad_about_zero():
    """The README used to say "MAD scale": statsmodels RLM's default scale is the MAD of the residuals about
    zero (not about their median); the fit exposes it as `scale` and the docs say which one it is."""
    from statsmodels.robust.scale import mad

    y, x = _pair(seed=14, noise=2.0)
    y = y + np.where(np.arange(len(y)) % 17 == 0, 25.0, 0.0)  # outliers skew the residuals
    ref = sm.RLM(y.to_numpy(), x.to_numpy()[:, None], M=sm.robust.norms.HuberT()).fit()  # no constant
    h = hedge_ratio(y, x, "huber", add_const=False)
    assert h.scale == pytest.approx(ref.scale, rel=1e-10)
    # statsmodels' scale estimate is the MAD about zero of the previous iteration's residuals: at
    # convergence it matches the final residuals' MAD about zero
    assert h.scale == pytest.approx(mad(ref.resid, center=0), rel=1e-3)
    assert math.isnan(hedge_ratio(y, x, "ols").scale)
