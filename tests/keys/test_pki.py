from __future__ import annotations

import datetime
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from keys.gp_cert import CERT_TYPE_SMDP, CERT_TYPE_SMSR, KEY_AGREEMENT, SIGNATURE_VERIFICATION, parse_gp_certificate
from keys.pki import DevPki, load_private_key, new_key, private_key_pem

from .conftest import EID, EUM_OID, MNO_OID, OIDS, SMDP_OID, SMSR_OID


def snapshot(pki: DevPki) -> dict:
    """Everything a DevPki holds, as comparable values."""
    return {
        "oids": (pki.smdp_oid, pki.smsr_oid, pki.eum_oid, pki.mno_oid),
        "ci": pki.ci_cert_pem,
        "ci_key": private_key_pem(pki.ci_key),
        "eum": pki.eum_cert_pem,
        "eum_key": private_key_pem(pki.eum_key),
        "smdp": pki.smdp_gp_cert,
        "smdp_key": private_key_pem(pki.smdp_key),
        "smsr": pki.smsr_gp_cert,
        "smsr_key": private_key_pem(pki.smsr_key),
        "tls": (pki.tls_ca_path, pki.tls_server_cert_path, pki.tls_server_key_path),
        "clients": {oid: pki.tls_client(oid) for oid in pki.tls_client_oids},
    }


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.name != ".lock"}


