"""Figures of the Backtest page beyond the equity curve: sweep heat maps with the in-sample best marked, the
walk-forward equity with its window boundaries. Plain Plotly dicts with a constant `uirevision` per view."""
from __future__ import annotations

import numpy as np
import pandas as pd

from dashboard.figures import DOWN, PALETTE, Figure, _layout, _line

DIVERGING = [[0.0, DOWN], [0.5, "#2b2b33"], [1.0, "#26a69a"]]
SEQUENTIAL = [[0.0, "#1c1c22"], [1.0, "#4fc3f7"]]
REVERSED = [[0.0, "#2b2b33"], [1.0, DOWN]]  # drawdown: larger is worse


def _label(v: float) -> str:
    return f"{v:g}"


def sweep_heatmap(table: pd.DataFrame, title: str, value_format: str, uirevision: str,
                  best: tuple[float, float] | None = None, withheld: pd.DataFrame | None = None,
                  kind: str = "diverging", notes: pd.DataFrame | None = None) -> Figure:
    """entry_z (rows) x exit_z (columns) heat map of one statistic; NaN cells (exit >= entry) stay empty.
    `withheld`: same shape, a reason per cell ('' where shown): such cells are blank with the reason on hover.
    `best`: (entry_z, exit_z) of the in-sample best, outlined and labelled. `value_format`: d3 format.
    `notes`: same shape, hover text of the shown cells (e.g. a confidence interval)."""
    z = table.to_numpy(dtype=float).copy()
    reasons = np.full(z.shape, "", dtype=object)
    if withheld is not None:
        reasons = withheld.reindex(index=table.index, columns=table.columns).fillna("").to_numpy(dtype=object)
        z[reasons != ""] = np.nan
    blocked = np.asarray(reasons != "", dtype=bool)
    if notes is not None:
        extra = notes.reindex(index=table.index, columns=table.columns).fillna("").to_numpy(dtype=object)
        reasons = np.where(reasons == "", extra, reasons)
    xs = [_label(v) for v in table.columns]
    ys = [_label(v) for v in table.index]
    layout = _layout(uirevision, 120 + 34 * len(ys), title, hovermode="closest")
    layout["xaxis"].update(title={"text": "exit |z|"}, type="category", showspikes=False, showgrid=False)
    layout["yaxis"].update(title={"text": "entry |z|"}, type="category", showgrid=False)
    finite = z[np.isfinite(z)]
    trace = {"type": "heatmap", "z": z, "x": xs, "y": ys, "hoverongaps": False, "customdata": reasons,
             "texttemplate": f"%{{z:{value_format}}}", "textfont": {"color": "#f4f5f7", "shadow": "none"},
             "colorbar": {"thickness": 10, "tickformat": value_format},
             "hovertemplate": (f"entry %{{y}} / exit %{{x}}: %{{z:{value_format}}}<br>%{{customdata}}"
                               "<extra></extra>")}
    if kind == "diverging" and finite.size:
        top = float(np.max(np.abs(finite))) or 1.0
        trace.update(colorscale=DIVERGING, zmin=-top, zmax=top)
    else:
        trace.update(colorscale=REVERSED if kind == "reversed" else SEQUENTIAL)
    data = [trace]
    if blocked.any():
        wy, wx = np.nonzero(blocked)
        data.append({"type": "scatter", "mode": "text", "x": [xs[j] for j in wx], "y": [ys[i] for i in wy],
                     "text": ["n/a"] * len(wx), "textfont": {"color": "#8a8f99", "size": 10}, "showlegend": False,
                     "customdata": [reasons[i, j] for i, j in zip(wy, wx)],
                     "hovertemplate": "entry %{y} / exit %{x}: %{customdata}<extra></extra>"})
    if best is not None and _label(best[0]) in ys and _label(best[1]) in xs:
        data.append({"type": "scatter", "mode": "markers+text", "x": [_label(best[1])], "y": [_label(best[0])],
                     "name": "in-sample best", "text": ["best"], "textposition": "top center",
                     "textfont": {"color": "#f0b90b"}, "showlegend": False,
                     "marker": {"symbol": "square-open", "size": 30, "color": "#f0b90b",
                                "line": {"width": 3, "color": "#f0b90b"}},
                     "hovertemplate": "in-sample best: entry %{y} / exit %{x}<extra></extra>"})
    return {"data": data, "layout": layout}


def walk_forward_equity(curve: pd.Series, windows: pd.DataFrame, uirevision: str,
                        references: dict[str, pd.Series] | None = None) -> Figure:
    """Stitched out-of-sample equity with a dotted line at the start of each trading window."""
    layout = _layout(uirevision, 380, "Walk-forward: out-of-sample equity (dotted lines: window starts)")
    data = [_line(curve, "out-of-sample equity", PALETTE[0], 1.6)]
    for i, (name, ref) in enumerate((references or {}).items()):
        data.append(_line(ref, name, PALETTE[(i + 2) % len(PALETTE)], 1.1, line={"dash": "dot"}))
    layout["shapes"] = [{"type": "line", "xref": "x", "yref": "y domain", "x0": t, "x1": t, "y0": 0, "y1": 1,
                         "line": {"width": 1, "dash": "dot", "color": "rgba(200,200,200,0.35)"}, "layer": "below"}
                        for t in pd.to_datetime(windows["trading_start"])]
    layout["yaxis"]["title"] = {"text": "equity"}
    layout["yaxis"]["tickformat"] = ",.0f"
    layout["yaxis"]["hoverformat"] = ",.2f"
    return {"data": data, "layout": layout}
