"""Human text for alert values: event messages and the "now: z = 1.70, fires above 2" rule preview."""
from __future__ import annotations

import math

from alerts.rules import AlertRule

SYMBOLS = {"price": "price", "zscore": "z", "rsi": "RSI", "volume": "volume", "trade_rate": "trades/s",
           "spread": "spread", "lag": "lag", "basis": "basis", "funding": "funding"}
UNITS = {"lag": " s", "basis": " bps"}


def format_value(metric: str, value: float | None) -> str:
    """A metric value with sensible precision (prices keep their significant digits)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "never" if metric == "lag" else ("+inf" if value > 0 else "-inf")
    if metric in ("zscore", "rsi"):
        text = f"{value:.2f}"
    elif metric == "trade_rate":
        text = f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    elif metric == "lag":
        text = f"{value:.1f}"
    elif metric == "basis":
        text = f"{value:+.2f}"
    elif metric == "funding":
        text = f"{value:.6g} ({value * 100:+.4f} %)"
    else:
        text = f"{value:,.10g}" if abs(value) < 1e10 else f"{value:,.0f}"
    return text + UNITS.get(metric, "")


def _what(rule: AlertRule) -> str:
    if rule.metric in ("rsi", "zscore", "spread"):
        return f"{SYMBOLS[rule.metric]}({rule.timeframe}, {rule.lookback})"
    if rule.metric in ("volume", "trade_rate"):
        return f"{SYMBOLS[rule.metric]} over {rule.timeframe}"
    return SYMBOLS[rule.metric]


def event_message(rule: AlertRule, value: float, detail: str = "") -> str:
    """E.g. `BTCUSDT price 65,010.5 crossed above 65,000 — breakout level`."""
    verb = {">": "above", "<": "below", "crosses_above": "crossed above", "crosses_below": "crossed below"}[rule.op]
    msg = f"{rule.subject} {_what(rule)} {format_value(rule.metric, value)} {verb} " \
          f"{format_value(rule.metric, rule.threshold)}"
    if rule.metric == "lag" and detail == "disconnected":
        msg += " (disconnected)"
    if rule.note:
        msg += f" — {rule.note}"
    return msg


def fires_text(rule: AlertRule) -> str:
    """`fires above 2`, `fires when it crosses below 30`, with the re-arm band when hysteresis is set."""
    thr = format_value(rule.metric, rule.threshold)
    text = {">": f"fires above {thr}", "<": f"fires below {thr}",
            "crosses_above": f"fires when it crosses above {thr}",
            "crosses_below": f"fires when it crosses below {thr}"}[rule.op]
    if rule.hysteresis:
        above = rule.op in (">", "crosses_above")
        band = rule.threshold - rule.hysteresis if above else rule.threshold + rule.hysteresis
        text += f", re-arms {'below' if above else 'above'} {format_value(rule.metric, band)}"
    return text


def preview_text(rule: AlertRule, value: float | None, detail: str = "") -> str:
    """E.g. `now: z = 1.70, fires above 2` or `now: n/a (need 30 1m bars, have 12), fires above 2`."""
    now = f"{SYMBOLS[rule.metric]} = {format_value(rule.metric, value)}"
    if value is None and detail:
        now = f"n/a ({detail})"
    elif rule.metric == "lag" and detail:
        now += f" ({detail})"
    return f"now: {now}, {fires_text(rule)}"
