"""Connection sharding within Binance's limits (docs/binance-limits.md): which symbols go on which connection,
which streams ride in the URL and which are subscribed by message, and how fast connections may be opened.

Pure planning plus one thread-safe limiter; no sockets here (feed.stream opens them).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

URL_MAX_CHARS = 2000       # a longer combined-stream URL subscribes its remaining streams by message
NAMES_PER_MESSAGE = 100    # stream names per SUBSCRIBE message
# client messages (SUBSCRIBE, pongs) use at most this share of the per-connection incoming-message limit
MESSAGE_SHARE = 0.4
# connection attempts per IP: Binance allows 300 per 5 minutes on spot; we use half, opened at least this far apart
ATTEMPTS_PER_WINDOW = 150
ATTEMPT_WINDOW_S = 300.0
ATTEMPT_SPACING_S = 0.5


def plan_shards(symbols: list[str], streams_per_symbol: int, cap: int) -> list[list[str]]:
    """Spread `symbols` over as few connections as `cap` streams each allow, dealt round-robin so that every
    connection gets a share of the busiest symbols (`symbols` come most traded first with --top).

    Raises ValueError when one symbol's streams alone exceed `cap`."""
    if cap < streams_per_symbol:
        raise ValueError(f"{cap} streams per connection cannot carry one symbol's {streams_per_symbol} streams")
    if not symbols:
        return []
    per_conn = cap // streams_per_symbol
    k = -(-len(symbols) // per_conn)
    return [symbols[i::k] for i in range(k)]


@dataclass(frozen=True)
class SubscribePlan:
    """How one connection gets its streams: `in_url` in the handshake URL, then `messages` SUBSCRIBE batches
    sent `spacing_s` apart."""

    in_url: list[str]
    messages: list[list[str]]
    spacing_s: float

    @property
    def streams(self) -> int:
        return len(self.in_url) + sum(len(m) for m in self.messages)

    def summary(self) -> str:
        return (f"{self.streams} streams: {len(self.in_url)} in the URL, {len(self.messages)} SUBSCRIBE message(s) "
                f"{self.spacing_s:.2f}s apart")


def plan_subscribe(streams: list[str], url_prefix_len: int, msg_rate: int, url_max: int = URL_MAX_CHARS,
                   per_message: int = NAMES_PER_MESSAGE) -> SubscribePlan:
    """Put streams in the URL while it stays under `url_max` characters (at least the first, so a connection
    never opens empty), the rest in SUBSCRIBE messages of `per_message` names, paced to use at most
    MESSAGE_SHARE of `msg_rate` (incoming messages per second Binance allows per connection)."""
    in_url: list[str] = []
    length = url_prefix_len
    for name in streams:
        extra = len(name) + (1 if in_url else 0)
        if in_url and length + extra > url_max:
            break
        in_url.append(name)
        length += extra
    rest = streams[len(in_url):]
    messages = [rest[i:i + per_message] for i in range(0, len(rest), per_message)]
    return SubscribePlan(in_url, messages, 1.0 / (msg_rate * MESSAGE_SHARE))


class AttemptLimiter:
    """Connection attempts of one host, shared by every connection to it: at most `max_attempts` per `window_s`
    (sliding) and at least `spacing_s` apart, so a reconnect storm of many connections is staggered."""

    def __init__(self, max_attempts: int = ATTEMPTS_PER_WINDOW, window_s: float = ATTEMPT_WINDOW_S,
                 spacing_s: float = ATTEMPT_SPACING_S, clock: Callable[[], float] = time.monotonic) -> None:
        if max_attempts < 1 or window_s <= 0 or spacing_s < 0:
            raise ValueError("need max_attempts >= 1, window_s > 0 and spacing_s >= 0")
        self.max_attempts, self.window_s, self.spacing_s = max_attempts, window_s, spacing_s
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self.waited_s = 0.0

    def delay(self) -> float:
        """Seconds until the next attempt may start (0: now). Does not take the slot."""
        with self._lock:
            return self._delay(self._clock())

    def _delay(self, now: float) -> float:
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()
        wait = 0.0
        if self._times:
            wait = max(wait, self._times[-1] + self.spacing_s - now)
        if len(self._times) >= self.max_attempts:
            wait = max(wait, self._times[0] + self.window_s - now)
        return wait

    def acquire(self, stop: threading.Event) -> bool:
        """Wait for a slot and take it; False when `stop` was set while waiting."""
        while True:
            with self._lock:
                now = self._clock()
                wait = self._delay(now)
                if wait <= 0:
                    self._times.append(now)
                    return True
            self.waited_s += wait
            if stop.wait(min(wait, 1.0)):
                return False
