from __future__ import annotations

import pytest

from keys.scp03 import (
    SessionKeys,
    StaticKeys,
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    card_cryptogram,
    cmac,
    command_icv,
    command_mac,
    host_cryptogram,
    initialize_update_response,
    kdf,
    pad80,
    pseudo_random_card_challenge,
    response_icv,
    response_mac,
    session_keys,
    unpad80,
)
from tests.keys import reference as ref
from tests.keys import vectors as v

# --- published vectors ---------------------------------------------------------------------------------------------
# pySim's SCP03 handshakes and wrapped APDUs (tests/keys/vectors.py cites the file and commit; crypto-ota.md §6).
KEYSETS = {bits: StaticKeys(*(bytes.fromhex(k) for k in keys)) for bits, keys in v.PYSIM_SCP03_KEYSETS.items()}
HANDSHAKES = v.PYSIM_SCP03_HANDSHAKES
SL33 = HANDSHAKES[v.PYSIM_SCP03_AES128_SL33]


def _handshake(bits: int, init_update: str, response: str) -> tuple[StaticKeys, bytes, bytes, bytes, SessionKeys]:
    keys = KEYSETS[bits]
    cmd, rsp = bytes.fromhex(init_update), bytes.fromhex(response)
    host_challenge = cmd[5:13]
    card_challenge, card_crypto = rsp[13:21], rsp[21:29]
    return keys, host_challenge, card_challenge, card_crypto, session_keys(keys, host_challenge, card_challenge)


@pytest.mark.parametrize("bits,init_update,response,ext_auth", HANDSHAKES)
def test_pysim_handshake(bits: int, init_update: str, response: str, ext_auth: str) -> None:
    keys, hc, cc, card_crypto, s = _handshake(bits, init_update, response)
    assert len(s.s_enc) == len(s.s_mac) == len(s.s_rmac) == bits // 8
    assert card_cryptogram(s, hc, cc) == card_crypto
    # EXTERNAL AUTHENTICATE '84 82 SL 00 10' || host cryptogram || C-MAC; C-MAC over MCV (16 x '00') || header || data
    ea = bytes.fromhex(ext_auth)
    hcg = host_cryptogram(s, hc, cc)
    assert ea[5:13] == hcg
    assert cmac(s.s_mac, bytes(16) + ea[:5] + hcg)[:8] == ea[13:]


@pytest.mark.parametrize("bits,init_update,response,ext_auth", HANDSHAKES)
def test_session_keys_match_the_reference(bits: int, init_update: str, response: str, ext_auth: str) -> None:
    # pySim publishes no session keys; tests/keys/reference.py derives them with pyca's SP 800-108 KBKDF (checked
    # there against these same pySim cryptograms), independently of keys.scp03.kdf.
    keys, hc, cc, _, s = _handshake(bits, init_update, response)
    assert (s.s_enc, s.s_mac, s.s_rmac) == ref.scp03_session_keys(keys.enc, keys.mac, hc, cc)


# Session keys of pySim's AES128 SL33 handshake, computed by tests/keys/reference.py (not by keys.scp03): a guard
# against both implementations changing together.
SL33_SESSION_KEYS = (
    "bc5689f3a0b783a9ed6da1c5c6bc1f99",
    "0415f56cbb9e488bb171b2b66081f004",
    "1ee185123244e047bc9d68b914bd1fbe",
)


def test_pysim_aes128_session_keys_pinned() -> None:
    _, _, _, _, s = _handshake(*SL33[:3])
    assert (s.s_enc.hex(), s.s_mac.hex(), s.s_rmac.hex()) == SL33_SESSION_KEYS


def _wrap_apdu(s: SessionKeys, mcv: bytes, counter: int, apdu: bytes) -> tuple[bytes, bytes]:
    """Test helper: SCP03 C-ENC + C-MAC of one case 1-4 APDU (GP Amd D §6.2.4/§6.2.6). Returns (wrapped, new MCV)."""
    header, rest = apdu[:4], apdu[4:]
    if len(rest) <= 1:  # case 1 / case 2
        data, le = b"", rest
    else:
        lc = rest[0]
        data, le = rest[1 : 1 + lc], rest[1 + lc :]
    ciphered = aes_cbc_encrypt(s.s_enc, command_icv(s.s_enc, counter), pad80(data)) if data else b""
    cla = bytes([header[0] | 0x04]) + header[1:]
    head = cla + bytes([len(ciphered) + 8])
    mac = cmac(s.s_mac, mcv + head + ciphered)
    return head + ciphered + mac[:8] + le, mac


