"""AppTest: the Alerts page (create / validate / edit / disable / delete rules, preview, history + CSV) and the
toast poller every page runs (one toast per new event per session; old events never toast)."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest

from alerts.rules import RuleStore
from dashboard import alerts_ui
from tests.conftest import assert_no_exception, page_text
from tickstore import alerts_sql
from tickstore.connection import write_connection

PAGE = "app_pages/alerts.py"


def fire(db, rule_id: int, message: str, value: float = 1.0, **extra) -> None:
    """Append an alert event as the ingestor's engine would."""
    with write_connection(db) as con:
        alerts_sql.insert_events(con, [{"rule_id": rule_id, "fired_at": dt.datetime.now(dt.UTC), "value": value,
                                        "message": message, "market": "spot", "symbol": "BTCUSDT",
                                        "metric": "price", **extra}])


def rerun_fresh(at):
    """Re-run after the cached reads' time bucket has moved on (what a browser sees on the next poll)."""
    alerts_ui._recent_events.clear()
    alerts_ui._rules.clear()
    alerts_ui._history.clear()
    return at.run()


def test_missing_file_is_explained_and_never_created(app, tmp_path):
    db = tmp_path / "nowhere" / "ticks.duckdb"
    at = app(db, page=PAGE)
    assert_no_exception(at)
    assert "does not exist yet" in page_text(at)
    assert not db.exists()


def test_history_names_both_legs_markets_in_words(app, tick_db):
    """A basis event lists its other leg's market; metric and condition read as on the form; the CSV keeps the
    stored names."""
    store = RuleStore(tick_db)
    r = store.create({"symbol": "BTCUSDT", "metric": "basis", "market": "usdm", "market2": "spot", "op": ">",
                      "threshold": 3})
    fire(tick_db, r.id, "BTCUSDT basis 3.14 bps above 3", 3.1425145608254823, market="usdm", market2="spot",
         symbol2="BTCUSDT", metric="basis", op=">", threshold=3.0)
    at = app(tick_db, page=PAGE)
    assert_no_exception(at)
    row = at.dataframe[-1].value.iloc[0]
    assert (row["market"], row["market2"], row["symbol2"]) == ("usdm", "spot", "BTCUSDT")
    assert (row["metric"], row["op"]) == ("basis (bps)", "is above")
    csv = alerts_ui.events_csv(alerts_ui.history(str(tick_db)).value).decode().splitlines()
    assert csv[0].startswith("id,fired_at,rule_id,market,symbol,market2,symbol2,metric,op")
    assert ",usdm,BTCUSDT,spot,BTCUSDT,basis,>," in csv[1]


@pytest.mark.slow
def test_create_rule_with_validation_messages_and_preview(app, tick_db):
    at = app(tick_db, page=PAGE)
    assert_no_exception(at)
    assert "No rules yet" in page_text(at)
    at.selectbox(key="af_metric_new_0").set_value("zscore").run()
    assert at.selectbox(key="af_symbol2_new_0").value in ("BTCUSDT", "ETHUSDT")
    at.text_input(key="af_threshold_new_0").set_value("two").run()
    at.button(key="alerts_save").click().run()
    assert_no_exception(at)
    assert "The rule was not saved" in page_text(at)
    assert "**threshold**: 'two' is not a finite number; expected e.g. 2.0" in page_text(at)
    assert RuleStore(tick_db).list() == []
    at.text_input(key="af_threshold_new_0").set_value("2").run()
    at.text_input(key="af_note_new_0").set_value("spread stretched").run()
    info = [el.value for el in at.info]
    assert any(v.startswith("now: z = ") and "fires when it crosses above 2.00" in v for v in info), info
    at.button(key="alerts_save").click().run()
    assert_no_exception(at)
    (rule,) = RuleStore(tick_db).list()
    assert (rule.metric, rule.threshold, rule.op, rule.note, rule.is_pair) == ("zscore", 2.0, "crosses_above",
                                                                               "spread stretched", True)
    assert f"Rule #{rule.id} created" in page_text(at)
    assert at.selectbox(key="alerts_rule").value == rule.id  # the editor switches to the new rule


@pytest.mark.slow
def test_edit_disable_and_delete(app, tick_db):
    store = RuleStore(tick_db)
    r = store.create({"symbol": "BTCUSDT", "metric": "price", "op": ">", "threshold": 70000.12345, "cooldown_s": 5})
    at = app(tick_db, page=PAGE)
    at.selectbox(key="alerts_rule").set_value(r.id).run()
    k = f"{r.id}_0"
    assert at.text_input(key=f"af_threshold_{k}").value == "70000.12345"  # full precision, never rounded
    at.text_input(key=f"af_threshold_{k}").set_value("71000").run()
    at.button(key="alerts_save").click().run()
    assert_no_exception(at)
    assert store.get(r.id).threshold == 71000 and store.get(r.id).cooldown_s == 5
    at.button(key="alerts_toggle").click().run()
    assert store.get(r.id).enabled is False and "disabled" in page_text(at)
    at.button(key="alerts_toggle").click().run()
    assert store.get(r.id).enabled is True
    at.button(key="alerts_delete").click().run()
    assert_no_exception(at)
    assert store.list() == [] and "deleted" in page_text(at)
    edit = at.selectbox(key="alerts_rule")
    assert edit.value == "new" and edit.options[edit.index] == "+ New rule"  # not "Choose an option"


