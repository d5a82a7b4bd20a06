"""SCP03t: SCP03 carried in TLVs between the SM-DP (host) and an ISD-P (card), SGP.02 §4.1.3.3.

Theory of operation. Two state machines, one per end, that do no I/O: :class:`Scp03tHost` (the SM-DP) produces
command TLVs and checks the card's answers; :class:`Scp03tCard` (the simulated ISD-P) consumes command TLVs and
produces answers. Both can be frozen with ``state()`` into a JSON-serialisable dict and thawed with ``from_state()``,
so an SM-DP can carry a download across a process restart (the dict holds key material: store it like keys).

The exchange (crypto-ota.md §2.2; sgp02-wire.md §6.4)::

    host                                                   card
    '84' KVN || KeyID || host challenge(8)            ->
                                                       <-  '84' INITIALIZE UPDATE response (below)
    '85' SL('33') || host cryptogram(8) || C-MAC(8)   ->
                                                       <-  '85' 00   (empty: authenticated)
    '86' C-ENC(segment) || C-MAC(8)                   ->   (once per profile package segment)
                                                       <-  '86' [R-ENC(answer)] || R-MAC(8)
    any step that fails                                <-  '9F84' / '9F85' / '9F86' 01 <reason>

Security level is always '33' (C-MAC, C-DECRYPTION, R-MAC, R-ENCRYPTION), S8 mode. The primitives are those of
:mod:`keys.scp03`; what SCP03t adds is the framing, and every framing choice is in one function here:

* INITIALIZE UPDATE response, :func:`_initialize_update_response`: key diversification data (10, all '00') || KVN ||
  '03' || i ('70') || card challenge (8) || card cryptogram (8) || sequence counter (3). i = '70' is SGP.02's value
  (crypto-ota.md §2.1): pseudo-random card challenge, R-MAC and R-ENC support. Because i says "pseudo-random", the
  3-byte sequence counter is present (as in pySim's i='70' vectors). Choice: the simulated card does NOT derive
  the challenge from the counter (Amd D constant '02' needs the ISD-P AID, which this layer does not know); it
  uses 8 random bytes per session (or the fixed ``card_challenge`` given for tests) and counts sessions in the
  sequence counter. The host uses the challenge as received and does not check how it was made; it accepts the
  29-byte form without counter too.
* MAC input, :func:`_mac_input`: ``MCV || tag || final length (BER, shortest form, counting the 8-byte MAC) ||
  value without the MAC`` (crypto-ota.md §2.2). The same rule is used for C-MAC on '85'/'86' (key S-MAC; the
  result becomes the new MCV) and for R-MAC on '86' answers (key S-RMAC, MCV = the C-MAC of the command being
  answered; the R-MAC does not change the MCV, as in SCP03). The MCV starts at 16 x '00' for '85'.
* C-ENC: ``pad80`` then AES-CBC under S-ENC with ICV = ``command_icv(counter)``; the counter is 1 for the first
  '86' after '85' and goes up by one per '86'. An empty segment is not enciphered (value = C-MAC only), as SCP03
  does for commands without data.
* R-ENC, :meth:`Scp03tCard.wrap_response`: the same with ``response_icv(counter of the command answered)``; an
  empty answer gives an '86' holding only the R-MAC. [choice] The answer to '86' is itself an '86' TLV.
* The answer to a good '85' is an empty '85' TLV ('85 00'); it carries no MAC (SCP03 starts R-MAC after EXTERNAL
  AUTHENTICATE).
* Errors, :func:`encode_error` / :func:`parse_response`: ``'9F' || command tag || '01' || reason``. These tags are
  not well-formed BER (bit 8 of the second byte would announce a third tag byte), so :mod:`keys.tlv` refuses them;
  they are always read as a fixed two-byte tag here (njiwa reads them the same way: any tag whose first byte is
  '9F' is an error). The reason byte is ours (SGP.02 gives none that we know of): see the ``REASON_*`` constants.
  Every error ends the card's session; the host closes its side when it sees one.

Card usage: ``process(tag, value)`` takes one command TLV. For '84' and '85' it returns ``(answer TLV, None)``.
For '86' it returns ``(b"", plaintext segment)`` when the segment was good, and the caller MUST then answer it with
``wrap_response(answer)`` (``b""`` normally; the profile installation result for the last segment) before the next
command; on failure it returns ``(error TLV, None)`` and nothing is pending. Protocol errors never raise; API misuse
(an answer owed, or ``wrap_response`` with nothing to answer) raises :class:`RuntimeError`. The card's owner may
end a session itself with :meth:`Scp03tCard.end_session` (e.g. after answering a refused last segment).

Host usage: the host may send several '86' before reading answers (one ES3.SendData script): it remembers the
counter and MCV of every '86' not yet answered and :meth:`Scp03tHost.unwrap` takes answers in command order.
"""

