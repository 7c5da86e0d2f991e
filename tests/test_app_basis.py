"""The Basis page (AppTest) against the stored series computed by hand here: basis of the last shared bar,
mark vs last, the funding sum of the history window; and its messages when a part is missing."""
from __future__ import annotations

import datetime as dt
import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest

from dashboard import basis_view, export
from tests.basis_db import BASIS_AMP_BPS, BASIS_BPS, make_basis_db, stored_closes
from tests.conftest import assert_no_exception, page_text, plotly_specs
from tickstore import queries

END = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC)
PAGE = "app_pages/basis.py"
Q = {"lb": "6h", "bs_fh": "30d"}


@pytest.fixture(scope="module")
def _template(tmp_path_factory):
    return make_basis_db(tmp_path_factory.mktemp("basis") / "basis.duckdb", END)


@pytest.fixture
def market(_template, tmp_path):
    path = tmp_path / "basis.duckdb"
    shutil.copy(_template.path, path)
    return _template.__class__(path, *[getattr(_template, f) for f in ("start", "end", "funding_times",
                                                                         "funding_rates")])


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _mark_bars(path) -> pd.Series:
    con = duckdb.connect(str(path), read_only=True)
    try:
        m = con.execute("SELECT epoch_us(ts) AS us, mark_price FROM mark_prices WHERE symbol = 'BTCUSDT'").df()
    finally:
        con.close()
    m["bar"] = pd.to_datetime(m["us"] // 60_000_000 * 60, unit="s", utc=True)
    return m.sort_values("us").groupby("bar")["mark_price"].last()


def test_basis_page_numbers_are_the_stored_series_by_hand(app, market):
    at = app(market.path, page=PAGE, query=Q)
    assert_no_exception(at)
    m = _metrics(at)
    perp, spot = stored_closes(market.path, "usdm", "BTCUSDT"), stored_closes(market.path, "spot", "BTCUSDT")
    both = pd.concat([perp, spot], axis=1, join="inner")
    last = (both.iloc[-1, 0] / both.iloc[-1, 1] - 1) * 1e4
    assert m["Basis now"] == f"{last:+.2f} bps"
    # the generator's own basis at the bar's last tick (perp prices are rounded to 0.0001: far below 0.01 bps)
    assert abs(last - BASIS_BPS) <= BASIS_AMP_BPS + 0.01
    assert m["Annualised"] == f"{last / 1e4 * 365 * 3:+.2%}"
    marks = _mark_bars(market.path)
    gap = (marks / perp - 1).dropna() * 1e4
    assert m["Mark vs last"] == f"{gap.iloc[-1]:+.2f} bps"
    rates = pd.Series(market.funding_rates, index=pd.DatetimeIndex(market.funding_times))
    in_window = rates[rates.index >= (pd.Timestamp(END) - pd.Timedelta(days=30)).floor("1h")]
    assert m["Funding, 30d"] == f"{in_window.sum():+.4%}"
    assert m["Funding rate"] == f"{market.funding_rates[-1] + 0.000025:+.4%}"
    assert m["Next funding in"].startswith("passed")          # the file ends in the past: no live countdown
    text = page_text(at)
    assert f"funding {10_000 * in_window.sum():+,.2f} USDT over {len(in_window)} funding times (every 8 h)" in text
    basis_fig, funding_fig = plotly_specs(at)[-2:]
    traces = {t["name"]: t for t in basis_fig["data"]}
    series = pd.Series(traces["basis: perp last vs spot last"]["y"])
    ref = (both.iloc[:, 0] / both.iloc[:, 1] - 1) * 1e4
    assert series.to_numpy() == pytest.approx(ref.to_numpy(), abs=1e-9)
    assert basis_fig["layout"]["uirevision"].endswith("BTCUSDT:basis")
    bars = next(t for t in funding_fig["data"] if t["type"] == "bar")
    assert bars["y"] == pytest.approx((in_window * 100).tolist())
    cum = next(t for t in funding_fig["data"] if t["name"].startswith("cumulative"))
    assert cum["y"][-1] == pytest.approx(in_window.sum() * 100)
    # the download buttons (drawn outside the live fragment) give the page's series
    offers = at.session_state["_tickdesk_download_offers"]
    fund = pd.read_csv(pd.io.common.BytesIO(offers["dl-funding"]()))
    assert fund["funding_rate"].to_numpy() == pytest.approx(in_window.to_numpy())
    csv = pd.read_csv(pd.io.common.BytesIO(offers["dl-basis"]()))
    got = csv.set_index(pd.to_datetime(csv["ts"], utc=True))["basis_bps"].dropna()
    assert got.to_numpy() == pytest.approx(ref.to_numpy(), rel=1e-9) and got.index.equals(ref.index)  # CSV: 10 digits


def test_basis_csv_has_the_page_series(market):
    start = pd.Timestamp(END) - pd.Timedelta(hours=6)
    spot = queries.bars_wide("spot", ["BTCUSDT"], "1m", start, path=market.path)["BTCUSDT"]
    perp = queries.bars_wide("usdm", ["BTCUSDT"], "1m", start, path=market.path)["BTCUSDT"]
    view = basis_view.build_basis_view("BTCUSDT", spot, perp, queries.mark_prices("usdm", "BTCUSDT", start,
                                                                                  timeframe="1m", path=market.path),
                                       queries.funding_rates("usdm", "BTCUSDT", None, path=market.path))
    csv = pd.read_csv(pd.io.common.BytesIO(export.to_csv(view.series())))
    assert list(csv.columns[:5]) == ["ts", "spot", "perp", "basis_bps", "basis_annualised"]
    assert csv["ts"].iloc[0].endswith("Z")
    ref = (stored_closes(market.path, "usdm", "BTCUSDT") / stored_closes(market.path, "spot", "BTCUSDT") - 1) * 1e4
    got = csv.set_index(pd.to_datetime(csv["ts"], utc=True))["basis_bps"].dropna()
    ref = ref.dropna()
    assert list(got.index) == list(ref.index)
    assert got.to_numpy() == pytest.approx(ref.to_numpy(), rel=1e-8)
    fund = pd.read_csv(pd.io.common.BytesIO(export.to_csv(view.funding_table())))
    assert list(fund.columns) == ["funding_time", "funding_rate", "funding_annualised", "cumulative_funding",
                                  "mark_price"]
    assert fund["cumulative_funding"].iloc[-1] == pytest.approx(sum(market.funding_rates))
    assert view.interval == pd.Timedelta(hours=8)


def test_a_file_without_mark_prices_or_spot_says_what_is_missing(app, tmp_path):
    path = tmp_path / "nomarks.duckdb"
    make_basis_db(path, END, hours=1, marks=False)
    con = duckdb.connect(str(path))
    con.execute("DELETE FROM ticks WHERE market = 'spot' AND symbol = 'ETHUSDT'")
    con.close()
    at = app(path, page=PAGE, query={**Q, "bs_sym": "ETHUSDT"})
    assert_no_exception(at)
    text = page_text(at)
    assert "no spot ETHUSDT trades in the window, so no basis" in text
    assert "no mark-price updates of usdm ETHUSDT" in text
    assert "no settled funding rates of usdm ETHUSDT" in text
    assert _metrics(at)["Basis now"] == "—"


def test_spot_only_file_and_upload_source_are_explained(app, tick_db):
    at = app(tick_db, page=PAGE)
    assert_no_exception(at)
    assert "No perpetual (usdm) trades" in page_text(at)
    at = app(tick_db, page=PAGE, query={"src": "upload"})
    assert_no_exception(at)
    assert "reads the live file" in page_text(at)


def test_sidebar_spot_vs_perp_pair_opens_the_basis_of_that_coin(app, market):
    at = app(market.path, page=PAGE, query={"lb": "6h", "mkt": "spot", "y": "usdm:ETHUSDT", "x": "ETHUSDT"})
    assert_no_exception(at)
    assert at.selectbox(key="bs_sym").value == "ETHUSDT"


def test_countdown_text():
    assert basis_view.countdown_text(pd.Timedelta("2h5min9s")) == "02:05:09"
    assert basis_view.countdown_text(pd.Timedelta("4min12s")) == "00:04:12"
    assert basis_view.countdown_text(pd.Timedelta(0), mark_age_s=2) == "due now"
    assert basis_view.countdown_text(pd.Timedelta(0), mark_age_s=600).startswith("passed")
    assert basis_view.countdown_text(None) == "—"
    assert basis_view.funding_interval(pd.DataFrame(index=pd.date_range("2024", periods=4, freq="4h", tz="UTC"))) \
        == pd.Timedelta(hours=4)
    assert np.isclose(basis_view.funding_interval(pd.DataFrame()).total_seconds(), 8 * 3600)
