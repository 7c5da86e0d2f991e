"""Hostile input on the live path: prints that cannot be real trades never reach the file and never stop the writer;
only subscribed symbols are stored; SIGTERM never exits 0 with ticks lost."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import orjson
import pytest

from exchange.faults import HOSTILE_KINDS
from exchange.server import LocalExchange
from feed.binance import MalformedFrame, parse_frame, parse_rest_trades
from tests.feedcheck import ROOT, compare, start_ingestor, stored, wait_for
from tickstore.connection import init_db, read_connection
from tickstore.writer import TickBuffer, TickWriter

NOW_MS = time.time_ns() // 1_000_000
T0_US = (NOW_MS - 3_600_000) * 1000


def frame(**over) -> bytes:
    d = {"e": "trade", "E": NOW_MS, "s": "BTCUSDT", "t": 12345, "p": "60000.10", "q": "0.5", "T": NOW_MS, "m": True}
    d.update(over)
    return orjson.dumps({"stream": "btcusdt@trade", "data": d})


@pytest.mark.parametrize("over", [
    {"T": 9 * 10**17},                      # year ~30,000 (the reported frame)
    {"T": -1},                              # before the epoch
    {"T": 1_000_000_000_000},               # 2001: before any crypto exchange
    {"T": NOW_MS + 2 * 86_400_000},         # two days ahead of now
    {"t": 9 * 10**18},                      # an id no exchange will reach
    {"t": -5},
    {"t": 2**63},                           # does not even fit BIGINT
    {"q": "inf"},
], ids=["year30000", "negative", "2001", "days_ahead", "huge_id", "negative_id", "id_2e64", "inf_qty"])
def test_parser_rejects_prints_that_cannot_be_trades(over):
    with pytest.raises(MalformedFrame):
        parse_frame(frame(**over), "spot", NOW_MS * 1000)


def test_parser_keeps_real_prints_in_ms_and_us():
    t = parse_frame(frame(), "spot", NOW_MS * 1000)
    assert t.ts_us == NOW_MS * 1000 and t.trade_id == 12345
    t = parse_frame(frame(T=NOW_MS * 1000 + 7), "spot", NOW_MS * 1000)
    assert t.ts_us == NOW_MS * 1000 + 7


def test_rest_rows_that_cannot_be_trades_are_left_out_not_the_page():
    good = {"id": 10, "price": "1.5", "qty": "2", "time": NOW_MS - 1000, "isBuyerMaker": False}
    rows = [good, {**good, "id": 11, "time": 9 * 10**17}, {**good, "id": 12, "time": -1},
            {**good, "id": 9 * 10**18}, {**good, "id": 13}]
    assert [t.trade_id for t in parse_rest_trades(rows, "spot", "BTCUSDT")] == [10, 13]


def rows(ids, t0=T0_US, symbol="BTCUSDT"):
    return [("spot", symbol, i, t0 + i * 1000, 100.0 + i % 5, 1.0, bool(i % 2), None, "ws") for i in ids]


def _count(db):
    with read_connection(db, budget_s=10) as con:
        return con.execute("SELECT count(*), count(DISTINCT trade_id), min(ts) >= '2009-01-01', "
                           "max(ts) < now() + INTERVAL 1 HOUR FROM ticks").fetchone()


def test_writer_sets_aside_rows_that_cannot_be_trades_and_keeps_writing(tmp_path):
    """The reported crash: one row in year ~30,000 killed the writer thread for good, a negative time dropped its
    whole chunk, an id beyond int64 lost the drained rows. Now each is set aside and every other tick is stored."""
    db = init_db(tmp_path / "t.duckdb")
    buf = TickBuffer()
    w = TickWriter(db, buf, flush_ms=20).start()
    try:
        buf.extend(rows(range(0, 100)))
        buf.append(("spot", "BTCUSDT", 100, 9 * 10**17, 1.0, 1.0, False, None, "ws"))     # year ~30,000
        buf.extend(rows(range(101, 200)))
        buf.append(("spot", "BTCUSDT", 200, -1000, 1.0, 1.0, False, None, "ws"))         # negative time
        buf.append(("spot", "BTCUSDT", 2**64, T0_US, 1.0, 1.0, False, None, "ws"))       # beyond BIGINT
        buf.append(("spot", "BTCUSDT", 201, T0_US, float("nan"), 1.0, False, None, "ws"))  # not a price
        buf.extend(rows(range(300, 400)))
        assert wait_for(lambda: _count(db)[0] == 299, 60), _count(db)
        buf.extend(rows(range(400, 500)))  # still writing afterwards
        assert wait_for(lambda: _count(db)[0] == 399, 60), _count(db)
        assert w.alive
    finally:
        assert w.stop() == 0
    n, distinct, after_2009, before_now = _count(db)
    assert n == distinct == 399 and after_2009 and before_now
    assert w.stats.rejected == 4


def test_writer_thread_survives_an_unexpected_error_without_losing_rows(tmp_path, monkeypatch):
    import tickstore.writer as writer_mod

    db = init_db(tmp_path / "t.duckdb")
    real, calls = writer_mod.insert_batch, []

    def flaky(con, table):
        calls.append(table.num_rows)
        if len(calls) <= 2:
            raise RuntimeError("something nobody planned for")
        return real(con, table)

    monkeypatch.setattr(writer_mod, "insert_batch", flaky)
    buf = TickBuffer()
    w = TickWriter(db, buf, flush_ms=20).start()
    buf.extend(rows(range(0, 50)))
    assert wait_for(lambda: len(calls) >= 3, 60)
    buf.extend(rows(range(50, 80)))
    assert w.stop() == 0
    assert _count(db)[:2] == (80, 80) and w.stats.failures >= 2


HOLDER = textwrap.dedent("""
    import sys, time, duckdb
    while True:  # the ingestor flushes every 100 ms: take the file between two flushes
        try:
            con = duckdb.connect(sys.argv[1])
            break
        except duckdb.IOException:
            time.sleep(0.005)
    print("locked", flush=True)
    sys.stdin.readline()
    con.close()
