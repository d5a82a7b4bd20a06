"""ES5 (SM-SR -> eUICC ISD-R) APDU codec: pure functions from values to bytes and back.

Theory of operation
-------------------
Both ends of ES5 use this module. The SM-SR *builds* commands (``enable_profile`` ...) and *parses* responses
(``decode_isdp_statuses``, ``decode_confirmation_response`` ...); the simulated eUICC (``euicc_sim.card``) *parses*
commands (``Apdu.parse``, ``parse_store_data``, ``aid_of`` ...) and *builds* responses (``encode_isdp_status`` ...).
The default notification goes the other way (card builds, SM-SR parses). SM-SR change (EstablishISDRKeySet,
FinaliseISDRhandover) has its own section: SM-SR1 builds the two STORE DATA from what SM-SR2 sends over ES7, whose
DGIs ``keys.ecka`` owns, and SM-SR2 builds the DELETE of SM-SR1's key sets. Nothing here does I/O, keeps state or
knows about SCP80/SCP81: a C-APDU here is the plain GP command that the secured packet carries.

Sources: sgp02-wire.md §6.2 (command table, [V-impl] njiwa/WHTY), §5.5 (life-cycle bytes), GP Card Specification
2.3 (INSTALL/DELETE/GET STATUS/STORE DATA layouts, DGI length rule), ETSI TS 102 226 (extended card resources).

Conventions
-----------
* AIDs are ``bytes`` (5..16 bytes, ISO/IEC 7816-5).
* ``Le``: commands that return data (GET STATUS, GET DATA, the 3A08 NotificationConfirmation) are sent as ISO case 4
  with ``Le = '00'``; the others carry no ``Le``. The table in sgp02-wire §6.2 does not show ``Le``; a card parser
  must (and ``euicc_sim.card`` does) accept a command with or without it.
* STORE DATA carries exactly one DGI per command, with the GP DGI length rule (1 byte for 0..254, ``'FF'`` + 2 bytes
  above). DGI ``3A0x`` cannot be written with BER-TLV helpers: ``3A`` is a one-byte BER tag. Every ES5 DGI built
  here fits one block, so P1 always has b8 set ("last block") and P2 = block number 00.
* Uncertain layouts (the reference marks them [V-impl, conflicting], "partly unclear" or not covered) each live in one
  function whose comment states the choice and its source: :func:`isdp_install_parameters`,
  :func:`smsr_addressing_value`, :func:`get_data_resources`, :func:`encode_notification` / :func:`decode_notification`,
  :func:`master_delete`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from keys import ecka
from keys.dgi import encode_dgi, parse_dgi
from keys.errors import TlvError
from keys.tlv import encode_tlv, find_tlv, iter_tlvs

__all__ = [
    # life cycle and status words
    "SELECTABLE", "PERSONALIZED", "DISABLED", "ENABLED", "LIFECYCLE_NAMES", "lifecycle_name",
    "SW_OK", "SW_MORE_DATA", "SW_WRONG_LENGTH", "SW_SECURITY", "SW_CONDITIONS", "SW_POL1", "SW_WRONG_DATA",
    "SW_NOT_FOUND", "SW_MEMORY", "SW_WRONG_P1P2", "SW_INS", "SW_CLA", "SW_UNKNOWN",
    "CLA_GP", "INS_STORE_DATA", "INS_DELETE", "INS_INSTALL", "INS_GET_STATUS", "INS_GET_DATA",
    "DGI_ENABLE_PROFILE", "DGI_DISABLE_PROFILE", "DGI_SET_FALLBACK", "DGI_SMSR_ADDRESSING",
    "DGI_NOTIFICATION_CONFIRMATION", "TAG_EXTENDED_CARD_RESOURCES",
    # APDU framing
    "Apdu", "split_response", "with_sw",
    # command builders (SM-SR side)
    "create_isdp", "isdp_install_parameters", "enable_profile", "disable_profile", "set_fallback_attribute",
    "update_smsr_addressing", "smsr_addressing_value", "notification_confirmation", "delete_isdp",
    "master_delete", "master_delete_token_data", "get_status_isdp", "get_data_resources",
    # command parsers (card side)
    "InstallRequest", "parse_install", "decode_isdp_install_memory", "parse_store_data", "aid_of",
    "DeleteRequest", "parse_delete", "parse_get_status", "parse_notification_confirmation",
    "decode_smsr_addressing",
    # SM-SR change (EstablishISDRKeySet, FinaliseISDRhandover)
    "TAG_DELETE_KEY_SET", "establish_isdr_key_set_3a01", "establish_isdr_key_set_3a02", "decode_isdr_challenge",
    "decode_isdr_key_set_receipt", "parse_isdr_key_set_store_data", "KeySetDeletion", "finalise_isdr_handover",
    "is_key_set_deletion", "parse_finalise_isdr_handover",
    # responses
    "IsdpStatus", "encode_isdp_status", "decode_isdp_statuses",
    "CardResources", "encode_card_resources", "decode_card_resources",
    "encode_confirmation_response", "decode_confirmation_response",
    # default notification
    "NOTIF_FIRST_ATTACH", "NOTIF_PROFILE_CHANGE_OK", "NOTIF_PROFILE_CHANGE_ROLLED_BACK", "NOTIF_VOID",
    "NOTIF_FALLBACK", "NOTIFICATION_TYPE_NAMES", "Notification", "encode_notification", "decode_notification",
]

# --- GP life-cycle bytes of an ISD-P (sgp02-wire §5.5; GPCS security domain life-cycle coding) --------
SELECTABLE = 0x07  # after ES5 CreateISDP (INSTALL [for install and make selectable])
PERSONALIZED = 0x0F  # after ES8 EstablishISDPKeySet
DISABLED = 0x1F  # after ES8 DownloadAndInstallation
ENABLED = 0x3F  # after ES5 EnableProfile

LIFECYCLE_NAMES = {SELECTABLE: "SELECTABLE", PERSONALIZED: "PERSONALIZED", DISABLED: "DISABLED", ENABLED: "ENABLED"}


def lifecycle_name(lifecycle: int) -> str:
    return LIFECYCLE_NAMES.get(lifecycle, f"UNKNOWN({lifecycle:02X})")


# --- Status words (ISO/IEC 7816-4, GPCS; 69E1 from SGP.02 via sgp02-wire §5.4) -------------------------------------
SW_OK = 0x9000
SW_MORE_DATA = 0x6310  # GET STATUS: more data available (not produced by the simulated card)
SW_WRONG_LENGTH = 0x6700  # malformed APDU (Lc/Le do not match the length)
SW_SECURITY = 0x6982
SW_CONDITIONS = 0x6985  # conditions of use not satisfied (wrong state, enabled, fall-back ...)
SW_POL1 = 0x69E1  # POL1 of the profile prevents the action
SW_WRONG_DATA = 0x6A80  # incorrect values in the command data
SW_MEMORY = 0x6A84  # not enough memory space
SW_WRONG_P1P2 = 0x6A86
SW_NOT_FOUND = 0x6A88  # referenced data (ISD-P) not found
SW_INS = 0x6D00  # instruction not supported
SW_CLA = 0x6E00  # class not supported
SW_UNKNOWN = 0x6F00  # no precise diagnosis

# --- Command header bytes -------------------------------------------------------------------------------------------
CLA_GP = 0x80
INS_STORE_DATA = 0xE2
INS_DELETE = 0xE4
INS_INSTALL = 0xE6
INS_GET_STATUS = 0xF2
INS_GET_DATA = 0xCA

P1_INSTALL_AND_MAKE_SELECTABLE = 0x0C  # INSTALL [for install] (04) + [for make selectable] (08)
P1_STORE_DATA_LAST_DGI = 0x88  # b8 last block, b4 DGI format
P1_STORE_DATA_LAST_DGI_RESPONSE = 0x89  # ... and b1 "response data expected" (3A08)
P2_DELETE_OBJECT_AND_RELATED = 0x40
P1_GET_STATUS_APPLICATIONS = 0x40  # applications, including security domains
P2_GET_STATUS_TLV = 0x02  # response in the TLV ('E3') format, first or only occurrence

# --- STORE DATA DGIs of the ISD-R (sgp02-wire §6.2) -----------------------------------------------------------------
DGI_ENABLE_PROFILE = 0x3A03
DGI_DISABLE_PROFILE = 0x3A04
DGI_SET_FALLBACK = 0x3A05
DGI_SMSR_ADDRESSING = 0x3A07
DGI_NOTIFICATION_CONFIRMATION = 0x3A08

TAG_AID = 0x4F
TAG_EXTENDED_CARD_RESOURCES = 0xFF21  # ETSI TS 102 226 §8.2.1.7.2


# ====================================================================================================================
# APDU framing
# ====================================================================================================================


@dataclass(frozen=True)
class Apdu:
    """A short (non-extended) ISO/IEC 7816-4 command APDU.

    ``le`` is the Le byte as it goes on the wire (``0`` means "up to 256 bytes"), or ``None`` when absent.
    Extended lengths are not supported: every ES5 command fits the short form, and the OTA layer (SCP80/SCP81)
    carries short APDUs.
    """

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    def to_bytes(self) -> bytes:
        for name in ("cla", "ins", "p1", "p2"):
            if not 0 <= getattr(self, name) <= 0xFF:
                raise ValueError(f"{name} {getattr(self, name):#x} out of byte range")
        if len(self.data) > 255:
            raise ValueError(f"command data of {len(self.data)} bytes needs extended length, not supported")
        out = bytes([self.cla, self.ins, self.p1, self.p2])
        if self.data:
            out += bytes([len(self.data)]) + bytes(self.data)
        if self.le is not None:
            if not 0 <= self.le <= 0xFF:
                raise ValueError(f"Le {self.le} out of byte range")
            out += bytes([self.le])
        return out

    @classmethod
    def parse(cls, raw: bytes) -> "Apdu":
        """The four ISO cases of a short APDU; :class:`ValueError` when the length does not add up."""
        raw = bytes(raw)
        if len(raw) < 4:
            raise ValueError(f"APDU of {len(raw)} bytes is shorter than its header")
        cla, ins, p1, p2 = raw[:4]
        if len(raw) == 4:  # case 1
            return cls(cla, ins, p1, p2)
        if len(raw) == 5:  # case 2
            return cls(cla, ins, p1, p2, b"", raw[4])
        lc = raw[4]
        if lc == 0:
            raise ValueError("extended-length APDU not supported")
        if len(raw) == 5 + lc:  # case 3
            return cls(cla, ins, p1, p2, raw[5:])
        if len(raw) == 6 + lc:  # case 4
            return cls(cla, ins, p1, p2, raw[5:-1], raw[-1])
        raise ValueError(f"Lc {lc} does not match an APDU of {len(raw)} bytes")


def split_response(rapdu: bytes) -> tuple[bytes, int]:
    """``(data, sw)`` of a response APDU (data || SW1 SW2)."""
    rapdu = bytes(rapdu)
    if len(rapdu) < 2:
        raise ValueError(f"response of {len(rapdu)} bytes has no status word")
    return rapdu[:-2], int.from_bytes(rapdu[-2:], "big")


def with_sw(data: bytes, sw: int) -> bytes:
    """A response APDU: ``data`` followed by the status word."""
    return bytes(data) + sw.to_bytes(2, "big")


def _check_aid(aid: bytes) -> bytes:
    aid = bytes(aid)
    if not 5 <= len(aid) <= 16:
        raise ValueError(f"AID of {len(aid)} bytes (must be 5..16)")
    return aid


def _store_data(dgi: int, value: bytes, *, response_expected: bool = False) -> bytes:
    p1 = P1_STORE_DATA_LAST_DGI_RESPONSE if response_expected else P1_STORE_DATA_LAST_DGI
    le = 0x00 if response_expected else None
    return Apdu(CLA_GP, INS_STORE_DATA, p1, 0x00, encode_dgi(dgi, value), le).to_bytes()


def _uint(value: int, *, min_len: int = 1) -> bytes:
    if value < 0:
        raise ValueError(f"negative value {value}")
    return value.to_bytes(max(min_len, (value.bit_length() + 7) // 8), "big")


def _memory(value: int) -> bytes:
    """A GP memory size: 2 bytes when it fits, else 4 (GPCS codes memory quotas on 2 or 4 bytes)."""
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"memory size {value} out of range")
    return value.to_bytes(2 if value <= 0xFFFF else 4, "big")


def _pairs(data: bytes) -> list[tuple[int, bytes]]:
    """Top-level ``(tag, value)`` pairs; raises :class:`TlvError` (a :class:`ValueError`) when malformed."""
    return [(t.tag, t.value) for t in iter_tlvs(data)]


def _decode_uint(value: bytes, what: str, max_len: int = 4) -> int:
    if not 1 <= len(value) <= max_len:
        raise ValueError(f"{what}: {len(value)} bytes")
    return int.from_bytes(value, "big")


# ====================================================================================================================
# Command builders (SM-SR side) and their card-side parsers
# ====================================================================================================================

# --- CreateISDP -----------------------------------------------------------------------------------------------------

_ISDP_PRIVILEGES = bytes.fromhex("80C000")  # security domain; sgp02-wire §6.2 (WHTY)
# 'C9' application specific parameters of the ISD-P: '81' 02 = the secure channel protocol the ISD-P supports,
# SCP03 ('03') with i = '70' (SCP03t). Same bytes as WHTY (sgp02-wire §6.2); the meaning is our reading.
_ISDP_C9 = bytes.fromhex("81020370")
_TAG_SYSTEM_PARAMETERS = 0xEF
_TAG_CUMULATIVE_GRANTED_NVM = 0x83


def isdp_install_parameters(memory: int) -> bytes:
    """The install parameters field of CreateISDP: the ISD-P's SCP and its memory quota.

    CHOICE (the reference gives only WHTY's ``C9 04 81 02 03 70``, which carries no memory quota):
    ``C9 04 81 02 03 70`` as WHTY, followed by the GP System Specific Parameters template
    ``EF { 83 <cumulative granted non-volatile memory> }`` (GPCS 2.2.1+ Table 11-49: tag '83' inside 'EF', the
    same quantity GET STATUS reports under '8F'). The size is 2 bytes when it fits, else 4.
    """
    return encode_tlv(0xC9, _ISDP_C9) + encode_tlv(
        _TAG_SYSTEM_PARAMETERS, encode_tlv(_TAG_CUMULATIVE_GRANTED_NVM, _memory(memory))
    )


def decode_isdp_install_memory(params: bytes) -> int | None:
    """The memory quota in CreateISDP install parameters (see :func:`isdp_install_parameters`), or ``None``.

    Besides '83' (our choice) this accepts the GP quota tags 'C8' (non-volatile memory quota) and 'D8'
    (non-volatile reserved memory) in 'EF', in that order of preference, so a card follows other SM-SRs too.
    """
    system = find_tlv(params, _TAG_SYSTEM_PARAMETERS)
    if system is None:
        return None
    for tag in (_TAG_CUMULATIVE_GRANTED_NVM, 0xC8, 0xD8):
        value = find_tlv(system, tag)
        if value is not None:
            return _decode_uint(value, "memory quota")
    return None


def _lv(value: bytes) -> bytes:
    if len(value) > 0xFF:
        raise ValueError("LV field longer than 255 bytes")
    return bytes([len(value)]) + bytes(value)


def create_isdp(elf_aid: bytes, module_aid: bytes, isdp_aid: bytes, memory: int) -> bytes:
    """ES5 CreateISDP: ``80 E6 0C 00`` INSTALL [for install and make selectable] (sgp02-wire §6.2).

    Data: LV(ELF AID = EIS Isd-p-loadfile-aid) LV(module AID) LV(ISD-P AID) LV('80C000') LV(install parameters,
    :func:`isdp_install_parameters`) LV(empty token).
    """
    data = (
        _lv(_check_aid(elf_aid)) + _lv(_check_aid(module_aid)) + _lv(_check_aid(isdp_aid)) + _lv(_ISDP_PRIVILEGES)
        + _lv(isdp_install_parameters(memory)) + _lv(b"")
    )
    return Apdu(CLA_GP, INS_INSTALL, P1_INSTALL_AND_MAKE_SELECTABLE, 0x00, data).to_bytes()


@dataclass(frozen=True)
class InstallRequest:
    """The fields of an INSTALL [for install ...] command."""

    elf_aid: bytes
    module_aid: bytes
    aid: bytes
    privileges: bytes
    parameters: bytes
    token: bytes

    @property
    def memory(self) -> int | None:
        return decode_isdp_install_memory(self.parameters)


def parse_install(apdu: Apdu) -> InstallRequest:
    """Card side: the six LV fields of INSTALL; :class:`ValueError` when they do not fill the data exactly."""
    data, pos, fields = apdu.data, 0, []
    for _ in range(6):
        if pos >= len(data):
            raise ValueError("INSTALL data truncated")
        n = data[pos]
        if pos + 1 + n > len(data):
            raise ValueError("INSTALL field truncated")
        fields.append(data[pos + 1 : pos + 1 + n])
        pos += 1 + n
    if pos != len(data):
        raise ValueError("trailing bytes after INSTALL token")
    elf, module, aid, privileges, params, token = fields
    for a in (elf, module, aid):
        _check_aid(a)
    _pairs(params)  # the install parameters must at least be well-formed BER-TLV
    return InstallRequest(elf, module, aid, privileges, params, token)


# --- STORE DATA commands --------------------------------------------------------------------------------------------


def enable_profile(isdp_aid: bytes) -> bytes:
    """ES5 EnableProfile: ``80 E2 88 00`` ``3A03`` { ``4F`` AID }."""
    return _store_data(DGI_ENABLE_PROFILE, encode_tlv(TAG_AID, _check_aid(isdp_aid)))


def disable_profile(isdp_aid: bytes) -> bytes:
    """ES5 DisableProfile: ``80 E2 88 00`` ``3A04`` { ``4F`` AID }."""
    return _store_data(DGI_DISABLE_PROFILE, encode_tlv(TAG_AID, _check_aid(isdp_aid)))


def set_fallback_attribute(isdp_aid: bytes) -> bytes:
    """ES5 SetFallBackAttribute: ``80 E2 88 00`` ``3A05`` { ``4F`` AID }."""
    return _store_data(DGI_SET_FALLBACK, encode_tlv(TAG_AID, _check_aid(isdp_aid)))


_TAG_SMSR_ADDRESSING = 0xA3
_TAG_SMS_PARAMETERS = 0x81
_BCD_FILLER = 0xF


def smsr_addressing_value(sms_address: str) -> bytes:
    """The value of DGI 3A07: ``A3 { 81 <TON/NPI> <BCD digits> }``.

    CHOICE: sgp02-wire §6.2 gives only the nesting ``A3 { 81 (SMS params: TON/NPI + SM-SR SMS address ...) }`` from
    WHTY. WHTY's own '81' value is ``<byte count> '85' <swapped digits>``, whose '85' is not a usual TON/NPI. We
    use the ETSI TS 102 223 §8.1 Address value instead: one TON/NPI byte ('91' international/ISDN when the address
    starts with '+', '81' unknown/ISDN otherwise) followed by the dialling number in swapped BCD, 'F'-padded.
    """
    international = sms_address.startswith("+")
    digits = sms_address[1:] if international else sms_address
    if not digits or not digits.isdigit() or not digits.isascii() or len(digits) > 20:
        raise ValueError(f"SMS address {sms_address!r}: expected 1..20 digits, optionally after '+'")
    nibbles = [int(d) for d in digits] + ([_BCD_FILLER] if len(digits) % 2 else [])
    bcd = bytes(nibbles[i] | (nibbles[i + 1] << 4) for i in range(0, len(nibbles), 2))
    ton_npi = 0x91 if international else 0x81
    return encode_tlv(_TAG_SMSR_ADDRESSING, encode_tlv(_TAG_SMS_PARAMETERS, bytes([ton_npi]) + bcd))


def decode_smsr_addressing(value: bytes) -> str:
    """Card side: the SM-SR SMS address in a 3A07 value (the layout of :func:`smsr_addressing_value`)."""
    inner = find_tlv(value, _TAG_SMSR_ADDRESSING)
    if inner is None:
        raise ValueError("3A07 without 'A3'")
    sms = find_tlv(inner, _TAG_SMS_PARAMETERS)
    if sms is None or len(sms) < 2:
        raise ValueError("3A07 without SMS parameters '81'")
    nibbles = [n for b in sms[1:] for n in (b & 0x0F, b >> 4)]
    if nibbles[-1] == _BCD_FILLER:  # odd number of digits: only the last nibble may be the filler
        nibbles.pop()
    if any(n > 9 for n in nibbles):
        raise ValueError("SMS address is not a BCD dialling number")
    international = (sms[0] >> 4) & 0x07 == 0x1  # TON bits 7-5: 001 = international number
    return ("+" if international else "") + "".join(str(n) for n in nibbles)


def update_smsr_addressing(sms_address: str) -> bytes:
    """ES5 UpdateSMSRAddressingParameters: ``80 E2 88 00`` ``3A07`` {:func:`smsr_addressing_value`}."""
    return _store_data(DGI_SMSR_ADDRESSING, smsr_addressing_value(sms_address))


_TAG_SEQUENCE_NUMBER = 0x4E


def notification_confirmation(seq: int) -> bytes:
    """ES5 NotificationConfirmation: ``80 E2 89 00`` ``3A08 04 4E 02 <seq>`` (+ Le '00': it returns data)."""
    if not 0 <= seq <= 0xFFFF:
        raise ValueError(f"sequence number {seq} is not two bytes")
    return _store_data(DGI_NOTIFICATION_CONFIRMATION, encode_tlv(_TAG_SEQUENCE_NUMBER, seq.to_bytes(2, "big")),
                       response_expected=True)


def parse_store_data(apdu: Apdu) -> tuple[int, bytes]:
    """Card side: ``(DGI, value)`` of a single-block STORE DATA; :class:`ValueError` if it is not one."""
    if apdu.ins != INS_STORE_DATA:
        raise ValueError(f"INS {apdu.ins:02X} is not STORE DATA")
    if not apdu.p1 & 0x80:
        raise ValueError("chained STORE DATA (more blocks) is not supported")
    return parse_dgi(apdu.data)


def aid_of(value: bytes) -> bytes:
    """The ``4F`` AID inside a DGI value or DELETE data; :class:`ValueError` if missing or not 5..16 bytes."""
    try:
        aid = find_tlv(value, TAG_AID)
    except TlvError as exc:
        raise ValueError(str(exc)) from exc
    if aid is None:
        raise ValueError("no '4F' AID")
    return _check_aid(aid)


def parse_notification_confirmation(value: bytes) -> int:
    """Card side: the sequence number in a 3A08 value (``4E 02 <seq>``)."""
    seq = find_tlv(value, _TAG_SEQUENCE_NUMBER)
    if seq is None:
        raise ValueError("3A08 without '4E' sequence number")
    return _decode_uint(seq, "sequence number", 2)


# --- DELETE ---------------------------------------------------------------------------------------------------------


def delete_isdp(isdp_aid: bytes) -> bytes:
    """ES5 DeleteProfile/ISD-P: ``80 E4 00 40`` ``4F`` AID (delete object and related objects)."""
    return Apdu(CLA_GP, INS_DELETE, 0x00, P2_DELETE_OBJECT_AND_RELATED,
                encode_tlv(TAG_AID, _check_aid(isdp_aid))).to_bytes()


_TAG_DELETE_CRT = 0xB6
_TAG_DELETE_TOKEN = 0x9E


def _delete_crt(sd_identification_number: bytes, sd_image_number: bytes, application_provider_id: bytes,
                token_identifier: bytes) -> bytes:
    return encode_tlv(_TAG_DELETE_CRT, b"".join(
        encode_tlv(tag, value)
        for tag, value in ((0x42, sd_identification_number), (0x45, sd_image_number),
                           (0x5F20, application_provider_id), (0x93, token_identifier))
        if value
    ))


def master_delete_token_data(isdp_aid: bytes, *, sd_identification_number: bytes = b"",
                             sd_image_number: bytes = b"", application_provider_id: bytes = b"",
                             token_identifier: bytes = b"") -> bytes:
    """The bytes the delete token is computed over: P1 P2 Lc data (without the '9E' token), GPCS delete token.

    WHTY computes its token over the same P1 P2 || length || ('4F' AID + 'B6' CRT) (sgp02-wire §6.2).
    """
    body = encode_tlv(TAG_AID, _check_aid(isdp_aid)) + _delete_crt(
        sd_identification_number, sd_image_number, application_provider_id, token_identifier)
    return bytes([0x00, P2_DELETE_OBJECT_AND_RELATED]) + _lv(body)


def master_delete(isdp_aid: bytes, token: bytes, *, sd_identification_number: bytes = b"",
                  sd_image_number: bytes = b"", application_provider_id: bytes = b"",
                  token_identifier: bytes = b"") -> bytes:
    """ES5 MasterDelete: ``80 E4 00 40`` ``4F`` AID ``B6`` {``42`` ``45`` ``5F20`` ``93``} ``9E`` token.

    CHOICE (sgp02-wire §6.2 has the layout from WHTY only): an empty CRT element is left out; the token is
    whatever the profile owner computed over :func:`master_delete_token_data`.
    """
    if not token:
        raise ValueError("MasterDelete needs a delete token")
    body = encode_tlv(TAG_AID, _check_aid(isdp_aid)) + _delete_crt(
        sd_identification_number, sd_image_number, application_provider_id, token_identifier)
    return Apdu(CLA_GP, INS_DELETE, 0x00, P2_DELETE_OBJECT_AND_RELATED,
                body + encode_tlv(_TAG_DELETE_TOKEN, token)).to_bytes()


@dataclass(frozen=True)
class DeleteRequest:
    """A parsed DELETE of an ISD-P; ``token`` is set for a MasterDelete."""

    aid: bytes
    crt: bytes | None = None
    token: bytes | None = None

    @property
    def is_master_delete(self) -> bool:
        return self.token is not None


def parse_delete(apdu: Apdu) -> DeleteRequest:
    """Card side: the AID, and for a MasterDelete the 'B6' CRT and '9E' token, of a DELETE command."""
    if apdu.ins != INS_DELETE:
        raise ValueError(f"INS {apdu.ins:02X} is not DELETE")
    try:
        items = [(t.tag, t.value) for t in iter_tlvs(apdu.data)]
    except TlvError as exc:
        raise ValueError(str(exc)) from exc
    tags = dict(items)
    if len(tags) != len(items):
        raise ValueError("repeated tag in DELETE data")
    if TAG_AID not in tags:
        raise ValueError("DELETE without '4F' AID")
    token = tags.get(_TAG_DELETE_TOKEN)
    if token is not None and not token:
        raise ValueError("empty delete token")
    return DeleteRequest(_check_aid(tags[TAG_AID]), tags.get(_TAG_DELETE_CRT), token)


# --- SM-SR change: EstablishISDRKeySet and FinaliseISDRhandover (sgp02-wire §6.2, §6.5) -----------------------------
#
# SM-SR1 relays two STORE DATA to the ISD-R, built from what SM-SR2 sends over ES7 (the bytes of both DGIs belong
# to keys.ecka, which the card uses too); SM-SR2, once it holds the new key set, deletes SM-SR1's key sets::
#
#     80 E2 09 00 Lc '3A01' L {'7F21' CERT.SR.ECDSA} 00    -> '85' L RC 9000       (block 0 of a two-block chain)
#     80 E2 89 01 Lc '3A02' L {A6, 7F49, 5F37} 00          -> ['85' L DR] '86' L receipt 9000   (last block 1)
#     80 E4 00 00 Lc {'F2' 03 KVN first-key-id last-key-id}+  -> 9000                 (DELETE key, one 'F2' per set)
#
# The same P1/P2 as ES8 EstablishISDPKeySet (ota.es8); both STORE DATA carry Le '00' since they return data.

_P1_STORE_DATA_CHAIN_FIRST = 0x09  # b4 DGI format, b1 response expected; b8 clear: more blocks follow
_P1_STORE_DATA_CHAIN_LAST = P1_STORE_DATA_LAST_DGI_RESPONSE  # '89'
TAG_DELETE_KEY_SET = 0xF2  # DELETE key: KVN || first key identifier || last key identifier (WHTY, njiwa)


def establish_isdr_key_set_3a01(smsr_certificate: bytes) -> bytes:
    """ES5 EstablishISDRKeySet, first command: ``80 E2 09 00`` ``'3A01' L {'7F21' CERT.SR.ECDSA}`` ``00``.

    The certificate is SM-SR2's, from ES7 AuthenticateSMSR; it must be one '7F21' TLV (``keys.ecka.dgi_3a01``,
    ``EckaError`` otherwise, a ``ValueError``). The card answers '85' L RC: :func:`decode_isdr_challenge`.
    """
    return Apdu(CLA_GP, INS_STORE_DATA, _P1_STORE_DATA_CHAIN_FIRST, 0x00, ecka.dgi_3a01(smsr_certificate),
                0x00).to_bytes()


def establish_isdr_key_set_3a02(dgi_3a02: bytes) -> bytes:
    """ES5 EstablishISDRKeySet, second command: ``80 E2 89 01`` ``dgi_3a02`` ``00``.

    ``dgi_3a02`` is the whole ``'3A02' L {...}`` DGI that ``keys.ecka.isdr_dgi_3a02`` makes from the ES7
    CreateAdditionalKeySet fields. The card answers ['85' L DR] '86' L receipt: :func:`decode_isdr_key_set_receipt`.
    """
    dgi, _ = parse_dgi(dgi_3a02)
    if dgi != ecka.DGI_KEY_AGREEMENT:
        raise ValueError(f"DGI {dgi:04X} is not 3A02")
    return Apdu(CLA_GP, INS_STORE_DATA, _P1_STORE_DATA_CHAIN_LAST, 0x01, bytes(dgi_3a02), 0x00).to_bytes()


def decode_isdr_challenge(data: bytes) -> bytes:
    """The random challenge RC in the card's answer to '3A01' (``'85' L RC``), for the AuthenticateSMSR callback."""
    return ecka.parse_challenge_response(data)


