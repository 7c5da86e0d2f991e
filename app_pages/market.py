"""Market: candles + volume with SMA/EMA overlays, RSI and volatility panels, window stats, all-symbol summary."""
from __future__ import annotations

import streamlit as st

from dashboard import data, downloads, export, figures, settings, tables, ui
from dashboard.inputs import bounded_number
from dashboard.market import market_indicators
from dashboard.settings import Settings

s = settings.current()
st.header("Market", anchor=False)

top, download_slot = st.columns([6, 1], vertical_alignment="top")
with top.expander("Indicators", icon=":material/tune:"):
    c1, c2, c3 = st.columns(3)
    sma_n = bounded_number("SMA length (bars)", 2, 1000, 20, key="sma", where=c1, bind="query-params")
    ema_n = bounded_number("EMA length (bars)", 2, 1000, 50, key="ema", where=c2, bind="query-params")
    rsi_n = bounded_number("RSI length (bars)", 2, 200, 14, key="rsi", where=c3, bind="query-params")
    st.caption(f"Volatility: standard deviation of log returns over the sidebar window ({s.window} bars), "
               "annualized over a 365-day year.")


BARS_KEY = "dl-market-bars"
PICK_KEY, PICK_DONE = "sum_pick", "sum_pick_done"


@st.fragment(run_every=s.run_every)
def live(s: Settings, sma_n: int, ema_n: int, rsi_n: int) -> None:
    frames = draw(s, sma_n, ema_n, rsi_n)
    if frames is None:
        downloads.offer(BARS_KEY).withhold("the Market page shows no bars for these symbols, timeframe and lookback")
    else:
        downloads.offer(BARS_KEY).set(lambda: export.bars_csv(frames))


def draw(s: Settings, sma_n: int, ema_n: int, rsi_n: int) -> dict | None:
    """The page's live part; returns the bars drawn (per symbol), None when there are none."""
    cat = data.current_catalog(s)
    ui.status_line(s, cat)
    if not ui.need_catalog(cat):
        return None
    symbols = s.symbols or s.all_symbols[:1]
    if not symbols:
        ui.explain("no-data", "Pick at least one symbol in the sidebar.")
        return None
    default = s.x if s.x in symbols else symbols[0]
    focus = st.segmented_control("Chart", symbols, default=default, required=True, key="focus",
                                 bind="query-params") if len(symbols) > 1 else symbols[0]
    res = data.bars(s, symbols, cat)
    ui.explain(res.state, res.message)
    if not res.ok:
        return None
    bars = res.value[focus]
    if bars.empty:
        ui.explain("no-data", f"No {focus} trades in the last {s.lookback} of the {s.market} data. "
                              "Pick a longer lookback or another symbol.")
    else:
        close = bars["close"]
        ind = market_indicators(close, sma_n, ema_n, rsi_n, s.window, s.timeframe)
        ui.chart(figures.market(bars, focus, ind.overlays, ind.rsi, ind.volatility, s.uirevision(focus)),
                 key="market-chart")
        if len(bars) > figures.CANDLE_MAX_BARS:
            st.caption(f"{len(bars):,} bars: the price is drawn as its close inside the high–low band and the volume "
                       f"as a line (candles up to {figures.CANDLE_MAX_BARS:,} bars; zoom in or pick a coarser "
                       "timeframe for them).")
        short = [f"RSI needs more than {rsi_n} bars" if ind.rsi is None else None,
                 f"volatility needs more than {s.window} bars (the sidebar window)"
                 if ind.volatility is None and not ind.withheld else None]
        if ind.withheld:
            st.caption(f":material/block: {ind.withheld[0].upper() + ind.withheld[1:]}.")
        if any(short):
            st.caption(f"Only {len(close)} bars in the window: " + "; ".join(m for m in short if m) +
                       ". Pick a longer lookback, a finer timeframe or a shorter window.")

    st.subheader("Window stats", anchor=False)
    stats = tables.market_stats(res.value, s.tf_seconds)
    st.table(tables.static_table(stats, tables.STATS_COLUMNS))
    st.caption(tables.column_notes(tables.STATS_COLUMNS) + ".")

    st.subheader("All symbols — last 24 h", anchor=False,
                 help=f"Refreshed every {max(s.refresh_s, data.SUMMARY_MIN_S):.0f} s (from a day of 1-minute bars).")
    summary = data.summary(s, cat)
    ui.explain(summary.state, summary.message)
    if summary.ok:
        summary_table(s, tables.summary_table(summary.value))
    return res.value


def _add_to_charts(picked: list[str]) -> None:
    settings.request_view(sym=list(dict.fromkeys([*settings.current().symbols, *picked])))


def summary_table(s: Settings, table) -> None:
    """Every symbol's last 24 h, most active first: a search box, an order, how many rows, and symbols to chart."""
    c1, c2, c3 = st.columns([3, 1, 1], vertical_alignment="bottom")
    query = c1.text_input("Search symbols", key="sum_q", placeholder=f"Search {len(table):,} symbols, e.g. BTC",
                          label_visibility="collapsed")
    order = c2.selectbox("Order", list(tables.SUMMARY_ORDERS), key="sum_o", label_visibility="collapsed",
                         help="Which symbols come first (and make the top rows)")
    rows = c3.selectbox("Rows", list(tables.SUMMARY_ROWS), key="sum_n", label_visibility="collapsed",
                        help="How many of the matching symbols to list")
    shown = tables.top_summary(table, query, tables.SUMMARY_ROWS[rows], order)
    found = len(tables.search_symbols(table, query)) if query else len(table)
    st.table(tables.static_table(shown, tables.SUMMARY_COLUMNS), height=420 if len(shown) > 12 else "content")
    st.caption((f"{len(shown):,} of {found:,} matching" if query else f"{len(shown):,} of {len(table):,}") +
               f" symbols, {order} first.")
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    if st.session_state.pop(PICK_DONE, False):
        st.session_state[PICK_KEY] = []
    # a pick stays an option while the live list reorders under it
    kept = [p for p in st.session_state.get(PICK_KEY, []) if isinstance(p, str)]
    options = list(dict.fromkeys([*kept, *(sym for sym in shown.index if sym not in s.symbols)]))
    picked = c1.multiselect("Add to the charts", options, key=PICK_KEY, placeholder="Pick listed symbols to chart",
                            label_visibility="collapsed")
    new = [p for p in picked if p not in s.symbols]
    if c2.button(f"Chart {len(new)} selected" if new else "Chart selected", disabled=not new, key="sum_chart",
                 icon=":material/add_chart:", help="Add the picked symbols to the sidebar's Symbols"):
        _add_to_charts(new)
        st.session_state[PICK_DONE] = True
        st.rerun(scope="app")


live(s, int(sma_n), int(ema_n), int(rsi_n))
if s.symbols or s.all_symbols:  # outside the refreshing fragment: works on every click (dashboard.downloads)
    downloads.button("Bars (CSV)", BARS_KEY,
                     export.filename("bars", s.market, s.timeframe, *(s.symbols or s.all_symbols[:1])),
                     help="The bars of the symbols picked in the sidebar over the lookback, as on the page when you "
                          "click.", where=download_slot)
