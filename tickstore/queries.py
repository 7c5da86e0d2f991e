"""Read queries on the tick file. Every function opens read-only, retries on lock conflicts and closes.

Bars are computed in SQL with the same definitions as `quantlib.bars.resample`: bar start = epoch-aligned
floor of the trade time (UTC); open/close = first/last trade by trade id; volume = sum(qty);
quote_volume = sum(price*qty); vwap = quote_volume / volume; bars without trades are not returned.
"""
from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.timeframes import seconds as tf_seconds
from tickstore import symbol_catalog
from tickstore.connection import read_connection

BAR_COLUMNS = ["open", "high", "low", "close", "volume", "quote_volume", "trades", "vwap"]

PathLike = str | os.PathLike | None


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
    return _bar_frame(df)


_STORED_SQL = """SELECT coalesce(sum(ticks), 0)::BIGINT FROM symbol_catalog
                 WHERE market = $market AND list_contains($symbols, symbol)"""
_ARCHIVED_SQL = """SELECT coalesce(sum(rows), 0)::BIGINT FROM archive_files
                   WHERE market = $market AND list_contains($symbols, symbol)"""


_LAST_TS_SQL = """SELECT symbol, last_ts FROM symbol_catalog
                  WHERE market = $market AND list_contains($symbols, symbol) AND last_ts IS NOT NULL"""


def _stored_ticks(con, market: str, symbols: list[str]) -> tuple[int | None, dict[str, pd.Timestamp]]:
    """Ticks of `symbols` in the file, hot and archived, from `symbol_catalog` and `archive_files` (no tick is read),
    and each symbol's newest trade time; (None, {}) when the catalogue does not add up (a file written by older code
    or by a direct insert)."""
    if not symbol_catalog.consistent(con):
        return None, {}
    params = {"market": market, "symbols": symbols}
    n = con.execute(_STORED_SQL, params).fetchone()[0]
    if _has_table(con, "archive_files"):
        n += con.execute(_ARCHIVED_SQL, params).fetchone()[0]
    last = {sym: pd.Timestamp(t).tz_convert("UTC") for sym, t in con.execute(_LAST_TS_SQL, params).fetchall()}
    return int(n), last


@dataclass(frozen=True)
class BarsRead:
    """`bars` from `start` on, and the count of every stored tick of those symbols read in the same snapshot.

    `stored` changes whenever a tick of these symbols is inserted (live, backfill, import) or deleted, whatever its
    time, and only then (archiving moves ticks: the count stays), so `stored - (trades in the bars from t on)` —
    `before(t)` — is the number of ticks older than `t`; equal numbers at two reads mean nothing older than `t` came
    or went in between, and bars before `t` read earlier are still exact. None when the catalogue does not add up.
    """

    bars: pd.DataFrame
    start: dt.datetime
    stored: int | None
    last_ts: dict[str, pd.Timestamp] | None = None  # newest trade time per symbol, same snapshot (with `stored`)

    def before(self, t: dt.datetime) -> int | None:
        """Stored ticks of these symbols with a trade time before `t` (a bar boundary at or after `start`)."""
        if self.stored is None:
            return None
        if _utc(t) < _utc(self.start):
            raise ValueError(f"before({t}) needs a time at or after the read's start {self.start}")
        return self.stored - int(self.bars.loc[self.bars["ts"] >= pd.Timestamp(t), "trades"].sum())

    def summary(self) -> str:
        return (f"{len(self.bars):,} bars of {self.bars['symbol'].nunique()} symbols from {self.start:%Y-%m-%d %H:%M:%S}"
                f" UTC; {'unknown' if self.stored is None else f'{self.stored:,}'} ticks stored")


