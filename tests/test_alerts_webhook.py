"""alerts.webhook against a real http.server on 127.0.0.1: delivery, retries with backoff on 5xx / timeouts,
no retry on 4xx, a full queue drops instead of blocking, and URL validation."""
from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from alerts.webhook import WebhookSender, validate_webhook_url


class Server:
    """A loopback HTTP server answering each POST with the next status from `script` (then 200)."""

    def __init__(self, script=(), delay_s=0.0):
        self.script = list(script)
        self.delay_s = delay_s
        self.requests: list[tuple[dict, dict]] = []
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((dict(self.headers), body))
                if outer.delay_s:
                    outer.release.wait(outer.delay_s)
                code = outer.script.pop(0) if outer.script else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/hook"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_factory():
    made = []

    def make(*a, **kw):
        s = Server(*a, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def test_posts_json_body(server_factory):
    srv = server_factory()
    sender = WebhookSender(backoff_s=0.01, allow_private=True)
    try:
        assert sender.submit(srv.url, {"event_id": 7, "value": 1.5, "message": "BTCUSDT price 1.5 above 1",
                                       "nan": float("nan"), "inf": float("inf")})
        assert sender.join(5)
    finally:
        sender.close()
    headers, body = srv.requests[0]
    assert headers["Content-Type"] == "application/json"
    assert body == {"event_id": 7, "value": 1.5, "message": "BTCUSDT price 1.5 above 1", "nan": None, "inf": None}
    assert sender.stats.sent == 1 and sender.stats.failed == 0


def test_retries_server_errors_then_succeeds(server_factory):
    srv = server_factory(script=[500, 503, 429])
    sender = WebhookSender(retries=3, backoff_s=0.01, allow_private=True)
    try:
        sender.submit(srv.url, {"event_id": 1})
        assert sender.join(5)
    finally:
        sender.close()
    assert len(srv.requests) == 4 and sender.stats.sent == 1 and sender.stats.retries == 3


def test_retries_are_bounded(server_factory):
    srv = server_factory(script=[500] * 10)
    sender = WebhookSender(retries=2, backoff_s=0.01, allow_private=True)
    try:
        sender.submit(srv.url, {"event_id": 1})
        assert sender.join(5)
    finally:
        sender.close()
    assert len(srv.requests) == 3 and sender.stats.failed == 1 and sender.stats.sent == 0


def test_client_errors_are_not_retried(server_factory):
    srv = server_factory(script=[404])
    sender = WebhookSender(retries=3, backoff_s=0.01, allow_private=True)
    try:
        sender.submit(srv.url, {"event_id": 1})
        assert sender.join(5)
    finally:
        sender.close()
    assert len(srv.requests) == 1 and sender.stats.failed == 1


def test_timeout_counts_as_a_failed_attempt(server_factory):
    srv = server_factory(delay_s=5.0)
    sender = WebhookSender(timeout_s=0.2, retries=1, backoff_s=0.01, allow_private=True)
    try:
        sender.submit(srv.url, {"event_id": 1})
        assert sender.join(10)
    finally:
        srv.release.set()
        sender.close()
    assert len(srv.requests) == 2 and sender.stats.failed == 1


def test_connection_refused_is_retried_then_given_up():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    sender = WebhookSender(retries=2, backoff_s=0.01, allow_private=True)
    try:
        sender.submit(f"http://127.0.0.1:{port}/hook", {"event_id": 1})
        assert sender.join(10)
    finally:
        sender.close()
    assert sender.stats.failed == 1 and sender.stats.retries == 2


def test_full_queue_drops_instead_of_blocking(server_factory, caplog):
    srv = server_factory(delay_s=30.0)  # the first request hangs, so the queue fills up behind it
    sender = WebhookSender(maxsize=2, timeout_s=30, retries=0, allow_private=True)
    try:
        results = [sender.submit(srv.url, {"event_id": i}) for i in range(1)]
        deadline = time.monotonic() + 5
        while not srv.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.requests, "the sender thread never started the first request"
        results += [sender.submit(srv.url, {"event_id": i}) for i in range(1, 6)]
        assert results == [True, True, True, False, False, False]
        assert sender.stats.dropped == 3
        assert "webhook queue full" in caplog.text
    finally:
        srv.release.set()
        sender.close()


@pytest.mark.parametrize("url", ["https://hooks.example.com/x?y=1",
                                 "  https://example.com/path  "])
def test_valid_urls(url):
    assert validate_webhook_url(url) == url.strip()


@pytest.mark.parametrize("url,fragment", [
    ("", "is empty"),
    ("ftp://example.com/x", "scheme 'ftp' is not allowed; expected http:// or https://"),
    ("file:///etc/passwd", "scheme 'file' is not allowed"),
    ("javascript:alert(1)", "scheme 'javascript' is not allowed"),
    ("example.com/hook", "scheme '(none)' is not allowed"),
    ("http:///nohost", "has no host"),
    ("http://exa mple.com/", "contains spaces"),
    ("http://example.com:99999/", "invalid port"),
    ("http://example.com/" + "a" * 2100, "expected at most 2000"),
])
def test_invalid_urls_say_what_is_expected(url, fragment):
    with pytest.raises(ValueError, match=fragment.replace("?", r"\?").replace("(", r"\(").replace(")", r"\)")):
        validate_webhook_url(url)
