"""Alert rules: the validated `AlertRule` record, field-by-field validation, and `RuleStore` (rules + history).

A rule watches one metric of a symbol (or of a pair, for `zscore` / `spread` / `basis`) and fires when it goes
past a threshold. A pair's second leg may be of another market (`market2`, e.g. spot against the perpetual);
`basis` is always a perpetual (usdm) leg against the same coin's spot leg, `funding` a perpetual's funding rate. Every field of a form or a row goes through `validate_rule`; nothing is ever evaluated as code.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from alerts.webhook import validate_webhook_url
from core import symbols, timeframes
from core.plausible import FUNDING_RATE_MAX
from core.paths import default_db_path
from tickstore import alerts_sql
from tickstore.appwrite import RULE_WRITE_BUDGET_S, app_write, verify_in_background
from tickstore.connection import StoreMissing, read_connection
from tickstore.schema import ensure_schema

log = logging.getLogger(__name__)

MARKETS = ("spot", "usdm")
METRICS = ("price", "zscore", "rsi", "volume", "trade_rate", "spread", "lag", "basis", "funding")
PAIR_METRICS = ("zscore", "spread", "basis")
PERP_MARKET, SPOT_MARKET = "usdm", "spot"
MAX_BASIS_BPS = 5000.0          # a basis threshold beyond ±50 % is a unit mistake (bps expected)
TIMEFRAMES = timeframes.CHOICES
OPS = (">", "<", "crosses_above", "crosses_below")
LOOKBACK_METRICS = ("zscore", "spread", "rsi")
DEFAULT_LOOKBACK = {"rsi": 14, "zscore": 60, "spread": 60}
LOOKBACK_RANGE = {"rsi": (2, 500), "zscore": (10, 5000), "spread": (10, 5000)}
WINDOW_METRICS = ("volume", "trade_rate")           # `timeframe` is a trailing window, not a bar length
TIMEFRAME_METRICS = LOOKBACK_METRICS + WINDOW_METRICS  # take a `timeframe`; price and lag ignore it
MAX_COOLDOWN_S = 7 * 86400.0
MAX_NOTE = 500

METRIC_LABELS = {"price": "last price", "zscore": "pair spread z-score", "rsi": "RSI", "volume": "volume",
                 "trade_rate": "trade rate (trades/s)", "spread": "pair spread", "lag": "ingestion lag (s)",
                 "basis": "basis (bps)", "funding": "funding rate"}
OP_LABELS = {">": "above", "<": "below", "crosses_above": "crosses above", "crosses_below": "crosses below"}


@dataclass(frozen=True)
class AlertRule:
    """One validated alert rule (a row of `alert_rules`)."""

    market: str
    symbol: str
    metric: str
    op: str
    threshold: float
    timeframe: str = "1m"
    symbol2: str | None = None
    market2: str | None = None       # the second leg's market when it differs from `market`, else None
    cooldown_s: float = 60.0
    hysteresis: float = 0.0
    lookback: int | None = None
    note: str | None = None
    webhook_url: str | None = None
    enabled: bool = True
    id: int | None = None

    @property
    def is_pair(self) -> bool:
        return self.metric in PAIR_METRICS

    @property
    def leg2_market(self) -> str:
        """The second leg's market (`market2`, else the rule's market)."""
        return self.market2 or self.market

    @property
    def subject(self) -> str:
        """`BTCUSDT`, `BTCUSDT/ETHUSDT`, or `BTCUSDT/spot:BTCUSDT` when the second leg is of another market."""
        if not self.is_pair:
            return self.symbol
        return f"{self.symbol}/{self.market2 + ':' if self.market2 else ''}{self.symbol2}"

    @property
    def definition(self) -> tuple:
        """Everything that decides when the rule fires (a change resets its trigger state)."""
        return (self.market, self.symbol, self.symbol2, self.metric, self.timeframe, self.op, self.threshold,
                self.hysteresis, self.lookback, self.market2)

    def describe(self) -> str:
        """Human summary, e.g. `spot BTCUSDT/ETHUSDT pair spread z-score (1m, 60 bars) crosses above 2`."""
        what = METRIC_LABELS[self.metric]
        if self.metric in LOOKBACK_METRICS:
            what += f" ({self.timeframe}, {self.lookback} bars)"
        elif self.metric in WINDOW_METRICS:
            what += f" (last {self.timeframe})"
        return f"{self.market} {self.subject} {what} {OP_LABELS[self.op]} {self.threshold:.15g}"

    def to_row(self) -> dict:
        """Column values for `alert_rules` (without id)."""
        row = asdict(self)
        row.pop("id")
        return row


class RuleValidationError(ValueError):
    """A rule was rejected; `errors` maps each bad field to what was wrong and what is expected."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("invalid alert rule: " + "; ".join(f"{k}: {v}" for k, v in self.errors.items()))


