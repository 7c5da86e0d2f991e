"""Z-score mean-reversion backtest of a pair (or of a precomputed spread), without look-ahead.

Timing: the signal is computed from data up to bar t's close and **filled at bar t+1's close** (the
series are closes; one full bar of delay is the conservative choice). `positions[t]` is the spread
position held after bar t's fill, so it depends on data up to t-1 only.

Signal rules on the rolling z-score z_t of the spread (`window` bars, data up to t):
- flat: short the spread when entry_z < z < stop_z, long when -stop_z < z < -entry_z;
- long: exit when z >= -exit_z (reverted), stop when z <= -stop_z (diverged); short mirrors this;
- after a stop no new entry until |z| < entry_z again; a NaN z-score keeps the current state.

Sizing (pair): at each entry the whole current equity E is the gross notional of the two legs,
q_y = ±E / (y + |beta| x), q_x = -beta q_y, with beta known at the signal bar; units stay fixed until
the exit (no rebalancing within a trade). Costs: `cost_bps` of traded notional, per leg and per side
(entry and exit). A position still open at the last bar is closed there ("end") and pays its exit cost;
the position after that fill is 0.

Bar length: from the index. With a DatetimeIndex, Sharpe is annualized by the observed rate (n - 1
returns over the span, 365-day 24/7 year) and holding times are clock time; plain arrays need
`timeframe`. A `timeframe` shorter than the bars' spacing is rejected.

Stats (fractions): total_return, sharpe (mean / std of bar returns x sqrt(periods per year)),
max_drawdown (positive fraction of the running peak), hit_rate (share of trades with net pnl > 0),
n_trades, avg_holding_bars / avg_holding_time, turnover (traded notional / initial capital),
total_costs, exposure (share of bars in a position); and from `quantlib.performance`: the Sharpe's standard
error and 95% confidence interval, the sample (bars, clock span, bars per year) and which statistics the
one minimum-sample rule (`quantlib.sample.RULE`) withholds and why. `BacktestResult.buy_hold` is the
equity of holding each leg with the same capital, as a reference.

Funding (`funding=`, perpetual legs): at each funding time T the position held in that leg pays
qty x mark(T) x rate(T) (a long pays a positive rate, a short receives it), booked into equity from the bar whose
close comes after T. Bars are labelled by their start, so the position held at T is the one after the fill at the
close of the last bar ending at or before T. Trades carry `funding` apart from `gross_pnl` (price) and `costs`;
`BacktestResult.funding` is the ledger of every funding time in the window.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from quantlib import indicators, performance, regression
from quantlib._blas import single_threaded
from quantlib._validate import (as_pair, as_series, check_choice, check_finite_number, check_min,
                                check_positive_number, check_window)
from quantlib.timeframes import bars_per_year, check_bar_spacing, periods_per_year, timeframe_seconds

HEDGES = ("static", "rolling", "kalman")


@dataclass(frozen=True)
class BacktestStats:
    total_return: float
    sharpe: float
    max_drawdown: float
    hit_rate: float
    n_trades: int
    avg_holding_bars: float
    avg_holding_time: pd.Timedelta | None
    turnover: float
    total_costs: float
    exposure: float
    sharpe_se: float = math.nan           # annualized standard error (performance.sharpe_ratio)
    sharpe_ci_low: float = math.nan       # 95% confidence interval of the annualized Sharpe
    sharpe_ci_high: float = math.nan
    n_bars: int = 0
    span: pd.Timedelta | None = None      # clock time from the first to the last bar
    periods_per_year: float | None = None
    costs_fraction: float = math.nan      # total_costs / initial capital
    withheld: dict[str, str] = field(default_factory=dict)  # statistic -> why the sample is too small for it

    TITLES = {
        "total_return": "Total return [%]", "sharpe": "Sharpe (annualized)", "max_drawdown": "Max drawdown [%]",
        "hit_rate": "Hit rate [%]", "n_trades": "Trades", "avg_holding_bars": "Avg holding [bars]",
        "avg_holding_time": "Avg holding time", "turnover": "Turnover [x capital]",
        "total_costs": "Costs", "exposure": "Time in market [%]",
        "sharpe_se": "Sharpe standard error", "sharpe_ci_low": "Sharpe 95% CI low",
        "sharpe_ci_high": "Sharpe 95% CI high", "n_bars": "Bars", "span": "Sample length",
        "periods_per_year": "Bars per year", "costs_fraction": "Costs [%]",
    }

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def sample(self) -> performance.SampleInfo:
        bar = self.span / (self.n_bars - 1) if self.span is not None and self.n_bars > 1 else None
        return performance.SampleInfo(self.n_bars, self.n_trades, self.span, bar, self.periods_per_year)

    def table(self) -> pd.DataFrame:
        """Display table: title and formatted value; percentages are shown x100 (stored as fractions)."""
        rows = []
        for key, value in self.to_dict().items():
            if key not in self.TITLES:
                continue
            shown = value * 100 if "[%]" in self.TITLES[key] and value is not None else value
            rows.append((key, self.TITLES[key], shown))
        return pd.DataFrame(rows, columns=["key", "metric", "value"])


@dataclass(frozen=True)
class BacktestResult:
    trades: pd.DataFrame
    equity: pd.Series = field(repr=False)
    positions: pd.Series = field(repr=False)   # spread position held after each bar's fill: -1, 0, +1
    zscore: pd.Series = field(repr=False)
    hedge_ratio: pd.Series = field(repr=False)  # beta known at each bar (NaN for a spread backtest)
    stats: BacktestStats
    params: dict[str, object]
    # the spread the z-score is taken of: y - alpha_t - beta_t x with the hedge known at t (for
    # hedge="kalman" the filtered residual, y - alpha_t|t - beta_t|t x), or the given spread
    spread: pd.Series | None = field(repr=False, default=None)
    # equity of holding each leg with the whole capital from the first bar (reference line; None for a spread)
    buy_hold: pd.DataFrame | None = field(repr=False, default=None)
    # one row per funding time of a perpetual leg in the window (`funding_time`, `leg`, `rate`, `mark_price`,
    # `qty` held, `payment` = PnL); None when the backtest ran without funding
    funding: pd.DataFrame | None = field(repr=False, default=None)

    @property
    def total_funding(self) -> float:
        """Funding PnL over the backtest (0 without funding): received minus paid."""
        return float(self.funding["payment"].sum()) if self.funding is not None else 0.0

    def summary(self) -> str:
        s = self.stats
        sharpe = (f"Sharpe withheld ({s.withheld['sharpe']})" if "sharpe" in s.withheld else
                  f"Sharpe {s.sharpe:.2f} [95% CI {s.sharpe_ci_low:.2f}, {s.sharpe_ci_high:.2f}]")
        return (f"Mean reversion: {s.n_trades} trades, total return {s.total_return:.2%}, {sharpe}, "
                f"max drawdown {s.max_drawdown:.2%}, hit rate {s.hit_rate:.0%}, costs {s.total_costs:,.2f}; "
                f"{s.sample.summary()}")

    def __str__(self) -> str:
        return self.summary()


def zscore_signals(z: pd.Series | np.ndarray, entry_z: float = 2.0, exit_z: float = 0.5,
                   stop_z: float | None = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Desired spread position after observing z_t (-1, 0, +1) and the reason of each exit
    ("exit" / "stop", else ""), by the rules in the module docstring."""
    entry_z, exit_z, stop_z = _check_thresholds(entry_z, exit_z, stop_z)
    zv = np.asarray(z, dtype=np.float64)
    n = zv.shape[0]
    sig = np.zeros(n, dtype=np.int8)
    reason = np.full(n, "", dtype=object)
    state, blocked = 0, False
    for t, zt in enumerate(zv.tolist()):
        if zt != zt:  # NaN: keep the current state
            sig[t] = state
            continue
        if state == 0:
            if blocked and abs(zt) < entry_z:
                blocked = False
            if not blocked:
                if entry_z < zt < stop_z:
                    state = -1
                elif -stop_z < zt < -entry_z:
                    state = 1
        elif state == 1:
            if zt <= -stop_z:
                state, blocked, reason[t] = 0, True, "stop"
            elif zt >= -exit_z:
                state, reason[t] = 0, "exit"
        else:
            if zt >= stop_z:
                state, blocked, reason[t] = 0, True, "stop"
            elif zt <= exit_z:
                state, reason[t] = 0, "exit"
        sig[t] = state
    return sig, reason


