"""SM-SR change, at the new SM-SR (SGP.02 3.8; sgp02-wire.md 6.5): prepared by the MNO, the eUICC handed over by the
current SM-SR, a key set of this SM-SR's agreed with the card's ISD-R through it, and the eUICC taken over.

Theory of operation
-------------------
Two SM-SRs run one change, each on the one step engine (persistence.engine). At the current SM-SR the change is an
operation of the eUICC's queue (smsr_core.platform, ``SMSRChange``: it holds the eUICC, so nothing else runs on the
card meanwhile, and relays this SM-SR's ES7 requests to the card). Here it is a :class:`~smsr_core.ops_models.HandoverIn`
row that runs through :data:`RECEIVE`, the table below. ES7 requests this SM-SR owes the other are outbox rows
(``kind`` request), written in the transaction of the step that asks, so a crash never loses one and never sends one
that was not decided; the row then waits for the callback relating to that request's MessageID
(``awaiting_message_id``), which :meth:`Handovers.on_callback` hands to the step's ``answer`` in the transaction that
receives it. A peer that stays away is tried again by the outbox until the change's validity period ends.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Callable, Protocol

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import bindparam, select
from sqlalchemy import or_ as sa_or
from sqlalchemy.orm import Session

from keys.secretbox import SecretBox
from persistence import engine
from persistence.db import Database
from persistence.prepared import Prepared, dbapi
from persistence.engine import ACTIVE, Doorbell, Flow, Silent, Step, utc
from sgp02 import codes, plain
from sgp02 import eis as v
from sgp02.codes import FunctionFailed, Status
from sgp02.ecasd import verified_ecasd_key
from sgp02.roles import Caller

from .models import EisAuditRecord, Euicc, euicc_row
from .ops_models import EuiccOta, HandoverIn
from .registry import EuiccView

log = logging.getLogger(__name__)

RECEIVE = Flow("SM-SR change, at the new SM-SR", [
    Step("prepared", "ES4-PrepareSMSRChange answered; waits for the current SM-SR's ES7-HandoverEUICC (its EIS: the "
         "ECASD chain verified, the preparing MNO's profile enabled)", run="keep_waiting", answer="on_handover",
         then="authenticate"),
    Step("authenticate", "ES7-AuthenticateSMSR to the current SM-SR (EID, CERT.SR.ECDSA: it relays STORE DATA 3A01 to "
         "the ISD-R); answer: the card's random challenge", run="send_authenticate", answer="on_authenticated",
         then="key_set"),
    Step("key_set", "ES7-CreateAdditionalKeySet (the key agreement, ePK.SR.ECKA, the signature over them and the "
         "challenge: 3A02); answer: DR and receipt. The receipt verified is the commit point: the EIS is this SM-SR's",
         run="send_key_set", answer="on_key_set", then="finalise"),
    Step("finalise", "over the new key set, a card operation of this SM-SR: DELETE of the old SM-SR's key sets and "
         "STORE DATA 3A07 (this SM-SR's SMS address); answer: that operation's end", run="start_finalise",
         answer="on_finalised", then="notify"),
    Step("notify", "ES4/ES3-HandleSMSRChangeNotification to each MNO / SM-DP with a profile on the card, and the "
         "ES7-HandoverEUICC callback (success, or with warning when finalise failed) to the old SM-SR", run="notify"),
])
__doc__ += """
.. code-block:: text

""" + "\n".join("    " + line for line in RECEIVE.table().splitlines()) + """

Before the commit point any failure (a refusal or an EXPIRED callback from the current SM-SR, a receipt that does not
verify, the validity period ending) ends the row FAILED/EXPIRED: the ES7-HandoverEUICC callback carries the failed
step's code, the current SM-SR stays in charge (the card may hold an unused key set of this SM-SR's, which nobody can
use without the ephemeral key the row forgets). After it, the change always completes: success, or with warning when
the card could not be reached to delete the old key sets (SGP.02: never failed after the commit point).

