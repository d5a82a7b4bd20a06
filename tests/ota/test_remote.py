"""Expanded remote command/response format (ota.remote), TS 102 226 §5.2.

Golden byte strings come from osmocom/pysim ``tests/unittests/test_ota.py`` (ExpandedCmdTestCase,
ExpandedRespTestCase, ExpandedIndefiniteTestCase; the indefinite ones captured from a live eUICC), used as facts.
"""

from __future__ import annotations

import pytest

from ota.remote import (
    ResponseScript,
    decode_command_script,
    decode_command_tlvs,
    decode_response_script,
    decode_response_tlvs,
    encode_command_script,
    encode_command_tlvs,
    encode_response_script,
    encode_response_tlvs,
    split_tlvs,
)

h = bytes.fromhex

GET_STATUS = h("80f24002024f0000")
SELECT_MF = h("00a40004023f0000")


# --- command scripts ---------------------------------------------------------------------------------------------


def test_single_capdu_golden():
    assert encode_command_script([GET_STATUS]) == h("aa0a220880f24002024f0000")
    assert decode_command_script(h("aa0a220880f24002024f0000")) == [GET_STATUS]


def test_multi_capdu_golden():
    encoded = h("aa14220880f24002024f0000220800a40004023f0000")
    assert encode_command_script([GET_STATUS, SELECT_MF]) == encoded
    assert decode_command_script(encoded) == [GET_STATUS, SELECT_MF]


def test_long_form_lengths_golden():
    capdu = h("80f24000") + bytes([195]) + bytes(range(195))
    encoded = encode_command_script([capdu])
    assert encoded[:6] == h("aa81cb2281c8") and encoded[6:] == capdu
    assert decode_command_script(encoded) == [capdu]


def test_indefinite_command_scripts_golden():
    assert decode_command_script(h("ae80220580ca00e0000000")) == [h("80ca00e000")]
    assert decode_command_script(h("ae80220700a4000c023f00220700a4000c022fe2220500b000000a0000")) == [
        h("00a4000c023f00"),
        h("00a4000c022fe2"),
        h("00b000000a"),
    ]


@pytest.mark.parametrize(
    "data",
    [
        "ab0a220880f24002024f0000",  # a response template
        "aa0a220880f24002024f00",  # truncated
        "aa0a220880f24002024f000000",  # trailing octet
        "ae80220580ca00e000",  # indefinite without end-of-contents
        "ae80220580ca00e00000",  # end-of-contents cut short
        "aa03810101",  # immediate action: not supported
        "aa0422020000",  # C-APDU shorter than a header
        "",
    ],
)
def test_bad_command_scripts(data):
    with pytest.raises(ValueError):
        decode_command_script(h(data))


def test_encode_refuses_single_bytes():
    with pytest.raises(TypeError):
        encode_command_script(GET_STATUS)  # type: ignore[arg-type]


# --- response scripts --------------------------------------------------------------------------------------------


def test_status_only_golden():
    assert encode_response_script(1, [h("6132")]) == h("ab0780010123026132")
    script = decode_response_script(h("ab0780010123026132"))
    assert script == ResponseScript(1, [h("6132")])
    assert script.last_sw == 0x6132


def test_registry_golden():
    registry = bytes(range(198))
    encoded = encode_response_script(1, [registry + h("9000")])
    assert encoded[:9] == h("ab81ce8001012381c8")
    script = decode_response_script(encoded)
    assert (script.executed, script.responses, script.last_sw) == (1, [registry + h("9000")], 0x9000)


def test_multi_command_last_sw_is_the_error():
    encoded = encode_response_script(2, [h("6f219000"), h("6a82")])
    assert encoded == h("ab0d800102" "23046f219000" "23026a82")
    script = decode_response_script(encoded)
    assert script.responses == [h("6f219000"), h("6a82")] and script.last_sw == 0x6A82


def test_bad_format_golden():
    script = decode_response_script(h("ab06800101900101"))
    assert script == ResponseScript(1, [], bad_format=0x01)
    with pytest.raises(ValueError):
        script.last_sw  # noqa: B018


def test_indefinite_response_rfm_golden():
    script = decode_response_script(h("af80" "23029000" "23029000" "230c988812010000408608149000" "0000"))
    assert script.executed == 3  # no '80' in the indefinite form: the number of R-APDUs
    assert script.responses == [h("9000"), h("9000"), h("988812010000408608149000")]
    assert script.last_sw == 0x9000


def test_indefinite_response_ram_golden():
    data = h("e030c00403308810c00402308810c00401308810c00402408810c00401408510c00403018810c00402018810c00401018810")
    script = decode_response_script(h("af80" "2334") + data + h("9000" "0000"))
    assert script.responses == [data + h("9000")] and script.executed == 1


