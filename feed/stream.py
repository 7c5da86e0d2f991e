"""The WebSocket side of a market: one supervisor per connection (shard), each keeping its combined stream alive.

- a market's symbols are spread over several connections (feed.shards.plan_shards), each within the stream cap;
  streams ride in the URL while it is short, the rest are subscribed by message at a pace well below the
  per-connection message limit; every connection attempt of a market waits for the shared AttemptLimiter
  (staggered opening, attempts per window);
- pings are answered by websocket-client as they arrive; the supervisor's watchdog (monotonic clock) aborts a
  connection that has been silent for `watchdog_s` and reconnects;
- reconnects back off exponentially with full jitter, capped, reset after a connection delivers data;
- before Binance's 24 h limit (`rotate_after_s`) or on `serverShutdown`, a new connection is opened and fully
  subscribed first, then the old one closed (ids overlap; the writer keeps each id once);
- receive threads never touch the database: trades go to the TickBuffer; id jumps go to the Backfiller.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import websocket

from feed.backfill import GapTracker
from feed.binance import (ImplausibleTrade, MalformedFrame, MarketSpec, MarkPrice, Trade, combined_url, parse_frame,
                          symbol_streams)
from feed.shards import NAMES_PER_MESSAGE, URL_MAX_CHARS, AttemptLimiter, SubscribePlan, plan_subscribe
from feed.state import IngestState, now_us
from tickstore.writer import TickBuffer, rows_to_arrow

log = logging.getLogger(__name__)

_CONT, _TEXT, _BINARY = websocket.ABNF.OPCODE_CONT, websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY
_CLOSE, _PING, _PONG = websocket.ABNF.OPCODE_CLOSE, websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG
RECV_BYTES = 1 << 20   # one socket read takes everything the kernel holds, up to this
COLUMNAR_MIN = 64      # trades of one read converted to Arrow on the spot from this many (fixed cost ~50 µs)


class FrameSplitter:
    """Server-to-client WebSocket frames (RFC 6455) out of raw socket reads.

    websocket-client reads each frame with several small `recv` calls (header, length, payload), each a
    syscall that releases and re-takes the GIL; at tens of thousands of frames per second that dominates the
    receive thread. Reading whatever the socket holds in one call and splitting it here costs one slice
    per frame. `feed(chunk)` returns the complete frames as `(opcode, payload)`, fragmented messages joined
    (delivered under their first frame's opcode); a partial frame waits for the next chunk.
    """

    def __init__(self) -> None:
        self._buf = b""
        self._frag: list[bytes] | None = None
        self._frag_op = 0

    def feed(self, chunk: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf + chunk if self._buf else chunk
        out: list[tuple[int, bytes]] = []
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if b1 < 126:
                n, head = b1, 2
            elif b1 == 126:
                if size - pos < 4:
                    break
                n, head = buf[pos + 2] << 8 | buf[pos + 3], 4
            else:  # 8-byte length, or a masked frame (mask bit set: b1 >= 128)
                n, head = b1 & 0x7F, 2
                if n == 126:
                    if size - pos < 4:
                        break
                    n, head = buf[pos + 2] << 8 | buf[pos + 3], 4
                elif n == 127:
                    if size - pos < 10:
                        break
                    n, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
                if b1 & 0x80:
                    head += 4
            end = pos + head + n
            if end > size:
                break
            payload = buf[pos + head:end]
            pos = end
            if b0 == 0x81 and b1 < 128:  # the common case: a whole, unmasked text frame
                out.append((_TEXT, payload))
                continue
            if b1 & 0x80:  # servers must not mask; unmask like websocket-client does
                payload = websocket.ABNF.mask(buf[end - n - 4:end - n], payload)
            op = b0 & 0x0F
            if b0 & 0x70:
                raise websocket.WebSocketProtocolException(f"rsv bits set in frame header {b0:#04x}")
            if op == _TEXT or op == _BINARY:
                if b0 & 0x80:
                    out.append((op, payload))
                else:
                    self._frag, self._frag_op = [payload], op
            elif op == _CONT:
                if self._frag is None:
                    raise websocket.WebSocketProtocolException("continuation frame without a message to continue")
                self._frag.append(payload)
                if b0 & 0x80:
                    out.append((self._frag_op, b"".join(self._frag)))
                    self._frag = None
            elif op in (_CLOSE, _PING, _PONG):
                out.append((op, payload))
            else:
                raise websocket.WebSocketProtocolException(f"invalid opcode {op:#x}")
        self._buf = buf[pos:] if pos < size else b""
        return out


class Connection:
    """One WebSocket connection and its receive thread: `handler(frames, conn)` gets the data frames of each
    socket read, in order; pings are answered here. `subscribe()` sends a SUBSCRIBE message (from the
    supervisor's thread); `ready` is set by the supervisor once every stream of the connection is acknowledged."""

    def __init__(self, url: str, handler, name: str) -> None:
        self.url = url
        self.handler = handler
        self.name = name
        self.ws: websocket.WebSocket | None = None
        self.opened = threading.Event()
        self.first_data = threading.Event()
        self.ready = threading.Event()
        self.done = threading.Event()
        self.opened_at = time.monotonic()
        self.last_msg = time.monotonic()
        self.close_reason = "unknown"
        self.shutdown_notice = False
        self.frames = 0
        self.pending_ids: set[int] = set()   # SUBSCRIBE ids not acknowledged yet
        self.refused: str | None = None      # the error answer to a SUBSCRIBE, if any
        self._next_id = 0
        self._aborted = False
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "Connection":
        self.thread.start()
        return self

    def subscribe(self, streams: list[str]) -> None:
        self._next_id += 1
        self.pending_ids.add(self._next_id)
        self.ws.send(orjson.dumps({"method": "SUBSCRIBE", "params": streams, "id": self._next_id}).decode())

    def on_control(self, item: dict) -> None:
        """An answer to a control message: `{"result": null, "id": n}` or an error naming the request id."""
        rid = item.get("id")
        err = item.get("error") or ({"code": item["code"], "msg": item.get("msg")} if "code" in item else None)
        if err is not None:
            self.refused = f"SUBSCRIBE {rid} refused: {str(err)[:200]}"
        self.pending_ids.discard(rid)

    def _run(self) -> None:
        try:
            self.ws = websocket.create_connection(self.url, timeout=10, skip_utf8_validation=True,
                                                  enable_multithread=True, suppress_origin=True)
            self.ws.settimeout(None)
            self.opened_at = self.last_msg = time.monotonic()
            self.opened.set()
            recv = self.ws.sock.recv
            split = FrameSplitter().feed
            handler = self.handler
            closed = False
            while not self._aborted and not closed:
                chunk = recv(RECV_BYTES)
                if not chunk:
                    raise websocket.WebSocketConnectionClosedException("Connection to remote host was lost.")
                self.last_msg = time.monotonic()
                data: list[bytes] = []
                for opcode, payload in split(chunk):
                    if opcode == _TEXT or opcode == _BINARY:
                        data.append(payload)
                    elif opcode == _PING:
                        self.ws.pong(payload)
                    elif opcode == _CLOSE:
                        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                        self.close_reason = f"closed by server (code {code}{' ' + payload[2:80].decode(errors='replace') if len(payload) > 2 else ''})"
                        closed = True
                        break
                if data:
                    self.frames += len(data)
                    handler(data, self)
                    if not self.first_data.is_set():
                        self.first_data.set()
        except websocket.WebSocketBadStatusException as exc:
            body = exc.resp_body or b""
            self.close_reason = f"handshake refused: HTTP {exc.status_code} {body[:200]!r}"
        except (websocket.WebSocketException, OSError) as exc:
            if not self._aborted:
                self.close_reason = f"{exc.__class__.__name__}: {exc}"
        except Exception as exc:  # a bug in the handler must not kill the feed silently
            log.exception("%s: receive loop crashed", self.name)
            self.close_reason = f"receive loop error: {exc}"
        finally:
            self.abort(None)
            self.done.set()

    def abort(self, reason: str | None) -> None:
        if reason and not self._aborted:
            self.close_reason = reason
        self._aborted = True
        ws = self.ws
        if ws is not None:
            try:
                ws.abort()
                ws.close(timeout=0.2)
            except Exception:
                pass


@dataclass(frozen=True)
class Reconnected:
    """A connection is up and every stream acknowledged: its `quiet` symbols have not printed since."""

    shard: str
    quiet: list[str]
    acked_mono: float            # time.monotonic() once every stream was acknowledged
    down_since_us: int | None    # wall time of the previous connection's last message; None on the first one


class ShardStream:
    """Supervises one connection of one market, carrying `symbols` (a share of the market's, see feed.shards).

    `on_refused(shard, reason)` is called when the exchange refuses the handshake or a SUBSCRIBE with a 4XX / an
    error answer (e.g. a symbol delisted meanwhile); it may drop symbols (`drop_symbols`) before the next attempt."""

    def __init__(self, spec: MarketSpec, symbols: list[str], buffer: TickBuffer, state: IngestState,
                 tracker: GapTracker, ws_base: str | None = None, watchdog_s: float = 30.0,
                 rotate_after_s: float = 23.5 * 3600, backoff_base_s: float = 0.5, backoff_cap_s: float = 30.0,
                 stop: threading.Event | None = None, marks=None, limiter: AttemptLimiter | None = None,
                 index: int = 1, url_max: int = URL_MAX_CHARS, names_per_message: int = NAMES_PER_MESSAGE,
                 on_refused: Callable[["ShardStream", str], None] | None = None,
                 on_reconnected: Callable[["Reconnected"], None] | None = None, catchup_after_s: float = 3.0) -> None:
        self.spec = spec
        self.market = spec.name
        self.name = f"{spec.name}#{index}"
        self.ws_base = ws_base
        self.url_max = url_max
        self.names_per_message = names_per_message
        self.buffer = buffer
        self.marks = marks    # sink of mark-price rows (`add_marks(rows)`), when the market streams them
        self.state = state
        self.tracker = tracker
        self.watchdog_s = watchdog_s
        self.rotate_after_s = rotate_after_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.stop = stop or threading.Event()
        self.limiter = limiter or AttemptLimiter(spacing_s=0.0)
        self.on_refused = on_refused
        self.on_reconnected = on_reconnected
        self.catchup_after_s = catchup_after_s
        self._catchup_at = 0.0
        self._reconnected_us = 0
        self._reconnected_mono = 0.0
        self._down_since_us: int | None = None   # wall time of the last message before the connection went down
        self.connections = 0
        self.malformed = 0
        self._malformed_logged = 0.0
        self._malformed_since_log = 0
        self._seq = 0
        self._holding_back = False
        self._set_symbols(list(symbols))
        state.set_link(self.market, self.name, self.symbols, False)  # the market is connected once every one is up
        self._thread = threading.Thread(target=self._supervise, name=f"stream-{self.name}", daemon=True)
        self.current: Connection | None = None

    def _set_symbols(self, symbols: list[str]) -> None:
        self.symbols = symbols
        self.subscribed = frozenset(symbols)  # a print of any other symbol is rejected, never stored
        self.streams = [n for s in symbols for n in symbol_streams(self.spec, s)]
        self.plan: SubscribePlan = plan_subscribe(self.streams, len(combined_url(self.spec, [], self.ws_base)),
                                                  self.spec.msg_rate, self.url_max, self.names_per_message)
        self.url = combined_url(self.spec, self.plan.in_url, self.ws_base)

    def drop_symbols(self, gone: set[str]) -> None:
        """Stop carrying `gone` (delisted): the next connection is opened without them."""
        if gone & self.subscribed:
            self._set_symbols([s for s in self.symbols if s not in gone])

    def start(self) -> "ShardStream":
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # receive path (runs on the connection thread) ----------------------------------------------------------
    def _on_frames(self, frames: list[bytes], conn: Connection) -> None:
        """The data frames of one socket read: trades go to the buffer in one append (as Arrow when many),
        the rest one by one."""
        market, recv_us, observe, subscribed = self.market, now_us(), self.tracker.observe, self.subscribed
        trades, marks = [], []
        if self.buffer.full:
            # memory cap reached while flushes fail: take no trades (not even into the gap tracker), so the first
            # trade taken again jumps over them and the backfill fetches them from the exchange
            frames = self._hold_back(frames)
        for data in frames:
            try:
                item = parse_frame(data, market, recv_us)
            except MalformedFrame as exc:
                self._on_malformed(exc)
                continue
            if type(item) is Trade:
                if item.symbol not in subscribed:
                    self._on_malformed(ImplausibleTrade(f"print of unsubscribed symbol {item.symbol[:40]!r}"))
                    continue
                observe(item)
                trades.append(item)
            elif type(item) is MarkPrice:
                if item.symbol not in subscribed or self.marks is None:
                    self._on_malformed(ImplausibleTrade(f"mark price of unsubscribed symbol {item.symbol[:40]!r}"))
                    continue
                marks.append(item)
            else:
                self._on_message(item, conn)
        if self._holding_back and not self.buffer.full:
            self._holding_back = False
            log.warning("%s: buffer below its cap again; taking trades (the skipped ones are backfilled)", self.name)
        if marks:
            self.marks.add_marks(marks)
        if len(trades) >= COLUMNAR_MIN:
            self.buffer.extend_table(rows_to_arrow(trades))  # columnar right away: a tenth of the memory
        elif trades:
            self.buffer.extend(trades)

    def _hold_back(self, frames: list[bytes]) -> list[bytes]:
        """Drop trade frames while the buffer is full (control frames still count); logged once per episode."""
        if not self._holding_back:
            self._holding_back = True
            log.error("%s: %d ticks wait in memory (buffer cap reached, flushes failing); not taking new trades "
                      "until they are written - the skipped ids are backfilled afterwards", self.name,
                      self.buffer.capacity)
            self.state.event("buffer_full", self.market, count=self.buffer.capacity,
                             detail=f"{self.name}: not taking trades; the backfill fetches them once flushes work")
            # a catch-up over REST from each symbol's last id: it waits for room, then fetches what is skipped here
            # even if no later trade arrives to reveal the hole
            for sym in self.symbols:
                if self.state.stats(self.market, sym).last_trade_id is not None:
                    self.tracker.resume(sym, "trades skipped at the buffer cap")
        return [f for f in frames if b'"e":"trade"' not in f and b'"e":"aggTrade"' not in f]

    def _on_message(self, item: dict, conn: Connection) -> None:
        if item.get("e") == "serverShutdown":
            log.warning("%s: server announced shutdown; switching connection", self.name)
            self.state.event("server_shutdown", self.market, detail=f"{self.name}: serverShutdown event")
            conn.shutdown_notice = True
        elif "result" in item or "id" in item:
            conn.on_control(item)  # answer to a SUBSCRIBE
        elif "code" in item:
            log.warning("%s: stream error message %s", self.name, item)
        else:
            self._on_malformed(MalformedFrame(f"unexpected event {str(item)[:80]}"))

    def _on_malformed(self, exc: MalformedFrame) -> None:
        self.malformed += 1
        self._malformed_since_log += 1
        now = time.monotonic()
        if now - self._malformed_logged > 10.0:
            log.warning("%s: %d malformed frame(s) skipped; latest: %s", self.name, self._malformed_since_log, exc)
            self.state.event("malformed", self.market, count=self._malformed_since_log, detail=str(exc)[:200])
            self._malformed_logged = now
            self._malformed_since_log = 0
        for sym in self.symbols:  # the symbol of a bad frame is unknown: every symbol of the connection counts it
            self.state.stats(self.market, sym).malformed += 1

    # supervision -------------------------------------------------------------------------------------------
    def _new_connection(self) -> Connection | None:
        """A new connection once the market's attempt limiter allows one (None when stopping)."""
        if not self.limiter.acquire(self.stop):
            return None
        self._seq += 1
        self.connections += 1
        return Connection(self.url, self._on_frames, f"ws-{self.name}-{self._seq}").start()

    def _set_connected(self, up: bool, reason: str | None = None) -> None:
        was = self.state.set_link(self.market, self.name, self.symbols, up)
        if up and not was:
            self.state.event("connected", self.market, detail=f"{self.name}: {self.url[:200]}; {self.plan.summary()}")
            log.info("%s: connected to %s (%s)", self.name, _short(self.url), self.plan.summary())
        elif not up and was:
            self.state.event("disconnected", self.market, detail=f"{self.name}: {reason}")
            log.warning("%s: disconnected: %s", self.name, reason)

    def _open(self, conn: Connection) -> bool:
        """Wait for the handshake, send the SUBSCRIBE messages paced, wait for every answer; False on failure
        (conn.close_reason / conn.refused say why)."""
        deadline = time.monotonic() + 15
        while not conn.opened.wait(0.1):
            if self.stop.is_set() or conn.done.is_set() or time.monotonic() > deadline:
                return False
        for batch in self.plan.messages:
            if self.stop.wait(self.plan.spacing_s) or conn.done.is_set():
                return False
            try:
                conn.subscribe(batch)
            except (websocket.WebSocketException, OSError) as exc:
                conn.abort(f"SUBSCRIBE failed: {exc}")
                return False
        deadline = time.monotonic() + 15
        while conn.pending_ids:
            if self.stop.wait(0.05) or conn.done.is_set() or time.monotonic() > deadline:
                return False
        if conn.refused:
            return False
        conn.ready.set()
        return True

    def _refused(self, conn: Connection) -> str:
        """Why `conn` could not be used; a refusal by the exchange is reported to `on_refused` first."""
        reason = conn.refused or conn.close_reason
        if (conn.refused or reason.startswith("handshake refused: HTTP 4")) and self.on_refused is not None \
                and "HTTP 429" not in reason and "HTTP 418" not in reason:
            self.on_refused(self, reason)
        return reason

    def _supervise(self) -> None:
        attempt = 0
        while not self.stop.is_set() and self.symbols:
            conn = self._new_connection()
            if conn is None:
                break
            self.current = conn
            if not self._open(conn):
                reason = self._refused(conn)
                conn.abort("connect failed")
                if self.stop.is_set():
                    break
                attempt += 1
                self._backoff(attempt, reason)
                continue
            self._set_connected(True)
            if self.on_reconnected is not None:
                # trades made while no connection carried a symbol (a reconnect, or the start after a catch-up that
                # ended before the subscription) show as an id jump once it prints again; symbols that stay quiet
                # are caught up over REST a moment after the connection is up
                self._reconnected_mono, self._reconnected_us = time.monotonic(), now_us()
                self._catchup_at = self._reconnected_mono + self.catchup_after_s
            reason = self._watch(conn)
            conn = self.current  # a rotation may have replaced it
            self._down_since_us = now_us() - int((time.monotonic() - conn.last_msg) * 1e6)
            if not self.symbols:
                break
            if conn.frames:
                attempt = 0
            if self.stop.is_set():
                conn.abort("stopping")
                break
            self._set_connected(False, reason)
            for sym in self.symbols:
                self.state.stats(self.market, sym).reconnects += 1
            self.state.event("reconnect", self.market, detail=f"{self.name}: {reason}")
            attempt += 1
            self._backoff(attempt, reason)
        if not self.symbols and not self.stop.is_set():
            log.warning("%s: no symbol left to stream (all delisted); connection closed", self.name)
            self.state.drop_link(self.market, self.name)
            return
        self._set_connected(False, "stopped")

    def _watch(self, conn: Connection) -> str:
        """Block while `conn` is healthy; returns why it ended. Handles rotation to a fresh connection."""
        while not self.stop.wait(0.2):
            conn = self.current
            if conn.done.is_set():
                return conn.close_reason
            if not self.symbols:
                conn.abort("no symbol left")
                return "no symbol left"
            if self._catchup_at and time.monotonic() >= self._catchup_at:
                self._catchup_at = 0.0
                quiet = [s for s in self.symbols if (self.state.stats(self.market, s).last_recv_us or 0)
                         < self._reconnected_us]
                if quiet:
                    event = Reconnected(self.name, quiet, self._reconnected_mono, self._down_since_us)
                    threading.Thread(target=self.on_reconnected, args=(event,), name=f"catchup-{self.name}",
                                     daemon=True).start()
            silent = time.monotonic() - conn.last_msg
            if silent > self.watchdog_s:
                conn.abort(f"silent for {silent:.1f}s (watchdog)")
                log.warning("%s: no message for %.1fs; reconnecting", self.name, silent)
                conn.done.wait(2)
                return conn.close_reason
            if conn.shutdown_notice or time.monotonic() - conn.opened_at > self.rotate_after_s:
                why = "serverShutdown" if conn.shutdown_notice else f"proactive rotation after {self.rotate_after_s:.0f}s"
                self._rotate(conn, why)
        return "stopping"

    def _rotate(self, old: Connection, why: str) -> None:
        """Open and fully subscribe a new connection, then close `old` (both deliver meanwhile; ids dedupe)."""
        new = self._new_connection()
        if new is None:
            return
        if not self._open(new):
            reason = self._refused(new)
            new.abort("rotation failed")
            old.shutdown_notice = False
            old.opened_at = time.monotonic()  # try again later; the old one is still serving
            log.warning("%s: could not open a replacement connection (%s: %s); keeping the current one", self.name,
                        why, reason)
            return
        new.first_data.wait(1.0)  # let the new one deliver before the old one stops (a quiet shard may not)
        old.abort(why)
        self.current = new
        self.state.event("rotated", self.market, detail=f"{self.name}: {why}")
        log.info("%s: switched to a new connection (%s)", self.name, why)

    def _backoff(self, attempt: int, reason: str) -> None:
        delay = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
        log.warning("%s: connection lost (%s); reconnecting in %.1fs", self.name, reason, delay)
        self.stop.wait(delay)


def _short(url: str, keep: int = 160) -> str:
    return url if len(url) <= keep else f"{url[:keep]}...({len(url)} chars)"


MarketStream = ShardStream  # the single-connection name of earlier versions
