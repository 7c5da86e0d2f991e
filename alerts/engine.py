"""The alert engine: evaluates every enabled rule once, in the ingestor, after each flush.

`AlertEngine.on_flush` is a `tickstore.writer.TickWriter` hook: it runs inside the writer's short-lived
connection, reloads rules only when the `alert_rules` table changed (a one-row fingerprint query), computes
each rule's metric (alerts/metrics.py), steps the rule's trigger state (alerts/trigger.py) and appends
`alert_events` rows in the same connection. Webhooks go to a background sender and never block the flush.

Price rules see every trade: each new trade of the flushed batch is fed to the trigger in trade-id order, so
a price that crosses the threshold and comes back between two flushes still fires once per crossing.
Other metrics are sampled once per flush.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from alerts.metrics import BatchSummary, MetricSource, Observation
from alerts.rules import AlertRule, rules_from_rows
from alerts.text import event_message
from alerts.trigger import Outcome, TriggerState, step
from alerts.webhook import WebhookSender
from tickstore import alerts_sql
from tickstore.connection import Connection, QueryError

log = logging.getLogger(__name__)

StatusProvider = Callable[[], dict]
Clock = Callable[[], dt.datetime]
ERROR_LOG_INTERVAL_S = 60.0


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class _Runtime:
    """In-memory state of one enabled rule."""

    rule: AlertRule
    trigger: TriggerState = field(default_factory=TriggerState)
    last_trade_id: int | None = None     # price rules: newest trade already fed
    last_error_log: float = 0.0


@dataclass
class EngineStats:
    rounds: int = 0
    reloads: int = 0
    fired: int = 0
    suppressed: int = 0
    errors: int = 0
    last_round_ms: float = 0.0
    max_round_ms: float = 0.0


class AlertEngine:
    """Evaluates alert rules after each flush; exactly one engine runs per ingestor process.

    `status_provider()` returns {(market, SYMBOL): {"connected": bool, "last_tick_age_s": float}} for the
    symbols this ingestor streams; it feeds the `lag` metric and scopes evaluation to rules whose (first)
    symbol this process ingests, so two ingestors on one file never fire the same rule twice.
    """

    def __init__(self, *, status_provider: StatusProvider | None = None,
                 webhooks: bool = True, clock: Clock = utc_now, max_ticks_per_flush: int = 50_000,
                 webhook_sender: WebhookSender | None = None) -> None:
        self.status_provider = status_provider
        self.clock = clock
        self.max_ticks_per_flush = max_ticks_per_flush
        self.stats = EngineStats()
        self.metrics = MetricSource()
        self.sender = webhook_sender or (WebhookSender() if webhooks else None)
        self._fingerprint: tuple[int, int] | None = None
        self._rules: list[AlertRule] = []
        self._runtime: dict[int, _Runtime] = {}
        self._rule_keys: set[tuple[str, str]] = set()   # (market, symbol) of every leg of the enabled rules
        self._status_keys: set | None = None
        self._status_src: object = None   # the provider's keys object of the last round
        self._status_index: dict[tuple[str, str], tuple] = {}
        self._started = clock()

    # ------------------------------------------------------------------------------------------ the hook
    def on_flush(self, con: Connection, batch: pa.Table | None, inserted: int) -> None:
        """Writer hook: evaluate every enabled rule and record firings (see module docstring)."""
        t0 = time.perf_counter()
        self._maybe_reload(con)
        if not self._runtime:
            return
        now = self.clock()
        status, scope = self._status()
        ticks = _TickGroups(batch)
        self.metrics.begin(con, now, status, ticks.summary(self._rule_keys))
        fired: list[tuple[AlertRule, float, dt.datetime | None, str]] = []
        try:
            for rt in list(self._runtime.values()):
                rule = rt.rule
                if scope is not None and (rule.market, rule.symbol) not in scope:
                    continue
                try:
                    if rule.metric == "price":
                        fired.extend(self._eval_price(rt, ticks, now))
                    else:
                        fired.extend(self._eval_sampled(rt, now))
                except Exception as exc:
                    self.stats.errors += 1
                    mono = time.monotonic()
                    if mono - rt.last_error_log >= ERROR_LOG_INTERVAL_S:
                        rt.last_error_log = mono
                        log.warning("alert rule %s (%s) could not be evaluated: %s", rule.id, rule.describe(), exc,
                                    exc_info=not isinstance(exc, (ValueError, QueryError)))
        finally:
            self.metrics.end()
        if fired:
            self._record(con, fired, now)
        ms = (time.perf_counter() - t0) * 1000
        self.stats.rounds += 1
        self.stats.last_round_ms = ms
        self.stats.max_round_ms = max(self.stats.max_round_ms, ms)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver queued webhooks for up to `timeout` seconds and stop the sender."""
        if self.sender is not None:
            self.sender.close(timeout)

    @property
    def rules(self) -> list[AlertRule]:
        """The enabled rules currently evaluated."""
        return [rt.rule for rt in self._runtime.values()]

    def state(self, rule_id: int) -> TriggerState | None:
        rt = self._runtime.get(rule_id)
        return None if rt is None else rt.trigger

    # --------------------------------------------------------------------------------------- internals
    def _status(self) -> tuple[dict, object]:
        """(status of the rules' symbols, the set of (market, SYMBOL) this ingestor streams or None when unknown).

        Only the rules' symbols are looked at, so a round costs the same with 4 or 1,000 streamed symbols."""
        if self.status_provider is None:
            return {}, None
        try:
            raw = self.status_provider() or {}
        except Exception:
            log.exception("alert status provider failed")
            return {}, None
        if not raw:
            return {}, None
        keys = raw.keys()
        # the streamed symbols changed (the ingestor's own state hands the same frozen set while they do not)
        if keys is not self._status_src and keys != self._status_keys:
            self._status_keys = set(keys)
            self._status_index = {(str(m).lower(), str(sym).upper()): (m, sym) for m, sym in keys}
        self._status_src = keys
        index = self._status_index
        # a symbol with no tick yet has waited as long as this engine has run (not forever): a lag rule does not
        # fire while the ingestor is still connecting, only once no tick came for longer than its threshold
        since_start = max(0.0, (self.clock() - self._started).total_seconds())
        out = {}
        for key in self._rule_keys:
            src = index.get(key)
            if src is None:
                continue
            v = dict(raw[src])
            age = v.get("last_tick_age_s")
            if age is None or not math.isfinite(float(age)):
                v["last_tick_age_s"] = since_start
            out[key] = v
        return out, index

    def _maybe_reload(self, con: Connection) -> None:
        fp = alerts_sql.rules_fingerprint(con)
        if fp == self._fingerprint:
            return
        rules = [r for r in rules_from_rows(alerts_sql.fetch_rules(con)) if r.enabled]
        fired_at = alerts_sql.last_fired(con) if rules else {}
        old = self._runtime
        new: dict[int, _Runtime] = {}
        for r in rules:
            prev = old.get(r.id)
            if prev is not None and prev.rule.definition == r.definition:
                prev.rule = r            # note / cooldown / webhook edits keep the trigger state
                new[r.id] = prev
                continue
            rt = _Runtime(rule=r)
            rt.trigger.last_fired = prev.trigger.last_fired if prev is not None else fired_at.get(r.id)
            new[r.id] = rt
        self._runtime = new
        self._rule_keys = ({(r.market, r.symbol) for r in rules}
                           | {(r.leg2_market, r.symbol2) for r in rules if r.symbol2})
        self._fingerprint = fp
        self.stats.reloads += 1
        log.info("alert rules loaded: %d enabled (%s)", len(new),
                 ", ".join(f"#{r.id} {r.describe()}" for r in rules[:5]) + (" …" if len(rules) > 5 else ""))

    def _eval_sampled(self, rt: _Runtime, now: dt.datetime) -> list:
        obs: Observation = self.metrics.observe(rt.rule)
        r = rt.rule
        outcome = step(rt.trigger, r.op, r.threshold, r.hysteresis, r.cooldown_s, obs.value, now)
        return self._outcome(rt, outcome, obs.value, obs.observed_at, obs.detail)

    def _eval_price(self, rt: _Runtime, ticks: "_TickGroups", now: dt.datetime) -> list:
        r = rt.rule
        if rt.last_trade_id is None:
            last = self.metrics.last_trade(r.market, r.symbol)
            if last is None:
                return []
            rt.last_trade_id = last[0]
            outcome = step(rt.trigger, r.op, r.threshold, r.hysteresis, r.cooldown_s, last[2], now)
            return self._outcome(rt, outcome, last[2], _us_to_dt(last[1]), "")
        ids, prices, ts_us = ticks.get(r.market, r.symbol)
        new = ids > rt.last_trade_id
        if not new.any():
            return []
        ids, prices, ts_us = ids[new], prices[new], ts_us[new]
        if len(ids) > self.max_ticks_per_flush:
            log.warning("alert rule %s: %d new %s trades in one flush; evaluating the last %d",
                        r.id, len(ids), r.symbol, self.max_ticks_per_flush)
            ids, prices, ts_us = (a[-self.max_ticks_per_flush:] for a in (ids, prices, ts_us))
        rt.last_trade_id = int(ids[-1])
        out = []
        for price, t in zip(prices.tolist(), ts_us.tolist()):
            outcome = step(rt.trigger, r.op, r.threshold, r.hysteresis, r.cooldown_s, price, now)
            if outcome in (Outcome.FIRED, Outcome.SUPPRESSED):
                out.extend(self._outcome(rt, outcome, price, _us_to_dt(t), ""))
        return out

    def _outcome(self, rt: _Runtime, outcome: Outcome, value, observed_at, detail: str) -> list:
        if outcome is Outcome.FIRED:
            self.stats.fired += 1
            return [(rt.rule, float(value), observed_at, detail)]
        if outcome is Outcome.SUPPRESSED:
            self.stats.suppressed += 1
            log.info("alert rule %s: %s within cooldown (%.0f s); not fired", rt.rule.id,
                     event_message(rt.rule, float(value), detail), rt.rule.cooldown_s)
        return []

    def _record(self, con: Connection, fired: list, now: dt.datetime) -> None:
        events = [{"rule_id": r.id, "fired_at": now, "value": value, "message": event_message(r, value, detail),
                   "market": r.market, "symbol": r.symbol, "symbol2": r.symbol2, "metric": r.metric, "op": r.op,
                   "threshold": r.threshold, "observed_at": at, "market2": r.market2}
                  for r, value, at, detail in fired]
        ids = alerts_sql.insert_events(con, events)
        for (rule, *_), ev, ev_id in zip(fired, events, ids):
            log.warning("ALERT #%d rule %d: %s", ev_id, rule.id, ev["message"])
            if rule.webhook_url and self.sender is not None:
                self.sender.submit(rule.webhook_url, {
                    "event_id": ev_id, "rule_id": rule.id, "fired_at": now.isoformat(),
                    "observed_at": ev["observed_at"].isoformat() if ev["observed_at"] else None,
                    "market": rule.market, "symbol": rule.symbol, "symbol2": rule.symbol2, "market2": rule.market2,
                    "metric": rule.metric,
                    "timeframe": rule.timeframe, "op": rule.op, "threshold": rule.threshold,
                    "value": ev["value"], "message": ev["message"], "note": rule.note})


