"""Alert rules on spot-vs-perpetual pairs: `basis` (bps) and `funding` (rate) metrics, `market2` on rules — validated
with clear messages, stored, computed like hand references from the stored rows, fired by the engine with the
existing operators, cooldown and webhooks, and created from the CLI."""
from __future__ import annotations

import datetime as dt
import http.server
import json
import threading

import duckdb
import numpy as np
import pandas as pd
import pytest

from alerts.engine import AlertEngine
from alerts.metrics import current_value
from alerts.rules import RuleStore, RuleValidationError, validate_rule
from tests.basis_db import FUNDING_STEP, make_basis_db, stored_closes
from tests.test_alerts_engine import Clock, Hook, tick
from tickstore.connection import init_db, write_connection
from tickstore.writer import TickBuffer, TickWriter

END = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC)


def errors_of(**fields) -> dict:
    with pytest.raises(RuleValidationError) as exc:
        validate_rule({"op": ">", "threshold": 10, **fields})
    return exc.value.errors


# ---------------------------------------------------------------- validation
def test_basis_rule_defaults_to_the_same_coin_on_the_other_market():
    r = validate_rule({"market": "usdm", "symbol": "btcusdt", "metric": "basis", "op": ">", "threshold": 25})
    assert (r.market, r.symbol, r.market2, r.symbol2) == ("usdm", "BTCUSDT", "spot", "BTCUSDT")
    assert r.describe() == "usdm BTCUSDT/spot:BTCUSDT basis (bps) above 25"
    r = validate_rule({"market": "spot", "symbol": "ETHUSDT", "metric": "basis", "op": "<", "threshold": -10})
    assert (r.market2, r.symbol2) == ("usdm", "ETHUSDT")
    assert r.definition != validate_rule({**r.to_row(), "market2": None, "metric": "zscore",
                                          "symbol2": "BTCUSDT"}).definition


@pytest.mark.parametrize("fields,field,fragment", [
    ({"market": "spot", "market2": "spot", "symbol": "BTCUSDT", "metric": "basis"}, "market2",
     "a basis compares a perpetual (usdm) leg with a spot leg; got two spot legs"),
    ({"market": "usdm", "market2": "usdm", "symbol": "BTCUSDT", "metric": "basis"}, "market2", "got two usdm legs"),
    ({"market": "usdm", "symbol": "BTCUSDT", "symbol2": "ETHUSDT", "metric": "basis"}, "symbol2",
     "ETHUSDT is another coin; a basis compares the same symbol on spot and the perpetual"),
    ({"market": "usdm", "symbol": "BTCUSDT", "metric": "basis", "threshold": 9000}, "threshold",
     "expected basis points such as 25"),
    ({"market": "spot", "symbol": "BTCUSDT", "metric": "funding"}, "market",
     "funding is paid on perpetuals only; got spot, expected usdm"),
    ({"market": "usdm", "symbol": "BTCUSDT", "metric": "funding", "threshold": 0.5}, "threshold",
     "expected a rate per funding period as a fraction, e.g. 0.0005"),
    ({"market": "spot", "symbol": "BTCUSDT", "metric": "price", "market2": "usdm"}, "market2",
     "only pair metrics (zscore, spread, basis) take a second leg's market"),
    ({"market": "spot", "symbol": "BTCUSDT", "symbol2": "BTCUSDT", "metric": "zscore"}, "symbol2",
     "must differ from symbol (BTCUSDT) on the same market"),
    ({"market": "spot", "symbol": "BTCUSDT", "symbol2": "ETHUSDT", "metric": "zscore", "market2": "coinm"},
     "market2", "'coinm' is not supported"),
])
def test_nonsense_is_rejected_with_what_is_expected(fields, field, fragment):
    errs = errors_of(**fields)
    assert field in errs and fragment in errs[field], errs


def test_cross_market_zscore_is_a_pair_of_the_same_symbol():
    r = validate_rule({"market": "usdm", "symbol": "BTCUSDT", "symbol2": "BTCUSDT", "market2": "spot",
                       "metric": "zscore", "op": ">", "threshold": 2})
    assert r.subject == "BTCUSDT/spot:BTCUSDT" and r.leg2_market == "spot"
    same = validate_rule({"market": "spot", "symbol": "ETHUSDT", "symbol2": "BTCUSDT", "market2": "spot",
                          "metric": "zscore", "op": ">", "threshold": 2})
    assert same.market2 is None   # stored only when it differs


