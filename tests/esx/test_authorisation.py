"""The authorisation matrix: every ES1-ES4 function, every class of caller, the exact answer.

One instance in process (tests.esx.inprocess): the demo SM-SR and SM-DP, the demo MNO (which names the demo SM-DP
as acting for it) and these parties:

- another MNO, MNO_B, which uses the same SM-DP (it names it too) and has a profile beside the demo MNO's on the
  "mixed" eUICC;
- MNO_C, an MNO that owns nothing;
- SMDP_2, an SM-DP that MNO_B names, and SMDP_3, an SM-DP nobody names;
- EUM_2, a second EUM with its own certificate; SMSR_2, another SM-SR; OWNER, an eUICC owner (role "owner");
- UNKNOWN, an OID nobody registered.

A caller class gets: "owner" the rightful caller; "unknown" an unregistered OID; "wrong role" an entity whose role
may not call the interface; "eUICC owner" the owner entity (v3 interfaces are not its); "other" an entity of the
right role acting on what is not its own (another MNO, SM-DP, EUM or SM-SR); "nothing" an entity of the right role
that owns nothing. Asynchronous refusals are callbacks written at once with the request (read from the outbox);
an unknown caller's asynchronous request is refused with a fault (nobody to call back).
"""
from __future__ import annotations

import pytest
from sqlalchemy import update

from esx.demo import (
    DEMO_PROFILE_TYPE,
    EUM_OID,
    MNO_OID,
    SMDP_OID,
    SMSR_OID,
    demo_eid,
    demo_iccid,
    demo_stock_iccid,
    register_request,
    signed_eis_element,
)
from ota import es8
from smdp_core.op_models import SmdpOperation
from sgp02.identifiers import isd_p_aid

from .inprocess import InProcess, element, pol2, request

MNO_B = "1.3.6.1.4.1.99999.2.20"
MNO_C = "1.3.6.1.4.1.99999.2.30"
SMDP_2 = "1.3.6.1.4.1.99999.1.20"
SMDP_3 = "1.3.6.1.4.1.99999.1.30"
SMSR_2 = "1.3.6.1.4.1.99999.1.40"
EUM_2 = "1.3.6.1.4.1.99999.3.20"
OWNER = "1.3.6.1.4.1.99999.4.1"
UNKNOWN = "1.3.6.1.4.1.99999.9.9"

E1 = demo_eid(1)  # the demo eUICC: P1 enabled (fall-back), P2 disabled, both the demo MNO's, loaded at manufacturing
P1, P2 = demo_iccid(1, 0), demo_iccid(1, 1)
MIXED = 2  # eUICC number 2: A1 the demo MNO's (enabled), B2 MNO_B's (disabled)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    inst = InProcess(tmp_path_factory.mktemp("authz"))
    inst.entity(MNO_B, "mno", smdps=[SMDP_OID, SMDP_2])
    inst.entity(MNO_C, "mno", smdps=[])
    inst.entity(SMDP_2, "smdp")
    inst.entity(SMDP_3, "smdp")
    inst.entity(SMSR_2, "smsr", endpoint="http://smsr2.invalid/es3")
    inst.entity(OWNER, "owner")
    _, eum2_cert = inst.pki.issue_eum(EUM_2)
    inst.entity(EUM_2, "eum", signing_cert=eum2_cert)
    inst.mixed = inst.register(MIXED, (InProcess.profile(MIXED, 0, MNO_OID, enabled=True),
                                       InProcess.profile(MIXED, 1, MNO_B)))
    inst.a1, inst.b2 = demo_iccid(MIXED, 0), demo_iccid(MIXED, 1)
    yield inst
    inst.close()


# -- who calls each interface ---------------------------------------------------------------------------------------

ROLES = {  # interface path -> (owner, wrong role, other, nothing)
    "/smsr/es1": (EUM_OID, MNO_OID, EUM_2, None),
    "/smsr/es4": (MNO_OID, SMDP_OID, MNO_B, MNO_C),
    "/smdp/es2": (MNO_OID, SMDP_OID, MNO_B, MNO_C),
    "/smsr/es3": (SMDP_OID, MNO_OID, SMDP_2, SMDP_3),
    "/smdp/es3": (SMSR_OID, MNO_OID, SMSR_2, None),
    "/smsr/es7": (SMSR_2, MNO_OID, None, None),
}


