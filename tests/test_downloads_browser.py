"""Every download button gives its file on every click while the page refreshes (headless Chromium).

Before: a button drawn inside a `run_every` fragment got a new file id on every refresh, and a click that landed
while the refresh replaced it got no file (server log `MediaFileStorageError: Deferred file … not found`). Here
each button is clicked repeatedly at different phases of a 1 s refresh; every click must deliver a CSV that
parses and holds the page's data, and the server log must show no missing file.
"""
from __future__ import annotations

import io

import pandas as pd
import pytest

from dashboard.export import BAR_COLUMNS
from tests.browser import assert_clean, needs_chromium, wait_for_charts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), needs_chromium]

# (URL path and query, button label prefix, graphs drawn before clicking, clicks, check of the parsed CSV)
CASES = [
    ("pairs?every=1s&tf=1s&lb=15m&hedge=Kalman", "Analytics series (CSV)", 5, 6,
     lambda df: {"zscore_kalman", "beta_kalman"} <= set(df.columns) and len(df) > 100),
    ("?every=1s&tf=1s&lb=15m", "Bars (CSV)", 1, 4, lambda df: list(df.columns) == BAR_COLUMNS and len(df) > 100),
    ("backtest?every=1s&tf=1s&lb=15m", "Trades (CSV)", 1, 4, lambda df: "entry_time" in df.columns),
    ("screener?every=1s&sc_tf=1m&sc_lb=2h", "All screened pairs (CSV)", 1, 4,
     lambda df: {"y", "x", "eg_pvalue", "verdict"} <= set(df.columns) and len(df) == 6),
    ("alerts?every=1s", "Download CSV", 0, 3, lambda df: list(df.columns) in (["note"],) or "fired_at" in df.columns),
    ("data?every=1s&tf=1m&lb=2h", "Bars CSV", 1, 3, lambda df: list(df.columns) == BAR_COLUMNS and len(df) > 10),
]
PAUSES_MS = [0, 150, 400, 650, 900, 1200, 50, 300, 750, 1000]  # clicks land at every phase of the 1 s refresh


@pytest.mark.parametrize("path, label, graphs, clicks, check", CASES, ids=[c[1] for c in CASES])
def test_every_click_downloads_while_the_page_refreshes(demo_stack, browser_page, path, label, graphs, clicks, check):
    page, base = browser_page, demo_stack["base"]
    page.goto(f"{base}/{path}", wait_until="domcontentloaded")
    if graphs:
        wait_for_charts(page, graphs, 120)
    button = page.locator('[data-testid="stDownloadButton"] button', has_text=label).first
    button.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)  # a few refreshes in
    for i in range(clicks):
        page.wait_for_timeout(PAUSES_MS[i % len(PAUSES_MS)])
        with page.expect_download(timeout=90_000) as info:
            button.click()
        body = open(info.value.path(), "rb").read()
        df = pd.read_csv(io.BytesIO(body))
        assert check(df), f"{label}, click {i + 1}: {body[:300]!r}"
        assert info.value.suggested_filename.endswith(".csv")
    assert_clean(page, label)
    log = (demo_stack["tmp"] / "streamlit.log").read_text()
    assert "MediaFileStorageError" not in log and "ScriptRunContext" not in log, log[-3000:]
