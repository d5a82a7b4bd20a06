"""The ISD-P lifecycle and the SM-SR's profile rules (smsr_core.isdp, smsr_core.pol2) on plain values: no database,
no PKI, no WSGI app."""
from __future__ import annotations

import pytest

from ota import es5
from sgp02 import eis as v
from sgp02.codes import FunctionFailed
from sgp02.identifiers import allocate_isd_p_aid, isd_p_aid
from sgp02.roles import Caller
from smsr_core import isdp
from smsr_core.isdp import Event

MNO, OTHER = "1.2.3.1", "1.2.3.2"
CALLER = Caller(MNO, "mno")
E, D, C = v.ProfileState.ENABLED, v.ProfileState.DISABLED, v.ProfileState.CREATED


def profile(n: int, state: v.ProfileState, *, fallback: bool = False, mno: str = MNO, pol2=()) -> v.ProfileInfo:
    return v.ProfileInfo(iccid=f"8900000000000000{n:03d}", isd_p_aid=isd_p_aid(n), mno_id=mno,
                         fallback_attribute=fallback, subscription_address=v.SubscriptionAddress(), state=state,
                         allocated_memory=0, pol2=tuple(v.Pol2Rule("PROFILE", a, q) for a, q in pol2))


def refusal(rule, *args) -> tuple[str, str, str, str | None]:
    with pytest.raises(FunctionFailed) as exc:
        rule(*args)
    f = exc.value
    return f.code.subject, f.code.reason, f.message, f.subject_identifier


# -- the lifecycle table -------------------------------------------------------------------------------------------


def test_the_lifecycle_runs_created_disabled_enabled_and_back_to_deleted():
    state = None
    for event, expected, notification in [(Event.CREATED, C, None), (Event.PERSONALISED, D, None),
                                          (Event.ENABLED, E, "Enabled"), (Event.DISABLED, D, "Disabled"),
                                          (Event.DELETED, None, "Deleted")]:
        t = isdp.after(state, event)
        assert (t.to, t.notification) == (expected, notification)
        state = t.to


def test_what_the_lifecycle_has_no_arrow_for_is_refused():
    with pytest.raises(isdp.IllegalTransition, match="from Enabled on personalised"):
        isdp.after(E, Event.PERSONALISED)
    with pytest.raises(isdp.IllegalTransition):
        isdp.after(None, Event.ENABLED)
    with pytest.raises(isdp.IllegalTransition):
        isdp.after(D, Event.CREATED)


def test_every_state_answers_what_the_card_may_report():
    for state in (C, D, E):
        for event in (Event.ENABLED, Event.DISABLED, Event.NOT_INSTALLED, Event.DELETED):
            isdp.after(state, event)  # the card is the truth: no IllegalTransition


def test_a_profile_nobody_knew_is_deleted_without_a_notification():
    assert isdp.after(C, Event.DELETED).notification is None
    assert isdp.after(E, Event.NOT_INSTALLED) == isdp.Transition(C, "Disabled", isdp.after(E, Event.NOT_INSTALLED).note)


# -- the rules -----------------------------------------------------------------------------------------------------


def test_enable_rules():
    fallback, spare = profile(0, E, fallback=True), profile(1, D)
    isdp.check("EnableProfile", spare, [fallback, spare], CALLER)
    assert refusal(isdp.check_enable, fallback, [fallback, spare], CALLER) == (
        "8.1", "3.8", f"profile {fallback.iccid} is already enabled", fallback.iccid)
    created = profile(2, C)
    assert refusal(isdp.check_enable, created, [fallback, created], CALLER)[2] == \
        f"profile {created.iccid} is Created, not Disabled"
    forbidden = profile(1, D, pol2=[("ENABLE", "Not-Allowed")])
    assert refusal(isdp.check_enable, forbidden, [fallback, forbidden], CALLER) == (
        "8.2.3", "3.8", f"POL2 of {forbidden.iccid} forbids ENABLE", forbidden.iccid)


def test_enabling_another_needs_the_enabled_profiles_disable_rule_and_names_it_only_to_its_owner():
    enabled = profile(0, E, fallback=True, mno=OTHER, pol2=[("DISABLE", "Not-Allowed")])
    spare = profile(1, D)
    assert refusal(isdp.check_enable, spare, [enabled, spare], CALLER) == (
        "8.2.3", "3.8", "POL2 of the enabled profile forbids DISABLE", None)
    owner = Caller(OTHER, "mno")
    assert refusal(isdp.check_enable, spare, [enabled, spare], owner)[2:] == (
        f"POL2 of the enabled profile {enabled.iccid} forbids DISABLE", enabled.iccid)


