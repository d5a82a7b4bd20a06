"""Wiring: configuration, the run-time objects handlers use, and the WSGI application.

Endpoints (issue 2): SM-SR at ``/smsr/es1``, ``/smsr/es3``, ``/smsr/es4``; SM-DP at ``/smdp/es2``
and ``/smdp/es3`` (where the SM-SR's ES3 callbacks and notifications arrive).

Caller identity: in ``mtls`` mode the TLS client certificate must be the one registered for an
entity (and ``wsa:From``'s EntityId, when given, must name that entity); in ``entity-id`` mode,
the embedded default that binds to loopback only, the ``wsa:From`` EntityId names the caller.
"""
from __future__ import annotations

import functools
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from esx.audit import append_call
from esx.binding import wsa
from esx.binding.client import GsmaClient
from esx.binding.soap import Inbound, Interface, Runtime, build_application
from esx.binding.xmlparse import DEFAULT_MAX_BODY_BYTES
from persistence.db import Database
from persistence.entities import Entity, EntityCache
from persistence.prepared import dbapi, one_connection
from sgp02 import codes
from sgp02.codes import FunctionFailed, Status

CONFIG_FILE = "esx.json"
INPROCESS = "http://esx.inprocess"  # the base URL of calls this instance serves to itself (EsxRuntime._inprocess_session)

# Config.ota keys. A real SMSC is a change of smsc_host/smsc_port/system_id/password and
# loopback_smsc=false; the loopback SMSC with the simulated eUICCs is the embedded default.
OTA_DEFAULTS = {
    "smsc_host": "127.0.0.1",
    "smsc_port": 2775,
    "system_id": "esx",
    # "password": no default here. `esx init` writes a random one; a configuration without one gets
    # DEV_SMPP_PASSWORD in the embedded default and is refused in production mode (Config.smpp_password).
    "source_addr": "882001",  # the SM-SR's SMS address
    "submit_rate": 0.0,  # submit_sm per second, 0 = unlimited
    "loopback_smsc": True,  # `esx serve` starts `esx smsc` (simulated network + eUICCs)
    "worker": True,  # `esx serve` starts one `esx worker`
    "por_timeout": 30.0,  # seconds before an unanswered command is sent again
    "default_validity": 3600.0,  # when a request carries no ValidityPeriod
    "poll_interval": 0.2,
    "lease": 30.0,  # a worker killed mid-step holds its rows this long before another takes them over
    "notification_retry": 10.0,  # the simulated eUICC re-sends an unconfirmed notification
}


DEV_SMPP_PASSWORD = "esx"


class ConfigError(ValueError):
    """The configuration cannot be used as it is; the text says what to change."""


# Config.smdp keys: the SM-DP's downloads (smdp_core.download.Settings).
SMDP_DEFAULTS = {
    "segment_size": 512,  # plaintext bytes of the profile package per SCP03t '86' segment
    "segments_per_send": 4,  # '86' segments per ES3-SendData
    "default_validity": 3600.0,  # when an ES2 request carries no ValidityPeriod; also the cleanup's
    "callback_grace": 120.0,  # how long past the expiry an ES3 callback is still waited for
    "retry": 5.0,  # SM-SR not reachable: try again after
}


# Config.serving keys: how `esx serve` bounds slow and idle clients (esx.serving; README "Serving model").
SERVING_DEFAULTS = {
    "worker": "esx",  # "esx": esx.serving's worker; "sync": gunicorn sync workers, only behind a buffering proxy
    "threads": "auto",  # application threads per worker process: "auto" = 1 for --role smsr, 4 otherwise
    "header_timeout": 10.0,  # seconds from accept (or a kept-alive request's first byte) to the end of the head
    "body_timeout": 30.0,  # seconds from the end of the head to the end of the body
    "keepalive_timeout": 15.0,  # an idle kept-alive connection is closed after this; 0 = close after each response
    "write_timeout": 30.0,  # seconds to write one response
    "max_header_bytes": 32768,  # request line + headers; more is 431
    "max_connections": 256,  # per worker process; above it the worker stops accepting
    "max_connections_per_client": 32,  # per worker process and client IP address; the excess is closed at once
    # gunicorn's access log: "off" (every served call is a call_audit row already), "-" (stdout) or a file
    # path. One line per request cost ~5 % of a GetEIS (BENCHMARKS.md, GetEIS third round).
    "access_log": "off",
}


