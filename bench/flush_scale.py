"""Flush cost versus the number of symbols at a fixed total trade rate: the writer's insert (anti-join), the
per-symbol status rows and the alert engine, at 4, 100, 400 and 1,000 symbols.

    python bench/flush_scale.py [--symbols 4,100,400,1000] [--rate 2000] [--flushes 60] [--history-min 10]
                                [--baseline 6bd5461] [--no-doc]

For each symbol count one tick file is built: `--history-min` minutes of trades at `--rate` trades/s spread over
the symbols with a realistic skew (Zipf weights: a few symbols carry most trades) and 40 alert rules (price, rsi,
volume, trade_rate, zscore, lag) over the 20 most active symbols. Then, in a child process each, the code of the
baseline commit (exported with `git archive`) and the code of this tree run the same sequence of flushes on their
own copy of that file: every 250 ms (or right after a slower flush) a flush carries the last 250 ms of trades
(rate/4 rows, timestamped now) through `TickWriter.flush_once` with the ingestor's hooks
(`IngestState.write_status`, `AlertEngine.on_flush`), and every 4th flush also re-sends 1,000 already stored trades
of one symbol from 5 minutes earlier (a REST backfill overlapping the stream), which the anti-join must drop.
Every symbol is in the ingest state, as in an ingestor streaming all of them.
Reported: CPU ms per flush (process time, p50 / p99; robust to other jobs on the host) of the whole flush and its
stages: the insert (anti-join, commit, open/close), the status hook, the alert hook; the wall p50 / p99 of the whole
flush; and afterwards the file is checked: every trade stored once (missing / doubled = 0) and every status row's
last id equal to the newest stored id of its symbol.
No time assertions.
"""
from __future__ import annotations

import sys

if "--child" in sys.argv:  # import the code under test from --root before anything of the project is imported
    sys.path.insert(0, sys.argv[sys.argv.index("--root") + 1])

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

MARKET = "spot"
FLUSH_S = 0.25
REPLAY_EVERY = 4
REPLAY_ROWS = 1000
REPLAY_AGO_S = 300
WARMUP = 5
ID_BASE = 1_000_000


def symbol_names(n: int) -> list[str]:
    return [f"S{i:04d}USDT" for i in range(n)]


def weights(n: int) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** 1.1
    return w / w.sum()


