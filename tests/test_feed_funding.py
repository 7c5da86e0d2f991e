"""Mark-price frames and funding-rate REST rows: the shapes Binance documents, malformed and implausible input,
and the funding backfill against the local exchange (real sockets).

Shapes: developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/Mark-Price-Stream
(`<symbol>@markPrice` every 3 s or `<symbol>@markPrice@1s`; fields e, E, s, p, i, P, r, T) and
.../market-data/rest-api/Get-Funding-Rate-History (`GET /fapi/v1/fundingRate`: symbol, startTime, endTime, limit
default 100 max 1000; rows symbol, fundingRate, fundingTime, markPrice). The coin-margined page documents "" for r
and 0 for T on delivery contracts.
"""
from __future__ import annotations

import threading

import orjson
import pytest

from feed.binance import (FUNDING_PAGE, MARKETS, FundingRate, ImplausibleMark, MalformedFrame, MarkPrice,
                          parse_frame, parse_funding_page)
from feed.funding import FundingBackfiller
from feed.rest import RestClient
from feed.state import IngestState
from tickstore.marks import MarkBuffer

# the documented example, as Binance's page prints it (event time 2019-07-05)
DOC_MARK = {"e": "markPriceUpdate", "E": 1562305380000, "s": "BTCUSDT", "p": "11794.15000000",
            "i": "11784.62659091", "P": "11784.25641265", "r": "0.00038167", "T": 1562306400000}
DOC_FUNDING = [{"symbol": "BTCUSDT", "fundingRate": "-0.03750000", "fundingTime": 1570608000000,
                "markPrice": "34287.54619963"},
               {"symbol": "BTCUSDT", "fundingRate": "0.00010000", "fundingTime": 1570636800000,
                "markPrice": "34287.54619963"}]


def frame(data, combined=True):
    d = {"stream": "btcusdt@markPrice@1s", "data": data} if combined else data
    return orjson.dumps(d)


@pytest.mark.parametrize("combined", [True, False])
def test_documented_mark_price_frame(combined):
    m = parse_frame(frame(DOC_MARK, combined), "usdm")
    assert m == MarkPrice("usdm", "BTCUSDT", 1562305380000000, 11794.15, 11784.62659091, 0.00038167,
                          1562306400000000)
    assert type(m) is MarkPrice and m.ts_us == DOC_MARK["E"] * 1000   # ts = event time E


def test_delivery_contract_and_unknown_keys():
    m = parse_frame(frame({**DOC_MARK, "s": "BTCUSDT_260925", "r": "", "T": 0, "zz": [1]}), "usdm")
    assert (m.funding_rate, m.next_funding_us, m.symbol) == (None, None, "BTCUSDT_260925")
    no_index = {k: v for k, v in DOC_MARK.items() if k not in ("i", "P")}
    assert parse_frame(frame(no_index), "usdm").index_price is None


@pytest.mark.parametrize("change, words", [
    ({"p": 11794.15}, "decimal string"),
    ({"p": "12x.3"}, "decimal string"),
    ({"p": None}, "decimal string"),
    ({"r": "abc"}, "decimal string"),
    ({"E": "1562305380000"}, "event time"),
    ({"E": None}, "event time"),
    ({"T": "soon"}, "next funding"),
    ({"s": None}, "without symbol"),
    ({"s": ""}, "without symbol"),
])
def test_malformed_mark_frames(change, words):
    with pytest.raises(MalformedFrame, match=words):
        parse_frame(frame({**DOC_MARK, **change}), "usdm")


def test_missing_mark_field():
    bad = {k: v for k, v in DOC_MARK.items() if k != "p"}
    with pytest.raises(MalformedFrame, match="mark price"):
        parse_frame(frame(bad), "usdm")


@pytest.mark.parametrize("change, words", [
    ({"E": 9 * 10**17}, "outside"),                 # year 30000 (µs read as ms)
    ({"E": -1}, "outside"),
    ({"E": 4102444800000 + 1}, "outside"),         # 2100
    ({"p": "0"}, "mark price"),
    ({"p": "-3.5"}, "mark price"),
    ({"p": "inf"}, "mark price"),
    ({"p": "nan"}, "mark price"),
    ({"i": "-1"}, "index price"),
    ({"r": "0.5"}, "funding rate"),                 # 50 % per period
    ({"r": "nan"}, "funding rate"),
    ({"T": 1}, "outside"),                          # next funding time in 1970
])
def test_implausible_mark_frames_are_rejected(change, words):
    with pytest.raises(ImplausibleMark, match=words):
        parse_frame(frame({**DOC_MARK, **change}), "usdm")


