"""dashboard.bar_cache: kept closed bars + a re-read of the newest ticks equal a full read of the window, through new
ticks, boundary crossings, a REST backfill of old ticks after a gap, re-sent duplicates and direct inserts."""
from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from dashboard.bar_cache import BarCache, split
from tickstore import queries
from tickstore.connection import init_db
from tickstore.writer import TickBuffer, TickWriter

T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)  # fixed: nothing here depends on the wall clock
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def _us(t: dt.datetime) -> int:
    return int(t.timestamp() * 1_000_000)


class Feed:
    """Ticks of SYMBOLS written through the real writer (so symbol_catalog is kept as in production)."""

    def __init__(self, path, seed: int = 5) -> None:
        self.path = path
        self.rng = np.random.default_rng(seed)
        self.next_id = {s: 1_000 for s in SYMBOLS}
        init_db(path)
        self.writer = TickWriter(path, TickBuffer())

    def rows(self, symbol: str, t_from: dt.datetime, t_to: dt.datetime, rate: float, ids: range | None = None):
        n = max(int((t_to - t_from).total_seconds() * rate), 1) if ids is None else len(ids)
        ts = np.sort(self.rng.integers(_us(t_from), _us(t_to), n))
        if ids is None:
            ids = range(self.next_id[symbol], self.next_id[symbol] + n)
            self.next_id[symbol] += n
        price = 100.0 * np.exp(np.cumsum(self.rng.normal(0, 1e-4, n)))
        qty = np.round(self.rng.uniform(0.001, 2.0, n), 6)
        return [("spot", symbol, int(i), int(t), float(p), float(q), bool(i % 2), int(t) + 40_000, "ws")
                for i, t, p, q in zip(ids, ts, price, qty)]

    def write(self, rows) -> None:
        self.writer.buffer.extend(rows)
        self.writer.flush_once()

    def live(self, t_from: dt.datetime, t_to: dt.datetime, rate: float = 2.0) -> None:
        self.write([r for s in SYMBOLS for r in self.rows(s, t_from, t_to, rate)])


def full(path, timeframe: str, start: dt.datetime) -> dict[str, pd.DataFrame]:
    return split(queries.bars("spot", SYMBOLS, timeframe, start, path=path))


def assert_same(got: dict[str, pd.DataFrame], ref: dict[str, pd.DataFrame]) -> None:
    assert sorted(got) == sorted(ref)
    for sym in ref:
        assert len(ref[sym]) > 0
        pd.testing.assert_frame_equal(got[sym], ref[sym], check_exact=True, check_freq=False)


TIMEFRAMES = ("1s", "1m", "5m")


def check(cache: BarCache, path, start: dt.datetime, read: str, timeframes=TIMEFRAMES
          ) -> dict[str, dict[str, pd.DataFrame]]:
    """Every timeframe's cached bars equal a full read; each was served by a `read` ('tail' | 'full') SQL read."""
    out = {}
    for tf in timeframes:
        got = cache.bars(str(path), "spot", SYMBOLS, tf, start)
        assert got.read == read, (tf, got.summary())
        assert got.since == start or read == "tail"
        out[tf] = full(path, tf, start)
        assert_same(got.frames, out[tf])
    return out


