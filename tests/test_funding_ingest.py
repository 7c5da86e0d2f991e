"""The ingestor (real subprocess) storing mark prices and funding rates from the local exchange over real sockets:
every stored row equals what the exchange published, and funding settled while the ingestor was stopped or its
connection was dropped is backfilled from REST, each funding time once."""
from __future__ import annotations

import pandas as pd
import pytest

from exchange.server import LocalExchange
from tests.feedcheck import start_ingestor, stop_ingestor, wait_for
from tickstore.connection import read_connection

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
INTERVAL_S = 4.0   # funding every 4 s, so that a test sees several funding times pass


@pytest.fixture
def exchange():
    ex = LocalExchange(symbols=SYMBOLS, seed=5, rate=5.0, history_seconds=120, funding_interval=INTERVAL_S,
                       markets=("spot", "usdm")).start()
    yield ex
    ex.stop()


def stored_marks(db, symbol):
    with read_connection(db, budget_s=10) as con:
        return con.execute("""SELECT ts, mark_price, index_price, funding_rate, next_funding_time FROM mark_prices
                              WHERE market = 'usdm' AND symbol = ? ORDER BY ts""", [symbol]).df()


def stored_funding(db, symbol):
    with read_connection(db, budget_s=10) as con:
        return con.execute("""SELECT funding_time, funding_rate, mark_price FROM funding_rates
                              WHERE market = 'usdm' AND symbol = ? ORDER BY funding_time""", [symbol]).df()


def _utc(df, cols):
    for c in cols:
        df[c] = pd.to_datetime(df[c], utc=True).dt.as_unit("ms")
    return df


def check_funding(db, ex, symbol):
    """Stored funding = the exchange's settled funding (each time once, values exact) up to the newest stored."""
    got = _utc(stored_funding(db, symbol), ["funding_time"])
    assert got["funding_time"].is_unique
    truth = _utc(ex.funding_rates(symbol), ["funding_time"])
    truth = truth[truth["funding_time"] <= got["funding_time"].max()].reset_index(drop=True)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), truth, check_dtype=False)
    return got


def check_marks(db, ex, symbol):
    """Every stored mark update is one the exchange published, with the same values."""
    got = _utc(stored_marks(db, symbol), ["ts", "next_funding_time"])
    truth = _utc(ex.mark_updates(symbol), ["ts", "next_funding_time"])
    merged = got.merge(truth, on="ts", how="left", suffixes=("", "_ex"), validate="one_to_one")
    assert merged["mark_price_ex"].notna().all(), "stored a mark update the exchange never published"
    for c in ("mark_price", "index_price", "funding_rate", "next_funding_time"):
        assert (merged[c] == merged[f"{c}_ex"]).all(), c
    return got


def newest_funding(db, symbol):
    f = stored_funding(db, symbol)
    return pd.Timestamp(f["funding_time"].max()) if len(f) else None


