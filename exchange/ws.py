"""WebSocket side of the local exchange: stream names, connections, control messages and frames.

Frames are written straight to the connection's transport as pre-built, unmasked RFC 6455 frames
(permessage-deflate is never negotiated), so one broadcast is one ``transport.write`` per connection
and frames of a batch are serialized once per (stream, combined?, time unit) and shared by all
connections. See ``exchange.server`` for the behaviour this implements.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import struct
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
from aiohttp import WSMsgType, web

from exchange.faults import HOSTILE_KINDS, FaultMasks, Faults
from exchange.format import with_bad_price, ws_agg_payloads, ws_trade_payloads
from exchange.model import Batch

log = logging.getLogger(__name__)

OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
MAX_STREAMS = 1024  # streams per connection (Binance's documented limit on both markets)
MSG_LIMIT = {"spot": 5, "usdm": 10}  # incoming messages per second before disconnect
MAX_ATTEMPTS, ATTEMPT_WINDOW_S = 300, 300.0  # connection attempts per IP (spot's documented 300 per 5 minutes)
SLOW_CONSUMER_BYTES = 64 * 1024 * 1024
_STREAM_RE = re.compile(r"^([a-z0-9]{2,20})@(trade|aggTrade|markPrice|markPrice@1s)$")
MARK_KINDS = ("markPrice", "markPrice@1s")  # usdm only: every 3 s / every second
_ID_RE = re.compile(r"^[A-Za-z0-9]{1,36}$")
_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")


def ws_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One unmasked, final RFC 6455 frame."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


class StreamError(ValueError):
    """Invalid stream name; ``code``/``msg`` form the Binance-style error body."""

    def __init__(self, code: int, msg: str):
        super().__init__(msg)
        self.code, self.msg = code, msg


def parse_stream(name: str, symbols: frozenset[str], market: str = "spot") -> str:
    """Validate ``<symbol>@trade`` / ``<symbol>@aggTrade`` (lower-case symbol known to the exchange), and on usdm
    ``<symbol>@markPrice`` / ``<symbol>@markPrice@1s``."""
    mt = _STREAM_RE.match(name)
    if mt is None or (mt.group(2) in MARK_KINDS and market != "usdm"):
        expected = "'<symbol>@trade' or '<symbol>@aggTrade'" + (
            " or '<symbol>@markPrice[@1s]'" if market == "usdm" else "")
        raise StreamError(-1100, f"Invalid stream name '{name}'; expected {expected} with a lower-case symbol.")
    if mt.group(1).upper() not in symbols:
        raise StreamError(-1121, "Invalid symbol.")
    return name


@dataclass
class WsConn:
    """One open WebSocket connection and its subscription state."""

    cid: int
    route: str  # "spot" | "usdm" | "public" (usdm unrouted: no trade data)
    market: str
    combined: bool
    us: bool
    ws: web.WebSocketResponse
    transport: asyncio.Transport
    peer: str
    streams: dict[str, None] = field(default_factory=dict)
    opened: float = field(default_factory=time.monotonic)
    stalled_until: float = 0.0
    last_ping: float = field(default_factory=time.monotonic)
    pending_pings: dict[bytes, float] = field(default_factory=dict)
    incoming: deque = field(default_factory=deque)
    shutdown_close_at: float = 0.0
    closing: bool = False
    frames_sent: int = 0

    def is_stalled(self, now: float) -> bool:
        return now < self.stalled_until

    @property
    def writable(self) -> bool:
        return not self.closing and not self.ws.closed and not self.transport.is_closing()

    def buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() if not self.transport.is_closing() else 0

    def write(self, data: bytes) -> int:
        if not self.writable:
            return 0
        self.transport.write(data)
        return len(data)

    def on_pong(self, payload: bytes) -> None:
        sent = self.pending_pings.get(payload)
        if sent is not None:  # answered: forget this ping and every older one
            self.pending_pings = {p: t for p, t in self.pending_pings.items() if t > sent}


@dataclass
class BuildStats:
    frames: int = 0
    skipped: int = 0
    malformed: int = 0
    duplicates: int = 0
    swapped: int = 0
    hostile: int = 0


class Outbox:
    """The prints of one publication (one market), in time order, serialized lazily per variant."""

    def __init__(self, batches: Iterable[Batch], event_time_us: int):
        self.event_time_us = int(event_time_us)
        self.names: list[str] = []
        self._src: list[tuple[Batch, str]] = []
        streams, local, times, prio = [], [], [], []
        for b in batches:
            sym = b.instrument.symbol.lower()
            for p, (kind, t) in enumerate((("trade", b.trade_time), ("aggTrade", b.agg_time))):
                if len(t) == 0:
                    continue
                idx = len(self.names)
                self.names.append(f"{sym}@{kind}")
                self._src.append((b, kind))
                streams.append(np.full(len(t), idx, dtype=np.int32))
                local.append(np.arange(len(t), dtype=np.int64))
                times.append(t)
                prio.append(np.full(len(t), p, dtype=np.int8))
        self.name_idx = {n: i for i, n in enumerate(self.names)}
        if streams:
            st, lo, tm, pr = (np.concatenate(x) for x in (streams, local, times, prio))
            order = np.lexsort((lo, st, pr, tm))
            self.ev_stream, self.ev_local = st[order], lo[order]
        else:
            self.ev_stream = np.zeros(0, dtype=np.int32)
            self.ev_local = np.zeros(0, dtype=np.int64)
        self.n = len(self.ev_stream)
        self._payloads: dict[tuple[int, bool], list[str]] = {}
        self._frames: dict[tuple[int, bool, bool], list[bytes]] = {}
        self._masks: FaultMasks | None = None
        self._masks_drawn = False

    def payloads(self, idx: int, us: bool) -> list[str]:
        key = (idx, us)
        pl = self._payloads.get(key)
        if pl is None:
            b, kind = self._src[idx]
            fn = ws_trade_payloads if kind == "trade" else ws_agg_payloads
            pl = self._payloads[key] = fn(b, self.event_time_us, us)
        return pl

    def frames(self, idx: int, combined: bool, us: bool) -> list[bytes]:
        key = (idx, combined, us)
        fr = self._frames.get(key)
        if fr is None:
            pl = self.payloads(idx, us)
            if combined:
                head = '{"stream":"%s","data":' % self.names[idx]
                fr = [ws_frame((head + p + "}").encode()) for p in pl]
            else:
                fr = [ws_frame(p.encode()) for p in pl]
            self._frames[key] = fr
        return fr

    def masks(self, faults: Faults) -> FaultMasks | None:
        if not self._masks_drawn:
            self._masks = faults.masks(self.n)
            self._masks_drawn = True
        return self._masks

    def _malformed(self, idx: int, local: int, combined: bool, us: bool, kind: int) -> bytes:
        name = self.names[idx]
        if kind == 0:
            return ws_frame(b'{"stream":"' + name.encode() + b'","data":{"e":"trade" <truncated')
        if kind == 1:
            sym, etype = name.split("@")
            e = self.event_time_us if us else self.event_time_us // 1000
            data = '{"e":"%s","E":%d,"s":"%s"}' % (etype, e, sym.upper())
        else:
            data = with_bad_price(self.payloads(idx, us)[local])
        text = '{"stream":"%s","data":%s}' % (name, data) if combined else data
        return ws_frame(text.encode())

    def _hostile(self, idx: int, local: int, combined: bool, us: bool, kind: int) -> bytes:
        """A well-formed print that cannot be a real trade (see ``exchange.faults.HOSTILE_KINDS``)."""
        d = json.loads(self.payloads(idx, us)[local])
        id_key = "t" if "t" in d else "a"
        name = HOSTILE_KINDS[kind]
        if name == "year_30000":
            d["T"] = 9 * 10**17
        elif name == "negative_time":
            d["T"] = -1
        elif name == "huge_id":
            d[id_key] = 9 * 10**18
        elif name == "foreign_symbol":
            d["s"] = "../../../../elsewhere/x"
        else:  # days_ahead
            d["T"] = int(d["T"]) + 2 * 86400 * (10**6 if us else 10**3)
        data = json.dumps(d, separators=(",", ":"))
        text = '{"stream":"%s","data":%s}' % (self.names[idx], data) if combined else data
        return ws_frame(text.encode())

    def build(self, streams: Iterable[str], combined: bool, us: bool,
              masks: FaultMasks | None) -> tuple[list[bytes], BuildStats]:
        """Frames for a connection subscribed to ``streams``, with the fault decisions applied."""
        ids = [self.name_idx[s] for s in streams if s in self.name_idx]
        stats = BuildStats()
        if not ids:
            return [], stats
        fr = {i: self.frames(i, combined, us) for i in ids}
        if len(ids) == len(self.names):
            pos = np.arange(self.n)
            es, el = self.ev_stream, self.ev_local
        else:
            pos = np.flatnonzero(np.isin(self.ev_stream, ids))
            es, el = self.ev_stream[pos], self.ev_local[pos]
        if masks is None:
            out = list(fr[ids[0]]) if len(ids) == 1 else [fr[s][i] for s, i in zip(es.tolist(), el.tolist())]
            stats.frames = len(out)
            return out, stats
        out, origin = [], []
        for g, s, i in zip(pos.tolist(), es.tolist(), el.tolist()):
            if masks.skip[g]:
                stats.skipped += 1
                continue
            if masks.malformed[g]:
                out.append(self._malformed(s, i, combined, us, int(masks.malformed_kind[g])))
                origin.append(-1)
                stats.malformed += 1
            if masks.hostile[g]:
                out.append(self._hostile(s, i, combined, us, int(masks.hostile_kind[g])))
                origin.append(-1)
                stats.hostile += 1
            out.append(fr[s][i])
            origin.append(g)
            if masks.duplicate[g]:
                out.append(fr[s][i])
                origin.append(-1)
                stats.duplicates += 1
        k = 0
        while k < len(out) - 1:
            g = origin[k]
            if g >= 0 and masks.swap[g]:
                out[k], out[k + 1] = out[k + 1], out[k]
                stats.swapped += 1
                k += 2
            else:
                k += 1
        stats.frames = len(out)
        return out, stats


def _err(code: int, msg: str, req_id: object = None) -> str:
    return json.dumps({"error": {"code": code, "msg": msg}, "id": req_id}, separators=(",", ":"))


def _ok(result: object, req_id: object) -> str:
    return json.dumps({"result": result, "id": req_id}, separators=(",", ":"))


def handle_control(conn: WsConn, text: str, symbols: frozenset[str], max_streams: int = MAX_STREAMS) -> str:
    """Answer one JSON control message (SUBSCRIBE & co.) the way Binance does; returns the reply text."""
    try:
        msg = json.loads(text)
    except ValueError as exc:
        detail = getattr(exc, "msg", str(exc))
        line, col = getattr(exc, "lineno", 1), getattr(exc, "colno", 1)
        return _err(3, f"Invalid JSON: {detail.lower()} at line {line} column {col}")
    if not isinstance(msg, dict):
        return _err(3, "Invalid JSON: expected an object at line 1 column 1")
    req_id = msg.get("id")
    if "id" not in msg or isinstance(req_id, bool) or not (
            req_id is None or (isinstance(req_id, int) and -2**63 <= req_id < 2**63)
            or (isinstance(req_id, str) and _ID_RE.match(req_id))):
        return _err(2, "Invalid request: request ID must be an unsigned integer")
    method = msg.get("method")
    if method is None:
        return _err(2, "Invalid request: missing field `method`", req_id)
    if method not in _METHODS:
        return _err(2, f"Invalid request: unknown variant `{method}`, expected one of `SUBSCRIBE`, "
                       f"`UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`", req_id)
    params = msg.get("params", [])
    if not isinstance(params, list):
        return _err(2, "Invalid request: params must be an array", req_id)
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        if not all(isinstance(p, str) for p in params):
            return _err(2, "Invalid request: stream names must be strings", req_id)
        try:
            names = [parse_stream(p, symbols, conn.market) for p in params]
        except StreamError:
            return _err(2, "Invalid request: invalid stream", req_id)
        if method == "SUBSCRIBE":
            if len(set(conn.streams) | set(names)) > max_streams:
                return _err(2, f"Invalid request: too many streams (max {max_streams})", req_id)
            for n in names:
                conn.streams[n] = None
        else:
            for n in names:
                conn.streams.pop(n, None)
        return _ok(None, req_id)
    if method == "LIST_SUBSCRIPTIONS":
        if params:
            return _err(2, "Invalid request: too many parameters", req_id)
        return _ok(list(conn.streams), req_id)
    if not params or not isinstance(params[0], str):
        return _err(2, "Invalid request: property name must be a string", req_id)
    if params[0] != "combined":
        return _err(0, "Unknown property", req_id)
    if method == "GET_PROPERTY":
        if len(params) != 1:
            return _err(2, "Invalid request: too many parameters", req_id)
        return _ok(conn.combined, req_id)
    if len(params) != 2:
        return _err(2, "Invalid request: too many parameters" if len(params) > 2 else
                    "Invalid request: missing property value", req_id)
    if not isinstance(params[1], bool):
        return _err(1, "Invalid value type: expected Boolean", req_id)
    conn.combined = params[1]
    return _ok(None, req_id)


@dataclass
class WsCounters:
    connections_opened: int = 0
    connections_rejected: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    skipped: int = 0
    malformed_sent: int = 0
    duplicates_sent: int = 0
    swapped: int = 0
    hostile_sent: int = 0
    marks_sent: int = 0
    pings_sent: int = 0
    control_messages: int = 0
    closed_by_server: Counter = field(default_factory=Counter)
    attempts_refused: int = 0  # handshakes refused for too many connection attempts
    too_many_streams: int = 0  # URL or SUBSCRIBE asking for more streams than one connection may carry

    def add(self, st: BuildStats, nbytes: int) -> None:
        self.frames_sent += st.frames
        self.bytes_sent += nbytes
        self.skipped += st.skipped
        self.malformed_sent += st.malformed
        self.duplicates_sent += st.duplicates
        self.swapped += st.swapped
        self.hostile_sent += st.hostile


def _json_error(status: int, code: int, msg: str) -> web.Response:
    return web.Response(status=status, body=json.dumps({"code": code, "msg": msg}, separators=(",", ":")),
                        content_type="application/json")


class WsHub:
    """All WebSocket connections of the exchange: upgrade handler, broadcast, keepalive and faults."""

    def __init__(self, symbols: frozenset[str], *, ping_interval: float, pong_timeout: float,
                 max_connection_seconds: float, faults: Faults, max_streams: int = MAX_STREAMS,
                 max_attempts: int = MAX_ATTEMPTS, attempt_window: float = ATTEMPT_WINDOW_S):
        self.symbols = symbols
        # listed symbols per market (a delisted one is refused in URLs and SUBSCRIBE, like an unknown one)
        self.listed: dict[str, frozenset[str]] = {"spot": symbols, "usdm": symbols}
        self.max_streams = max_streams
        self.max_attempts, self.attempt_window = max_attempts, attempt_window
        self._attempts: dict[tuple[str, str], deque] = {}  # (market, peer IP) -> attempt times
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.max_age = max_connection_seconds
        self.faults = faults
        self.counters = WsCounters()
        self.conns: dict[int, WsConn] = {}
        self._next_id = 0
        self._tasks: set[asyncio.Task] = set()

    @property
    def tick(self) -> float:
        return max(0.01, min(0.25, self.ping_interval / 4, self.pong_timeout / 4, self.max_age / 4))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- upgrade ---------------------------------------------------------------------------------
    def _attempt(self, market: str, peer: str) -> float | None:
        """Count a connection attempt; seconds to wait when it is one too many in the window, else None."""
        now = time.monotonic()
        times = self._attempts.setdefault((market, peer), deque())
        while times and times[0] <= now - self.attempt_window:
            times.popleft()
        times.append(now)  # refused attempts count too, as an IP hammering the endpoint would
        if len(times) > self.max_attempts:
            return times[-self.max_attempts - 1] + self.attempt_window - now
        return None

    async def handle(self, request: web.Request, *, route: str, combined: bool) -> web.StreamResponse:
        market = "spot" if route == "spot" else "usdm"
        wait = self._attempt(market, str(request.remote))
        if wait is not None:
            self.counters.attempts_refused += 1
            log.warning("ws: connection attempt refused: more than %d in %.0f s from %s", self.max_attempts,
                        self.attempt_window, request.remote)
            resp = self._reject(429, -1003, f"Too many connection attempts; at most {self.max_attempts} per "
                                            f"{self.attempt_window:.0f} seconds per IP.")
            resp.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
            return resp
        if combined:
            values = request.query.getall("streams", [])
            if len(values) > 1:
                return self._reject(400, -1101, "Duplicate values for a parameter detected.")
            names = [n for n in (values[0].split("/") if values else []) if n]
        else:
            names = [n for n in request.match_info.get("tail", "").split("/") if n]
        us = False
        unit = request.query.get("timeUnit")
        if unit is not None and market == "spot":  # USD-M ignores timeUnit (milliseconds only)
            if unit.upper() not in ("MICROSECOND", "MILLISECOND"):
                return self._reject(400, -1194, "Invalid value for time unit; expected either MICROSECOND "
                                                "or MILLISECOND.")
            us = unit.upper() == "MICROSECOND"
        try:
            streams = {parse_stream(n, self.listed[market], market): None for n in names}
        except StreamError as exc:
            return self._reject(400, exc.code, exc.msg)
        if len(streams) > self.max_streams:
            self.counters.too_many_streams += 1
            return self._reject(400, -1101, f"Too many streams; at most {self.max_streams} per connection.")
        ws = web.WebSocketResponse(autoping=False, compress=False, timeout=2.0, max_msg_size=1 << 16)
        if not ws.can_prepare(request).ok:
            return self._reject(400, -1000, "Expected a WebSocket upgrade request.")
        await ws.prepare(request)
        if request.transport is None:  # the client left during the handshake
            return ws
        self._next_id += 1
        conn = WsConn(self._next_id, route, market, combined, us, ws, request.transport, str(request.remote),
                      streams)
        self.conns[conn.cid] = conn
        self.counters.connections_opened += 1
        log.info("ws #%d open %s %s streams=%d combined=%s us=%s", conn.cid, route, request.path,
                 len(streams), combined, us)
        try:
            async for msg in ws:
                verdict = self._on_message(conn, msg)
                if verdict is False:
                    break
                if isinstance(verdict, tuple):  # close from inside the read loop: await it here
                    code, reason, key = verdict
                    conn.closing = True
                    self.counters.closed_by_server[key] += 1
                    log.info("ws #%d: closing (%d %s)", conn.cid, code, reason)
                    await ws.close(code=code, message=reason.encode())
                    break
        finally:
            self.conns.pop(conn.cid, None)
            log.info("ws #%d closed (code=%s)", conn.cid, ws.close_code)
        return ws

    def _reject(self, status: int, code: int, msg: str) -> web.Response:
        self.counters.connections_rejected += 1
        return _json_error(status, code, msg)

    def _on_message(self, conn: WsConn, msg) -> bool | tuple[int, str, str]:
        """Handle one incoming message: True = go on, False = stop, (code, reason, key) = close."""
        now = time.monotonic()
        conn.incoming.append(now)
        while conn.incoming and conn.incoming[0] <= now - 1.0:
            conn.incoming.popleft()
        if len(conn.incoming) > MSG_LIMIT[conn.market]:
            return 1008, "Too many requests", "rate_limit"
        if msg.type == WSMsgType.PONG:
            conn.on_pong(bytes(msg.data))
            return True
        if conn.is_stalled(now):
            return True  # a stalled server answers nothing
        if msg.type == WSMsgType.PING:
            conn.write(ws_frame(bytes(msg.data), OP_PONG))
        elif msg.type == WSMsgType.TEXT:
            self.counters.control_messages += 1
            reply = handle_control(conn, msg.data, self.listed[conn.market], self.max_streams)
            if "too many streams" in reply:
                self.counters.too_many_streams += 1
            conn.write(ws_frame(reply.encode()))
        elif msg.type == WSMsgType.BINARY:
            conn.write(ws_frame(_err(3, "Invalid JSON: expected a text frame at line 1 column 1").encode()))
        elif msg.type == WSMsgType.ERROR:
            return False
        return True

    # --- broadcast -------------------------------------------------------------------------------
    def targets(self, market: str) -> list[WsConn]:
        now = time.monotonic()
        return [c for c in self.conns.values()
                if c.market == market and c.route != "public" and c.writable and not c.is_stalled(now)]

    def send(self, conn: WsConn, outbox: Outbox) -> None:
        frames, st = outbox.build(conn.streams, conn.combined, conn.us, outbox.masks(self.faults))
        if frames:
            n = conn.write(b"".join(frames))
            conn.frames_sent += st.frames
            self.counters.add(st, n)
        else:
            self.counters.add(st, 0)

    def publish_marks(self, payloads: dict[str, str], every_3s: bool,
                      bad: dict[str, tuple[bool, bool, list[str]]] | None = None) -> int:
        """Send mark-price updates (``payloads``: lower-case symbol -> data object text) to the usdm connections
        subscribed to ``<symbol>@markPrice@1s`` (and, when ``every_3s``, ``<symbol>@markPrice``); returns frames.
        ``bad`` (fault injection): symbol -> (malformed?, hostile?, data texts sent just before its update)."""
        bad = bad or {}
        sent = 0
        cache: dict[tuple[str, bool], bytes] = {}
        for conn in self.targets("usdm"):
            out = []
            for name in conn.streams:
                sym, _, kind = name.partition("@")
                if kind not in MARK_KINDS or (kind == "markPrice" and not every_3s):
                    continue
                data = payloads.get(sym)
                if data is None:
                    continue
                if sym in bad:
                    is_mal, is_hos, texts = bad[sym]
                    for t in texts:
                        out.append(ws_frame(('{"stream":"%s","data":%s}' % (name, t) if conn.combined else t).encode()))
                    self.counters.malformed_sent += is_mal
                    self.counters.hostile_sent += is_hos
                key = (name, conn.combined)
                fr = cache.get(key)
                if fr is None:
                    text = '{"stream":"%s","data":%s}' % (name, data) if conn.combined else data
                    fr = cache[key] = ws_frame(text.encode())
                out.append(fr)
            if out:
                n = conn.write(b"".join(out))
                conn.frames_sent += len(out)
                self.counters.frames_sent += len(out)
                self.counters.bytes_sent += n
                self.counters.marks_sent += len(out)
                sent += len(out)
        return sent

    def broadcast(self, market: str, outbox: Outbox) -> None:
        if outbox.n == 0:
            return
        for conn in self.targets(market):
            self.send(conn, outbox)
            if conn.buffer_size() > SLOW_CONSUMER_BYTES:
                log.warning("ws #%d: slow consumer (%d bytes queued), disconnecting", conn.cid, conn.buffer_size())
                self.reset(conn, reason_key="slow_consumer")

    # --- keepalive / lifetime ----------------------------------------------------------------------
    async def housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            self.housekeep_once(time.monotonic())

    def housekeep_once(self, now: float) -> None:
        for conn in list(self.conns.values()):
            if conn.closing:
                continue
            if now - conn.opened >= self.max_age:
                self.close(conn, 1001, "Connection lifetime exceeded", reason_key="max_age")
                continue
            if conn.shutdown_close_at and now >= conn.shutdown_close_at:
                self.close(conn, 1001, "Server shutdown", reason_key="server_shutdown")
                continue
            if conn.is_stalled(now):
                continue
            if conn.stalled_until:  # stall just ended: restart the keepalive clock
                conn.stalled_until = 0.0
                conn.last_ping = now
                conn.pending_pings = {p: now for p in conn.pending_pings}
            if conn.pending_pings and now - min(conn.pending_pings.values()) >= self.pong_timeout:
                self.close(conn, 1008, "Pong timeout", reason_key="pong_timeout")
                continue
            if now - conn.last_ping >= self.ping_interval:
                payload = str(time.time_ns() // 1_000_000).encode()
                if conn.write(ws_frame(payload, OP_PING)):
                    conn.pending_pings[payload] = now
                    self.counters.pings_sent += 1
                conn.last_ping = now

    # --- closing and faults --------------------------------------------------------------------------
    def close(self, conn: WsConn, code: int, reason: str, *, reason_key: str) -> None:
        """Start a clean close handshake (close frame with ``code``)."""
        if conn.closing:
            return
        conn.closing = True
        self.counters.closed_by_server[reason_key] += 1
        log.info("ws #%d: closing (%d %s)", conn.cid, code, reason)
        self._spawn(conn.ws.close(code=code, message=reason.encode()))

    def reset(self, conn: WsConn, *, reason_key: str) -> None:
        """Abort the TCP connection with RST (SO_LINGER 0), no close frame."""
        if conn.transport.is_closing():
            return
        conn.closing = True
        self.counters.closed_by_server[reason_key] += 1
        sock = conn.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:  # already gone
                pass
        log.info("ws #%d: TCP reset", conn.cid)
        conn.transport.abort()

    def select(self, market: str | None) -> list[WsConn]:
        return [c for c in self.conns.values() if (market is None or c.market == market) and not c.closing]

    def drop(self, how: str, market: str | None) -> int:
        conns = self.select(market)
        for c in conns:
            if how == "reset":
                self.reset(c, reason_key="drop_reset")
            else:
                self.close(c, 1000, "Connection dropped", reason_key="drop_close")
        return len(conns)

    def stall(self, seconds: float, market: str | None) -> int:
        until = time.monotonic() + seconds
        conns = self.select(market)
        for c in conns:
            c.stalled_until = until
        return len(conns)

    def server_shutdown(self, market: str | None, close_after: float | None) -> int:
        now_us = time.time_ns() // 1000
        conns = self.select(market)
        for c in conns:
            data = '{"e":"serverShutdown","E":%d}' % (now_us if c.us else now_us // 1000)
            text = '{"stream":"!serverShutdown","data":%s}' % data if c.combined else data
            c.write(ws_frame(text.encode()))
            if close_after is not None:
                c.shutdown_close_at = time.monotonic() + close_after
        return len(conns)

    async def close_all(self) -> None:
        for c in list(self.conns.values()):
            if not c.closing:
                c.closing = True
                try:
                    await asyncio.wait_for(c.ws.close(code=1001, message=b"Server stopping"), 1.0)
                except (asyncio.TimeoutError, ConnectionError):
                    c.transport.abort()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
