"""The SM-SR's platform management (smsr_core.platform) driven by hand against simulated eUICCs.

Every test starts from ``esx init --demo 2`` (two eUICCs of the demo MNO, each with an enabled fall-back
profile and a disabled one) and plays the requester, the worker, the SMSC and the card in turn through
:mod:`tests.smsr_core.ota_harness`, with explicit clocks: no socket, no thread, no sleep.

Reading guide: ``h.request`` accepts a request, ``h.start`` / ``h.send_due`` / ``h.process`` are the worker's
steps, ``h.notify`` lets a card send its default notifications; ``at(s)`` is T0 + s seconds.
"""
from __future__ import annotations

import copy
import shutil

import pytest

from esx.demo import MNO_OID, SMDP_OID, SMSR_OID, demo_eid, demo_iccid, init_instance
from euicc_sim.card import IsdP, Pol1
from euicc_sim.network import card_keyset
from keys import scp80
from ota import es5, remote, sms
from sgp02 import eis as v
from sgp02.identifiers import isd_p_aid
from sgp02.roles import Caller
from smsr_core.platform import AsyncRequest, Function, Timing

from .ota_harness import MNO, T0, OtaHarness, at

TIMING = Timing(por_timeout=30.0, default_validity=3600.0, lease=30.0, send_retry=2.0)

# The demo eUICCs (esx.demo.demo_profiles): slot 0 is the enabled fall-back profile, slot 1 a disabled one.
EID1, EID2 = demo_eid(1), demo_eid(2)
FALLBACK1, SPARE1 = demo_iccid(1, 0), demo_iccid(1, 1)
FALLBACK2, SPARE2 = demo_iccid(2, 0), demo_iccid(2, 1)
AID0, AID1 = isd_p_aid(0), isd_p_aid(1)
MSISDN_FALLBACK1, MSISDN_SPARE1 = "447900000100", "447900000101"
UNKNOWN_EID = demo_eid(99)
OTHER_MNO = "1.3.6.1.4.1.99999.2.2"
OTHER_SMDP = "1.3.6.1.4.1.99999.1.9"

ENABLED, DISABLED = v.ProfileState.ENABLED.value, v.ProfileState.DISABLED.value
AS_REGISTERED = {FALLBACK1: (ENABLED, True), SPARE1: (DISABLED, False)}
SPARE_ENABLED = {FALLBACK1: (DISABLED, True), SPARE1: (ENABLED, False)}


# -- fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def demo_instance(tmp_path_factory):
    """One ``esx init --demo 2`` for the session (PKI generation and ES1 take the time); tests get copies."""
    data_dir = tmp_path_factory.mktemp("demo-instance")
    init_instance(data_dir, demo=2)
    return data_dir


@pytest.fixture
def h(demo_instance, tmp_path):
    data_dir = tmp_path / "instance"
    shutil.copytree(demo_instance, data_dir)
    harness = OtaHarness(data_dir, TIMING)
    yield harness
    harness.close()


# -- shared steps --------------------------------------------------------------------------------------------------


def settle(h: OtaHarness, eid: str, now=T0) -> None:
    """The card re-sends what is still unconfirmed until the SM-SR's confirmation reaches it (as a card does)."""
    for _ in range(3):
        if not h.card(eid).pending:
            return
        h.notify(eid, now)
        h.process(now)
        h.process(now)
    assert h.card(eid).pending == []


def complete(h: OtaHarness, function: Function, eid: str, iccid: str | None = None, now=T0, **kw) -> int:
    """Request ``function`` and drive it to its end, the card's notifications confirmed; the operation id."""
    op_id = h.request(function, eid, iccid, now=now, **kw)
    h.run(eid, now)
    settle(h, eid, now)
    assert h.op(op_id).state == "done"
    return op_id


def enable_spare(h: OtaHarness) -> None:
    complete(h, Function.ENABLE, EID1, SPARE1)
    assert h.profiles(EID1) == SPARE_ENABLED


def pol2(h: OtaHarness, iccid: str, action: str, qualification: str = "Not-Allowed") -> None:
    h.registry.update_policy_rules(MNO, EID1, iccid, (v.Pol2Rule("PROFILE", action, qualification),))


def callbacks(h: OtaHarness, op_id: int):
    return [m for m in h.outbox() if m.kind == "callback" and m.operation_id == op_id]


def notifications(h: OtaHarness, since: int = 0) -> list[tuple[str, str]]:
    """(operation, Iccid) of the profile notifications in the outbox, from row ``since`` on."""
    return [(m.operation, m.fields["Iccid"]) for m in h.outbox()[since:] if m.kind == "notification"]


def status_of(message) -> tuple[str, str | None, str | None]:
    return message.fields["Status"], message.fields.get("Subject"), message.fields.get("Reason")


def card_profiles(h: OtaHarness, eid: str) -> dict[str, tuple[str, bool]]:
    """The card's own view: {ICCID: (life-cycle name, fall-back)}."""
    return {p.iccid: (p.state_name, p.fallback) for p in h.card(eid).profiles}


def assert_refused(h: OtaHarness, op_id: int, subject: str, reason: str, *, operation: str, target: str = MNO_OID,
                   relates_to: str, now=T0) -> None:
    """Refused by the rules: done FAILED, nothing sent to the card, one callback with the codes."""
    h.start(now)
    assert h.platform.due_sends(now) == []
    op = h.op(op_id)
    assert (op.state, op.result, op.attempts, op.sent_any) == ("done", ("FAILED", subject, reason), 0, False)
    [cb] = callbacks(h, op_id)
    assert (cb.operation, cb.target, cb.relates_to) == (operation, target, relates_to)
    assert status_of(cb) == ("FAILED", subject, reason)


# -- the functions, end to end -------------------------------------------------------------------------------------


def test_enable_profile(h):
    op_id = h.request(Function.ENABLE, EID1, SPARE1, message_id="urn:uuid:enable-1")
    assert h.op(op_id).state == "queued"  # what exists when the 202 Accepted leaves

    assert h.start() == 1
    assert (h.op(op_id).state, h.op(op_id).step) == ("active", "send")
    assert h.ota(EID1).active_operation_id == op_id

    [t] = h.send_due()
    assert (t.sms.destination, t.reached, len(t.replies)) == (MSISDN_FALLBACK1, EID1, 1)  # one PoR
    op = h.op(op_id)
    assert (op.step, op.attempts, op.counter, op.sent_any) == ("await_por", 1, 1, True)
    assert card_profiles(h, EID1) == {FALLBACK1: ("DISABLED", True), SPARE1: ("ENABLED", False)}

    assert h.process() == []  # PoR 9000: the card accepted; the EIS waits for the card's notification
    op = h.op(op_id)
    assert (op.state, op.step, op.euicc_response) == ("active", "await_notification", "9000")
    assert h.profiles(EID1) == AS_REGISTERED
    assert h.outbox() == []

    [pending] = h.card(EID1).pending
    assert (pending.seq, pending.type, pending.aid) == (1, es5.NOTIF_PROFILE_CHANGE_OK, AID1)
    assert h.notify(EID1, at(1)) == 1
    [confirmation] = h.process(at(1))
    assert confirmation.sms.operation_id is None

    op = h.op(op_id)
    assert (op.state, op.result) == ("done", ("EXECUTED_SUCCESS", None, None))
    assert h.profiles(EID1) == SPARE_ENABLED
    assert [(m.operation, m.target, m.relates_to) for m in h.outbox()] == [
        ("ES4-HandleProfileDisabledNotification", MNO_OID, None),
        ("ES4-HandleProfileEnabledNotification", MNO_OID, None),
        ("ES4-EnableProfileCallback", MNO_OID, "urn:uuid:enable-1"),
    ]
    disabled, enabled, callback = h.outbox()
    assert (disabled.fields["Eid"], disabled.fields["Iccid"]) == (EID1, FALLBACK1)
    assert (enabled.fields["Eid"], enabled.fields["Iccid"]) == (EID1, SPARE1)
    assert enabled.fields["CompletionTimestamp"] == "2026-05-01T12:00:01Z"
    assert status_of(callback) == ("EXECUTED_SUCCESS", None, None)
    assert callback.fields["EuiccResponseData"] == "9000"
    ota = h.ota(EID1)
    assert (ota.active_operation_id, ota.last_notification_seq, ota.dirty) == (None, 1, False)
    assert h.inbox_outcomes()[:2] == ["operation 1: card accepted, waiting for its notification",
                                      "notification 1 type 02: 2 state change(s)"]



