"""The simulated card's OTA front over a lossy network (euicc_sim.network): reassembly across retransmissions,
the recorded PoR of a retransmitted packet, and the seeded losses of the loopback SMSC.

Everything is bytes: SCP80 command packets built as the SM-SR builds them (keys.scp80, ota.sms), delivered as
SMS-PP download ENVELOPEs, one SMS at a time, in any order, some twice, some never.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from euicc_sim.card import Card, IsdP
from euicc_sim.network import MAX_PARTIAL_MESSAGES, RECENT_PACKETS, CardOta, Losses
from keys.scp80 import SPI_SGP02, Scp80Keyset, unwrap_response, wrap_command
from ota import es5, remote, sms
from ota.es5 import DISABLED, ENABLED

EID = "89049032000000000000000000000142"
ISD_R = "A0000005591010FFFFFFFF8900000100"
P0 = "A0000005591010FFFFFFFF8900001000"
P1 = "A0000005591010FFFFFFFF8900001100"
TAR = bytes.fromhex("000001")
KEYS = Scp80Keyset(kvn=1, enc=bytes(range(16)), mac=bytes(range(16, 32)))
SMSR = "882001"
SCTS = bytes.fromhex("62501021000000")


@pytest.fixture
def ota(tmp_path: Path) -> CardOta:
    profiles = [IsdP(P0, ENABLED, fallback=True, iccid="8988299000000000001", msisdn="447700900001", memory=1000),
                IsdP(P1, DISABLED, iccid="8988299000000000002", msisdn="447700900002", memory=1000)]
    scp80 = {"kvn": 1, "tar": TAR.hex(), "counter": 0, "enc": KEYS.enc.hex(), "mac": KEYS.mac.hex()}
    Card.create(tmp_path / "card.json", eid=EID, isd_r_aid=ISD_R, profiles=profiles, free_memory=10_000, scp80=scp80)
    return CardOta(Card.load(tmp_path / "card.json"), tmp_path / "card.json")


def packet(counter: int, apdus: list[bytes]) -> bytes:
    return wrap_command(KEYS, SPI_SGP02, TAR, counter, remote.encode_command_script(apdus))


def long_packet(counter: int) -> bytes:
    """A packet in three SMS: an audit asked many times over (reads only)."""
    p = packet(counter, [es5.get_status_isdp(None)] * 26)
    assert len(sms.segment(p, sms.CPI, 0)) == 3
    return p


def deliver(ota: CardOta, user_data: list[bytes]) -> list[bytes]:
    """Each SMS as the network hands it to the card; the user data of every SMS the card sends back."""
    replies = []
    for ud in user_data:
        tpdu = sms.encode_sms_deliver(sms.SmsDeliver(originator=SMSR, pid=0x7F, dcs=0xF6, scts=SCTS, ud=ud, udhi=True))
        replies += [sms.decode_sms_submit(t).ud for t in ota.envelope(sms.envelope_sms_pp(tpdu, "4479000000"))]
    return replies


def por_of(user_data: list[bytes]):
    iei, raw = sms.reassemble([sms.parse_user_data(ud) for ud in user_data])
    assert iei == sms.RPI
    return unwrap_response(raw, KEYS, SPI_SGP02)


# -- reassembly ----------------------------------------------------------------------------------------------------


def test_parts_from_two_transmissions_complete_a_packet(ota):
    one, two, three = sms.segment(long_packet(1), sms.CPI, 1)
    assert deliver(ota, [one, three]) == []  # part 2 lost: nothing runs, the parts are kept
    assert ota.card.scp80.keyset(1).counter == 0
    replies = deliver(ota, [one, two])  # the retransmission's part 2 completes it (its part 3 lost)
    por = por_of(replies)
    assert (por.counter, por.status) == (1, 0x00)
    assert remote.decode_response_script(por.data).executed == 26
    assert ota.card.scp80.keyset(1).counter == 1 and ota.parts == {}


def test_duplicate_parts_are_ignored(ota):
    one, two, three = sms.segment(long_packet(1), sms.CPI, 1)
    replies = deliver(ota, [one, one, two, one, three])
    assert por_of(replies).status == 0x00


def test_a_reused_reference_does_not_mix_messages(ota):
    """Parts left from a message never completed do not fill the gaps of a later message under the same
    reference: a part of another total clears them, and each newer copy of a part replaces the older one."""
    one, two, _ = sms.segment(long_packet(1), sms.CPI, 7)
    deliver(ota, [one, two])
    short = packet(1, [es5.get_data_resources()] * 14)
    shorter = sms.segment(short, sms.CPI, 7)
    assert len(shorter) == 2
    assert por_of(deliver(ota, shorter)).status == 0x00

    deliver(ota, sms.segment(long_packet(2), sms.CPI, 9)[:2])
    newer = sms.segment(long_packet(3), sms.CPI, 9)
    por = por_of(deliver(ota, newer))
    assert (por.counter, por.status) == (3, 0x00)


def test_partial_messages_are_bounded(ota):
    for ref in range(MAX_PARTIAL_MESSAGES + 1):
        deliver(ota, sms.segment(long_packet(1), sms.CPI, ref)[:1])
    assert [key[1] for key in ota.parts] == list(range(1, MAX_PARTIAL_MESSAGES + 1))  # the oldest went


# -- a retransmitted packet ----------------------------------------------------------------------------------------


def test_a_retransmitted_packet_gets_the_same_por_and_runs_once(ota, tmp_path):
    enable = sms.segment(packet(1, [es5.enable_profile(bytes.fromhex(P1))]), sms.CPI, 1)
    first = deliver(ota, enable)
    assert (por_of(first).status, len(ota.card.pending)) == (0x00, 1)
    state = ota.card.view()
    again = deliver(ota, enable)
    assert again == first  # byte for byte, its concatenation reference included
    assert ota.card.view() == state  # no second execution, no second notification

    restarted = CardOta(Card.load(tmp_path / "card.json"), tmp_path / "card.json")  # the record is on disk
    assert deliver(restarted, enable) == first


def test_only_the_last_packets_are_answered_from_the_record(ota):
    first = sms.segment(packet(1, [es5.get_data_resources()]), sms.CPI, 1)
    deliver(ota, first)
    for counter in range(2, RECENT_PACKETS + 2):
        deliver(ota, sms.segment(packet(counter, [es5.get_data_resources()]), sms.CPI, counter))
    por = por_of(deliver(ota, first))
    assert (por.counter, por.status, por.data) == (1, 0x02, b"")  # TS 102 225: counter low, nothing run


# -- the lossy network ---------------------------------------------------------------------------------------------


def test_losses_are_seeded_and_each_direction_has_its_own():
    a, b = Losses(0.1, 7), Losses(0.1, 7)
    mt_a = [a.lost("MT") for _ in range(2000)]
    mt_b = []
    for _ in range(2000):
        b.lost("MO")  # traffic the other way does not shift this direction's losses
        mt_b.append(b.lost("MT"))
    assert mt_a == mt_b
    assert 150 <= sum(mt_a) <= 250 and a.dropped == {"MT": sum(mt_a), "MO": 0}
    assert [Losses(0.1, 8).lost("MT") for _ in range(2000)] != mt_a
    assert not any(Losses().lost("MT") for _ in range(100))
    with pytest.raises(ValueError):
        Losses(1.0)
