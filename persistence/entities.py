"""Entities: every party esx talks to (MNO, SM-DP, SM-SR, EUM, eUICC owner), and who may call what.

An entity has an OID (its SGP.02 identifier, carried in ``wsa:From?EntityId=``), a role, a name,
endpoint URLs where callbacks and notifications are delivered, and a certificate. In production
mode the caller is identified by its TLS client certificate, which must be the one registered
here; in the embedded default (loopback only) by the ``wsa:From`` EntityId.

An MNO names the SM-DPs that act for it (:class:`MnoSmdp`, ``esx entity add --role mno --smdp OID``).
The SM-SR lets an SM-DP see and act on a profile only when the SM-DP installed it or the profile's MNO
named that SM-DP (smsr_core.registry.may_manage): SGP.02 v3's ES3 messages do not say for which MNO an
SM-DP acts, so the MNO says it once, here.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import BigInteger, DateTime, Integer, String, Text, bindparam, delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from persistence.db import Base
from persistence.prepared import Prepared, dbapi
from sgp02.roles import Role


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Entity(Base):
    __tablename__ = "entity"

    oid: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(8), index=True)
    name: Mapped[str] = mapped_column(String(100))
    endpoint: Mapped[str | None] = mapped_column(String(400))
    notification_endpoint: Mapped[str | None] = mapped_column(String(400))
    cert_pem: Mapped[str | None] = mapped_column(Text)
    cert_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    # For an EUM: the EUM certificate (X.509, issued by the CI) that signs EIS and ECASD
    # certificates. Distinct from ``cert_pem``, the TLS client certificate that identifies it.
    signing_cert_pem: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)

    @property
    def role_enum(self) -> Role:
        return Role(self.role)

    @property
    def notification_address(self) -> str | None:
        return self.notification_endpoint or self.endpoint


class MnoSmdp(Base):
    """MNO ``mno_id`` has named SM-DP ``smdp_id`` as one that acts for it (see the module doc)."""

    __tablename__ = "mno_smdp"

    mno_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    smdp_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


def set_mno_smdps(session: Session, mno_id: str, smdp_ids: list[str]) -> None:
    """The SM-DPs that act for ``mno_id`` are exactly ``smdp_ids``."""
    session.execute(delete(MnoSmdp).where(MnoSmdp.mno_id == mno_id))
    for smdp_id in dict.fromkeys(smdp_ids):
        session.add(MnoSmdp(mno_id=mno_id, smdp_id=smdp_id))
    session.flush()


def mnos_served_by(session: Session, smdp_id: str) -> frozenset[str]:
    """The MNOs that have named SM-DP ``smdp_id``."""
    return frozenset(session.scalars(select(MnoSmdp.mno_id).where(MnoSmdp.smdp_id == smdp_id)))


def smdps_of(session: Session, mno_id: str) -> list[str]:
    return list(session.scalars(select(MnoSmdp.smdp_id).where(MnoSmdp.mno_id == mno_id).order_by(MnoSmdp.smdp_id)))


def cert_fingerprint(cert_pem_or_der: bytes) -> str:
    """SHA-256 of the DER certificate, hex; accepts PEM or DER."""
    if cert_pem_or_der.lstrip().startswith(b"-----BEGIN"):
        der = x509.load_pem_x509_certificate(cert_pem_or_der).public_bytes(Encoding.DER)
    else:
        der = cert_pem_or_der
    return hashlib.sha256(der).hexdigest()


def upsert_entity(
    session: Session,
    *,
    oid: str,
    role: Role | str,
    name: str,
    endpoint: str | None = None,
    notification_endpoint: str | None = None,
    cert_pem: bytes | None = None,
    signing_cert_pem: bytes | None = None,
) -> Entity:
    """Create or update one entity (``esx entity add``)."""
    role = Role(role)
    entity = session.get(Entity, oid)
    if entity is None:
        entity = Entity(oid=oid, role=role.value, name=name)
        session.add(entity)
    entity.role = role.value
    entity.name = name
    if endpoint is not None:
        entity.endpoint = endpoint
    if notification_endpoint is not None:
        entity.notification_endpoint = notification_endpoint
    if cert_pem is not None:
        x509.load_pem_x509_certificate(cert_pem)  # refuse what is not a certificate
        entity.cert_pem = cert_pem.decode()
        entity.cert_sha256 = cert_fingerprint(cert_pem)
    if signing_cert_pem is not None:
        x509.load_pem_x509_certificate(signing_cert_pem)
        entity.signing_cert_pem = signing_cert_pem.decode()
    session.flush()
    return entity


def get_entity(session: Session, oid: str | None) -> Entity | None:
    if not oid:
        return None
    return session.get(Entity, oid)


class EntityVersion(Base):
    """One number that every change to ``entity`` or ``mno_smdp`` moves, by database triggers (migration 0008)."""

    __tablename__ = "entity_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class EntityCache:
    """Entities by OID (a caller's ``wsa:From``, the SM-SR an SM-DP calls for every ES3 request, the EUM of every
    ECASD check) or by TLS client-certificate fingerprint (a caller), with the MNOs an SM-DP acts for
    (``served_mnos``): esx.server.EsxRuntime.caller_for on every call, and the peers a process calls.

    Entities change rarely (``esx entity add``) and are read on every call. The rule: an entity read is kept with
    the registry's version (:class:`EntityVersion`, moved by triggers on every change to ``entity`` or ``mno_smdp``,
    by any process, the CLI included) and handed out again while that version has not moved: each lookup costs one
    read of one row instead of the entity's and its pairings'. A change, a replaced or withdrawn certificate
    included, is seen at the next call. "Not found" is never kept. The values handed out are shared between calls and
    threads: read them, never change them.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._entries: dict[tuple[str, str], tuple[int, Entity]] = {}

    def by_oid(self, oid: str) -> Entity | None:
        return self._get("oid", oid)

    def by_certificate(self, cert_der: bytes) -> Entity | None:
        return self._get("cert", hashlib.sha256(cert_der).hexdigest())

    def _get(self, kind: str, key: str) -> Entity | None:
        with dbapi(self.engine) as c:
            version = _VERSION.first(c).version
            hit = self._entries.get((kind, key))
            if hit is not None and hit[0] == version:
                return hit[1]
            row = (_ENTITY_BY_OID if kind == "oid" else _ENTITY_BY_CERT).first(c, key=key)
            if row is None:
                self._entries.pop((kind, key), None)
                return None
            served = frozenset(r.mno_id for r in _MNOS_OF_SMDP.all(c, smdp=row.oid)) \
                if row.role == Role.SMDP.value else frozenset()
        entity = Entity(**row._asdict())  # detached, as get_entity's would be once its session closed
        entity.served_mnos = served
        if len(self._entries) > 10_000:  # more distinct callers than any deployment has: start again
            self._entries.clear()
        self._entries[(kind, key)] = (version, entity)
        return entity


_ENTITY = Entity.__table__
_VERSION = Prepared(select(EntityVersion.__table__.c.version))  # its one row
_ENTITY_BY_OID = Prepared(select(_ENTITY).where(_ENTITY.c.oid == bindparam("key")))
_ENTITY_BY_CERT = Prepared(select(_ENTITY).where(_ENTITY.c.cert_sha256 == bindparam("key")))
_MNOS_OF_SMDP = Prepared(select(MnoSmdp.__table__.c.mno_id).where(MnoSmdp.__table__.c.smdp_id == bindparam("smdp")))
