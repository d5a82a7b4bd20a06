"""The SM-SR's EIS registry: registration (ES1), reads (GetEIS) and registry updates.

Rules kept here (no SOAP, no HTTP):
- RegisterEIS: the caller is the EUM named in the EIS (``Eum-id``); the EumSignature verifies
  with that EUM's registered certificate; the ECASD certificate chains CI -> EUM -> ECASD and is
  in date; the EIS names this SM-SR; the EID and every ICCID are new.
- Who may see and act on a profile (:func:`sgp02.roles.may_manage`): its MNO (ES4); an SM-DP (ES3) when it installed the
  profile, or when the profile's MNO has named that SM-DP as one acting for it (persistence.entities.MnoSmdp:
  v3's ES3 messages do not say for which MNO an SM-DP acts, so the MNO says it once; a profile loaded at
  manufacturing is no SM-DP's until its MNO names one); the SM-SR itself for its automatic operations.
- Who sees what of an EIS (:func:`sgp02.eis.eis_seen_by`): never the ISD-R's key values; only the profiles the caller
  may manage, and only the AuditTrail records about those profiles or requested by the caller. So no ICCID,
  MSISDN, POL2, AuditTrail record or requester of another MNO reaches an MNO, on ES4 or (through the
  SM-DP, which applies the same function for the MNO it answers) on ES2. An eUICC's own data (EID, ECASD,
  capabilities, memory) is visible to any SM-DP, which needs it before a first download; ES4-GetEIS by an
  MNO with no profile on the eUICC is refused (8.6/1.2).
- POL2 rules are validated before they are stored (:func:`validate_pol2`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from lxml import etree
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload

from keys.errors import SignatureError
from keys.secretbox import SecretBox
from keys.test_credentials import is_public_test_key
from keys.xmldsig import verify_eis_signature
from persistence.db import Database
from persistence.prepared import dbapi
from sgp02 import codes
from sgp02 import eis as v
from sgp02.codes import FunctionFailed
from sgp02.ecasd import verified_ecasd_key
from sgp02.eis import eis_seen_by
from sgp02.roles import Caller, may_manage

from . import isdp
from .models import Euicc, ProfileRow, apply_profile, euicc_row, load_eis, profile_value

POL2_ACTIONS = ("ENABLE", "DISABLE", "DELETE")
POL2_QUALIFICATIONS = ("Not-Allowed", "Auto-Delete")


def validate_pol2(rules: tuple[v.Pol2Rule, ...]) -> None:
    """POL2 semantics beyond the XSD (8.2.3/2.1 when broken).

    - Subject PROFILE only; actions ENABLE/DISABLE/DELETE; qualifications Not-Allowed/Auto-Delete.
    - Auto-Delete only qualifies DISABLE ("delete the profile when it gets disabled",
      sgp02-wire.md 5.3); on ENABLE or DELETE it means nothing and is refused.
    - At most one rule per action: two rules on one action would contradict or repeat.
    """
    seen: set[str] = set()
    for rule in rules:
        if rule.subject != "PROFILE" or rule.action not in POL2_ACTIONS or rule.qualification not in POL2_QUALIFICATIONS:
            raise FunctionFailed(codes.POL2_INVALID, f"POL2 rule {rule.subject}/{rule.action}/{rule.qualification} is not valid")
        if rule.qualification == "Auto-Delete" and rule.action != "DISABLE":
            raise FunctionFailed(codes.POL2_INVALID, f"Auto-Delete cannot qualify {rule.action}; only DISABLE")
        if rule.action in seen:
            raise FunctionFailed(codes.POL2_INVALID, f"more than one POL2 rule for {rule.action}")
        seen.add(rule.action)


def load_euicc(s: Session, eid: str) -> Euicc:
    """The eUICC row with its profiles (one statement, none when the session holds it already); 8.1.1/3.9 when
    there is none."""
    key = eid.upper()
    row = s.identity_map.get(s.identity_key(Euicc, key))
    if row is None:
        row = s.scalars(_LOAD_EUICC, {"eid": key}).unique().first()
    if row is None:
        raise FunctionFailed(codes.EID_UNKNOWN, f"EID {eid} is not known to this SM-SR", subject_identifier=eid)
    return row


_LOAD_EUICC = select(Euicc).options(joinedload(Euicc.profiles)).where(Euicc.eid == bindparam("eid"))  # built once


@dataclass(frozen=True)
class EuiccView:
    """An eUICC as the access checks of a request read it (smsr_core.platform.Platform._check_access): its EID and its
    profile rows (Core rows with :class:`ProfileRow`'s columns, read-only), without the ORM's objects."""

    eid: str
    profiles: tuple[Any, ...]


_E, _PR = Euicc.__table__, ProfileRow.__table__
_VIEW = (select(_E.c.eid.label("euicc_eid"), *_PR.c).select_from(_E.outerjoin(_PR, _PR.c.eid == _E.c.eid))
         .where(_E.c.eid == bindparam("eid")).order_by(_PR.c.id))


def euicc_view(s: Session, eid: str) -> Euicc | EuiccView:
    """:func:`load_euicc` for reading only, in one Core statement (a request's accept reads the eUICC only to decide
    who may ask what of it): the session's own row when it holds one already; 8.1.1/3.9 when there is none."""
    key = eid.upper()
    held = s.identity_map.get(s.identity_key(Euicc, key))
    if held is not None:
        return held
    rows = s.execute(_VIEW, {"eid": key}).all()
    if not rows:
        raise FunctionFailed(codes.EID_UNKNOWN, f"EID {eid} is not known to this SM-SR", subject_identifier=eid)
    return EuiccView(key, tuple(r for r in rows if r.id is not None))


def profile_for_caller(s: Session, caller: Caller, eid: str, iccid: str) -> ProfileRow:
    """The profile ``iccid`` on eUICC ``eid``, if ``caller`` may manage it (see the module doc)."""
    load_euicc(s, eid)
    row = s.scalars(select(ProfileRow).where(ProfileRow.iccid == iccid.upper())).first()
    if row is None:
        raise FunctionFailed(codes.ICCID_UNKNOWN, f"ICCID {iccid} is not known", subject_identifier=iccid)
    if row.eid != eid.upper():
        raise FunctionFailed(codes.ICCID_OTHER_EUICC, f"ICCID {iccid} is on another eUICC", subject_identifier=iccid)
    if not may_manage(caller, row):
        raise FunctionFailed(codes.ICCID_NOT_ALLOWED, f"{caller.oid} may not manage profile {iccid}",
                             subject_identifier=iccid)
    return row


class EisRegistry:
    def __init__(self, db: Database, smsr_id: str, ci_cert_pem: bytes, box: SecretBox, *,
                 refuse_test_keys: bool = False) -> None:
        self.db = db
        self.smsr_id = smsr_id
        self.ci_cert_pem = ci_cert_pem
        self.box = box  # seals the card key sets of every EIS registered (smsr_core.models)
        self.refuse_test_keys = refuse_test_keys  # production mode: a card key anyone knows is refused (8.6/2.1)

    # -- ES1 ------------------------------------------------------------------------------------

    def register_eis(self, caller: Caller, eum_signing_cert_pem: bytes | None, eis: v.Eis,
                     signed_eis: etree._Element, *, now: datetime | None = None) -> None:
        now = now or datetime.now(timezone.utc)
        eid = eis.eid
        if eis.signed_info.eum_id != caller.oid:
            raise FunctionFailed(codes.EIS_NOT_ALLOWED, f"Eum-id {eis.signed_info.eum_id} is not the caller {caller.oid}",
                                 subject_identifier=eid)
        if not eum_signing_cert_pem:
            raise FunctionFailed(codes.EIS_SIGNATURE_INVALID, f"no EUM certificate is registered for {caller.oid}",
                                 subject_identifier=eid)
        try:
            verify_eis_signature(signed_eis, eum_signing_cert_pem)
        except SignatureError as exc:
            raise FunctionFailed(codes.EIS_SIGNATURE_INVALID, f"EumSignature: {exc}", subject_identifier=eid) from None
        verified_ecasd_key(eis, self.ci_cert_pem, eum_signing_cert_pem, now)
        if eis.smsr_id != self.smsr_id:
            raise FunctionFailed(codes.SMSR_UNKNOWN, f"the EIS names SM-SR {eis.smsr_id}, this SM-SR is {self.smsr_id}",
                                 subject_identifier=eid)
        if self.refuse_test_keys:
            for ks in eis.isd_r.keysets:
                for key in (i for i in ks.items if isinstance(i, v.Key)):
                    for _, value in key.components:
                        why = is_public_test_key(bytes.fromhex(value)) if value else None
                        if why:
                            raise FunctionFailed(codes.EIS_INVALID, f"ISD-R key set {ks.version} key {key.index} is "
                                                 f"{why}: refused in production mode", subject_identifier=eid)
        for p in eis.profiles:
            validate_pol2(p.pol2)
        with self.db.session() as s:
            if s.get(Euicc, eid) is not None:
                raise FunctionFailed(codes.EID_ALREADY_REGISTERED, f"EID {eid} is already registered", subject_identifier=eid)
            iccids = [p.iccid for p in eis.profiles]
            if len(set(iccids)) != len(iccids):
                raise FunctionFailed(codes.ICCID_IN_USE, "the EIS lists one ICCID twice", subject_identifier=eid)
            if iccids:
                taken = s.scalars(select(ProfileRow.iccid).where(ProfileRow.iccid.in_(iccids))).first()
                if taken:
                    raise FunctionFailed(codes.ICCID_IN_USE, f"ICCID {taken} is already registered", subject_identifier=taken)
            s.add(euicc_row(eis, now, self.box))

    # -- reads ----------------------------------------------------------------------------------

    def get_eis(self, caller: Caller, eid: str) -> v.Eis:
        """The EIS as ``caller`` may see it (see the module doc)."""
        with dbapi(self.db.engine) as c:  # a read: prepared SELECTs (models.load_eis), nothing to commit
            eis = load_eis(c, eid.upper())
        if eis is None:
            raise FunctionFailed(codes.EID_UNKNOWN, f"EID {eid} is not known to this SM-SR", subject_identifier=eid)
        eis = eis_seen_by(eis, caller)
        if caller.role == "mno" and not eis.profiles:
            raise FunctionFailed(codes.EIS_NOT_ALLOWED, f"{caller.oid} has no profile on eUICC {eid}",
                                 subject_identifier=eid)
        return eis

    def known_eids(self) -> list[str]:
        with self.db.session() as s:
            return list(s.scalars(select(Euicc.eid).order_by(Euicc.eid)))

    # -- registry updates -----------------------------------------------------------------------

    def _profile_for_update(self, s: Session, caller: Caller, eid: str, iccid: str) -> ProfileRow:
        return profile_for_caller(s, caller, eid, iccid)

    def update_policy_rules(self, caller: Caller, eid: str, iccid: str, pol2: tuple[v.Pol2Rule, ...]) -> v.ProfileInfo:
        validate_pol2(pol2)
        with self.db.session() as s:
            row = self._profile_for_update(s, caller, eid, iccid)
            profile = replace(profile_value(row), pol2=pol2)
            apply_profile(row, profile)
            return profile

    def profile_download_completed(self, caller: Caller, eid: str, iccid: str, *, profile_type: str | None,
                                   address: v.SubscriptionAddress | None,
                                   pol2: tuple[v.Pol2Rule, ...] | None) -> v.ProfileInfo:
        """ES3-ProfileDownloadCompleted: the SM-DP reports that the package is installed in the ISD-P it had
        created (ES8 runs end to end between the SM-DP and the ISD-P, so this report is how the SM-SR learns
        it). The profile goes from Created to Disabled with its type, subscription address and POL2."""
        if pol2 is not None:
            validate_pol2(pol2)
        with self.db.session() as s:
            row = self._profile_for_update(s, caller, eid, iccid)
            try:  # the ISD-P lifecycle decides (smsr_core.isdp: Created or Disabled, on PERSONALISED, -> Disabled)
                personalised = isdp.after(v.ProfileState(row.state), isdp.Event.PERSONALISED)
            except isdp.IllegalTransition:
                raise FunctionFailed(codes.EUICC_REFUSED, f"profile {iccid} is {row.state}, not being downloaded",
                                     subject_identifier=iccid) from None
            if address is not None:
                self._check_address_free(s, row, address, iccid)
            profile = profile_value(row)
            profile = replace(
                profile, state=personalised.to,
                profile_type=profile_type if profile_type is not None else profile.profile_type,
                subscription_address=address if address is not None else profile.subscription_address,
                pol2=pol2 if pol2 is not None else profile.pol2,
            )
            apply_profile(row, profile)
            return profile

    def _check_address_free(self, s: Session, row: ProfileRow, address: v.SubscriptionAddress, iccid: str) -> None:
        clash = None
        if address.imsi:
            clash = s.scalars(select(ProfileRow.iccid).where(ProfileRow.imsi == address.imsi, ProfileRow.id != row.id)).first()
        if clash is None and address.msisdn:
            clash = s.scalars(select(ProfileRow.iccid).where(ProfileRow.msisdn == address.msisdn, ProfileRow.id != row.id)).first()
        if clash is not None:
            raise FunctionFailed(codes.SUBSCRIPTION_ADDRESS_NOT_ALLOWED,
                                 f"the subscription address is already used by profile {clash}", subject_identifier=iccid)

    def update_subscription_address(self, caller: Caller, eid: str, iccid: str,
                                    address: v.SubscriptionAddress) -> v.ProfileInfo:
        with self.db.session() as s:
            row = self._profile_for_update(s, caller, eid, iccid)
            self._check_address_free(s, row, address, iccid)
            profile = replace(profile_value(row), subscription_address=address)
            apply_profile(row, profile)
            return profile