# ---------------------------------------------------------------- storage and values from the stored rows
@pytest.fixture(scope="module")
def basis_file(tmp_path_factory):
    return make_basis_db(tmp_path_factory.mktemp("alerts-basis") / "b.duckdb", END)


def _last_trade(path, market, symbol):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT price FROM ticks WHERE market = ? AND symbol = ? ORDER BY trade_id DESC LIMIT 1",
                           [market, symbol]).fetchone()[0]
    finally:
        con.close()


def test_basis_and_funding_values_match_the_stored_rows(basis_file):
    path = basis_file.path
    rule = validate_rule({"market": "usdm", "symbol": "BTCUSDT", "metric": "basis", "op": ">", "threshold": 1})
    obs = current_value(rule, path, now=END)
    perp, spot = _last_trade(path, "usdm", "BTCUSDT"), _last_trade(path, "spot", "BTCUSDT")
    assert obs.value == pytest.approx((perp / spot - 1) * 1e4, rel=1e-12)
    funding = validate_rule({"market": "usdm", "symbol": "BTCUSDT", "metric": "funding", "op": ">",
                             "threshold": 0.0001})
    obs = current_value(funding, path, now=END)
    assert obs.value == pytest.approx(basis_file.funding_rates[-1] + FUNDING_STEP / 2)
    assert obs.detail.startswith("next funding 2026-01-05 16:00")
    late = current_value(funding, path, now=END + dt.timedelta(hours=1))
    assert late.value is None and "no usdm BTCUSDT mark-price update" in late.detail


def test_cross_market_zscore_matches_a_numpy_reference(basis_file):
    path = basis_file.path
    rule = validate_rule({"market": "usdm", "symbol": "ETHUSDT", "symbol2": "ETHUSDT", "market2": "spot",
                          "metric": "zscore", "op": ">", "threshold": 2, "lookback": 60, "timeframe": "1m"})
    obs = current_value(rule, path, now=END)
    start = pd.Timestamp(END) - pd.Timedelta(minutes=59)
    y = stored_closes(path, "usdm", "ETHUSDT").loc[start:]
    x = stored_closes(path, "spot", "ETHUSDT").loc[start:]
    both = pd.concat([y, x], axis=1).ffill().dropna()
    beta, alpha = np.polyfit(both.iloc[:, 1], both.iloc[:, 0], 1)
    spread = both.iloc[:, 0] - beta * both.iloc[:, 1] - alpha
    z = (spread.iloc[-1] - spread.mean()) / spread.std(ddof=1)
    assert obs.value == pytest.approx(z, rel=1e-6)


def test_market2_is_stored_and_added_to_older_files(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))  # an alert_rules table from before market2
    con.execute("""CREATE SEQUENCE alert_rules_seq; CREATE TABLE alert_rules(
        id BIGINT PRIMARY KEY DEFAULT nextval('alert_rules_seq'), enabled BOOLEAN NOT NULL DEFAULT TRUE,
        market VARCHAR NOT NULL, symbol VARCHAR NOT NULL, symbol2 VARCHAR, metric VARCHAR NOT NULL,
        timeframe VARCHAR NOT NULL, op VARCHAR NOT NULL, threshold DOUBLE NOT NULL,
        cooldown_s DOUBLE NOT NULL DEFAULT 60, note VARCHAR, webhook_url VARCHAR,
        created_at TIMESTAMPTZ DEFAULT current_timestamp, updated_at TIMESTAMPTZ DEFAULT current_timestamp)""")
    con.execute("INSERT INTO alert_rules(market, symbol, metric, timeframe, op, threshold) "
                "VALUES ('spot', 'BTCUSDT', 'price', '1m', '>', 1)")
    con.close()
    store = RuleStore(path)
    made = store.create({"market": "usdm", "symbol": "BTCUSDT", "metric": "basis", "op": ">", "threshold": 30})
    rules = {r.id: r for r in store.list()}
    assert rules[made.id].market2 == "spot" and rules[1].market2 is None and rules[1].metric == "price"


