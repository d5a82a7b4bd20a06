"""SQLAlchemy mapping of the SM-SR's EIS registry, and its conversion to and from ``eis`` values.

One row per eUICC (``euicc``), its security domains (ISD-R, ECASD) with their keysets, one row per
profile, the eUICC's AuditTrail records and its additional properties. The EumSignedInfo and
EumSignature are also kept verbatim, because the EUM's signature covers those exact bytes.

Key values never reach the database in clear: a security domain's keysets are stored with their key
values blanked, and the values sealed apart (``SecurityDomainRow.sealed_keys``, keys.secretbox with the
EID and domain as associated data). Only the code that talks to the card opens them (smsr_core.sms_link).
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from types import SimpleNamespace

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    bindparam,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from keys.secretbox import SecretBox
from persistence.db import Base
from sgp02 import eis as v

from persistence.prepared import DbapiConnection, Prepared


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


class Euicc(Base):
    __tablename__ = "euicc"

    eid: Mapped[str] = mapped_column(String(64), primary_key=True)
    eum_id: Mapped[str] = mapped_column(String(64), index=True)
    production_date: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    platform_type: Mapped[str] = mapped_column(String(100))
    platform_version: Mapped[str] = mapped_column(String(32))
    isd_p_loadfile_aid: Mapped[str] = mapped_column(String(32))
    isd_p_module_aid: Mapped[str] = mapped_column(String(32))
    cattp_support: Mapped[bool] = mapped_column(Boolean)
    cattp_version: Mapped[str | None] = mapped_column(String(32))
    http_support: Mapped[bool] = mapped_column(Boolean)
    http_version: Mapped[str | None] = mapped_column(String(32))
    secure_packet_version: Mapped[str] = mapped_column(String(32))
    remote_provisioning_version: Mapped[str] = mapped_column(String(32))
    # The EUM's signed document (a few KB): read only when an EIS is built (eis_value, load_eis), not with every
    # SMS exchanged with the card.
    signed_info_xml: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    eum_signature_xml: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    remaining_memory: Mapped[int] = mapped_column(BigInteger)
    available_memory_for_profiles: Mapped[int] = mapped_column(BigInteger)
    last_audit_date: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    smsr_id: Mapped[str] = mapped_column(String(64))
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    domains: Mapped[list["SecurityDomainRow"]] = relationship(
        back_populates="euicc", cascade="all, delete-orphan", order_by="SecurityDomainRow.id"
    )
    profiles: Mapped[list["ProfileRow"]] = relationship(
        back_populates="euicc", cascade="all, delete-orphan", order_by="ProfileRow.id"
    )
    # The ISD-R alone (read-only view of ``domains``): what every SMS to or from the card needs (its SCP80 keys and
    # TAR), loaded with the eUICC without the ECASD.
    isd_r: Mapped["SecurityDomainRow | None"] = relationship(
        primaryjoin="and_(Euicc.eid == SecurityDomainRow.eid, SecurityDomainRow.role == 'ISD-R')",
        viewonly=True, uselist=False,
    )
    properties: Mapped[list["AdditionalProperty"]] = relationship(
        cascade="all, delete-orphan", order_by="AdditionalProperty.key"
    )


class SecurityDomainRow(Base):
    __tablename__ = "security_domain"
    __table_args__ = (UniqueConstraint("eid", "role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    eid: Mapped[str] = mapped_column(ForeignKey("euicc.eid", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(8))
    aid: Mapped[str] = mapped_column(String(32))
    tars: Mapped[list] = mapped_column(JSON)
    sin: Mapped[str] = mapped_column(String(32))
    sdin: Mapped[str] = mapped_column(String(32))
    # Keysets as stored values, key values blanked: [{"version", "type", "cntr", "items": [...]}]; see _keysets_*.
    keysets: Mapped[list] = mapped_column(JSON)
    # The key values, sealed (keys.secretbox; context "<EID>/<role>"): {"<version>/<index>/<type>": value hex}.
    sealed_keys: Mapped[bytes | None] = mapped_column(LargeBinary)

    euicc: Mapped[Euicc] = relationship(back_populates="domains")


class ProfileRow(Base):
    __tablename__ = "profile"
    __table_args__ = (UniqueConstraint("eid", "isd_p_aid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    eid: Mapped[str] = mapped_column(ForeignKey("euicc.eid", ondelete="CASCADE"), index=True)
    iccid: Mapped[str] = mapped_column(String(24), unique=True)
    isd_p_aid: Mapped[str] = mapped_column(String(32))
    mno_id: Mapped[str] = mapped_column(String(64), index=True)
    fallback_attribute: Mapped[bool] = mapped_column(Boolean)
    imsi: Mapped[str | None] = mapped_column(String(15))
    msisdn: Mapped[str | None] = mapped_column(String(15))
    state: Mapped[str] = mapped_column(String(10))
    smdp_id: Mapped[str | None] = mapped_column(String(64))
    profile_type: Mapped[str | None] = mapped_column(String(100))
    allocated_memory: Mapped[int] = mapped_column(BigInteger)
    free_memory: Mapped[int | None] = mapped_column(BigInteger)
    pol2: Mapped[list] = mapped_column(JSON)  # [[subject, action, qualification], ...]

    euicc: Mapped[Euicc] = relationship(back_populates="profiles")


class EisAuditRecord(Base):
    """One record of an eUICC's AuditTrail (card operations and notifications)."""

    __tablename__ = "eis_audit_record"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    eid: Mapped[str] = mapped_column(ForeignKey("euicc.eid", ondelete="CASCADE"), index=True)
    smsr_id: Mapped[str] = mapped_column(String(64))
    operation_date: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    operation_type: Mapped[str] = mapped_column(String(4))
    requester_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str | None] = mapped_column(String(24))
    subject: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(16))
    isd_p_aid: Mapped[str | None] = mapped_column(String(32))
    iccid: Mapped[str | None] = mapped_column(String(24))
    imei: Mapped[str | None] = mapped_column(String(32))
    meid: Mapped[str | None] = mapped_column(String(32))


