"""Shared fixtures for the wsdl/ contract tests.

The GSMA SGP.02 v3 WSDL/XSD set is used as an oracle only, read in place from
../shared/gsma-sgp02-wsdl (next to the repository); it is never copied.
"""
from pathlib import Path

import pytest
from lxml import etree

from tests import unavailable

REPO = Path(__file__).resolve().parents[2]
WSDL_DIR = REPO / 'wsdl'
XSD_DIR = WSDL_DIR / 'xsd'
OFFICIAL = Path(__file__).resolve().parents[3] / 'shared' / 'gsma-sgp02-wsdl'

RPS = 'http://namespaces.gsma.org/esim-messaging/3'
WSA = 'http://www.w3.org/2005/08/addressing'
WSAM = 'http://www.w3.org/2007/05/addressing/metadata'
DS = 'http://www.w3.org/2000/09/xmldsig#'
SOAP12_ENV = 'http://www.w3.org/2003/05/soap-envelope'

INTERFACES = ('ES1', 'ES2', 'ES3', 'ES4')

# our WSDL file -> the official WSDL it must match
WSDL_PAIRS = {
    'ES1SmSr.wsdl': 'ES1_SMSR.wsdl',
    'ES2SmDp.wsdl': 'ES2_SMDP.wsdl',
    'ES2Mno.wsdl': 'ES2_MNO.wsdl',
    'ES3SmSr.wsdl': 'ES3_SMSR.wsdl',
    'ES3SmDp.wsdl': 'ES3_SMDP.wsdl',
    'ES4SmSr.wsdl': 'ES4_SMSR.wsdl',
    'ES4Mno.wsdl': 'ES4_MNO.wsdl',
}


def official_path():
    if not (OFFICIAL / 'xsd' / 'euicc.common.types.xsd').is_file():
        unavailable('official GSMA WSDL set not found at %s' % OFFICIAL)
    return OFFICIAL


def _wrapper(directory, name, includes):
    """A schema in the /3 namespace that pulls in official per-interface files by
    absolute path (euicc.root.xsd does not compile on its own)."""
    body = ''.join('  <xs:include schemaLocation="%s"/>\n' % (OFFICIAL / 'xsd' / inc).as_uri()
                   for inc in includes)
    path = directory / name
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"\n'
        '           targetNamespace="%s" elementFormDefault="qualified">\n%s</xs:schema>\n'
        % (RPS, body))
    return path


@pytest.fixture(scope='session')
def official():
    return official_path()


@pytest.fixture(scope='session')
def official_wrappers(official, tmp_path_factory):
    """{'ES1': path, ..., 'ALL': path} of wrapper schemas over the official files."""
    d = tmp_path_factory.mktemp('official-wrappers')
    out = {i: _wrapper(d, 'wrap-%s.xsd' % i, ['euicc.request.%s.xsd' % i]) for i in INTERFACES}
    out['ALL'] = _wrapper(d, 'wrap-all.xsd', ['euicc.request.%s.xsd' % i for i in INTERFACES])
    return out


@pytest.fixture(scope='session')
def official_schema(official_wrappers):
    """lxml schema of the official ES1..ES4 body elements."""
    return etree.XMLSchema(etree.parse(str(official_wrappers['ALL'])))


@pytest.fixture(scope='session')
def our_schema():
    """lxml schema of our all.xsd, loaded the way the server loads it."""
    return etree.XMLSchema(etree.parse(str(XSD_DIR / 'all.xsd')))
