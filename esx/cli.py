"""The ``esx`` command (click): init, serve, worker, smsc, entity add, eis show, smdp, euicc show/set."""
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
@click.option("--smdp-url", default=None,
              help="Where the SM-DP is reached when it is served on its own (esx serve --role smdp); default: --public-url.")
def init(data_dir: Path, demo: int, database_url: str | None, public_url: str, auth: str, smdp_url: str | None) -> None:
    """Create an instance: database, dev PKI, entities, demo eUICCs. Prints one JSON document."""
    from esx.demo import init_instance

    doc = init_instance(data_dir, demo=demo, database_url=database_url, public_url=public_url, auth=auth,
                        smdp_url=smdp_url)
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
@click.option("--background/--no-background", default=True, show_default=True,
              help="Also start `esx smsc` and `esx worker` as the configuration asks (embedded default).")
def serve(data_dir: Path, bind: str, role: str, workers: int, background: bool) -> None:
    """Serve the SOAP endpoints with gunicorn (TLS with client certificates in mtls mode).

    In the embedded default it also starts the loopback SMSC with the simulated eUICCs and one
    operation worker, and stops them when it stops.
    """
    import subprocess

    from esx.server import Config

    config = Config.load(data_dir)
    host = bind.rsplit(":", 1)[0]
    if config.auth != "mtls" and not _is_loopback(host):
        raise click.UsageError("the entity-id identity mode is for loopback only: bind to 127.0.0.1, or use --auth mtls")
    from esx.gunicorn_app import run

    children = []
    if background and role in ("smsr", "all"):
        esx = [sys.executable, "-m", "esx.cli"]
        if config.ota_setting("loopback_smsc"):
            children.append(subprocess.Popen([*esx, "smsc", "--data-dir", str(data_dir)]))
        if config.ota_setting("worker"):
            children.append(subprocess.Popen([*esx, "worker", "--data-dir", str(data_dir)]))
    if background and role in ("smdp", "all") and config.ota_setting("worker"):
        esx = [sys.executable, "-m", "esx.cli"]
        children.append(subprocess.Popen([*esx, "worker", "--role", "smdp", "--data-dir", str(data_dir)]))
    try:
        run(config, role=role, bind=bind, workers=workers)
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=20)


@main.command()
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--role", type=click.Choice(["smsr", "smdp"]), default="smsr", show_default=True)
def worker(data_dir: Path, role: str) -> None:
    """Execute the asynchronous operations and deliver callbacks/notifications: the SM-SR's (ES5 over
    SMPP) or the SM-DP's (downloads over ES3)."""
    import logging

    from esx.server import Config
    from esx.worker import run_worker

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {role}-worker %(levelname)s %(name)s: %(message)s")
    run_worker(Config.load(data_dir), role)


@main.command()
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--pdu-log", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Append every SMPP PDU (JSON lines, hex) to this file.")
@click.option("--drop-rate", default=0.0, type=click.FloatRange(0.0, 1.0, max_open=True), show_default=True,
              help="Lab hook: lose this share of the SMS in each direction (to the cards, and from them).")
@click.option("--drop-seed", default=None, type=int,
              help="Seed of the losses: the same seed loses the same SMS of a given sequence (default: random).")
def smsc(data_dir: Path, pdu_log: Path | None, drop_rate: float, drop_seed: int | None) -> None:
    """Run the loopback SMSC with the simulated eUICCs of the data directory."""
    import logging
    import signal
    import threading

    from esx.server import Config
    from euicc_sim.network import SimulatedNetwork

    logging.basicConfig(level=logging.INFO, format="%(asctime)s smsc %(levelname)s %(name)s: %(message)s")
    config = Config.load(data_dir)
    network = SimulatedNetwork(
        Path(config.data_dir) / "euicc", host=config.ota_setting("smsc_host"), port=int(config.ota_setting("smsc_port")),
        system_id=config.ota_setting("system_id"), password=config.ota_setting("password"),
        notification_retry=float(config.ota_setting("notification_retry")), pdu_log=pdu_log,
        smsr_address=config.ota_setting("source_addr"), drop_rate=drop_rate, drop_seed=drop_seed)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    network.start()
    click.echo(f"loopback SMSC on {config.ota_setting('smsc_host')}:{network.smsc.port} with "
               f"{len(network.cards)} simulated eUICC(s)"
               + (f", losing {drop_rate:.0%} of the SMS each way" if drop_rate else ""), err=True)
    try:
        stop.wait()
    finally:
        network.stop()
        if drop_rate:
            lost = network.losses.dropped
            click.echo(f"lost {lost['MT']} SMS to the cards and {lost['MO']} from them", err=True)


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


@main.group()
def smdp() -> None:
    """The SM-DP's profile warehouse: profile types and the stock of profiles."""


def _warehouse(data_dir: Path):
    """The instance's configuration, database and warehouse (the secrets key is the data directory's)."""
    from esx.db import Database
    from esx.server import Config
    from keys.secretbox import SecretBox
    from smdp_core.warehouse import Warehouse

    try:
        config = Config.load(data_dir)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    return config, Database(config.database_url), Warehouse(SecretBox.from_data_dir(Path(config.data_dir)))


def _require_mno(s, oid: str) -> None:
    from esx.entities import Entity, Role

    entity = s.get(Entity, oid)
    if entity is None or entity.role != Role.MNO.value:
        raise click.ClickException(f"{oid} is not a registered MNO (esx entity add --role mno)")


