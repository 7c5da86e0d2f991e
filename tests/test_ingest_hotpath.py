"""The ingest hot path's batching: TickBuffer mixing row tuples and Arrow tables, and the status hook's
one-statement writes (same rows as one INSERT per row)."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys

import duckdb

from feed.state import IngestState
from tickstore.connection import init_db, read_connection
from tickstore.writer import TickBuffer, TickWriter, rows_to_arrow

T0 = 1_764_000_000_000_000


def rows(symbol, ids, source="ws"):
    return [("spot", symbol, i, T0 + i * 1000, 100.0 + i, 0.5, bool(i % 2), T0 + i * 1000 + 7 if i % 3 else None, source)
            for i in ids]


def test_buffer_keeps_arrival_order_across_rows_and_tables():
    buf = TickBuffer()
    buf.extend(rows("BTCUSDT", range(0, 3)))
    buf.append(rows("BTCUSDT", [3])[0])
    buf.extend_table(rows_to_arrow(rows("ETHUSDT", range(10, 15))))
    buf.extend([])
    buf.extend_table(rows_to_arrow([]))
    buf.extend(rows("BTCUSDT", range(4, 6), source="rest"))
    assert len(buf) == 11
    tables = buf.drain()
    assert len(buf) == 0 and buf.drain() == []
    got = [tuple(r.values()) for t in tables for r in t.to_pylist()]
    assert [(r[1], r[2], r[8]) for r in got] == [("BTCUSDT", i, "ws") for i in range(4)] + \
        [("ETHUSDT", i, "ws") for i in range(10, 15)] + [("BTCUSDT", i, "rest") for i in (4, 5)]
    assert got[1][7] is not None and got[0][7] is None  # recv_ts None stays NULL


HOLDER = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=True); print('locked', flush=True); " \
         "time.sleep(float(sys.argv[2])); c.close()"


def test_tables_wait_out_a_lock_and_are_stored_once(tmp_path):
    db = init_db(tmp_path / "t.duckdb")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db), "1.5"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    buf = TickBuffer()
    w = TickWriter(db, buf, flush_ms=50, lock_budget_s=0.2)
    for k in range(6):
        buf.extend_table(rows_to_arrow(rows("BTCUSDT", range(k * 100, k * 100 + 150))))  # overlapping ids
        buf.extend(rows("ETHUSDT", range(k * 10, k * 10 + 10)))
        w.flush_once()
    holder.wait(10)
    w.stop()
    assert w.stats.failures >= 1 and w.stats.max_pending >= 6 * 160 - 160
    with read_connection(db) as con:
        assert con.execute("SELECT symbol, count(*), count(DISTINCT trade_id), min(trade_id), max(trade_id) FROM ticks "
                           "GROUP BY symbol ORDER BY symbol").fetchall() == [("BTCUSDT", 650, 650, 0, 649),
                                                                             ("ETHUSDT", 60, 60, 0, 59)]


def test_status_hook_writes_the_same_rows_as_one_insert_per_row(tmp_path):
    db = init_db(tmp_path / "s.duckdb")
    state = IngestState()
    for i, sym in enumerate(["BTCUSDT", "ETHUSDT", "SOLUSDT"]):
        st = state.stats("spot", sym)
        st.last_trade_id, st.last_trade_us, st.ticks_total, st.gaps_found, st.duplicates = 100 + i, T0 + i, 7 * i, i, 2
        st.last_recv_us = None if i == 2 else T0 + 5
    state.set_link("spot", "spot#1", ["BTCUSDT", "ETHUSDT", "SOLUSDT"], True)
    state.event("connected", "spot", detail="ws://x")
    state.event("gap_found", "spot", "BTCUSDT", 5, 9, 5, "id jump on stream")
    state.event("stopped")
    con = duckdb.connect(str(db))
    con.execute("SET TimeZone = 'UTC'")
    state.write_status(con, rows_to_arrow([]), 0)
    state.write_status(con, rows_to_arrow([]), 0)  # upsert: still one row per symbol
    status = con.execute("SELECT market, symbol, connected, last_trade_id, epoch_us(last_trade_ts), "
                         "epoch_us(last_recv_ts), ticks_total, reconnects, gaps_found, duplicates FROM ingest_status "
                         "ORDER BY symbol").fetchall()
    events = con.execute("SELECT kind, market, symbol, first_id, last_id, count, detail, ts FROM ingest_events "
                         "ORDER BY id").fetchall()
    con.close()
    assert status == [("spot", "BTCUSDT", True, 100, T0, T0 + 5, 0, 0, 0, 2),
                      ("spot", "ETHUSDT", True, 101, T0 + 1, T0 + 5, 7, 0, 1, 2),
                      ("spot", "SOLUSDT", True, 102, T0 + 2, None, 14, 0, 2, 2)]
    assert [e[:7] for e in events] == [("connected", "spot", None, None, None, None, "ws://x"),
                                      ("gap_found", "spot", "BTCUSDT", 5, 9, 5, "id jump on stream"),
                                      ("stopped", None, None, None, None, None, None)]
    assert all(abs((e[7] - dt.datetime.now(dt.UTC)).total_seconds()) < 60 for e in events)
