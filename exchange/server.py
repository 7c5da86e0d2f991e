"""A local Binance-compatible exchange on loopback, for ``ingestor.py --demo``, tests and benchmarks.

One aiohttp server on one port serves WebSocket market streams and REST market data for two markets
at once (``spot`` and ``usdm``, independent id sequences), so ``ws://127.0.0.1:PORT`` and
``http://127.0.0.1:PORT`` are the same base. It runs its own asyncio loop in a daemon thread::

    with LocalExchange(("BTCUSDT", "ETHUSDT"), seed=7, rate=20, history_seconds=7200) as ex:
        ex.ws_url, ex.http_url          # ws://127.0.0.1:PORT, http://127.0.0.1:PORT
        ex.trades("BTCUSDT")            # ground truth (pandas DataFrame)

    python -m exchange --port 9001 --symbols btcusdt,ethusdt --rate 20 --history 2h --seed 7
    python -m exchange --universe 400 --total-rate 2000 --markets spot     # a whole market, skewed

Universe mode (``universe=N``, ``--universe N``)
    The ``N`` busiest symbols of a simulated whole market (``exchange.universe.universe_symbols``): the 24-symbol
    demo universe first (its majors, cointegrated pairs, look-alikes and stablecoin, below), then real USDT pairs
    (FIL, ICP, ...), then synthetic ``X0001USDT`` ... (random price and factor loading). Rates are skewed like a
    real market: the k-th symbol trades at ``rate / k**1.1`` (Zipf; at 1,000 symbols the top 10 print about half
    the trades, the bottom 500 about 7 %, many of them less than once a minute). ``total_rate=`` (``--total-rate``)
    sets the aggregate mean per market instead (spot-only: exact; with usdm the union of both lists, two names
    more). The activity factors make the aggregate bursty (the busiest seconds several times the mean) and
    ``set_rate`` scales every symbol at once for an explicit burst. The tickers (``ticker/24hr``) rank the
    symbols by this activity, so ``ingestor.py --top N`` picks the busiest. Generation costs about 0.07 ms per
    symbol per call on one market plus a little per step and print; a call draws ``AHEAD_STEPS`` (6) steps, so
    1,000 symbols on one market take about a quarter of a core (both markets at 1,000 about twice that).

Data (``exchange.model``)
    Trades are generated on a 50 ms grid, a few steps ahead of time in a worker thread (``AHEAD_STEPS`` per
    call, at least ``LEAD_US`` = 400 ms ahead), and held back until their trade time: every ``GEN_TICK_S``
    (5 ms) the loop takes the prints whose time has come, appends them to an in-memory history per (market,
    symbol) - the ground truth, and what REST serves - and broadcasts them with the event time ``E`` of that
    moment, so a print leaves a few ms after its trade time ``T`` as on Binance (``exchange.release``). Nothing
    drawn ahead is visible before its time; ``pause()``, a halt and ``blast`` drop what is drawn ahead of them
    and hand its ids out again (ids stay contiguous); ``set_rate`` applies from the next steps drawn (within
    ~0.7 s). Generation runs whether or not anyone is connected. ``rate`` is the mean number of prints per
    second per symbol (spot: trades, usdm: aggTrades), bursty around that mean (log-normal Cox process with fast and slow
    activity factors). Sizes are log-normal in notional; taker orders sweep one or more levels and fill
    several makers, so spot aggTrades group consecutive trades (same ``T``, price, side) with their own
    ``a`` ids and ``f``/``l``. ``rate_scale`` (symbol -> multiplier) varies the rate per symbol.
    Prices follow a market factor (``exchange.universe``): ETHUSDT is cointegrated with BTCUSDT (``log
    ETH = a + 1.15 log BTC + OU``, half-life 3 min) and SOL and BNB are correlated with BTC without
    cointegration, as are symbols unknown to the universe (random price and loading). The demo universe
    (``exchange.universe.demo_symbols``, 24 Binance USDT symbols) adds four more cointegrated pairs -
    LTC/BCH (half-life 1 min, beta 1.0), AVAX/SOL (2 min, 1.4), DOT/ATOM (5 min, 0.6), UNI/LINK (10 min,
    0.8) - three look-alikes whose 1m returns correlate ~0.97 but whose spread is a random walk (OP/ARB,
    ADA/XRP, SUI/APT), factor-only symbols (sub-cent SHIB and PEPE among them) and a pegged stablecoin
    (FDUSDUSDT). Prices start near BTC 93k, ETH 3.3k, SOL 180, BNB 650 and so on, on the instrument's
    tick; strings have 8 decimals on spot and the contract precision on usdm. ``history_seconds`` pre-generates that much past
    history (ending now) at start (vectorized: 2 h x 4 symbols x 20/s x 2 markets in 0.3-0.5 s; the
    demo's 24 symbols on one market, 2 h 10 min, in about 1-2 s). Thinner older history (opt-in, off by
    default): with ``thin_history_after=S`` > 0 the pre-generated history older than S seconds before now
    prints at a rate that halves every ``thin_half_life`` seconds (default 3 h) down to ``thin_rate`` (default
    0.3) of each symbol's rate, raised to at least ``thin_min_rate`` prints/s (default 0.25, never above the
    symbol's own rate; at 0.25/s about 2 % of a symbol's 1m bars are empty, at 0.15/s about 5 %, which costs a
    pair screen its overlap). Every symbol is thinned by the same profile, so the skew between them is the live
    one (the slowest raised to that floor), and the density falls smoothly (a quiet night, not a cliff: the
    oldest hours have 0.3x the live prints per hour, each hour at least ~0.8x the one after it). Only the order
    flow is thinned: the latent prices have their own generators and prints only sample them, so bar closes
    follow the same path and a long history for a screen costs a fraction of its full-rate prints
    (``ingestor.py --demo``: 24 h, the last 2 h 10 min at the full rate, ~0.45x the prints of a full-rate day;
    generating it takes a few seconds, the latent path still steps every 50 ms). ``thin_profile(ages)`` gives
    the multiplier per symbol and step, ``thin_factors()`` its floor.
    Deterministic: the same seed and the same sequence of steps give the same prints (ids, prices,
    sizes, sides, times relative to the start), however the steps are batched. Id origins depend on
    the seed only, so two runs with the same seed reuse the same ids: a tick file kept across runs
    (``data/demo.duckdb``) needs clearing or a new seed. Memory grows with the history (~50 MB per
    hour at 20/s x 4 symbols x 2 markets); nothing is evicted.

WebSocket (paths as on Binance; market chosen by path)
    spot: ``/ws/<stream>[/<stream>...]``, ``/ws`` and ``/stream?streams=a/b`` with ``<symbol>@trade`` and
    ``<symbol>@aggTrade``; ``timeUnit=MICROSECOND`` gives µs ``E``/``T``. usdm (routed paths):
    ``/market/ws/<stream>``, ``/market/stream?streams=...`` with ``@aggTrade`` (``nq``, no ``M``), the
    undocumented ``@trade`` (``"X":"MARKET"``) and ``<symbol>@markPrice@1s`` / ``<symbol>@markPrice``
    (``markPriceUpdate`` every second / every 3 s, event time on the second: mark, index and settle price with 8
    decimals, the running period's funding estimate ``r`` and its end ``T``; see ``exchange.funding``, and
    ``funding_interval``, default 8 h); ``timeUnit`` is ignored (ms). ``/public/ws...`` and
    ``/public/stream`` accept the same names but, like Binance's unrouted/public usdm endpoints,
    never deliver trade data. Our choices where Binance is unverified: an invalid stream name or unknown
    symbol in the URL is refused before the upgrade with HTTP 400 and a JSON error
    (``{"code":-1121,"msg":"Invalid symbol."}`` / ``-1100``; a bad ``timeUnit`` gives ``-1194``);
    SUBSCRIBE with an invalid stream answers ``{"error":{"code":2,"msg":"Invalid request: invalid
    stream"},"id":...}`` (control errors use this nested shape, as the live service does). SUBSCRIBE /
    UNSUBSCRIBE / LIST_SUBSCRIPTIONS / SET_PROPERTY / GET_PROPERTY (``combined``) are answered like
    Binance. Keepalive: a ping every ``ping_interval`` s (payload = ms time); no pong echoing it within
    ``pong_timeout`` -> close 1008; unsolicited pongs don't count. Binance's limits (docs/binance-limits.md)
    are enforced so that tests prove a client stays inside them: more than 5 (usdm 10) incoming messages
    (pings, pongs, control) in one second -> close 1008 "Too many requests" (as Binance closes);
    more than ``max_streams_per_connection`` (default 1024) streams in a URL -> HTTP 400 ``-1101``, by
    SUBSCRIBE -> an error answer; more than ``max_connection_attempts`` handshakes (default 300) per
    ``connection_attempt_window`` s (default 300) per market and client IP -> HTTP 429 ``-1003`` with
    ``Retry-After`` (our choice: Binance documents the limit, not the answer). ``stats()`` counts each
    (``rate_limit_closes``, ``too_many_streams``, ``attempts_refused``). Connections older than
    ``max_connection_seconds`` are closed with 1001. A client whose unsent backlog passes 64 MiB is
    disconnected (slow consumer).

REST (``exchange.rest``)
    spot ``/api/v3/``: ``ping`` (1), ``time`` (1), ``exchangeInfo`` (20; ``symbol=`` or
    ``symbols=["A","B"]``), ``trades`` (25; recent), ``historicalTrades`` (25; ``fromId``,
    ``limit`` <= 1000, default 500; no key needed), ``aggTrades`` (4; ``fromId`` | ``startTime``/
    ``endTime`` inclusive, ms or µs, ``limit``), ``ticker/24hr`` (2 with ``symbol=``, 80 for all).
    usdm ``/fapi/v1/``: ``ping``, ``time``,
    ``exchangeInfo`` (1), ``trades`` (5), ``historicalTrades`` (200; ``X-MBX-APIKEY`` required, else
    401 ``-2014``; limit <= 500, default 100), ``aggTrades`` (20; time range < 1 h), ``ticker/24hr``
    (1 with ``symbol=``, 40 for all), ``fundingRate`` (settled funding: ``symbol`` optional, ``startTime``/
    ``endTime`` ms, ``limit`` <= 1000, default 100; its own limit of 500 requests per 5 minutes, then 429
    ``-1003`` with ``Retry-After``; history from the start of the simulated history). The tickers are computed from the simulated trades of the last
    24 h (``quoteVolume`` = sum of price x qty), so symbols rank by their simulated activity. Request weight
    (in brackets) is counted per market per UTC minute and reported in ``X-MBX-USED-WEIGHT-1M``;
    above ``weight_limit`` -> 429 ``{"code":-1003,...}`` with ``Retry-After`` (seconds to the next
    minute). Errors are ``{"code","msg"}``: unknown symbol 400 ``-1121``; missing symbol ``-1102``;
    lower-case symbol or non-integer ``fromId``/``limit``/times ``-1100``; limit out of range
    ``-1130``; ``fromId`` together with a time range ``-1128``; duplicate parameters ``-1101``;
    header ``X-MBX-TIME-UNIT: MICROSECOND`` (spot only) gives µs times, a bad value ``-1194``.

Faults (``faults`` object, see ``exchange.faults``; fractions also as constructor keywords)
    ``faults.skip_fraction`` (prints never sent on WS but present in REST), ``malformed_fraction``
    (extra bad frames: non-JSON, missing fields, non-numeric price), ``duplicate_fraction``,
    ``reorder_fraction`` (swap adjacent frames), ``rest_429_fraction``, ``hostile_fraction`` (well-formed
    prints that cannot be real trades: absurd times, ids, unsubscribed symbols); ``fail_next_rest(n, status=429,
    retry_after=1)``. Methods of the exchange: ``drop_connections(how="close"|"reset", market=None)``
    (close handshake 1000, or TCP RST via SO_LINGER 0 + abort), ``stall(seconds, market=None)`` (open
    sockets get no data, no pings and no answers - not even pongs - but stay open; new connections
    are served normally; data generated meanwhile is only in REST), ``send_server_shutdown(market=
    "spot", close_after=3.0)`` (``serverShutdown`` event, raw or ``!serverShutdown`` combined, then a
    1001 close after ``close_after`` s unless the client left).
    ``set_symbol_status(symbol, status, market=None)`` (``delist``, ``halt``) changes a symbol mid-run:
    a halt (``BREAK``) shows in exchangeInfo and stops its prints; ``DELISTED`` also removes it from
    exchangeInfo, the tickers, REST (400 ``-1121``) and new subscriptions; ``"TRADING"`` restores it.

Ground truth & control (thread-safe, for tests)
    ``trades(symbol, market)`` (spot: trades; usdm: aggTrades) and ``agg_trades(symbol, market)``
    DataFrames; ``published_count(market=None)``; ``last_trade_id(symbol, market)``; ``pause()`` /
    ``resume()`` (no prints in between), ``set_rate(rate)``; ``blast(n, market)`` generates ``n`` prints
    over the symbols (live generation paused meanwhile), pre-serializes every frame, then writes them
    as fast as the sockets drain and returns a ``concurrent.futures.Future[BlastResult]``
    (``wait_blast()`` waits for the last one); ``stats()`` -> ``ExchangeStats`` counters (connections,
    frames, faults, REST requests by path, 429s).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import ipaddress
import logging
import re
import signal
import threading
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

import numpy as np
import pandas as pd
from aiohttp import web

from core.durations import DurationError, parse_duration
from core.logs import LEVELS, setup_logging
from exchange.faults import Faults
from exchange.funding import FundingBook
from exchange.model import BASIS_BURN_IN_S, MARKETS, STEP_US, Batch, Instrument, Simulator
from exchange.release import ReleaseQueue
from exchange.rest import RestApi
from exchange.store import InstrumentHistory
from exchange.ws import Outbox, WsConn, WsHub

log = logging.getLogger(__name__)

GEN_TICK_S = 0.005  # the loop hands out the prints whose time has come this often
LEAD_US = 400_000  # prints are drawn at least this far ahead of their time (a generation call must finish by then)
AHEAD_STEPS = 6  # steps per generation call ahead of time (300 ms): one call costs about as much as one step
MARK_LOG = 3600  # published mark-price updates kept per symbol (ground truth for tests: the last hour)
_CHUNK_STEPS = 36_000  # 30 minutes of steps per generation call
_BLAST_CHUNK = 4096  # prints per blast write
_BLAST_HIGH_WATER = 1 << 20
_BLAST_STALL_S = 30.0
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")
T = TypeVar("T")


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True)
class BlastResult:
    """Outcome of ``LocalExchange.blast``."""

    market: str
    prints: int
    connections: int
    frames_sent: int
    bytes_sent: int
    prepare_seconds: float
    send_seconds: float
    first_ids: dict[str, int]
    last_ids: dict[str, int]


@dataclass(frozen=True)
class ExchangeStats:
    """Counters since start."""

    connections_opened: int
    connections_open: int
    connections_rejected: int
    frames_sent: int
    bytes_sent: int
    skipped: int
    malformed_sent: int
    duplicates_sent: int
    swapped: int
    pings_sent: int
    control_messages: int
    closed_by_server: dict[str, int]
    rest_requests: dict[str, int]
    rest_statuses: dict[int, int]
    rest_429_sent: int
    rest_rate_limited: int
    rest_injected: int
    published: dict[str, int]
    hostile_sent: int = 0
    marks_sent: int = 0
    attempts_refused: int = 0   # handshakes refused: too many connection attempts per window
    too_many_streams: int = 0   # URLs / SUBSCRIBEs refused: more streams than one connection may carry
    rate_limit_closes: int = 0  # connections closed 1008: too many incoming messages per second

    @property
    def connections(self) -> int:
        """WebSocket connections opened since start (alias of ``connections_opened``)."""
        return self.connections_opened


class LocalExchange:
    """Binance-compatible WS + REST market-data server on loopback (see module docstring)."""

    def __init__(self, symbols: tuple[str, ...] | list[str] | None = None, *, seed: int = 7,
                 rate: float = 50.0, history_seconds: float = 0.0, host: str = "127.0.0.1", port: int = 0,
                 ping_interval: float = 20.0, pong_timeout: float = 60.0,
                 max_connection_seconds: float = 86400.0, weight_limit: int = 6000,
                 markets: tuple[str, ...] | list[str] = ("spot", "usdm"), skip_fraction: float = 0.0,
                 malformed_fraction: float = 0.0, duplicate_fraction: float = 0.0,
                 reorder_fraction: float = 0.0, rest_429_fraction: float = 0.0, hostile_fraction: float = 0.0,
                 rate_scale: dict[str, float] | None = None, thin_history_after: float = 0.0,
                 thin_rate: float = 0.3, thin_min_rate: float = 0.25, thin_half_life: float = 10800.0,
                 funding_interval: float = 8 * 3600.0,
                 max_streams_per_connection: int = 1024, max_connection_attempts: int = 300,
                 connection_attempt_window: float = 300.0, universe: int = 0, total_rate: float | None = None):
        if universe:
            if symbols is not None:
                raise ValueError("give symbols or universe=N, not both")
            if not isinstance(universe, int) or isinstance(universe, bool) or universe < 1:
                raise ValueError(f"universe must be a whole number of symbols >= 1, got {universe!r}")
            symbols, scale = _universe(universe, markets)
            if rate_scale:
                raise ValueError("universe=N sets rate_scale itself (Zipf by rank); give one or the other")
            rate_scale = scale
        if total_rate is not None:
            if not total_rate >= 0:
                raise ValueError(f"total_rate must be >= 0, got {total_rate!r}")
            names = [str(s).upper() for s in (symbols or ())]
            scale_up = {str(k).upper(): float(v) for k, v in (rate_scale or {}).items()}
            rate = float(total_rate) / max(sum(scale_up.get(s, 1.0) for s in dict.fromkeys(names)), 1e-12)
        if symbols is None:
            symbols = ("BTCUSDT", "ETHUSDT")
        syms = tuple(dict.fromkeys(str(s).upper() for s in symbols))
        bad = [s for s in syms if not _SYMBOL_RE.match(s)]
        if not syms or bad:
            raise ValueError(f"symbols must be 2-20 letters/digits like 'BTCUSDT', got {list(symbols)!r}")
        mkts = tuple(dict.fromkeys(markets))
        if not mkts or any(m not in MARKETS for m in mkts):
            raise ValueError(f"markets must be a non-empty subset of {MARKETS}, got {list(markets)!r}")
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"host must be a loopback address (127.0.0.1, ::1, localhost), got {host!r}")
        for name, v in (("rate", rate), ("history_seconds", history_seconds),
                        ("thin_history_after", thin_history_after), ("thin_min_rate", thin_min_rate),
                        ("thin_half_life", thin_half_life)):
            if not v >= 0:
                raise ValueError(f"{name} must be >= 0, got {v!r}")
        for name, v in (("ping_interval", ping_interval), ("pong_timeout", pong_timeout),
                        ("max_connection_seconds", max_connection_seconds), ("weight_limit", weight_limit),
                        ("max_streams_per_connection", max_streams_per_connection),
                        ("max_connection_attempts", max_connection_attempts),
                        ("connection_attempt_window", connection_attempt_window)):
            if not v > 0:
                raise ValueError(f"{name} must be > 0, got {v!r}")
        self.symbols, self.markets = syms, mkts
        self.seed, self.host, self._req_port = int(seed), host, int(port)
        self.history_seconds = float(history_seconds)
        if not 0.0 < thin_rate <= 1.0:
            raise ValueError(f"thin_rate must be in (0, 1], got {thin_rate!r}")
        self.thin_history_after = float(thin_history_after)
        self.thin_rate, self.thin_min_rate = float(thin_rate), float(thin_min_rate)
        self.thin_half_life = float(thin_half_life)
        self.faults = Faults(self.seed, skip_fraction=skip_fraction, malformed_fraction=malformed_fraction,
                             duplicate_fraction=duplicate_fraction, reorder_fraction=reorder_fraction,
                             rest_429_fraction=rest_429_fraction, hostile_fraction=hostile_fraction)
        scale = {str(k).upper(): float(v) for k, v in (rate_scale or {}).items()}
        if any(not v >= 0 for v in scale.values()):
            raise ValueError(f"rate_scale values must be >= 0, got {rate_scale!r}")
        self._sim = Simulator(syms, mkts, seed=self.seed, rate=rate, rate_scale=scale)
        self._hist = {key: InstrumentHistory(inst) for key, inst in self._sim.instruments.items()}
        self._funding = FundingBook(syms, funding_interval) if "usdm" in mkts else None
        self._mark_sec = 0
        self._marks_log: dict[str, collections.deque] = {s: collections.deque(maxlen=MARK_LOG) for s in syms}
        self._hub = WsHub(frozenset(syms), ping_interval=ping_interval, pong_timeout=pong_timeout,
                          max_connection_seconds=max_connection_seconds, faults=self.faults,
                          max_streams=int(max_streams_per_connection), max_attempts=int(max_connection_attempts),
                          attempt_window=float(connection_attempt_window))
        self._status: dict[tuple[str, str], str] = {}  # (market, symbol) -> status other than TRADING
        self._rest = RestApi(self._hist, markets=mkts, faults=self.faults, weight_limit=int(weight_limit),
                             funding=self._funding)
        self._published = {m: 0 for m in mkts}
        self._paused = False
        self._blasting = False
        self._next_step_us = 0
        self._queue = ReleaseQueue()  # prints drawn ahead, published at their trade time
        self._paths_ahead: collections.deque = collections.deque()  # [step starts, last_paths, fed] for funding
        self._gen_lock: asyncio.Lock | None = None  # held by a generation call and by what changes the simulator
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []
        self._port: int | None = None
        self._start_error: BaseException | None = None
        self._last_blast: concurrent.futures.Future | None = None

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> "LocalExchange":
        """Generate the history, start listening; returns once the port accepts connections."""
        if self._thread is not None or self._port is not None:
            raise RuntimeError("exchange already started (a stopped exchange cannot be restarted)")
        now = _now_us()
        grid = now - now % STEP_US
        n_hist = int(round(self.history_seconds * 1e6 / STEP_US))
        n_thin = 0
        if self.thin_history_after > 0:
            n_thin = max(0, n_hist - int(round(self.thin_history_after * 1e6 / STEP_US)))
        t0 = time.perf_counter()
        if self._funding is not None:  # the first funding period averages all of its steps (exchange.funding)
            first = grid - STEP_US * n_hist
            n_pre = (first % self._funding.interval_us) // STEP_US
            for sym, (psum, pn) in self._sim.preroll_basis(n_pre, int(BASIS_BURN_IN_S * 1e6 / STEP_US)).items():
                self._funding.prime(sym, first, psum, pn)
        for part_lo, part_hi, thin in ((0, n_thin, True), (n_thin, n_hist, False)):
            for lo in range(part_lo, part_hi, _CHUNK_STEPS):
                k = min(_CHUNK_STEPS, part_hi - lo)
                starts = grid - STEP_US * (n_hist - lo - np.arange(k, dtype=np.int64))
                self._store(self._step(starts, self.thin_profile((grid - starts) / 1e6) if thin else None))
        if n_hist:
            floor = self.thin_factors()
            thin = (f", the oldest {n_thin * STEP_US / 1e6:.0f} s thinned (smoothly, half-life "
                    f"{self.thin_half_life:.0f} s, to {min(floor.values()):.2g}-{max(floor.values()):.2g}x the rate)"
                    if n_thin else "")
            log.info("generated %.0f s of history%s (%s prints) in %.2f s", self.history_seconds, thin,
                     self._published, time.perf_counter() - t0)
        self._next_step_us = grid
        ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, args=(ready,), name="local-exchange", daemon=True)
        self._thread.start()
        ready.wait(30.0)
        if self._start_error is not None or self._port is None:
            self._thread.join(5.0)
            self._thread = None
            raise OSError(f"local exchange could not listen on {self.host}:{self._req_port}: {self._start_error}")
        log.info("local exchange listening: %s (REST) %s (WS) symbols=%s markets=%s", self.http_url,
                 self.ws_url, ",".join(self.symbols), ",".join(self.markets))
        return self

    def thin_factors(self) -> dict[str, float]:
        """Rate multiplier per symbol of the oldest thinned history (the floor of ``thin_profile``): ``thin_rate``,
        raised so that no symbol prints less than ``thin_min_rate`` per second there (never above its own rate)."""
        out = {}
        for s in self.symbols:
            own = self._sim.rate * self._sim.rate_scale.get(s, 1.0)
            out[s] = 1.0 if own <= 0 else min(1.0, max(self.thin_rate, self.thin_min_rate / own))
        return out

    def thin_profile(self, age_s: np.ndarray) -> dict[str, np.ndarray]:
        """Rate multiplier per symbol of history steps ``age_s`` seconds old: 1 up to ``thin_history_after``, then
        halving every ``thin_half_life`` seconds down to ``thin_factors()`` (0: straight down to it). Every symbol
        keeps its share of the activity, so the skew between symbols is the live one."""
        over = np.maximum(np.asarray(age_s, dtype=np.float64) - self.thin_history_after, 0.0)
        if self.thin_half_life > 0:
            decay = 0.5 ** (over / self.thin_half_life)
        else:
            decay = np.where(over > 0, 0.0, 1.0)
        return {s: np.maximum(decay, f) for s, f in self.thin_factors().items()}

    def stop(self) -> None:
        """Close every connection, stop the server and the loop thread."""
        if self._thread is None or self._loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(15.0)
        except (concurrent.futures.TimeoutError, RuntimeError):
            log.warning("local exchange: shutdown timed out")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10.0)
        self._thread = None
        log.info("local exchange stopped")

    def __enter__(self) -> "LocalExchange":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("exchange not started")
        return self._port

    @property
    def http_url(self) -> str:
        return f"http://{self._url_host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self._url_host}:{self.port}"

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def _thread_main(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by start()
            self._start_error = exc
            self._loop = None
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        hub = self._hub
        for route, prefix in (("spot", ""), ("usdm", "/market"), ("public", "/public")):
            if ("spot" if route == "spot" else "usdm") not in self.markets:
                continue
            for path, combined in ((f"{prefix}/ws", False), (f"{prefix}/ws/{{tail:.*}}", False),
                                   (f"{prefix}/stream", True)):
                app.router.add_get(path, _ws_handler(hub, route, combined), allow_head=False)
        app.router.add_routes(self._rest.routes())
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._req_port, reuse_address=True)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        loop = asyncio.get_running_loop()
        self._gen_lock = asyncio.Lock()
        self._tasks = [loop.create_task(self._release_forever()), loop.create_task(self._generate_forever()),
                       loop.create_task(hub.housekeeping())]

    async def _shutdown(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._hub.close_all()
        if self._runner is not None:
            await self._runner.cleanup()

    def _call(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn`` on the loop thread (or directly when not running) and return its result."""
        loop = self._loop
        if loop is None or self._thread is None or threading.current_thread() is self._thread:
            return fn(*args)

        async def run() -> T:
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), loop).result(10.0)

    def _call_gen(self, fn: Callable[..., T], *args: object) -> T:
        """``_call`` between two generation calls (``fn`` may change the simulator or drop what is drawn ahead)."""
        loop = self._loop
        if loop is None or self._thread is None or threading.current_thread() is self._thread:
            return fn(*args)

        async def run() -> T:
            async with self._gen_lock:
                return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), loop).result(30.0)

    # --- generation ----------------------------------------------------------------------------------
    def _store(self, batches: dict[tuple[str, str], Batch]) -> dict[str, list[Batch]]:
        by_market: dict[str, list[Batch]] = {}
        for key, b in batches.items():
            self._hist[key].append(b)
            self._published[key[0]] += b.n_units
            by_market.setdefault(key[0], []).append(b)
        return by_market

    def _step(self, starts: np.ndarray, rate_factor: dict[str, float | np.ndarray] | None = None
              ) -> dict[tuple[str, str], Batch]:
        """One generation call; the perpetuals' index/mark paths go to the funding book."""
        batches = self._sim.step(starts, rate_factor)
        if self._funding is not None:
            for sym, (t, log_index, log_basis) in self._sim.last_paths.items():
                self._funding.add(sym, t, log_index, log_basis)
        return batches

    async def _release_forever(self) -> None:
        """Publish every print whose trade time has come (a trade leaves when it happens, as on Binance: the
        event time ``E`` is a few ms after the trade time ``T``), and the mark prices once a second."""
        while True:
            await asyncio.sleep(GEN_TICK_S)
            try:
                now = _now_us()
                self._release(now)
                self._publish_marks(now)
            except Exception:  # keep serving; the failure is a bug worth a traceback
                log.exception("local exchange: publication failed")

    async def _generate_forever(self) -> None:
        """Draw the next steps ahead of time, ``AHEAD_STEPS`` per call, in a worker thread: the loop keeps
        publishing and serving meanwhile, and a whole-market step costs about as much as several."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(GEN_TICK_S)
            if self._paused or self._blasting or self._next_step_us >= _now_us() + LEAD_US:
                continue
            try:
                async with self._gen_lock:
                    now = _now_us()
                    if self._paused or self._blasting or self._next_step_us >= now + LEAD_US:
                        continue
                    behind = (now + LEAD_US - self._next_step_us) // STEP_US + 1  # more after a stall: catch up
                    n = int(min(max(behind, AHEAD_STEPS), _CHUNK_STEPS))
                    starts = self._next_step_us + STEP_US * np.arange(n, dtype=np.int64)
                    batches, paths = await loop.run_in_executor(None, self._draw, starts, self._silenced())
                    self._next_step_us += n * STEP_US
                    self._queue.add(batches, self._next_step_us)
                    if self._funding is not None:
                        self._paths_ahead.append([starts, paths, 0])
            except Exception:  # keep serving; the failure is a bug worth a traceback
                log.exception("local exchange: generation failed")
                await asyncio.sleep(1.0)

    def _draw(self, starts: np.ndarray, rate_factor: dict[str, float] | None
              ) -> tuple[dict[tuple[str, str], Batch], dict[str, tuple]]:
        """One generation call (worker thread; the loop holds ``_gen_lock`` meanwhile)."""
        batches = self._sim.step(starts, rate_factor)
        return batches, dict(self._sim.last_paths)

    def _release(self, now_us: int) -> None:
        for batches in self._queue.due(now_us):
            by_market = self._store(batches)
            event_us = _now_us()
            for market, bs in by_market.items():
                if self._hub.targets(market):
                    self._hub.broadcast(market, Outbox(bs, event_us))

    def _discard_ahead(self, symbols: set[str] | None = None) -> None:
        """Publish what is due, then forget the prints drawn ahead of ``symbols`` (all when None) and hand their
        ids out again (a pause, a halt or a blast: those prints never happened). Under ``_gen_lock``."""
        self._release(_now_us())
        self._queue.drop(symbols)
        for (market, sym), hist in self._hist.items():
            if symbols is None or sym in symbols:
                self._sim.rewind_ids(market, sym, *hist.next_ids())

    def _feed_funding(self, now_us: int) -> None:
        """Steps drawn ahead reach the funding book (marks, settlements) once their time has come."""
        while self._paths_ahead:
            item = self._paths_ahead[0]
            starts, paths, fed = item
            hi = int(np.searchsorted(starts, now_us, side="right"))
            if hi > fed:
                for sym, (t, log_index, log_basis) in paths.items():
                    self._funding.add(sym, t[fed:hi], log_index[fed:hi], log_basis[fed:hi])
                item[2] = hi
            if hi < len(starts):
                return
            self._paths_ahead.popleft()

    def _publish_marks(self, now_us: int) -> None:
        """Once a second (event time on the second): a markPriceUpdate per perpetual to its subscribers."""
        sec = now_us // 1_000_000
        if self._funding is None or sec == self._mark_sec:
            return
        self._mark_sec = sec
        self._feed_funding(now_us)
        e_ms = sec * 1000
        payloads, bad = {}, {}
        fmt = '{"e":"markPriceUpdate","E":%d,"s":"%s","p":"%s","i":"%s","P":"%s","r":"%s","T":%d}'
        for sym, (mal, hos) in zip(self.symbols, self.faults.mark_faults(len(self.symbols))):
            snap = self._funding.snapshot(sym)
            if snap is None:
                continue
            _, mark, index, rate, next_us = snap
            p, i, r = f"{mark:.8f}", f"{index:.8f}", f"{rate:.8f}"
            payloads[sym.lower()] = fmt % (e_ms, sym, p, i, i, r, next_us // 1000)
            self._marks_log[sym].append((e_ms, float(p), float(i), float(r), next_us // 1000))
            extra = []
            if mal >= 0:
                extra.append((("{\"e\":\"markPriceUpdate\",\"E\":%d <truncated" % e_ms),
                              '{"e":"markPriceUpdate","E":%d,"s":"%s","i":"%s","r":"%s","T":%d}'
                              % (e_ms, sym, i, r, next_us // 1000),
                              fmt % (e_ms, sym, "12x.3.4", i, i, r, next_us // 1000))[mal])
            if hos >= 0:
                extra.append((fmt % (9 * 10**17, sym, p, i, i, r, next_us // 1000),
                               fmt % (e_ms, sym, "-" + p, i, i, r, next_us // 1000),
                               fmt % (e_ms, sym, p, i, i, "5.00000000", next_us // 1000),
                               fmt % (e_ms, "ELSEWHEREUSDT", p, i, i, r, next_us // 1000))[hos])
            if extra:
                bad[sym.lower()] = (mal >= 0, hos >= 0, extra)
        self._hub.publish_marks(payloads, every_3s=sec % 3 == 0, bad=bad)

    # --- ground truth --------------------------------------------------------------------------------
    def _history(self, symbol: str, market: str) -> InstrumentHistory:
        h = self._hist.get((market, symbol.upper()))
        if h is None:
            raise ValueError(f"unknown symbol/market {symbol!r}/{market!r}; exchange serves "
                             f"{list(self.symbols)} on {list(self.markets)}")
        return h

    def instrument(self, symbol: str, market: str = "spot") -> Instrument:
        """Tick/lot decimals and id origins of one instrument."""
        return self._history(symbol, market).inst

    def trades(self, symbol: str, market: str = "spot") -> pd.DataFrame:
        """Every published print, oldest first: spot trades or usdm aggTrades.

        Columns ``trade_id, ts`` (UTC, ms as published), ``price, qty`` (float), ``is_buyer_maker``.
        """
        h = self._history(symbol, market)
        inst = h.inst
        view = h.trade_view() if market == "spot" else h.agg_view()
        first = inst.first_trade_id if market == "spot" else inst.first_agg_id
        n = len(view["time"])
        return pd.DataFrame({
            "trade_id": np.arange(first, first + n, dtype=np.int64),
            "ts": _utc_ms(view["time"]),
            "price": view["price"] / 10**inst.tick_dec,
            "qty": view["qty"] / 10**inst.qty_dec,
            "is_buyer_maker": view["m"].copy(),
        })

    def agg_trades(self, symbol: str, market: str = "spot") -> pd.DataFrame:
        """Every published aggTrade: ``agg_id, first_trade_id, last_trade_id, ts, price, qty, is_buyer_maker``."""
        h = self._history(symbol, market)
        inst = h.inst
        view = h.agg_view()
        n = len(view["time"])
        return pd.DataFrame({
            "agg_id": np.arange(inst.first_agg_id, inst.first_agg_id + n, dtype=np.int64),
            "first_trade_id": view["first"].copy(), "last_trade_id": view["last"].copy(),
            "ts": _utc_ms(view["time"]),
            "price": view["price"] / 10**inst.tick_dec,
            "qty": view["qty"] / 10**inst.qty_dec,
            "is_buyer_maker": view["m"].copy(),
        })

    def funding_rates(self, symbol: str) -> pd.DataFrame:
        """Settled funding of one perpetual, oldest first: ``funding_time`` (UTC), ``funding_rate``, ``mark_price``
        (as served by ``/fapi/v1/fundingRate``, 8 decimals)."""
        if self._funding is None:
            raise ValueError("the exchange has no usdm market")
        t, r, m = self._funding.history(self._history(symbol, "usdm").inst.symbol)
        return pd.DataFrame({"funding_time": _utc_ms(t), "funding_rate": [float(f"{x:.8f}") for x in r],
                             "mark_price": [float(f"{x:.8f}") for x in m]})

    def mark_updates(self, symbol: str) -> pd.DataFrame:
        """Mark-price updates published in the last hour (whether or not anyone listened), oldest first: ``ts``
        (event time, UTC), ``mark_price``, ``index_price``, ``funding_rate``, ``next_funding_time``."""
        sym = self._history(symbol, "usdm").inst.symbol
        rows = self._call(lambda: list(self._marks_log[sym]))
        e, p, i, r, t = (np.array(c) for c in zip(*rows)) if rows else ([],) * 5
        return pd.DataFrame({"ts": _utc_ms(np.asarray(e, dtype=np.int64) * 1000), "mark_price": np.asarray(p, float),
                             "index_price": np.asarray(i, float), "funding_rate": np.asarray(r, float),
                             "next_funding_time": _utc_ms(np.asarray(t, dtype=np.int64) * 1000)})

    def published_count(self, market: str | None = None) -> int:
        """Prints generated so far (spot trades + usdm aggTrades, or one market)."""
        return sum(h.n_units for (m, _), h in self._hist.items() if market is None or m == market)

    def last_trade_id(self, symbol: str, market: str = "spot") -> int | None:
        """Id of the newest print (spot trade id / usdm aggTrade id), ``None`` before the first."""
        return self._history(symbol, market).last_unit_id()

    def last_trade_ids(self, market: str = "spot") -> dict[str, int | None]:
        """``last_trade_id`` of every symbol of ``market`` at one moment (one call for a whole universe)."""
        self._check_market(market)
        return self._call(lambda: {s: self._hist[(market, s)].last_unit_id() for s in self.symbols})

    # --- control -------------------------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def rate(self) -> float:
        return self._sim.rate

    def pause(self) -> None:
        """Stop generating prints (connections stay open, pings continue): the prints published so far are
        final (``last_trade_ids``); those drawn ahead of their time are dropped, their ids handed out again."""
        def run() -> None:
            self._paused = True
            self._discard_ahead()
        self._call_gen(run)

    def resume(self) -> None:
        """Generate again from now on; the paused interval has no prints."""
        def run() -> None:
            now = _now_us()
            self._next_step_us = max(self._next_step_us, now - now % STEP_US)
            self._paused = False
        self._call_gen(run)

    def set_rate(self, rate: float) -> None:
        """Mean prints per second per symbol from the next steps drawn on (prints are drawn up to
        ``LEAD_US`` + ``AHEAD_STEPS`` steps ahead of their time, so within ~0.7 s)."""
        if not rate >= 0:
            raise ValueError(f"rate must be >= 0, got {rate!r}")

        def run() -> None:
            self._sim.rate = float(rate)
        self._call_gen(run)

    @property
    def drawn_until_us(self) -> int:
        """End (µs since the epoch) of the steps drawn so far: prints up to here follow the rate and statuses
        they were drawn with (``set_rate`` applies after it)."""
        return self._next_step_us

    def blast(self, n: int, market: str = "spot") -> concurrent.futures.Future:
        """Generate ``n`` prints across the symbols and send them as fast as possible (benchmarks)."""
        if self._loop is None or self._thread is None:
            raise RuntimeError("exchange not started")
        if n < 1 or market not in self.markets:
            raise ValueError(f"need n >= 1 and market in {self.markets}, got n={n}, market={market!r}")
        self._last_blast = asyncio.run_coroutine_threadsafe(self._blast(int(n), market), self._loop)
        return self._last_blast

    def wait_blast(self, timeout: float | None = None) -> BlastResult:
        """Wait for the last ``blast`` to finish sending and return its result."""
        if self._last_blast is None:
            raise RuntimeError("no blast started")
        return self._last_blast.result(timeout)

    async def _blast(self, n: int, market: str) -> BlastResult:
        if self._blasting:
            raise RuntimeError("a blast is already running")
        self._blasting = True
        hub = self._hub
        try:
            async with self._gen_lock:  # the blast's ids follow the last published ones
                self._discard_ahead()
            loop = asyncio.get_running_loop()
            t0 = time.perf_counter()
            batches = await loop.run_in_executor(None, self._sim.blast, market, n, _now_us())
            self._store(batches)
            per = max(1, -(-_BLAST_CHUNK // len(batches)))
            longest = max(b.n_trades for b in batches.values())
            event_us = _now_us()
            outboxes = [Outbox([b.take(lo, min(lo + per, b.n_trades)) for b in batches.values() if lo < b.n_trades],
                               event_us) for lo in range(0, longest, per)]
            conns = hub.targets(market)
            variants = {(tuple(c.streams), c.combined, c.us) for c in conns}
            await loop.run_in_executor(None, _prepare, outboxes, variants, self.faults)
            t1 = time.perf_counter()
            frames0, bytes0 = hub.counters.frames_sent, hub.counters.bytes_sent
            for ob in outboxes:
                for c in hub.targets(market):
                    hub.send(c, ob)
                await self._drain(conns)
            t2 = time.perf_counter()
            return BlastResult(market, n, len(conns), hub.counters.frames_sent - frames0,
                               hub.counters.bytes_sent - bytes0, t1 - t0, t2 - t1,
                               {k[1]: b.first_trade_id if market == "spot" else b.first_agg_id
                                for k, b in batches.items()},
                               {k[1]: (b.first_trade_id if market == "spot" else b.first_agg_id) + b.n_units - 1
                                for k, b in batches.items()})
        finally:
            self._blasting = False

    async def _drain(self, conns: list[WsConn]) -> None:
        deadline = time.monotonic() + _BLAST_STALL_S
        while True:
            waiting = [c for c in conns if c.writable and c.buffer_size() > _BLAST_HIGH_WATER]
            if not waiting:
                return
            if time.monotonic() > deadline:
                for c in waiting:
                    log.warning("ws #%d: not reading during blast, disconnecting", c.cid)
                    self._hub.reset(c, reason_key="slow_consumer")
                return
            await asyncio.sleep(0.0005)

    # --- faults --------------------------------------------------------------------------------------
    def _check_market(self, market: str | None) -> None:
        if market is not None and market not in self.markets:
            raise ValueError(f"market must be one of {self.markets} or None, got {market!r}")

    def drop_connections(self, how: str = "close", market: str | None = None) -> int:
        """Drop open WebSocket connections: ``"close"`` (close frame 1000) or ``"reset"`` (TCP RST)."""
        if how not in ("close", "reset"):
            raise ValueError(f"how must be 'close' or 'reset', got {how!r}")
        self._check_market(market)
        return self._call(self._hub.drop, how, market)

    def stall(self, seconds: float, market: str | None = None) -> int:
        """Open sockets get no data, pings or answers for ``seconds`` but stay open."""
        if not seconds > 0:
            raise ValueError(f"seconds must be > 0, got {seconds!r}")
        self._check_market(market)
        return self._call(self._hub.stall, float(seconds), market)

    def set_symbol_status(self, symbol: str, status: str, market: str | None = None) -> None:
        """Change a symbol's status mid-run on one market (None: every market): ``"TRADING"``; a halt such as
        ``"BREAK"`` / ``"HALT"`` (exchangeInfo shows it, REST still serves its history); or ``"DELISTED"``
        (gone from exchangeInfo and the tickers, REST answers 400 ``-1121`` "Invalid symbol.", URLs and
        SUBSCRIBEs naming it are refused as for an unknown symbol). A symbol not TRADING on any market prints
        nothing on any market (the simulator draws one order flow per symbol); open subscriptions stay, silent."""
        sym = str(symbol).upper()
        if sym not in self.symbols:
            raise ValueError(f"unknown symbol {symbol!r}; exchange serves {list(self.symbols)}")
        if not re.fullmatch(r"[A-Z_]{2,20}", str(status)):
            raise ValueError(f"status must be an upper-case word such as TRADING, BREAK, HALT or DELISTED, got "
                             f"{status!r}")
        self._check_market(market)

        def run() -> None:
            for m in ([market] if market else self.markets):
                if status == "TRADING":
                    self._status.pop((m, sym), None)
                else:
                    self._status[(m, sym)] = status
            self._rest.status = dict(self._status)
            for m in self.markets:
                gone = {s for (mm, s), st in self._status.items() if mm == m and st == "DELISTED"}
                self._hub.listed[m] = frozenset(s for s in self.symbols if s not in gone)
            if status != "TRADING":  # its prints drawn ahead never happen
                self._discard_ahead({sym})
        self._call_gen(run)

    def delist(self, symbol: str, market: str | None = None) -> None:
        """``set_symbol_status(symbol, "DELISTED", market)``."""
        self.set_symbol_status(symbol, "DELISTED", market)

    def halt(self, symbol: str, market: str | None = None, status: str = "BREAK") -> None:
        """``set_symbol_status(symbol, status, market)`` (default ``BREAK``, as Binance shows a halted pair)."""
        self.set_symbol_status(symbol, status, market)

    def _silenced(self) -> dict[str, float] | None:
        return {s: 0.0 for (_, s) in self._status} or None

    def fail_next_rest(self, n: int = 1, status: int = 429, retry_after: int = 1) -> None:
        """Answer the next ``n`` REST requests with ``status`` and ``Retry-After: retry_after``."""
        self.faults.fail_next_rest(n, status, retry_after)

    def send_server_shutdown(self, market: str | None = "spot", close_after: float | None = 3.0) -> int:
        """Send ``serverShutdown`` to open connections, then close them after ``close_after`` s."""
        self._check_market(market)
        return self._call(self._hub.server_shutdown, market, close_after)

    def stats(self) -> ExchangeStats:
        def run() -> ExchangeStats:
            w, r = self._hub.counters, self._rest.counters
            return ExchangeStats(
                w.connections_opened, len(self._hub.conns), w.connections_rejected, w.frames_sent, w.bytes_sent,
                w.skipped, w.malformed_sent, w.duplicates_sent, w.swapped, w.pings_sent, w.control_messages,
                dict(w.closed_by_server), dict(r.requests), dict(r.statuses), r.sent_429, r.rate_limited,
                r.injected, {m: self.published_count(m) for m in self.markets}, w.hostile_sent,
                w.marks_sent, w.attempts_refused, w.too_many_streams, w.closed_by_server.get("rate_limit", 0))
        return self._call(run)


def _universe(n: int, markets) -> tuple[list[str], dict[str, float]]:
    """Symbols and Zipf rate scale of ``universe=n``: each market's ``n`` busiest (``exchange.universe``); a usdm
    contract named otherwise than its spot pair (``1000SHIBUSDT``) trades at its spot pair's rank."""
    from exchange.universe import universe_symbols, zipf_rate_scale

    spot = universe_symbols(n, "spot")
    scale = zipf_rate_scale(spot)
    names = list(spot) if "spot" in markets else []
    if "usdm" in markets:
        usdm = universe_symbols(n, "usdm")
        for s, w in zipf_rate_scale(usdm).items():
            scale.setdefault(s, w)
        names += [s for s in usdm if s not in names]
    return names, {s: scale[s] for s in names}


