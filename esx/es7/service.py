"""ES7 (SM-SR <-> SM-SR, SM-SR change), served at ``/smsr/es7``: both ends of the interface on one endpoint.

Requests (the provider's operations, ES7SmSrProvider.wsdl) and callbacks (the requester's, ES7SmSrRequester.wsdl) are
dispatched on the body element, so a peer's requests and the callbacks of our own requests (whose wsa:ReplyTo is this
endpoint) arrive at the same address. Only a registered SM-SR may call (caller role ``smsr``). Thin adapters:

- ES7-HandoverEUICC: at the new SM-SR, ``smsr_core.handover.Handovers.on_handover``;
- ES7-AuthenticateSMSR, ES7-CreateAdditionalKeySet: at the current SM-SR, the SMSRChange operation's answers
  (``smsr_core.handover.HandingOver.on_peer_request``, on the platform);
- their callbacks: at the new SM-SR, ``Handovers.on_callback``; the HandoverEUICC callback at the current SM-SR,
  ``HandingOver.handover_result``.

Every request is answered 202 and later by its callback; one that cannot be taken is answered by a callback saying
why (8.1.1/3.9 when no change of that eUICC with the caller is under way).
"""
from __future__ import annotations

from esx.adapters import required
from esx.binding.soap import Inbound, Interface, read_execution_status
from esx.eis_xml import parse_eis
from sgp02.codes import FunctionFailed

PROVIDER, REQUESTER = "ES7SmSrProvider.wsdl", "ES7SmSrRequester.wsdl"

# The elements after Eid that each request carries, in schema order (what the current SM-SR relays to the card).
REQUEST_FIELDS = {
    "AuthenticateSMSR": ("SmsrCertificate",),
    "CreateAdditionalKeySet": ("KeyVersionNumber", "InitialSequenceCounter", "ECCKeyLength", "ScenarioParameter",
                               "HostId", "EphemeralPublicKey", "Signature"),
}
CALLBACK_RESULTS = ("RandomChallenge", "DerivationRandom", "Receipt")


class PeerRequest:
    """One ES7 request: handed to the flow that runs it (``__call__``); one refused before that (the caller's role,
    the schema) is answered by its callback (``reject``), as every asynchronous function is."""

    def __init__(self, function: str) -> None:
        self.function = function

    def __call__(self, rt, inbound: Inbound) -> None:
        if self.function == "HandoverEUICC":
            rt.handovers.on_handover(inbound.caller.oid, parse_eis(inbound.child("Eis")),
                                     message_id=inbound.addressing.message_id,
                                     reply_to=inbound.addressing.reply_address, received_at=inbound.received_at)
            return
        fields = {local: inbound.text(local) or "" for local in REQUEST_FIELDS[self.function]}
        rt.platform.on_peer_request(inbound.caller.oid, self.function, required(inbound, "Eid"), fields,
                                    message_id=inbound.addressing.message_id,
                                    reply_to=inbound.addressing.reply_address, received_at=inbound.received_at)

    def reject(self, rt, inbound: Inbound, failure: FunctionFailed) -> None:
        rt.platform.refuse_peer_request(inbound.caller.oid, self.function, failure,
                                        message_id=inbound.addressing.message_id,
                                        reply_to=inbound.addressing.reply_address, received_at=inbound.received_at)


def callback_received(rt, inbound: Inbound) -> None:
    """A callback of one of our ES7 requests (RelatesTo names it). One nobody awaits is kept in the call audit only."""
    status, failure = read_execution_status(inbound.body)
    relates_to = inbound.addressing.relates_to
    if inbound.operation.name == "ES7-HandoverEUICCCallback":
        rt.platform.handover_result(inbound.caller.oid, relates_to, status, failure, inbound.received_at)
        return
    results = {local: inbound.text(local) for local in CALLBACK_RESULTS if inbound.text(local)}
    rt.handovers.on_callback(inbound.caller.oid, relates_to, status, failure, results, inbound.received_at)


INTERFACE = Interface(
    wsdl=f"{PROVIDER}+{REQUESTER}",
    own_role="smsr",
    caller_roles=frozenset({"smsr"}),
    handlers={
        "ES7-HandoverEUICC": PeerRequest("HandoverEUICC"),
        "ES7-AuthenticateSMSR": PeerRequest("AuthenticateSMSR"),
        "ES7-CreateAdditionalKeySet": PeerRequest("CreateAdditionalKeySet"),
        "ES7-HandoverEUICCCallback": callback_received,
        "ES7-AuthenticateSMSRCallback": callback_received,
        "ES7-CreateAdditionalKeySetCallback": callback_received,
    },
)
