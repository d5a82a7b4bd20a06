"""Credentials anyone can have: the development PKI esx generates, and publicly known test key values.

Production mode (``--auth mtls``) refuses to run on them unless told explicitly (``esx serve
--allow-test-credentials``): a server whose CI or TLS keys were generated for a lab, or a card whose ISD-R still
holds a test key, can be impersonated by anyone who has read the same files or documents. (Security research
compromised a production eUICC through SMS-PP OTA while its GSMA test keys were still present.)
"""
from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

from keys.pki import DEVELOPMENT_ORGANISATION

__all__ = ["PUBLIC_TEST_KEYS", "is_development_certificate", "is_public_test_key"]

# Key values published for test cards. The GlobalPlatform default key 40..4F is the key of test cards and
# development kits (GP Card Specification test settings; GlobalPlatformPro's default).
PUBLIC_TEST_KEYS: dict[bytes, str] = {
    bytes(range(0x40, 0x50)): "the GlobalPlatform default test key (40..4F)",
    bytes(range(0x00, 0x10)): "the counting test key 00..0F",
    bytes(range(0x01, 0x11)): "the counting test key 01..10",
}


def is_public_test_key(value: bytes) -> str | None:
    """Why ``value`` is a key anyone knows (a published test key, or one byte repeated), or None."""
    if value in PUBLIC_TEST_KEYS:
        return PUBLIC_TEST_KEYS[value]
    if value and len(set(value)) == 1:
        return f"a key of one repeated byte ({value[:1].hex().upper()}..)"
    return None


def is_development_certificate(pem: bytes) -> bool:
    """Was this certificate (or its issuer) made by esx's development PKI (keys.pki)?"""
    cert = x509.load_pem_x509_certificate(pem)
    return any(attr.value == DEVELOPMENT_ORGANISATION
               for name in (cert.subject, cert.issuer)
               for attr in name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
