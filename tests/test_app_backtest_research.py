"""AppTest: the Backtest page's sections (single run with honest statistics, suggested thresholds, walk-forward,
parameter sweep) against quantlib run independently on the same bars; the one minimum-sample rule on the
Backtest and Pairs pages; every control read back from the URL."""
from __future__ import annotations

import datetime as dt
import io
import math

import numpy as np
import pandas as pd
import pytest

from quantlib import backtest, ou, performance
from quantlib import pairs as qpairs
from quantlib.sample import RULE
from tests.conftest import assert_no_exception, make_tick_db, page_text, plotly_specs
from tickstore import queries

END = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)  # fixed: no verdict depends on the wall clock


@pytest.fixture(scope="module")
def long_db(tmp_path_factory):
    """14 h of the synthetic pair (840 one-minute bars): long enough for an annualized Sharpe under the rule."""
    path = tmp_path_factory.mktemp("bt") / "long.duckdb"
    make_tick_db(path, hours=14, rate_per_s=0.3, end=END)
    return path


@pytest.fixture(scope="module")
def short_db(tmp_path_factory):
    """3 h of the synthetic pair ending at a fixed time (the session's tick_db ends now: its bar boundaries, and so
    which sweep sets trade in sample, move from run to run)."""
    path = tmp_path_factory.mktemp("bt") / "short.duckdb"
    make_tick_db(path, hours=3.0, end=END)
    return path


def _legs(db, tf="1m"):
    frames = queries.bars_wide("spot", ["BTCUSDT", "ETHUSDT"], tf, pd.Timestamp("2000-01-01", tz="UTC"), path=db)
    return qpairs.align(frames["ETHUSDT"]["close"], frames["BTCUSDT"]["close"])


def _open(app, db, **query):
    at = app(db, page="app_pages/backtest.py", query={"lb": "24h", "win": "30", "hedge": "Rolling OLS", **query})
    assert_no_exception(at)
    return at


def _offer(at, key: str) -> pd.DataFrame:
    """The CSV a click on download button `key` gives (its offer, filled by the page's fragment)."""
    return pd.read_csv(io.BytesIO(at.session_state["_tickdesk_download_offers"][key]()))


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_short_sample_withholds_sharpe_and_says_why(app, tick_db):
    """3 h of bars: the annualized Sharpe and the hit rate are withheld with the reason; costs in plain money,
    no empty cell in the trades table."""
    at = app(tick_db, page="app_pages/backtest.py", query={"lb": "6h", "win": "30", "hedge": "Rolling OLS"})
    assert_no_exception(at)
    y, x = _legs(tick_db)
    ref = backtest.mean_reversion(y, x, window=30, hedge="rolling", timeframe="1m")
    assert "sharpe" in ref.stats.withheld and ref.stats.n_trades < RULE.min_trades
    m = _metrics(at)
    assert m["Sharpe (ann.)"] == "withheld"
    assert m["Hit rate"] == (f"{int(round(ref.stats.hit_rate * ref.stats.n_trades))} of {ref.stats.n_trades} "
                             f"trade{'s' if ref.stats.n_trades != 1 else ''}")
    text = page_text(at)
    assert "An annualized Sharpe ratio is withheld: only" in text and "(need 12 h)" in text
    assert "The one minimum-sample rule of every panel" in text
    stats = at.dataframe[-1].value.set_index("metric")
    assert stats.loc["Sharpe (ann.) [95% CI]", "value"] == "withheld"
    assert stats.loc["Costs paid", "value"] == f"{ref.stats.total_costs:,.2f}"
    assert "e+" not in stats.loc["Costs paid", "value"]
    trades = at.dataframe[0].value
    assert not trades.isna().any().any()  # no "None" cells
    assert list(trades["pnl"]) == pytest.approx(list(ref.trades["pnl"]))


