"""Certificate chains of SGP.02: CI root (X.509) → EUM (X.509) → ECASD (GP '7F21'), and CI → SM-DP / SM-SR (GP).

Every failure raises :class:`keys.errors.CertificateError` naming the certificate (``which``) and the failure
(``kind``). The checks, per link:

``verify_x509_issued_by`` (X.509 cert issued by an X.509 issuer)
    1. issuer name chaining (cert.issuer == issuer.subject)        → ``untrusted``
    2. AKI of the cert == SKI of the issuer, when both are present → ``untrusted``
    3. issuer is a CA (basicConstraints cA=TRUE, and keyCertSign when keyUsage is present) → ``untrusted``
    4. ECDSA signature with the issuer key                         → ``signature``
    5. validity window at ``at``                                   → ``not_yet_valid`` / ``expired``

GP certificate under an X.509 issuer (ECASD under EUM, SM-DP/SM-SR under CI)
    1. parse                                                        → ``format``
    2. issuer is a CA, as above                                     → ``untrusted``
    3. 'C9' AKI == SKI of the issuer, when both are present         → ``untrusted``
    4. signature, then effective/expiration dates                   → ``signature`` / ``not_yet_valid`` / ``expired``
    5. key usage (and certificate type for SM-DP/SM-SR)             → ``usage``
    6. the subject public key decodes on a supported curve          → ``format``

The CI is trusted because the caller passes it (it is the configured root); it must still be a well-formed,
self-signed, currently valid CA certificate.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from keys.errors import CertificateError
from keys.gp_cert import (
    CERT_TYPE_SMDP,
    CERT_TYPE_SMSR,
    KEY_AGREEMENT,
    SIGNATURE_VERIFICATION,
    GpCertificate,
    key_usage_equals,
    parse_gp_certificate,
    verify_gp_certificate,
)

__all__ = ["load_x509_pem", "verify_x509_issued_by", "verify_ci_root", "verify_ecasd_chain", "verify_gp_cert_by_ci"]

# Which certificate type ('C8') a GP certificate checked as ``which`` must carry, when it carries one.
_EXPECTED_CERT_TYPE = {"smdp": CERT_TYPE_SMDP, "smsr": CERT_TYPE_SMSR}


def _utc(at: datetime.datetime) -> datetime.datetime:
    """Aware UTC datetime; a naive ``at`` is taken as UTC."""
    if at.tzinfo is None:
        return at.replace(tzinfo=datetime.timezone.utc)
    return at.astimezone(datetime.timezone.utc)


def load_x509_pem(pem: bytes, which: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except (ValueError, TypeError) as e:
        raise CertificateError(which, "format", f"not a PEM X.509 certificate: {e}") from None


def _extension(cert: x509.Certificate, cls: type):
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None
    except ValueError as e:  # duplicate or undecodable extension
        raise CertificateError("x509", "format", str(e)) from None


def _subject_key_id(cert: x509.Certificate) -> bytes | None:
    ski = _extension(cert, x509.SubjectKeyIdentifier)
    return ski.digest if ski is not None else None


def _authority_key_id(cert: x509.Certificate) -> bytes | None:
    aki = _extension(cert, x509.AuthorityKeyIdentifier)
    return aki.key_identifier if aki is not None else None


def _require_ca(issuer: x509.Certificate, which: str) -> None:
    """The issuer may sign certificates: basicConstraints cA=TRUE and, if keyUsage is present, keyCertSign."""
    try:
        constraints = _extension(issuer, x509.BasicConstraints)
        usage = _extension(issuer, x509.KeyUsage)
    except CertificateError as e:
        raise e.renamed(which) from None
    if constraints is None or not constraints.ca:
        raise CertificateError(which, "untrusted", f"issuer {issuer.subject.rfc4514_string()} is not a CA")
    if usage is not None and not usage.key_cert_sign:
        raise CertificateError(which, "untrusted", f"issuer {issuer.subject.rfc4514_string()} lacks keyCertSign")


def _issuer_ec_key(issuer: x509.Certificate, which: str) -> ec.EllipticCurvePublicKey:
    key = issuer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise CertificateError(which, "signature", "issuer key is not an EC key (SGP.02 uses ECDSA only)")
    return key


def verify_x509_issued_by(
    cert: x509.Certificate, issuer: x509.Certificate, at: datetime.datetime, which: str
) -> None:
    """Check that ``issuer`` issued ``cert`` and that ``cert`` is valid at ``at``. See the module docstring."""
    if cert.issuer != issuer.subject:
        raise CertificateError(
            which,
            "untrusted",
            f"issuer name {cert.issuer.rfc4514_string()} is not {issuer.subject.rfc4514_string()}",
        )
    try:
        aki, ski = _authority_key_id(cert), _subject_key_id(issuer)
    except CertificateError as e:
        raise e.renamed(which) from None
    if aki is not None and ski is not None and aki != ski:
        raise CertificateError(which, "untrusted", f"authority key id {aki.hex()} is not the issuer's {ski.hex()}")
    _require_ca(issuer, which)

    key = _issuer_ec_key(issuer, which)
    hash_algorithm = cert.signature_hash_algorithm
    if hash_algorithm is None or hash_algorithm.name not in ("sha256", "sha384", "sha512"):
        raise CertificateError(which, "signature", f"signature algorithm {cert.signature_algorithm_oid} not allowed")
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hash_algorithm))
    except InvalidSignature:
        raise CertificateError(which, "signature", "signature does not verify with the issuer key") from None

    now = _utc(at)
    if now < cert.not_valid_before_utc:
        raise CertificateError(which, "not_yet_valid", f"valid from {cert.not_valid_before_utc}, checked at {now}")
    if now > cert.not_valid_after_utc:
        raise CertificateError(which, "expired", f"expired at {cert.not_valid_after_utc}, checked at {now}")


def verify_ci_root(ci_pem: bytes, at: datetime.datetime) -> x509.Certificate:
    """Load the CI root and check it is a self-signed CA certificate valid at ``at``."""
    ci = load_x509_pem(ci_pem, "ci")
    verify_x509_issued_by(ci, ci, at, "ci")
    return ci


def _verify_gp_under_x509(
    data: bytes, issuer: x509.Certificate, at: datetime.datetime, which: str
) -> GpCertificate:
    cert = parse_gp_certificate(data, which=which)
    _require_ca(issuer, which)
    try:
        ski = _subject_key_id(issuer)
    except CertificateError as e:
        raise e.renamed(which) from None
    if cert.authority_key_id is not None and ski is not None and cert.authority_key_id != ski:
        raise CertificateError(
            which, "untrusted", f"authority key id {cert.authority_key_id.hex()} is not the issuer's {ski.hex()}"
        )
    verify_gp_certificate(cert, _issuer_ec_key(issuer, which), _utc(at), which=which)
    return cert


def _require_public_key(cert: GpCertificate, which: str) -> None:
    try:
        cert.public_key()
    except CertificateError as e:
        raise e.renamed(which) from None


def verify_ecasd_chain(ci_pem: bytes, eum_pem: bytes, ecasd_cert: bytes, at: datetime.datetime) -> GpCertificate:
    """CI root → EUM (X.509) → CERT.ECASD.ECKA (GP, key usage key agreement). Returns the parsed ECASD certificate."""
    ci = verify_ci_root(ci_pem, at)
    eum = load_x509_pem(eum_pem, "eum")
    verify_x509_issued_by(eum, ci, at, "eum")
    cert = _verify_gp_under_x509(ecasd_cert, eum, at, "ecasd")
    if not key_usage_equals(cert.key_usage, KEY_AGREEMENT):
        raise CertificateError("ecasd", "usage", f"key usage {cert.key_usage.hex()} is not key agreement (0080)")
    _require_public_key(cert, "ecasd")
    return cert


def verify_gp_cert_by_ci(
    ci_pem: bytes,
    cert: bytes,
    at: datetime.datetime,
    which: str,
    *,
    key_usage: bytes = SIGNATURE_VERIFICATION,
) -> GpCertificate:
    """CI root → GP certificate (CERT.DP.ECDSA with ``which='smdp'``, CERT.SR.ECDSA with ``which='smsr'``).

    The key usage must equal ``key_usage``; a 'C8' certificate type, when present, must match ``which``.
    """
    ci = verify_ci_root(ci_pem, at)
    parsed = _verify_gp_under_x509(cert, ci, at, which)
    if not key_usage_equals(parsed.key_usage, key_usage):
        raise CertificateError(which, "usage", f"key usage {parsed.key_usage.hex()} is not {key_usage.hex()}")
    expected_type = _EXPECTED_CERT_TYPE.get(which)
    if parsed.cert_type is not None and expected_type is not None and parsed.cert_type != expected_type:
        raise CertificateError(
            which, "usage", f"certificate type {parsed.cert_type:02X} is not {expected_type:02X} ({which})"
        )
    _require_public_key(cert=parsed, which=which)
    return parsed
