"""Unit tests of the binding layer's pure parts: codes, WS-A values, schema error classification, parser."""
from __future__ import annotations

import pytest
from lxml import etree

from esx.binding import contract, wsa
from esx.binding.ns import GSMA
from esx.binding.xmlparse import XmlRejected, parse_xml
from sgp02 import codes
from sgp02.codes import Status


@pytest.mark.parametrize("text,expected", [
    ("EXECUTED_SUCCESS", Status.EXECUTED_SUCCESS), ("Executed-Success", Status.EXECUTED_SUCCESS),
    ("Executed-WithWarning", Status.EXECUTED_WITHWARNING), ("EXECUTED_WITHWARNING", Status.EXECUTED_WITHWARNING),
    ("Failed", Status.FAILED), ("EXPIRED", Status.EXPIRED),
])
def test_status_accepts_both_spellings(text, expected):
    assert Status.parse(text) is expected


def test_catalogue_codes_are_the_reference_numbers():
    assert (codes.EID_UNKNOWN.subject, codes.EID_UNKNOWN.reason) == ("8.1.1", "3.9")
    assert (codes.ICCID_OTHER_EUICC.subject, codes.ICCID_OTHER_EUICC.reason) == ("8.2.1", "3.10")
    assert (codes.POL2_INVALID.subject, codes.POL2_INVALID.reason) == ("8.2.3", "2.1")
    assert (codes.EXPIRED_TTL.subject, codes.EXPIRED_TTL.reason) == ("1.6", "5.3")
    assert str(codes.FunctionFailed(codes.CALLER_UNKNOWN, "x")) == "1.1/1.1: x"


def test_entity_id_and_message_id_forms():
    assert wsa.entity_id_of("http://h:1?EntityId=1.2.3&EntityName=A") == "1.2.3"
    assert wsa.entity_id_of("http://h:1/") is None
    assert wsa.entity_address("http://h/smsr", "1.2", "A B") == "http://h/smsr?EntityId=1.2&EntityName=A+B"
    mid = wsa.new_message_id("1.2.3")
    assert mid.startswith("//1.2.3/urn:uuid:") and "?TransactionId=urn:uuid:" in mid and "&MessageDate=" in mid


def test_addressing_round_trip():
    header = etree.Element("{http://www.w3.org/2003/05/soap-envelope}Header")
    sent = wsa.Addressing(to="http://b", from_address="http://a?EntityId=1.2", message_id="urn:uuid:1",
                          action="http://gsma.com/x", relates_to="urn:uuid:0", reply_to="http://a/cb")
    wsa.write_addressing(header, sent)
    got = wsa.read_addressing(list(header))
    assert got == sent and got.from_entity_id == "1.2" and got.reply_address == "http://a/cb"
    for block in header:
        assert contract.validate(block) is None, etree.tostring(block)


def _req(inner: str) -> etree._Element:
    return etree.fromstring(f'<rps:ES4-GetEISRequest xmlns:rps="{GSMA}">{inner}</rps:ES4-GetEISRequest>')


def test_schema_violation_classification():
    missing = contract.validate(_req("<rps:FunctionCallIdentifier>f</rps:FunctionCallIdentifier>"))
    assert missing.code == codes.MISSING_PARAMETER and "Eid" in missing.message
    bad = contract.validate(_req("<rps:FunctionCallIdentifier>f</rps:FunctionCallIdentifier><rps:Eid>zz</rps:Eid>"))
    assert bad.code == codes.INVALID_PARAMETER and "Eid" in bad.message
    first_missing = contract.validate(_req("<rps:Eid>89</rps:Eid>"))
    assert first_missing.code == codes.MISSING_PARAMETER and "FunctionCallIdentifier" in first_missing.message
    assert contract.validate(_req("<rps:FunctionCallIdentifier>f</rps:FunctionCallIdentifier><rps:Eid>89</rps:Eid>")) is None


def test_parser_refuses_dtd_and_oversize():
    with pytest.raises(XmlRejected, match="DOCTYPE"):
        parse_xml(b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>')
    with pytest.raises(XmlRejected, match="exceeds"):
        parse_xml(b"<a>" + b"x" * 100 + b"</a>", max_bytes=50)
    with pytest.raises(XmlRejected, match="well-formed"):
        parse_xml(b"<a>")
    assert parse_xml(b"<a/>").tag == "a"


def test_every_wsdl_operation_has_actions_and_known_elements():
    for name in ("ES1SmSr.wsdl", "ES2SmDp.wsdl", "ES3SmSr.wsdl", "ES4SmSr.wsdl", "ES3SmDp.wsdl"):
        service = contract.load_service(name)
        assert service.operations
        for op in service.operations.values():
            assert op.input_action.startswith("http://gsma.com/ES")
            assert op.one_way == (op.output_element is None)


def test_spelling_variants_are_accepted_on_input():
    body = etree.fromstring(
        f'<r:ES2-GetEISRequest xmlns:r="{GSMA}"><r:FunctionCallIdentifier>f</r:FunctionCallIdentifier>'
        f'<r:Eid>89</r:Eid><r:SmSr-id>1.2</r:SmSr-id></r:ES2-GetEISRequest>')
    assert contract.validate(body) is not None
    contract.normalise_variants(body)
    assert contract.validate(body) is None
    reply = etree.fromstring(
        f'<r:ES4-GetEISResponse xmlns:r="{GSMA}"><r:FunctionExecutionStatus><r:Status>Executed-Success</r:Status>'
        f'</r:FunctionExecutionStatus></r:ES4-GetEISResponse>')
    contract.normalise_variants(reply)
    assert reply.findtext(f"{{{GSMA}}}FunctionExecutionStatus/{{{GSMA}}}Status") == "EXECUTED_SUCCESS"
    assert contract.validate(reply) is None
