"""Benchmark the perpetual-funding parts against baselines measured in the same run.

    .venv/bin/python bench/funding.py

- `backtest.mean_reversion(..., funding=)` against the same backtest without funding (the cost of placing the
  funding times on the bars and booking them per trade), on 10k and 100k one-minute bars with a funding time
  every 8 h (and every 1 h: 8x as many events).
- `basis.funding_pnl` of a position path against a plain Python loop doing the same sums (asof lookups).
Each cell is the median wall time of several runs (ms); one BLAS thread.
"""
from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from threadpoolctl import threadpool_limits  # noqa: E402

from quantlib import backtest, basis  # noqa: E402

BUDGET_S = 1.0


def ab(base, ours) -> tuple[float, float]:
    """Median ms of `base` and `ours`, run alternately (a shared, busy machine drifts; alternating keeps the two
    columns comparable)."""
    base(), ours()
    a, b, t_end = [], [], time.perf_counter() + 2 * BUDGET_S
    while len(a) < 21 and (len(a) < 5 or time.perf_counter() < t_end):
        for fn, out in ((base, a), (ours, b)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return float(np.median(a)) * 1000, float(np.median(b)) * 1000


def pair(n: int, seed: int = 3) -> tuple[pd.Series, pd.Series]:
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")
    x = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    s = np.zeros(n)
    for i in range(1, n):
        s[i] = 0.97 * s[i - 1] + rng.normal(0, 0.05)
    return pd.Series(x * 1.0 + s + 50, idx), pd.Series(x, idx)


def funding_series(index: pd.DatetimeIndex, every: str, seed: int = 5) -> pd.Series:
    times = pd.date_range(index[0].ceil(every), index[-1], freq=every)
    return pd.Series(np.random.default_rng(seed).normal(1e-4, 1e-4, len(times)), times)


def loop_funding_pnl(position: pd.Series, rates: pd.Series, price: pd.Series) -> float:
    total = 0.0
    for t, r in rates.items():
        held = position[position.index <= t]
        q = float(held.iloc[-1]) if len(held) else 0.0
        if q:
            total += -q * float(price[price.index <= t].iloc[-1]) * r
    return total


def main() -> None:
    rows = []
    with threadpool_limits(1):
        for n in (10_000, 100_000):
            y, x = pair(n)
            for every in ("8h", "1h"):
                f = funding_series(y.index, every)
                base, with_f = ab(lambda: backtest.mean_reversion(y, x, window=100),
                                  lambda: backtest.mean_reversion(y, x, window=100, funding=f, funding_leg="x"))
                rows.append((f"mean_reversion + funding every {every}", n, len(f), base, with_f))
            res = backtest.mean_reversion(y, x, window=100)
            pos = (res.positions.astype(float) * 10.0)
            pos = pos[pos.diff().fillna(pos) != 0]
            f = funding_series(y.index, "8h")
            loop, ours = ab(lambda: loop_funding_pnl(pos, f, x), lambda: basis.funding_pnl(pos, f, price=x))
            assert np.isclose(basis.funding_pnl(pos, f, price=x).total, loop_funding_pnl(pos, f, x))
            rows.append(("basis.funding_pnl vs a Python loop", n, len(f), loop, ours))
    print(f"# Funding bench ({platform.processor() or platform.machine()}, Python {platform.python_version()})\n")
    print("| what | bars | funding times | baseline ms | ours ms | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for what, n, k, b, o in rows:
        print(f"| {what} | {n:,} | {k:,} | {b:,.1f} | {o:,.1f} | {o / b:.2f} |")
    print("\nBaselines: the backtest without funding (same run); for funding_pnl, a loop with one asof lookup per "
          "funding time. Equal results are asserted.")


if __name__ == "__main__":
    main()
