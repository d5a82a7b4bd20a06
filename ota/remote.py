"""Expanded remote command and response format, ETSI TS 102 226 §5.2 (tags from TS 101 220 Table 7.18/7.19).

Theory of operation. The secured data of an SCP80 command packet (or an SCP81 HTTP body) is a command scripting
template holding C-APDUs; the card runs them in order, stops at the first error status word, and answers with a
response scripting template: the number of commands executed and the R-APDU (response data || SW1 SW2) of each.
The SM-SR encodes commands and decodes responses; the simulated eUICC does the opposite with the same functions::

    command   'AA' L { '22' L C-APDU }*                definite length (TS 102 226 §5.2.1)
              'AE' 80 { '22' L C-APDU }* 00 00         indefinite length (accepted, never written)
    response  'AB' L { '80' 01 n, '23' L R-APDU ... }  definite (§5.2.2)
              'AF' 80 { ['80' 01 n], '23' L R-APDU ... } 00 00
              '90' 01 x (bad format: 01 unknown tag, 02 wrong length, 03 length missing) may replace R-APDUs.

Immediate action ('81'), error action ('82') and script chaining ('83') TLVs are not used by this project and are
refused when decoding. Inner lengths use the definite BER forms of ``keys.tlv``.

The same templates carry ES8 (SM-DP -> ISD-P, tunnelled through ES3.SendData, see ``ota.es8``), whose commands are
not all C-APDUs: the SCP03t TLVs '84'/'85'/'86' travel beside '22' C-APDUs, and the card answers each with its
response TLV as-is ('84'/'85'/'86', or an error '9F84'/'9F85'/'9F86') beside '23' R-APDUs. The ``*_tlvs``
functions handle such scripts as lists of complete TLVs::

    command   'AA' L { TLV }*                  encode_command_tlvs / decode_command_tlvs
    response  'AB' L { '80' 01 n, TLV ... }    encode_response_tlvs / decode_response_tlvs

CHOICE: the SCP03t error tags '9F84'..'9F86' (sgp02-wire §6.4) are not well-formed two-byte BER tags (the second
byte has b8 set, which BER reads as "another tag byte follows"). These functions therefore read a tag whose first
byte is '9F' as exactly two bytes; no other multi-byte tag occurs in these scripts. Other tags follow BER.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from keys.errors import TlvError
from keys.tlv import encode_length, encode_tlv, iter_tlvs

__all__ = [
    "ResponseScript",
    "encode_command_script",
    "decode_command_script",
    "encode_response_script",
    "decode_response_script",
    "encode_command_tlvs",
    "decode_command_tlvs",
    "encode_response_tlvs",
    "decode_response_tlvs",
    "split_tlvs",
]

TAG_COMMAND_SCRIPT = 0xAA
TAG_COMMAND_SCRIPT_INDEFINITE = 0xAE
TAG_RESPONSE_SCRIPT = 0xAB
TAG_RESPONSE_SCRIPT_INDEFINITE = 0xAF
TAG_C_APDU = 0x22
TAG_R_APDU = 0x23
TAG_NUMBER_EXECUTED = 0x80
TAG_BAD_FORMAT = 0x90


def _template(data: bytes, definite: int, indefinite: int, what: str) -> Iterator[tuple[int, bytes]]:
    """The ``(tag, value)`` pairs inside a scripting template in definite or indefinite form."""
    data = bytes(data)
    try:
        if data[:2] == bytes([indefinite, 0x80]):
            if len(data) < 4 or data[-2:] != b"\x00\x00":
                raise ValueError(f"{what} {indefinite:02X}: missing end-of-contents '0000'")
            inner = data[2:-2]
        else:
            outer = list(iter_tlvs(data))
            if len(outer) != 1 or outer[0].tag != definite:
                raise ValueError(f"not a {what} {definite:02X} or {indefinite:02X}")
            inner = outer[0].value
        return iter([(t.tag, t.value) for t in iter_tlvs(inner)])
    except TlvError as e:
        raise ValueError(f"{what}: {e}") from None


def encode_command_script(apdus: Sequence[bytes]) -> bytes:
    """'AA' L { '22' L C-APDU }*, definite length."""
    if isinstance(apdus, (bytes, bytearray)):
        raise TypeError("pass a sequence of C-APDUs, not one C-APDU")
    for apdu in apdus:
        if len(apdu) < 4:
            raise ValueError(f"C-APDU of {len(apdu)} octets")
    return encode_tlv(TAG_COMMAND_SCRIPT, b"".join(encode_tlv(TAG_C_APDU, bytes(a)) for a in apdus))


def decode_command_script(data: bytes) -> list[bytes]:
    """The C-APDUs of an 'AA' (definite) or 'AE' (indefinite) template; ValueError for anything else."""
    apdus = []
    for tag, value in _template(data, TAG_COMMAND_SCRIPT, TAG_COMMAND_SCRIPT_INDEFINITE, "command script"):
        if tag != TAG_C_APDU:
            raise ValueError(f"command script: unsupported tag {tag:02X}")
        if len(value) < 4:
            raise ValueError(f"command script: C-APDU of {len(value)} octets")
        apdus.append(value)
    return apdus


@dataclass(frozen=True)
class ResponseScript:
    """A decoded response scripting template. Each R-APDU is response data || SW1 SW2."""

    executed: int
    responses: list[bytes]
    bad_format: int | None = None  # the '90' value when the card could not parse the command script

    @property
    def last_sw(self) -> int:
        """SW1 SW2 of the last R-APDU; ValueError when there is none (e.g. a bad-format answer)."""
        if not self.responses:
            raise ValueError("response script holds no R-APDU")
        return int.from_bytes(self.responses[-1][-2:], "big")


def encode_response_script(executed: int, responses: Sequence[bytes]) -> bytes:
    """'AB' L { '80' 01 n, '23' L R-APDU ... }, definite length."""
    if not 0 <= executed <= 0xFF:
        raise ValueError(f"number of executed commands {executed} out of range")
    for r in responses:
        if len(r) < 2:
            raise ValueError(f"R-APDU of {len(r)} octets has no status word")
    body = encode_tlv(TAG_NUMBER_EXECUTED, bytes([executed]))
    body += b"".join(encode_tlv(TAG_R_APDU, bytes(r)) for r in responses)
    return encode_tlv(TAG_RESPONSE_SCRIPT, body)


def decode_response_script(data: bytes) -> ResponseScript:
    """Decode 'AB' (definite, '80' required) or 'AF' (indefinite; without '80', n = number of R-APDUs)."""
    executed: int | None = None
    bad_format: int | None = None
    responses: list[bytes] = []
    for tag, value in _template(data, TAG_RESPONSE_SCRIPT, TAG_RESPONSE_SCRIPT_INDEFINITE, "response script"):
        if tag == TAG_NUMBER_EXECUTED and executed is None and len(value) == 1:
            executed = value[0]
        elif tag == TAG_R_APDU and len(value) >= 2:
            responses.append(value)
        elif tag == TAG_BAD_FORMAT and bad_format is None and len(value) == 1:
            bad_format = value[0]
        else:
            raise ValueError(f"response script: unexpected TLV {tag:02X} of {len(value)} octets")
    if executed is None:
        if bytes(data[:1]) == bytes([TAG_RESPONSE_SCRIPT]):
            raise ValueError("response script 'AB' without number of executed commands '80'")
        executed = len(responses)
    return ResponseScript(executed, responses, bad_format)


# --- scripts of arbitrary TLVs (ES8) ---------------------------------------------------------------------------------


def _read_script_tag(data: bytes, pos: int) -> int:
    """End offset of the tag at ``pos``: one byte, '9F' + one byte (see the module doc), or a BER multi-byte tag."""
    first = data[pos]
    if first & 0x1F != 0x1F:
        return pos + 1
    if first == 0x9F:
        if pos + 1 >= len(data):
            raise ValueError(f"truncated tag at offset {pos}")
        return pos + 2
    end = pos + 1
    while True:
        if end >= len(data) or end - pos >= 3:
            raise ValueError(f"bad tag at offset {pos}")
        end += 1
        if not data[end - 1] & 0x80:
            return end


def split_tlvs(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """The top-level ``(tag, value, whole TLV)`` triples of ``data``; ValueError when anything is left over.

    Tags as in the module doc ('9F' + one byte is a whole tag); lengths in the definite BER forms '00'..'7F',
    '81' xx, '82' xxxx.
    """
    data = bytes(data)
    out = []
    pos = 0
    while pos < len(data):
        after_tag = _read_script_tag(data, pos)
        if after_tag >= len(data):
            raise ValueError(f"missing length at offset {after_tag}")
        first = data[after_tag]
        if first < 0x80:
            length, start = first, after_tag + 1
        elif first in (0x81, 0x82):
            size = first & 0x7F
            if after_tag + 1 + size > len(data):
                raise ValueError(f"truncated length at offset {after_tag}")
            length, start = int.from_bytes(data[after_tag + 1 : after_tag + 1 + size], "big"), after_tag + 1 + size
        else:
            raise ValueError(f"unsupported length byte {first:02X} at offset {after_tag}")
        end = start + length
        if end > len(data):
            raise ValueError(f"TLV at offset {pos} needs {length} bytes, {len(data) - start} left")
        out.append((int.from_bytes(data[pos:after_tag], "big"), data[start:end], data[pos:end]))
        pos = end
    return out


def _complete_tlvs(tlvs: Sequence[bytes], what: str) -> bytes:
    if isinstance(tlvs, (bytes, bytearray)):
        raise TypeError(f"pass a sequence of {what} TLVs, not one byte string")
    for tlv in tlvs:
        if len(split_tlvs(tlv)) != 1:
            raise ValueError(f"{what}: {bytes(tlv).hex().upper()[:40]} is not exactly one TLV")
    return b"".join(bytes(t) for t in tlvs)


def _tlv_template(data: bytes, definite: int, indefinite: int, what: str) -> list[tuple[int, bytes]]:
    data = bytes(data)
    if data[:2] == bytes([indefinite, 0x80]):
        if len(data) < 4 or data[-2:] != b"\x00\x00":
            raise ValueError(f"{what} {indefinite:02X}: missing end-of-contents '0000'")
        inner = data[2:-2]
    else:
        try:
            outer = split_tlvs(data)
        except ValueError as e:
            raise ValueError(f"{what}: {e}") from None
        if len(outer) != 1 or outer[0][0] != definite:
            raise ValueError(f"not a {what} {definite:02X} or {indefinite:02X}")
        inner = outer[0][1]
    try:
        return [(tag, value) for tag, value, _ in split_tlvs(inner)]
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None


def encode_command_tlvs(tlvs: Sequence[bytes]) -> bytes:
    """'AA' L { TLV }*: a command script of complete, already-encoded TLVs (definite length)."""
    body = _complete_tlvs(tlvs, "command")
    return bytes([TAG_COMMAND_SCRIPT]) + encode_length(len(body)) + body


def decode_command_tlvs(data: bytes) -> list[tuple[int, bytes]]:
    """The ``(tag, value)`` pairs of an 'AA' (or indefinite 'AE') command script. Any tag is returned; the
    executing side decides which it runs. ValueError when the template is malformed or empty."""
    pairs = _tlv_template(data, TAG_COMMAND_SCRIPT, TAG_COMMAND_SCRIPT_INDEFINITE, "command script")
    if not pairs:
        raise ValueError("command script holds no command")
    return pairs


def encode_response_tlvs(executed: int, tlvs: Sequence[bytes]) -> bytes:
    """'AB' L { '80' 01 n, TLV ... }: n and the response TLVs, already encoded ('23' R-APDU, '86' ..., '9F86' ...)."""
    if not 0 <= executed <= 0xFF:
        raise ValueError(f"number of executed commands {executed} out of range")
    body = encode_tlv(TAG_NUMBER_EXECUTED, bytes([executed])) + _complete_tlvs(tlvs, "response")
    return bytes([TAG_RESPONSE_SCRIPT]) + encode_length(len(body)) + body


def decode_response_tlvs(data: bytes) -> tuple[int, list[tuple[int, bytes]]]:
    """``(n, [(tag, value) ...])`` of an 'AB' response script ('80' required, first) or an indefinite 'AF' one
    (without '80', n = number of TLVs). The '80' TLV is not among the returned pairs."""
    pairs = _tlv_template(data, TAG_RESPONSE_SCRIPT, TAG_RESPONSE_SCRIPT_INDEFINITE, "response script")
    executed: int | None = None
    if pairs and pairs[0][0] == TAG_NUMBER_EXECUTED:
        if len(pairs[0][1]) != 1:
            raise ValueError("response script: number of executed commands is not one octet")
        executed = pairs[0][1][0]
        pairs = pairs[1:]
    elif bytes(data[:1]) == bytes([TAG_RESPONSE_SCRIPT]):
        raise ValueError("response script 'AB' without number of executed commands '80' first")
    if any(tag == TAG_NUMBER_EXECUTED for tag, _ in pairs):
        raise ValueError("response script: more than one '80'")
    return (len(pairs) if executed is None else executed), pairs
