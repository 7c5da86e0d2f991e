"""Screener: every pair of a universe tested for cointegration (Engle–Granger, BH q-values), filtered, ranked;
a picked row opens on the Pairs page or becomes a z-score alert."""
from __future__ import annotations

import dataclasses

import streamlit as st

from dashboard import data, downloads, figures, screen_ui, screener, settings, ui
from dashboard.inputs import bounded_number
from dashboard.settings import LOOKBACKS, TIMEFRAMES

s = settings.current()
st.header("Screener", anchor=False)
cat = data.current_catalog(s)

with st.container(border=True):
    c = st.columns([1.7, 3, 2.6, 1, 1])  # Markets wide enough for its chips' names (spot, usdm)
    markets = list(cat.markets) or [s.market]
    chosen_markets = c[0].multiselect(
        "Markets", markets, default=[s.market if s.market in markets else markets[0]], key="sc_mkt",
        bind="query-params", on_change=screen_ui.forget_dropped_symbols,
        help="Several markets screen the union of their symbols: pairs across markets (spot against perpetual) "
             "are named market:SYMBOL.")
    market = ",".join(m for m in markets if m in chosen_markets) or (s.market if s.market in markets else markets[0])
    options = screen_ui.symbol_options(cat, market)
    asked = screen_ui.asked_symbols()
    symbols = c[1].multiselect("Symbols", options, key="sc_sym", bind="query-params",
                               placeholder=f"All {len(options)} symbols of {' and '.join(market.split(','))}",
                               on_change=screen_ui.forget_dropped_symbols,
                               help="Leave empty to screen every symbol of the market that traded in the window.")
    timeframe = c[2].segmented_control("Timeframe", TIMEFRAMES, default="1m", required=True, key="sc_tf",
                                       bind="query-params")
    lookback = c[3].selectbox("Lookback", list(LOOKBACKS), index=list(LOOKBACKS).index("24h"), key="sc_lb",
                              bind="query-params", help="Ends at the newest tick of the market.")
    fdr = bounded_number("FDR level", 0.001, 0.5, 0.05, 0.01, where=c[4], format="%.3f",
                         key="sc_fdr", bind="query-params",
                         help="False discovery rate: pairs with a Benjamini–Hochberg q-value at or under it are "
                              "called cointegrated.")
    c = st.columns([1.2, 1, 0.9, 1.3, 1.6])
    max_hl = bounded_number("Max half-life (bars, 0 = any)", 0.0, 1e6, 0.0, 10.0, where=c[0],
                            format="%g", key="sc_hl", bind="query-params")
    min_corr = bounded_number("Min correlation", 0.0, 1.0, 0.0, 0.05, where=c[1],
                              format="%.2f", key="sc_corr", bind="query-params",
                              help="Of bar log returns.")
    hurst = c[2].toggle("Hurst < 0.5", value=False, key="sc_hurst", bind="query-params",
                        help="Keep only spreads whose Hurst exponent says mean-reverting.")
    coint = c[3].toggle("Cointegrated only", value=False, key="sc_coint", bind="query-params",
                        help="q ≤ FDR, significant in both halves of the window, neither leg stationary alone.")
    open_on_pick = c[4].toggle("Open the Pairs page on row pick", value=True, key="sc_open", bind="query-params",
                               help="Off: picking a row only selects it (for the buttons below the table).")
screen_ui.note_dropped_symbols(asked, options, market)

try:
    spec = screener.ScreenSpec.make(s.source, screen_ui.origin(s), market, symbols, timeframe, lookback, fdr)
except ValueError as exc:
    ui.explain("error", f"Cannot screen: {exc}.")
    st.stop()
filters = screener.Filters(max_half_life=float(max_hl) or None, hurst_below_half=bool(hurst),
                           min_corr=float(min_corr), cointegrated_only=bool(coint))
screen_ui.go_to_pairs_if_asked()
job = screen_ui.request(s, cat, spec)


CSV_KEY = "dl-screen"


@st.fragment(run_every=s.run_every if job.finished else screen_ui.POLL_S)
def live(spec: screener.ScreenSpec, filters: screener.Filters, was_finished: bool) -> None:
    outcome = draw(spec, filters, was_finished)
    if outcome is None:
        downloads.offer(CSV_KEY).withhold("no finished screen of these symbols, timeframe and lookback yet")
    else:
        downloads.offer(CSV_KEY).set(lambda: screener.csv_bytes(outcome))


def draw(spec: screener.ScreenSpec, filters: screener.Filters, was_finished: bool) -> screener.ScreenOutcome | None:
    """The page's live part; returns the screen shown (None while there is none)."""
    cat = data.current_catalog(s)
    ui.status_line(dataclasses.replace(s, timeframe=spec.timeframe, lookback=spec.lookback), cat)
    if not ui.need_catalog(cat):
        return
    screen_ui.go_to_pairs_if_asked(in_fragment=True)
    job = screen_ui.request(s, cat, spec)
    if job.finished and not was_finished:
        st.rerun()  # slow the fragment down to the refresh interval now that the screen is done
    outcome = screen_ui.progress(job, spec)
    if outcome is None:
        return
    if spec.clipped:
        st.caption(f"Lookback clipped to {settings.MAX_BARS:,} bars of {spec.timeframe}; pick a coarser timeframe "
                   "for more history.")
    if outcome.problem:
        ui.explain(*outcome.problem)
        if outcome.result is None:
            return
    pairs = outcome.pairs
    kept = screener.apply_filters(pairs, filters, spec.fdr)
    res = outcome.result
    m = st.columns(6)
    m[0].metric("Symbols", f"{outcome.n_symbols}")
    m[1].metric("Pairs screened", f"{res.n_pairs:,}", help=f"{res.n_tested:,} had enough bars to test")
    m[2].metric(f"Significant (q ≤ {spec.fdr:g})", f"{res.n_significant:,}")
    m[3].metric("Cointegrated", f"{res.n_cointegrated:,}", help="Significant, in both halves of the window too, "
                                                                "and neither leg stationary on its own")
    m[4].metric("Pass the filters", f"{len(kept):,}")
    m[5].metric("Bars", f"{outcome.n_bars:,}", help=f"{spec.timeframe} bars from {outcome.start:%Y-%m-%d %H:%M} "
                                                    f"to {outcome.end:%Y-%m-%d %H:%M} UTC")
    screen_ui.pairs_table(kept, pairs, spec, filters, open_on=open_on_pick)
    left, right = st.columns([3, 2])
    with left:
        heat = screener.heatmap_frame(pairs, kept if len(kept) else pairs)
        if heat is None:
            st.caption("The heat map needs pairs over at least two symbols.")
        else:
            rev = f"screen:{spec.source}:{spec.market}:{spec.timeframe}:{spec.lookback}:{','.join(spec.symbols)}"
            ui.chart(figures.screen_heatmap(*heat, spec.fdr, rev), key="screen-heatmap")
    with right:
        screen_ui.pick_actions(s, spec)
        st.caption(outcome.summary() + f" · computed {outcome.finished_at:%H:%M:%S} UTC")
    return outcome


live(spec, filters, job.finished)
# outside the refreshing fragment: works on every click (dashboard.downloads); the file is named by the view, as
# the screen it holds is re-run on every refresh
downloads.button("All screened pairs (CSV)", CSV_KEY, screener.csv_name(spec, None),
                 help="Every screened pair, best first, of the screen on the page when you click.")
