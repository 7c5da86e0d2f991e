"""A tick file with spot and perpetual (usdm) BTCUSDT / ETHUSDT, a known basis, mark prices and funding history.

The perpetual ticks are the spot ticks (same times, same latent path) priced at spot x (1 + basis(t)), basis(t) =
BASIS_BPS + BASIS_AMP_BPS x sin(2 pi t / 40 min) in bps, so every statistic of the basis has a hand-computable
reference. Mark prices are written once a second, funding rates every 8 h (00:00, 08:00, 16:00 UTC) over the
last days before `end`: rate = FUNDING_BASE + FUNDING_STEP x (k mod 5) - 2 FUNDING_STEP for the k-th period.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from tests.conftest import synthetic_pair_ticks
from tickstore.connection import init_db, write_connection
from tickstore.writer import TickBuffer, TickWriter

BASIS_BPS = 6.0
BASIS_AMP_BPS = 4.0
BASIS_PERIOD_S = 2400.0
FUNDING_BASE = 0.0001
FUNDING_STEP = 0.00005
FUNDING_DAYS = 3


@dataclass(frozen=True)
class BasisMarket:
    path: Path
    start: dt.datetime
    end: dt.datetime
    funding_times: tuple[pd.Timestamp, ...]
    funding_rates: tuple[float, ...]


def basis_at(ts_us: np.ndarray, start_us: int) -> np.ndarray:
    """The simulated basis in bps at each time."""
    return BASIS_BPS + BASIS_AMP_BPS * np.sin(2 * np.pi * (ts_us - start_us) / 1e6 / BASIS_PERIOD_S)


def funding_schedule(end: dt.datetime, days: int = FUNDING_DAYS) -> tuple[list[pd.Timestamp], list[float]]:
    last = pd.Timestamp(end).floor("8h")
    times = [last - pd.Timedelta(hours=8 * i) for i in range(3 * days)][::-1]
    rates = [FUNDING_BASE + FUNDING_STEP * (k % 5) - 2 * FUNDING_STEP for k in range(len(times))]
    return times, rates


def make_basis_db(path: Path, end: dt.datetime, hours: float = 3.0, rate_per_s: float = 1.0, seed: int = 11,
                  marks: bool = True) -> BasisMarket:
    start = end - dt.timedelta(hours=hours)
    start_us = int(start.timestamp() * 1e6)
    init_db(path)
    spot = synthetic_pair_ticks(start_us, hours, rate_per_s, seed)
    perp = []
    for (m, sym, tid, ts, price, qty, maker, recv, src) in spot:
        b = float(basis_at(np.array([ts]), start_us)[0])
        perp.append(("usdm", sym, tid, ts, round(price * (1 + b / 1e4), 4), qty, maker, recv, src))
    buf = TickBuffer()
    buf.extend(spot + perp)
    TickWriter(path, buf).flush_once()
    times, rates = funding_schedule(end)
    if marks:
        write_marks(path, start, end, times, rates)
    return BasisMarket(path, start, end, tuple(times), tuple(rates))


MARK_OVER_LAST_BPS = 1.5


def write_marks(path: Path, start: dt.datetime, end: dt.datetime, times, rates) -> None:
    """mark_prices once a second for BTCUSDT: index = the last spot trade, mark = the last perp trade x (1 + 1.5
    bps); and the funding history."""
    secs = pd.date_range(pd.Timestamp(start).ceil("1s"), pd.Timestamp(end), freq="1s", tz="UTC")
    con = duckdb.connect(str(path), read_only=True)
    try:
        last = {m: con.execute("SELECT ts, price FROM ticks WHERE market = ? AND symbol = 'BTCUSDT' ORDER BY ts",
                               [m]).df() for m in ("spot", "usdm")}
    finally:
        con.close()
    asof = {m: pd.Series(df["price"].to_numpy(), index=pd.to_datetime(df["ts"], utc=True)).groupby(level=0).last()
            .reindex(secs, method="ffill") for m, df in last.items()}
    ok = asof["spot"].notna() & asof["usdm"].notna()
    secs = secs[ok.to_numpy()]
    index = asof["spot"][ok].to_numpy()
    mark = asof["usdm"][ok].to_numpy() * (1 + MARK_OVER_LAST_BPS / 1e4)
    nxt = secs.floor("8h") + pd.Timedelta(hours=8)
    current = rates[-1] + FUNDING_STEP / 2
    frame = pd.DataFrame({"market": "usdm", "symbol": "BTCUSDT", "ts": secs, "mark_price": mark,
                          "index_price": index, "funding_rate": current, "next_funding_time": nxt})
    fund = pd.DataFrame({"market": "usdm", "symbol": "BTCUSDT", "funding_time": pd.DatetimeIndex(times),
                         "funding_rate": rates, "mark_price": [60_000.0 + 10 * k for k in range(len(times))]})
    with write_connection(path) as con:
        con.register("marks_df", frame)
        con.register("fund_df", fund)
        con.execute("INSERT INTO mark_prices SELECT market, symbol, ts, mark_price, index_price, funding_rate, "
                    "next_funding_time FROM marks_df")
        con.execute("INSERT INTO funding_rates SELECT market, symbol, funding_time, funding_rate, mark_price "
                    "FROM fund_df")


def stored_closes(path: Path, market: str, symbol: str, seconds: int = 60) -> pd.Series:
    """Bar closes computed here from the raw ticks (last trade by id per epoch-aligned bar), independently of
    tickstore.queries."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        t = con.execute("SELECT trade_id, epoch_us(ts) AS us, price FROM ticks WHERE market = ? AND symbol = ?",
                        [market, symbol]).df()
    finally:
        con.close()
    t["bar"] = t["us"] // (seconds * 1_000_000) * seconds
    last = t.sort_values("trade_id").groupby("bar")["price"].last()
    last.index = pd.to_datetime(last.index, unit="s", utc=True)
    return last.rename(f"{market}:{symbol}")
