"""quantlib.basis and the backtest's funding against hand computations on small, hand-made paths."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quantlib import backtest, basis

T = pd.Timestamp("2024-03-01 00:00", tz="UTC")


def ts(*hours_minutes) -> pd.DatetimeIndex:
    return pd.DatetimeIndex([T + pd.Timedelta(h) for h in hours_minutes])


def test_basis_bps_by_hand_on_shared_times_only():
    perp = pd.Series([101.0, 99.5, 100.2], index=ts("0min", "1min", "2min"))
    spot = pd.Series([100.0, 100.0, 100.0], index=ts("0min", "1min", "3min"))
    b = basis.basis_bps(perp, spot)
    assert list(b.index) == list(ts("0min", "1min"))
    assert b.tolist() == pytest.approx([100.0, -50.0])      # (101/100 - 1) * 1e4, (99.5/100 - 1) * 1e4


def test_annualised_basis_and_funding_closed_forms():
    # 10 bps per 8 h funding interval: 0.001 * (365 * 24 / 8) = 1.095 a year
    assert basis.annualised_basis(10.0) == pytest.approx(1.095)
    assert basis.annualised_basis(10.0, pd.Timedelta(days=30)) == pytest.approx(0.001 * 365 / 30)
    assert basis.annualised_funding(0.0001) == pytest.approx(0.1095)
    assert basis.annualised_funding(0.0001, 4 * 3600) == pytest.approx(0.219)
    with pytest.raises(ValueError, match="horizon"):
        basis.annualised_basis(10.0, 0)


def test_cumulative_funding_is_the_running_sum_in_time_order():
    r = pd.Series([0.0002, 0.0001, -0.00005], index=ts("16h", "0h", "8h"))
    c = basis.cumulative_funding(r)
    assert list(c.index) == list(ts("0h", "8h", "16h"))
    assert c.tolist() == pytest.approx([0.0001, 0.00005, 0.00025])
    with pytest.raises(ValueError, match="two values"):
        basis.cumulative_funding(pd.Series([0.1, 0.2], index=ts("0h", "0h")))


def test_funding_pnl_of_a_hand_made_position_path():
    # position: +2 from 00:30, -1 from 07:00, 0 from 09:00, +3 from exactly 16:00 (a change at T counts at T)
    position = pd.Series([2.0, -1.0, 0.0, 3.0], index=ts("30min", "7h", "9h", "16h"))
    rates = pd.Series([0.0001, 0.0003, -0.0002, 0.0005], index=ts("0h", "8h", "16h", "24h"))
    mark = pd.Series([100.0, 110.0, 120.0, 125.0], index=rates.index)
    res = basis.funding_pnl(position, rates, mark=mark)
    # 00:00 flat: 0;  08:00 short 1 at 110, rate 0.0003: short receives +0.033
    # 16:00 long 3 at 120, rate -0.0002: long receives +0.072;  24:00 long 3 at 125, 0.0005: pays -0.1875
    assert res.ledger["qty"].tolist() == [0.0, -1.0, 3.0, 3.0]
    assert res.ledger["payment"].tolist() == pytest.approx([0.0, 0.033, 0.072, -0.1875])
    assert res.total == pytest.approx(0.033 + 0.072 - 0.1875)
    assert res.received == pytest.approx(0.105) and res.paid == pytest.approx(-0.1875)
    assert res.cumulative.iloc[-1] == pytest.approx(res.total)
    assert "Funding PnL" in res.summary()


def test_funding_pnl_takes_marks_from_a_frame_or_the_last_price():
    position = pd.Series([1.0], index=ts("0h"))
    frame = pd.DataFrame({"funding_rate": [0.001, 0.001], "mark_price": [200.0, np.nan]}, index=ts("8h", "16h"))
    price = pd.Series([190.0, 195.0, 500.0], index=ts("7h", "15h59min", "16h1min"))
    res = basis.funding_pnl(position, frame, price=price)
    assert res.ledger["mark_price"].tolist() == [200.0, 195.0]   # 16:00 falls back to the 15:59 price, not 16:01
    assert res.ledger["payment"].tolist() == pytest.approx([-0.2, -0.195])
    with pytest.raises(ValueError, match="no mark price"):
        basis.funding_pnl(position, frame[["funding_rate"]])


def test_basis_summary_and_countdown():
    b = pd.Series([4.0, 8.0, 6.0], index=ts("0min", "1min", "2min"))
    s = basis.basis_summary(b, funding_rate=0.0001, settled=pd.Series([0.0001, 0.0002]),
                            next_funding_time=T + pd.Timedelta("8h"))
    assert (s.basis_bps, s.mean_bps, s.min_bps, s.max_bps, s.n_bars) == (6.0, 6.0, 4.0, 8.0, 3)
    assert s.annualised == pytest.approx(0.0006 * 1095)
    assert s.cumulative_funding == pytest.approx(0.0003)
    assert "Basis +6.00 bps" in s.summary()
    assert basis.time_to_funding(T + pd.Timedelta("8h"), T + pd.Timedelta("7h30min")) == pd.Timedelta("30min")
    assert basis.time_to_funding(T, T + pd.Timedelta("1s")) == pd.Timedelta(0)
    assert basis.time_to_funding(None, T) is None


# ---------------------------------------------------------------- backtest funding on a hand-made path
def _one_trade_pair():
    """x flat at 100, y = x + a spread that sits near 0, jumps to +3 at bar 80 (short spread signal), stays there
    and comes back to 0 at bar 95: one short-spread trade with beta fixed at 1."""
    n = 200
    idx = pd.date_range(T, periods=n, freq="1min")
    wiggle = np.where(np.arange(n) % 2 == 0, 0.05, -0.05)
    spread = wiggle.copy()
    spread[80:95] += 3.0
    x = pd.Series(100.0, index=idx)
    return x + 50 + spread, x


def test_backtest_funding_accrues_on_the_perp_leg_signed_by_the_position():
    y, x = _one_trade_pair()
    kw = dict(window=30, entry_z=2.0, exit_z=0.5, stop_z=None, cost_bps=1.0, beta=1.0, timeframe="1m")
    plain = backtest.mean_reversion(y, x, **kw)
    assert len(plain.trades) == 1
    tr = plain.trades.iloc[0]
    entry_close = tr["entry_time"] + pd.Timedelta("1min")   # filled at the entry bar's close
    exit_close = tr["exit_time"] + pd.Timedelta("1min")
    qty_x = tr["qty_x"]                                       # short spread = long x (beta 1)
    assert tr["side"] == "short" and qty_x > 0
    times = pd.DatetimeIndex([entry_close - pd.Timedelta("1s"),   # before the fill: flat
                              entry_close,                        # at the fill: held
                              entry_close + pd.Timedelta("10min"),
                              exit_close - pd.Timedelta("1s"),    # still held
                              exit_close])                        # closed at that close: flat
    rates = pd.Series([0.01, 0.001, -0.002, 0.0005, 0.01], index=times)
    marks = pd.Series([99.0, 101.0, 102.0, 103.0, 104.0], index=times)
    res = backtest.mean_reversion(y, x, **kw, funding=pd.DataFrame({"funding_rate": rates, "mark_price": marks}),
                                  funding_leg="x")
    expected = [0.0, -qty_x * 101.0 * 0.001, -qty_x * 102.0 * -0.002, -qty_x * 103.0 * 0.0005, 0.0]
    assert res.funding["payment"].tolist() == pytest.approx(expected)
    assert res.funding["qty"].tolist() == pytest.approx([0.0, qty_x, qty_x, qty_x, 0.0])
    total = sum(expected)
    t = res.trades.iloc[0]
    assert t["funding"] == pytest.approx(total) and res.total_funding == pytest.approx(total)
    assert t["gross_pnl"] == pytest.approx(tr["gross_pnl"]) and t["costs"] == pytest.approx(tr["costs"])
    assert t["pnl"] == pytest.approx(t["gross_pnl"] - t["costs"] + total)
    assert res.equity.iloc[-1] - plain.equity.iloc[-1] == pytest.approx(total)
    # booked from the bar whose close comes after the funding time, not before
    diff = res.equity - plain.equity
    first = res.trades.iloc[0]["entry_time"]
    assert diff.loc[:first].abs().max() == 0.0
    assert diff.loc[first + pd.Timedelta("1min")] == pytest.approx(expected[1])


def test_backtest_funding_with_mark_from_the_leg_and_on_the_y_leg():
    y, x = _one_trade_pair()
    kw = dict(window=30, entry_z=2.0, exit_z=0.5, stop_z=None, cost_bps=0.0, beta=1.0, timeframe="1m")
    plain = backtest.mean_reversion(y, x, **kw)
    tr = plain.trades.iloc[0]
    t_fund = tr["entry_time"] + pd.Timedelta("5min")
    res = backtest.mean_reversion(y, x, **kw, funding=pd.Series([0.001], index=[t_fund]), funding_leg="y")
    # y is short (short spread); mark = y's close of the last bar ending at or before t_fund (bar t_fund - 1 min)
    mark = y.loc[t_fund - pd.Timedelta("1min")]
    assert res.funding["mark_price"].iloc[0] == pytest.approx(mark)
    assert res.total_funding == pytest.approx(-tr["qty_y"] * mark * 0.001) and tr["qty_y"] < 0
    both = backtest.mean_reversion(y, x, **kw, funding={"y": pd.Series([0.001], index=[t_fund]),
                                                       "x": pd.Series([0.001], index=[t_fund])})
    assert both.total_funding == pytest.approx(-(tr["qty_y"] * mark + tr["qty_x"] * x.iloc[0]) * 0.001)


@pytest.mark.parametrize("kwargs,message", [
    (dict(funding=pd.Series([0.001], index=[T])), "funding_leg must say which leg"),
    (dict(funding=pd.Series([0.001], index=[T]), funding_leg="z"), "funding leg must be one of"),
    (dict(funding_leg="x"), "funding_leg is given without funding"),
    (dict(funding=pd.Series([0.001], index=[T.tz_localize(None)]), funding_leg="x"), "tz-aware UTC"),
    (dict(funding=pd.Series([np.nan], index=[T]), funding_leg="x"), "non-finite rate"),
    (dict(funding=pd.Series([0.1, 0.2], index=[T, T]), funding_leg="x"), "twice"),
])
def test_backtest_funding_input_is_checked(kwargs, message):
    y, x = _one_trade_pair()
    with pytest.raises(ValueError, match=message):
        backtest.mean_reversion(y, x, window=30, beta=1.0, **kwargs)
