"""ES2 (MNO -> SM-DP) synchronous functions, relayed by the SM-DP process to the SM-SR process over ES3."""
from __future__ import annotations

from esx.binding.ns import GSMA

from .clients import CLIENT_KINDS
from .helpers import OTHER_MNO, ensure_mixed_euicc, pol2

NS = {"rps": GSMA}


def es2(instance, kind, oid=None):
    return CLIENT_KINDS[kind]("ES2", f"{instance.smdp_url}/smdp/es2", oid or instance.mno)


def test_es2_get_eis_through_the_smdp(instance, kind):
    eid, own, other = ensure_mixed_euicc(instance)
    call = es2(instance, kind)
    reply = call("ES2-GetEIS", Eid=eid, **{"Smsr-id": instance.doc["smsr_id"]})
    assert (reply.status, reply.code) == ("EXECUTED_SUCCESS", (None, None))
    assert reply.header("Action") == "http://gsma.com/ES2/DataPreparation/ES2-GetEISResponse"
    assert reply.header("RelatesTo") == call.last_message_id
    assert f"EntityId={instance.doc['smdp_id']}" in reply.header("From")
    assert [e.text for e in reply.body.findall("rps:Eis/rps:ProfileInfo/rps:Iccid", NS)] == [own]


def test_es2_get_eis_errors(instance, kind):
    call = es2(instance, kind)
    assert call("ES2-GetEIS", Eid="89049032000000000000000000999999",
                **{"Smsr-id": instance.doc["smsr_id"]}).code == ("8.1.1", "3.9")
    assert call("ES2-GetEIS", Eid=instance.eids[0], **{"Smsr-id": "1.2.3.4"}).code == ("8.7", "3.9")
    # ES2 is for MNOs: the EUM may not call it
    assert es2(instance, kind, instance.doc["eum_id"])("ES2-GetEIS", Eid=instance.eids[0],
                                                        **{"Smsr-id": instance.doc["smsr_id"]}).code == ("1.1", "1.2")


def test_es2_update_policy_rules_relayed(instance, kind):
    eid, own, _ = ensure_mixed_euicc(instance)
    call = es2(instance, kind)
    smsr = {"Smsr-id": instance.doc["smsr_id"]}
    reply = call("ES2-UpdatePolicyRules", Eid=eid, Iccid=own, pol2=pol2(("DELETE", "Not-Allowed")), **smsr)
    assert (reply.status, reply.code) == ("EXECUTED_SUCCESS", (None, None))
    eis = call("ES2-GetEIS", Eid=eid, **smsr)
    assert eis.text("rps:Eis/rps:ProfileInfo/rps:pol2/rps:Rule/rps:Action") == "DELETE"
    call("ES2-UpdatePolicyRules", Eid=eid, Iccid=own, pol2=pol2(), **smsr)


def test_es2_update_policy_rules_errors(instance, kind):
    eid, own, other = ensure_mixed_euicc(instance)
    call = es2(instance, kind)
    smsr = {"Smsr-id": instance.doc["smsr_id"]}
    assert call("ES2-UpdatePolicyRules", Eid=eid, Iccid=other, pol2=pol2(), **smsr).code == ("8.2.1", "1.2")
    assert call("ES2-UpdatePolicyRules", Eid=eid, Iccid="8988299999999999999", pol2=pol2(), **smsr).code == ("8.2.1", "3.9")
    # the SM-SR's own verdict comes back unchanged
    assert call("ES2-UpdatePolicyRules", Eid=eid, Iccid=own, pol2=pol2(("ENABLE", "Auto-Delete")),
                **smsr).code == ("8.2.3", "2.1")
    assert call("ES2-UpdatePolicyRules", Eid="89049032000000000000000000999999", Iccid=own, pol2=pol2(),
                **smsr).code == ("8.1.1", "3.9")


def test_es2_update_subscription_address_relayed(instance, kind):
    eid, own, other = ensure_mixed_euicc(instance)
    call = es2(instance, kind)
    smsr = {"Smsr-id": instance.doc["smsr_id"]}
    reply = call("ES2-UpdateSubscriptionAddress", Eid=eid, Iccid=own,
                 newSubscriptionAddress={"Msisdn": "447700900123"}, **smsr)
    assert reply.status == "EXECUTED_SUCCESS"
    assert call("ES2-GetEIS", Eid=eid, **smsr).text(
        "rps:Eis/rps:ProfileInfo/rps:SubscriptionAddress/rps:Msisdn") == "447700900123"
    assert call("ES2-UpdateSubscriptionAddress", Eid=eid, Iccid=other,
                newSubscriptionAddress={"Msisdn": "447700900124"}, **smsr).code == ("8.2.1", "1.2")
    assert es2(instance, kind, OTHER_MNO)("ES2-UpdateSubscriptionAddress", Eid=eid, Iccid=other,
                                          newSubscriptionAddress={"Msisdn": "447700900125"}, **smsr).status == "EXECUTED_SUCCESS"


def test_es3_messages_the_smdp_sends_are_valid_against_the_official_xsd(instance):
    """Capture what crosses ES3 when the SM-DP relays, and validate it against the official schema."""
    from lxml import etree

    from esx.binding.client import GsmaClient
    from esx.binding.http import HttpClient
    from esx.es3.client import Es3SmsrGateway
    from sgp02.eis import Pol2Rule, SubscriptionAddress

    from .conftest import official_schema

    sent = []

    class Recording(HttpClient):
        def post(self, url, data, **kw):
            sent.append(data)
            return super().post(url, data, **kw)

    eid, own, _ = ensure_mixed_euicc(instance)
    client = GsmaClient("ES3SmSr.wsdl", f"{instance.smsr_url}/smsr/es3", sender_oid=instance.doc["smdp_id"],
                        sender_address=f"{instance.smdp_url}/smdp?EntityId={instance.doc['smdp_id']}",
                        receiver_oid=instance.doc["smsr_id"], http=Recording())
    gateway = Es3SmsrGateway(client)
    gateway.get_eis(eid)
    gateway.update_policy_rules(eid, own, (Pol2Rule("PROFILE", "DISABLE", "Not-Allowed"),))
    gateway.update_policy_rules(eid, own, ())
    gateway.update_subscription_address(eid, own, SubscriptionAddress(imsi="001010000000555"))
    assert len(sent) == 4
    schema = official_schema("ES3")
    for body in sent:
        env = etree.fromstring(body)
        element = env.find("{http://www.w3.org/2003/05/soap-envelope}Body")[0]
        assert schema.validate(element), schema.error_log
        assert env.find("{http://www.w3.org/2003/05/soap-envelope}Header/{http://www.w3.org/2005/08/addressing}From") is not None


def test_es2_accepts_the_smsr_id_spelling_variant(instance):
    """A client that writes SmSr-id where the v3 XSD says Smsr-id is understood (sgp02-wire.md 7)."""
    from .clients import raw_post
    from .conftest import parse_reply
    from .test_hostile import envelope

    body = (f'<rps:ES2-GetEISRequest><rps:FunctionCallIdentifier>f</rps:FunctionCallIdentifier>'
            f'<rps:Eid>{instance.eids[0]}</rps:Eid><rps:SmSr-id>{instance.doc["smsr_id"]}</rps:SmSr-id></rps:ES2-GetEISRequest>')
    reply = parse_reply(raw_post(f"{instance.smdp_url}/smdp/es2", envelope(
        body, from_oid=instance.mno, action="http://gsma.com/ES2/DataPreparation/ES2-GetEISRequest")), "ES2")
    assert (reply.status, reply.code) == ("EXECUTED_SUCCESS", (None, None))
