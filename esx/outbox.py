"""The transactional outbox: callbacks and notifications, written with the state change, sent later.

:class:`OutboxSink` is the SM-SR core's :class:`~smsr_core.platform.MessageSink`: it renders the
SOAP body (validated against our XSD) and adds an :class:`OutboxMessage` row to the caller's
session, so the message commits or rolls back with the state change that owes it.

:func:`deliver_due` sends what is due: a POST of a SOAP 1.2 envelope with WS-Addressing From, To,
MessageID (fixed when the row was written, so a redelivery after a crash carries the same
MessageID and the receiver can discard it), Action and, for callbacks, RelatesTo = the request's
MessageID. Any 2xx answer is a delivery; anything else is retried with a growing delay (doubling from 2 s,
capped at :data:`MAX_BACKOFF`) and one short log line per failed attempt; nothing is ever dropped. Rows are
leased, so several workers never send the same row at once. ``esx outbox show`` lists what waits and why;
``esx outbox retry`` sends it again now (after a receiver is fixed).
"""
from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone

import requests
from lxml import etree
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from esx.binding import contract, wsa
from esx.binding.ns import GSMA, SOAP12, SOAP12_CONTENT_TYPE, WSA
from esx.binding.soap import gsma_element, response_element
from esx.eis_xml import render_eis, xml_datetime
from persistence.entities import get_entity
from persistence.outbox import OutboxMessage
from sgp02 import eis as v
from sgp02.codes import FunctionFailed, Status
from smsr_core.models import ProfileRow
from smsr_core.ops_models import Operation

log = logging.getLogger(__name__)

# The receiver's WSDL per requesting interface, and the ES3 spelling of DeleteProfile.
CALLBACK_WSDL = {"ES4": "ES4Mno.wsdl", "ES3": "ES3SmDp.wsdl"}
ES3_NAMES = {"DeleteProfile": "DeleteISDP"}
MAX_BACKOFF = 600.0  # a receiver that stays away costs six lines an hour per message, and gets it within 10 minutes


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def add_message(s: Session, *, sender_role: str, sender_oid: str, kind: str, wsdl: str, operation: str,
                target_oid: str, body: etree._Element, address: str | None = None, relates_to: str | None = None,
                operation_id: int | None = None) -> None:
    """One outbox row, in the caller's session; the body must satisfy our schema."""
    problem = contract.validate(body)
    if problem is not None:  # our defect: never queue what the contract forbids
        raise ValueError(f"{operation} body violates the schema: {problem.message}")
    if operation not in contract.load_service(wsdl).operations:
        raise ValueError(f"{wsdl} has no operation {operation}")
    now = _utcnow()
    s.add(OutboxMessage(
        created_at=now, kind=kind, wsdl=wsdl, operation=operation, sender_role=sender_role, target_oid=target_oid,
        address=address, message_id=wsa.new_message_id(sender_oid), relates_to=relates_to,
        body=etree.tostring(body), operation_id=operation_id, attempts=0, next_attempt_at=now,
    ))


class OutboxSink:
    """Renders what the SM-SR owes into outbox rows (see the module doc)."""

    def __init__(self, smsr_oid: str) -> None:
        self.smsr_oid = smsr_oid

    def _add(self, s: Session, **kwargs) -> None:
        add_message(s, sender_role="smsr", sender_oid=self.smsr_oid, **kwargs)

    def callback(self, s: Session, op: Operation, status: Status, failure: FunctionFailed | None,
                 eis: v.Eis | None, euicc_response: str | None) -> None:
        iface = op.interface
        name = ES3_NAMES.get(op.function, op.function) if iface == "ES3" else op.function
        children = []
        succeeded = status is Status.EXECUTED_SUCCESS or status is Status.EXECUTED_WITHWARNING
        if name == "CreateISDP":
            # Mandatory in the v3 schema, even on failure; v4 makes it optional and recommends
            # '0000000000' when there is no ISD-P to name (sgp02-wire.md 3, ES3).
            children.append(gsma_element("Isd-p-aid", op.params.get("isd_p_aid") if succeeded else "0000000000"))
        if succeeded:
            if eis is not None:
                holder = etree.Element("holder")
                children.append(render_eis(holder, eis))
        if euicc_response and name in ("EnableProfile", "DisableProfile", "DeleteProfile", "DeleteISDP",
                                       "SetFallBackAttribute", "UpdateConnectivityParameters", "SendData", "CreateISDP"):
            children.append(gsma_element("EuiccResponseData", euicc_response))
        body = response_element(f"{{{GSMA}}}{iface}-{name}Response", op.accepted_at, status, failure, children)
        self._add(s, kind="callback", wsdl=CALLBACK_WSDL[iface], operation=f"{iface}-{name}Callback",
                  target_oid=op.requester_id, body=body, address=op.reply_to, relates_to=op.message_id,
                  operation_id=op.id)

    def profile_notification(self, s: Session, change: str, eid: str, profile: ProfileRow, when: datetime) -> None:
        """ES4-HandleProfile<change>Notification to the MNO; the ES3 one to the SM-DP that installed it."""
        es4 = gsma_element(f"ES4-HandleProfile{change}Notification")
        for local, text in (("Eid", eid), ("Iccid", profile.iccid), ("CompletionTimestamp", xml_datetime(when))):
            etree.SubElement(es4, f"{{{GSMA}}}{local}").text = text
        self._add(s, kind="notification", wsdl="ES4Mno.wsdl", operation=f"ES4-HandleProfile{change}Notification",
                  target_oid=profile.mno_id, body=es4)
        if profile.smdp_id:
            es3 = gsma_element(f"ES3-HandleProfile{change}Notification")
            for local, text in (("Eid", eid), ("Iccid", profile.iccid), ("Mno-id", profile.mno_id),
                                ("CompletionTimestamp", xml_datetime(when))):
                etree.SubElement(es3, f"{{{GSMA}}}{local}").text = text
            self._add(s, kind="notification", wsdl="ES3SmDp.wsdl", operation=f"ES3-HandleProfile{change}Notification",
                      target_oid=profile.smdp_id, body=es3)


