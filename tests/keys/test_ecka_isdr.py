"""Scenario #3 in the ISD-R case (SM-SR change): keys.ecka's ES7 mapping, SM-SR2's two ends, the ISD-R's end.

Known answers as in test_ecka.py: the key pairs are published ECDH vectors (so ShS is a published value), and every
byte after ShS (CRT, STORE DATA '3A02', key data, receipt, answer) is computed by tests/keys/reference.py, never by
keys.ecka. Each end of esx is checked on its own against those bytes.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from keys.dgi import parse_dgi
from keys.ecka import (
    AdditionalKeySet,
    EckaError,
    IsdrKeySet,
    card_isdr_key_agreement,
    derive_keys,
    encode_public_key,
    free_scp80_kvn,
    isdr_crt,
    isdr_dgi_3a02,
    key_agreement_response,
    receipt,
    shared_secret,
    signed_data,
    smsr_finish,
    smsr_key_agreement,
)
from keys.scp80 import Scp80Keyset
from tests.keys import reference as ref
from tests.keys import vectors as v

RC = bytes.fromhex("C0C1C2C3C4C5C6C7C8C9CACBCCCDCECF")
DR = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
KAT_SMSR_KEY = "0A5B4F1DA1C2E3F40718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E"  # SK.SR.ECDSA: any P-256 scalar
CURVES = [ec.SECP256R1(), ec.BrainpoolP256R1()]

# curve name -> (private scalar, the other party's public point, published ShS)
ECDH = {
    "secp256r1": (v.CAVP_CDH_P256_D_IUT, v.CAVP_CDH_P256_Q_CAVS, v.CAVP_CDH_P256_Z),
    "brainpoolP256r1": (v.RFC7027_D_A, v.RFC7027_Q_B, v.RFC7027_Z),
}


def private(curve: ec.EllipticCurve, d: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int(d, 16), curve)


def public(curve: ec.EllipticCurve, x: str, y: str) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(curve, bytes.fromhex("04" + x + y))


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def es7_fields(epk: bytes, **overrides) -> dict:
    fields = dict(key_version_number=2, initial_sequence_counter=-1, ecc_key_length="ECC-256", scenario_parameter=0x0A,
                  host_id=b"", ephemeral_public_key=epk, signature=None)
    fields.update(overrides)
    return fields


@pytest.fixture(scope="module")
def epk() -> bytes:
    return encode_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())


# --- ES7 CreateAdditionalKeySet fields -> STORE DATA '3A02' ---------------------------------------------------------


def test_crt_bytes_written_by_hand(epk: bytes) -> None:
    # KVN 2, parameter '0A' (certificate first, DR), no HostID: the WHTY ISD-R literal with '0A' for '09'
    # (sgp02-v4-es7-notes.md §3.3: 90 02 03 09 | 95 01 10 | 80 01 88 | 81 01 10 | 82 01 01 | 83 01 02 | 91 00).
    crt = bytes.fromhex("A615 9002030A 950110 800188 810110 820101 830102 9100")
    assert isdr_crt(2, 0x0A).encode() == crt == ref.isdr_key_agreement_crt(2)
    assert isdr_dgi_3a02(**es7_fields(epk)) == bytes([0x3A, 0x02, len(crt) + len(epk)]) + crt + epk
    signature = bytes(range(64))
    signed = isdr_dgi_3a02(**es7_fields(epk, signature=signature))
    assert signed == bytes([0x3A, 0x02, len(crt) + len(epk) + 67]) + crt + epk + b"\x5F\x37\x40" + signature
    with_host = isdr_dgi_3a02(**es7_fields(epk, scenario_parameter=0x0E, host_id=b"\x01\x02\x03"))
    assert with_host[3:] == bytes.fromhex("A61A 9002030E 950110 800188 810110 820101 830102 9100 8403010203") + epk


@pytest.mark.parametrize("counter", [-1, 0, 1, 12345, 1 << 40])
def test_initial_sequence_counter_is_not_encoded(epk: bytes, counter: int) -> None:
    assert isdr_dgi_3a02(**es7_fields(epk, initial_sequence_counter=counter)) == isdr_dgi_3a02(**es7_fields(epk))


@pytest.mark.parametrize("overrides,kind", [
    ({"key_version_number": 0}, "format"),
    ({"key_version_number": 16}, "format"),  # ES7 allows up to 127, SCP80 addresses 15
    ({"key_version_number": 127}, "format"),
    ({"key_version_number": True}, "format"),
    ({"key_version_number": "2"}, "format"),
    ({"initial_sequence_counter": "-1"}, "format"),
    ({"ecc_key_length": "ECC-128"}, "format"),
    ({"ecc_key_length": "ECC-384"}, "curve"),  # a P-256 ephemeral key
    ({"scenario_parameter": 0x09}, "format"),  # bit '01': meaning unknown, refused (KeyAgreementCrt)
    ({"scenario_parameter": 0x0E}, "format"),  # HostID bit without a HostId
    ({"host_id": b"\x01"}, "format"),  # a HostId without the bit
    ({"signature": b""}, "format"),
    ({"signature": bytes(63)}, "format"),
    ({"ephemeral_public_key": b"\x7F\x49\x00"}, "format"),
])
def test_es7_fields_refused(epk: bytes, overrides: dict, kind: str) -> None:
    with pytest.raises(EckaError) as e:
        isdr_dgi_3a02(**es7_fields(epk, **overrides))
    assert e.value.kind == kind


def test_ecc_key_length_follows_the_curve() -> None:
    p384 = encode_public_key(ec.generate_private_key(ec.SECP384R1()).public_key())
    assert isdr_dgi_3a02(**es7_fields(p384, ecc_key_length="ECC-384")).endswith(p384)
    brainpool = encode_public_key(ec.generate_private_key(ec.BrainpoolP256R1()).public_key())
    assert isdr_dgi_3a02(**es7_fields(brainpool)).endswith(brainpool)


def test_additional_key_set_delegates(epk: bytes) -> None:
    request = AdditionalKeySet(2, -1, "ECC-256", 0x0A, b"", epk, bytes(64))
    assert request.dgi_3a02() == isdr_dgi_3a02(**es7_fields(epk, signature=bytes(64)))
    assert request.crt() == isdr_crt(2, 0x0A)


def test_free_scp80_kvn() -> None:
    assert free_scp80_kvn([]) == 1
    assert free_scp80_kvn([1]) == 2
    assert free_scp80_kvn([1, 2, 4]) == 3
    assert free_scp80_kvn([0x41, 1]) == 2  # an SCP81 key set does not take an SCP80 version
    with pytest.raises(EckaError):
        free_scp80_kvn(range(1, 16))


def test_isdr_key_set_hides_its_keys() -> None:
    keys = IsdrKeySet(Scp80Keyset(kvn=3, enc=bytes(range(16)), mac=bytes(range(16, 32))), bytes(range(32, 48)))
    assert repr(keys) == "IsdrKeySet(kvn=3, <secret>)" and keys.kvn == 3


# --- the three ends, round trip ------------------------------------------------------------------------------------


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: c.name)
@pytest.mark.parametrize("parameter,host_id", [(0x0A, b""), (0x08, b""), (0x0E, bytes(range(16)))],
                         ids=["dr", "no-dr", "host-id"])
def test_round_trip(curve: ec.EllipticCurve, parameter: int, host_id: bytes) -> None:
    ecasd = ec.generate_private_key(curve)
    smsr2 = ec.generate_private_key(ec.SECP256R1())
    request, ephemeral = smsr_key_agreement(smsr2, RC, ecasd.public_key(), 5, scenario_parameter=parameter,
                                            host_id=host_id)
    assert (request.key_version_number, request.initial_sequence_counter, request.ecc_key_length) == (5, -1, "ECC-256")
    relayed = isdr_dgi_3a02(**{**request.__dict__})  # what SM-SR1 builds from the ES7 fields it received
    answer, card_keys, crt = card_isdr_key_agreement(ecasd, smsr2.public_key(), RC, relayed)
    assert crt == isdr_crt(5, parameter, host_id)
    dr, rcpt = (answer[2:18], answer[20:]) if parameter & 0x02 else (None, answer[2:])
    keys = smsr_finish(ephemeral, ecasd.public_key(), request, dr, rcpt)
    assert keys == card_keys and keys.kvn == 5
    assert (keys.scp80.kic, keys.scp80.kid) == (0x52, 0x52)  # KVN 5, AES


def test_smsr_finish_failures() -> None:
    ecasd = ec.generate_private_key(ec.SECP256R1())
    smsr2 = ec.generate_private_key(ec.SECP256R1())
    request, ephemeral = smsr_key_agreement(smsr2, RC, ecasd.public_key(), 2)
    answer, _, _ = card_isdr_key_agreement(ecasd, smsr2.public_key(), RC, request.dgi_3a02(), dr=DR)
    rcpt = answer[-16:]
    assert smsr_finish(ephemeral, ecasd.public_key(), request, DR, rcpt).kvn == 2
    for dr, bad in ((DR, _flip(rcpt, 0)), (_flip(DR, 3), rcpt), (DR, rcpt[:8]), (DR, b"")):
        with pytest.raises(EckaError) as e:
            smsr_finish(ephemeral, ecasd.public_key(), request, dr, bad)
        assert e.value.kind == "receipt"
    with pytest.raises(EckaError) as e:  # the receipt of another eUICC
        smsr_finish(ephemeral, ec.generate_private_key(ec.SECP256R1()).public_key(), request, DR, rcpt)
    assert e.value.kind == "receipt"
    for missing in (None, b""):  # the CRT asks for a DR
        with pytest.raises(EckaError) as e:
            smsr_finish(ephemeral, ecasd.public_key(), request, missing, rcpt)
        assert e.value.kind == "format"


def test_card_refuses_what_is_no_scp80_key_set() -> None:
    ecasd = ec.generate_private_key(ec.SECP256R1())
    smsr2 = private(ec.SECP256R1(), KAT_SMSR_KEY)
    epk = ref.public_key_tlv(ec.generate_private_key(ec.SECP256R1()).public_key())
    for crt in (ref.key_agreement_crt(kvn=0x30, key_id=0x01),  # an SCP03 KVN
                ref.key_agreement_crt(kvn=0x00, key_id=0x01),
                ref.key_agreement_crt(kvn=0x02, key_id=0x02)):  # does not start at KIc
        dgi = ref.isdr_store_data_3a02(crt, epk, ref.isdr_signature(smsr2, crt, epk, RC))
        with pytest.raises(EckaError) as e:
            card_isdr_key_agreement(ecasd, smsr2.public_key(), RC, dgi)
        assert e.value.kind == "format"
    crt = ref.isdr_key_agreement_crt(2)
    dgi = ref.isdr_store_data_3a02(crt, epk, ref.isdr_signature(smsr2, crt, epk, RC))
    with pytest.raises(EckaError) as e:  # signed by another SM-SR
        card_isdr_key_agreement(ecasd, ec.generate_private_key(ec.SECP256R1()).public_key(), RC, dgi)
    assert e.value.kind == "signature"
    with pytest.raises(EckaError) as e:  # signed for another challenge
        card_isdr_key_agreement(ecasd, smsr2.public_key(), bytes(16), dgi)
    assert e.value.kind == "signature"


# --- known answers ---------------------------------------------------------------------------------------------------

VARIANTS = {  # name -> (KVN, scenario parameter, HostId)
    "kvn2-dr": (2, 0x0A, b""),
    "kvn15-no-dr": (15, 0x08, b""),
    "kvn3-host-id": (3, 0x0E, bytes.fromhex("000102030405060708090A0B0C0D0E0F")),
}


def _expected(z: bytes, kvn: int, parameter: int, host_id: bytes):
    """(CRT, DR or None, (KIc key, KID key, DEK), the card's answer) from the reference."""
    crt = ref.isdr_key_agreement_crt(kvn, parameter, host_id or None)
    dr = DR if parameter & 0x02 else None
    receipt_key, kic, kid, dek = ref.isdr_scp80_keys(z, dr, host_id or None)
    return crt, dr, (kic, kid, dek), ref.key_agreement_answer(dr, ref.scenario3_receipt(receipt_key, crt, dr))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("curve", CURVES, ids=lambda c: c.name)
def test_known_answer_card(curve: ec.EllipticCurve, variant: str) -> None:
    d, (x, y), z = ECDH[curve.name]
    ecasd, ephemeral_public = private(curve, d), public(curve, x, y)
    smsr2 = private(ec.SECP256R1(), KAT_SMSR_KEY)
    kvn, parameter, host_id = VARIANTS[variant]
    crt, dr, (kic, kid, dek), answer = _expected(bytes.fromhex(z), kvn, parameter, host_id)
    epk = ref.public_key_tlv(ephemeral_public)
    dgi = ref.isdr_store_data_3a02(crt, epk, ref.isdr_signature(smsr2, crt, epk, RC))  # the reference's SM-SR2

    response, keys, card_crt = card_isdr_key_agreement(ecasd, smsr2.public_key(), RC, dgi, dr=dr)
    assert response == answer
    assert card_crt.encode() == crt
    assert (keys.kvn, keys.scp80.enc, keys.scp80.mac, keys.dek) == (kvn, kic, kid, dek)
    assert keys.scp80.algorithm == "aes" and keys.scp80.kic == keys.scp80.kid == kvn << 4 | 0x2


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("curve", CURVES, ids=lambda c: c.name)
def test_known_answer_smsr2(curve: ec.EllipticCurve, variant: str) -> None:
    d, (x, y), z = ECDH[curve.name]
    ephemeral, ecasd_public = private(curve, d), public(curve, x, y)
    smsr2 = private(ec.SECP256R1(), KAT_SMSR_KEY)
    kvn, parameter, host_id = VARIANTS[variant]
    crt, dr, (kic, kid, dek), answer = _expected(bytes.fromhex(z), kvn, parameter, host_id)

    request, _ = smsr_key_agreement(smsr2, RC, ecasd_public, kvn, scenario_parameter=parameter, host_id=host_id,
                                    ephemeral_key=ephemeral)
    epk = ref.public_key_tlv(ephemeral.public_key())
    assert request.ephemeral_public_key == epk and request.host_id == host_id
    # ECDSA is randomised: the bytes around the signature are compared, the signature is verified
    assert request.dgi_3a02() == ref.isdr_store_data_3a02(crt, epk, request.signature)
    assert ref.verify_raw(smsr2.public_key(), ref.signed_data_3a02(crt + epk, RC), request.signature)
    # SM-SR1's bytes: the same function on the same fields gives what SM-SR2 signed
    unsigned = isdr_dgi_3a02(**{**request.__dict__, "signature": None})
    assert unsigned == ref.isdr_store_data_3a02(crt, epk, None)
    assert signed_data(parse_dgi(unsigned)[1], RC) == ref.signed_data_3a02(crt + epk, RC)

    dr_field, receipt_field = (answer[2:18], answer[20:]) if dr else (b"", answer[2:])  # the ES7 callback's fields
    keys = smsr_finish(ephemeral, ecasd_public, request, dr_field, receipt_field)  # the reference card's answer
    assert (keys.kvn, keys.scp80.enc, keys.scp80.mac, keys.dek) == (kvn, kic, kid, dek)
    with pytest.raises(EckaError) as e:
        smsr_finish(ephemeral, ecasd_public, request, dr_field, _flip(receipt_field, -1))
    assert e.value.kind == "receipt"


# KVN 2, parameter '0A', DR above: receipt key, KIc key, KID key, DEK and receipt, computed by reference.py (not by
# keys.ecka) from the published ShS of each curve. A guard against both implementations changing together. The key
# data equals the ISD-P case's (test_ecka.KAT_PINNED): SharedInfo does not hold the KVN or key identifier; the
# receipt, over the CRT, differs.
KAT_PINNED = {
    "secp256r1": (
        "3D558C639B02062DD6EC794D0AAD9A58",
        "5B8452010F54FFE7AFE8D7066C880AF1",
        "78D9C3FB1EE8676C6DBBA3935BA94BD0",
        "A3822E58A177ABFBF776A5338C4FF8DC",
        "850BDAF058070D4F177532DA3B0ECEC3",
    ),
    "brainpoolP256r1": (
        "B7823485E9B4AE6B58B95C88DAE1FFC8",
        "F9C061A662F551B330A5348B93B234D5",
        "FC375EAB36D772072F9813EA310A5AB9",
        "4D09E14E0A94D9119940F55617E693E5",
        "DE1711CFD606C5583E5E5ADA0D032BA2",
    ),
}


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: c.name)
def test_known_answer_pinned(curve: ec.EllipticCurve) -> None:
    shs = bytes.fromhex(ECDH[curve.name][2])
    crt = isdr_crt(2, 0x0A)
    derived = derive_keys(shs, crt, DR)
    got = (derived.receipt_key, derived.keys.enc, derived.keys.mac, derived.keys.dek,
           receipt(derived.receipt_key, crt.encode(), DR))
    receipt_key, *keys = ref.isdr_scp80_keys(shs, DR)
    reference = (receipt_key, *keys, ref.scenario3_receipt(receipt_key, ref.isdr_key_agreement_crt(2), DR))
    assert tuple(b.hex().upper() for b in reference) == KAT_PINNED[curve.name]
    assert got == reference
    assert key_agreement_response(DR, got[-1]) == ref.key_agreement_answer(DR, reference[-1])
    assert shared_secret(private(curve, ECDH[curve.name][0]), public(curve, *ECDH[curve.name][1])) == shs
