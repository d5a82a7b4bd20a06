"""Serve our hand-written WSDL and XSD files at ``<endpoint>?wsdl`` and ``<endpoint>?xsd=<name>``.

The files in ``wsdl/`` use relative schema locations and a placeholder service address; when
served, the address becomes the endpoint that was asked and every ``schemaLocation`` becomes an
absolute ``?xsd=`` URL on the same endpoint, so a client (zeep, SoapUI, wsimport) can fetch the
whole contract from one URL.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import PurePosixPath
from urllib.parse import parse_qs, quote

from lxml import etree

from .contract import WSDL_DIR, XSD_DIR

_XS = "http://www.w3.org/2001/XMLSchema"
_SOAP12_WSDL = "http://schemas.xmlsoap.org/wsdl/soap12/"


@lru_cache(maxsize=None)
def _load(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def render_contract_file(wsdl_name: str, query: str, endpoint_url: str) -> bytes:
    params = parse_qs(query, keep_blank_values=True)
    if "xsd" in params:
        name = PurePosixPath(params["xsd"][0]).name  # no directory traversal
        path = XSD_DIR / name
        if not name.endswith(".xsd") or not path.is_file():
            raise FileNotFoundError(name)
        doc = etree.fromstring(_load(str(path)))
        _rewrite_locations(doc, endpoint_url)
        return etree.tostring(doc, xml_declaration=True, encoding="utf-8")
    if "wsdl" in params or query.lower() == "wsdl":
        wsdl_name = wsdl_name.split("+")[0]  # an endpoint serving several (esx.binding.contract.load_service): the first
        doc = etree.fromstring(_load(str(WSDL_DIR / wsdl_name)))
        _rewrite_locations(doc, endpoint_url)
        for address in doc.iter(f"{{{_SOAP12_WSDL}}}address"):
            address.set("location", endpoint_url)
        return etree.tostring(doc, xml_declaration=True, encoding="utf-8")
    raise FileNotFoundError(query)


def _rewrite_locations(doc: etree._Element, endpoint_url: str) -> None:
    for tag in ("include", "import"):
        for node in doc.iter(f"{{{_XS}}}{tag}"):
            loc = node.get("schemaLocation")
            if loc:
                node.set("schemaLocation", f"{endpoint_url}?xsd={quote(PurePosixPath(loc).name)}")
