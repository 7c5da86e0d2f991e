"""Buffered tick writer: producers append rows in memory; one thread flushes them every `flush_ms`.

Rows are plain tuples in `TICK_COLUMNS` order with times as integer microseconds since the epoch (UTC):
`(market, symbol, trade_id, ts_us, price, qty, is_buyer_maker, recv_us, source)`; a producer with many rows at
once may hand over an Arrow table (ARROW_SCHEMA) instead, so that pending ticks are kept columnar (about a tenth
of the memory of row tuples, and no per-row objects for the garbage collector to walk).
A flush opens a short-lived connection, appends the batch through Arrow with an anti-join on
(market, symbol, trade_id) restricted to the batch's time ranges (so each id is stored once), runs the
after-flush hooks (status, events, alerts) in the same connection, and closes. On any failure the batch
stays pending and is retried; nothing is dropped, and no error stops the writer thread.
Rows that cannot be trades (a time outside 2009–2100 or far ahead of now, an id out of range, a missing key, a
non-finite price — see core.plausible) are set aside before the insert, logged and counted (`stats.rejected`):
one such row never blocks the others.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.plausible import ID_MAX, MAX_AHEAD_US, TS_MAX_US, TS_MIN_US, now_us
from tickstore import symbol_catalog
from tickstore.connection import LockStats, StoreBusy, StoreError, write_connection
from tickstore.marks import MarkBuffer, funding_problem, insert_funding, insert_marks, mark_problem, split_plausible
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
ANTI JOIN (SELECT market, symbol, trade_id FROM ticks WHERE {ranges}) t
  ON b.market = t.market AND b.symbol = t.symbol AND b.trade_id = t.trade_id
""" + symbol_catalog.RETURNING
MAX_TIME_RANGES = 16        # stored ticks are compared within at most this many time ranges of the batch
RANGE_GAP_US = 2_000_000    # a pause longer than this between two trades of a batch starts a new range
RANGE_SLACK_US = 1_000      # ranges widened by this: an imported dump row (µs) and its live copy (ms) differ < 1 ms


def time_ranges(ts_us: "np.ndarray", gap_us: int = RANGE_GAP_US, max_ranges: int = MAX_TIME_RANGES
                ) -> list[tuple[int, int]]:
    """[(first µs, last µs)] covering every time of `ts_us`: split at its longest pauses over `gap_us` (at most
    `max_ranges` ranges). A batch of live trades plus a backfill from an hour ago is two short ranges, so the
    anti-join reads seconds of stored ticks instead of the whole hour of every symbol."""
    ts = np.sort(ts_us)
    gaps = np.diff(ts)
    cut = np.flatnonzero(gaps > gap_us)
    if len(cut) >= max_ranges:
        cut = np.sort(cut[np.argsort(gaps[cut], kind="stable")[-(max_ranges - 1):]])
    starts = np.r_[0, cut + 1]
    ends = np.r_[cut, len(ts) - 1]
    return [(int(ts[a]) - RANGE_SLACK_US, int(ts[e]) + RANGE_SLACK_US) for a, e in zip(starts, ends)]


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


_CONVERT_ERRORS = (pa.ArrowException, OverflowError, TypeError, ValueError)


def rows_to_arrow_checked(rows: list[tuple]) -> tuple[pa.Table, list[str]]:
    """`rows_to_arrow`, setting aside rows that do not convert (an int beyond int64, a wrong type): (table, reasons)."""
    try:
        return rows_to_arrow(rows), []
    except _CONVERT_ERRORS:
        good, bad = [], []
        for r in rows:
            try:
                rows_to_arrow([r])
                good.append(r)
            except _CONVERT_ERRORS as exc:
                bad.append(f"{str(r)[:160]}: {exc}")
        return rows_to_arrow(good), bad


