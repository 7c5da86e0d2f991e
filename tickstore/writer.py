"""Buffered tick writer: producers append rows in memory; one thread flushes them every `flush_ms`.

Rows are plain tuples in `TICK_COLUMNS` order with times as integer microseconds since the epoch (UTC):
`(market, symbol, trade_id, ts_us, price, qty, is_buyer_maker, recv_us, source)`.
A flush opens a short-lived connection, appends the batch through Arrow with an anti-join on
(market, symbol, trade_id) restricted to the batch's time range (so each id is stored once), runs the
after-flush hooks (status, events, alerts) in the same connection, and closes. On any failure the batch
stays pending and is retried; nothing is dropped.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from tickstore.connection import LockStats, StoreBusy, StoreError, write_connection
from tickstore.schema import ensure_schema

log = logging.getLogger(__name__)

ARROW_SCHEMA = pa.schema([
    ("market", pa.string()),
    ("symbol", pa.string()),
    ("trade_id", pa.int64()),
    ("ts", pa.timestamp("us", tz="UTC")),
    ("price", pa.float64()),
    ("qty", pa.float64()),
    ("is_buyer_maker", pa.bool_()),
    ("recv_ts", pa.timestamp("us", tz="UTC")),
    ("source", pa.string()),
])

INSERT_SQL = """
INSERT INTO ticks
SELECT b.market, b.symbol, b.trade_id, b.ts, b.price, b.qty, b.is_buyer_maker, b.recv_ts, b.source
FROM (SELECT DISTINCT ON (market, symbol, trade_id) * FROM batch) b
ANTI JOIN (SELECT market, symbol, trade_id FROM ticks WHERE ts BETWEEN $lo AND $hi) t
  ON b.market = t.market AND b.symbol = t.symbol AND b.trade_id = t.trade_id
"""


def rows_to_arrow(rows: list[tuple]) -> pa.Table:
    """Columnar batch from row tuples (times in µs)."""
    cols = list(zip(*rows)) if rows else [[] for _ in ARROW_SCHEMA]
    arrays = []
    for values, fld in zip(cols, ARROW_SCHEMA):
        if pa.types.is_timestamp(fld.type):
            arrays.append(pa.array(values, type=pa.int64()).cast(fld.type))
        else:
            arrays.append(pa.array(values, type=fld.type))
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)


def insert_batch(con: duckdb.DuckDBPyConnection, table: pa.Table) -> int:
    """Append `table` (ARROW_SCHEMA) to ticks, skipping ids already stored; returns rows inserted."""
    if table.num_rows == 0:
        return 0
    ts = table.column("ts")
    lo, hi = pc.min(ts).as_py(), pc.max(ts).as_py()
    con.register("batch", table)
    try:
        return int(con.execute(INSERT_SQL, {"lo": lo, "hi": hi}).fetchone()[0])
    finally:
        con.unregister("batch")


class TickBuffer:
    """Thread-safe in-memory buffer between receivers and the writer. Never blocks on the database."""

    def __init__(self) -> None:
        self._rows: list[tuple] = []
        self._lock = threading.Lock()

    def extend(self, rows: list[tuple]) -> None:
        with self._lock:
            self._rows.extend(rows)

    def append(self, row: tuple) -> None:
        with self._lock:
            self._rows.append(row)

    def drain(self) -> list[tuple]:
        with self._lock:
            rows, self._rows = self._rows, []
        return rows

    def __len__(self) -> int:
        return len(self._rows)


@dataclass
class FlushStats:
    flushes: int = 0
    rows_in: int = 0
    rows_inserted: int = 0
    failures: int = 0
    last_flush_ms: float = 0.0
    max_flush_ms: float = 0.0
    total_flush_ms: float = 0.0
    max_pending: int = 0
    flush_ms_samples: list[float] = field(default_factory=list)


FlushHook = Callable[[duckdb.DuckDBPyConnection, pa.Table, int], None]


class TickWriter:
    """Flushes a TickBuffer to the DuckDB file every `flush_ms` on its own thread.

    `hooks` run after each successful insert inside the same connection: `hook(con, batch, inserted)`.
    A hook failing is logged and never loses ticks (they are committed before hooks run).
    """

    def __init__(self, path: str | Path, buffer: TickBuffer, flush_ms: int = 250,
                 hooks: list[FlushHook] | None = None, lock_budget_s: float = 1.0) -> None:
        self.path = Path(path)
        self.buffer = buffer
        self.flush_s = max(flush_ms, 1) / 1000.0
        self.hooks: list[FlushHook] = list(hooks or [])
        self.lock_budget_s = lock_budget_s
        self.stats = FlushStats()
        self._pending: list[tuple] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._schema_ready = False

    def start(self) -> "TickWriter":
        self._thread = threading.Thread(target=self._run, name="tick-writer", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            next_at += self.flush_s
            self.flush_once()
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()

    def flush_once(self, force_hooks: bool = True) -> int:
        """Write everything pending; returns rows inserted (0 when nothing was pending or the lock was busy)."""
        self._pending.extend(self.buffer.drain())
        self.stats.max_pending = max(self.stats.max_pending, len(self._pending))
        if not self._pending and not (force_hooks and self.hooks):
            return 0
        rows = self._pending
        t0 = time.perf_counter()
        try:
            table = rows_to_arrow(rows)
            with write_connection(self.path, budget_s=self.lock_budget_s) as con:
                if not self._schema_ready:
                    ensure_schema(con)
                    self._schema_ready = True
                con.execute("BEGIN")
                inserted = insert_batch(con, table)
                con.execute("COMMIT")
                self._pending = []
                for hook in self.hooks:
                    try:
                        hook(con, table, inserted)
                    except Exception:  # a status/alert hook must never take ticks down with it
                        log.exception("after-flush hook %s failed", getattr(hook, "__name__", hook))
        except StoreBusy:
            self.stats.failures += 1
            log.warning("tick file locked for >%.1fs; %d ticks kept in memory, retrying", self.lock_budget_s, len(self._pending))
            return 0
        except (StoreError, duckdb.Error, OSError) as exc:
            self.stats.failures += 1
            log.error("flush failed (%s); %d ticks kept in memory, retrying", exc, len(self._pending))
            self._stop.wait(min(1.0, self.flush_s * 4))
            return 0
        ms = (time.perf_counter() - t0) * 1000
        s = self.stats
        s.flushes += 1
        s.rows_in += len(rows)
        s.rows_inserted += inserted
        s.last_flush_ms = ms
        s.max_flush_ms = max(s.max_flush_ms, ms)
        s.total_flush_ms += ms
        if len(s.flush_ms_samples) < 100_000:
            s.flush_ms_samples.append(ms)
        if rows:
            log.debug("flushed %d ticks (%d new) in %.1f ms", len(rows), inserted, ms)
        return inserted

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the loop and flush whatever is still buffered (retrying on lock conflicts until `timeout`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        self._stop.clear()
        while True:
            self.flush_once()
            if not self._pending and not len(self.buffer):
                break
            if time.monotonic() > deadline:
                log.error("could not flush %d ticks before shutdown deadline", len(self._pending))
                break
            time.sleep(0.05)
        self._stop.set()

    @property
    def lock_retries(self) -> int:
        return LockStats.retries
