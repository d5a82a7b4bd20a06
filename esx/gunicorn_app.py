"""Run the WSGI application under gunicorn (sync workers: the work is CPU-bound, python-stack.md 6).

In ``mtls`` mode gunicorn terminates TLS with the dev PKI's server certificate and requires a
client certificate signed by the TLS CA; ``esx.server.peer_certificate`` reads it per request.
"""
from __future__ import annotations

import ssl

from gunicorn.app.base import BaseApplication

from esx.server import Config


class EsxGunicorn(BaseApplication):
    def __init__(self, config: Config, role: str, options: dict) -> None:
        self.esx_config = config
        self.role = role
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self):
        # Called in each worker after the fork: every worker has its own engine and clients.
        from esx.server import make_wsgi

        return make_wsgi(self.esx_config, self.role)


def run(config: Config, *, role: str, bind: str, workers: int) -> None:
    options = {
        "bind": bind,
        "workers": workers,
        "worker_class": "sync",
        "timeout": 120,
        "accesslog": "-",
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