def _check_thresholds(entry_z, exit_z, stop_z) -> tuple[float, float, float]:
    entry_z = check_positive_number(entry_z, "entry_z")
    exit_z = check_positive_number(exit_z, "exit_z", allow_zero=True)
    stop = math.inf if stop_z is None else check_positive_number(stop_z, "stop_z") if stop_z != math.inf else math.inf
    if not exit_z < entry_z < stop:
        raise ValueError(f"need 0 <= exit_z < entry_z < stop_z, got exit {exit_z}, entry {entry_z}, stop {stop_z}")
    return entry_z, exit_z, stop


def _positions(sig: np.ndarray) -> np.ndarray:
    """Position held after each bar's fill: the signal of bar t is filled at bar t+1."""
    pos = np.zeros(sig.shape[0], dtype=np.int8)
    pos[1:] = sig[:-1]
    return pos


def _holding_periods(pos: np.ndarray) -> list[tuple[int, int, int]]:
    """(entry bar, exit bar, side) of each run of a non-zero position. A run still open at the last bar
    exits there (the forced "end" close, exit bar n - 1, possibly the entry bar itself)."""
    n = pos.shape[0]
    change = np.flatnonzero(np.diff(pos, prepend=np.int8(0)) != 0).tolist()
    periods = []
    for k, f in enumerate(change):
        if pos[f] != 0:
            e = change[k + 1] if k + 1 < len(change) else n - 1
            periods.append((f, e, int(pos[f])))
    return periods


