"""ES1 ``EumSignature``: the EUM's XML-DSig over the ``EumSignedInfo`` of an EIS (SGP.02 EISType, sgp02-wire.md §5.1).

In an EIS, ``rps:EumSignature`` (type ``ds:SignatureType``) is the sibling that follows ``rps:EumSignedInfo`` inside
the Eis element (``rps`` = ``http://namespaces.gsma.org/esim-messaging/3``). ``EumSignedInfo`` has no Id attribute.
The SGP.02 text on how the reference selects it was not available, so this module fixes its own profile:

* ``Reference URI=""`` (the document holding the Eis) with two transforms, in this order:
  1. XPath (``http://www.w3.org/TR/1999/REC-xpath-19991116``) with the expression :data:`EUM_SIGNED_INFO_XPATH`,
     which keeps exactly the ``EumSignedInfo`` subtree. It uses local-name()/namespace-uri(), so it depends on no
     prefix binding.
  2. Exclusive C14N (``http://www.w3.org/2001/10/xml-exc-c14n#``), so no ancestor namespace leaks into the digest.
* DigestMethod SHA-256 (``http://www.w3.org/2001/04/xmlenc#sha256``); SignatureMethod ECDSA-SHA256
  (``http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256``); CanonicalizationMethod of SignedInfo: exclusive C14N.
* ``KeyInfo/X509Data/X509Certificate`` carries the EUM certificate, for information only: the verifier uses the EUM
  certificate registered for the EIS, passed in by the caller, and ignores KeyInfo.
* Prefix normalisation: canonical XML keeps namespace prefixes, and SOAP stacks re-prefix elements freely (lxml
  re-uses an ancestor's prefix when a subtree is moved; spyne/zeep pick ``ns0``...). Both signing and verifying
  therefore work on a copy of the Eis rebuilt with fixed prefixes: ``rps`` for ``.../esim-messaging/3``, ``ds`` for
  XML-DSig, ``n0``, ``n1``... for any other namespace in order of first use; comments dropped (C14N without comments
  drops them anyway). An EIS serialised with the ``rps``/``ds`` prefixes verifies with any standard XML-DSig
  verifier; ours also accepts it after re-prefixing in transit. Whitespace and text are not normalised: the EIS must
  travel as XML, not be re-serialised from parsed values (hexBinary case, date forms would change).

xmlsec only signs and verifies an element named ``ds:Signature``: the signature is made as ``ds:Signature`` in the
normalised copy and renamed to ``rps:EumSignature`` before it is inserted into the caller's Eis; verification renames
it back in its own copy.

Verification is strict (against signature wrapping and algorithm downgrade): exactly one ``EumSignedInfo`` anywhere in
the Eis, as a child of the Eis; exactly one ``EumSignature``, the sibling right after it; no other ``ds:Signature``;
the algorithms above and nothing else (no SHA-1, no RSA); exactly one Reference with ``URI=""`` exactly; exactly the
two transforms with exactly that XPath expression.
"""

from __future__ import annotations

import xmlsec
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from keys.errors import SignatureError
from keys.pki import private_key_pem

__all__ = [
    "RPS_NS",
    "DSIG_NS",
    "EUM_SIGNED_INFO_XPATH",
    "sign_eis",
    "verify_eis_signature",
]

RPS_NS = "http://namespaces.gsma.org/esim-messaging/3"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"

EUM_SIGNED_INFO = f"{{{RPS_NS}}}EumSignedInfo"
EUM_SIGNATURE = f"{{{RPS_NS}}}EumSignature"
DS_SIGNATURE = f"{{{DSIG_NS}}}Signature"

EUM_SIGNED_INFO_XPATH = (
    f"ancestor-or-self::*[local-name()='EumSignedInfo' and namespace-uri()='{RPS_NS}']"
)

# The only algorithms accepted, by URI.
C14N_ALGORITHM = xmlsec.Transform.EXCL_C14N.href  # http://www.w3.org/2001/10/xml-exc-c14n#
SIGNATURE_ALGORITHM = xmlsec.Transform.ECDSA_SHA256.href  # http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256
DIGEST_ALGORITHM = xmlsec.Transform.SHA256.href  # http://www.w3.org/2001/04/xmlenc#sha256
XPATH_ALGORITHM = xmlsec.Transform.XPATH.href  # http://www.w3.org/TR/1999/REC-xpath-19991116

_CANONICAL_PREFIXES = {RPS_NS: "rps", DSIG_NS: "ds"}
_XML_NS = "http://www.w3.org/XML/1998/namespace"


# --- prefix normalisation --------------------------------------------------------------------------------------