def decode_isdr_key_set_receipt(data: bytes) -> tuple[bytes | None, bytes]:
    """``(DR or None, receipt)`` from the card's answer to '3A02', for the CreateAdditionalKeySet callback."""
    return ecka.parse_key_agreement_response(data)


def parse_isdr_key_set_store_data(apdu: Apdu) -> tuple[int, bytes]:
    """Card side: ``(DGI, the whole DGI bytes)`` of a STORE DATA '3A01' or '3A02' (either block of the chain).

    :class:`ValueError` when it is not STORE DATA in DGI format holding exactly one '3A01' or '3A02' DGI.
    """
    if apdu.ins != INS_STORE_DATA:
        raise ValueError(f"INS {apdu.ins:02X} is not STORE DATA")
    if not apdu.p1 & 0x08:
        raise ValueError(f"STORE DATA P1 {apdu.p1:02X} is not in DGI format")
    dgi, _ = parse_dgi(apdu.data)
    if dgi not in (ecka.DGI_CERTIFICATE, ecka.DGI_KEY_AGREEMENT):
        raise ValueError(f"DGI {dgi:04X} is not 3A01 or 3A02")
    return dgi, bytes(apdu.data)


@dataclass(frozen=True)
class KeySetDeletion:
    """One 'F2' of FinaliseISDRhandover: the key set ``kvn``, key identifiers ``first_key_id``..``last_key_id``.
    The default range 01..03 is a whole SCP80 key set (KIc, KID, DEK; keys.ecka.IsdrKeySet)."""

    kvn: int
    first_key_id: int = 0x01
    last_key_id: int = 0x03

    def __post_init__(self) -> None:
        for name in ("kvn", "first_key_id", "last_key_id"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFF:
                raise ValueError(f"{name} {value!r} is not one byte")
        if self.kvn == 0 or self.first_key_id == 0 or self.first_key_id > self.last_key_id:
            raise ValueError(f"key set {self.kvn:02X}, keys {self.first_key_id:02X}..{self.last_key_id:02X}: "
                             "not a key version and a range of key identifiers")


def finalise_isdr_handover(key_sets: Sequence[int | KeySetDeletion]) -> bytes:
    """ES5 FinaliseISDRhandover: ``80 E4 00 00`` ``{'F2' 03 KVN first last}`` per old key set (no Le).

    SM-SR2 sends it over its new key set to delete SM-SR1's: each KVN of SM-SR1's key sets (an ``int`` means the
    whole SCP80 key set, key identifiers 01..03, as WHTY and njiwa send), never SM-SR2's own (njiwa's bug,
    sgp02-v4-es7-notes.md §3.4). The card refuses the whole command when one key set is unknown (6A88) or is
    the one the command came under (6985).
    """
    if isinstance(key_sets, (bytes, bytearray, int)):
        raise TypeError("pass a sequence of key versions")
    entries = [k if isinstance(k, KeySetDeletion) else KeySetDeletion(k) for k in key_sets]
    if not entries:
        raise ValueError("FinaliseISDRhandover deletes at least one key set")
    if len({e.kvn for e in entries}) != len(entries):
        raise ValueError("a key set is named twice")
    data = b"".join(encode_tlv(TAG_DELETE_KEY_SET, bytes([e.kvn, e.first_key_id, e.last_key_id])) for e in entries)
    return Apdu(CLA_GP, INS_DELETE, 0x00, 0x00, data).to_bytes()


def is_key_set_deletion(apdu: Apdu) -> bool:
    """Card side: whether a DELETE names key sets ('F2') rather than an ISD-P ('4F')."""
    return apdu.ins == INS_DELETE and apdu.data[:1] == bytes([TAG_DELETE_KEY_SET])


def parse_finalise_isdr_handover(apdu: Apdu) -> list[KeySetDeletion]:
    """Card side: the key sets of a DELETE key; :class:`ValueError` unless the data is one or more 'F2' 03, each
    naming another key set."""
    if apdu.ins != INS_DELETE:
        raise ValueError(f"INS {apdu.ins:02X} is not DELETE")
    try:
        items = _pairs(apdu.data)
    except TlvError as exc:
        raise ValueError(str(exc)) from exc
    if not items:
        raise ValueError("DELETE key without 'F2'")
    out = []
    for tag, value in items:
        if tag != TAG_DELETE_KEY_SET or len(value) != 3:
            raise ValueError(f"DELETE key: tag {tag:X} of {len(value)} bytes where 'F2' 03 expected")
        out.append(KeySetDeletion(value[0], value[1], value[2]))
    if len({e.kvn for e in out}) != len(out):
        raise ValueError("DELETE key names a key set twice")
    return out


# --- GET STATUS / GET DATA ------------------------------------------------------------------------------------------


def get_status_isdp(isdp_aid: bytes | None = None) -> bytes:
    """ES5 audit: ``80 F2 40 02`` ``4F`` L AID, or ``4F 00`` for every ISD-P; Le '00'.

    Sent without a '5C' tag list, as njiwa does (WHTY adds ``5C 03 4F 9F70``; sgp02-wire §6.2 open question 15).
    """
    aid = b"" if isdp_aid is None else _check_aid(isdp_aid)
    return Apdu(CLA_GP, INS_GET_STATUS, P1_GET_STATUS_APPLICATIONS, P2_GET_STATUS_TLV,
                encode_tlv(TAG_AID, aid), 0x00).to_bytes()


def parse_get_status(apdu: Apdu) -> bytes | None:
    """Card side: the AID asked for, or ``None`` for ``4F 00`` (all). A '5C' tag list is accepted and ignored."""
    if apdu.ins != INS_GET_STATUS:
        raise ValueError(f"INS {apdu.ins:02X} is not GET STATUS")
    try:
        aid = find_tlv(apdu.data, TAG_AID)
    except TlvError as exc:
        raise ValueError(str(exc)) from exc
    if aid is None:
        raise ValueError("GET STATUS without '4F' search criterion")
    return _check_aid(aid) if aid else None


def get_data_resources() -> bytes:
    """ES5 audit of memory: ``80 CA FF 21 00``, GET DATA of the Extended Card Resources Information.

    CHOICE (sgp02-wire §6.2 open question 15: njiwa sends ``80 CA BF 30`` + ``5C 02 7F 21`` and parses an 'FF21'
    answer; WHTY sends ``5C 01 66``): we ask for the ETSI TS 102 226 §8.2.1.7.2 data object 'FF21' directly in
    P1 P2, the form a TS 102 226 UICC answers, and the card answers 'FF21' { '81' '82' '83' }.
    """
    return Apdu(CLA_GP, INS_GET_DATA, TAG_EXTENDED_CARD_RESOURCES >> 8, TAG_EXTENDED_CARD_RESOURCES & 0xFF,
                b"", 0x00).to_bytes()


# ====================================================================================================================
# Responses
# ====================================================================================================================

_TAG_STATUS = 0xE3
_TAG_LIFECYCLE = 0x9F70
_TAG_ISDP_ATTRIBUTES = 0x53
_TAG_GRANTED_NVM = 0x8F
_TAG_REMAINING_NVM = 0x91
_ATTRIBUTE_FALLBACK = 0x01  # bit 1 of '53' (njiwa citing SGP.02 v4.1 Table 28)


@dataclass(frozen=True)
class IsdpStatus:
    """One ``E3`` entry of the GET STATUS response for an ISD-P."""

    aid: bytes
    lifecycle: int
    fallback: bool
    granted_memory: int | None = None
    remaining_memory: int | None = None


def encode_isdp_status(s: IsdpStatus) -> bytes:
    """``E3`` { ``4F`` AID, ``9F70`` 01 life cycle, ``53`` 01 attributes, [``8F`` granted], [``91`` remaining] }.

    '53', '8F' and '91' follow njiwa citing SGP.02 v4.1 Table 28 (sgp02-wire §6.2); memory sizes use 2 or 4 bytes.
    """
    body = (encode_tlv(TAG_AID, _check_aid(s.aid)) + encode_tlv(_TAG_LIFECYCLE, bytes([s.lifecycle]))
            + encode_tlv(_TAG_ISDP_ATTRIBUTES, bytes([_ATTRIBUTE_FALLBACK if s.fallback else 0])))
    if s.granted_memory is not None:
        body += encode_tlv(_TAG_GRANTED_NVM, _memory(s.granted_memory))
    if s.remaining_memory is not None:
        body += encode_tlv(_TAG_REMAINING_NVM, _memory(s.remaining_memory))
    return encode_tlv(_TAG_STATUS, body)


def decode_isdp_statuses(data: bytes) -> list[IsdpStatus]:
    """Every ``E3`` of a GET STATUS response. '53' absent means no fall-back; unknown inner tags are ignored."""
    out = []
    try:
        for t in iter_tlvs(data):
            if t.tag != _TAG_STATUS:
                raise ValueError(f"GET STATUS response: tag {t.tag:X} where 'E3' expected")
            inner = dict((i.tag, i.value) for i in iter_tlvs(t.value))
            if TAG_AID not in inner or _TAG_LIFECYCLE not in inner:
                raise ValueError("'E3' without '4F' or '9F70'")
            if len(inner[_TAG_LIFECYCLE]) != 1:
                raise ValueError("'9F70' is not one byte")
            attrs = inner.get(_TAG_ISDP_ATTRIBUTES, b"\x00") or b"\x00"
            granted = inner.get(_TAG_GRANTED_NVM)
            remaining = inner.get(_TAG_REMAINING_NVM)
            out.append(IsdpStatus(
                aid=_check_aid(inner[TAG_AID]),
                lifecycle=inner[_TAG_LIFECYCLE][0],
                fallback=bool(attrs[0] & _ATTRIBUTE_FALLBACK),
                granted_memory=None if granted is None else _decode_uint(granted, "'8F'"),
                remaining_memory=None if remaining is None else _decode_uint(remaining, "'91'"),
            ))
    except TlvError as exc:
        raise ValueError(str(exc)) from exc
    return out


@dataclass(frozen=True)
class CardResources:
    """ETSI TS 102 226 Extended Card Resources Information."""

    installed_applications: int
    free_nvm: int
    free_vm: int


def encode_card_resources(r: CardResources) -> bytes:
    """``FF21`` { ``81`` installed applications, ``82`` free non-volatile memory, ``83`` free volatile memory }."""
    return encode_tlv(TAG_EXTENDED_CARD_RESOURCES, encode_tlv(0x81, _uint(r.installed_applications))
                      + encode_tlv(0x82, _memory(r.free_nvm)) + encode_tlv(0x83, _memory(r.free_vm)))


def decode_card_resources(data: bytes) -> CardResources:
    """The GET DATA answer, with or without its 'FF21' wrapper."""
    try:
        inner = find_tlv(data, TAG_EXTENDED_CARD_RESOURCES)
        if inner is None:
            inner = data
        values = dict(_pairs(inner))
    except TlvError as exc:
        raise ValueError(str(exc)) from exc
    missing = [f"{t:02X}" for t in (0x81, 0x82, 0x83) if t not in values]
    if missing:
        raise ValueError(f"card resources without {', '.join(missing)}")
    return CardResources(_decode_uint(values[0x81], "'81'"), _decode_uint(values[0x82], "'82'"),
                         _decode_uint(values[0x83], "'83'"))


_TAG_DELETED_LIST = 0x80


def encode_confirmation_response(deleted_aids: list[bytes]) -> bytes:
    """Response data of 3A08: ``80`` { ``4F`` AID ... } (njiwa citing SGP.02 §4.1.1.12); ``80 00`` when empty."""
    return encode_tlv(_TAG_DELETED_LIST, b"".join(encode_tlv(TAG_AID, _check_aid(a)) for a in deleted_aids))


def decode_confirmation_response(data: bytes) -> list[bytes]:
    """The ISD-P AIDs the eUICC deleted on the confirmation; no data at all is read as an empty list."""
    if not data:
        return []
    try:
        items = _pairs(data)
        if len(items) != 1 or items[0][0] != _TAG_DELETED_LIST:
            raise ValueError("NotificationConfirmation response is not one '80' list")
        out = []
        for tag, value in _pairs(items[0][1]):
            if tag != TAG_AID:
                raise ValueError(f"tag {tag:X} in the deleted-ISD-P list")
            out.append(_check_aid(value))
    except TlvError as exc:
        raise ValueError(str(exc)) from exc
    return out


# ====================================================================================================================
# Default notification (eUICC -> SM-SR), sgp02-wire §6.2
# ====================================================================================================================

NOTIF_FIRST_ATTACH = 0x01
NOTIF_PROFILE_CHANGE_OK = 0x02
NOTIF_PROFILE_CHANGE_ROLLED_BACK = 0x03
NOTIF_VOID = 0x04  # not used
NOTIF_FALLBACK = 0x05  # profile change after fall-back

NOTIFICATION_TYPE_NAMES = {
    NOTIF_FIRST_ATTACH: "first network attachment",
    NOTIF_PROFILE_CHANGE_OK: "profile change succeeded",
    NOTIF_PROFILE_CHANGE_ROLLED_BACK: "profile change failed and rolled back",
    NOTIF_VOID: "void",
    NOTIF_FALLBACK: "profile change after fall-back",
}

_TAG_NOTIFICATION = 0xE1
_TAG_EID = 0x4C
_TAG_NOTIFICATION_TYPE = 0x4D
_NOTIFICATION_AID_TAGS = (0x4F, 0x2F, 0xAF)
_TAG_IMEI = (0x14, 0x94)
_TAG_MEID = (0x6D, 0xED)


@dataclass(frozen=True)
class Notification:
    """A default notification. ``isdp_aid`` is the ISD-P of the profile enabled when it was sent."""

    eid: bytes
    type: int
    seq: int
    isdp_aid: bytes
    imei: bytes | None = None
    meid: bytes | None = None


def encode_notification(n: Notification) -> bytes:
    """``E1`` { ``4C`` EID, ``4D`` type, ``4E`` seq (2 bytes), ``4F`` AID, [``14`` IMEI], [``6D`` MEID] }.

    CHOICE: the AID goes under '4F' as WHTY reads it (njiwa reads '2F'/'AF', the ETSI TS 101 220 AID tag; the
    reference leaves it open, question 17). IMEI/MEID use the TS 101 220 tags without the comprehension bit.
    """
    if len(n.eid) != 16:
        raise ValueError(f"EID of {len(n.eid)} bytes (must be 16)")
    if not 0 <= n.type <= 0xFF or not 0 <= n.seq <= 0xFFFF:
        raise ValueError("notification type or sequence number out of range")
    body = (encode_tlv(_TAG_EID, n.eid) + encode_tlv(_TAG_NOTIFICATION_TYPE, bytes([n.type]))
            + encode_tlv(_TAG_SEQUENCE_NUMBER, n.seq.to_bytes(2, "big")) + encode_tlv(0x4F, _check_aid(n.isdp_aid)))
    if n.imei is not None:
        body += encode_tlv(_TAG_IMEI[0], n.imei)
    if n.meid is not None:
        body += encode_tlv(_TAG_MEID[0], n.meid)
    return encode_tlv(_TAG_NOTIFICATION, body)


def decode_notification(data: bytes) -> Notification:
    """Parse a default notification; the AID is accepted under '4F', '2F' or 'AF' (implementations disagree).

    The outer tag must be 'E1' (as njiwa demands); EID, type, sequence number and AID are mandatory; unknown inner
    tags are ignored so a newer card does not break the SM-SR.
    """
    try:
        items = _pairs(data)
        if len(items) != 1 or items[0][0] != _TAG_NOTIFICATION:
            raise ValueError("a notification is one 'E1' template")
        eid = seq = ntype = aid = imei = meid = None
        for tag, value in _pairs(items[0][1]):
            if tag == _TAG_EID:
                eid = value
            elif tag == _TAG_NOTIFICATION_TYPE:
                if len(value) != 1:
                    raise ValueError("notification type is not one byte")
                ntype = value[0]
            elif tag == _TAG_SEQUENCE_NUMBER:
                seq = _decode_uint(value, "sequence number", 2)
            elif tag in _NOTIFICATION_AID_TAGS:
                aid = _check_aid(value)
            elif tag in _TAG_IMEI:
                imei = value
            elif tag in _TAG_MEID:
                meid = value
    except TlvError as exc:
        raise ValueError(str(exc)) from exc
    if eid is None or ntype is None or seq is None or aid is None:
        raise ValueError("notification lacks EID, type, sequence number or ISD-P AID")
    return Notification(eid, ntype, seq, aid, imei, meid)
