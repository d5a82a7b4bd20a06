"""esx.adapters.eis_element keeps rendered EIS text per process, keyed by the EIS value read for the request:
the same value renders from the cache, and any change of the EIS is another key (nothing to invalidate)."""
from __future__ import annotations

from dataclasses import replace

import pytest
from lxml import etree

from esx import adapters
from esx.adapters import eis_element
from esx.demo import build_eis, demo_profiles, isd_r_domain
from esx.eis_xml import render_eis
from sgp02.eis import ProfileState

EID = "89001012012341234012345678901224"
SMSR = "1.3.6.1.4.1.99999.1.1"


@pytest.fixture
def eis():
    value = build_eis(eid=EID, eum_id="1.3.6.1.4.1.99999.4.1", smsr_id=SMSR, ecasd_cert=b"\x7f\x21\x00",
                      profiles=demo_profiles(1), isd_r=isd_r_domain({k: bytes(16) for k in ("enc", "mac", "dek")}))
    return replace(value, signed_info_xml=b'<rps:EumSignedInfo xmlns:rps="http://namespaces.gsma.org/esim-messaging/3"/>',
                   eum_signature_xml=b'<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"/>')


def _direct(eis) -> bytes:
    return etree.tostring(render_eis(etree.Element("holder"), eis))


def test_a_cached_eis_is_the_same_bytes_as_one_rendered_directly(eis):
    adapters._rendered_eis.cache_clear()
    assert etree.tostring(eis_element(eis)) == _direct(eis)
    assert etree.tostring(eis_element(eis)) == _direct(eis)
    info = adapters._rendered_eis.cache_info()
    assert (info.hits, info.misses) == (1, 1)


def test_any_change_of_the_eis_is_rendered_afresh(eis):
    adapters._rendered_eis.cache_clear()
    eis_element(eis)
    profile = eis.profiles[0]
    changed = [
        replace(eis, profiles=(replace(profile, state=ProfileState.DISABLED if profile.state is ProfileState.ENABLED
                                       else ProfileState.ENABLED),)),
        replace(eis, remaining_memory=eis.remaining_memory - 1),
        replace(eis, additional_properties=(("k", "v"),)),
        replace(eis, profiles=()),  # what another caller may see of the same eUICC (eis_seen_by)
    ]
    for other in changed:
        assert etree.tostring(eis_element(other)) == _direct(other) != _direct(eis)
    assert adapters._rendered_eis.cache_info().hits == 0


@pytest.fixture(scope="module")
def signed_eis(tmp_path_factory):
    """A real EIS, signed by a development EUM and parsed back (as tests/esx/test_outbox.py builds it)."""
    from esx.demo import signed_eis_element
    from esx.eis_xml import parse_eis
    from keys.pki import DevPki

    pki = DevPki.generate(tmp_path_factory.mktemp("pki") / "pki", smdp_oid="1.3.6.1.4.1.99999.3.1", smsr_oid=SMSR,
                          eum_oid="1.3.6.1.4.1.99999.4.1", mno_oid="1.3.6.1.4.1.99999.2.1")
    value = build_eis(eid=EID, eum_id="1.3.6.1.4.1.99999.4.1", smsr_id=SMSR, ecasd_cert=b"\x7f\x21\x00",
                      profiles=demo_profiles(1), isd_r=isd_r_domain({k: bytes(16) for k in ("enc", "mac", "dek")}))
    return parse_eis(signed_eis_element(value, pki.eum_key, pki.eum_cert_pem))


def test_an_eis_is_checked_against_the_xsd_once_and_the_rest_of_the_response_every_time(eis, signed_eis):
    from esx.adapters import eis_reply
    from esx.binding.soap import _validate_without, response_element, utcnow
    from sgp02.codes import Status

    adapters._rendered_eis.cache_clear()
    reply = eis_reply(eis)
    assert reply.checked == ()  # this test's signed parts are empty stand-ins: EISType refuses them
    reply = eis_reply(signed_eis)
    assert reply.checked == tuple(reply.children)
    body = response_element(f"{{{adapters.GSMA}}}ES4-GetEISResponse", utcnow(), Status.EXECUTED_SUCCESS,
                            children=reply.children)
    before = etree.tostring(body)
    assert _validate_without(body, reply.checked) is None
    assert etree.tostring(body) == before  # put back where it was
    body.find(f"{{{adapters.GSMA}}}ProcessingStart").text = "yesterday"
    assert _validate_without(body, reply.checked) is not None  # the rest is still validated

