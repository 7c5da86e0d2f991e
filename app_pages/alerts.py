"""Alerts: create / edit / enable / delete rules with a live preview, and the alert history (filters, CSV).

Rules are evaluated by the ingestor after each flush, not by this page; a new or edited rule takes effect
within about a second. Each firing appears as a toast on every open page (see dashboard/alerts_ui.py).
"""
from __future__ import annotations

import datetime as dt

import streamlit as st

from dashboard import alerts_ui, downloads, settings, ui
from dashboard.alerts_ui import (DEFAULT_LOOKBACK, LOOKBACK_METRICS, MARKETS, METRICS, OPS, PAIR_METRICS,
                                 TIMEFRAME_METRICS, TIMEFRAMES, AlertRule)

s = settings.current()
db = s.db_path
alerts_ui.prepare_writes(db)
FLASH = "_alerts_flash"
SEL = "alerts_rule"
NONCE = "_alerts_form_nonce"
NEW = "new"   # the Edit box's "+ New rule" (not None: a None value would show as no selection, "Choose an option")
ALL_RULES = "all"   # the history filter's "All rules", likewise

st.header("Alerts", anchor=False)
st.caption("Rules are evaluated by the ingestor after every flush (~4× a second), so they fire with no browser "
           "open and exactly once however many tabs are open. Each firing is stored in the history and pops up "
           "as a toast on every open page.")

loaded = alerts_ui.rules(db)
if loaded.value is None:
    ui.explain(loaded.state, f"{ui.sentence(loaded.message)} Alert rules live in the tick file.")
    alerts_ui.retry_until_readable(db)  # the page comes alive once the file can be read
    st.stop()
ui.explain(loaded.state, loaded.message)  # 'stale': the rules as last read, and why
rules = loaded.value
by_id = {r.id: r for r in rules}


# ---------------------------------------------------------------- flash messages from the last action
def show_flash() -> None:
    flash = st.session_state.pop(FLASH, None)
    if not flash:
        return
    kind, payload = flash
    if kind == "ok":
        st.success(payload, icon=":material/check_circle:")
    else:
        st.error("The rule was not saved:\n" + "\n".join(f"- **{k}**: {v}" for k, v in payload.items()),
                 icon=":material/error:")


# ---------------------------------------------------------------- rule editor
if SEL in st.session_state and st.session_state[SEL] not in (NEW, *by_id):
    st.session_state[SEL] = NEW  # deleted elsewhere
st.subheader("Rules", anchor=False)
if rules:
    st.dataframe(alerts_ui.rules_table(rules, alerts_ui.history(db).value), hide_index=True, width="stretch",
                 column_config={"id": st.column_config.NumberColumn("#", width="small"),
                                "enabled": st.column_config.CheckboxColumn("On", width="small"),
                                "cooldown_s": st.column_config.NumberColumn("Cooldown (s)", format="%g"),
                                "hysteresis": st.column_config.NumberColumn("Hysteresis", format="%g"),
                                "last_fired": st.column_config.DatetimeColumn("Last fired (UTC)",
                                                                              format="YYYY-MM-DD HH:mm:ss",
                                                                              timezone="UTC"),
                                "fired": st.column_config.NumberColumn("Firings"),
                                "rule": st.column_config.TextColumn("Rule", width="large"),
                                "webhook": "Webhook", "note": "Note"})
else:
    st.caption("No rules yet: create one below.")

selected = st.selectbox("Edit", [NEW, *by_id], key=SEL,
                        format_func=lambda i: "+ New rule" if i == NEW else f"#{i} · {by_id[i].describe()}")
rule: AlertRule | None = by_id.get(selected)
k = f"{selected}_{st.session_state.get(NONCE, 0)}"  # fresh widgets per rule (and after a create)
symbols = list(s.all_symbols) or ["BTCUSDT", "ETHUSDT"]


def key(field: str) -> str:
    return f"af_{field}_{k}"


def _index(options, value, default=0) -> int:
    return list(options).index(value) if value in options else default


