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
- orientation: both regressions (y on x, x on y) are run; the pair is reported in the orientation whose
  statistic is larger (the weaker rejection), so "cointegrated" means both orderings reject and the order
  of the input never matters. Exact ties: alphabetical.
"""
from __future__ import annotations

import math
import warnings
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
LEG_STATIONARY_P = 0.01      # a leg's own ADF p-value below this ...
LEG_STATIONARY_HURST = 0.45  # ... and Hurst below this: the leg is stationary on its own (a pegged coin)
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

    F[k][u, v] = Σ_{s=k}^{m-1} d_u[s] d_v[s-k]; B[j][u, v] = Σ_{t=L}^{m-1} e_u[t] d_v[t-j];
    C[u, v] = Σ_{t=L}^{m-1} e_u[t] e_v[t]; S[u, v] = Σ_t e_u[t] e_v[t] (all bars). e = detrended levels,
    d = Δe, m = n - 1, L = maxlag.
    """

    F: np.ndarray   # (K, G, U, U)
    B: np.ndarray   # (K, G, U, U)
    C: np.ndarray   # (G, U, U)
    S: np.ndarray   # (G, U, U)
    lev: np.ndarray  # (G, n, U) detrended levels
    dif: np.ndarray  # (G, m, U)
    coef0: np.ndarray  # (G, U) intercept of each symbol's trend fit (for alpha)
    tss: np.ndarray  # (G, U) total sum of squares as engle_granger's R² uses it
    n: int
    L: int


