"""AppTest: the app frame — navigation, shared sidebar + URL settings, and the no-data / locked-file states."""
from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

import pytest
import streamlit as st

from dashboard.data import BUSY_BACKOFF_S
from tests.conftest import assert_no_exception, make_tick_db, page_text, plotly_specs, share_apptest_caches

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["app_pages/market.py", "app_pages/pairs.py", "app_pages/backtest.py", "app_pages/data.py"]


def test_missing_file_is_explained_on_every_page(app, tmp_path):
    db = tmp_path / "nowhere" / "ticks.duckdb"
    at = app(db)
    for page in PAGES:
        at.switch_page(page).run()
        assert_no_exception(at)
        assert f"No tick file at `{db}` yet" in page_text(at), page
        assert plotly_specs(at) == []
    assert not db.exists()  # the app never creates the file


def test_empty_file_is_explained_on_every_page(app, empty_tick_db):
    at = app(empty_tick_db)
    for page in PAGES:
        at.switch_page(page).run()
        assert_no_exception(at)
        text = page_text(at)
        assert "has no ticks yet" in text or "has not written a status row yet" in text, page
        assert plotly_specs(at) == []


def test_first_ticks_show_up_on_the_next_refresh(app, empty_tick_db):
    """An empty catalog is not kept for the catalog's minute-long cache: the first stored ticks show on the next
    refresh (in the browser the sidebar watcher fragment triggers that rerun; the e2e test starts empty)."""
    at = app(empty_tick_db)
    assert "has no ticks yet" in page_text(at)
    make_tick_db(empty_tick_db, hours=0.5, with_status=False)
    st.cache_data.clear()  # a new refresh interval
    at.run()
    assert_no_exception(at)
    assert at.multiselect(key="sym").value == ["BTCUSDT", "ETHUSDT"]
    assert len(plotly_specs(at)) == 1


def test_not_a_tick_file_is_explained(app, tmp_path):
    db = tmp_path / "junk.duckdb"
    db.write_bytes(b"this is not a duckdb file" * 100)
    at = app(db)
    assert_no_exception(at)
    text = page_text(at)
    assert "is damaged" in text and "restore it from a backup" in text, text


def test_sidebar_settings_survive_page_switches(app, tick_db):
    at = app(tick_db)
    at.segmented_control(key="tf").set_value("5m").run()
    at.selectbox(key="lb").set_value("6h").run()
    at.number_input(key="win").set_value(30).run()
    for page in PAGES[1:] + PAGES[:1]:
        at.switch_page(page).run()
        assert_no_exception(at)
        assert at.segmented_control(key="tf").value == "5m"
        assert at.selectbox(key="lb").value == "6h"
        assert at.number_input(key="win").value == 30
    assert "5m bars · lookback 6h" in page_text(at)


def test_settings_come_from_the_url(app, tick_db):
    query = {"tf": "15m", "lb": "24h", "win": "20", "hedge": "Kalman", "every": "5s", "pause": "true",
             "y": "BTCUSDT", "x": "ETHUSDT"}
    at = app(tick_db, query=query)
    assert_no_exception(at)
    assert at.segmented_control(key="tf").value == "15m"
    assert at.selectbox(key="lb").value == "24h"
    assert at.number_input(key="win").value == 20
    assert at.selectbox(key="hedge").value == "Kalman"
    assert at.selectbox(key="every").value == "5s"
    assert at.toggle(key="pause").value is True
    assert (at.selectbox(key="y").value, at.selectbox(key="x").value) == ("BTCUSDT", "ETHUSDT")
    assert "paused" in page_text(at)


def test_default_pair_and_symbols_come_from_the_file(app, tick_db):
    at = app(tick_db)
    assert at.multiselect(key="sym").value == ["BTCUSDT", "ETHUSDT"]
    assert (at.selectbox(key="y").value, at.selectbox(key="x").value) == ("ETHUSDT", "BTCUSDT")


@pytest.mark.slow
def test_locked_file_keeps_last_data_with_a_notice(app, tick_db):
    at = app(tick_db)
    assert len(plotly_specs(at)) == 1
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True);"
                               " time.sleep(120)", str(tick_db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        st.cache_data.clear()  # force real reads: the cache would otherwise hide the lock
        at.run()
        assert_no_exception(at)
        assert "holding the file lock" in page_text(at)
        assert len(plotly_specs(at)) == 1  # still the chart, from the last good read
        assert list(at.table[0].value.index) == ["BTCUSDT", "ETHUSDT"]
    finally:
        holder.terminate()
        holder.wait(10)
    time.sleep(BUSY_BACKOFF_S + 0.1)  # after a lock timeout the page serves the last copy this long
    st.cache_data.clear()
    at.run()
    assert "holding the file lock" not in page_text(at)


def test_plotly_js_preload_is_the_first_sidebar_element(app, tick_db):
    """The entrypoint asks the browser for plotly.js first (see dashboard/livechart.py): a hidden
    live-chart element without a figure, pointing at the static copy of the pinned plotly.js."""
    import json

    from dashboard import livechart

    at = app(tick_db)
    side = [json.loads(el.proto.json) for el in at.sidebar.get("bidi_component")]
    first = side[0]
    assert first["spec"] is None
    assert first["src"].endswith(f"/app/static/{livechart.PLOTLY_JS_NAME}")
    assert (livechart.STATIC_DIR / livechart.PLOTLY_JS_NAME).stat().st_size == livechart.PLOTLY_JS_SOURCE.stat().st_size
    charts = [json.loads(el.proto.json) for el in at.get("bidi_component")
              if el.proto.component_name == livechart.COMPONENT_NAME]
    assert sum(c["spec"] is None for c in charts) == 1 and len(charts) > 1  # the rest are the page's charts


def test_warmup_imports_the_analytics_stack_in_the_background():
    """dashboard.warmup imports statsmodels' modules off the script thread, once per process."""
    code = ("import sys; from dashboard import warmup; warmup.start(); t = warmup._thread; warmup.start(); "
            "assert warmup._thread is t; t.join(60); "
            "missing = [m for m in warmup.MODULES if m not in sys.modules]; assert not missing, missing; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_pages_are_routed_by_st_navigation_only():
    """No `pages/` folder next to the entrypoint: Streamlit would treat it as its legacy multipage mode and run a
    bookmarked page's file on its own, without streamlit_app.py (sidebar, plotly.js preload), until some session
    has called st.navigation. The page files live in app_pages/, and streamlit_app.py registers every one."""
    assert not (ROOT / "pages").exists(), "page files go in app_pages/ (see docs/dashboard.md)"
    tree = ast.parse((ROOT / "streamlit_app.py").read_text())
    registered = {node.args[0].value for node in ast.walk(tree) if isinstance(node, ast.Call)
                  and ast.unparse(node.func) == "st.Page" and isinstance(node.args[0], ast.Constant)}
    on_disk = {f"app_pages/{p.name}" for p in (ROOT / "app_pages").glob("*.py")}
    assert registered == on_disk


def test_a_page_url_as_first_request_runs_the_entrypoint(tick_db, monkeypatch):
    """A fresh AppTest (fresh PagesManager) asked for /pairs first: the entrypoint runs, draws the sidebar and
    routes to the Pairs page."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("TICKDESK_DB", str(tick_db))
    share_apptest_caches()
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    at.switch_page("app_pages/pairs.py")  # before the first run: this run's page is set by its URL path
    at.run()
    assert_no_exception(at)
    assert at.sidebar.segmented_control(key="tf").value == "1m"
    assert any(h.value == "Pairs" for h in at.header)
