"""GlobalPlatform Data Grouping Identifiers (GP Card Specification 11.11.3.1; Amd E 4.1.3): the framing STORE DATA
gives key-agreement data (DGI 3A01, 3A02) and key sets. Here because the key establishment (keys.ecka) builds and
reads DGIs; the remote APDU codecs (ota.es5, ota.es8) use the same two functions.
"""
from __future__ import annotations


def encode_dgi(dgi: int, value: bytes) -> bytes:
    """DGI (2 bytes) + length + value, with the GP DGI length rule: 1 byte for 0..254, else 'FF' + 2 bytes."""
    if not 0 <= dgi <= 0xFFFF:
        raise ValueError(f"DGI {dgi:#x} is not two bytes")
    if len(value) > 0xFFFF:
        raise ValueError("DGI value too long")
    length = bytes([len(value)]) if len(value) < 0xFF else b"\xFF" + len(value).to_bytes(2, "big")
    return dgi.to_bytes(2, "big") + length + bytes(value)


def parse_dgi(data: bytes) -> tuple[int, bytes]:
    """The one DGI that makes up ``data``; :class:`ValueError` on truncation or trailing bytes."""
    data = bytes(data)
    if len(data) < 3:
        raise ValueError("DGI truncated")
    dgi = int.from_bytes(data[:2], "big")
    if data[2] == 0xFF:
        if len(data) < 5:
            raise ValueError("DGI length truncated")
        length, start = int.from_bytes(data[3:5], "big"), 5
    else:
        length, start = data[2], 3
    if len(data) != start + length:
        raise ValueError(f"DGI {dgi:04X} announces {length} bytes, {len(data) - start} present")
    return dgi, data[start:]
