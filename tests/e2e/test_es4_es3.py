"""ES4 (MNO -> SM-SR) and ES3 (SM-DP -> SM-SR) synchronous functions, over HTTP."""
from __future__ import annotations

import pytest
from lxml import etree

from esx.binding.ns import GSMA
from keys.xmldsig import verify_eis_signature

from .clients import CLIENT_KINDS
from .helpers import OTHER_MNO, ensure_mixed_euicc, ensure_other_mno_euicc, pol2

NS = {"rps": GSMA}


def es4(instance, kind, oid=None):
    return CLIENT_KINDS[kind]("ES4", f"{instance.smsr_url}/smsr/es4", oid or instance.mno)


def es3(instance, kind, oid=None):
    return CLIENT_KINDS[kind]("ES3", f"{instance.smsr_url}/smsr/es3", oid or instance.doc["smdp_id"])


# -- GetEIS ---------------------------------------------------------------------------------------


def test_es4_get_eis_returns_the_signed_eis_with_only_own_profiles(instance, kind):
    ensure_other_mno_euicc(instance)
    call = es4(instance, kind)
    eid = instance.eids[0]
    reply = call("ES4-GetEIS", Eid=eid)
    assert reply.http_status == 200
    assert reply.status == "EXECUTED_SUCCESS"
    assert reply.code == (None, None)
    assert reply.text("rps:Eis/rps:EumSignedInfo/rps:Eid") == eid
    iccids = [e.text for e in reply.body.findall("rps:Eis/rps:ProfileInfo/rps:Iccid", NS)]
    assert iccids == [p["iccid"] for p in instance.doc["euiccs"][0]["profiles"]]
    assert reply.text("rps:Eis/rps:ProfileInfo/rps:State") == "Enabled"
    assert reply.text("rps:Eis/rps:ProfileInfo/rps:FallbackAttribute") == "true"
    # WS-Addressing of the reply
    assert reply.header("RelatesTo") == call.last_message_id
    assert reply.header("Action") == "http://gsma.com/ES4/ProfileManagement/ES4-GetEISResponse"
    assert f"EntityId={instance.doc['smsr_id']}" in reply.header("From")
    assert reply.header("MessageID").startswith(f"//{instance.doc['smsr_id']}/urn:uuid:")
    # The EUM signature still verifies on what the MNO received, with the EUM's certificate.
    eum_cert = (instance.data_dir / "pki" / "eum.pem").read_bytes()
    verify_eis_signature(reply.body.find("rps:Eis", NS), eum_cert)
    # No ISD-R secret key leaves the SM-SR.
    assert reply.body.find("rps:Eis/rps:Isd-r/rps:Keyset/rps:Key", NS) is None


def test_es4_get_eis_only_shows_the_callers_profiles(instance, kind):
    eid, own, other = ensure_mixed_euicc(instance)
    for mno, iccid in ((instance.mno, own), (OTHER_MNO, other)):
        reply = es4(instance, kind, mno)("ES4-GetEIS", Eid=eid)
        assert reply.status == "EXECUTED_SUCCESS"
        assert [e.text for e in reply.body.findall("rps:Eis/rps:ProfileInfo/rps:Iccid", NS)] == [iccid]


def test_es4_get_eis_unknown_eid(instance, kind):
    reply = es4(instance, kind)("ES4-GetEIS", Eid="89049032000000000000000000999999")
    assert (reply.status, reply.code) == ("FAILED", ("8.1.1", "3.9"))


def test_es4_get_eis_of_an_euicc_without_own_profile(instance, kind):
    eid, _ = ensure_other_mno_euicc(instance)
    reply = es4(instance, kind)("ES4-GetEIS", Eid=eid)
    assert (reply.status, reply.code) == ("FAILED", ("8.6", "1.2"))


def test_es4_wrong_caller_role(instance, kind):
    reply = es4(instance, kind, instance.doc["eum_id"])("ES4-GetEIS", Eid=instance.eids[0])
    assert (reply.status, reply.code) == ("FAILED", ("1.1", "1.2"))


def test_es4_unknown_caller(instance, kind):
    reply = es4(instance, kind, "1.2.3.4.5.6.7")("ES4-GetEIS", Eid=instance.eids[0])
    assert (reply.status, reply.code) == ("FAILED", ("1.1", "1.1"))


# -- UpdatePolicyRules ----------------------------------------------------------------------------