@pytest.mark.slow
def test_marks_and_funding_stored_and_gaps_backfilled(tmp_path, exchange):
    db = tmp_path / "u.duckdb"
    n_hist = {s: len(exchange.funding_rates(s)) for s in SYMBOLS}
    assert min(n_hist.values()) >= 25   # 120 s of history at one funding every 4 s
    proc = start_ingestor(exchange, db, SYMBOLS, market="usdm")
    try:
        # start-up backfill of the history, then live mark updates
        assert wait_for(lambda: db.exists() and all(len(stored_funding(db, s)) >= n_hist[s] for s in SYMBOLS), 90)
        assert wait_for(lambda: all(len(stored_marks(db, s)) >= 5 for s in SYMBOLS), 60)
        # funding times passing while it runs are fetched shortly after (the stream's T moves)
        before = newest_funding(db, "BTCUSDT")
        assert wait_for(lambda: newest_funding(db, "BTCUSDT") >= before + pd.Timedelta(seconds=2 * INTERVAL_S), 60)
        # a dropped connection: reconnects, mark updates flow again
        opened = exchange.stats().connections_opened
        exchange.drop_connections(how="reset", market="usdm")
        assert wait_for(lambda: exchange.stats().connections_opened > opened, 60)
        n = len(stored_marks(db, "ETHUSDT"))
        assert wait_for(lambda: len(stored_marks(db, "ETHUSDT")) >= n + 3, 60)
    finally:
        assert stop_ingestor(proc) == 0
    stopped_at = {s: newest_funding(db, s) for s in SYMBOLS}
    for s in SYMBOLS:
        check_funding(db, exchange, s)
        check_marks(db, exchange, s)

    # downtime: several funding times settle while no ingestor runs
    passed = exchange.funding_rates("BTCUSDT")["funding_time"]
    target = passed.max() + pd.Timedelta(seconds=3 * INTERVAL_S)
    assert wait_for(lambda: exchange.funding_rates("BTCUSDT")["funding_time"].max() >= target, 60)
    proc = start_ingestor(exchange, db, SYMBOLS, market="usdm")
    try:
        settled = {s: exchange.funding_rates(s)["funding_time"].max() for s in SYMBOLS}
        assert wait_for(lambda: all(newest_funding(db, s) >= settled[s] for s in SYMBOLS), 90)
        assert wait_for(lambda: len(stored_marks(db, "BTCUSDT")) > 0, 30)
    finally:
        assert stop_ingestor(proc) == 0
    for s in SYMBOLS:
        got = check_funding(db, exchange, s)
        missed = got[got["funding_time"] > pd.Timestamp(stopped_at[s]).tz_convert("UTC")]
        assert len(missed) >= 3, "the funding settled during the downtime was not backfilled"
        # nothing between the first and the newest stored funding time is missing
        gaps = got["funding_time"].diff().dropna()
        assert (gaps == pd.Timedelta(seconds=INTERVAL_S)).all(), gaps.value_counts()
        check_marks(db, exchange, s)
    log = db.with_suffix(".log").read_text()
    assert "funding rate(s) fetched" in log


@pytest.mark.parametrize("value", ["x", "-3d", "30"])
def test_bad_funding_history_exits_2_with_one_line(tmp_path, value):
    import subprocess
    import sys

    from tests.feedcheck import ROOT

    r = subprocess.run([sys.executable, str(ROOT / "ingestor.py"), "--market", "usdm", f"--funding-history={value}",
                        "--db", str(tmp_path / "t.duckdb"), "--rest-url", "http://127.0.0.1:9"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "bad duration" in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr


@pytest.mark.slow
def test_malformed_and_hostile_mark_frames_are_skipped_never_stored(tmp_path):
    ex = LocalExchange(symbols=SYMBOLS, seed=9, rate=5.0, history_seconds=60, funding_interval=INTERVAL_S,
                       markets=("usdm",), malformed_fraction=0.3, hostile_fraction=0.3).start()
    db = tmp_path / "f.duckdb"
    try:
        proc = start_ingestor(ex, db, SYMBOLS, market="usdm")
        try:
            assert wait_for(lambda: db.exists() and all(len(stored_marks(db, s)) >= 8 for s in SYMBOLS), 90)
            assert wait_for(lambda: ex.stats().hostile_sent >= 4 and ex.stats().malformed_sent >= 4, 60)
        finally:
            assert stop_ingestor(proc) == 0
        for s in SYMBOLS:
            check_marks(db, ex, s)     # only real updates, exact values (the bad ones share their second)
            check_funding(db, ex, s)
        with read_connection(db) as con:
            malformed = con.execute("SELECT sum(malformed) FROM ingest_status WHERE market = 'usdm'").fetchone()[0]
            kinds = con.execute("SELECT count(*) FROM mark_prices WHERE symbol NOT IN ('BTCUSDT', 'ETHUSDT') "
                                "OR mark_price <= 0 OR abs(funding_rate) > 0.1 OR ts > now() + INTERVAL 1 HOUR"
                                ).fetchone()[0]
        assert malformed > 0 and kinds == 0
        log = db.with_suffix(".log").read_text()
        assert "malformed frame(s) skipped" in log and "Traceback" not in log
    finally:
        ex.stop()
