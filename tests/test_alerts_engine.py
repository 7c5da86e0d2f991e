"""alerts.engine on a real DuckDB file: the writer hook fires price crossings once per crossing (tick by tick),
picks up rule edits at the next flush, respects disabled rules and cooldowns across restarts, and computes
rsi / zscore / spread / volume / trade_rate / lag like independent pandas/numpy references."""
from __future__ import annotations

import datetime as dt
import http.server
import json
import threading

import numpy as np
import pandas as pd
import pytest

from alerts.engine import AlertEngine
from alerts.metrics import MetricSource, align_pair, current_value
from alerts.rules import RuleStore, validate_rule
from tickstore import alerts_sql, queries
from tickstore.connection import init_db, read_connection, write_connection
from tickstore.writer import TickBuffer, TickWriter, insert_batch, rows_to_arrow

T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
T0_US = int(T0.timestamp() * 1e6)


class Clock:
    def __init__(self, t: dt.datetime) -> None:
        self.t = t

    def __call__(self) -> dt.datetime:
        return self.t


def tick(symbol, trade_id, ts_us, price, qty=1.0, market="spot"):
    return (market, symbol, trade_id, int(ts_us), float(price), float(qty), False, int(ts_us), "ws")


@pytest.fixture
def rig(tmp_path):
    """A tick file, a writer whose only hook is an AlertEngine with a controllable clock, and a RuleStore."""
    db = init_db(tmp_path / "alerts.duckdb")
    clock = Clock(T0)
    engine = AlertEngine(clock=clock, webhooks=False)
    buf = TickBuffer()
    writer = TickWriter(db, buf, hooks=[engine.on_flush])

    class Rig:
        pass

    r = Rig()
    r.db, r.clock, r.engine, r.buf, r.writer, r.store = db, clock, engine, buf, writer, RuleStore(db)

    def flush(rows=()):
        buf.extend(list(rows))
        writer.flush_once()

    r.flush = flush
    r.events = lambda: r.store.events().sort_values("id").reset_index(drop=True)
    return r


def reference_fires(prices, thr, hyst=0.0):
    """Upward crossings after the first (priming) price, re-armed at <= thr - hyst."""
    fires, armed = [], prices[0] <= thr
    for i in range(1, len(prices)):
        if armed and prices[i] > thr:
            fires.append(i)
            armed = False
        elif prices[i] <= thr - hyst:
            armed = True
    return fires


def test_price_rule_fires_once_per_crossing_tick_by_tick(rig):
    rng = np.random.default_rng(11)
    prices = np.round(100 + np.cumsum(rng.normal(0, 0.3, 3000)), 2)
    ts = T0_US + np.arange(3000) * 50_000
    rig.flush([tick("BTCUSDT", 0, ts[0], prices[0])])
    rig.store.create({"symbol": "btcusdt", "metric": "price", "op": "crosses_above", "threshold": 100.0,
                      "cooldown_s": 0, "hysteresis": 0.2})
    rig.flush()  # loads the rule and primes it with the last stored price
    # uneven batches: several crossings can happen inside one flush and must each fire once
    bounds = [1, 7, 8, 300, 301, 1200, 2999, 3000]
    for a, b in zip(bounds, bounds[1:]):
        rig.clock.t = T0 + dt.timedelta(microseconds=int(ts[b - 1] - T0_US))
        rig.flush(tick("BTCUSDT", i, ts[i], prices[i]) for i in range(a, b))
    ev = rig.events()
    expected = reference_fires(list(prices), 100.0, 0.2)
    assert len(expected) >= 5
    assert list(ev["value"]) == [prices[i] for i in expected]
    assert list(ev["observed_at"]) == [pd.Timestamp(int(ts[i]), unit="us", tz="UTC") for i in expected]
    assert (ev["metric"] == "price").all() and (ev["symbol"] == "BTCUSDT").all()
    assert ev["message"].str.contains("BTCUSDT price .* crossed above 100", regex=True).all()


