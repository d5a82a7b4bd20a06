#!/usr/bin/env python
"""Benchmark: ES4-GetEIS over HTTP against a 100,000-eUICC registry, next to a bare spyne echo.

    .venv/bin/python bench/es4_get_eis.py [--euiccs 100000] [--duration 20] [--warmup 3]

What it does (bounded, loopback only, everything it starts it stops):

1. Creates an instance in a temporary directory with ``esx.demo.init_instance(demo=2)``: config,
   SQLite database, dev PKI, entities, and two demo eUICCs registered through the real ES1 path
   (EUM-signed EIS, signature and ECASD chain verified).
2. Bulk-inserts the rest of the registry (eUICCs 3..N) directly with SQLAlchemy core, in batches:
   each new eUICC is a copy of demo eUICC 1 (same EumSignedInfo/EumSignature bytes with the EID
   replaced where it occurs: the Eid element and inside the ECASD certificate; same ECASD and
   ISD-R rows; its profiles, as many as demo eUICC 1 has) with its own EID and, per profile, its own ICCID, IMSI and MSISDN. Signing and verifying 100k EIS over ES1 would take minutes; the
   bulk rows are therefore *not* signature-valid (GetEIS does not verify on read, so the served
   work is the same). The load time is printed.
3. Serves the SM-SR with ``esx serve --role smsr --workers 2``, once per serving model named in
   ``--serving`` (``esx``: esx.serving's worker, the default; ``sync``: gunicorn sync workers, as
   before issue 9), selected through the ``serving.worker`` setting of the instance.
4. Builds the exact request envelopes a zeep client sends for ES4-GetEIS (``create_message`` on
   the official GSMA ES4_SMSR.wsdl, or on the WSDL esx serves when the official set is absent),
   wsa:From EntityId = the demo MNO, for ``--bodies`` random EIDs of the registry; checks every one
   answers EXECUTED_SUCCESS with its EID, then drives the endpoint with ``wrk`` (a Lua script
   rotates among the bodies and checks every response: HTTP 200 and EXECUTED_SUCCESS). Without
   wrk, a multi-process Python client does the same (less precise: it competes for the CPU).
   Each model is measured once per count in ``--idle`` (default 0 and 100): that many idle and
   slow connections (``tests/e2e/slow_clients.py``: silent, half a request line, half a head,
   part of a body, one byte every half second; from 10 loopback addresses) are held open for the
   whole run, and any the server cuts off is opened again at once, as an attacker would.
5. Does the same against a bare spyne 2.14 SOAP 1.2 echo (bench/spyne_echo.py) under gunicorn
   with the same settings, fed the same bodies: the framework floor.
6. Unless ``--no-profile``: measures both WSGI applications in-process (no HTTP, one process),
   counts SQL statements per esx request, times each step of the esx request path in place
   (a perf_counter wrapper per step, no profiler) and prints cProfile's self time per package.

Prints requests/s, p50, p99 and errors for both, the ratio esx/echo, the server CPU time per
request, and a JSON document (``--json FILE`` to also write it). Timings live here, not in tests.

``--smoke`` runs all of it in a few seconds (2 eUICCs, 1 s per run, the Python client, the esx
model with 0 and 10 held connections, no echo, no profile), so that tests/bench can run it.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
OFFICIAL_ES4_WSDL = REPO.parent / "shared" / "gsma-sgp02-wsdl" / "ES4_SMSR.wsdl"
CONTENT_TYPE = "application/soap+xml; charset=utf-8"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str = "") -> None:
    print(msg, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- 1/2. the registry ------------------------------------------------------------------------


def bulk_load(database_url: str, total: int, batch: int = 5000) -> dict:
    """Insert eUICCs 3..total as copies of demo eUICC 1 (see the module doc); return stats."""
    import sqlalchemy as sa

    from esx.demo import demo_eid, demo_iccid
    from persistence.db import Database
    from smsr_core.models import Euicc, ProfileRow, SecurityDomainRow

    eu_t, sd_t, pr_t = Euicc.__table__, SecurityDomainRow.__table__, ProfileRow.__table__
    template = demo_eid(1)
    db = Database(database_url)
    try:
        with db.engine.begin() as c:
            eu = dict(c.execute(sa.select(eu_t).where(eu_t.c.eid == template)).mappings().one())
            domains = [dict(r) for r in c.execute(
                sa.select(sd_t).where(sd_t.c.eid == template).order_by(sd_t.c.id)).mappings()]
            profiles = [dict(r) for r in c.execute(
                sa.select(pr_t).where(pr_t.c.eid == template).order_by(pr_t.c.id)).mappings()]
        assert len(domains) == 2 and profiles, (domains, profiles)
        for row in domains + profiles:
            row.pop("id")
        # The EID appears in EumSignedInfo twice (Eid, and inside the ECASD certificate) and in the
        # ECASD keyset row (the certificate again): replace it everywhere.
        old = template.encode()
        assert eu["signed_info_xml"].count(old) == 2, eu["signed_info_xml"].count(old)
        keysets_json = {i: json.dumps(d["keysets"]) for i, d in enumerate(domains)}
        registered_at = datetime.now(timezone.utc)
        started = time.perf_counter()
        inserted = 0
        for first in range(3, total + 1, batch):
            euiccs, sds, prs = [], [], []
            for n in range(first, min(first + batch, total + 1)):
                eid = demo_eid(n)
                euiccs.append({**eu, "eid": eid, "registered_at": registered_at,
                               "signed_info_xml": eu["signed_info_xml"].replace(old, eid.encode())})
                sds.extend({**d, "eid": eid, "keysets": json.loads(keysets_json[i].replace(template, eid))}
                           if template in keysets_json[i] else {**d, "eid": eid}
                           for i, d in enumerate(domains))
                prs.extend({**profile, "eid": eid, "iccid": demo_iccid(n, slot),
                            "imsi": f"00101{n:08d}{slot:02d}", "msisdn": f"4479{n:08d}{slot:02d}"}
                           for slot, profile in enumerate(profiles))
            with db.engine.begin() as c:
                c.execute(eu_t.insert(), euiccs)
                c.execute(sd_t.insert(), sds)
                c.execute(pr_t.insert(), prs)
            inserted += len(euiccs)
        seconds = time.perf_counter() - started
        with db.engine.connect() as c:
            counts = {t.name: c.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                      for t in (eu_t, sd_t, pr_t)}
    finally:
        db.dispose()
    return {"inserted": inserted, "seconds": seconds, "batch": batch, "rows": counts}


# -- 3. servers --------------------------------------------------------------------------------


class Server:
    """A gunicorn master we started (and stop): its pid, its log, its workers' CPU time."""

    def __init__(self, name: str, argv: list[str], log_path: Path, ready_url: str, cwd: Path | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self.ready_url = ready_url
        self.proc = subprocess.Popen(argv, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=cwd)

    def wait_ready(self, timeout: float = 30) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
            try:
                if requests.get(self.ready_url, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not come up: {self.log_path.read_text()[-2000:]}")

    def pids(self) -> list[int]:
        """The master and its children (the workers)."""
        pid = self.proc.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(int(p.name)) == pid]
        return [pid, *map(int, children)]

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / CLK_TCK

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # gunicorn: graceful shutdown of the master and its workers
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def gunicorn_access_lines(path: Path) -> tuple[int, dict[str, int]]:
    """Count access-log lines by HTTP status (gunicorn's default format: '"POST ..." 200 1234')."""
    statuses: dict[str, int] = {}
    lines = 0
    for line in path.read_text(errors="replace").splitlines():
        if '"POST ' not in line:
            continue
        lines += 1
        parts = line.split('" ', 1)[1].split() if '" ' in line else []
        code = parts[0] if parts else "?"
        statuses[code] = statuses.get(code, 0) + 1
    return lines, statuses


# -- 4. request bodies -------------------------------------------------------------------------


def build_bodies(wsdl: str, endpoint: str, mno_oid: str, eids: list[str]) -> list[bytes]:
    """The envelopes a zeep client sends for ES4-GetEIS (zeep adds To, MessageID and Action)."""
    import zeep
    from zeep.wsdl.utils import etree_to_string

    client = zeep.Client(wsdl)
    binding = next(iter(client.wsdl.bindings))
    service = client.create_service(binding, endpoint)
    headers = {"From": {"Address": f"http://mno.example/?EntityId={mno_oid}"}}
    return [
        etree_to_string(client.create_message(service, "ES4-GetEIS", _soapheaders=headers,
                                              FunctionCallIdentifier=str(uuid.uuid4()), Eid=eid))
        for eid in eids
    ]


def check_get_eis(url: str, body: bytes, eid: str) -> int:
    import requests
    from lxml import etree

    from esx.binding.ns import GSMA

    r = requests.post(url, data=body, headers={"Content-Type": CONTENT_TYPE}, timeout=30)
    ns = {"rps": GSMA}
    root = etree.fromstring(r.content)
    status = root.findtext(".//rps:ES4-GetEISResponse/rps:FunctionExecutionStatus/rps:Status", namespaces=ns)
    got = root.findtext(".//rps:ES4-GetEISResponse/rps:Eis/rps:EumSignedInfo/rps:Eid", namespaces=ns)
    if r.status_code != 200 or status != "EXECUTED_SUCCESS" or got != eid:
        raise RuntimeError(f"GetEIS {eid}: HTTP {r.status_code} {status} {got}: {r.content[:800]!r}")
    return len(r.content)


def check_echo(url: str, body: bytes) -> int:
    import requests

    r = requests.post(url, data=body, headers={"Content-Type": CONTENT_TYPE}, timeout=30)
    if r.status_code != 200 or b"ES4-GetEISRequest" not in r.content:
        raise RuntimeError(f"echo: HTTP {r.status_code}: {r.content[:800]!r}")
    return len(r.content)


# -- load generation ---------------------------------------------------------------------------


def run_wrk(url: str, body_dir: Path, count: int, expect: str, *, threads: int, connections: int,
            seconds: float) -> dict:
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "--latency",
            "-s", str(BENCH / "wrk_post.lua"), url, "--", str(body_dir), str(count), expect]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRK_RESULT ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]} {out.stderr[-2000:]}")
    res = json.loads(line.split(" ", 1)[1])
    seconds_run = res["duration_us"] / 1e6
    errors = sum(res["errors"].values())
    return {
        "tool": f"wrk -t{threads} -c{connections} -d{seconds:g}s",
        "requests": res["requests"],
        "seconds": seconds_run,
        "rps": res["requests"] / seconds_run,
        "p50_ms": res["p50_us"] / 1000,
        "p90_ms": res["p90_us"] / 1000,
        "p99_ms": res["p99_us"] / 1000,
        "max_ms": res["max_us"] / 1000,
        "mean_ms": res["mean_us"] / 1000,
        "socket_errors": {k: v for k, v in res["errors"].items() if k != "status"},
        "non_2xx": res["errors"]["status"],
        "errors": errors,
        "checked": res["checked"],
        "bad_responses": res["bad"],
        "first_bad": res["first_bad"],
        "loadgen_cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
    }


