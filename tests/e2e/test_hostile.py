"""Bad input: every request gets a spec-shaped answer, never an HTTP 500 or a traceback."""
from __future__ import annotations

import uuid

import pytest
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


SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"


def soap11_get_eis(instance) -> bytes:
    body = get_eis_body(instance.eids[0]).replace("<rps:ES4-GetEISRequest>", f'<rps:ES4-GetEISRequest xmlns:rps="{GSMA}">')
    return f'<s:Envelope xmlns:s="{SOAP11}"><s:Body>{body}</s:Body></s:Envelope>'.encode()


def test_soap11_envelope_gets_the_version_mismatch_fault_in_soap11(instance):
    response = raw_post(url(instance), soap11_get_eis(instance), content_type="text/xml; charset=utf-8")
    # SOAP 1.2 part 1 appendix A: a SOAP 1.1 message is answered with a SOAP 1.1 VersionMismatch fault and the
    # Upgrade header block; both SOAP HTTP bindings carry a VersionMismatch fault with HTTP 500.
    assert response.status_code == 500
    assert response.headers["Content-Type"].startswith("text/xml")
    env = etree.fromstring(response.content)
    assert env.tag == f"{{{SOAP11}}}Envelope"
    fault = env.find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
    code = fault.find("faultcode")
    prefix, _, local = code.text.partition(":")
    assert (code.nsmap[prefix], local) == (SOAP11, "VersionMismatch")
    supported = env.find(f"{{{SOAP11}}}Header/{{{SOAP12}}}Upgrade/{{{SOAP12}}}SupportedEnvelope")
    prefix, _, local = supported.get("qname").partition(":")
    assert (supported.nsmap[prefix], local) == (SOAP12, "Envelope")


def test_soap11_client_reads_the_version_mismatch_fault(instance, tmp_path):
    """A SOAP 1.1 client (zeep with a SOAP 1.1 binding of ES4-GetEIS) gets a Fault it can read, not a parse error."""
    import zeep
    from zeep.exceptions import Fault

    from esx.binding.contract import XSD_DIR

    wsdl = tmp_path / "es4-soap11.wsdl"
    wsdl.write_text(f"""<?xml version="1.0"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:rps="{GSMA}" targetNamespace="urn:esx:test:soap11">
  <wsdl:types><xs:schema><xs:import namespace="{GSMA}" schemaLocation="{XSD_DIR / 'es4.xsd'}"/></xs:schema></wsdl:types>
  <wsdl:message name="In"><wsdl:part name="parameters" element="rps:ES4-GetEISRequest"/></wsdl:message>
  <wsdl:message name="Out"><wsdl:part name="parameters" element="rps:ES4-GetEISResponse"/></wsdl:message>
  <wsdl:portType name="P"><wsdl:operation name="ES4-GetEIS"><wsdl:input message="tns:In" xmlns:tns="urn:esx:test:soap11"/>
    <wsdl:output message="tns:Out" xmlns:tns="urn:esx:test:soap11"/></wsdl:operation></wsdl:portType>
  <wsdl:binding name="B" type="tns:P" xmlns:tns="urn:esx:test:soap11">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="ES4-GetEIS"><soap:operation soapAction="ES4-GetEIS"/>
      <wsdl:input><soap:body use="literal"/></wsdl:input><wsdl:output><soap:body use="literal"/></wsdl:output>
    </wsdl:operation></wsdl:binding>
  <wsdl:service name="S"><wsdl:port name="Port" binding="tns:B" xmlns:tns="urn:esx:test:soap11">
    <soap:address location="{url(instance)}"/></wsdl:port></wsdl:service>
</wsdl:definitions>""")
    client = zeep.Client(str(wsdl))
    with pytest.raises(Fault) as caught:
        client.service["ES4-GetEIS"](FunctionCallIdentifier="soap11", Eid=instance.eids[0])
    assert caught.value.code.endswith("VersionMismatch")


def test_unknown_envelope_namespace_gets_the_soap12_version_mismatch_fault(instance):
    data = soap11_get_eis(instance).replace(SOAP11.encode(), b"urn:not-soap")
    response = raw_post(url(instance), data)
    assert response.status_code == 500
    code, _ = fault(response)
    assert code == "env:VersionMismatch"


def test_empty_post_is_a_sender_fault(instance):
    response = raw_post(url(instance), b"")
    assert response.status_code == 400
    assert fault(response)[0].endswith("Sender")