# ---------------------------------------------------------------- the engine: operators, cooldown, webhooks
def test_engine_fires_basis_and_funding_rules_with_cooldown_and_webhook(tmp_path, monkeypatch):
    monkeypatch.setenv("TICKDESK_WEBHOOKS_ALLOW_PRIVATE", "1")
    Hook.bodies = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    t0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
    us = int(t0.timestamp() * 1e6)
    db = init_db(tmp_path / "a.duckdb")
    clock = Clock(t0)
    engine = AlertEngine(clock=clock)
    buf = TickBuffer()
    writer = TickWriter(db, buf, hooks=[engine.on_flush])
    store = RuleStore(db)
    ids = {"spot": 0, "usdm": 0}

    def step(seconds, spot=None, perp=None, funding=None):
        clock.t = t0 + dt.timedelta(seconds=seconds)
        rows = []
        for market, price in (("spot", spot), ("usdm", perp)):
            if price is not None:
                ids[market] += 1
                rows.append(tick("BTCUSDT", ids[market], us + seconds * 1_000_000, price, market=market))
        if funding is not None:
            with write_connection(db) as con:
                con.execute("INSERT INTO mark_prices VALUES ('usdm', 'BTCUSDT', ?, 100, 100, ?, ?)",
                            [clock.t, funding, t0 + dt.timedelta(hours=4)])
        buf.extend(rows)
        writer.flush_once()

    try:
        step(0, spot=100.0, perp=100.1, funding=0.0001)               # basis 10 bps: priming, below
        hook = f"http://127.0.0.1:{srv.server_port}/hook"
        b = store.create({"market": "usdm", "symbol": "BTCUSDT", "metric": "basis", "op": ">", "threshold": 20,
                          "cooldown_s": 60, "webhook_url": hook})
        f = store.create({"market": "usdm", "symbol": "BTCUSDT", "metric": "funding", "op": "crosses_above",
                          "threshold": 0.0005, "cooldown_s": 0})
        step(1, perp=100.1, funding=0.0001)
        step(2, perp=100.3)                                            # 30 bps: fires
        step(3, perp=100.1)                                            # back under: re-armed
        step(4, perp=100.4, funding=0.0008)                            # 40 bps within the cooldown: not fired
        step(70, spot=100.0, perp=100.1)                               # under again
        step(71, perp=100.5)                                           # 50 bps after the cooldown: fires
        assert engine.sender.join(10)
        ev = store.events().sort_values("id")
        basis_ev = ev[ev["rule_id"] == b.id]
        assert basis_ev["value"].tolist() == pytest.approx([30.0, 50.0], abs=1e-6)
        assert basis_ev["market2"].tolist() == ["spot", "spot"]
        assert "BTCUSDT/spot:BTCUSDT basis +30.00 bps above +20.00 bps" in basis_ev["message"].iloc[0]
        funding_ev = ev[ev["rule_id"] == f.id]
        assert funding_ev["value"].tolist() == pytest.approx([0.0008])
        assert [body["value"] for body in Hook.bodies] == pytest.approx([30.0, 50.0], abs=1e-6)
        assert Hook.bodies[0]["market2"] == "spot" and Hook.bodies[0]["metric"] == "basis"
    finally:
        engine.close()
        srv.shutdown()
        srv.server_close()


# ---------------------------------------------------------------- the CLI
def test_cli_creates_basis_rules_and_explains_nonsense(tmp_path, capsys):
    """`alerts.cli.main` in this process (its `python -m alerts.cli` wiring is run by test_hostile_store and
    test_alerts_rules): exit code and the one JSON line it prints."""
    from alerts.cli import main

    def _cli(db, *args):
        code = main(["--db", str(db), *args])
        return code, json.loads(capsys.readouterr().out)

    db = init_db(tmp_path / "cli.duckdb")
    code, out = _cli(db, "create", json.dumps({"market": "usdm", "symbol": "ethusdt", "metric": "basis", "op": "<",
                                               "threshold": -15, "cooldown_s": 300}))
    assert code == 0 and out["rule"]["market2"] == "spot" and out["rule"]["symbol2"] == "ETHUSDT"
    code, out = _cli(db, "create", json.dumps({"market": "spot", "market2": "spot", "symbol": "ETHUSDT",
                                               "metric": "basis", "op": ">", "threshold": 15}))
    assert code == 2 and out["kind"] == "invalid"
    assert "got two spot legs" in out["errors"]["market2"]
    code, out = _cli(db, "create", json.dumps({"market": "usdm", "symbol": "ETHUSDT", "metric": "funding", "op": ">",
                                               "threshold": 0.001}))
    assert code == 0 and out["rule"]["metric"] == "funding" and out["rule"]["market2"] is None


