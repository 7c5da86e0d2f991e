"""Short-lived, lock-safe DuckDB connections.

DuckDB lets one process write a file, and a read-only open fails while a writer holds it. Nobody keeps the
file open: writers open-insert-close, readers open read-only per query batch; both retry on a lock conflict.
"""
from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb

from core.paths import default_db_path
from tickstore.schema import TICK_COLUMNS, ensure_schema

log = logging.getLogger(__name__)


class StoreError(Exception):
    """The tick file cannot be used; the message says why and what is expected."""


class StoreBusy(StoreError):
    """Another process held the lock for longer than the retry budget."""


class StoreMissing(StoreError):
    """The tick file does not exist (yet)."""


def is_lock_error(exc: BaseException) -> bool:
    """A conflict that goes away when the other holder closes: another process's file lock, or (inside one
    process) a read-only connection still open while a read-write one is requested, or the reverse."""
    msg = str(exc).lower()
    return isinstance(exc, duckdb.Error) and ("lock" in msg or "conflicting" in msg or "resource temporarily" in msg
                                              or "different configuration" in msg)


class LockStats:
    """Process-wide counters of lock conflicts (read by the ingestor's log lines and the benchmarks)."""

    retries = 0
    waited_s = 0.0


def _open(path: Path, read_only: bool, budget_s: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + budget_s
    delay = 0.005
    while True:
        try:
            # writers append small batches: one thread (a thread pool costs ~10 ms per open and competes with the app)
            con = duckdb.connect(str(path), read_only=read_only, config={} if read_only else {"threads": 1})
            con.execute("SET TimeZone = 'UTC'")
            return con
        except duckdb.Error as exc:
            if not is_lock_error(exc):
                if read_only and not path.exists():
                    raise StoreMissing(f"tick file {path} does not exist yet; start the ingestor to create it") from exc
                raise StoreError(f"cannot open tick file {path}: {exc}") from exc
            now = time.monotonic()
            if now >= deadline:
                raise StoreBusy(f"tick file {path} is locked by another process (waited {budget_s:.1f}s)") from exc
            sleep = min(delay * (1 + random.random()), deadline - now)
            LockStats.retries += 1
            LockStats.waited_s += sleep
            time.sleep(sleep)
            delay = min(delay * 2, 0.1)


_HOT_SELECT = f"SELECT {', '.join(TICK_COLUMNS)} FROM main.ticks"
# The archive branch reads exactly the registered files (`archive_files`), not a directory glob: no glob per query,
# and a file left by an interrupted archive run is never visible. The ts bounds are always true for archived rows;
# they let DuckDB drop the whole branch when a query's time range lies outside the archive (the recent charts).
_ARCHIVE_SELECT = (f"SELECT {', '.join(TICK_COLUMNS)} FROM read_parquet(getvariable('tickdesk_archive_files'), "
                   "hive_partitioning = true, hive_types = {'market': VARCHAR, 'symbol': VARCHAR, 'date': DATE}) "
                   "WHERE ts >= coalesce(getvariable('tickdesk_archive_first'), '-infinity'::TIMESTAMPTZ) "
                   "AND ts <= coalesce(getvariable('tickdesk_archive_last'), 'infinity'::TIMESTAMPTZ)")
_warned_archives: set[str] = set()


def define_read_views(con: duckdb.DuckDBPyConnection) -> None:
    """Temp view `ticks_all`: every tick a reader may see. Read queries use it.

    When the file has archived ticks (`archive_meta` / `archive_files`, see tickstore.archive) the view is the hot
    `ticks` table UNION ALL the Parquet archive (hive partitions market/symbol/date), so queries span both.
    """
    from tickstore.archive import archive_root  # late: tickstore.archive imports this module

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


@contextlib.contextmanager
def read_connection(path: str | os.PathLike | None = None, budget_s: float = 2.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection, retried on lock conflicts for up to `budget_s`; closed on exit."""
    path = Path(path) if path is not None else default_db_path()
    if not path.exists():
        raise StoreMissing(f"tick file {path} does not exist yet; start the ingestor (make run / make demo) to create it")
    con = _open(path, read_only=True, budget_s=budget_s)
    try:
        define_read_views(con)
        yield con
    finally:
        con.close()


@contextlib.contextmanager
def write_connection(path: str | os.PathLike, budget_s: float = float("inf")) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection (schema ensured), retried on lock conflicts; closed on exit."""
    path = Path(path)
    con = _open(path, read_only=False, budget_s=budget_s)
    try:
        yield con
    finally:
        con.close()


def init_db(path: str | os.PathLike) -> Path:
    """Create the file and schema, or raise StoreError with a clear reason (e.g. unwritable directory)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create directory {path.parent}: {exc.strerror}") from exc
    if path.exists() and not os.access(path, os.W_OK):
        raise StoreError(f"tick file {path} is not writable")
    if not os.access(path.parent, os.W_OK):
        raise StoreError(f"directory {path.parent} is not writable")
    with write_connection(path, budget_s=30.0) as con:
        ensure_schema(con)
    return path