def _namespaces_in_use(root: etree._Element) -> list[str]:
    seen: dict[str, None] = {}
    for el in root.iter(etree.Element):
        names = [el.tag, *el.attrib.keys()]
        for name in names:
            if name.startswith("{"):
                uri = name[1:].split("}", 1)[0]
                if uri != _XML_NS:
                    seen.setdefault(uri)
    return list(seen)


def _normalised_copy(eis: etree._Element) -> etree._Element:
    """A copy of ``eis`` as the root of a new document, with the fixed prefixes described in the module docstring."""
    nsmap = {prefix: uri for uri, prefix in _CANONICAL_PREFIXES.items()}
    others = [uri for uri in _namespaces_in_use(eis) if uri not in _CANONICAL_PREFIXES]
    nsmap.update({f"n{i}": uri for i, uri in enumerate(others)})

    def copy_children(src: etree._Element, dst: etree._Element) -> None:
        last = None
        for child in src:
            if isinstance(child, etree._Comment):
                # Keep the text flow: a dropped comment's tail still belongs to the parent's content.
                if child.tail:
                    if last is None:
                        dst.text = (dst.text or "") + child.tail
                    else:
                        last.tail = (last.tail or "") + child.tail
                continue
            if isinstance(child, etree._ProcessingInstruction):
                new = etree.ProcessingInstruction(child.target, child.text)
                dst.append(new)
            elif isinstance(child, etree._Element) and isinstance(child.tag, str):
                new = etree.SubElement(dst, child.tag, dict(child.attrib))
                new.text = child.text
                copy_children(child, new)
            else:  # entity references and the like: refuse rather than guess
                raise SignatureError(f"unsupported node {child!r} in the EIS")
            new.tail = child.tail
            last = new

    root = etree.Element(eis.tag, dict(eis.attrib), nsmap=nsmap)
    root.text = eis.text
    copy_children(eis, root)
    return root


# --- structure checks ------------------------------------------------------------------------------------------


def _only_signed_info(eis: etree._Element) -> etree._Element:
    found = list(eis.iter(EUM_SIGNED_INFO))
    if len(found) != 1:
        raise SignatureError(f"the EIS must hold exactly one EumSignedInfo, found {len(found)}")
    if found[0].getparent() is not eis:
        raise SignatureError("EumSignedInfo is not a child of the Eis element")
    return found[0]


def _next_element(el: etree._Element) -> etree._Element | None:
    nxt = el.getnext()
    while nxt is not None and not isinstance(nxt.tag, str):
        nxt = nxt.getnext()
    return nxt


def _one(parent: etree._Element, path: str, what: str) -> etree._Element:
    found = parent.findall(path, {"ds": DSIG_NS})
    if len(found) != 1:
        raise SignatureError(f"expected exactly one {what}, found {len(found)}")
    return found[0]


def _algorithm(el: etree._Element, allowed: str, what: str) -> None:
    algorithm = el.get("Algorithm")
    if algorithm != allowed:
        raise SignatureError(f"{what} {algorithm!r} not allowed (only {allowed})")


def _check_signed_info(signature: etree._Element) -> None:
    """The profile of the module docstring, checked before any cryptography runs."""
    signed_info = _one(signature, "ds:SignedInfo", "ds:SignedInfo")
    _algorithm(_one(signed_info, "ds:CanonicalizationMethod", "CanonicalizationMethod"), C14N_ALGORITHM,
               "canonicalization method")
    _algorithm(_one(signed_info, "ds:SignatureMethod", "SignatureMethod"), SIGNATURE_ALGORITHM, "signature method")
    reference = _one(signed_info, "ds:Reference", "ds:Reference")
    if reference.get("URI") != "":
        raise SignatureError(f"Reference URI must be \"\", not {reference.get('URI')!r}")
    _algorithm(_one(reference, "ds:DigestMethod", "DigestMethod"), DIGEST_ALGORITHM, "digest method")
    transforms = _one(reference, "ds:Transforms", "ds:Transforms").findall(f"{{{DSIG_NS}}}Transform")
    if [t.get("Algorithm") for t in transforms] != [XPATH_ALGORITHM, C14N_ALGORITHM]:
        raise SignatureError(
            f"transforms must be exactly [XPath, exclusive C14N], found {[t.get('Algorithm') for t in transforms]}"
        )
    xpath = _one(transforms[0], "ds:XPath", "ds:XPath")
    if len(xpath) or (xpath.text or "").strip() != EUM_SIGNED_INFO_XPATH:
        raise SignatureError(f"unexpected XPath filter {xpath.text!r}")
    if len(transforms[1]):
        raise SignatureError("the exclusive C14N transform must have no parameters")