def caller_of(path: str, who: str) -> str:
    owner, wrong, other, nothing = ROLES[path]
    return {"owner": owner, "unknown": UNKNOWN, "wrong role": wrong, "eUICC owner": OWNER, "other": other,
            "nothing": nothing}[who]


OK = "ok"
UNKNOWN_CALLER, NOT_THIS_ROLE = ("1.1", "1.1"), ("1.1", "1.2")
ICCID_NOT_ALLOWED, EIS_NOT_ALLOWED = ("8.2.1", "1.2"), ("8.6", "1.2")
ICCID_UNKNOWN = ("8.2.1", "3.9")
NOT_PREPARED = ("8.1.1", "3.9")


def es2(name: str, *children, smsr="Smsr-id"):
    return lambda env: request(name, *[(smsr, SMSR_OID) if c == "SMSR" else c for c in children])


def eid_iccid(name: str, iccid: str, eid: str = E1, smsr: str | None = None):
    def build(env):
        kids = [("Eid", eid)]
        if smsr:
            kids.append((smsr, SMSR_OID))
        kids.append(("Iccid", getattr(env, iccid) if iccid in ("a1", "b2") else iccid))
        return request(name, *kids)
    return build


def fresh_euicc(env) -> str:
    """A new eUICC whose enabled profile is the demo MNO's (one change request each: a second would be 8.1/4.4)."""
    n = next(_registered)
    return env.register(n, (InProcess.profile(n, 0, MNO_OID, enabled=True),))


def new_address(n: int):
    return element("newSubscriptionAddress", ("Msisdn", f"44712{n:07d}"))


_addresses = iter(range(1, 10_000))

