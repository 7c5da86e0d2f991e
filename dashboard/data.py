"""Cached reads for the pages: the live DuckDB file or an uploaded CSV, behind one `Loaded` result.

Caching: every tickstore query goes through `st.cache_data`, keyed on plain arguments plus a time `bucket`
(`floor(now / refresh)`), so N open tabs with the same view cost one query per refresh interval. Bars go through
`dashboard.bar_cache` too: a refresh aggregates only the newest ticks and reuses the closed bars of earlier reads.
Lock conflicts: when the ingestor (or an import) holds the file longer than the retry budget, the page gets the
last good result of the same query from this session, marked `stale`, and the page says so in one line.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

import pandas as pd
import streamlit as st

from core import legs as leglib
from dashboard import uploads
from dashboard.bar_cache import BarCache
from dashboard.catalog import CATALOG_COLUMNS, Catalog
from dashboard.settings import Settings
from tickstore import queries
from tickstore.connection import StoreBusy, StoreError, StoreMissing

log = logging.getLogger(__name__)

T = TypeVar("T")
CACHE_TTL_S = 300          # eviction only; freshness comes from the bucket argument
FULL_SCAN_S = 60           # no symbol_catalog: the full scan (every symbol ever stored) runs once a minute ...
RECENT_S = 300             # ... and each refresh only reads the ticks of the last minutes (zone maps skip the rest)
SUMMARY_MIN_S = 15         # the 24 h summary (a day of 1m bars of every symbol) refreshes at most this often
BUSY_BACKOFF_S = 1.0       # after a lock timeout, serve stale copies for this long without retrying
LAST_GOOD_SLOTS = 64       # last good results kept per session (the least recently refreshed go first)
_LAST_GOOD = "_tickdesk_last_good"
_BUSY_UNTIL = "_tickdesk_busy_until"


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """A query result. `state`: 'ok' | 'stale' (file locked; last good copy) | 'missing' | 'empty' | 'error'."""

    value: T | None
    state: str
    message: str | None = None
    as_of: dt.datetime | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None and self.state in ("ok", "stale")


def bucket(refresh_s: float) -> int:
    """Cache time bucket: the same for every tab within one refresh interval."""
    return int(time.time() // max(refresh_s, 0.5))


# ---------------------------------------------------------------- cached tickstore reads (plain arguments only)
_cache = st.cache_data(ttl=CACHE_TTL_S, max_entries=512, show_spinner=False)


@_cache
def _symbols(path: str, bucket: int) -> pd.DataFrame:
    return queries.symbols(path)


@_cache
def _symbols_since(path: str, since: dt.datetime, bucket: int) -> pd.DataFrame:
    return queries.symbols_since(since, path)


@st.cache_resource(show_spinner=False)
def _bar_cache() -> BarCache:
    """The server's incremental bars (closed bars kept, the newest re-read each refresh; dashboard.bar_cache)."""
    return BarCache()


@_cache
def _bars(path: str, market: str, symbols: tuple[str, ...], timeframe: str, start: dt.datetime, bucket: int,
          lookback_s: int = 0) -> dict[str, pd.DataFrame]:
    # per refresh bucket (every tab of the view shares it); per symbol: tabs need not split the long frame again
    return _bar_cache().bars(path, market, symbols, timeframe, start, span=("lookback", lookback_s)).frames


@_cache
def _status(path: str, bucket: int) -> pd.DataFrame:
    return queries.status(path)


@_cache
def _events(path: str, limit: int, bucket: int) -> pd.DataFrame:
    return queries.events(limit, path=path)


@_cache
def _tick_rate(path: str, market: str, since: dt.datetime, step_s: int, bucket: int) -> pd.DataFrame:
    return queries.tick_rate(market, since, step_s, path=path)


@_cache
def _marks(path: str, market: str, symbol: str, timeframe: str, start: dt.datetime, bucket: int) -> pd.DataFrame:
    return queries.mark_prices(market, symbol, start, timeframe=timeframe, path=path)


@_cache
def _funding(path: str, market: str, symbol: str, start: dt.datetime, bucket: int) -> pd.DataFrame:
    return queries.funding_rates(market, symbol, start, path=path)


@_cache
def _file_kind(path: str, bucket: int) -> str:
    return queries.file_kind(path) or ""


