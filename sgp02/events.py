"""Domain events: what one party owes another once a state change is committed, in SGP.02's words, not SOAP's.

Theory of operation. A core that finishes a function, or sees a profile change state, raises an event; the outbox
(``persistence.outbox.emit``) stores it, as its type name and the JSON of :func:`to_json`, in the same transaction
as the state change. Only when it is delivered is an event rendered for a channel (``esx.outbox``: today the SGP.02
v3 SOAP callbacks and notifications). So an event holds facts, never wire choices: which element a schema version
makes mandatory, which function name ES3 spells differently, which results a callback carries are the renderer's.

    event                   raised when                                        delivered as (SOAP v3)
    OperationFinished       an asynchronous function ends (any status)         <ES>-<Function>Callback to the requester
    ProfileStateChanged     a profile is enabled, disabled or deleted          <ES>-HandleProfile<Change>Notification
    SmsrChanged             an eUICC is now managed by another SM-SR           <ES>-HandleSMSRChangeNotification
    PeerRequested           one SM-SR asks another to act, during an SM-SR     ES7-<Function> (a request, whose callback
                            change                                             the asking flow awaits)

Events are frozen dataclasses of kernel values; :func:`to_json` and :func:`from_json` are exact inverses
(``sgp02.plain``), the EIS of an AuditEIS included.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from sgp02 import plain
from sgp02.codes import FunctionFailed, Status, StatusCode
from sgp02.eis import Eis


class ProfileChange(str, Enum):
    """The three profile notifications of SGP.02 (HandleProfileEnabled/Disabled/DeletedNotification)."""

    ENABLED = "Enabled"
    DISABLED = "Disabled"
    DELETED = "Deleted"


@dataclass(frozen=True)
class Outcome:
    """How a function ended: the FunctionExecutionStatus in values (Status, and Subject/Reason when it did not succeed)."""

    status: Status
    subject: str | None = None
    reason: str | None = None
    message: str | None = None
    subject_identifier: str | None = None

    @classmethod
    def of(cls, status: Status, failure: FunctionFailed | None) -> "Outcome":
        if failure is None:
            return cls(status)
        return cls(status, failure.code.subject, failure.code.reason, failure.message, failure.subject_identifier)

    @property
    def succeeded(self) -> bool:
        return self.status in (Status.EXECUTED_SUCCESS, Status.EXECUTED_WITHWARNING)

    def failure(self) -> FunctionFailed | None:
        """The domain error this outcome was made from (None when it carried no Subject/Reason)."""
        if self.subject is None or self.reason is None:
            return None
        return FunctionFailed(StatusCode(self.subject, self.reason), self.message or "",
                              subject_identifier=self.subject_identifier, status=self.status)


@dataclass(frozen=True)
class OperationFinished:
    """An asynchronous function ended; its requester is owed the outcome (relating to ``message_id``)."""

    interface: str  # where the request came in and the outcome goes back: "ES2" | "ES3" | "ES4"
    function: str  # the function as the core knows it, e.g. "EnableProfile", "CreateISDP", "DownloadProfile"
    requester_id: str  # OID
    message_id: str | None  # the request's wsa:MessageID
    reply_to: str | None  # the request's wsa:ReplyTo
    accepted_at: datetime
    finished_at: datetime
    outcome: Outcome
    # Results, each only where the function has it:
    eis: Eis | None = None  # AuditEIS: the EIS as the requester may see it
    euicc_response: str | None = None  # the card's R-APDUs (hex), EuiccResponseData
    isd_p_aid: str | None = None  # CreateISDP: the ISD-P created
    iccid: str | None = None  # ES2 DownloadProfile: the profile downloaded
    # ES7 results, as (element name, hex) in the order the callback carries them: RandomChallenge
    # (AuthenticateSMSR), DerivationRandom and Receipt (CreateAdditionalKeySet)
    results: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ProfileStateChanged:
    """A profile on an eUICC was enabled, disabled or deleted (its MNO, and the SM-DP that installed it, are told)."""

    change: ProfileChange
    eid: str
    iccid: str
    mno_id: str
    smdp_id: str | None  # the SM-DP that installed the profile, if one did
    completed_at: datetime


@dataclass(frozen=True)
class SmsrChanged:
    """An eUICC moved to another SM-SR (SGP.02 3.8, after the commit point): each party with a profile on it is told,
    with the EIS as it may see it (the renderer narrows ``eis`` to the recipient's profiles)."""

    eid: str
    eis: Eis  # the whole EIS at the new SM-SR
    mno_id: str  # the MNO whose profiles the notification is about (an SM-DP relays it to that MNO)
    completed_at: datetime


@dataclass(frozen=True)
class PeerRequested:
    """One SM-SR asks another for an ES7 function during an SM-SR change (HandoverEUICC, AuthenticateSMSR,
    CreateAdditionalKeySet); the flow that asks awaits the callback relating to the request's MessageID."""

    function: str  # "HandoverEUICC" | "AuthenticateSMSR" | "CreateAdditionalKeySet"
    eid: str
    reply_to: str  # where the callback goes (the asking SM-SR's own ES7 address)
    requested_at: datetime
    validity_period: int | None  # seconds, the ValidityPeriod the request carries
    # the request's elements after Eid, as (element name, text) in schema order (hex, integers, ECC-256...)
    fields: tuple[tuple[str, str], ...] = ()
    eis: Eis | None = None  # HandoverEUICC: the whole EIS


Event = OperationFinished | ProfileStateChanged | SmsrChanged | PeerRequested
EVENT_TYPES: dict[str, type] = {cls.__name__: cls for cls in (OperationFinished, ProfileStateChanged, SmsrChanged,
                                                              PeerRequested)}


def event_type(event: Event) -> str:
    """The name an event is stored under (its class name)."""
    name = type(event).__name__
    if EVENT_TYPES.get(name) is not type(event):
        raise TypeError(f"{name} is not a domain event")
    return name


def to_json(event: Event) -> str:
    return json.dumps(plain.dump(type(event), event), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def from_json(name: str, payload: str) -> Event:
    """The event of type ``name`` stored as ``payload``; ValueError for an unknown type."""
    cls = EVENT_TYPES.get(name)
    if cls is None:
        raise ValueError(f"unknown event type {name!r}")
    return plain.load(cls, json.loads(payload))
