"""BER-TLV as GlobalPlatform uses it (GPCS 2.3.1 §11.1 / ISO/IEC 7816-4 §5.2 / ISO/IEC 8825-1).

Rules this module keeps:

* A tag is 1 to 3 bytes and is handled as an ``int`` (``0x93``, ``0x7F21``, ``0x9F8101``). When the low five bits of
  the first byte are all set, more tag bytes follow; every following byte but the last has bit 8 set.
* A length is ``'00'``-``'7F'``, ``'81' xx`` or ``'82' xxxx``; longer forms and the indefinite form ``'80'`` are
  refused (GP values never exceed 65535 bytes). The encoder always writes the shortest form; the parser also
  accepts a longer-than-needed ``81``/``82`` form, as BER allows.
* Parsing works on one level only: a constructed value stays bytes until the caller parses it. This matters for GP
  certificates, whose tag ``'B0'`` has the constructed bit set but holds a plain EC point.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from keys.errors import TlvError

__all__ = ["TlvError", "Tlv", "encode_tag", "encode_length", "encode_tlv", "iter_tlvs", "parse_tlvs", "find_tlv"]

MAX_TAG_BYTES = 3
MAX_LENGTH = 0xFFFF


def encode_tag(tag: int) -> bytes:
    """The bytes of ``tag``; raises :class:`TlvError` when they are not a well-formed 1-3 byte BER tag."""
    if not 0 <= tag <= 0xFFFFFF:
        raise TlvError(f"tag {tag:#x} does not fit in {MAX_TAG_BYTES} bytes")
    raw = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")
    if len(raw) == 1:
        if raw[0] & 0x1F == 0x1F:
            raise TlvError(f"tag {tag:02X} announces further tag bytes")
        return raw
    if raw[0] & 0x1F != 0x1F:
        raise TlvError(f"tag {raw.hex().upper()}: first byte does not announce further tag bytes")
    if any(b & 0x80 == 0 for b in raw[1:-1]) or raw[-1] & 0x80:
        raise TlvError(f"tag {raw.hex().upper()}: bad continuation bits")
    return raw


def encode_length(length: int) -> bytes:
    """The shortest of the 1, 2 ('81') or 3 ('82') byte length forms."""
    if length < 0 or length > MAX_LENGTH:
        raise TlvError(f"length {length} out of range 0..{MAX_LENGTH}")
    if length < 0x80:
        return bytes([length])
    if length <= 0xFF:
        return bytes([0x81, length])
    return bytes([0x82]) + length.to_bytes(2, "big")


def encode_tlv(tag: int, value: bytes) -> bytes:
    return encode_tag(tag) + encode_length(len(value)) + bytes(value)


@dataclass(frozen=True)
class Tlv:
    """One parsed TLV: ``start`` is the offset of its tag, ``end`` the offset just past its value."""

    tag: int
    value: bytes
    start: int
    end: int


def _read_tag(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    end = pos + 1
    if first & 0x1F == 0x1F:
        while True:
            if end >= len(data):
                raise TlvError(f"truncated tag at offset {pos}")
            if end - pos >= MAX_TAG_BYTES:
                raise TlvError(f"tag at offset {pos} longer than {MAX_TAG_BYTES} bytes")
            more = data[end] & 0x80
            end += 1
            if not more:
                break
    return int.from_bytes(data[pos:end], "big"), end


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TlvError(f"missing length at offset {pos}")
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    if first not in (0x81, 0x82):
        raise TlvError(f"unsupported length byte {first:02X} at offset {pos}")
    size = first & 0x7F
    if pos + 1 + size > len(data):
        raise TlvError(f"truncated length at offset {pos}")
    return int.from_bytes(data[pos + 1 : pos + 1 + size], "big"), pos + 1 + size


def iter_tlvs(data: bytes) -> Iterator[Tlv]:
    """The top-level TLVs of ``data`` with their offsets; raises :class:`TlvError` on truncation or bad lengths."""
    data = bytes(data)
    pos = 0
    while pos < len(data):
        tag, after_tag = _read_tag(data, pos)
        length, value_start = _read_length(data, after_tag)
        end = value_start + length
        if end > len(data):
            raise TlvError(f"value of tag {tag:X} at offset {pos} needs {length} bytes, {len(data) - value_start} left")
        yield Tlv(tag, data[value_start:end], pos, end)
        pos = end


def parse_tlvs(data: bytes) -> list[tuple[int, bytes]]:
    """The top-level ``(tag, value)`` pairs of ``data``, in order."""
    return [(t.tag, t.value) for t in iter_tlvs(data)]


def find_tlv(data: bytes, tag: int) -> bytes | None:
    """The value of the first top-level TLV with ``tag``, or ``None``. The whole of ``data`` must parse."""
    found = None
    for t in iter_tlvs(data):
        if found is None and t.tag == tag:
            found = t.value
    return found
