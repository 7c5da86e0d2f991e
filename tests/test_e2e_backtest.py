"""End to end: a real `streamlit run` on a 14 h synthetic tick file, the Backtest page's parameter sweep driven in
headless Chromium: the heat maps draw from a bookmark, a changed form value reruns the sweep and lands in the
URL, and the sweep grid downloads as CSV. Screenshots go to artifacts/screenshots/backtest-*.png."""
from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pandas as pd
import pytest

from tests.browser import SHOTS, app_env, assert_clean, needs_chromium, new_page, streamlit_server, wait_for_charts
from tests.conftest import make_tick_db

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300), needs_chromium]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-bt")
    db = tmp / "ticks.duckdb"
    make_tick_db(db, hours=14, rate_per_s=0.3, end=dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC))
    with streamlit_server(env=app_env(db), log=tmp / "streamlit.log") as srv:
        yield srv.base


def _heatmaps(page, rows: int, timeout_s: float = 120) -> None:
    """Wait for the four sweep heat maps, each with `rows` entry values."""
    page.wait_for_function(
        """(rows) => { const els = Array.from(document.querySelectorAll('.js-plotly-plot'));
                       const maps = els.filter(e => e._fullData && e._fullData.some(t => t.type === 'heatmap'
                                                    && t.y && t.y.length === rows));
                       return maps.length >= 4; }""", arg=rows, timeout=timeout_s * 1000, polling=250)


def test_sweep_runs_from_a_bookmark_and_from_the_form(server, chromium):
    SHOTS.mkdir(parents=True, exist_ok=True)
    query = ("lb=24h&win=30&hedge=Rolling+OLS&bt_view=Parameter+sweep&bt_sw_e0=1.0&bt_sw_e1=2.5&bt_sw_es=0.5"
             "&bt_sw_x0=0.0&bt_sw_x1=0.5&bt_sw_xs=0.25&bt_sw_oos=10")
    page = new_page(chromium, 1500, 2200, accept_downloads=True)
    try:
        page.goto(f"{server}/backtest?{query}", wait_until="domcontentloaded")
        _heatmaps(page, rows=4)  # entry 1.0, 1.5, 2.0, 2.5
        assert page.get_by_text("In-sample best and its out-of-sample result").count() == 1
        assert_clean(page, "sweep from the bookmark")
        # a finer entry grid through the form: the sweep reruns and the URL keeps the new value
        step = page.get_by_role("spinbutton", name="Entry step")
        step.fill("0.3")
        step.press("Tab")
        page.get_by_role("button", name="Run sweep").click()
        _heatmaps(page, rows=6)  # 1.0 .. 2.5 by 0.3
        page.wait_for_function("() => window.location.search.includes('bt_sw_es=0.3')", timeout=30_000)
        page.wait_for_timeout(800)
        page.screenshot(path=str(SHOTS / "backtest-sweep.png"), full_page=True)
        with page.expect_download(timeout=30_000) as dl:
            page.get_by_role("button", name="Sweep grid (CSV)").click()
        grid = pd.read_csv(io.BytesIO(Path(dl.value.path()).read_bytes()))
        assert len(grid) == 6 * 3 and {"sharpe", "oos_sharpe", "best", "sharpe_withheld"} <= set(grid.columns)
        assert grid["best"].sum() == 1
        assert_clean(page, "sweep after the form")
        assert not page.errors, page.errors
    finally:
        page.close()


@pytest.mark.parametrize("view, charts, text", [
    ("Single+run", 1, "Dotted: buy and hold"),
    ("Suggested+thresholds", 0, "Bertram (2010)"),
    ("Walk-forward", 1, "Out-of-sample trades"),
])
def test_other_sections_render(server, chromium, view, charts, text):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = new_page(chromium, 1500, 1900)
    try:
        page.goto(f"{server}/backtest?lb=24h&win=30&hedge=Rolling+OLS&bt_view={view}", wait_until="domcontentloaded")
        page.get_by_text(text).first.wait_for(timeout=120_000)
        wait_for_charts(page, charts, 120)
        page.wait_for_timeout(800)
        page.screenshot(path=str(SHOTS / f"backtest-{view.lower().replace('+', '-')}.png"), full_page=True)
        assert_clean(page, view)
    finally:
        page.close()
