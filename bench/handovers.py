#!/usr/bin/env python
"""Benchmark: SM-SR changes per second, a fleet of simulated cards moved from one SM-SR to another.

    .venv/bin/python bench/handovers.py [--euiccs 200] [--postgresql] [--json FILE]
    .venv/bin/python bench/handovers.py --smoke     # 2 eUICCs; tests/bench/test_smoke.py runs it

Two instances on one host, as a lab runs them (README, "Two SM-SRs for one fleet"): A from ``esx init --demo N``
(its SM-SR served, its loopback SMSC with the N simulated cards, one SM-SR worker), B from ``esx init --peer-of A``
(its SM-SR served, one worker, no SMSC: B reaches the cards through A's SMSC). The MNO (this script, a client built
from our ES4 WSDL) sends ES4-PrepareSMSRChange to B for every eUICC, waits for those callbacks, then sends
ES4-SMSRChange to A for every eUICC at once and waits for every ES4-SMSRChangeCallback. One handover is the whole
chain: ES7-HandoverEUICC, ES7-AuthenticateSMSR with STORE DATA 3A01 over SMS, ES7-CreateAdditionalKeySet with 3A02
and the card's key derivation, the receipt verified by B, FinaliseISDRhandover over B's new keys (DELETE of A's key
set, 3A07), the notifications, the EIS deleted at A. Handovers/s = N / (last SMSRChange callback - first SMSRChange
request); CPU per handover is every esx process's CPU over that window (from /proc) divided by N. Every callback must
be EXECUTED_SUCCESS; anything else aborts the run.

Timings live here and in BENCHMARKS.md, not in tests.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import ota_ops  # noqa: E402
from downloads import throwaway_database  # noqa: E402
from ota_ops import ESX, MNO_OID, REPO, Proc, Receiver, esx, free_port, log  # noqa: E402

sys.path.insert(0, str(REPO))


def handovers(euiccs: int, timeout: float, poll_interval: float, a_url: str | None, b_url: str | None) -> dict:
    from esx.binding import wsa
    from esx.binding.client import GsmaClient

    tmp = Path(tempfile.mkdtemp(prefix="esx-bench-ho-"))
    a_dir, b_dir = tmp / "a", tmp / "b"
    a_port, b_port, smsc_port = free_port(), free_port(), free_port()
    procs: list[Proc] = []
    receiver = Receiver()
    receiver.start()
    mno_url = f"http://127.0.0.1:{receiver.port}/mno"
    timing = {"poll_interval": poll_interval, "notification_retry": 5.0, "por_timeout": 10.0}
    try:
        t0 = time.monotonic()
        doc_a = json.loads(esx("init", "--data-dir", str(a_dir), "--demo", str(euiccs),
                               *(["--database-url", a_url] if a_url else []),
                               "--public-url", f"http://127.0.0.1:{a_port}"))
        config = json.loads((a_dir / "esx.json").read_text())
        config["ota"] = {**config.get("ota", {}), "smsc_port": smsc_port, **timing}
        (a_dir / "esx.json").write_text(json.dumps(config, indent=2) + "\n")
        esx("entity", "add", "--data-dir", str(a_dir), "--role", "mno", "--oid", MNO_OID, "--name", "Demo MNO",
            "--endpoint", mno_url)
        doc_b = json.loads(esx("init", "--data-dir", str(b_dir), "--peer-of", str(a_dir),
                               *(["--database-url", b_url] if b_url else []),
                               "--public-url", f"http://127.0.0.1:{b_port}"))
        config = json.loads((b_dir / "esx.json").read_text())
        config["ota"] = {**config["ota"], **timing}
        (b_dir / "esx.json").write_text(json.dumps(config, indent=2) + "\n")
        init_s = time.monotonic() - t0

        smsc = Proc("esx smsc", [*ESX, "smsc", "--data-dir", str(a_dir)], tmp / "smsc.log")
        procs.append(smsc)
        smsc.wait_for_log("loopback SMSC on")
        for name, data_dir, port in (("a", a_dir, a_port), ("b", b_dir, b_port)):
            p = Proc(f"esx serve {name}", [*ESX, "serve", "--data-dir", str(data_dir), "--bind", f"127.0.0.1:{port}",
                                           "--role", "smsr", "--workers", "2", "--no-background"], tmp / f"serve-{name}.log")
            procs.append(p)
            p.wait_http(f"http://127.0.0.1:{port}/smsr/es4?wsdl")
            w = Proc(f"esx worker {name}", [*ESX, "worker", "--data-dir", str(data_dir)], tmp / f"worker-{name}.log")
            procs.append(w)
            w.wait_for_log("SMPP bound to")

        def client(doc: dict, port: int) -> GsmaClient:
            return GsmaClient("ES4SmSr.wsdl", f"http://127.0.0.1:{port}/smsr/es4", sender_oid=MNO_OID,
                              sender_address=wsa.entity_address(mno_url, MNO_OID, "Demo MNO"), receiver_oid=doc["smsr_id"])

        at_a, at_b = client(doc_a, a_port), client(doc_b, b_port)
        eids = [e["eid"] for e in doc_a["euiccs"]]
        prepared = []
        for eid in eids:
            message_id = f"urn:uuid:{uuid.uuid4()}"
            prepared.append(message_id)
            at_b.call_async("ES4-PrepareSMSRChange", message_id=message_id, reply_to=mno_url, Eid=eid,
                            CurrentSMSRid=doc_a["smsr_id"])
        missing = receiver.wait_callbacks(prepared, timeout)
        if missing or any(receiver.callbacks[m]["status"] != "EXECUTED_SUCCESS" for m in prepared):
            raise RuntimeError(f"PrepareSMSRChange: {len(missing)} unanswered; worker B: {procs[-1].tail()}")

        cpu_before = {p.name: p.cpu_seconds() for p in procs}
        start = time.monotonic()
        sent: dict[str, float] = {}
        for eid in eids:
            message_id = f"urn:uuid:{uuid.uuid4()}"
            sent[message_id] = time.monotonic()
            at_a.call_async("ES4-SMSRChange", message_id=message_id, reply_to=mno_url, Eid=eid,
                            **{"Target-Smsr-id": doc_b["smsr_id"]})
        missing = receiver.wait_callbacks(list(sent), timeout)
        if missing:
            raise RuntimeError(f"{len(missing)} of {len(sent)} SM-SR changes got no callback within {timeout:g} s; "
                               f"worker A: {procs[2].tail()}")
        bad = [receiver.callbacks[m] for m in sent if receiver.callbacks[m]["status"] != "EXECUTED_SUCCESS"]
        if bad:
            raise RuntimeError(f"failed SM-SR changes: {bad[:3]}")
        end = max(receiver.callbacks[m]["t"] for m in sent)
        cpu = {p.name: round(p.cpu_seconds() - cpu_before[p.name], 2) for p in procs}
        latencies = sorted(receiver.callbacks[m]["t"] - sent[m] for m in sent)
        wall = end - start
        return {
            "esx": ota_ops.esx_version(), "database": "postgresql" if a_url else "sqlite", "euiccs": euiccs,
            "poll_interval": poll_interval, "init_s": round(init_s, 1), "wall_s": round(wall, 2),
            "handovers_per_s": round(euiccs / wall, 3),
            "cpu_ms_per_handover": round(1000 * sum(cpu.values()) / euiccs, 1),
            "latency_s": {"p50": round(statistics.median(latencies), 2),
                          "p90": round(latencies[int(0.9 * (len(latencies) - 1))], 2), "max": round(latencies[-1], 2)},
            "cpu_s": cpu,
            "notifications": dict(receiver.notifications),
        }
    finally:
        for p in reversed(procs):
            p.stop()
        receiver.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--euiccs", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--poll-interval", type=float, default=0.2,
                    help="ota.poll_interval of the workers (default 0.2 s, esx's own default)")
    ap.add_argument("--postgresql", metavar="URL", nargs="?", const="postgresql+psycopg2://postgres@127.0.0.1:5432/test",
                    default=None, help="run A and B each on a throw-away database of this PostgreSQL server")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--smoke", action="store_true", help="seconds, no timings checked: 2 eUICCs")
    args = ap.parse_args()
    if args.smoke:
        args.euiccs, args.timeout = 2, 120.0
    with throwaway_database(args.postgresql) as a_url, throwaway_database(args.postgresql) as b_url:
        results = {"machine": {"nproc": os.cpu_count()},
                   "handovers": handovers(args.euiccs, args.timeout, args.poll_interval, a_url, b_url)}
    log(f"handovers: {results['handovers']}")
    ota_ops.print_results(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
