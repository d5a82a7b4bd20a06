"""ES4 platform management end to end: request -> 202 -> SMPP/SCP80 -> simulated card -> callback.

Each test works on an eUICC of its own (``fresh_euicc``), registered over ES1, with a simulated
card that the loopback SMSC reaches; the SM-SR, its worker and the SMSC are separate processes.
Every callback and notification received is validated against the official GSMA XSD.
"""
from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa

from esx.binding.ns import GSMA
from keys import scp80
from ota import sms
from ota.smpp import parse_pdu

from .clients import CLIENT_KINDS
from .conftest import official_schema
from .helpers import OTHER_MNO, ensure_other_mno_euicc, fresh_euicc, pol2

NS = {"rps": GSMA}


def es4(instance, kind="official", oid=None):
    return CLIENT_KINDS[kind]("ES4", f"{instance.smsr_url}/smsr/es4", oid or instance.mno)


def request(instance, op, *, kind="official", reply=True, **params):
    """Send one asynchronous ES4 request; asserts the 202 and returns the request's MessageID."""
    reply_to = f"{instance.receiver.url}/replyto/{uuid.uuid4().hex}" if reply else None
    status, body, message_id = es4(instance, kind).send_async(op, reply_to=reply_to, **params)
    assert (status, body) == (202, b""), body[:300]
    return message_id, reply_to


def callback(instance, message_id, timeout=30.0):
    got = instance.receiver.callback(message_id, timeout=timeout)
    assert official_schema("ES4").validate(got.body), official_schema("ES4").error_log
    return got


def eis_states(instance, eid):
    reply = es4(instance)("ES4-GetEIS", Eid=eid)
    assert reply.status == "EXECUTED_SUCCESS", reply.code
    return {p.findtext("rps:Iccid", namespaces=NS): (p.findtext("rps:State", namespaces=NS),
                                                     p.findtext("rps:FallbackAttribute", namespaces=NS))
            for p in reply.body.findall("rps:Eis/rps:ProfileInfo", NS)}


def card_states(instance, eid):
    view = json.loads(instance.esx("euicc", "show", eid, "--data-dir", str(instance.data_dir)).stdout)
    names = {"ENABLED": "Enabled", "DISABLED": "Disabled"}
    return {p["iccid"]: (names.get(p["state"], "Created"), "true" if p["fallback"] else "false")
            for p in view["profiles"]}


def notified(instance, change, eid, iccid, count=1):
    found = instance.receiver.wait(
        lambda m: m.name == f"ES4-HandleProfile{change}Notification" and m.text("rps:Eid") == eid
        and m.text("rps:Iccid") == iccid, count=count)
    for m in found:
        assert m.path == "/mno"  # the MNO's registered endpoint
        assert official_schema("ES4").validate(m.body), official_schema("ES4").error_log
    return found


def enable(instance, eid, iccid, **kw):
    message_id, _ = request(instance, "ES4-EnableProfile", Eid=eid, Iccid=iccid, **kw)
    return callback(instance, message_id)


@pytest.mark.parametrize("kind", ["official", "ours"])
def test_enable_profile_end_to_end(instance, kind):
    eid, (first, second) = fresh_euicc(instance)
    message_id, reply_to = request(instance, "ES4-EnableProfile", kind=kind, Eid=eid, Iccid=second, ValidityPeriod=60)

    got = callback(instance, message_id)
    assert got.name == "ES4-EnableProfileResponse"
    assert got.status == "EXECUTED_SUCCESS" and got.code == (None, None)
    assert instance.receiver.url + got.path == reply_to  # delivered to the request's wsa:ReplyTo
    assert got.header("Action") == "http://gsma.com/ES4/PlatformManagementCallBack/ES4-EnableProfile"
    assert got.header("From").endswith(f"EntityId={instance.doc['smsr_id']}&EntityName=esx+SM-SR")

    notified(instance, "Disabled", eid, first)
    notified(instance, "Enabled", eid, second)
    expected = {first: ("Disabled", "true"), second: ("Enabled", "false")}
    assert eis_states(instance, eid) == expected
    assert card_states(instance, eid) == expected
    assert len(instance.receiver.callbacks(message_id)) == 1
    # The card operation is an AuditTrail record of the EIS (type 0200 = EnableProfile).
    reply = es4(instance)("ES4-GetEIS", Eid=eid)
    records = [(r.findtext("rps:OperationType", namespaces=NS), r.findtext("rps:RequesterId", namespaces=NS),
                r.findtext("rps:OperationExecutionStatus/rps:Status", namespaces=NS),
                r.findtext("rps:Isd-p-aid", namespaces=NS), r.findtext("rps:Iccid", namespaces=NS))
               for r in reply.body.findall("rps:Eis/rps:AuditTrail/rps:Record", NS)]
    assert ("0200", instance.mno, "EXECUTED_SUCCESS", "A0000005591010FFFFFFFF8900001100", second) in records


