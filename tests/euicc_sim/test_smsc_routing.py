"""Two SM-SRs reach one device through one SMSC (euicc_sim.smsc): each card's answer goes to the SM-SR that addressed
it, each notification to the SM-SR address the card holds (3A07), and a message for an address nobody is bound for
waits for its receiver.

The SM-SRs are the ESME every ``esx worker`` runs (``esx.smpp.Esme``), bound to the loopback SMSC over a real socket
with their own ``source_addr`` (A 882001, B 882003), the same system_id and password.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from esx.smpp import Esme, SmppConfig
from euicc_sim.card import Card, IsdP
from euicc_sim.network import SimulatedNetwork
from euicc_sim.smsc import LoopbackSmsc
from keys.scp80 import SPI_SGP02, Scp80Keyset, unwrap_command, unwrap_response, wrap_command
from ota import es5, remote, sms
from ota.es5 import DISABLED, ENABLED
from ota.smpp import ShortMessage

A, B, C = "882001", "882003", "882009"
CARD_MSISDN = "447700900001"
EID = "89049032000000000000000000000142"
ISD_R = "A0000005591010FFFFFFFF8900000100"
P0 = "A0000005591010FFFFFFFF8900001000"
P1 = "A0000005591010FFFFFFFF8900001100"
TAR = bytes.fromhex("000001")
KEYS = Scp80Keyset(kvn=1, enc=bytes(range(16)), mac=bytes(range(16, 32)))
QUIET = 0.5  # how long "nothing else arrives" is watched for


class Inbox:
    """What one ESME was delivered, in order."""

    def __init__(self) -> None:
        self.messages: list[ShortMessage] = []
        self.changed = threading.Condition()

    def __call__(self, message: ShortMessage) -> None:
        with self.changed:
            self.messages.append(message)
            self.changed.notify_all()

    def wait(self, count: int, timeout: float = 5.0) -> list[ShortMessage]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def start_esme() -> Iterator[Callable[[int, str], tuple[Esme, Inbox]]]:
    started: list[Esme] = []

    def start(port: int, address: str) -> tuple[Esme, Inbox]:
        inbox = Inbox()
        esme = Esme(SmppConfig(port=port, source_addr=address, reconnect_delay=0.1, response_timeout=2.0), inbox)
        esme.start()
        started.append(esme)
        assert esme.wait_bound(5)
        return esme, inbox

    yield start
    for esme in started:
        esme.stop()


@pytest.fixture
def smsc() -> Iterator[LoopbackSmsc]:
    server = LoopbackSmsc(retry_interval=0.1)
    server.start()
    yield server
    server.stop()


def mo(destination: str, text: bytes) -> ShortMessage:
    """A mobile-originated SMS from the card's MSISDN."""
    return ShortMessage(CARD_MSISDN, destination, text)


# -- the SMSC alone ---------------------------------------------------------------------------------------------------


def test_each_answer_goes_to_the_esme_bound_for_its_destination(smsc, start_esme):
    _, at_a = start_esme(smsc.port, A)
    _, at_b = start_esme(smsc.port, B)
    assert wait_for(lambda: sorted(smsc.bound_addresses()) == [A, B])  # the bind's address_range
    for n in range(4):
        smsc.deliver(mo(A, b"for A %d" % n))
        smsc.deliver(mo(B, b"for B %d" % n))
    smsc.deliver(mo("+" + B, b"for B, international"))  # a '+' names the same address
    assert [m.short_message for m in at_a.wait(4)] == [b"for A %d" % n for n in range(4)]
    assert [m.short_message for m in at_b.wait(5)] == [b"for B %d" % n for n in range(4)] + [b"for B, international"]
    time.sleep(QUIET)
    assert len(at_a.messages) == 4 and len(at_b.messages) == 5
    assert {m.destination_addr for m in at_a.messages} == {A}


def test_a_message_for_an_address_nobody_is_bound_for_waits_for_its_receiver(smsc, start_esme):
    _, at_a = start_esme(smsc.port, A)
    smsc.deliver(mo(C, b"for C, first"))
    smsc.deliver(mo(A, b"for A"))  # not held up behind the one that waits
    smsc.deliver(mo(C, b"for C, second"))
    assert [m.short_message for m in at_a.wait(1)] == [b"for A"]
    time.sleep(QUIET)
    assert [m.short_message for m in at_a.messages] == [b"for A"]  # C's are not A's, even with A the only receiver
    _, at_c = start_esme(smsc.port, C)
    assert [m.short_message for m in at_c.wait(2)] == [b"for C, first", b"for C, second"]  # in order


def test_a_receiver_bound_without_address_takes_what_no_other_is_bound_for(smsc, start_esme):
    _, at_a = start_esme(smsc.port, A)
    _, anyone = start_esme(smsc.port, "")  # an ESME that does not say its address
    assert wait_for(lambda: sorted(smsc.bound_addresses(), key=str) == [A, None])
    smsc.deliver(mo(A, b"for A"))
    smsc.deliver(mo(B, b"for B"))
    assert [m.short_message for m in anyone.wait(1)] == [b"for B"]
    assert [m.short_message for m in at_a.wait(1)] == [b"for A"]
    time.sleep(QUIET)
    assert len(anyone.messages) == 1 and len(at_a.messages) == 1


