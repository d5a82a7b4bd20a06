"""The TCA eUICC Profile Package ("SAIP") layer, used by the SM-DP and by the simulated eUICC.

Theory of operation
-------------------
A profile package is a concatenation of DER-encoded ``ProfileElement`` values (TCA "eUICC Profile Package:
Interoperable Format", v3.3.1), with no outer SEQUENCE: ``header`` first, ``end`` last. The ASN.1 module is
esx's own, ``PEDefinitions.asn`` next to this file (its header says how it was written and where it differs); it is
compiled once per process with asn1tools (DER) by :func:`compiled`.

- The SM-DP stores a template, calls :func:`summarise` to check it, and :func:`personalise` to write one
  subscription's ICCID, IMSI, MSISDN, K/OPc and PINs into it. Only the PEs that receive a value are re-encoded; every
  other PE is copied byte for byte, and a PE is only re-encoded when decoding and encoding it gives back its own
  bytes (otherwise :class:`SaipError`), so nothing the MNO wrote is changed silently.
- The card gets the package in segments of any size: :class:`PackageReader` cuts complete PEs out of the stream
  (its state survives between SMS as JSON), :func:`validate_pe` decodes each one and raises :class:`SaipError`
  carrying the ``PEStatus`` code to report, and :func:`encode_euicc_response` builds the answer.
- :func:`decode_package` / :func:`encode_package` are the plain codec: ``[(pe_name, value)]``, values as asn1tools
  gives them (dicts, bytes, ``(alternative, value)`` tuples for CHOICEs).

asn1tools behaviours this module relies on or works around (asn1tools 0.169.0):

- An unknown CHOICE alternative decodes as ``(None, None)`` because the module is extensible. At the top level that
  is a PE type we do not know: status pe-not-supported (1). Deeper inside a PE it is a newer File / FileManagement /
  algorithm / PIN alternative: status feature-not-supported (10). Both raise in :func:`decode_package` and
  :func:`validate_pe`; :func:`personalise` passes unknown PEs through untouched.
- Unknown fields inside a SEQUENCE are skipped silently by the decoder, so they would be lost when re-encoding;
  :func:`personalise` detects this with the round-trip check above.
- ``akaParameter.sqnInit``: the TCA DEFAULT is written as one OCTET STRING for a SEQUENCE OF; decoding with the TCA
  module yields a string (or bytes) in its place, which cannot be re-encoded. Our module declares the field OPTIONAL
  instead (absent = the TCA default, 32 SQNs of zero). :func:`encode_package` drops a ``sqnInit`` that is not a list
  (a value decoded with the TCA module) and one equal to the default (DER omits defaults), so TS.48 profiles
  re-encode byte for byte.

ICCID coding: ``header.iccid`` holds the digits in reading order (``89 00 01 ...``), EF.ICCID holds them with the
nibbles of each byte swapped (``98 00 10 ...``), both 'F'-filled to 20 digits, as in the GSMA TS.48 test profiles.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asn1tools

__all__ = [
    "SaipError", "compiled", "decode_package", "encode_package", "split_pes", "PackageReader",
    "Personalisation", "personalise", "ProfileSummary", "summarise", "demo_template",
    "PeStatus", "encode_euicc_response", "decode_euicc_response", "validate_pe",
    "encode_iccid", "decode_iccid", "encode_imsi", "decode_imsi", "encode_msisdn_record", "decode_msisdn_record",
    "encode_pin", "encode_puk",
    "PE_OK", "PE_NOT_SUPPORTED", "MEMORY_FAILURE", "BAD_VALUES", "NOT_ENOUGH_MEMORY", "INVALID_REQUEST_FORMAT",
    "INVALID_PARAMETER", "RUNTIME_NOT_SUPPORTED", "LIB_NOT_SUPPORTED", "TEMPLATE_NOT_SUPPORTED",
    "FEATURE_NOT_SUPPORTED", "PIN_CODE_MISSING", "UNSUPPORTED_PROFILE_VERSION",
]

MODULE_PATH = Path(__file__).with_name("PEDefinitions.asn")

# PEStatus.status (TCA v3.3.1, EUICCResponse). ISO 7816 status words may also be reported, as 0x6000-0x6FFF and
# 0x9000-0x9FFF; 0xA000-0xFFFF are proprietary.
PE_OK = 0
PE_NOT_SUPPORTED = 1
MEMORY_FAILURE = 2
BAD_VALUES = 3
NOT_ENOUGH_MEMORY = 4
INVALID_REQUEST_FORMAT = 5
INVALID_PARAMETER = 6
RUNTIME_NOT_SUPPORTED = 7
LIB_NOT_SUPPORTED = 8
TEMPLATE_NOT_SUPPORTED = 9
FEATURE_NOT_SUPPORTED = 10
PIN_CODE_MISSING = 11
UNSUPPORTED_PROFILE_VERSION = 31

# The highest ProfileHeader major-version whose structure our module knows (TCA v3.x; v2.x packages decode too).
SUPPORTED_MAJOR_VERSION = 3

# Template OIDs of the TCA specification (tca(143) euicc-profile(1) templates(2) n).
TEMPLATE_MF = "2.23.143.1.2.1"
TEMPLATE_USIM = "2.23.143.1.2.4"
TEMPLATE_OPT_USIM = "2.23.143.1.2.5"

# A PE larger than this is refused by PackageReader with not-enough-memory: the card would have to buffer it whole.
DEFAULT_MAX_PE_SIZE = 1 << 20


class SaipError(ValueError):
    """A profile package problem, with the ``PEStatus`` status code that reports it (and, when known, the
    identification number of the PE concerned)."""

    def __init__(self, status: int, message: str, *, identification: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.identification = identification

    def pe_status(self) -> PeStatus:
        return PeStatus(self.status, identification=self.identification)


# --- the compiled module -------------------------------------------------------------------------------------------

_compile_lock = threading.Lock()
_compiled: Any = None


def compiled() -> Any:
    """The asn1tools DER compilation of ``PEDefinitions.asn``, compiled on first use (about 0.5 s) and then cached."""
    global _compiled
    if _compiled is None:
        with _compile_lock:
            if _compiled is None:
                _compiled = asn1tools.compile_files(str(MODULE_PATH), "der")
    return _compiled


# --- outer TLVs ----------------------------------------------------------------------------------------------------


def _outer_header(buf: bytes | bytearray, off: int) -> tuple[int, int] | None:
    """(header length, content length) of the PE TLV starting at ``off``, or None while ``buf`` does not yet hold
    the whole tag and length. Only the outer TLV is looked at.

    A PE is a context-specific, constructed tag ('A0'-'BF', or 'BF' + more tag bytes from [31] on). The length must
    be definite (DER), on at most 4 bytes. Lengths are not checked for minimal encoding: that is the decoder's job.
    keys.tlv is not used: it is GP BER-TLV with values up to 65535 bytes, and a PE-Application may be larger.
    """
    end = len(buf)
    if off >= end:
        return None
    first = buf[off]
    if first & 0xE0 != 0xA0:
        raise SaipError(INVALID_REQUEST_FORMAT, f"byte {off}: tag {first:02X} is not a ProfileElement "
                                                "(context-specific, constructed)")
    pos = off + 1
    if first & 0x1F == 0x1F:
        for _ in range(3):
            if pos >= end:
                return None
            byte = buf[pos]
            pos += 1
            if byte & 0x80 == 0:
                break
        else:
            raise SaipError(INVALID_REQUEST_FORMAT, f"byte {off}: tag too long for a ProfileElement")
    if pos >= end:
        return None
    length = buf[pos]
    pos += 1
    if length == 0x80:
        raise SaipError(INVALID_REQUEST_FORMAT, f"byte {off}: indefinite length is not DER")
    if length > 0x80:
        count = length & 0x7F
        if count > 4:
            raise SaipError(INVALID_REQUEST_FORMAT, f"byte {off}: length field of {count} bytes")
        if pos + count > end:
            return None
        length = int.from_bytes(buf[pos:pos + count], "big")
        pos += count
    return pos - off, length


def split_pes(der: bytes) -> list[bytes]:
    """The raw DER of each PE of a package; SaipError (invalid-request-format) for a truncated or foreign TLV."""
    pes: list[bytes] = []
    off = 0
    while off < len(der):
        header = _outer_header(der, off)
        if header is None:
            raise SaipError(INVALID_REQUEST_FORMAT, f"byte {off}: package truncated inside a PE header")
        total = header[0] + header[1]
        if off + total > len(der):
            raise SaipError(INVALID_REQUEST_FORMAT,
                            f"byte {off}: PE of {total} bytes, only {len(der) - off} left: package truncated")
        pes.append(bytes(der[off:off + total]))
        off += total
    return pes


def _tag_number(raw_pe: bytes) -> int:
    if raw_pe[0] & 0x1F != 0x1F:
        return raw_pe[0] & 0x1F
    number = 0
    for byte in raw_pe[1:4]:
        number = (number << 7) | (byte & 0x7F)
        if byte & 0x80 == 0:
            break
    return number


class PackageReader:
    """Cuts complete PEs out of a package that arrives in pieces of any size (the card side of ES8 download).

    ``feed`` returns the raw DER of every PE completed by the new bytes, in order; the rest waits in a buffer.
    A foreign tag or a bad length raises SaipError at once (invalid-request-format); a PE announced larger than
    ``max_pe_size`` raises not-enough-memory. ``state()`` / ``from_state()`` carry the buffer across SMS as JSON.
    """

    def __init__(self, *, max_pe_size: int = DEFAULT_MAX_PE_SIZE) -> None:
        self.max_pe_size = max_pe_size
        self._buffer = bytearray()
        self._consumed = 0      # bytes of whole PEs handed out so far
        self._count = 0         # PEs handed out so far

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        complete: list[bytes] = []
        while True:
            header = _outer_header(self._buffer, 0)
            if header is None:
                break
            total = header[0] + header[1]
            if total > self.max_pe_size:
                raise SaipError(NOT_ENOUGH_MEMORY,
                                f"PE {self._count + 1} announces {total} bytes, more than {self.max_pe_size}")
            if len(self._buffer) < total:
                break
            complete.append(bytes(self._buffer[:total]))
            del self._buffer[:total]
            self._consumed += total
            self._count += 1
        return complete

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole PE."""
        return len(self._buffer)

    @property
    def consumed(self) -> int:
        return self._consumed

    @property
    def count(self) -> int:
        return self._count

    def state(self) -> dict:
        return {"buffer": self._buffer.hex(), "consumed": self._consumed, "count": self._count,
                "max_pe_size": self.max_pe_size}

    @classmethod
    def from_state(cls, state: dict) -> PackageReader:
        reader = cls(max_pe_size=int(state.get("max_pe_size", DEFAULT_MAX_PE_SIZE)))
        reader._buffer = bytearray(bytes.fromhex(state.get("buffer", "")))
        reader._consumed = int(state.get("consumed", 0))
        reader._count = int(state.get("count", 0))
        return reader


