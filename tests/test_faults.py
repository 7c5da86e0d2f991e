"""Fault-injection suite: the ingestor against a misbehaving local exchange, compared with its ground truth.

Every test ends with the same check for every symbol: missing = 0, duplicates = 0, and every price, quantity,
time and side equal to what the exchange published.
"""
from __future__ import annotations

import random
import signal
import time

import pandas as pd
import pytest

from exchange.server import LocalExchange
from tickstore.connection import read_connection
from tests.feedcheck import compare, start_ingestor, stop_ingestor, stored, wait_for

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]

pytestmark = pytest.mark.slow


def _exchange(**kw):
    return LocalExchange(symbols=SYMBOLS, seed=kw.pop("seed", 5), rate=kw.pop("rate", 40.0), history_seconds=120, **kw)


def _settle(db, ex, market="spot", timeout=90, lossless=True):
    """Stop the faults and the trading, wait until the file holds the last published id of every symbol and, when
    `lossless`, until every hole is backfilled (the final assertions then check exactly what is stored)."""
    # enough traffic for the comparison to mean something, however quickly the scenario went
    assert wait_for(lambda: all(len(stored(db, market, s)) > 120 for s in SYMBOLS), timeout)
    ex.faults.clear()
    ex.pause()
    last = {s: ex.last_trade_id(s, market) for s in SYMBOLS}
    ok = wait_for(lambda: all(len(d := stored(db, market, s)) and d["trade_id"].max() >= last[s] for s in SYMBOLS), timeout)
    assert ok, "ingestor did not catch up"
    if lossless:
        wait_for(lambda: all(compare(db, ex, market, s).missing == 0 for s in SYMBOLS), timeout, every=0.5)


def _count(db, symbol="BTCUSDT"):
    return len(stored(db, "spot", symbol)) if db.exists() else 0


def _grows(db, by=20, symbol="BTCUSDT", timeout=60):
    """Wait until `by` more ticks of `symbol` are stored than now: the ingestor is connected and data flows."""
    start = _count(db, symbol)
    assert wait_for(lambda: _count(db, symbol) >= start + by, timeout), db.with_suffix(".log").read_text()[-2000:]


def _fewest(db):
    """The smallest number of stored ticks among the symbols: start-up waits need every symbol flowing."""
    return min(_count(db, s) for s in SYMBOLS)


def _newest_stored_us(db):
    """The oldest of the symbols' newest stored prints (0 while a symbol has none yet)."""
    newest = [stored(db, "spot", s)["ts_us"].max() for s in SYMBOLS]
    return 0 if any(pd.isna(n) for n in newest) else min(int(n) for n in newest)


