"""Operations, Action URIs, WS-A header parts and service/port names of our WSDLs
against the official GSMA v3 WSDLs (ES7 provider and requester: against the v4 ones)."""
import pytest
import zeep
from lxml import etree

from esx.binding import contract

from .conftest import RPS, V4_WSDL_PAIRS, WSA, WSAM, WSDL_DIR, WSDL_PAIRS

W = 'http://schemas.xmlsoap.org/wsdl/'
S12 = 'http://schemas.xmlsoap.org/wsdl/soap12/'
NS = {'w': W, 's': S12}
SOAP_HTTP = 'http://www.w3.org/2003/05/soap/bindings/HTTP/'

G = 'http://gsma.com'
# The asynchronous results the MNO receives; absent from the official v3 MNO WSDLs.
EXTRA_CALLBACKS = {
    'ES2Mno.wsdl': {
        'ES2-DownloadProfileCallback': ('ES2-DownloadProfileResponse',
                                        G + '/ES2/ProfileManagementCallBack/ES2-DownloadProfile'),
        'ES2-EnableProfileCallback': ('ES2-EnableProfileResponse',
                                      G + '/ES2/PlatformManagementCallBack/ES2-EnableProfile'),
        'ES2-DisableProfileCallback': ('ES2-DisableProfileResponse',
                                       G + '/ES2/PlatformManagementCallBack/ES2-DisableProfile'),
        'ES2-DeleteProfileCallback': ('ES2-DeleteProfileResponse',
                                      G + '/ES2/PlatformManagementCallBack/ES2-DeleteProfile'),
    },
    'ES4Mno.wsdl': {
        'ES4-AuditEISCallback': ('ES4-AuditEISResponse', G + '/ES4/ProfileManagementCallBack/ES4-AuditEIS'),
        'ES4-EnableProfileCallback': ('ES4-EnableProfileResponse',
                                      G + '/ES4/PlatformManagementCallBack/ES4-EnableProfile'),
        'ES4-DisableProfileCallback': ('ES4-DisableProfileResponse',
                                       G + '/ES4/PlatformManagementCallBack/ES4-DisableProfile'),
        'ES4-DeleteProfileCallback': ('ES4-DeleteProfileResponse',
                                      G + '/ES4/PlatformManagementCallBack/ES4-DeleteProfile'),
        'ES4-PrepareSMSRChangeCallback': ('ES4-PrepareSMSRChangeResponse',
                                          G + '/ES4/eUICCManagementCallBack/ES4-PrepareSMSRChange'),
        'ES4-SMSRChangeCallback': ('ES4-SMSRChangeResponse',
                                   G + '/ES4/eUICCManagementCallBack/ES4-SMSRChange'),
    },
}

CALLBACK_HEADERS = frozenset({((WSA, 'From'), True), ((WSA, 'To'), True), ((WSA, 'MessageID'), True),
                              ((WSA, 'Action'), True), ((WSA, 'RelatesTo'), True)})


def _qname(node, value):
    prefix, _, local = value.rpartition(':')
    return (node.nsmap[prefix or None], local)


