#!/usr/bin/env python
"""Benchmark: SM-SR operations per second through the loopback SMSC (ES4-EnableProfile round trips).

    .venv/bin/python bench/ota_ops.py [--euiccs 20] [--workers-ota 1] [--rounds 5] [--warmup-rounds 1]
    .venv/bin/python bench/ota_ops.py --matrix        # 20 and 100 eUICCs x 1 and 2 workers, ~2 min, one table
    .venv/bin/python bench/ota_ops.py --profile-worker cpu|wall   # worker 1 under cProfile (slow)
    .venv/bin/python bench/ota_ops.py --smoke         # 2 eUICCs, 1 round, seconds; tests/bench/test_smoke.py runs it

One **operation** is one asynchronous ES4-EnableProfile, end to end: the MNO's request over HTTP
(202 Accepted) -> the operation row -> a worker sends the SCP80 command packet as SMS (submit_sm
over SMPP) -> the loopback SMSC hands it to the simulated card (SMS-PP download) -> the card
enables the profile and answers with a PoR and a default notification (deliver_sm) -> the worker
stores and handles both, updates the EIS, confirms the notification (3A08, another submit_sm) ->
the outbox delivers the ES4-EnableProfile callback (RelatesTo = the request's MessageID) and the
two ES4-HandleProfileEnabled/DisabledNotification to the MNO's endpoint.

What it does (bounded, loopback only, everything it starts it stops, also on error):

1. ``esx init --data-dir D --demo N --public-url http://127.0.0.1:PORT`` in a temporary directory;
   writes the ``ota`` settings of the run into ``D/esx.json`` (a free SMPP port, poll_interval,
   notification_retry, por_timeout); ``esx entity add`` points the demo MNO's endpoint at a small
   receiver this script runs (a ThreadingHTTPServer answering 202 that records every callback by
   RelatesTo and every notification).
2. Starts ``esx smsc --pdu-log``, ``esx serve --no-background --role smsr --workers 2`` and W
   ``esx worker`` processes, and waits until each worker has bound to the SMSC.
3. Per round: ES4-EnableProfile of every eUICC's second (disabled) profile, to all N eUICCs at
   once (``--connections`` concurrent HTTP senders; envelopes built by zeep from our ES4SmSr.wsdl
   through ``esx.binding.client.GsmaClient``, wsa:From EntityId = the demo MNO, callbacks to the
   MNO entity's registered endpoint, or to wsa:ReplyTo with ``--reply-to``), wait for all N
   callbacks; then ES4-EnableProfile of the first profile for all N (enabling it disables the
   second), wait for all N callbacks. A round is therefore 2N operations. ``--warmup-rounds``
   rounds run first and are not counted.
   Every callback must be an ES4-EnableProfileResponse with Status EXECUTED_SUCCESS, every request
   must get HTTP 202; anything else aborts the run with the details.
4. Measures, per phase (N operations), the wall time from the first request sent to the last
   callback received; operations/s = operations / sum of those wall times. Latency = the time from
   one request's send to its own callback's arrival (p50/p90/p99/max). CPU seconds of every process
   over the measured rounds (from /proc), and what the rest of the machine used meanwhile (a run
   disturbed by other processes says so).
5. Afterwards, from the database (read-only): operations by result, attempts (an attempt > 1 is a
   command sent again), automatic operations (audits), outbox deliveries and retries, SMS inbox
   outcomes, and the median time of each stage of an operation (accepted -> the card's answer
   stored -> handled = done -> callback delivered); from the PDU log, the SMPP PDUs by command; the
   card files and the EIS must agree at the end, and the cards' unconfirmed notifications are counted.
6. ``--profile-worker cpu|wall``: worker 1 runs under cProfile in every thread (timer: the
   thread's CPU time, or wall time), and the self time by group, the cumulative time of the key
   steps and the top functions are printed. It slows that worker a lot (about 4x): take
   throughput figures from runs without it.

Prints a summary and the results as JSON (``--json FILE`` writes them to FILE instead of stdout).
Timings live here and in BENCHMARKS.md, not in tests.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's esx, also when the venv's editable install points elsewhere
CONTENT_TYPE = "application/soap+xml; charset=utf-8"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MNO_OID = "1.3.6.1.4.1.99999.2.1"
ESX = [sys.executable, "-m", "esx.cli"]
SERVED = REPO  # the checkout whose esx processes a benchmark starts (use_checkout: an older one, side by side)


def use_checkout(root: Path) -> None:
    """Start the esx of another checkout (with its own ``.venv``, as ``make install`` leaves it) instead of this one's:
    the old and the new measured one after the other by the same script, on the same machine state. The client side
    (the MNO, the load) stays this checkout's."""
    global SERVED
    SERVED = Path(root).resolve()
    python = SERVED / ".venv" / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} not found: run 'make install' in {SERVED} first")
    ESX[:] = [str(python), "-m", "esx.cli"]

# worker 1 under cProfile, every thread (the tick loop, the outbox thread, the SMPP reader)
PROFILED_WORKER = r"""
import cProfile, pstats, sys, threading, time
out, data_dir, clock = sys.argv[1], sys.argv[2], sys.argv[3]
timer = time.thread_time if clock == "cpu" else time.perf_counter  # cpu: each thread's own CPU time
profiles = []
_run = threading.Thread.run
def run(self):
    p = cProfile.Profile(timer)
    profiles.append(p)
    p.enable()
    try:
        _run(self)
    finally:
        p.disable()
threading.Thread.run = run
from esx.cli import main
main_profile = cProfile.Profile(timer)
profiles.append(main_profile)
main_profile.enable()
try:
    main(["worker", "--data-dir", data_dir], standalone_mode=False)
finally:
    main_profile.disable()
    stats = pstats.Stats(profiles[0])
    for p in profiles[1:]:
        try:
            stats.add(p)
        except TypeError:  # a thread that never ran anything
            pass
    stats.dump_stats(out)
"""