def bars_read(market: str, symbols: Sequence[str], timeframe: str, start: dt.datetime, path: PathLike = None
              ) -> BarsRead:
    """`bars(market, symbols, timeframe, start)` (no end) with the stored-tick count of the same snapshot (one
    connection: no writer can come in between), for caches that keep closed bars and re-read only the newest."""
    step = tf_seconds(timeframe) * 1_000_000
    wanted = [s.upper() for s in symbols]
    params = {"step": step, "market": market, "symbols": wanted, "start": _utc(start),
              "end": dt.datetime(9999, 1, 1, tzinfo=dt.UTC)}
    with read_connection(path) as con:
        stored, last = _stored_ticks(con, market, wanted)
        df = con.execute(BARS_SQL, params).df()
    return BarsRead(_bar_frame(df), _utc(start), stored, last)


def _bar_frame(df: pd.DataFrame) -> pd.DataFrame:
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


SYMBOLS_SCAN_SQL = """SELECT market, symbol, count(*) AS ticks, min(ts) AS first_ts, max(ts) AS last_ts,
                           arg_max(price, trade_id) AS last_price
                    FROM ticks_all GROUP BY ALL ORDER BY market, symbol"""
_CATALOG_SQL = """SELECT market, symbol, ticks, first_ts, last_ts, last_price FROM symbol_catalog
                  WHERE ticks > 0 OR list_contains($archived, market || ':' || symbol) ORDER BY market, symbol"""


def symbols(path: PathLike = None) -> pd.DataFrame:
    """Every (market, symbol) in the file with its last price, first and last trade time and row count (hot and
    archived). Read from `symbol_catalog` and `archive_files` (a few hundred rows) while the catalogue adds up,
    else by a scan of every tick (`symbols_scan`); `frame.attrs["source"]` says which ('catalog' | 'scan')."""
    with read_connection(path) as con:
        df = _symbols_from_catalog(con)
        if df is None:
            df = con.execute(SYMBOLS_SCAN_SQL).df()
            df.attrs["source"] = "scan"
    return _utc_frame(df, ["first_ts", "last_ts"])


def symbols_scan(path: PathLike = None) -> pd.DataFrame:
    """`symbols` by a scan of every stored tick: the reference the catalogue is checked against."""
    with read_connection(path) as con:
        df = con.execute(SYMBOLS_SCAN_SQL).df()
    df.attrs["source"] = "scan"
    return _utc_frame(df, ["first_ts", "last_ts"])


def _symbols_from_catalog(con) -> pd.DataFrame | None:
    """The catalogue merged with the archive's per-symbol totals; None when it cannot stand in for the scan (it does
    not add up, the archive directory is missing, or an archived symbol's newest tick is not in it: a file archived
    before the catalogue existed)."""
    from tickstore.archive import archived_summary

    if not symbol_catalog.consistent(con):
        return None
    archived = {(m, s): (n, first, last) for m, s, n, first, last, _ in archived_summary(con)}
    if archived:
        from tickstore.views import archive_root

        root = archive_root(con)
        if root is None or not root.is_dir():  # readers see the hot ticks only (tickstore.views): so does the scan
            return None
    df = con.execute(_CATALOG_SQL, {"archived": [f"{m}:{s}" for m, s in archived]}).df()
    if archived:
        df = _utc_frame(df, ["first_ts", "last_ts"])
        pos = {(m, s): i for i, (m, s) in enumerate(zip(df["market"], df["symbol"]))}
        for key, (n, first, last) in archived.items():
            i = pos.get(key)
            if i is None or (last is not None and (pd.isna(df.at[i, "last_ts"]) or
                                                   pd.Timestamp(last) > df.at[i, "last_ts"])):
                return None
            df.at[i, "ticks"] += int(n)
            if first is not None:
                df.at[i, "first_ts"] = min(df.at[i, "first_ts"], pd.Timestamp(first).tz_convert("UTC"))
    df["ticks"] = df["ticks"].astype("int64")
    df.attrs["source"] = "catalog"
    return df


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


# --------------------------------------------------------------------------------------------- closes for screens

