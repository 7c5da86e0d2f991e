"""Alerts in the app: the toast poller every page runs, and the cached reads / writes behind pages/alerts.py.

Rules are evaluated by the ingestor, never here: the app only writes rule rows (a short write connection with
lock retries) and reads `alert_events`. The poller keeps the last event id it has shown in `st.session_state`
(initialised to the newest id when the session starts, so old events never toast) and calls `st.toast` once
per new event in every open session. Reads are cached process-wide per refresh bucket, so N open tabs cost
one query per interval.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from alerts.rules import METRIC_LABELS, AlertRule, RuleStore, RuleValidationError, validate_rule
from alerts.text import preview_text
from tickstore.connection import StoreBusy, StoreError, StoreMissing

if TYPE_CHECKING:
    from alerts.metrics import Observation

ROOT = Path(__file__).resolve().parent.parent

log = logging.getLogger(__name__)

POLL_S = 2.0                 # toast poller interval
RECENT_EVENTS = 50           # events read per poll (more than this between two polls are summarised)
MAX_TOASTS_PER_POLL = 5
LAST_SEEN_KEY = "_alerts_last_event_id"
LAST_RULES_KEY = "_alerts_last_rules"
HISTORY_LIMIT = 10_000
WRITE_TIMEOUT_S = 60.0
EVENT_COLUMNS = ["id", "fired_at", "rule_id", "market", "symbol", "symbol2", "metric", "op", "threshold", "value",
                 "observed_at", "message"]


def _bucket(every_s: float) -> int:
    return int(time.time() // max(every_s, 0.5))


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


def _read(fn, *args):
    """(value, problem): problem is a plain-words sentence when the file is missing, locked or unreadable."""
    try:
        return fn(*args), None
    except StoreMissing as exc:
        return None, str(exc)
    except StoreBusy:
        return None, "The ingestor is holding the file lock; retrying on the next refresh."
    except StoreError as exc:
        return None, str(exc)
    except Exception as exc:  # never a traceback on the page
        log.exception("alerts read failed")
        return None, f"could not read alerts from the tick file: {exc}"


def rules(path: str, refresh_s: float = POLL_S) -> tuple[list[AlertRule] | None, str | None]:
    """(rules, problem). While the file is locked, this session's last good list comes back with the problem."""
    value, problem = _read(_rules, str(path), _bucket(refresh_s))
    last_good = st.session_state.setdefault(LAST_RULES_KEY, {})
    if value is not None:
        last_good[str(path)] = value
    elif str(path) in last_good and problem and "lock" in problem:
        return last_good[str(path)], problem
    return value, problem


def retry_until_readable(path: str, every_s: float = POLL_S) -> None:
    """A fragment that reruns the page as soon as the rules can be read (file created, lock released)."""

    @st.fragment(run_every=every_s)
    def _alerts_retry() -> None:
        value, _ = _read(_rules, str(path), _bucket(every_s))
        if value is not None:
            st.rerun()

    _alerts_retry()


def history(path: str, rule_id: int | None = None, symbol: str | None = None, metric: str | None = None,
            start: dt.datetime | None = None, end: dt.datetime | None = None, refresh_s: float = POLL_S
            ) -> tuple[pd.DataFrame | None, str | None]:
    df, problem = _read(_history, str(path), rule_id, symbol, metric, start, end, _bucket(refresh_s))
    if df is not None:
        df = df[[c for c in EVENT_COLUMNS if c in df.columns]]
    return df, problem


def preview(path: str, rule: AlertRule, refresh_s: float = POLL_S) -> str:
    """`now: z = 1.70, fires above 2.00` for a (validated, maybe unsaved) rule."""
    obs, problem = _read(_preview, str(path), rule, _bucket(refresh_s))
    if obs is None:
        return f"now: unknown ({problem})"
    return preview_text(rule, obs.value, obs.detail)


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


# ---------------------------------------------------------------- writes (in a helper process)
# DuckDB refuses a read-write open of a file this process already has open read-only (and the reverse) with a
# non-lock "different configuration" error, and other sessions of this server read the file all the time. So
# rule writes run in a short-lived `python -m alerts.cli` process: there they are ordinary cross-process lock
# conflicts, which both sides retry.
def _cli(path: str, *args: str) -> dict:
    cmd = [sys.executable, "-m", "alerts.cli", "--db", str(path), *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=WRITE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"ok": False, "kind": "error", "error": f"saving took longer than {WRITE_TIMEOUT_S:.0f} s; try again"}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        log.error("alerts.cli failed (exit %s): %s", proc.returncode, proc.stderr[-2000:])
        return {"ok": False, "kind": "error", "error": f"the rule writer failed (exit {proc.returncode})"}


def _problem(out: dict) -> str:
    if out.get("kind") == "busy":
        return "The tick file stayed locked for 5 s (a long import?); nothing was saved. Try again."
    return out.get("error") or "unknown error"


def save_rule(path: str, fields: dict, rule_id: int | None = None) -> tuple[AlertRule | None, dict[str, str]]:
    """Validate and create (or update) a rule: (rule, {}) or (None, {field: message})."""
    try:
        rule = validate_rule(fields)
    except RuleValidationError as exc:
        return None, exc.errors
    body = json.dumps(rule.to_row())
    out = _cli(path, "update", str(rule_id), body) if rule_id is not None else _cli(path, "create", body)
    if not out.get("ok"):
        return None, out.get("errors") or {"file": _problem(out)}
    clear_caches()
    return validate_rule(out["rule"]), {}


def set_enabled(path: str, rule_id: int, enabled: bool) -> str | None:
    out = _cli(path, "enable" if enabled else "disable", str(rule_id))
    clear_caches()
    return None if out.get("ok") else _problem(out)


def delete_rule(path: str, rule_id: int) -> str | None:
    out = _cli(path, "delete", str(rule_id))
    clear_caches()
    return None if out.get("ok") else _problem(out)


# ---------------------------------------------------------------- labels for the form
def metric_label(m: str) -> str:
    return METRIC_LABELS[m]


def op_label(o: str) -> str:
    return {">": "is above", "<": "is below", "crosses_above": "crosses above", "crosses_below": "crosses below"}[o]


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
        ev, problem = _read(_recent_events, path, _bucket(every_s))
        last = st.session_state.get(LAST_SEEN_KEY)
        if ev is None:
            if last is None and problem and "does not exist" in problem:
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
