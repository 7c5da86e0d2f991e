"""AppTest: pairs whose legs come from different markets (spot vs perpetual), picked in the sidebar and bound to
the URL, on the Pairs and Backtest pages."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from quantlib import pairs as qpairs
from tests.basis_db import make_basis_db, stored_closes
from tests.conftest import assert_no_exception, page_text, plotly_specs

END = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC)   # fixed: no verdict depends on the clock
CROSS = {"mkt": "spot", "y": "usdm:BTCUSDT", "x": "BTCUSDT", "lb": "6h"}


@pytest.fixture(scope="module")
def _basis_template(tmp_path_factory):
    return make_basis_db(tmp_path_factory.mktemp("basis") / "basis.duckdb", END, marks=False)


@pytest.fixture
def basis_db(_basis_template, tmp_path):
    import shutil

    path = tmp_path / "basis.duckdb"
    shutil.copy(_basis_template.path, path)
    return path


def _widget(at, key):
    return next(w for w in at.selectbox if w.key == key)


def test_sidebar_lists_other_markets_as_prefixed_legs(app, basis_db):
    at = app(basis_db, query=CROSS)
    assert_no_exception(at)
    y, x = _widget(at, "y"), _widget(at, "x")
    assert y.options == ["BTCUSDT", "ETHUSDT", "usdm:BTCUSDT", "usdm:ETHUSDT"]
    assert (y.value, x.value) == ("usdm:BTCUSDT", "BTCUSDT")
    assert at.query_params["y"] in ("usdm:BTCUSDT", ["usdm:BTCUSDT"])


@pytest.mark.parametrize("query,expected", [
    ({"mkt": "spot", "y": "spot:ETHUSDT", "x": "usdm:BTCUSDT"}, ("ETHUSDT", "usdm:BTCUSDT")),   # own market spelled out
    ({"mkt": "usdm", "y": "ETHUSDT", "x": "spot:ETHUSDT"}, ("ETHUSDT", "spot:ETHUSDT")),        # bare = sidebar market
    ({"mkt": "spot", "y": "ethusdt", "x": "USDM:btcusdt"}, ("ETHUSDT", "usdm:BTCUSDT")),         # any case
])
def test_leg_spellings_in_the_url_are_kept(app, basis_db, query, expected):
    at = app(basis_db, page="app_pages/pairs.py", query={**query, "lb": "6h"})
    assert_no_exception(at)
    assert (_widget(at, "y").value, _widget(at, "x").value) == expected


def test_old_urls_without_a_market_prefix_mean_the_sidebar_market(app, tick_db):
    at = app(tick_db, page="app_pages/pairs.py", query={"y": "ETHUSDT", "x": "BTCUSDT", "lb": "6h"})
    assert_no_exception(at)
    assert (_widget(at, "y").value, _widget(at, "x").value) == ("ETHUSDT", "BTCUSDT")
    assert _widget(at, "y").options == ["BTCUSDT", "ETHUSDT"]   # one market: no prefixes at all


def test_pairs_page_on_spot_vs_perp_uses_each_legs_market(app, basis_db):
    at = app(basis_db, page="app_pages/pairs.py", query=CROSS)
    assert_no_exception(at)
    specs = plotly_specs(at)
    scatter = specs[1]
    assert scatter["layout"]["xaxis"]["title"]["text"] == "spot:BTCUSDT"
    assert scatter["layout"]["yaxis"]["title"]["text"] == "usdm:BTCUSDT"
    # the normalized prices are the two markets' own closes, computed here from the raw ticks
    perp, spot = stored_closes(basis_db, "usdm", "BTCUSDT"), stored_closes(basis_db, "spot", "BTCUSDT")
    y, x = qpairs.align(perp, spot)
    norm = {t["name"]: t["y"] for t in specs[0]["data"]}
    assert norm["usdm:BTCUSDT"][-1] == pytest.approx(100 * y.iloc[-1] / y.iloc[0], rel=1e-9)
    assert norm["spot:BTCUSDT"][-1] == pytest.approx(100 * x.iloc[-1] / x.iloc[0], rel=1e-9)
    assert (y / x).max() > 1.0001 and (y / x).min() < 1.001   # the legs differ by the simulated basis
    heat = specs[-1]["data"][0]
    assert list(heat["x"]) == ["spot:BTCUSDT", "spot:ETHUSDT", "usdm:BTCUSDT"]
    links = [el.proto for el in at.get("page_link")]
    assert [link.label for link in links] == ["Spot against its perpetual: basis and funding of BTCUSDT"]


def test_backtest_page_runs_on_spot_vs_perp(app, basis_db):
    at = app(basis_db, page="app_pages/backtest.py", query={**CROSS, "win": "30"})
    assert_no_exception(at)
    text = page_text(at)
    assert "usdm:BTCUSDT − β·spot:BTCUSDT" in text


def test_screener_across_markets_names_legs_and_opens_them_on_the_pairs_page(app, basis_db):
    import time

    from quantlib.screen import screen_pairs
    from tickstore import queries

    at = app(basis_db, page="app_pages/screener.py", query={"sc_mkt": ["spot", "usdm"], "sc_lb": "6h"})
    deadline = time.monotonic() + 90
    while not (at.dataframe and "y" in at.dataframe[0].value.columns):
        assert_no_exception(at)
        assert time.monotonic() < deadline, page_text(at)
        time.sleep(0.3)
        at.run()
    table = at.dataframe[0].value
    pairs = {frozenset((y, x)) for y, x in zip(table["y"], table["x"])}
    assert frozenset(("spot:BTCUSDT", "usdm:BTCUSDT")) in pairs and len(pairs) == 6
    # the same screen run here on closes read per market and joined by hand
    closes = pd.concat([queries.closes_wide(m, None, "1m", dt.timedelta(hours=6), path=basis_db)
                        .rename(columns=lambda c, m=m: f"{m}:{c}") for m in ("spot", "usdm")], axis=1)
    ref = screen_pairs(closes, fdr=0.05).pairs.set_index(["y", "x"])
    got = table.set_index(["y", "x"])
    assert got["eg_pvalue"].to_numpy() == pytest.approx(ref.loc[got.index, "eg_pvalue"].to_numpy(), rel=1e-9)
    # picking spot vs perp BTCUSDT opens it on the Pairs page with both legs' markets
    from dashboard import screen_ui, screener

    row = table.loc[[{y, x} == {"spot:BTCUSDT", "usdm:BTCUSDT"} for y, x in zip(table["y"], table["x"])]].iloc[0]
    spec = screener.ScreenSpec.make("live", str(basis_db), "spot,usdm", (), "1m", "6h", 0.05)
    at.session_state[screen_ui._PICK] = {"y": row["y"], "x": row["x"], "spec": spec}
    at.run()
    at.button(key="sc_open_pick").click().run()
    assert_no_exception(at)
    assert [h.value for h in at.header] == ["Pairs"]
    assert at.selectbox(key="mkt").value == "spot"
    legs = {"spot:BTCUSDT": "BTCUSDT", "usdm:BTCUSDT": "usdm:BTCUSDT"}   # the sidebar market's leg is bare
    assert (at.selectbox(key="y").value, at.selectbox(key="x").value) == (legs[row["y"]], legs[row["x"]])


def test_backtest_page_books_funding_on_the_perp_leg_apart(app, tmp_path):
    """Spot vs perp with funding times inside the window: the page shows price PnL, costs and funding apart, and
    the funding equals quantlib's on the same bars and rates (hand-checked in test_quantlib_basis)."""
    from quantlib import backtest
    from tickstore import queries

    path = tmp_path / "funded.duckdb"
    end = dt.datetime(2026, 1, 5, 12, 30, tzinfo=dt.UTC)   # 09:30-12:30: funding times 10:00, 11:00, 12:00 below
    make_basis_db(path, end, marks=False)
    import duckdb

    con = duckdb.connect(str(path))
    for h, rate in ((10, 0.0004), (11, -0.0003), (12, 0.0002)):
        con.execute("INSERT INTO funding_rates VALUES ('usdm', 'BTCUSDT', ?, ?, NULL)",
                    [dt.datetime(2026, 1, 5, h, tzinfo=dt.UTC), rate])
    con.close()
    q = {**CROSS, "win": "20", "bt_entry": "1.0", "bt_exit": "0.25", "bt_cost": "0"}
    at = app(path, page="app_pages/backtest.py", query=q)
    assert_no_exception(at)
    m = {x.label: x.value for x in at.metric}
    assert {"Price PnL", "Costs", "Funding"} <= set(m)
    perp = stored_closes(path, "usdm", "BTCUSDT").rename("y")
    spot = stored_closes(path, "spot", "BTCUSDT").rename("x")
    y, x = qpairs.align(perp, spot)
    rates = queries.funding_rates("usdm", "BTCUSDT", None, path=path)
    ref = backtest.mean_reversion(y, x, window=20, entry_z=1.0, exit_z=0.25, stop_z=4.0, cost_bps=0.0,
                                  hedge="static", method="ols", timeframe="1m", funding=rates, funding_leg="y")
    assert m["Funding"] == f"{ref.total_funding:+,.2f}"
    assert m["Price PnL"] == f"{ref.trades['gross_pnl'].sum():+,.2f}"
    held = ref.funding[ref.funding["qty"] != 0]
    assert m["Funding times held"] == f"{len(held)} of 3" and len(held) >= 1 and ref.total_funding != 0
    # by hand: every funding time a position was held pays -qty_perp x mark x rate, mark = the perp's last close
    for _, row in ref.funding.iterrows():
        mark = y[y.index + pd.Timedelta("1min") <= row["funding_time"]].iloc[-1]
        assert row["mark_price"] == pytest.approx(mark)
        assert row["payment"] == pytest.approx(-row["qty"] * mark * row["rate"])