def test_es4_update_policy_rules_nominal_and_visible_in_eis(instance, kind):
    call = es4(instance, kind)
    eid = instance.eids[1]
    iccid = instance.doc["euiccs"][1]["profiles"][0]["iccid"]
    reply = call("ES4-UpdatePolicyRules", Eid=eid, Iccid=iccid, pol2=pol2(("DELETE", "Not-Allowed"), ("DISABLE", "Auto-Delete")))
    assert (reply.status, reply.code) == ("EXECUTED_SUCCESS", (None, None))
    assert reply.header("Action") == "http://gsma.com/ES4/ProfileManagement/ES4-UpdatePolicyRulesResponse"
    eis = call("ES4-GetEIS", Eid=eid)
    rules = [(r.findtext("rps:Action", namespaces=NS), r.findtext("rps:Qualification", namespaces=NS))
             for r in eis.body.findall("rps:Eis/rps:ProfileInfo/rps:pol2/rps:Rule", NS)]
    assert rules == [("DELETE", "Not-Allowed"), ("DISABLE", "Auto-Delete")]
    call("ES4-UpdatePolicyRules", Eid=eid, Iccid=iccid, pol2=pol2())  # back to no rule


@pytest.mark.parametrize("rules", [[("ENABLE", "Auto-Delete")], [("DELETE", "Not-Allowed"), ("DELETE", "Not-Allowed")]])
def test_es4_update_policy_rules_invalidpol2(instance, kind, rules):
    iccid = instance.doc["euiccs"][0]["profiles"][0]["iccid"]
    reply = es4(instance, kind)("ES4-UpdatePolicyRules", Eid=instance.eids[0], Iccid=iccid, pol2=pol2(*rules))
    assert (reply.status, reply.code) == ("FAILED", ("8.2.3", "2.1"))


def test_es4_update_policy_rules_unknown_iccid(instance, kind):
    reply = es4(instance, kind)("ES4-UpdatePolicyRules", Eid=instance.eids[0], Iccid="8988299999999999999", pol2=pol2())
    assert (reply.status, reply.code) == ("FAILED", ("8.2.1", "3.9"))


def test_es4_update_policy_rules_iccid_on_another_euicc(instance, kind):
    iccid = instance.doc["euiccs"][1]["profiles"][0]["iccid"]
    reply = es4(instance, kind)("ES4-UpdatePolicyRules", Eid=instance.eids[0], Iccid=iccid, pol2=pol2())
    assert (reply.status, reply.code) == ("FAILED", ("8.2.1", "3.10"))


def test_es4_update_policy_rules_profile_of_another_mno(instance, kind):
    eid, iccid = ensure_other_mno_euicc(instance)
    reply = es4(instance, kind)("ES4-UpdatePolicyRules", Eid=eid, Iccid=iccid, pol2=pol2())
    assert (reply.status, reply.code) == ("FAILED", ("8.2.1", "1.2"))


def test_es4_update_policy_rules_unknown_eid(instance, kind):
    iccid = instance.doc["euiccs"][0]["profiles"][0]["iccid"]
    reply = es4(instance, kind)("ES4-UpdatePolicyRules", Eid="89049032000000000000000000999999", Iccid=iccid, pol2=pol2())
    assert (reply.status, reply.code) == ("FAILED", ("8.1.1", "3.9"))


# -- UpdateSubscriptionAddress --------------------------------------------------------------------


def test_es4_update_subscription_address(instance, kind):
    call = es4(instance, kind)
    eid, iccid = instance.eids[0], instance.doc["euiccs"][0]["profiles"][0]["iccid"]
    reply = call("ES4-UpdateSubscriptionAddress", Eid=eid, Iccid=iccid,
                 newSubscriptionAddress={"Imsi": "001019999999991", "Msisdn": "447999999991"})
    assert (reply.status, reply.code) == ("EXECUTED_SUCCESS", (None, None))
    eis = call("ES4-GetEIS", Eid=eid)
    assert eis.text("rps:Eis/rps:ProfileInfo/rps:SubscriptionAddress/rps:Imsi") == "001019999999991"
    assert eis.text("rps:Eis/rps:ProfileInfo/rps:SubscriptionAddress/rps:Msisdn") == "447999999991"


