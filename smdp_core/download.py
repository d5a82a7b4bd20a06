"""The SM-DP's asynchronous functions: ES2-DownloadProfile, and ES2-Enable/Disable/DeleteProfile relayed.

Theory of operation
-------------------
An ES2 request becomes a :class:`~smdp_core.op_models.SmdpOperation` row before the MNO gets its
``202 Accepted`` (:meth:`Downloads.accept`); a replayed MessageID or FunctionCallIdentifier finds the row
and is not executed twice. Workers (``esx worker --role smdp``) drive the rows through the table
below with :meth:`Downloads.tick`. A step is either synchronous (an ES3 call answered at once) or
asynchronous (an ES3 request answered ``202``, whose result comes back as an ES3 callback to
``/smdp/es3``, where :meth:`Downloads.on_callback` stores it in the row it relates to)::

    step             ES3 / ES8 exchanged with the SM-SR            next on success
    ---------------  --------------------------------------------  -----------------------------------
    (accept)         stock reserved (download); ES3-GetEIS: the    reserve (download); relay, or
                     MNO owns the profile (relayed functions)      relay_check when the SM-SR was away
    reserve          ES3-GetEIS, ECASD chain verified              create_isdp
    create_isdp      ES3-CreateISDP                                keyset_1
    keyset_1         SendData: INSTALL [for perso], STORE DATA 3A01  keyset_2       (answer: '85' RC)
    keyset_2         SendData: STORE DATA 3A02 {A6, ePK, sig(RC)}   scp03t_open    (answer: DR, receipt)
    scp03t_open      SendData: '84' InitializeUpdate                download       (answer: card cryptogram)
    download         SendData: '85' + '86' segments, repeated       completed      (last answer: EUICCResponse)
    completed        ES3-ProfileDownloadCompleted                   enable, or done
    enable           ES3-EnableProfile (when EnableProfile=true)    done
    cleanup          ES3-DeleteISDP                                 done (FAILED/EXPIRED, stock released)

    relay_check      ES3-GetEIS: the MNO owns the profile           relay
    relay            ES3-Enable/Disable/DeleteISDP                  done

Each asynchronous step has two phases. ``send``: the ES3 request's MessageID is chosen and committed
first, then the request is sent; a worker that dies in between sends it again with the same
MessageID, which the SM-SR recognises as a replay. ``await``: the callback relating to that
MessageID is handled. No database transaction is open while a request is on the wire (the SM-SR
may share the database, SQLite's writer lock included).

A failure at any step after CreateISDP succeeded (or whose outcome is unknown: EXPIRED) goes
through ``cleanup``: ES3-DeleteISDP, then the profile goes back to stock when the ISD-P is gone
(or never existed: 8.2.1/3.9 from the SM-SR), and the MNO's callback carries the failure of the
step that failed, not the cleanup's. The SM-SR never sees the profile in clear: SendData carries
SCP03t TLVs only (C-ENC + C-MAC under keys the SM-SR cannot derive).

Secrets (the ephemeral private key, the ISD-P keyset, the SCP03t session) are kept in the row
sealed by :class:`~keys.secretbox.SecretBox`, so a worker on another host can carry on.
"""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Protocol

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from keys import ecka, scp03t
from keys.scp03 import StaticKeys
from keys.secretbox import SecretBox
from keys.tlv import encode_tlv
from ota import es8, saip
from persistence.db import Database
from persistence.engine import accept_once
from sgp02 import codes
from sgp02.codes import FunctionFailed, PeerUnreachable, Status, StatusCode
from sgp02.ecasd import verified_ecasd_key
from sgp02.eis import Eis, SubscriptionAddress

from .op_models import SmdpOperation
from .warehouse import Reserved, Warehouse

log = logging.getLogger(__name__)

DOWNLOAD = "DownloadProfile"
RELAYED = ("EnableProfile", "DisableProfile", "DeleteProfile")
ES3_NAME = {"EnableProfile": "ES3-EnableProfile", "DisableProfile": "ES3-DisableProfile",
            "DeleteProfile": "ES3-DeleteISDP"}

ACTIVE, DONE = "active", "done"
SEND, AWAIT = "send", "await"

