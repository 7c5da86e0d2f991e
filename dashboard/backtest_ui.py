"""Sections of the Backtest page: single run with honest statistics, suggested thresholds (OU fit), walk-forward
and parameter sweep. Each section reads its inputs, asks `dashboard.analysis` (quantlib underneath), draws, and
offers its CSV downloads; every number that the minimum-sample rule (`quantlib.sample.RULE`) withholds is
replaced by the reason."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from dashboard import analysis, backtest_figures, data, downloads, export, figures, tables, ui
from dashboard.settings import LOOKBACKS, MAX_BARS, Settings
from quantlib import performance
from quantlib.sample import RULE

SECTIONS = {"Single run": "single", "Suggested thresholds": "ou", "Walk-forward": "wf", "Parameter sweep": "sweep"}
LIVE_SECTIONS = ("single", "ou")  # the others are heavier and recompute on a form submit, not every refresh
METRICS = {"Sharpe": "sharpe", "Total return": "total_return"}

HEDGE_WORDS = {"static": "one {m} fit on the first {w} bars (formation period), trading after it",
               "rolling": "rolling {m} over the last {w} bars",
               "kalman": "Kalman-filtered α, β (warm-up {w} bars, noise relative to the data); the spread is the "
                         "filtered residual, smaller than the static OLS spread as the filter absorbs part of "
                         "each move (the z-score is relative, so the bands still count standard deviations)"}


@dataclass(frozen=True)
class PairBars:
    closes: pd.DataFrame
    y: str
    x: str
    key: tuple
    as_of: object
    funding: dict[str, pd.DataFrame] | None = None   # settled funding rates of the perpetual legs ("y" / "x")


def load(s: Settings) -> PairBars | None:
    """The pair's closes over the lookback, or None after explaining on the page why there are none."""
    cat = data.current_catalog(s)
    ui.status_line(s, cat)
    if not ui.need_catalog(cat):
        return None
    if not s.pair:
        ui.explain("no-data", "Pick two different symbols as Pair Y and Pair X in the sidebar.")
        return None
    y, x = s.pair
    res = data.pair_bars(s, cat)
    ui.explain(res.state, res.message)
    if not res.ok:
        return None
    closes = data.closes(res.value)
    missing = [sym for sym in (y, x) if sym not in closes.columns]
    if missing:
        ui.explain("no-data", f"No {' or '.join(missing)} trades in the last {s.lookback} of {data.legs_where(s)}.")
        return None
    n = len(closes.dropna())
    need = analysis.min_bars_for_backtest(s.window)
    if n < need:
        ui.explain("short", f"The backtest needs at least {need} bars (window {s.window} + 2); the lookback has {n}. "
                            "Pick a longer lookback, a finer timeframe or a shorter window.")
        return None
    return PairBars(closes, y, x, data.view_key(s, cat), closes.index[-1] if len(closes) else None,
                    _funding(s, closes))


def _funding(s: Settings, closes: pd.DataFrame) -> dict[str, pd.DataFrame] | None:
    """Settled funding rates over the bars for each perpetual (usdm) leg of the pair, or None (no perpetual leg)."""
    out = {}
    for name, leg in zip(("y", "x"), s.legs):
        if leg.market == data.PERP_MARKET and len(closes):
            res = data.funding_history(s, leg.symbol, closes.index[0].floor("1h").to_pydatetime())
            if res.value is not None:
                out[name] = res.value
    return out or None


def _withheld_notes(withheld: dict[str, str]) -> None:
    reasons = list(dict.fromkeys(withheld.values()))
    if reasons:
        st.caption(":material/block: " + "; ".join(w[0].upper() + w[1:] if i == 0 else w for i, w in enumerate(reasons))
                   + f". The one minimum-sample rule of every panel: {RULE.describe()}.")


