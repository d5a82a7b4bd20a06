"""Clients that hold a connection to a server without ever completing a request (issue 9).

Kinds, for a plain HTTP server:

- ``silent``: connects and sends nothing;
- ``half_line``: sends half a request line;
- ``half_head``: sends the request line and some headers, never the blank line;
- ``part_body``: sends a complete head declaring a 1,000-byte body, then 100 bytes of it;
- ``slowloris``: sends a head one byte every half second (a background thread), so bytes keep
  arriving and a per-read timeout never fires.

For a TLS server: ``silent`` (no ClientHello) and ``half_hello`` (the first half of a real
ClientHello). The end-to-end tests and ``bench/es4_get_eis.py --idle N`` both use them.
"""
from __future__ import annotations

import itertools
import select
import socket
import ssl
import threading
import time
from typing import Iterable, Iterator

HTTP_KINDS = ("silent", "half_line", "half_head", "part_body", "slowloris")
TLS_KINDS = ("silent", "half_hello")
PATH = "/smsr/es4"


def _head(host: str, body_length: int | None = None) -> bytes:
    lines = [f"POST {PATH} HTTP/1.1", f"Host: {host}", "Content-Type: application/soap+xml; charset=utf-8"]
    if body_length is not None:
        lines.append(f"Content-Length: {body_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _endless_head(host: str) -> Iterator[bytes]:
    """A request head that never ends: the request line, then header after header."""
    yield from (bytes([b]) for b in f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\n".encode())
    for n in itertools.count():
        yield from (bytes([b]) for b in f"X-Slow-{n}: a\r\n".encode())


def client_hello() -> bytes:
    """The bytes of a real TLS ClientHello (what a client sends first), made with a memory BIO."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_side=False)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class SlowClients:
    """Opens connections of the given kinds, round-robin over ``sources`` (local addresses to bind:
    Linux routes all of 127.0.0.0/8 to loopback, so each one is a distinct client address)."""

    def __init__(self, host: str, port: int, *, sources: Iterable[str] = ("127.0.0.1",), tls: bool = False,
                 interval: float = 0.5) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.sources = tuple(sources)
        self.interval = interval
        self.socks: list[socket.socket] = []
        self.kinds: dict[socket.socket, str] = {}
        self.failed: set[socket.socket] = set()  # a write failed: the server closed it
        self._slow: list[tuple[socket.socket, Iterator[bytes]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "SlowClients":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self, n: int, kinds: Iterable[str]) -> list[socket.socket]:
        opened = []
        for kind, source in zip(itertools.islice(itertools.cycle(kinds), n), itertools.cycle(self.sources)):
            opened.append(self.open_one(kind, source))
        return opened

    def open_one(self, kind: str, source: str = "127.0.0.1") -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((source, 0))
        s.settimeout(10)
        s.connect((self.host, self.port))
        if self.tls:
            if kind == "half_hello":
                hello = client_hello()
                s.sendall(hello[: len(hello) // 2])
            elif kind != "silent":
                raise ValueError(f"unknown TLS kind {kind!r}")
        elif kind == "half_line":
            s.sendall(f"POST {PATH} HT".encode())
        elif kind == "half_head":
            s.sendall(_head(self.host)[:-20])
        elif kind == "part_body":
            s.sendall(_head(self.host, 1000) + b"<" * 100)
        elif kind == "slowloris":
            with self._lock:
                self._slow.append((s, _endless_head(self.host)))
            if self._thread is None:
                self._thread = threading.Thread(target=self._trickle, name="slowloris", daemon=True)
                self._thread.start()
        elif kind != "silent":
            raise ValueError(f"unknown kind {kind!r}")
        self.socks.append(s)
        self.kinds[s] = kind
        return s

    def _trickle(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                slow = [(s, g) for s, g in self._slow if s not in self.failed]
            for s, gen in slow:
                try:
                    s.send(next(gen))
                except OSError:
                    self.failed.add(s)

    def closed_by_server(self) -> list[socket.socket]:
        """The connections the server has given up on: closed, reset or answered (e.g. 408)."""
        gone = set(self.failed)
        live = [s for s in self.socks if s not in gone and s.fileno() >= 0]
        if live:
            readable, _, _ = select.select(live, [], [], 0)
            gone.update(readable)
        return [s for s in self.socks if s in gone]

    def replenish(self) -> int:
        """Replace the connections the server gave up on with new ones of the same kind and source,
        as an attacker would; returns how many were replaced."""
        gone = self.closed_by_server()
        for s in gone:
            kind, source = self.kinds.pop(s), s.getsockname()[0]
            self.socks.remove(s)
            with self._lock:
                self._slow = [(t, g) for t, g in self._slow if t is not s]
            self.failed.discard(s)
            s.close()
            try:
                self.open_one(kind, source)
            except OSError:
                pass  # not accepted for now (e.g. the per-client limit); tried again next time
        return len(gone)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for s in self.socks:
            s.close()


def read_until_closed(s: socket.socket, bound: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection; fails after ``bound`` seconds
    (the client's patience, not a timing assertion)."""
    data = b""
    deadline = time.monotonic() + bound
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"the server did not close the connection within {bound} s (got {data[:80]!r})")
        s.settimeout(remaining)
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return data
        except socket.timeout:
            continue
        if not chunk:
            return data
        data += chunk
