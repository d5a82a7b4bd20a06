"""Structural equivalence of our schemas with the official GSMA v3 schemas (ES7: the v4 package).

For every global element of the official euicc.request.ESn.xsd, our schema must
define the same element with the same tree of child element names, order,
occurrence bounds, attributes and simple-type restrictions. Type names are
ignored. ds:SignatureType is compared by name only (our xmldsig.xsd is a subset).

ES7 is compared with the v4 package, whose ES7-AuthenticateSMSRRequest is the
correct one (wsdl/README.md). The v4 EIS makes Isd-r optional; ours keeps the v3
EIS, where it is mandatory: the one difference, pinned below.
"""
import difflib
import os

import pytest
from lxml import etree

from . import xsdmodel
from .conftest import DS, INTERFACES, RPS, XSD_DIR, _wrapper

XSN = {'xs': 'http://www.w3.org/2001/XMLSchema'}


def _ours(overrides=None):
    return xsdmodel.SchemaSet(XSD_DIR / 'all.xsd', opaque_namespaces=[DS], overrides=overrides)


@pytest.fixture(scope='module')
def our_model():
    return _ours()


def ascii_digits(pattern):
    """The official patterns write \\d, which XSD defines as any Unicode decimal digit; ours write the ASCII
    class [0-9] on purpose (wsdl/README.md, "Deliberate differences"). Compared in our notation."""
    return pattern.replace('[\\d]', '[0-9]').replace('\\d', '[0-9]')


@pytest.fixture(scope='module')
def official_models(official_wrappers):
    return {i: xsdmodel.SchemaSet(official_wrappers[i], opaque_namespaces=[DS], pattern_map=ascii_digits)
            for i in INTERFACES}


def test_our_digit_patterns_are_ascii():
    for xsd in XSD_DIR.glob('*.xsd'):
        for node in etree.parse(str(xsd)).iter('{http://www.w3.org/2001/XMLSchema}pattern'):
            assert '\\d' not in node.get('value'), (xsd.name, node.get('value'))


def _official_elements(model, official, iface):
    return model.global_elements(official / 'xsd' / ('euicc.request.%s.xsd' % iface))


def _mismatch(theirs, ours, qname):
    """None if equal, else a readable diff."""
    a, b = theirs.element(qname), ours.element(qname)
    if a == b:
        return None
    diff = difflib.unified_diff(xsdmodel.outline(a), xsdmodel.outline(b),
                                'official %s' % qname[1], 'esx %s' % qname[1], lineterm='')
    return '\n'.join(diff) or 'structures differ only in attributes not shown in the outline:\n%r\n%r' % (a, b)


@pytest.mark.parametrize('iface', INTERFACES)
def test_same_global_elements(iface, official, official_models, our_model):
    theirs = set(_official_elements(official_models[iface], official, iface))
    ours = set(our_model.global_elements(XSD_DIR / ('%s.xsd' % iface.lower())))
    assert theirs, 'no official elements found for %s' % iface
    assert not theirs - ours, 'missing in esx: %s' % sorted(n for _, n in theirs - ours)
    assert not ours - theirs, 'not in the official %s: %s' % (iface, sorted(n for _, n in ours - theirs))


@pytest.mark.parametrize('iface', INTERFACES)
def test_same_structure(iface, official, official_models, our_model):
    theirs = official_models[iface]
    problems = []
    for qname in _official_elements(theirs, official, iface):
        assert qname[0] == RPS
        if qname not in our_model.components['element']:
            problems.append('missing element %s' % qname[1])
            continue
        diff = _mismatch(theirs, our_model, qname)
        if diff:
            problems.append(diff)
    assert not problems, '\n\n'.join(problems)


def test_signature_type_is_the_xmldsig_one(our_model):
    eis = our_model.element((RPS, 'ES1-RegisterEISRequest'))
    assert ('opaque-type', DS, 'SignatureType') in _walk(eis)


def _walk(node):
    yield node
    if isinstance(node, tuple):
        for x in node:
            yield from _walk(x)


# ---------------------------------------------------------------- strictness
# Apply one small change to a copy of our schema and check that the comparison
# reports the affected element. This guards the comparator itself.

def _mutated(filename, xpath, change):
    path = os.path.abspath(XSD_DIR / filename)
    root = etree.parse(path).getroot()
    nodes = root.xpath(xpath, namespaces=XSN)
    assert len(nodes) == 1, (xpath, len(nodes))
    change(nodes[0])
    return _ours(overrides={path: root})