def plausible_rows(table: pa.Table, now: int | None = None) -> tuple[pa.Table, list[str]]:
    """The rows of `table` (ARROW_SCHEMA) that can be trades, and a reason for each row left out."""
    if table.num_rows == 0:
        return table, []
    now = now_us() if now is None else now
    ts = pc.cast(table.column("ts"), pa.int64())
    tid, price, qty = table.column("trade_id"), table.column("price"), table.column("qty")
    ok = pc.and_(pc.and_(pc.greater_equal(ts, TS_MIN_US), pc.less(ts, TS_MAX_US)), pc.less_equal(ts, now + MAX_AHEAD_US))
    ok = pc.and_(ok, pc.and_(pc.greater_equal(tid, 0), pc.less(tid, ID_MAX)))
    ok = pc.and_(ok, pc.and_(pc.and_(pc.greater(price, 0.0), pc.is_finite(price)),
                             pc.and_(pc.greater_equal(qty, 0.0), pc.is_finite(qty))))
    ok = pc.and_(ok, pc.and_(pc.is_valid(table.column("market")), pc.is_valid(table.column("symbol"))))
    ok = pc.fill_null(ok, False)
    n_ok = pc.sum(ok).as_py() or 0
    if n_ok == table.num_rows:
        return table, []
    bad = table.filter(pc.invert(ok))
    reasons = [f"{r['market']} {r['symbol']} id {r['trade_id']} ts {r['ts_us']} µs price {r['price']} qty {r['qty']}"
               for r in bad.set_column(3, "ts_us", pc.cast(bad.column("ts"), pa.int64())).slice(0, 5).to_pylist()]
    reasons += [""] * (bad.num_rows - len(reasons))
    return table.filter(ok), reasons


def insert_batch(con: duckdb.DuckDBPyConnection, table: pa.Table) -> int:
    """Append `table` (ARROW_SCHEMA) to ticks, skipping ids already stored, and note the new rows in
    `symbol_catalog`; returns rows inserted.

    A stored copy of a trade has the trade's time, so only stored ticks within the batch's time ranges
    (`time_ranges`) are compared."""
    if table.num_rows == 0:
        return 0
    ranges = time_ranges(table.column("ts").cast(pa.int64()).to_numpy())
    where = " OR ".join(f"ts BETWEEN make_timestamptz(${2 * i + 1}::BIGINT) AND make_timestamptz(${2 * i + 2}::BIGINT)"
                        for i in range(len(ranges)))
    con.register("batch", table)
    try:  # fetched in full: a pending result blocks register()
        new = symbol_catalog.inserted_rows(
            con.execute(INSERT_SQL.format(ranges=where), [v for r in ranges for v in r]))
    finally:
        con.unregister("batch")
    symbol_catalog.note_inserted(con, new)
    return new.num_rows


