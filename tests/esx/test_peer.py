"""``esx init --peer-of A``: a second SM-SR, B, on the machine of instance A (issue 11, SM-SR change groundwork).

B has its own OID, SMS address and SM-SR certificate from A's one CI; each SM-SR is an entity at the other, A's
SM-DP, MNO and EUM are entities at B as A holds them, B knows no eUICC, and its SMPP client binds to A's loopback
SMSC. ``esx serve --data-dir B`` serves B's SM-SR and worker, and no SMSC. The commands run as an operator types
them (click's CliRunner, and one real ``esx serve`` process).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from esx.cli import main
from esx.demo import (
    EUM_OID,
    MNO_OID,
    SMDP_OID,
    SMSR_OID,
    init_instance,
    init_peer,
    peer_smsr_identity,
)
from esx.binding.wsa import smsr_interface_url
from esx.server import Config, EsxRuntime, make_wsgi
from esx.binding.wsgi_adapter import WsgiAdapter
from euicc_sim.card import Card
from euicc_sim.smsc import LoopbackSmsc
from keys.gp_cert import CERT_TYPE_SMSR, parse_gp_certificate
from keys.pki import DevPki
from persistence.db import Database
from persistence.entities import Entity, smdps_of

from tests.keys import reference as ref

from .inprocess import BASE, InProcess, request

B_OID, B_ADDRESS = "1.3.6.1.4.1.99999.1.3", "882003"
B_URL = "http://127.0.0.1:8090"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def esx(*args) -> "click.testing.Result":  # noqa: F821 - click's type, named for the reader
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def a(tmp_path_factory) -> tuple[Path, dict]:
    data_dir = tmp_path_factory.mktemp("peer") / "a"
    return data_dir, init_instance(data_dir, demo=2, smsc_port=free_port())


@pytest.fixture(scope="module")
def b(a) -> tuple[Path, dict]:
    """B made with the command an operator types; the document it printed."""
    b_dir = a[0].parent / "b"
    result = esx("init", "--data-dir", b_dir, "--peer-of", a[0], "--public-url", B_URL)
    assert result.exit_code == 0, result.output
    return b_dir, json.loads(result.stdout)


def entities(config: Config) -> dict[str, dict]:
    db = Database(config.database_url)
    try:
        with db.session() as s:
            return {e.oid: {"role": e.role, "name": e.name, "endpoint": e.endpoint, "cert_sha256": e.cert_sha256,
                            "signing_cert_pem": e.signing_cert_pem, "smdps": smdps_of(s, e.oid)}
                    for e in s.query(Entity)}
    finally:
        db.dispose()


def cert_sha256(pem: bytes) -> str:
    import hashlib

    return hashlib.sha256(x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)).hexdigest()


# -- what init --peer-of creates --------------------------------------------------------------------------------------


def test_the_document_has_init_s_shape_with_b_s_values(a, b):
    (a_dir, a_doc), (_, b_doc) = a, b
    assert list(b_doc) == list(a_doc)
    assert b_doc == {
        "smsr_id": B_OID, "smdp_id": SMDP_OID, "mno_id": MNO_OID, "eum_id": EUM_OID, "euiccs": [],
        "endpoints": {"smsr_es1": f"{B_URL}/smsr/es1", "smsr_es3": f"{B_URL}/smsr/es3", "smsr_es4": f"{B_URL}/smsr/es4",
                      "smdp_es2": "http://127.0.0.1:8080/smdp/es2", "smdp_es3": "http://127.0.0.1:8080/smdp/es3"},
        "smdp": {"profile_types": []}}
    assert len(a_doc["euiccs"]) == 2


def test_b_s_configuration_points_its_smpp_client_at_a_s_smsc(a, b):
    a_config, b_config = Config.load(a[0]), Config.load(b[0])
    assert (b_config.smsr_oid, b_config.smdp_oid, b_config.auth) == (B_OID, SMDP_OID, a_config.auth)
    assert b_config.public_url == B_URL and b_config.role_urls == {"smdp": a_config.public_url}
    assert b_config.extra == {"peer_of": str(a[0].resolve())}
    assert b_config.ota == {"smsc_host": "127.0.0.1", "smsc_port": a_config.ota["smsc_port"], "system_id": "esx",
                            "password": a_config.ota["password"], "source_addr": B_ADDRESS, "loopback_smsc": False}
    smpp_a, smpp_b = a_config.smpp(), b_config.smpp()
    assert (smpp_b.host, smpp_b.port, smpp_b.system_id, smpp_b.password) == (
        smpp_a.host, smpp_a.port, smpp_a.system_id, smpp_a.password)
    assert (smpp_a.source_addr, smpp_b.source_addr) == ("882001", B_ADDRESS)
    assert b_config.database_url != a_config.database_url


def test_b_s_oid_keys_and_certificates_come_from_a_s_one_ci(a, b):
    a_pki, b_pki = DevPki.load(Config.load(a[0]).pki_dir), DevPki.load(Config.load(b[0]).pki_dir)
    signed, signature = ref.gp_certificate_split(b_pki.smsr_gp_cert)
    assert ref.verify_raw(a_pki.ci_cert.public_key(), signed, signature)  # CERT.SR.ECDSA by A's CI
    cert = parse_gp_certificate(b_pki.smsr_gp_cert)
    assert (cert.cert_type, cert.subject_id) == (CERT_TYPE_SMSR, B_OID.encode())
    assert cert.public_key() == b_pki.smsr_key.public_key() != a_pki.smsr_key.public_key()
    assert b_pki.ci_cert_pem == a_pki.ci_cert_pem  # the cards' one CI
    assert not (b_pki.directory / "ci.key.pem").exists() and b_pki.ci_key is None
    client = x509.load_pem_x509_certificate(b_pki.tls_client(B_OID)[0].read_bytes())
    client.verify_directly_issued_by(x509.load_pem_x509_certificate(a_pki.tls_ca_path.read_bytes()))
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == B_OID
    assert B_OID.startswith("1.3.6.1.4.1.99999.") and B_OID not in (SMSR_OID, SMDP_OID, MNO_OID, EUM_OID)


def test_each_sm_sr_is_an_entity_at_the_other_and_a_s_parties_are_at_b(a, b):
    a_config, b_config = Config.load(a[0]), Config.load(b[0])
    at_a, at_b = entities(a_config), entities(b_config)
    b_cert = cert_sha256(DevPki.load(b_config.pki_dir).tls_client(B_OID)[0].read_bytes())
    b_row = {"role": "smsr", "name": "esx SM-SR 3", "endpoint": f"{B_URL}/smsr/es3", "cert_sha256": b_cert,
             "signing_cert_pem": None, "smdps": []}
    assert at_a[B_OID] == at_b[B_OID] == b_row
    assert set(at_a) >= {SMSR_OID, SMDP_OID, MNO_OID, EUM_OID, B_OID}  # and the later peers of this module's tests
    assert sorted(at_b) == sorted([SMSR_OID, SMDP_OID, MNO_OID, EUM_OID, B_OID])
    for oid in (SMSR_OID, SMDP_OID, MNO_OID, EUM_OID):  # as A holds them: endpoint, certificates, the MNO's SM-DPs
        assert at_b[oid] == at_a[oid], oid
    a_pki = DevPki.load(a_config.pki_dir)
    assert at_b[SMSR_OID]["endpoint"] == "http://127.0.0.1:8080/smsr/es3"
    assert at_b[SMSR_OID]["cert_sha256"] == cert_sha256(a_pki.tls_client(SMSR_OID)[0].read_bytes())
    assert at_b[MNO_OID]["smdps"] == [SMDP_OID]
    assert at_b[MNO_OID]["cert_sha256"] == cert_sha256(a_pki.tls_client(MNO_OID)[0].read_bytes())
    assert at_b[EUM_OID]["signing_cert_pem"].encode() == a_pki.eum_cert_pem


def test_b_knows_no_euicc_and_serves_a_s_mno(a, b):
    a_doc = a[1]
    b_config = Config.load(b[0])
    assert not (b[0] / "euicc").exists()
    peer = PeerInProcess(b[0])
    try:
        assert peer.runtime.registry.known_eids() == []
        eid = a_doc["euiccs"][0]["eid"]
        outcome = peer.call("/smsr/es4", request("ES4-GetEISRequest", ("Eid", eid)), MNO_OID)  # a known caller: 8.1.1/3.9
        assert (outcome.status, outcome.code) == ("FAILED", ("8.1.1", "3.9"))
        outcome = peer.call("/smsr/es4", request("ES4-GetEISRequest", ("Eid", eid)), "1.3.6.1.4.1.99999.2.9")
        assert (outcome.status, outcome.code) == ("FAILED", ("1.1", "1.1"))
    finally:
        peer.close()
    assert b_config.smsr_oid == B_OID


def test_a_s_demo_cards_hold_a_s_sms_address(a):
    a_dir, a_doc = a
    for euicc in a_doc["euiccs"]:
        assert Card.load(a_dir / "euicc" / euicc["eid"] / "card.json").smsr_sms_address == "882001"


def test_a_second_peer_gets_the_next_oid_and_address(a, b, tmp_path):
    doc = init_peer(tmp_path / "c", peer_of=a[0], public_url="http://127.0.0.1:8091")
    assert doc["smsr_id"] == "1.3.6.1.4.1.99999.1.4"
    assert Config.load(tmp_path / "c").ota["source_addr"] == "882004"
    assert peer_smsr_identity(4) == ("1.3.6.1.4.1.99999.1.4", "882004")
    assert "1.3.6.1.4.1.99999.1.4" in entities(Config.load(a[0]))
    assert Config.load(b[0]).smsr_oid == B_OID  # B keeps its own


def test_b_on_postgresql_while_a_stays_on_sqlite(a, tmp_path):
    """--database-url: B's own database on another backend; the rows are the same."""
    from tests.e2e.conftest import _postgres_database

    databases = _postgres_database()
    url = next(databases)
    try:
        doc = init_peer(tmp_path / "pg", peer_of=a[0], public_url="http://127.0.0.1:8095", database_url=url)
        config = Config.load(tmp_path / "pg")
        assert config.database_url == url
        at_pg, at_a = entities(config), entities(Config.load(a[0]))
        assert at_pg[doc["smsr_id"]] == at_a[doc["smsr_id"]]
        assert all(at_pg[oid] == at_a[oid] for oid in (SMSR_OID, SMDP_OID, MNO_OID, EUM_OID))
        peer = PeerInProcess(tmp_path / "pg")
        try:
            assert peer.runtime.registry.known_eids() == []
        finally:
            peer.close()
    finally:
        databases.close()


