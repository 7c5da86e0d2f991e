"""quantlib.sweep: every parameter set of the vectorised grid equals `mean_reversion` run on its own (stats,
costs, stops, every hedge), the in-sample part equals `mean_reversion` on the in-sample bars, the
out-of-sample part equals `mean_reversion` started just early enough to warm up, the best is the in-sample
argmax, and bad input gets one clear message."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantlib import backtest
from quantlib import sweep as sweep_module
from quantlib.backtest import mean_reversion, sweep
from quantlib.timeframes import periods_per_year
from tests.conftest import ou_pair

STATS = [k for k in sweep_module.STATS if k != "avg_holding_time"]


def _pair(n=1500, seed=0, phi=0.85, start="2024-01-01"):
    """This file's pairs: shorter and faster to revert than conftest's default."""
    return ou_pair(n, seed, phi, start=start)


def _stop(v):
    return None if math.isinf(v) else float(v)


def _assert_row_equals(row, stats: backtest.BacktestStats, prefix="", rtol=1e-10):
    for key in STATS:
        got, want = row[prefix + key], getattr(stats, key)
        if isinstance(want, float) and math.isnan(want):
            assert math.isnan(got), (key, got)
        elif key == "n_trades":
            assert got == want
        else:  # money to rounding: the sweep books the cash by products of per-trade factors
            absolute = 1e-9 if key.startswith("sharpe") else 1e-13
            assert got == pytest.approx(want, rel=rtol, abs=absolute), (key, got, want)
    want_t = stats.avg_holding_time
    got_t = row[prefix + "avg_holding_time"]
    assert (want_t is None and pd.isna(got_t)) or abs(got_t - want_t) <= pd.Timedelta(1, "us")


@pytest.mark.parametrize("hedge,kw", [("rolling", {}), ("static", {"hedge_window": 200}), ("kalman", {}),
                                      ("rolling", {"beta": 1.5}), ("rolling", {"method": "tls"})])
def test_every_set_equals_mean_reversion(hedge, kw):
    y, x = _pair(seed=3)
    grid = dict(entry_z=[1.0, 1.5, 2.25], exit_z=[0.0, 0.5, 1.2], stop_z=[2.5, 3.5, None], window=[20, 45])
    r = sweep(y, x, **grid, cost_bps=3.0, hedge=hedge, oos_fraction=None, **kw)
    # exit < entry < stop: 3 * 3 * 3 combinations minus the invalid ones, per window
    valid = [(e, x_, s) for e in grid["entry_z"] for x_ in grid["exit_z"]
             for s in (2.5, 3.5, math.inf) if x_ < e < s]
    assert len(r.grid) == 2 * len(valid) and r.skipped == 27 - len(valid)
    assert r.out_of_sample is None and r.n_in_sample == len(y)
    stopped = 0
    for _, row in r.grid.iterrows():
        ref = mean_reversion(y, x, window=int(row["window"]), entry_z=row["entry_z"], exit_z=row["exit_z"],
                             stop_z=_stop(row["stop_z"]), cost_bps=3.0, hedge=hedge, **kw)
        _assert_row_equals(row, ref.stats)
        stopped += int((ref.trades["exit_reason"] == "stop").sum())
    assert r.grid["n_trades"].sum() > 100 and stopped > 0  # the stop and costs were exercised


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(80, 400),
       entries=st.lists(st.floats(0.3, 3.0), min_size=1, max_size=3),
       exits=st.lists(st.floats(0.0, 1.5), min_size=1, max_size=3),
       stop=st.sampled_from([None, 2.0, 3.0, 5.0]), cost=st.sampled_from([0.0, 1.0, 25.0]),
       scale=st.sampled_from([1e-6, 1.0, 1e5]))
def test_property_random_grids_equal_mean_reversion(seed, n, entries, exits, stop, cost, scale):
    y, x = _pair(n=n, seed=seed % 1009, phi=0.7)
    y, x = y * scale, x * scale
    try:
        r = sweep(y, x, entry_z=entries, exit_z=exits, stop_z=stop, window=15, cost_bps=cost, oos_fraction=None)
    except ValueError as exc:
        assert "no valid threshold combination" in str(exc)
        return
    for _, row in r.grid.iterrows():
        ref = mean_reversion(y, x, window=15, entry_z=row["entry_z"], exit_z=row["exit_z"],
                             stop_z=_stop(row["stop_z"]), cost_bps=cost)
        _assert_row_equals(row, ref.stats, rtol=1e-9)


def test_in_sample_and_out_of_sample_parts():
    y, x = _pair(n=2000, seed=5)
    w = 30
    r = sweep(y, x, entry_z=[1.5, 2.0], exit_z=[0.0, 0.5], stop_z=[3.0, None], window=w, cost_bps=2.0,
              oos_fraction=0.25)
    split = 1500
    assert (r.n_in_sample, r.n_out_of_sample) == (split, 500)
    assert r.in_sample == (y.index[0], y.index[split - 1]) and r.out_of_sample == (y.index[split], y.index[-1])
    k = 2 * w - 2  # the rolling hedge (w bars) and z-score (w bars) need 2w - 2 earlier bars: z starts at `split`
    for _, row in r.grid.iterrows():
        kw = dict(window=w, entry_z=row["entry_z"], exit_z=row["exit_z"], stop_z=_stop(row["stop_z"]), cost_bps=2.0)
        # in sample: mean_reversion on the in-sample bars alone
        _assert_row_equals(row, mean_reversion(y.iloc[:split], x.iloc[:split], **kw).stats)
        # out of sample: flat with the capital at the split, trading on the same causal z
        ref = mean_reversion(y.iloc[split - k:], x.iloc[split - k:], **kw)
        assert ref.zscore.iloc[: k].isna().all() and ref.zscore.iloc[k:].notna().all()
        eq = ref.equity.iloc[k:].to_numpy()
        assert (ref.equity.iloc[: k + 1] == 10_000).all()
        rets = np.diff(eq) / eq[:-1]
        per_year = periods_per_year(y.index[split:])
        assert row["oos_n_trades"] == ref.stats.n_trades
        assert row["oos_total_return"] == pytest.approx(eq[-1] / 1e4 - 1, rel=1e-9, abs=1e-15)
        assert row["oos_sharpe"] == pytest.approx(rets.mean() / rets.std(ddof=1) * math.sqrt(per_year), rel=1e-8)
        assert row["oos_max_drawdown"] == pytest.approx(ref.stats.max_drawdown, rel=1e-9, abs=1e-15)
        assert row["oos_total_costs"] == pytest.approx(ref.stats.total_costs, rel=1e-9)
        assert row["oos_exposure"] == pytest.approx((ref.positions.iloc[k:] != 0).mean())
    assert r.grid["oos_n_trades"].sum() > 0


def test_best_is_the_in_sample_argmax_and_its_out_of_sample_result_is_beside_it():
    y, x = _pair(n=2400, seed=8)
    r = sweep(y, x, entry_z=np.arange(1.0, 3.01, 0.5), exit_z=[0.0, 0.25, 0.5, 0.75], window=[30, 60],
              oos_fraction=0.3, min_trades=5)
    g = r.grid
    eligible = g[g["n_trades"] >= 5]
    assert r.best is not None and r.best["sharpe"] == eligible["sharpe"].max()
    assert g["best"].sum() == 1 and g.loc[g["best"], "sharpe"].item() == r.best["sharpe"]
    p = r.best_params()
    split = r.n_in_sample
    ref = mean_reversion(y.iloc[:split], x.iloc[:split], **p)
    assert ref.stats.sharpe == pytest.approx(r.best["sharpe"], rel=1e-10)
    np.testing.assert_allclose(r.best_equity.to_numpy(), ref.equity.to_numpy(), rtol=1e-12)
    assert r.best_equity.index.equals(y.index[:split]) and r.best_oos_equity.index.equals(y.index[split:])
    oos = r.best_oos_equity.to_numpy()
    assert oos[0] == 10_000 and oos[-1] / 10_000 - 1 == pytest.approx(r.best["oos_total_return"], rel=1e-12)
    assert np.max(1 - oos / np.maximum.accumulate(oos)) == pytest.approx(r.best["oos_max_drawdown"], rel=1e-12)
    assert "out of sample" in r.summary() and f"{r.best['oos_n_trades']} trades" in r.summary()
    hm = r.heatmap("sharpe")
    assert hm.index.name == "entry_z" and hm.columns.name == "exit_z" and hm.shape == (5, 4)
    assert hm.loc[p["entry_z"], p["exit_z"]] == r.best["sharpe"]
    hm_out = r.heatmap("total_return", sample="out", window=30)
    assert hm_out.loc[1.0, 0.5] == g[(g.window == 30) & (g.entry_z == 1.0) & (g.exit_z == 0.5)]["oos_total_return"].item()
    dd = sweep(y, x, entry_z=[1.5, 2.0], exit_z=[0.0, 0.5], metric="max_drawdown", oos_fraction=None)
    assert dd.best["max_drawdown"] == dd.grid.loc[dd.grid["n_trades"] >= 10, "max_drawdown"].min()
    with pytest.raises(ValueError, match="no out-of-sample part"):
        dd.heatmap(sample="out")


def test_no_set_with_enough_trades_has_no_best():
    y, x = _pair(n=500, seed=2)
    r = sweep(y, x, entry_z=[40.0], exit_z=[0.5], stop_z=None, oos_fraction=None)
    assert r.best is None and r.best_params() is None and "no set made" in r.summary()
    assert r.best_equity is None and r.best_oos_equity is None
    assert r.grid["n_trades"].eq(0).all() and r.grid["total_return"].eq(0).all()


def test_split_by_time_and_plain_arrays():
    y, x = _pair(n=1200, seed=4)
    by_time = sweep(y, x, entry_z=[1.5, 2.0], exit_z=[0.5], oos_start="2024-01-01 15:00")
    assert by_time.n_in_sample == 900 and by_time.out_of_sample[0] == pd.Timestamp("2024-01-01 15:00", tz="UTC")
    by_bar = sweep(y, x, entry_z=[1.5, 2.0], exit_z=[0.5], oos_start=900)
    pd.testing.assert_frame_equal(by_time.grid, by_bar.grid)
    arrays = sweep(y.to_numpy(), x.to_numpy(), entry_z=[1.5, 2.0], exit_z=[0.5], oos_start=900, timeframe="1m")
    np.testing.assert_allclose(arrays.grid["sharpe"], by_bar.grid["sharpe"], rtol=1e-12)
    assert (arrays.grid["avg_holding_time"] == by_bar.grid["avg_holding_time"]).all()
    with pytest.raises(ValueError, match="pass timeframe="):
        sweep(y.to_numpy(), x.to_numpy(), entry_z=[1.5], exit_z=[0.5])


def test_bad_input_messages():
    y, x = _pair(n=300)
    cases = [
        (dict(entry_z=[]), "entry_z must hold at least one value"),
        (dict(entry_z=[1.0, -2.0]), "entry_z must be a finite number > 0"),
        (dict(exit_z=["a"]), "exit_z must be a number"),
        (dict(entry_z=[1.0], exit_z=[1.0, 2.0]), "no valid threshold combination"),
        (dict(window=[60, 2]), "window must be an integer >= 3"),
        (dict(oos_fraction=1.5), r"oos_fraction must be in \[0, 1\)"),
        (dict(oos_start=300), "oos_start as a bar number must be in 1..299"),
        (dict(oos_start="2030-01-01"), "outside the bars"),
        (dict(oos_start="yesterday-ish"), "oos_start must be a bar number or a UTC time"),
        (dict(window=250), r"need >= 252 in-sample bars \(the longest window \+ 2\), got 210"),
        (dict(oos_start=298), "need >= 3 out-of-sample bars, got 2"),
        (dict(metric="alpha"), "metric must be one of"),
        (dict(hedge="magic"), "hedge must be one of"),
        (dict(cost_bps=-1), "cost_bps"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            sweep(y, x, **kw)
    with pytest.raises(ValueError, match="share the same index"):
        sweep(y, x.shift(1, freq="1min"))


def test_grid_columns_and_sorting():
    y, x = _pair(n=600)
    r = sweep(y, x, entry_z=[2.0, 1.0, 2.0], exit_z=0.5, stop_z=[None, 3.0], window=[40, 20])
    assert list(r.grid.columns[:5]) == ["window", "entry_z", "exit_z", "stop_z", "best"]
    assert {f"oos_{k}" for k in STATS} <= set(r.grid.columns)
    assert r.params["entry_z"] == [1.0, 2.0] and r.params["window"] == [20, 40]  # de-duplicated and sorted
    assert len(r.grid) == 2 * 2 * 2 and np.isinf(r.grid["stop_z"]).sum() == 4
    assert r.grid["n_trades"].dtype == np.int64


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), hedge=st.sampled_from(["rolling", "static", "kalman"]),
       frac=st.sampled_from([0.2, 0.35, 0.5]))
def test_property_the_out_of_sample_part_never_leaks_into_the_in_sample_choice(seed, hedge, frac):
    """Perturbing every out-of-sample bar changes no in-sample column and not the best set: the choice is made
    on in-sample data only."""
    y, x = _pair(n=700, seed=seed % 991, phi=0.8)
    rng = np.random.default_rng(seed)
    split = 700 - int(round(700 * frac))
    y2, x2 = y.copy(), x.copy()
    y2.iloc[split:] *= np.exp(rng.normal(0, 0.02, 700 - split))
    x2.iloc[split:] *= np.exp(rng.normal(0, 0.02, 700 - split))
    kw = dict(entry_z=[1.0, 1.5, 2.0], exit_z=[0.0, 0.5], stop_z=[3.0, None], window=[20, 40], hedge=hedge,
              hedge_window=60, oos_fraction=frac, min_trades=1)
    a, b = sweep(y, x, **kw), sweep(y2, x2, **kw)
    cols = ["window", "entry_z", "exit_z", "stop_z", "best", *(k for k in sweep_module.STATS)]
    pd.testing.assert_frame_equal(a.grid[cols], b.grid[cols])
    assert (a.best is None and b.best is None) or a.best_params() == b.best_params()


@pytest.mark.parametrize("leg", ["x", "y", "both"])
def test_funding_equals_mean_reversion_with_funding(leg):
    """A perpetual leg's funding (every 2 h here, large rates so that it matters) is booked per set as
    `mean_reversion(funding=...)` books it: same stats, in and out of sample."""
    y, x = _pair(n=1500, seed=21)
    times = pd.date_range("2024-01-01 01:00", periods=12, freq="2h", tz="UTC")
    rng = np.random.default_rng(0)
    rates = pd.Series(rng.normal(0, 2e-3, 12), index=times)
    frame = pd.DataFrame({"funding_rate": rates * 0.5, "mark_price": 1.001 * y.reindex(times, method="ffill")})
    kw = {"x": dict(funding=rates, funding_leg="x"), "y": dict(funding=frame, funding_leg="y"),
          "both": dict(funding={"x": rates, "y": frame})}[leg]
    r = sweep(y, x, entry_z=[1.0, 1.5, 2.0], exit_z=[0.0, 0.5], stop_z=[3.0, None], window=30, cost_bps=2.0,
              oos_fraction=None, **kw)
    plain = sweep(y, x, entry_z=[1.0, 1.5, 2.0], exit_z=[0.0, 0.5], stop_z=[3.0, None], window=30, cost_bps=2.0,
                  oos_fraction=None)
    assert (r.grid["total_return"] != plain.grid["total_return"]).any()
    pd.testing.assert_series_equal(r.grid["n_trades"], plain.grid["n_trades"])
    for _, row in r.grid.iterrows():
        ref = mean_reversion(y, x, window=30, entry_z=row["entry_z"], exit_z=row["exit_z"],
                             stop_z=_stop(row["stop_z"]), cost_bps=2.0, **kw)
        assert ref.total_funding != 0
        _assert_row_equals(row, ref.stats)
    split = sweep(y, x, entry_z=[1.5], exit_z=[0.5], window=30, cost_bps=2.0, oos_fraction=0.4, min_trades=1, **kw)
    ins = mean_reversion(y.iloc[:900], x.iloc[:900], window=30, entry_z=1.5, exit_z=0.5, cost_bps=2.0, **kw)
    _assert_row_equals(split.grid.iloc[0], ins.stats)
    np.testing.assert_allclose(split.best_equity.to_numpy(), ins.equity.to_numpy(), rtol=1e-12)
    k = 58  # out of sample: mean_reversion started 2 x 30 - 2 bars before the split, flat until it
    oos = mean_reversion(y.iloc[900 - k:], x.iloc[900 - k:], window=30, entry_z=1.5, exit_z=0.5, cost_bps=2.0, **kw)
    np.testing.assert_allclose(split.best_oos_equity.to_numpy(), oos.equity.iloc[k:].to_numpy(), rtol=1e-9)
