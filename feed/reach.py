"""Whether the exchange can be reached at start, said in a few words: short reasons for network errors, one probe
of a market's WebSocket, and the one-line hint a failed start prints."""
from __future__ import annotations

import re
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

import requests
import websocket

START_ATTEMPTS = 3        # WebSocket attempts per market before a start is refused
START_DEADLINE_S = 20.0   # ... and the time they may take together
CONNECT_TIMEOUT_S = 10.0  # one attempt at most

_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_DNS = ("NameResolutionError", "Name or service not known", "Temporary failure in name resolution",
        "nodename nor servname", "No address associated with hostname", "getaddrinfo failed")


def host_of(url: str) -> str:
    """`host` or `host:port` of a URL, as a user would recognise it."""
    parts = urlsplit(url)
    return parts.netloc.rsplit("@", 1)[-1] or url


def short_reason(exc: BaseException) -> str:
    """A few words for why a connection failed: 'host not found', 'connection refused', 'no answer within 10s'…"""
    if isinstance(exc, websocket.WebSocketBadStatusException):
        return f"handshake refused: HTTP {exc.status_code}"
    text = f"{exc.__class__.__name__}: {exc}"
    if isinstance(exc, socket.gaierror) or any(s in text for s in _DNS):
        return "host not found"
    if isinstance(exc, (requests.Timeout, socket.timeout, TimeoutError, websocket.WebSocketTimeoutException)):
        return "no answer in time"
    if isinstance(exc, (requests.exceptions.SSLError, ssl.SSLError)):
        return "TLS handshake failed"
    if isinstance(exc, ConnectionRefusedError) or "Connection refused" in text:
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    m = _ERRNO.search(text)
    if m:
        return m.group(1).strip().lower()
    return text[:160]


def unreachable(what: str, reason: str, market: str, default: bool) -> str:
    """The one line a start that cannot reach the exchange prints: what failed, why, and what to do instead.
    `what` is the host of a default (Binance) URL, else the flag and URL the user gave."""
    target = f"Binance{'' if market == 'spot' else ' ' + market} ({what})" if default else what
    alt = ", e.g. Binance.US (see README)" if market == "spot" else ""
    return (f"{target} is unreachable ({reason}); try `make demo` (offline, simulated), or --rest-url/--ws-url "
            f"for another endpoint{alt}")


def probe_ws(url: str, stop: threading.Event, attempts: int = START_ATTEMPTS, deadline_s: float = START_DEADLINE_S,
             timeout_s: float = CONNECT_TIMEOUT_S, acquire=None) -> str | None:
    """Open and close one WebSocket to `url`, up to `attempts` times within `deadline_s`; None when one handshake
    succeeded, else the last failure's short reason. A refusal by the server (HTTP 4XX but 429/418) is final.
    `acquire(stop)`, when given, is waited for before each attempt (the market's connection-attempt limiter)."""
    end = time.monotonic() + deadline_s
    reason = "not tried"
    for attempt in range(1, attempts + 1):
        if acquire is not None and not acquire(stop):
            return "stopping"
        left = end - time.monotonic()
        if left <= 0:
            break
        try:
            ws = websocket.create_connection(url, timeout=min(timeout_s, left), suppress_origin=True,
                                             skip_utf8_validation=True)
        except (websocket.WebSocketException, OSError) as exc:
            reason = short_reason(exc)
            status = getattr(exc, "status_code", None)
            if status is not None and 400 <= status < 500 and status not in (418, 429):
                return reason
        else:
            try:
                ws.close(timeout=0.5)
            except (websocket.WebSocketException, OSError):
                pass
            return None
        if attempt < attempts and stop.wait(min(0.5 * 2 ** (attempt - 1), max(0.0, end - time.monotonic()))):
            return "stopping"
    return reason
