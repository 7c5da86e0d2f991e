"""Funding-rate history of perpetuals over REST (`/fapi/v1/fundingRate`), one worker thread per market.

- On start each symbol is fetched from just after its newest stored funding time, or `history_s` back (30 days by
  default) on a file without any; pages of up to 1000 rows, ascending, each page starting after the last row seen.
- Afterwards a fetch runs shortly after each funding time passes (the mark-price stream says when the next one is:
  `T` of the markPriceUpdate frames, which pass through `add_marks` on their way to the writer), after every
  reconnect of the market's stream (the connection was down: nothing is assumed about what it missed), and at
  least every `poll_s` without any of these.
- Rows go to the tick writer's MarkBuffer; `funding_rates` keys them by (market, symbol, funding_time), so overlaps
  between fetches are stored once.
- Budget: the endpoint has no request weight of its own but a separate limit of 500 requests per 5 minutes per IP
  (shared with /fapi/v1/fundingInfo); requests are spaced to stay under `budget` of it, and each also counts as
  weight 1 in the REST client's per-minute weight budget shared with the trade backfill. 429/418 and Retry-After
  are honoured by the REST client.
"""
from __future__ import annotations

import collections
import logging
import threading
import time

from feed.binance import FUNDING_LIMIT, FUNDING_PAGE, MalformedFrame, MarketSpec, parse_funding_page
from feed.rest import RestClient, RestError
from feed.state import IngestState, now_us
from tickstore.marks import MarkBuffer

log = logging.getLogger(__name__)

DAY_US = 86_400 * 1_000_000
SETTLE_S = (3.0, 30.0, 120.0, 600.0)   # after a funding time: first fetch, then retries while its row is missing


