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

A write holds the file for one transaction (a rule row: a few ms; an import batch: well under a second), so the
ingestor's flushes and the app's readers only wait, as they do for each other.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb

from tickstore.connection import StoreBusy, StoreDamaged, StoreError, StoreMissing, init_db, write_connection

__all__ = ["RULE_WRITE_BUDGET_S", "IMPORT_WRITE_BUDGET_S", "StoreBusy", "StoreDamaged", "StoreError", "StoreMissing",
           "app_write", "check_readable"]

RULE_WRITE_BUDGET_S = 5.0      # a form submit: give up (and say so) after this long
IMPORT_WRITE_BUDGET_S = 60.0   # one import batch may wait out a long archive run


_verified: set[tuple[int, int]] = set()   # (device, inode) of files read in full by this process
_verified_lock = threading.Lock()


def check_readable(con: duckdb.DuckDBPyConnection) -> None:
    """Read every row of every table of the open file; a block that fails its checksum (or lies past a truncated
    end) raises here (as StoreDamaged, through the connection). About 0.3 s per million ticks on one core."""
    tables = con.execute("""SELECT table_name FROM duckdb_tables()
                            WHERE database_name = current_database() AND NOT temporary
                            ORDER BY table_name""").fetchall()
    for (name,) in tables:
        quoted = '"' + name.replace('"', '""') + '"'   # a name from the file's own catalog, not user input
        con.execute(f"SELECT count(*), bit_xor(hash(t)) FROM {quoted} AS t").fetchall()  # hash(t): every column


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
    with write_connection(path, budget_s=budget_s) as con:
        if verify:
            st = os.stat(path)
            ident = (st.st_dev, st.st_ino)
            if ident not in _verified:
                check_readable(con)
                with _verified_lock:
                    _verified.add(ident)
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
