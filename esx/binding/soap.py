"""The SOAP 1.2 binding shared by every interface, on top of spyne.

Theory of operation
-------------------
spyne (2.14.0) provides the WSGI transport, dispatch on the body element's QName and SOAP fault
serialisation. Everything that must match the GSMA contract exactly is done here instead, so
spyne stays replaceable (python-stack.md section 4):

1. ``GsmaSoap12.create_in_document`` parses the request with the hardened parser
   (``xmlparse``): no DTD, no entities, no network, a size limit. Bytes we refuse become a SOAP 1.2
   ``Sender`` fault (HTTP 400; 413 for an oversize body).
2. ``decompose_incoming_envelope`` finds the header blocks and the body element; spyne then
   dispatches on the body element's QName (never on the HTTP or WS-A action, which generated
   clients fill inconsistently: sgp02-wire.md section 7).
3. ``deserialize`` does not use spyne's models: it reads WS-Addressing, validates every WS-A
   header block and the body element against our own XSD (``wsdl/xsd``), and hands the handler an
   :class:`Inbound` value.
4. The generated spyne method calls :func:`dispatch`, which authorises the caller, runs the
   interface's handler, maps a :class:`~sgp02.codes.FunctionFailed` to a FAILED
   ``FunctionExecutionStatus`` and appends the call to the audit trail.
5. ``serialize`` writes the response envelope: WS-A headers (From, To, MessageID, Action of the
   WSDL output, RelatesTo = the request's MessageID) and the ``...Response`` body element, which
   is validated against our XSD before it leaves. One-way operations answer ``202 Accepted`` with
   an empty body.

Steps 1-5 are plain functions (``split_envelope``, ``read_inbound``, ``dispatch``, ``response_envelope``). A
well-formed request to a synchronous operation runs them directly (``GsmaWsgiApplication._serve_direct``), without
spyne's per-request contexts and events; spyne answers everything else (faults, WSDL/XSD, one-way operations) with
the same steps, so both give the same bytes.

A schema-invalid request to a synchronous function gets a normal response with Status FAILED
and 1.6/2.1 (2.2 for a missing element) whose Message names the element. Only XML we cannot
parse (or a body element no interface defines) gets a SOAP fault.
"""
from __future__ import annotations

import io
import logging
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, ContextManager, Iterable

from lxml import etree
from spyne import AnyXml, Application, Fault, ServiceBase, const as spyne_const, rpc
from spyne.protocol.soap import Soap12
from spyne.server.wsgi import WsgiApplication, WsgiMethodContext

from sgp02 import codes
from sgp02.codes import FunctionFailed, Status, StatusCode

from . import contract, wsa
from .contract import Operation, ServiceContract
from .ns import GSMA, SOAP11, SOAP11_CONTENT_TYPE, SOAP12, SOAP12_CONTENT_TYPE, WSA
from .xmlparse import DEFAULT_MAX_BODY_BYTES, XmlRejected, parse_xml

log = logging.getLogger(__name__)
# spyne logs every Client fault raised in a service method with a traceback (logger spyne.application.client).
# A client's error is one line of ours instead (dispatch, GsmaWsgiApplication.handle_error).
logging.getLogger("spyne.application.client").setLevel(logging.CRITICAL)
# spyne's MethodContext.close runs a full gc.collect() at most once a second, "to have file descriptors
# returned in a timely manner" (its file uploads; we have none). With SQLAlchemy, lxml and zeep loaded that
# collection walks the whole heap: ~120 ms of CPU every second in every process. Python's generational
# collector still runs as usual.
spyne_const.MIN_GC_INTERVAL = float("inf")

_P = "{" + GSMA + "}"
REQUIRED_WSA = ("From", "To", "MessageID", "Action")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Inbound:
    """One validated request, as a handler sees it."""

    operation: Operation
    body: etree._Element
    addressing: wsa.Addressing
    received_at: datetime
    environ: dict
    violation: contract.SchemaViolation | None = None
    caller: Any = None  # persistence.entities.Entity once authorised

    def text(self, local: str) -> str | None:
        el = self.body.find(_P + local)
        return el.text.strip() if el is not None and el.text is not None else None

    def child(self, local: str) -> etree._Element | None:
        return self.body.find(_P + local)

    @property
    def function_call_id(self) -> str | None:
        """The FunctionCallIdentifier; None when absent or blank (a blank one is refused, see ``deserialize``)."""
        return self.text("FunctionCallIdentifier") or None

    @property
    def validity_period(self) -> int | None:
        vp = self.text("ValidityPeriod")
        return int(vp) if vp and vp.isdigit() else None


