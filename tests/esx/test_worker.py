"""``esx worker`` (SmsrWorker) around a real SMPP bind: whatever it is handed, it carries on.

The worker runs in-process against a loopback SMSC (``euicc_sim.smsc.LoopbackSmsc``) that records what it is
submitted; requests and readers come from :mod:`tests.smsr_core.ota_harness` on the same database.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from esx.demo import demo_eid, demo_iccid, init_instance
from esx.server import Config
from esx.worker import SmsrWorker
from euicc_sim.smsc import LoopbackSmsc
from smsr_core.platform import Function, Timing

from tests.smsr_core.ota_harness import OtaHarness

EID1, EID2 = demo_eid(1), demo_eid(2)
ARABIC_INDIC_MSISDN = "٤٤٧٩٠٠٠٠٠١٠٠"  # 447900000100 in Arabic-Indic digits


@pytest.fixture(scope="module")
def demo_instance(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("worker-instance")
    init_instance(data_dir, demo=2)
    return data_dir


@pytest.fixture
def smsc():
    submitted = []
    server = LoopbackSmsc("127.0.0.1", 0, on_submit=submitted.append)
    server.start()
    server.submitted = submitted
    yield server
    server.stop()


@pytest.fixture
def worker(demo_instance, tmp_path, smsc):
    data_dir = tmp_path / "instance"
    shutil.copytree(demo_instance, data_dir)
    config = Config.load(data_dir)
    config.ota = {**config.ota, "smsc_port": smsc.port, "password": "esx"}  # the test SMSC's bind password
    w = SmsrWorker(config)
    w.esme.start()
    assert w.esme.wait_bound(10)
    yield w
    w.esme.stop()
    w.db.dispose()


def test_an_sms_the_smpp_layer_cannot_encode_fails_its_operation_and_the_worker_goes_on(worker, smsc):
    """The field case behind issue 9: a destination smpplib cannot encode raised UnicodeEncodeError out of
    ``send``, killed the tick, and left the eUICC blocked. The platform now refuses such a stored MSISDN
    itself (test_platform); here the value reaches the SMPP layer anyway, as any value it cannot take would."""
    h = OtaHarness(worker.config.data_dir, Timing())
    try:
        now = datetime.now(timezone.utc)
        enable = h.request(Function.ENABLE, EID1, demo_iccid(1, 1), now=now)
        delete = h.request(Function.DELETE, EID2, demo_iccid(2, 1), now=now)
        worker.platform.start_ready(now)
        first, second = worker.platform.due_sends(now)
        assert (first.eid, second.eid) == (EID1, EID2)

        assert worker.send(replace(first, destination=ARABIC_INDIC_MSISDN)) is False  # raises nothing
        assert worker.send(second) is True  # taken: the tick records it (Platform.sent_many)

        op = h.op(enable)
        assert (op.state, op.result) == ("done", ("FAILED", "1.2", "4.2"))
        [callback] = [m for m in h.outbox() if m.kind == "callback" and m.operation_id == enable]
        assert callback.fields["Message"] == "the SM-SR could not submit the SMS to this eUICC"
        assert h.ota(EID1).active_operation_id is None
        assert h.op(delete).step == "await_por"  # the other operation went out
        deadline = time.monotonic() + 5  # the SMSC hands submits on from its own thread
        while not smsc.submitted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [m.destination_addr for m in smsc.submitted] == [second.destination]
    finally:
        h.close()
