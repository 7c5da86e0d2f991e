"""The catch-up after a reconnect, in process against the local exchange (no stream is opened): which ids each quiet
symbol is fetched from and to, for the cases a full drop of a large universe produced."""
from __future__ import annotations

import queue
import threading
import time

import pytest

from exchange.server import LocalExchange
from feed.binance import MARKETS, Trade
from feed.market import MarketFeed
from feed.state import IngestState, now_us
from feed.stream import Reconnected
from tickstore.writer import TickBuffer


@pytest.fixture(scope="module")
def exchange():
    ex = LocalExchange(["BTCUSDT", "ETHUSDT", "SOLUSDT"], rate=20.0, history_seconds=30, seed=5).start()
    ex.pause()  # a fixed set of prints: the exchange's newest ids do not move during a test
    yield ex
    ex.stop()


def _feed(ex: LocalExchange, market: str) -> MarketFeed:
    """A market feed whose backfiller is not started: the gaps it is asked to fetch stay in its queue."""
    return MarketFeed(MARKETS[market], list(ex.symbols), TickBuffer(), IngestState(), rest_base=ex.http_url,
                      ws_base=ex.ws_url, stop=threading.Event(), streams_per_connection=200)


def _queued(feed: MarketFeed) -> list:
    out = []
    while True:
        try:
            out.append(feed.backfiller.queue.get_nowait())
        except queue.Empty:
            return out


def _count_gets(feed: MarketFeed) -> list[str]:
    calls: list[str] = []
    get = feed.rest.get

    def counting(path, params=None):
        calls.append(path)
        return get(path, params)
    feed.rest.get = counting
    return calls


def _live(feed: MarketFeed, sym: str, trade_id: int) -> None:
    t = now_us()
    feed.tracker.observe(Trade(feed.market, sym, trade_id, t, 1.0, 1.0, False, t, "ws"))


def test_the_ticker_is_asked_again_for_a_connection_acknowledged_after_it_was_asked(exchange):
    """A ticker answered before a connection's streams were acknowledged misses what its symbols traded between the
    answer and the acknowledgement: it is never reused for that connection's catch-up, however fresh."""
    feed = _feed(exchange, "spot")
    calls = _count_gets(feed)
    feed.newest_ids(time.monotonic())
    assert feed.newest_ids(0.0) and calls.count(feed.spec.ticker_path) == 1  # asked after: shared
    feed.newest_ids(time.monotonic())
    assert calls.count(feed.spec.ticker_path) == 2


def test_a_quiet_symbol_is_fetched_up_to_the_tickers_newest_id(exchange):
    feed = _feed(exchange, "spot")
    newest = exchange.last_trade_ids("spot")
    feed.tracker.prime("ETHUSDT", newest["ETHUSDT"] - 7, None)
    feed.tracker.prime("SOLUSDT", newest["SOLUSDT"], None)  # nothing traded meanwhile: nothing to fetch
    feed.catch_up(Reconnected("spot#1", ["ETHUSDT", "SOLUSDT"], time.monotonic(), now_us() - 10_000_000))
    gaps = _queued(feed)
    assert [(g.symbol, g.first_id, g.last_id, g.history) for g in gaps] == \
        [("ETHUSDT", newest["ETHUSDT"] - 6, newest["ETHUSDT"], False)]
    # the range is claimed: the next live print continues after it instead of reporting the same ids as a gap
    _live(feed, "ETHUSDT", newest["ETHUSDT"] + 1)
    assert _queued(feed) == []


@pytest.mark.parametrize("market", ["spot", "usdm"])
def test_a_symbol_still_fetching_older_ids_also_catches_up_what_it_traded_in_the_drop(exchange, market):
    """A catch-up bounded by the first live print (older ids) does not reach the prints of a later drop: they get
    their own range up to the exchange's newest id, after the highest id streamed."""
    feed = _feed(exchange, market)
    newest = exchange.last_trade_ids(market)["BTCUSDT"]
    feed.tracker.prime("BTCUSDT", newest - 20, None)
    feed.tracker.resume("BTCUSDT", "downtime since the last stored id")
    _live(feed, "BTCUSDT", newest - 5)  # its first live print: the running catch-up now ends at newest - 6
    assert [(g.first_id, g.last_id) for g in _queued(feed)] == [(newest - 19, None)]
    assert feed.tracker.resume_target("BTCUSDT") == newest - 6
    feed.catch_up(Reconnected(f"{market}#1", ["BTCUSDT"], time.monotonic(), now_us() - 10_000_000))
    assert [(g.symbol, g.first_id, g.last_id) for g in _queued(feed)] == [("BTCUSDT", newest - 4, newest)]


def test_a_symbol_catching_up_to_the_present_is_left_to_that_catch_up(exchange):
    feed = _feed(exchange, "usdm")
    newest = exchange.last_trade_ids("usdm")["BTCUSDT"]
    feed.tracker.prime("BTCUSDT", newest - 20, None)
    feed.tracker.resume("BTCUSDT", "downtime since the last stored id")
    _queued(feed)
    feed.catch_up(Reconnected("usdm#1", ["BTCUSDT"], time.monotonic(), now_us() - 10_000_000))
    assert _queued(feed) == []


@pytest.mark.parametrize("market", ["spot", "usdm"])
def test_a_symbol_never_streamed_is_fetched_from_its_first_print_since_the_drop(exchange, market):
    """No id known (nothing stored, no print while streamed): its prints since the previous connection's last
    message (less a second) are fetched; on the first connection nothing was missed; with no print since, it is
    primed at its newest id (its id is known from then on)."""
    feed = _feed(exchange, market)
    truth = exchange.trades("SOLUSDT", market)
    mid = truth.iloc[len(truth) // 2]
    down_us = int(mid["ts"].value // 1000) + 1_000_000
    feed.catch_up(Reconnected(f"{market}#1", ["SOLUSDT"], time.monotonic(), None))
    assert _queued(feed) == [] and feed.state.stats(market, "SOLUSDT").last_trade_id is None
    quiet = _feed(exchange, market)
    quiet.catch_up(Reconnected(f"{market}#1", ["SOLUSDT"], time.monotonic(), now_us() + 2_000_000))  # none since
    assert _queued(quiet) == [] and quiet.state.stats(market, "SOLUSDT").last_trade_id == truth["trade_id"].iloc[-1]
    feed.catch_up(Reconnected(f"{market}#1", ["SOLUSDT"], time.monotonic(), down_us))
    first = int(truth.loc[truth["ts"] >= mid["ts"], "trade_id"].iloc[0])
    gaps = _queued(feed)
    assert [(g.symbol, g.first_id, g.last_id) for g in gaps] == [("SOLUSDT", first, None)]
    assert feed.tracker.is_resuming("SOLUSDT")
