"""alerts.rules: field-by-field validation messages, and RuleStore on a real tick file (CRUD, history filters,
older files without the extra alert columns)."""
from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from alerts.rules import AlertRule, RuleStore, RuleValidationError, validate_rule
from alerts.text import event_message, preview_text
from tickstore import alerts_sql
from tickstore.connection import StoreMissing, init_db, read_connection, write_connection

BASE = {"market": "spot", "symbol": "btcusdt", "metric": "price", "timeframe": "1m", "op": ">", "threshold": "65000"}


def errors_of(**changes) -> dict[str, str]:
    fields = {**BASE, **changes}
    fields = {k: v for k, v in fields.items() if v is not ...}
    with pytest.raises(RuleValidationError) as exc:
        validate_rule(fields)
    assert isinstance(exc.value, ValueError)
    return exc.value.errors


def test_valid_rule_is_normalised():
    r = validate_rule({**BASE, "note": "  breakout ", "cooldown_s": "30", "hysteresis": "", "webhook_url": ""})
    assert r == AlertRule(market="spot", symbol="BTCUSDT", metric="price", timeframe="1m", op=">",
                          threshold=65000.0, cooldown_s=30.0, hysteresis=0.0, note="breakout")
    z = validate_rule({**BASE, "metric": "ZSCORE", "symbol2": "ethusdt", "threshold": -2, "op": "crosses_below"})
    assert (z.symbol2, z.lookback, z.is_pair, z.subject) == ("ETHUSDT", 60, True, "BTCUSDT/ETHUSDT")
    assert validate_rule({**BASE, "metric": "rsi", "threshold": 70}).lookback == 14
    assert validate_rule({**BASE, "enabled": "false"}).enabled is False


@pytest.mark.parametrize("changes,field,fragment", [
    ({"metric": "macd"}, "metric", "'macd' is not supported; expected one of price, zscore, rsi, volume"),
    ({"metric": ...}, "metric", "is required; expected one of"),
    ({"op": ">="}, "op", "'>=' is not supported; expected one of >, <, crosses_above, crosses_below"),
    ({"timeframe": "2m"}, "timeframe", "expected one of 1s, 1m, 5m, 15m, 1h"),
    ({"market": "coinm"}, "market", "expected one of spot, usdm"),
    ({"symbol": "BTC-USDT"}, "symbol", "is not a symbol; expected 2-30 letters or digits such as BTCUSDT"),
    ({"symbol": ""}, "symbol", "is required"),
    ({"threshold": "abc"}, "threshold", "'abc' is not a finite number"),
    ({"threshold": "nan"}, "threshold", "is not a finite number"),
    ({"threshold": float("inf")}, "threshold", "is not a finite number"),
    ({"threshold": ...}, "threshold", "is required; expected a number"),
    ({"threshold": True}, "threshold", "is not a finite number"),
    ({"metric": "rsi", "threshold": 120}, "threshold", "outside RSI's range; expected 0-100"),
    ({"metric": "volume", "threshold": -1}, "threshold", "negative; expected >= 0 for volume"),
    ({"cooldown_s": -5}, "cooldown_s", "out of range; expected 0 to 604800"),
    ({"cooldown_s": "soon"}, "cooldown_s", "not a finite number; expected seconds >= 0"),
    ({"hysteresis": -0.1}, "hysteresis", "is negative; expected >= 0"),
    ({"metric": "zscore"}, "symbol2", "is required; expected an exchange symbol"),
    ({"metric": "spread", "symbol2": "BTCUSDT"}, "symbol2", "must differ from symbol"),
    ({"symbol2": "ETHUSDT"}, "symbol2", "only pair metrics (zscore, spread, basis) take a second symbol"),
    ({"metric": "zscore", "symbol2": "ETHUSDT", "lookback": 3}, "lookback", "out of range; expected 10-5000"),
    ({"metric": "rsi", "threshold": 70, "lookback": 2.5}, "lookback", "not a whole number; expected 2-500"),
    ({"webhook_url": "ftp://x.org/"}, "webhook_url", "scheme 'ftp' is not allowed"),
    ({"note": "x" * 501}, "note", "expected at most 500"),
    ({"enabled": "maybe"}, "enabled", "not a yes/no value"),
    ({"treshold": 1}, "treshold", "unknown field"),
    ({"id": -3}, "id", "expected a positive whole number"),
])
def test_each_bad_field_says_what_was_wrong_and_what_is_expected(changes, field, fragment):
    errs = errors_of(**changes)
    assert field in errs, errs
    assert fragment in errs[field]