# (label, path, body builder, {caller class: expected}); "unknown", "wrong role" and "eUICC owner" are the same
# for every function of an interface and added below.
MATRIX = [
    # ES1 ---------------------------------------------------------------------------------------------------------
    ("ES1-RegisterEIS", "/smsr/es1", "register", {"owner": OK, "other": EIS_NOT_ALLOWED}),
    # ES4 ---------------------------------------------------------------------------------------------------------
    ("ES4-GetEIS", "/smsr/es4", lambda env: request("ES4-GetEISRequest", ("Eid", E1)),
     {"owner": OK, "other": EIS_NOT_ALLOWED, "nothing": EIS_NOT_ALLOWED}),
    ("ES4-UpdatePolicyRules", "/smsr/es4",
     lambda env: request("ES4-UpdatePolicyRulesRequest", ("Eid", E1), ("Iccid", P2), ("pol2", pol2())),
     {"owner": OK, "other": ICCID_NOT_ALLOWED, "nothing": ICCID_NOT_ALLOWED}),
    ("ES4-UpdateSubscriptionAddress", "/smsr/es4",
     lambda env: request("ES4-UpdateSubscriptionAddressRequest", ("Eid", E1), ("Iccid", P2),
                         ("x", new_address(next(_addresses)))),
     {"owner": OK, "other": ICCID_NOT_ALLOWED, "nothing": ICCID_NOT_ALLOWED}),
    ("ES4-EnableProfile", "/smsr/es4", eid_iccid("ES4-EnableProfileRequest", P2),
     {"owner": OK, "other": ICCID_NOT_ALLOWED, "nothing": ICCID_NOT_ALLOWED}),
    ("ES4-DisableProfile", "/smsr/es4", eid_iccid("ES4-DisableProfileRequest", P1),
     {"owner": OK, "other": ICCID_NOT_ALLOWED, "nothing": ICCID_NOT_ALLOWED}),
    ("ES4-DeleteProfile", "/smsr/es4", eid_iccid("ES4-DeleteProfileRequest", P2),
     {"owner": OK, "other": ICCID_NOT_ALLOWED, "nothing": ICCID_NOT_ALLOWED}),
    ("ES4-AuditEIS", "/smsr/es4", lambda env: request("ES4-AuditEISRequest", ("Eid", E1)),
     {"owner": OK, "other": EIS_NOT_ALLOWED, "nothing": EIS_NOT_ALLOWED}),
    # SM-SR change at this SM-SR: the current one (SMSRChange: the enabled profile's MNO only) and the new one
    # (PrepareSMSRChange: any MNO; whether it owns the enabled profile is known when the EIS is handed over)
    ("ES4-SMSRChange", "/smsr/es4",
     lambda env: request("ES4-SMSRChangeRequest", ("Eid", fresh_euicc(env)), ("Target-Smsr-id", SMSR_2)),
     {"owner": OK, "other": ("8.1", "1.2"), "nothing": ("8.1", "1.2")}),
    ("ES4-PrepareSMSRChange", "/smsr/es4",
     lambda env: request("ES4-PrepareSMSRChangeRequest", ("Eid", demo_eid(next(_registered))),
                         ("CurrentSMSRid", SMSR_2)),
     {"owner": OK, "other": OK, "nothing": OK}),
    # ES7, SM-SR <-> SM-SR: only an SM-SR may call; with no change of the eUICC under way with it, 8.1.1/3.9
    ("ES7-HandoverEUICC", "/smsr/es7", "handover", {"owner": NOT_PREPARED}),
    ("ES7-AuthenticateSMSR", "/smsr/es7",
     lambda env: request("ES7-AuthenticateSMSRRequest", ("Eid", E1), ("SmsrCertificate", env.pki.smsr_gp_cert.hex())),
     {"owner": NOT_PREPARED}),
    ("ES7-CreateAdditionalKeySet", "/smsr/es7",
     lambda env: request("ES7-CreateAdditionalKeySetRequest", ("Eid", E1), ("KeyVersionNumber", "2"),
                         ("InitialSequenceCounter", "-1"), ("ECCKeyLength", "ECC-256"), ("ScenarioParameter", "10"),
                         ("HostId", ""), ("EphemeralPublicKey", "7F4942" + "00" * 66), ("Signature", "00" * 64)),
     {"owner": NOT_PREPARED}),
    # ES3, SM-DP -> SM-SR ---------------------------------------------------------------------------------------
    ("ES3-GetEIS", "/smsr/es3", lambda env: request("ES3-GetEISRequest", ("Eid", E1)),
     {"owner": OK, "other": OK, "nothing": OK}),  # eUICC data for any SM-DP; its profiles only to theirs (below)
    ("ES3-UpdatePolicyRules", "/smsr/es3",
     lambda env: request("ES3-UpdatePolicyRulesRequest", ("Eid", E1), ("Iccid", P2), ("pol2", pol2())),
     {"owner": OK, "other": ICCID_NOT_ALLOWED, "nothing": ICCID_NOT_ALLOWED}),
    ("ES3-UpdateSubscriptionAddress", "/smsr/es3",
     lambda env: request("ES3-UpdateSubscriptionAddressRequest", ("Eid", E1), ("Iccid", P2),
                         ("x", new_address(next(_addresses)))),
     {"owner": OK, "other": ICCID_NOT_ALLOWED, "nothing": ICCID_NOT_ALLOWED}),
    ("ES3-ProfileDownloadCompleted", "/smsr/es3",
     lambda env: request("ES3-ProfileDownloadCompletedRequest", ("Eid", E1), ("Iccid", P2)),
     {"owner": OK, "other": ICCID_NOT_ALLOWED, "nothing": ICCID_NOT_ALLOWED}),
    ("ES3-EnableProfile", "/smsr/es3", eid_iccid("ES3-EnableProfileRequest", P2),
     {"owner": OK, "other": ICCID_NOT_ALLOWED, "nothing": ICCID_NOT_ALLOWED}),
    ("ES3-DisableProfile", "/smsr/es3", eid_iccid("ES3-DisableProfileRequest", P1),
     {"owner": OK, "other": ICCID_NOT_ALLOWED, "nothing": ICCID_NOT_ALLOWED}),
    ("ES3-DeleteISDP", "/smsr/es3", eid_iccid("ES3-DeleteISDPRequest", P2),
     {"owner": OK, "other": ICCID_NOT_ALLOWED, "nothing": ICCID_NOT_ALLOWED}),
    ("ES3-AuditEIS", "/smsr/es3", lambda env: request("ES3-AuditEISRequest", ("Eid", E1)),
     {"owner": OK, "other": EIS_NOT_ALLOWED, "nothing": EIS_NOT_ALLOWED}),
    ("ES3-CreateISDP", "/smsr/es3",
     lambda env: request("ES3-CreateISDPRequest", ("Eid", E1), ("Iccid", demo_iccid(1, 7)), ("Mno-id", MNO_OID),
                         ("RequiredMemory", "4096")),
     {"owner": OK, "other": ICCID_NOT_ALLOWED, "nothing": ICCID_NOT_ALLOWED}),
    ("ES3-SendData", "/smsr/es3",
     lambda env: request("ES3-SendDataRequest", ("Eid", E1), ("Sd-aid", isd_p_aid(1)),
                         ("Data", es8.send_data_payload([es8.command_tlv(es8.install_for_personalization(
                             bytes.fromhex(isd_p_aid(1))))]).hex().upper())),
     {"owner": OK, "other": ("8.3.1", "1.2"), "nothing": ("8.3.1", "1.2")}),
    ("ES3-UpdateConnectivityParameters", "/smsr/es3",
     lambda env: request("ES3-UpdateConnectivityParametersRequest", ("Eid", E1), ("Iccid", P2),
                         ("ConnectivityParameters", es8.command_tlv(bytes.fromhex("80500000080102030405060708"))
                          .hex().upper())),
     {"owner": OK, "other": ICCID_NOT_ALLOWED, "nothing": ICCID_NOT_ALLOWED}),
    # ES2, MNO -> SM-DP -----------------------------------------------------------------------------------------
    ("ES2-GetEIS", "/smdp/es2", es2("ES2-GetEISRequest", ("Eid", E1), "SMSR"),
     {"owner": OK, "other": OK, "nothing": OK}),  # the EIS before a first download; profiles only one's own (below)
    ("ES2-UpdatePolicyRules", "/smdp/es2",
     lambda env: request("ES2-UpdatePolicyRulesRequest", ("Eid", E1), ("Iccid", P2), ("Smsr-id", SMSR_OID),
                         ("pol2", pol2())),
     {"owner": OK, "other": ICCID_NOT_ALLOWED, "nothing": ICCID_NOT_ALLOWED}),
    ("ES2-UpdateSubscriptionAddress", "/smdp/es2",
     lambda env: request("ES2-UpdateSubscriptionAddressRequest", ("Eid", E1), ("Smsr-id", SMSR_OID), ("Iccid", P2),
                         ("x", new_address(next(_addresses)))),
     {"owner": OK, "other": ICCID_NOT_ALLOWED, "nothing": ICCID_NOT_ALLOWED}),
    ("ES2-DownloadProfile", "/smdp/es2",
     lambda env: request("ES2-DownloadProfileRequest", ("Eid", E1), ("SmSr-id", SMSR_OID),
                         ("ProfileType", DEMO_PROFILE_TYPE), ("EnableProfile", "true")),
     {"owner": OK, "other": ("8.2.5", "1.2"), "nothing": ("8.2.5", "1.2")}),
    ("ES2-DownloadProfile, ICCID", "/smdp/es2",
     lambda env: request("ES2-DownloadProfileRequest", ("Eid", E1), ("SmSr-id", SMSR_OID),
                         ("Iccid", demo_stock_iccid(2)), ("EnableProfile", "false")),
     {"owner": OK, "other": ICCID_NOT_ALLOWED, "nothing": ICCID_NOT_ALLOWED}),
    ("ES2-EnableProfile", "/smdp/es2", eid_iccid("ES2-EnableProfileRequest", "a1", eid=demo_eid(MIXED), smsr="SmSr-id"),
     {"owner": OK, "other": ICCID_NOT_ALLOWED, "nothing": ICCID_NOT_ALLOWED}),
    ("ES2-DisableProfile", "/smdp/es2",
     lambda env: request("ES2-DisableProfileRequest", ("Eid", demo_eid(MIXED)), ("Smsr-id", SMSR_OID), ("Iccid", env.a1)),
     {"owner": OK, "other": ICCID_NOT_ALLOWED, "nothing": ICCID_NOT_ALLOWED}),
    ("ES2-DeleteProfile", "/smdp/es2",
     lambda env: request("ES2-DeleteProfileRequest", ("Eid", demo_eid(MIXED)), ("Iccid", env.a1), ("Smsr-id", SMSR_OID)),
     {"owner": OK, "other": ICCID_NOT_ALLOWED, "nothing": ICCID_NOT_ALLOWED}),
]

