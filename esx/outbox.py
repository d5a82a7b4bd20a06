"""The transactional outbox: domain events, written with the state change, rendered per channel and sent later.

A state change and what it owes commit together: :class:`OutboxSink` (the SM-SR core's
:class:`~smsr_core.platform.MessageSink`) and :class:`SmdpOutboxSink` (the SM-DP's
:class:`~smdp_core.download.Es2Sink`) turn what a core reports into a domain event (``sgp02.events``) and
:func:`enqueue` it: one outbox row per recipient, in the caller's session (``persistence.outbox.emit``).

A row is rendered only when it is delivered, by the renderer of its channel (:data:`CHANNELS`). Today there is one,
:data:`SOAP_V3`: the SGP.02 v3 callbacks and HandleProfile…Notifications, checked against our XSD, in a SOAP 1.2
envelope. Another channel (the v4 notifications, a REST webhook) is one more :class:`Channel` in that table; the
sinks, the table and the delivery loop stay as they are. What must not change between retries is fixed when the row
is written: the MessageID and the name it is delivered as (the channel chooses both); the event carries its own
times (ProcessingEnd is when the function ended, not when it was sent), so every attempt sends the same bytes.
Rows written before events hold their rendered body and are sent as they are.

:func:`deliver_due` sends what is due: a POST of the rendered message, for SOAP with WS-Addressing From, To,
MessageID, Action and, for callbacks, RelatesTo = the request's MessageID. Any 2xx answer is a delivery; anything
else, a render failure included (our defect: a body the contract forbids, or a payload this version cannot read), is
retried with a growing delay (doubling from 2 s, capped at :data:`MAX_BACKOFF`) and one short log line per failed
attempt; nothing is ever dropped. Rows are leased, so several workers never send the same row at once.
``esx outbox show`` lists what waits and why; ``esx outbox retry`` sends it again now (after a receiver is fixed).
"""
from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol

import requests
from lxml import etree
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from esx.binding import contract, wsa
from esx.binding.ns import GSMA, SOAP12, SOAP12_CONTENT_TYPE, WSA
from esx.binding.soap import gsma_element, response_element
from esx.eis_xml import render_eis, xml_datetime
from persistence import outbox as store
from persistence.engine import Doorbell, Silent, due_now
from persistence.entities import get_entity
from persistence.outbox import OutboxMessage
from sgp02 import eis as v
from sgp02.codes import FunctionFailed, Status
from sgp02.events import Event, OperationFinished, Outcome, ProfileChange, ProfileStateChanged, from_json
from smsr_core.models import ProfileRow
from smsr_core.ops_models import Operation

log = logging.getLogger(__name__)

MAX_BACKOFF = 600.0  # a receiver that stays away costs six lines an hour per message, and gets it within 10 minutes


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class RenderError(Exception):
    """An event that cannot be rendered for its channel (a defect of ours: the delivery waits, it is not sent)."""


@dataclass(frozen=True)
class DeliveryName:
    """What a row is delivered as: the receiver's contract and its operation (``esx outbox show``)."""

    contract: str
    operation: str


@dataclass(frozen=True)
class Wire:
    """One delivery as it goes out: an HTTP POST's body and content type."""

    content_type: str
    data: bytes


class Channel(Protocol):
    """How events reach a recipient: names and identifiers fixed when the row is written, the message rendered when
    it is sent. ``interface`` is the SGP.02 interface (ES2, ES3, ES4) the recipient is reached over."""

    def delivered_as(self, event: Event, interface: str) -> DeliveryName: ...

    def new_message_id(self, sender_oid: str) -> str: ...

    def render(self, event: Event, interface: str, name: DeliveryName, *, message_id: str, relates_to: str | None,
               from_address: str, to: str) -> Wire:
        """The message; RenderError if it would violate the channel's contract."""


# -- SOAP v3: the SGP.02 v3 messages, as our WSDL and XSD in wsdl/ define them -------------------------------------