def describe(path):
    """{'service', 'port', 'transport', 'ops': {name: {'input': ..., 'output': ...}}} of a WSDL."""
    root = etree.parse(str(path)).getroot()
    messages = {}
    for m in root.findall('w:message', NS):
        messages[m.get('name')] = {p.get('name'): _qname(p, p.get('element')) for p in m.findall('w:part', NS)}

    def message_parts(node, attr='message'):
        return messages[_qname(node, node.get(attr))[1]]

    (pt,) = root.findall('w:portType', NS)
    (binding,) = root.findall('w:binding', NS)
    (service,) = root.findall('w:service', NS)
    (port,) = service.findall('w:port', NS)
    (soap_binding,) = binding.findall('s:binding', NS)
    assert _qname(binding, binding.get('type'))[1] == pt.get('name')
    assert _qname(port, port.get('binding'))[1] == binding.get('name')

    ops = {}
    for op in pt.findall('w:operation', NS):
        info = {}
        for direction in ('input', 'output'):
            node = op.find('w:' + direction, NS)
            if node is None:
                info[direction] = None
                continue
            parts = message_parts(node)
            assert list(parts) == ['parameters'], parts
            info[direction] = {
                'body': parts['parameters'],
                'wsam': node.get('{%s}Action' % WSAM),
                'wsa': node.get('{%s}Action' % WSA),
            }
        ops[op.get('name')] = info
    for bop in binding.findall('w:operation', NS):
        name = bop.get('name')
        assert name in ops, name
        for direction in ('input', 'output'):
            node = bop.find('w:' + direction, NS)
            if ops[name][direction] is None:
                assert node is None
                continue
            headers = set()
            for h in node.findall('s:header', NS):
                element = message_parts(h)[h.get('part')]
                headers.add((element, h.get('{%s}required' % W) == 'true'))
            bodies = node.findall('s:body', NS)
            assert len(bodies) == 1 and bodies[0].get('use') == 'literal'
            ops[name][direction]['headers'] = frozenset(headers)
    assert set(ops) == {b.get('name') for b in binding.findall('w:operation', NS)}
    return {
        'service': service.get('name'),
        'port': port.get('name'),
        'transport': soap_binding.get('transport'),
        'style': soap_binding.get('style'),
        'ops': ops,
    }


def assert_same_operations(ours_name, theirs_path):
    theirs = describe(theirs_path)
    ours = describe(WSDL_DIR / ours_name)
    assert (ours['service'], ours['port']) == (theirs['service'], theirs['port'])
    assert (ours['transport'], ours['style']) == (SOAP_HTTP, 'document') == (theirs['transport'], theirs['style'])

    missing = set(theirs['ops']) - set(ours['ops'])
    assert not missing, 'operations missing: %s' % sorted(missing)
    extra = set(ours['ops']) - set(theirs['ops'])
    assert extra == set(EXTRA_CALLBACKS.get(ours_name, {})), 'unexpected operations: %s' % sorted(extra)

    for name, their_op in theirs['ops'].items():
        our_op = ours['ops'][name]
        for direction in ('input', 'output'):
            t, o = their_op[direction], our_op[direction]
            assert (t is None) == (o is None), (name, direction)
            if t is None:
                continue
            assert o['body'] == t['body'], (name, direction)
            assert o['wsam'] == t['wsam'], (name, direction)
            assert o['wsa'] == o['wsam'], (name, direction)
            assert o['headers'] == t['headers'], (name, direction, sorted(o['headers']), sorted(t['headers']))
    return ours, theirs


@pytest.mark.parametrize('ours_name', sorted(WSDL_PAIRS))
def test_operations_match_official(ours_name, official):
    assert_same_operations(ours_name, official / WSDL_PAIRS[ours_name])


@pytest.mark.parametrize('ours_name', sorted(V4_WSDL_PAIRS))
def test_operations_match_official_v4(ours_name, official_v4):
    ours, theirs = assert_same_operations(ours_name, official_v4 / V4_WSDL_PAIRS[ours_name])
    assert len(theirs['ops']) == 3
    # the Action the server dispatches on is the official one, operation by operation
    served = contract.load_service(ours_name).operations
    assert {name: (op.input_element, op.input_action) for name, op in served.items()} == {
        name: ('{%s}%s' % op['input']['body'], op['input']['wsam']) for name, op in theirs['ops'].items()}


ES7 = G + '/ES7/eUICCManagement/ES7-'
ES7_CALLBACK = G + '/ES7/eUICCManagementCallBack/ES7-'
REQUEST_HEADERS = frozenset({((WSA, 'From'), True), ((WSA, 'To'), True), ((WSA, 'MessageID'), True),
                             ((WSA, 'Action'), True), ((WSA, 'ReplyTo'), False)})


