"""ES8 codec (ota.es8): byte layouts shared by the SM-DP, the SM-SR relay and the simulated ISD-P."""

from __future__ import annotations

import pytest

from keys.dgi import encode_dgi
from ota import es8
from ota.es5 import Apdu

h = bytes.fromhex

ISDP = h("A0000005591010FFFFFFFF8900001000")
ISDR = h("A0000005591010FFFFFFFF8900000100")


def test_isdp_tar_is_aid_bytes_13_to_15():
    assert es8.isdp_tar(ISDP) == h("000010")
    assert es8.isdp_tar(ISDR) == h("000001")  # the ISD-R's TAR by the same rule
    assert es8.isdp_tar(ISDP[:15]) == h("000010")
    for bad in (ISDP[:14], ISDP + b"\x00"):
        with pytest.raises(ValueError):
            es8.isdp_tar(bad)


def test_install_for_personalization_golden():
    apdu = es8.install_for_personalization(ISDP)
    assert apdu == h("80E6200016" "0000" "10A0000005591010FFFFFFFF8900001000" "000000")
    assert es8.parse_install_for_personalization(Apdu.parse(apdu)) == ISDP
    with pytest.raises(ValueError):
        es8.install_for_personalization(h("A000"))


@pytest.mark.parametrize("apdu", [
    "80E60C0016" "0000" "10A0000005591010FFFFFFFF8900001000" "000000",  # INSTALL [for install ...]
    "80E6200015" "0000" "10A0000005591010FFFFFFFF8900001000" "0000",  # token missing
    "80E6200017" "0000" "10A0000005591010FFFFFFFF8900001000" "00000000",  # trailing byte
    "80E6200005" "0000" "00" "0000",  # empty AID
    "80E2200016" "0000" "10A0000005591010FFFFFFFF8900001000" "000000",  # not INSTALL
])
def test_parse_install_for_personalization_refusals(apdu):
    with pytest.raises(ValueError):
        es8.parse_install_for_personalization(Apdu.parse(h(apdu)))


def test_store_data_3a01_golden():
    cert = h("7F2106" "930101" "420100")  # only the outer '7F21' matters to the codec
    apdu = es8.store_data_3a01(cert)
    assert apdu == h("80E209000C" "3A0109" "7F2106930101420100" "00")
    assert es8.parse_store_data(Apdu.parse(apdu)) == (0x3A01, cert)
    with pytest.raises(ValueError):
        es8.store_data_3a01(h("930101"))  # not a '7F21'


def test_store_data_3a02_golden():
    dgi = encode_dgi(0x3A02, h("A603900203") + h("7F4900") + h("5F3700"))
    apdu = es8.store_data_3a02(dgi)
    assert apdu == h("80E28901") + bytes([len(dgi)]) + dgi + h("00")
    assert es8.parse_store_data(Apdu.parse(apdu)) == (0x3A02, h("A603900203" "7F4900" "5F3700"))
    with pytest.raises(ValueError):
        es8.store_data_3a02(encode_dgi(0x3A01, h("7F2100")))
    with pytest.raises(ValueError):
        es8.store_data_3a02(dgi + b"\x00")


def test_parse_store_data_accepts_block_zero_and_refuses_non_dgi_format():
    assert es8.parse_store_data(Apdu.parse(h("80E2090005" "3A01027F21"))) == (0x3A01, h("7F21"))
    with pytest.raises(ValueError):
        es8.parse_store_data(Apdu.parse(h("80E2010005" "3A01027F21")))  # P1 b4 clear: not DGI format
    with pytest.raises(ValueError):
        es8.parse_store_data(Apdu.parse(h("80E2090005" "3A01037F21")))  # DGI length wrong


def test_command_tlv_and_send_data_payload():
    apdu = es8.install_for_personalization(ISDP)
    tlv = es8.command_tlv(apdu)
    assert tlv == h("221B") + apdu
    init = h("840A" "30" "01" "0102030405060708")
    payload = es8.send_data_payload([tlv, init])
    assert payload == tlv + init
    assert es8.split_send_data(payload) == [tlv, init]
    with pytest.raises(ValueError):
        es8.command_tlv(h("80E2"))


def test_long_segment_round_trip():
    segment = h("86820208") + bytes(520)
    assert es8.split_send_data(es8.send_data_payload([segment, segment])) == [segment, segment]


@pytest.mark.parametrize("commands", [
    [],
    [h("2302") + h("9000")],  # a response tag
    [h("22029000")],  # C-APDU shorter than a header
    [h("8403") + h("300101") + h("00")],  # two TLVs in one command
    [h("8403") + h("3001")],  # truncated
    [h("AA03") + h("840100")],  # a whole script is not a command
])
def test_send_data_payload_refusals(commands):
    with pytest.raises(ValueError):
        es8.send_data_payload(commands)


@pytest.mark.parametrize("data", ["", "23029000", "840330010100", "22029000", "870100", "9F840100", "AA03840100"])
def test_split_send_data_refusals(data):
    with pytest.raises(ValueError):
        es8.split_send_data(h(data))


def test_send_data_payload_refuses_one_byte_string():
    with pytest.raises(TypeError):
        es8.send_data_payload(h("840100"))  # type: ignore[arg-type]


@pytest.mark.parametrize("tag,value,error", [
    (0x23, h("9000"), False),
    (0x23, h("851012") + bytes(15) + h("9000"), False),
    (0x23, h("6110"), False),
    (0x23, h("6283"), False),
    (0x23, h("63C1"), False),
    (0x23, h("6982"), True),
    (0x23, h("6985"), True),
    (0x23, h("9001"), True),
    (0x23, h("90"), True),
    (0x84, bytes(29), False),
    (0x85, bytes(8), False),
    (0x86, bytes(8), False),
    (0x9F84, h("01"), True),
    (0x9F85, h("01"), True),
    (0x9F86, h("01"), True),
    (0x90, h("01"), True),
])
def test_is_error_response(tag, value, error):
    assert es8.is_error_response(tag, value) is error


def test_parse_send_data_response_golden():
    script = h("AB21" "800103" "2302" "9000" "2314" "8510") + bytes(16) + h("9000" "9F860101")
    assert es8.parse_send_data_response(script) == (
        3, [(0x23, h("9000")), (0x23, h("8510") + bytes(16) + h("9000")), (0x9F86, h("01"))])


@pytest.mark.parametrize("script", [
    "AB0B" "800101" "2302" "9000" "2302" "9000",  # more responses than executed
    "AB07" "800101" "2202" "9000",  # a command tag
    "AA06" "2302" "9000" "800101",  # a command template
])
def test_parse_send_data_response_refusals(script):
    with pytest.raises(ValueError):
        es8.parse_send_data_response(h(script))
