"""Wiring of one ingestor process: REST checks, start-up resume, streams, backfillers and the tick writer."""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.paths import DEFAULT_DB
from feed.backfill import Backfiller, Gap, GapTracker
from feed.binance import MARKETS
from feed.funding import FundingBackfiller
from feed.rest import RestClient, RestError
from feed.state import IngestState, now_us
from feed.stream import MarketStream
from tickstore import lease
from tickstore.connection import init_db, write_connection
from tickstore.state import (claim_file, clear_simulated, file_kind, has_ticks, id_gaps, last_stored,
                             unrecoverable_ranges)
from tickstore.marks import last_funding_times
from tickstore.writer import TickBuffer, TickWriter

log = logging.getLogger(__name__)


HEARTBEAT_S = 5.0  # lease heartbeat period (tickstore.lease.LEASE_TTL_S is far longer)


class ConfigError(ValueError):
    """Bad command-line input; the message says what is expected."""


@dataclass
class IngestConfig:
    symbols: list[str]
    market: str = "spot"
    db: Path = DEFAULT_DB
    ws_url: str | None = None
    rest_url: str | None = None
    flush_ms: int = 250
    max_backfill_s: float = 6 * 3600
    history_s: float = 0.0
    history_first_s: float = 2 * 3600.0  # of --history on an empty file, this newest part is stored first
    watchdog_s: float = 30.0
    rotate_after_s: float = 23.5 * 3600
    weight_limit: int = 6000
    stats_every_s: float = 10.0
    demo: bool = False
    shutdown_timeout_s: float = 30.0
    max_buffer: int = 2_000_000  # ticks held in memory at most (~400 B each) while flushes fail
    funding_history_s: float = 30 * 86400.0  # funding rates fetched this far back on a file without any (usdm)
    hooks: list[Callable] = field(default_factory=list)


