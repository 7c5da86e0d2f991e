"""The local exchange publishes each print at its trade time: prints drawn ahead are held back, released whole
(aggTrades with their trades, ids contiguous), and dropped with their ids handed out again on a pause or a halt."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import websocket

from exchange.model import STEP_US, Simulator
from exchange.release import ReleaseQueue, agg_slice
from exchange.server import LocalExchange


def _draw(n_steps: int = 8, rate: float = 400.0, markets=("spot",)):
    sim = Simulator(("BTCUSDT", "ETHUSDT", "SOLUSDT"), markets, seed=3, rate=rate)
    starts = 1_700_000_000_000_000 + STEP_US * np.arange(n_steps, dtype=np.int64)
    return sim, starts, sim.step(starts)


def test_agg_slice_keeps_whole_aggtrades_and_their_trades():
    _, _, batches = _draw()
    b = batches[("spot", "BTCUSDT")]
    assert b.n_trades > b.n_aggs > 10  # several fills per aggTrade
    cut = b.n_aggs // 2
    head, tail = agg_slice(b, 0, cut), agg_slice(b, cut, b.n_aggs)
    assert head.n_trades + tail.n_trades == b.n_trades
    assert tail.first_trade_id == head.first_trade_id + head.n_trades == int(b.agg_first[cut])
    assert tail.first_agg_id == b.first_agg_id + cut
    for part in (head, tail):
        assert part.agg_first[0] == part.first_trade_id
        assert part.agg_last[-1] == part.first_trade_id + part.n_trades - 1
        np.testing.assert_array_equal(np.repeat(part.agg_time, part.agg_last - part.agg_first + 1), part.trade_time)


def test_queue_releases_by_time_in_id_order():
    _, starts, batches = _draw()
    q = ReleaseQueue()
    q.add(batches, int(starts[-1]) + STEP_US)
    total = sum(b.n_trades for b in batches.values())
    assert len(q) == sum(b.n_aggs for b in batches.values())
    got: dict = {}
    for now in [*range(int(starts[0]) - 1, int(starts[-1]) + STEP_US, 7_000), int(starts[-1]) + STEP_US]:
        for part in q.due(now):
            for key, b in part.items():
                assert b.trade_time.max() <= now  # nothing leaves before its trade time
                got.setdefault(key, []).append(b)
        nxt = q.next_time()
        assert nxt is None or nxt > now
    assert len(q) == 0 and q.next_time() is None
    assert sum(b.n_trades for parts in got.values() for b in parts) == total
    for key, parts in got.items():
        ids = np.concatenate([p.first_trade_id + np.arange(p.n_trades) for p in parts])
        np.testing.assert_array_equal(ids, batches[key].first_trade_id + np.arange(batches[key].n_trades))
        times = np.concatenate([p.trade_time for p in parts])
        np.testing.assert_array_equal(times, batches[key].trade_time)


def test_queue_drop_forgets_one_symbol_or_all():
    _, starts, batches = _draw()
    q = ReleaseQueue()
    q.add(batches, int(starts[-1]) + STEP_US)
    q.drop({"ETHUSDT"})
    keys = {k for part in q.due(int(starts[-1]) + STEP_US) for k in part}
    assert keys == {("spot", "BTCUSDT"), ("spot", "SOLUSDT")}
    q.add(batches, int(starts[-1]) + STEP_US)
    q.drop()
    assert len(q) == 0 and q.due(2**62) == []


def test_rewind_hands_ids_out_again():
    sim, starts, batches = _draw()
    first = batches[("spot", "BTCUSDT")]
    sim.rewind_ids("spot", "BTCUSDT", first.first_trade_id, first.first_agg_id)
    again = sim.step(starts + STEP_US * len(starts))[("spot", "BTCUSDT")]
    assert (again.first_trade_id, again.first_agg_id) == (first.first_trade_id, first.first_agg_id)
    with pytest.raises(ValueError):
        sim.rewind_ids("spot", "BTCUSDT", again.first_trade_id + again.n_trades + 1, again.first_agg_id)


@pytest.fixture
def ex():
    e = LocalExchange(("BTCUSDT", "ETHUSDT"), rate=100.0, markets=("spot",), seed=5).start()
    yield e
    e.stop()


def _wait_for(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_event_time_never_precedes_trade_time(ex):
    ws = websocket.create_connection(ex.ws_url + "/stream?timeUnit=MICROSECOND&streams=btcusdt@trade/ethusdt@trade",
                                     timeout=5, skip_utf8_validation=True)
    try:
        frames = [json.loads(ws.recv())["data"] for _ in range(150)]
    finally:
        ws.close()
    assert all(f["E"] >= f["T"] for f in frames)
    for sym in ("BTCUSDT", "ETHUSDT"):
        ids = [f["t"] for f in frames if f["s"] == sym]
        assert ids == list(range(ids[0], ids[0] + len(ids)))


def test_pause_and_halt_leave_no_id_gap(ex):
    _wait_for(lambda: ex.published_count() > 20)
    ex.pause()
    n = ex.published_count()
    ex.resume()
    _wait_for(lambda: ex.published_count() > n + 20)
    ex.halt("ETHUSDT")
    last_eth = ex.last_trade_id("ETHUSDT")
    drawn = ex.drawn_until_us
    _wait_for(lambda: time.time() * 1e6 > drawn + STEP_US)
    assert ex.last_trade_id("ETHUSDT") == last_eth  # what was drawn ahead of the halt never came out
    ex.set_symbol_status("ETHUSDT", "TRADING")
    _wait_for(lambda: (ex.last_trade_id("ETHUSDT") or 0) > last_eth)
    ex.pause()
    for sym in ("BTCUSDT", "ETHUSDT"):
        t = ex.trades(sym)
        np.testing.assert_array_equal(t.trade_id.to_numpy(), t.trade_id.iloc[0] + np.arange(len(t)))
        assert t.ts.is_monotonic_increasing
