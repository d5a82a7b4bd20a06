"""Small helpers every interface adapter uses to read requests and build replies."""
from __future__ import annotations

from lxml import etree

from esx import codes
from esx.binding.soap import Inbound
from esx.codes import FunctionFailed
from esx.eis_xml import render_eis
from smsr_core.eis import Eis
from smsr_core.registry import Caller


def caller_of(inbound: Inbound) -> Caller:
    return Caller(oid=inbound.caller.oid, role=inbound.caller.role)


def required(inbound: Inbound, local: str) -> str:
    """A mandatory text element (schema validation already ran; this guards empty text)."""
    value = inbound.text(local)
    if not value:
        raise FunctionFailed(codes.MISSING_PARAMETER, f"{local} is missing")
    return value


def eis_element(eis: Eis) -> etree._Element:
    holder = etree.Element("holder")
    return render_eis(holder, eis)
