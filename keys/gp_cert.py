"""GlobalPlatform '7F21' certificates: CERT.ECASD.ECKA, CERT.DP.ECDSA and CERT.SR.ECDSA of SGP.02.

Layout (crypto-ota.md §1.5; GPCS 2.3.1 Amd A Table 3-6 / Amd F Table 6-1 as read by GlobalPlatformPro;
SGP.02 Table 23 for the ECASD and Tables 77/78 for the SM-DP/SM-SR, not checked against the PDF)::

    '7F21' {
        '93'   certificate serial number
        '42'   CA (issuer) identifier
        '5F20' subject identifier            (ECASD: the EID)
        '95'   key usage                     (KEY_AGREEMENT or SIGNATURE_VERIFICATION)
        ['5F25' effective date, YYYYMMDD BCD]
        '5F24' expiration date, YYYYMMDD BCD
        ['73'  discretionary data { ['C8' certificate type], ['C9' authority key identifier] }]
        '7F49' public key { 'B0' 04||X||Y, 'F0' key parameter reference }
        '5F37' signature, r||s
    }

The choices marked [verify] in the reference all live in :func:`gp_certificate_tbs` (byte layout) and
:func:`_signature_hash` / :func:`_sign_raw` (signature form). Parsing is strict about structure (one '7F21', no
duplicate fields, '5F37' last, mandatory fields present) but keeps fields it does not model inside the signed
bytes, which are taken exactly as received and never re-encoded.

Dates: the certificate is valid from the effective date (inclusive, when present) through the expiration date
(inclusive).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from keys.errors import CertificateError, TlvError
from keys.tlv import encode_tlv, iter_tlvs

__all__ = [
    "KEY_AGREEMENT",
    "SIGNATURE_VERIFICATION",
    "CERT_TYPE_SMDP",
    "CERT_TYPE_SMSR",
    "GpCertificate",
    "build_gp_certificate",
    "gp_certificate_tbs",
    "parse_gp_certificate",
    "verify_gp_certificate",
    "key_usage_equals",
    "curve_ref_for",
    "curve_for_ref",
]

# Key usage, tag '95' (GPCS 2.3.1 §11.1.9). Byte 1 follows Table 11-17, byte 2 Table 11-18; "if only the first
# byte is provided, the second byte shall be assumed '00'", so '82' and '8200' are the same usage.
# - '0080': key agreement (Table 11-18 b8); CERT.ECASD.ECKA. Same value as the GlobalPlatformPro test vector.
# - '82': verification (Table 11-17 b8) + digital signature (b2); CERT.DP.ECDSA / CERT.SR.ECDSA.
#   [verify] SGP.02 Tables 77/78; njiwa writes '88' in SM-DP certificates (crypto-ota.md §1.5). Use
#   key_usage_equals() to compare, never ==.
KEY_AGREEMENT = bytes.fromhex("0080")
SIGNATURE_VERIFICATION = bytes.fromhex("82")

# Certificate type, tag 'C8' inside '73' (crypto-ota.md §1.5).
CERT_TYPE_SMDP = 0x01
CERT_TYPE_SMSR = 0x02

TAG_CERTIFICATE = 0x7F21
TAG_SERIAL = 0x93
TAG_CA_ID = 0x42
TAG_SUBJECT_ID = 0x5F20
TAG_KEY_USAGE = 0x95
TAG_EFFECTIVE = 0x5F25
TAG_EXPIRY = 0x5F24
TAG_DISCRETIONARY = 0x73
TAG_CERT_TYPE = 0xC8
TAG_AUTHORITY_KEY_ID = 0xC9
TAG_PUBLIC_KEY = 0x7F49
TAG_POINT = 0xB0
TAG_CURVE_REF = 0xF0
TAG_SIGNATURE = 0x5F37

_MANDATORY = (TAG_SERIAL, TAG_CA_ID, TAG_SUBJECT_ID, TAG_KEY_USAGE, TAG_EXPIRY, TAG_PUBLIC_KEY)

# Key parameter reference, tag 'F0' (GPCS Table B-2 / Amd E; crypto-ota.md §1.4). Only the curves pyca/cryptography
# implements; '04'/'06'/'08' (brainpool t1) and '40' (FRP256v1) are recognised by number only.
_CURVES: dict[int, type[ec.EllipticCurve]] = {
    0x00: ec.SECP256R1,
    0x01: ec.SECP384R1,
    0x02: ec.SECP521R1,
    0x03: ec.BrainpoolP256R1,
    0x05: ec.BrainpoolP384R1,
    0x07: ec.BrainpoolP512R1,
}


def curve_for_ref(ref: int) -> ec.EllipticCurve:
    try:
        return _CURVES[ref]()
    except KeyError:
        raise CertificateError("gp", "format", f"unsupported key parameter reference {ref:02X}") from None


def curve_ref_for(curve: ec.EllipticCurve) -> int:
    for ref, cls in _CURVES.items():
        if isinstance(curve, cls):
            return ref
    raise ValueError(f"curve {curve.name} has no GP key parameter reference")


def key_usage_equals(a: bytes, b: bytes) -> bool:
    """Compare two key usage values, treating an absent second byte as '00' (GPCS §11.1.9)."""
    return _normalised_usage(a) == _normalised_usage(b)


def _normalised_usage(usage: bytes) -> bytes:
    return usage + b"\x00" if len(usage) == 1 else usage


@dataclass(frozen=True)
class GpCertificate:
    raw: bytes = field(repr=False)  # the whole '7F21' TLV, as received
    tbs: bytes = field(repr=False)  # the signed bytes: every field inside '7F21' before '5F37', as received
    serial: bytes
    ca_id: bytes
    subject_id: bytes
    key_usage: bytes
    effective_date: datetime.date | None
    expiry_date: datetime.date
    cert_type: int | None
    authority_key_id: bytes | None
    public_key_point: bytes
    curve_ref: int
    signature: bytes

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The subject's public key; raises ``CertificateError(kind='format')`` for an unknown curve or bad point."""
        curve = curve_for_ref(self.curve_ref)
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(curve, self.public_key_point)
        except ValueError as e:
            raise CertificateError("gp", "format", f"public key is not a point on {curve.name}: {e}") from None