class _FundingEvents:
    """Funding times of perpetual legs inside the bars: for each, the leg (column k), the bar `j` whose close is
    the first after the funding time (payments are booked from there; the position held then is the one after
    bar j-1's fill), the rate and the mark price."""

    def __init__(self, times: np.ndarray, leg: np.ndarray, j: np.ndarray, rate: np.ndarray, mark: np.ndarray):
        self.times, self.leg, self.j, self.rate, self.mark = times, leg, j, rate, mark
        self.qty = np.zeros(len(j))

    def book(self, equity: np.ndarray, f: int, e: int, q: np.ndarray) -> float:
        """Add the funding of position `q` (held after the fills of bars f..e-1) to `equity`; returns its sum."""
        lo, hi = np.searchsorted(self.j, [f, e], side="right")  # events are in time order, so j is sorted
        if lo == hi:
            return 0.0
        i = np.arange(lo, hi)
        qty = q[self.leg[i]]
        payment = -qty * self.mark[i] * self.rate[i]
        self.qty[i] = qty
        step = np.zeros(e - f + 1)
        np.add.at(step, self.j[i] - f, payment)
        equity[f : e + 1] += np.cumsum(step)
        return float(payment.sum())

    def leg_names(self, legs: tuple[str, ...]) -> list[str]:
        return sorted({legs[k] for k in self.leg.tolist()})

    def ledger(self, legs: tuple[str, ...]) -> pd.DataFrame:
        payment = -self.qty * self.mark * self.rate
        return pd.DataFrame({"funding_time": pd.DatetimeIndex(self.times), "leg": [legs[k] for k in self.leg.tolist()],
                             "rate": self.rate, "mark_price": self.mark, "qty": self.qty,
                             "payment": np.where(self.qty != 0, payment, 0.0)})


