"""Mark price, index price and funding of the local exchange's perpetuals (usdm), from the simulated basis.

Per symbol, every 50 ms step of ``exchange.model`` gives the latent (spot) price ``P`` and the perpetual's log
basis ``b``: the **index price** is ``P`` (what spot trades centre on), the **mark price** ``P * exp(b)`` (what
usdm trades centre on). The **premium index** of a step is ``mark / index - 1``.

Funding follows Binance's formula (USDⓈ-M "Introduction to Binance Futures Funding Rates"): over each funding
period the premium index is averaged (time-weighted: every step counts once), and at the period's end

    F = avg_premium + clamp(interest - avg_premium, -0.05 %, +0.05 %),   interest = 0.01 % per 8 h period,

capped at ``+-0.75 %`` (``cap``). Longs pay shorts when F > 0. With the demo basis (2 bp mean, OU parts with sds
1 bp and 5 bp, see ``exchange.model``) most periods settle at exactly 0.0100 % like real majors in calm markets,
and a period whose average premium leaves the -4 .. +6 bp band settles above or below it. A period of another
length (``interval_s``; 8 h default, 1 h and 4 h also exist on Binance; tests use seconds) pays the 8 h rate
scaled by ``interval / 8 h`` (before the cap), so funding per unit of time does not depend on the interval. Funding
times are the epoch-aligned period ends (00:00, 08:00, 16:00 UTC for 8 h). The period the simulated history starts
in is averaged over all of its steps too: the exchange pre-rolls the basis from the period's start (after a
burn-in that forgets the basis's start-up draw) and ``prime`` adds that premium, so the first settled rate is no
noisier than the others (it used to average only the minutes or hours of history inside it, little more than one
start-up draw: +0.15 % for BTC at seed 7). A period without any step (the exchange paused through it) settles
nothing.

The running estimate ``r`` of the mark-price stream is the same formula over the current period so far; ``T`` is
the current period's end.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

INTEREST_8H = 1.0e-4
CLAMP_8H = 5.0e-4
CAP = 7.5e-3


def funding_rate(avg_premium: float, interest: float = INTEREST_8H, clamp: float = CLAMP_8H, cap: float = CAP) -> float:
    """Binance's funding formula (see module docstring)."""
    f = avg_premium + min(max(interest - avg_premium, -clamp), clamp)
    return min(max(f, -cap), cap)


@dataclass
class _Book:
    times: list[int] = field(default_factory=list)       # funding times, µs
    rates: list[float] = field(default_factory=list)
    marks: list[float] = field(default_factory=list)
    period: int | None = None                            # index of the running period
    psum: float = 0.0                                    # premium summed over its steps
    pn: int = 0
    last: tuple[int, float, float] | None = None         # (step µs, mark, index) of the newest step


class FundingBook:
    """Settled funding rates and the latest mark/index per symbol (thread-safe reads)."""

    def __init__(self, symbols: tuple[str, ...], interval_s: float = 8 * 3600.0):
        if not interval_s >= 1.0:
            raise ValueError(f"funding interval must be at least 1 s, got {interval_s!r}")
        self.interval_us = int(round(interval_s * 1e6))
        self.scale = interval_s / (8 * 3600.0)
        self.cap = CAP
        self._books = {s: _Book() for s in symbols}
        self._lock = threading.Lock()

    def rate(self, avg_premium: float) -> float:
        """Funding of one period from its average premium (8 h formula, scaled to the interval, capped)."""
        f = self.scale * funding_rate(avg_premium, cap=float("inf"))
        return min(max(f, -self.cap), self.cap)

    def prime(self, symbol: str, first_step_us: int, premium_sum: float, steps: int) -> None:
        """The premium of the ``steps`` steps of the period of ``first_step_us`` that precede it (the basis
        pre-roll, ``Simulator.preroll_basis``), summed: that period then averages all of its steps like the
        others. Only before the first ``add`` of the symbol."""
        b = self._books[symbol]
        with self._lock:
            if b.period is not None:
                raise RuntimeError(f"{symbol}: prime before the first steps, not after")
            if steps > 0:
                b.period = int(first_step_us) // self.interval_us
                b.psum, b.pn = float(premium_sum), int(steps)

    def add(self, symbol: str, t_us: np.ndarray, log_index: np.ndarray, log_basis: np.ndarray) -> None:
        """Steps of one symbol (ascending times): settles every period that ends among them."""
        if len(t_us) == 0:
            return
        premium = np.expm1(log_basis)   # mark / index - 1; prices themselves only where a period ends
        per = t_us // self.interval_us
        cuts = np.flatnonzero(np.diff(per)) + 1
        b = self._books[symbol]
        with self._lock:
            lo = 0
            for hi in (*cuts.tolist(), len(t_us)):
                p = int(per[lo])
                if b.period is not None and p != b.period and b.pn:
                    # the previous period ended: settle it with the mark of the last step before its end
                    b.times.append((b.period + 1) * self.interval_us)
                    b.rates.append(self.rate(b.psum / b.pn))
                    b.marks.append(b.last[1])
                    b.psum, b.pn = 0.0, 0
                b.period = p
                b.psum += float(premium[lo:hi].sum())
                b.pn += hi - lo
                index = float(np.exp(log_index[hi - 1]))
                b.last = (int(t_us[hi - 1]), index * float(np.exp(log_basis[hi - 1])), index)
                lo = hi

    def snapshot(self, symbol: str) -> tuple[int, float, float, float, int] | None:
        """(step µs, mark, index, estimated rate of the running period, its end µs), None before any step."""
        b = self._books[symbol]
        with self._lock:
            if b.last is None or not b.pn:
                return None
            return (b.last[0], b.last[1], b.last[2], self.rate(b.psum / b.pn), (b.period + 1) * self.interval_us)

    def history(self, symbol: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Settled (funding times µs, rates, mark prices), ascending."""
        b = self._books[symbol]
        with self._lock:
            return (np.array(b.times, dtype=np.int64), np.array(b.rates, dtype=np.float64),
                    np.array(b.marks, dtype=np.float64))

    @property
    def symbols(self) -> list[str]:
        return list(self._books)
