"""The SM-DP's asynchronous functions: ES2-DownloadProfile, and ES2-Enable/Disable/DeleteProfile relayed.

Theory of operation
-------------------
Two step tables run on the one step engine (persistence.engine): :data:`DOWNLOAD_FLOW` and :data:`RELAY_FLOW`,
just below. They are the program: a row's step names the method that runs when it is due (``run``) and the one
that handles what it awaits (``answer``); :class:`Downloads` checks at construction that every method a table names
exists, and dispatches through the table only.

An ES2 request becomes a :class:`~smdp_core.op_models.SmdpOperation` row before the MNO gets its ``202 Accepted``
(:meth:`Downloads.accept`, the engine's ``accept_once``: a replayed MessageID or FunctionCallIdentifier finds the
row and runs nothing again). What the MNO may ask is decided there: the SM-SR it names is known, a download's profile
is reserved in the warehouse, a relayed function's profile is the MNO's (``relay_check`` decides when the SM-SR
could not be asked). Workers (``esx worker --role smdp``) run the due rows with :meth:`Downloads.tick`.

A step either exchanges a synchronous ES3 call (no ``answer``: ES3-GetEIS, ES3-ProfileDownloadCompleted; its
``run`` returns an :class:`Es3Call`) or sends an asynchronous ES3 request (its ``run`` returns an
:class:`Es3Request`), answered ``202`` and later by an ES3 callback to ``/smdp/es3``. An asynchronous step has two
phases:

- ``send``: in the transaction that takes the row, the request's MessageID is fixed and what it carries is built and
  sealed; the request leaves after the commit; one conditional UPDATE then records ``await``. A worker that dies in
  between sends it again with the same MessageID, which the SM-SR recognises as a replay.
- ``await``: :meth:`Downloads.on_callback` runs the step's ``answer`` in the very transaction that receives the
  callback relating to that MessageID (even before the sender recorded ``await``: the callback proves the SM-SR
  took the request), so the next step is due at once; the doorbell tells the workers. A worker only handles an
  answer that never came (at the deadline: EXPIRED) or one whose handler failed (then stored in the row).

No transaction is open while a request is on the wire (the SM-SR may share the database, SQLite's writer lock
included). An SM-SR that cannot be reached is tried again every ``retry`` seconds until the step's deadline; a
refusal at once is handled as if its callback had said so.

A download that fails after CreateISDP was sent (or whose outcome is unknown: EXPIRED) goes through ``cleanup``:
ES3-DeleteISDP, then the profile goes back to stock when the ISD-P is gone (or never existed: 8.2.1/3.9 from the
SM-SR), and the MNO's callback carries the failure of the step that failed, not the cleanup's. Before that, a failure
gives the profile back at once. The SM-SR never sees the profile in clear: SendData carries SCP03t TLVs only (C-ENC +
C-MAC under keys the SM-SR cannot derive).

Secrets (the ephemeral private key, the ISD-P keyset, the SCP03t session) are kept in the row sealed by
:class:`~keys.secretbox.SecretBox`, so a worker on another host can carry on.

The profile package is personalised once per download (ota.saip, from the stock's sealed values) when CreateISDP needs
its size, and kept in the worker's memory for the download step (at most :data:`PACKAGES_KEPT`, dropped when the last
segment is answered or the row ends); never in the database. Personalisation is deterministic, so a worker that does
not hold it (another host, a restart) builds the same bytes again. The IMSI and MSISDN (not secret: they go to the
SM-SR with ProfileDownloadCompleted) are kept in the row's progress when the profile is reserved.
"""
from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Protocol

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import bindparam, null, select, update
from sqlalchemy.orm import Session

from keys import ecka, scp03t
from keys.scp03 import StaticKeys
from keys.secretbox import SecretBox
from keys.tlv import encode_tlv
from ota import es8, saip
from persistence.db import Database
from persistence.engine import (
    ACTIVE,
    Doorbell,
    DueScan,
    Flow,
    Leaser,
    Silent,
    Step,
    accept_once,
    due_now,
    finish_once,
    record_result,
    replayed,
    reuses_call_id,
    run_leased,
    utc,
    validity_until,
    wait,
)
from persistence.prepared import Prepared, dbapi
from sgp02 import codes
from sgp02.codes import FunctionFailed, PeerUnreachable, Status, StatusCode
from sgp02.ecasd import verified_ecasd_key
from sgp02.eis import Eis, SubscriptionAddress

from .op_models import SmdpOperation
from .relay import owned_profile, smsr_named
from .warehouse import Claim, Reserved, Warehouse

log = logging.getLogger(__name__)

DOWNLOAD = "DownloadProfile"
RELAYED = ("EnableProfile", "DisableProfile", "DeleteProfile")
ES3_NAME = {"EnableProfile": "ES3-EnableProfile", "DisableProfile": "ES3-DisableProfile",
            "DeleteProfile": "ES3-DeleteISDP"}

# -- the step tables ------------------------------------------------------------------------------------------------
# name, what crosses ES3 (and ES8 inside ES3-SendData), the method run when due, the one that handles the answer,
# the step that follows on success (None: done). A failure of a download step after CreateISDP goes to cleanup.

DOWNLOAD_FLOW = Flow("ES2-DownloadProfile", [
    Step("reserve", "ES3-GetEIS; ECASD chain CI > EUM > ECASD verified (stock reserved at accept)",
         run="_run_reserve", then="create_isdp"),
    Step("create_isdp", "ES3-CreateISDP (RequiredMemory); answer: the ISD-P AID",
         run="_send_create_isdp", answer="_answer_create_isdp", then="keyset_1"),
    Step("keyset_1", "ES3-SendData: INSTALL [for perso], STORE DATA 3A01 (CERT.DP.ECDSA); answer: '85' RC",
         run="_send_keyset_1", answer="_answer_keyset_1", then="keyset_2"),
    Step("keyset_2", "ES3-SendData: STORE DATA 3A02 {A6 CRT, ePK.DP.ECKA, signature}; answer: DR, receipt",
         run="_send_keyset_2", answer="_answer_keyset_2", then="scp03t_open"),
    Step("scp03t_open", "ES3-SendData: '84' InitializeUpdate; answer: card cryptogram",
         run="_send_scp03t_open", answer="_answer_scp03t_open", then="download"),
    Step("download", "ES3-SendData: '85' (first), '86' segments; again until the last; answer: EUICCResponse",
         run="_send_download", answer="_answer_download", then="completed"),
    Step("completed", "ES3-ProfileDownloadCompleted; then enable, or done when EnableProfile is false",
         run="_run_completed", then="enable"),
    Step("enable", "ES3-EnableProfile",
         run="_send_enable", answer="_answer_enable"),
    Step("cleanup", "ES3-DeleteISDP after a failure; stock released when the ISD-P is gone",
         run="_send_cleanup", answer="_answer_cleanup"),
])