@dataclass
class Reply:
    """What a synchronous handler returns: the elements that follow FunctionExecutionStatus."""

    children: list[etree._Element] = field(default_factory=list)
    warning: FunctionFailed | None = None
    # Children whose exact text already passed our XSD in a response of the same type (a cached EIS:
    # esx.adapters.eis_reply). The response is validated without them, the rest of it as always (response_envelope).
    checked: tuple[etree._Element, ...] = ()


Handler = Callable[[Any, Inbound], "Reply | list[etree._Element] | None"]


# -- response construction ---------------------------------------------------------------------


def execution_status(parent: etree._Element, status: Status, failure: FunctionFailed | None = None,
                     local: str = "FunctionExecutionStatus") -> etree._Element:
    el = etree.SubElement(parent, _P + local)
    etree.SubElement(el, _P + "Status").text = status.value
    if failure is not None:
        scd = etree.SubElement(el, _P + "StatusCodeData")
        etree.SubElement(scd, _P + "Subject").text = failure.code.subject
        etree.SubElement(scd, _P + "Reason").text = failure.code.reason
        if failure.subject_identifier:
            etree.SubElement(scd, _P + "SubjectIdentifier").text = failure.subject_identifier
        if failure.message:
            etree.SubElement(scd, _P + "Message").text = failure.message
    return el


def read_execution_status(parent: etree._Element) -> tuple[Status, FunctionFailed | None]:
    """The FunctionExecutionStatus under ``parent`` (a response or callback body): the status, and for
    FAILED/EXPIRED the peer's Subject/Reason as a FunctionFailed (the reverse of :func:`execution_status`)."""
    el = parent.find(_P + "FunctionExecutionStatus")
    status = Status.parse(el.findtext(_P + "Status"))
    if status not in (Status.FAILED, Status.EXPIRED):
        return status, None
    scd = el.find(_P + "StatusCodeData")
    if scd is None:
        return status, FunctionFailed(codes.INTERNAL_ERROR, "the peer's status carries no StatusCodeData", status=status)
    return status, FunctionFailed(StatusCode(scd.findtext(_P + "Subject"), scd.findtext(_P + "Reason")),
                                  scd.findtext(_P + "Message"), subject_identifier=scd.findtext(_P + "SubjectIdentifier"),
                                  status=status)


def response_element(element_name: str, started: datetime, status: Status,
                     failure: FunctionFailed | None = None,
                     children: Iterable[etree._Element] = (), *, ended: datetime | None = None) -> etree._Element:
    """A BaseResponseType element: ProcessingStart, ProcessingEnd (``ended``, else now), FunctionExecutionStatus,
    extras."""
    from esx.eis_xml import xml_datetime

    el = etree.Element(element_name, nsmap={"rps": GSMA})
    etree.SubElement(el, _P + "ProcessingStart").text = xml_datetime(started)
    etree.SubElement(el, _P + "ProcessingEnd").text = xml_datetime(ended or utcnow())
    execution_status(el, status, failure)
    for child in children:
        el.append(child)
    return el


def gsma_element(local: str, text: str | None = None) -> etree._Element:
    el = etree.Element(_P + local, nsmap={"rps": GSMA})
    if text is not None:
        el.text = text
    return el


# -- the interface description -----------------------------------------------------------------


@dataclass
class Interface:
    """One served port: its WSDL, who may call it, and the handlers of its operations."""

    wsdl: str  # file name in wsdl/
    own_role: str  # "smsr" | "smdp": whose From address the replies carry
    caller_roles: frozenset[str]
    handlers: dict[str, Handler]

    @property
    def contract(self) -> ServiceContract:
        return contract.load_service(self.wsdl)


class Runtime:
    """What handlers need at run time; the server (esx.server) builds the real one."""

    def caller_for(self, inbound: Inbound) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def own_address(self, role: str) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def own_oid(self, role: str) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def record_call(self, inbound: Inbound, status: Status, failure: FunctionFailed | None) -> None:
        pass

    def request_scope(self) -> ContextManager[Any]:
        """Held around one call's caller lookup, handler and audit record (esx.server: one database connection)."""
        return nullcontext()