class Ingestor:
    """Build with a config, `check()` (raises ConfigError on bad input), then `start()` / `stop()`."""

    def __init__(self, cfg: IngestConfig) -> None:
        if cfg.market not in MARKETS:
            raise ConfigError(f"unknown market {cfg.market!r}; expected one of {', '.join(MARKETS)}")
        if cfg.max_buffer < 100:
            raise ConfigError(f"--max-buffer must be at least 100 ticks, got {cfg.max_buffer}")
        if cfg.flush_ms <= 0:
            raise ConfigError(f"--flush-ms must be positive, got {cfg.flush_ms}")
        for name, url, schemes in (("--ws-url", cfg.ws_url, ("ws://", "wss://")),
                                   ("--rest-url", cfg.rest_url, ("http://", "https://"))):
            if url is not None and not url.startswith(schemes):
                raise ConfigError(f"{name} {url!r} must start with {' or '.join(schemes)}")
        self.cfg = cfg
        self.spec = MARKETS[cfg.market]
        self.stop_event = threading.Event()
        self.state = IngestState()
        self.buffer = TickBuffer(capacity=cfg.max_buffer)
        self.rest = RestClient(cfg.rest_url or self.spec.rest_base, weight_limit=cfg.weight_limit, stop=self.stop_event)
        self.writer = TickWriter(cfg.db, self.buffer, cfg.flush_ms, hooks=[self.state.write_status, *cfg.hooks])
        self.backfiller = Backfiller(self.spec, self.rest, self.buffer, self.state, cfg.max_backfill_s, self.stop_event)
        self.tracker = GapTracker(cfg.market, self.state, self.backfiller)
        self.funding: FundingBackfiller | None = None
        if self.spec.funding_path:   # usdm: mark prices ride on the trade connection, funding comes over REST
            self.funding = FundingBackfiller(self.spec, cfg.symbols, self.rest, self.writer.marks, self.state,
                                             history_s=cfg.funding_history_s, stop=self.stop_event)
        self.stream = MarketStream(self.spec, cfg.symbols, self.buffer, self.state, self.tracker, cfg.ws_url,
                                   watchdog_s=cfg.watchdog_s, rotate_after_s=cfg.rotate_after_s, stop=self.stop_event,
                                   marks=self.funding)
        self._stats_thread: threading.Thread | None = None
        self._owner = uuid.uuid4().hex
        self._leased = False
        self._beat_at = 0.0

    # start-up ----------------------------------------------------------------------------------------------
    def check(self) -> None:
        """Validate the DB path and the symbols against exchangeInfo; raise ConfigError with one clear line."""
        n_streams = len(self.cfg.symbols) * self.spec.streams_per_symbol
        if n_streams > self.spec.max_streams:
            raise ConfigError(f"{len(self.cfg.symbols)} symbols need {n_streams} streams, more than the "
                              f"{self.spec.max_streams} of one connection")
        from tickstore.connection import StoreError

        try:
            init_db(self.cfg.db)
            self._take_lease()  # first: a second ingestor must not even clear a demo file the first one writes
            self._claim_file()
        except StoreError as exc:
            raise ConfigError(f"--db {self.cfg.db}: {exc}") from None
        try:
            self._check_exchange()
        except ConfigError:
            self.release_lease()
            raise

    def _check_exchange(self) -> None:
        try:
            info = self.rest.get(self.spec.exchange_info_path, retry=False)
        except RestError as exc:
            hint = ""
            if exc.status == 451:
                hint = " (Binance refuses this location; point --ws-url/--rest-url at e.g. Binance.US, see README)"
            raise ConfigError(f"cannot use --rest-url {self.rest.base}: {exc}{hint}") from None
        if not isinstance(info, dict) or "symbols" not in info:
            raise ConfigError(f"--rest-url {self.rest.base} did not answer like Binance's exchangeInfo")
        for lim in info.get("rateLimits") or []:
            if lim.get("rateLimitType") == "REQUEST_WEIGHT" and lim.get("interval") == "MINUTE" \
                    and lim.get("intervalNum") == 1 and isinstance(lim.get("limit"), int):
                self.rest.weight_limit = lim["limit"]
        known = {s.get("symbol"): s.get("status") for s in info["symbols"]}
        unknown = [s for s in self.cfg.symbols if s not in known]
        if unknown:
            raise ConfigError(f"unknown symbol(s) on {self.cfg.market}: {', '.join(unknown)} "
                              f"(not in {self.rest.base}{self.spec.exchange_info_path})")
        halted = [s for s in self.cfg.symbols if known[s] not in ("TRADING", None)]
        if halted:
            log.warning("symbols not trading right now: %s", ", ".join(f"{s} ({known[s]})" for s in halted))

    def _take_lease(self) -> None:
        with write_connection(self.cfg.db, budget_s=30) as con:
            other = lease.acquire(con, self.cfg.market, self._owner)
        if other is not None:
            raise ConfigError(f"--db {self.cfg.db}: another ingestor writes {self.cfg.market} into this file "
                              f"({other.summary()}); stop it first, or use another --db")
        self._leased = True
        self.writer.hooks.insert(0, self._heartbeat)

    def _heartbeat(self, con, batch, inserted) -> None:
        now = time.monotonic()
        if now - self._beat_at < HEARTBEAT_S:
            return
        self._beat_at = now
        if not lease.heartbeat(con, self.cfg.market, self._owner):
            log.error("%s: the file's ingest lease was taken over by another ingestor (this one looked dead)",
                      self.cfg.market)

    def release_lease(self) -> None:
        """Give the market of the file back (on stop; a crash leaves it to be taken over)."""
        if not self._leased:
            return
        from tickstore.connection import StoreError

        try:
            with write_connection(self.cfg.db, budget_s=5) as con:
                lease.release(con, self.cfg.market, self._owner)
            self._leased = False
        except StoreError as exc:
            log.warning("could not release the ingest lease (%s); the next start takes it over", exc)

    def _claim_file(self) -> None:
        """Keep simulated and real data apart: a file is 'demo' or 'live' for good.

        The demo exchange replays the same id sequence on every start, so a demo file starts afresh
        (its ticks, status and events are cleared; alert rules stay)."""
        want = "demo" if self.cfg.demo else "live"
        with write_connection(self.cfg.db, budget_s=30) as con:
            kind = file_kind(con)
            stored = has_ticks(con)
            if kind is None and stored:
                kind = "live"
            if kind not in (None, want):
                raise ConfigError(f"--db {self.cfg.db} holds {kind} data; "
                                  + ("--demo writes simulated data only to its own file (default data/demo.duckdb)"
                                     if self.cfg.demo else "use another file for real data than the --demo one"))
            if self.cfg.demo and stored:
                n = clear_simulated(con)
                log.info("demo: cleared %d simulated ticks of the previous demo run (the demo exchange restarts)", n)
            claim_file(con, want)
        self.writer.on_recreate = lambda con: claim_file(con, want)  # the file deleted while running is still `want`

    def resume(self) -> None:
        """Prime each symbol with its last stored id and queue backfills for holes in the recent past."""
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self.cfg.max_backfill_s)
        with write_connection(self.cfg.db, budget_s=30) as con:
            stored = last_stored(con, self.cfg.market)
            if self.funding is not None:
                self.funding.prime(last_funding_times(con, self.cfg.market))
            last = {sym: i for sym, (i, _) in stored.items()}
            last_ts = {sym: us for sym, (_, us) in stored.items()}
            holes = {s: id_gaps(con, self.cfg.market, s, since) for s in self.cfg.symbols if s in last}
            known_bad = {s: unrecoverable_ranges(con, self.cfg.market, s) for s in holes}
        self.state.event("started", self.cfg.market, detail=f"symbols={','.join(self.cfg.symbols)}")
        older: list[Gap] = []
        for sym in self.cfg.symbols:
            if sym in last:
                self.tracker.prime(sym, last[sym], last_ts.get(sym))
                log.info("%s %s: resuming after stored id %d", self.cfg.market, sym, last[sym])
                self.tracker.resume(sym, "downtime since the last stored id")
                for a, b in holes[sym]:
                    if any(x <= a and b <= y for x, y in known_bad[sym]):
                        continue
                    self.backfiller.submit(Gap(sym, a, b, "hole found in stored ids at start-up"))
            elif self.cfg.history_s > 0:
                older.extend(self._load_history(sym))
        for gap in older:  # queued after every symbol's newest part: pages show the present first
            self.backfiller.submit(gap)

    def _load_history(self, sym: str) -> list[Gap]:
        """On an empty file: catch up from `history_first_s` ago (the newest part of --history) to the stream now,
        and return the older part as a gap to queue after every symbol's newest part."""
        now = now_us()
        start_us = now - int(self.cfg.history_s * 1e6)
        split = 0 < self.cfg.history_first_s < self.cfg.history_s
        first_us = now - int(self.cfg.history_first_s * 1e6) if split else start_us
        try:
            first = self.backfiller.first_id_at(sym, first_us)
            oldest = self.backfiller.first_id_at(sym, start_us) if split else first
        except RestError as exc:
            log.warning("%s: cannot look up history start: %s", sym, exc)
            return []
        if first is None:
            if oldest is None:
                return []
            first, first_us, split = oldest, start_us, False  # nothing in the newest part: one catch-up from the oldest
        self.tracker.prime(sym, first - 1, first_us)
        log.info("%s %s: empty file; loading %.0fs of history from id %d%s", self.cfg.market, sym,
                 (now - first_us) / 1e6, first, ", then the older part" if split else "")
        self.tracker.resume(sym, f"--history {self.cfg.history_s:.0f}s on an empty file")
        if split and oldest is not None and oldest < first:
            return [Gap(sym, oldest, first - 1, f"older part of --history {self.cfg.history_s:.0f}s", history=True)]
        return []

    def start(self) -> "Ingestor":
        self.resume()
        self.writer.start()
        self.backfiller.start()
        if self.funding is not None:
            self.funding.start()
        self.stream.start()
        self._stats_thread = threading.Thread(target=self._log_stats, name="stats", daemon=True)
        self._stats_thread.start()
        return self

    def stop(self) -> int:
        """Stop receiving, then flush everything buffered (backfills in flight are abandoned; the next start resumes).

        Returns the number of ticks that could not be written (0: nothing lost)."""
        self.stop_event.set()
        if self.stream.current is not None:
            self.stream.current.abort("stopping")
        self.stream.join(5)
        self.backfiller.join(5)
        if self.funding is not None:
            self.funding.join(5)
        self.state.event("stopped", self.cfg.market)
        lost = self.writer.stop(self.cfg.shutdown_timeout_s)
        self.release_lease()
        s = self.writer.stats
        log.info("stopped: %d ticks stored in %d flushes (max flush %.0f ms, lock retries %d, rejected %d)",
                 s.rows_inserted, s.flushes, s.max_flush_ms, self.writer.lock_retries, s.rejected)
        return lost

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once the backfill queue is empty and the buffer flushed (for tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.backfiller.idle() and len(self.buffer) == 0:
                return True
            time.sleep(0.05)
        return False

    def _log_stats(self) -> None:
        prev, t_prev = 0, time.monotonic()
        while not self.stop_event.wait(self.cfg.stats_every_s):
            s = self.writer.stats
            now = time.monotonic()
            rate = (s.rows_inserted - prev) / (now - t_prev)
            prev, t_prev = s.rows_inserted, now
            avg = s.total_flush_ms / s.flushes if s.flushes else 0.0
            log.info("ingest %.0f ticks/s, stored %d, buffered %d, flush avg %.1f ms max %.1f ms, lock retries %d, "
                     "connected=%s, reconnects=%d, malformed=%d", rate, s.rows_inserted, len(self.buffer), avg,
                     s.max_flush_ms, self.writer.lock_retries, self.state.connected.get(self.cfg.market, False),
                     self.stream.connections - 1, self.stream.malformed)
            if self.funding is not None:
                log.info("mark prices stored %d, funding rates stored %d (%d REST requests), set aside %d",
                         s.marks_inserted, s.funding_inserted, self.funding.requests, s.marks_rejected)
