"""Plotly figure builders. Inputs are already-computed series (quantlib does the maths); each figure gets a
constant `uirevision` per view so the user's zoom / pan survive live refreshes (drawn under a stable `key`).

Figures are plain Plotly JSON dicts (`{"data": [...], "layout": {...}}`) rather than `go.Figure` objects:
the object model validates every property and cost 0.1–0.3 s per figure, on every refresh of every tab.
Subplots are laid out by hand with axis domains (`_stack`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from dashboard.formats import price_format, value_format

UP, DOWN = "#26a69a", "#ef5350"
PALETTE = ["#f0b90b", "#4fc3f7", "#ba68c8", "#81c784", "#ff8a65", "#90a4ae", "#f06292", "#aed581"]
GRID = "rgba(128,128,128,0.18)"
GUIDE = dict(width=1, dash="dash", color="rgba(200,200,200,0.45)")
FONT = dict(family='"Source Sans Pro", "Source Sans 3", sans-serif', size=12, color="#d5d6d9")
# Every chart's hover box: dark text on a light box (the theme's light-grey font on Plotly's default white
# unified-hover box was unreadable), one definition for every figure.
HOVERLABEL = dict(bgcolor="#f4f5f7", bordercolor="#9aa0ad", namelength=-1,
                  font=dict(family=FONT["family"], size=12, color="#14151a"))
TIME_HOVER = "%Y-%m-%d %H:%M:%S UTC"  # bar starts are UTC; the hover header says so
# WebGL (scattergl) only for big scatters: its first draw sets up a GL context and shaders (~0.3-0.5 s in a
# browser without a GPU); SVG draws a few thousand markers faster than that.
WEBGL_MIN_POINTS = 5000
# Above this many bars the price is drawn as a close line inside its high-low band and the volume as a filled
# step line: candles and volume bars are one SVG path per bar (7,200 1s bars took seconds to draw), and at more
# bars than the chart has pixels a candle is a one-pixel line anyway.
CANDLE_MAX_BARS = 1500

Figure = dict


def _axis(**extra) -> dict:
    return {"gridcolor": GRID, "zerolinecolor": GRID, "linecolor": GRID, **extra}


def _xaxis(**extra) -> dict:
    return _axis(showspikes=True, spikemode="across", spikethickness=1, spikecolor="#888", hoverformat=TIME_HOVER,
                 **extra)


def _number_axis(axis: dict, hover: str) -> dict:
    """Show an axis's values in full: `hover` (a d3 format) in the hover box, the same with trailing zeros
    trimmed on the ticks (never Plotly's default SI suffixes such as `92.09k` or `10k`)."""
    axis.update(hoverformat=hover, tickformat=hover if "~" in hover or "%" in hover else hover[:-1] + "~f")
    return axis


def _layout(uirevision: str, height: int, title: str | None = None, **extra) -> dict:
    layout = {
        "template": "plotly_dark", "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)", "font": FONT,
        "uirevision": uirevision, "height": height, "margin": dict(l=8, r=8, t=36 if title else 10, b=8),
        "legend": dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right" if title else "left",
                       x=1 if title else 0, bgcolor="rgba(0,0,0,0)"),
        "hovermode": "x unified", "hoverlabel": HOVERLABEL, "xaxis": _xaxis(automargin=True),
        "yaxis": _axis(automargin=True), **extra,
    }
    if title:
        layout["title"] = dict(text=title, x=0.01, font=dict(size=14))
    return layout


