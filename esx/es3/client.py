"""The SM-DP's ES3 client of one SM-SR: ``smdp_core.relay.SmsrGateway`` over SOAP."""
from __future__ import annotations

from esx import codes
from esx.binding.client import GsmaClient
from esx.codes import FunctionFailed
from esx.eis_xml import parse_eis
from smsr_core.eis import Eis, Pol2Rule, SubscriptionAddress


class Es3SmsrGateway:
    def __init__(self, client: GsmaClient) -> None:
        self.client = client

    def get_eis(self, eid: str) -> Eis:
        reply = self.client.call("ES3-GetEIS", Eid=eid)
        eis_el = reply.child("Eis")
        if eis_el is None:
            raise FunctionFailed(codes.INTERNAL_ERROR, "ES3-GetEIS succeeded without an Eis")
        return parse_eis(eis_el)

    def update_policy_rules(self, eid: str, iccid: str, pol2: tuple[Pol2Rule, ...]) -> None:
        rules = [{"Subject": r.subject, "Action": r.action, "Qualification": r.qualification} for r in pol2]
        self.client.call("ES3-UpdatePolicyRules", Eid=eid, Iccid=iccid, pol2={"Rule": rules})

    def update_subscription_address(self, eid: str, iccid: str, address: SubscriptionAddress) -> None:
        self.client.call("ES3-UpdateSubscriptionAddress", Eid=eid, Iccid=iccid,
                         newSubscriptionAddress={"Imsi": address.imsi, "Msisdn": address.msisdn})