def _trend_basis(n: int, ntrend: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(1, n + 1, dtype=float)
    T = np.column_stack([np.ones(n), t, t * t][:ntrend]) if ntrend else np.empty((n, 0))
    if ntrend == 0:
        return T, np.empty((0, 0))
    q, r = np.linalg.qr(T)
    return q, r


def _block_sums(Z: np.ndarray, ntrend: int, L: int) -> _Sums:
    """Z: (G, n, U) prices (log or level) of U symbols on n common bars, G independent blocks."""
    G, n, U = Z.shape
    m = n - 1
    q, r = _trend_basis(n, ntrend)
    if ntrend:
        proj = np.einsum("nk,gnu->gku", q, Z)
        lev = Z - np.einsum("nk,gku->gnu", q, proj)
        coef0 = np.linalg.solve(r, proj.reshape(G, ntrend, U).transpose(1, 0, 2).reshape(ntrend, G * U))[0]
        coef0 = coef0.reshape(G, U)
        zc = Z - Z.mean(axis=1, keepdims=True)
        tss = np.einsum("gnu,gnu->gu", zc, zc)
    else:
        lev = Z
        coef0 = np.zeros((G, U))
        tss = np.einsum("gnu,gnu->gu", Z, Z)
    dif = np.diff(lev, axis=1)
    levT = lev.transpose(0, 2, 1)
    difT = dif.transpose(0, 2, 1)
    K = L + 1
    F = np.empty((K, G, U, U))
    B = np.empty((K, G, U, U))
    for k in range(K):
        np.matmul(difT[:, :, k:], dif[:, : m - k], out=F[k])
        np.matmul(levT[:, :, L:m], dif[:, L - k : m - k], out=B[k])
    C = np.matmul(levT[:, :, L:m], lev[:, L:m])
    S = np.matmul(levT, lev)
    return _Sums(F, B, C, S, lev, dif, coef0, tss, n, L)


def _direct_sums(e: np.ndarray, L: int):
    """F, Bv, C of `_adf_from_sums` straight from residuals e (P, n)."""
    d = np.diff(e, axis=1)
    m = d.shape[1]
    F = np.stack([np.einsum("pt,pt->p", d[:, k:], d[:, : m - k]) for k in range(L + 1)], axis=1)
    Bv = np.stack([np.einsum("pt,pt->p", e[:, L:m], d[:, L - k : m - k]) for k in range(L + 1)], axis=1)
    C = np.einsum("pt,pt->p", e[:, L:m], e[:, L:m])
    return F, Bv, C


def _combine(M: np.ndarray, g, a, c, b) -> np.ndarray:
    """Σ (u_a - b u_c)(v_a - b v_c) from the symbol sums M[..., g, u, v], per pair (batch dim last → first)."""
    out = M[..., g, a, a] - b * (M[..., g, a, c] + M[..., g, c, a]) + b * b * M[..., g, c, c]
    return np.moveaxis(out, -1, 0) if out.ndim > 1 else out


# ------------------------------------------------------------------------------------ residual ADF
def _adf_from_sums(F, Bv, C, eh, dh, dt, m: int, L: int, autolag: str | None):
    """ADF (no deterministic terms) on residuals e given their lagged sums, for P pairs at once.

    F (P, K): Σ_{s=k}^{m-1} d[s]d[s-k]; Bv (P, K): Σ_{t=L}^{m-1} e[t]d[t-j]; C (P,): Σ_{t=L}^{m-1} e[t]²;
    eh, dh (P, L): e[0:L], d[0:L]; dt (P, L): d[m-L:m]. Returns (stat, lag), as `stattests._adf_core`.
    """
    P = F.shape[0]
    K = L + 1
    if L == 0:
        G = np.empty((P, 2, 2))
        G[:, 0, 0], G[:, 0, 1], G[:, 1, 0], G[:, 1, 1] = C, Bv[:, 0], Bv[:, 0], F[:, 0]
        lag = np.zeros(P, dtype=int)
        return _refit_stat(G, lag, L, m), lag
    # Head / tail partial sums of d[s] d[s-k] for the exact window of each Gram entry.
    hp = np.zeros((P, K, L + 1))
    tp = np.zeros((P, K, L + 1))
    for k in range(K):
        if k < L:
            hp[:, k, k + 1:] = np.cumsum(dh[:, k:] * dh[:, : L - k], axis=1)
            prod = dt[:, k:] * dt[:, : L - k]                     # r = k..L-1
            tp[:, k, k:L] = np.cumsum(prod[:, ::-1], axis=1)[:, ::-1]
    idx = np.arange(K)
    I, J = np.meshgrid(idx, idx, indexing="ij")
    kk, ii = np.abs(J - I), np.minimum(I, J)
    A = F[:, kk] - hp[:, kk, L - ii] - tp[:, kk, L - ii]          # A[i, j] = Σ_{t=L}^{m-1} d[t-i] d[t-j]
    order = np.r_[1:K, 0]                                           # columns d_{t-1}..d_{t-L}, then d_t
    G = np.empty((P, K + 1, K + 1))
    G[:, 0, 0] = C
    G[:, 0, 1:] = Bv[:, order]
    G[:, 1:, 0] = Bv[:, order]
    G[:, 1:, 1:] = A[:, order][:, :, order]
    nobs = m - L
    if autolag is None:
        lag = np.full(P, L, dtype=int)
    else:
        sd = np.sqrt(np.einsum("pii->pi", G))
        Gn = G / (sd[:, :, None] * sd[:, None, :])
        R = _cholesky_upper(Gn)
        qty = R[:, :K, K] * sd[:, K:K + 1]
        rss_full = (R[:, K, K] * sd[:, K]) ** 2
        tail = np.concatenate([np.cumsum((qty * qty)[:, ::-1], axis=1)[:, ::-1], np.zeros((P, 1))], axis=1)
        p = np.arange(1, K + 1)
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
        # Longest sample for the chosen lag: add the head rows t = lag..L-1 to the Gram.
        H = np.zeros((P, L, K + 1))
        H[:, :, 0] = eh
        H[:, :, K] = dh
        for j in range(1, K):
            H[:, j:, j] = dh[:, : L - j]
        H *= (np.arange(L)[None, :] >= lag[:, None])[:, :, None]
        G = G + np.matmul(H.transpose(0, 2, 1), H)
    return _refit_stat(G, lag, L, m), lag


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


def _refit_stat(G: np.ndarray, lag: np.ndarray, L: int, m: int) -> np.ndarray:
    """t-statistic of the level coefficient with `lag` lagged differences from the Gram G (order
    [level, d_{t-1}..d_{t-L}, d_t]) of each pair's own sample (m - lag rows)."""
    K = L + 1
    stat = np.full(G.shape[0], np.nan)
    for q in np.unique(lag):
        sel = np.flatnonzero(lag == q)
        cols = np.r_[1:q + 1, 0, K]
        sub = G[sel][:, cols][:, :, cols]
        sd = np.sqrt(np.einsum("pii->pi", sub))
        R = _cholesky_upper(sub / (sd[:, :, None] * sd[:, None, :]))
        k = q + 1
        sigma = np.abs(R[:, k, k]) / math.sqrt(m - q - k)
        stat[sel] = R[:, k - 1, k] / sigma
    return stat


def _eg_window(Z: np.ndarray, pg, pa, pc, ntrend: int, autolag, maxlag, both: bool):
    """Engle-Granger of leg a on leg c (and c on a when `both`) for pairs (pg, pa, pc) of the blocks Z."""
    n = Z.shape[1]
    L = _default_maxlag(n) if maxlag is None else min(maxlag, _lag_limit(n))
    sums = _block_sums(Z, ntrend, L)
    out = {"sums": sums}
    for name, y, x in (("fwd", pa, pc), ("rev", pc, pa))[: 2 if both else 1]:
        out[name] = _eg_orientation(sums, pg, y, x, autolag)
    return out


def _eg_orientation(s: _Sums, pg, y, x, autolag):
    n, L = s.n, s.L
    m = n - 1
    syy, sxy, sxx = s.S[pg, y, y], s.S[pg, y, x], s.S[pg, x, x]
    with np.errstate(divide="ignore", invalid="ignore"):
        b = sxy / sxx
        rss = syy - b * sxy
        tss = s.tss[pg, y]
        r2 = np.where(tss > 0, 1.0 - rss / tss, 1.0)
    collinear = ~(r2 < _COLLINEAR_R2)
    # Near-collinear legs: the expansion of the residual sums cancels digits; sum the residuals directly.
    direct = ~collinear & (r2 > _DIRECT_R2)
    stat = np.full(pg.shape[0], -np.inf)
    lag = np.zeros(pg.shape[0], dtype=int)
    ok = np.flatnonzero(~collinear)
    for start in range(0, ok.size, _BATCH_PAIRS):
        sel = ok[start:start + _BATCH_PAIRS]
        g, a, c, bb = pg[sel], y[sel], x[sel], b[sel]
        F = _combine(s.F, g, a, c, bb)
        Bv = _combine(s.B, g, a, c, bb)
        C = _combine(s.C, g, a, c, bb)
        near = np.flatnonzero(direct[sel])
        if near.size:
            e = s.lev[g[near], :, a[near]] - bb[near, None] * s.lev[g[near], :, c[near]]
            F[near], Bv[near], C[near] = _direct_sums(e, L)
        eh = (s.lev[g, :L, a] - bb[:, None] * s.lev[g, :L, c]) if L else np.empty((sel.size, 0))
        dh = (s.dif[g, :L, a] - bb[:, None] * s.dif[g, :L, c]) if L else np.empty((sel.size, 0))
        dt = (s.dif[g, m - L:, a] - bb[:, None] * s.dif[g, m - L:, c]) if L else np.empty((sel.size, 0))
        st, lg = _adf_from_sums(F, Bv, C, eh, dh, dt, m, L, autolag)
        stat[sel], lag[sel] = st, lg
    return {"b": b, "stat": stat, "lag": lag, "collinear": collinear}


# ----------------------------------------------------------------------------- spread statistics
def _half_life(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(half_life, Dickey-Fuller p-value) of stattests.half_life for each column of e (n, P)."""
    lag, d = e[:-1], np.diff(e, axis=0)
    lc = lag - lag.mean(axis=0)
    dc = d - d.mean(axis=0)
    ss = np.einsum("np,np->p", lc, lc)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.einsum("np,np->p", lc, dc) / ss
        resid = dc - lam * lc
        nobs = d.shape[0]
        se = np.sqrt(np.einsum("np,np->p", resid, resid) / (nobs - 2) / ss)
        tstat = np.where(se > 0, lam / se, -np.inf)
    pvalue = mackinnon_pvalues(tstat, "c", 1)
    phi = 1.0 + lam
    mr = (lam < 0) & (phi > -1.0) & (phi < 1.0) & (pvalue < stattests.LEVEL)
    with np.errstate(divide="ignore", invalid="ignore"):
        hl = np.where(phi != 0, -math.log(2.0) / np.log(np.abs(phi)), 0.0)
    return np.where(mr, hl, np.inf), pvalue


def _hurst(e: np.ndarray) -> np.ndarray:
    """stattests.hurst(...).hurst (defaults: small-sample corrected slope) for each column of e (n, P)."""
    n = e.shape[0]
    max_lag = min(100, n // 4)
    lags = np.unique(np.round(np.geomspace(2, max_lag, 20)).astype(int))
    rms = np.sqrt(np.stack([np.mean((e[t:] - e[:-t]) ** 2, axis=0) for t in lags]))
    bad = (rms <= 0).any(axis=0) | (np.ptp(e, axis=0) == 0)
    lx = np.log(lags)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.polyfit(lx, np.log(np.where(rms > 0, rms, 1.0)), 1)[0]
    rw_slope = float(np.polyfit(lx, stattests._rw_expected_log_sd(lags, n), 1)[0])
    return np.where(bad, np.nan, slope - (rw_slope - 0.5))


# ------------------------------------------------------------------------------------ the screen
def _leg_flags(values: np.ndarray, names: list[str], min_bars: int) -> dict[str, str]:
    """Symbols that are stationary on their own (e.g. pegged coins): Dickey-Fuller p < 1 % (the half-life
    regression on the prices themselves) and Hurst < 0.45. Cointegration presumes two I(1) legs; a
    stationary leg "cointegrates" with anything through a hedge ratio near 0."""
    flags: dict[str, str] = {}
    full = ~np.isnan(values).any(axis=0)
    cols = [np.flatnonzero(full)] + [np.array([j]) for j in np.flatnonzero(~full)]
    for idx in cols:
        if idx.size == 0:
            continue
        v = values[:, idx]
        if not full[idx[0]]:
            v = v[~np.isnan(v[:, 0])]
        if v.shape[0] < min_bars:
            continue
        live = np.ptp(v, axis=0) > 0
        if not live.any():
            continue
        idx, v = idx[live], v[:, live]
        v = v - v.mean(axis=0)
        _, p = _half_life(v)
        h = _hurst(v)
        for j, pj, hj in zip(idx, p, h):
            if pj < LEG_STATIONARY_P and hj < LEG_STATIONARY_HURST:
                flags[names[j]] = f"{names[j]} is stationary on its own (Dickey-Fuller p={pj:.2g}, Hurst {hj:.2f})"
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
            Zb = Z[rows_mask][:, syms][None]
            Lb = logz[rows_mask][:, syms][None]
            local = {s: j for j, s in enumerate(syms)}
            pa = np.array([local[ia[i]] for i in idx])
            pc = np.array([local[ic[i]] for i in idx])
            a_first = np.array([plist[i][0] < plist[i][1] for i in idx])
            res = _screen_block(Zb, Lb, np.zeros(len(idx), dtype=int), pa, pc, a_first, trend, autolag, maxlag,
                                stability)
            _emit(out, idx, plist, res, pa, leg_flags)
        else:
            for i in idx:
                by_n.setdefault(int(overlap[i]), []).append(i)
    for n, idx in by_n.items():
        for start in range(0, len(idx), _BATCH_PAIRS):
            part = idx[start:start + _BATCH_PAIRS]
            masks = valid[:, ia[part]] & valid[:, ic[part]]          # (rows, B)
            rows_idx = np.nonzero(masks.T)[1].reshape(len(part), n)  # (B, n) row numbers per pair
            Zb = np.stack([Z[rows_idx, ia[part][:, None]], Z[rows_idx, ic[part][:, None]]], axis=2)
            Lb = np.stack([logz[rows_idx, ia[part][:, None]], logz[rows_idx, ic[part][:, None]]], axis=2)
            B = len(part)
            a_first = np.array([plist[i][0] < plist[i][1] for i in part])
            zeros = np.zeros(B, dtype=int)
            res = _screen_block(Zb, Lb, np.arange(B), zeros, zeros + 1, a_first, trend, autolag, maxlag, stability)
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


def _screen_block(Z, logz, pg, pa, pc, a_first, trend, autolag, maxlag, stability) -> dict:
    """Everything per pair for pairs (pg, pa, pc) of blocks Z (G, n, U) sharing n bars; a_first: the
    name of leg a sorts first (tie-break of the orientation)."""
    ntrend = _NTREND[trend]
    G, n, U = Z.shape
    P = pg.shape[0]
    const = np.ptp(Z, axis=1) == 0                                  # (G, U)
    const_a, const_c = const[pg, pa], const[pg, pc]
    nan = np.full(P, np.nan)
    out = {"n": n, "y": pa.copy(), "x": pc.copy(), "const_y": const_a, "const_x": const_c,
           "collinear": np.zeros(P, dtype=bool), "lag": np.zeros(P, dtype=int)}
    for k in ("b", "alpha", "stat", "stat_rev", "p", "p_rev", "hl", "hurst", "corr", "p1", "p2"):
        out[k] = nan.copy()
    keep = np.flatnonzero(~(const_a | const_c))
    if keep.size == 0:
        return out
    pg, pa, pc, a_first = pg[keep], pa[keep], pc[keep], a_first[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        res = _eg_window(Z, pg, pa, pc, ntrend, _AUTOLAG[autolag], maxlag, both=True)
    f, r = res["fwd"], res["rev"]
    # Orientation: the weaker of the two tests (larger statistic); exact ties: alphabetical.
    swap = (r["stat"] > f["stat"]) | ((r["stat"] == f["stat"]) & ~a_first)
    y = np.where(swap, pc, pa)
    x = np.where(swap, pa, pc)
    b = np.where(swap, r["b"], f["b"])
    stat = np.where(swap, r["stat"], f["stat"])
    stat_rev = np.where(swap, f["stat"], r["stat"])
    lag = np.where(swap, r["lag"], f["lag"])
    collinear = f["collinear"] | r["collinear"]
    s = res["sums"]
    alpha = s.coef0[pg, y] - b * s.coef0[pg, x] if ntrend else np.zeros(keep.size)
    hl = np.full(keep.size, np.nan)
    hu = np.full(keep.size, np.nan)
    ok = np.flatnonzero(~collinear)
    for start in range(0, ok.size, _BATCH_PAIRS):
        sel = ok[start:start + _BATCH_PAIRS]
        e = s.lev[pg[sel], :, y[sel]].T - b[sel] * s.lev[pg[sel], :, x[sel]].T   # (n, B): the EG residuals
        hl[sel] = _half_life(e)[0]
        hu[sel] = _hurst(e)
    rets = np.diff(logz, axis=1)
    rets = rets - rets.mean(axis=1, keepdims=True)
    rr = np.matmul(rets.transpose(0, 2, 1), rets)
    with np.errstate(divide="ignore", invalid="ignore"):
        den = np.sqrt(rr[pg, y, y] * rr[pg, x, x])
        corr = np.where(den > 0, rr[pg, y, x] / den, np.nan)
    h = n // 2
    if stability and h >= HALF_MIN_BARS and n - h >= HALF_MIN_BARS:
        for key, part in (("p1", Z[:, :h]), ("p2", Z[:, h:])):
            with np.errstate(divide="ignore", invalid="ignore"):
                w = _eg_window(part, pg, y, x, ntrend, _AUTOLAG[autolag], maxlag, both=False)["fwd"]
            out[key][keep] = mackinnon_pvalues(w["stat"], trend, 2)
    for key, val in (("y", y), ("x", x), ("b", b), ("alpha", alpha), ("stat", stat), ("stat_rev", stat_rev),
                     ("lag", lag), ("hl", hl), ("hurst", hu), ("corr", corr), ("collinear", collinear)):
        out[key][keep] = val
    out["p"][keep] = mackinnon_pvalues(stat, trend, 2)
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

    A pair is *cointegrated* when its q-value is <= fdr, the test is significant at 5 % in both halves of
    the window (when checked), and neither leg is stationary on its own. meta: `n_symbols` (else counted
    from the rows) and anything to keep with the result (timeframe, window, options).
    """
    try:
        fdr = float(fdr)
    except (TypeError, ValueError):
        raise ValueError(f"fdr must be a number in (0, 1), got {fdr!r}") from None
    if not 0 < fdr < 1:
        raise ValueError(f"fdr must be in (0, 1), got {fdr!r}")
    if not isinstance(raw, pd.DataFrame) or not set(RAW_COLUMNS) <= set(raw.columns):
        missing = sorted(set(RAW_COLUMNS) - set(getattr(raw, "columns", [])))
        raise ValueError(f"raw must be screen_chunk rows; missing columns {missing}")
    df = raw[RAW_COLUMNS].reset_index(drop=True).copy()
    dup = df[["y", "x"]].apply(lambda r: tuple(sorted(r)), axis=1).duplicated() if len(df) else pd.Series([], dtype=bool)
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
        if stable[i]:
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