class TickBuffer:
    """Thread-safe in-memory buffer between receivers and the writer. Never blocks on the database.

    Holds row tuples (`append`, `extend`) and Arrow tables (`extend_table`) in arrival order; `drain` hands
    everything over as Arrow tables.
    """

    def __init__(self, capacity: int | None = None) -> None:
        self._items: list[list[tuple] | pa.Table] = []
        self._rows = 0
        self._lock = threading.Lock()
        self.capacity = capacity  # ticks in memory (here and drained by the writer) before producers hold back
        self.held_by_writer = 0   # drained by the writer, not yet committed
        self._rejected: list[str] = []  # rows `drain` could not convert, until the writer takes them

    def extend(self, rows: list[tuple]) -> None:
        if not rows:
            return
        with self._lock:
            last = self._items[-1] if self._items else None
            if type(last) is list:
                last.extend(rows)
            else:
                self._items.append(list(rows))
            self._rows += len(rows)

    def append(self, row: tuple) -> None:
        self.extend([row])

    def extend_table(self, table: pa.Table) -> None:
        """Append an ARROW_SCHEMA table (e.g. the trades of one socket read)."""
        if table.num_rows:
            if not table.schema.equals(ARROW_SCHEMA):
                table = table.cast(ARROW_SCHEMA)  # raises here, in the producer, rather than in the writer
            with self._lock:
                self._items.append(table)
                self._rows += table.num_rows

    def drain(self) -> list[pa.Table]:
        """Everything buffered, oldest first, as ARROW_SCHEMA tables; the buffer is empty afterwards."""
        with self._lock:
            items, self._items, self._rows = self._items, [], 0
        out = []
        for t in items:
            if type(t) is list:
                t, bad = rows_to_arrow_checked(t)
                if bad:
                    with self._lock:
                        self._rejected.extend(bad)
            out.append(t)
        return out

    def take_rejected(self) -> list[str]:
        """Reasons for the rows `drain` set aside since the last call (rows that do not fit the tick columns)."""
        with self._lock:
            bad, self._rejected = self._rejected, []
        return bad

    def __len__(self) -> int:
        return self._rows

    @property
    def full(self) -> bool:
        """True when `capacity` ticks wait in memory: producers stop adding (the stream skips trades, which the
        backfill fetches once flushes work again) instead of growing until the process is killed."""
        return self.capacity is not None and self._rows + self.held_by_writer >= self.capacity


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
    rejected: int = 0           # rows that cannot be trades, set aside (logged, never stored)
    marks_inserted: int = 0     # mark_prices rows new to the file
    funding_inserted: int = 0   # funding_rates rows new to the file
    marks_rejected: int = 0     # mark / funding rows that cannot be real, set aside (logged, never stored)
    flush_ms_samples: list[float] = field(default_factory=list)
    total_cpu_ms: float = 0.0   # the writer thread's CPU time in flushes (wall time minus waiting for a core or I/O)
    total_wait_ms: float = 0.0  # waiting for the file (other processes reading it) before writing


MIN_GAP_S = 0.05  # shortest pause between two flushes (the file is free for readers meanwhile)

FlushHook = Callable[[duckdb.DuckDBPyConnection, pa.Table, int], None]