def test_the_smsc_saw_scp80_packets_in_submit_sm(instance):
    eid, (_, second) = fresh_euicc(instance)
    assert enable(instance, eid, second).status == "EXECUTED_SUCCESS"
    lines = [json.loads(line) for line in (instance.data_dir / "pdu.log").read_text().splitlines()]
    submits = [parse_pdu(bytes.fromhex(x["hex"])) for x in lines if x["dir"] == "in" and x["command"] == "submit_sm"]
    packets = []
    for pdu in submits:
        assert pdu.protocol_id == 0x7F and pdu.data_coding == 0xF6 and pdu.esm_class & 0x40
        part = sms.parse_user_data(pdu.short_message)
        if part.iei == sms.CPI and part.total == 1:
            packets.append(part.payload)
    assert packets, "no single-SMS SCP80 command packet crossed the SMSC"
    spi, kic, kid, tar = scp80.peek_command(packets[-1])
    assert (spi.to_bytes(), kic, kid, tar) == (bytes.fromhex("1639"), 0x12, 0x12, bytes.fromhex("000001"))


def test_disable_falls_back_and_delete_removes_the_profile(instance):
    eid, (first, second) = fresh_euicc(instance)
    assert enable(instance, eid, second).status == "EXECUTED_SUCCESS"

    message_id, _ = request(instance, "ES4-DisableProfile", Eid=eid, Iccid=second)
    got = callback(instance, message_id)
    assert (got.name, got.status) == ("ES4-DisableProfileResponse", "EXECUTED_SUCCESS")
    notified(instance, "Disabled", eid, second)
    notified(instance, "Enabled", eid, first, count=1)
    assert eis_states(instance, eid) == card_states(instance, eid) == {first: ("Enabled", "true"),
                                                                       second: ("Disabled", "false")}

    message_id, _ = request(instance, "ES4-DeleteProfile", Eid=eid, Iccid=second)
    got = callback(instance, message_id)
    assert (got.name, got.status) == ("ES4-DeleteProfileResponse", "EXECUTED_SUCCESS")
    notified(instance, "Deleted", eid, second)
    assert eis_states(instance, eid) == card_states(instance, eid) == {first: ("Enabled", "true")}


def test_audit_realigns_the_eis_with_the_card(instance):
    from euicc_sim.card import Card

    eid, (first, second) = fresh_euicc(instance)
    # The card loses the second profile behind the SM-SR's back (e.g. a local reset).
    path = instance.data_dir / "euicc" / eid / "card.json"
    card = Card.load(path)
    card.profiles = [p for p in card.profiles if p.iccid != second]
    card.save()

    message_id, _ = request(instance, "ES4-AuditEIS", Eid=eid)
    got = callback(instance, message_id)
    assert (got.name, got.status) == ("ES4-AuditEISResponse", "EXECUTED_SUCCESS")
    assert [e.text for e in got.body.findall("rps:Eis/rps:ProfileInfo/rps:Iccid", NS)] == [first]
    assert got.text("rps:Eis/rps:LastAuditDate")
    notified(instance, "Deleted", eid, second)
    assert eis_states(instance, eid) == card_states(instance, eid) == {first: ("Enabled", "true")}


# -- error cases: exact codes, in the callback ------------------------------------------------------


def failed(instance, op, code, **params):
    message_id, _ = request(instance, op, **params)
    got = callback(instance, message_id)
    assert (got.status, got.code) == ("FAILED", code), got.text("rps:FunctionExecutionStatus/rps:StatusCodeData/rps:Message")
    return got


def test_pol2_refusal_is_8_2_3_3_8_and_nothing_is_sent(instance):
    eid, (first, second) = fresh_euicc(instance)
    assert es4(instance)("ES4-UpdatePolicyRules", Eid=eid, Iccid=second,
                         pol2=pol2(("ENABLE", "Not-Allowed"))).status == "EXECUTED_SUCCESS"
    failed(instance, "ES4-EnableProfile", ("8.2.3", "3.8"), Eid=eid, Iccid=second)
    # Enabling the second would disable the first, whose POL2 forbids DISABLE.
    eid2, (first2, second2) = fresh_euicc(instance)
    es4(instance)("ES4-UpdatePolicyRules", Eid=eid2, Iccid=first2, pol2=pol2(("DISABLE", "Not-Allowed")))
    failed(instance, "ES4-EnableProfile", ("8.2.3", "3.8"), Eid=eid2, Iccid=second2)
    assert card_states(instance, eid2)[first2] == ("Enabled", "true")


