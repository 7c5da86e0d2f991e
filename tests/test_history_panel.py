"""Data page import panel (dashboard.import_panel) driven through Streamlit's AppTest with real uploads and a
real tick file."""
from __future__ import annotations

import io
import zipfile

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import share_apptest_caches
from tests.test_history_import import csv_text, make_rows, snapshot
from tickstore.connection import init_db


def panel_app(db_path: str) -> None:
    from dashboard.import_panel import render_import_panel

    render_import_panel(db_path)


def zipped(name: str, text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name.replace(".zip", ".csv"), text)
    return buf.getvalue()


def run_upload(db, files, market="auto") -> AppTest:
    share_apptest_caches()
    at = AppTest.from_function(panel_app, kwargs={"db_path": str(db)}, default_timeout=30).run()
    assert at.button(key="import_dump_go").disabled
    at.file_uploader(key="import_dump_files").set_value(files)
    at.radio(key="import_dump_market").set_value(market)
    at.run()
    return at.button(key="import_dump_go").click().run()


def test_panel_imports_uploaded_zips(tmp_path):
    db = tmp_path / "ticks.duckdb"
    init_db(db)
    spot = make_rows(300, seed=1)
    um = make_rows(200, seed=2, first_id=10)
    files = [("BTCUSDT-trades-2024-01-01.zip", zipped("BTCUSDT-trades-2024-01-01.zip",
                                                       csv_text(spot, "spot", "trades", False, "ms")), "application/zip"),
             ("ETHUSDT-aggTrades-2024-01.csv", csv_text(um, "usdm", "aggTrades", True, "ms").encode(), "text/csv")]
    at = run_upload(db, files)
    assert not at.exception and not at.error
    assert at.success[0].value == "Imported 500 new ticks from 2 file(s)."
    assert any("300 rows → spot BTCUSDT: 300 new" in m.value for m in at.markdown)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT market, symbol, count(*) FROM ticks GROUP BY ALL ORDER BY ALL").fetchall() == \
            [("spot", "BTCUSDT", 300), ("usdm", "ETHUSDT", 200)]


def test_panel_rejects_a_wrong_file_and_changes_nothing(tmp_path):
    db = tmp_path / "ticks.duckdb"
    init_db(db)
    before = snapshot(db)
    good = csv_text(make_rows(50), "spot", "trades", False, "ms")
    files = [("BTCUSDT-trades-2024-01-01.csv", good.encode(), "text/csv"),
             ("BTCUSDT-1m-2024-01-01.zip", zipped("BTCUSDT-1m-2024-01-01.zip", "1,2,3\n"), "application/zip")]
    at = run_upload(db, files)
    assert not at.exception and not at.success
    assert at.error[0].value.startswith("Nothing imported. BTCUSDT-1m-2024-01-01.zip: a klines dump")
    assert snapshot(db) == before
    at = run_upload(db, files[:1], market="usdm")       # the layout says spot
    assert "market usdm was requested" in at.error[0].value
    assert snapshot(db) == before


@pytest.mark.slow
def test_data_page_carries_the_panel(app, tick_market):
    """The Data page of the real app imports a dump into the file it shows."""
    at = app(tick_market.path, page="app_pages/data.py")
    assert not at.exception
    rows = make_rows(120, seed=9, first_id=1)
    at.file_uploader(key="import_dump_files").set_value(
        ("SOLUSDT-trades-2024-01-01.zip", zipped("SOLUSDT-trades-2024-01-01.zip",
                                                 csv_text(rows, "spot", "trades", False, "ms")), "application/zip"))
    at.run()
    at.button(key="import_dump_go").click().run()
    assert not at.exception
    assert any(s.value == "Imported 120 new ticks from 1 file(s)." for s in at.success)
    with duckdb.connect(str(tick_market.path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ticks WHERE symbol = 'SOLUSDT' AND source = 'import'").fetchall() == \
            [(120,)]
