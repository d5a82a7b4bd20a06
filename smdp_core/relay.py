"""The SM-DP's registry functions for MNOs (ES2), relayed to the SM-SR (ES3).

ES2-GetEIS, ES2-UpdatePolicyRules and ES2-UpdateSubscriptionAddress name the SM-SR in
``Smsr-id``; the SM-DP asks that SM-SR over ES3. The SM-SR shows an SM-DP the profiles of every MNO
that named it (it acts for several), so the SM-DP is where an MNO is limited to its own: the EIS it
returns holds only the caller's profiles and audit records, and a profile of another MNO is refused
with 8.2.1/1.2 before anything is relayed (:func:`owned_profile`, which the relayed asynchronous functions of
smdp_core.download use too).
"""
from __future__ import annotations

from typing import Callable, Protocol, TypeVar

from sgp02 import codes
from sgp02.codes import FunctionFailed
from sgp02.eis import Eis, Pol2Rule, ProfileInfo, SubscriptionAddress, eis_seen_by
from sgp02.roles import Caller

Port = TypeVar("Port")


def smsr_named(gateway_for: Callable[[str], Port | None], smsr_id: str) -> Port:
    """The SM-SR an MNO named (``Smsr-id``), as this SM-DP reaches it; 8.7/3.9 when this SM-DP does not know it."""
    gateway = gateway_for(smsr_id)
    if gateway is None:
        raise FunctionFailed(codes.SMSR_UNKNOWN, f"SM-SR {smsr_id} is unknown to this SM-DP", subject_identifier=smsr_id)
    return gateway


def owned_profile(eis: Eis, mno_id: str, eid: str, iccid: str) -> ProfileInfo:
    """The profile ``iccid`` of ``eis`` (as the SM-SR shows it to this SM-DP) when MNO ``mno_id`` owns it: the one
    ownership check of the SM-DP. 8.2.1/3.9 when the eUICC has no such profile, 8.2.1/1.2 when it is another MNO's."""
    profile = eis.profile(iccid.upper())
    if profile is None:
        raise FunctionFailed(codes.ICCID_UNKNOWN, f"ICCID {iccid} is not on eUICC {eid}", subject_identifier=iccid)
    if profile.mno_id != mno_id:
        raise FunctionFailed(codes.ICCID_NOT_ALLOWED, f"profile {iccid} belongs to another MNO", subject_identifier=iccid)
    return profile


class SmsrGateway(Protocol):
    """What the SM-DP needs from one SM-SR (implemented over ES3 by ``esx.es3.client``)."""

    def get_eis(self, eid: str) -> Eis: ...

    def update_policy_rules(self, eid: str, iccid: str, pol2: tuple[Pol2Rule, ...]) -> None: ...

    def update_subscription_address(self, eid: str, iccid: str, address: SubscriptionAddress) -> None: ...

    def request(self, operation: str, *, message_id: str, validity: int | None, **params) -> None:
        """An asynchronous ES3 request, answered 202 (its callback comes to the SM-DP's /smdp/es3)."""


class SmdpRelay:
    def __init__(self, gateway_for: Callable[[str], SmsrGateway | None]) -> None:
        self._gateway_for = gateway_for

    def get_eis(self, mno_id: str, smsr_id: str, eid: str) -> Eis:
        """The EIS as the MNO may see it (the SM-SR's rule, sgp02.eis.eis_seen_by): its own profiles and audit
        records only. An MNO with no profile on the eUICC still gets the EIS: it needs it before ordering a download."""
        return eis_seen_by(smsr_named(self._gateway_for, smsr_id).get_eis(eid), Caller(mno_id, "mno"))

    def update_policy_rules(self, mno_id: str, smsr_id: str, eid: str, iccid: str, pol2: tuple[Pol2Rule, ...]) -> None:
        gateway = smsr_named(self._gateway_for, smsr_id)
        owned_profile(gateway.get_eis(eid), mno_id, eid, iccid)
        gateway.update_policy_rules(eid, iccid, pol2)

    def update_subscription_address(self, mno_id: str, smsr_id: str, eid: str, iccid: str,
                                    address: SubscriptionAddress) -> None:
        gateway = smsr_named(self._gateway_for, smsr_id)
        owned_profile(gateway.get_eis(eid), mno_id, eid, iccid)
        gateway.update_subscription_address(eid, iccid, address)

    def update_connectivity_parameters(self, smsr_id: str, eid: str, iccid: str, connectivity_parameters: bytes, *,
                                       message_id: str, validity: int | None = None) -> None:
        """ES3-UpdateConnectivityParameters, asked by this SM-DP's operator (no ES2 function asks for it): sent to
        the SM-SR, which answers 202 and later the callback to /smdp/es3 (esx.es3.service logs it; nothing relays it
        further). ``connectivity_parameters`` are the ES8 commands as they must reach the ISD-P (ota.es8: the
        SM-DP's SCP03 session with it), prepared elsewhere: this SM-DP drops an ISD-P's key set once the download
        is completed (smdp_core.download), so it cannot build them. Whether the caller may act on the profile is
        the SM-SR's to decide (its refusal is the callback)."""
        smsr_named(self._gateway_for, smsr_id).request(
            "ES3-UpdateConnectivityParameters", message_id=message_id, validity=validity, Eid=eid.upper(),
            Iccid=iccid.upper(), ConnectivityParameters=bytes(connectivity_parameters).hex().upper())
