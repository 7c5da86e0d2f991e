"""Ornstein-Uhlenbeck fit of a spread and the entry / exit thresholds it suggests for a given cost.

Model: dX = -theta (X - mu) dt + sigma dW, time in bars. Sampled every bar it is exactly an AR(1),
X_{t+1} = a + phi X_t + e, phi = exp(-theta), mu = a / (1 - phi), Var(e) = sigma^2 (1 - phi^2) / (2 theta);
`fit_ou` is the conditional maximum-likelihood fit (OLS of X_{t+1} on X_t, residual variance / n).
The stationary standard deviation is sigma_eq = sigma / sqrt(2 theta); z = (X - mu) / sigma_eq.

Thresholds, with c the cost of one round trip in spread units (entry and exit, both legs):
- `bertram`: Bertram (2010, Physica A 389, "Analytic solutions for optimal statistical arbitrage trading"):
  enter long at mu + a, exit at mu + m (and the mirror trade), expected cycle time
  E[T] = (pi / theta) (erfi(m sqrt(theta) / sigma) - erfi(a sqrt(theta) / sigma)), expected return per unit
  time (m - a - c) / E[T], maximized at a = -m with
  exp(theta m^2 / sigma^2) (2 m - c) = sigma sqrt(pi / theta) erfi(m sqrt(theta) / sigma).
  That is his one-directional strategy (flat on the way back); traded in both directions (long from -m to +m,
  then short back to -m) the return per bar doubles and a trade lasts E[T] / 2 on average, at the same m.
- `band_return_rate` / `optimal_band`: the same return-per-time criterion for this desk's rule (enter at
  |z| = entry, exit at |z| = exit on the same side, 0 <= exit < entry, then flat until |z| reaches entry
  again), from first-passage times of the OU (scale and speed densities). Stops are not modelled.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special

from quantlib._validate import as_series, check_positive_number

MIN_OBS = 30
MIN_HALF_LIVES = 4  # a fit whose half-life exceeds a quarter of the sample rests on too few reversions


@dataclass(frozen=True)
class OUFit:
    """An OU fit of a series (time unit: one bar). `theta`/`half_life` are NaN when the series does not mean-revert
    (AR(1) coefficient outside (0, 1))."""

    theta: float          # mean-reversion speed per bar
    mu: float             # long-run mean
    sigma: float          # diffusion per sqrt(bar)
    sigma_eq: float       # stationary standard deviation, sigma / sqrt(2 theta)
    phi: float            # AR(1) coefficient exp(-theta)
    half_life: float      # bars, ln 2 / theta
    n: int
    bar: pd.Timedelta | None = None

    @property
    def mean_reverting(self) -> bool:
        return math.isfinite(self.theta) and self.theta > 0

    @property
    def problem(self) -> str | None:
        """Why no thresholds should be derived from this fit (None when they may)."""
        if not self.mean_reverting:
            return (f"the spread does not mean-revert in this sample (AR(1) coefficient {self.phi:.4f}); "
                    "no OU thresholds")
        if self.half_life * MIN_HALF_LIVES > self.n:
            return (f"the fitted half-life ({self.half_life:.0f} bars) is over a quarter of the {self.n} bars: "
                    "too few reversions to trust OU thresholds; pick a longer lookback")
        return None

    @property
    def half_life_time(self) -> pd.Timedelta | None:
        if self.bar is None or not self.mean_reverting:
            return None
        return self.bar * self.half_life

    def summary(self) -> str:
        if not self.mean_reverting:
            return f"OU fit on {self.n} bars: not mean-reverting (AR(1) coefficient {self.phi:.4f})"
        return (f"OU fit on {self.n} bars: theta {self.theta:.4g}/bar (half-life {self.half_life:.1f} bars), "
                f"mu {self.mu:.6g}, sigma {self.sigma:.4g}, stationary std {self.sigma_eq:.4g}")

    def __str__(self) -> str:
        return self.summary()


def fit_ou(x: pd.Series | np.ndarray, bar: pd.Timedelta | None = None) -> OUFit:
    """Conditional maximum-likelihood OU fit (exact AR(1) discretization, one bar = one time unit)."""
    s = as_series(x, "spread", min_len=MIN_OBS)
    v = s.to_numpy(dtype=np.float64)
    x0, x1 = v[:-1], v[1:]
    m0, m1 = x0.mean(), x1.mean()
    sxx = float(np.sum((x0 - m0) ** 2))
    if sxx <= 0:
        raise ValueError("the spread is constant; an OU fit needs a varying series")
    phi = float(np.sum((x0 - m0) * (x1 - m1)) / sxx)
    a = m1 - phi * m0
    resid = x1 - a - phi * x0
    s2 = float(np.mean(resid**2))
    if not 0 < phi < 1:
        return OUFit(math.nan, math.nan, math.nan, math.nan, phi, math.nan, len(v), bar)
    theta = -math.log(phi)
    sigma = math.sqrt(s2 * 2 * theta / (1 - phi**2))
    return OUFit(theta, a / (1 - phi), sigma, sigma / math.sqrt(2 * theta), phi, math.log(2) / theta, len(v), bar)


def _check(ou: OUFit) -> None:
    if ou.problem:
        raise ValueError(ou.problem)


def bertram_cycle_time(ou: OUFit, a: float, m: float) -> float:
    """Bertram's expected time (bars) from entry a up to exit m and back to a (a < m, offsets from mu)."""
    _check(ou)
    k = math.sqrt(ou.theta) / ou.sigma
    return math.pi / ou.theta * float(special.erfi(m * k) - special.erfi(a * k))


