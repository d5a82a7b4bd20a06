"""SMS pieces for SCP80 over SMS: 3GPP TS 23.040 (TPDUs, user data header) and TS 31.111 (SMS-PP download).

Theory of operation. A secured packet (``keys.scp80``) travels as the TP-User-Data of 8-bit SMS (TP-DCS 'F6',
TP-PID '7F' SIM data download, TP-UDHI set). Its user data header names it: IEI '70' (CPI) for a command packet,
'71' (RPI) for a PoR (TS 31.115, SMS dialect). A packet longer than one SMS is split with the 8-bit-reference
concatenation IE '00' (TS 23.040 §9.2.3.24.1); only the first part carries the CPI/RPI
(TS 31.115, command packet in concatenated short messages):

    single part   02 <iei> 00 | packet                          (when 3 + len(packet) <= 140)
    first part    07 <iei> 00 00 03 <ref> <n> 01 | 132 octets
    later parts   05 00 03 <ref> <n> <i> | up to 134 octets

[verify] The order of the two IEs in the first part's UDH ('70' before '00') is njiwa's (crypto-ota.md §3.1); a
real SJA5 card was seen sending its first PoR part as '07 00 03 ref n 01 71 00' (pySim test_sms.py).
:func:`parse_user_data` accepts either order, and the 16-bit-reference IE '08' as well.

Network to card: the SMSC sends an SMS-DELIVER; the terminal hands it to the UICC in an ENVELOPE (SMS-PP download,
TS 31.111 / TS 102 223 §7.1.1): 'D1' { device identities '82 02 83 81' (network to UICC), address '06'
(the SMSC, TON/NPI + BCD), SMS TPDU '8B' }. Card to network: the PoR goes back in an SMS-SUBMIT (or in the
SMS-DELIVER-REPORT, the ENVELOPE response).

Addresses are digit strings, written as international E.164 (TON/NPI '91') unless the optional
``originator_toa`` / ``destination_toa`` field says otherwise; decoding keeps the received TON/NPI there and refuses
alphanumeric addresses. Only 8-bit (octet counted) user data is handled: a TP-DCS meaning GSM 7-bit is refused. TP-VP is never written; when a received
SMS-SUBMIT has one it is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from keys.errors import TlvError
from keys.tlv import encode_tlv, iter_tlvs

__all__ = [
    "CPI",
    "RPI",
    "MAX_UD",
    "TOA_INTERNATIONAL",
    "PID_SIM_DATA_DOWNLOAD",
    "DCS_8BIT_CLASS2",
    "segment",
    "UserDataPart",
    "parse_user_data",
    "reassemble",
    "SmsDeliver",
    "SmsSubmit",
    "encode_sms_deliver",
    "decode_sms_deliver",
    "encode_sms_submit",
    "decode_sms_submit",
    "envelope_sms_pp",
    "parse_envelope_sms_pp",
]

CPI = 0x70  # command packet identifier IEI (TS 31.115)
RPI = 0x71  # response packet identifier IEI (TS 31.115)
MAX_UD = 140  # octets of TP-User-Data in one SMS
TOA_INTERNATIONAL = 0x91  # type of address: international number, ISDN/E.164 numbering plan
PID_SIM_DATA_DOWNLOAD = 0x7F  # TS 23.040 §9.2.3.9
DCS_8BIT_CLASS2 = 0xF6  # TS 23.038 §4: data coding/message class group, 8-bit data, class 2 (SIM specific)

_IEI_CONCAT8 = 0x00  # concatenated SMS, 8-bit reference (TS 23.040 §9.2.3.24.1)
_IEI_CONCAT16 = 0x08  # concatenated SMS, 16-bit reference (§9.2.3.24.8)
_FIRST_UDH = 8  # 07 <iei> 00 00 03 ref n 1
_LATER_UDH = 6  # 05 00 03 ref n i


# --- user data header and concatenation --------------------------------------------------------------------------


def segment(packet: bytes, iei: int, ref: int) -> list[bytes]:
    """The TP-UD of each SMS carrying ``packet`` (UDH included), each at most :data:`MAX_UD` octets."""
    if not 0 <= ref <= 0xFF:
        raise ValueError(f"concatenation reference {ref} out of range 0..255")
    if not 0 <= iei <= 0xFF:
        raise ValueError(f"IEI {iei} out of range")
    packet = bytes(packet)
    if 3 + len(packet) <= MAX_UD:
        return [bytes([2, iei, 0]) + packet]
    first_room, later_room = MAX_UD - _FIRST_UDH, MAX_UD - _LATER_UDH
    chunks = [packet[:first_room]]
    chunks += [packet[i : i + later_room] for i in range(first_room, len(packet), later_room)]
    total = len(chunks)
    if total > 0xFF:
        raise ValueError(f"packet of {len(packet)} octets needs {total} SMS, more than 255")
    parts = [bytes([7, iei, 0, _IEI_CONCAT8, 3, ref, total, 1]) + chunks[0]]
    parts += [bytes([5, _IEI_CONCAT8, 3, ref, total, seq]) + chunk for seq, chunk in enumerate(chunks[1:], 2)]
    return parts


@dataclass(frozen=True)
class UserDataPart:
    """One SMS's user data, its header read: ``total`` = ``seq`` = 1 when the part is not concatenated."""

    iei: int | None  # 0x70..0x7F when present in this part's UDH
    ref: int | None
    total: int
    seq: int
    payload: bytes


