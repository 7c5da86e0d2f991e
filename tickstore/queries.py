"""Read queries on the tick file. Every function opens read-only, retries on lock conflicts and closes.

Bars are computed in SQL with the same definitions as `quantlib.bars.resample`: bar start = epoch-aligned
floor of the trade time (UTC); open/close = first/last trade by trade id; volume = sum(qty);
quote_volume = sum(price*qty); vwap = quote_volume / volume; bars without trades are not returned.
"""
from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence

import pandas as pd

from tickstore.connection import read_connection

TIMEFRAME_SECONDS = {"1s": 1, "5s": 5, "15s": 15, "1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}
BAR_COLUMNS = ["open", "high", "low", "close", "volume", "quote_volume", "trades", "vwap"]

PathLike = str | os.PathLike | None


def tf_seconds(timeframe: str) -> int:
    try:
        return TIMEFRAME_SECONDS[timeframe]
    except KeyError:
        raise ValueError(f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAME_SECONDS)}") from None


def _utc(t: dt.datetime | pd.Timestamp | None) -> dt.datetime | None:
    if t is None:
        return None
    t = pd.Timestamp(t)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.to_pydatetime()


def _utc_frame(df: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
    for c in cols:
        if c in df.columns:
            df[c] = pd.to_datetime(df[c], utc=True)
    return df


BARS_SQL = """
SELECT symbol,
       (epoch_us(ts) // $step) * $step AS bucket_us,
       arg_min(price, trade_id) AS open,
       max(price) AS high,
       min(price) AS low,
       arg_max(price, trade_id) AS close,
       sum(qty) AS volume,
       sum(price * qty) AS quote_volume,
       count(*) AS trades
FROM ticks_all
WHERE market = $market AND list_contains($symbols, symbol) AND ts >= $start AND ts < $end
GROUP BY ALL
ORDER BY symbol, bucket_us
"""


def bars(market: str, symbols: Sequence[str], timeframe: str, start: dt.datetime, end: dt.datetime | None = None,
         path: PathLike = None) -> pd.DataFrame:
    """OHLCV bars for `symbols` in [start, end): long frame with `symbol`, `ts` (bar start, UTC) and BAR_COLUMNS."""
    step = tf_seconds(timeframe) * 1_000_000
    end = _utc(end) or dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
    params = {"step": step, "market": market, "symbols": [s.upper() for s in symbols], "start": _utc(start), "end": end}
    with read_connection(path) as con:
        df = con.execute(BARS_SQL, params).df()
    df.insert(1, "ts", pd.to_datetime(df.pop("bucket_us"), unit="us", utc=True))
    df["trades"] = df["trades"].astype("int64")
    df["vwap"] = (df["quote_volume"] / df["volume"]).where(df["volume"] > 0)
    return df[["symbol", "ts", *BAR_COLUMNS]]


def bars_wide(market: str, symbols: Sequence[str], timeframe: str, start: dt.datetime, end: dt.datetime | None = None,
              path: PathLike = None) -> dict[str, pd.DataFrame]:
    """`bars` split per symbol, each indexed by bar start."""
    long = bars(market, symbols, timeframe, start, end, path)
    return {s.upper(): g.drop(columns="symbol").set_index("ts") for s, g in long.groupby("symbol")} | {
        s.upper(): pd.DataFrame(columns=BAR_COLUMNS, index=pd.DatetimeIndex([], tz="UTC", name="ts"))
        for s in symbols if s.upper() not in set(long["symbol"])}


def ticks(market: str, symbol: str, start: dt.datetime, end: dt.datetime | None = None, limit: int | None = None,
          path: PathLike = None) -> pd.DataFrame:
    """Ticks of one symbol in [start, end), ordered by trade id."""
    sql = """SELECT trade_id, ts, price, qty, is_buyer_maker FROM ticks_all
             WHERE market = $market AND symbol = $symbol AND ts >= $start AND ts < $end ORDER BY trade_id"""
    params = {"market": market, "symbol": symbol.upper(), "start": _utc(start),
              "end": _utc(end) or dt.datetime(9999, 1, 1, tzinfo=dt.UTC)}
    if limit is not None:
        sql += " LIMIT $limit"
        params["limit"] = int(limit)
    with read_connection(path) as con:
        return _utc_frame(con.execute(sql, params).df(), ["ts"])


def symbols(path: PathLike = None) -> pd.DataFrame:
    """Every (market, symbol) in the file with its last price, last trade time and row count."""
    sql = """SELECT market, symbol, count(*) AS ticks, min(ts) AS first_ts, max(ts) AS last_ts,
                    arg_max(price, trade_id) AS last_price
             FROM ticks_all GROUP BY ALL ORDER BY market, symbol"""
    with read_connection(path) as con:
        return _utc_frame(con.execute(sql).df(), ["first_ts", "last_ts"])


LATEST_SQL = """
WITH recent AS (
    SELECT * FROM ticks_all
    WHERE ts >= (SELECT max(ts) FROM ticks_all) - to_microseconds($window_us)
      AND ($market IS NULL OR market = $market))
SELECT market, symbol, arg_max(price, trade_id) AS last_price, arg_min(price, trade_id) AS first_price,
       max(price) AS high, min(price) AS low, sum(qty) AS volume, sum(price*qty) AS quote_volume,
       count(*) AS trades, max(ts) AS last_ts
FROM recent GROUP BY ALL ORDER BY market, symbol"""


def latest(market: str | None = None, window: dt.timedelta = dt.timedelta(hours=24), path: PathLike = None) -> pd.DataFrame:
    """Last price, 24h-style change, high/low, volume and trade count per symbol over `window` before its last tick."""
    with read_connection(path) as con:
        df = con.execute(LATEST_SQL, {"market": market, "window_us": int(window.total_seconds() * 1e6)}).df()
    df["change"] = df["last_price"] / df["first_price"] - 1.0
    return _utc_frame(df, ["last_ts"])


def status(path: PathLike = None) -> pd.DataFrame:
    """The ingestor's per-symbol status rows (see README, ingest_status)."""
    with read_connection(path) as con:
        return _utc_frame(con.execute("SELECT * FROM ingest_status ORDER BY market, symbol").df(),
                          ["last_trade_ts", "last_recv_ts", "updated_at"])


def events(limit: int = 200, kinds: Sequence[str] | None = None, path: PathLike = None) -> pd.DataFrame:
    """Latest ingestion events, newest first."""
    sql = "SELECT * FROM ingest_events WHERE ($kinds IS NULL OR list_contains($kinds, kind)) ORDER BY id DESC LIMIT $limit"
    with read_connection(path) as con:
        return _utc_frame(con.execute(sql, {"kinds": list(kinds) if kinds else None, "limit": int(limit)}).df(), ["ts"])


def tick_rate(market: str, since: dt.datetime, step_s: int = 10, path: PathLike = None) -> pd.DataFrame:
    """Ticks stored per `step_s`-second bucket and symbol since `since` (by trade time): `symbol`, `ts`, `ticks`."""
    sql = """SELECT symbol, (epoch_us(ts) // $step) * $step AS bucket_us, count(*) AS ticks
             FROM ticks_all WHERE market = $market AND ts >= $since GROUP BY ALL ORDER BY symbol, bucket_us"""
    with read_connection(path) as con:
        df = con.execute(sql, {"step": int(step_s) * 1_000_000, "market": market, "since": _utc(since)}).df()
    df.insert(1, "ts", pd.to_datetime(df.pop("bucket_us"), unit="us", utc=True))
    df["ticks"] = df["ticks"].astype("int64")
    return df


def symbols_since(since: dt.datetime, path: PathLike = None) -> pd.DataFrame:
    """Like `symbols`, over ticks at or after `since` only: cheap on a file stored in time order (zone maps skip
    older row groups). `ticks` counts the recent rows; `first_ts` is the first recent tick."""
    sql = """SELECT market, symbol, count(*) AS ticks, min(ts) AS first_ts, max(ts) AS last_ts,
                    arg_max(price, trade_id) AS last_price
             FROM ticks_all WHERE ts >= $since GROUP BY ALL ORDER BY market, symbol"""
    with read_connection(path) as con:
        return _utc_frame(con.execute(sql, {"since": _utc(since)}).df(), ["first_ts", "last_ts"])