def log(msg: str = "") -> None:
    print(msg, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# -- processes ---------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """Children get SIGTERM when this script dies, even by SIGKILL (PR_SET_PDEATHSIG)."""
    if _libc is not None:
        _libc.prctl(1, signal.SIGTERM)


class Proc:
    """A process we started (and stop): its log and its CPU time, children included."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.proc = subprocess.Popen(argv, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=SERVED, preexec_fn=_die_with_parent)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_for_log(self, needle: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if needle in self.tail(100_000):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: no {needle!r} in its log within {timeout:g} s: {self.tail()}")

    def wait_http(self, url: str, timeout: float = 30) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if requests.get(url, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer {url}: {self.tail()}")

    def pids(self) -> list[int]:
        pid = self.proc.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
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

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {self.proc.pid}) did not stop within {timeout:g} s: killed")
                self.proc.kill()
                self.proc.wait(5)


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, steal) CPU-seconds since boot, all CPUs (/proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (f + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def print_results(results: dict, json_path: Path | None) -> None:
    """A benchmark's results: to ``json_path`` (else stdout) indented, and one ``RESULTS_JSON`` line on the log
    (tests/bench/test_smoke.py reads that line)."""
    text = json.dumps(results, indent=2)
    if json_path:
        json_path.write_text(text + "\n")
    else:
        print(text)
    log("RESULTS_JSON " + json.dumps(results))


def esx(*args: str) -> str:
    r = subprocess.run([*ESX, *args], capture_output=True, text=True, cwd=SERVED)
    if r.returncode != 0:
        raise RuntimeError(f"esx {' '.join(args[:2])} failed ({r.returncode}): {r.stderr[-2000:]}")
    return r.stdout


# -- the MNO's endpoint ------------------------------------------------------------------------


class Receiver:
    """The demo MNO's callback/notification endpoint: answers 202, records what arrives."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.callbacks: dict[str, dict] = {}  # RelatesTo -> first callback
        self.duplicate_callbacks = 0
        self.notifications: Counter = Counter()  # body element local name -> count
        self.notification_keys: Counter = Counter()  # (name, eid, iccid, timestamp) -> count (duplicates)
        self.unexpected: list[str] = []
        self.posts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # kept-alive connections, as an MNO's system keeps them (every answer is framed)

            def do_POST(self):  # noqa: N802
                t = time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    receiver.record(t, body)
                finally:
                    self.send_response(202)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="mno-receiver", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def record(self, t: float, data: bytes) -> None:
        from lxml import etree

        from esx.binding.ns import GSMA, SOAP12, WSA

        g = f"{{{GSMA}}}"
        try:
            root = etree.fromstring(data)
            body = next(c for c in root.find(f"{{{SOAP12}}}Body") if isinstance(c.tag, str))
        except Exception as exc:  # noqa: BLE001
            with self.cond:
                self.posts += 1
                self.unexpected.append(f"unreadable POST: {exc}: {data[:300]!r}")
            return
        name = etree.QName(body).localname
        relates_to = (root.findtext(f"{{{SOAP12}}}Header/{{{WSA}}}RelatesTo") or "").strip()
        with self.cond:
            self.posts += 1
            if name.endswith("Notification"):
                self.notifications[name] += 1
                key = (name, body.findtext(g + "Eid"), body.findtext(g + "Iccid"), body.findtext(g + "CompletionTimestamp"))
                self.notification_keys[key] += 1
            elif relates_to:
                if relates_to in self.callbacks:
                    self.duplicate_callbacks += 1
                else:
                    st = body.find(g + "FunctionExecutionStatus")
                    scd = st.find(g + "StatusCodeData") if st is not None else None
                    self.callbacks[relates_to] = {
                        "t": t, "name": name,
                        "status": st.findtext(g + "Status") if st is not None else None,
                        "subject": scd.findtext(g + "Subject") if scd is not None else None,
                        "reason": scd.findtext(g + "Reason") if scd is not None else None,
                        "message": scd.findtext(g + "Message") if scd is not None else None,
                    }
            else:
                self.unexpected.append(f"{name} without RelatesTo")
            self.cond.notify_all()

    def wait_callbacks(self, message_ids: list[str], timeout: float) -> list[str]:
        """Wait until every MessageID has its callback; return the missing ones."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                missing = [m for m in message_ids if m not in self.callbacks]
                left = deadline - time.monotonic()
                if not missing or left <= 0:
                    return missing
                self.cond.wait(min(left, 1.0))

    def wait_notifications(self, total: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        with self.cond:
            while sum(self.notifications.values()) < total and time.monotonic() < deadline:
                self.cond.wait(min(deadline - time.monotonic(), 1.0))
            return sum(self.notifications.values())


# -- the MNO's requests ------------------------------------------------------------------------


class Mno:
    """Builds ES4-EnableProfile envelopes (zeep, our ES4SmSr.wsdl) and sends them concurrently."""

    def __init__(self, es4_url: str, smsr_oid: str, own_url: str, connections: int, reply_to: str | None) -> None:
        from esx.binding import wsa
        from esx.binding.client import GsmaClient

        self.url = es4_url
        self.reply_to = reply_to
        self.client = GsmaClient("ES4SmSr.wsdl", es4_url, sender_oid=MNO_OID,
                                 sender_address=wsa.entity_address(own_url, MNO_OID, "Demo MNO"), receiver_oid=smsr_oid)
        self.pool = ThreadPoolExecutor(max_workers=connections, thread_name_prefix="mno")
        self.local = threading.local()

    def envelope(self, eid: str, iccid: str) -> tuple[str, bytes]:
        from lxml import etree

        from esx.binding.ns import SOAP12, WSA

        env = self.client.client.create_message(self.client.service, "ES4-EnableProfile",
                                                FunctionCallIdentifier=str(uuid.uuid4()), Eid=eid, Iccid=iccid)
        # The client keeps no "last MessageID" (one client serves several threads): read it from the envelope.
        # create_message leaves two wsa:MessageID blocks here; the server reads the last (wsa.read_addressing).
        message_id = env.findall(f"{{{SOAP12}}}Header/{{{WSA}}}MessageID")[-1].text
        if self.reply_to:
            reply = etree.SubElement(env.find(f"{{{SOAP12}}}Header"), f"{{{WSA}}}ReplyTo")
            etree.SubElement(reply, f"{{{WSA}}}Address").text = self.reply_to
        return message_id, etree.tostring(env, xml_declaration=True, encoding="utf-8")

    def _post(self, body: bytes) -> tuple[float, float, int, bytes]:
        import requests

        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
        t0 = time.monotonic()
        try:
            r = session.post(self.url, data=body, headers={"Content-Type": CONTENT_TYPE}, timeout=60)
            return t0, time.monotonic(), r.status_code, r.content[:600]
        except requests.RequestException as exc:
            return t0, time.monotonic(), -1, repr(exc).encode()

    def send_all(self, bodies: list[bytes]) -> list[tuple[float, float, int, bytes]]:
        return list(self.pool.map(self._post, bodies))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


# -- one phase: N operations -------------------------------------------------------------------


def run_phase(mno: Mno, receiver: Receiver, targets: list[tuple[str, str]], timeout: float, label: str,
              db_url: str) -> dict:
    built = [mno.envelope(eid, iccid) for eid, iccid in targets]
    ids = [m for m, _ in built]
    sent = mno.send_all([b for _, b in built])
    refused = [(targets[i][0], code, text) for i, (_, _, code, text) in enumerate(sent) if code != 202]
    if refused:
        raise RuntimeError(f"{label}: {len(refused)} request(s) not accepted (HTTP 202 expected), first: {refused[0]}")
    missing = receiver.wait_callbacks(ids, timeout)
    if missing:
        eids = [targets[ids.index(m)][0] for m in missing]
        raise RuntimeError(f"{label}: {len(missing)} of {len(ids)} callbacks missing after {timeout:g} s "
                           f"(e.g. eUICC {eids[0]}); operations: {operation_states(db_url)}")
    with receiver.cond:
        got = [receiver.callbacks[m] for m in ids]
    bad = [(targets[i][0], c) for i, c in enumerate(got)
           if c["status"] != "EXECUTED_SUCCESS" or c["name"] != "ES4-EnableProfileResponse"]
    if bad:
        kinds = Counter(f"{c['name']} {c['status']} {c['subject']}/{c['reason']}: {c['message']}" for _, c in bad)
        raise RuntimeError(f"{label}: {len(bad)} of {len(ids)} callbacks are not EXECUTED_SUCCESS: {dict(kinds)}; "
                           f"first eUICC {bad[0][0]}")
    first_send = min(t0 for t0, _, _, _ in sent)
    last_callback = max(c["t"] for c in got)
    return {
        "operations": len(ids),
        "wall_s": last_callback - first_send,
        "send_s": max(t1 for _, t1, _, _ in sent) - first_send,  # until the last 202
        "http_ms": [(t1 - t0) * 1000 for t0, t1, _, _ in sent],
        "latency_ms": [(c["t"] - s[0]) * 1000 for c, s in zip(got, sent)],
    }


def operation_states(db_url: str) -> dict:
    import sqlalchemy as sa

    try:
        eng = sa.create_engine(db_url)
        with eng.connect() as c:
            rows = c.execute(sa.text("SELECT state, coalesce(step, ''), coalesce(result_status, ''), count(*) "
                                     "FROM operation GROUP BY 1, 2, 3")).all()
        eng.dispose()
        return {f"{a}/{b}/{c}".rstrip("/"): n for a, b, c, n in rows}
    except Exception as exc:  # noqa: BLE001
        return {"error": repr(exc)}


# -- after the run: the database, the PDU log, the cards ---------------------------------------


def _dt(v) -> datetime | None:
    if v is None:
        return None
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    return v if v.tzinfo else v.replace(tzinfo=timezone.utc)


def db_report(db_url: str, measured_from_id: int) -> dict:
    """Counts and stage timings from the SM-SR's tables (operations with id > measured_from_id)."""
    import sqlalchemy as sa

    eng = sa.create_engine(db_url)
    out: dict = {}
    with eng.connect() as c:
        ops = c.execute(sa.text(
            "SELECT id, eid, interface, function, state, result_status, result_subject, result_reason, attempts, "
            "counter, accepted_at, done_at FROM operation ORDER BY id")).all()
        outbox = c.execute(sa.text(
            "SELECT kind, operation, operation_id, attempts, created_at, delivered_at, last_error FROM outbox")).all()
        inbox = c.execute(sa.text(
            "SELECT id, source_addr, received_at, processed_at, outcome FROM sms_inbox ORDER BY id")).all()
        msisdn_eid = dict(c.execute(sa.text("SELECT msisdn, eid FROM profile WHERE msisdn IS NOT NULL")).all())
        audit = c.execute(sa.text("SELECT function, status, count(*) FROM call_audit GROUP BY 1, 2")).all()
    eng.dispose()

    out["operations_by_result"] = dict(Counter(f"{r.interface} {r.function} {r.state} {r.result_status or ''}"
                                               f"{' ' + r.result_subject + '/' + r.result_reason if r.result_subject else ''}".strip()
                                               for r in ops))
    out["operations_attempts"] = dict(Counter(str(r.attempts) for r in ops if r.interface != "SMSR"))
    out["automatic_operations"] = sum(1 for r in ops if r.interface == "SMSR")
    out["outbox"] = dict(Counter(f"{r.kind} {r.operation} attempts={r.attempts}"
                                 f"{'' if r.delivered_at else ' UNDELIVERED'}" for r in outbox))
    errors = Counter((r.last_error or "")[:120] for r in outbox if r.last_error)
    out["outbox_errors"] = dict(errors)
    outcomes = Counter(re.sub(r"\d+", "#", r.outcome or "unprocessed") for r in inbox)
    out["sms_inbox_outcomes"] = dict(outcomes)
    out["call_audit"] = {f"{f} {s}": n for f, s, n in audit}

    # stage timings of the measured ES4 operations. An operation's PoR is found by (eUICC, SCP80
    # counter); with several workers it is often handled after the notification has completed the
    # operation ("no operation waits for it"). processed_at and done_at are the `now` of the worker
    # tick that handled the SMS (one value per tick).
    por_at: dict[tuple[str, int], datetime] = {}
    notif_by_eid: dict[str, list[tuple]] = {}
    for r in inbox:
        eid = msisdn_eid.get(r.source_addr)
        outcome = r.outcome or ""
        m = re.match(r"PoR counter (\d+):", outcome)
        if m:
            por_at.setdefault((eid, int(m.group(1))), _dt(r.received_at))
        elif outcome.startswith("notification") and "duplicate" not in outcome:
            notif_by_eid.setdefault(eid, []).append((_dt(r.received_at), _dt(r.processed_at)))
    op_by_id = {r.id: r for r in ops}
    for r in inbox:
        m = re.match(r"operation (\d+): card accepted", r.outcome or "")
        if m and int(m.group(1)) in op_by_id:
            op = op_by_id[int(m.group(1))]
            por_at.setdefault((op.eid, op.counter), _dt(r.received_at))
    cb_by_op = {r.operation_id: (_dt(r.created_at), _dt(r.delivered_at)) for r in outbox if r.kind == "callback"}
    stages: dict[str, list[float]] = {k: [] for k in (
        "accepted -> card's answer stored", "answer stored -> handled (done)",
        "done -> callback delivered", "accepted -> callback delivered")}
    for r in ops:
        if r.id <= measured_from_id or r.interface != "ES4" or r.id not in cb_by_op:
            continue
        acc, done = _dt(r.accepted_at), _dt(r.done_at)
        n = next((a for a, b in notif_by_eid.get(r.eid, []) if b is not None and abs((b - done).total_seconds()) < 1e-3),
                 None)
        answers = [t for t in (por_at.get((r.eid, r.counter)), n) if t is not None]
        if answers:
            first = min(answers)
            stages["accepted -> card's answer stored"].append((first - acc).total_seconds())
            stages["answer stored -> handled (done)"].append((done - first).total_seconds())
        created, delivered = cb_by_op[r.id]
        if delivered is not None:
            stages["done -> callback delivered"].append((delivered - done).total_seconds())
            stages["accepted -> callback delivered"].append((delivered - acc).total_seconds())
    out["stages_ms"] = {k: {"n": len(v), "p50": pct(v, 50) * 1000 if v else None, "mean": statistics.fmean(v) * 1000 if v else None,
                            "p90": pct(v, 90) * 1000 if v else None}
                        for k, v in stages.items()}
    return out


def pdu_report(path: Path) -> dict:
    counts: Counter = Counter()
    if not path.is_file():
        return {}
    for line in path.read_text(errors="replace").splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        counts[f"{d['dir']} {d['command']}"] += 1
    return dict(counts)


def cards_report(data_dir: Path, db_url: str) -> dict:
    """Every simulated card and the EIS must agree on each profile's state; also count the
    notifications the cards still wait to see confirmed."""
    import sqlalchemy as sa

    from euicc_sim.card import Card
    from euicc_sim.network import CARD_FILE

    eng = sa.create_engine(db_url)
    with eng.connect() as c:
        eis = {(e, i): s for e, i, s in c.execute(sa.text("SELECT eid, iccid, state FROM profile")).all()}
    eng.dispose()
    problems = []
    pending = Counter()
    for path in sorted((data_dir / "euicc").glob(f"*/{CARD_FILE}")):
        card = Card.load(path)
        view = card.view()
        pending[len(view["pending_notifications"])] += 1
        for p in view["profiles"]:
            st = eis.get((card.eid, p["iccid"]))
            card_state = p.get("state")
            if st is None or (card_state or "").lower() != st.lower():
                problems.append(f"{card.eid} {p['iccid']}: card {card_state}, EIS {st}")
    return {"mismatches": problems, "cards_by_unconfirmed_notifications": {str(k): v for k, v in sorted(pending.items())}}


# Functions whose cumulative time tells where a worker's time goes (file suffix, function name).
KEY_FUNCTIONS = [
    ("esx/worker.py", "tick", "operation loop: one tick"),
    ("smsr_core/platform.py", "expire", "  expire"),
    ("smsr_core/platform.py", "process_inbox", "  process_inbox (PoRs, notifications)"),
    ("smsr_core/platform.py", "start_ready", "  start_ready"),
    ("smsr_core/platform.py", "due_sends", "  due_sends (build SCP80 commands)"),
    ("esx/worker.py", "send", "  send (submit_sm, wait for submit_sm_resp)"),
    ("esx/worker.py", "deliver", "outbox loop: deliver_due"),
    ("site-packages/requests/sessions.py", "post", "  HTTP POST to the MNO"),
    ("esx/outbox.py", "_envelope", "  build the envelope"),
    ("esx/worker.py", "on_deliver", "SMPP reader: on_deliver (store in sms_inbox)"),
    ("esx/outbox.py", "callback", "render callbacks (in process_inbox)"),
    ("esx/outbox.py", "profile_notification", "render notifications (in process_inbox)"),
    ("~", "<method 'execute' of 'sqlite3.Cursor' objects>", "sqlite3 Cursor.execute (all threads)"),
    ("~", "<method 'commit' of 'sqlite3.Connection' objects>", "sqlite3 Connection.commit (all threads)"),
    ("~", "<built-in method posix.stat>", "os.stat"),
]


def _group(file: str, func: str) -> str:
    f = file.replace("\\", "/")
    if f == "~" or f.startswith("<"):
        if "sqlite3" in func:
            return "sqlite3 (C: statements, commits, lock waits)"
        if any(w in func for w in ("acquire", "select.select", "select.poll", "time.sleep", "wait")):
            return "waiting (locks, events, select, sleep)"
        if "socket" in func or "_ssl" in func:
            return "sockets"
        if "lxml" in func:
            return "lxml"
        if "posix" in func:
            return "os calls (stat, open, ...)"
        return "other C builtins"
    if "site-packages/" in f:
        return f.split("site-packages/", 1)[1].split("/", 1)[0].split(".")[0]
    if f.startswith(str(REPO)):
        return "esx code: " + f[len(str(REPO)) + 1:].split("/", 1)[0]
    return "stdlib"


def profile_summary(path: Path, top: int = 25) -> dict:
    import pstats

    st = pstats.Stats(str(path))
    total = sum(v[2] for v in st.stats.values()) or 1e-9
    groups: Counter = Counter()
    rows = []
    keys = {}
    for (file, line, func), (cc, nc, tt, ct, _callers) in st.stats.items():
        groups[_group(file, func)] += tt
        rows.append((tt, ct, nc, f"{Path(file).name}:{line}({func})"))
        for suffix, name, label in KEY_FUNCTIONS:
            if func == name and file.replace("\\", "/").endswith(suffix):
                k = keys.setdefault(label, [0.0, 0])
                k[0] += ct
                k[1] += nc
    rows.sort(reverse=True)
    return {
        "total_self_s": total,
        "self_time_by_group": {k: round(v, 3) for k, v in groups.most_common()},
        "key_functions_cumulative": {label: {"cum_s": round(keys[label][0], 3), "calls": keys[label][1]}
                                     for _, _, label in KEY_FUNCTIONS if label in keys},
        "top_self": [{"self_s": round(tt, 3), "cum_s": round(ct, 3), "calls": nc, "function": fn} for tt, ct, nc, fn in rows[:top]],
    }


def esx_version() -> dict:
    """The commit of this checkout, and whether esx's own files differ from it (None outside git)."""
    try:
        commit = subprocess.run(["git", "-C", str(SERVED), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "-C", str(SERVED), "status", "--porcelain", "--", "esx", "smsr_core", "euicc_sim",
                                "ota", "keys", "wsdl"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "modified": None}
    return {"commit": commit, "modified": dirty.splitlines() if commit else None}


MATRIX = [(20, 1), (20, 2), (100, 1), (100, 2)]


def run_matrix(args) -> int:
    """One run per (eUICCs, workers) of MATRIX, each in its own process, then one table."""
    passthrough = ["--rounds", str(args.rounds), "--warmup-rounds", str(args.warmup_rounds),
                   "--http-workers", str(args.http_workers), "--connections", str(args.connections),
                   "--poll-interval", str(args.poll_interval), "--notification-retry", str(args.notification_retry),
                   "--por-timeout", str(args.por_timeout), "--phase-timeout", str(args.phase_timeout),
                   *(["--reply-to"] if args.reply_to else []), *(["--no-pdu-log"] if args.no_pdu_log else [])]
    rows = []
    failed = 0
    with tempfile.TemporaryDirectory(prefix="esx-bench-ota-matrix-") as tmp:
        for n, w in MATRIX:
            out = Path(tmp) / f"n{n}-w{w}.json"
            log(f"### --euiccs {n} --workers-ota {w}")
            rc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--euiccs", str(n), "--workers-ota", str(w),
                                 "--json", str(out), *passthrough]).returncode
            if rc != 0 or not out.is_file():
                failed += 1
                rows.append((n, w, None))
                continue
            rows.append((n, w, json.loads(out.read_text())))
    log("")
    log("| eUICCs | esx workers | operations/s | phases min..max | p50 | p90 | p99 | max | worker CPU ms/op | "
        "machine busy | not ours | re-sent commands |")
    log("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, w, r in rows:
        if r is None:
            log(f"| {n} | {w} | FAILED (see above) | | | | | | | | | |")
            continue
        m = r["measured"]
        lm = m["latency_ms"]
        worker_ms = sum(v for k, v in m["cpu_s_per_op"].items() if k.startswith("esx worker"))
        resent = sum((int(k) - 1) * v for k, v in r["db"]["operations_attempts"].items())
        avail = m["elapsed_s"] * r["machine"]["nproc"]
        log(f"| {n} | {w} | **{m['ops_per_s']:.1f}** | {m['phase_ops_per_s_min']:.1f}..{m['phase_ops_per_s_max']:.1f} | "
            f"{lm['p50']:.0f} ms | {lm['p90']:.0f} ms | {lm['p99']:.0f} ms | {lm['max']:.0f} ms | {worker_ms:.1f} | "
            f"{m['machine_busy_cpu_s'] / avail * 100:.0f} % | {m['other_cpu_s']:.1f} CPU-s | {resent} |")
    return 1 if failed else 0


# -- main --------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--euiccs", type=int, default=20, help="simulated eUICCs, all driven at once (default 20)")
    ap.add_argument("--rounds", type=int, default=5, help="measured rounds; one round = 2 operations per eUICC")
    ap.add_argument("--warmup-rounds", type=int, default=1, help="rounds run first and not counted (default 1)")
    ap.add_argument("--workers-ota", type=int, default=1, help="esx worker processes (default 1)")
    ap.add_argument("--http-workers", type=int, default=2, help="gunicorn workers of esx serve (default 2)")
    ap.add_argument("--connections", type=int, default=8, help="concurrent HTTP senders of the MNO (default 8)")
    ap.add_argument("--poll-interval", type=float, default=0.05, help="ota.poll_interval of the workers (default 0.05 s)")
    ap.add_argument("--notification-retry", type=float, default=5.0,
                    help="ota.notification_retry of the simulated cards (default 5 s)")
    ap.add_argument("--por-timeout", type=float, default=10.0, help="ota.por_timeout (default 10 s)")
    ap.add_argument("--phase-timeout", type=float, default=180.0, help="max seconds to wait for one phase's callbacks")
    ap.add_argument("--reply-to", action="store_true",
                    help="send wsa:ReplyTo = the receiver (default: the MNO entity's registered endpoint)")
    ap.add_argument("--no-pdu-log", action="store_true", help="run esx smsc without --pdu-log")
    ap.add_argument("--profile-worker", choices=["cpu", "wall"], default=None,
                    help="run worker 1 under cProfile, every thread, timing each thread's CPU time or wall time "
                         "(slows the worker down: take throughput figures from runs without it)")
    ap.add_argument("--matrix", action="store_true",
                    help="run 20 and 100 eUICCs with 1 and 2 esx workers, one process each, and print a table")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--esx-root", type=Path, default=None,
                    help="run the esx of this checkout (its .venv) instead of this one's, e.g. an older commit's "
                         "worktree, to measure old and new side by side")
    ap.add_argument("--json", type=Path, default=None,
                    help="write the results here (default: print them as one RESULTS_JSON line)")
    ap.add_argument("--smoke", action="store_true",
                    help="a few seconds, no timings checked: 2 eUICCs, 1 round, no warm-up (tests/bench/test_smoke.py)")
    args = ap.parse_args()
    if args.esx_root is not None:
        use_checkout(args.esx_root)
    if args.smoke:
        args.euiccs, args.rounds, args.warmup_rounds, args.workers_ota, args.matrix = 2, 1, 0, 1, False
        args.connections, args.phase_timeout = 2, 60.0
    if args.euiccs < 1 or args.rounds < 1 or args.workers_ota < 1:
        ap.error("--euiccs, --rounds and --workers-ota must be at least 1")
    if args.matrix:
        return run_matrix(args)

    def on_sigterm(*_):  # still stop everything on SIGTERM; a second one must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.exit(143)

    signal.signal(signal.SIGTERM, on_sigterm)
    tmp = Path(tempfile.mkdtemp(prefix="esx-bench-ota-"))
    procs: list[Proc] = []
    receiver: Receiver | None = None
    mno: Mno | None = None
    results: dict = {
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "started_at": utcnow().isoformat(timespec="seconds"),
        "esx": esx_version(),
    }
    t_all = time.monotonic()
    try:
        busy, _ = machine_busy_seconds()
        time.sleep(1.0)
        idle_load = machine_busy_seconds()[0] - busy
        results["busy_cpu_s_in_1s_before"] = round(idle_load, 2)
        log(f"work dir: {tmp}; machine busy before the run: {idle_load:.2f} CPU-s in 1 s"
            + (" (NOT quiet: the figures will be low)" if idle_load > 0.2 else ""))
        data_dir = tmp / "instance"
        port, smsc_port = free_port(), free_port()
        receiver = Receiver()
        receiver.start()
        mno_url = f"http://127.0.0.1:{receiver.port}/mno"

        # 1. instance, OTA settings, the MNO's endpoint
        t0 = time.monotonic()
        doc = json.loads(esx("init", "--data-dir", str(data_dir), "--demo", str(args.euiccs),
                             "--public-url", f"http://127.0.0.1:{port}"))
        config_path = data_dir / "esx.json"
        config = json.loads(config_path.read_text())
        config["ota"] = {**config.get("ota", {}), "smsc_host": "127.0.0.1", "smsc_port": smsc_port,
                         "poll_interval": args.poll_interval, "notification_retry": args.notification_retry,
                         "por_timeout": args.por_timeout}
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        esx("entity", "add", "--data-dir", str(data_dir), "--role", "mno", "--oid", MNO_OID, "--name", "Demo MNO",
            "--endpoint", mno_url)
        db_url = config["database_url"]
        results["init_s"] = time.monotonic() - t0
        results["ota_config"] = config["ota"]
        log(f"esx init --demo {args.euiccs}: {results['init_s']:.1f} s; ota settings {config['ota']}; "
            f"demo MNO endpoint {mno_url}")

        # 2. processes
        pdu_log = tmp / "pdu.jsonl"
        smsc = Proc("esx smsc", [*ESX, "smsc", "--data-dir", str(data_dir),
                                 *([] if args.no_pdu_log else ["--pdu-log", str(pdu_log)])], tmp / "smsc.log")
        procs.append(smsc)
        smsc.wait_for_log("loopback SMSC on")
        serve = Proc("esx serve", [*ESX, "serve", "--data-dir", str(data_dir), "--bind", f"127.0.0.1:{port}",
                                   "--role", "smsr", "--workers", str(args.http_workers), "--no-background"],
                     tmp / "serve.log")
        procs.append(serve)
        es4_url = f"http://127.0.0.1:{port}/smsr/es4"
        serve.wait_http(f"{es4_url}?wsdl")
        workers = []
        for i in range(args.workers_ota):
            if i == 0 and args.profile_worker:
                argv = [sys.executable, "-c", PROFILED_WORKER, str(tmp / "worker1.pstats"), str(data_dir),
                        args.profile_worker]
            else:
                argv = [*ESX, "worker", "--data-dir", str(data_dir)]
            w = Proc(f"esx worker {i + 1}", argv, tmp / f"worker{i + 1}.log")
            procs.append(w)
            workers.append(w)
        for w in workers:
            w.wait_for_log("SMPP bound to")
        log(f"started: esx smsc (SMPP 127.0.0.1:{smsc_port}), esx serve --role smsr --workers {args.http_workers} "
            f"(127.0.0.1:{port}), {args.workers_ota} esx worker(s){f' (worker 1 under cProfile, {args.profile_worker} time)' if args.profile_worker else ''}")

        # 3. rounds
        mno = Mno(es4_url, doc["smsr_id"], mno_url, args.connections, mno_url if args.reply_to else None)
        slot = {e["eid"]: [p["iccid"] for p in e["profiles"]] for e in doc["euiccs"]}
        second = [(eid, ps[1]) for eid, ps in slot.items()]
        first = [(eid, ps[0]) for eid, ps in slot.items()]

        def one_round(label: str) -> list[dict]:
            a = run_phase(mno, receiver, second, args.phase_timeout, f"{label} enable 2nd", db_url)
            b = run_phase(mno, receiver, first, args.phase_timeout, f"{label} enable 1st", db_url)
            for name, ph in (("enable 2nd", a), ("enable 1st", b)):
                log(f"  {label} {name}: {ph['operations']} ops in {ph['wall_s']:.2f} s = "
                    f"{ph['operations'] / ph['wall_s']:.1f} ops/s, latency p50 {pct(ph['latency_ms'], 50):.0f} ms, "
                    f"max {max(ph['latency_ms']):.0f} ms")
            return [a, b]

        t_warm = time.monotonic()
        for r in range(args.warmup_rounds):
            one_round(f"warm-up {r + 1}")
        results["warmup_s"] = time.monotonic() - t_warm
        import sqlalchemy as sa

        eng = sa.create_engine(db_url)
        with eng.connect() as c:
            measured_from = c.execute(sa.text("SELECT coalesce(max(id), 0) FROM operation")).scalar_one()
        eng.dispose()
        with receiver.cond:
            notes_before = sum(receiver.notifications.values())

        cpu0 = {p.name: p.cpu_seconds() for p in procs}
        busy0, steal0 = machine_busy_seconds()
        self0 = self_cpu_seconds()
        t_meas = time.monotonic()
        phases: list[dict] = []
        for r in range(args.rounds):
            phases += one_round(f"round {r + 1}")
        elapsed = time.monotonic() - t_meas
        cpu1 = {p.name: p.cpu_seconds() for p in procs}
        busy1, steal1 = machine_busy_seconds()
        self1 = self_cpu_seconds()

        ops = sum(p["operations"] for p in phases)
        wall = sum(p["wall_s"] for p in phases)
        lat = [x for p in phases for x in p["latency_ms"]]
        http = [x for p in phases for x in p["http_ms"]]
        expected_notes = notes_before + 2 * ops
        got_notes = receiver.wait_notifications(expected_notes, args.notification_retry + 10)
        cpu = {name: cpu1[name] - cpu0[name] for name in cpu0}
        results["measured"] = {
            "operations": ops,
            "rounds": args.rounds,
            "phase_wall_s": [round(p["wall_s"], 3) for p in phases],
            "wall_s": wall,
            "elapsed_s": elapsed,
            "ops_per_s": ops / wall,
            "ops_per_s_elapsed": ops / elapsed,
            "phase_ops_per_s_min": min(p["operations"] / p["wall_s"] for p in phases),
            "phase_ops_per_s_max": max(p["operations"] / p["wall_s"] for p in phases),
            "latency_ms": {"p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99), "max": max(lat),
                           "min": min(lat)},
            "http_202_ms": {"p50": pct(http, 50), "p99": pct(http, 99), "max": max(http)},
            "send_all_s_p50": pct([p["send_s"] for p in phases], 50),
            "cpu_s": {**{k: round(v, 2) for k, v in cpu.items()}, "bench (sender + receiver)": round(self1 - self0, 2)},
            "machine_busy_cpu_s": round(busy1 - busy0, 2),
            "other_cpu_s": round(busy1 - busy0 - sum(cpu.values()) - (self1 - self0), 2),
            "steal_cpu_s": round(steal1 - steal0, 2),
            "cpu_s_per_op": {k: round(v / ops * 1000, 2) for k, v in cpu.items()},
        }
        with receiver.cond:
            results["receiver"] = {
                "callbacks": len(receiver.callbacks),
                "callback_statuses": {f"{c['name']} {c['status']}": sum(
                    1 for d in receiver.callbacks.values() if (d["name"], d["status"]) == (c["name"], c["status"]))
                    for c in receiver.callbacks.values()},
                "duplicate_callbacks": receiver.duplicate_callbacks,
                "notifications": dict(receiver.notifications),
                "notifications_expected_total": expected_notes,
                "notifications_received_total": got_notes,
                "duplicate_notifications": sum(n - 1 for n in receiver.notification_keys.values() if n > 1),
                "unexpected": receiver.unexpected[:10],
                "posts": receiver.posts,
            }
        m = results["measured"]
        log(f"measured: {ops} operations in {wall:.2f} s of phases ({elapsed:.2f} s elapsed): "
            f"{m['ops_per_s']:.1f} ops/s; latency p50 {m['latency_ms']['p50']:.0f} ms, p99 {m['latency_ms']['p99']:.0f} ms")

        # 5. afterwards
        for w in workers:  # stop the workers first so the profile is written and the tables are quiet
            w.stop()
        results["db"] = db_report(db_url, measured_from)
        results["pdus"] = pdu_report(pdu_log)
        results["cards"] = cards_report(data_dir, db_url)
        logs = {p.name: p.tail(5_000_000) for p in procs}
        results["log_counts"] = {
            name: {k: text.count(k) for k in ("Traceback", "worker step failed", "database is locked", "SMS dropped",
                                               "SMS not submitted", "delivering again", "WARNING", "ERROR")
                   if text.count(k)}
            for name, text in logs.items()
        }
        if args.profile_worker and (tmp / "worker1.pstats").is_file():
            results["worker1_profile"] = profile_summary(tmp / "worker1.pstats")
        results["total_s"] = time.monotonic() - t_all
        summary(results)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
            log(f"results written to {args.json}")
        else:
            log("RESULTS_JSON " + json.dumps(results, default=str))
        problems = results["cards"]["mismatches"] or results["receiver"]["unexpected"]
        return 1 if problems else 0
    except BaseException:
        for p in procs:
            log(f"--- {p.name} log tail ---\n{p.tail(1500)}")
        raise
    finally:
        if mno is not None:
            mno.close()
        for p in reversed(procs):
            p.stop()
        if receiver is not None:
            receiver.stop()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def summary(r: dict) -> None:
    m, a = r["measured"], r["args"]
    log("")
    log("=" * 100)
    log(f"ES4-EnableProfile round trips through the loopback SMSC: {a['euiccs']} eUICCs, {a['workers_ota']} esx worker(s), "
        f"{a['http_workers']} gunicorn workers, poll {a['poll_interval']:g} s, {m['rounds']} rounds")
    log(f"operations/s {m['ops_per_s']:.1f} (phases {m['phase_ops_per_s_min']:.1f}..{m['phase_ops_per_s_max']:.1f}); "
        f"{m['operations']} ops, {m['wall_s']:.2f} s")
    lm = m["latency_ms"]
    log(f"request -> callback: p50 {lm['p50']:.0f} ms, p90 {lm['p90']:.0f} ms, p99 {lm['p99']:.0f} ms, max {lm['max']:.0f} ms; "
        f"HTTP 202 p50 {m['http_202_ms']['p50']:.1f} ms")
    log(f"CPU-s over {m['elapsed_s']:.1f} s ({m['elapsed_s'] * r['machine']['nproc']:.0f} CPU-s available): "
        + ", ".join(f"{k} {v}" for k, v in m["cpu_s"].items())
        + f"; machine busy {m['machine_busy_cpu_s']}, of which not ours {m['other_cpu_s']}, steal {m['steal_cpu_s']}")
    if m["other_cpu_s"] > 0.1 * m["elapsed_s"] * r["machine"]["nproc"]:
        log(f"WARNING: {m['other_cpu_s']} CPU-s went to processes this benchmark did not start: the machine was not quiet")
    log("CPU ms per operation: " + ", ".join(f"{k} {v}" for k, v in m["cpu_s_per_op"].items()))
    rc = r["receiver"]
    log(f"receiver: {rc['callbacks']} callbacks ({rc['duplicate_callbacks']} duplicates), notifications {rc['notifications']} "
        f"({rc['notifications_received_total']}/{rc['notifications_expected_total']} expected, "
        f"{rc['duplicate_notifications']} duplicates)")
    d = r["db"]
    log(f"operations: {d['operations_by_result']}; attempts {d['operations_attempts']}; automatic {d['automatic_operations']}")
    log(f"outbox: {d['outbox']}{'; errors ' + str(d['outbox_errors']) if d['outbox_errors'] else ''}")
    log(f"sms_inbox outcomes: {d['sms_inbox_outcomes']}")
    log(f"SMPP PDUs at the SMSC: {r['pdus']}")
    log("stages (measured ES4 operations, from the database timestamps), p50 / mean / p90 ms:")
    for k, v in d["stages_ms"].items():
        if v["n"]:
            log(f"  {k:<40} {v['p50']:8.1f} {v['mean']:8.1f} {v['p90']:8.1f}   (n={v['n']})")
    c = r["cards"]
    log(f"card/EIS mismatches: {c['mismatches'] or 'none'}; cards by number of unconfirmed notifications at the end: "
        f"{c['cards_by_unconfirmed_notifications']}")
    log(f"log counts: {r['log_counts']}")
    if "worker1_profile" in r:
        p = r["worker1_profile"]
        log(f"worker 1 cProfile ({r['args']['profile_worker']} time, all threads): {p['total_self_s']:.1f} s; self time by group:")
        for k, v in p["self_time_by_group"].items():
            if v >= 0.005 * p["total_self_s"]:
                log(f"  {k:<50} {v:8.2f} s {v / p['total_self_s'] * 100:5.1f} %")
        log("  cumulative time of key functions:")
        for k, v in p["key_functions_cumulative"].items():
            log(f"    {k:<52} {v['cum_s']:8.2f} s {v['calls']:>8} calls")
        log("  top self time:")
        for row in p["top_self"][:15]:
            log(f"  {row['self_s']:7.3f} s self {row['cum_s']:7.3f} s cum {row['calls']:>8} calls  {row['function']}")
    log(f"total run time {r['total_s']:.0f} s")
    log("=" * 100)


if __name__ == "__main__":
    sys.exit(main())
