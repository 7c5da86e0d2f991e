"""Batched Engle-Granger pair screen: a frame of closes in, one row per unordered pair out.

Per pair (on the bars where both legs have a close): Engle-Granger statistic and p-value (equal to
`stattests.engle_granger` on the same bars), Benjamini-Hochberg q-value over every pair tested, OLS hedge
ratio, half-life and Hurst exponent of the spread (equal to `stattests.half_life` / `stattests.hurst`),
correlation of log returns, bar count, the same test on each half of the window, and a verdict in words.

How it is fast. The residual ADF regresses Δe_t on e_t and Δe_{t-1..t-L}; with every candidate lag fitted
on one common sample (as statsmodels does), one Gram matrix per pair gives every lag's OLS by Cholesky of
its leading blocks. The Gram entries are lagged cross-products of e = ỹ - b·x̃ and Δe, which expand into
lagged cross-products of the *symbols* (Σ Δy_t Δx_{t-k}, Σ ỹ_t Δx_{t-k}, ...): one matrix product per lag
over all symbols of a block gives them for every pair at once; per pair only O(L²) assembly (plus O(L²)
edge corrections for the exact sample windows) and an O(L³) Cholesky remain. Pairs whose legs have
different missing bars are compressed to their common bars and batched by bar count.

Conventions (see quantlib/README.md, "Pair screen"):
- log prices by default (`log_prices=True`); the Pairs page tests levels. Both are scale free for the
  test statistic; log prices make hedge ratios comparable across BTC and sub-cent coins.
- orientation: both regressions (y on x, x on y) are run and the pair is reported in the orientation whose
  statistic is larger (the weaker rejection), so "cointegrated" means both orderings reject and the input
  order never matters; ties alphabetical. The reverse regression and the halves run only where the first
  (alphabetical) one has p <= 0.25: a BH q-value is never below its p-value, so no other pair can pass.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from quantlib import stattests
from quantlib._blas import single_threaded
from quantlib._validate import check_choice, utc_index

SCREEN_COLUMNS = ["y", "x", "n_bars", "corr", "hedge_ratio", "eg_stat", "eg_pvalue", "eg_qvalue",
                  "half_life_bars", "hurst", "verdict"]
RAW_COLUMNS = ["y", "x", "n_bars", "corr", "hedge_ratio", "alpha", "eg_stat", "eg_pvalue", "eg_lags",
               "eg_stat_reverse", "eg_pvalue_reverse", "half_life_bars", "hurst", "eg_pvalue_first",
               "eg_pvalue_second", "status", "note", "stationary_leg"]
DEFAULT_MIN_BARS = 100
DEFAULT_CHUNK_PAIRS = 2000
MIN_BARS_FLOOR = max(stattests.ADF_MIN_OBS, stattests.HURST_MIN_OBS)
HALF_MIN_BARS = stattests.ADF_MIN_OBS
DETAIL_MAX_P = 0.25  # reverse regression and halves only for pairs with p up to this (q >= p: no other can pass)
LEG_STATIONARY_P = 0.01      # a leg's own ADF p-value below this, and stattests.hurst's "mean reverting"
LEG_STATIONARY_HURST = 0.45  # (H below this, variance ratio < 1 at 5 %): stationary on its own (a pegged coin)
_COLLINEAR_R2 = 1 - 100 * math.sqrt(np.finfo(float).eps)  # as stattests.engle_granger
_DIRECT_R2 = 1 - 1e-3  # above this R², residual sums are taken directly (expanding them loses digits)
_NTREND = {"n": 0, "c": 1, "ct": 2, "ctt": 3}
_AUTOLAG = {"AIC": "aic", "aic": "aic", "BIC": "bic", "bic": "bic", "t-stat": "t-stat", None: None}
_BATCH_PAIRS = 512  # pairs per batch in the per-pair assembly (memory ~ batch x L^3 doubles)


# ------------------------------------------------------------------------------------------ helpers
def benjamini_hochberg(pvalues) -> np.ndarray:
    """Benjamini-Hochberg q-values (step-up adjusted p-values); NaN p-values stay NaN and do not count in m."""
    p = np.asarray(pvalues, dtype=float).ravel()
    q = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return q
    if (p[ok] < 0).any() or (p[ok] > 1).any():
        raise ValueError("p-values must lie in [0, 1]")
    order = ok[np.argsort(p[ok], kind="mergesort")]
    adj = p[order] * m / np.arange(1, m + 1)
    adj = np.minimum.accumulate(adj[::-1])[::-1]
    q[order] = np.minimum(adj, 1.0)
    return q


def mackinnon_pvalues(stat, regression: str = "c", n_series: int = 1) -> np.ndarray:
    """statsmodels' `mackinnonp` (MacKinnon 1994 approximate p-values) for an array of statistics."""
    from scipy.special import ndtr
    from statsmodels.tsa import adfvalues as av

    s = np.asarray(stat, dtype=float)
    i = n_series - 1
    with np.errstate(invalid="ignore", over="ignore"):
        small = np.polyval(av._tau_smallps[regression][i][::-1], s)
        large = np.polyval(av._tau_largeps[regression][i][::-1], s)
        p = ndtr(np.where(s <= av._tau_stars[regression][i], small, large))
        p = np.where(s > av._tau_maxs[regression][i], 1.0, p)
        p = np.where(s < av._tau_mins[regression][i], 0.0, p)
    return np.where(np.isnan(s), np.nan, p)


