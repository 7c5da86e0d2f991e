"""A start that cannot work is refused at once, in one line, leaving nothing behind.

Unreachable REST or WebSocket (unresolvable host, closed port, refused handshake) and unknown symbols: exit 2, one
short stderr line naming the host and suggesting `make demo` / --rest-url/--ws-url, no new file or directory, a
pre-existing file byte for byte as it was. `--ready-file` marks a start that passed (`make run` waits for it).
History loaded at start-up is not counted as a gap.
"""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from exchange.server import LocalExchange
from feed.backfill import GapTracker
from feed.binance import Trade
from feed.reach import host_of, probe_ws, short_reason, unreachable
from feed.state import IngestState
from tests.feedcheck import ROOT, wait_for
from tickstore.connection import StoreError, check_creatable, init_db

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


@pytest.fixture(scope="module")
def exchange():
    ex = LocalExchange(symbols=SYMBOLS, seed=3, rate=5.0, history_seconds=120).start()
    yield ex
    ex.stop()


def _cli(*args, timeout=90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "ingestor.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def _one_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr and "HTTPConnectionPool" not in r.stderr
    assert len(lines[0]) < 260, lines[0]
    return lines[0]


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# the CLI ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url, why", [("http://nonexistent.invalid", "host not found"),
                                      ("http://127.0.0.1:1", "connection refused")])
def test_unreachable_rest_exits_2_in_one_line_and_leaves_no_file(tmp_path, url, why):
    db = tmp_path / "new" / "t.duckdb"
    line = _one_line(_cli("--symbols", "btcusdt", "--db", str(db), "--rest-url", url))
    assert f"--rest-url {url} is unreachable ({why})" in line
    assert "`make demo`" in line and "--rest-url/--ws-url" in line and "Binance.US" in line
    assert not (tmp_path / "new").exists()  # neither the file nor its directory


