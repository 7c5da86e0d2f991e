"""Binance REST client for backfill: weight budgeting, 429/418 + Retry-After, bounded retries."""
from __future__ import annotations

import logging
import threading
import time

import orjson
import requests

from feed.binance import WEIGHTS
from feed.reach import short_reason

log = logging.getLogger(__name__)


class RestError(Exception):
    """A REST call failed for good; `status` and `code` carry Binance's answer when there was one."""

    def __init__(self, msg: str, status: int | None = None, code: int | None = None,
                 reason: str | None = None) -> None:
        super().__init__(msg)
        self.status, self.code = status, code
        self.reason = reason  # set when there was no answer at all: why, in a few words ('host not found', ...)


class RestClient:
    """Thread-safe enough for one backfill worker per market plus start-up checks.

    Keeps the used weight under `weight_budget` (fraction of the per-minute limit) using the
    `X-MBX-USED-WEIGHT-1M` header, sleeps on 429/418 for `Retry-After` seconds, and retries
    connection errors and 5XX with capped backoff.
    """

    def __init__(self, base: str, weight_limit: int = 6000, weight_budget: float = 0.8, timeout: float = 10.0,
                 max_retries: int = 8, stop: threading.Event | None = None) -> None:
        self.base = base.rstrip("/")
        self.weight_limit = weight_limit
        self.weight_budget = weight_budget
        self.timeout = timeout
        self.max_retries = max_retries
        self.stop = stop or threading.Event()
        self._local = threading.local()   # one requests.Session per thread (backfill workers)
        self.used_weight = 0
        self.requests = 0
        self.rate_limited = 0
        self._lock = threading.Lock()

    @property
    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
            s.headers["User-Agent"] = "tickdesk/1.0"
        return s

    def get(self, path: str, params: dict | None = None, retry: bool = True):
        """GET `path` → decoded JSON. Raises RestError on 4XX (other than 429/418) or when retries run out."""
        delay = 0.5
        attempts = 0
        while True:
            self._respect_budget(path)
            attempts += 1
            try:
                with self._lock:
                    self.requests += 1
                resp = self.session.get(self.base + path, params=params, timeout=self.timeout)
            except requests.RequestException as exc:
                if not retry or attempts > self.max_retries:
                    why = short_reason(exc)
                    raise RestError(f"cannot reach {self.base}{path}: {why}", reason=why) from None
                log.warning("REST %s failed (%s); retrying in %.1fs", path, short_reason(exc), delay)
                self._sleep(delay)
                delay = min(delay * 2, 30)
                continue
            used = resp.headers.get("X-MBX-USED-WEIGHT-1M")
            if used and used.isdigit():
                self.used_weight = int(used)
            if resp.status_code == 200:
                return orjson.loads(resp.content)
            body = _error_body(resp)
            if resp.status_code in (429, 418):
                self.rate_limited += 1
                wait = _retry_after(resp, default=60.0 if resp.status_code == 418 else 5.0)
                log.warning("REST %s answered %d (%s); waiting %.1fs as Retry-After says", path, resp.status_code,
                            body.get("msg", ""), wait)
                if attempts > self.max_retries * 4:
                    raise RestError(f"{path}: still rate limited after {attempts} attempts", resp.status_code, body.get("code"))
                self._sleep(wait)
                continue
            if resp.status_code >= 500 and retry and attempts <= self.max_retries:
                log.warning("REST %s answered %d; retrying in %.1fs", path, resp.status_code, delay)
                self._sleep(delay)
                delay = min(delay * 2, 30)
                continue
            raise RestError(f"{path} answered HTTP {resp.status_code}: {body.get('msg', resp.text[:200])}",
                            resp.status_code, body.get("code"))

    def _respect_budget(self, path: str) -> None:
        weight = WEIGHTS.get(path, 1)
        if self.used_weight + weight > self.weight_limit * self.weight_budget:
            # the 1-minute window resets on the minute boundary of the server clock; local UTC is close enough
            wait = 60.0 - (time.time() % 60.0) + 0.2
            log.info("REST weight %d/%d near budget; pausing backfill %.1fs", self.used_weight, self.weight_limit, wait)
            self._sleep(wait)
            self.used_weight = 0

    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise RestError("stopping")


def _retry_after(resp: requests.Response, default: float) -> float:
    try:
        return max(0.0, float(resp.headers.get("Retry-After", default)))
    except ValueError:
        return default


def _error_body(resp: requests.Response) -> dict:
    try:
        body = orjson.loads(resp.content)
        return body if isinstance(body, dict) else {}
    except orjson.JSONDecodeError:
        return {}
