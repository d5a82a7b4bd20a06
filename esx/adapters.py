"""Small helpers every interface adapter uses to read requests and build replies."""
from __future__ import annotations

from lxml import etree

from esx.binding.ns import GSMA
from esx.binding.soap import Inbound
from esx.eis_xml import render_eis
from sgp02 import codes
from sgp02.codes import FunctionFailed
from sgp02.eis import Eis
from sgp02.roles import Caller


def caller_of(inbound: Inbound) -> Caller:
    return Caller(oid=inbound.caller.oid, role=inbound.caller.role,
                  mnos=getattr(inbound.caller, "served_mnos", frozenset()))


def required(inbound: Inbound, local: str) -> str:
    """A mandatory text element (schema validation already ran; this guards empty text)."""
    value = inbound.text(local)
    if not value:
        raise FunctionFailed(codes.MISSING_PARAMETER, f"{local} is missing")
    return value


def flag(inbound: Inbound, local: str) -> bool:
    """An optional xs:boolean element ("true"/"1"; absent is false)."""
    return (inbound.text(local) or "false") in ("true", "1")


def eis_element(eis: Eis) -> etree._Element:
    holder = etree.Element("holder")
    return render_eis(holder, eis)


class AsyncFunction:
    """The adapter of one asynchronous function: persist the request, answer 202 (smsr_core.platform).

    A request that fails before it can be queued (schema, identity checks) is still accepted once
    its requester is known: the failure goes back as the function's callback (:meth:`reject`).
    """

    def __init__(self, function, interface: str) -> None:
        self.function = function
        self.interface = interface

    def request(self, inbound: Inbound):
        from smsr_core.platform import AsyncRequest, Function

        if self.function is Function.AUDIT:  # Iccid* narrows the audit
            params = {"iccids": [el.text.strip().upper() for el in inbound.body.findall(f"{{{GSMA}}}Iccid")
                                 if el.text and el.text.strip()]}
        elif self.function is Function.CREATE_ISDP:
            memory = inbound.text("RequiredMemory") or "0"
            params = {"iccid": (inbound.text("Iccid") or "").upper(), "mno_id": inbound.text("Mno-id") or "",
                      "required_memory": int(memory) if memory.lstrip("-").isdigit() else 0,
                      "more_to_do": flag(inbound, "MoreToDo")}
        elif self.function is Function.SEND_DATA:
            params = {"sd_aid": (inbound.text("Sd-aid") or "").upper(), "data": (inbound.text("Data") or "").upper(),
                      "more_to_do": flag(inbound, "MoreToDo")}
        else:
            params = {"iccid": (inbound.text("Iccid") or "").upper()}
        return AsyncRequest(
            function=self.function, interface=self.interface, requester=caller_of(inbound),
            eid=(inbound.text("Eid") or "").upper(), message_id=inbound.addressing.message_id,
            function_call_id=inbound.function_call_id, reply_to=inbound.addressing.reply_address,
            validity_period=inbound.validity_period, received_at=inbound.received_at, params=params,
        )

    def __call__(self, rt, inbound: Inbound) -> None:
        rt.platform.accept(self.request(inbound))
        return None

    def reject(self, rt, inbound: Inbound, failure: FunctionFailed) -> None:
        rt.platform.reject(self.request(inbound), failure)