def parse_user_data(ud: bytes, udhi: bool = True) -> UserDataPart:
    """Split TP-UD into its header information and payload; ``udhi=False`` means there is no header.

    Raises ValueError when the header is truncated, an IE overruns it, or an IE has the wrong length. A
    concatenation IE with a reserved total or sequence number is ignored, as TS 23.040 §9.2.3.24.1 asks.
    """
    ud = bytes(ud)
    if not udhi:
        return UserDataPart(None, None, 1, 1, ud)
    if not ud:
        raise ValueError("TP-UDHI set but the user data is empty")
    udhl = ud[0]
    if 1 + udhl > len(ud):
        raise ValueError(f"UDHL {udhl} longer than the user data")
    header, pos = ud[1 : 1 + udhl], 0
    iei: int | None = None
    ref: int | None = None
    total = seq = 1
    while pos < len(header):
        if pos + 2 > len(header):
            raise ValueError("truncated information element in the UDH")
        tag, length = header[pos], header[pos + 1]
        value = header[pos + 2 : pos + 2 + length]
        if len(value) != length:
            raise ValueError(f"IE {tag:02X} overruns the UDH")
        pos += 2 + length
        if 0x70 <= tag <= 0x7F:  # TS 31.115: CPI/RPI and the rest of the range reserved for secured packets
            if length:
                raise ValueError(f"IE {tag:02X} must be empty, has {length} octets")
            iei = tag
        elif tag in (_IEI_CONCAT8, _IEI_CONCAT16):
            if length != (3 if tag == _IEI_CONCAT8 else 4):
                raise ValueError(f"concatenation IE {tag:02X} of length {length}")
            if value[-2] == 0 or not 1 <= value[-1] <= value[-2]:
                continue  # TS 23.040 §9.2.3.24.1: reserved total/sequence values, the IE shall be ignored
            ref, total, seq = int.from_bytes(value[:-2], "big"), value[-2], value[-1]
        # other IEs (port addressing, ...) are not ours to interpret
    return UserDataPart(iei, ref, total, seq, ud[1 + udhl :])


class IncompleteMessage(ValueError):
    """A concatenated SMS of which some parts have not arrived (yet): not an error of what did arrive."""


def reassemble(parts: list[UserDataPart]) -> tuple[int | None, bytes]:
    """``(iei of the first part, payloads joined in seq order)``; :class:`IncompleteMessage` when parts are
    missing, ValueError when they are mixed."""
    if not parts:
        raise ValueError("no parts")
    refs = {(p.ref, p.total) for p in parts}
    if len(refs) != 1:
        raise ValueError(f"parts of different messages: {sorted(refs, key=str)}")
    total = parts[0].total
    by_seq = {p.seq: p for p in parts}
    if len(by_seq) != len(parts):
        raise ValueError("duplicate part")
    missing = set(range(1, total + 1)) - set(by_seq)
    if missing:
        raise IncompleteMessage(f"missing parts {sorted(missing)} of {total}")
    return by_seq[1].iei, b"".join(by_seq[i].payload for i in range(1, total + 1))


# --- addresses ---------------------------------------------------------------------------------------------------


def _bcd(digits: str) -> bytes:
    """Semi-octet BCD, low nibble first, 'F' filler (TS 23.040 §9.1.2.3)."""
    if not digits or not digits.isdigit() or not digits.isascii():
        raise ValueError(f"address must be a non-empty digit string, not {digits!r}")
    padded = digits + "F" * (len(digits) % 2)
    return bytes(int(padded[i + 1] + padded[i], 16) for i in range(0, len(padded), 2))


def _unbcd(raw: bytes, ndigits: int | None = None) -> str:
    nibbles = "".join(f"{b & 0xF:X}{b >> 4:X}" for b in raw)
    if ndigits is not None:
        nibbles = nibbles[:ndigits]
    elif nibbles.endswith("F"):
        nibbles = nibbles[:-1]
    if not nibbles.isdigit():
        raise ValueError(f"address {raw.hex().upper()} holds non-digit semi-octets")
    return nibbles


