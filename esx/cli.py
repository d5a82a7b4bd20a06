"""The ``esx`` command (click): init, serve, worker, smsc, entity add, outbox, eis show, smdp, euicc show/set."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="esx", prog_name="esx")
def main() -> None:
    """esx: GSMA SGP.02 SM-SR and SM-DP."""
    # Whatever esx writes (database, logs, card state, keys) is its owner's only: files 0600, folders 0700.
    os.umask(0o077)


def load_config(data_dir: Path):
    """The instance in ``data_dir``, or one clean error line (never a traceback) when there is none."""
    from esx.server import Config

    try:
        return Config.load(data_dir)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    except (ValueError, TypeError) as exc:
        raise click.ClickException(f"{Path(data_dir) / 'esx.json'} cannot be read: {exc}") from None


@main.command()
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--demo", default=0, show_default=True, help="Number of demo eUICCs to register over ES1.")
@click.option("--database-url", default=None, help="SQLAlchemy URL; default: SQLite in the data directory.")
@click.option("--public-url", default="http://127.0.0.1:8080", show_default=True,
              help="How peers reach this instance (callback and endpoint addresses).")
@click.option("--auth", type=click.Choice(["entity-id", "mtls"]), default=None,
              help="Identity mode: entity-id (the default) or mtls; a --peer-of instance takes its peer's.")
@click.option("--smdp-url", default=None,
              help="Where the SM-DP is reached when it is served on its own (esx serve --role smdp); default: --public-url.")
@click.option("--smsc-port", type=click.IntRange(1, 65535), default=None,
              help="Port of the loopback SMSC (default 2775); a second instance on one machine needs its own.")
@click.option("--peer-of", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="Make a second SM-SR for a lab that can take over the eUICCs of the instance in DIR (SM-SR "
                   "change): its own OID, SMS address and SM-SR certificate from DIR's demo CI, registered at DIR and "
                   "DIR's parties registered at it, reaching DIR's cards through DIR's loopback SMSC. No SM-DP, SMSC "
                   "or eUICC of its own.")
def init(data_dir: Path, demo: int, database_url: str | None, public_url: str, auth: str | None,
         smdp_url: str | None, smsc_port: int | None, peer_of: Path | None) -> None:
    """Create an instance: database, dev PKI, entities, demo eUICCs. Prints one JSON document."""
    from esx.demo import InitError, init_instance, init_peer

    try:
        if peer_of is not None:
            for given, name in ((demo, "--demo"), (smdp_url, "--smdp-url"), (smsc_port, "--smsc-port")):
                if given:
                    raise click.UsageError(f"{name} does not go with --peer-of: a peer has no eUICC, SM-DP or SMSC "
                                           "of its own")
            doc = init_peer(data_dir, peer_of=peer_of, public_url=public_url, database_url=database_url, auth=auth)
        else:
            doc = init_instance(data_dir, demo=demo, database_url=database_url, public_url=public_url,
                                auth=auth or "entity-id", smdp_url=smdp_url, smsc_port=smsc_port)
    except InitError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(doc, indent=2))


@main.command()
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--bind", default="127.0.0.1:8080", show_default=True, help="HOST:PORT")
@click.option("--role", type=click.Choice(["smsr", "smdp", "all"]), default=None,
              help="What to serve: all (the default), smsr or smdp; a --peer-of instance is an SM-SR only.")
@click.option("--workers", default=2, show_default=True)
@click.option("--background/--no-background", default=True, show_default=True,
              help="Also start `esx smsc` and `esx worker` as the configuration asks (embedded default).")
@click.option("--allow-test-credentials", is_flag=True,
              help="Production mode (--auth mtls) only: run on the development PKI and publicly known card keys "
                   "(a lab). Without it, esx serve refuses them.")
def serve(data_dir: Path, bind: str, role: str | None, workers: int, background: bool,
          allow_test_credentials: bool) -> None:
    """Serve the SOAP endpoints with gunicorn (TLS with client certificates in mtls mode).

    In the embedded default it also starts the loopback SMSC with the simulated eUICCs and one
    operation worker, and stops them when it stops. One server per data directory; its bind must be
    where esx.json says peers reach it (public_url). A peer SM-SR (esx init --peer-of) serves its
    SM-SR and starts its worker, which binds to its peer's SMSC: no SMSC of its own.
    """
    import dataclasses
    import logging
    import threading

    from esx import supervisor
    from esx.server import ConfigError, production_problems

    # esx's own lines (one per refused call or fault) beside gunicorn's; gunicorn keeps its own handlers.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
    config = load_config(data_dir)
    peer_of = config.extra.get("peer_of")
    if peer_of and role not in (None, "smsr"):
        raise click.UsageError(f"{data_dir} is a peer SM-SR of {peer_of}: it serves the SM-SR role only (its SM-DP is "
                               f"{peer_of}'s)")
    role = role or ("smsr" if peer_of else "all")
    if allow_test_credentials:
        config = dataclasses.replace(config, allow_test_credentials=True)
    children: list = []
    stopping = threading.Event()
    try:
        host, port = supervisor.split_bind(bind)
        if config.auth != "mtls" and not supervisor.is_loopback(host):
            raise click.UsageError("the entity-id identity mode is for loopback only: bind to 127.0.0.1, or use --auth mtls")
        roles = ("smsr", "smdp") if role == "all" else (role,)
        locks = supervisor.hold_locks(Path(config.data_dir), roles, bind)  # noqa: F841 - held while this process lives
        problems = production_problems(config)
        if problems:
            raise supervisor.ServeError("production mode (--auth mtls) refuses to start: " + "; ".join(problems))
        for served in roles:
            warning = supervisor.check_public_url(config.url_for(served), supervisor.ROLE_NAMES[served], bind)
            if warning:
                click.echo(f"esx serve: warning: {warning}", err=True)
        supervisor.check_port_free(host, port, "--bind")
        esx = [sys.executable, "-m", "esx.cli"]
        if background and role in ("smsr", "all"):
            if config.ota_setting("loopback_smsc"):
                supervisor.check_port_free(config.ota_setting("smsc_host"), int(config.ota_setting("smsc_port")),
                                           "the loopback SMSC, ota.smsc_port in esx.json")
                children.append(supervisor.start_child("the loopback SMSC", [*esx, "smsc", "--data-dir", str(data_dir)],
                                                       ready_text=supervisor.SMSC_READY))
            if config.ota_setting("worker"):
                children.append(supervisor.start_child("the SM-SR worker", [*esx, "worker", "--data-dir", str(data_dir)]))
        if background and role in ("smdp", "all") and config.ota_setting("worker"):
            children.append(supervisor.start_child("the SM-DP worker",
                                                   [*esx, "worker", "--role", "smdp", "--data-dir", str(data_dir)]))
    except (supervisor.ServeError, ConfigError) as exc:
        supervisor.stop_children(children)
        raise click.ClickException(str(exc)) from None
    from esx.gunicorn_app import run

    supervisor.watch(children, stopping)
    try:
        run(config, role=role, bind=bind, workers=workers)
    finally:
        stopping.set()
        supervisor.stop_children(children)


@main.command()
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--role", type=click.Choice(["smsr", "smdp"]), default="smsr", show_default=True)
def worker(data_dir: Path, role: str) -> None:
    """Execute the asynchronous operations and deliver callbacks/notifications: the SM-SR's (ES5 over
    SMPP) or the SM-DP's (downloads over ES3)."""
    import logging

    from esx.server import ConfigError
    from esx.worker import run_worker

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {role}-worker %(levelname)s %(name)s: %(message)s")
    config = load_config(data_dir)
    try:
        config.smpp_password  # noqa: B018 - production mode has no built-in SMPP password
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    run_worker(config, role)


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

    from esx.server import ConfigError
    from euicc_sim.network import SimulatedNetwork

    logging.basicConfig(level=logging.INFO, format="%(asctime)s smsc %(levelname)s %(name)s: %(message)s")
    config = load_config(data_dir)
    if config.extra.get("peer_of"):
        raise click.ClickException(f"{data_dir} is a peer SM-SR: it has no cards and uses the SMSC of "
                                   f"{config.extra['peer_of']} ({config.ota_setting('smsc_host')}:"
                                   f"{config.ota_setting('smsc_port')}); run esx smsc there")
    try:
        password = config.smpp_password
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    network = SimulatedNetwork(
        Path(config.data_dir) / "euicc", host=config.ota_setting("smsc_host"), port=int(config.ota_setting("smsc_port")),
        system_id=config.ota_setting("system_id"), password=password,
        notification_retry=float(config.ota_setting("notification_retry")), pdu_log=pdu_log,
        smsr_address=config.ota_setting("source_addr"), drop_rate=drop_rate, drop_seed=drop_seed)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        network.start()
    except OSError as exc:  # the port is taken: one line, and a status `esx serve` reports
        raise click.ClickException(f"the loopback SMSC cannot listen on {config.ota_setting('smsc_host')}:"
                                   f"{config.ota_setting('smsc_port')}: {exc.strerror or exc}") from None
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
@click.option("--smdp", "smdps", multiple=True, metavar="OID",
              help="For an MNO: an SM-DP that acts for it (repeat for several; replaces the list). The SM-SR lets an "
                   "SM-DP act on the profiles it installed and on those of the MNOs that name it.")
