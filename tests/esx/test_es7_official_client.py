"""/smsr/es7 takes what a peer SM-SR's client generated from the official GSMA v4 ES7 WSDL sends (the v3 ES7 set names
an element that does not exist for AuthenticateSMSR, so v4 is the oracle here; its fixup.py first writes a loadable
copy into a temporary folder, as its README asks).

The body zeep builds from ES7_SMSR_Provider.wsdl goes to the served endpoint in process; with no SM-SR change of the
eUICC under way with that peer, each request is accepted (202) and answered by a callback FAILED 8.1.1/3.9 (the
preparation not performed), which itself validates against the official v4 ES7 schema.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import zeep
from lxml import etree

from esx.demo import demo_eid
from tests import unavailable

from .inprocess import InProcess

OFFICIAL_V4 = Path(__file__).resolve().parents[2].parent / "shared" / "gsma-sgp02-v4-wsdl"
PEER = "1.3.6.1.4.1.99999.1.40"


@pytest.fixture(scope="module")
def v4(tmp_path_factory):
    if not (OFFICIAL_V4 / "fixup.py").is_file():
        unavailable(f"official GSMA v4 WSDL package not found at {OFFICIAL_V4}")
    dest = tmp_path_factory.mktemp("official-v4") / "WebServicesAPI"
    subprocess.run([sys.executable, str(OFFICIAL_V4 / "fixup.py"), str(dest)], check=True, capture_output=True)
    return dest


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    inst = InProcess(tmp_path_factory.mktemp("es7"))
    inst.entity(PEER, "smsr", endpoint="http://peer.invalid/smsr/es3")
    yield inst
    inst.close()


def body_from_official_client(v4, operation: str, **params) -> etree._Element:
    client = zeep.Client(str(v4 / "ES7_SMSR_Provider.wsdl"))
    service = client.bind("ES7SmSrProviderService", next(iter(client.wsdl.services["ES7SmSrProviderService"].ports)))
    envelope = client.create_message(service, operation, FunctionCallIdentifier="call-1", **params)
    return next(c for c in envelope.find("{http://www.w3.org/2003/05/soap-envelope}Body") if isinstance(c.tag, str))


@pytest.mark.parametrize("operation,params", [
    ("ES7-AuthenticateSMSR", {"Eid": demo_eid(1), "SmsrCertificate": "7F2101"}),
    ("ES7-CreateAdditionalKeySet", {"Eid": demo_eid(1), "KeyVersionNumber": 2, "InitialSequenceCounter": -1,
                                    "ECCKeyLength": "ECC-256", "ScenarioParameter": 10, "HostId": "",
                                    "EphemeralPublicKey": "7F4900", "Signature": "00" * 64}),
])
def test_a_request_from_the_official_v4_client_is_taken_and_answered_by_its_callback(env, v4, operation, params):
    body = body_from_official_client(v4, operation, **params)
    outcome = env.call("/smsr/es7", body, PEER, reply_to="http://peer.invalid/smsr/es7")
    assert (outcome.kind, outcome.status, outcome.code) == ("callback", "FAILED", ("8.1.1", "3.9")), outcome
    schema = etree.XMLSchema(etree.parse(str(v4 / "xsd" / "euicc.request.ES7.xsd")))
    assert schema.validate(outcome.body), schema.error_log
    assert etree.QName(outcome.body).localname == f"{operation}Response"
