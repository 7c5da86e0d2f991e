"""End to end: a real `streamlit run` on a 14 h synthetic tick file, the Backtest page's parameter sweep driven in
headless Chromium: the heat maps draw from a bookmark, a changed form value reruns the sweep and lands in the
URL, and the sweep grid downloads as CSV. Screenshots go to artifacts/screenshots/backtest-*.png."""
from __future__ import annotations

import datetime as dt
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import make_tick_db

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "artifacts" / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300),
              pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which("chromium") is None,
                                 reason="Debian chromium is not installed (.ci/run installs it)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-bt")
    db = tmp / "ticks.duckdb"
    make_tick_db(db, hours=14, rate_per_s=0.3, end=dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC))
    port = _free_port()
    log = open(tmp / "streamlit.log", "w")
    app = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
                            "--server.headless", "true"], cwd=ROOT, env={**os.environ, "TICKDESK_DB": str(db)},
                           stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            assert app.poll() is None, (tmp / "streamlit.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "streamlit did not come up within 60 s"
            time.sleep(0.2)
        yield base
    finally:
        if app.poll() is None:
            app.send_signal(signal.SIGTERM)
            try:
                app.wait(20)
            except subprocess.TimeoutExpired:
                app.kill()
        log.close()


def _heatmaps(page, rows: int, timeout_s: float = 120) -> None:
    """Wait for the four sweep heat maps, each with `rows` entry values."""
    page.wait_for_function(
        """(rows) => { const els = Array.from(document.querySelectorAll('.js-plotly-plot'));
                       const maps = els.filter(e => e._fullData && e._fullData.some(t => t.type === 'heatmap'
                                                    && t.y && t.y.length === rows));
                       return maps.length >= 4; }""", arg=rows, timeout=timeout_s * 1000, polling=250)


def test_sweep_runs_from_a_bookmark_and_from_the_form(server):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    query = ("lb=24h&win=30&hedge=Rolling+OLS&bt_view=Parameter+sweep&bt_sw_e0=1.0&bt_sw_e1=2.5&bt_sw_es=0.5"
             "&bt_sw_x0=0.0&bt_sw_x1=0.5&bt_sw_xs=0.25&bt_sw_oos=10")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 2200}, accept_downloads=True)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{server}/backtest?{query}", wait_until="domcontentloaded")
        _heatmaps(page, rows=4)  # entry 1.0, 1.5, 2.0, 2.5
        assert page.get_by_text("In-sample best and its out-of-sample result").count() == 1
        assert page.locator('[data-testid="stException"]').count() == 0
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
        assert page.locator('[data-testid="stException"]').count() == 0
        assert not errors, errors
        browser.close()


@pytest.mark.parametrize("view, charts, text", [
    ("Single+run", 1, "Dotted: buy and hold"),
    ("Suggested+thresholds", 0, "Bertram (2010)"),
    ("Walk-forward", 1, "Out-of-sample trades"),
])
def test_other_sections_render(server, view, charts, text):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1900})
        page.goto(f"{server}/backtest?lb=24h&win=30&hedge=Rolling+OLS&bt_view={view}", wait_until="domcontentloaded")
        page.get_by_text(text).first.wait_for(timeout=120_000)
        page.wait_for_function(
            """(n) => Array.from(document.querySelectorAll('.js-plotly-plot'))
                          .filter(e => e._fullData && e._fullData.length > 0).length >= n""",
            arg=charts, timeout=120_000, polling=250)
        page.wait_for_timeout(800)
        page.screenshot(path=str(SHOTS / f"backtest-{view.lower().replace('+', '-')}.png"), full_page=True)
        assert page.locator('[data-testid="stException"]').count() == 0
        browser.close()
