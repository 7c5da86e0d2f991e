"""Backtest: z-score mean reversion on the sidebar pair — single run with honest statistics, suggested thresholds
from an OU fit, walk-forward and parameter sweep. Every control is bound to the URL (bookmarkable)."""
from __future__ import annotations

import streamlit as st

from dashboard import analysis, backtest_ui, settings
from dashboard.inputs import bounded_number
from dashboard.settings import Settings

s = settings.current()
st.header("Backtest", anchor=False)

with st.form("bt-form", border=True):
    c = st.columns(5)
    entry = bounded_number("Entry |z|", 0.5, 6.0, 2.0, 0.25, where=c[0], key="bt_entry", bind="query-params")
    exit_ = bounded_number("Exit |z|", 0.0, 5.0, 0.5, 0.25, where=c[1], key="bt_exit", bind="query-params")
    stop = bounded_number("Stop |z| (0 = none)", 0.0, 20.0, 4.0, 0.5, where=c[2], key="bt_stop",
                          bind="query-params")
    cost = bounded_number("Cost (bps per leg, per side)", 0.0, 100.0, 1.0, 0.5, where=c[3], key="bt_cost",
                             bind="query-params")
    capital = bounded_number("Capital", 100.0, 1e9, 10_000.0, 1_000.0, where=c[4], key="bt_capital",
                             bind="query-params")
    st.form_submit_button("Run backtest", icon=":material/play_arrow:", type="primary")

params = analysis.BacktestParams(entry_z=float(entry), exit_z=float(exit_), stop_z=float(stop) or None,
                                 cost_bps=float(cost), capital=float(capital))
section = backtest_ui.SECTIONS[st.segmented_control(
    "Section", list(backtest_ui.SECTIONS), default="Single run", required=True, key="bt_view", bind="query-params",
    help="Walk-forward and sweep run on a submit of their form (not on every refresh).")]

sweep_params = wf_params = show_window = None
problem = None
if section == "sweep":
    with st.form("bt-sweep-form", border=True):
        c = st.columns(7)
        e0 = bounded_number("Entry from", 0.25, 6.0, 1.0, 0.25, where=c[0], key="bt_sw_e0", bind="query-params")
        e1 = bounded_number("Entry to", 0.25, 6.0, 3.0, 0.25, where=c[1], key="bt_sw_e1", bind="query-params")
        es = bounded_number("Entry step", 0.05, 2.0, 0.25, 0.05, where=c[2], key="bt_sw_es", bind="query-params")
        x0 = bounded_number("Exit from", 0.0, 5.0, 0.0, 0.25, where=c[3], key="bt_sw_x0", bind="query-params")
        x1 = bounded_number("Exit to", 0.0, 5.0, 1.0, 0.25, where=c[4], key="bt_sw_x1", bind="query-params")
        xs = bounded_number("Exit step", 0.05, 2.0, 0.25, 0.05, where=c[5], key="bt_sw_xs", bind="query-params")
        oos = bounded_number("Out of sample [%]", 0, 80, 30, 5, where=c[6], key="bt_sw_oos", bind="query-params")
        c = st.columns([2, 1, 1])
        wins = c[0].text_input("Windows (bars, comma-separated; empty: the sidebar's)", "", key="bt_sw_win",
                               bind="query-params")
        metric = c[1].selectbox("Pick the best by", list(backtest_ui.METRICS), key="bt_sw_metric",
                                bind="query-params")
        c[2].form_submit_button("Run sweep", icon=":material/grid_on:", type="primary")
    try:
        windows = analysis.parse_windows(wins, s.window)
        sweep_params = analysis.SweepParams(analysis.axis_values(e0, e1, es, "entry"),
                                            analysis.axis_values(x0, x1, xs, "exit"), windows, float(oos) / 100,
                                            backtest_ui.METRICS[metric])
    except ValueError as exc:
        problem = f"Cannot run this sweep: {exc}."
    else:
        if len(windows) > 1:
            show_window = st.selectbox("Heat map window (bars)", ["best"] + list(windows), key="bt_sw_show",
                                       bind="query-params")
elif section == "wf":
    with st.form("bt-wf-form", border=True):
        c = st.columns([1, 1, 1, 1, 1])
        form = bounded_number("Formation (bars)", 10, 20_000, max(4 * s.window, 60), 10, where=c[0], key="bt_wf_f",
                                 bind="query-params", help="Bars β and the z statistics are fitted on.")
        trade = bounded_number("Trading (bars)", 3, 20_000, max(s.window, 30), 10, where=c[1], key="bt_wf_t",
                                  bind="query-params", help="Bars each fit is traded on before the next refit.")
        anchored = c[2].toggle("Anchored formation", False, key="bt_wf_anch", bind="query-params",
                               help="Formation from the first bar (growing) instead of a rolling window.")
        optimize = c[3].toggle("Re-choose entry / exit per window", False, key="bt_wf_opt", bind="query-params",
                               help="Walk-forward optimisation: on each formation window pick the best entry × exit "
                                    "(entry 1–3, exit 0–1) by Sharpe among sets with enough trades there, and trade "
                                    "it on the next window only.")
        c[4].form_submit_button("Run walk-forward", icon=":material/fast_forward:", type="primary")
    wf_params = analysis.WalkForwardParams(int(form), int(trade), bool(anchored), bool(optimize))


@st.fragment(run_every=s.run_every if section in backtest_ui.LIVE_SECTIONS else None)
def live(s: Settings) -> None:
    if problem:
        st.warning(problem, icon=":material/warning:")
        backtest_ui.withhold_section(section, problem)
        return
    bars = backtest_ui.load(s)
    if bars is None:
        backtest_ui.withhold_section(section, "the Backtest page shows no result for this pair and window")
        return
    if section == "single":
        backtest_ui.single_run(s, bars, params)
    elif section == "ou":
        backtest_ui.thresholds(s, bars, params)
    elif section == "wf":
        backtest_ui.walk_forward(s, bars, params, wf_params)
    else:
        backtest_ui.sweep(s, bars, params, sweep_params, None if show_window in (None, "best") else int(show_window))


live(s)
backtest_ui.section_buttons(s, section)  # outside the fragment: works on every click (dashboard.downloads)