def test_long_sample_shows_sharpe_with_its_interval_and_buy_and_hold(app, long_db):
    at = _open(app, long_db)
    y, x = _legs(long_db)
    ref = backtest.mean_reversion(y, x, window=30, hedge="rolling", timeframe="1m")
    s = ref.stats
    assert s.withheld == {} and s.n_trades >= RULE.min_trades
    est = performance.sharpe_ratio(performance.bar_returns(ref.equity), s.periods_per_year)
    m = _metrics(at)
    assert m["Sharpe (ann.)"] == f"{est.sharpe:,.2f}"
    assert f"95% CI [{est.ci_low:,.2f}, {est.ci_high:,.2f}]" in page_text(at)
    assert f"{s.n_bars:,} bars of 1 min" in page_text(at)
    stats = at.dataframe[-1].value.set_index("metric")
    assert stats.loc["Sharpe (ann.) [95% CI]", "value"] == f"{est.sharpe:,.2f} [{est.ci_low:,.2f}, {est.ci_high:,.2f}]"
    assert stats.loc["Hit rate", "value"] == f"{s.hit_rate:.0%}"
    assert stats.loc["Time in market", "value"] == f"{s.exposure:.1%}"
    fig = plotly_specs(at)[0]
    bh = {t["name"]: t["y"] for t in fig["data"] if t["name"].startswith("buy & hold")}
    assert list(bh["buy & hold ETHUSDT"]) == pytest.approx(list(10_000 * y / y.iloc[0]))
    assert list(bh["buy & hold BTCUSDT"]) == pytest.approx(list(10_000 * x / x.iloc[0]))


def test_suggested_thresholds_match_quantlib_ou(app, long_db):
    at = _open(app, long_db, bt_view="Suggested thresholds", bt_cost="2")
    y, x = _legs(long_db)
    ref = backtest.mean_reversion(y, x, window=30, hedge="rolling", timeframe="1m", cost_bps=2.0)
    fit = ou.fit_ou(ref.spread.dropna().to_numpy())
    cost = 2 * 2e-4 * (y.iloc[-1] + abs(ref.hedge_ratio.dropna().iloc[-1]) * x.iloc[-1])
    table = at.dataframe[0].value.set_index("rule")
    band, bert = ou.optimal_band(fit, cost), ou.bertram(fit, cost)
    assert table.loc["Your choice", "entry_z"] == 2.0 and table.loc["Your choice", "exit_z"] == 0.5
    assert table.loc["Your choice", "return_per_bar"] == pytest.approx(float(ou.band_return_rate(fit, 2.0, 0.5, cost)))
    best = table.loc["Best entry / exit for this rule"]
    assert (best["entry_z"], best["exit_z"]) == (pytest.approx(band.entry_z), pytest.approx(band.exit_z))
    b = table.loc["Bertram (2010): reverse at the opposite band"]
    assert b["entry_z"] == pytest.approx(bert.entry_z) and b["exit_z"] == pytest.approx(-bert.entry_z)
    assert _metrics(at)["Half-life"] == f"{fit.half_life:,.1f} bars"


def test_walk_forward_section_matches_quantlib_and_reads_its_form_from_the_url(app, long_db):
    at = _open(app, long_db, bt_view="Walk-forward", bt_wf_f="180", bt_wf_t="60", bt_wf_anch="true")
    y, x = _legs(long_db)
    ref = backtest.walk_forward(y, x, formation=180, trading=60, anchored=True, method="ols", timeframe="1m")
    m = _metrics(at)
    assert m["Out-of-sample return"] == f"{ref.stats.total_return:+.2%}"
    assert m["Trades"] == str(ref.stats.n_trades)
    windows = at.dataframe[0].value
    assert len(windows) == len(ref.windows) and list(windows["trades"]) == list(ref.windows["trades"])
    assert "anchored at the first bar" in page_text(at)
    fig = plotly_specs(at)[0]
    eq = next(t for t in fig["data"] if t["name"] == "out-of-sample equity")
    assert list(eq["y"]) == pytest.approx(list(ref.equity))
    assert len(fig["layout"]["shapes"]) == len(ref.windows)
    assert list(_offer(at, "dl-wf-windows")["trades"]) == list(ref.windows["trades"])
    assert _offer(at, "dl-wf-equity")["equity"].to_numpy() == pytest.approx(ref.equity.to_numpy())
    assert len(_offer(at, "dl-wf-trades")) == ref.stats.n_trades