def _blank(v: object) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, float) and math.isnan(v))


def _number(v: object) -> float:
    if isinstance(v, bool):
        raise ValueError
    f = float(v.strip()) if isinstance(v, str) else float(v)  # type: ignore[arg-type]
    if not math.isfinite(f):
        raise ValueError
    return f


def _bool(v: object) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int,)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        return v.strip().lower() in ("true", "1", "yes", "on")
    raise ValueError


def _choice(errors: dict, name: str, v: object, options: tuple[str, ...], lower: bool = True) -> str | None:
    if _blank(v):
        errors[name] = f"is required; expected one of {', '.join(options)}"
        return None
    s = str(v).strip()
    s = s.lower() if lower else s
    if s not in options:
        errors[name] = f"{str(v)!r} is not supported; expected one of {', '.join(options)}"
        return None
    return s


def _symbol(errors: dict, name: str, v: object) -> str | None:
    if _blank(v):
        errors[name] = "is required; expected an exchange symbol such as BTCUSDT"
        return None
    s = str(v).strip().upper()
    if not symbols.is_symbol(s):
        errors[name] = f"{str(v)!r} is not a symbol; expected {symbols.EXPECTED}"
        return None
    return s


def validate_rule(fields: Mapping) -> AlertRule:
    """Check every field of a rule (a form, a row, a JSON body) and return the `AlertRule`.

    Raises `RuleValidationError` (a ValueError) listing each bad field: what was wrong and what is expected.
    Unknown fields are rejected too, so a typo never silently drops a setting.
    """
    errors: dict[str, str] = {}
    _unknown_fields(errors, fields)
    market = _choice(errors, "market", fields.get("market", "spot"), MARKETS)
    metric = _choice(errors, "metric", fields.get("metric"), METRICS)
    op = _choice(errors, "op", fields.get("op"), OPS)
    timeframe = _choice(errors, "timeframe", fields.get("timeframe") if not _blank(fields.get("timeframe")) else "1m",
                        TIMEFRAMES)
    symbol = _symbol(errors, "symbol", fields.get("symbol"))
    market2 = _second_market(errors, fields, metric, market)
    if metric == "funding" and market is not None and market != PERP_MARKET:
        errors["market"] = (f"funding is paid on perpetuals only; got {market}, expected {PERP_MARKET} (the "
                            "perpetual's symbol)")
    rule = dict(market=market, metric=metric, op=op, timeframe=timeframe, symbol=symbol,
                symbol2=_second_leg(errors, fields, metric, symbol, market, market2), market2=market2,
                threshold=_threshold(errors, fields, metric),
                cooldown_s=_non_negative(errors, fields, "cooldown_s", 60.0, MAX_COOLDOWN_S),
                hysteresis=_non_negative(errors, fields, "hysteresis", 0.0),
                lookback=_lookback(errors, fields, metric),
                note=_note(errors, fields),
                webhook_url=_webhook(errors, fields),
                enabled=_enabled(errors, fields),
                id=_rule_id(errors, fields))
    if errors:
        raise RuleValidationError(errors)
    return AlertRule(**rule)


