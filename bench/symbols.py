"""Symbol catalogue benchmark: `queries.symbols()` from the writer's `symbol_catalog` against the scan it replaces.

    python bench/symbols.py [--millions 20] [--per-market 400] [--repeat 7] [--out DIR] [--doc]

Builds a tick file of `--per-market` symbols on each of spot and usdm (800 by default) holding `--millions` ticks,
appended in time order in 1M-row chunks (the order the ingestor leaves them), a few symbols carrying most trades.
The catalogue is then built as a writer's first connection does (`ensure_schema`), and checked equal to the scan.
Timed, each the median / p90 of --repeat runs with a fresh read connection as the app opens one:
`symbols()` (catalogue + archive totals) against `symbols_scan()` (the previous query: every tick grouped), and
`stored_symbols()` against its previous DISTINCT over the hot table. Then the writer's side: a flush of 2,000 new
ticks spread over every symbol, `insert_batch` (insert + catalogue update) against the same insert alone (rolled
back each time, so the file does not grow). Prints the tables; `--doc` also writes docs/bench-symbols.md.
No time assertions.
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

import report  # noqa: E402  (bench/report.py; puts the repo root on sys.path)

import numpy as np
import pandas as pd

from tickstore import queries, symbol_catalog
from tickstore.connection import read_connection, write_connection
from tickstore.schema import ensure_schema
from tickstore.writer import INSERT_SQL, insert_batch, rows_to_arrow, time_ranges

END = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
END_US = int(END.timestamp() * 1_000_000)
APPEND_ROWS = 1_000_000
RATE_PER_S = 2_000  # all symbols together: 20M ticks span ~2.8 h
# tick i: symbol floor(n * u^3) (u uniform: a few symbols carry most trades), market by the symbol's half,
# ids increasing per tick (unique per symbol), 2,000 trades/s ending at END
GEN_SQL = """
INSERT INTO ticks
SELECT CASE WHEN k < $per THEN 'spot' ELSE 'usdm' END, 'S' || lpad((k % $per)::VARCHAR, 4, '0') || 'USDT',
       1000000 + i, make_timestamptz($start_us + i * $step_us), round(1 + k + random(), 4), round(random(), 5),
       random() < 0.5, make_timestamptz($start_us + i * $step_us + 50000), 'ws'