def test_duplicate_and_replayed_ticks_do_not_refire(rig):
    rig.flush([tick("BTCUSDT", 1, T0_US, 99.0)])
    rig.store.create({"symbol": "BTCUSDT", "metric": "price", "op": "crosses_above", "threshold": 100, "cooldown_s": 0})
    rig.flush()
    batch = [tick("BTCUSDT", 2, T0_US + 1, 101.0), tick("BTCUSDT", 3, T0_US + 2, 99.0)]
    rig.flush(batch)
    rig.flush(batch + batch)  # the writer's retry / a replay sends the same ids again
    assert len(rig.events()) == 1


def test_rule_created_while_running_is_picked_up_next_flush_and_edits_reset_state(rig):
    rig.flush([tick("ETHUSDT", 1, T0_US, 3000.0)])
    rule = rig.store.create({"symbol": "ETHUSDT", "metric": "price", "op": ">", "threshold": 2500, "cooldown_s": 0})
    assert rig.events().empty
    rig.flush()
    ev = rig.events()
    assert len(ev) == 1 and ev.loc[0, "rule_id"] == rule.id  # a level rule fires at once when already true
    rig.flush([tick("ETHUSDT", 2, T0_US + 1, 3001.0)])
    assert len(rig.events()) == 1  # still above: edge-triggered, no repeat
    # editing the note keeps the state; editing the threshold resets it (and a level rule fires again)
    rig.store.update(rule.id, {**rule.to_row(), "note": "edited"})
    rig.flush([tick("ETHUSDT", 3, T0_US + 2, 3002.0)])
    assert len(rig.events()) == 1
    rig.store.update(rule.id, {**rule.to_row(), "threshold": 2900})
    rig.flush()
    ev = rig.events()
    assert len(ev) == 2 and "above 2,900" in ev.loc[1, "message"]


def test_rule_row_written_by_another_tool_is_seen(rig):
    rig.flush([tick("BTCUSDT", 1, T0_US, 50.0)])
    with write_connection(rig.db) as con:  # plain SQL, no updated_at, no extra columns
        con.execute("""INSERT INTO alert_rules(market, symbol, metric, timeframe, op, threshold, cooldown_s)
                       VALUES ('spot', 'BTCUSDT', 'price', '1m', '<', 60, 0)""")
    rig.flush()
    assert len(rig.events()) == 1
    with write_connection(rig.db) as con:
        con.execute("UPDATE alert_rules SET threshold = 40")
    rig.flush([tick("BTCUSDT", 2, T0_US + 1, 39.0)])
    assert len(rig.events()) == 2


def test_disabled_rule_never_fires_and_reenabling_primes_afresh(rig):
    rig.flush([tick("BTCUSDT", 1, T0_US, 99.0)])
    rule = rig.store.create({"symbol": "BTCUSDT", "metric": "price", "op": "crosses_above", "threshold": 100,
                             "cooldown_s": 0, "enabled": False})
    rig.flush()
    rig.flush([tick("BTCUSDT", 2, T0_US + 1, 101.0), tick("BTCUSDT", 3, T0_US + 2, 99.0),
               tick("BTCUSDT", 4, T0_US + 3, 101.0)])
    assert rig.events().empty and rig.engine.rules == []
    rig.store.set_enabled(rule.id, True)
    rig.flush()  # primes at 101 (above): a crosses rule does not fire on its first observation
    assert rig.events().empty
    rig.flush([tick("BTCUSDT", 5, T0_US + 4, 99.0), tick("BTCUSDT", 6, T0_US + 5, 100.5)])
    assert list(rig.events()["value"]) == [100.5]
    rig.store.set_enabled(rule.id, False)
    rig.flush([tick("BTCUSDT", 7, T0_US + 6, 99.0), tick("BTCUSDT", 8, T0_US + 7, 100.5)])
    assert len(rig.events()) == 1
    rig.store.delete(rule.id)
    rig.flush()
    assert rig.engine.rules == []


