"""SMPP 3.4 on the wire: the SM-SR's Esme (esx.smpp) against the LoopbackSmsc (euicc_sim.smsc).

Expected PDUs are written out byte by byte from the SMPP v3.4 specification (Issue 1.2): §3.2 the 16-octet header
(command_length, command_id, command_status, sequence_number, all big-endian), §4 the mandatory body fields of each
PDU in order, §5.1.2 command_id values, §5.1.3 command_status values. They are compared with the PDUs the SMSC
recorded in its pdu_log as they crossed the socket.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from smpplib import client as smpp_client
from smpplib import exceptions

from esx.smpp import Esme, SmppConfig, SmppError
from euicc_sim.smsc import LoopbackSmsc
from ota.smpp import ShortMessage

SMSR_ADDR = "882001"
EUICC_MSISDN = "447700900123"
# An OTA SMS as the OTA layer hands it over: UDH 02 70 00 (UDHL 2, IEI '70' command packet, length 0) then a
# TS 102 225 command packet. Arbitrary binary, with 00 and FF octets, so a C-string codec would break it.
SECURED_SMS = bytes.fromhex("027000" "002a15" "06211515" "b00010" "0000000000000001" "00") + bytes(range(0, 256, 17))
POR_SMS = bytes.fromhex("027100" "000e0a" "b00010" "0000000000000001" "00" "00ff")


def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def header(length: int, command_id: int, status: int, sequence: int) -> str:
    """§3.2 PDU header as hex, for the expectations below."""
    return struct.pack(">LLLL", length, command_id, status, sequence).hex()


class Recorder:
    def __init__(self) -> None:
        self.messages: list[ShortMessage] = []
        self.lock = threading.Lock()

    def __call__(self, message: ShortMessage) -> None:
        with self.lock:
            self.messages.append(message)


@pytest.fixture
def pdu_log(tmp_path: Path) -> Path:
    return tmp_path / "smpp.jsonl"


def log_lines(path: Path, command: str | None = None) -> list[dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [line for line in lines if command is None or line["command"] == command]


@pytest.fixture
def submitted() -> Recorder:
    return Recorder()


@pytest.fixture
def smsc(pdu_log: Path, submitted: Recorder) -> Iterator[LoopbackSmsc]:
    server = LoopbackSmsc(on_submit=submitted, pdu_log=pdu_log, retry_interval=0.1)
    server.start()
    yield server
    server.stop()


def config(port: int, **changes: object) -> SmppConfig:
    return SmppConfig(port=port, source_addr=SMSR_ADDR, reconnect_delay=0.1, response_timeout=2.0,
                      **changes)  # type: ignore[arg-type]


@pytest.fixture
def start_esme() -> Iterator[Callable[..., Esme]]:
    started: list[Esme] = []

    def start(port: int, on_deliver: Callable[[ShortMessage], None] = lambda m: None, **changes: object) -> Esme:
        esme = Esme(config(port, **changes), on_deliver)
        esme.start()
        started.append(esme)
        return esme

    yield start
    for esme in started:
        esme.stop()


# --- PDUs on the wire --------------------------------------------------------------------------------------------


def test_bind_transceiver_pdu(smsc: LoopbackSmsc, pdu_log: Path, start_esme) -> None:
    esme = start_esme(smsc.port)
    assert esme.wait_bound(3)
    bind, resp = log_lines(pdu_log)[:2]
    # §4.1.5 bind_transceiver: system_id, password, system_type (C-octet strings), interface_version 0x34,
    # addr_ton, addr_npi, address_range: the SM-SR's own SMS address "882001" (the SMSC routes on it).
    assert bind == {"dir": "in", "command": "bind_transceiver", "sequence": 1, "hex": (
        header(35, 0x00000009, 0, 1) + "65737800" "65737800" "00" "34" "00" "01" "38383230303100")}
    # §4.1.6 bind_transceiver_resp: system_id of the SMSC, then the optional sc_interface_version TLV
    # (§5.3.2 TLV: tag 0x0210, length 1, value 0x34).
    assert resp == {"dir": "out", "command": "bind_transceiver_resp", "sequence": 1, "hex": (
        header(30, 0x80000009, 0, 1) + "6573782d736d736300" "0210" "0001" "34")}


def test_submit_sm_pdu_and_on_submit(smsc: LoopbackSmsc, pdu_log: Path, submitted: Recorder, start_esme) -> None:
    esme = start_esme(smsc.port)
    assert esme.wait_bound(3)
    message_id = esme.submit(EUICC_MSISDN, SECURED_SMS)
    assert message_id == "00000001"

    (submit,) = log_lines(pdu_log, "submit_sm")
    # §4.4.1 submit_sm: service_type "", source TON 0 NPI 1 "882001", dest TON 0 NPI 1 "447700900123",
    # esm_class 0x40 (UDHI, §5.2.12), protocol_id 0x7F, priority_flag 0, schedule_delivery_time "",
    # validity_period "", registered_delivery 0, replace_if_present_flag 0, data_coding 0xF6, sm_default_msg_id 0,
    # sm_length, short_message (octets, no terminator).
    body = ("00" "00" "01" "38383230303100" "00" "01" "34343737303039303031323300" "40" "7f" "00" "00" "00" "00"
            "00" "f6" "00" + f"{len(SECURED_SMS):02x}" + SECURED_SMS.hex())
    assert submit == {"dir": "in", "command": "submit_sm", "sequence": 2,
                      "hex": header(16 + len(body) // 2, 0x00000004, 0, 2) + body}
    # §4.4.2 submit_sm_resp: message_id C-octet string.
    (resp,) = log_lines(pdu_log, "submit_sm_resp")
    assert resp["hex"] == header(25, 0x80000004, 0, 2) + "303030303030303100"

    assert wait_for(lambda: len(submitted.messages) == 1)
    assert submitted.messages[0] == ShortMessage(SMSR_ADDR, EUICC_MSISDN, SECURED_SMS, 0x40, 0x7F, 0xF6)


def test_deliver_sm_pdu_and_on_deliver(smsc: LoopbackSmsc, pdu_log: Path, start_esme) -> None:
    delivered = Recorder()
    esme = start_esme(smsc.port, delivered)
    assert esme.wait_bound(3)
    smsc.deliver(ShortMessage(EUICC_MSISDN, SMSR_ADDR, POR_SMS))
    assert wait_for(lambda: len(delivered.messages) == 1)
    assert delivered.messages[0] == ShortMessage(EUICC_MSISDN, SMSR_ADDR, POR_SMS, 0x40, 0x7F, 0xF6)

    assert wait_for(lambda: log_lines(pdu_log, "deliver_sm_resp"))
    (deliver,) = log_lines(pdu_log, "deliver_sm")
    # §4.6.1 deliver_sm: same mandatory fields as submit_sm; the SMSC numbers its own requests from 1.
    body = ("00" "00" "01" "34343737303039303031323300" "00" "01" "38383230303100" "40" "7f" "00" "00" "00" "00"
            "00" "f6" "00" + f"{len(POR_SMS):02x}" + POR_SMS.hex())
    assert deliver == {"dir": "out", "command": "deliver_sm", "sequence": 1,
                       "hex": header(16 + len(body) // 2, 0x00000005, 0, 1) + body}
    # §4.6.2 deliver_sm_resp: message_id unused, set to NULL.
    (resp,) = log_lines(pdu_log, "deliver_sm_resp")
    assert resp == {"dir": "in", "command": "deliver_sm_resp", "sequence": 1,
                    "hex": header(17, 0x80000005, 0, 1) + "00"}


def test_enquire_link_unknown_command_and_unbind_on_a_raw_socket(smsc: LoopbackSmsc) -> None:
    with socket.create_connection(("127.0.0.1", smsc.port), timeout=3) as sock:
        def exchange(request: str) -> str:
            sock.sendall(bytes.fromhex(request))
            (length,) = struct.unpack(">L", sock.recv(4, socket.MSG_WAITALL))
            return (struct.pack(">L", length) + sock.recv(length - 4, socket.MSG_WAITALL)).hex()

        # §4.11 enquire_link / enquire_link_resp: header only, sequence echoed.
        assert exchange(header(16, 0x00000015, 0, 7)) == header(16, 0x80000015, 0, 7)
        # §4.3 generic_nack, ESME_RINVCMDID (0x03) for a command_id that does not exist.
        assert exchange(header(16, 0x00000099, 0, 8)) == header(16, 0x80000000, 0x00000003, 8)
        # submit_sm before any bind: ESME_RINVBNDSTS (0x04), header only (§4.4.2: no body on error).
        body = "00" "0000" "3100" "0000" "3200" "40" "7f" "00" "00" "00" "00" "00" "f6" "00" "01" "aa"
        assert exchange(header(16 + len(body) // 2, 4, 0, 9) + body) == header(16, 0x80000004, 0x04, 9)
        # §4.2 unbind / unbind_resp, then the SMSC closes.
        assert exchange(header(16, 0x00000006, 0, 10)) == header(16, 0x80000006, 0, 10)
        assert sock.recv(1) == b""


# --- bind refusal ------------------------------------------------------------------------------------------------


def test_wrong_password_is_refused(smsc: LoopbackSmsc, pdu_log: Path, start_esme) -> None:
    esme = start_esme(smsc.port, password="wrong")
    assert not esme.wait_bound(0.4)
    with pytest.raises(SmppError):
        esme.submit(EUICC_MSISDN, SECURED_SMS)
    # ESME_RINVPASWD (0x0E); §4.1.6: no body when command_status is not 0. (The SMSC logs it as it answers: on a busy
    # machine, a moment after the ESME gave up.)
    deadline = time.monotonic() + 10
    while not log_lines(pdu_log, "bind_transceiver_resp") and time.monotonic() < deadline:
        time.sleep(0.05)
    resp = log_lines(pdu_log, "bind_transceiver_resp")[0]
    assert resp["hex"] == header(16, 0x80000009, 0x0000000E, 1)


def test_wrong_system_id_is_refused(smsc: LoopbackSmsc) -> None:
    client = smpp_client.Client("127.0.0.1", smsc.port, timeout=3, allow_unknown_opt_params=True)
    client.connect()
    try:
        with pytest.raises(exceptions.PDUError) as refused:
            client.bind_transceiver(system_id="intruder", password="esx")
        assert refused.value.args[1] == 0x0000000F  # ESME_RINVSYSID
    finally:
        client.disconnect()


# --- reliability -------------------------------------------------------------------------------------------------


def test_on_deliver_failure_makes_the_smsc_redeliver(smsc: LoopbackSmsc, pdu_log: Path, start_esme) -> None:
    attempts: list[ShortMessage] = []

    def on_deliver(message: ShortMessage) -> None:
        attempts.append(message)
        if len(attempts) == 1:
            raise RuntimeError("database unavailable")

    esme = start_esme(smsc.port, on_deliver)
    assert esme.wait_bound(3)
    smsc.deliver(ShortMessage(EUICC_MSISDN, SMSR_ADDR, POR_SMS))
    assert wait_for(lambda: len(log_lines(pdu_log, "deliver_sm_resp")) == 2)
    assert attempts == [ShortMessage(EUICC_MSISDN, SMSR_ADDR, POR_SMS)] * 2
    first, second = log_lines(pdu_log, "deliver_sm_resp")
    assert first["hex"] == header(17, 0x80000005, 0x00000064, 1) + "00"  # ESME_RX_T_APPN
    assert second["hex"] == header(17, 0x80000005, 0, 2) + "00"
    time.sleep(0.3)  # more than retry_interval: acknowledged, so not delivered a third time
    assert len(log_lines(pdu_log, "deliver_sm")) == 2


def test_message_stored_while_no_esme_is_bound(smsc: LoopbackSmsc, start_esme) -> None:
    smsc.deliver(ShortMessage(EUICC_MSISDN, SMSR_ADDR, POR_SMS))
    delivered = Recorder()
    start_esme(smsc.port, delivered)
    assert wait_for(lambda: len(delivered.messages) == 1)


def test_esme_reconnects_after_smsc_restart(submitted: Recorder, start_esme) -> None:
    first = LoopbackSmsc(on_submit=submitted)
    first.start()
    port = first.port
    esme = start_esme(port)
    assert esme.wait_bound(3)
    first.stop()
    assert wait_for(lambda: not esme.bound)
    with pytest.raises(SmppError):
        esme.submit(EUICC_MSISDN, SECURED_SMS)

    second = LoopbackSmsc(port=port, on_submit=submitted)
    second.start()
    try:
        assert esme.wait_bound(3)
        assert esme.submit(EUICC_MSISDN, SECURED_SMS) == "00000001"
        assert wait_for(lambda: len(submitted.messages) == 1)
    finally:
        second.stop()


def test_enquire_link_keeps_the_link_checked(smsc: LoopbackSmsc, pdu_log: Path, start_esme) -> None:
    esme = start_esme(smsc.port, enquire_link_interval=0.1)
    assert esme.wait_bound(3)
    assert wait_for(lambda: len(log_lines(pdu_log, "enquire_link_resp")) >= 2)
    assert esme.bound
    link = log_lines(pdu_log, "enquire_link")[0]
    assert link["hex"] == header(16, 0x00000015, 0, link["sequence"])


# --- throughput and concurrency ----------------------------------------------------------------------------------


def test_submit_rate_limits_throughput(smsc: LoopbackSmsc, pdu_log: Path, start_esme) -> None:
    esme = start_esme(smsc.port, submit_rate=5.0)
    assert esme.wait_bound(3)
    began = time.monotonic()
    threads = [threading.Thread(target=esme.submit, args=(EUICC_MSISDN, SECURED_SMS)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Three submits at 5/s from three threads: slots at 0, 0.2 and 0.4 s.
    assert time.monotonic() - began >= 0.39
    assert len(log_lines(pdu_log, "submit_sm")) == 3


def test_concurrent_submits_get_their_own_answers(smsc: LoopbackSmsc, submitted: Recorder, start_esme) -> None:
    esme = start_esme(smsc.port)
    assert esme.wait_bound(3)
    ids: list[str] = []

    def worker(n: int) -> None:
        for i in range(5):
            ids.append(esme.submit(EUICC_MSISDN, bytes([n, i]) + SECURED_SMS))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(ids) == [f"{n:08X}" for n in range(1, 21)]
    assert wait_for(lambda: len(submitted.messages) == 20)
    assert {m.short_message[:2] for m in submitted.messages} == {bytes([n, i]) for n in range(4) for i in range(5)}


def test_on_submit_may_answer_with_deliver(pdu_log: Path, start_esme) -> None:
    """The simulated eUICC answers from inside on_submit (a PoR), which must not deadlock the SMSC."""
    delivered = Recorder()
    servers: list[LoopbackSmsc] = []

    def euicc(sms: ShortMessage) -> None:
        servers[0].deliver(ShortMessage(sms.destination_addr, sms.source_addr, POR_SMS))

    smsc = LoopbackSmsc(on_submit=euicc, pdu_log=pdu_log)
    servers.append(smsc)
    smsc.start()
    try:
        esme = start_esme(smsc.port, delivered)
        assert esme.wait_bound(3)
        esme.submit(EUICC_MSISDN, SECURED_SMS)
        assert wait_for(lambda: len(delivered.messages) == 1)
        assert delivered.messages[0] == ShortMessage(EUICC_MSISDN, SMSR_ADDR, POR_SMS)
    finally:
        smsc.stop()


def test_deliveries_round_robin_over_bound_esmes(smsc: LoopbackSmsc, start_esme) -> None:
    one, two = Recorder(), Recorder()
    esmes = [start_esme(smsc.port, one), start_esme(smsc.port, two)]
    for esme in esmes:
        assert esme.wait_bound(3)
        esme.submit(EUICC_MSISDN, SECURED_SMS)  # answered, so the SMSC has its bind on record
    for n in range(4):
        smsc.deliver(ShortMessage(EUICC_MSISDN, SMSR_ADDR, bytes([n])))
    assert wait_for(lambda: len(one.messages) + len(two.messages) == 4)
    assert len(one.messages) == len(two.messages) == 2


def test_limits_and_stop_leaves_no_thread(pdu_log: Path) -> None:
    before = set(threading.enumerate())
    smsc = LoopbackSmsc(pdu_log=pdu_log)
    smsc.start()
    esme = Esme(config(smsc.port), lambda m: None)
    with pytest.raises(SmppError):
        esme.submit(EUICC_MSISDN, SECURED_SMS)  # not started, not bound
    esme.start()
    assert esme.wait_bound(3)
    with pytest.raises(ValueError):
        esme.submit(EUICC_MSISDN, bytes(141))  # more than one SMS (TS 23.040: 140 octets of 8-bit user data)
    with pytest.raises(ValueError):
        smsc.deliver(ShortMessage(EUICC_MSISDN, SMSR_ADDR, bytes(141)))
    esme.stop()
    smsc.stop()
    assert set(threading.enumerate()) == before
    assert [line["command"] for line in log_lines(pdu_log)][-2:] == ["unbind", "unbind_resp"]


def test_on_deliver_many_gets_every_deliver_sm_and_each_is_answered(smsc: LoopbackSmsc, pdu_log: Path) -> None:
    """With on_deliver_many the reader hands over the deliver_sm it has read together (one transaction in the
    worker); every one arrives once and is answered ESME_ROK after that call returned."""
    batches: list[list[ShortMessage]] = []
    esme = Esme(config(smsc.port), lambda m: batches.append([m]), on_deliver_many=batches.append)
    esme.start()
    try:
        assert esme.wait_bound(3)
        for n in range(5):
            smsc.deliver(ShortMessage(EUICC_MSISDN, SMSR_ADDR, POR_SMS[:-1] + bytes([n])))
        assert wait_for(lambda: sum(len(b) for b in batches) == 5)
        assert sorted(m.short_message[-1] for b in batches for m in b) == list(range(5))
        assert wait_for(lambda: len(log_lines(pdu_log, "deliver_sm_resp")) == 5)
    finally:
        esme.stop()
