from __future__ import annotations

import base64
import copy
import hashlib

import pytest
import xmlsec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree

from keys.errors import SignatureError
from keys.pki import DevPki, private_key_pem
from keys.xmldsig import DSIG_NS, EUM_SIGNED_INFO_XPATH, RPS_NS, sign_eis, verify_eis_signature

from .conftest import EID

NS = {"rps": RPS_NS, "ds": DSIG_NS}
SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"


def eis_xml(pki: DevPki, prefix: str = "rps") -> str:
    """An EIS shaped like EISType (sgp02-wire.md §5.1), with the /3 namespace bound to ``prefix``."""
    _, ecasd = pki.issue_ecasd(EID)
    p = f"{prefix}:" if prefix else ""
    decl = f"xmlns:{prefix}" if prefix else "xmlns"
    return f"""<{p}Eis {decl}="{RPS_NS}">
  <{p}EumSignedInfo>
    <{p}Eid>{EID}</{p}Eid>
    <{p}Eum-Id>{pki.eum_oid}</{p}Eum-Id>
    <{p}ProductionDate>2026-01-15T00:00:00Z</{p}ProductionDate>
    <{p}PlatformType>esx-sim</{p}PlatformType>
    <{p}PlatformVersion>1.0.0</{p}PlatformVersion>
    <{p}Isd-p-loadfile-aid>A0000005591010FFFFFFFF8900000D00</{p}Isd-p-loadfile-aid>
    <{p}Isd-p-module-aid>A0000005591010FFFFFFFF8900000E00</{p}Isd-p-module-aid>
    <{p}Ecasd>
      <{p}Aid>A0000005591010FFFFFFFF8900000200</{p}Aid>
      <{p}Sin>0102</{p}Sin>
      <{p}Sdin>0304</{p}Sdin>
      <{p}Role>ECASD</{p}Role>
      <{p}Keyset>
        <{p}Version>115</{p}Version>
        <{p}Type>CA</{p}Type>
        <{p}Certificate>
          <{p}Index>1</{p}Index>
          <{p}CaId>{ecasd.hex().upper()[10:50]}</{p}CaId>
          <{p}Value>{ecasd.hex().upper()}</{p}Value>
        </{p}Certificate>
      </{p}Keyset>
    </{p}Ecasd>
    <{p}EuiccCapabilities>
      <{p}CattpSupport>false</{p}CattpSupport>
      <{p}HttpSupport>true</{p}HttpSupport>
      <{p}HttpVersion>1.1.0</{p}HttpVersion>
      <{p}SecurePacketVersion>1.0.0</{p}SecurePacketVersion>
      <{p}RemoteProvisioningVersion>3.1.0</{p}RemoteProvisioningVersion>
    </{p}EuiccCapabilities>
  </{p}EumSignedInfo>
  <{p}RemainingMemory>250000</{p}RemainingMemory>
  <{p}AvailableMemoryForProfiles>200000</{p}AvailableMemoryForProfiles>
  <{p}Smsr-id>1.3.6.1.4.1.99999.1.2</{p}Smsr-id>
</{p}Eis>"""


@pytest.fixture(scope="module")
def signed(pki: DevPki) -> bytes:
    eis = etree.fromstring(eis_xml(pki))
    sign_eis(eis, pki.eum_key, pki.eum_cert_pem)
    return etree.tostring(eis)


def parse(data: bytes | str) -> etree._Element:
    return etree.fromstring(data)


def rejected(eis: etree._Element, cert_pem: bytes, match: str | None = None) -> SignatureError:
    with pytest.raises(SignatureError, match=match) as info:
        verify_eis_signature(eis, cert_pem)
    return info.value


# --- round trip --------------------------------------------------------------------------------------------------