def test_interface_urls_of_an_sm_sr_entity():
    assert smsr_interface_url(f"{B_URL}/smsr/es3", "es7") == f"{B_URL}/smsr/es7"
    assert smsr_interface_url(f"{B_URL}/", "es7") == f"{B_URL}/smsr/es7"  # a base URL added by hand
    assert smsr_interface_url("https://sr.example/base/smsr/es4", "es3") == "https://sr.example/base/smsr/es3"


# -- errors: one line, exit status != 0, nothing made ----------------------------------------------------------------


def error_of(*args) -> str:
    result = esx("init", *args)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), (result.output, result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_a_missing(tmp_path):
    line = error_of("--data-dir", tmp_path / "b", "--peer-of", tmp_path / "nowhere", "--public-url", B_URL)
    assert line == f"Error: --peer-of {tmp_path / 'nowhere'}: no such directory"
    assert not (tmp_path / "b").exists()


def test_a_not_an_esx_instance(tmp_path):
    (tmp_path / "a").mkdir()
    line = error_of("--data-dir", tmp_path / "b", "--peer-of", tmp_path / "a", "--public-url", B_URL)
    assert line.startswith(f"Error: --peer-of {tmp_path / 'a'} is not an esx instance (no esx.json")
    assert not (tmp_path / "b").exists()


def test_a_s_pki_missing(a, tmp_path):
    config = json.loads((a[0] / "esx.json").read_text())
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "esx.json").write_text(json.dumps({**config, "data_dir": str(tmp_path / "a")}))
    line = error_of("--data-dir", tmp_path / "b", "--peer-of", tmp_path / "a", "--public-url", B_URL)
    assert line.startswith(f"Error: --peer-of {tmp_path / 'a'} has no demo PKI ({tmp_path / 'a' / 'pki' / 'pki.json'} "
                           "is missing)")
    assert not (tmp_path / "b").exists()


