"""quantlib.backtest: hand-computed trades and equity, next-bar fills, costs, stats formulas, and the
no-look-ahead property (changing data after t never changes positions or equity up to t)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantlib.backtest import mean_reversion, mean_reversion_spread, zscore_signals
from tests.conftest import ou_pair


def test_signal_state_machine():
    z = [0.0, 2.5, 1.0, 0.4, -2.5, -4.5, -3.0, -1.0, -2.5, -1.9, -2.1, np.nan, -0.3, 5.0, 3.0]
    sig, reason = zscore_signals(z, entry_z=2.0, exit_z=0.5, stop_z=4.0)
    # 2.5 short; 1.0 hold; 0.4 exit; -2.5 long; -4.5 stop; -3 blocked; -1 unblocks; -2.5 long;
    # -1.9 hold; -2.1 hold; NaN hold; -0.3 exit; 5.0 beyond stop: no entry; 3.0 short
    assert sig.tolist() == [0, -1, -1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, -1]
    assert reason[3] == "exit" and reason[5] == "stop" and reason[12] == "exit"
    with pytest.raises(ValueError, match="exit_z < entry_z < stop_z"):
        zscore_signals(z, entry_z=1.0, exit_z=1.5)


def test_hand_computed_spread_trade():
    # window 3 z-scores: bar 4 z = (3 - 1)/sqrt(3) = 1.155 > 1 -> short signal, filled at bar 5 (s = 1);
    # bar 5 z = (1 - 4/3)/sqrt(21/9) = -0.218 <= 0.2 -> exit signal, filled at bar 6 (s = 0).
    idx = pd.date_range("2024-01-01", periods=10, freq="5min", tz="UTC")
    s = pd.Series([0, 1, 0, 0, 3, 1, 0, 0, 0, 0.0], index=idx)
    r = mean_reversion_spread(s, window=3, entry_z=1.0, exit_z=0.2, stop_z=None, cost_per_unit=0.1,
                              capital=100.0, timeframe="5m")
    assert r.zscore.iloc[4] == pytest.approx(2 / math.sqrt(3))
    assert r.positions.tolist() == [0, 0, 0, 0, 0, -1, 0, 0, 0, 0]
    np.testing.assert_allclose(r.equity.to_numpy(), [100] * 5 + [99.9] + [100.8] * 4)
    (trade,) = r.trades.itertuples()
    assert (trade.entry_time, trade.exit_time) == (s.index[5], s.index[6])
    assert (trade.side, trade.entry_spread, trade.exit_spread, trade.qty_spread) == ("short", 1.0, 0.0, -1.0)
    assert (trade.gross_pnl, trade.costs, trade.exit_reason) == (1.0, pytest.approx(0.2), "exit")
    assert trade.holding_time == pd.Timedelta(minutes=5)
    st_ = r.stats
    assert st_.n_trades == 1 and st_.hit_rate == 1.0 and st_.avg_holding_bars == 1
    assert st_.total_return == pytest.approx(0.008) and st_.max_drawdown == pytest.approx(0.001)
    assert st_.turnover == pytest.approx(0.01) and st_.total_costs == pytest.approx(0.2)
    assert st_.exposure == pytest.approx(0.1)
    rets = np.diff(r.equity.to_numpy()) / r.equity.to_numpy()[:-1]
    assert st_.sharpe == pytest.approx(rets.mean() / rets.std(ddof=1) * math.sqrt(365 * 24 * 12))


def test_pair_trades_are_sized_by_beta_and_filled_next_bar():
    y, x = ou_pair(seed=1)
    r = mean_reversion(y, x, window=60, beta=1.5, cost_bps=2.0, capital=10_000)
    assert r.stats.n_trades > 5
    yv, xv, eq = y.to_numpy(), x.to_numpy(), r.equity.to_numpy()
    pos = r.positions.to_numpy()
    for tr in r.trades.itertuples():
        f, e = y.index.get_loc(tr.entry_time), y.index.get_loc(tr.exit_time)
        assert abs(r.zscore.iloc[f - 1]) > 2.0 and tr.entry_z == r.zscore.iloc[f - 1]  # signal one bar earlier
        assert (pos[f:e] == tr.direction).all() and pos[e] != tr.direction
        assert tr.qty_y == pytest.approx(tr.direction * tr.equity_before / (yv[f] + 1.5 * xv[f]))
        assert tr.qty_x == pytest.approx(-1.5 * tr.qty_y)
        entry_cost = 2e-4 * (abs(tr.qty_y) * yv[f] + abs(tr.qty_x) * xv[f])
        assert entry_cost == pytest.approx(2e-4 * tr.equity_before)  # gross notional = equity
        marked = tr.equity_before - entry_cost + tr.qty_y * (yv[f:e] - yv[f]) + tr.qty_x * (xv[f:e] - xv[f])
        np.testing.assert_allclose(eq[f:e], marked, rtol=1e-12)
        assert tr.pnl == pytest.approx(tr.gross_pnl - tr.costs)
    assert eq[-1] == pytest.approx(10_000 + r.trades.pnl.sum())
    assert r.stats.total_return == pytest.approx(eq[-1] / 10_000 - 1)
    peak = np.maximum.accumulate(eq)
    assert r.stats.max_drawdown == pytest.approx(np.max(1 - eq / peak))
    assert r.stats.hit_rate == pytest.approx((r.trades.pnl > 0).mean())


def test_costs_strictly_reduce_pnl():
    for seed in (2, 3):
        y, x = ou_pair(seed=seed)
        free = mean_reversion(y, x, window=60, cost_bps=0.0)
        paid = mean_reversion(y, x, window=60, cost_bps=5.0)
        assert free.stats.n_trades > 0
        pd.testing.assert_series_equal(free.positions, paid.positions)  # signals do not depend on costs
        assert paid.equity.iloc[-1] < free.equity.iloc[-1]
        assert (paid.equity <= free.equity + 1e-9).all()
        assert paid.stats.total_costs > 0 and free.stats.total_costs == 0


def test_mean_reverting_pair_is_profitable_and_stats_are_consistent():
    y, x = ou_pair(n=5000, seed=4)
    r = mean_reversion(y, x, window=60, hedge="rolling", hedge_window=300, cost_bps=0.5, timeframe="1m")
    s = r.stats
    assert s.total_return > 0 and s.sharpe > 0 and s.hit_rate > 0.5
    assert 0 <= s.max_drawdown < 1 and 0 < s.exposure < 1
    assert abs(s.avg_holding_time - pd.Timedelta(minutes=1) * s.avg_holding_bars) < pd.Timedelta(1, "us")
    table = s.table()
    assert table.set_index("key").loc["total_return", "value"] == pytest.approx(s.total_return * 100)
    assert "trades" in r.summary()
    assert r.params["fill"] == "next bar close"


@pytest.mark.parametrize("hedge", ["static", "rolling", "kalman"])
def test_hedge_modes_run_and_static_waits_for_formation(hedge):
    y, x = ou_pair(n=2000, seed=5)
    r = mean_reversion(y, x, window=50, hedge=hedge, hedge_window=400)
    assert r.positions.iloc[:400].eq(0).all() if hedge == "static" else True
    assert r.hedge_ratio.iloc[:399].isna().all() or hedge == "kalman"
    assert r.hedge_ratio.dropna().between(1.3, 1.7).all()
    assert r.stats.n_trades > 0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), t=st.integers(100, 598), hedge=st.sampled_from(["static", "rolling", "kalman"]))
def test_no_look_ahead_changing_the_future_never_changes_the_past(seed, t, hedge):
    y, x = ou_pair(n=600, seed=seed % 997, phi=0.8)
    rng = np.random.default_rng(seed)
    y2, x2 = y.copy(), x.copy()
    y2.iloc[t + 1 :] *= np.exp(rng.normal(0, 0.02, 599 - t))
    x2.iloc[t + 1 :] *= np.exp(rng.normal(0, 0.02, 599 - t))
    kw = dict(window=30, hedge=hedge, hedge_window=60, entry_z=1.5, exit_z=0.3, stop_z=3.5, cost_bps=1.0)
    a, b = mean_reversion(y, x, **kw), mean_reversion(y2, x2, **kw)
    pd.testing.assert_series_equal(a.positions.iloc[: t + 1], b.positions.iloc[: t + 1])
    pd.testing.assert_series_equal(a.equity.iloc[: t + 1], b.equity.iloc[: t + 1])
    # positions up to t+1 depend on signals up to t only (fill at the next bar)
    assert a.positions.iloc[t + 1] == b.positions.iloc[t + 1]


def test_validation():
    y, x = ou_pair(n=100)
    with pytest.raises(ValueError, match="need >= 62 bars, got 50"):
        mean_reversion(y.iloc[:50], x.iloc[:50], window=60)
    with pytest.raises(ValueError, match="hedge must be one of"):
        mean_reversion(y, x, hedge="magic")
    with pytest.raises(ValueError, match="unknown timeframe"):
        mean_reversion(y, x, window=20, timeframe="3m")
    with pytest.raises(ValueError, match="cost_bps"):
        mean_reversion(y, x, window=20, cost_bps=-1)
    with pytest.raises(ValueError, match="share the same index"):
        mean_reversion(y, x.shift(1, freq="1min"), window=20)
    with pytest.raises(ValueError, match="NaN"):
        mean_reversion_spread(pd.Series([1.0, np.nan] * 40), window=10)


def test_a_window_without_signals_gives_an_empty_trades_table():
    y, x = ou_pair(n=800, seed=2)
    r = mean_reversion(y, x, window=60, entry_z=50.0, stop_z=80.0, timeframe="1m")
    assert len(r.trades) == 0 and r.stats.n_trades == 0
    assert r.stats.total_return == 0.0 and (r.equity == r.equity.iloc[0]).all()
    assert r.trades["holding_time"].dtype.kind == "m"


# ------------------------------------------------------------------ audit regressions (edge cases and conventions)
def _btc_eth(n=2000, seed=0, level_x=92_000.0, level_y=3_000.0):
    """Closes like BTCUSDT / ETHUSDT on 1m bars: log-cointegrated (beta 1.1), OU spread with a 30-bar
    half-life, rounded to the cent as Binance quotes them."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2026-01-01", periods=n, freq="1min", tz="UTC")
    lx = np.log(level_x) + np.cumsum(rng.normal(0, 5e-4, n))
    ou, e, phi = np.zeros(n), rng.normal(0, 4e-4, n), np.exp(-np.log(2) / 30)
    for t in range(1, n):
        ou[t] = phi * ou[t - 1] + e[t]
    ly = np.log(level_y) + 1.1 * (lx - np.log(level_x)) + ou
    return (pd.Series(np.round(np.exp(ly), 2), idx, name="ETHUSDT"),
            pd.Series(np.round(np.exp(lx), 2), idx, name="BTCUSDT"))