def _metrics(stats, labels: tuple[str, ...] = ("Total return", "Sharpe (ann.)", "Max drawdown", "Hit rate",
                                                 "Trades")) -> None:
    m = st.columns(5)
    m[0].metric(labels[0], f"{stats.total_return:+.2%}")
    ci = ("" if "sharpe" in stats.withheld or stats.sharpe != stats.sharpe
          else f"95% CI [{stats.sharpe_ci_low:,.2f}, {stats.sharpe_ci_high:,.2f}]")
    sharpe = ("withheld" if "sharpe" in stats.withheld else "—" if stats.sharpe != stats.sharpe
              else f"{stats.sharpe:,.2f}")
    m[1].metric(labels[1], sharpe, help=stats.withheld.get("sharpe") or ci or None)
    m[2].metric(labels[2], f"{stats.max_drawdown:.2%}")
    m[3].metric(labels[3], tables.hit_rate_text(stats), help=stats.withheld.get("hit_rate"))
    m[4].metric(labels[4], f"{stats.n_trades}")
    if ci:
        st.caption(f"Sharpe {sharpe}, {ci} (Lo's standard error with the returns' skew and kurtosis); "
                   f"{stats.sample.summary()}.")
    else:
        st.caption(f"Sample: {stats.sample.summary()}.")
    _withheld_notes(stats.withheld)


def _references(bars: PairBars, index: pd.Index, capital: float) -> dict[str, pd.Series]:
    """Buy-and-hold equity of each leg over `index` with the same capital (reference lines)."""
    prices = bars.closes[[bars.y, bars.x]].reindex(index).ffill().dropna()
    if prices.empty:
        return {}
    bh = performance.buy_and_hold(prices, capital)
    return {f"buy & hold {bars.y}": bh[bars.y], f"buy & hold {bars.x}": bh[bars.x]}


def _trades(trades: pd.DataFrame, bars: PairBars, empty: str, file_parts: tuple, key: str | None) -> None:
    """The trades table and, given a `key`, its download button (None: the page draws it, see `single_run`)."""
    if trades.empty:
        st.caption(empty)
    else:
        shown, config = tables.trades_table(trades, bars.y, bars.x)
        st.dataframe(shown, hide_index=True, width="stretch", column_config=config)
    if key is None:
        return
    st.download_button("Trades (CSV)", data=lambda: export.to_csv(trades), file_name=export.filename(*file_parts),
                       mime="text/csv", icon=":material/download:", on_click="ignore", key=key,
                       disabled=trades.empty)


# ---------------------------------------------------------------- single run
# Downloads are drawn by the page's full run (`section_buttons`), outside the fragment, and filled by the section
# (dashboard.downloads explains why: a deferred button inside a fragment fails while any fragment refreshes).
SECTION_DOWNLOADS = {
    "single": {"dl-bt-trades": ("Trades (CSV)", "trades"), "dl-bt-equity": ("Equity, position, z-score (CSV)", "equity")},
    "wf": {"dl-wf-windows": ("Walk-forward windows (CSV)", "walkforward-windows"),
           "dl-wf-equity": ("Walk-forward equity (CSV)", "walkforward-equity"),
           "dl-wf-trades": ("Walk-forward trades (CSV)", "walkforward-trades")},
    "sweep": {"dl-sweep-grid": ("Sweep grid (CSV)", "sweep")},
}
SINGLE_DOWNLOADS = {key: label for key, (label, _) in SECTION_DOWNLOADS["single"].items()}


def section_buttons(s: Settings, section: str) -> None:
    """The download buttons of `section` (call from the page's full run, after the fragment)."""
    items = SECTION_DOWNLOADS.get(section, {})
    if not s.pair or not items:
        return
    y, x = s.pair
    method = analysis.walk_forward_method(s.hedge_method) if section == "wf" else s.hedge_method
    c = st.columns(len(items))
    for i, (key, (label, stem)) in enumerate(items.items()):
        downloads.button(label, key, export.filename(stem, y, x, s.timeframe, method), where=c[i],
                         help="As on the page when you click.")


def withhold_section(section: str, why: str) -> None:
    for key in SECTION_DOWNLOADS.get(section, {}):
        downloads.offer(key).withhold(why)


def single_run_buttons(s: Settings) -> None:
    section_buttons(s, "single")


def withhold_single_run(why: str = "the Backtest page shows no single run for this pair and window") -> None:
    withhold_section("single", why)