SYNC = {"ES1-RegisterEIS", "ES4-GetEIS", "ES4-UpdatePolicyRules", "ES4-UpdateSubscriptionAddress", "ES3-GetEIS",
        "ES3-UpdatePolicyRules", "ES3-UpdateSubscriptionAddress", "ES3-ProfileDownloadCompleted", "ES2-GetEIS",
        "ES2-UpdatePolicyRules", "ES2-UpdateSubscriptionAddress"}


# The preparation of an SM-SR change is complete when it is recorded (smsr_core.handover): its callback goes at once.
ANSWERED_AT_ONCE = {"ES4-PrepareSMSRChange"}


def cases():
    for label, path, build, expected in MATRIX:
        function = label.split(",")[0]
        full = {"unknown": UNKNOWN_CALLER, "wrong role": NOT_THIS_ROLE, "eUICC owner": NOT_THIS_ROLE, **expected}
        for who, want in full.items():
            yield pytest.param(path, build, function, who, want, id=f"{label}-{who}")


_registered = iter(range(100, 1000))


def body_for(env, build):
    if build == "handover":  # a well-formed EIS, signed by the demo EUM, of an eUICC nobody prepared a change of
        from esx.demo import build_eis, isd_r_domain

        n = next(_registered)
        _, cert = env.pki.issue_ecasd(demo_eid(n))
        eis = build_eis(eid=demo_eid(n), eum_id=EUM_OID, smsr_id=SMSR_2, ecasd_cert=cert,
                        profiles=(InProcess.profile(n, 0, MNO_OID, enabled=True),),
                        isd_r=isd_r_domain({"enc": b"\x01" * 16, "mac": b"\x02" * 16, "dek": b"\x03" * 16}))
        return request("ES7-HandoverEUICCRequest", ("x", signed_eis_element(eis, env.pki.eum_key, env.pki.eum_cert_pem)))
    if build == "register":  # a new EIS each time, signed by the demo EUM, naming it as Eum-id
        from esx.demo import build_eis, isd_r_domain

        n = next(_registered)
        _, cert = env.pki.issue_ecasd(demo_eid(n))
        eis = build_eis(eid=demo_eid(n), eum_id=EUM_OID, smsr_id=SMSR_OID, ecasd_cert=cert,
                        profiles=(InProcess.profile(n, 0, MNO_OID, enabled=True),),
                        isd_r=isd_r_domain({"enc": b"\x01" * 16, "mac": b"\x02" * 16, "dek": b"\x03" * 16}))
        return register_request(signed_eis_element(eis, env.pki.eum_key, env.pki.eum_cert_pem))
    return build(env)


