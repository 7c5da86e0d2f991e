"""Ingestor-side state read from an open (writer) connection: last stored ids and id gaps."""
from __future__ import annotations

import datetime as dt

import duckdb


def last_trade_ids(con: duckdb.DuckDBPyConnection, market: str) -> dict[str, int]:
    """Highest stored trade id per symbol of `market`."""
    rows = con.execute("SELECT symbol, max(trade_id) FROM ticks WHERE market = $m GROUP BY symbol", {"m": market}).fetchall()
    return {s: int(i) for s, i in rows}


def last_stored(con: duckdb.DuckDBPyConnection, market: str) -> dict[str, tuple[int, int]]:
    """(highest stored id, its trade time in µs) per symbol, from the hot table and the Parquet archive,
    so a restart after the newest ticks were archived still resumes where it stopped."""
    rows = con.execute("""
        SELECT symbol, max(last_id), epoch_us(max(last_ts)) FROM (
            SELECT symbol, max(trade_id) AS last_id, max(ts) AS last_ts FROM ticks WHERE market = $m GROUP BY symbol
            UNION ALL
            SELECT symbol, max(last_id), max(last_ts) FROM archive_files WHERE market = $m GROUP BY symbol)
        GROUP BY symbol""", {"m": market}).fetchall()
    return {s: (int(i), int(us)) for s, i, us in rows if i is not None}


def id_gaps(con: duckdb.DuckDBPyConnection, market: str, symbol: str, since: dt.datetime) -> list[tuple[int, int]]:
    """Missing id ranges `(first_missing, last_missing)` between stored ticks of one symbol newer than `since`."""
    sql = """
    SELECT prev + 1, trade_id - 1 FROM (
        SELECT trade_id, lag(trade_id) OVER (ORDER BY trade_id) AS prev
        FROM ticks WHERE market = $m AND symbol = $s AND ts >= $since)
    WHERE trade_id - prev > 1 ORDER BY 1"""
    return [(int(a), int(b)) for a, b in con.execute(sql, {"m": market, "s": symbol, "since": since}).fetchall()]


def unrecoverable_ranges(con: duckdb.DuckDBPyConnection, market: str, symbol: str) -> list[tuple[int, int]]:
    """Id ranges already recorded as unrecoverable (not retried on every start)."""
    rows = con.execute("""SELECT first_id, last_id FROM ingest_events
                          WHERE kind = 'gap_unrecoverable' AND market = $m AND symbol = $s""",
                       {"m": market, "s": symbol}).fetchall()
    return [(int(a), int(b)) for a, b in rows if a is not None and b is not None]


def file_kind(con: duckdb.DuckDBPyConnection) -> str | None:
    """'live', 'demo', or None for a file no ingestor has claimed yet."""
    rows = con.execute("SELECT value FROM tickdesk_meta WHERE key = 'data'").fetchall()
    return rows[0][0] if rows else None


def claim_file(con: duckdb.DuckDBPyConnection, kind: str) -> None:
    con.execute("INSERT OR REPLACE INTO tickdesk_meta VALUES ('data', $k)", {"k": kind})


def clear_simulated(con: duckdb.DuckDBPyConnection) -> int:
    """Drop the ticks, status and events of a previous demo run (alert rules stay); returns ticks removed."""
    n = con.execute("SELECT count(*) FROM ticks").fetchall()[0][0]
    for table in ("ticks", "ingest_status", "ingest_events"):
        con.execute(f"DELETE FROM {table}")  # fixed table names, no user input
    return int(n)
