"""Issue 9, item 6: twenty ES2-DownloadProfile through a loopback SMSC that loses a seeded 10 % of the SMS in
each direction. All twenty succeed, none twice.

The instance is the e2e one (tests/e2e/conftest.py: SM-SR and SM-DP as separate gunicorn processes, one SM-SR
worker, one SM-DP worker, short OTA timings: PoR timeout 1 s here, card notifications re-sent every second) with 20
demo eUICCs, and its SMSC replaced by ``esx smsc --drop-rate 0.1 --drop-seed 7``: an SMS to a card is accepted
by the SMSC and never delivered, an SMS from a card never reaches the SM-SR. A download is about 27 SMS, so
nearly every one meets losses, many in the middle of a concatenated SendData. What makes them survive:
retransmission of the identical packet (smsr_core.platform), the card answering a packet it already ran with its
recorded PoR and completing concatenated SMS across retransmissions (euicc_sim.network), and the SM-SR
completing PoRs from parts of several transmissions (smsr_core.sms_link).

Runs once per database backend, like every e2e test. The losses cost mostly PoR timeouts (1 s here: half the e2e
default, which keeps the suite within its time; a PoR later than that meets a retransmission, which the card answers
with the same PoR), so the twenty run side by side and the test stays short on both.
"""
from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

from .conftest import background, start_instance, stop_instance
from .test_download import callback, card, eis_states, order

DOWNLOADS = 20
DROP_RATE, DROP_SEED = "0.1", "7"


@pytest.fixture(scope="module")
def lossy(own_database, receiver, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("esx-lossy")
    inst = start_instance(data_dir, own_database, receiver, demo=DOWNLOADS, ota={"por_timeout": 1.0})
    smsc = inst.procs["smsc"]
    smsc.terminate()
    smsc.wait(15)
    inst.procs["smsc"] = background(data_dir, "smsc", data_dir / "smsc.log", "--drop-rate", DROP_RATE,
                                    "--drop-seed", DROP_SEED)
    yield inst
    stop_instance(inst)


def _rows(inst, sql: str, **params) -> list:
    engine = sa.create_engine(inst.database_url)
    try:
        with engine.connect() as c:
            return c.execute(sa.text(sql), params).all()
    finally:
        engine.dispose()


def test_twenty_downloads_survive_ten_percent_loss_each_way(lossy):
    orders = {eid: order(lossy, eid, validity=300) for eid in lossy.eids}
    got = {eid: callback(lossy, message_id, timeout=240) for eid, message_id in orders.items()}

    assert {eid: (g.status, g.code) for eid, g in got.items()} == {
        eid: ("EXECUTED_SUCCESS", (None, None)) for eid in lossy.eids}
    iccids = {eid: g.text("rps:Iccid") for eid, g in got.items()}
    assert len(set(iccids.values())) == DOWNLOADS

    # none twice: one new profile on each card, enabled, in the EIS as on the card; 20 profiles installed
    for eid, iccid in iccids.items():
        profiles = card(lossy, eid)["profiles"]
        assert len(profiles) == 3 and [p["iccid"] for p in profiles].count(iccid) == 1
        assert next(p["state"] for p in profiles if p["iccid"] == iccid) == "ENABLED"
        assert eis_states(lossy, eid)[iccid] == "Enabled"
    assert _rows(lossy, "select state, count(*) from stock_profile where state not in ('available') group by state"
                 ) == [("installed", DOWNLOADS)]
    time.sleep(2)  # a duplicate callback would come from the outbox's retry, within its back-off
    assert {eid: len(lossy.receiver.callbacks(m)) for eid, m in orders.items()} == {eid: 1 for eid in orders}

    # the network did lose SMS both ways, and the SM-SR mended it by retransmitting, never by failing a step
    log = (lossy.data_dir / "smsc.log").read_text()
    assert "lossy network: SMS to" in log and "lossy network: SMS from" in log
    outcomes = _rows(lossy, "select function, result_status, params from operation")
    assert {status for _, status, _ in outcomes} == {"EXECUTED_SUCCESS"}
    retransmissions = sum((json.loads(p) if isinstance(p, str) else p).get("retransmissions", 0)
                          for _, _, p in outcomes)
    assert retransmissions > 0
    print(f"\n{DOWNLOADS} downloads, {log.count('lossy network: SMS to')} SMS lost to the cards and "
          f"{log.count('lossy network: SMS from')} from them, {retransmissions} retransmissions")
