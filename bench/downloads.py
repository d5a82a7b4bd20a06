#!/usr/bin/env python
"""Benchmark: complete profile downloads per second, and the crypto-only bound.

    .venv/bin/python bench/downloads.py [--euiccs 10] [--crypto-only] [--json FILE]
    .venv/bin/python bench/downloads.py --smoke      # 2 eUICCs, 0.2 s of crypto; tests/bench/test_smoke.py runs it

**Crypto bound** (in process, no I/O): per second, how many ISD-P key establishments (GP Amd E scenario #3:
the SM-DP's STORE DATA 3A02 with a fresh ephemeral key and its signature, the card's signature check, ECDH,
X9.63 derivation and receipt, the SM-DP's ECDH and receipt check) run on one core, for NIST P-256 and
brainpoolP256r1; and how many demo profile packages per second are personalised (SAIP, asn1tools) and
carried through a complete SCP03t session (84/85 handshake, every '86' segment wrapped by the host and
unwrapped by the card, every answer checked).

**Complete downloads** (the embedded default: SQLite, one host, 2 cores): ``esx init --demo N``, then the
SM-SR (``esx serve --role smsr``), the SM-DP (``esx serve --role smdp`` on its own port), the loopback
SMSC with the N simulated cards, one SM-SR worker and one SM-DP worker, all separate processes. The MNO
(this script, with a client built from our ES2 WSDL) sends ES2-DownloadProfile (EnableProfile=true) for
every eUICC at once and waits for every ES2-DownloadProfileCallback. A download is the whole chain:
GetEIS and the ECASD chain, CreateISDP over SMS, two SendData of key establishment, the SCP03t opening,
the package in '86' segments, ProfileDownloadCompleted, EnableProfile with its notification, and the
callback. Downloads/s = N / (last callback - first request); latency = each request to its callback.
Every callback must be EXECUTED_SUCCESS; anything else aborts the run.

Timings live here and in BENCHMARKS.md, not in tests.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import ota_ops  # noqa: E402
from ota_ops import ESX, MNO_OID, REPO, Proc, Receiver, esx, free_port, log  # noqa: E402

sys.path.insert(0, str(REPO))


def crypto_bound(seconds: float = 3.0) -> dict:
    from cryptography.hazmat.primitives.asymmetric import ec

    from keys import ecka, scp03t
    from keys.pki import DevPki
    from ota import saip

    tmp = Path(tempfile.mkdtemp(prefix="esx-bench-crypto-"))
    pki = DevPki.generate(tmp / "pki", smdp_oid="1.3.6.1.4.1.99999.1.2", smsr_oid="1.3.6.1.4.1.99999.1.1",
                          eum_oid="1.3.6.1.4.1.99999.3.1", mno_oid="1.3.6.1.4.1.99999.2.1")
    out: dict = {}
    for curve_name, curve in (("P-256", ec.SECP256R1()), ("brainpoolP256r1", ec.BrainpoolP256R1())):
        ecasd_key, _ = pki.issue_ecasd("89049032000000000000000000000001", curve_name)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            challenge = os.urandom(16)
            dgi, ephemeral = ecka.smdp_key_agreement(pki.smdp_key, challenge, curve)
            response, card_keys, _ = ecka.card_key_agreement(ecasd_key, pki.smdp_key.public_key(), challenge, dgi)
            host_keys = ecka.smdp_finish(ephemeral, ecasd_key.public_key(), ecka.KeyAgreementCrt(), response)
            assert host_keys == card_keys
            n += 1
        out[f"key_establishments_per_s_{curve_name}"] = round(n / (time.perf_counter() - t0), 1)

    template = saip.demo_template()
    n, t0 = 0, time.perf_counter()
    keys = None
    while time.perf_counter() - t0 < seconds:
        package = saip.personalise(template, saip.Personalisation(
            iccid="8988299010000000015", imsi="001019000000001", msisdn="447800000001", ki=os.urandom(16),
            opc=os.urandom(16)))
        if keys is None:
            from keys.scp03 import StaticKeys

            keys = StaticKeys(os.urandom(16), os.urandom(16), os.urandom(16))
        host, card = scp03t.Scp03tHost(keys, 0x30), scp03t.Scp03tCard(keys, 0x30)
        init = host.initialize_update()
        answer, _ = card.process(init[0], init[2:])
        ext = host.external_authenticate(answer)
        answer, _ = card.process(ext[0], ext[2:])
        host.check_external_authenticate_response(answer)
        received = b""
        for i in range(0, len(package), 512):
            tlv = host.wrap(package[i:i + 512])
            from keys.tlv import iter_tlvs

            t = next(iter_tlvs(tlv))
            _, plain = card.process(t.tag, t.value)
            received += plain
            host.unwrap(card.wrap_response(b""))
        assert received == package
        n += 1
    out["packages_per_s_personalise_and_scp03t"] = round(n / (time.perf_counter() - t0), 1)
    out["package_bytes"] = len(package)
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def downloads(euiccs: int, timeout: float, warmup: int = 4, poll_interval: float = 0.2,
              database_url: str | None = None, profile: Path | None = None) -> dict:
    from esx.binding import wsa
    from esx.binding.client import GsmaClient

    tmp = Path(tempfile.mkdtemp(prefix="esx-bench-dl-"))
    data_dir = tmp / "instance"
    smsr_port, smdp_port, smsc_port = free_port(), free_port(), free_port()
    procs: list[Proc] = []
    receiver = Receiver()
    receiver.start()
    mno_url = f"http://127.0.0.1:{receiver.port}/mno"
    try:
        t0 = time.monotonic()
        doc = json.loads(esx("init", "--data-dir", str(data_dir), "--demo", str(euiccs + warmup),
                             *(["--database-url", database_url] if database_url else []),
                             "--public-url", f"http://127.0.0.1:{smsr_port}",
                             "--smdp-url", f"http://127.0.0.1:{smdp_port}"))
        config_path = data_dir / "esx.json"
        config = json.loads(config_path.read_text())
        config["ota"] = {**config.get("ota", {}), "smsc_port": smsc_port, "poll_interval": poll_interval,
                         "notification_retry": 5.0, "por_timeout": 10.0}
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        esx("entity", "add", "--data-dir", str(data_dir), "--role", "mno", "--oid", MNO_OID, "--name", "Demo MNO",
            "--endpoint", mno_url)
        init_s = time.monotonic() - t0
        smsc = Proc("esx smsc", [*ESX, "smsc", "--data-dir", str(data_dir)], tmp / "smsc.log")
        procs.append(smsc)
        smsc.wait_for_log("loopback SMSC on")
        for role, port in (("smsr", smsr_port), ("smdp", smdp_port)):
            p = Proc(f"esx serve {role}", [*ESX, "serve", "--data-dir", str(data_dir), "--bind", f"127.0.0.1:{port}",
                                           "--role", role, "--workers", "2", "--no-background"], tmp / f"{role}.log")
            procs.append(p)
            p.wait_http(f"http://127.0.0.1:{port}/{role}/{'es4' if role == 'smsr' else 'es2'}?wsdl")
        smsr_worker = Proc("esx worker smsr", [*ESX, "worker", "--data-dir", str(data_dir)], tmp / "worker-smsr.log")
        smdp_worker = Proc("esx worker smdp", [*ESX, "worker", "--role", "smdp", "--data-dir", str(data_dir)],
                           tmp / "worker-smdp.log")
        procs += [smsr_worker, smdp_worker]
        smsr_worker.wait_for_log("SMPP bound to")

        es2_url = f"http://127.0.0.1:{smdp_port}/smdp/es2"
        client = GsmaClient("ES2SmDp.wsdl", es2_url, sender_oid=MNO_OID,
                            sender_address=wsa.entity_address(mno_url, MNO_OID, "Demo MNO"),
                            receiver_oid=doc["smdp_id"])
        def order(cards: list[dict]) -> dict[str, float]:
            sent: dict[str, float] = {}
            for e in cards:
                message_id = f"urn:uuid:{uuid.uuid4()}"
                sent[message_id] = time.monotonic()
                client.call_async("ES2-DownloadProfile", message_id=message_id, reply_to=mno_url, Eid=e["eid"],
                                  **{"SmSr-id": doc["smsr_id"]}, ProfileType="esx-demo-download", EnableProfile=True)
            return sent

        # Warm-up: every process builds what it builds on first use (WSDL clients, schemas, each gunicorn worker's
        # application) on downloads that are not counted; then the system idles a moment.
        if warmup:
            first = order(doc["euiccs"][:warmup])
            if receiver.wait_callbacks(list(first), timeout):
                raise RuntimeError(f"warm-up downloads got no callback: SM-DP worker log: {smdp_worker.tail()}")
            time.sleep(1.0)
        spies = _profilers(procs, profile) if profile is not None else []
        cpu_before = {p.name: p.cpu_seconds() for p in procs}
        start = time.monotonic()
        sent = order(doc["euiccs"][warmup:])
        missing = receiver.wait_callbacks(list(sent), timeout)
        for spy in spies:  # py-spy writes its profile when interrupted
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(30)
        if missing:
            raise RuntimeError(f"{len(missing)} of {len(sent)} downloads got no callback within {timeout:g} s; "
                               f"SM-DP worker log: {smdp_worker.tail()}")
        bad = {m: c for m, c in receiver.callbacks.items() if m in sent and c["status"] != "EXECUTED_SUCCESS"}
        if bad:
            raise RuntimeError(f"failed downloads: {list(bad.values())[:3]}")
        end = max(receiver.callbacks[m]["t"] for m in sent)
        latencies = sorted(receiver.callbacks[m]["t"] - sent[m] for m in sent)
        cpu = {p.name: round(p.cpu_seconds() - cpu_before[p.name], 2) for p in procs}
        wall = end - start
        return {
            "esx": ota_ops.esx_version(), "warmup": warmup, "poll_interval": poll_interval,
            "database": "postgresql" if database_url else "sqlite",
            "euiccs": euiccs, "init_s": round(init_s, 1), "wall_s": round(wall, 2),
            "cpu_ms_per_download": round(1000 * sum(cpu.values()) / euiccs, 1),
            "downloads_per_s": round(euiccs / wall, 3),
            "latency_s": {"p50": round(statistics.median(latencies), 2),
                          "p90": round(latencies[int(0.9 * (len(latencies) - 1))], 2),
                          "max": round(latencies[-1], 2)},
            "cpu_s": cpu,
            "callback_statuses": {status: sum(1 for m in sent if receiver.callbacks[m]["status"] == status)
                                  for status in {receiver.callbacks[m]["status"] for m in sent}},
        }
    finally:
        for p in reversed(procs):
            p.stop()
        receiver.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _profilers(procs: list[Proc], out: Path) -> list[subprocess.Popen]:
    """py-spy (``pip install py-spy``) on every process, children included, over the measured downloads only:
    ``out/<process>.raw``, one collapsed stack per line (flame-graph input)."""
    out.mkdir(parents=True, exist_ok=True)
    spies = []
    for p in procs:
        name = p.name.replace(" ", "-")
        spies.append(subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(p.proc.pid),
                                       "--subprocesses", "--format", "raw", "--rate", "250", "--nonblocking",
                                       "--output", str(out / f"{name}.raw")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1.0)  # py-spy attaches
    return spies


@contextlib.contextmanager
def throwaway_database(server_url: str | None):
    """None (SQLite in the instance's directory), or a new database on the PostgreSQL server, dropped afterwards."""
    if server_url is None:
        yield None
        return
    import sqlalchemy as sa

    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"esx_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--euiccs", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--crypto-only", action="store_true")
    ap.add_argument("--warmup", type=int, default=4, help="downloads run first and not counted (default 4)")
    ap.add_argument("--poll-interval", type=float, default=0.2,
                    help="ota.poll_interval of the workers (default 0.2 s, esx's own default)")
    ap.add_argument("--postgresql", metavar="URL", nargs="?", const="postgresql+psycopg2://postgres@127.0.0.1:5432/test",
                    default=None, help="run on a throw-away database created on this PostgreSQL server (default "
                                       "%(const)s) instead of the embedded SQLite")
    ap.add_argument("--compare", type=Path, default=None, metavar="ROOT",
                    help="first run the same downloads with the esx of checkout ROOT (its .venv; e.g. a worktree of an "
                         "older commit), then with this one: old and new side by side")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--profile", type=Path, default=None, metavar="DIR",
                    help="py-spy every process over the measured downloads (DIR/<process>.raw; needs py-spy)")
    ap.add_argument("--smoke", action="store_true",
                    help="seconds, no timings checked: 2 eUICCs, 0.2 s per crypto figure (tests/bench/test_smoke.py)")
    args = ap.parse_args()
    if args.smoke:
        args.euiccs, args.timeout, args.crypto_only, args.warmup = 2, 120.0, False, 1
    results = {"machine": {"nproc": os.cpu_count()}, "crypto": crypto_bound(0.2 if args.smoke else 3.0)}
    log(f"crypto bound: {results['crypto']}")
    if not args.crypto_only:
        def run() -> dict:
            with throwaway_database(args.postgresql) as url:
                return downloads(args.euiccs, args.timeout, args.warmup, args.poll_interval, url, args.profile)

        if args.compare is not None:
            ota_ops.use_checkout(args.compare)
            results["downloads_compared"] = run()
            log(f"downloads with {args.compare}: {results['downloads_compared']}")
            ota_ops.use_checkout(REPO)
        results["downloads"] = run()
        log(f"downloads: {results['downloads']}")
    ota_ops.print_results(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