def guarded(slot: tuple, fn: Callable[..., T], *args: Any) -> Loaded[T]:
    """Run a cached query `fn(*args)` as a `Loaded`: 'missing' / 'error' with a sentence instead of an exception,
    and on a lock timeout this session's last good result for `slot` (any hashable key naming the query)."""
    last_good: dict = st.session_state.setdefault(_LAST_GOOD, {})
    now = dt.datetime.now(dt.UTC)
    if st.session_state.get(_BUSY_UNTIL, 0.0) > time.monotonic():
        return _stale(slot, last_good)
    try:
        value = fn(*args)
    except StoreBusy as exc:
        log.warning("%s query: %s; serving the last good copy for %.1f s", slot[0], exc, BUSY_BACKOFF_S)
        st.session_state[_BUSY_UNTIL] = time.monotonic() + BUSY_BACKOFF_S
        return _stale(slot, last_good)
    except StoreMissing as exc:
        return Loaded(None, "missing", str(exc))
    except StoreError as exc:
        return Loaded(None, "error", str(exc))
    except Exception as exc:  # e.g. a file that is not a tickdesk file: explain, never a traceback on the page
        log.exception("query %s failed", slot[0])
        return Loaded(None, "error", f"could not read the tick file: {exc}")
    last_good.pop(slot, None)
    last_good[slot] = (value, now)
    while len(last_good) > LAST_GOOD_SLOTS:
        del last_good[next(iter(last_good))]
    return Loaded(value, "ok", as_of=now)


def _stale(slot: tuple, last_good: dict) -> Loaded:
    if slot in last_good:
        value, as_of = last_good[slot]
        return Loaded(value, "stale", f"The ingestor is holding the file lock; showing data as of "
                                      f"{as_of:%H:%M:%S} UTC.", as_of)
    return Loaded(None, "stale", "The ingestor is holding the file lock; data will appear on the next refresh.")


# ---------------------------------------------------------------- catalog (what the source holds)
def catalog(db_path: str, source: str, refresh_s: float = 2.0) -> Catalog:
    """Markets and symbols of the live file (or of the session's upload), with a plain-words state."""
    if source == "upload":
        ds = uploads.current()
        if ds is None:
            return Catalog.empty("no-upload", "No file uploaded yet. Upload an OHLC or tick CSV on the **Data** "
                                              "page, or switch the source back to *live file*.")
        return Catalog(ds.catalog(), "ok")
    res = guarded(("symbols", db_path), _symbols, db_path, bucket(FULL_SCAN_S))
    if res.value is not None and (res.value.empty or res.value.attrs.get("source") == "catalog"):
        # nothing stored at the last look, or read from the writer's catalogue (a few hundred rows): read it now
        res = guarded(("symbols", db_path), _symbols, db_path, bucket(refresh_s))
    if res.value is not None and not res.value.empty and res.value.attrs.get("source") != "catalog":
        res = _with_recent(db_path, res, refresh_s)
    if res.value is None:
        if res.state == "missing":
            return Catalog.empty("missing", f"No tick file at `{db_path}` yet. Start the ingestor "
                                            "(`make demo` or `make run`) — this page picks the data up by itself.")
        return Catalog.empty(res.state, res.message or "The tick file cannot be read.")
    frame = res.value[CATALOG_COLUMNS] if not res.value.empty else res.value
    if frame.empty:
        return Catalog(frame, "empty", f"The tick file `{db_path}` has no ticks yet. The ingestor is probably still "
                                       "connecting or backfilling; this page refreshes by itself.")
    return Catalog(frame, res.state, res.message)


def _with_recent(db_path: str, full: Loaded, refresh_s: float) -> Loaded:
    """Bring the (minute-old) full catalog up to date with the ticks stored since shortly before its newest one."""
    since = (pd.Timestamp(full.value["last_ts"].max()) - pd.Timedelta(seconds=RECENT_S)).floor("60s")
    recent = guarded(("symbols_since", db_path), _symbols_since, db_path, since.to_pydatetime(), bucket(refresh_s))
    if recent.value is None or recent.value.empty:
        return full
    merged = pd.concat([full.value[CATALOG_COLUMNS], recent.value[CATALOG_COLUMNS]], ignore_index=True)
    merged = merged.sort_values("last_ts", kind="stable")
    last = merged.groupby(["market", "symbol"], sort=True).agg(
        ticks=("ticks", "max"), first_ts=("first_ts", "min"), last_ts=("last_ts", "last"),
        last_price=("last_price", "last")).reset_index()
    state = "stale" if "stale" in (full.state, recent.state) else "ok"
    return Loaded(last[CATALOG_COLUMNS], state, recent.message or full.message, recent.as_of)


