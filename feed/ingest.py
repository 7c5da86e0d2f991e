"""Wiring of one ingestor process: REST checks, start-up resume, one MarketFeed per market (its sharded
connections, backfill and symbol checks) and the one tick writer they share."""
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
from feed.backfill import Gap
from feed.binance import DEFAULT_STREAMS_PER_CONNECTION, MARKETS, symbol_streams
from feed.market import MarketFeed
from feed.reach import host_of, probe_ws, unreachable
from feed.rest import RestError
from feed.shards import (ATTEMPT_SPACING_S, ATTEMPT_WINDOW_S, ATTEMPTS_PER_WINDOW, NAMES_PER_MESSAGE, URL_MAX_CHARS,
                         AttemptLimiter)
from feed.state import IngestState, now_us
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
    # per market when several run in one process ({"spot": [...], "usdm": [...]}); else {market: symbols}
    markets: dict[str, list[str]] | None = None
    streams_per_connection: int = DEFAULT_STREAMS_PER_CONNECTION
    url_max: int = URL_MAX_CHARS                 # longer combined-stream URLs subscribe the rest by message
    names_per_message: int = NAMES_PER_MESSAGE   # stream names per SUBSCRIBE message
    status_check_s: float = 60.0                 # symbols silent twice this long are checked in exchangeInfo
    # connection attempts per market (see feed.shards and docs/binance-limits.md)
    max_attempts: int = ATTEMPTS_PER_WINDOW
    attempt_window_s: float = ATTEMPT_WINDOW_S
    attempt_spacing_s: float = ATTEMPT_SPACING_S
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
        if cfg.markets is None:
            cfg.markets = {cfg.market: list(cfg.symbols)}
        bad = [m for m in cfg.markets if m not in MARKETS]
        if bad or not cfg.markets:
            raise ConfigError(f"unknown market {','.join(bad) or '(none)'!r}; expected one of {', '.join(MARKETS)} "
                              f"or both, e.g. spot,usdm")
        cfg.market = next(iter(cfg.markets))
        cfg.symbols = [s for syms in cfg.markets.values() for s in syms]
        if cfg.max_buffer < 100:
            raise ConfigError(f"--max-buffer must be at least 100 ticks, got {cfg.max_buffer}")
        if cfg.flush_ms <= 0:
            raise ConfigError(f"--flush-ms must be positive, got {cfg.flush_ms}")
        for name, url, schemes in (("--ws-url", cfg.ws_url, ("ws://", "wss://")),
                                   ("--rest-url", cfg.rest_url, ("http://", "https://"))):
            if url is not None and not url.startswith(schemes):
                raise ConfigError(f"{name} {url!r} must start with {' or '.join(schemes)}")
        for m in cfg.markets:
            spec = MARKETS[m]
            need = len(symbol_streams(spec, "x"))
            if not need <= cfg.streams_per_connection <= spec.max_streams:
                raise ConfigError(f"--streams-per-connection {cfg.streams_per_connection}: expected {need} to "
                                  f"{spec.max_streams} ({m} carries {need} stream(s) per symbol; Binance allows "
                                  f"{spec.max_streams} per connection)")
        self.cfg = cfg
        self.spec = MARKETS[cfg.market]
        self.stop_event = threading.Event()
        self.state = IngestState()
        self.buffer = TickBuffer(capacity=cfg.max_buffer)
        self.writer = TickWriter(cfg.db, self.buffer, cfg.flush_ms, hooks=[self.state.write_status, *cfg.hooks])
        self.feeds = {m: MarketFeed(MARKETS[m], syms, self.buffer, self.state, rest_base=cfg.rest_url,
                                    ws_base=cfg.ws_url, stop=self.stop_event,
                                    streams_per_connection=cfg.streams_per_connection, weight_limit=cfg.weight_limit,
                                    max_backfill_s=cfg.max_backfill_s, watchdog_s=cfg.watchdog_s,
                                    rotate_after_s=cfg.rotate_after_s, status_check_s=cfg.status_check_s,
                                    url_max=cfg.url_max, names_per_message=cfg.names_per_message,
                                    limiter=AttemptLimiter(cfg.max_attempts, cfg.attempt_window_s,
                                                           cfg.attempt_spacing_s),
                                    marks=self.writer.marks, funding_history_s=cfg.funding_history_s)
                      for m, syms in cfg.markets.items()}
        first = self.feeds[cfg.market]
        # the first market's parts under their single-market names (tests and benches use them)
        self.rest, self.backfiller, self.tracker = first.rest, first.backfiller, first.tracker
        self.funding = next((f.funding for f in self.feeds.values() if f.funding is not None), None)
        self._stats_thread: threading.Thread | None = None
        self._owner = uuid.uuid4().hex
        self._leased: list[str] = []
        self.created_db = False  # check() created the file (removed again by abandon() if the start fails)
        self._beat_at = 0.0

    @property
    def stream(self):
        """The first connection of the first market (a single-connection ingestor's only one)."""
        return self.feeds[self.cfg.market].shards[0]

    # start-up ----------------------------------------------------------------------------------------------
    def check(self) -> None:
        """Validate the DB path, the symbols against exchangeInfo and each market's stream; raise ConfigError with
        one clear line. The file is created or opened only once the exchange answered: a start refused for the
        network or a symbol leaves no new file behind and an existing one untouched."""
        from tickstore.connection import StoreError, check_creatable

        if not Path(self.cfg.db).exists():
            try:
                check_creatable(self.cfg.db)
            except StoreError as exc:
                raise ConfigError(f"--db {self.cfg.db}: {exc}") from None
        for feed in self.feeds.values():
            self._check_exchange(feed)
        for feed in self.feeds.values():
            self._check_stream(feed)
        self._open_file()

    def _open_file(self) -> None:
        from tickstore.connection import StoreError

        self.created_db = not Path(self.cfg.db).exists()
        try:
            init_db(self.cfg.db)
            self._take_lease()  # first: a second ingestor must not even clear a demo file the first one writes
            self._claim_file()
        except StoreError as exc:
            self.abandon()
            raise ConfigError(f"--db {self.cfg.db}: {exc}") from None
        except ConfigError:  # another ingestor's lease, or the other kind of data: the file is not ours to remove
            self.created_db = False
            self.release_lease()
            raise

    def abandon(self) -> None:
        """A start that failed: give the lease back and remove the file if this run created it (never another's)."""
        self.release_lease()
        if not self.created_db:
            return
        db = Path(self.cfg.db)
        for path in (db, db.with_name(db.name + ".wal")):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not remove %s left by the failed start: %s", path, exc.strerror)
        self.created_db = False

    def _check_exchange(self, feed: MarketFeed) -> None:
        rest, spec = feed.rest, feed.spec
        try:
            info = rest.get(spec.exchange_info_path, retry=False)
        except RestError as exc:
            if exc.reason is not None:  # no answer at all
                default = self.cfg.rest_url is None
                what = host_of(rest.base) if default else f"--rest-url {rest.base}"
                raise ConfigError(unreachable(what, exc.reason, spec.name, default)) from None
            hint = ""
            if exc.status == 451:
                hint = " (Binance refuses this location; point --ws-url/--rest-url at e.g. Binance.US, see README)"
            raise ConfigError(f"cannot use --rest-url {rest.base} for {spec.name}: {exc}{hint}") from None
        if not isinstance(info, dict) or "symbols" not in info:
            raise ConfigError(f"--rest-url {rest.base} did not answer like Binance's {spec.name} exchangeInfo")
        for lim in info.get("rateLimits") or []:
            if lim.get("rateLimitType") == "REQUEST_WEIGHT" and lim.get("interval") == "MINUTE" \
                    and lim.get("intervalNum") == 1 and isinstance(lim.get("limit"), int):
                rest.weight_limit = lim["limit"]
        known = {s.get("symbol"): s.get("status") for s in info["symbols"]}
        unknown = [s for s in feed.symbols if s not in known]
        if unknown:
            raise ConfigError(f"unknown symbol(s) on {spec.name}: {', '.join(unknown)} "
                              f"(not in {rest.base}{spec.exchange_info_path})")
        feed.apply_statuses({s: st or "TRADING" for s, st in known.items()})  # not trading now: reported halted

    def _check_stream(self, feed: MarketFeed) -> None:
        """The market's stream must open at start (a few attempts, bounded time); later drops are retried forever."""
        if not feed.shards:
            return
        url = feed.shards[0].url
        why = probe_ws(url, self.stop_event, acquire=feed.limiter.acquire)
        if why is None:
            return
        default = self.cfg.ws_url is None
        what = host_of(url) if default else f"--ws-url {self.cfg.ws_url}"
        raise ConfigError(unreachable(what, why, feed.market, default))

    def _take_lease(self) -> None:
        for market in self.cfg.markets:
            with write_connection(self.cfg.db, budget_s=30) as con:
                other = lease.acquire(con, market, self._owner)
            if other is not None:
                raise ConfigError(f"--db {self.cfg.db}: another ingestor writes {market} into this file "
                                  f"({other.summary()}); stop it first, or use another --db")
            self._leased.append(market)
        self.writer.hooks.insert(0, self._heartbeat)

    def _heartbeat(self, con, batch, inserted) -> None:
        now = time.monotonic()
        if now - self._beat_at < HEARTBEAT_S:
            return
        self._beat_at = now
        for market in self._leased:
            if not lease.heartbeat(con, market, self._owner):
                log.error("%s: the file's ingest lease was taken over by another ingestor (this one looked dead)",
                          market)

    def release_lease(self) -> None:
        """Give the markets of the file back (on stop; a crash leaves them to be taken over)."""
        if not self._leased:
            return
        from tickstore.connection import StoreError

        try:
            with write_connection(self.cfg.db, budget_s=5) as con:
                for market in self._leased:
                    lease.release(con, market, self._owner)
            self._leased = []
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
        for feed in self.feeds.values():
            self._resume(feed)

    def _resume(self, feed: MarketFeed) -> None:
        market, tracker, backfiller = feed.market, feed.tracker, feed.backfiller
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self.cfg.max_backfill_s)
        with write_connection(self.cfg.db, budget_s=30) as con:
            stored = last_stored(con, market)
            if feed.funding is not None:
                feed.funding.prime(last_funding_times(con, market))
            last = {sym: i for sym, (i, _) in stored.items()}
            last_ts = {sym: us for sym, (_, us) in stored.items()}
            holes = {s: id_gaps(con, market, s, since) for s in feed.symbols if s in last}
            known_bad = {s: unrecoverable_ranges(con, market, s) for s in holes}
        self.state.event("started", market, detail=f"symbols={','.join(feed.symbols)}; {feed.layout.summary()}")
        log.info("%s", feed.layout.summary())
        older: list[Gap] = []
        for sym in feed.symbols:
            if sym in feed.delisted:
                continue
            if sym in last:
                tracker.prime(sym, last[sym], last_ts.get(sym))
                log.info("%s %s: resuming after stored id %d", market, sym, last[sym])
                tracker.resume(sym, "downtime since the last stored id")
                for a, b in holes[sym]:
                    if any(x <= a and b <= y for x, y in known_bad[sym]):
                        continue
                    backfiller.submit(Gap(sym, a, b, "hole found in stored ids at start-up"))
            elif self.cfg.history_s > 0:
                older.extend(self._load_history(feed, sym))
        unprimed = [s for s in feed.symbols if s not in feed.delisted and
                    self.state.stats(market, s).last_trade_id is None]
        if unprimed and feed.spec.name == "spot":  # usdm's ticker ids are not its aggTrade ids
            newest = feed.newest_ids()
            for sym in unprimed:
                if sym in newest:
                    tracker.prime_at_subscription(sym, newest[sym], now_us())
        for gap in older:  # queued after every symbol's newest part: pages show the present first
            backfiller.submit(gap)

    def _load_history(self, feed: MarketFeed, sym: str) -> list[Gap]:
        """On an empty file: catch up from `history_first_s` ago (the newest part of --history) to the stream now,
        and return the older part as a gap to queue after every symbol's newest part."""
        now = now_us()
        start_us = now - int(self.cfg.history_s * 1e6)
        split = 0 < self.cfg.history_first_s < self.cfg.history_s
        first_us = now - int(self.cfg.history_first_s * 1e6) if split else start_us
        try:
            first = feed.backfiller.first_id_at(sym, first_us)
            oldest = feed.backfiller.first_id_at(sym, start_us) if split else first
        except RestError as exc:
            log.warning("%s %s: cannot look up history start: %s", feed.market, sym, exc)
            return []
        if first is None:
            if oldest is None:
                return []
            first, first_us, split = oldest, start_us, False  # nothing in the newest part: one catch-up from the oldest
        feed.tracker.prime(sym, first - 1, first_us)
        log.info("%s %s: empty file; loading %.0fs of history from id %d%s", feed.market, sym,
                 (now - first_us) / 1e6, first, ", then the older part" if split else "")
        feed.tracker.resume(sym, f"--history {self.cfg.history_s:.0f}s on an empty file", history=True)
        if split and oldest is not None and oldest < first:
            return [Gap(sym, oldest, first - 1, f"older part of --history {self.cfg.history_s:.0f}s", history=True)]
        return []

    def start(self) -> "Ingestor":
        self.resume()
        self.writer.start()
        for feed in self.feeds.values():
            feed.start()
        self._stats_thread = threading.Thread(target=self._log_stats, name="stats", daemon=True)
        self._stats_thread.start()
        return self

    def stop(self) -> int:
        """Stop receiving, then flush everything buffered (backfills in flight are abandoned; the next start resumes).

        Returns the number of ticks that could not be written (0: nothing lost)."""
        self.stop_event.set()
        for feed in self.feeds.values():
            feed.abort("stopping")
        for feed in self.feeds.values():
            feed.join(5)
            self.state.event("stopped", feed.market)
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
            if all(f.backfiller.idle() for f in self.feeds.values()) and len(self.buffer) == 0:
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
            links = ", ".join(f"{m} {sum(self.state.links.get(m, {}).values())}/{len(f.shards)} up, "
                              f"{f.connections - len(f.shards)} reconnects, {f.malformed} malformed"
                              for m, f in self.feeds.items())
            log.info("ingest %.0f ticks/s, stored %d, buffered %d, flush avg %.1f ms max %.1f ms, lock retries %d; "
                     "connections: %s", rate, s.rows_inserted, len(self.buffer), avg, s.max_flush_ms,
                     self.writer.lock_retries, links)
            for f in self.feeds.values():
                if f.funding is not None:
                    log.info("%s: mark prices stored %d, funding rates stored %d (%d REST requests), set aside %d",
                             f.market, s.marks_inserted, s.funding_inserted, f.funding.requests, s.marks_rejected)
