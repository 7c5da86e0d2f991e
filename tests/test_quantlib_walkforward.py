"""quantlib.walkforward: equal to a naive loop that refits per window (written here from
regression.hedge_ratio / kalman_hedge_ratio and numpy, bar by bar), no look-ahead (changing the future
never changes past positions or equity), window-end closes, time windows, and bad input messages."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantlib.backtest import BacktestStats, walk_forward
from quantlib.regression import hedge_ratio, kalman_hedge_ratio
from quantlib.timeframes import periods_per_year
from tests.conftest import ou_pair


def naive_walk_forward(y, x, formation, trading, method="ols", anchored=False, entry=2.0, exit_=0.5, stop=4.0,
                       cost_bps=1.0, capital=10_000.0, kalman_delta=1e-4):
    """The rules written out bar by bar: per window, fit on the formation bars, z from the formation
    spread's mean / std; the order decided at bar t fills at t+1's close; flat at each window start, closed
    at its last bar, no entry there. Returns (equity by bar from the first trading bar, fits, trades)."""
    yv, xv = y.to_numpy(), x.to_numpy()
    n, c = len(yv), cost_bps / 1e4
    stop = math.inf if stop is None else stop
    cash, equity, fits, trades = capital, [], [], []
    fe = formation
    while fe < n:
        te = min(fe + trading, n)
        if te - fe < 3:
            break
        fs = 0 if anchored else fe - formation
        if method == "kalman":
            kf = kalman_hedge_ratio(y.iloc[fs:fe], x.iloc[fs:fe], delta=kalman_delta,
                                    warmup=max(3, min(50, (fe - fs) // 2)))
            alpha, beta = kf.alpha.iloc[-1], kf.beta.iloc[-1]
        else:
            fit = hedge_ratio(y.iloc[fs:fe], x.iloc[fs:fe], method=method)
            alpha, beta = fit.alpha, fit.beta
        form = yv[fs:fe] - alpha - beta * xv[fs:fe]
        mu, sd = form.mean(), form.std(ddof=1)
        fits.append((alpha, beta, mu, sd))
        want, blocked, held = 0, False, 0
        qy = qx = y0 = x0 = start = 0.0
        for t in range(fe, te):
            last = t == te - 1
            if held and (want != held or last):  # exit (or the window-end close) at this close
                out_cost = c * (abs(qy) * yv[t] + abs(qx) * xv[t])
                cash = start + qy * (yv[t] - y0) + qx * (xv[t] - x0) - out_cost
                trades.append((y.index[entry_bar], y.index[t], held))
                held = 0
            elif not held and want and not last:  # entry at this close
                qy = want * cash / (yv[t] + abs(beta) * xv[t])
                qx = -beta * qy
                start = cash - c * (abs(qy) * yv[t] + abs(qx) * xv[t])
                y0, x0, held, entry_bar = yv[t], xv[t], want, t
            equity.append(start + qy * (yv[t] - y0) + qx * (xv[t] - x0) if held else cash)
            z = (yv[t] - alpha - beta * xv[t] - mu) / sd
            if want == 0:
                if blocked and abs(z) < entry:
                    blocked = False
                if not blocked and entry < z < stop:
                    want = -1
                elif not blocked and -stop < z < -entry:
                    want = 1
            elif want == 1 and z <= -stop or want == -1 and z >= stop:
                want, blocked = 0, True
            elif want == 1 and z >= -exit_ or want == -1 and z <= exit_:
                want = 0
        fe = te
    return np.array(equity), fits, trades


@pytest.mark.parametrize("method", ["ols", "huber", "theil_sen", "tls", "kalman"])
@pytest.mark.parametrize("anchored", [False, True])
def test_equals_a_naive_loop_refitting_per_window(method, anchored):
    for seed in (1, 2):
        y, x = ou_pair(n=2600, seed=seed, drift=0.003)
        kw = dict(formation=600, trading=450, method=method, anchored=anchored, entry_z=1.8, exit_z=0.3,
                  stop_z=3.0, cost_bps=2.0)
        r = walk_forward(y, x, **kw)
        eq, fits, trades = naive_walk_forward(y, x, 600, 450, method, anchored, 1.8, 0.3, 3.0, 2.0)
        # windows: trading bars 600-1049, 1050-1499, 1500-1949, 1950-2399, 2400-2599 (the last is shorter)
        assert r.windows["trading_bars"].tolist() == [450, 450, 450, 450, 200]
        assert r.windows["formation_bars"].tolist() == ([600, 1050, 1500, 1950, 2400] if anchored else [600] * 5)
        np.testing.assert_allclose(r.windows[["alpha", "beta", "spread_mean", "spread_std"]].to_numpy(),
                                   np.array(fits), rtol=1e-9, atol=1e-12)
        assert r.equity.index[0] == y.index[600] and len(r.equity) == len(eq) == 2000
        np.testing.assert_allclose(r.equity.to_numpy(), eq, rtol=1e-10)
        got = list(zip(r.trades["entry_time"], r.trades["exit_time"], r.trades["direction"]))
        assert got == trades and len(trades) > 10
        assert r.stats.n_trades == len(trades)


def test_stats_windows_and_trades_are_consistent():
    y, x = ou_pair(n=3000, seed=4, drift=0.003)
    r = walk_forward(y, x, formation=500, trading=500, cost_bps=1.0)
    eq = r.equity.to_numpy()
    assert isinstance(r.stats, BacktestStats)
    assert r.stats.total_return == pytest.approx(eq[-1] / 1e4 - 1)
    rets = np.diff(eq) / eq[:-1]
    assert r.stats.sharpe == pytest.approx(rets.mean() / rets.std(ddof=1) * math.sqrt(periods_per_year(r.equity.index)))
    assert r.stats.max_drawdown == pytest.approx(np.max(1 - eq / np.maximum.accumulate(eq)))
    w = r.windows
    assert w["pnl"].sum() == pytest.approx(eq[-1] - 1e4)
    assert (w["trades"] == r.trades.groupby("window").size().reindex(w["window"], fill_value=0).to_numpy()).all()
    assert w.groupby("window")["pnl"].sum().to_numpy() == pytest.approx(
        r.trades.groupby("window")["pnl"].sum().reindex(w["window"], fill_value=0).to_numpy())
    start_eq = 1e4 + np.concatenate([[0], np.cumsum(w["pnl"].to_numpy())[:-1]])
    np.testing.assert_allclose(w["return"], w["pnl"] / start_eq)
    # each window: flat at its first bar, flat after its last bar's fill, and trades stay inside it
    pos = r.positions
    for row in w.itertuples():
        assert pos.loc[row.trading_start] == 0 and pos.loc[row.trading_end] == 0
        tr = r.trades[r.trades["window"] == row.window]
        assert (tr["entry_time"] > row.trading_start).all() and (tr["exit_time"] <= row.trading_end).all()
        assert (tr["entry_time"] < row.trading_end).all()  # no entry at the window's last bar
        assert (tr["beta"] == row.beta).all()
    closed = r.trades[r.trades["exit_reason"] == "window end"]
    assert len(closed) > 0 and closed["exit_time"].isin(w["trading_end"]).all() and closed["exit_z"].isna().all()
    assert set(r.trades["exit_reason"]) <= {"exit", "stop", "window end"}
    assert "trading windows" in r.summary() and str(r) == r.summary()
    assert r.hedge_ratio.notna().all() and r.zscore.notna().all()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), t=st.integers(150, 648), anchored=st.booleans(),
       method=st.sampled_from(["ols", "huber", "theil_sen", "tls", "kalman"]))
def test_no_look_ahead_changing_the_future_never_changes_the_past(seed, t, anchored, method):
    y, x = ou_pair(n=650, seed=seed % 997, phi=0.8)
    rng = np.random.default_rng(seed)
    y2, x2 = y.copy(), x.copy()
    y2.iloc[t + 1:] *= np.exp(rng.normal(0, 0.02, 649 - t))
    x2.iloc[t + 1:] *= np.exp(rng.normal(0, 0.02, 649 - t))
    kw = dict(formation=150, trading=100, anchored=anchored, method=method, entry_z=1.5, exit_z=0.3, stop_z=3.5)
    a, b = walk_forward(y, x, **kw), walk_forward(y2, x2, **kw)
    cut = y.index[t]
    pd.testing.assert_series_equal(a.positions.loc[:cut], b.positions.loc[:cut])
    pd.testing.assert_series_equal(a.equity.loc[:cut], b.equity.loc[:cut])
    pd.testing.assert_series_equal(a.zscore.loc[:cut], b.zscore.loc[:cut])
    # the fill at t+1 was decided at t
    if t + 1 < 650 and y.index[t + 1] in a.positions.index:
        assert a.positions.loc[y.index[t + 1]] == b.positions.loc[y.index[t + 1]]
    # every window that started trading by t was fitted on data up to its start only
    started = a.windows["trading_start"] <= cut
    pd.testing.assert_frame_equal(a.windows.loc[started, ["alpha", "beta", "spread_mean", "spread_std"]],
                                  b.windows.loc[started, ["alpha", "beta", "spread_mean", "spread_std"]])


def test_time_windows_equal_bar_windows_without_gaps_and_follow_the_clock_with_gaps():
    y, x = ou_pair(n=3000, seed=6)
    by_time = walk_forward(y, x, formation="8h", trading="4h")
    by_bar = walk_forward(y, x, formation=480, trading=240)
    pd.testing.assert_frame_equal(by_time.windows, by_bar.windows)
    pd.testing.assert_series_equal(by_time.equity, by_bar.equity)
    keep = np.random.default_rng(1).random(3000) > 0.3  # 30 % of the minutes had no trade
    yg, xg = y[keep], x[keep]
    r = walk_forward(yg, xg, formation="8h", trading="4h", anchored=False)
    w = r.windows
    boundary = yg.index[0] + pd.Timedelta("8h") + pd.Timedelta("4h") * np.arange(len(w))  # no window was skipped
    assert (w["trading_start"] >= boundary).all() and (w["trading_end"] < boundary + pd.Timedelta("4h")).all()
    assert (w["formation_start"] >= boundary - pd.Timedelta("8h")).all()
    assert (w["formation_end"] < w["trading_start"]).all()
    assert w["formation_bars"].between(300, 480).all() and r.stats.n_trades > 0


def test_a_window_that_cannot_be_fitted_is_skipped_not_fatal():
    y, x = ou_pair(n=1500, seed=7)
    x = x.copy()
    x.iloc[300:700] = 100.0  # a pegged stretch: the formation window 300-699 has a constant x
    r = walk_forward(y, x, formation=400, trading=300, method="ols")
    w = r.windows.set_index("window")
    # windows trade 400-699, 700-999 (formation 300-699: x constant), 1000-1299, 1300-1499
    assert "x is constant" in w.loc[1, "note"] and w.loc[1, "trades"] == 0 and np.isnan(w.loc[1, "beta"])
    assert (r.positions.loc[w.loc[1, "trading_start"]:w.loc[1, "trading_end"]] == 0).all()
    assert (w.drop(index=1)["note"] == "").all() and r.stats.n_trades > 0
    assert "4 trading windows (3 fitted)" in r.summary()


def test_bad_input_messages():
    y, x = ou_pair(n=400)
    cases = [
        (dict(formation=5, trading=50), "formation must be an integer >= 10"),
        (dict(formation=100, trading=2), "trading must be an integer >= 3"),
        (dict(formation="1d", trading=50), "both be bar counts"),
        (dict(formation="1 fortnight", trading="1d"), "bad duration"),
        (dict(formation=398, trading=50), r"need >= 401 bars \(formation 398 \+ a trading window of 3\), got 400"),
        (dict(formation="1d", trading="1h"), "no trading window fits"),
        (dict(formation="1h", trading="0m"), "trading must be a positive duration"),
        (dict(formation="1h", trading="1s"), "shorter than the bars' spacing"),
        (dict(formation=100, trading=50, method="magic"), "method must be one of"),
        (dict(formation=100, trading=50, entry_z=0.5, exit_z=1.0), "exit_z < entry_z < stop_z"),
        (dict(formation=100, trading=50, cost_bps=-1), "cost_bps"),
        (dict(formation=100, trading=50, anchored="yes"), "anchored must be True or False"),
        (dict(formation=20, trading=50, method="kalman", kalman_warmup=30), "kalman_warmup"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            walk_forward(y, x, **kw)
    with pytest.raises(ValueError, match="durations need bars with a DatetimeIndex"):
        walk_forward(y.to_numpy(), x.to_numpy(), formation="1h", trading="1h", timeframe="1m")
    with pytest.raises(ValueError, match="pass timeframe="):
        walk_forward(y.to_numpy(), x.to_numpy(), formation=100, trading=50)
    with pytest.raises(ValueError, match="must be strictly positive"):
        walk_forward(-y, x, formation=100, trading=50)
    r = walk_forward(y.to_numpy(), x.to_numpy(), formation=100, trading=50, timeframe="1m")
    ref = walk_forward(y, x, formation=100, trading=50)
    np.testing.assert_allclose(r.equity.to_numpy(), ref.equity.to_numpy())
    assert r.stats.sharpe == pytest.approx(ref.stats.sharpe) or ref.stats.n_trades == 0


def test_funding_of_a_perpetual_leg_is_booked_while_a_position_is_held():
    """Funding every 8 h on the x leg (a perpetual): the same positions as without funding; each payment is
    -qty x mark x rate of the position held then, and the trades' pnl carries it."""
    y, x = ou_pair(n=3000, seed=9)
    times = pd.date_range("2024-01-01 08:00", periods=6, freq="8h", tz="UTC")
    rates = pd.Series([1e-4, -2e-4, 3e-4, 1e-4, 5e-4, -1e-4], index=times)
    kw = dict(formation=500, trading=300, entry_z=1.5, exit_z=0.2, cost_bps=1.0)
    plain = walk_forward(y, x, **kw)
    paid = walk_forward(y, x, **kw, funding=rates, funding_leg="x")
    pd.testing.assert_series_equal(plain.positions, paid.positions)
    assert plain.funding is None and paid.params["funding_legs"] == ["x"]
    led = paid.funding
    assert (led["funding_time"] >= paid.equity.index[0]).all() and len(led) == 5  # 08:00 is before trading
    held = led[led["qty"] != 0]
    assert len(held) >= 1
    np.testing.assert_allclose(held["payment"], -held["qty"] * held["mark_price"] * held["rate"])
    for row in held.itertuples():  # the position then is the trade open across that funding time
        tr = paid.trades[(paid.trades["entry_time"] <= row.funding_time) & (paid.trades["exit_time"] > row.funding_time)]
        assert len(tr) == 1 and tr["qty_x"].item() == row.qty
    assert paid.trades["funding"].sum() == pytest.approx(led["payment"].sum())
    assert paid.equity.iloc[-1] == pytest.approx(1e4 + paid.trades["pnl"].sum())
    first = held["funding_time"].iloc[0]  # nothing differs before the first payment (sizes follow the equity)
    before = paid.equity.index < first  # booked from the bar whose close comes after the funding time
    pd.testing.assert_series_equal(plain.equity[before], paid.equity[before])
    assert plain.equity.iloc[-1] != paid.equity.iloc[-1]
    with pytest.raises(ValueError, match="funding_leg must say which leg"):
        walk_forward(y, x, **kw, funding=rates)


