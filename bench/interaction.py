"""Interaction latency in headless Chromium: click on a control until the page has redrawn, and page opens.

    python bench/interaction.py [--ticks 20000000] [--repeat 5] [--every 2s] [--only market,alerts,...] [--no-doc]

A synthetic tick file (bench/app.py's generator: 4 symbols, ~20 trades/s each, ending at the time it is built) is
served by a real `streamlit run streamlit_app.py` (bench/streamlit_server.py); live refresh on (`?every=2s`, the
app's default), no ingestor writing. Each interaction is repeated; a click is timed in the browser from the click
event (a capture listener) until no Streamlit run is going (the app's `data-test-script-state` is not running)
and the target element shows the new state, one only the run after the click can draw (the chart's bar spacing, a message, a button label).
A page open is timed from `goto` in a fresh browser context (empty cache, a new session; the browser and the
server already warm) until the page shows its title and every chart and table drawn.

Baseline, same run: a bare Streamlit page with one Plotly chart, a segmented control that redraws it, a button
that writes a line — the floor of a Streamlit rerun + Plotly redraw on this machine under the same load.
Prints p50/p95 per interaction and writes docs/bench-interaction.md (unless --no-doc). No assertions on the figures.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402  (bench/report.py)
from app import build_file  # noqa: E402  (bench/app.py: the synthetic tick file)
from startup import LIVE_JS  # noqa: E402  (page is live: title, charts, tables)
from streamlit_server import CHROMIUM, CHROMIUM_ARGS, streamlit_server  # noqa: E402

from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: E402

ROOT = report.ROOT
OUT = ROOT / "bench" / "out"
CONTROL_TARGET_S = 1.0
OPEN_TARGET_S = 3.0
VIEWPORT = {"width": 1600, "height": 2000}

BASELINE_APP = """import plotly.graph_objects as go
import streamlit as st

st.title("baseline")
tf = st.segmented_control("Timeframe", ["1s", "5m"], default="1s", required=True, key="tf")
step = 1000 if tf == "1s" else 300_000
st.plotly_chart(go.Figure(go.Scatter(x=[i * step for i in range(120)], y=[i % 17 for i in range(120)])))
if st.button("Go"):
    st.session_state["n"] = st.session_state.get("n", 0) + 1
