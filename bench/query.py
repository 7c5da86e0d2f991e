"""Query benchmark: does the dashboard's refresh cost stay flat as the tick file grows?

    python bench/query.py [--sizes 1,10,50] [--repeat 7] [--out bench/out] [--regen]

For each size (millions of rows) a tick file is generated inside DuckDB the way the ingestor leaves it: appended
in time order (1M-row appends; the ingestor's 250 ms appends fill the same 122,880-row row groups in the same
order), 4 symbols at 100 trades/s together, ending at a fixed instant, so "the last hour" holds the same 360k
rows at every size. Files are kept under --out (gitignored) and reused when they match.

Timed per size, each the median (and min) of --repeat runs, every run opening its own read connection like the
app does: the dashboard shape "last hour -> 1m bars for 2 symbols + quantlib.pairs.pair_summary", each part on
its own, the other per-refresh queries (symbols, latest, tick_rate), and two baselines: the same bars without
zone-map pruning (the time filter hidden in an expression) and `latest` in its previous shape (max(ts) in a
subquery, which the planner cannot turn into a scan filter). EXPLAIN ANALYZE shows the row groups scanned.
Prints the tables and writes docs/bench-query.md. No time assertions.
"""
from __future__ import annotations

import argparse
import datetime as dt
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import report  # noqa: E402  (bench/report.py; puts the repo root on sys.path)

import duckdb
import pandas as pd

from quantlib.pairs import align, pair_summary
from tickstore import queries
from tickstore.connection import read_connection
from tickstore.schema import ensure_schema

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")
BASE_PRICE = (60_000.0, 3_000.0, 150.0, 600.0)
RATE_PER_S = 100                       # all symbols together
STEP_US = 1_000_000 // RATE_PER_S
END = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
END_US = int(END.timestamp() * 1_000_000)
APPEND_ROWS = 1_000_000
PAIR = ("ETHUSDT", "BTCUSDT")          # y, x
PAIR_WINDOW = 30                       # 60 one-minute bars in the last hour; pair_summary needs >= 32

# one generated row i: symbol i % 4, 100 trades/s, prices a common slow path + small noise (ETH ~ BTC),
# trade ids increasing per symbol, received 50 ms after the trade
GEN_SQL = """
INSERT INTO ticks
SELECT 'spot', $symbols[i % 4 + 1], 1000000 + i // 4, make_timestamptz($start_us + i * $step_us),
       round($prices[i % 4 + 1] * exp(0.03 * sin(i / 3e5) + 0.01 * sin(i / 7e3) + 0.0005 * random()), 2),
       round(0.001 + random(), 5), random() < 0.5, make_timestamptz($start_us + i * $step_us + 50000), 'ws'
FROM range($lo, $hi) t(i) ORDER BY i
"""

# tickstore.queries.latest's SQL, for EXPLAIN ANALYZE: its max(ts) subquery becomes a join whose value DuckDB
# pushes into the scan at run time, so it reads only the window's row groups
LATEST_SQL = queries.LATEST_SQL
LATEST_WINDOW_US = 24 * 3600 * 1_000_000   # dashboard.data.summary's window
NO_PRUNE = "SET disabled_optimizers = 'filter_pushdown'"   # baseline: filters stay above the scan (no zone maps)


def generate(path: Path, n_rows: int, regen: bool) -> float:
    """Create `path` with `n_rows` ticks ending at END (reused when it already matches); returns seconds spent."""
    if path.exists() and not regen:
        try:
            con = duckdb.connect(str(path), read_only=True)
            n, last = con.execute("SELECT count(*), epoch_us(max(ts)) FROM ticks").fetchone()
            con.close()
            if n == n_rows and last == END_US - STEP_US:
                return 0.0
        except duckdb.Error:
            pass
    for f in (path, path.with_suffix(path.suffix + ".wal")):
        f.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    con = duckdb.connect(str(path))
    ensure_schema(con)
    con.execute("SELECT setseed(0.42)")
    start_us = END_US - n_rows * STEP_US
    for lo in range(0, n_rows, APPEND_ROWS):
        con.execute(GEN_SQL, {"symbols": list(SYMBOLS), "prices": list(BASE_PRICE), "start_us": start_us,
                              "step_us": STEP_US, "lo": lo, "hi": min(n_rows, lo + APPEND_ROWS)})
    con.execute("CHECKPOINT")
    con.close()
    return time.perf_counter() - t0


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """(median ms, min ms, last result) over `repeat` runs after one warm-up."""
    out = fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), min(samples), out


def dashboard_query(path: Path, start: dt.datetime):
    """What the pair page does per refresh: 1m bars of the pair since `start`, then the pair summary."""
    wide = queries.bars_wide("spot", list(PAIR), "1m", start, path=path)
    y, x = align(wide[PAIR[0]]["close"].rename(PAIR[0]), wide[PAIR[1]]["close"].rename(PAIR[1]))
    return pair_summary(y, x, window=PAIR_WINDOW, timeframe="1m")


