"""Page script times of the dashboard at 1M and 20M stored ticks (Streamlit AppTest, no browser).

For each size a DuckDB tick file is generated inside DuckDB with SQL (4 symbols, trades in time order at about
20 per second per symbol, a cointegrated ETH/BTC-style pair), then every page is run with AppTest:
- cold: every cache cleared (a fresh server's first view),
- refresh: the next refresh interval (the dashboard's clock moved 2 s on: per-refresh queries and analytics run
  again, the once-a-minute catalog scan and the 15 s summary stay cached) — what the first open tab pays on
  every live refresh,
- warm: a rerun inside the same refresh interval — what every further open tab pays.
The baseline measured in the same run is the same page on a file without ticks (framework + layout cost).
Also timed: the tickstore queries behind the pages. Prints a table and writes docs/bench-app.md.

    python bench/app.py [--sizes 1000000,20000000] [--repeat 5] [--out docs/bench-app.md]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from tickstore import queries, symbol_catalog  # noqa: E402
from tickstore.connection import init_db  # noqa: E402

SYMBOLS = [("BTCUSDT", 60_000.0, 1.0), ("ETHUSDT", 3_000.0, 1.1), ("SOLUSDT", 150.0, 1.4), ("BNBUSDT", 600.0, 0.8)]
RATE_PER_S = 20.0
PAGES = ["app_pages/market.py", "app_pages/pairs.py", "app_pages/backtest.py", "app_pages/data.py"]

GEN_SQL = """
INSERT INTO ticks
WITH base AS (
    SELECT i,
           sqrt(-2 * ln(greatest(random(), 1e-12))) * cos(2 * pi() * random()) AS z1,
           sqrt(-2 * ln(greatest(random(), 1e-12))) * cos(2 * pi() * random()) AS z2
    FROM range($n) t(i)),
walk AS (
    SELECT i, sum(z1 * 1e-4) OVER (ORDER BY i ROWS UNBOUNDED PRECEDING) AS common, z2 FROM base)
