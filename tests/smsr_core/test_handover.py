"""SM-SR change in process: two SM-SR cores (each its own database), one simulated card network, ES7 carried by hand.

The current SM-SR (A, the demo instance's) runs the SMSRChange operation (smsr_core.platform + handover.HandingOver);
the new one (B: its own database and secrets, its SM-SR certificate issued by the demo CI) runs the RECEIVE flow
(smsr_core.handover.Handovers). :class:`Lab` plays the rest: it carries every ES7 request and callback from one
SM-SR's outbox to the other's handler (as esx.outbox delivers and esx.es7.service dispatches), and runs both workers'
ticks, with the SMSC between each SM-SR and the card (the card answers the SMS address that addressed it).
"""
from __future__ import annotations

import itertools
import shutil
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from esx.demo import EUM_OID, MNO_OID, SMSR_OID, demo_eid, demo_iccid, init_instance
from euicc_sim.network import card_keyset
from keys import scp80
from ota import es5, remote, sms
from keys.pki import DevPki
from persistence.db import migrate, sqlite_url
from persistence.entities import get_entity
from persistence.outbox import OutboxMessage
from sgp02 import codes
from sgp02.codes import Status
from sgp02.events import OperationFinished, PeerRequested, from_json
from sgp02.roles import Caller
from smsr_core.handover import EckaAgreement, Handovers, Prepare, SmsrIdentity
from smsr_core.models import EisAuditRecord, Euicc, domain_value
from smsr_core.ops_models import HandoverIn
from smsr_core.platform import AsyncRequest, Function, Timing

from .ota_harness import MNO, OtaHarness

# The certificates of the demo PKI are issued now: the lab's clock starts now, not at ota_harness.T0.
T0 = datetime.now(timezone.utc).replace(microsecond=0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)

TIMING = Timing(por_timeout=30.0, default_validity=3600.0, lease=30.0, send_retry=2.0)
B_OID = "1.3.6.1.4.1.99999.1.3"
B_ADDRESS = "882003"
EID1 = demo_eid(1)