# -- dispatch ----------------------------------------------------------------------------------


def dispatch(runtime: Runtime, interface: Interface, inbound: Inbound) -> etree._Element | None:
    """Run one operation and build its response element (None for an accepted one-way call)."""
    return dispatch_checked(runtime, interface, inbound)[0]


def dispatch_checked(runtime: Runtime, interface: Interface,
                     inbound: Inbound) -> tuple[etree._Element | None, tuple[etree._Element, ...]]:
    """:func:`dispatch`, and the children of the response that need no second XSD check (``Reply.checked``)."""
    op = inbound.operation
    started = inbound.received_at
    handler = interface.handlers.get(op.name)
    with runtime.request_scope():
        status, failure, reply = _run_and_record(runtime, interface, inbound, handler)
    return _finish(runtime, inbound, handler, started, status, failure, reply)


def _run_and_record(runtime: Runtime, interface: Interface, inbound: Inbound,
                    handler: Handler | None) -> tuple[Status, FunctionFailed | None, Reply]:
    """Authorise, run the handler, append the call to the audit trail: the outcome."""
    op = inbound.operation
    failure: FunctionFailed | None = None
    reply = Reply()
    try:
        if inbound.violation is not None:
            raise FunctionFailed(inbound.violation.code, inbound.violation.message)
        inbound.caller = runtime.caller_for(inbound)
        if inbound.caller.role not in interface.caller_roles:
            raise FunctionFailed(
                codes.CALLER_NOT_ALLOWED,
                f"an entity with role {inbound.caller.role} may not call {op.name}",
                subject_identifier=inbound.caller.oid,
            )
        if handler is None:
            raise FunctionFailed(codes.FUNCTION_UNSUPPORTED, f"{op.name} is not supported by this release")
        result = handler(runtime, inbound)
        if isinstance(result, Reply):
            reply = result
        elif result is not None:
            reply = Reply(children=list(result))
    except FunctionFailed as exc:
        failure = exc
    except Exception:  # a defect: answer 1.2/4.2, never a traceback
        log.exception("unexpected error in %s", op.name)
        failure = FunctionFailed(codes.INTERNAL_ERROR, "internal error while executing the function")

    if failure is not None:
        status = failure.status
        # One line per refused call (the caller's error or ours); the details are in the call audit.
        log.info("%s from %s: %s %s/%s %s", op.name, inbound.caller.oid if inbound.caller is not None else
                 inbound.addressing.from_entity_id or "?", status.value, failure.code.subject, failure.code.reason,
                 failure.message)
    elif reply.warning is not None:
        status, failure = Status.EXECUTED_WITHWARNING, reply.warning
    else:
        status = Status.EXECUTED_SUCCESS
    if inbound.caller is not None:  # only calls from an identified entity are accepted
        try:
            runtime.record_call(inbound, status, failure)
        except Exception:
            log.exception("could not append %s to the audit trail", op.name)
    return status, failure, reply


def _finish(runtime: Runtime, inbound: Inbound, handler, started: datetime, status: Status, failure: FunctionFailed | None,
            reply: Reply) -> tuple[etree._Element | None, tuple[etree._Element, ...]]:
    op = inbound.operation
    if op.one_way:
        if failure is not None:
            reject = getattr(handler, "reject", None)
            if inbound.caller is not None and reject is not None and inbound.addressing.message_id:
                # Accepted (202): the requester is known, so the failure goes back as the
                # function's callback, like every other outcome of an asynchronous function.
                reject(runtime, inbound, failure)
                return None, ()
            # Nobody to call back (unknown requester), no MessageID a callback could relate to, or a
            # function we do not offer: refused with a fault carrying the status code; nothing accepted.
            raise Fault("Client.FunctionFailed", f"{failure.code.subject}/{failure.code.reason}: {failure.message}")
        return None, ()
    if failure is not None and status is not Status.EXECUTED_WITHWARNING:
        return response_element(op.output_element, started, status, failure), ()
    return response_element(op.output_element, started, status, failure, reply.children), reply.checked