def test_enable_confirmation_reaches_the_card(h):
    h.request(Function.ENABLE, EID1, SPARE1)
    h.start()
    h.send_due()
    h.process()
    h.notify(EID1, T0)
    [confirmation] = h.process()
    # The card now answers at the enabled profile's MSISDN; the confirmation must go there.
    assert (confirmation.sms.destination, confirmation.reached) == (MSISDN_SPARE1, EID1)
    assert h.card(EID1).pending == []
    h.process()  # the confirmation's PoR
    assert h.inbox_outcomes()[-1] == "notification confirmed; the card deleted 0 ISD-P(s)"


def test_enable_rolled_back_by_the_card(h):
    """The new profile cannot attach: the card answers 9000, comes back to the old one and says so (type 03)."""
    card = h.card(EID1)
    card.profile(AID1).attach_fails = True
    card.save()
    op_id = h.request(Function.ENABLE, EID1, SPARE1)
    h.run(EID1)
    settle(h, EID1)
    assert h.op(op_id).result == ("FAILED", "8.4", "4.2")
    assert h.profiles(EID1) == AS_REGISTERED
    assert notifications(h) == []
    [cb] = callbacks(h, op_id)
    assert status_of(cb) == ("FAILED", "8.4", "4.2")


def test_disable_profile_falls_back(h):
    enable_spare(h)
    before = len(h.outbox())
    op_id = h.request(Function.DISABLE, EID1, SPARE1, now=at(10))
    h.run(EID1, at(10))
    settle(h, EID1, at(10))

    assert h.op(op_id).result == ("EXECUTED_SUCCESS", None, None)
    assert h.profiles(EID1) == AS_REGISTERED
    assert card_profiles(h, EID1) == {FALLBACK1: ("ENABLED", True), SPARE1: ("DISABLED", False)}
    assert notifications(h, before) == [("ES4-HandleProfileDisabledNotification", SPARE1),
                                        ("ES4-HandleProfileEnabledNotification", FALLBACK1)]
    [cb] = callbacks(h, op_id)
    assert (cb.operation, status_of(cb)) == ("ES4-DisableProfileCallback", ("EXECUTED_SUCCESS", None, None))
    assert h.ota(EID1).last_notification_seq == 2  # the card's type 05 (fall-back) notification, seq 2


def test_delete_profile(h):
    op_id = h.request(Function.DELETE, EID1, SPARE1, message_id="urn:uuid:delete-1")
    h.start()
    [t] = h.send_due()
    assert t.reached == EID1
    h.process()  # a deletion is complete with its PoR: no notification comes for it

    assert h.op(op_id).result == ("EXECUTED_SUCCESS", None, None)
    assert h.profiles(EID1) == {FALLBACK1: (ENABLED, True)}
    assert h.card(EID1).profile(AID1) is None
    assert h.card(EID1).pending == []
    assert [(m.operation, m.relates_to, m.fields.get("Iccid")) for m in h.outbox()] == [
        ("ES4-HandleProfileDeletedNotification", None, SPARE1),
        ("ES4-DeleteProfileCallback", "urn:uuid:delete-1", None),
    ]
    assert status_of(h.outbox()[1]) == ("EXECUTED_SUCCESS", None, None)
    assert h.ota(EID1).active_operation_id is None


def test_es3_delete_isdp_by_the_smdp(h):
    """A profile loaded at manufacturing (no Smdp-id) may be deleted by an SM-DP its MNO named; the callback has
    ES3's name."""
    op_id = h.request(Function.DELETE, EID1, SPARE1, caller=Caller(SMDP_OID, "smdp", frozenset({MNO_OID})),
                      interface="ES3")
    h.start()
    h.send_due()
    h.process()
    assert [(m.operation, m.target) for m in h.outbox()] == [
        ("ES4-HandleProfileDeletedNotification", MNO_OID),  # no Smdp-id: no ES3 notification
        ("ES3-DeleteISDPCallback", SMDP_OID),
    ]
    assert h.op(op_id).result == ("EXECUTED_SUCCESS", None, None)


def test_set_fallback_attribute(h):
    """No WSDL carries SetFallBackAttribute to this SM-SR: the core runs it as its own operation."""
    with h.db.session() as s:
        op = h.platform.queue_internal(s, EID1, Function.SET_FALLBACK, T0, iccid=SPARE1)
        s.flush()
        op_id = op.id
    h.start()
    h.send_due()
    h.process()
    assert h.op(op_id).result == ("EXECUTED_SUCCESS", None, None)
    assert h.profiles(EID1) == {FALLBACK1: (ENABLED, False), SPARE1: (DISABLED, True)}
    assert card_profiles(h, EID1) == {FALLBACK1: ("ENABLED", False), SPARE1: ("DISABLED", True)}
    assert h.outbox() == []


def test_audit_removes_what_the_card_no_longer_has(h):
    assert h.card(EID1).process(es5.delete_isdp(bytes.fromhex(AID1)))[-2:] == b"\x90\x00"  # behind the SM-SR's back
    op_id = h.request(Function.AUDIT, EID1)
    h.start()
    [t] = h.send_due()
    assert t.reached == EID1
    h.process()

    assert h.op(op_id).result == ("EXECUTED_SUCCESS", None, None)
    assert h.profiles(EID1) == {FALLBACK1: (ENABLED, True)}
    deleted, cb = h.outbox()
    assert (deleted.operation, deleted.fields["Iccid"]) == ("ES4-HandleProfileDeletedNotification", SPARE1)
    assert (cb.operation, status_of(cb)) == ("ES4-AuditEISCallback", ("EXECUTED_SUCCESS", None, None))
    assert cb.fields["Eis/Iccids"] == FALLBACK1
    assert cb.fields["Eid"] == EID1
    assert h.ota(EID1).dirty is False


def test_audit_of_a_card_without_any_isdp_is_an_answer_not_a_fault(h):
    """GET STATUS answers 6A88 when no ISD-P exists: the audit succeeds and empties the EIS; it
    must not count as a failed command, which would queue another audit, and another."""
    card = h.card(EID1)
    card.profiles = []
    card.save()
    op_id = h.request(Function.AUDIT, EID1)
    h.start()
    [out] = h.platform.due_sends(T0)
    tpdus = h.to_card(h.cards[EID1], out.segments)  # addressed by EID: the card has no number left
    h.platform.sent(out, T0)
    h.to_smsr(MSISDN_FALLBACK1, tpdus, T0)
    h.process()

    assert h.op(op_id).result == ("EXECUTED_SUCCESS", None, None)
    assert h.op(op_id).euicc_response.endswith("6A88")
    assert h.profiles(EID1) == {}
    assert [o.function for o in h.ops() if o.interface == "SMSR"] == []
    assert h.ota(EID1).dirty is False


