"""The SM-SR's platform management: asynchronous operations that change what is on the card.

Theory of operation
-------------------
An asynchronous request (ES4/ES3 EnableProfile, DisableProfile, DeleteProfile/DeleteISDP, AuditEIS,
SetFallBackAttribute, CreateISDP, SendData, UpdateConnectivityParameters) becomes an
:class:`~smsr_core.ops_models.Operation` row before the requester gets its ``202 Accepted`` (:meth:`Platform.accept`;
persistence.engine.accept_once: a replayed MessageID or FunctionCallIdentifier finds the row in force and runs
nothing again). The one step engine (persistence.engine) runs the row through :data:`CARD_OPERATION`, the step
table below; ``operation.step`` names the step it stands on, ``operation.state`` says queued / held / active / done.
Workers (``esx.worker``) call :meth:`Platform.due_sends` (the due steps), :meth:`Platform.process_inbox` (the
answers: PoRs and card notifications, each handled by the ``answer`` of the step its operation waits in) and
:meth:`Platform.expire`. Every step is one transaction, and the
callback or notification it owes is added to the outbox (the :class:`MessageSink`) in that same transaction.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Protocol

from sqlalchemy import Integer, and_, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session, aliased, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from keys.scp80 import PorStatus
from keys.secretbox import SecretBox
from ota import es5, es8, sms
from persistence import engine
from persistence.db import Database
from persistence.engine import Doorbell, Flow, Silent, Step, utc
from persistence.prepared import Prepared, dbapi
from sgp02 import codes
from sgp02 import eis as v
from sgp02.codes import FunctionFailed, Status
from sgp02.eis import eis_seen_by
from sgp02.identifiers import allocate_isd_p_aid
from sgp02.roles import Caller, may_manage

from . import isdp
from .handover import HANDOVER, HandingOver
from .models import EisAuditRecord, Euicc, ProfileRow, eis_value, profile_value
from .ops_models import EuiccOta, Operation, SmsInbox
from .registry import EuiccView, euicc_view, profile_for_caller
from .sms_link import CardMessage, OutboundSms, SmsLink, Unreachable

log = logging.getLogger(__name__)

QUEUED, HELD, ACTIVE, DONE = "queued", "held", "active", engine.DONE
SEND, AWAIT_POR, AWAIT_NOTIFICATION = "send", "await_por", "await_notification"

CARD_OPERATION = Flow("SM-SR card operation", [
    Step("queued", "waits for its eUICC: one operation in flight per eUICC (euicc_ota.active_operation_id, "
         "claimed by a conditional UPDATE); the others queue in order, and the one that ends wakes them. Then the "
         "rules (smsr_core.isdp.check): refused -> done", run="start", then="send"),
    Step("send", "the ES5 script (SendData, UpdateConnectivityParameters: their ES8 commands) in an SCP80 command "
         "packet with a new counter, as SMS to the enabled profile's MSISDN; SMSC away: again after send_retry",
         run="send_command", answer="on_por", then="await_por"),
    Step("await_por", "no PoR within por_timeout: the identical packet again (same counter, same bytes). PoR "
         "9000: done (smsr_core.isdp changes the EIS) or, Enable/Disable, await_notification; 02/03 to a first "
         "transmission: send (a new packet); 02/03 to a retransmission: done FAILED 1.6/5.4, dirty, audit. "
         "Enable/Disable: the card's notification ends it here too (its PoR was lost)",
         run="send_command", answer="on_por", then="await_notification"),
    Step("await_notification", "Enable/Disable: the card's default notification (02 enabled, 05 fall-back, 03 "
         "rolled back), which the SM-SR confirms with 3A08, ends it; nothing is sent meanwhile",
         run="keep_waiting", answer="on_notification"),
    Step("handover", "SMSRChange: ES7-HandoverEUICC (the EIS) to the target SM-SR once, then its ES7 requests are the "
         "answers (smsr_core.handover.HandingOver): each goes to the ISD-R as a new packet (send), its PoR back as "
         "the ES7 callback, and the row waits here again; the HandoverEUICC callback ends it", run="hand_over",
         answer="on_peer_request", then="send"),
    Step("held", "an automatic DeleteProfile (POL2 Auto-Delete) waits for the PoR of the notification "
         "confirmation, which lists what the card deleted itself (POL1): then queued, or done when the card "
         "deleted it; no PoR within por_timeout: the identical confirmation again", run="confirm_again",
         answer="on_confirmation_por", then="queued"),
])
__doc__ += """
.. code-block:: text

""" + "\n".join("    " + line for line in CARD_OPERATION.table().splitlines()) + """

Any step but done: the validity period ends -> done EXPIRED 1.6/5.3 (+ dirty + audit when something was sent).

Only one operation per eUICC is active at a time: ``euicc_ota.active_operation_id`` is claimed with a conditional
UPDATE, so several workers on one PostgreSQL cannot start two; an operation that ends frees its eUICC and makes the
eUICC's queued operations due. Leases (persistence.engine.lease) keep two workers from running the same attempt; a
step runs in the transaction of its lease, so a worker killed mid-step rolls it back; one killed after the step
committed and before its SMS left (or was recorded as sent) leaves the packet to a retransmission: the same bytes. A transaction that makes work due at once (a request
accepted, an answer that ends an operation or moves it on) rings the :class:`~persistence.engine.Doorbell`.

The EIS follows the card, never leads it: profile states change only when the card has answered (PoR status words,
default notifications, GET STATUS during an audit), through smsr_core.isdp's lifecycle table, in one place
(:meth:`Platform._apply`).

Lost SMS. A command is one SCP80 packet with its own counter (``operation.counter``), built the first time it is
due. With no PoR within ``por_timeout`` the *identical* packet is sent again (same counter, same concatenation
reference, same bytes: ``sms_link`` rebuilds it from the counter), never a new one: an ES8 command relayed by
SendData must not run twice (a second STORE DATA 3A02 or SCP03t segment breaks the key agreement or the C-MAC
chain), and a retransmission lets the card complete a concatenated packet from the parts of several transmissions.
The card answers a packet it already executed with the PoR it sent then (``euicc_sim.network``); a card that answers
counter-low ('02', TS 102 225) to a retransmission leaves the outcome unknown: the operation fails 1.6/5.4
("delivered with no response"), the EIS is marked dirty and audited, as at expiry. Only a first transmission
answered '02'/'03' is known not to have run: a new packet then. Retransmissions run until the validity period ends
(then EXPIRED 1.6/5.3); ``params`` counts them (``retransmissions``). Commands go to the enabled profile's MSISDN
only (``sms_link``). A lost notification or confirmation is mended by the card, which sends the notification until
a confirmation reaches it; a confirmation whose PoR held operations wait for (POL2 Auto-Delete) is itself sent
again, the identical packet, until that PoR comes.

Nothing stored stops a worker: an operation whose SMS cannot be built or submitted (no usable MSISDN, keys missing,
a value the SMPP layer cannot encode) fails 1.2/4.2 on its own and frees its eUICC; an inbox SMS that cannot be
handled is retried after its lease and dropped after :data:`INBOX_GIVE_UP` seconds.

