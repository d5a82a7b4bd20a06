"""SMPP 3.4 transport for OTA SMS: the SM-SR's ESME (I/O: a socket and its threads; the codec is ota.smpp).

Theory of operation
-------------------
The SM-SR sends each OTA secured packet (ETSI TS 102 225 command packet, already split into SMS by the OTA layer)
as one ``submit_sm``: binary user data with a user data header (esm_class 0x40 = UDHI), TP-PID 0x7F (SIM data
download) and TP-DCS 0xF6 (8-bit, class 2). Proofs of receipt and mobile-originated notifications come back as
``deliver_sm``. The SMSC is an SMPP 3.4 server; we bind to it once as a transceiver.

Wire codec: smpplib's own PDU classes (``smpplib.smpp.make_pdu`` / ``parse_pdu``) on both ends. The ESME uses
``smpplib.client.Client`` for connect, bind, ``send_pdu`` and ``read_pdu``; the loopback SMSC in
``euicc_sim.smsc`` builds and parses its PDUs with the same classes through the helpers below, so there is one
codec per wire format, used from opposite ends.

:class:`Esme` threads (``Client.listen``/``read_once`` are not used: they are not thread-safe, raise on an error
PDU, leave an SMSC ``unbind`` unanswered and can lose a half-read PDU on a socket timeout):

* one **reader thread** owns the connection: connect, ``bind_transceiver``, then a ``select`` loop that reads every
  PDU and dispatches it. ``deliver_sm`` calls ``on_deliver`` right there and answers ``deliver_sm_resp`` only after
  it returns (ESME_ROK) or raises (ESME_RX_T_APPN, so the SMSC keeps the message and redelivers it). With
  ``on_deliver_many``, the PDUs already waiting on the socket are read together (at most :data:`MAX_BATCH`) and their
  deliver_sm handed over in one call (the worker stores them in one transaction), then each is answered: an
  acknowledged SMS is still always stored first. Every other PDU is dispatched as it is read; an ``unbind`` first
  answers the deliver_sm read before it.
  ``submit_sm_resp`` / ``generic_nack`` complete the submitter's future found by sequence number. After
  ``enquire_link_interval`` seconds without traffic it sends ``enquire_link``; no answer within
  ``response_timeout`` counts as a dead link. On any connection failure every pending submit fails with
  :class:`SmppError`, the reader waits ``reconnect_delay`` and starts again, until :meth:`Esme.stop`.
* **submitters** (any thread): :meth:`Esme.submit` waits for its token-bucket slot, registers a future under a fresh
  sequence number, writes the PDU under the send lock (smpplib's ``send_pdu`` is not thread-safe, see
  python-smpplib issue #187) and blocks on the future.

``on_deliver`` runs in the reader thread, so it must not call :meth:`Esme.submit` (the answer would never be read).
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from smpplib import client as smpp_client
from smpplib import command, consts, exceptions, smpp

from ota.smpp import (
    ADDR_NPI,
    ADDR_TON,
    ESM_CLASS_UDHI,
    ESME_RINVCMDID,
    ESME_ROK,
    ESME_RX_T_APPN,
    SequenceGenerator,
    ShortMessage,
    check_user_data,
    field_text,
    generic_nack,
    message_from_pdu,
    message_pdu,
    response_pdu,
)

log = logging.getLogger(__name__)

MAX_BATCH = 64  # PDUs read together from the socket when they are already there (on_deliver_many)

@dataclass(frozen=True)
class SmppConfig:
    """Where and how the ESME binds. ``source_addr`` is the SM-SR's own SMS address."""

    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = "esx"
    password: str = "esx"
    system_type: str = ""
    source_addr: str = "882001"
    submit_rate: float = 0.0  # max submit_sm per second, 0 = unlimited (token bucket, burst 1)
    enquire_link_interval: float = 30.0
    reconnect_delay: float = 1.0
    response_timeout: float = 10.0


class SmppError(Exception):
    """A submit failed: not bound, connection lost, no answer in time, or the SMSC answered an error status.

    ``command_status`` is the SMPP status when the peer answered one (SMPP 3.4 §5.1.3), else None.
    """

    def __init__(self, message: str, command_status: int | None = None) -> None:
        super().__init__(message)
        self.command_status = command_status



class _LinkClosed(Exception):
    """The reader ends the current connection (unbind either way, dead link)."""