@pytest.mark.parametrize("path,build,function,who,want", list(cases()))
def test_authorisation_matrix(env, path, build, function, who, want):
    outcome = env.call(path, body_for(env, build), caller_of(path, who))
    if want == OK:
        assert outcome.ok, outcome
        if function in ANSWERED_AT_ONCE:  # 202, and its callback (success) written with the request
            assert (outcome.kind, outcome.status) == ("callback", "EXECUTED_SUCCESS"), outcome
            return
        assert outcome.kind == ("reply" if function in SYNC else "accepted"), outcome
        return
    assert (outcome.status if outcome.kind != "fault" else "fault", outcome.code) == (
        "fault" if who == "unknown" and function not in SYNC else "FAILED", want), outcome
    if function not in SYNC and who != "unknown":
        # Refused when accepted: the callback is there at once, nothing queued for the eUICC.
        assert outcome.kind == "callback", outcome


def test_matrix_covers_every_function_of_the_wsdls():
    from esx.binding import contract

    served = {name for wsdl in ("ES1SmSr.wsdl", "ES2SmDp.wsdl", "ES3SmSr.wsdl", "ES4SmSr.wsdl", "ES7SmSrProvider.wsdl")
              for name in contract.load_service(wsdl).operations}
    assert served == {label.split(",")[0] for label, *_ in MATRIX}