Who may ask: PrepareSMSRChange comes from an MNO (the ES4 caller roles) for an EID this SM-SR does not hold, naming a
registered SM-SR as the current one; a second preparation of the same EID while one is open is refused 8.1/4.4.
HandoverEUICC is taken only from the SM-SR the preparation named, for a prepared EID (else 8.1.1/3.9), and only when
the preparing MNO owns the enabled profile in the EIS handed over (the MNO that may ask the change at the current
SM-SR, platform's rule); its ECASD chain must verify against the CI. Callbacks are taken only from the SM-SR the
request went to, relating to the request this row awaits.
"""

PREPARED, AUTHENTICATE, KEY_SET, FINALISE, NOTIFY = "prepared", "authenticate", "key_set", "finalise", "notify"
DONE = engine.DONE
# The current SM-SR's operation (smsr_core.platform.Function values) and its steps, named here without importing it.
SMSR_CHANGE = "SMSRChange"
HANDOVER, SEND_STEP = "handover", "send"


@dataclass(frozen=True)
class SmsrIdentity:
    """This SM-SR as the card and its peers know it."""

    oid: str
    key: ec.EllipticCurvePrivateKey  # SK.SR.ECDSA: signs the key agreement
    certificate: bytes  # CERT.SR.ECDSA, GP '7F21', issued by the CI the card trusts
    ci_pem: bytes  # the CI root an ECASD chain must end at
    sms_address: str  # where the card sends its answers and notifications (STORE DATA 3A07)


@dataclass(frozen=True)
class Timing:
    default_validity: float = 3600.0
    max_validity: float = 7 * 86400.0
    lease: float = 30.0


@dataclass(frozen=True)
class Prepare:
    """An ES4-PrepareSMSRChange, as accepted."""

    requester: Caller
    eid: str
    current_smsr_id: str
    message_id: str | None
    function_call_id: str | None
    reply_to: str | None
    validity_period: int | None
    received_at: datetime


class KeySetAgreement(Protocol):
    """Scenario #3 for the ISD-R, this SM-SR's half (keys.ecka): what goes into ES7-CreateAdditionalKeySet, and the
    key set once the card's receipt verifies."""

    def offer(self, identity: SmsrIdentity, ecasd_key: ec.EllipticCurvePublicKey, challenge: bytes,
              kvn: int) -> tuple[tuple[tuple[str, str], ...], bytes]:
        """(the request's fields after Eid, in schema order; the ephemeral private key as bytes, to be sealed)."""

    def finish(self, ephemeral: bytes, ecasd_key: ec.EllipticCurvePublicKey, fields: tuple[tuple[str, str], ...],
               derivation_random: bytes | None, receipt: bytes) -> v.Keyset:
        """The new ISD-R SCP80 key set (with its key values); FunctionFailed ISDR_KEYSET_NOT_VERIFIED when the receipt
        does not verify."""


class HandoverSink(Protocol):
    """What the change owes others (the esx outbox), inside the caller's session."""

    def peer_request(self, s: Session, function: str, peer_oid: str, eid: str, *, validity: int | None,
                     fields: tuple[tuple[str, str], ...] = (), eis: v.Eis | None = None) -> str:
        """An ES7 request to ``peer_oid``; returns its MessageID (the callback relates to it)."""

    def prepared(self, s: Session, row: HandoverIn, status: Status, failure: FunctionFailed | None) -> None:
        """The ES4-PrepareSMSRChange callback to the MNO."""

    def handed_over(self, s: Session, row: HandoverIn, status: Status, failure: FunctionFailed | None) -> None:
        """The ES7-HandoverEUICC callback to the current SM-SR."""

    def smsr_changed(self, s: Session, eis: v.Eis, when: datetime) -> None:
        """HandleSMSRChangeNotification to every MNO (ES4) and SM-DP (ES3) with a profile on the eUICC."""


class CardQueue(Protocol):
    """The card operations of this SM-SR (smsr_core.platform.Platform)."""

    def queue_finalise(self, s: Session, eid: str, now: datetime, *, handover_id: int, delete_kvns: list[int],
                       sms_address: str) -> int:
        """Queue FinaliseISDRhandover on the eUICC; its id. Its end wakes the HandoverIn row ``handover_id``."""


def _eis_json(eis: v.Eis) -> str:
    return json.dumps(plain.dump(v.Eis, eis), sort_keys=True, separators=(",", ":"))


def _eis_of(row: HandoverIn) -> v.Eis:
    return plain.load(v.Eis, json.loads(row.eis))


class Handovers:
    """The new SM-SR's side of SM-SR changes (the module doc)."""

    def __init__(self, db: Database, identity: SmsrIdentity, box: SecretBox, sink: HandoverSink, cards: CardQueue,
                 agreement: KeySetAgreement, *, smsr_known: Callable[[str], bool],
                 eum_cert_for: Callable[[str], bytes | None], timing: Timing | None = None,
                 doorbell: Doorbell | None = None) -> None:
        self.db = db
        self.identity = identity
        self.box = box
        self.sink = sink
        self.cards = cards
        self.agreement = agreement
        self.smsr_known = smsr_known
        self.eum_cert_for = eum_cert_for
        self.timing = timing or Timing()
        self.doorbell: Doorbell = doorbell or Silent()
        RECEIVE.check(self)

    # -- ES4-PrepareSMSRChange -----------------------------------------------------------------

    def refuse(self, req: Prepare, failure: FunctionFailed) -> None:
        """A preparation refused before it could be checked (the schema, the caller): recorded, answered by callback."""
        self.prepare(req, refused=failure)

    def prepare(self, req: Prepare, *, refused: FunctionFailed | None = None) -> tuple[int, bool]:
        """Persist the preparation and answer it (its callback is in the same transaction): (row id, new)."""
        eid = req.eid.upper()
        with self.db.session() as s:
            row = HandoverIn(
                requester_id=req.requester.oid, message_id=req.message_id, function_call_id=req.function_call_id,
                reply_to=req.reply_to, accepted_at=req.received_at, state=ACTIVE, step=PREPARED, attempts=0,
                eid=eid, current_smsr_id=req.current_smsr_id,
                expires_at=engine.validity_until(req.received_at, req.validity_period, self.timing.default_validity,
                                                 self.timing.max_validity),
                next_attempt_at=None, progress={},
            )
            found = engine.replayed(s, row)
            if found is not None:
                if engine.reuses_call_id(found, req.message_id):
                    self.sink.prepared(s, row, Status.FAILED, codes.call_id_reused(req.function_call_id,
                                                                                     found.message_id))
                return found.id, False
            failure = refused or self._preparation_refused(s, row, req)
            s.add(row)
            s.flush()
            if failure is not None:
                self._end(s, row, failure.status, failure, req.received_at, answer_handover=False)
            else:
                self.sink.prepared(s, row, Status.EXECUTED_SUCCESS, None)
            return row.id, True

    def _preparation_refused(self, s: Session, row: HandoverIn, req: Prepare) -> FunctionFailed | None:
        if req.current_smsr_id == self.identity.oid:
            return FunctionFailed(codes.SMSR_TARGET_IS_CURRENT, "this SM-SR is the one named as current",
                                  subject_identifier=req.current_smsr_id)
        if not self.smsr_known(req.current_smsr_id):
            return FunctionFailed(codes.SMSR_UNKNOWN, f"SM-SR {req.current_smsr_id} is not known to this SM-SR",
                                  subject_identifier=req.current_smsr_id)
        if s.get(Euicc, row.eid) is not None:
            return FunctionFailed(codes.SMSR_CANNOT_TAKE, f"this SM-SR manages eUICC {row.eid} already",
                                  subject_identifier=row.eid)
        if self._open(s, row.eid) is not None:
            return FunctionFailed(codes.SMSR_CHANGE_IN_PROGRESS, f"an SM-SR change of eUICC {row.eid} is prepared or "
                                  "in progress here already", subject_identifier=row.eid)
        return None

    @staticmethod
    def _open(s: Session, eid: str) -> HandoverIn | None:
        return s.scalars(select(HandoverIn).where(HandoverIn.eid == eid, HandoverIn.state == ACTIVE)
                         .order_by(HandoverIn.id)).first()

    # -- ES7-HandoverEUICC (from the current SM-SR) --------------------------------------------

    def on_handover(self, sender: str, eis: v.Eis, *, message_id: str | None, reply_to: str | None,
                    received_at: datetime) -> None:
        """The current SM-SR hands the eUICC over. Accepted or refused here, in one transaction: refused (8.1.1/3.9
        when no preparation of this EID names ``sender``; the ECASD chain's code; 8.1/1.2 when the preparing MNO does
        not own the enabled profile) means the callback relating to ``message_id`` says why, at once."""
        eid = eis.eid.upper()
        with self.db.session() as s:
            row = s.scalars(select(HandoverIn).where(
                HandoverIn.eid == eid, HandoverIn.state == ACTIVE, HandoverIn.current_smsr_id == sender)
                .order_by(HandoverIn.id).with_for_update()).first()
            if row is not None and row.handover_message_id is not None:
                if row.handover_message_id == message_id:
                    return  # a replay of the request being run
                row = None
            if row is None or row.step != PREPARED or utc(row.expires_at) <= received_at:
                refused = HandoverIn(requester_id=sender, accepted_at=received_at, state=ACTIVE, step=PREPARED,
                                     attempts=0, eid=eid, current_smsr_id=sender, expires_at=received_at,
                                     handover_message_id=message_id, handover_reply_to=reply_to,
                                     handover_received_at=received_at, progress={})
                self.sink.handed_over(s, refused, Status.FAILED, FunctionFailed(
                    codes.NOT_PREPARED, f"no SM-SR change of eUICC {eid} from {sender} was prepared here",
                    subject_identifier=eid))
                return
            row.handover_message_id, row.handover_reply_to, row.handover_received_at = message_id, reply_to, received_at
            try:
                self._check_handed_over(row, eis, received_at)
            except FunctionFailed as failure:
                self._end(s, row, failure.status, failure, received_at)
                return
            row.eis = _eis_json(eis)
            self._goto(s, row, AUTHENTICATE, received_at)

    def _check_handed_over(self, row: HandoverIn, eis: v.Eis, now: datetime) -> None:
        self._ecasd_key(row, eis, now)
        enabled = next((p for p in eis.profiles if p.state == v.ProfileState.ENABLED), None)
        if enabled is None or enabled.mno_id != row.requester_id:
            raise FunctionFailed(codes.EUICC_NOT_ALLOWED, f"{row.requester_id}, which prepared the change, does not own "
                                 "the enabled profile of the eUICC handed over", subject_identifier=row.eid)

    def _ecasd_key(self, row: HandoverIn, eis: v.Eis, now: datetime) -> ec.EllipticCurvePublicKey:
        """PK.ECASD.ECKA of the EIS handed over, its chain CI -> EUM -> ECASD verified (sgp02.ecasd)."""
        eum = self.eum_cert_for(eis.signed_info.eum_id)
        if eum is None:
            raise FunctionFailed(codes.ECASD_CERT_INVALID, f"EUM {eis.signed_info.eum_id} is not known to this SM-SR",
                                 subject_identifier=row.eid)
        return verified_ecasd_key(eis, self.identity.ci_pem, eum, now)

    # -- ES7 callbacks (from the current SM-SR) --------------------------------------------------

    def on_callback(self, sender: str, relates_to: str | None, status: Status, failure: FunctionFailed | None,
                    results: dict[str, str], now: datetime) -> bool:
        """An ES7-AuthenticateSMSR / CreateAdditionalKeySet callback: the awaiting step's ``answer`` handles it, in
        this transaction. False when no row awaits it from ``sender``."""
        if not relates_to:
            return False
        with self.db.session() as s:
            row = s.scalars(select(HandoverIn).where(HandoverIn.awaiting_message_id == relates_to,
                                                     HandoverIn.state == ACTIVE).with_for_update()).first()
            if row is None or row.current_smsr_id != sender:
                return False
            row.awaiting_message_id = None
            if failure is not None or status not in (Status.EXECUTED_SUCCESS, Status.EXECUTED_WITHWARNING):
                ended = Status.FAILED if status in (Status.EXECUTED_SUCCESS, Status.EXECUTED_WITHWARNING) else status
                self._end(s, row, ended, failure or FunctionFailed(
                    codes.INTERNAL_ERROR, f"the current SM-SR answered {status.value}", status=ended), now)
                return True
            RECEIVE.answerer(self, row.step)(s, row, results, now)
            return True

    # -- the steps ---------------------------------------------------------------------------

    def keep_waiting(self, s: Session, row: HandoverIn, now: datetime) -> None:
        engine.wait(row, None)

    def send_authenticate(self, s: Session, row: HandoverIn, now: datetime) -> None:
        row.awaiting_message_id = self.sink.peer_request(
            s, "AuthenticateSMSR", row.current_smsr_id, row.eid, validity=self._validity(row, now),
            fields=(("SmsrCertificate", self.identity.certificate.hex().upper()),))
        engine.wait(row, None)

    def on_authenticated(self, s: Session, row: HandoverIn, results: dict[str, str], now: datetime) -> None:
        challenge = results.get("RandomChallenge")
        if not challenge:
            self._end(s, row, Status.FAILED, FunctionFailed(
                codes.ISDR_EXECUTION_ERROR, "the AuthenticateSMSR callback carries no RandomChallenge",
                subject_identifier=row.eid), now)
            return
        row.progress = {**row.progress, "challenge": challenge}
        self._goto(s, row, KEY_SET, now)

    def send_key_set(self, s: Session, row: HandoverIn, now: datetime) -> None:
        eis = _eis_of(row)
        kvn = _new_kvn(eis.isd_r)
        fields, ephemeral = self.agreement.offer(self.identity, self._ecasd_key(row, eis, now),
                                                 bytes.fromhex(row.progress["challenge"]), kvn)
        row.secrets = self.box.seal(_context(row), {"ephemeral": ephemeral.hex()})
        row.progress = {**row.progress, "kvn": kvn, "fields": [list(f) for f in fields]}
        row.awaiting_message_id = self.sink.peer_request(
            s, "CreateAdditionalKeySet", row.current_smsr_id, row.eid, validity=self._validity(row, now),
            fields=fields)
        engine.wait(row, None)

    def on_key_set(self, s: Session, row: HandoverIn, results: dict[str, str], now: datetime) -> None:
        """The commit point: the receipt verified, the eUICC is this SM-SR's (its EIS, with the new key set only)."""
        eis = _eis_of(row)
        dr = results.get("DerivationRandom")
        try:
            keyset = self.agreement.finish(
                bytes.fromhex(self.box.open(_context(row), row.secrets)["ephemeral"]), self._ecasd_key(row, eis, now),
                tuple(tuple(f) for f in row.progress["fields"]), bytes.fromhex(dr) if dr else None,
                bytes.fromhex(results.get("Receipt") or ""))
        except FunctionFailed as failure:
            self._end(s, row, failure.status, failure, now)
            return
        row.secrets = None  # the ephemeral key is never needed again
        old = [ks.version for ks in eis.isd_r.keysets]
        taken = replace(eis, smsr_id=self.identity.oid, isd_r=replace(eis.isd_r, keysets=(keyset,)))
        s.add(euicc_row(taken, now, self.box))
        s.flush()  # the eUICC before its AuditTrail rows (their foreign key)
        for record in eis.audit_trail:  # the AuditTrail comes along
            s.add(EisAuditRecord(eid=record.eid, smsr_id=record.smsr_id, operation_date=record.operation_date,
                                 operation_type=record.operation_type, requester_id=record.requester_id,
                                 status=record.status, subject=record.subject, reason=record.reason,
                                 isd_p_aid=record.isd_p_aid, iccid=record.iccid, imei=record.imei, meid=record.meid))
        s.add(EisAuditRecord(eid=row.eid, smsr_id=self.identity.oid, operation_date=now,
                             operation_type=ESTABLISH_ISDR_KEYSET, requester_id=row.requester_id,
                             status=Status.EXECUTED_SUCCESS.value))
        if s.get(EuiccOta, row.eid) is None:  # a fresh SCP80 counter under the new key set
            s.add(EuiccOta(eid=row.eid, counter=0, last_notification_seq=-1, dirty=False))
        row.eis = None
        row.progress = {**row.progress, "committed": True, "old_kvns": old}
        self._goto(s, row, FINALISE, now)

    def start_finalise(self, s: Session, row: HandoverIn, now: datetime) -> None:
        if "finalise_operation_id" not in row.progress:
            op_id = self.cards.queue_finalise(s, row.eid, now, handover_id=row.id,
                                              delete_kvns=list(row.progress.get("old_kvns", [])),
                                              sms_address=self.identity.sms_address)
            row.progress = {**row.progress, "finalise_operation_id": op_id}
        engine.wait(row, None)

    def on_finalised(self, s: Session, row: HandoverIn, status: Status, failure: FunctionFailed | None,
                     now: datetime) -> None:
        """The finalising card operation ended: on to notify, with a warning when it failed."""
        if failure is not None or status != Status.EXECUTED_SUCCESS:
            row.progress = {**row.progress, "warning": failure.message if failure else status.value}
        self._goto(s, row, NOTIFY, now)

    def notify(self, s: Session, row: HandoverIn, now: datetime) -> None:
        from .models import eis_value

        self.sink.smsr_changed(s, eis_value(s, s.get(Euicc, row.eid)), now)
        warning = row.progress.get("warning")
        if warning:
            self._end(s, row, Status.EXECUTED_WITHWARNING, FunctionFailed(
                codes.ISDR_EXECUTION_ERROR, f"the old SM-SR's key sets could not be deleted on the card: {warning}",
                subject_identifier=row.eid, status=Status.EXECUTED_WITHWARNING), now)
        else:
            self._end(s, row, Status.EXECUTED_SUCCESS, None, now)

    # -- the worker --------------------------------------------------------------------------

    def finalised(self, s: Session, handover_id: int, status: Status, failure: FunctionFailed | None,
                  now: datetime) -> None:
        """Platform: the finalising operation of ``handover_id`` ended (in the transaction that ended it)."""
        row = s.get(HandoverIn, handover_id)
        if row is not None and row.state == ACTIVE and row.step == FINALISE:
            self.on_finalised(s, row, status, failure, now)

    def tick(self, now: datetime) -> int:
        """Run the due steps and end what ran out of time; how many rows moved. One prepared read when nothing is
        due (persistence.prepared: it runs at every tick of every SM-SR worker)."""
        with dbapi(self.db.engine) as conn:
            ids = [r.id for r in _DUE_OR_EXPIRED.all(conn, active=ACTIVE, now=now)]

        def run(row_id: int) -> None:
            with self.db.session() as s:
                if not engine.lease(s, HandoverIn, row_id, now, self.timing.lease, HandoverIn.state == ACTIVE,
                                    due_if=sa_or(HandoverIn.next_attempt_at <= now, HandoverIn.expires_at <= now)):
                    return
                row = s.get(HandoverIn, row_id)
                if utc(row.expires_at) <= now:
                    self._expire(s, row, now)
                    if row.state != ACTIVE or row.next_attempt_at is None or utc(row.next_attempt_at) > now:
                        return
                RECEIVE.runner(self, row.step)(s, row, now)

        return engine.run_leased(ids, lambda _: True, run, what="SM-SR change")

    def _expire(self, s: Session, row: HandoverIn, now: datetime) -> None:
        """Out of time: before the commit point the change ends EXPIRED (the current SM-SR stays in charge); after it,
        it carries on (it can only complete)."""
        if row.progress.get("committed"):
            row.expires_at = now + timedelta(seconds=self.timing.default_validity)
            return
        self._end(s, row, Status.EXPIRED, FunctionFailed(
            codes.EXPIRED_TTL, f"the SM-SR change ran out of time at step {row.step}", status=Status.EXPIRED), now)

    # -- moving a row ------------------------------------------------------------------------

    def _goto(self, s: Session, row: HandoverIn, step: str, now: datetime) -> None:
        row.step = step
        engine.wait(row, now)
        engine.due_now(s, self.doorbell)

    def _end(self, s: Session, row: HandoverIn, status: Status, failure: FunctionFailed | None, now: datetime, *,
             answer_handover: bool = True) -> None:
        """The change ends here (once: engine.finish_once): the current SM-SR is told when it handed the eUICC over;
        a preparation refused at once is told to the MNO instead."""
        if row.id is not None and not engine.finish_once(s, row):
            return
        engine.record_result(row, status, failure, now)
        row.awaiting_message_id, row.secrets = None, None
        if not answer_handover:
            self.sink.prepared(s, row, status, failure)
        elif row.handover_message_id is not None:
            self.sink.handed_over(s, row, status, failure)

    def _validity(self, row: HandoverIn, now: datetime) -> int:
        return max(1, int((utc(row.expires_at) - now).total_seconds()))


_HI = HandoverIn.__table__
# Rows whose step is due or whose validity period ended, not leased (Handovers.tick).
_DUE_OR_EXPIRED = Prepared(select(_HI.c.id).where(
    _HI.c.state == bindparam("active"),
    sa_or(_HI.c.next_attempt_at <= bindparam("now"), _HI.c.expires_at <= bindparam("now")),
    sa_or(_HI.c.lease_until.is_(None), _HI.c.lease_until < bindparam("now"))).order_by(_HI.c.id))


def _context(row: HandoverIn) -> str:
    return f"{row.eid}/handover/{row.id}"


def _new_kvn(isd_r: v.SecurityDomain) -> int:
    """The key version of the new SCP80 key set (keys.ecka.free_scp80_kvn: one the ISD-R does not hold)."""
    from keys import ecka

    try:
        return ecka.free_scp80_kvn({ks.version for ks in isd_r.keysets})
    except ValueError as exc:
        raise FunctionFailed(codes.ISDR_EXECUTION_ERROR, f"no SCP80 key version is free on the ISD-R: {exc}") from None


# -- the current SM-SR's side: the SMSRChange operation (a mixin of smsr_core.platform.Platform) ----------------------


class HandingOver:
    """The current SM-SR's part of an SM-SR change, as steps of the eUICC's card operation ``SMSRChange``
    (smsr_core.platform.CARD_OPERATION: queued -> handover, and send / await_por for each command relayed).

    The operation starts like any other (it waits for the operations before it and holds the eUICC until it ends, so
    nothing else runs on the card meanwhile; what is asked meanwhile queues behind it). Its ``handover`` step sends
    ES7-HandoverEUICC with the EIS (no key values) to the target SM-SR, then waits. The target's ES7-AuthenticateSMSR
    and ES7-CreateAdditionalKeySet come in as answers (:meth:`on_peer_request`): each becomes the operation's next
    packet to the ISD-R (STORE DATA 3A01, 3A02), whose PoR becomes the ES7 callback (random challenge; DR and receipt),
    and the operation waits in ``handover`` again. The HandoverEUICC callback ends it (:meth:`handover_result`):
    success (or with warning), and the EIS is deleted here and the operations that waited for the eUICC end 8.1.1/3.9
    naming the new SM-SR; a failure, and this SM-SR is still in charge (the eUICC freed, its queue goes on). Its
    validity period ending first ends it EXPIRED, this SM-SR still in charge.
    """

    # provided by Platform
    db: Database
    smsr_id: str
    sink: object
    doorbell: Doorbell

    def smsr_known(self, oid: str) -> bool:
        """Is ``oid`` a registered SM-SR? (the runtime replaces this with the entity registry's answer)"""
        return False

    def _check_smsr_change(self, s: Session, op, euicc: Euicc | EuiccView, caller: Caller) -> None:
        """ES4-SMSRChange: the caller owns the enabled profile (our reading of SGP.02 3.8: the operator in charge of
        the eUICC asks; other MNOs with profiles are told afterwards); the target is a registered SM-SR, not this one;
        no other change of the eUICC is queued or running."""
        from .ops_models import Operation

        target = op.params.get("target_smsr_id") or ""
        enabled = next((p for p in euicc.profiles if p.state == v.ProfileState.ENABLED.value), None)
        if caller.role != "smsr" and (enabled is None or enabled.mno_id != caller.oid):
            raise FunctionFailed(codes.EUICC_NOT_ALLOWED, f"{caller.oid} does not own the enabled profile of eUICC "
                                 f"{euicc.eid}", subject_identifier=euicc.eid)
        if target == self.smsr_id:
            raise FunctionFailed(codes.SMSR_TARGET_IS_CURRENT, "the target SM-SR is this one",
                                 subject_identifier=target)
        if not self.smsr_known(target):
            raise FunctionFailed(codes.SMSR_UNKNOWN, f"SM-SR {target} is not known to this SM-SR",
                                 subject_identifier=target)
        other = s.scalars(select(Operation.id).where(
            Operation.eid == euicc.eid, Operation.function == SMSR_CHANGE, Operation.state != DONE,
            Operation.id != (op.id or -1))).first()
        if other is not None:
            raise FunctionFailed(codes.SMSR_CHANGE_IN_PROGRESS, f"an SM-SR change of eUICC {euicc.eid} is queued or "
                                 "in progress", subject_identifier=euicc.eid)

    def hand_over(self, s: Session, op, now: datetime) -> None:
        """handover: ES7-HandoverEUICC (once), then wait for the target's requests and its callback."""
        if op.awaiting_message_id is None:
            from .models import eis_value

            eis = eis_value(s, s.get(Euicc, op.eid))
            eis = replace(eis, isd_r=eis.isd_r.without_secrets())
            op.awaiting_message_id = self.sink.peer_request(
                s, "HandoverEUICC", op.params["target_smsr_id"], op.eid,
                validity=max(1, int((utc(op.expires_at) - now).total_seconds())), eis=eis)
        engine.wait(op, None)

    def on_peer_request(self, sender: str, function: str, eid: str, fields: dict[str, str], *,
                        message_id: str | None, reply_to: str | None, received_at: datetime) -> None:
        """handover's answer: the target SM-SR's ES7-AuthenticateSMSR or ES7-CreateAdditionalKeySet, relayed to the card
        as the operation's next packet. Refused at once (its callback says why) when no SMSRChange of ``eid`` to
        ``sender`` waits for it (8.1.1/3.9, SGP.02's "preparation not performed")."""
        from .ops_models import Operation

        eid = eid.upper()
        with self.db.session() as s:
            op = s.scalars(select(Operation).where(
                Operation.eid == eid, Operation.function == SMSR_CHANGE, Operation.state == ACTIVE)
                .with_for_update()).first()
            peer = {"function": function, "message_id": message_id, "reply_to": reply_to,
                    "received_at": received_at.isoformat(), "fields": fields}
            if op is not None and message_id and (
                    (op.params.get("peer") or {}).get("message_id") == message_id
                    or message_id in op.params.get("peers_answered", ())):
                # A replay (the peer's outbox sends again what it is not sure we got): the request being run, or one
                # answered already (its callback is in our outbox). Never relayed twice: a second 3A01 would draw a
                # new challenge and spoil the key agreement under way.
                return
            if op is None or op.params.get("target_smsr_id") != sender or op.step != HANDOVER:
                self.sink.peer_callback(s, sender, peer, Status.FAILED, FunctionFailed(
                    codes.NOT_PREPARED, f"no SM-SR change of eUICC {eid} to {sender} waits for {function}",
                    subject_identifier=eid), ())
                return
            op.params = {**op.params, "peer": peer}
            op.counter, op.step = None, SEND_STEP
            engine.wait(op, received_at)
            engine.due_now(s, self.doorbell)

    def refuse_peer_request(self, sender: str, function: str, failure: FunctionFailed, *, message_id: str | None,
                            reply_to: str | None, received_at: datetime) -> None:
        """An ES7 request refused before it could be taken (the caller's role, the schema): answered by its callback."""
        peer = {"function": function, "message_id": message_id, "reply_to": reply_to,
                "received_at": received_at.isoformat()}
        with self.db.session() as s:
            self.sink.peer_callback(s, sender, peer, failure.status, failure, ())

    @staticmethod
    def peer_commands(op) -> list[bytes]:
        """The ES5 command the target's request asks the ISD-R for (STORE DATA 3A01 or 3A02)."""
        from keys import ecka
        from ota import es5

        peer = op.params["peer"]
        fields = peer["fields"]
        if peer["function"] == "AuthenticateSMSR":
            return [es5.establish_isdr_key_set_3a01(bytes.fromhex(fields["SmsrCertificate"]))]
        return [es5.establish_isdr_key_set_3a02(additional_key_set(fields).dgi_3a02())]

    def on_peer_por(self, s: Session, op, euicc: Euicc, script, now: datetime) -> str:
        """The card's answer to the relayed command (None: the packet was refused): the ES7 callback (success with its
        results, or the card's refusal as a code), and the operation waits in handover again."""
        from ota import es5

        peer = op.params["peer"]
        results: tuple[tuple[str, str], ...] = ()
        failure = None
        if script is not None and script.responses and script.last_sw == es5.SW_OK:
            data = script.responses[-1][:-2]
            try:
                if peer["function"] == "AuthenticateSMSR":
                    results = (("RandomChallenge", es5.decode_isdr_challenge(data).hex().upper()),)
                else:
                    dr, receipt = es5.decode_isdr_key_set_receipt(data)
                    results = (("DerivationRandom", (dr or b"").hex().upper()), ("Receipt", receipt.hex().upper()))
            except ValueError as exc:
                failure = FunctionFailed(codes.ISDR_EXECUTION_ERROR, f"the card's answer to {peer['function']}: {exc}",
                                         subject_identifier=op.eid)
        else:
            sw = script.last_sw if script is not None and script.responses else 0
            code = codes.SMSR_CERT_REFUSED if peer["function"] == "AuthenticateSMSR" else codes.ISDR_EXECUTION_ERROR
            failure = FunctionFailed(code, f"the ISD-R refused {peer['function']} (SW {sw:04X})",
                                     subject_identifier=op.eid)
        self.sink.peer_callback(s, op.params["target_smsr_id"], peer,
                                Status.FAILED if failure else Status.EXECUTED_SUCCESS, failure, results)
        if script is not None:
            op.euicc_response = b"".join(script.responses).hex().upper()
        answered = [*op.params.get("peers_answered", ()), peer["message_id"]]
        op.params = {**op.params, "peer": None, "peers_answered": answered}
        op.counter, op.step = None, HANDOVER
        engine.wait(op, None)
        return f"operation {op.id}: {peer['function']} relayed, {'refused' if failure else 'answered'}"

    def handover_result(self, sender: str, relates_to: str | None, status: Status, failure: FunctionFailed | None,
                        now: datetime) -> bool:
        """The ES7-HandoverEUICC callback: the change ends. False when no SMSRChange awaits it from ``sender``."""
        from .ops_models import Operation

        if not relates_to:
            return False
        with self.db.session() as s:
            op = s.scalars(select(Operation).where(Operation.awaiting_message_id == relates_to)
                           .with_for_update()).first()
            if op is None or op.function != SMSR_CHANGE or op.params.get("target_smsr_id") != sender:
                return False
            op.awaiting_message_id = None
            if status in (Status.EXECUTED_SUCCESS, Status.EXECUTED_WITHWARNING):
                self._handed_over(s, op, sender, status, failure, now)
            elif op.state != DONE:
                self._finish(s, op, status, failure or FunctionFailed(
                    codes.INTERNAL_ERROR, f"the target SM-SR answered {status.value}"), now=now)
            return True

    def _handed_over(self, s: Session, op, target: str, status: Status, failure: FunctionFailed | None,
                     now: datetime) -> None:
        """The eUICC is the target's: the SMSRChange succeeds (after its expiry too: the target committed), the EIS
        is deleted here, and what waited for the eUICC ends, naming the new SM-SR."""
        from sqlalchemy import delete

        from .ops_models import Operation

        if op.state != DONE:
            self._finish(s, op, status, failure, now=now)
        moved = FunctionFailed(codes.EID_UNKNOWN, f"eUICC {op.eid} is now managed by SM-SR {target}",
                               subject_identifier=op.eid)
        for other in list(s.scalars(select(Operation).where(Operation.eid == op.eid, Operation.state != DONE,
                                                            Operation.id != op.id))):
            self._finish(s, other, Status.FAILED, moved, now=now)
        s.flush()
        s.execute(delete(EisAuditRecord).where(EisAuditRecord.eid == op.eid))
        euicc = s.get(Euicc, op.eid)
        if euicc is not None:
            s.delete(euicc)
        ota = s.get(EuiccOta, op.eid)
        if ota is not None:
            s.delete(ota)

    @staticmethod
    def finalise_commands(op) -> list[bytes]:
        """FinaliseISDRhandover: DELETE of the old SM-SR's key sets, then this SM-SR's SMS address (3A07)."""
        from ota import es5

        kvns = list(op.params.get("delete_kvns") or [])
        return ([es5.finalise_isdr_handover(kvns)] if kvns else []) + [es5.update_smsr_addressing(op.params["sms_address"])]


def additional_key_set(fields: dict[str, str]):
    """The ES7-CreateAdditionalKeySet fields (element name -> text, as they came or go) as keys.ecka.AdditionalKeySet:
    the current SM-SR builds its STORE DATA 3A02 from them, the new one signs what that will be (one mapping,
    keys.ecka.isdr_dgi_3a02). A field that does not parse is 1.6/2.1."""
    from keys import ecka

    try:
        return ecka.AdditionalKeySet(
            key_version_number=int(fields["KeyVersionNumber"]),
            initial_sequence_counter=int(fields["InitialSequenceCounter"]),
            ecc_key_length=fields["ECCKeyLength"], scenario_parameter=int(fields["ScenarioParameter"]) & 0xFF,
            host_id=bytes.fromhex(fields.get("HostId") or ""),
            ephemeral_public_key=bytes.fromhex(fields["EphemeralPublicKey"]),
            signature=bytes.fromhex(fields["Signature"]))
    except (KeyError, ValueError) as exc:
        raise FunctionFailed(codes.INVALID_PARAMETER, f"CreateAdditionalKeySet: {exc}") from None


def es7_fields(request) -> tuple[tuple[str, str], ...]:
    """keys.ecka.AdditionalKeySet as the ES7-CreateAdditionalKeySet elements after Eid, in schema order
    (ScenarioParameter is an xs:byte: signed)."""
    scenario = request.scenario_parameter - 256 if request.scenario_parameter > 127 else request.scenario_parameter
    return (("KeyVersionNumber", str(request.key_version_number)),
            ("InitialSequenceCounter", str(request.initial_sequence_counter)),
            ("ECCKeyLength", request.ecc_key_length), ("ScenarioParameter", str(scenario)),
            ("HostId", request.host_id.hex().upper()),
            ("EphemeralPublicKey", request.ephemeral_public_key.hex().upper()),
            ("Signature", request.signature.hex().upper()))


class EckaAgreement:
    """KeySetAgreement with keys.ecka: scenario #3 for the ISD-R, this SM-SR as the off-card entity."""

    def offer(self, identity: SmsrIdentity, ecasd_key: ec.EllipticCurvePublicKey, challenge: bytes,
              kvn: int) -> tuple[tuple[tuple[str, str], ...], bytes]:
        from keys import ecka

        request, ephemeral = ecka.smsr_key_agreement(identity.key, challenge, ecasd_key, kvn)
        return es7_fields(request), json.dumps(ecka.export_private(ephemeral)).encode()

    def finish(self, ephemeral: bytes, ecasd_key: ec.EllipticCurvePublicKey, fields: tuple[tuple[str, str], ...],
               derivation_random: bytes | None, receipt: bytes) -> v.Keyset:
        from keys import ecka
        from keys.scp80 import aes_kcv

        try:
            made = ecka.smsr_finish(ecka.import_private(json.loads(ephemeral)), ecasd_key,
                                    additional_key_set(dict(fields)), derivation_random, receipt)
        except ecka.EckaError as exc:
            code = codes.ISDR_KEYSET_NOT_VERIFIED if exc.kind == "receipt" else codes.ISDR_EXECUTION_ERROR
            raise FunctionFailed(code, f"the card's key set answer: {exc.message}") from None
        values = ((1, made.scp80.enc), (2, made.scp80.mac), (3, made.dek))
        return v.Keyset(made.kvn, "SCP80", 0, tuple(v.Key(index, aes_kcv(key), (("88", key.hex().upper()),))
                                                  for index, key in values))


# eUICC AuditTrail operation type of the ISD-R key set the new SM-SR agreed with the card (SGP.02's ES5 order, as
# smsr_core.platform.OPERATION_TYPE: EstablishISDRKeySet 0800, FinaliseISDRhandover 0900).
ESTABLISH_ISDR_KEYSET = "0800"