Access is decided when a request is accepted (:meth:`Platform._check_access`: the EID and ICCID exist, the
requester may act on the profile, sgp02.roles.may_manage): a refusal is answered by its callback at once, never
queued behind the eUICC's other operations. Rules checked again before any command leaves (sgp02-wire.md 5.3-5.4,
4.4): access as above, then smsr_core.isdp.check (POL2, the fall-back profile never deleted or disabled, the
enabled profile never deleted). The card enforces POL1 and answers 69E1 (8.2.2/3.8) or 6985 (8.1/3.8).
"""


_IN, _OP = SmsInbox.__table__, Operation.__table__
_EXPIRED = Prepared(select(_OP.c.id).where(_OP.c.state != bindparam("done"), _OP.c.expires_at <= bindparam("now"))
                    .order_by(_OP.c.id))
_DUE: dict[tuple[str, ...], Prepared] = {}  # Platform._due's scan, per tuple of steps
# The leases of the due steps (persistence.engine.Leaser: built once): a row at one of ``steps``, not done, not expired;
# a queued row.
_LEASE_AT = engine.Leaser(Operation, Operation.state != bindparam("done"),
                          Operation.step.in_(bindparam("steps", expanding=True)), Operation.expires_at > bindparam("now"))
_LEASE_QUEUED = engine.Leaser(Operation, Operation.step == bindparam("queued"))
_NONE_HELD = "smsr.none_held"  # Session.info: the eUICCs seen without held operations in this unit of work (_card)
# The inbox's statements, built once (persistence.prepared for the per-tick lease; Core on the session's connection
# for the per-SMS writes, inside the transaction that handles the SMS).
_LEASE_INBOX = Prepared(
    update(_IN).where(_IN.c.processed_at.is_(None), or_(_IN.c.lease_until.is_(None), _IN.c.lease_until < bindparam("now")))
    .values(lease_until=bindparam("until"))
    .returning(_IN.c.id, _IN.c.source_addr, _IN.c.concat_ref, _IN.c.received_at, _IN.c.user_data))
# Is anything waiting? A read first, so an empty inbox costs no write (no writer lock on SQLite) at every tick.
_INBOX_WAITING = Prepared(select(_IN.c.id).where(
    _IN.c.processed_at.is_(None), or_(_IN.c.lease_until.is_(None), _IN.c.lease_until < bindparam("now"))))
_OURS = and_(_IN.c.id.in_(bindparam("ids", expanding=True)), _IN.c.processed_at.is_(None),
             _IN.c.lease_until == bindparam("until"))
_MARK_INBOX = update(_IN).where(_OURS).values(processed_at=bindparam("processed_at"), outcome=bindparam("outcome"),
                                              lease_until=None)
_RELEASE_INBOX = update(_IN).where(_OURS).values(lease_until=None)
# The SMSC took an operation's packet (Platform.sent_many): only the attempt that was sent, once.
_SENT = Prepared(update(_OP).where(_OP.c.id == bindparam("op_id"), _OP.c.state == bindparam("active"),
                                   _OP.c.attempts == bindparam("attempt"), _OP.c.sent_any == bindparam("no"))
                 .values(sent_any=bindparam("yes")))
_DROP_INBOX = update(_IN).where(_IN.c.id.in_(bindparam("ids", expanding=True)), _IN.c.processed_at.is_(None)).values(
    processed_at=bindparam("processed_at"), outcome=bindparam("outcome"))

# The two reads every step and every SMS from the card start with, built once (a statement object memoises its
# cache key, so SQLAlchemy neither rebuilds nor re-traverses it per execution). Platform._unit: an operation with its
# eUICC (profiles, ISD-R) and OTA state. Platform._card: the eUICC that has a profile at an MSISDN, its OTA state, the
# operation in flight, and whether it has held operations.
_UNIT = (select(Operation, Euicc, EuiccOta).where(Operation.id == bindparam("op_id"))
         .outerjoin(Euicc, Euicc.eid == Operation.eid).outerjoin(EuiccOta, EuiccOta.eid == Operation.eid)
         .options(joinedload(Euicc.profiles), joinedload(Euicc.isd_r)))
_HELD_OP = aliased(Operation)
# Ending an operation (Platform._finish): its eUICC freed, the eUICC's queue woken, the AuditTrail record.
_OTA = EuiccOta.__table__
_FREE = (update(_OTA).where(_OTA.c.eid == bindparam("b_eid"), _OTA.c.active_operation_id == bindparam("op_id"))
         .values(active_operation_id=None))
_WAKE = (update(_OP).where(_OP.c.eid == bindparam("b_eid"), _OP.c.state == bindparam("queued"))
         .values(next_attempt_at=bindparam("now")))
_AUDIT = insert(EisAuditRecord.__table__)
# The eUICC that holds a profile with this ICCID, if any (CreateISDP: when it starts and when the card created it).
_ICCID_HOLDER = select(ProfileRow.__table__.c.eid).where(ProfileRow.__table__.c.iccid == bindparam("iccid"))
# Starting an operation (Platform.start): its eUICC claimed when free and no older operation of it is queued.
_OLDER = select(_OP.c.id).where(_OP.c.eid == bindparam("b_eid"), _OP.c.state == bindparam("queued"),
                                _OP.c.id < bindparam("op_id"))
_CLAIM = (update(_OTA).where(_OTA.c.eid == bindparam("b_eid"), _OTA.c.active_operation_id.is_(None), ~_OLDER.exists())
          .values(active_operation_id=bindparam("op_id")))
# A new packet's SCP80 counter (Platform._next_counter); its concatenation reference follows from it
# (smsr_core.sms_link.concatenation_reference).
_NEXT_COUNTER = (update(_OTA).where(_OTA.c.eid == bindparam("b_eid")).values(counter=_OTA.c.counter + 1)
                 .returning(_OTA.c.counter))
_CARD = (select(Euicc, EuiccOta, Operation,
                select(_HELD_OP.id).where(_HELD_OP.eid == Euicc.eid, _HELD_OP.state == HELD).exists())
         .where(Euicc.eid == select(ProfileRow.eid).where(ProfileRow.msisdn == bindparam("msisdn")).limit(1)
                .scalar_subquery())
         .outerjoin(EuiccOta, EuiccOta.eid == Euicc.eid)
         .outerjoin(Operation, Operation.id == EuiccOta.active_operation_id)
         .options(joinedload(Euicc.profiles), joinedload(Euicc.isd_r)))

class Function(str, Enum):
    """The card operations, named as SGP.02 names the ES4/ES3 functions."""

    ENABLE = "EnableProfile"
    DISABLE = "DisableProfile"
    DELETE = "DeleteProfile"  # ES3 calls it DeleteISDP
    AUDIT = "AuditEIS"
    SET_FALLBACK = "SetFallBackAttribute"
    CREATE_ISDP = "CreateISDP"  # ES3 only
    SEND_DATA = "SendData"  # ES3 only: ES8 commands relayed, unread, to an ISD-P
    # ES3 only: ES8 commands (the SM-DP's SCP03 session storing DGI 3A07) relayed, unread, to the ICCID's ISD-P
    UPDATE_CONNECTIVITY = "UpdateConnectivityParameters"
    SMSR_CHANGE = "SMSRChange"  # ES4, at the current SM-SR: the eUICC handed over (smsr_core.handover.HandingOver)
    FINALISE_HANDOVER = "FinaliseISDRhandover"  # at the new SM-SR: the old key sets deleted, its address set


# eUICC AuditTrail operation types (sgp02-wire.md 6.2: njiwa's codes follow the ES5 order,
# 0100 CreateISDP .. 0900 FinaliseISDRhandover). 0B00 for a card notification is our choice.
OPERATION_TYPE = {
    Function.CREATE_ISDP: "0100",
    Function.ENABLE: "0200",
    Function.DISABLE: "0300",
    Function.DELETE: "0400",
    Function.AUDIT: "0500",
    Function.SET_FALLBACK: "0700",
    Function.SEND_DATA: "0A00",  # our choice: ES8 data is not an ES5 function and has no code of its own
    Function.UPDATE_CONNECTIVITY: "0C00",  # our choice, as for SendData: the next free code (0B00 is a notification's)
    Function.SMSR_CHANGE: "0800",  # EstablishISDRKeySet: the STORE DATA 3A01/3A02 it relays
    Function.FINALISE_HANDOVER: "0900",
}
NOTIFICATION_OPERATION_TYPE = "0B00"

# PoR status codes (TS 102 225 §5.2) that say the counter was out of order: the card ran nothing of that packet.
COUNTER_REFUSED = (PorStatus.CNTR_LOW, PorStatus.CNTR_HIGH)
MAX_COUNTER_RETRIES = 10  # a packet refused for its counter goes again in a new one at most this often

# Parts of a concatenated SMS from the card wait this long for their siblings (a PoR sent again for a
# retransmission completes them), and an SMS whose handling keeps failing is retried until this age.
INBOX_GIVE_UP = 300.0


@dataclass(frozen=True)
class Timing:
    por_timeout: float = 30.0  # seconds to wait for a PoR before the command is sent again
    default_validity: float = 3600.0  # when the request carries no ValidityPeriod
    max_validity: float = 7 * 86400.0
    lease: float = 30.0
    send_retry: float = 2.0  # SMSC not reachable: try again after


@dataclass(frozen=True)
class AsyncRequest:
    function: Function
    interface: str  # "ES4" | "ES3"
    requester: Caller
    eid: str
    message_id: str | None
    function_call_id: str | None
    reply_to: str | None
    validity_period: int | None
    received_at: datetime
    params: dict = field(default_factory=dict)  # {"iccid": ...} or {"iccids": [...]}


class MessageSink(Protocol):
    """Where operations put what they owe (the esx outbox). Called inside the state-change session."""

    def callback(self, s: Session, op: Operation, status: Status, failure: FunctionFailed | None,
                 eis: v.Eis | None, euicc_response: str | None) -> None: ...

    def profile_notification(self, s: Session, change: str, eid: str, profile: ProfileRow, when: datetime) -> None: ...


def sw_failure(sw: int, what: str) -> FunctionFailed:
    """A card status word as the Subject/Reason the requester gets (issue 3 rule 4)."""
    if sw == es5.SW_MEMORY:
        return FunctionFailed(codes.EUICC_INSUFFICIENT_MEMORY, f"the eUICC has not enough memory for {what} (SW 6A84)")
    if sw == es5.SW_POL1:
        return FunctionFailed(codes.POL1_REFUSED, f"POL1 of the profile forbids {what} (SW 69E1)")
    if sw == es5.SW_CONDITIONS:
        return FunctionFailed(codes.EUICC_REFUSED, f"the eUICC refused {what} (SW 6985)")
    return FunctionFailed(codes.ISDR_EXECUTION_ERROR, f"{what} failed on the eUICC (SW {sw:04X})")


_SEQ_CYCLE, _SEQ_HALF = 0xFFFF, 0x8000


def _seq_is_new(seq: int, last: int) -> bool:
    """Card notification sequence numbers run 1..FFFF and wrap to 1: ``seq`` is new when it is less
    than half the cycle ahead of the last one seen (serial number arithmetic, as RFC 1982). The rule the
    database applies is :func:`_seq_is_new_sql` (Platform._take_notification_seq), which must agree with this."""
    return last < 0 or 0 < (seq - last) % _SEQ_CYCLE < _SEQ_HALF


def _seq_is_new_sql(seq, last):
    """:func:`_seq_is_new` as an SQL condition, for SQLite and PostgreSQL alike. Their ``%`` keeps the sign of the
    dividend where Python's keeps the divisor's: ``(d % m + m) % m`` is Python's ``d % m`` in both."""
    ahead = ((seq - last) % _SEQ_CYCLE + _SEQ_CYCLE) % _SEQ_CYCLE
    return or_(last < 0, ahead.between(1, _SEQ_HALF - 1))