def test_kalman_backtest_trades_at_real_btc_price_levels():
    """BTC near 92,000: with the old absolute state noise (1e-4 in beta units) the innovation std was ~920
    against a spread std of ~3, the Pairs z-score read +0.00 and the Kalman backtest made no trades on the
    desk. With noise relative to the data the Kalman z-score has about unit variance and trades happen."""
    from quantlib.regression import kalman_hedge_ratio

    y, x = _btc_eth()
    kf = kalman_hedge_ratio(y, x, warmup=60)
    z = kf.zscore.dropna()
    assert 0.6 < z.std() < 1.6 and z.abs().max() > 2.5
    r = mean_reversion(y, x, window=60, hedge="kalman")
    assert r.stats.n_trades >= 10
    assert r.stats.n_trades >= 0.5 * mean_reversion(y, x, window=60, hedge="rolling").stats.n_trades


@pytest.mark.parametrize("hedge", ["kalman", "rolling", "static"])
def test_backtest_is_the_same_at_any_price_level(hedge):
    """Legs at 1e-8 (sub-cent coins) up to 1e9: the same trades, returns and z-scores; the old absolute
    flat-window guard and Kalman noise made a 1e-4-level Kalman backtest all-NaN with 0 trades."""
    y, x = _btc_eth(n=1200, seed=3)  # ETH ~3,000, BTC ~92,000
    ref = mean_reversion(y, x, window=60, hedge=hedge)
    assert ref.stats.n_trades > 5
    # y from ~3e-8 to ~3e8, x from ~9e-8 to ~9e8 (a sub-cent coin against a normal one, and the reverse)
    for sy, sx in ((1e-11, 1e-12), (1e-8, 1e-3), (1.0, 1e-11), (1e5, 1e4)):
        r = mean_reversion(y * sy, x * sx, window=60, hedge=hedge)
        assert r.stats.n_trades == ref.stats.n_trades, (sy, sx)
        assert r.positions.equals(ref.positions)
        np.testing.assert_allclose(r.equity.to_numpy(), ref.equity.to_numpy(), rtol=1e-6)
        np.testing.assert_allclose(r.zscore.to_numpy(), ref.zscore.to_numpy(), rtol=1e-5, atol=1e-6)


