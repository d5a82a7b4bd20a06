"""A second, minimal implementation of the crypto that the known-answer tests hold keys/ against.

Written from the descriptions in ../shared/reference/crypto-ota.md (§1 scenario #3, §2 SCP03/SCP03t, §1.5 GP
certificates), NOT from keys/: nothing here imports esx, and only pyca/cryptography primitives are used (AES-ECB,
AES-CBC, AES-CMAC, the SP 800-108 KBKDF, SHA-256, ECDSA). A known-answer test computes its expected bytes here
and asserts that esx produces the same; tests/keys/test_reference.py checks this module itself against every
published vector that covers it (tests/keys/vectors.py), so the two implementations cannot drift together unseen.

Where a byte layout is one of esx's own documented choices (crypto-ota.md marks it [verify]; keys/ names the one
function that holds it), this module follows the same documented choice and says "[our choice]" next to it.
Agreement on those bytes shows that esx does what it documents, not that the choice matches a real eUICC.
"""

from __future__ import annotations

import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFCMAC, CounterLocation, Mode

# --- BER-TLV and block helpers ---------------------------------------------------------------------------------


def length(n: int) -> bytes:
    """BER definite length, shortest form (ISO 7816-4 §5.2.2.2): up to 127 in one byte, then '81' xx, '82' xxxx."""
    if n < 0x80:
        return bytes([n])
    if n < 0x100:
        return bytes([0x81, n])
    return bytes([0x82]) + n.to_bytes(2, "big")


def tlv(tag: int, value: bytes) -> bytes:
    """``tag`` is written as its big-endian bytes (0x7F21 -> 7F 21), as the tag tables print it."""
    return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big") + length(len(value)) + value


def dgi(number: int, value: bytes) -> bytes:
    """GP STORE DATA DGI: 2-byte DGI, length in one byte for 0..254, else 'FF' and two bytes."""
    size = bytes([len(value)]) if len(value) <= 254 else b"\xFF" + len(value).to_bytes(2, "big")
    return number.to_bytes(2, "big") + size + value


