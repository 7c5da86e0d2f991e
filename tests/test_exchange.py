"""The local exchange over real sockets (websocket-client, requests): Binance shapes, errors, paging, faults.

References: JSON shapes and error codes from binance-protocol.md (docs/shared); cointegration checked with
statsmodels' Engle-Granger ``coint`` on a seeded simulation.
"""
from __future__ import annotations

import asyncio
import json
import queue
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import aiohttp
import numpy as np
import pandas as pd
import pytest
import requests
import websocket

from exchange.server import LocalExchange
from exchange.server import main as exchange_main
from exchange.model import STEP_US, Simulator

ROOT = Path(__file__).resolve().parents[1]
DEC8 = re.compile(r"^\d+\.\d{8}$")
SPOT_TRADE_KEYS = {"id", "price", "qty", "quoteQty", "time", "isBuyerMaker", "isBestMatch"}
USDM_TRADE_KEYS = {"id", "price", "qty", "quoteQty", "time", "isBuyerMaker", "isRPITrade"}
SPOT_AGG_KEYS = {"a", "p", "q", "f", "l", "T", "m", "M"}
USDM_AGG_KEYS = {"a", "p", "q", "nq", "f", "l", "T", "m"}
WS_TRADE_KEYS = {"e", "E", "s", "t", "p", "q", "T", "m", "M"}
WS_SPOT_AGG_KEYS = {"e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"}
WS_USDM_AGG_KEYS = {"e", "E", "s", "a", "p", "q", "nq", "f", "l", "T", "m"}


# --- helpers -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ex():
    with LocalExchange(("BTCUSDT", "ETHUSDT", "SOLUSDT"), seed=11, rate=80.0, history_seconds=300,
                       weight_limit=100_000) as e:
        yield e


@pytest.fixture
def make_ex():
    started: list[LocalExchange] = []

    def make(symbols=("BTCUSDT",), **kw) -> LocalExchange:
        kw.setdefault("rate", 50.0)
        e = LocalExchange(symbols, **kw).start()
        started.append(e)
        return e
    yield make
    for e in started:
        e.stop()


def get(e: LocalExchange, path: str, params=None, headers=None) -> requests.Response:
    return requests.get(e.http_url + path, params=params, headers=headers, timeout=10)


def connect(e: LocalExchange, path: str, timeout: float = 5.0) -> websocket.WebSocket:
    return websocket.create_connection(e.ws_url + path, timeout=timeout, skip_utf8_validation=True)


def recv_json(ws: websocket.WebSocket, n: int) -> list[dict]:
    return [json.loads(ws.recv()) for _ in range(n)]


def frames_for(ws: websocket.WebSocket, seconds: float) -> list[tuple[int, bytes]]:
    """Every frame (opcode, payload) arriving within ``seconds`` (pings are answered by websocket-client)."""
    out, end = [], time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        ws.settimeout(left)
        try:
            op, frame = ws.recv_data_frame(True)
        except websocket.WebSocketTimeoutException:
            break
        out.append((op, frame.data))
        if op == websocket.ABNF.OPCODE_CLOSE:
            break
    return out


def close_code(ws: websocket.WebSocket, timeout: float = 5.0) -> int:
    ws.settimeout(timeout)
    while True:
        op, frame = ws.recv_data_frame(True)
        if op == websocket.ABNF.OPCODE_CLOSE:
            return struct.unpack("!H", frame.data[:2])[0]


def page_all(e: LocalExchange, path: str, symbol: str, from_id: int, last_id: int, key: str,
             headers=None) -> list[dict]:
    rows: list[dict] = []
    while from_id <= last_id:
        page = get(e, path, {"symbol": symbol, "fromId": from_id, "limit": 1000}, headers).json()
        assert page, f"empty page at fromId={from_id}"
        rows += page
        from_id = page[-1][key] + 1
    return rows


def ms(ts: pd.Series) -> np.ndarray:
    return ts.dt.as_unit("ms").astype("int64").to_numpy()


# --- REST: shapes ----------------------------------------------------------------------------------------

