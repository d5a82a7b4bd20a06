"""ES2-DownloadProfile end to end: an MNO's client built from the official GSMA WSDL orders a profile.

The SM-DP and the SM-SR are separate gunicorn processes on separate ports, each with its own worker; the
SM-SR reaches the simulated card over SMPP and SCP80; ES8 (key establishment, SCP03t, the profile package)
runs end to end between the SM-DP and the card through ES3-SendData. Every message the MNO receives is
validated against the official ES2 XSD.
"""
from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa

from esx.binding.ns import GSMA
from ota import es8

from .clients import CLIENT_KINDS
from .conftest import official_schema
from .helpers import fresh_euicc

NS = {"rps": GSMA}
PROFILE_TYPE = "esx-demo-download"


def es2(instance, kind="official"):
    return CLIENT_KINDS[kind]("ES2", f"{instance.smdp_url}/smdp/es2", instance.mno)


def es4(instance):
    return CLIENT_KINDS["official"]("ES4", f"{instance.smsr_url}/smsr/es4", instance.mno)


def order(instance, eid, *, kind="official", validity=120, **params):
    """ES2-DownloadProfile; asserts the 202 and returns the request's MessageID."""
    params.setdefault("ProfileType", PROFILE_TYPE)
    params.setdefault("EnableProfile", True)
    reply_to = f"{instance.receiver.url}/replyto/{uuid.uuid4().hex}"
    status, body, message_id = es2(instance, kind).send_async(
        "ES2-DownloadProfile", reply_to=reply_to, Eid=eid, **{"SmSr-id": instance.doc["smsr_id"]},
        ValidityPeriod=validity, **params)
    assert (status, body) == (202, b""), body[:300]
    return message_id


def callback(instance, message_id, timeout=90.0):
    got = instance.receiver.callback(message_id, timeout=timeout)
    assert official_schema("ES2").validate(got.body), official_schema("ES2").error_log
    assert got.name == "ES2-DownloadProfileResponse"
    return got


def card(instance, eid):
    return json.loads(instance.esx("euicc", "show", eid, "--data-dir", str(instance.data_dir)).stdout)


def eis_states(instance, eid):
    reply = es4(instance)("ES4-GetEIS", Eid=eid)
    return {p.findtext("rps:Iccid", namespaces=NS): p.findtext("rps:State", namespaces=NS)
            for p in reply.body.findall("rps:Eis/rps:ProfileInfo", NS)}


def stock(instance, iccid):
    engine = sa.create_engine(instance.database_url)
    try:
        with engine.connect() as c:
            return c.execute(sa.text("select state, imsi, msisdn from stock_profile where iccid = :i"),
                             {"i": iccid}).one()
    finally:
        engine.dispose()


def available(instance, profile_type=PROFILE_TYPE):
    rows = json.loads(instance.esx("smdp", "stock", "--data-dir", str(instance.data_dir)).stdout)
    return next(r["available"] for r in rows if r["profile_type"] == profile_type)


@pytest.mark.parametrize("curve", ["P-256", "brainpoolP256r1"])
def test_download_profile_and_enable_end_to_end(instance, curve):
    eid, (first, second) = fresh_euicc(instance, curve=curve)
    message_id = order(instance, eid)

    got = callback(instance, message_id)
    assert got.status == "EXECUTED_SUCCESS" and got.code == (None, None)
    iccid = got.text("rps:Iccid")
    assert iccid and got.header("Action") == "http://gsma.com/ES2/ProfileManagementCallBack/ES2-DownloadProfile"
    assert got.header("From").endswith(f"EntityId={instance.doc['smdp_id']}&EntityName=esx+SM-DP")

    # the MNO hears from the SM-DP that the new profile is enabled (ES2), as from the SM-SR (ES4)
    enabled = instance.receiver.wait(lambda m: m.name == "ES2-HandleProfileEnabledNotification"
                                     and m.text("rps:Eid") == eid and m.text("rps:Iccid") == iccid)
    assert official_schema("ES2").validate(enabled[0].body), official_schema("ES2").error_log
    # the SM-SR's EIS: the new profile Enabled, the previous one Disabled
    assert eis_states(instance, eid) == {first: "Disabled", second: "Disabled", iccid: "Enabled"}
    # the card holds the package with the ordered ICCID and IMSI
    state, imsi, msisdn = stock(instance, iccid)
    assert state == "installed"
    installed = next(p for p in card(instance, eid)["profiles"] if p["iccid"] == iccid)
    assert (installed["state"], installed["imsi"], installed["msisdn"]) == ("ENABLED", imsi, msisdn)
    assert len(instance.receiver.callbacks(message_id)) == 1


