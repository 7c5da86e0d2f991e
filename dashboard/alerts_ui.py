"""Alerts in the app: the toast poller every page runs, and the cached reads / writes behind app_pages/alerts.py.

Rules are evaluated by the ingestor, never here: the app only writes rule rows and reads `alert_events`.
Reads go through `dashboard.data.guarded` like every other query of the app: cached process-wide per refresh
bucket (N open tabs cost one query per interval), a `Loaded` result, and this session's last good copy while
the file stays locked. Writes run in this process through the app's one write path (`RuleStore` →
`tickstore.appwrite.app_write`; see docs/dashboard.md) and report failures by exception class.
The poller keeps the last event id it has shown in `st.session_state` (initialised to the newest id when the
session starts, so old events never toast) and calls `st.toast` once per new event in every open session.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from alerts.rules import METRIC_LABELS, OP_LABELS, AlertRule, RuleStore, RuleValidationError, validate_rule
# The rule facts the Alerts form is built from (defined once in alerts.rules; pages import only dashboard).
from alerts.rules import (DEFAULT_LOOKBACK, LOOKBACK_METRICS, MARKETS, METRICS, OPS, PAIR_METRICS,  # noqa: F401
                          TIMEFRAME_METRICS, TIMEFRAMES)
from alerts.text import preview_text
from dashboard.data import Loaded, bucket, guarded
from tickstore.appwrite import RULE_WRITE_BUDGET_S, StoreBusy, StoreError

if TYPE_CHECKING:
    from alerts.metrics import Observation

log = logging.getLogger(__name__)

POLL_S = 2.0                 # toast poller interval
RECENT_EVENTS = 50           # events read per poll (more than this between two polls are summarised)
MAX_TOASTS_PER_POLL = 5
LAST_SEEN_KEY = "_alerts_last_event_id"
HISTORY_LIMIT = 10_000
EVENT_COLUMNS = ["id", "fired_at", "rule_id", "market", "symbol", "market2", "symbol2", "metric", "op", "threshold",
                 "value", "observed_at", "message"]


# ---------------------------------------------------------------- cached reads (plain arguments only)
@st.cache_data(ttl=60, max_entries=64, show_spinner=False)
def _recent_events(path: str, bucket: int) -> pd.DataFrame:
    return RuleStore(path).events(limit=RECENT_EVENTS)


@st.cache_data(ttl=60, max_entries=64, show_spinner=False)
def _rules(path: str, bucket: int) -> list[AlertRule]:
    return RuleStore(path).list()


@st.cache_data(ttl=60, max_entries=256, show_spinner=False)
def _history(path: str, rule_id: int | None, symbol: str | None, metric: str | None, start: dt.datetime | None,
             end: dt.datetime | None, bucket: int) -> pd.DataFrame:
    return RuleStore(path).events(rule_id=rule_id, symbol=symbol, metric=metric, start=start, end=end,
                                  limit=HISTORY_LIMIT)


@st.cache_data(ttl=60, max_entries=256, show_spinner=False)
def _preview(path: str, rule: AlertRule, bucket: int) -> Observation:
    from alerts.metrics import current_value  # here: the entrypoint imports this module, and metrics pulls scipy

    return current_value(rule, path)


def rules(path: str, refresh_s: float = POLL_S) -> Loaded[list[AlertRule]]:
    """Every rule; while the file is locked, this session's last good list (state 'stale')."""
    return guarded(("alert_rules", str(path)), _rules, str(path), bucket(refresh_s))


def retry_until_readable(path: str, every_s: float = POLL_S) -> None:
    """A fragment that reruns the page as soon as the rules can be read (file created, lock released)."""

    @st.fragment(run_every=every_s)
    def _alerts_retry() -> None:
        if rules(path, every_s).value is not None:
            st.rerun()

    _alerts_retry()


def history(path: str, rule_id: int | None = None, symbol: str | None = None, metric: str | None = None,
            start: dt.datetime | None = None, end: dt.datetime | None = None, refresh_s: float = POLL_S
            ) -> Loaded[pd.DataFrame]:
    """Alert events (newest first, at most HISTORY_LIMIT) matching the filters, in EVENT_COLUMNS order."""
    res = guarded(("alert_history", str(path), rule_id, symbol, metric, start, end), _history, str(path), rule_id,
                  symbol, metric, start, end, bucket(refresh_s))
    if res.value is None:
        return res
    return Loaded(res.value[[c for c in EVENT_COLUMNS if c in res.value.columns]], res.state, res.message, res.as_of)


def preview(path: str, rule: AlertRule, refresh_s: float = POLL_S) -> str:
    """`now: z = 1.70, fires above 2.00` for a (validated, maybe unsaved) rule."""
    res = guarded(("alert_preview", str(path), rule), _preview, str(path), rule, bucket(refresh_s))
    if res.value is None:
        return f"now: unknown ({res.message})"
    return preview_text(rule, res.value.value, res.value.detail)


def events_csv(df: pd.DataFrame) -> bytes:
    """History as CSV with ISO-8601 UTC times."""
    out = df.copy()
    for c in ("fired_at", "observed_at"):
        if c in out.columns:
            out[c] = pd.to_datetime(out[c], utc=True).map(lambda t: t.isoformat() if pd.notna(t) else "")
    return out.to_csv(index=False).encode()