def _funding_events(funding: object, funding_leg: str | None, index: pd.Index, prices: np.ndarray,
                    legs: tuple[str, ...], timeframe: str | None) -> _FundingEvents | None:
    """Validate `funding=` and place each funding time on the bars (see mean_reversion)."""
    if funding is None:
        if funding_leg is not None:
            raise ValueError("funding_leg is given without funding=; pass the perpetual leg's funding rates too")
        return None
    if isinstance(funding, Mapping):
        per_leg = dict(funding)
        if funding_leg is not None:
            raise ValueError("funding= is a mapping of legs already; leave funding_leg out")
    else:
        if funding_leg is None:
            raise ValueError(f"funding_leg must say which leg is the perpetual: one of {', '.join(legs)}")
        per_leg = {funding_leg: funding}
    for name in per_leg:
        check_choice(name, "funding leg", legs)
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError("funding needs bars indexed by time (a UTC DatetimeIndex) to place the funding times")
    if timeframe is not None:
        bar_ns = timeframe_seconds(timeframe) * 1_000_000_000
    elif len(index) > 1:
        bar_ns = int(np.min(np.diff(index.as_unit("ns").asi8)))
    else:
        raise ValueError("need >= 2 bars or timeframe= to know when a bar closes")
    closes_ns = index.as_unit("ns").asi8 + bar_ns
    parts = []
    for name, data in per_leg.items():
        k = legs.index(name)
        if isinstance(data, pd.DataFrame):
            if "funding_rate" not in data:
                raise ValueError(f"funding for {name} is a frame without a funding_rate column")
            rate = data["funding_rate"]
            mark = data["mark_price"] if "mark_price" in data else pd.Series(np.nan, index=data.index)
        else:
            rate = pd.Series(data)
            mark = pd.Series(np.nan, index=rate.index)
        if not isinstance(rate.index, pd.DatetimeIndex) or rate.index.tz is None:
            raise ValueError(f"funding rates for {name} must be indexed by funding time (a tz-aware UTC "
                             "DatetimeIndex)")
        if rate.index.has_duplicates:
            raise ValueError(f"funding rates for {name} list {rate.index[rate.index.duplicated()][0]} twice; "
                             "expected one rate per funding time")
        r = pd.to_numeric(rate, errors="coerce").to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(r)):
            raise ValueError(f"funding rates for {name} hold a missing or non-finite rate; expected numbers such "
                             "as 0.0001 (0.01 % per period)")
        t_ns = rate.index.tz_convert("UTC").as_unit("ns").asi8
        j = np.searchsorted(closes_ns, t_ns, side="right")  # first bar closing after the funding time
        keep = (j >= 1) & (j < len(index))                # inside the bars: a position can be held then
        m = pd.to_numeric(mark, errors="coerce").to_numpy(dtype=np.float64)[keep]
        jj = j[keep]
        m = np.where(np.isfinite(m) & (m > 0), m, prices[jj - 1, k])  # else the leg's last close before T
        parts.append((t_ns[keep], np.full(len(jj), k), jj, r[keep], m))
    times, leg, j, rate, mark = (np.concatenate([p[i] for p in parts]) for i in range(5))
    order = np.lexsort((leg, times))
    return _FundingEvents(pd.to_datetime(times[order], utc=True), leg[order], j[order], rate[order], mark[order])