@pytest.mark.parametrize("extra", [[], ["--top", "2"]])
def test_unreachable_rest_leaves_an_existing_file_as_it_was(tmp_path, extra):
    db = tmp_path / "t.duckdb"
    init_db(db)
    before = _digest(db)
    line = _one_line(_cli("--symbols", "btcusdt", *extra, "--db", str(db), "--rest-url", "http://127.0.0.1:1"))
    assert "is unreachable (connection refused)" in line
    assert db.exists() and _digest(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.duckdb"]


def test_top_with_unresolvable_host_names_it(tmp_path):
    line = _one_line(_cli("--top", "3", "--db", str(tmp_path / "t.duckdb"), "--rest-url", "http://nonexistent.invalid"))
    assert "--top 3: cannot rank spot symbols" in line and "(host not found)" in line and "`make demo`" in line
    assert not any(tmp_path.iterdir())


def test_unknown_symbol_leaves_no_file(tmp_path, exchange):
    db = tmp_path / "t.duckdb"
    line = _one_line(_cli("--symbols", "btcusdt,nosuchcoin", "--db", str(db), "--ws-url", exchange.ws_url,
                          "--rest-url", exchange.http_url))
    assert "unknown symbol(s) on spot: NOSUCHCOIN" in line
    assert not db.exists() and not any(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("case", ["closed port", "no such host", "refused handshake"])
def test_unreachable_stream_with_working_rest_exits_2_not_retried_forever(tmp_path, exchange, case):
    ws = {"closed port": f"ws://127.0.0.1:{_closed_port()}", "no such host": "ws://nonexistent.invalid",
          "refused handshake": exchange.ws_url + "/nope"}[case]
    why = {"closed port": "connection refused", "no such host": "host not found",
           "refused handshake": "handshake refused: HTTP 404"}[case]
    db = tmp_path / "t.duckdb"
    line = _one_line(_cli("--symbols", "btcusdt", "--db", str(db), "--ws-url", ws, "--rest-url", exchange.http_url))
    assert f"--ws-url {ws} is unreachable ({why})" in line and "`make demo`" in line
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_ready_file_marks_a_start_that_passed_and_goes_on_exit(tmp_path, exchange):
    db, ready = tmp_path / "t.duckdb", tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, str(ROOT / "ingestor.py"), "--symbols", "btcusdt", "--db", str(db),
                             "--ws-url", exchange.ws_url, "--rest-url", exchange.http_url, "--ready-file", str(ready)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: ready.exists() or proc.poll() is not None, 90), "no ready file"
        assert ready.exists() and db.exists()
    finally:
        proc.terminate()
        assert proc.wait(60) == 0
    assert not ready.exists()


# the parts -------------------------------------------------------------------------------------------------------
def test_short_reasons_name_the_cause():
    assert short_reason(socket.gaierror(-2, "Name or service not known")) == "host not found"
    assert short_reason(ConnectionRefusedError(111, "Connection refused")) == "connection refused"
    assert short_reason(TimeoutError("timed out")) == "no answer in time"
    try:
        requests.get(f"http://127.0.0.1:{_closed_port()}/", timeout=5)
    except requests.RequestException as exc:
        assert short_reason(exc) == "connection refused"
    assert short_reason(requests.ConnectionError(
        "HTTPSConnectionPool(host='api.binance.com', port=443): Max retries exceeded (Caused by "
        "NameResolutionError(\"...: Failed to resolve 'api.binance.com' ([Errno -2] Name or service not known)\"))")
    ) == "host not found"
    assert short_reason(OSError(101, "Network is unreachable")) == "network is unreachable"
    assert host_of("wss://stream.binance.com:9443/stream?streams=btcusdt@trade") == "stream.binance.com:9443"
    assert unreachable("api.binance.com", "host not found", "spot", True).startswith(
        "Binance (api.binance.com) is unreachable (host not found); try `make demo`")
    assert "Binance.US" not in unreachable("fapi.binance.com", "host not found", "usdm", True)


def test_probe_ws_is_bounded_and_succeeds_on_a_live_exchange(exchange):
    stop = threading.Event()
    t0 = time.monotonic()
    assert probe_ws(f"ws://127.0.0.1:{_closed_port()}/stream", stop, attempts=2, deadline_s=5) == "connection refused"
    assert time.monotonic() - t0 < 30  # bounded (a generous bound: no timing claim beyond "it returns")
    assert probe_ws(exchange.ws_url + "/stream?streams=btcusdt@trade", stop) is None
    assert probe_ws(exchange.ws_url + "/nope", stop, attempts=3) == "handshake refused: HTTP 404"


def test_check_creatable_creates_nothing(tmp_path):
    check_creatable(tmp_path / "a" / "b" / "t.duckdb")
    assert not any(tmp_path.iterdir())
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is not a directory"):
        check_creatable(tmp_path / "file" / "t.duckdb")
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(StoreError, match="not writable"):
            check_creatable(ro / "t.duckdb")


class _Queue:
    def __init__(self):
        self.gaps = []
        self.tracker = None

    def submit(self, gap):
        self.gaps.append(gap)


def _trade(symbol: str, trade_id: int) -> Trade:
    return Trade("spot", symbol, trade_id, 1_700_000_000_000_000 + trade_id, 1.0, 1.0, False, None, "ws")


def test_history_load_is_no_gap_until_the_first_live_print():
    state, queue = IngestState(), _Queue()
    tracker = GapTracker("spot", state, queue)
    tracker.prime("BTCUSDT", 99, None)
    tracker.resume("BTCUSDT", "--history 1800s on an empty file", history=True)
    tracker.finish_resume("BTCUSDT", 150)        # the catch-up ended before the stream's first print
    tracker.resume("BTCUSDT", "no print since the reconnect")   # the start-up catch-up of a quiet symbol
    tracker.finish_resume("BTCUSDT", 160)
    tracker.observe(_trade("BTCUSDT", 170))      # the first live print jumps over what traded meanwhile
    tracker.observe(_trade("BTCUSDT", 180))      # a later jump is a gap again
    assert [(g.first_id, g.last_id, g.history) for g in queue.gaps] == [
        (100, None, True), (151, None, True), (161, 169, True), (171, 179, False)]
    assert queue.gaps[2].reason == "ids between the history load and the stream"

    tracker.prime("ETHUSDT", 499, None)          # a downtime catch-up (a file with ticks) stays a gap
    tracker.resume("ETHUSDT", "downtime since the last stored id")
    tracker.observe(_trade("ETHUSDT", 600))      # first live print while catching up: the catch-up stops there
    tracker.finish_resume("ETHUSDT", 590)
    assert [(g.first_id, g.last_id, g.history) for g in queue.gaps[4:]] == [(500, None, False), (591, 599, False)]
