"""Bad input: every request gets a spec-shaped answer, never an HTTP 500 or a traceback."""
from __future__ import annotations

import uuid

import sqlalchemy as sa
from lxml import etree

from esx.binding.ns import GSMA, SOAP12, WSA

from .clients import CLIENT_KINDS, raw_post
from .conftest import parse_reply


def envelope(body: str, *, from_oid: str | None, action="http://gsma.com/ES4/ProfileManagement/ES4-GetEISRequest",
             to="http://127.0.0.1/smsr/es4", extra_headers: str = "") -> bytes:
    frm = f"<wsa:From><wsa:Address>http://mno.example/?EntityId={from_oid}</wsa:Address></wsa:From>" if from_oid else ""
    return (
        f'<env:Envelope xmlns:env="{SOAP12}" xmlns:wsa="{WSA}" xmlns:rps="{GSMA}"><env:Header>{frm}'
        f"<wsa:To>{to}</wsa:To><wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID>"
        f"<wsa:Action>{action}</wsa:Action>{extra_headers}</env:Header><env:Body>{body}</env:Body></env:Envelope>"
    ).encode()


def get_eis_body(eid: str | None) -> str:
    eid_el = f"<rps:Eid>{eid}</rps:Eid>" if eid is not None else ""
    return f"<rps:ES4-GetEISRequest><rps:FunctionCallIdentifier>f</rps:FunctionCallIdentifier>{eid_el}</rps:ES4-GetEISRequest>"


def fault(response) -> tuple[str, str]:
    env = etree.fromstring(response.content)
    f = env.find(f"{{{SOAP12}}}Body/{{{SOAP12}}}Fault")
    assert f is not None, response.content
    return f.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Value"), f.findtext(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text")


def url(instance):
    return f"{instance.smsr_url}/smsr/es4"


def test_missing_mandatory_element(instance):
    reply = parse_reply(raw_post(url(instance), envelope(get_eis_body(None), from_oid=instance.mno)), "ES4")
    assert reply.http_status == 200
    assert (reply.status, reply.code) == ("FAILED", ("1.6", "2.2"))
    assert "Eid" in reply.message


def test_invalid_element_value(instance):
    reply = parse_reply(raw_post(url(instance), envelope(get_eis_body("XYZ"), from_oid=instance.mno)), "ES4")
    assert (reply.status, reply.code) == ("FAILED", ("1.6", "2.1"))
    assert "Eid" in reply.message


def test_unexpected_element(instance):
    body = get_eis_body(instance.eids[0]).replace("</rps:ES4-GetEISRequest>", "<rps:Bogus/></rps:ES4-GetEISRequest>")
    reply = parse_reply(raw_post(url(instance), envelope(body, from_oid=instance.mno)), "ES4")
    assert (reply.status, reply.code) == ("FAILED", ("1.6", "2.1"))
    assert "Bogus" in reply.message


def test_missing_wsa_from(instance):
    reply = parse_reply(raw_post(url(instance), envelope(get_eis_body(instance.eids[0]), from_oid=None)), "ES4")
    assert (reply.status, reply.code) == ("FAILED", ("1.6", "2.2"))
    assert "From" in reply.message


def test_official_client_without_from_is_refused(instance):
    call = CLIENT_KINDS["official"]("ES4", url(instance), None)
    reply = call("ES4-GetEIS", Eid=instance.eids[0])
    assert (reply.status, reply.code) == ("FAILED", ("1.6", "2.2"))


def test_unparseable_xml_is_a_sender_fault(instance):
    response = raw_post(url(instance), b"<env:Envelope xmlns:env='x'><unclosed>")
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/soap+xml")
    code, text = fault(response)
    assert code.endswith("Sender")
    assert "not well-formed" in text


def test_entity_expansion_is_refused(instance):
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    ) + envelope(get_eis_body("&lol3;"), from_oid=instance.mno)
    response = raw_post(url(instance), bomb)
    assert response.status_code == 400
    code, text = fault(response)
    assert code.endswith("Sender") and "DOCTYPE" in text


def test_external_entity_is_refused(instance):
    xxe = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + envelope(
        get_eis_body("&e;"), from_oid=instance.mno)
    response = raw_post(url(instance), xxe)
    assert response.status_code == 400
    assert b"root:" not in response.content


def test_oversize_body_is_refused(instance):
    padding = "<!--" + "x" * (1024 * 1024 + 10) + "-->"
    response = raw_post(url(instance), envelope(get_eis_body(instance.eids[0]), from_oid=instance.mno) + padding.encode())
    assert response.status_code == 413
    code, _ = fault(response)
    assert code.endswith("Sender")


def test_unknown_body_element_is_a_sender_fault(instance):
    response = raw_post(url(instance), envelope("<rps:ES9-Nothing/>", from_oid=instance.mno))
    assert response.status_code == 400
    code, text = fault(response)
    assert code.endswith("Sender") and "ES9-Nothing" in text


def test_soap11_envelope_is_a_sender_fault(instance):
    body = get_eis_body(instance.eids[0]).replace("<rps:ES4-GetEISRequest>", f'<rps:ES4-GetEISRequest xmlns:rps="{GSMA}">')
    soap11 = f'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>{body}</s:Body></s:Envelope>'
    response = raw_post(url(instance), soap11.encode(), content_type="text/xml; charset=utf-8")
    assert response.status_code == 400
    assert fault(response)[0].endswith("Sender")


def test_empty_post_is_a_sender_fault(instance):
    response = raw_post(url(instance), b"")
    assert response.status_code == 400
    assert fault(response)[0].endswith("Sender")


def test_not_yet_supported_async_function_is_refused_not_accepted(instance):
    # SM-SR change is not offered yet.
    body = (f"<rps:ES4-PrepareSMSRChangeRequest><rps:FunctionCallIdentifier>f</rps:FunctionCallIdentifier>"
            f"<rps:Eid>{instance.eids[0]}</rps:Eid><rps:CurrentSMSRid>1.2.3</rps:CurrentSMSRid></rps:ES4-PrepareSMSRChangeRequest>")
    response = raw_post(url(instance), envelope(body, from_oid=instance.mno,
                                                action="http://gsma.com/ES4/eUICCManagement/ES4-PrepareSMSRChange"))
    # Nothing is accepted: no 202, a Sender fault (never an HTTP 500) carrying 1.6/3.1.
    assert response.status_code == 400
    code, text = fault(response)
    assert code.endswith("Sender") and "1.6/3.1" in text


def test_every_accepted_call_is_in_the_audit_trail(instance):
    call = CLIENT_KINDS["official"]("ES4", url(instance), instance.mno)
    ok = call("ES4-GetEIS", Eid=instance.eids[0])
    bad = call("ES4-GetEIS", Eid="89049032000000000000000000999999")
    assert ok.status == "EXECUTED_SUCCESS" and bad.status == "FAILED"
    engine = sa.create_engine(instance.database_url)
    with engine.connect() as c:
        rows = c.execute(sa.text(
            "select function, requester_id, status, subject, reason, eid from call_audit where message_id in (:a, :b)"
        ), {"a": ok.header("RelatesTo"), "b": bad.header("RelatesTo")}).all()
    engine.dispose()
    assert sorted(tuple(r) for r in rows) == sorted([
        ("ES4-GetEIS", instance.mno, "EXECUTED_SUCCESS", None, None, instance.eids[0]),
        ("ES4-GetEIS", instance.mno, "FAILED", "8.1.1", "3.9", "89049032000000000000000000999999"),
    ])
