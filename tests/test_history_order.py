"""History on an empty file: the newest `--history-first` part is loaded first, the older rest after it.

So pages opened during start-up show the present within seconds instead of waiting for a day of demo history
to stream in from its oldest trade. Both parts are requested history, not gaps: neither is counted as one.
"""
from __future__ import annotations

import time

import pytest

from exchange.server import LocalExchange
from feed.ingest import IngestConfig, Ingestor
from feed.state import now_us
from tests.feedcheck import compare, start_ingestor, stop_ingestor, stored, wait_for
from tickstore.connection import init_db, read_connection

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


@pytest.fixture(scope="module")
def exchange():
    ex = LocalExchange(symbols=SYMBOLS, seed=5, rate=10.0, history_seconds=700).start()
    yield ex
    ex.stop()


def _queued(tmp_path, exchange, history_s: float, first_s: float) -> tuple[list, Ingestor]:
    tmp_path.mkdir(exist_ok=True)
    db = tmp_path / "h.duckdb"
    init_db(db)
    ing = Ingestor(IngestConfig(symbols=SYMBOLS, db=db, ws_url=exchange.ws_url, rest_url=exchange.http_url,
                                history_s=history_s, history_first_s=first_s))
    ing.resume()  # queues the backfills; nothing is started
    return list(ing.backfiller.queue.queue), ing


def _age_s(ing: Ingestor, symbol: str, trade_id: int) -> float:
    """Age of one trade on the exchange (its REST trade-by-id page)."""
    (row,) = ing.rest.get(ing.spec.backfill_path, {"symbol": symbol, "fromId": trade_id, "limit": 1})
    return (now_us() / 1e3 - row["time"]) / 1e3


def test_the_newest_part_is_queued_first_and_the_older_part_after(tmp_path, exchange):
    gaps, ing = _queued(tmp_path, exchange, history_s=600, first_s=120)
    assert [g.symbol for g in gaps] == SYMBOLS + SYMBOLS
    recent, older = gaps[:2], gaps[2:]
    assert all(g.last_id is None and g.history for g in recent)       # catch-ups from 2 min ago to the stream
    assert all(g.history and g.last_id is not None for g in older)
    for r, o in zip(recent, older):
        assert o.last_id == r.first_id - 1                             # the older part ends where the newest begins
        assert o.first_id < r.first_id
    with read_connection(tmp_path / "h.duckdb") as con:               # nothing counted as a gap
        assert con.execute("SELECT count(*) FROM ingest_events WHERE kind = 'gap_found'").fetchone()[0] == 0
    for r, o in zip(recent, older):  # the boundaries: the exchange's first trades 2 and 10 minutes ago
        assert 110 <= _age_s(ing, r.symbol, r.first_id) < 140
        assert 590 <= _age_s(ing, o.symbol, o.first_id) < 620


def test_no_split_when_history_is_within_the_first_part(tmp_path, exchange):
    gaps, _ = _queued(tmp_path, exchange, history_s=120, first_s=600)
    assert [(g.symbol, g.last_id, g.history) for g in gaps] == [(s, None, True) for s in SYMBOLS]
    gaps, _ = _queued(tmp_path / "zero", exchange, history_s=600, first_s=0)   # --history-first 0: oldest first
    assert [(g.symbol, g.last_id, g.history) for g in gaps] == [(s, None, True) for s in SYMBOLS]


@pytest.mark.slow
def test_split_history_is_stored_whole_and_gap_free(tmp_path, exchange):
    db = tmp_path / "t.duckdb"
    log = tmp_path / "ingestor.log"
    started_s = time.time()
    proc = start_ingestor(exchange, db, SYMBOLS, "--history", "10m", "--history-first", "2m", log_path=log)
    try:
        assert wait_for(lambda: "loaded" in log.read_text() and log.read_text().count("trades of history") >= 2, 120)
        exchange.pause()
        last = {s: exchange.last_trade_id(s) for s in SYMBOLS}
        assert wait_for(lambda: all(len(d := stored(db, "spot", s)) and d["trade_id"].max() >= last[s]
                                    for s in SYMBOLS), 60)
    finally:
        assert stop_ingestor(proc) == 0
    for s in SYMBOLS:
        c = compare(db, exchange, "spot", s)
        assert c.ok, c                                     # every published trade once, ids gap-free
        got = stored(db, "spot", s)
        # the whole 10 minutes, not only the newest 2: the oldest stored print is one of the first after the
        # cutoff (a print lands every few seconds, so not exactly at it), and nothing older than the cutoff
        oldest_s = got["ts_us"].min() / 1e6
        assert started_s - 600 - 5 <= oldest_s <= started_s - 540, started_s - oldest_s
    with read_connection(db) as con:  # loading history is no gap: neither its newest part nor the older one
        found = con.execute("SELECT count(*) FROM ingest_events WHERE kind = 'gap_found'").fetchone()[0]
        counts = con.execute("SELECT sum(gaps_found), sum(gaps_filled) FROM ingest_status").fetchone()
    assert found == 0 and counts == (0, 0), counts
    text = log.read_text()
    assert "then the older part" in text and "queued" in text
