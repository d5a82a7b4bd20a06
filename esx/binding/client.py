"""Outgoing SOAP calls: a zeep client built from our WSDL, with GSMA WS-Addressing headers.

zeep builds and sends the request; the reply is read back through the same hardened parser and
schema as incoming requests, and its FunctionExecutionStatus becomes a value or a
:class:`~sgp02.codes.FunctionFailed` carrying the peer's own Subject/Reason.

A failure's message may travel on to whoever asked us (an MNO's ES2 call relayed over ES3): it names the
peer by its OID, never its address; the address goes to our log.
"""
from __future__ import annotations

import logging
import uuid

from lxml import etree
from zeep import Client, Plugin, Settings

from sgp02 import codes
from sgp02.codes import FunctionFailed, PeerUnreachable

from . import contract, wsa
from .http import HttpClient, HttpResponse, HttpUnreachable
from .ns import GSMA, SOAP12, SOAP12_CONTENT_TYPE
from .soap import read_execution_status
from .xmlparse import XmlRejected, parse_xml

log = logging.getLogger(__name__)
_P = "{" + GSMA + "}"


class GsmaAddressing(Plugin):
    """Adds wsa:From (with EntityId), To, MessageID (GSMA form) and Action to each request."""

    def __init__(self, from_address: str, sender_oid: str, to_address: str, actions: dict[str, str]) -> None:
        self.actions = actions
        self.from_address = from_address
        self.sender_oid = sender_oid
        self.to_address = to_address

    def egress(self, envelope, http_headers, operation, binding_options):
        header = envelope.find(f"{{{SOAP12}}}Header")
        if header is None:
            header = etree.Element(f"{{{SOAP12}}}Header")
            envelope.insert(0, header)
        # A local value, not an attribute: one client serves several threads, each message its own MessageID.
        message_id = wsa.new_message_id(self.sender_oid)
        wsa.write_addressing(
            header,
            wsa.Addressing(
                from_address=self.from_address,
                to=self.to_address,
                message_id=message_id,
                action=self.actions[operation.name],
            ),
        )
        return envelope, http_headers


class PeerReply:
    def __init__(self, body: etree._Element) -> None:
        self.body = body

    def child(self, local: str) -> etree._Element | None:
        return self.body.find(_P + local)


class GsmaClient:
    """A client of one peer endpoint for one of our WSDLs."""

    def __init__(self, wsdl_name: str, endpoint: str, *, sender_oid: str, sender_address: str,
                 receiver_oid: str, http: HttpClient | None = None, timeout: float = 30) -> None:
        self.endpoint = endpoint
        self.peer = receiver_oid  # how messages that may reach a caller name the peer (never by its address)
        self.timeout = timeout
        self.http = http or HttpClient()
        actions = {name: op.input_action for name, op in contract.load_service(wsdl_name).operations.items()}
        self.addressing = GsmaAddressing(sender_address, sender_oid, wsa.entity_address(endpoint, receiver_oid), actions)
        # zeep builds the envelopes from our WSDL (read from disk); the HTTP exchange is ours (_send).
        self.client = Client(str(contract.WSDL_DIR / wsdl_name), plugins=[self.addressing],
                             settings=Settings(strict=True))
        binding = next(iter(self.client.wsdl.bindings))
        self.service = self.client.create_service(binding, endpoint)

    def call(self, operation: str, **params) -> PeerReply:
        """Call ``operation`` with zeep-style parameters (dicts for complex elements)."""
        params.setdefault("FunctionCallIdentifier", new_function_call_id())
        envelope = self.client.create_message(self.service, operation, **params)
        return self._post(operation, envelope)

    def call_async(self, operation: str, *, message_id: str, reply_to: str, **params) -> None:
        """A one-way request with our own MessageID (fixed by the caller, so a resend is a replay the peer
        recognises) and ReplyTo. Returns when the peer accepted it (202); a fault or a reply raises."""
        params.setdefault("FunctionCallIdentifier", message_id)
        envelope = self.client.create_message(self.service, operation, **params)
        header = envelope.find(f"{{{SOAP12}}}Header")
        # zeep's own WS-Addressing and our plugin may each have written a MessageID: keep one, ours.
        ids = header.findall(f"{{{wsa.WSA}}}MessageID")
        ids[0].text = message_id
        for extra in ids[1:]:
            header.remove(extra)
        for old in header.findall(f"{{{wsa.WSA}}}ReplyTo"):
            header.remove(old)
        reply = etree.SubElement(header, f"{{{wsa.WSA}}}ReplyTo")
        etree.SubElement(reply, f"{{{wsa.WSA}}}Address").text = reply_to
        response = self._send(envelope)
        if response.status_code == 202:
            return
        if response.status_code >= 500 and not response.content.strip():
            log.warning("%s at %s: HTTP %s", operation, self.endpoint, response.status_code)
            raise PeerUnreachable(f"{self.peer} answered {operation} with HTTP {response.status_code}")
        reason = f"HTTP {response.status_code}"
        try:
            root = parse_xml(response.content)
            text = root.findtext(f".//{{{SOAP12}}}Text")
            reason = text or reason
        except XmlRejected:
            pass
        raise FunctionFailed(codes.INTERNAL_ERROR, f"{operation} was not accepted by {self.peer}: {reason}")

    def call_element(self, operation: str, body: etree._Element) -> PeerReply:
        """Call ``operation`` with a ready-made body element (for values zeep cannot take, e.g. a signed EIS)."""
        envelope = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"env": SOAP12, "rps": GSMA})
        header = etree.SubElement(envelope, f"{{{SOAP12}}}Header")
        etree.SubElement(envelope, f"{{{SOAP12}}}Body").append(body)
        wsa.write_addressing(header, wsa.Addressing(
            from_address=self.addressing.from_address, to=self.addressing.to_address,
            message_id=wsa.new_message_id(self.addressing.sender_oid), action=self.addressing.actions[operation]))
        return self._post(operation, envelope)

    def _send(self, envelope: etree._Element) -> HttpResponse:
        data = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
        try:
            return self.http.post(self.endpoint, data, content_type=SOAP12_CONTENT_TYPE, timeout=self.timeout)
        except HttpUnreachable as exc:
            log.warning("%s not reachable at %s: %s", self.peer, self.endpoint, exc)
            raise PeerUnreachable(f"{self.peer} not reachable ({exc.kind})") from None

    def _post(self, operation: str, envelope: etree._Element) -> PeerReply:
        response = self._send(envelope)
        try:
            root = parse_xml(response.content)
        except XmlRejected as exc:
            log.warning("%s at %s: unreadable reply (HTTP %s): %s", operation, self.endpoint, response.status_code, exc)
            raise FunctionFailed(codes.INTERNAL_ERROR, f"unreadable reply from {self.peer} to {operation}") from None
        body = root.find(f"{{{SOAP12}}}Body")
        element = next((c for c in body if isinstance(c.tag, str)), None) if body is not None else None
        if element is None or element.tag == f"{{{SOAP12}}}Fault":
            reason = element.findtext(f".//{{{SOAP12}}}Text") if element is not None else "empty reply"
            raise FunctionFailed(codes.INTERNAL_ERROR, f"{operation} failed at {self.peer}: {reason}")
        contract.normalise_variants(element)
        problem = contract.validate(element)
        if problem is not None:
            raise FunctionFailed(codes.INTERNAL_ERROR, f"invalid reply to {operation}: {problem.message}")
        _, failure = read_execution_status(element)
        if failure is not None:
            raise failure
        return PeerReply(element)


def new_function_call_id() -> str:
    return str(uuid.uuid4())
