"""Number formats for charts (d3 format strings, as Plotly's `tickformat` / `hoverformat` take them).

Prices are shown in full at the data's own precision: BTC at 92,091.47 as `92,091.47` (never `92.09147k`), PEPE at
0.00001234 as `0.00001234`. The precision is the tick size the prices sit on (the fewest decimals that write every
price exactly), capped at `PRICE_DIGITS` significant digits for data on no tick grid (computed or uploaded
prices).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

PRICE_DIGITS = 8           # significant digits at most (a price on no tick grid)
VALUE_DIGITS = 6           # significant digits of other quantities (volume, spread, β)
MAX_DECIMALS = 12
SAMPLE = 4000              # prices inspected for the tick size (evenly spaced through the series)


def _finite(values) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    v = np.abs(v[np.isfinite(v)])
    return v[v > 0]


def _magnitude_decimals(largest: float, digits: int) -> int:
    return int(min(MAX_DECIMALS, max(0, digits - 1 - math.floor(math.log10(largest)))))


def price_decimals(values) -> int:
    """Decimals that show these prices in full: their tick size's decimals, at most `PRICE_DIGITS` significant
    digits of the largest price (2 when there is no price)."""
    v = _finite(values)
    if not len(v):
        return 2
    if len(v) > SAMPLE:
        v = v[np.linspace(0, len(v) - 1, SAMPLE).astype(int)]
    cap = _magnitude_decimals(float(v.max()), PRICE_DIGITS)
    for d in range(cap + 1):
        scaled = v * 10.0 ** d
        # a price parsed from its decimal text is within an ulp or two of it: 1e-9 relative is float noise
        if np.all(np.abs(scaled - np.round(scaled)) <= np.maximum(1e-6, scaled * 1e-9)):
            return d
    return cap


def price_format(values) -> str:
    """d3 format of these prices: thousands separators, fixed decimals at the tick size (`,.2f` for BTCUSDT)."""
    return f",.{price_decimals(values)}f"


def value_format(values, digits: int = VALUE_DIGITS) -> str:
    """d3 format of a quantity that is not a price (volume, spread, β): `digits` significant digits of the
    largest value, in full (no SI suffix), trailing zeros trimmed."""
    v = _finite(values)
    d = _magnitude_decimals(float(v.max()), digits) if len(v) else 2
    return f",.{d}~f"


def rate_pct(rate: float, exact: bool = False) -> str:
    """A funding rate in percent as exchanges print it, four decimals (+0.0100%). `exact`: a smaller non-zero
    rate (short funding periods) keeps two significant digits in plain notation (+0.000021%), never an exponent."""
    pct = rate * 100
    if not exact or pct == 0 or round(abs(pct), 4) >= 1e-4:
        return f"{pct:+.4f}%"
    decimals = int(-np.floor(np.log10(abs(pct)))) + 1
    return f"{pct:+.{decimals}f}%"


def compact(v: float) -> str:
    """12.3K / 160M / 3.5B: two significant digits below 100 of a unit, whole units above (as Streamlit's
    "compact" number format)."""
    for unit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(v) >= unit:
            scaled = v / unit
            return (f"{scaled:.2g}" if abs(scaled) < 100 else f"{scaled:.0f}") + suffix
    return f"{v:.3g}"


def plain_number(v) -> str:
    """Whole numbers with thousands separators (12,345), others as %g."""
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:g}"


def utc_time(v, millis: bool = False) -> str:
    """`YYYY-MM-DD HH:MM:SS[.mmm]` of a UTC timestamp."""
    t = pd.Timestamp(v)
    return t.strftime("%Y-%m-%d %H:%M:%S") + (f".{t.microsecond // 1000:03d}" if millis else "")
