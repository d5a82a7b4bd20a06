"""ES5 codec: exact bytes of every builder (derived by hand from sgp02-wire §6.2), parsers and round trips."""

from __future__ import annotations

import pytest

from keys import dgi
from ota import es5
from ota.es5 import Apdu

H = bytes.fromhex
ISDP = H("A0000005591010FFFFFFFF8900001000")  # demo ISD-P 0
ISDP_HEX = "A0000005591010FFFFFFFF8900001000"
ELF = H("A0000005591010FFFFFFFF8900000D00")
MODULE = H("A0000005591010FFFFFFFF8900000E00")
EID = H("89049032000000000000000000000142")


def hx(s: str) -> bytes:
    return H(s.replace(" ", ""))


# --- builders: exact bytes -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("apdu", "expected"), [
    # 4F 10 <16> = 18 = 0x12 bytes; DGI 3A0x 12 <18> = 21 = 0x15 = Lc
    (es5.enable_profile(ISDP), f"80E28800 15 3A03 12 4F10 {ISDP_HEX}"),
    (es5.disable_profile(ISDP), f"80E28800 15 3A04 12 4F10 {ISDP_HEX}"),
    (es5.set_fallback_attribute(ISDP), f"80E28800 15 3A05 12 4F10 {ISDP_HEX}"),
    (es5.delete_isdp(ISDP), f"80E40040 12 4F10 {ISDP_HEX}"),
    (es5.get_status_isdp(ISDP), f"80F24002 12 4F10 {ISDP_HEX} 00"),
    (es5.get_status_isdp(), "80F24002 02 4F00 00"),
    (es5.get_status_isdp(None), "80F24002 02 4F00 00"),
    # 3A08 04 { 4E 02 seq } = 7 bytes, response expected: P1 89 and Le 00
    (es5.notification_confirmation(0x0102), "80E28900 07 3A08 04 4E02 0102 00"),
    (es5.notification_confirmation(1), "80E28900 07 3A08 04 4E02 0001 00"),
    (es5.get_data_resources(), "80CAFF21 00"),
    # '+447700900123': TON/NPI 91, digits 44 77 00 90 01 23 swapped -> 44 77 00 09 10 32; 81 07, A3 09, 3A07 0B
    (es5.update_smsr_addressing("+447700900123"), "80E28800 0E 3A07 0B A309 8107 91 447700091032"),
    # odd digit count, no '+': TON/NPI 81, 'F'-padded
    (es5.update_smsr_addressing("12345"), "80E28800 0B 3A07 08 A306 8104 81 2143F5"),
])
def test_builder_bytes(apdu: bytes, expected: str) -> None:
    assert apdu == hx(expected)


def test_create_isdp_bytes() -> None:
    # params: C9 04 81020370 (6) + EF 04 { 83 02 8000 } (6) = 12 = 0x0C
    # data: 3 x (10 + 16) = 51, 03 80C000 = 4, 0C + 12 = 13, token 00 = 1 -> 69 = 0x45
    expected = (f"80E60C00 45 10 A0000005591010FFFFFFFF8900000D00 10 A0000005591010FFFFFFFF8900000E00 "
                f"10 {ISDP_HEX} 03 80C000 0C C904 81020370 EF04 83028000 00")
    assert es5.create_isdp(ELF, MODULE, ISDP, 0x8000) == hx(expected)


def test_create_isdp_large_memory_uses_four_bytes() -> None:
    params = es5.isdp_install_parameters(400_000)
    assert params == hx("C904 81020370 EF06 830400061A80")
    assert es5.decode_isdp_install_memory(params) == 400_000


def test_master_delete_bytes() -> None:
    # B6 { 42 01 01, 45 01 02, 5F20 01 03, 93 01 04 } = 3+3+4+3 = 13 = 0x0D; total 18 + 15 + 10 = 43 = 0x2B
    apdu = es5.master_delete(ISDP, bytes(range(8)), sd_identification_number=b"\x01", sd_image_number=b"\x02",
                             application_provider_id=b"\x03", token_identifier=b"\x04")
    assert apdu == hx(f"80E40040 2B 4F10 {ISDP_HEX} B60D 420101 450102 5F200103 930104 9E08 0001020304050607")
    # the token is computed over P1 P2 Lc(without token) data(without token): 18 + 15 = 33 = 0x21
    signed = es5.master_delete_token_data(ISDP, sd_identification_number=b"\x01", sd_image_number=b"\x02",
                                          application_provider_id=b"\x03", token_identifier=b"\x04")
    assert signed == hx(f"0040 21 4F10 {ISDP_HEX} B60D 420101 450102 5F200103 930104")