def test_the_smsr_never_receives_the_profile_in_clear(instance):
    eid, _ = fresh_euicc(instance)
    got = callback(instance, order(instance, eid, EnableProfile=False))
    assert got.status == "EXECUTED_SUCCESS"
    iccid = got.text("rps:Iccid")
    view = card(instance, eid)
    aid = next(p["aid"] for p in view["profiles"] if p["iccid"] == iccid)
    package = (instance.data_dir / "euicc" / eid / f"{aid}.upp.der").read_bytes()
    # What crossed ES3 into the SM-SR: the Data of every ES3-SendData it accepted for this eUICC.
    engine = sa.create_engine(instance.database_url)
    with engine.connect() as c:
        rows = c.execute(sa.text("select params from operation where eid = :e and function = 'SendData'"),
                         {"e": eid}).all()
    engine.dispose()
    data = [bytes.fromhex((json.loads(r[0]) if isinstance(r[0], str) else r[0])["data"]) for r in rows]
    assert data, "no ES3-SendData reached the SM-SR"
    crossed = b"".join(data)
    assert bytes.fromhex(iccid + "F" * (len(iccid) % 2)) not in crossed
    assert not any(package[i:i + 16] in crossed for i in range(0, len(package) - 16, 4))
    segments = [c for d in data for c in es8.split_send_data(d) if c[0] == 0x86]
    assert len(segments) >= len(package) // 512


@pytest.mark.parametrize("params, code", [
    ({"ProfileType": "no-such-type"}, ("8.2.5", "3.9")),
    ({"Eid": "89049032000000000000000000777777"}, ("8.1.1", "3.9")),
])
def test_refused_downloads_answer_failed_with_the_precise_code(instance, params, code):
    params = dict(params)  # the parametrize dict is shared by the SQLite and PostgreSQL runs
    eid = params.pop("Eid", None) or fresh_euicc(instance)[0]
    before = available(instance)
    got = callback(instance, order(instance, eid, **params))
    assert (got.status, got.code) == ("FAILED", code)
    assert available(instance) == before


def test_empty_stock_is_unavailable(instance, tmp_path):
    template = tmp_path / "t.der"
    from ota import saip

    template.write_bytes(saip.demo_template())
    instance.esx("smdp", "add-profile-type", "--data-dir", str(instance.data_dir), "--name", "esx-empty",
                 "--mno", instance.mno, "--template", str(template))
    eid, _ = fresh_euicc(instance)
    got = callback(instance, order(instance, eid, ProfileType="esx-empty"))
    assert (got.status, got.code) == ("FAILED", ("8.2.5", "3.7"))


def test_a_card_out_of_memory_fails_and_the_profile_returns_to_stock(instance):
    eid, (first, second) = fresh_euicc(instance)
    instance.esx("euicc", "set", eid, "--data-dir", str(instance.data_dir), "--free-memory", "100")
    before = available(instance)
    got = callback(instance, order(instance, eid))
    assert (got.status, got.code) == ("FAILED", ("8.1", "4.8"))
    assert available(instance) == before
    assert {p["iccid"] for p in card(instance, eid)["profiles"]} == {first, second}
    assert set(eis_states(instance, eid)) == {first, second}


def test_a_silent_card_expires_and_the_profile_returns_to_stock(instance):
    eid, (first, second) = fresh_euicc(instance)
    instance.esx("euicc", "set", eid, "--data-dir", str(instance.data_dir), "--silent")
    before = available(instance)
    message_id = order(instance, eid, validity=4)
    import time

    time.sleep(6)  # past the validity period: the SM-SR expires CreateISDP, the SM-DP starts its clean-up
    instance.esx("euicc", "set", eid, "--data-dir", str(instance.data_dir), "--answering")
    got = callback(instance, message_id, timeout=120)
    assert (got.status, got.code) == ("EXPIRED", ("1.6", "5.3"))
    assert available(instance) == before
    assert {p["iccid"] for p in card(instance, eid)["profiles"]} == {first, second}


def test_es2_enable_disable_and_delete_are_relayed_to_the_smsr(instance):
    eid, (first, second) = fresh_euicc(instance)
    got = callback(instance, order(instance, eid, EnableProfile=False))
    iccid = got.text("rps:Iccid")
    caller = es2(instance)
    for op, expected in (("ES2-EnableProfile", "Enabled"), ("ES2-DisableProfile", "Disabled")):
        reply_to = f"{instance.receiver.url}/replyto/{uuid.uuid4().hex}"
        status, _, message_id = caller.send_async(op, reply_to=reply_to, Eid=eid, Iccid=iccid,
                                                  **{("SmSr-id" if op == "ES2-EnableProfile" else "Smsr-id"):
                                                     instance.doc["smsr_id"]})
        assert status == 202
        answer = instance.receiver.callback(message_id, timeout=60)
        assert official_schema("ES2").validate(answer.body), official_schema("ES2").error_log
        assert (answer.name, answer.status) == (f"{op}Response", "EXECUTED_SUCCESS")
        assert eis_states(instance, eid)[iccid] == expected
    reply_to = f"{instance.receiver.url}/replyto/{uuid.uuid4().hex}"
    status, _, message_id = caller.send_async("ES2-DeleteProfile", reply_to=reply_to, Eid=eid, Iccid=iccid,
                                              **{"Smsr-id": instance.doc["smsr_id"]})
    answer = instance.receiver.callback(message_id, timeout=60)
    assert answer.status == "EXECUTED_SUCCESS"
    assert iccid not in eis_states(instance, eid)
    deleted = instance.receiver.wait(lambda m: m.name == "ES2-HandleProfileDeletedNotification"
                                     and m.text("rps:Iccid") == iccid)
    assert official_schema("ES2").validate(deleted[0].body)
