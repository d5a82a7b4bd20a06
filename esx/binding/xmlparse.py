"""Hostile-input XML parsing: the only way the binding layer turns bytes into a tree.

No DTD is loaded, no entity is expanded, nothing is fetched from the network and trees are
bounded (lxml's huge_tree stays off). A document that declares a DOCTYPE is refused outright:
SOAP 1.2 forbids a DTD in an envelope (SOAP 1.2 part 1, section 5), and refusing it closes the
entity-expansion ("billion laughs") and external-entity (XXE) doors in one place.
"""
from __future__ import annotations

from lxml import etree

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class XmlRejected(ValueError):
    """The bytes are not an XML document we accept; the text says why."""


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
    )


def parse_xml(data: bytes, *, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> etree._Element:
    if len(data) > max_bytes:
        raise XmlRejected(f"message of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    if not data.strip():
        raise XmlRejected("empty message")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise XmlRejected(f"XML not well-formed: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise XmlRejected("a DOCTYPE declaration is not allowed in a SOAP message")
    return root
