"""SMS pieces (ota.sms): UDH, concatenation, SMS-DELIVER/SUBMIT TPDUs, the SMS-PP download ENVELOPE.

TPDU vectors come from osmocom/pysim ``tests/unittests/test_ota.py`` (SmsOtaTestCase 'encoded_tpdu') and
``tests/unittests/test_sms.py`` (used as facts only).
"""

from __future__ import annotations

import pytest

from keys.scp80 import SPI_SGP02, Scp80Keyset, unwrap_command, wrap_command
from ota.sms import (
    CPI,
    DCS_8BIT_CLASS2,
    MAX_UD,
    PID_SIM_DATA_DOWNLOAD,
    RPI,
    SmsDeliver,
    SmsSubmit,
    UserDataPart,
    decode_sms_deliver,
    decode_sms_submit,
    encode_sms_deliver,
    encode_sms_submit,
    envelope_sms_pp,
    parse_envelope_sms_pp,
    parse_user_data,
    reassemble,
    segment,
)

h = bytes.fromhex

# pySim test_ota.py SmsOtaTestCase, AES128-SJA5-CIPHERED-CC: command packet and the SMS-DELIVER carrying it
AES_COMMAND = h("00281506192222b00011e87cceebb2d93083011ce294f93fc4d8de80da1abae8c37ca3e72ec4432e5058")
PYSIM_TPDU = h(
    "400881214365877ff6227052000000000302700000281506192222b00011e87cceebb2d93083011ce294f93fc4d8de80da1abae8c37"
    "ca3e72ec4432e5058"
)
UDL_OFFSET = 16  # first octet, OA (08 81 21436587), PID, DCS, SCTS(7)


# --- single part UDH ---------------------------------------------------------------------------------------------


def test_single_segment():
    assert segment(AES_COMMAND, CPI, ref=0) == [h("027000") + AES_COMMAND]
    part = parse_user_data(h("027000") + AES_COMMAND)
    assert part == UserDataPart(CPI, None, 1, 1, AES_COMMAND)
    assert reassemble([part]) == (CPI, AES_COMMAND)


def test_largest_single_segment():
    assert len(segment(bytes(137), RPI, 1)) == 1
    assert len(segment(bytes(138), RPI, 1)) == 2


def test_parse_without_udh():
    assert parse_user_data(b"\x01\x02", udhi=False) == UserDataPart(None, None, 1, 1, b"\x01\x02")


# --- concatenation -----------------------------------------------------------------------------------------------


PACKET_300 = bytes(i & 0xFF for i in range(300))


def test_segment_300_octets():
    parts = segment(PACKET_300, CPI, ref=0x5A)
    assert len(parts) == 3
    assert all(len(p) <= MAX_UD for p in parts)
    assert parts[0][:8] == h("077000" "00035a0301")
    assert parts[1][:6] == h("0500035a0302")
    assert parts[2][:6] == h("0500035a0303")
    assert [len(p) for p in parts] == [140, 140, 6 + 300 - 132 - 134]
    decoded = [parse_user_data(p) for p in parts]
    assert [(d.iei, d.ref, d.total, d.seq) for d in decoded] == [(CPI, 0x5A, 3, 1), (None, 0x5A, 3, 2),
                                                                 (None, 0x5A, 3, 3)]
    assert reassemble(decoded) == (CPI, PACKET_300)
    assert reassemble(list(reversed(decoded))) == (CPI, PACKET_300)


def test_reassemble_missing_part():
    decoded = [parse_user_data(p) for p in segment(PACKET_300, CPI, ref=1)]
    with pytest.raises(ValueError, match="missing"):
        reassemble([decoded[0], decoded[2]])
    with pytest.raises(ValueError):
        reassemble([])


def test_reassemble_inconsistent():
    a = [parse_user_data(p) for p in segment(PACKET_300, CPI, ref=1)]
    b = [parse_user_data(p) for p in segment(PACKET_300, CPI, ref=2)]
    with pytest.raises(ValueError):
        reassemble([a[0], b[1], a[2]])
    with pytest.raises(ValueError, match="duplicate"):
        reassemble([a[0], a[1], a[1], a[2]])