def _formation_sharpe(yv, xv, beta, z, entry, exit_, stop, cost_bps=1.0, capital=10_000.0):
    """mean / std of bar returns of `mean_reversion`'s rules on fixed z and beta, written out bar by bar
    (signal at t filled at t+1, entry allowed at the last bar, closed there)."""
    n, c = len(yv), cost_bps / 1e4
    want, blocked, held, cash = 0, False, 0, capital
    eq, trades = [], 0
    for t in range(n):
        order = want if t > 0 else 0
        if held and order != held:
            cash = start + qy * (yv[t] - y0) + qx * (xv[t] - x0) - c * (abs(qy) * yv[t] + abs(qx) * xv[t])
            held, trades = 0, trades + 1
        if not held and order:
            qy = order * cash / (yv[t] + abs(beta) * xv[t])
            qx = -beta * qy
            start = cash - c * (abs(qy) * yv[t] + abs(qx) * xv[t])
            y0, x0, held = yv[t], xv[t], order
        if t == n - 1 and held:
            cash = start + qy * (yv[t] - y0) + qx * (xv[t] - x0) - c * (abs(qy) * yv[t] + abs(qx) * xv[t])
            held, trades = 0, trades + 1
        eq.append(start + qy * (yv[t] - y0) + qx * (xv[t] - x0) if held else cash)
        zt = z[t]
        if want == 0:
            if blocked and abs(zt) < entry:
                blocked = False
            if not blocked and entry < zt < stop:
                want = -1
            elif not blocked and -stop < zt < -entry:
                want = 1
        elif want == 1 and zt <= -stop or want == -1 and zt >= stop:
            want, blocked = 0, True
        elif want == 1 and zt >= -exit_ or want == -1 and zt <= exit_:
            want = 0
    r = np.diff(eq) / np.array(eq[:-1])
    return (r.mean() / r.std(ddof=1) if r.std(ddof=1) > 0 else math.nan), trades