def single_run(s: Settings, bars: PairBars, params: analysis.BacktestParams) -> None:
    y, x = bars.y, bars.x
    hedge, method = analysis.backtest_hedge(s.hedge_method)
    st.caption(f"Long / short the spread {y} − β·{x} on its {s.window}-bar z-score; β: "
               + HEDGE_WORDS[hedge].format(m=analysis.method_name(method), w=s.window)
               + ". Signals at a bar's close fill at the next bar's close; costs per leg and side. Sharpe is "
                 "annualized by the bars' observed rate (365-day year), holding times are clock time.")
    result, reason = analysis.backtest_or_reason(bars.key, bars.closes, y, x, s.hedge_method, s.window,
                                                 s.timeframe, params, bars.funding)
    if result is None:
        ui.explain("error", reason)
        withhold_single_run()
        return
    st_ = result.stats
    _metrics(st_)
    _pnl_parts(result, bars)
    view, why = analysis.threshold_view_cached((*bars.key, s.hedge_method, s.window), result, bars.closes, y, x,
                                                     s.timeframe, params)
    if view is not None:
        b = view.band
        st.caption(f":material/lightbulb: An OU fit of this spread suggests entry |z| {b.entry_z:.2f}, exit |z| "
                   f"{b.exit_z:.2f} at this cost (yours: {params.entry_z:g} / {params.exit_z:g}); see "
                   "**Suggested thresholds**.")
    refs = {}
    if result.buy_hold is not None:
        refs = {f"buy & hold {y}": result.buy_hold["y"], f"buy & hold {x}": result.buy_hold["x"]}
    ui.chart(figures.equity(result.equity, analysis.drawdown(result.equity), s.uirevision(y, x, "bt"),
                            result.trades, references=refs), key="bt-equity")
    if refs:
        legs = ", ".join(f"{sym} {float(r.iloc[-1]) / params.capital - 1:+.2%}" for sym, r in ((y, refs[f"buy & hold {y}"]),
                                                                                         (x, refs[f"buy & hold {x}"])))
        st.caption(f"Dotted: buy and hold of each leg with the same capital from the first bar (reference): {legs} "
                   f"against the strategy's {st_.total_return:+.2%}.")
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Trades", anchor=False)
        _trades(result.trades, bars, f"No trades: |z| never crossed {params.entry_z} in this window.",
                ("trades", y, x, s.timeframe, s.hedge_method), None)
        trades = result.trades
        downloads.offer("dl-bt-trades").set(lambda: export.to_csv(trades))
        downloads.offer("dl-bt-equity").set(lambda: export.to_csv(analysis.equity_frame(result, y, x)))
    with right:
        st.subheader("Stats", anchor=False)
        stats_rows = tables.backtest_stats(st_)
        st.dataframe(stats_rows, hide_index=True, width="stretch", height=table_height(len(stats_rows)),
                     column_config={"metric": st.column_config.TextColumn("Metric", width="medium"),
                                    "value": st.column_config.TextColumn("Value", width="medium"),
                                    "note": st.column_config.TextColumn("Note", width="medium")})


def table_height(rows: int) -> int:
    """A dataframe height (px) that shows every row without an inner scroll bar (header + rows + border)."""
    return 38 + 35 * max(rows, 1) + 3


