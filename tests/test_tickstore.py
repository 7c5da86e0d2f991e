"""tickstore: dedupe on insert, SQL bars, lock retries, and two processes sharing one file."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from tickstore import queries
from tickstore.connection import StoreError, StoreMissing, init_db, read_connection, write_connection
from tickstore.state import id_gaps, last_trade_ids
from tickstore.writer import TickBuffer, TickWriter

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_764_000_000_000_000  # µs, 2025-11-24T16:00:00Z


def rows(symbol, ids, market="spot", price=lambda i: 100.0 + i % 7, t0=T0, step_us=137_000):
    return [(market, symbol, i, t0 + i * step_us, float(price(i)), 0.5 + (i % 3), bool(i % 2), None, "ws") for i in ids]


def test_each_id_stored_once_across_overlapping_batches(tmp_path):
    db = init_db(tmp_path / "t.duckdb")
    buf = TickBuffer()
    w = TickWriter(db, buf)
    buf.extend(rows("BTCUSDT", range(0, 600)))
    assert w.flush_once() == 600
    buf.extend(rows("BTCUSDT", range(550, 900)) + rows("BTCUSDT", range(880, 905)) + rows("ETHUSDT", range(0, 600)))
    assert w.flush_once() == 305 + 600
    with read_connection(db) as con:
        n, distinct = con.execute("SELECT count(*), count(DISTINCT (market, symbol, trade_id)) FROM ticks").fetchone()
        assert n == distinct == 1505
        assert last_trade_ids(con, "spot") == {"BTCUSDT": 904, "ETHUSDT": 599}


def test_id_gaps_found(tmp_path):
    db = init_db(tmp_path / "t.duckdb")
    buf = TickBuffer()
    buf.extend(rows("BTCUSDT", [*range(0, 10), *range(15, 20), 25]))
    TickWriter(db, buf).flush_once()
    with write_connection(db) as con:
        assert id_gaps(con, "spot", "BTCUSDT", dt.datetime(2020, 1, 1, tzinfo=dt.UTC)) == [(10, 14), (20, 24)]


@pytest.mark.parametrize("tf", ["1s", "1m", "5m", "15m", "1h"])
def test_sql_bars_match_pandas_reference(tmp_path, tf):
    db = init_db(tmp_path / "t.duckdb")
    rng = np.random.default_rng(3)
    n = 20_000
    price = 100 + np.cumsum(rng.normal(0, 0.05, n))
    ts = T0 + np.sort(rng.integers(0, 3 * 3600 * 10**6, n))
    data = [("spot", "BTCUSDT", i, int(ts[i]), float(price[i]), float(rng.uniform(0.01, 2)), False, None, "ws")
            for i in range(n)]
    buf = TickBuffer()
    buf.extend(data)
    TickWriter(db, buf).flush_once()
    got = queries.bars("spot", ["btcusdt"], tf, dt.datetime(2020, 1, 1), path=db).set_index("ts")
    df = pd.DataFrame({"ts": pd.to_datetime(ts, unit="us", utc=True), "price": price, "qty": [r[5] for r in data]})
    g = df.groupby(df["ts"].dt.floor(pd.Timedelta(queries.tf_seconds(tf), "s")))
    ref = pd.DataFrame({"open": g["price"].first(), "high": g["price"].max(), "low": g["price"].min(),
                        "close": g["price"].last(), "volume": g["qty"].sum(), "trades": g.size()})
    ref["vwap"] = (df["price"] * df["qty"]).groupby(df["ts"].dt.floor(pd.Timedelta(queries.tf_seconds(tf), "s"))).sum() / ref["volume"]
    ref.index.name = "ts"
    pd.testing.assert_frame_equal(got[ref.columns], ref, check_dtype=False, check_freq=False, rtol=1e-9)


def test_missing_file_and_unwritable_dir_are_clear(tmp_path):
    with pytest.raises(StoreMissing, match="does not exist"):
        queries.symbols(tmp_path / "nope.duckdb")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.geteuid() != 0:  # root ignores directory permissions
        with pytest.raises(StoreError, match="not writable"):
            init_db(ro / "x.duckdb")
    with pytest.raises(StoreError):
        init_db("/proc/nope/x.duckdb")


HOLDER = textwrap.dedent("""
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    con.close()
""")


def test_writer_waits_for_lock_and_loses_nothing(tmp_path):
    db = init_db(tmp_path / "t.duckdb")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db), "2.0"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    buf = TickBuffer()
    w = TickWriter(db, buf, flush_ms=50, lock_budget_s=0.3).start()
    for k in range(30):
        buf.extend(rows("BTCUSDT", range(k * 100, k * 100 + 100)))
        time.sleep(0.1)
    holder.wait(10)
    w.stop()
    assert w.stats.failures >= 1, "the holder should have made at least one flush wait"
    with read_connection(db) as con:
        assert con.execute("SELECT count(*), count(DISTINCT trade_id) FROM ticks").fetchone() == (3000, 3000)


WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[3])
    from tickstore.writer import TickBuffer, TickWriter
    db, seconds = sys.argv[1], float(sys.argv[2])
    buf = TickBuffer(); w = TickWriter(db, buf, flush_ms=250).start()
    t0 = time.time(); i = 0
    while time.time() - t0 < seconds:
        now = time.time_ns() // 1000
        buf.extend([("spot", "BTCUSDT", i + k, now + k, 100.0, 1.0, False, now, "ws") for k in range(200)])
        i += 200
        time.sleep(0.02)
    w.stop()
    print(i, w.stats.failures, w.lock_retries, flush=True)
""")