def _swap_with_next(node):
    nxt = node.getnext()
    while not isinstance(nxt.tag, str):
        nxt = nxt.getnext()
    nxt.addnext(node)


def _set(attr, value):
    def change(node):
        node.set(attr, value)
    return change


def _remove(node):
    node.getparent().remove(node)


MUTATIONS = [
    # (id, file, xpath, change, element that must now differ)
    ('child order', 'es2.xsd',
     "//xs:element[@name='ES2-DeleteProfileRequest']//xs:element[@name='Eid']", _swap_with_next,
     'ES2-DeleteProfileRequest'),
    ('missing child', 'es2.xsd',
     "//xs:element[@name='ES2-GetEISRequest']//xs:element[@name='Smsr-id']", _remove,
     'ES2-GetEISRequest'),
    ('minOccurs', 'es4.xsd',
     "//xs:element[@name='ES4-UpdatePolicyRulesRequest']//xs:element[@name='pol2']", _set('minOccurs', '0'),
     'ES4-UpdatePolicyRulesRequest'),
    ('maxOccurs', 'types.xsd',
     "//xs:complexType[@name='SecurityDomainType']//xs:element[@name='Keyset']", _set('maxOccurs', 'unbounded'),
     'ES4-GetEISResponse'),
    ('choice bound', 'types.xsd',
     "//xs:complexType[@name='KeysetType']/xs:sequence/xs:choice", _set('maxOccurs', 'unbounded'),
     'ES1-RegisterEISRequest'),
    ('pattern', 'types.xsd',
     "//xs:simpleType[@name='ICCIDType']/xs:restriction/xs:pattern", _set('value', '89[0-9]{4,18}'),
     'ES4-EnableProfileRequest'),
    ('enumeration', 'types.xsd',
     "//xs:simpleType[@name='StatusType']//xs:enumeration[@value='EXPIRED']", _remove,
     'ES3-SendDataResponse'),
    ('length facet', 'types.xsd',
     "//xs:simpleType[@name='EIDType']/xs:restriction/xs:maxLength", _set('value', '16'),
     'ES3-GetEISRequest'),
    ('builtin base', 'es3.xsd',
     "//xs:element[@name='ES3-CreateISDPRequest']//xs:element[@name='RequiredMemory']", _set('type', 'xs:int'),
     'ES3-CreateISDPRequest'),
    ('element name case', 'es3.xsd',
     "//xs:element[@name='ES3-HandleSMSRChangeNotification']//xs:element[@name='completionTimestamp']",
     _set('name', 'CompletionTimestamp'), 'ES3-HandleSMSRChangeNotification'),
    ('attribute use', 'types.xsd',
     "//xs:complexType[@name='KeyType']/xs:attribute[@name='kcv']", _set('use', 'optional'),
     'ES4-AuditEISResponse'),
    ('base type', 'es1.xsd',
     "//xs:element[@name='ES1-RegisterEISResponse']", _set('type', 'tns:BaseRequestType'),
     'ES1-RegisterEISResponse'),
]


MUTATIONS += [
    ('ES7 child order', 'es7.xsd',
     "//xs:element[@name='ES7-CreateAdditionalKeySetRequest']//xs:element[@name='ScenarioParameter']",
     _swap_with_next, 'ES7-CreateAdditionalKeySetRequest'),
    ('ES7 enumeration', 'es7.xsd',
     "//xs:simpleType[@name='ECCKeyLengthType']//xs:enumeration[@value='ECC-521']", _remove,
     'ES7-CreateAdditionalKeySetRequest'),
    ('ES7 builtin type', 'es7.xsd',
     "//xs:element[@name='ES7-CreateAdditionalKeySetRequest']//xs:element[@name='ScenarioParameter']",
     _set('type', 'xs:unsignedByte'), 'ES7-CreateAdditionalKeySetRequest'),
    ('ES7 KVN range', 'types.xsd',
     "//xs:simpleType[@name='KeysetVersionType']/xs:restriction/xs:maxInclusive", _set('value', '255'),
     'ES7-CreateAdditionalKeySetRequest'),
    ('ES7 mandatory result field', 'es7.xsd',
     "//xs:element[@name='ES7-AuthenticateSMSRResponse']//xs:element[@name='RandomChallenge']",
     _set('minOccurs', '0'), 'ES7-AuthenticateSMSRResponse'),
    ('ES7 v3 Eis instead of Eid', 'es7.xsd',
     "//xs:element[@name='ES7-AuthenticateSMSRRequest']//xs:element[@name='Eid']",
     lambda node: (node.set('name', 'Eis'), node.set('type', 'tns:EISType')), 'ES7-AuthenticateSMSRRequest'),
]


