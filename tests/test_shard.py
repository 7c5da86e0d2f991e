"""Connection sharding within Binance's limits: the plans, the local exchange enforcing the limits, the ingestor
over many connections and both markets, symbols delisted or halted mid-run, the shared REST weight budget."""
from __future__ import annotations

import threading
import time

import orjson
import pytest
import requests
import websocket

from exchange.server import LocalExchange
from feed.binance import MARKETS, combined_url, stream_url, symbol_streams
from feed.ingest import IngestConfig, Ingestor
from feed.shards import AttemptLimiter, plan_shards, plan_subscribe
from tests.feedcheck import compare, start_ingestor, stop_ingestor, stored, wait_for
from tickstore.connection import read_connection


# --- plans (pure) -----------------------------------------------------------------------------------------------

def test_plan_shards_fills_few_connections_round_robin():
    syms = [f"S{i:03d}USDT" for i in range(400)]
    groups = plan_shards(syms, 1, 200)
    assert [len(g) for g in groups] == [200, 200]
    assert groups[0][:3] == ["S000USDT", "S002USDT", "S004USDT"]  # the busiest symbols are dealt to both
    assert sorted(s for g in groups for s in g) == syms  # each symbol exactly once
    assert [len(g) for g in plan_shards(syms[:7], 1, 3)] == [3, 2, 2]
    assert len(plan_shards([f"S{i}X" for i in range(1000)], 1, 200)) == 5
    # two streams per symbol (trades + mark price): half the symbols per connection
    assert [len(g) for g in plan_shards(syms, 2, 200)] == [100] * 4
    assert plan_shards([], 1, 10) == []
    with pytest.raises(ValueError):
        plan_shards(syms, 2, 1)


def test_plan_subscribe_keeps_the_url_short_and_paces_below_the_message_limit():
    spec = MARKETS["spot"]
    streams = [n for i in range(200) for n in symbol_streams(spec, f"S{i:03d}USDT")]
    prefix = len(combined_url(spec, [], "ws://127.0.0.1:9001"))
    plan = plan_subscribe(streams, prefix, spec.msg_rate, url_max=300, per_message=50)
    assert len(combined_url(spec, plan.in_url, "ws://127.0.0.1:9001")) <= 300
    assert plan.in_url + [n for m in plan.messages for n in m] == streams  # all, in order, once
    assert all(len(m) <= 50 for m in plan.messages) and plan.streams == 200
    assert 1 / plan.spacing_s < spec.msg_rate / 2  # at most 40 % of spot's 5 messages per second
    assert 1 / plan_subscribe(streams, prefix, MARKETS["usdm"].msg_rate).spacing_s < 10 / 2
    # a short list rides in the URL alone; a tiny budget still puts one stream there (never an empty URL)
    assert plan_subscribe(streams[:3], prefix, 5).messages == []
    assert len(plan_subscribe(streams, prefix, 5, url_max=1).in_url) == 1


def test_stream_names_come_from_one_place():
    assert symbol_streams(MARKETS["spot"], "BTCUSDT") == ["btcusdt@trade"]
    assert symbol_streams(MARKETS["usdm"], "BTCUSDT") == ["btcusdt@aggTrade", "btcusdt@markPrice@1s"]
    assert stream_url(MARKETS["usdm"], ["BTCUSDT", "ETHUSDT"], "ws://h:1") == \
        "ws://h:1/market/stream?streams=btcusdt@aggTrade/btcusdt@markPrice@1s/ethusdt@aggTrade/ethusdt@markPrice@1s"


def test_attempt_limiter_spaces_attempts_and_caps_the_window():
    now = [100.0]
    lim = AttemptLimiter(max_attempts=3, window_s=10.0, spacing_s=0.5, clock=lambda: now[0])
    stop = threading.Event()
    assert lim.delay() == 0 and lim.acquire(stop)
    assert lim.delay() == pytest.approx(0.5)  # staggered
    for _ in range(2):
        now[0] += 0.5
        assert lim.acquire(stop)
    now[0] += 0.5
    assert lim.delay() == pytest.approx(8.5)  # three in the window: the next waits for the first to age out
    now[0] += 8.5
    assert lim.delay() == 0
    assert lim.acquire(stop)
    stop.set()  # the next slot is 0.5 s away: acquire gives up when stopping instead of waiting
    assert lim.acquire(stop) is False


# --- the local exchange enforces Binance's limits ----------------------------------------------------------------

def _ws(ex, path):
    return websocket.create_connection(ex.ws_url + path, timeout=5, suppress_origin=True)


