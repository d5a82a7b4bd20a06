"""Run the WSGI application under gunicorn, with the serving model of ``esx.serving``.

The default worker is ``esx.serving.worker.BufferedRequestWorker``: an event loop per process
reads every request whole, under deadlines and size caps, and hands it to a few application
threads, so slow or idle clients cannot starve the others (README "Serving model"). The
``serving.worker`` setting ``"sync"`` brings back gunicorn's sync workers (python-stack.md section
6), which wait on every client without a deadline: only for a deployment behind a proxy that
buffers whole requests and bounds client time itself.

In ``mtls`` mode gunicorn's settings carry the dev PKI's server certificate and require a client
certificate signed by the TLS CA; the worker does the handshake and ``esx.server.peer_certificate``
reads the client certificate per request.
"""
from __future__ import annotations

import gc
import ssl

from gunicorn.app.base import BaseApplication

from esx.server import Config
from esx.serving import Limits

WORKER_CLASSES = {"esx": "esx.serving.worker.BufferedRequestWorker", "sync": "sync"}


class EsxGunicorn(BaseApplication):
    def __init__(self, config: Config, role: str, options: dict) -> None:
        self.esx_config = config
        self.role = role
        self.options = options
        self.serving_limits = serving_limits(config, role)  # read by the worker (pre-fork, inherited)
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self):
        # Called in each worker after the fork: every worker has its own engine and clients.
        from esx.server import make_wsgi

        app = make_wsgi(self.esx_config, self.role)
        # What the application built (schemas, WSDL maps, the ORM's mappers) lives as long as the worker: out of
        # the cyclic collector's sight, so a collection scans only what requests leave behind.
        gc.freeze()
        return app


def serving_limits(config: Config | None = None, role: str = "smsr") -> Limits:
    """The serving limits of an instance serving ``role``; without an instance, the defaults
    (``gunicorn -k esx.serving.worker.BufferedRequestWorker`` on another WSGI application, as bench/
    does with its echo)."""
    if config is None:
        config = Config(data_dir="", database_url="", public_url="", smsr_oid="", smdp_oid="")
    s = config.serving_setting
    return Limits(threads=app_threads(s("threads"), role), header_timeout=float(s("header_timeout")),
                  body_timeout=float(s("body_timeout")), keepalive_timeout=float(s("keepalive_timeout")),
                  write_timeout=float(s("write_timeout")), max_header_bytes=int(s("max_header_bytes")),
                  max_body_bytes=config.max_body_bytes, max_connections=int(s("max_connections")),
                  max_connections_per_client=int(s("max_connections_per_client")))


def access_log(setting) -> str | None:
    """gunicorn's ``accesslog`` for the ``serving.access_log`` setting: None (no line at all) for "off"."""
    return None if setting in (None, False, "", "off") else str(setting)


def app_threads(setting, role: str) -> int:
    """Application threads per process. "auto": one for the SM-SR alone, four when the process
    serves the SM-DP.

    The SM-SR's requests are CPU and SQLite work. SQLite calls release the GIL, so with several
    threads every statement becomes a thread switch: measured with 4 threads, 16-18 voluntary
    context switches per GetEIS against 6 with one, and next to the sync workers 23-53 % more CPU
    per request and 2.5-3.4 times the p99 (BENCHMARKS.md, "serving model"). The SM-DP's ES2 requests wait on the SM-SR over HTTP,
    which may be this very server (``--role all``) on a kept-alive connection that belongs to the
    waiting process: with one thread that request would queue behind its own caller until the
    relay's timeout; four make that need four relays at once in one process.
    """
    if setting == "auto":
        return 1 if role == "smsr" else 4
    return int(setting)


def run(config: Config, *, role: str, bind: str, workers: int) -> None:
    model = config.serving_setting("worker")
    if model not in WORKER_CLASSES:
        raise ValueError(f"serving.worker must be one of {sorted(WORKER_CLASSES)}, not {model!r}")
    options = {
        "bind": bind,
        "workers": workers,
        "worker_class": WORKER_CLASSES[model],
        "timeout": 120,
        "graceful_timeout": 30,
        "accesslog": access_log(config.serving_setting("access_log")),
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": f"esx-{role}",
    }
    if config.auth == "mtls":
        from keys.pki import DevPki

        pki = DevPki.load(config.pki_dir)
        options.update(
            certfile=str(pki.tls_server_cert_path),
            keyfile=str(pki.tls_server_key_path),
            ca_certs=str(pki.tls_ca_path),
            cert_reqs=ssl.CERT_REQUIRED,
        )
    EsxGunicorn(config, role, options).run()