class _Book:
    """Cash, the equity curve and the trade log while the holding periods are replayed in order."""

    def __init__(self, index: pd.Index, prices: np.ndarray, legs: tuple[str, ...], capital: float,
                 size: Callable[[int, int, float], np.ndarray], cost: Callable[[np.ndarray, np.ndarray], float],
                 funding: _FundingEvents | None = None):
        self.index, self.prices, self.legs, self.size, self.cost = index, prices, legs, size, cost
        self.funding = funding
        self.equity = np.full(prices.shape[0], capital)
        self.cash = capital     # equity while flat
        self.traded = 0.0       # notional, both legs, both sides
        self.costs = 0.0
        self.trades: list[dict[str, object]] = []

    def _charge(self, q: np.ndarray, p: np.ndarray) -> float:
        c = self.cost(q, p)
        self.traded += float(np.abs(q) @ np.abs(p))
        self.costs += c
        return c

    def hold(self, f: int, e: int, side: int, z: np.ndarray, reason: np.ndarray, beta: np.ndarray,
             forced: bool) -> None:
        """Enter at bar f's close, mark to market, exit at bar e's close, log the trade."""
        prices, legs = self.prices, self.legs
        self.equity[f:] = self.cash  # flat up to the entry (later bars are overwritten as we go)
        q = self.size(f, side, self.cash)
        entry_cost = self._charge(q, prices[f])
        start = self.cash - entry_cost
        self.equity[f] = start
        self.equity[f + 1 : e + 1] = start + (prices[f + 1 : e + 1] - prices[f]) @ q
        funding = self.funding.book(self.equity, f, e, q) if self.funding is not None else 0.0
        exit_cost = self._charge(q, prices[e])
        self.equity[e] -= exit_cost
        gross = float((prices[e] - prices[f]) @ q)
        pnl = gross - entry_cost - exit_cost + funding
        self.trades.append({
            "entry_time": self.index[f], "exit_time": self.index[e], "side": "long" if side > 0 else "short",
            "direction": side, "entry_z": float(z[f - 1]), "exit_z": math.nan if forced else float(z[e - 1]),
            "exit_reason": "end" if forced else (reason[e - 1] or "exit"), "beta": float(beta[f - 1]),
            **{f"qty_{leg}": float(q[k]) for k, leg in enumerate(legs)},
            **{f"entry_{leg}": float(prices[f, k]) for k, leg in enumerate(legs)},
            **{f"exit_{leg}": float(prices[e, k]) for k, leg in enumerate(legs)},
            "equity_before": self.cash, "gross_pnl": gross, "costs": entry_cost + exit_cost, "funding": funding,
            "pnl": pnl,
            "return": pnl / self.cash, "bars_held": e - f,
        })
        self.cash = float(self.equity[e])
        self.equity[e + 1 :] = self.cash


def _trades_frame(trades: list[dict[str, object]], legs: tuple[str, ...], index: pd.Index,
                  bar: pd.Timedelta | None) -> pd.DataFrame:
    columns = (["entry_time", "exit_time", "side", "direction", "entry_z", "exit_z", "exit_reason", "beta"]
               + [f"qty_{leg}" for leg in legs] + [f"entry_{leg}" for leg in legs]
               + [f"exit_{leg}" for leg in legs]
               + ["equity_before", "gross_pnl", "costs", "funding", "pnl", "return", "bars_held"])
    df = pd.DataFrame(trades, columns=columns)
    df["bars_held"] = df["bars_held"].astype("int64")  # object dtype when there are no trades
    if isinstance(index, pd.DatetimeIndex):  # real elapsed time, also across gaps in the bars
        df["holding_time"] = (pd.to_datetime(df["exit_time"], utc=True) - pd.to_datetime(df["entry_time"], utc=True))
    else:
        df["holding_time"] = df["bars_held"] * bar if bar is not None else pd.NaT
    df["holding_time"] = df["holding_time"].astype("timedelta64[ns]")
    return df