def test_spot_rest_shapes(ex):
    assert get(ex, "/api/v3/ping").json() == {}
    t = get(ex, "/api/v3/time").json()
    assert set(t) == {"serverTime"} and abs(t["serverTime"] - time.time() * 1000) < 60_000

    info = get(ex, "/api/v3/exchangeInfo", {"symbol": "BTCUSDT"}).json()
    assert {"timezone", "serverTime", "rateLimits", "exchangeFilters", "symbols"} <= set(info)
    assert info["timezone"] == "UTC"
    assert info["rateLimits"][0] == {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                                     "limit": 100_000}
    [sym] = info["symbols"]
    assert (sym["symbol"], sym["status"], sym["baseAsset"], sym["quoteAsset"]) == ("BTCUSDT", "TRADING", "BTC", "USDT")
    filters = {f["filterType"]: f for f in sym["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000" and filters["LOT_SIZE"]["stepSize"] == "0.00001000"
    two = get(ex, "/api/v3/exchangeInfo", {"symbols": '["ETHUSDT","BTCUSDT"]'}).json()
    assert [s["symbol"] for s in two["symbols"]] == ["ETHUSDT", "BTCUSDT"]
    assert [s["symbol"] for s in get(ex, "/api/v3/exchangeInfo").json()["symbols"]] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]

    r = get(ex, "/api/v3/historicalTrades", {"symbol": "BTCUSDT", "limit": 5})
    rows = r.json()
    assert len(rows) == 5 and int(r.headers["X-MBX-USED-WEIGHT-1M"]) >= 25
    for row in rows:
        assert set(row) == SPOT_TRADE_KEYS
        assert isinstance(row["id"], int) and isinstance(row["time"], int) and len(str(row["time"])) == 13
        assert DEC8.match(row["price"]) and DEC8.match(row["qty"])
        assert Decimal(row["quoteQty"]) == Decimal(row["price"]) * Decimal(row["qty"])
        assert isinstance(row["isBuyerMaker"], bool) and row["isBestMatch"] is True
    assert np.all(np.diff([x["id"] for x in rows]) == 1)
    recent = get(ex, "/api/v3/trades", {"symbol": "BTCUSDT", "limit": 3}).json()
    assert set(recent[0]) == SPOT_TRADE_KEYS and recent[-1]["id"] <= ex.last_trade_id("BTCUSDT")

    aggs = get(ex, "/api/v3/aggTrades", {"symbol": "ETHUSDT", "limit": 5}).json()
    for row in aggs:
        assert set(row) == SPOT_AGG_KEYS and row["f"] <= row["l"] and row["M"] is True and DEC8.match(row["p"])
    assert np.all(np.diff([x["a"] for x in aggs]) == 1)


def test_usdm_rest_shapes(ex):
    assert get(ex, "/fapi/v1/ping").json() == {}
    aggs = get(ex, "/fapi/v1/aggTrades", {"symbol": "BTCUSDT", "limit": 5}).json()
    truth = ex.trades("BTCUSDT", "usdm").set_index("trade_id")
    for row in aggs:
        assert set(row) == USDM_AGG_KEYS
        assert re.match(r"^\d+\.\d{2}$", row["p"]) and re.match(r"^\d+\.\d{3}$", row["q"])
        assert Decimal(row["nq"]) <= Decimal(row["q"])
        assert truth.loc[row["a"], "price"] == float(row["p"]) and truth.loc[row["a"], "qty"] == float(row["q"])
    trades = get(ex, "/fapi/v1/trades", {"symbol": "ETHUSDT", "limit": 5}).json()
    assert len(trades) == 5 and all(set(t) == USDM_TRADE_KEYS for t in trades)
    r = get(ex, "/fapi/v1/historicalTrades", {"symbol": "BTCUSDT"})
    assert r.status_code == 401 and r.json() == {"code": -2014, "msg": "API-key format invalid."}
    r = get(ex, "/fapi/v1/historicalTrades", {"symbol": "BTCUSDT"}, {"X-MBX-APIKEY": "k" * 64})
    assert r.status_code == 200 and len(r.json()) == 100 and set(r.json()[0]) == USDM_TRADE_KEYS
    info = get(ex, "/fapi/v1/exchangeInfo").json()
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    assert info["futuresType"] == "U_MARGINED" and btc["pricePrecision"] == 2 and btc["quantityPrecision"] == 3
    assert btc["contractType"] == "PERPETUAL" and btc["filters"][0]["tickSize"] == "0.1"


@pytest.mark.parametrize("path, params, headers, status, code", [
    ("/api/v3/historicalTrades", {}, None, 400, -1102),
    ("/api/v3/historicalTrades", {"symbol": "btcusdt"}, None, 400, -1100),
    ("/api/v3/historicalTrades", {"symbol": "DOGEUSDT"}, None, 400, -1121),
    ("/api/v3/historicalTrades", {"symbol": "BTCUSDT", "fromId": "abc"}, None, 400, -1100),
    ("/api/v3/historicalTrades", {"symbol": "BTCUSDT", "limit": "1001"}, None, 400, -1130),
    ("/api/v3/trades", {"symbol": "BTCUSDT", "limit": "0"}, None, 400, -1130),
    ("/api/v3/trades", [("symbol", "BTCUSDT"), ("symbol", "ETHUSDT")], None, 400, -1101),
    ("/api/v3/aggTrades", {"symbol": "BTCUSDT", "fromId": "1", "startTime": "1"}, None, 400, -1128),
    ("/api/v3/aggTrades", {"symbol": "BTCUSDT", "startTime": "-5"}, None, 400, -1100),
    ("/api/v3/aggTrades", {"symbol": "BTCUSDT"}, {"X-MBX-TIME-UNIT": "NANOSECOND"}, 400, -1194),
    ("/api/v3/exchangeInfo", {"symbols": "BTCUSDT"}, None, 400, -1100),
    ("/api/v3/exchangeInfo", {"symbols": '["BTCUSDT","XRPUSDT"]'}, None, 400, -1121),
    ("/api/v3/exchangeInfo", {"symbol": "BTCUSDT", "symbols": '["BTCUSDT"]'}, None, 400, -1128),
    ("/fapi/v1/aggTrades", {"symbol": "BTCUSDT", "startTime": "1700000000000", "endTime": "1700007200000"},
     None, 400, -1127),
    ("/fapi/v1/historicalTrades", {"symbol": "BTCUSDT", "limit": "501"}, {"X-MBX-APIKEY": "k"}, 400, -1130),
    ("/fapi/v1/trades", {"symbol": "XRPUSDT"}, None, 400, -1121),
])
def test_rest_errors_are_binance_shaped(ex, path, params, headers, status, code):
    r = get(ex, path, params, headers)
    assert r.status_code == status
    body = r.json()
    assert set(body) == {"code", "msg"} and body["code"] == code and body["msg"]
    assert int(r.headers["X-MBX-USED-WEIGHT-1M"]) > 0


# --- REST: paging and consistency ------------------------------------------------------------------------

def test_historical_paging_is_gap_free_and_matches_ground_truth(ex):
    truth = ex.trades("ETHUSDT")
    first, last = int(truth.trade_id.iloc[0]), int(truth.trade_id.iloc[-1])
    rows = page_all(ex, "/api/v3/historicalTrades", "ETHUSDT", first, last, "id")
    got = pd.DataFrame(rows).iloc[: len(truth)]
    assert len(truth) > 10_000 and len(got) == len(truth)
    assert np.array_equal(got["id"].to_numpy(), truth.trade_id.to_numpy())
    assert np.array_equal(got["price"].astype(float).to_numpy(), truth.price.to_numpy())
    assert np.array_equal(got["qty"].astype(float).to_numpy(), truth.qty.to_numpy())
    assert np.array_equal(got["time"].to_numpy(), ms(truth.ts))
    assert np.array_equal(got["isBuyerMaker"].to_numpy(), truth.is_buyer_maker.to_numpy())
    assert np.all(np.diff(got["time"].to_numpy()) >= 0)


def test_agg_trades_group_consecutive_trades(ex):
    first_agg = int(ex.agg_trades("BTCUSDT").agg_id.iloc[0])
    aggs = page_all(ex, "/api/v3/aggTrades", "BTCUSDT", first_agg, first_agg + 2499, "a")[:2500]
    trades = page_all(ex, "/api/v3/historicalTrades", "BTCUSDT", aggs[0]["f"], aggs[-1]["l"], "id")
    by_id = {t["id"]: t for t in trades}
    assert aggs[0]["f"] == ex.instrument("BTCUSDT").first_trade_id
    assert all(b["a"] == a["a"] + 1 and b["f"] == a["l"] + 1 for a, b in zip(aggs, aggs[1:]))
    for agg in aggs:
        fills = [by_id[i] for i in range(agg["f"], agg["l"] + 1)]
        assert {(f["price"], f["time"], f["isBuyerMaker"]) for f in fills} == {(agg["p"], agg["T"], agg["m"])}
        assert sum(Decimal(f["qty"]) for f in fills) == Decimal(agg["q"])
    sweeps = np.mean([a["l"] > a["f"] for a in aggs])
    assert 0.1 < sweeps < 0.8  # several makers filled by one taker order at one price, but not always


def test_agg_trades_time_window(ex):
    truth = ex.agg_trades("SOLUSDT")
    t_ms = ms(truth.ts)
    start = int(t_ms[200])
    end = start + 4000
    expected = truth.agg_id.to_numpy()[(t_ms >= start) & (t_ms <= end)]
    rows = get(ex, "/api/v3/aggTrades", {"symbol": "SOLUSDT", "startTime": start, "endTime": end, "limit": 1000}).json()
    assert [r["a"] for r in rows] == expected.tolist() and len(rows) > 10
    rows_us = get(ex, "/api/v3/aggTrades", {"symbol": "SOLUSDT", "startTime": start * 1000,
                                            "endTime": end * 1000 + 999, "limit": 1000}).json()
    assert rows_us == rows
    tail = get(ex, "/api/v3/aggTrades", {"symbol": "SOLUSDT", "endTime": end, "limit": 5}).json()
    assert [r["a"] for r in tail] == expected[-5:].tolist()


# --- WebSocket streams --------------------------------------------------------------------------------------

def test_raw_trade_stream_matches_rest(ex):
    ws = connect(ex, "/ws/solusdt@trade")
    frames = recv_json(ws, 30)
    ws.close()
    for f in frames:
        assert set(f) == WS_TRADE_KEYS and f["e"] == "trade" and f["s"] == "SOLUSDT" and f["M"] is True
        assert DEC8.match(f["p"]) and DEC8.match(f["q"]) and f["E"] >= f["T"]
    ids = [f["t"] for f in frames]
    assert np.all(np.diff(ids) == 1)
    rest = get(ex, "/api/v3/historicalTrades", {"symbol": "SOLUSDT", "fromId": ids[0], "limit": 30}).json()
    assert [(r["id"], r["price"], r["qty"], r["time"], r["isBuyerMaker"]) for r in rest] == \
           [(f["t"], f["p"], f["q"], f["T"], f["m"]) for f in frames]


def test_combined_stream_wraps_and_orders_by_time(ex):
    streams = {"btcusdt@trade", "ethusdt@aggTrade", "solusdt@aggTrade"}
    ws = connect(ex, "/stream?streams=" + "/".join(sorted(streams)))
    msgs = recv_json(ws, 100)
    ws.close()
    seen: dict[str, list[int]] = {}
    for m in msgs:
        assert set(m) == {"stream", "data"} and m["stream"] in streams
        sym, kind = m["stream"].split("@")
        d = m["data"]
        assert d["e"] == kind and d["s"] == sym.upper()
        assert set(d) == (WS_TRADE_KEYS if kind == "trade" else WS_SPOT_AGG_KEYS)
        seen.setdefault(m["stream"], []).append(d["t"] if kind == "trade" else d["a"])
    assert set(seen) == streams
    assert all(np.all(np.diff(v) == 1) for v in seen.values())
    assert np.all(np.diff([m["data"]["T"] for m in msgs]) >= 0)


def test_microsecond_time_unit(ex):
    ws = connect(ex, "/stream?streams=btcusdt@trade&timeUnit=MICROSECOND")
    frames = [m["data"] for m in recv_json(ws, 10)]
    ws.close()
    assert all(len(str(f["T"])) == 16 and len(str(f["E"])) == 16 for f in frames)
    q = {"symbol": "BTCUSDT", "fromId": frames[0]["t"], "limit": 10}
    rest_us = get(ex, "/api/v3/historicalTrades", q, {"X-MBX-TIME-UNIT": "MICROSECOND"}).json()
    rest_ms = get(ex, "/api/v3/historicalTrades", q).json()
    assert [r["time"] for r in rest_us] == [f["T"] for f in frames]
    assert [r["time"] for r in rest_ms] == [f["T"] // 1000 for f in frames]
    aggs = get(ex, "/api/v3/aggTrades", {"symbol": "BTCUSDT", "limit": 3}, {"X-MBX-TIME-UNIT": "microsecond"}).json()
    assert all(len(str(a["T"])) == 16 for a in aggs)
    raw = connect(ex, "/ws/btcusdt@trade")
    assert len(str(json.loads(raw.recv())["T"])) == 13
    raw.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as err:
        connect(ex, "/stream?streams=btcusdt@trade&timeUnit=NANOSECOND")
    assert err.value.status_code == 400
    assert get(ex, "/stream?streams=btcusdt@trade&timeUnit=NANOSECOND").json()["code"] == -1194


def test_invalid_stream_is_refused_before_upgrade(ex):
    for path, code in (("/stream?streams=btcusdt@trade/xrpusdt@trade", -1121), ("/ws/BTCUSDT@trade", -1100),
                       ("/ws/btcusdt@depth", -1100)):
        with pytest.raises(websocket.WebSocketBadStatusException) as err:
            connect(ex, path)
        assert err.value.status_code == 400
        r = get(ex, path)
        assert r.status_code == 400 and r.json()["code"] == code


def test_control_messages(ex):
    ws = connect(ex, "/ws")
    data: list[dict] = []

    def call(msg) -> dict:
        ws.send(msg if isinstance(msg, str) else json.dumps(msg))
        time.sleep(0.25)  # stay under 5 incoming messages per second
        while True:
            m = json.loads(ws.recv())
            if "result" in m or "error" in m:
                return m
            data.append(m)

    assert call({"method": "SUBSCRIBE", "params": ["ethusdt@trade"], "id": 1}) == {"result": None, "id": 1}
    data += recv_json(ws, 3)
    assert data and all(d["e"] == "trade" and d["s"] == "ETHUSDT" for d in data)
    assert call({"method": "LIST_SUBSCRIPTIONS", "id": "abc"}) == {"result": ["ethusdt@trade"], "id": "abc"}
    assert call({"method": "GET_PROPERTY", "params": ["combined"], "id": 2}) == {"result": False, "id": 2}
    assert call({"method": "SET_PROPERTY", "params": ["combined", True], "id": 3}) == {"result": None, "id": 3}
    data.clear()
    wrapped = recv_json(ws, 2)
    assert all(m["stream"] == "ethusdt@trade" and m["data"]["e"] == "trade" for m in wrapped)
    assert call({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 4})["error"]["code"] == 1
    assert call({"method": "SUBSCRIBE", "params": ["xrpusdt@trade"], "id": 5}) == \
           {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 5}
    bad = call({"method": "SUBSCRIBEX", "id": 6})
    assert bad["error"]["code"] == 2 and "unknown variant" in bad["error"]["msg"] and bad["id"] == 6
    assert call("{not json")["error"]["code"] == 3
    assert call({"method": "UNSUBSCRIBE", "params": ["ethusdt@trade"], "id": 7}) == {"result": None, "id": 7}
    assert call({"method": "LIST_SUBSCRIPTIONS", "id": 8}) == {"result": [], "id": 8}
    assert [op for op, _ in frames_for(ws, 0.3) if op == websocket.ABNF.OPCODE_TEXT] == []
    ws.close()


def test_usdm_routed_streams(ex):
    ws = connect(ex, "/market/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade")
    public = connect(ex, "/public/stream?streams=btcusdt@aggTrade")
    msgs = recv_json(ws, 40)
    ws.close()
    by_sym: dict[str, list[dict]] = {}
    for m in msgs:
        d = m["data"]
        assert set(d) == WS_USDM_AGG_KEYS and d["e"] == "aggTrade" and m["stream"] == d["s"].lower() + "@aggTrade"
        by_sym.setdefault(d["s"], []).append(d)
    btc = by_sym["BTCUSDT"]
    assert re.match(r"^\d+\.\d{2}$", btc[0]["p"]) and np.all(np.diff([d["a"] for d in btc]) == 1)
    rest = get(ex, "/fapi/v1/aggTrades", {"symbol": "BTCUSDT", "fromId": btc[0]["a"], "limit": len(btc)}).json()
    assert rest == [{k: d[k] for k in USDM_AGG_KEYS} for d in btc]
    # the unrouted/public endpoint accepts the subscription but never carries trades (as on Binance)
    assert [op for op, _ in frames_for(public, 0.3) if op == websocket.ABNF.OPCODE_TEXT] == []
    public.close()
    raw = connect(ex, "/market/ws/ethusdt@trade?timeUnit=MICROSECOND")
    t = json.loads(raw.recv())
    raw.close()
    assert t["e"] == "trade" and t["X"] == "MARKET" and len(str(t["T"])) == 13  # usdm ignores timeUnit


# --- rate limits and REST faults ---------------------------------------------------------------------------

def test_weight_limit_gives_429_with_retry_after(make_ex):
    e = make_ex(weight_limit=50, rate=5)
    first = get(e, "/api/v3/exchangeInfo")
    assert first.status_code == 200 and first.headers["X-MBX-USED-WEIGHT-1M"] == "20"
    for _ in range(6):
        r = get(e, "/api/v3/exchangeInfo")
        if r.status_code == 429:
            break
    assert r.status_code == 429
    body = r.json()
    assert body["code"] == -1003 and "current limit is 50 request weight per 1 MINUTE" in body["msg"]
    assert 1 <= int(r.headers["Retry-After"]) <= 60 and int(r.headers["X-MBX-USED-WEIGHT-1M"]) > 50
    futures = get(e, "/fapi/v1/ping")  # usdm weight is counted separately
    assert futures.status_code == 200 and futures.headers["X-MBX-USED-WEIGHT-1M"] == "1"
    st = e.stats()
    assert st.rest_rate_limited >= 1 and st.rest_429_sent >= 1 and st.rest_statuses[429] >= 1


def test_injected_rest_failures(make_ex):
    e = make_ex(rate=5)
    e.fail_next_rest(2, status=429, retry_after=3)
    r = [get(e, "/api/v3/ping") for _ in range(3)]
    assert [x.status_code for x in r] == [429, 429, 200]
    assert r[0].headers["Retry-After"] == "3" and r[1].json()["code"] == -1003 and r[2].json() == {}
    e.fail_next_rest(1, status=418, retry_after=120)
    r = get(e, "/api/v3/historicalTrades", {"symbol": "BTCUSDT"})
    assert r.status_code == 418 and r.headers["Retry-After"] == "120" and "banned" in r.json()["msg"]
    e.fail_next_rest(1, status=503)
    assert get(e, "/fapi/v1/time").json()["code"] == -1008
    e.faults.rest_429_fraction = 1.0
    assert {get(e, "/api/v3/time").status_code for _ in range(4)} == {429}
    e.faults.rest_429_fraction = 0.0
    assert get(e, "/api/v3/time").status_code == 200
    st = e.stats()
    assert st.rest_injected == 8 and st.rest_429_sent == 6
    assert st.rest_requests["/api/v3/time"] == 5
    with pytest.raises(ValueError):
        e.faults.skip_fraction = 1.5


# --- WebSocket faults -------------------------------------------------------------------------------------

def test_skip_fraction_loses_frames_but_not_history(make_ex):
    e = make_ex(rate=200, skip_fraction=0.3, markets=("spot",))
    ws = connect(e, "/ws/btcusdt@trade")
    frames = recv_json(ws, 300)
    ws.close()
    ids = [f["t"] for f in frames]
    assert np.all(np.diff(ids) >= 1)
    span = ids[-1] - ids[0] + 1
    assert 0.15 < (span - len(ids)) / span < 0.45
    rest = page_all(e, "/api/v3/historicalTrades", "BTCUSDT", ids[0], ids[-1], "id")[:span]
    assert [r["id"] for r in rest] == list(range(ids[0], ids[-1] + 1))
    by_id = {r["id"]: r for r in rest}
    assert all(by_id[f["t"]]["price"] == f["p"] and by_id[f["t"]]["qty"] == f["q"] for f in frames)
    assert e.stats().skipped >= span - len(ids)


def test_malformed_frames_are_injected(make_ex):
    e = make_ex(rate=200, malformed_fraction=0.2, markets=("spot",))
    ws = connect(e, "/stream?streams=btcusdt@trade")
    texts = [ws.recv() for _ in range(300)]
    ws.close()
    non_json = missing = bad_price = 0
    good = []
    for text in texts:
        try:
            d = json.loads(text)["data"]
        except ValueError:
            non_json += 1
            continue
        if not {"t", "p", "q", "T"} <= set(d):
            missing += 1
            continue
        try:
            float(d["p"])
        except ValueError:
            bad_price += 1
            continue
        good.append(d["t"])
    assert non_json and missing and bad_price
    assert 0.1 < (non_json + missing + bad_price) / len(good) < 0.35
    assert np.all(np.diff(good) == 1)  # the real prints are all there, in order
    assert e.stats().malformed_sent >= non_json + missing + bad_price


def test_duplicates_and_reordering(make_ex):
    e = make_ex(("ETHUSDT",), rate=200, duplicate_fraction=0.1, reorder_fraction=0.1, markets=("spot",))
    ws = connect(e, "/ws/ethusdt@trade")
    ids = [f["t"] for f in recv_json(ws, 400)]
    ws.close()
    assert len(ids) - len(set(ids)) > 0
    assert any(b < a for a, b in zip(ids, ids[1:]))
    # the frame after the window may have been swapped with its last one (then the last id read is one past a gap)
    head = sorted(i for i in set(ids) if i < max(ids) - 1)
    assert head == list(range(min(ids), max(ids) - 1))
    st = e.stats()
    assert st.duplicates_sent > 0 and st.swapped > 0


def test_drop_connections_close_and_reset(make_ex):
    e = make_ex(rate=50)
    a, b = connect(e, "/ws/btcusdt@trade"), connect(e, "/stream?streams=btcusdt@trade")
    a.recv(), b.recv()
    assert e.drop_connections("close") == 2
    assert close_code(a) == 1000 and close_code(b) == 1000
    c = connect(e, "/ws/btcusdt@trade")
    c.recv()
    assert e.drop_connections(how="reset") == 1
    with pytest.raises(ConnectionResetError):
        for _ in range(100_000):
            c.recv()
    d = connect(e, "/ws/btcusdt@trade")
    assert json.loads(d.recv())["e"] == "trade"
    d.close()
    st = e.stats()
    assert st.closed_by_server["drop_close"] == 2 and st.closed_by_server["drop_reset"] == 1
    assert st.connections == 4


def test_stall_keeps_sockets_open_but_silent(make_ex):
    e = make_ex(rate=100, ping_interval=0.3, pong_timeout=5.0, markets=("spot",))
    ws = connect(e, "/ws/btcusdt@trade")
    before = frames_for(ws, 0.7)
    assert {websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_PING} <= {op for op, _ in before}
    t_stall = time.time() * 1000
    assert e.stall(1.5) == 1
    t_set = time.time() * 1000
    ws.ping(b"anyone?")
    fresh = connect(e, "/ws/btcusdt@trade")  # connections opened during the stall are served
    assert json.loads(fresh.recv())["e"] == "trade"
    fresh.close()
    during = frames_for(ws, 1.0)
    texts = [json.loads(p) for op, p in during if op == websocket.ABNF.OPCODE_TEXT]
    assert all(f["E"] <= t_set for f in texts)  # only frames already in flight
    assert all(int(p) <= t_set for op, p in during if op == websocket.ABNF.OPCODE_PING)
    time.sleep(max(0.0, (t_stall + 1700 - time.time() * 1000) / 1000))
    after = frames_for(ws, 0.8)
    ops = [op for op, _ in before + during + after]
    assert websocket.ABNF.OPCODE_PONG not in ops and websocket.ABNF.OPCODE_CLOSE not in ops
    assert websocket.ABNF.OPCODE_PING in {op for op, _ in after}
    resumed = [json.loads(p) for op, p in after if op == websocket.ABNF.OPCODE_TEXT]
    assert resumed and all(f["E"] >= t_stall + 1400 for f in resumed)
    last_before = max(f["t"] for f in [json.loads(p) for op, p in before + during if op == 1])
    assert resumed[0]["t"] > last_before + 1  # the stall lost frames ...
    truth = e.trades("BTCUSDT").trade_id.to_numpy()  # ... that REST still has
    assert np.isin(np.arange(last_before, resumed[0]["t"] + 1), truth).all()
    ws.close()


def _silent_client(url: str, answer: bytes | None) -> tuple[int, int]:
    """Connect with aiohttp (no automatic pongs); optionally answer pings with a wrong payload."""
    async def run() -> tuple[int, int]:
        pings = 0
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(url, autoping=False) as ws:
                while True:
                    msg = await asyncio.wait_for(ws.receive(), 5.0)
                    if msg.type == aiohttp.WSMsgType.PING:
                        pings += 1
                        if answer is not None:
                            await ws.pong(answer)
                    elif msg.type == aiohttp.WSMsgType.CLOSE:
                        return pings, msg.data
                    elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        return pings, -1
    return asyncio.run(run())


def test_pong_timeout_and_keepalive(make_ex):
    e = make_ex(rate=5, ping_interval=0.25, pong_timeout=0.6)
    for answer in (None, b"not-the-ping-payload"):
        pings, code = _silent_client(e.ws_url + "/ws/btcusdt@trade", answer)
        assert pings >= 2 and code == 1008
    ws = connect(e, "/ws/btcusdt@trade")  # websocket-client echoes every ping: stays open
    ops = [op for op, _ in frames_for(ws, 1.0)]
    assert ops.count(websocket.ABNF.OPCODE_PING) >= 2 and websocket.ABNF.OPCODE_CLOSE not in ops
    ws.close()
    assert e.stats().closed_by_server["pong_timeout"] == 2


def test_max_connection_age(make_ex):
    e = make_ex(rate=20, max_connection_seconds=0.6)
    ws = connect(e, "/stream?streams=btcusdt@trade")
    assert close_code(ws) == 1001
    assert e.stats().closed_by_server["max_age"] == 1


def test_incoming_message_rate_limit(make_ex):
    e = make_ex(rate=5)
    spot = connect(e, "/ws/btcusdt@trade")
    for i in range(7):
        spot.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
    assert close_code(spot) == 1008
    usdm = connect(e, "/market/ws/btcusdt@aggTrade")  # futures allow 10 per second
    for i in range(7):
        usdm.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
    replies: list[int] = []
    while len(replies) < 7:
        m = json.loads(usdm.recv())
        if "result" in m:
            replies.append(m["id"])
    assert replies == list(range(7))
    usdm.close()


def test_server_shutdown_event(make_ex):
    e = make_ex(rate=20)
    raw, comb = connect(e, "/ws/btcusdt@trade"), connect(e, "/stream?streams=btcusdt@trade")
    fut = connect(e, "/market/ws/btcusdt@aggTrade")
    raw.recv(), comb.recv(), fut.recv()
    assert e.send_server_shutdown(close_after=0.3) == 2
    while (m := json.loads(raw.recv())).get("e") != "serverShutdown":
        pass
    assert set(m) == {"e", "E"} and len(str(m["E"])) == 13
    while (m := json.loads(comb.recv())).get("stream") != "!serverShutdown":
        pass
    assert m["data"]["e"] == "serverShutdown"
    assert close_code(raw) == 1001 and close_code(comb) == 1001
    assert all(op != websocket.ABNF.OPCODE_CLOSE for op, _ in frames_for(fut, 0.5))  # usdm untouched
    fut.close()


# --- ground truth, determinism, realism ---------------------------------------------------------------------

def test_same_seed_gives_same_prints_however_batched():
    def paused(seed: int) -> LocalExchange:
        e = LocalExchange(("BTCUSDT", "ETHUSDT"), seed=seed, rate=30.0, history_seconds=120)
        e.pause()
        return e.start()
    a, b, c = paused(5), paused(5), paused(6)
    try:
        for sym, market in (("BTCUSDT", "spot"), ("ETHUSDT", "usdm")):
            ta, tb = a.trades(sym, market), b.trades(sym, market)
            assert len(ta) > 1000
            pd.testing.assert_frame_equal(ta.drop(columns="ts"), tb.drop(columns="ts"))
            assert np.array_equal(ms(ta.ts) - ms(ta.ts)[0], ms(tb.ts) - ms(tb.ts)[0])
            assert not np.array_equal(ta.price.to_numpy()[:100], c.trades(sym, market).price.to_numpy()[:100])
        n_hist = len(a.trades("BTCUSDT"))
        a.resume()
        time.sleep(0.3)
        b.resume()
        time.sleep(0.6)
        a.pause()
        b.pause()
        la, lb = a.trades("BTCUSDT").drop(columns="ts"), b.trades("BTCUSDT").drop(columns="ts")
        n = min(len(la), len(lb))
        assert n > n_hist
        pd.testing.assert_frame_equal(la.iloc[:n], lb.iloc[:n])
    finally:
        for e in (a, b, c):
            e.stop()


def test_simulator_output_does_not_depend_on_batching():
    starts = np.arange(3000, dtype=np.int64) * STEP_US
    one = Simulator(("BTCUSDT", "ETHUSDT"), ("spot", "usdm"), seed=3, rate=20.0).step(starts)
    sim = Simulator(("BTCUSDT", "ETHUSDT"), ("spot", "usdm"), seed=3, rate=20.0)
    rng = np.random.default_rng(0)
    cuts = np.unique(np.concatenate(([0, 3000], rng.integers(1, 3000, 60))))
    parts = [sim.step(starts[lo:hi]) for lo, hi in zip(cuts, cuts[1:])]
    for key, whole in one.items():
        for col in ("trade_time", "trade_price", "trade_qty", "trade_m", "agg_first", "agg_qty", "agg_nq"):
            pieces = np.concatenate([getattr(p[key], col) for p in parts])
            assert np.array_equal(getattr(whole, col), pieces), (key, col)


def test_history_is_realistic_and_btc_eth_cointegrated():
    from statsmodels.tsa.stattools import coint
    e = LocalExchange(("BTCUSDT", "ETHUSDT", "SOLUSDT"), seed=7, rate=2.0, history_seconds=4 * 3600,
                      markets=("spot",))
    e.pause()
    e.start()
    try:
        trades = {s: e.trades(s) for s in e.symbols}
        aggs = e.agg_trades("BTCUSDT")
    finally:
        e.stop()
    closes = pd.DataFrame({s: np.log(t.set_index("ts").price.resample("1min").last())
                           for s, t in trades.items()}).ffill().dropna()
    assert len(closes) > 200
    assert coint(closes.ETHUSDT, closes.BTCUSDT)[1] < 0.05  # Engle-Granger (statsmodels)
    rets = closes.diff().dropna()
    assert rets.ETHUSDT.corr(rets.BTCUSDT) > 0.3 and rets.SOLUSDT.corr(rets.BTCUSDT) > 0.3
    last = {s: t.price.iloc[-1] for s, t in trades.items()}
    assert 70_000 < last["BTCUSDT"] < 120_000 and 2_000 < last["ETHUSDT"] < 5_000 and 100 < last["SOLUSDT"] < 300
    btc = trades["BTCUSDT"]
    per_second = np.bincount(ms(btc.ts) // 1000 - ms(btc.ts)[0] // 1000)
    assert per_second.var() / per_second.mean() > 1.5  # bursty: over-dispersed vs Poisson
    assert btc.qty.min() > 0 and btc.qty.mean() / btc.qty.median() > 1.5  # heavy-tailed sizes
    assert np.allclose(btc.qty * 1e5, np.round(btc.qty * 1e5))  # on the lot step
    assert 0.3 < btc.is_buyer_maker.mean() < 0.7
    assert (aggs.last_trade_id - aggs.first_trade_id + 1).sum() == len(btc)


def test_rate_factor_thins_prints_but_not_the_price_path():
    """Simulator.step(rate_factor=): fewer prints, the same latent path afterwards (its generators are separate)."""
    syms = ("BTCUSDT", "ETHUSDT")
    starts = np.arange(12_000, dtype=np.int64) * STEP_US  # 10 minutes
    full, thin, again = (Simulator(syms, ("spot",), seed=4, rate=20.0) for _ in range(3))
    b_full = full.step(starts)
    b_thin = thin.step(starts, {"BTCUSDT": 0.1})
    b_again = again.step(starts, {"BTCUSDT": 0.1})
    n_full, n_thin = b_full[("spot", "BTCUSDT")].n_trades, b_thin[("spot", "BTCUSDT")].n_trades
    assert 0.05 < n_thin / n_full < 0.2, (n_thin, n_full)
    assert b_thin[("spot", "ETHUSDT")].n_trades == b_full[("spot", "ETHUSDT")].n_trades  # factor 1 by default
    for col in ("trade_time", "trade_price", "trade_qty"):  # deterministic by seed
        assert np.array_equal(getattr(b_thin[("spot", "BTCUSDT")], col), getattr(b_again[("spot", "BTCUSDT")], col))
    a, b = full.log_prices(600, every=100), thin.log_prices(600, every=100)
    for sym in syms:
        np.testing.assert_array_equal(a[sym], b[sym])
    # every thinned print sits on the same mid as the full-rate prints of its step: within a few ticks
    full_bt, thin_bt = b_full[("spot", "BTCUSDT")], b_thin[("spot", "BTCUSDT")]
    step_mid = pd.Series(full_bt.trade_price).groupby(full_bt.trade_time // STEP_US).median()
    shared = pd.Series(thin_bt.trade_price, index=thin_bt.trade_time // STEP_US)
    shared = shared[shared.index.isin(step_mid.index)]
    assert len(shared) > 100 and (shared - step_mid.reindex(shared.index)).abs().max() <= 10


def test_thin_older_history_is_opt_in_and_keeps_recent_history_at_full_rate():
    kw = dict(seed=9, rate=10.0, history_seconds=1800, markets=("spot",), rate_scale={"ETHUSDT": 0.05})
    plain = LocalExchange(("BTCUSDT", "ETHUSDT"), **kw)
    # a step down (half-life 0) to a low floor, the sharpest thinning there is
    thin = LocalExchange(("BTCUSDT", "ETHUSDT"), thin_history_after=600, thin_rate=0.05, thin_min_rate=0.25,
                         thin_half_life=0, **kw)
    assert plain.thin_history_after == 0  # off unless asked for
    # BTC: 10/s -> 0.05x = 0.5/s; ETH: 0.5/s -> raised to the 0.25/s floor (0.5x), never above its own rate
    assert thin.thin_factors() == pytest.approx({"BTCUSDT": 0.05, "ETHUSDT": 0.5})
    assert LocalExchange(("BTCUSDT",), **kw).thin_factors() == pytest.approx({"BTCUSDT": 0.3})  # the default
    for e in (plain, thin):
        e.pause()
        e.start()
    try:
        tp, tt = plain.trades("BTCUSDT"), thin.trades("BTCUSDT")
        cut = tt.ts.iloc[-1] - pd.Timedelta(seconds=600)
        old_p, old_t = (tp.ts < cut).sum(), (tt.ts < cut).sum()
        new_p, new_t = (tp.ts >= cut).sum(), (tt.ts >= cut).sum()
        assert 0.02 < old_t / old_p < 0.1 and 0.7 < new_t / new_p < 1.4, (old_t, old_p, new_t, new_p)
        assert tt.ts.iloc[0] - tt.ts.iloc[-1] < pd.Timedelta(seconds=-1700)  # the whole span is still covered
        eth = thin.trades("ETHUSDT")
        old_minutes = eth.ts[eth.ts < cut].dt.floor("1min").nunique()
        assert old_minutes >= 0.9 * 20 - 1  # 1m bars of the slowest symbol are almost never empty
        # ids stay contiguous across the thin/full boundary
        assert np.array_equal(tt.trade_id.to_numpy(), np.arange(tt.trade_id.iloc[0], tt.trade_id.iloc[0] + len(tt)))
    finally:
        plain.stop()
        thin.stop()


def test_pause_resume_and_rate(make_ex):
    e = make_ex(rate=100, markets=("spot",))
    deadline = time.monotonic() + 5
    while e.published_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    e.pause()
    n = e.published_count()
    time.sleep(0.3)
    assert e.published_count() == n > 0 and e.last_trade_id("BTCUSDT") == e.trades("BTCUSDT").trade_id.iloc[-1]
    e.resume()
    while e.published_count() == n and time.monotonic() < deadline + 5:
        time.sleep(0.02)
    assert e.published_count() > n
    e.set_rate(0)  # applies to the steps drawn from now on: the ones drawn ahead still go out at their time
    drawn = e.drawn_until_us
    while time.time() * 1e6 < drawn + 50_000:
        time.sleep(0.02)
    n = e.published_count("spot")
    time.sleep(0.3)
    assert e.published_count() == n
    with pytest.raises(ValueError):
        e.set_rate(-1)
    with pytest.raises(ValueError):
        e.trades("DOGEUSDT")


def test_blast_delivers_every_print_in_order(make_ex):
    e = make_ex(("BTCUSDT", "ETHUSDT"), rate=1.0, markets=("spot",))
    ws = connect(e, "/stream?streams=btcusdt@trade/ethusdt@trade", timeout=20)
    start = {s: e.last_trade_id(s) for s in e.symbols}
    fut = e.blast(20_000)
    got: dict[str, list[int]] = {"BTCUSDT": [], "ETHUSDT": []}
    while not fut.done() or any(not got[s] or got[s][-1] < fut.result().last_ids[s] for s in got):
        d = json.loads(ws.recv())["data"]
        got[d["s"]].append(d["t"])
    res = e.wait_blast(10)
    ws.close()
    assert res.prints == 20_000 and res.connections == 1 and res.frames_sent >= 20_000
    assert sum(res.last_ids[s] - res.first_ids[s] + 1 for s in got) == 20_000
    for s, ids in got.items():
        assert res.first_ids[s] > (start[s] or 0)
        blasted = [i for i in ids if i >= res.first_ids[s]]
        assert blasted == list(range(res.first_ids[s], res.last_ids[s] + 1))
        assert e.last_trade_id(s) >= res.last_ids[s]


# --- construction and CLI -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(symbols=("BTC-USDT",)), dict(host="0.0.0.0"), dict(markets=("coinm",)),
                                dict(rate=-1.0), dict(ping_interval=0), dict(skip_fraction=2.0),
                                dict(thin_history_after=-1.0), dict(thin_rate=0.0), dict(thin_rate=1.5),
                                dict(thin_min_rate=-0.1), dict(thin_half_life=-1.0)])
def test_invalid_arguments_are_rejected(kw):
    with pytest.raises(ValueError):
        LocalExchange(**kw)


def test_cli_runs_in_foreground_and_stops_on_sigint():
    proc = subprocess.Popen([sys.executable, "-m", "exchange", "--port", "0", "--symbols", "btcusdt",
                             "--rate", "5", "--history", "1m", "--markets", "spot"],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True).start()
    try:
        while "ready:" not in (line := lines.get(timeout=20)):
            pass
        base = re.search(r"REST (http://127\.0\.0\.1:\d+)", line).group(1)
        assert requests.get(base + "/api/v3/ping", timeout=5).json() == {}
        rows = requests.get(base + "/api/v3/historicalTrades", params={"symbol": "BTCUSDT"}, timeout=5).json()
        assert len(rows) > 50
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("args, needle", [(["--history", "2x"], "duration"), (["--host", "0.0.0.0"], "loopback"),
                                          (["--symbols", "btc-usdt"], "symbols")])
def test_cli_rejects_bad_arguments(capsys, args, needle):
    with pytest.raises(SystemExit) as exc:
        exchange_main(["--port", "0", *args])
    assert exc.value.code == 2 and needle in capsys.readouterr().err
