"""Basis: a perpetual (usdm) against the same coin on spot — basis in bps and annualised, mark vs last, the
funding rate (current estimate, history, cumulative) and the time left to the next funding; CSV downloads."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from dashboard import basis_view, data, downloads, export, formats, settings, ui
from dashboard.inputs import bounded_number
from dashboard.settings import Settings

s = settings.current()
st.header("Basis", anchor=False)
cat = data.current_catalog(s)

if s.source != "live":
    ui.explain("no-data", "The basis view reads the live file: mark prices and funding rates are stored by the "
                          "ingestor, not in uploads. Switch the source back to *live file*.")
    st.stop()
if not ui.need_catalog(cat):
    st.stop()
perps = list(cat.symbols_of(basis_view.PERP))
spots = set(cat.symbols_of(basis_view.SPOT))
if not perps:
    ui.explain("no-data", "No perpetual (usdm) trades in the file yet. The basis needs the usdm market: run the "
                          "ingestor with `--market spot,usdm` (`make demo` does).")
    st.stop()
options = sorted(perps, key=lambda sym: (sym not in spots, sym))  # coins with both legs first
legs = s.legs
picked = legs[0].symbol if legs and legs[0].symbol == legs[1].symbol and s.cross_market else None
default = picked if picked in options else ("BTCUSDT" if "BTCUSDT" in options else options[0])

with st.container(border=True):
    c = st.columns([1.3, 1, 1.2])
    symbol = c[0].selectbox("Perpetual vs spot", options, index=options.index(default), key="bs_sym",
                            bind="query-params",
                            help="The usdm perpetual of this symbol against its spot market (listed first when both "
                                 "are stored).")
    history = c[1].selectbox("Funding history", list(basis_view.FUNDING_WINDOWS), index=2, key="bs_fh",
                             bind="query-params", help="Settled funding rates shown and summed.")
    notional = bounded_number("Position notional (USDT)", 0.0, 1e10, 10_000.0, 1_000.0, where=c[2],
                              key="bs_notional", bind="query-params",
                              help="For the funding PnL of holding the basis trade (long spot, short perpetual) "
                                   "at this constant notional through the funding history.")


SERIES_KEY, FUNDING_KEY = "dl-basis", "dl-funding"


@st.fragment(run_every=s.run_every)
def live(s: Settings, symbol: str, history: str, notional: float) -> None:
    series, fund = downloads.offer(SERIES_KEY), downloads.offer(FUNDING_KEY)
    cat = data.current_catalog(s)
    ui.status_line(s, cat)
    if not ui.need_catalog(cat):
        series.withhold(cat.message or "the file cannot be read")
        fund.withhold(cat.message or "the file cannot be read")
        return
    bars = data.basis_bars(s, symbol, cat)
    ui.explain(bars.state, bars.message)
    if not bars.ok:
        series.withhold(bars.message or f"no {symbol} bars")
        fund.withhold(bars.message or f"no {symbol} bars")
        return
    marks = data.marks(s, symbol, cat)
    anchor = pd.Timestamp(cat.last_ts(basis_view.PERP) or dt.datetime.now(dt.UTC))
    since = (anchor - pd.Timedelta(days=basis_view.FUNDING_WINDOWS[history])).floor("1h")
    funding = data.funding_history(s, symbol, since.to_pydatetime())
    for res in (marks, funding):
        if res.state != "ok":
            ui.explain(res.state, res.message)
    view = basis_view.build_basis_view(symbol, bars.value.get("spot"), bars.value.get("perp"), marks.value,
                                       funding.value)
    _headline(view, history, notional)
    for note in view.notes:
        st.caption(f":material/info: Not shown: {note}.")
    rev = s.uirevision(symbol, "basis")
    ui.chart(basis_view.basis_figure(view, rev), key="basis-chart")
    ui.chart(basis_view.funding_figure(view, f"{rev}:{history}"), key="basis-funding")
    if view.bars.empty:
        series.withhold(f"no {symbol} bars in the last {s.lookback}")
    else:
        series.set(lambda: export.to_csv(view.series()))
    if view.funding.empty:
        fund.withhold(f"no settled funding rates of {symbol} in the last {history}")
    else:
        fund.set(lambda: export.to_csv(view.funding_table()))


def _headline(view: basis_view.BasisView, history: str, notional: float) -> None:
    summ = view.summary
    m = st.columns(6)
    m[0].metric("Basis now", "—" if summ is None else f"{summ.basis_bps:+.2f} bps",
                help="(perp / spot − 1) × 10,000 on the newest bar both legs traded in (last trade prices).")
    m[1].metric("Annualised", "—" if summ is None else
                f"{summ.annualised:+.2%}" if abs(summ.annualised) < 10 else f"{summ.annualised:+,.0%}",
                help=f"The basis as a carry earned once per funding period ({_span(view.interval)}), over a "
                     "365-day year: the funding a premium of this size implies when it lasts.")
    rate = view.current_rate
    m[2].metric("Funding rate", "—" if rate is None else formats.rate_pct(rate),
                help="This period's estimate from the mark-price stream; positive: longs pay shorts."
                     + ("" if rate is None else f" Exactly {formats.rate_pct(rate, exact=True)}; annualised "
                                                f"{rate * (365 * 86400 / view.interval.total_seconds()):+.2%}."))
    now = dt.datetime.now(dt.UTC)
    age = None if view.mark_as_of is None else (now - view.mark_as_of).total_seconds()
    m[3].metric("Next funding in", basis_view.countdown_text(view.countdown(now), age),
                help=None if view.next_funding_time is None else
                f"Hours:minutes:seconds. At {view.next_funding_time:%Y-%m-%d %H:%M:%S} UTC (from the newest mark-price update"
                + ("" if view.mark_as_of is None else f", {view.mark_as_of:%H:%M:%S} UTC") + ").")
    last_gap = view.bars["mark_vs_last_bps"].dropna()
    m[4].metric("Mark vs last", "—" if last_gap.empty else f"{last_gap.iloc[-1]:+.2f} bps",
                help="Mark price (decides funding payments and liquidations) against the perpetual's last trade.")
    cum = view.funding["cumulative_funding"].dropna()
    m[5].metric(f"Funding, {history}", "—" if cum.empty else formats.rate_pct(cum.iloc[-1]),
                help=f"Sum of the {len(view.funding)} settled rates: what a short perpetual of constant notional "
                     "received (a long paid).")
    if not cum.empty and notional > 0:
        st.caption(f"Long spot / short perpetual at {notional:,.0f} USDT notional through the last {history}: "
                   f"funding {notional * cum.iloc[-1]:+,.2f} USDT over {len(view.funding)} funding times "
                   f"(every {_span(view.interval)}).")


def _span(td: pd.Timedelta) -> str:
    secs = int(td.total_seconds())
    return f"{secs // 3600} h" if secs % 3600 == 0 else f"{secs // 60} min" if secs % 60 == 0 else f"{secs} s"


live(s, symbol, history, float(notional))
c = st.columns(2)  # outside the refreshing fragment: works on every click (dashboard.downloads)
downloads.button("Basis series (CSV)", SERIES_KEY, export.filename("basis", symbol, s.timeframe, s.lookback),
                 where=c[0], help="Both legs' closes, basis (bps, annualised), mark, index, premium and mark vs last "
                                  "per bar, UTC, as on the page when you click.")
downloads.button("Funding history (CSV)", FUNDING_KEY, export.filename("funding", symbol, history), where=c[1],
                 help="Settled funding rates (fraction per period), annualised, running sum and mark price.")
