"""The SM-DP's ES3 client of one SM-SR: ``smdp_core.relay.SmsrGateway`` over SOAP."""
from __future__ import annotations

from esx.binding.client import GsmaClient
from esx.eis_xml import parse_eis
from sgp02 import codes
from sgp02.codes import FunctionFailed
from sgp02.eis import Eis, Pol2Rule, SubscriptionAddress


class Es3SmsrGateway:
    """ES3 to one SM-SR; ``reply_to`` is where its callbacks come back (the SM-DP's /smdp/es3)."""

    def __init__(self, client: GsmaClient, reply_to: str | None = None) -> None:
        self.client = client
        self.reply_to = reply_to

    def request(self, operation: str, *, message_id: str, validity: int | None, **params) -> None:
        """An asynchronous ES3 request (smdp_core.download.SmsrPort)."""
        if validity is not None:
            params["ValidityPeriod"] = validity
        self.client.call_async(operation, message_id=message_id, reply_to=self.reply_to, **params)

    def profile_download_completed(self, eid: str, iccid: str, *, profile_type: str | None,
                                   address: SubscriptionAddress | None) -> None:
        params = {"Eid": eid, "Iccid": iccid}
        if profile_type is not None:
            params["ProfileType"] = profile_type
        if address is not None:
            params["SubscriptionAddress"] = {"Imsi": address.imsi, "Msisdn": address.msisdn}
        self.client.call("ES3-ProfileDownloadCompleted", **params)

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