def test_all_errors_are_reported_at_once():
    errs = errors_of(metric="macd", op="~", threshold="x", symbol="")
    assert set(errs) >= {"metric", "op", "threshold", "symbol"}
    with pytest.raises(ValueError, match=r"metric: 'macd' is not supported.*op: '~' is not supported"):
        validate_rule({**BASE, "metric": "macd", "op": "~"})


def test_store_crud_and_history(tmp_path):
    db = init_db(tmp_path / "t.duckdb")
    store = RuleStore(db)
    a = store.create({**BASE, "note": "a"})
    b = store.create(validate_rule({**BASE, "metric": "zscore", "symbol": "ETHUSDT", "symbol2": "BTCUSDT",
                                    "threshold": 2, "timeframe": "5m", "lookback": 120}))
    assert [r.id for r in store.list()] == [a.id, b.id]
    assert store.get(b.id) == b and b.lookback == 120
    with read_connection(db) as con:
        fp0 = alerts_sql.rules_fingerprint(con)
    store.update(a.id, {**a.to_row(), "threshold": 66000.0})
    store.set_enabled(b.id, False)
    assert store.get(a.id).threshold == 66000.0 and store.get(b.id).enabled is False
    with read_connection(db) as con:
        assert alerts_sql.rules_fingerprint(con) != fp0
    with pytest.raises(KeyError, match="alert rule 999 does not exist"):
        store.update(999, a)
    with pytest.raises(RuleValidationError):
        store.update(a.id, {**BASE, "op": "?"})
    # history: filters by rule, symbol (either leg), metric and time; newest first
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with write_connection(db) as con:
        alerts_sql.insert_events(con, [
            {"rule_id": a.id, "fired_at": t0, "value": 1.0, "message": "m1", "symbol": "BTCUSDT", "metric": "price"},
            {"rule_id": b.id, "fired_at": t0 + dt.timedelta(hours=1), "value": 2.5, "message": "m2",
             "symbol": "ETHUSDT", "symbol2": "BTCUSDT", "metric": "zscore"},
            {"rule_id": a.id, "fired_at": t0 + dt.timedelta(hours=2), "value": 3.0, "message": "m3",
             "symbol": "BTCUSDT", "metric": "price"}])
    ev = store.events()
    assert list(ev["message"]) == ["m3", "m2", "m1"] and str(ev["fired_at"].dt.tz) == "UTC"
    assert list(store.events(rule_id=a.id)["message"]) == ["m3", "m1"]
    assert list(store.events(symbol="btcusdt")["message"]) == ["m3", "m2", "m1"]
    assert list(store.events(symbol="ETHUSDT")["message"]) == ["m2"]
    assert list(store.events(metric="zscore")["message"]) == ["m2"]
    assert list(store.events(start=t0 + dt.timedelta(minutes=30), end=t0 + dt.timedelta(hours=2))["message"]) == ["m2"]
    assert list(store.events(after_id=int(ev["id"].min()))["message"]) == ["m3", "m2"]
    assert store.max_event_id() == int(ev["id"].max())
    store.delete(a.id)
    assert [r.id for r in store.list()] == [b.id]
    assert len(store.events()) == 3  # history outlives its rule
    with pytest.raises(KeyError):
        store.delete(a.id)


def test_store_on_a_missing_file_says_so_and_never_creates_it(tmp_path):
    path = tmp_path / "nope.duckdb"
    with pytest.raises(StoreMissing, match="does not exist yet"):
        RuleStore(path).list()
    with pytest.raises(StoreMissing, match="start the ingestor"):
        RuleStore(path).create(BASE)
    assert not path.exists()