def test_a_profile_switch_the_eis_missed_is_learnt_from_the_card_and_the_packet_follows(h):
    """The card enabled SPARE1 and its notification is late: the EIS still says FALLBACK1, whose number no longer
    answers. Commands go to the EIS's enabled profile only (a disabled profile is attached to no network); the
    card's notification, sent until confirmed, tells the EIS, and the next retransmission goes to SPARE1."""
    assert h.card(EID1).process(es5.enable_profile(bytes.fromhex(AID1)))[-2:] == b"\x90\x00"
    op_id = h.request(Function.AUDIT, EID1, iccids=[SPARE1])
    h.start()
    [first] = h.send_due()
    assert (first.sms.destination, first.reached) == (MSISDN_FALLBACK1, None)  # not attached any more
    assert h.send_due(at(29)) == []
    [second] = h.send_due(at(30))
    assert (second.sms.destination, second.reached) == (MSISDN_FALLBACK1, None)  # never another profile's number
    assert second.sms.segments == first.sms.segments  # the same packet

    assert h.notify(EID1, at(40)) == 1  # type 02 for SPARE1, from SPARE1's number
    [confirmation] = h.process(at(40))
    assert (confirmation.sms.destination, confirmation.reached) == (MSISDN_SPARE1, EID1)
    assert h.profiles(EID1) == SPARE_ENABLED

    # The audit's packet (counter 1) never reached the card, the confirmation (counter 2) did: the card answers
    # the retransmission "counter low". An audit only reads, so it goes again in a new packet.
    [third] = h.send_due(at(60))
    assert (third.sms.destination, third.reached, third.sms.segments) == (MSISDN_SPARE1, EID1, first.sms.segments)
    h.process(at(60))
    assert h.op(op_id).counter is None
    [fourth] = h.send_due(at(60))
    assert (fourth.reached, h.op(op_id).counter) == (EID1, 3)
    h.process(at(60))
    assert h.op(op_id).result == ("EXECUTED_SUCCESS", None, None)
    assert h.profiles(EID1) == SPARE_ENABLED
    assert notifications(h) == [("ES4-HandleProfileDisabledNotification", FALLBACK1),
                                ("ES4-HandleProfileEnabledNotification", SPARE1)]
    [cb] = callbacks(h, op_id)
    assert set(cb.fields["Eis/Iccids"].split()) == {SPARE1}  # only the ICCIDs asked for (profile, audit trail)


# -- rules checked before any command leaves -----------------------------------------------------------------------


def _another_mnos_profile(h):
    h.set_profile(SPARE1, mno_id=OTHER_MNO)


