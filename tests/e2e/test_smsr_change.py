"""SM-SR change end to end: two served SM-SRs (A from ``esx init``, B from ``esx init --peer-of A``), one loopback SMSC
with A's simulated cards, the MNO a zeep client generated from the official GSMA WSDL.

PrepareSMSRChange at B, SMSRChange at A: both callbacks EXECUTED_SUCCESS, the SM-SR change notification delivered
and valid against the official XSD, GetEIS at A refused 8.1.1/3.9 and at B answered, an EnableProfile at B carried
out over the air, and the card holding B's key set only. Once per database backend (SQLite, PostgreSQL).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import time

import pytest
import sqlalchemy as sa

from esx.binding.ns import GSMA
from esx.demo import init_peer
from esx.server import Config
from euicc_sim.card import Card
from euicc_sim.network import CARD_FILE

from .clients import CLIENT_KINDS
from .conftest import TEST_OTA, _postgres_database, background, free_port, official_schema, serve, start_instance, \
    stop_instance

MNO_PATH = "/mno"


@pytest.fixture(scope="module")
def pair(own_database, database_url, receiver, tmp_path_factory):
    """A (the demo instance, every process) and B (its peer: SM-SR and worker, no SMSC), each its own database."""
    root = tmp_path_factory.mktemp("smsr-change")
    a = start_instance(root / "a", own_database, receiver, demo=6)
    b_db = _postgres_database() if database_url is not None else None
    b_url = next(b_db) if b_db is not None else None
    port = free_port()
    b_dir = root / "b"
    doc = init_peer(b_dir, peer_of=a.data_dir, public_url=f"http://127.0.0.1:{port}", database_url=b_url)
    config = json.loads((b_dir / "esx.json").read_text())
    config["ota"] = {**config["ota"], **{k: v for k, v in TEST_OTA.items()}}
    (b_dir / "esx.json").write_text(json.dumps(config))
    procs = {"worker": background(b_dir, "worker", b_dir / "worker.log"),
             "smsr": serve(b_dir, "smsr", port, b_dir / "smsr.log")}
    b = type(a)(b_dir, doc, f"http://127.0.0.1:{port}", a.smdp_url, b_url, receiver, procs)
    try:
        yield a, b
    finally:
        stop_instance(b)
        stop_instance(a)
        if b_db is not None:
            next(b_db, None)
        shutil.rmtree(root, ignore_errors=True)


def es4(instance, mno: str):
    return CLIENT_KINDS["official"]("ES4", f"{instance.smsr_url}/smsr/es4", mno)


def test_an_mno_moves_an_euicc_from_one_smsr_to_another(pair, receiver):
    a, b = pair
    mno, eid = a.mno, a.eids[0]
    profiles = a.doc["euiccs"][0]["profiles"]
    disabled = next(p["iccid"] for p in profiles if p["state"].lower() != "enabled")
    reply_to = f"{receiver.url}{MNO_PATH}"
    started = time.monotonic()  # the receiver is the session's: what earlier runs got is older

    status, _, prepare_id = es4(b, mno).send_async("ES4-PrepareSMSRChange", reply_to=reply_to, Eid=eid,
                                                   CurrentSMSRid=a.doc["smsr_id"])
    assert status == 202
    prepared = receiver.callback(prepare_id, timeout=30)
    assert (prepared.name, prepared.status) == ("ES4-PrepareSMSRChangeResponse", "EXECUTED_SUCCESS")

    status, _, change_id = es4(a, mno).send_async("ES4-SMSRChange", reply_to=reply_to, Eid=eid,
                                                  **{"Target-Smsr-id": b.doc["smsr_id"]})
    assert status == 202
    changed = receiver.callback(change_id, timeout=90)
    assert (changed.name, changed.status) == ("ES4-SMSRChangeResponse", "EXECUTED_SUCCESS"), changed.code

    [notification] = receiver.wait(lambda m: m.name == "ES4-HandleSMSRChangeNotification" and m.at > started
                                   and m.text(".//rps:Eid") == eid, timeout=30)
    assert official_schema("ES4").validate(notification.body), official_schema("ES4").error_log
    assert notification.text("rps:Eis/rps:Smsr-id") == b.doc["smsr_id"]

    gone = es4(a, mno)("ES4-GetEIS", Eid=eid)
    assert (gone.status, gone.code) == ("FAILED", ("8.1.1", "3.9"))
    there = es4(b, mno)("ES4-GetEIS", Eid=eid)
    assert there.status == "EXECUTED_SUCCESS"
    assert there.text("rps:Eis/rps:Smsr-id") == b.doc["smsr_id"]

    status, _, enable_id = es4(b, mno).send_async("ES4-EnableProfile", reply_to=reply_to, Eid=eid, Iccid=disabled)
    assert status == 202
    enabled = receiver.callback(enable_id, timeout=60)
    assert enabled.status == "EXECUTED_SUCCESS", enabled.code

    card = Card.load(a.data_dir / "euicc" / eid / CARD_FILE)
    assert card.scp80.kvns == [2]
    assert card.smsr_sms_address == json.loads((b.data_dir / "esx.json").read_text())["ota"]["source_addr"]


def _sigkill(proc) -> None:
    """SIGKILL the process and all it started, as a host crash would."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


def _step_at_b(b) -> str | None:
    engine = sa.create_engine(Config.load(b.data_dir).database_url)
    try:
        with engine.connect() as c:
            return c.execute(sa.text("SELECT step FROM handover_in WHERE state = 'active' ORDER BY id DESC")).scalar()
    finally:
        engine.dispose()