def test_several_sessions_of_one_address_share_its_messages_and_a_lost_one_is_redelivered(smsc, start_esme):
    """Two workers of one SM-SR bind with its address; a session that goes away hands its message to the other."""
    first, at_first = start_esme(smsc.port, A)
    _, at_second = start_esme(smsc.port, A)
    _, at_b = start_esme(smsc.port, B)
    for n in range(6):
        smsc.deliver(mo(A, b"%d" % n))
    assert wait_for(lambda: len(at_first.messages) + len(at_second.messages) == 6)
    assert at_first.messages and at_second.messages  # both took some
    assert sorted(m.short_message for m in at_first.messages + at_second.messages) == [b"%d" % n for n in range(6)]
    first.stop()
    assert wait_for(lambda: smsc.bound_addresses().count(A) == 1)
    smsc.deliver(mo(A, b"after"))
    assert at_second.wait(len(at_second.messages) + 1)[-1].short_message == b"after"
    assert at_b.messages == []


# -- the network: the card answers whoever addressed it, and notifies the SM-SR it holds ---------------------------


@pytest.fixture
def network(tmp_path: Path) -> Iterator[SimulatedNetwork]:
    profiles = [IsdP(P0, ENABLED, fallback=True, iccid="8988299000000000001", msisdn=CARD_MSISDN, memory=1000),
                IsdP(P1, DISABLED, iccid="8988299000000000002", msisdn="447700900002", memory=1000)]
    scp80 = {"kvn": 1, "tar": TAR.hex(), "counter": 0, "enc": KEYS.enc.hex(), "mac": KEYS.mac.hex()}
    Card.create(tmp_path / EID / "card.json", eid=EID, isd_r_aid=ISD_R, profiles=profiles, free_memory=10_000,
                scp80=scp80)
    net = SimulatedNetwork(tmp_path, port=0, smsr_address=A, notification_retry=600.0)
    net.start()
    yield net
    net.stop()


def command_sms(counter: int, apdus: list[bytes]) -> list[bytes]:
    packet = wrap_command(KEYS, SPI_SGP02, TAR, counter, remote.encode_command_script(apdus))
    return sms.segment(packet, sms.CPI, counter % 256)


def received(inbox: Inbox, count: int) -> list[tuple[int, bytes]]:
    """(IEI, reassembled packet) of the first ``count`` SMS an ESME got (each one SMS here)."""
    out = []
    for m in inbox.wait(count)[:count]:
        out.append(sms.reassemble([sms.parse_user_data(m.short_message)]))
    return out


def test_the_card_answers_the_sm_sr_that_addressed_it_and_notifies_the_one_it_holds(network, start_esme):
    esme_a, at_a = start_esme(network.smsc.port, A)
    esme_b, at_b = start_esme(network.smsc.port, B)
    # A tells the card that its SM-SR is now at B's address (3A07) and enables P1: the PoR answers A, the
    # notification of the profile change goes to B.
    for part in command_sms(1, [es5.update_smsr_addressing(B), es5.enable_profile(bytes.fromhex(P1))]):
        esme_a.submit(CARD_MSISDN, part)
    ((iei, por),) = received(at_a, 1)
    assert iei == sms.RPI
    answer = unwrap_response(por, KEYS, SPI_SGP02)
    assert (answer.counter, answer.status) == (1, 0x00)
    assert remote.decode_response_script(answer.data).executed == 2
    ((iei, packet),) = received(at_b, 1)
    assert iei == sms.CPI and at_b.messages[0].destination_addr == B
    notification = es5.decode_notification(unwrap_command(packet, KEYS).data)
    assert (notification.type, notification.isdp_aid.hex().upper()) == (0x02, P1)
    assert network.notification_address(next(iter(network.cards.values()))) == B
    # B now commands the card (at P1's number): its PoR goes to B, none of it to A.
    for part in command_sms(2, [es5.notification_confirmation(notification.seq)]):
        esme_b.submit("447700900002", part)
    (_, (iei, por)) = received(at_b, 2)
    assert iei == sms.RPI and unwrap_response(por, KEYS, SPI_SGP02).counter == 2
    time.sleep(QUIET)
    assert len(at_a.messages) == 1 and len(at_b.messages) == 2


def test_a_card_that_holds_no_sm_sr_address_notifies_the_networks_default(network, start_esme):
    """Not the last submitter's: B addressing the card does not make B its SM-SR."""
    esme_a, at_a = start_esme(network.smsc.port, A)
    esme_b, at_b = start_esme(network.smsc.port, B)
    for part in command_sms(1, [es5.enable_profile(bytes.fromhex(P1))]):
        esme_b.submit(CARD_MSISDN, part)
    ((iei, _),) = received(at_b, 1)
    assert iei == sms.RPI
    ((iei, packet),) = received(at_a, 1)
    assert iei == sms.CPI
    assert es5.decode_notification(unwrap_command(packet, KEYS).data).type == 0x02
    time.sleep(QUIET)
    assert len(at_a.messages) == 1 and len(at_b.messages) == 1
    assert esme_a.bound
