"""The gunicorn worker of ``esx serve``: one event loop reads whole requests, a few threads serve them.

Theory of operation
-------------------
Why: a sync worker blocks in ``recv`` for as long as a client cares to wait, so a handful of
silent connections stop the server; gunicorn's gthread worker puts idle keep-alive connections
back on a poller but still blocks a thread on a partial head, a partial body or a TLS handshake.
Here the one thread that waits for clients never blocks, and the threads that run the
application never wait for a client: they get a request only once all of its bytes are in memory.

One loop thread per process owns every connection that is not being served. Its states
(``Conn.state``):

=========  ==============  =============================================  ======================================
state      loop waits for  next                                           deadline: what happens at it
=========  ==============  =============================================  ======================================
HANDSHAKE  read / write    handshake done -> HEAD                         accept + header_timeout: close
HEAD       read            head done -> BODY; a whole request -> APP      accept (kept alive: the first byte)
                                                                          + header_timeout: 408, or close if
                                                                          nothing was sent
BODY       read            a whole request -> APP                         end of head + body_timeout: 408
APP        its thread      keep-alive -> IDLE (HEAD if the next request   none in the loop; the thread writes
                           is buffered already); otherwise -> LINGER      under write_timeout
IDLE       read            a byte -> HEAD                                 response + keepalive_timeout: close
CLOSING    write           refusal written -> LINGER                      + linger: close
LINGER     read, dropped   the client's EOF -> closed                     + linger: close
=========  ==============  =============================================  ======================================

Rules this file keeps:

- Every socket is non-blocking while the loop owns it. A connection in APP is out of the selector
  and belongs to its thread until the thread hands it back through ``done`` (and a byte on the
  wake-up pipe); the loop does not touch it meanwhile.
- A request is framed by ``framing.RequestFramer`` (sizes capped: 431, 413; bad framing: 400),
  then parsed again, from memory, by gunicorn's own parser in the thread: the checks gunicorn
  makes on request lines and headers still apply, and its ``wsgi.create`` builds the environ.
  ``environ["gunicorn.socket"]`` is the connection's (TLS) socket, as under the sync worker:
  ``esx.server.peer_certificate`` reads the client certificate there.
- Limits are enforced at accept: above ``max_connections`` the worker stops accepting (new
  connections wait in the kernel's backlog); a client address already holding
  ``max_connections_per_client`` connections of this process has the new one closed at once.
- A process with work in hand leaves new connections to an idle one (``_admit``): kept-alive
  connections stay with the process that accepted them, so whoever wins the accept race would
  otherwise keep a burst of them and one core would do the work of two.
- Refusals the loop makes (408, 413, 431, 400) are SOAP 1.2 Sender faults, like every other
  refusal esx makes; the connection then closes after a short linger (RFC 9112 section 9.6).
- SIGTERM: stop accepting; close IDLE connections and those that have not sent a byte; give a
  request still being received ``STOP_GRACE`` to arrive whole; let the requests being served finish
  (their connections close after the response) within graceful_timeout.
"""
from __future__ import annotations

import errno
import heapq
import io
import itertools
import math
import os
import queue
import selectors
import socket
import ssl
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from enum import Enum
from http import HTTPStatus

from gunicorn import http, util
from gunicorn import sock as gunicorn_sock
from gunicorn.http import wsgi
from gunicorn.workers import base

from esx.serving import Limits
from esx.serving.framing import Framed, Refused, RequestFramer

READ_SIZE = 64 * 1024
# Spreading connections over the worker processes: see BufferedRequestWorker._admit.
BALANCE_WAIT = 0.01  # a busy process takes a waiting connection only after this long
FRESH_WINDOW = 0.1  # a new connection counts as work this long while its first request is coming in
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
EMFILE_PAUSE = 0.5  # out of file descriptors: stop accepting this long
STOP_GRACE = 2.0  # on SIGTERM, a request still being received has this long to arrive whole


class State(Enum):
    HANDSHAKE = "handshake"
    HEAD = "head"
    BODY = "body"
    APP = "app"
    IDLE = "idle"
    CLOSING = "closing"
    LINGER = "linger"
    CLOSED = "closed"


READING = (State.IDLE, State.HEAD, State.BODY)


