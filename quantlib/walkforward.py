"""Walk-forward z-score mean reversion: fit on a formation window, trade the following trading window
only, roll on.

Windows: trading windows are consecutive and do not overlap; the first starts after `formation` bars (or
that much time). Formation is the `formation` bars (or time) just before each trading window (rolling),
or every bar before it (`anchored=True`). Lengths are bar counts (int) or durations ("3d", "12h", with a
DatetimeIndex: windows in clock time, so gaps in the bars do not stretch them). A last trading window
shorter than 3 bars is left out (it could not hold a position); so are time windows with fewer bars.

Per window, from the formation bars only: alpha and beta by `method` (`regression.hedge_ratio`: ols,
huber, theil_sen, tls), and the mean and std (ddof=1) of the formation spread y - alpha - beta x.
`method="kalman"` **re-runs** the filter on each formation window (OLS warm-up on its first
`kalman_warmup` bars, then filtered to its last bar) and holds its final state (alpha_T|T, beta_T|T) fixed
through the trading window, like every other method: no state is carried from one window to the next,
so each fit sees exactly its formation bars. In the trading window z_t = (y_t - alpha - beta x_t - mean) / std
uses the window's fixed parameters and bar t only: nothing after the formation end is fitted, no look-ahead.

Trading follows `backtest.mean_reversion`: the same entry / exit / stop rules on z, the signal at bar t
filled at bar t+1's close, sizing with the window's beta (gross notional = equity at entry), `cost_bps`
per leg and side. Each trading window starts flat (its first fill is at its second bar) and **a position
still open at its last bar is closed there** (exit reason "window end"): the hedge it was sized with is
about to be replaced, and a desk does not carry a position into a model it has not opened it under. No
entry is filled at a window's last bar (it would be closed at once, paying two costs for nothing).

Walk-forward optimisation (`optimize=`): the thresholds too are chosen on each formation window, as the
best of a grid backtested on the formation bars with that window's fit (`quantlib.sweep`'s engine).
Funding of a perpetual leg (`funding=`) is booked as `mean_reversion` books it.

Returns the per-window table, the stitched out-of-sample equity (from the first trading bar, starting at
`capital`), trades and the `BacktestStats` of that equity (annualized by the out-of-sample bars' rate).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.durations import parse_duration
from quantlib import regression
from quantlib._blas import single_threaded
from quantlib._validate import as_pair, check_choice, check_positive_number, check_window
from quantlib.backtest import (BacktestStats, _Book, _check_thresholds, _check_timeframe, _funding_events,
                               _holding_periods, _positions, _stats, _trades_frame, zscore_signals)
from quantlib.sample import RULE
from quantlib.sweep import METRICS, _book, _states, _stats_frame, _values
from quantlib.timeframes import bars_per_year, periods_per_year, timeframe_seconds

METHODS = (*regression.METHODS, "kalman")
MIN_FORMATION = 10  # bars a formation window needs for a hedge and a spread std
MIN_TRADING = 3     # bars a trading window needs to hold a position (fill at its 2nd bar, close at its 3rd)
FLAT_RTOL = 1e-9    # a formation spread std below this fraction of max|y| is a perfect fit: no z-score

WINDOW_COLUMNS = ["window", "formation_start", "formation_end", "trading_start", "trading_end", "formation_bars",
                  "trading_bars", "alpha", "beta", "spread_mean", "spread_std", "trades", "pnl", "return", "note"]


@dataclass(frozen=True)
class WalkForwardResult:
    """Walk-forward backtest: `windows` (one row per trading window: its formation and trading bars, first
    and last timestamps inclusive, the fitted alpha / beta / spread mean / spread std, trades, pnl,
    return, note), out-of-sample Series from the first trading bar on (`equity`, `positions`, `zscore`,
    `hedge_ratio`, `spread`), `trades` (as `mean_reversion`'s plus `window`) and `stats`."""

    windows: pd.DataFrame
    trades: pd.DataFrame
    equity: pd.Series = field(repr=False)
    positions: pd.Series = field(repr=False)
    zscore: pd.Series = field(repr=False)
    hedge_ratio: pd.Series = field(repr=False)
    spread: pd.Series = field(repr=False)
    stats: BacktestStats
    params: dict[str, object]
    # funding ledger of the perpetual legs from the first trading bar on (as `BacktestResult.funding`); None
    # without funding=
    funding: pd.DataFrame | None = field(repr=False, default=None)

    def summary(self) -> str:
        s, w = self.stats, self.windows
        fitted = int(w["note"].eq("").sum())
        kind = "anchored" if self.params["anchored"] else "rolling"
        opt = self.params.get("optimize")
        if opt:
            kind += f", thresholds re-chosen per window by {opt['metric']} over {opt['sets']} sets"
        sharpe = (f"Sharpe withheld ({s.withheld['sharpe']})" if "sharpe" in s.withheld else
                  f"Sharpe {s.sharpe:.2f} [95% CI {s.sharpe_ci_low:.2f}, {s.sharpe_ci_high:.2f}]")
        return (f"Walk-forward ({kind}, {self.params['method']}): {len(w)} trading windows ({fitted} fitted), "
                f"{s.n_trades} trades, out-of-sample return {s.total_return:.2%}, {sharpe}, "
                f"max drawdown {s.max_drawdown:.2%}, hit rate {s.hit_rate:.0%}, costs {s.total_costs:,.2f}")

    def __str__(self) -> str:
        return self.summary()


def _length(v: object, name: str, minimum: int) -> int | float:
    """A bar count (int >= minimum) or a duration in seconds (from a string such as "3d")."""
    if isinstance(v, str):
        seconds = parse_duration(v, ("s", "m", "h", "d", "w"))
        if seconds <= 0:
            raise ValueError(f"{name} must be a positive duration, got {v!r}")
        return seconds
    return check_window(v, name, minimum)


def _windows(index: pd.Index, formation: int | float, trading: int | float, by_time: bool,
             anchored: bool) -> list[tuple[int, int, int]]:
    """(formation start, trading start, trading end) bar positions, end exclusive."""
    n = len(index)
    out = []
    if not by_time:
        fe = int(formation)
        while fe < n:
            te = min(fe + int(trading), n)
            if te - fe >= MIN_TRADING:
                out.append((0 if anchored else fe - int(formation), fe, te))
            fe = te
        return out
    t0, last = index[0], index[-1]
    f_td, t_td = pd.Timedelta(seconds=formation), pd.Timedelta(seconds=trading)
    start = t0 + f_td
    while start <= last:
        fe, te = int(index.searchsorted(start)), int(index.searchsorted(start + t_td))
        fs = 0 if anchored else int(index.searchsorted(start - f_td))
        if te - fe >= MIN_TRADING:
            out.append((fs, fe, te))
        start = start + t_td
    return out


def _fit(yf: pd.Series, xf: pd.Series, method: str, kalman_delta: float,
         kalman_warmup: int | None) -> tuple[float, float]:
    if method == "kalman":
        warm = kalman_warmup if kalman_warmup is not None else max(3, min(50, len(yf) // 2))
        if len(yf) < warm + 2:
            raise ValueError(f"the formation window has {len(yf)} bars; the Kalman filter needs >= {warm + 2} "
                             f"(warm-up {warm} + 2)")
        kf = regression.kalman_hedge_ratio(yf, xf, delta=kalman_delta, warmup=warm)
        return float(kf.alpha.iloc[-1]), float(kf.beta.iloc[-1])
    fit = regression.hedge_ratio(yf, xf, method=method)
    return fit.alpha, fit.beta


def _grid(optimize: object, entry_z: float, exit_z: float, stop: float) -> np.ndarray:
    """(sets, 3) entry / exit / stop combinations of an `optimize` grid that satisfy exit < entry < stop."""
    if not isinstance(optimize, dict) or not optimize:
        raise ValueError("optimize must be a dict of threshold lists, e.g. {'entry_z': [1.5, 2.0], 'exit_z': [0, 0.5]}")
    unknown = set(optimize) - {"entry_z", "exit_z", "stop_z"}
    if unknown:
        raise ValueError(f"optimize takes entry_z, exit_z and stop_z; got {sorted(unknown)}")
    entries = _values(optimize.get("entry_z", entry_z), "optimize entry_z")
    exits = _values(optimize.get("exit_z", exit_z), "optimize exit_z", allow_zero=True)
    stops = _values(optimize.get("stop_z", None if math.isinf(stop) else stop), "optimize stop_z", allow_none=True)
    sets = [(e, x, s) for e in entries for x in exits for s in stops if x < e < s]
    if not sets:
        raise ValueError("optimize has no valid threshold combination: need exit_z < entry_z < stop_z")
    return np.array(sets, dtype=np.float64)


def _choose(grid: np.ndarray, given: tuple[float, float, float], yf: np.ndarray, xf: np.ndarray, beta: float,
            zf: np.ndarray, capital: float, cost_rate: float, per_year: float | None, metric: str,
            min_trades: int) -> tuple[tuple[float, float, float], float]:
    """The thresholds that did best on the formation bars (their fit, their z), and that score; the given
    thresholds and NaN when no set made `min_trades` trades."""
    g = _book(yf, xf, np.full(yf.shape[0], beta), _states(zf, grid[:, 0].copy(), grid[:, 1].copy(), grid[:, 2].copy()),
              capital, cost_rate, None)
    st = _stats_frame(g, capital, per_year, None)
    ok = (st["n_trades"] >= min_trades) & st[metric].notna()
    if not ok.any():
        return given, math.nan
    vals = st[metric].where(ok)
    i = int(vals.idxmin() if metric == "max_drawdown" else vals.idxmax())
    return (float(grid[i, 0]), float(grid[i, 1]), float(grid[i, 2])), float(st[metric].iloc[i])


@single_threaded
def walk_forward(
    y: pd.Series | np.ndarray,
    x: pd.Series | np.ndarray,
    *,
    formation: int | str,
    trading: int | str,
    anchored: bool = False,
    method: str = "ols",
    entry_z: float = 2.0,
    exit_z: float = 0.5,
    stop_z: float | None = 4.0,
    cost_bps: float = 1.0,
    timeframe: str | None = None,
    capital: float = 10_000.0,
    kalman_delta: float = 1e-4,
    kalman_warmup: int | None = None,
    funding: pd.Series | pd.DataFrame | dict | None = None,
    funding_leg: str | None = None,
    optimize: dict[str, object] | None = None,
    optimize_metric: str = "sharpe",
    optimize_min_trades: int = RULE.min_trades,
) -> WalkForwardResult:
    """Walk-forward backtest of the pair y, x (module docstring).

    formation / trading: bar counts, or durations ("7d", "12h") on a DatetimeIndex (both of one kind).
    method: ols, huber, theil_sen, tls or kalman (re-run per formation window, final state held;
    `kalman_warmup` default min(50, formation bars // 2)). The other arguments are `mean_reversion`'s,
    `funding` / `funding_leg` included (perpetual funding booked while a position is held).

    `optimize` (walk-forward optimisation): a grid such as {"entry_z": [1.5, 2, 2.5], "exit_z": [0, 0.5]}
    (keys entry_z / exit_z / stop_z; a missing key keeps the given value). On each formation window every
    valid set is backtested on the formation bars with that window's fit (`quantlib.sweep`'s engine), and
    the best by `optimize_metric` among sets with >= `optimize_min_trades` trades there trades the next
    window; when none qualifies the given thresholds are kept. `windows` then also lists each window's
    entry_z, exit_z, stop_z and `formation_<metric>` of the chosen set (NaN when kept).
    """
    if not isinstance(anchored, (bool, np.bool_)):
        raise ValueError(f"anchored must be True or False, got {anchored!r}")
    check_choice(method, "method", METHODS)
    if isinstance(formation, str) != isinstance(trading, str):
        raise ValueError("formation and trading must both be bar counts (e.g. 1000, 250) or both durations "
                         f"(e.g. '3d', '1d'); got {formation!r} and {trading!r}")
    by_time = isinstance(formation, str)
    f_len = _length(formation, "formation", MIN_FORMATION)
    t_len = _length(trading, "trading", MIN_TRADING)
    entry_z, exit_z, stop = _check_thresholds(entry_z, exit_z, stop_z)
    cost_rate = check_positive_number(cost_bps, "cost_bps", allow_zero=True) / 1e4
    capital = check_positive_number(capital, "capital")
    kalman_delta = check_positive_number(kalman_delta, "kalman_delta")
    if kalman_warmup is not None:
        kalman_warmup = check_window(kalman_warmup, "kalman_warmup", 3)
        if not by_time and f_len < kalman_warmup + 2:
            raise ValueError(f"formation ({f_len} bars) must be >= kalman_warmup + 2 = {kalman_warmup + 2}")
    if timeframe is not None:
        bars_per_year(timeframe)
    ys, xs = as_pair(y, x, positive=True)
    _check_timeframe(timeframe, ys.index)
    index, n = ys.index, len(ys)
    if by_time and not isinstance(index, pd.DatetimeIndex):
        raise ValueError("formation / trading as durations need bars with a DatetimeIndex; pass bar counts instead")
    if not by_time and n < f_len + MIN_TRADING:
        raise ValueError(f"need >= {f_len + MIN_TRADING} bars (formation {f_len} + a trading window of "
                         f"{MIN_TRADING}), got {n}")
    if by_time and n > 1 and (index[-1] - index[0]).total_seconds() / t_len > n:
        raise ValueError(f"trading {trading!r} is shorter than the bars' spacing (more windows than bars); "
                         f"a trading window needs >= {MIN_TRADING} bars")
    windows = _windows(index, f_len, t_len, by_time, bool(anchored))
    if not windows:
        raise ValueError(f"no trading window fits: the bars span {index[-1] - index[0]}, formation {formation!r} "
                         f"and trading {trading!r} need more (a trading window needs >= {MIN_TRADING} bars)")
    grid = None
    if optimize is not None:
        grid = _grid(optimize, entry_z, exit_z, stop)
        check_choice(optimize_metric, "optimize_metric", METRICS)
        optimize_min_trades = check_window(optimize_min_trades, "optimize_min_trades", 0)
    yv, xv = ys.to_numpy(), xs.to_numpy()
    z, b, a, spr = (np.full(n, np.nan) for _ in range(4))
    reason = np.full(n, "", dtype=object)
    pos = np.zeros(n, dtype=np.int8)
    prices = np.column_stack([yv, xv])

    def size(f: int, side: int, equity: float) -> np.ndarray:
        qy = side * equity / (yv[f] + abs(b[f - 1]) * xv[f])
        return np.array([qy, -b[f - 1] * qy])

    def cost(q: np.ndarray, p: np.ndarray) -> float:
        return cost_rate * float(np.abs(q) @ p)

    fund = _funding_events(funding, funding_leg, index, prices, ("y", "x"), timeframe)
    book = _Book(index, prices, ("y", "x"), capital, size, cost, fund)
    rows, trade_window = [], []
    for k, (fs, fe, te) in enumerate(windows):
        alpha = beta = mean = std = math.nan
        note = ""
        if fe - fs < MIN_FORMATION:
            note = f"formation has {fe - fs} bars; need >= {MIN_FORMATION}"
        else:
            try:
                alpha, beta = _fit(ys.iloc[fs:fe], xs.iloc[fs:fe], method, kalman_delta, kalman_warmup)
            except ValueError as exc:  # e.g. a leg constant over this formation window: no trading here
                note = str(exc)
            else:
                s_form = yv[fs:fe] - alpha - beta * xv[fs:fe]
                mean, std = float(s_form.mean()), float(s_form.std(ddof=1))
                if not (np.isfinite(alpha) and np.isfinite(beta)):
                    note = "the hedge fit is not finite"
                elif not std > FLAT_RTOL * float(np.max(np.abs(yv[fs:fe]))):
                    note = "the formation spread is flat (a perfect fit): no z-score"
        cash0, n0 = book.cash, len(book.trades)
        use, score = (entry_z, exit_z, stop), math.nan
        if not note and grid is not None:
            use, score = _choose(grid, (entry_z, exit_z, stop), yv[fs:fe], xv[fs:fe], beta, (s_form - mean) / std,
                                 capital, cost_rate, periods_per_year(index[fs:fe], timeframe), optimize_metric,
                                 optimize_min_trades)
        if not note:
            a[fe:te], b[fe:te] = alpha, beta
            spr[fe:te] = yv[fe:te] - alpha - beta * xv[fe:te]
            z[fe:te] = (spr[fe:te] - mean) / std
            sig, why = zscore_signals(z[fe:te], *use)
            p = _positions(sig)
            if p[-1] != 0 and p[-2] == 0:  # no entry at the window's last bar
                p[-1] = 0
            reason[fe:te] = why
            for f, e, side in _holding_periods(p):
                book.hold(fe + f, fe + e, side, z, reason, b, forced=(e == len(p) - 1 and p[-1] != 0))
            p[-1] = 0  # closed at the window's last bar: flat after that fill
            pos[fe:te] = p
        trade_window += [k] * (len(book.trades) - n0)
        pnl = book.cash - cash0
        rows.append((k, index[fs], index[fe - 1], index[fe], index[te - 1], fe - fs, te - fe, alpha, beta, mean, std,
                     len(book.trades) - n0, pnl, pnl / cash0, note)
                    + ((*use, score) if grid is not None else ()))
    a0, end = windows[0][1], windows[-1][2]
    oos = slice(a0, end)
    oidx = index[oos]
    bar = pd.Timedelta(seconds=timeframe_seconds(timeframe)) if timeframe else None
    trades = _trades_frame(book.trades, ("y", "x"), index, bar)
    trades["exit_reason"] = trades["exit_reason"].replace({"end": "window end"})
    trades.insert(0, "window", pd.Series(trade_window, dtype="int64"))
    equity = book.equity[oos]
    per_year = periods_per_year(oidx, timeframe)
    stats = _stats(equity, trades, pos[oos], capital, book.traded, book.costs, per_year, oidx, bar)
    params = dict(formation=formation, trading=trading, anchored=bool(anchored), method=method, entry_z=entry_z,
                  exit_z=exit_z, stop_z=stop_z, cost_bps=cost_bps, timeframe=timeframe, capital=capital,
                  kalman_delta=kalman_delta, kalman_warmup=kalman_warmup, fill="next bar close",
                  periods_per_year=per_year, window_end="close",
                  optimize=None if grid is None else dict(sets=len(grid), metric=optimize_metric,
                                                          min_trades=optimize_min_trades))
    ledger = None
    if fund is not None:
        ledger = fund.ledger(("y", "x"))
        ledger = ledger[ledger["funding_time"] >= index[a0]].reset_index(drop=True)
        params["funding_legs"] = fund.leg_names(("y", "x"))
    return WalkForwardResult(
        windows=pd.DataFrame(rows, columns=WINDOW_COLUMNS + (["entry_z", "exit_z", "stop_z", f"formation_{optimize_metric}"]
                                                          if grid is not None else [])), trades=trades,
        equity=pd.Series(equity, index=oidx, name="equity"),
        positions=pd.Series(pos[oos].astype(np.int64), index=oidx, name="position"),
        zscore=pd.Series(z[oos], index=oidx, name="zscore"),
        hedge_ratio=pd.Series(b[oos], index=oidx, name="beta"),
        spread=pd.Series(spr[oos], index=oidx, name="spread"),
        stats=stats, params=params, funding=ledger,
    )
