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
import threading
import time
from datetime import datetime, timezone
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import DateTime, String, Text, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from persistence.db import Base
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


class EntityCache:
    """Entities by OID for a process's own hot paths, where a peer is looked up for every call it is sent (the SM-DP's
    SM-SR for each ES3 call, the EUM for each ECASD check): an entity read is reused for at most ``max_age`` seconds.

    The bound on staleness: a change made by ``esx entity add`` (a new endpoint, role or certificate) reaches a
    running process within ``max_age`` seconds. Only entities found are kept, so an OID registered a moment ago is
    seen at once. Not for identifying callers (esx.server.EsxRuntime.caller_for reads the database on every request). The
    entities handed out are detached copies; several threads may share one cache."""

    def __init__(self, db, max_age: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.max_age = max_age
        self.clock = clock
        self._kept: dict[str, tuple[float, Entity]] = {}
        self._lock = threading.Lock()

    def get(self, oid: str | None) -> Entity | None:
        if not oid:
            return None
        now = self.clock()
        with self._lock:
            kept = self._kept.get(oid)
        if kept is not None and now - kept[0] < self.max_age:
            return kept[1]
        with self.db.session() as s:
            entity = get_entity(s, oid)
            if entity is None:
                return None
            s.expunge(entity)
        with self._lock:
            self._kept[oid] = (now, entity)
        return entity


def entity_by_certificate(session: Session, cert_der: bytes) -> Entity | None:
    fp = hashlib.sha256(cert_der).hexdigest()
    return session.scalars(select(Entity).where(Entity.cert_sha256 == fp)).first()