# --- xmlsec plumbing -------------------------------------------------------------------------------------------


def _context(key: xmlsec.Key) -> xmlsec.SignatureContext:
    ctx = xmlsec.SignatureContext()
    ctx.key = key
    # Belt and braces: xmlsec itself refuses anything outside the profile.
    ctx.enable_signature_transform(xmlsec.Transform.EXCL_C14N)
    ctx.enable_signature_transform(xmlsec.Transform.ECDSA_SHA256)
    ctx.enable_reference_transform(xmlsec.Transform.XPATH)
    ctx.enable_reference_transform(xmlsec.Transform.EXCL_C14N)
    ctx.enable_reference_transform(xmlsec.Transform.SHA256)
    return ctx


def _template(root: etree._Element) -> etree._Element:
    signature = xmlsec.template.create(
        root, xmlsec.Transform.EXCL_C14N, xmlsec.Transform.ECDSA_SHA256, ns="ds"
    )
    reference = xmlsec.template.add_reference(signature, xmlsec.Transform.SHA256, uri="")
    xpath_transform = xmlsec.template.add_transform(reference, xmlsec.Transform.XPATH)
    etree.SubElement(xpath_transform, f"{{{DSIG_NS}}}XPath").text = EUM_SIGNED_INFO_XPATH
    xmlsec.template.add_transform(reference, xmlsec.Transform.EXCL_C14N)
    key_info = xmlsec.template.ensure_key_info(signature)
    xmlsec.template.x509_data_add_certificate(xmlsec.template.add_x509_data(key_info))
    return signature


# --- API -------------------------------------------------------------------------------------------------------


def sign_eis(eis: etree._Element, eum_key: ec.EllipticCurvePrivateKey, eum_cert_pem: bytes) -> None:
    """Sign ``EumSignedInfo`` of ``eis`` with the EUM key; insert (or replace) ``EumSignature`` right after it."""
    if not isinstance(eum_key, ec.EllipticCurvePrivateKey):
        raise TypeError("the EUM key must be an EC private key")
    for old in eis.findall(EUM_SIGNATURE):
        eis.remove(old)
    signed_info = _only_signed_info(eis)

    root = _normalised_copy(eis)
    signature = _template(root)
    _only_signed_info(root).addnext(signature)
    key = xmlsec.Key.from_memory(private_key_pem(eum_key), xmlsec.KeyFormat.PEM, None)
    key.load_cert_from_memory(eum_cert_pem, xmlsec.KeyFormat.CERT_PEM)
    try:
        _context(key).sign(signature)
    except xmlsec.Error as e:
        raise SignatureError(f"signing failed: {e}") from None
    signature.tag = EUM_SIGNATURE

    # Keep the caller's formatting: the new element takes over the whitespace that followed EumSignedInfo.
    signature.tail = signed_info.tail
    signed_info.addnext(signature)


def verify_eis_signature(eis: etree._Element, eum_cert_pem: bytes) -> None:
    """Verify ``EumSignature`` of ``eis`` with the registered EUM certificate; raises :class:`SignatureError`.

    Only the signature is checked here. Whether ``eum_cert_pem`` itself is valid and issued by the CI is the
    caller's check (:func:`keys.chain.verify_x509_issued_by`, or :func:`keys.chain.verify_ecasd_chain` for the
    whole EIS chain). ``eis`` is not modified.
    """
    root = _normalised_copy(eis)
    signed_info = _only_signed_info(root)
    signatures = list(root.iter(EUM_SIGNATURE))
    if len(signatures) != 1:
        raise SignatureError(f"the EIS must hold exactly one EumSignature, found {len(signatures)}")
    signature = signatures[0]
    if _next_element(signed_info) is not signature:
        raise SignatureError("EumSignature is not the sibling right after EumSignedInfo")
    if any(True for _ in root.iter(DS_SIGNATURE)):
        raise SignatureError("unexpected ds:Signature element inside the EIS")
    _check_signed_info(signature)

    # KeyInfo is not signed and not trusted; drop it so xmlsec cannot pick a key or certificate from it.
    for key_info in signature.findall(f"{{{DSIG_NS}}}KeyInfo"):
        signature.remove(key_info)
    signature.tag = DS_SIGNATURE
    try:
        key = xmlsec.Key.from_memory(eum_cert_pem, xmlsec.KeyFormat.CERT_PEM, None)
    except xmlsec.Error as e:
        raise SignatureError(f"cannot load the registered EUM certificate: {e}") from None
    try:
        _context(key).verify(signature)
    except xmlsec.Error as e:
        raise SignatureError(f"EumSignature does not verify: {e}") from None
