"""`--top N`: the ticker parser, the selection, the local exchange's ticker/24hr endpoints and the CLI."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest
import requests

from exchange.server import LocalExchange
from feed.binance import MARKETS, WEIGHTS, MalformedFrame, parse_ticker_volumes
from feed.rest import RestClient
from feed.universe import select_top, top_symbols
from tests.feedcheck import ROOT, wait_for
from tickstore.queries import stored_symbols

SPOT_ROW = {  # Binance's documented spot shape
    "symbol": "BNBBTC", "priceChange": "-94.99999800", "priceChangePercent": "-95.960", "weightedAvgPrice": "0.29628482",
    "prevClosePrice": "0.10002000", "lastPrice": "4.00000200", "lastQty": "200.00000000", "bidPrice": "4.00000000",
    "bidQty": "100.00000000", "askPrice": "4.00000200", "askQty": "100.00000000", "openPrice": "99.00000000",
    "highPrice": "100.00000000", "lowPrice": "0.10000000", "volume": "8913.30000000", "quoteVolume": "15.30000000",
    "openTime": 1499783499040, "closeTime": 1499869899040, "firstId": 28385, "lastId": 28460, "count": 76}


def _info(*rows):
    return [{"symbol": s, "status": st, "quoteAsset": q} for s, st, q in rows]


# --- parser ---------------------------------------------------------------------------------------------------

def test_ticker_parser_reads_quote_volume_of_list_and_single_row():
    usdm = {"symbol": "BTCUSDT", "quoteVolume": "1234567.89", "lastPrice": "68402.60", "count": 5}
    assert parse_ticker_volumes([SPOT_ROW, usdm]) == {"BNBBTC": 15.3, "BTCUSDT": 1234567.89}
    assert parse_ticker_volumes(usdm) == {"BTCUSDT": 1234567.89}
    assert parse_ticker_volumes([]) == {}


@pytest.mark.parametrize("bad", [{"code": -1121, "msg": "Invalid symbol."}, [{"symbol": "X"}],
                                 [{"symbol": "X", "quoteVolume": "abc"}], [{"symbol": "X", "quoteVolume": "-1"}],
                                 [{"symbol": "X", "quoteVolume": "nan"}], "oops", [3]])
def test_ticker_parser_refuses_wrong_shapes(bad):
    with pytest.raises(MalformedFrame):
        parse_ticker_volumes(bad)


def test_ticker_weights_are_binances():
    assert WEIGHTS[MARKETS["spot"].ticker_path] == 80 and WEIGHTS[MARKETS["usdm"].ticker_path] == 40


# --- selection ------------------------------------------------------------------------------------------------

def test_top_keeps_trading_usdt_symbols_by_quote_volume():
    info = _info(("BTCUSDT", "TRADING", "USDT"), ("ETHUSDT", "TRADING", "USDT"), ("SOLUSDT", "TRADING", "USDT"),
                 ("ETHBTC", "TRADING", "BTC"), ("LUNAUSDT", "BREAK", "USDT"), ("BTCFDUSD", "TRADING", "FDUSD"),
                 ("XRPUSDT", "TRADING", "USDT"), ("ADAUSDT", "TRADING", "USDT"))
    vol = {"BTCUSDT": 9e9, "ETHUSDT": 5e9, "SOLUSDT": 1e9, "ETHBTC": 8e10, "LUNAUSDT": 7e10, "BTCFDUSD": 6e10,
           "XRPUSDT": 1e9, "ADAUSDT": 2e8, "NOTLISTEDUSDT": 9e12}
    sel = select_top(info, vol, 3)
    assert sel.top == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]  # SOL and XRP tie: by name
    assert sel.symbols == sel.top and sel.eligible == 5
    assert select_top(info, vol, 10).top == ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT"]
    assert "only 5 eligible" in select_top(info, vol, 10).summary()


def test_top_adds_symbols_once():
    info = _info(("BTCUSDT", "TRADING", "USDT"), ("ETHUSDT", "TRADING", "USDT"), ("SOLUSDT", "TRADING", "USDT"))
    vol = {"BTCUSDT": 3.0, "ETHUSDT": 2.0, "SOLUSDT": 1.0}
    sel = select_top(info, vol, 2, extra=["ETHUSDT", "PEPEUSDT", "ETHBTC", "PEPEUSDT"])
    assert sel.top == ["BTCUSDT", "ETHUSDT"] and sel.extra == ["PEPEUSDT", "ETHBTC"]
    assert sel.symbols == ["BTCUSDT", "ETHUSDT", "PEPEUSDT", "ETHBTC"]
    assert "+ 2 from --symbols" in sel.summary()
    with pytest.raises(ValueError):
        select_top(info, vol, 0)


# --- the local exchange over real sockets -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def exchange():
    ex = LocalExchange(symbols=["BTCUSDT", "ETHUSDT", "DOGEUSDT"], seed=5, rate=20.0, history_seconds=300,
                       rate_scale={"BTCUSDT": 1.0, "ETHUSDT": 0.5, "DOGEUSDT": 0.1}).start()
    yield ex
    ex.stop()


@pytest.mark.parametrize("market", ["spot", "usdm"])
def test_exchange_ticker_24hr_shapes_weights_and_volumes(exchange, market):
    spec = MARKETS[market]
    exchange.pause()  # no prints between the ticker and the ground truth read
    try:
        r = requests.get(exchange.http_url + spec.ticker_path, timeout=10)
        assert r.status_code == 200
        rows = r.json()
        truth = {s: exchange.trades(s, market) for s in exchange.symbols}
        one = requests.get(exchange.http_url + spec.ticker_path, params={"symbol": "BTCUSDT"}, timeout=10)
    finally:
        exchange.resume()
    used_all, used_one = int(r.headers["X-MBX-USED-WEIGHT-1M"]), int(one.headers["X-MBX-USED-WEIGHT-1M"])
    w_all, w_one = (80, 2) if market == "spot" else (40, 1)
    assert used_all >= w_all
    assert used_one - used_all == w_one or used_one == w_one  # (the latter when a new UTC minute began between)
    assert {row["symbol"] for row in rows} == set(exchange.symbols)
    for row in rows:
        for k in ("priceChange", "lastPrice", "openPrice", "highPrice", "lowPrice", "volume", "quoteVolume",
                  "weightedAvgPrice"):
            assert isinstance(row[k], str), (k, row[k])
            assert float(row[k]) >= 0 or k == "priceChange", (k, row[k])
        assert ("bidPrice" in row) == (market == "spot")
        assert row["closeTime"] - row["openTime"] == 86_400_000
        if market == "spot":  # ids of trades; the usdm ground truth is aggTrades, so check its sums only
            t = truth[row["symbol"]]
            assert row["count"] == len(t) and row["lastId"] == t["trade_id"].iloc[-1]
            assert float(row["quoteVolume"]) == pytest.approx((t["price"] * t["qty"]).sum(), rel=1e-9)
            assert float(row["highPrice"]) == pytest.approx(t["price"].max())
            assert float(row["lastPrice"]) == pytest.approx(t["price"].iloc[-1])
        else:
            a = truth[row["symbol"]]
            assert float(row["quoteVolume"]) == pytest.approx((a["price"] * a["qty"]).sum(), rel=1e-6)
    assert one.json()["symbol"] == "BTCUSDT" and isinstance(one.json(), dict)
    vol = {row["symbol"]: float(row["quoteVolume"]) for row in rows}
    assert vol["BTCUSDT"] > vol["DOGEUSDT"]  # ten times the trade rate ranks first
    bad = requests.get(exchange.http_url + spec.ticker_path, params={"symbol": "NOPEUSDT"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["code"] == -1121


def test_exchange_info_carries_status_and_quote_asset(exchange):
    for market in ("spot", "usdm"):
        info = requests.get(exchange.http_url + MARKETS[market].exchange_info_path, timeout=10).json()
        assert all(s["status"] == "TRADING" and s["quoteAsset"] == "USDT" for s in info["symbols"])


def test_top_symbols_against_the_local_exchange(exchange):
    rest = RestClient(exchange.http_url)
    sel = top_symbols(rest, MARKETS["usdm"], 2, extra=["DOGEUSDT"])
    vol = parse_ticker_volumes(requests.get(exchange.http_url + "/fapi/v1/ticker/24hr", timeout=10).json())
    ranked = sorted(vol, key=lambda s: -vol[s])
    assert ranked[0] == "BTCUSDT" and "DOGEUSDT" not in ranked[:2]  # BTC trades 2x ETH and 10x DOGE
    assert sel.top == ranked[:2] and sel.symbols == [*ranked[:2], "DOGEUSDT"]


# --- the CLI ----------------------------------------------------------------------------------------------------

def _cli(*args, timeout=60):
    return subprocess.run([sys.executable, str(ROOT / "ingestor.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("n", ["0", "-3", "x", "2.5", ""])
def test_bad_top_exits_2_with_one_line(tmp_path, n):
    r = _cli(f"--top={n}", "--db", str(tmp_path / "t.duckdb"), "--rest-url", "http://127.0.0.1:9")
    assert r.returncode == 2, r.stderr
    assert "--top" in r.stderr and "positive whole number" in r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr


@pytest.mark.parametrize("args, says", [(["--market", "spot,coinm"], "expected spot, usdm or spot,usdm"),
                                        (["--market", ","], "expected spot, usdm or spot,usdm"),
                                        (["--streams-per-connection", "0"], "expected 1 to 1024"),
                                        (["--streams-per-connection", "1025"], "expected 1 to 1024")])
def test_bad_market_or_stream_cap_exits_2_before_any_request(tmp_path, args, says):
    r = _cli("--top", "300", *args, "--db", str(tmp_path / "t.duckdb"), "--rest-url", "http://127.0.0.1:9")
    assert r.returncode == 2 and says in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr


def test_top_with_unreachable_exchange_exits_2(tmp_path):
    r = _cli("--top", "3", "--db", str(tmp_path / "t.duckdb"), "--rest-url", "http://127.0.0.1:9")
    assert r.returncode == 2 and "--top 3: cannot rank spot symbols" in r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr


@pytest.mark.slow
def test_demo_top_5_stores_exactly_the_five_most_traded(tmp_path):
    db, log = tmp_path / "demo.duckdb", tmp_path / "demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "ingestor.py"), "--demo", "--top", "5", "--db", str(db),
                                 "--history", "10m", "--no-alerts", "--flush-ms", "100"], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert wait_for(lambda: "ingesting spot" in log.read_text(), 90), log.read_text()
        url = re.search(r"demo exchange on (http://127\.0\.0\.1:\d+)", log.read_text()).group(1)
        vol = parse_ticker_volumes(requests.get(url + "/api/v3/ticker/24hr", timeout=10).json())
        assert wait_for(lambda: len(stored_symbols("spot", db)) == 5, 60)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()
    got = set(stored_symbols("spot", db)["symbol"])
    assert len(got) == 5 and len(vol) == 24
    # ranked independently from the exchange's own ticker, a moment after the ingestor read it: the five stored
    # symbols out-trade every other one (2 % slack for the prints between the two reads)
    assert min(vol[s] for s in got) >= 0.98 * max(vol[s] for s in vol if s not in got)
    assert {"BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"} <= got  # the majors trade ten times the others' rate