READER = textwrap.dedent("""
    import sys, time, datetime as dt
    sys.path.insert(0, sys.argv[3])
    from tickstore import queries
    from tickstore.connection import LockStats
    db, seconds = sys.argv[1], float(sys.argv[2])
    t0 = time.time(); n = errors = 0
    while time.time() - t0 < seconds:
        try:
            queries.bars("spot", ["BTCUSDT"], "1s", dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5), path=db)
            queries.latest(path=db)
            n += 1
        except Exception as exc:
            errors += 1
            print("ERR", repr(exc), file=sys.stderr)
        time.sleep(0.01)
    print(n, errors, LockStats.retries, flush=True)
""")


def test_reader_and_writer_processes_share_the_file(tmp_path):
    """A writer process and a reader process on one file for a minute: no lost rows, no error reaching the reader."""
    seconds = float(os.environ.get("TICKDESK_SHARE_SECONDS", "60"))
    db = init_db(tmp_path / "t.duckdb")
    w = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(seconds), str(ROOT)], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    r = subprocess.Popen([sys.executable, "-c", READER, str(db), str(seconds - 1), str(ROOT)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    r_out, r_err = r.communicate(timeout=seconds + 60)
    w_out, _ = w.communicate(timeout=seconds + 60)
    written, w_fail, w_retries = map(int, w_out.split())
    reads, read_errors, r_retries = map(int, r_out.split())
    assert read_errors == 0, r_err
    assert reads > 10
    with read_connection(db) as con:
        assert con.execute("SELECT count(*), count(DISTINCT trade_id) FROM ticks").fetchone() == (written, written)
    print(f"\nshared {seconds:.0f}s: {written} rows written, {reads} read batches, "
          f"writer lock retries {w_retries}, reader lock retries {r_retries}")


def test_last_stored_spans_hot_and_archive(tmp_path):
    from tickstore.state import last_stored

    db = init_db(tmp_path / "t.duckdb")
    buf = TickBuffer()
    buf.extend(rows("BTCUSDT", range(0, 10)))
    TickWriter(db, buf).flush_once()
    with write_connection(db) as con:
        assert last_stored(con, "spot") == {"BTCUSDT": (9, T0 + 9 * 137_000)}
        con.execute("""INSERT INTO archive_files VALUES ('x.parquet', 'spot', 'ETHUSDT', DATE '2025-11-24', 5, 1, 1, 50,
                       make_timestamptz(1764000000000000::BIGINT), make_timestamptz(1764000001000000::BIGINT), now())""")
        assert last_stored(con, "spot")["ETHUSDT"] == (50, 1764000001000000)
