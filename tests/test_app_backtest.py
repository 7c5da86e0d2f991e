"""AppTest: the Backtest page against quantlib.backtest.mean_reversion run independently on the same bars."""
from __future__ import annotations

import pandas as pd
import pytest

from quantlib import backtest
from quantlib import pairs as qpairs
from tests.conftest import assert_no_exception, page_text, plotly_specs
from tickstore import queries


def _reference(db, **kw):
    frames = queries.bars_wide("spot", ["BTCUSDT", "ETHUSDT"], "1m", pd.Timestamp("2000-01-01", tz="UTC"), path=db)
    y, x = qpairs.align(frames["ETHUSDT"]["close"], frames["BTCUSDT"]["close"])
    return backtest.mean_reversion(y, x, timeframe="1m", **kw)


def test_backtest_page_matches_quantlib(app, tick_db):
    at = app(tick_db, page="app_pages/backtest.py", query={"lb": "6h", "win": "30", "hedge": "Rolling OLS"})
    assert_no_exception(at)
    ref = _reference(tick_db, window=30, entry_z=2.0, exit_z=0.5, stop_z=4.0, cost_bps=1.0, hedge="rolling",
                     method="ols", capital=10_000.0)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Total return"] == f"{ref.stats.total_return:+.2%}"
    assert metrics["Trades"] == str(ref.stats.n_trades)
    assert metrics["Max drawdown"] == f"{ref.stats.max_drawdown:.2%}"
    spec = plotly_specs(at)[0]
    equity = next(t for t in spec["data"] if t["name"] == "equity")
    assert list(equity["y"]) == pytest.approx(list(ref.equity.to_numpy()))
    drawdown = next(t for t in spec["data"] if t["name"] == "drawdown")
    assert min(drawdown["y"]) == pytest.approx(-ref.stats.max_drawdown)
    if ref.stats.n_trades:
        trades = at.dataframe[0].value
        assert len(trades) == ref.stats.n_trades
        assert list(trades["pnl"]) == pytest.approx(list(ref.trades["pnl"]))
    stats = at.dataframe[-1].value.set_index("metric")
    assert stats.loc["Trades", "value"] == str(ref.stats.n_trades)


def test_form_parameters_reach_the_backtest(app, tick_db):
    at = app(tick_db, page="app_pages/backtest.py", query={"lb": "6h", "win": "30"})
    at.number_input(key="bt_entry").set_value(1.0)
    at.number_input(key="bt_exit").set_value(0.25)
    at.number_input(key="bt_cost").set_value(5.0)
    at.button[0].click().run()  # the form's submit button
    assert_no_exception(at)
    ref = _reference(tick_db, window=30, entry_z=1.0, exit_z=0.25, stop_z=4.0, cost_bps=5.0, hedge="static",
                     method="ols", capital=10_000.0)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Trades"] == str(ref.stats.n_trades) and ref.stats.n_trades > 0
    assert metrics["Total return"] == f"{ref.stats.total_return:+.2%}"
    assert "one OLS fit on the first 30 bars" in page_text(at)


def test_bad_thresholds_are_explained(app, tick_db):
    at = app(tick_db, page="app_pages/backtest.py", query={"lb": "6h", "win": "30", "bt_entry": "1.0", "bt_exit": "1.5"})
    assert_no_exception(at)
    assert "Cannot run this backtest" in page_text(at)
    assert plotly_specs(at) == []


def test_window_too_short_for_a_backtest(app, tick_db):
    at = app(tick_db, page="app_pages/backtest.py", query={"lb": "15m", "win": "60"})
    assert_no_exception(at)
    assert "The backtest needs at least 62 bars" in page_text(at)


def test_kalman_backtest_trades_at_real_btc_prices(app, tick_db):
    """With BTC near 60,000 the Kalman backtest made no trades under the absolute state-noise default."""
    at = app(tick_db, page="app_pages/backtest.py", query={"lb": "6h", "win": "30", "hedge": "Kalman"})
    assert_no_exception(at)
    ref = _reference(tick_db, window=30, entry_z=2.0, exit_z=0.5, stop_z=4.0, cost_bps=1.0, hedge="kalman",
                     method="ols", capital=10_000.0)
    assert ref.stats.n_trades >= 3
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Trades"] == str(ref.stats.n_trades)
    assert "filtered residual" in page_text(at) and "observed rate" in page_text(at)