def test_es7_names_and_actions_spelled_out():
    """Spelled out once without an oracle, so that a change of the oracle files cannot move our contract."""
    provider = describe(WSDL_DIR / 'ES7SmSrProvider.wsdl')
    requester = describe(WSDL_DIR / 'ES7SmSrRequester.wsdl')
    assert (provider['service'], provider['port']) == ('ES7SmSrProviderService', 'ES7SmSrProviderPort')
    assert (requester['service'], requester['port']) == ('ES7SmSrRequesterService', 'ES7SmSrRequesterPort')
    for function in ('HandoverEUICC', 'AuthenticateSMSR', 'CreateAdditionalKeySet'):
        request = provider['ops']['ES7-' + function]
        assert request['output'] is None
        assert request['input']['body'] == (RPS, 'ES7-%sRequest' % function)
        assert request['input']['wsam'] == request['input']['wsa'] == ES7 + function
        assert request['input']['headers'] == REQUEST_HEADERS
        callback = requester['ops']['ES7-%sCallback' % function]
        assert callback['output'] is None
        assert callback['input']['body'] == (RPS, 'ES7-%sResponse' % function)
        assert callback['input']['wsam'] == callback['input']['wsa'] == ES7_CALLBACK + function
        assert callback['input']['headers'] == CALLBACK_HEADERS
    assert len(provider['ops']) == len(requester['ops']) == 3
    notification = describe(WSDL_DIR / 'ES7SmSr.wsdl')['ops']
    assert list(notification) == ['ES7-HandleSMSRChangeNotification']
    assert notification['ES7-HandleSMSRChangeNotification']['input']['wsam'] == ES7 + 'HandleSMSRChangeNotification'


def test_v3_es7_provider_is_broken_as_documented(official):
    """Why ES7 follows v4: the v3 provider's AuthenticateSMSR message names an element that does not exist."""
    root = etree.parse(str(official / 'ES7_SMSR_Provider.wsdl')).getroot()
    (part,) = root.xpath("w:message[@name='ES7-AuthenticateSMSRRequestMessage']/w:part", namespaces=NS)
    assert part.get('element').endswith(':ES7-AuthenticateSMSRequest')  # "SMSR" without its last R
    xsd = etree.parse(str(official / 'xsd' / 'euicc.request.ES7.xsd')).getroot()
    names = set(xsd.xpath("/xs:schema/xs:element/@name", namespaces={'xs': 'http://www.w3.org/2001/XMLSchema'}))
    assert 'ES7-AuthenticateSMSRequest' not in names and 'ES7-AuthenticateSMSRRequest' in names


@pytest.mark.parametrize('ours_name', sorted(EXTRA_CALLBACKS))
def test_mno_callbacks(ours_name):
    ours = describe(WSDL_DIR / ours_name)
    for name, (element, action) in EXTRA_CALLBACKS[ours_name].items():
        op = ours['ops'][name]
        assert op['output'] is None, name
        assert op['input']['body'] == (RPS, element), name
        assert op['input']['wsam'] == op['input']['wsa'] == action, name
        assert op['input']['headers'] == CALLBACK_HEADERS, name


def test_callback_pattern_matches_es3(official):
    """Our added MNO callbacks declare headers exactly like the official ES3 callbacks."""
    es3 = describe(official / 'ES3_SMDP.wsdl')
    cb = [op for name, op in es3['ops'].items() if name.endswith('Callback')]
    assert cb and all(op['input']['headers'] == CALLBACK_HEADERS for op in cb)


def test_es3_delete_isdp_resolves():
    client = zeep.Client(str(WSDL_DIR / 'ES3SmSr.wsdl'))
    op = client.service._binding._operations['ES3-DeleteISDP']
    assert op.input.body.qname.text == '{%s}ES3-DeleteISDPRequest' % RPS
    assert op.abstract.wsa_action == G + '/ES3/PlatformManagement/ES3-DeleteISDP'