def test_b_already_initialised(a, b):
    before = (b[0] / "esx.json").read_bytes()
    line = error_of("--data-dir", b[0], "--peer-of", a[0], "--public-url", "http://127.0.0.1:8092")
    assert line == f"Error: {b[0]} is already an esx instance ({b[0] / 'esx.json'}): a peer needs a data directory of its own"
    assert (b[0] / "esx.json").read_bytes() == before
    line = error_of("--data-dir", a[0], "--peer-of", a[0], "--public-url", "http://127.0.0.1:8092")
    assert "is already an esx instance" in line
    line = error_of("--data-dir", b[0])  # plain init on a peer: nothing to complete, nothing changed
    assert line == f"Error: {b[0]} is a peer SM-SR of {a[0].resolve()} (esx init --peer-of): there is nothing to complete"
    assert (b[0] / "esx.json").read_bytes() == before


def test_what_a_peer_cannot_be_given(a, b, tmp_path):
    target = tmp_path / "b"
    assert "is where" in error_of("--data-dir", target, "--peer-of", a[0], "--public-url", "http://127.0.0.1:8080/")
    assert "is itself a peer SM-SR of" in error_of("--data-dir", target, "--peer-of", b[0], "--public-url",
                                                   "http://127.0.0.1:8093")
    assert "--auth mtls: a peer uses the identity mode" in error_of(
        "--data-dir", target, "--peer-of", a[0], "--public-url", "http://127.0.0.1:8093", "--auth", "mtls")
    assert "database of" in error_of("--data-dir", target, "--peer-of", a[0], "--public-url", "http://127.0.0.1:8093",
                                     "--database-url", Config.load(a[0]).database_url)
    for extra in (("--demo", "1"), ("--smsc-port", "2999"), ("--smdp-url", "http://127.0.0.1:9")):
        result = esx("init", "--data-dir", target, "--peer-of", a[0], "--public-url", "http://127.0.0.1:8093", *extra)
        assert result.exit_code == 2 and f"{extra[0]} does not go with --peer-of" in result.output
    assert not (target / "esx.json").exists()


