"""The embedded default: ``esx init`` creates a working instance with demo parties and eUICCs.

It writes the configuration, migrates the database, generates the development PKI into the data
directory (private keys never enter the repository), registers this instance's SM-SR and SM-DP,
a demo MNO and a demo EUM as entities, and registers N demo eUICCs through the real ES1 path:
an EIS built and signed as an EUM would, posted to the SM-SR's ES1 endpoint (in-process, through
the same parser, schema, authorisation and core as an HTTP request).

``esx init --peer-of A`` (:func:`init_peer`) makes a second SM-SR for a lab, B, that can take A's eUICCs over
(SM-SR change):

- its own SM-SR OID (:data:`PEER_SMSR_ARC` ``.3``, ``.4``, ...: the first not yet an entity at A) and SMS address
  (``882`` and the OID's last arc on three digits: ``882003`` for ``.3``; A has ``882001``), its ``source_addr``
  in the ``ota`` settings;
- its own keys and certificates from A's demo PKI (``keys.pki.DevPki.issue_peer_smsr``: CERT.SR.ECDSA by A's CI,
  TLS server and client certificates by A's TLS CA; never a second CI, no copy of A's private keys);
- no SM-DP, SMSC or simulated card of its own: A's SM-DP serves it (``role_urls.smdp`` is A's), its SMPP client
  binds to A's loopback SMSC with A's system_id and password (``loopback_smsc`` false), and
  ``extra.peer_of`` names A (``esx serve`` then serves the SM-SR role alone);
- entities: B at A and A's SM-SR at B (role smsr, endpoint ``<public URL>/smsr/es3`` as for every SM-SR, see
  :func:`esx.binding.wsa.smsr_interface_url`, and the TLS client certificate), and A's SM-DPs, MNOs (with the SM-DPs they named)
  and EUMs at B, as A holds them. No eUICC: B learns one only through a handover.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from lxml import etree

from esx.binding.ns import GSMA
from esx.eis_xml import render_eis_for_signing
from esx.server import Config
from keys.scp80 import aes_kcv
from persistence.db import Database, migrate, sqlite_url
from persistence.entities import Role, set_mno_smdps, smdps_of, upsert_entity
from sgp02 import eis as v
from sgp02.identifiers import (  # the Annex H AID series; the SM-SR's CreateISDP allocates ISD-Ps from it too
    ECASD_AID,
    ISD_P_LOADFILE_AID,
    ISD_P_MODULE_AID,
    ISD_R_AID,
    isd_p_aid,
    luhn_digit,
)

# Demo OIDs under an arc reserved for documentation-style examples (not a real registration).
SMSR_OID = "1.3.6.1.4.1.99999.1.1"
SMDP_OID = "1.3.6.1.4.1.99999.1.2"
MNO_OID = "1.3.6.1.4.1.99999.2.1"
EUM_OID = "1.3.6.1.4.1.99999.3.1"

# A peer SM-SR's OID is PEER_SMSR_ARC.n, n >= FIRST_PEER (n = 1 is SMSR_OID, 2 SMDP_OID).
PEER_SMSR_ARC = "1.3.6.1.4.1.99999.1"
FIRST_PEER = 3


class InitError(Exception):
    """``esx init`` cannot do what it was asked; the text is the one line the operator reads."""


def peer_smsr_identity(n: int) -> tuple[str, str]:
    """The OID and SMS address of peer SM-SR number ``n``: ``PEER_SMSR_ARC.n`` and ``882`` + n on three digits."""
    if not FIRST_PEER <= n <= 999:
        raise ValueError(f"peer SM-SR number {n} is not in {FIRST_PEER}..999")
    return f"{PEER_SMSR_ARC}.{n}", f"882{n:03d}"


# TARs of the ISD-R and the ECASD (the AIDs are sgp02.identifiers').
ISD_R_TAR = "000001"
ECASD_TAR = "000002"


def demo_eid(n: int) -> str:
    """A 32-digit EID ending with its ISO 7064 mod 97-10 check digits."""
    body = f"890490320000000000000000{n:06d}"
    check = 98 - int(body + "00") % 97
    return f"{body}{check:02d}"


def demo_iccid(n: int, slot: int = 0) -> str:
    body = f"898829900{n:07d}{slot:02d}"
    return body + luhn_digit(body)


# The SM-DP's demo stock (smdp_core.warehouse), downloadable with ES2-DownloadProfile.
DEMO_PROFILE_TYPE = "esx-demo-download"


def demo_stock_iccid(n: int) -> str:
    """898829901 + 9 digits + Luhn: the 10th digit 1 keeps them apart from ``demo_iccid`` (always 0 there)."""
    body = f"898829901{n:09d}"
    return body + luhn_digit(body)


def demo_stock_records(count: int):
    """Stock profiles 1..count: IMSI 001019 + 9 digits (demo_profiles' have 0 after 00101), MSISDN 4478...,
    random Ki and OPc, PIN 0000, PUK 12345678."""
    from smdp_core.warehouse import StockRecord

    return [StockRecord(iccid=demo_stock_iccid(n), imsi=f"001019{n:09d}", msisdn=f"4478{n:08d}",
                        ki=os.urandom(16).hex().upper(), opc=os.urandom(16).hex().upper(),
                        pin1="0000", puk1="12345678", pin2="0000", puk2="12345678")
            for n in range(1, count + 1)]


def add_demo_stock(db: Database, data_dir: Path, count: int) -> list[dict]:
    """The demo MNO's profile type with ``count`` profiles in stock (only the missing ones are added)."""
    from sqlalchemy import select

    from keys.secretbox import SecretBox
    from ota.saip import demo_template
    from smdp_core.models import StockProfile
    from smdp_core.warehouse import Warehouse

    warehouse = Warehouse(SecretBox.from_data_dir(data_dir))
    with db.session() as s:
        warehouse.add_profile_type(s, mno_id=MNO_OID, name=DEMO_PROFILE_TYPE, template=demo_template(),
                                   description="esx demo profile (TCA SAIP)")
        wanted = demo_stock_records(count)
        have = set(s.scalars(select(StockProfile.iccid).where(StockProfile.iccid.in_([r.iccid for r in wanted]))))
        missing = [r for r in wanted if r.iccid not in have]
        if missing:
            warehouse.import_batch(s, mno_id=MNO_OID, profile_type=DEMO_PROFILE_TYPE, name="esx-demo", records=missing)
        return warehouse.stock(s)


def isd_r_domain(keys: dict[str, bytes]) -> v.SecurityDomain:
    """The ISD-R with its SCP80 keyset (KVN 1: ENC, MAC, DEK; AES, GP key type 88)."""
    items = tuple(
        v.Key(index, aes_kcv(keys[name]), (("88", keys[name].hex().upper()),))
        for index, name in ((1, "enc"), (2, "mac"), (3, "dek"))
    )
    return v.SecurityDomain(ISD_R_AID, "ISD-R", sin="89049032", sdin="01", tars=(ISD_R_TAR,),
                            keysets=(v.Keyset(1, "SCP80", 0, items),))


def build_eis(*, eid: str, eum_id: str, smsr_id: str, ecasd_cert: bytes, profiles: tuple[v.ProfileInfo, ...],
              isd_r: v.SecurityDomain, production_date: datetime | None = None) -> v.Eis:
    ecasd = v.SecurityDomain(
        ECASD_AID, "ECASD", sin="89049032", sdin="02", tars=(ECASD_TAR,),
        keysets=(v.Keyset(115, "CA", None, (v.KeysetCertificate(1, eum_id, ecasd_cert.hex().upper()),)),),
    )
    signed = v.EumSignedInfo(
        eid=eid, eum_id=eum_id,
        production_date=production_date or datetime(2026, 1, 1, tzinfo=timezone.utc),
        platform_type="esx-sim", platform_version="1.0.0",
        isd_p_loadfile_aid=ISD_P_LOADFILE_AID, isd_p_module_aid=ISD_P_MODULE_AID,
        ecasd=ecasd,
        capabilities=v.EuiccCapabilities(cattp_support=False, http_support=True, http_version="1.1.0",
                                         secure_packet_version="12.0.0", remote_provisioning_version="3.2.0"),
    )
    return v.Eis(signed_info=signed, signed_info_xml=b"", eum_signature_xml=b"", remaining_memory=512_000,
                 available_memory_for_profiles=400_000, smsr_id=smsr_id, isd_r=isd_r, profiles=profiles)


def signed_eis_element(eis: v.Eis, eum_key, eum_cert_pem: bytes) -> etree._Element:
    """The EIS as the EUM sends it in ES1-RegisterEIS, with its EumSignature."""
    from keys.xmldsig import sign_eis

    el = render_eis_for_signing(eis)
    sign_eis(el, eum_key, eum_cert_pem)
    return el


def register_request(eis_el: etree._Element) -> etree._Element:
    req = etree.Element(f"{{{GSMA}}}ES1-RegisterEISRequest", nsmap={"rps": GSMA})
    etree.SubElement(req, f"{{{GSMA}}}FunctionCallIdentifier").text = "esx-init"
    req.append(eis_el)
    return req


def demo_profiles(n: int) -> tuple[v.ProfileInfo, ...]:
    """Demo eUICC n: an enabled fall-back profile and a disabled one, both of the demo MNO."""
    return tuple(
        v.ProfileInfo(
            iccid=demo_iccid(n, slot), isd_p_aid=isd_p_aid(slot), mno_id=MNO_OID, fallback_attribute=slot == 0,
            subscription_address=v.SubscriptionAddress(imsi=f"00101{n:08d}{slot:02d}", msisdn=f"4479{n:06d}{slot:02d}"),
            state=v.ProfileState.ENABLED if slot == 0 else v.ProfileState.DISABLED, allocated_memory=65_536,
            profile_type="esx-demo",
        )
        for slot in (0, 1)
    )


def create_card(card_dir: Path, eis: v.Eis, isd_r_keys: dict[str, bytes], *,
                ci_cert_pem: bytes | None = None, smsr_sms_address: str | None = None) -> None:
    """The simulated eUICC that matches ``eis`` (euicc_sim), with the ISD-R's SCP80 keys.

    ``ci_cert_pem`` is written to ``ci.pem`` beside the state file: the CI the ECASD trusts when it checks an SM-DP
    certificate (ES8 STORE DATA 3A01). Without it the card refuses every ES8 key establishment (6982). The ECASD key
    (``ecasd.key.pem``) is the caller's to write, as init_instance does. ``smsr_sms_address`` is the SM-SR's SMS
    address the card is personalised with (what 3A07 would set): where its notifications go."""
    from euicc_sim.card import CI_FILE, Card, IsdP
    from euicc_sim.network import CARD_FILE
    from ota import es5

    lifecycle = {v.ProfileState.ENABLED: es5.ENABLED, v.ProfileState.DISABLED: es5.DISABLED,
                 v.ProfileState.CREATED: es5.SELECTABLE}
    profiles = [IsdP(aid=p.isd_p_aid, lifecycle=lifecycle[p.state], fallback=p.fallback_attribute, iccid=p.iccid,
                     imsi=p.subscription_address.imsi, msisdn=p.subscription_address.msisdn, memory=p.allocated_memory)
                for p in eis.profiles]
    keyset = next(ks for ks in eis.isd_r.keysets if ks.type == "SCP80")
    scp80 = {"kvn": keyset.version, "tar": eis.isd_r.tars[0], "counter": 0,
             **{name: key.hex().upper() for name, key in isd_r_keys.items()}}
    path = card_dir / CARD_FILE
    if ci_cert_pem is not None:
        card_dir.mkdir(parents=True, exist_ok=True)
        (card_dir / CI_FILE).write_bytes(ci_cert_pem)
    card = Card.create(path, eid=eis.eid, isd_r_aid=eis.isd_r.aid, profiles=profiles,
                       free_memory=eis.available_memory_for_profiles, scp80=scp80, overwrite=True)
    if smsr_sms_address is not None:
        card.smsr_sms_address = smsr_sms_address
        card.save()


@dataclass
class DemoEuicc:
    eid: str
    profiles: list[dict]


def init_instance(data_dir: Path, *, demo: int = 0, database_url: str | None = None,
                  public_url: str = "http://127.0.0.1:8080", auth: str = "entity-id",
                  smdp_url: str | None = None, smsc_port: int | None = None) -> dict:
    """Create (or complete) an instance in ``data_dir``; return the document ``esx init`` prints."""
    from esx.binding.client import GsmaClient
    from esx.binding.http import HttpClient
    from esx.server import INPROCESS, EsxRuntime, make_wsgi
    from keys.pki import DevPki, private_key_pem
    from keys.secretbox import SecretBox
    from smsr_core.models import seal_clear_keys

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        config = Config.load(data_dir)
        if config.extra.get("peer_of"):
            raise InitError(f"{data_dir} is a peer SM-SR of {config.extra['peer_of']} (esx init --peer-of): there is "
                            "nothing to complete")
    except FileNotFoundError:
        # The SMPP bind password of this instance: its own, never a built-in default, so that no other instance's
        # worker binds to this one's SMSC (and a production SMSC gets the password its operator set here).
        config = Config(data_dir=str(data_dir.resolve()), database_url=database_url or sqlite_url(data_dir),
                        public_url=public_url, smsr_oid=SMSR_OID, smdp_oid=SMDP_OID, auth=auth,
                        role_urls={"smdp": smdp_url} if smdp_url else {},
                        ota={"password": secrets.token_urlsafe(6)})  # 8 characters: SMPP 3.4 allows 8
        config.save()
    if smsc_port is not None and config.ota.get("smsc_port") != smsc_port:
        config.ota["smsc_port"] = smsc_port
        config.save()
    config.secure_files()
    migrate(config.database_url)
    db = Database(config.database_url)
    with db.session() as s:  # key values an older database still holds in clear (smsr_core.models)
        seal_clear_keys(s, SecretBox.from_data_dir(Path(config.data_dir)))
    pki = DevPki.generate(config.pki_dir, smdp_oid=config.smdp_oid, smsr_oid=config.smsr_oid,
                          eum_oid=EUM_OID, mno_oid=MNO_OID)

    def client_cert(oid: str) -> bytes:
        return pki.tls_client(oid)[0].read_bytes()

    endpoints = _endpoints(config)
    with db.session() as s:
        upsert_entity(s, oid=config.smsr_oid, role=Role.SMSR, name=config.smsr_name,
                      endpoint=endpoints["smsr_es3"], cert_pem=client_cert(config.smsr_oid))
        upsert_entity(s, oid=config.smdp_oid, role=Role.SMDP, name=config.smdp_name,
                      endpoint=endpoints["smdp_es3"], cert_pem=client_cert(config.smdp_oid))
        upsert_entity(s, oid=MNO_OID, role=Role.MNO, name="Demo MNO", cert_pem=client_cert(MNO_OID))
        # The demo MNO names this instance's SM-DP as the one acting for it (smsr_core.registry.may_manage).
        set_mno_smdps(s, MNO_OID, sorted(set(smdps_of(s, MNO_OID)) | {config.smdp_oid}))
        upsert_entity(s, oid=EUM_OID, role=Role.EUM, name="Demo EUM", cert_pem=client_cert(EUM_OID),
                      signing_cert_pem=pki.eum_cert_pem)

    profile_types = add_demo_stock(db, Path(config.data_dir), max(10, 4 * demo))

    # The registration below never leaves this process (no socket, hence no TLS): the demo EUM is the
    # in-process caller, whatever the instance's production identity mode is.
    runtime = EsxRuntime(config, db)
    http = HttpClient()
    http.mount(f"{INPROCESS}/", make_wsgi(config, "smsr", runtime), local_caller=EUM_OID)
    es1 = GsmaClient("ES1SmSr.wsdl", f"{INPROCESS}/smsr/es1", sender_oid=EUM_OID,
                     sender_address=f"http://eum.invalid/?EntityId={EUM_OID}", receiver_oid=config.smsr_oid,
                     http=http)
    known = set(runtime.registry.known_eids())
    cards_dir = data_dir / "euicc"
    euiccs = []
    for n in range(1, demo + 1):
        eid = demo_eid(n)
        profiles = demo_profiles(n)
        if eid not in known:
            ecasd_key, ecasd_cert = pki.issue_ecasd(eid)
            isd_r_keys = {name: os.urandom(16) for name in ("enc", "mac", "dek")}
            card_dir = cards_dir / eid
            card_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            key_file = card_dir / "ecasd.key.pem"
            key_file.write_bytes(private_key_pem(ecasd_key))
            os.chmod(key_file, 0o600)
            eis = build_eis(eid=eid, eum_id=EUM_OID, smsr_id=config.smsr_oid, ecasd_cert=ecasd_cert,
                            profiles=profiles, isd_r=isd_r_domain(isd_r_keys))
            create_card(card_dir, eis, isd_r_keys, ci_cert_pem=pki.ci_cert_pem,
                        smsr_sms_address=config.ota_setting("source_addr"))
            es1.call_element("ES1-RegisterEIS", register_request(signed_eis_element(eis, pki.eum_key, pki.eum_cert_pem)))
        euiccs.append({"eid": eid, "profiles": [
            {"iccid": p.iccid, "isd_p_aid": p.isd_p_aid, "state": p.state.value, "fallback": p.fallback_attribute,
             "msisdn": p.subscription_address.msisdn} for p in profiles]})
    db.dispose()
    return _document(config, euiccs, profile_types)


def _endpoints(config: Config) -> dict[str, str]:
    return {
        "smsr_es1": f"{config.url_for('smsr')}/smsr/es1",
        "smsr_es3": f"{config.url_for('smsr')}/smsr/es3",
        "smsr_es4": f"{config.url_for('smsr')}/smsr/es4",
        "smdp_es2": f"{config.url_for('smdp')}/smdp/es2",
        "smdp_es3": f"{config.url_for('smdp')}/smdp/es3",
    }


def _document(config: Config, euiccs: list[dict], profile_types: list[dict]) -> dict:
    """What ``esx init`` prints (the same keys for a peer, with its values)."""
    return {
        "smsr_id": config.smsr_oid,
        "smdp_id": config.smdp_oid,
        "mno_id": MNO_OID,
        "eum_id": EUM_OID,
        "euiccs": euiccs,
        "endpoints": _endpoints(config),
        "smdp": {"profile_types": profile_types},
    }


# Roles of A's entities that B registers as A holds them (init_peer); A's own SM-SR is added to them.
PEER_COPIED_ROLES = (Role.SMDP, Role.MNO, Role.EUM)


def init_peer(data_dir: Path, *, peer_of: Path, public_url: str, database_url: str | None = None,
              auth: str | None = None) -> dict:
    """Create B in ``data_dir``, a second SM-SR for a lab that reaches the eUICCs of instance A (``peer_of``)
    through A's loopback SMSC (module doc); register each at the other. Returns the document ``esx init`` prints,
    with B's values. :class:`InitError` (one line) when A is missing or no esx instance, A's PKI is missing or holds
    no CI key, B is already an instance, or B would share A's URL, database or identity mode."""
    from sqlalchemy import select

    from esx.server import ConfigError
    from keys.pki import DevPki
    from keys.secretbox import SecretBox
    from persistence.entities import Entity
    from smdp_core.warehouse import Warehouse

    a_dir, data_dir = Path(peer_of), Path(data_dir)
    if not a_dir.is_dir():
        raise InitError(f"--peer-of {a_dir}: no such directory")
    try:
        a = Config.load(a_dir)
    except FileNotFoundError:
        raise InitError(f"--peer-of {a_dir} is not an esx instance (no esx.json): esx init --data-dir {a_dir} "
                        "makes one") from None
    except (ValueError, TypeError) as exc:
        raise InitError(f"--peer-of {a_dir}: {a_dir / 'esx.json'} cannot be read: {exc}") from None
    if a.extra.get("peer_of"):
        raise InitError(f"--peer-of {a_dir} is itself a peer SM-SR of {a.extra['peer_of']}: make the new one a peer "
                        "of that instance")
    if not (a.pki_dir / "pki.json").is_file():
        raise InitError(f"--peer-of {a_dir} has no demo PKI ({a.pki_dir / 'pki.json'} is missing): the peer's "
                        "certificates come from A's CI")
    try:
        a_pki = DevPki.load(a.pki_dir)
    except (OSError, ValueError, KeyError) as exc:
        raise InitError(f"--peer-of {a_dir}: its PKI in {a.pki_dir} cannot be read: {exc}") from None
    if (data_dir / "esx.json").exists():
        raise InitError(f"{data_dir} is already an esx instance ({data_dir / 'esx.json'}): a peer needs a data "
                        "directory of its own")
    public_url = public_url.rstrip("/")
    if public_url in {a.public_url.rstrip("/"), *(u.rstrip("/") for u in a.role_urls.values())}:
        raise InitError(f"--public-url {public_url} is where {a_dir} is reached: give the peer a URL of its own")
    if auth is not None and auth != a.auth:
        raise InitError(f"--auth {auth}: a peer uses the identity mode of {a_dir} ({a.auth}), as the two call "
                        "each other")
    try:
        a_password = a.smpp_password
    except ConfigError as exc:
        raise InitError(str(exc)) from None

    a_db = Database(a.database_url)
    try:
        with a_db.session() as s:
            a_oids = set(s.scalars(select(Entity.oid)))
            a_entities = [_entity_values(e) for e in s.scalars(
                select(Entity).where(Entity.role.in_([r.value for r in PEER_COPIED_ROLES]) | (Entity.oid == a.smsr_oid))
                .order_by(Entity.oid))]
            a_pairings = {e["oid"]: smdps_of(s, e["oid"]) for e in a_entities if e["role"] == Role.MNO.value}
        n, oid, address = _peer_number(data_dir, a_pki, a, a_oids)
        config = Config(data_dir=str(data_dir.resolve()), database_url=database_url or sqlite_url(data_dir),
                        public_url=public_url, smsr_oid=oid, smdp_oid=a.smdp_oid, smsr_name=f"esx SM-SR {n}",
                        smdp_name=a.smdp_name, auth=a.auth, role_urls={"smdp": a.url_for("smdp")},
                        ota={"smsc_host": a.ota_setting("smsc_host"), "smsc_port": int(a.ota_setting("smsc_port")),
                             "system_id": a.ota_setting("system_id"), "password": a_password,
                             "source_addr": address, "loopback_smsc": False},
                        extra={"peer_of": str(a_dir.resolve())})
        if config.database_url == a.database_url:
            raise InitError(f"--database-url is the database of {a_dir}: a peer needs a database of its own")
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        box = SecretBox.from_data_dir(data_dir)
        config.secure_files()
        migrate(config.database_url)
        pki = a_pki.issue_peer_smsr(config.pki_dir, smsr_oid=oid)
        b_cert = pki.tls_client(oid)[0].read_bytes()
        b_entity = {"oid": oid, "role": Role.SMSR, "name": config.smsr_name,
                    "endpoint": f"{config.url_for('smsr')}/smsr/es3", "cert_pem": b_cert}
        db = Database(config.database_url)
        try:
            with db.session() as s:
                upsert_entity(s, **b_entity)
                for values in a_entities:
                    upsert_entity(s, **values)
                for mno, smdps in a_pairings.items():
                    set_mno_smdps(s, mno, smdps)
                profile_types = Warehouse(box).stock(s)
        finally:
            db.dispose()
        with a_db.session() as s:
            upsert_entity(s, **b_entity)
    finally:
        a_db.dispose()
    config.save()  # last: its presence says B is complete (a failed run can be run again)
    config.secure_files()
    return _document(config, [], profile_types)


def _entity_values(entity) -> dict:
    """An entity of A as upsert_entity takes it."""
    def pem(text: str | None) -> bytes | None:
        return text.encode() if text else None

    return {"oid": entity.oid, "role": entity.role, "name": entity.name, "endpoint": entity.endpoint,
            "notification_endpoint": entity.notification_endpoint, "cert_pem": pem(entity.cert_pem),
            "signing_cert_pem": pem(entity.signing_cert_pem)}


def _peer_number(data_dir: Path, a_pki, a: Config, a_oids: set[str]) -> tuple[int, str, str]:
    """(n, OID, SMS address) of the new peer: those of a peer PKI an earlier, unfinished run left in ``data_dir``
    under A's CI, else the first whose OID A does not know and whose address is not A's."""
    from keys.pki import DevPki

    pki_dir = data_dir / "pki"  # Config.pki_dir
    if (pki_dir / "pki.json").is_file():
        try:
            left = DevPki.load(pki_dir)
        except (OSError, ValueError, KeyError) as exc:
            raise InitError(f"{pki_dir} holds a PKI that cannot be read ({exc}): remove it") from None
        arc, _, last = left.smsr_oid.rpartition(".")
        if left.issued_by and left.ci_cert_pem == a_pki.ci_cert_pem and arc == PEER_SMSR_ARC and last.isdigit():
            return (int(last), *peer_smsr_identity(int(last)))
        raise InitError(f"{pki_dir} holds a PKI that is not a peer's of {a.data_dir}: remove it, or choose another "
                        "data directory")
    for n in range(FIRST_PEER, 1000):
        oid, address = peer_smsr_identity(n)
        if oid not in a_oids | {a.smsr_oid, a.smdp_oid} and address != str(a.ota_setting("source_addr")).lstrip("+"):
            return n, oid, address
    raise InitError(f"{a.data_dir} knows every peer SM-SR OID under {PEER_SMSR_ARC}")