def entity_add(data_dir: Path, role: str, oid: str, name: str, endpoint: str | None, cert: Path | None,
               signing_cert: Path | None, smdps: tuple[str, ...]) -> None:
    """Create or update one entity."""
    import re

    from persistence.db import Database
    from persistence.entities import set_mno_smdps, smdps_of, upsert_entity

    for value, hint in [(oid, "--oid"), *((s, "--smdp") for s in smdps)]:
        if not re.fullmatch(r"([0-9]+\.)*[0-9]+", value):
            raise click.BadParameter(f"{value!r} is not an OID (ASCII digits and dots)", param_hint=hint)
    if smdps and role != "mno":
        raise click.BadParameter("only an MNO names SM-DPs", param_hint="--smdp")
    config = load_config(data_dir)
    db = Database(config.database_url)
    try:
        with db.session() as s:
            e = upsert_entity(s, oid=oid, role=role, name=name, endpoint=endpoint,
                              cert_pem=cert.read_bytes() if cert else None,
                              signing_cert_pem=signing_cert.read_bytes() if signing_cert else None)
            if smdps:
                set_mno_smdps(s, oid, list(smdps))
            doc = {"oid": e.oid, "role": e.role, "name": e.name, "endpoint": e.endpoint,
                   "certificate_sha256": e.cert_sha256}
            if e.role == "mno":
                doc["smdps"] = smdps_of(s, oid)
            click.echo(json.dumps(doc))
    except ValueError as exc:
        raise click.ClickException(f"invalid certificate: {exc}") from None
    finally:
        db.dispose()


