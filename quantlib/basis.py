"""Perpetual vs spot: basis, funding carry and the funding PnL of a position.

Definitions (prices in quote currency, rates as fractions per funding period, times UTC):
- basis (bps) = (perp / spot - 1) x 10_000 on the bars both legs share; positive = the perpetual trades rich.
- annualised basis = basis as a fraction x (365 d / horizon): the basis taken as a carry earned over `horizon`
  (the funding interval for a perpetual, whose premium funding pulls back towards the index every period; the
  time to expiry for a dated future). 365-day year: crypto trades every day.
- annualised funding = rate x (365 d / funding interval) (simple, not compounded: funding is paid on notional).
- funding payment at funding time T (Binance USDⓈ-M): the holder of `qty` contracts pays
  qty x mark(T) x rate(T); a long (qty > 0) pays a positive rate, a short receives it. As PnL:
  pnl(T) = -qty(T) x mark(T) x rate(T), with qty(T) the position held at T (a change stamped at or before T
  counts; one stamped after T does not).
- cumulative funding = running sum of the rates: what one unit of notional held short through every period
  received (long: paid).
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from quantlib._validate import as_series, check_positive_number
from quantlib.timeframes import SECONDS_PER_YEAR

FUNDING_INTERVAL_S = 8 * 3600  # Binance USDⓈ-M default (some contracts fund every 4 h or 1 h)
BPS = 10_000.0


def _seconds(horizon: float | dt.timedelta | pd.Timedelta, name: str) -> float:
    if isinstance(horizon, (dt.timedelta, pd.Timedelta)):
        horizon = pd.Timedelta(horizon).total_seconds()
    return check_positive_number(horizon, name)


def _time_series(x: object, name: str) -> pd.Series:
    s = x if isinstance(x, pd.Series) else pd.Series(x)
    if not isinstance(s.index, pd.DatetimeIndex):
        raise ValueError(f"{name} must be indexed by time (a UTC DatetimeIndex), got a {type(s.index).__name__}")
    if s.index.has_duplicates:
        dup = s.index[s.index.duplicated()][0]
        raise ValueError(f"{name} has two values at {dup}; expected one per time")
    return as_series(s.sort_index(), name)


def basis_bps(perp: pd.Series, spot: pd.Series) -> pd.Series:
    """(perp / spot - 1) x 10_000 at the times both series have a value (inner join; NaN rows of either leg
    are skipped, not filled)."""
    p = as_series(pd.Series(perp).dropna(), "perp", positive=True)
    s = as_series(pd.Series(spot).dropna(), "spot", positive=True)
    p, s = p.align(s, join="inner")
    return ((p / s - 1.0) * BPS).rename("basis_bps")


def annualised_basis(basis: pd.Series | float, horizon: float | dt.timedelta = FUNDING_INTERVAL_S
                     ) -> pd.Series | float:
    """Basis in bps → annualised carry as a fraction: bps / 10_000 x (365 d / horizon) (`horizon` in seconds or a
    timedelta; default the 8 h funding interval)."""
    h = _seconds(horizon, "horizon")
    out = basis / BPS * (SECONDS_PER_YEAR / h)
    return out.rename("basis_annualised") if isinstance(out, pd.Series) else float(out)


def annualised_funding(rate: pd.Series | float, interval: float | dt.timedelta = FUNDING_INTERVAL_S
                       ) -> pd.Series | float:
    """Funding rate per period → simple annual rate: rate x (365 d / interval)."""
    h = _seconds(interval, "interval")
    out = rate * (SECONDS_PER_YEAR / h)
    return out.rename("funding_annualised") if isinstance(out, pd.Series) else float(out)


def cumulative_funding(rates: pd.Series) -> pd.Series:
    """Running sum of funding rates in time order (per unit of notional: received short, paid long)."""
    r = _time_series(rates, "rates")
    return r.cumsum().rename("cumulative_funding")


def mark_vs_last_bps(mark: pd.Series, last: pd.Series) -> pd.Series:
    """(mark / last - 1) x 10_000 where both have a value: how far the mark price (which decides liquidations
    and funding payments) sits from the last traded price."""
    m = as_series(pd.Series(mark).dropna(), "mark", positive=True)
    p = as_series(pd.Series(last).dropna(), "last", positive=True)
    m, p = m.align(p, join="inner")
    return ((m / p - 1.0) * BPS).rename("mark_vs_last_bps")


def time_to_funding(next_funding_time: dt.datetime | pd.Timestamp | None, now: dt.datetime | pd.Timestamp
                    ) -> pd.Timedelta | None:
    """Time left until `next_funding_time` (zero once it has passed; None when unknown)."""
    if next_funding_time is None or pd.isna(next_funding_time):
        return None
    left = pd.Timestamp(next_funding_time) - pd.Timestamp(now)
    return max(left, pd.Timedelta(0))


@dataclass(frozen=True)
class FundingPnL:
    """Funding of a perpetual position. `ledger`: one row per funding time with `rate`, `mark_price`, `qty`
    (held at that time), `notional` (qty x mark) and `payment` (PnL: -qty x mark x rate); index = funding time."""

    ledger: pd.DataFrame
    total: float
    paid: float        # sum of the negative payments (<= 0)
    received: float    # sum of the positive payments (>= 0)
    cumulative: pd.Series = field(repr=False)

    def summary(self) -> str:
        n = int((self.ledger["qty"] != 0).sum()) if len(self.ledger) else 0
        return (f"Funding PnL {self.total:+.6g} over {n} funding time(s) with a position "
                f"(received {self.received:.6g}, paid {-self.paid:.6g})")

    def __str__(self) -> str:
        return self.summary()


def funding_pnl(position: pd.Series, rates: pd.Series | pd.DataFrame, mark: pd.Series | None = None,
                price: pd.Series | None = None) -> FundingPnL:
    """Funding PnL of a perpetual position path.

    position: signed quantity (contracts / base units) held from each index time on (a step function; before
        its first time the position is 0).
    rates: funding rate per funding time; or a frame with `funding_rate` and optionally `mark_price` columns.
    mark: mark price per funding time (overrides the frame's column where given); where none is known the last
        `price` at or before the funding time is used. A funding time with a position but no price is an error.
    """
    if isinstance(rates, pd.DataFrame):
        if "funding_rate" not in rates:
            raise ValueError("rates frame needs a funding_rate column (and optionally mark_price)")
        frame = rates
        r = _time_series(frame["funding_rate"], "rates")
        marks = frame["mark_price"].reindex(r.index) if "mark_price" in frame else pd.Series(np.nan, index=r.index)
    else:
        r = _time_series(rates, "rates")
        marks = pd.Series(np.nan, index=r.index)
    marks = marks.astype("float64")
    if mark is not None:
        m = pd.Series(mark, dtype="float64")
        marks = m.reindex(r.index).where(lambda v: v.notna(), marks)
    pos = _time_series(position, "position")
    qty = pos.reindex(pos.index.union(r.index)).ffill().fillna(0.0).reindex(r.index)
    if price is not None:
        px = _time_series(pd.Series(price).dropna(), "price")
        fallback = px.reindex(px.index.union(r.index)).ffill().reindex(r.index)
        marks = marks.where(marks.notna(), fallback)
    need = (qty != 0) & marks.isna()
    if need.any():
        raise ValueError(f"no mark price or earlier price for the funding time {need.index[need.argmax()]} "
                         "where a position is held; pass mark= or price=")
    bad = (marks <= 0) & (qty != 0)
    if bad.any():
        raise ValueError(f"mark price must be > 0 at funding time {bad.index[bad.argmax()]}")
    notional = (qty * marks).where(qty != 0, 0.0)
    payment = -(notional * r)
    ledger = pd.DataFrame({"rate": r, "mark_price": marks, "qty": qty, "notional": notional,
                           "payment": payment})
    ledger.index.name = "funding_time"
    return FundingPnL(ledger=ledger, total=float(payment.sum()), paid=float(payment.clip(upper=0).sum()),
                      received=float(payment.clip(lower=0).sum()),
                      cumulative=payment.cumsum().rename("cumulative_funding_pnl"))


@dataclass(frozen=True)
class BasisSummary:
    """The latest state of a perp / spot pair over a window."""

    basis_bps: float            # newest shared bar
    mean_bps: float
    min_bps: float
    max_bps: float
    annualised: float           # newest basis as annual carry over the funding interval (fraction)
    n_bars: int
    funding_rate: float | None  # newest (estimated) funding rate of the current period
    funding_annualised: float | None
    cumulative_funding: float | None  # sum of the settled rates in the window
    next_funding_time: pd.Timestamp | None

    def summary(self) -> str:
        f = ("" if self.funding_rate is None else
             f"; funding {self.funding_rate:+.4%} per period ({self.funding_annualised:+.2%} a year)")
        return (f"Basis {self.basis_bps:+.2f} bps ({self.annualised:+.2%} annualised) on {self.n_bars} bars, "
                f"range {self.min_bps:+.2f} to {self.max_bps:+.2f} bps{f}")

    def __str__(self) -> str:
        return self.summary()


def basis_summary(basis: pd.Series, funding_rate: float | None = None, settled: pd.Series | None = None,
                  next_funding_time: pd.Timestamp | None = None,
                  interval: float | dt.timedelta = FUNDING_INTERVAL_S) -> BasisSummary:
    """Summarise a basis series (bps) with the current funding rate and the settled rates of the window."""
    b = pd.Series(basis, dtype="float64").dropna()
    if b.empty:
        raise ValueError("need >= 1 bar where both legs traded, got 0")
    rate = None if funding_rate is None or (isinstance(funding_rate, float) and math.isnan(funding_rate)) \
        else float(funding_rate)
    return BasisSummary(
        basis_bps=float(b.iloc[-1]), mean_bps=float(b.mean()), min_bps=float(b.min()), max_bps=float(b.max()),
        annualised=float(annualised_basis(float(b.iloc[-1]), interval)), n_bars=int(len(b)),
        funding_rate=rate, funding_annualised=None if rate is None else float(annualised_funding(rate, interval)),
        cumulative_funding=None if settled is None or len(settled) == 0 else float(pd.Series(settled).sum()),
        next_funding_time=None if next_funding_time is None or pd.isna(next_funding_time)
        else pd.Timestamp(next_funding_time))
