"""Helpers for feed tests: run the ingestor CLI against a LocalExchange and compare the file with ground truth."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from tickstore.connection import read_connection

ROOT = Path(__file__).resolve().parents[1]


def start_ingestor(exchange, db: Path, symbols: list[str], *extra: str, market: str = "spot",
                   log_path: Path | None = None) -> subprocess.Popen:
    """`python ingestor.py` as a real subprocess pointed at the local exchange."""
    cmd = [sys.executable, str(ROOT / "ingestor.py"), "--symbols", ",".join(symbols), "--market", market,
           "--db", str(db), "--ws-url", exchange.ws_url, "--rest-url", exchange.http_url, "--flush-ms", "100", *extra]
    out = open(log_path or db.with_suffix(".log"), "ab")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def stop_ingestor(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout)


def stored(db: Path, market: str, symbol: str) -> pd.DataFrame:
    with read_connection(db, budget_s=10) as con:
        return con.execute("""SELECT trade_id, epoch_us(ts) AS ts_us, price, qty, is_buyer_maker FROM ticks
                              WHERE market = ? AND symbol = ? ORDER BY trade_id""", [market, symbol]).df()


def wait_for(pred, timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except duckdb.Error:
            pass  # the ingestor holds the file for a moment
        time.sleep(every)
    return False


@dataclass
class Comparison:
    symbol: str
    expected: int
    stored: int
    missing: int
    duplicates: int
    extra: int
    mismatched: int

    @property
    def ok(self) -> bool:
        return self.missing == self.duplicates == self.extra == self.mismatched == 0


def compare(db: Path, exchange, market: str, symbol: str, from_id: int | None = None) -> Comparison:
    """Stored ticks vs the exchange's published trades from `from_id` (default: first stored id) to the last one."""
    got = stored(db, market, symbol)
    truth = exchange.trades(symbol, market=market)
    start = int(got["trade_id"].min()) if from_id is None and len(got) else (from_id or 0)
    truth = truth[truth["trade_id"] >= start].reset_index(drop=True)
    dups = int(got["trade_id"].duplicated().sum())
    got = got.drop_duplicates("trade_id")
    merged = truth.merge(got, on="trade_id", how="outer", indicator=True, suffixes=("", "_db"))
    both = merged[merged["_merge"] == "both"]
    truth_us = pd.to_datetime(both["ts"], utc=True).dt.as_unit("us").astype("int64")
    mismatched = int(((both["price"] != both["price_db"]) | (both["qty"] != both["qty_db"])
                      | (truth_us.to_numpy() != both["ts_us"].to_numpy())
                      | (both["is_buyer_maker"] != both["is_buyer_maker_db"])).sum()) if len(both) else 0
    return Comparison(symbol, len(truth), len(got) + dups, int((merged["_merge"] == "left_only").sum()), dups,
                      int((merged["_merge"] == "right_only").sum()), mismatched)
