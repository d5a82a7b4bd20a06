"""Instance documents are judged the same way by our schema and the official one,
and zeep clients built from either WSDL set produce messages the other accepts."""
import uuid

import pytest
import zeep
from lxml import etree

from . import samples
from .conftest import RPS, SOAP12_ENV, WSA, WSDL_DIR


def _errors(schema, doc):
    schema.validate(doc)
    return '\n'.join('%d: %s' % (e.line, e.message) for e in schema.error_log)


@pytest.mark.parametrize('name', sorted(samples.VALID))
def test_valid_sample(name, our_schema, official_schema):
    doc = etree.fromstring(samples.VALID[name])
    assert our_schema.validate(doc), _errors(our_schema, doc)
    assert official_schema.validate(doc), _errors(official_schema, doc)


@pytest.mark.parametrize('name', sorted(samples.INVALID))
def test_invalid_sample(name, our_schema, official_schema):
    doc = etree.fromstring(samples.INVALID[name])
    assert not our_schema.validate(doc), 'esx schema accepted: %s' % name
    assert not official_schema.validate(doc), 'official schema accepted: %s' % name


ARABIC_INDIC = '\u0664\u0664\u0667\u0667\u0660\u0660\u0669\u0660\u0660\u0661\u0662\u0663'  # "447700900123"

# Digits that XSD's \\d admits and ours refuse: non-ASCII decimal digits in identifiers.
NON_ASCII_DIGITS = {
    'MSISDN in Arabic-Indic digits': samples.body(
        'ES4-UpdateSubscriptionAddressRequest',
        samples.REQUEST_HEAD + '<Eid>%s</Eid><Iccid>%s</Iccid>'
        '<newSubscriptionAddress><Msisdn>%s</Msisdn></newSubscriptionAddress>'
        % (samples.EID, samples.ICCID_1, ARABIC_INDIC)),
    'IMSI in fullwidth digits': samples.body(
        'ES4-UpdateSubscriptionAddressRequest',
        samples.REQUEST_HEAD + '<Eid>%s</Eid><Iccid>%s</Iccid>'
        '<newSubscriptionAddress><Imsi>%s</Imsi></newSubscriptionAddress>'
        % (samples.EID, samples.ICCID_1, '\uff10\uff10\uff11\uff10\uff11')),
    'Mno-id OID in Devanagari digits': samples.body(
        'ES3-CreateISDPRequest',
        samples.REQUEST_HEAD + '<Eid>%s</Eid><Iccid>%s</Iccid><Mno-id>1.3.\u0966.1</Mno-id>'
        '<RequiredMemory>1024</RequiredMemory>' % (samples.EID, samples.ICCID_1)),
}


@pytest.mark.parametrize('name', sorted(NON_ASCII_DIGITS))
def test_non_ascii_digits_are_refused_by_ours(name, our_schema, official_schema):
    doc = etree.fromstring(NON_ASCII_DIGITS[name].encode())
    assert not our_schema.validate(doc), 'esx schema accepted: %s' % name
    # The official files write \\d: they accept it, which is why ours differ (wsdl/README.md).
    assert official_schema.validate(doc), _errors(official_schema, doc)
    ascii_doc = etree.fromstring(NON_ASCII_DIGITS[name].translate(
        {ord(c): str(i) for base in (0x660, 0xFF10, 0x966) for i, c in enumerate(map(chr, range(base, base + 10)))}).encode())
    assert our_schema.validate(ascii_doc), _errors(our_schema, ascii_doc)


# ------------------------------------------------------------------ zeep interop

def _client(path):
    return zeep.Client(str(path))


def _headers(name, op):
    """Headers the caller adds; zeep itself adds wsa:Action, wsa:MessageID and wsa:To."""
    headers = {'From': {'Address': 'https://mno.example:8443?EntityId=1.3.6.1.4.1.99999.30&EntityName=MNO'}}
    if name.endswith('Callback'):
        headers['RelatesTo'] = 'urn:uuid:%s' % uuid.uuid4()
    elif op.output is None:
        headers['ReplyTo'] = {'Address': 'https://mno.example:8443/callbacks'}
    return headers


def _body_and_headers(envelope):
    body = envelope.find('{%s}Body' % SOAP12_ENV)
    header = envelope.find('{%s}Header' % SOAP12_ENV)
    return list(body)[0], ([] if header is None else list(header))