def _stats(equity: np.ndarray, trades: pd.DataFrame, pos: np.ndarray, capital: float, traded: float,
           costs: float, per_year: float, index: pd.Index | None = None,
           bar: pd.Timedelta | None = None) -> BacktestStats:
    rets = performance.bar_returns(equity)
    est = performance.sharpe_ratio(rets, per_year) if per_year else None
    sharpe = est.sharpe if est is not None else math.nan
    peak = np.maximum.accumulate(equity)
    n_trades = len(trades)
    sample = performance.sample_info(index if index is not None else pd.RangeIndex(len(equity)), n_trades,
                                     per_year, bar)
    return BacktestStats(
        total_return=float(equity[-1] / capital - 1.0),
        sharpe=sharpe,
        max_drawdown=float(np.max(1.0 - equity / peak)),
        hit_rate=float((trades["pnl"] > 0).mean()) if n_trades else math.nan,
        n_trades=n_trades,
        avg_holding_bars=float(trades["bars_held"].mean()) if n_trades else math.nan,
        avg_holding_time=pd.Timedelta(trades["holding_time"].mean()) if n_trades else None,
        turnover=traded / capital,
        total_costs=costs,
        exposure=float(np.mean(pos != 0)),
        sharpe_se=est.se if est is not None else math.nan,
        sharpe_ci_low=est.ci_low if est is not None else math.nan,
        sharpe_ci_high=est.ci_high if est is not None else math.nan,
        n_bars=sample.n_bars, span=sample.span, periods_per_year=per_year,
        costs_fraction=costs / capital, withheld=sample.withheld(),
    )


def _run(index: pd.Index, prices: np.ndarray, legs: tuple[str, ...], sig: np.ndarray, reason: np.ndarray,
         z: np.ndarray, capital: float, size: Callable[[int, int, float], np.ndarray],
         cost: Callable[[np.ndarray, np.ndarray], float], timeframe: str | None, beta: np.ndarray,
         params: dict[str, object], spread: np.ndarray, funding: _FundingEvents | None = None) -> BacktestResult:
    """Fill signals at the next bar, mark to market, charge costs (and funding), and collect trades and stats."""
    pos = _positions(sig)
    book = _Book(index, prices, legs, capital, size, cost, funding)
    last = pos.shape[0] - 1
    for f, e, side in _holding_periods(pos):
        book.hold(f, e, side, z, reason, beta, forced=(e == last and pos[last] != 0))
    pos[last] = 0  # a position still open at the last bar is closed there: flat after that fill
    bar = pd.Timedelta(seconds=timeframe_seconds(timeframe)) if timeframe else None
    trades = _trades_frame(book.trades, legs, index, bar)
    per_year = periods_per_year(index, timeframe)
    params = {**params, "periods_per_year": per_year}
    return BacktestResult(
        trades=trades, equity=pd.Series(book.equity, index=index, name="equity"),
        positions=pd.Series(pos.astype(np.int64), index=index, name="position"),
        zscore=pd.Series(z, index=index, name="zscore"), hedge_ratio=pd.Series(beta, index=index, name="beta"),
        stats=_stats(book.equity, trades, pos, capital, book.traded, book.costs, per_year, index, bar),
        params=params, spread=pd.Series(spread, index=index, name="spread"),
        buy_hold=(performance.buy_and_hold(pd.DataFrame(prices, index=index, columns=list(legs)), capital)
                  if len(legs) > 1 else None),
        funding=funding.ledger(legs) if funding is not None else None,
    )


def _check_timeframe(timeframe: str | None, index: pd.Index) -> None:
    """Sharpe and holding times need the bar spacing: from a DatetimeIndex, else from `timeframe`."""
    if timeframe is not None:
        bars_per_year(timeframe)  # unknown names are rejected
        check_bar_spacing(index, timeframe)
    elif not isinstance(index, pd.DatetimeIndex):
        raise ValueError("the bars have no timestamps (not a DatetimeIndex); pass timeframe= (e.g. '1m') so "
                         "Sharpe can be annualized and holding times measured")


