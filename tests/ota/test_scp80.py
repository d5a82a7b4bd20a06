"""SCP80 secured packets (keys.scp80): known answers, both directions, and the failure statuses.

Known-answer vectors come from osmocom/pysim ``tests/unittests/test_ota.py`` (captured from sysmoISIM-SJA5 cards;
used here as facts only). pySim's PoR strings start with the UDH '027100', which ``ota.sms`` strips before SCP80
sees the packet.
"""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest

from keys.scp80 import (
    RESPONSE_UDH,
    SPI_NOTIFICATION,
    SPI_SGP02,
    CommandPacket,
    PorStatus,
    ResponsePacket,
    Scp80Error,
    Scp80Keyset,
    Spi,
    _cbc,
    _cc,
    peek_command,
    unwrap_command,
    unwrap_response,
    wrap_command,
    wrap_response,
)
from ota.sms import RPI, parse_user_data, reassemble, segment

h = bytes.fromhex

# pySim test_ota.py: OTA_KEYSET_SJA5_AES128 / Test_SMS_AES128 (KIc/KID index 2, AES)
AES = Scp80Keyset(kvn=2, enc=h("200102030405060708090a0b0c0d0e0f"), mac=h("201102030405060708090a0b0c0d0e0f"))
# pySim test_ota.py: OTA_KEYSET_SJA5_SAMPLES (index 3, 2-key 3DES)
SJA5_3DES = Scp80Keyset(3, h("300102030405060708090a0b0c0d0e0f"), h("301102030405060708090a0b0c0d0e0f"), "3des")
# pySim test_ota.py: Test_SMS_3DES, "KIC3 + KID3 of 8988211000000467285"
CARD_3DES = Scp80Keyset(3, h("C21DD66ACAC13CB3BC8B331B24AFB57B"), h("12110C78E678C25408233076AA033615"), "3des")

# pySim's SPI_CC_POR_CIPHERED_CC / _UNCIPHERED_CC / _UNCIPHERED_NOCC: no counter, ciphered, CC, PoR always,
# PoR in the DELIVER-REPORT.
SPI_POR_CIPHERED_CC = Spi(integrity="cc", ciphered=True, counter="none", por_via_submit=False)
SPI_POR_CC = replace(SPI_POR_CIPHERED_CC, por_ciphered=False)
SPI_POR_NONE = replace(SPI_POR_CC, por_integrity="none")

SELECT_MF_P2_04 = h("00a40004023f00")
SELECT_MF_P2_00 = h("00a40000023f00")
TAR_USIM_RFM = h("b00011")
TAR_RAM = h("b00000")


# --- SPI ---------------------------------------------------------------------------------------------------------


def test_spi_sgp02_is_1639_and_round_trips():
    assert SPI_SGP02.to_bytes() == h("1639")
    assert Spi.from_bytes(h("1639")) == SPI_SGP02


def test_spi_pysim_values():
    assert SPI_POR_CIPHERED_CC.to_bytes() == h("0619")
    assert SPI_POR_CC.to_bytes() == h("0609")
    assert SPI_POR_NONE.to_bytes() == h("0601")


def test_spi_notification():
    assert SPI_NOTIFICATION.to_bytes() == h("0600")
    assert Spi.from_bytes(h("0600")) == SPI_NOTIFICATION


@pytest.mark.parametrize("raw", ["0000", "1F3E", "1D2E", "0A15", "1E39"])
def test_spi_round_trip(raw):
    assert Spi.from_bytes(h(raw)).to_bytes() == h(raw)


def test_spi_reserved_por_code_rejected():
    with pytest.raises(ValueError):
        Spi.from_bytes(h("1603"))
    with pytest.raises(ValueError):
        Spi(counter="lower")


# --- keysets -----------------------------------------------------------------------------------------------------


def test_kic_kid_bytes():
    assert (AES.kic, AES.kid) == (0x22, 0x22)
    assert (SJA5_3DES.kic, SJA5_3DES.kid) == (0x35, 0x35)
    assert Scp80Keyset(1, bytes(24), bytes(24), "3des3").kic == 0x19