def test_history_filters_and_csv(app, tick_db):
    store = RuleStore(tick_db)
    a = store.create({"symbol": "BTCUSDT", "metric": "price", "op": ">", "threshold": 1})
    b = store.create({"symbol": "ETHUSDT", "metric": "rsi", "op": "<", "threshold": 30})
    fire(tick_db, a.id, "BTCUSDT price 2 above 1", 2.0)
    fire(tick_db, b.id, "ETHUSDT RSI(1m, 14) 25.00 below 30.00", 25.0, symbol="ETHUSDT", metric="rsi")
    at = app(tick_db, page=PAGE)
    assert_no_exception(at)
    table = at.dataframe[-1].value
    assert set(table["message"]) == {"BTCUSDT price 2 above 1", "ETHUSDT RSI(1m, 14) 25.00 below 30.00"}
    at.selectbox(key="ah_metric").set_value("rsi").run()
    assert list(at.dataframe[-1].value["rule_id"]) == [b.id]
    at.selectbox(key="ah_metric").set_value(None).run()
    at.selectbox(key="ah_rule").set_value(a.id).run()
    assert list(at.dataframe[-1].value["message"]) == ["BTCUSDT price 2 above 1"]
    df = alerts_ui.history(str(tick_db)).value
    csv = alerts_ui.events_csv(df).decode()
    assert csv.splitlines()[0].startswith("id,fired_at,rule_id,market,symbol")
    assert "+00:00" in csv.splitlines()[1]  # ISO-8601 UTC


@pytest.mark.slow  # > 4 s on a loaded 2-core host
def test_toasts_once_per_new_event_per_session_and_never_for_old_ones(app, tick_db):
    store = RuleStore(tick_db)
    r = store.create({"symbol": "BTCUSDT", "metric": "price", "op": ">", "threshold": 1})
    fire(tick_db, r.id, "an old alert, before the session started")
    tab1 = app(tick_db)
    tab2 = app(tick_db, page=PAGE)
    assert [t.value for t in tab1.toast] == [] and [t.value for t in tab2.toast] == []
    fire(tick_db, r.id, "BTCUSDT price 65,010.5 crossed above 65,000")
    for tab in (tab1, tab2):
        rerun_fresh(tab)
        assert_no_exception(tab)
        toasts = [t.value for t in tab.toast]
        assert len(toasts) == 1 and "BTCUSDT price 65,010.5 crossed above 65,000" in toasts[0]
        assert "UTC" in toasts[0]
    for tab in (tab1, tab2):  # already shown: not again
        rerun_fresh(tab)
        assert [t.value for t in tab.toast] == []
    for i in range(8):  # a burst: the newest few toast, the rest are counted
        fire(tick_db, r.id, f"burst {i}")
    rerun_fresh(tab1)
    toasts = [t.value for t in tab1.toast]
    assert toasts[0].startswith("3 more alerts fired") and len(toasts) == 1 + alerts_ui.MAX_TOASTS_PER_POLL
    assert "burst 7" in toasts[-1]


@pytest.mark.slow
def test_locked_file_keeps_the_rules_and_a_save_says_busy(app, tick_db):
    """Another process holds the file: the page keeps this session's last good rules with the usual notice, and a
    save reports the lock in one sentence (typed StoreBusy, nothing written) instead of failing."""
    r = RuleStore(tick_db).create({"symbol": "BTCUSDT", "metric": "price", "op": ">", "threshold": 1})
    at = app(tick_db, page=PAGE)
    assert any(o.startswith(f"#{r.id} ·") for o in at.selectbox(key="alerts_rule").options)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True);"
                               " time.sleep(120)", str(tick_db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        rerun_fresh(at)
        assert_no_exception(at)
        assert "holding the file lock" in page_text(at)
        assert any(o.startswith(f"#{r.id} ·") for o in at.selectbox(key="alerts_rule").options)  # last good
        at.text_input(key="af_threshold_new_0").set_value("3").run()
        at.button(key="alerts_save").click().run()
        assert_no_exception(at)
        assert "stayed locked" in page_text(at) and "nothing was saved" in page_text(at)
    finally:
        holder.terminate()
        holder.wait(10)
    assert [x.id for x in RuleStore(tick_db).list()] == [r.id]