def test_pysim_aes128_sl33_wrapping() -> None:
    # pySim SCP03_Test_AES128_33: after EXTERNAL AUTHENTICATE, GET EID (counter 1) then case 1..4 APDUs (counters
    # 2..5: the counter counts commands without data too); the GET EID response under R-ENC + R-MAC.
    _, hc, cc, _, s = _handshake(*SL33[:3])
    ea = bytes.fromhex(SL33[3])
    mcv = cmac(s.s_mac, bytes(16) + ea[:5] + ea[5:13])
    expected = v.PYSIM_SCP03_AES128_SL33_WRAPPED
    for counter, (plain, wrapped) in enumerate(expected, start=1):
        got, new_mcv = _wrap_apdu(s, mcv, counter, bytes.fromhex(plain))
        assert got.hex() == wrapped
        if counter == 1:
            # R-MAC = CMAC(S-RMAC, MCV of the command || response data || SW)[:8]; R-ENC ICV from counter 1
            rsp = bytes.fromhex(v.PYSIM_SCP03_AES128_SL33_GET_EID_RSP)
            assert cmac(s.s_rmac, new_mcv + rsp[:-8] + b"\x90\x00")[:8] == rsp[-8:]
            plain_rsp = unpad80(aes_cbc_decrypt(s.s_enc, response_icv(s.s_enc, 1), rsp[:-8]))
            assert plain_rsp.hex() == v.PYSIM_SCP03_AES128_SL33_GET_EID_RSP_PLAIN
        mcv = new_mcv


@pytest.mark.parametrize("length,mac", v.RFC4493)
def test_cmac_rfc4493(length: int, mac: str) -> None:
    assert cmac(v.RFC4493_KEY, v.RFC4493_MESSAGE[:length]).hex() == mac


# --- KDF and block helpers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 64, 120, 128, 192, 256, 384])
@pytest.mark.parametrize("constant", [0x00, 0x01, 0x04, 0x06, 0x07])
def test_kdf_matches_the_reference(constant: int, bits: int) -> None:
    # Output lengths of one block, part of one, and several (the counter byte goes 01, 02, 03).
    key, ctx = bytes(range(16)), bytes(range(16, 32))
    assert kdf(key, constant, ctx, bits) == ref.scp03_kdf(key, constant, ctx, bits)
    assert kdf(bytes(range(32)), constant, ctx, bits) == ref.scp03_kdf(bytes(range(32)), constant, ctx, bits)


def test_kdf_rejects_bad_lengths() -> None:
    with pytest.raises(ValueError):
        kdf(bytes(16), 0x04, bytes(16), 12)


def test_pad80() -> None:
    assert pad80(b"") == b"\x80" + bytes(15)
    assert pad80(bytes(15)) == bytes(15) + b"\x80"
    assert pad80(bytes(16)) == bytes(16) + b"\x80" + bytes(15)
    assert pad80(b"\x01", block=8) == b"\x01\x80" + bytes(6)
    for n in range(0, 40):
        assert unpad80(pad80(bytes([0xAA]) * n)) == bytes([0xAA]) * n


@pytest.mark.parametrize("bad", ["", "00" * 16, "0102", "80" + "00" * 16, "8001"])
def test_unpad80_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        unpad80(bytes.fromhex(bad))


@pytest.mark.parametrize("counter", [1, 2, 0x1234, (1 << 120) - 1])
def test_icvs(counter: int) -> None:
    key = bytes(range(16))
    assert command_icv(key, counter) == ref.command_icv(key, counter)
    assert response_icv(key, counter) == ref.response_icv(key, counter)
    assert command_icv(key, counter) != response_icv(key, counter)


