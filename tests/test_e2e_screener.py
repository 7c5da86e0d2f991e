"""End to end: a real `streamlit run` on a file holding a simulated universe, driven by headless Chromium.

The Screener renders its table and heat map without an exception; picking a row opens that pair on the Pairs page
(sidebar and URL set to the pair, the screen's timeframe and lookback); back on the Screener the picked pair keeps
its buttons. Screenshots go to artifacts/screenshots/screener*.png.
"""
from __future__ import annotations

import datetime as dt
import shutil

import pytest

from quantlib.screen import screen_pairs
from tests.browser import SHOTS, app_env, assert_clean, needs_chromium, new_page, settle, streamlit_server, \
    wait_for_charts
from tests.screenfix import make_universe_db
from tickstore import queries

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), needs_chromium]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-screener")
    db = make_universe_db(tmp / "universe.duckdb")
    try:
        with streamlit_server(env=app_env(db), log=tmp / "streamlit.log") as srv:
            yield {"base": srv.base, "db": db}
    finally:
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp / "streamlit.log", SHOTS / "streamlit-screener.log")


# Streamlit 1.67's front end, rarely and only on a loaded machine (2 of ~12 full CI runs; 0 of 13 runs of this file
# alone beside 3 busy processes), rejects a delta of the page switch ("Bad delta path index 4 (should be between
# [0, 2])"), drops its websocket and leaves a blank page until reloaded. That is upstream's race, not this
# hand-off's: the walk is retried once in a fresh page for that error only, and the first failure is kept in
# artifacts/screenshots/screener-upstream-race.txt. Any other failure, or the race twice, fails the test.
UPSTREAM_RACE = "Bad delta path index"


def test_screener_row_opens_the_pair_on_the_pairs_page(server, chromium):
    best = screen_pairs(queries.closes_wide("spot", None, "1m", dt.timedelta(hours=6), path=server["db"])).pairs.iloc[0]
    SHOTS.mkdir(parents=True, exist_ok=True)
    for attempt in (1, 2):
        page = new_page(chromium, 1600, 1300)
        try:
            _walk(page, server["base"], best)
        except Exception as exc:
            page.screenshot(path=str(SHOTS / "screener-failed.png"), full_page=True)
            message = (f"at {page.url} (artifacts/screenshots/screener-failed.png): {exc}; script errors in the "
                       f"page: {page.errors[:5]}; console: {page.console[-10:]}; its body text: "
                       f"{page.inner_text('body')[:300]!r}")
            if attempt == 1 and any(UPSTREAM_RACE in e for e in page.errors):
                (SHOTS / "screener-upstream-race.txt").write_text(message)
                continue
            (SHOTS / "screener-failed.txt").write_text(message)
            raise AssertionError(message) from None
        finally:
            page.close()
        assert not page.errors, page.errors
        return


def _walk(page, base: str, best) -> None:
    page.goto(f"{base}/screener?sc_lb=6h", wait_until="domcontentloaded")
    page.locator("h2", has_text="Screener").first.wait_for(timeout=90_000)
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.wait_for(timeout=120_000)
    wait_for_charts(page, 1, 60)  # the heat map
    page.get_by_text("Showing all 15 pairs").first.wait_for(timeout=30_000)
    settle(page)
    assert_clean(page, "screener")
    page.screenshot(path=str(SHOTS / "screener.png"), full_page=True)

    box = grid.bounding_box()
    page.mouse.click(box["x"] + 15, box["y"] + 35 + 17)  # the first row's selection cell (header is 35 px)
    page.wait_for_url("**/pairs**", timeout=90_000)
    page.locator("h2", has_text="Pairs").first.wait_for(timeout=90_000)
    # the sidebar's bound widgets took the pair and the screen's lookback (its 1m bars are the default: not in the
    # URL); they write them into the URL during the Pairs page's first run
    want = [f"y={best['y']}", f"x={best['x']}", "lb=6h"]
    page.wait_for_function("(want) => want.every(w => location.search.includes(w))", arg=want, timeout=90_000,
                           polling=250)
    page.get_by_text(f"{best['y']} on {best['x']}: fitted lines").first.wait_for(timeout=60_000)
    page.get_by_text("lookback 6h").first.wait_for(timeout=30_000)
    wait_for_charts(page, 3, 60)
    settle(page)
    # the charts are the picked pair's only (no chart of the pair the sidebar showed before the pick)
    titles = page.locator(".gtitle", has_text="fitted lines").all_text_contents()
    assert titles == [f"{best['y']} on {best['x']}: fitted lines"], titles
    assert all(w in page.url for w in want), page.url
    assert_clean(page, "pairs opened from the screener")
    page.screenshot(path=str(SHOTS / "screener-pairs.png"), full_page=False)

    page.locator('[data-testid="stSidebarNav"] a', has_text="Screener").click()
    page.wait_for_url("**/screener**", timeout=30_000)
    page.get_by_text(f"{best['y']} / {best['x']}").first.wait_for(timeout=90_000)
    page.get_by_role("button", name="Watch this pair").first.wait_for(timeout=30_000)
    assert_clean(page, "screener after the hand-off")