# The card's notification sequence number and the EIS's dirty flag, each written by one UPDATE of its own column
# (as the SCP80 counter, _NEXT_COUNTER), never by flushing a row read earlier in the unit of work: two workers
# handling two SMS of one card at once (a PoR and a notification, or two notifications) read the row at the same
# moment, and a read-check-write in Python lost one of the two updates under PostgreSQL's READ COMMITTED (and under
# SQLite, whose reads before the first write run outside the write transaction): a notification taken as new twice,
# or an audit's "clean" overwriting a "dirty" written meanwhile. Platform._take_notification_seq,
# Platform._mark_dirty and Platform._clear_dirty run them.
_TAKE_SEQ = (update(_OTA).where(_OTA.c.eid == bindparam("b_eid"),
                                _seq_is_new_sql(bindparam("seq", type_=Integer), _OTA.c.last_notification_seq))
             .values(last_notification_seq=bindparam("seq", type_=Integer)))
_MARK_DIRTY = update(_OTA).where(_OTA.c.eid == bindparam("b_eid")).values(dirty=True)
# An audit clears the flag only when no packet was built for the card after its own (the counter is still the
# audit's): every unit of work that can mark the card dirty while an audit is in flight (a card notification; the
# other marks come from the operation in flight, which is the audit then) takes a counter first, for its
# confirmation, so a mark made after the audit started is never cleared by it. CHOICE: a notification that came
# meanwhile and marked nothing leaves the flag set too (until the next audit): the flag has no column saying when it
# was set, and the audit's GET STATUS may predate the switch such a notification reports.
_CLEAR_DIRTY = update(_OTA).where(_OTA.c.eid == bindparam("b_eid"), _OTA.c.counter == bindparam("audit_counter")
                                  ).values(dirty=False)


def _connectivity_commands(connectivity_parameters: str) -> list[bytes]:
    """The ES8 commands of ES3-UpdateConnectivityParameters' ``ConnectivityParameters`` (hex); 1.6/2.1 otherwise.

    CHOICE (ours; ota.es8 documents the wire): the value is framed as SendData's Data (ota.es8.split_send_data) and
    holds C-APDU TLVs ('22') only: the SM-DP's SCP03 session with the ISD-P (INITIALIZE UPDATE, EXTERNAL
    AUTHENTICATE, the STORE DATA 3A07 under C-MAC), which the SM-SR relays unread. SCP03t TLVs belong to a download
    and are refused here, where the card would refuse them anyway.
    """
    try:
        commands = es8.split_send_data(bytes.fromhex(connectivity_parameters))
    except ValueError as exc:
        raise FunctionFailed(codes.INVALID_PARAMETER, f"ConnectivityParameters is not a sequence of ES8 commands: "
                             f"{exc}") from None
    if any(c[0] != es8.TAG_C_APDU for c in commands):
        raise FunctionFailed(codes.INVALID_PARAMETER, "ConnectivityParameters holds other ES8 commands than C-APDUs "
                             "('22'): it carries the SM-DP's SCP03 session with the ISD-P")
    return commands


def _requester(op: Operation) -> Caller:
    """Who asked for ``op``, as it stood when the request was accepted."""
    return Caller(op.requester_id, op.params.get("requester_role", "smsr"), frozenset(op.params.get("requester_mnos", ())))


def _profile(euicc: Euicc, iccid: str | None) -> ProfileRow | None:
    if not iccid:
        return None
    iccid = iccid.upper()
    return next((p for p in euicc.profiles if p.iccid == iccid), None)