def test_beta_must_be_finite():
    y, x = ou_pair(n=300)
    for bad in (float("nan"), float("inf"), "1.5x", True):
        with pytest.raises(ValueError, match="beta must be a"):
            mean_reversion(y, x, window=30, beta=bad)


def test_final_forced_close_leaves_the_position_flat():
    """The trade still open at the last bar is closed there ("end"): the position after that fill is 0 and
    the bar does not count as time in the market."""
    idx = pd.date_range("2024-01-01", periods=10, freq="5min", tz="UTC")
    s = pd.Series([0, 1, 0, 0, 3, 3.5, 4, 4.2, 4.4, 4.5], index=idx)
    r = mean_reversion_spread(s, window=3, entry_z=1.0, exit_z=0.2, stop_z=None)
    assert r.trades["exit_reason"].tolist() == ["end"]
    assert r.positions.iloc[-1] == 0 and r.positions.iloc[5:9].eq(-1).all()
    assert r.stats.exposure == pytest.approx((r.positions != 0).mean()) and r.stats.exposure == pytest.approx(0.4)
    assert math.isnan(r.trades["exit_z"].iloc[0])
    y, x = ou_pair(n=800, seed=7)
    long_run = mean_reversion(y, x, window=60, entry_z=0.5, exit_z=0.0, stop_z=None)
    if long_run.trades["exit_reason"].iloc[-1] == "end":
        assert long_run.positions.iloc[-1] == 0


