"""Headless Chromium over a 400 + 400 symbol file: symbols picked under the Market page's all-symbol summary are
added to the charted symbols by *Chart selected*."""
from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from tests.browser import app_env, needs_chromium, streamlit_server
from tests.universe_db import make_universe_db

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), needs_chromium]


@pytest.fixture(scope="module")
def universe_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("universe-browser")
    uni = make_universe_db(tmp / "universe.duckdb", 400)
    with streamlit_server(env=app_env(uni.path), log=tmp / "streamlit.log") as srv:
        yield srv.base, uni


def test_picked_summary_symbols_are_charted(universe_app, browser_page):
    base, uni = universe_app
    page = browser_page
    page.goto(f"{base}/?every=1m", wait_until="domcontentloaded")
    page.get_by_text("20 of 400 symbols").wait_for(timeout=120_000)
    table = page.locator('[data-testid="stTable"]').last
    table.scroll_into_view_if_needed()
    listed = table.locator("tbody tr th").all_inner_texts()     # the row labels: symbols, most traded first
    assert [t.strip() for t in listed[:6]] == list(uni.symbols[:6])
    picker = page.locator('[data-testid="stMain"] [data-testid="stMultiSelect"]').last  # under the table
    for sym in uni.symbols[4:6]:  # the 5th and 6th most traded (not charted by default: the sidebar starts on 4)
        picker.click()
        page.keyboard.type(sym)
        page.get_by_role("option", name=sym, exact=True).click()
        page.wait_for_timeout(1000)
    page.keyboard.press("Escape")
    button = page.get_by_role("button", name="Chart 2 selected")
    button.wait_for(timeout=30_000)
    button.click()
    page.wait_for_function("new URLSearchParams(location.search).getAll('sym').length == 6", timeout=60_000)
    charted = parse_qs(urlparse(page.url).query)["sym"]
    assert set(charted) == set(uni.symbols[:6])
    assert not page.errors