def test_master_delete_needs_token() -> None:
    with pytest.raises(ValueError):
        es5.master_delete(ISDP, b"")


@pytest.mark.parametrize("builder", [es5.enable_profile, es5.disable_profile, es5.delete_isdp, es5.get_status_isdp])
@pytest.mark.parametrize("aid", [b"\xA0\x00\x00\x05", bytes(17)])
def test_builders_refuse_bad_aid(builder, aid: bytes) -> None:
    with pytest.raises(ValueError):
        builder(aid)


@pytest.mark.parametrize("bad", ["", "+", "12a4", "+12 34", "1" * 21, "١٢٣"])
def test_smsr_address_refuses_non_digits(bad: str) -> None:
    with pytest.raises(ValueError):
        es5.update_smsr_addressing(bad)


def test_notification_confirmation_range() -> None:
    with pytest.raises(ValueError):
        es5.notification_confirmation(0x10000)


# --- APDU framing --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "apdu"), [
    ("80CAFF21", Apdu(0x80, 0xCA, 0xFF, 0x21)),
    ("80CAFF2100", Apdu(0x80, 0xCA, 0xFF, 0x21, le=0)),
    ("80E2880003010203", Apdu(0x80, 0xE2, 0x88, 0x00, b"\x01\x02\x03")),
    ("80E289000301020300", Apdu(0x80, 0xE2, 0x89, 0x00, b"\x01\x02\x03", 0)),
])
def test_apdu_cases(raw: str, apdu: Apdu) -> None:
    assert Apdu.parse(H(raw)) == apdu
    assert apdu.to_bytes() == H(raw)


@pytest.mark.parametrize("raw", ["", "80E288", "80E28800030102", "80E288000301", "80E28800030102030000",
                                 "80E2880000000001"])
def test_apdu_malformed(raw: str) -> None:
    with pytest.raises(ValueError):
        Apdu.parse(H(raw))


def test_apdu_refuses_extended_data() -> None:
    with pytest.raises(ValueError):
        Apdu(0x80, 0xE2, 0x88, 0x00, bytes(256)).to_bytes()


def test_response_helpers() -> None:
    assert es5.with_sw(b"\x80\x00", es5.SW_OK) == H("80009000")
    assert es5.split_response(H("80009000")) == (H("8000"), 0x9000)
    assert es5.split_response(H("6A88")) == (b"", 0x6A88)
    with pytest.raises(ValueError):
        es5.split_response(b"\x90")


@pytest.mark.parametrize(("size", "header"), [(0, "3A0300"), (254, "3A03FE"), (255, "3A03FF00FF"),
                                              (300, "3A03FF012C")])
def test_dgi_length_rule(size: int, header: str) -> None:
    encoded = dgi.encode_dgi(0x3A03, bytes(size))
    assert encoded[: len(H(header))] == H(header)
    assert dgi.parse_dgi(encoded) == (0x3A03, bytes(size))


@pytest.mark.parametrize("raw", ["3A03", "3A0302AA", "3A0301AABB", "3A03FF00"])
def test_dgi_malformed(raw: str) -> None:
    with pytest.raises(ValueError):
        dgi.parse_dgi(H(raw))


# --- card-side command parsers -------------------------------------------------------------------------------------

def test_parse_store_data_and_aid() -> None:
    for builder, expected in ((es5.enable_profile, 0x3A03), (es5.disable_profile, 0x3A04),
                              (es5.set_fallback_attribute, 0x3A05)):
        got_dgi, value = es5.parse_store_data(Apdu.parse(builder(ISDP)))
        assert got_dgi == expected
        assert es5.aid_of(value) == ISDP


def test_parse_store_data_refuses_chained_block() -> None:
    with pytest.raises(ValueError):
        es5.parse_store_data(Apdu(0x80, 0xE2, 0x08, 0x00, dgi.encode_dgi(0x3A03, b"")))


@pytest.mark.parametrize("value", ["", "4F00", "4F04A0000005", "5A01FF", "4F10A0"])
def test_aid_of_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        es5.aid_of(H(value))


def test_parse_notification_confirmation() -> None:
    _, value = es5.parse_store_data(Apdu.parse(es5.notification_confirmation(0xBEEF)))
    assert es5.parse_notification_confirmation(value) == 0xBEEF
    with pytest.raises(ValueError):
        es5.parse_notification_confirmation(H("4F00"))