def _py_worker(args) -> tuple[list[float], int, int, str]:
    """One keep-alive client process (reconnects when the server closes, as gunicorn sync does)."""
    import http.client

    host, port, path, bodies, expect, seconds, offset = args
    conn = http.client.HTTPConnection(host, port, timeout=10)
    lat: list[float] = []
    bad = errors = 0
    first_bad = ""
    i = offset
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        body = bodies[i % len(bodies)]
        i += 1
        t0 = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers={"Content-Type": CONTENT_TYPE})
            resp = conn.getresponse()
            data = resp.read()
            if resp.will_close:
                conn.close()
        except (OSError, http.client.HTTPException) as exc:
            errors += 1
            conn.close()
            first_bad = first_bad or repr(exc)
            continue
        lat.append(time.perf_counter() - t0)
        if resp.status != 200 or expect.encode() not in data:
            bad += 1
            first_bad = first_bad or f"HTTP {resp.status}: {data[:300]!r}"
    conn.close()
    return lat, bad, errors, first_bad


def run_python_load(url: str, bodies: list[bytes], expect: str, *, connections: int, seconds: float) -> dict:
    import multiprocessing
    from urllib.parse import urlsplit

    u = urlsplit(url)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(connections) as pool:
        parts = pool.map(_py_worker, [(u.hostname, u.port, u.path, bodies, expect, seconds, k * 7)
                                      for k in range(connections)])
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lat = sorted(x for p in parts for x in p[0])

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    bad = sum(p[1] for p in parts)
    errors = sum(p[2] for p in parts)
    return {
        "tool": f"python http.client x{connections} processes, {seconds:g}s",
        "requests": len(lat), "seconds": elapsed, "rps": len(lat) / seconds,
        "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": pct(1.0),
        "mean_ms": sum(lat) / len(lat) * 1000 if lat else float("nan"),
        "socket_errors": {"any": errors}, "non_2xx": None, "errors": errors,
        "checked": len(lat), "bad_responses": bad, "first_bad": next((p[3] for p in parts if p[3]), ""),
        "loadgen_cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
    }