class TickWriter:
    """Flushes a TickBuffer to the DuckDB file every `flush_ms` on its own thread.

    `hooks` run after each successful insert inside the same connection: `hook(con, batch, inserted)`.
    `marks` (a MarkBuffer) holds mark-price and funding rows; they are inserted in the same transaction as the
    ticks, kept pending on failure like them.
    A hook failing is logged and never loses ticks (they are committed before hooks run).

    The file is watched between flushes. Deleted while running: it is created again with the schema (and
    `on_recreate(con)`, e.g. the live/demo claim) and writing goes on, with a warning. Replaced by another file
    (another inode — a restored copy, a demo file): nothing is written into it; `fatal` says why, the ticks stay
    in memory, and the owner is expected to stop (`stop()` then reports them as unwritten).
    """

    def __init__(self, path: str | Path, buffer: TickBuffer, flush_ms: int = 250,
                 hooks: list[FlushHook] | None = None, lock_budget_s: float = 1.0) -> None:
        self.path = Path(path)
        self.buffer = buffer
        self.flush_s = max(flush_ms, 1) / 1000.0
        self.hooks: list[FlushHook] = list(hooks or [])
        self.lock_budget_s = lock_budget_s
        self.stats = FlushStats()
        self._pending: list[pa.Table] = []   # drained, not yet committed (kept across lock waits)
        self._pending_rows = 0
        self.marks = MarkBuffer()
        self._pending_marks: list[tuple] = []
        self._pending_funding: list[tuple] = []
        self._marks_dropped = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._schema_ready = False
        self._file_id: tuple[int, int] | None = None   # (device, inode) of the file written so far
        self._recreated = False
        self.on_recreate: Callable[[duckdb.DuckDBPyConnection], None] | None = None
        self.fatal: str | None = None

    def _identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def _check_file(self) -> bool:
        """False (and `fatal` set) when the file was replaced by another one; recreates a deleted one."""
        if self.fatal:
            return False
        if self._file_id is None:
            return True
        now = self._identity()
        if now is None:
            log.warning("tick file %s was deleted while running; creating it again (what it held is gone; "
                        "%d ticks in memory go to the new file)", self.path, self.unflushed)
            self._file_id, self._schema_ready, self._recreated = None, False, True
            return True
        if now != self._file_id:
            self._replaced()
            return False
        return True

    def _replaced(self) -> None:
        self.fatal = (f"tick file {self.path} was replaced by another file while running; nothing is written "
                      "into a file this process did not start with (restart the ingestor to use it)")
        log.error("%s; %d ticks kept in memory", self.fatal, self.unflushed)

    def _same_file(self) -> bool:
        """The open connection's file is still the one at the path (re-checked around each write: a rename
        between the check and the open, or during the insert, must not put ticks into a file that is gone)."""
        if self._file_id is None or self._identity() == self._file_id:
            return True
        self._replaced()
        return False

    def start(self) -> "TickWriter":
        self._thread = threading.Thread(target=self._run, name="tick-writer", daemon=True)
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        """True while the flush thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def unflushed(self) -> int:
        """Ticks held in memory, not yet committed to the file."""
        return self._pending_rows + len(self.buffer)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            next_at += self.flush_s
            started = time.monotonic()
            try:
                self.flush_once()
            except Exception:  # flush_once keeps its rows on any error; this thread must outlive every one of them
                log.exception("tick writer: unexpected error; %d ticks kept in memory, retrying", self.unflushed)
                self._stop.wait(1.0)
            now = time.monotonic()
            # readers get the file at least as long as this flush held it (and MIN_GAP_S): big backfill batches
            # never starve the app; they only merge into fewer, larger flushes
            gap = max(MIN_GAP_S, now - started)
            if next_at < now + gap:
                next_at = now + gap
            self._stop.wait(next_at - now)

    def flush_once(self, force_hooks: bool = True) -> int:
        """Write everything pending; returns rows inserted (0 when nothing was pending or the lock was busy)."""
        for t in self.buffer.drain():
            self._pending.append(t)
            self._pending_rows += t.num_rows
        self._reject(self.buffer.take_rejected())
        self._take_marks()
        self.buffer.held_by_writer = self._pending_rows
        self.stats.max_pending = max(self.stats.max_pending, self._pending_rows)
        has_marks = bool(self._pending_marks or self._pending_funding)
        if not self._pending_rows and not has_marks and not (force_hooks and self.hooks):
            return 0
        n_rows = self._pending_rows
        t0, cpu0 = time.perf_counter(), time.thread_time()
        opened = t0
        try:
            if len(self._pending) > 1:  # one table, one contiguous chunk: DuckDB scans it in one go
                self._pending = [pa.concat_tables(self._pending).combine_chunks()]
            if self._pending:
                table, bad = plausible_rows(self._pending[0])
                if bad:
                    self._pending, self._pending_rows = [table], table.num_rows
                    self._reject(bad)
            else:
                table = rows_to_arrow([])
            if not self._check_file():
                self.stats.failures += 1
                return 0
            with write_connection(self.path, budget_s=self.lock_budget_s) as con:
                opened = time.perf_counter()
                if not self._schema_ready:
                    ensure_schema(con)
                    if self._recreated and self.on_recreate is not None:
                        self.on_recreate(con)
                    self._schema_ready, self._recreated = True, False
                if self._file_id is None:
                    self._file_id = self._identity()
                if not self._same_file():  # replaced between the check and the open: write nothing
                    self.stats.failures += 1
                    return 0
                con.execute("BEGIN")
                inserted = insert_batch(con, table)
                new_marks = insert_marks(con, self._pending_marks) if self._pending_marks else 0
                new_funding = insert_funding(con, self._pending_funding) if self._pending_funding else 0
                if not self._same_file():  # replaced during the insert: these rows would go to the old file
                    con.execute("ROLLBACK")
                    self.stats.failures += 1
                    return 0
                con.execute("COMMIT")
                self._pending, self._pending_rows = [], 0
                self._pending_marks, self._pending_funding = [], []
                self.stats.marks_inserted += new_marks
                self.stats.funding_inserted += new_funding
                self.buffer.held_by_writer = 0
                for hook in self.hooks:
                    try:
                        hook(con, table, inserted)
                    except Exception:  # a status/alert hook must never take ticks down with it
                        log.exception("after-flush hook %s failed", getattr(hook, "__name__", hook))
        except StoreBusy:
            self.stats.failures += 1
            log.warning("tick file locked for >%.1fs; %d ticks kept in memory, retrying", self.lock_budget_s,
                        self._pending_rows)
            return 0
        except (StoreError, duckdb.Error, OSError) as exc:
            self.stats.failures += 1
            log.error("flush failed (%s); %d ticks kept in memory, retrying", exc, self._pending_rows)
            self._stop.wait(min(1.0, self.flush_s * 4))
            return 0
        except Exception:
            self.stats.failures += 1
            log.exception("flush failed unexpectedly; %d ticks kept in memory, retrying", self._pending_rows)
            self._stop.wait(min(1.0, self.flush_s * 4))
            return 0
        ms = (time.perf_counter() - t0) * 1000
        cpu_ms = (time.thread_time() - cpu0) * 1000
        wait_ms = (opened - t0) * 1000
        s = self.stats
        s.total_cpu_ms += cpu_ms
        s.total_wait_ms += wait_ms
        s.flushes += 1
        s.rows_in += n_rows
        s.rows_inserted += inserted
        s.last_flush_ms = ms
        s.max_flush_ms = max(s.max_flush_ms, ms)
        s.total_flush_ms += ms
        if len(s.flush_ms_samples) < 100_000:
            s.flush_ms_samples.append(ms)
        if n_rows:
            log.debug("flushed %d ticks (%d new) in %.1f ms (CPU %.1f ms, opening the file %.1f ms)", n_rows,
                      inserted, ms, cpu_ms, wait_ms)
        return inserted

    def _take_marks(self) -> None:
        """Move buffered mark / funding rows to pending, setting aside those that cannot be real."""
        marks, funding = self.marks.drain(marks=len(self._pending_marks) < self.marks.capacity)
        if self.marks.dropped > self._marks_dropped:
            log.error("%d mark-price row(s) dropped: %d wait in memory (cap) while flushes fail",
                      self.marks.dropped - self._marks_dropped, self.unflushed_marks)
            self._marks_dropped = self.marks.dropped
        for rows, check, pending, what in ((marks, mark_problem, self._pending_marks, "mark-price"),
                                           (funding, funding_problem, self._pending_funding, "funding")):
            if not rows:
                continue
            good, bad = split_plausible(rows, check)
            pending.extend(good)
            if bad:
                self.stats.marks_rejected += len(bad)
                log.error("set aside %d %s row(s) that cannot be real (not stored); first: %s", len(bad), what, bad[0])

    @property
    def unflushed_marks(self) -> int:
        """Mark-price and funding rows held in memory, not yet committed."""
        return len(self._pending_marks) + len(self._pending_funding) + len(self.marks)

    def _reject(self, reasons: list[str]) -> None:
        if reasons:
            self.stats.rejected += len(reasons)
            log.error("set aside %d row(s) that cannot be trades (not stored); first: %s", len(reasons), reasons[0])

    def stop(self, timeout: float = 30.0) -> int:
        """Stop the loop and flush whatever is still buffered (retrying on lock conflicts until `timeout`).

        Returns the number of ticks that could not be committed (0 when everything is in the file)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        self._stop.clear()
        while True:
            self.flush_once()
            if not self._pending_rows and not len(self.buffer) and not self.unflushed_marks:
                break
            if self.fatal:
                log.error("%d ticks not written: %s", self.unflushed, self.fatal)
                break
            if time.monotonic() > deadline:
                log.error("could not flush %d ticks before the shutdown deadline; they are lost", self.unflushed)
                break
            time.sleep(0.05)
        self._stop.set()
        return self.unflushed

    @property
    def lock_retries(self) -> int:
        return LockStats.retries