@smdp.command("add-profile-type")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", required=True, help="The ProfileType the MNO names in ES2-DownloadProfile.")
@click.option("--mno", "mno_id", required=True, help="OID of the MNO that owns the type.")
@click.option("--template", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="DER of the SAIP profile package the profiles of this type are personalised from.")
@click.option("--description", default="")
def smdp_add_profile_type(data_dir: Path, name: str, mno_id: str, template: Path, description: str) -> None:
    """Create a profile type, or replace the template of one of the MNO's own. Prints JSON."""
    import hashlib

    _config, db, warehouse = _warehouse(data_dir)
    der = template.read_bytes()
    try:
        with db.session() as s:
            _require_mno(s, mno_id)
            ptype = warehouse.add_profile_type(s, mno_id=mno_id, name=name, template=der, description=description)
            doc = {"profile_type": ptype.name, "mno_id": ptype.mno_id, "template_bytes": len(der),
                   "template_sha256": hashlib.sha256(der).hexdigest(), "description": ptype.description}
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        db.dispose()
    click.echo(json.dumps(doc))


@smdp.command("import-profiles")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--profile-type", required=True)
@click.option("--mno", "mno_id", required=True, help="OID of the MNO that owns the profile type.")
@click.option("--name", default=None, help="Batch name; default: the file's name.")
def smdp_import_profiles(file: Path, data_dir: Path, profile_type: str, mno_id: str, name: str | None) -> None:
    """Import a CSV batch of personalisation data, all or nothing. Prints a one-line JSON summary.

    Header: iccid,imsi,msisdn,ki,opc,pin1,puk1,pin2,puk2[,adm1]. The secrets are encrypted with the
    data directory's key before they reach the database.
    """
    from sqlalchemy.exc import IntegrityError

    _config, db, warehouse = _warehouse(data_dir)
    with file.open("rb") as f:
        lines = sum(1 for line in f if line.strip())
    name = name or file.name
    try:
        with db.session() as s, click.progressbar(length=max(lines - 1, 0), label=f"importing {file.name}",
                                                  file=click.get_text_stream("stderr")) as bar:
            _require_mno(s, mno_id)
            done = 0

            def progress(n: int) -> None:
                nonlocal done
                bar.update(n - done)
                done = n

            count = warehouse.import_batch(s, mno_id=mno_id, profile_type=profile_type, name=name,
                                           records=warehouse.parse_batch_file(file), progress=progress)
            stock = next(t for t in warehouse.stock(s, mno_id=mno_id) if t["profile_type"] == profile_type)
    except ValueError as exc:
        raise click.ClickException(f"{file.name}: {exc}; nothing imported") from None
    except IntegrityError:  # the checks passed, but another import committed some of these ICCIDs meanwhile
        raise click.ClickException(f"{file.name}: some ICCIDs were imported meanwhile; nothing imported") from None
    finally:
        db.dispose()
    click.echo(json.dumps({"batch": name, "profile_type": profile_type, "mno_id": mno_id, "imported": count,
                           "available": stock["available"]}))


@smdp.command("stock")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--mno", "mno_id", default=None, help="Only this MNO's profile types.")
def smdp_stock(data_dir: Path, mno_id: str | None) -> None:
    """Print the stock per profile type (JSON): available, reserved, downloading, installed."""
    _config, db, warehouse = _warehouse(data_dir)
    try:
        with db.session() as s:
            doc = warehouse.stock(s, mno_id=mno_id)
    finally:
        db.dispose()
    click.echo(json.dumps(doc, indent=2))


@main.group()
def euicc() -> None:
    """The simulated eUICCs (the card's own view)."""


def _card_path(data_dir: Path, eid: str) -> Path:
    from esx.server import Config
    from euicc_sim.network import CARD_FILE

    path = Path(Config.load(data_dir).data_dir) / "euicc" / eid.upper() / CARD_FILE
    if not path.is_file():
        raise click.ClickException(f"no simulated eUICC {eid} in {data_dir}")
    return path


@euicc.command("show")
@click.argument("eid")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
def euicc_show(eid: str, data_dir: Path) -> None:
    """Print what the simulated card itself holds (JSON), to compare with `esx eis show`."""
    from euicc_sim.card import Card

    click.echo(json.dumps(Card.load(_card_path(data_dir, eid)).view(), indent=2))


@euicc.command("set")
@click.argument("eid")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--silent/--answering", default=None, help="A silent card answers no SMS (out of coverage).")
@click.option("--pol1", default=None, metavar="ICCID=RULES",
              help="Set a profile's POL1: comma list of disable-not-allowed, delete-not-allowed, "
                   "delete-when-disabled (empty for none).")
@click.option("--free-memory", type=click.IntRange(min=0), default=None,
              help="Set the card's free non-volatile memory in bytes (e.g. to make CreateISDP fail with 6A84).")
def euicc_set(eid: str, data_dir: Path, silent: bool | None, pol1: str | None, free_memory: int | None) -> None:
    """Change the simulated card (test and lab hooks)."""
    from euicc_sim.card import Card, Pol1

    path = _card_path(data_dir, eid)
    card = Card.load(path)
    if silent is not None:
        card.silent = silent
    if free_memory is not None:
        card.free_memory = free_memory
    if pol1 is not None:
        iccid, _, rules = pol1.partition("=")
        profile = next((p for p in card.profiles if p.iccid == iccid), None)
        if profile is None:
            raise click.ClickException(f"no profile {iccid} on {eid}")
        names = {r.strip() for r in rules.split(",") if r.strip()}
        known = {"disable-not-allowed", "delete-not-allowed", "delete-when-disabled"}
        if names - known:
            raise click.BadParameter(f"unknown POL1 rule(s): {', '.join(sorted(names - known))}", param_hint="--pol1")
        profile.pol1 = Pol1(disable_not_allowed="disable-not-allowed" in names,
                            delete_not_allowed="delete-not-allowed" in names,
                            delete_when_disabled="delete-when-disabled" in names)
    card.save()
    click.echo(json.dumps(card.view(), indent=2))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