from __future__ import annotations

import enum
import hmac
import os
from collections import deque

from keys.errors import TlvError
from keys.scp03 import (
    MAC_LENGTH,
    SessionKeys,
    StaticKeys,
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    card_cryptogram,
    cmac,
    command_icv,
    host_cryptogram,
    initialize_update_response,
    pad80,
    response_icv,
    session_keys,
    unpad80,
)
from keys.tlv import encode_length, encode_tlv, iter_tlvs

__all__ = [
    "TAG_INITIALIZE_UPDATE",
    "TAG_EXTERNAL_AUTHENTICATE",
    "TAG_SEGMENT",
    "SECURITY_LEVEL",
    "SCP_ID",
    "SCP_I",
    "REASON_FORMAT",
    "REASON_UNKNOWN_KEY",
    "REASON_NO_SESSION",
    "REASON_BAD_CRYPTOGRAM",
    "REASON_BAD_MAC",
    "REASON_SECURITY_LEVEL",
    "REASON_BAD_PADDING",
    "Scp03tError",
    "Scp03tHost",
    "Scp03tCard",
    "encode_error",
    "parse_response",
]

TAG_INITIALIZE_UPDATE = 0x84
TAG_EXTERNAL_AUTHENTICATE = 0x85
TAG_SEGMENT = 0x86
_COMMAND_TAGS = (TAG_INITIALIZE_UPDATE, TAG_EXTERNAL_AUTHENTICATE, TAG_SEGMENT)
ERROR_TAG_PREFIX = 0x9F

SECURITY_LEVEL = 0x33  # C-MAC | C-DECRYPTION | R-MAC | R-ENCRYPTION (Amd D Table 5-1)
SCP_ID = 0x03
SCP_I = 0x70  # SGP.02: pseudo-random card challenge, R-MAC, R-ENC; S8 mode (bit 1 = 0)
KEY_ID_ANY = 0x00  # GP INITIALIZE UPDATE: key identifier '00' means "the keyset's first key"
KEY_ID_ENC = 0x01  # the Key-ENC identifier of an SCP03 keyset
DIVERSIFICATION_DATA = bytes(10)
CHALLENGE_LENGTH = 8
SEQUENCE_COUNTER_MAX = 0xFFFFFF
_ZERO_MCV = bytes(16)
_STATE_VERSION = 1

# Reason byte of an error TLV ('9F84'/'9F85'/'9F86' 01 <reason>). Our own numbering.
REASON_FORMAT = 0x01  # value malformed (length, block alignment, unknown field values)
REASON_UNKNOWN_KEY = 0x02  # '84': no keyset with this KVN / key identifier
REASON_NO_SESSION = 0x03  # command out of sequence ('85' before '84', '86' before a good '85')
REASON_BAD_CRYPTOGRAM = 0x04  # host cryptogram (card side) or card cryptogram (host side) wrong
REASON_BAD_MAC = 0x05  # C-MAC (card side) or R-MAC (host side) wrong
REASON_SECURITY_LEVEL = 0x06  # '85' asks for a security level other than '33'
REASON_BAD_PADDING = 0x07  # MAC good but the deciphered value has no valid '80' padding

_REASON_NAMES = {
    REASON_FORMAT: "format",
    REASON_UNKNOWN_KEY: "unknown key",
    REASON_NO_SESSION: "no session",
    REASON_BAD_CRYPTOGRAM: "bad cryptogram",
    REASON_BAD_MAC: "bad MAC",
    REASON_SECURITY_LEVEL: "security level",
    REASON_BAD_PADDING: "bad padding",
}