# --- decoding and encoding PEs -------------------------------------------------------------------------------------


def _has_unknown_alternative(value: Any) -> bool:
    """True when asn1tools met a CHOICE alternative it does not know somewhere inside ``value``."""
    if isinstance(value, tuple):
        if len(value) == 2 and value[0] is None:
            return True
        return any(_has_unknown_alternative(v) for v in value)
    if isinstance(value, dict):
        return any(_has_unknown_alternative(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_unknown_alternative(v) for v in value)
    return False


def _identification(value: Any) -> int | None:
    """PEHeader.identification of a decoded PE (its header field is named '<pe>-header' or '<pe>-Header')."""
    if isinstance(value, dict):
        for key, field in value.items():
            if key.lower().endswith("-header") and isinstance(field, dict):
                ident = field.get("identification")
                return ident if isinstance(ident, int) else None
    return None


def _decode_lenient(raw_pe: bytes) -> tuple[str | None, Any]:
    """Decode one PE TLV; the name is None for a PE type we do not know. SaipError(5) when it does not decode."""
    try:
        name, value = compiled().decode("ProfileElement", raw_pe)
    except Exception as exc:  # asn1tools raises DecodeError, but also IndexError/UnicodeDecodeError on garbage
        raise SaipError(INVALID_REQUEST_FORMAT, f"PE with tag [{_tag_number(raw_pe)}] does not decode: {exc}") from exc
    return name, value


def _decode_strict(raw_pe: bytes, index: int) -> tuple[str, dict]:
    name, value = _decode_lenient(raw_pe)
    if name is None:
        raise SaipError(PE_NOT_SUPPORTED, f"PE {index}: tag [{_tag_number(raw_pe)}] is not a PE type we support")
    if _has_unknown_alternative(value):
        raise SaipError(FEATURE_NOT_SUPPORTED, f"PE {index} ({name}) holds a CHOICE alternative we do not know",
                        identification=_identification(value))
    return name, value


def decode_package(der: bytes) -> list[tuple[str, dict]]:
    """``[(pe_name, value)]`` of a package. SaipError: invalid-request-format (5) when malformed, pe-not-supported
    (1) for a PE type our module does not cover, feature-not-supported (10) for an unknown alternative inside a PE."""
    return [_decode_strict(raw, i) for i, raw in enumerate(split_pes(der))]


_ZERO_SQN_INIT = [bytes(6)] * 32


def _encodable(name: str, value: dict) -> dict:
    if name == "akaParameter" and "sqnInit" in value:
        sqn = value["sqnInit"]
        if not isinstance(sqn, (list, tuple)) or list(sqn) == _ZERO_SQN_INIT:
            value = {k: v for k, v in value.items() if k != "sqnInit"}
    return value


def _encode_pe(name: str, value: dict) -> bytes:
    try:
        return compiled().encode("ProfileElement", (name, _encodable(name, value)))
    except Exception as exc:
        raise SaipError(BAD_VALUES, f"PE {name} does not encode: {exc}",
                        identification=_identification(value)) from exc


def encode_package(pes: list[tuple[str, dict]]) -> bytes:
    """The DER package of ``[(pe_name, value)]`` (see the module docstring for ``sqnInit``)."""
    return b"".join(_encode_pe(name, value) for name, value in pes)


def validate_pe(raw_pe: bytes) -> tuple[str, dict]:
    """The card's check of one PE (raw DER, as PackageReader hands it out): ``(pe_name, value)``, or SaipError with
    the status to report: 5 when it is not exactly one decodable PE, 1 for a PE type we do not support, 10 for an
    unknown alternative inside it, 31 for a header whose major version is newer than our module."""
    pes = split_pes(raw_pe)
    if len(pes) != 1:
        raise SaipError(INVALID_REQUEST_FORMAT, f"expected one PE, got {len(pes)}")
    name, value = _decode_strict(pes[0], 0)
    if name == "header" and value["major-version"] > SUPPORTED_MAJOR_VERSION:
        raise SaipError(UNSUPPORTED_PROFILE_VERSION,
                        f"profile package version {value['major-version']}.{value['minor-version']} "
                        f"is newer than {SUPPORTED_MAJOR_VERSION}.x")
    return name, value


# --- ICCID, IMSI, MSISDN, PIN codecs -------------------------------------------------------------------------------


def _digits(value: str, low: int, high: int, what: str) -> str:
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or not low <= len(value) <= high:
        span = f"{low}" if low == high else f"{low}..{high}"
        raise SaipError(INVALID_PARAMETER, f"{what} must be {span} digits, not {value!r}")
    return value


def _nibbles_to_bytes(nibbles: list[int], swap: bool) -> bytes:
    if swap:  # first digit in the low nibble (TS 102 221 / TS 31.102 BCD)
        return bytes(nibbles[i] | (nibbles[i + 1] << 4) for i in range(0, len(nibbles), 2))
    return bytes((nibbles[i] << 4) | nibbles[i + 1] for i in range(0, len(nibbles), 2))


def _bytes_to_nibbles(raw: bytes, swap: bool) -> list[int]:
    if swap:
        return [n for b in raw for n in (b & 0x0F, b >> 4)]
    return [n for b in raw for n in (b >> 4, b & 0x0F)]


def _digits_from_nibbles(nibbles: list[int], what: str) -> str:
    while nibbles and nibbles[-1] == 0xF:
        nibbles = nibbles[:-1]
    if not nibbles or any(n > 9 for n in nibbles):
        raise SaipError(BAD_VALUES, f"{what} is not 'F'-filled BCD digits")
    return "".join(str(n) for n in nibbles)


def encode_iccid(iccid: str, *, swap: bool = True) -> bytes:
    """10 bytes of BCD, 'F'-filled: nibbles swapped for EF.ICCID (TS 102 221 §13.2), in reading order for
    ProfileHeader.iccid (``swap=False``)."""
    digits = _digits(iccid, 19, 20, "ICCID")
    nibbles = [int(d) for d in digits] + [0xF] * (20 - len(digits))
    return _nibbles_to_bytes(nibbles, swap)


def decode_iccid(raw: bytes, *, swap: bool = True) -> str:
    if len(raw) != 10:
        raise SaipError(BAD_VALUES, f"ICCID must be 10 bytes, not {len(raw)}")
    return _digits_from_nibbles(_bytes_to_nibbles(raw, swap), "ICCID")


_IMSI_TYPE = 0x1  # identity type 'IMSI' in the first nibble, bit 4 = odd number of digits (TS 24.008 §10.5.1.4)
EF_IMSI_SIZE = 9


def encode_imsi(imsi: str) -> bytes:
    """EF.IMSI content (TS 31.102 §4.2.2 / TS 51.011 §10.3.2): length byte, then the parity/type nibble and the
    digits as swapped BCD, 'F'-filled; padded with 'FF' to the 9 bytes of the file."""
    digits = _digits(imsi, 6, 15, "IMSI")
    parity = 0x8 if len(digits) % 2 else 0x0
    nibbles = [parity | _IMSI_TYPE] + [int(d) for d in digits]
    if len(nibbles) % 2:
        nibbles.append(0xF)
    body = _nibbles_to_bytes(nibbles, swap=True)
    return (bytes([len(body)]) + body).ljust(EF_IMSI_SIZE, b"\xff")


def decode_imsi(raw: bytes) -> str:
    if not raw or not 1 <= raw[0] <= 8 or len(raw) < 1 + raw[0]:
        raise SaipError(BAD_VALUES, f"EF.IMSI {raw.hex().upper()} has no valid length byte")
    nibbles = _bytes_to_nibbles(raw[1:1 + raw[0]], swap=True)
    if nibbles[0] & 0x7 != _IMSI_TYPE:
        raise SaipError(BAD_VALUES, f"EF.IMSI {raw.hex().upper()}: identity type is not IMSI")
    digits = _digits_from_nibbles(nibbles[1:], "IMSI")
    if (len(digits) % 2 == 1) != bool(nibbles[0] & 0x8):
        raise SaipError(BAD_VALUES, f"EF.IMSI {raw.hex().upper()}: parity does not match the digits")
    return digits


# EF.MSISDN record (TS 31.102 §4.2.26, same layout as EF.ADN, TS 51.011 §10.5.1): X bytes alpha identifier, then
# 14 bytes: BCD length, TON/NPI, 10 bytes of dialling number, capability/configuration id, extension record id.
_MSISDN_TAIL = 14
MSISDN_RECORD_LENGTH = 28   # X = 14: used when a template leaves EF.MSISDN's record length to the TCA template
TON_NPI_INTERNATIONAL = 0x91


def encode_msisdn_record(msisdn: str | None, record_length: int = MSISDN_RECORD_LENGTH, *,
                         ton_npi: int = TON_NPI_INTERNATIONAL) -> bytes:
    """One EF.MSISDN record; ``msisdn`` None gives an empty ('FF') record. SGP.02 MSISDNs are international numbers
    written without '+', hence TON/NPI '91' by default."""
    if record_length < _MSISDN_TAIL:
        raise SaipError(INVALID_PARAMETER, f"EF.MSISDN record length {record_length} < {_MSISDN_TAIL}")
    if msisdn is None:
        return b"\xff" * record_length
    digits = _digits(msisdn, 1, 20, "MSISDN")
    nibbles = [int(d) for d in digits] + ([0xF] if len(digits) % 2 else [])
    number = _nibbles_to_bytes(nibbles, swap=True)
    tail = bytes([1 + len(number), ton_npi]) + number.ljust(10, b"\xff") + b"\xff\xff"
    return b"\xff" * (record_length - _MSISDN_TAIL) + tail


def decode_msisdn_record(record: bytes) -> str | None:
    """The digits of an EF.MSISDN record, None when the record is empty."""
    if len(record) < _MSISDN_TAIL:
        raise SaipError(BAD_VALUES, f"EF.MSISDN record of {len(record)} bytes")
    tail = record[-_MSISDN_TAIL:]
    if tail[0] == 0xFF or tail[0] < 2:
        return None
    if tail[0] > 11:
        raise SaipError(BAD_VALUES, f"EF.MSISDN record: BCD length {tail[0]} > 11")
    return _digits_from_nibbles(_bytes_to_nibbles(tail[2:1 + tail[0]], swap=True), "MSISDN")


def encode_pin(pin: str) -> bytes:
    """A PIN value as TS 102 221 codes it (VERIFY PIN data): ASCII digits, padded with 'FF' to 8 bytes."""
    return _digits(pin, 4, 8, "PIN").encode("ascii").ljust(8, b"\xff")


def encode_puk(puk: str) -> bytes:
    return _digits(puk, 8, 8, "PUK").encode("ascii")


def _encode_adm(adm: str) -> bytes:
    """ADM1 given as 4-8 digits (coded like a PIN) or as 16 hex digits (the 8 bytes as they are)."""
    if isinstance(adm, str) and len(adm) == 16:
        try:
            return bytes.fromhex(adm)
        except ValueError:
            pass
    return encode_pin(adm)


# --- File content -------------------------------------------------------------------------------------------------
# A File (or the items after one createFCP) writes content from offset 0: fillFileContent writes and moves on,
# fillFileOffset skips bytes. These helpers see that content as (offset, bytes) segments.

_CONTENT_ITEMS = ("fillFileOffset", "fillFileContent")


def _segments(items: list[tuple[str, Any]]) -> list[tuple[int, bytes]]:
    position, segments = 0, []
    for kind, value in items:
        if kind == "fillFileOffset":
            position += value
        elif kind == "fillFileContent":
            segments.append((position, bytes(value)))
            position += len(value)
    return segments


def _content_items(segments: list[tuple[int, bytes]]) -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    position = 0
    for start, data in sorted(segments):
        gap = start - position
        while gap > 0:
            step = min(gap, 0xFFFF)  # fillFileOffset is a UInt16
            items.append(("fillFileOffset", step))
            gap -= step
        items.append(("fillFileContent", data))
        position = start + len(data)
    return items


def _patch_segments(segments: list[tuple[int, bytes]], offset: int, data: bytes) -> list[tuple[int, bytes]]:
    end = offset + len(data)
    patched = []
    for start, chunk in segments:
        stop = start + len(chunk)
        if stop <= offset or start >= end:
            patched.append((start, chunk))
            continue
        if start < offset:
            patched.append((start, chunk[:offset - start]))
        if stop > end:
            patched.append((end, chunk[end - start:]))
    patched.append((offset, data))
    return patched


def _patched_file(items: list[tuple[str, Any]], offset: int, data: bytes) -> list[tuple[str, Any]]:
    """``items`` (one File) with ``data`` written at ``offset``; non-content items keep their place."""
    first = next((i for i, (kind, _) in enumerate(items) if kind in _CONTENT_ITEMS), len(items))
    head = items[:first]
    rest = [item for item in items[first:] if item[0] not in _CONTENT_ITEMS]
    content = [item for item in items[first:] if item[0] in _CONTENT_ITEMS]
    return head + _content_items(_patch_segments(_segments(content), offset, data)) + rest


def _read_content(items: list[tuple[str, Any]], offset: int, length: int) -> bytes | None:
    """``length`` bytes at ``offset``, None when the package does not write all of them."""
    buffer: dict[int, int] = {}
    for start, data in _segments(items):
        for i, byte in enumerate(data):
            buffer[start + i] = byte
    if any(offset + i not in buffer for i in range(length)):
        return None
    return bytes(buffer[offset + i] for i in range(length))


def _fcp(items: list[tuple[str, Any]]) -> dict | None:
    return next((value for kind, value in items if kind in ("fileDescriptor", "createFCP")), None)


def _record_length(fcp: dict | None) -> int | None:
    """Record length of a linear fixed / cyclic EF from its file descriptor (TS 102 221 §11.1.1.4.3)."""
    descriptor = (fcp or {}).get("fileDescriptor")
    if descriptor and len(descriptor) >= 4 and descriptor[0] & 0x07 in (2, 6):
        return int.from_bytes(descriptor[2:4], "big")
    return None


# --- locating the files personalisation writes ---------------------------------------------------------------------

_FID_MSISDN = b"\x6f\x40"


class _FileRef:
    """One EF inside a decoded PE: either a whole File field or the items after a createFCP in a GFM command."""

    def __init__(self, pe_index: int, get_items, set_items) -> None:
        self.pe_index = pe_index
        self._get, self._set = get_items, set_items

    @property
    def items(self) -> list[tuple[str, Any]]:
        return self._get()

    def write(self, offset: int, data: bytes) -> None:
        self._set(_patched_file(self._get(), offset, data))

    def read(self, offset: int, length: int) -> bytes | None:
        return _read_content(self._get(), offset, length)


def _field_ref(pes: list, index: int, field: str) -> _FileRef:
    value = pes[index][1]
    return _FileRef(index, lambda: value[field], lambda items: value.__setitem__(field, items))


def _file_refs(pes: list, pe_names: tuple[str, ...], field: str) -> list[_FileRef]:
    return [_field_ref(pes, i, field) for i, (name, value) in enumerate(pes)
            if name in pe_names and isinstance(value, dict) and field in value]


def _usim_adf_ids(pes: list) -> set[bytes]:
    """Temporary file IDs the package gives ADF.USIM (filePath in a GFM PE names an ADF by it)."""
    ids = set()
    for name, value in pes:
        if name in ("usim", "iot") and isinstance(value, dict):
            fcp = _fcp(value.get("adf-usim") or [])
            if fcp and fcp.get("fileID"):
                ids.add(bytes(fcp["fileID"]))
    return ids


def _gfm_msisdn_refs(pes: list) -> list[_FileRef]:
    """EF.MSISDN created by a genericFileManagement PE directly under ADF.USIM."""
    adf_ids = _usim_adf_ids(pes)
    refs = []
    for i, (name, value) in enumerate(pes):
        if name != "genericFileManagement":
            continue
        for command in value["fileManagementCMD"]:
            path = None
            for k, (kind, item) in enumerate(command):
                if kind == "filePath":
                    path = bytes(item)
                elif kind == "createFCP" and item.get("fileID") == _FID_MSISDN and path in adf_ids:
                    end = next((j for j in range(k + 1, len(command)) if command[j][0] in ("filePath", "createFCP")),
                               len(command))
                    refs.append(_gfm_ref(i, command, k, end))
    return refs


def _gfm_ref(pe_index: int, command: list, create_at: int, end: int) -> _FileRef:
    span = {"end": end}

    def get_items():
        return command[create_at:span["end"]]

    def set_items(items):
        command[create_at:span["end"]] = items
        span["end"] = create_at + len(items)

    return _FileRef(pe_index, get_items, set_items)


def _msisdn_refs(pes: list) -> list[_FileRef]:
    return _file_refs(pes, ("opt-usim",), "ef-msisdn") + _gfm_msisdn_refs(pes)


# --- personalisation -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Personalisation:
    """One subscription's values (SaipError invalid-parameter when one is malformed)."""

    iccid: str                      # 19 or 20 digits
    imsi: str                       # 6..15 digits
    msisdn: str | None              # digits; written to EF.MSISDN when the template has that file
    ki: bytes                       # K, 16 bytes
    opc: bytes                      # OPc, 16 bytes
    pin1: str = "0000"
    puk1: str = "12345678"
    pin2: str = "0000"
    puk2: str = "12345678"
    adm1: str | None = None         # 4-8 digits, or 16 hex digits

    def __post_init__(self) -> None:
        _digits(self.iccid, 19, 20, "ICCID")
        _digits(self.imsi, 6, 15, "IMSI")
        if self.msisdn is not None:
            _digits(self.msisdn, 1, 20, "MSISDN")
        for name in ("ki", "opc"):
            value = getattr(self, name)
            if not isinstance(value, (bytes, bytearray)) or len(value) != 16:
                raise SaipError(INVALID_PARAMETER, f"{name} must be 16 bytes")
        for pin in (self.pin1, self.pin2):
            encode_pin(pin)
        for puk in (self.puk1, self.puk2):
            encode_puk(puk)
        if self.adm1 is not None:
            _encode_adm(self.adm1)


# TS 102 221 §9.5.1 key references written by personalise().
_PIN1, _PIN2, _ADM1 = 1, 129, 10
_PUK1, _PUK2 = 1, 129


def personalise(template: bytes, p: Personalisation, *, pol1: bytes | None = None,
                profile_type: str | None = None) -> bytes:
    """``template`` with one subscription written in:

    - ICCID: header.iccid (reading order) and EF.ICCID of the MF (swapped nibbles), 'F'-filled;
    - IMSI: EF.IMSI of ADF.USIM (and of a PE-IoT);
    - MSISDN: record 1 of EF.MSISDN (in opt-usim, or created by a genericFileManagement PE under ADF.USIM), when the
      template has that file; otherwise ignored;
    - K and OPc: the first akaParameter with its own algorithm parameters;
    - PINs and PUKs in every pinCodes / pukCodes PE: PIN1 (key reference 01), PIN2 (81), ADM1 (0A, when given),
      PUK1 (01), PUK2 (81);
    - header.pol and header.profileType when given.

    Every other PE is copied as it is. SaipError when the template lacks the header, EF.ICCID, EF.IMSI or an
    akaParameter (bad-values), or when a PE to change does not re-encode to its own bytes.
    """
    if not isinstance(p, Personalisation):
        raise SaipError(INVALID_PARAMETER, "personalise() needs a Personalisation")
    raws = split_pes(template)
    pes = [_decode_lenient(raw) for raw in raws]
    if not pes or pes[0][0] != "header":
        raise SaipError(INVALID_REQUEST_FORMAT, "the template does not start with a header PE")
    changed: set[int] = set()

    def change(index: int) -> dict:
        """The value of PE ``index`` to modify, after checking that re-encoding it will not alter anything else."""
        if index not in changed:
            name, value = pes[index]
            if _has_unknown_alternative(value):
                raise SaipError(FEATURE_NOT_SUPPORTED,
                                f"PE {index} ({name}) holds a CHOICE alternative we do not know: cannot personalise it",
                                identification=_identification(value))
            if _encode_pe(name, value) != raws[index]:
                raise SaipError(BAD_VALUES, f"PE {index} ({name}) does not re-encode to its own bytes (not DER, or "
                                            "fields our module does not know); refusing to personalise it",
                                identification=_identification(value))
            changed.add(index)
        return pes[index][1]

    header = change(0)
    header["iccid"] = encode_iccid(p.iccid, swap=False)
    if pol1 is not None:
        header["pol"] = bytes(pol1)
    if profile_type is not None:
        if not 1 <= len(profile_type) <= 100:
            raise SaipError(INVALID_PARAMETER, "profileType must be 1..100 characters")
        header["profileType"] = profile_type

    _write_file(pes, change, _file_refs(pes, ("mf", "iot"), "ef-iccid"), encode_iccid(p.iccid), "EF.ICCID")
    _write_file(pes, change, _file_refs(pes, ("usim", "iot"), "ef-imsi"), encode_imsi(p.imsi), "EF.IMSI")
    if p.msisdn is not None:
        for ref in _msisdn_refs(pes):
            change(ref.pe_index)
            length = _record_length(_fcp(ref.items)) or MSISDN_RECORD_LENGTH
            ref.write(0, encode_msisdn_record(p.msisdn, length))

    aka = next((i for i, (name, value) in enumerate(pes)
                if name == "akaParameter" and value["algoConfiguration"][0] == "algoParameter"), None)
    if aka is None:
        raise SaipError(BAD_VALUES, "the template has no akaParameter with algorithm parameters")
    algo = change(aka)["algoConfiguration"][1]
    algo["key"], algo["opc"] = bytes(p.ki), bytes(p.opc)

    pins = {_PIN1: encode_pin(p.pin1), _PIN2: encode_pin(p.pin2)}
    if p.adm1 is not None:
        pins[_ADM1] = _encode_adm(p.adm1)
    for i, (name, value) in enumerate(pes):
        if name == "pinCodes" and value["pinCodes"][0] == "pinconfig":
            if any(c["keyReference"] in pins for c in value["pinCodes"][1]):
                for config in change(i)["pinCodes"][1]:
                    if config["keyReference"] in pins:
                        config["pinValue"] = pins[config["keyReference"]]
    puks = {_PUK1: encode_puk(p.puk1), _PUK2: encode_puk(p.puk2)}
    for i, (name, value) in enumerate(pes):
        if name == "pukCodes" and any(c["keyReference"] in puks for c in value["pukCodes"]):
            for config in change(i)["pukCodes"]:
                if config["keyReference"] in puks:
                    config["pukValue"] = puks[config["keyReference"]]

    return b"".join(_encode_pe(*pes[i]) if i in changed else raw for i, raw in enumerate(raws))


def _write_file(pes: list, change, refs: list[_FileRef], content: bytes, what: str) -> None:
    if not refs:
        raise SaipError(BAD_VALUES, f"the template has no {what}")
    for ref in refs:
        change(ref.pe_index)
        ref.write(0, content)


# --- summary -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileSummary:
    iccid: str
    imsi: str | None
    msisdn: str | None
    pol1: bytes | None
    profile_type: str | None
    pe_names: tuple[str, ...]
    has_end: bool
    size: int


def summarise(der: bytes, *, require_end: bool = True) -> ProfileSummary:
    """What a package holds. SaipError when it is malformed, does not start with the header, or (unless
    ``require_end`` is False) does not end with the end PE; an end PE anywhere but last is always refused."""
    pes = decode_package(der)
    names = tuple(name for name, _ in pes)
    if not pes or names[0] != "header":
        raise SaipError(INVALID_REQUEST_FORMAT, "the package does not start with a header PE")
    if "end" in names[:-1] or (require_end and names[-1] != "end"):
        raise SaipError(INVALID_REQUEST_FORMAT, "the package does not end with (only) one end PE")
    header = pes[0][1]
    imsi = msisdn = None
    for ref in _file_refs(pes, ("usim", "iot"), "ef-imsi"):
        raw = ref.read(0, EF_IMSI_SIZE)
        if raw is not None:
            imsi = decode_imsi(raw)
            break
    for ref in _msisdn_refs(pes):
        length = _record_length(_fcp(ref.items)) or MSISDN_RECORD_LENGTH
        record = ref.read(0, length)
        if record is not None:
            msisdn = decode_msisdn_record(record)
            break
    return ProfileSummary(
        iccid=decode_iccid(header["iccid"], swap=False), imsi=imsi, msisdn=msisdn, pol1=header.get("pol"),
        profile_type=header.get("profileType"), pe_names=names, has_end=names[-1] == "end", size=len(der))


# --- the card's answer ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeStatus:
    """One PEStatus: ``identification`` is the PE's PEHeader.identification, ``offset`` a position inside it."""

    status: int
    identification: int | None = None
    additional: int | None = None
    offset: int | None = None

    def __post_init__(self) -> None:
        for name, value, high in (("status", self.status, 0xFFFF), ("identification", self.identification, 32767),
                                  ("additional", self.additional, 255), ("offset", self.offset, 2**31 - 1)):
            if value is not None and (not isinstance(value, int) or not 0 <= value <= high):
                raise SaipError(INVALID_PARAMETER, f"PEStatus {name} {value!r} out of range 0..{high}")


def encode_euicc_response(statuses: list[PeStatus], aborted: bool = False, message: str | None = None) -> bytes:
    value: dict[str, Any] = {"peStatus": []}
    for s in statuses:
        item: dict[str, Any] = {"status": s.status}
        for key, field in (("identification", s.identification), ("additional-information", s.additional),
                           ("offset", s.offset)):
            if field is not None:
                item[key] = field
        value["peStatus"].append(item)
    if aborted:
        value["profileInstallationAborted"] = None
    if message is not None:
        if not 2 <= len(message) <= 64:
            raise SaipError(INVALID_PARAMETER, "statusMessage must be 2..64 characters")
        value["statusMessage"] = message
    return compiled().encode("EUICCResponse", value)


def decode_euicc_response(der: bytes) -> tuple[list[PeStatus], bool, str | None]:
    try:
        value, length = compiled().decode_with_length("EUICCResponse", der)
        if length != len(der):
            raise ValueError(f"{len(der) - length} bytes after the EUICCResponse")
        statuses = [PeStatus(s["status"], s.get("identification"), s.get("additional-information"), s.get("offset"))
                    for s in value["peStatus"]]
    except Exception as exc:
        raise SaipError(INVALID_REQUEST_FORMAT, f"EUICCResponse does not decode: {exc}") from exc
    return statuses, "profileInstallationAborted" in value, value.get("statusMessage")


# --- demo template -------------------------------------------------------------------------------------------------
# esx's own small template: MF, USIM (+ EF.MSISDN in an opt-usim PE), PIN1/PIN2/ADM1, PUK1/PUK2, Milenage with
# placeholder K/OPc, an MNO-SD with a placeholder SCP80 key set. Values that personalise() replaces are placeholders.

DEMO_USIM_AID = bytes.fromhex("A0000000871002FFFFFFFF8900000100")   # RID A000000087, app code 1002 = USIM
DEMO_USIM_ADF_ID = b"\x7f\xf1"                                       # temporary file ID of ADF.USIM
DEMO_ICCID = "8900000000000000000"
DEMO_IMSI = "001010000000000"


def _size(n: int) -> bytes:
    """efFileSize: big-endian on the fewest bytes."""
    return n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")


def _transparent(size: int, arr_record: int, content: bytes | None = None) -> list:
    items: list = [("fileDescriptor", {"fileDescriptor": b"\x41\x21", "efFileSize": _size(size),
                                       "securityAttributesReferenced": bytes([arr_record])})]
    return items + ([("fillFileContent", content)] if content is not None else [])


def _linear_fixed(record_length: int, records: int, arr_record: int, content: list[bytes] = ()) -> list:
    descriptor = b"\x42\x21" + record_length.to_bytes(2, "big")
    items: list = [("fileDescriptor", {"fileDescriptor": descriptor, "efFileSize": _size(record_length * records),
                                       "securityAttributesReferenced": bytes([arr_record])})]
    return items + [("fillFileContent", r.ljust(record_length, b"\xff")) for r in content]


# EF.ARR rules in the expanded format (ISO/IEC 7816-4, TS 102 221 §9.2): '80' AM byte, then '90 00' (always) or an
# 'A4' CRT naming a key reference ('83') with usage qualifier '08' ('95'). AM bits for EFs: 01 read, 02 update,
# 08 deactivate, 10 activate, 40 delete; for DFs 7F covers every administrative operation.
_ALWAYS = b"\x90\x00"
_PIN1_CRT = bytes.fromhex("A406830101950108")
_ADM1_CRT = bytes.fromhex("A40683010A950108")
_ARR_DF_ADM = b"\x80\x01\x7f" + _ADM1_CRT
_ARR_READ_ALWAYS = b"\x80\x01\x01" + _ALWAYS + b"\x80\x01\x5a" + _ADM1_CRT
_ARR_READ_PIN1 = b"\x80\x01\x01" + _PIN1_CRT + b"\x80\x01\x5a" + _ADM1_CRT
_ARR_READ_UPDATE_PIN1 = b"\x80\x01\x03" + _PIN1_CRT + b"\x80\x01\x58" + _ADM1_CRT
_ARR_RECORD = 0x20


def _ust(services: set[int]) -> bytes:
    """EF.UST: service n is bit (n-1) % 8 of byte (n-1) // 8 (TS 31.102 §4.2.8)."""
    table = bytearray(4)
    for n in services:
        table[(n - 1) // 8] |= 1 << ((n - 1) % 8)
    return bytes(table)


def _pe_header(identification: int) -> dict:
    return {"mandated": None, "identification": identification}


def demo_template(*, with_msisdn: bool = True) -> bytes:
    """esx's own demo template (not taken from TS.48); see the comment above for what it holds."""
    ids = iter(range(1, 100))
    templates = [TEMPLATE_MF, TEMPLATE_USIM] + ([TEMPLATE_OPT_USIM] if with_msisdn else [])
    pes: list[tuple[str, dict]] = [("header", {
        "major-version": 2, "minor-version": 3, "profileType": "esx demo",
        "iccid": encode_iccid(DEMO_ICCID, swap=False),
        "eUICC-Mandatory-services": {"usim": None, "milenage": None},
        "eUICC-Mandatory-GFSTEList": templates,
    })]
    dir_record = b"\x61\x18\x4f\x10" + DEMO_USIM_AID + b"\x50\x04USIM"
    pes.append(("mf", {
        "mf-header": _pe_header(next(ids)), "templateID": TEMPLATE_MF,
        "mf": [("fileDescriptor", {"pinStatusTemplateDO": b"\x01\x0a",    # key references PIN1, ADM1
                                   "securityAttributesReferenced": b"\x01"})],
        "ef-iccid": _transparent(10, 2, encode_iccid(DEMO_ICCID)),
        "ef-dir": _linear_fixed(0x20, 1, 2, [dir_record]),
        "ef-arr": _linear_fixed(_ARR_RECORD, 4, 2, [_ARR_DF_ADM, _ARR_READ_ALWAYS, _ARR_READ_PIN1,
                                                     _ARR_READ_UPDATE_PIN1]),
    }))
    pes.append(("pukCodes", {"puk-Header": _pe_header(next(ids)), "pukCodes": [
        {"keyReference": _PUK1, "pukValue": encode_puk("12345678")},
        {"keyReference": _PUK2, "pukValue": encode_puk("12345678")},
    ]}))
    pes.append(("pinCodes", {"pin-Header": _pe_header(next(ids)), "pinCodes": ("pinconfig", [
        {"keyReference": _PIN1, "pinValue": encode_pin("0000"), "unblockingPINReference": _PUK1},
        {"keyReference": _ADM1, "pinValue": encode_pin("88888888")},
    ])}))
    usim_services = {19} | ({21} if with_msisdn else set())   # 19 SPN, 21 MSISDN
    pes.append(("usim", {
        "usim-header": _pe_header(next(ids)), "templateID": TEMPLATE_USIM,
        "adf-usim": [("fileDescriptor", {"fileID": DEMO_USIM_ADF_ID, "dfName": DEMO_USIM_AID,
                                         "securityAttributesReferenced": b"\x01",
                                         "pinStatusTemplateDO": b"\x01\x81\x0a"})],   # PIN1, PIN2, ADM1
        "ef-imsi": _transparent(EF_IMSI_SIZE, 2, encode_imsi(DEMO_IMSI)),
        "ef-arr": _linear_fixed(_ARR_RECORD, 3, 1, [_ARR_READ_ALWAYS, _ARR_READ_PIN1, _ARR_READ_UPDATE_PIN1]),
        "ef-ust": _transparent(4, 2, _ust(usim_services)),
        "ef-spn": _transparent(17, 2, b"\x00" + b"esx".ljust(16, b"\xff")),
        "ef-est": _transparent(1, 3, b"\x00"),
        "ef-acc": _transparent(2, 2, b"\x00\x01"),      # access class 0: the last digit of the placeholder IMSI
        "ef-ad": _transparent(4, 1, b"\x00\x00\x00\x02"),   # normal operation, 2-digit MNC
        "ef-ecc": [],                                    # the template's default
    }))
    if with_msisdn:
        pes.append(("opt-usim", {
            "optusim-header": _pe_header(next(ids)), "templateID": TEMPLATE_OPT_USIM,
            "ef-msisdn": _linear_fixed(MSISDN_RECORD_LENGTH, 2, 3),
        }))
    pes.append(("pinCodes", {"pin-Header": _pe_header(next(ids)), "pinCodes": ("pinconfig", [
        {"keyReference": _PIN2, "pinValue": encode_pin("0000"), "unblockingPINReference": _PUK2},
    ])}))
    pes.append(("akaParameter", {
        "aka-header": _pe_header(next(ids)),
        "algoConfiguration": ("algoParameter", {"algorithmID": 1, "algorithmOptions": b"\x00",
                                                "key": bytes(16), "opc": bytes(16)}),
    }))
    scp80_keys = [  # key set version 01, AES ('88'): KIc, KID, DEK by GP key usage qualifier
        {"keyUsageQualifier": usage, "keyIdentifier": bytes([kid]), "keyVersionNumber": b"\x01",
         "keyComponents": [{"keyType": b"\x88", "keyData": bytes([kid * 0x11]) * 16}]}
        for kid, usage in ((1, b"\x18"), (2, b"\x14"), (3, b"\x48"))
    ]
    pes.append(("securityDomain", {
        "sd-Header": _pe_header(next(ids)),
        "instance": {
            "applicationLoadPackageAID": bytes.fromhex("A0000001515350"),   # GP Security Domain package
            "classAID": bytes.fromhex("A000000151535041"),
            "instanceAID": bytes.fromhex("A000000151000000"),               # the ISD AID, taken by the MNO-SD
            "applicationPrivileges": b"\x80\xc0\x00",   # Security Domain, Trusted Path, Authorized Management
            "lifeCycleState": b"\x0f",                  # SECURED
            "applicationSpecificParametersC9": b"\x81\x02\x80\x00",   # GP SD install parameter '81' (SCP): SCP80
        },
        "keyList": scp80_keys,
    }))
    pes.append(("end", {"end-header": _pe_header(next(ids))}))
    return encode_package(pes)
