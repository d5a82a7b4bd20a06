"""Production identity: mutual TLS. The client certificate must be the caller entity's registered one."""
from __future__ import annotations

import pytest
import requests
import zeep
from zeep.transports import Transport

from keys.pki import DevPki

from .clients import OFFICIAL, OFFICIAL_FILES, Caller, Recorder
from .conftest import free_port, official_schema


@pytest.fixture(scope="module")
def tls_instance(tmp_path_factory):
    from esx.demo import init_instance

    data_dir = tmp_path_factory.mktemp("esx-mtls")
    port = free_port()
    doc = init_instance(data_dir, demo=1, public_url=f"https://127.0.0.1:{port}", auth="mtls")
    proc = serve_tls(data_dir, port)
    yield data_dir, doc, f"https://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def serve_tls(data_dir, port):
    import subprocess
    import sys
    import time

    log = data_dir / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "esx.cli", "serve", "--data-dir", str(data_dir),
                             "--bind", f"127.0.0.1:{port}", "--role", "all", "--workers", "2",
                             "--allow-test-credentials"],  # the development PKI: a lab, said explicitly
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    pki = DevPki.load(data_dir / "pki")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"https://127.0.0.1:{port}/smsr/es4?wsdl", verify=str(pki.tls_ca_path),
                         cert=tuple(map(str, pki.tls_client(pki.mno_oid))), timeout=1)
            return proc
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(log.read_text())


def caller(data_dir, url, interface, path, cert_oid, from_oid):
    official_schema(interface)
    pki = DevPki.load(data_dir / "pki")
    session = requests.Session()
    session.verify = str(pki.tls_ca_path)
    session.trust_env = False  # else REQUESTS_CA_BUNDLE would override verify
    if cert_oid:
        session.cert = tuple(map(str, pki.tls_client(cert_oid)))
    client = zeep.Client(str(OFFICIAL / OFFICIAL_FILES[interface]), transport=Transport(session=session),
                         plugins=[Recorder()])
    return Caller(client, f"{url}{path}", interface, from_oid)


def test_mtls_caller_identified_by_certificate(tls_instance):
    data_dir, doc, url = tls_instance
    call = caller(data_dir, url, "ES4", "/smsr/es4", doc["mno_id"], doc["mno_id"])
    reply = call("ES4-GetEIS", Eid=doc["euiccs"][0]["eid"])
    assert (reply.status, reply.code) == ("EXECUTED_SUCCESS", (None, None))


def test_mtls_from_must_match_the_certificate(tls_instance):
    data_dir, doc, url = tls_instance
    call = caller(data_dir, url, "ES4", "/smsr/es4", doc["mno_id"], doc["eum_id"])
    reply = call("ES4-GetEIS", Eid=doc["euiccs"][0]["eid"])
    assert (reply.status, reply.code) == ("FAILED", ("1.1", "1.1"))


def test_mtls_certificate_of_another_role(tls_instance):
    data_dir, doc, url = tls_instance
    call = caller(data_dir, url, "ES4", "/smsr/es4", doc["eum_id"], doc["eum_id"])
    reply = call("ES4-GetEIS", Eid=doc["euiccs"][0]["eid"])
    assert (reply.status, reply.code) == ("FAILED", ("1.1", "1.2"))


def test_mtls_without_client_certificate_is_refused(tls_instance):
    data_dir, doc, url = tls_instance
    call = caller(data_dir, url, "ES4", "/smsr/es4", None, doc["mno_id"])
    with pytest.raises(requests.exceptions.RequestException):
        call("ES4-GetEIS", Eid=doc["euiccs"][0]["eid"])


def test_mtls_smdp_relays_to_smsr_with_its_own_certificate(tls_instance):
    data_dir, doc, url = tls_instance
    call = caller(data_dir, url, "ES2", "/smdp/es2", doc["mno_id"], doc["mno_id"])
    reply = call("ES2-GetEIS", Eid=doc["euiccs"][0]["eid"], **{"Smsr-id": doc["smsr_id"]})
    assert (reply.status, reply.code) == ("EXECUTED_SUCCESS", (None, None))
    assert reply.text("rps:Eis/rps:ProfileInfo/rps:Iccid") == doc["euiccs"][0]["profiles"][0]["iccid"]