def _stack(layout: dict, heights: list[float], gap: float = 0.025) -> list[tuple[str, str]]:
    """Rows of subplots sharing the x axis (top to bottom); returns the (xref, yref) of each row."""
    total = sum(heights)
    free = 1.0 - gap * (len(heights) - 1)
    top, refs = 1.0, []
    for i, h in enumerate(heights, start=1):
        bottom = max(0.0, top - free * h / total)
        xa, ya = ("xaxis", "yaxis") if i == 1 else (f"xaxis{i}", f"yaxis{i}")
        layout[xa] = _xaxis(anchor="y" if i == 1 else f"y{i}", automargin=True,
                            showticklabels=i == len(heights), **({} if i == 1 else {"matches": "x"}))
        layout[ya] = _axis(domain=[bottom, top], anchor="x" if i == 1 else f"x{i}", automargin=True)
        refs.append(("x" if i == 1 else f"x{i}", "y" if i == 1 else f"y{i}"))
        top = bottom - gap
    return refs


def _hline(y: float, xref: str = "x", yref: str = "y", line: dict | None = None) -> dict:
    return {"type": "line", "xref": f"{xref} domain", "x0": 0, "x1": 1, "yref": yref, "y0": y, "y1": y,
            "line": line or GUIDE, "layer": "below"}


def _line(s: pd.Series, name: str, color: str, width: float = 1.4, **extra) -> dict:
    return {"type": "scatter", "mode": "lines", "x": s.index, "y": s.to_numpy(), "name": name,
            "line": {"width": width, "color": color, **extra.pop("line", {})}, **extra}


def market(bars: pd.DataFrame, symbol: str, overlays: dict[str, pd.Series], rsi: pd.Series | None,
           volatility: pd.Series | None, uirevision: str) -> Figure:
    """Candles + overlays, volume, RSI (30/70 guides) and realized volatility on a shared time axis (above
    CANDLE_MAX_BARS bars: close line in its high-low band, volume as a filled step line)."""
    layout = _layout(uirevision, 640)
    heights = [0.52, 0.14] + [0.17] * ((rsi is not None) + (volatility is not None))
    refs = _stack(layout, heights)
    layout["xaxis"]["rangeslider"] = {"visible": False}
    x = bars.index
    (x1, y1), (x2, y2) = refs[0], refs[1]
    many = len(bars) > CANDLE_MAX_BARS
    if many:
        band = {"mode": "lines", "line": {"width": 0, "color": UP}, "showlegend": False, "xaxis": x1, "yaxis": y1}
        data = [{"type": "scatter", "x": x, "y": bars["low"].to_numpy(), "name": "low", **band},
                {"type": "scatter", "x": x, "y": bars["high"].to_numpy(), "name": "high", "fill": "tonexty",
                 "fillcolor": "rgba(38,166,154,0.25)", **band},
                _line(bars["close"], symbol, "#e0e0e0", 1.1, showlegend=False, xaxis=x1, yaxis=y1)]
    else:
        data = [{"type": "candlestick", "x": x, "open": bars["open"].to_numpy(), "high": bars["high"].to_numpy(),
                 "low": bars["low"].to_numpy(), "close": bars["close"].to_numpy(), "name": symbol,
                 "showlegend": False, "increasing": {"line": {"color": UP}, "fillcolor": UP},
                 "decreasing": {"line": {"color": DOWN}, "fillcolor": DOWN}, "xaxis": x1, "yaxis": y1}]
    for i, (name, s) in enumerate(overlays.items()):
        data.append(_line(s, name, PALETTE[i % len(PALETTE)], 1.3, xaxis=x1, yaxis=y1))
    if many:
        data.append({"type": "scatter", "mode": "lines", "x": x, "y": bars["volume"].to_numpy(), "name": "volume",
                     "showlegend": False, "line": {"width": 0.8, "color": "#90a4ae", "shape": "hv"},
                     "fill": "tozeroy", "fillcolor": "rgba(144,164,174,0.45)", "xaxis": x2, "yaxis": y2})
    else:
        colors = np.where(bars["close"].to_numpy() >= bars["open"].to_numpy(), UP, DOWN)
        data.append({"type": "bar", "x": x, "y": bars["volume"].to_numpy(), "name": "volume", "showlegend": False,
                     "marker": {"color": colors, "line": {"width": 0}}, "xaxis": x2, "yaxis": y2})
    layout["yaxis"]["title"] = {"text": symbol}
    _number_axis(layout["yaxis"], price_format(bars[["open", "high", "low", "close"]].to_numpy()))
    layout["yaxis2"]["title"] = {"text": "volume"}
    _number_axis(layout["yaxis2"], value_format(bars["volume"].to_numpy()))
    shapes, row = [], 2
    if rsi is not None:
        xr, yr = refs[row]
        data.append(_line(rsi, "RSI", "#ba68c8", 1.2, showlegend=False, xaxis=xr, yaxis=yr))
        shapes += [_hline(30, xr, yr), _hline(70, xr, yr)]
        _number_axis(layout["yaxis" + yr[1:]], ".1f").update(title={"text": "RSI"}, range=[0, 100])
        row += 1
    if volatility is not None:
        xv, yv = refs[row]
        data.append(_line(volatility, "volatility", "#4fc3f7", 1.2, showlegend=False, xaxis=xv, yaxis=yv))
        layout["yaxis" + yv[1:]].update(title={"text": "vol (ann.)"}, tickformat=".0%", hoverformat=".1%")
    layout["shapes"] = shapes
    return {"data": data, "layout": layout}