@pytest.mark.parametrize('label,filename,xpath,change,element', MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_comparator_detects(label, filename, xpath, change, element, request):
    iface = element[:3]
    theirs = (request.getfixturevalue('official_v4_es7_model') if iface == 'ES7'
              else request.getfixturevalue('official_models')[iface])
    mutated = _mutated(filename, xpath, change)
    assert _mismatch(theirs, mutated, (RPS, element)) is not None, label


# ---------------------------------------------------------------- ES7

ES7_V3_ONLY = {(RPS, 'ES7-HandleSMSRChangeNotification')}


def _v4_types_with_mandatory_isd_r(official_v4):
    """The v4 common types with the EIS's Isd-r made mandatory again, as in v3 and in ours."""
    path = os.path.abspath(official_v4 / 'xsd' / 'euicc.common.types.xsd')
    root = etree.parse(path).getroot()
    (isd_r,) = root.xpath("//xs:complexType[@name='EISType']//xs:element[@name='Isd-r']", namespaces=XSN)
    assert isd_r.get('minOccurs') == '0'
    del isd_r.attrib['minOccurs']
    return {path: root}


def _v4_es7_model(official_v4, overrides=None):
    return xsdmodel.SchemaSet(official_v4 / 'xsd' / 'euicc.request.ES7.xsd', opaque_namespaces=[DS],
                              pattern_map=ascii_digits, overrides=overrides)


@pytest.fixture(scope='module')
def official_v4_es7_model(official_v4):
    return _v4_es7_model(official_v4, _v4_types_with_mandatory_isd_r(official_v4))


@pytest.fixture(scope='module')
def official_v3_es7_model(official, tmp_path_factory):
    wrapper = _wrapper(tmp_path_factory.mktemp('es7-v3'), 'wrap-es7.xsd', ['euicc.request.ES7.xsd'])
    return xsdmodel.SchemaSet(wrapper, opaque_namespaces=[DS], pattern_map=ascii_digits)


def test_es7_same_global_elements_as_v4(official_v4, official_v4_es7_model, our_model):
    theirs = set(official_v4_es7_model.global_elements(official_v4 / 'xsd' / 'euicc.request.ES7.xsd'))
    ours = set(our_model.global_elements(XSD_DIR / 'es7.xsd'))
    assert len(theirs) == 6
    assert ours - theirs == ES7_V3_ONLY
    assert not theirs - ours


def test_es7_same_structure_as_v4(official_v4, official_v4_es7_model, our_model):
    problems = [diff for qname in official_v4_es7_model.global_elements(official_v4 / 'xsd' / 'euicc.request.ES7.xsd')
                for diff in [_mismatch(official_v4_es7_model, our_model, qname)] if diff]
    assert not problems, '\n\n'.join(problems)


def test_es7_eis_differs_from_v4_in_isd_r_only(official_v4, our_model):
    """Unmodified v4: the only ES7 element that differs is HandoverEUICC, through the EIS's Isd-r (which the
    model above restores); our EIS stays the v3 one (wsdl/README.md)."""
    plain = _v4_es7_model(official_v4)
    differing = [qname for qname in plain.global_elements(official_v4 / 'xsd' / 'euicc.request.ES7.xsd')
                 if _mismatch(plain, our_model, qname)]
    assert differing == [(RPS, 'ES7-HandoverEUICCRequest')]
    diff = _mismatch(plain, our_model, (RPS, 'ES7-HandoverEUICCRequest'))
    changed = [line for line in diff.splitlines() if line[:1] in '+-' and line[:3] not in ('+++', '---')]
    assert [' '.join(line.split()) for line in changed] == ['- rps3:Isd-r [0..1]', '+ rps3:Isd-r [1..1]'], diff


def test_es7_matches_v3_except_authenticate_smsr(official, official_v3_es7_model, our_model):
    """Against v3 every ES7 element is the same but AuthenticateSMSRRequest (v3: Eis, v4 and ours: Eid)."""
    v3_file = official / 'xsd' / 'euicc.request.ES7.xsd'
    theirs = official_v3_es7_model.global_elements(v3_file)
    assert set(theirs) == set(our_model.global_elements(XSD_DIR / 'es7.xsd'))
    differing = [qname for qname in theirs if _mismatch(official_v3_es7_model, our_model, qname)]
    assert differing == [(RPS, 'ES7-AuthenticateSMSRRequest')]