def test_concatenated_command_end_to_end():
    keyset = Scp80Keyset(1, bytes(range(16)), bytes(range(16, 32)))
    data = bytes(range(256)) + bytes(44)
    packet = wrap_command(keyset, SPI_SGP02, h("000001"), 5, data)
    parts = segment(packet, CPI, ref=255)
    assert len(parts) == 3
    iei, joined = reassemble([parse_user_data(p) for p in parts])
    assert iei == CPI and unwrap_command(joined, keyset).data == data


def test_parse_sja5_concatenated_por_udh():
    # pySim test_sms.py: "part 1 UDH observed from sja5: 07 00 03 01 02 01 71 00" (concat IE before the RPI)
    assert parse_user_data(h("0700030102017100") + b"\xAA") == UserDataPart(RPI, 1, 2, 1, b"\xAA")
    # 16-bit reference form: 08 | 08 04 1234 02 01 | 71 00
    assert parse_user_data(h("080804123402017100")) == UserDataPart(RPI, 0x1234, 2, 1, b"")


def test_reserved_concatenation_values_ignored():
    # TS 23.040 §9.2.3.24.1: total 0, sequence 0 or > total -> ignore the IE
    for ie in ("000301020" "3", "0003010200", "0003010001"):
        assert parse_user_data(h("05" + ie) + b"\x00") == UserDataPart(None, None, 1, 1, b"\x00")


@pytest.mark.parametrize("ud", ["", "03700000", "0270", "037001ff", "0500020102", "02"])
def test_malformed_udh(ud):
    with pytest.raises(ValueError):
        parse_user_data(h(ud))


def test_segment_limits():
    with pytest.raises(ValueError):
        segment(b"", CPI, 256)
    with pytest.raises(ValueError):
        segment(bytes(132 + 134 * 255), CPI, 0)
    assert len(segment(bytes(132 + 134 * 254), CPI, 0)) == 255


# --- SMS-DELIVER -------------------------------------------------------------------------------------------------


def test_sms_deliver_pysim_vector():
    """pySim builds its TPDU with tp_udl=3 passed explicitly, so its UDL octet is wrong (03 for 43 octets of
    8-bit user data); apart from that octet our encoding is byte-identical."""
    ud = h("027000") + AES_COMMAND
    deliver = SmsDeliver(originator="12345678", pid=0x7F, dcs=0xF6, scts=h("22705200000000"), ud=ud, udhi=True,
                         originator_toa=0x81)
    tpdu = encode_sms_deliver(deliver)
    assert PYSIM_TPDU[UDL_OFFSET] == 3
    assert tpdu == PYSIM_TPDU[:UDL_OFFSET] + bytes([len(ud)]) + PYSIM_TPDU[UDL_OFFSET + 1 :]
    assert decode_sms_deliver(tpdu) == deliver
    with pytest.raises(ValueError, match="TP-UDL"):
        decode_sms_deliver(PYSIM_TPDU)


def test_sms_deliver_international_odd_digits():
    d = SmsDeliver("491720000001", PID_SIM_DATA_DOWNLOAD, DCS_8BIT_CLASS2, bytes(7), h("027000") + b"\x00\x01",
                   True)
    assert encode_sms_deliver(d) == h("400c91947102000010" "7ff6" "00000000000000" "05" "0270000001")
    d = SmsDeliver("12345", 0x7F, 0xF6, bytes(7), b"x", False)
    assert encode_sms_deliver(d) == h("000591" "2143f5" "7ff6" "00000000000000" "01" "78")
    assert decode_sms_deliver(encode_sms_deliver(d)) == d


def test_sms_deliver_refusals():
    with pytest.raises(ValueError):  # GSM 7-bit DCS
        encode_sms_deliver(SmsDeliver("1", 0, 0x00, bytes(7), b"", False))
    with pytest.raises(ValueError):
        encode_sms_deliver(SmsDeliver("1", 0x7F, 0xF6, bytes(7), bytes(141), False))
    with pytest.raises(ValueError):
        encode_sms_deliver(SmsDeliver("12a", 0x7F, 0xF6, bytes(7), b"", False))
    # pySim test_sms.py Test_DELIVER: alphanumeric originator (TOA D0), not a digit string
    with pytest.raises(ValueError, match="numeric"):
        decode_sms_deliver(h("0408D0E5759A0E7FF6907090307513000824010101BB400101"))
    with pytest.raises(ValueError):
        decode_sms_deliver(PYSIM_TPDU[:12])