def test_a_pair_of_another_market_reads_that_market(app, basis_db):
    """Both legs on usdm while the sidebar market is spot: bare names (one market), usdm data, usdm heat map."""
    at = app(basis_db, page="app_pages/pairs.py", query={"mkt": "spot", "y": "usdm:ETHUSDT", "x": "usdm:BTCUSDT",
                                                          "lb": "6h"})
    assert_no_exception(at)
    specs = plotly_specs(at)
    assert specs[1]["layout"]["yaxis"]["title"]["text"] == "ETHUSDT"
    y = stored_closes(basis_db, "usdm", "ETHUSDT")
    norm = {t["name"]: t["y"] for t in specs[0]["data"]}
    assert norm["ETHUSDT"][-1] == pytest.approx(100 * y.iloc[-1] / y.iloc[0], rel=1e-9)
    spot = stored_closes(basis_db, "spot", "ETHUSDT")
    assert norm["ETHUSDT"][-1] != pytest.approx(100 * spot.iloc[-1] / spot.iloc[0], rel=1e-9)
    assert list(specs[-1]["data"][0]["x"]) == ["BTCUSDT", "ETHUSDT"]


def test_walk_forward_and_sweep_sections_include_the_perp_funding(app, tmp_path):
    import duckdb

    from quantlib import backtest
    from tickstore import queries

    path = tmp_path / "funded-wf.duckdb"
    make_basis_db(path, dt.datetime(2026, 1, 5, 12, 30, tzinfo=dt.UTC), marks=False)
    con = duckdb.connect(str(path))
    for minute in range(0, 180, 7):   # a funding time every 7 minutes: some fall inside trades
        con.execute("INSERT INTO funding_rates VALUES ('usdm', 'BTCUSDT', ?, ?, NULL)",
                    [dt.datetime(2026, 1, 5, 9, 30, tzinfo=dt.UTC) + dt.timedelta(minutes=minute),
                     0.001 * (1 if minute % 2 else -1)])
    con.close()
    q = {**CROSS, "win": "20", "bt_view": "Walk-forward", "bt_wf_f": "60", "bt_wf_t": "30", "bt_entry": "1.0",
         "bt_exit": "0.25"}
    at = app(path, page="app_pages/backtest.py", query=q)
    assert_no_exception(at)
    y, x = qpairs.align(stored_closes(path, "usdm", "BTCUSDT"), stored_closes(path, "spot", "BTCUSDT"))
    rates = queries.funding_rates("usdm", "BTCUSDT", None, path=path)
    kw = dict(formation=60, trading=30, method="ols", entry_z=1.0, exit_z=0.25, stop_z=4.0, cost_bps=1.0,
              timeframe="1m")
    ref = backtest.walk_forward(y, x, **kw, funding=rates, funding_leg="y")
    plain = backtest.walk_forward(y, x, **kw)
    assert ref.funding["payment"].abs().sum() > 0 and ref.stats.total_return != plain.stats.total_return
    m = {x.label: x.value for x in at.metric}
    assert m["Out-of-sample return"] == f"{ref.stats.total_return:+.2%}"
    assert f"Funding of the perpetual leg included: {ref.funding['payment'].sum():+,.2f}" in page_text(at)
    at = app(path, page="app_pages/backtest.py", query={**q, "bt_view": "Parameter sweep"})
    assert_no_exception(at)
    assert "Every set books the perpetual leg's funding" in page_text(at)
