"""Structural equivalence of our schemas with the official GSMA v3 schemas.

For every global element of the official euicc.request.ESn.xsd, our schema must
define the same element with the same tree of child element names, order,
occurrence bounds, attributes and simple-type restrictions. Type names are
ignored. ds:SignatureType is compared by name only (our xmldsig.xsd is a subset).
"""
import difflib
import os

import pytest
from lxml import etree

from . import xsdmodel
from .conftest import DS, INTERFACES, RPS, XSD_DIR

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


@pytest.mark.parametrize('label,filename,xpath,change,element', MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_comparator_detects(label, filename, xpath, change, element, official, official_models):
    iface = element[:3]
    mutated = _mutated(filename, xpath, change)
    assert _mismatch(official_models[iface], mutated, (RPS, element)) is not None, label