def test_a_function_the_contract_does_not_offer_is_refused_not_accepted(instance):
    # Every function of the v3 WSDL set is served (issue 11); a request for one that the endpoint's contract does
    # not offer, here ES4-EnableProfile (the MNO's interface) posted by the SM-DP to the SM-SR's ES3 endpoint, is
    # not accepted: no 202, a Sender fault (never an HTTP 500) carrying 1.6/3.1.
    body = (f"<rps:ES4-EnableProfileRequest><rps:FunctionCallIdentifier>f</rps:FunctionCallIdentifier>"
            f"<rps:Eid>{instance.eids[0]}</rps:Eid><rps:Iccid>{instance.doc['euiccs'][0]['profiles'][1]['iccid']}"
            "</rps:Iccid></rps:ES4-EnableProfileRequest>")
    response = raw_post(f"{instance.smsr_url}/smsr/es3", envelope(
        body, from_oid=instance.doc["smdp_id"], to="http://127.0.0.1/smsr/es3",
        action="http://gsma.com/ES4/PlatformManagement/ES4-EnableProfile"))
    assert response.status_code == 400
    code, text = fault(response)
    assert code.endswith("Sender") and "1.6/3.1" in text and "ES4-EnableProfileRequest" in text


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


# -- identifiers that identify nothing, digits that are not ASCII ---------------------------------


def async_enable_body(instance, fci: str = "f") -> str:
    return (f"<rps:ES4-EnableProfileRequest><rps:FunctionCallIdentifier>{fci}</rps:FunctionCallIdentifier>"
            f"<rps:Eid>{instance.eids[0]}</rps:Eid><rps:Iccid>{instance.doc['euiccs'][0]['profiles'][1]['iccid']}</rps:Iccid>"
            "</rps:ES4-EnableProfileRequest>")


def with_message_id(data: bytes, message_id: str) -> bytes:
    import re

    return re.sub(rb"<wsa:MessageID>[^<]*</wsa:MessageID>", f"<wsa:MessageID>{message_id}</wsa:MessageID>".encode(), data)


@pytest.mark.parametrize("message_id", ["", "   "])
def test_blank_message_id_is_refused_every_time(instance, message_id):
    sync = with_message_id(envelope(get_eis_body(instance.eids[0]), from_oid=instance.mno), message_id)
    for _ in range(2):  # the second one used to be an IntegrityError (HTTP 500)
        reply = parse_reply(raw_post(url(instance), sync), "ES4")
        assert (reply.http_status, reply.status, reply.code) == (200, "FAILED", ("1.6", "2.1"))
        assert "MessageID" in reply.message
    one_way = with_message_id(envelope(async_enable_body(instance), from_oid=instance.mno,
                                       action="http://gsma.com/ES4/PlatformManagement/ES4-EnableProfile"), message_id)
    for _ in range(2):  # nothing to relate a callback to: refused at once, nothing accepted
        response = raw_post(url(instance), one_way)
        assert response.status_code == 400
        code, text = fault(response)
        assert code.endswith("Sender") and text.startswith("1.6/2.1") and "MessageID" in text


def test_blank_function_call_identifier_is_refused(instance):
    reply = parse_reply(raw_post(url(instance), envelope(get_eis_body(instance.eids[0]).replace(">f<", ">  <"),
                                                         from_oid=instance.mno)), "ES4")
    assert (reply.status, reply.code) == ("FAILED", ("1.6", "2.1"))
    assert "FunctionCallIdentifier" in reply.message


def test_msisdn_in_arabic_indic_digits_is_refused(instance):
    iccid = instance.doc["euiccs"][0]["profiles"][1]["iccid"]
    body = (f"<rps:ES4-UpdateSubscriptionAddressRequest><rps:FunctionCallIdentifier>f</rps:FunctionCallIdentifier>"
            f"<rps:Eid>{instance.eids[0]}</rps:Eid><rps:Iccid>{iccid}</rps:Iccid><rps:newSubscriptionAddress>"
            "<rps:Msisdn>\u0664\u0664\u0667\u0667\u0660\u0660\u0669\u0660\u0660\u0661\u0662\u0663</rps:Msisdn>"
            "</rps:newSubscriptionAddress></rps:ES4-UpdateSubscriptionAddressRequest>")
    reply = parse_reply(raw_post(url(instance), envelope(body, from_oid=instance.mno,
                                                         action="http://gsma.com/ES4/ProfileManagement/"
                                                                "ES4-UpdateSubscriptionAddressRequest")), "ES4")
    assert (reply.status, reply.code) == ("FAILED", ("1.6", "2.1"))
    assert "Msisdn" in reply.message


def test_a_client_error_is_one_log_line(instance):
    log_file = instance.data_dir / "smsr.log"
    before = log_file.read_text().splitlines()
    marker = f"ES9-Nothing{uuid.uuid4().hex[:8]}"
    raw_post(url(instance), envelope(f"<rps:{marker}/>", from_oid=instance.mno))  # an unknown operation: a fault
    raw_post(url(instance), soap11_get_eis(instance), content_type="text/xml; charset=utf-8")
    import time

    time.sleep(0.5)  # the server writes its log line after the response
    added = log_file.read_text().splitlines()[len(before):]
    assert not [line for line in added if "Traceback" in line or line.startswith(("  File", "spyne"))], added
    assert len([line for line in added if marker in line]) == 1, added
    assert len([line for line in added if "VersionMismatch" in line]) == 1, added