CALLS = [
    # (official wsdl, our wsdl, operation, body arguments)
    ('ES4_SMSR.wsdl', 'ES4SmSr.wsdl', 'ES4-EnableProfile',
     dict(FunctionCallIdentifier='fc-1', ValidityPeriod=600, Eid=samples.EID, Iccid=samples.ICCID_1)),
    ('ES4_SMSR.wsdl', 'ES4SmSr.wsdl', 'ES4-AuditEIS',
     dict(FunctionCallIdentifier='fc-2', Eid=samples.EID, Iccid=[samples.ICCID_1, samples.ICCID_2])),
    ('ES4_SMSR.wsdl', 'ES4SmSr.wsdl', 'ES4-UpdatePolicyRules',
     dict(FunctionCallIdentifier='fc-3', Eid=samples.EID, Iccid=samples.ICCID_1,
          pol2={'Rule': [{'Subject': 'PROFILE', 'Action': 'DELETE', 'Qualification': 'Not-Allowed'}]})),
    ('ES2_SMDP.wsdl', 'ES2SmDp.wsdl', 'ES2-DownloadProfile',
     {'FunctionCallIdentifier': 'fc-4', 'Eid': samples.EID, 'SmSr-id': '1.3.6.1.4.1.99999.2',
      'Iccid': samples.ICCID_2, 'EnableProfile': False}),
    ('ES3_SMSR.wsdl', 'ES3SmSr.wsdl', 'ES3-CreateISDP',
     {'FunctionCallIdentifier': 'fc-5', 'Eid': samples.EID, 'Iccid': samples.ICCID_2,
      'Mno-id': '1.3.6.1.4.1.99999.30', 'RequiredMemory': 65536, 'MoreToDo': True}),
    ('ES3_SMSR.wsdl', 'ES3SmSr.wsdl', 'ES3-DeleteISDP',
     dict(FunctionCallIdentifier='fc-6', Eid=samples.EID, Iccid=samples.ICCID_2)),
    ('ES3_SMDP.wsdl', 'ES3SmDp.wsdl', 'ES3-SendDataCallback',
     dict(FunctionExecutionStatus={'Status': 'FAILED', 'StatusCodeData': {'Subject': '8.1', 'Reason': '6.1'}},
          EuiccResponseData='6A88')),
]


def _check_client_message(client, operation, args, judge, our_schema):
    """Build ``operation`` with ``client``: its body is valid for ``judge``, its WS-A header blocks are the ones
    the WSDL declares (zeep adds Action, MessageID and To) and valid for our schema. Returns the body element."""
    op = client.service._binding._operations[operation]
    headers = _headers(operation, op)
    envelope = client.create_message(client.service, operation, _soapheaders=headers,
                                     **(args(client) if callable(args) else args))
    body, header_blocks = _body_and_headers(envelope)
    assert etree.QName(body).namespace == RPS
    assert judge.validate(body), (str(client.wsdl.location), _errors(judge, body))
    names = sorted(etree.QName(b).localname for b in header_blocks)
    assert names == sorted(['Action', 'MessageID', 'To'] + list(headers)), names
    action = [b.text for b in header_blocks if etree.QName(b).localname == 'Action']
    assert action == [op.abstract.wsa_action]
    for block in header_blocks:
        assert etree.QName(block).namespace == WSA
        assert our_schema.validate(block), (etree.QName(block).localname, _errors(our_schema, block))
    return body


@pytest.mark.parametrize('official_wsdl,our_wsdl,operation,args', CALLS, ids=[c[2] for c in CALLS])
def test_official_client_message_valid_for_esx(official_wsdl, our_wsdl, operation, args, official,
                                               our_schema, official_schema):
    """What a client generated from the GSMA files sends is valid for esx (body and WS-A headers),
    and what a client generated from our files sends is valid for the GSMA schema."""
    for wsdl, judge in ((official / official_wsdl, our_schema), (WSDL_DIR / our_wsdl, official_schema)):
        _check_client_message(_client(wsdl), operation, args, judge, our_schema)


