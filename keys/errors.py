"""Errors raised by the ``keys`` package.

One home for them, so callers (the SOAP services mapping failures to SGP.02 status codes) import from one place.
"""

from __future__ import annotations


class TlvError(ValueError):
    """A BER-TLV byte string is truncated or badly formed."""


class CertificateError(Exception):
    """A certificate failed to parse or to verify.

    ``which`` names the certificate in the chain: ``'ci'``, ``'eum'``, ``'ecasd'``, ``'smdp'``, ``'smsr'``,
    ``'tls'``, or ``'gp'`` for a GP certificate checked outside any chain.
    ``kind`` says what went wrong; it is one of :attr:`KINDS`.
    """

    KINDS = frozenset({"format", "signature", "expired", "not_yet_valid", "untrusted", "usage"})

    def __init__(self, which: str, kind: str, detail: str) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown CertificateError kind {kind!r}")
        self.which = which
        self.kind = kind
        self.detail = detail
        super().__init__(f"{which} certificate: {kind}: {detail}")

    def __reduce__(self):  # keep the exception picklable despite the keyword-style constructor
        return (type(self), (self.which, self.kind, self.detail))

    def renamed(self, which: str) -> CertificateError:
        """The same failure, reported for the certificate ``which`` (used when a chain check re-raises)."""
        return CertificateError(which, self.kind, self.detail)


class SignatureError(Exception):
    """An XML signature (the EIS ``EumSignature``) is missing, malformed or does not verify."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)

    def __reduce__(self):
        return (type(self), (self.reason,))