def _check_toa(toa: int) -> None:
    if toa & 0x80 == 0 or toa & 0x70 == 0x50:
        raise ValueError(f"type of address {toa:02X} is not a numeric address")


def _encode_address(digits: str, toa: int) -> bytes:
    """TP-OA / TP-DA: number of digits, type of address, BCD (TS 23.040 §9.1.2.5)."""
    _check_toa(toa)
    return bytes([len(digits), toa]) + _bcd(digits)


def _decode_address(tpdu: bytes, pos: int) -> tuple[str, int, int]:
    """``(digits, type of address, next offset)``."""
    if pos + 2 > len(tpdu):
        raise ValueError("truncated address")
    ndigits, toa = tpdu[pos], tpdu[pos + 1]
    _check_toa(toa)
    end = pos + 2 + (ndigits + 1) // 2
    if end > len(tpdu):
        raise ValueError("truncated address")
    return _unbcd(tpdu[pos + 2 : end], ndigits), toa, end


# --- TPDUs -------------------------------------------------------------------------------------------------------


def _octet_user_data(dcs: int) -> bool:
    """Whether TP-UDL counts octets (8-bit or UCS2) rather than septets, per TS 23.038 §4."""
    if dcs & 0xF0 == 0xF0:  # data coding/message class group: b3 = 1 means 8-bit
        return bool(dcs & 0x04)
    if dcs & 0x80 == 0:  # general data coding groups: b4-b3 alphabet, 00 = GSM 7-bit
        return (dcs >> 2) & 3 != 0
    return dcs & 0xF0 == 0xE0  # message waiting groups: only 'E0'..'EF' is UCS2; the rest GSM 7-bit


def _user_data(dcs: int, ud: bytes) -> bytes:
    if not _octet_user_data(dcs):
        raise ValueError(f"TP-DCS {dcs:02X} means GSM 7-bit user data, which is not supported")
    if len(ud) > MAX_UD:
        raise ValueError(f"user data of {len(ud)} octets exceeds {MAX_UD}")
    return bytes([len(ud)]) + bytes(ud)


def _read_user_data(tpdu: bytes, pos: int, dcs: int) -> bytes:
    if not _octet_user_data(dcs):
        raise ValueError(f"TP-DCS {dcs:02X} means GSM 7-bit user data, which is not supported")
    if pos >= len(tpdu):
        raise ValueError("missing TP-UDL")
    udl = tpdu[pos]
    ud = tpdu[pos + 1 :]
    if udl != len(ud):
        raise ValueError(f"TP-UDL {udl} but {len(ud)} octets of user data")
    return ud


def encode_scts(when: datetime) -> bytes:
    """TP-SCTS (TS 23.040 §9.2.3.11): YYMMDDhhmmss as semi-octets, then the time zone (UTC: 00)."""
    when = when.astimezone(timezone.utc)
    return _bcd(when.strftime("%y%m%d%H%M%S")) + b"\x00"


@dataclass(frozen=True)
class SmsDeliver:
    originator: str  # TP-OA digits
    pid: int
    dcs: int
    scts: bytes  # TP-SCTS, 7 semi-octet octets as sent
    ud: bytes
    udhi: bool
    originator_toa: int = TOA_INTERNATIONAL


@dataclass(frozen=True)
class SmsSubmit:
    destination: str  # TP-DA digits
    pid: int
    dcs: int
    ud: bytes
    udhi: bool
    mr: int  # TP-MR
    destination_toa: int = TOA_INTERNATIONAL


def encode_sms_deliver(d: SmsDeliver) -> bytes:
    """SMS-DELIVER (TS 23.040 §9.2.2.1). First octet: MTI '00', UDHI; TP-MMS/SRI/RP 0 (as pySim's vectors)."""
    if len(d.scts) != 7:
        raise ValueError(f"TP-SCTS is 7 octets, got {len(d.scts)}")
    first = 0x40 if d.udhi else 0x00
    return (
        bytes([first]) + _encode_address(d.originator, d.originator_toa) + bytes([d.pid, d.dcs]) + bytes(d.scts)
        + _user_data(d.dcs, d.ud)
    )


