"""The ingestor CLI against the local exchange over real sockets: lossless storage, reconnects, SIGTERM, bad input."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from exchange.server import LocalExchange
from tests.feedcheck import ROOT, compare, start_ingestor, stop_ingestor, stored, wait_for

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


@pytest.fixture
def exchange():
    ex = LocalExchange(symbols=SYMBOLS, seed=11, rate=40.0, history_seconds=300).start()
    yield ex
    ex.stop()


def _settle(db, exchange, market="spot", symbols=SYMBOLS, timeout=30):
    """Pause the exchange and wait until the file holds its last published id for every symbol."""
    exchange.pause()
    last = {s: exchange.last_trade_id(s, market) for s in symbols}
    assert wait_for(lambda: all(len(d := stored(db, market, s)) and d["trade_id"].max() >= last[s] for s in symbols),
                    timeout), "ingestor did not catch up with the exchange"


@pytest.mark.slow
def test_every_published_trade_stored_once(tmp_path, exchange):
    db = tmp_path / "t.duckdb"
    proc = start_ingestor(exchange, db, SYMBOLS, "--history", "2m")
    try:
        assert wait_for(lambda: db.exists() and len(stored(db, "spot", "ETHUSDT")) > 0, 90)
        start = exchange.last_trade_id("ETHUSDT")
        assert wait_for(lambda: stored(db, "spot", "ETHUSDT")["trade_id"].max() >= start + 100, 60)  # live part
        _settle(db, exchange)
    finally:
        assert stop_ingestor(proc) == 0
    for s in SYMBOLS:
        c = compare(db, exchange, "spot", s)
        assert c.ok, c
        got = stored(db, "spot", s)
        span_s = (got["ts_us"].max() - got["ts_us"].min()) / 1e6
        assert 120 <= span_s < 160, span_s  # the 2 minutes of history plus the live part


@pytest.mark.slow
def test_usdm_agg_trades_routed_stream(tmp_path, exchange):
    db = tmp_path / "u.duckdb"
    proc = start_ingestor(exchange, db, SYMBOLS, market="usdm")
    try:
        assert wait_for(lambda: db.exists() and len(stored(db, "usdm", "BTCUSDT")) > 50, 90)
        _settle(db, exchange, market="usdm")
    finally:
        assert stop_ingestor(proc) == 0
    for s in SYMBOLS:
        c = compare(db, exchange, "usdm", s)
        assert c.ok, c


@pytest.mark.slow
@pytest.mark.parametrize("how", ["close", "reset"])
def test_reconnects_after_server_drop_without_losing_trades(tmp_path, exchange, how):
    db = tmp_path / "t.duckdb"
    proc = start_ingestor(exchange, db, SYMBOLS)
    try:
        assert wait_for(lambda: db.exists() and len(stored(db, "spot", "BTCUSDT")) > 20, 90)
        opened = exchange.stats().connections_opened
        for k in (1, 2):
            exchange.drop_connections(how=how)
            # reconnected, and trades published after the reconnect are stored
            assert wait_for(lambda: exchange.stats().connections_open >= 1
                            and exchange.stats().connections_opened >= opened + k, 60)
            target = exchange.last_trade_id("BTCUSDT") + 40
            assert wait_for(lambda: stored(db, "spot", "BTCUSDT")["trade_id"].max() >= target, 60)
        _settle(db, exchange)
    finally:
        assert stop_ingestor(proc) == 0
    for s in SYMBOLS:
        c = compare(db, exchange, "spot", s)
        assert c.ok, c
    assert exchange.stats().connections_opened >= opened + 2
    log = db.with_suffix(".log").read_text()
    assert log.count("connected to ws://") >= 3, log[-2000:]


@pytest.mark.slow
def test_sigterm_flushes_the_buffer(tmp_path, exchange):
    db = tmp_path / "t.duckdb"
    # a long flush interval: whatever arrived since the last flush is only in memory when SIGTERM lands
    proc = start_ingestor(exchange, db, SYMBOLS, "--flush-ms", "60000")
    try:
        assert wait_for(lambda: "connected to ws://" in db.with_suffix(".log").read_text(), 60)
        start = {s: exchange.last_trade_id(s, "spot") for s in SYMBOLS}
        assert wait_for(lambda: all(exchange.last_trade_id(s, "spot") >= start[s] + 80 for s in SYMBOLS), 60)
        exchange.pause()
        time.sleep(1)  # frames already sent are in flight; the 60 s flush leaves nothing to observe
        last = {s: exchange.last_trade_id(s, "spot") for s in SYMBOLS}
    finally:
        assert stop_ingestor(proc, signal.SIGTERM) == 0
    for s in SYMBOLS:
        got = stored(db, "spot", s)
        assert got["trade_id"].max() == last[s]
        assert compare(db, exchange, "spot", s).ok


def _cli(*args, timeout=60):
    return subprocess.run([sys.executable, str(ROOT / "ingestor.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_bad_input_exits_2_with_one_clear_line(tmp_path, exchange):
    base = ["--ws-url", exchange.ws_url, "--rest-url", exchange.http_url]
    r = _cli("--symbols", "btcusdt,nosuchcoin", "--db", str(tmp_path / "a.duckdb"), *base)
    assert r.returncode == 2 and "unknown symbol(s) on spot: NOSUCHCOIN" in r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr
    r = _cli("--symbols", "btc-usdt", "--db", str(tmp_path / "a.duckdb"), *base)
    assert r.returncode == 2 and "bad symbol" in r.stderr
    r = _cli("--symbols", "btcusdt", "--db", str(tmp_path / "a.duckdb"), "--ws-url", "ws://127.0.0.1:9",
             "--rest-url", "http://127.0.0.1:9")
    assert r.returncode == 2 and "--rest-url http://127.0.0.1:9 is unreachable" in r.stderr
    r = _cli("--symbols", "btcusdt", "--db", str(tmp_path / "a.duckdb"), "--rest-url", "ftp://x", *base[:2])
    assert r.returncode == 2 and "must start with http:// or https://" in r.stderr
    (tmp_path / "file").write_text("x")
    r = _cli("--symbols", "btcusdt", "--db", str(tmp_path / "file" / "t.duckdb"), *base)
    assert r.returncode == 2 and "--db" in r.stderr


def test_help_shows_the_contract():
    out = _cli("--help").stdout
    for flag in ("--symbols", "--market", "--db", "--ws-url", "--rest-url", "--flush-ms", "--demo", "--log-level"):
        assert flag in out


@pytest.mark.slow
def test_demo_and_live_files_never_mix(tmp_path, exchange):
    """A file is 'live' or 'demo' for good: --demo refuses a live file and a live run refuses a demo file."""
    live, demo = tmp_path / "live.duckdb", tmp_path / "demo.duckdb"
    proc = start_ingestor(exchange, live, SYMBOLS)
    assert wait_for(lambda: live.exists() and len(stored(live, "spot", "BTCUSDT")) > 0, 90)
    assert stop_ingestor(proc) == 0
    r = _cli("--demo", "--symbols", "btcusdt", "--db", str(live))
    assert r.returncode == 2 and "holds live data" in r.stderr
    demo_proc = subprocess.Popen([sys.executable, str(ROOT / "ingestor.py"), "--demo", "--symbols", "btcusdt",
                                  "--db", str(demo), "--history", "1m"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: demo.exists() and len(stored(demo, "spot", "BTCUSDT")) > 0, 60)
    demo_proc.send_signal(signal.SIGTERM)
    assert demo_proc.wait(30) == 0
    r = _cli("--symbols", "btcusdt", "--db", str(demo), "--ws-url", exchange.ws_url, "--rest-url", exchange.http_url)
    assert r.returncode == 2 and "holds demo data" in r.stderr
    assert len(stored(live, "spot", "BTCUSDT")) > 0  # untouched
