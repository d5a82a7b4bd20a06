"""End-to-end fixtures: a real instance (``esx init``) served by real processes (``esx serve``).

The SM-SR and the SM-DP run as two separate gunicorn processes on two ports, as two companies
would; tests call them over HTTP through zeep clients built from our WSDL and from the official
GSMA WSDL, and validate every message esx sends against the official XSD.

Every test here runs once per database backend: SQLite, and PostgreSQL when reachable
(``ESX_TEST_DATABASE_URL``, default ``postgresql+psycopg2://postgres@127.0.0.1:5432/test``);
without PostgreSQL those runs skip with the reason.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from lxml import etree

from esx.binding.ns import GSMA, SOAP12, WSA
from tests import unavailable

REPO = Path(__file__).resolve().parents[2]
OFFICIAL = REPO.parent / "shared" / "gsma-sgp02-wsdl"
PG_DEFAULT = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postgres_database():
    """Create a throw-away database on the PostgreSQL server; yield its URL; drop it."""
    base = os.environ.get("ESX_TEST_DATABASE_URL", PG_DEFAULT)
    try:
        engine = sa.create_engine(base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with engine.connect() as c:
            c.execute(sa.text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        unavailable(f"PostgreSQL not reachable at {base}: {exc.__class__.__name__}")
    name = f"esx_test_{uuid.uuid4().hex[:12]}"
    with engine.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with engine.connect() as c:
            c.execute(sa.text(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        engine.dispose()


@pytest.fixture(params=["official", "ours"])
def kind(request):
    """Which client an operator generated: from the official GSMA WSDL, or from the one esx serves."""
    return request.param


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request, tmp_path_factory):
    if request.param == "sqlite":
        yield None  # the embedded default: SQLite in the data directory
    else:
        yield from _postgres_database()


@pytest.fixture(scope="module")
def own_database(database_url):
    """A database of its own on the backend under test, for a module that makes its own instance: the session's
    PostgreSQL database belongs to the session's instance, which another ``esx init`` would register the same demo
    eUICCs into under another PKI."""
    if database_url is None:
        yield None  # SQLite: in the instance's own data directory
    else:
        yield from _postgres_database()


@dataclass
class Instance:
    data_dir: Path
    doc: dict
    smsr_url: str
    smdp_url: str
    database_url: str
    receiver: Any = None  # tests.e2e.receiver.Receiver
    procs: dict | None = None

    @property
    def mno(self) -> str:
        return self.doc["mno_id"]

    @property
    def eids(self) -> list[str]:
        return [e["eid"] for e in self.doc["euiccs"]]

    def esx(self, *args: str) -> subprocess.CompletedProcess:
        run = subprocess.run([sys.executable, "-m", "esx.cli", *args], capture_output=True, text=True)
        assert run.returncode == 0, f"esx {' '.join(args)} exited {run.returncode}: {run.stderr[-2000:]}"
        return run


def _wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"esx serve exited: {log.read_text()[-2000:]}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"esx serve did not come up: {log.read_text()[-2000:]}")


def serve(data_dir: Path, role: str, port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "esx.cli", "serve", "--data-dir", str(data_dir), "--bind", f"127.0.0.1:{port}",
         "--role", role, "--workers", "2", "--no-background"],
        stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True,  # its own group: killable whole
    )
    path = "/smsr/es4" if role == "smsr" else "/smdp/es2"
    _wait_ready(f"http://127.0.0.1:{port}{path}?wsdl", proc, log)
    return proc


# Short timings so that retries and expiry show within a test's patience.
TEST_OTA = {"por_timeout": 2.0, "poll_interval": 0.05, "notification_retry": 1.0, "default_validity": 120.0,
            "lease": 3.0}


TEST_SMDP = {"callback_grace": 10.0, "retry": 1.0}


def background(data_dir: Path, command: str, log: Path, *extra: str) -> subprocess.Popen:
    """``esx smsc`` or ``esx worker`` as its own process."""
    return subprocess.Popen([sys.executable, "-m", "esx.cli", command, "--data-dir", str(data_dir), *extra],
                            stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True)


def start_instance(data_dir: Path, database_url, receiver, *, demo: int = 2, workers: int = 1,
                   ota: dict | None = None) -> Instance:
    """Init an instance and run it as an operator would: SM-SR, SM-DP, loopback SMSC and worker(s). ``ota``: OTA
    settings instead of :data:`TEST_OTA`'s."""
    import json

    from esx.demo import init_instance
    from esx.server import Config

    smsr_port, smdp_port, smsc_port = free_port(), free_port(), free_port()
    doc = init_instance(data_dir, demo=demo, database_url=database_url, public_url=f"http://127.0.0.1:{smsr_port}",
                        smdp_url=f"http://127.0.0.1:{smdp_port}")
    config_file = data_dir / "esx.json"
    config = json.loads(config_file.read_text())
    config["ota"] = {**TEST_OTA, **(ota or {}), "smsc_port": smsc_port}
    config["smdp"] = dict(TEST_SMDP)
    config_file.write_text(json.dumps(config))
    inst = Instance(data_dir, doc, f"http://127.0.0.1:{smsr_port}", f"http://127.0.0.1:{smdp_port}",
                    Config.load(data_dir).database_url, receiver, {})
    # The SM-DP is its own process on its own port: the SM-SR reaches its ES3 there.
    inst.esx("entity", "add", "--data-dir", str(data_dir), "--role", "smdp", "--oid", doc["smdp_id"],
             "--name", "esx SM-DP", "--endpoint", f"{inst.smdp_url}/smdp/es3")
    # The demo MNO listens for callbacks and notifications on the test's receiver.
    inst.esx("entity", "add", "--data-dir", str(data_dir), "--role", "mno", "--oid", doc["mno_id"],
             "--name", "Demo MNO", "--endpoint", f"{receiver.url}/mno")
    inst.procs["smsc"] = background(data_dir, "smsc", data_dir / "smsc.log", "--pdu-log", str(data_dir / "pdu.log"))
    for i in range(workers):
        inst.procs[f"worker{i}"] = background(data_dir, "worker", data_dir / f"worker{i}.log")
    inst.procs["smdp-worker"] = background(data_dir, "worker", data_dir / "smdp-worker.log", "--role", "smdp")
    inst.procs["smsr"] = serve(data_dir, "smsr", smsr_port, data_dir / "smsr.log")
    inst.procs["smdp"] = serve(data_dir, "smdp", smdp_port, data_dir / "smdp.log")
    return inst


