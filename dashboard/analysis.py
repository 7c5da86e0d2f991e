"""Assemble what the Pairs and Backtest pages show from quantlib calls, cached process-wide per view.

No estimator lives here: every number comes from `quantlib`; this module only picks which calls a view needs,
checks there are enough bars first (saying how many are needed), and caches the bundle so several open tabs
on the same view cost one computation per refresh.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import streamlit as st

from quantlib import backtest, indicators, ou, pairs, performance, regression, stattests
from quantlib.sample import RULE
from quantlib.timeframes import timeframe_seconds

FIT_METHODS = {"OLS": "ols", "Huber": "huber", "Theil-Sen": "theil_sen"}


def method_name(method: str) -> str:
    """A hedge method's display name: 'ols' → 'OLS', 'theil_sen' → 'Theil-Sen', 'kalman' → 'Kalman'."""
    return {**{v: k for k, v in FIT_METHODS.items()}, "rolling": "rolling OLS", "kalman": "Kalman"}.get(method, method)

# How each spread on the Pairs page is timed (shown under the spread chart): every value plotted against the
# entry / exit bands uses data up to its own bar only.
_REFIT = ("The hedge is refitted on all bars up to each bar (expanding window, from the 20th bar) and the z-score is over the "
          "last {window} bars, so every point is what you would have seen then; the tests below fit once on "
          "the whole window (in-sample).")
SPREAD_TIMING = {
    "ols": _REFIT, "huber": _REFIT + " Huber's scale is statsmodels' MAD of the residuals about zero.",
    "theil_sen": _REFIT,
    "rolling": ("The hedge is the OLS fit over the trailing {window} bars ending at each bar and the z-score "
                "is over the last {window} spreads (no look-ahead)."),
    "kalman": ("The Kalman spread is the innovation, the one-step forecast error, and its z-score divides it by "
               "the filter's predicted std (no look-ahead); the filter's noise is set relative to the data "
               "(memory ~100 bars), so it works at any price level."),
}
STATIC_METHODS = ("ols", "huber", "theil_sen")
log = logging.getLogger(__name__)
CACHE = st.cache_data(ttl=300, max_entries=64, show_spinner=False)


def min_bars_for_tests(window: int) -> int:
    """Bars the full test table needs (Hurst needs 32; the rolling z-score needs window + 1; the minimum-sample
    rule `quantlib.sample.RULE` at least its bars)."""
    return max(stattests.HURST_MIN_OBS, window + 1, RULE.min_bars)


@dataclass(frozen=True)
class PairView:
    """Everything the Pairs page draws for Y against X. Optional parts are None when the window is too short;
    `notes` then says what is missing and why."""

    y: str
    x: str
    method: str
    window: int
    closes: pd.DataFrame                       # aligned closes: columns y, x
    fits: dict[str, regression.HedgeRatio]      # static fits by display name
    rolling: pd.DataFrame | None                # rolling OLS alpha / beta
    kalman: regression.KalmanHedge | None
    summary: pairs.PairSummary | None           # tests on the static spread (method, or OLS for rolling/kalman)
    spread: pd.Series | None                    # spread of the selected hedge method, as known at each bar
    zscore: pd.Series | None                    # its rolling z-score: no look-ahead, fit to bands
    correlation: pd.Series | None               # rolling correlation of log returns
    heatmap: pd.DataFrame | None                # correlation of log returns across all symbols
    notes: tuple[str, ...] = field(default=())

    def series(self) -> pd.DataFrame:
        """The analytics series side by side (for the CSV download); index = bar start UTC."""
        out = self.closes.rename(columns={self.y: f"close_{self.y}", self.x: f"close_{self.x}"})
        for name, fit in self.fits.items():
            out[f"beta_{FIT_METHODS[name]}"] = fit.beta
        if self.rolling is not None:
            out["beta_rolling"] = self.rolling["beta"]
            out["alpha_rolling"] = self.rolling["alpha"]
        if self.kalman is not None:
            out["beta_kalman"] = self.kalman.beta
            out["alpha_kalman"] = self.kalman.alpha
        if self.spread is not None:
            out[f"spread_{self.method}"] = self.spread
            out[f"zscore_{self.method}"] = self.zscore
        if self.summary is not None and self.method in STATIC_METHODS:  # one fit on the whole window
            out[f"spread_{self.method}_insample"] = self.summary.spread
            out[f"zscore_{self.method}_insample"] = self.summary.zscore
        if self.correlation is not None:
            out["rolling_correlation"] = self.correlation
        return out


