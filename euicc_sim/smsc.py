"""Loopback SMSC: a small SMPP 3.4 server that stands in for the mobile network in tests and the embedded default.

Theory of operation
-------------------
ESMEs (the SM-SR workers) connect and bind; ``bind_transceiver``, ``bind_transmitter`` and ``bind_receiver`` are
accepted when system_id and password match (else ESME_RINVSYSID / ESME_RINVPASWD, header-only response).

Several SM-SRs share one SMSC, as two SM-SRs reach one device through one operator's SMSC (SM-SR change, ``esx init
--peer-of``). They bind with the same system_id and password (the SMSC's one account; this is a loopback stand-in,
not an SMSC with per-customer accounts). What tells them apart is their **SMS address**: an ESME names it as the
``address_range`` of its bind (SMPP 3.4 §4.1: the ESME address served by the session), a single address (digits,
an optional leading '+' ignored; no regular expression). ``esx worker`` binds with its ``source_addr`` (esx.json's
``ota`` object; 882001 for the first instance, 882003 for its first peer), the address its ``submit_sm`` carry.

* Mobile-terminated: ``submit_sm`` is answered at once with ``submit_sm_resp`` and a fresh message_id, then the
  :class:`ShortMessage` goes on a queue that one worker thread drains into ``on_submit`` (the simulated eUICCs).
  ``on_submit`` therefore never runs on a socket-reading thread, and may call :meth:`LoopbackSmsc.deliver`.
* Mobile-originated (PoR, notifications): :meth:`LoopbackSmsc.deliver` stores the message. The delivery thread sends
  each stored message as ``deliver_sm`` to a receiver bound for its **destination_addr** (the card answers to the
  originating address of the SMS it got, and sends notifications to the SM-SR address it holds, 3A07), round-robin
  when several sessions are bound for that address (several workers of one SM-SR). A receiver bound with an empty
  address_range takes the messages for which no receiver is bound with their address (one SM-SR alone, or an ESME
  that does not say its address). It keeps the message in flight until that ESME answers ``deliver_sm_resp``:
  ESME_ROK removes it; an error status (or ``generic_nack``) puts it back for another try after ``retry_interval``;
  a closed connection or no answer within ``RESPONSE_TIMEOUT`` puts it back at once. A message with no receiver for
  it waits, in order, until one binds; the messages for other addresses go on meanwhile. So delivery is
  at-least-once, and nothing is lost while an SM-SR is away (as long as this process lives).
* ``enquire_link`` -> ``enquire_link_resp``; ``unbind`` -> ``unbind_resp`` and close; any other request ->
  ``generic_nack`` ESME_RINVCMDID.

Threads: one accept thread, one reader per connection, one delivery thread, one ``on_submit`` worker. Writes to a
connection are serialised by a per-connection lock; the store and the sessions are guarded by one condition
variable. :meth:`stop` wakes and joins every thread.

Wire codec: the PDU classes of smpplib, through the helpers in :mod:`ota.smpp` that the SM-SR's ESME uses from the
other end. This module only frames PDUs (command_length) and reads the sequence number of a PDU smpplib cannot
parse, to nack it. With ``pdu_log``, every PDU received or sent is appended as one JSON line
``{"dir": "in"|"out", "command": ..., "sequence": ..., "hex": ...}``, flushed at once.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from smpplib import command

from ota.smpp import (
    ESME_RALYBND,
    ESME_RINVBNDSTS,
    ESME_RINVCMDID,
    ESME_RINVPASWD,
    ESME_RINVSYSID,
    ESME_ROK,
    MAX_USER_DATA,
    SequenceGenerator,
    ShortMessage,
    field_text,
    generic_nack,
    message_from_pdu,
    message_pdu,
    parse_pdu,
    response_pdu,
)

log = logging.getLogger(__name__)

SMSC_SYSTEM_ID = "esx-smsc"
SMPP_VERSION_34 = 0x34
MAX_PDU_LENGTH = 64 * 1024  # far above any SMPP 3.4 PDU; a larger command_length means a broken peer
RESPONSE_TIMEOUT = 10.0  # seconds a deliver_sm may stay unanswered before it is sent again

_RECEIVER_BINDS = frozenset({"bind_receiver", "bind_transceiver"})
_TRANSMITTER_BINDS = frozenset({"bind_transmitter", "bind_transceiver"})


@dataclass
class _Stored:
    """A mobile-originated message waiting for (or in) delivery."""

    message: ShortMessage
    not_before: float = 0.0  # monotonic time before which it is not retried
    sent_at: float = 0.0


class _Session:
    """One ESME connection."""

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        self.send_lock = threading.Lock()
        self.bind: str | None = None  # the bind command once bound; guarded by LoopbackSmsc._cond
        self.address: str | None = None  # the bind's address_range (sms_address); None: any address (module doc)
        self.sequences = SequenceGenerator()
        self.inflight: dict[int, _Stored] = {}  # deliver_sm sequence -> message; guarded by LoopbackSmsc._cond
        self.thread: threading.Thread | None = None

    def shutdown(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class LoopbackSmsc:
    """SMPP 3.4 server on ``host:port`` (``port=0`` picks a free one); see the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, system_id: str = "esx", password: str = "esx",
                 on_submit: Callable[[ShortMessage], None] | None = None, pdu_log: Path | None = None,
                 retry_interval: float = 0.5) -> None:
        self._host = host
        self._port = port
        self._system_id = system_id
        self._password = password
        self._on_submit = on_submit
        self._pdu_log_path = pdu_log
        self._retry_interval = retry_interval
        self._cond = threading.Condition()
        self._store: deque[_Stored] = deque()
        self._sessions: list[_Session] = []
        self._round_robin = 0
        self._message_ids = itertools.count(1)
        self._submitted: queue.Queue[ShortMessage | None] = queue.Queue()
        self._log_lock = threading.Lock()
        self._log_file: IO[str] | None = None
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._session_threads: list[threading.Thread] = []

    # -- lifecycle

    def start(self) -> None:
        if self._listener is not None:
            raise RuntimeError("LoopbackSmsc already started")
        self._stopping.clear()
        if self._pdu_log_path is not None:
            self._log_file = open(self._pdu_log_path, "a", encoding="ascii")
        self._listener = socket.create_server((self._host, self._port))  # SO_REUSEADDR: restart on the same port
        self._port = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._threads = [
            threading.Thread(target=self._accept_loop, name="smsc-accept", daemon=True),
            threading.Thread(target=self._delivery_loop, name="smsc-deliver", daemon=True),
            threading.Thread(target=self._submit_worker, name="smsc-on-submit", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        log.info("loopback SMSC listening on %s:%d", self._host, self._port)

    def stop(self) -> None:
        """Close every connection and join every thread. Undelivered messages stay stored for a later start()."""
        if self._listener is None:
            return
        self._stopping.set()
        assert self._wake_w is not None
        self._wake_w.send(b"\0")
        self._threads[0].join()  # no new sessions after this
        with self._cond:
            sessions = list(self._sessions)
            self._cond.notify_all()
        for session in sessions:
            session.shutdown()
        for thread in self._session_threads:
            thread.join()
        self._submitted.put(None)
        for thread in self._threads[1:]:
            thread.join()
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._listener = self._wake_r = self._wake_w = None
        self._threads = []
        self._session_threads = []
        with self._log_lock:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    @property
    def port(self) -> int:
        return self._port

    # -- mobile-originated

    def deliver(self, message: ShortMessage) -> None:
        """Store ``message`` for delivery to a bound ESME as ``deliver_sm`` (kept until answered ESME_ROK)."""
        if len(message.short_message) > MAX_USER_DATA:
            raise ValueError(f"user data is {len(message.short_message)} octets; one SMS holds {MAX_USER_DATA}")
        with self._cond:
            self._store.append(_Stored(message))
            self._cond.notify_all()

    def _delivery_loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopping.is_set():
                        return
                    now = time.monotonic()
                    self._requeue_unanswered(now)
                    picked = self._pick(now)
                    if picked is not None:
                        break
                    self._cond.wait(self._next_wakeup(now))
            session, pdu = picked
            self._send(session, pdu)

    def _requeue_unanswered(self, now: float) -> None:
        for session in self._sessions:
            for sequence, stored in list(session.inflight.items()):
                if now - stored.sent_at >= RESPONSE_TIMEOUT:
                    log.warning("no deliver_sm_resp from %s for sequence %d; delivering again", session.peer,
                                sequence)
                    del session.inflight[sequence]
                    stored.not_before = 0.0
                    self._store.appendleft(stored)

    def _receivers_for(self, destination: str) -> list[_Session]:
        """Under _cond: the receivers bound for ``destination``, else those bound for any address (module doc)."""
        address = sms_address(destination)
        receivers = [s for s in self._sessions if s.bind in _RECEIVER_BINDS and s.address == address]
        return receivers or [s for s in self._sessions if s.bind in _RECEIVER_BINDS and s.address is None]

    def _pick(self, now: float) -> tuple[_Session, command.Command] | None:
        """Under _cond: the next ready message that has a receiver, and the receiver it goes to, registered in
        flight."""
        for stored in self._store:
            if stored.not_before > now:
                continue
            receivers = self._receivers_for(stored.message.destination_addr)
            if receivers:
                break
        else:
            return None
        self._store.remove(stored)
        session = receivers[self._round_robin % len(receivers)]
        self._round_robin += 1
        pdu = message_pdu("deliver_sm", stored.message, session.sequences)
        stored.sent_at = now
        session.inflight[pdu.sequence] = stored  # before sending: the answer may come back at once
        return session, pdu

    def _next_wakeup(self, now: float) -> float | None:
        """Under _cond: seconds until a stored message with a receiver becomes ready or an in-flight one times out
        (a bind wakes the loop for the others)."""
        times = [s.sent_at + RESPONSE_TIMEOUT for session in self._sessions for s in session.inflight.values()]
        times += [s.not_before for s in self._store if self._receivers_for(s.message.destination_addr)]
        return max(0.0, min(times) - now) if times else None

    def bound_addresses(self) -> list[str | None]:
        """The SMS address of every bound receiver (None: bound for any address), in bind order: what ESMEs are
        here for whom (tests, diagnostics)."""
        with self._cond:
            return [s.address for s in self._sessions if s.bind in _RECEIVER_BINDS]

    # -- connections

    def _accept_loop(self) -> None:
        assert self._listener is not None and self._wake_r is not None
        while True:
            readable, _, _ = select.select([self._listener, self._wake_r], [], [])
            if self._stopping.is_set():
                return
            if self._listener not in readable:
                continue
            try:
                sock, addr = self._listener.accept()
            except OSError:
                continue
            session = _Session(sock, f"{addr[0]}:{addr[1]}")
            thread = threading.Thread(target=self._serve_session, args=(session,), name=f"smsc-{session.peer}",
                                      daemon=True)
            session.thread = thread
            with self._cond:
                self._sessions.append(session)
            self._session_threads = [t for t in self._session_threads if t.is_alive()] + [thread]
            thread.start()

    def _serve_session(self, session: _Session) -> None:
        try:
            while True:
                frame = self._read_frame(session.sock)
                if frame is None or not self._handle(session, frame):
                    break
        except OSError as exc:
            log.debug("connection %s: %s", session.peer, exc)
        finally:
            self._close_session(session)

    @staticmethod
    def _read_frame(sock: socket.socket) -> bytes | None:
        """One whole PDU, or None at end of stream (SMPP 3.4 §3.2: command_length counts the whole PDU)."""
        head = _recv_exact(sock, 4)
        if head is None:
            return None
        (length,) = struct.unpack(">L", head)
        if not 16 <= length <= MAX_PDU_LENGTH:
            log.warning("command_length %d: closing the connection", length)
            return None
        rest = _recv_exact(sock, length - 4)
        return None if rest is None else head + rest

    def _close_session(self, session: _Session) -> None:
        with self._cond:
            if session in self._sessions:
                self._sessions.remove(session)
            for stored in reversed(list(session.inflight.values())):
                stored.not_before = 0.0
                self._store.appendleft(stored)
            session.inflight.clear()
            self._cond.notify_all()
        session.sock.close()

    def _send(self, session: _Session, pdu: command.Command) -> None:
        data = pdu.generate()
        self._log("out", pdu.command, pdu.sequence, data)
        with session.send_lock:
            try:
                session.sock.sendall(data)
            except OSError as exc:
                log.debug("send to %s failed: %s", session.peer, exc)
                session.shutdown()  # the reader then closes the session and puts in-flight messages back

    # -- PDU handling

    def _handle(self, session: _Session, frame: bytes) -> bool:
        """Answer one PDU; False when the connection is to close."""
        try:
            pdu = parse_pdu(frame)
        except Exception as exc:  # unknown command_id or a body smpplib cannot parse
            command_id, sequence = struct.unpack(">L", frame[4:8])[0], struct.unpack(">L", frame[12:16])[0]
            self._log("in", f"0x{command_id:08x}", sequence, frame)
            log.warning("%s: cannot handle PDU 0x%08x: %s", session.peer, command_id, exc)
            self._send(session, generic_nack(sequence, ESME_RINVCMDID))
            return True
        self._log("in", pdu.command, pdu.sequence, frame)
        name = pdu.command
        if name in ("bind_transmitter", "bind_receiver", "bind_transceiver"):
            self._bind(session, pdu)
        elif name == "submit_sm":
            self._submit(session, pdu)
        elif name in ("deliver_sm_resp", "generic_nack"):
            self._answered(session, pdu)
        elif name == "enquire_link":
            self._send(session, response_pdu(pdu))
        elif name == "unbind":
            self._send(session, response_pdu(pdu))
            return False
        elif pdu.is_request():
            self._send(session, generic_nack(pdu.sequence, ESME_RINVCMDID))
        return True

    def _bind(self, session: _Session, pdu: command.Command) -> None:
        if session.bind is not None:
            status = ESME_RALYBND
        elif field_text(pdu.system_id) != self._system_id:
            status = ESME_RINVSYSID
        elif field_text(pdu.password) != self._password:
            status = ESME_RINVPASWD
        else:
            status = ESME_ROK
        self._send(session, response_pdu(pdu, status, system_id=SMSC_SYSTEM_ID,
                                         sc_interface_version=SMPP_VERSION_34))
        if status == ESME_ROK:
            # Only after the bind response is on the wire: smpplib's bind reads the next PDU as its response.
            with self._cond:
                session.bind = pdu.command
                session.address = sms_address(field_text(pdu.address_range)) or None
                self._cond.notify_all()
        else:
            log.warning("%s: %s refused, status 0x%08X", session.peer, pdu.command, status)

    def _submit(self, session: _Session, pdu: command.Command) -> None:
        if session.bind not in _TRANSMITTER_BINDS:
            self._send(session, response_pdu(pdu, ESME_RINVBNDSTS))
            return
        message = message_from_pdu(pdu)
        with self._cond:
            message_id = f"{next(self._message_ids):08X}"
        self._send(session, response_pdu(pdu, message_id=message_id))
        if self._on_submit is not None:
            self._submitted.put(message)

    def _answered(self, session: _Session, pdu: command.Command) -> None:
        with self._cond:
            stored = session.inflight.pop(pdu.sequence, None)
            if stored is None or pdu.status == ESME_ROK:
                return
            stored.not_before = time.monotonic() + self._retry_interval
            self._store.appendleft(stored)
            self._cond.notify_all()
        log.info("%s answered deliver_sm with status 0x%08X; retrying in %.1f s", session.peer, pdu.status,
                 self._retry_interval)

    def _submit_worker(self) -> None:
        while True:
            message = self._submitted.get()
            if message is None:
                return
            try:
                assert self._on_submit is not None
                self._on_submit(message)
            except Exception:
                log.exception("on_submit failed for an SMS to %s", message.destination_addr)

    # -- PDU log

    def _log(self, direction: str, command_name: str, sequence: int, frame: bytes) -> None:
        with self._log_lock:
            if self._log_file is None:
                return
            line = {"dir": direction, "command": command_name, "sequence": sequence, "hex": frame.hex()}
            self._log_file.write(json.dumps(line) + "\n")
            self._log_file.flush()


def sms_address(address: str) -> str:
    """An SMS address as this SMSC compares them: without blanks and without the '+' of an international number."""
    return address.strip().lstrip("+")


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    parts = []
    while size:
        part = sock.recv(size)
        if not part:
            return None
        parts.append(part)
        size -= len(part)
    return b"".join(parts)
