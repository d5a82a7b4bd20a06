"""The ISD-P lifecycle as the EIS keeps it, and the SM-SR's rules over it: pure functions of EIS values.

Theory of operation
-------------------
An ISD-P (one profile) lives on the card through the GP life-cycle SELECTABLE -> PERSONALIZED -> DISABLED <->
ENABLED, and ends deleted. The EIS holds what of it the SM-SR may rely on, ``ProfileInfo.State``: Created (the
ISD-P exists, its profile is not installed: SELECTABLE or PERSONALIZED), Disabled, Enabled; a deleted profile has
no entry. The EIS follows the card, never leads it: every state change is an *event the card or the SM-DP
reported*, and :data:`LIFECYCLE` says, for each state and event, the state that follows and the notification the
profile's owner gets (ES4/ES3 HandleProfile...Notification). The table is the program: the SM-SR writes a profile's
state in one place (``Platform._apply``), through :func:`after`; an event the table lacks from a state is a
defect, not a guess.

The card is the truth. Besides the lifecycle's own arrows, the table has those by which the EIS catches up with a
card that changed without the SM-SR seeing it (a lost notification, a download whose completion was never
reported, a POL1 deletion): the card's notification names the ISD-P now enabled, the confirmation's answer lists
what the card deleted, an audit (GET STATUS) says every ISD-P's state.

The rest of the module are the rules that read the EIS, each a pure function of ``ProfileInfo`` values:

- :func:`check` -- what must hold before an EnableProfile, DisableProfile, DeleteProfile or SetFallBackAttribute
  command leaves (raises :class:`~sgp02.codes.FunctionFailed` with the code the requester gets);
- :func:`on_profile_change` -- what a card's default notification changes (the ISD-P it names is enabled, the
  others are disabled, POL2 Auto-Delete owes a deletion) and whether it answers the operation in flight;
- :func:`realign` -- what an audit's GET STATUS changes.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from ota import es5
from sgp02 import codes
from sgp02 import eis as v
from sgp02.codes import FunctionFailed
from sgp02.roles import Caller, may_manage

from . import pol2

CREATED, DISABLED, ENABLED = v.ProfileState.CREATED, v.ProfileState.DISABLED, v.ProfileState.ENABLED


class Event(str, Enum):
    """What the SM-SR learns about one ISD-P, and from whom."""

    CREATED = "created"  # CreateISDP answered 9000
    PERSONALISED = "personalised"  # ES3-ProfileDownloadCompleted: the SM-DP installed the profile
    ENABLED = "enabled"  # the card's notification names it (or an audit finds it ENABLED)
    DISABLED = "disabled"  # another ISD-P is enabled, DisableProfile's notification, or an audit finds it DISABLED
    NOT_INSTALLED = "not installed"  # an audit finds it SELECTABLE or PERSONALIZED
    DELETED = "deleted"  # DeleteProfile answered 9000, the card's confirmation lists it, or an audit misses it


@dataclass(frozen=True)
class Transition:
    to: v.ProfileState | None  # None: the entry is removed
    notification: str | None  # "Enabled" | "Disabled" | "Deleted": the owner's HandleProfile...Notification
    note: str = ""


_ = None
# (state, event) -> what follows. State None: no entry in the EIS.
LIFECYCLE: dict[tuple[v.ProfileState | None, Event], Transition] = {
    # -- the lifecycle --------------------------------------------------------------------------------------------
    (None, Event.CREATED): Transition(CREATED, _, "CreateISDP: the ISD-P exists, owned by the SM-DP that asked"),
    (CREATED, Event.PERSONALISED): Transition(DISABLED, _, "the SM-DP reports its download completed"),
    (DISABLED, Event.PERSONALISED): Transition(DISABLED, _, "the same report again"),
    (DISABLED, Event.ENABLED): Transition(ENABLED, "Enabled", "EnableProfile (or a fall-back) done on the card"),
    (ENABLED, Event.DISABLED): Transition(DISABLED, "Disabled", "another ISD-P enabled, or DisableProfile done"),
    (CREATED, Event.DELETED): Transition(_, _, "a download that never completed: nobody knew the profile"),
    (DISABLED, Event.DELETED): Transition(_, "Deleted", "DeleteProfile, POL1/POL2 deletion"),
    # -- repeats: nothing changes ---------------------------------------------------------------------------------
    (ENABLED, Event.ENABLED): Transition(ENABLED, _, "a notification or an audit repeats what the EIS says"),
    (DISABLED, Event.DISABLED): Transition(DISABLED, _),
    (CREATED, Event.NOT_INSTALLED): Transition(CREATED, _),
    # -- the card is the truth: the EIS catches up ----------------------------------------------------------------
    (CREATED, Event.ENABLED): Transition(ENABLED, "Enabled", "installed and enabled, completion never reported"),
    (CREATED, Event.DISABLED): Transition(DISABLED, _, "installed, completion never reported"),
    (ENABLED, Event.DELETED): Transition(_, "Deleted", "only the card says so (an audit); never asked of it"),
    (DISABLED, Event.NOT_INSTALLED): Transition(CREATED, _, "an audit: the card has no profile in it"),
    (ENABLED, Event.NOT_INSTALLED): Transition(CREATED, "Disabled", "an audit: the card has no profile in it"),
}
del _


class IllegalTransition(ValueError):
    """An event the lifecycle has no arrow for from the profile's state."""


