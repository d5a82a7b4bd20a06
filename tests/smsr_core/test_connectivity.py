"""ES3-UpdateConnectivityParameters at the SM-SR (smsr_core.platform), driven by hand against the simulated eUICCs.

The SM-DP's ConnectivityParameters (an SCP03 session with the profile's ISD-P: INITIALIZE UPDATE, EXTERNAL
AUTHENTICATE, STORE DATA 3A07 under C-MAC and C-DECRYPTION) are built with tests/keys/reference.py; the SM-SR
relays them unread to the ISD-P's TAR under the ISD-R's SCP80 keys, and the ISD-P's answers go back to the SM-DP
as EuiccResponseData. The demo profiles were loaded at manufacturing, so the test gives the ISD-P the key set a
download would have left (the simulated card's state, test set-up).
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from esx.demo import MNO_OID, SMDP_OID
from euicc_sim.card import IsdpKeyset
from keys.scp03 import StaticKeys
from ota import es8, sms
from sgp02.roles import Caller
from smsr_core.models import EisAuditRecord
from smsr_core.platform import OPERATION_TYPE, Function

from tests.euicc_sim.test_es8_connectivity import VALUE, session, store_3a07
from tests.keys import reference as ref

from .ota_harness import at
from .test_platform import (  # noqa: F401 (fixtures)
    AID1,
    AS_REGISTERED,
    EID1,
    OTHER_SMDP,
    SPARE1,
    SPARE2,
    UNKNOWN_EID,
    assert_refused,
    callbacks,
    demo_instance,
    h,
    status_of,
)

SMDP = Caller(SMDP_OID, "smdp", frozenset({MNO_OID}))
KEYS = StaticKeys(bytes(range(16)), bytes(range(16, 32)), bytes(range(32, 48)))
KVN = 0x30


@pytest.fixture
def downloaded(h):
    """SPARE1's ISD-P on the card holds the key set a download would have established (KVN '30')."""
    card = h.card(EID1)
    isdp = card.profile(AID1)
    isdp.keyset = IsdpKeyset(kvn=KVN, key_id=1, enc=KEYS.enc.hex(), mac=KEYS.mac.hex(), dek=KEYS.dek.hex())
    card.save()
    return h


def request(h, parameters: bytes | str, *, iccid: str = SPARE1, eid: str = EID1, caller: Caller = SMDP,
            message_id: str = "urn:uuid:ucp", function_call_id: str = "auto") -> int:
    """ES3-UpdateConnectivityParameters as the ES3 handler accepts it (esx.adapters.AsyncFunction)."""
    text = parameters if isinstance(parameters, str) else parameters.hex().upper()
    return h.request(Function.UPDATE_CONNECTIVITY, eid, iccid, caller=caller, interface="ES3", message_id=message_id,
                     function_call_id=function_call_id, params={"connectivity_parameters": text})


def response_script(*r_apdus: bytes) -> str:
    """The ISD-P's answer as the SM-DP gets it: 'AB' { '80' n, '23' R-APDU ... } (ota.es8's wire, built here)."""
    body = ref.tlv(0x80, bytes([len(r_apdus)])) + b"".join(ref.tlv(0x23, r) for r in r_apdus)
    return ref.tlv(0xAB, body).hex().upper()


def test_connectivity_parameters_reach_the_isdp_and_its_answers_come_back(downloaded):
    h = downloaded
    s = session(KEYS, 1, [store_3a07()], aid=AID1)
    op_id = request(h, b"".join(s.commands))
    h.start()
    [t] = h.send_due()
    # one SCP80 packet to the enabled profile's number, addressed to the ISD-P's TAR (ota.es8.isdp_tar)
    packet = sms.parse_user_data(t.sms.segments[0]).payload  # CPL(2) CHL SPI(2) KIc KID TAR(3) ...
    assert t.reached == EID1 and packet[7:10] == es8.isdp_tar(bytes.fromhex(AID1))
    h.process()
    op = h.op(op_id)
    expected = response_script(s.initialize_update_answer + b"\x90\x00", b"\x90\x00", s.r_macs[0] + b"\x90\x00")
    assert (op.state, op.result, op.euicc_response) == ("done", ("EXECUTED_SUCCESS", None, None), expected)
    [cb] = callbacks(h, op_id)
    assert (cb.operation, cb.target, cb.relates_to) == ("ES3-UpdateConnectivityParametersCallback", SMDP_OID,
                                                        "urn:uuid:ucp")
    assert status_of(cb) == ("EXECUTED_SUCCESS", None, None) and cb.fields["EuiccResponseData"] == expected
    assert h.card(EID1).profile(AID1).connectivity_parameters == VALUE.hex().upper()
    assert h.profiles(EID1) == AS_REGISTERED  # the EIS does not change
    with h.db.session() as db:
        record = db.scalars(select(EisAuditRecord).where(EisAuditRecord.eid == EID1)).all()[-1]
        assert (record.operation_type, record.requester_id, record.status, record.iccid, record.isd_p_aid) == (
            "0C00", SMDP_OID, "EXECUTED_SUCCESS", SPARE1, AID1)
    assert OPERATION_TYPE[Function.UPDATE_CONNECTIVITY] == "0C00"
    assert h.ota(EID1).active_operation_id is None


