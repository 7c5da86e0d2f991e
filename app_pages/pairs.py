"""Pairs: normalized prices, regression fits, hedge ratios, spread and z-score, correlation, cointegration tests."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import analysis, data, downloads, export, figures, settings, tables, ui
from dashboard.inputs import bounded_number
from dashboard.settings import Settings

s = settings.current()
st.header("Pairs", anchor=False)

top, download_slot = st.columns([6, 1], vertical_alignment="top")
with top.expander("Z-score bands", icon=":material/tune:"):
    c1, c2 = st.columns(2)
    entry = bounded_number("Entry band (|z|)", 0.5, 6.0, 2.0, 0.25, key="zin", where=c1, bind="query-params")
    exit_ = bounded_number("Exit band (|z|)", 0.0, 5.0, 0.5, 0.25, key="zout", where=c2, bind="query-params")


SERIES_KEY = "dl-pair-series"


@st.fragment(run_every=s.run_every)
def live(s: Settings, entry: float, exit_: float) -> None:
    series = downloads.offer(SERIES_KEY)
    view = _pair_view(s)
    if view is None:
        series.withhold("the Pairs page shows no analytics for this pair, timeframe and lookback")
        return
    y, x = s.pair
    rev = s.uirevision(y, x)
    _headline(view)
    legs = s.legs
    if legs and legs[0].symbol == legs[1].symbol and {legs[0].market, legs[1].market} == {"spot", "usdm"}:
        st.page_link("app_pages/basis.py", label=f"Spot against its perpetual: basis and funding of {legs[0].symbol}",
                     icon=":material/percent:")
    _prices(view, y, x, rev)
    _hedge_and_spread(s, view, y, x, rev, entry, exit_)
    _correlations(s, view, rev)
    _tests(s, view)
    series.set(lambda: export.to_csv(view.series()))


def _pair_view(s: Settings) -> analysis.PairView | None:
    """The selected pair's analytics, or None after explaining on the page why there are none."""
    cat = data.current_catalog(s)
    ui.status_line(s, cat)
    if not ui.need_catalog(cat):
        return None
    if not s.pair:
        ui.explain("no-data", "Pick two different symbols as Pair Y and Pair X in the sidebar.")
        return None
    y, x = s.pair
    res = data.pair_bars(s, cat, universe=True)
    ui.explain(res.state, res.message)
    if not res.ok:
        return None
    closes = data.closes(res.value)
    missing = [sym for sym in (y, x) if sym not in closes.columns]
    if missing:
        ui.explain("no-data", f"No {' or '.join(missing)} trades in the last {s.lookback} of {data.legs_where(s)}. "
                              "Pick a longer lookback or another pair.")
        return None
    view, reason = analysis.pair_view_or_reason(data.view_key(s, cat), closes, y, x, s.hedge_method, s.window,
                                                s.timeframe)
    if view is None:
        ui.explain("short", reason)
    return view


def _headline(view: analysis.PairView) -> None:
    summ = view.summary
    m = st.columns(5)
    fit = view.fits.get("OLS")
    m[0].metric("β (OLS, window)", f"{fit.beta:.4f}" if fit else "—")
    m[1].metric("Latest z-score", f"{view.zscore.dropna().iloc[-1]:+.2f}"
                if view.zscore is not None and view.zscore.notna().any() else "—")
    m[2].metric("Half-life", "—" if summ is None else
                ("∞" if summ.half_life.half_life == float("inf") else f"{summ.half_life.half_life:.1f} bars"))
    m[3].metric("Engle-Granger p", "—" if summ is None else f"{summ.engle_granger.pvalue:.3f}")
    m[4].metric("Return correlation", "—" if summ is None else f"{summ.correlation:.3f}")
    for note in view.notes:
        st.caption(f":material/info: Not enough bars for everything: {note}. Pick a longer lookback, a finer "
                   "timeframe or a shorter window.")


def _prices(view: analysis.PairView, y: str, x: str, rev: str) -> None:
    left, right = st.columns(2)
    with left:
        ui.chart(figures.normalized(view.closes, rev), key="pairs-normalized")
    with right:
        ui.chart(figures.scatter_fits(view.closes[x], view.closes[y],
                                      {k: (f.alpha, f.beta) for k, f in view.fits.items()}, x, y, rev),
                 key="pairs-scatter")


def _hedge_and_spread(s: Settings, view: analysis.PairView, y: str, x: str, rev: str, entry: float,
                      exit_: float) -> None:
    index = view.closes.index
    betas = {f"static {k}": pd.Series(f.beta, index=index) for k, f in view.fits.items()}
    if view.rolling is not None:
        betas[f"rolling OLS ({s.window})"] = view.rolling["beta"]
    if view.kalman is not None:
        betas["Kalman"] = view.kalman.beta
    ui.chart(figures.lines(betas, rev, f"Hedge ratio β of {y} on {x}"), key="pairs-hedge")
    if view.spread is not None:
        label = {"ols": "OLS", "huber": "Huber", "theil_sen": "Theil-Sen", "rolling": "rolling OLS",
                 "kalman": "Kalman innovation"}[s.hedge_method]
        st.caption(f"Spread = {y} − α − β·{x} with the **{label}** hedge. "
                   + analysis.SPREAD_TIMING[s.hedge_method].format(window=s.window))
        ui.chart(figures.spread_z(view.spread, view.zscore, entry, exit_, rev), key="pairs-spread")


def _correlations(s: Settings, view: analysis.PairView, rev: str) -> None:
    left, right = st.columns(2)
    with left:
        if view.correlation is not None:
            ui.chart(figures.lines({"correlation": view.correlation}, rev,
                                   f"Rolling correlation of log returns ({s.window} bars)", yformat=".3f",
                                   hlines=(0.0,)),
                     key="pairs-corr")
    with right:
        if view.heatmap is not None:
            ui.chart(figures.heatmap(view.heatmap, f"heat:{s.market}:{s.timeframe}"), key="pairs-heatmap")


def _tests(s: Settings, view: analysis.PairView) -> None:
    st.subheader("Stationarity and cointegration", anchor=False)
    summ = view.summary
    if summ is None:
        ui.explain("short", f"The tests need at least {analysis.min_bars_for_tests(s.window)} bars; the window has "
                            f"{len(view.closes)}. Pick a longer lookback, a finer timeframe or a shorter window.")
    else:
        st.table(tables.static_table(tables.tests_table(summ), tables.TESTS_COLUMNS, hide_index=True))


live(s, float(entry), float(exit_))
if s.pair:  # outside the refreshing fragment: works on every click (dashboard.downloads)
    downloads.button("Analytics series (CSV)", SERIES_KEY,
                     export.filename("pair", *s.pair, s.timeframe, s.hedge_method), where=download_slot,
                     help="Closes, β, spread and z-score of the view below, as on the page when you click.")
