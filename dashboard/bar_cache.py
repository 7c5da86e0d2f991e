"""Bars of a lookback window kept between live refreshes: closed history is aggregated once, each refresh reads
only the newest ticks.

An entry per (file, market, symbols, timeframe, window length) keeps the bars before its `boundary` — a bar boundary a little
behind the newest tick — and how many ticks of those symbols the file held before that boundary when they were read.
A refresh re-aggregates only the ticks at or after the boundary, in one connection with the file's current count
of those symbols' ticks (`tickstore.queries.bars_read`). When the count of ticks older than the boundary is
unchanged, nothing older arrived or left since the kept bars were read, and kept + new bars equal a full read of
the window; when it changed (a REST backfill after a gap, an import, a flush that waited for the lock, archiving
that changed the totals) the whole window is read again. Files whose catalogue does not add up (written by older
code or a direct insert) are read in full every time.

The entry is held in `st.cache_resource` (one per server process, shared by every session); reads of one key are
serialised so that tabs refreshing together run one query, and the memory held is bounded (`max_rows`).
"""
from __future__ import annotations

import datetime as dt
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from core import timeframes
from tickstore import queries

GRACE_S = 120       # the kept bars end at least this long before the newest tick: ticks a few seconds late are re-read
COARSE_S = 60       # the boundary moves in steps of at least this (whole bars of the timeframe)
MAX_ENTRIES = 24
MAX_ROWS = 2_000_000  # bars kept over all entries (~10 numbers each); the least recently used go first
_LOCKS = 64

Reader = Callable[[str, Sequence[str], str, dt.datetime, str], queries.BarsRead]


@dataclass(frozen=True)
class _Entry:
    start: pd.Timestamp               # first bar start the kept bars cover
    boundary: pd.Timestamp            # bars before it are kept; ticks at or after it are read on every refresh
    before: int                       # ticks of the symbols older than `boundary` when the kept bars were read
    head: dict[str, pd.DataFrame]     # per symbol: bars with start in [start, boundary), indexed by bar start
    rows: int


@dataclass(frozen=True)
class CachedBars:
    """Bars per symbol (index = bar start UTC, columns `queries.BAR_COLUMNS`) over [start, newest]; `read` says what
    the SQL aggregated: 'tail' (ticks from `since` on, joined to kept bars) or 'full' (the whole window)."""

    frames: dict[str, pd.DataFrame]
    read: str
    since: dt.datetime
    last_ts: dict[str, pd.Timestamp] | None = None  # newest trade time per symbol when read (None: unknown)

    def summary(self) -> str:
        n = sum(len(f) for f in self.frames.values())
        return f"{n:,} bars of {len(self.frames)} symbols; SQL read {self.read} from {self.since:%Y-%m-%d %H:%M:%S} UTC"


def split(long: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A long bars frame (`symbol`, `ts`, BAR_COLUMNS) as one frame per symbol indexed by bar start."""
    return {sym: g.drop(columns="symbol").set_index("ts") for sym, g in long.groupby("symbol", sort=False)}


def _before(frame: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    return frame.iloc[:frame.index.searchsorted(t, side="left")]


def _from(frame: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    return frame.iloc[frame.index.searchsorted(t, side="left"):]


class BarCache:
    """Incremental bars per (path, market, symbols, timeframe); thread-safe. `read` is `tickstore.queries.bars_read`
    (a stand-in in tests)."""

    def __init__(self, read: Reader | None = None, grace_s: float = GRACE_S, max_entries: int = MAX_ENTRIES,
                 max_rows: int = MAX_ROWS) -> None:
        self._read = read or (lambda market, symbols, tf, since, path: queries.bars_read(market, symbols, tf, since,
                                                                                         path=path))
        self.grace_s = grace_s
        self.max_entries = max_entries
        self.max_rows = max_rows
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._guard = threading.Lock()
        self._locks = [threading.Lock() for _ in range(_LOCKS)]

    def bars(self, path: str, market: str, symbols: Sequence[str], timeframe: str, start: dt.datetime,
             span: object = None) -> CachedBars:
        """Bars of `symbols` from `start` (a bar start of `timeframe`) to the newest stored tick, equal to
        `queries.bars(market, symbols, timeframe, start)` split per symbol. `span` (e.g. the lookback in seconds)
        keeps windows of different lengths on the same bars apart: each keeps its own entry, so a short window's
        reads never cut the kept bars of a longer one."""
        symbols = tuple(s.upper() for s in symbols)
        step = timeframes.seconds(timeframe)
        start_ts = pd.Timestamp(start).tz_convert("UTC") if pd.Timestamp(start).tzinfo else \
            pd.Timestamp(start).tz_localize("UTC")
        key = (str(path), market, symbols, timeframe, span)
        if start_ts.value % (step * 1_000_000_000):  # not a bar start: the first bar would be partial; read it all
            r = self._read(market, symbols, timeframe, start_ts.to_pydatetime(), path)
            return CachedBars(split(r.bars), "full", r.start, r.last_ts)
        with self._locks[hash(key) % _LOCKS]:
            with self._guard:
                entry = self._entries.get(key)
            if entry is not None and entry.start <= start_ts:
                r = self._read(market, symbols, timeframe, entry.boundary.to_pydatetime(), path)
                if r.stored is not None and r.before(entry.boundary) == entry.before:
                    tail = split(r.bars)
                    frames = {}
                    for sym in symbols:
                        parts = [_from(f, start_ts) for f in (entry.head.get(sym), tail.get(sym)) if f is not None]
                        parts = [f for f in parts if len(f)]
                        if parts:
                            frames[sym] = parts[0] if len(parts) == 1 else pd.concat(parts)
                    self._keep(key, frames, r, start_ts, step)
                    return CachedBars(frames, "tail", r.start, r.last_ts)
            r = self._read(market, symbols, timeframe, start_ts.to_pydatetime(), path)
            frames = split(r.bars)
            self._keep(key, frames, r, start_ts, step)
            return CachedBars(frames, "full", r.start, r.last_ts)

    def _keep(self, key: tuple, frames: dict[str, pd.DataFrame], r: queries.BarsRead, start: pd.Timestamp,
              step: int) -> None:
        """Keep the bars of `frames` before a new boundary: whole coarse steps ending `grace_s` before the newest bar."""
        if r.stored is None:
            with self._guard:
                self._entries.pop(key, None)
            return
        since = pd.Timestamp(r.start)
        boundary = since
        newest = max((f.index[-1] for f in frames.values() if len(f)), default=None)
        if newest is not None:
            coarse_ns = step * math.ceil(COARSE_S / step) * 1_000_000_000
            end_ns = (newest + pd.Timedelta(seconds=step) - pd.Timedelta(seconds=self.grace_s)).value
            boundary = max(since, pd.Timestamp(end_ns // coarse_ns * coarse_ns, tz="UTC"))
        head = {sym: _before(f, boundary) for sym, f in frames.items()}
        head = {sym: f for sym, f in head.items() if len(f)}
        entry = _Entry(start, boundary, r.before(boundary.to_pydatetime()), head, sum(len(f) for f in head.values()))
        with self._guard:
            self._entries.pop(key, None)
            self._entries[key] = entry
            rows = sum(e.rows for e in self._entries.values())
            while len(self._entries) > 1 and (len(self._entries) > self.max_entries or rows > self.max_rows):
                _, old = self._entries.popitem(last=False)
                rows -= old.rows

    def clear(self) -> None:
        with self._guard:
            self._entries.clear()
