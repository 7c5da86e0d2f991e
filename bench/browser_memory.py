"""Browser memory benchmark: does a tab of the live dashboard leak? JS heap after GC and DOM counts over time.

    python bench/browser_memory.py [--minutes 8] [--sample-s 30] [--every 1s] [--pages market,pairs] [--no-doc]

Starts `python ingestor.py --demo` on a fresh file (bench/out/browser_memory.duckdb) and a real `streamlit run`
on it, opens one headless Chromium tab per page (`?every=1s`: the fastest refresh, so leaks show sooner) and
every --sample-s seconds, per tab: forces a GC (CDP `HeapProfiler.collectGarbage`), reads
`performance.memory.usedJSHeapSize`, CDP `Performance.getMetrics` (JSHeapUsedSize, Nodes, JSEventListeners,
Documents, Frames) and counts DOM elements, iframes and `.js-plotly-plot` graphs in the document.
Growth of the GC'd heap, nodes, listeners or frames over the run is a leak in the page; a flat GC'd heap with
growing process RSS is the browser's allocator / caches. Prints one table per page and writes
docs/bench-browser-memory.md (unless --no-doc). No assertions on the figures.
"""
from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from pathlib import Path

import report
from app_rss import has_ticks, start_demo_ingestor, wait_until
from streamlit_server import CHROMIUM, CHROMIUM_ARGS, free_port, healthy, stop

ROOT = report.ROOT
OUT = ROOT / "bench" / "out"
PATHS = {"market": "/", "pairs": "/pairs"}
PLOTS = {"market": 1, "pairs": 6}
MIB = 1024 * 1024
METRICS = ("JSHeapUsedSize", "Nodes", "JSEventListeners", "Documents", "Frames")
COUNTS_JS = """() => ({dom: document.getElementsByTagName('*').length,
                       iframes: document.getElementsByTagName('iframe').length,
                       plots: document.querySelectorAll('.js-plotly-plot').length,
                       heap: performance.memory ? performance.memory.usedJSHeapSize : 0})"""


def sample(page, cdp) -> dict:
    """One GC'd sample of a tab: CDP metrics plus in-page counts."""
    cdp.send("HeapProfiler.collectGarbage")
    cdp.send("HeapProfiler.collectGarbage")
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    counts = page.evaluate(COUNTS_JS)
    return {**{k: metrics.get(k, 0) for k in METRICS}, **counts}


def table(name: str, rows: list[tuple[float, dict]], sample_s: float) -> report.Table:
    t = report.Table(f"{name} (sampled every {sample_s:g} s, after a forced GC)",
                     ["minute", "GC'd JS heap MiB", "CDP JSHeapUsed MiB", "DOM nodes (CDP)", "elements",
                      "listeners", "documents", "frames", "iframes", "plots"])
    for minute, s in rows:
        t.add(f"{minute:.1f}", f"{s['heap'] / MIB:.1f}", f"{s['JSHeapUsedSize'] / MIB:.1f}", int(s["Nodes"]),
              s["dom"], int(s["JSEventListeners"]), int(s["Documents"]), int(s["Frames"]), s["iframes"], s["plots"])
    return t


def drift(rows_by_page: dict[str, list[tuple[float, dict]]]) -> report.Table:
    """First sample after the warm-up (minute >= 1) against the last one."""
    t = report.Table("Change from minute ~1 to the end",
                     ["page", "GC'd JS heap MiB", "DOM nodes (CDP)", "listeners", "frames", "plots"])
    for name, rows in rows_by_page.items():
        warm = [s for m, s in rows if m >= 1.0] or [s for _, s in rows]
        a, b = warm[0], rows[-1][1]
        t.add(name, f"{(b['heap'] - a['heap']) / MIB:+.1f}", f"{int(b['Nodes'] - a['Nodes']):+d}",
              f"{int(b['JSEventListeners'] - a['JSEventListeners']):+d}", f"{int(b['Frames'] - a['Frames']):+d}",
              f"{b['plots'] - a['plots']:+d}")
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--sample-s", type=float, default=30.0)
    ap.add_argument("--every", default="1s", help="the app's refresh URL parameter (1s, 2s, ...)")
    ap.add_argument("--pages", default="market,pairs")
    ap.add_argument("--symbols", default="btcusdt,ethusdt,solusdt,bnbusdt")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args(argv)
    pages = [p.strip() for p in args.pages.split(",") if p.strip()]

    from playwright.sync_api import sync_playwright

    db, env, ingestor = start_demo_ingestor("browser_memory", args.symbols)
    port = free_port()
    app_log = open(OUT / "browser_memory.streamlit.log", "w")
    app = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
                            "--server.headless", "true"], cwd=ROOT, env=env, stdout=app_log, stderr=subprocess.STDOUT)
    rows: dict[str, list[tuple[float, dict]]] = {p: [] for p in pages}
    try:
        if not wait_until(lambda: healthy(port), 60) or not wait_until(lambda: has_ticks(db), 60):
            raise SystemExit("the app or the demo ingestor did not come up (see bench/out/browser_memory.*.log)")
        base = f"http://127.0.0.1:{port}"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            tabs = {}
            for name in pages:
                page = browser.new_page(viewport={"width": 1600, "height": 2000})
                cdp = page.context.new_cdp_session(page)
                cdp.send("Performance.enable")
                cdp.send("HeapProfiler.enable")
                page.goto(f"{base}{PATHS[name]}?every={args.every}", wait_until="domcontentloaded")
                page.wait_for_function(
                    "(n) => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                    ".filter(e => e._fullData && e._fullData.length > 0).length >= n",
                    arg=PLOTS[name], timeout=120_000, polling=250)
                tabs[name] = (page, cdp)
            t0 = time.monotonic()
            end = t0 + args.minutes * 60
            while True:
                minute = (time.monotonic() - t0) / 60
                for name, (page, cdp) in tabs.items():
                    s = sample(page, cdp)
                    rows[name].append((minute, s))
                    print(f"{name:7s} {minute:5.1f} min  heap {s['heap'] / MIB:7.1f} MiB  nodes {int(s['Nodes']):7d}  "
                          f"listeners {int(s['JSEventListeners']):6d}  frames {int(s['Frames']):3d}  "
                          f"plots {s['plots']}", flush=True)
                if time.monotonic() >= end:
                    break
                time.sleep(max(0.0, min(args.sample_s, end - time.monotonic())))
            for name, (page, _) in tabs.items():
                if page.locator('[data-testid="stException"]').count():
                    print(f"warning: {name} shows an exception element", file=sys.stderr)
            browser.close()
    finally:
        stop(app)
        stop(ingestor)
        app_log.close()
        with contextlib.suppress(OSError):
            db.unlink(missing_ok=True)
    tables = [table(name.capitalize(), r, args.sample_s) for name, r in rows.items()] + [drift(rows)]
    for t in tables:
        print(t.text())
    if not args.no_doc:
        cmd = f"python bench/browser_memory.py --minutes {args.minutes:g} --every {args.every} --pages {args.pages}"
        doc = report.write_doc("browser-memory", "Browser memory of a live dashboard tab", cmd, tables,
                               why="Is the chromium RSS growth of bench/app_rss.py a leak in the page?")
        print(f"wrote {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