def test_kept_bars_plus_tail_equal_a_full_read_through_new_late_and_backfilled_ticks(tmp_path):
    path = tmp_path / "ticks.duckdb"
    feed = Feed(path)
    # an hour of ticks with a 10-minute hole in one symbol (a connection drop: its ids go on after the hole)
    feed.live(T0, T0 + dt.timedelta(minutes=20))
    hole_ids = range(feed.next_id["ETHUSDT"], feed.next_id["ETHUSDT"] + 300)
    feed.next_id["ETHUSDT"] += 300
    feed.write(feed.rows("BTCUSDT", T0 + dt.timedelta(minutes=20), T0 + dt.timedelta(minutes=30), 2.0)
               + feed.rows("SOLUSDT", T0 + dt.timedelta(minutes=20), T0 + dt.timedelta(minutes=30), 2.0))
    feed.live(T0 + dt.timedelta(minutes=30), T0 + dt.timedelta(minutes=60))

    cache = BarCache()
    start = T0 + dt.timedelta(minutes=5)
    check(cache, path, start, "full")

    # new ticks arrive, refresh after refresh, across several boundaries of the kept bars (1 min, 5 min steps)
    t = T0 + dt.timedelta(minutes=60)
    for step_s in (7, 50, 130, 400):
        feed.live(t, t + dt.timedelta(seconds=step_s))
        t += dt.timedelta(seconds=step_s)
        check(cache, path, start, "tail")

    # ticks a few seconds late (a lagging connection): inside the re-read tail, no full read
    feed.write(feed.rows("SOLUSDT", t - dt.timedelta(seconds=20), t - dt.timedelta(seconds=10), 0.5))
    before = check(cache, path, start, "tail")

    # the REST backfill of the hole writes ticks 40 minutes old: the kept bars are not served, the window is re-read
    backfill = feed.rows("ETHUSDT", T0 + dt.timedelta(minutes=20), T0 + dt.timedelta(minutes=30), 0, ids=hole_ids)
    feed.write(backfill)
    after = check(cache, path, start, "full")
    for tf in TIMEFRAMES:
        assert after[tf]["ETHUSDT"]["trades"].sum() == before[tf]["ETHUSDT"]["trades"].sum() + 300

    # the same trades re-sent (a reconnect's overlap): nothing stored, the kept bars stay valid
    feed.write(backfill)
    check(cache, path, start, "tail")

    # the window moves on (a later start): still the kept bars, cut at the new start
    check(cache, path, start + dt.timedelta(minutes=15), "tail")
    # a window shorter than the re-read tail (it starts after the kept bars end)
    check(cache, path, t - dt.timedelta(seconds=t.second + 60), "tail", ("1s", "1m"))
    # a longer lookback than what is kept: read in full
    check(cache, path, T0, "full")


def test_a_direct_insert_that_bypasses_the_catalogue_is_never_hidden(tmp_path):
    path = tmp_path / "ticks.duckdb"
    feed = Feed(path)
    feed.live(T0, T0 + dt.timedelta(minutes=30))
    cache = BarCache()
    cache.bars(str(path), "spot", SYMBOLS, "1m", T0)
    con = duckdb.connect(str(path))
    try:  # a tool writing old ticks straight into the table: symbol_catalog no longer adds up
        con.execute("""INSERT INTO ticks VALUES ('spot', 'BTCUSDT', 1, $ts, 50.0, 3.0, TRUE, NULL, 'tool')""",
                    {"ts": T0 + dt.timedelta(minutes=3, seconds=1)})
    finally:
        con.close()
    got = cache.bars(str(path), "spot", SYMBOLS, "1m", T0)
    assert got.read == "full"
    ref = full(path, "1m", T0)
    assert_same(got.frames, ref)
    assert ref["BTCUSDT"].loc[pd.Timestamp(T0 + dt.timedelta(minutes=3)), "low"] == 50.0
    assert cache.bars(str(path), "spot", SYMBOLS, "1m", T0).read == "full"  # until a writer rebuilds the catalogue


def test_bars_read_counts_ticks_before_a_boundary(tmp_path):
    path = tmp_path / "ticks.duckdb"
    feed = Feed(path)
    feed.live(T0, T0 + dt.timedelta(minutes=10))
    r = queries.bars_read("spot", SYMBOLS, "1m", T0 + dt.timedelta(minutes=4), path=path)
    con = duckdb.connect(str(path), read_only=True)
    try:
        n_all, n_before = con.execute("SELECT count(*), count(*) FILTER (ts < $b) FROM ticks",
                                      {"b": T0 + dt.timedelta(minutes=6)}).fetchone()
    finally:
        con.close()
    assert r.stored == n_all
    assert r.before(T0 + dt.timedelta(minutes=6)) == n_before
    with pytest.raises(ValueError):
        r.before(T0)
    assert "ticks stored" in r.summary()


