"""The one write path of the app: alert-rule saves and Binance dump imports (and the CLIs doing the same jobs).

Both run in the process that asks for them, as short write transactions through `app_write`:

- the tick file must exist unless the caller creates it (`create=True`: imports may start a new file; rules never
  do, they live in the ingestor's file);
- the open passes this process's per-file gate (tickstore.connection), so the Streamlit server's own read queries
  of other sessions finish first and new ones wait (~20 ms) instead of failing with DuckDB's in-process
  "different configuration" error, then retries the ingestor's file lock with backoff;
- failures are typed: StoreMissing (no file), StoreBusy (still locked when `budget_s` ran out; nothing was
  written), StoreDamaged / StoreFull, StoreError (anything else about the file). Callers tell them apart by
  class, never by message text.

`verify=True` first reads every row of every table of the file (DuckDB checks each block's checksum as it reads
it), once per file per process: a file whose tick blocks are damaged opens and takes a rule row without complaint,
so without this a rule would be "saved" into a file nothing can use (StoreDamaged instead, nothing written).
The read goes in row ranges of CHECK_ROWS, each on its own short read connection before the write opens, so the
ingestor's flushes wait for one range (tens of ms), never for the whole file; `verify_in_background` starts it
when a page that writes opens, so the first save does not pay it.

A write holds the file for one transaction (a rule row: a few ms; an import batch: well under a second), so the
ingestor's flushes and the app's readers only wait, as they do for each other.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb

from tickstore.connection import (StoreBusy, StoreDamaged, StoreError, StoreMissing, init_db, read_connection,
                                  write_connection)

__all__ = ["RULE_WRITE_BUDGET_S", "IMPORT_WRITE_BUDGET_S", "StoreBusy", "StoreDamaged", "StoreError", "StoreMissing",
           "app_write", "verify_file", "verify_in_background"]

RULE_WRITE_BUDGET_S = 5.0      # a form submit: give up (and say so) after this long
IMPORT_WRITE_BUDGET_S = 60.0   # one import batch may wait out a long archive run


CHECK_ROWS = 2_000_000   # rows per read of the verification (~40 ms of a 2-core host for ticks)
CHECK_BUDGET_S = 30.0    # each range waits this long at most for the file lock

_verified: set[tuple[int, int]] = set()   # (device, inode) of files read in full by this process
_verified_lock = threading.Lock()
_verifying: dict[tuple[int, int], threading.Lock] = {}   # one verification at a time per file; others wait for it
log = logging.getLogger(__name__)


_TABLES_SQL = """SELECT table_name, estimated_size FROM duckdb_tables()
                 WHERE database_name = current_database() AND NOT temporary ORDER BY table_name"""


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'   # a name from the file's own catalog, not user input


def _check_in_ranges(path: Path, budget_s: float) -> None:
    """Read every row of every table of the file at `path` (DuckDB checks each block's checksum as it reads; a bad
    block or one past a truncated end raises StoreDamaged through the connection), large tables in rowid ranges of
    CHECK_ROWS, each on its own short read connection that waits up to `budget_s` for the file lock."""
    with read_connection(path, budget_s=budget_s, views=False) as con:
        tables = con.execute(_TABLES_SQL).fetchall()
    for name, size in tables:
        if (size or 0) <= CHECK_ROWS:
            with read_connection(path, budget_s=budget_s, views=False) as con:
                con.execute(f"SELECT count(*), bit_xor(hash(t)) FROM {_quoted(name)} AS t").fetchall()
            continue
        start = 0
        while True:
            with read_connection(path, budget_s=budget_s, views=False) as con:
                if start == 0:
                    last = con.execute(f"SELECT max(rowid) FROM {_quoted(name)}").fetchone()[0]
                con.execute(f"SELECT count(*), bit_xor(hash(t)) FROM {_quoted(name)} AS t "
                            "WHERE rowid >= $a AND rowid < $b", {"a": start, "b": start + CHECK_ROWS}).fetchall()
            start += CHECK_ROWS
            if last is None or start > last:  # rows appended since are the ingestor's own, just written
                break


def verify_file(path: str | os.PathLike, budget_s: float = CHECK_BUDGET_S) -> None:
    """Read the whole file once per process (StoreDamaged if a block is bad; StoreBusy if a range waited
    `budget_s` for the lock); concurrent callers wait for the one reading. Returns at once for a file already read."""
    path = Path(path)
    st = os.stat(path)
    ident = (st.st_dev, st.st_ino)
    if ident in _verified:
        return
    with _verified_lock:
        gate = _verifying.setdefault(ident, threading.Lock())
    with gate:
        if ident in _verified:
            return
        _check_in_ranges(path, budget_s)
        with _verified_lock:
            _verified.add(ident)


def verify_in_background(path: str | os.PathLike) -> None:
    """Start `verify_file` on a daemon thread (no-op for a file already read or missing); a failure is only
    logged here: the write that needs the file runs the check again and reports it."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError:
        return
    with _verified_lock:  # once per file: a page calls this on every rerun
        if (st.st_dev, st.st_ino) in _verified or (st.st_dev, st.st_ino) in _verifying:
            return

    def run() -> None:
        try:
            verify_file(path)
        except (StoreError, OSError, duckdb.Error) as exc:
            log.warning("background check of %s: %s", path, exc)

    threading.Thread(target=run, name="tickdesk-verify", daemon=True).start()


@contextlib.contextmanager
def app_write(path: str | os.PathLike, budget_s: float = RULE_WRITE_BUDGET_S, *, create: bool = False,
              atomic: bool = False, verify: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short read-write connection to the tick file at `path`, closed on exit.

    `create`: make the file and its schema first when missing (else StoreMissing). `atomic`: run the block in one
    transaction, committed on success and rolled back on any exception. `verify`: refuse a damaged file
    (StoreDamaged, nothing written; see the module docstring).
    """
    path = Path(path)
    if create:
        init_db(path)
    elif not path.exists():
        raise StoreMissing(f"tick file {path} does not exist yet; start the ingestor (make run / make demo) to "
                           "create it")
    if verify:
        verify_file(path, budget_s)
    with write_connection(path, budget_s=budget_s) as con:
        if not atomic:
            yield con
            return
        con.execute("BEGIN")
        try:
            yield con
        except BaseException:
            with contextlib.suppress(duckdb.Error):  # a failed statement may have ended the transaction already
                con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