def zone_maps(path: Path, start: dt.datetime) -> tuple[int, int, int]:
    """(row groups, row groups whose ts range overlaps the previous one's, row groups with max(ts) >= start)."""
    con = duckdb.connect(str(path), read_only=True)
    rows = con.execute("""SELECT row_group_id, stats FROM pragma_storage_info('ticks')
                          WHERE column_name = 'ts' AND segment_type <> 'VALIDITY'""").fetchall()
    con.close()
    rg: dict[int, list] = {}
    for gid, stats in rows:
        lo, hi = stats["min"], stats["max"]
        cur = rg.setdefault(gid, [lo, hi])
        cur[0], cur[1] = min(cur[0], lo), max(cur[1], hi)
    ranges = [rg[k] for k in sorted(rg)]
    overlaps = sum(1 for a, b in zip(ranges, ranges[1:]) if b[0] < a[1])
    live = sum(1 for lo, hi in ranges if hi >= start)
    return len(ranges), overlaps, live


_RG_RE = re.compile(r"Row Groups Scanned:\s*([\d,]+)\s*/\s*([\d,]+)")


def explain(path: Path, sql: str, params: dict, setup: str | None = None) -> tuple[str, str]:
    """('row groups scanned a / b', rows out of the table scan) from EXPLAIN ANALYZE."""
    with read_connection(path) as con:
        if setup:
            con.execute(setup)
        text = con.execute("EXPLAIN ANALYZE " + sql, params).fetchall()[0][1]
    m = _RG_RE.search(text)
    scan = text[text.find("Table Scan"):] if "Table Scan" in text else ""
    rows = re.search(r"([\d,]+) rows", scan)
    return (f"{m.group(1)} / {m.group(2)}" if m else "?"), (rows.group(1) if rows else "?")


def sql_runner(path: Path, text: str, params: dict, setup: str | None = None) -> Callable[[], pd.DataFrame]:
    def go() -> pd.DataFrame:
        with read_connection(path) as con:
            if setup:
                con.execute(setup)
            return con.execute(text, params).df()
    return go


