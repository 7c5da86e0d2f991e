"""A tick file of a whole-market universe for app tests and screenshots: hundreds of symbols per market, a few
ticks each with a realistic skew (a few symbols carry most trades), and one `ingest_status` row per symbol with
some problems (disconnected, halted, delisted, unrecoverable gaps, long quiet).

`python -m tests.universe_db PATH [N_PER_MARKET]` writes one (screenshots, manual looks)."""
from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tickstore.connection import write_connection
from tickstore.schema import ensure_schema
from tickstore.writer import TickBuffer, TickWriter

MARKETS = ("spot", "usdm")
MAJORS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT")


@dataclass(frozen=True)
class Universe:
    path: Path
    symbols: tuple[str, ...]              # per market, most traded first
    ticks: dict[str, int]                 # symbol -> ticks per market
    problems: dict[tuple[str, str], str]  # (market, symbol) -> what its status row says is wrong
    end: dt.datetime


def symbol_names(n: int) -> tuple[str, ...]:
    return MAJORS[:n] + tuple(f"C{k:03d}USDT" for k in range(max(0, n - len(MAJORS))))


def make_universe_db(path: Path, n: int = 400, end: dt.datetime | None = None, seed: int = 11) -> Universe:
    end = end or dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=2)
    end_us = int(end.timestamp() * 1e6)
    rng = np.random.default_rng(seed)
    names = symbol_names(n)
    counts = {s: max(2, int(600 / (k + 1) ** 1.2)) for k, s in enumerate(names)}  # Zipf-like skew
    rows = []
    for market in MARKETS:
        for k, sym in enumerate(names):
            c = counts[sym]
            ts = np.sort(end_us - rng.integers(0, 3 * 3600 * 10**6, c))
            base = 100.0 / (k + 1) + 0.01
            price = base * np.exp(np.cumsum(rng.normal(0, 1e-3, c)))
            rows += [(market, sym, 10_000 + i, int(t), float(p), float(rng.uniform(0.1, 5)), bool(i % 2), None, "ws")
                     for i, (t, p) in enumerate(zip(ts, price))]
    with write_connection(path) as con:
        ensure_schema(con)
    buf = TickBuffer()
    buf.extend(rows)
    TickWriter(path, buf).flush_once()
    problems = {("spot", names[-1]): "disconnected", ("spot", names[-2]): "HALT",
                ("usdm", names[-3]): "unrecoverable", ("usdm", names[-4]): "DELISTED"}
    with write_connection(path) as con:
        status = []
        for market in MARKETS:
            for sym in names:
                what = problems.get((market, sym))
                status.append((market, sym, what != "disconnected", 10_000 + counts[sym] - 1, end, end, counts[sym],
                               counts[sym] / 10_800, 0, 0, 0, 1 if what == "unrecoverable" else 0, 0, 0, 0, end,
                               what if what in ("HALT", "DELISTED") else "TRADING"))
        con.executemany("""INSERT INTO ingest_status(market, symbol, connected, last_trade_id, last_trade_ts,
                           last_recv_ts, ticks_total, ticks_per_s, reconnects, gaps_found, gaps_filled,
                           gaps_unrecoverable, trades_backfilled, malformed, duplicates, updated_at, exchange_status)
                           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""", status)
    return Universe(path, names, counts, problems, end)


if __name__ == "__main__":
    out = Path(sys.argv[1])
    u = make_universe_db(out, int(sys.argv[2]) if len(sys.argv) > 2 else 400)
    print(f"{out}: {len(u.symbols)} symbols x {len(MARKETS)} markets, {2 * sum(u.ticks.values()):,} ticks")
