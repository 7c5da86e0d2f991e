"""Webhook delivery for alert events: one background sender per destination, bounded queues, a total deadline per
attempt, bounded retries, no redirects, and no private addresses unless allowed.

`WebhookSender.submit` never blocks: when a destination's queue is full the payload is dropped with a warning, so a
slow or dead endpoint can never hold up ingestion, and since every destination (scheme, host, port) has its own
queue and thread, a slow one never delays another.

Targets. A webhook posts from the machine that runs the ingestor, so a URL could reach what only that machine can
(its loopback services, the LAN, a cloud metadata endpoint). Addresses that are not globally routable (loopback,
private, link-local incl. 169.254.169.254, unique-local, reserved, multicast) are refused — when the rule is saved
for literal addresses, and at each delivery for every address the host name resolves to — unless the user allows
them with ``TICKDESK_WEBHOOKS_ALLOW_PRIVATE=1`` (in the environment of the app and of the ingestor). The connection
goes to the address that was checked (no second lookup), and redirects are never followed: a 3xx is a failure.
"""
from __future__ import annotations

import http.client
import ipaddress
import logging
import math
import os
import queue
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass

import orjson

log = logging.getLogger(__name__)

MAX_URL = 2000
ALLOW_PRIVATE_ENV = "TICKDESK_WEBHOOKS_ALLOW_PRIVATE"
MAX_DESTINATIONS = 64          # destinations with their own sender thread at once (idle ones exit)
_IDLE_EXIT_S = 60.0


def private_allowed() -> bool:
    """True when the user allowed webhooks to loopback / private / link-local addresses."""
    return os.environ.get(ALLOW_PRIVATE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def address_problem(ip: str) -> str | None:
    """Why a webhook may not go to `ip` (not globally routable), or None."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    for what, flag in (("loopback", addr.is_loopback), ("link-local (e.g. cloud metadata)", addr.is_link_local),
                       ("private", addr.is_private), ("multicast", addr.is_multicast),
                       ("reserved", addr.is_reserved or addr.is_unspecified), ("not public", not addr.is_global)):
        if flag:
            return f"{addr} is a {what} address"
    return None


def _refusal(problem: str) -> str:
    return f"goes to {problem}; webhooks go to public addresses only (set {ALLOW_PRIVATE_ENV}=1 to allow it)"


def validate_webhook_url(url: str, allow_private: bool | None = None) -> str:
    """Return the stripped URL, or raise ValueError saying what is wrong (http/https with a host only; a literal
    non-public address or localhost only when allowed)."""
    u = (url or "").strip()
    if not u:
        raise ValueError("is empty; expected an http:// or https:// URL")
    if len(u) > MAX_URL:
        raise ValueError(f"is {len(u)} characters long; expected at most {MAX_URL}")
    if any(c.isspace() or ord(c) < 32 for c in u):
        raise ValueError("contains spaces or control characters; expected a URL such as https://example.com/hook")
    parts = urllib.parse.urlsplit(u)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"scheme {parts.scheme or '(none)'!r} is not allowed; expected http:// or https://")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ValueError("has an invalid port; expected a number 1-65535") from None
    if not host:
        raise ValueError("has no host; expected e.g. https://example.com/hook")
    if port == 0:
        raise ValueError("has port 0; expected a number 1-65535")
    if not (private_allowed() if allow_private is None else allow_private):
        if host.rstrip(".").lower() == "localhost" or host.rstrip(".").lower().endswith(".localhost"):
            raise ValueError(_refusal(f"{host}, a loopback name"))
        try:
            problem = address_problem(host)
        except ValueError:
            problem = None  # a name: checked against every address it resolves to, at each delivery
        if problem:
            raise ValueError(_refusal(problem))
    return u


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


@dataclass
class WebhookStats:
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0
    refused: int = 0           # deliveries not attempted: the target resolved to a non-public address


class DeliveryError(Exception):
    """One attempt failed; `retry` says whether trying again may help."""

    def __init__(self, msg: str, retry: bool, refused: bool = False) -> None:
        super().__init__(msg)
        self.retry = retry
        self.refused = refused


_ssl_context: ssl.SSLContext | None = None


def _tls() -> ssl.SSLContext:
    global _ssl_context
    if _ssl_context is None:
        try:
            import certifi

            _ssl_context = ssl.create_default_context(cafile=certifi.where())
        except ImportError:
            _ssl_context = ssl.create_default_context()
    return _ssl_context


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the address that was checked, whatever the host name resolves to by now."""

    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=_tls())
        self._ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post_once(url: str, body: bytes, deadline_s: float, allow_private: bool) -> int:
    """One POST of `body` to `url`, all of it (lookup, connect, TLS, send, answer) within `deadline_s`; returns the
    status of a 2xx answer, raises DeliveryError otherwise. Redirects are not followed."""
    parts = urllib.parse.urlsplit(url)
    https = parts.scheme.lower() == "https"
    host, port = parts.hostname or "", parts.port or (443 if https else 80)
    start = time.monotonic()
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise DeliveryError(f"cannot resolve {host}: {exc}", retry=True) from None
    ips = list(dict.fromkeys(i[4][0] for i in infos))
    if not allow_private:
        for ip in ips:
            problem = address_problem(ip)
            if problem:
                raise DeliveryError(f"refused: {host} {_refusal(problem)}", retry=False, refused=True)
    remaining = deadline_s - (time.monotonic() - start)
    if remaining <= 0:
        raise DeliveryError(f"no answer within {deadline_s:g}s", retry=True)
    conn = (_PinnedHTTPS if https else _PinnedHTTP)(host, port, ips[0], timeout=remaining)
    # the socket timeout bounds each read; this timer bounds the whole exchange (a server dripping a header line
    # every few seconds never trips a per-read timeout)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(remaining, expire)
    timer.daemon = True
    timer.start()
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json",
                                                       "User-Agent": "tickdesk-alerts", "Connection": "close"})
        resp = conn.getresponse()
        resp.read(64 * 1024)
        status = resp.status
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set():
            raise DeliveryError(f"no complete answer within {deadline_s:g}s", retry=True) from None
        raise DeliveryError(f"{type(exc).__name__}: {exc}", retry=True) from None
    finally:
        timer.cancel()
        conn.close()
    if expired.is_set():
        raise DeliveryError(f"no complete answer within {deadline_s:g}s", retry=True)
    if 200 <= status < 300:
        return status
    if 300 <= status < 400:
        raise DeliveryError(f"answered {status} (a redirect); redirects are not followed", retry=False)
    raise DeliveryError(f"answered {status}", retry=status == 429 or status >= 500)


