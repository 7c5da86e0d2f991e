"""Mark prices and funding rates of perpetuals (usdm): the buffer the feed fills, and their inserts.

Rows are plain tuples with times as integer microseconds since the epoch (UTC):

- mark row, `MARK_COLUMNS` order: `(market, symbol, ts_us, mark_price, index_price, funding_rate, next_funding_us)`
  (`ts` = event time E of the markPriceUpdate frame; index price, funding rate and next funding time may be None);
- funding row, `FUNDING_COLUMNS` order: `(market, symbol, funding_time_us, funding_rate, mark_price)` (mark price
  None when REST gives none).

The tick writer drains a `MarkBuffer` on every flush and inserts its rows in the same connection and transaction as
the ticks (one connection per flush). A row arriving twice (stream and a reconnect's overlap, REST pages that
overlap) is stored once: `funding_rates` by its primary key (`ON CONFLICT DO NOTHING`), `mark_prices` (no index:
see tickstore.schema) by an anti-join against the stored rows of the batch's time range, like ticks. Rows that cannot be real
(see `mark_problem` / `funding_problem`) are set aside, logged and counted, never stored.
"""
from __future__ import annotations

import datetime as dt
import math
import threading

import duckdb
import pyarrow as pa

from core.plausible import FUNDING_RATE_MAX, now_us, time_problem, ts_range_problem

MARK_COLUMNS = ("market", "symbol", "ts", "mark_price", "index_price", "funding_rate", "next_funding_time")
FUNDING_COLUMNS = ("market", "symbol", "funding_time", "funding_rate", "mark_price")

_TS = pa.timestamp("us", tz="UTC")
MARK_SCHEMA = pa.schema([("market", pa.string()), ("symbol", pa.string()), ("ts", _TS), ("mark_price", pa.float64()),
                         ("index_price", pa.float64()), ("funding_rate", pa.float64()),
                         ("next_funding_time", _TS)])
FUNDING_SCHEMA = pa.schema([("market", pa.string()), ("symbol", pa.string()), ("funding_time", _TS),
                            ("funding_rate", pa.float64()), ("mark_price", pa.float64())])

INSERT_MARKS_SQL = """
INSERT INTO mark_prices
SELECT b.market, b.symbol, b.ts, b.mark_price, b.index_price, b.funding_rate, b.next_funding_time
FROM (SELECT DISTINCT ON (market, symbol, ts) * FROM mark_batch) b
ANTI JOIN (SELECT market, symbol, ts FROM mark_prices WHERE ts BETWEEN $lo AND $hi) t
  ON b.market = t.market AND b.symbol = t.symbol AND b.ts = t.ts"""

INSERT_FUNDING_SQL = """
INSERT INTO funding_rates
SELECT market, symbol, funding_time, funding_rate, mark_price
FROM (SELECT DISTINCT ON (market, symbol, funding_time) * FROM funding_batch)
ON CONFLICT DO NOTHING"""


def _price_problem(name: str, v, required: bool) -> str | None:
    if v is None:
        return f"{name} missing" if required else None
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not (0.0 < v < math.inf):
        return f"{name} {v!r} is not a positive finite price"
    return None


def _rate_problem(v, required: bool) -> str | None:
    if v is None:
        return "funding rate missing" if required else None
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not abs(v) <= FUNDING_RATE_MAX:
        return f"funding rate {v!r} is outside ±{FUNDING_RATE_MAX:g}"
    return None


def mark_problem(row: tuple, now: int | None = None) -> str | None:
    """Why a mark row cannot be a real mark-price update, or None when it can."""
    if len(row) != len(MARK_COLUMNS):
        return f"expected {len(MARK_COLUMNS)} fields, got {len(row)}"
    market, symbol, ts, mark, index, rate, nxt = row
    if not isinstance(market, str) or not isinstance(symbol, str) or not symbol:
        return "market/symbol missing"
    if type(ts) is not int:
        return f"event time {ts!r} is not an integer"
    if nxt is not None and type(nxt) is not int:
        return f"next funding time {nxt!r} is not an integer"
    return (time_problem(ts, now) or (ts_range_problem(nxt) if nxt is not None else None)
            or _price_problem("mark price", mark, True) or _price_problem("index price", index, False)
            or _rate_problem(rate, False))