def aes_cmac(key: bytes, data: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def aes_ecb_block(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def aes_cbc(key: bytes, iv: bytes, data: bytes, *, decrypt: bool = False) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    ctx = cipher.decryptor() if decrypt else cipher.encryptor()
    return ctx.update(data) + ctx.finalize()


def pad80(data: bytes) -> bytes:
    """ISO/IEC 9797-1 method 2 to the AES block: '80', then '00' until a multiple of 16."""
    padded = data + b"\x80"
    while len(padded) % 16:
        padded += b"\x00"
    return padded


# --- ECDSA with the signature as plain r || s (GP certificates, STORE DATA '3A02') --------------------------------


def _hash_for(curve: ec.EllipticCurve) -> hashes.HashAlgorithm:
    # The hash follows the key size (crypto-ota.md §1.5); SGP.02 uses 256-bit curves only.
    assert curve.key_size == 256, "the reference covers 256-bit curves only"
    return hashes.SHA256()


def sign_raw(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """r || s, 32 bytes each, with deterministic ECDSA (RFC 6979) so that a whole signed structure can be pinned."""
    der = key.sign(data, ec.ECDSA(_hash_for(key.curve), deterministic_signing=True))
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def verify_raw(key: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> bool:
    if len(signature) != 64:
        return False
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        key.verify(der, data, ec.ECDSA(_hash_for(key.curve)))
    except InvalidSignature:
        return False
    return True


# GP key parameter reference, tag 'F0' (crypto-ota.md §1.4): '00' P-256, '03' brainpoolP256r1.
CURVE_REFERENCE = {"secp256r1": 0x00, "brainpoolP256r1": 0x03}


def public_key_tlv(key: ec.EllipticCurvePublicKey) -> bytes:
    """'7F49' { 'B0' 04||X||Y, 'F0' key parameter reference } (the GP certificate form, crypto-ota.md §1.5)."""
    point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return tlv(0x7F49, tlv(0xB0, point) + tlv(0xF0, bytes([CURVE_REFERENCE[key.curve.name]])))


# --- GP Amd E scenario #3 (crypto-ota.md §1.1-§1.3) --------------------------------------------------------------


def x963_kdf(z: bytes, shared_info: bytes, size: int) -> bytes:
    """ANSI X9.63 KDF with SHA-256: SHA-256(Z || 32-bit counter from 1 || SharedInfo), blocks joined and cut."""
    out, counter = b"", 1
    while len(out) < size:
        h = hashes.Hash(hashes.SHA256())
        h.update(z + counter.to_bytes(4, "big") + shared_info)
        out += h.finalize()
        counter += 1
    return out[:size]


def key_agreement_crt(
    parameter: int = 0x0A,
    key_length: int = 16,
    key_id: int = 0x01,
    kvn: int = 0x30,
    initial_counter: bytes = b"",
    host_id: bytes | None = None,
) -> bytes:
    """The 'A6' CRT: '90' 03 param, '95' 10 (three keys), '80' 88 (AES), '81' length, '82' key id, '83' KVN,
    '91' initial counter, ['84' HostID]. [our choice] this field order is the WHTY literal's (crypto-ota.md §1.2);
    parameter '0A' = '08' (certificate first) | '02' (DR) is esx's default."""
    body = (
        tlv(0x90, bytes([0x03, parameter]))
        + tlv(0x95, b"\x10")
        + tlv(0x80, b"\x88")
        + tlv(0x81, bytes([key_length]))
        + tlv(0x82, bytes([key_id]))
        + tlv(0x83, bytes([kvn]))
        + tlv(0x91, initial_counter)
    )
    if host_id is not None:
        body += tlv(0x84, host_id)
    return tlv(0xA6, body)


def signed_data_3a02(body_without_signature: bytes, challenge: bytes) -> bytes:
    """What SK.DP.ECDSA signs: '3A02' L (A6 || 7F49) || '0085' L RC. The '0085' tag is what njiwa and the TSM
    utility write (crypto-ota.md §1.1 step 3); [our choice] the DGI header, written over the body without the
    signature, is inside the signed bytes."""
    return dgi(0x3A02, body_without_signature) + b"\x00\x85" + bytes([len(challenge)]) + challenge


def store_data_3a02(smdp_key: ec.EllipticCurvePrivateKey, challenge: bytes, crt: bytes,
                    ephemeral_public: ec.EllipticCurvePublicKey) -> bytes:
    """STORE DATA #2: '3A02' L { 'A6' CRT, '7F49' ePK.DP.ECKA, '5F37' r||s }. [our choice] ePK nested as
    'B0'/'F0' inside '7F49' (njiwa's form; the TSM utility puts the bare point there, crypto-ota.md §1.5)."""
    body = crt + public_key_tlv(ephemeral_public)
    return dgi(0x3A02, body + tlv(0x5F37, sign_raw(smdp_key, signed_data_3a02(body, challenge))))


def scenario3_key_data(z: bytes, key_length: int = 16, dr: bytes | None = None,
                       host_id: bytes | None = None) -> tuple[bytes, bytes, bytes, bytes]:
    """(receipt key, Key-ENC, Key-MAC, Key-DEK) from ShS.

    SharedInfo = key usage '10' || key type '88' || key length || [DR] || [HostID-LV] (GP Amd A/E table quoted by
    the TSM utility, crypto-ota.md §1.3; WHTY's '10 88 10'). Key data = receipt key (16) then ENC, MAC, DEK
    ([our choice] WHTY's split for usage '10')."""
    info = bytes([0x10, 0x88, key_length]) + (dr or b"")
    if host_id is not None:
        info += bytes([len(host_id)]) + host_id
    data = x963_kdf(z, info, 16 + 3 * key_length)
    n = key_length
    return data[:16], data[16 : 16 + n], data[16 + n : 16 + 2 * n], data[16 + 2 * n :]


def scenario3_receipt(receipt_key: bytes, crt: bytes, dr: bytes | None) -> bytes:
    """AES-CMAC(receipt key, 'A6' CRT as sent || ['85' L DR]). [our choice] plain CMAC without ISO padding
    (WHTY, yubikit's SCP11; njiwa pads) and the DR TLV appended (njiwa) -- crypto-ota.md §1.3."""
    return aes_cmac(receipt_key, crt + (tlv(0x85, dr) if dr is not None else b""))


def key_agreement_answer(dr: bytes | None, receipt: bytes) -> bytes:
    """The eUICC's answer to STORE DATA #2: ['85' L DR] '86' L receipt (crypto-ota.md §1.1 step 4)."""
    return (tlv(0x85, dr) if dr is not None else b"") + tlv(0x86, receipt)


# --- the ISD-R case: SM-SR change (sgp02-wire.md §6.5; sgp02-v4-es7-notes.md §3.3) --------------------------------
# The same scenario #3, SM-SR2 as the off-card entity, the new key set an SCP80 key set of the ISD-R. Its key
# identifiers are those of an SCP80 key set (ETSI TS 102 226): 1 = KIc, 2 = KID, 3 = DEK.


def isdr_key_agreement_crt(kvn: int, parameter: int = 0x0A, host_id: bytes | None = None) -> bytes:
    """The 'A6' CRT that SM-SR1 relays for ES7 CreateAdditionalKeySet: KVN from KeyVersionNumber, scenario
    parameter from ScenarioParameter, '84' from HostId when bit '04' is set; the first key identifier '01' (KIc)
    and AES-128. [our choice] '91' empty whatever InitialSequenceCounter says (the v4 ES7 XSD: the receiving SM-SR
    ignores it; WHTY's SM-SR2 CRT has an empty '91' too)."""
    return key_agreement_crt(parameter=parameter, key_length=16, key_id=0x01, kvn=kvn, initial_counter=b"",
                             host_id=host_id)


def isdr_store_data_3a02(crt: bytes, ephemeral_public_tlv: bytes, signature: bytes | None) -> bytes:
    """'3A02' L { CRT, '7F49' ePK.SR.ECKA, ['5F37' r||s] }; without the signature, the DGI SM-SR2 signs (followed
    by '0085' L RC). [our choice] ES7 EphemeralPublicKey is the whole '7F49' TLV, placed as is."""
    body = crt + ephemeral_public_tlv
    return dgi(0x3A02, body + (tlv(0x5F37, signature) if signature is not None else b""))


def isdr_signature(smsr_key: ec.EllipticCurvePrivateKey, crt: bytes, ephemeral_public_tlv: bytes,
                   challenge: bytes) -> bytes:
    """SK.SR.ECDSA over '3A02' L (CRT || '7F49') || '0085' L RC: the ISD-P rule with the SM-SR as signer."""
    return sign_raw(smsr_key, signed_data_3a02(crt + ephemeral_public_tlv, challenge))


def isdr_scp80_keys(z: bytes, dr: bytes | None = None,
                    host_id: bytes | None = None) -> tuple[bytes, bytes, bytes, bytes]:
    """(receipt key, KIc key, KID key, DEK): scenario #3 key data with key usage '10', AES-128, split receipt key
    then Key-ENC (the KIc key), Key-MAC (the KID key), Key-DEK."""
    return scenario3_key_data(z, 16, dr, host_id)


# --- SCP03 (GP Amd D; crypto-ota.md §2.1) ---------------------------------------------------------------------------


def scp03_kdf(key: bytes, constant: int, context: bytes, bits: int) -> bytes:
    """NIST SP 800-108 counter mode, PRF AES-CMAC, with the Amd D input order: 11 x '00' || constant || '00' ||
    L (2 bytes) || i (1 byte) || context. pyca's KBKDF puts the counter where the fixed data breaks (byte 15)."""
    fixed = bytes(11) + bytes([constant, 0x00]) + bits.to_bytes(2, "big") + context
    kdf = KBKDFCMAC(
        algorithm=algorithms.AES, mode=Mode.CounterMode, length=bits // 8, rlen=1, llen=None,
        location=CounterLocation.MiddleFixed, label=None, context=None, fixed=fixed, break_location=15,
    )  # fmt: skip
    return kdf.derive(key)


def scp03_session_keys(key_enc: bytes, key_mac: bytes, host_challenge: bytes,
                       card_challenge: bytes) -> tuple[bytes, bytes, bytes]:
    """(S-ENC, S-MAC, S-RMAC): constants '04' from Key-ENC, '06' and '07' from Key-MAC, as long as the keys."""
    context, bits = host_challenge + card_challenge, len(key_enc) * 8
    return (
        scp03_kdf(key_enc, 0x04, context, bits),
        scp03_kdf(key_mac, 0x06, context, bits),
        scp03_kdf(key_mac, 0x07, context, bits),
    )


def scp03_cryptograms(s_mac: bytes, host_challenge: bytes, card_challenge: bytes) -> tuple[bytes, bytes]:
    """(card cryptogram, host cryptogram): constants '00' and '01' under S-MAC, 64 bits."""
    context = host_challenge + card_challenge
    return scp03_kdf(s_mac, 0x00, context, 64), scp03_kdf(s_mac, 0x01, context, 64)


def command_icv(s_enc: bytes, counter: int) -> bytes:
    return aes_ecb_block(s_enc, counter.to_bytes(16, "big"))


def response_icv(s_enc: bytes, counter: int) -> bytes:
    return aes_ecb_block(s_enc, b"\x80" + counter.to_bytes(15, "big"))


# --- SCP03 on C-APDUs, the host end (GP Amd D §6.2, §7; crypto-ota.md §2.1) ------------------------------------


def scp03_card_challenge(key_enc: bytes, sequence_counter: int, aid: bytes) -> bytes:
    """Pseudo-random card challenge (i bit '10'): KDF with constant '02' under Key-ENC, 64 bits, context = the
    3-byte sequence counter (the one the INITIALIZE UPDATE response reports) || the security domain's AID."""
    return scp03_kdf(key_enc, 0x02, sequence_counter.to_bytes(3, "big") + aid, 64)


def scp03_initialize_update(kvn: int, host_challenge: bytes) -> bytes:
    """80 50 KVN 00 08 host challenge 00 (case 4: the card answers data)."""
    return bytes([0x80, 0x50, kvn, 0x00, 0x08]) + host_challenge + b"\x00"


def scp03_initialize_update_answer(kvn: int, card_challenge: bytes, card_cryptogram: bytes,
                                   sequence_counter: int) -> bytes:
    """The INITIALIZE UPDATE response data for i = '70': 10 x '00' || KVN '03' '70' || card challenge || card
    cryptogram || sequence counter (3)."""
    return bytes(10) + bytes([kvn, 0x03, 0x70]) + card_challenge + card_cryptogram + sequence_counter.to_bytes(3, "big")


def scp03_external_authenticate(s_mac: bytes, host_cryptogram: bytes, level: int = 0x33) -> tuple[bytes, bytes]:
    """(84 82 SL 00 10 host cryptogram C-MAC, the MCV after it): the C-MAC over 16 x '00' || header || cryptogram."""
    header = bytes([0x84, 0x82, level, 0x00, 0x10])
    mac = aes_cmac(s_mac, bytes(16) + header + host_cryptogram)
    return header + host_cryptogram + mac[:8], mac


def scp03_wrap(s_enc: bytes, s_mac: bytes, mcv: bytes, counter: int, apdu: bytes) -> tuple[bytes, bytes]:
    """(the command under C-DECRYPTION and C-MAC, the new MCV) for a short APDU of case 3 or 4: its data padded
    ('80' 00..) and enciphered under S-ENC with the ICV of ``counter``, CLA bit '04' set, Lc counting the 8-byte MAC,
    the MAC over MCV || header || ciphered data; a trailing Le stays."""
    lc = apdu[4]
    data, le = apdu[5:5 + lc], apdu[5 + lc:]
    ciphered = aes_cbc(s_enc, command_icv(s_enc, counter), pad80(data))
    header = bytes([apdu[0] | 0x04]) + apdu[1:4] + bytes([len(ciphered) + 8])
    mac = aes_cmac(s_mac, mcv + header + ciphered)
    return header + ciphered + mac[:8] + le, mac


def scp03_r_mac(s_rmac: bytes, command_mcv: bytes, data: bytes, sw: int) -> bytes:
    """The R-MAC: the first 8 bytes of CMAC(S-RMAC, MCV of the command || response data || SW)."""
    return aes_cmac(s_rmac, command_mcv + data + sw.to_bytes(2, "big"))[:8]


# --- SCP03t (SGP.02 §4.1.3.3; crypto-ota.md §2.2) -------------------------------------------------------------------


def scp03t_mac(key: bytes, mcv: bytes, tag: int, value_without_mac: bytes) -> bytes:
    """Full CMAC over MCV || tag || final length (counting the 8-byte MAC) || value (crypto-ota.md §2.2)."""
    return aes_cmac(key, mcv + bytes([tag]) + length(len(value_without_mac) + 8) + value_without_mac)


def scp03t_initialize_update(kvn: int, key_id: int, host_challenge: bytes) -> bytes:
    """'84' KVN || key id || host challenge (njiwa's layout, crypto-ota.md §2.2)."""
    return tlv(0x84, bytes([kvn, key_id]) + host_challenge)


def scp03t_card_84(kvn: int, card_challenge: bytes, card_cryptogram: bytes, sequence_counter: int) -> bytes:
    """The card's '84': the INITIALIZE UPDATE response of Amd D with i = '70' -- diversification data (10) || KVN ||
    '03' || '70' || card challenge || card cryptogram || sequence counter (3). [our choice] diversification data
    all '00' (as in pySim's vectors)."""
    return tlv(0x84, bytes(10) + bytes([kvn, 0x03, 0x70]) + card_challenge + card_cryptogram
               + sequence_counter.to_bytes(3, "big"))


def scp03t_external_authenticate(s_mac: bytes, host_cryptogram: bytes) -> tuple[bytes, bytes]:
    """('85' SL '33' || host cryptogram || C-MAC, MCV after it); the MCV starts at 16 x '00'."""
    body = b"\x33" + host_cryptogram
    mac = scp03t_mac(s_mac, bytes(16), 0x85, body)
    return tlv(0x85, body + mac[:8]), mac


def scp03t_segment(s_enc: bytes, s_mac: bytes, mcv: bytes, counter: int, segment: bytes,
                   tag: int = 0x86) -> tuple[bytes, bytes]:
    """('86' C-ENC(segment) || C-MAC, new MCV). C-ENC: pad80 then AES-CBC with ICV = AES(S-ENC, counter block);
    [our choice] an empty segment is sent without ciphering (SCP03's rule for commands without data)."""
    ciphered = aes_cbc(s_enc, command_icv(s_enc, counter), pad80(segment)) if segment else b""
    mac = scp03t_mac(s_mac, mcv, tag, ciphered)
    return tlv(tag, ciphered + mac[:8]), mac


def scp03t_answer(s_enc: bytes, s_rmac: bytes, command_mcv: bytes, counter: int, data: bytes) -> bytes:
    """The card's answer to one '86': [our choice] an '86' TLV holding R-ENC(data) || R-MAC. R-ENC uses the ICV
    of the counter of the command answered with its first byte '80'; the R-MAC is under S-RMAC over the MCV of
    that command (SCP03's R-MAC rule) || '86' || length || ciphered data. Empty data: R-MAC only."""
    ciphered = aes_cbc(s_enc, response_icv(s_enc, counter), pad80(data)) if data else b""
    return tlv(0x86, ciphered + scp03t_mac(s_rmac, command_mcv, 0x86, ciphered)[:8])


def scp03t_open_answer(s_enc: bytes, counter: int, answer_value: bytes) -> bytes:
    """Decipher the value of an '86' answer (R-MAC not checked here) and strip the '80' padding."""
    ciphered = answer_value[:-8]
    if not ciphered:
        return b""
    padded = aes_cbc(s_enc, response_icv(s_enc, counter), ciphered, decrypt=True)
    return padded[: padded.rindex(0x80)]


# --- GP '7F21' certificates (crypto-ota.md §1.5) --------------------------------------------------------------------


def bcd_date(day: datetime.date) -> bytes:
    return bytes.fromhex(f"{day.year:04d}{day.month:02d}{day.day:02d}")


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
    """The signed fields of '7F21': '93', '42', '5F20', '95', ['5F25'], '5F24', ['73' { ['C8'], ['C9'] }], '7F49'.
    The order to '7F49' is the GlobalPlatformPro vector's; [our choice] '73' with 'C8' then 'C9' before '7F49'
    (crypto-ota.md §1.5; SGP.02 Tables 77/78 not checked)."""
    fields = tlv(0x93, serial) + tlv(0x42, ca_id) + tlv(0x5F20, subject_id) + tlv(0x95, key_usage)
    if effective is not None:
        fields += tlv(0x5F25, bcd_date(effective))
    fields += tlv(0x5F24, bcd_date(expiry))
    discretionary = b""
    if cert_type is not None:
        discretionary += tlv(0xC8, bytes([cert_type]))
    if authority_key_id is not None:
        discretionary += tlv(0xC9, authority_key_id)
    if discretionary:
        fields += tlv(0x73, discretionary)
    return fields + public_key_tlv(public_key)


def gp_certificate(tbs: bytes, signer: ec.EllipticCurvePrivateKey) -> bytes:
    """'7F21' { tbs, '5F37' r||s over tbs }, signed deterministically (RFC 6979)."""
    return tlv(0x7F21, tbs + tlv(0x5F37, sign_raw(signer, tbs)))


def gp_certificate_split(cert: bytes) -> tuple[bytes, bytes]:
    """(signed bytes, r||s) of a '7F21' certificate whose '5F37' holds a 64-byte signature (the last 67 bytes)."""
    assert cert[:2] == b"\x7F\x21" and cert[-67:-64] == b"\x5F\x37\x40", "not a '7F21' with a 64-byte '5F37'"
    header = 3 if cert[2] < 0x80 else 2 + (cert[2] & 0x7F) + 1
    return cert[header:-67], cert[-64:]