FROM (SELECT i, floor(2 * $per * pow(random(), 3))::BIGINT AS k FROM range($lo, $hi) t(i)) ORDER BY i
"""
OLD_STORED_SQL = "SELECT DISTINCT market, symbol FROM main.ticks"


def build(path: Path, millions: float, per: int) -> float:
    n = int(millions * 1_000_000)
    step = 1_000_000 // RATE_PER_S
    t0 = time.perf_counter()
    with write_connection(path) as con:
        ensure_schema(con)
        for lo in range(0, n, APPEND_ROWS):
            con.execute(GEN_SQL, {"per": per, "start_us": END_US - n * step, "step_us": step, "lo": lo,
                                  "hi": min(n, lo + APPEND_ROWS)})
        assert not symbol_catalog.consistent(con)  # written behind the catalogue's back, like an old file
        ensure_schema(con)                          # what the next writer does: one rebuild
        assert symbol_catalog.consistent(con)
    return time.perf_counter() - t0


def timed(fn, repeat: int) -> tuple[float, float, object]:
    out, times = None, []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), report.pct(times, 90), out


def old_stored(path: Path) -> set:
    with read_connection(path) as con:
        return set(con.execute(OLD_STORED_SQL).fetchall())


def flush_batch(per: int, rng: np.random.Generator, first_id: int, n: int = 2_000) -> list[tuple]:
    k = rng.integers(0, 2 * per, n)
    ts = END_US + 1_000 + np.arange(n) * 500
    return [("spot" if j < per else "usdm", f"S{j % per:04d}USDT", first_id + i, int(t), 1.0 + j, 0.5, True, None,
             "ws") for i, (j, t) in enumerate(zip(k, ts))]


def flush_costs(path: Path, per: int, repeat: int) -> tuple[list[float], list[float]]:
    """(insert + catalogue, insert alone) in ms per 2,000-row flush, alternating, each rolled back."""
    rng = np.random.default_rng(1)
    plain_sql = INSERT_SQL.replace(symbol_catalog.RETURNING, "")
    with_cat, alone = [], []
    with write_connection(path) as con:
        for r in range(repeat):
            table = rows_to_arrow(flush_batch(per, rng, 10**12 + r * 10_000))
            ranges = time_ranges(table.column("ts").cast("int64").to_numpy())
            where = " OR ".join(f"ts BETWEEN make_timestamptz(${2 * i + 1}::BIGINT) AND "
                                f"make_timestamptz(${2 * i + 2}::BIGINT)" for i in range(len(ranges)))
            for mode in ("catalog", "plain") if r % 2 == 0 else ("plain", "catalog"):
                con.execute("BEGIN")
                t0 = time.perf_counter()
                if mode == "catalog":
                    insert_batch(con, table)
                else:
                    con.register("batch", table)
                    con.execute(plain_sql.format(ranges=where), [v for rg in ranges for v in rg]).fetchall()
                    con.unregister("batch")
                ms = (time.perf_counter() - t0) * 1000
                con.execute("ROLLBACK")
                (with_cat if mode == "catalog" else alone).append(ms)
    return with_cat, alone


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--millions", type=float, default=20)
    ap.add_argument("--per-market", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--out", type=Path, default=None, help="directory for the tick file (default: a temp dir)")
    ap.add_argument("--doc", action="store_true", help="write docs/bench-symbols.md")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-symbols-"))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"symbols-{args.millions:g}m-{args.per_market}.duckdb"
    path.unlink(missing_ok=True)
    built = build(path, args.millions, args.per_market)
    size = path.stat().st_size / 2**20

    def just_open():
        with read_connection(path) as con:
            con.execute("SELECT 1").fetchall()

    open_ms, open_p90, _ = timed(just_open, args.repeat)
    scan_ms, scan_p90, ref = timed(lambda: queries.symbols_scan(path), args.repeat)
    cat_ms, cat_p90, got = timed(lambda: queries.symbols(path), args.repeat)
    assert got.attrs["source"] == "catalog"
    pd.testing.assert_frame_equal(got, ref, check_dtype=False)
    old_ms, old_p90, old = timed(lambda: old_stored(path), args.repeat)
    new_ms, new_p90, new = timed(lambda: queries.stored_symbols(path=path), args.repeat)
    assert set(map(tuple, new.to_numpy().tolist())) == old

    t = report.Table(f"Catalog queries: {len(ref):,} symbols, {args.millions:g}M ticks ({size:,.0f} MiB file)",
                     ["query", "median ms", "p90 ms", "speed-up"])
    t.add("(open + close a read connection: the floor)", open_ms, open_p90, "")
    t.add("symbols_scan() — previous: every tick grouped", scan_ms, scan_p90, "1x")
    t.add("symbols() — symbol_catalog + archive_files", cat_ms, cat_p90, f"{scan_ms / cat_ms:,.0f}x")
    t.add("stored_symbols, previous: DISTINCT over ticks", old_ms, old_p90, "1x")
    t.add("stored_symbols() — symbol_catalog", new_ms, new_p90, f"{old_ms / new_ms:,.0f}x")
    with_cat, alone = flush_costs(path, args.per_market, max(args.repeat, 9))
    f = report.Table("Writer: one flush of 2,000 new ticks over every symbol (rolled back)",
                     ["insert", "median ms", "p90 ms"])
    f.add("anti-join insert alone (baseline)", statistics.median(alone), report.pct(alone, 90))
    f.add("insert + RETURNING + catalogue update", statistics.median(with_cat), report.pct(with_cat, 90))
    print(f"built {path} in {built:.1f} s (including the one catalogue rebuild)\n")
    print(t.text() + "\n\n" + f.text())
    print("\n" + report.machine())
    if args.doc:
        cmd = f"python bench/symbols.py --millions {args.millions:g} --per-market {args.per_market} --doc"
        doc = report.write_doc("symbols", "Symbol catalogue: queries.symbols without a scan", cmd, [t, f], why=(
            "The scan groups every stored tick, so it grows with the file; the catalogue is one row per symbol "
            "that the writer, the importer and the archiver keep in the same transaction as their ticks, and "
            "`symbols()` trusts it only while its tick counts add up to the hot table's row count (DuckDB answers "
            "that count from metadata), falling back to the scan otherwise. The writer pays a GROUP BY over the "
            "rows it just inserted and an upsert of one row per symbol in the flush."))
        print(f"wrote {doc}")
    path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
