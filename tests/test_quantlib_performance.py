"""quantlib.performance and quantlib.sample: every statistic against a hand computation on small fixed inputs,
the confidence interval's coverage and the expected-maximum approximation against seeded simulations."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sst

from quantlib import performance as perf
from quantlib.backtest import mean_reversion, mean_reversion_spread
from quantlib.sample import RULE, SampleRule

# r = [1%, -2%, 3%, 0%, 1%]: mean 0.006; deviations .004 -.026 .024 -.006 .004
# sum of squares 1.32e-3 -> sd (ddof 1) sqrt(3.3e-4) = 0.0181659; SR = 0.006 / 0.0181659 = 0.330289
# m2 = 2.64e-4, m3 = -3.84e-6 / 5, m4 = 7.9056e-7 / 5 -> skew -0.179042, kurtosis 2.268595
R = [0.01, -0.02, 0.03, 0.0, 0.01]
SR, G3, G4 = 0.3302891, -0.1790422, 2.2685950


def test_sharpe_hand_computed_with_mertens_and_lo_errors():
    est = perf.sharpe_ratio(R, 365)
    assert est.per_bar == pytest.approx(SR, rel=1e-6)
    assert (est.skew, est.kurtosis) == (pytest.approx(G3, rel=1e-6), pytest.approx(G4, rel=1e-6))
    assert est.skew == pytest.approx(sst.skew(R)) and est.kurtosis == pytest.approx(sst.kurtosis(R, fisher=False))
    assert est.sharpe == pytest.approx(SR * math.sqrt(365), rel=1e-6)  # 6.31017
    # Mertens: sqrt((1 - g3 SR + (g4 - 1)/4 SR^2) / T) = sqrt((1 + 0.059136 + 0.034600) / 5) = 0.467704
    se_bar = math.sqrt((1 - G3 * SR + (G4 - 1) / 4 * SR**2) / 5)
    assert se_bar == pytest.approx(0.467704, rel=1e-5)
    assert est.se == pytest.approx(se_bar * math.sqrt(365), rel=1e-6)
    assert est.ci_low == pytest.approx(est.sharpe - 1.959964 * est.se, rel=1e-6)
    assert est.ci_high == pytest.approx(est.sharpe + 1.959964 * est.se, rel=1e-6)
    lo = perf.sharpe_ratio(R, 365, method="lo", level=0.90)
    # Lo (2002) IID normal: sqrt((1 + SR^2 / 2) / 5) = 0.459248 per bar
    assert lo.se == pytest.approx(math.sqrt((1 + SR**2 / 2) / 5) * math.sqrt(365), rel=1e-6)
    assert lo.se / math.sqrt(365) == pytest.approx(0.459248, rel=1e-5)
    assert lo.ci_high - lo.sharpe == pytest.approx(1.644854 * lo.se, rel=1e-6)
    assert "95% CI" in est.summary()


def test_sharpe_degenerate_inputs():
    assert math.isnan(perf.sharpe_ratio([0.0, 0.0, 0.0], 365).sharpe)
    assert math.isnan(perf.sharpe_ratio([0.01], 365).se)
    with pytest.raises(ValueError, match="periods_per_year"):
        perf.sharpe_ratio(R, 0)
    with pytest.raises(ValueError, match="method"):
        perf.sharpe_ratio(R, 365, method="bootstrap")


def test_confidence_interval_covers_the_true_sharpe_about_95_percent():
    """Seeded simulation: IID normal returns with per-bar Sharpe 0.1; the 95% CI from 250 returns must cover
    0.1 x sqrt(q) in about 95% of 2,000 samples (binomial sd ~0.5%)."""
    rng = np.random.default_rng(11)
    q, true = 365.0, 0.1
    hits = 0
    for _ in range(2000):
        r = rng.normal(true * 0.01, 0.01, 250)
        est = perf.sharpe_ratio(r, q)
        hits += est.ci_low <= true * math.sqrt(q) <= est.ci_high
    assert 0.93 <= hits / 2000 <= 0.97


def test_expected_max_sharpe_against_simulated_maxima():
    """E[max of N standard normals] from the Bailey-Lopez de Prado approximation vs 20,000 seeded draws."""
    rng = np.random.default_rng(5)
    for n in (10, 100):
        mc = rng.standard_normal((20_000, n)).max(axis=1).mean()
        assert perf.expected_max_sharpe(n, 1.0) == pytest.approx(mc, rel=0.03)
    # by hand for N = 100, V = 4: 2 * (0.422784 * 2.326348 + 0.577216 * 2.680210) = 5.061206
    assert perf.expected_max_sharpe(100, 4.0) == pytest.approx(5.061206, rel=1e-5)
    assert perf.expected_max_sharpe(1, 4.0) == 0.0


def test_deflated_sharpe_hand_computed():
    trials = np.array([0.5, 1.0, 1.5, 2.0, 6.31])  # annualized Sharpe ratios of 5 trials (q = 365)
    d = perf.deflated_sharpe(R, 365, 5, trial_sharpes=trials)
    v = np.var(trials / math.sqrt(365), ddof=1)
    sr0 = math.sqrt(v) * ((1 - 0.5772157) * sst.norm.ppf(1 - 1 / 5) + 0.5772157 * sst.norm.ppf(1 - 1 / (5 * math.e)))
    denom = math.sqrt(1 - G3 * SR + (G4 - 1) / 4 * SR**2)
    assert d.expected_max == pytest.approx(sr0 * math.sqrt(365), rel=1e-5)
    assert d.dsr == pytest.approx(sst.norm.cdf((SR - sr0) * math.sqrt(4) / denom), rel=1e-5)
    assert d.psr == pytest.approx(sst.norm.cdf(SR * 2 / denom), rel=1e-6)  # PSR(0) = Phi(0.3303*2/1.0459) = 0.736
    assert d.psr == pytest.approx(0.7364, abs=1e-3)
    one = perf.deflated_sharpe(R, 365, 1)
    assert one.dsr == pytest.approx(one.psr) and one.expected_max == 0.0
    noise = perf.deflated_sharpe(R, 365, 400)  # V = 1/T: the best of 400 noise strategies
    assert noise.dsr < d.psr and "Best of 400" in noise.summary()
    with pytest.raises(ValueError, match="n_trials"):
        perf.deflated_sharpe(R, 365, 0)


def test_buy_and_hold_and_sample_info():
    idx = pd.date_range("2024-01-01", periods=4, freq="1h", tz="UTC")
    p = pd.DataFrame({"y": [10.0, 11.0, 9.0, 12.0], "x": [100.0, 100.0, 50.0, 200.0]}, index=idx)
    bh = perf.buy_and_hold(p, 1000.0)
    assert bh["y"].tolist() == pytest.approx([1000, 1100, 900, 1200])
    assert bh["x"].tolist() == pytest.approx([1000, 1000, 500, 2000])
    with pytest.raises(ValueError, match="positive first price"):
        perf.buy_and_hold(-p, 1000.0)
    info = perf.sample_info(idx, 1, 8760.0)
    assert (info.n_bars, info.span, info.bar) == (4, pd.Timedelta(hours=3), pd.Timedelta(hours=1))
    assert info.summary() == "4 bars of 1 h, over 3 h, 1 trade, annualized × √(8,760 bars per year)"
    assert set(info.withheld()) == {"sharpe", "hit_rate"}
    assert info.withheld()["sharpe"] == ("an annualized Sharpe ratio is withheld: only 4 bars (need 30), "
                                         "1 trade (need 10), 3 h of data (need 12 h)")


def test_one_rule_thresholds():
    assert RULE.bars(3, "the correlation heat map") == "the correlation heat map needs at least 30 bars, have 3"
    assert RULE.bars(30) is None and RULE.trades(10) is None
    assert RULE.annualized(2000, 12, pd.Timedelta(days=2)) is None
    assert RULE.annualized(2000, None, pd.Timedelta(hours=25)) is None
    assert "2 h of data" in RULE.annualized(2000, 50, pd.Timedelta(hours=2))
    loose = SampleRule(min_bars=3, min_trades=1, min_span=pd.Timedelta(hours=1))
    assert loose.annualized(4, 1, pd.Timedelta(hours=2)) is None


def test_backtest_stats_carry_ci_sample_and_withheld_reasons():
    # the hand-computed one-trade backtest of test_quantlib_backtest: 10 bars of 5 min, 1 trade
    idx = pd.date_range("2024-01-01", periods=10, freq="5min", tz="UTC")
    s = pd.Series([0, 1, 0, 0, 3, 1, 0, 0, 0, 0.0], index=idx)
    r = mean_reversion_spread(s, window=3, entry_z=1.0, exit_z=0.2, stop_z=None, cost_per_unit=0.1,
                              capital=100.0, timeframe="5m")
    st = r.stats
    ref = perf.sharpe_ratio(np.diff(r.equity.to_numpy()) / r.equity.to_numpy()[:-1], 365 * 24 * 12)
    assert (st.sharpe, st.sharpe_se, st.sharpe_ci_low) == (pytest.approx(ref.sharpe), pytest.approx(ref.se),
                                                          pytest.approx(ref.ci_low))
    assert st.n_bars == 10 and st.span == pd.Timedelta(minutes=45)
    assert st.costs_fraction == pytest.approx(0.2 / 100)
    assert "1 trade (need 10)" in st.withheld["sharpe"] and "hit_rate" in st.withheld
    assert "withheld" in r.summary() and r.buy_hold is None


def test_pair_backtest_buy_and_hold_reference():
    rng = np.random.default_rng(3)
    n = 3000
    idx = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")
    x = pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n))), idx)
    y = 20 + 1.5 * x + pd.Series(rng.normal(0, 0.05, n), idx)
    r = mean_reversion(y, x, window=60, beta=1.5)
    assert r.buy_hold.iloc[-1].tolist() == pytest.approx([10_000 * y.iloc[-1] / y.iloc[0],
                                                          10_000 * x.iloc[-1] / x.iloc[0]])
    assert r.stats.span == pd.Timedelta(minutes=n - 1)  # 2 days and change: only the trade count can withhold
    assert ("sharpe" in r.stats.withheld) == (r.stats.n_trades < 10)