class Scp03tError(ValueError):
    """A step of the SCP03t exchange failed: ``tag`` is the command ('84', '85' or '86') it failed on; ``reason``
    one of the ``REASON_*`` values, either reported by the card in a '9Fxx' TLV or found by the host itself."""

    def __init__(self, tag: int, reason: int, message: str) -> None:
        self.tag = tag
        self.reason = reason
        self.message = message
        super().__init__(f"SCP03t '{tag:02X}': {_REASON_NAMES.get(reason, f'reason {reason:02X}')}: {message}")

    def __reduce__(self):
        return (type(self), (self.tag, self.reason, self.message))


# --- framing: each choice in one function ------------------------------------------------------------------------


def encode_error(tag: int, reason: int) -> bytes:
    """The card's error TLV for command ``tag``: '9F' tag '01' reason (see the module docstring)."""
    if tag not in _COMMAND_TAGS:
        raise ValueError(f"no SCP03t error TLV for tag {tag:X}")
    return bytes([ERROR_TAG_PREFIX, tag, 0x01, reason])


def parse_response(data: bytes) -> tuple[int, bytes]:
    """One answer TLV of the card: ``(tag, value)``, where an error has tag ``0x9F84``/``0x9F85``/``0x9F86``.

    Error TLVs are read with a fixed two-byte tag; anything else must be exactly one well-formed BER-TLV.
    Raises :class:`ValueError` when ``data`` is neither.
    """
    data = bytes(data)
    if data[:1] == bytes([ERROR_TAG_PREFIX]):
        if len(data) < 3:
            raise ValueError("truncated error TLV")
        tag = int.from_bytes(data[:2], "big")
        length = data[2]
        if length >= 0x80 or len(data) != 3 + length:
            raise ValueError(f"error TLV {tag:04X} has a bad length")
        return tag, data[3:]
    try:
        tlvs = list(iter_tlvs(data))
    except TlvError as e:
        raise ValueError(f"answer is not a TLV: {e}") from None
    if len(tlvs) != 1:
        raise ValueError(f"expected one TLV, got {len(tlvs)}")
    return tlvs[0].tag, tlvs[0].value


def _mac_input(mcv: bytes, tag: int, value_without_mac: bytes) -> bytes:
    # crypto-ota.md §2.2: MCV || tag || final length (including the 8-byte MAC) || (ciphered) value. [verify] the
    # length is the shortest BER form (what encode_tlv writes); a sender using a longer form would MAC other bytes.
    return mcv + bytes([tag]) + encode_length(len(value_without_mac) + MAC_LENGTH) + value_without_mac


def _initialize_update_response(kvn: int, card_challenge: bytes, cryptogram: bytes, sequence_counter: int) -> bytes:
    # Amd D §7.1.1 INITIALIZE UPDATE response, i = '70' (see the module docstring for the counter choice); the layout
    # has one home, keys.scp03.initialize_update_response.
    return initialize_update_response(kvn, card_challenge, cryptogram, sequence_counter)


def _parse_initialize_update_response(value: bytes) -> tuple[int, int, int, bytes, bytes]:
    """``(kvn, scp id, i, card challenge, card cryptogram)``; ValueError on a bad length."""
    if len(value) not in (29, 32):  # without / with the 3-byte sequence counter
        raise ValueError(f"INITIALIZE UPDATE response of {len(value)} bytes (expected 29 or 32)")
    return value[10], value[11], value[12], value[13:21], value[21:29]


def _encipher(key: bytes, icv: bytes, data: bytes) -> bytes:
    return aes_cbc_encrypt(key, icv, pad80(data)) if data else b""


def _decipher(key: bytes, icv: bytes, data: bytes) -> bytes:
    return unpad80(aes_cbc_decrypt(key, icv, data)) if data else b""


def _split_mac(value: bytes) -> tuple[bytes, bytes] | None:
    """``(body, mac)`` when ``value`` ends in an 8-byte MAC after a block-aligned body, else None."""
    if len(value) < MAC_LENGTH or (len(value) - MAC_LENGTH) % 16:
        return None
    return value[:-MAC_LENGTH], value[-MAC_LENGTH:]


def _keys_to_state(s: SessionKeys | None) -> dict | None:
    if s is None:
        return None
    return {"s_enc": s.s_enc.hex().upper(), "s_mac": s.s_mac.hex().upper(), "s_rmac": s.s_rmac.hex().upper()}