def bertram_return_rate(ou: OUFit, a: float, m: float, cost: float) -> float:
    """Bertram's expected return per bar (spread units) of entering at a and exiting at m."""
    return (m - a - cost) / bertram_cycle_time(ou, a, m)


@dataclass(frozen=True)
class Thresholds:
    """Entry / exit levels as offsets from the OU mean (spread units) and in stationary z units."""

    rule: str              # "bertram" (flip at the opposite band) | "band" (exit on the entry side)
    entry: float           # enter short at mu + entry, long at mu - entry
    exit: float            # bertram: -entry (the opposite band); band: exit at mu +- exit on the same side
    entry_z: float
    exit_z: float
    cost: float            # round-trip cost in spread units
    return_per_bar: float  # expected, spread units per bar (per unit of spread held), both directions traded
    cycle_bars: float      # expected bars from one entry to the next
    ou: OUFit

    @property
    def trades_per_day(self) -> float | None:
        if self.ou.bar is None or not self.cycle_bars > 0:
            return None
        return pd.Timedelta(days=1) / (self.ou.bar * self.cycle_bars)

    def summary(self) -> str:
        where = ("exit (and reverse) at the opposite band" if self.rule == "bertram"
                 else f"exit at |z| {self.exit_z:.2f}")
        return (f"{'Bertram' if self.rule == 'bertram' else 'Best band'} for cost {self.cost:.4g}: enter at "
                f"|z| {self.entry_z:.2f} ({self.entry:.4g} from the mean), {where}; expected "
                f"{self.return_per_bar:.4g} per bar, one cycle per {self.cycle_bars:.1f} bars")

    def __str__(self) -> str:
        return self.summary()


def bertram(ou: OUFit, cost: float) -> Thresholds:
    """Bertram's return-maximizing symmetric thresholds for round-trip cost `cost` (spread units)."""
    _check(ou)
    cost = check_positive_number(cost, "cost", allow_zero=True)
    k = math.sqrt(ou.theta) / ou.sigma
    c = cost * k  # dimensionless: u = m k solves exp(u^2) (2u - c) = sqrt(pi) erfi(u)

    def f(u: float) -> float:
        return math.exp(u * u) * (2 * u - c) - math.sqrt(math.pi) * float(special.erfi(u))

    if c == 0:
        u = 0.0  # without costs the return rate grows as the band shrinks: trade every tick
    else:
        lo, hi = c / 2, max(c, 1.0)
        while f(hi) <= 0:
            hi *= 2
            if hi > 25:
                raise ValueError(f"cost {cost:g} is too large against the spread's variation for any profitable band")
        u = optimize.brentq(f, lo, hi, xtol=1e-12)
    m = u / k
    if m == 0:
        return Thresholds("bertram", 0.0, 0.0, 0.0, 0.0, cost, math.inf if cost == 0 else -math.inf, 0.0, ou)
    # long -m -> +m then short +m -> -m: two trades per Bertram cycle
    return Thresholds("bertram", m, -m, m / ou.sigma_eq, -m / ou.sigma_eq, cost,
                      2 * bertram_return_rate(ou, -m, m, cost), bertram_cycle_time(ou, -m, m) / 2, ou)