with st.container(border=True):
    c = st.columns([1.3, 1, 1, 1])
    metric = c[0].selectbox("Metric", METRICS, index=_index(METRICS, rule.metric if rule else "price"),
                            format_func=alerts_ui.metric_label, key=key("metric"))
    y_leg, x_leg = s.y_leg, s.x_leg
    market = c[1].selectbox("Market", MARKETS, index=_index(MARKETS, rule.market if rule else
                                                            (y_leg.market if y_leg else s.market)),
                            key=key("market"),
                            help="For a basis: the perpetual (usdm) or the spot leg; Market 2 is the other one. "
                                 "Funding: usdm.")
    sym_default = rule.symbol if rule else (y_leg.symbol if y_leg else symbols[0])
    sym_opts = sorted({*symbols, sym_default})
    c[2].selectbox("Symbol" if metric not in PAIR_METRICS else "Symbol (y leg)", sym_opts,
                   index=_index(sym_opts, sym_default), accept_new_options=True, key=key("symbol"))
    if metric in PAIR_METRICS and metric != "basis":
        x_default = (rule.symbol2 if rule and rule.symbol2 else None) or (x_leg.symbol if x_leg else None) or \
            next((x for x in sym_opts if x != sym_default), sym_default)
        x_opts = sorted({*symbols, x_default})
        c[3].selectbox("Symbol 2 (x leg)", x_opts, index=_index(x_opts, x_default), accept_new_options=True,
                       key=key("symbol2"))
    c = st.columns([1.3, 1, 1, 1])
    if metric in TIMEFRAME_METRICS:
        c[0].segmented_control("Timeframe" if metric in LOOKBACK_METRICS else "Window",
                               TIMEFRAMES, default=rule.timeframe if rule else s.timeframe if s.timeframe in
                               TIMEFRAMES else "1m", key=key("timeframe"),
                               help="Bar length" if metric in LOOKBACK_METRICS else "Trailing window")
    if metric in PAIR_METRICS:
        m2_default = (rule.leg2_market if rule else None) or \
            ({"usdm": "spot", "spot": "usdm"}.get(market, market) if metric == "basis" else
             (x_leg.market if x_leg else market))
        c[2].selectbox("Market 2 (x leg)" if metric != "basis" else "Market 2 (other leg)", MARKETS,
                       index=_index(MARKETS, m2_default), key=key("market2"),
                       help="The second leg's market: spot against the perpetual (usdm) pairs a coin with itself. "
                            "A basis compares the same symbol on usdm and spot.")
    if metric in LOOKBACK_METRICS:
        # no min/max on the box: an out-of-range number reaches the rule check, which names the range (preview
        # line below, and on save) instead of the browser silently keeping the previous value
        c[1].number_input("Lookback (bars)", step=1,
                          value=int(rule.lookback if rule and rule.lookback else DEFAULT_LOOKBACK[metric]),
                          key=key(f"lookback_{metric}"),
                          help="RSI period" if metric == "rsi" else "Bars for the hedge ratio and the z-score")
    c = st.columns([1.3, 1, 1, 1])
    c[0].selectbox("Condition", OPS, index=_index(OPS, rule.op if rule else "crosses_above"),
                   format_func=alerts_ui.op_label, key=key("op"))
    c[1].text_input("Threshold", value=f"{rule.threshold:.15g}" if rule else "", key=key("threshold"),
                    placeholder={"basis": "bps, e.g. 25", "funding": "rate per period, e.g. 0.0005"}.get(metric,
                                                                                                       "e.g. 2.0"),
                    help={"basis": "Basis in basis points: (perp / spot − 1) × 10,000.",
                          "funding": "Funding rate per funding period as a fraction: 0.0005 = 0.05 %."}.get(metric))
    c[2].text_input("Hysteresis", value=f"{rule.hysteresis:.15g}" if rule else "0", key=key("hysteresis"),
                    help="After firing, re-arm only once the value is back past threshold ∓ hysteresis")
    c[3].number_input("Cooldown (s)", value=float(rule.cooldown_s if rule else 60.0), step=10.0,
                      key=key("cooldown_s"), help="Minimum time between two firings; crossings within it are skipped")
    c = st.columns([1.3, 2, 1])
    c[0].text_input("Note (optional)", value=(rule.note or "") if rule else "", key=key("note"))
    c[1].text_input("Webhook URL (optional)", value=(rule.webhook_url or "") if rule else "", key=key("webhook_url"),
                    placeholder="https://example.com/hook — receives a JSON POST per firing")
    c[2].checkbox("Enabled", value=rule.enabled if rule else True, key=key("enabled"))


def form_fields() -> dict:
    """The editor's current values as rule fields (only those that apply to the chosen metric)."""
    ss = st.session_state
    m = ss[key("metric")]
    fields = {f: ss.get(key(f)) for f in ("metric", "market", "symbol", "op", "threshold", "hysteresis",
                                           "cooldown_s", "note", "webhook_url", "enabled")}
    if m in PAIR_METRICS:
        fields["market2"] = ss.get(key("market2"))
        if m != "basis":
            fields["symbol2"] = ss.get(key("symbol2"))
    if m in TIMEFRAME_METRICS:
        fields["timeframe"] = ss.get(key("timeframe"))
    if m in LOOKBACK_METRICS:
        fields["lookback"] = ss.get(key(f"lookback_{m}"))
    return fields


def on_save() -> None:
    saved, errors = alerts_ui.save_rule(db, form_fields(), rule.id if rule else None)
    if errors:
        st.session_state[FLASH] = ("errors", errors)
        return
    st.session_state[FLASH] = ("ok", f"Rule #{saved.id} {'updated' if rule else 'created'}: {saved.describe()}. "
                                     "The ingestor picks it up within about a second.")
    if rule is None:
        st.session_state[NONCE] = st.session_state.get(NONCE, 0) + 1
    st.session_state[SEL] = saved.id


def on_toggle() -> None:
    err = alerts_ui.set_enabled(db, rule.id, not rule.enabled)
    st.session_state[FLASH] = ("errors", {"file": err}) if err else \
        ("ok", f"Rule #{rule.id} {'disabled' if rule.enabled else 'enabled'}.")