def test_cooldown_is_wall_clock_and_survives_an_engine_restart(rig):
    rig.flush([tick("BTCUSDT", 1, T0_US, 99.0)])
    rig.store.create({"symbol": "BTCUSDT", "metric": "price", "op": "crosses_above", "threshold": 100,
                      "cooldown_s": 60})
    rig.flush()
    rig.flush([tick("BTCUSDT", 2, T0_US + 1, 101.0)])
    assert len(rig.events()) == 1
    # a new engine (ingestor restart) 30 s later: the crossing is within the cooldown of the stored firing
    engine2 = AlertEngine(clock=rig.clock, webhooks=False)
    rig.writer.hooks = [engine2.on_flush]
    rig.clock.t = T0 + dt.timedelta(seconds=30)
    rig.flush([tick("BTCUSDT", 3, T0_US + 2, 99.0)])  # primes below
    rig.flush([tick("BTCUSDT", 4, T0_US + 3, 101.0)])
    assert len(rig.events()) == 1 and engine2.stats.suppressed == 1
    rig.clock.t = T0 + dt.timedelta(seconds=61)
    rig.flush([tick("BTCUSDT", 5, T0_US + 4, 99.0), tick("BTCUSDT", 6, T0_US + 5, 101.0)])
    assert len(rig.events()) == 2


def test_volume_and_trade_rate_over_trailing_window(rig):
    now = T0 + dt.timedelta(minutes=10)
    rig.clock.t = now
    now_us = int(now.timestamp() * 1e6)
    rows = [tick("BTCUSDT", i, now_us - int(s * 1e6), 100.0, qty=q)
            for i, (s, q) in enumerate([(400, 9.0), (299, 1.5), (120, 2.0), (59, 0.25), (1, 0.25)])]
    rig.flush(rows)
    vol5 = validate_rule({"symbol": "BTCUSDT", "metric": "volume", "timeframe": "5m", "op": ">", "threshold": 1})
    vol1 = validate_rule({"symbol": "BTCUSDT", "metric": "volume", "timeframe": "1m", "op": ">", "threshold": 1})
    rate = validate_rule({"symbol": "BTCUSDT", "metric": "trade_rate", "timeframe": "5m", "op": ">", "threshold": 1})
    assert current_value(vol5, rig.db, now).value == pytest.approx(4.0)
    assert current_value(vol1, rig.db, now).value == pytest.approx(0.5)
    assert current_value(rate, rig.db, now).value == pytest.approx(4 / 300)
    rig.store.create(vol5.to_row() | {"threshold": 3.9, "cooldown_s": 0})
    rig.store.create(vol1.to_row() | {"op": "<", "threshold": 0.6, "cooldown_s": 0})
    rig.flush()
    ev = rig.events()
    assert sorted(ev["value"]) == pytest.approx([0.5, 4.0])


def test_lag_from_status_provider_and_scope(tmp_path):
    db = init_db(tmp_path / "lag.duckdb")
    status = {("spot", "BTCUSDT"): {"connected": False, "last_tick_age_s": 45.0}}
    engine = AlertEngine(status_provider=lambda: status, webhooks=False, clock=Clock(T0))
    buf = TickBuffer()
    writer = TickWriter(db, buf, hooks=[engine.on_flush])
    store = RuleStore(db)
    store.create({"symbol": "BTCUSDT", "metric": "lag", "op": ">", "threshold": 30, "cooldown_s": 0})
    # a rule on a symbol this ingestor does not stream is left to the ingestor that does
    store.create({"symbol": "SOLUSDT", "metric": "lag", "op": ">", "threshold": 0, "cooldown_s": 0})
    writer.flush_once()
    ev = store.events()
    assert len(ev) == 1 and ev.loc[0, "value"] == 45.0
    assert "(disconnected)" in ev.loc[0, "message"] and ev.loc[0, "symbol"] == "BTCUSDT"
    status[("spot", "BTCUSDT")] = {"connected": True, "last_tick_age_s": 0.2}
    writer.flush_once()
    status[("spot", "BTCUSDT")] = {"connected": True, "last_tick_age_s": 31.0}
    writer.flush_once()
    assert len(store.events()) == 2