def _hedged_spread(ys: pd.Series, xs: pd.Series, hedge: str, hw: int, method: str, beta: float | None,
                   kalman_delta: float) -> tuple[np.ndarray, np.ndarray]:
    """(beta_t, spread_t) with the hedge known at each bar, as `mean_reversion` trades them (beta NaN
    where no hedge is known yet). Shared with `quantlib.sweep`."""
    yv, xv = ys.to_numpy(), xs.to_numpy()
    n = len(ys)
    if beta is not None:
        b = np.full(n, float(beta))
        spr = yv - b * xv
    elif hedge == "static":
        fit = regression.hedge_ratio(ys.iloc[:hw], xs.iloc[:hw], method=method)
        b = np.where(np.arange(n) >= hw - 1, fit.beta, np.nan)
        spr = yv - fit.alpha - fit.beta * xv  # history with the formation fit; used only from bar hw-1 on
    elif hedge == "rolling":
        fit = regression.rolling_hedge_ratio(ys, xs, hw, method=method,
                                             step=1 if method in ("ols", "tls") else max(1, hw // 10))
        b = fit["beta"].to_numpy()
        spr = yv - fit["alpha"].to_numpy() - b * xv
    else:
        kf = regression.kalman_hedge_ratio(ys, xs, delta=kalman_delta, warmup=hw)
        b = kf.beta.to_numpy()
        spr = yv - kf.alpha.to_numpy() - b * xv
    return b, spr


def _spread_zscore(b: np.ndarray, spr: np.ndarray, index: pd.Index, window: int) -> np.ndarray:
    """Rolling z-score of the spread over `window` bars, NaN where no hedge is known."""
    z = indicators.rolling_zscore(pd.Series(spr, index=index), window).to_numpy()
    return np.where(np.isnan(b), np.nan, z)


@single_threaded
def mean_reversion(
    y: pd.Series | np.ndarray,
    x: pd.Series | np.ndarray,
    *,
    window: int = 60,
    entry_z: float = 2.0,
    exit_z: float = 0.5,
    stop_z: float | None = 4.0,
    cost_bps: float = 1.0,
    hedge: str = "rolling",
    hedge_window: int | None = None,
    method: str = "ols",
    beta: float | None = None,
    timeframe: str | None = None,
    capital: float = 10_000.0,
    kalman_delta: float = 1e-4,
    funding: pd.Series | pd.DataFrame | Mapping[str, pd.Series | pd.DataFrame] | None = None,
    funding_leg: str | None = None,
) -> BacktestResult:
    """Backtest long / short the spread y - alpha_t - beta_t x on its rolling z-score (module docstring).

    hedge: "rolling" (`method` over the trailing `hedge_window` bars, default `window`; huber and
    theil_sen refit every hedge_window // 10 bars),
    "static" (one fit on the first `hedge_window` bars, the formation period, trading after it) or
    "kalman" (`kalman_hedge_ratio` filtered alpha / beta, warm-up `hedge_window`; the spread is the
    filtered residual, smaller than the static OLS spread). A given (finite) `beta` overrides it.
    `timeframe`: None takes the bar spacing from the DatetimeIndex (required for plain arrays).
    The z-score is over the trailing `window` bars of that spread. Costs: `cost_bps` per leg and side.
    funding: funding rates of the perpetual leg named by `funding_leg` ("y" or "x"), indexed by funding time
    (a Series, or a frame with `funding_rate` and optionally `mark_price`; without a mark the leg's close at the
    last bar ending at or before the funding time is used); or a mapping {"y": ..., "x": ...} when both legs
    are perpetuals. Needs a DatetimeIndex (module docstring).
    """
    window = check_window(window, "window", 3)
    check_choice(hedge, "hedge", HEDGES)
    hw = check_window(hedge_window if hedge_window is not None else window, "hedge_window", 3)
    cost_rate = check_positive_number(cost_bps, "cost_bps", allow_zero=True) / 1e4
    capital = check_positive_number(capital, "capital")
    _check_thresholds(entry_z, exit_z, stop_z)
    if beta is not None:
        beta = check_finite_number(beta, "beta")
    if timeframe is not None:
        bars_per_year(timeframe)
    ys, xs = as_pair(y, x, positive=True)
    _check_timeframe(timeframe, ys.index)
    check_min(len(ys), max(window, hw) + 2, "bars")
    yv, xv = ys.to_numpy(), xs.to_numpy()
    b, spr = _hedged_spread(ys, xs, hedge, hw, method, beta, kalman_delta)
    z = _spread_zscore(b, spr, ys.index, window)
    sig, reason = zscore_signals(z, entry_z, exit_z, stop_z)
    prices = np.column_stack([yv, xv])
    fund = _funding_events(funding, funding_leg, ys.index, prices, ("y", "x"), timeframe)

    def size(f: int, side: int, equity: float) -> np.ndarray:
        beta_f = b[f - 1]
        qy = side * equity / (yv[f] + abs(beta_f) * xv[f])
        return np.array([qy, -beta_f * qy])

    def cost(q: np.ndarray, p: np.ndarray) -> float:
        return cost_rate * float(np.abs(q) @ p)

    params = dict(window=window, entry_z=entry_z, exit_z=exit_z, stop_z=stop_z, cost_bps=cost_bps, hedge=hedge,
                  hedge_window=hw, method=method, beta=beta, timeframe=timeframe, capital=capital,
                  fill="next bar close")
    if fund is not None:
        params["funding_legs"] = fund.leg_names(("y", "x"))
    return _run(ys.index, prices, ("y", "x"), sig, reason, z, capital, size, cost, timeframe, b, params,
                np.where(np.isnan(b), np.nan, spr), funding=fund)


def mean_reversion_spread(
    spread: pd.Series | np.ndarray,
    *,
    window: int = 60,
    entry_z: float = 2.0,
    exit_z: float = 0.5,
    stop_z: float | None = 4.0,
    units: float = 1.0,
    cost_per_unit: float = 0.0,
    timeframe: str | None = None,
    capital: float = 10_000.0,
) -> BacktestResult:
    """The same rules on a precomputed spread traded as one instrument: ±`units` of the spread per trade,
    PnL = units x change of the spread, costs `cost_per_unit` (in spread units) per unit and side.
    Equity = capital + PnL. The spread must itself be free of look-ahead (e.g. a rolling or Kalman one).
    """
    window = check_window(window, "window", 3)
    units = check_positive_number(units, "units")
    cpu = check_positive_number(cost_per_unit, "cost_per_unit", allow_zero=True)
    capital = check_positive_number(capital, "capital")
    _check_thresholds(entry_z, exit_z, stop_z)
    if timeframe is not None:
        bars_per_year(timeframe)
    s = as_series(spread, "spread", min_len=window + 2)
    _check_timeframe(timeframe, s.index)
    z = indicators.zscore(s, window).to_numpy()
    sig, reason = zscore_signals(z, entry_z, exit_z, stop_z)

    def size(f: int, side: int, equity: float) -> np.ndarray:
        return np.array([side * units])

    def cost(q: np.ndarray, p: np.ndarray) -> float:
        return cpu * float(np.abs(q).sum())

    params = dict(window=window, entry_z=entry_z, exit_z=exit_z, stop_z=stop_z, units=units,
                  cost_per_unit=cost_per_unit, timeframe=timeframe, capital=capital, fill="next bar close")
    return _run(s.index, s.to_numpy()[:, None], ("spread",), sig, reason, z, capital, size, cost, timeframe,
                np.full(len(s), np.nan), params, s.to_numpy())


def __getattr__(name: str):
    """`walk_forward` and `sweep` (and their result classes) live in quantlib.walkforward / quantlib.sweep,
    which build on this module; they are re-exported here lazily to keep the import acyclic."""
    if name in ("walk_forward", "WalkForwardResult"):
        from quantlib import walkforward
        return getattr(walkforward, name)
    if name in ("sweep", "SweepResult"):
        from quantlib import sweep as _sweep
        return getattr(_sweep, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