""")


def test_stop_reports_ticks_it_could_not_write(tmp_path):
    db = init_db(tmp_path / "t.duckdb")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        buf = TickBuffer()
        w = TickWriter(db, buf, flush_ms=20, lock_budget_s=0.2).start()
        buf.extend(rows(range(0, 10)))
        assert w.stop(timeout=1.0) == 10
    finally:
        holder.communicate("\n", timeout=30)


@pytest.mark.slow
def test_ingestor_against_hostile_frames_stores_every_real_trade_and_nothing_else(tmp_path):
    """The local exchange sends, before 4 % of its prints, a print that cannot be real (each kind of
    exchange.faults.HOSTILE_KINDS in turn, copying the real print's id where it keeps one)."""
    symbols = ["BTCUSDT", "ETHUSDT"]
    ex = LocalExchange(symbols=symbols, seed=3, rate=40.0, history_seconds=60, hostile_fraction=0.04).start()
    db = tmp_path / "t.duckdb"
    proc = start_ingestor(ex, db, symbols)
    try:
        assert wait_for(lambda: db.exists() and len(stored(db, "spot", "BTCUSDT")) > 300
                        and ex.stats().hostile_sent >= 4 * len(HOSTILE_KINDS), 90)
        ex.faults.clear()
        ex.pause()
        last = {s: ex.last_trade_id(s) for s in symbols}
        assert wait_for(lambda: all(stored(db, "spot", s)["trade_id"].max() >= last[s] for s in symbols), 60)
        assert wait_for(lambda: all(compare(db, ex, "spot", s).missing == 0 for s in symbols), 60)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        ex.stop()
    log = db.with_suffix(".log").read_text()
    assert code == 0, log[-3000:]
    for s in symbols:
        c = compare(db, ex, "spot", s)
        assert c.ok, c
    with read_connection(db, budget_s=10) as con:
        assert {r[0] for r in con.execute("SELECT DISTINCT symbol FROM ticks").fetchall()} == set(symbols)
        lo, hi = con.execute("SELECT min(ts) >= '2009-01-01', max(ts) < now() + INTERVAL 1 HOUR FROM ticks").fetchone()
        assert lo and hi
        assert con.execute("SELECT min(malformed) FROM ingest_status").fetchone()[0] > 0
    assert "malformed frame(s) skipped" in log and "Traceback" not in log


@pytest.mark.slow
def test_sigterm_with_the_file_unusable_exits_non_zero_saying_ticks_were_lost(tmp_path):
    symbols = ["BTCUSDT"]
    ex = LocalExchange(symbols=symbols, seed=4, rate=40.0).start()
    db = tmp_path / "t.duckdb"
    proc = start_ingestor(ex, db, symbols, "--shutdown-timeout", "2s")
    holder = None
    try:
        assert wait_for(lambda: db.exists() and len(stored(db, "spot", "BTCUSDT")) > 20, 60)
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "locked"
        assert wait_for(lambda: "ticks kept in memory" in db.with_suffix(".log").read_text(), 60)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
        if holder is not None:
            holder.communicate("\n", timeout=30)
        ex.stop()
    log = db.with_suffix(".log").read_text()
    assert code == 3, log[-2000:]
    assert "ticks unwritten" in log


@pytest.mark.slow
def test_file_replaced_while_ingesting_stops_the_ingestor_with_exit_3(tmp_path):
    import os

    symbols = ["BTCUSDT"]
    ex = LocalExchange(symbols=symbols, seed=6, rate=40.0).start()
    db = tmp_path / "t.duckdb"
    other = init_db(tmp_path / "demo.duckdb")
    proc = start_ingestor(ex, db, symbols)
    try:
        assert wait_for(lambda: db.exists() and len(stored(db, "spot", "BTCUSDT")) > 20, 60)
        os.replace(other, db)
        code = proc.wait(60)  # stops by itself
    finally:
        if proc.poll() is None:
            proc.kill()
        ex.stop()
    log = db.with_suffix(".log").read_text()
    assert code == 3 and "replaced by another file" in log, log[-2000:]
    with read_connection(db, budget_s=10) as con:
        assert con.execute("SELECT count(*) FROM ticks").fetchone()[0] == 0


@pytest.mark.slow
def test_second_ingestor_on_the_same_file_and_market_is_refused(tmp_path):
    """Two ingestors on one file and market stored each tick once but fired every alert twice and overwrote each
    other's status rows. The second is refused (exit 2, one line) while the first runs; after a clean stop, and
    after a kill -9, the next one starts."""
    symbols = ["BTCUSDT"]
    ex = LocalExchange(symbols=symbols, seed=8, rate=20.0).start()
    db = tmp_path / "t.duckdb"
    base = [sys.executable, str(ROOT / "ingestor.py"), "--symbols", "btcusdt", "--db", str(db),
            "--ws-url", ex.ws_url, "--rest-url", ex.http_url]
    first = start_ingestor(ex, db, symbols)
    try:
        assert wait_for(lambda: db.exists() and len(stored(db, "spot", "BTCUSDT")) > 20, 60)
        r = subprocess.run(base, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "another ingestor writes spot into this file" in r.stderr, r.stderr[-2000:]
        assert r.stderr.strip().count("\n") == 0, r.stderr
        assert first.poll() is None  # untouched
        other_market = subprocess.Popen([*base, "--market", "usdm"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        assert wait_for(lambda: len(stored(db, "usdm", "BTCUSDT")) > 0, 60)  # another market of the file is fine
        other_market.send_signal(signal.SIGTERM)
        assert other_market.wait(60) == 0
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0
        second = start_ingestor(ex, db, symbols)  # lease released on a clean stop
        assert wait_for(lambda: db.with_suffix(".log").read_text().count("ingesting spot") >= 2, 60)
        second.send_signal(signal.SIGKILL)
        second.wait(30)
        third = start_ingestor(ex, db, symbols)  # a dead holder's lease is taken over
        n = len(stored(db, "spot", "BTCUSDT"))
        assert wait_for(lambda: len(stored(db, "spot", "BTCUSDT")) > n + 20, 60)
        third.send_signal(signal.SIGTERM)
        assert third.wait(60) == 0
    finally:
        for p in (first,):
            if p.poll() is None:
                p.kill()
        ex.stop()


@pytest.mark.slow
def test_buffer_cap_holds_back_trades_while_the_file_is_locked_and_backfills_them(tmp_path):
    """Flushes failing for a long time used to grow the buffer until an out-of-memory kill. With --max-buffer the
    stream stops taking trades at the cap, says so, and the skipped ids are backfilled once writing works."""
    symbols = ["BTCUSDT"]
    ex = LocalExchange(symbols=symbols, seed=9, rate=60.0, history_seconds=30).start()
    db = tmp_path / "t.duckdb"
    proc = start_ingestor(ex, db, symbols, "--max-buffer", "200")
    holder = None
    try:
        assert wait_for(lambda: db.exists() and len(stored(db, "spot", "BTCUSDT")) > 50, 60)
        first = int(stored(db, "spot", "BTCUSDT")["trade_id"].min())
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "locked"
        assert wait_for(lambda: "buffer cap reached" in db.with_suffix(".log").read_text(), 60)
        held = ex.last_trade_id("BTCUSDT")
        assert wait_for(lambda: ex.last_trade_id("BTCUSDT") > held + 300, 60)  # well beyond the cap meanwhile
        holder.communicate("\n", timeout=30)
        holder = None
        ex.pause()
        last = ex.last_trade_id("BTCUSDT")
        assert wait_for(lambda: stored(db, "spot", "BTCUSDT")["trade_id"].max() >= last, 90)
        assert wait_for(lambda: compare(db, ex, "spot", "BTCUSDT", from_id=first).missing == 0, 90)
    finally:
        if holder is not None:
            holder.communicate("\n", timeout=30)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        ex.stop()
    assert code == 0
    c = compare(db, ex, "spot", "BTCUSDT", from_id=first)
    assert c.ok, c
    with read_connection(db, budget_s=10) as con:
        kinds = dict(con.execute("SELECT kind, count(*) FROM ingest_events GROUP BY kind").fetchall())
    assert kinds.get("buffer_full", 0) >= 1 and kinds.get("gap_filled", 0) >= 1, kinds