class FundingBackfiller:
    """Keeps `funding_rates` of one market's symbols complete (see module docstring). Also the sink of the
    market's mark-price rows (`add_marks`), which it forwards to the writer's buffer."""

    def __init__(self, spec: MarketSpec, symbols: list[str], rest: RestClient, marks: MarkBuffer, state: IngestState,
                 stored: dict[str, int] | None = None, history_s: float = 30 * 86400.0, poll_s: float = 3600.0,
                 budget: float = 0.8, stop: threading.Event | None = None) -> None:
        if not spec.funding_path:
            raise ValueError(f"market {spec.name} has no funding rates")
        self.spec = spec
        self.market = spec.name
        self.symbols = list(symbols)
        self.rest = rest
        self.marks = marks
        self.state = state
        self.history_s = history_s
        self.poll_s = poll_s
        self.stop = stop or threading.Event()
        limit, window = FUNDING_LIMIT
        self._max_requests, self._window_s = max(1, int(limit * budget)), window
        self._sent: collections.deque[float] = collections.deque()
        self._newest: dict[str, int] = dict(stored or {})       # newest funding time known stored / buffered, µs
        self._next_funding: dict[str, int] = {}                  # upcoming funding time per symbol (stream's T), µs
        self._passed: dict[str, int] = {}                        # the funding time the stream last moved past, µs
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.requests = 0
        self.rows_fetched = 0
        self.fetches = 0       # completed rounds over all symbols
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name=f"funding-{self.market}", daemon=True)

    def prime(self, stored: dict[str, int]) -> None:
        """Newest stored funding time (µs) per symbol: fetches start just after it."""
        for sym, t in stored.items():
            if t > self._newest.get(sym, -1):
                self._newest[sym] = t

    # mark-price sink (receive threads) --------------------------------------------------------------------
    def add_marks(self, rows: list) -> None:
        """Forward mark rows to the writer, noting each symbol's next funding time (wakes the worker when it moves)."""
        self.marks.add_marks(rows)
        moved = False
        with self._lock:
            for r in rows:
                sym, nxt = r[1], r[6]
                old = self._next_funding.get(sym)
                if nxt is not None and (old is None or nxt > old):
                    if old is not None:   # `old` just passed: its rate is settled and due over REST
                        self._passed[sym] = old
                        moved = True
                    self._next_funding[sym] = nxt
        if moved:  # a funding time just passed: the worker's wait is re-planned
            self._wake.set()

    # worker -----------------------------------------------------------------------------------------------
    def start(self) -> "FundingBackfiller":
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        connected = self.state.connected.get(self.market, False)
        was_up = connected   # a first connection is not a reconnect (the start-up round covers it)
        due_passed: dict[str, int] = {}   # funding time -> settle attempts made for it
        while not self.stop.is_set():
            missing = self.fetch_all()
            # plan the next round: shortly after the next funding time, a retry while a passed one is missing,
            # a reconnect, or the poll interval, whichever comes first
            now = now_us()
            with self._lock:
                upcoming = [t for t in self._next_funding.values() if t > now]
            wait = self.poll_s
            if upcoming:
                wait = min(wait, (min(upcoming) - now) / 1e6 + SETTLE_S[0])
            for t in list(due_passed):
                if t not in missing:
                    del due_passed[t]
            for t in missing:
                k = due_passed.get(t, 0) + 1
                due_passed[t] = k
                if k < len(SETTLE_S):
                    wait = min(wait, SETTLE_S[k])
            deadline = time.monotonic() + wait
            while not self.stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if self._wake.wait(min(left, 0.5)):
                    self._wake.clear()
                    if self.stop.is_set():
                        break
                    # the stream moved past a funding time (or a fetch was asked for): fetch shortly
                    deadline = min(deadline, time.monotonic() + SETTLE_S[0])
                up = self.state.connected.get(self.market, False)
                if up and not connected:
                    connected = True
                    if was_up:
                        log.info("%s: stream reconnected; checking funding rates for gaps", self.market)
                        break
                    was_up = True
                connected = up

    def fetch_all(self) -> set[int]:
        """One round: fetch each symbol after its newest known funding time. Returns the funding times the stream
        announced as passed whose rows the exchange did not give yet (retried soon)."""
        missing: set[int] = set()
        now = now_us()
        for sym in self.symbols:
            if self.stop.is_set():
                break
            try:
                self.fetch_symbol(sym, now)
            except RestError as exc:
                if self.stop.is_set():
                    break
                self.failures += 1
                self.state.event("funding_failed", self.market, sym, detail=str(exc)[:200])
                log.warning("%s %s: funding-rate fetch failed (%s); retrying later", self.market, sym, exc)
                missing.add(-1)
                continue
            with self._lock:
                passed = self._passed.get(sym)
            newest = self._newest.get(sym)
            if passed is not None and (newest is None or newest < passed):
                missing.add(passed)
        else:
            self.fetches += 1
        return missing

    def fetch_symbol(self, sym: str, now: int | None = None) -> int:
        """Fetch the funding rates of one symbol after its newest known one (or `history_s` back); returns rows."""
        now = now_us() if now is None else now
        newest = self._newest.get(sym)
        start_us = newest + 1000 if newest is not None else now - int(self.history_s * 1e6)
        start_ms, end_ms = start_us // 1000, now // 1000
        got = 0
        first_t = last_t = None
        while not self.stop.is_set() and start_ms <= end_ms:
            self._respect_limit()
            rows = self.rest.get(self.spec.funding_path, {"symbol": sym, "startTime": start_ms, "endTime": end_ms,
                                                          "limit": FUNDING_PAGE})
            self.requests += 1
            try:
                page = parse_funding_page(rows, self.market, sym)
            except MalformedFrame as exc:
                raise RestError(str(exc)) from None
            if page.rejected:
                self.state.stats(self.market, sym).malformed += len(page.rejected)
                self.state.event("malformed", self.market, sym, count=len(page.rejected), detail=page.rejected[0][:200])
                log.warning("%s %s: %d funding row(s) rejected; first: %s", self.market, sym, len(page.rejected),
                            page.rejected[0])
            rates = sorted((r for r in page.rates if r.funding_time_us >= start_us), key=lambda r: r.funding_time_us)
            if rates:
                self.marks.add_funding([tuple(r) for r in rates])
                got += len(rates)
                first_t = rates[0].funding_time_us if first_t is None else first_t
                last_t = rates[-1].funding_time_us
                self._newest[sym] = max(self._newest.get(sym, last_t), last_t)
            if len(rows) < FUNDING_PAGE or not rows:
                break
            last_row_t = max((r.get("fundingTime", 0) for r in rows if isinstance(r, dict)), default=0)
            if last_row_t * 1000 < start_us:
                break  # a full page that does not advance: nothing more to learn from this window
            start_ms, start_us = last_row_t + 1, (last_row_t + 1) * 1000
        self.rows_fetched += got
        if got:
            self.state.event("funding_filled", self.market, sym, count=got,
                             detail=f"{_iso(first_t)}..{_iso(last_t)}")
            log.info("%s %s: %d funding rate(s) fetched (%s .. %s)", self.market, sym, got, _iso(first_t), _iso(last_t))
        return got

    def _respect_limit(self) -> None:
        """Stay under `budget` of the endpoint's own 500 requests / 5 min limit (sliding window)."""
        while True:
            now = time.monotonic()
            while self._sent and now - self._sent[0] >= self._window_s:
                self._sent.popleft()
            if len(self._sent) < self._max_requests:
                self._sent.append(now)
                return
            wait = self._window_s - (now - self._sent[0]) + 0.05
            log.info("%s: funding-rate requests near their 5-minute limit; pausing %.1fs", self.market, wait)
            if self.stop.wait(wait):
                raise RestError("stopping")


def _iso(us: int | None) -> str:
    if us is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(us / 1e6))
