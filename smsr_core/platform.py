"""The SM-SR's platform management: asynchronous operations that change what is on the card.

Theory of operation
-------------------
An asynchronous request (ES4/ES3 EnableProfile, DisableProfile, DeleteProfile/DeleteISDP,
AuditEIS, SetFallBackAttribute, ...) becomes an :class:`~smsr_core.ops_models.Operation` row
before the requester gets its ``202 Accepted`` (:meth:`Platform.accept`). A replayed MessageID or
FunctionCallIdentifier from the same requester finds the existing row and is not executed again.

Workers (``esx.worker``) drive the rows through this table; every transition is one database
transaction, and every callback or notification it owes is added to the outbox (through the
:class:`MessageSink`) in that same transaction:

====================  ==================================  ==========================================
state / step          event                               next
====================  ==================================  ==========================================
queued                the eUICC has no operation active   active/send (rules pass) or done (refused)
active/send           a worker leases it, sends the SMS   active/await_por (next attempt = PoR wait)
active/await_por      PoR with the R-APDUs                done, or active/await_notification
active/await_por      no PoR before the next attempt      the same packet sent again (retransmission)
active/await_por      PoR 02/03 to a first transmission   active/send (a new packet, new SCP80 counter)
active/await_por      PoR 02/03 to a retransmission       done FAILED 1.6/5.4 (+ dirty + audit)
active/await_notif.   card notification for the change    done (EIS updated, notifications queued)
any but done          validity period over                done EXPIRED 1.6/5.3 (+ dirty + audit
                                                          when something was sent)
====================  ==================================  ==========================================

Only one operation per eUICC is active at a time: ``euicc_ota.active_operation_id`` is claimed
with a conditional UPDATE, so several workers on one PostgreSQL cannot start two. Leases
(``lease_until``) keep two workers from sending the same attempt; a worker killed mid-step
leaves a lease that simply runs out.

The EIS follows the card, never leads it: profile states change only when the card has
answered (PoR status words, default notifications, GET STATUS during an audit).

Lost SMS. A command is one SCP80 packet with its own counter (``operation.counter``), built the
first time it is due. With no PoR within ``por_timeout`` the *identical* packet is sent again
(same counter, same concatenation reference, same bytes: ``sms_link`` rebuilds it from the counter),
never a new one: an ES8 command relayed by SendData must not run twice (a second STORE DATA
3A02 or SCP03t segment breaks the key agreement or the C-MAC chain), and a retransmission lets
the card complete a concatenated packet from the parts of several transmissions. The card
answers a packet it already executed with the PoR it sent then (``euicc_sim.network``); a card
that answers counter-low ('02', TS 102 225) to a retransmission leaves the outcome unknown: the
operation fails 1.6/5.4 ("delivered with no response"), the EIS is marked dirty and audited, as at
expiry. Only a first transmission answered '02'/'03' is known not to have run: a new packet then.
Retransmissions run until the validity period ends (then EXPIRED 1.6/5.3); ``params`` counts them
(``retransmissions``). Commands go to the enabled profile's MSISDN only (``sms_link``). A lost
notification or confirmation is mended by the card, which sends the notification until a
confirmation reaches it; a confirmation whose PoR held operations wait for (POL2 Auto-Delete) is
itself sent again, the identical packet, until that PoR comes.

Nothing stored stops a worker: an operation whose SMS cannot be built or submitted (no usable
MSISDN, keys missing, a value the SMPP layer cannot encode) fails 1.2/4.2 on its own and frees its
eUICC; an inbox SMS that cannot be handled is retried after its lease and dropped after
:data:`INBOX_GIVE_UP` seconds.

Access is decided when a request is accepted (:meth:`Platform._check_access`: the EID and ICCID
exist, the requester may act on the profile, registry.may_manage): a refusal is answered by its callback
at once, never queued behind the eUICC's other operations. Rules checked again before any command leaves
(sgp02-wire.md 5.3-5.4, 4.4): access as above, then POL2 allows the action (8.2.3/3.8; enabling B also disables the
profile enabled before it, whose POL2 must allow DISABLE), the fall-back profile is never
deleted or disabled, the enabled profile is never deleted. The card enforces POL1 and answers
69E1 (8.2.2/3.8) or 6985 (8.1/3.8).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from keys.secretbox import SecretBox
from ota import es5, es8
from persistence.db import Database
from persistence.engine import accept_once
from sgp02 import codes
from sgp02 import eis as v
from sgp02.codes import FunctionFailed, Status
from sgp02.eis import eis_seen_by
from sgp02.roles import Caller, may_manage

from .models import EisAuditRecord, Euicc, ProfileRow, eis_value
from .ops_models import EuiccOta, Operation, SmsInbox
from .registry import load_euicc, profile_for_caller
from .sms_link import CardMessage, OutboundSms, SmsLink, Unreachable, concatenation_reference

log = logging.getLogger(__name__)


class Function(str, Enum):
    """The card operations, named as SGP.02 names the ES4/ES3 functions."""

    ENABLE = "EnableProfile"
    DISABLE = "DisableProfile"
    DELETE = "DeleteProfile"  # ES3 calls it DeleteISDP
    AUDIT = "AuditEIS"
    SET_FALLBACK = "SetFallBackAttribute"
    CREATE_ISDP = "CreateISDP"  # ES3 only
    SEND_DATA = "SendData"  # ES3 only: ES8 commands relayed, unread, to an ISD-P


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
}
NOTIFICATION_OPERATION_TYPE = "0B00"

QUEUED, ACTIVE, DONE = "queued", "active", "done"
HELD = "held"  # an automatic operation waiting for the PoR of a notification confirmation
SEND, AWAIT_POR, AWAIT_NOTIFICATION = "send", "await_por", "await_notification"

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


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


# ISD-P AIDs the SM-SR allocates at CreateISDP (SGP.02 Annex H layout: RID A000000559, PIX 1010FFFFFFFF89,
# a 3-byte instance number, '00'). The instance number also gives the TAR (ota.es8.isdp_tar).
ISD_P_AID_PREFIX = "A0000005591010FFFFFFFF89"


def isd_p_aid(index: int) -> str:
    """The AID of ISD-P number ``index`` (0, 1, ...): instance number 0x10 + index."""
    return f"{ISD_P_AID_PREFIX}{0x10 + index:06X}00"


def allocate_isd_p_aid(used: list[str]) -> str:
    """The first ISD-P AID of the series not in ``used``."""
    taken = {aid.upper() for aid in used}
    index = 0
    while isd_p_aid(index) in taken:
        index += 1
    return isd_p_aid(index)


def sw_failure(sw: int, what: str) -> FunctionFailed:
    """A card status word as the Subject/Reason the requester gets (issue 3 rule 4)."""
    if sw == es5.SW_MEMORY:
        return FunctionFailed(codes.EUICC_INSUFFICIENT_MEMORY, f"the eUICC has not enough memory for {what} (SW 6A84)")
    if sw == es5.SW_POL1:
        return FunctionFailed(codes.POL1_REFUSED, f"POL1 of the profile forbids {what} (SW 69E1)")
    if sw == es5.SW_CONDITIONS:
        return FunctionFailed(codes.EUICC_REFUSED, f"the eUICC refused {what} (SW 6985)")
    return FunctionFailed(codes.ISDR_EXECUTION_ERROR, f"{what} failed on the eUICC (SW {sw:04X})")


def _seq_is_new(seq: int, last: int) -> bool:
    """Card notification sequence numbers run 1..FFFF and wrap to 1: ``seq`` is new when it is less
    than half the cycle ahead of the last one seen (serial number arithmetic, as RFC 1982)."""
    return last < 0 or 0 < (seq - last) % 0xFFFF < 0x8000


def _requester(op: Operation) -> Caller:
    """Who asked for ``op``, as it stood when the request was accepted."""
    return Caller(op.requester_id, op.params.get("requester_role", "smsr"), frozenset(op.params.get("requester_mnos", ())))


def _pol2_forbids(row: ProfileRow, action: str) -> bool:
    return any(r[1] == action and r[2] == "Not-Allowed" for r in row.pol2)


def _pol2_auto_delete(row: ProfileRow) -> bool:
    return any(r[1] == "DISABLE" and r[2] == "Auto-Delete" for r in row.pol2)


class Platform:
    def __init__(self, db: Database, smsr_id: str, sink: MessageSink, box: SecretBox,
                 timing: Timing | None = None) -> None:
        self.db = db
        self.smsr_id = smsr_id
        self.sink = sink
        self.timing = timing or Timing()
        self.link = SmsLink(box)

    # -- accepting ---------------------------------------------------------------------------

    def _new_row(self, req: AsyncRequest) -> Operation:
        validity = self.timing.default_validity if req.validity_period is None else req.validity_period
        validity = min(float(validity), self.timing.max_validity)
        params = {**req.params, "requester_role": req.requester.role}
        if req.requester.mnos:  # an SM-DP's standing as it was at acceptance (registry.may_manage)
            params["requester_mnos"] = sorted(req.requester.mnos)
        return Operation(
            eid=req.eid.upper(), function=req.function.value, interface=req.interface,
            requester_id=req.requester.oid, message_id=req.message_id, function_call_id=req.function_call_id,
            reply_to=req.reply_to, params=params,
            accepted_at=req.received_at, expires_at=req.received_at + timedelta(seconds=validity),
            state=QUEUED, attempts=0, sent_any=False,
        )

    def accept(self, req: AsyncRequest) -> tuple[int, bool]:
        """Persist the request; (operation id, True when it is new).

        Who may ask this of which eUICC and profile is decided here (:meth:`_check_access`): a refused request is
        finished at once, its callback committed with the row, instead of waiting in the eUICC's queue. A replay
        (same requester and MessageID) is not queued again: its callback is the original's. The same
        FunctionCallIdentifier under a new MessageID is another message asking for a call already made: it is
        refused by a callback relating to the new MessageID (1.6/3.3, naming the MessageID whose outcome to wait
        for), and nothing runs twice.
        """
        with self.db.session() as s:
            op, new = accept_once(s, self._new_row(req))
            if new:
                try:
                    self._check_access(s, op)
                except FunctionFailed as failure:
                    self._finish(s, op, failure.status, failure, now=req.received_at)
            elif req.message_id and op.message_id != req.message_id:
                self._answer_other_message(s, req, codes.call_id_reused(req.function_call_id, op.message_id))
            return op.id, new

    def reject(self, req: AsyncRequest, failure: FunctionFailed) -> None:
        """An accepted request that fails before it could be queued: recorded, answered by callback."""
        with self.db.session() as s:
            op, new = accept_once(s, self._new_row(req))
            if new:
                self._finish(s, op, failure.status, failure, now=req.received_at)
            elif req.message_id and op.message_id != req.message_id:
                self._answer_other_message(s, req, failure)

    def _answer_other_message(self, s: Session, req: AsyncRequest, failure: FunctionFailed) -> None:
        """A callback for a request that has no row of its own (its FunctionCallIdentifier names another's)."""
        self.sink.callback(s, self._new_row(req), failure.status, failure, None, None)

    def queue_internal(self, s: Session, eid: str, function: Function, now: datetime, **params) -> Operation:
        """An operation the SM-SR decides itself (audit after a lost answer, POL2 Auto-Delete)."""
        op = Operation(eid=eid, function=function.value, interface="SMSR", requester_id=self.smsr_id,
                       params={**params, "requester_role": "smsr"}, accepted_at=now,
                       expires_at=now + timedelta(seconds=self.timing.default_validity),
                       state=QUEUED, attempts=0, sent_any=False)
        s.add(op)
        return op

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
            s.execute(insert(EuiccOta).values(eid=eid, counter=0, sms_ref=0, last_notification_seq=-1, dirty=False)
                      .on_conflict_do_nothing(index_elements=[EuiccOta.eid]))
            row = s.get(EuiccOta, eid)
        return row

    def _finish(self, s: Session, op: Operation, status: Status, failure: FunctionFailed | None, *,
                now: datetime, eis: v.Eis | None = None) -> None:
        op.state, op.step, op.done_at, op.lease_until, op.next_attempt_at = DONE, None, now, None, None
        op.result_status = status.value
        if failure is not None:
            op.result_subject, op.result_reason, op.result_message = failure.code.subject, failure.code.reason, failure.message
        s.execute(update(EuiccOta).where(EuiccOta.eid == op.eid, EuiccOta.active_operation_id == op.id)
                  .values(active_operation_id=None))
        if s.get(Euicc, op.eid) is not None:
            profile = self._target(s, op)
            s.add(EisAuditRecord(
                eid=op.eid, smsr_id=self.smsr_id, operation_date=now, operation_type=OPERATION_TYPE[Function(op.function)],
                requester_id=op.requester_id, status=status.value,
                subject=failure.code.subject if failure else None, reason=failure.code.reason if failure else None,
                isd_p_aid=profile.isd_p_aid if profile is not None else op.params.get("isd_p_aid"),
                iccid=op.params.get("iccid"),
            ))
        if op.interface != "SMSR":
            self.sink.callback(s, op, status, failure, eis, op.euicc_response)

    def _target(self, s: Session, op: Operation) -> ProfileRow | None:
        iccid = op.params.get("iccid")
        if not iccid:
            return None
        return s.scalars(select(ProfileRow).where(ProfileRow.iccid == iccid.upper(), ProfileRow.eid == op.eid)).first()

    # -- starting ----------------------------------------------------------------------------

    def start_ready(self, now: datetime) -> int:
        """Activate the oldest queued operation of every eUICC that has none active."""
        started = 0
        with self.db.session() as s:
            candidates = s.execute(
                select(Operation.eid, Operation.id).where(Operation.state == QUEUED).order_by(Operation.id)
            ).all()
        seen: set[str] = set()
        for eid, op_id in candidates:
            if eid in seen:
                continue
            seen.add(eid)
            with self.db.session() as s:
                if s.get(Euicc, eid) is None:  # nothing to serialise on: refuse at once
                    op = s.get(Operation, op_id)
                    self._finish(s, op, Status.FAILED, FunctionFailed(
                        codes.EID_UNKNOWN, f"EID {eid} is not known to this SM-SR", subject_identifier=eid), now=now)
                    continue
                self._ota(s, eid)
                claimed = s.execute(
                    update(EuiccOta).where(EuiccOta.eid == eid, EuiccOta.active_operation_id.is_(None))
                    .values(active_operation_id=op_id)
                ).rowcount
                if claimed != 1:
                    continue
                op = s.get(Operation, op_id)
                if op is None or op.state != QUEUED:
                    s.rollback()
                    continue
                try:
                    self._check_rules(s, op)
                except FunctionFailed as failure:
                    self._finish(s, op, failure.status, failure, now=now)
                    continue
                op.state, op.step, op.next_attempt_at = ACTIVE, SEND, now
                started += 1
        return started

    def _check_access(self, s: Session, op: Operation) -> Euicc:
        """Who may ask this of which eUICC and profile, and is the request well formed: decided when the request is
        accepted, and again when it starts (the profile may have gone meanwhile). Returns the eUICC."""
        caller = _requester(op)
        function = Function(op.function)
        euicc = load_euicc(s, op.eid)
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
            self._check_send_data(s, op, euicc, caller)
        else:
            row = profile_for_caller(s, caller, op.eid, op.params["iccid"])
            op.params = {**op.params, "isd_p_aid": row.isd_p_aid}
        return euicc

    def _check_rules(self, s: Session, op: Operation) -> None:
        """Everything that must hold when the operation starts: access (:meth:`_check_access`), then the state rules."""
        euicc = self._check_access(s, op)
        caller = _requester(op)
        function = Function(op.function)
        if function is Function.CREATE_ISDP:
            self._check_create_isdp(s, op, euicc)
            return
        if function in (Function.AUDIT, Function.SEND_DATA):
            return
        row = self._target(s, op)
        iccid = row.iccid
        profiles = list(euicc.profiles)
        enabled = next((p for p in profiles if p.state == v.ProfileState.ENABLED.value), None)
        fallback = next((p for p in profiles if p.fallback_attribute), None)
        if function is Function.ENABLE:
            if row.state == v.ProfileState.ENABLED.value:
                raise FunctionFailed(codes.EUICC_REFUSED, f"profile {iccid} is already enabled", subject_identifier=iccid)
            if row.state != v.ProfileState.DISABLED.value:
                raise FunctionFailed(codes.EUICC_REFUSED, f"profile {iccid} is {row.state}, not Disabled", subject_identifier=iccid)
            if _pol2_forbids(row, "ENABLE"):
                raise FunctionFailed(codes.POL2_REFUSED, f"POL2 of {iccid} forbids ENABLE", subject_identifier=iccid)
            if enabled is not None and _pol2_forbids(enabled, "DISABLE"):
                # Name the enabled profile only to a caller that may see it: it may be another MNO's.
                shown = enabled.iccid if may_manage(caller, enabled) else None
                what = f"the enabled profile {shown}" if shown else "the enabled profile"
                raise FunctionFailed(codes.POL2_REFUSED, f"POL2 of {what} forbids DISABLE", subject_identifier=shown)
        elif function is Function.DISABLE:
            if row.state != v.ProfileState.ENABLED.value:
                raise FunctionFailed(codes.EUICC_REFUSED, f"profile {iccid} is not enabled", subject_identifier=iccid)
            if row.fallback_attribute or fallback is None:
                raise FunctionFailed(codes.EUICC_REFUSED, f"profile {iccid} carries the fall-back attribute: the eUICC "
                                     "would have no profile to fall back to", subject_identifier=iccid)
            if _pol2_forbids(row, "DISABLE"):
                raise FunctionFailed(codes.POL2_REFUSED, f"POL2 of {iccid} forbids DISABLE", subject_identifier=iccid)
        elif function is Function.DELETE:
            if row.fallback_attribute:
                raise FunctionFailed(codes.EUICC_REFUSED, f"profile {iccid} carries the fall-back attribute and is never deleted",
                                     subject_identifier=iccid)
            if row.state == v.ProfileState.ENABLED.value:
                raise FunctionFailed(codes.EUICC_REFUSED, f"profile {iccid} is enabled: disable it first", subject_identifier=iccid)
            if _pol2_forbids(row, "DELETE"):
                raise FunctionFailed(codes.POL2_REFUSED, f"POL2 of {iccid} forbids DELETE", subject_identifier=iccid)
        elif function is Function.SET_FALLBACK:
            if row.state == v.ProfileState.CREATED.value:
                raise FunctionFailed(codes.EUICC_REFUSED, f"profile {iccid} is not installed yet", subject_identifier=iccid)

    def _check_create_isdp(self, s: Session, op: Operation, euicc: Euicc) -> None:
        iccid = op.params["iccid"]
        holder = s.scalars(select(ProfileRow.eid).where(ProfileRow.iccid == iccid)).first()
        if holder is not None:
            where = "this" if holder == euicc.eid else "another"
            raise FunctionFailed(codes.ICCID_IN_USE, f"ICCID {iccid} is already installed on {where} eUICC",
                                 subject_identifier=iccid)
        op.params = {**op.params, "isd_p_aid": allocate_isd_p_aid([p.isd_p_aid for p in euicc.profiles])}

    def _check_send_data(self, s: Session, op: Operation, euicc: Euicc, caller: Caller) -> None:
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
        op.params = {**op.params, "iccid": row.iccid, "isd_p_aid": row.isd_p_aid}

    def _check_audit(self, euicc: Euicc, caller: Caller, iccids: list[str]) -> None:
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

    # -- sending -----------------------------------------------------------------------------

    def _script(self, s: Session, op: Operation) -> tuple[list[bytes], bytes | None]:
        """The command TLVs of the operation's script and the TAR they go to (None: the ISD-R's).

        ES5 functions are C-APDUs to the ISD-R ('22' TLVs); SendData's ES8 commands go as they came, to
        the TAR of the target ISD-P, under the ISD-R's SCP80 keys (ota.es8: the ISD-R forwards them).
        """
        function = Function(op.function)
        if function is Function.SEND_DATA:
            aid = bytes.fromhex(op.params["isd_p_aid"])
            return es8.split_send_data(bytes.fromhex(op.params["data"])), es8.isdp_tar(aid)
        if function is Function.AUDIT:
            apdus = [es5.get_status_isdp(None), es5.get_data_resources()]
        elif function is Function.CREATE_ISDP:
            euicc = s.get(Euicc, op.eid)
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

    def due_sends(self, now: datetime) -> list[OutboundSms]:
        """Lease every active operation whose command is due and build its SMS: the operation's packet,
        new (a fresh counter) or the one already sent (a retransmission, the same bytes)."""
        out: list[OutboundSms] = []
        with self.db.session() as s:
            ids = list(s.scalars(select(Operation.id).where(
                Operation.state == ACTIVE, Operation.step.in_((SEND, AWAIT_POR)), Operation.next_attempt_at <= now,
                Operation.expires_at > now, or_(Operation.lease_until.is_(None), Operation.lease_until < now))))
        for op_id in ids:
            try:
                outbound = self._build_send(op_id, now)
            except Exception:  # whatever is stored, one operation must not stop the others (module doc)
                log.exception("operation %s: its SMS could not be built", op_id)
                self._cannot_send(op_id, now, "the SM-SR could not build the command for this eUICC")
                continue
            if outbound is not None:
                out.append(outbound)
        return out + self._confirmations_again(now)

    def _build_send(self, op_id: int, now: datetime) -> OutboundSms | None:
        with self.db.session() as s:
            # Check again that it is due: between the SELECT above and this UPDATE another worker
            # may have leased, sent and released it (sent() clears the lease), and it must not be
            # sent twice in one period.
            leased = s.execute(
                update(Operation).where(Operation.id == op_id, Operation.state == ACTIVE,
                                        Operation.step.in_((SEND, AWAIT_POR)), Operation.next_attempt_at <= now,
                                        or_(Operation.lease_until.is_(None), Operation.lease_until < now))
                .values(lease_until=now + timedelta(seconds=self.timing.lease))
            ).rowcount
            if leased != 1:
                return None
            op = s.get(Operation, op_id)
            euicc = s.get(Euicc, op.eid)
            try:
                destination = self.link.destination(euicc)
            except Unreachable as exc:
                if op.sent_any:  # reachable before: what the earlier transmissions did is unknown
                    self._outcome_unknown(s, op, now)
                self._finish(s, op, Status.FAILED, FunctionFailed(codes.INTERNAL_ERROR, str(exc)), now=now)
                return None
            retransmission = op.counter is not None
            if not retransmission:
                ota = self._ota(s, op.eid)
                ota.counter += 1
                ota.sms_ref = concatenation_reference(ota.counter)
                op.counter = ota.counter
            commands, tar = self._script(s, op)
            segments = self.link.command_tlvs(euicc, op.counter, commands, tar=tar)
            op.attempts += 1
            params = dict(op.params)
            params["transmissions"] = params.get("transmissions", 0) + 1 if retransmission else 1
            params["retransmissions"] = params.get("retransmissions", 0) + retransmission
            op.params = params
            if retransmission:
                log.info("operation %s: packet with counter %s sent again (retransmission %d)", op.id, op.counter,
                         params["retransmissions"])
            return OutboundSms(op.eid, destination, segments, op.id, op.attempts)

    def sent(self, sms: OutboundSms, now: datetime) -> None:
        """The SMSC took the command: wait for its PoR."""
        if sms.operation_id is None:
            return
        with self.db.session() as s:
            op = s.get(Operation, sms.operation_id)
            if op is None or op.state != ACTIVE or op.attempts != sms.attempt:
                return
            op.sent_any = True
            if op.step == SEND:
                op.step = AWAIT_POR
            op.next_attempt_at = now + timedelta(seconds=self.timing.por_timeout)
            op.lease_until = None

    def send_failed(self, sms: OutboundSms, now: datetime, error: str) -> None:
        """The SMSC refused or is away: try the same step again a little later (the same packet: some of
        its parts may have reached the card)."""
        if sms.operation_id is None:
            return
        log.warning("operation %s: SMS not submitted: %s", sms.operation_id, error)
        with self.db.session() as s:
            op = s.get(Operation, sms.operation_id)
            if op is None or op.state != ACTIVE:
                return
            op.next_attempt_at = now + timedelta(seconds=self.timing.send_retry)
            op.lease_until = None

    def cannot_send(self, sms: OutboundSms, now: datetime) -> None:
        """The SMS cannot be submitted at all, now or later (the SMPP layer refused the values): the
        operation fails and its eUICC is free; a notification confirmation is simply not sent (the card
        sends its notification again)."""
        if sms.operation_id is not None:
            self._cannot_send(sms.operation_id, now, "the SM-SR could not submit the SMS to this eUICC")

    def _cannot_send(self, op_id: int, now: datetime, message: str) -> None:
        """End an operation that cannot be sent: FAILED 1.2/4.2, eUICC freed; dirty + audit when an
        earlier transmission may have reached the card."""
        try:
            with self.db.session() as s:
                op = s.get(Operation, op_id)
                if op is None or op.state != ACTIVE:
                    return
                if op.sent_any:
                    self._outcome_unknown(s, op, now)
                self._finish(s, op, Status.FAILED, FunctionFailed(codes.INTERNAL_ERROR, message), now=now)
        except Exception:  # the database itself is failing: the lease runs out and expiry ends it
            log.exception("operation %s: could not be ended", op_id)

    def _outcome_unknown(self, s: Session, op: Operation, now: datetime) -> None:
        """The card may or may not have executed ``op``: mark the EIS dirty and audit (not an audit's audit)."""
        self._ota(s, op.eid).dirty = True
        automatic_audit = Function(op.function) is Function.AUDIT and op.interface == "SMSR"
        if s.get(Euicc, op.eid) is not None and not automatic_audit:
            self.queue_internal(s, op.eid, Function.AUDIT, now)

    # -- expiry ------------------------------------------------------------------------------

    def expire(self, now: datetime) -> int:
        with self.db.session() as s:
            ids = list(s.scalars(select(Operation.id).where(Operation.state != DONE, Operation.expires_at <= now)))
        for op_id in ids:
            with self.db.session() as s:
                op = s.get(Operation, op_id)
                if op is None or op.state == DONE:
                    continue
                if op.sent_any:
                    # Sent but never answered: the card may have acted. Mark the EIS dirty and let an
                    # audit realign it with what the card reports.
                    self._ota(s, op.eid).dirty = True
                    automatic_audit = Function(op.function) is Function.AUDIT and op.interface == "SMSR"
                    if s.get(Euicc, op.eid) is not None and not automatic_audit:
                        self.queue_internal(s, op.eid, Function.AUDIT, now)
                self._finish(s, op, Status.EXPIRED, FunctionFailed(
                    codes.EXPIRED_TTL, "the validity period ended before the eUICC completed the function",
                    status=Status.EXPIRED), now=now)
        return len(ids)

    # -- what the card sends back ------------------------------------------------------------

    def process_inbox(self, now: datetime) -> list[OutboundSms]:
        """Handle complete SMS from the inbox (PoRs, card notifications); returns confirmations to send."""
        out: list[OutboundSms] = []
        with self.db.session() as s:
            rows = s.scalars(select(SmsInbox).where(
                SmsInbox.processed_at.is_(None),
                or_(SmsInbox.lease_until.is_(None), SmsInbox.lease_until < now)).order_by(SmsInbox.id)).all()
            groups: dict[tuple[str, int | None], list[int]] = {}
            for r in rows:
                key = (r.source_addr, r.concat_ref) if r.concat_ref is not None else (r.source_addr, -r.id)
                groups.setdefault(key, []).append(r.id)
        for ids in groups.values():
            try:
                confirmation = self._process_group(ids, now)
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
                    if _utc(row.received_at) <= now - timedelta(seconds=INBOX_GIVE_UP):
                        row.processed_at, row.outcome, row.lease_until = now, "dropped: could not be processed", None
                    else:
                        row.lease_until = now + timedelta(seconds=self.timing.lease)
        except Exception:
            log.exception("SMS %s could not be set aside", ids)

    def _process_group(self, ids: list[int], now: datetime) -> OutboundSms | None:
        """One SMS (all its parts) in one transaction: the state change and what it owes commit together."""
        with self.db.session() as s:
            leased = s.execute(update(SmsInbox).where(
                SmsInbox.id.in_(ids), SmsInbox.processed_at.is_(None),
                or_(SmsInbox.lease_until.is_(None), SmsInbox.lease_until < now))
                .values(lease_until=now + timedelta(seconds=self.timing.lease))).rowcount
            if leased != len(ids):
                s.rollback()
                return None
            parts = s.scalars(select(SmsInbox).where(SmsInbox.id.in_(ids)).order_by(SmsInbox.id)).all()
            outcome, confirmation = self._handle_parts(s, parts, now)
            if outcome == "incomplete":
                for p in parts:
                    p.lease_until = None
                    if _utc(p.received_at) < now - timedelta(seconds=INBOX_GIVE_UP):
                        p.processed_at, p.outcome = now, "dropped: concatenated SMS never completed"
                return None
            for p in parts:
                p.processed_at, p.outcome, p.lease_until = now, outcome[:200], None
            return confirmation

    def _handle_parts(self, s: Session, parts: list[SmsInbox], now: datetime) -> tuple[str, OutboundSms | None]:
        source = parts[0].source_addr
        euicc = self.link.euicc_for_address(s, source)
        if euicc is None:
            return f"ignored: no eUICC answers at {source}", None
        try:
            message = self.link.read(euicc, [p.user_data for p in parts])
        except ValueError as exc:
            if "incomplete" in str(exc):
                return "incomplete", None
            return f"rejected: {exc}", None
        if message.por is not None:
            return self._on_por(s, euicc, message, now), None
        return self._on_notification(s, euicc, message, source, now)

    def _active_op(self, s: Session, eid: str) -> Operation | None:
        ota = self._ota(s, eid)
        if ota.active_operation_id is None:
            return None
        op = s.get(Operation, ota.active_operation_id)
        return op if op is not None and op.state == ACTIVE else None

    def _on_por(self, s: Session, euicc: Euicc, message: CardMessage, now: datetime) -> str:
        por = message.por
        op = self._active_op(s, euicc.eid)
        if op is None or op.counter != por.counter or op.step not in (SEND, AWAIT_POR):
            return self._on_other_por(s, euicc, message, now)
        function = Function(op.function)
        if por.status in (0x02, 0x03) and op.attempts < 10:
            if op.params.get("transmissions", 1) <= 1 or function is Function.AUDIT:
                # Counter out of order in answer to the packet's first transmission (a packet with a
                # higher counter reached the card first): the card executed nothing, so the command
                # goes again in a new packet. An audit only reads: running it twice is harmless.
                op.counter, op.step, op.next_attempt_at, op.lease_until = None, SEND, now, None
                return f"operation {op.id}: PoR status {por.status:02X} (counter), sent again in a new packet"
            # A retransmission answered "counter low": the card may have executed the first transmission
            # (and lost its PoR) or never seen it; it will not say which (module doc).
            self._outcome_unknown(s, op, now)
            self._finish(s, op, Status.FAILED, FunctionFailed(
                codes.NO_RESPONSE, f"the eUICC answered a retransmission with PoR status {por.status:02X} (counter): "
                "whether it executed the command is unknown; an audit was queued"), now=now)
            return f"operation {op.id}: PoR status {por.status:02X} to a retransmission, outcome unknown"
        if por.status != 0:
            if por.status == 0x09 and function is Function.SEND_DATA:  # TAR unknown: no such ISD-P on the card
                failure = FunctionFailed(codes.SD_AID_UNKNOWN, f"the eUICC has no ISD-P {op.params['isd_p_aid']} "
                                         "(PoR status 09, TAR unknown)", subject_identifier=op.params["isd_p_aid"])
            else:
                failure = FunctionFailed(codes.ISDR_EXECUTION_ERROR,
                                         f"the eUICC rejected the secured packet (PoR status {por.status:02X})")
            self._finish(s, op, Status.FAILED, failure, now=now)
            return f"PoR status {por.status:02X} for operation {op.id}"
        if function is Function.SEND_DATA:
            return self._on_send_data_por(s, op, por.data, now)
        script = message.responses
        op.euicc_response = b"".join(script.responses).hex().upper() if script is not None else None
        sw = script.last_sw if script is not None and script.responses else 0
        if not self._answered(function, script, len(self._script(s, op)[0])):
            failure = sw_failure(sw, op.function)
            if sw == es5.SW_NOT_FOUND and function is not Function.AUDIT:
                self._ota(s, euicc.eid).dirty = True
                self.queue_internal(s, euicc.eid, Function.AUDIT, now)
            self._finish(s, op, Status.FAILED, failure, now=now)
            return f"operation {op.id} failed with SW {sw:04X}"
        if function in (Function.ENABLE, Function.DISABLE):
            op.step, op.next_attempt_at, op.lease_until = AWAIT_NOTIFICATION, None, None
            return f"operation {op.id}: card accepted, waiting for its notification"
        target = self._target(s, op)
        if function is Function.CREATE_ISDP:
            failure = self._add_created_profile(s, op, euicc)
            if failure is not None:
                self._finish(s, op, Status.FAILED, failure, now=now)
                return f"operation {op.id}: {failure.message}"
        elif function is Function.DELETE:
            if target is not None:
                if target.state != v.ProfileState.CREATED.value:  # a download that never completed: nobody knew it
                    self.sink.profile_notification(s, "Deleted", euicc.eid, target, now)
                euicc.profiles.remove(target)
                s.delete(target)
        elif function is Function.SET_FALLBACK:
            for p in euicc.profiles:
                p.fallback_attribute = p is target
        elif function is Function.AUDIT:
            self._realign(s, euicc, script.responses, now)
        s.flush()
        eis = self._eis_for(s, op) if function is Function.AUDIT else None
        self._finish(s, op, Status.EXECUTED_SUCCESS, None, now=now, eis=eis)
        return f"operation {op.id} executed"

    def _add_created_profile(self, s: Session, op: Operation, euicc: Euicc) -> FunctionFailed | None:
        """The ISD-P exists on the card: the EIS gets the profile, state Created, owned by the SM-DP that asked."""
        iccid = op.params["iccid"]
        if s.scalars(select(ProfileRow.id).where(ProfileRow.iccid == iccid)).first() is not None:
            # another CreateISDP for the same ICCID, on another eUICC, completed while this one ran
            return FunctionFailed(codes.ICCID_IN_USE, f"ICCID {iccid} was installed elsewhere meanwhile",
                                  subject_identifier=iccid)
        euicc.profiles.append(ProfileRow(
            eid=euicc.eid, iccid=iccid, isd_p_aid=op.params["isd_p_aid"], mno_id=op.params["mno_id"],
            fallback_attribute=False, imsi=None, msisdn=None, state=v.ProfileState.CREATED.value,
            smdp_id=op.requester_id, profile_type=None, allocated_memory=int(op.params.get("required_memory", 0)),
            free_memory=None, pol2=[],
        ))
        return None

    def _on_send_data_por(self, s: Session, op: Operation, data: bytes, now: datetime) -> str:
        """The ISD-P's answers go back to the SM-DP unread (EuiccResponseData: the whole response script);
        the function succeeded when every ES8 command ran and the last did not answer with an error."""
        op.euicc_response = data.hex().upper() if data else None
        commands = len(es8.split_send_data(bytes.fromhex(op.params["data"])))
        try:
            executed, responses = es8.parse_send_data_response(data)
        except ValueError:
            executed, responses = 0, []
        if executed == commands and len(responses) == commands and not es8.is_error_response(*responses[-1]):
            self._finish(s, op, Status.EXECUTED_SUCCESS, None, now=now)
            return f"operation {op.id}: {commands} ES8 command(s) executed"
        self._finish(s, op, Status.FAILED, FunctionFailed(
            codes.ISDP_EXECUTION_ERROR, f"the ISD-P stopped at ES8 command {executed} of {commands}",
            subject_identifier=op.params["isd_p_aid"]), now=now)
        return f"operation {op.id}: ES8 data failed"

    @staticmethod
    def _answered(function: Function, script, commands: int) -> bool:
        """Did the card execute the whole script? For an audit, GET STATUS answering 6A88 is an
        answer too: the eUICC has no ISD-P (GET STATUS, GP Card Specification 11.4: no object matches the search)."""
        if script is None or not script.responses:
            return False
        if function is Function.AUDIT:
            return script.responses[0][-2:] in (b"\x90\x00", b"\x6a\x88")
        return script.executed == commands and script.last_sw == es5.SW_OK

    def _on_other_por(self, s: Session, euicc: Euicc, message: CardMessage, now: datetime) -> str:
        """A PoR no operation waits for: a notification confirmation's, or a late one.

        The confirmation's response lists the ISD-Ps the card deleted while processing it (POL1
        "delete when disabled", sgp02-wire.md 6.2); the EIS drops them.
        """
        script = message.responses
        if message.por.status in (0x02, 0x03):
            # A card without the simulator's record answers a repeated confirmation "counter low": what it
            # deleted then is unknown. The held operations go ahead; a DELETE of what the card already
            # deleted answers 6A88, which marks the EIS dirty and audits it.
            held = [o for o in s.scalars(select(Operation).where(Operation.eid == euicc.eid, Operation.state == HELD))
                    if o.params.get("confirmation_counter") == message.por.counter]
            for o in held:
                o.state = QUEUED
            if held:
                return (f"PoR counter {message.por.counter}: status {message.por.status:02X}, "
                        f"{len(held)} held operation(s) go ahead")
        if script is None or not script.responses or script.last_sw != es5.SW_OK:
            return f"PoR counter {message.por.counter}: no operation waits for it"
        data = script.responses[-1][:-2]
        if not data.startswith(b"\x80"):
            return f"PoR counter {message.por.counter}: no operation waits for it"
        deleted = {aid.hex().upper() for aid in es5.decode_confirmation_response(data)}
        for p in list(euicc.profiles):
            if p.isd_p_aid.upper() in deleted:
                self.sink.profile_notification(s, "Deleted", euicc.eid, p, now)
                euicc.profiles.remove(p)
                s.delete(p)
        s.flush()
        for held in s.scalars(select(Operation).where(Operation.eid == euicc.eid, Operation.state == HELD)).all():
            if held.params.get("confirmation_counter") != message.por.counter:
                continue
            if self._target(s, held) is None:  # the card deleted it itself (POL1)
                self._finish(s, held, Status.EXECUTED_SUCCESS, None, now=now)
            else:
                held.state = QUEUED
        return f"notification confirmed; the card deleted {len(deleted)} ISD-P(s)"

    def _realign(self, s: Session, euicc: Euicc, responses: list[bytes], now: datetime) -> None:
        """Make the EIS say what GET STATUS / GET DATA report (the card is the truth)."""
        statuses = es5.decode_isdp_statuses(responses[0][:-2]) if responses[0][-2:] == b"\x90\x00" else []
        by_aid = {st.aid.hex().upper(): st for st in statuses}
        for p in list(euicc.profiles):
            st = by_aid.get(p.isd_p_aid.upper())
            if st is None:
                self.sink.profile_notification(s, "Deleted", euicc.eid, p, now)
                euicc.profiles.remove(p)
                s.delete(p)
                continue
            state = {es5.ENABLED: v.ProfileState.ENABLED, es5.DISABLED: v.ProfileState.DISABLED}.get(
                st.lifecycle, v.ProfileState.CREATED).value
            if state != p.state:
                if state == v.ProfileState.ENABLED.value:
                    self.sink.profile_notification(s, "Enabled", euicc.eid, p, now)
                elif p.state == v.ProfileState.ENABLED.value:
                    self.sink.profile_notification(s, "Disabled", euicc.eid, p, now)
                p.state = state
            p.fallback_attribute = st.fallback
        if len(responses) > 1 and responses[1][-2:] == b"\x90\x00":
            resources = es5.decode_card_resources(responses[1][:-2])
            euicc.remaining_memory = resources.free_nvm
        euicc.last_audit_date = now
        self._ota(s, euicc.eid).dirty = False

    def _eis_for(self, s: Session, op: Operation) -> v.Eis:
        """The audited EIS as the requester may see it, narrowed to the ICCIDs it named."""
        eis = eis_seen_by(eis_value(s, s.get(Euicc, op.eid)), _requester(op))
        wanted = {i.upper() for i in op.params.get("iccids") or []}
        if wanted:
            eis = replace(eis, profiles=tuple(p for p in eis.profiles if p.iccid in wanted))
        return eis

    def _on_notification(self, s: Session, euicc: Euicc, message: CardMessage, source: str, now: datetime
                         ) -> tuple[str, OutboundSms | None]:
        n = message.notification
        ota = self._ota(s, euicc.eid)
        # The card is reachable where it sent from: the profile it now runs, which the EIS learns
        # only from this very notification.
        confirmation = self._confirmation(euicc, ota, n.seq, source)
        if not _seq_is_new(n.seq, ota.last_notification_seq):
            self._hold_until_confirmed(s, euicc.eid, ota.counter, n.seq, now)
            return f"notification {n.seq}: duplicate, confirmed again", confirmation
        ota.last_notification_seq = n.seq
        aid = n.isdp_aid.hex().upper()
        now_enabled = next((p for p in euicc.profiles if p.isd_p_aid.upper() == aid), None)
        op = self._active_op(s, euicc.eid)
        changed = []
        if now_enabled is not None:
            for p in euicc.profiles:
                if p is not now_enabled and p.state == v.ProfileState.ENABLED.value:
                    p.state = v.ProfileState.DISABLED.value
                    changed.append(("Disabled", p))
            if now_enabled.state != v.ProfileState.ENABLED.value:
                now_enabled.state = v.ProfileState.ENABLED.value
                changed.append(("Enabled", now_enabled))
        for change, p in changed:
            self.sink.profile_notification(s, change, euicc.eid, p, now)
        for change, p in changed:
            if change == "Disabled" and _pol2_auto_delete(p):
                # sgp02-wire 5.3: delete after the confirmation, unless the card deletes it then (POL1)
                self.queue_internal(s, euicc.eid, Function.DELETE, now, iccid=p.iccid).state = HELD
        self._hold_until_confirmed(s, euicc.eid, ota.counter, n.seq, now)
        s.add(EisAuditRecord(eid=euicc.eid, smsr_id=self.smsr_id, operation_date=now,
                             operation_type=NOTIFICATION_OPERATION_TYPE,
                             status=(Status.FAILED if n.type == es5.NOTIF_PROFILE_CHANGE_ROLLED_BACK else Status.EXECUTED_SUCCESS).value,
                             isd_p_aid=aid, iccid=now_enabled.iccid if now_enabled else None))
        if now_enabled is None:
            ota.dirty = True
            self.queue_internal(s, euicc.eid, Function.AUDIT, now)
        if op is not None and Function(op.function) in (Function.ENABLE, Function.DISABLE):
            target = self._target(s, op)
            ok = (
                n.type == es5.NOTIF_PROFILE_CHANGE_OK and Function(op.function) is Function.ENABLE
                and target is not None and target is now_enabled
            ) or (
                Function(op.function) is Function.DISABLE and target is not None
                and target.state == v.ProfileState.DISABLED.value and n.type != es5.NOTIF_PROFILE_CHANGE_ROLLED_BACK
            )
            if ok:
                self._finish(s, op, Status.EXECUTED_SUCCESS, None, now=now)
            elif n.type == es5.NOTIF_PROFILE_CHANGE_ROLLED_BACK:
                self._finish(s, op, Status.FAILED, FunctionFailed(
                    codes.ISDR_EXECUTION_ERROR, "the eUICC could not attach with the profile and rolled back"), now=now)
        return f"notification {n.seq} type {n.type:02X}: {len(changed)} state change(s)", confirmation

    def _hold_until_confirmed(self, s: Session, eid: str, confirmation_counter: int, seq: int, now: datetime) -> None:
        """Held operations of ``eid`` wait for the PoR of the confirmation just built. Its PoR is what
        releases them (it lists what the card deleted itself), so without it within ``por_timeout`` the
        confirmation goes again, the identical packet (:meth:`due_sends`): the card, which no longer
        re-sends a notification it saw confirmed, answers with the PoR it sent then."""
        s.flush()
        for held in s.scalars(select(Operation).where(Operation.eid == eid, Operation.state == HELD)).all():
            held.params = {**held.params, "confirmation_counter": confirmation_counter, "confirmation_seq": seq}
            held.next_attempt_at = now + timedelta(seconds=self.timing.por_timeout)

    def _confirmations_again(self, now: datetime) -> list[OutboundSms]:
        """The confirmations whose PoR held operations still wait for, sent again (see above)."""
        out: list[OutboundSms] = []
        with self.db.session() as s:
            ids = list(s.scalars(select(Operation.id).where(
                Operation.state == HELD, Operation.next_attempt_at <= now, Operation.expires_at > now)))
        sent: set[tuple[str, int]] = set()
        for op_id in ids:
            try:
                with self.db.session() as s:
                    held = s.get(Operation, op_id)
                    counter, seq = held.params.get("confirmation_counter"), held.params.get("confirmation_seq")
                    if held.state != HELD or counter is None or seq is None:
                        continue
                    held.next_attempt_at = now + timedelta(seconds=self.timing.por_timeout)
                    if (held.eid, counter) in sent:
                        continue
                    sent.add((held.eid, counter))
                    euicc = s.get(Euicc, held.eid)
                    out.append(OutboundSms(held.eid, self.link.destination(euicc), self.link.command(
                        euicc, counter, [es5.notification_confirmation(seq)]), None, 0))
            except Exception:  # e.g. no reachable profile now: the held operation expires in its time
                log.exception("held operation %s: its confirmation could not be sent again", op_id)
        return out

    def _confirmation(self, euicc: Euicc, ota: EuiccOta, seq: int, destination: str) -> OutboundSms:
        # A lost confirmation is mended by the card, which sends the notification again until one reaches
        # it (the duplicate is confirmed again); its lost PoR matters to held operations only, for which
        # the confirmation goes again (_hold_until_confirmed).
        ota.counter += 1
        ota.sms_ref = concatenation_reference(ota.counter)
        return OutboundSms(euicc.eid, destination,
                           self.link.command(euicc, ota.counter, [es5.notification_confirmation(seq)]), None, 0)