def funding_problem(row: tuple, now: int | None = None) -> str | None:
    """Why a funding row cannot be a real settled funding rate, or None when it can."""
    if len(row) != len(FUNDING_COLUMNS):
        return f"expected {len(FUNDING_COLUMNS)} fields, got {len(row)}"
    market, symbol, ft, rate, mark = row
    if not isinstance(market, str) or not isinstance(symbol, str) or not symbol:
        return "market/symbol missing"
    if type(ft) is not int:
        return f"funding time {ft!r} is not an integer"
    return time_problem(ft, now) or _rate_problem(rate, True) or _price_problem("mark price", mark, False)


class MarkBuffer:
    """Thread-safe buffer of mark rows and funding rows between the feed and the tick writer.

    At most `capacity` mark rows wait (about 40 MB; 2.4 h of 23 symbols at one update a second) while flushes fail;
    newer ones are dropped and counted in `dropped` (the exchange cannot replay them; funding rows are few and
    always kept, and REST serves them again anyway)."""

    def __init__(self, capacity: int = 200_000) -> None:
        self._marks: list[tuple] = []
        self._funding: list[tuple] = []
        self._lock = threading.Lock()
        self.capacity = capacity
        self.dropped = 0

    def add_marks(self, rows: list[tuple]) -> None:
        if rows:
            with self._lock:
                room = self.capacity - len(self._marks)
                if room < len(rows):
                    self.dropped += len(rows) - max(room, 0)
                    rows = rows[:max(room, 0)]
                self._marks.extend(rows)

    def add_funding(self, rows: list[tuple]) -> None:
        if rows:
            with self._lock:
                self._funding.extend(rows)

    def drain(self, marks: bool = True) -> tuple[list[tuple], list[tuple]]:
        """(mark rows, funding rows) buffered so far, oldest first; the buffer is empty afterwards (of mark rows only
        when `marks`: a writer already holding `capacity` uncommitted ones leaves the rest here, under the cap)."""
        with self._lock:
            funding, self._funding = self._funding, []
            taken: list[tuple] = []
            if marks:
                taken, self._marks = self._marks, []
        return taken, funding

    def __len__(self) -> int:
        return len(self._marks) + len(self._funding)


def split_plausible(rows: list[tuple], check) -> tuple[list[tuple], list[str]]:
    """(rows `check` accepts, a reason for each row set aside)."""
    now = now_us()
    good, bad = [], []
    for r in rows:
        try:
            problem = check(r, now)
        except (TypeError, ValueError) as exc:
            problem = f"unreadable row: {exc}"
        if problem:
            bad.append(f"{str(r)[:160]}: {problem}")
        else:
            good.append(r)
    return good, bad


def _table(rows: list[tuple], schema: pa.Schema) -> pa.Table:
    cols = list(zip(*rows))
    arrays = []
    for values, fld in zip(cols, schema):
        if pa.types.is_timestamp(fld.type):
            arrays.append(pa.array(values, type=pa.int64()).cast(fld.type))
        else:
            arrays.append(pa.array(values, type=fld.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _insert(con: duckdb.DuckDBPyConnection, rows: list[tuple], schema: pa.Schema, name: str, sql: str,
            params: dict | None = None) -> int:
    if not rows:
        return 0
    con.register(name, _table(rows, schema))
    try:
        return int(con.execute(sql, params).fetchall()[0][0])
    finally:
        con.unregister(name)


def insert_marks(con: duckdb.DuckDBPyConnection, rows: list[tuple]) -> int:
    """Store mark rows (already checked), each (market, symbol, ts) once; returns rows new to the file."""
    times = [r[2] for r in rows]
    lo, hi = (dt.datetime.fromtimestamp(t / 1e6, dt.UTC) for t in (min(times), max(times)))
    return _insert(con, rows, MARK_SCHEMA, "mark_batch", INSERT_MARKS_SQL, {"lo": lo, "hi": hi})


def insert_funding(con: duckdb.DuckDBPyConnection, rows: list[tuple]) -> int:
    """Store funding rows (already checked), each (market, symbol, funding_time) once; returns rows new to the file."""
    return _insert(con, rows, FUNDING_SCHEMA, "funding_batch", INSERT_FUNDING_SQL)


def last_funding_times(con: duckdb.DuckDBPyConnection, market: str) -> dict[str, int]:
    """Newest stored funding time (µs) per symbol of `market`."""
    rows = con.execute("SELECT symbol, epoch_us(max(funding_time)) FROM funding_rates WHERE market = $m GROUP BY symbol",
                       {"m": market}).fetchall()
    return {s: int(us) for s, us in rows if us is not None}