# -- by hand: esx entity add registers an SM-SR with what ES7 needs ---------------------------------------------------


def test_entity_add_registers_an_sm_sr_with_endpoint_and_certificate(a, b, tmp_path):
    cert = DevPki.load(Config.load(b[0]).pki_dir).tls_client(B_OID)[0]
    result = esx("entity", "add", "--data-dir", a[0], "--role", "smsr", "--oid", "1.3.6.1.4.1.99999.1.9",
                 "--name", "SM-SR by hand", "--endpoint", "http://127.0.0.1:8094/smsr/es3", "--cert", cert)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"oid": "1.3.6.1.4.1.99999.1.9", "role": "smsr", "name": "SM-SR by hand",
                                         "endpoint": "http://127.0.0.1:8094/smsr/es3",
                                         "certificate_sha256": cert_sha256(cert.read_bytes())}


def test_entity_add_by_hand_makes_what_peer_of_made(a, b):
    """The README's commands, with B's and A's files: every row at A and at B stays as --peer-of wrote it."""
    a_dir, b_dir = a[0], b[0]
    before = entities(Config.load(a_dir)), entities(Config.load(b_dir))
    pki = {"a": a_dir / "pki", "b": b_dir / "pki"}
    for args in (
        (a_dir, "smsr", B_OID, "esx SM-SR 3", f"{B_URL}/smsr/es3", pki["b"] / f"tls-client-{B_OID}.pem"),
        (b_dir, "smsr", SMSR_OID, "esx SM-SR", "http://127.0.0.1:8080/smsr/es3", pki["a"] / f"tls-client-{SMSR_OID}.pem"),
        (b_dir, "smdp", SMDP_OID, "esx SM-DP", "http://127.0.0.1:8080/smdp/es3", pki["a"] / f"tls-client-{SMDP_OID}.pem"),
    ):
        data_dir, role, oid, name, endpoint, cert = args
        result = esx("entity", "add", "--data-dir", data_dir, "--role", role, "--oid", oid, "--name", name,
                     "--endpoint", endpoint, "--cert", cert)
        assert result.exit_code == 0, result.output
    result = esx("entity", "add", "--data-dir", b_dir, "--role", "mno", "--oid", MNO_OID, "--name", "Demo MNO",
                 "--cert", pki["a"] / f"tls-client-{MNO_OID}.pem", "--smdp", SMDP_OID)
    assert result.exit_code == 0, result.output
    result = esx("entity", "add", "--data-dir", b_dir, "--role", "eum", "--oid", EUM_OID, "--name", "Demo EUM",
                 "--cert", pki["a"] / f"tls-client-{EUM_OID}.pem", "--signing-cert", pki["a"] / "eum.pem")
    assert result.exit_code == 0, result.output
    assert (entities(Config.load(a_dir)), entities(Config.load(b_dir))) == before


