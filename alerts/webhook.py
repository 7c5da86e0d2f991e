"""Webhook delivery for alert events: a background sender with a bounded queue, timeout and bounded retries.

`WebhookSender.submit` never blocks: when the queue is full the payload is dropped with a warning, so a slow
or dead endpoint can never hold up ingestion.
"""
from __future__ import annotations

import logging
import math
import queue
import threading
import time
import urllib.parse
from dataclasses import dataclass

import orjson
import requests

log = logging.getLogger(__name__)

MAX_URL = 2000


def validate_webhook_url(url: str) -> str:
    """Return the stripped URL, or raise ValueError saying what is wrong (http/https with a host only)."""
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


class WebhookSender:
    """POSTs JSON payloads from its own daemon thread.

    Each payload is tried up to `1 + retries` times with exponential backoff (`backoff_s`, doubled, capped at
    `max_backoff_s`) on connection errors, timeouts, 429 and 5xx; other 4xx answers are final.
    """

    def __init__(self, maxsize: int = 1000, timeout_s: float = 5.0, retries: int = 3, backoff_s: float = 0.5,
                 max_backoff_s: float = 10.0) -> None:
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.stats = WebhookStats()
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._session = requests.Session()

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="alert-webhooks", daemon=True)
                self._thread.start()

    def submit(self, url: str, payload: dict) -> bool:
        """Queue one POST; False (and a warning) if the queue is full."""
        self._ensure_thread()
        body = orjson.dumps({k: _jsonable(v) for k, v in payload.items()}, default=str)
        try:
            self._queue.put_nowait((url, body))
            return True
        except queue.Full:
            self.stats.dropped += 1
            log.warning("webhook queue full (%d); dropped alert %s for %s", self._queue.maxsize,
                        payload.get("event_id"), url)
            return False

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.task_done()
                return
            try:
                self._deliver(*item)
            finally:
                self._queue.task_done()

    def _deliver(self, url: str, body: bytes) -> bool:
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, self.max_backoff_s)
            try:
                r = self._session.post(url, data=body, timeout=self.timeout_s,
                                       headers={"Content-Type": "application/json", "User-Agent": "tickdesk-alerts"})
            except requests.RequestException as exc:
                log.warning("webhook %s attempt %d/%d failed: %s", url, attempt + 1, self.retries + 1, exc)
                continue
            if r.status_code < 300:
                self.stats.sent += 1
                return True
            if r.status_code != 429 and r.status_code < 500:
                log.warning("webhook %s answered %d; not retried", url, r.status_code)
                break
            log.warning("webhook %s attempt %d/%d answered %d", url, attempt + 1, self.retries + 1, r.status_code)
        self.stats.failed += 1
        return False

    def join(self, timeout: float = 10.0) -> bool:
        """Wait until every queued payload was handled (sent or given up); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for up to `timeout`, then stop (pending retries are abandoned)."""
        if self._thread is None:
            return
        self.join(timeout)
        self._stop.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout)
        self._session.close()