def test_smsr_addressing_round_trip() -> None:
    for address in ("+447700900123", "12345", "+1", "0" * 20):
        _, value = es5.parse_store_data(Apdu.parse(es5.update_smsr_addressing(address)))
        assert es5.decode_smsr_addressing(value) == address


@pytest.mark.parametrize("value", ["", "A300", "A3028101", "A303 8102 91AB", "A303 8102 91F1"])
def test_smsr_addressing_malformed(value: str) -> None:
    with pytest.raises(ValueError):
        es5.decode_smsr_addressing(hx(value))


def test_parse_install_round_trip() -> None:
    request = es5.parse_install(Apdu.parse(es5.create_isdp(ELF, MODULE, ISDP, 123_456)))
    assert (request.elf_aid, request.module_aid, request.aid) == (ELF, MODULE, ISDP)
    assert request.privileges == H("80C000")
    assert request.token == b""
    assert request.memory == 123_456


def test_install_memory_alternative_tags() -> None:
    assert es5.decode_isdp_install_memory(hx("C900 EF04 C8021000")) == 0x1000
    assert es5.decode_isdp_install_memory(hx("C900 EF04 D8022000")) == 0x2000
    assert es5.decode_isdp_install_memory(hx("C904 81020370")) is None


@pytest.mark.parametrize("data", ["", "10A0", "05A000000559 05A000000559 05A000000559 00 00",
                                  "05A000000559 05A000000559 05A000000559 00 00 00 AA"])
def test_parse_install_malformed(data: str) -> None:
    with pytest.raises(ValueError):
        es5.parse_install(Apdu(0x80, 0xE6, 0x0C, 0x00, hx(data)))


def test_parse_delete() -> None:
    plain = es5.parse_delete(Apdu.parse(es5.delete_isdp(ISDP)))
    assert plain == es5.DeleteRequest(ISDP) and not plain.is_master_delete
    master = es5.parse_delete(Apdu.parse(es5.master_delete(ISDP, b"\xAA" * 8, token_identifier=b"\x01")))
    assert master.is_master_delete and master.token == b"\xAA" * 8 and master.crt == H("930101")
    with pytest.raises(ValueError):
        es5.parse_delete(Apdu(0x80, 0xE4, 0x00, 0x40, H("F203010103")))


def test_parse_get_status() -> None:
    assert es5.parse_get_status(Apdu.parse(es5.get_status_isdp(ISDP))) == ISDP
    assert es5.parse_get_status(Apdu.parse(es5.get_status_isdp())) is None
    # WHTY's form with a tag list
    assert es5.parse_get_status(Apdu(0x80, 0xF2, 0x40, 0x02, hx(f"4F10{ISDP_HEX} 5C034F9F70"), 0)) == ISDP


# --- responses -----------------------------------------------------------------------------------------------------

def test_isdp_status_bytes_and_round_trip() -> None:
    status = es5.IsdpStatus(ISDP, es5.ENABLED, True, 0x8000)
    # 4F 10 (18) + 9F70 01 3F (4) + 53 01 01 (3) + 8F 02 8000 (4) = 29 = 0x1D
    assert es5.encode_isdp_status(status) == hx(f"E31D 4F10{ISDP_HEX} 9F70013F 530101 8F028000")
    other = es5.IsdpStatus(H("A0000005591010FFFFFFFF8900001100"), es5.DISABLED, False, 400_000, 1_000)
    data = es5.encode_isdp_status(status) + es5.encode_isdp_status(other)
    assert es5.decode_isdp_statuses(data) == [status, other]


def test_isdp_status_lenient_decode() -> None:
    # no '53', an unknown 'C5' privileges field: decoded, fall-back false; 18 + 4 + 5 = 27 = 0x1B
    data = hx(f"E31B 4F10{ISDP_HEX} 9F70011F C503800000")
    assert es5.decode_isdp_statuses(data) == [es5.IsdpStatus(ISDP, es5.DISABLED, False)]
    assert es5.decode_isdp_statuses(b"") == []


@pytest.mark.parametrize("data", ["E300", f"E312 4F10{ISDP_HEX}", "E5024F00", "E305"])
def test_isdp_status_malformed(data: str) -> None:
    with pytest.raises(ValueError):
        es5.decode_isdp_statuses(hx(data))


