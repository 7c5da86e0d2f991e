"""End to end in headless Chromium: the ingestor on the local exchange + a real `streamlit run`; a rule created in
the Alerts page's form fires in the ingestor and its toast appears once in every open tab.

Screenshots go to artifacts/screenshots/alerts-*.png.
"""
from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pytest

from tests.browser import SHOTS, app_env, assert_clean, needs_chromium, new_page, spawn, stop, streamlit_server

# Every toast element the page ever shows (they dismiss themselves after a few seconds).
RECORD_TOASTS = """() => {
  window.__toasts = new Set();
  const grab = (n) => { if (n.nodeType !== 1) return;
    if (n.matches('[data-testid="stToast"]')) window.__toasts.add(n);
    n.querySelectorAll('[data-testid="stToast"]').forEach(e => window.__toasts.add(e)); };
  document.querySelectorAll('[data-testid="stToast"]').forEach(e => window.__toasts.add(e));
  new MutationObserver(ms => ms.forEach(m => m.addedNodes.forEach(grab)))
    .observe(document.body, {childList: true, subtree: true});
}"""
TOASTS_SEEN = "Array.from(window.__toasts).map(e => e.textContent)"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300), needs_chromium]


def _events(db: Path) -> list[tuple]:
    for _ in range(50):
        try:
            con = duckdb.connect(str(db), read_only=True)
        except duckdb.Error:  # the ingestor is flushing
            time.sleep(0.1)
            continue
        try:
            return con.execute("SELECT id, rule_id, message FROM alert_events ORDER BY id").fetchall()
        finally:
            con.close()
    raise AssertionError("could not read the tick file")


@pytest.fixture
def stack(tmp_path):
    from exchange.server import LocalExchange

    ex = LocalExchange(symbols=["BTCUSDT", "ETHUSDT"], seed=3, rate=15.0, history_seconds=120).start()
    db = tmp_path / "ticks.duckdb"
    env = app_env(db)
    try:
        ingestor = spawn(["ingestor.py", "--symbols", "btcusdt,ethusdt", "--ws-url", ex.ws_url, "--rest-url",
                          ex.http_url, "--db", str(db), "--history", "1m"], tmp_path / "ingestor.log", env)
        try:
            with streamlit_server(env=env, log=tmp_path / "streamlit.log", watch=[ingestor], ready=db.exists,
                                  logs=[tmp_path / "ingestor.log"]) as srv:
                yield {"base": srv.base, "db": db, "tmp": tmp_path}
        finally:
            code = stop(ingestor)
    finally:
        ex.stop()
    assert code == 0, (tmp_path / "ingestor.log").read_text()[-3000:]


def _choose(page, label: str, option: str) -> None:
    """Pick `option` in the Streamlit selectbox labelled `label`."""
    page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.click()
    page.get_by_role("option", name=option, exact=True).click()


def test_rule_created_in_the_ui_toasts_once_in_every_tab(stack, chromium):
    SHOTS.mkdir(parents=True, exist_ok=True)
    base, db = stack["base"], stack["db"]
    alerts_tab, market_tab = new_page(chromium, 1500, 1400), new_page(chromium, 1500, 1000)
    try:
        market_tab.goto(f"{base}/", wait_until="domcontentloaded")
        alerts_tab.goto(f"{base}/alerts", wait_until="domcontentloaded")
        alerts_tab.get_by_role("button", name="Create rule").wait_for(timeout=60_000)
        market_tab.get_by_text("source: live file").first.wait_for(timeout=60_000)

        for tab in (alerts_tab, market_tab):
            tab.evaluate(RECORD_TOASTS)
        # a level rule that holds as soon as it is evaluated: BTCUSDT price above 1
        _choose(alerts_tab, "Symbol", "BTCUSDT")
        _choose(alerts_tab, "Condition", "is above")
        threshold = alerts_tab.get_by_label("Threshold")
        threshold.fill("1")
        threshold.press("Enter")
        alerts_tab.get_by_label("Note (optional)").fill("browser test")
        alerts_tab.get_by_label("Note (optional)").press("Enter")
        alerts_tab.get_by_text("now: price = ").wait_for(timeout=30_000)  # the live preview
        alerts_tab.get_by_role("button", name="Create rule").click()
        alerts_tab.get_by_text("Rule #1 created").wait_for(timeout=30_000)

        for name, tab in (("alerts", alerts_tab), ("market", market_tab)):
            tab.wait_for_function(TOASTS_SEEN + ".some(t => t.includes('BTCUSDT price'))", timeout=30_000,
                                  polling=100)
            tab.screenshot(path=str(SHOTS / f"alerts-toast-{name}.png"))
        # the rule keeps holding, but it is edge-triggered: one event, and one toast per tab over several polls
        alerts_tab.wait_for_timeout(5_000)
        for tab in (alerts_tab, market_tab):
            seen = tab.evaluate(TOASTS_SEEN)
            assert len(seen) == 1 and "BTCUSDT price" in seen[0] and "above 1 — browser test" in seen[0], seen
        events = _events(db)
        assert len(events) == 1 and events[0][1] == 1 and "browser test" in events[0][2]
        # the history on the Alerts page lists it
        alerts_tab.reload(wait_until="domcontentloaded")
        alerts_tab.get_by_text("1 event;").wait_for(timeout=30_000)
        alerts_tab.evaluate(RECORD_TOASTS)
        alerts_tab.wait_for_timeout(4_000)
        assert alerts_tab.evaluate(TOASTS_SEEN) == []  # a new session never toasts old events
        alerts_tab.screenshot(path=str(SHOTS / "alerts-page.png"), full_page=True)
        assert_clean(alerts_tab, "alerts")
        assert not alerts_tab.errors + market_tab.errors, alerts_tab.errors + market_tab.errors
    except Exception:
        for i, tab in enumerate((alerts_tab, market_tab)):
            tab.screenshot(path=str(SHOTS / f"alerts-failure-{i}.png"), full_page=True)
        raise
    finally:
        alerts_tab.close()
        market_tab.close()