# ---------------------------------------------------------------- the Alerts page form
def test_alerts_form_creates_a_basis_rule_from_the_sidebar_pair_and_explains_two_spot_legs(app, basis_file, tmp_path):
    import shutil

    from tests.conftest import assert_no_exception, page_text

    path = tmp_path / "form.duckdb"
    shutil.copy(basis_file.path, path)
    at = app(path, page="app_pages/alerts.py", query={"mkt": "spot", "y": "usdm:BTCUSDT", "x": "BTCUSDT"})
    assert_no_exception(at)
    at.selectbox(key="af_metric_new_0").set_value("basis").run()
    assert at.selectbox(key="af_market_new_0").value == "usdm"       # the sidebar's Y leg
    assert at.selectbox(key="af_market2_new_0").value == "spot"
    at.text_input(key="af_threshold_new_0").set_value("5").run()
    info = [el.value for el in at.info]
    # the file ends in the past, so the preview has no current value and says why
    assert any("no usdm BTCUSDT trades in the last 24 h" in v and "crosses above +5.00 bps" in v for v in info), info
    at.selectbox(key="af_market_new_0").set_value("spot").run()
    at.selectbox(key="af_market2_new_0").set_value("spot").run()
    at.button(key="alerts_save").click().run()
    assert_no_exception(at)
    assert "got two spot legs" in page_text(at) and RuleStore(path).list() == []
    at.selectbox(key="af_market2_new_0").set_value("usdm").run()
    at.button(key="alerts_save").click().run()
    assert_no_exception(at)
    (rule,) = RuleStore(path).list()
    assert (rule.metric, rule.market, rule.market2, rule.symbol, rule.symbol2, rule.threshold) == \
        ("basis", "spot", "usdm", "BTCUSDT", "BTCUSDT", 5.0)


def test_basis_rule_follows_a_spot_leg_written_by_another_ingestor(tmp_path):
    """One ingestor per market on one file: the usdm process evaluates the basis rule and never sees spot ticks in
    its own batches, so it reads the spot leg from the file each round."""
    t0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
    us = int(t0.timestamp() * 1e6)
    db = init_db(tmp_path / "two.duckdb")
    clock = Clock(t0)
    status = {("usdm", "BTCUSDT"): {"connected": True, "last_tick_age_s": 0.1}}
    engine = AlertEngine(clock=clock, webhooks=False, status_provider=lambda: status)
    usdm_buf, spot_buf = TickBuffer(), TickBuffer()
    usdm = TickWriter(db, usdm_buf, hooks=[engine.on_flush])
    spot = TickWriter(db, spot_buf)                     # the spot ingestor: no alert engine of its own here
    store = RuleStore(db)
    ids = {"spot": 0, "usdm": 0}

    def write(writer, buf, market, seconds, price):
        clock.t = t0 + dt.timedelta(seconds=seconds)
        ids[market] += 1
        buf.extend([tick("BTCUSDT", ids[market], us + seconds * 1_000_000, price, market=market)])
        writer.flush_once()

    write(spot, spot_buf, "spot", 0, 100.0)
    write(usdm, usdm_buf, "usdm", 0, 100.1)             # 10 bps
    rule = store.create({"market": "usdm", "symbol": "BTCUSDT", "metric": "basis", "op": "<", "threshold": 0,
                         "cooldown_s": 0})
    write(usdm, usdm_buf, "usdm", 1, 100.1)
    write(spot, spot_buf, "spot", 2, 100.5)             # spot moves up in the other process: basis -40 bps
    write(usdm, usdm_buf, "usdm", 3, 100.1)
    ev = store.events()
    assert ev["rule_id"].tolist() == [rule.id]
    assert ev["value"].iloc[0] == pytest.approx((100.1 / 100.5 - 1) * 1e4)


def test_screener_watch_rules_carry_the_second_legs_market():
    from dashboard.screen_ui import watch_rules

    up, down = watch_rules("spot", "usdm:BTCUSDT", "spot:BTCUSDT", "1m", 2.0, 60)
    for fields in (up, down):
        r = validate_rule(fields)
        assert (r.market, r.symbol, r.market2, r.symbol2, r.metric) == ("usdm", "BTCUSDT", "spot", "BTCUSDT", "zscore")
    same = validate_rule(watch_rules("spot", "ETHUSDT", "BTCUSDT", "1m", 2.0, 60)[0])
    assert (same.market, same.market2) == ("spot", None)
