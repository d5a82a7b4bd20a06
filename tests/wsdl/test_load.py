"""Our WSDLs and schemas load in the tools the project uses (zeep, lxml)."""
import pytest
import zeep
from lxml import etree

from esx.binding import contract

from .conftest import DS, RPS, SOAP12_ENV, V4_WSDL_PAIRS, WSA, WSDL_DIR, WSDL_PAIRS, XSD_DIR

SERVICES = {
    'ES1SmSr.wsdl': ('ES1SmSrService', 'SmSrES1Port'),
    'ES2SmDp.wsdl': ('ES2SmDpService', 'SmDpES2Port'),
    'ES2Mno.wsdl': ('ES2MnoService', 'MnoES2Port'),
    'ES3SmSr.wsdl': ('ES3SmSrService', 'SmSrES3Port'),
    'ES3SmDp.wsdl': ('ES3SmDpService', 'SmDpES3Port'),
    'ES4SmSr.wsdl': ('ES4SmSrService', 'SmSrES4Port'),
    'ES4Mno.wsdl': ('ES4MnoService', 'MnoES4Port'),
    'ES7SmSrProvider.wsdl': ('ES7SmSrProviderService', 'ES7SmSrProviderPort'),
    'ES7SmSrRequester.wsdl': ('ES7SmSrRequesterService', 'ES7SmSrRequesterPort'),
    'ES7SmSr.wsdl': ('ES7SmSrService', 'ES7SmSrPort'),
}


def test_every_wsdl_is_listed():
    assert not set(WSDL_PAIRS) & set(V4_WSDL_PAIRS)
    assert sorted(p.name for p in WSDL_DIR.glob('*.wsdl')) == sorted({**WSDL_PAIRS, **V4_WSDL_PAIRS})
    assert sorted(SERVICES) == sorted({**WSDL_PAIRS, **V4_WSDL_PAIRS})


@pytest.mark.parametrize('name', sorted(SERVICES))
def test_wsdl_loads_in_zeep(name):
    client = zeep.Client(str(WSDL_DIR / name))
    service, port = SERVICES[name]
    assert list(client.wsdl.services) == [service]
    ports = client.wsdl.services[service].ports
    assert list(ports) == [port]
    binding = ports[port].binding
    assert binding.__class__.__name__ == 'Soap12Binding'
    assert binding._operations, 'no operations in %s' % name
    # every operation resolves its body element and its WS-A header parts
    for op in binding._operations.values():
        assert op.input.body is not None
        assert op.input.signature()
        if op.output is not None:
            assert op.output.signature(as_output=True)


@pytest.mark.parametrize('name', sorted(SERVICES))
def test_server_contract_reads_what_zeep_reads(name):
    """What the server dispatches on (esx.binding.contract) is what a client generated from the same file
    (zeep) sends: service and port, operations, body elements, input Action URIs, one-way or not."""
    ours = contract.load_service(name)
    assert (ours.service_name, ours.port_name) == SERVICES[name]
    service, port = SERVICES[name]
    binding = zeep.Client(str(WSDL_DIR / name)).wsdl.services[service].ports[port].binding
    seen_by_zeep = {
        op_name: (op.input.body.qname.text, op.abstract.wsa_action,
                  op.output.body.qname.text if op.output is not None else None)
        for op_name, op in binding._operations.items()
    }
    assert {op.name: (op.input_element, op.input_action, op.output_element)
            for op in ours.operations.values()} == seen_by_zeep
    assert all(action.startswith('http://gsma.com/') for _, action, _ in seen_by_zeep.values())
    # a dispatch table: one operation per body element
    assert len(ours.by_input_element()) == len(ours.operations)


@pytest.mark.parametrize('name', ['all', 'types', 'base', 'es1', 'es2', 'es3', 'es4', 'es7', 'wsa', 'xmldsig'])
def test_xsd_compiles_in_lxml(name):
    etree.XMLSchema(etree.parse(str(XSD_DIR / ('%s.xsd' % name))))


def test_all_xsd_declares_body_and_header_elements(our_schema):
    """all.xsd has a global element for every body element and every WS-A header block."""
    doc = etree.parse(str(XSD_DIR / 'all.xsd'))
    assert doc.getroot().get('targetNamespace') == RPS
    headers = {
        'To': '<wsa:To xmlns:wsa="%s" xmlns:env="%s" env:mustUnderstand="true">'
              'http://mno.example?EntityId=1.2.3</wsa:To>' % (WSA, SOAP12_ENV),
        'Action': '<wsa:Action xmlns:wsa="%s" xmlns:env="%s" env:mustUnderstand="true">'
                  'http://gsma.com/ES4/PlatformManagement/ES4-EnableProfile</wsa:Action>' % (WSA, SOAP12_ENV),
        'MessageID': '<wsa:MessageID xmlns:wsa="%s">//1.2.3/urn:uuid:0b5e2b1c-6a6b-4b8e-9d55-8a3b7c1d2e3f'
                     '?TransactionId=urn:uuid:1&amp;MessageDate=2024-05-01T10:00:00Z</wsa:MessageID>' % WSA,
        'RelatesTo': '<wsa:RelatesTo xmlns:wsa="%s" RelationshipType="http://www.w3.org/2005/08/addressing/reply">'
                     'urn:uuid:0b5e2b1c-6a6b-4b8e-9d55-8a3b7c1d2e3f</wsa:RelatesTo>' % WSA,
        'From': '<wsa:From xmlns:wsa="%s"><wsa:Address>http://smsr.example:8443?EntityId=1.2.3.4'
                '&amp;EntityName=SR</wsa:Address></wsa:From>' % WSA,
        'ReplyTo': '<wsa:ReplyTo xmlns:wsa="%s"><wsa:Address>https://mno.example/es4cb</wsa:Address>'
                   '<wsa:ReferenceParameters><x:Ref xmlns:x="urn:x">1</x:Ref></wsa:ReferenceParameters>'
                   '</wsa:ReplyTo>' % WSA,
        'FaultTo': '<wsa:FaultTo xmlns:wsa="%s"><wsa:Address>https://mno.example/faults</wsa:Address>'
                   '</wsa:FaultTo>' % WSA,
    }
    for name, text in headers.items():
        el = etree.fromstring(text)
        assert our_schema.validate(el), (name, our_schema.error_log)
    # a header block with an unknown child is rejected (the schema is not lax on WS-A itself)
    bad = etree.fromstring('<wsa:From xmlns:wsa="%s"><wsa:Adress>http://x</wsa:Adress></wsa:From>' % WSA)
    assert not our_schema.validate(bad)


def test_xmldsig_signature_is_a_global_element(our_schema):
    sig = etree.fromstring(
        '<ds:Signature xmlns:ds="%s"><ds:SignedInfo>'
        '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
        '<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"/>'
        '<ds:Reference URI=""><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
        '<ds:DigestValue>AAAA</ds:DigestValue></ds:Reference></ds:SignedInfo>'
        '<ds:SignatureValue>AAAA</ds:SignatureValue></ds:Signature>' % DS)
    assert our_schema.validate(sig), our_schema.error_log
