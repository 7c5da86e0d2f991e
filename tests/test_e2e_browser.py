"""End to end: `ingestor.py --demo` + a real `streamlit run`, every page visited in headless Chromium.

Asserts that charts render (Plotly graphs with traces), no exception element appears, settings live in the URL
across page switches, and a live chart keeps the user's zoom across refreshes. Screenshots are kept in
artifacts/screenshots/ (with timings in artifacts/screenshots/timings.json).
"""
from __future__ import annotations

import json
import time

import pytest

from tests.browser import SHOTS, assert_clean, needs_chromium, settle, wait_for_charts

# page path -> Plotly graphs it shows once data is there (the Alerts page has none)
PAGES = {"": 1, "pairs": 6, "backtest": 1, "alerts": 0, "data": 1}
TITLE = {"": "Market", "pairs": "Pairs", "backtest": "Backtest", "alerts": "Alerts", "data": "Data"}
TABLES = {"": 2, "pairs": 1, "backtest": 2, "data": 1}  # tables (st.dataframe or st.table) each page shows with data

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300), needs_chromium]


def test_every_page_renders_live_charts(demo_stack, browser_page):
    page, base = browser_page, demo_stack["base"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    timings = {}
    # a bookmark to a sub-page as the very first request of a fresh server: st.navigation routes it
    page.goto(f"{base}/pairs?lb=2h", wait_until="domcontentloaded")
    wait_for_charts(page, PAGES["pairs"], 120)
    timings["first_page_live_s"] = round(time.monotonic() - demo_stack["t0"], 1)
    assert_clean(page, "pairs (first request)")
    for path, n in PAGES.items():
        t = time.monotonic()
        page.goto(f"{base}/{path}", wait_until="domcontentloaded")
        page.locator("h2", has_text=TITLE[path]).first.wait_for(timeout=60_000)
        if path in ("", "pairs", "backtest"):
            page.get_by_text("source: live file").first.wait_for(timeout=60_000)
        wait_for_charts(page, n, 60)
        if path in TABLES:
            page.wait_for_function("(n) => document.querySelectorAll("
                                   "'[data-testid=\"stDataFrame\"], [data-testid=\"stTable\"]').length >= n",
                                   arg=TABLES[path], timeout=60_000, polling=250)
        page.wait_for_timeout(1500)  # let a refresh or two pass: still clean afterwards
        timings[f"{path or 'market'}_s"] = round(time.monotonic() - t, 1)
        assert_clean(page, path or "market")
        settle(page)
        page.screenshot(path=str(SHOTS / f"{path or 'market'}.png"), full_page=True)
    timings["all_pages_live_s"] = round(time.monotonic() - demo_stack["t0"], 1)
    (SHOTS / "timings.json").write_text(json.dumps(timings, indent=1))
    assert not page.errors, page.errors


def test_settings_live_in_the_url_across_pages(demo_stack, browser_page):
    page, base = browser_page, demo_stack["base"]
    page.goto(f"{base}/", wait_until="domcontentloaded")
    wait_for_charts(page, 1, 60)
    page.locator('[data-testid="stSidebar"] button', has_text="5m").first.click()
    page.wait_for_url("**tf=5m**", timeout=15_000)
    page.get_by_text("5m bars").first.wait_for(timeout=15_000)
    page.locator('[data-testid="stSidebarNav"] a', has_text="Pairs").click()
    page.wait_for_url("**/pairs**", timeout=15_000)
    assert "tf=5m" in page.url
    page.get_by_text("5m bars").first.wait_for(timeout=15_000)
    # ~2 h of demo history is ~24 bars of 5m: the page says what the 60-bar window cannot show yet
    page.get_by_text("The tests need at least 61 bars").first.wait_for(timeout=30_000)
    wait_for_charts(page, 3, 60)
    assert_clean(page, "pairs at 5m")
    # the bookmark reproduces the view in a fresh tab
    fresh = page.context.browser.new_page(viewport={"width": 1600, "height": 2000})
    fresh.goto(page.url, wait_until="domcontentloaded")
    fresh.get_by_text("5m bars").first.wait_for(timeout=30_000)
    wait_for_charts(fresh, 3, 60)
    assert_clean(fresh, "bookmarked pairs at 5m")
    fresh.close()


# an x range end in UTC ms: plotly.js keeps a date axis range as given (ms) or as its own 'YYYY-MM-DD hh:mm:ss' text
RANGE_MS = "(v => typeof v === 'number' ? v : Date.parse(v.replace(' ', 'T') + 'Z'))"


def test_live_chart_keeps_zoom_across_refreshes(demo_stack, browser_page):
    page, base = browser_page, demo_stack["base"]
    page.goto(f"{base}/?every=1s&tf=1s&lb=15m", wait_until="domcontentloaded")
    wait_for_charts(page, 1, 60)
    page.wait_for_timeout(1500)
    zoomed = page.evaluate("""async () => {
        const el = document.querySelector('.js-plotly-plot'); el.dataset.e2e = 'zoomed';
        const xs = el._fullData[0].x; const r = [xs[Math.floor(xs.length / 4)], xs[Math.floor(xs.length / 2)]];
        await window.Plotly.relayout(el, {'xaxis.range': r});
        return {range: el.layout.xaxis.range.map(MS), last: xs[xs.length - 1]}; }""".replace("MS", RANGE_MS))
    page.wait_for_timeout(4500)  # several 1 s refreshes with new ticks
    page.wait_for_function("""(last) => { const el = document.querySelector('.js-plotly-plot');
        const xs = el._fullData[0].x; return xs[xs.length - 1] > last; }""", arg=zoomed["last"],
                           timeout=20_000, polling=250)  # on a busy host a refresh can take longer
    after = page.evaluate("""() => { const els = document.querySelectorAll('.js-plotly-plot'); const el = els[0];
        const xs = el._fullData[0].x;
        return {count: els.length, mark: el.dataset.e2e || null, range: el.layout.xaxis.range.map(MS),
                last: xs[xs.length - 1]}; }""".replace("MS", RANGE_MS))
    assert after["count"] == 1 and after["mark"] == "zoomed"  # the same graph, updated in place
    assert after["range"] == zoomed["range"]                   # the user's zoom survived
    assert after["last"] > zoomed["last"]                      # while new bars arrived
    assert_clean(page, "market live")