def test_walk_forward_on_too_few_bars_says_which_lookback_or_formation_fits(app, long_db):
    """The sidebar's default 2h of 1m bars (121) cannot hold the default 240 + 60 bars: the page names a Lookback
    that does and the longest Formation that fits, and the download gives the same reason."""
    at = app(long_db, page="app_pages/backtest.py", query={"lb": "2h", "bt_view": "Walk-forward"})
    assert_no_exception(at)
    text = page_text(at)
    assert "121 bars of 1m (Lookback 2h)" in text
    assert "a sidebar Lookback of 6h or longer" in text and "a Formation of at most 61 bars" in text
    assert "a sidebar Lookback of 6h" in _offer(at, "dl-wf-windows")["note"][0]
    at = app(long_db, page="app_pages/backtest.py", query={"lb": "2h", "bt_view": "Walk-forward", "bt_wf_f": "60"})
    assert "Out-of-sample return" in _metrics(at) and "sidebar Lookback of" not in page_text(at)


def test_sweep_heat_maps_best_and_out_of_sample(app, long_db):
    q = dict(bt_view="Parameter sweep", bt_sw_e0="1.0", bt_sw_e1="2.5", bt_sw_es="0.5", bt_sw_x0="0.0",
             bt_sw_x1="0.5", bt_sw_xs="0.25", bt_sw_oos="10")
    at = _open(app, long_db, **q)
    y, x = _legs(long_db)
    ref = backtest.sweep(y, x, entry_z=[1.0, 1.5, 2.0, 2.5], exit_z=[0.0, 0.25, 0.5], window=30, hedge="rolling",
                         timeframe="1m", oos_fraction=0.1, min_trades=RULE.min_trades)
    assert ref.best is not None
    specs = plotly_specs(at)
    titles = [s["layout"]["title"]["text"] for s in specs]
    assert titles == ["Sharpe (ann., in sample)", "Trades (in sample)", "Total return (in sample)",
                      "Max drawdown (in sample)", "Best set: equity in and out of sample"]
    curves = {t["name"]: t["y"] for t in specs[4]["data"]}
    assert list(curves["in sample"]) == pytest.approx(list(ref.best_equity))
    assert list(curves["out of sample (restarts at capital)"]) == pytest.approx(list(ref.best_oos_equity))
    trades_map = specs[1]["data"][0]
    grid = ref.grid.pivot(index="entry_z", columns="exit_z", values="n_trades")
    np.testing.assert_array_equal(np.array(trades_map["z"], dtype=float), grid.to_numpy(dtype=float))
    best = next(t for t in specs[0]["data"] if t.get("name") == "in-sample best")
    assert (best["y"][0], best["x"][0]) == (f"{ref.best['entry_z']:g}", f"{ref.best['exit_z']:g}")
    sharpe = np.array(specs[0]["data"][0]["z"], dtype=float)
    few = ref.grid.pivot(index="entry_z", columns="exit_z", values="n_trades").to_numpy() < RULE.min_trades
    assert np.isnan(sharpe[few]).all()  # withheld below the trade minimum, and labelled n/a there only
    labels = [t for t in specs[0]["data"] if t.get("mode") == "text"]
    assert sum(len(t["x"]) for t in labels) == int(few.sum())
    shown = ref.grid.pivot(index="entry_z", columns="exit_z", values="sharpe").to_numpy()
    np.testing.assert_allclose(sharpe[~few], shown[~few])
    io = at.dataframe[0].value.set_index("statistic")
    assert io.loc["Total return", "in sample"] == f"{ref.best['total_return']:+.2%}"
    assert io.loc["Total return", "out of sample"] == f"{ref.best['oos_total_return']:+.2%}"
    assert io.loc["Trades", "out of sample"] == f"{ref.best['oos_n_trades']:,.0f}"
    text = page_text(at)
    assert "deflated Sharpe" in text and f"Best of {len(ref.grid)}" in text
    grid_csv = _offer(at, "dl-sweep-grid")
    assert len(grid_csv) == len(ref.grid) and grid_csv["best"].sum() == 1
    assert (grid_csv["sharpe_withheld"].fillna("") != "").sum() == int(few.sum())


def test_sweep_on_a_short_in_sample_picks_by_return_and_says_why(app, long_db):
    at = _open(app, long_db, bt_view="Parameter sweep", bt_sw_oos="50", bt_sw_e0="1.0", bt_sw_e1="2.0",
               bt_sw_es="0.5")
    text = page_text(at)
    assert "Picked by total return: an in-sample Sharpe is withheld" in text
    sharpe = np.array(plotly_specs(at)[0]["data"][0]["z"], dtype=float)
    assert np.isnan(sharpe).all()