def _blank_identifier(addressing: wsa.Addressing, body: etree._Element) -> contract.SchemaViolation | None:
    """An empty wsa:MessageID or a blank FunctionCallIdentifier passes the schema (xs:anyURI and xs:string
    admit them) but identifies nothing: no replay could be recognised and no callback related to it."""
    if addressing.message_id is not None and not addressing.message_id:
        return contract.SchemaViolation(codes.INVALID_PARAMETER, "wsa:MessageID is empty")
    fci = body.find(_P + "FunctionCallIdentifier")
    if fci is not None and not (fci.text or "").strip():
        return contract.SchemaViolation(codes.INVALID_PARAMETER, "FunctionCallIdentifier is empty")
    return None


class VersionMismatch(Fault):
    """A message in another SOAP envelope version: answered in that version when it is SOAP 1.1 (so a SOAP 1.1
    client can read it, SOAP 1.2 part 1 appendix A), else in SOAP 1.2, with the ``Upgrade`` header block that
    names the SOAP 1.2 envelope as the one supported (part 1 section 5.4.7)."""

    def __init__(self, namespace: str | None) -> None:
        super().__init__("Client.VersionMismatch", "this endpoint speaks SOAP 1.2 only")
        self.soap11 = namespace == SOAP11

    @property
    def content_type(self) -> str:
        return SOAP11_CONTENT_TYPE if self.soap11 else SOAP12_CONTENT_TYPE

    def envelope(self) -> etree._Element:
        env_ns = SOAP11 if self.soap11 else SOAP12
        env = etree.Element(f"{{{env_ns}}}Envelope", nsmap={"env": env_ns})
        header = etree.SubElement(env, f"{{{env_ns}}}Header")
        upgrade = etree.SubElement(header, f"{{{SOAP12}}}Upgrade", nsmap={"upg": SOAP12})
        supported = etree.SubElement(upgrade, f"{{{SOAP12}}}SupportedEnvelope", nsmap={"ns1": SOAP12})
        supported.set("qname", "ns1:Envelope")
        fault = etree.SubElement(etree.SubElement(env, f"{{{env_ns}}}Body"), f"{{{env_ns}}}Fault")
        if self.soap11:
            etree.SubElement(fault, "faultcode").text = "env:VersionMismatch"
            etree.SubElement(fault, "faultstring").text = "Version Mismatch: this endpoint speaks SOAP 1.2"
        else:
            etree.SubElement(etree.SubElement(fault, f"{{{SOAP12}}}Code"), f"{{{SOAP12}}}Value").text = "env:VersionMismatch"
            text = etree.SubElement(etree.SubElement(fault, f"{{{SOAP12}}}Reason"), f"{{{SOAP12}}}Text")
            text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
            text.text = "Version Mismatch: this endpoint speaks SOAP 1.2"
        return env


# -- the request and response documents (no spyne) --------------------------------------------


def split_envelope(root: etree._Element, interface: Interface) -> tuple[list[etree._Element], etree._Element]:
    """The header blocks and the one body element of a SOAP 1.2 envelope for ``interface``; a Fault otherwise."""
    if root.tag != f"{{{SOAP12}}}Envelope":
        if etree.QName(root).localname == "Envelope":
            # Another SOAP version (1.1, or an unknown envelope namespace): the VersionMismatch fault of
            # SOAP 1.2 part 1 section 5.4.7, with the Upgrade header that names the one we support.
            raise VersionMismatch(etree.QName(root).namespace)
        raise Fault("Client.NotSoap12", f"expected a SOAP 1.2 Envelope, got {root.tag}")
    header = root.find(f"{{{SOAP12}}}Header")
    body = root.find(f"{{{SOAP12}}}Body")
    if body is None:
        raise Fault("Client.NoBody", "the envelope has no Body")
    children = [c for c in body if isinstance(c.tag, str)]
    if len(children) != 1:
        raise Fault("Client.BadBody", "the Body must hold exactly one element")
    if children[0].tag not in interface.contract.by_input_element():
        # a function this endpoint's contract does not offer (another interface's, or none): 1.6/3.1, as for a
        # function the contract names and we would not serve (_run_and_record)
        unsupported = codes.FUNCTION_UNSUPPORTED
        raise Fault("Client.UnknownOperation", f"{unsupported.subject}/{unsupported.reason}: "
                    f"{etree.QName(children[0]).localname} is not an operation of this endpoint")
    blocks = [c for c in header if isinstance(c.tag, str)] if header is not None else []
    return blocks, children[0]