def _recv_json(ws):
    while True:
        op, data = ws.recv_data()
        if op == websocket.ABNF.OPCODE_TEXT:
            msg = orjson.loads(data)
            if "id" in msg:
                return msg


@pytest.mark.slow
def test_exchange_refuses_over_limit_behaviour():
    with LocalExchange(["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"], seed=3, rate=5.0, max_streams_per_connection=2,
                       max_connection_attempts=6, connection_attempt_window=60.0) as ex:
        # too many streams in the URL: refused before the upgrade
        with pytest.raises(websocket.WebSocketBadStatusException) as err:
            _ws(ex, "/stream?streams=btcusdt@trade/ethusdt@trade/solusdt@trade")
        assert err.value.status_code == 400 and b"-1101" in err.value.resp_body
        # ... and by SUBSCRIBE: an error answer, the connection stays
        ws = _ws(ex, "/stream?streams=btcusdt@trade")
        ws.send('{"method":"SUBSCRIBE","params":["ethusdt@trade","solusdt@trade"],"id":1}')
        assert "too many streams" in _recv_json(ws)["error"]["msg"]
        # six messages within a second on spot: closed with 1008 like Binance does
        for i in range(6):
            ws.send('{"method":"LIST_SUBSCRIPTIONS","id":%d}' % (10 + i))
        deadline = time.monotonic() + 5
        code = None
        while time.monotonic() < deadline and code is None:
            op, data = ws.recv_data(control_frame=True)
            if op == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big")
        assert code == 1008 and b"Too many requests" in data
        ws.close()
        # connection attempts: 6 per window per IP (two above, the refused one counts), the seventh is refused with
        # 429 and Retry-After
        for _ in range(4):
            _ws(ex, "/ws/btcusdt@trade").close()
        with pytest.raises(websocket.WebSocketBadStatusException) as err:
            _ws(ex, "/ws/btcusdt@trade")
        assert err.value.status_code == 429 and int(err.value.resp_headers["retry-after"]) >= 1
        st = ex.stats()
        assert st.attempts_refused == 1 and st.too_many_streams == 2 and st.rate_limit_closes == 1


@pytest.mark.slow
def test_exchange_delists_and_halts_symbols_mid_run():
    with LocalExchange(["BTCUSDT", "ETHUSDT", "SOLUSDT"], seed=3, rate=20.0, history_seconds=30) as ex:
        ex.delist("ETHUSDT", "spot")
        ex.halt("SOLUSDT")
        info = requests.get(ex.http_url + "/api/v3/exchangeInfo", timeout=5).json()
        assert {s["symbol"]: s["status"] for s in info["symbols"]} == {"BTCUSDT": "TRADING", "SOLUSDT": "BREAK"}
        fut = requests.get(ex.http_url + "/fapi/v1/exchangeInfo", timeout=5).json()
        assert {s["symbol"]: s["status"] for s in fut["symbols"]}["ETHUSDT"] == "TRADING"  # spot only
        r = requests.get(ex.http_url + "/api/v3/historicalTrades", params={"symbol": "ETHUSDT"}, timeout=5)
        assert r.status_code == 400 and r.json()["code"] == -1121
        assert requests.get(ex.http_url + "/api/v3/historicalTrades", params={"symbol": "SOLUSDT"}, timeout=5).ok
        with pytest.raises(websocket.WebSocketBadStatusException):
            _ws(ex, "/stream?streams=ethusdt@trade")
        n_sol, n_btc = len(ex.trades("SOLUSDT")), len(ex.trades("BTCUSDT"))
        time.sleep(1.0)
        assert len(ex.trades("SOLUSDT")) == n_sol and len(ex.trades("BTCUSDT")) > n_btc  # halted: no prints
        ex.set_symbol_status("SOLUSDT", "TRADING")
        assert wait_for(lambda: len(ex.trades("SOLUSDT")) > n_sol, 10)
        with pytest.raises(ValueError):
            ex.set_symbol_status("NOPEUSDT", "BREAK")


# --- the ingestor over many connections -------------------------------------------------------------------------

def _events(db):
    with read_connection(db, budget_s=10) as con:
        return con.execute("SELECT kind, symbol, detail FROM ingest_events ORDER BY id").fetchall()


def _status(db, market="spot"):
    with read_connection(db, budget_s=10) as con:
        return {s: (c, x) for s, c, x in con.execute(
            "SELECT symbol, connected, exchange_status FROM ingest_status WHERE market = ?", [market]).fetchall()}


def _settle(db, ex, symbols, market="spot", timeout=90):
    ex.pause()
    last = {s: ex.last_trade_id(s, market) for s in symbols}
    assert wait_for(lambda: all(len(d := stored(db, market, s)) and d["trade_id"].max() >= last[s] for s in symbols),
                    timeout), "ingestor did not catch up"
    wait_for(lambda: all(compare(db, ex, market, s).missing == 0 for s in symbols), timeout, every=0.5)