def test_sweep_without_a_best_set_says_the_note_once(app, short_db):
    """3 h of bars: no set has the rule's trades in sample; the note stands once (below the heat maps), not twice."""
    at = app(short_db, page="app_pages/backtest.py", query={"lb": "6h", "bt_view": "Parameter sweep"})
    assert_no_exception(at)
    text = page_text(at)
    assert "none is picked as best" in text and text.count("none is picked as best") == 1


@pytest.mark.parametrize("query, message", [
    (dict(bt_sw_e0="3.0", bt_sw_e1="1.0"), "the entry range must run upwards"),
    (dict(bt_sw_win="30, abc"), "windows must be whole numbers of bars"),
    (dict(bt_sw_es="0.05", bt_sw_e0="0.25", bt_sw_e1="6.0"), "at most 40"),
])
def test_bad_sweep_forms_are_explained(app, tick_db, query, message):
    at = app(tick_db, page="app_pages/backtest.py", query={"lb": "6h", "bt_view": "Parameter sweep", **query})
    assert_no_exception(at)
    assert message in page_text(at) and plotly_specs(at) == []
    assert message in _offer(at, "dl-sweep-grid")["note"][0]  # the button gives the reason, not an old grid


def test_pairs_heat_map_follows_the_same_rule(app, tick_db):
    """1h bars over 2h (3 bars): no ±1 correlation heat map, and the page says why."""
    at = app(tick_db, page="app_pages/pairs.py", query={"tf": "1h", "lb": "2h", "win": "5"})
    assert_no_exception(at)
    assert not any(t.get("type") == "heatmap" for s in plotly_specs(at) for t in s["data"])
    assert "the correlation heat map needs at least 30 bars" in page_text(at)


def test_sharpe_ci_matches_hand_formula_on_the_page_sample(long_db):
    """The page's CI is Lo's standard error with skew and kurtosis, scaled by sqrt(bars per year)."""
    y, x = _legs(long_db)
    s = backtest.mean_reversion(y, x, window=30, hedge="rolling", timeframe="1m").stats
    r = performance.bar_returns(backtest.mean_reversion(y, x, window=30, hedge="rolling", timeframe="1m").equity)
    sr = r.mean() / r.std(ddof=1)
    c = r - r.mean()
    g3, g4 = np.mean(c**3) / np.mean(c**2) ** 1.5, np.mean(c**4) / np.mean(c**2) ** 2
    se = math.sqrt((1 - g3 * sr + (g4 - 1) / 4 * sr**2) / len(r)) * math.sqrt(s.periods_per_year)
    assert s.sharpe_se == pytest.approx(se, rel=1e-9)
    assert s.sharpe_ci_high - s.sharpe_ci_low == pytest.approx(2 * 1.959964 * se, rel=1e-6)


def test_walk_forward_optimisation_rechooses_thresholds_per_window(app, long_db):
    at = _open(app, long_db, bt_view="Walk-forward", bt_wf_f="240", bt_wf_t="60", bt_wf_opt="true")
    y, x = _legs(long_db)
    grid = {"entry_z": [1.0, 1.5, 2.0, 2.5, 3.0], "exit_z": [0.0, 0.25, 0.5, 0.75, 1.0]}
    ref = backtest.walk_forward(y, x, formation=240, trading=60, method="ols", timeframe="1m", optimize=grid)
    assert _metrics(at)["Out-of-sample return"] == f"{ref.stats.total_return:+.2%}"
    windows = at.dataframe[0].value
    assert list(windows["entry_z"]) == list(ref.windows["entry_z"])
    assert list(windows["exit_z"]) == list(ref.windows["exit_z"])
    assert "re-chosen on each formation window" in page_text(at)


def test_market_volatility_follows_the_same_rule(app, tick_db):
    """A 10-bar window would give a volatility of 10 returns: withheld with the reason; 30 bars are drawn."""
    at = app(tick_db, query={"lb": "2h", "win": "10"})
    assert_no_exception(at)
    names = {t.get("name") for s in plotly_specs(at) for t in s["data"]}
    assert "volatility" not in names
    assert "The volatility panel is withheld: each value would rest on the window's 10 bars" in page_text(at)
    at = app(tick_db, query={"lb": "2h", "win": "30"})
    assert "volatility" in {t.get("name") for s in plotly_specs(at) for t in s["data"]}
