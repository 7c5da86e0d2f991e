"""Current value of a rule's metric, computed from recent ticks / bars on an open connection.

Definitions (bars are `timeframe` buckets, epoch-aligned UTC, close = last trade; the newest, still forming
bar is included so values are live):
- `price`: the last trade price (the engine also feeds every new trade of a flush, see engine.py).
- `rsi`: Wilder RSI(`lookback`) of closes over the last 4*lookback+1 buckets (needs lookback+1 bars).
- `zscore`, `spread`: closes of both legs over the last `lookback` buckets, each forward-filled on the union of
  bar times; OLS hedge ratio y = alpha + beta*x on those bars; spread = y - beta*x - alpha (price units);
  zscore = the newest spread's z-score within the window (needs max(10, lookback/2) bars).
- `volume`: sum of traded quantity over the trailing `timeframe` (e.g. the last 5 minutes).
- `trade_rate`: trades per second over the trailing `timeframe`.
- `lag`: seconds since the last received tick (from the ingestor's status; the engine counts from its own start
  while a symbol has had no tick yet).
- `basis`: (perp / spot - 1) x 10_000 in bps from the newest trade of each leg (the usdm leg is the perpetual,
  whichever of the two the rule names first); None while the legs' newest trades are more than
  BASIS_MAX_SKEW_S apart (one leg silent) or older than PRICE_LOOKBACK.
- `funding`: the perpetual's current (estimated) funding rate per period from the newest `mark_prices` row of the
  last FUNDING_MAX_AGE_S (the mark-price stream updates it every second or three).
A pair's second leg is read from `market2` when the rule has one (spot against perpetual), else from `market`.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alerts.rules import AlertRule
from core.timeframes import seconds as tf_seconds
from quantlib.indicators import rsi, zscore
from quantlib.regression import hedge_ratio
from tickstore import alerts_sql
from tickstore.connection import Connection, read_connection

log = logging.getLogger(__name__)

PRICE_LOOKBACK = dt.timedelta(days=1)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
ACTIVITY_REFRESH_FRACTION = 1 / 120  # volume / trade_rate over a window W are re-read at most every W/120
BASIS_MAX_SKEW_S = 60.0              # a basis needs both legs' newest trades within this of each other
FUNDING_MAX_AGE_S = 300.0            # a funding rate older than this (no mark-price frames) is not current


@dataclass(frozen=True)
class Observation:
    """A metric value (None when it cannot be computed yet; `detail` says why)."""

    value: float | None
    observed_at: dt.datetime | None = None
    detail: str = ""


def _utc(ts) -> dt.datetime | None:
    if ts is None or pd.isna(ts):
        return None
    t = pd.Timestamp(ts)
    return (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")).to_pydatetime()


def buckets_needed(rule: AlertRule) -> int:
    """How many `timeframe` buckets (including the forming one) a bar metric reads."""
    if rule.metric == "rsi":
        return 4 * rule.lookback + 1
    return rule.lookback


def min_bars(rule: AlertRule) -> int:
    if rule.metric == "rsi":
        return rule.lookback + 1
    return max(10, rule.lookback // 2)


def pair_spread_zscore(y: np.ndarray, x: np.ndarray) -> tuple[float, float, float, float]:
    """(spread, zscore, beta, alpha) of the newest bar of aligned closes y, x (see module docstring)."""
    from quantlib.pairs import spread  # here: quantlib.pairs pulls scipy (~0.3 s), the ingestor's start needs none

    hr = hedge_ratio(y, x, method="ols")
    s = spread(y, x, hr.beta, hr.alpha)
    z = float(np.asarray(zscore(s, len(s)))[-1])
    return float(np.asarray(s)[-1]), z, float(hr.beta), float(hr.alpha)


def align_pair(y_bucket: np.ndarray, y_close: np.ndarray, x_bucket: np.ndarray, x_close: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(buckets, y, x): both legs' closes on the union of their (sorted) bar times, each forward-filled;
    bars before both legs have traded are dropped."""
    union = np.union1d(y_bucket, x_bucket)
    iy = np.searchsorted(y_bucket, union, side="right") - 1
    ix = np.searchsorted(x_bucket, union, side="right") - 1
    ok = (iy >= 0) & (ix >= 0)
    return union[ok], y_close[iy[ok]], x_close[ix[ok]]


@dataclass(frozen=True)
class BatchSummary:
    """What one flushed batch holds for one (market, symbol)."""

    newest: tuple[int, int, float]   # (trade_id, ts µs, price) of its highest trade id
    oldest_us: int                   # its oldest trade time (µs)


@dataclass
class _Closed:
    """Cached closed bars of one (market, symbols, timeframe, buckets) window."""

    cur: int          # start of the forming bucket when read (µs)
    read_us: int      # when read (µs)
    bars: dict
    late_us: int | None = None  # oldest trade time flushed since, older than `cur` (its bar and later are stale)