def test_lag_before_the_first_tick_counts_from_engine_start(tmp_path):
    db = init_db(tmp_path / "lag0.duckdb")
    status = {("spot", "BTCUSDT"): {"connected": False, "last_tick_age_s": float("inf")}}
    clock = Clock(T0)
    engine = AlertEngine(status_provider=lambda: status, webhooks=False, clock=clock)
    writer = TickWriter(db, TickBuffer(), hooks=[engine.on_flush])
    RuleStore(db).create({"symbol": "BTCUSDT", "metric": "lag", "op": ">", "threshold": 10, "cooldown_s": 0})
    clock.t = T0 + dt.timedelta(seconds=4)
    writer.flush_once()
    assert RuleStore(db).events().empty  # still connecting: 4 s without a tick is not 10
    assert engine.state(1).last_value == 4.0
    clock.t = T0 + dt.timedelta(seconds=12)
    writer.flush_once()
    ev = RuleStore(db).events()
    assert len(ev) == 1 and ev.loc[0, "value"] == 12.0 and "(disconnected)" in ev.loc[0, "message"]


def test_lag_without_provider_reads_ingest_status(tick_market):
    rule = validate_rule({"symbol": "BTCUSDT", "metric": "lag", "op": ">", "threshold": 5})
    later = tick_market.end + dt.timedelta(seconds=12)
    obs = current_value(rule, tick_market.path, later)
    assert obs.value == pytest.approx(12.0) and obs.detail == "connected"


def test_sql_closes_match_tickstore_bars(tick_market):
    end = tick_market.end
    start = end - dt.timedelta(minutes=90)
    with read_connection(tick_market.path) as con:
        got = alerts_sql.bar_closes(con, "spot", ["BTCUSDT", "ETHUSDT"], 60, start, end)
    ref = queries.bars("spot", ["BTCUSDT", "ETHUSDT"], "1m", start, end, path=tick_market.path)
    assert len(got["close"]) == len(ref) > 150
    assert got["symbol"].tolist() == ref["symbol"].tolist()
    np.testing.assert_array_equal(got["close"], ref["close"].to_numpy())
    np.testing.assert_array_equal(pd.to_datetime(got["bucket_us"], unit="us", utc=True), ref["ts"].to_numpy())


def _newest_tick(path) -> dt.datetime:
    with read_connection(path) as con:
        return con.execute("SELECT max(ts) FROM ticks").fetchone()[0]


def _reference_closes(path, symbol, tf_s, start, now):
    """Closes per bucket straight from the ticks with pandas (bucket = floor(ts), close = highest trade id), for
    buckets from `start` through the one holding `now` (the forming bar)."""
    end = pd.Timestamp(now).floor(f"{tf_s}s") + pd.Timedelta(seconds=tf_s)
    with read_connection(path) as con:
        t = con.execute("SELECT trade_id, ts, price FROM ticks WHERE symbol = $s AND ts >= $a AND ts < $b",
                        {"s": symbol, "a": start, "b": end}).df()
    t["ts"] = pd.to_datetime(t["ts"], utc=True)
    t["bucket"] = t["ts"].dt.floor(f"{tf_s}s")
    return t.sort_values("trade_id").groupby("bucket")["price"].last()


def test_rsi_matches_wilder_reference(tick_market):
    now = _newest_tick(tick_market.path) + dt.timedelta(milliseconds=1)  # live: the forming bar holds the newest tick
    rule = validate_rule({"symbol": "BTCUSDT", "metric": "rsi", "timeframe": "1m", "op": ">", "threshold": 70,
                          "lookback": 14})
    obs = current_value(rule, tick_market.path, now)
    step = 60
    cur = pd.Timestamp(now).floor("60s")
    closes = _reference_closes(tick_market.path, "BTCUSDT", step, cur - pd.Timedelta(seconds=56 * step), now)
    d = np.diff(closes.to_numpy())
    up, down = np.clip(d, 0, None), np.clip(-d, 0, None)
    au, ad = up[:14].mean(), down[:14].mean()
    for u, w in zip(up[14:], down[14:]):
        au, ad = (au * 13 + u) / 14, (ad * 13 + w) / 14
    assert obs.value == pytest.approx(100 - 100 / (1 + au / ad), rel=1e-9)
    assert 0 < obs.value < 100


