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


def periods_per_year(index, timeframe: str | None = None) -> float | None:
    """Bars per 365-day year for annualizing bar statistics.

    A DatetimeIndex gives the **observed** rate, (n - 1) intervals over its time span, so daily bars annualize
    by 365 whatever timeframe label they carry, and bars with gaps (empty bars are dropped) by the number
    of returns there really are. Otherwise `bars_per_year(timeframe)`; None when there is neither.
    """
    import pandas as pd

    if isinstance(index, pd.DatetimeIndex) and len(index) > 1:
        span = (index[-1] - index[0]).total_seconds()
        if span > 0:
            return (len(index) - 1) * SECONDS_PER_YEAR / span
    return bars_per_year(timeframe) if timeframe is not None else None


def check_bar_spacing(index, timeframe: str | None) -> None:
    """ValueError when a DatetimeIndex has bars closer together than `timeframe` (a wrong label)."""
    import numpy as np
    import pandas as pd

    if timeframe is None or not isinstance(index, pd.DatetimeIndex) or len(index) < 2:
        return
    step = float(np.min(np.diff(index.as_unit("ns").asi8))) / 1e9
    if step < timeframe_seconds(timeframe):
        raise ValueError(f"timeframe {timeframe!r} does not match the bars: some are only {step:g} s apart; "
                         "pass the bars' own timeframe, or None to take it from the index")