def test_card_resources() -> None:
    resources = es5.CardResources(3, 400_000, 0x2000)
    encoded = es5.encode_card_resources(resources)
    assert encoded == hx("FF210D 810103 820400061A80 83022000")
    assert es5.decode_card_resources(encoded) == resources
    assert es5.decode_card_resources(encoded[3:]) == resources  # without the 'FF21' wrapper
    with pytest.raises(ValueError):
        es5.decode_card_resources(hx("FF2103810103"))


def test_confirmation_response() -> None:
    assert es5.encode_confirmation_response([]) == H("8000")
    assert es5.encode_confirmation_response([ISDP]) == hx(f"8012 4F10{ISDP_HEX}")
    assert es5.decode_confirmation_response(hx(f"8012 4F10{ISDP_HEX}")) == [ISDP]
    assert es5.decode_confirmation_response(H("8000")) == []
    assert es5.decode_confirmation_response(b"") == []
    for bad in ("8102 4F00", "8003 5A01FF", "8000 8000"):
        with pytest.raises(ValueError):
            es5.decode_confirmation_response(hx(bad))


# --- default notification ------------------------------------------------------------------------------------------

def test_notification_bytes_and_round_trip() -> None:
    n = es5.Notification(EID, es5.NOTIF_PROFILE_CHANGE_OK, 7, ISDP)
    # 4C 10 (18) + 4D 01 02 (3) + 4E 02 0007 (4) + 4F 10 (18) = 43 = 0x2B
    assert es5.encode_notification(n) == hx(f"E12B 4C10{EID.hex()} 4D0102 4E020007 4F10{ISDP_HEX}")
    assert es5.decode_notification(es5.encode_notification(n)) == n
    with_device = es5.Notification(EID, es5.NOTIF_FIRST_ATTACH, 1, ISDP, imei=H("3515230000000010"))
    assert es5.decode_notification(es5.encode_notification(with_device)) == with_device


@pytest.mark.parametrize("aid_tag", ["2F", "AF", "4F"])
def test_notification_accepts_every_aid_tag(aid_tag: str) -> None:
    data = hx(f"E12B 4C10{EID.hex()} 4D0105 4E020100 {aid_tag}10{ISDP_HEX}")
    assert es5.decode_notification(data) == es5.Notification(EID, es5.NOTIF_FALLBACK, 0x100, ISDP)


@pytest.mark.parametrize("data", [
    f"E119 4C10{EID.hex()} 4D0102 4E020007",  # no AID
    f"E22B 4C10{EID.hex()} 4D0102 4E020007 4F10{ISDP_HEX}",  # not E1
    f"E12C 4C10{EID.hex()} 4D020102 4E020007 4F10{ISDP_HEX}",  # two-byte type
    "E1",
])
def test_notification_malformed(data: str) -> None:
    with pytest.raises(ValueError):
        es5.decode_notification(hx(data))


def test_notification_refuses_bad_eid() -> None:
    with pytest.raises(ValueError):
        es5.encode_notification(es5.Notification(EID[:8], 2, 1, ISDP))


# --- SM-SR change: EstablishISDRKeySet and FinaliseISDRhandover ----------------------------------------------------

# A stand-in '7F21' (the codec checks only that it is one '7F21' TLV; tests/euicc_sim/test_isdr_key_sets.py sends real
# certificates): 7F21 06 { 93 01 01, 42 01 02 }
CERT = hx("7F21 06 930101 420102")
RC = H("C0C1C2C3C4C5C6C7C8C9CACBCCCDCECF")
RECEIPT = bytes(range(16))


def test_establish_isdr_key_set_bytes() -> None:
    # DGI 3A01 09 <9 bytes> = 12 = 0x0C = Lc; P1 '09': DGI format, response expected, more blocks follow; Le 00
    assert es5.establish_isdr_key_set_3a01(CERT) == hx("80E20900 0C 3A01 09 7F2106930101420102 00")
    dgi_3a02 = hx("3A02 05 A603900100")  # the codec takes the DGI keys.ecka.isdr_dgi_3a02 made, as is
    assert es5.establish_isdr_key_set_3a02(dgi_3a02) == hx("80E28901 08 3A0205A603900100 00")  # last block 1


@pytest.mark.parametrize("bad", [hx("930101"), CERT + b"\x00", CERT * 2, b""])
def test_establish_isdr_key_set_3a01_refuses(bad: bytes) -> None:
    with pytest.raises(ValueError):
        es5.establish_isdr_key_set_3a01(bad)