def _daily_pair(n=400, seed=11):
    y, x = ou_pair(n=n, seed=seed)
    idx = pd.date_range("2023-01-01", periods=n, freq="1D", tz="UTC")
    return y.set_axis(idx), x.set_axis(idx)


def test_daily_bars_annualize_by_365_and_hold_for_days():
    """The old default timeframe="1m" annualized daily bars by sqrt(525,600) (Sharpe x sqrt(1440) too big)
    and read a 6-day hold as 6 minutes. The bar spacing now comes from the index."""
    y, x = _daily_pair()
    r = mean_reversion(y, x, window=30, cost_bps=1.0)
    eq = r.equity.to_numpy()
    rets = np.diff(eq) / eq[:-1]
    assert r.stats.sharpe == pytest.approx(rets.mean() / rets.std(ddof=1) * math.sqrt(365), rel=1e-9)
    assert r.params["periods_per_year"] == pytest.approx(365)
    assert r.stats.n_trades > 0
    assert r.stats.avg_holding_time == pd.Timedelta(days=1) * r.stats.avg_holding_bars
    assert (r.trades["holding_time"] == r.trades["bars_held"] * pd.Timedelta(days=1)).all()
    with pytest.raises(ValueError, match="does not match the bars"):
        mean_reversion(y.iloc[:100].set_axis(pd.date_range("2024-01-01", periods=100, freq="1min", tz="UTC")),
                       x.iloc[:100].set_axis(pd.date_range("2024-01-01", periods=100, freq="1min", tz="UTC")),
                       window=30, timeframe="1h")


def test_bars_with_gaps_annualize_by_the_observed_rate_and_hold_for_real_time():
    y, x = ou_pair(n=1500, seed=12)
    keep = np.random.default_rng(0).random(1500) > 0.3  # 30 % of the 1m bars had no trade
    y, x = y[keep], x[keep]
    r = mean_reversion(y, x, window=60, timeframe="1m")
    span_years = (y.index[-1] - y.index[0]).total_seconds() / (365 * 86400)
    assert r.params["periods_per_year"] == pytest.approx((len(y) - 1) / span_years)
    tr = r.trades
    assert (tr["holding_time"] == tr["exit_time"] - tr["entry_time"]).all()