def test_older_file_without_extra_columns_is_migrated_and_readable(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("""CREATE TABLE alert_rules(id BIGINT PRIMARY KEY, enabled BOOLEAN, market VARCHAR, symbol VARCHAR,
                   symbol2 VARCHAR, metric VARCHAR, timeframe VARCHAR, op VARCHAR, threshold DOUBLE,
                   cooldown_s DOUBLE, note VARCHAR, webhook_url VARCHAR)""")
    con.execute("CREATE TABLE alert_events(id BIGINT, rule_id BIGINT, fired_at TIMESTAMPTZ, value DOUBLE, message VARCHAR)")
    con.execute("""CREATE TABLE ticks(market VARCHAR, symbol VARCHAR, trade_id BIGINT, ts TIMESTAMPTZ, price DOUBLE,
                   qty DOUBLE, is_buyer_maker BOOLEAN, recv_ts TIMESTAMPTZ, source VARCHAR)""")
    con.execute("INSERT INTO alert_rules VALUES (5, TRUE, 'spot', 'BTCUSDT', NULL, 'rsi', '1h', '<', 30, 0, NULL, NULL)")
    con.close()
    store = RuleStore(path)
    (r,) = store.list()  # read-only, before any migration: defaults fill the missing columns
    assert (r.id, r.metric, r.lookback, r.hysteresis) == (5, "rsi", 14, 0.0)
    init_db(path)  # what the ingestor does at start
    with read_connection(path) as con:
        cols = {c[0] for c in con.execute("DESCRIBE alert_events").fetchall()}
    assert {"market", "symbol", "metric", "observed_at"} <= cols


def test_messages_and_preview_text():
    r = validate_rule({**BASE, "op": "crosses_above", "note": "breakout"})
    assert event_message(r, 65010.5) == "BTCUSDT price 65,010.5 crossed above 65,000 — breakout"
    z = validate_rule({**BASE, "metric": "zscore", "symbol2": "ETHUSDT", "threshold": 2.0, "hysteresis": 0.5})
    assert preview_text(z, 1.7) == "now: z = 1.70, fires above 2.00, re-arms below 1.50"
    assert preview_text(z, None, "need 30 aligned 1m bars of both legs, have 12") == \
        "now: n/a (need 30 aligned 1m bars of both legs, have 12), fires above 2.00, re-arms below 1.50"
    lag = validate_rule({**BASE, "metric": "lag", "threshold": 30})
    assert event_message(lag, 45.04, "disconnected") == "BTCUSDT lag 45.0 s above 30.0 s (disconnected)"
    assert preview_text(lag, float("inf"), "disconnected") == "now: lag = never (disconnected), fires above 30.0 s"


@pytest.mark.slow
def test_cli_manages_rules_and_reports_errors_as_json(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    db = init_db(tmp_path / "cli.duckdb")

    def cli(*args):
        p = subprocess.run([sys.executable, "-m", "alerts.cli", "--db", str(db), *args], cwd=root,
                           capture_output=True, text=True, timeout=60)
        return p.returncode, json.loads(p.stdout)

    code, out = cli("create", json.dumps({"symbol": "btcusdt", "metric": "price", "op": ">", "threshold": 7e4}))
    assert code == 0 and out["rule"]["symbol"] == "BTCUSDT" and out["rule"]["id"] == 1
    code, out = cli("create", json.dumps({"symbol": "BTCUSDT", "metric": "rsi", "op": ">", "threshold": 170}))
    assert code == 2 and out["kind"] == "invalid" and "expected 0-100" in out["errors"]["threshold"]
    code, out = cli("create", "{not json")
    assert code == 2 and "is not valid JSON" in out["errors"]["json"]
    assert cli("disable", "1") == (0, {"ok": True})
    code, out = cli("list")
    assert code == 0 and [r["enabled"] for r in out["rules"]] == [False]
    code, out = cli("delete", "7")
    assert code == 2 and out["kind"] == "not_found" and "alert rule 7 does not exist" in out["error"]
    assert cli("delete", "1") == (0, {"ok": True}) and RuleStore(db).list() == []
    db.unlink()
    code, out = cli("list")
    assert code == 2 and out["kind"] == "missing"  # bad input: one line, exit 2


def test_rules_created_at_once_in_a_file_whose_symbol_catalogue_does_not_add_up(tmp_path):
    """A file written by older code (or a direct insert) gets its catalogue rebuilt in its own transaction first,
    then every rule in one (was: "cannot start a transaction within a transaction", nothing saved)."""
    db = tmp_path / "t.duckdb"
    init_db(db)
    with write_connection(db) as con:
        con.execute("""INSERT INTO ticks (market, symbol, trade_id, ts, price, qty, is_buyer_maker)
                       VALUES ('spot', 'BTCUSDT', 1, now(), 90000, 0.1, false)""")
    rules = RuleStore(db).create_many([BASE, {**BASE, "threshold": 95000.0}])
    assert [r.id for r in rules] == [r.id for r in RuleStore(db).list()] and len(rules) == 2
    with read_connection(db) as con:
        assert con.execute("SELECT ticks FROM symbol_catalog WHERE symbol = 'BTCUSDT'").fetchone() == (1,)
