"""A small seeded universe for the Screener tests: cointegrated pairs among random walks, written as ticks.

`make_universe_db(path)` writes `hours` of ticks for three cointegrated pairs (log y = c + β·log x + OU noise with
a half-life of `half_life_s`), i.e. six symbols; across pairs the symbols are independent random walks.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from tickstore.connection import init_db
from tickstore.writer import TickBuffer, TickWriter

PAIRS = (("ETHUSDT", "BTCUSDT", 3000.0, 60000.0, 1.2), ("AVAXUSDT", "SOLUSDT", 30.0, 150.0, 0.8),
         ("XRPUSDT", "BNBUSDT", 0.6, 600.0, 1.5))
SYMBOLS = tuple(sorted(s for p in PAIRS for s in p[:2]))


def _ou(n: int, half_life_s: float, sigma: float, rng) -> np.ndarray:
    from scipy.signal import lfilter

    phi = np.exp(-np.log(2) / half_life_s)
    return lfilter([1.0], [1.0, -phi], rng.normal(0, sigma, n))


def universe_rows(start_us: int, hours: float, rate_per_s: float, seed: int, half_life_s: float) -> list[tuple]:
    rng = np.random.default_rng(seed)
    n_sec = int(hours * 3600) + 1
    span_us = int(hours * 3600e6)
    rows: list[tuple] = []
    for k, (ys, xs, yp, xp, beta) in enumerate(PAIRS):
        lx = np.log(xp) + np.cumsum(rng.normal(0, 1e-3, n_sec))
        ly = np.log(yp) - beta * np.log(xp) + beta * lx + _ou(n_sec, half_life_s, 4e-4, rng)
        for j, (sym, path) in enumerate(((xs, lx), (ys, ly))):
            n = int(span_us / 1e6 * rate_per_s)
            ts = np.sort(rng.integers(start_us, start_us + span_us, n))
            sec = ((ts - start_us) // 1_000_000).clip(0, n_sec - 1)
            price = np.exp(path[sec] + rng.normal(0, 2e-5, n))
            qty = np.round(rng.lognormal(0, 1, n), 5) + 1e-5
            maker = rng.random(n) < 0.5
            base = 1_000_000 * (2 * k + j + 1)
            rows.extend(("spot", sym, base + i, int(t), float(p), float(q), bool(m), int(t) + 50_000, "ws")
                        for i, (t, p, q, m) in enumerate(zip(ts, price, qty, maker)))
    return rows


def make_universe_db(path: Path, hours: float = 4.0, rate_per_s: float = 1.0, seed: int = 5,
                     half_life_s: float = 120.0, end: dt.datetime | None = None) -> Path:
    """Ticks in [end - hours, end); `end` defaults to the start of the current minute, so 1m bars (and with them
    the screen) come out the same on every run."""
    end = end or dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    start_us = int((end - dt.timedelta(hours=hours)).timestamp() * 1e6)
    init_db(path)
    buf = TickBuffer()
    buf.extend(universe_rows(start_us, hours, rate_per_s, seed, half_life_s))
    TickWriter(path, buf).flush_once()
    return path