def current_catalog(s: Settings) -> Catalog:
    return catalog(s.db_path, s.source, s.refresh_s)


# ---------------------------------------------------------------- bars
def window_start(s: Settings, cat: Catalog, markets: tuple[str, ...] | None = None) -> dt.datetime:
    """Start of the lookback window: `lookback` before the newest tick of the market (of the newest of `markets`
    when given: a pair's legs), floored to the timeframe."""
    lasts = [t for m in (markets or (s.market,)) if (t := cat.last_ts(m)) is not None]
    anchor = max(lasts) if lasts else dt.datetime.now(dt.UTC)
    start = pd.Timestamp(anchor) - pd.Timedelta(seconds=s.lookback_s)
    return start.floor(f"{s.tf_seconds}s").to_pydatetime()


def bars(s: Settings, symbols: tuple[str, ...] | list[str], cat: Catalog | None = None
         ) -> Loaded[dict[str, pd.DataFrame]]:
    """Bars per symbol over the lookback window (index = bar start UTC; columns open..vwap)."""
    symbols = tuple(dict.fromkeys(x for x in symbols if x))
    cat = cat or current_catalog(s)
    if not cat.usable:
        return Loaded(None, cat.state, cat.message)
    start = window_start(s, cat)
    if s.source == "upload":
        ds = uploads.current()
        frames, note = ds.bars(s.timeframe)
        out = {sym: frames[sym].loc[frames[sym].index >= start] if sym in frames else uploads.empty_bars()
               for sym in symbols}
        return Loaded(out, "ok", note)
    res = guarded(("bars", s.db_path, s.market, symbols, s.timeframe, s.lookback_s), _bars,
                   s.db_path, s.market, symbols, s.timeframe, start, bucket(s.refresh_s), s.lookback_s)
    if res.value is None:
        return Loaded(None, res.state, res.message)
    out = {sym: res.value[sym] if sym in res.value else uploads.empty_bars() for sym in symbols}
    return Loaded(out, res.state, res.message, res.as_of)


def leg_bars(s: Settings, legs: tuple[leglib.Leg, ...] | list[leglib.Leg], cat: Catalog | None = None,
             labels: list[str] | None = None) -> Loaded[dict[str, pd.DataFrame]]:
    """Bars of legs that may come from different markets, keyed by `labels` (default `core.legs.labels`: bare
    symbols when one market, else market:SYMBOL), over one lookback window ending at the newest tick of the
    legs' markets. One cached query per market."""
    legs = list(dict.fromkeys(legs))
    labels = labels or leglib.labels(legs)
    cat = cat or current_catalog(s)
    if not cat.usable:
        return Loaded(None, cat.state, cat.message)
    if s.source == "upload":  # an upload is one data set: legs are its symbols
        res = bars(s, [leg.symbol for leg in legs], cat)
        if res.value is None:
            return res
        return Loaded({lab: res.value[leg.symbol] for lab, leg in zip(labels, legs)}, res.state, res.message)
    markets = tuple(dict.fromkeys(leg.market for leg in legs))
    start = window_start(s, cat, markets)
    out: dict[str, pd.DataFrame] = {}
    states, messages, as_of = [], [], None
    for market in markets:
        syms = tuple(leg.symbol for leg in legs if leg.market == market)
        res = guarded(("bars", s.db_path, market, syms, s.timeframe, s.lookback_s), _bars,
                      s.db_path, market, syms, s.timeframe, start, bucket(s.refresh_s), s.lookback_s)
        if res.value is None:
            return Loaded(None, res.state, res.message)
        states.append(res.state)
        messages.append(res.message)
        as_of = res.as_of if as_of is None or (res.as_of and res.as_of < as_of) else as_of
        got = res.value
        for lab, leg in zip(labels, legs):
            if leg.market == market:
                out[lab] = got[leg.symbol] if leg.symbol in got else uploads.empty_bars()
    state = "stale" if "stale" in states else "ok"
    return Loaded({lab: out[lab] for lab in labels}, state, next((m for m in messages if m), None), as_of)


