"""ES3-UpdateConnectivityParameters end to end: SM-DP -> SM-SR -> SMPP/SCP80 -> the ISD-P -> callback to the SM-DP.

The SM-SR and the SM-DP are served apart, each with its worker, and the loopback SMSC reaches the simulated card.
The SM-DP does not keep an ISD-P's SCP03 key set after a download, so the test plays whoever holds it: it reads
the key set from the simulated card's state and builds the SCP03 session with tests/keys/reference.py; the request
leaves through ``esx smdp update-connectivity``, or through a client built from the official GSMA WSDL. Every
callback is validated against the official ES3 XSD.
"""
from __future__ import annotations

import json
import time

import sqlalchemy as sa
from lxml import etree

from esx.binding.ns import GSMA
from keys.scp03 import StaticKeys
from ota import es8

from tests.euicc_sim.test_es8_connectivity import VALUE, session, store_3a07

from .clients import CLIENT_KINDS
from .conftest import official_schema
from .helpers import fresh_euicc
from .test_download import callback as download_callback
from .test_download import card, order

NS = {"rps": GSMA}


def delivered_callback(instance, message_id: str, timeout: float = 60.0) -> tuple[str, str, etree._Element]:
    """(operation, recipient, body) of the SM-SR's callback relating to ``message_id``, once delivered."""
    from esx.outbox import soap_body
    from persistence.db import Database
    from persistence.outbox import OutboxMessage

    engine = sa.create_engine(instance.database_url)
    deadline, row = time.monotonic() + timeout, None
    try:
        while time.monotonic() < deadline and row is None:
            with engine.connect() as c:
                row = c.execute(sa.text("select operation, target_oid, id from outbox where relates_to = :m "
                                        "and delivered_at is not null"), {"m": message_id}).first()
            time.sleep(0.1)
    finally:
        engine.dispose()
    assert row is not None, f"no callback relating to {message_id} was delivered"
    db = Database(instance.database_url)
    try:
        with db.session() as s:  # the event, rendered as it was delivered
            body = etree.fromstring(soap_body(s.get(OutboxMessage, row[2])))
    finally:
        db.dispose()
    assert official_schema("ES3").validate(body), official_schema("ES3").error_log
    return row[0], row[1], body


def test_connectivity_parameters_reach_a_downloaded_profile(instance):
    eid, _ = fresh_euicc(instance)
    got = download_callback(instance, order(instance, eid, EnableProfile=False))
    assert got.status == "EXECUTED_SUCCESS"
    iccid = got.text("rps:Iccid")
    state = json.loads((instance.data_dir / "euicc" / eid / "card.json").read_text())
    isdp = next(p for p in state["profiles"] if p["iccid"] == iccid)
    keyset = isdp["keyset"]
    keys = StaticKeys(bytes.fromhex(keyset["enc"]), bytes.fromhex(keyset["mac"]), bytes.fromhex(keyset["dek"]))
    # the first SCP03 session of this ISD-P since its download
    s = session(keys, 1, [store_3a07()], aid=isdp["aid"], kvn=keyset["kvn"])

    result = instance.esx("smdp", "update-connectivity", "--data-dir", str(instance.data_dir), "--eid", eid,
                          "--iccid", iccid, "--connectivity-parameters", b"".join(s.commands).hex())
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    operation, recipient, body = delivered_callback(instance, printed["message_id"])
    assert (operation, recipient) == ("ES3-UpdateConnectivityParametersCallback", instance.doc["smdp_id"])
    assert etree.QName(body).localname == "ES3-UpdateConnectivityParametersResponse"
    assert body.findtext("rps:FunctionExecutionStatus/rps:Status", namespaces=NS) == "EXECUTED_SUCCESS"
    executed, responses = es8.parse_send_data_response(bytes.fromhex(body.findtext("rps:EuiccResponseData",
                                                                                   namespaces=NS)))
    assert (executed, [value for _, value in responses]) == (3, [
        s.initialize_update_answer + b"\x90\x00", b"\x90\x00", s.r_macs[0] + b"\x90\x00"])
    shown = next(p for p in card(instance, eid)["profiles"] if p["iccid"] == iccid)
    assert shown["connectivity_parameters"] == VALUE.hex().upper()


def test_the_official_client_asks_and_the_isdp_refusal_comes_back_as_8_3_4_2(instance):
    # A profile loaded at manufacturing has no SCP03 key set: its ISD-P answers INITIALIZE UPDATE with 6A88.
    eid, (_, second) = fresh_euicc(instance)
    es3 = CLIENT_KINDS["official"]("ES3", f"{instance.smsr_url}/smsr/es3", instance.doc["smdp_id"])
    parameters = session(StaticKeys(bytes(16), bytes(16), bytes(16)), 1, [store_3a07()]).commands
    status, reply, message_id = es3.send_async("ES3-UpdateConnectivityParameters", Eid=eid, Iccid=second,
                                               ConnectivityParameters=b"".join(parameters).hex().upper())
    assert (status, reply) == (202, b"")
    operation, recipient, body = delivered_callback(instance, message_id)
    assert (operation, recipient) == ("ES3-UpdateConnectivityParametersCallback", instance.doc["smdp_id"])
    assert (body.findtext("rps:FunctionExecutionStatus/rps:Status", namespaces=NS),
            body.findtext(".//rps:Subject", namespaces=NS), body.findtext(".//rps:Reason", namespaces=NS)) == (
        "FAILED", "8.3", "4.2")
    # 'AB' { '80' 01 01 (one command ran), '23' R-APDU 6A88 }: the ISD-P's answer, as it came
    assert body.findtext("rps:EuiccResponseData", namespaces=NS) == "AB0780010123026A88"
