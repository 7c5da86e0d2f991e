"""Honest performance statistics of a bar-by-bar equity curve: the Sharpe ratio with its standard error and
confidence interval, the deflated Sharpe ratio after a parameter search, buy-and-hold references, and the
sample each figure rests on.

Conventions (vectorbt-style, fractions): returns are simple bar returns r_t = E_t / E_{t-1} - 1; the
per-bar Sharpe is mean / std (ddof 1); it is annualized by sqrt(q), q = bars per 365-day year (from the bar
interval, see `quantlib.timeframes.periods_per_year`), and the standard error scales the same way (Lo 2002,
IID returns).

Standard error of the per-bar Sharpe SR from T returns:
- Lo (2002), IID normal returns: sqrt((1 + SR^2 / 2) / T);
- Mertens (2002) / Opdyke (2007), IID with skewness g3 and (non-excess) kurtosis g4:
  sqrt((1 - g3 SR + (g4 - 1) / 4 SR^2) / T), equal to Lo's when g3 = 0, g4 = 3. A backtest's bar returns are
  mostly zeros between trades (heavy tails), so this one is the default.

Deflated Sharpe ratio (Bailey & Lopez de Prado 2014): the probability that the true Sharpe exceeds the
Sharpe the best of N trials would show by luck alone,
  SR0 = sqrt(V) ((1 - g) Phi^-1(1 - 1/N) + g Phi^-1(1 - 1/(N e))),  g = Euler-Mascheroni,
  DSR = Phi((SR - SR0) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2)),
with V the variance of the trials' per-bar Sharpe ratios (default: 1 / T, trials that are pure noise).
With N = 1 it is the probabilistic Sharpe ratio against 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as _st

from quantlib._validate import check_positive_number
from quantlib.sample import RULE, SampleRule, span_words

EULER_GAMMA = 0.5772156649015329
SE_METHODS = ("mertens", "lo")


def bar_returns(equity: pd.Series | np.ndarray) -> np.ndarray:
    """Simple returns between consecutive equity values (length n - 1)."""
    e = np.asarray(equity, dtype=np.float64)
    return np.diff(e) / e[:-1]


def _moments(r: np.ndarray) -> tuple[float, float, float, float]:
    """mean, std (ddof 1), skewness and non-excess kurtosis (population moments, as scipy's bias=True)."""
    mean = float(r.mean())
    sd = float(r.std(ddof=1)) if r.size > 1 else math.nan
    c = r - mean
    m2 = float(np.mean(c**2))
    if m2 <= 0:
        return mean, sd, math.nan, math.nan
    return mean, sd, float(np.mean(c**3) / m2**1.5), float(np.mean(c**4) / m2**2)


@dataclass(frozen=True)
class SharpeEstimate:
    """An annualized Sharpe ratio with its standard error and a two-sided confidence interval."""

    sharpe: float              # annualized
    per_bar: float             # mean / std of the bar returns
    se: float                  # annualized standard error
    ci_low: float
    ci_high: float
    level: float
    n_returns: int
    periods_per_year: float
    skew: float
    kurtosis: float            # non-excess (3 for a normal)
    method: str                # "mertens" | "lo"

    def summary(self) -> str:
        if not math.isfinite(self.sharpe):
            return f"Sharpe undefined ({self.n_returns} returns with no variation)"
        return (f"Sharpe (ann.) {self.sharpe:.2f}, {self.level:.0%} CI [{self.ci_low:.2f}, {self.ci_high:.2f}] "
                f"(SE {self.se:.2f}, {self.method}, {self.n_returns} returns, x sqrt({self.periods_per_year:,.0f}))")

    def __str__(self) -> str:
        return self.summary()


def sharpe_se(per_bar: float, n: int, skew: float = 0.0, kurtosis: float = 3.0) -> float:
    """Standard error of a per-bar Sharpe ratio from `n` returns (Mertens; skew 0, kurtosis 3 gives Lo)."""
    if n < 2 or not math.isfinite(per_bar):
        return math.nan
    var = 1.0 - skew * per_bar + (kurtosis - 1.0) / 4.0 * per_bar**2
    return math.sqrt(max(var, 0.0) / n)


def sharpe_ratio(returns: pd.Series | np.ndarray, periods_per_year: float, *, level: float = 0.95,
                 method: str = "mertens") -> SharpeEstimate:
    """Annualized Sharpe ratio of bar returns with its standard error (module docstring) and a normal
    confidence interval at `level`."""
    q = check_positive_number(periods_per_year, "periods_per_year")
    if method not in SE_METHODS:
        raise ValueError(f"method must be one of {SE_METHODS}, got {method!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    n = int(r.size)
    if n < 2:
        return SharpeEstimate(math.nan, math.nan, math.nan, math.nan, math.nan, level, n, q, math.nan, math.nan,
                              method)
    mean, sd, g3, g4 = _moments(r)
    per_bar = mean / sd if sd > 0 else math.nan
    if method == "lo" or not math.isfinite(g3):
        se = sharpe_se(per_bar, n)
    else:
        se = sharpe_se(per_bar, n, g3, g4)
    scale = math.sqrt(q)
    zq = float(_st.norm.ppf(0.5 + level / 2))
    sr, se_a = per_bar * scale, se * scale
    return SharpeEstimate(sr, per_bar, se_a, sr - zq * se_a, sr + zq * se_a, level, n, q, g3, g4, method)


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """Expected maximum of `n_trials` Sharpe ratios with true value 0 and variance `variance` (per bar),
    Bailey & Lopez de Prado's approximation; 0 for a single trial."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if n_trials == 1:
        return 0.0
    z1 = _st.norm.ppf(1.0 - 1.0 / n_trials)
    z2 = _st.norm.ppf(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(variance) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)


@dataclass(frozen=True)
class DeflatedSharpe:
    """The deflated Sharpe ratio of the best of `n_trials` parameter sets (module docstring)."""

    sharpe: float              # annualized Sharpe of the chosen set
    n_trials: int
    trials_sd: float           # annualized std of the trials' Sharpe ratios used for the expected maximum
    expected_max: float        # annualized Sharpe the best of n_trials noise strategies would show
    psr: float                 # P(true Sharpe > 0)
    dsr: float                 # P(true Sharpe > expected_max)
    n_returns: int

    def summary(self) -> str:
        if not math.isfinite(self.dsr):
            return "Deflated Sharpe undefined (no return variation)"
        return (f"Best of {self.n_trials} parameter sets: Sharpe (ann.) {self.sharpe:.2f}; luck alone would give "
                f"about {self.expected_max:.2f}; deflated Sharpe {self.dsr:.0%} "
                f"(probability the true Sharpe beats that; {self.psr:.0%} that it beats 0)")

    def __str__(self) -> str:
        return self.summary()


def deflated_sharpe(returns: pd.Series | np.ndarray, periods_per_year: float, n_trials: int, *,
                    trial_sharpes: np.ndarray | list[float] | None = None) -> DeflatedSharpe:
    """Deflated Sharpe ratio of `returns` (the chosen parameter set's bar returns) after a search over
    `n_trials` sets. `trial_sharpes`: the annualized Sharpe ratios of all trials (their variance gives V);
    without them V = 1 / T (noise trials)."""
    q = check_positive_number(periods_per_year, "periods_per_year")
    if isinstance(n_trials, bool) or int(n_trials) != n_trials or n_trials < 1:
        raise ValueError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    n_trials = int(n_trials)
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    n = int(r.size)
    nan = DeflatedSharpe(math.nan, n_trials, math.nan, math.nan, math.nan, math.nan, n)
    if n < 3:
        return nan
    mean, sd, g3, g4 = _moments(r)
    if not sd > 0:
        return nan
    sr = mean / sd
    if trial_sharpes is not None:
        ts = np.asarray(trial_sharpes, dtype=np.float64)
        ts = ts[np.isfinite(ts)] / math.sqrt(q)
        variance = float(ts.var(ddof=1)) if ts.size > 1 else 1.0 / n
    else:
        variance = 1.0 / n
    sr0 = expected_max_sharpe(n_trials, variance)
    denom = math.sqrt(max(1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr**2, 1e-300))
    psr = float(_st.norm.cdf(sr * math.sqrt(n - 1) / denom))
    dsr = float(_st.norm.cdf((sr - sr0) * math.sqrt(n - 1) / denom))
    scale = math.sqrt(q)
    return DeflatedSharpe(sr * scale, n_trials, math.sqrt(variance) * scale, sr0 * scale, psr, dsr, n)


def buy_and_hold(prices: pd.DataFrame, capital: float) -> pd.DataFrame:
    """Equity of putting all `capital` into each column at its first price and holding (one column each)."""
    capital = check_positive_number(capital, "capital")
    p = prices.astype(np.float64)
    if len(p) == 0:
        return p
    if (p.iloc[0] <= 0).any() or p.iloc[0].isna().any():
        raise ValueError("buy-and-hold needs a positive first price in every column")
    return capital * p / p.iloc[0]


@dataclass(frozen=True)
class SampleInfo:
    """What a set of statistics rests on: bars, returns, trades, clock span and the annualization factor."""

    n_bars: int
    n_trades: int | None
    span: pd.Timedelta | None
    bar: pd.Timedelta | None
    periods_per_year: float | None

    def summary(self) -> str:
        parts = [f"{self.n_bars:,} bars"]
        if self.bar is not None and not pd.isna(self.bar):
            parts[0] += f" of {span_words(self.bar)}"
        if self.span is not None and not pd.isna(self.span):
            parts.append(f"over {span_words(self.span)}")
        if self.n_trades is not None:
            parts.append(f"{self.n_trades} trade{'s' if self.n_trades != 1 else ''}")
        if self.periods_per_year:
            parts.append(f"annualized × √({self.periods_per_year:,.0f} bars per year)")
        return ", ".join(parts)

    def withheld(self, rule: SampleRule = RULE) -> dict[str, str]:
        """Statistic key -> why it is withheld under `rule` (empty when everything may be shown)."""
        out = {}
        why = rule.annualized(self.n_bars, self.n_trades, self.span)
        if why:
            out["sharpe"] = why
        if self.n_trades is not None:
            why = rule.trades(self.n_trades, "a hit rate")
            if why:
                out["hit_rate"] = why
        return out


def sample_info(index: pd.Index, n_trades: int | None, periods_per_year: float | None,
                bar: pd.Timedelta | None = None) -> SampleInfo:
    """`SampleInfo` of bars on `index`: clock span from a DatetimeIndex, else bars x `bar`."""
    n = len(index)
    if isinstance(index, pd.DatetimeIndex) and n > 1:
        span = pd.Timedelta(index[-1] - index[0])
        if bar is None:
            bar = pd.Timedelta(np.min(np.diff(index.as_unit("ns").asi8)), "ns")
    elif bar is not None and n > 1:
        span = bar * (n - 1)
    else:
        span = None
    return SampleInfo(n, n_trades, span, bar, periods_per_year)
