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

from lxml import etree
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from esx.binding import contract, wsa
from esx.binding.http import HttpClient, HttpUnreachable
from esx.binding.ns import GSMA, SOAP12, SOAP12_CONTENT_TYPE, WSA
from esx.binding.soap import gsma_element, response_element
from esx.eis_xml import render_eis, xml_datetime
from persistence import outbox as store
from persistence.engine import Doorbell, Silent, due_now
from persistence.entities import EntityCache
from persistence.outbox import OutboxMessage
from sgp02 import eis as v
from sgp02.codes import FunctionFailed, Status
from sgp02.events import (Event, OperationFinished, Outcome, PeerRequested, ProfileChange, ProfileStateChanged,
                          SmsrChanged, from_json)
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


# Our ES7 contract (wsdl/): the services an SM-SR provides to another, and the callbacks it receives.
ES7_PROVIDER, ES7_REQUESTER = "ES7SmSrProvider.wsdl", "ES7SmSrRequester.wsdl"


class SoapV3:
    """The SGP.02 v3 callbacks and notifications (sgp02-wire.md 3), validated against our XSD."""

    # The receiver's WSDL per interface we deliver over, and the ES3 spelling of DeleteProfile. Over ES7 a callback goes
    # to the requesting SM-SR's requester service, a request to the other's provider service.
    CONTRACTS = {"ES4": "ES4Mno.wsdl", "ES3": "ES3SmDp.wsdl", "ES2": "ES2Mno.wsdl", "ES7": ES7_REQUESTER}
    ES3_NAMES = {"DeleteProfile": "DeleteISDP"}
    # Functions whose callback carries the card's answer (EuiccResponseData, ES3 and ES4 only), in the interface's
    # names.
    # The results each ES7 callback carries, in schema order.
    ES7_RESULTS = {"AuthenticateSMSR": ("RandomChallenge",), "CreateAdditionalKeySet": ("DerivationRandom", "Receipt")}
    WITH_EUICC_RESPONSE = frozenset({"EnableProfile", "DisableProfile", "DeleteProfile", "DeleteISDP",
                                     "SetFallBackAttribute", "UpdateConnectivityParameters", "SendData", "CreateISDP"})

    def _function(self, event: OperationFinished, interface: str) -> str:
        return self.ES3_NAMES.get(event.function, event.function) if interface == "ES3" else event.function

    def delivered_as(self, event: Event, interface: str) -> DeliveryName:
        wsdl = self.CONTRACTS[interface]
        if isinstance(event, OperationFinished):
            operation = f"{interface}-{self._function(event, interface)}Callback"
        elif isinstance(event, PeerRequested):
            wsdl, operation = ES7_PROVIDER, f"ES7-{event.function}"
        elif isinstance(event, SmsrChanged):
            operation = f"{interface}-HandleSMSRChangeNotification"
        else:
            operation = f"{interface}-HandleProfile{ProfileChange(event.change).value}Notification"
        if operation not in contract.load_service(wsdl).operations:
            raise ValueError(f"{wsdl} has no operation {operation}")
        return DeliveryName(wsdl, operation)

    def new_message_id(self, sender_oid: str) -> str:
        return wsa.new_message_id(sender_oid)

    def body(self, event: Event, interface: str, message_id: str | None = None) -> etree._Element:
        """The SOAP body element of ``event`` delivered over ``interface``, checked against our XSD."""
        if isinstance(event, OperationFinished):
            el = self._callback(event, interface)
        elif isinstance(event, PeerRequested):
            el = self._request(event, message_id)
        elif isinstance(event, SmsrChanged):
            el = self._smsr_changed(event, interface)
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
        if event.euicc_response and interface not in ("ES2", "ES7") and name in self.WITH_EUICC_RESPONSE:
            children.append(gsma_element("EuiccResponseData", event.euicc_response))
        if interface == "ES7":  # mandatory in the schema, empty when the function failed (wsdl/xsd/es7.xsd)
            results = dict(event.results) if outcome.succeeded else {}
            children += [gsma_element(local, results.get(local, "")) for local in self.ES7_RESULTS.get(name, ())]
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

    @staticmethod
    def _request(event: PeerRequested, message_id: str | None) -> etree._Element:
        """An ES7 request: its FunctionCallIdentifier is its MessageID (the same at every retry)."""
        el = gsma_element(f"ES7-{event.function}Request")
        etree.SubElement(el, f"{{{GSMA}}}FunctionCallIdentifier").text = message_id or ""
        if event.validity_period is not None:
            etree.SubElement(el, f"{{{GSMA}}}ValidityPeriod").text = str(event.validity_period)
        if event.eis is not None:
            el.append(render_eis(etree.Element("holder"), event.eis))
        else:
            etree.SubElement(el, f"{{{GSMA}}}Eid").text = event.eid
        for local, text in event.fields:
            etree.SubElement(el, f"{{{GSMA}}}{local}").text = text
        return el

    @staticmethod
    def _smsr_changed(event: SmsrChanged, interface: str) -> etree._Element:
        """HandleSMSRChangeNotification: the EIS as the notified MNO may see it (its profiles only); ES3 names the
        MNO and spells completionTimestamp in lower case (wsdl/xsd/es3.xsd)."""
        from sgp02.eis import eis_seen_by
        from sgp02.roles import Caller

        el = gsma_element(f"{interface}-HandleSMSRChangeNotification")
        el.append(render_eis(etree.Element("holder"), eis_seen_by(event.eis, Caller(event.mno_id, "mno"))))
        if interface == "ES3":
            etree.SubElement(el, f"{{{GSMA}}}Mno-id").text = event.mno_id
            etree.SubElement(el, f"{{{GSMA}}}completionTimestamp").text = xml_datetime(event.completed_at)
        else:
            etree.SubElement(el, f"{{{GSMA}}}CompletionTimestamp").text = xml_datetime(event.completed_at)
        return el

    def render(self, event: Event, interface: str, name: DeliveryName, *, message_id: str, relates_to: str | None,
               from_address: str, to: str) -> Wire:
        body = etree.tostring(self.body(event, interface, message_id))
        reply_to = event.reply_to if isinstance(event, PeerRequested) else None
        return Wire(SOAP12_CONTENT_TYPE, _envelope(name, body, message_id, relates_to, from_address, to, reply_to))


