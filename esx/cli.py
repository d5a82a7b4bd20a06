"""The ``esx`` command (click): init, serve, entity add, eis show."""
from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path

import click


@click.group()
def main() -> None:
    """esx: GSMA SGP.02 SM-SR and SM-DP."""


@main.command()
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--demo", default=0, show_default=True, help="Number of demo eUICCs to register over ES1.")
@click.option("--database-url", default=None, help="SQLAlchemy URL; default: SQLite in the data directory.")
@click.option("--public-url", default="http://127.0.0.1:8080", show_default=True,
              help="How peers reach this instance (callback and endpoint addresses).")
@click.option("--auth", type=click.Choice(["entity-id", "mtls"]), default="entity-id", show_default=True)
def init(data_dir: Path, demo: int, database_url: str | None, public_url: str, auth: str) -> None:
    """Create an instance: database, dev PKI, entities, demo eUICCs. Prints one JSON document."""
    from esx.demo import init_instance

    doc = init_instance(data_dir, demo=demo, database_url=database_url, public_url=public_url, auth=auth)
    click.echo(json.dumps(doc, indent=2))


def _is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@main.command()
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--bind", default="127.0.0.1:8080", show_default=True, help="HOST:PORT")
@click.option("--role", type=click.Choice(["smsr", "smdp", "all"]), default="all", show_default=True)
@click.option("--workers", default=2, show_default=True)
def serve(data_dir: Path, bind: str, role: str, workers: int) -> None:
    """Serve the SOAP endpoints with gunicorn (TLS with client certificates in mtls mode)."""
    from esx.server import Config

    config = Config.load(data_dir)
    host = bind.rsplit(":", 1)[0]
    if config.auth != "mtls" and not _is_loopback(host):
        raise click.UsageError("the entity-id identity mode is for loopback only: bind to 127.0.0.1, or use --auth mtls")
    from esx.gunicorn_app import run

    run(config, role=role, bind=bind, workers=workers)


@main.group()
def entity() -> None:
    """Manage the parties esx talks to."""


@entity.command("add")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--role", required=True, type=click.Choice(["mno", "smdp", "smsr", "eum", "owner"]))
@click.option("--oid", required=True)
@click.option("--name", required=True)
@click.option("--endpoint", default=None, help="URL for callbacks and notifications (and, for an SM-SR, its ES3).")
@click.option("--cert", "cert", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="PEM TLS client certificate that identifies the entity.")
@click.option("--signing-cert", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="PEM EUM certificate that signs EIS and ECASD certificates (EUMs).")
def entity_add(data_dir: Path, role: str, oid: str, name: str, endpoint: str | None, cert: Path | None,
               signing_cert: Path | None) -> None:
    """Create or update one entity."""
    import re

    from esx.db import Database
    from esx.entities import upsert_entity
    from esx.server import Config

    if not re.fullmatch(r"(\d+\.)*\d+", oid):
        raise click.BadParameter(f"{oid!r} is not an OID", param_hint="--oid")
    config = Config.load(data_dir)
    db = Database(config.database_url)
    try:
        with db.session() as s:
            e = upsert_entity(s, oid=oid, role=role, name=name, endpoint=endpoint,
                              cert_pem=cert.read_bytes() if cert else None,
                              signing_cert_pem=signing_cert.read_bytes() if signing_cert else None)
            click.echo(json.dumps({"oid": e.oid, "role": e.role, "name": e.name, "endpoint": e.endpoint,
                                   "certificate_sha256": e.cert_sha256}))
    except ValueError as exc:
        raise click.ClickException(f"invalid certificate: {exc}") from None
    finally:
        db.dispose()


@main.group()
def eis() -> None:
    """Read the SM-SR's EIS registry."""


@eis.command("show")
@click.argument("eid")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
def eis_show(eid: str, data_dir: Path) -> None:
    """Print the EIS of one eUICC as the SM-SR holds it (XML)."""
    from lxml import etree

    from esx.adapters import eis_element
    from esx.codes import FunctionFailed
    from esx.server import Config, EsxRuntime
    from smsr_core.registry import Caller

    runtime = EsxRuntime(Config.load(data_dir))
    try:
        value = runtime.registry.get_eis(Caller(runtime.config.smsr_oid, "smsr"), eid)
    except FunctionFailed as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(etree.tostring(eis_element(value), pretty_print=True).decode())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