def lines(series: dict[str, pd.Series], uirevision: str, title: str | None = None, height: int = 300,
          yformat: str | None = None, hlines: tuple[float, ...] = ()) -> Figure:
    """One line per named series (e.g. hedge ratios, rolling correlation, normalized prices). `yformat`: the
    d3 format of the values (default: `value_format` of all of them)."""
    layout = _layout(uirevision, height, title)
    values = [s.to_numpy(dtype=float) for s in series.values()]
    _number_axis(layout["yaxis"], yformat or value_format(np.concatenate(values) if values else []))
    layout["shapes"] = [_hline(h) for h in hlines]
    data = [_line(s, name, PALETTE[i % len(PALETTE)]) for i, (name, s) in enumerate(series.items())]
    return {"data": data, "layout": layout}


def normalized(closes: pd.DataFrame, uirevision: str) -> Figure:
    """Each close rebased to 100 at its first bar in the window (display scaling only)."""
    series = {}
    for c in closes.columns:
        s = closes[c].dropna()
        if len(s):
            series[c] = s / s.iloc[0] * 100
    return lines(series, uirevision, "Normalized price (first bar = 100)", yformat=",.2f")


def scatter_fits(x: pd.Series, y: pd.Series, fits: dict[str, tuple[float, float]], x_name: str, y_name: str,
                 uirevision: str) -> Figure:
    """Scatter of Y on X closes (colour = time) with one fitted line y = alpha + beta*x per method."""
    layout = _layout(uirevision, 300, f"{y_name} on {x_name}: fitted lines", hovermode="closest")
    layout["legend"] = dict(orientation="v", yanchor="top", y=0.98, xanchor="left", x=0.01,
                            bgcolor="rgba(20,20,24,0.6)")
    layout["xaxis"].update(title={"text": x_name}, showspikes=False)
    layout["yaxis"].update(title={"text": y_name})
    xf, yf = price_format(x.to_numpy()), price_format(y.to_numpy())
    _number_axis(layout["xaxis"], xf)
    _number_axis(layout["yaxis"], yf)
    # the whole label in the (readable) box: no trace-coloured name beside it
    values = f"{x_name} %{{x:{xf}}}<br>{y_name} %{{y:{yf}}}"
    when = (pd.DatetimeIndex(x.index).strftime("%Y-%m-%d %H:%M:%S UTC").to_numpy()
            if isinstance(x.index, pd.DatetimeIndex) else None)
    data = [{"type": "scattergl" if len(x) > WEBGL_MIN_POINTS else "scatter", "mode": "markers",
             "x": x.to_numpy(), "y": y.to_numpy(), "name": "bars", "customdata": when,
             "hovertemplate": ("%{customdata}<br>" if when is not None else "") + values + "<extra></extra>",
             "marker": {"size": 4, "color": np.arange(len(x)), "colorscale": "Viridis", "opacity": 0.65,
                        "colorbar": {"title": {"text": "time"}, "thickness": 8, "tickvals": []}}}]
    grid = np.linspace(float(np.nanmin(x)), float(np.nanmax(x)), 50)
    for i, (name, (alpha, beta)) in enumerate(fits.items()):
        label = f"{name}: β={beta:.3f}"
        data.append({"type": "scatter", "mode": "lines", "x": grid, "y": alpha + beta * grid, "name": label,
                     "hovertemplate": f"{label}<br>{values}<extra></extra>",
                     "line": {"width": 2, "color": PALETTE[(i + 1) % len(PALETTE)]}})
    return {"data": data, "layout": layout}