SOAP_V3 = "soap-v3"
CHANNELS: dict[str, Channel] = {SOAP_V3: SoapV3()}


def _envelope(name: DeliveryName, body: bytes, message_id: str, relates_to: str | None, from_address: str,
              to: str, reply_to: str | None = None) -> bytes:
    op = contract.load_service(name.contract).operations[name.operation]
    env = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"env": SOAP12, "wsa": WSA, "rps": GSMA})
    header = etree.SubElement(env, f"{{{SOAP12}}}Header")
    wsa.write_addressing(header, wsa.Addressing(from_address=from_address, to=to, message_id=message_id,
                                                action=op.input_action, relates_to=relates_to, reply_to=reply_to))
    etree.SubElement(env, f"{{{SOAP12}}}Body").append(etree.fromstring(body))
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def enqueue(s: Session, event: Event, *, sender_role: str, sender_oid: str, recipient: str, interface: str,
            channel: str = SOAP_V3, operation_id: int | None = None) -> str:
    """Owe ``event`` to ``recipient`` over ``interface``, as one outbox row in the caller's session (rendered for
    ``channel`` when it is delivered). The channel names the delivery and fixes its MessageID now; returned (a request's
    callback will relate to it)."""
    renderer = CHANNELS[channel]
    name = renderer.delivered_as(event, interface)
    message_id = renderer.new_message_id(sender_oid)
    store.emit(s, event, sender_role=sender_role, recipient=recipient, interface=interface, channel=channel,
               message_id=message_id, contract=name.contract, operation=name.operation, operation_id=operation_id)
    return message_id


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
    return etree.tostring(CHANNELS[SOAP_V3].body(from_json(row.event_type, row.payload), row.interface,
                                                 row.message_id))


# -- the cores' sinks --------------------------------------------------------------------------------------------


