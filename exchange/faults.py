"""Fault switches of the local exchange (``LocalExchange.faults``).

Fractions (0..1, settable at any time from any thread) act on every WebSocket data frame / REST
request from then on:

* ``skip_fraction``: that fraction of prints is never sent on any WebSocket (still in REST history);
* ``malformed_fraction``: before that fraction of frames an extra bad frame is sent - in turn non-JSON
  text, JSON missing fields, or the same print with a non-numeric price;
* ``duplicate_fraction``: that fraction of frames is sent twice in a row;
* ``reorder_fraction``: that fraction of frames is swapped with the next frame of the same connection;
* ``rest_429_fraction``: that fraction of REST requests gets HTTP 429 (``-1003``, ``Retry-After: 1``);
* ``hostile_fraction``: before that fraction of frames an extra well-formed print that cannot be a real trade is
  sent - in turn (``HOSTILE_KINDS``) a time in year ~30,000 (``T`` = 9e17), a negative time, an id beyond any real
  exchange's (9e18), a symbol nobody subscribed to that is also a path (``../../../../elsewhere/x``), and a time two
  days ahead. Each copies the print it precedes, so a receiver that stores it shadows the real one.

The usdm mark-price updates get the same two kinds of bad frames (``mark_faults``, own generator, so switching them
on changes no trade decision): malformed in turn non-JSON, no mark price, a non-numeric mark price; hostile in turn
(``MARK_HOSTILE_KINDS``) an event time in year ~30,000, a negative mark price, a 500 % funding rate and a symbol
nobody subscribed to. Each precedes the real update of that second.

The decisions are drawn once per print from a seeded generator, so every connection sees the same
skips/duplicates. ``fail_next_rest(n, status, retry_after)`` queues failures for the next ``n`` REST
requests. Connection-level faults (drop, stall, serverShutdown) are methods of ``LocalExchange``.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from exchange.model import rng_for

_FRACTIONS = ("skip_fraction", "malformed_fraction", "duplicate_fraction", "reorder_fraction",
              "rest_429_fraction", "hostile_fraction")
HOSTILE_KINDS = ("year_30000", "negative_time", "huge_id", "foreign_symbol", "days_ahead")
MARK_HOSTILE_KINDS = ("year_30000", "negative_price", "huge_funding", "foreign_symbol")


@dataclass(frozen=True)
class FaultMasks:
    """Per-print fault decisions for one outbox (aligned with its event order)."""

    skip: np.ndarray
    malformed: np.ndarray
    malformed_kind: np.ndarray  # 0 non-JSON, 1 missing fields, 2 non-numeric price
    duplicate: np.ndarray
    swap: np.ndarray
    hostile: np.ndarray
    hostile_kind: np.ndarray  # index into HOSTILE_KINDS


class Faults:
    """Fault fractions and queued REST failures (see module docstring)."""

    def __init__(self, seed: int, *, skip_fraction: float = 0.0, malformed_fraction: float = 0.0,
                 duplicate_fraction: float = 0.0, reorder_fraction: float = 0.0,
                 rest_429_fraction: float = 0.0, hostile_fraction: float = 0.0):
        self._rng = rng_for(seed, "faults", "ws")
        self._hostile_rng = rng_for(seed, "faults", "hostile")
        self._hostile_counter = 0
        self._rest_rng = rng_for(seed, "faults", "rest")
        self._mark_rng = rng_for(seed, "faults", "marks")
        self._mark_counters = [0, 0]
        self._lock = threading.Lock()
        self._rest_queue: deque[tuple[int, int]] = deque()
        self._malformed_counter = 0
        self.skip_fraction = skip_fraction
        self.malformed_fraction = malformed_fraction
        self.duplicate_fraction = duplicate_fraction
        self.reorder_fraction = reorder_fraction
        self.rest_429_fraction = rest_429_fraction
        self.hostile_fraction = hostile_fraction

    def __setattr__(self, name: str, value: object) -> None:
        if name in _FRACTIONS:
            v = float(value)  # type: ignore[arg-type]
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value!r}")
            value = v
        object.__setattr__(self, name, value)

    def clear(self) -> None:
        """All fractions back to 0 and the REST failure queue emptied."""
        for name in _FRACTIONS:
            setattr(self, name, 0.0)
        with self._lock:
            self._rest_queue.clear()

    @property
    def ws_active(self) -> bool:
        return bool(self.skip_fraction or self.malformed_fraction or self.duplicate_fraction
                    or self.reorder_fraction or self.hostile_fraction)

    def masks(self, n: int) -> FaultMasks | None:
        """Decisions for ``n`` prints, or ``None`` when no WebSocket fault is switched on."""
        if not self.ws_active or n == 0:
            return None
        u = self._rng.random((4, n))
        malformed = u[1] < self.malformed_fraction
        kinds = (self._malformed_counter + np.cumsum(malformed) - 1) % 3
        self._malformed_counter += int(malformed.sum())
        hostile = self._hostile_rng.random(n) < self.hostile_fraction
        hostile_kinds = (self._hostile_counter + np.cumsum(hostile) - 1) % len(HOSTILE_KINDS)
        self._hostile_counter += int(hostile.sum())
        return FaultMasks(u[0] < self.skip_fraction, malformed, kinds, u[2] < self.duplicate_fraction,
                          u[3] < self.reorder_fraction, hostile, hostile_kinds)

    def mark_faults(self, n: int) -> list[tuple[int, int]]:
        """For ``n`` mark-price updates: (malformed kind or -1, hostile kind or -1) each (see module docstring)."""
        if not (self.malformed_fraction or self.hostile_fraction) or n == 0:
            return [(-1, -1)] * n
        u = self._mark_rng.random((2, n))
        out = []
        for a, b in zip((u[0] < self.malformed_fraction).tolist(), (u[1] < self.hostile_fraction).tolist()):
            m = h = -1
            if a:
                m = self._mark_counters[0] % 3
                self._mark_counters[0] += 1
            if b:
                h = self._mark_counters[1] % len(MARK_HOSTILE_KINDS)
                self._mark_counters[1] += 1
            out.append((m, h))
        return out

    def fail_next_rest(self, n: int = 1, status: int = 429, retry_after: int = 1) -> None:
        """Answer the next ``n`` REST requests with ``status`` (429, 418, 5xx...) and ``Retry-After``."""
        if n < 0 or not 400 <= status <= 599:
            raise ValueError(f"need n >= 0 and an HTTP error status, got n={n}, status={status}")
        with self._lock:
            self._rest_queue.extend([(int(status), int(retry_after))] * n)

    def take_rest_failure(self) -> tuple[int, int] | None:
        """(status, retry_after) for the current request, or ``None`` to serve it normally."""
        with self._lock:
            if self._rest_queue:
                return self._rest_queue.popleft()
        if self.rest_429_fraction and self._rest_rng.random() < self.rest_429_fraction:
            return 429, 1
        return None