@main.group()
def outbox() -> None:
    """Callbacks and notifications waiting to be delivered (the transactional outbox)."""


@outbox.command("show")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--limit", default=100, show_default=True)
def outbox_show(data_dir: Path, limit: int) -> None:
    """Print what is not delivered yet, oldest first (JSON lines): the event, the operation it is delivered as, to
    whom, how often tried, why it failed."""
    from esx.outbox import pending
    from persistence.db import Database

    db = Database(load_config(data_dir).database_url)
    try:
        with db.session() as s:
            for row in pending(s, limit=limit):
                click.echo(json.dumps({
                    "id": row.id, "created": row.created_at.isoformat(), "from": row.sender_role,
                    "event": row.event_type, "channel": row.channel,  # none for a row written before events
                    "operation": row.operation, "to": row.target_oid, "address": row.address,
                    "attempts": row.attempts, "next_attempt": row.next_attempt_at.isoformat(),
                    "last_error": row.last_error}))
    finally:
        db.dispose()


@outbox.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
def outbox_retry(ids: tuple[int, ...], data_dir: Path) -> None:
    """Send undelivered messages again at the workers' next round (the IDs given, or all of them)."""
    from esx.outbox import retry_now
    from persistence.db import Database

    db = Database(load_config(data_dir).database_url)
    try:
        with db.session() as s:
            count = retry_now(s, list(ids))
    finally:
        db.dispose()
    click.echo(json.dumps({"due_now": count}))


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
    from esx.server import EsxRuntime
    from sgp02.codes import FunctionFailed
    from sgp02.roles import Caller

    runtime = EsxRuntime(load_config(data_dir))
    try:
        value = runtime.registry.get_eis(Caller(runtime.config.smsr_oid, "smsr"), eid)
    except FunctionFailed as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(etree.tostring(eis_element(value), pretty_print=True).decode())