RELAY_FLOW = Flow("ES2-Enable/Disable/DeleteProfile", [
    Step("relay_check", "ES3-GetEIS: the MNO owns the profile (when the SM-SR could not be asked at accept)",
         run="_run_relay_check", then="relay"),
    Step("relay", "ES3-EnableProfile / DisableProfile / DeleteISDP; its callback is the ES2 callback",
         run="_send_relay", answer="_answer_relay"),
])

SEND, AWAIT = "send", "await"

# Personalised packages a worker keeps between CreateISDP and the download step (one per download in flight).
PACKAGES_KEPT = 64

# Subject 8.3 (ISD-P) with reason 6.1 (verification failed) for a key establishment whose receipt or
# card cryptogram does not verify: our choice (sgp02-wire.md 4.4 lists only 8.3/4.2 for ES3.SendData;
# 6.1 names what went wrong). Pinned by tests.
KEY_ESTABLISHMENT_FAILED = StatusCode("8.3", "6.1", "ISD-P key establishment verification failed")


@dataclass(frozen=True)
class Es3Request:
    """What an asynchronous step sends (its ``run`` returns it): answered 202, then by an ES3 callback."""

    operation: str  # "ES3-CreateISDP", "ES3-SendData", ...
    params: dict[str, Any]
    validity: int | None = None  # None: what is left of the request's validity period


@dataclass(frozen=True)
class Es3Call:
    """What a synchronous step exchanges (its ``run`` returns it): ``ask`` runs with no transaction open and may
    raise FunctionFailed; ``then`` records its result in a new one."""

    ask: Callable[["SmsrPort"], Any]
    then: Callable[[Session, SmdpOperation, Any, datetime], None] = field(repr=False)


@dataclass(frozen=True)
class Es2Request:
    function: str  # DOWNLOAD or one of RELAYED
    requester_id: str
    eid: str
    smsr_id: str
    message_id: str | None
    function_call_id: str | None
    reply_to: str | None
    validity_period: int | None
    received_at: datetime
    iccid: str | None = None
    profile_type: str | None = None
    enable: bool = False


class SmsrPort(Protocol):
    """What the SM-DP needs from one SM-SR (over ES3: ``esx.es3.client.Es3SmsrGateway``)."""

    def get_eis(self, eid: str) -> Eis: ...

    def request(self, operation: str, *, message_id: str, validity: int | None, **params) -> None:
        """Send an asynchronous ES3 request (its callback comes to our /smdp/es3); FunctionFailed if refused."""

    def profile_download_completed(self, eid: str, iccid: str, *, profile_type: str | None,
                                   address: SubscriptionAddress | None) -> None: ...


class Es2Sink(Protocol):
    """Where the SM-DP's callbacks and notifications to MNOs go (the esx outbox), inside the caller's session."""

    def callback(self, s: Session, op: SmdpOperation, status: Status, failure: FunctionFailed | None) -> None: ...

    def notification(self, s: Session, change: str, mno_id: str, eid: str, iccid: str, when: datetime) -> None: ...

    def smsr_changed(self, s: Session, mno_id: str, eis: Eis, when: datetime) -> None: ...


@dataclass(frozen=True)
class SmdpIdentity:
    oid: str
    key: ec.EllipticCurvePrivateKey  # SK.DP.ECDSA
    certificate: bytes  # CERT.DP.ECDSA, GP '7F21'
    ci_pem: bytes  # the CI root the ECASD chain must end at


@dataclass(frozen=True)
class Settings:
    segment_size: int = 512  # plaintext bytes of the profile package per '86' segment (njiwa uses 512)
    segments_per_send: int = 4  # '86' TLVs per ES3-SendData (each SendData is one SMS exchange)
    default_validity: float = 3600.0
    max_validity: float = 7 * 86400.0
    callback_grace: float = 120.0  # how long after the expiry a missing ES3 callback is waited for
    retry: float = 5.0  # SM-SR not reachable: try again after
    lease: float = 30.0
    memory_margin: float = 1.25  # RequiredMemory = package size x margin (rounded up to 1 KiB)


@dataclass(frozen=True)
class _Taken:
    """A leased row's step, ready to go over the wire (Downloads._prepare)."""

    step: str
    exchange: Es3Request | Es3Call
    smsr_id: str
    message_id: str | None = None  # an ES3 request's, fixed and committed before it leaves
    validity: int | None = None
    answer_by: datetime | None = None  # when the callback is given up (the step's deadline and the grace)


# The worker's statements, built once (persistence.engine.DueScan, Leaser; persistence.prepared).
_DUE = DueScan(SmdpOperation, SmdpOperation.state == bindparam("active"))
_LEASE = Leaser(SmdpOperation, SmdpOperation.state == bindparam("active"))
_LEASE_ROW = Leaser(SmdpOperation, SmdpOperation.state == bindparam("active"), returning=True)
# The row awaiting a callback (its MessageID), locked on PostgreSQL until the callback's transaction ends.
_AWAITING = select(SmdpOperation).where(SmdpOperation.awaiting_message_id == bindparam("relates_to"),
                                        SmdpOperation.state == bindparam("active")).with_for_update()
_OPS = SmdpOperation.__table__
_SENT = Prepared(update(_OPS).where(
    _OPS.c.id == bindparam("row_id"), _OPS.c.state == bindparam("active"), _OPS.c.phase == bindparam("send"),
    _OPS.c.awaiting_message_id == bindparam("message_id"),
).values(phase=bindparam("await_"), lease_until=null(), next_attempt_at=bindparam("answer_by")))


