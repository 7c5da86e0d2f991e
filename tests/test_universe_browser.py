"""Headless Chromium over a 400 + 400 symbol file: rows ticked in the Market page's all-symbol summary are added
to the charted symbols by *Chart selected* (AppTest cannot tick dataframe rows)."""
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


def test_ticked_summary_rows_are_charted(universe_app, browser_page):
    base, uni = universe_app
    page = browser_page
    page.goto(f"{base}/?every=1m", wait_until="domcontentloaded")
    page.get_by_text("20 of 400 symbols").wait_for(timeout=120_000)
    grid = page.locator('[data-testid="stDataFrame"]').last
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    for row in (5, 6):  # the 5th and 6th most traded (not charted by default: the sidebar starts on 4)
        page.mouse.click(box["x"] + 14, box["y"] + 35 * row + 17)  # checkbox column, 35 px rows under the header
        page.wait_for_timeout(1500)
    button = page.get_by_role("button", name="Chart 2 selected")
    button.wait_for(timeout=30_000)
    button.click()
    page.wait_for_function("new URLSearchParams(location.search).getAll('sym').length == 6", timeout=60_000)
    charted = parse_qs(urlparse(page.url).query)["sym"]
    assert set(charted) == set(uni.symbols[:6])
    assert not page.errors
