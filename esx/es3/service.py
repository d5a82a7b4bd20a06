"""ES3, both ends.

``INTERFACE`` is the SM-SR's (SM-DP -> SM-SR): the registry functions, which differ from ES4 only in
who calls (an SM-DP) and what that caller may see and change (``smsr_core.registry``), so the same
adapters serve both; ProfileDownloadCompleted; and the asynchronous CreateISDP, SendData, Enable/
DisableProfile, DeleteISDP, AuditEIS and UpdateConnectivityParameters (``smsr_core.platform``).

``SMDP_INTERFACE`` is the SM-DP's (SM-SR -> SM-DP): the callbacks of its ES3 requests, handed to the
download that awaits them (an UpdateConnectivityParameters callback, which no download awaits, is logged), and
the profile notifications it relays to the MNO (``smdp_core.download``).
"""
from __future__ import annotations

import logging
from datetime import datetime

from esx.adapters import AsyncFunction, caller_of, required
from esx.binding.soap import Inbound, Interface, Reply, read_execution_status
from esx.eis_xml import parse_pol2, parse_subscription_address
from esx.es4.service import get_eis, update_policy_rules, update_subscription_address
from smsr_core.platform import Function

log = logging.getLogger(__name__)


def profile_download_completed(rt, inbound: Inbound) -> Reply:
    address = inbound.child("SubscriptionAddress")
    rt.registry.profile_download_completed(
        caller_of(inbound), required(inbound, "Eid"), required(inbound, "Iccid"),
        profile_type=inbound.text("ProfileType"),
        address=parse_subscription_address(address) if address is not None else None,
        pol2=parse_pol2(inbound.child("pol2")) if inbound.child("pol2") is not None else None,
    )
    return Reply()

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
        "ES3-CreateISDP": AsyncFunction(Function.CREATE_ISDP, "ES3"),
        "ES3-SendData": AsyncFunction(Function.SEND_DATA, "ES3"),
        "ES3-UpdateConnectivityParameters": AsyncFunction(Function.UPDATE_CONNECTIVITY, "ES3"),
        "ES3-ProfileDownloadCompleted": profile_download_completed,
    },
)

def callback_received(rt, inbound: Inbound) -> None:
    """An ES3 callback from the SM-SR: handed to the download (or relay) that awaits it (RelatesTo).
    A callback nobody awaits (late, replayed, or of a request no download made: ES3-UpdateConnectivityParameters,
    sent by ``esx smdp update-connectivity``) is accepted, logged and kept in the call audit."""
    status, failure = read_execution_status(inbound.body)
    operation = inbound.operation.name.removesuffix("Callback")
    euicc_response = inbound.text("EuiccResponseData")
    taken = rt.downloads.on_callback(inbound.addressing.relates_to, operation, status, failure,
                                     euicc_response=euicc_response, isd_p_aid=inbound.text("Isd-p-aid"),
                                     sender=inbound.caller.oid)
    if not taken:
        code = f" {failure.code.subject}/{failure.code.reason} {failure.message}" if failure is not None else ""
        log.info("%s callback from %s relating to %s, awaited by no operation of this SM-DP: %s%s; "
                 "EuiccResponseData %s", operation, inbound.caller.oid, inbound.addressing.relates_to, status.value,
                 code, euicc_response or "none")


def notification_received(rt, inbound: Inbound) -> None:
    """ES3-HandleProfile<change>Notification: relayed to the profile's MNO as the ES2 notification."""
    change = inbound.operation.name.removeprefix("ES3-HandleProfile").removesuffix("Notification")
    when = datetime.fromisoformat(required(inbound, "CompletionTimestamp").replace("Z", "+00:00"))
    rt.downloads.on_notification(change, required(inbound, "Mno-id"), required(inbound, "Eid").upper(),
                                 required(inbound, "Iccid").upper(), when)


def smsr_change_received(rt, inbound: Inbound) -> None:
    """ES3-HandleSMSRChangeNotification: relayed to the MNO it names as ES2-HandleSMSRChangeNotification."""
    from esx.eis_xml import parse_eis

    when = datetime.fromisoformat(required(inbound, "completionTimestamp").replace("Z", "+00:00"))
    rt.downloads.on_smsr_change(required(inbound, "Mno-id"), parse_eis(inbound.child("Eis")), when)


# The SM-DP's own ES3 endpoint: where the SM-SR's callbacks and notifications arrive.
SMDP_INTERFACE = Interface(
    wsdl="ES3SmDp.wsdl",
    own_role="smdp",
    caller_roles=frozenset({"smsr"}),
    handlers={
        **{name: notification_received for name in (
            "ES3-HandleProfileDisabledNotification", "ES3-HandleProfileEnabledNotification",
            "ES3-HandleProfileDeletedNotification")},
        "ES3-HandleSMSRChangeNotification": smsr_change_received,
        **{name: callback_received for name in (
            "ES3-AuditEISCallback", "ES3-EnableProfileCallback", "ES3-DisableProfileCallback",
            "ES3-DeleteISDPCallback", "ES3-CreateISDPCallback", "ES3-SendDataCallback",
            "ES3-UpdateConnectivityParametersCallback")},
    },
)
