"""Faults: processes killed with SIGKILL mid-operation, and the SMSC going away, lose nothing.

Each test runs on an instance of its own (its own database: SQLite, and PostgreSQL when
reachable) with two workers sharing the database, as several hosts would.
"""
from __future__ import annotations

import os
import signal
import time

import pytest

from .conftest import _postgres_database, background, serve, start_instance, stop_instance
from .test_ota_operations import card_states, eis_states, request


@pytest.fixture(params=["sqlite", "postgresql"])
def fault_instance(request, receiver, tmp_path):
    if request.param == "sqlite":
        inst = start_instance(tmp_path / "esx", None, receiver, demo=3, workers=2)
        yield inst
        stop_instance(inst)
    else:
        for url in _postgres_database():
            inst = start_instance(tmp_path / "esx", url, receiver, demo=3, workers=2)
            yield inst
            stop_instance(inst)


def kill(inst, name):
    """SIGKILL the process and everything it started (gunicorn's workers too), as a host crash would."""
    proc = inst.procs[name]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def exactly_one_callback_each(inst, message_ids, timeout=60):
    """Every request got its callback; a redelivery would carry the same wsa:MessageID (and be discarded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(inst.receiver.callbacks(m) for m in message_ids):
        time.sleep(0.1)
    results = {}
    for m in message_ids:
        got = inst.receiver.callbacks(m)
        assert got, f"no callback for {m}"
        assert len({g.header("MessageID") for g in got}) == 1, f"{len(got)} different callbacks for one request"
        results[m] = got[0].status
    return results


def test_sigkill_of_server_and_workers_mid_operations_loses_nothing(fault_instance):
    inst = fault_instance
    requests = []
    for e in inst.doc["euiccs"]:
        first, second = (p["iccid"] for p in e["profiles"])
        for iccid in (second, first, second, first):  # each waits behind the one before on its eUICC
            requests.append(request(inst, "ES4-EnableProfile", Eid=e["eid"], Iccid=iccid)[0])
    inst.receiver.wait(lambda m: m.header("RelatesTo") in requests, timeout=30)
    for name in ("worker0", "worker1", "smsr"):
        kill(inst, name)
    # Killed as soon as the first operation completed: the others were queued or in flight.
    assert not all(inst.receiver.callbacks(m) for m in requests)
    time.sleep(0.5)
    port = int(inst.smsr_url.rsplit(":", 1)[1])
    inst.procs["smsr"] = serve(inst.data_dir, "smsr", port, inst.data_dir / "smsr.log")
    for i in range(2):
        inst.procs[f"worker{i}"] = background(inst.data_dir, "worker", inst.data_dir / f"worker{i}.log")

    outcomes = exactly_one_callback_each(inst, requests)
    assert set(outcomes.values()) == {"EXECUTED_SUCCESS"}, {
        m: (g[0].status, g[0].code, g[0].text("rps:FunctionExecutionStatus/rps:StatusCodeData/rps:Message"))
        for m in requests if (g := inst.receiver.callbacks(m)) and g[0].status != "EXECUTED_SUCCESS"}
    for e in inst.doc["euiccs"]:
        states = eis_states(inst, e["eid"])
        assert states == card_states(inst, e["eid"])
        assert states[e["profiles"][0]["iccid"]][0] == "Enabled"


def test_the_smsc_going_away_delays_operations_but_loses_none(fault_instance):
    inst = fault_instance
    kill(inst, "smsc")
    e = inst.doc["euiccs"][0]
    message_id, _ = request(inst, "ES4-EnableProfile", Eid=e["eid"], Iccid=e["profiles"][1]["iccid"])
    time.sleep(3)
    assert inst.receiver.callbacks(message_id) == []  # nothing can reach the card
    inst.procs["smsc"] = background(inst.data_dir, "smsc", inst.data_dir / "smsc.log")
    assert exactly_one_callback_each(inst, [message_id]) == {message_id: "EXECUTED_SUCCESS"}
    assert eis_states(inst, e["eid"]) == card_states(inst, e["eid"])