def suite(path: Path, start: dt.datetime, bars_params: dict) -> dict[str, Callable[[], object]]:
    """The timed calls on one file, by row label."""
    wide = queries.bars_wide("spot", list(PAIR), "1m", start, path=path)
    y, x = align(wide[PAIR[0]]["close"], wide[PAIR[1]]["close"])
    return {
        "open + close a read connection (views defined)": lambda: read_connection(path).__enter__().close(),
        "**dashboard: last hour -> 1m bars of 2 symbols + pair_summary**": lambda: dashboard_query(path, start),
        "  of which queries.bars_wide (SQL + frames)":
            lambda: queries.bars_wide("spot", list(PAIR), "1m", start, path=path),
        "  of which quantlib.pairs.pair_summary (60 bars)":
            lambda: pair_summary(y, x, window=PAIR_WINDOW, timeframe="1m"),
        "baseline: same bars SQL without zone-map pruning": sql_runner(path, queries.BARS_SQL, bars_params, NO_PRUNE),
        "queries.tick_rate (last 15 min)": lambda: queries.tick_rate("spot", END - dt.timedelta(minutes=15), path=path),
        "queries.latest (24 h window)": lambda: queries.latest("spot", path=path),
        "queries.symbols (catalog: full scan by definition)": lambda: queries.symbols(path),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1,10,50", help="file sizes in millions of rows (default 1,10,50)")
    ap.add_argument("--repeat", type=int, default=7, help="timed rounds (median and min reported)")
    ap.add_argument("--out", default=str(report.ROOT / "bench" / "out"), help="where the generated files live")
    ap.add_argument("--regen", action="store_true", help="regenerate the files even when they match")
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/bench-query.md")
    args = ap.parse_args(argv)
    sizes = [float(s) for s in args.sizes.split(",")]
    start = END - dt.timedelta(hours=1)
    far = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
    bars_params = {"step": 60_000_000, "market": "spot", "symbols": list(PAIR), "start": start, "end": far}

    paths = []
    for size in sizes:
        path = Path(args.out) / f"query_{size:g}m.duckdb"
        spent = generate(path, int(size * 1_000_000), args.regen)
        print(f"{size:g}M rows: {path} ({'generated in %.0f s' % spent if spent else 'reused'}, "
              f"{path.stat().st_size / 2**20:.0f} MiB)", file=sys.stderr, flush=True)
        paths.append(path)
    summaries = [dashboard_query(p, start) for p in paths]
    assert all(s.nobs == 60 for s in summaries), [s.nobs for s in summaries]

    # Interleaved rounds (each query on each size in turn), so load from other processes hits all sizes alike.
    suites = [suite(p, start, bars_params) for p in paths]
    samples: dict[str, list[list[float]]] = {name: [[] for _ in paths] for name in suites[0]}
    for fns in suites:          # warm-up: OS page cache and DuckDB metadata
        for fn in fns.values():
            fn()
    for _ in range(args.repeat):
        for name in samples:
            for i, fns in enumerate(suites):
                t0 = time.perf_counter()
                fns[name]()
                samples[name][i].append((time.perf_counter() - t0) * 1000)

    timing = report.Table("Per-refresh queries, ms: median of rounds (min); every call opens its own read connection",
                          ["query"] + [f"{s:g}M rows" for s in sizes] + [f"{sizes[-1]:g}M / {sizes[0]:g}M"])
    for name, per_size in samples.items():
        med = [statistics.median(v) for v in per_size]
        timing.add(name, *[f"{report.fmt(m)} ({report.fmt(min(v))})" for m, v in zip(med, per_size)],
                   f"{med[-1] / med[0]:.2f}×")

    plan = report.Table("Why it holds: zone maps on ts (EXPLAIN ANALYZE, row groups read by the scan)",
                        ["file", "row groups", "ts ranges overlapping", "row groups with max(ts) >= start",
                         "bars", "bars: rows out of scan", "bars, no pruning", "latest (24 h)", "symbols"])
    for size, path in zip(sizes, paths):
        groups, overlaps, live = zone_maps(path, start)
        rg_bars, rows_bars = explain(path, queries.BARS_SQL, bars_params)
        rg_full, _ = explain(path, queries.BARS_SQL, bars_params, NO_PRUNE)
        rg_latest, _ = explain(path, LATEST_SQL, {"market": "spot", "window_us": LATEST_WINDOW_US})
        rg_sym, _ = explain(path, "SELECT market, symbol, count(*) FROM ticks_all GROUP BY ALL", {})
        plan.add(f"{size:g}M", groups, overlaps, live, rg_bars, rows_bars, rg_full, rg_latest, rg_sym)

    print(timing.text())
    print()
    print(plan.text())
    if not args.no_doc:
        cmd = "python bench/query.py " + " ".join(argv if argv is not None else sys.argv[1:])
        doc = report.write_doc("query", "Query benchmark: dashboard refresh vs. history size", cmd.strip(),
                               [timing, plan], WHY)
        print(f"\nwrote {doc}", file=sys.stderr)
    return 0


WHY = """
The refresh asks for a fixed window ("the last hour") and the ingestor appends ticks in time order, so each
122,880-row row group covers its own slice of time and DuckDB's per-row-group min/max of `ts` (zone maps) do not
overlap ("ts ranges overlapping" = 0). The filter `ts >= $start` reaches the scan as a constant (parameters are
bound before planning) and the scan skips every row group whose max(ts) is older: it reads the same 4 row groups
(360k rows) at 1M, 10M or 50M rows, and `list_contains($symbols, symbol)`, rewritten by DuckDB to
`symbol IN (...)`, keeps the pair's 180k rows. What is left per call does not depend on history: opening the file
(~15-25 ms, the bulk of it DuckDB instance start-up, the same for an in-memory database), aggregating those rows
(~10 ms), building frames, and pair_summary on 60 bars (~7 ms). The no-pruning baseline (same SQL with filter
pushdown disabled) reads every row group and grows with the file - that is what the zone maps save.

What makes it hold, and what would break it:
- **Order.** Live appends are in time order. REST backfill and imports append older ticks later, which widens
  a few row groups' ranges: a handful of extra row groups read, never a full scan.
- **Constant filters on the bare column.** `ts >= $start` prunes; so does `latest`'s
  `ts >= (SELECT max(ts) ...) - window`: DuckDB 2.0 turns the scalar subquery into a join and pushes its value
  into the scan at run time (EXPLAIN ANALYZE: 79 of 450 row groups, exactly the last 24 h), so it needed no
  rewrite. Its cost follows the window (24 h = 8.6M rows at this file's 100 trades/s), not the history.
- **No index.** An ART index on (market, symbol, trade_id) would have to be loaded by every short-lived
  connection; zone maps come free with the storage format.
- **symbols()**, the catalog (row count, first/last time, last price per symbol), reads every row by
  definition and grows linearly with the file; it is the only per-refresh query that does. The dashboard asks
  for it once per refresh interval (cached per bucket); at 50M rows that is about a second of CPU every 2 s.
  Taking it off the 2 s refresh (a minute-long cache bucket for the catalog, or counts maintained at flush time)
  would remove the last history-dependent cost from a refresh.
"""

if __name__ == "__main__":
    sys.exit(main())
