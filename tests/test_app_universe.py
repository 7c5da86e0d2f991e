"""AppTest: the app over a whole-market universe (400 spot + 400 usdm symbols): pickers open on the most traded
symbols and search all, the Market summary lists the most active first with search / row count / pick-to-chart,
the Data page's health table filters to problems and shows the exchange's symbol status."""
from __future__ import annotations

import pandas as pd
import pytest

from dashboard import tables
from tests.conftest import assert_no_exception, page_text, table_value
from tests.universe_db import make_universe_db

N = 400


@pytest.fixture(scope="module")
def universe(tmp_path_factory):
    return make_universe_db(tmp_path_factory.mktemp("universe") / "universe.duckdb", N)


def _summary(at) -> pd.DataFrame:
    return table_value(at.table[-1], tables.SUMMARY_COLUMNS)  # the page's last table (Window stats come first)


def test_market_page_opens_on_the_most_traded_and_lists_the_top_rows(app, universe):
    at = app(universe.path)
    assert_no_exception(at)
    picker = at.multiselect(key="sym")
    assert len(picker.options) == N
    assert set(picker.value) == set(universe.symbols[:4])  # the most traded, not the first alphabetically
    assert len(at.selectbox(key="y").options) == 2 * N      # pair legs: both markets
    summary = _summary(at)
    assert len(summary) == 20
    want = sorted(universe.symbols, key=lambda s: -universe.ticks[s])
    assert summary["quote_volume"].is_monotonic_decreasing
    assert summary.index[0] == want[0]
    assert "20 of 400 symbols" in page_text(at)


def test_summary_search_rows_and_pick_to_chart(app, universe):
    at = app(universe.path)
    at.selectbox(key="sum_n").set_value("All").run()
    assert len(_summary(at)) == N
    at.text_input(key="sum_q").set_value("c01 usdt").run()
    assert_no_exception(at)
    found = _summary(at)
    assert sorted(found.index) == sorted(s for s in universe.symbols if "C01" in s)
    assert "matching" in page_text(at)
    picks = list(found.index[:2])
    assert at.button(key="sum_chart").disabled                      # nothing picked yet
    at.multiselect(key="sum_pick").set_value(picks).run()
    assert at.button(key="sum_chart").label == "Chart 2 selected"
    at.text_input(key="sum_q").set_value("no such coin").run()
    assert _summary(at).empty
    assert at.multiselect(key="sum_pick").value == picks             # a pick survives the list changing under it
    before = list(at.multiselect(key="sym").value)
    at.button(key="sum_chart").click().run()
    assert_no_exception(at)
    assert list(at.multiselect(key="sym").value) == before + picks   # added to the sidebar's Symbols
    assert at.multiselect(key="sum_pick").value == [] and at.button(key="sum_chart").disabled


def test_summary_orders():
    table = pd.DataFrame({"quote_volume": [3.0, 2.0, 1.0], "trades": [1, 5, 3], "change": [0.01, -0.2, 0.3]},
                         index=["B", "C", "A"])
    assert list(tables.top_summary(table, None, None, "most 24 h trades").index) == ["C", "A", "B"]
    assert list(tables.top_summary(table, None, 1, "biggest 24 h gain").index) == ["A"]
    assert list(tables.top_summary(table, None, None, "biggest 24 h loss").index) == ["C", "B", "A"]
    assert list(tables.top_summary(table, None, None, "symbol A–Z").index) == ["A", "B", "C"]


def test_top_summary_orders_searches_and_limits():
    table = pd.DataFrame({"quote_volume": [3.0, 2.0, 1.0], "trades": [3, 2, 1]}, index=["A", "B", "C"])
    assert list(tables.top_summary(table, None, 2).index) == ["A", "B"]
    assert list(tables.top_summary(table, "c", None).index) == ["C"]


def _health(at) -> pd.DataFrame:
    """The health table: the grid for hundreds of rows, a static table for a few (the first st.table)."""
    return at.dataframe[0].value if at.dataframe else table_value(at.table[0], tables.HEALTH_COLUMNS)


def test_health_table_filters_problems_and_shows_exchange_status(app, universe):
    at = app(universe.path, page="app_pages/data.py")
    assert_no_exception(at)
    health = _health(at)
    assert len(health) == 2 * N and at.dataframe  # 800 rows: the sortable grid
    assert "exchange_status" in health.columns
    flagged = {(m, s) for m, s, p in zip(health["market"], health["symbol"], health["problem"]) if p}
    assert flagged == set(universe.problems)  # old status rows alone (no ingestor running) flag nothing per row
    first = list(zip(health["market"], health["symbol"]))[:len(flagged)]
    assert set(first) == flagged  # problems first
    at.segmented_control(key="health_show").set_value("Problems").run()
    assert_no_exception(at)
    only = _health(at)
    assert set(zip(only["market"], only["symbol"])) == flagged
    halted = only.loc[only["exchange_status"] == "HALT", "problem"]
    assert len(halted) == 1 and "HALT on the exchange" in halted.iloc[0]
    at.segmented_control(key="health_show").set_value("All").run()
    at.text_input(key="health_q").set_value(universe.symbols[-2]).run()
    rows = _health(at)
    assert set(rows["symbol"]) == {universe.symbols[-2]} and len(rows) == 2
    assert f"2 of {2 * N:,} symbols shown" in page_text(at)