def on_delete() -> None:
    err = alerts_ui.delete_rule(db, rule.id)
    if err:
        st.session_state[FLASH] = ("errors", {"file": err})
        return
    st.session_state[FLASH] = ("ok", f"Rule #{rule.id} deleted (its history stays).")
    st.session_state[SEL] = NEW


# live preview of the form as it stands (validated quietly; errors show on save)
candidate, problems = alerts_ui.check(form_fields())
if candidate is None:
    st.caption(":material/visibility: Preview: " + "; ".join(f"{f} {m}" for f, m in problems.items()))
else:
    st.info(alerts_ui.preview(db, candidate), icon=":material/monitoring:")

b = st.columns([1, 1, 1, 3])
b[0].button("Save changes" if rule else "Create rule", type="primary", on_click=on_save, key="alerts_save",
            icon=":material/save:")
if rule is not None:
    b[1].button("Disable" if rule.enabled else "Enable", on_click=on_toggle, key="alerts_toggle",
                icon=":material/toggle_on:" if rule.enabled else ":material/toggle_off:")
    with b[2].popover("Delete", icon=":material/delete:"):
        st.write(f"Delete rule #{rule.id}? Its history stays.")
        st.button("Delete rule", type="primary", on_click=on_delete, key="alerts_delete")
show_flash()


# ---------------------------------------------------------------- history
st.subheader("History", anchor=False)


HISTORY_CSV = "ah_csv"


@st.fragment(run_every=alerts_ui.POLL_S * 2)
def history_panel() -> None:
    df = history_table()
    if df is None or df.empty:
        downloads.offer(HISTORY_CSV).withhold("no alerts fired for the filters on the page")
    else:
        downloads.offer(HISTORY_CSV).set(lambda: alerts_ui.events_csv(df))


def history_table():
    """The history panel's filters and table; returns the events shown (None when they cannot be read)."""
    c = st.columns([1.5, 1, 1, 1.5])
    rule_ids = [ALL_RULES, *sorted({*by_id})]
    if st.session_state.get("ah_rule", ALL_RULES) not in rule_ids:
        st.session_state["ah_rule"] = ALL_RULES  # its rule was deleted: all rules, not an empty box
    rid = c[0].selectbox("Rule", rule_ids, key="ah_rule",
                         format_func=lambda i: "All rules" if i == ALL_RULES else f"#{i} · {by_id[i].describe()}")
    rid = None if rid == ALL_RULES else rid
    sym = c[1].selectbox("Symbol", [None, *symbols], key="ah_symbol", format_func=lambda v: v or "All symbols")
    met = c[2].selectbox("Metric", [None, *METRICS], key="ah_metric",
                         format_func=lambda v: "All metrics" if v is None else alerts_ui.metric_label(v))
    today = dt.datetime.now(dt.UTC).date()
    days = c[3].date_input("Fired between (UTC dates)", value=(today - dt.timedelta(days=7), today), key="ah_days")
    start = end = None
    if isinstance(days, (tuple, list)) and len(days) == 2:
        start = dt.datetime.combine(days[0], dt.time(), tzinfo=dt.UTC)
        end = dt.datetime.combine(days[1], dt.time(), tzinfo=dt.UTC) + dt.timedelta(days=1)
    res = alerts_ui.history(db, rid, sym, met, start, end)
    ui.explain(res.state, res.message)
    if res.value is None:
        return None
    df = res.value
    if df.empty:
        st.caption("No alerts fired for these filters yet.")
        return df
    shown = df.assign(**{c: df[c].map(f, na_action="ignore") for c, f in
                         (("metric", alerts_ui.metric_label), ("op", alerts_ui.op_label)) if c in df.columns})
    st.dataframe(shown, hide_index=True, width="stretch", key="ah_table",
                 column_config={"fired_at": st.column_config.DatetimeColumn("Fired (UTC)",
                                                                            format="YYYY-MM-DD HH:mm:ss",
                                                                            timezone="UTC"),
                                "observed_at": st.column_config.DatetimeColumn("Observed (UTC)",
                                                                               format="YYYY-MM-DD HH:mm:ss.SSS",
                                                                               timezone="UTC"),
                                # %g alone prints every digit of the float (3.1425145608254823) in the grid
                                "value": st.column_config.NumberColumn("Value", format="%.8g"),
                                "threshold": st.column_config.NumberColumn("Threshold", format="%g"),
                                "id": "Event", "rule_id": "Rule", "market": "Market", "symbol": "Symbol",
                                "market2": "Market 2", "symbol2": "Symbol 2", "message": "Message",
                                "metric": st.column_config.TextColumn("Metric"),
                                "op": st.column_config.TextColumn("Condition")})
    clipped = f" (the newest {alerts_ui.HISTORY_LIMIT})" if len(df) >= alerts_ui.HISTORY_LIMIT else ""
    st.caption(f"{len(df)} event{'s' if len(df) != 1 else ''}{clipped}; times in UTC.")
    return df


history_panel()
# outside the refreshing fragment: works on every click (dashboard.downloads)
downloads.button("Download CSV", HISTORY_CSV, "alert_events.csv",
                 help="The events listed above (with the filters there), as on the page when you click.")
