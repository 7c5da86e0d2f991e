"""End to end: the Basis page on the local exchange's simulated basis, mark-price stream and funding history
(spot and usdm ingested into one file over real sockets) in a real `streamlit run`, driven by headless Chromium.

Asserts the page renders both charts with data and the headline numbers (a basis in bps, a funding rate, a
running countdown to the next funding time), no exception element, and that the spot-vs-perp pair picked in the
URL carries over to the Pairs page. Screenshot: artifacts/screenshots/basis.png.
"""
from __future__ import annotations

import re
import socket
import time

import pytest

from tests.browser import SHOTS, app_env, assert_clean, free_port, log_tails, needs_chromium, new_page, settle, spawn, \
    stop, streamlit_server, wait_for_charts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300), needs_chromium]
LOGS = ("exchange.log", "spot.log", "usdm.log")  # besides streamlit.log


@pytest.fixture(scope="module")
def basis_stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-basis")
    db, xport = tmp / "demo.duckdb", free_port()
    env = app_env(db)
    # one local exchange serving both markets (one simulated basis), a spot and a usdm ingestor on one file;
    # funding every minute, so the history has funding times and the countdown runs
    exchange = spawn(["-m", "exchange", "--port", str(xport), "--markets", "spot,usdm", "--symbols", "BTCUSDT,ETHUSDT",
                      "--rate", "5", "--history", "20m", "--funding-interval", "60s"], tmp / "exchange.log", env)
    procs = [exchange]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", xport), timeout=1):
                    break
            except OSError:
                assert exchange.poll() is None, (tmp / "exchange.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the local exchange did not come up"
                time.sleep(0.2)
        for market in ("spot", "usdm"):
            procs.append(spawn(["ingestor.py", "--market", market, "--symbols", "btcusdt,ethusdt", "--db", str(db),
                                "--ws-url", f"ws://127.0.0.1:{xport}", "--rest-url", f"http://127.0.0.1:{xport}",
                                "--history", "20m"], tmp / f"{market}.log", env))
        logs = [tmp / n for n in LOGS]
        with streamlit_server(env=env, log=tmp / "streamlit.log", watch=procs, logs=logs) as srv:
            yield srv.base
            assert all(p.poll() is None for p in procs), log_tails(logs, 3000)
    finally:
        for p in reversed(procs):
            stop(p)


def test_basis_page_live_in_chromium(basis_stack, chromium):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = new_page(chromium, 1600, 1900)
    try:
        page.goto(f"{basis_stack}/basis?lb=15m&tf=1s&bs_fh=3d&mkt=spot&y=usdm:BTCUSDT&x=BTCUSDT",
                  wait_until="domcontentloaded")
        page.locator("h2", has_text="Basis").first.wait_for(timeout=90_000)
        wait_for_charts(page, 2, 120)
        # the headline: a basis in bps, a funding rate and a countdown (mark prices arrive every second)
        page.wait_for_function("""() => { const t = document.body.innerText;
            return /Basis now\\s+[+-]\\d+\\.\\d\\d bps/.test(t) && /Next funding in\\s+\\d\\d:\\d\\d:\\d\\d/.test(t); }""",
                               timeout=90_000, polling=500)
        page.wait_for_timeout(2500)  # a few live refreshes: still clean
        assert_clean(page, "basis")
        text = page.locator('[data-testid="stMain"]').inner_text()
        assert re.search(r"Funding rate\s+[+-][\d.e-]+%", text), text[:2000]
        assert "Basis series (CSV)" in text and "Funding history (CSV)" in text
        traces = page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(
            el => el._fullData.map(t => [t.name, (t.y || []).length]))""")
        basis_traces = dict(traces[-2])
        assert basis_traces.get("basis: perp last vs spot last", 0) > 10, traces
        funding_traces = dict(traces[-1])
        assert funding_traces.get("settled rate", 0) >= 3, traces   # the demo's 24 h REST history
        settle(page)
        page.wait_for_function("() => document.querySelectorAll('[data-stale=\"true\"]').length === 0",
                               timeout=20_000, polling=100)   # between two refreshes, not faded mid-run
        page.screenshot(path=str(SHOTS / "basis.png"), full_page=True)
        # the same spot-vs-perp pair on the Pairs page: both legs' markets in the figures
        page.locator('[data-testid="stSidebarNav"] a', has_text="Pairs").click()
        page.wait_for_url("**/pairs**", timeout=30_000)
        wait_for_charts(page, 3, 90)
        page.get_by_text("usdm:BTCUSDT on spot:BTCUSDT").first.wait_for(timeout=60_000)
        assert_clean(page, "pairs spot vs perp")
        settle(page)
        page.screenshot(path=str(SHOTS / "pairs-spot-vs-perp.png"), full_page=True)
        assert not page.errors, page.errors
    finally:
        page.close()