def after(state: v.ProfileState | None, event: Event) -> Transition:
    """What follows ``event`` in ``state`` (:data:`LIFECYCLE`); :class:`IllegalTransition` when nothing does."""
    try:
        return LIFECYCLE[(state, event)]
    except KeyError:
        raise IllegalTransition(f"no ISD-P transition from {state.value if state else 'no entry'} "
                                f"on {event.value}") from None


# -- the rules before a command leaves ---------------------------------------------------------------------------


def _refused(message: str, iccid: str | None) -> FunctionFailed:
    return FunctionFailed(codes.EUICC_REFUSED, message, subject_identifier=iccid)


def check_enable(target: v.ProfileInfo, profiles: Sequence[v.ProfileInfo], caller: Caller) -> None:
    """EnableProfile: the profile is Disabled, POL2 allows ENABLE on it, and DISABLE on the profile enabled now
    (enabling one disables the other)."""
    iccid = target.iccid
    if target.state is ENABLED:
        raise _refused(f"profile {iccid} is already enabled", iccid)
    if target.state is not DISABLED:
        raise _refused(f"profile {iccid} is {target.state.value}, not Disabled", iccid)
    if pol2.forbids(target.pol2, pol2.ENABLE):
        raise FunctionFailed(codes.POL2_REFUSED, f"POL2 of {iccid} forbids ENABLE", subject_identifier=iccid)
    enabled = next((p for p in profiles if p.state is ENABLED), None)
    if enabled is not None and pol2.forbids(enabled.pol2, pol2.DISABLE):
        # Name the enabled profile only to a caller that may see it: it may be another MNO's.
        shown = enabled.iccid if may_manage(caller, enabled) else None
        what = f"the enabled profile {shown}" if shown else "the enabled profile"
        raise FunctionFailed(codes.POL2_REFUSED, f"POL2 of {what} forbids DISABLE", subject_identifier=shown)


def check_disable(target: v.ProfileInfo, profiles: Sequence[v.ProfileInfo], caller: Caller) -> None:
    """DisableProfile: the profile is Enabled, is not the fall-back profile (one exists to fall back to), and POL2
    allows DISABLE."""
    iccid = target.iccid
    if target.state is not ENABLED:
        raise _refused(f"profile {iccid} is not enabled", iccid)
    if target.fallback_attribute or not any(p.fallback_attribute for p in profiles):
        raise _refused(f"profile {iccid} carries the fall-back attribute: the eUICC would have no profile to fall "
                       "back to", iccid)
    if pol2.forbids(target.pol2, pol2.DISABLE):
        raise FunctionFailed(codes.POL2_REFUSED, f"POL2 of {iccid} forbids DISABLE", subject_identifier=iccid)


def check_delete(target: v.ProfileInfo, profiles: Sequence[v.ProfileInfo], caller: Caller) -> None:
    """DeleteProfile: never the fall-back profile, never the enabled one, and POL2 allows DELETE."""
    iccid = target.iccid
    if target.fallback_attribute:
        raise _refused(f"profile {iccid} carries the fall-back attribute and is never deleted", iccid)
    if target.state is ENABLED:
        raise _refused(f"profile {iccid} is enabled: disable it first", iccid)
    if pol2.forbids(target.pol2, pol2.DELETE):
        raise FunctionFailed(codes.POL2_REFUSED, f"POL2 of {iccid} forbids DELETE", subject_identifier=iccid)


def check_set_fallback(target: v.ProfileInfo, profiles: Sequence[v.ProfileInfo], caller: Caller) -> None:
    """SetFallBackAttribute: the profile is installed."""
    if target.state is CREATED:
        raise _refused(f"profile {target.iccid} is not installed yet", target.iccid)