# -- what each one sees ---------------------------------------------------------------------------------------------


def profiles_in(outcome) -> set[str]:
    return {el.text for el in outcome.body.iter("{http://namespaces.gsma.org/esim-messaging/3}Iccid")}


def requesters_in(outcome) -> set[str]:
    return {el.text for el in outcome.body.iter("{http://namespaces.gsma.org/esim-messaging/3}RequesterId")}


def test_no_mno_sees_another_mnos_profile_or_audit_record(env):
    eid = env.mixed
    # The SM-SR's audit trail of the mixed eUICC holds a record of each MNO (their refused/accepted requests).
    env.call("/smsr/es4", request("ES4-AuditEISRequest", ("Eid", eid)), MNO_OID)
    env.call("/smsr/es4", request("ES4-AuditEISRequest", ("Eid", eid)), MNO_B)
    env.call("/smsr/es4", request("ES4-EnableProfileRequest", ("Eid", eid), ("Iccid", env.b2)), MNO_B)
    from smsr_core.models import EisAuditRecord

    with env.db.session() as s:  # and records about each MNO's profile, as card operations leave them
        for iccid, requester in ((env.a1, MNO_OID), (env.b2, MNO_B)):
            from datetime import datetime, timezone
            s.add(EisAuditRecord(eid=eid, smsr_id=SMSR_OID, operation_date=datetime.now(timezone.utc),
                                 operation_type="0300", requester_id=requester, status="EXECUTED_SUCCESS", iccid=iccid))
    for path, name, extra in (("/smsr/es4", "ES4-GetEISRequest", ()),
                              ("/smdp/es2", "ES2-GetEISRequest", (("Smsr-id", SMSR_OID),))):
        for mno, own, other, other_mno in ((MNO_OID, env.a1, env.b2, MNO_B), (MNO_B, env.b2, env.a1, MNO_OID)):
            outcome = env.call(path, request(name, ("Eid", eid), *extra), mno)
            assert outcome.status == "EXECUTED_SUCCESS", outcome
            text = "".join(outcome.body.itertext())
            assert profiles_in(outcome) == {own}, (path, mno)
            assert other not in text and other_mno not in requesters_in(outcome), (path, mno)
            other_msisdn = f"4477{MIXED:06d}{0 if other == env.a1 else 1:02d}"
            assert other_msisdn not in text, (path, mno)
            assert requesters_in(outcome) <= {mno, SMSR_OID, SMDP_OID}, (path, mno)


def test_es2_get_eis_of_an_mno_with_no_profile_there_has_the_euicc_and_nothing_of_others(env):
    outcome = env.call("/smdp/es2", request("ES2-GetEISRequest", ("Eid", env.mixed), ("Smsr-id", SMSR_OID)), MNO_C)
    assert outcome.status == "EXECUTED_SUCCESS"
    assert profiles_in(outcome) == set() and requesters_in(outcome) == set()
    assert outcome.body.findtext(".//{http://namespaces.gsma.org/esim-messaging/3}Eid") == env.mixed


