"""AppTest: the Pairs page against quantlib computed independently on the same bars from the file."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dashboard import tables
from quantlib import pairs as qpairs
from quantlib import regression
from tests.conftest import assert_no_exception, page_text, plotly_specs, table_value
from tickstore import queries

ALL = {"lb": "6h"}  # the fixture holds 3 h, so a 6 h lookback sees every bar


def _closes(db, timeframe="1m"):
    frames = queries.bars_wide("spot", ["BTCUSDT", "ETHUSDT"], timeframe, pd.Timestamp("2000-01-01", tz="UTC"),
                               path=db)
    y, x = qpairs.align(frames["ETHUSDT"]["close"].rename("ETHUSDT"), frames["BTCUSDT"]["close"].rename("BTCUSDT"))
    return y, x


def _titles(at):
    return [(spec["layout"].get("title") or {}).get("text") for spec in plotly_specs(at)]


def test_pairs_page_matches_quantlib_on_the_same_bars(app, tick_db):
    at = app(tick_db, page="app_pages/pairs.py", query=ALL)
    assert_no_exception(at)
    titles = _titles(at)
    assert titles[0] == "Normalized price (first bar = 100)"
    assert "Spread and z-score" in titles and "Correlation of log returns" in titles
    assert len(titles) == 6
    y, x = _closes(tick_db)
    ref = qpairs.pair_summary(y, x, window=60, method="ols", timeframe="1m")
    table = table_value(at.table[0], tables.TESTS_COLUMNS).set_index("test")
    assert table.loc["Engle-Granger", "statistic"] == f"{ref.engle_granger.statistic:.4g}"
    p = ref.engle_granger.pvalue
    assert table.loc["Engle-Granger", "p_value"] == ("< 0.001" if p < 0.001 else f"{p:.3f}")
    assert table.loc["hedge ratio (ols)", "statistic"] == f"{ref.hedge.beta:.4g}"
    assert table.loc["hedge ratio (ols)", "p_value"] == ""
    assert table.loc["half-life (bars)", "verdict"] == ref.half_life.verdict
    # the verdict in words is quantlib's (the clock-anchored 1m bars put p near 0.05 on some seconds)
    assert table.loc["Engle-Granger", "verdict"] == ref.engle_granger.verdict
    assert {m.label: m.value for m in at.metric}["Engle-Granger p"] == f"{ref.engle_granger.pvalue:.3f}"
    # scatter fit lines carry the three estimators' betas
    scatter = plotly_specs(at)[1]
    names = [t.get("name", "") for t in scatter["data"]]
    huber = regression.hedge_ratio(y, x, method="huber").beta
    assert f"Huber: β={huber:.3f}" in names and any(n.startswith("Theil-Sen: β=") for n in names)
    # heatmap of all symbols
    heat = plotly_specs(at)[-1]
    assert heat["data"][0]["type"] == "heatmap" and list(heat["data"][0]["x"]) == ["BTCUSDT", "ETHUSDT"]


@pytest.mark.parametrize("method,label", [("Kalman", "Kalman innovation"), ("Rolling OLS", "rolling OLS"),
                                          ("Theil-Sen", "Theil-Sen")])
def test_hedge_method_drives_the_spread(app, tick_db, method, label):
    at = app(tick_db, page="app_pages/pairs.py", query={**ALL, "hedge": method})
    assert_no_exception(at)
    assert f"with the **{label}** hedge" in page_text(at)
    hedge = plotly_specs(at)[2]
    assert {t["name"] for t in hedge["data"]} >= {"static OLS", "rolling OLS (60)", "Kalman"}


def test_short_window_explains_what_is_missing(app, tick_db):
    at = app(tick_db, page="app_pages/pairs.py", query={"lb": "15m", "win": "60"})
    assert_no_exception(at)
    text = page_text(at)
    assert "The tests need at least 61 bars" in text
    assert "rolling hedge ratio needs 60 bars" in text
    titles = _titles(at)
    assert "Normalized price (first bar = 100)" in titles and "Spread and z-score" not in titles
    assert len(at.table) == 0


def test_same_symbol_twice_is_explained(app, tick_db):
    at = app(tick_db, page="app_pages/pairs.py", query={"y": "BTCUSDT", "x": "BTCUSDT"})
    assert_no_exception(at)
    assert "Pick two different symbols" in page_text(at)
    assert plotly_specs(at) == []


@pytest.mark.parametrize("n, kind", [(120, "scatter"), (5000, "scatter"), (5001, "scattergl")])
def test_pair_scatter_uses_webgl_only_for_big_windows(n, kind):
    """SVG up to WEBGL_MIN_POINTS bars (WebGL's first draw costs more than SVG there), WebGL beyond; fit lines
    stay SVG."""
    import numpy as np

    from dashboard import figures

    x = pd.Series(np.linspace(100.0, 110.0, n))
    fig = figures.scatter_fits(x, 2.0 * x + 1.0, {"OLS": (1.0, 2.0)}, "BTCUSDT", "ETHUSDT", "rev")
    assert [t["type"] for t in fig["data"]] == [kind, "scatter"]
    assert len(fig["data"][0]["x"]) == n and fig["layout"]["uirevision"] == "rev"


@pytest.mark.parametrize("method", ["OLS", "Huber"])
def test_pairs_page_plots_a_zscore_without_look_ahead(app, tick_db, method):
    """The z-score drawn against the entry / exit bands is the one with the hedge refitted up to each bar
    (quantlib's `zscore_causal` on the same bars), and the caption says how the spread is timed."""
    at = app(tick_db, page="app_pages/pairs.py", query={**ALL, "hedge": method})
    assert_no_exception(at)
    y, x = _closes(tick_db)
    ref = qpairs.pair_summary(y, x, window=60, method=method.lower(), timeframe="1m")
    spec = next(sp for sp in plotly_specs(at) if (sp["layout"].get("title") or {}).get("text") == "Spread and z-score")
    z = next(t for t in spec["data"] if t["name"] == "z-score")
    plotted = pd.Series([np.nan if v is None else v for v in z["y"]], dtype=float)
    np.testing.assert_allclose(plotted.to_numpy(), ref.zscore_causal.to_numpy(), rtol=1e-9, equal_nan=True)
    text = page_text(at)
    assert "refitted on all bars up to each bar" in text and "in-sample" in text
    latest = {m.label: m.value for m in at.metric}["Latest z-score"]
    assert latest == f"{ref.zscore_causal.dropna().iloc[-1]:+.2f}"


def test_kalman_zscore_is_usable_at_real_btc_prices(app, tick_db):
    """The fixture's BTC trades near 60,000: the Kalman z-score used to read +0.00 (innovation std ~300x the
    spread's with the absolute state noise). With noise relative to the data it has about unit variance."""
    at = app(tick_db, page="app_pages/pairs.py", query={**ALL, "hedge": "Kalman"})
    assert_no_exception(at)
    y, x = _closes(tick_db)
    ref = regression.kalman_hedge_ratio(y, x, warmup=60)
    spec = next(sp for sp in plotly_specs(at) if (sp["layout"].get("title") or {}).get("text") == "Spread and z-score")
    z = pd.Series([np.nan if v is None else v for v in next(t for t in spec["data"] if t["name"] == "z-score")["y"]],
                  dtype=float)
    np.testing.assert_allclose(z.to_numpy(), ref.zscore.to_numpy(), rtol=1e-9, equal_nan=True)
    assert 0.5 < z.std() < 2.0 and z.abs().max() > 2.0
    assert {m.label: m.value for m in at.metric}["Latest z-score"] == f"{ref.zscore.dropna().iloc[-1]:+.2f}"