def test_pol1_refusal_comes_from_the_card_as_8_2_2_3_8(instance):
    eid, (first, second) = fresh_euicc(instance)
    instance.esx("euicc", "set", eid, "--data-dir", str(instance.data_dir), "--pol1", f"{first}=disable-not-allowed")
    got = failed(instance, "ES4-EnableProfile", ("8.2.2", "3.8"), Eid=eid, Iccid=second)
    assert got.text("rps:EuiccResponseData").endswith("69E1")  # the card's R-APDU, for diagnosis
    assert eis_states(instance, eid) == card_states(instance, eid) == {first: ("Enabled", "true"),
                                                                       second: ("Disabled", "false")}


def test_deleting_the_enabled_or_the_fallback_profile_is_refused(instance):
    eid, (first, second) = fresh_euicc(instance)
    failed(instance, "ES4-DeleteProfile", ("8.1", "3.8"), Eid=eid, Iccid=first)  # enabled and fall-back
    assert enable(instance, eid, second).status == "EXECUTED_SUCCESS"
    failed(instance, "ES4-DeleteProfile", ("8.1", "3.8"), Eid=eid, Iccid=second)  # enabled
    failed(instance, "ES4-DeleteProfile", ("8.1", "3.8"), Eid=eid, Iccid=first)  # fall-back (disabled)
    failed(instance, "ES4-DisableProfile", ("8.1", "3.8"), Eid=eid, Iccid=first)  # not enabled
    assert set(card_states(instance, eid)) == {first, second}


def test_identity_and_ownership_errors(instance):
    eid, (first, second) = fresh_euicc(instance)
    other_eid, other_iccid = ensure_other_mno_euicc(instance)
    failed(instance, "ES4-EnableProfile", ("8.1.1", "3.9"), Eid="89049032000000000000000000999999", Iccid=second)
    failed(instance, "ES4-EnableProfile", ("8.2.1", "3.9"), Eid=eid, Iccid="8988299000000999993")
    failed(instance, "ES4-DeleteProfile", ("8.2.1", "3.10"), Eid=eid, Iccid=other_iccid)
    failed(instance, "ES4-DeleteProfile", ("8.2.1", "1.2"), Eid=other_eid, Iccid=other_iccid)
    failed(instance, "ES4-AuditEIS", ("8.6", "1.2"), Eid=other_eid)
    failed(instance, "ES4-AuditEIS", ("8.2", "1.2"), Eid=eid, Iccid=[first, other_iccid])


def test_a_silent_card_expires_with_1_6_5_3_and_gets_audited(instance):
    eid, (first, second) = fresh_euicc(instance)
    instance.esx("euicc", "set", eid, "--data-dir", str(instance.data_dir), "--silent")
    message_id, _ = request(instance, "ES4-EnableProfile", Eid=eid, Iccid=second, ValidityPeriod=4)
    got = instance.receiver.callback(message_id, timeout=15)
    assert (got.status, got.code) == ("EXPIRED", ("1.6", "5.3"))
    engine = sa.create_engine(instance.database_url)
    with engine.connect() as c:
        dirty = c.execute(sa.text("select dirty from euicc_ota where eid = :e"), {"e": eid}).scalar()
        audits = c.execute(sa.text("select count(*) from operation where eid = :e and function = 'AuditEIS' "
                                   "and interface = 'SMSR'"), {"e": eid}).scalar()
        attempts = c.execute(sa.text("select attempts from operation where message_id = :m"), {"m": message_id}).scalar()
    engine.dispose()
    assert dirty and audits == 1
    assert attempts >= 2  # re-sent after the PoR timeout, within the validity period
    assert eis_states(instance, eid)[second] == ("Disabled", "false")