class SoapV3:
    """The SGP.02 v3 callbacks and notifications (sgp02-wire.md 3), validated against our XSD."""

    # The receiver's WSDL per interface we deliver over, and the ES3 spelling of DeleteProfile.
    CONTRACTS = {"ES4": "ES4Mno.wsdl", "ES3": "ES3SmDp.wsdl", "ES2": "ES2Mno.wsdl"}
    ES3_NAMES = {"DeleteProfile": "DeleteISDP"}
    # Functions whose callback carries the card's answer (EuiccResponseData, ES3 and ES4 only), in the interface's
    # names.
    WITH_EUICC_RESPONSE = frozenset({"EnableProfile", "DisableProfile", "DeleteProfile", "DeleteISDP",
                                     "SetFallBackAttribute", "UpdateConnectivityParameters", "SendData", "CreateISDP"})

    def _function(self, event: OperationFinished, interface: str) -> str:
        return self.ES3_NAMES.get(event.function, event.function) if interface == "ES3" else event.function

    def delivered_as(self, event: Event, interface: str) -> DeliveryName:
        wsdl = self.CONTRACTS[interface]
        if isinstance(event, OperationFinished):
            operation = f"{interface}-{self._function(event, interface)}Callback"
        else:
            operation = f"{interface}-HandleProfile{ProfileChange(event.change).value}Notification"
        if operation not in contract.load_service(wsdl).operations:
            raise ValueError(f"{wsdl} has no operation {operation}")
        return DeliveryName(wsdl, operation)

    def new_message_id(self, sender_oid: str) -> str:
        return wsa.new_message_id(sender_oid)

    def body(self, event: Event, interface: str) -> etree._Element:
        """The SOAP body element of ``event`` delivered over ``interface``, checked against our XSD."""
        if isinstance(event, OperationFinished):
            el = self._callback(event, interface)
        else:
            el = self._notification(event, interface)
        problem = contract.validate(el)
        if problem is not None:
            raise RenderError(f"{etree.QName(el).localname} violates the schema: {problem.message}")
        return el

    def _callback(self, event: OperationFinished, interface: str) -> etree._Element:
        name = self._function(event, interface)
        outcome: Outcome = event.outcome
        children = []
        if name == "CreateISDP":
            # Mandatory in the v3 schema, even on failure; v4 makes it optional and recommends
            # '0000000000' when there is no ISD-P to name (sgp02-wire.md 3, ES3).
            children.append(gsma_element("Isd-p-aid", event.isd_p_aid if outcome.succeeded else "0000000000"))
        if interface == "ES2" and name == "DownloadProfile" and event.iccid:
            children.append(gsma_element("Iccid", event.iccid))
        if outcome.succeeded and event.eis is not None:
            children.append(render_eis(etree.Element("holder"), event.eis))
        if event.euicc_response and interface != "ES2" and name in self.WITH_EUICC_RESPONSE:
            children.append(gsma_element("EuiccResponseData", event.euicc_response))
        return response_element(f"{{{GSMA}}}{interface}-{name}Response", event.accepted_at, outcome.status,
                                outcome.failure(), children, ended=event.finished_at)

    def _notification(self, event: ProfileStateChanged, interface: str) -> etree._Element:
        el = gsma_element(f"{interface}-HandleProfile{ProfileChange(event.change).value}Notification")
        fields = [("Eid", event.eid), ("Iccid", event.iccid)]
        if interface == "ES3":  # the SM-DP is told whose profile it is
            fields.append(("Mno-id", event.mno_id))
        fields.append(("CompletionTimestamp", xml_datetime(event.completed_at)))
        for local, text in fields:
            etree.SubElement(el, f"{{{GSMA}}}{local}").text = text
        return el

    def render(self, event: Event, interface: str, name: DeliveryName, *, message_id: str, relates_to: str | None,
               from_address: str, to: str) -> Wire:
        body = etree.tostring(self.body(event, interface))
        return Wire(SOAP12_CONTENT_TYPE, _envelope(name, body, message_id, relates_to, from_address, to))


