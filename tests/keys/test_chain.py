from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from keys.chain import verify_ecasd_chain, verify_gp_cert_by_ci, verify_x509_issued_by
from keys.errors import CertificateError
from keys.gp_cert import KEY_AGREEMENT, SIGNATURE_VERIFICATION, build_gp_certificate
from keys.pki import DevPki, certificate_pem, make_ci, make_eum

from .conftest import EID, EUM_OID

UTC = datetime.timezone.utc
NOW = datetime.datetime.now(UTC)
YEAR = datetime.timedelta(days=365)


@contextlib.contextmanager
def raises(which: str, kind: str) -> Iterator[None]:
    """Expect CertificateError with exactly this which/kind."""
    with pytest.raises(CertificateError) as info:
        yield
    assert (info.value.which, info.value.kind) == (which, kind), str(info.value)


def x509_cert(
    *,
    subject: x509.Name,
    issuer: x509.Name,
    subject_key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    ca: bool,
    aki_from: ec.EllipticCurvePrivateKey | None = None,
) -> x509.Certificate:
    """A hand-made certificate for the cases DevPki does not produce."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - YEAR)
        .not_valid_after(NOW + YEAR)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False)
    )
    if aki_from is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(aki_from.public_key()), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


# --- ECASD chain -------------------------------------------------------------------------------------------------


def test_good_chain(pki: DevPki) -> None:
    key, cert = pki.issue_ecasd(EID)
    parsed = verify_ecasd_chain(pki.ci_cert_pem, pki.eum_cert_pem, cert, NOW)
    assert parsed.subject_id.hex() == EID
    assert parsed.public_key() == key.public_key()


def test_good_chain_brainpool_ecasd(pki: DevPki) -> None:
    key, cert = pki.issue_ecasd(EID, curve="brainpoolP256r1")
    parsed = verify_ecasd_chain(pki.ci_cert_pem, pki.eum_cert_pem, cert, NOW)
    assert parsed.curve_ref == 0x03
    assert parsed.public_key() == key.public_key()


def test_naive_datetime_is_utc(pki: DevPki) -> None:
    _, cert = pki.issue_ecasd(EID)
    verify_ecasd_chain(pki.ci_cert_pem, pki.eum_cert_pem, cert, NOW.replace(tzinfo=None))


def test_expired_eum(pki: DevPki) -> None:
    eum_key, eum_pem = pki.issue_eum(not_before=NOW - 3 * YEAR, not_after=NOW - datetime.timedelta(days=1))
    _, cert = pki.issue_ecasd(EID, eum_key=eum_key, eum_cert_pem=eum_pem)
    with raises("eum", "expired"):
        verify_ecasd_chain(pki.ci_cert_pem, eum_pem, cert, NOW)


def test_eum_not_yet_valid(pki: DevPki) -> None:
    eum_key, eum_pem = pki.issue_eum(not_before=NOW + YEAR, not_after=NOW + 2 * YEAR)
    _, cert = pki.issue_ecasd(EID, eum_key=eum_key, eum_cert_pem=eum_pem)
    with raises("eum", "not_yet_valid"):
        verify_ecasd_chain(pki.ci_cert_pem, eum_pem, cert, NOW)


def test_eum_signed_by_unknown_ci(pki: DevPki) -> None:
    # Same CI name, other key: the AKI names the other CI's key.
    rogue_ci_key, rogue_ci = make_ci()
    eum_key, eum_pem = pki.issue_eum(ci_key=rogue_ci_key, ci_cert_pem=certificate_pem(rogue_ci))
    _, cert = pki.issue_ecasd(EID, eum_key=eum_key, eum_cert_pem=eum_pem)
    with raises("eum", "untrusted"):
        verify_ecasd_chain(pki.ci_cert_pem, eum_pem, cert, NOW)


def test_eum_signed_by_unknown_ci_without_aki(pki: DevPki) -> None:
    # Nothing but the signature tells the rogue EUM apart.
    rogue_ci_key = ec.generate_private_key(ec.SECP256R1())
    eum_key = ec.generate_private_key(ec.SECP256R1())
    eum = x509_cert(
        subject=x509.Name.from_rfc4514_string(f"CN=EUM {EUM_OID}"),
        issuer=pki.ci_cert.subject,
        subject_key=eum_key,
        signer=rogue_ci_key,
        ca=True,
    )
    _, cert = pki.issue_ecasd(EID, eum_key=eum_key, eum_cert_pem=certificate_pem(eum))
    with raises("eum", "signature"):
        verify_ecasd_chain(pki.ci_cert_pem, certificate_pem(eum), cert, NOW)


def test_eum_with_other_issuer_name(pki: DevPki) -> None:
    other_ci_key, other_ci = make_ci(common_name="somebody else's CI")
    _, eum = make_eum(other_ci_key, other_ci, EUM_OID)
    with raises("eum", "untrusted"):
        verify_ecasd_chain(pki.ci_cert_pem, certificate_pem(eum), pki.issue_ecasd(EID)[1], NOW)


def test_expired_ci(pki: DevPki) -> None:
    _, cert = pki.issue_ecasd(EID)
    with raises("ci", "expired"):
        verify_ecasd_chain(pki.ci_cert_pem, pki.eum_cert_pem, cert, NOW + 40 * YEAR)


def test_ci_that_is_not_a_root(pki: DevPki) -> None:
    # The EUM offered as the CI: not self-signed.
    with raises("ci", "untrusted"):
        verify_ecasd_chain(pki.eum_cert_pem, pki.eum_cert_pem, pki.issue_ecasd(EID)[1], NOW)


def test_garbage_pem(pki: DevPki) -> None:
    with raises("ci", "format"):
        verify_ecasd_chain(b"not a certificate", pki.eum_cert_pem, pki.issue_ecasd(EID)[1], NOW)
    with raises("eum", "format"):
        verify_ecasd_chain(pki.ci_cert_pem, b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                           pki.issue_ecasd(EID)[1], NOW)


def test_expired_ecasd(pki: DevPki) -> None:
    _, cert = pki.issue_ecasd(EID, expiry=NOW.date() - datetime.timedelta(days=1))
    with raises("ecasd", "expired"):
        verify_ecasd_chain(pki.ci_cert_pem, pki.eum_cert_pem, cert, NOW)


def test_ecasd_not_yet_valid(pki: DevPki) -> None:
    _, cert = pki.issue_ecasd(EID, effective=NOW.date() + datetime.timedelta(days=2))
    with raises("ecasd", "not_yet_valid"):
        verify_ecasd_chain(pki.ci_cert_pem, pki.eum_cert_pem, cert, NOW)


def test_ecasd_signed_by_another_eum(pki: DevPki) -> None:
    other_key, other_pem = pki.issue_eum("1.3.6.1.4.1.99999.2.3")
    _, cert = pki.issue_ecasd(EID, eum_key=other_key, eum_cert_pem=other_pem)
    verify_ecasd_chain(pki.ci_cert_pem, other_pem, cert, NOW)  # fine under its own EUM
    with raises("ecasd", "untrusted"):  # its 'C9' AKI names the other EUM
        verify_ecasd_chain(pki.ci_cert_pem, pki.eum_cert_pem, cert, NOW)


def test_ecasd_signed_by_another_key_without_aki(pki: DevPki) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    cert = build_gp_certificate(
        serial=b"\x01",
        ca_id=b"\x02",
        subject_id=bytes.fromhex(EID),
        key_usage=KEY_AGREEMENT,
        expiry=NOW.date() + YEAR,
        public_key=other.public_key(),
        signer=other,
    )
    with raises("ecasd", "signature"):
        verify_ecasd_chain(pki.ci_cert_pem, pki.eum_cert_pem, cert, NOW)


def test_ecasd_wrong_key_usage(pki: DevPki) -> None:
    _, cert = pki.issue_ecasd(EID, key_usage=SIGNATURE_VERIFICATION)
    with raises("ecasd", "usage"):
        verify_ecasd_chain(pki.ci_cert_pem, pki.eum_cert_pem, cert, NOW)


def test_ecasd_garbage(pki: DevPki) -> None:
    with raises("ecasd", "format"):
        verify_ecasd_chain(pki.ci_cert_pem, pki.eum_cert_pem, b"\x7F\x21\x01\x00", NOW)


def test_ecasd_under_an_eum_that_is_not_a_ca(pki: DevPki) -> None:
    eum_key = ec.generate_private_key(ec.SECP256R1())
    eum = x509_cert(
        subject=x509.Name.from_rfc4514_string(f"CN=EUM {EUM_OID}"),
        issuer=pki.ci_cert.subject,
        subject_key=eum_key,
        signer=pki.ci_key,
        ca=False,
        aki_from=pki.ci_key,
    )
    _, cert = pki.issue_ecasd(EID, eum_key=eum_key, eum_cert_pem=certificate_pem(eum))
    with raises("ecasd", "untrusted"):
        verify_ecasd_chain(pki.ci_cert_pem, certificate_pem(eum), cert, NOW)


# --- SM-DP / SM-SR certificates ----------------------------------------------------------------------------------


def test_smdp_and_smsr_certificates(pki: DevPki) -> None:
    smdp = verify_gp_cert_by_ci(pki.ci_cert_pem, pki.smdp_gp_cert, NOW, "smdp")
    smsr = verify_gp_cert_by_ci(pki.ci_cert_pem, pki.smsr_gp_cert, NOW, "smsr")
    assert smdp.public_key() == pki.smdp_key.public_key()
    assert smsr.public_key() == pki.smsr_key.public_key()


def test_smdp_certificate_presented_as_smsr(pki: DevPki) -> None:
    with raises("smsr", "usage"):
        verify_gp_cert_by_ci(pki.ci_cert_pem, pki.smdp_gp_cert, NOW, "smsr")


def test_smdp_certificate_expired(pki: DevPki) -> None:
    with raises("smdp", "expired"):
        verify_gp_cert_by_ci(pki.ci_cert_pem, pki.smdp_gp_cert, NOW + 11 * YEAR, "smdp")


def test_smdp_certificate_from_another_ci(pki: DevPki) -> None:
    _, rogue = make_ci()
    with raises("smdp", "untrusted"):
        verify_gp_cert_by_ci(certificate_pem(rogue), pki.smdp_gp_cert, NOW, "smdp")


def test_smdp_certificate_with_key_agreement_usage(pki: DevPki) -> None:
    # An ECASD-style certificate signed by the CI key is still not a signing certificate.
    cert = build_gp_certificate(
        serial=b"\x01",
        ca_id=b"\x02",
        subject_id=b"1.2.3",
        key_usage=KEY_AGREEMENT,
        expiry=NOW.date() + YEAR,
        public_key=pki.smdp_key.public_key(),
        signer=pki.ci_key,
    )
    with raises("smdp", "usage"):
        verify_gp_cert_by_ci(pki.ci_cert_pem, cert, NOW, "smdp")


# --- X.509 link ----------------------------------------------------------------------------------------------------


def test_tls_server_issued_by_tls_ca(pki: DevPki) -> None:
    server = x509.load_pem_x509_certificate(pki.tls_server_cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate(pki.tls_ca_path.read_bytes())
    verify_x509_issued_by(server, ca, NOW, "tls")
    with raises("tls", "untrusted"):
        verify_x509_issued_by(server, pki.ci_cert, NOW, "tls")


def test_leaf_cannot_issue(pki: DevPki) -> None:
    leaf = x509.load_pem_x509_certificate(pki.tls_client(pki.mno_oid)[0].read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    child = x509_cert(
        subject=x509.Name.from_rfc4514_string("CN=child"),
        issuer=leaf.subject,
        subject_key=key,
        signer=key,  # irrelevant: the CA check comes first
        ca=False,
    )
    with raises("tls", "untrusted"):
        verify_x509_issued_by(child, leaf, NOW, "tls")
