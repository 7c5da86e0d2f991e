"""Plotly figure builders. Inputs are already-computed series (quantlib does the maths); each figure gets a
constant `uirevision` per view so the user's zoom / pan survive live refreshes (draw with a stable `key`)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

UP, DOWN = "#26a69a", "#ef5350"
PALETTE = ["#f0b90b", "#4fc3f7", "#ba68c8", "#81c784", "#ff8a65", "#90a4ae", "#f06292", "#aed581"]
GRID = "rgba(128,128,128,0.18)"


def _finish(fig: go.Figure, uirevision: str, height: int, title: str | None = None) -> go.Figure:
    fig.update_layout(
        template="plotly_dark", paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)",
        font=dict(family='"Source Sans Pro", "Source Sans 3", sans-serif', size=12, color="#d5d6d9"),
        uirevision=uirevision, height=height, margin=dict(l=8, r=8, t=36 if title else 10, b=8),
        title=dict(text=title, x=0.01, font=dict(size=14)) if title else None,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right" if title else "left", x=1 if title else 0,
                    bgcolor="rgba(0,0,0,0)"),
        hovermode="x unified", xaxis_rangeslider_visible=False,
    )
    fig.update_xaxes(gridcolor=GRID, showspikes=True, spikemode="across", spikethickness=1)
    fig.update_yaxes(gridcolor=GRID)
    return fig


def empty(message: str, height: int = 200) -> go.Figure:
    """A blank figure carrying a message (used when a panel has nothing to plot)."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _finish(fig, "empty", height)


def market(bars: pd.DataFrame, symbol: str, overlays: dict[str, pd.Series], rsi: pd.Series | None,
           volatility: pd.Series | None, uirevision: str, vwap: pd.Series | None = None) -> go.Figure:
    """Candles + overlays, volume, RSI (30/70 guides) and realized volatility on a shared time axis."""
    rows = 2 + (rsi is not None) + (volatility is not None)
    heights = [0.52, 0.14] + [0.17] * (rows - 2)
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.025, row_heights=heights)
    x = bars.index
    fig.add_trace(go.Candlestick(x=x, open=bars["open"], high=bars["high"], low=bars["low"], close=bars["close"],
                                 name=symbol, increasing_line_color=UP, decreasing_line_color=DOWN,
                                 increasing_fillcolor=UP, decreasing_fillcolor=DOWN, showlegend=False), 1, 1)
    for i, (name, s) in enumerate(overlays.items()):
        fig.add_trace(go.Scatter(x=s.index, y=s, name=name, mode="lines",
                                 line=dict(width=1.3, color=PALETTE[i % len(PALETTE)])), 1, 1)
    if vwap is not None:
        fig.add_trace(go.Scatter(x=vwap.index, y=vwap, name="VWAP (window)", mode="lines",
                                 line=dict(width=1, dash="dot", color="#cfd8dc")), 1, 1)
    colors = np.where(bars["close"].to_numpy() >= bars["open"].to_numpy(), UP, DOWN)
    fig.add_trace(go.Bar(x=x, y=bars["volume"], name="volume", marker_color=colors, marker_line_width=0,
                         showlegend=False), 2, 1)
    fig.update_yaxes(title_text="volume", row=2, col=1)
    row = 3
    if rsi is not None:
        fig.add_trace(go.Scatter(x=rsi.index, y=rsi, name="RSI", mode="lines", line=dict(width=1.2, color="#ba68c8"),
                                 showlegend=False), row, 1)
        for level in (30, 70):
            fig.add_hline(y=level, line=dict(width=1, dash="dash", color="rgba(200,200,200,0.45)"), row=row, col=1)
        fig.update_yaxes(title_text="RSI", range=[0, 100], row=row, col=1)
        row += 1
    if volatility is not None:
        fig.add_trace(go.Scatter(x=volatility.index, y=volatility, name="volatility", mode="lines",
                                 line=dict(width=1.2, color="#4fc3f7"), showlegend=False), row, 1)
        fig.update_yaxes(title_text="vol (ann.)", tickformat=".0%", row=row, col=1)
    fig.update_yaxes(title_text=symbol, row=1, col=1)
    return _finish(fig, uirevision, 640)


def lines(series: dict[str, pd.Series], uirevision: str, title: str | None = None, height: int = 300,
          yformat: str | None = None, hlines: tuple[float, ...] = ()) -> go.Figure:
    """One line per named series (e.g. hedge ratios, rolling correlation, normalized prices)."""
    fig = go.Figure()
    for i, (name, s) in enumerate(series.items()):
        fig.add_trace(go.Scatter(x=s.index, y=s, name=name, mode="lines",
                                 line=dict(width=1.4, color=PALETTE[i % len(PALETTE)])))
    for h in hlines:
        fig.add_hline(y=h, line=dict(width=1, dash="dash", color="rgba(200,200,200,0.45)"))
    if yformat:
        fig.update_yaxes(tickformat=yformat)
    return _finish(fig, uirevision, height, title)