class _TickGroups:
    """New trades of a flushed batch per (market, symbol), sorted by trade id and deduplicated.

    Built once per flush with one sort of the whole batch (not one scan of the batch per symbol or per rule), and
    looked up only for the symbols asked for, so its cost follows the batch's rows and the rules, whatever the
    number of symbols in the batch."""

    _EMPTY = (np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.int64))

    def __init__(self, batch: pa.Table | None) -> None:
        self._batch = batch
        self._built = False
        self._codes = np.empty(0, np.int64)      # group code of each group, ascending
        self._starts = self._ends = self._oldest = np.empty(0, np.int64)
        self._markets: dict[str, int] = {}
        self._symbols: dict[str, int] = {}

    def _build(self) -> None:
        if self._built:
            return
        self._built = True
        b = self._batch
        if b is None or b.num_rows == 0:
            return
        market = pc.dictionary_encode(b.column("market")).combine_chunks()
        symbol = pc.dictionary_encode(b.column("symbol")).combine_chunks()
        self._markets = {m: i for i, m in enumerate(market.dictionary.to_pylist())}
        self._symbols = {s: i for i, s in enumerate(symbol.dictionary.to_pylist())}
        code = (market.indices.to_numpy(zero_copy_only=False).astype(np.int64) * len(self._symbols)
                + symbol.indices.to_numpy(zero_copy_only=False).astype(np.int64))
        ids = b.column("trade_id").to_numpy()
        ts = b.column("ts").cast(pa.int64()).to_numpy()
        prices = b.column("price").to_numpy()
        order = np.lexsort((ids, code))  # stable: among equal ids the first row of the batch comes first
        code, ids, ts, prices = code[order], ids[order], ts[order], prices[order]
        self._oldest = np.minimum.reduceat(ts, np.flatnonzero(np.r_[True, code[1:] != code[:-1]]))  # duplicates too
        keep = np.r_[True, (code[1:] != code[:-1]) | (ids[1:] != ids[:-1])]
        code, self._ids, self._ts, self._prices = code[keep], ids[keep], ts[keep], prices[keep]
        self._starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
        self._ends = np.r_[self._starts[1:], len(code)]
        self._codes = code[self._starts]

    def _group(self, market: str, symbol: str) -> int | None:
        self._build()
        m, s = self._markets.get(market), self._symbols.get(symbol)
        if m is None or s is None:
            return None
        c = m * len(self._symbols) + s
        g = int(np.searchsorted(self._codes, c))
        return g if g < len(self._codes) and self._codes[g] == c else None

    def summary(self, keys) -> dict[tuple[str, str], BatchSummary]:
        """For each (market, symbol) of `keys` the batch holds: its highest-id trade (id, ts µs, price) and its
        oldest trade time."""
        out = {}
        for key in keys:
            g = self._group(*key)
            if g is not None:
                e = int(self._ends[g]) - 1
                out[key] = BatchSummary((int(self._ids[e]), int(self._ts[e]), float(self._prices[e])),
                                        int(self._oldest[g]))
        return out

    def get(self, market: str, symbol: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        g = self._group(market, symbol)
        if g is None:
            return self._EMPTY
        a, e = int(self._starts[g]), int(self._ends[g])
        return self._ids[a:e], self._prices[a:e], self._ts[a:e]


def _us_to_dt(us: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(us))