SOAP_V3 = "soap-v3"
CHANNELS: dict[str, Channel] = {SOAP_V3: SoapV3()}


def _envelope(name: DeliveryName, body: bytes, message_id: str, relates_to: str | None, from_address: str,
              to: str) -> bytes:
    op = contract.load_service(name.contract).operations[name.operation]
    env = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"env": SOAP12, "wsa": WSA, "rps": GSMA})
    header = etree.SubElement(env, f"{{{SOAP12}}}Header")
    wsa.write_addressing(header, wsa.Addressing(from_address=from_address, to=to, message_id=message_id,
                                                action=op.input_action, relates_to=relates_to))
    etree.SubElement(env, f"{{{SOAP12}}}Body").append(etree.fromstring(body))
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def enqueue(s: Session, event: Event, *, sender_role: str, sender_oid: str, recipient: str, interface: str,
            channel: str = SOAP_V3, operation_id: int | None = None) -> None:
    """Owe ``event`` to ``recipient`` over ``interface``, as one outbox row in the caller's session (rendered for
    ``channel`` when it is delivered). The channel names the delivery and fixes its MessageID now."""
    renderer = CHANNELS[channel]
    name = renderer.delivered_as(event, interface)
    store.emit(s, event, sender_role=sender_role, recipient=recipient, interface=interface, channel=channel,
               message_id=renderer.new_message_id(sender_oid), contract=name.contract,
               operation=name.operation, operation_id=operation_id)


def render(row: OutboxMessage, *, from_address: str, to: str) -> Wire:
    """What delivering ``row`` sends: its event rendered for its channel, or, for a row written before events, its
    stored body in an envelope. RenderError (or the decoding error) when it cannot be rendered."""
    name = DeliveryName(row.wsdl, row.operation)
    if row.event_type is None:
        return Wire(SOAP12_CONTENT_TYPE, _envelope(name, row.body, row.message_id, row.relates_to, from_address, to))
    event = from_json(row.event_type, row.payload)
    return CHANNELS[row.channel].render(event, row.interface, name, message_id=row.message_id, relates_to=row.relates_to,
                                        from_address=from_address, to=to)


def soap_body(row: OutboxMessage) -> bytes:
    """The SOAP body ``row`` delivers (a SOAP row: written before events, or of :data:`SOAP_V3`), as bytes."""
    if row.event_type is None:
        return row.body
    if row.channel != SOAP_V3:
        raise ValueError(f"outbox row {row.id} is delivered over {row.channel}, not SOAP")
    return etree.tostring(CHANNELS[SOAP_V3].body(from_json(row.event_type, row.payload), row.interface))


# -- the cores' sinks --------------------------------------------------------------------------------------------


class OutboxSink:
    """What the SM-SR owes, as events in the outbox (see the module doc)."""

    def __init__(self, smsr_oid: str, doorbell: Doorbell | None = None) -> None:
        self.smsr_oid = smsr_oid
        self.doorbell = doorbell or Silent()  # the delivery loop's: rung once the event is committed

    def callback(self, s: Session, op: Operation, status: Status, failure: FunctionFailed | None,
                 eis: v.Eis | None, euicc_response: str | None) -> None:
        outcome = Outcome.of(status, failure)
        event = OperationFinished(
            interface=op.interface, function=op.function, requester_id=op.requester_id, message_id=op.message_id,
            reply_to=op.reply_to, accepted_at=op.accepted_at, finished_at=_utcnow(), outcome=outcome,
            eis=eis, euicc_response=euicc_response,
            isd_p_aid=op.params.get("isd_p_aid") if op.function == "CreateISDP" and outcome.succeeded else None,
        )
        enqueue(s, event, sender_role="smsr", sender_oid=self.smsr_oid, recipient=op.requester_id,
                interface=op.interface, operation_id=op.id)
        due_now(s, self.doorbell)

    def profile_notification(self, s: Session, change: str, eid: str, profile: ProfileRow, when: datetime) -> None:
        """To the profile's MNO (ES4), and to the SM-DP that installed it (ES3)."""
        event = ProfileStateChanged(change=ProfileChange(change), eid=eid, iccid=profile.iccid, mno_id=profile.mno_id,
                                    smdp_id=profile.smdp_id or None, completed_at=when)
        enqueue(s, event, sender_role="smsr", sender_oid=self.smsr_oid, recipient=profile.mno_id, interface="ES4")
        if event.smdp_id:
            enqueue(s, event, sender_role="smsr", sender_oid=self.smsr_oid, recipient=event.smdp_id, interface="ES3")
        due_now(s, self.doorbell)