@pytest.mark.parametrize("step", ["authenticate", "key_set", "finalise"])
def test_both_smsrs_killed_mid_change_carry_on_after_a_restart(pair, receiver, step):
    """SIGKILL of both SM-SRs (servers and workers) as soon as the new SM-SR's change reaches ``step`` (awaiting the
    challenge; awaiting the receipt; after the commit point, finalising over the new keys): restarted, they finish
    the change, with one callback; the card holds the new key set only."""
    a, b = pair
    mno, eid = a.mno, _fresh_eid(a, b)
    reply_to = f"{receiver.url}{MNO_PATH}"
    _, _, prepare_id = es4(b, mno).send_async("ES4-PrepareSMSRChange", reply_to=reply_to, Eid=eid,
                                              CurrentSMSRid=a.doc["smsr_id"])
    assert receiver.callback(prepare_id, timeout=30).status == "EXECUTED_SUCCESS"
    _, _, change_id = es4(a, mno).send_async("ES4-SMSRChange", reply_to=reply_to, Eid=eid,
                                             **{"Target-Smsr-id": b.doc["smsr_id"]})
    order = ["prepared", "authenticate", "key_set", "finalise", "notify", None]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        at = _step_at_b(b)
        if at is None and receiver.callbacks(change_id) or at is not None and order.index(at) >= order.index(step):
            break
        time.sleep(0.005)
    # the kill lands where the test says, not before the step nor after the change ended
    assert at is not None and order.index(at) >= order.index(step), f"the change was at {at!r}, not at {step}"
    for inst, names in ((a, ("worker0", "smsr")), (b, ("worker", "smsr"))):
        for name in names:
            _sigkill(inst.procs[name])
    time.sleep(0.5)
    for inst, worker in ((a, "worker0"), (b, "worker")):
        inst.procs[worker] = background(inst.data_dir, "worker", inst.data_dir / f"{worker}.log")
        inst.procs["smsr"] = serve(inst.data_dir, "smsr", int(inst.smsr_url.rsplit(":", 1)[1]),
                                   inst.data_dir / "smsr.log")
    changed = receiver.callback(change_id, timeout=90)
    assert changed.status == "EXECUTED_SUCCESS", (changed.code, changed.message)
    time.sleep(0.5)
    assert len(receiver.callbacks(change_id)) == 1
    assert es4(b, mno)("ES4-GetEIS", Eid=eid).status == "EXECUTED_SUCCESS"
    assert es4(a, mno)("ES4-GetEIS", Eid=eid).code == ("8.1.1", "3.9")
    assert Card.load(a.data_dir / "euicc" / eid / CARD_FILE).scp80.kvns == [2]


def _fresh_eid(a, b) -> str:
    """An eUICC of A's that no change moved yet (the module's tests share the pair)."""
    engine = sa.create_engine(Config.load(a.data_dir).database_url)
    try:
        with engine.connect() as c:
            held = {r[0] for r in c.execute(sa.text("SELECT eid FROM euicc"))}
            busy = {r[0] for r in c.execute(sa.text("SELECT eid FROM operation WHERE function = 'SMSRChange'"))}
    finally:
        engine.dispose()
    return next(e for e in a.eids if e in held and e not in busy)


def test_the_smdp_that_installed_a_profile_is_told_and_tells_its_mno(pair, receiver):
    """A profile the SM-DP downloaded: after the change the new SM-SR sends ES3-HandleSMSRChangeNotification to that
    SM-DP, which relays it to the MNO as ES2-HandleSMSRChangeNotification (valid against the official ES2 XSD)."""
    a, b = pair
    mno, eid = a.mno, _fresh_eid(a, b)
    reply_to = f"{receiver.url}{MNO_PATH}"
    started = time.monotonic()
    es2 = CLIENT_KINDS["official"]("ES2", f"{a.smdp_url}/smdp/es2", mno)
    status, _, download_id = es2.send_async("ES2-DownloadProfile", reply_to=reply_to, Eid=eid,
                                            **{"SmSr-id": a.doc["smsr_id"]}, ProfileType="esx-demo-download",
                                            EnableProfile=False)
    assert status == 202
    downloaded = receiver.callback(download_id, timeout=90)
    assert downloaded.status == "EXECUTED_SUCCESS", (downloaded.code, downloaded.message)
    iccid = downloaded.text("rps:Iccid")

    _, _, prepare_id = es4(b, mno).send_async("ES4-PrepareSMSRChange", reply_to=reply_to, Eid=eid,
                                              CurrentSMSRid=a.doc["smsr_id"])
    assert receiver.callback(prepare_id, timeout=30).status == "EXECUTED_SUCCESS"
    _, _, change_id = es4(a, mno).send_async("ES4-SMSRChange", reply_to=reply_to, Eid=eid,
                                             **{"Target-Smsr-id": b.doc["smsr_id"]})
    assert receiver.callback(change_id, timeout=90).status == "EXECUTED_SUCCESS"

    [relayed] = receiver.wait(lambda m: m.name == "ES2-HandleSMSRChangeNotification" and m.at > started
                              and m.text(".//rps:Eid") == eid, timeout=30)
    assert official_schema("ES2").validate(relayed.body), official_schema("ES2").error_log
    assert iccid in {el.text for el in relayed.body.iter(f"{{{GSMA}}}Iccid")}
    assert relayed.text("rps:Eis/rps:Smsr-id") == b.doc["smsr_id"]
    assert f"EntityId={a.doc['smdp_id']}" in relayed.header("From")  # from the SM-DP, not the SM-SR