class Esme:
    """The SM-SR's SMPP transceiver; see the module docstring for the threading model."""

    def __init__(self, config: SmppConfig, on_deliver: Callable[[ShortMessage], None],
                 on_deliver_many: Callable[[list[ShortMessage]], None] | None = None) -> None:
        self._config = config
        self._on_deliver = on_deliver
        self._on_deliver_many = on_deliver_many
        self._sequences = SequenceGenerator()
        self._send_lock = threading.Lock()  # one PDU on the wire at a time; guards _client
        self._client: smpp_client.Client | None = None
        self._pending_lock = threading.Lock()
        self._pending: dict[int, Future[command.Command]] = {}
        self._bound = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._rate_lock = threading.Lock()
        self._next_submit_at = 0.0

    # -- lifecycle

    def start(self) -> None:
        """Start the reader thread, which connects and binds (and rebinds after any loss) in the background."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("Esme already started")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="esx-esme-reader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Unbind (when bound), close the connection and join the reader thread."""
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        if self._bound.is_set():
            try:
                self._send(smpp.make_pdu("unbind", client=self._sequences))
                thread.join(timeout=min(1.0, self._config.response_timeout))  # reader closes on unbind_resp
            except (SmppError, exceptions.ConnectionError, exceptions.PDUError):
                pass
        self._interrupt()
        thread.join()
        self._thread = None

    @property
    def bound(self) -> bool:
        return self._bound.is_set()

    def wait_bound(self, timeout: float) -> bool:
        """True once bound (possibly already), False if not bound within ``timeout`` seconds."""
        return self._bound.wait(timeout)

    # -- submitting

    def submit(self, destination_addr: str, user_data: bytes, *, udhi: bool = True, protocol_id: int = 0x7F,
               data_coding: int = 0xF6) -> str:
        """Send one ``submit_sm`` and return the SMSC's message_id once ``submit_sm_resp`` arrives.

        Waits for the rate limit first. Raises :class:`SmppError` when not bound, on connection loss or timeout,
        or with ``command_status`` when the SMSC answers an error; ``ValueError`` for more than one SMS of data.
        """
        message = ShortMessage(self._config.source_addr, destination_addr, bytes(user_data),
                               esm_class=ESM_CLASS_UDHI if udhi else 0, protocol_id=protocol_id,
                               data_coding=data_coding)
        check_user_data(message)
        if not self._bound.is_set():
            raise SmppError("not bound to the SMSC")
        self._throttle()
        pdu = message_pdu("submit_sm", message, self._sequences)
        sequence = pdu.sequence
        future: Future[command.Command] = Future()
        with self._pending_lock:
            self._pending[sequence] = future  # before sending: the answer may come back at once
        try:
            self._send(pdu)
            resp = future.result(timeout=self._config.response_timeout)
        except FutureTimeout:
            raise SmppError(f"no submit_sm_resp within {self._config.response_timeout} s") from None
        except (exceptions.ConnectionError, exceptions.PDUError, OSError) as exc:
            raise SmppError(f"submit_sm not sent: {exc}") from exc
        finally:
            with self._pending_lock:
                self._pending.pop(sequence, None)
        if resp.status != ESME_ROK:
            raise SmppError(f"{resp.command} status 0x{resp.status:08X}: {resp.get_status_desc()}", resp.status)
        return field_text(resp.message_id)

    def _throttle(self) -> None:
        """Token bucket of depth 1: submits are spaced at least 1/submit_rate seconds apart, across threads."""
        rate = self._config.submit_rate
        if rate <= 0:
            return
        with self._rate_lock:
            now = time.monotonic()
            slot = max(now, self._next_submit_at)
            self._next_submit_at = slot + 1.0 / rate
        if slot > now and self._stopping.wait(slot - now):
            raise SmppError("ESME stopping")

    def _send(self, pdu: command.Command) -> None:
        with self._send_lock:
            if self._client is None:
                raise SmppError("not connected to the SMSC")
            self._client.send_pdu(pdu)

    # -- reader thread

    def _run(self) -> None:
        cfg = self._config
        while not self._stopping.is_set():
            try:
                client = self._connect_and_bind()
                log.info("SMPP bound to %s:%s as %s", cfg.host, cfg.port, cfg.system_id)
                self._bound.set()
                self._serve(client)
            except _LinkClosed as exc:
                log.info("SMPP link closed: %s", exc)
            except (SmppError, exceptions.ConnectionError, exceptions.PDUError, OSError) as exc:
                if not self._stopping.is_set():
                    log.warning("SMPP link to %s:%s down: %s", cfg.host, cfg.port, exc or type(exc).__name__)
            except Exception:  # a malformed PDU smpplib could not parse, or a bug: never let the reader die
                log.exception("SMPP reader failed; reconnecting")
            finally:
                self._drop_connection()
            self._stopping.wait(cfg.reconnect_delay)

    def _connect_and_bind(self) -> smpp_client.Client:
        cfg = self._config
        client = smpp_client.Client(cfg.host, cfg.port, timeout=cfg.response_timeout,
                                    sequence_generator=self._sequences, logger_name=f"{__name__}.wire",
                                    allow_unknown_opt_params=True)
        with self._send_lock:
            self._client = client
        client.connect()
        if self._stopping.is_set():
            raise _LinkClosed("stopping")
        # Raises PDUError(text, command_status) when the SMSC refuses, e.g. ESME_RINVPASWD. The address_range is our
        # own SMS address: an SMSC that serves several SM-SRs delivers to us what is addressed to it (euicc_sim.smsc).
        client.bind_transceiver(system_id=cfg.system_id, password=cfg.password, system_type=cfg.system_type,
                                addr_ton=ADDR_TON, addr_npi=ADDR_NPI, address_range=cfg.source_addr)
        return client

    def _serve(self, client: smpp_client.Client) -> None:
        """Read and dispatch PDUs until the link closes (by exception)."""
        cfg = self._config
        sock = client._socket  # smpplib exposes no accessor; needed to select() before a blocking read_pdu
        last_heard = time.monotonic()
        enquire_sent_at: float | None = None
        while True:
            now = time.monotonic()
            if enquire_sent_at is not None:
                if now - enquire_sent_at >= cfg.response_timeout:
                    raise _LinkClosed("no enquire_link_resp")
                wait = enquire_sent_at + cfg.response_timeout - now
            elif now - last_heard >= cfg.enquire_link_interval:
                self._send(smpp.make_pdu("enquire_link", client=self._sequences))
                enquire_sent_at = now
                continue
            else:
                wait = last_heard + cfg.enquire_link_interval - now
            readable, _, _ = select.select([sock], [], [], wait)
            if not readable:
                continue
            if self._on_deliver_many is not None:
                got_any = self._read_batch(client, sock)
            else:
                try:
                    pdu = client.read_pdu()  # ConnectionError on EOF; the rest of a started PDU within the timeout
                except exceptions.UnknownCommandError as exc:  # framing intact, but no sequence to nack
                    log.warning("SMPP: ignored PDU: %s", exc)
                    continue
                self._dispatch(pdu)
                got_any = True
            if got_any:
                last_heard = time.monotonic()
                enquire_sent_at = None

    def _read_batch(self, client: smpp_client.Client, sock) -> bool:
        """Read the PDUs already waiting (at least one, at most MAX_BATCH); dispatch them, the deliver_sm together
        (on_deliver_many, then each deliver_sm_resp). A read that fails (the link is lost) leaves the deliver_sm read
        before it unstored and unanswered: the SMSC delivers them again. Whether any PDU was read."""
        delivers: list[command.Command] = []
        got_any = False
        for n in range(MAX_BATCH):
            if n and not select.select([sock], [], [], 0)[0]:
                break
            try:
                pdu = client.read_pdu()  # ConnectionError on EOF; the rest of a started PDU within the timeout
            except exceptions.UnknownCommandError as exc:  # framing intact, but no sequence to nack
                log.warning("SMPP: ignored PDU: %s", exc)
                continue
            got_any = True
            if pdu.command == "deliver_sm":
                delivers.append(pdu)
                continue
            if pdu.command in ("unbind", "unbind_resp"):  # ends the link: answer what came before it first
                self._deliver_batch(delivers)
                delivers = []
            self._dispatch(pdu)
        self._deliver_batch(delivers)
        return got_any

    def _deliver_batch(self, pdus: list[command.Command]) -> None:
        """Hand deliver_sm to on_deliver_many in one call, then answer each (ESME_RX_T_APPN to all when it raised)."""
        if not pdus:
            return
        try:
            self._on_deliver_many([message_from_pdu(pdu) for pdu in pdus])
            status = ESME_ROK
        except Exception:
            log.exception("on_deliver_many failed; answering ESME_RX_T_APPN so the SMSC redelivers")
            status = ESME_RX_T_APPN
        for pdu in pdus:
            self._send(response_pdu(pdu, status))

    def _dispatch(self, pdu: command.Command) -> None:
        name = pdu.command
        if name == "deliver_sm":
            self._send(response_pdu(pdu, self._deliver(pdu)))
        elif name in ("submit_sm_resp", "generic_nack"):
            with self._pending_lock:
                future = self._pending.get(pdu.sequence)
            if future is not None and not future.done():
                future.set_result(pdu)
            elif name == "generic_nack":
                log.warning("SMPP generic_nack status 0x%08X for sequence %d", pdu.status, pdu.sequence)
        elif name == "enquire_link":
            self._send(response_pdu(pdu))
        elif name == "unbind":
            self._send(response_pdu(pdu))
            raise _LinkClosed("SMSC unbound")
        elif name == "unbind_resp":
            raise _LinkClosed("unbound")
        elif name == "enquire_link_resp":
            pass
        elif pdu.is_request():
            self._send(generic_nack(pdu.sequence, ESME_RINVCMDID))
        else:
            log.warning("SMPP: unexpected %s (sequence %d)", name, pdu.sequence)

    def _deliver(self, pdu: command.Command) -> int:
        """Hand a deliver_sm to on_deliver; the status for deliver_sm_resp."""
        try:
            self._on_deliver(message_from_pdu(pdu))
        except Exception:
            log.exception("on_deliver failed; answering ESME_RX_T_APPN so the SMSC redelivers")
            return ESME_RX_T_APPN
        return ESME_ROK

    def _drop_connection(self) -> None:
        self._bound.clear()
        with self._send_lock:
            client, self._client = self._client, None
        if client is not None:
            client.state = consts.SMPP_CLIENT_STATE_OPEN  # smpplib warns when disconnecting "in the bound state"
            client.disconnect()
        with self._pending_lock:
            pending = list(self._pending.values())
        for future in pending:
            if not future.done():
                future.set_exception(SmppError("connection to the SMSC lost"))

    def _interrupt(self) -> None:
        """Wake the reader out of select()/recv() by shutting the socket down; it then sees EOF."""
        with self._send_lock:
            sock = self._client._socket if self._client is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