def stop_instance(inst: Instance) -> None:
    for p in inst.procs.values():
        if p.poll() is None:
            p.terminate()
    for p in inst.procs.values():
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()


@pytest.fixture(scope="session")
def receiver():
    from .receiver import Receiver

    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="session")
def instance(database_url, receiver, tmp_path_factory) -> Instance:
    inst = start_instance(tmp_path_factory.mktemp("esx"), database_url, receiver)
    yield inst
    stop_instance(inst)


# -- the official GSMA schema as an oracle --------------------------------------------------------

_OFFICIAL_SCHEMAS: dict[str, etree.XMLSchema] = {}


def official_schema(interface: str) -> etree.XMLSchema:
    """The official XSD of one interface (ES1..ES4), compiled through a small wrapper schema."""
    if not OFFICIAL.is_dir():
        unavailable(f"official GSMA WSDL set not found at {OFFICIAL}")
    if interface not in _OFFICIAL_SCHEMAS:
        xsd = (OFFICIAL / "xsd" / f"euicc.request.{interface}.xsd").as_uri()
        wrapper = (
            f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="{GSMA}" '
            f'elementFormDefault="qualified"><xs:include schemaLocation="{xsd}"/></xs:schema>'
        )
        _OFFICIAL_SCHEMAS[interface] = etree.XMLSchema(etree.fromstring(wrapper.encode(), base_url=(OFFICIAL / "xsd" / "esx-wrapper.xsd").as_uri()))
    return _OFFICIAL_SCHEMAS[interface]


@dataclass
class SoapReply:
    http_status: int
    envelope: etree._Element
    body: etree._Element  # the body element (a ...Response or a Fault)

    def text(self, path: str) -> str | None:
        return self.body.findtext(path, namespaces={"rps": GSMA})

    @property
    def status(self) -> str | None:
        return self.text("rps:FunctionExecutionStatus/rps:Status")

    @property
    def code(self) -> tuple[str | None, str | None]:
        return (self.text("rps:FunctionExecutionStatus/rps:StatusCodeData/rps:Subject"),
                self.text("rps:FunctionExecutionStatus/rps:StatusCodeData/rps:Reason"))

    @property
    def message(self) -> str:
        return self.text("rps:FunctionExecutionStatus/rps:StatusCodeData/rps:Message") or ""

    def header(self, local: str) -> str | None:
        el = self.envelope.find(f"{{{SOAP12}}}Header/{{{WSA}}}{local}")
        if el is None:
            return None
        addr = el.find(f"{{{WSA}}}Address")
        return (addr.text if addr is not None else el.text or "").strip()


def parse_reply(response: requests.Response, interface: str | None) -> SoapReply:
    envelope = etree.fromstring(response.content)
    assert envelope.tag == f"{{{SOAP12}}}Envelope"
    body = next(c for c in envelope.find(f"{{{SOAP12}}}Body") if isinstance(c.tag, str))
    if interface and body.tag != f"{{{SOAP12}}}Fault":
        schema = official_schema(interface)
        assert schema.validate(body), f"{etree.QName(body).localname} invalid against the official XSD: {schema.error_log}"
    return SoapReply(response.status_code, envelope, body)