def machine_cpu() -> dict:
    """Machine-wide CPU seconds from /proc/stat: busy (user+nice+system+irq+softirq), steal."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return {"busy": (f[0] + f[1] + f[2] + f[5] + f[6]) / CLK_TCK, "steal": f[7] / CLK_TCK}


def measure(server: Server, url: str, body_dir: Path, bodies: list[bytes], expect: str, args) -> dict:
    if args.loadgen == "wrk":
        def go(seconds):
            return run_wrk(url, body_dir, len(bodies), expect, threads=args.threads,
                           connections=args.connections, seconds=seconds)
    else:
        def go(seconds):
            return run_python_load(url, bodies, expect, connections=args.connections, seconds=seconds)
    warm = go(args.warmup) if args.warmup > 0 else None
    cpu0, m0 = server.cpu_seconds(), machine_cpu()
    res = go(args.duration)
    cpu1, m1 = server.cpu_seconds(), machine_cpu()
    res["server_cpu_s"] = cpu1 - cpu0
    # Everything else that ran meanwhile (kernel networking on behalf of both sides included):
    # on a shared 2-CPU machine, a large "other" means the figures were disturbed.
    res["machine_busy_cpu_s"] = m1["busy"] - m0["busy"]
    res["steal_cpu_s"] = m1["steal"] - m0["steal"]
    res["other_cpu_s"] = res["machine_busy_cpu_s"] - res["server_cpu_s"] - res["loadgen_cpu_s"]
    res["server_cpu_ms_per_request"] = (cpu1 - cpu0) * 1000 / res["requests"] if res["requests"] else None
    res["warmup"] = {k: warm[k] for k in ("requests", "rps", "errors", "bad_responses")} if warm else None
    return res


# -- 6. in-process ------------------------------------------------------------------------------


def _environ(path: str, body: bytes) -> dict:
    return {
        "REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1", "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": CONTENT_TYPE, "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(), "wsgi.url_scheme": "http", "wsgi.version": (1, 0),
        "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }


def _call(app, path: str, body: bytes) -> tuple[str, bytes]:
    status = []
    out = app(_environ(path, body), lambda s, h, e=None: status.append(s))
    data = b"".join(out)
    if hasattr(out, "close"):
        out.close()
    return status[0], data


def in_process_rate(app, path: str, bodies: list[bytes], expect: bytes, seconds: float) -> dict:
    for b in bodies[:20]:
        _call(app, path, b)  # warm: schema compilation, connection pool, caches
    n = bad = 0
    started = time.perf_counter()
    end = started + seconds
    while time.perf_counter() < end:
        status, data = _call(app, path, bodies[n % len(bodies)])
        n += 1
        if not status.startswith("200") or expect not in data:
            bad += 1
    elapsed = time.perf_counter() - started
    return {"requests": n, "seconds": elapsed, "rps": n / elapsed, "ms_per_request": elapsed * 1000 / n, "bad": bad}


def sql_per_request(app, path: str, bodies: list[bytes], requests_: int = 50) -> dict:
    """SQL statements and transactions per esx request (SQLAlchemy engine events)."""
    from sqlalchemy import event

    engine = app.apps[path].app.esx_runtime.db.engine
    seen = {"statements": 0, "selects": 0, "inserts": 0, "commits": 0, "pool_checkouts": 0, "pool_resets": 0}

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        seen["statements"] += 1
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb == "SELECT":
            seen["selects"] += 1
        elif verb == "INSERT":
            seen["inserts"] += 1

    def on_commit(conn):
        seen["commits"] += 1

    def on_checkout(dbapi_conn, record, proxy):
        seen["pool_checkouts"] += 1  # with pool_pre_ping (PostgreSQL) each one is pinged first

    def on_reset(dbapi_conn, record, *state):
        seen["pool_resets"] += 1  # rollback when the connection goes back to the pool

    listeners = [(engine, "before_cursor_execute", on_execute), (engine, "commit", on_commit),
                 (engine.pool, "checkout", on_checkout), (engine.pool, "reset", on_reset)]
    for target, name, fn in listeners:
        event.listen(target, name, fn)
    try:
        for i in range(requests_):
            _call(app, path, bodies[i % len(bodies)])
    finally:
        for target, name, fn in listeners:
            event.remove(target, name, fn)
    return {k: v / requests_ for k, v in seen.items()}


def timed_steps(app, path: str, bodies: list[bytes], requests_: int = 600) -> dict:
    """Wall-clock time of the steps of a GetEIS request, measured in place (no profiler).

    The functions the request path calls are wrapped with a perf_counter timer (about a
    microsecond each) for ``requests_`` in-process requests, then restored. "other" is the rest of
    the request: spyne's and the router's plumbing around the steps.
    """
    import gc

    from esx.binding import contract, soap
    from esx.es4 import service as es4_service
    from esx.server import EsxRuntime
    from smsr_core.registry import EisRegistry

    P = soap.GsmaSoap12
    points = [  # (label, owner, attribute, level): level 0 adds up to the request, 1 is inside dispatch
        ("parse request bytes (hardened lxml parser)", P, "create_in_document", 0),
        ("split envelope, find operation", P, "decompose_incoming_envelope", 0),
        ("read WS-A, XSD-validate header blocks and body", P, "deserialize", 0),
        ("dispatch: handler, authorisation, audit", soap, "dispatch", 0),
        ("caller lookup: CallerCache (DB at most every 5 s)", EsxRuntime, "caller_for", 1),
        ("registry.get_eis: checkout + 4 prepared SELECTs", EisRegistry, "get_eis", 1),
        ("render the EIS element", es4_service, "eis_element", 1),
        ("audit trail: prepared INSERT + commit (DB)", EsxRuntime, "record_call", 1),
        ("build the response element", soap, "response_element", 1),
        ("serialize: XSD-validate response, write WS-A", P, "serialize", 0),
        ("envelope to bytes", P, "create_out_string", 0),
        ("spyne's forced gc.collect() (at most 1/s/process)", gc, "collect", 0),
        ("all XSD validation (request and response)", contract, "validate", -1),
    ]
    spent = {label: 0.0 for label, *_ in points}
    originals = []

    def wrap(label, fn):
        def timed(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[label] += time.perf_counter() - t0
        return timed

    for label, owner, attr, _ in points:
        original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
        originals.append((owner, attr, original))
        setattr(owner, attr, wrap(label, original))
    try:
        for i in range(20):
            _call(app, path, bodies[i % len(bodies)])
        for k in spent:
            spent[k] = 0.0
        t0 = time.perf_counter()
        for i in range(requests_):
            _call(app, path, bodies[i % len(bodies)])
        total = time.perf_counter() - t0
    finally:
        for owner, attr, original in reversed(originals):
            setattr(owner, attr, original)
    rows = [{"label": label, "level": level, "ms": spent[label] * 1000 / requests_, "share": spent[label] / total}
            for label, _, _, level in points]
    top = sum(spent[label] for label, _, _, level in points if level == 0)
    rows.append({"label": "other: spyne + router plumbing", "level": 0,
                 "ms": (total - top) * 1000 / requests_, "share": (total - top) / total})
    return {"requests": requests_, "ms_per_request": total * 1000 / requests_, "steps": rows}


def profile_esx(app, path: str, bodies: list[bytes], requests_: int) -> dict:
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    for i in range(requests_):
        _call(app, path, bodies[i % len(bodies)])
    prof.disable()
    st = pstats.Stats(prof).stats  # (file, line, func) -> (cc, nc, tt, ct, callers)
    total = sum(v[2] for v in st.values())

    groups: dict[str, float] = {}
    for (filename, _line, func), v in st.items():
        if filename == "~":
            name = func
            group = ("lxml (C)" if "lxml" in name else "sqlite3 (C)" if "sqlite3" in name
                     else "gc.collect" if "gc.collect" in name else "other builtins")
        else:
            f = filename.replace("\\", "/")
            group = next((g for g in ("sqlalchemy", "spyne", "lxml", "zeep", "smsr_core", "esx", "keys")
                          if f"/{g}/" in f), "stdlib/other")
        groups[group] = groups.get(group, 0.0) + v[2]
    self_time = {g: {"ms": t * 1000 / requests_, "share": t / total} for g, t in sorted(groups.items(), key=lambda x: -x[1])}
    top = sorted(st.items(), key=lambda kv: -kv[1][2])[:15]
    top_self = [{"function": f"{Path(k[0]).name}:{k[1]}:{k[2]}", "self_ms": v[2] * 1000 / requests_, "calls": v[1] / requests_}
                for k, v in top]
    return {"requests": requests_, "profiled_ms_per_request": total * 1000 / requests_,
            "self_time_by_package": self_time, "top_self": top_self}


# -- the run ------------------------------------------------------------------------------------


def machine() -> dict:
    from importlib.metadata import version

    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor())
    pkgs = {p: version(p) for p in ("spyne", "lxml", "SQLAlchemy", "gunicorn", "zeep", "xmlsec")}
    try:
        wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("[")[0].strip()
    except OSError:
        wrk = None
    import sqlite3

    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "kernel": platform.release(), "sqlite": sqlite3.sqlite_version, "packages": pkgs, "wrk": wrk}


def fmt_run(name: str, r: dict) -> str:
    cpu = r["server_cpu_ms_per_request"]
    return (f"{name:<22} {r['rps']:>9.1f} req/s   p50 {r['p50_ms']:>7.2f} ms   p99 {r['p99_ms']:>7.2f} ms   "
            f"requests {r['requests']:>6}   errors {r['errors']}   bad {r['bad_responses']}   "
            f"server CPU {f'{cpu:.2f} ms/req' if cpu is not None else 'n/a'}")


# -- idle and slow connections held during a run ------------------------------------------------

IDLE_SOURCES = tuple(f"127.0.0.{n}" for n in range(10, 20))  # 10 client addresses, under the per-client limit


class HeldConnections:
    """``n`` idle and slow connections held open for a run; re-opened when the server cuts them off."""

    def __init__(self, port: int, n: int) -> None:
        import threading

        sys.path.insert(0, str(REPO))
        from tests.e2e.slow_clients import HTTP_KINDS, SlowClients

        self.n = n
        self.slow = SlowClients("127.0.0.1", port, sources=IDLE_SOURCES)
        self.replaced = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, name="held-connections", daemon=True)
        if n:
            self.slow.open(n, HTTP_KINDS)
            self._thread.start()

    def _keep(self) -> None:
        while not self._stop.wait(0.5):
            self.replaced += self.slow.replenish()

    def close(self) -> dict:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.slow.close()
        return {"held": self.n, "reopened_after_server_closed_them": self.replaced}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--euiccs", type=int, default=100_000, help="registry size (default 100000)")
    ap.add_argument("--duration", type=float, default=20, help="seconds measured per server (default 20)")
    ap.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per server (default 3)")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="wrk threads")
    ap.add_argument("--bodies", type=int, default=64, help="distinct request bodies (random EIDs) to rotate")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    ap.add_argument("--database-url", default=None,
                    help="an existing, empty database to fill (default: SQLite in the temporary data directory)")
    ap.add_argument("--postgres", metavar="URL", default=None,
                    help="create a throw-away database on this PostgreSQL server, run on it, drop it, e.g. "
                         "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--no-profile", action="store_true", help="skip the in-process measurement and profile")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--serving", default="esx,sync",
                    help="serving models to measure, comma-separated: esx (esx.serving), sync (gunicorn sync)")
    ap.add_argument("--idle", default="0,100",
                    help="idle/slow connections held during a run, comma-separated counts (default 0,100)")
    ap.add_argument("--serving-threads", type=int, default=None,
                    help="application threads per worker of the esx model (serving.threads; default: esx's)")
    ap.add_argument("--no-echo", action="store_true", help="skip the bare spyne echo")
    ap.add_argument("--smoke", action="store_true",
                    help="a few seconds: 2 eUICCs, 1 s runs, Python client, esx with 0 and 10 held, no echo/profile")
    args = ap.parse_args()
    if args.smoke:
        args.euiccs, args.duration, args.warmup, args.bodies, args.connections = 2, 1.0, 0.0, 2, 2
        args.loadgen, args.serving, args.idle, args.no_echo, args.no_profile = "python", "esx", "0,10", True, True
    models = [m.strip() for m in args.serving.split(",") if m.strip()]
    idles = [int(n) for n in args.idle.split(",")]
    if not models or any(m not in ("esx", "sync") for m in models):
        ap.error("--serving takes esx and/or sync")
    if args.euiccs < 2:
        ap.error("--euiccs must be at least 2")
    if args.loadgen == "auto":
        args.loadgen = "wrk" if shutil.which("wrk") else "python"
    if args.loadgen == "wrk" and not shutil.which("wrk"):
        ap.error("wrk not found (apt-get install -y wrk), or use --loadgen python")

    from esx.demo import demo_eid, init_instance
    from esx.server import Config

    results: dict = {"machine": machine(), "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                     "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop the servers on SIGTERM
    if args.postgres:
        args.database_url = create_pg_database(args.postgres)
    tmp = Path(tempfile.mkdtemp(prefix="esx-bench-"))
    servers: list[Server] = []
    t_all = time.perf_counter()
    try:
        m = results["machine"]
        log(f"machine: {m['nproc']} CPU ({m['cpu']}), Python {m['python']}, SQLite {m['sqlite']}, "
            + ", ".join(f"{k} {v}" for k, v in m["packages"].items()) + f", {m['wrk'] or 'no wrk'}")
        log(f"work dir: {tmp}")

        # 1. instance with two eUICCs registered over ES1
        data_dir = tmp / "instance"
        port = free_port()
        t0 = time.perf_counter()
        doc = init_instance(data_dir, demo=2, database_url=args.database_url, public_url=f"http://127.0.0.1:{port}")
        config = Config.load(data_dir)
        results["init_seconds"] = time.perf_counter() - t0
        import sqlalchemy as sa

        results["database"] = sa.engine.make_url(config.database_url).get_backend_name()
        log(f"init_instance(demo=2): {results['init_seconds']:.1f} s (2 eUICCs registered through ES1: "
            f"EUM-signed EIS, signature and ECASD chain verified)")

        # 2. bulk rows
        if args.euiccs > 2:
            load = bulk_load(config.database_url, args.euiccs)
            results["bulk_load"] = load
            log(f"bulk load: {load['inserted']} eUICCs inserted directly with SQLAlchemy core in batches of "
                f"{load['batch']} in {load['seconds']:.1f} s ({load['inserted'] / load['seconds']:.0f} eUICC/s; "
                f"signing+verifying {load['inserted']} EIS over ES1 would take minutes). Rows now: {load['rows']}")
        db_file = data_dir / "esx.sqlite3"
        if db_file.exists():
            results["sqlite_bytes"] = db_file.stat().st_size + sum(
                p.stat().st_size for p in data_dir.glob("esx.sqlite3-*"))

        # 3./4. per serving model: esx serve, the request bodies (checked), one run per idle count
        esx_url = f"http://127.0.0.1:{port}/smsr/es4"
        rng = random.Random(args.seed)
        numbers = [1, *rng.sample(range(2, args.euiccs + 1), min(args.bodies, args.euiccs) - 1)]
        eids = [demo_eid(n) for n in numbers]
        body_dir = tmp / "bodies"
        bodies: list[bytes] = []
        results["runs"] = []
        for model in models:
            config.serving = {**config.serving, "worker": model}
            if args.serving_threads:
                config.serving["threads"] = args.serving_threads
            config.save()
            esx = Server(f"esx serve ({model})", [sys.executable, "-m", "esx.cli", "serve", "--data-dir", str(data_dir),
                                                  "--bind", f"127.0.0.1:{port}", "--role", "smsr", "--no-background",
                                                  "--workers", str(args.workers)],
                         tmp / f"esx-serve-{model}.log", f"{esx_url}?wsdl")
            servers.append(esx)
            esx.wait_ready()
            log(f"esx serve --role smsr --workers {args.workers}, serving.worker={model}, on 127.0.0.1:{port} "
                f"(pids {esx.pids()})")
            if not bodies:
                wsdl = str(OFFICIAL_ES4_WSDL) if OFFICIAL_ES4_WSDL.is_file() else f"{esx_url}?wsdl"
                bodies = build_bodies(wsdl, esx_url, doc["mno_id"], eids)
                body_dir.mkdir()
                for i, b in enumerate(bodies):
                    (body_dir / f"body_{i:03d}.xml").write_bytes(b)
                results["request"] = {"wsdl": wsdl, "bodies": len(bodies), "eids": numbers,
                                      "request_bytes": len(bodies[0]), "content_type": CONTENT_TYPE}
                log(f"{len(bodies)} zeep-built envelopes from "
                    f"{Path(wsdl).name if OFFICIAL_ES4_WSDL.is_file() else wsdl} ({len(bodies[0])} bytes each), "
                    f"EIDs sampled from 1..{args.euiccs}")
            resp_sizes = [check_get_eis(esx_url, b, e) for b, e in zip(bodies, eids)]
            results["request"]["esx_response_bytes"] = resp_sizes[0]
            log(f"each envelope checked: HTTP 200, EXECUTED_SUCCESS, its EID ({resp_sizes[0]} byte response)")
            for idle in idles:
                log(f"measuring esx ({model}, {idle} idle/slow connections held): {args.loadgen}, "
                    f"{args.connections} connections, {args.warmup:g} s warm-up + {args.duration:g} s ...")
                held = HeldConnections(port, idle)
                try:
                    run = measure(esx, esx_url, body_dir, bodies, "EXECUTED_SUCCESS", args)
                finally:
                    held_stats = held.close()
                run["held"] = held_stats
                run.update(serving=model, idle=idle)
                results["runs"].append(run)
                log(fmt_run(f"esx {model}, {idle} held", run) + f"   re-opened {run['held']['reopened_after_server_closed_them']}")
            esx.stop()
            lines, statuses = gunicorn_access_lines(esx.log_path)
            results.setdefault("access_log", {})[model] = {"post_lines": lines, "by_status": statuses}
            log(f"  esx access log ({model}): {lines} POSTs by status {statuses}" if lines else
                f"  esx access log ({model}): off (esx's default; the calls are counted in call_audit below)")
        results["audit"] = audit_counts(config.database_url)
        log(f"call_audit ES4-GetEIS rows by status {results['audit']}")
        # the headline run: the default model, nothing held
        results["esx"] = next((r for r in results["runs"] if r["idle"] == 0), results["runs"][0])

        # 5. bare spyne echo
        if not args.no_echo:
            results["echo_runs"] = [run_echo(args, model, tmp, servers, bodies, body_dir, results) for model in models]
            # the headline ratio: esx and the echo under the same serving model
            results["echo"] = next(r for r in results["echo_runs"] if r["serving"] == results["esx"]["serving"])
            results["ratio"] = ratios(results["esx"], results["echo"])

        # 6. in-process
        if not args.no_profile:
            results["in_process"] = in_process(config, bodies)

        results["total_seconds"] = time.perf_counter() - t_all
        summary(results)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
            log(f"results written to {args.json}")
        else:
            log("RESULTS_JSON " + json.dumps(results))
        # A sync worker holding idle connections is expected to fail its run: that is the finding.
        expected_clean = [r for r in results["runs"] if r["serving"] == "esx" or r["idle"] == 0]
        expected_clean += results.get("echo_runs", [])
        bad = sum(r["errors"] + r["bad_responses"] for r in expected_clean)
        return 1 if bad else 0
    finally:
        for s in servers:
            s.stop()
        if args.postgres:
            drop_pg_database(args.postgres, args.database_url)
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


ECHO_WORKER_CLASSES = {"sync": "sync", "esx": "esx.serving.worker.BufferedRequestWorker"}


def run_echo(args, model: str, tmp: Path, servers: list, bodies: list[bytes], body_dir: Path, results: dict) -> dict:
    """The bare spyne echo under gunicorn, with the worker class of a serving model: the framework
    floor. Under the two models, its difference is what the serving model itself costs."""
    echo_port = free_port()
    echo_url = f"http://127.0.0.1:{echo_port}/"
    echo = Server(f"spyne echo ({model})",
                  [sys.executable, "-m", "gunicorn", "--chdir", str(BENCH), "-w", str(args.workers),
                   "-k", ECHO_WORKER_CLASSES[model], "-b", f"127.0.0.1:{echo_port}", "--timeout", "120",
                   "--access-logfile", "-", "--error-logfile", "-", "--log-level", "info",
                   "--name", "spyne-echo", "spyne_echo:application"],
                  tmp / f"echo-{model}.log", f"{echo_url}?wsdl", cwd=REPO)
    servers.append(echo)
    echo.wait_ready()
    echo_size = check_echo(echo_url, bodies[0])
    results["request"]["echo_response_bytes"] = echo_size
    log(f"spyne echo (gunicorn -w {args.workers} -k {ECHO_WORKER_CLASSES[model]}) on 127.0.0.1:{echo_port}; "
        f"check: HTTP 200, {echo_size} byte response")
    run = measure(echo, echo_url, body_dir, bodies, "ES4-GetEISRequest", args)
    run.update(serving=model, idle=0)
    log(fmt_run(f"bare spyne echo ({model})", run))
    echo.stop()
    lines, statuses = gunicorn_access_lines(echo.log_path)
    run["access_log"] = {"post_lines": lines, "by_status": statuses}
    log(f"  echo access log: {lines} POSTs by status {statuses}")
    return run


def ratios(e: dict, f: dict) -> dict:
    return {
        "rps_esx_over_echo": e["rps"] / f["rps"],
        "p50_esx_over_echo": e["p50_ms"] / f["p50_ms"],
        "p99_esx_over_echo": e["p99_ms"] / f["p99_ms"],
        "server_cpu_esx_over_echo": (e["server_cpu_ms_per_request"] / f["server_cpu_ms_per_request"]
                                     if e["server_cpu_ms_per_request"] and f["server_cpu_ms_per_request"] else None),
    }


def create_pg_database(server_url: str) -> str:
    import sqlalchemy as sa

    name = f"esx_bench_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(server_url: str, database_url: str) -> None:
    import sqlalchemy as sa

    name = sa.engine.make_url(database_url).database
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as c:
            c.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        engine.dispose()


def audit_counts(database_url: str) -> dict:
    import sqlalchemy as sa

    from esx.audit import CallRecord
    from persistence.db import Database

    db = Database(database_url)
    try:
        with db.engine.connect() as c:
            rows = c.execute(sa.select(CallRecord.status, sa.func.count()).where(CallRecord.function == "ES4-GetEIS")
                             .group_by(CallRecord.status)).all()
    finally:
        db.dispose()
    return {status: n for status, n in rows}


def in_process(config, bodies: list[bytes]) -> dict:
    import logging

    logging.getLogger("spyne").setLevel(logging.ERROR)  # "Overwriting application ..." (a 2nd app in-process)
    sys.path.insert(0, str(BENCH))
    from spyne_echo import application as echo_app

    from esx.server import make_wsgi

    app = make_wsgi(config, "smsr")
    out = {
        "esx": in_process_rate(app, "/smsr/es4", bodies, b"EXECUTED_SUCCESS", 4),
        "echo": in_process_rate(echo_app, "/", bodies, b"ES4-GetEISRequest", 3),
    }
    out["sql"] = sql_per_request(app, "/smsr/es4", bodies)
    out["steps"] = timed_steps(app, "/smsr/es4", bodies)
    out["profile"] = profile_esx(app, "/smsr/es4", bodies, 300)
    log(f"in-process (one process, no HTTP): esx {out['esx']['ms_per_request']:.2f} ms/request "
        f"({out['esx']['rps']:.0f}/s, bad {out['esx']['bad']}), echo {out['echo']['ms_per_request']:.3f} ms/request "
        f"({out['echo']['rps']:.0f}/s, bad {out['echo']['bad']})")
    return out


def summary(r: dict) -> None:
    e = r["esx"]
    log("")
    log("=" * 100)
    log(f"ES4-GetEIS over HTTP, registry of {r['args']['euiccs']} eUICCs on {r['database']}, {e['tool']}, "
        f"{r['args']['workers']} gunicorn workers")
    log("serving model          held    req/s      p50      p90      p99      max   requests  errors  bad  "
        "server CPU/req  re-opened")
    for x in r["runs"]:
        cpu = x["server_cpu_ms_per_request"]
        log(f"{x['serving']:<20} {x['idle']:>6} {x['rps']:>8.1f} {x['p50_ms']:>8.2f} {x['p90_ms']:>8.2f} "
            f"{x['p99_ms']:>8.2f} {x['max_ms']:>8.1f} {x['requests']:>10} {x['errors']:>7} {x['bad_responses']:>4}  "
            f"{f'{cpu:.2f} ms' if cpu is not None else 'n/a':>14}  {x['held']['reopened_after_server_closed_them']:>9}")
    named = [(f"esx {x['serving']}, {x['idle']} held", x) for x in r["runs"]]
    for f in r.get("echo_runs", []):
        log(fmt_run(f"bare spyne echo ({f['serving']})", f))
        named.append((f"echo {f['serving']}", f))
    if "ratio" in r:
        q = r["ratio"]
        log(f"ratio esx/echo ({e['serving']}): throughput {q['rps_esx_over_echo']:.3f} "
            f"(echo is {1 / q['rps_esx_over_echo']:.1f}x faster), p50 {q['p50_esx_over_echo']:.1f}x, "
            f"p99 {q['p99_esx_over_echo']:.1f}x, server CPU/request {q['server_cpu_esx_over_echo'] or float('nan'):.1f}x")
    for name, x in named:
        log(f"CPU during the {name} run ({x['seconds']:.0f} s x {r['machine']['nproc']} CPUs = "
            f"{x['seconds'] * r['machine']['nproc']:.0f} CPU-s): server {x['server_cpu_s']:.1f}, "
            f"load generator {x['loadgen_cpu_s']:.1f}, everything else {x['other_cpu_s']:.1f} "
            f"(machine busy {x['machine_busy_cpu_s']:.1f}, steal {x['steal_cpu_s']:.1f})")
    if "in_process" in r:
        ip = r["in_process"]
        p = ip["profile"]
        log(f"in-process: esx {ip['esx']['ms_per_request']:.2f} ms/request, echo {ip['echo']['ms_per_request']:.3f} ms/request")
        sq = ip["sql"]
        log(f"SQL per esx GetEIS request: {sq['statements']:g} statements ({sq['selects']:g} SELECT, "
            f"{sq['inserts']:g} INSERT), {sq['commits']:g} commits, {sq['pool_checkouts']:g} pool checkouts, "
            f"{sq['pool_resets']:g} resets on return")
        st = ip["steps"]
        log(f"where the time goes: {st['requests']} in-process esx GetEIS requests with a timer around each step "
            f"({st['ms_per_request']:.2f} ms/request):")
        for row in st["steps"]:
            pad = "  " * max(row["level"], 0) + ("* " if row["level"] < 0 else "")
            log(f"  {pad + row['label']:<62} {row['ms']:6.3f} ms  {row['share'] * 100:5.1f} %")
        log(f"cProfile of {p['requests']} requests ({p['profiled_ms_per_request']:.2f} ms/request under the profiler):")
        log("  self time by package: " + ", ".join(f"{g} {v['share'] * 100:.0f} %" for g, v in p["self_time_by_package"].items()))
    log(f"total run time {r['total_seconds']:.0f} s")
    log("=" * 100)


if __name__ == "__main__":
    sys.exit(main())