@pytest.mark.parametrize(
    "data",
    [
        "af80230290000000"[:-2],  # end-of-contents incomplete
        "af8023029000",  # missing end-of-contents
        "ab0423029000",  # definite without '80'
        "ab06800101830102",  # script chaining response: not supported
        "ab06800101230190",  # R-APDU without SW
        "aa0780010123026132",  # a command template
    ],
)
def test_bad_response_scripts(data):
    with pytest.raises(ValueError):
        decode_response_script(h(data))


def test_encode_response_refusals():
    with pytest.raises(ValueError):
        encode_response_script(256, [])
    with pytest.raises(ValueError):
        encode_response_script(1, [b"\x90"])


# --- scripts of complete TLVs (ES8) ------------------------------------------------------------------------------


def test_command_tlvs_golden():
    tlvs = [h("220880f24002024f0000"), h("840a30010102030405060708")]
    encoded = encode_command_tlvs(tlvs)
    assert encoded == h("aa16" "220880f24002024f0000" "840a30010102030405060708")
    assert decode_command_tlvs(encoded) == [(0x22, GET_STATUS), (0x84, h("30010102030405060708"))]


def test_command_tlvs_long_form():
    segment = h("86820200") + bytes(512)
    encoded = encode_command_tlvs([segment])
    assert encoded[:4] == h("aa820204") and encoded[4:] == segment
    assert decode_command_tlvs(encoded) == [(0x86, bytes(512))]
    assert decode_command_tlvs(h("ae80") + segment + h("0000")) == [(0x86, bytes(512))]


def test_command_tlvs_match_command_script_for_capdus():
    assert encode_command_tlvs([h("2208") + GET_STATUS]) == encode_command_script([GET_STATUS])


@pytest.mark.parametrize("tlvs", [[h("2208") + GET_STATUS[:-1]], [h("22020000") + h("00")], [b""]])
def test_encode_command_tlvs_refuses_incomplete_tlvs(tlvs):
    with pytest.raises(ValueError):
        encode_command_tlvs(tlvs)


def test_encode_tlvs_refuses_single_bytes():
    with pytest.raises(TypeError):
        encode_command_tlvs(h("22020000"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_response_tlvs(1, h("23029000"))  # type: ignore[arg-type]


@pytest.mark.parametrize("data", ["", "aa00", "ab0423029000", "aa0322019000", "aa04220200", "ae8022029000"])
def test_bad_command_tlvs(data):
    with pytest.raises(ValueError):
        decode_command_tlvs(h(data))


def test_response_tlvs_golden_with_scp03t_error_tag():
    # '9F86' is read as a two-byte tag although its second byte has b8 set (see the module doc of ota.remote)
    encoded = encode_response_tlvs(3, [h("23029000"), h("8508") + bytes(8), h("9F860101")])
    assert encoded == h("ab15" "800103" "23029000" "8508") + bytes(8) + h("9f860101")
    assert decode_response_tlvs(encoded) == (3, [(0x23, h("9000")), (0x85, bytes(8)), (0x9F86, h("01"))])


def test_response_tlvs_decode_what_encode_response_script_writes():
    encoded = encode_response_script(2, [h("6f219000"), h("6a82")])
    assert decode_response_tlvs(encoded) == (2, [(0x23, h("6f219000")), (0x23, h("6a82"))])
    assert decode_response_tlvs(h("af80" "23029000" "0000")) == (1, [(0x23, h("9000"))])
    assert decode_response_tlvs(encode_response_tlvs(0, [])) == (0, [])


@pytest.mark.parametrize("data", ["ab0423029000", "ab06800101800101", "ab0580020100", "aa0780010123026132",
                                  "ab07800101239f86", ""])
def test_bad_response_tlvs(data):
    with pytest.raises(ValueError):
        decode_response_tlvs(h(data))


def test_encode_response_tlvs_refusals():
    with pytest.raises(ValueError):
        encode_response_tlvs(256, [])
    with pytest.raises(ValueError):
        encode_response_tlvs(1, [h("230290")])


def test_split_tlvs_keeps_whole_tlvs():
    assert split_tlvs(h("9f8401ff" "8100" "5f370100")) == [
        (0x9F84, h("ff"), h("9f8401ff")), (0x81, b"", h("8100")), (0x5F37, h("00"), h("5f370100"))]
    for bad in ("9f", "9f84", "9f8402ff", "8183", "5f"):
        with pytest.raises(ValueError):
            split_tlvs(h(bad))
