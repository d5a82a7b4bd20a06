"""The embedded default: one `esx serve` for both roles, the SM-DP relaying ES2 to its own SM-SR.

Over HTTP, each ES2-GetEIS held a server worker while it waited for ES3-GetEIS on another worker of the same
pool: two concurrent calls stalled for 30 s and answered 8.7/3.9, ten stalled the server for minutes. The SM-DP
now calls its co-located SM-SR in process, so no request waits for a worker of its own pool.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from .clients import CLIENT_KINDS
from .conftest import free_port, serve


@pytest.fixture(scope="module")
def colocated(own_database, tmp_path_factory):
    from esx.demo import init_instance

    data_dir = tmp_path_factory.mktemp("colocated")
    port = free_port()
    doc = init_instance(data_dir, demo=2, database_url=own_database, public_url=f"http://127.0.0.1:{port}")
    proc = serve(data_dir, "all", port, data_dir / "serve.log")
    yield doc, f"http://127.0.0.1:{port}", data_dir
    proc.terminate()
    proc.wait(15)


def test_concurrent_es2_get_eis_do_not_wait_on_their_own_pool(colocated):
    doc, url, _ = colocated
    call = CLIENT_KINDS["official"]("ES2", f"{url}/smdp/es2", doc["mno_id"])
    eid = doc["euiccs"][0]["eid"]

    def get_eis(_):
        return call("ES2-GetEIS", Eid=eid, **{"Smsr-id": doc["smsr_id"]})

    with ThreadPoolExecutor(10) as pool:  # more than the two server workers
        replies = list(pool.map(get_eis, range(10)))
    assert [(r.status, r.code) for r in replies] == [("EXECUTED_SUCCESS", (None, None))] * 10
    assert all(r.text("rps:Eis/rps:EumSignedInfo/rps:Eid") == eid for r in replies)


def test_an_unreachable_smsr_is_named_by_its_oid_not_its_address(colocated):
    doc, url, data_dir = colocated
    import subprocess
    import sys

    dead = free_port()
    other = "1.3.6.1.4.1.99999.1.77"
    subprocess.run([sys.executable, "-m", "esx.cli", "entity", "add", "--data-dir", str(data_dir), "--role", "smsr",
                    "--oid", other, "--name", "Unreachable SM-SR", "--endpoint", f"http://127.0.0.1:{dead}/smsr/es3"],
                   check=True, capture_output=True)
    call = CLIENT_KINDS["official"]("ES2", f"{url}/smdp/es2", doc["mno_id"])
    reply = call("ES2-GetEIS", Eid=doc["euiccs"][0]["eid"], **{"Smsr-id": other})
    assert (reply.status, reply.code) == ("FAILED", ("8.7", "3.9"))
    assert other in reply.message
    assert "127.0.0.1" not in reply.message and str(dead) not in reply.message and "http" not in reply.message
    assert json.dumps(reply.message)  # a plain one-line text
