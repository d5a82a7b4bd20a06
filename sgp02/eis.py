"""The eUICC Information Set (EIS) as plain values (sgp02-wire.md 5.1-5.3).

Field names follow the SGP.02 element names. These dataclasses are what the SM-SR core stores and
returns; the SOAP adapters turn them into ``EISType`` XML and back (``esx/eis_xml.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum

from sgp02 import plain
from sgp02.roles import Caller, may_manage


class ProfileState(str, Enum):
    """ProfileInfo/State; "Deleted" is not a state, the entry is removed."""

    CREATED = "Created"
    DISABLED = "Disabled"
    ENABLED = "Enabled"


@dataclass(frozen=True)
class Pol2Rule:
    subject: str  # only "PROFILE"
    action: str  # ENABLE | DISABLE | DELETE
    qualification: str  # Not-Allowed | Auto-Delete


@dataclass(frozen=True)
class SubscriptionAddress:
    imsi: str | None = None
    msisdn: str | None = None


@dataclass(frozen=True)
class Key:
    index: int
    kcv: str  # hex
    components: tuple[tuple[str, str], ...]  # (type hex, value hex)


@dataclass(frozen=True)
class KeysetCertificate:
    index: int
    ca_id: str
    value: str  # GP certificate, hex


@dataclass(frozen=True)
class Keyset:
    version: int
    type: str | None = None
    cntr: int | None = None
    items: tuple[Key | KeysetCertificate, ...] = ()

    def certificates(self) -> list[KeysetCertificate]:
        return [i for i in self.items if isinstance(i, KeysetCertificate)]


@dataclass(frozen=True)
class SecurityDomain:
    aid: str
    role: str  # "ISD-R" | "ECASD"
    sin: str
    sdin: str
    tars: tuple[str, ...] = ()
    keysets: tuple[Keyset, ...] = ()

    def without_secrets(self) -> "SecurityDomain":
        """The same domain with secret key values removed (certificates are public).

        Our choice: an EIS leaves the SM-SR without the ISD-R's symmetric key values; the
        keyset versions, types and counters stay, which the XSD allows (Key/Certificate are
        optional inside a Keyset).
        """
        keysets = tuple(
            replace(ks, items=tuple(i for i in ks.items if isinstance(i, KeysetCertificate)))
            for ks in self.keysets
        )
        return replace(self, keysets=keysets)

    def certificate(self) -> KeysetCertificate | None:
        for ks in self.keysets:
            for cert in ks.certificates():
                return cert
        return None


@dataclass(frozen=True)
class EuiccCapabilities:
    cattp_support: bool
    http_support: bool
    secure_packet_version: str
    remote_provisioning_version: str
    cattp_version: str | None = None
    http_version: str | None = None


@dataclass(frozen=True)
class EumSignedInfo:
    eid: str
    eum_id: str
    production_date: datetime
    platform_type: str
    platform_version: str
    isd_p_loadfile_aid: str
    isd_p_module_aid: str
    ecasd: SecurityDomain
    capabilities: EuiccCapabilities


@dataclass(frozen=True)
class ProfileInfo:
    iccid: str
    isd_p_aid: str
    mno_id: str
    fallback_attribute: bool
    subscription_address: SubscriptionAddress
    state: ProfileState
    allocated_memory: int
    pol2: tuple[Pol2Rule, ...] = ()
    smdp_id: str | None = None
    profile_type: str | None = None
    free_memory: int | None = None


@dataclass(frozen=True)
class AuditRecord:
    eid: str
    smsr_id: str
    operation_date: datetime
    operation_type: str  # 2-byte hex, e.g. "0200"
    requester_id: str | None = None
    status: str | None = None
    subject: str | None = None
    reason: str | None = None
    isd_p_aid: str | None = None
    iccid: str | None = None
    imei: str | None = None
    meid: str | None = None


@dataclass(frozen=True)
class Eis:
    signed_info: EumSignedInfo
    # The EumSignedInfo and EumSignature elements exactly as the EUM signed them (XML bytes),
    # so that whoever receives the EIS can check the EUM signature itself.
    signed_info_xml: bytes
    eum_signature_xml: bytes
    remaining_memory: int
    available_memory_for_profiles: int
    smsr_id: str
    isd_r: SecurityDomain
    profiles: tuple[ProfileInfo, ...] = ()
    last_audit_date: datetime | None = None
    audit_trail: tuple[AuditRecord, ...] = ()
    additional_properties: tuple[tuple[str, str], ...] = field(default=())

    @property
    def eid(self) -> str:
        return self.signed_info.eid

    def profile(self, iccid: str) -> ProfileInfo | None:
        for p in self.profiles:
            if p.iccid == iccid:
                return p
        return None


# -- plain data (JSON) -----------------------------------------------------------------------------


def eis_to_dict(eis: Eis) -> dict:
    """The EIS as plain data, every field (the signed XML base64, dates ISO 8601); :func:`eis_from_dict` reverses it
    exactly. What crosses a process or a database this way (an outbox event) is the value, not its XML."""
    return plain.dump(Eis, eis)


def eis_from_dict(data: dict) -> Eis:
    return plain.load(Eis, data)


# -- who sees what (the rules are in smsr_core.registry's module doc) ---------------------------


def eis_seen_by(eis: Eis, caller: Caller) -> Eis:
    """What of an EIS leaves the SM-SR for ``caller`` (smsr_core.registry's module doc): no ISD-R key values, only
    the profiles ``caller`` may manage, only the AuditTrail records about them or requested by ``caller``. The SM-DP
    applies it too, for the MNO it answers on ES2."""
    eis = replace(eis, isd_r=eis.isd_r.without_secrets())
    if caller.role == "smsr":
        return eis
    profiles = tuple(p for p in eis.profiles if may_manage(caller, p))
    iccids = {p.iccid for p in profiles}

    def seen(record: AuditRecord) -> bool:
        if record.iccid is not None:
            return record.iccid in iccids
        return record.requester_id == caller.oid

    return replace(eis, profiles=profiles, audit_trail=tuple(r for r in eis.audit_trail if seen(r)))