def test_unaligned_start_and_memory_bound(tmp_path):
    path = tmp_path / "ticks.duckdb"
    feed = Feed(path)
    feed.live(T0, T0 + dt.timedelta(minutes=10))
    cache = BarCache(max_rows=50)
    odd = T0 + dt.timedelta(seconds=90)  # not a 1m bar start: its first bar is partial, never kept
    got = cache.bars(str(path), "spot", SYMBOLS, "1m", odd)
    assert got.read == "full"
    assert_same(got.frames, full(path, "1m", odd))
    for tf in ("1s", "1m"):
        cache.bars(str(path), "spot", SYMBOLS, tf, T0)
    assert len(cache._entries) == 1  # over the bound: only the most recently read entry stays


def test_the_24h_summary_from_kept_minute_bars_equals_the_tick_query(tmp_path):
    """dashboard.data's summary rows (kept 1m bars) equal `queries.latest` (a scan of the window's ticks) when the
    window starts on a whole minute, before and after new ticks."""
    from dashboard.data import _summary_frame

    path = tmp_path / "ticks.duckdb"
    feed = Feed(path)
    cache = BarCache()
    feed.live(T0, T0 + dt.timedelta(hours=3), rate=0.5)
    for more in (0, 1):
        if more:
            feed.live(T0 + dt.timedelta(hours=3), T0 + dt.timedelta(hours=3, minutes=4), rate=0.5)
            newest = T0 + dt.timedelta(hours=3, minutes=5)
        else:
            newest = T0 + dt.timedelta(hours=3)
        # the newest tick on a whole minute: both windows start at newest - 2 h exactly
        feed.write([("spot", "BTCUSDT", feed.next_id["BTCUSDT"], _us(newest), 101.0, 0.5, True, None, "ws")])
        feed.next_id["BTCUSDT"] += 1
        window = dt.timedelta(hours=2)
        read = cache.bars(str(path), "spot", SYMBOLS, "1m", newest - window)
        got = _summary_frame(read.frames, "spot", read.last_ts)
        ref = queries.latest("spot", window, path=path)
        cols = ["symbol", "last_price", "first_price", "high", "low", "volume", "quote_volume", "trades", "last_ts",
                "change"]
        pd.testing.assert_frame_equal(got[cols].reset_index(drop=True), ref[cols].reset_index(drop=True),
                                      check_dtype=False, rtol=1e-12)
        assert got.loc[got["symbol"] == "BTCUSDT", "last_price"].item() == 101.0


def test_windows_of_different_lengths_on_the_same_bars_keep_their_own_entries(tmp_path):
    """A 2 h chart and a 24 h summary on the same 1m bars, read in turn on every refresh: each stays a tail read (a
    shared entry would be cut to the short window and the long one read in full every time)."""
    path = tmp_path / "ticks.duckdb"
    feed = Feed(path)
    feed.live(T0, T0 + dt.timedelta(hours=3), rate=0.2)
    cache = BarCache()
    t = T0 + dt.timedelta(hours=3)
    for i in range(3):
        if i:
            feed.live(t, t + dt.timedelta(seconds=30), rate=0.2)
            t += dt.timedelta(seconds=30)
        short = cache.bars(str(path), "spot", SYMBOLS, "1m", T0 + dt.timedelta(hours=1), span=7200)
        long = cache.bars(str(path), "spot", SYMBOLS, "1m", T0, span=86_400)
        assert (short.read, long.read) == (("full", "full") if i == 0 else ("tail", "tail"))
        assert_same(long.frames, full(path, "1m", T0))
        assert_same(short.frames, full(path, "1m", T0 + dt.timedelta(hours=1)))
