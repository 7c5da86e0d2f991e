"""Bar lengths: names, seconds, and bars per (365-day, 24/7) year for annualizing."""
from __future__ import annotations

TIMEFRAMES: dict[str, int] = {
    "1s": 1,
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "1h": 3_600,
    "4h": 14_400,
    "1d": 86_400,
}

SECONDS_PER_YEAR = 365 * 86_400  # crypto trades every day of the year


def timeframe_seconds(tf: str) -> int:
    """Length of one bar of timeframe `tf` in seconds; ValueError listing the valid names."""
    try:
        return TIMEFRAMES[tf]
    except (KeyError, TypeError):
        raise ValueError(f"unknown timeframe {tf!r}; expected one of {', '.join(TIMEFRAMES)}") from None


def bars_per_year(tf: str) -> float:
    """Number of `tf` bars in a 365-day, 24/7 year (e.g. 525600 for "1m")."""
    return SECONDS_PER_YEAR / timeframe_seconds(tf)