def test_keyset_validation():
    with pytest.raises(ValueError):
        Scp80Keyset(0, bytes(16), bytes(16))
    with pytest.raises(ValueError):
        Scp80Keyset(1, bytes(15), bytes(16))
    with pytest.raises(ValueError):
        Scp80Keyset(1, bytes(24), bytes(24), "3des")


# --- command packets: known answers ------------------------------------------------------------------------------

COMMAND_VECTORS = [
    # (name, keyset, spi, tar, apdu, expected packet) -- pySim test_ota.py SmsOtaTestCase / Test_SMS_AES128
    ("AES128-CIPHERED-CC", AES, SPI_POR_CIPHERED_CC, TAR_USIM_RFM, SELECT_MF_P2_04,
     "00281506192222b00011e87cceebb2d93083011ce294f93fc4d8de80da1abae8c37ca3e72ec4432e5058"),
    ("3DES-SJA5-CIPHERED-CC", SJA5_3DES, SPI_POR_CIPHERED_CC, TAR_USIM_RFM, SELECT_MF_P2_04,
     "00201506193535b00011ae733256918d050b87c94fbfe12e4dc402f262c41cf67f2f"),
    ("3DES-SJA5-UNCIPHERED-CC", SJA5_3DES, SPI_POR_CC, TAR_USIM_RFM, SELECT_MF_P2_04,
     "00201506093535b00011c49ac91ab8159ba5b83a54fb6385e0a5e31694f8b215fafc"),
    ("3DES-SJA5-UNCIPHERED-NOCC", SJA5_3DES, SPI_POR_NONE, TAR_USIM_RFM, SELECT_MF_P2_04,
     "00201506013535b000113190be334900f52b025f3f7eddfe868e96ebf310023b7769"),
    # Test_SMS_3DES.test_cmd_3des_ciphered: ciphered, no CC
    ("3DES-CIPHERED-NOCC", CARD_3DES, replace(SPI_POR_CIPHERED_CC, integrity="none"), TAR_RAM, SELECT_MF_P2_00,
     "00180d04193535b00000e3ec80a849b554421276af3883927c20"),
]


@pytest.mark.parametrize("name,keyset,spi,tar,apdu,expected", COMMAND_VECTORS, ids=[v[0] for v in COMMAND_VECTORS])
def test_wrap_command_known_answer(name, keyset, spi, tar, apdu, expected):
    packet = wrap_command(keyset, spi, tar, 0, apdu)
    assert packet.hex() == expected
    assert peek_command(packet) == (spi, keyset.kic, keyset.kid, tar)
    assert unwrap_command(packet, keyset) == CommandPacket(spi, keyset.kic, keyset.kid, tar, 0, apdu)


def test_unciphered_command_keeps_cpl():
    """[verify] pySim emits unciphered command packets without CPL (Test_SMS_3DES.test_cmd_3des_signed / _none:
    '1502193535b00000...' and '0d00193535b0...'). TS 31.115 §4.2 always has CPL, and pySim's own CC in the
    signed vector was computed over CPL '001D', so our packet is CPL + pySim's bytes and its CC matches."""
    signed = replace(SPI_POR_CIPHERED_CC, ciphered=False)
    packet = wrap_command(CARD_3DES, signed, TAR_RAM, 0, SELECT_MF_P2_00)
    assert packet == h("001d") + h("1502193535b00000000000000000072ea17bdb72060e00a40000023f00")
    assert unwrap_command(packet, CARD_3DES).data == SELECT_MF_P2_00

    plain = replace(signed, integrity="none")
    packet = wrap_command(CARD_3DES, plain, TAR_RAM, 0, SELECT_MF_P2_00)
    assert packet == h("0015") + h("0d00193535b0000000000000000000a40000023f00")
    assert unwrap_command(packet, CARD_3DES).data == SELECT_MF_P2_00