# --- dates -----------------------------------------------------------------------------------------------------


def _encode_bcd_date(d: datetime.date) -> bytes:
    return bytes.fromhex(f"{d.year:04d}{d.month:02d}{d.day:02d}")


def _decode_bcd_date(value: bytes, what: str) -> datetime.date:
    digits = value.hex()
    if len(value) != 4 or not digits.isdigit():
        raise CertificateError("gp", "format", f"{what} {digits.upper()} is not a YYYYMMDD BCD date")
    try:
        return datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        raise CertificateError("gp", "format", f"{what} {digits} is not a calendar date") from None


def _as_date(at: datetime.date) -> datetime.date:
    """A ``datetime`` becomes its UTC calendar date (naive ones are taken as UTC); a ``date`` stays as it is."""
    if isinstance(at, datetime.datetime):
        if at.tzinfo is not None:
            at = at.astimezone(datetime.timezone.utc)
        return at.date()
    return at


# --- signature form ------------------------------------------------------------------------------------------


def _signature_hash(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> hashes.HashAlgorithm:
    # The hash follows the size of the signing key (GPCS Table B-3; crypto-ota.md §1.5): SHA-256 for the 256-bit
    # curves SGP.02 uses.
    if key.curve.key_size <= 256:
        return hashes.SHA256()
    if key.curve.key_size <= 384:
        return hashes.SHA384()
    return hashes.SHA512()


def _component_size(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> int:
    return (key.curve.key_size + 7) // 8


def _sign_raw(signer: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    # [verify] '5F37' holds plain r||s, each left-padded to the curve size (GPPro vector; njiwa; crypto-ota.md
    # §1.1 step 3), not a DER ECDSA-Sig-Value.
    r, s = decode_dss_signature(signer.sign(data, ec.ECDSA(_signature_hash(signer))))
    size = _component_size(signer)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _verify_raw(issuer_key: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> bool:
    size = _component_size(issuer_key)
    if len(signature) != 2 * size:
        return False
    r = int.from_bytes(signature[:size], "big")
    s = int.from_bytes(signature[size:], "big")
    try:
        issuer_key.verify(encode_dss_signature(r, s), data, ec.ECDSA(_signature_hash(issuer_key)))
    except InvalidSignature:
        return False
    return True


# --- build -----------------------------------------------------------------------------------------------------


def gp_certificate_tbs(
    *,
    serial: bytes,
    ca_id: bytes,
    subject_id: bytes,
    key_usage: bytes,
    expiry: datetime.date,
    public_key: ec.EllipticCurvePublicKey,
    effective: datetime.date | None = None,
    cert_type: int | None = None,
    authority_key_id: bytes | None = None,
) -> bytes:
    """The bytes a '7F21' certificate signs: its fields, in table order, up to but not including '5F37'.

    [verify] Field order 93/42/5F20/95/[5F25]/5F24/[73]/7F49 follows the GPPro vector and GPC Amd A Table 3-6;
    '73' holding 'C8' certificate type then 'C9' AKI, and 'B0'/'F0' nested inside '7F49', follow crypto-ota.md §1.5
    (SGP.02 Tables 23/77/78 not checked). The signature covers exactly these bytes (crypto-ota.md §1.5).
    """
    point = public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    fields = [
        encode_tlv(TAG_SERIAL, serial),
        encode_tlv(TAG_CA_ID, ca_id),
        encode_tlv(TAG_SUBJECT_ID, subject_id),
        encode_tlv(TAG_KEY_USAGE, key_usage),
    ]
    if effective is not None:
        fields.append(encode_tlv(TAG_EFFECTIVE, _encode_bcd_date(effective)))
    fields.append(encode_tlv(TAG_EXPIRY, _encode_bcd_date(expiry)))
    discretionary = b""
    if cert_type is not None:
        discretionary += encode_tlv(TAG_CERT_TYPE, bytes([cert_type]))
    if authority_key_id is not None:
        discretionary += encode_tlv(TAG_AUTHORITY_KEY_ID, authority_key_id)
    if discretionary:
        fields.append(encode_tlv(TAG_DISCRETIONARY, discretionary))
    fields.append(
        encode_tlv(
            TAG_PUBLIC_KEY,
            encode_tlv(TAG_POINT, point) + encode_tlv(TAG_CURVE_REF, bytes([curve_ref_for(public_key.curve)])),
        )
    )
    return b"".join(fields)


def build_gp_certificate(
    *,
    serial: bytes,
    ca_id: bytes,
    subject_id: bytes,
    key_usage: bytes,
    expiry: datetime.date,
    public_key: ec.EllipticCurvePublicKey,
    signer: ec.EllipticCurvePrivateKey,
    effective: datetime.date | None = None,
    cert_type: int | None = None,
    authority_key_id: bytes | None = None,
) -> bytes:
    """A signed '7F21' certificate (the whole TLV)."""
    if not 1 <= len(key_usage) <= 2:
        raise ValueError("key usage is 1 or 2 bytes")
    if cert_type is not None and not 0 <= cert_type <= 0xFF:
        raise ValueError("certificate type is one byte")
    tbs = gp_certificate_tbs(
        serial=serial,
        ca_id=ca_id,
        subject_id=subject_id,
        key_usage=key_usage,
        expiry=expiry,
        public_key=public_key,
        effective=effective,
        cert_type=cert_type,
        authority_key_id=authority_key_id,
    )
    return encode_tlv(TAG_CERTIFICATE, tbs + encode_tlv(TAG_SIGNATURE, _sign_raw(signer, tbs)))


# --- parse -----------------------------------------------------------------------------------------------------


def _format_error(detail: str, which: str) -> CertificateError:
    return CertificateError(which, "format", detail)


def _fields(data: bytes, where: str, which: str) -> dict[int, bytes]:
    fields: dict[int, bytes] = {}
    try:
        for t in iter_tlvs(data):
            if t.tag in fields:
                raise _format_error(f"tag {t.tag:X} appears twice in {where}", which)
            fields[t.tag] = t.value
    except TlvError as e:
        raise _format_error(f"{where}: {e}", which) from None
    return fields


def parse_gp_certificate(data: bytes, *, which: str = "gp") -> GpCertificate:
    """Parse one '7F21' certificate; raises ``CertificateError(which, 'format')``. Verifies nothing."""
    data = bytes(data)
    try:
        outer = list(iter_tlvs(data))
    except TlvError as e:
        raise _format_error(f"not a TLV: {e}", which) from None
    if len(outer) != 1 or outer[0].tag != TAG_CERTIFICATE:
        raise _format_error("expected exactly one '7F21' certificate", which)
    body = outer[0].value

    try:
        parts = list(iter_tlvs(body))
    except TlvError as e:
        raise _format_error(f"certificate body: {e}", which) from None
    if not parts or parts[-1].tag != TAG_SIGNATURE:
        raise _format_error("'5F37' signature missing or not the last field", which)
    tbs = body[: parts[-1].start]
    fields = _fields(body, "certificate body", which)
    missing = [f"{tag:X}" for tag in _MANDATORY if tag not in fields]
    if missing:
        raise _format_error(f"mandatory field(s) {', '.join(missing)} missing", which)

    key_usage = fields[TAG_KEY_USAGE]
    if not 1 <= len(key_usage) <= 2:
        raise _format_error(f"key usage {key_usage.hex().upper()} is not 1 or 2 bytes", which)

    try:
        effective = _decode_bcd_date(fields[TAG_EFFECTIVE], "effective date") if TAG_EFFECTIVE in fields else None
        expiry = _decode_bcd_date(fields[TAG_EXPIRY], "expiration date")
    except CertificateError as e:
        raise e.renamed(which) from None

    cert_type = authority_key_id = None
    if TAG_DISCRETIONARY in fields:
        discretionary = _fields(fields[TAG_DISCRETIONARY], "'73' discretionary data", which)
        if TAG_CERT_TYPE in discretionary:
            if len(discretionary[TAG_CERT_TYPE]) != 1:
                raise _format_error("certificate type 'C8' is not one byte", which)
            cert_type = discretionary[TAG_CERT_TYPE][0]
        authority_key_id = discretionary.get(TAG_AUTHORITY_KEY_ID)

    key_fields = _fields(fields[TAG_PUBLIC_KEY], "'7F49' public key", which)
    if TAG_POINT not in key_fields or TAG_CURVE_REF not in key_fields:
        raise _format_error("'7F49' needs 'B0' point and 'F0' key parameter reference", which)
    point = key_fields[TAG_POINT]
    if len(point) < 3 or len(point) % 2 == 0 or point[0] != 0x04:
        raise _format_error("'B0' is not an uncompressed EC point 04||X||Y", which)
    if len(key_fields[TAG_CURVE_REF]) != 1:
        raise _format_error("'F0' key parameter reference is not one byte", which)

    return GpCertificate(
        raw=data,
        tbs=tbs,
        serial=fields[TAG_SERIAL],
        ca_id=fields[TAG_CA_ID],
        subject_id=fields[TAG_SUBJECT_ID],
        key_usage=key_usage,
        effective_date=effective,
        expiry_date=expiry,
        cert_type=cert_type,
        authority_key_id=authority_key_id,
        public_key_point=point,
        curve_ref=key_fields[TAG_CURVE_REF][0],
        signature=fields[TAG_SIGNATURE],
    )


# --- verify ----------------------------------------------------------------------------------------------------


def verify_gp_certificate(
    cert: GpCertificate,
    issuer_key: ec.EllipticCurvePublicKey,
    at: datetime.date,
    *,
    which: str = "gp",
) -> None:
    """Check the signature with ``issuer_key``, then the validity dates at ``at`` (a datetime counts by its UTC date).

    Raises ``CertificateError(which, 'signature' | 'not_yet_valid' | 'expired')``. Key usage is the caller's check.
    """
    if not isinstance(issuer_key, ec.EllipticCurvePublicKey):
        raise CertificateError(which, "signature", "issuer key is not an EC key")
    if not _verify_raw(issuer_key, cert.tbs, cert.signature):
        raise CertificateError(which, "signature", "signature does not verify with the issuer key")
    day = _as_date(at)
    if cert.effective_date is not None and day < cert.effective_date:
        raise CertificateError(which, "not_yet_valid", f"effective from {cert.effective_date}, checked at {day}")
    if day > cert.expiry_date:
        raise CertificateError(which, "expired", f"expired on {cert.expiry_date}, checked at {day}")