def test_mark_frame_far_ahead_of_now_is_rejected():
    import time
    ahead = (time.time_ns() // 1_000_000) + 2 * 86_400_000
    with pytest.raises(ImplausibleMark, match="ahead"):
        parse_frame(frame({**DOC_MARK, "E": ahead, "T": ahead + 1000}), "usdm")
    # the next funding time may lie hours ahead (up to the period's end): that is no reason to reject
    now = time.time_ns() // 1_000_000
    assert parse_frame(frame({**DOC_MARK, "E": now, "T": now + 8 * 3_600_000}), "usdm").next_funding_us


def test_documented_funding_rows():
    page = parse_funding_page(DOC_FUNDING, "usdm", "BTCUSDT")
    assert page.rejected == []
    assert page.rates == [FundingRate("usdm", "BTCUSDT", 1570608000000000, -0.0375, 34287.54619963),
                          FundingRate("usdm", "BTCUSDT", 1570636800000000, 0.0001, 34287.54619963)]
    assert "2 funding rates" in page.summary()


def test_funding_rows_without_mark_price_keep_null():
    rows = [{**DOC_FUNDING[0], "markPrice": ""}, {k: v for k, v in DOC_FUNDING[1].items() if k != "markPrice"}]
    assert [r.mark_price for r in parse_funding_page(rows, "usdm", "BTCUSDT").rates] == [None, None]


@pytest.mark.parametrize("rows", [
    {"code": -1121, "msg": "Invalid symbol."},
    [{"symbol": "BTCUSDT", "fundingRate": "0.0001"}],                               # no fundingTime
    [{"symbol": "BTCUSDT", "fundingRate": 0.0001, "fundingTime": 1570608000000}],    # number, not string
    [{"symbol": "BTCUSDT", "fundingRate": "x", "fundingTime": 1570608000000}],
    [{"symbol": "BTCUSDT", "fundingRate": "0.0001", "fundingTime": "1570608000000"}],
    [{**DOC_FUNDING[0], "markPrice": "abc"}],
    ["BTCUSDT"],
])
def test_malformed_funding_answers(rows):
    with pytest.raises(MalformedFrame):
        parse_funding_page(rows, "usdm", "BTCUSDT")


def test_implausible_funding_rows_are_left_out_with_reasons():
    rows = [DOC_FUNDING[1], {**DOC_FUNDING[0], "symbol": "ETHUSDT"}, {**DOC_FUNDING[0], "fundingRate": "0.9"},
            {**DOC_FUNDING[0], "fundingTime": 9 * 10**17}, {**DOC_FUNDING[0], "markPrice": "-1"}]
    page = parse_funding_page(rows, "usdm", "BTCUSDT")
    assert [r.funding_time_us for r in page.rates] == [1570636800000000]
    assert len(page.rejected) == 4 and "ETHUSDT" in page.rejected[0] and "beyond" in page.rejected[1]


def test_usdm_streams_carry_mark_prices_spot_does_not():
    assert MARKETS["usdm"].stream_names("BTCUSDT") == ["btcusdt@aggTrade", "btcusdt@markPrice@1s"]
    assert MARKETS["spot"].stream_names("BTCUSDT") == ["btcusdt@trade"]
    assert FUNDING_PAGE == 1000


# --- the funding backfill against the local exchange (REST over real sockets) ------------------------------------

@pytest.fixture(scope="module")
def exchange():
    from exchange.server import LocalExchange

    ex = LocalExchange(("BTCUSDT", "ETHUSDT"), seed=3, rate=2.0, history_seconds=3 * 3600, funding_interval=60.0,
                       markets=("usdm",)).start()
    yield ex
    ex.stop()


def _backfiller(ex, **kw):
    buf = MarkBuffer()
    fb = FundingBackfiller(MARKETS["usdm"], ["BTCUSDT", "ETHUSDT"], RestClient(ex.http_url), buf, IngestState(), **kw)
    return fb, buf


def test_backfill_pages_through_history_and_resumes_after_the_newest(exchange):
    truth = exchange.funding_rates("BTCUSDT")
    assert len(truth) >= 179   # 3 h at one funding a minute: more than one page of 100 at the default limit
    fb, buf = _backfiller(exchange)
    fb.fetch_all()
    _, rows = buf.drain()
    got = [r for r in rows if r[1] == "BTCUSDT"]
    assert [r[2] // 1000 for r in got] == [int(t.timestamp() * 1000) for t in truth["funding_time"]]
    assert [r[3] for r in got] == truth["funding_rate"].tolist()
    assert [r[4] for r in got] == truth["mark_price"].tolist()
    # a second round asks only for what is newer: nothing new yet, nothing buffered twice
    requests = fb.requests
    fb.fetch_all()
    assert buf.drain()[1] == [] and fb.requests == requests + 2
    # primed from the file: starts just after the newest stored funding time
    fb2, buf2 = _backfiller(exchange)
    fb2.prime({"BTCUSDT": got[-6][2], "ETHUSDT": got[-1][2] + 10**12})
    fb2.fetch_all()
    assert [r[2] for r in buf2.drain()[1]] == [r[2] for r in got[-5:]]


def test_history_window_and_limit(exchange):
    fb, buf = _backfiller(exchange, history_s=600)
    fb.fetch_symbol("ETHUSDT")
    _, rows = buf.drain()
    assert 9 <= len(rows) <= 11 and len({r[2] for r in rows}) == len(rows)


def test_exchange_funding_endpoint_validates_like_binance(exchange):
    import requests

    base = exchange.http_url + "/fapi/v1/fundingRate"
    r = requests.get(base, params={"symbol": "BTCUSDT"})
    assert r.status_code == 200 and len(r.json()) == 100   # default limit 100, the newest rows
    assert r.json()[-1]["fundingTime"] == int(exchange.funding_rates("BTCUSDT")["funding_time"].iloc[-1].timestamp() * 1000)
    t0 = r.json()[0]["fundingTime"]
    r = requests.get(base, params={"symbol": "BTCUSDT", "startTime": t0, "endTime": t0 + 600_000, "limit": 3})
    assert [x["fundingTime"] for x in r.json()] == [t0, t0 + 60_000, t0 + 120_000]   # startTime + limit, ascending
    assert set(r.json()[0]) == {"symbol", "fundingRate", "fundingTime", "markPrice"}
    both = requests.get(base, params={"limit": 4}).json()
    assert {x["symbol"] for x in both} == {"BTCUSDT", "ETHUSDT"}
    for params, code in (({"symbol": "NOPEUSDT"}, -1121), ({"symbol": "btcusdt"}, -1100),
                         ({"symbol": "BTCUSDT", "limit": 1001}, -1130), ({"symbol": "BTCUSDT", "limit": 0}, -1130),
                         ({"symbol": "BTCUSDT", "startTime": "yesterday"}, -1100),
                         ({"symbol": "BTCUSDT", "startTime": 2000, "endTime": 1000}, -1128)):
        r = requests.get(base, params=params)
        assert r.status_code == 400 and r.json()["code"] == code, (params, r.text)


def test_exchange_funding_request_limit(exchange, monkeypatch):
    import requests

    import exchange.rest as xrest

    monkeypatch.setattr(xrest, "FUNDING_LIMIT", 3)
    exchange._rest._funding_calls.clear()
    base = exchange.http_url + "/fapi/v1/fundingRate"
    codes = [requests.get(base, params={"symbol": "BTCUSDT", "limit": 1}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = requests.get(base, params={"symbol": "BTCUSDT", "limit": 1})
    assert r.json()["code"] == -1003 and int(r.headers["Retry-After"]) >= 1
    exchange._rest._funding_calls.clear()


def test_backfiller_stays_under_the_endpoint_limit():
    """The sliding window spaces requests: with a budget of 2 per window the third waits (or stops cleanly)."""
    stop = threading.Event()
    fb = FundingBackfiller(MARKETS["usdm"], ["BTCUSDT"], RestClient("http://127.0.0.1:9"), MarkBuffer(),
                           IngestState(), stop=stop, budget=0.004)   # 500 * 0.004 = 2 requests per 5 min
    fb._respect_limit()
    fb._respect_limit()
    stop.set()
    from feed.rest import RestError
    with pytest.raises(RestError, match="stopping"):
        fb._respect_limit()
