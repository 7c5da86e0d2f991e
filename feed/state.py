"""Per-symbol ingestion state shared by the stream, the backfiller and the writer's status hook."""
from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from tickstore.connection import Connection
from tickstore.state import append_ingest_events, upsert_ingest_status


STATUS_REFRESH_S = 5.0  # a status row unchanged this long is rewritten (the app calls a row stale after 15 s)
STATUS_REFRESH_SHARE = 10  # ... at most 1/this of the rows (or STATUS_REFRESH_MIN_ROWS) a flush, oldest first,
STATUS_REFRESH_MIN_ROWS = 64  # so the refreshes spread over the flushes (each row within 2 x STATUS_REFRESH_S)


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class SymbolStats:
    market: str
    symbol: str
    last_trade_id: int | None = None     # highest id seen (stream or store)
    last_trade_us: int | None = None
    last_recv_us: int | None = None
    ticks_total: int = 0
    reconnects: int = 0
    gaps_found: int = 0
    gaps_filled: int = 0
    gaps_unrecoverable: int = 0
    trades_backfilled: int = 0
    malformed: int = 0
    duplicates: int = 0
    connected: bool = False               # the connection carrying this symbol is up
    exchange_status: str = "TRADING"      # exchangeInfo's status when last checked, or 'DELISTED'
    rate_window: deque = field(default_factory=lambda: deque(maxlen=64))   # (monotonic, ticks_total)
    written: tuple | None = None         # what its ingest_status row last said (IngestState.write_status)
    written_at: float = -math.inf        # when (monotonic) that row was written


@dataclass(frozen=True)
class Event:
    ts_us: int
    market: str | None
    symbol: str | None
    kind: str          # started | connected | disconnected | reconnect | rotated | gap_found | gap_filled | gap_unrecoverable | malformed | server_shutdown | delisted | halted | trading_resumed | stopped
    first_id: int | None = None
    last_id: int | None = None
    count: int | None = None
    detail: str | None = None