# SGP.02 function name -> its rule (the platform's Function values)
RULES = {
    "EnableProfile": check_enable,
    "DisableProfile": check_disable,
    "DeleteProfile": check_delete,
    "SetFallBackAttribute": check_set_fallback,
}


def check(function: str, target: v.ProfileInfo, profiles: Sequence[v.ProfileInfo], caller: Caller) -> None:
    """The rule of ``function`` (none for the others); raises FunctionFailed when it does not hold."""
    rule = RULES.get(function)
    if rule is not None:
        rule(target, profiles, caller)


# -- what the card says ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileChange:
    """What a card's default notification changes in the EIS."""

    changes: tuple[tuple[str, Event], ...]  # (ICCID, event), in the order they apply: the disabled first
    auto_delete: tuple[str, ...]  # ICCIDs disabled whose POL2 says Auto-Delete: a DeleteProfile to queue
    now_enabled: str | None  # the ICCID of the ISD-P the card names; None: not in the EIS (audit it)


def on_profile_change(profiles: Sequence[v.ProfileInfo], enabled_aid: str) -> ProfileChange:
    """The card says ISD-P ``enabled_aid`` is the enabled one (notification 02, 03 rolled back, 05 fall-back)."""
    aid = enabled_aid.upper()
    now_enabled = next((p for p in profiles if p.isd_p_aid.upper() == aid), None)
    if now_enabled is None:
        return ProfileChange((), (), None)
    disabled = [p for p in profiles if p is not now_enabled and p.state is ENABLED]
    changes = [(p.iccid, Event.DISABLED) for p in disabled]
    if now_enabled.state is not ENABLED:
        changes.append((now_enabled.iccid, Event.ENABLED))
    return ProfileChange(tuple(changes), tuple(p.iccid for p in disabled if pol2.auto_deletes(p.pol2)),
                         now_enabled.iccid)


def notification_answers(function: str, target: v.ProfileInfo | None, change: ProfileChange,
                         notification_type: int) -> FunctionFailed | bool | None:
    """Does a card notification end the EnableProfile / DisableProfile in flight on ``target`` (its state after
    the change)? True: executed; a FunctionFailed: the card rolled back; None: it does not answer it."""
    rolled_back = notification_type == es5.NOTIF_PROFILE_CHANGE_ROLLED_BACK
    if target is not None:
        if (function == "EnableProfile" and notification_type == es5.NOTIF_PROFILE_CHANGE_OK
                and target.iccid == change.now_enabled):
            return True
        if function == "DisableProfile" and target.state is DISABLED and not rolled_back:
            return True
    if rolled_back and function in ("EnableProfile", "DisableProfile"):
        return FunctionFailed(codes.ISDR_EXECUTION_ERROR, "the eUICC could not attach with the profile and rolled back")
    return None


@dataclass(frozen=True)
class Realignment:
    """What an audit changes: the state events, and the fall-back attribute of every ISD-P the card has."""

    changes: tuple[tuple[str, Event], ...]
    fallback: Mapping[str, bool]  # ICCID -> fall-back attribute, for the profiles the card has


def lifecycle_event(lifecycle: int) -> Event:
    """The event a GP life-cycle byte of GET STATUS reports."""
    return {es5.ENABLED: Event.ENABLED, es5.DISABLED: Event.DISABLED}.get(lifecycle, Event.NOT_INSTALLED)


def realign(profiles: Sequence[v.ProfileInfo], statuses: Sequence[es5.IsdpStatus]) -> Realignment:
    """Make the EIS say what GET STATUS reports: an ISD-P the card lacks is deleted, the others take its state."""
    by_aid = {st.aid.hex().upper(): st for st in statuses}
    changes, fallback = [], {}
    for p in profiles:
        st = by_aid.get(p.isd_p_aid.upper())
        if st is None:
            changes.append((p.iccid, Event.DELETED))
            continue
        event = lifecycle_event(st.lifecycle)
        if after(p.state, event).to is not p.state:
            changes.append((p.iccid, event))
        fallback[p.iccid] = st.fallback
    return Realignment(tuple(changes), fallback)


def deleted_by_card(profiles: Sequence[v.ProfileInfo], aids: Sequence[bytes]) -> tuple[str, ...]:
    """ICCIDs of the profiles whose ISD-P the card lists as deleted (a notification confirmation's answer, POL1)."""
    gone = {aid.hex().upper() for aid in aids}
    return tuple(p.iccid for p in profiles if p.isd_p_aid.upper() in gone)