# --- SMS-SUBMIT --------------------------------------------------------------------------------------------------


def test_sms_submit_round_trip():
    por = h("027100") + h("000e0ab000110000000000000001612f")
    s = SmsSubmit(destination="4912345678", pid=0x7F, dcs=0xF6, ud=por, udhi=True, mr=0x21)
    tpdu = encode_sms_submit(s)
    assert tpdu == h("4121" "0a91" "9421436587" "7ff6") + bytes([len(por)]) + por
    assert decode_sms_submit(tpdu) == s


def test_sms_submit_pysim_vector_with_relative_vp():
    # pySim test_sms.py Test_SUBMIT: RD set, TP-VPF relative (one octet, A7 here), UDHI, 140 octets of 8-bit UD
    tpdu = h(
        "550d0b911614261771f000f5a78c0b050423f423f40003010201424547494e3a56434152440d0a56455253494f4e3a322e310d0a4e"
        "3a4d650d0a54454c3b505245463b43454c4c3b564f4943453a2b36313431363237313137300d0a54454c3b484f4d453b564f494345"
        "3a2b36313339353337303437310d0a54454c3b574f524b3b564f4943453a2b36313339363734373031350d0a454e443a"
    )
    s = decode_sms_submit(tpdu)
    assert (s.destination, s.destination_toa, s.mr, s.pid, s.dcs, s.udhi) == ("61416271170", 0x91, 0x0D, 0, 0xF5,
                                                                               True)
    assert len(s.ud) == 140 and s.ud[:6] == h("0b050423f423")
    part = parse_user_data(s.ud)
    assert (part.ref, part.total, part.seq) == (1, 2, 1)


def test_sms_submit_refusals():
    with pytest.raises(ValueError):
        decode_sms_submit(h("00") + bytes(10))  # MTI of a DELIVER
    with pytest.raises(ValueError):
        encode_sms_submit(SmsSubmit("1", 0x7F, 0xF6, b"", False, 256))


# --- ENVELOPE (SMS-PP download) ----------------------------------------------------------------------------------


def test_envelope_sms_pp():
    tpdu = encode_sms_deliver(SmsDeliver("1234", 0x7F, 0xF6, bytes(7), h("027000") + AES_COMMAND, True))
    env = envelope_sms_pp(tpdu, "447700900123")
    body = h("82028381") + h("8607" "91" "447700091032") + bytes([0x8B, len(tpdu)]) + tpdu
    assert env == bytes([0xD1, len(body)]) + body
    assert parse_envelope_sms_pp(env) == ("447700900123", tpdu)


def test_envelope_long_form_and_plain_tags():
    tpdu = bytes(150)
    env = envelope_sms_pp(tpdu, "123")
    # D1 81 A2 { 82 02 83 81 | 86 03 91 21F3 | 8B 81 96 <150> }: lengths over 127 take the '81' form
    assert env[:3] == h("D181A2") and env[3:12] == h("82028381" "860391" "21F3") and env[12:15] == h("8B8196")
    assert parse_envelope_sms_pp(env) == ("123", tpdu)
    # comprehension-required bits cleared, no address: still accepted
    plain = h("D1") + bytes([4 + 3]) + h("02028381") + h("0B01AA")
    assert parse_envelope_sms_pp(plain) == ("", b"\xAA")


@pytest.mark.parametrize(
    "env",
    [
        "D0078202838188 01AA",  # wrong outer tag
        "D1058202818388",  # device identities UICC to network
        "D10482028381",  # no TPDU
        "D1078202838188",  # truncated
    ],
)
def test_envelope_refusals(env):
    with pytest.raises(ValueError):
        parse_envelope_sms_pp(h(env.replace(" ", "")))


def test_scts_is_swapped_semi_octets_with_utc_zone():
    from datetime import datetime, timedelta, timezone

    from ota.sms import encode_scts

    # TS 23.040 9.2.3.11: 2026-11-21 09:30:05 UTC -> 62 11 12 90 03 50, time zone 00
    assert encode_scts(datetime(2026, 11, 21, 9, 30, 5, tzinfo=timezone.utc)) == bytes.fromhex("62111290035000")
    cet = timezone(timedelta(hours=1))
    assert encode_scts(datetime(2026, 11, 21, 10, 30, 5, tzinfo=cet)) == bytes.fromhex("62111290035000")
