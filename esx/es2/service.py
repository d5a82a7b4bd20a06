"""ES2 (MNO -> SM-DP): the synchronous functions, relayed to the SM-SR by ``smdp_core.relay``, and the
asynchronous ones (DownloadProfile; Enable/Disable/DeleteProfile relayed over ES3), run by ``smdp_core.download``."""
from __future__ import annotations

from esx.adapters import eis_element, flag, required
from esx.binding.soap import Inbound, Interface, Reply
from esx.eis_xml import parse_pol2, parse_subscription_address
from sgp02.codes import FunctionFailed


def _smsr_id(inbound: Inbound) -> str:
    # The GSMA XSD spells it Smsr-id in most ES2 requests and SmSr-id in DownloadProfile and
    # EnableProfile (sgp02-wire.md section 3); accept both.
    return inbound.text("Smsr-id") or required(inbound, "SmSr-id")


def get_eis(rt, inbound: Inbound) -> Reply:
    eis = rt.smdp.get_eis(inbound.caller.oid, _smsr_id(inbound), required(inbound, "Eid"))
    return Reply([eis_element(eis)])


def update_policy_rules(rt, inbound: Inbound) -> Reply:
    rt.smdp.update_policy_rules(inbound.caller.oid, _smsr_id(inbound), required(inbound, "Eid"),
                                required(inbound, "Iccid"), parse_pol2(inbound.child("pol2")))
    return Reply()


def update_subscription_address(rt, inbound: Inbound) -> Reply:
    rt.smdp.update_subscription_address(
        inbound.caller.oid, _smsr_id(inbound), required(inbound, "Eid"), required(inbound, "Iccid"),
        parse_subscription_address(inbound.child("newSubscriptionAddress")),
    )
    return Reply()


class Es2AsyncFunction:
    """ES2-DownloadProfile and the relayed ES2-Enable/Disable/DeleteProfile: persisted, then 202
    (smdp_core.download); a request refused before it could be queued is answered by its callback."""

    def __init__(self, function: str) -> None:
        self.function = function

    def request(self, inbound: Inbound):
        from smdp_core.download import Es2Request

        iccid = inbound.text("Iccid")
        return Es2Request(
            function=self.function, requester_id=inbound.caller.oid, eid=(inbound.text("Eid") or "").upper(),
            smsr_id=inbound.text("Smsr-id") or inbound.text("SmSr-id") or "", message_id=inbound.addressing.message_id,
            function_call_id=inbound.function_call_id, reply_to=inbound.addressing.reply_address,
            validity_period=inbound.validity_period, received_at=inbound.received_at,
            iccid=iccid.upper() if iccid else None, profile_type=inbound.text("ProfileType") or None,
            enable=flag(inbound, "EnableProfile"),
        )

    def __call__(self, rt, inbound: Inbound) -> None:
        rt.downloads.accept(self.request(inbound))
        return None

    def reject(self, rt, inbound: Inbound, failure: FunctionFailed) -> None:
        rt.downloads.reject(self.request(inbound), failure)


INTERFACE = Interface(
    wsdl="ES2SmDp.wsdl",
    own_role="smdp",
    caller_roles=frozenset({"mno"}),
    handlers={
        "ES2-GetEIS": get_eis,
        "ES2-UpdatePolicyRules": update_policy_rules,
        "ES2-UpdateSubscriptionAddress": update_subscription_address,
        "ES2-DownloadProfile": Es2AsyncFunction("DownloadProfile"),
        "ES2-EnableProfile": Es2AsyncFunction("EnableProfile"),
        "ES2-DisableProfile": Es2AsyncFunction("DisableProfile"),
        "ES2-DeleteProfile": Es2AsyncFunction("DeleteProfile"),
    },
)