def test_a_failure_in_the_isdp_is_8_3_4_2_with_its_answers(downloaded):
    h = downloaded
    s = session(KEYS, 1, [store_3a07()], aid=AID1)
    tampered = s.commands[2][:-1] + bytes([s.commands[2][-1] ^ 0x01])  # the C-MAC of the STORE DATA
    op_id = request(h, b"".join(s.commands[:2] + [tampered]))
    h.start()
    h.send_due()
    h.process()
    expected = response_script(s.initialize_update_answer + b"\x90\x00", b"\x90\x00", b"\x69\x82")
    op = h.op(op_id)
    assert (op.state, op.result, op.euicc_response) == ("done", ("FAILED", "8.3", "4.2"), expected)
    [cb] = callbacks(h, op_id)
    assert status_of(cb) == ("FAILED", "8.3", "4.2") and cb.fields["EuiccResponseData"] == expected
    assert cb.fields["SubjectIdentifier"] == AID1
    assert h.card(EID1).profile(AID1).connectivity_parameters is None


def test_an_isdp_without_the_key_set_answers_6a88_and_fails(h):
    # A profile loaded at manufacturing: no key set from a download, so no SCP03 session opens.
    s = session(KEYS, 1, [store_3a07()], aid=AID1)
    op_id = request(h, b"".join(s.commands))
    h.start()
    h.send_due()
    h.process()
    op = h.op(op_id)
    assert (op.result, op.euicc_response) == (("FAILED", "8.3", "4.2"), response_script(b"\x6a\x88"))


def test_a_failed_external_authenticate_is_a_failure_though_6300_lets_the_script_go_on(downloaded):
    h = downloaded
    s = session(KEYS, 1, [], aid=AID1)
    card_challenge = ref.scp03_card_challenge(KEYS.enc, 1, bytes.fromhex(AID1))
    _, s_mac, _ = ref.scp03_session_keys(KEYS.enc, KEYS.mac, bytes.fromhex("0102030405060708"), card_challenge)
    ea, _ = ref.scp03_external_authenticate(s_mac, bytes(8))  # a wrong host cryptogram, MACed right
    op_id = request(h, s.commands[0] + ref.tlv(0x22, ea))  # no STORE DATA after it: only 9000s would do
    h.start()
    h.send_due()
    h.process()
    assert h.op(op_id).result == ("FAILED", "8.3", "4.2")
    assert h.op(op_id).euicc_response == response_script(s.initialize_update_answer + b"\x90\x00", b"\x63\x00")


def test_an_isdp_the_card_does_not_have_expires_and_audits(downloaded):
    # The simulated card answers a packet for an unknown TAR with an unsecured PoR (status 09, counter 0), which no
    # operation waits for: the packet goes again until the validity period ends, then EXPIRED, dirty, audit.
    h = downloaded
    card = h.card(EID1)
    card.profiles.remove(card.profile(AID1))
    card.save()
    op_id = request(h, b"".join(session(KEYS, 1, [store_3a07()], aid=AID1).commands))
    h.start()
    h.send_due()
    h.process()
    assert h.inbox_outcomes() == ["PoR counter 0: no operation waits for it"]
    h.expire(at(3600))
    assert h.op(op_id).result == ("EXPIRED", "1.6", "5.3")
    assert h.ota(EID1).dirty
    assert [(o.function, o.interface, o.state) for o in h.ops()][-1] == ("AuditEIS", "SMSR", "queued")


@pytest.mark.parametrize("eid,iccid,caller,code", [
    (UNKNOWN_EID, SPARE1, SMDP, ("8.1.1", "3.9")),
    (EID1, "8988299000000009999", SMDP, ("8.2.1", "3.9")),
    (EID1, SPARE2, SMDP, ("8.2.1", "3.10")),  # on the other eUICC
    (EID1, SPARE1, Caller(OTHER_SMDP, "smdp"), ("8.2.1", "1.2")),  # an SM-DP the profile's MNO did not name
], ids=["unknown EID", "unknown ICCID", "ICCID on another eUICC", "not allowed"])
def test_refused_when_accepted(h, eid, iccid, caller, code):
    op_id = request(h, b"".join(session(KEYS, 1, [store_3a07()], aid=AID1).commands), eid=eid, iccid=iccid,
                    caller=caller)
    assert_refused(h, op_id, *code, operation="ES3-UpdateConnectivityParametersCallback", target=caller.oid,
                   relates_to="urn:uuid:ucp")


@pytest.mark.parametrize("parameters", [
    "",  # no command
    "00",  # not a TLV of an ES8 command
    "2203801234",  # a '22' whose value is no C-APDU (3 bytes)
    "840A30010102030405060708",  # an SCP03t TLV: a download's, not this function's
    "22058050000000" + "22",  # a whole '22' TLV, then a lone tag
    "XYZ",
], ids=["empty", "not ES8", "short C-APDU", "SCP03t", "truncated", "not hex"])
def test_connectivity_parameters_that_are_no_c_apdu_sequence_are_1_6_2_1(h, parameters):
    op_id = request(h, parameters)
    assert_refused(h, op_id, "1.6", "2.1", operation="ES3-UpdateConnectivityParametersCallback", target=SMDP_OID,
                   relates_to="urn:uuid:ucp")


def test_a_replayed_request_runs_once(downloaded):
    h = downloaded
    parameters = b"".join(session(KEYS, 1, [store_3a07()], aid=AID1).commands)
    first = request(h, parameters, function_call_id="ucp-1")
    assert request(h, parameters, function_call_id="ucp-1") == first
    h.start()
    assert len(h.send_due()) == 1
    h.process()
    assert h.op(first).result == ("EXECUTED_SUCCESS", None, None)
    assert len(callbacks(h, first)) == 1