@pytest.fixture(scope="module")
def demo_instance(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("demo-handover")
    init_instance(data_dir, demo=2)
    return data_dir


class Lab:
    """A (the demo SM-SR), B (a new SM-SR sharing A's cards), and the courier between them."""

    def __init__(self, a_dir, b_dir) -> None:
        self.a = OtaHarness(a_dir, TIMING, es7_address="http://smsr-a.example/smsr/es7")
        self.a.platform.smsr_known = lambda oid: oid == B_OID
        shutil.copytree(a_dir / "pki", b_dir / "pki")  # the one demo CI (B reads its root from there)
        migrate(sqlite_url(b_dir))
        self.b = OtaHarness(b_dir, TIMING, smsr_oid=B_OID, address=B_ADDRESS, cards=self.a.cards,
                            es7_address="http://smsr-b.example/smsr/es7")
        pki = DevPki.load(a_dir / "pki")
        key, cert = pki.issue_smsr(B_OID)
        with self.a.db.session() as s:
            eum_pem = get_entity(s, EUM_OID).signing_cert_pem.encode()
        self.identity = SmsrIdentity(oid=B_OID, key=key, certificate=cert, ci_pem=pki.ci_cert_pem,
                                     sms_address=B_ADDRESS)
        self.handovers = Handovers(self.b.db, self.identity, self.b.box, self.b.platform.sink, self.b.platform,
                                   EckaAgreement(), smsr_known=lambda oid: oid == SMSR_OID,
                                   eum_cert_for=lambda eum: eum_pem if eum == EUM_OID else None)
        self.b.platform.finalised = self.handovers.finalised
        self.tamper = None  # a test may change an ES7 message on the way: (kind, event) -> event
        self.unreachable: set[str] = set()  # SM-SRs the courier cannot reach (their rows stay undelivered)
        self.late: list[tuple[str, Status]] = []  # callbacks nobody awaited any more
        self.requests = itertools.count(1)
        self.twice: set[str] = set()  # ES7 requests the courier delivers again at every later round (retries)
        self.again: list = []

    def close(self) -> None:
        self.a.close()
        self.b.close()

    # -- the MNO -------------------------------------------------------------------------------

    def prepare(self, eid: str = EID1, *, caller: Caller = MNO, current: str = SMSR_OID, now: datetime = T0) -> int:
        row_id, _ = self.handovers.prepare(Prepare(caller, eid, current, "urn:uuid:prepare", "prepare-1", None, None,
                                                   now))
        return row_id

    def change(self, eid: str = EID1, *, caller: Caller = MNO, target: str = B_OID, now: datetime = T0) -> int:
        n = next(self.requests)
        op_id, _ = self.a.platform.accept(AsyncRequest(
            function=Function.SMSR_CHANGE, interface="ES4", requester=caller, eid=eid, message_id=f"urn:uuid:change-{n}",
            function_call_id=f"change-{n}", reply_to=None, validity_period=None, received_at=now,
            params={"target_smsr_id": target}))
        return op_id

    # -- the two workers and ES7 between them --------------------------------------------------------

    def carry(self, now: datetime) -> int:
        """Deliver every ES7 row either SM-SR owes the other; how many."""
        moved = 0
        for sender_oid, row, event in self.again:  # what a peer's outbox sends again (at least once)
            self.deliver(sender_oid, row, event, now)
        for sender, receiver_oid in ((self.a, B_OID), (self.b, SMSR_OID)):
            if receiver_oid in self.unreachable:
                continue
            with sender.db.session() as s:
                rows = list(s.scalars(select(OutboxMessage).where(OutboxMessage.interface == "ES7",
                                                                   OutboxMessage.delivered_at.is_(None))
                                      .order_by(OutboxMessage.id)))
                for row in rows:
                    row.delivered_at = now
                s.flush()
                s.expunge_all()
            for row in rows:
                event = from_json(row.event_type, row.payload)
                if self.tamper is not None:
                    event = self.tamper(row.kind, event)
                self.deliver(sender.smsr_oid, row, event, now)
                if isinstance(event, PeerRequested) and event.function in self.twice:
                    self.again.append((sender.smsr_oid, row, event))
                moved += 1
        return moved

    def deliver(self, sender: str, row: OutboxMessage, event, now: datetime) -> None:
        if isinstance(event, PeerRequested):
            if event.function == "HandoverEUICC":
                self.handovers.on_handover(sender, event.eis, message_id=row.message_id, reply_to=event.reply_to,
                                           received_at=now)
            else:
                self.a.platform.on_peer_request(sender, event.function, event.eid, dict(event.fields),
                                                message_id=row.message_id, reply_to=event.reply_to, received_at=now)
            return
        assert isinstance(event, OperationFinished)
        failure = event.outcome.failure()
        if event.function == "HandoverEUICC":
            taken = self.a.platform.handover_result(sender, row.relates_to, event.outcome.status, failure, now)
        else:
            taken = self.handovers.on_callback(sender, row.relates_to, event.outcome.status, failure,
                                               dict(event.results), now)
        if not taken:  # nothing awaited it any more (its side ended first): kept for the test to look at
            self.late.append((event.function, event.outcome.status))

    def tick(self, now: datetime) -> None:
        for h in (self.a, self.b):
            h.tick(now)
        self.handovers.tick(now)
        self.carry(now)

    def run(self, now: datetime = T0, rounds: int = 12) -> None:
        for _ in range(rounds):
            self.tick(now)

    # -- readers -------------------------------------------------------------------------------

    def callbacks(self, h: OtaHarness) -> dict[str, tuple[str, str | None, str | None]]:
        return {m.operation: (m.fields.get("Status"), m.fields.get("Subject"), m.fields.get("Reason"))
                for m in h.outbox() if m.kind == "callback"}

    def row(self, row_id: int) -> HandoverIn:
        with self.b.db.session() as s:
            row = s.get(HandoverIn, row_id)
            s.expunge(row)
            return row


@pytest.fixture
def lab(demo_instance, tmp_path):
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    shutil.copytree(demo_instance, a_dir)
    b_dir.mkdir()
    lab = Lab(a_dir, b_dir)
    yield lab
    lab.close()


def old_keys_answer(lab: Lab, old) -> int:
    """The PoR status the card gives a packet secured under ``old`` (the SM-SR's key set before the change)."""
    ota_front = lab.a.cards[EID1]
    ota_front.reload_if_changed()
    packet = scp80.wrap_command(old, scp80.SPI_SGP02, bytes.fromhex(ota_front.card.scp80.tar), 1000,
                                remote.encode_command_script([es5.get_status_isdp(None)]))
    [segment] = ota_front.execute(packet)
    _, raw = sms.reassemble([sms.parse_user_data(segment)])
    return scp80.unwrap_response(raw, old, scp80.SPI_SGP02).status


def test_an_euicc_moves_from_one_smsr_to_the_other_and_only_the_new_one_reaches_it(lab):
    old = card_keyset(lab.a.card(EID1))  # A's key set, as the card holds it
    assert old.kvn == 1
    with lab.a.db.session() as s:
        a_trail = [(r.smsr_id, r.operation_type) for r in
                   s.scalars(select(EisAuditRecord).where(EisAuditRecord.eid == EID1).order_by(EisAuditRecord.id))]
    row_id = lab.prepare()
    assert lab.callbacks(lab.b)["ES4-PrepareSMSRChangeCallback"] == ("EXECUTED_SUCCESS", None, None)
    op_id = lab.change()
    lab.run()

    # A: the change succeeded, the EIS is gone
    assert lab.a.op(op_id).result == ("EXECUTED_SUCCESS", None, None)
    assert lab.callbacks(lab.a)["ES4-SMSRChangeCallback"] == ("EXECUTED_SUCCESS", None, None)
    assert lab.late == []  # every ES7 callback was awaited
    with lab.a.db.session() as s:
        assert s.get(Euicc, EID1) is None
    # B: the whole EIS, its own identity, one key set (the new one), the audit trail carried over
    assert lab.row(row_id).result_status == "EXECUTED_SUCCESS"
    with lab.b.db.session() as s:
        euicc = s.get(Euicc, EID1)
        assert euicc.smsr_id == B_OID
        isd_r = domain_value(euicc.isd_r, lab.b.box)
        assert [ks.version for ks in isd_r.keysets] == [2]
    assert set(lab.b.profiles(EID1)) == {demo_iccid(1, 0), demo_iccid(1, 1)}
    with lab.a.db.session() as s:  # A's trail went with its EIS
        assert s.scalars(select(EisAuditRecord).where(EisAuditRecord.eid == EID1)).first() is None
    with lab.b.db.session() as s:  # B's: A's records, then the key set B agreed (0800) and FinaliseISDRhandover (0900)
        trail = [(r.smsr_id, r.operation_type) for r in
                 s.scalars(select(EisAuditRecord).where(EisAuditRecord.eid == EID1).order_by(EisAuditRecord.id))]
    assert trail[:len(a_trail)] == a_trail and trail[len(a_trail):][:2] == [(B_OID, "0800"), (B_OID, "0900")]
    notified = {(m.operation, m.target) for m in lab.b.outbox() if m.kind == "notification"}
    # the demo profiles were registered by the EUM, not installed by an SM-DP: the MNO alone is told
    assert {n for n in notified if "SMSRChange" in n[0]} == {("ES4-HandleSMSRChangeNotification", MNO_OID)}
    # the card: only B's key set, B's address
    card = lab.a.card(EID1)
    assert card.scp80.kvns == [2]
    assert card.smsr_sms_address == B_ADDRESS
    assert old_keys_answer(lab, old) == scp80.PorStatus.UNIDENTIFIED_SECURITY_ERROR
    # B manages it over the air: an enable of the disabled profile
    enable = lab.b.request(Function.ENABLE, EID1, demo_iccid(1, 1), now=at(60))
    lab.b.run(EID1, at(60))
    assert lab.b.op(enable).result == ("EXECUTED_SUCCESS", None, None)


def test_a_change_nobody_prepared_is_refused_by_the_new_smsr_and_the_old_one_stays_in_charge(lab):
    op_id = lab.change()
    lab.run()
    assert lab.a.op(op_id).result == ("FAILED", codes.NOT_PREPARED.subject, codes.NOT_PREPARED.reason)
    with lab.a.db.session() as s:
        assert s.get(Euicc, EID1) is not None
    assert lab.a.ota(EID1).active_operation_id is None
    enable = lab.a.request(Function.ENABLE, EID1, demo_iccid(1, 1), now=at(10))
    lab.a.run(EID1, at(10))
    assert lab.a.op(enable).result == ("EXECUTED_SUCCESS", None, None)


def test_a_receipt_that_does_not_verify_rolls_the_change_back(lab):
    def bad_receipt(kind, event):
        if isinstance(event, OperationFinished) and event.function == "CreateAdditionalKeySet":
            results = tuple((k, "00" * 16 if k == "Receipt" else val) for k, val in event.results)
            return OperationFinished(**{**event.__dict__, "results": results})
        return event

    lab.tamper = bad_receipt
    row_id = lab.prepare()
    op_id = lab.change()
    lab.run()
    code = codes.ISDR_KEYSET_NOT_VERIFIED
    assert (lab.row(row_id).result_status, lab.row(row_id).result_subject, lab.row(row_id).result_reason) == \
        ("FAILED", code.subject, code.reason)
    assert lab.a.op(op_id).result == ("FAILED", code.subject, code.reason)
    with lab.b.db.session() as s:
        assert s.get(Euicc, EID1) is None
    enable = lab.a.request(Function.ENABLE, EID1, demo_iccid(1, 1), now=at(10))
    lab.a.run(EID1, at(10))
    assert lab.a.op(enable).result == ("EXECUTED_SUCCESS", None, None)


def test_who_may_ask_for_a_change(lab):
    other = Caller("1.3.6.1.4.1.99999.2.9", "mno")
    refused = lab.change(caller=other)
    assert lab.a.op(refused).result == ("FAILED", codes.EUICC_NOT_ALLOWED.subject, codes.EUICC_NOT_ALLOWED.reason)
    unknown = lab.a.platform.accept(AsyncRequest(
        function=Function.SMSR_CHANGE, interface="ES4", requester=MNO, eid=EID1, message_id="urn:uuid:c2",
        function_call_id="c2", reply_to=None, validity_period=None, received_at=T0,
        params={"target_smsr_id": "1.3.6.1.4.1.99999.1.77"}))[0]
    assert lab.a.op(unknown).result == ("FAILED", codes.SMSR_UNKNOWN.subject, codes.SMSR_UNKNOWN.reason)
    row = lab.prepare(eid=demo_eid(1), current="1.3.6.1.4.1.99999.1.77")
    assert lab.row(row).result_subject == codes.SMSR_UNKNOWN.subject
    assert lab.callbacks(lab.b)["ES4-PrepareSMSRChangeCallback"] == ("FAILED", "8.7", "3.9")


def test_a_bad_signature_is_refused_by_the_card_and_both_sides_end_with_its_code(lab):
    def bad_signature(kind, event):
        if isinstance(event, PeerRequested) and event.function == "CreateAdditionalKeySet":
            fields = tuple((k, "00" * 64 if k == "Signature" else val) for k, val in event.fields)
            return PeerRequested(**{**event.__dict__, "fields": fields})
        return event

    lab.tamper = bad_signature
    row_id = lab.prepare()
    op_id = lab.change()
    lab.run()
    code = codes.ISDR_EXECUTION_ERROR  # the ISD-R refused STORE DATA 3A02 (SW 6982)
    assert lab.a.op(op_id).result == ("FAILED", code.subject, code.reason)
    row = lab.row(row_id)
    assert (row.result_status, row.result_subject, row.result_reason) == ("FAILED", code.subject, code.reason)
    assert lab.a.card(EID1).scp80.kvns == [1]  # nothing created on the card
    with lab.b.db.session() as s:
        assert s.get(Euicc, EID1) is None


def test_a_card_that_goes_silent_ends_the_change_expired_on_both_sides_and_the_old_smsr_keeps_it(lab):
    row_id = lab.prepare()
    op_id = lab.change()
    card = lab.a.card(EID1)
    card.silent = True
    card.save()
    lab.run()
    assert lab.a.op(op_id).state == "active"  # the 3A01 packet goes again, unanswered
    lab.run(at(3601), rounds=4)  # past the validity period (Timing.default_validity)
    assert lab.a.op(op_id).result == ("EXPIRED", codes.EXPIRED_TTL.subject, codes.EXPIRED_TTL.reason)
    row = lab.row(row_id)
    assert (row.result_status, row.result_subject, row.result_reason) == \
        ("EXPIRED", codes.EXPIRED_TTL.subject, codes.EXPIRED_TTL.reason)
    with lab.a.db.session() as s:
        assert s.get(Euicc, EID1) is not None  # still A's
    assert lab.a.ota(EID1).active_operation_id != op_id


def test_an_unreachable_new_smsr_leaves_the_old_one_in_charge(lab):
    lab.unreachable = {B_OID}
    lab.prepare()
    op_id = lab.change()
    lab.run()
    assert lab.a.op(op_id).step == "handover"  # ES7-HandoverEUICC waits in A's outbox
    lab.run(at(3601), rounds=3)
    assert lab.a.op(op_id).result == ("EXPIRED", codes.EXPIRED_TTL.subject, codes.EXPIRED_TTL.reason)
    enable = lab.a.request(Function.ENABLE, EID1, demo_iccid(1, 1), now=at(3700))
    lab.a.run(EID1, at(3700))
    lab.a.run(EID1, at(3700))  # the audit queued by the expiry first, then the enable
    assert lab.a.op(enable).result == ("EXECUTED_SUCCESS", None, None)


def test_what_waits_for_the_euicc_at_the_old_smsr_is_neither_lost_nor_run_twice(lab):
    lab.prepare()
    op_id = lab.change()
    lab.a.tick(T0)  # the change holds the eUICC
    queued = lab.a.request(Function.ENABLE, EID1, demo_iccid(1, 1), now=T0)
    lab.run()
    assert lab.a.op(op_id).result == ("EXECUTED_SUCCESS", None, None)
    enable = lab.a.op(queued)
    assert enable.result == ("FAILED", codes.EID_UNKNOWN.subject, codes.EID_UNKNOWN.reason)
    assert enable.attempts == 0  # never sent to the card
    [callback] = [m for m in lab.a.outbox() if m.operation == "ES4-EnableProfileCallback"]
    assert B_OID in callback.fields["Message"]


def test_an_unused_preparation_runs_out_silently(lab):
    row_id = lab.prepare()
    lab.run(at(3601), rounds=1)
    row = lab.row(row_id)
    assert (row.state, row.result_status) == ("done", "EXPIRED")
    assert [m.operation for m in lab.b.outbox()] == ["ES4-PrepareSMSRChangeCallback"]  # answered once, at preparation


def test_a_second_change_of_the_same_euicc_is_refused_on_both_sides(lab):
    first = lab.prepare()
    second = lab.handovers.prepare(Prepare(MNO, EID1, SMSR_OID, "urn:uuid:prepare-2", "prepare-2", None, None, T0))[0]
    busy = codes.SMSR_CHANGE_IN_PROGRESS
    assert lab.row(first).state == "active"
    row = lab.row(second)
    assert (row.result_status, row.result_subject, row.result_reason) == ("FAILED", busy.subject, busy.reason)
    op_id = lab.change()
    again = lab.a.platform.accept(AsyncRequest(
        function=Function.SMSR_CHANGE, interface="ES4", requester=MNO, eid=EID1, message_id="urn:uuid:change-2",
        function_call_id="change-2", reply_to=None, validity_period=None, received_at=T0,
        params={"target_smsr_id": B_OID}))[0]
    assert lab.a.op(again).result == ("FAILED", busy.subject, busy.reason)
    lab.run()
    assert lab.a.op(op_id).result == ("EXECUTED_SUCCESS", None, None)  # the first one is not disturbed


def test_a_new_smsr_that_holds_the_euicc_already_or_is_the_current_one_refuses_to_prepare(lab):
    lab.prepare()
    lab.change()
    lab.run()  # B holds EID1 now
    held = lab.handovers.prepare(Prepare(MNO, EID1, SMSR_OID, "urn:uuid:p3", "p3", None, None, at(10)))[0]
    row = lab.row(held)
    assert (row.result_subject, row.result_reason) == (codes.SMSR_CANNOT_TAKE.subject, codes.SMSR_CANNOT_TAKE.reason)
    itself = lab.handovers.prepare(Prepare(MNO, demo_eid(2), B_OID, "urn:uuid:p4", "p4", None, None, at(10)))[0]
    row = lab.row(itself)
    assert (row.result_subject, row.result_reason) == (codes.SMSR_TARGET_IS_CURRENT.subject,
                                                       codes.SMSR_TARGET_IS_CURRENT.reason)
    to_self = lab.change(eid=demo_eid(2), target=SMSR_OID)
    assert lab.a.op(to_self).result[1:] == (codes.SMSR_TARGET_IS_CURRENT.subject, codes.SMSR_TARGET_IS_CURRENT.reason)


def test_an_es7_request_delivered_twice_is_relayed_to_the_card_once(lab):
    """The outbox delivers at least once: a request the current SM-SR gets again (during its relay, or after its
    callback left) is not sent to the card again (a second 3A01 would draw a new challenge)."""
    lab.twice = {"AuthenticateSMSR", "CreateAdditionalKeySet"}
    lab.prepare()
    op_id = lab.change()
    lab.run()
    assert lab.a.op(op_id).result == ("EXECUTED_SUCCESS", None, None)
    assert lab.a.card(EID1).scp80.kvns == [2]
    relayed = [t for t in lab.a.transmissions if t.sms.operation_id == op_id]
    assert len(relayed) == 2  # 3A01 once, 3A02 once
