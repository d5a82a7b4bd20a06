"""SCP80 secured packets for SMS: ETSI TS 102 225 §5 with the SMS dialect of 3GPP TS 31.115.

Clause numbers of TS 31.115 are not given: they were not checked against the PDF (crypto-ota.md §3).

Theory of operation. The SM-SR and the simulated eUICC call the same functions from opposite ends: the server
builds a command with :func:`wrap_command`; the card reads its clear header with :func:`peek_command` (to find the
keyset from KIc/KID and the TAR), opens it with :func:`unwrap_command` and answers with :func:`wrap_response`; the
server checks that PoR with :func:`unwrap_response`. Nothing here keeps state: the counter belongs to the card (it
stores and checks it) and to the server (it allocates it).
Packets are the bytes after the user data header; ``ota.sms`` adds and strips the UDH ('70' CPI / '71' RPI).

Command packet (TS 102 225 §5.1, TS 31.115 command packet for SMS)::

    CPL(2) CHL(1) SPI(2) KIc(1) KID(1) TAR(3) | CNTR(5) PCNTR(1) CC(8) data padding
                                                `------ ciphered under KIc when SPI says so ------'

* CPL counts the octets after itself; CHL = 13 + length of the CC (TS 31.115: CHI is null for SMS).
* [verify] CPL is written in unciphered packets too. pySim leaves it out there (crypto-ota.md §3.2), yet its CC
  for such a packet verifies only with the CPL included, so the packet here is CPL + pySim's bytes (pinned in
  tests/ota/test_scp80.py::test_unciphered_command_keeps_cpl).
* Ciphering (TS 102 225 §5.1.2): CBC with an all-zero IV; the ciphered part is zero-padded to the block size and
  PCNTR holds the number of pad octets. Unciphered packets carry no padding (PCNTR = 0).
* CC (TS 102 225 §5.1.3): over CPL..PCNTR followed by the data and its padding, the CC field itself left out.
  AES: CMAC, leftmost 8 octets. 3DES: CBC-MAC with zero IV over the input zero-padded to 8 octets, last block;
  that padding is not sent.
* KIc/KID (TS 102 225 §5.1.2/§5.1.3): high nibble the KVN, low nibble the algorithm; the KIc/KID octets are written
  from the keyset even when the SPI asks for no ciphering or no CC (as the pySim vectors show).

Response packet (PoR; TS 102 225 §5.2, TS 31.115 response packet for SMS)::

    RPL(2) RHL(1) TAR(3) | CNTR(5) PCNTR(1) status(1) CC(8) data padding
                           `----------- ciphered when the command SPI says so -----------'

* RHL = 10 + length of the CC; RPL counts the octets after itself. CC and ciphering follow the PoR bits of the
  command's SPI (byte 2), with the command's keyset.
* [verify] The response CC also covers the user data header. The SMS response UDH is '02 71 00'
  (:data:`RESPONSE_UDH`), and that canonical 3-octet UDH is what goes into the CC here even when the PoR travels
  concatenated (whose first UDH also carries the '00' concatenation IE). Source: pySim's PoR vectors (real SJA5
  cards) verify only with '027100' prepended; the concatenated case is not covered by any public vector.
* [verify] A PoR whose RHL says "no CC" although the command asked for one is accepted only when its status is an
  error (TS 102 225: a card that cannot identify the security header answers unsecured, status '06'); the
  card side builds such a PoR with ``wrap_response(keyset, spi.unsecured_por(), ...)``.

Supported integrity: CC only. RC (CRC) and DS are refused: SGP.02 ES5 uses CC. Algorithms: AES (KIc/KID nibble 2,
128/192/256-bit keys), 2-key 3DES (nibble 5) and 3-key 3DES (nibble 9).
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass, replace

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import BlockCipherAlgorithm, Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

__all__ = [
    "PorStatus",
    "Scp80Error",
    "Spi",
    "SPI_SGP02",
    "SPI_NOTIFICATION",
    "Scp80Keyset",
    "CommandPacket",
    "ResponsePacket",
    "RESPONSE_UDH",
    "CC_LENGTH",
    "wrap_command",
    "peek_command",
    "unwrap_command",
    "wrap_response",
    "unwrap_response",
]

CC_LENGTH = 8
RESPONSE_UDH = bytes.fromhex("027100")  # UDHL=2, IEI '71' (RPI), IEDL=0: covered by the response CC
COUNTER_MAX = (1 << 40) - 1
_COMMAND_HEADER = 10  # CPL(2) CHL(1) SPI(2) KIc(1) KID(1) TAR(3): always in clear
_RESPONSE_HEADER = 6  # RPL(2) RHL(1) TAR(3): always in clear


class PorStatus(enum.IntEnum):
    """Response status codes (TS 102 225 §5.2 response status table, repeated in TS 31.115)."""

    POR_OK = 0x00
    RC_CC_DS_FAILED = 0x01
    CNTR_LOW = 0x02
    CNTR_HIGH = 0x03
    CNTR_BLOCKED = 0x04
    CIPHERING_ERROR = 0x05
    UNIDENTIFIED_SECURITY_ERROR = 0x06
    INSUFFICIENT_MEMORY = 0x07
    MORE_TIME_NEEDED = 0x08
    TAR_UNKNOWN = 0x09
    INSUFFICIENT_SECURITY_LEVEL = 0x0A
    RESPONSE_IN_SMS_SUBMIT = 0x0B
    RESPONSE_IN_USSD = 0x0C


class Scp80Error(Exception):
    """A secured packet failed a check; ``status`` is the PoR status code the card answers with."""

    def __init__(self, status: int, message: str = "") -> None:
        self.status = int(status)
        super().__init__(message or f"SCP80 status {self.status:02X}")

    def __reduce__(self):  # keep the exception picklable despite the extra constructor argument
        return (type(self), (self.status, self.args[0]))


# SPI field codes, TS 102 225 §5.1.1 (byte 1 b1-b2 / b4-b5, byte 2 b1-b2 / b3-b4).
_INTEGRITY = {"none": 0, "rc": 1, "cc": 2, "ds": 3}
_COUNTER = {"none": 0, "available": 1, "higher": 2, "plus_one": 3}
_POR = {"none": 0, "always": 1, "on_error": 2}  # '11' is reserved


def _name(table: dict[str, int], code: int, what: str) -> str:
    for name, value in table.items():
        if value == code:
            return name
    raise ValueError(f"reserved {what} code {code}")


@dataclass(frozen=True)
class Spi:
    """The two SPI octets as named fields. Reserved bits are written as 0 and ignored when read."""

    integrity: str = "cc"  # byte 1 b1-b2
    ciphered: bool = True  # byte 1 b3
    counter: str = "higher"  # byte 1 b4-b5
    por: str = "always"  # byte 2 b1-b2
    por_integrity: str = "cc"  # byte 2 b3-b4
    por_ciphered: bool = True  # byte 2 b5
    por_via_submit: bool = True  # byte 2 b6: PoR in SMS-SUBMIT rather than SMS-DELIVER-REPORT

    def __post_init__(self) -> None:
        for value, table, what in (
            (self.integrity, _INTEGRITY, "integrity"),
            (self.counter, _COUNTER, "counter"),
            (self.por, _POR, "por"),
            (self.por_integrity, _INTEGRITY, "por_integrity"),
        ):
            if value not in table:
                raise ValueError(f"SPI {what} must be one of {sorted(table)}, not {value!r}")

    def to_bytes(self) -> bytes:
        first = _INTEGRITY[self.integrity] | self.ciphered << 2 | _COUNTER[self.counter] << 3
        second = (
            _POR[self.por] | _INTEGRITY[self.por_integrity] << 2 | self.por_ciphered << 4 | self.por_via_submit << 5
        )
        return bytes([first, second])

    @classmethod
    def from_bytes(cls, b: bytes) -> Spi:
        if len(b) != 2:
            raise ValueError(f"SPI is 2 octets, got {len(b)}")
        first, second = b
        return cls(
            integrity=_name(_INTEGRITY, first & 3, "integrity"),
            ciphered=bool(first & 0x04),
            counter=_name(_COUNTER, first >> 3 & 3, "counter"),
            por=_name(_POR, second & 3, "PoR"),
            por_integrity=_name(_INTEGRITY, second >> 2 & 3, "PoR integrity"),
            por_ciphered=bool(second & 0x10),
            por_via_submit=bool(second & 0x20),
        )

    def unsecured_por(self) -> Spi:
        """This SPI with the PoR unciphered and without CC: the form of a PoR for an unidentified header."""
        return replace(self, por_integrity="none", por_ciphered=False)


SPI_SGP02 = Spi()  # '16 39': CC, ciphered, counter higher; PoR always, CC, ciphered, via SMS-SUBMIT
# Mobile-originated default notification: CC + ciphered, no counter, no PoR ('06 00'). SGP.02 requires counter 0
# with "no counter available" (sgp02-wire.md §6.2); the PoR bits are unused since no PoR is requested.
SPI_NOTIFICATION = Spi(
    integrity="cc", ciphered=True, counter="none", por="none", por_integrity="none", por_ciphered=False,
    por_via_submit=False,
)


# Algorithm nibbles of KIc (TS 102 225 §5.1.2) and of KID for a CC (§5.1.3.1); AES CBC and AES CMAC share 2.
_ALGORITHMS = {"aes": 0x2, "3des": 0x5, "3des3": 0x9}
_KEY_LENGTHS = {"aes": (16, 24, 32), "3des": (16,), "3des3": (24,)}


@dataclass(frozen=True)
class Scp80Keyset:
    """One SCP80 keyset: KVN, ciphering key (KIc key) and CC key (KID key)."""

    kvn: int
    enc: bytes
    mac: bytes
    algorithm: str = "aes"  # "aes" | "3des" (2-key) | "3des3" (3-key)

    def __post_init__(self) -> None:
        if not 1 <= self.kvn <= 15:
            raise ValueError(f"SCP80 KVN must be 1..15, not {self.kvn}")
        if self.algorithm not in _ALGORITHMS:
            raise ValueError(f"algorithm must be one of {sorted(_ALGORITHMS)}, not {self.algorithm!r}")
        for name, key in (("enc", self.enc), ("mac", self.mac)):
            if len(key) not in _KEY_LENGTHS[self.algorithm]:
                raise ValueError(f"{self.algorithm} {name} key of {len(key)} octets")

    @property
    def kic(self) -> int:
        return self.kvn << 4 | _ALGORITHMS[self.algorithm]

    @property
    def kid(self) -> int:
        return self.kvn << 4 | _ALGORITHMS[self.algorithm]

    @property
    def block_size(self) -> int:
        return 16 if self.algorithm == "aes" else 8


@dataclass(frozen=True)
class CommandPacket:
    spi: Spi
    kic: int
    kid: int
    tar: bytes
    counter: int
    data: bytes


@dataclass(frozen=True)
class ResponsePacket:
    tar: bytes
    counter: int
    status: int
    data: bytes


# --- primitives --------------------------------------------------------------------------------------------------


def _block_cipher(keyset: Scp80Keyset, key: bytes) -> BlockCipherAlgorithm:
    if keyset.algorithm == "aes":
        return algorithms.AES(key)
    # 2-key 3DES is K1 K2 K1; passing it as 24 octets avoids cryptography's deprecation warning for 16-octet keys.
    return TripleDES(key + key[:8] if len(key) == 16 else key)


def _cbc(keyset: Scp80Keyset, key: bytes, data: bytes, *, decrypt: bool = False) -> bytes:
    cipher = Cipher(_block_cipher(keyset, key), modes.CBC(bytes(keyset.block_size)))
    ctx = cipher.decryptor() if decrypt else cipher.encryptor()
    return ctx.update(data) + ctx.finalize()


def _cc(keyset: Scp80Keyset, data: bytes) -> bytes:
    """The 8-octet cryptographic checksum of ``data`` under the KID key (TS 102 225 §5.1.3.1)."""
    if keyset.algorithm == "aes":
        mac = CMAC(algorithms.AES(keyset.mac))
        mac.update(data)
        return mac.finalize()[:CC_LENGTH]
    padded = data + bytes(-len(data) % 8)
    return _cbc(keyset, keyset.mac, padded)[-CC_LENGTH:]


def _pad_length(keyset: Scp80Keyset, ciphered: bool, length: int) -> int:
    return -length % keyset.block_size if ciphered else 0


def _cc_length(integrity: str) -> int:
    if integrity == "cc":
        return CC_LENGTH
    if integrity == "none":
        return 0
    raise ValueError(f"integrity {integrity!r} is not supported (CC only)")


def _check_tar_counter(tar: bytes, counter: int) -> None:
    if len(tar) != 3:
        raise ValueError(f"TAR is 3 octets, got {len(tar)}")
    if not 0 <= counter <= COUNTER_MAX:
        raise ValueError(f"counter {counter} does not fit in 5 octets")


def _key_matches(identifier: int, keyset: Scp80Keyset) -> bool:
    # Algorithm nibble 0 means "known implicitly by both entities" (TS 102 225 §5.1.2).
    return identifier >> 4 == keyset.kvn and identifier & 0xF in (0, _ALGORITHMS[keyset.algorithm])


# --- command packets ---------------------------------------------------------------------------------------------


def wrap_command(keyset: Scp80Keyset, spi: Spi, tar: bytes, counter: int, data: bytes) -> bytes:
    """The command packet CPL..end (no UDH) carrying ``data`` to ``tar``, secured as ``spi`` says."""
    _check_tar_counter(tar, counter)
    cc_length = _cc_length(spi.integrity)
    pad = _pad_length(keyset, spi.ciphered, 6 + cc_length + len(data))
    padded = bytes(data) + bytes(pad)
    chl = 13 + cc_length
    header = bytes([chl]) + spi.to_bytes() + bytes([keyset.kic, keyset.kid]) + bytes(tar)
    cpl = (len(header) + 6 + cc_length + len(padded)).to_bytes(2, "big")
    counters = counter.to_bytes(5, "big") + bytes([pad])
    cc = _cc(keyset, cpl + header + counters + padded) if cc_length else b""
    secured = counters + cc + padded
    if spi.ciphered:
        secured = _cbc(keyset, keyset.enc, secured)
    return cpl + header + secured


def peek_command(packet: bytes) -> tuple[Spi, int, int, bytes]:
    """``(spi, kic, kid, tar)`` from the clear header, for the card to pick the keyset; 0x06 when malformed."""
    packet = bytes(packet)
    if len(packet) < _COMMAND_HEADER:
        raise Scp80Error(PorStatus.UNIDENTIFIED_SECURITY_ERROR, f"command packet of {len(packet)} octets")
    cpl = int.from_bytes(packet[:2], "big")
    if cpl != len(packet) - 2:
        raise Scp80Error(PorStatus.UNIDENTIFIED_SECURITY_ERROR, f"CPL {cpl} but {len(packet) - 2} octets follow")
    chl = packet[2]
    if chl < 13 or 3 + chl > len(packet):
        raise Scp80Error(PorStatus.UNIDENTIFIED_SECURITY_ERROR, f"CHL {chl} does not fit the packet")
    try:
        spi = Spi.from_bytes(packet[3:5])
    except ValueError as e:
        raise Scp80Error(PorStatus.UNIDENTIFIED_SECURITY_ERROR, f"SPI {packet[3:5].hex().upper()}: {e}") from None
    return spi, packet[5], packet[6], packet[7:10]


def unwrap_command(packet: bytes, keyset: Scp80Keyset) -> CommandPacket:
    """Decipher and check a command packet (CPL..end) with the card's ``keyset``.

    Raises :class:`Scp80Error` with 0x06 (header unusable, unsupported integrity, KIc/KID not naming ``keyset``),
    0x05 (ciphertext or padding count wrong) or 0x01 (CC mismatch). The counter is returned, not checked.
    """
    packet = bytes(packet)
    spi, kic, kid, tar = peek_command(packet)
    if spi.integrity not in ("none", "cc"):
        raise Scp80Error(PorStatus.UNIDENTIFIED_SECURITY_ERROR, f"integrity {spi.integrity!r} not supported")
    cc_length = _cc_length(spi.integrity)
    if packet[2] != 13 + cc_length:
        raise Scp80Error(PorStatus.UNIDENTIFIED_SECURITY_ERROR, f"CHL {packet[2]} does not match the SPI")
    if spi.ciphered and not _key_matches(kic, keyset):
        raise Scp80Error(PorStatus.UNIDENTIFIED_SECURITY_ERROR, f"KIc {kic:02X} does not name this keyset")
    if cc_length and not _key_matches(kid, keyset):
        raise Scp80Error(PorStatus.UNIDENTIFIED_SECURITY_ERROR, f"KID {kid:02X} does not name this keyset")

    secured = packet[_COMMAND_HEADER:]
    if spi.ciphered:
        if not secured or len(secured) % keyset.block_size:
            raise Scp80Error(PorStatus.CIPHERING_ERROR, f"ciphered part of {len(secured)} octets")
        secured = _cbc(keyset, keyset.enc, secured, decrypt=True)
    if len(secured) < 6 + cc_length:
        raise Scp80Error(PorStatus.UNIDENTIFIED_SECURITY_ERROR, "secured part shorter than CNTR, PCNTR and CC")
    counters, cc, padded = secured[:6], secured[6 : 6 + cc_length], secured[6 + cc_length :]
    if cc_length and not hmac.compare_digest(cc, _cc(keyset, packet[:_COMMAND_HEADER] + counters + padded)):
        raise Scp80Error(PorStatus.RC_CC_DS_FAILED, "command CC does not verify")
    pad = counters[5]
    if pad > len(padded) or (spi.ciphered and pad >= keyset.block_size):
        status = PorStatus.CIPHERING_ERROR if spi.ciphered else PorStatus.UNIDENTIFIED_SECURITY_ERROR
        raise Scp80Error(status, f"PCNTR {pad} with {len(padded)} octets of data")
    return CommandPacket(spi, kic, kid, tar, int.from_bytes(counters[:5], "big"), padded[: len(padded) - pad])


# --- response packets (PoR) --------------------------------------------------------------------------------------


def wrap_response(keyset: Scp80Keyset, command_spi: Spi, tar: bytes, counter: int, status: int, data: bytes) -> bytes:
    """The PoR RPL..end (no UDH), with CC and ciphering as the PoR bits of ``command_spi`` ask."""
    _check_tar_counter(tar, counter)
    if not 0 <= status <= 0xFF:
        raise ValueError(f"status {status} out of range")
    cc_length = _cc_length(command_spi.por_integrity)
    pad = _pad_length(keyset, command_spi.por_ciphered, 7 + cc_length + len(data))
    padded = bytes(data) + bytes(pad)
    rhl = 10 + cc_length
    head = (1 + rhl + len(padded)).to_bytes(2, "big") + bytes([rhl]) + bytes(tar)
    fields = counter.to_bytes(5, "big") + bytes([pad, status])
    cc = _cc(keyset, RESPONSE_UDH + head + fields + padded) if cc_length else b""
    secured = fields + cc + padded
    if command_spi.por_ciphered:
        secured = _cbc(keyset, keyset.enc, secured)
    return head + secured


def unwrap_response(packet: bytes, keyset: Scp80Keyset, command_spi: Spi) -> ResponsePacket:
    """Check and decipher a PoR (RPL..end, no UDH) answering a command sent with ``command_spi``.

    Raises :class:`Scp80Error` 0x01 when the CC does not verify, 0x05 for a bad ciphertext or padding count and
    0x06 for a malformed packet.
    """
    packet = bytes(packet)
    if len(packet) < _RESPONSE_HEADER:
        raise Scp80Error(PorStatus.UNIDENTIFIED_SECURITY_ERROR, f"response packet of {len(packet)} octets")
    rpl, rhl = int.from_bytes(packet[:2], "big"), packet[2]
    if rpl != len(packet) - 2:
        raise Scp80Error(PorStatus.UNIDENTIFIED_SECURITY_ERROR, f"RPL {rpl} but {len(packet) - 2} octets follow")
    cc_length = _cc_length(command_spi.por_integrity)
    ciphered = command_spi.por_ciphered
    if rhl != 10 + cc_length:
        plain = packet[_RESPONSE_HEADER:]
        # [verify] see the module docstring: an unsecured PoR is believed only when it reports an error.
        if rhl == 10 and cc_length and len(plain) >= 7 and plain[6] != PorStatus.POR_OK:
            cc_length, ciphered = 0, False
        else:
            raise Scp80Error(PorStatus.UNIDENTIFIED_SECURITY_ERROR, f"RHL {rhl} does not match the PoR SPI")

    head, secured = packet[:_RESPONSE_HEADER], packet[_RESPONSE_HEADER:]
    if ciphered:
        if not secured or len(secured) % keyset.block_size:
            raise Scp80Error(PorStatus.CIPHERING_ERROR, f"ciphered part of {len(secured)} octets")
        secured = _cbc(keyset, keyset.enc, secured, decrypt=True)
    if len(secured) < 7 + cc_length:
        raise Scp80Error(PorStatus.UNIDENTIFIED_SECURITY_ERROR, "secured part shorter than CNTR..status and CC")
    fields, cc, padded = secured[:7], secured[7 : 7 + cc_length], secured[7 + cc_length :]
    if cc_length and not hmac.compare_digest(cc, _cc(keyset, RESPONSE_UDH + head + fields + padded)):
        raise Scp80Error(PorStatus.RC_CC_DS_FAILED, "response CC does not verify")
    pad = fields[5]
    if pad > len(padded) or (ciphered and pad >= keyset.block_size):
        raise Scp80Error(PorStatus.CIPHERING_ERROR, f"PCNTR {pad} with {len(padded)} octets of data")
    return ResponsePacket(bytes(head[3:6]), int.from_bytes(fields[:5], "big"), fields[6], padded[: len(padded) - pad])


def aes_kcv(key: bytes) -> str:
    """GP key check value of an AES key (the EIS's Key/KCV): the first 3 bytes of AES-ECB(key, 16 x '01'), hex."""
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return (enc.update(b"\x01" * 16) + enc.finalize())[:3].hex().upper()
