"""Shared steps of the end-to-end tests: extra parties and eUICCs registered through ES1."""
from __future__ import annotations

from datetime import date, datetime, timezone

from lxml import etree
from zeep import xsd

from esx.demo import (
    EUM_OID,
    build_eis,
    demo_eid,
    demo_iccid,
    isd_p_aid,
    isd_r_domain,
    register_request,
    signed_eis_element,
)
from keys.pki import DevPki, private_key_pem
from sgp02 import eis as v

from .clients import CLIENT_KINDS

OTHER_MNO = "1.3.6.1.4.1.99999.2.2"
_done: dict[str, tuple[str, str]] = {}


def pki(instance) -> DevPki:
    return DevPki.load(instance.data_dir / "pki")


def profile(n: int, mno: str, slot: int = 0, **kw) -> v.ProfileInfo:
    fields = dict(
        iccid=demo_iccid(n, slot), isd_p_aid=isd_p_aid(slot), mno_id=mno, fallback_attribute=slot == 0,
        subscription_address=v.SubscriptionAddress(imsi=f"00102{n:08d}{slot:02d}", msisdn=f"4478{n:06d}{slot:02d}"),
        state=v.ProfileState.ENABLED if slot == 0 else v.ProfileState.DISABLED, allocated_memory=32_768,
    )
    fields.update(kw)
    return v.ProfileInfo(**fields)


ECASD_KEYS: dict = {}  # EID -> SK.ECASD.ECKA of the eUICCs eis_for made (the card needs it for ES8)


def eis_for(instance, n: int, profiles: tuple[v.ProfileInfo, ...], *, ecasd_expiry: date | None = None,
            eum_key=None, eum_cert_pem=None, smsr_id: str | None = None, eum_id: str = EUM_OID,
            curve: str = "P-256") -> v.Eis:
    p = pki(instance)
    eid = demo_eid(n)
    ECASD_KEYS[eid], cert = p.issue_ecasd(eid, curve, expiry=ecasd_expiry, eum_key=eum_key, eum_cert_pem=eum_cert_pem)
    return build_eis(eid=eid, eum_id=eum_id, smsr_id=smsr_id or instance.doc["smsr_id"], ecasd_cert=cert,
                     profiles=profiles, isd_r=isd_r_domain({"enc": b"\x01" * 16, "mac": b"\x02" * 16, "dek": b"\x03" * 16}),
                     production_date=datetime(2026, 2, 1, tzinfo=timezone.utc))


def register(instance, eis: v.Eis, *, caller: str = EUM_OID, sign_key=None, sign_cert=None, kind: str = "official",
             tamper=None):
    """Send ES1-RegisterEIS with a signed EIS, as the EUM ``caller``; returns the SoapReply."""
    p = pki(instance)
    el = signed_eis_element(eis, sign_key or p.eum_key, sign_cert or p.eum_cert_pem)
    if tamper:
        tamper(el)
    request = register_request(el)
    es1 = CLIENT_KINDS[kind]("ES1", f"{instance.smsr_url}/smsr/es1", caller)
    # zeep cannot take a signed XML subtree as a value: post the envelope it would build, with our body.
    return post_body(es1, "ES1-RegisterEIS", request)


def post_body(caller, op: str, body: etree._Element):
    import requests

    from .conftest import parse_reply

    node = caller.client.create_message(caller.service, op, _soapheaders=caller.headers(op),
                                        FunctionCallIdentifier="x", Eis=xsd.SkipValue)
    env_body = node.find("{http://www.w3.org/2003/05/soap-envelope}Body")
    for child in list(env_body):
        env_body.remove(child)
    env_body.append(body)
    response = requests.post(caller.endpoint, data=etree.tostring(node, xml_declaration=True, encoding="utf-8"),
                             headers={"Content-Type": "application/soap+xml; charset=utf-8"}, timeout=30)
    return parse_reply(response, caller.interface)


def ensure_other_mno_euicc(instance) -> tuple[str, str]:
    """An eUICC whose only profile belongs to a second MNO; returns (eid, iccid)."""
    key = str(instance.data_dir)
    if key not in _done:
        # The second MNO uses the same SM-DP as the demo MNO (a shared SM-DP): the SM-SR shows that SM-DP both
        # MNOs' profiles, and the SM-DP keeps each MNO to its own (8.2.1/1.2).
        instance.esx("entity", "add", "--data-dir", str(instance.data_dir), "--role", "mno", "--oid", OTHER_MNO,
                     "--name", "Other MNO", "--smdp", instance.doc["smdp_id"])
        eis = eis_for(instance, 500, (profile(500, OTHER_MNO),))
        reply = register(instance, eis)
        assert reply.status == "EXECUTED_SUCCESS", reply.code
        _done[key] = (eis.eid, eis.profiles[0].iccid)
    return _done[key]


def ensure_mixed_euicc(instance) -> tuple[str, str, str]:
    """An eUICC with one profile of the demo MNO and one of the second MNO: (eid, own iccid, other iccid)."""
    ensure_other_mno_euicc(instance)
    key = str(instance.data_dir) + "/mixed"
    if key not in _done:
        eis = eis_for(instance, 600, (profile(600, instance.mno), profile(600, OTHER_MNO, slot=1)))
        reply = register(instance, eis)
        assert reply.status == "EXECUTED_SUCCESS", reply.code
        _done[key] = (eis.eid, eis.profiles[0].iccid, eis.profiles[1].iccid)
    return _done[key]


def pol2(*rules: tuple[str, str]) -> dict:
    """A pol2 value for zeep: pol2(("DELETE", "Not-Allowed"), ...)."""
    return {"Rule": [{"Subject": "PROFILE", "Action": a, "Qualification": q} for a, q in rules]}


_next_card = [200_000]  # test_es1 numbers its eUICCs from 1000


def fresh_euicc(instance, *, mno: str | None = None, curve: str = "P-256") -> tuple[str, list[str]]:
    """A new eUICC registered over ES1 with a simulated card the loopback SMSC reaches.

    Two profiles of ``mno`` (the demo MNO by default): the first enabled with the fall-back
    attribute, the second disabled. Returns (EID, [ICCID of profile 1, ICCID of profile 2]).
    """
    from esx.demo import create_card

    _next_card[0] += 1
    n = _next_card[0]
    mno = mno or instance.mno
    eis = eis_for(instance, n, (profile(n, mno), profile(n, mno, slot=1)), curve=curve)
    keys = {"enc": b"\x01" * 16, "mac": b"\x02" * 16, "dek": b"\x03" * 16}  # the keys eis_for puts in the ISD-R
    card_dir = instance.data_dir / "euicc" / eis.eid
    create_card(card_dir, eis, keys, ci_cert_pem=pki(instance).ci_cert_pem)
    (card_dir / "ecasd.key.pem").write_bytes(private_key_pem(ECASD_KEYS[eis.eid]))
    reply = register(instance, eis)
    assert reply.status == "EXECUTED_SUCCESS", reply.code
    return eis.eid, [p.iccid for p in eis.profiles]
