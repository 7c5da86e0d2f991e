"""A long faulted run: the ingestor CLI against the local exchange with every fault switched on, then the file
compared with the exchange's ground truth. Prints a table of trades published / stored / missing / duplicated
and the gap counters. Usage: python bench/faulted_run.py [--minutes 5] [--rate 50]
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exchange.server import LocalExchange  # noqa: E402
from tests.feedcheck import compare, start_ingestor, stop_ingestor, stored, wait_for  # noqa: E402
from tickstore.connection import read_connection  # noqa: E402

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=50.0, help="trades/s per symbol")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    db = Path(tempfile.mkdtemp()) / "faulted.duckdb"
    ex = LocalExchange(symbols=SYMBOLS, seed=args.seed, rate=args.rate, history_seconds=600, skip_fraction=0.01,
                       malformed_fraction=0.005, duplicate_fraction=0.01, reorder_fraction=0.01,
                       rest_429_fraction=0.1).start()
    proc = start_ingestor(ex, db, SYMBOLS, "--history", "5m")
    actions = {"close": 0, "reset": 0, "stall": 0, "kill -9": 0, "serverShutdown": 0}
    end = time.monotonic() + args.minutes * 60
    first = None
    while time.monotonic() < end:
        time.sleep(rng.uniform(10, 25))
        if first is None and db.exists():
            first = {s: int(stored(db, "spot", s)["trade_id"].min()) for s in SYMBOLS}
        what = rng.choice(["close", "reset", "stall", "kill -9", "serverShutdown"])
        actions[what] += 1
        if what in ("close", "reset"):
            ex.drop_connections(how=what)
        elif what == "stall":
            ex.stall(15)
            time.sleep(15)
        elif what == "serverShutdown":
            ex.send_server_shutdown("spot")
        else:
            proc.kill()
            proc.wait()
            time.sleep(rng.uniform(2, 8))
            proc = start_ingestor(ex, db, SYMBOLS)
    ex.faults.clear()
    ex.pause()
    last = {s: ex.last_trade_id(s) for s in SYMBOLS}
    wait_for(lambda: all(stored(db, "spot", s)["trade_id"].max() >= last[s] for s in SYMBOLS), 120)
    time.sleep(2)
    stop_ingestor(proc)
    st = ex.stats()
    ex.stop()
    with read_connection(db) as con:
        kinds = dict(con.execute("SELECT kind, count(*) FROM ingest_events GROUP BY kind").fetchall())
        gaps = con.execute("SELECT count(*) FILTER (kind='gap_found'), count(*) FILTER (kind='gap_filled'), "
                           "count(*) FILTER (kind='gap_unrecoverable'), coalesce(sum(count) FILTER (kind='gap_filled'), 0) "
                           "FROM ingest_events").fetchone()
    print(f"\nfaulted run: {args.minutes:g} min, {len(SYMBOLS)} symbols, {args.rate:g} trades/s/symbol; "
          f"actions {actions}")
    print(f"exchange: frames sent {st.frames_sent}, skipped on WS {st.skipped}, malformed {st.malformed_sent}, "
          f"duplicates {st.duplicates_sent}, swapped {st.swapped}, REST statuses {st.rest_statuses}")
    print(f"{'symbol':<10}{'published':>11}{'stored':>10}{'missing':>9}{'dups':>6}{'mismatch':>10}")
    total = 0
    for s in SYMBOLS:
        c = compare(db, ex, "spot", s, from_id=first[s] if first else None)
        total += c.missing + c.duplicates + c.mismatched
        print(f"{s:<10}{c.expected:>11}{c.stored:>10}{c.missing:>9}{c.duplicates:>6}{c.mismatched:>10}")
    print(f"gaps found {gaps[0]}, filled {gaps[1]} ({gaps[3]} trades backfilled), unrecoverable {gaps[2]}; "
          f"reconnects {kinds.get('reconnect', 0)}, rotations {kinds.get('rotated', 0)}, "
          f"starts {kinds.get('started', 0)}, malformed events {kinds.get('malformed', 0)}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
