"""Assemble what the Pairs and Backtest pages show from quantlib calls, cached process-wide per view.

No estimator lives here: every number comes from `quantlib`; this module only picks which calls a view needs,
checks there are enough bars first (saying how many are needed), and caches the bundle so several open tabs
on the same view cost one computation per refresh.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd
import streamlit as st

from quantlib import backtest, indicators, pairs, regression, stattests

FIT_METHODS = {"OLS": "ols", "Huber": "huber", "Theil-Sen": "theil_sen"}
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
    """Bars the full test table needs (Hurst needs 32; the rolling z-score needs window + 1)."""
    return max(stattests.HURST_MIN_OBS, window + 1)


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
    if n >= window + 1:
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
        if len(both) >= 3:
            heatmap = pairs.correlation_matrix(both)
        else:
            notes.append("the correlation heatmap needs at least 3 bars where every symbol traded")
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
                 params: BacktestParams) -> backtest.BacktestResult:
    """`quantlib.backtest.mean_reversion` on aligned closes, cached on `key` + params."""
    ys, xs = pairs.align(_closes[y].dropna(), _closes[x].dropna())
    hedge, m = backtest_hedge(method)
    return backtest.mean_reversion(ys, xs, window=window, entry_z=params.entry_z, exit_z=params.exit_z,
                                   stop_z=params.stop_z, cost_bps=params.cost_bps, hedge=hedge, method=m,
                                   timeframe=timeframe, capital=params.capital)


def backtest_or_reason(key: tuple, closes: pd.DataFrame, y: str, x: str, method: str, window: int, timeframe: str,
                       params: BacktestParams) -> tuple[backtest.BacktestResult | None, str | None]:
    """`run_backtest`, or (None, a sentence saying why it could not run) — a page never shows a traceback."""
    try:
        return run_backtest(key, closes, y, x, method, window, timeframe, params), None
    except ValueError as exc:
        return None, f"Cannot run this backtest: {exc}."
    except Exception as exc:  # a quantlib failure on unusual data must not take the page down
        log.exception("backtest failed for %s/%s %s window %d", y, x, timeframe, window)
        return None, f"The backtest failed on this data ({type(exc).__name__}: {exc})."


def drawdown(equity: pd.Series) -> pd.Series:
    """Drawdown from the running peak, as a negative fraction (0 at new highs) — the curve behind max_drawdown."""
    return (equity / equity.cummax() - 1.0).rename("drawdown")

