"""What a reader sees: the `ticks_all` view over the hot table and the registered Parquet archive.

Holds the few archive facts a read connection needs (where this file's archive lives), so that the connection
module and the archive writer (tickstore.archive) both build on it without importing each other.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import duckdb

from tickstore.schema import TICK_COLUMNS

log = logging.getLogger(__name__)

_HOT_SELECT = f"SELECT {', '.join(TICK_COLUMNS)} FROM main.ticks"
# The archive branch reads exactly the registered files (`archive_files`), not a directory glob: no glob per query,
# and a file left by an interrupted archive run is never visible. The ts bounds are always true for archived rows;
# they let DuckDB drop the whole branch when a query's time range lies outside the archive (the recent charts).
_ARCHIVE_SELECT = (f"SELECT {', '.join(TICK_COLUMNS)} FROM read_parquet(getvariable('tickdesk_archive_files'), "
                   "hive_partitioning = true, hive_types = {'market': VARCHAR, 'symbol': VARCHAR, 'date': DATE}) "
                   "WHERE ts >= coalesce(getvariable('tickdesk_archive_first'), '-infinity'::TIMESTAMPTZ) "
                   "AND ts <= coalesce(getvariable('tickdesk_archive_last'), 'infinity'::TIMESTAMPTZ)")
_warned_archives: set[str] = set()


def resolve_stored_dir(db_path: str | os.PathLike, stored: str) -> Path:
    """Absolute archive directory from the value kept in `archive_meta`."""
    p = Path(stored)
    return p if p.is_absolute() else Path(db_path).resolve().parent / p


def _first(con: duckdb.DuckDBPyConnection, sql: str) -> tuple | None:
    rows = con.execute(sql).fetchall()
    return rows[0] if rows else None


def archive_root(con: duckdb.DuckDBPyConnection, db_path: str | os.PathLike | None = None) -> Path | None:
    """This file's archive directory if it has archived files, else None (any connection, read-only is fine).
    One small query on the common path (no archive); `db_path` defaults to the connection's own file."""
    try:
        n, stored = _first(con, "SELECT (SELECT count(*) FROM archive_files), "
                                "(SELECT archive_dir FROM archive_meta ORDER BY created_at LIMIT 1)")
    except duckdb.CatalogException:      # a file from before the history tables
        return None
    if not n or stored is None:
        return None
    if db_path is None:
        db_path = _first(con, "SELECT path FROM duckdb_databases() WHERE database_name = current_database()")[0]
    return resolve_stored_dir(db_path, stored)


def define_read_views(con: duckdb.DuckDBPyConnection) -> None:
    """Temp view `ticks_all`: every tick a reader may see. Read queries use it.

    When the file has archived ticks (`archive_meta` / `archive_files`, see tickstore.archive) the view is the hot
    `ticks` table UNION ALL the Parquet archive (hive partitions market/symbol/date), so queries span both.
    """
    root = archive_root(con)
    if root is not None:
        try:
            if not root.is_dir():
                raise FileNotFoundError(f"archive directory {root} is missing")
            prefix = str(root) + os.sep
            con.execute("SET VARIABLE tickdesk_archive_files = "
                        "(SELECT list($prefix || path ORDER BY path) FROM archive_files)", {"prefix": prefix})
            # bounds only when every file has them (NULL = unbounded)
            con.execute("""SET VARIABLE tickdesk_archive_first =
                           (SELECT CASE WHEN count(*) = count(first_ts) THEN min(first_ts) END FROM archive_files)""")
            con.execute("""SET VARIABLE tickdesk_archive_last =
                           (SELECT CASE WHEN count(*) = count(last_ts) THEN max(last_ts) END FROM archive_files)""")
            con.execute(f"CREATE OR REPLACE TEMP VIEW ticks_all AS {_HOT_SELECT} UNION ALL {_ARCHIVE_SELECT}")
            return
        except (duckdb.Error, OSError) as exc:
            if str(root) not in _warned_archives:
                _warned_archives.add(str(root))
                log.warning("reading without the archive %s (%s); long-range queries miss archived ticks", root, exc)
    con.execute(f"CREATE OR REPLACE TEMP VIEW ticks_all AS {_HOT_SELECT}")