class OutboxSink:
    """What the SM-SR owes, as events in the outbox (see the module doc): smsr_core.platform's MessageSink and
    smsr_core.handover's HandoverSink."""

    def __init__(self, smsr_oid: str, doorbell: Doorbell | None = None, es7_address: str | None = None) -> None:
        self.smsr_oid = smsr_oid
        self.doorbell = doorbell or Silent()  # the delivery loop's: rung once the event is committed
        self.es7_address = es7_address  # this SM-SR's ES7 endpoint: where a peer's callbacks come (wsa:ReplyTo)

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


    # -- SM-SR change (smsr_core.handover) ----------------------------------------------------------------------

    def peer_request(self, s: Session, function: str, peer_oid: str, eid: str, *, validity: int | None,
                     fields: tuple[tuple[str, str], ...] = (), eis: v.Eis | None = None) -> str:
        if not self.es7_address:
            raise RenderError("this SM-SR has no public ES7 address: a peer could not answer")
        event = PeerRequested(function=function, eid=eid, reply_to=self.es7_address, requested_at=_utcnow(),
                              validity_period=validity, fields=tuple(fields), eis=eis)
        message_id = enqueue(s, event, sender_role="smsr", sender_oid=self.smsr_oid, recipient=peer_oid,
                             interface="ES7")
        due_now(s, self.doorbell)
        return message_id

    def peer_callback(self, s: Session, peer_oid: str, peer: dict, status: Status, failure: FunctionFailed | None,
                      results: tuple[tuple[str, str], ...]) -> None:
        """The callback of a peer's ES7 request (``peer``: its function, MessageID, ReplyTo, when it came)."""
        event = OperationFinished(
            interface="ES7", function=peer["function"], requester_id=peer_oid, message_id=peer["message_id"],
            reply_to=peer["reply_to"], accepted_at=datetime.fromisoformat(peer["received_at"]),
            finished_at=_utcnow(), outcome=Outcome.of(status, failure), results=tuple(results))
        enqueue(s, event, sender_role="smsr", sender_oid=self.smsr_oid, recipient=peer_oid, interface="ES7")
        due_now(s, self.doorbell)

    def prepared(self, s: Session, row, status: Status, failure: FunctionFailed | None) -> None:
        """ES4-PrepareSMSRChange's callback to the MNO."""
        event = OperationFinished(
            interface="ES4", function="PrepareSMSRChange", requester_id=row.requester_id, message_id=row.message_id,
            reply_to=row.reply_to, accepted_at=row.accepted_at, finished_at=_utcnow(), outcome=Outcome.of(status, failure))
        enqueue(s, event, sender_role="smsr", sender_oid=self.smsr_oid, recipient=row.requester_id, interface="ES4")
        due_now(s, self.doorbell)

    def handed_over(self, s: Session, row, status: Status, failure: FunctionFailed | None) -> None:
        """ES7-HandoverEUICC's callback to the current SM-SR."""
        event = OperationFinished(
            interface="ES7", function="HandoverEUICC", requester_id=row.current_smsr_id,
            message_id=row.handover_message_id, reply_to=row.handover_reply_to,
            accepted_at=row.handover_received_at or _utcnow(), finished_at=_utcnow(), outcome=Outcome.of(status, failure))
        enqueue(s, event, sender_role="smsr", sender_oid=self.smsr_oid, recipient=row.current_smsr_id, interface="ES7")
        due_now(s, self.doorbell)

    def smsr_changed(self, s: Session, eis: v.Eis, when: datetime) -> None:
        """To each MNO with a profile on the eUICC (ES4), and to each SM-DP that installed one, per MNO (ES3): the EIS
        each may see."""
        mnos = sorted({p.mno_id for p in eis.profiles})
        smdps = sorted({(p.smdp_id, p.mno_id) for p in eis.profiles if p.smdp_id})
        for mno in mnos:
            enqueue(s, SmsrChanged(eid=eis.eid, eis=eis, mno_id=mno, completed_at=when), sender_role="smsr",
                    sender_oid=self.smsr_oid, recipient=mno, interface="ES4")
        for smdp, mno in smdps:
            enqueue(s, SmsrChanged(eid=eis.eid, eis=eis, mno_id=mno, completed_at=when), sender_role="smsr",
                    sender_oid=self.smsr_oid, recipient=smdp, interface="ES3")
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

    def smsr_changed(self, s: Session, mno_id: str, eis: v.Eis, when: datetime) -> None:
        """The SM-SR's change notification, relayed to the MNO (ES2), with the EIS narrowed to its profiles."""
        enqueue(s, SmsrChanged(eid=eis.eid, eis=eis, mno_id=mno_id, completed_at=when), sender_role="smdp",
                sender_oid=self.smdp_oid, recipient=mno_id, interface="ES2")
        due_now(s, self.doorbell)


