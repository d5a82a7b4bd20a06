"""WS-Addressing 1.0 as SGP.02 uses it (sgp02-wire.md section 2).

Value formats (the convention seen on the wire; [M] whether the spec's annex makes it normative):
- ``wsa:From/wsa:Address`` = ``http://host:port?EntityId=<sender OID>&EntityName=<name>``
- ``wsa:To`` = ``http://host:port?EntityId=<receiver OID>``, mustUnderstand
- ``wsa:MessageID`` = ``//<sender OID>/urn:uuid:<uuid>?TransactionId=urn:uuid:<uuid>&MessageDate=<time>``
- ``wsa:Action`` carries mustUnderstand.

Clients generated from the GSMA WSDL (zeep) send a plain ``urn:uuid:`` MessageID: both forms are
accepted on input, the GSMA form is emitted.
"""
from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlencode, urlsplit

from lxml import etree

from .ns import SOAP12, WSA

ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"


@dataclass(frozen=True)
class Addressing:
    """The WS-Addressing headers of one message."""

    to: str | None = None
    from_address: str | None = None
    message_id: str | None = None
    action: str | None = None
    reply_to: str | None = None
    relates_to: str | None = None

    @property
    def from_entity_id(self) -> str | None:
        return entity_id_of(self.from_address)

    @property
    def reply_address(self) -> str | None:
        """Where an asynchronous result goes, when the requester named a real address."""
        if self.reply_to and self.reply_to != ANONYMOUS:
            return self.reply_to
        return None


def entity_id_of(address: str | None) -> str | None:
    """The ``EntityId`` query parameter of a WS-A address, if any."""
    if not address:
        return None
    return _entity_id_of(address)


@functools.lru_cache(maxsize=1024)  # a pure function of the text; peers send the same few From addresses
def _entity_id_of(address: str) -> str | None:
    query = urlsplit(address.strip()).query
    values = parse_qs(query).get("EntityId")
    return values[0] if values else None


def entity_address(base_url: str, entity_id: str, entity_name: str | None = None) -> str:
    params = {"EntityId": entity_id}
    if entity_name:
        params["EntityName"] = entity_name
    return f"{base_url}?{urlencode(params)}"


def new_message_id(sender_oid: str, *, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"//{sender_oid}/urn:uuid:{uuid.uuid4()}"
        f"?TransactionId=urn:uuid:{uuid.uuid4()}&MessageDate={stamp}"
    )


def read_addressing(header_blocks: list[etree._Element] | None) -> Addressing:
    values: dict[str, str | None] = {}
    for block in header_blocks or ():
        if not isinstance(block.tag, str) or not block.tag.startswith("{" + WSA + "}"):
            continue
        local = etree.QName(block).localname
        if local in ("From", "ReplyTo"):
            address = block.find(f"{{{WSA}}}Address")
            values[local] = (address.text or "").strip() if address is not None else None
        elif local in ("To", "MessageID", "Action", "RelatesTo"):
            values[local] = (block.text or "").strip()
    return Addressing(
        to=values.get("To"),
        from_address=values.get("From"),
        message_id=values.get("MessageID"),
        action=values.get("Action"),
        reply_to=values.get("ReplyTo"),
        relates_to=values.get("RelatesTo"),
    )


def write_addressing(header: etree._Element, addressing: Addressing) -> None:
    """Append the WS-A blocks of ``addressing`` to a SOAP 1.2 Header element."""
    must = f"{{{SOAP12}}}mustUnderstand"
    if addressing.from_address:
        from_el = etree.SubElement(header, f"{{{WSA}}}From")
        etree.SubElement(from_el, f"{{{WSA}}}Address").text = addressing.from_address
    if addressing.to:
        to = etree.SubElement(header, f"{{{WSA}}}To")
        to.set(must, "true")
        to.text = addressing.to
    if addressing.message_id:
        etree.SubElement(header, f"{{{WSA}}}MessageID").text = addressing.message_id
    if addressing.action:
        action = etree.SubElement(header, f"{{{WSA}}}Action")
        action.set(must, "true")
        action.text = addressing.action
    if addressing.relates_to:
        etree.SubElement(header, f"{{{WSA}}}RelatesTo").text = addressing.relates_to
    if addressing.reply_to:
        reply = etree.SubElement(header, f"{{{WSA}}}ReplyTo")
        etree.SubElement(reply, f"{{{WSA}}}Address").text = addressing.reply_to


def smsr_interface_url(endpoint: str, interface: str) -> str:
    """The URL of an SM-SR's ``interface`` (``"es7"``, ``"es4"``, ...) from its entity endpoint.

    An SM-SR entity's endpoint is its ES3 URL (``<public URL>/smsr/es3``: an SM-DP calls it there as it is,
    ``esx.server.EsxRuntime``); the other interfaces are beside it. A bare base URL (an entity added by hand with
    ``--endpoint http://host:port``) is taken as the public URL."""
    base = endpoint.rstrip("/")
    for suffix in ("/smsr/es1", "/smsr/es3", "/smsr/es4", "/smsr/es7"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return f"{base}/smsr/{interface}"