REFUSALS = {
    # name: (set-up, function, eid, iccid, subject, reason)
    "unknown EID": (None, Function.ENABLE, UNKNOWN_EID, SPARE1, "8.1.1", "3.9"),
    "unknown ICCID": (None, Function.ENABLE, EID1, "8988299000000009999", "8.2.1", "3.9"),
    "another MNO's profile": (_another_mnos_profile, Function.ENABLE, EID1, SPARE1, "8.2.1", "1.2"),
    "ICCID on another eUICC": (None, Function.ENABLE, EID1, SPARE2, "8.2.1", "3.10"),
    "POL2 forbids ENABLE": (lambda h: pol2(h, SPARE1, "ENABLE"), Function.ENABLE, EID1, SPARE1, "8.2.3", "3.8"),
    "POL2 of the enabled profile forbids DISABLE": (lambda h: pol2(h, FALLBACK1, "DISABLE"), Function.ENABLE, EID1,
                                                    SPARE1, "8.2.3", "3.8"),
    "POL2 forbids DISABLE": (lambda h: (enable_spare(h), pol2(h, SPARE1, "DISABLE")), Function.DISABLE, EID1, SPARE1,
                             "8.2.3", "3.8"),
    "POL2 forbids DELETE": (lambda h: pol2(h, SPARE1, "DELETE"), Function.DELETE, EID1, SPARE1, "8.2.3", "3.8"),
    "enable the enabled profile": (None, Function.ENABLE, EID1, FALLBACK1, "8.1", "3.8"),
    "delete the enabled profile": (enable_spare, Function.DELETE, EID1, SPARE1, "8.1", "3.8"),
    "delete the fall-back profile": (enable_spare, Function.DELETE, EID1, FALLBACK1, "8.1", "3.8"),
    "disable the fall-back profile": (None, Function.DISABLE, EID1, FALLBACK1, "8.1", "3.8"),
    "disable a disabled profile": (None, Function.DISABLE, EID1, SPARE1, "8.1", "3.8"),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_rules_refuse_before_any_command(h, name):
    setup, function, eid, iccid, subject, reason = REFUSALS[name]
    if setup is not None:
        setup(h)
    profiles_before, card_before = h.profiles(EID1), card_profiles(h, EID1)
    op_id = h.request(function, eid, iccid, message_id="urn:uuid:refused", now=at(10))
    assert_refused(h, op_id, subject, reason, operation=f"ES4-{function.value}Callback", relates_to="urn:uuid:refused",
                   now=at(10))
    assert h.profiles(EID1) == profiles_before
    assert card_profiles(h, EID1) == card_before
    assert getattr(h.ota(eid), "active_operation_id", None) is None


def test_smdp_may_not_manage_another_smdps_profile(h):
    h.set_profile(SPARE1, smdp_id=SMDP_OID)
    op_id = h.request(Function.ENABLE, EID1, SPARE1, caller=Caller(OTHER_SMDP, "smdp"), interface="ES3",
                      message_id="urn:uuid:es3")
    assert_refused(h, op_id, "8.2.1", "1.2", operation="ES3-EnableProfileCallback", target=OTHER_SMDP,
                   relates_to="urn:uuid:es3")


@pytest.mark.parametrize("iccids, setup", [
    ([SPARE2], None),  # a profile on another eUICC
    ([SPARE1], _another_mnos_profile),
    (["8988299000000009999"], None),
], ids=["other eUICC", "other MNO", "unknown"])
def test_audit_of_profiles_not_owned(h, iccids, setup):
    if setup is not None:
        setup(h)
    op_id = h.request(Function.AUDIT, EID1, iccids=iccids, message_id="urn:uuid:audit")
    assert_refused(h, op_id, "8.2", "1.2", operation="ES4-AuditEISCallback", relates_to="urn:uuid:audit")


def test_audit_by_an_mno_with_no_profile_on_the_euicc(h):
    op_id = h.request(Function.AUDIT, EID1, caller=Caller(OTHER_MNO, "mno"), message_id="urn:uuid:audit")
    assert_refused(h, op_id, "8.6", "1.2", operation="ES4-AuditEISCallback", target=OTHER_MNO,
                   relates_to="urn:uuid:audit")


# -- rules the card enforces (POL1) --------------------------------------------------------------------------------


@pytest.mark.parametrize("function, iccid, pol1_aid, pol1", [
    (Function.ENABLE, SPARE1, AID0, Pol1(disable_not_allowed=True)),  # the enabled profile may not be disabled
    (Function.DELETE, SPARE1, AID1, Pol1(delete_not_allowed=True)),
], ids=["enable", "delete"])
def test_pol1_refusal_by_the_card(h, function, iccid, pol1_aid, pol1):
    h.card(EID1).update_pol1(pol1_aid, pol1)
    op_id = h.request(function, EID1, iccid)
    h.start()
    [t] = h.send_due()
    assert t.reached == EID1
    h.process()

    op = h.op(op_id)
    assert (op.state, op.result, op.euicc_response) == ("done", ("FAILED", "8.2.2", "3.8"), "69E1")
    [cb] = h.outbox()
    assert (cb.operation, status_of(cb), cb.fields["EuiccResponseData"]) == (
        f"ES4-{function.value}Callback", ("FAILED", "8.2.2", "3.8"), "69E1")
    assert h.profiles(EID1) == AS_REGISTERED
    assert card_profiles(h, EID1) == {FALLBACK1: ("ENABLED", True), SPARE1: ("DISABLED", False)}
    assert h.card(EID1).pending == []


def test_pol1_disable_refusal_by_the_card(h):
    enable_spare(h)
    h.card(EID1).update_pol1(AID1, Pol1(disable_not_allowed=True))
    before = len(h.outbox())
    op_id = h.request(Function.DISABLE, EID1, SPARE1, now=at(5))
    h.start(at(5))
    h.send_due(at(5))
    h.process(at(5))
    assert h.op(op_id).result == ("FAILED", "8.2.2", "3.8")
    [cb] = callbacks(h, op_id)
    assert cb.fields["EuiccResponseData"] == "69E1"
    assert len(h.outbox()) == before + 1  # the callback only
    assert h.profiles(EID1) == SPARE_ENABLED


def test_pol1_delete_when_disabled_reported_by_the_confirmation(h):
    """POL1 "delete when disabled": the card deletes the ISD-P when the SM-SR confirms the notification, and its
    answer to the confirmation lists it; the EIS drops it."""
    h.card(EID1).update_pol1(AID1, Pol1(delete_when_disabled=True))
    enable_spare(h)
    before = len(h.outbox())
    disable = h.request(Function.DISABLE, EID1, SPARE1, now=at(10))
    h.run(EID1, at(10))
    settle(h, EID1, at(10))
    assert h.op(disable).result == ("EXECUTED_SUCCESS", None, None)
    assert h.card(EID1).profile(AID1) is None
    assert h.profiles(EID1) == {FALLBACK1: (ENABLED, True)}
    assert notifications(h, before) == [("ES4-HandleProfileDisabledNotification", SPARE1),
                                        ("ES4-HandleProfileEnabledNotification", FALLBACK1),
                                        ("ES4-HandleProfileDeletedNotification", SPARE1)]
    assert "notification confirmed; the card deleted 1 ISD-P(s)" in h.inbox_outcomes()


# -- the operation queue -------------------------------------------------------------------------------------------


def test_one_operation_in_flight_per_euicc(h):
    enable = h.request(Function.ENABLE, EID1, SPARE1)
    audit = h.request(Function.AUDIT, EID1)
    other = h.request(Function.DELETE, EID2, SPARE2)  # another eUICC is not held up

    assert h.start() == 2
    assert [h.op(i).state for i in (enable, audit, other)] == ["active", "queued", "active"]
    assert sorted(t.reached for t in h.send_due()) == [EID1, EID2]
    h.process()
    assert h.op(other).result == ("EXECUTED_SUCCESS", None, None)
    assert h.op(enable).step == "await_notification"
    assert h.start() == 0  # the enable still waits for its notification
    assert h.op(audit).state == "queued"

    h.notify(EID1, T0)
    h.process()
    assert h.op(enable).state == "done"
    assert h.start(at(1)) == 1
    assert h.op(audit).state == "active"
    assert h.ota(EID1).active_operation_id == audit


def test_replayed_request_is_not_queued_twice(h):
    def accept(message_id, call_id, caller=MNO):
        return h.platform.accept(AsyncRequest(
            function=Function.ENABLE, interface="ES4", requester=caller, eid=EID1, message_id=message_id,
            function_call_id=call_id, reply_to=None, validity_period=None, received_at=T0, params={"iccid": SPARE1}))

    op_id, new = accept("urn:uuid:m1", "f1")
    assert new
    assert accept("urn:uuid:m1", "f1") == (op_id, False)
    assert accept("urn:uuid:m1", "f2") == (op_id, False)  # same MessageID
    assert accept("urn:uuid:m2", "f1") == (op_id, False)  # same FunctionCallIdentifier
    other, new = accept("urn:uuid:m1", "f1", caller=Caller(SMDP_OID, "smdp"))  # identifiers are per requester
    assert new and other != op_id
    assert [o.id for o in h.ops()] == [op_id, other]


# -- time: lost SMS, silent cards, expiry --------------------------------------------------------------------------


def test_no_por_the_same_packet_is_sent_again(h):
    """The command never reached the card: the retransmission is the same packet, byte for byte (same counter,
    same concatenation reference), to the same number, and the card executes it then."""
    op_id = h.request(Function.ENABLE, EID1, SPARE1)
    h.start()
    [lost] = h.send_due(lose=True)
    assert lost.reached is None
    assert h.send_due(at(29)) == []  # the PoR may still come
    [second] = h.send_due(at(30))
    assert (second.sms.destination, second.reached, second.sms.attempt) == (MSISDN_FALLBACK1, EID1, 2)
    assert second.sms.segments == lost.sms.segments
    op = h.op(op_id)
    assert (op.attempts, op.counter, op.step, op.params["retransmissions"]) == (2, 1, "await_por", 1)
    assert h.card(EID1).scp80.keyset(1).counter == 1
    assert h.ota(EID1).counter == 1

    h.process(at(30))
    h.notify(EID1, at(31))
    h.process(at(31))
    assert h.op(op_id).result == ("EXECUTED_SUCCESS", None, None)


def test_lost_por_of_an_enable_the_notification_completes_it(h):
    """The card enabled SPARE1 and its PoR was lost: the retransmission goes to the number the EIS knows, which no
    longer answers; the card's notification completes the operation, and nothing ran twice."""
    op_id = h.request(Function.ENABLE, EID1, SPARE1)
    h.start()
    [first] = h.send_due(lose_reply=True)
    assert (first.reached, first.replies, len(first.sent_back)) == (EID1, [], 1)
    assert card_profiles(h, EID1)[SPARE1] == ("ENABLED", False)
    [second] = h.send_due(at(30))
    assert (second.sms.destination, second.reached) == (MSISDN_FALLBACK1, None)
    h.notify(EID1, at(31))
    h.process(at(31))
    assert h.op(op_id).result == ("EXECUTED_SUCCESS", None, None)
    assert h.profiles(EID1) == SPARE_ENABLED
    assert h.card(EID1).pending == []  # one notification, confirmed


def test_lost_por_the_retransmission_gets_the_same_por_and_runs_nothing_twice(h):
    op_id = h.request(Function.DELETE, EID1, SPARE1)
    h.start()
    [first] = h.send_due(lose_reply=True)
    assert h.card(EID1).profile(AID1) is None
    card_state = h.card(EID1).view()
    [second] = h.send_due(at(30))
    assert (second.reached, second.sms.segments) == (EID1, first.sms.segments)
    assert second.sent_back == first.sent_back  # the recorded PoR, not a second execution (6A88)
    assert h.card(EID1).view() == card_state
    h.process(at(30))
    op = h.op(op_id)
    assert (op.result, op.euicc_response, op.attempts) == (("EXECUTED_SUCCESS", None, None), "9000", 2)
    assert h.profiles(EID1) == {FALLBACK1: (ENABLED, True)}
    assert h.ota(EID1).dirty is False


@pytest.mark.parametrize("second_loss", [set(), {1}], ids=["duplicate part 1", "only part 2"])
def test_por_parts_from_two_transmissions_complete_it(h, second_loss):
    """A PoR in two SMS: part 2 is lost, then the retransmission's recorded PoR brings the same parts again (the
    same reference); the inbox completes the PoR from parts of both and ignores the duplicate."""
    card = h.card(EID1)
    for n in range(3):  # enough ISD-Ps that GET STATUS needs a PoR in two SMS
        card.profiles.append(IsdP(isd_p_aid(2 + n), es5.SELECTABLE))
    card.save()
    op_id = h.request(Function.AUDIT, EID1)
    h.start()
    [first] = h.send_due(lose_reply={2})
    assert len(first.sent_back) == 2 and len(first.replies) == 1
    assert h.process() == [] and h.op(op_id).step == "await_por"  # part 1 alone waits
    [second] = h.send_due(at(30), lose_reply=second_loss)
    assert second.sent_back == first.sent_back
    h.process(at(30))
    assert h.op(op_id).result == ("EXECUTED_SUCCESS", None, None)
    assert h.inbox_outcomes().count(f"operation {op_id} executed") == len(first.replies) + len(second.replies)


def test_counter_low_to_a_first_transmission_sends_a_new_packet(h):
    """The card's counter is ahead of the SM-SR's (a packet it never saw): '02' to a first transmission means the
    card ran nothing, so a new packet with the next counter goes."""
    card = h.card(EID1)
    card.scp80.keyset(1).counter = 2
    card.save()
    op_id = h.request(Function.DELETE, EID1, SPARE1)
    h.start()
    for counter in (1, 2):
        [t] = h.send_due()
        assert t.reached == EID1 and h.op(op_id).counter == counter
        h.process()
        assert (h.op(op_id).step, h.op(op_id).counter) == ("send", None)
    h.send_due()
    h.process()
    op = h.op(op_id)
    assert (op.result, op.attempts, op.counter) == (("EXECUTED_SUCCESS", None, None), 3, 3)


def test_counter_low_to_a_retransmission_the_outcome_is_unknown(h):
    """A card that keeps no PoR (TS 102 225 alone) answers a retransmission '02': executed with its PoR lost, or
    never received? The operation fails 1.6/5.4, the EIS is marked dirty, and an audit finds out."""
    op_id = h.request(Function.DELETE, EID1, SPARE1, message_id="urn:uuid:delete")
    h.start()
    h.send_due(lose_reply=True)
    card = h.card(EID1)
    card.scp80.keyset(1).recent.clear()  # what a card without the simulator's record does
    card.save()
    [second] = h.send_due(at(30))
    [por_sms] = second.replies
    por = scp80.unwrap_response(sms.parse_user_data(por_sms.ud).payload, card_keyset(card), scp80.SPI_SGP02)
    assert (por.counter, por.status, por.data) == (1, 0x02, b"")
    h.process(at(30))

    op = h.op(op_id)
    assert (op.state, op.result) == ("done", ("FAILED", "1.6", "5.4"))
    [cb] = callbacks(h, op_id)
    assert status_of(cb) == ("FAILED", "1.6", "5.4")
    assert h.ota(EID1).dirty is True
    audit = h.ops()[-1]
    assert (audit.function, audit.interface) == ("AuditEIS", "SMSR")
    h.start(at(31))
    h.send_due(at(31))
    h.process(at(31))
    assert h.op(audit.id).result == ("EXECUTED_SUCCESS", None, None)
    assert h.profiles(EID1) == {FALLBACK1: (ENABLED, True)}  # the audit found the deletion
    assert h.ota(EID1).dirty is False


def test_a_packet_never_submitted_then_overtaken_by_a_confirmation_ends_1_6_5_4_and_is_audited(h):
    """A worker killed after the step that built an operation's packet committed, before the SMSC took it (module
    doc): the packet goes only as a retransmission, after por_timeout. When a packet with a higher counter reached the
    card meanwhile (the confirmation of a notification the card sent again), the card answers '02' (counter low),
    which is also what a card keeping no PoR answers to a packet it executed: the outcome is unknown to the SM-SR,
    which cannot tell either from a packet submitted with the kill before it was recorded as sent. FAILED 1.6/5.4, one
    callback, dirty, and the audit finds the EIS right (here the card never ran the command)."""
    first = h.request(Function.ENABLE, EID1, SPARE1)
    h.start()
    h.send_due()
    h.process()
    h.notify(EID1, T0)
    h.process(lose=True)  # the notification ends the enable; its confirmation never reaches the card
    assert h.op(first).result == ("EXECUTED_SUCCESS", None, None)
    second = h.request(Function.ENABLE, EID1, FALLBACK1, message_id="urn:uuid:second")
    [built] = h.platform.due_sends(at(1))  # started and its packet built in one transaction; the worker dies here
    assert (h.op(second).step, h.op(second).sent_any) == ("await_por", False)

    h.notify(EID1, at(2))  # unconfirmed: the card sends its notification again
    [confirmation] = h.process(at(2))  # a duplicate, confirmed under the next counter: the card takes it
    assert confirmation.reached == EID1 and h.ota(EID1).counter == h.op(second).counter + 1
    h.process(at(2))  # the confirmation's PoR
    [again] = h.send_due(at(31))  # the packet's first transmission to leave, a retransmission to the SM-SR
    assert again.sms.segments == built.segments
    [por_sms] = again.replies
    por = scp80.unwrap_response(sms.parse_user_data(por_sms.ud).payload, card_keyset(h.card(EID1)), scp80.SPI_SGP02)
    assert por.status == 0x02
    h.process(at(31))

    assert h.op(second).result == ("FAILED", "1.6", "5.4")
    assert [status_of(cb) for cb in callbacks(h, second)] == [("FAILED", "1.6", "5.4")]
    assert h.ota(EID1).dirty is True
    audit = h.ops()[-1]
    assert (audit.function, audit.interface) == ("AuditEIS", "SMSR")
    h.send_due(at(32))
    h.process(at(32))
    assert h.op(audit.id).result == ("EXECUTED_SUCCESS", None, None)
    assert h.profiles(EID1) == SPARE_ENABLED  # as on the card: the second enable never ran
    assert card_profiles(h, EID1) == {FALLBACK1: ("DISABLED", True), SPARE1: ("ENABLED", False)}
    assert h.ota(EID1).dirty is False


def test_silent_card_expires_marks_dirty_and_audits(h):
    card = h.card(EID1)
    card.silent = True
    card.save()
    op_id = h.request(Function.ENABLE, EID1, SPARE1, validity=60)
    h.start()
    [t] = h.send_due()
    assert (t.reached, t.replies) == (EID1, [])
    h.send_due(at(30))
    assert h.expire(at(59)) == 0
    assert h.expire(at(60)) == 1

    op = h.op(op_id)
    assert (op.state, op.result, op.attempts) == ("done", ("EXPIRED", "1.6", "5.3"), 2)
    [cb] = h.outbox()
    assert (cb.operation, status_of(cb)) == ("ES4-EnableProfileCallback", ("EXPIRED", "1.6", "5.3"))
    assert h.ota(EID1).dirty is True
    assert h.ota(EID1).active_operation_id is None
    audit = h.ops()[-1]
    assert (audit.function, audit.interface, audit.requester_id, audit.state) == (
        "AuditEIS", "SMSR", SMSR_OID, "queued")
    assert h.profiles(EID1) == AS_REGISTERED  # the EIS follows the card, never leads it

    # the automatic audit expires too while the card stays silent: no callback, and no audit of the audit
    h.start(at(60))
    h.send_due(at(60))
    assert h.expire(at(60 + 3600)) == 1
    assert h.op(audit.id).result == ("EXPIRED", "1.6", "5.3")
    assert len(h.ops()) == 2
    assert len(h.outbox()) == 1


def test_automatic_audit_clears_the_dirty_flag_without_a_callback(h):
    card = h.card(EID1)
    card.silent = True
    card.save()
    h.request(Function.ENABLE, EID1, SPARE1, validity=60)
    h.start()
    h.send_due()
    h.expire(at(60))
    card = h.card(EID1)
    card.silent = False
    card.save()

    audit = h.ops()[-1]
    h.start(at(61))
    [t] = h.send_due(at(61))
    assert t.reached == EID1
    h.process(at(61))
    assert h.op(audit.id).result == ("EXECUTED_SUCCESS", None, None)
    assert h.ota(EID1).dirty is False
    assert callbacks(h, audit.id) == []
    assert h.profiles(EID1) == AS_REGISTERED


def test_queued_operation_expires_without_audit(h):
    h.request(Function.ENABLE, EID1, SPARE1)
    waiting = h.request(Function.DELETE, EID1, SPARE1, validity=10)
    h.start()
    assert h.expire(at(10)) == 1
    assert h.op(waiting).result == ("EXPIRED", "1.6", "5.3")
    assert h.ota(EID1).dirty is False  # nothing was sent for it
    assert len(h.ops()) == 2


def test_late_notification_after_expiry_still_updates_the_eis(h):
    op_id = h.request(Function.ENABLE, EID1, SPARE1, validity=60)
    h.start()
    h.send_due()
    h.process()
    assert h.op(op_id).step == "await_notification"
    h.expire(at(60))
    assert h.op(op_id).result == ("EXPIRED", "1.6", "5.3")
    assert h.ota(EID1).dirty is True
    h.notify(EID1, at(61))
    h.process(at(61))
    assert h.profiles(EID1) == SPARE_ENABLED
    assert h.op(op_id).result == ("EXPIRED", "1.6", "5.3")


# -- card notifications, POL2 Auto-Delete --------------------------------------------------------------------------


def test_duplicate_notification_is_confirmed_again_and_changes_nothing(h):
    op_id = h.request(Function.ENABLE, EID1, SPARE1)
    h.start()
    h.send_due()
    h.process()
    h.notify(EID1, at(1))
    [lost] = h.process(at(1), lose=True)  # the confirmation never reaches the card
    assert h.op(op_id).result == ("EXECUTED_SUCCESS", None, None)
    outbox, counter = h.outbox(), h.ota(EID1).counter

    assert h.notify(EID1, at(10)) == 1  # so the card sends seq 1 again
    [confirmation] = h.process(at(10))
    assert confirmation.reached == EID1
    h.process(at(10))  # the confirmation's PoR
    assert h.inbox_outcomes()[-2:] == ["notification 1: duplicate, confirmed again",
                                       "notification confirmed; the card deleted 0 ISD-P(s)"]
    assert h.ota(EID1).counter == counter + 1
    assert h.outbox() == outbox
    assert h.profiles(EID1) == SPARE_ENABLED
    assert h.ota(EID1).last_notification_seq == 1
    assert h.card(EID1).pending == []



def test_notification_after_the_sequence_number_wraps(h):
    card = h.card(EID1)
    card.next_seq = 0xFFFF
    card.save()
    enable_spare(h)
    assert h.ota(EID1).last_notification_seq == 0xFFFF
    disable = h.request(Function.DISABLE, EID1, SPARE1, now=at(10))
    h.run(EID1, at(10))  # the card's notification carries seq 1
    assert h.op(disable).result == ("EXECUTED_SUCCESS", None, None)
    assert h.profiles(EID1) == AS_REGISTERED


def test_pol2_auto_delete_after_disable(h):
    pol2(h, SPARE1, "DISABLE", "Auto-Delete")
    enable_spare(h)
    disable = h.request(Function.DISABLE, EID1, SPARE1, now=at(10))
    h.run(EID1, at(10))
    settle(h, EID1, at(10))
    assert h.op(disable).result == ("EXECUTED_SUCCESS", None, None)
    auto = h.ops()[-1]
    assert (auto.function, auto.interface, auto.requester_id, auto.state, auto.params["iccid"]) == (
        "DeleteProfile", "SMSR", SMSR_OID, "queued", SPARE1)

    before = len(h.outbox())
    h.start(at(11))
    h.send_due(at(11))
    h.process(at(11))
    assert h.op(auto.id).result == ("EXECUTED_SUCCESS", None, None)
    assert h.profiles(EID1) == {FALLBACK1: (ENABLED, True)}
    assert h.card(EID1).profile(AID1) is None
    assert notifications(h, before) == [("ES4-HandleProfileDeletedNotification", SPARE1)]
    assert callbacks(h, auto.id) == []



def test_pol2_auto_delete_waits_for_the_notification_confirmation(h):
    """sgp02-wire 5.3: the SM-SR deletes after the notification confirmation, unless the card already deleted the
    profile (POL1), which it reports in the confirmation response."""
    h.card(EID1).update_pol1(AID1, Pol1(delete_when_disabled=True))
    pol2(h, SPARE1, "DISABLE", "Auto-Delete")
    enable_spare(h)
    h.request(Function.DISABLE, EID1, SPARE1, now=at(10))
    h.start(at(10))
    h.send_due(at(10))
    h.process(at(10))  # PoR 9000
    h.notify(EID1, at(11))  # type 05; the card will delete SPARE1 when this is confirmed
    for second in (11, 12, 13):  # worker ticks: inbox, start, send; the confirmation reaches the card
        h.process(at(second), to_eid=EID1)
        h.start(at(second))
        h.send_due(at(second))

    assert h.card(EID1).profile(AID1) is None
    assert h.profiles(EID1) == {FALLBACK1: (ENABLED, True)}
    assert "FAILED" not in [o.result[0] for o in h.ops()]
    assert "AuditEIS" not in [o.function for o in h.ops()]
    assert h.ota(EID1).dirty is False


@pytest.mark.parametrize("card_keeps_por", [True, False], ids=["recorded PoR", "counter low"])
def test_pol2_auto_delete_when_the_confirmation_por_is_lost(h, card_keeps_por):
    """The confirmation's PoR is what releases the held DELETE, and the card, its notification confirmed, sends
    nothing more. So the confirmation goes again, the identical packet: the card's recorded PoR lists what it
    deleted. A card that keeps no record answers '02': the DELETE goes ahead, finds nothing (6A88), and the audit
    that follows realigns the EIS."""
    h.card(EID1).update_pol1(AID1, Pol1(delete_when_disabled=True))
    pol2(h, SPARE1, "DISABLE", "Auto-Delete")
    enable_spare(h)
    h.request(Function.DISABLE, EID1, SPARE1, now=at(10))
    h.start(at(10))
    h.send_due(at(10))
    h.process(at(10))
    h.notify(EID1, at(11))
    [confirmation] = h.process(at(11), lose_reply=True)  # the card deletes SPARE1; the PoR saying so is lost
    assert confirmation.reached == EID1 and h.card(EID1).profile(AID1) is None
    held = h.ops()[-1]
    assert (held.function, held.state) == ("DeleteProfile", "held")
    assert h.send_due(at(40)) == []
    if not card_keeps_por:
        card = h.card(EID1)
        card.scp80.keyset(1).recent.clear()
        card.save()
    [again] = h.send_due(at(41))
    assert (again.sms.operation_id, again.sms.segments, again.reached) == (None, confirmation.sms.segments, EID1)
    assert (again.sent_back == confirmation.sent_back) is card_keeps_por
    for second in range(41, 46):
        h.process(at(second))
        h.start(at(second))
        h.send_due(at(second))

    assert h.profiles(EID1) == {FALLBACK1: (ENABLED, True)}
    assert h.ota(EID1).dirty is False
    if card_keeps_por:
        assert h.op(held.id).result == ("EXECUTED_SUCCESS", None, None)
        assert "AuditEIS" not in [o.function for o in h.ops()]
    else:
        assert h.op(held.id).result == ("FAILED", "8.4", "4.2")  # 6A88: it was gone already
        assert [o.result[0] for o in h.ops() if o.function == "AuditEIS"] == ["EXECUTED_SUCCESS"]


# -- SCP80 at the card ---------------------------------------------------------------------------------------------


def test_a_replayed_packet_gets_the_recorded_por_and_changes_nothing(h):
    """The network delivers the same SMS twice: the card answers with the PoR it sent the first time, byte for byte
    (the simulated card's choice, euicc_sim.network), runs nothing again, and the SM-SR ignores the second PoR."""
    op_id = h.request(Function.ENABLE, EID1, SPARE1)
    h.start()
    [t] = h.send_due()
    card_ota = h.cards[EID1]
    state = card_ota.card.view(), copy.deepcopy(card_ota.card.scp80)

    replay = h.to_card(card_ota, t.sms.segments)
    assert [sms.decode_sms_submit(tpdu).ud for tpdu in replay] == t.sent_back
    [por_sms] = [sms.decode_sms_submit(tpdu) for tpdu in replay]
    packet = sms.parse_user_data(por_sms.ud)
    assert packet.iei == sms.RPI
    por = scp80.unwrap_response(packet.payload, card_keyset(card_ota.card), scp80.SPI_SGP02)
    # the expanded response script of the first execution: 'AB' { 80 01 01 (one command run), 23 02 9000 }
    assert (por.counter, por.status, por.data.hex().upper()) == (1, 0x00, "AB07" "800101" "23029000")
    assert (card_ota.card.view(), card_ota.card.scp80) == state

    h.process()
    h.to_smsr(card_ota.msisdn, replay, T0)
    h.process()
    assert h.op(op_id).step == "await_notification"
    assert h.inbox_outcomes()[-1] == "PoR counter 1: no operation waits for it"


def test_a_packet_with_a_used_counter_and_other_bytes_gets_counter_low(h):
    """Only the very packet is answered from the record: other bytes under a counter already used are refused
    with PoR status '02' (TS 102 225) and run nothing."""
    h.request(Function.ENABLE, EID1, SPARE1)
    h.start()
    h.send_due()
    card_ota = h.cards[EID1]
    state = card_ota.card.view()
    euicc_keys = card_keyset(card_ota.card)
    other = scp80.wrap_command(euicc_keys, scp80.SPI_SGP02, bytes.fromhex("000001"), 1,
                               remote.encode_command_script([es5.get_status_isdp(None)]))
    [por_ud] = card_ota.execute(other)
    por = scp80.unwrap_response(sms.parse_user_data(por_ud).payload, euicc_keys, scp80.SPI_SGP02)
    assert (por.counter, por.status, por.data) == (1, 0x02, b"")
    assert card_ota.card.view() == state


# -- whatever is stored, an operation fails alone and the work goes on ----------------------------------------------

ARABIC_INDIC_MSISDN = "٤٤٧٩٠٠٠٠٠١٠٠"  # 447900000100 in Arabic-Indic digits: str.isdigit() says True


def test_a_hostile_stored_msisdn_fails_the_operation_cleanly_and_frees_the_euicc(h):
    """Seen in the field: an MSISDN stored in Arabic-Indic digits reached the SMPP layer and crashed the worker
    (UnicodeEncodeError), leaving the eUICC blocked. Now the operation fails 1.2/4.2 without echoing the value,
    the eUICC takes its next operation, and another eUICC is not held up."""
    h.set_profile(FALLBACK1, msisdn=ARABIC_INDIC_MSISDN)
    enable = h.request(Function.ENABLE, EID1, SPARE1, message_id="urn:uuid:hostile")
    audit = h.request(Function.AUDIT, EID1)
    other = h.request(Function.DELETE, EID2, SPARE2)
    h.start()
    [t] = h.send_due()
    assert t.reached == EID2
    op = h.op(enable)
    assert (op.state, op.result, op.attempts, op.sent_any) == ("done", ("FAILED", "1.2", "4.2"), 0, False)
    [cb] = callbacks(h, enable)
    assert status_of(cb) == ("FAILED", "1.2", "4.2")
    assert cb.fields["Message"] == (f"the MSISDN stored for the enabled profile {FALLBACK1} is not an E.164 number "
                                    "(ASCII digits only): the eUICC cannot be reached by SMS")
    assert h.ota(EID1).active_operation_id is None
    assert h.card(EID1).scp80.keyset(1).counter == 0  # nothing left for the card
    assert h.start(at(1)) == 1 and h.ota(EID1).active_operation_id == audit  # the next one runs
    h.process()
    assert h.op(other).result == ("EXECUTED_SUCCESS", None, None)


def test_no_enabled_profile_fails_cleanly(h):
    h.set_profile(FALLBACK1, state=DISABLED)
    op_id = h.request(Function.AUDIT, EID1)
    h.start()
    assert h.send_due() == []
    op = h.op(op_id)
    assert (op.state, op.result) == ("done", ("FAILED", "1.2", "4.2"))
    [cb] = callbacks(h, op_id)
    assert cb.fields["Message"] == f"eUICC {EID1} has no enabled profile: no network reaches it by SMS"
    assert h.ota(EID1).active_operation_id is None


def _drop_isd_r(h: OtaHarness, eid: str) -> None:
    """A stored EIS without its ISD-R (no keys, no TAR): nothing can be secured for or read from that card."""
    from sqlalchemy import delete

    from smsr_core.models import SecurityDomainRow

    with h.db.session() as s:
        s.execute(delete(SecurityDomainRow).where(SecurityDomainRow.eid == eid, SecurityDomainRow.role == "ISD-R"))


@pytest.mark.parametrize("started", [True, False], ids=["started-first", "started-with-its-packet"])
def test_a_command_that_cannot_be_built_fails_alone(h, started):
    """Also when the operation starts in the step that builds its first packet (the worker's tick): the start,
    rolled back with the failure, is made again on its own, and the operation ends as one started first would."""
    enable = h.request(Function.ENABLE, EID1, SPARE1)
    other = h.request(Function.DELETE, EID2, SPARE2)
    _drop_isd_r(h, EID1)
    if started:
        h.start()
    [t] = h.send_due()  # no exception out of the worker's step
    assert t.reached == EID2
    op = h.op(enable)
    assert (op.state, op.result, op.counter) == ("done", ("FAILED", "1.2", "4.2"), None)
    [cb] = callbacks(h, enable)
    assert cb.fields["Message"] == "the SM-SR could not build the command for this eUICC"
    assert h.ota(EID1).active_operation_id is None
    h.process()
    assert h.op(other).result == ("EXECUTED_SUCCESS", None, None)


def test_an_sms_that_cannot_be_handled_is_set_aside_then_dropped_and_others_go_on(h):
    """An inbox SMS whose handling raises (here: its eUICC has lost its ISD-R in the database) must neither stop
    the others nor be retried at every poll: it waits a lease, and is dropped after INBOX_GIVE_UP seconds."""
    from smsr_core.platform import INBOX_GIVE_UP

    enable = h.request(Function.ENABLE, EID1, SPARE1)
    delete = h.request(Function.DELETE, EID2, SPARE2)
    h.start()
    h.send_due()  # both PoRs are now in the inbox
    _drop_isd_r(h, EID1)
    calls = []
    handle = h.platform._handle_parts
    h.platform._handle_parts = lambda s, parts, now: calls.append(parts[0].id) or handle(s, parts, now)

    h.process()
    assert h.op(delete).result == ("EXECUTED_SUCCESS", None, None)  # not held up
    assert h.op(enable).step == "await_por"
    assert len(calls) == 2
    h.process(at(1))
    assert len(calls) == 2  # not again at the next poll
    h.process(at(TIMING.lease + 1))
    assert len(calls) == 3  # again once the lease ran out
    h.process(at(INBOX_GIVE_UP))
    assert h.inbox_outcomes()[0] == "dropped: could not be processed"
    h.process(at(INBOX_GIVE_UP + 2 * TIMING.lease))
    assert len(calls) == 4


def test_retransmissions_stop_at_the_end_of_the_validity_period(h):
    card = h.card(EID1)
    card.silent = True
    card.save()
    op_id = h.request(Function.ENABLE, EID1, SPARE1, validity=60)
    h.start()
    h.send_due()
    h.send_due(at(30))
    assert h.send_due(at(60)) == []  # due again, but out of time: only the expiry may act now
    assert h.op(op_id).params["retransmissions"] == 1
    h.expire(at(60))
    assert h.op(op_id).result == ("EXPIRED", "1.6", "5.3")


# -- the step table and the doorbell -----------------------------------------------------------------------------


def test_the_step_table_is_the_theory_of_operation_and_names_what_exists(h):
    from smsr_core import platform

    platform.CARD_OPERATION.check(h.platform)
    for line in platform.CARD_OPERATION.table().splitlines():
        assert line in platform.__doc__
    assert list(platform.CARD_OPERATION.steps) == ["queued", "send", "await_por", "await_notification", "handover",
                                                   "held"]


def test_a_due_row_runs_the_step_its_table_row_names(h):
    ran = []
    h.platform.send_command = lambda s, op, now: ran.append((op.id, op.step))  # the table names it: looked up per run
    op_id = h.request(Function.ENABLE, EID1, SPARE1)
    assert h.platform.due_sends(T0) == []
    assert ran == [(op_id, "send")]  # queued ran start, then (same transaction) the send step


class Bell:
    def __init__(self):
        self.rings = 0

    def ring(self):
        self.rings += 1


def test_the_doorbell_rings_when_work_is_due_now(h):
    bell = h.platform.doorbell = Bell()
    first = h.request(Function.ENABLE, EID1, SPARE1)
    assert bell.rings == 1  # accepted: due at once
    second = h.request(Function.AUDIT, EID1, iccids=[])
    assert bell.rings == 2
    h.request(Function.ENABLE, UNKNOWN_EID, SPARE1)
    assert bell.rings == 2  # refused at once: nothing for a worker to do
    h.send_due()  # the enable goes; the audit waits for the eUICC
    h.process()  # PoR: waits for the notification, nothing due
    assert bell.rings == 2 and h.op(second).state == "queued"
    h.notify(EID1, T0)
    h.process()  # the notification ends the enable and frees the eUICC: the audit is due
    assert h.op(first).state == "done" and bell.rings == 3
    assert [t.sms.operation_id for t in h.send_due()] == [second]


# -- what an operation costs ---------------------------------------------------------------------------------------


def test_an_enable_costs_the_worker_at_most_its_measured_statements(h):
    """The SM-SR worker's share of one ES4-EnableProfile (SQLite, in process): its ticks from the request to the
    confirmation's PoR, the SMSC's acceptance included; the SMS the card sends are stored apart (SmsrWorker.on_deliver)
    and not counted. Transactions are counted by their commits (a persistence.prepared block fires no ``begin``).
    Measured: 46 statements in 8 transactions (45 before a packet's counter was taken in its own UPDATE ... RETURNING,
    smsr_core.platform.Platform._next_counter: the confirmation's no longer rides with the notification's row update;
    44 before the end of an operation was claimed once:
    persistence.engine.finish_once), 16 statements of them the four ticks' scans (what expired, what is
    due and whether the inbox holds anything: prepared reads, no transaction on SQLite; only when it does, the inbox
    leased and read in one UPDATE ... RETURNING: an idle tick writes nothing). Before that read: 41 in 9; before: 46 in 17 (each SMS leased by a statement of its
    own, the held operations looked up twice though none were held); before issue 10's work: 61 in 22 (start_ready's scan and its own transaction, the operation, eUICC and OTA
    state read again by each step, the older queued operations looked up apart)."""
    from sqlalchemy import event

    counted = {"statements": 0, "transactions": 0}
    counting = [False]

    def statement(*_):
        counted["statements"] += counting[0]

    def begin(*_):
        counted["transactions"] += counting[0]

    event.listen(h.db.engine, "before_cursor_execute", statement)
    event.listen(h.db.engine, "commit", begin)  # a commit per transaction: persistence.prepared blocks fire no begin
    platform = h.platform

    def worker(method, *args):
        counting[0] = True
        try:
            return method(*args)
        finally:
            counting[0] = False

    sent = platform.sent
    platform.sent = lambda *args: worker(sent, *args)

    def tick():  # SmsrWorker.tick, the SMSC and the card played by the harness
        worker(platform.expire, T0)
        for out in worker(platform.process_inbox, T0):
            h.transmit(out, T0)
        for out in worker(platform.due_sends, T0):
            h.transmit(out, T0)

    op_id = h.request(Function.ENABLE, EID1, SPARE1)
    tick()  # started, sent; its PoR is in the inbox
    tick()  # the PoR: await_notification
    h.notify(EID1, T0)
    tick()  # the notification ends it; the confirmation goes
    tick()  # the confirmation's PoR
    assert h.op(op_id).result == ("EXECUTED_SUCCESS", None, None)
    assert h.card(EID1).pending == []
    assert (counted["statements"], counted["transactions"]) == (46, 8)


def test_two_packets_built_at_once_for_one_card_never_share_a_counter(h):
    """Two units of work (two workers: one builds an operation's command, the other a notification's confirmation)
    read the eUICC's OTA state at the same moment; the second to take a counter gets the next one, not the same one
    (the counter is taken in the UPDATE itself: Platform._next_counter). A read-add-write of the loaded row lost one of
    the two updates on PostgreSQL: two packets under one counter, the card answering the second with the first's PoR."""
    from smsr_core.ops_models import EuiccOta
    from smsr_core.platform import Platform

    with h.db.session() as s:
        h.platform._ota(s, EID1)
        before = s.get(EuiccOta, EID1).counter
    first, second = h.db.session(), h.db.session()
    s1, s2 = first.__enter__(), second.__enter__()
    o1, o2 = s1.get(EuiccOta, EID1), s2.get(EuiccOta, EID1)  # both read the same counter
    assert o1.counter == o2.counter == before
    c1 = Platform._next_counter(s1, o1)
    first.__exit__(None, None, None)
    c2 = Platform._next_counter(s2, o2)
    second.__exit__(None, None, None)
    assert (c1, c2) == (before + 1, before + 2)
    assert h.ota(EID1).counter == before + 2
