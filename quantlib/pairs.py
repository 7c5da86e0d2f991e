"""Pair analytics: spread, correlations, and `pair_summary`, everything a pair page shows in one call."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from quantlib import indicators, regression, stattests
from quantlib._blas import single_threaded
from quantlib._validate import as_frame, as_pair, check_choice, check_min, check_window
from quantlib.timeframes import periods_per_year


def _check_align_index(s: pd.Series, name: str) -> None:
    index = s.index
    dup = index.duplicated()
    if dup.any():
        raise ValueError(f"{name} has {int(dup.sum())} duplicate timestamps (first: {index[dup][0]}); "
                         "keep one value per bar before aligning")
    if isinstance(index, pd.DatetimeIndex) and index.tz is None:
        raise ValueError(f"{name} has a naive DatetimeIndex; expected tz-aware UTC timestamps")

# Bars before the expanding (no look-ahead) hedge is first fitted: short enough that a window of `window`
# bars shows a z-score for most of a short lookback, long enough for a usable first fit.
CAUSAL_WARMUP = 20


def align(y: pd.Series, x: pd.Series, how: str = "inner") -> tuple[pd.Series, pd.Series]:
    """Two series on a common index. "inner": timestamps both have; "ffill": union of timestamps with
    each leg's last value carried forward (leading bars where either leg has no value yet are dropped).
    Duplicate timestamps and naive datetime indexes are rejected; a datetime leg and a non-datetime leg
    cannot be aligned."""
    check_choice(how, "how", ("inner", "ffill"))
    if not (isinstance(y, pd.Series) and isinstance(x, pd.Series)):
        raise ValueError("align needs two pandas Series")
    _check_align_index(y, "y")
    _check_align_index(x, "x")
    if isinstance(y.index, pd.DatetimeIndex) != isinstance(x.index, pd.DatetimeIndex):
        raise ValueError("y and x must both have a DatetimeIndex (tz-aware UTC) or neither; got "
                         f"{type(y.index).__name__} and {type(x.index).__name__}")
    if isinstance(y.index, pd.DatetimeIndex):
        y, x = y.tz_convert("UTC"), x.tz_convert("UTC")
    both = pd.concat([y.rename("y"), x.rename("x")], axis=1, join="inner" if how == "inner" else "outer")
    if how == "ffill":
        both = both.sort_index().ffill()
    both = both.dropna()
    return both["y"].rename(y.name), both["x"].rename(x.name)


def spread(y: pd.Series | np.ndarray, x: pd.Series | np.ndarray, beta: float | pd.Series,
           alpha: float | pd.Series = 0.0) -> pd.Series:
    """y - alpha - beta * x; beta / alpha may be scalars or series on the same index (time-varying; NaN
    allowed, e.g. a rolling fit's warm-up) or arrays of the same length. A series on another index is
    rejected, never silently reindexed."""
    ys, xs = as_pair(y, x)
    return (ys - _coefficient(alpha, "alpha", ys.index) - _coefficient(beta, "beta", ys.index) * xs).rename("spread")


def _coefficient(value: object, name: str, index: pd.Index) -> float | np.ndarray:
    if isinstance(value, pd.DataFrame):
        raise ValueError(f"{name} must be a number or a Series, got a DataFrame")
    if isinstance(value, pd.Series):
        if not value.index.equals(index):
            raise ValueError(f"{name} must share y's index ({len(index)} bars); got a Series on another index "
                             f"({len(value)} bars): align it first")
        raw = value.to_numpy()
    elif np.ndim(value) == 0:
        try:
            v = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, got {value!r}") from None
        if not np.isfinite(v):
            raise ValueError(f"{name} must be finite, got {v}")
        return v
    else:
        raw = np.asarray(value)
        if raw.ndim != 1 or raw.shape[0] != len(index):
            raise ValueError(f"{name} must have one value per bar ({len(index)}), got shape {raw.shape}")
    try:
        arr = raw.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric, got dtype {raw.dtype}") from None
    if np.isinf(arr).any():
        raise ValueError(f"{name} contains infinite values")
    return arr


def _log_returns(s: pd.Series) -> pd.Series:
    return np.log(s).diff()


def rolling_correlation(a: pd.Series | np.ndarray, b: pd.Series | np.ndarray, window: int,
                        on: str = "returns") -> pd.Series:
    """Pearson correlation over each trailing `window`, of log returns (default) or of levels.

    On returns the first value appears at bar `window` (window returns need window + 1 prices).
    """
    check_choice(on, "on", ("returns", "levels"))
    window = check_window(window, "window", 3)
    as_, bs = as_pair(a, b, names=("a", "b"), positive=on == "returns", min_len=window + (on == "returns"))
    if on == "returns":
        as_, bs = _log_returns(as_), _log_returns(bs)
    return as_.rolling(window, min_periods=window).corr(bs).rename("correlation")


@single_threaded
def correlation_matrix(frame: pd.DataFrame, method: str = "pearson") -> pd.DataFrame:
    """Correlation matrix of log returns of the price columns of `frame` (pearson / spearman / kendall)."""
    check_choice(method, "method", ("pearson", "spearman", "kendall"))
    df = as_frame(frame, "frame", min_cols=2, min_len=3, positive=True)
    return np.log(df).diff().iloc[1:].corr(method=method)


@dataclass(frozen=True)
class PairSummary:
    """Everything the pair page shows for y (dependent) against x."""

    y_name: str
    x_name: str
    nobs: int
    window: int
    timeframe: str | None
    hedge: regression.HedgeRatio
    spread: pd.Series = field(repr=False)
    zscore: pd.Series = field(repr=False)
    rolling_correlation: pd.Series = field(repr=False)
    correlation: float             # full-sample correlation of log returns
    volatility_y: float            # realized vol of log returns, annualized by the bars' observed rate (a
                                   # DatetimeIndex) or by `timeframe`; per bar when neither is known
    volatility_x: float
    adf: stattests.ADFResult
    engle_granger: stattests.EngleGrangerResult
    johansen: stattests.JohansenResult
    half_life: stattests.HalfLife
    hurst: stattests.HurstResult
    # The spread and z-score as they were known at each bar: the hedge refitted on bars up to t (expanding
    # window from CAUSAL_WARMUP bars on, `regression.expanding_hedge_ratio`), then the same rolling z-score.
    # `spread` / `zscore` above use one fit on the whole sample, so their history is in-sample (later bars
    # move earlier values).
    spread_causal: pd.Series = field(repr=False, default=None)  # type: ignore[assignment]
    zscore_causal: pd.Series = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def last_zscore(self) -> float:
        z = self.zscore.dropna()
        return float(z.iloc[-1]) if len(z) else math.nan

    def table(self) -> pd.DataFrame:
        """Rows (test, statistic, p_value, verdict) for display."""
        h, eg, jo, hl = self.hedge, self.engle_granger, self.johansen, self.half_life
        rows = [
            ("hedge ratio (" + h.method + ")", h.beta, math.nan,
             f"y = {h.alpha:+.4g} + {h.beta:.4g} x, R² {h.r_squared:.3f}"),
            ("return correlation", self.correlation, math.nan, f"{self.correlation:.3f} over {self.nobs - 1} returns"),
            ("Engle-Granger", eg.statistic, eg.pvalue, eg.verdict),
            ("ADF on spread", self.adf.statistic, self.adf.pvalue,
             self.adf.verdict + " (plain ADF values; Engle-Granger is the cointegration test)"),
            ("Johansen trace", float(jo.trace_stat[0]), math.nan, jo.verdict),
            ("Johansen max-eigenvalue", float(jo.max_eig_stat[0]), math.nan,
             f"rank {jo.rank_max_eig} by the max-eigenvalue test at 5%"),
            ("half-life (bars)", hl.half_life, hl.pvalue, hl.verdict),
            ("Hurst exponent", self.hurst.hurst, math.nan, self.hurst.verdict),
            ("latest z-score", self.last_zscore, math.nan,
             f"{self.window}-bar rolling z-score of the spread of one fit on the whole window (in-sample)"),
        ]
        return pd.DataFrame(rows, columns=["test", "statistic", "p_value", "verdict"])

    def to_frame(self) -> pd.DataFrame:
        return self.table()

    def summary(self) -> str:
        return f"Pair {self.y_name} ~ {self.x_name} ({self.nobs} bars)\n" + self.table().to_string(index=False)

    def __str__(self) -> str:
        return self.summary()


@single_threaded
def pair_summary(y: pd.Series | np.ndarray, x: pd.Series | np.ndarray, window: int = 100,
                 method: str = "ols", timeframe: str | None = None, *, corr_window: int | None = None,
                 add_const: bool = True) -> PairSummary:
    """Hedge ratio, spread and its rolling z-score, rolling return correlation, ADF on the spread,
    Engle-Granger, Johansen (det_order 0, one lagged difference), half-life and Hurst of the spread.

    `method` is the hedge-ratio method for the spread; Engle-Granger always uses its own OLS fit (its
    critical values assume it). theil_sen and huber are slower than the rest of the summary together.
    Needs >= max(32, window + 1) bars of positive prices.
    """
    window = check_window(window, "window", 3)
    corr_window = check_window(corr_window or window, "corr_window", 3)
    ys, xs = as_pair(y, x, positive=True)
    check_min(len(ys), max(stattests.HURST_MIN_OBS, window + 1, corr_window + 1), "bars")
    hedge = regression.hedge_ratio(ys, xs, method=method, add_const=add_const)
    spr = hedge.residuals.rename("spread")
    ly, lx = np.log(ys.to_numpy()), np.log(xs.to_numpy())
    ry, rx = np.diff(ly), np.diff(lx)
    corr = float(np.corrcoef(ry, rx)[0, 1]) if ry.std() > 0 and rx.std() > 0 else math.nan
    per_year = periods_per_year(ys.index, timeframe)
    scale = math.sqrt(per_year) if per_year else 1.0
    frame = pd.DataFrame({"y": ys, "x": xs})
    live = regression.expanding_hedge_ratio(ys, xs, min(window, CAUSAL_WARMUP), method=method, add_const=add_const)
    spr_causal = (ys - live["alpha"] - live["beta"] * xs).rename("spread")
    return PairSummary(
        y_name=str(ys.name if ys.name is not None else "y"),
        x_name=str(xs.name if xs.name is not None else "x"),
        nobs=len(ys),
        window=window,
        timeframe=timeframe,
        hedge=hedge,
        spread=spr,
        zscore=indicators.zscore(spr, window),
        rolling_correlation=rolling_correlation(ys, xs, corr_window),
        correlation=corr,
        volatility_y=float(ry.std(ddof=1) * scale),
        volatility_x=float(rx.std(ddof=1) * scale),
        adf=stattests.adf(spr),
        engle_granger=stattests.engle_granger(ys, xs),
        johansen=stattests.johansen(frame),
        half_life=stattests.half_life(spr),
        hurst=stattests.hurst(spr),
        spread_causal=spr_causal,
        zscore_causal=indicators.rolling_zscore(spr_causal, window),
    )


__all__ = ["align", "spread", "rolling_correlation", "correlation_matrix", "PairSummary", "pair_summary"]
