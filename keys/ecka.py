"""ISD-P (and ISD-R) key establishment: GP Amd E Scenario #3, "ECKA-EG" with mutual authentication (SGP.02 §3.1.2).

Theory of operation (crypto-ota.md §1; sgp02-wire.md §6.3). The SM-DP (off-card entity) and the eUICC (ECASD behind
the ISD-P) agree on a fresh SCP03 keyset through two STORE DATA commands relayed by the SM-SR::

    SM-DP                                                           eUICC (ISD-P + ECASD)
    STORE DATA  '3A01' { '7F21' CERT.DP.ECDSA }                 ->  checks the certificate (keys.chain), keeps
                                                                     PK.DP.ECDSA, draws a random challenge RC
                                                                <-  '85' L RC
    eSK/ePK.DP.ECKA := fresh key pair on the ECASD's curve
    STORE DATA  '3A02' { 'A6' CRT, '7F49' ePK.DP.ECKA,          ->  verifies the signature with PK.DP.ECDSA,
                         '5F37' ECDSA(SK.DP.ECDSA, signed data) }    ShS := ECDH(SK.ECASD.ECKA, ePK.DP.ECKA)
                                                                     [DR := 16 random bytes], derives the keys
                                                                <-  ['85' L DR] '86' L receipt
    ShS := ECDH(eSK.DP.ECKA, PK.ECASD.ECKA), derives the keys,
    checks the receipt

* ShS is the x-coordinate of the ECDH point (BSI TR-03111 ECKA); both ends' keys must be on the same curve.
* Key data := X9.63 KDF with SHA-256 (TR-03111 §4.3.3) over ShS with SharedInfo (:func:`shared_info`); it splits
  into the receipt key (16 bytes) then Key-ENC, Key-MAC, Key-DEK (:func:`derive_keys`).
* Receipt := AES-CMAC(receipt key, 'A6' CRT as sent || ['85' L DR]) (:func:`receipt`).
* SM-DP and simulated eUICC use this one module from opposite ends (:func:`smdp_key_agreement` /
  :func:`smdp_finish` and :func:`card_key_agreement`), so the choices below cannot drift apart.

The ISD-R case (SM-SR change, sgp02-wire.md §6.5; sgp02-v4-es7-notes.md §3.3) is the same scenario #3 with the new
SM-SR (SM-SR2) as the off-card entity and the current SM-SR (SM-SR1) as a relay that sees no secret::

    SM-SR2                          SM-SR1                                  eUICC (ISD-R + ECASD)
    ES7 AuthenticateSMSR(CERT.SR) -> STORE DATA '3A01' {CERT.SR.ECDSA}  ->  checked against the CI
                                  <- ES7 callback RandomChallenge       <-  '85' L RC
    smsr_key_agreement(): the ES7 fields and eSK.SR.ECKA
    ES7 CreateAdditionalKeySet    -> STORE DATA '3A02' (isdr_dgi_3a02)  ->  card_isdr_key_agreement()
                                  <- ES7 callback DR, Receipt           <-  ['85' L DR] '86' L receipt
    smsr_finish(): the new SCP80 key set of the ISD-R, or EckaError('receipt')

SM-SR1 and SM-SR2 both call :func:`isdr_dgi_3a02` on the same ES7 fields: SM-SR1 to build what it sends to the
card, SM-SR2 to build what it signs, so the signed bytes and the sent bytes cannot differ. The ES7 fields map to
STORE DATA '3A02' as that function's docstring says; the key set the ISD-R derives is an SCP80 key set
(:class:`IsdrKeySet`).

Choices the reference marks [verify], each in one function:

* 'A6' CRT layout and scenario parameter bits: :class:`KeyAgreementCrt` (``encode``/``decode``).
* SharedInfo: :func:`shared_info`.  Key data split: :func:`derive_keys`.
* Receipt input and padding: :func:`receipt`.
* Signed data (the odd '0085' tag, and whether the DGI header is signed): :func:`signed_data`.
* ePK.DP.ECKA nesting inside '7F49': :func:`encode_public_key`.
* Signature form (raw r||s, SHA-256 for 256-bit curves): reused from :mod:`keys.gp_cert`.
* ES7 CreateAdditionalKeySet fields -> STORE DATA '3A02' of the ISD-R: :func:`isdr_dgi_3a02`.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

from keys.dgi import encode_dgi, parse_dgi
from keys.errors import CertificateError, TlvError
from keys.gp_cert import (
    TAG_CERTIFICATE,
    TAG_CURVE_REF,
    TAG_POINT,
    TAG_PUBLIC_KEY,
    TAG_SIGNATURE,
    _sign_raw,
    _verify_raw,
    curve_for_ref,
    curve_ref_for,
)
from keys.scp03 import StaticKeys, cmac
from keys.scp80 import Scp80Keyset
from keys.tlv import encode_tlv, iter_tlvs

__all__ = [
    "DGI_CERTIFICATE",
    "DGI_KEY_AGREEMENT",
    "SCENARIO_3",
    "PARAM_DR",
    "PARAM_HOST_ID",
    "PARAM_CERT_VERIFICATION_PRECEDES",
    "KEY_USAGE_THREE_SC_KEYS",
    "KEY_TYPE_AES",
    "DR_LENGTH",
    "RECEIPT_KEY_LENGTH",
    "KeyAgreementCrt",
    "EckaError",
    "DerivedKeys",
    "shared_secret",
    "x963_kdf",
    "shared_info",
    "derive_keys",
    "receipt",
    "signed_data",
    "encode_public_key",
    "decode_public_key",
    "dgi_3a01",
    "parse_dgi_3a01",
    "challenge_response",
    "parse_challenge_response",
    "key_agreement_response",
    "parse_key_agreement_response",
    "smdp_key_agreement",
    "smdp_finish",
    "card_key_agreement",
    "export_private",
    "import_private",
    # the ISD-R case (SM-SR change)
    "ECC_KEY_LENGTHS",
    "SCP80_KVNS",
    "SCP80_KEY_ID_KIC",
    "SCP80_KEY_ID_KID",
    "SCP80_KEY_ID_DEK",
    "ISDR_KEY_LENGTH",
    "IGNORED_INITIAL_SEQUENCE_COUNTER",
    "AdditionalKeySet",
    "IsdrKeySet",
    "free_scp80_kvn",
    "isdr_crt",
    "isdr_dgi_3a02",
    "smsr_key_agreement",
    "smsr_finish",
    "card_isdr_key_agreement",
]

DGI_CERTIFICATE = 0x3A01  # STORE DATA #1: CERT.DP.ECDSA (or CERT.SR.ECDSA)
DGI_KEY_AGREEMENT = 0x3A02  # STORE DATA #2: CRT, ePK, signature

TAG_CRT = 0xA6
TAG_SCENARIO = 0x90
TAG_KEY_USAGE = 0x95
TAG_KEY_TYPE = 0x80
TAG_KEY_LENGTH = 0x81
TAG_KEY_ID = 0x82
TAG_KVN = 0x83
TAG_INITIAL_COUNTER = 0x91
TAG_HOST_ID = 0x84
TAG_CHALLENGE = 0x85  # RC in STORE DATA #1's answer, DR in STORE DATA #2's answer
TAG_RECEIPT = 0x86
TAG_SIGNED_CHALLENGE = 0x0085  # [verify] see signed_data()

SCENARIO_3 = 0x03
# Scenario parameter bits (njiwa ECKeyAgreementEG; crypto-ota.md §1.2). Bit '01' is set by WHTY ('09') with an
# unknown meaning: refused here.
PARAM_DR = 0x02  # a derivation random DR enters SharedInfo and the receipt
PARAM_HOST_ID = 0x04  # HostID (and SIN/SDIN) enter the CRT and SharedInfo
PARAM_CERT_VERIFICATION_PRECEDES = 0x08  # STORE DATA '3A01' came first
_SUPPORTED_PARAMS = PARAM_DR | PARAM_HOST_ID | PARAM_CERT_VERIFICATION_PRECEDES

KEY_USAGE_THREE_SC_KEYS = 0x10  # GPCS Table 11-17: 3 secure channel keys (ENC, MAC, DEK). '5C' (one base key) refused.
KEY_TYPE_AES = 0x88
DR_LENGTH = 16
RECEIPT_KEY_LENGTH = 16
RECEIPT_LENGTH = 16


class EckaError(ValueError):
    """Key establishment failed. ``kind`` is one of :attr:`KINDS`:
    ``format`` (malformed or unsupported data), ``signature`` (the SM-DP signature over STORE DATA #2),
    ``curve`` (keys on different or unsupported curves), ``receipt`` (the eUICC's receipt), ``certificate``
    (STORE DATA #1 holds no GP certificate)."""

    KINDS = frozenset({"format", "signature", "curve", "receipt", "certificate"})

    def __init__(self, kind: str, message: str) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown EckaError kind {kind!r}")
        self.kind = kind
        self.message = message
        super().__init__(f"key establishment: {kind}: {message}")

    def __reduce__(self):
        return (type(self), (self.kind, self.message))


def _format(message: str) -> EckaError:
    return EckaError("format", message)


def _tlvs(data: bytes, where: str) -> list:
    try:
        return list(iter_tlvs(data))
    except TlvError as e:
        raise _format(f"{where}: {e}") from None


# --- the 'A6' control reference template -------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyAgreementCrt:
    """The key agreement CRT 'A6' of STORE DATA #2 (GP Amd A / Amd E; crypto-ota.md §1.2, sgp02-wire.md §6.3).

    [verify] Layout: ``'A6' { '90' 03 <param>, '95' usage, '80' type, '81' length, '82' key id, '83' KVN,
    '91' initial counter, ['84' HostID] }`` in that order: the WHTY literal ``A615 900203 09 950110 800188 810110
    820101 830130 9100`` and njiwa's ``makeA6CRT`` use it. Supported subset: scenario 3; parameter bits '02' (DR),
    '04' (HostID; njiwa also sends '45' SIN/SDIN, not supported here) and '08' (certificate verification
    precedes); key usage '10' (three keys); AES with 16/24/32-byte keys. Default parameter '0A' = '08' | '02'.
    """

    scenario_parameter: int = PARAM_CERT_VERIFICATION_PRECEDES | PARAM_DR
    key_usage: int = KEY_USAGE_THREE_SC_KEYS
    key_type: int = KEY_TYPE_AES
    key_length: int = 16
    key_id: int = 0x01
    kvn: int = 0x30
    initial_counter: bytes = b""
    host_id: bytes | None = None

    def __post_init__(self) -> None:
        for name in ("scenario_parameter", "key_usage", "key_type", "key_length", "key_id", "kvn"):
            if not 0 <= getattr(self, name) <= 0xFF:
                raise _format(f"CRT {name} is not one byte")
        if self.scenario_parameter & ~_SUPPORTED_PARAMS:
            raise _format(f"unsupported scenario parameter {self.scenario_parameter:02X}")
        if self.key_usage != KEY_USAGE_THREE_SC_KEYS:
            raise _format(f"unsupported key usage qualifier {self.key_usage:02X} (only '10')")
        if self.key_type != KEY_TYPE_AES:
            raise _format(f"unsupported key type {self.key_type:02X} (only AES '88')")
        if self.key_length not in (16, 24, 32):
            raise _format(f"unsupported AES key length {self.key_length}")
        object.__setattr__(self, "initial_counter", bytes(self.initial_counter))
        if len(self.initial_counter) > 8:
            raise _format("initial counter longer than 8 bytes")
        wants_host_id = bool(self.scenario_parameter & PARAM_HOST_ID)
        if wants_host_id != (self.host_id is not None):
            raise _format("HostID is present exactly when scenario parameter bit '04' is set")
        if self.host_id is not None:
            object.__setattr__(self, "host_id", bytes(self.host_id))
            if not 1 <= len(self.host_id) <= 127:
                raise _format("HostID must be 1..127 bytes")

    @property
    def dr_length(self) -> int:
        return DR_LENGTH if self.scenario_parameter & PARAM_DR else 0

    def encode(self) -> bytes:
        fields = [
            encode_tlv(TAG_SCENARIO, bytes([SCENARIO_3, self.scenario_parameter])),
            encode_tlv(TAG_KEY_USAGE, bytes([self.key_usage])),
            encode_tlv(TAG_KEY_TYPE, bytes([self.key_type])),
            encode_tlv(TAG_KEY_LENGTH, bytes([self.key_length])),
            encode_tlv(TAG_KEY_ID, bytes([self.key_id])),
            encode_tlv(TAG_KVN, bytes([self.kvn])),
            encode_tlv(TAG_INITIAL_COUNTER, self.initial_counter),
        ]
        if self.host_id is not None:
            fields.append(encode_tlv(TAG_HOST_ID, self.host_id))
        return encode_tlv(TAG_CRT, b"".join(fields))

    @classmethod
    def decode(cls, tlv: bytes) -> KeyAgreementCrt:
        outer = _tlvs(bytes(tlv), "CRT")
        if len(outer) != 1 or outer[0].tag != TAG_CRT:
            raise _format("expected exactly one 'A6' CRT")
        fields = _tlvs(outer[0].value, "'A6' CRT")
        tags = [f.tag for f in fields]
        order = [TAG_SCENARIO, TAG_KEY_USAGE, TAG_KEY_TYPE, TAG_KEY_LENGTH, TAG_KEY_ID, TAG_KVN, TAG_INITIAL_COUNTER]
        if tags not in (order, order + [TAG_HOST_ID]):
            got = " ".join(f"{t:X}" for t in tags)
            raise _format(f"'A6' fields {got}; expected 90 95 80 81 82 83 91 [84]")
        values = {f.tag: f.value for f in fields}
        scenario = values[TAG_SCENARIO]
        if len(scenario) != 2 or scenario[0] != SCENARIO_3:
            raise _format(f"'90' {scenario.hex().upper()} is not scenario 3 with one parameter byte")
        for tag in order[1:6]:
            if len(values[tag]) != 1:
                raise _format(f"'{tag:X}' is not one byte")
        return cls(
            scenario_parameter=scenario[1],
            key_usage=values[TAG_KEY_USAGE][0],
            key_type=values[TAG_KEY_TYPE][0],
            key_length=values[TAG_KEY_LENGTH][0],
            key_id=values[TAG_KEY_ID][0],
            kvn=values[TAG_KVN][0],
            initial_counter=values[TAG_INITIAL_COUNTER],
            host_id=values.get(TAG_HOST_ID),
        )


@dataclass(frozen=True)
class DerivedKeys:
    receipt_key: bytes
    keys: StaticKeys

    def __repr__(self) -> str:
        return "DerivedKeys(<secret>)"


# --- primitives --------------------------------------------------------------------------------------------------


def _check_same_curve(a: ec.EllipticCurve, b: ec.EllipticCurve, what: str) -> None:
    if a.name != b.name:
        raise EckaError("curve", f"{what}: {a.name} and {b.name} differ")


def shared_secret(private_key: ec.EllipticCurvePrivateKey, public_key: ec.EllipticCurvePublicKey) -> bytes:
    """ShS: the x-coordinate of ``private_key`` x ``public_key`` (ECKA, BSI TR-03111 §4.3.1)."""
    _check_same_curve(private_key.curve, public_key.curve, "ECDH")
    return private_key.exchange(ec.ECDH(), public_key)


def x963_kdf(shs: bytes, shared_info: bytes, length: int) -> bytes:
    """ANSI X9.63 KDF with SHA-256: SHA-256(ShS || counter(4, from 1) || SharedInfo) blocks, cut to ``length``."""
    return X963KDF(algorithm=hashes.SHA256(), length=length, sharedinfo=bytes(shared_info)).derive(bytes(shs))


def _check_dr(crt: KeyAgreementCrt, dr: bytes | None) -> bytes | None:
    if crt.dr_length:
        if dr is None or len(dr) != crt.dr_length:
            raise _format(f"the CRT asks for a {crt.dr_length}-byte DR")
        return bytes(dr)
    if dr is not None:
        raise _format("a DR was given but the CRT does not ask for one")
    return None


def shared_info(crt: KeyAgreementCrt, dr: bytes | None) -> bytes:
    """SharedInfo of the X9.63 KDF.

    [verify] key usage qualifier || key type || key length || [DR] || [HostID-LV]: GP Amd A Table 3-28 as quoted by
    the TSM utility and njiwa (crypto-ota.md §1.3); WHTY's value for the default CRT is '10 88 10'. The IIN-LV and
    CIN-LV (SIN/SDIN) that follow HostID in the spec are not supported (see :class:`KeyAgreementCrt`).
    """
    dr = _check_dr(crt, dr)
    info = bytes([crt.key_usage, crt.key_type, crt.key_length])
    if dr is not None:
        info += dr
    if crt.host_id is not None:
        info += bytes([len(crt.host_id)]) + crt.host_id
    return info


def derive_keys(shs: bytes, crt: KeyAgreementCrt, dr: bytes | None) -> DerivedKeys:
    """Key data split [verify]: receipt key (16 bytes) first, then Key-ENC, Key-MAC, Key-DEK of ``crt.key_length``
    bytes each (WHTY; crypto-ota.md §1.3: 64 bytes for AES-128)."""
    n = crt.key_length
    data = x963_kdf(shs, shared_info(crt, dr), RECEIPT_KEY_LENGTH + 3 * n)
    k = data[RECEIPT_KEY_LENGTH:]
    return DerivedKeys(receipt_key=data[:RECEIPT_KEY_LENGTH], keys=StaticKeys(k[:n], k[n : 2 * n], k[2 * n :]))


def receipt(receipt_key: bytes, crt_tlv: bytes, dr: bytes | None) -> bytes:
    """AES-CMAC(receipt key, 'A6' CRT TLV exactly as sent || ['85' L DR]), 16 bytes.

    [verify] Plain CMAC, no ISO '80' padding before it: njiwa pads, WHTY and yubikit's SCP11 receipt (same GP family)
    do not (crypto-ota.md §1.3). The DR TLV follows njiwa's computeReceipt.
    """
    data = bytes(crt_tlv)
    if dr is not None:
        data += encode_tlv(TAG_CHALLENGE, dr)
    return cmac(receipt_key, data)


def signed_data(dgi_3a02_body_without_signature: bytes, challenge: bytes) -> bytes:
    """The bytes SK.DP.ECDSA signs in STORE DATA #2.

    [verify] ``'3A02' L || 'A6'… || '7F49'… || '0085' L RC`` where ``'3A02' L`` is the DGI header written over the
    body without the signature (DGI length rule of :func:`keys.dgi.encode_dgi`), and RC carries the two-byte tag
    '0085' that njiwa and the TSM utility both write (crypto-ota.md §1.1 step 3). njiwa's own command wraps only the
    CRT in the DGI, so for the same CRT and ePK our bytes differ from njiwa's only in that length.
    """
    body = bytes(dgi_3a02_body_without_signature)
    challenge = bytes(challenge)
    if not 1 <= len(challenge) <= 0x7F:
        raise _format("challenge must be 1..127 bytes")
    rc = TAG_SIGNED_CHALLENGE.to_bytes(2, "big") + bytes([len(challenge)]) + challenge
    return encode_dgi(DGI_KEY_AGREEMENT, body) + rc


def encode_public_key(key: ec.EllipticCurvePublicKey) -> bytes:
    """The '7F49' TLV for ePK.DP.ECKA: ``'7F49' { 'B0' 04||X||Y, 'F0' key parameter reference }``.

    [verify] Nested like the public key of a GP certificate (keys.gp_cert; njiwa's Utils.ECC.encode); the TSM
    utility's sample puts the bare point in '7F49' instead (crypto-ota.md §1.5).
    """
    point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    try:
        ref = curve_ref_for(key.curve)
    except ValueError as e:
        raise EckaError("curve", str(e)) from None
    return encode_tlv(TAG_PUBLIC_KEY, encode_tlv(TAG_POINT, point) + encode_tlv(TAG_CURVE_REF, bytes([ref])))


def decode_public_key(tlv: bytes) -> ec.EllipticCurvePublicKey:
    outer = _tlvs(bytes(tlv), "public key")
    if len(outer) != 1 or outer[0].tag != TAG_PUBLIC_KEY:
        raise _format("expected exactly one '7F49' public key")
    fields = _tlvs(outer[0].value, "'7F49'")
    if [f.tag for f in fields] != [TAG_POINT, TAG_CURVE_REF] or len(fields[1].value) != 1:
        raise _format("'7F49' must hold 'B0' point then a one-byte 'F0' key parameter reference")
    try:
        curve = curve_for_ref(fields[1].value[0])
    except CertificateError:
        raise EckaError("curve", f"unsupported key parameter reference {fields[1].value[0]:02X}") from None
    point = fields[0].value
    if not point or point[0] != 0x04:
        raise _format("'B0' is not an uncompressed point")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    except ValueError as e:
        raise _format(f"'B0' is not a point on {curve.name}: {e}") from None


# --- STORE DATA payloads and answers -----------------------------------------------------------------------------


def _single_certificate(cert: bytes) -> bytes:
    try:
        tlvs = list(iter_tlvs(cert))
    except TlvError as e:
        raise EckaError("certificate", f"not a TLV: {e}") from None
    if len(tlvs) != 1 or tlvs[0].tag != TAG_CERTIFICATE:
        raise EckaError("certificate", "expected exactly one '7F21' certificate")
    return cert


def dgi_3a01(smdp_certificate: bytes) -> bytes:
    """STORE DATA #1 payload: '3A01' L '7F21'… (the certificate is checked only for being one '7F21' TLV)."""
    return encode_dgi(DGI_CERTIFICATE, _single_certificate(bytes(smdp_certificate)))


def parse_dgi_3a01(data: bytes) -> bytes:
    """The '7F21' certificate of a STORE DATA #1 payload (verify it with keys.chain / keys.gp_cert)."""
    try:
        dgi, value = parse_dgi(bytes(data))
    except ValueError as e:
        raise _format(str(e)) from None
    if dgi != DGI_CERTIFICATE:
        raise _format(f"DGI {dgi:04X} is not '3A01'")
    return _single_certificate(value)


def challenge_response(challenge: bytes) -> bytes:
    """The eUICC's answer to STORE DATA #1: '85' L RC."""
    return encode_tlv(TAG_CHALLENGE, bytes(challenge))


def parse_challenge_response(data: bytes) -> bytes:
    tlvs = _tlvs(bytes(data), "challenge response")
    if len(tlvs) != 1 or tlvs[0].tag != TAG_CHALLENGE or not 1 <= len(tlvs[0].value) <= 0x7F:
        raise _format("expected '85' L RC")
    return tlvs[0].value


def key_agreement_response(dr: bytes | None, receipt: bytes) -> bytes:
    """The eUICC's answer to STORE DATA #2: ['85' L DR] '86' L receipt."""
    out = encode_tlv(TAG_CHALLENGE, bytes(dr)) if dr is not None else b""
    return out + encode_tlv(TAG_RECEIPT, bytes(receipt))


def parse_key_agreement_response(data: bytes) -> tuple[bytes | None, bytes]:
    tlvs = _tlvs(bytes(data), "key agreement response")
    tags = [t.tag for t in tlvs]
    if tags == [TAG_RECEIPT]:
        dr, rcpt = None, tlvs[0].value
    elif tags == [TAG_CHALLENGE, TAG_RECEIPT]:
        dr, rcpt = tlvs[0].value, tlvs[1].value
    else:
        raise _format("expected ['85' L DR] '86' L receipt")
    if len(rcpt) != RECEIPT_LENGTH:
        raise _format(f"receipt of {len(rcpt)} bytes")
    return dr, rcpt


# --- the two ends ------------------------------------------------------------------------------------------------


def smdp_key_agreement(
    smdp_key: ec.EllipticCurvePrivateKey,
    challenge: bytes,
    curve: ec.EllipticCurve,
    crt: KeyAgreementCrt = KeyAgreementCrt(),
    ephemeral_key: ec.EllipticCurvePrivateKey | None = None,
) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    """SM-DP side of STORE DATA #2: ``('3A02' L {A6, 7F49, 5F37}, eSK.DP.ECKA)``.

    ``curve`` is the ECASD's (from CERT.ECASD.ECKA); ``smdp_key`` is SK.DP.ECDSA, on any supported curve. Keep the
    ephemeral key (see :func:`export_private`) until :func:`smdp_finish`.
    """
    if ephemeral_key is None:
        ephemeral_key = ec.generate_private_key(curve)
    _check_same_curve(ephemeral_key.curve, curve, "ephemeral key vs ECASD")
    body = crt.encode() + encode_public_key(ephemeral_key.public_key())
    signature = _sign_raw(smdp_key, signed_data(body, challenge))
    return encode_dgi(DGI_KEY_AGREEMENT, body + encode_tlv(TAG_SIGNATURE, signature)), ephemeral_key


def smdp_finish(
    ephemeral_key: ec.EllipticCurvePrivateKey,
    ecasd_public_key: ec.EllipticCurvePublicKey,
    crt: KeyAgreementCrt,
    response: bytes,
) -> StaticKeys:
    """SM-DP side after the eUICC's answer: derive the keys, check the receipt (``EckaError('receipt')``)."""
    dr, rcpt = parse_key_agreement_response(response)
    dr = _check_dr(crt, dr)
    derived = derive_keys(shared_secret(ephemeral_key, ecasd_public_key), crt, dr)
    if not hmac.compare_digest(rcpt, receipt(derived.receipt_key, crt.encode(), dr)):
        raise EckaError("receipt", "the eUICC's receipt does not verify")
    return derived.keys


def card_key_agreement(
    ecasd_key: ec.EllipticCurvePrivateKey,
    smdp_public_key: ec.EllipticCurvePublicKey,
    challenge: bytes,
    dgi_3a02: bytes,
    dr: bytes | None = None,
) -> tuple[bytes, StaticKeys, KeyAgreementCrt]:
    """eUICC side of STORE DATA #2: ``(answer ['85' L DR] '86' L receipt, new keyset, CRT)``.

    ``smdp_public_key`` is PK.DP.ECDSA from the certificate of STORE DATA #1 (already verified); ``challenge`` the
    RC sent in answer to it. ``dr`` fixes the derivation random (tests); when the CRT asks for one and none is
    given, 16 random bytes are drawn.
    """
    try:
        dgi, body = parse_dgi(bytes(dgi_3a02))
    except ValueError as e:
        raise _format(str(e)) from None
    if dgi != DGI_KEY_AGREEMENT:
        raise _format(f"DGI {dgi:04X} is not '3A02'")
    fields = _tlvs(body, "DGI '3A02'")
    if [f.tag for f in fields] != [TAG_CRT, TAG_PUBLIC_KEY, TAG_SIGNATURE]:
        raise _format("DGI '3A02' must hold 'A6', '7F49', '5F37' in that order")
    crt_tlv = body[fields[0].start : fields[0].end]
    crt = KeyAgreementCrt.decode(crt_tlv)
    if not _verify_raw(smdp_public_key, signed_data(body[: fields[2].start], challenge), fields[2].value):
        raise EckaError("signature", "the SM-DP signature over STORE DATA '3A02' does not verify")
    ephemeral_public = decode_public_key(body[fields[1].start : fields[1].end])
    _check_same_curve(ephemeral_public.curve, ecasd_key.curve, "ePK.DP.ECKA vs ECASD")
    if crt.dr_length and dr is None:
        dr = os.urandom(crt.dr_length)
    dr = _check_dr(crt, dr)
    derived = derive_keys(shared_secret(ecasd_key, ephemeral_public), crt, dr)
    answer = key_agreement_response(dr, receipt(derived.receipt_key, crt_tlv, dr))
    return answer, derived.keys, crt


# --- persisting the ephemeral key between STORE DATA #2 and its answer -------------------------------------------

_CURVES_BY_NAME: dict[str, type[ec.EllipticCurve]] = {
    cls.name: cls
    for cls in (
        ec.SECP256R1,
        ec.SECP384R1,
        ec.SECP521R1,
        ec.BrainpoolP256R1,
        ec.BrainpoolP384R1,
        ec.BrainpoolP512R1,
    )
}


def export_private(key: ec.EllipticCurvePrivateKey) -> dict:
    """``{"curve": name, "d": private scalar hex}``: JSON-serialisable; secret, store it like a key."""
    size = (key.curve.key_size + 7) // 8
    return {"curve": key.curve.name, "d": key.private_numbers().private_value.to_bytes(size, "big").hex().upper()}


def import_private(d: dict) -> ec.EllipticCurvePrivateKey:
    try:
        curve = _CURVES_BY_NAME[d["curve"]]()
    except KeyError:
        raise EckaError("curve", f"unsupported curve {d.get('curve')!r}") from None
    return ec.derive_private_key(int(d["d"], 16), curve)


# --- the ISD-R case: SM-SR change (ES7 CreateAdditionalKeySet, ES5 EstablishISDRKeySet) ---------------------------

SCP80_KVNS = range(1, 16)  # the KVN is the high nibble of KIc/KID (TS 102 225 §5.1.2); ES7 allows 1..127
# SCP80 key identifiers of one key set (ETSI TS 102 226 key identifiers): 1 = KIc, 2 = KID, 3 = DEK.
SCP80_KEY_ID_KIC = 0x01
SCP80_KEY_ID_KID = 0x02
SCP80_KEY_ID_DEK = 0x03
ISDR_KEY_LENGTH = 16  # AES-128: the SGP.02 §2.3.3 baseline, and what every SCP80 AES implementation supports
# ES7 ECCKeyLengthType (v4 euicc.common.types.xsd) -> the size in bits of the curve of the ephemeral key
ECC_KEY_LENGTHS = {"ECC-256": 256, "ECC-384": 384, "ECC-512": 512, "ECC-521": 521}
# v4 ES7 XSD: InitialSequenceCounter "is ignored by the receiving SM-SR. The calling SM-SR SHOULD set a value that
# is clearly not relevant as an initial sequence counter value (e.g. -1)".
IGNORED_INITIAL_SEQUENCE_COUNTER = -1


@dataclass(frozen=True)
class IsdrKeySet:
    """The ISD-R key set that scenario #3 creates for an SM-SR: an SCP80 key set.

    Key usage '10' (three keys) gives Key-ENC, Key-MAC and Key-DEK; in SCP80 terms (key identifiers of ETSI
    TS 102 226) Key-ENC is the KIc key (key id 1, ciphering), Key-MAC the KID key (key id 2, cryptographic
    checksum) and Key-DEK the DEK (key id 3), which would cipher key values sent under this key set (PUT KEY; not
    used by esx). ``scp80`` is what secures packets (:mod:`keys.scp80`); its KVN is the CRT's '83'.
    """

    scp80: Scp80Keyset
    dek: bytes

    @property
    def kvn(self) -> int:
        return self.scp80.kvn

    @classmethod
    def from_keys(cls, kvn: int, keys: StaticKeys) -> IsdrKeySet:
        try:
            return cls(Scp80Keyset(kvn=kvn, enc=keys.enc, mac=keys.mac), keys.dek)
        except ValueError as e:
            raise _format(f"no SCP80 key set: {e}") from None

    def __repr__(self) -> str:
        return f"IsdrKeySet(kvn={self.kvn}, <secret>)"


def free_scp80_kvn(used) -> int:
    """The lowest SCP80 KVN (1..15) not in ``used`` (e.g. the SCP80 key sets of the EIS's ISD-R): the KVN SM-SR2
    can ask for. :class:`EckaError` ('format') when all fifteen are taken."""
    taken = {int(k) for k in used}
    for kvn in SCP80_KVNS:
        if kvn not in taken:
            return kvn
    raise _format("every SCP80 key version 1..15 is in use")


def isdr_crt(key_version_number: int, scenario_parameter: int, host_id: bytes = b"") -> KeyAgreementCrt:
    """The 'A6' CRT for an ISD-R SCP80 key set (see :func:`isdr_dgi_3a02` for the mapping).

    :class:`EckaError` ('format') for a KVN SCP80 cannot address (outside 1..15), a parameter bit not supported
    (:class:`KeyAgreementCrt`), or a HostID that disagrees with parameter bit '04'.
    """
    if isinstance(key_version_number, bool) or not isinstance(key_version_number, int):
        raise _format(f"KeyVersionNumber {key_version_number!r} is not an integer")
    if key_version_number not in SCP80_KVNS:
        raise _format(f"KeyVersionNumber {key_version_number}: an SCP80 key set has KVN 1..15 (KIc/KID high nibble)")
    host_id = bytes(host_id)
    return KeyAgreementCrt(
        scenario_parameter=scenario_parameter,
        key_usage=KEY_USAGE_THREE_SC_KEYS,
        key_type=KEY_TYPE_AES,
        key_length=ISDR_KEY_LENGTH,
        key_id=SCP80_KEY_ID_KIC,
        kvn=key_version_number,
        initial_counter=b"",
        host_id=host_id or None,
    )


def isdr_dgi_3a02(
    *,
    key_version_number: int,
    initial_sequence_counter: int,
    ecc_key_length: str,
    scenario_parameter: int,
    host_id: bytes,
    ephemeral_public_key: bytes,
    signature: bytes | None,
) -> bytes:
    """STORE DATA '3A02' for the ISD-R, from the fields of ES7 CreateAdditionalKeySet (the one place they map).

    ``'3A02' L { 'A6' CRT, '7F49' ePK.SR.ECKA, '5F37' signature }``; with ``signature=None``, the same DGI without
    '5F37': what SM-SR2 signs, followed by '0085' L RC (:func:`signed_data`). SM-SR1 calls this with the fields it
    received to build the command it relays; SM-SR2 with the fields it sends to build what it signs.

    ES7 field (v4 XSD) -> '3A02':

    * KeyVersionNumber -> '83' KVN. ES7 allows 1..127; only 1..15 can name an SCP80 key set, the rest is refused.
    * InitialSequenceCounter -> nothing: '91' is always empty. CHOICE: the v4 XSD says the receiving SM-SR
      ignores it (sgp02-v4-es7-notes.md §3.3: WHTY's SM-SR2 CRT has an empty '91' too); the card starts the new
      key set's counter at 0. A peer that encodes it (njiwa writes it on 5 bytes) signs another CRT than the one
      relayed here, and the card refuses its signature.
    * ECCKeyLength -> nothing; it must be the size of the curve of the ephemeral key ('F0' in '7F49' names the
      curve). ECC-256 covers P-256 and brainpoolP256r1.
    * ScenarioParameter -> '90' 03 <parameter> (supported bits: :class:`KeyAgreementCrt`). It is an ``xs:byte``
      in ES7, so only 0..127 travel; every supported bit fits.
    * HostId -> '84' HostID when parameter bit '04' is set; ES7 sends an empty string otherwise.
    * EphemeralPublicKey -> '7F49', taken as is. CHOICE: ES7 carries the whole '7F49' TLV
      (``{'B0' 04||X||Y, 'F0' key parameter reference}``, :func:`encode_public_key`), so SM-SR1 needs no curve of
      its own to rebuild it.
    * Signature -> the value of '5F37' (r||s, :mod:`keys.gp_cert` form).
    * Fixed by the ISD-R case: '95' 10 (three keys, :class:`IsdrKeySet`), '80' 88 (AES), '81' 10 (AES-128),
      '82' 01 (the first key identifier, KIc).

    :class:`EckaError`: 'format' for a value that cannot be encoded, 'curve' when the ephemeral key does not
    match ECCKeyLength or names an unsupported curve.
    """
    if isinstance(initial_sequence_counter, bool) or not isinstance(initial_sequence_counter, int):
        raise _format(f"InitialSequenceCounter {initial_sequence_counter!r} is not an integer")
    crt = isdr_crt(key_version_number, scenario_parameter, host_id)
    if ecc_key_length not in ECC_KEY_LENGTHS:
        raise _format(f"ECCKeyLength {ecc_key_length!r} is not one of {', '.join(ECC_KEY_LENGTHS)}")
    epk = bytes(ephemeral_public_key)
    curve = decode_public_key(epk).curve
    if curve.key_size != ECC_KEY_LENGTHS[ecc_key_length]:
        raise EckaError("curve", f"ephemeral key on {curve.name} ({curve.key_size} bits) but ECCKeyLength "
                                 f"{ecc_key_length}")
    body = crt.encode() + epk
    if signature is not None:
        signature = bytes(signature)
        if not signature or len(signature) % 2 or len(signature) > 132:
            raise _format(f"signature of {len(signature)} bytes is not r||s")
        body += encode_tlv(TAG_SIGNATURE, signature)
    return encode_dgi(DGI_KEY_AGREEMENT, body)


@dataclass(frozen=True)
class AdditionalKeySet:
    """The key-agreement fields of ES7 CreateAdditionalKeySet (Eid aside), by their ES7 names: what SM-SR2 sends
    (:func:`smsr_key_agreement`) and SM-SR1 turns into STORE DATA '3A02' (:meth:`dgi_3a02`). ``host_id`` is
    empty when not used; ``ephemeral_public_key`` is the '7F49' TLV; ``signature`` is r||s."""

    key_version_number: int
    initial_sequence_counter: int
    ecc_key_length: str
    scenario_parameter: int
    host_id: bytes
    ephemeral_public_key: bytes
    signature: bytes

    def dgi_3a02(self) -> bytes:
        """:func:`isdr_dgi_3a02` of these fields."""
        return isdr_dgi_3a02(
            key_version_number=self.key_version_number, initial_sequence_counter=self.initial_sequence_counter,
            ecc_key_length=self.ecc_key_length, scenario_parameter=self.scenario_parameter, host_id=self.host_id,
            ephemeral_public_key=self.ephemeral_public_key, signature=self.signature,
        )  # fmt: skip

    def crt(self) -> KeyAgreementCrt:
        return isdr_crt(self.key_version_number, self.scenario_parameter, self.host_id)


def _ecc_key_length(curve: ec.EllipticCurve) -> str:
    for name, bits in ECC_KEY_LENGTHS.items():
        if bits == curve.key_size:
            return name
    raise EckaError("curve", f"{curve.name} has no ES7 ECCKeyLength")


def smsr_key_agreement(
    smsr_key: ec.EllipticCurvePrivateKey,
    challenge: bytes,
    ecasd_public_key: ec.EllipticCurvePublicKey,
    key_version_number: int,
    *,
    scenario_parameter: int = PARAM_CERT_VERIFICATION_PRECEDES | PARAM_DR,
    host_id: bytes = b"",
    ephemeral_key: ec.EllipticCurvePrivateKey | None = None,
) -> tuple[AdditionalKeySet, ec.EllipticCurvePrivateKey]:
    """SM-SR2 after ES7 AuthenticateSMSR's callback: ``(the CreateAdditionalKeySet fields, eSK.SR.ECKA)``.

    ``smsr_key`` is SK.SR.ECDSA (the key of the certificate the card checked in '3A01'); ``challenge`` the card's
    RC; ``ecasd_public_key`` PK.ECASD.ECKA from the EIS (the ephemeral key is drawn on its curve). The signature
    covers :func:`isdr_dgi_3a02` without '5F37' followed by '0085' L RC (:func:`signed_data`). Keep the ephemeral
    key (:func:`export_private`) until :func:`smsr_finish`. InitialSequenceCounter is sent as -1 (v4 XSD).
    """
    curve = ecasd_public_key.curve
    if ephemeral_key is None:
        ephemeral_key = ec.generate_private_key(curve)
    _check_same_curve(ephemeral_key.curve, curve, "ephemeral key vs ECASD")
    fields = dict(
        key_version_number=key_version_number, initial_sequence_counter=IGNORED_INITIAL_SEQUENCE_COUNTER,
        ecc_key_length=_ecc_key_length(curve), scenario_parameter=scenario_parameter, host_id=bytes(host_id),
        ephemeral_public_key=encode_public_key(ephemeral_key.public_key()),
    )  # fmt: skip
    _, body = parse_dgi(isdr_dgi_3a02(**fields, signature=None))
    signature = _sign_raw(smsr_key, signed_data(body, challenge))
    return AdditionalKeySet(**fields, signature=signature), ephemeral_key


def smsr_finish(
    ephemeral_key: ec.EllipticCurvePrivateKey,
    ecasd_public_key: ec.EllipticCurvePublicKey,
    request: AdditionalKeySet,
    derivation_random: bytes | None,
    receipt_value: bytes,
) -> IsdrKeySet:
    """SM-SR2 after ES7 CreateAdditionalKeySet's callback (DerivationRandom, Receipt): the commit check.

    Derives the keys from ECDH(eSK.SR.ECKA, PK.ECASD.ECKA) and the CRT of ``request`` and checks the receipt.
    Returns the new key set of the ISD-R; :class:`EckaError` 'receipt' when the receipt does not verify, 'format'
    when a DR is missing although the CRT asks for one (or present although it does not). An empty
    ``derivation_random`` is read as none.
    """
    crt = request.crt()
    dr = _check_dr(crt, bytes(derivation_random) if derivation_random else None)
    derived = derive_keys(shared_secret(ephemeral_key, ecasd_public_key), crt, dr)
    expected = receipt(derived.receipt_key, crt.encode(), dr)
    if not hmac.compare_digest(bytes(receipt_value), expected):
        raise EckaError("receipt", "the eUICC's receipt does not verify")
    return IsdrKeySet.from_keys(crt.kvn, derived.keys)


def card_isdr_key_agreement(
    ecasd_key: ec.EllipticCurvePrivateKey,
    smsr_public_key: ec.EllipticCurvePublicKey,
    challenge: bytes,
    dgi_3a02: bytes,
    dr: bytes | None = None,
) -> tuple[bytes, IsdrKeySet, KeyAgreementCrt]:
    """ISD-R side of STORE DATA '3A02': ``(answer ['85' L DR] '86' L receipt, new SCP80 key set, CRT)``.

    :func:`card_key_agreement` with PK.SR.ECDSA from the verified '3A01' certificate, plus what an SCP80 key set
    needs: a KVN of 1..15 and the first key identifier '01' (KIc); otherwise :class:`EckaError` 'format'.
    """
    answer, keys, crt = card_key_agreement(ecasd_key, smsr_public_key, challenge, dgi_3a02, dr)
    if crt.kvn not in SCP80_KVNS:
        raise _format(f"KVN {crt.kvn:02X}: an SCP80 key set has KVN 1..15")
    if crt.key_id != SCP80_KEY_ID_KIC:
        raise _format(f"key identifier {crt.key_id:02X}: an SCP80 key set starts at '01' (KIc)")
    return answer, IsdrKeySet.from_keys(crt.kvn, keys), crt
