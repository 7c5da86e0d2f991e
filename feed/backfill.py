"""Gap tracking by trade id and REST backfill by id, one worker thread per market.

The stream calls `GapTracker.observe()` for every live trade. Any jump past `last + 1` queues a backfill of
the missing ids; duplicates and older ids pass through (the writer stores each id once). The worker pages
the REST endpoint from the first missing id (≤ 1000 per request), pushes the trades into the same buffer as
the live stream — which keeps running meanwhile — and records gap_found / gap_filled / gap_unrecoverable.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

from feed.binance import MarketSpec, MalformedFrame, parse_rest_page
from feed.rest import RestClient, RestError
from feed.state import IngestState, now_us
from tickstore.writer import TickBuffer

log = logging.getLogger(__name__)

PAGE = 1000


@dataclass(frozen=True)
class Gap:
    """Missing ids `first_id..last_id`; `last_id=None` means "up to the present" (resume after a restart)."""

    symbol: str
    first_id: int          # first missing id
    last_id: int | None    # last missing id, or None: until the live stream's first id / the exchange's newest
    reason: str
    before_us: int | None = None   # trade time of the id just after the gap (cap check)
    after_us: int | None = None    # trade time of the id just before the gap
    history: bool = False          # requested history (--history on an empty file), not a gap: not counted as one


class Backfiller:
    """Fills queued id gaps of one market over REST without ever pausing the live stream."""

    def __init__(self, spec: MarketSpec, rest: RestClient, buffer: TickBuffer, state: IngestState,
                 max_backfill_s: float = 6 * 3600, stop: threading.Event | None = None, workers: int = 2) -> None:
        self.spec = spec
        self.rest = rest
        self.buffer = buffer
        self.state = state
        self.max_backfill_s = max_backfill_s
        self.stop = stop or threading.Event()
        self.queue: queue.Queue[Gap | None] = queue.Queue()
        self.active = 0
        self._active_lock = threading.Lock()
        self.tracker: GapTracker | None = None
        self.gone: set[str] = set()   # delisted symbols: their gaps are dropped, never retried
        # called with (symbol, reason) when REST says the symbol does not exist (any more)
        self.on_invalid_symbol = None
        # gaps are independent id ranges, so several workers page them at once (start-up catch-ups per symbol)
        self._threads = [threading.Thread(target=self._run, name=f"backfill-{spec.name}-{i}", daemon=True)
                         for i in range(workers)]

    def start(self) -> "Backfiller":
        for t in self._threads:
            t.start()
        return self

    def submit(self, gap: Gap) -> None:
        if gap.history and gap.last_id is None:
            log.info("%s %s: loading history from id %d to the present (%s)", self.spec.name, gap.symbol,
                     gap.first_id, gap.reason)
        elif gap.history:
            log.info("%s %s: queued %d ids of history [%d..%d] (%s)", self.spec.name, gap.symbol,
                     gap.last_id - gap.first_id + 1, gap.first_id, gap.last_id, gap.reason)
        elif gap.last_id is not None:
            self._found(gap.symbol, gap.first_id, gap.last_id, gap.reason)
        else:
            log.info("%s %s: catching up from id %d (%s)", self.spec.name, gap.symbol, gap.first_id, gap.reason)
        self.queue.put(gap)

    def _found(self, symbol: str, first: int, last: int, reason: str) -> None:
        self.state.stats(self.spec.name, symbol).gaps_found += 1
        self.state.event("gap_found", self.spec.name, symbol, first, last, last - first + 1, reason)
        log.info("%s %s: gap of %d ids [%d..%d] (%s); backfilling over REST", self.spec.name, symbol,
                 last - first + 1, first, last, reason)

    def idle(self) -> bool:
        return self.queue.empty() and self.active == 0

    def join(self, timeout: float | None = None) -> None:
        for _ in self._threads:
            self.queue.put(None)
        for t in self._threads:
            t.join(timeout)

    def _run(self) -> None:
        while not self.stop.is_set():
            gap = self.queue.get()
            if gap is None:
                return
            if gap.symbol in self.gone:
                continue
            with self._active_lock:
                self.active += 1
            try:
                self._fill(gap)
            except RestError as exc:
                if self.stop.is_set():
                    return
                if exc.code == -1121:  # "Invalid symbol.": delisted; reported once, its gaps are not retried
                    self.gone.add(gap.symbol)
                    if self.on_invalid_symbol is not None:
                        self.on_invalid_symbol(gap.symbol, f"REST {exc}")
                last = gap.last_id if gap.last_id is not None else self._known_last(gap.symbol, gap.first_id)
                self._unrecoverable(gap.symbol, gap.first_id, last, f"REST failed: {exc}")
            except Exception:
                log.exception("backfill of %s [%d..%s] crashed", gap.symbol, gap.first_id, gap.last_id)
                last = gap.last_id if gap.last_id is not None else self._known_last(gap.symbol, gap.first_id)
                self._unrecoverable(gap.symbol, gap.first_id, last, "backfill crashed (see log)")
            finally:
                with self._active_lock:
                    self.active -= 1

    def _fill(self, gap: Gap) -> None:
        sym, first, open_ended = gap.symbol, gap.first_id, gap.last_id is None
        now = now_us()
        newest_us = gap.before_us if gap.before_us is not None else now
        if gap.after_us is not None and (newest_us - gap.after_us) / 1e6 > self.max_backfill_s:
            start_id = self.first_id_at(sym, newest_us - int(self.max_backfill_s * 1e6))
            if start_id is not None and start_id > first:
                stop_at = start_id - 1 if gap.last_id is None else min(start_id - 1, gap.last_id)
                self._unrecoverable(sym, first, stop_at, f"older than --max-backfill {self.max_backfill_s / 3600:g}h")
                first = start_id
        filled = 0
        next_id = first
        short_pages = 0
        while not self.stop.is_set():
            last = gap.last_id if not open_ended else self.tracker.resume_target(sym)
            if last is not None and next_id > last:
                break
            while self.buffer.full and not self.stop.is_set():
                self.stop.wait(0.5)  # the memory cap: wait for flushes rather than add pages
            rows = self.rest.get(self.spec.backfill_path, {"symbol": sym, "fromId": next_id, "limit": PAGE})
            try:
                page = parse_rest_page(rows, self.spec.name, sym)
            except MalformedFrame as exc:
                raise RestError(str(exc)) from None
            trades = page.trades
            if page.rejected:
                self._rejected(sym, page.rejected)
            if last is not None:
                trades = [t for t in trades if t.trade_id <= last]
            trades.sort(key=lambda t: t.trade_id)
            if trades:
                if trades[0].trade_id > next_id:
                    self._unrecoverable(sym, next_id, trades[0].trade_id - 1, "exchange no longer serves these ids")
                self.buffer.extend(trades)
                filled += len(trades)
                next_id = trades[-1].trade_id + 1
            if len(rows) < PAGE and (last is None or next_id <= last):
                if open_ended and last is None:
                    break  # caught up with the exchange; the live stream takes over from here
                # REST can trail the stream by a moment: ask again before giving up on the rest
                short_pages += 1
                if short_pages > 5:
                    self._unrecoverable(sym, next_id, last, "exchange returned fewer ids than expected")
                    next_id = last + 1
                    break
                self.stop.wait(0.5 * short_pages)
        st = self.state.stats(self.spec.name, sym)
        st.trades_backfilled += filled
        if gap.history:
            log.info("%s %s: loaded %d trades of history [%d..%d] (%s)", self.spec.name, sym, filled, first,
                     next_id - 1, gap.reason)
        elif filled:
            if open_ended:
                self._found(sym, first, next_id - 1, gap.reason)
            st.gaps_filled += 1
            self.state.event("gap_filled", self.spec.name, sym, first, next_id - 1, filled)
            log.info("%s %s: backfilled %d trades [%d..%d]", self.spec.name, sym, filled, first, next_id - 1)
        if open_ended and not self.stop.is_set():
            self.tracker.finish_resume(sym, next_id - 1)

    def _known_last(self, symbol: str, first: int) -> int:
        """Last id an open-ended catch-up from `first` was meant to reach, as far as the stream told us."""
        target = self.tracker.resume_target(symbol) if self.tracker is not None else None
        if self.tracker is not None:
            self.tracker.abandon_resume(symbol)
        return target if target is not None else first - 1  # nothing known: no range to record

    def first_id_at(self, symbol: str, ts_us: int) -> int | None:
        """First tick id at or after `ts_us` (spot: first trade id of the aggTrade; usdm: aggTrade id)."""
        start_ms = ts_us // 1000
        for _ in range(48):
            params = {"symbol": symbol, "startTime": start_ms, "endTime": start_ms + 3_599_999, "limit": 1}
            rows = self.rest.get(self.spec.lookup_path, params)
            if rows:
                r = rows[0]
                return int(r["f"]) if self.spec.name == "spot" else int(r["a"])
            start_ms += 3_600_000
            if start_ms > time.time() * 1000:
                return None
        return None

    def _rejected(self, symbol: str, reasons: list[str]) -> None:
        """REST rows that cannot be real trades: counted with the malformed frames, logged, never stored."""
        st = self.state.stats(self.spec.name, symbol)
        st.malformed += len(reasons)
        self.state.event("malformed", self.spec.name, symbol, count=len(reasons), detail=reasons[0][:200])
        log.warning("%s %s: %d REST row(s) rejected; first: %s", self.spec.name, symbol, len(reasons), reasons[0])

    def _unrecoverable(self, symbol: str, first: int, last: int, why: str) -> None:
        if last < first:
            return
        st = self.state.stats(self.spec.name, symbol)
        st.gaps_unrecoverable += 1
        self.state.event("gap_unrecoverable", self.spec.name, symbol, first, last, last - first + 1, why)
        log.error("%s %s: %d ids [%d..%d] unrecoverable: %s", self.spec.name, symbol, last - first + 1, first, last, why)


class GapTracker:
    """Highest id per symbol; turns id jumps into backfill requests. Called from receive threads.

    While a symbol is resuming (an open-ended catch-up from its last stored id is running), the jump to the
    first live id is not a new gap: the catch-up stops there instead. Later jumps are gaps as usual.
    """

    def __init__(self, market: str, state: IngestState, backfiller: Backfiller) -> None:
        self.market = market
        self.state = state
        self.backfiller = backfiller
        backfiller.tracker = self
        self.lock = threading.Lock()
        self._resuming: dict[str, int | None] = {}   # symbol -> first live id seen during the catch-up
        # symbols loading --history on an empty file, until their first live print: what is fetched for them till
        # then (the catch-up, ids between it and the stream) is requested history, not a gap
        self._history: set[str] = set()

    def prime(self, symbol: str, last_id: int, last_us: int | None) -> None:
        st = self.state.stats(self.market, symbol)
        st.last_trade_id, st.last_trade_us = last_id, last_us

    def prime_at_subscription(self, symbol: str, last_id: int, at_us: int) -> None:
        """A symbol with nothing stored: start from the exchange's newest id when it is subscribed, so prints made
        before its first live one (and during a drop before it) are fetched; as requested history, not a gap."""
        self.prime(symbol, last_id, at_us)
        with self.lock:
            self._history.add(symbol)

    def prime_if_unknown(self, symbol: str, last_id: int, last_us: int | None) -> bool:
        """Prime a symbol no id is known of yet (none stored, none streamed); False if one arrived meanwhile."""
        st = self.state.stats(self.market, symbol)
        with self.lock:
            if st.last_trade_id is not None:
                return False
            st.last_trade_id, st.last_trade_us = last_id, last_us
            return True

    def catch_up_to(self, symbol: str, newest_id: int, reason: str) -> bool:
        """Fetch the ids after the highest known one up to `newest_id` (the exchange's newest, asked after the
        stream was up: anything newer comes live); False if there is nothing to fetch."""
        st = self.state.stats(self.market, symbol)
        with self.lock:
            last = st.last_trade_id
            if last is None or newest_id <= last:
                return False
            st.last_trade_id = newest_id
            history = symbol in self._history
        self.backfiller.submit(Gap(symbol, last + 1, newest_id, reason, after_us=st.last_trade_us, history=history))
        return True

    def resume(self, symbol: str, reason: str, history: bool = False) -> None:
        """Catch up from the primed id to the present over REST: after downtime (a gap), or `history` asked for
        on an empty file (not counted as a gap)."""
        st = self.state.stats(self.market, symbol)
        with self.lock:
            self._resuming[symbol] = None
            if history:
                self._history.add(symbol)
            history = symbol in self._history
        self.backfiller.submit(Gap(symbol, st.last_trade_id + 1, None, reason, after_us=st.last_trade_us,
                                   history=history))

    def resume_target(self, symbol: str) -> int | None:
        """Last id the catch-up must fetch (just before the first live id), or None while none arrived."""
        first_live = self._resuming.get(symbol)
        return None if first_live is None else first_live - 1

    def is_resuming(self, symbol: str) -> bool:
        return symbol in self._resuming

    def abandon_resume(self, symbol: str) -> None:
        """The catch-up of `symbol` failed for good: later id jumps are gaps again."""
        with self.lock:
            self._resuming.pop(symbol, None)
            self._history.discard(symbol)

    def finish_resume(self, symbol: str, fetched_to: int) -> None:
        st = self.state.stats(self.market, symbol)
        with self.lock:
            first_live = self._resuming.pop(symbol, None)
            if first_live is None:  # no live print yet (a history load stays history until one arrives)
                if st.last_trade_id is None or fetched_to > st.last_trade_id:
                    st.last_trade_id = fetched_to
                return
            history = symbol in self._history
            self._history.discard(symbol)
        if fetched_to + 1 <= first_live - 1:
            self.backfiller.submit(Gap(symbol, fetched_to + 1, first_live - 1, "ids between catch-up and stream",
                                       history=history))

    def observe(self, t) -> bool:
        """Record a live trade; returns False for an id not above the highest seen (duplicate or late frame).
        The caller stores such trades anyway: the writer keeps each id once, and a late frame fills its own gap."""
        st = self.state.stats(self.market, t.symbol)
        with self.lock:
            last = st.last_trade_id
            if last is not None and t.trade_id <= last:
                st.duplicates += 1
                return False
            st.last_trade_id = t.trade_id
            prev_us = st.last_trade_us
            st.last_trade_us = t.ts_us
            history = False
            if t.symbol in self._resuming:
                if self._resuming[t.symbol] is None:
                    self._resuming[t.symbol] = t.trade_id
                last = None
            elif self._history and t.symbol in self._history:  # first live print after a history load
                self._history.discard(t.symbol)
                history = True
        st.last_recv_us = t.recv_us
        st.ticks_total += 1
        if last is not None and t.trade_id > last + 1:
            self.backfiller.submit(Gap(t.symbol, last + 1, t.trade_id - 1,
                                       "ids between the history load and the stream" if history else
                                       "id jump on stream", before_us=t.ts_us, after_us=prev_us, history=history))
        return True