class IngestState:
    """Thread-safe registry of SymbolStats, connection flags and pending events."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.symbols: dict[tuple[str, str], SymbolStats] = {}
        self.connected: dict[str, bool] = {}     # market -> every connection of the market is up
        self.links: dict[str, dict[str, bool]] = {}  # market -> {connection name: up}
        self._events: list[Event] = []
        self._lag_keys: frozenset[tuple[str, str]] = frozenset()

    def set_link(self, market: str, link: str, symbols: list[str], up: bool) -> bool:
        """Record whether connection `link` (carrying `symbols`) of `market` is up; returns its previous state."""
        with self.lock:
            links = self.links.setdefault(market, {})
            was = links.get(link, False)
            links[link] = up
            self.connected[market] = all(links.values())
        for sym in symbols:
            self.stats(market, sym).connected = up
        return was

    def drop_link(self, market: str, link: str) -> None:
        """Forget connection `link` of `market` (it carries no symbol any more)."""
        with self.lock:
            links = self.links.setdefault(market, {})
            links.pop(link, None)
            self.connected[market] = all(links.values())

    def stats(self, market: str, symbol: str) -> SymbolStats:
        key = (market, symbol)
        st = self.symbols.get(key)
        if st is None:
            with self.lock:
                st = self.symbols.setdefault(key, SymbolStats(market, symbol))
        return st

    def event(self, kind: str, market: str | None = None, symbol: str | None = None, first_id: int | None = None,
              last_id: int | None = None, count: int | None = None, detail: str | None = None) -> None:
        with self.lock:
            self._events.append(Event(now_us(), market, symbol, kind, first_id, last_id, count, detail))

    def drain_events(self) -> list[Event]:
        with self.lock:
            ev, self._events = self._events, []
        return ev

    def requeue_events(self, ev: list[Event]) -> None:
        with self.lock:
            self._events[:0] = ev

    def lag(self) -> "LagView":
        """{(market, symbol): {"connected", "last_tick_age_s"}} for the alert engine's 'lag' metric: a read-only
        mapping whose values are computed when looked up, so an engine reading its rules' few symbols after every
        flush does not pay for every streamed one."""
        if len(self.symbols) != len(self._lag_keys):  # symbols are only ever added
            with self.lock:
                self._lag_keys = frozenset(self.symbols)
        return LagView(self.symbols, self._lag_keys, now_us())

    # writer hook -------------------------------------------------------------------------------------------
    def write_status(self, con: Connection, batch: pa.Table, inserted: int) -> None:
        """After-flush hook: append pending ingest_events and write the ingest_status rows that changed.

        A symbol's row is written when anything but its rate changed since its last write, and otherwise once it
        is STATUS_REFRESH_S old (rates of quiet symbols decay, and `updated_at` says the ingestor is alive). Those
        refreshes are spread over the flushes (the oldest rows first, a share of them per flush, every row within
        2 x STATUS_REFRESH_S), so no flush rewrites every symbol's row at once: a flush costs one small statement
        whatever the number of symbols."""
        ev = self.drain_events()
        try:
            append_ingest_events(con, [(e.ts_us, e.market, e.symbol, e.kind, e.first_id, e.last_id, e.count, e.detail)
                                       for e in ev])
        except Exception:
            self.requeue_events(ev)
            raise
        now_mono = time.monotonic()
        due_at = now_mono - STATUS_REFRESH_S
        changed, stale = [], []
        everyone = list(self.symbols.values())
        for s in everyone:
            s.rate_window.append((now_mono, s.ticks_total))
            key = (s.connected, s.ticks_total, s.last_trade_id, s.last_recv_us, s.reconnects, s.gaps_found,
                   s.gaps_filled, s.gaps_unrecoverable, s.trades_backfilled, s.malformed, s.duplicates,
                   s.exchange_status)
            if key != s.written:
                changed.append((s, key))
            elif s.written_at <= due_at:
                stale.append((s, key))
        if stale:
            overdue = now_mono - 2 * STATUS_REFRESH_S
            stale.sort(key=lambda sk: sk[0].written_at)
            share = max(STATUS_REFRESH_MIN_ROWS, -(-len(everyone) // STATUS_REFRESH_SHARE),
                        sum(1 for s, _ in stale if s.written_at <= overdue))
            changed.extend(stale[:share])
        stamp = now_us()
        rows = []
        for s, key in changed:
            t0, n0 = s.rate_window[0]
            rate = (s.ticks_total - n0) / (now_mono - t0) if now_mono - t0 > 0.5 else None
            rows.append((s.market, s.symbol, key[0], s.last_trade_id, s.last_trade_us, s.last_recv_us,
                         s.ticks_total, rate, s.reconnects, s.gaps_found, s.gaps_filled, s.gaps_unrecoverable,
                         s.trades_backfilled, s.malformed, s.duplicates, stamp, s.exchange_status))
        upsert_ingest_status(con, rows)
        for s, key in changed:  # only once the rows are in (a failed upsert writes them again next flush)
            s.written, s.written_at = key, now_mono


class LagView(Mapping):
    """(market, symbol) -> {"connected", "last_tick_age_s"} as of `now_us` (see IngestState.lag)."""

    def __init__(self, symbols: dict[tuple[str, str], SymbolStats], keys: frozenset, now: int) -> None:
        self._symbols, self._keys, self._now = symbols, keys, now

    def __getitem__(self, key: tuple[str, str]) -> dict:
        if key not in self._keys:
            raise KeyError(key)
        s = self._symbols[key]
        return {"connected": s.connected,
                "last_tick_age_s": (self._now - s.last_recv_us) / 1e6 if s.last_recv_us else float("inf")}

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def keys(self) -> frozenset:  # a set (the engine compares it with the previous round's)
        return self._keys


def us_to_dt(us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC)