class MetricSource:
    """Computes metrics for rules on one connection per evaluation round, with caches between rounds.

    In the engine, each round gets a summary of the flushed batch: the newest trade per symbol is kept in
    memory (read from SQL once per symbol), which gives `price` and the forming bar without a query. Closed
    bars are cached per (market, symbols, timeframe, buckets); when a new bar starts only the bars closed since
    are read, and a flush bringing ticks older than the forming bar has the bars from theirs on read again. A derived value (rsi, pair) is recomputed only when its
    inputs changed. So each value equals a fresh computation on the file as it is after the flush.
    Without batches (previews) every value is read from SQL.
    """

    def __init__(self) -> None:
        self._closed: dict[tuple, _Closed] = {}
        self._derived: dict[tuple, tuple[tuple, object]] = {}
        self._activity_cache: dict[tuple, tuple[float, int, int, dt.datetime]] = {}
        self._last: dict[tuple[str, str], tuple[int, int, float]] = {}   # (market, symbol) -> (id, ts µs, price)
        self._missing: dict[tuple[str, str], dt.datetime] = {}
        self._con: Connection | None = None
        self._now: dt.datetime = dt.datetime.now(dt.UTC)
        self._now_us = 0
        self._memo: dict[tuple, object] = {}
        self._status: dict = {}
        self._oldest: dict[tuple[str, str], int] = {}

    def begin(self, con: Connection, now: dt.datetime, status: dict | None = None,
              batch: dict[tuple[str, str], BatchSummary] | None = None) -> None:
        """Start an evaluation round on `con` at time `now` (UTC).

        `status` is the ingestor's {(market, symbol): {"connected", "last_tick_age_s"}} for the `lag` metric
        (symbols missing from it fall back to the ingest_status table, then to the last stored trade).
        `batch` summarises the ticks just flushed per (market, symbol) (engine only): their newest trade
        updates the in-memory last trade, and ticks older than a forming bar mark its closed bars stale.
        """
        self._con, self._now, self._memo, self._status = con, now, {}, status or {}
        self._now_us = int(now.timestamp() * 1_000_000)
        self._oldest = {}
        for key, b in (batch or {}).items():
            known = self._last.get(key)
            if known is not None and b.newest[0] > known[0]:
                self._last[key] = b.newest
            # unknown symbols are read from SQL on first use (the batch alone may be an old backfill)
            self._oldest[key] = b.oldest_us
        if self._oldest:  # late trades: the closed bars from theirs on are re-read when next used
            for (legs, _, _), entry in self._closed.items():
                for leg in legs:
                    t = self._oldest.get(leg)
                    if t is not None and t < entry.cur and (entry.late_us is None or t < entry.late_us):
                        entry.late_us = t

    def end(self) -> None:
        self._con = None
        self._memo = {}

    def observe(self, rule: AlertRule) -> Observation:
        """The rule's metric now (memoized within a round, so rules sharing a metric compute it once)."""
        key = (rule.metric, rule.market, rule.symbol, rule.symbol2, rule.market2, rule.timeframe, rule.lookback)
        if key not in self._memo:
            self._memo[key] = getattr(self, f"_obs_{rule.metric}")(rule)
        return self._memo[key]

    # ---------------------------------------------------------------------------------------------- inputs
    def last_trade(self, market: str, symbol: str) -> tuple[int, int, float] | None:
        """(trade_id, ts µs, price) of the newest stored trade (within PRICE_LOOKBACK), cached between rounds.

        A symbol this process does not stream (another ingestor writes it: the other leg of a spot-vs-perp rule
        when each market has its own process) never arrives in a flushed batch, so it is re-read from the file
        once per round, from its cached time on."""
        key = (market, symbol)
        foreign = bool(self._status) and key not in self._status
        if key in self._last and not (foreign and ("fresh", key) not in self._memo):
            return self._last[key]
        if foreign:
            self._memo[("fresh", key)] = True
        miss = self._missing.get(key)
        if miss is not None and (self._now - miss).total_seconds() < 10:
            return None
        since = self._now - PRICE_LOOKBACK
        if key in self._last:
            since = max(since, _us_to_dt(self._last[key][1]))
        t = alerts_sql.last_trade(self._con, market, symbol, since)
        if t is None and key in self._last and (self._now_us - self._last[key][1]) / 1e6 < PRICE_LOOKBACK.total_seconds():
            return self._last[key]
        if t is None:
            self._missing[key] = self._now
            return None
        self._missing.pop(key, None)
        self._last[key] = (t[0], int(pd.Timestamp(t[1]).value // 1000), t[2])
        return self._last[key]

    def _closes(self, rule: AlertRule) -> tuple[tuple, dict[tuple[str, str], tuple[np.ndarray, np.ndarray, int]]]:
        """(version, {(market, symbol): (bucket_us, close, newest trade µs)}) over the rule's window, forming bar
        included.

        `version` changes whenever any input changes (closed bars re-read, or a newer trade).
        """
        legs = ((rule.market, rule.symbol), (rule.leg2_market, rule.symbol2)) if rule.is_pair \
            else ((rule.market, rule.symbol),)
        step_s = tf_seconds(rule.timeframe)
        step_us = step_s * 1_000_000
        now_us = self._now_us
        cur = now_us // step_us * step_us
        n = buckets_needed(rule)
        key = (legs, step_s, n)
        entry = self._closed.get(key)
        start = cur - (n - 1) * step_us
        # a leg another process writes never shows its late trades in a batch here: its window is re-read whole
        foreign = bool(self._status) and any(leg not in self._status for leg in legs)
        if entry is None or entry.cur > cur or (foreign and entry.cur != cur):
            read_from = start
        else:  # only the bars that closed since the last read, or that late trades changed, are read again
            read_from = entry.cur if entry.late_us is None else min(entry.cur, entry.late_us // step_us * step_us)
            read_from = max(read_from, start) if read_from < cur else None
        if read_from is not None:
            closed = {}
            for market in dict.fromkeys(m for m, _ in legs):
                bars = alerts_sql.bar_closes(self._con, market, [s for m, s in legs if m == market], step_s,
                                             _us_to_dt(read_from), _us_to_dt(cur))
                if read_from > start:  # kept bars (ascending per symbol) first, then the re-read ones
                    old = entry.bars[market]
                    keep = (old["bucket_us"] >= start) & (old["bucket_us"] < read_from)
                    bars = {k: np.concatenate([old[k][keep], v]) for k, v in bars.items()}
                closed[market] = bars
            self._closed[key] = entry = _Closed(cur, now_us, closed)
            if len(self._closed) > 512:  # rules come and go; keep the cache bounded
                self._closed.pop(next(iter(self._closed)))
        out, version = {}, [entry.cur, entry.read_us]
        for market, sym in legs:
            bars = entry.bars[market]
            m = bars["symbol"] == sym
            buckets, closes, last = bars["bucket_us"][m], bars["close"][m], bars["last_us"][m]
            newest = int(last.max()) if len(last) else 0
            t = self.last_trade(market, sym)
            version.append(t[0] if t else None)
            if t is not None and cur <= t[1] < cur + step_us:  # the forming bar: close = newest trade
                buckets, closes = np.append(buckets, cur), np.append(closes, t[2])
                newest = max(newest, t[1])
            out[(market, sym)] = (buckets, closes, newest)
        return tuple(version), out

    def _derive(self, key: tuple, version: tuple, compute: Callable[[], object]) -> object:
        hit = self._derived.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        value = compute()
        self._derived[key] = (version, value)
        if len(self._derived) > 1024:
            self._derived.pop(next(iter(self._derived)))
        return value

    # --------------------------------------------------------------------------------------------- metrics
    def _obs_price(self, rule: AlertRule) -> Observation:
        t = self.last_trade(rule.market, rule.symbol)
        if t is None:
            return Observation(None, None, f"no {rule.symbol} trades in the last 24 h")
        return Observation(t[2], _us_to_dt(t[1]))

    def _obs_rsi(self, rule: AlertRule) -> Observation:
        version, legs = self._closes(rule)

        def compute() -> Observation:
            _, closes, last_us = legs[(rule.market, rule.symbol)]
            need = min_bars(rule)
            if len(closes) < need:
                return Observation(None, None, f"need {need} {rule.timeframe} bars, have {len(closes)}")
            value = float(np.asarray(rsi(closes, rule.lookback))[-1])
            return Observation(None if math.isnan(value) else value, _us_to_dt(last_us))

        return self._derive(("rsi", rule.market, rule.symbol, rule.timeframe, rule.lookback), version, compute)

    def _pair(self, rule: AlertRule) -> tuple[Observation, Observation]:
        version, legs = self._closes(rule)

        def compute() -> tuple[Observation, Observation]:
            (yb, yc, y_last), (xb, xc, x_last) = legs[(rule.market, rule.symbol)], legs[(rule.leg2_market,
                                                                                         rule.symbol2)]
            _, y, x = align_pair(yb, yc, xb, xc)
            need = min_bars(rule)
            if len(y) < need:
                obs = Observation(None, None, f"need {need} aligned {rule.timeframe} bars of both legs, have {len(y)}")
                return obs, obs
            s, z, beta, alpha = pair_spread_zscore(y, x)
            at = _us_to_dt(max(y_last, x_last))
            detail = f"beta {beta:.6g}, alpha {alpha:.6g}, {len(y)} bars"
            return (Observation(s, at, detail),
                    Observation(None if math.isnan(z) else z, at, detail if not math.isnan(z) else "flat spread"))

        return self._derive(("pair", rule.market, rule.symbol, rule.market2, rule.symbol2, rule.timeframe,
                             rule.lookback), version, compute)

    def _obs_spread(self, rule: AlertRule) -> Observation:
        return self._pair(rule)[0]

    def _obs_zscore(self, rule: AlertRule) -> Observation:
        return self._pair(rule)[1]

    def _obs_basis(self, rule: AlertRule) -> Observation:
        from quantlib.basis import BPS

        perp, spot = ((rule.market, rule.symbol), (rule.leg2_market, rule.symbol2))
        if perp[0] != "usdm":
            perp, spot = spot, perp
        tp, ts = self.last_trade(*perp), self.last_trade(*spot)
        for t, (m, sym) in ((tp, perp), (ts, spot)):
            if t is None:
                return Observation(None, None, f"no {m} {sym} trades in the last 24 h")
        skew = abs(tp[1] - ts[1]) / 1e6
        if skew > BASIS_MAX_SKEW_S:
            older = perp if tp[1] < ts[1] else spot
            return Observation(None, None, f"the {older[0]} leg's last trade is {skew:.0f} s older than the other's "
                                           f"(at most {BASIS_MAX_SKEW_S:g} s apart)")
        value = (tp[2] / ts[2] - 1.0) * BPS
        return Observation(value, _us_to_dt(max(tp[1], ts[1])), f"perp {tp[2]:.10g}, spot {ts[2]:.10g}")

    def _obs_funding(self, rule: AlertRule) -> Observation:
        row = alerts_sql.latest_funding(self._con, rule.market, rule.symbol,
                                        self._now - dt.timedelta(seconds=FUNDING_MAX_AGE_S))
        if row is None:
            return Observation(None, None, f"no {rule.market} {rule.symbol} mark-price update with a funding rate "
                                           f"in the last {FUNDING_MAX_AGE_S:g} s")
        ts, rate, next_time = row
        detail = f"next funding {pd.Timestamp(next_time):%Y-%m-%d %H:%M} UTC" if next_time is not None else ""
        return Observation(rate, _utc(ts), detail)

    def _activity(self, rule: AlertRule) -> tuple[float, int, int, dt.datetime]:
        """(volume, trades, window s, as of) over the trailing `timeframe`; shared by volume and trade_rate and
        re-read at most every window/120 (a 1 h window every 30 s, a 1 m window every 0.5 s)."""
        window_s = tf_seconds(rule.timeframe)
        key = (rule.market, rule.symbol, window_s)
        hit = self._activity_cache.get(key)
        if hit is not None and (self._now - hit[3]).total_seconds() < window_s * ACTIVITY_REFRESH_FRACTION:
            return hit
        vol, n = alerts_sql.window_activity(self._con, rule.market, rule.symbol,
                                            self._now - dt.timedelta(seconds=window_s))
        self._activity_cache[key] = hit = (vol, n, window_s, self._now)
        return hit

    def _obs_volume(self, rule: AlertRule) -> Observation:
        vol, n, _, at = self._activity(rule)
        return Observation(vol, at, f"{n} trades")

    def _obs_trade_rate(self, rule: AlertRule) -> Observation:
        _, n, window_s, at = self._activity(rule)
        return Observation(n / window_s, at, f"{n} trades in {window_s} s")

    def _status_of(self, market: str, symbol: str) -> dict | None:
        st = self._status.get((market, symbol))
        if st is not None:
            return st
        row = alerts_sql.status_row(self._con, market, symbol)
        if row is not None:
            last = row.get("last_recv_ts") or row.get("last_trade_ts")
            age = (self._now - _utc(last)).total_seconds() if last is not None else math.inf
            return {"connected": bool(row.get("connected")), "last_tick_age_s": age}
        t = self.last_trade(market, symbol)
        if t is None:
            return None
        return {"connected": None, "last_tick_age_s": (self._now_us - t[1]) / 1e6}

    def _obs_lag(self, rule: AlertRule) -> Observation:
        st = self._status_of(rule.market, rule.symbol)
        if st is None:
            return Observation(None, None, f"no status or trades for {rule.symbol}")
        age = st.get("last_tick_age_s")
        age = math.inf if age is None else float(age)
        connected = st.get("connected")
        detail = "disconnected" if connected is False else ("connected" if connected else "")
        return Observation(age, self._now, detail)


def _us_to_dt(us: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=int(us))


def current_value(rule: AlertRule, db_path=None, now: dt.datetime | None = None) -> Observation:
    """The rule's metric now, read from the tick file (read-only; for previews in the app)."""
    src = MetricSource()
    with read_connection(db_path) as con:
        src.begin(con, now or dt.datetime.now(dt.UTC))
        try:
            return src.observe(rule)
        finally:
            src.end()
