"""ES2 (MNO -> SM-DP): the synchronous functions, relayed to the SM-SR by ``smdp_core.relay``."""
from __future__ import annotations

from esx.adapters import eis_element, required
from esx.binding.soap import Inbound, Interface, Reply
from esx.eis_xml import parse_pol2, parse_subscription_address


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


INTERFACE = Interface(
    wsdl="ES2SmDp.wsdl",
    own_role="smdp",
    caller_roles=frozenset({"mno"}),
    handlers={
        "ES2-GetEIS": get_eis,
        "ES2-UpdatePolicyRules": update_policy_rules,
        "ES2-UpdateSubscriptionAddress": update_subscription_address,
    },
)