def test_optimize_picks_each_windows_best_thresholds_on_its_formation_bars_only():
    y, x = ou_pair(n=4000, seed=12, drift=0.003)
    opt = dict(entry_z=[1.0, 1.5, 2.0, 2.5], exit_z=[0.0, 0.5, 1.2], stop_z=[3.0, None])
    r = walk_forward(y, x, formation=1000, trading=600, optimize=opt, optimize_min_trades=3)
    w = r.windows
    assert {"entry_z", "exit_z", "stop_z", "formation_sharpe"} <= set(w.columns) and "re-chosen" in r.summary()
    yv, xv = y.to_numpy(), x.to_numpy()
    sets = [(e, x_, s) for e in opt["entry_z"] for x_ in opt["exit_z"] for s in (3.0, math.inf) if x_ < e < s]
    for row in w.itertuples():
        fs, fe = y.index.get_loc(row.formation_start), y.index.get_loc(row.formation_end) + 1
        fit = hedge_ratio(y.iloc[fs:fe], x.iloc[fs:fe])
        form = yv[fs:fe] - fit.alpha - fit.beta * xv[fs:fe]
        zf = (form - form.mean()) / form.std(ddof=1)
        scores = [_formation_sharpe(yv[fs:fe], xv[fs:fe], fit.beta, zf, *s_) for s_ in sets]
        ok = [sh if k >= 3 and np.isfinite(sh) else -np.inf for sh, k in scores]
        best = sets[int(np.argmax(ok))]
        assert (row.entry_z, row.exit_z, row.stop_z) == best
        assert row.formation_sharpe == pytest.approx(max(ok) * math.sqrt(periods_per_year(y.index[fs:fe])), rel=1e-8)
        tr = r.trades[r.trades["window"] == row.window]
        assert (tr["entry_z"].abs() > row.entry_z).all()
    assert w[["entry_z", "exit_z"]].drop_duplicates().shape[0] > 1  # the choice did change between windows
    # one set, the given one: the same as not optimising
    same = walk_forward(y, x, formation=1000, trading=600, optimize={"entry_z": [2.0]}, optimize_min_trades=0)
    plain = walk_forward(y, x, formation=1000, trading=600)
    pd.testing.assert_series_equal(same.equity, plain.equity)
    pd.testing.assert_frame_equal(same.windows[plain.windows.columns], plain.windows)
    # too few trades anywhere: the given thresholds are kept
    kept = walk_forward(y, x, formation=1000, trading=600, optimize={"entry_z": [1.0, 2.0]}, optimize_min_trades=10**6)
    assert kept.windows["entry_z"].eq(2.0).all() and kept.windows["formation_sharpe"].isna().all()
    pd.testing.assert_series_equal(kept.equity, plain.equity)
    for bad, msg in (({"entry": [1.0]}, "optimize takes entry_z, exit_z and stop_z"),
                     ({"entry_z": [0.2], "exit_z": [0.5]}, "no valid threshold combination"),
                     ([1.0, 2.0], "optimize must be a dict")):
        with pytest.raises(ValueError, match=msg):
            walk_forward(y, x, formation=1000, trading=600, optimize=bad)
    with pytest.raises(ValueError, match="optimize_metric must be one of"):
        walk_forward(y, x, formation=1000, trading=600, optimize={"entry_z": [1.5]}, optimize_metric="luck")


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), t=st.integers(200, 898))
def test_no_look_ahead_with_thresholds_chosen_per_window(seed, t):
    y, x = ou_pair(n=900, seed=seed % 997, phi=0.8)
    rng = np.random.default_rng(seed)
    y2, x2 = y.copy(), x.copy()
    y2.iloc[t + 1:] *= np.exp(rng.normal(0, 0.02, 899 - t))
    x2.iloc[t + 1:] *= np.exp(rng.normal(0, 0.02, 899 - t))
    kw = dict(formation=200, trading=100, optimize={"entry_z": [1.0, 1.5, 2.0], "exit_z": [0.0, 0.5]},
              optimize_min_trades=1)
    a, b = walk_forward(y, x, **kw), walk_forward(y2, x2, **kw)
    cut = y.index[t]
    pd.testing.assert_series_equal(a.positions.loc[:cut], b.positions.loc[:cut])
    pd.testing.assert_series_equal(a.equity.loc[:cut], b.equity.loc[:cut])
    started = a.windows["trading_start"] <= cut
    pd.testing.assert_frame_equal(a.windows.loc[started, ["entry_z", "exit_z", "formation_sharpe"]],
                                  b.windows.loc[started, ["entry_z", "exit_z", "formation_sharpe"]])