def _keys_from_state(d: dict | None) -> SessionKeys | None:
    if d is None:
        return None
    return SessionKeys(bytes.fromhex(d["s_enc"]), bytes.fromhex(d["s_mac"]), bytes.fromhex(d["s_rmac"]))


def _hex(b: bytes | None) -> str | None:
    return None if b is None else b.hex().upper()


def _unhex(s: str | None) -> bytes | None:
    return None if s is None else bytes.fromhex(s)


def _check_byte(value: int, what: str) -> int:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{what} {value} is not one byte")
    return value


# --- host (SM-DP) ------------------------------------------------------------------------------------------------


class HostPhase(enum.StrEnum):
    NEW = "new"  # nothing sent
    INITIALIZING = "initializing"  # '84' sent
    AUTHENTICATED = "authenticated"  # '85' sent; '86' may follow
    CLOSED = "closed"  # an error ended the session


class Scp03tHost:
    """The SM-DP end. Call order: initialize_update → external_authenticate → [check_external_authenticate_response]
    → wrap / unwrap per segment. Out-of-order calls raise :class:`RuntimeError`."""

    def __init__(self, keys: StaticKeys, kvn: int, key_id: int = KEY_ID_ENC, host_challenge: bytes | None = None):
        self.keys = keys
        self.kvn = _check_byte(kvn, "KVN")
        self.key_id = _check_byte(key_id, "key identifier")
        if host_challenge is None:
            host_challenge = os.urandom(CHALLENGE_LENGTH)
        if len(host_challenge) != CHALLENGE_LENGTH:
            raise ValueError("host challenge is 8 bytes")
        self.host_challenge = bytes(host_challenge)
        self.phase = HostPhase.NEW
        self._session: SessionKeys | None = None
        self._mcv = _ZERO_MCV
        self._counter = 1
        self._pending: deque[tuple[int, bytes]] = deque()  # (counter, MCV) of every '86' not yet answered

    def _require(self, *phases: HostPhase) -> None:
        if self.phase not in phases:
            raise RuntimeError(f"SCP03t host is {self.phase.value}; expected {' or '.join(p.value for p in phases)}")

    def _fail(self, tag: int, reason: int, message: str) -> Scp03tError:
        self.phase = HostPhase.CLOSED
        self._pending.clear()
        return Scp03tError(tag, reason, message)

    def _read(self, tag: int, response_tlv: bytes) -> bytes:
        """The value of the card's answer to ``tag``; raises Scp03tError for an error TLV or a malformed answer."""
        try:
            got, value = parse_response(response_tlv)
        except ValueError as e:
            raise self._fail(tag, REASON_FORMAT, str(e)) from None
        if got == (ERROR_TAG_PREFIX << 8) | tag:
            reason = value[0] if len(value) == 1 else REASON_FORMAT
            raise self._fail(tag, reason, f"card answered {got:04X} {value.hex().upper()}")
        if got != tag:
            raise self._fail(tag, REASON_FORMAT, f"card answered tag {got:X}")
        return value

    def initialize_update(self) -> bytes:
        self._require(HostPhase.NEW)
        self.phase = HostPhase.INITIALIZING
        return encode_tlv(TAG_INITIALIZE_UPDATE, bytes([self.kvn, self.key_id]) + self.host_challenge)

    def external_authenticate(self, response_tlv: bytes) -> bytes:
        self._require(HostPhase.INITIALIZING)
        value = self._read(TAG_INITIALIZE_UPDATE, response_tlv)
        try:
            kvn, scp_id, i, card_challenge, cryptogram = _parse_initialize_update_response(value)
        except ValueError as e:
            raise self._fail(TAG_INITIALIZE_UPDATE, REASON_FORMAT, str(e)) from None
        if kvn != self.kvn:
            raise self._fail(TAG_INITIALIZE_UPDATE, REASON_UNKNOWN_KEY, f"card used KVN {kvn:02X}, not {self.kvn:02X}")
        if scp_id != SCP_ID or i & 0x01:  # only SCP03 in S8 mode
            raise self._fail(TAG_INITIALIZE_UPDATE, REASON_FORMAT, f"unsupported SCP {scp_id:02X} i={i:02X}")
        session = session_keys(self.keys, self.host_challenge, card_challenge)
        if not hmac.compare_digest(cryptogram, card_cryptogram(session, self.host_challenge, card_challenge)):
            raise self._fail(TAG_INITIALIZE_UPDATE, REASON_BAD_CRYPTOGRAM, "card cryptogram does not verify")
        body = bytes([SECURITY_LEVEL]) + host_cryptogram(session, self.host_challenge, card_challenge)
        mac = cmac(session.s_mac, _mac_input(_ZERO_MCV, TAG_EXTERNAL_AUTHENTICATE, body))
        self._session = session
        self._mcv = mac
        self._counter = 1
        self.phase = HostPhase.AUTHENTICATED
        return encode_tlv(TAG_EXTERNAL_AUTHENTICATE, body + mac[:MAC_LENGTH])

    def check_external_authenticate_response(self, response_tlv: bytes) -> None:
        self._require(HostPhase.AUTHENTICATED)
        value = self._read(TAG_EXTERNAL_AUTHENTICATE, response_tlv)
        if value:
            raise self._fail(TAG_EXTERNAL_AUTHENTICATE, REASON_FORMAT, "answer to '85' is not empty")

    def wrap(self, segment: bytes) -> bytes:
        self._require(HostPhase.AUTHENTICATED)
        assert self._session is not None
        ciphered = _encipher(self._session.s_enc, command_icv(self._session.s_enc, self._counter), bytes(segment))
        mac = cmac(self._session.s_mac, _mac_input(self._mcv, TAG_SEGMENT, ciphered))
        self._mcv = mac
        self._pending.append((self._counter, mac))
        self._counter += 1
        return encode_tlv(TAG_SEGMENT, ciphered + mac[:MAC_LENGTH])

    def unwrap(self, response_tlv: bytes) -> bytes:
        self._require(HostPhase.AUTHENTICATED)
        assert self._session is not None
        if not self._pending:
            raise RuntimeError("no '86' command is waiting for an answer")
        counter, mcv = self._pending.popleft()
        value = self._read(TAG_SEGMENT, response_tlv)
        split = _split_mac(value)
        if split is None:
            raise self._fail(TAG_SEGMENT, REASON_FORMAT, f"answer of {len(value)} bytes")
        body, rmac = split
        expected = cmac(self._session.s_rmac, _mac_input(mcv, TAG_SEGMENT, body))[:MAC_LENGTH]
        if not hmac.compare_digest(rmac, expected):
            raise self._fail(TAG_SEGMENT, REASON_BAD_MAC, "R-MAC does not verify")
        try:
            return _decipher(self._session.s_enc, response_icv(self._session.s_enc, counter), body)
        except ValueError as e:
            raise self._fail(TAG_SEGMENT, REASON_BAD_PADDING, str(e)) from None

    @property
    def pending(self) -> int:
        """How many '86' commands still wait for their answer."""
        return len(self._pending)

    def state(self) -> dict:
        return {
            "version": _STATE_VERSION,
            "role": "host",
            "keys": self.keys.to_hex(),
            "kvn": self.kvn,
            "key_id": self.key_id,
            "host_challenge": _hex(self.host_challenge),
            "phase": self.phase.value,
            "session_keys": _keys_to_state(self._session),
            "mcv": _hex(self._mcv),
            "counter": self._counter,
            "pending": [{"counter": c, "mcv": _hex(m)} for c, m in self._pending],
        }

    @classmethod
    def from_state(cls, state: dict) -> Scp03tHost:
        if state.get("version") != _STATE_VERSION or state.get("role") != "host":
            raise ValueError("not an SCP03t host state")
        host = cls(StaticKeys.from_hex(state["keys"]), state["kvn"], state["key_id"], _unhex(state["host_challenge"]))
        host.phase = HostPhase(state["phase"])
        host._session = _keys_from_state(state["session_keys"])
        host._mcv = bytes.fromhex(state["mcv"])
        host._counter = state["counter"]
        host._pending = deque((p["counter"], bytes.fromhex(p["mcv"])) for p in state["pending"])
        return host