def clear_caches() -> None:
    """After a write: the next read sees the change at once."""
    _rules.clear()
    _history.clear()


def prepare_writes(path: str) -> None:
    """Called when a page with rule forms opens: the file check every first save waits for starts now."""
    RuleStore(path).check_in_background()


def check(fields: Mapping) -> tuple[AlertRule | None, dict[str, str]]:
    """Validate form fields without saving: (rule, {}) or (None, {field: message})."""
    try:
        return validate_rule(fields), {}
    except RuleValidationError as exc:
        return None, exc.errors


# ---------------------------------------------------------------- writes (in this process, see module docstring)
def _write_problem(exc: Exception) -> str:
    """One sentence for a failed write, chosen by the exception's class."""
    if isinstance(exc, StoreBusy):
        return (f"The tick file stayed locked for {RULE_WRITE_BUDGET_S:.0f} s (a long import or archive run?); "
                "nothing was saved. Try again.")
    if isinstance(exc, KeyError):  # RuleStore: no such rule (deleted in another tab)
        return str(exc).strip("'\"")
    return str(exc)  # StoreMissing / StoreError say what is wrong and what is expected


def save_rule(path: str, fields: Mapping, rule_id: int | None = None) -> tuple[AlertRule | None, dict[str, str]]:
    """Validate and create (or update) a rule: (rule with its id, {}) or (None, {field: message}).

    The one call for any page that creates a rule (the Alerts form, a "watch this pair" button): field errors come
    back per field, a file problem under the key "file"; the cached reads are cleared on success.
    """
    try:
        rule = validate_rule(fields)
        store = RuleStore(path)
        saved = store.update(rule_id, rule) if rule_id is not None else store.create(rule)
    except RuleValidationError as exc:
        return None, exc.errors
    except (StoreError, KeyError) as exc:
        return None, {"file": _write_problem(exc)}
    clear_caches()
    return saved, {}


def set_enabled(path: str, rule_id: int, enabled: bool) -> str | None:
    """Turn a rule on or off; None, or why it failed."""
    return _change(lambda store: store.set_enabled(rule_id, enabled), path)


def delete_rule(path: str, rule_id: int) -> str | None:
    """Delete a rule (its events stay); None, or why it failed."""
    return _change(lambda store: store.delete(rule_id), path)


def _change(action, path: str) -> str | None:
    try:
        action(RuleStore(path))
    except (StoreError, KeyError) as exc:
        return _write_problem(exc)
    finally:
        clear_caches()
    return None


# ---------------------------------------------------------------- labels for the form
def metric_label(m: str) -> str:
    return METRIC_LABELS[m]


def op_label(o: str) -> str:
    return "is " + OP_LABELS[o] if o in ("<", ">") else OP_LABELS[o]


def rules_table(rules_: list[AlertRule], events: pd.DataFrame | None) -> pd.DataFrame:
    """One row per rule for display: id, on/off, description, cooldown, webhook, note, last fired, firings."""
    last = {}
    counts = {}
    if events is not None and not events.empty:
        g = events.groupby("rule_id")
        last = g["fired_at"].max().to_dict()
        counts = g.size().to_dict()
    rows = [{"id": r.id, "enabled": r.enabled, "rule": r.describe(), "cooldown_s": r.cooldown_s,
             "hysteresis": r.hysteresis, "webhook": r.webhook_url or "", "note": r.note or "",
             "last_fired": last.get(r.id), "fired": int(counts.get(r.id, 0))} for r in rules_]
    return pd.DataFrame(rows, columns=["id", "enabled", "rule", "cooldown_s", "hysteresis", "webhook", "note",
                                       "last_fired", "fired"])


# ---------------------------------------------------------------- toast poller (every page)
def toast_poller(db_path: str, every_s: float = POLL_S) -> None:
    """A fragment that toasts each new alert event once in this session (call it from the entrypoint)."""
    path = str(db_path)

    @st.fragment(run_every=every_s)
    def _alerts_toasts() -> None:
        res = guarded(("alert_recent", path), _recent_events, path, bucket(every_s))
        ev = res.value
        last = st.session_state.get(LAST_SEEN_KEY)
        if ev is None:
            if last is None and res.state == "missing":
                st.session_state[LAST_SEEN_KEY] = 0  # no file yet: every future event is new
            return
        newest = int(ev["id"].max()) if not ev.empty else 0
        if last is None:  # session start: old events never toast
            st.session_state[LAST_SEEN_KEY] = newest
            return
        new = ev[ev["id"] > last].sort_values("id")
        if new.empty:
            return
        shown = new.tail(MAX_TOASTS_PER_POLL)
        missed = len(new) - len(shown)
        if len(new) >= RECENT_EVENTS:  # the window may have cut some off: count them from the ids
            missed += max(0, int(new["id"].min()) - last - 1)
        if missed > 0:
            st.toast(f"{missed} more alerts fired — see the Alerts page", icon=":material/notifications:",
                     duration="long")
        for row in shown.itertuples():
            st.toast(f"**Alert** · {row.message}  \n{_when(row.fired_at)}", icon=":material/notifications_active:",
                     duration="long")
        st.session_state[LAST_SEEN_KEY] = max(last, newest)

    _alerts_toasts()


def _when(ts) -> str:
    t = pd.Timestamp(ts)
    if pd.isna(t):
        return ""
    return t.tz_convert("UTC").strftime("%H:%M:%S UTC")
