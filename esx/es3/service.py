"""ES3 on the SM-SR (SM-DP -> SM-SR): the synchronous registry functions.

The SM-SR's ES3 differs from its ES4 only in who calls (an SM-DP) and what that caller may see
and change (``smsr_core.registry``), so the same adapters serve both.
"""
from __future__ import annotations

from esx.adapters import AsyncFunction
from esx.binding.soap import Interface
from esx.es4.service import get_eis, update_policy_rules, update_subscription_address
from smsr_core.platform import Function

INTERFACE = Interface(
    wsdl="ES3SmSr.wsdl",
    own_role="smsr",
    caller_roles=frozenset({"smdp"}),
    handlers={
        "ES3-GetEIS": get_eis,
        "ES3-UpdatePolicyRules": update_policy_rules,
        "ES3-UpdateSubscriptionAddress": update_subscription_address,
        "ES3-EnableProfile": AsyncFunction(Function.ENABLE, "ES3"),
        "ES3-DisableProfile": AsyncFunction(Function.DISABLE, "ES3"),
        "ES3-DeleteISDP": AsyncFunction(Function.DELETE, "ES3"),
        "ES3-AuditEIS": AsyncFunction(Function.AUDIT, "ES3"),
    },
)

def received(rt, inbound) -> None:
    """A callback or notification from the SM-SR: accepted (202) and kept in the call audit.

    The SM-DP's download transactions consume the callbacks and relay the notifications to the
    MNO over ES2 (issue 4); until then they are recorded only.
    """
    return None


# The SM-DP's own ES3 endpoint: where the SM-SR's callbacks and notifications arrive.
SMDP_INTERFACE = Interface(
    wsdl="ES3SmDp.wsdl",
    own_role="smdp",
    caller_roles=frozenset({"smsr"}),
    handlers={name: received for name in (
        "ES3-HandleProfileDisabledNotification", "ES3-HandleProfileEnabledNotification",
        "ES3-HandleProfileDeletedNotification", "ES3-AuditEISCallback", "ES3-EnableProfileCallback",
        "ES3-DisableProfileCallback", "ES3-DeleteISDPCallback",
    )},
)
