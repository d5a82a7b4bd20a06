"""SCP03 primitives: GlobalPlatform Card Specification 2.3.1 Amendment D (Secure Channel Protocol '03').

Theory of operation. This module holds the stateless building blocks of SCP03; the session state machines that use
them live elsewhere (:mod:`keys.scp03t` for the TLV framing SGP.02 uses between the SM-DP and an ISD-P). Host and card
call the same functions.

* Static keys: Key-ENC, Key-MAC and Key-DEK, all AES keys of one length (16, 24 or 32 bytes). In SGP.02 they come out
  of the ISD-P key establishment (:mod:`keys.ecka`).
* Key derivation (Amd D §4.1.5; crypto-ota.md §2.1): NIST SP 800-108 KDF in counter mode with AES-CMAC as PRF. Each
  PRF input is ``11 x '00' || constant || '00' || L (2 bytes, in bits) || i (1 byte counter from 1) || context``,
  where the context of a session is ``host challenge || card challenge``. Derivation constants:
  ``'00'`` card cryptogram, ``'01'`` host cryptogram, ``'02'`` card challenge, ``'04'`` S-ENC (from Key-ENC),
  ``'06'`` S-MAC and ``'07'`` S-RMAC (both from Key-MAC).
* Cryptograms are 64-bit KDF outputs under S-MAC (S8 mode only: SGP.02 uses i = '70', whose bit 1 is 0).
* MACs are AES-CMAC; the protocol keeps the full 16-byte result as MAC chaining value and sends its first 8 bytes.
* C-ENC / R-ENC: ISO 9797-1 method 2 padding (``'80' 00..``) to the block size, AES-CBC with an ICV that is the
  encryption counter encrypted under S-ENC with AES-ECB; for responses the counter block has its first byte set to
  ``'80'``.

* Secure messaging on C-APDUs (Amd D §6.2.4-6.2.7), for a card end that checks what a host wrapped: the C-MAC of
  a command covers ``MCV || CLA INS P1 P2 Lc || data`` with bit '04' of CLA set and Lc counting the 8-byte MAC
  (:func:`command_mac`); the R-MAC of a response covers ``MCV || response data || SW`` under S-RMAC, the MCV being
  the C-MAC of the command answered (:func:`response_mac`). The encryption counter starts at 1 after EXTERNAL
  AUTHENTICATE and counts every command, with or without data.
* Pseudo-random card challenge (i = '70', bit '10'), :func:`pseudo_random_card_challenge`: the card derives its
  challenge from its sequence counter, so a host that knows the counter can prepare a whole session (INITIALIZE
  UPDATE, EXTERNAL AUTHENTICATE, wrapped commands) without reading the card first.

Checked against pySim's published SCP03 vectors (tests/keys/test_scp03.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

__all__ = [
    "StaticKeys",
    "SessionKeys",
    "AES_KEY_LENGTHS",
    "BLOCK",
    "CRYPTOGRAM_LENGTH",
    "MAC_LENGTH",
    "DERIVE_CARD_CRYPTOGRAM",
    "DERIVE_HOST_CRYPTOGRAM",
    "DERIVE_CARD_CHALLENGE",
    "DERIVE_S_ENC",
    "DERIVE_S_MAC",
    "DERIVE_S_RMAC",
    "kdf",
    "session_keys",
    "card_cryptogram",
    "host_cryptogram",
    "cmac",
    "pad80",
    "unpad80",
    "aes_cbc_encrypt",
    "aes_cbc_decrypt",
    "command_icv",
    "response_icv",
    "SCP_ID",
    "I_PSEUDO_RANDOM",
    "CLA_SECURE_MESSAGING",
    "LEVEL_C_MAC",
    "LEVEL_C_DECRYPTION",
    "LEVEL_R_MAC",
    "LEVEL_R_ENCRYPTION",
    "SEQUENCE_COUNTER_MAX",
    "pseudo_random_card_challenge",
    "initialize_update_response",
    "command_mac",
    "response_mac",
]

AES_KEY_LENGTHS = (16, 24, 32)
BLOCK = 16
CRYPTOGRAM_LENGTH = 8  # S8 mode
MAC_LENGTH = 8  # S8 mode: C-MAC and R-MAC are the first 8 bytes of the CMAC

# Derivation constants, Amd D Table 4-1.
DERIVE_CARD_CRYPTOGRAM = 0x00
DERIVE_HOST_CRYPTOGRAM = 0x01
DERIVE_CARD_CHALLENGE = 0x02
DERIVE_S_ENC = 0x04
DERIVE_S_MAC = 0x06
DERIVE_S_RMAC = 0x07

SCP_ID = 0x03
I_PSEUDO_RANDOM = 0x70  # SGP.02's i: pseudo-random card challenge ('10'), R-MAC and R-ENC ('60'), S8 mode
DIVERSIFICATION_DATA = bytes(10)  # key diversification data of the INITIALIZE UPDATE response: none
CLA_SECURE_MESSAGING = 0x04  # CLA bit of a command under secure messaging (GP CS 11.1.4)
# Security levels of EXTERNAL AUTHENTICATE P1 (Amd D Table 7-3), as bits.
LEVEL_C_MAC = 0x01
LEVEL_C_DECRYPTION = 0x02
LEVEL_R_MAC = 0x10
LEVEL_R_ENCRYPTION = 0x20
SEQUENCE_COUNTER_MAX = 0xFFFFFF  # 3 bytes; a key set whose counter reached it opens no more sessions


def _check_key(key: bytes, what: str) -> bytes:
    key = bytes(key)
    if len(key) not in AES_KEY_LENGTHS:
        raise ValueError(f"{what}: AES key of {len(key)} bytes (must be 16, 24 or 32)")
    return key


@dataclass(frozen=True)
class StaticKeys:
    """An SCP03 keyset: Key-ENC, Key-MAC and Key-DEK (AES, all the same length)."""

    enc: bytes
    mac: bytes
    dek: bytes

    def __post_init__(self) -> None:
        for name in ("enc", "mac", "dek"):
            object.__setattr__(self, name, _check_key(getattr(self, name), f"Key-{name.upper()}"))
        if not len(self.enc) == len(self.mac) == len(self.dek):
            raise ValueError("Key-ENC, Key-MAC and Key-DEK must have the same length")

    def __repr__(self) -> str:  # keys never go into logs by accident
        return f"StaticKeys(<AES-{len(self.enc) * 8}>)"

    def to_hex(self) -> dict[str, str]:
        return {"enc": self.enc.hex().upper(), "mac": self.mac.hex().upper(), "dek": self.dek.hex().upper()}

    @classmethod
    def from_hex(cls, d: dict) -> StaticKeys:
        return cls(bytes.fromhex(d["enc"]), bytes.fromhex(d["mac"]), bytes.fromhex(d["dek"]))


@dataclass(frozen=True)
class SessionKeys:
    """The session keys of one secure channel session (S-DEK is Key-DEK itself and is not repeated here)."""

    s_enc: bytes
    s_mac: bytes
    s_rmac: bytes

    def __repr__(self) -> str:
        return f"SessionKeys(<AES-{len(self.s_enc) * 8}>)"


def cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B / RFC 4493), the full 16 bytes."""
    c = CMAC(algorithms.AES(_check_key(key, "CMAC key")))
    c.update(bytes(data))
    return c.finalize()