class AdditionalProperty(Base):
    __tablename__ = "eis_property"

    eid: Mapped[str] = mapped_column(ForeignKey("euicc.eid", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(String(2000))


# -- conversions -------------------------------------------------------------------------------


def _keysets_to_json(keysets: tuple[v.Keyset, ...]) -> list:
    """The keysets as stored: every key value blanked (the values are sealed apart, :func:`key_values`)."""
    out = []
    for ks in keysets:
        items = []
        for item in ks.items:
            if isinstance(item, v.Key):
                items.append({"key": {"index": item.index, "kcv": item.kcv,
                                      "components": [[kind, ""] for kind, _ in item.components]}})
            else:
                items.append({"certificate": {"index": item.index, "ca_id": item.ca_id, "value": item.value}})
        out.append({"version": ks.version, "type": ks.type, "cntr": ks.cntr, "items": items})
    return out


def _keysets_from_json(data: list) -> tuple[v.Keyset, ...]:
    keysets = []
    for ks in data:
        items: list[v.Key | v.KeysetCertificate] = []
        for item in ks["items"]:
            if "key" in item:
                k = item["key"]
                items.append(v.Key(k["index"], k["kcv"], tuple(tuple(c) for c in k["components"])))
            else:
                c = item["certificate"]
                items.append(v.KeysetCertificate(c["index"], c["ca_id"], c["value"]))
        keysets.append(v.Keyset(ks["version"], ks["type"], ks["cntr"], tuple(items)))
    return tuple(keysets)


def key_values(keysets: tuple[v.Keyset, ...]) -> dict[str, str]:
    """Every key value of ``keysets`` by "<version>/<index>/<type>" (what :func:`domain_row` seals)."""
    return {f"{ks.version}/{item.index}/{kind}": value for ks in keysets for item in ks.items
            if isinstance(item, v.Key) for kind, value in item.components if value}


def _with_values(keysets: tuple[v.Keyset, ...], values: dict[str, str]) -> tuple[v.Keyset, ...]:
    return tuple(replace(ks, items=tuple(
        replace(item, components=tuple((kind, values.get(f"{ks.version}/{item.index}/{kind}", value))
                                       for kind, value in item.components))
        if isinstance(item, v.Key) else item for item in ks.items)) for ks in keysets)


def sealing_context(eid: str, role: str) -> str:
    return f"{eid.upper()}/{role}"


def domain_row(sd: v.SecurityDomain, eid: str, box: SecretBox) -> SecurityDomainRow:
    values = key_values(sd.keysets)
    return SecurityDomainRow(
        role=sd.role, aid=sd.aid, tars=list(sd.tars), sin=sd.sin, sdin=sd.sdin, keysets=_keysets_to_json(sd.keysets),
        sealed_keys=box.seal(sealing_context(eid, sd.role), values) if values else None,
    )


def domain_value(row: SecurityDomainRow, box: SecretBox | None = None) -> v.SecurityDomain:
    """The security domain; with ``box``, its key values opened (without it, blank: what may leave the SM-SR)."""
    keysets = _keysets_from_json(row.keysets)
    if box is not None and row.sealed_keys is not None:
        keysets = _with_values(keysets, box.open(sealing_context(row.eid, row.role), row.sealed_keys))
    return v.SecurityDomain(
        aid=row.aid, role=row.role, sin=row.sin, sdin=row.sdin, tars=tuple(row.tars), keysets=keysets)


def seal_clear_keys(session: Session, box: SecretBox) -> int:
    """Seal the key values a database written before they were sealed still holds in clear; how many domains."""
    sealed = 0
    for row in session.scalars(select(SecurityDomainRow).where(SecurityDomainRow.sealed_keys.is_(None))):
        values = key_values(_keysets_from_json(row.keysets))
        if values:
            row.sealed_keys = box.seal(sealing_context(row.eid, row.role), values)
            row.keysets = _keysets_to_json(_keysets_from_json(row.keysets))
            sealed += 1
    return sealed


def profile_row(p: v.ProfileInfo) -> ProfileRow:
    row = ProfileRow()
    apply_profile(row, p)
    return row


def apply_profile(row: ProfileRow, p: v.ProfileInfo) -> None:
    row.iccid = p.iccid
    row.isd_p_aid = p.isd_p_aid
    row.mno_id = p.mno_id
    row.fallback_attribute = p.fallback_attribute
    row.imsi = p.subscription_address.imsi
    row.msisdn = p.subscription_address.msisdn
    row.state = p.state.value
    row.smdp_id = p.smdp_id
    row.profile_type = p.profile_type
    row.allocated_memory = p.allocated_memory
    row.free_memory = p.free_memory
    row.pol2 = [[r.subject, r.action, r.qualification] for r in p.pol2]


def profile_value(row: ProfileRow) -> v.ProfileInfo:
    return v.ProfileInfo(
        iccid=row.iccid,
        isd_p_aid=row.isd_p_aid,
        mno_id=row.mno_id,
        fallback_attribute=row.fallback_attribute,
        subscription_address=v.SubscriptionAddress(row.imsi, row.msisdn),
        state=v.ProfileState(row.state),
        allocated_memory=row.allocated_memory,
        pol2=tuple(v.Pol2Rule(*r) for r in row.pol2),
        smdp_id=row.smdp_id,
        profile_type=row.profile_type,
        free_memory=row.free_memory,
    )


def audit_value(row: EisAuditRecord) -> v.AuditRecord:
    return v.AuditRecord(
        eid=row.eid,
        smsr_id=row.smsr_id,
        operation_date=_utc(row.operation_date),
        operation_type=row.operation_type,
        requester_id=row.requester_id,
        status=row.status,
        subject=row.subject,
        reason=row.reason,
        isd_p_aid=row.isd_p_aid,
        iccid=row.iccid,
        imei=row.imei,
        meid=row.meid,
    )


def euicc_row(eis: v.Eis, registered_at: datetime, box: SecretBox) -> Euicc:
    si = eis.signed_info
    caps = si.capabilities
    row = Euicc(
        eid=si.eid,
        eum_id=si.eum_id,
        production_date=si.production_date,
        platform_type=si.platform_type,
        platform_version=si.platform_version,
        isd_p_loadfile_aid=si.isd_p_loadfile_aid,
        isd_p_module_aid=si.isd_p_module_aid,
        cattp_support=caps.cattp_support,
        cattp_version=caps.cattp_version,
        http_support=caps.http_support,
        http_version=caps.http_version,
        secure_packet_version=caps.secure_packet_version,
        remote_provisioning_version=caps.remote_provisioning_version,
        signed_info_xml=eis.signed_info_xml,
        eum_signature_xml=eis.eum_signature_xml,
        remaining_memory=eis.remaining_memory,
        available_memory_for_profiles=eis.available_memory_for_profiles,
        last_audit_date=eis.last_audit_date,
        smsr_id=eis.smsr_id,
        registered_at=registered_at,
    )
    row.domains = [domain_row(si.ecasd, si.eid, box), domain_row(eis.isd_r, si.eid, box)]
    row.profiles = [profile_row(p) for p in eis.profiles]
    row.properties = [AdditionalProperty(key=k, value=val) for k, val in eis.additional_properties]
    return row


def eis_value(session: Session, row: Euicc) -> v.Eis:
    """The EIS of an eUICC row loaded with the ORM (its relationships load lazily)."""
    records = session.scalars(
        select(EisAuditRecord).where(EisAuditRecord.eid == row.eid).order_by(EisAuditRecord.id)
    ).all()
    return _eis_from_rows(row, row.domains, row.profiles, records, row.properties)


# The read path of GetEIS (:func:`load_eis`): Core SELECTs prepared once (persistence.prepared) on one connection,
# no ORM identity map and no lazy loads. The euicc row comes with its two security domains in one joined SELECT (2 rows); profiles,
# AuditTrail records and properties follow, each one indexed SELECT on ``eid``. Columns are the mapped
# attribute names, so a Core row reads like an ORM row in the ``*_value`` functions above.
_EU, _SD, _PR = Euicc.__table__, SecurityDomainRow.__table__, ProfileRow.__table__
_AR, _AP = EisAuditRecord.__table__, AdditionalProperty.__table__
_SD_COLS = ("role", "aid", "tars", "sin", "sdin", "keysets")  # no sealed_keys: nothing secret is read
_LOAD_EUICC = Prepared(
    select(*(c for c in _EU.c if c.name != "registered_at"),
           *(_SD.c[name].label(f"sd_{name}") for name in _SD_COLS))
    .join_from(_EU, _SD, _SD.c.eid == _EU.c.eid)
    .where(_EU.c.eid == bindparam("eid"))
    .order_by(_SD.c.id)
)
_LOAD_PROFILES = Prepared(select(_PR).where(_PR.c.eid == bindparam("eid")).order_by(_PR.c.id))
_LOAD_RECORDS = Prepared(select(_AR).where(_AR.c.eid == bindparam("eid")).order_by(_AR.c.id))
_LOAD_PROPERTIES = Prepared(select(_AP.c.key, _AP.c.value).where(_AP.c.eid == bindparam("eid")).order_by(_AP.c.key))


# PostgreSQL: the same EIS in one round trip instead of 4. The security domains, profiles, AuditTrail records and
# properties come as one JSON array each (``json_agg`` of ``json_build_object``, keys = column names, in the order
# of the 4 SELECTs above), read from scalar subqueries on ``eid`` (the same indexes). psycopg2 decodes the JSON;
# JSON columns nest as they are, timestamps arrive as ISO 8601 text (parsed back below), booleans and integers
# as themselves. SQLite keeps the 4 SELECTs: they are calls into the same process, and decoding JSON there costs
# more than it saves (no round trips to save).
def _json_rows(table, order_by, columns=None):
    columns = [c for c in table.c if columns is None or c.name in columns]
    obj = func.json_build_object(*(x for c in columns for x in (literal_column(f"'{c.name}'"), c)))
    return (select(func.coalesce(func.json_agg(aggregate_order_by(obj, *order_by)), literal_column("'[]'::json")))
            .where(table.c.eid == _EU.c.eid).scalar_subquery())


_LOAD_EIS_JSON = Prepared(
    select(*(c for c in _EU.c if c.name != "registered_at"),
           _json_rows(_SD, [_SD.c.id], ("eid",) + _SD_COLS).label("domains_json"),
           _json_rows(_PR, [_PR.c.id]).label("profiles_json"),
           _json_rows(_AR, [_AR.c.id]).label("records_json"),
           _json_rows(_AP, [_AP.c.key], ("key", "value")).label("properties_json"))
    .where(_EU.c.eid == bindparam("eid"))
)


def _load_eis_json(conn: DbapiConnection, eid: str) -> v.Eis | None:
    row = _LOAD_EIS_JSON.first(conn, eid=eid)
    if row is None:
        return None
    records = []
    for r in row.records_json:
        r["operation_date"] = datetime.fromisoformat(r["operation_date"])
        records.append(SimpleNamespace(**r))
    return _eis_from_rows(
        row, [SimpleNamespace(sealed_keys=None, **d) for d in row.domains_json],
        [SimpleNamespace(**p) for p in row.profiles_json], records,
        [SimpleNamespace(**p) for p in row.properties_json],
    )


class _DomainColumns:
    """One security domain's columns out of a joined euicc row (the ``sd_`` labels)."""

    __slots__ = ("eid",) + _SD_COLS + ("sealed_keys",)

    def __init__(self, row) -> None:
        self.eid = row.eid
        for name in _SD_COLS:
            setattr(self, name, getattr(row, f"sd_{name}"))
        self.sealed_keys = None


def load_eis(conn: DbapiConnection, eid: str) -> v.Eis | None:
    """The EIS of ``eid`` (key values blank), or None when the eUICC is unknown; no ORM. On PostgreSQL one
    SELECT (:data:`_LOAD_EIS_JSON`), elsewhere 4."""
    if conn.engine.dialect.name == "postgresql":
        return _load_eis_json(conn, eid)
    return _load_eis_selects(conn, eid)


def _load_eis_selects(conn: DbapiConnection, eid: str) -> v.Eis | None:
    rows = _LOAD_EUICC.all(conn, eid=eid)
    if not rows:
        return None
    return _eis_from_rows(
        rows[0], [_DomainColumns(r) for r in rows],
        _LOAD_PROFILES.all(conn, eid=eid),
        _LOAD_RECORDS.all(conn, eid=eid),
        _LOAD_PROPERTIES.all(conn, eid=eid),
    )


def _eis_from_rows(row, domain_rows, profile_rows, record_rows, property_rows) -> v.Eis:
    domains = {d.role: domain_value(d) for d in domain_rows}
    caps = v.EuiccCapabilities(
        cattp_support=row.cattp_support,
        http_support=row.http_support,
        secure_packet_version=row.secure_packet_version,
        remote_provisioning_version=row.remote_provisioning_version,
        cattp_version=row.cattp_version,
        http_version=row.http_version,
    )
    signed = v.EumSignedInfo(
        eid=row.eid,
        eum_id=row.eum_id,
        production_date=_utc(row.production_date),
        platform_type=row.platform_type,
        platform_version=row.platform_version,
        isd_p_loadfile_aid=row.isd_p_loadfile_aid,
        isd_p_module_aid=row.isd_p_module_aid,
        ecasd=domains["ECASD"],
        capabilities=caps,
    )
    return v.Eis(
        signed_info=signed,
        signed_info_xml=row.signed_info_xml,
        eum_signature_xml=row.eum_signature_xml,
        remaining_memory=row.remaining_memory,
        available_memory_for_profiles=row.available_memory_for_profiles,
        smsr_id=row.smsr_id,
        isd_r=domains["ISD-R"],
        profiles=tuple(profile_value(p) for p in profile_rows),
        last_audit_date=_utc(row.last_audit_date),
        audit_trail=tuple(audit_value(r) for r in record_rows),
        additional_properties=tuple((p.key, p.value) for p in property_rows),
    )
