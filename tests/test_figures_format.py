"""Readable charts: one hover-label style on every figure, prices in full at their tick size, no SI suffixes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dashboard import figures
from dashboard.formats import compact, plain_number, price_decimals, price_format, rate_pct, utc_time, value_format
from tests.conftest import assert_no_exception, plotly_specs


def _luminance(hex_color: str) -> float:
    """WCAG relative luminance of `#rrggbb`."""
    rgb = [int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def _d3(spec: str, value: float) -> str:
    """The text a d3 `,.Nf` format gives (Python's format mini-language agrees for these; `~` trims zeros)."""
    trim = "~" in spec
    text = format(value, spec.replace("~", ""))
    return text.rstrip("0").rstrip(".") if trim and "." in text else text


@pytest.mark.parametrize("prices, decimals, shown", [
    ([92_091.47, 92_000.10, 92_100.00, 91_999.99], 2, "92,091.47"),                    # BTCUSDT, tick 0.01
    ([0.00001234, 0.00001235, 0.0000123], 8, "0.00001234"),                            # PEPEUSDT, tick 1e-8
    ([0.0072123, 0.0072, 0.0072125], 7, "0.0072123"),                                 # 1000PEPEUSDT, 1e-7
    ([3_012.5, 3_013.0, 3_012.0], 1, "3,012.5"),
    ([1.0001, 0.9999, 1.0], 4, "1.0001"),                                            # a stablecoin, 1e-4
    ([101, 102, 99], 0, "101"),
])
def test_prices_are_shown_in_full_at_their_tick_size(prices, decimals, shown):
    assert price_decimals(prices) == decimals
    assert price_format(prices) == f",.{decimals}f"
    assert _d3(price_format(prices), prices[0]) == shown


def test_prices_on_no_tick_grid_get_eight_significant_digits():
    rng = np.random.default_rng(3)
    btc = 92_000 + rng.normal(0, 50, 500)          # computed prices (e.g. VWAP): no tick grid
    assert price_format(btc) == ",.3f"              # 92,034.123
    pepe = 0.00001234 * (1 + rng.normal(0, 1e-3, 500))
    assert price_format(pepe) == ",.12f"            # the decimals cap; 0.000012345678


def test_formats_ignore_nan_and_empty_input():
    assert price_format([np.nan, 92_091.47, np.inf]) == ",.2f"
    assert price_format([]) == ",.2f"
    assert value_format([np.nan]) == ",.2~f"


def test_other_quantities_show_six_significant_digits_without_si_suffix():
    assert value_format([1_234_567.0, 2.0]) == ",.0~f"
    assert _d3(value_format([1_234_567.0]), 1_234_567.0) == "1,234,567"
    assert value_format([12.3456789]) == ",.4~f"
    assert _d3(value_format([0.00123456789]), 0.00123456789) == "0.00123457"


def _bars(prices: np.ndarray) -> pd.DataFrame:
    idx = pd.date_range("2026-01-05", periods=len(prices), freq="1min", tz="UTC")
    p = pd.Series(prices, index=idx)
    return pd.DataFrame({"open": p, "high": (p * 1.0002).round(2), "low": (p * 0.9998).round(2), "close": p,
                         "volume": 12_345.678})


def _all_figures() -> dict[str, dict]:
    idx = pd.date_range("2026-01-05", periods=50, freq="1min", tz="UTC")
    s = pd.Series(np.linspace(1, 2, 50), index=idx)
    btc = pd.Series(np.round(np.linspace(92_000, 92_100, 50), 2), index=idx)
    eth = pd.Series(np.round(np.linspace(3_000, 3_010, 50), 2), index=idx)
    corr = pd.DataFrame([[1, 0.5], [0.5, 1]], index=["A", "B"], columns=["A", "B"])
    rate = pd.DataFrame({"ts": idx, "symbol": "BTCUSDT", "ticks": 10})
    return {
        "market": figures.market(_bars(btc.to_numpy()), "BTCUSDT", {"SMA 20": btc}, s * 50, s / 10, "r"),
        "lines": figures.lines({"a": s}, "r", "t"),
        "normalized": figures.normalized(pd.DataFrame({"BTCUSDT": btc, "ETHUSDT": eth}), "r"),
        "scatter": figures.scatter_fits(btc, eth, {"OLS": (0.0, 0.03)}, "BTCUSDT", "ETHUSDT", "r"),
        "spread_z": figures.spread_z(s, s, 2.0, 0.5, "r"),
        "heatmap": figures.heatmap(corr, "r"),
        "equity": figures.equity(s * 10_000, s * 0, "r"),
        "tick_rate": figures.tick_rate(rate, 10, "r"),
        "screen_heatmap": figures.screen_heatmap(corr, corr * 0.01, 0.05, "r"),
    }


def test_every_figure_has_the_readable_hover_label():
    for name, fig in _all_figures().items():
        label = fig["layout"]["hoverlabel"]
        assert label == figures.HOVERLABEL, name
        assert _contrast(label["font"]["color"], label["bgcolor"]) >= 7, name  # WCAG AAA


def test_value_axes_never_use_si_suffixes():
    """Every y axis of a number (not a category) has an explicit tick and hover format."""
    for name, fig in _all_figures().items():
        if name.endswith("heatmap"):
            continue
        for key, axis in fig["layout"].items():
            if key.startswith("yaxis"):
                assert axis.get("hoverformat") and axis.get("tickformat"), (name, key)


def test_market_price_axis_follows_the_symbols_tick_size():
    btc = figures.market(_bars(np.round(np.linspace(92_000, 92_100, 30), 2)), "BTCUSDT", {}, None, None, "r")
    assert btc["layout"]["yaxis"]["hoverformat"] == ",.2f"
    assert btc["layout"]["yaxis"]["tickformat"] == ",.2~f"
    assert btc["layout"]["yaxis2"]["hoverformat"] == ",.1~f"      # volume 12,345.7
    assert btc["layout"]["xaxis"]["hoverformat"] == figures.TIME_HOVER
    pepe_prices = np.round(np.linspace(0.00001200, 0.00001300, 30), 8)
    pepe_bars = _bars(pepe_prices).assign(high=pepe_prices, low=pepe_prices)
    pepe = figures.market(pepe_bars, "PEPEUSDT", {}, None, None, "r")
    assert pepe["layout"]["yaxis"]["hoverformat"] == ",.8f"


def test_scatter_hover_is_all_in_the_readable_box():
    """Closest-point hovers (the scatter) would show the trace name beside the box in the trace's own colour:
    every trace's hovertemplate carries its text and drops that part (`<extra></extra>`)."""
    fig = _all_figures()["scatter"]
    for trace in fig["data"]:
        assert trace["hovertemplate"].endswith("<extra></extra>")
        assert "BTCUSDT %{x:,.2f}<br>ETHUSDT %{y:,.2f}" in trace["hovertemplate"]
    assert fig["data"][0]["customdata"][0] == "2026-01-05 00:00:00 UTC"


def test_equity_shows_money_in_full():
    fig = figures.equity(pd.Series([10_000.0, 10_012.5]), pd.Series([0.0, 0.0]), "r")
    assert fig["layout"]["yaxis"]["hoverformat"] == ",.2f"
    assert fig["layout"]["yaxis2"]["hoverformat"] == ".2%"


def test_pages_draw_their_charts_with_the_formats(app, tick_db):
    """AppTest: the figures the Market and Pairs pages send carry the hover style and the prices' formats
    (the synthetic file's prices are rounded to cents)."""
    at = app(tick_db)
    assert_no_exception(at)
    (fig,) = plotly_specs(at)
    assert fig["layout"]["hoverlabel"]["bgcolor"] == figures.HOVERLABEL["bgcolor"]
    assert fig["layout"]["yaxis"]["hoverformat"] == ",.2f"
    at.switch_page("app_pages/pairs.py").run()
    assert_no_exception(at)
    specs = plotly_specs(at)
    assert len(specs) >= 5 and all(f["layout"]["hoverlabel"] == figures.HOVERLABEL for f in specs)
    scatter = next(f for f in specs if "fitted lines" in f["layout"]["title"]["text"])
    assert scatter["layout"]["xaxis"]["hoverformat"] == scatter["layout"]["yaxis"]["hoverformat"] == ",.2f"


def test_tick_rate_legend_of_a_universe_goes_below_the_plot_not_over_the_title():
    idx = pd.date_range("2026-01-01", periods=5, freq="10s", tz="UTC")
    few = pd.DataFrame({"ts": list(idx) * 2, "symbol": ["BTCUSDT"] * 5 + ["ETHUSDT"] * 5, "ticks": 10})
    fig = figures.tick_rate(few, 10, "r")
    assert fig["layout"]["legend"]["y"] >= 1.0 and fig["layout"]["height"] == 260  # beside the title, as before
    syms = [f"S{i:02d}USDT" for i in range(24)]
    many = pd.DataFrame({"ts": list(idx) * 24, "symbol": [s for s in syms for _ in idx], "ticks": 10})
    fig = figures.tick_rate(many, 10, "r")
    legend = fig["layout"]["legend"]
    assert legend["yanchor"] == "top" and legend["y"] < 0          # below the plot area
    assert fig["layout"]["height"] == 260 + 20 * 2                 # room for two rows of eight names
    assert [t["name"] for t in fig["data"]][-1] == "16 others"     # the 8 busiest drawn, the rest summed
    assert len(fig["data"]) == figures.TICK_RATE_LINES + 1


@pytest.mark.parametrize("rate, shown, exact", [
    (0.0001, "+0.0100%", "+0.0100%"), (-0.00075, "-0.0750%", "-0.0750%"), (0.0, "+0.0000%", "+0.0000%"),
    (2.1e-7, "+0.0000%", "+0.000021%"), (-3.456e-9, "-0.0000%", "-0.00000035%"), (0.0123, "+1.2300%", "+1.2300%"),
    (1e-6, "+0.0001%", "+0.0001%")])
def test_funding_rates_print_as_exchanges_do_never_with_an_exponent(rate, shown, exact):
    assert rate_pct(rate) == shown and rate_pct(rate, exact=True) == exact


def test_table_cell_formats():
    assert [compact(v) for v in (57_123.0, 3.5e9, 160.4e6, 9.94e6, 52.1, -2_500.0)] == \
        ["57K", "3.5B", "160M", "9.9M", "52.1", "-2.5K"]
    assert plain_number(12345.0) == "12,345" and plain_number(2.5) == "2.5"
    t = pd.Timestamp("2026-12-03 21:11:57.364912", tz="UTC")
    assert utc_time(t) == "2026-12-03 21:11:57" and utc_time(t, millis=True) == "2026-12-03 21:11:57.364"
