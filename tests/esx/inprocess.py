"""A whole esx instance served in process: ``esx init``, both roles' SOAP endpoints, no sockets, no workers.

Requests go through the real WSGI application (parser, schema, WS-Addressing, identity from ``wsa:From``,
authorisation, the cores) by way of :class:`esx.binding.wsgi_adapter.WsgiAdapter`. The SM-DP reaches its
co-located SM-SR in process too, as it does under ``esx serve`` (``EsxRuntime.smsr_colocated``).

Nothing is sent over the air and no callback leaves: an asynchronous request's refusal is read from the outbox,
where it is committed with the request (:meth:`InProcess.outcome`).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import requests
from lxml import etree
from sqlalchemy import select

from esx.binding import contract, wsa
from esx.binding.ns import GSMA, SOAP12, WSA
from esx.binding.wsgi_adapter import WsgiAdapter
from esx.demo import (
    EUM_OID,
    build_eis,
    demo_eid,
    demo_iccid,
    init_instance,
    isd_r_domain,
    register_request,
    signed_eis_element,
)
from esx.outbox import soap_body
from esx.server import Config, EsxRuntime, make_wsgi
from keys.pki import DevPki
from persistence.entities import set_mno_smdps, upsert_entity
from persistence.outbox import OutboxMessage
from sgp02 import eis as v

BASE = "http://esx.test"
WSDL_OF = {"/smsr/es1": "ES1SmSr.wsdl", "/smsr/es3": "ES3SmSr.wsdl", "/smsr/es4": "ES4SmSr.wsdl",
           "/smdp/es2": "ES2SmDp.wsdl", "/smdp/es3": "ES3SmDp.wsdl", "/smsr/es7": "ES7SmSrProvider.wsdl"}
_P = f"{{{GSMA}}}"


@dataclass(frozen=True)
class Outcome:
    """What a caller got: ``kind`` is "reply" (synchronous), "callback" (an asynchronous refusal or result already in
    the outbox), "accepted" (202, nothing owed yet) or "fault"; ``code`` is (Subject, Reason) when there is one."""

    kind: str
    status: str | None = None
    code: tuple[str, str] | None = None
    message: str = ""
    body: etree._Element | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "accepted" or self.status == "EXECUTED_SUCCESS"


def status_of(body: etree._Element) -> tuple[str, tuple[str, str] | None, str]:
    st = body.find(_P + "FunctionExecutionStatus")
    scd = st.find(_P + "StatusCodeData")
    code = (scd.findtext(_P + "Subject"), scd.findtext(_P + "Reason")) if scd is not None else None
    return st.findtext(_P + "Status"), code, scd.findtext(_P + "Message") or "" if scd is not None else ""


class InProcess:
    def __init__(self, data_dir: Path, demo: int = 1) -> None:
        self.doc = init_instance(data_dir, demo=demo)
        self.config = Config.load(data_dir)
        self.runtime = EsxRuntime(self.config)
        self.db = self.runtime.db
        self.pki = DevPki.load(self.config.pki_dir)
        self.session = requests.Session()
        self.session.mount(f"{BASE}/", WsgiAdapter(make_wsgi(self.config, "all", self.runtime)))

    def close(self) -> None:
        self.db.dispose()

    # -- parties and eUICCs -------------------------------------------------------------------------------------

    def entity(self, oid: str, role: str, *, smdps: list[str] | None = None, signing_cert: bytes | None = None,
               endpoint: str | None = None) -> str:
        with self.db.session() as s:
            upsert_entity(s, oid=oid, role=role, name=f"test {role} {oid}", signing_cert_pem=signing_cert,
                          endpoint=endpoint)
            if smdps is not None:
                set_mno_smdps(s, oid, smdps)
        return oid

    def register(self, n: int, profiles: tuple[v.ProfileInfo, ...]) -> str:
        """eUICC number ``n`` registered over ES1 by the demo EUM, with ``profiles``."""
        eid = demo_eid(n)
        _, cert = self.pki.issue_ecasd(eid)
        eis = build_eis(eid=eid, eum_id=EUM_OID, smsr_id=self.config.smsr_oid, ecasd_cert=cert, profiles=profiles,
                        isd_r=isd_r_domain({"enc": b"\x01" * 16, "mac": b"\x02" * 16, "dek": b"\x03" * 16}))
        outcome = self.call("/smsr/es1", register_request(signed_eis_element(eis, self.pki.eum_key, self.pki.eum_cert_pem)),
                            EUM_OID)
        assert outcome.status == "EXECUTED_SUCCESS", outcome
        return eid

    @staticmethod
    def profile(n: int, slot: int, mno: str, *, enabled: bool = False, smdp_id: str | None = None) -> v.ProfileInfo:
        from sgp02.identifiers import isd_p_aid

        return v.ProfileInfo(
            iccid=demo_iccid(n, slot), isd_p_aid=isd_p_aid(slot), mno_id=mno, fallback_attribute=enabled,
            subscription_address=v.SubscriptionAddress(imsi=f"00103{n:08d}{slot:02d}", msisdn=f"4477{n:06d}{slot:02d}"),
            state=v.ProfileState.ENABLED if enabled else v.ProfileState.DISABLED, allocated_memory=32_768,
            smdp_id=smdp_id)

    # -- calling ------------------------------------------------------------------------------------------------

    def call(self, path: str, body: etree._Element | str, caller: str | None, *, message_id: str | None = None,
             reply_to: str | None = None, relates_to: str | None = None) -> Outcome:
        """Send ``body`` to ``path`` as entity ``caller``; what it got (see :class:`Outcome`)."""
        if isinstance(body, str):
            body = etree.fromstring(body)
        op = contract.load_service(WSDL_OF[path]).by_input_element()[body.tag]
        message_id = message_id or f"urn:uuid:{uuid.uuid4()}"
        env = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"env": SOAP12, "wsa": WSA, "rps": GSMA})
        header = etree.SubElement(env, f"{{{SOAP12}}}Header")
        wsa.write_addressing(header, wsa.Addressing(
            from_address=wsa.entity_address("http://caller.example/", caller) if caller else "http://caller.example/",
            to=f"{BASE}{path}", message_id=message_id, action=op.input_action, reply_to=reply_to,
            relates_to=relates_to))
        etree.SubElement(env, f"{{{SOAP12}}}Body").append(body)
        response = self.session.post(f"{BASE}{path}", data=etree.tostring(env),
                                     headers={"Content-Type": "application/soap+xml; charset=utf-8"})
        if response.status_code == 202:
            callback = self.callback(message_id)
            if callback is None:
                return Outcome("accepted")
            status, code, message = status_of(callback)
            return Outcome("callback", status, code, message, callback)
        reply = etree.fromstring(response.content)
        element = next(c for c in reply.find(f"{{{SOAP12}}}Body") if isinstance(c.tag, str))
        if element.tag == f"{{{SOAP12}}}Fault":
            text = element.findtext(f".//{{{SOAP12}}}Text") or ""
            subject, _, rest = text.partition("/")
            reason = rest.partition(":")[0]
            return Outcome("fault", None, (subject, reason) if reason else None, text)
        status, code, message = status_of(element)
        return Outcome("reply", status, code, message, element)

    def callback(self, relates_to: str) -> etree._Element | None:
        with self.db.session() as s:
            row = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "callback",
                                                        OutboxMessage.relates_to == relates_to)).first()
            return etree.fromstring(soap_body(row)) if row is not None else None

    def outbox(self, **where) -> list[OutboxMessage]:
        with self.db.session() as s:
            rows = s.scalars(select(OutboxMessage).filter_by(**where).order_by(OutboxMessage.id)).all()
            for r in rows:
                s.expunge(r)
            return rows


def request(name: str, *children: tuple[str, str | etree._Element], fci: str | None = None) -> etree._Element:
    """A body element ``rps:<name>`` with FunctionCallIdentifier and the given (name, text or element) children."""
    el = etree.Element(_P + name, nsmap={"rps": GSMA})
    etree.SubElement(el, _P + "FunctionCallIdentifier").text = fci or str(uuid.uuid4())
    for local, value in children:
        if isinstance(value, etree._Element):
            el.append(value)
        else:
            etree.SubElement(el, _P + local).text = value
    return el


def element(local: str, *children: tuple[str, str]) -> etree._Element:
    el = etree.Element(_P + local, nsmap={"rps": GSMA})
    for name, text in children:
        etree.SubElement(el, _P + name).text = text
    return el


def pol2(*rules: tuple[str, str]) -> etree._Element:
    el = etree.Element(_P + "pol2", nsmap={"rps": GSMA})
    for action, qualification in rules:
        rule = etree.SubElement(el, _P + "Rule")
        for name, text in (("Subject", "PROFILE"), ("Action", action), ("Qualification", qualification)):
            etree.SubElement(rule, _P + name).text = text
    return el