def pair_bars(s: Settings, cat: Catalog | None = None, universe: bool = False) -> Loaded[dict[str, pd.DataFrame]]:
    """Bars of the sidebar pair's legs keyed by `s.pair`'s names; with `universe`, also every symbol of the pair's
    market (the sidebar market when the legs' markets differ), for correlation heat maps."""
    y, x = s.legs
    legs = [y, x]
    if universe:
        cat = cat or current_catalog(s)
        market = y.market if y.market == x.market else s.market
        legs = [leglib.Leg(market, sym) for sym in cat.symbols_of(market)] + legs
    return leg_bars(s, legs, cat)


def legs_where(s: Settings) -> str:
    """'the spot data' / 'the spot and usdm data': where the pair's bars come from, for messages."""
    markets = list(dict.fromkeys(leg.market for leg in (s.legs or ()))) or [s.market]
    return f"the {' and '.join(markets)} data"


def view_key(s: Settings, cat: Catalog) -> tuple:
    """Cache key of everything computed from the current bars: same for every tab with the same view and refresh."""
    origin = uploads.current().digest if s.source == "upload" and uploads.current() else s.db_path
    legs = s.legs or ()
    return (s.source, origin, s.market, s.timeframe,
            window_start(s, cat, tuple(dict.fromkeys([s.market, *(leg.market for leg in legs)]))),
            bucket(s.refresh_s), tuple(leg.key for leg in legs))