def test_generate_then_load(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    generated = DevPki.generate(directory, **OIDS)
    assert snapshot(DevPki.load(directory)) == snapshot(generated)
    assert generated.tls_client_oids == (SMDP_OID, SMSR_OID, EUM_OID, MNO_OID)


def test_generate_is_idempotent(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    first = DevPki.generate(directory, **OIDS)
    before = files(directory)
    second = DevPki.generate(directory, **OIDS)
    assert files(directory) == before
    assert snapshot(second) == snapshot(first)


def test_generate_refuses_other_oids(tmp_path: Path) -> None:
    DevPki.generate(tmp_path, **OIDS)
    with pytest.raises(ValueError):
        DevPki.generate(tmp_path, **{**OIDS, "mno_oid": "1.2.3.4.5"})


def test_generate_refuses_bad_oid(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        DevPki.generate(tmp_path, **{**OIDS, "smdp_oid": "../../etc"})


def test_key_files_are_private(pki: DevPki) -> None:
    keys = sorted(pki.directory.glob("*.key.pem"))
    assert len(keys) == 4 + 2 + 4  # ci, eum, smdp, smsr; tls ca + server; 4 clients
    for path in keys:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(pki.directory.stat().st_mode) == 0o700
    assert not list(pki.directory.glob(".*.tmp"))


def test_ci_and_eum(pki: DevPki) -> None:
    ci, eum = pki.ci_cert, pki.eum_cert
    assert ci.subject == ci.issuer
    assert ci.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    constraints = eum.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (constraints.ca, constraints.path_length) == (True, 0)
    assert EUM_OID in eum.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert eum.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature  # signs the EIS
    assert eum.public_key() == pki.eum_key.public_key()
    assert ci.public_key() == pki.ci_key.public_key()


@pytest.mark.parametrize(
    ("name", "cert_type", "oid"), [("smdp", CERT_TYPE_SMDP, SMDP_OID), ("smsr", CERT_TYPE_SMSR, SMSR_OID)]
)
def test_gp_certificates(pki: DevPki, name: str, cert_type: int, oid: str) -> None:
    cert = parse_gp_certificate(getattr(pki, f"{name}_gp_cert"))
    assert cert.cert_type == cert_type
    assert cert.subject_id == oid.encode()
    assert cert.key_usage == SIGNATURE_VERIFICATION
    ski = pki.ci_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert cert.ca_id == cert.authority_key_id == ski
    assert cert.public_key() == getattr(pki, f"{name}_key").public_key()
    assert (pki.directory / f"{name}.gp.hex").read_text().strip() == cert.raw.hex().upper()


@pytest.mark.parametrize("curve", ["P-256", "brainpoolP256r1"])
def test_issue_ecasd(pki: DevPki, curve: str) -> None:
    key, raw = pki.issue_ecasd(EID, curve)
    cert = parse_gp_certificate(raw)
    assert cert.subject_id == bytes.fromhex(EID)
    assert cert.key_usage == KEY_AGREEMENT
    assert cert.public_key() == key.public_key()
    assert cert.curve_ref == {"P-256": 0x00, "brainpoolP256r1": 0x03}[curve]
    lifetime = cert.expiry_date - datetime.date.today()
    assert datetime.timedelta(days=9 * 365) < lifetime <= datetime.timedelta(days=11 * 366)


def test_issue_ecasd_rejects_bad_input(pki: DevPki) -> None:
    with pytest.raises(ValueError):
        pki.issue_ecasd("not hex")
    with pytest.raises(ValueError):
        pki.issue_ecasd(EID, "secp192r1")


def test_issue_smsr(pki: DevPki) -> None:
    """A second SM-SR's certificate, by the same CI: it verifies as CERT.SR.ECDSA like the PKI's own."""
    from keys.chain import verify_gp_cert_by_ci
    from keys.errors import CertificateError

    other_oid = "1.3.6.1.4.1.99999.1.9"  # a second SM-SR
    key, raw = pki.issue_smsr(other_oid)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = verify_gp_cert_by_ci(pki.ci_cert_pem, raw, now, "smsr")
    assert (cert.cert_type, cert.subject_id, cert.key_usage) == (CERT_TYPE_SMSR, other_oid.encode(),
                                                                SIGNATURE_VERIFICATION)
    assert cert.public_key() == key.public_key() != pki.smsr_key.public_key()
    with pytest.raises(CertificateError) as e:  # an SM-SR certificate is no SM-DP certificate
        verify_gp_cert_by_ci(pki.ci_cert_pem, raw, now, "smdp")
    assert e.value.kind == "usage"
    given = new_key()
    _, expired = pki.issue_smsr(other_oid, key=given, expiry=datetime.date(2020, 1, 1))
    assert parse_gp_certificate(expired).public_key() == given.public_key()
    with pytest.raises(CertificateError) as e:
        verify_gp_cert_by_ci(pki.ci_cert_pem, expired, now, "smsr")
    assert e.value.kind == "expired"
    with pytest.raises(ValueError):
        pki.issue_smsr("../etc")


def test_tls_clients(pki: DevPki) -> None:
    ca = x509.load_pem_x509_certificate(pki.tls_ca_path.read_bytes())
    for oid in (SMDP_OID, SMSR_OID, EUM_OID, MNO_OID):
        cert_path, key_path = pki.tls_client(oid)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == oid
        assert cert.issuer == ca.subject
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        assert load_private_key(key_path.read_bytes()).public_key() == cert.public_key()
    with pytest.raises(KeyError):
        pki.tls_client("9.9.9")


def test_tls_server(pki: DevPki) -> None:
    cert = x509.load_pem_x509_certificate(pki.tls_server_cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert load_private_key(pki.tls_server_key_path.read_bytes()).public_key() == cert.public_key()


def test_mutual_tls_handshake_in_memory(pki: DevPki) -> None:
    """The files work with the ssl module: server by IP 127.0.0.1, client certificate required."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki.tls_server_cert_path, pki.tls_server_key_path)
    server_ctx.load_verify_locations(pki.tls_ca_path)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(pki.tls_ca_path)
    client_ctx.load_cert_chain(*pki.tls_client(MNO_OID))

    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, end in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    assert all(done.values())
    subject = dict(rdn[0] for rdn in server.getpeercert()["subject"])
    assert subject["commonName"] == MNO_OID


def test_private_key_pem_round_trip() -> None:
    key = new_key("brainpoolP256r1")
    pem = private_key_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert load_private_key(pem).private_numbers() == key.private_numbers()


def test_load_private_key_refuses_non_ec() -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(TypeError):
        load_private_key(pem)