CLOSES_SQL = """
SELECT symbol, (epoch_us(ts) // $step) * $step AS bucket_us, arg_max(price, trade_id) AS close
FROM ticks_all
WHERE market = $market AND ($symbols IS NULL OR list_contains($symbols, symbol)) AND ts >= $start AND ts < $end
GROUP BY ALL
"""
_HOT_NEWEST_SQL = """SELECT max(ts) FROM main.ticks
                     WHERE market = $market AND ($symbols IS NULL OR list_contains($symbols, symbol))"""
_ARCHIVE_NEWEST_SQL = """SELECT max(last_ts), count(*) - count(last_ts) FROM archive_files
                         WHERE market = $market AND ($symbols IS NULL OR list_contains($symbols, symbol))"""


def _newest_tick(con, market: str, symbols: list[str] | None) -> dt.datetime | None:
    """Newest stored trade time of `symbols` (None: all) of `market`, hot file or archive. The archive side comes
    from `archive_files` (no Parquet read) unless a registered file lacks its time bounds."""
    from tickstore.archive import archive_root

    params = {"market": market, "symbols": symbols}
    newest = [con.execute(_HOT_NEWEST_SQL, params).fetchone()[0]]
    if archive_root(con) is not None:
        last, unbounded = con.execute(_ARCHIVE_NEWEST_SQL, params).fetchone()
        if unbounded:
            last = con.execute("SELECT max(ts) FROM ticks_all WHERE market = $market AND "
                               "($symbols IS NULL OR list_contains($symbols, symbol))", params).fetchone()[0]
        newest.append(last)
    newest = [pd.Timestamp(t).tz_convert("UTC") if pd.Timestamp(t).tzinfo else pd.Timestamp(t).tz_localize("UTC")
              for t in newest if t is not None]
    return max(newest).to_pydatetime() if newest else None


