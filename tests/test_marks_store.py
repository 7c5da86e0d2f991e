"""mark_prices / funding_rates: the writer's sibling buffer, dedup by key, rejection, and the read queries."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys

import duckdb
import numpy as np
import pandas as pd
import pytest

from tickstore import queries
from tickstore.connection import init_db, write_connection
from tickstore.marks import last_funding_times
from tickstore.state import clear_simulated
from tickstore.writer import TickBuffer, TickWriter
from tests.test_tickstore import HOLDER

T0 = dt.datetime(2026, 3, 2, 7, 59, 0, tzinfo=dt.UTC)
T0_US = int(T0.timestamp() * 1e6)
H8_US = 8 * 3600 * 1_000_000


def mark_rows(symbol="BTCUSDT", n=300, seed=3, step_us=1_000_000, jitter=True):
    """One update per second (event times with a few ms of jitter), mark = index * (1 + basis)."""
    rng = np.random.default_rng(seed)
    index = 90_000 * np.exp(np.cumsum(rng.normal(0, 2e-4, n)))
    basis = 2e-4 + rng.normal(0, 5e-5, n)
    rows = []
    for k in range(n):
        ts = T0_US + k * step_us + (int(rng.integers(0, 5000)) if jitter else 0)
        nxt = (ts // H8_US + 1) * H8_US
        rows.append(("usdm", symbol, ts, float(index[k] * (1 + basis[k])), float(index[k]), float(basis[k] + 1e-4),
                     nxt))
    return rows


def funding_rows(symbol="BTCUSDT", n=9, mark=True):
    first = (T0_US // H8_US - n + 1) * H8_US
    return [("usdm", symbol, first + k * H8_US, 1e-4 * (k - 3), 90_000.0 + k if mark else None) for k in range(n)]


def write(path, marks=(), funding=(), ticks=()):
    w = TickWriter(path, TickBuffer(), flush_ms=50)
    w.buffer.extend(list(ticks))
    w.marks.add_marks(list(marks))
    w.marks.add_funding(list(funding))
    w.flush_once()
    assert w.unflushed_marks == 0
    return w


def test_marks_and_funding_stored_once_in_the_tick_flush(tmp_path):
    db = tmp_path / "t.duckdb"
    init_db(db)
    marks, funding = mark_rows(), funding_rows()
    tick = ("usdm", "BTCUSDT", 1, T0_US, 90_000.0, 0.01, False, None, "ws")
    w = write(db, marks, funding, [tick])
    assert (w.stats.marks_inserted, w.stats.funding_inserted, w.stats.rows_inserted) == (300, 9, 1)
    assert w.stats.flushes == 1
    # the same rows again (a reconnect's overlap, overlapping REST pages), plus duplicates inside one batch
    w2 = write(db, marks[:50] + marks[:50], funding + funding)
    assert (w2.stats.marks_inserted, w2.stats.funding_inserted) == (0, 0)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT ts) FROM mark_prices").fetchone() == (300, 300)
        assert con.execute("SELECT count(*) FROM funding_rates").fetchone()[0] == 9
        assert last_funding_times(con, "usdm") == {"BTCUSDT": funding[-1][2]}


def test_implausible_rows_are_set_aside_and_never_block_the_others(tmp_path):
    db = tmp_path / "t.duckdb"
    init_db(db)
    good = mark_rows(n=5)
    now_us = int(dt.datetime.now(dt.UTC).timestamp() * 1e6)
    bad_marks = [
        ("usdm", "BTCUSDT", 9 * 10**17, 1.0, 1.0, 0.0, None),            # event time in the year 30000
        ("usdm", "BTCUSDT", now_us + 2 * 86400 * 10**6, 1.0, 1.0, 0.0, None),  # two days ahead
        ("usdm", "BTCUSDT", T0_US + 7, -5.0, 1.0, 0.0, None),             # negative mark
        ("usdm", "BTCUSDT", T0_US + 8, float("inf"), 1.0, 0.0, None),     # infinite mark
        ("usdm", "BTCUSDT", T0_US + 9, 1.0, 1.0, 0.5, None),              # 50 % funding per period
        ("usdm", "BTCUSDT", T0_US + 10, 1.0, 1.0, 0.0, -1),              # next funding before 2009
        ("usdm", "BTCUSDT", "noon", 1.0, 1.0, 0.0, None),                 # time of the wrong type
        ("usdm", "BTCUSDT", T0_US + 11, 1.0),                             # too short
    ]
    bad_funding = [("usdm", "BTCUSDT", T0_US, float("nan"), None), ("usdm", "BTCUSDT", -5, 1e-4, None),
                   ("usdm", "BTCUSDT", T0_US, 1e-4, 0.0)]
    w = write(db, good + bad_marks, funding_rows(n=2) + bad_funding)
    assert w.stats.marks_rejected == len(bad_marks) + len(bad_funding)
    assert (w.stats.marks_inserted, w.stats.funding_inserted) == (5, 2)


def test_rows_stay_pending_while_the_file_is_locked(tmp_path):
    db = tmp_path / "t.duckdb"
    init_db(db)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    w = TickWriter(db, TickBuffer(), flush_ms=50, lock_budget_s=0.05)
    try:
        assert holder.stdout.readline().strip() == "locked"
        w.marks.add_marks(mark_rows(n=10))
        w.marks.add_funding(funding_rows(n=3))
        assert w.flush_once() == 0 and w.stats.failures == 1 and w.unflushed_marks == 13
    finally:
        holder.communicate("\n", timeout=30)
    w.flush_once()
    assert w.unflushed_marks == 0 and (w.stats.marks_inserted, w.stats.funding_inserted) == (10, 3)


def test_mark_prices_query_raw_and_resampled_against_pandas(tmp_path):
    db = tmp_path / "t.duckdb"
    init_db(db)
    marks = mark_rows(n=600) + mark_rows("ETHUSDT", n=30, seed=4)
    marks[17] = marks[17][:4] + (None, None, marks[17][6])  # an update without index price / funding rate
    write(db, marks)
    ref = pd.DataFrame([r[2:] for r in marks if r[1] == "BTCUSDT"],
                       columns=["ts", "mark_price", "index_price", "funding_rate", "next_funding_time"])
    ref["ts"] = pd.to_datetime(ref["ts"], unit="us", utc=True)
    ref["next_funding_time"] = pd.to_datetime(ref["next_funding_time"], unit="us", utc=True)
    ref = ref.set_index("ts")

    raw = queries.mark_prices("usdm", "btcusdt", T0, path=db)
    assert list(raw.columns) == queries.MARK_FIELDS and str(raw.index.tz) == "UTC" and raw.index.name == "ts"
    pd.testing.assert_frame_equal(raw, ref, check_freq=False, check_index_type=False, check_dtype=False)
    assert np.isnan(raw["index_price"].iloc[17])

    # window [start, end)
    part = queries.mark_prices("usdm", "BTCUSDT", ref.index[10], ref.index[20], path=db)
    assert part.index[0] == ref.index[10] and part.index[-1] == ref.index[19]

    for tf, rule in (("1m", "1min"), ("5m", "5min")):
        bars = queries.mark_prices("usdm", "BTCUSDT", T0, timeframe=tf, path=db)
        exp = ref.resample(rule).last().dropna(how="all")   # last non-null value per bar, like the SQL
        assert len(bars) == len(exp) > 1
        np.testing.assert_array_equal(bars.index.as_unit("us").asi8, exp.index.as_unit("us").asi8)
        for c in ("mark_price", "index_price", "funding_rate"):
            np.testing.assert_allclose(bars[c].to_numpy(), exp[c].to_numpy(), rtol=0, atol=0)
        assert (bars["next_funding_time"] == exp["next_funding_time"]).all()


def test_funding_rates_query(tmp_path):
    db = tmp_path / "t.duckdb"
    init_db(db)
    rows = funding_rows(n=9)
    rows[4] = rows[4][:4] + (None,)
    write(db, funding=rows + funding_rows("ETHUSDT", n=2))
    fr = queries.funding_rates("usdm", "BTCUSDT", None, path=db)
    assert fr.index.name == "funding_time" and list(fr.columns) == ["funding_rate", "mark_price"]
    assert len(fr) == 9 and fr.index.is_monotonic_increasing
    assert (fr.index.as_unit("us").asi8 == [r[2] for r in rows]).all()
    np.testing.assert_allclose(fr["funding_rate"], [r[3] for r in rows])
    assert np.isnan(fr["mark_price"].iloc[4])
    start = pd.Timestamp(rows[3][2], unit="us", tz="UTC")
    assert len(queries.funding_rates("usdm", "BTCUSDT", start, start + pd.Timedelta(hours=8), path=db)) == 1


def test_empty_and_pre_existing_files_read_as_empty_frames(tmp_path):
    db = tmp_path / "t.duckdb"
    init_db(db)
    assert queries.mark_prices("usdm", "BTCUSDT", T0, path=db).empty
    old = tmp_path / "old.duckdb"   # a file from before the tables existed
    with duckdb.connect(str(old)) as con:
        con.execute("CREATE TABLE ticks(market VARCHAR, symbol VARCHAR, trade_id BIGINT, ts TIMESTAMPTZ, price DOUBLE,"
                    " qty DOUBLE, is_buyer_maker BOOLEAN, recv_ts TIMESTAMPTZ, source VARCHAR)")
    m = queries.mark_prices("usdm", "BTCUSDT", T0, timeframe="1m", path=old)
    f = queries.funding_rates("usdm", "BTCUSDT", T0, path=old)
    assert m.empty and list(m.columns) == queries.MARK_FIELDS and str(m.index.tz) == "UTC"
    assert f.empty and list(f.columns) == queries.FUNDING_FIELDS


def test_demo_restart_clears_marks_and_funding(tmp_path):
    db = tmp_path / "t.duckdb"
    init_db(db)
    write(db, mark_rows(n=3), funding_rows(n=2))
    with write_connection(db) as con:
        clear_simulated(con)
        assert con.execute("SELECT (SELECT count(*) FROM mark_prices) + (SELECT count(*) FROM funding_rates)"
                           ).fetchone()[0] == 0


def test_schema_is_idempotent_and_keyed(tmp_path):
    """funding_rates has its primary key; mark_prices is kept unique by the writer (no index, like ticks)."""
    db = tmp_path / "t.duckdb"
    init_db(db)
    init_db(db)
    with duckdb.connect(str(db), read_only=True) as con:
        keys = dict(con.execute("SELECT table_name, constraint_column_names FROM duckdb_constraints() "
                                "WHERE constraint_type = 'PRIMARY KEY' AND table_name IN ('mark_prices', 'funding_rates')"
                                ).fetchall())
    assert {t: list(c) for t, c in keys.items()} == {"funding_rates": ["market", "symbol", "funding_time"]}


def test_mark_rows_stay_unique_in_a_file_made_with_a_key(tmp_path):
    """A file created while mark_prices had a primary key takes the same inserts (the anti-join avoids conflicts)."""
    db = tmp_path / "t.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("""CREATE TABLE mark_prices(market VARCHAR NOT NULL, symbol VARCHAR NOT NULL, ts TIMESTAMPTZ NOT NULL,
                       mark_price DOUBLE NOT NULL, index_price DOUBLE, funding_rate DOUBLE,
                       next_funding_time TIMESTAMPTZ, PRIMARY KEY (market, symbol, ts))""")
    init_db(db)
    rows = mark_rows(n=20)
    assert write(db, rows).stats.marks_inserted == 20
    assert write(db, rows[5:] + rows[:3]).stats.marks_inserted == 0