@pytest.mark.parametrize("tf,lookback", [("1m", 60), ("5m", 30)])
def test_zscore_and_spread_match_numpy_ols(tick_market, tf, lookback):
    now = _newest_tick(tick_market.path) + dt.timedelta(milliseconds=1)
    step = queries.tf_seconds(tf)
    fields = {"symbol": "ETHUSDT", "symbol2": "BTCUSDT", "timeframe": tf, "op": ">", "threshold": 2,
              "lookback": lookback}
    z = current_value(validate_rule({**fields, "metric": "zscore"}), tick_market.path, now)
    s = current_value(validate_rule({**fields, "metric": "spread"}), tick_market.path, now)
    cur = pd.Timestamp(now).floor(f"{step}s")
    start = cur - pd.Timedelta(seconds=(lookback - 1) * step)
    y = _reference_closes(tick_market.path, "ETHUSDT", step, start, now)
    x = _reference_closes(tick_market.path, "BTCUSDT", step, start, now)
    wide = pd.concat([y, x], axis=1, keys=["y", "x"]).sort_index().ffill().dropna()
    X = np.column_stack([np.ones(len(wide)), wide["x"].to_numpy()])
    (alpha, beta), *_ = np.linalg.lstsq(X, wide["y"].to_numpy(), rcond=None)
    resid = wide["y"].to_numpy() - alpha - beta * wide["x"].to_numpy()
    assert s.value == pytest.approx(resid[-1], rel=1e-6, abs=1e-6)
    assert z.value == pytest.approx((resid[-1] - resid.mean()) / resid.std(ddof=1), rel=1e-6)
    assert cur - pd.Timedelta(seconds=step) <= z.observed_at < cur + pd.Timedelta(seconds=step)


def test_pair_metrics_say_what_is_missing(empty_tick_db):
    rule = validate_rule({"symbol": "ETHUSDT", "symbol2": "BTCUSDT", "metric": "zscore", "timeframe": "1m",
                          "op": ">", "threshold": 2, "lookback": 60})
    obs = current_value(rule, empty_tick_db, T0)
    assert obs.value is None and "need 30 aligned 1m bars" in obs.detail


def test_align_pair_forward_fills_the_quieter_leg():
    buckets, y, x = align_pair(np.array([1, 2, 3]), np.array([10.0, 11.0, 12.0]),
                               np.array([2, 4]), np.array([5.0, 6.0]))
    assert buckets.tolist() == [2, 3, 4]
    assert y.tolist() == [11.0, 12.0, 12.0] and x.tolist() == [5.0, 5.0, 6.0]