# --- response packets: known answers -----------------------------------------------------------------------------

COMPACT_6132 = h("016132")  # TS 102 226 compact response: 1 command, last SW 6132, no data
COMPACT_612F = h("01612f")

RESPONSE_VECTORS = [
    # (name, keyset, command spi, PoR with UDH, compact response) -- pySim test_ota.py
    ("AES128-CIPHERED-CC", AES, SPI_POR_CIPHERED_CC,
     "027100002412b00011ebc6b497e2cad7aedf36ace0e3a29b38853f0fe9ccde81913be5702b73abce1f", COMPACT_6132),
    ("3DES-SJA5-CIPHERED-CC", SJA5_3DES, SPI_POR_CIPHERED_CC,
     "027100001c12b000118bb989492c632529326a2f4681feb37c825bc9021c9f6d0b", COMPACT_6132),
    ("3DES-SJA5-UNCIPHERED-CC", SJA5_3DES, SPI_POR_CC,
     "027100001612b0001100000000000000b5bcd6353a421fae016132", COMPACT_6132),
    ("3DES-SJA5-UNCIPHERED-NOCC", SJA5_3DES, SPI_POR_NONE,
     "027100000e0ab0001100000000000000016132", COMPACT_6132),
    ("3DES-CIPHERED-CC", CARD_3DES, SPI_POR_CIPHERED_CC,
     "027100001c12b000119660ebdb81be189b5e4389e9e7ab2bc0954f963ad869ed7c", COMPACT_612F),
    ("3DES-SIGNED", CARD_3DES, SPI_POR_CC,
     "027100001612b000110000000000000055f47118381175fb01612f", COMPACT_612F),
    ("3DES-NONE", CARD_3DES, SPI_POR_NONE, "027100000e0ab000110000000000000001612f", COMPACT_612F),
]


@pytest.mark.parametrize("name,keyset,spi,por,data", RESPONSE_VECTORS, ids=[v[0] for v in RESPONSE_VECTORS])
def test_response_known_answer(name, keyset, spi, por, data):
    por = h(por)
    assert por[:3] == RESPONSE_UDH
    assert unwrap_response(por[3:], keyset, spi) == ResponsePacket(TAR_USIM_RFM, 0, PorStatus.POR_OK, data)
    # the card side produces exactly the same bytes
    assert wrap_response(keyset, spi, TAR_USIM_RFM, 0, PorStatus.POR_OK, data) == por[3:]


def test_response_cc_covers_canonical_udh_even_when_concatenated():
    """[verify] The PoR CC covers the UDH '027100' (pySim vectors); we use that canonical UDH also when the PoR is
    sent concatenated, so splitting a long PoR into SMS does not change its bytes or its CC."""
    por = wrap_response(AES, SPI_SGP02, TAR_USIM_RFM, 7, 0, bytes(range(200)))
    parts = segment(por, RPI, ref=9)
    assert len(parts) == 2 and parts[0][:3] == h("077100")  # the first UDH is not '027100' ...
    iei, joined = reassemble([parse_user_data(p) for p in parts])
    assert (iei, joined) == (RPI, por)
    # ... yet the CC verifies, since it is computed over '027100' whatever the transport UDH
    assert unwrap_response(joined, AES, SPI_SGP02).data == bytes(range(200))


# --- round trips -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keyset", [AES, SJA5_3DES, Scp80Keyset(4, bytes(range(32)), bytes(range(1, 33)))])
@pytest.mark.parametrize("length", [0, 1, 9, 10, 15, 16, 17, 120, 300])
def test_command_round_trip_sgp02(keyset, length):
    data = bytes((i * 7) & 0xFF for i in range(length))
    packet = wrap_command(keyset, SPI_SGP02, TAR_USIM_RFM, 0x0102030405, data)
    assert packet[:2] == (len(packet) - 2).to_bytes(2, "big")
    assert packet[2:10] == bytes([0x15]) + h("1639") + bytes([keyset.kic, keyset.kid]) + TAR_USIM_RFM
    assert (len(packet) - 10) % keyset.block_size == 0
    got = unwrap_command(packet, keyset)
    assert got == CommandPacket(SPI_SGP02, keyset.kic, keyset.kid, TAR_USIM_RFM, 0x0102030405, data)