def test_static_keys() -> None:
    keys = KEYSETS[128]
    assert StaticKeys.from_hex(keys.to_hex()) == keys
    assert keys.to_hex()["enc"] == "000102030405060708090A0B0C0D0E0F"
    assert "0001" not in repr(keys)
    with pytest.raises(ValueError):
        StaticKeys(bytes(16), bytes(16), bytes(24))
    with pytest.raises(ValueError):
        StaticKeys(bytes(15), bytes(15), bytes(15))


# --- secure messaging on C-APDUs (the card end's primitives) -------------------------------------------------------

SD_AID = bytes.fromhex(v.PYSIM_SCP03_SD_AID)


@pytest.mark.parametrize("bits,init_update,response,ext_auth", HANDSHAKES)
def test_pseudo_random_card_challenge_is_the_one_pysims_card_answered(bits, init_update, response, ext_auth) -> None:
    # The published INITIALIZE UPDATE responses (i = '70') carry the card challenge and the sequence counter it was
    # derived from; the card's own bytes, so the derivation and its context order are checked, not just agreed on.
    rsp = bytes.fromhex(response)
    counter = int.from_bytes(rsp[29:32], "big")
    assert pseudo_random_card_challenge(KEYSETS[bits].enc, counter, SD_AID) == rsp[13:21]
    assert pseudo_random_card_challenge(KEYSETS[bits].enc, counter + 1, SD_AID) != rsp[13:21]


@pytest.mark.parametrize("bits,init_update,response,ext_auth", HANDSHAKES)
def test_initialize_update_response_is_pysims_card_answer(bits, init_update, response, ext_auth) -> None:
    rsp = bytes.fromhex(response)
    assert initialize_update_response(rsp[10], rsp[13:21], rsp[21:29], int.from_bytes(rsp[29:32], "big")) == rsp


@pytest.mark.parametrize("counter,aid", [(0, "A0000005591010FFFFFFFF8900001000"), (0xFFFFFF, "A000000151")])
def test_pseudo_random_card_challenge_matches_the_reference(counter: int, aid: str) -> None:
    key = bytes(range(32))
    assert pseudo_random_card_challenge(key, counter, bytes.fromhex(aid)) == ref.scp03_card_challenge(
        key, counter, bytes.fromhex(aid))


@pytest.mark.parametrize("counter,aid", [(-1, "A000000151"), (1 << 24, "A000000151"), (1, "A0000001"), (1, "00" * 17)])
def test_pseudo_random_card_challenge_rejects(counter: int, aid: str) -> None:
    with pytest.raises(ValueError):
        pseudo_random_card_challenge(bytes(16), counter, bytes.fromhex(aid))


def test_command_and_response_macs_are_pysims() -> None:
    # EXTERNAL AUTHENTICATE over the zero MCV, then GET EID (counter 1) under C-MAC and C-DECRYPTION, and its answer
    # under R-ENC and R-MAC: every MAC as pySim's card trace has it.
    _, hc, cc, _, s = _handshake(*SL33[:3])
    ea = bytes.fromhex(SL33[3])
    mcv = command_mac(s.s_mac, bytes(16), ea[:5], ea[5:13])
    assert mcv[:8] == ea[13:]
    wrapped = bytes.fromhex(v.PYSIM_SCP03_AES128_SL33_WRAPPED[0][1])  # 84E29100 18 ciphered(16) C-MAC(8) Le
    mcv = command_mac(s.s_mac, mcv, wrapped[:5], wrapped[5:-9])
    assert mcv[:8] == wrapped[-9:-1]
    rsp = bytes.fromhex(v.PYSIM_SCP03_AES128_SL33_GET_EID_RSP)
    assert response_mac(s.s_rmac, mcv, rsp[:-8], 0x9000) == rsp[-8:]
    assert response_mac(s.s_rmac, mcv, rsp[:-8], 0x6A80) != rsp[-8:]


def test_mac_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        command_mac(bytes(16), bytes(15), bytes(5), b"")
    with pytest.raises(ValueError):
        command_mac(bytes(16), bytes(16), bytes(4), b"")
    with pytest.raises(ValueError):
        response_mac(bytes(16), bytes(16), b"", 0x10000)
    with pytest.raises(ValueError):
        initialize_update_response(0x30, bytes(7), bytes(8), 1)