@pytest.mark.slow
def test_sharded_over_many_connections_nothing_missing_or_doubled(tmp_path):
    """36 symbols, 8 streams per connection: 5 connections, each subscribing by six or seven one-name SUBSCRIBEs
    (unpaced, they would be closed with 1008), opened within the exchange's attempt limit (8 per 20 s: ten
    unlimited attempts would be refused), then every connection dropped at once."""
    syms = [f"S{i:02d}USDT" for i in range(36)]
    ex = LocalExchange(syms, seed=4, rate=3.0, history_seconds=60, max_streams_per_connection=8,
                       max_connection_attempts=8, connection_attempt_window=20.0).start()
    db = tmp_path / "t.duckdb"
    ing = Ingestor(IngestConfig(symbols=syms, db=db, ws_url=ex.ws_url, rest_url=ex.http_url, flush_ms=100,
                                streams_per_connection=8, url_max=40, names_per_message=1, max_attempts=6,
                                attempt_window_s=20.0, attempt_spacing_s=0.2, stats_every_s=3600))
    try:
        ing.check()
        ing.start()
        shards = ing.feeds["spot"].shards
        assert [len(s.streams) for s in shards] == [8, 7, 7, 7, 7]
        messages = sum(len(s.plan.messages) for s in shards)
        assert messages >= 30 and all(len(s.plan.messages) > 5 for s in shards)  # the SUBSCRIBE path
        assert wait_for(lambda: ing.state.connected.get("spot") and ex.stats().connections_open == 5, 90)
        assert wait_for(lambda: all(len(stored(db, "spot", s)) > 5 for s in syms), 60)
        ex.drop_connections("reset")
        assert wait_for(lambda: ex.stats().connections_opened >= 10 and ing.state.connected.get("spot"), 90)
        _settle(db, ex, syms)
    finally:
        ing.stop()
        st = ex.stats()
        ex.stop()
    for s in syms:
        c = compare(db, ex, "spot", s)
        assert c.ok and c.expected > 10, c
    # a client bug would show here: the exchange never had to refuse or close anything
    assert st.attempts_refused == 0 and st.too_many_streams == 0 and st.rate_limit_closes == 0, st
    assert st.connections_rejected == 0 and st.control_messages >= 2 * messages
    kinds = [k for k, _, _ in _events(db)]
    assert kinds.count("connected") >= 10 and kinds.count("reconnect") == 5


def _kinds(db):
    return [k for k, _, _ in _events(db)]


@pytest.mark.slow
def test_both_markets_in_one_process_with_top(tmp_path):
    """--top 2 plus a symbol on spot and usdm in one process, two streams per connection (spot 2 connections, usdm
    3: trades and mark price), each connection rotating on its own and the spot ones told serverShutdown."""
    syms = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT"]
    ex = LocalExchange(syms, seed=8, rate=10.0, history_seconds=300,
                       rate_scale={"BTCUSDT": 1.0, "ETHUSDT": 0.6, "SOLUSDT": 0.2, "DOGEUSDT": 0.1}).start()
    db = tmp_path / "t.duckdb"
    proc = start_ingestor(ex, db, ["DOGEUSDT"], "--top", "2", "--streams-per-connection", "2", "--rotate-after",
                          "8s", market="spot,usdm")
    want = ["BTCUSDT", "ETHUSDT", "DOGEUSDT"]
    try:
        assert wait_for(lambda: db.exists() and all(len(stored(db, m, s)) > 5 for m in ("spot", "usdm")
                                                    for s in want), 90), db.with_suffix(".log").read_text()[-3000:]
        assert wait_for(lambda: _kinds(db).count("rotated") >= 5, 60)  # every connection rotated at least once
        ex.send_server_shutdown("spot", close_after=3.0)
        assert wait_for(lambda: _kinds(db).count("server_shutdown") >= 2, 30)
        for m in ("spot", "usdm"):
            _settle(db, ex, want, m)
    finally:
        assert stop_ingestor(proc) == 0
        st = ex.stats()
        ex.stop()
    for m in ("spot", "usdm"):
        for s in want:
            c = compare(db, ex, m, s)
            assert c.ok, (m, c)
        assert len(stored(db, m, "SOLUSDT")) == 0  # third by volume: not in the top 2
    assert st.connections_open == 0 and st.connections_opened >= 4  # 2 per market
    log = db.with_suffix(".log").read_text()
    assert "ingesting spot BTCUSDT,ETHUSDT,DOGEUSDT" in log and "ingesting usdm BTCUSDT,ETHUSDT,DOGEUSDT" in log
    assert "spot: 3 symbols, 3 streams over 2 connection(s)" in log and "usdm: 3 symbols, 6 streams over 3" in log
    rotated = {d.split(":")[0] for k, _, d in _events(db) if k == "rotated"}
    assert {"spot#1", "spot#2", "usdm#1", "usdm#2", "usdm#3"} <= rotated