def test_an_smdp_sees_only_the_profiles_of_the_mnos_that_named_it(env):
    seen = {}
    for smdp in (SMDP_OID, SMDP_2, SMDP_3):
        outcome = env.call("/smsr/es3", request("ES3-GetEISRequest", ("Eid", env.mixed)), smdp)
        assert outcome.status == "EXECUTED_SUCCESS"
        seen[smdp] = profiles_in(outcome)
    assert seen == {SMDP_OID: {env.a1, env.b2}, SMDP_2: {env.b2}, SMDP_3: set()}


def test_an_mno_naming_an_smdp_lets_it_act_on_its_profiles(env):
    body = lambda: request("ES3-UpdatePolicyRulesRequest", ("Eid", env.mixed), ("Iccid", env.b2), ("pol2", pol2()))
    assert env.call("/smsr/es3", body(), SMDP_3).code == ICCID_NOT_ALLOWED
    env.entity(MNO_B, "mno", smdps=[SMDP_OID, SMDP_2, SMDP_3])
    try:
        assert env.call("/smsr/es3", body(), SMDP_3).status == "EXECUTED_SUCCESS"
    finally:
        env.entity(MNO_B, "mno", smdps=[SMDP_OID, SMDP_2])


def test_a_non_owner_is_refused_at_once_even_behind_a_busy_euicc(env):
    """A request queued behind others for the same eUICC does not wait to be refused: the refusal is its callback,
    written with the request; nothing is queued."""
    from sqlalchemy import func, select

    from smsr_core.ops_models import Operation

    with env.db.session() as s:
        queued = s.scalar(select(func.count()).select_from(Operation).where(Operation.eid == E1, Operation.state == "queued"))
    outcome = env.call("/smsr/es4", request("ES4-DeleteProfileRequest", ("Eid", E1), ("Iccid", P2)), MNO_B)
    assert (outcome.kind, outcome.code) == ("callback", ICCID_NOT_ALLOWED)
    with env.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Operation).where(
            Operation.eid == E1, Operation.state == "queued")) == queued


def test_a_function_call_identifier_reused_under_a_new_message_id_is_refused_by_a_callback(env):
    first = env.call("/smsr/es4", request("ES4-AuditEISRequest", ("Eid", E1), fci="reused-1"), MNO_OID,
                     message_id="urn:uuid:first-of-reused-1")
    assert first.kind == "accepted"
    again = env.call("/smsr/es4", request("ES4-AuditEISRequest", ("Eid", E1), fci="reused-1"), MNO_OID,
                     message_id="urn:uuid:second-of-reused-1")
    assert (again.kind, again.status, again.code) == ("callback", "FAILED", ("1.6", "3.3"))
    assert "urn:uuid:first-of-reused-1" in again.message
    # The same on ES2 (the SM-DP keeps its own requests).
    body = lambda: request("ES2-DownloadProfileRequest", ("Eid", E1), ("SmSr-id", SMSR_OID),
                           ("ProfileType", DEMO_PROFILE_TYPE), ("EnableProfile", "false"), fci="reused-2")
    assert env.call("/smdp/es2", body(), MNO_OID, message_id="urn:uuid:first-of-reused-2").kind == "accepted"
    again = env.call("/smdp/es2", body(), MNO_OID, message_id="urn:uuid:second-of-reused-2")
    assert (again.kind, again.code) == ("callback", ("1.6", "3.3"))


# -- the SM-DP's own ES3 endpoint: only the SM-SR a request went to is heard ---------------------------------------


def awaiting_download(env, message_id: str) -> int:
    outcome = env.call("/smdp/es2", request("ES2-DownloadProfileRequest", ("Eid", E1), ("SmSr-id", SMSR_OID),
                                            ("ProfileType", DEMO_PROFILE_TYPE), ("EnableProfile", "false")), MNO_OID)
    assert outcome.kind == "accepted"
    with env.db.session() as s:
        op_id = s.query(SmdpOperation.id).order_by(SmdpOperation.id.desc()).first()[0]
        s.execute(update(SmdpOperation).where(SmdpOperation.id == op_id).values(
            awaiting_message_id=message_id, phase="await", step="create_isdp"))
    return op_id


