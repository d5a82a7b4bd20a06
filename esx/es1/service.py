"""ES1 (EUM -> SM-SR): RegisterEIS. A thin adapter over ``smsr_core.registry``."""
from __future__ import annotations

from esx.adapters import caller_of
from esx.binding.soap import Inbound, Interface, Reply
from esx.eis_xml import parse_eis


def register_eis(rt, inbound: Inbound) -> Reply:
    eis_el = inbound.child("Eis")
    eis = parse_eis(eis_el)
    cert = inbound.caller.signing_cert_pem
    rt.registry.register_eis(caller_of(inbound), cert.encode() if cert else None, eis, eis_el)
    return Reply()


INTERFACE = Interface(
    wsdl="ES1SmSr.wsdl",
    own_role="smsr",
    caller_roles=frozenset({"eum"}),
    handlers={"ES1-RegisterEIS": register_eis},
)
