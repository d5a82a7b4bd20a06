"""The independent implementation (tests/keys/reference.py) against the published vectors (tests/keys/vectors.py).

The known-answer tests of keys/ take their expected bytes from reference.py; these tests make sure reference.py
itself is right wherever a published vector can say so. Nothing from keys/ is imported here.
"""

from __future__ import annotations

import datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.keys import reference as ref
from tests.keys import vectors as v


@pytest.mark.parametrize("size,mac", v.RFC4493)
def test_cmac_rfc4493(size: int, mac: str) -> None:
    assert ref.aes_cmac(v.RFC4493_KEY, v.RFC4493_MESSAGE[:size]).hex() == mac


@pytest.mark.parametrize("z,info,key_data", v.CAVP_X963_SHA256)
def test_x963_kdf_cavp(z: str, info: str, key_data: str) -> None:
    assert ref.x963_kdf(bytes.fromhex(z), bytes.fromhex(info), len(key_data) // 2).hex() == key_data


@pytest.mark.parametrize("bits,init_update,response,ext_auth", v.PYSIM_SCP03_HANDSHAKES)
def test_scp03_kdf_pysim_handshakes(bits: int, init_update: str, response: str, ext_auth: str) -> None:
    enc, mac, _ = (bytes.fromhex(k) for k in v.PYSIM_SCP03_KEYSETS[bits])
    host_challenge, rsp, ea = bytes.fromhex(init_update)[5:13], bytes.fromhex(response), bytes.fromhex(ext_auth)
    card_challenge = rsp[13:21]
    _, s_mac, _ = ref.scp03_session_keys(enc, mac, host_challenge, card_challenge)
    card_cryptogram, host_cryptogram = ref.scp03_cryptograms(s_mac, host_challenge, card_challenge)
    assert card_cryptogram == rsp[21:29]
    assert host_cryptogram == ea[5:13]
    assert ref.aes_cmac(s_mac, bytes(16) + ea[:5] + host_cryptogram)[:8] == ea[13:]


def test_scp03_response_icv_and_rmac_pysim() -> None:
    # pySim AES128 SL33: the GET EID answer (counter 1) under R-ENC with the '80' counter block, R-MAC under S-RMAC
    # over the MCV of its command. Checks response_icv() and the S-RMAC constant of the reference.
    bits, init_update, response, ext_auth = v.PYSIM_SCP03_HANDSHAKES[v.PYSIM_SCP03_AES128_SL33]
    enc, mac, _ = (bytes.fromhex(k) for k in v.PYSIM_SCP03_KEYSETS[bits])
    s_enc, s_mac, s_rmac = ref.scp03_session_keys(enc, mac, bytes.fromhex(init_update)[5:13],
                                                  bytes.fromhex(response)[13:21])
    ea = bytes.fromhex(ext_auth)
    mcv = ref.aes_cmac(s_mac, bytes(16) + ea[:13])
    get_eid = bytes.fromhex(v.PYSIM_SCP03_AES128_SL33_WRAPPED[0][1])
    mcv = ref.aes_cmac(s_mac, mcv + get_eid[:-9])  # the wrapped command without its C-MAC and Le
    assert mcv[:8] == get_eid[-9:-1]
    rsp = bytes.fromhex(v.PYSIM_SCP03_AES128_SL33_GET_EID_RSP)
    assert ref.aes_cmac(s_rmac, mcv + rsp[:-8] + b"\x90\x00")[:8] == rsp[-8:]
    plain = ref.aes_cbc(s_enc, ref.response_icv(s_enc, 1), rsp[:-8], decrypt=True)
    assert plain == ref.pad80(bytes.fromhex(v.PYSIM_SCP03_AES128_SL33_GET_EID_RSP_PLAIN))


@pytest.mark.parametrize("bits,init_update,response,ext_auth", v.PYSIM_SCP03_HANDSHAKES)
def test_scp03_card_challenge_and_answer_pysim(bits: int, init_update: str, response: str, ext_auth: str) -> None:
    # The card challenges of pySim's traces are pseudo-random ones (i = '70'): derived from the reported counter.
    enc = bytes.fromhex(v.PYSIM_SCP03_KEYSETS[bits][0])
    rsp = bytes.fromhex(response)
    counter = int.from_bytes(rsp[29:32], "big")
    assert ref.scp03_card_challenge(enc, counter, bytes.fromhex(v.PYSIM_SCP03_SD_AID)) == rsp[13:21]
    assert ref.scp03_initialize_update_answer(rsp[10], rsp[13:21], rsp[21:29], counter) == rsp
    assert ref.scp03_initialize_update(rsp[10], bytes.fromhex(init_update)[5:13]) == bytes.fromhex(init_update)


def test_scp03_host_wrapping_pysim() -> None:
    # EXTERNAL AUTHENTICATE at SL '33', GET EID wrapped with counter 1, the R-MAC of its answer.
    bits, init_update, response, ext_auth = v.PYSIM_SCP03_HANDSHAKES[v.PYSIM_SCP03_AES128_SL33]
    enc, mac, _ = (bytes.fromhex(k) for k in v.PYSIM_SCP03_KEYSETS[bits])
    host_challenge, card_challenge = bytes.fromhex(init_update)[5:13], bytes.fromhex(response)[13:21]
    s_enc, s_mac, s_rmac = ref.scp03_session_keys(enc, mac, host_challenge, card_challenge)
    _, host_cryptogram = ref.scp03_cryptograms(s_mac, host_challenge, card_challenge)
    ea, mcv = ref.scp03_external_authenticate(s_mac, host_cryptogram)
    assert ea == bytes.fromhex(ext_auth)
    plain, wrapped = v.PYSIM_SCP03_AES128_SL33_WRAPPED[0]
    got, mcv = ref.scp03_wrap(s_enc, s_mac, mcv, 1, bytes.fromhex(plain))
    assert got == bytes.fromhex(wrapped)
    rsp = bytes.fromhex(v.PYSIM_SCP03_AES128_SL33_GET_EID_RSP)
    assert ref.scp03_r_mac(s_rmac, mcv, rsp[:-8], 0x9000) == rsp[-8:]


def test_scp03t_framing_pysim_bsp_steps() -> None:
    s_enc, s_mac, mcv = (bytes.fromhex(k) for k in v.PYSIM_BSP_KEYS)
    for counter, (tag, plain, protected) in enumerate(v.PYSIM_BSP_STEPS, start=1):
        if tag == 0x88:  # MAC only: same MAC rule, no ciphering (the counter still moves)
            mcv = ref.scp03t_mac(s_mac, mcv, tag, bytes.fromhex(plain))
            out = ref.tlv(tag, bytes.fromhex(plain) + mcv[:8])
        else:
            out, mcv = ref.scp03t_segment(s_enc, s_mac, mcv, counter, bytes.fromhex(plain), tag=tag)
        assert out.hex() == protected


def test_scp03t_framing_pysim_bsp_segments() -> None:
    s_enc, s_mac, mcv = (bytes.fromhex(k) for k in v.PYSIM_BSP_SEGMENT_KEYS)
    first, mcv = ref.scp03t_segment(s_enc, s_mac, mcv, 1, v.PYSIM_BSP_SEGMENT_0)
    assert first == v.PYSIM_BSP_SEGMENT_0_86  # '82' length form: 1007 bytes become 1008 + 8
    second, _ = ref.scp03t_segment(s_enc, s_mac, mcv, 2, v.PYSIM_BSP_SEGMENT_1)
    assert second == v.PYSIM_BSP_SEGMENT_1_86


def test_gp_certificate_gppro() -> None:
    tbs, signature = ref.gp_certificate_split(v.GPPRO_CERTIFICATE)
    assert tbs == v.GPPRO_CERTIFICATE[4:-67]
    ca = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), v.GPPRO_CA_POINT)
    assert ref.verify_raw(ca, tbs, signature)
    assert not ref.verify_raw(ca, tbs[:-1] + bytes([tbs[-1] ^ 1]), signature)
    point = tbs[tbs.index(b"\xB0\x41") + 2 :][:65]
    subject = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    rebuilt = ref.gp_certificate_tbs(
        serial=bytes.fromhex("01020304"), ca_id=bytes.fromhex("A000000151000000"),
        subject_id=bytes.fromhex("A000000151535041"), key_usage=bytes.fromhex("0080"),
        effective=datetime.date(2026, 1, 1), expiry=datetime.date(2036, 12, 31), public_key=subject,
    )  # fmt: skip
    assert rebuilt == tbs