# ---------------------------------------------------------------- first-passage times of the desk's band rule
# Dimensionless OU: V = (X - mu) sqrt(theta) / sigma follows dV = -V dt' + dW' with t' = theta t, so z = V sqrt(2).
# Scale density s(v) = exp(v^2), speed density m(v) = 2 exp(-v^2), scale function S(v) = sqrt(pi)/2 erfi(v).
_V = np.linspace(-6.0, 6.0, 24_001)


def _cumulative(f: np.ndarray) -> np.ndarray:
    out = np.zeros_like(f)
    out[1:] = np.cumsum((f[1:] + f[:-1]) / 2) * (_V[1] - _V[0])
    return out


_S = np.sqrt(np.pi) / 2 * special.erfi(_V)
_M = 2 * np.exp(-_V**2)
_A = _cumulative(_M)                 # int m
_B = _cumulative(_S * _M)            # int S m
# one-sided passage upward: E[tau_{x->y}] = F(y) - F(x), F' = s(v) int_{-inf}^v m = e^{v^2} sqrt(pi) (1 + erf v)
_F = _cumulative(np.exp(_V**2) * np.sqrt(np.pi) * special.erfc(-_V))


def _at(table: np.ndarray, v):
    return np.interp(v, _V, table)


def _passage_up(x, y):
    """Expected dimensionless time for V to go from x up to y (x <= y)."""
    return _at(_F, y) - _at(_F, x)


def _exit_interval(x, lo, hi):
    """Expected dimensionless time for V started at x to leave (lo, hi) (Green's function of the generator)."""
    s_x, s_l, s_r = _at(_S, x), _at(_S, lo), _at(_S, hi)
    a_x, a_l, a_r = _at(_A, x), _at(_A, lo), _at(_A, hi)
    b_x, b_l, b_r = _at(_B, x), _at(_B, lo), _at(_B, hi)
    left = (b_x - b_l) - s_l * (a_x - a_l)        # int_l^x (S(z) - S(l)) m(z) dz
    right = s_r * (a_r - a_x) - (b_r - b_x)       # int_x^r (S(r) - S(z)) m(z) dz
    return ((s_r - s_x) * left + (s_x - s_l) * right) / (s_r - s_l)


def band_cycle_bars(ou: OUFit, entry_z, exit_z):
    """Expected bars per cycle of the desk's rule: in a trade from |z| = entry to |z| = exit, then flat until
    |z| = entry again (arrays broadcast)."""
    _check(ou)
    ve, vx = np.asarray(entry_z, float) / math.sqrt(2), np.asarray(exit_z, float) / math.sqrt(2)
    return (_passage_up(-ve, -vx) + _exit_interval(-vx, -ve, ve)) / ou.theta


def band_return_rate(ou: OUFit, entry_z, exit_z, cost: float):
    """Expected spread units per bar of the desk's rule (entry / exit in stationary z units), cost per round
    trip in spread units; NaN where exit >= entry."""
    ez, xz = np.asarray(entry_z, float), np.asarray(exit_z, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = ((ez - xz) * ou.sigma_eq - cost) / band_cycle_bars(ou, ez, xz)
    return np.where((xz >= 0) & (xz < ez) & (ez < 6 * math.sqrt(2)), rate, np.nan)


def optimal_band(ou: OUFit, cost: float, max_entry_z: float = 4.0) -> Thresholds:
    """The (entry, exit) of the desk's rule with the highest expected return per bar (grid of 0.01 z, then
    refined), for round-trip cost `cost` in spread units."""
    _check(ou)
    cost = check_positive_number(cost, "cost", allow_zero=True)
    ez, xz = np.meshgrid(np.arange(0.05, max_entry_z + 1e-9, 0.05), np.arange(0.0, max_entry_z, 0.05))
    rate = band_return_rate(ou, ez, xz, cost)
    i = np.unravel_index(np.nanargmax(rate), rate.shape)
    x0 = np.array([ez[i], xz[i]])

    def neg(p: np.ndarray) -> float:
        r = band_return_rate(ou, p[0], max(p[1], 0.0), cost)
        return -float(r) if np.isfinite(r) else 1e300

    res = optimize.minimize(neg, x0, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-12})
    e, x = (res.x if res.fun <= neg(x0) else x0)
    e, x = float(e), max(float(x), 0.0)
    return Thresholds("band", e * ou.sigma_eq, x * ou.sigma_eq, e, x, cost, float(band_return_rate(ou, e, x, cost)),
                      float(band_cycle_bars(ou, e, x)), ou)