def test_a_replayed_request_does_not_execute_twice(instance):
    """The same envelope twice (same MessageID), then a new MessageID with the same FunctionCallIdentifier."""
    import requests
    from lxml import etree

    eid, (first, second) = fresh_euicc(instance)
    caller = es4(instance)
    status, _, message_id = caller.send_async("ES4-EnableProfile", FunctionCallIdentifier="replayed-1",
                                              Eid=eid, Iccid=second)
    assert status == 202
    sent = etree.tostring(caller.client.plugins[0].last)
    again = requests.post(caller.endpoint, data=sent, headers={"Content-Type": "application/soap+xml; charset=utf-8"})
    assert again.status_code == 202
    status, _, other_id = caller.send_async("ES4-EnableProfile", FunctionCallIdentifier="replayed-1",
                                            Eid=eid, Iccid=second)
    assert status == 202 and other_id != message_id
    assert callback(instance, message_id).status == "EXECUTED_SUCCESS"
    engine = sa.create_engine(instance.database_url)
    with engine.connect() as c:
        count = c.execute(sa.text("select count(*) from operation where eid = :e"), {"e": eid}).scalar()
    engine.dispose()
    assert count == 1
    assert len(instance.receiver.callbacks(message_id)) == 1
    # The same FunctionCallIdentifier under a new MessageID is refused by a callback relating to the new MessageID,
    # naming the request whose outcome to wait for (issue 9: it used to be answered by nothing at all).
    refusal = callback(instance, other_id)
    assert (refusal.status, refusal.code) == ("FAILED", ("1.6", "3.3"))
    assert message_id in refusal.message
    assert len(instance.receiver.callbacks(other_id)) == 1


def test_a_callback_goes_to_the_requester_only(instance):
    """Another MNO's refused request is answered to that MNO, never to the demo MNO's endpoint."""
    import time

    eid, _ = fresh_euicc(instance)
    ensure_other_mno_euicc(instance)  # registers OTHER_MNO (no endpoint)
    status, _, message_id = es4(instance, oid=OTHER_MNO).send_async("ES4-AuditEIS", Eid=eid)
    assert status == 202
    engine = sa.create_engine(instance.database_url)
    deadline, row = time.monotonic() + 10, None
    while time.monotonic() < deadline and row is None:
        with engine.connect() as c:
            row = c.execute(sa.text("select target_oid, last_error from outbox where relates_to = :m"),
                            {"m": message_id}).first()
        time.sleep(0.1)
    engine.dispose()
    assert row is not None and row[0] == OTHER_MNO
    time.sleep(0.5)
    assert instance.receiver.callbacks(message_id) == []


@pytest.mark.parametrize("kind", ["official", "ours"])
def test_es3_enable_by_the_smdp_is_called_back_at_its_es3_endpoint(instance, kind):
    """ES3: the SM-DP asks, the result goes to the SM-DP's registered ES3 endpoint (ES3-EnableProfileCallback)."""
    import time

    eid, (first, second) = fresh_euicc(instance)
    smdp = instance.doc["smdp_id"]
    es3 = CLIENT_KINDS[kind]("ES3", f"{instance.smsr_url}/smsr/es3", smdp)
    status, body, message_id = es3.send_async("ES3-EnableProfile", Eid=eid, Iccid=second)
    assert (status, body) == (202, b"")
    engine = sa.create_engine(instance.database_url)
    deadline, row = time.monotonic() + 30, None
    while time.monotonic() < deadline and row is None:
        with engine.connect() as c:
            row = c.execute(sa.text("select operation, target_oid, id from outbox where relates_to = :m "
                                    "and delivered_at is not null"), {"m": message_id}).first()
        time.sleep(0.1)
    with engine.connect() as c:
        received = c.execute(sa.text("select requester_id from call_audit where function = 'ES3-EnableProfileCallback' "
                                     "and requester_id = :s"), {"s": instance.doc["smsr_id"]}).all()
    engine.dispose()
    assert row is not None and row[:2] == ("ES3-EnableProfileCallback", smdp)
    from lxml import etree

    from esx.outbox import soap_body
    from persistence.db import Database
    from persistence.outbox import OutboxMessage

    db = Database(instance.database_url)
    try:
        with db.session() as s:  # the event, rendered as it was delivered
            body = etree.fromstring(soap_body(s.get(OutboxMessage, row[2])))
    finally:
        db.dispose()
    assert etree.QName(body).localname == "ES3-EnableProfileResponse"
    assert body.findtext("rps:FunctionExecutionStatus/rps:Status", namespaces=NS) == "EXECUTED_SUCCESS"
    assert official_schema("ES3").validate(body), official_schema("ES3").error_log
    assert received  # the SM-DP's endpoint accepted it
    assert eis_states(instance, eid) == card_states(instance, eid)
