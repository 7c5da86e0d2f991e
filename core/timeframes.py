"""Bar lengths: one table for the SQL resampling (tickstore), quantlib, the app and alert rules."""
from __future__ import annotations

SECONDS: dict[str, int] = {
    "1s": 1,
    "5s": 5,
    "15s": 15,
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "1h": 3_600,
    "4h": 14_400,
    "1d": 86_400,
}

# The timeframes the app's sidebar offers and alert rules accept (DESIGN.md's `alert_rules.timeframe`).
CHOICES: tuple[str, ...] = ("1s", "1m", "5m", "15m", "1h")


def seconds(tf: str) -> int:
    """Length of one `tf` bar in seconds; ValueError listing the valid names."""
    try:
        return SECONDS[tf]
    except (KeyError, TypeError):
        raise ValueError(f"unknown timeframe {tf!r}; expected one of {', '.join(SECONDS)}") from None