def deliver_due(db, *, from_address: str, http: HttpClient, now: datetime | None = None,
                lease: float = 60.0, timeout: float = 10.0, limit: int = 50, sender_role: str = "smsr",
                senders: int = 8, entities: EntityCache | None = None) -> int:
    """Send every due outbox row of ``sender_role`` once (its From is ``from_address``); returns how many
    were delivered. The SM-SR's and the SM-DP's workers may share one database: each sends its own.

    One batch: the due rows are leased and read in one statement, rendered, POSTed, and their outcomes recorded in one
    transaction (persistence.outbox: prepared statements, no ORM session). Recipients are looked up in ``entities``
    (the process's EntityCache, which esx.server.EsxRuntime holds). Rows to one address go in the order they were
    written, one after the other (a receiver sees an operation's notifications in the order they happened);
    different addresses are served at the same time, by up to ``senders`` threads, over the HTTP client's kept-alive
    connections."""
    now = now or _utcnow()
    timeout = min(timeout, lease / 2)  # a POST never outlives its lease, so no second worker sends it meanwhile
    rows = store.lease_due(db.engine, sender_role, now, now + timedelta(seconds=lease), limit)
    if not rows:
        return 0
    entities = entities or EntityCache(db.engine)
    targets = {oid: entities.by_oid(oid) for oid in {r.target_oid for r in rows if not r.address}}

    def destination(row: OutboxMessage) -> tuple[str | None, str | None]:
        if row.address:
            return row.address, row.address
        entity = targets.get(row.target_oid)
        if entity is None:
            return None, None
        url = entity.notification_endpoint if row.kind == "notification" and entity.notification_endpoint \
            else entity.endpoint
        if row.interface == "ES7" and row.kind == "request" and url:  # a peer SM-SR's ES7, beside its ES3
            url = wsa.smsr_interface_url(url, "es7")
        return url, (wsa.entity_address(url, row.target_oid) if url else None)

    def rendered(row: OutboxMessage, url: str | None, to: str | None) -> Wire | str:
        """The message, or why it cannot be sent. Run here, before the senders start: lxml's schema (the XSD check of
        every body) is one object per process and not for several threads at once."""
        if url is None:
            return f"no endpoint is registered for {row.target_oid}"
        try:
            return render(row, from_address=from_address, to=to)
        except Exception as exc:  # noqa: BLE001 - our defect, logged and retried like any failed delivery
            return f"not rendered: {exc.__class__.__name__}: {' '.join(str(exc).split())[:300]}"

    def send(url: str | None, wire: Wire) -> str | None:
        """None when delivered, else why not."""
        try:
            response = http.post(url, wire.data, content_type=wire.content_type, timeout=timeout)
        except HttpUnreachable as exc:
            return short_error(exc)
        return None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"

    errors: dict[int, str | None] = {}
    by_address: dict[str | None, list[tuple[OutboxMessage, Wire]]] = {}
    for row in rows:
        url, to = destination(row)
        wire = rendered(row, url, to)
        if isinstance(wire, str):
            errors[row.id] = wire
        else:
            by_address.setdefault(url, []).append((row, wire))

    def send_all(url: str | None, queue: list[tuple[OutboxMessage, Wire]]) -> None:
        for row, wire in queue:
            errors[row.id] = send(url, wire)

    if len(by_address) <= 1 or senders <= 1:
        for url, queue in by_address.items():
            send_all(url, queue)
    else:
        with ThreadPoolExecutor(max_workers=min(senders, len(by_address))) as pool:
            for done in [pool.submit(send_all, url, queue) for url, queue in by_address.items()]:
                done.result()

    delivered_ids = [row_id for row_id, error in errors.items() if error is None]
    failed = []
    for row in rows:
        error = errors.get(row.id)
        if error is None:
            continue
        attempts = row.attempts + 1
        delay = backoff(attempts)
        failed.append((row.id, attempts, error[:2000], now + timedelta(seconds=delay)))
        log.warning("outbox %s: %s to %s not delivered (%s); attempt %d, next in %.0f s", row.id, row.operation,
                    row.target_oid, error, attempts, delay)
    store.record_outcomes(db.engine, delivered_ids, failed, _utcnow())
    return len(delivered_ids)


def backoff(attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: 2, 4, 8, ... capped at MAX_BACKOFF."""
    return min(MAX_BACKOFF, 2.0 ** min(attempts, 16))


_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")\]]+")


def short_error(exc: Exception) -> str:
    """One short phrase for a failed POST: the error's kind and its errno text (``ConnectionRefusedError: [Errno 111]
    Connection refused``)."""
    kind = getattr(exc, "kind", exc.__class__.__name__)
    text = str(exc)
    found = _ERRNO.search(text)
    if found:
        return f"{kind}: {found.group(0).strip()}"
    if "timed out" in text.lower():
        return f"{kind}: timed out"
    return kind


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