# -- esx serve --data-dir B: B's SM-SR and worker, no SMSC of its own -------------------------------------------------


class PeerInProcess(InProcess):
    """B's SM-SR served in process (InProcess makes its own instance; B exists already)."""

    def __init__(self, data_dir: Path) -> None:
        self.config = Config.load(data_dir)
        self.runtime = EsxRuntime(self.config)
        self.db = self.runtime.db
        self.pki = DevPki.load(self.config.pki_dir)
        self.session = requests.Session()
        self.session.mount(f"{BASE}/", WsgiAdapter(make_wsgi(self.config, "smsr", self.runtime)))


def descendants(pid: int) -> list[str]:
    """The command lines of every process under ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        try:
            found.append((Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
        todo += children.get(child, [])
    return found


def test_serving_b_starts_its_worker_on_a_s_smsc_and_no_smsc_of_its_own(a, tmp_path):
    port = free_port()
    b_dir = tmp_path / "b"
    assert esx("init", "--data-dir", b_dir, "--peer-of", a[0], "--public-url", f"http://127.0.0.1:{port}").exit_code == 0
    a_config = Config.load(a[0])
    # A's SMSC (A's esx smsc would be the same server: euicc_sim.network's LoopbackSmsc on A's port and account)
    smsc = LoopbackSmsc("127.0.0.1", int(a_config.ota["smsc_port"]), system_id="esx", password=a_config.ota["password"])
    smsc.start()
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "esx.cli", "serve", "--data-dir", str(b_dir), "--bind",
                             f"127.0.0.1:{port}", "--workers", "1"],
                            stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/smsr/es4?wsdl", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
        address = Config.load(b_dir).ota["source_addr"]  # A's third peer in this module: 882005
        while smsc.bound_addresses() != [address]:  # B's worker, bound to A's SMSC with B's address
            assert time.monotonic() < deadline, (smsc.bound_addresses(), log.read_text()[-2000:])
            time.sleep(0.1)
        commands = descendants(proc.pid)
        assert any(" worker --data-dir " in c for c in commands), commands
        assert not any(" smsc " in c for c in commands), commands
        assert not any("--role smdp" in c for c in commands), commands  # no SM-DP worker: B has no SM-DP
        assert requests.get(f"http://127.0.0.1:{port}/smdp/es2?wsdl", timeout=5).status_code == 404
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        smsc.stop()


def test_b_serves_no_sm_dp_and_runs_no_smsc(a, b):
    result = esx("serve", "--data-dir", b[0], "--role", "all")
    assert result.exit_code == 2 and "it serves the SM-SR role only" in result.output
    result = esx("smsc", "--data-dir", b[0])
    assert result.exit_code == 1 and "uses the SMSC of" in result.output
