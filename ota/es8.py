"""ES8 (SM-DP -> ISD-P, tunnelled through ES3.SendData and ES5) codec: pure functions shared by both ends.

Theory of operation
-------------------
The SM-DP builds ES8 commands with this module and reads the card's answers with it; the SM-SR only checks the
framing (:func:`split_send_data`) and relays; the simulated eUICC (``euicc_sim.es8``) parses the commands with it.
Nothing here keeps state, does I/O or any cryptography: key agreement lives in ``keys.ecka``, SCP03t in
``keys.scp03t``, the profile package in ``ota.saip``.

The wire protocol (fixed by the project; sgp02-wire §6.3-6.4 and crypto-ota §1-2 for the contents)::

    ES3.SendData Data   = hex of { ES8 command TLV }+, each one of
                            '22' L C-APDU                              (EstablishISDPKeySet and friends)
                            '84' L KVN KID host-challenge              (SCP03t InitializeUpdate)
                            '85' L SL host-cryptogram C-MAC            (SCP03t ExternalAuthenticate)
                            '86' L ciphered profile-package segment    (SCP03t, C-ENC + C-MAC)
    SM-SR -> eUICC      = 'AA' L { the same TLVs, unchanged }          SCP80, ISD-R keyset, TAR = isdp_tar(ISD-P AID)
    eUICC -> SM-SR PoR  = 'AB' L { '80' 01 n, one TLV per executed command }
                            '23' L R-APDU for a '22'; the SCP03t response TLV as-is for '84'/'85'/'86'
                            ('84'/'85'/'86', or the error TLVs '9F84'/'9F85'/'9F86')
    EuiccResponseData   = that response script, unchanged

The card stops at the first error (:func:`is_error_response`): an R-APDU whose SW is not 9000/61xx/62xx/63xx, a
'9Fxx' TLV, or '90' 01 01 (TS 102 226 bad format, for a tag that is no ES8 command); ``n`` counts the failed
command too.

The EstablishISDPKeySet C-APDUs (sgp02-wire §6.3, njiwa's order)::

    80 E6 20 00 Lc 00 00 LV(ISD-P AID) 00 00 00   INSTALL [for personalization] (GPCS 2.3 §11.5: empty ELF and
                                                  module AIDs, empty privileges, parameters and token)
    80 E2 09 00 Lc '3A01' L {'7F21' ...} 00       STORE DATA, DGI format, block 0, more blocks: CERT.DP.ECDSA
                                                  -> '85' 10 RC 9000
    80 E2 89 01 Lc '3A02' L {A6 7F49 5F37} 00     STORE DATA, DGI format, last block 1, response expected
                                                  -> ['85' DR] '86' receipt 9000

UpdateConnectivityParameters (ES3 -> ES5 -> ES8, sgp02-wire §6.4: "DGI 3A07 via SCP03 to the ISD-P")::

    ES3.UpdateConnectivityParameters ConnectivityParameters
                        = hex of { ES8 command TLV }+, framed as SendData's Data (split_send_data), relayed the
                          same way to the TAR of the ICCID's ISD-P; what the SM-DP puts there is an SCP03 session
                          (GP Amd D) with the ISD-P's key set from the download, on '22' C-APDUs:
    80 50 KVN 00 08 host-challenge 00             INITIALIZE UPDATE -> diversification data, key info, card
                                                  challenge, card cryptogram, sequence counter 9000
    84 82 33 00 10 host-cryptogram C-MAC          EXTERNAL AUTHENTICATE, security level '33' -> 9000
    84 E2 88 00 Lc C-ENC('3A07' L {value}) C-MAC  STORE DATA under C-MAC and C-DECRYPTION -> R-MAC 9000

CHOICE (ours; SGP.02's own text was not at hand): the ConnectivityParameters carry the whole session, not only
the STORE DATA. The card challenge is pseudo-random (i = '70', keys.scp03.pseudo_random_card_challenge), so an
SM-DP that knows the ISD-P's sequence counter prepares all three commands at once; one that does not reads it
from an INITIALIZE UPDATE sent by ES3.SendData first (that opens a session too: the next has the counter + 1). The value of DGI 3A07 (the connectivity parameters
themselves: SMS centre, bearer, ...) is a sequence of BER-TLVs the ISD-P keeps as it came; its inner layout is
not interpreted here.

CHOICE: both STORE DATA commands carry ``Le = '00'`` (ISO case 4), as ``ota.es5`` does for every command that returns
data; the card accepts them with or without Le. The two STORE DATA are one logical chain (P2 block 0 then 1), but
each carries one whole DGI, so the card handles each on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from keys.dgi import parse_dgi
from keys.ecka import DGI_CERTIFICATE, DGI_KEY_AGREEMENT, dgi_3a01
from keys.tlv import encode_tlv
from ota import remote
from ota.es5 import CLA_GP, INS_INSTALL, INS_STORE_DATA, Apdu

__all__ = [
    "TAG_C_APDU", "TAG_R_APDU", "TAG_INITIALIZE_UPDATE", "TAG_EXTERNAL_AUTHENTICATE", "TAG_PROFILE_SEGMENT",
    "TAG_BAD_FORMAT", "BAD_FORMAT_UNKNOWN_TAG",
    "COMMAND_TAGS", "DGI_SMDP_CERTIFICATE", "DGI_KEY_AGREEMENT", "P1_INSTALL_FOR_PERSONALIZATION",
    "isdp_tar", "install_for_personalization", "parse_install_for_personalization",
    "store_data_3a01", "store_data_3a02", "parse_store_data",
    "command_tlv", "send_data_payload", "split_send_data", "parse_send_data_response", "is_error_response",
    "is_sw_success",
    "INS_INITIALIZE_UPDATE", "INS_EXTERNAL_AUTHENTICATE", "DGI_CONNECTIVITY_PARAMETERS", "SW_AUTHENTICATION_FAILED",
]

TAG_C_APDU = remote.TAG_C_APDU  # '22'
TAG_R_APDU = remote.TAG_R_APDU  # '23'
TAG_INITIALIZE_UPDATE = 0x84  # SCP03t, sgp02-wire §6.4
TAG_EXTERNAL_AUTHENTICATE = 0x85
TAG_PROFILE_SEGMENT = 0x86
TAG_BAD_FORMAT = remote.TAG_BAD_FORMAT  # '90' 01 x: the card could not parse a command (TS 102 226 §5.2.2)
BAD_FORMAT_UNKNOWN_TAG = 0x01
COMMAND_TAGS = frozenset({TAG_C_APDU, TAG_INITIALIZE_UPDATE, TAG_EXTERNAL_AUTHENTICATE, TAG_PROFILE_SEGMENT})
_RESPONSE_TAGS = frozenset({TAG_R_APDU, TAG_INITIALIZE_UPDATE, TAG_EXTERNAL_AUTHENTICATE, TAG_PROFILE_SEGMENT,
                            TAG_BAD_FORMAT})

DGI_SMDP_CERTIFICATE = DGI_CERTIFICATE  # '3A01', STORE DATA #1 of EstablishISDPKeySet (keys.ecka owns the DGIs)
DGI_KEY_AGREEMENT = DGI_KEY_AGREEMENT  # '3A02', STORE DATA #2

# UpdateConnectivityParameters (the module doc): SCP03 on C-APDUs (GP Amd D §7) and the DGI it stores.
INS_INITIALIZE_UPDATE = 0x50
INS_EXTERNAL_AUTHENTICATE = 0x82
DGI_CONNECTIVITY_PARAMETERS = 0x3A07  # in an ISD-P; the same number in the ISD-R is the SM-SR's address (ota.es5)
SW_AUTHENTICATION_FAILED = 0x6300  # EXTERNAL AUTHENTICATE: the host cryptogram did not verify (Amd D §7.2)

P1_INSTALL_FOR_PERSONALIZATION = 0x20
_P1_STORE_DATA_3A01 = 0x09  # b4 DGI format, b1 response expected; b8 clear: block 0 of a two-block chain
_P2_STORE_DATA_3A01 = 0x00
_P1_STORE_DATA_3A02 = 0x89  # b8 last block, b4 DGI format, b1 response expected
_P2_STORE_DATA_3A02 = 0x01  # block number 1


def isdp_tar(aid: bytes) -> bytes:
    """The TAR that addresses an ISD-P over SCP80: bytes 13..15 (1-based) of its AID.

    CHOICE (ours, after the SGP.02 Annex H AID layout ``A0000005591010FFFFFFFF89 <3-byte instance> 00``, where the
    ISD-R ``...89 000001 00`` has TAR '000001' the same way; see sgp02.identifiers.isd_p_aid). SGP.02 does not reach an
    ISD-P by TAR at all (the ISD-R forwards), so this is the one place the convention lives.
    """
    aid = bytes(aid)
    if not 15 <= len(aid) <= 16:
        raise ValueError(f"AID of {len(aid)} bytes has no TAR in bytes 13..15")
    return aid[12:15]


def _lv(value: bytes) -> bytes:
    if len(value) > 0xFF:
        raise ValueError("LV field longer than 255 bytes")
    return bytes([len(value)]) + bytes(value)


def _check_aid(aid: bytes) -> bytes:
    aid = bytes(aid)
    if not 5 <= len(aid) <= 16:
        raise ValueError(f"AID of {len(aid)} bytes (must be 5..16)")
    return aid


def install_for_personalization(aid: bytes) -> bytes:
    """``80 E6 20 00`` INSTALL [for personalization] of the ISD-P ``aid`` (no Le)."""
    data = _lv(b"") + _lv(b"") + _lv(_check_aid(aid)) + _lv(b"") + _lv(b"") + _lv(b"")
    return Apdu(CLA_GP, INS_INSTALL, P1_INSTALL_FOR_PERSONALIZATION, 0x00, data).to_bytes()


def parse_install_for_personalization(apdu: Apdu) -> bytes:
    """Card side: the application AID of an INSTALL [for personalization]; ValueError when it is not one.

    The six LV fields must fill the data exactly; the fields other than the AID are not interpreted (GPCS has them
    empty).
    """
    if apdu.ins != INS_INSTALL or apdu.p1 != P1_INSTALL_FOR_PERSONALIZATION:
        raise ValueError(f"not an INSTALL [for personalization] (INS {apdu.ins:02X} P1 {apdu.p1:02X})")
    data, pos, fields = apdu.data, 0, []
    for _ in range(6):
        if pos >= len(data) or pos + 1 + data[pos] > len(data):
            raise ValueError("INSTALL [for personalization] data truncated")
        fields.append(data[pos + 1 : pos + 1 + data[pos]])
        pos += 1 + data[pos]
    if pos != len(data):
        raise ValueError("trailing bytes after INSTALL [for personalization] token")
    return _check_aid(fields[2])


def store_data_3a01(cert: bytes) -> bytes:
    """``80 E2 09 00`` STORE DATA ``'3A01' L {'7F21' CERT.DP.ECDSA}`` 00."""
    dgi = dgi_3a01(bytes(cert))  # keys.ecka owns the DGI layout; the card parses it with keys.ecka.parse_dgi_3a01
    return Apdu(CLA_GP, INS_STORE_DATA, _P1_STORE_DATA_3A01, _P2_STORE_DATA_3A01, dgi, 0x00).to_bytes()


def store_data_3a02(dgi_3a02: bytes) -> bytes:
    """``80 E2 89 01`` STORE DATA with ``dgi_3a02``, the whole DGI ``'3A02' L {...}`` as
    ``keys.ecka.smdp_key_agreement`` builds it, 00."""
    dgi, _ = parse_dgi(dgi_3a02)
    if dgi != DGI_KEY_AGREEMENT:
        raise ValueError(f"DGI {dgi:04X} is not 3A02")
    return Apdu(CLA_GP, INS_STORE_DATA, _P1_STORE_DATA_3A02, _P2_STORE_DATA_3A02, bytes(dgi_3a02), 0x00).to_bytes()


def parse_store_data(apdu: Apdu) -> tuple[int, bytes]:
    """Card side: ``(DGI, value)`` of an ES8 STORE DATA. Its data must be exactly one DGI; P1's more-blocks bit is
    not checked (3A01 is sent as block 0 of a chain, see the module doc). ValueError otherwise."""
    if apdu.ins != INS_STORE_DATA:
        raise ValueError(f"INS {apdu.ins:02X} is not STORE DATA")
    if not apdu.p1 & 0x08:
        raise ValueError(f"STORE DATA P1 {apdu.p1:02X} is not in DGI format")
    return parse_dgi(apdu.data)


def command_tlv(apdu: bytes) -> bytes:
    """``'22' L C-APDU``."""
    apdu = bytes(apdu)
    if len(apdu) < 4:
        raise ValueError(f"C-APDU of {len(apdu)} octets")
    return encode_tlv(TAG_C_APDU, apdu)


def _check_command(tag: int, value: bytes) -> None:
    if tag not in COMMAND_TAGS:
        raise ValueError(f"tag {tag:02X} is not an ES8 command ('22', '84', '85' or '86')")
    if tag == TAG_C_APDU and len(value) < 4:
        raise ValueError(f"C-APDU of {len(value)} octets")


def split_send_data(data: bytes) -> list[bytes]:
    """The ES8 command TLVs (each whole) that make up ES3.SendData ``Data``; ValueError when ``data`` is empty or
    anything but a sequence of '22'/'84'/'85'/'86' TLVs."""
    triples = remote.split_tlvs(data)
    if not triples:
        raise ValueError("no ES8 command")
    for tag, value, _ in triples:
        _check_command(tag, value)
    return [whole for _, _, whole in triples]


def send_data_payload(commands: Sequence[bytes]) -> bytes:
    """The ES3.SendData ``Data`` bytes: the ES8 command TLVs, each checked to be one '22'/'84'/'85'/'86' TLV."""
    if isinstance(commands, (bytes, bytearray)):
        raise TypeError("pass a sequence of ES8 command TLVs, not one byte string")
    if not commands:
        raise ValueError("no ES8 command")
    for command in commands:
        triples = remote.split_tlvs(command)
        if len(triples) != 1:
            raise ValueError(f"{bytes(command).hex().upper()[:40]} is not exactly one TLV")
        _check_command(triples[0][0], triples[0][1])
    return b"".join(bytes(c) for c in commands)


def is_sw_success(sw: int) -> bool:
    """The status words after which an expanded remote script goes on (TS 102 226 §5.2): 9000, 61xx, 62xx, 63xx."""
    return sw == 0x9000 or sw >> 8 in (0x61, 0x62, 0x63)


def is_error_response(tag: int, value: bytes) -> bool:
    """Whether a response TLV ends the script: an R-APDU with an error SW (or none), a '9Fxx' TLV (SCP03t error),
    or a '90' bad-format TLV."""
    if tag == TAG_R_APDU:
        return len(value) < 2 or not is_sw_success(int.from_bytes(value[-2:], "big"))
    return tag >> 8 == 0x9F or tag == TAG_BAD_FORMAT


def parse_send_data_response(script: bytes) -> tuple[int, list[tuple[int, bytes]]]:
    """``(n, [(tag, value) ...])`` of the card's response script (EuiccResponseData); ValueError when it is not an
    'AB'/'AF' template of '23'/'84'/'85'/'86'/'9Fxx'/'90' TLVs or holds more TLVs than commands executed."""
    executed, pairs = remote.decode_response_tlvs(script)
    for tag, _ in pairs:
        if tag not in _RESPONSE_TAGS and tag >> 8 != 0x9F:
            raise ValueError(f"response script: tag {tag:X} is not an ES8 response")
    if len(pairs) > executed:
        raise ValueError(f"response script: {len(pairs)} responses for {executed} executed commands")
    return executed, pairs