SELECT 'spot', $symbol, i + 1,
       make_timestamptz(($t0 + i * $step_us + (hash(i) % ($step_us // 2)))::BIGINT),
       round($p0 * exp($beta * common + 0.002 * sin(i / 3000.0) + 2e-4 * z2), 4),
       round(0.001 + abs(z2) * 0.5, 6), (hash(i * 7) % 2) = 0, NULL, 'bench'
FROM walk ORDER BY i
"""


def build_file(path: Path, n_total: int) -> float:
    """Generate `n_total` ticks split over SYMBOLS, ending now; returns seconds taken."""
    t0 = time.perf_counter()
    init_db(path)
    per_symbol = n_total // len(SYMBOLS)
    step_us = int(1e6 / RATE_PER_S)
    start_us = int(dt.datetime.now(dt.UTC).timestamp() * 1e6) - per_symbol * step_us
    con = duckdb.connect(str(path))
    try:
        con.execute("SELECT setseed(0.42)")
        for symbol, p0, beta in SYMBOLS:
            con.execute(GEN_SQL, {"n": per_symbol, "symbol": symbol, "t0": start_us, "step_us": step_us,
                                  "p0": p0, "beta": beta})
        now = dt.datetime.now(dt.UTC)
        for symbol, _, _ in SYMBOLS:
            con.execute("""INSERT INTO ingest_status(market, symbol, connected, last_trade_id, last_trade_ts, last_recv_ts,
                   ticks_total, ticks_per_s, reconnects, gaps_found, gaps_filled, gaps_unrecoverable,
                   trades_backfilled, malformed, duplicates, updated_at) VALUES ('spot', $s, TRUE,
                             (SELECT max(trade_id) FROM ticks WHERE symbol = $s),
                             (SELECT max(ts) FROM ticks WHERE symbol = $s), $now, $n, $r, 0, 0, 0, 0, 0, 0, 0, $now)""",
                        {"s": symbol, "n": per_symbol, "r": RATE_PER_S, "now": now})
        symbol_catalog.ensure_catalog(con)  # what the ingestor's first connection does to a file filled directly
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return time.perf_counter() - t0


class DashboardClock:
    """Stands in for `time` in dashboard.data: the cache buckets see `now`, which the bench moves on by hand."""

    def __init__(self) -> None:
        self.now = (time.time() // 60) * 60 + 1  # just after a minute boundary: 29 refreshes before it turns
        self.monotonic = time.monotonic

    def time(self) -> float:
        return self.now


def time_pages(db: Path, repeat: int) -> dict[str, tuple[float, float, float]]:
    """Median (cold, refresh, warm) AppTest run seconds per page (refresh interval 2 s, live)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from dashboard import data, warmup

    clock = DashboardClock()
    data.time = clock
    os.environ["TICKDESK_DB"] = str(db)
    out = {}
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=300)
    at.run()
    warmup.join(120)  # its background imports would otherwise land on the first page's cold runs
    for page in PAGES:
        at.switch_page(page)
        at.run()  # warm-up: imports, first registration
        cold, refresh, warm = [], [], []
        for _ in range(repeat):
            clock.now = (clock.now // 60 + 1) * 60 + 1
            st.cache_data.clear()
            t = time.perf_counter()
            at.run()
            cold.append(time.perf_counter() - t)
            clock.now += 2
            t = time.perf_counter()
            at.run()
            refresh.append(time.perf_counter() - t)
            t = time.perf_counter()
            at.run()
            warm.append(time.perf_counter() - t)
            if at.exception:
                raise RuntimeError(f"{page}: {at.exception[0].value}")
        out[page] = (statistics.median(cold), statistics.median(refresh), statistics.median(warm))
    data.time = time
    return out


def time_queries(db: Path, repeat: int) -> dict[str, float]:
    syms = [s for s, _, _ in SYMBOLS]
    last = queries.symbols(db)["last_ts"].max()
    start = (last - dt.timedelta(hours=2)).floor("60s").to_pydatetime()
    cases = {
        "symbols (catalog full scan, once a minute)": lambda: queries.symbols(db),
        "symbols_since (catalog update, every refresh)": lambda: queries.symbols_since(
            last - dt.timedelta(minutes=5), db),
        "bars 1m x 2h, 4 symbols": lambda: queries.bars("spot", syms, "1m", start, path=db),
        "bars 1s x 2h, 2 symbols": lambda: queries.bars("spot", syms[:2], "1s", start, path=db),
        "latest 24h summary (every 15 s)": lambda: queries.latest("spot", dt.timedelta(hours=24), path=db),
        "status": lambda: queries.status(db),
    }
    out = {}
    for name, fn in cases.items():
        fn()
        ts = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        out[name] = statistics.median(ts)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,20000000")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench-app.md"))
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    import logging
    logging.disable(logging.WARNING)

    results, qresults, builds = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="tickdesk-bench-") as tmp:
        empty = Path(tmp) / "empty.duckdb"
        init_db(empty)
        results[0] = time_pages(empty, args.repeat)
        for n in sizes:
            db = Path(tmp) / f"ticks-{n}.duckdb"
            builds[n] = build_file(db, n)
            results[n] = time_pages(db, args.repeat)
            qresults[n] = time_queries(db, args.repeat)
            db.unlink()

    def ms(x: float) -> str:
        return f"{x * 1000:,.0f}"

    label = {0: "no ticks (baseline)", **{n: f"{n / 1e6:g}M ticks" for n in sizes}}
    lines = ["| page | " + " | ".join(f"{label[n]}: cold / refresh / warm (ms)" for n in results) + " |",
             "|---|" + "---|" * len(results)]
    for page in PAGES:
        cells = [" / ".join(ms(v) for v in results[n][page]) for n in results]
        lines.append(f"| {Path(page).stem} | " + " | ".join(cells) + " |")
    qlines = ["| query | " + " | ".join(label[n] + " (ms)" for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for name in next(iter(qresults.values())):
        qlines.append(f"| {name} | " + " | ".join(ms(qresults[n][name]) for n in sizes) + " |")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, " \
              f"load average {os.getloadavg()[0]:.1f} at the end"
    table = "\n".join(lines)
    qtable = "\n".join(qlines)
    built = ", ".join(f"{label[n]}: generated in {builds[n]:.1f} s" for n in sizes)
    print(table)
    print()
    print(qtable)
    print()
    print(built)
    doc = f"""# Dashboard page script times

Measured with `python bench/app.py` ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {machine}).

Each page is run with Streamlit's `AppTest` (the page script plus the shared sidebar, no browser) on a generated
tick file: {len(SYMBOLS)} symbols, ~{RATE_PER_S:g} trades/s per symbol in time order (so 20M ticks span
~{20e6 / len(SYMBOLS) / RATE_PER_S / 3600:.0f} h), default view: 1m bars, 2 h lookback, 60-bar window, OLS hedge.
*cold* = every cache cleared (a fresh server's first view); *refresh* = the next 2 s refresh interval (the
per-refresh queries and analytics run again; the once-a-minute catalog scan and the 15 s day summary stay cached)
— what the first open tab pays on every live refresh; *warm* = a rerun inside the same interval — what every
further open tab pays. Median of {args.repeat} runs.
The baseline column is the same page on a file without ticks (framework, layout and explanations only).

{table}

Tickstore queries behind the pages (median, one short-lived read-only connection each):

{qtable}

{built}.

Reading: the lookback window, not the file size, drives the bar queries (ticks are stored in time order, so
DuckDB's zone maps skip everything outside the window). The full catalog scan and the 24 h summary grow with the
file; they run once a minute / every 15 s per server process (the catalog is brought up to date on each refresh
from the last minutes of ticks only), and all tabs share the cached results.
"""
    Path(args.out).write_text(doc)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