# --- card (ISD-P) ------------------------------------------------------------------------------------------------


class CardPhase(enum.StrEnum):
    IDLE = "idle"  # no session
    INITIALIZED = "initialized"  # good '84' answered; waiting for '85'
    AUTHENTICATED = "authenticated"  # good '85'; '86' accepted


# Which command each phase accepts (anything else: '9Fxx' REASON_NO_SESSION). '84' always starts a new session.
_CARD_ACCEPTS: dict[CardPhase, frozenset[int]] = {
    CardPhase.IDLE: frozenset({TAG_INITIALIZE_UPDATE}),
    CardPhase.INITIALIZED: frozenset({TAG_INITIALIZE_UPDATE, TAG_EXTERNAL_AUTHENTICATE}),
    CardPhase.AUTHENTICATED: frozenset({TAG_INITIALIZE_UPDATE, TAG_SEGMENT}),
}


class _CardFailure(Exception):
    def __init__(self, reason: int) -> None:
        self.reason = reason


class Scp03tCard:
    """The ISD-P end, holding one SCP03 keyset (``kvn``). ``card_challenge`` fixes the challenge of every session
    (tests); ``None`` draws 8 random bytes per session."""

    def __init__(self, keys: StaticKeys, kvn: int, card_challenge: bytes | None = None):
        self.keys = keys
        self.kvn = _check_byte(kvn, "KVN")
        if card_challenge is not None and len(card_challenge) != CHALLENGE_LENGTH:
            raise ValueError("card challenge is 8 bytes")
        self.fixed_card_challenge = None if card_challenge is None else bytes(card_challenge)
        self.sequence_counter = 0  # sessions started; sent with i = '70'
        self.phase = CardPhase.IDLE
        self._host_challenge: bytes | None = None
        self._card_challenge: bytes | None = None
        self._session: SessionKeys | None = None
        self._mcv = _ZERO_MCV
        self._counter = 1
        self._pending: tuple[int, bytes] | None = None  # (counter, MCV) of the '86' owed an answer

    def end_session(self) -> None:
        """End the current session (as every error does): keys, KVN and sequence counter stay; any owed answer is
        dropped. For the card's owner, e.g. when the ISD-P refuses a profile package after answering its last
        segment."""
        self.phase = CardPhase.IDLE
        self._host_challenge = self._card_challenge = self._session = None
        self._mcv = _ZERO_MCV
        self._counter = 1
        self._pending = None


    def process(self, tlv_tag: int, value: bytes) -> tuple[bytes, bytes | None]:
        if tlv_tag not in _COMMAND_TAGS:
            raise ValueError(f"tag {tlv_tag:X} is not an SCP03t command")
        if self._pending is not None:
            raise RuntimeError("the last '86' has not been answered: call wrap_response() first")
        value = bytes(value)
        try:
            if tlv_tag not in _CARD_ACCEPTS[self.phase]:
                raise _CardFailure(REASON_NO_SESSION)
            if tlv_tag == TAG_INITIALIZE_UPDATE:
                return self._initialize_update(value), None
            if tlv_tag == TAG_EXTERNAL_AUTHENTICATE:
                return self._external_authenticate(value), None
            return b"", self._segment(value)
        except _CardFailure as failure:
            self.end_session()
            return encode_error(tlv_tag, failure.reason), None

    def _initialize_update(self, value: bytes) -> bytes:
        self.end_session()  # INITIALIZE UPDATE always ends the current session
        if len(value) != 2 + CHALLENGE_LENGTH:
            raise _CardFailure(REASON_FORMAT)
        kvn, key_id, host_challenge = value[0], value[1], value[2:]
        if kvn != self.kvn or key_id not in (KEY_ID_ANY, KEY_ID_ENC):
            raise _CardFailure(REASON_UNKNOWN_KEY)
        if self.sequence_counter >= SEQUENCE_COUNTER_MAX:
            raise _CardFailure(REASON_UNKNOWN_KEY)  # keyset exhausted (Amd D: the counter must not wrap)
        self.sequence_counter += 1
        card_challenge = self.fixed_card_challenge or os.urandom(CHALLENGE_LENGTH)
        session = session_keys(self.keys, host_challenge, card_challenge)
        cryptogram = card_cryptogram(session, host_challenge, card_challenge)
        self._host_challenge, self._card_challenge, self._session = host_challenge, card_challenge, session
        self.phase = CardPhase.INITIALIZED
        response = _initialize_update_response(self.kvn, card_challenge, cryptogram, self.sequence_counter)
        return encode_tlv(TAG_INITIALIZE_UPDATE, response)

    def _external_authenticate(self, value: bytes) -> bytes:
        assert self._session is not None and self._host_challenge is not None and self._card_challenge is not None
        if len(value) != 1 + 8 + MAC_LENGTH:
            raise _CardFailure(REASON_FORMAT)
        body, mac = value[:-MAC_LENGTH], value[-MAC_LENGTH:]
        full_mac = cmac(self._session.s_mac, _mac_input(_ZERO_MCV, TAG_EXTERNAL_AUTHENTICATE, body))
        if not hmac.compare_digest(mac, full_mac[:MAC_LENGTH]):
            raise _CardFailure(REASON_BAD_MAC)
        if body[0] != SECURITY_LEVEL:
            raise _CardFailure(REASON_SECURITY_LEVEL)
        expected = host_cryptogram(self._session, self._host_challenge, self._card_challenge)
        if not hmac.compare_digest(body[1:], expected):
            raise _CardFailure(REASON_BAD_CRYPTOGRAM)
        self._mcv = full_mac
        self._counter = 1
        self.phase = CardPhase.AUTHENTICATED
        return encode_tlv(TAG_EXTERNAL_AUTHENTICATE, b"")

    def _segment(self, value: bytes) -> bytes:
        assert self._session is not None
        split = _split_mac(value)
        if split is None:
            raise _CardFailure(REASON_FORMAT)
        ciphered, mac = split
        full_mac = cmac(self._session.s_mac, _mac_input(self._mcv, TAG_SEGMENT, ciphered))
        if not hmac.compare_digest(mac, full_mac[:MAC_LENGTH]):
            raise _CardFailure(REASON_BAD_MAC)
        counter = self._counter
        try:
            plaintext = _decipher(self._session.s_enc, command_icv(self._session.s_enc, counter), ciphered)
        except ValueError:
            raise _CardFailure(REASON_BAD_PADDING) from None
        self._mcv = full_mac
        self._counter += 1
        self._pending = (counter, full_mac)
        return plaintext

    def wrap_response(self, data: bytes) -> bytes:
        """The '86' answer to the last good '86' command, carrying ``data`` under R-ENC (none when empty) + R-MAC."""
        if self._pending is None or self._session is None:
            raise RuntimeError("no '86' command is waiting for an answer")
        counter, mcv = self._pending
        ciphered = _encipher(self._session.s_enc, response_icv(self._session.s_enc, counter), bytes(data))
        rmac = cmac(self._session.s_rmac, _mac_input(mcv, TAG_SEGMENT, ciphered))
        self._pending = None
        return encode_tlv(TAG_SEGMENT, ciphered + rmac[:MAC_LENGTH])

    @property
    def awaiting_response(self) -> bool:
        """True between a good '86' and its :meth:`wrap_response`."""
        return self._pending is not None

    def state(self) -> dict:
        return {
            "version": _STATE_VERSION,
            "role": "card",
            "keys": self.keys.to_hex(),
            "kvn": self.kvn,
            "card_challenge": _hex(self.fixed_card_challenge),
            "sequence_counter": self.sequence_counter,
            "phase": self.phase.value,
            "host_challenge": _hex(self._host_challenge),
            "session_card_challenge": _hex(self._card_challenge),
            "session_keys": _keys_to_state(self._session),
            "mcv": _hex(self._mcv),
            "counter": self._counter,
            "pending": None if self._pending is None else {"counter": self._pending[0], "mcv": _hex(self._pending[1])},
        }

    @classmethod
    def from_state(cls, state: dict) -> Scp03tCard:
        if state.get("version") != _STATE_VERSION or state.get("role") != "card":
            raise ValueError("not an SCP03t card state")
        card = cls(StaticKeys.from_hex(state["keys"]), state["kvn"], _unhex(state["card_challenge"]))
        card.sequence_counter = state["sequence_counter"]
        card.phase = CardPhase(state["phase"])
        card._host_challenge = _unhex(state["host_challenge"])
        card._card_challenge = _unhex(state["session_card_challenge"])
        card._session = _keys_from_state(state["session_keys"])
        card._mcv = bytes.fromhex(state["mcv"])
        card._counter = state["counter"]
        pending = state["pending"]
        card._pending = None if pending is None else (pending["counter"], bytes.fromhex(pending["mcv"]))
        return card
