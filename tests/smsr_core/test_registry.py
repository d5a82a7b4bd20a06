"""Unit tests of the SM-SR registry rules and the EIS XML codec (no HTTP)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from lxml import etree

from esx.demo import build_eis, demo_eid, demo_iccid, isd_r_domain, luhn_digit
from esx.eis_xml import parse_eis, render_eis_for_signing
from sgp02 import codes
from sgp02 import eis as v
from sgp02.codes import FunctionFailed
from sgp02.identifiers import isd_p_aid
from smsr_core.registry import validate_pol2


def R(action, qualification):
    return v.Pol2Rule("PROFILE", action, qualification)


def test_pol2_rules():
    validate_pol2(())
    validate_pol2((R("ENABLE", "Not-Allowed"), R("DISABLE", "Auto-Delete"), R("DELETE", "Not-Allowed")))
    for bad in [(R("ENABLE", "Auto-Delete"),), (R("DELETE", "Auto-Delete"),),
                (R("DISABLE", "Not-Allowed"), R("DISABLE", "Auto-Delete")), (v.Pol2Rule("ISD-P", "ENABLE", "Not-Allowed"),)]:
        with pytest.raises(FunctionFailed) as err:
            validate_pol2(bad)
        assert err.value.code == codes.POL2_INVALID


def test_demo_identifiers():
    eid = demo_eid(7)
    assert len(eid) == 32 and int(eid) % 97 == 1  # ISO 7064 mod 97-10
    iccid = demo_iccid(7)
    assert len(iccid) == 19 and luhn_digit(iccid[:-1]) == iccid[-1]
    assert luhn_digit("7992739871") == "3"  # the textbook Luhn example
    assert isd_p_aid(1) == "A0000005591010FFFFFFFF8900001100"


def test_eis_xml_round_trip():
    profile = v.ProfileInfo(iccid=demo_iccid(1), isd_p_aid=isd_p_aid(0), mno_id="1.2.3", fallback_attribute=True,
                            subscription_address=v.SubscriptionAddress("001010000000001", "447700900001"),
                            state=v.ProfileState.ENABLED, allocated_memory=1000,
                            pol2=(R("DELETE", "Not-Allowed"),), smdp_id="1.2.4", profile_type="t", free_memory=10)
    eis = build_eis(eid=demo_eid(1), eum_id="1.2.5", smsr_id="1.2.6", ecasd_cert=b"\x7f\x21\x00",
                    profiles=(profile,), isd_r=isd_r_domain({"enc": b"\x11" * 16, "mac": b"\x22" * 16, "dek": b"\x33" * 16}),
                    production_date=datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc))
    el = render_eis_for_signing(eis)
    # An unsigned EIS is not schema-complete (EumSignature is mandatory); add an empty stand-in to parse.
    etree.SubElement(el, "{http://namespaces.gsma.org/esim-messaging/3}EumSignature")
    el.insert(1, el[-1])
    back = parse_eis(el)
    assert back.signed_info == eis.signed_info
    assert back.profiles == eis.profiles
    assert back.isd_r == eis.isd_r
    assert back.isd_r.without_secrets().keysets[0].items == ()
    assert (back.remaining_memory, back.available_memory_for_profiles, back.smsr_id) == (512_000, 400_000, "1.2.6")
