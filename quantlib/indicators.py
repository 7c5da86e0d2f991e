"""Technical indicators on a price / value series. All are causal: the value at t uses data up to t only.

Inputs are Series (index kept) or 1-D arrays (a RangeIndex is used); outputs are Series, NaN during warm-up.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from quantlib._validate import as_series, check_window
from quantlib.timeframes import bars_per_year

FLAT_RTOL = 1e-7  # a window whose std is below this fraction of its largest |value| is flat


def sma(x: pd.Series | np.ndarray, n: int) -> pd.Series:
    """Simple moving average over the last `n` values (NaN for the first n-1)."""
    n = check_window(n, "n", 1)
    s = as_series(x, "x")
    return s.rolling(n, min_periods=n).mean()


def ema(x: pd.Series | np.ndarray, n: int) -> pd.Series:
    """Exponential moving average, alpha = 2/(n+1), seeded with the first value (pandas ewm span=n, adjust=False)."""
    n = check_window(n, "n", 1)
    s = as_series(x, "x")
    return s.ewm(span=n, adjust=False).mean()


def _wilder(values: np.ndarray, n: int) -> np.ndarray:
    """Wilder's running mean of values[1:], seeded at index n with mean(values[1:n+1]); NaN before."""
    out = np.full(values.shape[0], np.nan)
    seed = values[1 : n + 1].mean()
    out[n] = seed
    if values.shape[0] > n + 1:
        # avg_t = avg_{t-1} * (n-1)/n + v_t / n: an adjust=False EWM (alpha = 1/n) started from the seed
        tail = values[n:].copy()
        tail[0] = seed
        out[n:] = pd.Series(tail).ewm(alpha=1.0 / n, adjust=False).mean().to_numpy()
    return out


def rsi(close: pd.Series | np.ndarray, n: int = 14) -> pd.Series:
    """Relative Strength Index with Wilder smoothing (alpha = 1/n).

    Seeding: the first average gain / loss (at bar n) is the simple mean of the first n price changes;
    after that avg_t = (avg_{t-1} * (n - 1) + change_t) / n. RSI = 100 - 100 / (1 + avg_gain / avg_loss);
    100 when avg_loss is 0 (and avg_gain > 0), 50 when both are 0 (flat prices). NaN for bars 0..n-1.
    """
    n = check_window(n, "n", 1)
    s = as_series(close, "close", min_len=n + 1)
    d = np.diff(s.to_numpy(), prepend=np.nan)
    gain = np.where(d > 0, d, 0.0)
    loss = np.where(d < 0, -d, 0.0)
    avg_gain, avg_loss = _wilder(gain, n), _wilder(loss, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    value = np.where((avg_loss == 0) & (avg_gain > 0), 100.0, value)
    value = np.where((avg_loss == 0) & (avg_gain == 0), 50.0, value)
    value[:n] = np.nan
    return pd.Series(value, index=s.index, name="rsi")


def log_returns(close: pd.Series | np.ndarray) -> pd.Series:
    """ln(close_t / close_{t-1}); NaN at the first bar. Prices must be > 0."""
    s = as_series(close, "close", positive=True)
    return np.log(s).diff()


def realized_volatility(close: pd.Series | np.ndarray, n: int, timeframe: str | None = None) -> pd.Series:
    """Rolling standard deviation (ddof=1) of the last `n` log returns.

    With `timeframe` the result is annualized by sqrt(bars_per_year(timeframe)) (365-day 24/7 year);
    without it, it is per bar. The first value appears at bar n (n returns need n + 1 prices).
    """
    n = check_window(n, "n", 2)
    scale = np.sqrt(bars_per_year(timeframe)) if timeframe is not None else 1.0
    r = log_returns(close)
    return (r.rolling(n, min_periods=n).std(ddof=1) * scale).rename("realized_volatility")


def zscore(x: pd.Series | np.ndarray, n: int) -> pd.Series:
    """(x_t - mean) / std over the trailing window x_{t-n+1..t} (ddof=1): no look-ahead.

    NaN during the first n-1 bars and where the window is flat (std <= 1e-7 x the window's largest |x|, a
    relative test: a 1e-8-level price series gets z-scores like a 1e4-level one).
    """
    n = check_window(n, "n", 2)
    return rolling_zscore(as_series(x, "x"), n)


def rolling_zscore(s: pd.Series, n: int) -> pd.Series:
    """`zscore` without input checks, for internal callers whose series has NaN warm-up bars
    (a window containing NaN gives NaN)."""
    roll = s.rolling(n, min_periods=n)
    mean, std = roll.mean(), roll.std(ddof=1)
    # pandas' running variance carries rounding of ~1e-16 x the window's magnitude squared, so a flat window
    # can show a std of ~1e-8 x its magnitude; below 1e-7 of it the window is flat. Relative to the values,
    # so 1e-8 prices and 1e9 prices behave alike (price ticks are >= 1e-5 of the price on every venue).
    magnitude = s.abs().rolling(n, min_periods=n).max()
    flat = std <= FLAT_RTOL * magnitude
    z = (s - mean) / std.mask(flat)
    return z.rename("zscore")