def closes(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Close prices side by side on the union of bar starts (rows where any symbol traded)."""
    if not frames:
        return pd.DataFrame()
    return pd.DataFrame({sym: f["close"] for sym, f in frames.items() if len(f)})


# ---------------------------------------------------------------- perpetuals: mark prices and funding
PERP_MARKET = "usdm"


def marks(s: Settings, symbol: str, cat: Catalog | None = None, markets: tuple[str, ...] = ("spot", PERP_MARKET)
          ) -> Loaded[pd.DataFrame]:
    """Mark-price updates of the perpetual `symbol` as `s.timeframe` bars (each bar's last values) over the lookback
    window of `markets` (the one `leg_bars` uses for the same legs)."""
    cat = cat or current_catalog(s)
    start = window_start(s, cat, tuple(m for m in markets if cat.last_ts(m) is not None) or None)
    return guarded(("marks", s.db_path, symbol, s.timeframe, s.lookback_s), _marks, s.db_path, PERP_MARKET, symbol,
                   s.timeframe, start, bucket(s.refresh_s))


def basis_bars(s: Settings, symbol: str, cat: Catalog | None = None) -> Loaded[dict[str, pd.DataFrame]]:
    """Bars of the perpetual and (when stored) the spot `symbol`, keyed "perp" and "spot", on one window."""
    cat = cat or current_catalog(s)
    legs = [leglib.Leg(PERP_MARKET, symbol)]
    if symbol in cat.symbols_of("spot"):
        legs.append(leglib.Leg("spot", symbol))
    return leg_bars(s, legs, cat, labels=["perp", "spot"][:len(legs)])


def funding_history(s: Settings, symbol: str, since: dt.datetime, refresh_s: float = 30.0) -> Loaded[pd.DataFrame]:
    """Settled funding rates of the perpetual `symbol` since `since` (refreshed at most every `refresh_s`: a new
    row comes once per funding period)."""
    return guarded(("funding", s.db_path, symbol, since), _funding, s.db_path, PERP_MARKET, symbol, since,
                   bucket(max(s.refresh_s, refresh_s)))


# ---------------------------------------------------------------- tables
def summary(s: Settings, cat: Catalog | None = None, window_s: int = 86_400) -> Loaded[pd.DataFrame]:
    """Last price, change, high/low, volume, trades per symbol of the market over `window_s` before its last tick
    (from the whole minute holding the window's start on: `queries.latest`'s columns, from kept 1m bars)."""
    cat = cat or current_catalog(s)
    if not cat.usable:
        return Loaded(None, cat.state, cat.message)
    if s.source == "upload":
        return Loaded(uploads.current().summary(window_s), "ok")
    anchor = cat.last_ts(s.market)
    if anchor is None:
        return Loaded(_summary_frame({}, s.market), "ok")
    start = (pd.Timestamp(anchor) - pd.Timedelta(seconds=window_s)).floor("60s")  # SUMMARY_TF bars
    res = guarded(("summary", s.db_path, s.market, window_s), _summary, s.db_path, s.market,
                  cat.symbols_of(s.market), start.to_pydatetime(), bucket(max(s.refresh_s, SUMMARY_MIN_S)), window_s)
    return res


SUMMARY_TF = "1m"
SUMMARY_COLUMNS = ["market", "symbol", "last_price", "first_price", "high", "low", "volume", "quote_volume", "trades",
                   "last_ts", "change"]


@_cache
def _summary(path: str, market: str, symbols: tuple[str, ...], start: dt.datetime, bucket: int, window_s: int
             ) -> pd.DataFrame:
    # from the kept 1m bars (one short read of the newest ticks per bucket), not a scan of a day of ticks; only this
    # small frame is pickled by the cache
    got = _bar_cache().bars(path, market, symbols, SUMMARY_TF, start, span=("summary", window_s))
    return _summary_frame(got.frames, market, got.last_ts)


def _summary_frame(frames: dict[str, pd.DataFrame], market: str, last_ts: dict | None = None) -> pd.DataFrame:
    """One row per symbol with bars: `queries.latest`'s columns over the bars' span. `last_ts`: each symbol's newest
    trade time read with the bars (else the last bar's start)."""
    last_ts = last_ts or {}
    rows = [(market, sym, f["close"].iat[-1], f["open"].iat[0], f["high"].max(), f["low"].min(), f["volume"].sum(),
             f["quote_volume"].sum(), int(f["trades"].sum()), last_ts.get(sym, f.index[-1]))
            for sym, f in sorted(frames.items()) if len(f)]
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS[:-1])
    out["last_ts"] = pd.to_datetime(out["last_ts"], utc=True)
    out["change"] = out["last_price"] / out["first_price"] - 1.0
    return out


def status(db_path: str, refresh_s: float) -> Loaded[pd.DataFrame]:
    return guarded(("status", db_path), _status, db_path, bucket(refresh_s))


def events(db_path: str, refresh_s: float, limit: int = 50) -> Loaded[pd.DataFrame]:
    return guarded(("events", db_path, limit), _events, db_path, limit, bucket(refresh_s))


def tick_rate(db_path: str, market: str, refresh_s: float, window_s: int = 900, step_s: int = 10
              ) -> Loaded[pd.DataFrame]:
    """Ticks per `step_s` bucket and symbol over the last `window_s` of wall-clock time."""
    since = pd.Timestamp.now(tz="UTC").floor(f"{step_s}s") - pd.Timedelta(seconds=window_s)
    return guarded(("tick_rate", db_path, market, window_s, step_s), _tick_rate, db_path, market,
                    since.to_pydatetime(), step_s, bucket(refresh_s))


def file_kind(db_path: str) -> str | None:
    """'live', 'demo' (simulated ticks), '' (no ingestor has claimed the file yet), None when it cannot be read."""
    return guarded(("file_kind", db_path), _file_kind, db_path, bucket(FULL_SCAN_S)).value


# ---------------------------------------------------------------- downloads (not cached: run on click)
def ticks(db_path: str, market: str, symbol: str, start: dt.datetime, end: dt.datetime, limit: int
          ) -> Loaded[pd.DataFrame]:
    """Raw ticks for a CSV download (not cached, no last-good copy: runs on click); state 'ok', or 'stale' /
    'missing' / 'error' with a sentence and no value."""
    try:
        return Loaded(queries.ticks(market, symbol, start, end, limit=limit, path=db_path), "ok",
                      as_of=dt.datetime.now(dt.UTC))
    except StoreBusy:
        return Loaded(None, "stale", "the ingestor is holding the file lock")
    except StoreMissing as exc:
        return Loaded(None, "missing", str(exc))
    except StoreError as exc:
        return Loaded(None, "error", str(exc))

