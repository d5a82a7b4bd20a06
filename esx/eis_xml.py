"""EISType and its parts, XML <-> ``sgp02.eis`` values (element order from sgp02-wire.md 5.1).

Used by every interface that carries an EIS (ES1 RegisterEIS, GetEIS on ES2/ES3/ES4) and by the
SM-DP's ES3 client. Input has already passed schema validation when it reaches ``parse_*``.
"""
from __future__ import annotations

from datetime import datetime, timezone

from lxml import etree

from esx.binding.ns import GSMA
from sgp02 import eis as v

_P = "{" + GSMA + "}"


def _sub(parent: etree._Element, local: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, _P + local)
    if text is not None:
        el.text = text
    return el


def _opt(parent: etree._Element, local: str, text: str | None) -> None:
    if text is not None:
        _sub(parent, local, text)


def _text(el: etree._Element, local: str) -> str | None:
    child = el.find(_P + local)
    if child is None or child.text is None:
        return None if child is None else ""
    return child.text.strip()


def _bool(text: str | None) -> bool:
    return (text or "").strip() in ("true", "1")


def xml_datetime(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{dt.microsecond // 1000:03d}" if dt.microsecond else "") + "Z"


def parse_datetime(text: str) -> datetime:
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def hex_upper(text: str | None) -> str | None:
    return text.strip().upper() if text is not None else None


# -- security domains ---------------------------------------------------------------------------


def parse_security_domain(el: etree._Element) -> v.SecurityDomain:
    keysets = []
    for ks in el.findall(_P + "Keyset"):
        items: list[v.Key | v.KeysetCertificate] = []
        for item in ks:
            if not isinstance(item.tag, str):
                continue
            if item.tag == _P + "Key":
                comps = tuple(
                    (c.get("type").upper(), c.get("value").upper()) for c in item.findall(_P + "KeyComponents")
                )
                items.append(v.Key(int(_text(item, "Index")), item.get("kcv").upper(), comps))
            elif item.tag == _P + "Certificate":
                items.append(
                    v.KeysetCertificate(int(_text(item, "Index")), _text(item, "CaId"), hex_upper(_text(item, "Value")))
                )
        cntr = _text(ks, "Cntr")
        keysets.append(v.Keyset(int(_text(ks, "Version")), _text(ks, "Type"), int(cntr) if cntr else None, tuple(items)))
    return v.SecurityDomain(
        aid=hex_upper(_text(el, "Aid")),
        role=_text(el, "Role"),
        sin=hex_upper(_text(el, "Sin")),
        sdin=hex_upper(_text(el, "Sdin")),
        tars=tuple(t.text.strip().upper() for t in el.findall(_P + "Tar")),
        keysets=tuple(keysets),
    )


def render_security_domain(parent: etree._Element, local: str, sd: v.SecurityDomain) -> etree._Element:
    el = _sub(parent, local)
    _sub(el, "Aid", sd.aid)
    for tar in sd.tars:
        _sub(el, "Tar", tar)
    _sub(el, "Sin", sd.sin)
    _sub(el, "Sdin", sd.sdin)
    _sub(el, "Role", sd.role)
    for ks in sd.keysets:
        k = _sub(el, "Keyset")
        _sub(k, "Version", str(ks.version))
        _opt(k, "Type", ks.type)
        _opt(k, "Cntr", None if ks.cntr is None else str(ks.cntr))
        for item in ks.items:
            if isinstance(item, v.Key):
                key = _sub(k, "Key")
                key.set("kcv", item.kcv)
                _sub(key, "Index", str(item.index))
                for ctype, cvalue in item.components:
                    comp = _sub(key, "KeyComponents")
                    comp.set("type", ctype)
                    comp.set("value", cvalue)
            else:
                cert = _sub(k, "Certificate")
                _sub(cert, "Index", str(item.index))
                _sub(cert, "CaId", item.ca_id)
                _sub(cert, "Value", item.value)
    return el


# -- profiles and POL2 --------------------------------------------------------------------------


def parse_pol2(el: etree._Element | None) -> tuple[v.Pol2Rule, ...]:
    if el is None:
        return ()
    return tuple(
        v.Pol2Rule(_text(r, "Subject"), _text(r, "Action"), _text(r, "Qualification")) for r in el.findall(_P + "Rule")
    )


def render_pol2(parent: etree._Element, rules: tuple[v.Pol2Rule, ...], local: str = "pol2") -> etree._Element:
    el = _sub(parent, local)
    for rule in rules:
        r = _sub(el, "Rule")
        _sub(r, "Subject", rule.subject)
        _sub(r, "Action", rule.action)
        _sub(r, "Qualification", rule.qualification)
    return el


def parse_subscription_address(el: etree._Element | None) -> v.SubscriptionAddress:
    if el is None:
        return v.SubscriptionAddress()
    return v.SubscriptionAddress(imsi=_text(el, "Imsi"), msisdn=_text(el, "Msisdn"))


def render_subscription_address(parent: etree._Element, local: str, addr: v.SubscriptionAddress) -> None:
    el = _sub(parent, local)
    _opt(el, "Imsi", addr.imsi)
    _opt(el, "Msisdn", addr.msisdn)


def parse_profile(el: etree._Element) -> v.ProfileInfo:
    free = _text(el, "FreeMemory")
    return v.ProfileInfo(
        iccid=_text(el, "Iccid").upper(),
        isd_p_aid=hex_upper(_text(el, "Isd-p-aid")),
        mno_id=_text(el, "Mno-id"),
        fallback_attribute=_bool(_text(el, "FallbackAttribute")),
        subscription_address=parse_subscription_address(el.find(_P + "SubscriptionAddress")),
        state=v.ProfileState(_text(el, "State")),
        allocated_memory=int(_text(el, "AllocatedMemory")),
        pol2=parse_pol2(el.find(_P + "pol2")),
        smdp_id=_text(el, "Smdp-id"),
        profile_type=_text(el, "ProfileType"),
        free_memory=int(free) if free else None,
    )


def render_profile(parent: etree._Element, p: v.ProfileInfo) -> None:
    el = _sub(parent, "ProfileInfo")
    _sub(el, "Iccid", p.iccid)
    _sub(el, "Isd-p-aid", p.isd_p_aid)
    _sub(el, "Mno-id", p.mno_id)
    _sub(el, "FallbackAttribute", "true" if p.fallback_attribute else "false")
    render_subscription_address(el, "SubscriptionAddress", p.subscription_address)
    _sub(el, "State", p.state.value)
    _opt(el, "Smdp-id", p.smdp_id)
    _opt(el, "ProfileType", p.profile_type)
    _sub(el, "AllocatedMemory", str(p.allocated_memory))
    _opt(el, "FreeMemory", None if p.free_memory is None else str(p.free_memory))
    render_pol2(el, p.pol2)


# -- the EIS ------------------------------------------------------------------------------------


def canonical(el: etree._Element) -> bytes:
    """Exclusive C14N of one element: the stored form of the signed parts."""
    return etree.tostring(el, method="c14n", exclusive=True, with_comments=False)


def parse_signed_info(el: etree._Element) -> v.EumSignedInfo:
    caps = el.find(_P + "EuiccCapabilities")
    return v.EumSignedInfo(
        eid=hex_upper(_text(el, "Eid")),
        eum_id=_text(el, "Eum-id"),
        production_date=parse_datetime(_text(el, "ProductionDate")),
        platform_type=_text(el, "PlatformType"),
        platform_version=_text(el, "PlatformVersion"),
        isd_p_loadfile_aid=hex_upper(_text(el, "Isd-p-loadfile-aid")),
        isd_p_module_aid=hex_upper(_text(el, "Isd-p-module-aid")),
        ecasd=parse_security_domain(el.find(_P + "Ecasd")),
        capabilities=v.EuiccCapabilities(
            cattp_support=_bool(_text(caps, "CattpSupport")),
            cattp_version=_text(caps, "CattpVersion"),
            http_support=_bool(_text(caps, "HttpSupport")),
            http_version=_text(caps, "HttpVersion"),
            secure_packet_version=_text(caps, "SecurePacketVersion"),
            remote_provisioning_version=_text(caps, "RemoteProvisioningVersion"),
        ),
    )


def render_signed_info(parent: etree._Element, si: v.EumSignedInfo) -> etree._Element:
    """Build an EumSignedInfo from values (used by the EUM side: ``esx init`` and tests)."""
    el = _sub(parent, "EumSignedInfo")
    _sub(el, "Eid", si.eid)
    _sub(el, "Eum-id", si.eum_id)
    _sub(el, "ProductionDate", xml_datetime(si.production_date))
    _sub(el, "PlatformType", si.platform_type)
    _sub(el, "PlatformVersion", si.platform_version)
    _sub(el, "Isd-p-loadfile-aid", si.isd_p_loadfile_aid)
    _sub(el, "Isd-p-module-aid", si.isd_p_module_aid)
    render_security_domain(el, "Ecasd", si.ecasd)
    caps = _sub(el, "EuiccCapabilities")
    c = si.capabilities
    _sub(caps, "CattpSupport", "true" if c.cattp_support else "false")
    _opt(caps, "CattpVersion", c.cattp_version)
    _sub(caps, "HttpSupport", "true" if c.http_support else "false")
    _opt(caps, "HttpVersion", c.http_version)
    _sub(caps, "SecurePacketVersion", c.secure_packet_version)
    _sub(caps, "RemoteProvisioningVersion", c.remote_provisioning_version)
    return el


def parse_eis(el: etree._Element) -> v.Eis:
    signed_el = el.find(_P + "EumSignedInfo")
    signature_el = el.find(_P + "EumSignature")
    last_audit = _text(el, "LastAuditDate")
    trail = el.find(_P + "AuditTrail")
    props = el.find(_P + "AdditionalProperties")
    signed_info = parse_signed_info(signed_el)
    return v.Eis(
        signed_info=signed_info,
        signed_info_xml=canonical(signed_el),
        eum_signature_xml=canonical(signature_el),
        remaining_memory=int(_text(el, "RemainingMemory")),
        available_memory_for_profiles=int(_text(el, "AvailableMemoryForProfiles")),
        smsr_id=_text(el, "Smsr-id"),
        isd_r=parse_security_domain(el.find(_P + "Isd-r")),
        profiles=tuple(parse_profile(p) for p in el.findall(_P + "ProfileInfo")),
        last_audit_date=parse_datetime(last_audit) if last_audit else None,
        audit_trail=tuple(_parse_record(r) for r in (trail.findall(_P + "Record") if trail is not None else ())),
        additional_properties=tuple(
            (p.get("key"), p.get("value")) for p in (props.findall(_P + "Property") if props is not None else ())
        ),
    )


def _parse_record(el: etree._Element) -> v.AuditRecord:
    status = el.find(_P + "OperationExecutionStatus")
    scd = status.find(_P + "StatusCodeData") if status is not None else None
    return v.AuditRecord(
        eid=hex_upper(_text(el, "Eid")),
        smsr_id=_text(el, "Smsr-id"),
        operation_date=parse_datetime(_text(el, "OperationDate")),
        operation_type=hex_upper(_text(el, "OperationType")),
        requester_id=_text(el, "RequesterId"),
        status=_text(status, "Status") if status is not None else None,
        subject=_text(scd, "Subject") if scd is not None else None,
        reason=_text(scd, "Reason") if scd is not None else None,
        isd_p_aid=hex_upper(_text(el, "Isd-p-aid")),
        iccid=_text(el, "Iccid"),
        imei=hex_upper(_text(el, "Imei")),
        meid=hex_upper(_text(el, "Meid")),
    )


def _render_record(parent: etree._Element, r: v.AuditRecord) -> None:
    el = _sub(parent, "Record")
    _sub(el, "Eid", r.eid)
    _sub(el, "Smsr-id", r.smsr_id)
    _sub(el, "OperationDate", xml_datetime(r.operation_date))
    _sub(el, "OperationType", r.operation_type)
    _opt(el, "RequesterId", r.requester_id)
    if r.status is not None:
        st = _sub(el, "OperationExecutionStatus")
        _sub(st, "Status", r.status)
        if r.subject and r.reason:
            scd = _sub(st, "StatusCodeData")
            _sub(scd, "Subject", r.subject)
            _sub(scd, "Reason", r.reason)
    _opt(el, "Isd-p-aid", r.isd_p_aid)
    _opt(el, "Iccid", r.iccid)
    _opt(el, "Imei", r.imei)
    _opt(el, "Meid", r.meid)


def render_eis(parent: etree._Element, eis: v.Eis, local: str = "Eis") -> etree._Element:
    """Append ``eis`` to ``parent``; the signed parts are emitted exactly as the EUM signed them."""
    el = _sub(parent, local)
    el.append(etree.fromstring(eis.signed_info_xml))
    el.append(etree.fromstring(eis.eum_signature_xml))
    _render_unsigned(el, eis)
    return el


def render_eis_for_signing(eis: v.Eis) -> etree._Element:
    """A standalone Eis element with EumSignedInfo built from values and no EumSignature yet:
    what an EUM signs (``keys.xmldsig.sign_eis`` inserts the signature)."""
    el = etree.Element(_P + "Eis", nsmap={"rps": GSMA})
    render_signed_info(el, eis.signed_info)
    _render_unsigned(el, eis)
    return el


def _render_unsigned(el: etree._Element, eis: v.Eis) -> None:
    _sub(el, "RemainingMemory", str(eis.remaining_memory))
    _sub(el, "AvailableMemoryForProfiles", str(eis.available_memory_for_profiles))
    _opt(el, "LastAuditDate", xml_datetime(eis.last_audit_date) if eis.last_audit_date else None)
    _sub(el, "Smsr-id", eis.smsr_id)
    for p in eis.profiles:
        render_profile(el, p)
    render_security_domain(el, "Isd-r", eis.isd_r)
    if eis.audit_trail:
        trail = _sub(el, "AuditTrail")
        for r in eis.audit_trail:
            _render_record(trail, r)
    if eis.additional_properties:
        props = _sub(el, "AdditionalProperties")
        for key, value in eis.additional_properties:
            p = _sub(props, "Property")
            p.set("key", key)
            p.set("value", value)
