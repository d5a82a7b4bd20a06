"""ES4 (MNO -> SM-SR). Thin adapters over ``smsr_core.registry`` (sync) and ``smsr_core.platform`` (async)."""
from __future__ import annotations

from esx.adapters import AsyncFunction, PrepareSmsrChange, caller_of, eis_reply, required
from esx.binding.soap import Inbound, Interface, Reply
from esx.eis_xml import parse_pol2, parse_subscription_address
from smsr_core.platform import Function


def get_eis(rt, inbound: Inbound) -> Reply:
    return eis_reply(rt.registry.get_eis(caller_of(inbound), required(inbound, "Eid")))


def update_policy_rules(rt, inbound: Inbound) -> Reply:
    rt.registry.update_policy_rules(
        caller_of(inbound), required(inbound, "Eid"), required(inbound, "Iccid"), parse_pol2(inbound.child("pol2"))
    )
    return Reply()


def update_subscription_address(rt, inbound: Inbound) -> Reply:
    rt.registry.update_subscription_address(
        caller_of(inbound),
        required(inbound, "Eid"),
        required(inbound, "Iccid"),
        parse_subscription_address(inbound.child("newSubscriptionAddress")),
    )
    return Reply()


INTERFACE = Interface(
    wsdl="ES4SmSr.wsdl",
    own_role="smsr",
    caller_roles=frozenset({"mno"}),
    handlers={
        "ES4-GetEIS": get_eis,
        "ES4-UpdatePolicyRules": update_policy_rules,
        "ES4-UpdateSubscriptionAddress": update_subscription_address,
        "ES4-EnableProfile": AsyncFunction(Function.ENABLE, "ES4"),
        "ES4-DisableProfile": AsyncFunction(Function.DISABLE, "ES4"),
        "ES4-DeleteProfile": AsyncFunction(Function.DELETE, "ES4"),
        "ES4-AuditEIS": AsyncFunction(Function.AUDIT, "ES4"),
        "ES4-SMSRChange": AsyncFunction(Function.SMSR_CHANGE, "ES4"),
        "ES4-PrepareSMSRChange": PrepareSmsrChange(),
    },
)