def _lag_limit(n: int) -> int:
    """Largest lag `stattests.adf` allows for the residual ADF (regression "n") on n observations."""
    return min(n // 2 - 1, (n - 3) // 2)


def _default_maxlag(n: int) -> int:
    """statsmodels' adfuller default for the residual ADF (no deterministic terms), as stattests caps it."""
    return min(_lag_limit(n), int(math.ceil(12.0 * (n / 100.0) ** 0.25)))


def pair_chunks(symbols: Sequence[str], size: int = DEFAULT_CHUNK_PAIRS) -> list[list[tuple[str, str]]]:
    """Every unordered pair of `symbols` exactly once, in chunks of at most ~`size` pairs.

    Chunks are blocks of symbols (pairs within a block, or between two blocks), so a chunk touches few
    symbols and its lagged cross-products are one small matrix product per lag.
    """
    syms = [str(s) for s in symbols]
    if len(set(syms)) != len(syms):
        dup = sorted({s for s in syms if syms.count(s) > 1})
        raise ValueError(f"symbols must be unique; repeated: {', '.join(dup)}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be an integer >= 1, got {size!r}")
    if len(syms) * (len(syms) - 1) // 2 <= size:   # one chunk: the cheapest shape (each product serves 2 pairs)
        return [[(a, b) for i, a in enumerate(syms) for b in syms[i + 1:]]] if len(syms) > 1 else []
    g = max(2, math.isqrt(int(size)))
    blocks = [syms[i:i + g] for i in range(0, len(syms), g)]
    chunks: list[list[tuple[str, str]]] = []
    for bi, a_block in enumerate(blocks):
        for bj in range(bi, len(blocks)):
            if bi == bj:
                pairs = [(a, b) for i, a in enumerate(a_block) for b in a_block[i + 1:]]
            else:
                pairs = [(a, b) for a in a_block for b in blocks[bj]]
            for k in range(0, len(pairs), size):
                chunks.append(pairs[k:k + size])
    return chunks


def _check_closes(closes: object) -> pd.DataFrame:
    if not isinstance(closes, pd.DataFrame):
        raise ValueError(f"closes must be a DataFrame (bars x symbols), got {type(closes).__name__}")
    if not closes.columns.is_unique:
        dup = sorted({str(c) for c in closes.columns[closes.columns.duplicated()]})
        raise ValueError(f"closes has repeated columns: {', '.join(dup)}")
    utc_index(closes.index, "closes")
    try:
        values = closes.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("closes must hold numeric columns only (one close per symbol, NaN where no bar)") from None
    if np.isinf(values).any():
        bad = [str(c) for c, b in zip(closes.columns, np.isinf(values).any(axis=0)) if b]
        raise ValueError(f"closes contains infinite values in {bad}; use NaN for a missing bar")
    with np.errstate(invalid="ignore"):
        nonpos = (values <= 0).any(axis=0)
    if nonpos.any():
        bad = [str(c) for c, b in zip(closes.columns, nonpos) if b]
        raise ValueError(f"closes must be strictly positive prices; non-positive values in {bad}")
    return pd.DataFrame(values, index=closes.index, columns=[str(c) for c in closes.columns])


def _check_pairs(pairs: Sequence[tuple[str, str]], columns: pd.Index) -> list[tuple[str, str]]:
    cols = set(columns)
    out, seen = [], set()
    for p in pairs:
        if not (isinstance(p, (tuple, list)) and len(p) == 2):
            raise ValueError(f"each pair must be a (symbol, symbol) tuple, got {p!r}")
        a, b = str(p[0]), str(p[1])
        missing = [s for s in (a, b) if s not in cols]
        if missing:
            raise ValueError(f"pair ({a}, {b}): {', '.join(missing)} not a column of closes")
        if a == b:
            raise ValueError(f"pair ({a}, {b}) pairs a symbol with itself")
        key = (a, b) if a < b else (b, a)
        if key in seen:
            raise ValueError(f"pair ({a}, {b}) is listed twice")
        seen.add(key)
        out.append((a, b))
    return out


# ---------------------------------------------------------------------------- lagged cross-products
@dataclass
class _Sums:
    """Lagged cross-products of every symbol pair (u, v) of a block, batch dims first.

    F[k][u, v] = Σ_{s=k}^{m-1} d_u[s] d_v[s-k] (k = 0..L); B0[u, v] = Σ_{t=L}^{m-1} e_u[t] d_v[t];
    C[u, v] = Σ_{t=L}^{m-1} e_u[t] e_v[t]; S[u, v] = Σ_t e_u[t] e_v[t] (all bars). e = detrended levels,
    d = Δe, m = n - 1, L = maxlag.
    """

    F: np.ndarray      # (K, G, U, U)
    B0: np.ndarray     # (G, U, U)
    C: np.ndarray      # (G, U, U)
    S: np.ndarray      # (G, U, U)
    lev: np.ndarray    # (G, n, U) detrended levels
    levT: np.ndarray   # (G, U, n) the same, one contiguous row per symbol (fast per-pair gathers)
    dif: np.ndarray    # (G, m, U)
    MH: np.ndarray | None  # (H, G, U, U) Σ_t e_u[t+τ] e_v[t] for the Hurst lags τ
    coef0: np.ndarray  # (G, U) intercept of each symbol's trend fit (for alpha)
    tss: np.ndarray    # (G, U) total sum of squares as engle_granger's R² uses it
    n: int
    L: int


def _trend_basis(n: int, ntrend: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(1, n + 1, dtype=float)
    T = np.column_stack([np.ones(n), t, t * t][:ntrend]) if ntrend else np.empty((n, 0))
    if ntrend == 0:
        return T, np.empty((0, 0))
    q, r = np.linalg.qr(T)
    return q, r


def _products(xT: np.ndarray, yT: np.ndarray, split: int | None, out: np.ndarray | None = None) -> np.ndarray:
    """x' y per block for xT, yT of shape (G, U, T) (one row per symbol); with `split` = s only the blocks
    [:s, s:] and [s:, :s] and the diagonal (all a chunk of pairs between symbols :s and s: ever reads), half the
    work of the full product. Few symbols in many blocks (ragged pairs): einsum beats G tiny matmuls."""
    G, U, _ = xT.shape
    if out is None:
        out = np.empty((G, U, U))
    if split is None:
        if U <= 4 and G > 1:
            return np.einsum("gut,gvt->guv", xT, yT, out=out)
        return np.matmul(xT, yT.transpose(0, 2, 1), out=out)
    out[:, :split, split:] = np.matmul(xT[:, :split], yT[:, split:].transpose(0, 2, 1))
    out[:, split:, :split] = np.matmul(xT[:, split:], yT[:, :split].transpose(0, 2, 1))
    u = np.arange(U)
    out[:, u, u] = np.einsum("gut,gut->gu", xT, yT)
    return out


def _block_sums(Z: np.ndarray, ntrend: int, L: int, hurst_lags: np.ndarray | None = None,
                split: int | None = None) -> _Sums:
    """Z: (G, n, U) prices (log or level) of U symbols on n common bars, G independent blocks. `split`:
    every pair joins a symbol before `split` with one after it (see `_products`)."""
    G, n, U = Z.shape
    m = n - 1
    q, r = _trend_basis(n, ntrend)
    if ntrend:
        proj = np.einsum("nk,gnu->gku", q, Z)
        lev = Z - np.einsum("nk,gku->gnu", q, proj)
        coef0 = np.linalg.solve(r, proj.transpose(1, 0, 2).reshape(ntrend, G * U))[0].reshape(G, U)
        zc = Z - Z.mean(axis=1, keepdims=True)
        tss = np.einsum("gnu,gnu->gu", zc, zc)
    else:
        lev = Z
        coef0 = np.zeros((G, U))
        tss = np.einsum("gnu,gnu->gu", Z, Z)
    dif = np.diff(lev, axis=1)
    difT = np.ascontiguousarray(dif.transpose(0, 2, 1))
    levT = np.ascontiguousarray(lev.transpose(0, 2, 1))
    F = np.empty((L + 1, G, U, U))
    for k in range(L + 1):
        _products(difT[:, :, k:], difT[:, :, : m - k], split, out=F[k])
    B0 = _products(levT[:, :, L:m], difT[:, :, L:m], split)
    C = _products(levT[:, :, L:m], levT[:, :, L:m], split)
    S = _products(levT, levT, split)
    MH = None
    if hurst_lags is not None:
        MH = np.empty((len(hurst_lags), G, U, U))
        for i, t in enumerate(hurst_lags):
            _products(levT[:, :, t:], levT[:, :, : n - t], split, out=MH[i])
    return _Sums(F, B0, C, S, lev, levT, dif, MH, coef0, tss, n, L)


def _direct_sums(e: np.ndarray, L: int):
    """F, B0, C of `_adf_from_sums` straight from residuals e (P, n)."""
    d = np.diff(e, axis=1)
    m = d.shape[1]
    F = np.stack([np.einsum("pt,pt->p", d[:, k:], d[:, : m - k]) for k in range(L + 1)], axis=1)
    B0 = np.einsum("pt,pt->p", e[:, L:m], d[:, L:m])
    C = np.einsum("pt,pt->p", e[:, L:m], e[:, L:m])
    return F, B0, C


def _combine(M: np.ndarray, g, a, c, b) -> np.ndarray:
    """Σ (u_a - b u_c)(v_a - b v_c) from the symbol sums M[..., g, u, v], per pair (pair axis first)."""
    out = M[..., g, a, a] - b * (M[..., g, a, c] + M[..., g, c, a]) + b * b * M[..., g, c, c]
    return np.moveaxis(out, -1, 0) if out.ndim > 1 else out


# ------------------------------------------------------------------------------------ residual ADF
_TOEPLITZ: dict[int, np.ndarray] = {}


def _toeplitz_index(L: int) -> np.ndarray:
    """|lag_i - lag_j| for the Gram column order [level, d_{t-1}..d_{t-L}, d_t] (level: placeholder)."""
    if L not in _TOEPLITZ:
        lagc = np.r_[0, 1:L + 1, 0]
        _TOEPLITZ[L] = np.abs(lagc[:, None] - lagc[None, :])
    return _TOEPLITZ[L]


def _adf_from_sums(F, B0, C, eh, dh, dt, e_last, m: int, L: int, autolag: str | None, levels=None):
    """ADF on residuals e given their lagged sums, for P series at once: no deterministic terms, or a
    constant when `levels` (P, n), the series itself, is given.

    F (P, K): Σ_{s=k}^{m-1} d[s]d[s-k]; B0 (P,): Σ_{t=L}^{m-1} e[t]d[t]; C (P,): Σ_{t=L}^{m-1} e[t]²;
    eh, dh (P, L): e[0:L], d[0:L]; dt (P, L): d[m-L:m]; e_last (P,): e[m-1]. Returns (stat, lag) as
    `stattests._adf_core`: every lag 0..L scored on the common sample t = L..m-1, refit on t = lag..m-1.

    The Gram of the columns [e_t, d_{t-1}..d_{t-L}, d_t] over t = L..m-1 is, for the d-d block, the
    Toeplitz matrix of F minus the products of the zero-padded rows t < L (head) and t >= m (tail).
    """
    P = F.shape[0]
    K = L + 1
    G = F[:, _toeplitz_index(L)]
    Hd = None
    if L:
        Hd = np.zeros((P, L, K + 1))   # design rows t = 0..L-1, zero where t - lag < 0
        Td = np.zeros((P, L, K + 1))   # rows t = m..m+L-1, zero where t - lag > m - 1
        Hd[:, :, 0] = eh
        Hd[:, :, K] = dh
        for c in range(1, K):
            Hd[:, c:, c] = dh[:, : L - c]
            Td[:, :c, c] = dt[:, L - c:]
        ends = np.concatenate([Hd, Td], axis=1)
        G -= np.matmul(ends.transpose(0, 2, 1), ends)
        # level row: Bv(j) = Σ_{t=L}^{m-1} e[t] d[t-j] by e[t] = e[t-1] + d[t-1], from Bv(0) = B0
        bv = np.empty((P, K))
        bv[:, 0] = B0
        for j in range(1, K):
            bv[:, j] = bv[:, j - 1] + eh[:, L - 1] * dh[:, L - j] - e_last * dt[:, L - j] + G[:, 1, j]
        G[:, 0, 1:K] = bv[:, 1:]
        G[:, 0, K] = B0
        G[:, 1:, 0] = G[:, 0, 1:]
    else:
        G[:, 0, 1] = G[:, 1, 0] = B0
    G[:, 0, 0] = C
    T = 0
    if levels is not None:  # a constant column first: window counts and telescoping sums of d
        T = 1
        Gc = np.empty((P, K + 2, K + 2))
        Gc[:, 1:, 1:] = G
        Gc[:, 0, 0] = m - L
        Gc[:, 0, 1] = levels[:, L:m].sum(axis=1)
        for c in range(1, K):
            Gc[:, 0, 1 + c] = levels[:, m - c] - levels[:, L - c]
        Gc[:, 0, K + 1] = levels[:, m] - levels[:, L]
        Gc[:, 1:, 0] = Gc[:, 0, 1:]
        G = Gc
        if Hd is not None:
            Hd = np.concatenate([np.ones((P, L, 1)), Hd], axis=2)
    nobs = m - L
    if autolag is None or L == 0:
        lag = np.full(P, L, dtype=int)
        return _refit_stat(G, lag, L, m, None, T), lag
    k = K + T
    sd = np.sqrt(np.einsum("pii->pi", G))
    R = _cholesky_upper(G / (sd[:, :, None] * sd[:, None, :]))
    qty = R[:, :k, k] * sd[:, k:k + 1]
    rss_full = (R[:, k, k] * sd[:, k]) ** 2
    tail = np.concatenate([np.cumsum((qty * qty)[:, ::-1], axis=1)[:, ::-1], np.zeros((P, 1))], axis=1)
    p = np.arange(T + 1, k + 1)
    rss = rss_full[:, None] + tail[:, p]
    if autolag == "t-stat":
        tvals = np.abs(qty[:, p - 1]) / np.sqrt(rss / (nobs - p))
        sig = tvals >= 1.6448536269514722
        last = K - 1 - np.argmax(sig[:, ::-1], axis=1)
        lag = np.where(sig.any(axis=1), last, 0)
    else:
        llf = -nobs / 2.0 * (math.log(2 * math.pi) + np.log(rss / nobs) + 1.0)
        penalty = 2.0 * p if autolag == "aic" else math.log(nobs) * p
        lag = np.argmin(-2.0 * llf + penalty, axis=1)
    return _refit_stat(G, lag, L, m, Hd, T), lag


def _cholesky_upper(G: np.ndarray) -> np.ndarray:
    """Upper Cholesky factor of each matrix; NaN for the ones that are not positive definite."""
    try:
        return np.linalg.cholesky(G).transpose(0, 2, 1)
    except np.linalg.LinAlgError:
        out = np.full(G.shape, np.nan)
        for i in range(G.shape[0]):
            try:
                out[i] = np.linalg.cholesky(G[i]).T
            except np.linalg.LinAlgError:
                pass
        return out


def _refit_stat(G: np.ndarray, lag: np.ndarray, L: int, m: int, Hd: np.ndarray | None, T: int = 0) -> np.ndarray:
    """t-statistic of the level coefficient with `lag` lagged differences, each on its longest sample
    t = lag..m-1: the common-sample Gram G (order [const if T, level, d_{t-1}..d_{t-L}, d_t]) plus the head
    rows t = lag..L-1 of the design Hd (None: lag == L everywhere)."""
    K = L + 1
    stat = np.full(G.shape[0], np.nan)
    for q in np.unique(lag):
        sel = np.flatnonzero(lag == q)
        cols = np.r_[0:T, T + 1:T + q + 1, T, K + T]
        sub = G[sel[:, None, None], cols[None, :, None], cols[None, None, :]]
        if Hd is not None and q < L:
            rows = Hd[sel[:, None, None], np.arange(q, L)[None, :, None], cols[None, None, :]]
            sub += np.matmul(rows.transpose(0, 2, 1), rows)
        sd = np.sqrt(np.einsum("pii->pi", sub))
        R = _cholesky_upper(sub / (sd[:, :, None] * sd[:, None, :]))
        k = q + 1 + T
        stat[sel] = R[:, k - 1, k] / (np.abs(R[:, k, k]) / math.sqrt(m - q - k))
    return stat


def _adf_c(v: np.ndarray, autolag: str | None = "aic") -> np.ndarray:
    """Statistic of stattests.adf(v, regression="c", autolag) with its default maxlag, per row of v (P, n)."""
    P, n = v.shape
    m = n - 1
    L = min(n // 2 - 2, (n - 4) // 2, int(math.ceil(12.0 * (n / 100.0) ** 0.25)))
    v = v - v.mean(axis=1, keepdims=True)   # the constant absorbs a shift; centring keeps the sums small
    d = np.diff(v, axis=1)
    F, B0, C = _direct_sums(v, L)
    return _adf_from_sums(F, B0, C, v[:, :L], d[:, :L], d[:, m - L:], v[:, m - 1], m, L, autolag, levels=v)[0]


def _window_sums(Z: np.ndarray, ntrend: int, maxlag, hurst: bool = False, split: int | None = None) -> _Sums:
    n = Z.shape[1]
    L = _default_maxlag(n) if maxlag is None else min(maxlag, _lag_limit(n))
    return _block_sums(Z, ntrend, L, _hurst_lags(n) if hurst else None, split)


def _eg_orientation(s: _Sums, pg, y, x, autolag):
    """Engle-Granger of y on x per pair, plus the residual sums the half-life needs."""
    n, L = s.n, s.L
    m = n - 1
    P = pg.shape[0]
    syy, sxy, sxx = s.S[pg, y, y], s.S[pg, y, x], s.S[pg, x, x]
    with np.errstate(divide="ignore", invalid="ignore"):
        b = sxy / sxx
        rss = syy - b * sxy
        tss = s.tss[pg, y]
        r2 = np.where(tss > 0, 1.0 - rss / tss, 1.0)
    collinear = ~(r2 < _COLLINEAR_R2)
    # Near-collinear legs: the expansion of the residual sums cancels digits; sum the residuals directly.
    direct = ~collinear & (r2 > _DIRECT_R2)
    out = {"b": b, "collinear": collinear, "direct": direct, "stat": np.full(P, -np.inf),
           "lag": np.zeros(P, dtype=int)}
    for k in ("sed", "see", "sdd"):
        out[k] = np.full(P, np.nan)
    ok = np.flatnonzero(~collinear)
    for start in range(0, ok.size, _BATCH_PAIRS):
        sel = ok[start:start + _BATCH_PAIRS]
        g, a, c, bb = pg[sel], y[sel], x[sel], b[sel]
        F = _combine(s.F, g, a, c, bb)
        B0 = _combine(s.B0, g, a, c, bb)
        C = _combine(s.C, g, a, c, bb)
        near = np.flatnonzero(direct[sel])
        if near.size:
            e = s.levT[g[near], a[near]] - bb[near, None] * s.levT[g[near], c[near]]
            F[near], B0[near], C[near] = _direct_sums(e, L)
        eh = s.lev[g, :L, a] - bb[:, None] * s.lev[g, :L, c]
        dh = s.dif[g, :L, a] - bb[:, None] * s.dif[g, :L, c]
        dt = s.dif[g, m - L:, a] - bb[:, None] * s.dif[g, m - L:, c]
        e_last = s.lev[g, m - 1, a] - bb * s.lev[g, m - 1, c]
        out["stat"][sel], out["lag"][sel] = _adf_from_sums(F, B0, C, eh, dh, dt, e_last, m, L, autolag)
        # Σ over t = 0..m-1 of e[t] d[t], e[t]², d[t]² (the half-life regression's sample)
        out["sed"][sel] = B0 + np.einsum("pt,pt->p", eh, dh)
        out["see"][sel] = C + np.einsum("pt,pt->p", eh, eh)
        out["sdd"][sel] = F[:, 0]
    return out


# ----------------------------------------------------------------------------- spread statistics
def _half_life(see, sed, sdd, se, e0, em, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(half_life, Dickey-Fuller p-value) of stattests.half_life from the spread's sums over t = 0..m-1:
    Σe[t]², Σe[t]Δe[t], ΣΔe[t]², Σe[t], and e[0], e[m]."""
    ml = se / m
    md = (em - e0) / m
    with np.errstate(divide="ignore", invalid="ignore"):
        slc = see - m * ml * ml
        lam = (sed - m * ml * md) / slc
        rss = np.maximum((sdd - m * md * md) - lam * lam * slc, 0.0)
        se_lam = np.sqrt(rss / (m - 2) / slc)
        tstat = np.where(se_lam > 0, lam / se_lam, -np.inf)
    pvalue = mackinnon_pvalues(tstat, "c", 1)
    phi = 1.0 + lam
    mr = (lam < 0) & (phi > -1.0) & (phi < 1.0) & (pvalue < stattests.LEVEL)
    with np.errstate(divide="ignore", invalid="ignore"):
        hl = np.where(phi != 0, -math.log(2.0) / np.log(np.abs(phi)), 0.0)
    return np.where(mr, hl, np.inf), pvalue


def _half_life_direct(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`_half_life` for each row of e (P, n)."""
    d = np.diff(e, axis=1)
    lag = e[:, :-1]
    return _half_life(np.einsum("pt,pt->p", lag, lag), np.einsum("pt,pt->p", lag, d),
                      np.einsum("pt,pt->p", d, d), lag.sum(axis=1), e[:, 0], e[:, -1], d.shape[1])


def _hurst_lags(n: int) -> np.ndarray:
    """The lags of stattests.hurst with its defaults (20 log-spaced in [2, min(100, n // 4)])."""
    return np.unique(np.round(np.geomspace(2, min(100, n // 4), 20)).astype(int))


def _hurst_slope(ms: np.ndarray, bad: np.ndarray, lags: np.ndarray, n: int) -> np.ndarray:
    """Corrected Hurst exponent from the mean squared lagged differences ms (H, P)."""
    bad = bad | (ms <= 0).any(axis=0)
    lx = np.log(lags)
    slope = np.polyfit(lx, 0.5 * np.log(np.where(ms > 0, ms, 1.0)), 1)[0]
    rw_slope = float(np.polyfit(lx, stattests._rw_expected_log_sd(lags, n), 1)[0])
    return np.where(bad, np.nan, slope - (rw_slope - 0.5))


def _hurst_from_sums(s: _Sums, pg, y, x, b, lags: np.ndarray) -> np.ndarray:
    """`_hurst` of the residuals e = y - b x from the block's lagged level products:
    Σ_t (e[t+τ] - e[t])² = Σ_{t>=τ} e² + Σ_{t<n-τ} e² - 2 Σ_t e[t+τ] e[t]."""
    n = s.n
    out = np.full(pg.shape[0], np.nan)
    T = int(lags[-1])
    for start in range(0, pg.shape[0], _BATCH_PAIRS):
        sl = slice(start, start + _BATCH_PAIRS)
        g, a, c, bb = pg[sl], y[sl], x[sl], b[sl]
        cross = _combine(s.MH, g, a, c, bb)                           # (B, H)
        tot = _combine(s.S, g, a, c, bb)
        head = s.levT[g, a, :T] - bb[:, None] * s.levT[g, c, :T]
        tail = s.levT[g, a, n - T:][:, ::-1] - bb[:, None] * s.levT[g, c, n - T:][:, ::-1]
        h2 = np.cumsum(head * head, axis=1)[:, lags - 1]             # Σ_{t<τ} e²
        t2 = np.cumsum(tail * tail, axis=1)[:, lags - 1]             # Σ_{t>=n-τ} e²
        ms = (2.0 * tot[:, None] - h2 - t2 - 2.0 * cross) / (n - lags)
        out[sl] = _hurst_slope(ms.T, np.zeros(len(bb), dtype=bool), lags, n)
    return out


def _hurst(e: np.ndarray, batch: int = 64) -> np.ndarray:
    """stattests.hurst(...).hurst (defaults: small-sample corrected slope) for each row of e (P, n)."""
    P, n = e.shape
    lags = _hurst_lags(n)
    ms = np.empty((lags.size, P))
    for start in range(0, P, batch):  # small batches stay in cache
        blk = e[start:start + batch]
        for i, t in enumerate(lags):
            v = blk[:, t:] - blk[:, :-t]
            ms[i, start:start + batch] = np.einsum("pt,pt->p", v, v) / (n - t)
    return _hurst_slope(ms, np.ptp(e, axis=1) == 0, lags, n)


# ------------------------------------------------------------------------------------ the screen
def _variance_ratio(v: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    """(VR, two-sided p-value) of stattests.variance_ratio(row, q) for each row of v (P, n)."""
    from scipy.special import ndtr

    d = np.diff(v, axis=1)
    nq = d.shape[1]
    z2 = d * d
    s1 = z2.sum(axis=1)
    dq = v[:, q:] - v[:, :-q]
    vr = (np.einsum("pt,pt->p", dq, dq) / (q * (nq - q + 1) * (1 - q / nq))) / (s1 / (nq - 1))
    theta = sum(4.0 * (1.0 - k / q) ** 2 * nq * np.einsum("pt,pt->p", z2[:, k:], z2[:, :-k]) for k in range(1, q))
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = math.sqrt(nq) * (vr - 1.0) / np.sqrt(theta / (s1 * s1))
    return vr, 2.0 - 2.0 * ndtr(np.abs(stat))


def _leg_flags(values: np.ndarray, names: list[str], min_bars: int) -> dict[str, str]:
    """Symbols that are stationary on their own (e.g. pegged coins): `stattests.adf` (constant, AIC) rejects
    a unit root at 1 % and `stattests.hurst` calls them mean reverting (H < 0.45 with a significant
    variance ratio < 1). Cointegration presumes two I(1) legs; a stationary leg "cointegrates" with
    anything through a hedge ratio near 0, and two pegged coins with each other."""
    flags: dict[str, str] = {}
    ok = ~np.isnan(values)
    counts = ok.sum(axis=0)
    for n_own in np.unique(counts):    # symbols with the same number of bars, each on its own bars, together
        idx = np.flatnonzero(counts == n_own)
        v = values[:, idx].T[ok[:, idx].T].reshape(idx.size, n_own).T   # (n, symbols), NaN rows dropped per symbol
        n = v.shape[0]
        if n < min_bars:
            continue
        live = np.ptp(v, axis=0) > 0
        if not live.any():
            continue
        idx, v = idx[live], np.ascontiguousarray(v[:, live].T)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = mackinnon_pvalues(_adf_c(v), "c", 1)
            h = _hurst(v)
            vr, vr_p = _variance_ratio(v, int(round(math.sqrt(2 * min(100, n // 4)))))
        stationary = (p < LEG_STATIONARY_P) & (h < LEG_STATIONARY_HURST) & (vr < 1) & (vr_p < stattests.LEVEL)
        for j, pj, hj in zip(idx[stationary], p[stationary], h[stationary]):
            flags[names[j]] = f"{names[j]} is stationary on its own (ADF p={pj:.2g}, Hurst {hj:.2f})"
    return flags


@single_threaded
def screen_chunk(closes: pd.DataFrame, pairs: Sequence[tuple[str, str]], *, min_bars: int = DEFAULT_MIN_BARS,
                 trend: str = "c", autolag: str | None = "AIC", maxlag: int | None = None,
                 stability: bool = True, log_prices: bool = True) -> pd.DataFrame:
    """Raw screen rows (`RAW_COLUMNS`) for `pairs` of columns of `closes`; no q-values or verdicts yet.

    closes: bars x symbols (UTC index), NaN where a symbol has no bar; each pair is tested on the bars
    where both legs have a close. Pairs with fewer than `min_bars` such bars, or a constant leg, are kept
    with `status` saying why. trend / autolag / maxlag as `stattests.engle_granger` (maxlag is capped at
    the largest lag the halves allow). Inputs and output are plain pandas objects (picklable, for Dask).
    """
    check_choice(trend, "trend", tuple(_NTREND))
    check_choice(autolag, "autolag", tuple(_AUTOLAG))
    if isinstance(min_bars, bool) or not isinstance(min_bars, (int, np.integer)) or min_bars < MIN_BARS_FLOOR:
        raise ValueError(f"min_bars must be an integer >= {MIN_BARS_FLOOR}, got {min_bars!r}")
    if maxlag is not None and (isinstance(maxlag, bool) or not isinstance(maxlag, (int, np.integer)) or maxlag < 0):
        raise ValueError(f"maxlag must be None or an integer >= 0, got {maxlag!r}")
    frame = _check_closes(closes)
    plist = _check_pairs(pairs, frame.columns)
    if not plist:
        return _raw_frame([])
    names = list(dict.fromkeys(s for p in plist for s in p))
    col = {s: i for i, s in enumerate(names)}
    values = frame[names].to_numpy()
    Z = np.log(values) if log_prices else values
    logz = Z if log_prices else np.log(values)
    valid = ~np.isnan(values)
    need = min_bars if maxlag is None else max(min_bars, 2 * maxlag + 3)
    leg_flags = _leg_flags(Z, names, need)
    ia = np.array([col[a] for a, _ in plist])
    ic = np.array([col[c] for _, c in plist])
    vf = valid.astype(np.float64)
    overlap = np.rint(vf.T @ vf).astype(np.int64)[ia, ic]
    full = valid.all(axis=0)
    out: list[dict] = [None] * len(plist)  # type: ignore[list-item]
    groups: dict[bytes, list[int]] = {}
    for i, (a, c) in enumerate(plist):
        n = int(overlap[i])
        if n < need:
            out[i] = _untested(a, c, n, "too_few_bars", f"too few bars ({n} < {need})")
            continue
        key = b"full" if full[ia[i]] and full[ic[i]] else np.packbits(valid[:, ia[i]] & valid[:, ic[i]]).tobytes()
        groups.setdefault(key, []).append(i)
    # Groups that share their bars and are dense in symbols go through one block product; the rest are
    # compressed to their own bars and batched per pair (blocks of 2 symbols) by bar count.
    by_n: dict[int, list[int]] = {}
    for key, idx in groups.items():
        syms = np.unique(np.r_[ia[idx], ic[idx]])
        if len(idx) > 1 and syms.size ** 2 <= 8 * len(idx):
            rows_mask = slice(None) if key == b"full" else valid[:, ia[idx[0]]] & valid[:, ic[idx[0]]]
            first, second = np.unique(ia[idx]), np.unique(ic[idx])
            split = None
            if not np.intersect1d(first, second).size:   # pairs between two groups (pair_chunks' cross blocks)
                syms, split = np.r_[first, second], first.size
            Zb = Z[rows_mask][:, syms][None]
            Lb = logz[rows_mask][:, syms][None]
            local = {s: j for j, s in enumerate(syms)}
            pa = np.array([local[ia[i]] for i in idx])
            pc = np.array([local[ic[i]] for i in idx])
            a_first = np.array([plist[i][0] < plist[i][1] for i in idx])
            res = _screen_block(Zb, Lb, np.zeros(len(idx), dtype=int), pa, pc, a_first, trend, autolag, maxlag,
                                stability, split)
            _emit(out, idx, plist, res, pa, leg_flags)
        else:
            for i in idx:
                by_n.setdefault(int(overlap[i]), []).append(i)
    for n, idx in by_n.items():
        for start in range(0, len(idx), _BATCH_PAIRS):
            part = idx[start:start + _BATCH_PAIRS]
            masks = valid[:, ia[part]] & valid[:, ic[part]]          # (rows, B)
            rows_idx = np.nonzero(masks.T)[1].reshape(len(part), n)  # (B, n) row numbers per pair
            za, zc = Z[rows_idx, ia[part][:, None]], Z[rows_idx, ic[part][:, None]]   # (B, n) each, contiguous
            const = np.stack([np.ptp(za, axis=1) == 0, np.ptp(zc, axis=1) == 0], axis=1)
            Zb = np.stack([za, zc], axis=2)
            Lb = np.stack([logz[rows_idx, ia[part][:, None]], logz[rows_idx, ic[part][:, None]]], axis=2)
            B = len(part)
            a_first = np.array([plist[i][0] < plist[i][1] for i in part])
            zeros = np.zeros(B, dtype=int)
            res = _screen_block(Zb, Lb, np.arange(B), zeros, zeros + 1, a_first, trend, autolag, maxlag, stability,
                                const=const)
            _emit(out, part, plist, res, zeros, leg_flags)
    return _raw_frame(out)


def _untested(a: str, c: str, n: int, status: str, note: str) -> dict:
    y, x = (a, c) if a <= c else (c, a)
    return {"y": y, "x": x, "n_bars": n, "status": status, "note": note, "stationary_leg": ""}


def _raw_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=RAW_COLUMNS)
    for c in RAW_COLUMNS:
        if c in ("y", "x", "status", "note", "stationary_leg"):
            df[c] = df[c].astype(object).where(df[c].notna(), "")
        elif c in ("n_bars", "eg_lags"):
            df[c] = pd.array(df[c], dtype="Int64")
        else:
            df[c] = df[c].astype(float)
    return df


def _screen_block(Z, logz, pg, pa, pc, a_first, trend, autolag, maxlag, stability, split=None, const=None) -> dict:
    """Everything per pair for pairs (pg, pa, pc) of blocks Z (G, n, U) sharing n bars; a_first: the
    name of leg a sorts first; split: every pair joins a symbol before `split` with one after it."""
    ntrend, autolag = _NTREND[trend], _AUTOLAG[autolag]
    G, n, U = Z.shape
    P = pg.shape[0]
    if const is None:
        const = np.ptp(Z, axis=1) == 0                              # (G, U): constant legs
    const_a, const_c = const[pg, pa], const[pg, pc]
    nan = np.full(P, np.nan)
    out = {"n": n, "y": pa.copy(), "x": pc.copy(), "const_y": const_a, "const_x": const_c,
           "collinear": np.zeros(P, dtype=bool), "lag": np.zeros(P, dtype=int)}
    for k in ("b", "alpha", "stat", "stat_rev", "p", "p_rev", "hl", "hurst", "corr", "p1", "p2"):
        out[k] = nan.copy()
    keep = np.flatnonzero(~(const_a | const_c))
    if keep.size == 0:
        return out
    pg = pg[keep]
    fa = np.where(a_first[keep], pa[keep], pc[keep])                 # alphabetical orientation first
    fc = np.where(a_first[keep], pc[keep], pa[keep])
    with np.errstate(divide="ignore", invalid="ignore"):
        s = _window_sums(Z, ntrend, maxlag, hurst=True, split=split)
        f = _eg_orientation(s, pg, fa, fc, autolag)
        # The reverse regression matters only where the first one could be significant (q >= p).
        cand = np.flatnonzero(mackinnon_pvalues(f["stat"], trend, 2) <= DETAIL_MAX_P)
        r = _eg_orientation(s, pg[cand], fc[cand], fa[cand], autolag)
    # Orientation: the weaker of the two tests (larger statistic); ties: alphabetical.
    swap = np.zeros(keep.size, dtype=bool)
    swap[cand] = r["stat"] > f["stat"][cand]
    sw = swap[cand]

    def pick(key):
        v = f[key].copy()
        v[cand[sw]] = r[key][sw]
        return v

    y, x = np.where(swap, fc, fa), np.where(swap, fa, fc)
    b, stat, lag = pick("b"), pick("stat"), pick("lag")
    stat_rev = np.full(keep.size, np.nan)
    stat_rev[cand] = np.where(sw, f["stat"][cand], r["stat"])
    collinear = f["collinear"].copy()
    collinear[cand] |= r["collinear"]
    direct = pick("direct")
    alpha = s.coef0[pg, y] - b * s.coef0[pg, x] if ntrend else np.zeros(keep.size)
    m = n - 1
    colsum = s.lev[:, :m].sum(axis=1)                                # (G, U): Σ_{t<m} of each symbol
    e0 = s.lev[pg, 0, y] - b * s.lev[pg, 0, x]
    em = s.lev[pg, m, y] - b * s.lev[pg, m, x]
    hl = _half_life(pick("see"), pick("sed"), pick("sdd"), colsum[pg, y] - b * colsum[pg, x], e0, em, m)[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        hu = _hurst_from_sums(s, pg, y, x, b, _hurst_lags(n))
    near = np.flatnonzero(direct)
    if near.size:
        hu[near] = _hurst(s.levT[pg[near], y[near]] - b[near, None] * s.levT[pg[near], x[near]])
    hl[collinear] = np.nan
    hu[collinear] = np.nan
    rets = np.diff(logz, axis=1)
    rets = rets - rets.mean(axis=1, keepdims=True)
    retsT = np.ascontiguousarray(rets.transpose(0, 2, 1))
    rr = _products(retsT, retsT, split)
    with np.errstate(divide="ignore", invalid="ignore"):
        den = np.sqrt(rr[pg, y, y] * rr[pg, x, x])
        corr = np.where(den > 0, rr[pg, y, x] / den, np.nan)
    h = n // 2
    pval = mackinnon_pvalues(stat, trend, 2)
    cand = np.flatnonzero(pval <= DETAIL_MAX_P)
    if stability and cand.size and h >= HALF_MIN_BARS and n - h >= HALF_MIN_BARS:
        # only the blocks / symbols the candidates use
        gs, g_new = np.unique(pg[cand], return_inverse=True)
        us, u_new = np.unique(np.r_[y[cand], x[cand]], return_inverse=True)
        Zc = Z[gs][:, :, us]
        yc, xc = u_new[: cand.size], u_new[cand.size:]
        for key, part in (("p1", Zc[:, :h]), ("p2", Zc[:, h:])):
            with np.errstate(divide="ignore", invalid="ignore"):
                w = _eg_orientation(_window_sums(part, ntrend, maxlag), g_new, yc, xc, autolag)
            out[key][keep[cand]] = mackinnon_pvalues(w["stat"], trend, 2)
    for key, val in (("y", y), ("x", x), ("b", b), ("alpha", alpha), ("stat", stat), ("stat_rev", stat_rev),
                     ("lag", lag), ("hl", hl), ("hurst", hu), ("corr", corr), ("collinear", collinear)):
        out[key][keep] = val
    out["p"][keep] = pval
    out["p_rev"][keep] = mackinnon_pvalues(stat_rev, trend, 2)
    return out


def _emit(out: list, idx: list[int], plist: list[tuple[str, str]], res: dict, pa: np.ndarray,
          leg_flags: dict[str, str]) -> None:
    for k, i in enumerate(idx):
        a, c = plist[i]
        y, x = (a, c) if res["y"][k] == pa[k] else (c, a)
        if res["const_y"][k] or res["const_x"][k]:
            legs = [s for s, cst in ((a, res["const_y"][k]), (c, res["const_x"][k])) if cst]
            out[i] = _untested(a, c, res["n"], "constant_leg", f"constant price: {', '.join(legs)}")
            continue
        flagged = [leg_flags[s] for s in (y, x) if s in leg_flags]
        out[i] = {
            "y": y, "x": x, "n_bars": res["n"], "corr": res["corr"][k], "hedge_ratio": res["b"][k],
            "alpha": res["alpha"][k], "eg_stat": res["stat"][k], "eg_pvalue": res["p"][k],
            "eg_lags": int(res["lag"][k]), "eg_stat_reverse": res["stat_rev"][k],
            "eg_pvalue_reverse": res["p_rev"][k], "half_life_bars": res["hl"][k], "hurst": res["hurst"][k],
            "eg_pvalue_first": res["p1"][k], "eg_pvalue_second": res["p2"][k],
            "status": "collinear" if res["collinear"][k] else "ok",
            "note": "collinear legs: y = alpha + beta x almost exactly" if res["collinear"][k] else "",
            "stationary_leg": "; ".join(flagged),
        }


# ---------------------------------------------------------------------------------- final result
_ORDER = {"cointegrated": 0, "unstable": 1, "stationary_leg": 2, "not_cointegrated": 3, "collinear": 4,
          "constant_leg": 5, "too_few_bars": 6, "failed": 7}


@dataclass(frozen=True)
class ScreenResult:
    """A pair screen: one row per unordered pair, best first (see `screen_pairs`)."""

    pairs: pd.DataFrame = field(repr=False)  # SCREEN_COLUMNS first, then alpha, eg_lags, ... cointegrated
    fdr: float
    n_symbols: int
    n_pairs: int
    n_tested: int           # pairs with an Engle-Granger p-value (the m of Benjamini-Hochberg)
    n_significant: int      # q-value <= fdr
    n_cointegrated: int = 0  # significant, stable over both halves, neither leg stationary on its own
    meta: dict = field(default_factory=dict, repr=False)

    def top(self, n: int = 20) -> pd.DataFrame:
        """The first `n` rows (best first), SCREEN_COLUMNS only."""
        return self.pairs[SCREEN_COLUMNS].head(n)

    def to_frame(self) -> pd.DataFrame:
        return self.pairs

    def summary(self, n: int = 10) -> str:
        untested = self.n_pairs - self.n_tested
        head = (f"Pair screen: {self.n_symbols} symbols, {self.n_pairs} pairs, {self.n_tested} tested"
                + (f" ({untested} not testable)" if untested else "")
                + f"; {self.n_significant} significant at FDR {self.fdr:g} (Benjamini-Hochberg), "
                f"{self.n_cointegrated} cointegrated and stable")
        if self.pairs.empty:
            return head
        top = self.top(n).copy()
        for c in ("corr", "hedge_ratio", "eg_stat", "hurst"):
            top[c] = top[c].round(3)
        for c in ("eg_pvalue", "eg_qvalue"):
            top[c] = top[c].map(lambda v: "" if pd.isna(v) else f"{v:.3g}")
        top["half_life_bars"] = top["half_life_bars"].round(1)
        return head + "\n" + top.to_string(index=False)

    def __str__(self) -> str:
        return self.summary()


def _fmt_q(q: float) -> str:
    return "q<0.001" if q < 0.001 else f"q={q:.3f}"


def _fmt_hl(hl: float) -> str:
    if not math.isfinite(hl):
        return "no significant mean reversion in the AR(1) fit of the spread"
    return f"half-life {hl:.0f} bars" if hl >= 10 else f"half-life {hl:.1f} bars"


def finalize_screen(raw: pd.DataFrame, fdr: float = 0.05, **meta) -> ScreenResult:
    """q-values (Benjamini-Hochberg over every pair with a p-value), verdicts and order, from the
    concatenated `screen_chunk` rows of one screen.

    The reverse regression and the halves run for pairs with p <= 0.25 (`DETAIL_MAX_P`), which covers every
    pair that can be significant at fdr <= 0.25; above that the verdict says what was not checked.
    A pair is *cointegrated* when its q-value is <= fdr, the test is significant at 5 % in both halves of
    the window (when checked), and neither leg is stationary on its own. meta: `n_symbols` (else counted
    from the rows) and anything to keep with the result (timeframe, window, options).
    """
    try:
        fdr = float(fdr)
    except (TypeError, ValueError):
        raise ValueError(f"fdr must be a number in (0, 1), got {fdr!r}") from None
    if not 0 < fdr < 1:
        raise ValueError(f"fdr must be a fraction in (0, 1) such as 0.05, got {fdr!r}")
    if not isinstance(raw, pd.DataFrame) or not set(RAW_COLUMNS) <= set(raw.columns):
        missing = sorted(set(RAW_COLUMNS) - set(getattr(raw, "columns", [])))
        raise ValueError(f"raw must be screen_chunk rows; missing columns {missing}")
    df = raw[RAW_COLUMNS].reset_index(drop=True).copy()
    y_, x_ = df["y"].astype(str), df["x"].astype(str)
    dup = pd.Series(np.where(y_ < x_, y_ + "\x00" + x_, x_ + "\x00" + y_)).duplicated()
    if dup.any():
        raise ValueError(f"raw lists pair {tuple(df.loc[dup.idxmax(), ['y', 'x']])} more than once")
    p = df["eg_pvalue"].to_numpy(dtype=float)
    q = benjamini_hochberg(p)
    df["eg_qvalue"] = q
    sig = q <= fdr
    p1, p2 = df["eg_pvalue_first"].to_numpy(float), df["eg_pvalue_second"].to_numpy(float)
    checked = ~np.isnan(p1) & ~np.isnan(p2)
    in1, in2 = p1 < stattests.LEVEL, p2 < stattests.LEVEL
    stable = np.where(checked, in1 & in2, True)
    status = df["status"].to_numpy(object)
    leg = df["stationary_leg"].to_numpy(object)
    verdicts, kinds = [], []
    for i in range(len(df)):
        st = status[i]
        if st != "ok":
            kinds.append(st if st in _ORDER else "failed")
            verdicts.append(df.at[i, "note"] if st != "collinear" else
                            f"{df.at[i, 'note']}; the test is not meaningful")
            continue
        if leg[i]:
            kinds.append("stationary_leg")
            verdicts.append(f"not a cointegration: {leg[i]}")
            continue
        if not sig[i]:
            kinds.append("not_cointegrated")
            verdicts.append(f"not cointegrated ({_fmt_q(q[i])})")
            continue
        hl = _fmt_hl(float(df.at[i, "half_life_bars"]))
        if p[i] > DETAIL_MAX_P:
            kinds.append("cointegrated")
            verdicts.append(f"cointegrated ({_fmt_q(q[i])}), {hl}; one orientation and no halves tested "
                            f"(p > {DETAIL_MAX_P:g})")
        elif stable[i]:
            kinds.append("cointegrated")
            verdicts.append(f"cointegrated ({_fmt_q(q[i])}), {hl}")
        else:
            kinds.append("unstable")
            where = ("in the first half only" if in1[i] else "in the second half only" if in2[i]
                     else "over the whole window but in neither half")
            verdicts.append(f"unstable: cointegrated {where} (first half p={p1[i]:.3f}, second p={p2[i]:.3f}; "
                            f"whole window {_fmt_q(q[i])}, {hl})")
    df["verdict"] = verdicts
    df["stable"] = pd.array(np.where(checked, stable, None), dtype="boolean")
    df["cointegrated"] = np.array([k == "cointegrated" for k in kinds], dtype=bool)
    df["_kind"] = [_ORDER[k] for k in kinds]
    df = df.sort_values(["_kind", "eg_pvalue", "eg_stat", "y", "x"], na_position="last", kind="mergesort")
    df = df.drop(columns="_kind").reset_index(drop=True)
    extras = [c for c in df.columns if c not in SCREEN_COLUMNS]
    df = df[SCREEN_COLUMNS + extras]
    n_symbols = meta.pop("n_symbols", None)
    if n_symbols is None:
        n_symbols = len(set(df["y"]) | set(df["x"]))
    return ScreenResult(pairs=df, fdr=fdr, n_symbols=int(n_symbols), n_pairs=len(df),
                        n_tested=int((~np.isnan(p)).sum()), n_significant=int(sig.sum()),
                        n_cointegrated=int(df["cointegrated"].sum()), meta=meta)


def screen_pairs(closes: pd.DataFrame, *, fdr: float = 0.05, chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
                 progress: Callable[[int, int], None] | None = None, **chunk_options) -> ScreenResult:
    """Screen every unordered pair of the columns of `closes` (bars x symbols, UTC, NaN = no bar).

    `finalize_screen(concat(screen_chunk(closes, chunk) for chunk in pair_chunks(closes.columns)))`;
    chunk_options go to `screen_chunk` (min_bars, trend, autolag, maxlag, stability, log_prices).
    progress(done_pairs, total_pairs) is called after each chunk.
    """
    frame = _check_closes(closes)
    if frame.shape[1] < 2:
        raise ValueError(f"closes needs >= 2 symbols (columns), got {frame.shape[1]}")
    chunks = pair_chunks(list(frame.columns), chunk_pairs)
    total = sum(len(c) for c in chunks)
    parts, done = [], 0
    for chunk in chunks:
        parts.append(screen_chunk(frame, chunk, **chunk_options))
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    raw = pd.concat(parts, ignore_index=True) if parts else _raw_frame([])
    return finalize_screen(raw, fdr, n_symbols=frame.shape[1], **chunk_options)