def read_inbound(interface: Interface, header_blocks: list[etree._Element], body_el: etree._Element,
                 environ: dict) -> Inbound:
    """Validate WS-A and the body against our XSD; the request as a handler sees it (a violation is carried,
    not raised: a synchronous function answers it with a FAILED status)."""
    op = interface.contract.by_input_element()[body_el.tag]
    violation = None
    present = set()
    for block in header_blocks:
        if contract.is_wsa_element(block):
            present.add(etree.QName(block).localname)
            violation = violation or contract.validate(block)
    missing = [h for h in REQUIRED_WSA if h not in present]
    if violation is None and missing:
        violation = contract.SchemaViolation(
            codes.MISSING_PARAMETER, f"missing WS-Addressing header wsa:{missing[0]}"
        )
    contract.normalise_variants(body_el)
    violation = violation or contract.validate(body_el)
    addressing = wsa.read_addressing(header_blocks)
    violation = violation or _blank_identifier(addressing, body_el)
    return Inbound(operation=op, body=body_el, addressing=addressing, received_at=utcnow(), environ=environ,
                   violation=violation)


def response_envelope(runtime: Runtime, interface: Interface, inbound: Inbound, body_el: etree._Element,
                      checked: tuple[etree._Element, ...] = ()) -> etree._Element:
    """The response envelope around ``body_el``, which is validated first: never send what the contract forbids.
    Its ``checked`` children (``Reply.checked``) are left out of the validation: they passed it before."""
    problem = _validate_without(body_el, checked)
    if problem is not None:  # our defect
        log.error("outgoing %s violates the schema: %s", body_el.tag, problem.message)
        raise Fault("Server.InvalidResponse", "the response could not be built")
    env = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"env": SOAP12, "wsa": WSA, "rps": GSMA})
    header = etree.SubElement(env, f"{{{SOAP12}}}Header")
    wsa.write_addressing(
        header,
        wsa.Addressing(
            from_address=runtime.own_address(interface.own_role),
            to=inbound.addressing.from_address or wsa.ANONYMOUS,
            message_id=wsa.new_message_id(runtime.own_oid(interface.own_role)),
            action=inbound.operation.output_action,
            relates_to=inbound.addressing.message_id,
        ),
    )
    etree.SubElement(env, f"{{{SOAP12}}}Body").append(body_el)
    return env


def _validate_without(body_el: etree._Element, checked: tuple[etree._Element, ...]) -> contract.SchemaViolation | None:
    if not checked:
        return contract.validate(body_el)
    places = [(body_el.index(child), child) for child in checked]
    for _, child in places:
        body_el.remove(child)
    try:
        return contract.validate(body_el)
    finally:
        for index, child in places:
            body_el.insert(index, child)


def envelope_bytes(env: etree._Element) -> bytes:
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


# -- the spyne protocol ------------------------------------------------------------------------


