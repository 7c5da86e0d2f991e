"""Hostile input on the history path: archive paths cannot escape the archive directory; dump imports refuse rows
that cannot be real trades (out-of-range times and ids, rows from another day than the file's name) and files
that change between their check and their import."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb

from tests.conftest import make_tick_db
from tickstore.archive import archive_ticks
from tickstore.connection import write_connection

END = dt.datetime(2024, 1, 5, 12, 0, tzinfo=dt.UTC)
BAD_SYMBOL = "../../../../elsewhere/x"


def _count(db: Path, sql: str, params=None) -> int:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params or []).fetchone()[0]


def test_archive_never_writes_outside_its_directory(tmp_path):
    """A symbol that is a path (stored by an older ingestor that accepted any symbol) stays in the hot file."""
    data = tmp_path / "data"
    data.mkdir()
    db = data / "ticks.duckdb"
    make_tick_db(db, hours=48, rate_per_s=0.02, end=END, seed=3)
    with write_connection(db) as con:
        con.execute("""INSERT INTO ticks SELECT market, $s, trade_id, ts, price, qty, is_buyer_maker, recv_ts, source
                       FROM ticks WHERE symbol = 'BTCUSDT' AND ts < '2024-01-04' LIMIT 50""", {"s": BAD_SYMBOL})
    res = archive_ticks(db, dt.timedelta(days=1), archive_dir=data / "archive", now=END)
    outside = [p for p in tmp_path.rglob("*.parquet") if not p.is_relative_to(data / "archive")]
    assert outside == [], outside
    assert not (data / "elsewhere").exists()
    assert res.rows_archived > 0 and res.skipped and "not letters and digits" in res.summary()
    assert _count(db, "SELECT count(*) FROM ticks WHERE symbol = ?", [BAD_SYMBOL]) == 50  # kept, not lost