def kdf(key: bytes, constant: int, context: bytes, bits: int) -> bytes:
    """SP 800-108 counter-mode KDF with AES-CMAC, in the byte order of Amd D §4.1.5 (see the module docstring)."""
    if not 0 <= constant <= 0xFF:
        raise ValueError("derivation constant is one byte")
    if bits <= 0 or bits % 8 or bits > 0xFFFF:
        raise ValueError(f"output length {bits} bits is not a positive multiple of 8 below 65536")
    label = bytes(11) + bytes([constant, 0x00]) + bits.to_bytes(2, "big")
    out = b""
    counter = 1
    while len(out) * 8 < bits:
        out += cmac(key, label + bytes([counter]) + bytes(context))
        counter += 1
    return out[: bits // 8]


def session_keys(keys: StaticKeys, host_challenge: bytes, card_challenge: bytes) -> SessionKeys:
    """S-ENC, S-MAC and S-RMAC for one session; each as long as the static keys."""
    context = bytes(host_challenge) + bytes(card_challenge)
    bits = len(keys.enc) * 8
    return SessionKeys(
        s_enc=kdf(keys.enc, DERIVE_S_ENC, context, bits),
        s_mac=kdf(keys.mac, DERIVE_S_MAC, context, bits),
        s_rmac=kdf(keys.mac, DERIVE_S_RMAC, context, bits),
    )


def card_cryptogram(s: SessionKeys, host_challenge: bytes, card_challenge: bytes) -> bytes:
    return kdf(s.s_mac, DERIVE_CARD_CRYPTOGRAM, bytes(host_challenge) + bytes(card_challenge), CRYPTOGRAM_LENGTH * 8)


def host_cryptogram(s: SessionKeys, host_challenge: bytes, card_challenge: bytes) -> bytes:
    return kdf(s.s_mac, DERIVE_HOST_CRYPTOGRAM, bytes(host_challenge) + bytes(card_challenge), CRYPTOGRAM_LENGTH * 8)


def pad80(data: bytes, block: int = BLOCK) -> bytes:
    """ISO/IEC 9797-1 padding method 2: '80' then '00' up to a multiple of ``block`` (always adds at least one byte)."""
    data = bytes(data) + b"\x80"
    return data + bytes(-len(data) % block)


def unpad80(data: bytes) -> bytes:
    """Undo :func:`pad80`; :class:`ValueError` when ``data`` does not end in '80' followed only by '00' bytes."""
    data = bytes(data)
    stripped = data.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80:
        raise ValueError("bad '80' padding")
    if len(data) - len(stripped) >= BLOCK:  # more zero bytes than one block can hold: not padding we wrote
        raise ValueError("bad '80' padding")
    return stripped[:-1]


def _aes_ecb_block(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(_check_key(key, "S-ENC")), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def aes_cbc_encrypt(key: bytes, icv: bytes, data: bytes) -> bytes:
    """AES-CBC over already padded ``data``."""
    if len(data) % BLOCK:
        raise ValueError("CBC input is not a multiple of the block size")
    enc = Cipher(algorithms.AES(_check_key(key, "AES key")), modes.CBC(icv)).encryptor()
    return enc.update(bytes(data)) + enc.finalize()


def aes_cbc_decrypt(key: bytes, icv: bytes, data: bytes) -> bytes:
    """AES-CBC decryption; the padding stays for the caller to check."""
    if len(data) % BLOCK:
        raise ValueError("CBC input is not a multiple of the block size")
    dec = Cipher(algorithms.AES(_check_key(key, "AES key")), modes.CBC(icv)).decryptor()
    return dec.update(bytes(data)) + dec.finalize()


def _counter_block(counter: int) -> bytes:
    if not 0 <= counter < 1 << 120:  # the response block overwrites the first byte
        raise ValueError(f"encryption counter {counter} out of range")
    return counter.to_bytes(BLOCK, "big")


def command_icv(s_enc: bytes, counter: int) -> bytes:
    """ICV for C-ENC (Amd D §6.2.6): AES-ECB(S-ENC, counter as a 16-byte big-endian block)."""
    return _aes_ecb_block(s_enc, _counter_block(counter))


def response_icv(s_enc: bytes, counter: int) -> bytes:
    """ICV for R-ENC (Amd D §6.2.7): as :func:`command_icv` with the first byte of the counter block set to '80'."""
    return _aes_ecb_block(s_enc, b"\x80" + _counter_block(counter)[1:])


# --- secure messaging on C-APDUs (Amd D §6.2, §7) --------------------------------------------------------------


def pseudo_random_card_challenge(key_enc: bytes, sequence_counter: int, aid: bytes) -> bytes:
    """The card challenge of a key set with i = '70' (Amd D §6.2.2.1): KDF(Key-ENC, constant '02', 64 bits, context
    = sequence counter (3 bytes) || AID of the security domain).

    The counter is the one the INITIALIZE UPDATE response reports. Checked against pySim's published card traces
    (tests/keys/vectors.py: their nine card challenges are this derivation with the eUICC ISD-R AID of SGP.02).
    """
    if not 0 <= sequence_counter <= SEQUENCE_COUNTER_MAX:
        raise ValueError(f"sequence counter {sequence_counter} is not 3 bytes")
    aid = bytes(aid)
    if not 5 <= len(aid) <= 16:
        raise ValueError(f"AID of {len(aid)} bytes (must be 5..16)")
    return kdf(_check_key(key_enc, "Key-ENC"), DERIVE_CARD_CHALLENGE, sequence_counter.to_bytes(3, "big") + aid,
               CRYPTOGRAM_LENGTH * 8)


def initialize_update_response(kvn: int, card_challenge: bytes, card_cryptogram: bytes, sequence_counter: int) -> bytes:
    """The INITIALIZE UPDATE response data with i = '70' (Amd D §7.1.1): key diversification data (10, all '00') ||
    key information (KVN, '03', i) || card challenge (8) || card cryptogram (8) || sequence counter (3)."""
    if not 0 <= kvn <= 0xFF:
        raise ValueError(f"KVN {kvn} is not one byte")
    if len(card_challenge) != 8 or len(card_cryptogram) != CRYPTOGRAM_LENGTH:
        raise ValueError("card challenge and card cryptogram are 8 bytes each")
    if not 0 <= sequence_counter <= SEQUENCE_COUNTER_MAX:
        raise ValueError(f"sequence counter {sequence_counter} is not 3 bytes")
    return (DIVERSIFICATION_DATA + bytes([kvn, SCP_ID, I_PSEUDO_RANDOM]) + bytes(card_challenge)
            + bytes(card_cryptogram) + sequence_counter.to_bytes(3, "big"))


def command_mac(s_mac: bytes, mcv: bytes, header: bytes, data: bytes) -> bytes:
    """The C-MAC of a command (Amd D §6.2.4), all 16 bytes (the new MCV; the command carries the first 8):
    CMAC(S-MAC, MCV || ``header`` || ``data``). ``header`` is CLA (bit '04' set) INS P1 P2 Lc, Lc counting the MAC;
    ``data`` the command data as sent (ciphered under C-DECRYPTION), without the MAC. EXTERNAL AUTHENTICATE is
    MACed the same way, over the zero MCV."""
    if len(mcv) != BLOCK or len(header) != 5:
        raise ValueError("the MCV is 16 bytes and the header CLA INS P1 P2 Lc")
    return cmac(s_mac, bytes(mcv) + bytes(header) + bytes(data))


def response_mac(s_rmac: bytes, mcv: bytes, data: bytes, sw: int) -> bytes:
    """The R-MAC of a response (Amd D §6.2.5): the first 8 bytes of CMAC(S-RMAC, MCV || response data (ciphered
    under R-ENCRYPTION) || SW1 SW2), the MCV being the C-MAC of the command answered."""
    if len(mcv) != BLOCK or not 0 <= sw <= 0xFFFF:
        raise ValueError("the MCV is 16 bytes and the SW two")
    return cmac(s_rmac, bytes(mcv) + bytes(data) + sw.to_bytes(2, "big"))[:MAC_LENGTH]
