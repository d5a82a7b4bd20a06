from __future__ import annotations

import pytest

from keys.tlv import TlvError, encode_length, encode_tag, encode_tlv, find_tlv, iter_tlvs, parse_tlvs


@pytest.mark.parametrize(
    ("tag", "value", "expected"),
    [
        (0x93, b"\x01\x02", "930201 02"),
        (0x42, b"", "4200"),
        (0x5F20, b"\xAA", "5F2001AA"),
        (0x7F21, b"\x00" * 3, "7F2103000000"),
        (0x9F8101, b"\x01", "9F81010101"),  # three-byte tag
        (0xBF8101, b"", "BF810100"),
    ],
)
def test_encode_short_forms(tag: int, value: bytes, expected: str) -> None:
    assert encode_tlv(tag, value) == bytes.fromhex(expected)


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (0, "00"),
        (0x7F, "7F"),
        (0x80, "8180"),
        (0xC8, "81C8"),
        (0xFF, "81FF"),
        (0x100, "820100"),
        (0xFFFF, "82FFFF"),
    ],
)
def test_length_forms(length: int, expected: str) -> None:
    assert encode_length(length) == bytes.fromhex(expected)
    encoded = encode_tlv(0x5F37, bytes(length))
    assert encoded[2:].startswith(bytes.fromhex(expected))
    assert parse_tlvs(encoded) == [(0x5F37, bytes(length))]


def test_length_too_big() -> None:
    with pytest.raises(TlvError):
        encode_tlv(0x93, bytes(0x10000))


def test_tlv_error_is_value_error() -> None:
    assert issubclass(TlvError, ValueError)


@pytest.mark.parametrize("tag", [0x1F, 0x5F, 0x7F81, 0x5F2080, 0x9F0101, 0x1000000, -1])
def test_malformed_tags_refused(tag: int) -> None:
    with pytest.raises(TlvError):
        encode_tag(tag)


def test_parse_sequence_keeps_order_and_offsets() -> None:
    data = encode_tlv(0x93, b"\x01") + encode_tlv(0x7F49, bytes(200)) + encode_tlv(0x9F8101, b"\xAB")
    assert parse_tlvs(data) == [(0x93, b"\x01"), (0x7F49, bytes(200)), (0x9F8101, b"\xAB")]
    spans = list(iter_tlvs(data))
    assert [(t.start, t.end) for t in spans] == [(0, 3), (3, 3 + 2 + 2 + 200), (207, 212)]


def test_parse_is_one_level_only() -> None:
    # 'B0' has the constructed bit set, but in a GP certificate it holds a plain point: it must stay bytes.
    point = bytes.fromhex("04" + "11" * 64)
    data = encode_tlv(0x7F49, encode_tlv(0xB0, point) + encode_tlv(0xF0, b"\x00"))
    [(tag, value)] = parse_tlvs(data)
    assert tag == 0x7F49
    assert parse_tlvs(value) == [(0xB0, point), (0xF0, b"\x00")]


def test_parse_accepts_longer_than_needed_length() -> None:
    assert parse_tlvs(bytes.fromhex("938102AABB 93820001CC")) == [(0x93, b"\xAA\xBB"), (0x93, b"\xCC")]


def test_parse_empty() -> None:
    assert parse_tlvs(b"") == []


@pytest.mark.parametrize(
    "data",
    [
        "93",  # no length
        "9303AABB",  # value truncated
        "9381",  # length truncated
        "938201",  # length truncated
        "5F",  # tag truncated
        "5F81",  # tag truncated after a continuation byte
        "5F81818101 00",  # four-byte tag
        "938300000100",  # '83' length form
        "9380AA0000",  # indefinite length
        "9301AA 42",  # second TLV truncated
    ],
)
def test_parse_errors(data: str) -> None:
    with pytest.raises(TlvError):
        parse_tlvs(bytes.fromhex(data))


def test_find_tlv() -> None:
    data = encode_tlv(0x93, b"\x01") + encode_tlv(0x42, b"\x02") + encode_tlv(0x42, b"\x03")
    assert find_tlv(data, 0x42) == b"\x02"  # the first occurrence
    assert find_tlv(data, 0x5F20) is None
    with pytest.raises(TlvError):
        find_tlv(data + b"\x95", 0x93)  # the whole input must parse