class GsmaSoap12(Soap12):
    """SOAP 1.2 with our parser, our validation and our envelope writer (see module doc)."""

    mime_type = SOAP12_CONTENT_TYPE

    def __init__(self, interface: Interface, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.interface = interface
        self.max_body = DEFAULT_MAX_BODY_BYTES

    # 1. bytes -> tree
    def create_in_document(self, ctx, charset=None):
        if ctx.transport.get_request_method() != "POST":
            ctx.transport.resp_code = "405 Method Not Allowed"
            raise Fault("Client.MethodNotAllowed", "SOAP requests must be HTTP POST")
        data = b"".join(ctx.in_string)  # spyne raises its RequestTooLong fault while reading
        try:
            root = parse_xml(data, max_bytes=self.max_body)
        except XmlRejected as exc:
            raise Fault("Client.XmlRejected", str(exc)) from None
        ctx.in_document = root

    # 2. envelope -> header blocks + body element
    def decompose_incoming_envelope(self, ctx, message=Soap12.REQUEST):
        ctx.in_header_doc, ctx.in_body_doc = split_envelope(ctx.in_document, self.interface)
        ctx.method_request_string = ctx.in_body_doc.tag

    # 3. tree -> Inbound
    def deserialize(self, ctx, message):
        self.event_manager.fire_event("before_deserialize", ctx)
        ctx.udc = read_inbound(self.interface, ctx.in_header_doc, ctx.in_body_doc, ctx.transport.req_env)
        ctx.in_object = [ctx.udc]
        self.event_manager.fire_event("after_deserialize", ctx)

    # 5. response element -> envelope
    def serialize(self, ctx, message):
        if isinstance(ctx.out_error, VersionMismatch):
            ctx.out_document = ctx.out_error.envelope()
            ctx.transport.resp_headers["Content-Type"] = ctx.out_error.content_type
            return
        if ctx.out_error is not None:
            return super().serialize(ctx, message)
        self.event_manager.fire_event("before_serialize", ctx)
        body_el = ctx.out_object[0] if ctx.out_object else None
        if body_el is None:  # accepted one-way request
            ctx.transport.resp_code = "202 Accepted"
            ctx.out_document = None
            return
        ctx.out_document = response_envelope(ctx.app.esx_runtime, self.interface, ctx.udc, body_el)
        self.event_manager.fire_event("after_serialize", ctx)

    def create_out_string(self, ctx, charset=None):
        if ctx.out_document is None:
            ctx.out_string = [b""]
            return
        ctx.out_string = [envelope_bytes(ctx.out_document)]

    def fault_to_http_response_code(self, fault):
        if isinstance(fault, VersionMismatch):
            # Both SOAP HTTP bindings answer a VersionMismatch fault with 500 (SOAP 1.1 section 6.2,
            # SOAP 1.2 part 2 table 20); a SOAP 1.1 client reads a fault only from a 500.
            return "500 Internal Server Error"
        code = fault.faultcode or ""
        if code.endswith("RequestTooLong"):
            return "413 Request Entity Too Large"
        if code.startswith("Client"):
            return "400 Bad Request"
        return "500 Internal Server Error"


# -- the WSGI application ----------------------------------------------------------------------


class GsmaWsgiApplication(WsgiApplication):
    """spyne's WSGI app, serving our hand-written WSDL/XSD instead of a generated one."""

    def __init__(self, app: Application, interface: Interface, max_body: int) -> None:
        super().__init__(app, max_content_length=max_body)
        self.interface = interface

    def __call__(self, environ, start_response, wsgi_url=None):
        method = environ.get("REQUEST_METHOD", "GET").upper()
        query = environ.get("QUERY_STRING", "")
        if method == "GET":
            return self._serve_contract(environ, start_response, query)
        try:
            if method == "POST":
                answered = self._serve_direct(environ, start_response)
                if answered is not None:
                    return answered
            return super().__call__(environ, start_response, wsgi_url)
        except Exception:  # last resort: a Receiver fault, never an HTML 500 page
            log.exception("unhandled error serving %s", environ.get("PATH_INFO"))
            body = fault_bytes("env:Receiver", "internal error")
            start_response("500 Internal Server Error", [("Content-Type", SOAP12_CONTENT_TYPE), ("Content-Length", str(len(body)))])
            return [body]

    def _serve_direct(self, environ, start_response) -> list[bytes] | None:
        """A well-formed request, without spyne's per-request machinery.

        spyne would build a method context, an in and an out protocol context, fire a dozen events and look the
        method up, only to call :func:`dispatch` and our ``serialize``: here the same functions run directly. A
        one-way request accepted is ``202 Accepted`` with an empty body, as spyne answers it; one refused with nobody
        to call back (a fault raised after the handler ran) is answered by spyne's own error handling
        (:meth:`_fault`). Everything else returns None before anything happened, and spyne answers it as before (the
        body read here is handed back to it): a body without a length or over the limit, XML we refuse, an envelope
        we refuse. So the bytes on the wire, faults included, are those of the spyne path
        (tests/esx/test_direct_path.py compares them)."""
        length = environ.get("CONTENT_LENGTH")
        if not length or not length.isdigit() or int(length) > self.max_content_length:
            return None
        data = environ["wsgi.input"].read(int(length))
        environ["wsgi.input"] = io.BytesIO(data)  # for spyne, if it answers after all
        try:
            root = parse_xml(data, max_bytes=self.max_content_length)
            header_blocks, body_el = split_envelope(root, self.interface)
        except (XmlRejected, Fault):
            return None
        inbound = read_inbound(self.interface, header_blocks, body_el, environ)
        runtime: Runtime = self.app.esx_runtime
        try:
            element, checked = dispatch_checked(runtime, self.interface, inbound)
            if element is None:  # a one-way request accepted (its outcome goes by callback): as spyne answers it
                start_response("202 Accepted", [("Content-Length", "0"), ("Content-Type", SOAP12_CONTENT_TYPE)])
                return [b""]
            out = envelope_bytes(response_envelope(runtime, self.interface, inbound, element, checked))
        except Fault as fault:  # Server.InvalidResponse; a one-way request refused with nobody to call back
            return self._fault(environ, start_response, fault, inbound)
        except Exception:  # as spyne answers an exception escaping a service method
            log.exception("unexpected error serving %s", inbound.operation.name)
            return self._fault(environ, start_response, Fault("Server", "Internal Error"), inbound)
        start_response("200 OK", [("Content-Type", SOAP12_CONTENT_TYPE), ("Content-Length", str(len(out)))])
        return [out]

    def _fault(self, environ, start_response, fault: Fault, inbound: Inbound) -> list[bytes]:
        """``fault`` as spyne writes it (its context and protocol, our ``serialize``)."""
        ctx = WsgiMethodContext(self, environ, self.app.out_protocol.mime_type)
        ctx.udc = inbound
        ctx.out_error = fault
        return self.handle_error(ctx, [], fault, start_response)

    def handle_error(self, p_ctx, others, error, start_response):
        # Faults (unparseable XML, unknown operation, refused one-way calls, our own defects): one line each.
        log.info("%s %s: fault %s: %s", p_ctx.transport.req_env.get("PATH_INFO", ""),
                 getattr(p_ctx.udc, "operation", None) and p_ctx.udc.operation.name or "-", error.faultcode,
                 _one_line(error.faultstring))
        return super().handle_error(p_ctx, others, error, start_response)

    def _serve_contract(self, environ, start_response, query):
        from .wsdl_server import render_contract_file

        base = _request_base_url(environ)
        try:
            body = render_contract_file(self.interface.wsdl, query, base)
        except FileNotFoundError:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: ask for ?wsdl"]
        start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]