def build_pair_view(closes: pd.DataFrame, y: str, x: str, method: str, window: int, timeframe: str) -> PairView:
    """Run the pair analytics on bar closes (columns = symbols). Raises ValueError (quantlib's message) only for
    data quantlib rejects outright; a short window gives a partial view with notes."""
    ys, xs = pairs.align(closes[y].dropna(), closes[x].dropna())
    n = len(ys)
    notes: list[str] = []
    if n < 3:
        raise ValueError(f"{y} and {x} share only {n} bars in the window; at least 3 are needed")
    fits = {}
    for name, m in FIT_METHODS.items():
        try:
            fits[name] = regression.hedge_ratio(ys, xs, method=m)
        except ValueError as exc:
            notes.append(f"{name} fit: {exc}")
    rolling = kalman = summary = spread = z = corr = None
    if n >= window:
        rolling = regression.rolling_hedge_ratio(ys, xs, window)
    else:
        notes.append(f"rolling hedge ratio needs {window} bars (the window), have {n}")
    if n >= 4:
        kalman = regression.kalman_hedge_ratio(ys, xs, warmup=max(3, min(window, n // 2)))
    if window < RULE.min_bars:
        notes.append(f"the rolling correlation is withheld: each value would rest on the window's {window} bars and "
                     f"the minimum-sample rule asks for {RULE.min_bars} (pick a window of at least {RULE.min_bars})")
    elif n >= window + 1:
        corr = pairs.rolling_correlation(ys, xs, window)
    else:
        notes.append(f"rolling correlation needs {window + 1} bars, have {n}")
    need = min_bars_for_tests(window)
    if n >= need:
        summary = pairs.pair_summary(ys, xs, window=window, method=method if method in STATIC_METHODS else "ols",
                                     timeframe=timeframe)
        if method in STATIC_METHODS:
            # the hedge refitted on the bars up to each bar: a chart against entry/exit bands must not use
            # a fit that already knows the later bars (the tests below do, and say so)
            spread, z = summary.spread_causal, summary.zscore_causal
            if z.notna().sum() == 0:
                notes.append(f"the spread's z-score with the hedge refitted up to each bar needs {2 * window - 1} "
                             f"bars (a window of spreads, the first from a fit on {window} bars), have {n}")
                spread = z = None
        elif method == "rolling":
            spread = pairs.spread(ys, xs, rolling["beta"], rolling["alpha"]).dropna()  # NaN until a full window
            if len(spread) >= window:
                z = indicators.zscore(spread, window)
            else:
                notes.append(f"the rolling-OLS spread's z-score needs {2 * window - 1} bars (a window of spreads, "
                             f"each from a window of bars), have {n}")
                spread = None
        else:
            spread, z = kalman.spread, kalman.zscore
    else:
        notes.append(f"the spread, z-score and tests need at least {need} bars "
                     f"(32 for the Hurst exponent, window + 1 for the z-score), have {n}")
    heatmap = None
    if closes.shape[1] >= 2:
        both = closes.dropna()
        why = RULE.bars(len(both), "the correlation heat map")
        if why is None:
            heatmap = pairs.correlation_matrix(both)
        else:
            notes.append(f"{why} where every symbol traded")
    return PairView(y, x, method, window, pd.concat([ys, xs], axis=1), fits, rolling, kalman, summary, spread, z,
                    corr, heatmap, tuple(notes))


@CACHE
def pair_view(key: tuple, _closes: pd.DataFrame, y: str, x: str, method: str, window: int, timeframe: str
              ) -> PairView:
    """`build_pair_view`, cached on `key` (source, market, timeframe, window start, refresh bucket, ...)."""
    return build_pair_view(_closes, y, x, method, window, timeframe)


def pair_view_or_reason(key: tuple, closes: pd.DataFrame, y: str, x: str, method: str, window: int, timeframe: str
                        ) -> tuple[PairView | None, str | None]:
    """`pair_view`, or (None, a sentence saying why the pair cannot be analysed)."""
    try:
        return pair_view(key, closes, y, x, method, window, timeframe), None
    except ValueError as exc:
        return None, f"Cannot analyse {y} / {x}: {exc}. Pick a longer lookback or a finer timeframe."
    except Exception as exc:  # a quantlib failure on unusual data must not take the page down
        log.exception("pair analytics failed for %s/%s %s window %d", y, x, timeframe, window)
        return None, f"The pair analytics failed on this data ({type(exc).__name__}: {exc})."


# ---------------------------------------------------------------- backtest
@dataclass(frozen=True)
class BacktestParams:
    """The Backtest page's form (z thresholds in standard deviations; costs in bps per leg and side)."""

    entry_z: float = 2.0
    exit_z: float = 0.5
    stop_z: float | None = 4.0
    cost_bps: float = 1.0
    capital: float = 10_000.0


def backtest_hedge(method: str) -> tuple[str, str]:
    """Sidebar hedge method → (`mean_reversion` hedge, regression method). Static methods fit once on the first
    `window` bars (the formation period) and trade after it, so the backtest never sees its own future."""
    if method in ("kalman", "rolling"):
        return method, "ols"
    return "static", method


def min_bars_for_backtest(window: int) -> int:
    return window + 2


@CACHE
def run_backtest(key: tuple, _closes: pd.DataFrame, y: str, x: str, method: str, window: int, timeframe: str,
                 params: BacktestParams, _funding: dict[str, pd.DataFrame] | None = None,
                 funding_key: tuple = ()) -> backtest.BacktestResult:
    """`quantlib.backtest.mean_reversion` on aligned closes, cached on `key` + params (+ `funding_key`, naming
    the funding rates `_funding` of the perpetual legs, {"y" | "x": frame})."""
    ys, xs = pairs.align(_closes[y].dropna(), _closes[x].dropna())
    hedge, m = backtest_hedge(method)
    return backtest.mean_reversion(ys, xs, window=window, entry_z=params.entry_z, exit_z=params.exit_z,
                                   stop_z=params.stop_z, cost_bps=params.cost_bps, hedge=hedge, method=m,
                                   timeframe=timeframe, capital=params.capital, funding=_funding or None)


def backtest_or_reason(key: tuple, closes: pd.DataFrame, y: str, x: str, method: str, window: int, timeframe: str,
                       params: BacktestParams, funding: dict[str, pd.DataFrame] | None = None
                       ) -> tuple[backtest.BacktestResult | None, str | None]:
    """`run_backtest`, or (None, a sentence saying why it could not run) — a page never shows a traceback."""
    try:
        return run_backtest(key, closes, y, x, method, window, timeframe, params, funding,
                            _funding_key(funding)), None
    except ValueError as exc:
        return None, f"Cannot run this backtest: {exc}."
    except Exception as exc:  # a quantlib failure on unusual data must not take the page down
        log.exception("backtest failed for %s/%s %s window %d", y, x, timeframe, window)
        return None, f"The backtest failed on this data ({type(exc).__name__}: {exc})."


def _funding_key(funding: dict[str, pd.DataFrame] | None) -> tuple:
    """A cache key naming the funding rates passed with a backtest (legs, rows, newest funding time)."""
    return tuple((leg, len(f), f.index.max() if len(f) else None) for leg, f in sorted((funding or {}).items()))


def drawdown(equity: pd.Series) -> pd.Series:
    """Drawdown from the running peak, as a negative fraction (0 at new highs) — the curve behind max_drawdown."""
    return (equity / equity.cummax() - 1.0).rename("drawdown")



def _aligned(closes: pd.DataFrame, y: str, x: str) -> tuple[pd.Series, pd.Series]:
    return pairs.align(closes[y].dropna(), closes[x].dropna())


def equity_frame(result: backtest.BacktestResult, y: str, x: str) -> pd.DataFrame:
    """The single run bar by bar (equity CSV): equity, drawdown, position, z-score, spread, β and the
    buy-and-hold equity of each leg."""
    out = pd.DataFrame({"equity": result.equity, "drawdown": drawdown(result.equity),
                        "position": result.positions, "zscore": result.zscore, "spread": result.spread,
                        "beta": result.hedge_ratio})
    if result.buy_hold is not None:
        out[f"buy_hold_{y}"] = result.buy_hold["y"]
        out[f"buy_hold_{x}"] = result.buy_hold["x"]
    return out


# ---------------------------------------------------------------- suggested thresholds (OU fit of the spread)
@dataclass(frozen=True)
class ThresholdView:
    """The OU fit of the single run's spread and the thresholds it suggests for the run's cost, beside the
    user's choice (all rates in spread units per bar, per unit of Y held; entry / exit in stationary z)."""

    fit: ou.OUFit
    cost: float                         # one round trip in spread units (both legs, entry and exit)
    bertram: ou.Thresholds
    band: ou.Thresholds
    user_rate: float                    # expected return per bar of the user's entry / exit under the fit
    user_cycle_bars: float
    entry_z: float
    exit_z: float

    def table(self) -> pd.DataFrame:
        """Rows: your choice, the best band of this page's rule, Bertram's (flip at the opposite band)."""
        def per_day(bars: float) -> float:
            bar = self.fit.bar
            return pd.Timedelta(days=1) / (bar * bars) if bar is not None and bars > 0 else math.nan

        rows = [("Your choice", self.entry_z, self.exit_z, self.user_rate, self.user_cycle_bars,
                 per_day(self.user_cycle_bars)),
                ("Best entry / exit for this rule", self.band.entry_z, self.band.exit_z, self.band.return_per_bar,
                 self.band.cycle_bars, per_day(self.band.cycle_bars)),
                ("Bertram (2010): reverse at the opposite band", self.bertram.entry_z, self.bertram.exit_z,
                 self.bertram.return_per_bar, self.bertram.cycle_bars, per_day(self.bertram.cycle_bars))]
        return pd.DataFrame(rows, columns=["rule", "entry_z", "exit_z", "return_per_bar", "bars_per_trade",
                                           "trades_per_day"])


def threshold_view_cached(key: tuple, result: backtest.BacktestResult, closes: pd.DataFrame, y: str, x: str,
                          timeframe: str, params: BacktestParams) -> tuple[ThresholdView | None, str | None]:
    """`threshold_view`, cached on the view key (the single run shows it on every refresh)."""
    return _threshold_view(key, result, closes, y, x, timeframe, params)


@CACHE
def _threshold_view(key: tuple, _result: backtest.BacktestResult, _closes: pd.DataFrame, y: str, x: str,
                    timeframe: str, params: BacktestParams) -> tuple[ThresholdView | None, str | None]:
    return threshold_view(_result, _closes, y, x, timeframe, params)


def threshold_view(result: backtest.BacktestResult, closes: pd.DataFrame, y: str, x: str, timeframe: str,
                   params: BacktestParams) -> tuple[ThresholdView | None, str | None]:
    """OU thresholds for the single run's spread (its causal spread over the window) at the run's cost, or
    (None, why not). The cost of a round trip in spread units is entry and exit of both legs at the last
    prices and β: 2 x cost_bps x (y + |β| x)."""
    ys, xs = _aligned(closes, y, x)
    y_last, x_last = float(ys.iloc[-1]), float(xs.iloc[-1])
    spread = result.spread.dropna() if result.spread is not None else pd.Series(dtype=float)
    why = RULE.bars(len(spread), "an OU fit of the spread")
    if why:
        return None, why
    try:
        fit = ou.fit_ou(spread.to_numpy(), bar=pd.Timedelta(seconds=timeframe_seconds(timeframe)))
        if fit.problem:
            return None, fit.problem
        beta = result.hedge_ratio.dropna()
        b = float(beta.iloc[-1]) if len(beta) else 0.0
        cost = 2 * params.cost_bps / 1e4 * (y_last + abs(b) * x_last)
        user_rate = float(ou.band_return_rate(fit, params.entry_z, params.exit_z, cost))
        user_cycle = float(ou.band_cycle_bars(fit, params.entry_z, params.exit_z))
        return ThresholdView(fit, cost, ou.bertram(fit, cost), ou.optimal_band(fit, cost), user_rate, user_cycle,
                             params.entry_z, params.exit_z), None
    except ValueError as exc:
        return None, str(exc)


# ---------------------------------------------------------------- parameter sweep
MAX_GRID_VALUES = 40     # values per threshold axis
MAX_SWEEP_SETS = 2_000   # parameter sets per sweep (the page's own limit; quantlib takes more)


def axis_values(start: float, stop: float, step: float, name: str) -> tuple[float, ...]:
    """start, start + step, ... <= stop (rounded to 6 decimals); ValueError saying what is expected."""
    if not step > 0:
        raise ValueError(f"the {name} step must be > 0, got {step:g}")
    if stop < start:
        raise ValueError(f"the {name} range must run upwards ({start:g} to {stop:g})")
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    if count > MAX_GRID_VALUES:
        raise ValueError(f"{count} {name} values; at most {MAX_GRID_VALUES} (widen the step)")
    return tuple(round(start + i * step, 6) for i in range(count))


def parse_windows(text: str, default: int) -> tuple[int, ...]:
    """'30, 60, 120' -> (30, 60, 120); empty -> (default,); ValueError naming the bad item."""
    items = [t.strip() for t in str(text).replace(";", ",").split(",") if t.strip()]
    if not items:
        return (default,)
    out = []
    for t in items:
        if not t.isdigit() or not 5 <= int(t) <= 5000:
            raise ValueError(f"windows must be whole numbers of bars from 5 to 5000 separated by commas; got {t!r}")
        out.append(int(t))
    if len(set(out)) > 8:
        raise ValueError(f"at most 8 windows per sweep, got {len(set(out))}")
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class SweepParams:
    """The sweep form: entry and exit ranges (|z|), windows, the out-of-sample share and the pick metric."""

    entry: tuple[float, ...] = (1.0, 1.5, 2.0, 2.5, 3.0)
    exit: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    windows: tuple[int, ...] = (60,)
    oos_fraction: float = 0.3
    metric: str = "sharpe"


@dataclass(frozen=True)
class SweepView:
    """A sweep with the minimum-sample rule applied: `sharpe_withheld` / `oos_sharpe_withheld` say per set why
    its Sharpe is not shown ('' when it is); `deflated` is the best set's deflated Sharpe (None: no best or
    its Sharpe is withheld); `note` explains a changed pick metric."""

    result: object                      # quantlib.sweep.SweepResult
    sharpe_withheld: pd.Series
    oos_sharpe_withheld: pd.Series | None
    deflated: performance.DeflatedSharpe | None
    metric: str
    note: str | None

    def grid(self) -> pd.DataFrame:
        """The grid for the CSV: every column of the sweep plus the withheld reasons."""
        out = self.result.grid.copy()
        out["sharpe_withheld"] = self.sharpe_withheld.to_numpy()
        if self.oos_sharpe_withheld is not None:
            out["oos_sharpe_withheld"] = self.oos_sharpe_withheld.to_numpy()
        return out


def _withheld(n_trades: pd.Series, n_bars: int, span: pd.Timedelta | None) -> pd.Series:
    return pd.Series([RULE.annualized(n_bars, int(k), span) or "" for k in n_trades], index=n_trades.index)


def _span(index: pd.Index, lo: int, hi: int) -> pd.Timedelta | None:
    """Clock span from bar lo to bar hi - 1."""
    if isinstance(index, pd.DatetimeIndex) and hi - lo > 1:
        return pd.Timedelta(index[hi - 1] - index[lo])
    return None


@CACHE
def run_sweep(key: tuple, _closes: pd.DataFrame, y: str, x: str, method: str, timeframe: str,
              params: BacktestParams, sp: SweepParams, _funding: dict[str, pd.DataFrame] | None = None,
              funding_key: tuple = ()) -> SweepView:
    """`quantlib.backtest.sweep` of the pair with the page's hedge, cost and stop, the best picked among sets
    with at least `RULE.min_trades` in-sample trades (by total return when the in-sample part is too short
    for an annualized Sharpe), and the best set's deflated Sharpe over all sets tried."""
    ys, xs = _aligned(_closes, y, x)
    hedge, m = backtest_hedge(method)
    n = len(ys)
    split = n - int(round(n * sp.oos_fraction)) if sp.oos_fraction > 0 else n
    span_in = _span(ys.index, 0, split)
    metric, note = sp.metric, None
    if metric == "sharpe" and RULE.annualized(split, None, span_in):
        metric = "total_return"
        note = (f"Picked by total return: {RULE.annualized(split, None, span_in, 'an in-sample Sharpe')} "
                "for every set.")
    res = backtest.sweep(ys, xs, entry_z=list(sp.entry), exit_z=list(sp.exit), stop_z=params.stop_z,
                         window=list(sp.windows), cost_bps=params.cost_bps, hedge=hedge, method=m,
                         timeframe=timeframe, capital=params.capital, oos_fraction=sp.oos_fraction or None,
                         metric=metric, min_trades=RULE.min_trades, funding=_funding or None)
    g = res.grid
    withheld = _withheld(g["n_trades"], res.n_in_sample, span_in)
    oos_withheld = None
    if res.out_of_sample is not None:
        oos_withheld = _withheld(g["oos_n_trades"], res.n_out_of_sample, _span(ys.index, res.n_in_sample, n))
    deflated = None
    if res.best is not None and not withheld[res.best.name]:
        equity = res.best_equity
        if equity is None:  # the in-sample stats equal mean_reversion on the in-sample bars alone
            equity = backtest.mean_reversion(ys.iloc[:res.n_in_sample], xs.iloc[:res.n_in_sample],
                                             cost_bps=params.cost_bps, hedge=hedge, method=m, timeframe=timeframe,
                                             capital=params.capital, funding=_funding or None,
                                             **res.best_params()).equity
        shown = g["sharpe"].where(withheld == "")
        deflated = performance.deflated_sharpe(performance.bar_returns(equity), res.params["periods_per_year"],
                                               n_trials=len(g), trial_sharpes=shown.to_numpy())
    if res.best is None:
        note = (note or "") + (f" No parameter set made at least {RULE.min_trades} trades in sample, so none is "
                               "picked as best.")
    return SweepView(res, withheld, oos_withheld, deflated, metric, note.strip() if note else None)


def sweep_or_reason(key: tuple, closes: pd.DataFrame, y: str, x: str, method: str, timeframe: str,
                    params: BacktestParams, sp: SweepParams, funding: dict[str, pd.DataFrame] | None = None
                    ) -> tuple[SweepView | None, str | None]:
    if len(sp.entry) * len(sp.exit) * len(sp.windows) > MAX_SWEEP_SETS:
        return None, (f"{len(sp.entry) * len(sp.exit) * len(sp.windows):,} parameter sets; the page runs at most "
                      f"{MAX_SWEEP_SETS:,} (fewer values or windows)")
    try:
        return run_sweep(key, closes, y, x, method, timeframe, params, sp, funding, _funding_key(funding)), None
    except ValueError as exc:
        return None, f"Cannot run this sweep: {exc}."
    except Exception as exc:  # a quantlib failure on unusual data must not take the page down
        log.exception("sweep failed for %s/%s %s", y, x, timeframe)
        return None, f"The sweep failed on this data ({type(exc).__name__}: {exc})."


# ---------------------------------------------------------------- walk-forward
@dataclass(frozen=True)
class WalkForwardParams:
    """The walk-forward form: formation and trading window lengths in bars, rolling or anchored formation."""

    formation: int = 240
    trading: int = 60
    anchored: bool = False
    optimize: bool = False   # re-choose entry / exit on each formation window from OPTIMIZE_GRID


# the entry x exit grid a walk-forward optimisation searches on each formation window (best by Sharpe among sets
# with the sample rule's minimum of trades there, else the form's thresholds)
OPTIMIZE_GRID = {"entry_z": [1.0, 1.5, 2.0, 2.5, 3.0], "exit_z": [0.0, 0.25, 0.5, 0.75, 1.0]}


def walk_forward_method(method: str) -> str:
    """Sidebar hedge → walk_forward method: a rolling OLS becomes one OLS fit per formation window."""
    return "ols" if method == "rolling" else method


@CACHE
def run_walk_forward(key: tuple, _closes: pd.DataFrame, y: str, x: str, method: str, timeframe: str,
                     params: BacktestParams, wp: WalkForwardParams, _funding: dict[str, pd.DataFrame] | None = None,
                     funding_key: tuple = ()):
    ys, xs = _aligned(_closes, y, x)
    return backtest.walk_forward(ys, xs, formation=wp.formation, trading=wp.trading, anchored=wp.anchored,
                                 method=walk_forward_method(method), entry_z=params.entry_z, exit_z=params.exit_z,
                                 stop_z=params.stop_z, cost_bps=params.cost_bps, timeframe=timeframe,
                                 capital=params.capital, optimize=OPTIMIZE_GRID if wp.optimize else None,
                                 funding=_funding or None)


def walk_forward_or_reason(key: tuple, closes: pd.DataFrame, y: str, x: str, method: str, timeframe: str,
                           params: BacktestParams, wp: WalkForwardParams,
                           funding: dict[str, pd.DataFrame] | None = None):
    try:
        return run_walk_forward(key, closes, y, x, method, timeframe, params, wp, funding,
                                _funding_key(funding)), None
    except ValueError as exc:
        return None, f"Cannot run this walk-forward: {exc}."
    except Exception as exc:  # a quantlib failure on unusual data must not take the page down
        log.exception("walk-forward failed for %s/%s %s", y, x, timeframe)
        return None, f"The walk-forward failed on this data ({type(exc).__name__}: {exc})."