def _envelope(body_xml, action, relates_to):
    return etree.fromstring(
        '<env:Envelope xmlns:env="%s" xmlns:wsa="%s"><env:Header>'
        '<wsa:From><wsa:Address>https://smsr.example?EntityId=1.3.6.1.4.1.99999.2</wsa:Address></wsa:From>'
        '<wsa:To env:mustUnderstand="true">https://mno.example?EntityId=1.3.6.1.4.1.99999.30</wsa:To>'
        '<wsa:MessageID>urn:uuid:%s</wsa:MessageID>'
        '<wsa:Action env:mustUnderstand="true">%s</wsa:Action>'
        '<wsa:RelatesTo>%s</wsa:RelatesTo>'
        '</env:Header><env:Body>%s</env:Body></env:Envelope>'
        % (SOAP12_ENV, WSA, uuid.uuid4(), action, relates_to, body_xml))


@pytest.mark.parametrize('official_wsdl,our_wsdl', [('ES4_SMSR.wsdl', 'ES4SmSr.wsdl')])
def test_clients_parse_esx_reply(official_wsdl, our_wsdl, official):
    """A GetEIS reply as esx sends it is parsed by clients from both WSDL sets."""
    for wsdl in (official / official_wsdl, WSDL_DIR / our_wsdl):
        client = _client(wsdl)
        op = client.service._binding._operations['ES4-GetEIS']
        full = _envelope(samples.VALID['ES4-GetEISResponse full'],
                         'http://gsma.com/ES4/ProfileManagement/ES4-GetEISResponse', 'urn:uuid:1')
        result = op.process_reply(full)
        assert result.body.FunctionExecutionStatus.Status == 'EXECUTED_SUCCESS'
        eis = result.body.Eis
        assert eis.EumSignedInfo.Eid.upper() == samples.EID
        assert [p.Iccid for p in eis.ProfileInfo] == [samples.ICCID_1, samples.ICCID_2]
        assert eis.ProfileInfo[0].pol2.Rule[1].Action == 'DELETE'
        # zeep exposes the repeated Key/Certificate choice as _value_1 = [{'Key': ...}, ...]
        assert eis['Isd-r'].Keyset[0]._value_1[0]['Key'].kcv.upper() == 'A1B2C3'
        assert eis.EumSignedInfo.Ecasd.Keyset[0]._value_1[0]['Certificate'].CaId == '1.3.6.1.4.1.31746.1.1'
        assert result.header.RelatesTo._value_1 == 'urn:uuid:1'

        failed = _envelope(samples.VALID['ES4-GetEISResponse failed'],
                           'http://gsma.com/ES4/ProfileManagement/ES4-GetEISResponse', 'urn:uuid:2')
        result = op.process_reply(failed)
        status = result.body.FunctionExecutionStatus
        assert (status.Status, status.StatusCodeData.Subject, status.StatusCodeData.Reason) == \
            ('FAILED', '8.1.1', '3.8')
        assert result.body.Eis is None


# ------------------------------------------------------------------ ES7 (oracle: the v4 package)

@pytest.mark.parametrize('name', sorted(samples.ES7_VALID))
def test_valid_es7_sample(name, our_schema, official_v4_es7_schema):
    doc = etree.fromstring(samples.ES7_VALID[name])
    assert our_schema.validate(doc), _errors(our_schema, doc)
    assert official_v4_es7_schema.validate(doc), _errors(official_v4_es7_schema, doc)


@pytest.mark.parametrize('name', sorted(samples.ES7_INVALID))
def test_invalid_es7_sample(name, our_schema, official_v4_es7_schema):
    doc = etree.fromstring(samples.ES7_INVALID[name])
    assert not our_schema.validate(doc), 'esx schema accepted: %s' % name
    assert not official_v4_es7_schema.validate(doc), 'official v4 schema accepted: %s' % name


@pytest.mark.parametrize('name', sorted(samples.ES7_V3_VALID))
def test_valid_es7_v3_only_sample(name, our_schema, official_es7_v3_schema, official_v4_es7_schema):
    doc = etree.fromstring(samples.ES7_V3_VALID[name])
    assert our_schema.validate(doc), _errors(our_schema, doc)
    assert official_es7_v3_schema.validate(doc), _errors(official_es7_v3_schema, doc)
    assert not official_v4_es7_schema.validate(doc)  # v4 dropped the element


def test_authenticate_smsr_names_the_euicc_as_v4_does(our_schema, official_es7_v3_schema):
    """The v3 XSD carries the EIS in AuthenticateSMSR; v4 and esx carry the EID (wsdl/README.md)."""
    v4_form = etree.fromstring(samples.ES7_VALID['ES7-AuthenticateSMSRRequest'])
    v3_form = etree.fromstring(samples.ES7_INVALID['AuthenticateSMSR with the v3 Eis'])
    assert our_schema.validate(v4_form) and not our_schema.validate(v3_form)
    assert official_es7_v3_schema.validate(v3_form) and not official_es7_v3_schema.validate(v4_form)