@dataclass
class Config:
    data_dir: str
    database_url: str
    public_url: str  # how peers reach this instance, e.g. http://127.0.0.1:8080
    smsr_oid: str
    smdp_oid: str
    smsr_name: str = "esx SM-SR"
    smdp_name: str = "esx SM-DP"
    auth: str = "entity-id"  # "entity-id" (loopback embedded default) | "mtls"
    # Production mode (mtls) refuses the development PKI and publicly known card keys unless this is true
    # (`esx serve --allow-test-credentials` sets it for one run; keys.test_credentials).
    allow_test_credentials: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    extra: dict = field(default_factory=dict)
    # ES5 over SMS and the asynchronous machinery; see OTA_DEFAULTS for the keys.
    ota: dict = field(default_factory=dict)
    # The SM-DP's downloads; see SMDP_DEFAULTS.
    smdp: dict = field(default_factory=dict)
    # How `esx serve` holds connections; see SERVING_DEFAULTS.
    serving: dict = field(default_factory=dict)
    # Where peers reach a role served on its own (``esx serve --role smdp`` on another port or host);
    # a role not named here is at public_url.
    role_urls: dict = field(default_factory=dict)

    def url_for(self, role: str) -> str:
        return self.role_urls.get(role, self.public_url)

    def smdp_setting(self, key: str):
        return self.smdp.get(key, SMDP_DEFAULTS[key])

    def download_settings(self):
        from smdp_core.download import Settings

        return Settings(segment_size=int(self.smdp_setting("segment_size")),
                        segments_per_send=int(self.smdp_setting("segments_per_send")),
                        default_validity=float(self.smdp_setting("default_validity")),
                        callback_grace=float(self.smdp_setting("callback_grace")),
                        retry=float(self.smdp_setting("retry")),
                        lease=float(self.ota_setting("lease")))

    def serving_setting(self, key: str):
        return self.serving.get(key, SERVING_DEFAULTS[key])

    def ota_setting(self, key: str):
        return self.ota.get(key, OTA_DEFAULTS[key])

    def timing(self):
        from smsr_core.platform import Timing

        return Timing(por_timeout=float(self.ota_setting("por_timeout")),
                      default_validity=float(self.ota_setting("default_validity")),
                      lease=float(self.ota_setting("lease")))

    @property
    def smpp_password(self) -> str:
        """The SMPP bind password (ota.password). Production mode (mtls) has no built-in default."""
        if "password" in self.ota:
            return str(self.ota["password"])
        if self.auth == "mtls":
            raise ConfigError(f"production mode (--auth mtls) has no built-in SMPP password: set \"password\" in the "
                              f"\"ota\" object of {Path(self.data_dir) / CONFIG_FILE} (the SMSC's bind password)")
        return DEV_SMPP_PASSWORD

    def smpp(self):
        from esx.smpp import SmppConfig

        return SmppConfig(host=self.ota_setting("smsc_host"), port=int(self.ota_setting("smsc_port")),
                          system_id=self.ota_setting("system_id"), password=self.smpp_password,
                          source_addr=self.ota_setting("source_addr"),
                          submit_rate=float(self.ota_setting("submit_rate")))

    @property
    def pki_dir(self) -> Path:
        return Path(self.data_dir) / "pki"

    def save(self) -> None:
        write_private(Path(self.data_dir) / CONFIG_FILE, (json.dumps(asdict(self), indent=2) + "\n").encode())

    def secure_files(self) -> None:
        """The data directory 0700; the configuration, the secrets key and the embedded database (with its -wal and
        -shm files) 0600. SQLite creates -wal/-shm with the database file's mode, so a 0600 database keeps them so."""
        data_dir = Path(self.data_dir)
        os.chmod(data_dir, 0o700)
        from keys.secretbox import KEY_FILE

        for path in (data_dir / CONFIG_FILE, data_dir / KEY_FILE):
            if path.exists():
                os.chmod(path, 0o600)
        db_file = sqlite_file(self.database_url)
        if db_file is not None:
            if not db_file.exists():
                os.close(os.open(db_file, os.O_WRONLY | os.O_CREAT, 0o600))
            for path in (db_file, db_file.with_name(db_file.name + "-wal"), db_file.with_name(db_file.name + "-shm")):
                if path.exists():
                    os.chmod(path, 0o600)

    @classmethod
    def load(cls, data_dir: str | Path) -> "Config":
        path = Path(data_dir) / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run 'esx init --data-dir {data_dir}' first")
        return cls(**json.loads(path.read_text()))


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` readable by its owner only (0600), whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for another database or an in-memory one)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def production_problems(config: Config) -> list[str]:
    """Why production mode (mtls) may not start on this configuration, unless test credentials are allowed."""
    from keys.test_credentials import is_development_certificate

    if config.auth != "mtls":
        return []
    problems = []
    try:
        config.smpp_password  # noqa: B018 - raises when there is none
    except ConfigError as exc:
        problems.append(str(exc))
    if not config.allow_test_credentials:
        for name, what in (("ci.pem", "the CI certificate"), ("tls-server.pem", "the TLS server certificate"),
                           ("tls-ca.pem", "the TLS CA")):
            path = config.pki_dir / name
            if path.exists() and is_development_certificate(path.read_bytes()):
                problems.append(f"{what} ({path}) is from the development PKI esx generated; put your own there, or "
                                "pass --allow-test-credentials for a lab")
    return problems


class EsxRuntime(Runtime):
    """The run-time objects of one process: database, cores, peers, identity."""

    def __init__(self, config: Config, db: Database | None = None) -> None:
        from keys.pki import DevPki
        from keys.secretbox import SecretBox
        from smdp_core.relay import SmdpRelay
        from smsr_core.registry import EisRegistry

        self.config = config
        self.db = db or Database(config.database_url)
        self.pki = DevPki.load(config.pki_dir)
        self.box = SecretBox.from_data_dir(Path(config.data_dir))  # the instance's secrets key (keys/secretbox.py)
        self.registry = EisRegistry(self.db, config.smsr_oid, self.pki.ci_cert_pem, self.box,
                                    refuse_test_keys=config.auth == "mtls" and not config.allow_test_credentials)
        self.smdp = SmdpRelay(self._smsr_gateway)
        # Every entity this process looks up (callers, the SM-SR per ES3 call, the EUM per ECASD check), kept while the
        # registry's version has not moved (persistence.entities.EntityCache).
        self.entities = EntityCache(self.db.engine)
        self._platform = None
        self._handovers = None
        self._downloads = None
        self._gateways: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    @property
    def platform(self):
        """The SM-SR's asynchronous operations (smsr_core.platform), built on first use."""
        if self._platform is None:
            from esx.doorbell import SMSR_OPERATIONS, SMSR_OUTBOX, Doorbell
            from esx.outbox import OutboxSink
            from smsr_core.platform import Platform

            sink = OutboxSink(self.config.smsr_oid, Doorbell(Path(self.config.data_dir), SMSR_OUTBOX),
                              es7_address=f"{self.config.url_for('smsr')}/smsr/es7")
            platform = Platform(self.db, self.config.smsr_oid, sink, self.box, self.config.timing(),
                                doorbell=Doorbell(Path(self.config.data_dir), SMSR_OPERATIONS))
            platform.smsr_known = self._smsr_known
            # a FinaliseISDRhandover that ends moves its SM-SR change on (smsr_core.handover.Handovers.finalised)
            platform.finalised = lambda *args: self.handovers.finalised(*args)
            self._platform = platform
        return self._platform

    @property
    def handovers(self):
        """SM-SR changes, at the new SM-SR (smsr_core.handover), built on first use."""
        if self._handovers is None:
            from esx.doorbell import SMSR_OPERATIONS, Doorbell
            from smsr_core.handover import EckaAgreement, Handovers, SmsrIdentity

            identity = SmsrIdentity(oid=self.config.smsr_oid, key=self.pki.smsr_key, certificate=self.pki.smsr_gp_cert,
                                    ci_pem=self.pki.ci_cert_pem, sms_address=self.config.smpp().source_addr)
            self._handovers = Handovers(self.db, identity, self.box, self.platform.sink, self.platform, EckaAgreement(),
                                        smsr_known=self._smsr_known, eum_cert_for=self._eum_certificate,
                                        doorbell=Doorbell(Path(self.config.data_dir), SMSR_OPERATIONS))
        return self._handovers

    def _smsr_known(self, oid: str) -> bool:
        """Is ``oid`` a registered SM-SR (a peer an SM-SR change may name)?"""
        entity = self.entities.by_oid(oid) if oid else None
        return entity is not None and entity.role == "smsr"

    @property
    def downloads(self):
        """The SM-DP's asynchronous functions (smdp_core.download), built on first use."""
        if self._downloads is None:
            from esx.doorbell import SMDP_OUTBOX, SMDP_STEPS, Doorbell
            from esx.outbox import SmdpOutboxSink
            from smdp_core.download import Downloads, SmdpIdentity
            from smdp_core.warehouse import Warehouse

            box = self.box
            identity = SmdpIdentity(oid=self.config.smdp_oid, key=self.pki.smdp_key, certificate=self.pki.smdp_gp_cert,
                                    ci_pem=self.pki.ci_cert_pem)
            self._downloads = Downloads(
                self.db, identity, Warehouse(box), box,
                SmdpOutboxSink(self.config.smdp_oid, Doorbell(Path(self.config.data_dir), SMDP_OUTBOX)), self._smsr_gateway,
                self._eum_certificate, self.config.download_settings(),
                new_message_id=lambda: wsa.new_message_id(self.config.smdp_oid),
                doorbell=Doorbell(Path(self.config.data_dir), SMDP_STEPS))
        return self._downloads

    def _eum_certificate(self, eum_id: str) -> bytes | None:
        """The EUM's certificate as registered with this instance (ES1 and the SM-DP's ECASD checks)."""
        entity = self.entities.by_oid(eum_id) if eum_id else None
        if entity is None or entity.role != "eum" or not entity.signing_cert_pem:
            return None
        return entity.signing_cert_pem.encode()

    # -- identity --------------------------------------------------------------------------------

    def own_oid(self, role: str) -> str:
        return self.config.smsr_oid if role == "smsr" else self.config.smdp_oid

    def own_address(self, role: str) -> str:
        name = self.config.smsr_name if role == "smsr" else self.config.smdp_name
        return _entity_address(f"{self.config.url_for(role)}/{role}", self.own_oid(role), name)

    def caller_for(self, inbound: Inbound) -> Entity:
        from esx.binding.http import LOCAL_CALLER

        claimed = inbound.addressing.from_entity_id
        local = inbound.environ.get(LOCAL_CALLER)
        # Looked up through the process's EntityCache (persistence.entities: a found caller is handed out again while
        # the registry's version has not moved; any change is seen at the next call): this runs for every served call.
        if local is not None:  # a call this instance makes to itself, in process (no socket, no certificate)
            entity = self.entities.by_oid(local)
            if entity is None or (claimed and claimed != local):
                raise FunctionFailed(codes.CALLER_UNKNOWN, f"in-process caller {local} is not {claimed}")
        elif self.config.auth == "mtls":
            der = peer_certificate(inbound.environ)
            entity = self.entities.by_certificate(der) if der else None
            if entity is None:
                raise FunctionFailed(codes.CALLER_UNKNOWN, "the TLS client certificate is not registered")
            if claimed and claimed != entity.oid:
                raise FunctionFailed(codes.CALLER_UNKNOWN,
                                     f"wsa:From names {claimed}, the client certificate is {entity.oid}")
        else:
            entity = self.entities.by_oid(claimed) if claimed else None
            if entity is None:
                raise FunctionFailed(codes.CALLER_UNKNOWN,
                                     f"unknown requester {claimed!r} (wsa:From EntityId)" if claimed
                                     else "wsa:From carries no EntityId", subject_identifier=claimed)
        return entity

    def request_scope(self):
        """One pooled database connection for the call's caller lookup, handler reads and audit row
        (persistence.prepared.one_connection)."""
        return one_connection()

    def record_call(self, inbound: Inbound, status: Status, failure: FunctionFailed | None) -> None:
        with dbapi(self.db.engine, commit=True) as c:
            append_call(
                c,
                function=inbound.operation.name,
                requester_id=inbound.caller.oid,
                message_id=inbound.addressing.message_id,
                function_call_id=inbound.function_call_id,
                eid=(inbound.text("Eid") or _nested_eid(inbound)),
                iccid=inbound.text("Iccid"),
                status=status.value,
                subject=failure.code.subject if failure else None,
                reason=failure.code.reason if failure else None,
                message=failure.message if failure else None,
            )

    # -- peers -----------------------------------------------------------------------------------

    @property
    def smsr_colocated(self) -> bool:
        """The SM-DP runs with this instance's own SM-SR (the embedded default): it calls it in process.

        Over HTTP, an ES2 request relayed over ES3 would wait, on a server worker, for another worker of the same
        pool: with every worker doing that, none is left to answer (the co-located relay deadlock). An SM-DP served
        apart from its SM-SR (``esx init --smdp-url``) talks ES3 over HTTP, as to any other SM-SR."""
        return "smdp" not in self.config.role_urls

    def _smsr_gateway(self, smsr_id: str):
        from esx.es3.client import Es3SmsrGateway

        entity = self.entities.by_oid(smsr_id) if smsr_id else None
        if entity is None or entity.role != "smsr" or not entity.endpoint:
            return None
        endpoint = entity.endpoint
        local = smsr_id == self.config.smsr_oid and self.smsr_colocated
        key = (smsr_id, "in-process" if local else endpoint)
        with self._lock:
            gateway = self._gateways.get(key)
            if gateway is None:
                if local:
                    session, endpoint = self._inprocess_session("smdp", "smsr"), f"{INPROCESS}/smsr/es3"
                else:
                    session = self.client_session("smdp")
                client = GsmaClient("ES3SmSr.wsdl", endpoint, sender_oid=self.config.smdp_oid,
                                    sender_address=self.own_address("smdp"), receiver_oid=smsr_id, http=session)
                gateway = self._gateways[key] = Es3SmsrGateway(client, reply_to=f"{self.config.url_for('smdp')}/smdp/es3")
        return gateway

    def _inprocess_session(self, caller_role: str, served_role: str):
        """An HTTP client whose calls are served by this process's own ``served_role`` endpoints, as ``caller_role``."""
        from esx.binding.http import HttpClient

        http = HttpClient()
        http.mount(f"{INPROCESS}/", make_wsgi(self.config, served_role, self), local_caller=self.own_oid(caller_role))
        return http

    def client_session(self, role: str):
        """The HTTP client of what ``role`` sends (esx.binding.http): with ``auth: mtls``, our client certificate, and
        only our CA trusted."""
        from esx.binding.http import HttpClient

        if self.config.auth == "mtls":
            cert, key = (str(p) for p in self.pki.tls_client(self.own_oid(role)))
            return HttpClient(tls=(cert, key, str(self.pki.tls_ca_path)))
        return HttpClient()


_entity_address = functools.lru_cache(maxsize=64)(wsa.entity_address)  # every response's wsa:From (urlencode)


def _nested_eid(inbound: Inbound) -> str | None:
    from esx.binding.ns import GSMA

    el = inbound.body.find(f"{{{GSMA}}}Eis/{{{GSMA}}}EumSignedInfo/{{{GSMA}}}Eid")
    return el.text.strip().upper() if el is not None and el.text else None


def peer_certificate(environ: dict) -> bytes | None:
    """The DER client certificate of this request's TLS connection, if any (gunicorn)."""
    sock = environ.get("gunicorn.socket")
    getpeercert = getattr(sock, "getpeercert", None)
    if getpeercert is None:
        return None
    try:
        return getpeercert(binary_form=True)
    except Exception:
        return None


def interfaces(role: str) -> dict[str, Interface]:
    from esx.es1.service import INTERFACE as ES1
    from esx.es2.service import INTERFACE as ES2
    from esx.es3.service import INTERFACE as ES3_SMSR
    from esx.es3.service import SMDP_INTERFACE as ES3_SMDP
    from esx.es4.service import INTERFACE as ES4
    from esx.es7.service import INTERFACE as ES7

    routes: dict[str, Interface] = {}
    if role in ("smsr", "all"):
        routes.update({"/smsr/es1": ES1, "/smsr/es3": ES3_SMSR, "/smsr/es4": ES4, "/smsr/es7": ES7})
    if role in ("smdp", "all"):
        routes.update({"/smdp/es2": ES2, "/smdp/es3": ES3_SMDP})
    return routes


class Router:
    """Path -> SOAP application; anything else is a plain 404."""

    def __init__(self, apps: dict[str, Any]) -> None:
        self.apps = apps

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "").rstrip("/")
        app = self.apps.get(path)
        if app is None:
            body = b"esx: no SOAP endpoint here; endpoints: " + ", ".join(sorted(self.apps)).encode() + b"\n"
            start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
        return app(environ, start_response)


def make_wsgi(config: Config, role: str = "all", runtime: EsxRuntime | None = None) -> Router:
    runtime = runtime or EsxRuntime(config)
    return Router({
        path: build_application(interface, runtime, max_body=config.max_body_bytes)
        for path, interface in interfaces(role).items()
    })