# Subject 8.3 (ISD-P) with reason 6.1 (verification failed) for a key establishment whose receipt or
# card cryptogram does not verify: our choice (sgp02-wire.md 4.4 lists only 8.3/4.2 for ES3.SendData;
# 6.1 names what went wrong). Pinned by tests.
KEY_ESTABLISHMENT_FAILED = StatusCode("8.3", "6.1", "ISD-P key establishment verification failed")


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


class Downloads:
    """Named for what it does most; it also runs the relayed ES2 functions."""

    def __init__(self, db: Database, identity: SmdpIdentity, warehouse: Warehouse, box: SecretBox, sink: Es2Sink,
                 smsr_for: Callable[[str], SmsrPort | None], eum_cert_for: Callable[[str], bytes | None],
                 settings: Settings | None = None, new_message_id: Callable[[], str] | None = None) -> None:
        self.db = db
        self.identity = identity
        self.warehouse = warehouse
        self.box = box
        self.sink = sink
        self.smsr_for = smsr_for
        self.eum_cert_for = eum_cert_for
        self.settings = settings or Settings()
        self.new_message_id = new_message_id or (lambda: f"urn:uuid:{uuid.uuid4()}")

    # -- accepting ---------------------------------------------------------------------------

    def _new_row(self, req: Es2Request) -> SmdpOperation:
        validity = self.settings.default_validity if req.validity_period is None else req.validity_period
        validity = min(float(validity), self.settings.max_validity)
        first = "reserve" if req.function == DOWNLOAD else "relay_check"
        return SmdpOperation(
            function=req.function, requester_id=req.requester_id, eid=req.eid.upper(), smsr_id=req.smsr_id,
            iccid=req.iccid.upper() if req.iccid else None, profile_type=req.profile_type, enable=req.enable,
            message_id=req.message_id, function_call_id=req.function_call_id, reply_to=req.reply_to,
            accepted_at=req.received_at, expires_at=req.received_at + timedelta(seconds=validity),
            state=ACTIVE, step=first, phase=SEND, next_attempt_at=req.received_at, attempts=0, progress={},
        )

    def accept(self, req: Es2Request) -> tuple[int, bool]:
        """Persist the request; (operation id, True when it is new).

        What the MNO may ask is decided here, before anything is relayed: the SM-SR it names is known; a download's
        profile type or ICCID is the MNO's and a profile is reserved for it; a relayed function's profile is the
        MNO's (the EIS as the SM-SR shows it to this SM-DP; when the SM-SR cannot be reached now, the
        ``relay_check`` step decides once it can). A refusal is answered by its callback at once. A replay (same
        MessageID) is not run again; the same FunctionCallIdentifier under a new MessageID is refused by a callback
        relating to the new MessageID (1.6/3.3), as the SM-SR does (smsr_core.platform.Platform.accept).
        """
        # The SM-SR is asked before any transaction is open: it may share this database (SQLite's writer lock).
        checked, verdict = self._relay_access(req) if req.function in RELAYED else (False, None)
        with self.db.session() as s:
            op, new = accept_once(s, self._new_row(req))
            if not new:
                if req.message_id and op.message_id != req.message_id:
                    self._answer_other_message(s, req, codes.call_id_reused(req.function_call_id, op.message_id))
                return op.id, False
            try:
                if self.smsr_for(op.smsr_id) is None:
                    raise FunctionFailed(codes.SMSR_UNKNOWN, f"SM-SR {op.smsr_id} is unknown to this SM-DP",
                                         subject_identifier=op.smsr_id)
                if verdict is not None:
                    raise verdict
                if op.function == DOWNLOAD:
                    self._reserve(s, op)
                elif checked:
                    op.step = "relay"  # ownership already verified with the SM-SR
            except FunctionFailed as failure:
                self._finish(s, op, failure.status, failure, now=req.received_at)
            return op.id, True

    def reject(self, req: Es2Request, failure: FunctionFailed) -> None:
        """An accepted request that fails before it could be queued: recorded, answered by callback."""
        with self.db.session() as s:
            op, new = accept_once(s, self._new_row(req))
            if new:
                self._finish(s, op, failure.status, failure, now=req.received_at)
            elif req.message_id and op.message_id != req.message_id:
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
            profile = port.get_eis(req.eid.upper()).profile((req.iccid or "").upper())
        except PeerUnreachable:
            return False, None
        except FunctionFailed as failure:
            return True, failure
        return True, _not_owner(profile, req.requester_id, (req.iccid or "").upper(), req.eid.upper())

    # -- what the SM-SR sends back -----------------------------------------------------------

    def on_callback(self, relates_to: str | None, operation: str, status: Status, failure: FunctionFailed | None,
                    *, euicc_response: str | None = None, isd_p_aid: str | None = None, sender: str | None = None,
                    now: datetime | None = None) -> bool:
        """Store an ES3 callback in the operation awaiting it; False when none does (late, unknown, or sent
        by another SM-SR than the one the request went to: ``sender`` is the caller's OID when known)."""
        if not relates_to:
            return False
        now = now or datetime.now(timezone.utc)
        with self.db.session() as s:
            op = s.scalars(select(SmdpOperation).where(SmdpOperation.awaiting_message_id == relates_to,
                                                       SmdpOperation.state == ACTIVE)).first()
            if op is None or op.callback is not None or (sender is not None and sender != op.smsr_id):
                return False
            op.callback = {
                "operation": operation, "status": status.value, "euicc_response": euicc_response,
                "isd_p_aid": isd_p_aid,
                "subject": failure.code.subject if failure else None, "reason": failure.code.reason if failure else None,
                "message": failure.message if failure else None,
                "subject_identifier": failure.subject_identifier if failure else None,
            }
            op.next_attempt_at = now
            return True

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

    # -- the worker --------------------------------------------------------------------------

    def tick(self, now: datetime) -> int:
        """Run every operation that is due; returns how many steps ran."""
        with self.db.session() as s:
            ids = list(s.scalars(select(SmdpOperation.id).where(
                SmdpOperation.state == ACTIVE, SmdpOperation.next_attempt_at <= now,
                or_(SmdpOperation.lease_until.is_(None), SmdpOperation.lease_until < now),
            ).order_by(SmdpOperation.id)))
        ran = 0
        for op_id in ids:
            if self._lease(op_id, now):
                try:
                    self._run(op_id, now)
                except Exception:  # a defect in one operation must not stop the others; its lease makes it wait
                    log.exception("SM-DP operation %s: step failed", op_id)
                    self._defect(op_id, now)
                    continue
                ran += 1
        return ran

    def _defect(self, op_id: int, now: datetime) -> None:
        """A step that keeps failing unexpectedly is retried when its lease ends, until the operation is out
        of time: then it ends like any failure (1.2/4.2), so the MNO is always answered."""
        try:
            with self.db.session() as s:
                op = s.get(SmdpOperation, op_id)
                if op is None or op.state != ACTIVE or now < self._deadline(op):
                    return
                op.awaiting_message_id, op.callback, op.lease_until = None, None, None
                failure = FunctionFailed(codes.INTERNAL_ERROR, f"the SM-DP could not carry out step {op.step}")
                if op.step == "cleanup":
                    self._finish(s, op, self._stored_failure(op).status, self._stored_failure(op), now=now)
                else:
                    self._failed(s, op, failure, now)
        except Exception:
            log.exception("SM-DP operation %s: could not be ended after a defect", op_id)

    def _lease(self, op_id: int, now: datetime) -> bool:
        with self.db.session() as s:
            return s.execute(update(SmdpOperation).where(
                SmdpOperation.id == op_id, SmdpOperation.state == ACTIVE, SmdpOperation.next_attempt_at <= now,
                or_(SmdpOperation.lease_until.is_(None), SmdpOperation.lease_until < now),
            ).values(lease_until=now + timedelta(seconds=self.settings.lease))).rowcount == 1

    def _run(self, op_id: int, now: datetime) -> None:
        with self.db.session() as s:
            op = s.get(SmdpOperation, op_id)
            step, phase = op.step, op.phase
            if phase == AWAIT:
                self._on_await(s, op, now)
                return
        handler = getattr(self, f"_send_{step}")
        handler(op_id, now)

    def _on_await(self, s: Session, op: SmdpOperation, now: datetime) -> None:
        if op.callback is None:
            deadline = self._deadline(op) + timedelta(seconds=self.settings.callback_grace)
            if now < deadline:
                op.next_attempt_at, op.lease_until = deadline, None
                return
            # The SM-SR never answered (it should have sent EXPIRED): take it as expired.
            op.callback = {"operation": op.step, "status": Status.EXPIRED.value, "subject": codes.EXPIRED_TTL.subject,
                           "reason": codes.EXPIRED_TTL.reason, "message": "no ES3 callback from the SM-SR"}
        callback = op.callback
        op.callback, op.awaiting_message_id, op.lease_until = None, None, None
        status = Status(callback["status"])
        failure = None
        if status in (Status.FAILED, Status.EXPIRED):
            failure = FunctionFailed(StatusCode(callback["subject"] or "1.2", callback["reason"] or "4.2"),
                                     callback.get("message"), subject_identifier=callback.get("subject_identifier"),
                                     status=status)
        getattr(self, f"_done_{op.step}")(s, op, failure, callback, now)

    # -- helpers -----------------------------------------------------------------------------

    def _port(self, smsr_id: str) -> SmsrPort:
        port = self.smsr_for(smsr_id)
        if port is None:
            raise FunctionFailed(codes.SMSR_UNKNOWN, f"SM-SR {smsr_id} is unknown to this SM-DP", subject_identifier=smsr_id)
        return port

    def _deadline(self, op: SmdpOperation) -> datetime:
        """When the current step is out of time: the request's expiry, or the clean-up's own."""
        if op.step == "cleanup" and op.progress.get("cleanup_until"):
            return _utc(datetime.fromisoformat(op.progress["cleanup_until"]))
        return _utc(op.expires_at)

    def _remaining_validity(self, op: SmdpOperation, now: datetime) -> int:
        return max(1, int((_utc(op.expires_at) - now).total_seconds()))

    def _secrets(self, op: SmdpOperation) -> dict:
        if op.secrets is None:
            return {}
        return {k: json.loads(v) for k, v in self.box.open(op.iccid, op.secrets).items()}

    def _seal(self, op: SmdpOperation, secrets: dict) -> None:
        op.secrets = self.box.seal(op.iccid, {k: json.dumps(v) for k, v in secrets.items()})

    def _goto(self, op: SmdpOperation, step: str, now: datetime) -> None:
        op.step, op.phase, op.next_attempt_at, op.lease_until = step, SEND, now, None
        op.awaiting_message_id, op.callback = None, None

    def _send_async(self, op_id: int, now: datetime, operation: str, params: Callable[[Session, SmdpOperation], dict],
                    *, validity: int | None = None) -> None:
        """The send phase of an asynchronous step: MessageID committed, request sent, then await."""
        with self.db.session() as s:
            op = s.get(SmdpOperation, op_id)
            if op.awaiting_message_id is None:
                op.awaiting_message_id = self.new_message_id()
            message_id, smsr_id = op.awaiting_message_id, op.smsr_id
            values = params(s, op)
            if validity is None:
                validity = self._remaining_validity(op, now)
        try:
            self._port(smsr_id).request(operation, message_id=message_id, validity=validity, **values)
        except FunctionFailed as failure:
            if isinstance(failure, PeerUnreachable):
                with self.db.session() as s:
                    op = s.get(SmdpOperation, op_id)
                    op.next_attempt_at, op.lease_until = now + timedelta(seconds=self.settings.retry), None
                    op.attempts += 1
                    if now < self._deadline(op):
                        return
                    # out of time: as if the SM-SR had answered EXPIRED (a failed step is cleaned up;
                    # a clean-up that cannot reach the SM-SR ends, the profile kept out of stock)
                    op.awaiting_message_id = None
                    failure = FunctionFailed(codes.EXPIRED_TTL, f"the SM-SR was not reachable: {failure.message}",
                                             status=Status.EXPIRED)
                    getattr(self, f"_done_{op.step}")(s, op, failure, {}, now)
                return
            with self.db.session() as s:  # refused at once: as if its callback had said so
                op = s.get(SmdpOperation, op_id)
                op.awaiting_message_id, op.lease_until = None, None
                getattr(self, f"_done_{op.step}")(s, op, failure, {}, now)
            return
        with self.db.session() as s:
            op = s.get(SmdpOperation, op_id)
            if op.phase == SEND and op.awaiting_message_id == message_id:
                op.phase, op.lease_until = AWAIT, None
                # a callback may already be here (a fast SM-SR): handle it at once
                op.next_attempt_at = now if op.callback is not None else self._deadline(op) + timedelta(
                    seconds=self.settings.callback_grace)

    def _finish(self, s: Session, op: SmdpOperation, status: Status, failure: FunctionFailed | None, *,
                now: datetime) -> None:
        op.state, op.step, op.phase, op.done_at, op.lease_until, op.next_attempt_at = DONE, None, None, now, None, None
        op.awaiting_message_id, op.callback, op.secrets = None, None, None
        op.result_status = status.value
        if failure is not None:
            op.result_subject, op.result_reason, op.result_message = failure.code.subject, failure.code.reason, failure.message
        self.sink.callback(s, op, status, failure)

    def _failed(self, s: Session, op: SmdpOperation, failure: FunctionFailed, now: datetime) -> None:
        """A download failed: clean up when an ISD-P may exist, else give the profile back and answer."""
        if op.function != DOWNLOAD:
            self._finish(s, op, failure.status, failure, now=now)
            return
        op.failure = {"status": failure.status.value, "subject": failure.code.subject, "reason": failure.code.reason,
                      "message": failure.message, "subject_identifier": failure.subject_identifier}
        if op.progress.get("create_isdp_sent"):
            op.progress = {**op.progress, "cleanup_until": (now + timedelta(
                seconds=self.settings.default_validity)).isoformat()}
            self._goto(op, "cleanup", now)
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

    # -- reserve: stock, EIS, ECASD certificate ----------------------------------------------

    def _send_reserve(self, op_id: int, now: datetime) -> None:
        with self.db.session() as s:
            op = s.get(SmdpOperation, op_id)
            if not op.progress.get("reserved"):  # a row accepted before reservation moved to accept()
                try:
                    self._reserve(s, op)
                except FunctionFailed as failure:
                    self._finish(s, op, failure.status, failure, now=now)
                    return
            eid, smsr_id = op.eid, op.smsr_id
        try:
            eis = self._port(smsr_id).get_eis(eid)
            ecasd = self._verify_ecasd(eis, now)
        except FunctionFailed as failure:
            with self.db.session() as s:
                self._failed(s, s.get(SmdpOperation, op_id), failure, now)
            return
        with self.db.session() as s:
            op = s.get(SmdpOperation, op_id)
            op.progress = {**op.progress, "ecasd_public_key": ecka.encode_public_key(ecasd).hex()}
            self._goto(op, "create_isdp", now)

    def _reserve(self, s: Session, op: SmdpOperation) -> None:
        """A profile of the MNO's type (or the ICCID it named) held for this download (warehouse.reserve's codes)."""
        held = self.warehouse.reserve(s, mno_id=op.requester_id, eid=op.eid, download_id=op.id,
                                      profile_type=op.profile_type, iccid=op.iccid)
        op.iccid, op.profile_type = held.iccid, held.profile_type
        op.progress = {**op.progress, "reserved": True}

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
        held: Reserved = self.warehouse.held(s, op.iccid)
        return saip.personalise(held.template, saip.Personalisation(
            iccid=held.iccid, imsi=held.imsi, msisdn=held.msisdn, ki=held.ki, opc=held.opc, pin1=held.pin1,
            puk1=held.puk1, pin2=held.pin2, puk2=held.puk2, adm1=held.adm1), profile_type=held.profile_type)

    def _send_create_isdp(self, op_id: int, now: datetime) -> None:
        def params(s: Session, op: SmdpOperation) -> dict:
            size = len(self._package(s, op))
            memory = -(-int(size * self.settings.memory_margin) // 1024) * 1024
            op.progress = {**op.progress, "create_isdp_sent": True}
            return {"Eid": op.eid, "Iccid": op.iccid, "Mno-id": op.requester_id, "RequiredMemory": memory}
        self._send_async(op_id, now, "ES3-CreateISDP", params)

    def _done_create_isdp(self, s: Session, op: SmdpOperation, failure, callback: dict, now: datetime) -> None:
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
        self._goto(op, "keyset_1", now)

    # -- keyset_1 / keyset_2: ES8 EstablishISDPKeySet ----------------------------------------

    def _send_data(self, op_id: int, now: datetime, commands: Callable[[Session, SmdpOperation], list[bytes]],
                   more_to_do: bool = True) -> None:
        def params(s: Session, op: SmdpOperation) -> dict:
            return {"Eid": op.eid, "Sd-aid": op.isd_p_aid,
                    "Data": es8.send_data_payload(commands(s, op)).hex().upper(), "MoreToDo": more_to_do}
        self._send_async(op_id, now, "ES3-SendData", params)

    def _responses(self, op: SmdpOperation, callback: dict, expected: int) -> list[tuple[int, bytes]]:
        script = bytes.fromhex(callback.get("euicc_response") or "")
        try:
            executed, responses = es8.parse_send_data_response(script)
        except ValueError as exc:
            raise FunctionFailed(codes.ISDP_EXECUTION_ERROR, f"unreadable ISD-P response: {exc}") from None
        if executed != expected or len(responses) != expected or es8.is_error_response(*responses[-1]):
            raise FunctionFailed(codes.ISDP_EXECUTION_ERROR, f"the ISD-P answered {callback.get('euicc_response')}")
        return responses

    def _send_keyset_1(self, op_id: int, now: datetime) -> None:
        self._send_data(op_id, now, lambda s, op: [
            es8.command_tlv(es8.install_for_personalization(bytes.fromhex(op.isd_p_aid))),
            es8.command_tlv(es8.store_data_3a01(self.identity.certificate)),
        ])

    def _done_keyset_1(self, s: Session, op: SmdpOperation, failure, callback: dict, now: datetime) -> None:
        try:
            if failure is not None:
                raise failure
            responses = self._responses(op, callback, 2)
            challenge = ecka.parse_challenge_response(responses[1][1][:-2])
        except (FunctionFailed, ValueError) as exc:
            self._failed(s, op, _as_failure(exc), now)
            return
        op.progress = {**op.progress, "challenge": challenge.hex()}
        self._goto(op, "keyset_2", now)

    def _send_keyset_2(self, op_id: int, now: datetime) -> None:
        def commands(s: Session, op: SmdpOperation) -> list[bytes]:
            secrets = self._secrets(op)
            curve = self._ecasd_key(op).curve
            if "ephemeral" in secrets:  # a resend: the same 3A02 (same key, same MessageID)
                return [bytes.fromhex(secrets["store_data_3a02"])]
            crt = ecka.KeyAgreementCrt()
            dgi, ephemeral = ecka.smdp_key_agreement(self.identity.key, bytes.fromhex(op.progress["challenge"]), curve, crt)
            apdu = es8.command_tlv(es8.store_data_3a02(dgi))
            self._seal(op, {**secrets, "ephemeral": ecka.export_private(ephemeral), "store_data_3a02": apdu.hex()})
            return [apdu]
        self._send_data(op_id, now, commands)

    def _done_keyset_2(self, s: Session, op: SmdpOperation, failure, callback: dict, now: datetime) -> None:
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
        self._goto(op, "scp03t_open", now)

    # -- scp03t_open / download: ES8 DownloadAndInstallation ---------------------------------

    def _send_scp03t_open(self, op_id: int, now: datetime) -> None:
        def commands(s: Session, op: SmdpOperation) -> list[bytes]:
            secrets = self._secrets(op)
            if "initialize_update" not in secrets:  # a resend repeats the same '84' (same host challenge)
                host = scp03t.Scp03tHost(StaticKeys.from_hex(secrets["keys"]), secrets["kvn"], secrets["key_id"])
                secrets = {**secrets, "initialize_update": host.initialize_update().hex()}
                self._seal(op, {**secrets, "scp03t": host.state()})
            return [bytes.fromhex(secrets["initialize_update"])]
        self._send_data(op_id, now, commands)

    def _done_scp03t_open(self, s: Session, op: SmdpOperation, failure, callback: dict, now: datetime) -> None:
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
        self._goto(op, "download", now)

    def _segments(self, package: bytes) -> list[bytes]:
        size = self.settings.segment_size
        return [package[i:i + size] for i in range(0, len(package), size)]

    def _send_download(self, op_id: int, now: datetime) -> None:
        def params(s: Session, op: SmdpOperation) -> dict:
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
            return {"Eid": op.eid, "Sd-aid": op.isd_p_aid, "Data": secrets["batch"].upper(),
                    "MoreToDo": not secrets["last"]}
        self._send_async(op_id, now, "ES3-SendData", params)

    def _done_download(self, s: Session, op: SmdpOperation, failure, callback: dict, now: datetime) -> None:
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
        self._goto(op, "completed" if secrets["last"] else "download", now)

    # -- completed / enable ------------------------------------------------------------------

    def _send_completed(self, op_id: int, now: datetime) -> None:
        with self.db.session() as s:
            op = s.get(SmdpOperation, op_id)
            held = self.warehouse.held(s, op.iccid)
            eid, iccid, smsr_id, ptype = op.eid, op.iccid, op.smsr_id, op.profile_type
        try:
            self._port(smsr_id).profile_download_completed(
                eid, iccid, profile_type=ptype, address=SubscriptionAddress(imsi=held.imsi, msisdn=held.msisdn))
        except FunctionFailed as failure:
            if isinstance(failure, PeerUnreachable):
                with self.db.session() as s:
                    op = s.get(SmdpOperation, op_id)
                    op.next_attempt_at, op.lease_until = now + timedelta(seconds=self.settings.retry), None
                return
            with self.db.session() as s:
                self._failed(s, s.get(SmdpOperation, op_id), failure, now)
            return
        with self.db.session() as s:
            op = s.get(SmdpOperation, op_id)
            op.secrets = None  # the ISD-P keyset is not needed any more
            if op.enable:
                self._goto(op, "enable", now)
            else:
                self._installed(s, op, now)

    def _installed(self, s: Session, op: SmdpOperation, now: datetime) -> None:
        self.warehouse.mark_installed(s, op.iccid)
        self._finish(s, op, Status.EXECUTED_SUCCESS, None, now=now)

    def _send_enable(self, op_id: int, now: datetime) -> None:
        self._send_async(op_id, now, "ES3-EnableProfile", lambda s, op: {"Eid": op.eid, "Iccid": op.iccid})

    def _done_enable(self, s: Session, op: SmdpOperation, failure, callback: dict, now: datetime) -> None:
        if failure is not None:
            self._failed(s, op, failure, now)
            return
        self._installed(s, op, now)

    # -- cleanup -----------------------------------------------------------------------------

    def _send_cleanup(self, op_id: int, now: datetime) -> None:
        self._send_async(op_id, now, "ES3-DeleteISDP", lambda s, op: {"Eid": op.eid, "Iccid": op.iccid},
                         validity=int(self.settings.default_validity))

    def _done_cleanup(self, s: Session, op: SmdpOperation, failure, callback: dict, now: datetime) -> None:
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

    def _send_relay_check(self, op_id: int, now: datetime) -> None:
        with self.db.session() as s:
            op = s.get(SmdpOperation, op_id)
            eid, iccid, smsr_id, mno = op.eid, op.iccid, op.smsr_id, op.requester_id
        try:
            failure = _not_owner(self._port(smsr_id).get_eis(eid).profile(iccid), mno, iccid, eid)
            if failure is not None:
                raise failure
        except FunctionFailed as failure:
            with self.db.session() as s:
                self._finish(s, s.get(SmdpOperation, op_id), failure.status, failure, now=now)
            return
        with self.db.session() as s:
            self._goto(s.get(SmdpOperation, op_id), "relay", now)

    def _send_relay(self, op_id: int, now: datetime) -> None:
        with self.db.session() as s:
            function = s.get(SmdpOperation, op_id).function
        self._send_async(op_id, now, ES3_NAME[function], lambda s, op: {"Eid": op.eid, "Iccid": op.iccid})

    def _done_relay(self, s: Session, op: SmdpOperation, failure, callback: dict, now: datetime) -> None:
        if failure is not None:
            self._finish(s, op, failure.status, failure, now=now)
        else:
            self._finish(s, op, Status.EXECUTED_SUCCESS, None, now=now)


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _not_owner(profile, mno_id: str, iccid: str, eid: str) -> FunctionFailed | None:
    """Why MNO ``mno_id`` may not act on ``profile`` (as the SM-SR shows it to this SM-DP), or None."""
    if profile is None:
        return FunctionFailed(codes.ICCID_UNKNOWN, f"ICCID {iccid} is not on eUICC {eid}", subject_identifier=iccid)
    if profile.mno_id != mno_id:
        return FunctionFailed(codes.ICCID_NOT_ALLOWED, f"profile {iccid} belongs to another MNO", subject_identifier=iccid)
    return None


def _as_failure(exc: Exception) -> FunctionFailed:
    if isinstance(exc, FunctionFailed):
        return exc
    return FunctionFailed(codes.ISDP_EXECUTION_ERROR, f"unexpected ISD-P response: {exc}")