@pytest.mark.parametrize("bad", [hx("3A01 05 A603900100"), hx("3A02 06 A603900100"), b"\x3A"])
def test_establish_isdr_key_set_3a02_refuses(bad: bytes) -> None:
    with pytest.raises(ValueError):
        es5.establish_isdr_key_set_3a02(bad)


def test_establish_isdr_key_set_answers() -> None:
    assert es5.decode_isdr_challenge(b"\x85\x10" + RC) == RC
    assert es5.decode_isdr_key_set_receipt(b"\x85\x10" + RC + b"\x86\x10" + RECEIPT) == (RC, RECEIPT)
    assert es5.decode_isdr_key_set_receipt(b"\x86\x10" + RECEIPT) == (None, RECEIPT)
    for bad in (b"", b"\x86\x10" + RC, b"\x85\x10" + RC + b"\x00"):
        with pytest.raises(ValueError):
            es5.decode_isdr_challenge(bad)
    for bad in (b"", b"\x85\x10" + RC, b"\x86\x08" + RECEIPT[:8], b"\x86\x10" + RECEIPT + b"\x85\x10" + RC):
        with pytest.raises(ValueError):
            es5.decode_isdr_key_set_receipt(bad)


def test_parse_isdr_key_set_store_data() -> None:
    apdu = Apdu.parse(es5.establish_isdr_key_set_3a01(CERT))
    assert es5.parse_isdr_key_set_store_data(apdu) == (0x3A01, hx("3A01 09 7F2106930101420102"))
    apdu = Apdu.parse(es5.establish_isdr_key_set_3a02(hx("3A02 05 A603900100")))
    assert es5.parse_isdr_key_set_store_data(apdu) == (0x3A02, hx("3A02 05 A603900100"))
    for raw in ("80E20100 0C 3A01 09 7F2106930101420102",  # P1 not in DGI format
                "80E28800 15 3A03 12 4F10 " + ISDP_HEX,  # another DGI
                "80E40000 05 F203010103"):  # not STORE DATA
        with pytest.raises(ValueError):
            es5.parse_isdr_key_set_store_data(Apdu.parse(hx(raw)))


def test_finalise_isdr_handover_bytes() -> None:
    # one whole SCP80 key set: F2 03 KVN 01 03 (njiwa's form)
    assert es5.finalise_isdr_handover([1]) == hx("80E40000 05 F203010103")
    # WHTY's two deletions, an SCP80 key set and an SCP81 one with two keys (sgp02-wire §6.2)
    assert es5.finalise_isdr_handover([1, es5.KeySetDeletion(0x41, 1, 2)]) == hx("80E40000 0A F203010103 F203410102")
    assert es5.finalise_isdr_handover((3, 2)) == hx("80E40000 0A F203030103 F203020103")


@pytest.mark.parametrize("bad", [[], [0], [256], [1, 1], [1, es5.KeySetDeletion(1, 1, 2)], [-1], [True]])
def test_finalise_isdr_handover_refuses(bad: list) -> None:
    with pytest.raises(ValueError):
        es5.finalise_isdr_handover(bad)


def test_finalise_isdr_handover_refuses_other_types() -> None:
    for bad in (1, b"\x01"):
        with pytest.raises(TypeError):
            es5.finalise_isdr_handover(bad)
    for first, last in ((0, 3), (3, 1)):
        with pytest.raises(ValueError):
            es5.KeySetDeletion(1, first, last)


def test_parse_finalise_isdr_handover() -> None:
    apdu = Apdu.parse(es5.finalise_isdr_handover([1, es5.KeySetDeletion(0x41, 1, 2)]))
    assert es5.is_key_set_deletion(apdu)
    assert es5.parse_finalise_isdr_handover(apdu) == [es5.KeySetDeletion(1, 1, 3), es5.KeySetDeletion(0x41, 1, 2)]
    assert not es5.is_key_set_deletion(Apdu.parse(es5.delete_isdp(ISDP)))
    for data in ("F2020101",  # two bytes
                 "F203010103 4F10" + ISDP_HEX,  # a key set and an ISD-P
                 "F203010103 F203010203",  # key set 1 twice
                 "F203000103",  # KVN 0
                 "F20301",  # truncated
                 ""):
        with pytest.raises(ValueError):
            es5.parse_finalise_isdr_handover(Apdu(0x80, 0xE4, 0x00, 0x00, hx(data)))