def _pnl_parts(result, bars: PairBars) -> None:
    """Price PnL, costs and funding apart (funding only when a leg is a perpetual)."""
    if result.funding is None:
        return
    t = result.trades
    legs = " and ".join({"y": bars.y, "x": bars.x}[leg] for leg in sorted(bars.funding or {}, reverse=True))
    held = result.funding[result.funding["qty"] != 0]
    m = st.columns(4)
    m[0].metric("Price PnL", f"{t['gross_pnl'].sum():+,.2f}", help="Sum of the trades' gross PnL (price moves).")
    m[1].metric("Costs", f"{-t['costs'].sum():+,.2f}")
    m[2].metric("Funding", f"{result.total_funding:+,.2f}",
                help=f"Funding of {legs} at each funding time a position was held: −qty × mark × rate (a long "
                     "perpetual pays a positive rate, a short one receives it).")
    m[3].metric("Funding times held", f"{len(held)} of {len(result.funding)}")
    if len(result.funding):
        times = f"{len(result.funding)} funding time{'s' if len(result.funding) != 1 else ''}"
        with st.expander(f"Funding ledger ({times} in the window)",
                         icon=":material/payments:"):
            st.dataframe(result.funding, hide_index=True, width="stretch",
                         column_config={"funding_time": st.column_config.DatetimeColumn(
                             "Funding time (UTC)", format="YYYY-MM-DD HH:mm:ss", timezone="UTC"),
                             "rate": st.column_config.NumberColumn("Rate", format="%.6f"),
                             "payment": st.column_config.NumberColumn("Payment", format="%+.4f")})
    else:
        st.caption(f"No funding time of {legs} falls inside the window: funding 0.")


# ---------------------------------------------------------------- suggested thresholds
def thresholds(s: Settings, bars: PairBars, params: analysis.BacktestParams) -> None:
    y, x = bars.y, bars.x
    result, reason = analysis.backtest_or_reason(bars.key, bars.closes, y, x, s.hedge_method, s.window,
                                                 s.timeframe, params)
    if result is None:
        ui.explain("error", reason)
        return
    view, why = analysis.threshold_view_cached((*bars.key, s.hedge_method, s.window), result, bars.closes, y, x,
                                                     s.timeframe, params)
    if view is None:
        ui.explain("short", f"No suggestion: {why}.")
        return
    f = view.fit
    m = st.columns(4)
    m[0].metric("Half-life", f"{f.half_life:,.1f} bars", help=tables.duration_text(f.half_life_time))
    m[1].metric("Mean-reversion speed θ", f"{f.theta:.4f} / bar")
    m[2].metric("Stationary std", f"{f.sigma_eq:,.6g}")
    m[3].metric("Round-trip cost", f"{view.cost:,.6g}", help="in spread units: 2 × cost bps × (Y + |β|·X)")
    st.dataframe(view.table(), hide_index=True, width="stretch", column_config=tables.THRESHOLD_COLUMNS)
    st.caption(f"OU fit (exact AR(1) maximum likelihood) of the spread the single run trades ({f.n:,} bars, "
               f"half-life {tables.duration_text(f.half_life_time)}). **Best entry / exit for this rule**: the "
               "highest expected gain per bar of this page's rule (enter at |z| = entry, exit on the same side at "
               "|z| = exit, flat until the next entry) from the OU's first-passage times. **Bertram (2010)**: the "
               "published optimum, which reverses the position at the opposite band (exit z below 0). z here is "
               "in the OU's stationary std; the backtest's z uses a rolling "
               f"{s.window}-bar mean and std, close to it when the window spans several half-lives. Stops are not "
               "modelled; the gains assume the fitted OU holds.")


