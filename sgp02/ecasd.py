"""The ECASD certificate check, as SGP.02 answers it: one function for ES1 (the SM-SR registering an EIS) and for
ES2-DownloadProfile (the SM-DP before it agrees a key with the card).

CERT.ECASD.ECKA must chain CI root → EUM (X.509, the EUM's certificate as registered with the caller) → ECASD (GP
'7F21', key usage key agreement) and be in date at ``at`` (keys.chain.verify_ecasd_chain). A failure is the
subject 8.5.2 (ECASD certificate): reason 6.3 when a certificate of the chain has expired, 6.1 for anything else.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from keys.chain import verify_ecasd_chain
from keys.errors import CertificateError

from . import codes
from .codes import FunctionFailed
from .eis import Eis

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey


def verified_ecasd_key(eis: Eis, ci_pem: bytes, eum_pem: bytes, at: datetime) -> EllipticCurvePublicKey:
    """PK.ECASD.ECKA of ``eis``, once its certificate chains CI → EUM → ECASD at ``at``; FunctionFailed
    ECASD_CERT_EXPIRED or ECASD_CERT_INVALID (subject identifier: the EID) otherwise."""
    eid = eis.signed_info.eid
    cert = eis.signed_info.ecasd.certificate()
    if cert is None:
        raise FunctionFailed(codes.ECASD_CERT_INVALID, "the ECASD carries no certificate", subject_identifier=eid)
    try:
        parsed = verify_ecasd_chain(ci_pem, eum_pem, bytes.fromhex(cert.value), at)
    except CertificateError as exc:
        code = codes.ECASD_CERT_EXPIRED if exc.kind == "expired" else codes.ECASD_CERT_INVALID
        raise FunctionFailed(code, f"{exc.which} certificate: {exc}", subject_identifier=eid) from None
    return parsed.public_key()