class Hook(http.server.BaseHTTPRequestHandler):
    """A webhook receiver (serve it on 127.0.0.1): each JSON body POSTed is appended to `Hook.bodies`."""

    bodies: list = []

    def do_POST(self):  # noqa: N802
        n = int(self.headers["Content-Length"])
        type(self).bodies.append(json.loads(self.rfile.read(n)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


def test_engine_posts_webhook_without_blocking_the_flush(rig, monkeypatch):
    monkeypatch.setenv("TICKDESK_WEBHOOKS_ALLOW_PRIVATE", "1")  # the hook listens on loopback
    Hook.bodies = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    engine = AlertEngine(clock=rig.clock)
    rig.writer.hooks = [engine.on_flush]
    try:
        rig.flush([tick("BTCUSDT", 1, T0_US, 99.0)])
        rule = rig.store.create({"symbol": "BTCUSDT", "metric": "price", "op": "crosses_above", "threshold": 100,
                                 "cooldown_s": 0, "note": "breakout",
                                 "webhook_url": f"http://127.0.0.1:{srv.server_port}/hook"})
        rig.flush()
        rig.flush([tick("BTCUSDT", 2, T0_US + 1000, 100.5)])
        assert engine.sender.join(10)
        ev = rig.events()
        assert len(Hook.bodies) == 1
        body = Hook.bodies[0]
        assert body["event_id"] == int(ev.loc[0, "id"]) and body["rule_id"] == rule.id
        assert body["value"] == 100.5 and body["note"] == "breakout" and body["symbol"] == "BTCUSDT"
        assert body["fired_at"].endswith("+00:00") and "crossed above 100" in body["message"]
    finally:
        engine.close()
        srv.shutdown()
        srv.server_close()


def test_a_broken_rule_is_logged_and_the_others_still_run(rig, caplog):
    rig.flush([tick("BTCUSDT", 1, T0_US, 99.0)])
    with write_connection(rig.db) as con:  # a pair rule whose legs never traded: not an error, just no value
        con.execute("""INSERT INTO alert_rules(market, symbol, symbol2, metric, timeframe, op, threshold, cooldown_s)
                       VALUES ('spot', 'XXXUSDT', 'YYYUSDT', 'zscore', '1m', '>', 1, 0)""")
    rig.store.create({"symbol": "BTCUSDT", "metric": "price", "op": "<", "threshold": 100, "cooldown_s": 0})
    rig.engine.metrics._obs_zscore = lambda rule: 1 / 0  # simulate a metric failure
    rig.flush()
    assert len(rig.events()) == 1 and rig.engine.stats.errors == 1
    assert "could not be evaluated" in caplog.text


@pytest.mark.slow
def test_engine_caches_agree_with_a_fresh_sql_computation(tmp_path):
    """Streaming a cointegrated pair in 250 ms flushes, some ticks late: the values the engine evaluates (closed
    bars cached, forming bar from the flushed batch) equal a from-scratch SQL computation at the same instant."""
    from tests.conftest import synthetic_pair_ticks

    db = init_db(tmp_path / "stream.duckdb")
    rows = sorted(synthetic_pair_ticks(T0_US, 60 / 3600, 6.0, seed=5), key=lambda r: r[3])
    clock = Clock(T0)
    engine = AlertEngine(clock=clock, webhooks=False)
    store = RuleStore(db)
    rules = [store.create({"symbol": "ETHUSDT", "symbol2": "BTCUSDT", "metric": m, "timeframe": "1s",
                           "lookback": 20, "op": ">", "threshold": 1e9}) for m in ("zscore", "spread")]
    rules.append(store.create({"symbol": "BTCUSDT", "metric": "rsi", "timeframe": "1s", "lookback": 5, "op": ">",
                               "threshold": 100}))
    i, compared, held = 0, 0, []
    with write_connection(db) as con:  # one connection, as a TickWriter flush would use, without reopening
        for k in range(1, 60 * 4):
            t_us = T0_US + k * 250_000
            j = i
            while j < len(rows) and rows[j][3] < t_us:
                j += 1
            # every 4th flush holds back its BTC ticks to the next one: late ticks for a bar already closed
            now_rows = held + [r for r in rows[i:j] if k % 4 or r[1] != "BTCUSDT"]
            held = [] if k % 4 else [r for r in rows[i:j] if r[1] == "BTCUSDT"]
            batch = rows_to_arrow(now_rows)
            i = j
            clock.t = T0 + dt.timedelta(microseconds=k * 250_000 + 3_000)  # the flush runs just after the slice
            engine.on_flush(con, batch, insert_batch(con, batch))
            if k % 5 == 0 and k > 90:
                fresh = MetricSource()
                fresh.begin(con, clock.t)
                for r in rules:
                    assert engine.state(r.id).last_value == pytest.approx(fresh.observe(r).value, rel=1e-12,
                                                                          abs=1e-12), (r.metric, k)
                    compared += 1
    assert compared > 30
