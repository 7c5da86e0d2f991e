"""Backtest: z-score mean reversion on the sidebar pair — parameter form, equity, drawdown, trades, stats."""
from __future__ import annotations

import streamlit as st

from dashboard import analysis, data, export, figures, settings, tables, ui
from dashboard.settings import Settings

s = settings.current()
st.header("Backtest", anchor=False)

with st.form("bt-form", border=True):
    c = st.columns(5)
    entry = c[0].number_input("Entry |z|", 0.5, 6.0, 2.0, 0.25, key="bt_entry", bind="query-params")
    exit_ = c[1].number_input("Exit |z|", 0.0, 5.0, 0.5, 0.25, key="bt_exit", bind="query-params")
    stop = c[2].number_input("Stop |z| (0 = none)", 0.0, 20.0, 4.0, 0.5, key="bt_stop", bind="query-params")
    cost = c[3].number_input("Cost (bps per leg, per side)", 0.0, 100.0, 1.0, 0.5, key="bt_cost",
                             bind="query-params")
    capital = c[4].number_input("Capital", 100.0, 1e9, 10_000.0, 1_000.0, key="bt_capital", bind="query-params")
    st.form_submit_button("Run backtest", icon=":material/play_arrow:", type="primary")

HEDGE_WORDS = {"static": "one {m} fit on the first {w} bars (formation period), trading after it",
               "rolling": "rolling {m} over the last {w} bars",
               "kalman": "Kalman-filtered α, β (warm-up {w} bars, noise relative to the data); the spread is the "
                         "filtered residual, smaller than the static OLS spread as the filter absorbs part of "
                         "each move (the z-score is relative, so the bands still count standard deviations)"}


@st.fragment(run_every=s.run_every)
def live(s: Settings, params: analysis.BacktestParams) -> None:
    cat = data.current_catalog(s)
    ui.status_line(s, cat)
    if not ui.need_catalog(cat):
        return
    if not s.pair:
        ui.explain("no-data", "Pick two different symbols as Pair Y and Pair X in the sidebar.")
        return
    y, x = s.pair
    hedge, method = analysis.backtest_hedge(s.hedge_method)
    st.caption(f"Long / short the spread {y} − β·{x} on its {s.window}-bar z-score; β: "
               + HEDGE_WORDS[hedge].format(m=method.replace("_", "-").upper() if method == "ols" else method,
                                           w=s.window)
               + ". Signals at a bar's close fill at the next bar's close; costs per leg and side. Sharpe is "
                 "annualized by the bars' observed rate (365-day year), holding times are clock time.")
    res = data.bars(s, (y, x), cat)
    ui.explain(res.state, res.message)
    if not res.ok:
        return
    closes = data.closes(res.value)
    missing = [sym for sym in (y, x) if sym not in closes.columns]
    if missing:
        ui.explain("no-data", f"No {' or '.join(missing)} trades in the last {s.lookback} of the {s.market} data.")
        return
    n = len(closes.dropna())
    need = analysis.min_bars_for_backtest(s.window)
    if n < need:
        ui.explain("short", f"The backtest needs at least {need} bars (window {s.window} + 2); the lookback has {n}. "
                            "Pick a longer lookback, a finer timeframe or a shorter window.")
        return
    result, reason = analysis.backtest_or_reason(data.view_key(s, cat), closes, y, x, s.hedge_method, s.window,
                                                 s.timeframe, params)
    if result is None:
        ui.explain("error", reason)
        return

    st_ = result.stats
    m = st.columns(5)
    m[0].metric("Total return", f"{st_.total_return:+.2%}")
    m[1].metric("Sharpe (ann.)", "—" if st_.sharpe != st_.sharpe else f"{st_.sharpe:.2f}")
    m[2].metric("Max drawdown", f"{st_.max_drawdown:.2%}")
    m[3].metric("Hit rate", "—" if st_.hit_rate != st_.hit_rate else f"{st_.hit_rate:.0%}")
    m[4].metric("Trades", f"{st_.n_trades}")
    ui.chart(figures.equity(result.equity, analysis.drawdown(result.equity), s.uirevision(y, x, "bt"),
                            result.trades), key="bt-equity")
    left, right = st.columns([3, 1])
    with left:
        st.subheader("Trades", anchor=False)
        if result.trades.empty:
            st.caption(f"No trades: |z| never crossed {params.entry_z} in this window.")
        else:
            st.dataframe(result.trades, hide_index=True, width="stretch", column_config=tables.TRADES_COLUMNS)
        st.download_button("Trades (CSV)", data=lambda: export.to_csv(result.trades),
                           file_name=export.filename("trades", y, x, s.timeframe, s.hedge_method), mime="text/csv",
                           icon=":material/download:", on_click="ignore", key="dl-bt-trades",
                           disabled=result.trades.empty)
    with right:
        st.subheader("Stats", anchor=False)
        st.dataframe(tables.backtest_stats(st_), hide_index=True, width="stretch")


live(s, analysis.BacktestParams(entry_z=float(entry), exit_z=float(exit_), stop_z=float(stop) or None,
                                cost_bps=float(cost), capital=float(capital)))
