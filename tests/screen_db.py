"""A small seeded universe in a real tick file, part of it moved to the Parquet archive (for screen / scanner tests).

`make_universe_db(path)` writes `UNIVERSE` spot ticks from 20:00Z on 2024-01-01 to 04:00Z on 2024-01-02 (8 h) and
archives everything before midnight, so any window over the whole span reads both the archive and the hot file.
Latent 1-second log prices: a common market factor plus each symbol's own random walk; ETHUSDT is cointegrated
with BTCUSDT (beta 1.3, OU spread with a half-life of ~5 min); the others only share the factor.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tickstore.archive import archive_ticks
from tickstore.connection import init_db
from tickstore.writer import TickBuffer, TickWriter

START = dt.datetime(2024, 1, 1, 20, 0, tzinfo=dt.UTC)
END = dt.datetime(2024, 1, 2, 4, 0, tzinfo=dt.UTC)       # exclusive; the newest tick is just before
MIDNIGHT = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
UNIVERSE = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")
PRICES = {"BTCUSDT": 40_000.0, "ETHUSDT": 2_300.0, "SOLUSDT": 100.0, "BNBUSDT": 300.0, "XRPUSDT": 0.6}


@dataclass(frozen=True)
class Universe:
    path: Path
    symbols: tuple[str, ...]
    start: dt.datetime
    end: dt.datetime
    newest: dt.datetime          # newest stored tick
    archived_rows: int


def universe_rows(seed: int = 11, rate_per_s: float = 0.25, market: str = "spot") -> list[tuple]:
    rng = np.random.default_rng(seed)
    n_sec = int((END - START).total_seconds())
    factor = np.cumsum(rng.normal(0, 5e-4, n_sec))
    paths = {s: np.log(PRICES[s]) + 0.8 * factor + np.cumsum(rng.normal(0, 4e-4, n_sec)) for s in UNIVERSE}
    phi = np.exp(-np.log(2) / 300.0)
    eps = rng.normal(0, 2e-4, n_sec)
    ou = np.zeros(n_sec)
    for i in range(1, n_sec):
        ou[i] = phi * ou[i - 1] + eps[i]
    paths["ETHUSDT"] = np.log(PRICES["ETHUSDT"]) + 1.3 * (paths["BTCUSDT"] - np.log(PRICES["BTCUSDT"])) + ou
    start_us = int(START.timestamp() * 1e6)
    rows: list[tuple] = []
    for k, symbol in enumerate(UNIVERSE):
        n = int(n_sec * rate_per_s)
        ts = np.sort(rng.integers(start_us, start_us + n_sec * 1_000_000, n))
        ts[-1] = start_us + n_sec * 1_000_000 - 1_000 * (k + 1)   # every symbol trades in the last second
        sec = (ts - start_us) // 1_000_000
        price = np.exp(paths[symbol][sec])
        qty = rng.lognormal(0, 1, n)
        rows.extend((market, symbol, 10_000 * (k + 1) + i, int(t), float(p), float(q), bool(i % 2), int(t) + 1_000, "ws")
                    for i, (t, p, q) in enumerate(zip(ts, price, qty)))
    return rows


def make_universe_db(path: Path, seed: int = 11, archive: bool = True) -> Universe:
    """Write the universe to `path`; with `archive`, move the ticks before midnight to `<dir>/archive`."""
    init_db(path)
    rows = universe_rows(seed)
    buf = TickBuffer()
    buf.extend(rows)
    TickWriter(path, buf).flush_once()
    archived = 0
    if archive:
        res = archive_ticks(path, dt.timedelta(days=1), now=MIDNIGHT + dt.timedelta(days=1, hours=1))
        archived = res.rows_archived
    newest_us = max(r[3] for r in rows)
    newest = dt.datetime.fromtimestamp(newest_us / 1e6, dt.UTC)
    return Universe(path, UNIVERSE, START, END, newest, archived)