def spread_z(spread: pd.Series, z: pd.Series, entry: float, exit_: float, uirevision: str) -> Figure:
    """Spread (top) and its rolling z-score with ±entry / ±exit bands (bottom)."""
    layout = _layout(uirevision, 440, "Spread and z-score")
    (x1, y1), (x2, y2) = _stack(layout, [0.5, 0.5], gap=0.04)
    data = [_line(spread, "spread", PALETTE[0], 1.3, xaxis=x1, yaxis=y1),
            _line(z, "z-score", PALETTE[1], 1.3, xaxis=x2, yaxis=y2)]
    layout["shapes"] = [_hline(level, x2, y2, dict(width=1, dash=dash, color="rgba(220,220,220,0.5)"))
                        for level, dash in ((entry, "dash"), (-entry, "dash"), (exit_, "dot"), (-exit_, "dot"),
                                            (0.0, "solid"))]
    layout["yaxis"]["title"] = {"text": "spread"}
    _number_axis(layout["yaxis"], value_format(spread.to_numpy(dtype=float)))
    layout["yaxis2"]["title"] = {"text": "z"}
    _number_axis(layout["yaxis2"], ".2f")
    return {"data": data, "layout": layout}


def heatmap(corr: pd.DataFrame, uirevision: str, title: str = "Correlation of log returns") -> Figure:
    values = corr.to_numpy()
    layout = _layout(uirevision, 120 + 42 * len(corr), title, hovermode="closest")
    layout["xaxis"].update(showspikes=False, showgrid=False)
    layout["yaxis"].update(autorange="reversed", showgrid=False)
    data = [{"type": "heatmap", "z": values, "x": list(corr.columns), "y": list(corr.index), "zmin": -1, "zmax": 1,
             "colorscale": [[0.0, DOWN], [0.5, "#2b2b33"], [1.0, "#4fc3f7"]], "text": np.round(values, 2), "texttemplate": "%{text}",
             "hovertemplate": "%{y} / %{x}: %{z:.3f}<extra></extra>"}]
    return {"data": data, "layout": layout}


def equity(curve: pd.Series, drawdown: pd.Series, uirevision: str, trades: pd.DataFrame | None = None,
           references: dict[str, pd.Series] | None = None) -> Figure:
    """Equity curve (top, with entry markers if given, and dotted reference lines such as buy-and-hold of each
    leg) and drawdown (bottom, fractions)."""
    layout = _layout(uirevision, 460, "Equity and drawdown")
    (x1, y1), (x2, y2) = _stack(layout, [0.65, 0.35], gap=0.04)
    data = [_line(curve, "equity", PALETTE[0], 1.6, xaxis=x1, yaxis=y1)]
    for i, (name, ref) in enumerate((references or {}).items()):
        data.append(_line(ref, name, PALETTE[(i + 2) % len(PALETTE)], 1.1, xaxis=x1, yaxis=y1,
                          line={"dash": "dot"}))
    if trades is not None and len(trades) and "entry_time" in trades.columns:
        at = curve.reindex(pd.DatetimeIndex(trades["entry_time"]), method="ffill")
        data.append({"type": "scatter", "mode": "markers", "x": at.index, "y": at.to_numpy(), "name": "entries",
                     "marker": {"size": 7, "symbol": "triangle-up", "color": PALETTE[1]}, "xaxis": x1, "yaxis": y1})
    data.append(_line(drawdown, "drawdown", DOWN, 1, fill="tozeroy", xaxis=x2, yaxis=y2))
    layout["yaxis"]["title"] = {"text": "equity"}
    _number_axis(layout["yaxis"], ",.2f")
    layout["yaxis2"].update(title={"text": "drawdown"}, tickformat=".2%", hoverformat=".2%")
    return {"data": data, "layout": layout}


