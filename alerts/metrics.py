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
- `lag`: seconds since the last received tick (from the ingestor's status; +inf while it never had one).
"""
from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from alerts.rules import AlertRule
from tickstore import alerts_sql
from tickstore.connection import read_connection
from tickstore.queries import tf_seconds

log = logging.getLogger(__name__)

PRICE_LOOKBACK = dt.timedelta(days=1)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
REFRESH_GRACE_S = 2.0        # re-read just-closed bars this long after a bar boundary (late ticks)
ACTIVITY_REFRESH_FRACTION = 1 / 600  # volume / trade_rate over a window W are re-read at most every W/600


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


def pair_spread_zscore(y: pd.Series, x: pd.Series) -> tuple[float, float, float, float]:
    """(spread, zscore, beta, alpha) of the newest bar of aligned closes y, x (see module docstring)."""
    from quantlib.indicators import zscore
    from quantlib.pairs import spread
    from quantlib.regression import hedge_ratio

    hr = hedge_ratio(y, x, method="ols")
    s = spread(y, x, hr.beta, hr.alpha)
    z = float(np.asarray(zscore(s, len(s)))[-1])
    return float(np.asarray(s)[-1]), z, float(hr.beta), float(hr.alpha)


def align_pair(closes: pd.DataFrame, y_symbol: str, x_symbol: str) -> pd.DataFrame:
    """Columns y, x of close prices on the union of both legs' bar times, forward-filled, leading gaps dropped."""
    wide = closes.pivot_table(index="bucket_us", columns="symbol", values="close", aggfunc="last")
    wide = wide.reindex(columns=[y_symbol, x_symbol]).sort_index().ffill().dropna()
    wide.columns = ["y", "x"]
    return wide


class MetricSource:
    """Computes metrics for rules on one connection per evaluation round, with caches between rounds.

    Closed bars are cached per (market, symbols, timeframe, buckets) and re-read only when a new bar starts
    (and during a short grace period after it, for late ticks); the forming bar is read each round.
    """

    def __init__(self) -> None:
        self._closed: dict[tuple, tuple[int, float, pd.DataFrame]] = {}
        self._activity: dict[tuple, tuple[dt.datetime, Observation]] = {}
        self._con: duckdb.DuckDBPyConnection | None = None
        self._now: dt.datetime = dt.datetime.now(dt.UTC)
        self._memo: dict[tuple, Observation] = {}
        self._status: dict | None = None

    def begin(self, con: duckdb.DuckDBPyConnection, now: dt.datetime, status: dict | None = None) -> None:
        """Start an evaluation round on `con` at time `now` (UTC).

        `status` is the ingestor's {(market, symbol): {"connected", "last_tick_age_s"}} for the `lag` metric;
        symbols missing from it fall back to the ingest_status table, then to the last stored trade.
        """
        self._con, self._now, self._memo, self._status = con, now, {}, status or {}

    def end(self) -> None:
        self._con = None
        self._memo = {}

    def observe(self, rule: AlertRule) -> Observation:
        """The rule's metric now (memoized within a round, so rules sharing a metric cost one query)."""
        key = (rule.metric, rule.market, rule.symbol, rule.symbol2, rule.timeframe, rule.lookback)
        if key not in self._memo:
            self._memo[key] = getattr(self, f"_obs_{rule.metric}")(rule)
        return self._memo[key]

    # --------------------------------------------------------------------------------------------- metrics
    def _obs_price(self, rule: AlertRule) -> Observation:
        t = alerts_sql.last_trade(self._con, rule.market, rule.symbol, self._now - PRICE_LOOKBACK)
        if t is None:
            return Observation(None, None, f"no {rule.symbol} trades in the last 24 h")
        return Observation(t[2], _utc(t[1]))

    def last_trade(self, market: str, symbol: str) -> tuple[int, dt.datetime, float] | None:
        """(trade_id, ts, price) of the newest stored trade within the price lookback."""
        return alerts_sql.last_trade(self._con, market, symbol, self._now - PRICE_LOOKBACK)

    def _closes(self, rule: AlertRule, symbols: tuple[str, ...]) -> pd.DataFrame:
        step_s = tf_seconds(rule.timeframe)
        step_us = step_s * 1_000_000
        now_us = int(self._now.timestamp() * 1_000_000)
        cur = now_us // step_us * step_us
        n = buckets_needed(rule)
        key = (rule.market, symbols, step_s, n)
        entry = self._closed.get(key)
        in_grace = (now_us - cur) / 1e6 < REFRESH_GRACE_S
        if entry is None or entry[0] != cur or in_grace:
            start = _us_to_dt(cur - (n - 1) * step_us)
            closed = alerts_sql.bar_closes(self._con, rule.market, symbols, step_s, start, _us_to_dt(cur))
            self._closed[key] = entry = (cur, now_us / 1e6, closed)
            if len(self._closed) > 512:  # rules come and go; keep the cache bounded
                self._closed.pop(next(iter(self._closed)))
        forming = alerts_sql.bar_closes(self._con, rule.market, symbols, step_s, _us_to_dt(cur), _us_to_dt(cur + step_us))
        frames = [f for f in (entry[2], forming) if len(f)]
        if not frames:
            return entry[2]
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def _obs_rsi(self, rule: AlertRule) -> Observation:
        from quantlib.indicators import rsi

        closes = self._closes(rule, (rule.symbol,))
        need = min_bars(rule)
        if len(closes) < need:
            return Observation(None, None, f"need {need} {rule.timeframe} bars, have {len(closes)}")
        value = float(np.asarray(rsi(closes["close"].to_numpy(), rule.lookback))[-1])
        return Observation(None if math.isnan(value) else value, _utc(closes["last_ts"].max()))

    def _pair(self, rule: AlertRule) -> tuple[Observation, Observation]:
        closes = self._closes(rule, (rule.symbol, rule.symbol2))
        wide = align_pair(closes, rule.symbol, rule.symbol2)
        need = min_bars(rule)
        if len(wide) < need:
            obs = Observation(None, None, f"need {need} aligned {rule.timeframe} bars of both legs, have {len(wide)}")
            return obs, obs
        s, z, beta, alpha = pair_spread_zscore(wide["y"], wide["x"])
        at = _utc(closes["last_ts"].max())
        detail = f"beta {beta:.6g}, alpha {alpha:.6g}, {len(wide)} bars"
        return (Observation(s, at, detail),
                Observation(None if math.isnan(z) else z, at, detail if not math.isnan(z) else "flat spread"))

    def _obs_spread(self, rule: AlertRule) -> Observation:
        return self._pair(rule)[0]

    def _obs_zscore(self, rule: AlertRule) -> Observation:
        return self._pair(rule)[1]

    def _activity_window(self, rule: AlertRule) -> tuple[float, int, float]:
        window_s = tf_seconds(rule.timeframe)
        vol, n = alerts_sql.window_activity(self._con, rule.market, rule.symbol,
                                            self._now - dt.timedelta(seconds=window_s))
        return vol, n, window_s

    def _cached_activity(self, rule: AlertRule, compute: Callable[[], Observation]) -> Observation:
        key = (rule.metric, rule.market, rule.symbol, rule.timeframe)
        hit = self._activity.get(key)
        max_age = tf_seconds(rule.timeframe) * ACTIVITY_REFRESH_FRACTION
        if hit is not None and (self._now - hit[0]).total_seconds() < max_age:
            return hit[1]
        obs = compute()
        self._activity[key] = (self._now, obs)
        return obs

    def _obs_volume(self, rule: AlertRule) -> Observation:
        def compute() -> Observation:
            vol, n, _ = self._activity_window(rule)
            return Observation(vol, self._now, f"{n} trades")
        return self._cached_activity(rule, compute)

    def _obs_trade_rate(self, rule: AlertRule) -> Observation:
        def compute() -> Observation:
            _, n, window_s = self._activity_window(rule)
            return Observation(n / window_s, self._now, f"{n} trades in {window_s} s")
        return self._cached_activity(rule, compute)

    def _status_of(self, market: str, symbol: str) -> dict | None:
        st = self._status.get((market, symbol))
        if st is not None:
            return st
        row = alerts_sql.status_row(self._con, market, symbol)
        if row is not None:
            last = row.get("last_recv_ts") or row.get("last_trade_ts")
            age = (self._now - _utc(last)).total_seconds() if last is not None else math.inf
            return {"connected": bool(row.get("connected")), "last_tick_age_s": age}
        t = alerts_sql.last_trade(self._con, market, symbol, self._now - PRICE_LOOKBACK)
        if t is None:
            return None
        return {"connected": None, "last_tick_age_s": (self._now - _utc(t[1])).total_seconds()}

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