def closes_wide(market: str, symbols: Sequence[str] | None, timeframe: str,
                start: dt.datetime | dt.timedelta, end: dt.datetime | None = None,
                path: PathLike = None) -> pd.DataFrame:
    """Bar closes of many symbols side by side, resampled in SQL over the hot file and the archive alike.

    Returns a float frame indexed by bar start (UTC DatetimeIndex named `ts`, ascending; a bar appears when at least
    one symbol traded in it) with one column per symbol; NaN where that symbol had no trade in the bar (no
    filling: callers decide). The close is the last trade by trade id in the bar, as in `bars`.

    - `symbols`: the columns, in the given order (upper-cased; a requested symbol without trades in the window is an
      all-NaN column); None = every symbol of `market` that traded in the window, sorted.
    - window [start, end): `end` None = the end of the bar holding the newest stored tick of those symbols (so the
      last bar is whole and a lookback of whole bars covers exactly that many bars); `start` may be a timedelta,
      counted back from that end.
    - `frame.attrs` holds the resolved window: `market`, `timeframe`, `start`, `end` (datetimes, UTC; `end` None
      when the market has no ticks of those symbols at all).
    """
    step = tf_seconds(timeframe) * 1_000_000
    wanted = list(dict.fromkeys(s.upper() for s in symbols)) if symbols is not None else None
    with read_connection(path) as con:
        if end is None:
            newest = _newest_tick(con, market, wanted)
            if newest is not None:
                newest_us = int(pd.Timestamp(newest).value // 1000)
                end = pd.Timestamp((newest_us // step + 1) * step, unit="us", tz="UTC").to_pydatetime()
        end = _utc(end)
        if isinstance(start, dt.timedelta):
            start = end - start if end is not None else None
        start = _utc(start)
        if end is None or start is None:
            rows = None
        else:
            rows = con.execute(CLOSES_SQL, {"step": step, "market": market, "symbols": wanted, "start": start,
                                            "end": end}).fetchnumpy()
    names = wanted if wanted is not None else sorted(set(rows["symbol"].tolist())) if rows is not None else []
    if rows is None or len(rows["symbol"]) == 0:
        values = np.empty((0, len(names)))
        index = pd.DatetimeIndex([], tz="UTC", name="ts")
    else:
        buckets, row_of = np.unique(np.asarray(rows["bucket_us"], dtype="int64"), return_inverse=True)
        col_pos = {s: i for i, s in enumerate(names)}
        col_of = np.fromiter((col_pos[s] for s in rows["symbol"].tolist()), dtype=np.intp, count=len(row_of))
        values = np.full((len(buckets), len(names)), np.nan)
        values[row_of, col_of] = np.asarray(rows["close"], dtype="float64")
        index = pd.DatetimeIndex(pd.to_datetime(buckets, unit="us", utc=True), name="ts")
    frame = pd.DataFrame(values, index=index, columns=pd.Index(names, name="symbol"))
    frame.attrs.update(market=market, timeframe=timeframe, start=start, end=end)
    return frame


def stored_symbols(market: str | None = None, path: PathLike = None) -> pd.DataFrame:
    """Every (market, symbol) with at least one stored tick, hot or archived, sorted: a cheap catalog
    (`symbol_catalog`, else the hot table's symbol column, and `archive_files`; no Parquet read), for validating
    user input."""
    from tickstore.archive import archived_summary

    with read_connection(path) as con:
        table = ("(SELECT market, symbol FROM symbol_catalog WHERE ticks > 0)" if symbol_catalog.consistent(con)
                 else "main.ticks")
        hot = con.execute(f"SELECT DISTINCT market, symbol FROM {table} WHERE $market IS NULL OR market = $market",
                          {"market": market}).fetchall()
        archived = [(m, s) for m, s, *_ in archived_summary(con) if market is None or m == market]
    return pd.DataFrame(sorted(set(hot) | set(archived)), columns=["market", "symbol"])


# --------------------------------------------------------------------------------------------- mark price, funding

MARK_FIELDS = ["mark_price", "index_price", "funding_rate", "next_funding_time"]
FUNDING_FIELDS = ["funding_rate", "mark_price"]

_MARKS_SQL = """SELECT ts, mark_price, index_price, funding_rate, next_funding_time FROM main.mark_prices
                WHERE market = $market AND symbol = $symbol AND ts >= $start AND ts < $end ORDER BY ts"""
# last value per bar; arg_max skips NULLs, so a bar's index price / funding rate is its last one that was sent
_MARKS_BARS_SQL = """SELECT (epoch_us(ts) // $step) * $step AS bucket_us, arg_max(mark_price, ts) AS mark_price,
                            arg_max(index_price, ts) AS index_price, arg_max(funding_rate, ts) AS funding_rate,
                            arg_max(next_funding_time, ts) AS next_funding_time
                     FROM main.mark_prices
                     WHERE market = $market AND symbol = $symbol AND ts >= $start AND ts < $end
                     GROUP BY ALL ORDER BY bucket_us"""
_FUNDING_SQL = """SELECT funding_time, funding_rate, mark_price FROM main.funding_rates
                  WHERE market = $market AND symbol = $symbol AND funding_time >= $start AND funding_time < $end
                  ORDER BY funding_time"""
_FAR_PAST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_FAR_FUTURE = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


def _window(market: str, symbol: str, start, end) -> dict:
    return {"market": market, "symbol": symbol.upper(), "start": _utc(start) or _FAR_PAST, "end": _utc(end) or _FAR_FUTURE}


def _has_table(con, name: str) -> bool:
    # checked first: a missing table would otherwise be looked up among Python variables (DuckDB's replacement
    # scan finds this module's functions of the same name)
    return con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = $t",
                       {"t": name}).fetchone()[0] > 0


def _empty(index_name: str, columns: list[str], times: Sequence[str]) -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype="datetime64[us, UTC]" if c in times else "float64") for c in columns})
    df.index = pd.DatetimeIndex([], tz="UTC", name=index_name)
    return df