def _unknown_fields(errors: dict, fields: Mapping) -> None:
    known = {f for f in AlertRule.__dataclass_fields__} | {"created_at", "updated_at"}
    for k in fields:
        if k not in known:
            errors[str(k)] = f"unknown field; expected some of {', '.join(sorted(AlertRule.__dataclass_fields__))}"


def _second_market(errors: dict, fields: Mapping, metric: str | None, market: str | None) -> str | None:
    """`market2`: the second leg's market for pair metrics, stored only when it differs from `market`. A basis
    rule compares a perpetual with spot: one leg must be usdm and the other spot (blank = the other one)."""
    raw = fields.get("market2")
    if metric not in PAIR_METRICS:
        if not _blank(raw) and metric is not None and str(raw).strip().lower() != (market or ""):
            errors["market2"] = (f"only pair metrics ({', '.join(PAIR_METRICS)}) take a second leg's market; leave "
                                 f"it empty for {metric}")
        return None
    if metric == "basis" and _blank(raw) and market in (PERP_MARKET, SPOT_MARKET):
        raw = SPOT_MARKET if market == PERP_MARKET else PERP_MARKET
    market2 = market if _blank(raw) else _choice(errors, "market2", raw, MARKETS)
    if metric == "basis" and market is not None and market2 is not None \
            and {market, market2} != {PERP_MARKET, SPOT_MARKET}:
        errors["market2"] = (f"a basis compares a perpetual ({PERP_MARKET}) leg with a {SPOT_MARKET} leg; got "
                             f"{'two ' + market + ' legs' if market == market2 else market + ' and ' + market2}. "
                             f"Expected market {PERP_MARKET} with market2 {SPOT_MARKET}, or the other way round")
    return None if market2 == market else market2


def _second_leg(errors: dict, fields: Mapping, metric: str | None, symbol: str | None, market: str | None = None,
                market2: str | None = None) -> str | None:
    """`symbol2`: required for pair metrics (a different leg: another symbol or another market), absent
    otherwise; for `basis` the same coin on the other market (blank = `symbol`)."""
    if metric == "basis":
        if _blank(fields.get("symbol2")):
            return symbol
        symbol2 = _symbol(errors, "symbol2", fields.get("symbol2"))
        if symbol2 is not None and symbol is not None and symbol2 != symbol:
            errors["symbol2"] = (f"{symbol2} is another coin; a basis compares the same symbol on spot and the "
                                 f"perpetual, expected {symbol} or empty")
        return symbol2
    if metric in PAIR_METRICS:
        symbol2 = _symbol(errors, "symbol2", fields.get("symbol2"))
        if symbol2 is not None and symbol2 == symbol and market2 is None:
            errors["symbol2"] = f"must differ from symbol ({symbol}) on the same market; a pair needs two legs"
        return symbol2
    if not _blank(fields.get("symbol2")) and metric is not None:
        errors["symbol2"] = f"only pair metrics ({', '.join(PAIR_METRICS)}) take a second symbol; leave it empty for {metric}"
    return None


def _threshold(errors: dict, fields: Mapping, metric: str | None) -> float | None:
    """A finite number within the metric's range (RSI 0-100; counts, rates, lag and prices >= 0)."""
    if _blank(fields.get("threshold")):
        errors["threshold"] = "is required; expected a number"
        return None
    try:
        threshold = _number(fields["threshold"])
    except (TypeError, ValueError):
        errors["threshold"] = f"{fields['threshold']!r} is not a finite number; expected e.g. 2.0"
        return None
    if metric == "rsi" and not 0 <= threshold <= 100:
        errors["threshold"] = f"{threshold:.15g} is outside RSI's range; expected 0-100"
    elif metric == "basis" and abs(threshold) > MAX_BASIS_BPS:
        errors["threshold"] = (f"{threshold:.15g} bps is a basis of more than ±{MAX_BASIS_BPS / 100:g} %; expected "
                               "basis points such as 25 (0.25 %)")
    elif metric == "funding" and abs(threshold) > FUNDING_RATE_MAX:
        errors["threshold"] = (f"{threshold:.15g} is beyond any funding rate (±{FUNDING_RATE_MAX:g} per period); "
                               "expected a rate per funding period as a fraction, e.g. 0.0005 for 0.05 %")
    elif metric in ("volume", "trade_rate", "lag", "price") and threshold < 0:
        errors["threshold"] = f"{threshold:.15g} is negative; expected >= 0 for {metric}"
    return threshold