class Platform(HandingOver):
    def __init__(self, db: Database, smsr_id: str, sink: MessageSink, box: SecretBox,
                 timing: Timing | None = None, doorbell: Doorbell | None = None) -> None:
        self.db = db
        self.smsr_id = smsr_id
        self.sink = sink
        self.timing = timing or Timing()
        self.link = SmsLink(box)
        self.doorbell: Doorbell = doorbell or Silent()
        # the new SM-SR's side of SM-SR changes (smsr_core.handover.Handovers.finalised): told when a
        # FinaliseISDRhandover ends, in that transaction
        self.finalised = None
        CARD_OPERATION.check(self)

    # -- accepting ---------------------------------------------------------------------------

    def _new_row(self, req: AsyncRequest) -> Operation:
        params = {**req.params, "requester_role": req.requester.role}
        if req.requester.mnos:  # an SM-DP's standing as it was at acceptance (sgp02.roles.may_manage)
            params["requester_mnos"] = sorted(req.requester.mnos)
        return Operation(
            eid=req.eid.upper(), function=req.function.value, interface=req.interface,
            requester_id=req.requester.oid, message_id=req.message_id, function_call_id=req.function_call_id,
            reply_to=req.reply_to, params=params, accepted_at=req.received_at,
            expires_at=engine.validity_until(req.received_at, req.validity_period, self.timing.default_validity,
                                             self.timing.max_validity),
            state=QUEUED, step=QUEUED, next_attempt_at=req.received_at, attempts=0, sent_any=False,
        )

    def accept(self, req: AsyncRequest) -> tuple[int, bool]:
        """Persist the request; (operation id, True when it is new).

        Who may ask this of which eUICC and profile is decided here (:meth:`_check_access`): a refused request is
        finished at once, its callback committed with the row, instead of waiting in the eUICC's queue. A replay
        (same requester and MessageID) is not queued again: its callback is the original's. The same
        FunctionCallIdentifier under a new MessageID is another message asking for a call already made: it is
        refused by a callback relating to the new MessageID (1.6/3.3, naming the MessageID whose outcome to wait
        for), and nothing runs twice. A request queued rings the doorbell: it is due at once.
        """
        with self.db.session() as s:
            row, refusal = self._new_row(req), None
            try:  # on the row before it is added: what the check adds to params is in its INSERT
                self._check_access(s, row, euicc_view(s, row.eid))
            except FunctionFailed as failure:
                refusal = failure
            if refusal is None:  # the common case: one INSERT, no unit of work (engine.insert_new)
                op, new = engine.replayed(s, row), False
                if op is None:
                    op_id = engine.insert_new(s, row)
                    engine.due_now(s, self.doorbell)
                    return op_id, True
            else:
                op, new = engine.accept_once(s, row)
                if new:
                    self._finish(s, op, refusal.status, refusal, now=req.received_at)
            if not new and engine.reuses_call_id(op, req.message_id):
                self._answer_other_message(s, req, codes.call_id_reused(req.function_call_id, op.message_id))
            op_id = op.id
        return op_id, new

    def reject(self, req: AsyncRequest, failure: FunctionFailed) -> None:
        """An accepted request that fails before it could be queued: recorded, answered by callback."""
        with self.db.session() as s:
            op, new = engine.accept_once(s, self._new_row(req))
            if new:
                self._finish(s, op, failure.status, failure, now=req.received_at)
            elif engine.reuses_call_id(op, req.message_id):
                self._answer_other_message(s, req, failure)

    def _answer_other_message(self, s: Session, req: AsyncRequest, failure: FunctionFailed) -> None:
        """A callback for a request that has no row of its own (its FunctionCallIdentifier names another's)."""
        self.sink.callback(s, self._new_row(req), failure.status, failure, None, None)

    def queue_internal(self, s: Session, eid: str, function: Function, now: datetime, *, held: bool = False,
                       **params) -> Operation:
        """An operation the SM-SR decides itself (audit after a lost answer, POL2 Auto-Delete), queued (due now)
        or held (due when its confirmation is to go again)."""
        op = Operation(eid=eid, function=function.value, interface="SMSR", requester_id=self.smsr_id,
                       params={**params, "requester_role": "smsr"}, accepted_at=now,
                       expires_at=now + timedelta(seconds=self.timing.default_validity),
                       state=HELD if held else QUEUED, step=HELD if held else QUEUED,
                       next_attempt_at=None if held else now, attempts=0, sent_any=False)
        if held:
            s.info.get(_NONE_HELD, set()).discard(eid)
        s.add(op)
        return op

    def queue_finalise(self, s: Session, eid: str, now: datetime, *, handover_id: int, delete_kvns: list[int],
                       sms_address: str) -> int:
        """FinaliseISDRhandover for the new SM-SR's change ``handover_id`` (smsr_core.handover.CardQueue): due now."""
        op = self.queue_internal(s, eid, Function.FINALISE_HANDOVER, now, handover_id=handover_id,
                                 delete_kvns=delete_kvns, sms_address=sms_address)
        s.flush()
        engine.due_now(s, self.doorbell)
        return op.id

    # -- finishing ---------------------------------------------------------------------------

    def _ota(self, s: Session, eid: str) -> EuiccOta:
        row = s.get(EuiccOta, eid)
        if row is None:
            # Two workers may create it at the same moment: INSERT ... ON CONFLICT DO NOTHING, then read.
            dialect = s.get_bind().dialect.name
            if dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            s.execute(insert(EuiccOta).values(eid=eid, counter=0, last_notification_seq=-1, dirty=False)
                      .on_conflict_do_nothing(index_elements=[EuiccOta.eid]))
            row = s.get(EuiccOta, eid)
        return row

    def _finish(self, s: Session, op: Operation, status: Status, failure: FunctionFailed | None, *,
                now: datetime, eis: v.Eis | None = None, euicc: Euicc | None = None,
                profile: ProfileRow | None = None) -> None:
        """End ``op`` (persistence.engine.record_result) with what it owes: its eUICC freed and its queue woken, the
        AuditTrail record, the callback. ``euicc`` / ``profile``: what the caller holds already (not read again)."""
        was_active = op.state == ACTIVE
        if not engine.finish_once(s, op):
            log.info("operation %s was ended by another worker meanwhile: not ended again", op.id)
            return
        engine.record_result(op, status, failure, now)
        if was_active:
            freed = s.execute(_FREE, {"b_eid": op.eid, "op_id": op.id}).rowcount
            if freed:  # the eUICC's next operation may start now
                s.execute(_WAKE, {"b_eid": op.eid, "queued": QUEUED, "now": now})
                for o in s.identity_map.values():  # what the UPDATEs wrote, in the rows this session holds
                    if isinstance(o, EuiccOta) and o.eid == op.eid:
                        set_committed_value(o, "active_operation_id", None)
                    elif isinstance(o, Operation) and o.eid == op.eid and o.state == QUEUED:
                        set_committed_value(o, "next_attempt_at", now)
                engine.due_now(s, self.doorbell)
        euicc = euicc if euicc is not None else s.get(Euicc, op.eid)
        if euicc is not None:
            if profile is None:
                profile = _profile(euicc, op.params.get("iccid"))
            self._audit(s, op.eid, now, OPERATION_TYPE[Function(op.function)], status, op.requester_id, failure,
                        profile.isd_p_aid if profile is not None else op.params.get("isd_p_aid"),
                        op.params.get("iccid"))
        if Function(op.function) is Function.SMSR_CHANGE and op.params.get("peer"):
            # a request of the target SM-SR's was on its way to the card: it is answered too (the change ends here)
            self.sink.peer_callback(s, op.params["target_smsr_id"], op.params["peer"], status, failure, ())
        if op.interface != "SMSR":
            self.sink.callback(s, op, status, failure, eis, op.euicc_response)
        elif Function(op.function) is Function.FINALISE_HANDOVER and self.finalised is not None:
            self.finalised(s, op.params["handover_id"], status, failure, now)

    def _audit(self, s: Session, eid: str, now: datetime, operation_type: str, status: Status,
               requester_id: str | None, failure: FunctionFailed | None, isd_p_aid: str | None,
               iccid: str | None) -> None:
        """One record of the eUICC's AuditTrail, written in this transaction (a Core INSERT built once; what the
        session holds pending is written later, in one flush)."""
        with s.no_autoflush:
            s.execute(_AUDIT, {"eid": eid, "smsr_id": self.smsr_id, "operation_date": now, "operation_type": operation_type,
                               "requester_id": requester_id, "status": status.value,
                               "subject": failure.code.subject if failure else None,
                               "reason": failure.code.reason if failure else None, "isd_p_aid": isd_p_aid,
                               "iccid": iccid, "imei": None, "meid": None})

    def _apply(self, s: Session, euicc: Euicc, profile: ProfileRow, event: isdp.Event, now: datetime) -> None:
        """The one place a profile's state changes: the ISD-P lifecycle's transition (smsr_core.isdp.LIFECYCLE),
        and the notification it owes. A CREATED event adds ``profile`` to the eUICC."""
        old = None if event is isdp.Event.CREATED else v.ProfileState(profile.state)
        t = isdp.after(old, event)
        if t.to is None:
            if t.notification:
                self.sink.profile_notification(s, t.notification, euicc.eid, profile, now)
            euicc.profiles.remove(profile)
            s.delete(profile)
            return
        profile.state = t.to.value
        if old is None:
            euicc.profiles.append(profile)
        if t.notification:
            self.sink.profile_notification(s, t.notification, euicc.eid, profile, now)

    # -- the due steps (the engine's due/lease, dispatched through CARD_OPERATION) --------------------------------

    def _due(self, now: datetime, steps: tuple[str, ...]) -> list[int]:
        """persistence.engine.due's rule for the rows at ``steps`` not expired, as a prepared statement (a per-tick
        scan: persistence.prepared, no transaction of its own on SQLite)."""
        scan = _DUE.get(steps)
        if scan is None:
            step = _OP.c.step
            scan = _DUE[steps] = Prepared(select(_OP.c.id).where(
                _OP.c.next_attempt_at <= bindparam("now"),
                or_(_OP.c.lease_until.is_(None), _OP.c.lease_until < bindparam("now")),
                _OP.c.state != bindparam("done"), or_(*(step == bindparam(f"step{i}") for i in range(len(steps)))),
                _OP.c.expires_at > bindparam("now")).order_by(_OP.c.id))
        with dbapi(self.db.engine) as conn:
            return [r.id for r in scan.all(conn, now=now, done=DONE, **{f"step{i}": st for i, st in enumerate(steps)})]

    def _run_due(self, now: datetime, steps: tuple[str, ...], chain: bool) -> list[OutboundSms]:
        """Lease every due row at one of ``steps`` and run its step; with ``chain``, a step that leaves its row due
        at once runs on in the same transaction (a started operation sends its first packet)."""
        ids = self._due(now, steps)
        out: list[OutboundSms] = []

        def run(op_id: int) -> None:
            sms_ = self._run_step(op_id, now, steps, chain)
            if sms_ is not None:
                out.append(sms_)

        def defect(op_id: int) -> None:
            self._cannot_send(op_id, now, "the SM-SR could not build the command for this eUICC", start=steps)

        engine.run_leased(ids, lambda op_id: True, run, defect)
        return out

    def _run_step(self, op_id: int, now: datetime, steps: tuple[str, ...], chain: bool) -> OutboundSms | None:
        with self.db.session() as s:
            if not _LEASE_AT(s, op_id, now, self.timing.lease, done=DONE, steps=list(steps)):
                return None
            # What the steps read (the row, its eUICC with profiles and domains, its OTA state), in one statement,
            # and held here: the session keeps only weak references.
            op, euicc, ota = self._unit(s, op_id)  # noqa: F841
            while True:
                step = op.step
                outbound = CARD_OPERATION.runner(self, step)(s, op, now)
                if outbound is not None or not chain or op.state == DONE or op.step == step:
                    return outbound
                if op.next_attempt_at is None or utc(op.next_attempt_at) > now:
                    return None

    def start_ready(self, now: datetime) -> int:
        """Start the due queued operations (the rules, the eUICC claimed) without sending: how many started."""
        started = 0
        ids = self._due(now, (QUEUED,))
        for op_id in ids:
            with self.db.session() as s:
                if not _LEASE_QUEUED(s, op_id, now, self.timing.lease, queued=QUEUED):
                    continue
                op = s.get(Operation, op_id)
                self.start(s, op, now)
                started += op.state == ACTIVE
        return started

    def due_sends(self, now: datetime) -> list[OutboundSms]:
        """Run every due step: queued operations start and send their first packet in one transaction, due
        commands go (new or again), held confirmations go again. The SMS to submit."""
        return self._run_due(now, (QUEUED, SEND, AWAIT_POR, HELD, HANDOVER), chain=True)

    # -- step: queued ------------------------------------------------------------------------

    def start(self, s: Session, op: Operation, now: datetime) -> None:
        """The eUICC is free and no older operation of it waits: claim it, check the rules, step to send."""
        euicc = s.get(Euicc, op.eid)
        if euicc is None:  # nothing to serialise on: refuse at once
            self._finish(s, op, Status.FAILED, FunctionFailed(
                codes.EID_UNKNOWN, f"EID {op.eid} is not known to this SM-SR", subject_identifier=op.eid), now=now)
            return
        self._ota(s, op.eid)
        # Claimed only when free and no older operation of the eUICC is queued, in one conditional UPDATE.
        claimed = s.execute(_CLAIM, {"b_eid": op.eid, "op_id": op.id, "queued": QUEUED}).rowcount == 1
        if claimed:  # what the UPDATE wrote, in the loaded row too (not a change to flush)
            set_committed_value(s.get(EuiccOta, op.eid), "active_operation_id", op.id)
        if not claimed:  # the operation that frees the eUICC wakes it (_finish)
            engine.wait(op, None)
            return
        try:
            self._check_rules(s, op, euicc)
        except FunctionFailed as failure:
            op.state = ACTIVE  # it held the eUICC: _finish frees it
            self._finish(s, op, failure.status, failure, now=now, euicc=euicc)
            return
        op.state, op.step = ACTIVE, HANDOVER if Function(op.function) is Function.SMSR_CHANGE else SEND
        engine.wait(op, now)

    def _check_access(self, s: Session, op: Operation, euicc: Euicc | EuiccView) -> None:
        """Who may ask this of which eUICC and profile, and is the request well formed: decided when the request is
        accepted, and again when it starts (the profile may have gone meanwhile)."""
        caller = _requester(op)
        function = Function(op.function)
        if function is Function.AUDIT:
            self._check_audit(euicc, caller, op.params.get("iccids") or [])
        elif function is Function.CREATE_ISDP:
            mno_id = op.params.get("mno_id")
            if caller.role == "smdp" and mno_id not in caller.mnos:
                # Our choice (no code in the spec's lists): the profile the SM-DP would create is not one it may act on.
                raise FunctionFailed(codes.ICCID_NOT_ALLOWED, f"MNO {mno_id} has not named {caller.oid} as an SM-DP "
                                     "acting for it", subject_identifier=op.params.get("iccid"))
            if op.params.get("required_memory", 0) < 0:
                raise FunctionFailed(codes.INVALID_PARAMETER, "RequiredMemory is negative")
        elif function is Function.SEND_DATA:
            self._check_send_data(op, euicc, caller)
        elif function is Function.SMSR_CHANGE:
            self._check_smsr_change(s, op, euicc, caller)
        elif function is Function.FINALISE_HANDOVER:
            return
        else:
            self._check_profile(s, op, euicc, caller)
            if function is Function.UPDATE_CONNECTIVITY:
                _connectivity_commands(op.params.get("connectivity_parameters") or "")

    def _check_profile(self, s: Session, op: Operation, euicc: Euicc | EuiccView | None, caller: Caller) -> None:
        """The profile ``op`` names exists on its eUICC and ``caller`` may act on it; its ISD-P AID into the params.

        The profile as loaded with the eUICC when it is there and the caller may manage it; anything else is decided
        (and its error chosen) by the registry's rule (8.1.1/3.9, 8.2.1/3.9, 8.2.1/3.10, 8.2.1/1.2)."""
        iccid = op.params["iccid"].upper()
        row = next((p for p in euicc.profiles if p.iccid == iccid), None) if euicc is not None else None
        if row is None or not may_manage(caller, row):
            row = profile_for_caller(s, caller, op.eid, op.params["iccid"])
        if op.params.get("isd_p_aid") != row.isd_p_aid:
            op.params = {**op.params, "isd_p_aid": row.isd_p_aid}

    def _check_rules(self, s: Session, op: Operation, euicc: Euicc) -> None:
        """Everything that must hold when the operation starts: access (:meth:`_check_access`), then the ISD-P
        rules (smsr_core.isdp.check)."""
        self._check_access(s, op, euicc)
        function = Function(op.function)
        if function is Function.CREATE_ISDP:
            self._check_create_isdp(s, op, euicc)
            return
        if function in (Function.AUDIT, Function.SEND_DATA, Function.UPDATE_CONNECTIVITY, Function.SMSR_CHANGE,
                        Function.FINALISE_HANDOVER):
            return
        profiles = [profile_value(p) for p in euicc.profiles]
        target = next(p for p in profiles if p.iccid == op.params["iccid"].upper())
        isdp.check(op.function, target, profiles, _requester(op))

    def _check_create_isdp(self, s: Session, op: Operation, euicc: Euicc) -> None:
        iccid = op.params["iccid"]
        holder = s.execute(_ICCID_HOLDER, {"iccid": iccid}).scalar()
        if holder is not None:
            where = "this" if holder == euicc.eid else "another"
            raise FunctionFailed(codes.ICCID_IN_USE, f"ICCID {iccid} is already installed on {where} eUICC",
                                 subject_identifier=iccid)
        op.params = {**op.params, "isd_p_aid": allocate_isd_p_aid([p.isd_p_aid for p in euicc.profiles])}

    def _check_send_data(self, op: Operation, euicc: Euicc | EuiccView, caller: Caller) -> None:
        """The target ISD-P is one of this eUICC's, one the caller may act on, and Data is a sequence of ES8 commands.

        ISD-P AIDs repeat from one eUICC to the next (the same series on every card), so "known on another
        eUICC" (8.3.1/3.10) cannot be told apart from unknown here: an AID not on this eUICC is 8.3.1/3.9.
        """
        aid = op.params["sd_aid"].upper()
        row = next((p for p in euicc.profiles if p.isd_p_aid.upper() == aid), None)
        if row is None:
            raise FunctionFailed(codes.SD_AID_UNKNOWN, f"no ISD-P {aid} on eUICC {euicc.eid}", subject_identifier=aid)
        if not may_manage(caller, row):
            raise FunctionFailed(codes.SD_AID_NOT_ALLOWED, f"{caller.oid} may not address ISD-P {aid}",
                                 subject_identifier=aid)
        try:
            es8.split_send_data(bytes.fromhex(op.params["data"]))
        except ValueError as exc:
            raise FunctionFailed(codes.INVALID_PARAMETER, f"Data is not a sequence of ES8 commands: {exc}") from None
        if op.params.get("isd_p_aid") != row.isd_p_aid:
            op.params = {**op.params, "iccid": row.iccid, "isd_p_aid": row.isd_p_aid}

    def _check_audit(self, euicc: Euicc | EuiccView, caller: Caller, iccids: list[str]) -> None:
        if caller.role == "smsr":
            return
        by_iccid = {p.iccid: p for p in euicc.profiles}
        if not any(may_manage(caller, p) for p in euicc.profiles):
            raise FunctionFailed(codes.EIS_NOT_ALLOWED, f"{caller.oid} has no profile on eUICC {euicc.eid}",
                                 subject_identifier=euicc.eid)
        for iccid in iccids:
            p = by_iccid.get(iccid.upper())
            if p is None or not may_manage(caller, p):
                raise FunctionFailed(codes.PROFILES_NOT_OWNED, f"profile {iccid} is not one of {caller.oid}'s on this eUICC",
                                     subject_identifier=iccid)

    # -- steps: send, await_por --------------------------------------------------------------

    def _script(self, euicc: Euicc, op: Operation) -> tuple[list[bytes], bytes | None]:
        """The command TLVs of the operation's script and the TAR they go to (None: the ISD-R's).

        ES5 functions are C-APDUs to the ISD-R ('22' TLVs); the ES8 commands of SendData and
        UpdateConnectivityParameters go as they came, to the TAR of the target ISD-P, under the ISD-R's SCP80 keys
        (ota.es8: the ISD-R forwards them).
        """
        function = Function(op.function)
        if function is Function.SEND_DATA:
            aid = bytes.fromhex(op.params["isd_p_aid"])
            return es8.split_send_data(bytes.fromhex(op.params["data"])), es8.isdp_tar(aid)
        if function is Function.UPDATE_CONNECTIVITY:
            aid = bytes.fromhex(op.params["isd_p_aid"])
            return _connectivity_commands(op.params["connectivity_parameters"]), es8.isdp_tar(aid)
        if function is Function.SMSR_CHANGE:
            return [es8.command_tlv(a) for a in self.peer_commands(op)], None
        if function is Function.FINALISE_HANDOVER:
            return [es8.command_tlv(a) for a in self.finalise_commands(op)], None
        if function is Function.AUDIT:
            apdus = [es5.get_status_isdp(None), es5.get_data_resources()]
        elif function is Function.CREATE_ISDP:
            apdus = [es5.create_isdp(bytes.fromhex(euicc.isd_p_loadfile_aid), bytes.fromhex(euicc.isd_p_module_aid),
                                     bytes.fromhex(op.params["isd_p_aid"]), int(op.params.get("required_memory", 0)))]
        else:
            aid = bytes.fromhex(op.params["isd_p_aid"])
            apdus = {
                Function.ENABLE: lambda: [es5.enable_profile(aid)],
                Function.DISABLE: lambda: [es5.disable_profile(aid)],
                Function.DELETE: lambda: [es5.delete_isdp(aid)],
                Function.SET_FALLBACK: lambda: [es5.set_fallback_attribute(aid)],
            }[function]()
        return [es8.command_tlv(a) for a in apdus], None

    def send_command(self, s: Session, op: Operation, now: datetime) -> OutboundSms | None:
        """The operation's packet, new (a fresh counter) or the one already sent (a retransmission, the same
        bytes). The row waits for its PoR from here (:meth:`sent` records that the SMSC took it)."""
        euicc = s.get(Euicc, op.eid)
        try:
            destination = self.link.destination(euicc)
        except Unreachable as exc:
            if op.sent_any:  # reachable before: what the earlier transmissions did is unknown
                self._outcome_unknown(s, op, now)
            self._finish(s, op, Status.FAILED, FunctionFailed(codes.INTERNAL_ERROR, str(exc)), now=now, euicc=euicc)
            return None
        retransmission = op.counter is not None
        if not retransmission:
            op.counter = self._next_counter(s, self._ota(s, op.eid))
        commands, tar = self._script(euicc, op)
        segments = self.link.command_tlvs(euicc, op.counter, commands, tar=tar)
        op.attempts += 1
        params = dict(op.params)
        params["transmissions"] = params.get("transmissions", 0) + 1 if retransmission else 1
        params["retransmissions"] = params.get("retransmissions", 0) + retransmission
        op.params = params
        op.step = AWAIT_POR
        engine.wait(op, now + timedelta(seconds=self.timing.por_timeout))
        if retransmission:
            log.info("operation %s: packet with counter %s sent again (retransmission %d)", op.id, op.counter,
                     params["retransmissions"])
        return OutboundSms(op.eid, destination, segments, op.id, op.attempts)

    def keep_waiting(self, s: Session, op: Operation, now: datetime) -> None:
        """await_notification: nothing to send; the row waits (it is never due: its notification ends it)."""
        engine.wait(op, None)

    def sent(self, sms_: OutboundSms, now: datetime) -> None:
        """The SMSC took the command: something reached the network (the row waits for its PoR already)."""
        self.sent_many([sms_], now)

    def sent_many(self, taken: list[OutboundSms], now: datetime) -> None:
        """:meth:`sent` for every packet the SMSC took in one tick: one transaction, one prepared UPDATE each."""
        ops = [o for o in taken if o.operation_id is not None]
        if not ops:
            return
        with dbapi(self.db.engine, commit=True) as conn:
            for o in ops:
                _SENT.run(conn, op_id=o.operation_id, active=ACTIVE, attempt=o.attempt, no=False, yes=True)

    def send_failed(self, sms_: OutboundSms, now: datetime, error: str) -> None:
        """The SMSC refused or is away: try the same step again a little later (the same packet: some of
        its parts may have reached the card)."""
        if sms_.operation_id is None:
            return
        log.warning("operation %s: SMS not submitted: %s", sms_.operation_id, error)
        with self.db.session() as s:
            s.execute(update(Operation).where(Operation.id == sms_.operation_id, Operation.state == ACTIVE,
                                              Operation.attempts == sms_.attempt)
                      .values(next_attempt_at=now + timedelta(seconds=self.timing.send_retry), lease_until=None))

    def cannot_send(self, sms_: OutboundSms, now: datetime) -> None:
        """The SMS cannot be submitted at all, now or later (the SMPP layer refused the values): the
        operation fails and its eUICC is free; a notification confirmation is simply not sent (the card
        sends its notification again)."""
        if sms_.operation_id is not None:
            self._cannot_send(sms_.operation_id, now, "the SM-SR could not submit the SMS to this eUICC")

    def _cannot_send(self, op_id: int, now: datetime, message: str, start: tuple[str, ...] = ()) -> None:
        """End an operation that cannot be sent: FAILED 1.2/4.2, eUICC freed; dirty + audit when an
        earlier transmission may have reached the card.

        With ``start`` (the steps :meth:`_run_due` ran) a queued operation is started first, in this transaction:
        its start and its first packet were one transaction, which rolled back with the failure, and an operation
        that cannot be sent ends as one started on its own would (:meth:`start_ready`, then the send failing)."""
        try:
            with self.db.session() as s:
                # the lease before the row is read (the UPDATE would compare the loaded row's dates otherwise)
                queued = QUEUED in start and _LEASE_QUEUED(s, op_id, now, self.timing.lease, queued=QUEUED)
                op = s.get(Operation, op_id)
                if queued:
                    self.start(s, op, now)
                if op is None or op.state != ACTIVE:
                    return
                if op.sent_any:
                    self._outcome_unknown(s, op, now)
                self._finish(s, op, Status.FAILED, FunctionFailed(codes.INTERNAL_ERROR, message), now=now)
        except Exception:  # the database itself is failing: the lease runs out and expiry ends it
            log.exception("operation %s: could not be ended", op_id)

    def _outcome_unknown(self, s: Session, op: Operation, now: datetime) -> None:
        """The card may or may not have executed ``op``: mark the EIS dirty and audit (not an audit's audit)."""
        self._mark_dirty(s, self._ota(s, op.eid))
        automatic_audit = Function(op.function) is Function.AUDIT and op.interface == "SMSR"
        if s.get(Euicc, op.eid) is not None and not automatic_audit:
            self.queue_internal(s, op.eid, Function.AUDIT, now)

    # -- step: held --------------------------------------------------------------------------

    def confirm_again(self, s: Session, op: Operation, now: datetime) -> OutboundSms | None:
        """The confirmation whose PoR this held operation waits for, sent again (the identical packet). The
        eUICC's other held operations waiting for the same PoR wait with it: one packet for all."""
        counter, seq = op.params.get("confirmation_counter"), op.params.get("confirmation_seq")
        again = now + timedelta(seconds=self.timing.por_timeout)
        if counter is None or seq is None:
            engine.wait(op, None)
            return None
        s.execute(update(Operation).where(Operation.eid == op.eid, Operation.state == HELD, Operation.id != op.id)
                  .values(next_attempt_at=again))
        engine.wait(op, again)
        euicc = s.get(Euicc, op.eid)
        try:
            return OutboundSms(op.eid, self.link.destination(euicc), self.link.command(
                euicc, counter, [es5.notification_confirmation(seq)]), None, 0)
        except Exception:  # e.g. no reachable profile now: the held operation expires in its time
            log.exception("held operation %s: its confirmation could not be sent again", op.id)
            return None

    # -- expiry ------------------------------------------------------------------------------

    def expire(self, now: datetime) -> int:
        with dbapi(self.db.engine) as conn:  # persistence.engine.expired's rule, prepared (a per-tick scan)
            ids = [r.id for r in _EXPIRED.all(conn, now=now, done=DONE)]
        for op_id in ids:
            with self.db.session() as s:
                op = s.get(Operation, op_id)
                if op is None or op.state == DONE:
                    continue
                if op.sent_any:
                    # Sent but never answered: the card may have acted. Mark the EIS dirty and let an
                    # audit realign it with what the card reports.
                    self._outcome_unknown(s, op, now)
                self._finish(s, op, Status.EXPIRED, FunctionFailed(
                    codes.EXPIRED_TTL, "the validity period ended before the eUICC completed the function",
                    status=Status.EXPIRED), now=now)
        return len(ids)

    # -- what the card sends back ------------------------------------------------------------

    def process_inbox(self, now: datetime) -> list[OutboundSms]:
        """Handle complete SMS from the inbox (PoRs, card notifications); returns confirmations to send.

        Every free row is leased and read in one statement (UPDATE ... RETURNING, its own transaction); each SMS
        (its parts) is then handled in a transaction of its own, which marks its rows processed only while this
        worker's lease still holds them (:meth:`_process_group`). A concatenated SMS whose parts other workers
        leased meanwhile is incomplete here: its lease is released at once, and the next tick takes it whole."""
        out: list[OutboundSms] = []
        until = now + timedelta(seconds=self.timing.lease)
        with dbapi(self.db.engine) as conn:
            if _INBOX_WAITING.first(conn, now=now) is None:
                return out
        with dbapi(self.db.engine, commit=True) as conn:
            rows = sorted(_LEASE_INBOX.all(conn, now=now, until=until), key=lambda r: r.id)
        groups: dict[tuple[str, int], list] = {}
        for r in rows:
            key = (r.source_addr, r.concat_ref) if r.concat_ref is not None else (r.source_addr, -r.id)
            groups.setdefault(key, []).append(r)
        for parts in groups.values():
            ids = [p.id for p in parts]
            try:
                confirmation = self._process_group(parts, now, until)
            except Exception:  # one unreadable group must not hold up the others
                log.exception("SMS %s could not be processed", ids)
                self._park(ids, now)
                continue
            if confirmation is not None:
                out.append(confirmation)
        return out

    def _park(self, ids: list[int], now: datetime) -> None:
        """SMS whose handling failed (its transaction rolled back): tried again when a lease has run out,
        dropped once older than :data:`INBOX_GIVE_UP`, so a defect never turns into a loop."""
        try:
            with self.db.session() as s:
                for row in s.scalars(select(SmsInbox).where(SmsInbox.id.in_(ids), SmsInbox.processed_at.is_(None))):
                    if utc(row.received_at) <= now - timedelta(seconds=INBOX_GIVE_UP):
                        row.processed_at, row.outcome, row.lease_until = now, "dropped: could not be processed", None
                    else:
                        row.lease_until = now + timedelta(seconds=self.timing.lease)
        except Exception:
            log.exception("SMS %s could not be set aside", ids)

    def _process_group(self, parts: list, now: datetime, until: datetime) -> OutboundSms | None:
        """One SMS (all its parts, leased until ``until`` by :meth:`process_inbox`) in one transaction: the state
        change, what it owes and its rows marked processed commit together, or not at all when the lease ran out and
        another worker took the rows meanwhile."""
        ids = [p.id for p in parts]
        with self.db.session() as s:
            try:
                outcome, confirmation = self._handle_parts(s, parts, now)
            except sms.IncompleteMessage:  # its other parts may still come: it waits, up to INBOX_GIVE_UP
                stale = [p.id for p in parts if utc(p.received_at) < now - timedelta(seconds=INBOX_GIVE_UP)]
                conn = s.connection()
                conn.execute(_RELEASE_INBOX, {"ids": ids, "until": until})
                if stale:
                    conn.execute(_DROP_INBOX, {"ids": stale, "processed_at": now,
                                                "outcome": "dropped: concatenated SMS never completed"})
                return None
            s.flush()
            marked = s.connection().execute(_MARK_INBOX, {"ids": ids, "until": until, "processed_at": now,
                                                          "outcome": outcome[:200]}).rowcount
            if marked != len(ids):  # our lease ran out and another worker has them: its handling counts
                s.rollback()
                return None
            return confirmation

    def _handle_parts(self, s: Session, parts: list, now: datetime) -> tuple[str, OutboundSms | None]:
        source = parts[0].source_addr
        # The eUICC, its OTA state and its operation in flight in one statement, held here (weak references).
        euicc, ota, active = self._card(s, source)  # noqa: F841
        if euicc is None:
            return f"ignored: no eUICC answers at {source}", None
        try:
            message = self.link.read(euicc, [p.user_data for p in parts])
        except sms.IncompleteMessage:
            raise
        except ValueError as exc:
            return f"rejected: {exc}", None
        if message.por is not None:
            return self._on_por(s, euicc, message, now), None
        return self._on_card_notification(s, euicc, message, source, now)

    @staticmethod
    def _unit(s: Session, op_id: int) -> tuple[Operation | None, Euicc | None, EuiccOta | None]:
        """What a step works on, in one statement: operation ``op_id``, its eUICC with profiles and ISD-R, and its
        OTA state (each None when missing). Later ``s.get`` of these finds them in the session without SQL; the
        caller holds them (the session keeps only weak references)."""
        row = s.execute(_UNIT, {"op_id": op_id}).unique().first()
        return (row[0], row[1], row[2]) if row is not None else (None, None, None)

    def _card(self, s: Session, msisdn: str) -> tuple[Euicc | None, EuiccOta | None, Operation | None]:
        """What an SMS from the card at ``msisdn`` works on, in one statement: the eUICC with a profile at that
        address, with profiles and ISD-R, its OTA state and the operation in flight (None when missing); and whether
        it has held operations (when not, :meth:`_held` needs no statement in this session)."""
        row = s.execute(_CARD, {"msisdn": msisdn.lstrip("+")}).unique().first()
        if row is None:
            return None, None, None
        if not row[3]:
            s.info.setdefault(_NONE_HELD, set()).add(row[0].eid)
        return row[0], row[1], row[2]

    def _active_op(self, s: Session, eid: str) -> Operation | None:
        ota = self._ota(s, eid)
        if ota.active_operation_id is None:
            return None
        op = s.get(Operation, ota.active_operation_id)
        return op if op is not None and op.state == ACTIVE else None

    def _on_por(self, s: Session, euicc: Euicc, message: CardMessage, now: datetime) -> str:
        """A PoR: the answer of the step its operation waits in (CARD_OPERATION), else a confirmation's."""
        op = self._active_op(s, euicc.eid)
        answer = CARD_OPERATION.answerer(self, op.step) if op is not None and op.step in CARD_OPERATION else None
        if op is None or op.counter != message.por.counter or answer != self.on_por:
            return self.on_confirmation_por(s, euicc, message, now)
        return answer(s, op, euicc, message, now)

    def on_por(self, s: Session, op: Operation, euicc: Euicc, message: CardMessage, now: datetime) -> str:
        """send / await_por: the PoR of the operation's packet."""
        por = message.por
        function = Function(op.function)
        if por.status in COUNTER_REFUSED and op.attempts < MAX_COUNTER_RETRIES:
            if op.params.get("transmissions", 1) <= 1 or function is Function.AUDIT:
                # Counter out of order in answer to the packet's first transmission (a packet with a
                # higher counter reached the card first): the card executed nothing, so the command
                # goes again in a new packet. An audit only reads: running it twice is harmless.
                op.counter, op.step = None, SEND
                engine.wait(op, now)
                engine.due_now(s, self.doorbell)
                return f"operation {op.id}: PoR status {por.status:02X} (counter), sent again in a new packet"
            # A retransmission answered "counter low": the card may have executed the first transmission
            # (and lost its PoR) or never seen it; it will not say which (module doc).
            self._outcome_unknown(s, op, now)
            self._finish(s, op, Status.FAILED, FunctionFailed(
                codes.NO_RESPONSE, f"the eUICC answered a retransmission with PoR status {por.status:02X} (counter): "
                "whether it executed the command is unknown; an audit was queued"), now=now, euicc=euicc)
            return f"operation {op.id}: PoR status {por.status:02X} to a retransmission, outcome unknown"
        if function is Function.SMSR_CHANGE:  # the card's answer goes to the target SM-SR as an ES7 callback
            return self.on_peer_por(s, op, euicc, message.responses if por.status == PorStatus.POR_OK else None, now)
        if por.status != PorStatus.POR_OK:
            if por.status == PorStatus.TAR_UNKNOWN and function is Function.SEND_DATA:  # no such ISD-P on the card
                failure = FunctionFailed(codes.SD_AID_UNKNOWN, f"the eUICC has no ISD-P {op.params['isd_p_aid']} "
                                         "(PoR status 09, TAR unknown)", subject_identifier=op.params["isd_p_aid"])
            elif por.status == PorStatus.TAR_UNKNOWN and function is Function.UPDATE_CONNECTIVITY:
                failure = FunctionFailed(codes.ISDP_EXECUTION_ERROR, f"the eUICC has no ISD-P "
                                         f"{op.params['isd_p_aid']} (PoR status 09, TAR unknown)",
                                         subject_identifier=op.params["isd_p_aid"])
            else:
                failure = FunctionFailed(codes.ISDR_EXECUTION_ERROR,
                                         f"the eUICC rejected the secured packet (PoR status {por.status:02X})")
            self._finish(s, op, Status.FAILED, failure, now=now, euicc=euicc)
            return f"PoR status {por.status:02X} for operation {op.id}"
        if function is Function.SEND_DATA:
            return self._on_send_data_por(s, op, euicc, por.data, now)
        if function is Function.UPDATE_CONNECTIVITY:
            return self._on_connectivity_por(s, op, euicc, por.data, now)
        script = message.responses
        op.euicc_response = b"".join(script.responses).hex().upper() if script is not None else None
        sw = script.last_sw if script is not None and script.responses else 0
        if not self._answered(function, script, len(self._script(euicc, op)[0])):
            failure = sw_failure(sw, op.function)
            if sw == es5.SW_NOT_FOUND and function is not Function.AUDIT:
                self._mark_dirty(s, self._ota(s, euicc.eid))
                self.queue_internal(s, euicc.eid, Function.AUDIT, now)
            self._finish(s, op, Status.FAILED, failure, now=now, euicc=euicc)
            return f"operation {op.id} failed with SW {sw:04X}"
        if function in (Function.ENABLE, Function.DISABLE):
            op.step = AWAIT_NOTIFICATION
            engine.wait(op, None)
            return f"operation {op.id}: card accepted, waiting for its notification"
        target = _profile(euicc, op.params.get("iccid"))
        if function is Function.CREATE_ISDP:
            failure = self._add_created_profile(s, op, euicc, now)
            if failure is not None:
                self._finish(s, op, Status.FAILED, failure, now=now, euicc=euicc)
                return f"operation {op.id}: {failure.message}"
            target = _profile(euicc, op.params.get("iccid"))
        elif function is Function.DELETE:
            if target is not None:
                self._apply(s, euicc, target, isdp.Event.DELETED, now)
        elif function is Function.SET_FALLBACK:
            for p in euicc.profiles:
                p.fallback_attribute = p is target
        elif function is Function.AUDIT:
            self._realign(s, euicc, script.responses, now, op.counter)
        eis = self._eis_for(s, op, euicc) if function is Function.AUDIT else None
        self._finish(s, op, Status.EXECUTED_SUCCESS, None, now=now, eis=eis, euicc=euicc, profile=target)
        return f"operation {op.id} executed"

    def _add_created_profile(self, s: Session, op: Operation, euicc: Euicc, now: datetime) -> FunctionFailed | None:
        """The ISD-P exists on the card: the EIS gets the profile, state Created, owned by the SM-DP that asked."""
        iccid = op.params["iccid"]
        if s.execute(_ICCID_HOLDER, {"iccid": iccid}).scalar() is not None:
            # another CreateISDP for the same ICCID, on another eUICC, completed while this one ran
            return FunctionFailed(codes.ICCID_IN_USE, f"ICCID {iccid} was installed elsewhere meanwhile",
                                  subject_identifier=iccid)
        self._apply(s, euicc, ProfileRow(
            eid=euicc.eid, iccid=iccid, isd_p_aid=op.params["isd_p_aid"], mno_id=op.params["mno_id"],
            fallback_attribute=False, imsi=None, msisdn=None, smdp_id=op.requester_id, profile_type=None,
            allocated_memory=int(op.params.get("required_memory", 0)), free_memory=None, pol2=[],
        ), isdp.Event.CREATED, now)
        return None

    def _on_send_data_por(self, s: Session, op: Operation, euicc: Euicc, data: bytes, now: datetime) -> str:
        """The ISD-P's answers go back to the SM-DP unread (EuiccResponseData: the whole response script);
        the function succeeded when every ES8 command ran and the last did not answer with an error."""
        op.euicc_response = data.hex().upper() if data else None
        commands = len(es8.split_send_data(bytes.fromhex(op.params["data"])))
        try:
            executed, responses = es8.parse_send_data_response(data)
        except ValueError:
            executed, responses = 0, []
        if executed == commands and len(responses) == commands and not es8.is_error_response(*responses[-1]):
            self._finish(s, op, Status.EXECUTED_SUCCESS, None, now=now, euicc=euicc)
            return f"operation {op.id}: {commands} ES8 command(s) executed"
        self._finish(s, op, Status.FAILED, FunctionFailed(
            codes.ISDP_EXECUTION_ERROR, f"the ISD-P stopped at ES8 command {executed} of {commands}",
            subject_identifier=op.params["isd_p_aid"]), now=now, euicc=euicc)
        return f"operation {op.id}: ES8 data failed"

    def _on_connectivity_por(self, s: Session, op: Operation, euicc: Euicc, data: bytes, now: datetime) -> str:
        """UpdateConnectivityParameters: the ISD-P's answers go back unread (EuiccResponseData, the whole response
        script), as SendData's. Success is stricter than SendData's: every command ran and answered 9000 (an
        INITIALIZE UPDATE, an EXTERNAL AUTHENTICATE and a secured STORE DATA that did what was asked do; a 63xx
        warning, which lets an expanded script go on, is an EXTERNAL AUTHENTICATE that failed). Else 8.3/4.2."""
        op.euicc_response = data.hex().upper() if data else None
        commands = len(_connectivity_commands(op.params["connectivity_parameters"]))
        try:
            executed, responses = es8.parse_send_data_response(data)
        except ValueError:
            executed, responses = 0, []
        answered = [value[-2:] == b"\x90\x00" for tag, value in responses if tag == es8.TAG_R_APDU]
        if executed == commands and len(answered) == commands and all(answered):
            self._finish(s, op, Status.EXECUTED_SUCCESS, None, now=now, euicc=euicc)
            return f"operation {op.id}: connectivity parameters updated ({commands} ES8 command(s))"
        self._finish(s, op, Status.FAILED, FunctionFailed(
            codes.ISDP_EXECUTION_ERROR, f"the ISD-P did not take the connectivity parameters: {executed} of "
            f"{commands} command(s) ran, {sum(answered)} answered 9000", subject_identifier=op.params["isd_p_aid"]),
            now=now, euicc=euicc)
        return f"operation {op.id}: connectivity parameters refused by the ISD-P"

    @staticmethod
    def _answered(function: Function, script, commands: int) -> bool:
        """Did the card execute the whole script? For an audit, GET STATUS answering 6A88 is an
        answer too: the eUICC has no ISD-P (GET STATUS, GP Card Specification 11.4: no object matches the search)."""
        if script is None or not script.responses:
            return False
        if function is Function.AUDIT:
            return script.responses[0][-2:] in (b"\x90\x00", b"\x6a\x88")
        return script.executed == commands and script.last_sw == es5.SW_OK

    def _held(self, s: Session, eid: str) -> list[Operation]:
        """The held operations of ``eid``; none without a statement when :meth:`_card` saw none and this session
        held none since (:meth:`queue_internal`)."""
        if eid in s.info.get(_NONE_HELD, ()):
            return []
        return list(s.scalars(select(Operation).where(Operation.eid == eid, Operation.state == HELD)))

    def on_confirmation_por(self, s: Session, euicc: Euicc, message: CardMessage, now: datetime) -> str:
        """held: a PoR no operation in flight waits for: a notification confirmation's, or a late one.

        The confirmation's response lists the ISD-Ps the card deleted while processing it (POL1
        "delete when disabled", sgp02-wire.md 6.2); the EIS drops them, and the held operations waiting for this
        PoR go ahead (queued), or end when the card deleted their profile itself.
        """
        script = message.responses
        counter = message.por.counter
        if message.por.status in COUNTER_REFUSED:
            # A card without the simulator's record answers a repeated confirmation "counter low": what it
            # deleted then is unknown. The held operations go ahead; a DELETE of what the card already
            # deleted answers 6A88, which marks the EIS dirty and audits it.
            held = [o for o in self._held(s, euicc.eid) if o.params.get("confirmation_counter") == counter]
            for o in held:
                self._release(s, o, now)
            if held:
                return (f"PoR counter {counter}: status {message.por.status:02X}, "
                        f"{len(held)} held operation(s) go ahead")
        if script is None or not script.responses or script.last_sw != es5.SW_OK:
            return f"PoR counter {counter}: no operation waits for it"
        data = script.responses[-1][:-2]
        if not data.startswith(b"\x80"):
            return f"PoR counter {counter}: no operation waits for it"
        aids = es5.decode_confirmation_response(data)
        for iccid in isdp.deleted_by_card([profile_value(p) for p in euicc.profiles], aids):
            self._apply(s, euicc, _profile(euicc, iccid), isdp.Event.DELETED, now)
        for held in self._held(s, euicc.eid):
            if held.params.get("confirmation_counter") != counter:
                continue
            if _profile(euicc, held.params.get("iccid")) is None:  # the card deleted it itself (POL1)
                self._finish(s, held, Status.EXECUTED_SUCCESS, None, now=now, euicc=euicc)
            else:
                self._release(s, held, now)
        return f"notification confirmed; the card deleted {len(aids)} ISD-P(s)"

    def _release(self, s: Session, held: Operation, now: datetime) -> None:
        """held -> queued (CARD_OPERATION): due now."""
        held.state = held.step = QUEUED
        engine.wait(held, now)
        engine.due_now(s, self.doorbell)

    def _realign(self, s: Session, euicc: Euicc, responses: list[bytes], now: datetime, counter: int) -> None:
        """Make the EIS say what GET STATUS / GET DATA report (the card is the truth; smsr_core.isdp.realign), and
        clear the dirty flag unless a packet was built for the card after the audit's (``counter``: _CLEAR_DIRTY)."""
        statuses = es5.decode_isdp_statuses(responses[0][:-2]) if responses[0][-2:] == b"\x90\x00" else []
        realignment = isdp.realign([profile_value(p) for p in euicc.profiles], statuses)
        for iccid, event in realignment.changes:
            self._apply(s, euicc, _profile(euicc, iccid), event, now)
        for iccid, fallback in realignment.fallback.items():
            _profile(euicc, iccid).fallback_attribute = fallback
        if len(responses) > 1 and responses[1][-2:] == b"\x90\x00":
            resources = es5.decode_card_resources(responses[1][:-2])
            euicc.remaining_memory = resources.free_nvm
        euicc.last_audit_date = now
        self._clear_dirty(s, self._ota(s, euicc.eid), counter)

    def _eis_for(self, s: Session, op: Operation, euicc: Euicc) -> v.Eis:
        """The audited EIS as the requester may see it, narrowed to the ICCIDs it named."""
        s.flush()
        eis = eis_seen_by(eis_value(s, euicc), _requester(op))
        wanted = {i.upper() for i in op.params.get("iccids") or []}
        if wanted:
            eis = replace(eis, profiles=tuple(p for p in eis.profiles if p.iccid in wanted))
        return eis

    def _on_card_notification(self, s: Session, euicc: Euicc, message: CardMessage, source: str, now: datetime
                              ) -> tuple[str, OutboundSms | None]:
        """A default notification: the EIS follows the card (smsr_core.isdp.on_profile_change), and the operation
        waiting in await_notification gets its answer."""
        n = message.notification
        ota = self._ota(s, euicc.eid)
        # The card is reachable where it sent from: the profile it now runs, which the EIS learns
        # only from this very notification.
        confirmation = self._confirmation(s, euicc, ota, n.seq, source)
        if not self._take_notification_seq(s, ota, n.seq):
            self._hold_until_confirmed(s, euicc.eid, ota.counter, n.seq, now)
            return f"notification {n.seq}: duplicate, confirmed again", confirmation
        aid = n.isdp_aid.hex().upper()
        change = isdp.on_profile_change([profile_value(p) for p in euicc.profiles], aid)
        op = self._active_op(s, euicc.eid)
        for iccid, event in change.changes:
            self._apply(s, euicc, _profile(euicc, iccid), event, now)
        for iccid in change.auto_delete:
            # sgp02-wire 5.3: delete after the confirmation, unless the card deletes it then (POL1)
            self.queue_internal(s, euicc.eid, Function.DELETE, now, held=True, iccid=iccid)
        self._hold_until_confirmed(s, euicc.eid, ota.counter, n.seq, now)
        self._audit(s, euicc.eid, now, NOTIFICATION_OPERATION_TYPE,
                    Status.FAILED if n.type == es5.NOTIF_PROFILE_CHANGE_ROLLED_BACK else Status.EXECUTED_SUCCESS,
                    None, None, aid, change.now_enabled)
        if change.now_enabled is None:
            self._mark_dirty(s, ota)
            self.queue_internal(s, euicc.eid, Function.AUDIT, now)
        if op is not None and op.function in (Function.ENABLE.value, Function.DISABLE.value):
            # await_notification's answer; in send / await_por too: the PoR may have been lost on the way back
            self.on_notification(s, op, euicc, change, n.type, now)
        return f"notification {n.seq} type {n.type:02X}: {len(change.changes)} state change(s)", confirmation

    def on_notification(self, s: Session, op: Operation, euicc: Euicc, change: isdp.ProfileChange,
                        notification_type: int, now: datetime) -> None:
        """await_notification: does the card's notification end the Enable/Disable in flight?"""
        target = _profile(euicc, op.params.get("iccid"))
        outcome = isdp.notification_answers(op.function, profile_value(target) if target is not None else None,
                                            change, notification_type)
        if outcome is True:
            self._finish(s, op, Status.EXECUTED_SUCCESS, None, now=now, euicc=euicc, profile=target)
        elif isinstance(outcome, FunctionFailed):
            self._finish(s, op, Status.FAILED, outcome, now=now, euicc=euicc, profile=target)

    def _hold_until_confirmed(self, s: Session, eid: str, confirmation_counter: int, seq: int, now: datetime) -> None:
        """Held operations of ``eid`` wait for the PoR of the confirmation just built. Its PoR is what
        releases them (it lists what the card deleted itself), so without it within ``por_timeout`` the
        confirmation goes again, the identical packet (the held step, :meth:`confirm_again`): the card, which no
        longer re-sends a notification it saw confirmed, answers with the PoR it sent then."""
        for held in self._held(s, eid):
            held.params = {**held.params, "confirmation_counter": confirmation_counter, "confirmation_seq": seq}
            held.next_attempt_at = now + timedelta(seconds=self.timing.por_timeout)

    def _confirmation(self, s: Session, euicc: Euicc, ota: EuiccOta, seq: int, destination: str) -> OutboundSms:
        # A lost confirmation is mended by the card, which sends the notification again until one reaches
        # it (the duplicate is confirmed again); its lost PoR matters to held operations only, for which
        # the confirmation goes again (_hold_until_confirmed).
        counter = self._next_counter(s, ota)
        return OutboundSms(euicc.eid, destination,
                           self.link.command(euicc, counter, [es5.notification_confirmation(seq)]), None, 0)

    @staticmethod
    def _next_counter(s: Session, ota: EuiccOta) -> int:
        """The SCP80 counter of a new packet to the card: the stored one plus one, taken in one UPDATE ... RETURNING
        (the row locked until commit on PostgreSQL), so two workers building packets for one card at the same moment
        (an operation's command, a notification's confirmation) never take the same counter. Read, add and write in
        Python lost one of the two updates under PostgreSQL's READ COMMITTED: two packets under one counter, the card
        answering the second with the first one's PoR."""
        counter = s.execute(_NEXT_COUNTER, {"b_eid": ota.eid}).scalar_one()
        set_committed_value(ota, "counter", counter)  # what the UPDATE wrote, in the loaded row (nothing to flush)
        return counter

    @staticmethod
    def _take_notification_seq(s: Session, ota: EuiccOta, seq: int) -> bool:
        """Is the card's notification ``seq`` new (:func:`_seq_is_new`)? Checked and recorded in one conditional
        UPDATE (_TAKE_SEQ): of two workers handling the same notification at once, one only finds it new (on
        PostgreSQL the second UPDATE waits for the first's commit, then finds the row no longer matches)."""
        taken = s.execute(_TAKE_SEQ, {"b_eid": ota.eid, "seq": seq}).rowcount == 1
        if taken:  # what the UPDATE wrote, in the loaded row (nothing to flush)
            set_committed_value(ota, "last_notification_seq", seq)
        return taken

    @staticmethod
    def _mark_dirty(s: Session, ota: EuiccOta) -> None:
        """The card may differ from the EIS until an audit: ``dirty`` set by an UPDATE of that column alone
        (_MARK_DIRTY), whatever the loaded row says (another worker's audit may have cleared it since)."""
        s.execute(_MARK_DIRTY, {"b_eid": ota.eid})
        set_committed_value(ota, "dirty", True)

    @staticmethod
    def _clear_dirty(s: Session, ota: EuiccOta, audit_counter: int) -> None:
        """An audit (its packet's counter ``audit_counter``) realigned the EIS: ``dirty`` cleared unless a packet
        was built for the card after the audit's (_CLEAR_DIRTY). Nothing to do when the row, read in this unit of
        work after the audit started, was clean: a mark made since is not the audit's to clear."""
        if not ota.dirty:
            return
        if s.execute(_CLEAR_DIRTY, {"b_eid": ota.eid, "audit_counter": audit_counter}).rowcount == 1:
            set_committed_value(ota, "dirty", False)