class Downloads:
    """Named for what it does most; it also runs the relayed ES2 functions (both tables above)."""

    def __init__(self, db: Database, identity: SmdpIdentity, warehouse: Warehouse, box: SecretBox, sink: Es2Sink,
                 smsr_for: Callable[[str], SmsrPort | None], eum_cert_for: Callable[[str], bytes | None],
                 settings: Settings | None = None, new_message_id: Callable[[], str] | None = None,
                 doorbell: Doorbell | None = None) -> None:
        self.db = db
        self.identity = identity
        self.warehouse = warehouse
        self.box = box
        self.sink = sink
        self.smsr_for = smsr_for
        self.eum_cert_for = eum_cert_for
        self.settings = settings or Settings()
        self.new_message_id = new_message_id or (lambda: f"urn:uuid:{uuid.uuid4()}")
        self.doorbell = doorbell or Silent()  # rung after a transaction that makes a row due now
        self._packages: OrderedDict[int, tuple[str, bytes]] = OrderedDict()  # op id -> (ICCID, package)
        self._packages_lock = threading.Lock()
        DOWNLOAD_FLOW.check(self)
        RELAY_FLOW.check(self)

    @staticmethod
    def flow(op: SmdpOperation) -> Flow:
        return DOWNLOAD_FLOW if op.function == DOWNLOAD else RELAY_FLOW


    # -- accepting ---------------------------------------------------------------------------

    def _new_row(self, req: Es2Request) -> SmdpOperation:
        first = "reserve" if req.function == DOWNLOAD else "relay_check"
        return SmdpOperation(
            function=req.function, requester_id=req.requester_id, eid=req.eid.upper(), smsr_id=req.smsr_id,
            iccid=req.iccid.upper() if req.iccid else None, profile_type=req.profile_type, enable=req.enable,
            message_id=req.message_id, function_call_id=req.function_call_id, reply_to=req.reply_to,
            accepted_at=req.received_at,
            expires_at=validity_until(req.received_at, req.validity_period, self.settings.default_validity,
                                      self.settings.max_validity),
            state=ACTIVE, step=first, phase=SEND, next_attempt_at=req.received_at, attempts=0, progress={},
        )

    def accept(self, req: Es2Request) -> tuple[int, bool]:
        """Persist the request; (operation id, True when it is new).

        What the MNO may ask is decided here, before anything is relayed: the SM-SR it names is known; a download's profile
        type or ICCID is the MNO's and a profile is reserved for it; a relayed function's profile is the MNO's (the EIS
        as the SM-SR shows it to this SM-DP; when the SM-SR cannot be reached now, the ``relay_check`` step decides
        once it can). A refusal is answered by its callback at once. A replay (same MessageID) is not run again; the
        same FunctionCallIdentifier under a new MessageID is refused by a callback relating to the new MessageID
        (1.6/3.3), as the SM-SR does (smsr_core.platform.Platform.accept).
        """
        # The SM-SR is asked before any transaction is open: it may share this database (SQLite's writer lock).
        checked, verdict = self._relay_access(req) if req.function in RELAYED else (False, None)
        with self.db.session() as s:
            op = self._new_row(req)
            found = replayed(s, op)
            if found is not None:
                if reuses_call_id(found, req.message_id):
                    self._answer_other_message(s, req, codes.call_id_reused(req.function_call_id, found.message_id))
                return found.id, False
            # The new row is written once, with what it holds (accept_once would INSERT it, then UPDATE it): a
            # download's when its profile is reserved (the reservation names the row's id), the others' below.
            try:
                smsr_named(self.smsr_for, op.smsr_id)
                if verdict is not None:
                    raise verdict
                if op.function == DOWNLOAD:
                    self._reserve(s, op)
                elif checked:
                    op.step = "relay"  # ownership already verified with the SM-SR
                due_now(s, self.doorbell)
            except FunctionFailed as failure:
                self._finish(s, op, failure.status, failure, now=req.received_at)
            if op.id is None:
                s.add(op)
                s.flush()
            return op.id, True

    def reject(self, req: Es2Request, failure: FunctionFailed) -> None:
        """An accepted request that fails before it could be queued: recorded, answered by callback."""
        with self.db.session() as s:
            op, new = accept_once(s, self._new_row(req))
            if new:
                self._finish(s, op, failure.status, failure, now=req.received_at)
            elif reuses_call_id(op, req.message_id):
                self._answer_other_message(s, req, failure)

    def _answer_other_message(self, s: Session, req: Es2Request, failure: FunctionFailed) -> None:
        """A callback for a request that has no row of its own (its FunctionCallIdentifier names another's)."""
        self.sink.callback(s, self._new_row(req), failure.status, failure)

    def _relay_access(self, req: Es2Request) -> tuple[bool, FunctionFailed | None]:
        """(checked, why not): whether the SM-SR could tell now if the MNO may have ``req`` relayed, and if not, why.
        Unchecked (SM-SR unknown or out of reach): accept() refuses the unknown SM-SR, relay_check decides later."""
        port = self.smsr_for(req.smsr_id)
        if port is None:
            return False, None
        try:
            owned_profile(port.get_eis(req.eid.upper()), req.requester_id, req.eid.upper(), req.iccid or "")
        except PeerUnreachable:
            return False, None
        except FunctionFailed as failure:
            return True, failure
        return True, None

    # -- what the SM-SR sends back -----------------------------------------------------------

    def on_callback(self, relates_to: str | None, operation: str, status: Status, failure: FunctionFailed | None,
                    *, euicc_response: str | None = None, isd_p_aid: str | None = None, sender: str | None = None,
                    now: datetime | None = None) -> bool:
        """An ES3 callback: the step awaiting it handles it in this transaction (its table ``answer``), and the next
        step is due at once. False when no operation awaits it (late, unknown, or sent by another SM-SR than the one
        the request went to: ``sender`` is the caller's OID when known). A handler that fails leaves the callback
        stored in the row for a worker to handle (the SM-SR has its answer either way)."""
        if not relates_to:
            return False
        now = now or datetime.now(timezone.utc)
        callback = {
            "operation": operation, "status": status.value, "euicc_response": euicc_response, "isd_p_aid": isd_p_aid,
            "subject": failure.code.subject if failure else None, "reason": failure.code.reason if failure else None,
            "message": failure.message if failure else None,
            "subject_identifier": failure.subject_identifier if failure else None,
        }
        try:
            with self.db.session() as s:
                op = self._awaiting(s, relates_to, sender)
                if op is None:
                    return False
                self._answered(s, op, _failure_of(callback), callback, now)
                return True
        except Exception:
            log.exception("SM-DP: the ES3 callback relating to %s could not be handled at once; stored", relates_to)
        with self.db.session() as s:
            op = self._awaiting(s, relates_to, sender)
            if op is None:
                return False
            op.callback, op.phase = callback, AWAIT
            wait(op, now)
            due_now(s, self.doorbell)
            return True

    def _awaiting(self, s: Session, relates_to: str, sender: str | None) -> SmdpOperation | None:
        op = s.scalars(_AWAITING, {"relates_to": relates_to, "active": ACTIVE}).first()
        if op is None or op.callback is not None or (sender is not None and sender != op.smsr_id):
            return None
        return op

    def on_notification(self, change: str, mno_id: str, eid: str, iccid: str, when: datetime) -> bool:
        """ES3-HandleProfile<change>Notification from the SM-SR: relayed to the MNO as the ES2 one, when the profile
        is one this SM-DP downloaded for that MNO (the SM-SR notifies the SM-DP that installed a profile). Anything
        else is not relayed (False): no SM-SR makes this SM-DP tell an MNO about a profile that is not its own."""
        with self.db.session() as s:
            if self.warehouse.owner(s, iccid) != mno_id:
                log.info("ES3 %s notification for %s (MNO %s): not a profile this SM-DP downloaded for that MNO; "
                         "not relayed", change, iccid, mno_id)
                return False
            self.sink.notification(s, change, mno_id, eid, iccid, when)
            return True

    def on_smsr_change(self, mno_id: str, eis: Eis, when: datetime) -> bool:
        """ES3-HandleSMSRChangeNotification: the eUICC moved to another SM-SR; relayed to ``mno_id`` (ES2) with the
        profiles of that MNO which this SM-DP downloaded, when there is one (else not relayed: False)."""
        with self.db.session() as s:
            ours = tuple(p for p in eis.profiles if p.mno_id == mno_id and self.warehouse.owner(s, p.iccid) == mno_id)
            if not ours:
                log.info("ES3 SM-SR change notification for eUICC %s (MNO %s): no profile this SM-DP downloaded for "
                         "that MNO; not relayed", eis.eid, mno_id)
                return False
            self.sink.smsr_changed(s, mno_id, eis, when)
            return True

    # -- the worker: the engine runs what the tables name ----------------------------------------

    def tick(self, now: datetime) -> int:
        """Run every operation that is due; returns how many steps ran."""
        ids = _DUE(self.db.engine, now, active=ACTIVE)
        taken: dict[int, _Taken | Exception | None] = {}
        return run_leased(ids, lambda op_id: self._take(op_id, now, taken),
                          lambda op_id: self._exchange(op_id, now, taken.pop(op_id)),
                          lambda op_id: self._defect(op_id, now), what="SM-DP operation")

    def _take(self, op_id: int, now: datetime, taken: dict) -> bool:
        """Lease a due row and run its step's ``run`` in the same transaction; what goes over the wire is kept in
        ``taken`` for :meth:`_exchange`. A ``run`` that raises keeps the lease alone (the row waits for it to run out,
        as the engine's rule says) and is reported by run_leased when _exchange raises it again."""
        try:
            with self.db.session() as s:
                op = _LEASE_ROW(s, op_id, now, self.settings.lease, active=ACTIVE)
                if op is None:
                    return False
                taken[op_id] = self._prepare(s, op, now)
                return True
        except Exception as defect:
            with self.db.session() as s:
                if not _LEASE(s, op_id, now, self.settings.lease, active=ACTIVE):
                    return False
            taken[op_id] = defect
            return True

    def _prepare(self, s: Session, op: SmdpOperation, now: datetime) -> _Taken | None:
        """The leased row's step: the table's ``run``, and for an ES3 request its MessageID fixed before it leaves.
        None when the step ended in this transaction (or the row awaits: its deadline came, or a callback its
        handler could not take is stored)."""
        if op.phase == AWAIT:
            self._await(s, op, now)
            return None
        try:
            exchange = self.flow(op).runner(self, op.step)(s, op, now)
        except FunctionFailed as failure:
            self._failed(s, op, failure, now)
            return None
        if isinstance(exchange, Es3Call):
            return _Taken(op.step, exchange, op.smsr_id)
        if op.awaiting_message_id is None:
            op.awaiting_message_id = self.new_message_id()
        return _Taken(op.step, exchange, op.smsr_id, op.awaiting_message_id,
                      exchange.validity or self._remaining_validity(op, now),
                      self._deadline(op) + timedelta(seconds=self.settings.callback_grace))

    def _exchange(self, op_id: int, now: datetime, taken: _Taken | Exception | None) -> None:
        """The exchange with the SM-SR, with no transaction open; its outcome in one more."""
        if isinstance(taken, Exception):
            raise taken
        if taken is None:
            return
        exchange, message_id = taken.exchange, taken.message_id
        try:
            port = smsr_named(self.smsr_for, taken.smsr_id)
            if message_id is not None:
                port.request(exchange.operation, message_id=message_id, validity=taken.validity, **exchange.params)
            else:
                outcome = exchange.ask(port)
        except FunctionFailed as failure:
            with self.db.session() as s:
                op = self._still_at(s, op_id, taken.step, message_id)
                if op is None:
                    return
                if isinstance(failure, PeerUnreachable):
                    self._unreachable(s, op, failure, now)
                else:  # refused at once: as if its callback had said so
                    self._step_failed(s, op, failure, now)
            return
        if message_id is not None:
            # one UPDATE, no ORM session: await the callback, unless it came already (on_callback moved the row on)
            with dbapi(self.db.engine, commit=True) as c:
                _SENT.run(c, row_id=op_id, active=ACTIVE, send=SEND, message_id=message_id, await_=AWAIT,
                          answer_by=taken.answer_by)
            return
        with self.db.session() as s:
            op = self._still_at(s, op_id, taken.step, None)
            if op is not None:
                exchange.then(s, op, outcome, now)

    def _still_at(self, s: Session, op_id: int, step: str, message_id: str | None) -> SmdpOperation | None:
        """The row, when it is still where the exchange left it (an early callback may have moved it on)."""
        op = s.get(SmdpOperation, op_id, with_for_update=True)
        if op is None or op.state != ACTIVE or op.step != step or op.phase != SEND or \
                (message_id is not None and op.awaiting_message_id != message_id):
            return None
        return op

    def _await(self, s: Session, op: SmdpOperation, now: datetime) -> None:
        callback = op.callback
        if callback is None:
            deadline = self._deadline(op) + timedelta(seconds=self.settings.callback_grace)
            if now < deadline:
                wait(op, deadline)
                return
            # The SM-SR never answered (it should have sent EXPIRED): take it as expired.
            callback = {"operation": op.step, "status": Status.EXPIRED.value, "subject": codes.EXPIRED_TTL.subject,
                        "reason": codes.EXPIRED_TTL.reason, "message": "no ES3 callback from the SM-SR"}
        self._answered(s, op, _failure_of(callback), callback, now)

    def _answered(self, s: Session, op: SmdpOperation, failure: FunctionFailed | None, callback: dict,
                  now: datetime) -> None:
        """The step's table ``answer`` handles what the SM-SR answered."""
        op.callback, op.awaiting_message_id, op.lease_until = None, None, None
        self.flow(op).answerer(self, op.step)(s, op, failure, callback, now)

    def _step_failed(self, s: Session, op: SmdpOperation, failure: FunctionFailed, now: datetime) -> None:
        """The step's exchange failed without an answer: its ``answer`` handles the failure, else the row fails."""
        if self.flow(op)[op.step].answer is not None:
            self._answered(s, op, failure, {}, now)
        else:
            self._failed(s, op, failure, now)

    def _unreachable(self, s: Session, op: SmdpOperation, away: PeerUnreachable, now: datetime) -> None:
        """The SM-SR is away: the same exchange again after ``retry`` (same MessageID), until the step is out of
        time; then as if the SM-SR had answered EXPIRED (a failed step is cleaned up; a clean-up that cannot reach
        the SM-SR ends, the profile kept out of stock)."""
        op.attempts += 1
        if now < self._deadline(op):
            wait(op, now + timedelta(seconds=self.settings.retry))
            return
        op.awaiting_message_id = None
        self._step_failed(s, op, FunctionFailed(codes.EXPIRED_TTL, f"the SM-SR was not reachable: {away.message}",
                                                status=Status.EXPIRED), now)

    def _defect(self, op_id: int, now: datetime) -> None:
        """A step that keeps failing unexpectedly is retried when its lease ends, until the operation is out
        of time: then it ends like any failure (1.2/4.2), so the MNO is always answered."""
        with self.db.session() as s:
            op = s.get(SmdpOperation, op_id, with_for_update=True)
            if op is None or op.state != ACTIVE or now < self._deadline(op):
                return
            op.awaiting_message_id, op.callback, op.lease_until = None, None, None
            if op.step == "cleanup":
                self._finish(s, op, self._stored_failure(op).status, self._stored_failure(op), now=now)
            else:
                self._failed(s, op, FunctionFailed(codes.INTERNAL_ERROR,
                                                   f"the SM-DP could not carry out step {op.step}"), now)

    # -- moving a row ------------------------------------------------------------------------

    def _goto(self, s: Session, op: SmdpOperation, step: str, now: datetime) -> None:
        op.step, op.phase, op.awaiting_message_id, op.callback = step, SEND, None, None
        wait(op, now)
        due_now(s, self.doorbell)

    def _advance(self, s: Session, op: SmdpOperation, now: datetime) -> None:
        """On to the step the table names next; the row succeeded when there is none."""
        then = self.flow(op)[op.step].then
        if then is None:
            self._succeeded(s, op, now)
        else:
            self._goto(s, op, then, now)

    def _succeeded(self, s: Session, op: SmdpOperation, now: datetime) -> None:
        if op.function == DOWNLOAD:
            self.warehouse.mark_installed(s, op.iccid)
        self._finish(s, op, Status.EXECUTED_SUCCESS, None, now=now)

    def _finish(self, s: Session, op: SmdpOperation, status: Status, failure: FunctionFailed | None, *,
                now: datetime) -> None:
        """The row is done and its ES2 callback is in the outbox, in one transaction (once: finish_once)."""
        if not finish_once(s, op):
            log.info("SM-DP operation %s was ended by another worker meanwhile: not ended again", op.id)
            return
        record_result(op, status, failure, now)
        op.phase, op.awaiting_message_id, op.callback, op.secrets = None, None, None, None
        self._forget_package(op)
        self.sink.callback(s, op, status, failure)

    def _failed(self, s: Session, op: SmdpOperation, failure: FunctionFailed, now: datetime) -> None:
        """A download failed: clean up when an ISD-P may exist, else give the profile back and answer."""
        if op.function != DOWNLOAD:
            self._finish(s, op, failure.status, failure, now=now)
            return
        op.failure = {"status": failure.status.value, "subject": failure.code.subject, "reason": failure.code.reason,
                      "message": failure.message, "subject_identifier": failure.subject_identifier}
        if op.progress.get("create_isdp_sent"):
            until = validity_until(now, None, self.settings.default_validity, self.settings.max_validity)
            op.progress = {**op.progress, "cleanup_until": until.isoformat()}
            self._goto(s, op, "cleanup", now)
            return
        self._release(s, op)
        self._finish(s, op, failure.status, failure, now=now)

    def _release(self, s: Session, op: SmdpOperation) -> None:
        if op.iccid and op.progress.get("reserved"):
            self.warehouse.release(s, op.iccid)

    def _stored_failure(self, op: SmdpOperation) -> FunctionFailed:
        f = op.failure or {}
        return FunctionFailed(StatusCode(f.get("subject", "1.2"), f.get("reason", "4.2")), f.get("message"),
                              subject_identifier=f.get("subject_identifier"), status=Status(f.get("status", "FAILED")))

    # -- helpers -----------------------------------------------------------------------------

    def _deadline(self, op: SmdpOperation) -> datetime:
        """When the current step is out of time: the request's expiry, or the clean-up's own."""
        if op.step == "cleanup" and op.progress.get("cleanup_until"):
            return utc(datetime.fromisoformat(op.progress["cleanup_until"]))
        return utc(op.expires_at)

    def _remaining_validity(self, op: SmdpOperation, now: datetime) -> int:
        return max(1, int((utc(op.expires_at) - now).total_seconds()))

    def _secrets(self, op: SmdpOperation) -> dict:
        if op.secrets is None:
            return {}
        return {k: json.loads(v) for k, v in self.box.open(op.iccid, op.secrets).items()}

    def _seal(self, op: SmdpOperation, secrets: dict) -> None:
        op.secrets = self.box.seal(op.iccid, {k: json.dumps(v) for k, v in secrets.items()})

    # -- reserve: stock, EIS, ECASD certificate ----------------------------------------------

    def _run_reserve(self, s: Session, op: SmdpOperation, now: datetime) -> Es3Call:
        if not op.progress.get("reserved"):  # a row accepted before reservation moved to accept()
            self._reserve(s, op)
        eid = op.eid
        return Es3Call(lambda port: self._verify_ecasd(port.get_eis(eid), now), self._reserved)

    def _reserved(self, s: Session, op: SmdpOperation, ecasd: ec.EllipticCurvePublicKey, now: datetime) -> None:
        op.progress = {**op.progress, "ecasd_public_key": ecka.encode_public_key(ecasd).hex()}
        self._advance(s, op, now)

    def _reserve(self, s: Session, op: SmdpOperation) -> None:
        """A profile of the MNO's type (or the ICCID it named) held for this download (warehouse.claim's codes). A new
        row is written here, with the profile (the stock's ``download_id`` is its id); nothing is kept of a refusal."""
        before = op.iccid, op.profile_type, op.progress

        def hold(claimed: Claim) -> int:
            op.iccid, op.profile_type = claimed.iccid, claimed.profile_type
            op.progress = {**before[2], "reserved": True, "imsi": claimed.imsi, "msisdn": claimed.msisdn}
            if op.id is None:
                s.add(op)
            s.flush()  # the INSERT; an UPDATE only when another worker took the candidate first
            return op.id

        try:
            self.warehouse.claim(s, mno_id=op.requester_id, eid=op.eid, profile_type=op.profile_type, iccid=op.iccid,
                                 hold=hold)
        except FunctionFailed:
            op.iccid, op.profile_type, op.progress = before
            raise

    @staticmethod
    def _ecasd_key(op: SmdpOperation) -> ec.EllipticCurvePublicKey:
        """PK.ECASD.ECKA as verified at the reserve step (kept as its '7F49' TLV: point and curve)."""
        return ecka.decode_public_key(bytes.fromhex(op.progress["ecasd_public_key"]))

    def _verify_ecasd(self, eis: Eis, now: datetime) -> ec.EllipticCurvePublicKey:
        """CI → EUM (X.509, the EUM's certificate as registered with this SM-DP) → CERT.ECASD.ECKA from the EIS."""
        eum_pem = self.eum_cert_for(eis.signed_info.eum_id)
        if eum_pem is None:
            raise FunctionFailed(codes.ECASD_CERT_INVALID, f"EUM {eis.signed_info.eum_id} is unknown to this SM-DP",
                                 subject_identifier=eis.eid)
        return verified_ecasd_key(eis, self.identity.ci_pem, eum_pem, now)

    # -- create_isdp -------------------------------------------------------------------------

    def _package(self, s: Session, op: SmdpOperation) -> bytes:
        """The download's personalised package: the one this worker built for it, else built (the same bytes)."""
        with self._packages_lock:
            kept = self._packages.get(op.id)
        if kept is not None and kept[0] == op.iccid:
            return kept[1]
        held: Reserved = self.warehouse.held(s, op.iccid)
        package = saip.personalise(held.template, saip.Personalisation(
            iccid=held.iccid, imsi=held.imsi, msisdn=held.msisdn, ki=held.ki, opc=held.opc, pin1=held.pin1,
            puk1=held.puk1, pin2=held.pin2, puk2=held.puk2, adm1=held.adm1), profile_type=held.profile_type)
        with self._packages_lock:
            self._packages[op.id] = (op.iccid, package)
            self._packages.move_to_end(op.id)
            while len(self._packages) > PACKAGES_KEPT:
                self._packages.popitem(last=False)
        return package

    def _forget_package(self, op: SmdpOperation) -> None:
        with self._packages_lock:
            self._packages.pop(op.id, None)

    def _send_create_isdp(self, s: Session, op: SmdpOperation, now: datetime) -> Es3Request:
        size = len(self._package(s, op))
        memory = -(-int(size * self.settings.memory_margin) // 1024) * 1024
        op.progress = {**op.progress, "create_isdp_sent": True}
        return Es3Request("ES3-CreateISDP", {"Eid": op.eid, "Iccid": op.iccid, "Mno-id": op.requester_id,
                                             "RequiredMemory": memory})

    def _answer_create_isdp(self, s: Session, op: SmdpOperation, failure, callback: dict, now: datetime) -> None:
        if failure is not None:
            self._failed(s, op, failure, now)
            return
        aid = (callback.get("isd_p_aid") or "").upper()
        try:
            es8.isdp_tar(bytes.fromhex(aid))
        except ValueError:
            self._failed(s, op, FunctionFailed(codes.INTERNAL_ERROR, f"the SM-SR's CreateISDP callback names no "
                                               f"usable ISD-P AID ({aid or 'none'})"), now)
            return
        op.isd_p_aid = aid
        self.warehouse.mark_downloading(s, op.iccid)
        self._advance(s, op, now)

    # -- keyset_1 / keyset_2: ES8 EstablishISDPKeySet ----------------------------------------

    @staticmethod
    def _send_data(op: SmdpOperation, commands: list[bytes], more_to_do: bool = True) -> Es3Request:
        return Es3Request("ES3-SendData", {"Eid": op.eid, "Sd-aid": op.isd_p_aid,
                                           "Data": es8.send_data_payload(commands).hex().upper(),
                                           "MoreToDo": more_to_do})

    def _responses(self, op: SmdpOperation, callback: dict, expected: int) -> list[tuple[int, bytes]]:
        script = bytes.fromhex(callback.get("euicc_response") or "")
        try:
            executed, responses = es8.parse_send_data_response(script)
        except ValueError as exc:
            raise FunctionFailed(codes.ISDP_EXECUTION_ERROR, f"unreadable ISD-P response: {exc}") from None
        if executed != expected or len(responses) != expected or es8.is_error_response(*responses[-1]):
            raise FunctionFailed(codes.ISDP_EXECUTION_ERROR, f"the ISD-P answered {callback.get('euicc_response')}")
        return responses

    def _send_keyset_1(self, s: Session, op: SmdpOperation, now: datetime) -> Es3Request:
        return self._send_data(op, [
            es8.command_tlv(es8.install_for_personalization(bytes.fromhex(op.isd_p_aid))),
            es8.command_tlv(es8.store_data_3a01(self.identity.certificate)),
        ])

    def _answer_keyset_1(self, s: Session, op: SmdpOperation, failure, callback: dict, now: datetime) -> None:
        try:
            if failure is not None:
                raise failure
            responses = self._responses(op, callback, 2)
            challenge = ecka.parse_challenge_response(responses[1][1][:-2])
        except (FunctionFailed, ValueError) as exc:
            self._failed(s, op, _as_failure(exc), now)
            return
        op.progress = {**op.progress, "challenge": challenge.hex()}
        self._advance(s, op, now)

    def _send_keyset_2(self, s: Session, op: SmdpOperation, now: datetime) -> Es3Request:
        secrets = self._secrets(op)
        if "ephemeral" in secrets:  # a resend: the same 3A02 (same key, same MessageID)
            return self._send_data(op, [bytes.fromhex(secrets["store_data_3a02"])])
        crt = ecka.KeyAgreementCrt()
        dgi, ephemeral = ecka.smdp_key_agreement(self.identity.key, bytes.fromhex(op.progress["challenge"]),
                                                 self._ecasd_key(op).curve, crt)
        apdu = es8.command_tlv(es8.store_data_3a02(dgi))
        self._seal(op, {**secrets, "ephemeral": ecka.export_private(ephemeral), "store_data_3a02": apdu.hex()})
        return self._send_data(op, [apdu])

    def _answer_keyset_2(self, s: Session, op: SmdpOperation, failure, callback: dict, now: datetime) -> None:
        try:
            if failure is not None:
                raise failure
            responses = self._responses(op, callback, 1)
            secrets = self._secrets(op)
            crt = ecka.KeyAgreementCrt()
            keys = ecka.smdp_finish(ecka.import_private(secrets["ephemeral"]), self._ecasd_key(op), crt,
                                    responses[0][1][:-2])
        except ecka.EckaError as exc:
            self._failed(s, op, FunctionFailed(KEY_ESTABLISHMENT_FAILED, f"ES8 key establishment: {exc}",
                                               subject_identifier=op.isd_p_aid), now)
            return
        except (FunctionFailed, ValueError) as exc:
            self._failed(s, op, _as_failure(exc), now)
            return
        self._seal(op, {"keys": keys.to_hex(), "kvn": crt.kvn, "key_id": crt.key_id})
        self._advance(s, op, now)

    # -- scp03t_open / download: ES8 DownloadAndInstallation ---------------------------------

    def _send_scp03t_open(self, s: Session, op: SmdpOperation, now: datetime) -> Es3Request:
        secrets = self._secrets(op)
        if "initialize_update" not in secrets:  # a resend repeats the same '84' (same host challenge)
            host = scp03t.Scp03tHost(StaticKeys.from_hex(secrets["keys"]), secrets["kvn"], secrets["key_id"])
            secrets = {**secrets, "initialize_update": host.initialize_update().hex()}
            self._seal(op, {**secrets, "scp03t": host.state()})
        return self._send_data(op, [bytes.fromhex(secrets["initialize_update"])])

    def _answer_scp03t_open(self, s: Session, op: SmdpOperation, failure, callback: dict, now: datetime) -> None:
        try:
            if failure is not None:
                raise failure
            responses = self._responses(op, callback, 1)
            secrets = self._secrets(op)
            host = scp03t.Scp03tHost.from_state(secrets["scp03t"])
            tag, value = responses[0]
            external = host.external_authenticate(encode_tlv(tag, value))
        except scp03t.Scp03tError as exc:
            self._failed(s, op, FunctionFailed(KEY_ESTABLISHMENT_FAILED, f"SCP03t: {exc}",
                                               subject_identifier=op.isd_p_aid), now)
            return
        except (FunctionFailed, ValueError) as exc:
            self._failed(s, op, _as_failure(exc), now)
            return
        self._seal(op, {**secrets, "scp03t": host.state(), "external_authenticate": external.hex()})
        op.progress = {**op.progress, "segments_done": 0}
        self._advance(s, op, now)

    def _segments(self, package: bytes) -> list[bytes]:
        size = self.settings.segment_size
        return [package[i:i + size] for i in range(0, len(package), size)]

    def _send_download(self, s: Session, op: SmdpOperation, now: datetime) -> Es3Request:
        secrets = self._secrets(op)
        if "batch" not in secrets:  # a resend reuses the batch built the first time (same MessageID)
            host = scp03t.Scp03tHost.from_state(secrets["scp03t"])
            segments = self._segments(self._package(s, op))
            done = op.progress["segments_done"]
            batch = segments[done:done + self.settings.segments_per_send]
            commands = ([bytes.fromhex(secrets["external_authenticate"])] if done == 0 else []) + \
                [host.wrap(seg) for seg in batch]
            secrets = {**secrets, "scp03t": host.state(), "batch": es8.send_data_payload(commands).hex(),
                       "batch_size": len(batch), "last": done + len(batch) == len(segments)}
            self._seal(op, secrets)
        return Es3Request("ES3-SendData", {"Eid": op.eid, "Sd-aid": op.isd_p_aid, "Data": secrets["batch"].upper(),
                                           "MoreToDo": not secrets["last"]})

    def _answer_download(self, s: Session, op: SmdpOperation, failure, callback: dict, now: datetime) -> None:
        secrets = self._secrets(op)
        first = op.progress["segments_done"] == 0
        try:
            if failure is not None:
                raise failure
            expected = secrets["batch_size"] + (1 if first else 0)
            responses = self._responses(op, callback, expected)
            host = scp03t.Scp03tHost.from_state(secrets["scp03t"])
            if first:
                tag, value = responses.pop(0)
                host.check_external_authenticate_response(encode_tlv(tag, value))
            answer = b""
            for tag, value in responses:
                answer = host.unwrap(encode_tlv(tag, value))
            if secrets["last"]:
                statuses, aborted, message = saip.decode_euicc_response(answer)
                bad = [st for st in statuses if st.status != saip.PE_OK]
                if aborted or bad:
                    detail = ", ".join(f"PE {st.identification}: status {st.status}" for st in bad)
                    raise FunctionFailed(codes.ISDP_EXECUTION_ERROR, f"the ISD-P refused the profile package "
                                         f"({detail or 'aborted'}{': ' + message if message else ''})",
                                         subject_identifier=op.isd_p_aid)
        except scp03t.Scp03tError as exc:
            self._failed(s, op, FunctionFailed(codes.ISDP_EXECUTION_ERROR, f"SCP03t: {exc}",
                                               subject_identifier=op.isd_p_aid), now)
            return
        except (FunctionFailed, ValueError) as exc:
            self._failed(s, op, _as_failure(exc), now)
            return
        rest = {k: v for k, v in secrets.items() if k not in ("batch", "batch_size", "last")}
        self._seal(op, {**rest, "scp03t": host.state()})
        op.progress = {**op.progress, "segments_done": op.progress["segments_done"] + secrets["batch_size"]}
        if secrets["last"]:
            self._forget_package(op)
            self._advance(s, op, now)
        else:
            self._goto(s, op, "download", now)  # the next batch of segments

    # -- completed / enable ------------------------------------------------------------------

    def _run_completed(self, s: Session, op: SmdpOperation, now: datetime) -> Es3Call:
        if "imsi" in op.progress:  # kept when the profile was reserved
            address = SubscriptionAddress(imsi=op.progress["imsi"], msisdn=op.progress.get("msisdn"))
        else:  # a row reserved before the address was kept there
            held = self.warehouse.held(s, op.iccid)
            address = SubscriptionAddress(imsi=held.imsi, msisdn=held.msisdn)
        eid, iccid, ptype = op.eid, op.iccid, op.profile_type
        return Es3Call(lambda port: port.profile_download_completed(eid, iccid, profile_type=ptype, address=address),
                       self._completed)

    def _completed(self, s: Session, op: SmdpOperation, _: None, now: datetime) -> None:
        op.secrets = None  # the ISD-P keyset is not needed any more
        if op.enable:
            self._advance(s, op, now)
        else:
            self._succeeded(s, op, now)

    def _send_enable(self, s: Session, op: SmdpOperation, now: datetime) -> Es3Request:
        return Es3Request("ES3-EnableProfile", {"Eid": op.eid, "Iccid": op.iccid})

    def _answer_enable(self, s: Session, op: SmdpOperation, failure, callback: dict, now: datetime) -> None:
        if failure is not None:
            self._failed(s, op, failure, now)
            return
        self._advance(s, op, now)

    # -- cleanup -----------------------------------------------------------------------------

    def _send_cleanup(self, s: Session, op: SmdpOperation, now: datetime) -> Es3Request:
        return Es3Request("ES3-DeleteISDP", {"Eid": op.eid, "Iccid": op.iccid},
                          validity=int(self.settings.default_validity))

    def _answer_cleanup(self, s: Session, op: SmdpOperation, failure, callback: dict, now: datetime) -> None:
        # deleted, or never created (the SM-SR does not know the ICCID)
        gone = failure is None or (failure.code.subject, failure.code.reason) == (
            codes.ICCID_UNKNOWN.subject, codes.ICCID_UNKNOWN.reason)
        if gone:
            self._release(s, op)
        else:
            # The ISD-P may still hold the profile: the ICCID stays out of stock until an operator looks.
            log.warning("SM-DP operation %s: ES3-DeleteISDP of %s failed (%s/%s %s); the profile stays out of stock",
                        op.id, op.iccid, failure.code.subject, failure.code.reason, failure.message)
        reported = self._stored_failure(op)
        self._finish(s, op, reported.status, reported, now=now)

    # -- relayed ES2-Enable/Disable/DeleteProfile --------------------------------------------

    def _run_relay_check(self, s: Session, op: SmdpOperation, now: datetime) -> Es3Call:
        eid, iccid, mno = op.eid, op.iccid, op.requester_id
        return Es3Call(lambda port: owned_profile(port.get_eis(eid), mno, eid, iccid),
                       lambda s, op, _, now: self._advance(s, op, now))

    def _send_relay(self, s: Session, op: SmdpOperation, now: datetime) -> Es3Request:
        return Es3Request(ES3_NAME[op.function], {"Eid": op.eid, "Iccid": op.iccid})

    def _answer_relay(self, s: Session, op: SmdpOperation, failure, callback: dict, now: datetime) -> None:
        if failure is not None:
            self._finish(s, op, failure.status, failure, now=now)
        else:
            self._advance(s, op, now)


def _failure_of(callback: dict) -> FunctionFailed | None:
    """The failure an ES3 callback (as stored) reports, or None on success."""
    status = Status(callback["status"])
    if status not in (Status.FAILED, Status.EXPIRED):
        return None
    return FunctionFailed(StatusCode(callback.get("subject") or "1.2", callback.get("reason") or "4.2"),
                          callback.get("message"), subject_identifier=callback.get("subject_identifier"),
                          status=status)


def _as_failure(exc: Exception) -> FunctionFailed:
    if isinstance(exc, FunctionFailed):
        return exc
    return FunctionFailed(codes.ISDP_EXECUTION_ERROR, f"unexpected ISD-P response: {exc}")