def mark_prices(market: str, symbol: str, start: dt.datetime | None, end: dt.datetime | None = None,
                timeframe: str | None = None, path: PathLike = None) -> pd.DataFrame:
    """Stored mark-price updates of one perpetual in [start, end): a frame indexed by the event time `ts` (UTC,
    ascending) with MARK_FIELDS (`next_funding_time` a UTC timestamp, NaT/NaN where the stream sent none).

    `timeframe` ('1s', '1m', '5m', ...) resamples to bars: the index is the bar start and each column holds the
    bar's last value (its last non-null one); bars without an update are not returned. A file written before these
    tables existed reads as empty."""
    params = _window(market, symbol, start, end)
    if timeframe is not None:
        params["step"] = tf_seconds(timeframe) * 1_000_000
    with read_connection(path) as con:
        if not _has_table(con, "mark_prices"):
            return _empty("ts", MARK_FIELDS, ["next_funding_time"])
        df = con.execute(_MARKS_BARS_SQL if timeframe is not None else _MARKS_SQL, params).df()
    if timeframe is not None:
        df.insert(0, "ts", pd.to_datetime(df.pop("bucket_us"), unit="us", utc=True))
    df = _utc_frame(df, ["ts", "next_funding_time"]).set_index("ts")
    return df[MARK_FIELDS].astype({c: "float64" for c in MARK_FIELDS[:3]})


def funding_rates(market: str, symbol: str, start: dt.datetime | None, end: dt.datetime | None = None,
                  path: PathLike = None) -> pd.DataFrame:
    """Settled funding rates of one perpetual with funding time in [start, end): a frame indexed by `funding_time`
    (UTC, ascending) with `funding_rate` (fraction per period; positive: longs pay shorts) and `mark_price` (NaN
    where the exchange gave none). A file written before these tables existed reads as empty."""
    with read_connection(path) as con:
        if not _has_table(con, "funding_rates"):
            return _empty("funding_time", FUNDING_FIELDS, [])
        df = con.execute(_FUNDING_SQL, _window(market, symbol, start, end)).df()
    df = _utc_frame(df, ["funding_time"]).set_index("funding_time")
    return df[FUNDING_FIELDS].astype("float64")

def closes_wide_markets(markets: Sequence[str], symbols: dict[str, Sequence[str] | None], timeframe: str,
                        start: dt.datetime | dt.timedelta, end: dt.datetime | None = None,
                        path: PathLike = None) -> pd.DataFrame:
    """`closes_wide` over several markets on one window: columns `market:SYMBOL` (bare symbols when only one
    market is given, exactly `closes_wide`'s frame). `symbols[market]`: that market's symbols, None = every one
    that traded. `end` None = the end of the bar holding the newest tick of all the markets' chosen symbols, so
    the legs share one window; attrs as `closes_wide` (`market` = the markets joined by commas)."""
    markets = list(dict.fromkeys(markets))
    if len(markets) == 1:
        return closes_wide(markets[0], symbols.get(markets[0]), timeframe, start, end, path)
    frames = {m: closes_wide(m, symbols.get(m), timeframe, start, end, path) for m in markets}
    if end is None:
        ends = [f.attrs["end"] for f in frames.values() if f.attrs.get("end") is not None]
        common = max(ends) if ends else None
        if common is not None:
            frames = {m: f if f.attrs.get("end") == common else
                      closes_wide(m, symbols.get(m), timeframe, start, common, path) for m, f in frames.items()}
    parts = [f.rename(columns=lambda c, m=m: f"{m}:{c}") for m, f in frames.items()]
    out = pd.concat(parts, axis=1).sort_index() if parts else pd.DataFrame()
    out.index.name = "ts"
    out.columns.name = "symbol"
    firsts = [f.attrs for f in frames.values() if f.attrs.get("end") is not None]
    out.attrs.update(market=",".join(markets), timeframe=timeframe,
                     start=min((a["start"] for a in firsts), default=None),
                     end=max((a["end"] for a in firsts), default=None))
    return out


def file_kind(path: PathLike = None) -> str | None:
    """What the file holds: 'live', 'demo' (simulated ticks), or None for a file no ingestor has claimed yet."""
    with read_connection(path) as con:
        if not _has_table(con, "tickdesk_meta"):
            return None
        rows = con.execute("SELECT value FROM tickdesk_meta WHERE key = 'data'").fetchall()
        return rows[0][0] if rows else None