def trades(rng: np.random.Generator, n_sym: int, n_rows: int, t0_us: int, t1_us: int, next_id: np.ndarray
           ) -> pa.Table:
    """`n_rows` trades spread over [t0, t1) by the skewed weights; ids continue each symbol's `next_id` (updated)."""
    names = np.array(symbol_names(n_sym), dtype=object)
    sym = rng.choice(n_sym, size=n_rows, p=weights(n_sym))
    ts = np.sort(rng.integers(t0_us, t1_us, size=n_rows))
    order = np.argsort(sym, kind="stable")
    counts = np.bincount(sym, minlength=n_sym)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n_rows, np.int64)
    rank[order] = np.arange(n_rows) - np.repeat(starts, counts)
    ids = next_id[sym] + rank
    next_id += counts
    price = 100.0 + sym * 0.01 + rng.normal(0, 0.05, n_rows)
    now = ts + 1000
    return pa.table({
        "market": pa.array([MARKET] * n_rows, pa.string()),
        "symbol": pa.array(names[sym], pa.string()),
        "trade_id": pa.array(ids, pa.int64()),
        "ts": pa.array(ts, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "price": pa.array(price, pa.float64()),
        "qty": pa.array(rng.exponential(0.5, n_rows), pa.float64()),
        "is_buyer_maker": pa.array(rng.random(n_rows) < 0.5, pa.bool_()),
        "recv_ts": pa.array(now, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "source": pa.array(["ws"] * n_rows, pa.string()),
    })


def rules(n_sym: int) -> list[dict]:
    """40 rules over the (up to) 20 most active symbols; thresholds far away (evaluated, never fired)."""
    syms = symbol_names(n_sym)[:20]
    pick = lambda i: syms[i % len(syms)]  # noqa: E731
    out = []
    for i in range(10):
        out.append({"symbol": pick(i), "metric": "price", "op": ">", "threshold": 1e9})
    for i in range(8):
        out.append({"symbol": pick(i), "metric": "rsi", "timeframe": "1m", "op": ">", "threshold": 99.99})
    for i in range(6):
        out.append({"symbol": pick(i), "metric": "volume", "timeframe": "5m", "op": ">", "threshold": 1e12})
    for i in range(6):
        out.append({"symbol": pick(i), "metric": "trade_rate", "timeframe": "1m", "op": ">", "threshold": 1e9})
    for i in range(6):
        a, b = pick(i), pick(i + 1)
        if a != b:
            out.append({"symbol": a, "symbol2": b, "metric": "zscore", "timeframe": "1m", "op": ">", "threshold": 1e9})
    for i in range(4):
        out.append({"symbol": pick(i), "metric": "lag", "op": ">", "threshold": 1e9})
    return [{"market": MARKET, **r} for r in out]


# ------------------------------------------------------------------------------------------------ child
def child(args: argparse.Namespace) -> dict:
    """Run the flush sequence with the code found first on sys.path; returns the timings and the file check."""
    import duckdb

    from alerts.engine import AlertEngine
    from feed.state import IngestState
    from tickstore.writer import TickBuffer, TickWriter

    n_sym, db = args.n, Path(args.db)
    from tickstore.schema import ensure_schema

    with duckdb.connect(str(db)) as con:  # the status table as this code defines it (columns differ by version)
        con.execute("DROP TABLE ingest_status")
        ensure_schema(con)
    meta = json.loads(Path(args.meta).read_text())
    rng = np.random.default_rng(1000 + n_sym)
    next_id = np.array(meta["next_id"], np.int64)
    state = IngestState()
    names = symbol_names(n_sym)
    for i, s in enumerate(names):
        st = state.stats(MARKET, s)
        st.last_trade_id = int(next_id[i]) - 1
    if hasattr(state, "set_link"):  # per-connection flags (the baseline has one flag per market)
        state.set_link(MARKET, f"{MARKET}#1", names, True)
    else:
        state.connected[MARKET] = True
    timings: dict[str, float] = {}

    def timed(name, fn):
        def hook(con, batch, inserted):
            t, c = time.perf_counter(), time.process_time()
            try:
                return fn(con, batch, inserted)
            finally:
                timings[name] = (time.perf_counter() - t) * 1000
                timings[name + "_cpu"] = (time.process_time() - c) * 1000
        hook.__name__ = name
        return hook

    engine = AlertEngine(status_provider=state.lag, webhooks=False)
    buf = TickBuffer()
    writer = TickWriter(db, buf, int(FLUSH_S * 1000),
                        hooks=[timed("status", state.write_status), timed("alerts", engine.on_flush)])
    per_flush = int(args.rate * FLUSH_S)
    total = WARMUP + args.flushes
    rows = {k: [] for k in ("total", "insert", "status", "alerts", "total_cpu", "insert_cpu", "status_cpu",
                            "alerts_cpu")}
    sent = 0
    replayed = 0
    next_at = time.monotonic()
    for k in range(total):
        next_at += FLUSH_S
        time.sleep(max(0.0, next_at - time.monotonic()))  # the writer's cadence (a slow flush delays the next)
        next_at = max(next_at, time.monotonic())
        t0 = time.time_ns() // 1000 - int(FLUSH_S * 1e6)  # live trades: the last 250 ms
        batch = trades(rng, n_sym, per_flush, t0, t0 + int(FLUSH_S * 1e6), next_id)
        counts = batch.group_by("symbol").aggregate([("trade_id", "max"), ("trade_id", "count")]).to_pylist()
        now = time.time_ns() // 1000
        for r in counts:
            st = state.stats(MARKET, r["symbol"])
            st.ticks_total += r["trade_id_count"]
            st.last_trade_id = r["trade_id_max"]
            st.last_trade_us = t0
            st.last_recv_us = now
        buf.extend_table(batch)
        sent += batch.num_rows
        if k % REPLAY_EVERY == REPLAY_EVERY - 1:  # an overlapping backfill: already stored trades, sent again
            with duckdb.connect(str(db), read_only=True) as con:
                old = con.execute("""SELECT * FROM ticks WHERE symbol = $s AND ts >= make_timestamptz($t::BIGINT)
                                     ORDER BY trade_id LIMIT $n""",
                                  {"s": names[min(1, n_sym - 1)], "t": t0 - REPLAY_AGO_S * 1_000_000,
                                   "n": REPLAY_ROWS}).to_arrow_table()
            buf.extend_table(old.cast(batch.schema))
            replayed += old.num_rows
        timings.clear()
        t, c = time.perf_counter(), time.process_time()
        writer.flush_once()
        ms, cpu = (time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000
        if k >= WARMUP:
            for suffix, total in (("", ms), ("_cpu", cpu)):
                st, al = timings.get("status" + suffix, 0.0), timings.get("alerts" + suffix, 0.0)
                rows["total" + suffix].append(total)
                rows["status" + suffix].append(st)
                rows["alerts" + suffix].append(al)
                rows["insert" + suffix].append(total - st - al)
    with duckdb.connect(str(db), read_only=True) as con:
        stored, distinct = con.execute("SELECT count(*), count(DISTINCT (symbol, trade_id)) FROM ticks").fetchall()[0]
        status_rows = con.execute("SELECT count(*) FROM ingest_status").fetchall()[0][0]
        status_ok = con.execute("""SELECT count(*) FROM ingest_status s JOIN
                                     (SELECT symbol, max(trade_id) AS m FROM ticks GROUP BY symbol) t USING (symbol)
                                   WHERE s.last_trade_id = t.m""").fetchall()[0][0]
    expected = meta["rows"] + sent
    return {"n": n_sym, "flushes": len(rows["total"]), "failures": writer.stats.failures,
            **{f"{k}_p50": float(np.percentile(v, 50)) for k, v in rows.items()},
            **{f"{k}_p99": float(np.percentile(v, 99)) for k, v in rows.items()},
            "missing": int(expected - distinct), "doubled": int(stored - distinct), "replayed": replayed,
            "status_rows": int(status_rows), "status_current": int(status_ok), "engine_errors": engine.stats.errors,
            "rules": len(engine.rules)}


# ----------------------------------------------------------------------------------------------- parent
def build_file(path: Path, n_sym: int, rate: float, history_min: float) -> Path:
    """The template tick file for `n_sym` symbols (history up to now) and its meta json."""
    import duckdb

    from alerts.rules import RuleStore
    from tickstore import symbol_catalog
    from tickstore.connection import init_db

    rng = np.random.default_rng(n_sym)
    end_us = time.time_ns() // 1000
    n_rows = int(rate * history_min * 60)
    next_id = np.full(n_sym, ID_BASE, np.int64)
    table = trades(rng, n_sym, n_rows, end_us - int(history_min * 60e6), end_us, next_id)
    init_db(path)
    with duckdb.connect(str(path)) as con:
        con.register("prefill", table)
        con.execute("INSERT INTO ticks SELECT * FROM prefill")
        con.unregister("prefill")
        symbol_catalog.ensure_catalog(con)  # as a writer would have kept it (rules are created atomically)
    RuleStore(path).create_many(rules(n_sym))
    meta = path.with_suffix(".json")
    meta.write_text(json.dumps({"rows": n_rows, "end_us": end_us, "next_id": next_id.tolist()}))
    return meta


def export_baseline(rev: str, dest: Path) -> Path:
    """The project's code at `rev` (git archive), to run the same flushes with the code as it was."""
    root = Path(__file__).resolve().parent.parent
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(root), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def run_child(root: Path, template: Path, meta: Path, work: Path, n: int, args: argparse.Namespace) -> dict:
    db = work / f"run-{n}-{root.name}.duckdb"
    shutil.copy(template, db)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--root", str(root), "--db", str(db),
           "--meta", str(meta), "--n", str(n), "--rate", str(args.rate), "--flushes", str(args.flushes)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=str(root), env={**os.environ, "PYTHONPATH": str(root)})
    if r.returncode != 0:
        raise SystemExit(f"child for {n} symbols ({root}) failed:\n{r.stderr[-4000:]}")
    db.unlink()
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--symbols", default="4,100,400,1000")
    p.add_argument("--rate", type=float, default=2000.0, help="total trades/s over all symbols")
    p.add_argument("--flushes", type=int, default=60, help="measured flushes per run (after 5 warm-up flushes)")
    p.add_argument("--history-min", type=float, default=10.0, help="minutes of trades in the file before the run")
    p.add_argument("--baseline", default="6bd5461", help="git revision measured as the baseline")
    p.add_argument("--no-doc", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--meta", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        import logging

        logging.basicConfig(level=logging.ERROR)
        print(json.dumps(child(args)))
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import report

    counts = [int(x) for x in args.symbols.split(",")]
    results: list[tuple[str, dict]] = []
    with tempfile.TemporaryDirectory(prefix="flush-scale-") as tmp:
        work = Path(tmp)
        base = export_baseline(args.baseline, work / "baseline")
        for n in counts:
            template = work / f"template-{n}.duckdb"
            meta = build_file(template, n, args.rate, args.history_min)
            for label, root in ((f"baseline {args.baseline}", base), ("this tree", report.ROOT)):
                res = run_child(root, template, meta, work, n, args)
                results.append((label, res))
                print(f"{n:>5} symbols  {label:<18} rules {res['rules']}  flush p50 {res['total_p50']:7.1f} ms  "
                      f"p99 {res['total_p99']:7.1f} ms  CPU p50 {res['total_cpu_p50']:6.1f} ms (insert "
                      f"{res['insert_cpu_p50']:.1f}, status {res['status_cpu_p50']:.1f}, alerts "
                      f"{res['alerts_cpu_p50']:.1f})  missing {res['missing']} doubled {res['doubled']}", flush=True)
    t = report.Table(f"Flush cost vs symbols at {args.rate:,.0f} trades/s ({int(args.rate * FLUSH_S)} trades per "
                     f"250 ms flush, every {REPLAY_EVERY}th flush + {REPLAY_ROWS:,} re-sent trades): CPU ms per "
                     "flush by stage (p50 / p99), and wall ms of the whole flush",
                     ["symbols", "code", "CPU total", "CPU insert", "CPU status", "CPU alerts", "wall p50",
                      "wall p99", "missing / doubled", "status rows current"])
    for label, r in results:
        pair = lambda k: f"{report.fmt(r[k + '_p50'])} / {report.fmt(r[k + '_p99'])}"  # noqa: E731
        t.add(r["n"], label, pair("total_cpu"), pair("insert_cpu"), pair("status_cpu"), pair("alerts_cpu"),
              r["total_p50"], r["total_p99"], f"{r['missing']} / {r['doubled']}",
              f"{r['status_current']} / {r['status_rows']}")
    print()
    print(t.text())
    print(report.machine())
    if not args.no_doc:
        path = report.write_doc(
            "flush-scale", "Flush cost versus the number of symbols", "python bench/flush_scale.py", [t], WHY)
        print(f"wrote {path}")


WHY = """
What grew with the symbols (measured against 6bd5461, docs of an earlier run): one `ingest_status` row per symbol
per flush as a 16-parameter-a-row VALUES statement, the alert engine filtering the batch once per symbol and per
rule, and its status view normalising every streamed symbol. Since: status rows are written only when they change,
as one Arrow table; the engine sorts the batch once and looks only at its rules' symbols; the anti-join compares
within the batch's time ranges.
This run (baseline 3a642a9): a flush no longer starts a DuckDB instance. Each one used to `duckdb.connect` the file
(an instance start-up: ~20-25 ms of CPU with any file, even an in-memory one) and close it; now one in-memory
instance per process ATTACHes the file for the flush and DETACHes it afterwards (the checkpoint and the release of
the file's lock happen exactly as before): ~3 ms. Status rows are updated in place (UPDATE ... FROM the Arrow table;
INSERT OR REPLACE deleted and re-inserted each row and its key), and the 5 s refresh of unchanged rows is spread
over the flushes (at most a tenth of the rows a flush, oldest first, each row within 10 s) instead of rewriting all
of them in one flush. The alert engine reads only the bars closed since its last read (after a late trade, only
from that trade's bar on) instead of its whole window (57 one-minute bars for an RSI, every minute), and the ingest
state's lag map is computed only for the symbols the engine looks up.
What is left per flush at 1,000 symbols (CPU p50 of an in-process breakdown): the insert with its anti-join ~7 ms,
the symbol catalogue ~6 ms, the status statement ~8 ms (~200 changed rows; its cost hardly depends on the rows),
commit ~2 ms, attach ~3 ms, detach with its checkpoint ~6 ms (~190 ms once per 122,880 rows, when DuckDB compresses
a full row group), and here 40 alert rules ~15-20 ms (they follow the rules, not the symbols). From 4 to 1,000
symbols only the status statement grows (~4 ms); the rest follows the trades and the rules.
Figures on a shared 2-core VM move with its load; compare rows of one run only.
"""


if __name__ == "__main__":
    main()