def _ws_handler(hub: WsHub, route: str, combined: bool):
    async def handler(request: web.Request) -> web.StreamResponse:
        return await hub.handle(request, route=route, combined=combined)
    return handler


def _prepare(outboxes: list[Outbox], variants: set[tuple[tuple[str, ...], bool, bool]], faults: Faults) -> None:
    """Serialize every frame a blast will send (runs in a worker thread)."""
    for ob in outboxes:
        ob.masks(faults)
        for streams, combined, us in variants:
            for s in streams:
                i = ob.name_idx.get(s)
                if i is not None:
                    ob.frames(i, combined, us)


def _utc_ms(t_us: np.ndarray) -> pd.Series:
    return pd.Series((t_us // 1000).astype("datetime64[ms]")).dt.tz_localize("UTC")


# --- CLI -----------------------------------------------------------------------------------------------

def _duration(text: str) -> float:
    """``'2h'``, ``'30m'``, ``'90s'``, ``'500ms'``, ``'1d'`` or plain seconds -> seconds."""
    try:
        return parse_duration(text, ("ms", "s", "m", "h", "d"), bare_seconds=True)
    except DurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fraction(text: str) -> float:
    v = float(text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction within [0, 1], got {text!r}")
    return v


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m exchange",
                                description="Local Binance-compatible exchange (WS + REST) on loopback.")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9001, help="port, 0 = any free port (default 9001)")
    p.add_argument("--symbols", default=None, help="comma-separated symbols (default btcusdt,ethusdt,solusdt,bnbusdt)")
    p.add_argument("--universe", type=int, default=0, metavar="N",
                   help="instead of --symbols: the N busiest symbols of a simulated whole market (the 24-symbol demo "
                        "universe first), trade rates Zipf-skewed by rank")
    p.add_argument("--total-rate", type=float, default=None, metavar="R",
                   help="mean prints per second of all symbols together per market (sets --rate from the skew)")
    p.add_argument("--markets", default="spot,usdm", help="comma-separated: spot,usdm")
    p.add_argument("--rate", type=float, default=20.0,
                   help="mean prints per second per symbol (with --universe: of the busiest one)")
    p.add_argument("--history", type=_duration, default=0.0, help="pre-generated history, e.g. 2h")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--ping-interval", type=_duration, default=20.0)
    p.add_argument("--pong-timeout", type=_duration, default=60.0)
    p.add_argument("--max-connection", type=_duration, default=86400.0, help="connection lifetime")
    p.add_argument("--weight-limit", type=int, default=6000, help="REST request weight per minute")
    p.add_argument("--funding-interval", type=_duration, default=8 * 3600.0,
                   help="funding period of the perpetuals, e.g. 8h (default), 1h, or 30s to watch it happen")
    for name in ("skip", "malformed", "duplicate", "reorder", "rest-429", "hostile"):
        p.add_argument(f"--{name}-fraction", type=_fraction, default=0.0)
    p.add_argument("--log-level", default="INFO", choices=LEVELS)
    a = p.parse_args(argv)
    setup_logging(a.log_level)
    if a.universe and a.symbols is not None:
        p.error("give --symbols or --universe, not both")
    symbols = None if a.universe else [s.strip() for s in (a.symbols or "btcusdt,ethusdt,solusdt,bnbusdt").split(",")
                                       if s.strip()]
    try:
        ex = LocalExchange(
            symbols, universe=a.universe, total_rate=a.total_rate, seed=a.seed, rate=a.rate,
            history_seconds=a.history, host=a.host, port=a.port, ping_interval=a.ping_interval,
            pong_timeout=a.pong_timeout, max_connection_seconds=a.max_connection, weight_limit=a.weight_limit,
            markets=[m.strip() for m in a.markets.split(",") if m.strip()], skip_fraction=a.skip_fraction,
            malformed_fraction=a.malformed_fraction, duplicate_fraction=a.duplicate_fraction,
            reorder_fraction=a.reorder_fraction, rest_429_fraction=a.rest_429_fraction,
            hostile_fraction=a.hostile_fraction, funding_interval=a.funding_interval)
    except ValueError as exc:
        p.error(str(exc))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        ex.start()
    except OSError as exc:
        log.error("%s", exc)
        return 2
    log.info("ready: %d symbols, WS %s/stream?streams=%s@trade  REST %s/api/v3/ping  (Ctrl-C stops)",
             len(ex.symbols), ex.ws_url, ex.symbols[0].lower(), ex.http_url)
    while not stop.wait(0.5):
        pass
    ex.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
