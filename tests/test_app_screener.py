"""AppTest: the Screener page against quantlib.screen run independently on the same closes from the file.

The screen runs on a background worker thread, so each test reruns the app until the table (or a message) is
there. The file holds three simulated cointegrated pairs among six symbols (tests/screenfix.py).
"""
from __future__ import annotations

import datetime as dt
import shutil
import time

import numpy as np
import pandas as pd
import pytest

from dashboard import screen_ui, screener, settings
from quantlib.screen import screen_pairs
from tests.conftest import assert_no_exception, page_text, plotly_specs
from tests.screenfix import PAIRS, make_universe_db
from tickstore import queries

PAGE = "app_pages/screener.py"
SIX_H = {"sc_lb": "6h"}  # the file holds 4 h: a 6 h lookback sees every bar
TRUE_PAIRS = {frozenset(p[:2]) for p in PAIRS}


@pytest.fixture(scope="module")
def _universe_template(tmp_path_factory):
    return make_universe_db(tmp_path_factory.mktemp("universe") / "template.duckdb")


@pytest.fixture
def universe_db(_universe_template, tmp_path):
    path = tmp_path / "universe.duckdb"
    shutil.copy(_universe_template, path)
    return path


def _until(at, done, timeout_s: float = 90.0):
    """Rerun the app until `done(at)` (the screen runs off the script thread)."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert_no_exception(at)
        if done(at):
            return at
        assert time.monotonic() < deadline, "the screen did not finish:\n" + page_text(at)
        time.sleep(0.3)
        at.run()


def _table(at) -> pd.DataFrame:
    return at.dataframe[0].value


def _reference(db, hours=6, timeframe="1m", fdr=0.05):
    closes = queries.closes_wide("spot", None, timeframe, dt.timedelta(hours=hours), path=db)
    return screen_pairs(closes, fdr=fdr).pairs


def test_screen_table_heatmap_and_counts_match_quantlib(app, universe_db):
    at = _until(app(universe_db, page=PAGE, query=SIX_H), lambda at: len(at.dataframe) > 0)
    ref = _reference(universe_db)
    table = _table(at)
    assert len(table) == len(ref) == 15
    assert list(zip(table["y"], table["x"])) == list(zip(ref["y"], ref["x"]))  # same pairs, same order
    np.testing.assert_allclose(table["eg_qvalue"], ref["eg_qvalue"], rtol=1e-9)
    np.testing.assert_allclose(table["hedge_ratio"], ref["hedge_ratio"], rtol=1e-9)
    np.testing.assert_allclose(table["half_life_min"], ref["half_life_bars"], rtol=1e-9)  # 1m bars
    assert list(table["verdict"]) == list(ref["verdict"])
    # the three simulated pairs are found: the three lowest q-values, far below the rest
    best = table.nsmallest(3, "eg_qvalue")
    assert {frozenset(p) for p in zip(best["y"], best["x"])} == TRUE_PAIRS
    assert best["eg_qvalue"].max() < 1e-3 < table.nlargest(12, "eg_qvalue")["eg_qvalue"].min()
    assert all(v.startswith("cointegrated") for v in table["verdict"].head(3))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Pairs screened"] == "15" and metrics["Symbols"] == "6"
    assert metrics["Significant (q ≤ 0.05)"] == str(int((ref["eg_qvalue"] <= 0.05).sum()))
    assert metrics["Cointegrated"] == str(int(ref["cointegrated"].sum()))
    heat = [f for f in plotly_specs(at) if f["layout"]["title"]["text"].startswith("Best pairs")]
    assert len(heat) == 1
    trace = heat[0]["data"][0]
    assert trace["type"] == "heatmap" and set(trace["x"]) == set(trace["y"]) == {s for p in PAIRS for s in p[:2]}
    z = pd.DataFrame(trace["z"], index=trace["y"], columns=trace["x"])
    y, x = ref.iloc[0][["y", "x"]]
    assert z.loc[y, x] == pytest.approx(-np.log10(ref.iloc[0]["eg_qvalue"]))
    assert z.loc[x, y] == z.loc[y, x] and np.isnan(z.loc[y, y])
    assert heat[0]["layout"]["uirevision"].startswith("screen:live:spot:1m:6h")
    assert "Pick a row to open the pair on the Pairs page" in page_text(at)
    assert at.get("download_button")


def test_filters_keep_only_matching_pairs(app, universe_db):
    query = {**SIX_H, "sc_hl": "5", "sc_hurst": "true", "sc_corr": "0.3"}
    at = _until(app(universe_db, page=PAGE, query=query), lambda at: len(at.dataframe) > 0)
    ref = _reference(universe_db)
    want = ref[(ref["half_life_bars"] <= 5) & (ref["hurst"] < 0.5) & (ref["corr"] >= 0.3)]
    table = _table(at)
    assert 0 < len(table) < len(ref)
    assert list(zip(table["y"], table["x"])) == list(zip(want["y"], want["x"]))
    assert {m.label: m.value for m in at.metric}["Pass the filters"] == str(len(want))
    # a filter nothing passes: said in words, no table
    at = _until(app(universe_db, page=PAGE, query={**SIX_H, "sc_corr": "0.99"}),
                lambda at: "No pairs that pass the filters" in page_text(at))
    assert len(at.dataframe) == 0


def test_empty_and_missing_files_are_explained(app, empty_tick_db, tmp_path):
    at = app(empty_tick_db, page=PAGE)
    assert_no_exception(at)
    assert "has no ticks yet" in page_text(at)
    at = app(tmp_path / "nowhere.duckdb", page=PAGE)
    assert_no_exception(at)
    assert "No tick file at" in page_text(at)
    assert len(at.dataframe) == 0


@pytest.mark.slow  # > 4 s on a loaded 2-core host
def test_one_symbol_and_too_few_bars_are_explained(app, universe_db):
    at = _until(app(universe_db, page=PAGE, query={**SIX_H, "sc_sym": "ETHUSDT"}),
                lambda at: "needs at least two symbols" in page_text(at))
    assert len(at.dataframe) == 0
    at = _until(app(universe_db, page=PAGE, query={"sc_lb": "15m"}),
                lambda at: "the screen needs at least 100" in page_text(at))
    assert "Pick a longer lookback or a finer timeframe" in page_text(at) and len(at.dataframe) == 0


def test_defaults_without_url_are_a_day_of_1m_bars_and_the_sidebar_keeps_its_own(app, universe_db):
    """Nothing in the URL: the screen is 1m over 24 h (what the demo's designed pairs need); the sidebar's
    lookback (the other pages') stays at its own default."""
    from dashboard.settings import DEFAULTS

    at = _until(app(universe_db, page=PAGE), lambda at: len(at.dataframe) > 0)
    assert (at.segmented_control(key="sc_tf").value, at.selectbox(key="sc_lb").value) == ("1m", "24h")
    assert at.selectbox(key="lb").value == DEFAULTS["lb"] != "24h"


def test_bad_url_values_fall_back_and_say_so(app, universe_db):
    query = {"sc_lb": "99y", "sc_tf": "2m", "sc_fdr": "7", "sc_sym": ["NOPEUSDT", "ETHUSDT", "BTCUSDT"],
             "sc_hl": "-3"}
    at = _until(app(universe_db, page=PAGE, query=query), lambda at: len(at.dataframe) > 0)
    text = page_text(at)
    assert "left out: NOPEUSDT" in text
    assert at.multiselect(key="sc_sym").value == ["ETHUSDT", "BTCUSDT"]
    assert at.selectbox(key="sc_lb").value == "24h"
    assert "**FDR level**: 7 is out of range; expected 0.001 to 0.5. Using 0.5." in text   # not silently clamped
    assert "**Max half-life (bars, 0 = any)**: -3 is out of range; expected 0 to 1,000,000. Using 0." in text
    assert list(zip(_table(at)["y"], _table(at)["x"])) in ([("ETHUSDT", "BTCUSDT")], [("BTCUSDT", "ETHUSDT")])


def test_open_on_pairs_page_sets_the_sidebar(app, universe_db):
    at = _until(app(universe_db, page=PAGE, query=SIX_H), lambda at: len(at.dataframe) > 0)
    row = _table(at).iloc[0]
    spec = screener.ScreenSpec.make("live", str(universe_db), "spot", (), "1m", "6h", 0.05)
    at.session_state[screen_ui._PICK] = {"y": row["y"], "x": row["x"], "spec": spec}
    at.run()
    at.button(key="sc_open_pick").click().run()
    assert_no_exception(at)
    assert [h.value for h in at.header] == ["Pairs"]
    assert (at.selectbox(key="y").value, at.selectbox(key="x").value) == (row["y"], row["x"])
    assert at.selectbox(key="lb").value == "6h"
    assert "lookback 6h" in page_text(at)


def test_a_picked_view_is_applied_on_the_pairs_run_over_the_old_values_the_browser_sends(app, universe_db):
    """The pick asks for the view on the Pairs page; the page switch's rerun can carry the browser's pre-pick
    sidebar values (a fragment tick merged into it). The view waits for the Pairs run and wins there: sidebar,
    URL, status line and charts all name the picked pair and lookback."""
    at = _until(app(universe_db, page=PAGE, query=SIX_H), lambda at: len(at.dataframe) > 0)
    old_y, old_x, old_lb = at.selectbox(key="y").value, at.selectbox(key="x").value, at.selectbox(key="lb").value
    y, x = old_x, old_y  # the default pair swapped: both legs differ from the old sidebar
    at.session_state[settings._PENDING_KEY] = {"page": screen_ui.PAIRS_URL, "values": {"y": y, "x": x, "lb": "6h"}}
    at.run()  # a Screener run (the one that switches pages) leaves the sidebar alone
    assert_no_exception(at)
    assert (at.selectbox(key="y").value, at.selectbox(key="lb").value) == (old_y, old_lb)
    at.switch_page("app_pages/pairs.py")
    at.selectbox(key="y").set_value(old_y)  # what the browser still shows and sends with the merged rerun
    at.selectbox(key="x").set_value(old_x)
    at.selectbox(key="lb").set_value(old_lb)
    at.run()
    assert_no_exception(at)
    assert [h.value for h in at.header] == ["Pairs"]
    assert (at.selectbox(key="y").value, at.selectbox(key="x").value, at.selectbox(key="lb").value) == (y, x, "6h")
    assert (at.query_params.get("y"), at.query_params.get("x"), at.query_params.get("lb")) == (y, x, "6h")
    assert "lookback 6h" in page_text(at)
    titles = [str((f["layout"].get("title") or {}).get("text", "")) for f in plotly_specs(at)]
    assert f"{y} on {x}: fitted lines" in titles and f"{old_y} on {old_x}: fitted lines" not in titles, titles
    assert settings._PENDING_KEY not in at.session_state


@pytest.mark.slow  # three rule writes
def test_watch_this_pair_creates_two_zscore_rules_once(app, universe_db):
    from alerts.rules import RuleStore

    at = _until(app(universe_db, page=PAGE, query=SIX_H), lambda at: len(at.dataframe) > 0)
    spec = screener.ScreenSpec.make("live", str(universe_db), "spot", (), "1m", "6h", 0.05)
    at.session_state[screen_ui._PICK] = {"y": "ETHUSDT", "x": "BTCUSDT", "spec": spec}
    at.run()
    at.number_input(key="sc_w_thr_ETHUSDT_BTCUSDT").set_value(2.5)
    at.button(key="sc_w_go_ETHUSDT_BTCUSDT").click().run()
    assert_no_exception(at)
    assert at.success and "Created #" in at.success[0].value
    rules = RuleStore(str(universe_db)).list()
    assert sorted((r.metric, r.symbol, r.symbol2, r.timeframe, r.op, r.threshold, r.lookback) for r in rules) == [
        ("zscore", "ETHUSDT", "BTCUSDT", "1m", "<", -2.5, 60), ("zscore", "ETHUSDT", "BTCUSDT", "1m", ">", 2.5, 60)]
    at.button(key="sc_w_go_ETHUSDT_BTCUSDT").click().run()
    assert "Already watched" in at.success[0].value
    assert len(RuleStore(str(universe_db)).list()) == 2


def test_heatmap_frame_and_filters_on_a_small_result():
    pairs = pd.DataFrame({"y": ["A", "A", "B"], "x": ["B", "C", "C"], "eg_qvalue": [0.001, 0.5, np.nan],
                          "half_life_bars": [3.0, np.inf, 20.0], "hurst": [0.3, 0.6, 0.4], "corr": [0.8, 0.1, 0.5],
                          "cointegrated": [True, False, False]})
    score, q = screener.heatmap_frame(pairs, pairs.iloc[:1])
    assert list(score.index) == ["A", "B"] and score.loc["A", "B"] == pytest.approx(3.0)
    score, q = screener.heatmap_frame(pairs, pairs)
    assert np.isnan(q.loc["B", "C"]) and q.loc["C", "A"] == 0.5 and np.isnan(q.loc["A", "A"])
    f = screener.Filters(max_half_life=10, hurst_below_half=True, min_corr=0.5)
    assert list(screener.apply_filters(pairs, f, 0.05)["x"]) == ["B"]
    assert list(screener.apply_filters(pairs, screener.Filters(cointegrated_only=True), 0.05)["x"]) == ["B"]
    with pytest.raises(ValueError, match="FDR level"):
        screener.ScreenSpec.make("live", "f", "spot", (), "1m", "6h", 1.5)
    with pytest.raises(ValueError, match="unknown timeframe"):
        screener.ScreenSpec.make("live", "f", "spot", (), "2m", "6h", 0.05)


@pytest.mark.slow
def test_uploaded_bars_are_screened(app, universe_db):
    from tests.test_app_uploads import _upload, klines_csv

    frames = queries.bars_wide("spot", [s for p in PAIRS for s in p[:2]], "1m", pd.Timestamp("2000-01-01", tz="UTC"),
                               path=universe_db)
    at = app(universe_db, page="app_pages/data.py")
    _upload(at, [(f"{s}-1m-2024-05-01.csv", klines_csv(f)) for s, f in frames.items()])
    next(b for b in at.button if b.label == "Analyse this upload").click().run()
    at.switch_page(PAGE).run()
    at = _until(at, lambda at: len(at.dataframe) > 0)
    assert "source: **upload**" in page_text(at)
    table = _table(at)
    assert len(table) == 15
    assert {frozenset(p) for p in zip(table["y"].head(3), table["x"].head(3))} == TRUE_PAIRS
    spec = screener.ScreenSpec.make("upload", "x", at.multiselect(key="sc_mkt").value, (), "1m", "6h", 0.05)
    at.session_state[screen_ui._PICK] = {"y": table["y"][0], "x": table["x"][0], "spec": spec}
    at.run()
    assert_no_exception(at)
    popovers = [b.proto.popover for b in _blocks(at._tree) if b.proto is not None and
                b.proto.DESCRIPTOR.name == "Block" and b.proto.WhichOneof("type") == "popover"]
    assert [(p.label, p.disabled) for p in popovers] == [("Watch this pair", True)]  # alerts watch the live file


def _blocks(block):
    for child in getattr(block, "children", {}).values():
        yield child
        yield from _blocks(child)