def decode_sms_deliver(tpdu: bytes) -> SmsDeliver:
    tpdu = bytes(tpdu)
    if not tpdu or tpdu[0] & 0x03 != 0x00:
        raise ValueError("not an SMS-DELIVER (TP-MTI)")
    originator, toa, pos = _decode_address(tpdu, 1)
    if pos + 9 > len(tpdu):
        raise ValueError("truncated SMS-DELIVER")
    pid, dcs, scts = tpdu[pos], tpdu[pos + 1], tpdu[pos + 2 : pos + 9]
    ud = _read_user_data(tpdu, pos + 9, dcs)
    return SmsDeliver(originator, pid, dcs, scts, ud, bool(tpdu[0] & 0x40), toa)


_VP_LENGTH = {0: 0, 1: 7, 2: 1, 3: 7}  # TP-VPF: none, enhanced, relative, absolute (TS 23.040 §9.2.3.3)


def encode_sms_submit(s: SmsSubmit) -> bytes:
    """SMS-SUBMIT (TS 23.040 §9.2.2.2). First octet: MTI '01', UDHI; no TP-VP, TP-RD/SRR/RP written as 0."""
    if not 0 <= s.mr <= 0xFF:
        raise ValueError(f"TP-MR {s.mr} out of range")
    first = 0x01 | (0x40 if s.udhi else 0x00)
    return (
        bytes([first, s.mr]) + _encode_address(s.destination, s.destination_toa) + bytes([s.pid, s.dcs])
        + _user_data(s.dcs, s.ud)
    )


def decode_sms_submit(tpdu: bytes) -> SmsSubmit:
    tpdu = bytes(tpdu)
    if len(tpdu) < 2 or tpdu[0] & 0x03 != 0x01:
        raise ValueError("not an SMS-SUBMIT (TP-MTI)")
    destination, toa, pos = _decode_address(tpdu, 2)
    if pos + 2 > len(tpdu):
        raise ValueError("truncated SMS-SUBMIT")
    pid, dcs = tpdu[pos], tpdu[pos + 1]
    pos += 2 + _VP_LENGTH[tpdu[0] >> 3 & 3]
    ud = _read_user_data(tpdu, pos, dcs)
    return SmsSubmit(destination, pid, dcs, ud, bool(tpdu[0] & 0x40), tpdu[1], toa)


# --- ENVELOPE (SMS-PP download) ----------------------------------------------------------------------------------

_TAG_SMS_PP_DOWNLOAD = 0xD1  # TS 102 223 Annex C: BER-TLV tag of the SMS-PP download ENVELOPE
_DEVICE_IDENTITIES = 0x02  # COMPREHENSION-TLV tags; bit 8 is the comprehension-required flag
_ADDRESS = 0x06
_SMS_TPDU = 0x0B
_NETWORK_TO_UICC = bytes([0x83, 0x81])  # source: network, destination: UICC (TS 102 223 §8.7)


def envelope_sms_pp(tpdu: bytes, smsc_address: str) -> bytes:
    """The ENVELOPE (SMS-PP download) data object carrying an SMS-DELIVER ``tpdu`` from ``smsc_address``."""
    body = (
        encode_tlv(0x80 | _DEVICE_IDENTITIES, _NETWORK_TO_UICC)
        + encode_tlv(0x80 | _ADDRESS, bytes([TOA_INTERNATIONAL]) + _bcd(smsc_address))
        + encode_tlv(0x80 | _SMS_TPDU, bytes(tpdu))
    )
    return encode_tlv(_TAG_SMS_PP_DOWNLOAD, body)


def parse_envelope_sms_pp(data: bytes) -> tuple[str, bytes]:
    """``(SMSC address digits, SMS-DELIVER TPDU)``; the address is ``""`` when the optional TLV is absent."""
    try:
        outer = list(iter_tlvs(data))
        if len(outer) != 1 or outer[0].tag != _TAG_SMS_PP_DOWNLOAD:
            raise ValueError("not a single SMS-PP download ENVELOPE 'D1'")
        fields: dict[int, bytes] = {}
        for tlv in iter_tlvs(outer[0].value):
            if tlv.tag <= 0xFF:  # one-octet COMPREHENSION-TLV tags; the first occurrence counts
                fields.setdefault(tlv.tag & 0x7F, tlv.value)
    except TlvError as e:
        raise ValueError(f"ENVELOPE: {e}") from None
    if fields.get(_DEVICE_IDENTITIES) != _NETWORK_TO_UICC:
        raise ValueError("ENVELOPE device identities are not network to UICC")
    if _SMS_TPDU not in fields:
        raise ValueError("ENVELOPE carries no SMS TPDU")
    address = ""
    if _ADDRESS in fields:
        raw = fields[_ADDRESS]
        if not raw:
            raise ValueError("empty address TLV")
        _check_toa(raw[0])
        address = _unbcd(raw[1:])
    return address, fields[_SMS_TPDU]
