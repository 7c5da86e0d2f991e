"""The Basis page's bundle and figures: perpetual (usdm) against spot of one coin — basis, mark vs last, funding.

Every number comes from `quantlib.basis`; this module lines the stored series up (bars of both legs, mark-price
bars, settled funding rates), says what is missing, and draws. Times are UTC; the basis is in bps, funding rates
are fractions per funding period (shown in %).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dashboard.figures import DOWN, PALETTE, UP, _hline, _layout, _line, _number_axis, _stack
from quantlib import basis as qbasis

PERP, SPOT = "usdm", "spot"
FUNDING_WINDOWS = {"24h": 1, "3d": 3, "7d": 7, "30d": 30, "90d": 90}   # days of settled funding shown


def funding_interval(funding: pd.DataFrame, next_funding_time: pd.Timestamp | None = None) -> pd.Timedelta:
    """The contract's funding period: the most common gap between stored funding times (8 h on most Binance
    contracts, 4 h or 1 h on some; shorter on a local exchange run with a short period), else 8 h."""
    times = pd.DatetimeIndex(funding.index) if funding is not None else pd.DatetimeIndex([])
    if len(times) >= 2:
        gaps = pd.Series(np.diff(times.as_unit("ns").asi8))
        gaps = gaps[gaps > 0]
        if len(gaps):
            return pd.Timedelta(int(gaps.mode().iloc[0]), unit="ns")
    return pd.Timedelta(seconds=qbasis.FUNDING_INTERVAL_S)


@dataclass(frozen=True)
class BasisView:
    """What the Basis page draws for one coin. `bars` (index = bar start UTC): `spot`, `perp` (closes),
    `basis_bps`, `basis_annualised`, `mark`, `index`, `premium_bps` (mark vs index), `mark_vs_last_bps`,
    `funding_rate` (the running period's estimate). `funding` (index = funding time): `funding_rate`,
    `funding_annualised`, `cumulative_funding`, `mark_price`. `notes` say what is missing and why."""

    symbol: str
    bars: pd.DataFrame
    funding: pd.DataFrame
    interval: pd.Timedelta
    summary: qbasis.BasisSummary | None
    current_rate: float | None
    next_funding_time: pd.Timestamp | None
    mark_as_of: pd.Timestamp | None
    notes: tuple[str, ...] = field(default=())

    def countdown(self, now: dt.datetime) -> pd.Timedelta | None:
        return qbasis.time_to_funding(self.next_funding_time, now)

    def series(self) -> pd.DataFrame:
        """The bars for the CSV (index `ts` = bar start UTC)."""
        return self.bars.rename_axis("ts")

    def funding_table(self) -> pd.DataFrame:
        return self.funding.rename_axis("funding_time")


def _close(frame: pd.DataFrame | None) -> pd.Series:
    if frame is None or frame.empty or "close" not in frame:
        return pd.Series(dtype="float64")
    return frame["close"].astype("float64")


def build_basis_view(symbol: str, spot_bars: pd.DataFrame | None, perp_bars: pd.DataFrame | None,
                     marks: pd.DataFrame | None, funding: pd.DataFrame | None) -> BasisView:
    """Line up the stored series of `symbol` and compute the basis view (see BasisView)."""
    notes: list[str] = []
    spot, perp = _close(spot_bars), _close(perp_bars)
    marks = marks if marks is not None else pd.DataFrame()
    funding = funding if funding is not None else pd.DataFrame(columns=["funding_rate", "mark_price"])
    interval = funding_interval(funding)
    index = spot.index.union(perp.index).union(marks.index if len(marks) else pd.DatetimeIndex([], tz="UTC"))
    bars = pd.DataFrame(index=index)
    bars["spot"], bars["perp"] = spot, perp
    if len(spot) and len(perp):
        b = qbasis.basis_bps(perp, spot)
        bars["basis_bps"] = b
        bars["basis_annualised"] = qbasis.annualised_basis(b, interval)
    else:
        bars["basis_bps"] = bars["basis_annualised"] = np.nan
        missing = [m for m, s in ((SPOT, spot), (PERP, perp)) if not len(s)]
        notes.append(f"no {' or '.join(missing)} {symbol} trades in the window, so no basis")
    current_rate = next_time = as_of = None
    if len(marks):
        bars["mark"] = marks["mark_price"]
        bars["index"] = marks["index_price"]
        bars["funding_rate"] = marks["funding_rate"]
        ok = marks["index_price"].notna() & (marks["index_price"] > 0)
        bars["premium_bps"] = ((marks["mark_price"] / marks["index_price"] - 1.0) * qbasis.BPS).where(ok)
        bars["mark_vs_last_bps"] = qbasis.mark_vs_last_bps(marks["mark_price"], perp) if len(perp) else np.nan
        as_of = marks.index[-1]
        rates = marks["funding_rate"].dropna()
        current_rate = float(rates.iloc[-1]) if len(rates) else None
        nxt = marks["next_funding_time"].dropna()
        next_time = pd.Timestamp(nxt.iloc[-1]) if len(nxt) else None
    else:
        for c in ("mark", "index", "funding_rate", "premium_bps", "mark_vs_last_bps"):
            bars[c] = np.nan
        notes.append(f"no mark-price updates of {PERP} {symbol} in the window (the ingestor stores them for usdm "
                     "symbols: `--market usdm` or `spot,usdm`)")
    fund = pd.DataFrame(index=pd.DatetimeIndex(funding.index, name="funding_time"))
    if len(funding):
        fund["funding_rate"] = funding["funding_rate"].astype("float64")
        fund["funding_annualised"] = qbasis.annualised_funding(fund["funding_rate"], interval)
        fund["cumulative_funding"] = qbasis.cumulative_funding(fund["funding_rate"])
        fund["mark_price"] = funding["mark_price"].astype("float64")
    else:
        for c in ("funding_rate", "funding_annualised", "cumulative_funding", "mark_price"):
            fund[c] = pd.Series(dtype="float64")
        notes.append(f"no settled funding rates of {PERP} {symbol} in the chosen history")
    summary = None
    if bars["basis_bps"].notna().any():
        summary = qbasis.basis_summary(bars["basis_bps"], current_rate,
                                       fund["funding_rate"] if len(fund) else None, next_time, interval)
    return BasisView(symbol, bars, fund, interval, summary, current_rate, next_time, as_of, tuple(notes))


STALE_MARK_S = 60.0   # a next funding time older than this many seconds of silence is not "due now" but passed


def countdown_text(left: pd.Timedelta | None, mark_age_s: float | None = None) -> str:
    """'02:05:09' (h:min:s, as Binance's countdown; short enough for a metric in a sixth of the page), 'due now'
    (the settlement is being processed), 'passed' (no mark-price update since: the stream stopped), '—'
    (unknown)."""
    if left is None:
        return "—"
    secs = int(left.total_seconds())
    if secs <= 0:
        return "passed (no recent mark price)" if mark_age_s is not None and mark_age_s > STALE_MARK_S \
            else "due now"
    h, rem = divmod(secs, 3600)
    m, sec = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{sec:02d}"


# ---------------------------------------------------------------- figures
def basis_figure(view: BasisView, uirevision: str) -> dict:
    """Top: basis (perp last vs spot last) and the mark's premium over the index, in bps; bottom: mark vs last."""
    layout = _layout(uirevision, 440, f"{view.symbol}: perpetual vs spot basis (bps)")
    (x1, y1), (x2, y2) = _stack(layout, [0.62, 0.38], gap=0.05)
    b = view.bars
    data = []
    if b["basis_bps"].notna().any():
        data.append(_line(b["basis_bps"].dropna(), "basis: perp last vs spot last", PALETTE[0], 1.6, xaxis=x1,
                          yaxis=y1))
    if b["premium_bps"].notna().any():
        data.append(_line(b["premium_bps"].dropna(), "premium: mark vs index", PALETTE[1], 1.1, xaxis=x1, yaxis=y1,
                          line={"dash": "dot"}))
    if b["mark_vs_last_bps"].notna().any():
        data.append(_line(b["mark_vs_last_bps"].dropna(), "mark vs last (perp)", PALETTE[2], 1.2, xaxis=x2,
                          yaxis=y2))
    layout["shapes"] = [_hline(0.0, x1, y1), _hline(0.0, x2, y2)]
    _number_axis(layout["yaxis"], ",.2f")
    _number_axis(layout["yaxis2"], ",.2f")
    layout["yaxis"]["title"] = {"text": "basis, bps"}
    layout["yaxis2"]["title"] = {"text": "mark − last, bps"}
    return {"data": data, "layout": layout}


def funding_figure(view: BasisView, uirevision: str) -> dict:
    """Settled funding rates as bars (%, green when longs pay shorts), their running sum on the right axis, and the
    running period's estimate at the next funding time (hollow marker)."""
    layout = _layout(uirevision, 340, f"{view.symbol}: funding rate per period (%) and cumulative funding")
    f = view.funding
    data = []
    if len(f):
        rate = f["funding_rate"] * 100
        data.append({"type": "bar", "x": f.index, "y": rate.to_numpy(), "name": "settled rate",
                     "marker": {"color": np.where(rate.to_numpy() >= 0, UP, DOWN).tolist()}})
        data.append(_line(f["cumulative_funding"] * 100, "cumulative (right axis)", PALETTE[0], 1.6,
                          yaxis="y2"))
    if view.current_rate is not None and view.next_funding_time is not None:
        data.append({"type": "scatter", "mode": "markers", "x": [view.next_funding_time],
                     "y": [view.current_rate * 100], "name": "estimate for the next funding",
                     "marker": {"size": 11, "symbol": "circle-open", "color": PALETTE[1], "line": {"width": 2}}})
    _number_axis(layout["yaxis"], ".6f")
    layout["yaxis"]["title"] = {"text": "rate, % per period"}
    layout["yaxis2"] = {"overlaying": "y", "side": "right", "showgrid": False, "title": {"text": "cumulative, %"},
                        "hoverformat": ".6f", "tickformat": ".5~f", "automargin": True}
    layout["bargap"] = 0.3
    return {"data": data, "layout": layout}