def test_es4_update_subscription_address_errors(instance, kind):
    call = es4(instance, kind)
    addr = {"Msisdn": "447000000001"}
    assert call("ES4-UpdateSubscriptionAddress", Eid=instance.eids[0], Iccid="8988299999999999999",
                newSubscriptionAddress=addr).code == ("8.2.1", "3.9")
    assert call("ES4-UpdateSubscriptionAddress", Eid="89049032000000000000000000999999",
                Iccid=instance.doc["euiccs"][0]["profiles"][0]["iccid"], newSubscriptionAddress=addr).code == ("8.1.1", "3.9")
    # an address already held by another profile
    taken = call("ES4-GetEIS", Eid=instance.eids[1]).text("rps:Eis/rps:ProfileInfo/rps:SubscriptionAddress/rps:Msisdn")
    reply = call("ES4-UpdateSubscriptionAddress", Eid=instance.eids[0],
                 Iccid=instance.doc["euiccs"][0]["profiles"][0]["iccid"], newSubscriptionAddress={"Msisdn": taken})
    assert (reply.status, reply.code) == ("FAILED", ("8.2.6", "1.2"))


# -- ES3 on the SM-SR -----------------------------------------------------------------------------


def test_es3_get_eis_shows_the_smdp_every_profile(instance, kind):
    eid, _, _ = ensure_mixed_euicc(instance)
    reply = es3(instance, kind)("ES3-GetEIS", Eid=eid)
    assert reply.status == "EXECUTED_SUCCESS"
    assert reply.header("Action") == "http://gsma.com/ES3/ProfileManagement/ES3-GetEISResponse"
    mnos = sorted(e.text for e in reply.body.findall("rps:Eis/rps:ProfileInfo/rps:Mno-id", NS))
    assert mnos == sorted([instance.mno, OTHER_MNO])


def test_es3_errors(instance, kind):
    call = es3(instance, kind)
    assert call("ES3-GetEIS", Eid="89049032000000000000000000999999").code == ("8.1.1", "3.9")
    iccid = instance.doc["euiccs"][0]["profiles"][0]["iccid"]
    assert call("ES3-UpdatePolicyRules", Eid=instance.eids[0], Iccid=iccid,
                pol2=pol2(("ENABLE", "Auto-Delete"))).code == ("8.2.3", "2.1")
    assert call("ES3-UpdateSubscriptionAddress", Eid=instance.eids[0], Iccid="8988299999999999999",
                newSubscriptionAddress={"Imsi": "001010000000009"}).code == ("8.2.1", "3.9")
    # an MNO may not use ES3
    assert es3(instance, kind, instance.mno)("ES3-GetEIS", Eid=instance.eids[0]).code == ("1.1", "1.2")


def test_es3_update_policy_rules_and_address(instance, kind):
    call = es3(instance, kind)
    eid, iccid = instance.eids[0], instance.doc["euiccs"][0]["profiles"][0]["iccid"]
    assert call("ES3-UpdatePolicyRules", Eid=eid, Iccid=iccid, pol2=pol2(("DISABLE", "Not-Allowed"))).status == "EXECUTED_SUCCESS"
    assert call("ES3-UpdateSubscriptionAddress", Eid=eid, Iccid=iccid,
                newSubscriptionAddress={"Imsi": "001010000000077"}).status == "EXECUTED_SUCCESS"
    eis = call("ES3-GetEIS", Eid=eid)
    profile = next(p for p in eis.body.findall("rps:Eis/rps:ProfileInfo", NS) if p.findtext("rps:Iccid", namespaces=NS) == iccid)
    assert profile.findtext("rps:pol2/rps:Rule/rps:Action", namespaces=NS) == "DISABLE"
    assert profile.findtext("rps:SubscriptionAddress/rps:Imsi", namespaces=NS) == "001010000000077"
    call("ES3-UpdatePolicyRules", Eid=eid, Iccid=iccid, pol2=pol2())


def test_wsdl_is_served_with_absolute_schema_locations(instance):
    import requests

    wsdl = requests.get(f"{instance.smsr_url}/smsr/es4?wsdl", timeout=10)
    assert wsdl.status_code == 200
    doc = etree.fromstring(wsdl.content)
    addresses = doc.findall(".//{http://schemas.xmlsoap.org/wsdl/soap12/}address")
    assert [a.get("location") for a in addresses] == [f"{instance.smsr_url}/smsr/es4"]
    locations = [n.get("schemaLocation") for n in doc.iter("{http://www.w3.org/2001/XMLSchema}include",
                                                           "{http://www.w3.org/2001/XMLSchema}import")]
    assert locations and all(loc.startswith(f"{instance.smsr_url}/smsr/es4?xsd=") for loc in locations)
    assert requests.get(locations[0], timeout=10).status_code == 200
    assert requests.get(f"{instance.smsr_url}/smsr/es4?xsd=../../etc/passwd", timeout=10).status_code == 404
