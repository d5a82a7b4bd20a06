"""The HTTP client of everything esx sends (ES3 requests, callbacks and notifications of the outbox, ES7, ES1 at
``esx init``): POSTs over kept-alive HTTP/1.1 connections of the standard library's ``http.client``.

Why not ``requests`` (which the test clients and zeep's WSDL loading still use): every POST through a
``requests.Session`` prepares a request object, merges the environment's proxy and certificate settings (reading
``os.environ`` and ``~/.netrc``), runs hooks and goes through urllib3's pool: about 0.8 ms of the sender's CPU per
POST against 0.19 ms here (urllib3 alone: 0.34 ms), measured side by side by bench/http_client.py (BENCHMARKS.md,
issue 10, third round). A download makes about twenty POSTs. esx needs none of that machinery: its peers are URLs
it registered, with or without mutual TLS, never behind a proxy the environment names.

- One pool of idle connections per origin (scheme, host, port), shared by the threads of a process (the outbox sends
  to several addresses at once). A connection is taken for one exchange and put back after its response was read
  whole. A kept-alive connection that fails before the first byte of a response (the peer closed it while it was
  idle) is replaced once, at once, for the same request; every other failure is the caller's to handle (the outbox
  and the step engine try again later, with the same MessageID, which receivers recognise as a replay).
- TLS (``esx init --auth mtls``): one ``ssl.SSLContext`` with our client certificate and only our CA trusted.
- ``mount(prefix, app)``: requests to URLs under ``prefix`` are served by a WSGI application of this process,
  without a socket (an SM-DP calling the SM-SR it shares a process with, ``esx init``'s ES1 registrations).
- A failure to reach the peer (refused, reset, timed out, a broken response) raises :class:`HttpUnreachable`,
  whose text is one short phrase (``ConnectionRefusedError: [Errno 111] Connection refused``).
"""
from __future__ import annotations

import http.client
import io
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

LOCAL_CALLER = "esx.local_caller"  # the environ key of an in-process call's caller (esx.server trusts it)


class HttpUnreachable(Exception):
    """The peer could not be reached or did not answer with a whole HTTP response. ``kind``: the underlying error's
    class name (``ConnectionRefusedError``, ``TimeoutError``...), a text that names no address."""

    def __init__(self, phrase: str, kind: str) -> None:
        super().__init__(phrase)
        self.kind = kind


@dataclass(frozen=True)
class HttpResponse:
    status_code: int
    content: bytes
    headers: dict[str, str]


def _phrase(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


class _Mounted:
    def __init__(self, app: Callable, local_caller: str | None) -> None:
        self.app = app
        self.local_caller = local_caller

    def post(self, url: str, data: bytes, headers: dict[str, str]) -> HttpResponse:
        status, response_headers, content = call_wsgi(self.app, "POST", url, data, headers, self.local_caller)
        return HttpResponse(int(status.split()[0]), content, {k.lower(): v for k, v in response_headers})


def call_wsgi(app: Callable, method: str, url: str, body: bytes, headers: dict[str, str],
              local_caller: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
    """One request served by the WSGI application ``app`` of this process: (status line, headers, body)."""
    parts = urlsplit(url)
    environ = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": parts.path,
        "QUERY_STRING": parts.query,
        "SERVER_NAME": parts.hostname or "localhost",
        "SERVER_PORT": str(parts.port or 80),
        "HTTP_HOST": parts.netloc,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": next((v for k, v in headers.items() if k.lower() == "content-type"), ""),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": parts.scheme,
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for key, value in headers.items():
        environ["HTTP_" + key.upper().replace("-", "_")] = value
    if local_caller is not None:
        environ[LOCAL_CALLER] = local_caller
    captured: dict = {}

    def start_response(status, response_headers, exc_info=None):
        captured["status"], captured["headers"] = status, response_headers

    chunks = app(environ, start_response)
    try:
        content = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close:
            close()
    return captured["status"], list(captured["headers"]), content


class HttpClient:
    """POSTs over kept-alive connections; thread-safe. ``tls``: (client certificate, its key, CA file) for mutual TLS."""

    def __init__(self, *, tls: tuple[str, str, str] | None = None, max_idle: int = 8) -> None:
        self.max_idle = max_idle
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._mounts: list[tuple[str, _Mounted]] = []
        self._tls: ssl.SSLContext | None = None
        if tls is not None:
            cert, key, ca = tls
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
            context.load_cert_chain(cert, key)
            self._tls = context

    def mount(self, prefix: str, app: Callable, *, local_caller: str | None = None) -> None:
        """Requests to URLs starting with ``prefix`` go to the WSGI ``app`` of this process."""
        self._mounts.append((prefix, _Mounted(app, local_caller)))

    def post(self, url: str, data: bytes, *, content_type: str, timeout: float) -> HttpResponse:
        headers = {"Content-Type": content_type}
        for prefix, mounted in self._mounts:
            if url.startswith(prefix):
                return mounted.post(url, data, headers)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HttpUnreachable(f"InvalidURL: {url[:100]}", "InvalidURL")
        origin = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        headers["Host"] = parts.netloc
        headers["Content-Length"] = str(len(data))
        for fresh in (False, True):
            conn, reused = self._connection(origin, timeout, fresh)
            try:
                conn.request("POST", target, body=data, headers=headers)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if reused and not isinstance(exc, (socket.timeout, ssl.SSLError)):
                    continue  # a kept-alive connection the peer closed meanwhile: once more on a new one
                raise HttpUnreachable(_phrase(exc), exc.__class__.__name__) from None
            try:
                response = conn.getresponse()
                content = response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if reused and isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError,
                                               BrokenPipeError)):
                    # Closed before any byte of a response: an idle connection the peer had dropped (it read
                    # nothing of this request on it, HTTP/1.1 section 9.6).
                    continue
                raise HttpUnreachable(_phrase(exc), exc.__class__.__name__) from None
            if response.will_close:
                conn.close()
            else:
                self._put_back(origin, conn)
            return HttpResponse(response.status, content, {k.lower(): v for k, v in response.getheaders()})
        raise AssertionError("unreachable")  # pragma: no cover

    def _connection(self, origin: tuple[str, str, int], timeout: float,
                    fresh: bool) -> tuple[http.client.HTTPConnection, bool]:
        """A connection to ``origin``, and whether it is a kept-alive one (only such a one is tried again)."""
        if not fresh:
            with self._lock:
                idle = self._idle.get(origin)
                if idle:
                    conn = idle.pop()
                    conn.timeout = timeout
                    if conn.sock is not None:
                        conn.sock.settimeout(timeout)
                    return conn, True
        scheme, host, port = origin
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=timeout,
                                               context=self._tls or ssl.create_default_context()), False
        return http.client.HTTPConnection(host, port, timeout=timeout), False

    def _put_back(self, origin: tuple[str, str, int], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < self.max_idle:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()
