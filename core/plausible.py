"""What a real trade can look like: its time and id ranges (and the funding-rate range of a perpetual).

A stream frame, REST row, dump row or uploaded row outside these is not a trade: it is rejected and counted where
it enters (feed, history, uploads) and again by the tick writer, and never stored.
"""
from __future__ import annotations

import datetime as dt
import time

TS_MIN = dt.datetime(2009, 1, 1, tzinfo=dt.UTC)   # before Bitcoin's first block
TS_MAX = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
TS_MIN_US = int(TS_MIN.timestamp()) * 1_000_000
TS_MAX_US = int(TS_MAX.timestamp()) * 1_000_000
MAX_AHEAD_S = 3600.0            # a trade time this far ahead of our clock is not a trade (clock skew is seconds)
MAX_AHEAD_US = int(MAX_AHEAD_S * 1_000_000)
ID_MAX = 10**15                 # exchange ids run to ~1e10 today; 1e15 is far beyond any real venue's count
EXPECTED_TIME = "a time between 2009-01-01 and 2100-01-01, at most 1 h ahead of now"
EXPECTED_ID = f"an id between 0 and {ID_MAX:.0e}"
# A perpetual's funding rate per period: Binance caps most contracts at ±0.75 % to ±3 % (±2 % on some, ±4 % on a
# few); ±10 % per period is far beyond any venue's cap, so anything larger is not a funding rate.
FUNDING_RATE_MAX = 0.10


def now_us() -> int:
    return time.time_ns() // 1000


def time_problem(ts_us: int, now: int | None = None) -> str | None:
    """Why `ts_us` (µs since the epoch, UTC) cannot be a trade time, or None when it can."""
    if not TS_MIN_US <= ts_us < TS_MAX_US:
        return f"time {ts_us} µs is outside 2009-01-01..2100-01-01"
    limit = (now if now is not None else now_us()) + MAX_AHEAD_US
    if ts_us > limit:
        return f"time {_iso(ts_us)} is more than {MAX_AHEAD_S / 3600:g} h ahead of now"
    return None


def ts_range_problem(ts_us: int) -> str | None:
    """Why `ts_us` is outside 2009-2100 (for times that may lie ahead, such as a next funding time), or None."""
    if not TS_MIN_US <= ts_us < TS_MAX_US:
        return f"time {ts_us} µs is outside 2009-01-01..2100-01-01"
    return None


def id_problem(trade_id: int) -> str | None:
    """Why `trade_id` cannot be an exchange trade id, or None when it can."""
    if not 0 <= trade_id < ID_MAX:
        return f"id {trade_id} is outside 0..{ID_MAX:.0e}"
    return None


def _iso(ts_us: int) -> str:
    return dt.datetime.fromtimestamp(ts_us / 1e6, dt.UTC).isoformat().replace("+00:00", "Z")