def _non_negative(errors: dict, fields: Mapping, name: str, default: float, upper: float | None = None) -> float | None:
    v = fields.get(name)
    if _blank(v):
        return default
    try:
        f = _number(v)
    except (TypeError, ValueError):
        errors[name] = f"{v!r} is not a finite number; expected seconds >= 0" if name == "cooldown_s" else \
            f"{v!r} is not a finite number; expected a value >= 0"
        return None
    if f < 0 or (upper is not None and f > upper):
        errors[name] = f"{f:.15g} is out of range; expected 0 to {upper:g}" if upper else f"{f:.15g} is negative; expected >= 0"
        return None
    return f


def _lookback(errors: dict, fields: Mapping, metric: str | None) -> int | None:
    """Bars of history for RSI / z-score / spread (a default when blank); None for other metrics."""
    if metric not in LOOKBACK_METRICS:
        return None
    v = fields.get("lookback")
    lo, hi = LOOKBACK_RANGE[metric]
    if _blank(v):
        return DEFAULT_LOOKBACK[metric]
    try:
        f = _number(v)
        if f != int(f):
            raise ValueError
        lookback = int(f)
    except (TypeError, ValueError):
        errors["lookback"] = f"{v!r} is not a whole number; expected {lo}-{hi} bars"
        return None
    if not lo <= lookback <= hi:
        errors["lookback"] = f"{lookback} bars is out of range; expected {lo}-{hi} bars for {metric}"
        return None
    return lookback


def _note(errors: dict, fields: Mapping) -> str | None:
    note = None if _blank(fields.get("note")) else str(fields["note"]).strip()
    if note is not None and len(note) > MAX_NOTE:
        errors["note"] = f"is {len(note)} characters long; expected at most {MAX_NOTE}"
    return note


def _webhook(errors: dict, fields: Mapping) -> str | None:
    if _blank(fields.get("webhook_url")):
        return None
    try:
        return validate_webhook_url(str(fields["webhook_url"]))
    except ValueError as exc:
        errors["webhook_url"] = str(exc)
        return None


def _enabled(errors: dict, fields: Mapping) -> bool:
    if _blank(fields.get("enabled")):
        return True
    try:
        return _bool(fields["enabled"])
    except ValueError:
        errors["enabled"] = f"{fields['enabled']!r} is not a yes/no value; expected true or false"
        return True


def _rule_id(errors: dict, fields: Mapping) -> int | None:
    if _blank(fields.get("id")):
        return None
    try:
        f = _number(fields["id"])
        if f != int(f) or f < 1:
            raise ValueError
        return int(f)
    except (TypeError, ValueError):
        errors["id"] = f"{fields['id']!r} is not a rule id; expected a positive whole number"
        return None


def rule_from_row(row: Mapping) -> AlertRule:
    """An `AlertRule` from an `alert_rules` row (columns missing from older files take their defaults)."""
    fields = {k: row[k] for k in AlertRule.__dataclass_fields__ if k in row}
    return validate_rule(fields)