class SmdpOutboxSink:
    """What the SM-DP owes MNOs (smdp_core.download.Es2Sink): ES2 callbacks and relayed notifications, as events."""

    def __init__(self, smdp_oid: str, doorbell: Doorbell | None = None) -> None:
        self.smdp_oid = smdp_oid
        self.doorbell = doorbell or Silent()  # the delivery loop's: rung once the event is committed

    def callback(self, s: Session, op, status: Status, failure: FunctionFailed | None) -> None:
        event = OperationFinished(
            interface="ES2", function=op.function, requester_id=op.requester_id, message_id=op.message_id,
            reply_to=op.reply_to, accepted_at=op.accepted_at, finished_at=_utcnow(),
            outcome=Outcome.of(status, failure), iccid=op.iccid if op.function == "DownloadProfile" else None,
        )
        enqueue(s, event, sender_role="smdp", sender_oid=self.smdp_oid, recipient=op.requester_id, interface="ES2")
        due_now(s, self.doorbell)

    def notification(self, s: Session, change: str, mno_id: str, eid: str, iccid: str, when: datetime) -> None:
        """The SM-SR's notification about a profile this SM-DP installed, relayed to its MNO (ES2)."""
        event = ProfileStateChanged(change=ProfileChange(change), eid=eid, iccid=iccid, mno_id=mno_id,
                                    smdp_id=self.smdp_oid, completed_at=when)
        enqueue(s, event, sender_role="smdp", sender_oid=self.smdp_oid, recipient=mno_id, interface="ES2")
        due_now(s, self.doorbell)


