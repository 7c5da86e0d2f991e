"""App write benchmark: how long does saving an alert rule take while the app's sessions keep reading the file?

    python bench/app_write.py [--readers 4] [--saves 20] [--rows 400000]

A Streamlit server reads the tick file all the time (every session, every refresh: open read-only, query, close).
Inside that process DuckDB refuses a read-write open while any read-only connection is open ("different
configuration"), and another process's read-write open fails while this one holds read-only connections (file
lock). Three ways to save a rule from the app are timed here under the same read load (`--readers` threads, each
a session refreshing every 50 ms with a ~10 ms query on a file of `--rows` ticks):

- `in-process, gated` (what the app does now): `RuleStore.create` → `tickstore.appwrite.app_write`; this module's
  per-file gate lets the open reads finish and holds new ones back for the few ms of the write.
- `in-process, retry` (the earlier path of dump imports): no gate; reader and writer both retry DuckDB's
  "different configuration" error with backoff, so the write only gets in when no read happens to be open.
- `subprocess` (the earlier path of rule saves): `python -m alerts.cli create`, which retries the file lock
  against this process's reads.

Per design: save time (median / p95 / max), saves that gave up after the 5 s budget, and the readers' query time
(p95) and errors. Prints the table and writes docs/bench-app-write.md. No time assertions.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import report  # noqa: E402  (bench/report.py; puts the repo root on sys.path)

import duckdb

from alerts.rules import RuleStore
from tickstore.connection import StoreBusy, init_db, is_lock_error, read_connection, write_connection

RULE = {"symbol": "BTCUSDT", "metric": "price", "op": ">", "threshold": 70000}
BUDGET_S = 5.0
READ_SQL = """SELECT symbol, count(*), arg_max(price, trade_id), max(ts) FROM ticks
              WHERE market = 'spot' AND ts >= $since GROUP BY symbol"""
GEN_SQL = """INSERT INTO ticks (market, symbol, trade_id, ts, price, qty, is_buyer_maker)
             SELECT 'spot', ['BTCUSDT', 'ETHUSDT', 'SOLUSDT', 'BNBUSDT'][i % 4 + 1], i,
                    make_timestamptz($start_us + i * 10000), 100 + random(), 1.0, random() < 0.5
             FROM range($n) t(i)"""


def make_file(path: Path, rows: int) -> dt.datetime:
    init_db(path)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=rows / 100)
    with write_connection(path) as con:
        con.execute(GEN_SQL, {"start_us": int(start.timestamp() * 1e6), "n": rows})
    return start


def raw_connect(path: Path, read_only: bool, budget_s: float) -> duckdb.DuckDBPyConnection:
    """The ungated open: retry lock and 'different configuration' errors with backoff until `budget_s`."""
    deadline = time.monotonic() + budget_s
    delay = 0.005
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config={} if read_only else {"threads": 1})
        except duckdb.Error as exc:
            if not is_lock_error(exc) or time.monotonic() >= deadline:
                raise StoreBusy(str(exc)) from exc
            time.sleep(min(delay * (1 + random.random()), max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.1)


class Readers:
    """`n` threads, each a session refreshing every 50 ms; gated (tickstore) or raw opens."""

    def __init__(self, path: Path, n: int, since: dt.datetime, gated: bool) -> None:
        self.path, self.since, self.gated = path, since, gated
        self.times: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]

    def _query(self) -> None:
        if self.gated:
            with read_connection(self.path) as con:
                con.execute(READ_SQL, {"since": self.since}).fetchall()
        else:
            con = raw_connect(self.path, True, 2.0)
            try:
                con.execute(READ_SQL, {"since": self.since}).fetchall()
            finally:
                con.close()

    def _run(self) -> None:
        time.sleep(random.random() * 0.05)
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                self._query()
                self.times.append(time.perf_counter() - t0)
            except Exception:  # noqa: BLE001 - counted, shown in the table
                self.errors += 1
            self._stop.wait(0.05)

    def __enter__(self) -> Readers:
        for t in self._threads:
            t.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


def save_gated(path: Path) -> None:
    RuleStore(path, lock_budget_s=BUDGET_S).create(RULE)


def save_retry(path: Path) -> None:
    con = raw_connect(path, False, BUDGET_S)
    try:
        con.execute("INSERT INTO alert_rules (market, symbol, metric, timeframe, op, threshold) "
                    "VALUES ('spot', 'BTCUSDT', 'price', '1m', '>', 70000)")
    finally:
        con.close()


def save_subprocess(path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(report.ROOT)}
    p = subprocess.run([sys.executable, "-m", "alerts.cli", "--db", str(path), "--lock-budget", str(BUDGET_S),
                        "create", json.dumps(RULE)], cwd=report.ROOT, env=env, capture_output=True, text=True)
    if not json.loads(p.stdout.strip().splitlines()[-1]).get("ok"):
        raise StoreBusy(p.stdout)


def run(name: str, save: Callable[[Path], None], gated_readers: bool, path: Path, since: dt.datetime,
        readers: int, saves: int, table: report.Table) -> None:
    times, failed = [], 0
    with Readers(path, readers, since, gated_readers) as r:
        for _ in range(saves):
            t0 = time.perf_counter()
            try:
                save(path)
                times.append(time.perf_counter() - t0)
            except StoreBusy:
                failed += 1
            time.sleep(0.2)
    ms = [t * 1000 for t in times]
    table.add(name, len(times), failed, statistics.median(ms) if ms else float("nan"), report.pct(ms, 95),
              max(ms) if ms else float("nan"), report.pct([t * 1000 for t in r.times], 95), len(r.times), r.errors)
    print(table.rows[-1], flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--readers", type=int, default=4)
    p.add_argument("--saves", type=int, default=20)
    p.add_argument("--rows", type=int, default=400_000)
    a = p.parse_args()
    table = report.Table(f"Saving a rule while {a.readers} sessions read (every 50 ms), {a.rows:,} ticks",
                         ["design", "saved", "gave up (5 s)", "save median ms", "save p95 ms", "save max ms",
                          "read p95 ms", "reads", "read errors"])
    with tempfile.TemporaryDirectory(prefix="tickdesk-bench-") as tmp:
        path = Path(tmp) / "t.duckdb"
        since = make_file(path, a.rows)
        run("in-process, gated (now)", save_gated, True, path, since, a.readers, a.saves, table)
        run("in-process, retry (before: imports)", save_retry, False, path, since, a.readers, a.saves, table)
        run("subprocess alerts.cli (before: rules)", save_subprocess, True, path, since, a.readers, a.saves, table)
    print()
    print(table.text())
    out = report.write_doc(
        "app-write", "Saving from the app while it reads", f"python bench/app_write.py --readers {a.readers} "
        f"--saves {a.saves} --rows {a.rows}", [table],
        why="""A write in the app's own process used to meet DuckDB's in-process refusal ("different configuration")
whenever any session's read connection was open; retrying it only succeeds in a moment when no read happens to be
open, which grows rare as sessions are added. A subprocess writer swaps that for the cross-process file lock, with
the same dependence on a free moment, plus a Python start-up (imports of pandas, DuckDB, the alerts package) per
save. The per-file gate in tickstore.connection orders this process's connections instead: the write waits for
the reads that are open (tens of ms) and new reads wait for the write (a few ms), so a save costs about one read.""")
    print(f"\nwritten {out.relative_to(report.ROOT)}")


if __name__ == "__main__":
    main()