def _exchange_newest_us(ex, symbol):
    return int(pd.Timestamp(ex.trades(symbol)["ts"].iloc[-1]).value // 1000)


def _events_of(db, kind):
    return _events(db)[0].get(kind, 0)


def _assert_lossless(db, ex, market="spot", from_id=None):
    for s in SYMBOLS:
        c = compare(db, ex, market, s, from_id=None if from_id is None else from_id[s])
        assert c.ok, c
        assert c.expected > 100


def _events(db):
    with read_connection(db, budget_s=10) as con:
        return dict(con.execute("SELECT kind, count(*) FROM ingest_events GROUP BY kind").fetchall()), \
            con.execute("SELECT sum(gaps_found), sum(gaps_filled), sum(gaps_unrecoverable) FROM ingest_status").fetchone()


def test_everything_at_once(tmp_path):
    """Random clean and TCP-reset drops, 1 % of trades never sent on the stream, malformed frames, duplicates,
    swapped frames, and 429s on REST, all together for ~25 s."""
    ex = _exchange(skip_fraction=0.01, malformed_fraction=0.01, duplicate_fraction=0.02, reorder_fraction=0.02,
                   rest_429_fraction=0.2).start()
    db = tmp_path / "t.duckdb"
    proc = start_ingestor(ex, db, SYMBOLS)
    rng = random.Random(3)
    try:
        assert wait_for(lambda: _fewest(db) > 10, 90)  # start-up on a loaded host
        for _ in range(5):
            _grows(db, by=rng.randint(40, 120))  # reconnected and streaming again before each drop
            ex.drop_connections(how=rng.choice(["close", "reset"]))
        _grows(db, by=60)
        _settle(db, ex)
    finally:
        assert stop_ingestor(proc) == 0
        st = ex.stats()
        ex.stop()
    _assert_lossless(db, ex)
    kinds, (found, filled, unrec) = _events(db)
    assert st.skipped > 0 and st.malformed_sent > 0 and st.duplicates_sent > 0
    assert found >= 1 and filled >= 1 and unrec == 0, (found, filled, unrec)
    assert kinds.get("reconnect", 0) >= 5 and kinds.get("malformed", 0) >= 1, kinds


@pytest.mark.parametrize("watchdog", ["30s", "4s"])
def test_stall_without_close(tmp_path, watchdog):
    """A 15 s stall with the socket left open: with the default watchdog the stream resumes and the hole is
    backfilled; with a short one the watchdog reconnects first. Either way nothing is lost."""
    ex = _exchange().start()
    db = tmp_path / "t.duckdb"
    proc = start_ingestor(ex, db, SYMBOLS, "--watchdog", watchdog)
    try:
        assert wait_for(lambda: _fewest(db) > 10, 90)  # start-up on a loaded host
        stall_end_us = (time.time() + 15) * 1e6
        ex.stall(15)
        # trades made after the stall ended are stored: the stream is back (or the watchdog reconnected) and the
        # hole left by the stall is behind us
        assert wait_for(lambda: _newest_stored_us(db) > stall_end_us + 1e6, 90)
        _settle(db, ex)
    finally:
        assert stop_ingestor(proc) == 0
        ex.stop()
    _assert_lossless(db, ex)
    kinds, _ = _events(db)
    if watchdog == "4s":
        assert kinds.get("reconnect", 0) >= 1
        assert "watchdog" in db.with_suffix(".log").read_text()


def test_kill_9_then_restart_recovers_everything(tmp_path):
    ex = _exchange(rate=60.0).start()
    db = tmp_path / "t.duckdb"
    proc = start_ingestor(ex, db, SYMBOLS)
    try:
        assert wait_for(lambda: _count(db) > 150, 90)
        first = {s: int(stored(db, "spot", s)["trade_id"].min()) for s in SYMBOLS}
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        down = {s: ex.last_trade_id(s) for s in SYMBOLS}
        # the exchange keeps trading while we are down: a few hundred trades for the restart to backfill
        assert wait_for(lambda: all(ex.last_trade_id(s) >= down[s] + 200 for s in SYMBOLS), 60)
        proc = start_ingestor(ex, db, SYMBOLS)
        _grows(db, by=50)
        _settle(db, ex)
    finally:
        assert stop_ingestor(proc) == 0
        ex.stop()
    _assert_lossless(db, ex, from_id=first)
    kinds, (found, filled, _) = _events(db)
    assert kinds.get("started") == 2 and filled >= 1


def test_server_shutdown_and_forced_rotation(tmp_path):
    """serverShutdown and the 24 h limit (shrunk to seconds here) are handled by opening a new connection first."""
    ex = _exchange(max_connection_seconds=8).start()
    db = tmp_path / "t.duckdb"
    proc = start_ingestor(ex, db, SYMBOLS, "--rotate-after", "5s")
    try:
        assert wait_for(lambda: _fewest(db) > 10, 90)  # start-up on a loaded host
        assert wait_for(lambda: _events_of(db, "rotated") >= 1, 60)  # the --rotate-after one
        ex.send_server_shutdown("spot", close_after=3.0)
        assert wait_for(lambda: _events_of(db, "server_shutdown") >= 1 and _events_of(db, "rotated") >= 2, 60)
        _grows(db)
        _settle(db, ex)
    finally:
        assert stop_ingestor(proc) == 0
        ex.stop()
    _assert_lossless(db, ex)
    kinds, _ = _events(db)
    assert kinds.get("rotated", 0) >= 2 and kinds.get("server_shutdown", 0) >= 1, kinds


def test_downtime_beyond_max_backfill_is_recorded_unrecoverable(tmp_path):
    ex = _exchange().start()
    db = tmp_path / "t.duckdb"
    proc = start_ingestor(ex, db, SYMBOLS, "--max-backfill", "4s")
    try:
        assert wait_for(lambda: _fewest(db) > 10, 90)  # start-up on a loaded host
        assert stop_ingestor(proc) == 0
        newest = _newest_stored_us(db)
        # down for well over --max-backfill, measured in the exchange's own trade times
        assert wait_for(lambda: min(_exchange_newest_us(ex, s) for s in SYMBOLS) > newest + 9e6, 60)
        proc = start_ingestor(ex, db, SYMBOLS, "--max-backfill", "4s")
        assert wait_for(lambda: db.with_suffix(".log").read_text().count("unrecoverable") >= len(SYMBOLS), 60)
        _settle(db, ex, lossless=False)
    finally:
        assert stop_ingestor(proc) == 0
        ex.stop()
    kinds, (found, filled, unrec) = _events(db)
    assert unrec >= len(SYMBOLS) and kinds.get("gap_unrecoverable", 0) >= len(SYMBOLS)
    for s in SYMBOLS:
        c = compare(db, ex, "spot", s)
        assert c.duplicates == 0 and c.mismatched == 0 and c.missing > 0  # the hole is there, and recorded
