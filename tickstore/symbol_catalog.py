"""`symbol_catalog`: one row per (market, symbol) kept by every path that inserts into or deletes from `ticks`, so
that "which symbols are stored, how many ticks, first / last trade, last price" is read from a few hundred rows
instead of a scan of every tick.

`ticks` counts the rows of the hot table (archiving subtracts what it moves to Parquet; readers add
`archive_files`); first/last trade time and the last price (by trade id) cover every tick ever inserted. The
catalogue is trusted only while it adds up: the sum of its `ticks` equals the hot table's row count, which DuckDB
answers from metadata. A file written by older code or by a tool that inserts directly is detected that way;
readers then fall back to the scan, and the next writer rebuilds the catalogue once (`ensure_catalog`).
"""
from __future__ import annotations

import warnings

import duckdb
import pyarrow as pa

DDL = """CREATE TABLE IF NOT EXISTS symbol_catalog(
    market VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    ticks BIGINT NOT NULL,            -- rows in the hot table
    first_ts TIMESTAMPTZ,
    last_ts TIMESTAMPTZ,
    last_trade_id BIGINT,
    last_price DOUBLE,                -- price of the trade with the highest id
    PRIMARY KEY (market, symbol))"""

# `symcat_agg`: the inserted rows aggregated per symbol (`_aggregate`); an UPDATE ... FROM plus an insert of the
# symbols not seen before costs about half an INSERT ... ON CONFLICT of the same rows
_UPDATE_SQL = """
UPDATE symbol_catalog SET
    ticks = symbol_catalog.ticks + a.n,
    first_ts = least(symbol_catalog.first_ts, a.first_ts),
    last_ts = greatest(symbol_catalog.last_ts, a.last_ts),
    last_price = CASE WHEN symbol_catalog.last_trade_id IS NULL OR a.last_id > symbol_catalog.last_trade_id
                      THEN a.last_price ELSE symbol_catalog.last_price END,
    last_trade_id = greatest(symbol_catalog.last_trade_id, a.last_id)
FROM symcat_agg a WHERE symbol_catalog.market = a.market AND symbol_catalog.symbol = a.symbol
"""
_INSERT_NEW_SQL = """
INSERT INTO symbol_catalog
SELECT a.market, a.symbol, a.n, a.first_ts, a.last_ts, a.last_id, a.last_price FROM symcat_agg a
ANTI JOIN symbol_catalog c ON c.market = a.market AND c.symbol = a.symbol
"""
_REBUILD_SQL = """
INSERT INTO symbol_catalog
SELECT market, symbol, count(*), min(ts), max(ts), max(trade_id), arg_max(price, trade_id)
FROM main.ticks GROUP BY market, symbol
"""
_CHECK_SQL = """SELECT (SELECT coalesce(sum(ticks), 0) FROM symbol_catalog) = (SELECT count(*) FROM main.ticks)"""
RETURNING = "RETURNING market, symbol, trade_id, ts, price"  # what an INSERT INTO ticks hands to `note_inserted`


def inserted_rows(result: duckdb.DuckDBPyConnection) -> pa.Table:
    """The rows an `INSERT ... RETURNING` handed back, as Arrow (a flush's worth: the copy DuckDB warns of is small)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return result.to_arrow_table()


def has_catalog(con: duckdb.DuckDBPyConnection) -> bool:
    return con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' "
                       "AND table_name = 'symbol_catalog'").fetchone()[0] > 0


def consistent(con: duckdb.DuckDBPyConnection) -> bool:
    """True when the catalogue exists and accounts for every hot tick (metadata only, no scan)."""
    return has_catalog(con) and bool(con.execute(_CHECK_SQL).fetchone()[0])


def _aggregate(inserted: pa.Table) -> pa.Table:
    """Per (market, symbol): n, first_ts, last_ts, last_id, last_price (the price of the highest id)."""
    ordered = inserted.sort_by("trade_id")  # unthreaded group_by keeps this order, so "last" is the highest id's
    g = ordered.group_by(["market", "symbol"], use_threads=False).aggregate(
        [("trade_id", "count"), ("ts", "min"), ("ts", "max"), ("trade_id", "max"), ("price", "last")])
    return pa.table({"market": g["market"], "symbol": g["symbol"], "n": g["trade_id_count"],
                     "first_ts": g["ts_min"], "last_ts": g["ts_max"], "last_id": g["trade_id_max"],
                     "last_price": g["price_last"]})


def note_inserted(con: duckdb.DuckDBPyConnection, inserted: pa.Table) -> None:
    """Add rows just inserted into `ticks` (an Arrow table from `INSERT ... RETURNING`) to the catalogue, in the
    caller's transaction."""
    if inserted.num_rows == 0:
        return
    agg = _aggregate(inserted)
    con.register("symcat_agg", agg)
    try:
        updated = con.execute(_UPDATE_SQL).fetchone()[0]
        if updated < agg.num_rows:
            con.execute(_INSERT_NEW_SQL)
    finally:
        con.unregister("symcat_agg")


def note_deleted(con: duckdb.DuckDBPyConnection, market: str, symbol: str, rows: int) -> None:
    """`rows` ticks of (market, symbol) left the hot table (moved to the archive); times and price stay."""
    if rows:
        con.execute("UPDATE symbol_catalog SET ticks = ticks - $n WHERE market = $m AND symbol = $s",
                    {"n": int(rows), "m": market, "s": symbol})


def rebuild(con: duckdb.DuckDBPyConnection) -> None:
    """Recompute the catalogue from the hot table (one scan). Archived symbols keep their times and price."""
    con.execute(DDL)
    con.execute("BEGIN")
    try:
        con.execute("UPDATE symbol_catalog SET ticks = 0")
        con.execute(_REBUILD_SQL + """ ON CONFLICT (market, symbol) DO UPDATE SET ticks = excluded.ticks,
                    first_ts = least(symbol_catalog.first_ts, excluded.first_ts),
                    last_ts = greatest(symbol_catalog.last_ts, excluded.last_ts),
                    last_price = CASE WHEN symbol_catalog.last_trade_id IS NULL
                                           OR excluded.last_trade_id >= symbol_catalog.last_trade_id
                                      THEN excluded.last_price ELSE symbol_catalog.last_price END,
                    last_trade_id = greatest(symbol_catalog.last_trade_id, excluded.last_trade_id)""")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def ensure_catalog(con: duckdb.DuckDBPyConnection) -> bool:
    """For a writer's first connection: create the catalogue, rebuilding it when it does not add up. Returns True
    when it was rebuilt."""
    con.execute(DDL)
    if consistent(con):
        return False
    rebuild(con)
    return True