def test_disable_rules_the_fallback_profile_is_never_disabled():
    fallback, other = profile(0, E, fallback=True), profile(1, D)
    assert refusal(isdp.check_disable, fallback, [fallback, other], CALLER)[:2] == ("8.1", "3.8")
    enabled = profile(1, E)
    isdp.check_disable(enabled, [profile(0, D, fallback=True), enabled], CALLER)
    assert "fall-back" in refusal(isdp.check_disable, enabled, [profile(0, D), enabled], CALLER)[2]  # none to fall to
    assert refusal(isdp.check_disable, other, [fallback, other], CALLER)[2] == f"profile {other.iccid} is not enabled"
    locked = profile(1, E, pol2=[("DISABLE", "Not-Allowed")])
    assert refusal(isdp.check_disable, locked, [profile(0, D, fallback=True), locked], CALLER)[:3] == (
        "8.2.3", "3.8", f"POL2 of {locked.iccid} forbids DISABLE")


def test_delete_rules_never_the_fallback_nor_the_enabled_profile():
    fallback, enabled, spare = profile(0, D, fallback=True), profile(1, E), profile(2, D)
    assert refusal(isdp.check_delete, fallback, [], CALLER)[2] == \
        f"profile {fallback.iccid} carries the fall-back attribute and is never deleted"
    assert refusal(isdp.check_delete, enabled, [], CALLER)[2] == f"profile {enabled.iccid} is enabled: disable it first"
    isdp.check_delete(spare, [], CALLER)
    assert refusal(isdp.check_delete, profile(2, D, pol2=[("DELETE", "Not-Allowed")]), [], CALLER)[:2] == ("8.2.3", "3.8")


def test_set_fallback_needs_an_installed_profile_and_other_functions_have_no_rule_here():
    assert refusal(isdp.check_set_fallback, profile(2, C), [], CALLER)[:2] == ("8.1", "3.8")
    isdp.check_set_fallback(profile(2, D), [], CALLER)
    isdp.check("AuditEIS", profile(2, C), [], CALLER)


# -- what the card says --------------------------------------------------------------------------------------------


def test_a_notification_enables_the_isdp_it_names_disables_the_others_and_owes_auto_delete():
    fallback = profile(0, E, fallback=True, pol2=[("DISABLE", "Auto-Delete")])
    spare = profile(1, D)
    change = isdp.on_profile_change([fallback, spare], isd_p_aid(1).lower())
    assert change.changes == ((fallback.iccid, Event.DISABLED), (spare.iccid, Event.ENABLED))
    assert change.auto_delete == (fallback.iccid,) and change.now_enabled == spare.iccid
    assert isdp.on_profile_change([fallback, spare], isd_p_aid(0)).changes == ()  # it says what the EIS says
    assert isdp.on_profile_change([fallback, spare], isd_p_aid(7)) == isdp.ProfileChange((), (), None)


def test_which_notification_answers_the_operation_in_flight():
    spare_enabled = profile(1, E)
    change = isdp.ProfileChange((), (), spare_enabled.iccid)
    ok, rolled_back = es5.NOTIF_PROFILE_CHANGE_OK, es5.NOTIF_PROFILE_CHANGE_ROLLED_BACK
    assert isdp.notification_answers("EnableProfile", spare_enabled, change, ok) is True
    failed = isdp.notification_answers("EnableProfile", profile(2, D), change, rolled_back)
    assert (failed.code.subject, failed.code.reason) == ("8.4", "4.2")
    assert isdp.notification_answers("EnableProfile", profile(2, D), change, ok) is None
    assert isdp.notification_answers("DisableProfile", profile(2, D), change, es5.NOTIF_FALLBACK) is True


def test_an_audit_realigns_states_fallback_and_drops_what_the_card_lacks():
    a, b, c = profile(0, E, fallback=True), profile(1, D), profile(2, D)
    statuses = [es5.IsdpStatus(bytes.fromhex(isd_p_aid(0)), es5.DISABLED, False, 0, 0),
                es5.IsdpStatus(bytes.fromhex(isd_p_aid(1)), es5.ENABLED, True, 0, 0)]
    r = isdp.realign([a, b, c], statuses)
    assert r.changes == ((a.iccid, Event.DISABLED), (b.iccid, Event.ENABLED), (c.iccid, Event.DELETED))
    assert dict(r.fallback) == {a.iccid: False, b.iccid: True}
    assert isdp.deleted_by_card([a, b, c], [bytes.fromhex(isd_p_aid(2))]) == (c.iccid,)


def test_the_isd_p_aid_series_has_one_home():
    assert isd_p_aid(1) == "A0000005591010FFFFFFFF8900001100"
    assert allocate_isd_p_aid([isd_p_aid(0), isd_p_aid(1).lower()]) == isd_p_aid(2)