# ---------------------------------------------------------------- walk-forward
def walk_forward_hint(s: Settings, n_bars: int, wp: analysis.WalkForwardParams) -> str | None:
    """What to change when the window is too short for one formation plus one trading window: the shortest
    sidebar Lookback that holds them at this timeframe, or the longest Formation that fits the bars there are."""
    need = wp.formation + wp.trading
    if n_bars >= need:
        return None
    fits = [lb for lb, secs in LOOKBACKS.items() if need <= secs // s.tf_seconds + 1 <= MAX_BARS]
    longest = n_bars - wp.trading
    options = []
    if fits:
        options.append(f"a sidebar Lookback of {fits[0]} or longer")
    if longest >= 10:
        options.append(f"a Formation of at most {longest} bars")
    if not options:
        options.append("a finer timeframe or shorter Formation and Trading windows")
    return (f"The window holds {n_bars:,} bars of {s.timeframe} (Lookback {s.lookback}); one formation "
            f"({wp.formation}) and one trading window ({wp.trading}) need {need:,}: pick " + " or ".join(options) + ".")


def walk_forward(s: Settings, bars: PairBars, params: analysis.BacktestParams, wp: analysis.WalkForwardParams) -> None:
    y, x = bars.y, bars.x
    method = analysis.walk_forward_method(s.hedge_method)
    st.caption(f"β and the z-score's mean and std fitted on each formation window ({wp.formation} bars, "
               f"{'anchored at the first bar' if wp.anchored else 'rolling'}; hedge: {analysis.method_name(method)}) and "
               f"applied unchanged to the next {wp.trading} bars only"
               + ("; entry and exit re-chosen on each formation window (best Sharpe with at least "
                  f"{RULE.min_trades} trades there, else the form's)" if wp.optimize else "")
               + "; a position open at a window's end is closed "
               f"there. Computed on bars up to {bars.as_of:%Y-%m-%d %H:%M} UTC; run again to include newer bars.")
    res, reason = analysis.walk_forward_or_reason(bars.key, bars.closes, y, x, s.hedge_method, s.timeframe,
                                                  params, wp, bars.funding)
    if res is None:
        reason = " ".join(filter(None, (reason, walk_forward_hint(s, len(bars.closes), wp))))
        ui.explain("error", reason)
        withhold_section("wf", reason)
        return
    _metrics(res.stats, ("Out-of-sample return", "Sharpe (ann.)", "Max drawdown", "Hit rate", "Trades"))
    if res.funding is not None:
        held = res.funding[res.funding["qty"] != 0]
        st.caption(f":material/payments: Funding of the perpetual leg included: {res.funding['payment'].sum():+,.2f} "
                   f"over {len(held)} of {len(res.funding)} funding times in the trading windows (−qty × mark × rate "
                   "while a position is held).")
    ui.chart(backtest_figures.walk_forward_equity(res.equity, res.windows, s.uirevision(y, x, "bt-wf"),
                                                  _references(bars, res.equity.index, params.capital)),
             key="bt-wf-equity")
    st.subheader(f"Windows ({len(res.windows)})", anchor=False)
    st.dataframe(tables.walk_forward_windows(res.windows), hide_index=True, width="stretch",
                 column_config=tables.WINDOW_COLUMNS)
    eq = pd.DataFrame({"equity": res.equity, "position": res.positions, "zscore": res.zscore, "spread": res.spread,
                       "beta": res.hedge_ratio})
    downloads.offer("dl-wf-windows").set(lambda: export.to_csv(res.windows))
    downloads.offer("dl-wf-equity").set(lambda: export.to_csv(eq))
    downloads.offer("dl-wf-trades").set(lambda: export.to_csv(res.trades))
    st.subheader("Out-of-sample trades", anchor=False)
    _trades(res.trades, bars, "No trades in any trading window.",
            ("walkforward-trades", y, x, s.timeframe, method), None)


# ---------------------------------------------------------------- parameter sweep
def sweep(s: Settings, bars: PairBars, params: analysis.BacktestParams, sp: analysis.SweepParams,
          show_window: int | None) -> None:
    y, x = bars.y, bars.x
    st.caption(f"Every entry × exit (× window) set backtested like the single run (same hedge, cost and stop) in "
               f"one pass; the first {1 - sp.oos_fraction:.0%} of the bars are in sample, the rest out of sample. "
               f"The best set is picked in sample among sets with at least {RULE.min_trades} trades; its "
               f"out-of-sample result is beside it. Computed on bars up to {bars.as_of:%Y-%m-%d %H:%M} UTC.")
    view, reason = analysis.sweep_or_reason(bars.key, bars.closes, y, x, s.hedge_method, s.timeframe, params, sp,
                                            bars.funding)
    if view is None:
        ui.explain("error", reason)
        withhold_section("sweep", reason)
        return
    res = view.result
    if view.note and res.best is not None:  # without a best set the note is the box below the heat maps
        st.caption(f":material/info: {view.note}")
    if bars.funding:
        st.caption(":material/payments: Every set books the perpetual leg's funding at each funding time it holds a "
                   "position, as the single run does.")
    windows = sorted(res.grid["window"].unique().tolist())
    best = res.best
    w = show_window if show_window in windows else (int(best["window"]) if best is not None else windows[0])
    stop = float(res.grid["stop_z"].iloc[0])
    mark = (float(best["entry_z"]), float(best["exit_z"])) if best is not None and int(best["window"]) == w else None
    grid = res.grid[(res.grid["window"] == w) & (res.grid["stop_z"] == stop)]

    def pivot(col: str) -> pd.DataFrame:
        return grid.pivot(index="entry_z", columns="exit_z", values=col)

    withheld = grid.assign(why=view.sharpe_withheld.loc[grid.index]).pivot(index="entry_z", columns="exit_z",
                                                                            values="why")
    rev = s.uirevision(y, x, "bt-sweep", w)
    st.caption(f"Heat maps for window {w} bars" + (f" (the best set's unless picked above; windows swept: "
                                                    f"{', '.join(map(str, windows))})" if len(windows) > 1 else "")
               + ". Sharpe cells with fewer trades than the rule asks show n/a (hover for the reason).")
    c = st.columns(2)
    with c[0]:
        ci = grid.assign(ci=[f"95% CI [{lo:,.2f}, {hi:,.2f}]" if pd.notna(lo) else ""
                             for lo, hi in zip(grid["sharpe_ci_low"], grid["sharpe_ci_high"])])
        ui.chart(backtest_figures.sweep_heatmap(pivot("sharpe"), "Sharpe (ann., in sample)", ",.2f", rev, mark,
                                                withheld, notes=ci.pivot(index="entry_z", columns="exit_z",
                                                                         values="ci")),
                 key="bt-sweep-sharpe")
        ui.chart(backtest_figures.sweep_heatmap(pivot("n_trades"), "Trades (in sample)", ",.0f", rev, mark,
                                                kind="sequential"), key="bt-sweep-trades")
    with c[1]:
        ui.chart(backtest_figures.sweep_heatmap(pivot("total_return"), "Total return (in sample)", ".2%", rev, mark),
                 key="bt-sweep-return")
        ui.chart(backtest_figures.sweep_heatmap(pivot("max_drawdown"), "Max drawdown (in sample)", ".2%", rev, mark,
                 kind="reversed"), key="bt-sweep-drawdown")
    if best is None:
        st.info(view.note or "No parameter set qualifies as best.", icon=":material/info:")
    else:
        p = res.best_params()
        st.subheader("In-sample best and its out-of-sample result", anchor=False)
        st.markdown(f"Best by **{'Sharpe' if view.metric == 'sharpe' else 'total return'}**: window {p['window']}, "
                    f"entry |z| {p['entry_z']:g}, exit |z| {p['exit_z']:g} — in sample "
                    f"{res.in_sample[0]:%m-%d %H:%M} to {res.in_sample[1]:%m-%d %H:%M} UTC ({res.n_in_sample:,} bars)"
                    + (f", out of sample {res.out_of_sample[0]:%m-%d %H:%M} to {res.out_of_sample[1]:%m-%d %H:%M} "
                       f"({res.n_out_of_sample:,} bars)." if res.out_of_sample else "."))
        oos_why = view.oos_sharpe_withheld.loc[best.name] if view.oos_sharpe_withheld is not None else None
        st.dataframe(tables.in_out_table(best, view.sharpe_withheld.loc[best.name], oos_why), hide_index=True,
                     width="content")
        for why in (view.sharpe_withheld.loc[best.name], oos_why):
            if why:
                st.caption(f":material/block: {why[0].upper() + why[1:]}.")
        curves = {name: c for name, c in (("in sample", res.best_equity), ("out of sample (restarts at capital)",
                                                                            res.best_oos_equity)) if c is not None}
        if curves:
            ui.chart(figures.lines(curves, s.uirevision(y, x, "bt-sweep-best"), "Best set: equity in and out of "
                                   "sample", height=280, yformat=",.0f"), key="bt-sweep-best-equity")
        if view.deflated is not None:
            st.caption(f":material/casino: {view.deflated.summary()}. Deflated Sharpe: Bailey & López de Prado "
                       f"(2014), over the {len(res.grid)} sets tried and the spread of their Sharpe ratios.")
    downloads.offer("dl-sweep-grid").set(lambda: export.to_csv(view.grid()))
