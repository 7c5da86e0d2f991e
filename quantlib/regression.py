"""Hedge ratios: static (OLS / Huber / Theil-Sen / TLS), rolling, and a Kalman-filtered time-varying one.

The model is y_t = alpha + beta * x_t + e_t (alpha = 0 with `add_const=False`).

- ols: least squares. R² is centred with a constant and uncentred without (statsmodels' convention).
- huber: statsmodels RLM with Huber's T norm (t = 1.345) and its default "MAD" scale, which is the median
  absolute residual about **zero**, not about the residuals' median (`HedgeRatio.scale`); robust to
  outliers in y.
- theil_sen: median of pairwise slopes; intercept median(y) - beta * median(x) (scipy.stats.theilslopes).
  Exact while n(n-1)/2 <= `max_pairs` (default 250 000, n ≈ 700), otherwise the median over a seeded
  random sample of `max_pairs` pairs (a consistent estimate of the same median). Without a constant,
  beta = median(y_i / x_i).
- tls: total least squares (orthogonal regression) via SVD of the centred [x, y] matrix: errors in both
  legs are treated alike. Not scale-invariant: rescaling one leg changes beta beyond the rescale.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from quantlib._blas import single_threaded
from quantlib._validate import as_pair, check_choice, check_min, check_positive_number, check_window

METHODS = ("ols", "huber", "theil_sen", "tls")
MIN_OBS = 3


@dataclass(frozen=True)
class HedgeRatio:
    """A static hedge ratio y = alpha + beta * x + residual."""

    method: str
    beta: float
    alpha: float
    add_const: bool
    residuals: pd.Series = field(repr=False)
    r_squared: float
    nobs: int
    beta_stderr: float = math.nan  # OLS / Huber only
    # Huber: the robust residual scale of the final fit, statsmodels RLM's MAD of the residuals about
    # **zero** (not about their median), / 0.6745; NaN for the other methods
    scale: float = math.nan

    def summary(self) -> str:
        const = f"{self.alpha:+.6g} " if self.add_const else ""
        se = f" (se {self.beta_stderr:.3g})" if np.isfinite(self.beta_stderr) else ""
        return (f"Hedge ratio [{self.method}]: y = {const}{self.beta:.6g}{se} * x, "
                f"R² {self.r_squared:.4f}, n = {self.nobs}")

    def __str__(self) -> str:
        return self.summary()


def _r_squared(y: np.ndarray, resid: np.ndarray, centred: bool) -> float:
    tss = float(np.sum((y - y.mean()) ** 2)) if centred else float(np.dot(y, y))
    return 1.0 - float(np.dot(resid, resid)) / tss if tss > 0 else math.nan


def _ols(y: np.ndarray, x: np.ndarray, add_const: bool) -> tuple[float, float, float]:
    """(alpha, beta, se(beta))."""
    n = y.shape[0]
    if add_const:
        mx, my = x.mean(), y.mean()
        xc, yc = x - mx, y - my
        sxx = float(np.dot(xc, xc))
        if sxx == 0 or np.ptp(x) == 0:  # ptp: the mean of a constant need not be exact (x - mean != 0)
            raise ValueError("x is constant; the hedge ratio is undefined")
        beta = float(np.dot(xc, yc)) / sxx
        alpha = my - beta * mx
        resid = yc - beta * xc
        dof = n - 2
    else:
        sxx = float(np.dot(x, x))
        if sxx == 0:
            raise ValueError("x is all zeros; the hedge ratio is undefined")
        beta, alpha = float(np.dot(x, y)) / sxx, 0.0
        resid = y - beta * x
        dof = n - 1
    se = math.sqrt(float(np.dot(resid, resid)) / dof / sxx) if dof > 0 else math.nan
    return alpha, beta, se


def _huber_fit(y: np.ndarray, x: np.ndarray, add_const: bool):
    from statsmodels.robust.norms import HuberT  # not statsmodels.api: it imports every model (~1 s)
    from statsmodels.robust.robust_linear_model import RLM

    exog = np.column_stack([np.ones_like(x), x]) if add_const else x[:, None]
    return RLM(y, exog, M=HuberT()).fit()  # scale_est "mad": MAD about zero, statsmodels' default


def _huber(y: np.ndarray, x: np.ndarray, add_const: bool) -> tuple[float, float, float]:
    res = _huber_fit(y, x, add_const)
    params, bse = np.asarray(res.params), np.asarray(res.bse)
    if add_const:
        return float(params[0]), float(params[1]), float(bse[1])
    return 0.0, float(params[0]), float(bse[0])


def _theil_sen(y: np.ndarray, x: np.ndarray, add_const: bool, max_pairs: int, seed: int) -> tuple[float, float, float]:
    n = y.shape[0]
    if not add_const:
        nz = x != 0
        if not nz.any():
            raise ValueError("x is all zeros; the hedge ratio is undefined")
        return 0.0, float(np.median(y[nz] / x[nz])), math.nan
    if n * (n - 1) // 2 <= max_pairs:
        i, j = np.triu_indices(n, k=1)
    else:
        rng = np.random.default_rng(seed)
        i = rng.integers(0, n, size=max_pairs)
        j = rng.integers(0, n - 1, size=max_pairs)
        j = j + (j >= i)  # j != i, uniform over the other n-1 points
    dx = x[j] - x[i]
    ok = dx != 0
    if not ok.any():
        raise ValueError("x is constant; the hedge ratio is undefined")
    beta = float(np.median((y[j] - y[i])[ok] / dx[ok]))
    alpha = float(np.median(y) - beta * np.median(x))
    return alpha, beta, math.nan


def _tls(y: np.ndarray, x: np.ndarray, add_const: bool) -> tuple[float, float, float]:
    if add_const and np.ptp(x) == 0:
        raise ValueError("x is constant; the hedge ratio is undefined")
    mx, my = (x.mean(), y.mean()) if add_const else (0.0, 0.0)
    _, _, vt = np.linalg.svd(np.column_stack([x - mx, y - my]), full_matrices=False)
    vx, vy = vt[-1]  # direction of least variance: vx * x + vy * y = 0
    if vy == 0:
        raise ValueError("total least squares line is vertical (y does not vary with x)")
    beta = float(-vx / vy)
    return float(my - beta * mx), beta, math.nan


@single_threaded
def hedge_ratio(
    y: pd.Series | np.ndarray,
    x: pd.Series | np.ndarray,
    method: str = "ols",
    add_const: bool = True,
    *,
    max_pairs: int = 250_000,
    seed: int = 0,
) -> HedgeRatio:
    """Static hedge ratio of y on x by `method` (see the module docstring)."""
    check_choice(method, "method", METHODS)
    ys, xs = as_pair(y, x, min_len=MIN_OBS)
    yv, xv = ys.to_numpy(), xs.to_numpy()
    scale = math.nan
    if method == "ols":
        alpha, beta, se = _ols(yv, xv, add_const)
    elif method == "huber":
        if np.ptp(xv) == 0:
            raise ValueError("x is constant; the hedge ratio is undefined")
        fitted = _huber_fit(yv, xv, add_const)
        params, bse = np.asarray(fitted.params), np.asarray(fitted.bse)
        alpha, beta, se = (float(params[0]), float(params[1]), float(bse[1])) if add_const \
            else (0.0, float(params[0]), float(bse[0]))
        scale = float(fitted.scale)
    elif method == "theil_sen":
        alpha, beta, se = _theil_sen(yv, xv, add_const, check_window(max_pairs, "max_pairs", 1), seed)
    else:
        alpha, beta, se = _tls(yv, xv, add_const)
    resid = yv - alpha - beta * xv
    return HedgeRatio(
        method=method,
        beta=beta,
        alpha=alpha,
        add_const=bool(add_const),
        residuals=pd.Series(resid, index=ys.index, name="residual"),
        r_squared=_r_squared(yv, resid, centred=add_const),
        nobs=yv.shape[0],
        beta_stderr=se,
        scale=scale,
    )


def _tls_slope(sxx: np.ndarray, syy: np.ndarray, sxy: np.ndarray) -> np.ndarray:
    """Orthogonal-regression slope from second moments, in the cancellation-free form for each sign."""
    d = syy - sxx
    root = np.sqrt(d * d + 4.0 * sxy * sxy)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d >= 0, (d + root) / (2.0 * sxy), (2.0 * sxy) / (root - d))


@single_threaded
def rolling_hedge_ratio(
    y: pd.Series | np.ndarray,
    x: pd.Series | np.ndarray,
    window: int,
    method: str = "ols",
    add_const: bool = True,
    *,
    step: int = 1,
) -> pd.DataFrame:
    """Hedge ratio over each trailing `window` bars (ending at and including t), indexed like y.

    ols and tls are closed forms over pandas' rolling (co)variances: O(n), fast at 100k bars. huber and
    theil_sen refit every `step` bars in a loop (O(n / step) fits; use a step or a few thousand bars)
    and carry the last fit forward, so each row still only uses data up to its own bar.
    Columns `alpha`, `beta`; NaN for the first window - 1 bars.
    """
    check_choice(method, "method", METHODS)
    window = check_window(window, "window", MIN_OBS)
    step = check_window(step, "step", 1)
    ys, xs = as_pair(y, x, min_len=window)
    n = len(ys)
    if method in ("ols", "tls"):
        if step != 1:
            raise ValueError(f"step applies to huber / theil_sen only; {method} is computed at every bar")
        if add_const:
            rx, ry = xs.rolling(window, min_periods=window), ys.rolling(window, min_periods=window)
            sxx = rx.var(ddof=0).to_numpy()
            sxy = rx.cov(ys, ddof=0).to_numpy()
            mx, my = rx.mean().to_numpy(), ry.mean().to_numpy()
        else:
            sxx = (xs * xs).rolling(window, min_periods=window).sum().to_numpy()
            sxy = (xs * ys).rolling(window, min_periods=window).sum().to_numpy()
            mx = my = np.zeros(n)
        with np.errstate(divide="ignore", invalid="ignore"):
            if method == "ols":
                beta = np.where(sxx > 0, sxy / sxx, np.nan)
            else:
                syy = (ry.var(ddof=0) if add_const
                       else (ys * ys).rolling(window, min_periods=window).sum()).to_numpy()
                beta = _tls_slope(sxx, syy, sxy)
        alpha = my - beta * mx
    else:
        yv, xv = ys.to_numpy(), xs.to_numpy()
        alpha, beta = np.full(n, np.nan), np.full(n, np.nan)
        fit = _huber if method == "huber" else (lambda a, b, c: _theil_sen(a, b, c, 250_000, 0))
        last = (np.nan, np.nan)
        for end in range(window, n + 1):
            if (end - window) % step == 0:
                yw, xw = yv[end - window : end], xv[end - window : end]
                last = fit(yw, xw, add_const)[:2] if np.ptp(xw) > 0 else (np.nan, np.nan)
            alpha[end - 1], beta[end - 1] = last
    if not add_const:
        alpha = np.where(np.isnan(beta), np.nan, 0.0)
    return pd.DataFrame({"alpha": alpha, "beta": beta}, index=ys.index)


@single_threaded
def expanding_hedge_ratio(
    y: pd.Series | np.ndarray,
    x: pd.Series | np.ndarray,
    min_periods: int,
    method: str = "ols",
    add_const: bool = True,
    *,
    step: int | None = None,
) -> pd.DataFrame:
    """Hedge ratio fitted on all bars up to and including t (an expanding window), indexed like y: the
    static fit as it would have been known at each bar, so a spread built from it has no look-ahead.

    ols and tls are closed forms over cumulative moments (O(n)); huber and theil_sen refit every `step`
    bars, by default each time the sample has doubled (at min_periods, 2x, 4x, ... bars: the cost of about
    two full fits), and carry the last fit forward. The last row equals `hedge_ratio(y, x, method)`.
    Columns `alpha`, `beta`; NaN for the first min_periods - 1 bars.
    """
    check_choice(method, "method", METHODS)
    min_periods = check_window(min_periods, "min_periods", MIN_OBS)
    ys, xs = as_pair(y, x, min_len=min_periods)
    yv, xv = ys.to_numpy(), xs.to_numpy()
    n = yv.shape[0]
    alpha, beta = np.full(n, np.nan), np.full(n, np.nan)
    if method in ("ols", "tls"):
        # moments about the first point (less cancellation at large price levels)
        dx, dy = (xv - xv[0], yv - yv[0]) if add_const else (xv, yv)
        k = np.arange(1, n + 1, dtype=float)
        sx, sy = np.cumsum(dx), np.cumsum(dy)
        sxx, sxy, syy = np.cumsum(dx * dx), np.cumsum(dx * dy), np.cumsum(dy * dy)
        if add_const:
            mx, my = sx / k, sy / k
            sxx, sxy, syy = sxx - sx * mx, sxy - sx * my, syy - sy * my
        with np.errstate(divide="ignore", invalid="ignore"):
            if method == "ols":
                # x must have moved by bar t (exactly: a rounding-level sxx of a constant is not variance)
                moved = np.maximum.accumulate(np.r_[False, xv[1:] != xv[0]]) if add_const else sxx > 0
                beta = np.where(moved & (sxx > 0), sxy / sxx, np.nan)
            else:
                beta = _tls_slope(sxx, syy, sxy)
        alpha = (yv[0] + my - beta * (xv[0] + mx)) if add_const else np.where(np.isnan(beta), np.nan, 0.0)
        alpha[: min_periods - 1] = beta[: min_periods - 1] = np.nan
    else:
        if step is None:  # refit each time the sample has doubled: ~log2(n / min_periods) fits, ~2 full ones
            ends = {n}
            end = min_periods
            while end < n:
                ends.add(end)
                end *= 2
        else:
            ends = set(range(min_periods, n + 1, check_window(step, "step", 1))) | {n}
        fit = _huber if method == "huber" else (lambda a, b, c: _theil_sen(a, b, c, 250_000, 0))
        last = (np.nan, np.nan)
        for end in range(min_periods, n + 1):
            if end in ends:
                yw, xw = yv[:end], xv[:end]
                last = fit(yw, xw, add_const)[:2] if np.ptp(xw) > 0 else (np.nan, np.nan)
            alpha[end - 1], beta[end - 1] = last
    return pd.DataFrame({"alpha": alpha, "beta": beta}, index=ys.index)


@dataclass(frozen=True)
class KalmanHedge:
    """Time-varying hedge ratio from a Kalman filter (random-walk state, see `kalman_hedge_ratio`)."""

    alpha: pd.Series = field(repr=False)   # filtered alpha_t|t (uses data up to t)
    beta: pd.Series = field(repr=False)    # filtered beta_t|t
    spread: pd.Series = field(repr=False)  # innovation y_t - (alpha + beta x_t) with the t-1 estimate
    spread_std: pd.Series = field(repr=False)  # sqrt of the innovation variance S_t
    zscore: pd.Series = field(repr=False)  # spread / spread_std
    delta: float
    obs_var: float
    state_var: tuple[float, ...]
    warmup: int
    add_const: bool

    def summary(self) -> str:
        b = self.beta.dropna()
        last = f"last beta {b.iloc[-1]:.6g}" if len(b) else "no estimate"
        return (f"Kalman hedge ratio: delta {self.delta:g}, obs_var {self.obs_var:.4g}, "
                f"state_var ({', '.join(f'{v:.3g}' for v in self.state_var)}), warm-up {self.warmup} bars, {last}")

    def __str__(self) -> str:
        return self.summary()


def _kalman_loop(yv, xv, start, theta, p, q, r):
    """Filter y_t = a_t + b_t x_t + v_t, (a, b) random walk; scalar 2x2 algebra (fast in CPython)."""
    a, b = theta
    p00, p01, p11 = p
    q0, q1 = q
    n = len(yv)
    out_a, out_b, out_e, out_s = [math.nan] * n, [math.nan] * n, [math.nan] * n, [math.nan] * n
    for i in range(start, n):
        xi = xv[i]
        p00 += q0
        p11 += q1
        e = yv[i] - a - b * xi
        ph0 = p00 + p01 * xi
        ph1 = p01 + p11 * xi
        s = ph0 + ph1 * xi + r
        k0 = ph0 / s
        k1 = ph1 / s
        a += k0 * e
        b += k1 * e
        p00 -= k0 * ph0
        p01 -= k0 * ph1
        p11 -= k1 * ph1
        out_a[i] = a
        out_b[i] = b
        out_e[i] = e
        out_s[i] = s
    return out_a, out_b, out_e, out_s


def _kalman_loop_noconst(yv, xv, start, b, p, q, r):
    n = len(yv)
    out_b, out_e, out_s = [math.nan] * n, [math.nan] * n, [math.nan] * n
    for i in range(start, n):
        xi = xv[i]
        p += q
        e = yv[i] - b * xi
        s = p * xi * xi + r
        k = p * xi / s
        b += k * e
        p -= k * xi * p
        out_b[i] = b
        out_e[i] = e
        out_s[i] = s
    return out_b, out_e, out_s


@single_threaded
def kalman_hedge_ratio(
    y: pd.Series | np.ndarray,
    x: pd.Series | np.ndarray,
    delta: float = 1e-4,
    obs_var: float | None = None,
    *,
    state_var: float | tuple[float, float] | None = None,
    warmup: int = 50,
    add_const: bool = True,
) -> KalmanHedge:
    """Kalman-filtered alpha_t, beta_t with random-walk states (Chan, *Algorithmic Trading*, 2013, §3.3).

    State (alpha_t, beta_t) = previous + w_t, w_t ~ N(0, Q). Observation y_t = alpha_t + beta_t x_t + v_t,
    v_t ~ N(0, obs_var); by default obs_var is the OLS residual variance of the first `warmup` bars.
    Q is **relative to the data** by default: with q = delta / (1 - delta),
    Q = diag(q * obs_var, q * obs_var / mean(x_w^2)) (x_w: the warm-up x), i.e. each step of either state
    moves the fitted y by about sqrt(q) observation standard deviations. The filter then gives the same
    z-scores at any price level or unit (BTC at 92,000 or a 1e-8 coin) and its memory is roughly 1/sqrt(q)
    bars (100 for the default delta 1e-4). Chan's absolute convention (Q = q in the units of alpha and
    beta) is `state_var=delta / (1 - delta)`; `state_var` (one value or (alpha, beta)) is always absolute. The prior (state and covariance) is that OLS fit, and
    filtering starts at bar `warmup`: outputs are NaN before it, and each later value uses data up to its
    bar only. `spread` is the innovation y_t - alpha_{t|t-1} - beta_{t|t-1} x_t (a one-step forecast
    error, so it is free of look-ahead); `zscore` divides it by its predicted standard deviation.
    """
    delta = check_positive_number(delta, "delta")
    if delta >= 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    warmup = check_window(warmup, "warmup", 3 if add_const else 2)
    ys, xs = as_pair(y, x)
    check_min(len(ys), warmup + 1, f"observations (warmup {warmup} + 1)")
    yv, xv = ys.to_numpy(), xs.to_numpy()
    yw, xw = yv[:warmup], xv[:warmup]
    alpha0, beta0, se_beta = _ols(yw, xw, add_const)
    resid = yw - alpha0 - beta0 * xw
    dof = warmup - (2 if add_const else 1)
    # a perfect warm-up fit leaves no residual variance: floor it relative to y's level (scale-free)
    s2 = max(float(np.dot(resid, resid)) / dof, (1e-8 * float(np.max(np.abs(yw)))) ** 2, np.finfo(float).tiny)
    if obs_var is None:
        obs_var = s2
    else:
        obs_var = check_positive_number(obs_var, "obs_var")
    q = delta / (1.0 - delta)
    if state_var is None:
        # relative to the data: each state's random-walk step moves the fitted y by ~sqrt(q) observation sds
        # (alpha directly, beta through x of mean square mean(x_w^2)), so the filter is the same at any price
        # level and in any units
        qa, qb = q * obs_var, q * obs_var / max(float(np.mean(xw * xw)), np.finfo(float).tiny)
    elif np.ndim(state_var) == 0:
        qa = qb = check_positive_number(state_var, "state_var", allow_zero=True)
    else:
        qa, qb = (check_positive_number(v, "state_var", allow_zero=True) for v in state_var)  # type: ignore[union-attr]

    idx = ys.index
    if add_const:
        # prior covariance: OLS covariance of (alpha, beta) on the warm-up window
        mx = xw.mean()
        sxx = float(np.sum((xw - mx) ** 2))
        var_b = s2 / sxx
        p0 = (s2 / warmup + mx * mx * var_b, -mx * var_b, var_b)
        a, b, e, s = _kalman_loop(yv.tolist(), xv.tolist(), warmup, (alpha0, beta0), p0, (qa, qb), obs_var)
        state = (qa, qb)
    else:
        b, e, s = _kalman_loop_noconst(yv.tolist(), xv.tolist(), warmup, beta0, se_beta ** 2, qb, obs_var)
        a = np.where(np.arange(len(yv)) >= warmup, 0.0, np.nan)
        state = (qb,)
    e_arr, sd = np.asarray(e), np.sqrt(np.asarray(s))
    return KalmanHedge(
        alpha=pd.Series(np.asarray(a, dtype=float), index=idx, name="alpha"),
        beta=pd.Series(np.asarray(b), index=idx, name="beta"),
        spread=pd.Series(e_arr, index=idx, name="spread"),
        spread_std=pd.Series(sd, index=idx, name="spread_std"),
        zscore=pd.Series(e_arr / sd, index=idx, name="zscore"),
        delta=delta,
        obs_var=float(obs_var),
        state_var=state,
        warmup=warmup,
        add_const=bool(add_const),
    )