class SmdpOutboxSink:
    """What the SM-DP owes MNOs (smdp_core.download.Es2Sink): ES2 callbacks and relayed notifications."""

    def __init__(self, smdp_oid: str) -> None:
        self.smdp_oid = smdp_oid

    def callback(self, s: Session, op, status: Status, failure: FunctionFailed | None) -> None:
        children = []
        if op.function == "DownloadProfile" and op.iccid:
            children.append(gsma_element("Iccid", op.iccid))
        body = response_element(f"{{{GSMA}}}ES2-{op.function}Response", op.accepted_at, status, failure, children)
        add_message(s, sender_role="smdp", sender_oid=self.smdp_oid, kind="callback", wsdl="ES2Mno.wsdl",
                    operation=f"ES2-{op.function}Callback", target_oid=op.requester_id, body=body,
                    address=op.reply_to, relates_to=op.message_id)

    def notification(self, s: Session, change: str, mno_id: str, eid: str, iccid: str, when: datetime) -> None:
        body = gsma_element(f"ES2-HandleProfile{change}Notification")
        for local, text in (("Eid", eid), ("Iccid", iccid), ("CompletionTimestamp", xml_datetime(when))):
            etree.SubElement(body, f"{{{GSMA}}}{local}").text = text
        add_message(s, sender_role="smdp", sender_oid=self.smdp_oid, kind="notification", wsdl="ES2Mno.wsdl",
                    operation=f"ES2-HandleProfile{change}Notification", target_oid=mno_id, body=body)


def _envelope(row: OutboxMessage, from_address: str, to: str) -> bytes:
    op = contract.load_service(row.wsdl).operations[row.operation]
    env = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"env": SOAP12, "wsa": WSA, "rps": GSMA})
    header = etree.SubElement(env, f"{{{SOAP12}}}Header")
    wsa.write_addressing(header, wsa.Addressing(from_address=from_address, to=to, message_id=row.message_id,
                                                action=op.input_action, relates_to=row.relates_to))
    etree.SubElement(env, f"{{{SOAP12}}}Body").append(etree.fromstring(row.body))
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def deliver_due(db, *, from_address: str, session: requests.Session, now: datetime | None = None,
                lease: float = 60.0, timeout: float = 10.0, limit: int = 50, sender_role: str = "smsr") -> int:
    """Send every due outbox row of ``sender_role`` once (its From is ``from_address``); returns how many
    were delivered. The SM-SR's and the SM-DP's workers may share one database: each sends its own."""
    now = now or _utcnow()
    timeout = min(timeout, lease / 2)  # a POST never outlives its lease, so no second worker sends it meanwhile
    with db.session() as s:
        ids = list(s.scalars(select(OutboxMessage.id).where(
            OutboxMessage.sender_role == sender_role,
            OutboxMessage.delivered_at.is_(None), OutboxMessage.next_attempt_at <= now,
            or_(OutboxMessage.lease_until.is_(None), OutboxMessage.lease_until < now),
        ).order_by(OutboxMessage.id).limit(limit)))
    delivered = 0
    for row_id in ids:
        with db.session() as s:
            leased = s.execute(update(OutboxMessage).where(
                OutboxMessage.id == row_id, OutboxMessage.delivered_at.is_(None),
                or_(OutboxMessage.lease_until.is_(None), OutboxMessage.lease_until < now),
            ).values(lease_until=now + timedelta(seconds=lease))).rowcount
            if leased != 1:
                continue
            row = s.get(OutboxMessage, row_id)
            s.expunge(row)
            entity = get_entity(s, row.target_oid)
            url = to = None
            if row.address:
                url = to = row.address
            elif entity is not None:
                url = (entity.notification_endpoint if row.kind == "notification" and entity.notification_endpoint
                       else entity.endpoint)
                to = wsa.entity_address(url, row.target_oid) if url else None
        error = None
        if url is None:
            error = f"no endpoint is registered for {row.target_oid}"
        else:
            try:
                response = session.post(url, data=_envelope(row, from_address, to), timeout=timeout,
                                        headers={"Content-Type": SOAP12_CONTENT_TYPE})
                if not 200 <= response.status_code < 300:
                    error = f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                error = short_error(exc)
        with db.session() as s:
            row = s.get(OutboxMessage, row_id)
            row.attempts += 1
            row.lease_until = None
            if error is None:
                row.delivered_at = _utcnow()
                delivered += 1
            else:
                delay = backoff(row.attempts)
                row.last_error = error[:2000]
                row.next_attempt_at = now + timedelta(seconds=delay)
                log.warning("outbox %s: %s to %s not delivered (%s); attempt %d, next in %.0f s", row.id, row.operation,
                            row.target_oid, error, row.attempts, delay)
    return delivered


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