def deliver_due(db, *, from_address: str, session: requests.Session, now: datetime | None = None,
                lease: float = 60.0, timeout: float = 10.0, limit: int = 50, sender_role: str = "smsr",
                senders: int = 8) -> int:
    """Send every due outbox row of ``sender_role`` once (its From is ``from_address``); returns how many
    were delivered. The SM-SR's and the SM-DP's workers may share one database: each sends its own.

    One batch: the due rows are leased in one transaction, rendered, POSTed, and their outcomes recorded in one
    transaction. Rows to one address go in the order they were written, one after the other (a receiver sees an
    operation's notifications in the order they happened); different addresses are served at the same time, by up
    to ``senders`` threads, over the HTTP session's kept-alive connections."""
    now = now or _utcnow()
    timeout = min(timeout, lease / 2)  # a POST never outlives its lease, so no second worker sends it meanwhile
    free = or_(OutboxMessage.lease_until.is_(None), OutboxMessage.lease_until < now)
    with db.session() as s:
        ids = list(s.scalars(select(OutboxMessage.id).where(
            OutboxMessage.sender_role == sender_role, OutboxMessage.delivered_at.is_(None),
            OutboxMessage.next_attempt_at <= now, free).order_by(OutboxMessage.id).limit(limit)))
        if not ids:
            return 0
        leased = set(s.scalars(update(OutboxMessage).where(
            OutboxMessage.id.in_(ids), OutboxMessage.delivered_at.is_(None), free,
        ).values(lease_until=now + timedelta(seconds=lease)).returning(OutboxMessage.id)))
        rows = [r for r in s.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(leased))
                                     .order_by(OutboxMessage.id))]
        targets = {oid: get_entity(s, oid) for oid in {r.target_oid for r in rows if not r.address}}
        for r in rows:
            s.expunge(r)

    def destination(row: OutboxMessage) -> tuple[str | None, str | None]:
        if row.address:
            return row.address, row.address
        entity = targets.get(row.target_oid)
        if entity is None:
            return None, None
        url = entity.notification_endpoint if row.kind == "notification" and entity.notification_endpoint \
            else entity.endpoint
        return url, (wsa.entity_address(url, row.target_oid) if url else None)

    def send(row: OutboxMessage, url: str | None, to: str | None) -> str | None:
        """None when delivered, else why not."""
        if url is None:
            return f"no endpoint is registered for {row.target_oid}"
        try:
            wire = render(row, from_address=from_address, to=to)
        except Exception as exc:  # noqa: BLE001 - our defect, logged and retried like any failed delivery
            return f"not rendered: {exc.__class__.__name__}: {' '.join(str(exc).split())[:300]}"
        try:
            response = session.post(url, data=wire.data, timeout=timeout, headers={"Content-Type": wire.content_type})
        except requests.RequestException as exc:
            return short_error(exc)
        return None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"

    by_address: dict[str | None, list[tuple[OutboxMessage, str | None]]] = {}
    for row in rows:
        url, to = destination(row)
        by_address.setdefault(url, []).append((row, to))
    errors: dict[int, str | None] = {}

    def send_all(url: str | None, queue: list[tuple[OutboxMessage, str | None]]) -> None:
        for row, to in queue:
            errors[row.id] = send(row, url, to)

    if len(by_address) == 1 or senders <= 1:
        for url, queue in by_address.items():
            send_all(url, queue)
    else:
        with ThreadPoolExecutor(max_workers=min(senders, len(by_address))) as pool:
            for done in [pool.submit(send_all, url, queue) for url, queue in by_address.items()]:
                done.result()

    delivered_ids = [row_id for row_id, error in errors.items() if error is None]
    with db.session() as s:
        if delivered_ids:
            s.execute(update(OutboxMessage).where(OutboxMessage.id.in_(delivered_ids)).values(
                delivered_at=_utcnow(), attempts=OutboxMessage.attempts + 1, lease_until=None))
        for row in rows:
            error = errors.get(row.id)
            if error is None:
                continue
            attempts = row.attempts + 1
            delay = backoff(attempts)
            s.execute(update(OutboxMessage).where(OutboxMessage.id == row.id).values(
                attempts=attempts, lease_until=None, last_error=error[:2000],
                next_attempt_at=now + timedelta(seconds=delay)))
            log.warning("outbox %s: %s to %s not delivered (%s); attempt %d, next in %.0f s", row.id, row.operation,
                        row.target_oid, error, attempts, delay)
    return len(delivered_ids)


def backoff(attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: 2, 4, 8, ... capped at MAX_BACKOFF."""
    return min(MAX_BACKOFF, 2.0 ** min(attempts, 16))


_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")\]]+")


def short_error(exc: Exception) -> str:
    """One short phrase for a failed POST (requests' own text runs to hundreds of characters)."""
    text = str(exc)
    found = _ERRNO.search(text)
    if found:
        return f"{exc.__class__.__name__}: {found.group(0).strip()}"
    if "timed out" in text.lower():
        return f"{exc.__class__.__name__}: timed out"
    return exc.__class__.__name__


def pending(s: Session, *, limit: int = 100) -> list[OutboxMessage]:
    """Undelivered rows, oldest first (``esx outbox show``)."""
    return list(s.scalars(select(OutboxMessage).where(OutboxMessage.delivered_at.is_(None))
                          .order_by(OutboxMessage.id).limit(limit)))


def retry_now(s: Session, ids: list[int] | None = None, *, now: datetime | None = None) -> int:
    """Make undelivered rows (those of ``ids``, or all) due at once; how many (``esx outbox retry``)."""
    query = update(OutboxMessage).where(OutboxMessage.delivered_at.is_(None))
    if ids:
        query = query.where(OutboxMessage.id.in_(ids))
    return s.execute(query.values(next_attempt_at=now or _utcnow())).rowcount
