"""Small helpers every interface adapter uses to read requests and build replies."""
from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache

from lxml import etree

from esx.binding import contract
from esx.binding.ns import GSMA
from esx.binding.soap import Inbound, Reply, response_element
from esx.eis_xml import render_eis
from sgp02 import codes
from sgp02.codes import FunctionFailed, Status
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


# Rendered EIS text kept per process, keyed by the ``Eis`` value itself (frozen, hashable): the key is what was
# read from the database for this very request, so a change of any field by any writer, in this process or
# another, is another key, and nothing needs invalidating; a stale entry only ages out. 1,024 entries of ~5 kB
# text (plus their keys) are a few MB per process.
EIS_CACHE_SIZE = 1024
_PROBE_START = datetime(2000, 1, 1, tzinfo=timezone.utc)


@lru_cache(maxsize=EIS_CACHE_SIZE)
def _rendered_eis(eis: Eis) -> tuple[bytes, bool]:
    """The Eis element's text, and whether it passed our XSD (EISType: inside a minimal ES4-GetEISResponse, whose
    EisResponseType ES2 and ES3 share)."""
    text = etree.tostring(render_eis(etree.Element("holder"), eis))
    probe = response_element(f"{{{GSMA}}}ES4-GetEISResponse", _PROBE_START, Status.EXECUTED_SUCCESS,
                             children=[etree.fromstring(text)], ended=_PROBE_START)
    return text, contract.validate(probe) is None


def eis_element(eis: Eis) -> etree._Element:
    """The Eis element for ``eis``: one parse of its cached text (38 elements built, the two signed parts parsed
    and the result validated only the first time this value is rendered: BENCHMARKS.md, GetEIS third round)."""
    try:
        return etree.fromstring(_rendered_eis(eis)[0])
    except TypeError:  # a value built with a list somewhere is not hashable: rendered as it is
        return render_eis(etree.Element("holder"), eis)


def eis_reply(eis: Eis) -> Reply:
    """A GetEIS reply: the Eis element, marked as checked when its text passed the XSD once already, so the
    response is validated without it (``Reply.checked``)."""
    try:
        text, valid = _rendered_eis(eis)
    except TypeError:
        return Reply([render_eis(etree.Element("holder"), eis)])
    el = etree.fromstring(text)
    return Reply([el], checked=(el,) if valid else ())


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
        elif self.function is Function.UPDATE_CONNECTIVITY:
            params = {"iccid": (inbound.text("Iccid") or "").upper(),
                      "connectivity_parameters": (inbound.text("ConnectivityParameters") or "").upper()}
        elif self.function is Function.SMSR_CHANGE:
            params = {"target_smsr_id": inbound.text("Target-Smsr-id") or ""}
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


class PrepareSmsrChange:
    """ES4-PrepareSMSRChange, at the new SM-SR (smsr_core.handover.Handovers.prepare): persisted and answered by its
    callback; a request refused before that is answered the same way."""

    @staticmethod
    def request(inbound: Inbound):
        from smsr_core.handover import Prepare

        return Prepare(requester=caller_of(inbound), eid=(inbound.text("Eid") or "").upper(),
                       current_smsr_id=inbound.text("CurrentSMSRid") or inbound.text("CurrentSmsrId") or "",
                       message_id=inbound.addressing.message_id, function_call_id=inbound.function_call_id,
                       reply_to=inbound.addressing.reply_address, validity_period=inbound.validity_period,
                       received_at=inbound.received_at)

    def __call__(self, rt, inbound: Inbound) -> None:
        rt.handovers.prepare(self.request(inbound))
        return None

    def reject(self, rt, inbound: Inbound, failure: FunctionFailed) -> None:
        rt.handovers.refuse(self.request(inbound), failure)
