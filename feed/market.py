"""One market's feed: its connections (shards), one REST client whose request-weight budget every connection's
backfill shares, the gap tracker and backfiller, and the watch over symbols delisted or halted mid-run."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from feed.backfill import Backfiller, GapTracker
from feed.binance import MarketSpec, symbol_streams
from feed.funding import FundingBackfiller
from feed.rest import RestClient, RestError
from feed.shards import NAMES_PER_MESSAGE, URL_MAX_CHARS, AttemptLimiter, plan_shards
from feed.state import IngestState, now_us
from feed.stream import Reconnected, ShardStream
from tickstore.writer import TickBuffer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardLayout:
    """How a market's symbols are spread over connections."""

    market: str
    symbols: int
    streams: int
    cap: int
    connections: list[int]   # streams per connection

    def summary(self) -> str:
        return (f"{self.market}: {self.symbols} symbols, {self.streams} streams over {len(self.connections)} "
                f"connection(s) of at most {self.cap} streams ({'/'.join(map(str, self.connections))})")


class MarketFeed:
    """Streams, backfill and symbol checks of one market. `start()` / `stop()`; `shards` are the connections."""

    def __init__(self, spec: MarketSpec, symbols: list[str], buffer: TickBuffer, state: IngestState, *,
                 rest_base: str | None, ws_base: str | None, stop: threading.Event, streams_per_connection: int,
                 weight_limit: int = 6000, max_backfill_s: float = 6 * 3600, watchdog_s: float = 30.0,
                 rotate_after_s: float = 23.5 * 3600, status_check_s: float = 60.0,
                 limiter: AttemptLimiter | None = None, url_max: int = URL_MAX_CHARS,
                 names_per_message: int = NAMES_PER_MESSAGE, marks=None,
                 funding_history_s: float = 30 * 86400.0) -> None:
        self.spec = spec
        self.market = spec.name
        self.symbols = list(symbols)
        self.state = state
        self.stop_event = stop
        self.status_check_s = status_check_s
        self.rest = RestClient(rest_base or spec.rest_base, weight_limit=weight_limit, stop=stop)
        self.backfiller = Backfiller(spec, self.rest, buffer, state, max_backfill_s, stop)
        self.backfiller.on_invalid_symbol = lambda sym, why: self.mark_delisted({sym}, why)
        self.tracker = GapTracker(spec.name, state, self.backfiller)
        self.funding: FundingBackfiller | None = None
        if spec.funding_path and marks is not None:  # usdm: mark prices ride on the trade connections
            self.funding = FundingBackfiller(spec, self.symbols, self.rest, marks, state, history_s=funding_history_s,
                                             stop=stop)
        self.limiter = limiter or AttemptLimiter()
        per_symbol = len(symbol_streams(spec, "x"))
        groups = plan_shards(self.symbols, per_symbol, streams_per_connection)
        self.layout = ShardLayout(spec.name, len(self.symbols), per_symbol * len(self.symbols),
                                  streams_per_connection, [per_symbol * len(g) for g in groups])
        self.shards = [ShardStream(spec, g, buffer, state, self.tracker, ws_base, watchdog_s=watchdog_s,
                                   rotate_after_s=rotate_after_s, stop=stop, marks=self.funding,
                                   limiter=self.limiter, index=i + 1,
                                   url_max=url_max, names_per_message=names_per_message,
                                   on_refused=self._on_refused, on_reconnected=self.catch_up)
                       for i, g in enumerate(groups)]
        self.delisted: set[str] = set()
        self.halted: dict[str, float] = {}   # symbol -> wall time (µs) it was found not trading
        self._check_lock = threading.RLock()
        self._refusal_check = 0.0
        self._ticker_lock = threading.Lock()
        self._ticker: tuple[float, dict[str, int]] = (-1e9, {})
        self._monitor = threading.Thread(target=self._watch_symbols, name=f"symbols-{spec.name}", daemon=True)

    @property
    def connections(self) -> int:
        return sum(s.connections for s in self.shards)

    @property
    def malformed(self) -> int:
        return sum(s.malformed for s in self.shards)

    def start(self) -> "MarketFeed":
        self.backfiller.start()
        if self.funding is not None:
            self.funding.start()
        for shard in self.shards:  # each waits for the shared attempt limiter: the openings are staggered
            shard.start()
        self._monitor.start()
        return self

    def abort(self, reason: str) -> None:
        for shard in self.shards:
            if shard.current is not None:
                shard.current.abort(reason)

    def join(self, timeout: float = 5.0) -> None:
        for shard in self.shards:
            shard.join(timeout)
        self.backfiller.join(timeout)
        if self.funding is not None:
            self.funding.join(timeout)
        self._monitor.join(timeout)

    # symbols that stop trading -----------------------------------------------------------------------------
    def apply_statuses(self, statuses: dict[str, str]) -> None:
        """exchangeInfo's status per symbol ({} entries missing = not listed): report the changes of our symbols."""
        gone = {s for s in self.symbols if s not in statuses and s not in self.delisted}
        if gone:
            self.mark_delisted(gone, "no longer listed in exchangeInfo")
        for sym in self.symbols:
            status = statuses.get(sym)
            if status is None:
                continue
            st = self.state.stats(self.market, sym)
            if status != "TRADING" and sym not in self.halted:
                self.halted[sym] = now_us()
                st.exchange_status = status
                self.state.event("halted", self.market, sym, detail=f"exchangeInfo status {status}")
                log.warning("%s %s: not trading (exchangeInfo status %s); kept subscribed, not backfilled until it "
                            "trades again", self.market, sym, status)
            elif status == "TRADING" and sym in self.halted:
                del self.halted[sym]
                st.exchange_status = "TRADING"
                self.state.event("trading_resumed", self.market, sym, detail="exchangeInfo status TRADING")
                log.info("%s %s: trading again", self.market, sym)

    def mark_delisted(self, symbols: set[str], why: str) -> None:
        """Report `symbols` as delisted once, stop backfilling them and open later connections without them."""
        with self._check_lock:
            new = {s for s in symbols if s not in self.delisted}
            self.delisted |= new
        if not new:
            return
        self.backfiller.gone |= new
        for sym in sorted(new):
            self.halted.pop(sym, None)
            st = self.state.stats(self.market, sym)
            st.exchange_status = "DELISTED"
            st.connected = False
            self.state.event("delisted", self.market, sym, detail=why[:200])
            log.error("%s %s: delisted (%s); no longer streamed or backfilled", self.market, sym, why)
        for shard in self.shards:
            shard.drop_symbols(new)
        if self.funding is not None:
            self.funding.symbols = [s for s in self.funding.symbols if s not in new]

    def check_statuses(self) -> dict[str, str] | None:
        """One exchangeInfo call (within the market's weight budget) → apply its statuses; None if it failed."""
        with self._check_lock:
            try:
                info = self.rest.get(self.spec.exchange_info_path)
            except RestError as exc:
                if not self.stop_event.is_set():
                    log.warning("%s: cannot check symbol statuses: %s", self.market, exc)
                return None
            if not isinstance(info, dict) or not isinstance(info.get("symbols"), list):
                log.warning("%s: exchangeInfo answer without a symbol list; statuses not checked", self.market)
                return None
            statuses = {s.get("symbol"): s.get("status") for s in info["symbols"] if isinstance(s, dict)}
            self.apply_statuses(statuses)
            return statuses

    def catch_up(self, event: Reconnected) -> None:
        """A moment after a connection is up: fetch over REST what its quiet symbols (no print since) traded while no
        connection carried them; otherwise it would wait for their next print to reveal the gap.

        On spot one all-symbol ticker (weight 80, whatever the number of symbols), requested after every stream of
        the connection was acknowledged, gives each symbol's newest id: the closed range after its last stored id is
        fetched, and anything newer arrives live. On usdm (no aggTrade ids in its ticker) a symbol catches up from its
        last id to the present. A symbol never printed while streamed starts from its first print since the previous
        connection's last message. A symbol already catching up to the present is left to that catch-up."""
        newest = self.newest_ids(event.acked_mono) if self.spec.name == "spot" else {}
        unseen = []
        for sym in event.quiet:
            if sym in self.delisted or self.stop_event.is_set():
                continue
            resuming = self.tracker.is_resuming(sym)
            if resuming and self.tracker.resume_target(sym) is None:
                continue  # an open-ended catch-up is running: it reaches the present
            st = self.state.stats(self.market, sym)
            if st.last_trade_id is None:
                unseen.append(sym)  # after the others: its lookups may wait for request weight
            elif sym in newest:
                self.tracker.catch_up_to(sym, newest[sym], "no print since the reconnect")
            elif not resuming:  # usdm, or no ticker row for it
                self.tracker.resume(sym, "no print since the reconnect")
            else:  # catching up a closed range of older ids: a second, closed range up to the newest id
                newest_id = self._newest_id(sym)
                if newest_id is not None:
                    self.tracker.catch_up_to(sym, newest_id[0], "no print since the reconnect")
        if event.down_since_us is not None:  # on the first connection nothing was missed
            for sym in unseen:
                if not self.stop_event.is_set():
                    self._catch_up_unseen(sym, event.down_since_us - 1_000_000)

    def _catch_up_unseen(self, sym: str, since_us: int) -> None:
        """A symbol with no id known (nothing stored, no print streamed): it is primed at its newest id if that is
        older than `since_us`, else caught up from its first print since then (prints after it would have come
        live); either way its id is known from then on."""
        newest = self._newest_id(sym)
        if newest is None:
            return
        if newest[1] < since_us:
            self.tracker.prime_if_unknown(sym, newest[0], newest[1])
            return
        try:
            first = self.backfiller.first_id_at(sym, since_us)
        except RestError as exc:
            log.warning("%s %s: cannot look up its prints during the drop: %s", self.market, sym, exc)
            return
        if first is not None and self.tracker.prime_if_unknown(sym, first - 1, since_us):
            self.tracker.resume(sym, "prints while disconnected, before its first live one")

    def _newest_id(self, sym: str) -> tuple[int, int] | None:
        """(newest tick id, its time in µs) of one symbol from its newest aggTrade (the id: spot its last trade id,
        usdm its aggTrade id), or None if it has none or the lookup failed."""
        try:
            rows = self.rest.get(self.spec.lookup_path, {"symbol": sym, "limit": 1})
            if not rows:
                return None
            row = rows[-1]
            return int(row["l" if self.spec.name == "spot" else "a"]), int(row["T"]) * 1000
        except (RestError, TypeError, ValueError, KeyError, IndexError) as exc:
            log.warning("%s %s: newest id lookup failed: %s", self.market, sym, exc)
            return None

    def newest_ids(self, not_before: float = 0.0) -> dict[str, int]:
        """Each symbol's newest trade id from one all-symbol ticker requested at or after `not_before`
        (time.monotonic()), shared by the connections that come back together (a drop of every connection costs one
        ticker, not one per connection); {} if it failed."""
        with self._ticker_lock:
            asked, newest = self._ticker
            if asked >= not_before and time.monotonic() - asked < 2.0:
                return newest
            asked = time.monotonic()
            try:
                rows = self.rest.get(self.spec.ticker_path)
                newest = {r["symbol"]: int(r["lastId"]) for r in rows if isinstance(r, dict) and "lastId" in r}
            except (RestError, TypeError, ValueError, KeyError) as exc:
                log.warning("%s: ticker for the catch-up failed (%s); catching up every quiet symbol", self.market,
                            exc)
                newest = {}
            self._ticker = (asked, newest)
            return newest

    def _on_refused(self, shard: ShardStream, reason: str) -> None:
        """The exchange refused a connection or a SUBSCRIBE: a symbol may have been delisted meanwhile."""
        if time.monotonic() - self._refusal_check < 5.0:
            return  # checked a moment ago for another connection's refusal
        self._refusal_check = time.monotonic()
        log.warning("%s: refused (%s); checking the symbols against exchangeInfo", shard.name, reason[:200])
        self.check_statuses()

    def _watch_symbols(self) -> None:
        """Every `status_check_s`: symbols silent for two periods (or halted) are checked with one exchangeInfo
        call; a halted symbol that prints again is reported trading."""
        while not self.stop_event.wait(self.status_check_s):
            now = now_us()
            quiet_us = 2 * self.status_check_s * 1e6
            suspects = []
            for sym in self.symbols:
                if sym in self.delisted:
                    continue
                st = self.state.stats(self.market, sym)
                if sym in self.halted and st.last_recv_us and st.last_recv_us > self.halted[sym]:
                    suspects.append(sym)  # printing again
                elif sym in self.halted or (st.last_recv_us or 0) < now - quiet_us:
                    suspects.append(sym)
            if suspects:
                self.check_statuses()
