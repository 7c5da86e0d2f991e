"""Hostile webhook targets: internal addresses are refused unless allowed, redirects are never followed, each
delivery has a total deadline, and a slow destination never delays another."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from alerts.webhook import WebhookSender, validate_webhook_url
from tests.feedcheck import wait_for
from tests.test_alerts_webhook import Server, server_factory  # noqa: F401  (fixture)


INTERNAL = ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://169.254.169.254/latest/meta-data/",
            "http://10.1.2.3/hook", "http://192.168.0.10:9000/x", "http://[::1]:8080/hook",
            "http://[::ffff:127.0.0.1]/hook", "http://0.0.0.0/hook", "http://100.64.0.1/hook", "http://[fd00:ec2::254]/"]


@pytest.mark.parametrize("url", INTERNAL)
def test_internal_targets_are_refused_when_saved_unless_allowed(url, monkeypatch):
    monkeypatch.delenv("TICKDESK_WEBHOOKS_ALLOW_PRIVATE", raising=False)
    with pytest.raises(ValueError, match="public addresses only.*TICKDESK_WEBHOOKS_ALLOW_PRIVATE=1"):
        validate_webhook_url(url)
    assert validate_webhook_url(url, allow_private=True) == url
    monkeypatch.setenv("TICKDESK_WEBHOOKS_ALLOW_PRIVATE", "1")
    assert validate_webhook_url(url) == url


def test_public_targets_are_accepted(monkeypatch):
    monkeypatch.delenv("TICKDESK_WEBHOOKS_ALLOW_PRIVATE", raising=False)
    for url in ("https://hooks.example.com/x", "http://8.8.8.8/hook", "https://[2606:4700::1111]/h"):
        assert validate_webhook_url(url) == url


def test_a_name_resolving_to_an_internal_address_is_refused_at_delivery(server_factory, monkeypatch):
    """The rule names a public-looking host; at delivery it resolves to loopback (DNS rebinding, /etc/hosts)."""
    srv = server_factory()
    port = int(srv.url.rsplit(":", 1)[1].split("/")[0])
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **kw: real("127.0.0.1" if host == "hooks.example.com"
                                                                          else host, *a, **kw))
    sender = WebhookSender(retries=2, backoff_s=0.01, allow_private=False)
    try:
        sender.submit(f"http://hooks.example.com:{port}/hook", {"event_id": 1})
        assert sender.join(10)
    finally:
        sender.close()
    assert srv.requests == [] and sender.stats.refused == 1 and sender.stats.failed == 1
    assert sender.stats.retries == 0


class Redirector(Server):
    """Answers every POST with 307 to `location` (a 307 re-sends the POST body to the new place)."""

    def __init__(self, location):
        super().__init__()
        import http.server

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((dict(self.headers), None))
                self.send_response(307)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd.RequestHandlerClass = Handler


def test_redirects_are_never_followed(server_factory):
    internal = server_factory()
    redirector = Redirector(internal.url.replace("/hook", "/internal-admin"))
    try:
        sender = WebhookSender(retries=2, backoff_s=0.01, allow_private=True)
        try:
            sender.submit(redirector.url, {"event_id": 1})
            assert sender.join(10)
        finally:
            sender.close()
    finally:
        redirector.close()
    assert len(redirector.requests) == 1 and internal.requests == []
    assert sender.stats.failed == 1 and sender.stats.sent == 0 and sender.stats.retries == 0


class Dripper:
    """Accepts connections, reads the request, then sends a status line and one header line every `every` s,
    never finishing the answer (a slow-drip endpoint)."""

    def __init__(self, every=0.5):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.every = every
        self.accepted = 0
        self.open = 0
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn):
        self.open += 1
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            n = 0
            while not self.stop.wait(self.every):
                n += 1
                conn.sendall(b"X-Drip-%d: x\r\n" % n)
        except OSError:
            pass
        finally:
            self.open -= 1
            conn.close()

    def close(self):
        self.stop.set()
        self.sock.close()


@pytest.mark.slow  # > 4 s on a loaded 2-core host
def test_slow_drip_destination_neither_hangs_nor_delays_others(server_factory, caplog):
    """A header line every 0.5 s keeps every per-read timeout happy; the total deadline ends the attempt, and a
    second destination is served meanwhile."""
    drip = Dripper()
    fast = server_factory()
    sender = WebhookSender(timeout_s=3.0, retries=1, backoff_s=0.01, allow_private=True)
    try:
        sender.submit(drip.url, {"event_id": 1})
        assert wait_for(lambda: drip.open >= 1, 10)
        sender.submit(fast.url, {"event_id": 2})
        assert wait_for(lambda: len(fast.requests) == 1, 10), "the fast destination waited behind the slow one"
        assert drip.open >= 1  # still dripping at that moment: the fast one did not wait for it
        assert sender.join(60)
    finally:
        sender.close()
        drip.close()
    assert sender.stats.sent == 1 and sender.stats.failed == 1 and drip.accepted == 2
    assert "no complete answer within 3s" in caplog.text


def test_queue_of_one_destination_filling_up_does_not_drop_anothers(server_factory):
    slow = server_factory(delay_s=30.0)
    fast = server_factory()
    sender = WebhookSender(maxsize=1, timeout_s=30, retries=0, allow_private=True)
    try:
        assert sender.submit(slow.url, {"event_id": 0})
        assert wait_for(lambda: slow.requests, 10)
        assert sender.submit(slow.url, {"event_id": 1}) and not sender.submit(slow.url, {"event_id": 2})
        assert all(sender.submit(fast.url, {"event_id": 10}) for _ in range(1))
        assert wait_for(lambda: len(fast.requests) == 1, 10)
    finally:
        slow.release.set()
        sender.close()
    assert sender.stats.dropped == 1