st.write(f"clicked {st.session_state.get('n', 0)} times")
"""

# Installed in every page before a timed click: the click's time (a capture listener, before the app sees it).
INSTRUMENT_JS = """() => {
  if (window.__bench) return;
  window.__bench = {t0: 0};
  document.addEventListener('click', () => { window.__bench.t0 = performance.now(); }, true);
}"""
# done() -> ms from the click, once no run is going and target() holds (a state only a run after the click can
# draw). Not "a run end was observed": a rerun short enough never shows the running state, and waiting for one
# timed out the bare page's button.
DONE_JS = """() => {
  const b = window.__bench, app = document.querySelector('.stApp');
  if (app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (!(TARGET)()) return false;
  return performance.now() - b.t0;
}"""
# some Plotly chart's bar spacing in ms (x values are ISO strings or numbers): the smallest step between its first
# 60 bars (a second or a minute without trades leaves no bar: a quiet symbol's bars are not evenly spaced); any
# chart, not the first: a replaced chart's old element may linger in the DOM for a moment
SPACING = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).some(el => {
  if (!el._fullData || !el._fullData.length) return false;
  const xs = el._fullData[0].x; if (!xs || xs.length < 3) return false;
  const t = v => typeof v === 'number' ? v : Date.parse(v);
  let step = Infinity;
  for (let i = 1; i < Math.min(xs.length, 60); i++) step = Math.min(step, t(xs[i]) - t(xs[i - 1]));
  return step === %d; })"""
TEXT = """() => document.querySelector('[data-testid="stMain"]').innerText.includes(%r)"""


def timed_click(page, click: Callable[[], None], target: str, timeout_s: float = 90) -> float:
    """Seconds from the click (browser clock) until the run after it ended and `target` (a JS function) holds."""
    page.evaluate(INSTRUMENT_JS)
    page.wait_for_timeout(300)  # let the front end settle after the previous step
    click()
    ms = page.wait_for_function(DONE_JS.replace("TARGET", target), timeout=timeout_s * 1000,
                                polling="raf").json_value()
    exc = page.locator('[data-testid="stException"]')
    if exc.count():
        raise RuntimeError(f"exception on the page: {exc.first.inner_text()[:500]}")
    return ms / 1000


def wait_live(page, title: str, charts: int, tables: int, timeout_s: float = 180) -> None:
    page.wait_for_function(LIVE_JS, arg=[title, charts, tables, False, 0], timeout=timeout_s * 1000, polling=100)
    page.wait_for_function("() => document.querySelector('.stApp')?.getAttribute('data-test-script-state') "
                           "=== 'notRunning'", timeout=timeout_s * 1000, polling=100)


def sidebar_button(page, label: str):
    return page.locator('[data-testid="stSidebar"] button', has_text=label).first


def choose(page, label: str, option: str, scope: str = "") -> None:
    """Pick `option` in the selectbox labelled `label` (not timed)."""
    page.locator(f'{scope} [data-testid="stSelectbox"]'.strip()).filter(has_text=label).first.click()
    page.get_by_role("option", name=option, exact=True).click()


class Run:
    """Collects seconds per interaction name."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self.timeouts: dict[str, int] = {}

    def add(self, name: str, seconds: float) -> None:
        self.times.setdefault(name, []).append(seconds)
        print(f"  {name:48s} {seconds:6.2f} s", flush=True)


def open_page(browser, url: str, title: str, charts: int, tables: int) -> tuple[object, object, float]:
    """A fresh context opening `url`: (context, page, seconds until live)."""
    ctx = browser.new_context(viewport=VIEWPORT)
    page = ctx.new_page()
    t = time.perf_counter()
    page.goto(url, wait_until="commit")
    wait_live(page, title, charts, tables)
    return ctx, page, time.perf_counter() - t


# ---------------------------------------------------------------- the scenarios (one repetition each)
def baseline(browser, base: str, run: Run) -> None:
    ctx, page, s = open_page(browser, base, "baseline", 1, 0)
    run.add("baseline: open page (new context)", s)
    try:
        run.add("baseline: control → chart redrawn", timed_click(
            page, lambda: page.locator("button", has_text="5m").first.click(), SPACING % 300_000))
        run.add("baseline: control → chart redrawn", timed_click(
            page, lambda: page.locator("button", has_text="1s").first.click(), SPACING % 1000))
        n = page.evaluate("() => parseInt(document.body.innerText.match(/clicked (\\d+) times/)[1])")
        run.add("baseline: button → text", timed_click(
            page, lambda: page.get_by_role("button", name="Go").click(), TEXT % f"clicked {n + 1} times"))
    finally:
        ctx.close()


def market(browser, base: str, run: Run, every: str) -> None:
    ctx, page, s = open_page(browser, f"{base}/?every={every}", "Market", 1, 2)
    run.add("Market: open page (new context)", s)
    try:
        for _ in range(2):
            run.add("Market: timeframe → 1s", timed_click(page, lambda: sidebar_button(page, "1s").click(),
                                                          SPACING % 1000))
            run.add("Market: timeframe → 5m", timed_click(page, lambda: sidebar_button(page, "5m").click(),
                                                          SPACING % 300_000))
        timed_click(page, lambda: sidebar_button(page, "1m").click(), SPACING % 60_000)  # Pairs' default view
        t = time.perf_counter()
        page.locator('[data-testid="stSidebarNav"] a', has_text="Pairs").click()
        wait_live(page, "Pairs", 6, 1)
        run.add("Market → Pairs (first switch, sidebar link)", time.perf_counter() - t)
    finally:
        ctx.close()


def market_7d(browser, base: str, run: Run, every: str) -> None:
    ctx, page, _ = open_page(browser, f"{base}/?every={every}&lb=7d&tf=1m", "Market", 1, 2)
    try:
        for _ in range(2):
            run.add("Market 7d lookback: timeframe → 1s", timed_click(
                page, lambda: sidebar_button(page, "1s").click(), SPACING % 1000))
            run.add("Market 7d lookback: timeframe → 1m", timed_click(
                page, lambda: sidebar_button(page, "1m").click(), SPACING % 60_000))
    finally:
        ctx.close()


def opens(browser, base: str, run: Run, every: str) -> None:
    for path, title, charts, tables in (("pairs", "Pairs", 6, 1), ("alerts", "Alerts", 0, 0),
                                        ("data", "Data", 0, 1)):
        ctx, _, s = open_page(browser, f"{base}/{path}?every={every}", title, charts, tables)
        run.add(f"{title}: open page (new context)", s)
        ctx.close()


def alerts(browser, base: str, run: Run, every: str, rep: int) -> None:
    ctx = browser.new_context(viewport=VIEWPORT)
    page = ctx.new_page()
    try:
        page.goto(f"{base}/alerts?every={every}", wait_until="commit")
        page.get_by_role("button", name="Create rule").wait_for(timeout=120_000)
        threshold = page.get_by_label("Threshold")
        threshold.fill(str(1000 + rep))
        threshold.press("Enter")
        page.get_by_text("now: price = ").first.wait_for(timeout=60_000)  # the live preview of the filled form
        page.wait_for_function("() => document.querySelector('.stApp').getAttribute('data-test-script-state') "
                               "=== 'notRunning'", polling=100)
        run.add("Alerts: Create rule", timed_click(page, lambda: page.get_by_role("button", name="Create rule").click(),
                                                   TEXT % "created:"))
        rid = page.evaluate("() => document.body.innerText.match(/Rule #(\\d+) created/)[1]")
        run.add("Alerts: Disable", timed_click(page, lambda: page.get_by_role("button", name="Disable").click(),
                                               TEXT % f"Rule #{rid} disabled."))
        run.add("Alerts: Enable", timed_click(page, lambda: page.get_by_role("button", name="Enable").click(),
                                              TEXT % f"Rule #{rid} enabled."))
    finally:
        ctx.close()


def tick_csv(browser, base: str, run: Run, every: str, rep: int) -> None:
    ctx = browser.new_context(viewport=VIEWPORT)
    page = ctx.new_page()
    try:
        page.goto(f"{base}/data?every={every}", wait_until="commit")
        wait_live(page, "Data", 0, 1)
        for symbol in ("BTCUSDT", "ETHUSDT"):  # a different symbol each click: the label shows which one is ready
            choose(page, "Symbol", symbol, '[data-testid="stForm"]')
            run.add("Data: Prepare tick CSV (15 min)", timed_click(
                page, lambda: page.get_by_role("button", name="Prepare tick CSV").click(),
                TEXT % f"{symbol} ticks CSV ("))
    finally:
        ctx.close()


def summarise(run: Run, title: str) -> report.Table:
    table = report.Table(title, ["interaction", "n", "p50 s", "p95 s", "max s", "target", "p95 within"])
    for name, v in run.times.items():
        target = OPEN_TARGET_S if "open page" in name or "first switch" in name else CONTROL_TARGET_S
        p95 = report.pct(v, 95)
        table.add(name, len(v), report.pct(v, 50), p95, max(v), f"< {target:g} s", "yes" if p95 < target else "no")
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=20_000_000, help="ticks in the synthetic file (default 20M)")
    ap.add_argument("--repeat", type=int, default=5, help="repetitions of each scenario (default 5)")
    ap.add_argument("--every", default="2s", help="the app's refresh URL parameter (default 2s, the app's default)")
    ap.add_argument("--only", default="", help="scenarios to run (baseline always): market,market_7d,opens,alerts,csv")
    ap.add_argument("--db", default="", help="reuse this tick file instead of building one (it is not deleted)")
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/bench-interaction.md")
    ap.add_argument("--label", default="", help="a note for the doc's title line (e.g. 'before')")
    args = ap.parse_args(argv)
    import logging

    from playwright.sync_api import sync_playwright
    logging.disable(logging.WARNING)
    OUT.mkdir(parents=True, exist_ok=True)
    run = Run()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tickdesk-interaction-") as tmp:
        if args.db:
            db, built = Path(args.db), float("nan")
        else:
            db = Path(tmp) / "ticks.duckdb"
            built = build_file(db, args.ticks)
            print(f"built {args.ticks:,} ticks in {built:.1f} s", flush=True)
        script = Path(tmp) / "baseline_app.py"
        script.write_text(BASELINE_APP)
        env = {**os.environ, "TICKDESK_DB": str(db), "PYTHONUNBUFFERED": "1"}
        scenarios = {"market": market, "market_7d": market_7d, "opens": opens, "alerts": alerts, "csv": tick_csv}
        chosen = [s.strip() for s in args.only.split(",") if s.strip() in scenarios] or list(scenarios)
        with sync_playwright() as pw, \
                streamlit_server(script, env=env, log=OUT / "interaction.baseline.log") as bsrv, \
                streamlit_server(ROOT / "streamlit_app.py", env=env, log=OUT / "interaction.streamlit.log") as srv:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                # warm both servers (imports, first runs, caches of the first view) before anything is timed
                for url, title, charts, tables in ((bsrv.base, "baseline", 1, 0), (srv.base, "Market", 1, 2)):
                    ctx, _, s = open_page(browser, url, title, charts, tables)
                    print(f"warm-up: {title} live after {s:.1f} s", flush=True)
                    ctx.close()
                try:
                    for rep in range(args.repeat):
                        print(f"repetition {rep + 1}/{args.repeat}", flush=True)
                        for name in ["baseline", *chosen]:
                            try:
                                if name == "baseline":
                                    baseline(browser, bsrv.base, run)
                                elif name in ("alerts", "csv"):
                                    scenarios[name](browser, srv.base, run, args.every, rep)
                                else:
                                    scenarios[name](browser, srv.base, run, args.every)
                            except PlaywrightTimeout as exc:  # counted and reported; the run goes on
                                run.timeouts[name] = run.timeouts.get(name, 0) + 1
                                print(f"  {name}: timed out ({str(exc).splitlines()[0]})", flush=True)
                except KeyboardInterrupt:  # Ctrl-C: report what was measured so far
                    print(f"interrupted in repetition {rep + 1}", flush=True)
            finally:
                browser.close()
    load_end = os.getloadavg()
    load = f"load average (1 min) {load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end"
    size = f"{args.ticks / 1e6:g}M ticks" if not args.db else f"the file {args.db}"
    table = summarise(run, f"Click → redrawn / open → live, seconds ({size}, refresh {args.every}, "
                           f"{args.repeat} repetitions; {load})")
    timeouts = "; ".join(f"{k}: {v} scenario run(s) timed out" for k, v in run.timeouts.items())
    print()
    print(table.text())
    if timeouts:
        print(timeouts)
    if not args.no_doc:
        cmd = "python bench/interaction.py " + " ".join(argv if argv is not None else sys.argv[1:])
        built_note = "" if built != built else f"The {size} file was generated in {built:.1f} s. "
        doc = report.write_doc("interaction", "Interaction latency in Chromium" + (f" ({args.label})" if args.label
                                                                                 else ""),
                               cmd.strip(), [table], WHY, built_note + load + "." + (f" Timeouts: {timeouts}." if timeouts else ""))
        print(f"wrote {doc}")
    return 0


WHY = """
A click is timed inside the browser, from the click event to the end of the Streamlit run it caused (the app's
script state back to *not running*) with the target showing the new state; so the figures hold the websocket
round trip, the script run on the server (sidebar + page), the transfer of the changed elements and their drawing
(Plotly included). A page open holds a new session's first run and the front end's start in an empty browser
cache. The baseline rows are the same kinds of steps on a bare Streamlit page with one Plotly chart, measured in
the same run on the same loaded machine: the distance between a row and its baseline is the app's own cost.
The live refresh (fragments every 2 s) keeps running during the clicks, as for a trader; a click that lands while
a refresh runs waits for it.
"""

if __name__ == "__main__":
    sys.exit(main())
