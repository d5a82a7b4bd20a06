"""Shared fixtures for the wsdl/ contract tests.

The GSMA SGP.02 WSDL/XSD sets are used as oracles only, never copied into the project: the v3 set is read in
place from ../shared/gsma-sgp02-wsdl (next to the repository). The v4 package (../shared/gsma-sgp02-v4-wsdl) is
the oracle for ES7; as its README asks, its own fixup.py first writes a loadable copy into a temporary folder,
and the tests read that copy.
"""
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from tests import unavailable

REPO = Path(__file__).resolve().parents[2]
WSDL_DIR = REPO / 'wsdl'
XSD_DIR = WSDL_DIR / 'xsd'
OFFICIAL = Path(__file__).resolve().parents[3] / 'shared' / 'gsma-sgp02-wsdl'
OFFICIAL_V4 = OFFICIAL.parent / 'gsma-sgp02-v4-wsdl'

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
    'ES7SmSr.wsdl': 'ES7_SMSR.wsdl',  # v3 only: ES7-HandleSMSRChangeNotification
}

# our WSDL file -> the official v4 WSDL it must match (the v3 ES7 provider WSDL names an element that does not
# exist, wsdl/README.md)
V4_WSDL_PAIRS = {
    'ES7SmSrProvider.wsdl': 'ES7_SMSR_Provider.wsdl',
    'ES7SmSrRequester.wsdl': 'ES7_SMSR_Requester.wsdl',
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


@pytest.fixture(scope='session')
def official_es7_v3_schema(official, tmp_path_factory):
    """lxml schema of the official v3 ES7 body elements (for the v3-only notification)."""
    d = tmp_path_factory.mktemp('official-es7-v3')
    return etree.XMLSchema(etree.parse(str(_wrapper(d, 'wrap-es7.xsd', ['euicc.request.ES7.xsd']))))


@pytest.fixture(scope='session')
def official_v4(tmp_path_factory):
    """The GSMA v4 package as its fixup.py writes it into a temporary folder (the package as found does not load)."""
    if not (OFFICIAL_V4 / 'fixup.py').is_file():
        unavailable('official GSMA v4 WSDL package not found at %s' % OFFICIAL_V4)
    dest = tmp_path_factory.mktemp('official-v4') / 'WebServicesAPI'
    subprocess.run([sys.executable, str(OFFICIAL_V4 / 'fixup.py'), str(dest)], check=True, capture_output=True)
    assert (dest / 'xsd' / 'euicc.request.ES7.xsd').is_file()
    return dest


@pytest.fixture(scope='session')
def official_v4_es7_schema(official_v4):
    """lxml schema of the official v4 ES7 body elements (the file has its own targetNamespace)."""
    return etree.XMLSchema(etree.parse(str(official_v4 / 'xsd' / 'euicc.request.ES7.xsd')))