@pytest.mark.slow
def test_delisted_and_halted_symbols_are_reported_not_retried(tmp_path):
    syms = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT"]
    ex = LocalExchange(syms, seed=9, rate=8.0, history_seconds=60).start()
    db = tmp_path / "t.duckdb"
    ing = Ingestor(IngestConfig(symbols=syms, db=db, ws_url=ex.ws_url, rest_url=ex.http_url, flush_ms=100,
                                streams_per_connection=2, status_check_s=1.0, attempt_spacing_s=0.1,
                                stats_every_s=3600))
    try:
        ing.check()
        ing.start()
        feed = ing.feeds["spot"]
        assert wait_for(lambda: all(len(stored(db, "spot", s)) > 5 for s in syms), 90)
        # halted: found by the periodic check once silent, reported once, and reported trading again
        ex.halt("SOLUSDT", "spot")
        assert wait_for(lambda: "SOLUSDT" in feed.halted, 30)
        assert wait_for(lambda: _status(db)["SOLUSDT"][1] == "BREAK", 10)
        ex.set_symbol_status("SOLUSDT", "TRADING")
        assert wait_for(lambda: "SOLUSDT" not in feed.halted, 30)
        # delisted, and every connection dropped before the periodic check can see it: the reconnect of its
        # connection is refused (the URL names it), which triggers the check; the rest reconnect, nothing loops
        feed.status_check_s = 3600.0
        ex.delist("ETHUSDT", "spot")
        ex.drop_connections("close")
        assert wait_for(lambda: "ETHUSDT" in feed.delisted, 60)
        assert wait_for(lambda: ing.state.connected.get("spot") and ex.stats().connections_open == 3, 60)
        rejected = ex.stats().connections_rejected
        keep = [s for s in syms if s != "ETHUSDT"]
        _settle(db, ex, keep)
        time.sleep(2)
        assert ex.stats().connections_rejected == rejected  # no further attempts with the delisted symbol
        assert wait_for(lambda: _status(db)["ETHUSDT"] == (False, "DELISTED"), 10)
        assert _status(db)["SOLUSDT"] == (True, "TRADING")
    finally:
        ing.stop()
        ex.stop()
    for s in keep:
        c = compare(db, ex, "spot", s)
        assert c.ok, c
    ev = _events(db)
    assert [s for k, s, _ in ev if k == "delisted"] == ["ETHUSDT"]
    assert [s for k, s, _ in ev if k == "halted"] == ["SOLUSDT"]
    assert [s for k, s, _ in ev if k == "trading_resumed"] == ["SOLUSDT"]
    assert ex.stats().connections_rejected <= 2


@pytest.mark.slow
def test_backfill_of_every_connection_shares_one_weight_budget(tmp_path):
    """40 symbols over 4 connections, then every connection down for a while: each symbol's catch-up costs 25
    weight, together more than the 80 % budget of a 1,000-weight minute. The market's one REST client pauses
    for the next minute instead of drawing a 429, and everything is filled in the end."""
    syms = [f"S{i:02d}USDT" for i in range(40)]
    ex = LocalExchange(syms, seed=6, rate=2.0, history_seconds=60, weight_limit=1000).start()
    db = tmp_path / "t.duckdb"
    log_path = tmp_path / "t.log"
    proc = start_ingestor(ex, db, syms, "--streams-per-connection", "10", log_path=log_path)
    try:
        assert wait_for(lambda: db.exists() and all(len(stored(db, "spot", s)) > 0 for s in syms), 90)
        assert stop_ingestor(proc) == 0
        time.sleep(3)  # every symbol trades meanwhile: each needs a REST catch-up on restart
        proc = start_ingestor(ex, db, syms, "--streams-per-connection", "10", log_path=log_path)
        assert wait_for(lambda: "near budget; pausing" in log_path.read_text(), 60)
        _settle(db, ex, syms, timeout=150)
    finally:
        assert stop_ingestor(proc) == 0
        st = ex.stats()
        ex.stop()
    for s in syms:
        assert compare(db, ex, "spot", s).ok
    assert st.rest_rate_limited == 0 and st.rest_429_sent == 0, st
    assert log_path.read_text().count("spot#") >= 4
