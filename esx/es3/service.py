"""ES3 on the SM-SR (SM-DP -> SM-SR): the synchronous registry functions.

The SM-SR's ES3 differs from its ES4 only in who calls (an SM-DP) and what that caller may see
and change (``smsr_core.registry``), so the same adapters serve both.
"""
from __future__ import annotations

from esx.binding.soap import Interface
from esx.es4.service import get_eis, update_policy_rules, update_subscription_address

INTERFACE = Interface(
    wsdl="ES3SmSr.wsdl",
    own_role="smsr",
    caller_roles=frozenset({"smdp"}),
    handlers={
        "ES3-GetEIS": get_eis,
        "ES3-UpdatePolicyRules": update_policy_rules,
        "ES3-UpdateSubscriptionAddress": update_subscription_address,
    },
)

# The SM-DP's own ES3 endpoint: where the SM-SR's callbacks and notifications arrive. Its
# handlers come with the asynchronous operations; until then calls are answered 1.6/3.1.
SMDP_INTERFACE = Interface(
    wsdl="ES3SmDp.wsdl",
    own_role="smdp",
    caller_roles=frozenset({"smsr"}),
    handlers={},
)