class RuleStore:
    """Create / update / enable / delete rules and read rules and events in the tick file.

    Writes go through `tickstore.appwrite.app_write` (the app's one write path: a short transaction, lock conflicts
    retried for `lock_budget_s`, then StoreBusy); reads open read-only. Neither holds the file between calls.
    """

    def __init__(self, db_path: str | os.PathLike | None = None, lock_budget_s: float = RULE_WRITE_BUDGET_S) -> None:
        self.path = Path(db_path) if db_path is not None else default_db_path()
        self.lock_budget_s = lock_budget_s

    def _write(self, atomic: bool = False):
        if not self.path.exists():  # rules live in the tick file; the app never creates it
            raise StoreMissing(f"tick file {self.path} does not exist yet; start the ingestor (make run / make demo) "
                               "to create it, then add rules")
        # verify: a rule is never saved into a damaged file (read in full once per file by this process)
        return app_write(self.path, self.lock_budget_s, atomic=atomic, verify=True)

    def check_in_background(self) -> None:
        """Start the once-per-process read of the whole file that every write waits for (tickstore.appwrite), so
        the first save from a form does not pay it."""
        verify_in_background(self.path)

    def create(self, rule: AlertRule | Mapping) -> AlertRule:
        """Validate and insert a rule; returns it with its id."""
        rule = rule if isinstance(rule, AlertRule) else validate_rule(rule)
        with self._write() as con:
            ensure_schema(con)
            rule_id = alerts_sql.insert_rule(con, rule.to_row())
        log.info("alert rule %d created: %s", rule_id, rule.describe())
        return replace(rule, id=rule_id)

    def create_many(self, rules: list[AlertRule | Mapping]) -> list[AlertRule]:
        """Validate every rule first, then insert them all in one short write (all or none)."""
        valid = [r if isinstance(r, AlertRule) else validate_rule(r) for r in rules]
        with self._write() as con:  # outside the rules' transaction: it may rebuild the catalogue in its own
            ensure_schema(con)
        with self._write(atomic=True) as con:
            ids = [alerts_sql.insert_rule(con, r.to_row()) for r in valid]
        log.info("%d alert rules created", len(ids))
        return [replace(r, id=i) for r, i in zip(valid, ids)]

    def update(self, rule_id: int, rule: AlertRule | Mapping) -> AlertRule:
        """Replace every field of rule `rule_id`; KeyError if it does not exist."""
        rule = rule if isinstance(rule, AlertRule) else validate_rule({k: v for k, v in rule.items() if k != "id"})
        with self._write() as con:
            ensure_schema(con)
            if not alerts_sql.update_rule(con, rule_id, rule.to_row()):
                raise KeyError(f"alert rule {rule_id} does not exist")
        log.info("alert rule %d updated: %s", rule_id, rule.describe())
        return replace(rule, id=int(rule_id))

    def set_enabled(self, rule_id: int, enabled: bool) -> None:
        with self._write() as con:
            if not alerts_sql.update_rule(con, rule_id, {"enabled": bool(enabled)}):
                raise KeyError(f"alert rule {rule_id} does not exist")
        log.info("alert rule %d %s", rule_id, "enabled" if enabled else "disabled")

    def delete(self, rule_id: int) -> None:
        with self._write() as con:
            if not alerts_sql.delete_rule(con, rule_id):
                raise KeyError(f"alert rule {rule_id} does not exist")
        log.info("alert rule %d deleted", rule_id)

    def get(self, rule_id: int) -> AlertRule | None:
        with read_connection(self.path) as con:
            row = alerts_sql.get_rule(con, rule_id)
        return None if row is None else rule_from_row(row)

    def list(self) -> list[AlertRule]:
        """Every rule, by id. A row that fails validation (edited by hand) is logged and skipped."""
        with read_connection(self.path) as con:
            rows = alerts_sql.fetch_rules(con)
        return rules_from_rows(rows)

    def events(self, *, after_id: int | None = None, rule_id: int | None = None, symbol: str | None = None,
               metric: str | None = None, start: dt.datetime | None = None, end: dt.datetime | None = None,
               limit: int = 1000) -> pd.DataFrame:
        """Alert history, newest first (see `tickstore.alerts_sql.fetch_events`)."""
        with read_connection(self.path) as con:
            return alerts_sql.fetch_events(con, after_id=after_id, rule_id=rule_id, symbol=symbol, metric=metric,
                                           start=start, end=end, limit=limit)

    def max_event_id(self) -> int:
        with read_connection(self.path) as con:
            return alerts_sql.max_event_id(con)


def rules_from_rows(rows: list[Mapping]) -> list[AlertRule]:
    out = []
    for row in rows:
        try:
            out.append(rule_from_row(row))
        except RuleValidationError as exc:
            log.warning("alert rule %s skipped: %s", row.get("id"), exc)
    return out
