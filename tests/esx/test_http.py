"""esx.binding.http: kept-alive POSTs, a connection the peer dropped, refusals and timeouts as one phrase, in-process
mounts. Against real sockets (a small HTTP/1.1 server in a thread)."""
from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from esx.binding.http import LOCAL_CALLER, HttpClient, HttpUnreachable


class Peer:
    """Answers each POST 202 and records (connection number, body); ``close_after`` drops a connection after that many
    exchanges (as a server's keep-alive timeout does, silently); ``delay`` seconds before answering."""

    def __init__(self, close_after: int | None = None, delay: float = 0.0) -> None:
        self.seen: list[tuple[int, bytes]] = []
        self.connections = 0
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                peer.connections += 1
                self.number, self.served = peer.connections, 0

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if delay:
                    threading.Event().wait(delay)
                peer.seen.append((self.number, body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.served += 1
                if close_after is not None and self.served >= close_after:
                    self.wfile.flush()
                    self.close_connection = True  # closed without telling the client (no Connection: close)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/smdp/es3"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def peer():
    p = Peer()
    yield p
    p.close()


def test_posts_reuse_one_kept_alive_connection(peer):
    http = HttpClient()
    for n in range(3):
        r = http.post(peer.url, b"<m%d/>" % n, content_type="application/soap+xml", timeout=5)
        assert (r.status_code, r.content) == (202, b"")
    assert peer.seen == [(1, b"<m0/>"), (1, b"<m1/>"), (1, b"<m2/>")]
    assert peer.connections == 1


def test_a_connection_the_peer_dropped_is_replaced_and_the_request_sent_once():
    peer = Peer(close_after=1)
    try:
        http = HttpClient()
        assert http.post(peer.url, b"<a/>", content_type="application/soap+xml", timeout=5).status_code == 202
        # The peer closed connection 1 after answering; the client still holds it as idle.
        assert http.post(peer.url, b"<b/>", content_type="application/soap+xml", timeout=5).status_code == 202
        assert peer.seen == [(1, b"<a/>"), (2, b"<b/>")]
    finally:
        peer.close()


def test_a_refused_connection_is_one_phrase():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(HttpUnreachable) as caught:
        HttpClient().post(f"http://127.0.0.1:{port}/x", b"<a/>", content_type="text/xml", timeout=5)
    assert caught.value.kind == "ConnectionRefusedError"
    assert str(caught.value) == "ConnectionRefusedError: [Errno 111] Connection refused"


def test_a_peer_that_does_not_answer_in_time_is_a_timeout_and_is_not_sent_again():
    peer = Peer(delay=1.0)
    try:
        with pytest.raises(HttpUnreachable) as caught:
            HttpClient().post(peer.url, b"<slow/>", content_type="text/xml", timeout=0.2)
        assert caught.value.kind == "TimeoutError"
        threading.Event().wait(1.2)
        assert peer.seen == [(1, b"<slow/>")]
    finally:
        peer.close()


def test_a_url_that_is_not_http_is_refused_without_a_socket():
    with pytest.raises(HttpUnreachable) as caught:
        HttpClient().post("ftp://example.invalid/x", b"", content_type="text/xml", timeout=1)
    assert caught.value.kind == "InvalidURL"


def test_a_mounted_prefix_is_served_in_process_with_its_caller():
    seen = {}

    def app(environ, start_response):
        seen.update(path=environ["PATH_INFO"], query=environ["QUERY_STRING"], caller=environ.get(LOCAL_CALLER),
                    type=environ["CONTENT_TYPE"], body=environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
        start_response("200 OK", [("Content-Type", "application/soap+xml")])
        return [b"<ok/>"]

    http = HttpClient()
    http.mount("http://inprocess.invalid/", app, local_caller="1.2.3")
    r = http.post("http://inprocess.invalid/smsr/es1?x=1", b"<r/>", content_type="application/soap+xml", timeout=1)
    assert (r.status_code, r.content, r.headers["content-type"]) == (200, b"<ok/>", "application/soap+xml")
    assert seen == {"path": "/smsr/es1", "query": "x=1", "caller": "1.2.3", "type": "application/soap+xml",
                    "body": b"<r/>"}


def test_a_new_connection_closed_without_an_answer_is_not_tried_again():
    """Only a kept-alive connection is replaced once: a peer that closes a fresh one without answering is unreachable
    at once (its accept count says the request was not sent a second time)."""
    accepted = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn.recv(65536))
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        with pytest.raises(HttpUnreachable) as caught:
            HttpClient().post(f"http://127.0.0.1:{listener.getsockname()[1]}/x", b"<a/>", content_type="text/xml",
                              timeout=5)
        assert caught.value.kind == "RemoteDisconnected"
        threading.Event().wait(0.2)
        assert len(accepted) == 1
    finally:
        listener.close()