@main.group()
def smdp() -> None:
    """The SM-DP's profile warehouse (profile types and the stock of profiles), and what its operator asks of SM-SRs."""


def _warehouse(data_dir: Path):
    """The instance's configuration, database and warehouse (the secrets key is the data directory's)."""
    from keys.secretbox import SecretBox
    from persistence.db import Database
    from smdp_core.warehouse import Warehouse

    config = load_config(data_dir)
    return config, Database(config.database_url), Warehouse(SecretBox.from_data_dir(Path(config.data_dir)))


def _require_mno(s, oid: str) -> None:
    from persistence.entities import Entity, Role

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


@smdp.command("update-connectivity")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--eid", required=True)
@click.option("--iccid", required=True)
@click.option("--connectivity-parameters", "parameters", required=True, metavar="HEX",
              help="The ES8 commands for the profile's ISD-P, prepared by whoever holds its SCP03 key set: INITIALIZE "
                   "UPDATE, EXTERNAL AUTHENTICATE, STORE DATA 3A07 under C-MAC, each a '22' TLV (hex).")
@click.option("--smsr", "smsr_id", default=None, metavar="OID",
              help="The SM-SR of the eUICC; default: this instance's.")
@click.option("--validity-period", type=click.IntRange(min=1), default=None, help="Seconds; default: the SM-SR's.")
def smdp_update_connectivity(data_dir: Path, eid: str, iccid: str, parameters: str, smsr_id: str | None,
                             validity_period: int | None) -> None:
    """Send ES3-UpdateConnectivityParameters to the SM-SR. Prints JSON with its MessageID once the SM-SR accepted it.

    The outcome comes later as ES3-UpdateConnectivityParametersCallback to this SM-DP's /smdp/es3 (RelatesTo = the
    MessageID printed): the SM-DP logs it, with the ISD-P's answers (EuiccResponseData), and keeps it in the call
    audit; no ES2 function asks for this, so nothing is relayed to an MNO. The SM-DP does not build the command:
    it drops an ISD-P's SCP03 key set once the download is completed, so the SCP03 session must come prepared.
    """
    from esx.binding import wsa
    from esx.server import EsxRuntime
    from sgp02.codes import FunctionFailed

    try:
        data = bytes.fromhex(parameters)
    except ValueError:
        raise click.BadParameter("not hex", param_hint="--connectivity-parameters") from None
    if not data:
        raise click.BadParameter("empty", param_hint="--connectivity-parameters")
    runtime = EsxRuntime(load_config(data_dir))
    smsr = smsr_id or runtime.config.smsr_oid
    message_id = wsa.new_message_id(runtime.config.smdp_oid)
    try:
        runtime.smdp.update_connectivity_parameters(smsr, eid, iccid, data, message_id=message_id,
                                                    validity=validity_period)
    except FunctionFailed as exc:
        raise click.ClickException(f"{exc.code.subject}/{exc.code.reason}: {exc.message}") from None
    click.echo(json.dumps({"accepted": True, "message_id": message_id, "smsr": smsr, "eid": eid.upper(),
                           "iccid": iccid.upper(), "callback_to": f"{runtime.config.url_for('smdp')}/smdp/es3"}))


@main.group()
def euicc() -> None:
    """The simulated eUICCs (the card's own view)."""


def _card_path(data_dir: Path, eid: str) -> Path:
    from euicc_sim.network import CARD_FILE

    path = Path(load_config(data_dir).data_dir) / "euicc" / eid.upper() / CARD_FILE
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
    sys.exit(main(prog_name="esx"))