def test_handover_needs_the_isd_r(our_schema, official_v4_es7_schema):
    """The v4 EIS makes Isd-r optional; ours keeps the v3 EIS, where it is mandatory (wsdl/README.md)."""
    doc = etree.fromstring(samples.HANDOVER_WITHOUT_ISD_R)
    assert official_v4_es7_schema.validate(doc), _errors(official_v4_es7_schema, doc)
    assert not our_schema.validate(doc)
    assert 'Isd-r' in _errors(our_schema, doc)


def _parsed(client, element, sample):
    """A sample body as the given client's own objects, so that it can be sent through that client."""
    return client.get_element('{%s}%s' % (RPS, element)).parse(etree.fromstring(sample), client.wsdl.types)


ES7_CALLS = [
    # (official v4 wsdl, our wsdl, operation, body arguments; a callable gets the client)
    ('ES7_SMSR_Provider.wsdl', 'ES7SmSrProvider.wsdl', 'ES7-HandoverEUICC',
     lambda client: dict(FunctionCallIdentifier='fc-7-1', ValidityPeriod=86400, Eis=_parsed(
         client, 'ES7-HandoverEUICCRequest', samples.ES7_VALID['ES7-HandoverEUICCRequest']).Eis)),
    ('ES7_SMSR_Provider.wsdl', 'ES7SmSrProvider.wsdl', 'ES7-AuthenticateSMSR',
     lambda client: dict(FunctionCallIdentifier='fc-7-2', Eid=samples.EID,
                         SmsrCertificate=samples.SMSR_CERTIFICATE)),
    ('ES7_SMSR_Provider.wsdl', 'ES7SmSrProvider.wsdl', 'ES7-CreateAdditionalKeySet',
     lambda client: dict(FunctionCallIdentifier='fc-7-3', Eid=samples.EID, KeyVersionNumber=2,
                         InitialSequenceCounter=-1, ECCKeyLength='ECC-256', ScenarioParameter=0x0B,
                         HostId=samples.HOST_ID,
                         EphemeralPublicKey=samples.EPHEMERAL_PUBLIC_KEY,
                         Signature=samples.SIGNATURE_R_S)),
    ('ES7_SMSR_Requester.wsdl', 'ES7SmSrRequester.wsdl', 'ES7-HandoverEUICCCallback',
     lambda client: dict(FunctionExecutionStatus={'Status': 'EXECUTED_SUCCESS'})),
    ('ES7_SMSR_Requester.wsdl', 'ES7SmSrRequester.wsdl', 'ES7-AuthenticateSMSRCallback',
     lambda client: dict(FunctionExecutionStatus={'Status': 'FAILED',
                                                  'StatusCodeData': {'Subject': '8.5.3', 'Reason': '6.3'}},
                         RandomChallenge='')),
    ('ES7_SMSR_Requester.wsdl', 'ES7SmSrRequester.wsdl', 'ES7-CreateAdditionalKeySetCallback',
     lambda client: dict(FunctionExecutionStatus={'Status': 'EXECUTED_SUCCESS'},
                         DerivationRandom=samples.DERIVATION_RANDOM,
                         Receipt=samples.RECEIPT)),
]


@pytest.mark.parametrize('official_wsdl,our_wsdl,operation,args', ES7_CALLS, ids=[c[2] for c in ES7_CALLS])
def test_official_v4_es7_client_message_valid_for_esx(official_wsdl, our_wsdl, operation, args, official_v4,
                                                      our_schema, official_v4_es7_schema):
    """What a client generated from the (fixed-up) GSMA v4 ES7 files sends is valid for esx, and what a client
    generated from our files sends is valid for the GSMA v4 schema; the two bodies are the same bytes."""
    bodies = []
    for wsdl, judge in ((official_v4 / official_wsdl, our_schema), (WSDL_DIR / our_wsdl, official_v4_es7_schema)):
        body = _check_client_message(_client(wsdl), operation, args, judge, our_schema)
        bodies.append(etree.tostring(body, method='c14n'))
    assert bodies[0] == bodies[1]