def test_plain_arrays_need_a_timeframe():
    y, x = ou_pair(n=300)
    with pytest.raises(ValueError, match="pass timeframe="):
        mean_reversion(y.to_numpy(), x.to_numpy(), window=30)
    r = mean_reversion(y.to_numpy(), x.to_numpy(), window=30, timeframe="1m")
    ref = mean_reversion(y, x, window=30)
    assert r.stats.sharpe == pytest.approx(ref.stats.sharpe, rel=1e-9)
    assert r.stats.avg_holding_time == ref.stats.avg_holding_time or ref.stats.n_trades == 0


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([1e-8, 1e-6, 1e-3, 1.0, 1e3, 1e6, 1e9]),
       n=st.integers(64, 200), hedge=st.sampled_from(["static", "rolling", "kalman"]))
def test_property_scale_free_and_short_samples(seed, scale, n, hedge):
    """Any price level 1e-8..1e9 and short samples: the backtest never crashes, its accounting identities
    hold, and it equals the same backtest at unit scale."""
    y, x = ou_pair(n=n, seed=seed % 991, phi=0.8)
    kw = dict(window=20, hedge=hedge, hedge_window=30, entry_z=1.5, exit_z=0.3, stop_z=3.5, cost_bps=1.0)
    a, b = mean_reversion(y, x, **kw), mean_reversion(y * scale, x * scale, **kw)
    assert a.positions.equals(b.positions) and a.stats.n_trades == b.stats.n_trades
    np.testing.assert_allclose(a.equity.to_numpy(), b.equity.to_numpy(), rtol=1e-6)
    assert b.positions.iloc[-1] == 0
    assert b.equity.iloc[-1] == pytest.approx(10_000 + b.trades["pnl"].sum(), rel=1e-9)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), level=st.sampled_from([1e-8, 1.0, 1e9]), n=st.integers(64, 150))
def test_property_constant_leg_never_crashes(seed, level, n):
    """A pegged leg (stablecoin): static / rolling hedges cannot be fitted (x constant) and say so; a given
    beta still backtests (the spread is y minus a constant)."""
    y, _ = ou_pair(n=n, seed=seed % 991)
    peg = pd.Series(level, index=y.index)
    for hedge in ("static", "rolling", "kalman"):
        try:
            r = mean_reversion(y * level, peg, window=20, hedge=hedge, hedge_window=30)
        except ValueError as exc:
            assert "constant" in str(exc) or "undefined" in str(exc)
        else:  # no hedge can be fitted on a constant x: no beta, no trades (a 1e-8 peg once got a beta)
            assert r.hedge_ratio.isna().all() and r.stats.n_trades == 0 and np.isfinite(r.equity).all()
    r = mean_reversion(y, peg, window=20, beta=1.0)
    assert np.isfinite(r.equity).all()


def test_kalman_backtest_trades_the_filtered_residual_as_documented():
    """hedge="kalman" z-scores the filtered (posterior) residual y - alpha_t|t - beta_t|t x, which the filter
    shrinks relative to the static OLS spread, the more so the slower the spread reverts compared with the
    filter's ~100-bar memory (README: ~0.93x at a 7-bar half-life, ~0.6x at 70; 0.41x with the old default).
    The z-score divides by its own rolling std, so the entry / exit thresholds stay in standard deviations."""
    from quantlib.regression import hedge_ratio, kalman_hedge_ratio

    y, x = ou_pair(n=3000, seed=0, phi=0.9)
    r = mean_reversion(y, x, window=60, hedge="kalman")
    kf = kalman_hedge_ratio(y, x, warmup=60)
    np.testing.assert_allclose(r.spread.to_numpy()[60:], (y - kf.alpha - kf.beta * x).to_numpy()[60:], rtol=1e-12)
    assert r.spread.iloc[:59].isna().all()
    static_sd = hedge_ratio(y, x).residuals.std()
    assert 0.85 < r.spread.std() / static_sd < 1.0
    slow = ou_pair(n=3000, seed=1, phi=0.99)
    ratio = mean_reversion(*slow, window=60, hedge="kalman").spread.std() / hedge_ratio(*slow).residuals.std()
    assert 0.45 < ratio < 0.75
    z = r.zscore.dropna()
    assert 0.8 < z.std() < 1.2