def test_sign_and_verify(pki: DevPki, signed: bytes) -> None:
    eis = parse(signed)
    verify_eis_signature(eis, pki.eum_cert_pem)
    names = [etree.QName(child).localname for child in eis]
    assert names[:2] == ["EumSignedInfo", "EumSignature"]
    signature = eis.find("rps:EumSignature", NS)
    assert signature.find("ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS) is not None


def test_resigning_replaces_the_signature(pki: DevPki, signed: bytes) -> None:
    eis = parse(signed)
    sign_eis(eis, pki.eum_key, pki.eum_cert_pem)
    assert len(eis.findall("rps:EumSignature", NS)) == 1
    verify_eis_signature(eis, pki.eum_cert_pem)


def test_signature_is_plain_xml_dsig(pki: DevPki, signed: bytes) -> None:
    """Cross-check without xmlsec: digest of exc-C14N(EumSignedInfo), ECDSA r||s over exc-C14N(SignedInfo)."""
    eis = parse(signed)
    signed_info = eis.find("rps:EumSignedInfo", NS)
    ds_signed_info = eis.find("rps:EumSignature/ds:SignedInfo", NS)
    digest = hashlib.sha256(etree.tostring(signed_info, method="c14n", exclusive=True)).digest()
    assert base64.b64decode(ds_signed_info.findtext("ds:Reference/ds:DigestValue", namespaces=NS)) == digest
    value = base64.b64decode(eis.findtext("rps:EumSignature/ds:SignatureValue", namespaces=NS))
    assert len(value) == 64
    der = encode_dss_signature(int.from_bytes(value[:32], "big"), int.from_bytes(value[32:], "big"))
    data = etree.tostring(ds_signed_info, method="c14n", exclusive=True)
    pki.eum_key.public_key().verify(der, data, ec.ECDSA(hashes.SHA256()))


def test_parts_outside_eum_signed_info_are_not_covered(pki: DevPki, signed: bytes) -> None:
    eis = parse(signed)
    eis.find("rps:RemainingMemory", NS).text = "1"
    verify_eis_signature(eis, pki.eum_cert_pem)


# --- tampering and wrong keys --------------------------------------------------------------------------------------


def test_tampered_platform_version(pki: DevPki, signed: bytes) -> None:
    eis = parse(signed)
    eis.find("rps:EumSignedInfo/rps:PlatformVersion", NS).text = "1.0.1"
    rejected(eis, pki.eum_cert_pem, "does not verify")


def test_tampered_ecasd_certificate(pki: DevPki, signed: bytes) -> None:
    eis = parse(signed)
    _, other = pki.issue_ecasd(EID)
    eis.find(".//rps:Certificate/rps:Value", NS).text = other.hex().upper()
    rejected(eis, pki.eum_cert_pem, "does not verify")


def test_signed_by_another_eum(pki: DevPki) -> None:
    other_key, other_pem = pki.issue_eum("1.3.6.1.4.1.99999.2.3")
    eis = parse(eis_xml(pki))
    sign_eis(eis, other_key, other_pem)
    verify_eis_signature(eis, other_pem)
    # KeyInfo carries the other EUM's certificate; the registered one is what counts.
    rejected(eis, pki.eum_cert_pem, "does not verify")


def test_unsigned(pki: DevPki) -> None:
    rejected(parse(eis_xml(pki)), pki.eum_cert_pem, "exactly one EumSignature, found 0")


def test_bad_registered_certificate(signed: bytes) -> None:
    rejected(parse(signed), b"not a certificate", "registered EUM certificate")


# --- algorithm and reference profile -----------------------------------------------------------------------------


def sign_with(
    pki: DevPki,
    *,
    signature_method=xmlsec.Transform.ECDSA_SHA256,
    digest_method=xmlsec.Transform.SHA256,
    uri: str = "",
    transforms: tuple = ("xpath", "exc"),
    xpath: str = EUM_SIGNED_INFO_XPATH,
    references: int = 1,
) -> etree._Element:
    """A cryptographically valid EumSignature made outside our profile, straight with xmlsec."""
    eis = parse(eis_xml(pki))
    signature = xmlsec.template.create(eis, xmlsec.Transform.EXCL_C14N, signature_method, ns="ds")
    for _ in range(references):
        reference = xmlsec.template.add_reference(signature, digest_method, uri=uri)
        for name in transforms:
            if name == "xpath":
                node = xmlsec.template.add_transform(reference, xmlsec.Transform.XPATH)
                etree.SubElement(node, f"{{{DSIG_NS}}}XPath").text = xpath
            elif name == "exc":
                xmlsec.template.add_transform(reference, xmlsec.Transform.EXCL_C14N)
            elif name == "enveloped":
                xmlsec.template.add_transform(reference, xmlsec.Transform.ENVELOPED)
    eis.find("rps:EumSignedInfo", NS).addnext(signature)
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(private_key_pem(pki.eum_key), xmlsec.KeyFormat.PEM, None)
    ctx.sign(signature)
    signature.tag = f"{{{RPS_NS}}}EumSignature"
    return parse(etree.tostring(eis))


def test_out_of_profile_helper_makes_valid_signatures(pki: DevPki) -> None:
    verify_eis_signature(sign_with(pki), pki.eum_cert_pem)


def test_sha1_digest_rejected(pki: DevPki) -> None:
    rejected(sign_with(pki, digest_method=xmlsec.Transform.SHA1), pki.eum_cert_pem, "digest method")


def test_ecdsa_sha1_rejected(pki: DevPki) -> None:
    rejected(sign_with(pki, signature_method=xmlsec.Transform.ECDSA_SHA1), pki.eum_cert_pem, "signature method")


def test_rsa_sha1_rejected(pki: DevPki, signed: bytes) -> None:
    eis = parse(signed)
    eis.find(".//ds:SignatureMethod", NS).set("Algorithm", xmlsec.Transform.RSA_SHA1.href)
    rejected(eis, pki.eum_cert_pem, "signature method")


def test_inclusive_c14n_rejected(pki: DevPki, signed: bytes) -> None:
    eis = parse(signed)
    eis.find(".//ds:CanonicalizationMethod", NS).set("Algorithm", xmlsec.Transform.C14N.href)
    rejected(eis, pki.eum_cert_pem, "canonicalization method")


def test_reference_uri_must_be_empty(pki: DevPki) -> None:
    rejected(sign_with(pki, uri="#xpointer(/)"), pki.eum_cert_pem, "URI")


def test_two_references_rejected(pki: DevPki) -> None:
    rejected(sign_with(pki, references=2), pki.eum_cert_pem, "exactly one ds:Reference")


def test_enveloped_whole_document_rejected(pki: DevPki) -> None:
    # A signature over the whole Eis (enveloped) is a different statement than ours: refuse it.
    rejected(sign_with(pki, transforms=("enveloped", "exc")), pki.eum_cert_pem, "transforms")


def test_other_xpath_rejected(pki: DevPki) -> None:
    rejected(sign_with(pki, xpath="false()"), pki.eum_cert_pem, "XPath")


def test_missing_c14n_transform_rejected(pki: DevPki) -> None:
    rejected(sign_with(pki, transforms=("xpath",)), pki.eum_cert_pem, "transforms")


# --- structure (signature wrapping) ------------------------------------------------------------------------------


def test_signature_moved_to_the_end(pki: DevPki, signed: bytes) -> None:
    eis = parse(signed)
    signature = eis.find("rps:EumSignature", NS)
    eis.append(signature)
    rejected(eis, pki.eum_cert_pem, "right after EumSignedInfo")


def test_duplicated_eum_signed_info(pki: DevPki, signed: bytes) -> None:
    # Wrapping attack: a forged EumSignedInfo in front, the signed one hidden after the signature.
    eis = parse(signed)
    original = eis.find("rps:EumSignedInfo", NS)
    forged = copy.deepcopy(original)
    forged.find("rps:PlatformVersion", NS).text = "6.6.6"
    eis.find("rps:EumSignature", NS).addnext(original)
    eis.insert(0, forged)
    rejected(eis, pki.eum_cert_pem, "exactly one EumSignedInfo, found 2")


def test_signed_info_hidden_in_an_extension(pki: DevPki, signed: bytes) -> None:
    eis = parse(signed)
    original = eis.find("rps:EumSignedInfo", NS)
    wrapper = etree.Element(f"{{{RPS_NS}}}AdditionalProperties")
    original.addprevious(wrapper)
    wrapper.append(original)
    rejected(eis, pki.eum_cert_pem, "not a child of the Eis")


def test_duplicated_signature(pki: DevPki, signed: bytes) -> None:
    eis = parse(signed)
    signature = eis.find("rps:EumSignature", NS)
    signature.addnext(copy.deepcopy(signature))
    rejected(eis, pki.eum_cert_pem, "exactly one EumSignature, found 2")


def test_extra_ds_signature_rejected(pki: DevPki, signed: bytes) -> None:
    eis = parse(signed)
    extra = copy.deepcopy(eis.find("rps:EumSignature", NS))
    extra.tag = f"{{{DSIG_NS}}}Signature"
    eis.append(extra)
    rejected(eis, pki.eum_cert_pem, "ds:Signature")


def test_sign_refuses_two_signed_infos(pki: DevPki) -> None:
    eis = parse(eis_xml(pki))
    eis.append(copy.deepcopy(eis.find("rps:EumSignedInfo", NS)))
    with pytest.raises(SignatureError):
        sign_eis(eis, pki.eum_key, pki.eum_cert_pem)


# --- inside SOAP envelopes, with other prefixes ------------------------------------------------------------------


def envelope(eis: str, eis_prefix_decl: str = "") -> bytes:
    return f"""<env:Envelope xmlns:env="{SOAP12_NS}" xmlns:wsa="http://www.w3.org/2005/08/addressing" {eis_prefix_decl}>
<env:Header><wsa:Action>http://gsma.com/ES1/eUICCManagement/ES1-RegisterEISRequest</wsa:Action></env:Header>
<env:Body><x:ES1-RegisterEIS xmlns:x="{RPS_NS}"><x:FunctionCallIdentifier>1</x:FunctionCallIdentifier>
{eis}
</x:ES1-RegisterEIS></env:Body></env:Envelope>""".encode()


def find_eis(root: etree._Element) -> etree._Element:
    [eis] = root.iter(f"{{{RPS_NS}}}Eis")
    return eis


@pytest.mark.parametrize("new_prefix", ["ns0", "x", ""])
def test_verify_after_reprefixing_in_an_envelope(pki: DevPki, signed: bytes, new_prefix: str) -> None:
    """Signed with rps:, carried with another prefix (or as the default namespace) inside a SOAP envelope."""
    text = signed.decode()
    if new_prefix:
        text = text.replace("rps:", f"{new_prefix}:").replace("xmlns:rps=", f"xmlns:{new_prefix}=")
    else:
        text = text.replace("rps:", "").replace("xmlns:rps=", "xmlns=")
    assert "rps:" not in text
    root = parse(envelope(text))
    verify_eis_signature(find_eis(root), pki.eum_cert_pem)
    # And the tampering check still bites there.
    find_eis(root).find(f".//{{{RPS_NS}}}PlatformVersion").text = "9.9.9"
    rejected(find_eis(root), pki.eum_cert_pem)


def test_sign_in_place_inside_an_envelope(pki: DevPki) -> None:
    """Signing an Eis that already sits in an envelope (the /3 namespace declared on the envelope as ns3)."""
    body = eis_xml(pki, prefix="ns3").replace(f' xmlns:ns3="{RPS_NS}"', "")
    root = parse(envelope(body, f'xmlns:ns3="{RPS_NS}"'))
    sign_eis(find_eis(root), pki.eum_key, pki.eum_cert_pem)
    reparsed = parse(etree.tostring(root))
    verify_eis_signature(find_eis(reparsed), pki.eum_cert_pem)


def test_moving_the_eis_between_trees_with_lxml(pki: DevPki, signed: bytes) -> None:
    """lxml re-uses the new parent's prefix for the namespace when a subtree is moved; that must not matter."""
    target = parse(envelope("", f'xmlns:ns3="{RPS_NS}"'))
    request = target.find(f".//{{{RPS_NS}}}ES1-RegisterEIS")
    request.append(parse(signed))
    reparsed = parse(etree.tostring(target))
    verify_eis_signature(find_eis(reparsed), pki.eum_cert_pem)


def test_comments_do_not_matter(pki: DevPki, signed: bytes) -> None:
    text = signed.decode().replace("<rps:PlatformType>", "<!-- hello --><rps:PlatformType>")
    verify_eis_signature(parse(text), pki.eum_cert_pem)