class _Destination:
    """The queue and thread of one (scheme, host, port)."""

    def __init__(self, key: str, maxsize: int) -> None:
        self.key = key
        self.queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self.thread: threading.Thread | None = None


class WebhookSender:
    """POSTs JSON payloads, one daemon thread per destination.

    Each payload is tried up to `1 + retries` times with exponential backoff (`backoff_s`, doubled, capped at
    `max_backoff_s`) on connection errors, deadlines, 429 and 5xx; other answers (4xx, 3xx) and refused targets are
    final. `timeout_s` is the total deadline of one attempt. `maxsize` bounds each destination's queue.
    `allow_private` (default: the TICKDESK_WEBHOOKS_ALLOW_PRIVATE environment variable) allows non-public targets.
    """

    def __init__(self, maxsize: int = 1000, timeout_s: float = 5.0, retries: int = 3, backoff_s: float = 0.5,
                 max_backoff_s: float = 10.0, allow_private: bool | None = None) -> None:
        self.maxsize = maxsize
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.allow_private = private_allowed() if allow_private is None else allow_private
        self.stats = WebhookStats()
        self._dests: dict[str, _Destination] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._unfinished = 0

    @staticmethod
    def _key(url: str) -> str:
        p = urllib.parse.urlsplit(url)
        return f"{p.scheme.lower()}://{(p.hostname or '').lower()}:{p.port or ''}"

    def submit(self, url: str, payload: dict) -> bool:
        """Queue one POST on its destination's queue; False (and a warning) if that queue is full."""
        body = orjson.dumps({k: _jsonable(v) for k, v in payload.items()}, default=str)
        key = self._key(url)
        with self._lock:
            dest = self._dests.get(key)
            if dest is None:
                if len(self._dests) >= MAX_DESTINATIONS:
                    self.stats.dropped += 1
                    log.warning("webhooks: %d destinations busy; dropped alert %s for %s", MAX_DESTINATIONS,
                                payload.get("event_id"), url)
                    return False
                dest = self._dests[key] = _Destination(key, self.maxsize)
            try:
                dest.queue.put_nowait((url, body))
            except queue.Full:
                self.stats.dropped += 1
                log.warning("webhook queue full (%d) for %s; dropped alert %s", self.maxsize, key,
                            payload.get("event_id"))
                return False
            self._unfinished += 1
            if dest.thread is None or not dest.thread.is_alive():
                dest.thread = threading.Thread(target=self._run, args=(dest,), name=f"webhook {key}", daemon=True)
                dest.thread.start()
        return True

    def _run(self, dest: _Destination) -> None:
        while True:
            try:
                item = dest.queue.get(timeout=_IDLE_EXIT_S)
            except queue.Empty:
                with self._lock:
                    if dest.queue.empty():  # idle: let the thread go (a new submit starts another)
                        self._dests.pop(dest.key, None)
                        return
                continue
            if item is None:
                return
            try:
                self._deliver(*item)
            except Exception:  # a bug here must not take the destination's thread down
                log.exception("webhook %s: delivery crashed", dest.key)
                self.stats.failed += 1
            finally:
                with self._lock:
                    self._unfinished -= 1

    def _deliver(self, url: str, body: bytes) -> bool:
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, self.max_backoff_s)
            try:
                post_once(url, body, self.timeout_s, self.allow_private)
            except DeliveryError as exc:
                if exc.refused:
                    self.stats.refused += 1
                    log.warning("webhook %s %s", url, exc)
                    break
                log.warning("webhook %s attempt %d/%d failed: %s%s", url, attempt + 1, self.retries + 1, exc,
                            "" if exc.retry else "; not retried")
                if not exc.retry:
                    break
                continue
            self.stats.sent += 1
            return True
        self.stats.failed += 1
        return False

    def join(self, timeout: float = 10.0) -> bool:
        """Wait until every queued payload was handled (sent or given up); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._unfinished:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for up to `timeout`, then stop (pending retries are abandoned)."""
        self.join(timeout)
        self._stop.set()
        with self._lock:
            dests = list(self._dests.values())
            self._dests.clear()
        for d in dests:
            try:
                d.queue.put_nowait(None)
            except queue.Full:
                pass
        end = time.monotonic() + timeout
        for d in dests:
            if d.thread is not None:
                d.thread.join(max(0.0, end - time.monotonic()))
