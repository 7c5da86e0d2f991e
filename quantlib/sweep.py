"""Parameter sweep of the z-score mean-reversion backtest: an entry x exit (x stop x window) grid in one
vectorised pass, with an in-sample / out-of-sample split.

Every parameter set is the backtest `backtest.mean_reversion` runs (same hedge, z-score, rules, next-bar
fills, sizing, costs and forced final close); per-set stats equal `mean_reversion`'s: trades exactly,
money to rounding (tested). Speed: the hedge and the z-score are computed once per window; the signal state
machine runs for all sets at once, one table lookup per bar (`_states`); the holding periods come from the
position matrix, the cash from each set's product of per-trade growth factors, and the equity is gathered
by segment (`_book`). 10,000 bars x 400 sets cost about as much as ten single backtests.

Split: the last `oos_fraction` of the bars (or the bars from `oos_start`) are out of sample. In-sample
stats are those of `mean_reversion` on the in-sample bars alone. Out of sample, each set starts flat with
`capital` at the first out-of-sample bar and trades on the same causal hedge and z-score (their trailing
windows may reach back into the in-sample bars, as they would live: no look-ahead); its first fill is at
the second out-of-sample bar and an open position is closed at the last bar. The in-sample best (by
`metric`, among sets with at least `min_trades` trades) is marked, its out-of-sample result beside it.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import norm as _norm

from quantlib._blas import single_threaded
from quantlib._validate import as_pair, check_choice, check_finite_number, check_min, check_positive_number, check_window
from quantlib.backtest import HEDGES, _check_timeframe, _funding_events, _hedged_spread, _spread_zscore
from quantlib.sample import RULE
from quantlib.timeframes import bars_per_year, periods_per_year, timeframe_seconds

# the per-set columns: `BacktestStats` fields that vary by set (the sample itself is in `SweepResult`)
STATS = ("total_return", "sharpe", "sharpe_se", "sharpe_ci_low", "sharpe_ci_high", "max_drawdown", "hit_rate",
         "n_trades", "avg_holding_bars", "avg_holding_time", "turnover", "total_costs", "costs_fraction", "exposure")
METRICS = ("sharpe", "total_return", "max_drawdown", "hit_rate", "n_trades", "turnover", "exposure")
MAX_CELLS = 20_000_000  # bars x parameter sets whose signal states are held at once (2 bytes each)
BOOK_CELLS = 1_000_000  # bars x sets booked at once (~40 bytes each at the peak: equity, returns)


@dataclass(frozen=True)
class SweepResult:
    """One row per parameter set: `window`, `entry_z`, `exit_z`, `stop_z` (inf: no stop), the in-sample
    stats (`BacktestStats` fields) and, with a split, the same stats out of sample prefixed `oos_`;
    `best` marks the in-sample best by `metric`."""

    grid: pd.DataFrame
    metric: str
    best: pd.Series | None = field(repr=False)  # the best row (its oos_ columns: its out-of-sample result)
    in_sample: tuple[object, object]            # first and last in-sample bar
    out_of_sample: tuple[object, object] | None  # first and last out-of-sample bar (None: no split)
    n_in_sample: int
    n_out_of_sample: int
    skipped: int                                # combinations dropped for breaking exit < entry < stop
    params: dict[str, object]
    # the best set's equity in sample and out of sample (each starting at `capital`); None without a best
    best_equity: pd.Series | None = field(repr=False, default=None)
    best_oos_equity: pd.Series | None = field(repr=False, default=None)

    def best_params(self) -> dict[str, float] | None:
        """The in-sample best set as keyword arguments of `mean_reversion`."""
        if self.best is None:
            return None
        b = self.best
        stop = None if math.isinf(b["stop_z"]) else float(b["stop_z"])
        return dict(window=int(b["window"]), entry_z=float(b["entry_z"]), exit_z=float(b["exit_z"]), stop_z=stop)

    def heatmap(self, value: str = "sharpe", *, window: int | None = None, stop_z: float | None = None,
                sample: str = "in") -> pd.DataFrame:
        """entry_z (rows) x exit_z (columns) table of `value` for one window and stop (default: the best
        set's, else the first); `sample="out"` reads the out-of-sample column. NaN where exit >= entry."""
        check_choice(sample, "sample", ("in", "out"))
        check_choice(value, "value", STATS)
        col = value if sample == "in" else f"oos_{value}"
        if col not in self.grid:
            raise ValueError("this sweep has no out-of-sample part (oos_fraction=None)")
        ref = self.best if self.best is not None else self.grid.iloc[0]
        w = int(ref["window"]) if window is None else window
        s = float(ref["stop_z"]) if stop_z is None else stop_z
        g = self.grid[(self.grid["window"] == w) & (self.grid["stop_z"] == s)]
        if g.empty:
            raise ValueError(f"no parameter set with window {w} and stop_z {s}")
        return g.pivot(index="entry_z", columns="exit_z", values=col)

    def summary(self) -> str:
        head = (f"Sweep: {len(self.grid)} parameter sets on {self.n_in_sample} in-sample bars"
                + (f" and {self.n_out_of_sample} out-of-sample bars" if self.out_of_sample else ""))
        if self.best is None:
            return head + f"; no set made >= {self.params['min_trades']} trades in sample"
        b, p = self.best, self.best_params()
        stop = "no stop" if p["stop_z"] is None else f"stop {p['stop_z']:g}"
        text = (f"{head}; in-sample best by {self.metric}: window {p['window']}, entry {p['entry_z']:g}, "
                f"exit {p['exit_z']:g}, {stop}: Sharpe {b['sharpe']:.2f}, return {b['total_return']:.2%}, "
                f"{int(b['n_trades'])} trades")
        if self.out_of_sample:
            text += (f"; out of sample: Sharpe {b['oos_sharpe']:.2f}, return {b['oos_total_return']:.2%}, "
                     f"{int(b['oos_n_trades'])} trades")
        return text

    def __str__(self) -> str:
        return self.summary()


def _values(v: object, name: str, *, allow_zero: bool = False, allow_none: bool = False) -> list[float]:
    items = list(v) if isinstance(v, Iterable) and not isinstance(v, str) else [v]
    if not items:
        raise ValueError(f"{name} must hold at least one value")
    out = []
    for item in items:
        if allow_none and (item is None or (isinstance(item, float) and math.isinf(item) and item > 0)):
            out.append(math.inf)
        else:
            out.append(check_positive_number(item, name, allow_zero=allow_zero))
    return sorted(set(out))


def _windows(v: object) -> list[int]:
    items = list(v) if isinstance(v, Iterable) and not isinstance(v, str) else [v]
    if not items:
        raise ValueError("window must hold at least one value")
    return sorted({check_window(w, "window", 3) for w in items})


class _Grid:
    """Accumulated per-set results of one stretch of bars (stats arrays, shape (n_sets,))."""

    def __init__(self, equity: np.ndarray, in_market: np.ndarray, n_trades: np.ndarray, wins: np.ndarray,
                 bars_held: np.ndarray, hold_ns: np.ndarray | None, traded: np.ndarray, costs: np.ndarray):
        self.equity, self.in_market, self.n_trades, self.wins = equity, in_market, n_trades, wins
        self.bars_held, self.hold_ns, self.traded, self.costs = bars_held, hold_ns, traded, costs


# signal states of the position state machine (module docstring of quantlib.backtest)
FLAT, BLOCKED, LONG, SHORT = 0, 1, 2, 3
SIDE = np.array([0, 0, 1, -1], dtype=np.int8)


def _transitions() -> np.ndarray:
    """Next state for (state, code): code bits are the z-comparisons of one bar for one set (`_codes`)."""
    table = np.zeros((4, 128), dtype=np.int8)
    for c in range(128):
        short_in, long_in, calm, long_stop, long_out, short_stop, short_out = ((c >> k) & 1 for k in range(7))
        table[FLAT, c] = SHORT if short_in else LONG if long_in else FLAT
        table[BLOCKED, c] = FLAT if calm else BLOCKED  # |z| < entry: no entry can fire on that bar
        table[LONG, c] = BLOCKED if long_stop else FLAT if long_out else LONG
        table[SHORT, c] = BLOCKED if short_stop else FLAT if short_out else SHORT
    return table


TRANSITIONS = _transitions()


def _codes(z: np.ndarray, entry: np.ndarray, exit_: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """(bars, sets) uint8: bit 0 entry < z < stop, 1 -stop < z < -entry, 2 |z| < entry, 3 z <= -stop,
    4 z >= -exit, 5 z >= stop, 6 z <= exit. A NaN z sets no bit: every state stays."""
    zc = z[:, None]
    u8 = np.uint8
    es, es_inv = np.unique(np.column_stack([entry, stop]), axis=0, return_inverse=True)
    ex, ex_inv = np.unique(exit_, return_inverse=True)
    e, s = es[:, 0], es[:, 1]
    with np.errstate(invalid="ignore"):
        part_es = (((zc > e) & (zc < s)).astype(u8) | (((zc > -s) & (zc < -e)).astype(u8) << 1)
                   | ((np.abs(zc) < e).astype(u8) << 2) | ((zc <= -s).astype(u8) << 3) | ((zc >= s).astype(u8) << 5))
        part_ex = ((zc >= -ex).astype(u8) << 4) | ((zc <= ex).astype(u8) << 6)
    return part_es[:, es_inv.ravel()] | part_ex[:, ex_inv.ravel()]


def _states(z: np.ndarray, entry: np.ndarray, exit_: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """(bars, sets) int8 signal states after each bar's z: the state machine of every set at once, one
    table lookup per bar (flat at the first bar of `z`)."""
    codes = _codes(z, entry, exit_, stop)
    states = np.empty(codes.shape, dtype=np.int8)
    st = np.zeros(codes.shape[1], dtype=np.int8)
    table = TRANSITIONS
    for t in range(codes.shape[0]):
        st = table[st, codes[t]]
        states[t] = st
    return states


def _simulate(yv: np.ndarray, xv: np.ndarray, b: np.ndarray, z: np.ndarray, entry: np.ndarray, exit_: np.ndarray,
              stop: np.ndarray, capital: float, cost_rate: float, times: np.ndarray | None,
              funding: tuple[np.ndarray, ...] | None = None) -> _Grid:
    """`mean_reversion`'s rules and book for every set at once (`_states`, then `_book`)."""
    return _book(yv, xv, b, _states(z, entry, exit_, stop), capital, cost_rate, times, funding)


def _funding_slice(fund, sl: slice) -> tuple[np.ndarray, ...] | None:
    """The funding times booked inside bars sl (bar j counted from sl.start) as `_book` takes them."""
    if fund is None:
        return None
    keep = (fund.j > sl.start) & (fund.j < sl.stop)
    return fund.j[keep] - sl.start, fund.leg[keep], fund.rate[keep], fund.mark[keep]


def _book(yv: np.ndarray, xv: np.ndarray, b: np.ndarray, states: np.ndarray, capital: float, cost_rate: float,
          times: np.ndarray | None, funding: tuple[np.ndarray, ...] | None = None) -> _Grid:
    """Fills, cash, equity and trade counts of every set from its signal states.

    yv, xv, b, states cover the bars traded (flat at the first, closed at the last); `times`: int64 ns of
    the bars for clock holding times (None: bars only); `funding`: (bar j, leg 0 / 1, rate, mark) of each
    funding time, j counted from the first bar here and booked as `backtest._FundingEvents` does (a trade
    open over bars f < j <= e pays -qty x mark x rate from bar j on). The holding periods of every set come
    from its positions; the cash of every set from its trades' growth factors; then the marked equity by
    segment."""
    n, p = states.shape
    # position after each bar's fill: the signal of bar t is filled at bar t+1; one row per set
    pos = np.zeros((p, n), dtype=np.int8)
    pos[:, 1:] = SIDE[states[:-1]].T
    prev = np.zeros_like(pos)
    prev[:, 1:] = pos[:, :-1]
    moved = pos != prev
    enters = moved & (pos != 0)
    exits = moved & (prev != 0)
    exits[:, -1] |= pos[:, -1] != 0  # still open at the last bar: closed there ("end")
    s_id, f = np.nonzero(enters)     # sorted by set, then time: the k-th entry pairs with the k-th exit
    _, e = np.nonzero(exits)
    side = pos[s_id, f].astype(np.float64)
    n_trades = np.bincount(s_id, minlength=p)
    first = np.cumsum(n_trades) - n_trades
    ordinal = np.arange(s_id.shape[0]) - first[s_id]
    # the book. Each trade multiplies the cash by a factor that depends on its own bars only (sizing makes
    # the gross notional equal to the cash at entry), so the cash before trade k of a set is the capital
    # times the product of its earlier trades' factors: one cumulative product per set, no loop over bars.
    yf, xf, ye, xe = yv[f], xv[f], yv[e], xv[e]
    beta = b[f - 1]
    unit = side / (yf + np.abs(beta) * xf)  # y units per unit of cash
    ay, ax = np.abs(unit), np.abs(beta * unit)
    growth = (1.0 - cost_rate * (ay * yf + ax * xf) + ((ye - yf) * unit - (xe - xf) * beta * unit)
              - cost_rate * (ay * ye + ax * xe))
    pairs = None
    if funding is not None and len(funding[0]) and s_id.size:
        # (trade, funding time) pairs with f < j <= e; the payment per unit of cash at entry is linear too
        fj, fleg, frate, fmark = funding
        order = np.argsort(fj, kind="stable")
        fj, fleg, frate, fmark = fj[order], fleg[order], frate[order], fmark[order]
        lo, hi = np.searchsorted(fj, f, side="right"), np.searchsorted(fj, e, side="right")
        count = hi - lo
        tr = np.repeat(np.arange(s_id.shape[0]), count)
        ev = lo[tr] + (np.arange(tr.shape[0]) - np.repeat(np.cumsum(count) - count, count))
        per_cash = np.where(fleg[ev] == 0, unit[tr], -beta[tr] * unit[tr]) * fmark[ev] * frate[ev]
        growth -= np.bincount(tr, weights=per_cash, minlength=s_id.shape[0])
        pairs = (tr, fj[ev], fleg[ev], fmark[ev] * frate[ev])
    k_max = int(n_trades.max()) if s_id.size else 0
    factors = np.ones((p, k_max + 1))
    factors[s_id, ordinal + 1] = growth
    np.multiply.accumulate(factors, axis=1, out=factors)
    cash0 = capital * factors[s_id, ordinal]
    # each trade as `backtest._Book` books it, from its cash at entry
    qy = unit * cash0
    qx = -beta * qy
    ay, ax = np.abs(qy), np.abs(qx)
    n_in, n_out = ay * yf + ax * xf, ay * ye + ax * xe
    c_in, c_out = cost_rate * n_in, cost_rate * n_out
    start = cash0 - c_in
    gross = (ye - yf) * qy + (xe - xf) * qx
    paid = np.zeros(s_id.shape[0])
    if pairs is not None:
        tr, pj, pleg, mark_rate = pairs
        payment = -np.where(pleg == 0, qy[tr], qx[tr]) * mark_rate
        paid = np.bincount(tr, weights=payment, minlength=s_id.shape[0])
    cash_after = (start + gross + paid) - c_out
    pnl = gross - c_in - c_out + paid
    notional, costs = n_in + n_out, c_in + c_out
    # marked equity: segment 0 flat with the capital, 2k+1 in trade k, 2k+2 flat after it (exit bar included)
    width = 2 * k_max + 1
    seg = np.zeros((p, n), dtype=np.int64)
    seg[s_id, f] = 2 * ordinal + 1
    seg[s_id, e] = 2 * ordinal + 2  # after the entry: an entry closed on its own bar is flat after it
    np.maximum.accumulate(seg, axis=1, out=seg)
    seg += (np.arange(p) * width)[:, None]
    tab_start, tab_y, tab_x, tab_qy, tab_qx = (np.zeros(p * width) for _ in range(5))
    tab_start[np.arange(p) * width] = capital
    j = s_id * width + 2 * ordinal
    tab_start[j + 1], tab_y[j + 1], tab_x[j + 1], tab_qy[j + 1], tab_qx[j + 1] = start, yv[f], xv[f], qy, qx
    tab_start[j + 2] = cash_after
    # start + ((y - y_f) q_y + (x - x_f) q_x), in place (a few bar x set arrays at a time)
    equity = tab_y[seg]
    np.subtract(yv, equity, out=equity)
    equity *= tab_qy[seg]
    part = tab_x[seg]
    np.subtract(xv, part, out=part)
    part *= tab_qx[seg]
    equity += part
    del part
    np.add(tab_start[seg], equity, out=equity)
    if pairs is not None and tr.size:
        # funding paid so far inside each trade, bars j .. e-1 (the exit bar's flat segment includes it)
        delta = np.zeros((p, n + 1))
        np.add.at(delta, (s_id[tr], pj), payment)
        np.add.at(delta, (s_id[tr], e[tr]), -payment)
        equity += np.cumsum(delta[:, :n], axis=1)
    in_market = np.count_nonzero(pos[:, :-1], axis=1)
    hold_ns = np.bincount(s_id, weights=(times[e] - times[f]).astype(np.float64), minlength=p) \
        if times is not None else None
    return _Grid(equity, in_market, n_trades, np.bincount(s_id, weights=pnl > 0, minlength=p).astype(np.int64),
                 np.bincount(s_id, weights=e - f, minlength=p).astype(np.int64), hold_ns,
                 np.bincount(s_id, weights=notional, minlength=p), np.bincount(s_id, weights=costs, minlength=p))


def _sharpe(rets: np.ndarray, per_year: float | None, level: float = 0.95) -> dict[str, np.ndarray]:
    """`performance.sharpe_ratio` (Mertens standard error, normal CI) for every row of `rets` at once."""
    p, m = rets.shape
    nan = np.full(p, np.nan)
    if not per_year or m < 2:
        return dict(sharpe=nan, sharpe_se=nan, sharpe_ci_low=nan, sharpe_ci_high=nan)
    mean = rets.mean(axis=1)
    c = rets - mean[:, None]
    c2 = c * c
    ss = c2.sum(axis=1)
    sd = np.sqrt(ss / (m - 1))  # numpy's std(ddof=1), step by step
    m2 = ss / m
    c *= c2
    m3 = c.mean(axis=1)
    c2 *= c2
    m4 = c2.mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_bar = np.where(sd > 0, mean / sd, np.nan)
        g3 = np.where(m2 > 0, m3 / m2**1.5, 0.0)  # no variation: Lo's (g3 0, g4 3)
        g4 = np.where(m2 > 0, m4 / m2**2, 3.0)
        var = 1.0 - g3 * per_bar + (g4 - 1.0) / 4.0 * per_bar**2
        scale = math.sqrt(per_year)
        sr, se = per_bar * scale, np.sqrt(np.maximum(var, 0.0) / m) * scale
    zq = float(_norm.ppf(0.5 + level / 2))
    return dict(sharpe=sr, sharpe_se=se, sharpe_ci_low=sr - zq * se, sharpe_ci_high=sr + zq * se)


def _stats_frame(g: _Grid, capital: float, per_year: float | None, bar_ns: float | None) -> pd.DataFrame:
    """`backtest._stats` for every set (same formulas, row-wise on the equity matrix)."""
    eq = g.equity
    n = eq.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = _sharpe(np.diff(eq, axis=1) / eq[:, :-1], per_year)
        nt = g.n_trades
        some = nt > 0
        hold_bars = np.where(some, g.bars_held / nt, np.nan)
        if g.hold_ns is not None:
            hold = np.where(some, g.hold_ns / np.maximum(nt, 1), np.nan)
        else:
            hold = np.where(some, hold_bars * bar_ns, np.nan) if bar_ns else np.full(eq.shape[0], np.nan)
        out = {
            "total_return": eq[:, -1] / capital - 1.0,
            **sharpe,
            "max_drawdown": np.max(1.0 - eq / np.maximum.accumulate(eq, axis=1), axis=1),
            "hit_rate": np.where(some, g.wins / nt, np.nan),
            "n_trades": nt,
            "avg_holding_bars": hold_bars,
            "avg_holding_time": pd.to_timedelta(np.round(hold), unit="ns"),
            "turnover": g.traded / capital,
            "total_costs": g.costs,
            "costs_fraction": g.costs / capital,
            "exposure": g.in_market / n,
        }
    return pd.DataFrame(out)


def _split_bar(index: pd.Index, n: int, oos_fraction: float | None, oos_start: object) -> int:
    """First out-of-sample bar (n: no split)."""
    if oos_start is not None:
        if isinstance(oos_start, (int, np.integer)) and not isinstance(oos_start, bool):
            s = int(oos_start)
            if not 0 < s < n:
                raise ValueError(f"oos_start as a bar number must be in 1..{n - 1}, got {s}")
            return s
        if not isinstance(index, pd.DatetimeIndex):
            raise ValueError("oos_start as a time needs a DatetimeIndex; pass a bar number instead")
        try:
            ts = pd.Timestamp(oos_start)
        except (TypeError, ValueError):
            raise ValueError(f"oos_start must be a bar number or a UTC time, got {oos_start!r}") from None
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        s = int(index.searchsorted(ts))
        if not 0 < s < n:
            raise ValueError(f"oos_start {ts} is outside the bars ({index[0]} .. {index[-1]})")
        return s
    if oos_fraction is None or oos_fraction == 0:
        return n
    f = check_positive_number(oos_fraction, "oos_fraction")
    if f >= 1:
        raise ValueError(f"oos_fraction must be in [0, 1), got {oos_fraction!r}")
    return n - int(round(n * f))


@single_threaded
def sweep(
    y: pd.Series | np.ndarray,
    x: pd.Series | np.ndarray,
    *,
    entry_z: Iterable[float] | float = (1.0, 1.5, 2.0, 2.5, 3.0),
    exit_z: Iterable[float] | float = (0.0, 0.25, 0.5, 0.75, 1.0),
    stop_z: Iterable[float | None] | float | None = 4.0,
    window: Iterable[int] | int = 60,
    cost_bps: float = 1.0,
    hedge: str = "rolling",
    hedge_window: int | None = None,
    method: str = "ols",
    beta: float | None = None,
    timeframe: str | None = None,
    capital: float = 10_000.0,
    kalman_delta: float = 1e-4,
    oos_fraction: float | None = 0.3,
    oos_start: int | str | pd.Timestamp | None = None,
    metric: str = "sharpe",
    min_trades: int = RULE.min_trades,
    funding: pd.Series | pd.DataFrame | dict | None = None,
    funding_leg: str | None = None,
) -> SweepResult:
    """`mean_reversion` over every (window, entry_z, exit_z, stop_z) in the grid (module docstring).

    Lists (or single values) for `entry_z`, `exit_z`, `stop_z` (None: no stop) and `window`; combinations
    breaking exit < entry < stop are skipped (counted in `skipped`). The other arguments are
    `mean_reversion`'s (`hedge_window` None: each window's own length; `funding` / `funding_leg` book a
    perpetual leg's funding as there). Split: the last `oos_fraction`
    of the bars are out of sample (None or 0: no split); `oos_start` (a bar number or a UTC time), when
    given, replaces it. `metric` picks the in-sample best among sets with >= `min_trades` trades (default: the
    sample rule's minimum, `quantlib.sample.RULE`; max_drawdown: the smallest)."""
    entries = _values(entry_z, "entry_z")
    exits = _values(exit_z, "exit_z", allow_zero=True)
    stops = _values(stop_z, "stop_z", allow_none=True)
    windows = _windows(window)
    check_choice(hedge, "hedge", HEDGES)
    if hedge_window is not None:
        check_window(hedge_window, "hedge_window", 3)
    cost_rate = check_positive_number(cost_bps, "cost_bps", allow_zero=True) / 1e4
    capital = check_positive_number(capital, "capital")
    check_choice(metric, "metric", METRICS)
    min_trades = check_window(min_trades, "min_trades", 0)
    if beta is not None:
        beta = check_finite_number(beta, "beta")
    if timeframe is not None:
        bars_per_year(timeframe)
    combos = [(e, x_, s) for e, x_, s in itertools.product(entries, exits, stops) if x_ < e < s]
    skipped = len(entries) * len(exits) * len(stops) - len(combos)
    if not combos:
        raise ValueError(f"no valid threshold combination: need exit_z < entry_z < stop_z, got entry {entries}, "
                         f"exit {exits}, stop {stops}")
    ys, xs = as_pair(y, x, positive=True)
    _check_timeframe(timeframe, ys.index)
    n = len(ys)
    split = _split_bar(ys.index, n, oos_fraction, oos_start)
    longest = max(max(windows), hedge_window or 0)
    check_min(split, longest + 2, "in-sample bars (the longest window + 2)")
    if split < n:
        check_min(n - split, 3, "out-of-sample bars")
    yv, xv = ys.to_numpy(), xs.to_numpy()
    index = ys.index
    fund = _funding_events(funding, funding_leg, index, np.column_stack([yv, xv]), ("y", "x"), timeframe)
    times = index.as_unit("ns").asi8 if isinstance(index, pd.DatetimeIndex) else None
    bar_ns = timeframe_seconds(timeframe) * 1e9 if times is None and timeframe is not None else None
    per_in = periods_per_year(index[:split], timeframe)
    per_out = periods_per_year(index[split:], timeframe) if split < n else None
    thresholds = np.array(combos)
    chunk = max(1, MAX_CELLS // n)

    frames = []
    hedges: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for w in windows:
        hw = hedge_window if hedge_window is not None else w
        if hw not in hedges:
            hedges[hw] = _hedged_spread(ys, xs, hedge, hw, method, beta, kalman_delta)
        b, spr = hedges[hw]
        z = _spread_zscore(b, spr, index, w)
        for lo in range(0, len(combos), chunk):
            th = thresholds[lo: lo + chunk]
            e_, x_, s_ = th[:, 0].copy(), th[:, 1].copy(), th[:, 2].copy()
            part = [pd.DataFrame({"window": w, "entry_z": e_, "exit_z": x_, "stop_z": s_})]
            for sl, per, prefix in ((slice(0, split), per_in, ""), (slice(split, n), per_out, "oos_")):
                if sl.start == sl.stop:
                    continue
                states = _states(z[sl], e_, x_, s_)
                t_sl = None if times is None else times[sl]
                f_sl = _funding_slice(fund, sl)
                step = max(1, BOOK_CELLS // states.shape[0])
                stats = [_stats_frame(_book(yv[sl], xv[sl], b[sl], states[:, k: k + step], capital, cost_rate, t_sl,
                                            f_sl), capital, per, bar_ns) for k in range(0, states.shape[1], step)]
                part.append(pd.concat(stats, ignore_index=True).add_prefix(prefix))
            frames.append(pd.concat(part, axis=1))
    grid = pd.concat(frames, ignore_index=True)
    grid["n_trades"] = grid["n_trades"].astype("int64")
    eligible = grid[(grid["n_trades"] >= max(min_trades, 0)) & grid[metric].notna()]
    best = None
    if not eligible.empty:
        label = eligible[metric].idxmin() if metric == "max_drawdown" else eligible[metric].idxmax()
        best = grid.loc[label]
    grid.insert(4, "best", False)
    if best is not None:
        grid.loc[best.name, "best"] = True
        best = grid.loc[best.name]
    best_eq = best_oos_eq = None
    if best is not None:
        w = int(best["window"])
        b, spr = hedges[hedge_window if hedge_window is not None else w]
        z = _spread_zscore(b, spr, index, w)
        one = [np.array([best[k]], dtype=np.float64) for k in ("entry_z", "exit_z", "stop_z")]
        part = slice(0, split)
        best_eq = pd.Series(_simulate(yv[part], xv[part], b[part], z[part], *one, capital, cost_rate, None,
                                      _funding_slice(fund, part)).equity[0], index=index[part], name="equity")
        if split < n:
            part = slice(split, n)
            best_oos_eq = pd.Series(_simulate(yv[part], xv[part], b[part], z[part], *one, capital, cost_rate, None,
                                              _funding_slice(fund, part)).equity[0], index=index[part], name="equity")
    params = dict(entry_z=entries, exit_z=exits, stop_z=stops, window=windows, cost_bps=cost_bps, hedge=hedge,
                  hedge_window=hedge_window, method=method, beta=beta, timeframe=timeframe, capital=capital,
                  kalman_delta=kalman_delta, oos_fraction=oos_fraction, oos_start=oos_start, metric=metric,
                  min_trades=min_trades, split_bar=split, periods_per_year=per_in,
                  oos_periods_per_year=per_out, fill="next bar close",
                  funding_legs=fund.leg_names(("y", "x")) if fund is not None else None)
    return SweepResult(
        grid=grid, metric=metric, best=best, in_sample=(index[0], index[split - 1]),
        out_of_sample=(index[split], index[-1]) if split < n else None, n_in_sample=split,
        n_out_of_sample=n - split, skipped=skipped, params=params, best_equity=best_eq, best_oos_equity=best_oos_eq,
    )