def create_isdp_callback():
    from datetime import datetime, timezone

    from esx.binding.soap import gsma_element, response_element
    from sgp02.codes import Status

    return response_element("{http://namespaces.gsma.org/esim-messaging/3}ES3-CreateISDPResponse",
                            datetime.now(timezone.utc), Status.EXECUTED_SUCCESS, children=[gsma_element("Isd-p-aid", isd_p_aid(5))])


@pytest.mark.parametrize("who,taken", [("owner", True), ("other", False)])
def test_smdp_es3_callback_counts_only_from_the_smsr_it_asked(env, who, taken):
    op_id = awaiting_download(env, f"urn:uuid:awaited-{who}")
    outcome = env.call("/smdp/es3", create_isdp_callback(), caller_of("/smdp/es3", who),
                               relates_to=f"urn:uuid:awaited-{who}")
    assert outcome.kind == "accepted"
    with env.db.session() as s:
        op = s.get(SmdpOperation, op_id)
        # taken: handled at once by the step that awaited it (the download moved on); else still awaited
        assert (op.awaiting_message_id is None and op.step != "create_isdp") is taken
        assert op.callback is None


@pytest.mark.parametrize("who,want", [("unknown", UNKNOWN_CALLER), ("wrong role", NOT_THIS_ROLE),
                                      ("eUICC owner", NOT_THIS_ROLE)])
def test_smdp_es3_refuses_who_is_no_smsr(env, who, want):
    outcome = env.call("/smdp/es3", create_isdp_callback(), caller_of("/smdp/es3", who),
                               relates_to="urn:uuid:whatever")
    assert (outcome.kind, outcome.code) == ("fault", want)


def test_smdp_relays_no_notification_about_a_profile_it_did_not_download(env):
    from datetime import datetime, timezone

    note = element("ES3-HandleProfileDisabledNotification", ("Eid", E1), ("Iccid", P1), ("Mno-id", MNO_OID),
                   ("CompletionTimestamp", datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")))
    before = len(env.outbox(sender_role="smdp", kind="notification"))
    assert env.call("/smdp/es3", note, SMSR_OID).kind == "accepted"
    assert len(env.outbox(sender_role="smdp", kind="notification")) == before


def test_smdp_es3_takes_every_callback_of_its_contract():
    from esx.binding import contract
    from esx.es3.service import SMDP_INTERFACE

    assert set(contract.load_service("ES3SmDp.wsdl").operations) == set(SMDP_INTERFACE.handlers)


@pytest.mark.parametrize("who,accepted", [("owner", True), ("wrong role", False), ("unknown", False)])
def test_smdp_es3_update_connectivity_callback_is_logged_not_relayed(env, caplog, who, accepted):
    """No download awaits an UpdateConnectivityParameters callback (``esx smdp update-connectivity`` sent the
    request): the SM-DP accepts it from an SM-SR, logs the outcome with the ISD-P's answers, and owes nobody a
    message."""
    import logging
    from datetime import datetime, timezone

    from esx.binding.soap import gsma_element, response_element
    from sgp02 import codes
    from sgp02.codes import FunctionFailed, Status

    callback = response_element(
        "{http://namespaces.gsma.org/esim-messaging/3}ES3-UpdateConnectivityParametersResponse",
        datetime.now(timezone.utc), Status.FAILED, FunctionFailed(codes.ISDP_EXECUTION_ERROR, "the ISD-P refused"),
        children=[gsma_element("EuiccResponseData", "AB07800101230269 82".replace(" ", ""))])
    before = len(env.outbox(sender_role="smdp"))
    with caplog.at_level(logging.INFO, logger="esx.es3.service"):
        outcome = env.call("/smdp/es3", callback, caller_of("/smdp/es3", who), relates_to="urn:uuid:ucp-sent")
    if not accepted:
        assert outcome.kind == "fault"
        return
    assert outcome.kind == "accepted"
    [line] = [r.getMessage() for r in caplog.records if "ES3-UpdateConnectivityParameters" in r.getMessage()]
    assert "urn:uuid:ucp-sent" in line and "FAILED 8.3/4.2" in line and "AB0780010123026982" in line
    assert len(env.outbox(sender_role="smdp")) == before