class Conn:
    """One client connection and what the loop knows of it."""

    __slots__ = ("sock", "addr", "ip", "server", "state", "buf", "framer", "deadline", "armed", "events",
                 "out", "drained")

    def __init__(self, sock: socket.socket, addr, server, limits: Limits) -> None:
        self.sock = sock
        self.addr = addr
        self.ip = addr[0] if isinstance(addr, tuple) else str(addr)
        self.server = server
        self.state = State.HEAD
        self.buf = bytearray()
        self.framer = RequestFramer(limits.max_header_bytes, limits.max_body_bytes)
        self.deadline = math.inf
        self.armed = math.inf  # the earliest timer entry this connection has in the heap
        self.events = 0  # what it is registered for in the selector (0: not registered)
        self.out = b""  # an error response the loop still has to write
        self.drained = 0  # bytes read and dropped while lingering


class DeadlineWriter:
    """The socket as a response sees it: every write of one response shares one deadline
    (``write_timeout`` from its first byte), so a client that reads slowly or never cannot keep
    an application thread for longer than that. Anything else goes to the socket itself."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock = sock
        self._timeout = timeout
        self._deadline: float | None = None

    def sendall(self, data) -> None:
        if self._deadline is None:
            self._deadline = time.monotonic() + self._timeout
        view = memoryview(data)
        while view:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"response not written within {self._timeout} s")
            self._sock.settimeout(remaining)
            view = view[self._sock.send(view):]

    def send(self, data) -> int:
        self.sendall(data)
        return len(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


class BufferedRequestWorker(base.Worker):
    """gunicorn worker class (``worker_class``); its :class:`Limits` come from ``app.serving_limits``
    (``esx.gunicorn_app``), else the defaults."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.limits: Limits = getattr(self.app, "serving_limits", None) or _default_limits()
        self.conns: set[Conn] = set()
        self.per_client: dict[str, int] = {}
        self.timers: list[tuple[float, int, Conn]] = []
        self._timer_seq = itertools.count()
        self.done: queue.SimpleQueue = queue.SimpleQueue()  # (conn, keep_alive) from the app threads
        self.accepting = False
        self.accept_paused_until = 0.0
        self.inflight = 0  # requests handed to the pool and not yet answered
        self.fresh: deque[tuple[float, Conn]] = deque()  # connections accepted within FRESH_WINDOW
        self.next_busy_accept = 0.0
        self.ssl_context: ssl.SSLContext | None = None
        self._notified = 0.0
        self._refusals_logged = 0.0
        self._refusals_unlogged = 0

    # -- process life ---------------------------------------------------------------------------

    def init_process(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.wake_r, self.wake_w):
            util.set_non_blocking(fd)
            util.close_on_exec(fd)
        # How many: esx.gunicorn_app.app_threads says why.
        self.pool = ThreadPoolExecutor(self.limits.threads, thread_name_prefix="esx-app")
        if self.cfg.is_ssl:
            self.ssl_context = gunicorn_sock.ssl_context(self.cfg)  # once, not per connection
        super().init_process()  # loads the application, then calls run()

    def handle_quit(self, sig, frame) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        super().handle_quit(sig, frame)

    def run(self) -> None:
        for listener in self.sockets:
            listener.setblocking(False)
        self.selector.register(self.PIPE[0], selectors.EVENT_READ, self._on_signal)
        self.selector.register(self.wake_r, selectors.EVENT_READ, self._on_done)
        self.log.info("Serving (esx.serving): %d application threads, header_timeout %gs, body_timeout %gs, "
                      "max_connections %d, per client %d", self.limits.threads, self.limits.header_timeout,
                      self.limits.body_timeout, self.limits.max_connections, self.limits.max_connections_per_client)
        while self.alive:
            self._tick(self._admit(time.monotonic()))
            if not self.is_parent_alive():
                break
        self._shutdown()

    def is_parent_alive(self) -> bool:
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            return False
        return True

    def _shutdown(self) -> None:
        self._set_accepting(False)
        now = time.monotonic()
        graceful_deadline = now + self.cfg.graceful_timeout
        for conn in list(self.conns):
            if conn.state in (State.IDLE, State.HANDSHAKE) or (conn.state is State.HEAD and not conn.buf):
                self._close(conn)
            elif conn.state is not State.APP:
                # A request on its way arrives in milliseconds; a slow client does not hold the stop.
                self._set_deadline(conn, min(conn.deadline, now + STOP_GRACE))
        while self.conns and time.monotonic() < graceful_deadline:
            self._tick(0.5)
        for conn in list(self.conns):
            self._close(conn)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.selector.close()
        for listener in self.sockets:
            listener.close()

    def _tick(self, longest: float) -> None:
        now = time.monotonic()
        if now - self._notified >= 1.0:
            self.notify()  # the arbiter's heartbeat
            self._notified = now
        timeout = longest
        if self.timers:
            timeout = max(0.0, min(timeout, self.timers[0][0] - now))
        for key, _ in self.selector.select(timeout):
            if isinstance(key.data, Conn):
                self._on_ready(key.data)
            else:
                key.data()
        self._expire(time.monotonic())

    def _on_signal(self) -> None:
        try:
            os.read(self.PIPE[0], 4096)  # set_wakeup_fd's bytes: the handler already ran
        except BlockingIOError:
            pass

    def _wake(self) -> None:
        try:
            os.write(self.wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the loop is awake anyway

    # -- accepting --------------------------------------------------------------------------------

    def _admit(self, now: float) -> float:
        """Decide whether this process accepts now; the longest the loop may sleep before asking again.

        An idle process (no request in the pool, no connection accepted within FRESH_WINDOW still
        sending its first request) accepts as soon as a connection waits. A busy one leaves it to
        an idle process and takes one waiting connection itself only every BALANCE_WAIT, for when
        every process is busy. That is how sync workers share out connections (a busy one is not
        in accept()), at the price of at most BALANCE_WAIT for a connection that finds all busy.
        Slow clients count only for FRESH_WINDOW, so holding connections open cannot stop a process
        from accepting.
        """
        if len(self.conns) >= self.limits.max_connections:
            self._set_accepting(False)
            return 1.0  # a connection that closes ends the loop's sleep anyway
        if now < self.accept_paused_until:
            self._set_accepting(False)
            return self.accept_paused_until - now
        if self.cfg.workers <= 1 or self._load(now) == 0:
            self._set_accepting(True)
            return 1.0
        self._set_accepting(False)
        if now >= self.next_busy_accept:
            self.next_busy_accept = now + BALANCE_WAIT
            for listener in self.sockets:
                self._accept(listener)
        return self.next_busy_accept - now

    def _load(self, now: float) -> int:
        while self.fresh and self.fresh[0][0] <= now:
            self.fresh.popleft()
        arriving = sum(1 for _, conn in self.fresh if conn.state in (State.HANDSHAKE, State.HEAD, State.BODY))
        return self.inflight + arriving

    def _set_accepting(self, accepting: bool) -> None:
        if accepting == self.accepting:
            return
        for listener in self.sockets:
            if accepting:
                self.selector.register(listener, selectors.EVENT_READ, lambda lst=listener: self._accept(lst))
            else:
                self.selector.unregister(listener)
        self.accepting = accepting

    def _accept(self, listener) -> None:
        """Accept one connection (the next waits for _admit's verdict on this one)."""
        while True:
            try:
                client, addr = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.log.warning("accept: %s; not accepting for %s s", exc, EMFILE_PAUSE)
                    self.accept_paused_until = time.monotonic() + EMFILE_PAUSE
                    return
                raise
            util.close_on_exec(client)
            client.setblocking(False)
            conn = Conn(client, addr, listener.getsockname(), self.limits)
            held = self.per_client.get(conn.ip, 0)
            if held >= self.limits.max_connections_per_client:
                client.close()
                self._log_refusal("connection from %s closed: it holds %d connections of this worker "
                                  "(max_connections_per_client)", conn.ip, held)
                continue  # refused at once: it does not count as this process's work
            break
        now = time.monotonic()
        self.per_client[conn.ip] = held + 1
        self.conns.add(conn)
        self.fresh.append((now + FRESH_WINDOW, conn))
        self._set_deadline(conn, now + self.limits.header_timeout)
        if self.ssl_context is None:
            self._read(conn)  # the request often arrives with the connection
            return
        try:
            conn.sock = self.ssl_context.wrap_socket(client, server_side=True, do_handshake_on_connect=False,
                                                     suppress_ragged_eofs=True)
        except OSError as exc:
            self.log.debug("TLS wrap failed for %s: %s", conn.ip, exc)
            self._close(conn)
            return
        conn.state = State.HANDSHAKE
        self._handshake(conn)

    # -- the loop's side of a connection ----------------------------------------------------------

    def _on_ready(self, conn: Conn) -> None:
        if conn.state is State.HANDSHAKE:
            self._handshake(conn)
        elif conn.state in READING:
            self._read(conn)
        elif conn.state is State.CLOSING:
            self._flush(conn)
        elif conn.state is State.LINGER:
            self._drain(conn)

    def _handshake(self, conn: Conn) -> None:
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want(conn, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._want(conn, selectors.EVENT_WRITE)
            return
        except OSError as exc:  # ssl.SSLError included: no or a wrong client certificate, not TLS ...
            self.log.debug("TLS handshake with %s failed: %s", conn.ip, exc)
            self._close(conn)
            return
        conn.state = State.HEAD  # the deadline stays: header_timeout counts from accept
        self._read(conn)  # the request may have come with the client's last handshake flight

    def _read(self, conn: Conn) -> None:
        """Read what the socket has, framing after every read: a refusal goes out as soon as the
        bytes call for it, and nothing past a complete request is read until it is answered."""
        while True:
            try:
                data = conn.sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                self._want(conn, selectors.EVENT_READ)
                return
            except OSError:
                self._close(conn)
                return
            if not data:
                self._close(conn)  # the client left before finishing a request (or between two)
                return
            if conn.state is State.IDLE:
                conn.state = State.HEAD
                self._set_deadline(conn, time.monotonic() + self.limits.header_timeout)
            conn.buf += data
            if self._frame(conn):
                return

    def _frame(self, conn: Conn) -> bool:
        """Act on what the buffer holds; whether the connection has left the reading states."""
        result = conn.framer.scan(conn.buf)
        if isinstance(result, Framed):
            self._dispatch(conn, result)
            return True
        if isinstance(result, Refused):
            self._refuse(conn, result.status, result.reason)
            return True
        framer = conn.framer
        if framer.head_complete and conn.state is State.HEAD:
            conn.state = State.BODY
            self._set_deadline(conn, time.monotonic() + self.limits.body_timeout)
            if framer.expect_continue and framer.http11 and len(conn.buf) == framer.head_end:
                self._send_continue(conn)
        return conn.state is State.CLOSED

    def _send_continue(self, conn: Conn) -> None:
        """Ask for the body (RFC 9110 section 10.1.1). Best effort: a client that hears nothing sends
        it anyway after a while, and the body deadline holds either way."""
        try:
            if conn.sock.send(CONTINUE) != len(CONTINUE):
                self._close(conn)  # half an interim response would corrupt the answer; never seen
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except OSError:
            self._close(conn)

    def _dispatch(self, conn: Conn, framed: Framed) -> None:
        raw = bytes(conn.buf[:framed.length])
        del conn.buf[:framed.length]
        conn.framer.reset()
        conn.state = State.APP
        conn.deadline = math.inf
        self._want(conn, 0)
        conn.sock.settimeout(self.limits.write_timeout)  # the thread's socket is blocking, bounded
        self.inflight += 1
        self.pool.submit(self._serve, conn, raw, framed)

    def _on_done(self) -> None:
        try:
            os.read(self.wake_r, 4096)
        except BlockingIOError:
            pass
        while True:
            try:
                conn, keep_alive = self.done.get_nowait()
            except queue.Empty:
                return
            self.inflight -= 1
            if conn.state is not State.APP:
                continue  # closed meanwhile (shutdown)
            try:
                conn.sock.setblocking(False)
            except OSError:
                self._close(conn)
                continue
            if not (keep_alive and self.alive):
                self._linger(conn)
                continue
            now = time.monotonic()
            if conn.buf:  # the client already sent (part of) its next request
                conn.state = State.HEAD
                self._set_deadline(conn, now + self.limits.header_timeout)
            else:
                conn.state = State.IDLE
                self._set_deadline(conn, now + self.limits.keepalive_timeout)
            if conn.buf and self._frame(conn):
                continue  # a whole pipelined request was already here
            if isinstance(conn.sock, ssl.SSLSocket) and conn.sock.pending():
                # Bytes of the next request already decrypted inside the SSL object, where the
                # selector cannot see them: read them now.
                self._read(conn)
            else:
                self._want(conn, selectors.EVENT_READ)

    def _refuse(self, conn: Conn, status: int, reason: str) -> None:
        self._log_refusal("refused a request from %s: %d %s", conn.ip, status, reason)
        conn.out = refusal(status, reason)
        conn.state = State.CLOSING
        self._set_deadline(conn, time.monotonic() + self.limits.linger)
        self._flush(conn)

    def _flush(self, conn: Conn) -> None:
        while conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, ssl.SSLWantWriteError):
                self._want(conn, selectors.EVENT_WRITE)
                return
            except ssl.SSLWantReadError:
                self._want(conn, selectors.EVENT_READ)
                return
            except OSError:
                self._close(conn)
                return
            conn.out = conn.out[sent:]
        self._linger(conn)

    def _linger(self, conn: Conn) -> None:
        """Half-close, then read and drop what the client still sends until it closes: closing with
        unread bytes would make the kernel reset the connection, and the client could lose the
        answer it has not read yet (RFC 9112 section 9.6)."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.state = State.LINGER
        self._set_deadline(conn, time.monotonic() + self.limits.linger)
        self._want(conn, selectors.EVENT_READ)

    def _drain(self, conn: Conn) -> None:
        limit = self.limits.max_header_bytes + 2 * self.limits.max_body_bytes
        while True:
            try:
                data = conn.sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except OSError:
                data = b""
            conn.drained += len(data)
            if not data or conn.drained > limit:
                self._close(conn)
                return

    def _on_deadline(self, conn: Conn) -> None:
        if not self.alive and conn.state in (State.HEAD, State.BODY):
            self._refuse(conn, 503, "the server is stopping")
        elif conn.state is State.HEAD and conn.buf:
            self._refuse(conn, 408, f"request head not complete within {self.limits.header_timeout:g} s")
        elif conn.state is State.BODY:
            self._refuse(conn, 408, f"request body not complete within {self.limits.body_timeout:g} s")
        else:  # HANDSHAKE, IDLE, HEAD with nothing sent, CLOSING, LINGER
            self._close(conn)

    def _close(self, conn: Conn) -> None:
        if conn.state is State.CLOSED:
            return
        self._want(conn, 0)
        try:
            conn.sock.close()
        except OSError:
            pass
        conn.state = State.CLOSED
        conn.buf = bytearray()
        self.conns.discard(conn)
        held = self.per_client.get(conn.ip, 1) - 1
        if held > 0:
            self.per_client[conn.ip] = held
        else:
            self.per_client.pop(conn.ip, None)

    def _want(self, conn: Conn, events: int) -> None:
        if events == conn.events:
            return
        if conn.events == 0:
            self.selector.register(conn.sock, events, conn)
        elif events == 0:
            self.selector.unregister(conn.sock)
        else:
            self.selector.modify(conn.sock, events, conn)
        conn.events = events

    # -- deadlines ------------------------------------------------------------------------------------
    # A heap of (time, seq, conn). A connection whose deadline moves later keeps its earlier entry,
    # which re-arms at the new deadline when it comes due, so the heap holds a few entries per
    # connection however many requests a kept-alive connection serves.

    def _set_deadline(self, conn: Conn, deadline: float) -> None:
        conn.deadline = deadline
        if deadline < conn.armed:
            heapq.heappush(self.timers, (deadline, next(self._timer_seq), conn))
            conn.armed = deadline

    def _expire(self, now: float) -> None:
        while self.timers and self.timers[0][0] <= now:
            due, _, conn = heapq.heappop(self.timers)
            if conn.armed == due:
                conn.armed = math.inf
            if conn.state in (State.APP, State.CLOSED):
                continue
            if conn.deadline <= now:
                self._on_deadline(conn)
            elif conn.deadline < conn.armed:
                heapq.heappush(self.timers, (conn.deadline, next(self._timer_seq), conn))
                conn.armed = conn.deadline

    def _log_refusal(self, message: str, *args) -> None:
        """At most one line a second: under attack the log must not become the next bottleneck."""
        now = time.monotonic()
        if now - self._refusals_logged < 1.0:
            self._refusals_unlogged += 1
            return
        if self._refusals_unlogged:
            message += " (and %d more refusals not logged)"
            args = (*args, self._refusals_unlogged)
        self.log.warning(message, *args)
        self._refusals_logged, self._refusals_unlogged = now, 0

    # -- an application thread's side -----------------------------------------------------------------

    def _serve(self, conn: Conn, raw: bytes, framed: Framed) -> None:
        keep_alive = False
        try:
            keep_alive = self._handle(conn, raw, framed)
        except BaseException:  # noqa: BLE001 - the connection must go back to the loop whatever happened
            self.log.exception("Error serving a request")
        finally:
            self.done.put((conn, keep_alive))
            self._wake()

    def _handle(self, conn: Conn, raw: bytes, framed: Framed) -> bool:
        writer = DeadlineWriter(conn.sock, self.limits.write_timeout)
        req = None
        try:
            parser = http.get_parser(self.cfg, [raw], conn.addr)  # a list: gunicorn reads it from memory
            req = next(parser)
            body = req.body.read()
            if parser.unreader.read() or (framed.content_length is not None and len(body) != framed.content_length):
                # gunicorn and the framer disagree about where the request ends: never guess.
                raise http.errors.InvalidHeader("request framing")
            return self._respond(conn, req, body, framed, writer)
        except (http.errors.NoMoreData, StopIteration) as exc:
            self.log.debug("Closing connection: %r", exc)
        except (ssl.SSLError, OSError) as exc:  # the client left, or did not read within write_timeout
            self.log.debug("Socket error writing to %s: %s", conn.ip, exc)
        except Exception as exc:  # a request gunicorn's parser refuses: its status (400, 414, 431, 501 ...)
            self.handle_error(req, writer, conn.addr, exc)
        return False

    def _respond(self, conn: Conn, req, body: bytes, framed: Framed, writer: DeadlineWriter) -> bool:
        """Run the WSGI application on a parsed request, as gunicorn's sync worker does; whether the
        connection may serve another request."""
        environ: dict = {}
        resp = None
        try:
            self.cfg.pre_request(self, req)
            started = datetime.now()
            req._expected_100_continue = False  # the loop answered it; the whole body is here anyway
            resp, environ = wsgi.create(req, writer, conn.addr, conn.server, self.cfg)
            environ["gunicorn.socket"] = conn.sock  # esx.server.peer_certificate: the TLS client certificate
            environ["wsgi.input"] = io.BytesIO(body)
            if framed.chunked:
                environ["CONTENT_LENGTH"] = str(len(body))  # de-chunked here, as waitress does
            environ["wsgi.multithread"] = True
            self.nr += 1
            if self.nr >= self.max_requests and self.alive:
                self.log.info("Autorestarting worker after current request.")
                self.alive = False
                self._wake()
            if not self.alive or self.limits.keepalive_timeout <= 0:
                resp.force_close()
            respiter = self.wsgi(environ, resp.start_response)
            try:
                for item in respiter:
                    resp.write(item)
                resp.close()
            finally:
                self.log.access(resp, req, environ, datetime.now() - started)
                if hasattr(respiter, "close"):
                    respiter.close()
            return not resp.should_close()
        except OSError:
            raise  # the client's side: nothing more to say on this connection
        except Exception:
            if resp is not None and resp.headers_sent:
                self.log.exception("Error handling request")  # too late for an error response
                return False
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")


def _default_limits() -> Limits:
    from esx.gunicorn_app import serving_limits

    return serving_limits()


def refusal(status: int, reason: str) -> bytes:
    """A complete HTTP response refusing a request: a SOAP 1.2 Sender fault, then the connection closes."""
    from esx.binding.ns import SOAP12_CONTENT_TYPE
    from esx.binding.soap import fault_bytes  # the one home of a bare SOAP 1.2 fault

    body = fault_bytes("env:Sender", reason)
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            f"Content-Type: {SOAP12_CONTENT_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n")
    return head.encode("latin-1") + body