@pytest.mark.parametrize("keyset", [AES, SJA5_3DES])
@pytest.mark.parametrize("status", [0x00, 0x02, 0x0A])
def test_response_round_trip_sgp02(keyset, status):
    data = h("AB0780010123029000")
    por = wrap_response(keyset, SPI_SGP02, TAR_USIM_RFM, 42, status, data)
    assert por[2] == 18 and (len(por) - 6) % keyset.block_size == 0
    assert unwrap_response(por, keyset, SPI_SGP02) == ResponsePacket(TAR_USIM_RFM, 42, status, data)


# --- failures ----------------------------------------------------------------------------------------------------


def status_of(call) -> int:
    with pytest.raises(Scp80Error) as info:
        call()
    return info.value.status


def test_tampered_command_cc_is_01():
    packet = bytearray(wrap_command(AES, SPI_POR_CC, TAR_USIM_RFM, 0, SELECT_MF_P2_04))
    packet[-1] ^= 0x01
    assert status_of(lambda: unwrap_command(bytes(packet), AES)) == 0x01
    # unciphered: flip one CC byte, and one byte of the clear header (TAR) which the CC covers
    signed = bytearray(wrap_command(SJA5_3DES, replace(SPI_POR_CC, ciphered=False), TAR_USIM_RFM, 0, b"\x01\x02"))
    signed[17] ^= 0x80
    assert status_of(lambda: unwrap_command(bytes(signed), SJA5_3DES)) == 0x01
    signed[17] ^= 0x80
    signed[9] ^= 0x01
    assert status_of(lambda: unwrap_command(bytes(signed), SJA5_3DES)) == 0x01


def test_wrong_key_is_01():
    packet = wrap_command(AES, SPI_SGP02, TAR_USIM_RFM, 1, SELECT_MF_P2_04)
    other = Scp80Keyset(2, bytes(16), AES.mac)
    assert status_of(lambda: unwrap_command(packet, other)) == 0x01
    other = Scp80Keyset(2, AES.enc, bytes(16))
    assert status_of(lambda: unwrap_command(packet, other)) == 0x01


def test_keyset_not_named_by_kic_is_06():
    packet = wrap_command(AES, SPI_SGP02, TAR_USIM_RFM, 1, SELECT_MF_P2_04)
    assert status_of(lambda: unwrap_command(packet, replace(AES, kvn=3))) == 0x06


def test_tampered_response_cc_is_01():
    # pySim Test_SMS_3DES.test_resp_3des_signed_err: number of commands changed from 01 to 02
    por = h("027100001612b000110000000000000055f47118381175fb02612f")[3:]
    assert status_of(lambda: unwrap_response(por, CARD_3DES, SPI_POR_CC)) == 0x01
    por = bytearray(wrap_response(AES, SPI_SGP02, TAR_USIM_RFM, 0, 0, b"\x90\x00"))
    por[-3] ^= 0x40
    assert status_of(lambda: unwrap_response(bytes(por), AES, SPI_SGP02)) == 0x01
    # wrong keyset: deciphering "succeeds" (16 octets suit 3DES blocks too) and the CC, checked first, fails
    por = wrap_response(AES, SPI_SGP02, TAR_USIM_RFM, 0, 0, b"")
    assert status_of(lambda: unwrap_response(por, SJA5_3DES, SPI_SGP02)) == 0x01