def normalized(closes: pd.DataFrame, uirevision: str) -> go.Figure:
    """Each close rebased to 100 at its first bar in the window."""
    base = closes.apply(lambda c: c / c.dropna().iloc[0] * 100 if c.notna().any() else c)
    return lines({c: base[c].dropna() for c in base.columns}, uirevision, "Normalized price (first bar = 100)")


def scatter_fits(x: pd.Series, y: pd.Series, fits: dict[str, tuple[float, float]], x_name: str, y_name: str,
                 uirevision: str) -> go.Figure:
    """Scatter of Y on X closes (colour = time) with one fitted line y = alpha + beta*x per method."""
    fig = go.Figure()
    t = np.arange(len(x))
    fig.add_trace(go.Scattergl(x=x, y=y, mode="markers", name="bars",
                               marker=dict(size=4, color=t, colorscale="Viridis", opacity=0.65,
                                           colorbar=dict(title="time", thickness=8, tickvals=[]))))
    grid = np.linspace(float(np.nanmin(x)), float(np.nanmax(x)), 50)
    for i, (name, (alpha, beta)) in enumerate(fits.items()):
        fig.add_trace(go.Scatter(x=grid, y=alpha + beta * grid, mode="lines", name=f"{name}: β={beta:.3f}",
                                 line=dict(width=2, color=PALETTE[(i + 1) % len(PALETTE)])))
    fig.update_xaxes(title_text=x_name)
    fig.update_yaxes(title_text=y_name)
    fig = _finish(fig, uirevision, 300, f"{y_name} on {x_name}: fitted lines")
    fig.update_layout(hovermode="closest", legend=dict(orientation="v", yanchor="top", y=0.98, xanchor="left", x=0.01,
                                                       bgcolor="rgba(20,20,24,0.6)"))
    return fig


def spread_z(spread: pd.Series, z: pd.Series, entry: float, exit_: float, uirevision: str) -> go.Figure:
    """Spread (top) and its rolling z-score with ±entry / ±exit bands (bottom)."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.04, row_heights=[0.5, 0.5])
    fig.add_trace(go.Scatter(x=spread.index, y=spread, name="spread", mode="lines",
                             line=dict(width=1.3, color=PALETTE[0])), 1, 1)
    fig.add_trace(go.Scatter(x=z.index, y=z, name="z-score", mode="lines", line=dict(width=1.3, color=PALETTE[1])),
                  2, 1)
    for level, dash in ((entry, "dash"), (-entry, "dash"), (exit_, "dot"), (-exit_, "dot"), (0.0, "solid")):
        fig.add_hline(y=level, line=dict(width=1, dash=dash, color="rgba(220,220,220,0.5)"), row=2, col=1)
    fig.update_yaxes(title_text="spread", row=1, col=1)
    fig.update_yaxes(title_text="z", row=2, col=1)
    return _finish(fig, uirevision, 440, "Spread and z-score")


def heatmap(corr: pd.DataFrame, uirevision: str, title: str = "Correlation of log returns") -> go.Figure:
    fig = go.Figure(go.Heatmap(z=corr.to_numpy(), x=list(corr.columns), y=list(corr.index), zmin=-1, zmax=1,
                               colorscale="RdBu", reversescale=False, text=np.round(corr.to_numpy(), 2),
                               texttemplate="%{text}", hovertemplate="%{y} / %{x}: %{z:.3f}<extra></extra>"))
    fig = _finish(fig, uirevision, 120 + 42 * len(corr), title)
    fig.update_layout(hovermode="closest")
    fig.update_yaxes(autorange="reversed", showspikes=False)
    fig.update_xaxes(showspikes=False)
    return fig


def equity(curve: pd.Series, drawdown: pd.Series, uirevision: str, trades: pd.DataFrame | None = None) -> go.Figure:
    """Equity curve (top, with entry markers if given) and drawdown (bottom, fractions)."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.04, row_heights=[0.65, 0.35])
    fig.add_trace(go.Scatter(x=curve.index, y=curve, name="equity", mode="lines",
                             line=dict(width=1.6, color=PALETTE[0])), 1, 1)
    if trades is not None and len(trades) and "entry_time" in trades.columns:
        at = curve.reindex(pd.DatetimeIndex(trades["entry_time"]), method="ffill")
        fig.add_trace(go.Scatter(x=at.index, y=at, mode="markers", name="entries",
                                 marker=dict(size=7, symbol="triangle-up", color=PALETTE[1])), 1, 1)
    fig.add_trace(go.Scatter(x=drawdown.index, y=drawdown, name="drawdown", mode="lines", fill="tozeroy",
                             line=dict(width=1, color=DOWN)), 2, 1)
    fig.update_yaxes(title_text="equity", row=1, col=1)
    fig.update_yaxes(title_text="drawdown", tickformat=".1%", row=2, col=1)
    return _finish(fig, uirevision, 460, "Equity and drawdown")


def tick_rate(rate: pd.DataFrame, step_s: int, uirevision: str) -> go.Figure:
    """Stored ticks per second by symbol (from `tickstore.queries.tick_rate`)."""
    series = {sym: g.set_index("ts")["ticks"] / step_s for sym, g in rate.groupby("symbol")}
    return lines(series, uirevision, f"Stored ticks per second ({step_s}s buckets, by trade time)", height=260)
