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
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from keys.errors import TlvError
from keys.tlv import encode_tlv, iter_tlvs

__all__ = [
    "ResponseScript",
    "encode_command_script",
    "decode_command_script",
    "encode_response_script",
    "decode_response_script",
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
