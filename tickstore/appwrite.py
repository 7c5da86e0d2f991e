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

A write holds the file for one transaction (a rule row: a few ms; an import batch: well under a second), so the
ingestor's flushes and the app's readers only wait, as they do for each other.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import duckdb

from tickstore.connection import StoreBusy, StoreError, StoreMissing, init_db, write_connection

__all__ = ["RULE_WRITE_BUDGET_S", "IMPORT_WRITE_BUDGET_S", "StoreBusy", "StoreError", "StoreMissing", "app_write"]

RULE_WRITE_BUDGET_S = 5.0      # a form submit: give up (and say so) after this long
IMPORT_WRITE_BUDGET_S = 60.0   # one import batch may wait out a long archive run


@contextlib.contextmanager
def app_write(path: str | os.PathLike, budget_s: float = RULE_WRITE_BUDGET_S, *, create: bool = False,
              atomic: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short read-write connection to the tick file at `path`, closed on exit.

    `create`: make the file and its schema first when missing (else StoreMissing). `atomic`: run the block in one
    transaction, committed on success and rolled back on any exception.
    """
    path = Path(path)
    if create:
        init_db(path)
    elif not path.exists():
        raise StoreMissing(f"tick file {path} does not exist yet; start the ingestor (make run / make demo) to "
                           "create it")
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
