"""Bar lengths: names, seconds, and bars per (365-day, 24/7) year for annualizing.

The table itself is `core.timeframes` (shared with the SQL resampling, the app and alert rules)."""
from __future__ import annotations

from core import timeframes as _core

TIMEFRAMES: dict[str, int] = _core.SECONDS

SECONDS_PER_YEAR = 365 * 86_400  # crypto trades every day of the year


def timeframe_seconds(tf: str) -> int:
    """Length of one bar of timeframe `tf` in seconds; ValueError listing the valid names."""
    return _core.seconds(tf)


def bars_per_year(tf: str) -> float:
    """Number of `tf` bars in a 365-day, 24/7 year (e.g. 525600 for "1m")."""
    return SECONDS_PER_YEAR / timeframe_seconds(tf)
