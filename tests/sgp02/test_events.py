"""Domain events and EIS values to JSON and back, exactly (sgp02.plain, sgp02.eis, sgp02.events)."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from sgp02 import eis as v
from sgp02.codes import ICCID_NOT_ALLOWED, FunctionFailed, Status
from sgp02.events import (
    OperationFinished, Outcome, ProfileChange, ProfileStateChanged, event_type, from_json, to_json,
)

EID = "89049032000000000000000000000163"
MNO = "1.3.6.1.4.1.99999.2.1"
SMDP = "1.3.6.1.4.1.99999.3.1"
SMSR = "1.3.6.1.4.1.99999.1.1"


def full_eis() -> v.Eis:
    """A demo EIS with every kind of field set: keys and a certificate in keysets, POL2, an audit trail, dates
    (aware with microseconds, and one with another offset), signed XML bytes with non-ASCII, properties."""
    isd_r = v.SecurityDomain(
        "A0000005591010FFFFFFFF8900000100", "ISD-R", sin="89049032", sdin="01", tars=("000001", "000002"),
        keysets=(v.Keyset(1, "SCP80", 7, tuple(v.Key(i, "A1B2C3", (("88", f"{i:02X}" * 16),)) for i in (1, 2, 3))),
                 v.Keyset(2, "SCP81", None, (v.Key(1, "000000", (("88", "00" * 16), ("80", "11" * 8))),
                                             v.KeysetCertificate(2, "CA-1", "7F21" + "AB" * 20)))),
    )
    ecasd = v.SecurityDomain("A0000005591010FFFFFFFF8900000200", "ECASD", sin="89049032", sdin="02",
                             tars=("000003",), keysets=(v.Keyset(115, "CA", None,
                                                                 (v.KeysetCertificate(1, "EUM-1", "7F21CD"),)),))
    signed = v.EumSignedInfo(
        eid=EID, eum_id="1.3.6.1.4.1.99999.4.1", production_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
        platform_type="esx-sim", platform_version="1.0.0", isd_p_loadfile_aid="A0000005591010FFFFFFFF8900000D00",
        isd_p_module_aid="A0000005591010FFFFFFFF8900000E00", ecasd=ecasd,
        capabilities=v.EuiccCapabilities(cattp_support=False, http_support=True, secure_packet_version="12.0.0",
                                         remote_provisioning_version="3.2.0", http_version="1.1.0"),
    )
    profiles = (
        v.ProfileInfo("8988299000000001014", "A0000005591010FFFFFFFF8900001000", MNO, True,
                      v.SubscriptionAddress("001010000000100", "447900000100"), v.ProfileState.ENABLED, 65_536,
                      profile_type="esx-demo"),
        v.ProfileInfo("8988299000000001022", "A0000005591010FFFFFFFF8900001100", MNO, False,
                      v.SubscriptionAddress(msisdn="447900000101"), v.ProfileState.DISABLED, 65_536,
                      pol2=(v.Pol2Rule("PROFILE", "DISABLE", "Auto-Delete"), v.Pol2Rule("PROFILE", "DELETE", "Not-Allowed")),
                      smdp_id=SMDP, free_memory=1024),
    )
    trail = (
        v.AuditRecord(EID, SMSR, datetime(2026, 12, 3, 10, 0, 0, 123456, tzinfo=timezone.utc), "0200",
                      requester_id=MNO, status="EXECUTED_SUCCESS", isd_p_aid="A0000005591010FFFFFFFF8900001000",
                      iccid="8988299000000001014"),
        v.AuditRecord(EID, SMSR, datetime(2026, 12, 3, 12, 0, tzinfo=timezone(timedelta(hours=2))), "0300",
                      requester_id=SMDP, status="FAILED", subject="8.2.2", reason="3.8", imei="35000000000000"),
    )
    return v.Eis(signed_info=signed, signed_info_xml='<rps:EumSignedInfo>é</rps:EumSignedInfo>'.encode(),
                 eum_signature_xml=b"<ds:Signature>\x00\xff</ds:Signature>", remaining_memory=512_000,
                 available_memory_for_profiles=400_000, smsr_id=SMSR, isd_r=isd_r, profiles=profiles,
                 last_audit_date=datetime(2026, 12, 3, 9, 30, tzinfo=timezone.utc), audit_trail=trail,
                 additional_properties=(("colour", "blue"), ("size", "")))


def test_a_full_eis_round_trips_through_json_exactly():
    eis = full_eis()
    data = json.loads(json.dumps(v.eis_to_dict(eis)))
    back = v.eis_from_dict(data)
    assert back == eis
    # what equality alone would not show: the types and the offsets survive
    assert isinstance(back.isd_r.keysets[1].items[1], v.KeysetCertificate)
    assert back.isd_r.keysets[0].items[0].components == (("88", "01" * 16),)
    assert back.audit_trail[1].operation_date.utcoffset() == timedelta(hours=2)
    assert back.profiles[0].state is v.ProfileState.ENABLED and back.signed_info_xml == eis.signed_info_xml


def test_the_eis_dict_is_readable_json():
    data = v.eis_to_dict(full_eis())
    assert data["isd_r"]["keysets"][1]["items"][1] == {"type": "KeysetCertificate", "index": 2, "ca_id": "CA-1",
                                                        "value": "7F21" + "AB" * 20}
    assert data["profiles"][1]["pol2"][0] == {"subject": "PROFILE", "action": "DISABLE", "qualification": "Auto-Delete"}
    assert data["last_audit_date"] == "2026-12-03T09:30:00+00:00" and data["profiles"][0]["state"] == "Enabled"


def events():
    accepted = datetime(2026, 12, 3, 10, 0, tzinfo=timezone.utc)
    return [
        OperationFinished("ES4", "AuditEIS", MNO, "//mno/urn:uuid:1", "http://mno/cb", accepted,
                          accepted + timedelta(seconds=5, microseconds=7), Outcome(Status.EXECUTED_SUCCESS), eis=full_eis()),
        OperationFinished("ES3", "CreateISDP", SMDP, "urn:uuid:2", None, accepted, accepted,
                          Outcome(Status.EXECUTED_SUCCESS), euicc_response="9000", isd_p_aid="A0000005591010FFFFFFFF8900001200"),
        OperationFinished("ES4", "EnableProfile", MNO, None, None, datetime(2026, 12, 3, 10, 0), datetime(2026, 12, 3, 10, 1),
                          Outcome.of(Status.FAILED, FunctionFailed(ICCID_NOT_ALLOWED, subject_identifier="8988"))),
        OperationFinished("ES2", "DownloadProfile", MNO, "m", "http://mno", accepted, accepted,
                          Outcome(Status.EXPIRED, "1.6", "5.3", "Validity period expired"), iccid="8988299000000009999"),
        ProfileStateChanged(ProfileChange.DELETED, EID, "8988299000000001022", MNO, SMDP, accepted),
        ProfileStateChanged(ProfileChange.ENABLED, EID, "8988299000000001014", MNO, None, datetime(2026, 12, 3, 10, 0)),
    ]


@pytest.mark.parametrize("event", events(), ids=lambda e: f"{type(e).__name__}")
def test_every_event_round_trips_through_json_exactly(event):
    payload = to_json(event)
    assert json.loads(payload)  # plain JSON text
    back = from_json(event_type(event), payload)
    assert back == event and type(back) is type(event)
    assert to_json(back) == payload  # stable: the same event is stored as the same text


def test_an_outcome_gives_back_its_failure():
    failure = FunctionFailed(ICCID_NOT_ALLOWED, "not yours", subject_identifier="8988")
    outcome = from_json("OperationFinished", to_json(events()[2])).outcome
    again = Outcome.of(Status.FAILED, failure).failure()
    assert (again.code.subject, again.code.reason, again.message, again.subject_identifier, again.status) == (
        "8.2.1", "1.2", "not yours", "8988", Status.FAILED)
    assert outcome.failure().message == ICCID_NOT_ALLOWED.meaning
    assert Outcome(Status.EXECUTED_SUCCESS).failure() is None and Outcome(Status.EXECUTED_WITHWARNING).succeeded


def test_unknown_types_and_fields_are_refused():
    with pytest.raises(ValueError, match="unknown event type"):
        from_json("ProfileWasEaten", "{}")
    payload = json.loads(to_json(events()[4]))
    payload["colour"] = "blue"
    with pytest.raises(ValueError, match="no field colour"):
        from_json("ProfileStateChanged", json.dumps(payload))
    with pytest.raises(TypeError):
        event_type(replace)  # not an event
