"""Fault-injection suite: the ingestor against a misbehaving local exchange, compared with its ground truth.

Every test ends with the same check for every symbol: missing = 0, duplicates = 0, and every price, quantity,
time and side equal to what the exchange published.
"""
from __future__ import annotations

import random
import signal
import time

import pytest

from exchange.server import LocalExchange
from tickstore.connection import read_connection
from tests.feedcheck import compare, start_ingestor, stop_ingestor, stored, wait_for

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def _exchange(**kw):
    return LocalExchange(symbols=SYMBOLS, seed=kw.pop("seed", 5), rate=kw.pop("rate", 40.0), history_seconds=120, **kw)


def _settle(db, ex, market="spot", timeout=60):
    ex.faults.clear()
    ex.pause()
    last = {s: ex.last_trade_id(s, market) for s in SYMBOLS}
    ok = wait_for(lambda: all(len(d := stored(db, market, s)) and d["trade_id"].max() >= last[s] for s in SYMBOLS), timeout)
    assert ok, "ingestor did not catch up"
    time.sleep(1.5)  # let backfills in flight land


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
        assert wait_for(lambda: db.exists() and len(stored(db, "spot", "BTCUSDT")) > 20, 30)
        for _ in range(5):
            time.sleep(rng.uniform(2, 5))
            ex.drop_connections(how=rng.choice(["close", "reset"]))
        time.sleep(3)
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
        assert wait_for(lambda: db.exists() and len(stored(db, "spot", "BTCUSDT")) > 20, 30)
        ex.stall(15)
        time.sleep(17)
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
        assert wait_for(lambda: db.exists() and len(stored(db, "spot", "BTCUSDT")) > 50, 30)
        time.sleep(3)
        first = {s: int(stored(db, "spot", s)["trade_id"].min()) for s in SYMBOLS}
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        time.sleep(5)  # the exchange keeps trading while we are down
        proc = start_ingestor(ex, db, SYMBOLS)
        time.sleep(4)
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
        assert wait_for(lambda: db.exists() and len(stored(db, "spot", "BTCUSDT")) > 20, 30)
        time.sleep(7)
        ex.send_server_shutdown("spot", close_after=3.0)
        time.sleep(6)
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
        assert wait_for(lambda: db.exists() and len(stored(db, "spot", "BTCUSDT")) > 20, 30)
        assert stop_ingestor(proc) == 0
        time.sleep(9)
        proc = start_ingestor(ex, db, SYMBOLS, "--max-backfill", "4s")
        assert wait_for(lambda: db.with_suffix(".log").read_text().count("unrecoverable") >= len(SYMBOLS), 60)
        _settle(db, ex)
    finally:
        assert stop_ingestor(proc) == 0
        ex.stop()
    kinds, (found, filled, unrec) = _events(db)
    assert unrec >= len(SYMBOLS) and kinds.get("gap_unrecoverable", 0) >= len(SYMBOLS)
    for s in SYMBOLS:
        c = compare(db, ex, "spot", s)
        assert c.duplicates == 0 and c.mismatched == 0 and c.missing > 0  # the hole is there, and recorded