def test_malformed_command_is_06():
    packet = wrap_command(AES, SPI_SGP02, TAR_USIM_RFM, 1, SELECT_MF_P2_04)
    assert status_of(lambda: peek_command(packet[:9])) == 0x06
    assert status_of(lambda: peek_command(packet[:-1])) == 0x06  # CPL no longer matches
    bad_spi = packet[:3] + h("1603") + packet[5:]
    assert status_of(lambda: peek_command(bad_spi)) == 0x06
    bad_chl = packet[:2] + b"\x0d" + packet[3:]  # CHL says no CC, SPI says CC
    assert status_of(lambda: unwrap_command(bad_chl, AES)) == 0x06
    rc = packet[:3] + h("1539") + packet[5:]
    assert status_of(lambda: unwrap_command(rc, AES)) == 0x06


def test_bad_ciphertext_length_is_05():
    packet = wrap_command(AES, SPI_SGP02, TAR_USIM_RFM, 1, SELECT_MF_P2_04)
    short = (len(packet) - 3).to_bytes(2, "big") + packet[2:-1]
    assert status_of(lambda: unwrap_command(short, AES)) == 0x05


def test_bad_padding_count():
    """PCNTR is checked after the CC, so the forged packets below carry a correct CC (private helpers)."""
    # unciphered, PCNTR claims more padding than there is data: 0x06
    spi = replace(SPI_POR_CC, ciphered=False)
    forged = bytearray(wrap_command(AES, spi, TAR_USIM_RFM, 0, b"\x01"))
    forged[15] = 5
    forged[16:24] = _cc(AES, bytes(forged[:16]) + bytes(forged[24:]))
    assert status_of(lambda: unwrap_command(bytes(forged), AES)) == 0x06
    # ciphered, 18 octets of data: PCNTR 0 is fine, PCNTR of a whole block (16) is a ciphering error 0x05
    header = h("0028") + bytes([0x15]) + SPI_SGP02.to_bytes() + h("2222") + TAR_USIM_RFM
    data = bytes(range(18))

    def packet(pcntr: int) -> bytes:
        counters = h("0000000001") + bytes([pcntr])
        return header + _cbc(AES, AES.enc, counters + _cc(AES, header + counters + data) + data)

    assert unwrap_command(packet(0), AES).data == data
    assert unwrap_command(packet(2), AES).data == data[:16]
    assert status_of(lambda: unwrap_command(packet(16), AES)) == 0x05


def test_unsecured_error_por_accepted():
    """[verify] A card that cannot identify the header answers unciphered and without CC (status 06)."""
    por = wrap_response(AES, SPI_SGP02.unsecured_por(), TAR_USIM_RFM, 0, PorStatus.UNIDENTIFIED_SECURITY_ERROR, b"")
    assert por == h("000b0a") + TAR_USIM_RFM + h("00000000000006")
    assert unwrap_response(por, AES, SPI_SGP02) == ResponsePacket(TAR_USIM_RFM, 0, 0x06, b"")
    # an unsecured "PoR OK" is not believed
    ok = wrap_response(AES, SPI_SGP02.unsecured_por(), TAR_USIM_RFM, 0, PorStatus.POR_OK, b"")
    assert status_of(lambda: unwrap_response(ok, AES, SPI_SGP02)) == 0x06


def test_rc_and_ds_refused_when_wrapping():
    with pytest.raises(ValueError):
        wrap_command(AES, Spi(integrity="rc"), TAR_USIM_RFM, 0, b"")
    with pytest.raises(ValueError):
        wrap_response(AES, Spi(por_integrity="ds"), TAR_USIM_RFM, 0, 0, b"")


def test_counter_and_tar_validated():
    with pytest.raises(ValueError):
        wrap_command(AES, SPI_SGP02, b"\x00\x00", 0, b"")
    with pytest.raises(ValueError):
        wrap_command(AES, SPI_SGP02, TAR_USIM_RFM, 1 << 40, b"")


def test_error_carries_status_and_pickles():
    e = Scp80Error(0x09, "TAR unknown")
    assert (e.status, e.args[0]) == (0x09, "TAR unknown")
    again = pickle.loads(pickle.dumps(e))
    assert (again.status, again.args[0]) == (0x09, "TAR unknown")