LEGEND_ABOVE_MAX = 8   # series whose legend still fits on one line beside a chart's title
LEGEND_PER_ROW = 8     # legend entries per row below a chart (symbol names)
TICK_RATE_LINES = 8    # busiest symbols drawn on their own; the rest of a universe is one "others" line


def tick_rate(rate: pd.DataFrame, step_s: int, uirevision: str, top: int = TICK_RATE_LINES) -> Figure:
    """Stored ticks per second by symbol (from `tickstore.queries.tick_rate`): the `top` busiest symbols, and every
    other one summed as one line (hundreds of lines are unreadable and slow to draw)."""
    busiest = rate.groupby("symbol")["ticks"].sum().sort_values(ascending=False, kind="stable")
    keep = set(busiest.index[:top])
    series = {sym: g.set_index("ts")["ticks"] / step_s for sym, g in rate.groupby("symbol") if sym in keep}
    rest = rate.loc[~rate["symbol"].isin(keep)]
    if not rest.empty:
        series[f"{len(busiest) - len(keep)} others"] = rest.groupby("ts")["ticks"].sum() / step_s
    fig = lines(series, uirevision, f"Stored ticks per second ({step_s}s buckets, by trade time)", height=260,
                yformat=",.1f")
    if len(series) > LEGEND_ABOVE_MAX:  # a universe's legend wraps onto the title above the plot: put it below
        rows = -(-len(series) // LEGEND_PER_ROW)
        fig["layout"]["legend"] = dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0)
        fig["layout"]["height"] = 260 + 20 * rows
    return fig


def screen_heatmap(score: pd.DataFrame, q: pd.DataFrame, fdr: float, uirevision: str) -> Figure:
    """−log10 q of the pair screen over the best pairs' symbols; cells at or under the FDR level show their q."""
    values = score.to_numpy(dtype=float)
    qv = q.to_numpy(dtype=float)
    line = -np.log10(fdr)
    top = max(2.0 * line, float(np.nanmax(values)) if np.isfinite(values).any() else 0.0)
    text = np.where(qv <= fdr, np.vectorize(lambda v: f"{v:.1g}" if v >= 1e-3 else "<.001")(np.nan_to_num(qv, nan=1.0)),
                    "")
    layout = _layout(uirevision, 160 + 30 * len(score), f"Best pairs: −log10 q (q ≤ {fdr:g} labelled)",
                     hovermode="closest")
    layout["xaxis"].update(showspikes=False, showgrid=False, tickangle=-45)
    layout["yaxis"].update(autorange="reversed", showgrid=False)
    data = [{"type": "heatmap", "z": values, "x": list(score.columns), "y": list(score.index), "zmin": 0, "zmax": top,
             "customdata": qv, "text": text, "texttemplate": "%{text}", "hoverongaps": False,
             "colorscale": [[0.0, "#1c1c22"], [min(line / top, 1.0) * 0.999, "#3a3a48"],
                            [min(line / top, 1.0), "#26a69a"], [1.0, "#f0b90b"]],
             "colorbar": {"title": {"text": "−log10 q"}, "thickness": 10},
             "hovertemplate": "%{y} / %{x}: q = %{customdata:.3g}<extra></extra>"}]
    return {"data": data, "layout": layout}
