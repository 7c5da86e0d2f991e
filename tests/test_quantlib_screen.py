"""quantlib.screen: the batched pair screen, pinned per pair to stattests (itself pinned to statsmodels)."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests
from statsmodels.tsa.adfvalues import mackinnonp
from statsmodels.tsa.stattools import coint

from quantlib import screen, stattests


def _ou(rng, n, phi, sd):
    s = np.zeros(n)
    e = rng.normal(0, sd, n)
    for t in range(1, n):
        s[t] = phi * s[t - 1] + e[t]
    return s


def universe(n=600, k=8, seed=0, ragged=False) -> pd.DataFrame:
    """k random walks sharing a market factor, plus two cointegrated partners (fast and slow reversion);
    prices spread over four orders of magnitude. `ragged`: a late listing and scattered missing bars."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")
    f = np.cumsum(rng.normal(0, 1e-3, n))
    cols = {f"S{j}": np.cumsum(rng.normal(0, 1e-3, n)) + 0.5 * f for j in range(k)}
    cols["C0"] = 0.3 + 1.2 * cols["S0"] + _ou(rng, n, 0.9, 5e-4)
    cols["C1"] = -0.1 + 0.8 * cols["S1"] + _ou(rng, n, 0.98, 5e-4)
    df = pd.DataFrame({c: 10.0 ** (j % 5 - 2) * np.exp(v) for j, (c, v) in enumerate(cols.items())}, index=idx)
    if ragged:
        df.iloc[: n // 10, 2] = np.nan
        df.iloc[rng.choice(n, n // 20, replace=False), 3] = np.nan
        df.iloc[rng.choice(n, n // 30, replace=False), 4] = np.nan
        df.iloc[rng.choice(n, n // 30, replace=False), -1] = np.nan
    return df


def all_pairs(df):
    cols = list(df.columns)
    return [(a, b) for i, a in enumerate(cols) for b in cols[i + 1:]]


def reference(df, y, x, **kw):
    both = np.log(df[[y, x]].dropna())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return stattests.engle_granger(both[y], both[x], **kw), stattests.engle_granger(both[x], both[y], **kw), both


@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("autolag", ["AIC", None])
def test_each_pair_equals_engle_granger_half_life_hurst(ragged, autolag):
    df = universe(k=6, ragged=ragged)
    raw = screen.screen_chunk(df, all_pairs(df), autolag=autolag)
    assert len(raw) == 28 and (raw["status"] == "ok").all()
    checked = set()
    for r in raw.itertuples():
        eg, egr, both = reference(df, r.y, r.x, autolag=autolag)
        assert r.n_bars == len(both)
        assert r.eg_stat == pytest.approx(eg.statistic, rel=1e-8, abs=1e-8)
        assert r.eg_pvalue == pytest.approx(eg.pvalue, abs=1e-8)
        assert r.eg_lags == eg.lags
        if eg.pvalue <= screen.DETAIL_MAX_P or egr.pvalue <= screen.DETAIL_MAX_P and r.y > r.x:
            # a pair that could be significant: both regressions run, the weaker one is reported
            assert r.eg_stat_reverse == pytest.approx(egr.statistic, rel=1e-8, abs=1e-8)
            assert r.eg_pvalue_reverse == pytest.approx(egr.pvalue, abs=1e-8)
            assert eg.statistic >= egr.statistic - 1e-9
        else:  # p > 0.25 in the alphabetical orientation: nothing left to decide
            assert r.y < r.x and np.isnan(r.eg_stat_reverse) and np.isnan(r.eg_pvalue_reverse)
        assert r.hedge_ratio == pytest.approx(eg.beta, rel=1e-8)
        assert r.alpha == pytest.approx(eg.alpha, rel=1e-8, abs=1e-10)
        hl = stattests.half_life(eg.residuals).half_life
        assert r.half_life_bars == pytest.approx(hl, rel=1e-8) or (np.isinf(hl) and np.isinf(r.half_life_bars))
        assert r.hurst == pytest.approx(stattests.hurst(eg.residuals).hurst, abs=1e-8)
        ry, rx = np.diff(both[r.y].to_numpy()), np.diff(both[r.x].to_numpy())
        assert r.corr == pytest.approx(np.corrcoef(ry, rx)[0, 1], abs=1e-10)
        h = len(both) // 2
        for col, part in (("eg_pvalue_first", slice(None, h)), ("eg_pvalue_second", slice(h, None))):
            if r.eg_pvalue > screen.DETAIL_MAX_P:
                assert np.isnan(getattr(r, col))
                continue
            ref = stattests.engle_granger(both[r.y].iloc[part], both[r.x].iloc[part], autolag=autolag).pvalue
            assert getattr(r, col) == pytest.approx(ref, abs=1e-8)
            checked.add(col)
    assert checked == {"eg_pvalue_first", "eg_pvalue_second"}


@pytest.mark.parametrize("trend", ["n", "ct"])
def test_other_trends_equal_engle_granger(trend):
    df = universe(n=300, seed=3)
    raw = screen.screen_chunk(df, all_pairs(df)[:20], trend=trend, stability=False)
    for r in raw.itertuples():
        eg, egr, _ = reference(df, r.y, r.x, trend=trend)
        assert r.eg_stat == pytest.approx(eg.statistic, rel=1e-8, abs=1e-8)
        if not np.isnan(r.eg_stat_reverse):
            assert r.eg_stat_reverse == pytest.approx(egr.statistic, rel=1e-8, abs=1e-8)
        assert r.hedge_ratio == pytest.approx(eg.beta, rel=1e-8)
        assert r.alpha == pytest.approx(eg.alpha, rel=1e-7, abs=1e-9)
        assert np.isnan(r.eg_pvalue_first)


def test_statsmodels_coint_is_the_independent_reference():
    df = universe(n=500, seed=7)
    raw = screen.screen_chunk(df, [("S0", "C0"), ("S2", "S5"), ("C1", "S1")], stability=False)
    for r in raw.itertuples():
        both = np.log(df[[r.y, r.x]])
        stat, p, _ = coint(both[r.y], both[r.x], trend="c", autolag="aic")
        assert r.eg_stat == pytest.approx(stat, rel=1e-8)
        assert r.eg_pvalue == pytest.approx(p, abs=1e-8)


def test_level_prices_option_matches_engle_granger_on_levels():
    df = universe(n=400, seed=11)
    raw = screen.screen_chunk(df, [("S0", "C0"), ("S3", "S4")], log_prices=False)
    for r in raw.itertuples():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            eg = stattests.engle_granger(df[r.y], df[r.x])
        assert r.eg_stat == pytest.approx(eg.statistic, rel=1e-8)
        assert r.hedge_ratio == pytest.approx(eg.beta, rel=1e-8)


def test_near_collinear_legs_stay_exact():
    rng = np.random.default_rng(5)
    n = 1500
    x = np.cumsum(rng.normal(0, 1e-3, n))
    cols = {"X": x}
    for j, sc in enumerate([1e-4, 1e-5, 3e-6]):
        cols[f"RW{j}"] = x + np.cumsum(rng.normal(0, sc, n))
        cols[f"OU{j}"] = 2 + 0.7 * x + _ou(rng, n, 0.99, sc)
    df = pd.DataFrame({k: np.exp(v) for k, v in cols.items()},
                      index=pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC"))
    raw = screen.screen_chunk(df, [("X", c) for c in df.columns[1:]], stability=False)
    for r in raw.itertuples():
        eg, _, _ = reference(df, r.y, r.x)
        if r.status == "collinear":
            assert eg.statistic == -np.inf
        else:
            assert r.eg_stat == pytest.approx(eg.statistic, rel=1e-9)


def test_mackinnon_pvalues_equal_statsmodels():
    s = np.r_[np.linspace(-25, 4, 301), -np.inf, np.nan]
    for reg in ("c", "n", "ct", "ctt"):
        for n_series in (1, 2):
            got = screen.mackinnon_pvalues(s, reg, n_series)
            ref = np.array([mackinnonp(v, reg, n_series) if np.isfinite(v) or v == -np.inf else np.nan for v in s])
            np.testing.assert_array_equal(got[:-1], ref[:-1])
            assert np.isnan(got[-1])


def test_benjamini_hochberg_equals_statsmodels_and_skips_nan():
    rng = np.random.default_rng(1)
    p = np.r_[rng.uniform(0, 1, 300), rng.uniform(0, 1e-3, 20), [0.0, 1.0, 0.5, 0.5]]
    ref = multipletests(p, method="fdr_bh")[1]
    np.testing.assert_allclose(screen.benjamini_hochberg(p), ref, rtol=1e-12, atol=0)
    with_nan = np.r_[p[:10], np.nan, p[10:], np.nan]
    q = screen.benjamini_hochberg(with_nan)
    assert np.isnan(q[10]) and np.isnan(q[-1])
    np.testing.assert_allclose(q[~np.isnan(q)], ref, rtol=1e-12)
    assert screen.benjamini_hochberg([]).size == 0
    assert np.isnan(screen.benjamini_hochberg([np.nan])).all()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        screen.benjamini_hochberg([0.2, 1.5])


def test_result_is_independent_of_input_order():
    df = universe(ragged=True)
    a = screen.screen_pairs(df).pairs
    perm = df[df.columns[::-1]]
    b = screen.screen_pairs(perm).pairs
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-10)
    swapped = screen.screen_chunk(df, [(x, y) for y, x in all_pairs(df)])
    direct = screen.screen_chunk(df, all_pairs(df))
    pd.testing.assert_frame_equal(swapped, direct, check_exact=False, rtol=1e-10)


def test_screen_finds_the_cointegrated_pair_and_ranks_it_first():
    df = universe(n=1500, seed=2)
    res = screen.screen_pairs(df, fdr=0.05)
    assert list(res.pairs.columns[: len(screen.SCREEN_COLUMNS)]) == screen.SCREEN_COLUMNS
    assert {"alpha", "eg_pvalue_first", "eg_pvalue_second", "stable", "cointegrated"} <= set(res.pairs.columns)
    top = res.pairs.iloc[0]
    assert {top["y"], top["x"]} == {"S0", "C0"}
    assert top["cointegrated"] and top["verdict"].startswith("cointegrated (q")
    assert "half-life" in top["verdict"]
    assert res.n_pairs == 45 == res.n_tested and res.n_symbols == 10
    assert res.n_significant >= res.n_cointegrated >= 1
    assert (res.pairs["eg_qvalue"] >= res.pairs["eg_pvalue"] - 1e-15).all()
    np.testing.assert_allclose(res.pairs["eg_qvalue"], multipletests(res.pairs["eg_pvalue"], method="fdr_bh")[1])
    assert "significant at FDR 0.05" in res.summary() and len(res.top(3)) == 3
    assert list(res.top(3).columns) == screen.SCREEN_COLUMNS
    chunked = [screen.screen_chunk(df, c) for c in screen.pair_chunks(list(df.columns), 7)]
    again = screen.finalize_screen(pd.concat(chunked, ignore_index=True), 0.05, n_symbols=10)
    pd.testing.assert_frame_equal(again.pairs, res.pairs)
    assert pickle.loads(pickle.dumps(res)).pairs.equals(res.pairs)
    loose = screen.finalize_screen(pd.concat(chunked, ignore_index=True), 0.9).pairs
    above = loose[(loose["eg_pvalue"] > screen.DETAIL_MAX_P) & (loose["eg_qvalue"] <= 0.9)]
    assert len(above) and above["verdict"].str.contains("one orientation and no halves tested").all()


def test_too_few_bars_and_constant_legs_are_reported_not_dropped():
    df = universe(n=300, k=4, seed=4)
    df["NEW"] = np.nan
    df.iloc[-37:, df.columns.get_loc("NEW")] = np.exp(np.cumsum(np.random.default_rng(0).normal(0, 1e-3, 37)))
    df["FLAT"] = 1.0
    res = screen.screen_pairs(df)
    rows = res.pairs
    assert res.n_pairs == 28
    new = rows[(rows["y"] == "NEW") | (rows["x"] == "NEW")]
    assert len(new) == 7 and (new["verdict"] == "too few bars (37 < 100)").all()
    assert new["eg_pvalue"].isna().all() and new["eg_qvalue"].isna().all()
    flat = rows[((rows["y"] == "FLAT") | (rows["x"] == "FLAT")) & (rows["n_bars"] >= 100)]
    assert len(flat) == 6 and (flat["verdict"] == "constant price: FLAT").all()
    assert not rows.loc[flat.index, "cointegrated"].any()
    assert res.n_tested == 28 - 7 - 6
    assert rows.tail(13)["status"].isin(["too_few_bars", "constant_leg"]).all()  # untestable rows last


def test_pegged_coin_is_not_reported_cointegrated():
    rng = np.random.default_rng(8)
    n = 1440
    df = universe(n=n, k=4, seed=8)
    df["USDC"] = 1.0 + np.round(rng.normal(0, 1e-4, n), 4)   # pegged: ticks around 1.0000
    res = screen.screen_pairs(df)
    usdc = res.pairs[(res.pairs["y"] == "USDC") | (res.pairs["x"] == "USDC")]
    assert len(usdc) == 6
    # USDC on anything: the residual is the peg's noise, so that regression rejects strongly ...
    for other in ("S0", "C1"):
        assert reference(df, "USDC", other)[0].pvalue < 1e-3
    assert not usdc["cointegrated"].any()      # ... the screen does not call it cointegrated
    assert usdc["verdict"].str.startswith("not a cointegration: USDC is stationary on its own").all()


def test_pair_cointegrated_in_one_half_only_is_flagged_unstable():
    rng = np.random.default_rng(11)
    n = 2000
    x = np.cumsum(rng.normal(0, 1e-3, n))
    spread = np.r_[_ou(rng, n // 2, 0.5, 2e-3), np.cumsum(rng.normal(0, 1e-4, n - n // 2))]  # then a random walk
    df = pd.DataFrame({"A": np.exp(x), "B": np.exp(0.9 * x + spread)},
                      index=pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC"))
    res = screen.screen_pairs(df)
    row = res.pairs.iloc[0]
    assert row["eg_qvalue"] <= 0.05 and row["eg_pvalue_first"] < 0.01 and row["eg_pvalue_second"] > 0.05
    assert row["verdict"].startswith("unstable: cointegrated in the first half only")
    assert row["stable"] == False and not row["cointegrated"]  # noqa: E712 (pandas boolean)
    assert res.n_significant == 1 and res.n_cointegrated == 0


def test_pair_chunks_cover_every_pair_once():
    syms = [f"S{i:03d}" for i in range(53)]
    for size in (1, 5, 100, 2000):
        chunks = screen.pair_chunks(syms, size)
        flat = [tuple(sorted(p)) for c in chunks for p in c]
        assert len(flat) == len(set(flat)) == 53 * 52 // 2
        assert max(len(c) for c in chunks) <= size
    assert screen.pair_chunks(["A"]) == []
    with pytest.raises(ValueError, match="unique"):
        screen.pair_chunks(["A", "B", "A"])


def test_bad_input_says_what_was_expected():
    df = universe(n=200, k=3)
    with pytest.raises(ValueError, match="naive"):
        screen.screen_chunk(df.tz_localize(None), [("S0", "S1")])
    bad = df.copy()
    bad.iloc[3, 0] = -1.0
    with pytest.raises(ValueError, match="strictly positive"):
        screen.screen_chunk(bad, [("S0", "S1")])
    bad.iloc[3, 0] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        screen.screen_chunk(bad, [("S0", "S1")])
    with pytest.raises(ValueError, match="not a column"):
        screen.screen_chunk(df, [("S0", "NOPE")])
    with pytest.raises(ValueError, match="listed twice"):
        screen.screen_chunk(df, [("S0", "S1"), ("S1", "S0")])
    with pytest.raises(ValueError, match="itself"):
        screen.screen_chunk(df, [("S0", "S0")])
    with pytest.raises(ValueError, match="min_bars"):
        screen.screen_chunk(df, [("S0", "S1")], min_bars=5)
    with pytest.raises(ValueError, match="trend"):
        screen.screen_chunk(df, [("S0", "S1")], trend="x")
    with pytest.raises(ValueError, match="fdr"):
        screen.finalize_screen(screen.screen_chunk(df, [("S0", "S1")]), fdr=1.0)
    with pytest.raises(ValueError, match=">= 2 symbols"):
        screen.screen_pairs(df[["S0"]])
    with pytest.raises(ValueError, match="DataFrame"):
        screen.screen_pairs(df["S0"])
    empty = screen.screen_chunk(df, [])
    assert list(empty.columns) == screen.RAW_COLUMNS and empty.empty
    assert screen.finalize_screen(empty).n_pairs == 0


def test_stationary_leg_check_equals_stattests():
    """A leg is flagged when stattests.adf (constant, AIC) rejects at 1 % and stattests.hurst says mean
    reverting; random walks with heavy bar-to-bar noise (bid-ask bounce) are not flagged by that rule."""
    n = 1200
    rows, names = [], []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        rows += [np.cumsum(rng.normal(0, 1e-3, n)) + rng.normal(0, 3e-3, n),
                 np.log(1 + np.round(rng.normal(0, 1e-4, n), 4)), np.cumsum(rng.normal(0, 1e-3, n))]
        names += [f"noisy{seed}", f"peg{seed}", f"rw{seed}"]
    values = np.array(rows)
    ref = {nm for nm, v in zip(names, values)
           if stattests.adf(v, "c", "AIC").pvalue < 0.01 and stattests.hurst(v).mean_reverting}
    assert set(screen._leg_flags(values.T, names, 100)) == ref
    assert {f"peg{s}" for s in range(8)} <= ref and not any(nm.startswith("rw") for nm in ref)
    holes = values.T.copy()                      # each symbol on its own bars: missing bars in some columns
    rng = np.random.default_rng(0)
    for j in (0, 1, 4, 7):
        holes[rng.choice(n, 15 + j, replace=False), j] = np.nan
    holes[:300, 10] = np.nan
    ref_holes = {nm for nm, v in zip(names, holes.T)
                 if stattests.adf(v[~np.isnan(v)], "c", "AIC").pvalue < 0.01
                 and stattests.hurst(v[~np.isnan(v)]).mean_reverting}
    assert set(screen._leg_flags(holes, names, 100)) == ref_holes
    for al, name in (("aic", "AIC"), ("bic", "BIC"), ("t-stat", "t-stat"), (None, None)):
        ref_stat = [stattests.adf(v, "c", name).statistic for v in values[:6]]
        np.testing.assert_allclose(screen._adf_c(values[:6], al), ref_stat, rtol=1e-9)
    vr, p = screen._variance_ratio(values, 14)
    ref_vr = np.array([stattests.variance_ratio(v, 14) for v in values])
    np.testing.assert_allclose(vr, ref_vr[:, 0], rtol=1e-10)
    np.testing.assert_allclose(p, ref_vr[:, 2], rtol=1e-8, atol=1e-12)
