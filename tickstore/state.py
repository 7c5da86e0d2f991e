"""Ingestor-side state on an open (writer) connection: last stored ids and id gaps, the file's kind, and the
`ingest_status` / `ingest_events` rows written after each flush."""
from __future__ import annotations

import datetime as dt

import duckdb
import pyarrow as pa


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
    """Drop the ticks, mark prices, funding rates, status and events of a previous demo run (alert rules stay);
    returns ticks removed."""
    n = con.execute("SELECT count(*) FROM ticks").fetchall()[0][0]
    for table in ("ticks", "mark_prices", "funding_rates", "ingest_status", "ingest_events"):
        con.execute(f"DELETE FROM {table}")  # fixed table names, no user input
    return int(n)


def has_ticks(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the hot table holds any tick (stops at the first row)."""
    return con.execute("SELECT count(*) FROM (SELECT 1 FROM ticks LIMIT 1)").fetchall()[0][0] > 0


# (ts µs, market, symbol, kind, first_id, last_id, count, detail)
EVENT_FIELDS = 8
# (market, symbol, connected, last_trade_id, last_trade µs, last_recv µs, ticks_total, ticks_per_s, reconnects,
#  gaps_found, gaps_filled, gaps_unrecoverable, trades_backfilled, malformed, duplicates, updated µs,
#  exchange_status)
STATUS_FIELDS = 17


def append_ingest_events(con: duckdb.DuckDBPyConnection, rows: list[tuple]) -> None:
    """Append `ingest_events` rows (EVENT_FIELDS tuples, times in µs since the epoch) in one statement."""
    if rows:
        con.execute(f"""INSERT INTO ingest_events(ts, market, symbol, kind, first_id, last_id, count, detail)
                        SELECT make_timestamptz(col0::BIGINT), col1, col2, col3, col4, col5, col6, col7
                        FROM (VALUES {_placeholders(len(rows), EVENT_FIELDS)})""", [v for r in rows for v in r])


_STATUS_ARROW = pa.schema([
    ("market", pa.string()), ("symbol", pa.string()), ("connected", pa.bool_()), ("last_trade_id", pa.int64()),
    ("last_trade_us", pa.int64()), ("last_recv_us", pa.int64()), ("ticks_total", pa.int64()),
    ("ticks_per_s", pa.float64()), ("reconnects", pa.int64()), ("gaps_found", pa.int64()), ("gaps_filled", pa.int64()),
    ("gaps_unrecoverable", pa.int64()), ("trades_backfilled", pa.int64()), ("malformed", pa.int64()),
    ("duplicates", pa.int64()), ("updated_us", pa.int64()), ("exchange_status", pa.string())])


_STATUS_SELECT = """market, symbol, connected, last_trade_id, make_timestamptz(last_trade_us),
    make_timestamptz(last_recv_us), ticks_total, ticks_per_s, reconnects, gaps_found, gaps_filled, gaps_unrecoverable,
    trades_backfilled, malformed, duplicates, make_timestamptz(updated_us), exchange_status"""
# rows already there are updated in place (half the cost of INSERT OR REPLACE, which deletes and re-inserts each
# row and its primary-key entry); the symbols not seen before are inserted after
_STATUS_UPDATE_SQL = """UPDATE ingest_status SET connected = s.connected, last_trade_id = s.last_trade_id,
    last_trade_ts = make_timestamptz(s.last_trade_us), last_recv_ts = make_timestamptz(s.last_recv_us),
    ticks_total = s.ticks_total, ticks_per_s = s.ticks_per_s, reconnects = s.reconnects, gaps_found = s.gaps_found,
    gaps_filled = s.gaps_filled, gaps_unrecoverable = s.gaps_unrecoverable, trades_backfilled = s.trades_backfilled,
    malformed = s.malformed, duplicates = s.duplicates, updated_at = make_timestamptz(s.updated_us),
    exchange_status = s.exchange_status
    FROM status_rows s WHERE ingest_status.market = s.market AND ingest_status.symbol = s.symbol"""
_STATUS_INSERT_SQL = f"""INSERT INTO ingest_status SELECT {_STATUS_SELECT} FROM status_rows s
    ANTI JOIN ingest_status t ON t.market = s.market AND t.symbol = s.symbol"""


def upsert_ingest_status(con: duckdb.DuckDBPyConnection, rows: list[tuple]) -> None:
    """Insert or replace `ingest_status` rows (STATUS_FIELDS tuples, times in µs; one per (market, symbol)).

    The rows go in as one Arrow table: a statement's cost does not grow with the rows (a VALUES list of 1,000 rows
    x 16 parameters took ~150 ms to bind; the table ~7 ms)."""
    if not rows:
        return
    cols = list(zip(*rows))
    table = pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(cols, _STATUS_ARROW)], schema=_STATUS_ARROW)
    con.register("status_rows", table)
    try:
        updated = con.execute(_STATUS_UPDATE_SQL).fetchone()[0]
        if updated < table.num_rows:
            con.execute(_STATUS_INSERT_SQL)
    finally:
        con.unregister("status_rows")


def _placeholders(n_rows: int, n_cols: int) -> str:
    """`($1, $2), ($3, $4)` for a multi-row VALUES list: one statement (one commit) instead of executemany's one
    statement per row, which cost ~10 ms of commit each on every flush."""
    return ", ".join("(" + ", ".join(f"${r * n_cols + c + 1}" for c in range(n_cols)) + ")" for r in range(n_rows))
