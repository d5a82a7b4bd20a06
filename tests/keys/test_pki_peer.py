"""A second SM-SR's PKI issued from an existing development PKI (DevPki.issue_peer_smsr): its own CERT.SR.ECDSA by the
one CI, its own TLS certificates by the one TLS CA, and nobody else's private key.

Signatures are checked with tests/keys/reference.py (the '7F21' split and a raw ECDSA verify written from the spec
text), not with the code that made them.
"""
from __future__ import annotations

import json
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from keys.gp_cert import CERT_TYPE_SMSR, SIGNATURE_VERIFICATION, parse_gp_certificate
from keys.pki import DevPki, load_private_key

from . import reference as ref
from .conftest import EID, EUM_OID, MNO_OID, OIDS, SMDP_OID

PEER_OID = "1.3.6.1.4.1.99999.1.7"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory) -> DevPki:
    return DevPki.generate(tmp_path_factory.mktemp("a") / "pki", **OIDS)


@pytest.fixture(scope="module")
def peer(issuer: DevPki, tmp_path_factory) -> DevPki:
    return issuer.issue_peer_smsr(tmp_path_factory.mktemp("b") / "pki", smsr_oid=PEER_OID)


def test_the_peers_sm_sr_certificate_is_signed_by_the_one_ci(issuer: DevPki, peer: DevPki) -> None:
    signed, signature = ref.gp_certificate_split(peer.smsr_gp_cert)
    assert ref.verify_raw(issuer.ci_cert.public_key(), signed, signature)
    assert not ref.verify_raw(ec.generate_private_key(ec.SECP256R1()).public_key(), signed, signature)
    cert = parse_gp_certificate(peer.smsr_gp_cert)
    assert (cert.cert_type, cert.subject_id, cert.key_usage) == (CERT_TYPE_SMSR, PEER_OID.encode(),
                                                                  SIGNATURE_VERIFICATION)
    ci_ski = issuer.ci_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert cert.ca_id == cert.authority_key_id == ci_ski
    assert cert.public_key() == peer.smsr_key.public_key() != issuer.smsr_key.public_key()
    assert peer.smsr_gp_cert != issuer.smsr_gp_cert


def test_the_peer_trusts_the_same_ci_and_holds_no_key_but_its_own(issuer: DevPki, peer: DevPki) -> None:
    assert peer.ci_cert_pem == issuer.ci_cert_pem and peer.eum_cert_pem == issuer.eum_cert_pem
    assert peer.smdp_gp_cert == issuer.smdp_gp_cert
    assert peer.tls_ca_path.read_bytes() == issuer.tls_ca_path.read_bytes()
    assert (peer.ci_key, peer.eum_key, peer.smdp_key) == (None, None, None)
    assert sorted(p.name for p in peer.directory.glob("*.key.pem")) == [
        "smsr.key.pem", f"tls-client-{PEER_OID}.key.pem", "tls-server.key.pem"]
    for path in peer.directory.glob("*.key.pem"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (peer.smsr_oid, peer.smdp_oid, peer.eum_oid, peer.mno_oid) == (PEER_OID, SMDP_OID, EUM_OID, MNO_OID)
    assert peer.tls_client_oids == (PEER_OID,)
    assert peer.issued_by == issuer.directory.resolve()
    assert json.loads((peer.directory / "pki.json").read_text())["issued_by"] == str(issuer.directory.resolve())
    with pytest.raises(ValueError, match="holds no EUM key"):
        peer.issue_ecasd(EID)
    with pytest.raises(ValueError, match="holds no CI key"):
        peer.issue_eum()
    with pytest.raises(ValueError, match="holds no CI key"):
        peer.issue_smsr("1.3.6.1.4.1.99999.1.8")


def test_the_peers_tls_certificates_come_from_the_one_tls_ca(issuer: DevPki, peer: DevPki) -> None:
    ca = x509.load_pem_x509_certificate(issuer.tls_ca_path.read_bytes())
    cert_path, key_path = peer.tls_client(PEER_OID)
    client = x509.load_pem_x509_certificate(cert_path.read_bytes())
    client.verify_directly_issued_by(ca)
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == PEER_OID
    assert list(client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    assert load_private_key(key_path.read_bytes()).public_key() == client.public_key()
    server = x509.load_pem_x509_certificate(peer.tls_server_cert_path.read_bytes())
    server.verify_directly_issued_by(ca)
    assert server.public_key() != x509.load_pem_x509_certificate(issuer.tls_server_cert_path.read_bytes()).public_key()
    # Mutual TLS both ways: A's server takes B's client certificate, B's server takes A's MNO's.
    assert handshake(issuer, peer.tls_client(PEER_OID)) == PEER_OID
    assert handshake(peer, issuer.tls_client(MNO_OID)) == MNO_OID


def handshake(server_pki: DevPki, client: tuple[Path, Path]) -> str:
    """An in-memory TLS handshake, client certificate required, each end trusting its own PKI's TLS CA; the client
    certificate's CN as the server saw it."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(server_pki.tls_server_cert_path, server_pki.tls_server_key_path)
    server_ctx.load_verify_locations(server_pki.tls_ca_path)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(server_pki.tls_ca_path)
    client_ctx.load_cert_chain(*client)
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    ends = {"client": client_ctx.wrap_bio(c_in, c_out, server_hostname="127.0.0.1"),
            "server": server_ctx.wrap_bio(s_in, s_out, server_side=True)}
    done: set[str] = set()
    for _ in range(10):
        for name, end in ends.items():
            if name not in done:
                try:
                    end.do_handshake()
                    done.add(name)
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    assert done == {"client", "server"}
    return dict(rdn[0] for rdn in ends["server"].getpeercert()["subject"])["commonName"]


def test_issuing_again_loads_what_is_there_and_refuses_another(issuer: DevPki, peer: DevPki, tmp_path: Path) -> None:
    before = {p.name: p.read_bytes() for p in peer.directory.iterdir() if p.name != ".lock"}
    again = issuer.issue_peer_smsr(peer.directory, smsr_oid=PEER_OID)
    assert {p.name: p.read_bytes() for p in peer.directory.iterdir() if p.name != ".lock"} == before
    assert again.smsr_gp_cert == peer.smsr_gp_cert
    with pytest.raises(ValueError, match="not a peer"):
        issuer.issue_peer_smsr(peer.directory, smsr_oid="1.3.6.1.4.1.99999.1.8")
    with pytest.raises(ValueError, match="already an entity"):
        issuer.issue_peer_smsr(tmp_path / "c", smsr_oid=issuer.smsr_oid)
    with pytest.raises(ValueError, match="dotted OID"):
        issuer.issue_peer_smsr(tmp_path / "c", smsr_oid="../x")
    with pytest.raises(ValueError, match="holds no CI or TLS CA key"):  # a peer issues no peer: no second CI
        peer.issue_peer_smsr(tmp_path / "c", smsr_oid="1.3.6.1.4.1.99999.1.8")
    assert not (tmp_path / "c").exists()