def _one_line(text, limit: int = 300) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[:limit] + "..."


def _request_base_url(environ) -> str:
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
    return f"{scheme}://{host}{environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}"


def fault_bytes(code: str, reason: str) -> bytes:
    env = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"env": SOAP12})
    fault = etree.SubElement(etree.SubElement(env, f"{{{SOAP12}}}Body"), f"{{{SOAP12}}}Fault")
    etree.SubElement(etree.SubElement(fault, f"{{{SOAP12}}}Code"), f"{{{SOAP12}}}Value").text = code
    text = etree.SubElement(etree.SubElement(fault, f"{{{SOAP12}}}Reason"), f"{{{SOAP12}}}Text")
    text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
    text.text = reason
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def _python_name(op_name: str) -> str:
    return op_name.replace("-", "_").lower()


def build_application(interface: Interface, runtime: Runtime, *, max_body: int = DEFAULT_MAX_BODY_BYTES) -> GsmaWsgiApplication:
    """A spyne application for ``interface``: one bare method per WSDL operation."""
    members: dict[str, Any] = {}
    def make_method():
        def method(ctx, request):
            return dispatch(ctx.app.esx_runtime, interface, ctx.udc)
        return method

    for op in interface.contract.operations.values():
        method = make_method()
        method.__name__ = _python_name(op.name)
        kwargs: dict[str, Any] = dict(_body_style="bare", _in_message_name=etree.QName(op.input_element).localname)
        if op.one_way:
            kwargs["_is_async"] = True
        else:
            kwargs["_returns"] = AnyXml
        members[method.__name__] = rpc(AnyXml, **kwargs)(method)
    service = type(interface.contract.service_name, (ServiceBase,), members)
    protocol = GsmaSoap12(interface)
    protocol.max_body = max_body
    app = Application([service], tns=GSMA, name=interface.contract.service_name,
                      in_protocol=protocol, out_protocol=GsmaSoap12(interface))
    app.esx_runtime = runtime
    return GsmaWsgiApplication(app, interface, max_body)
