"""ES2-DownloadProfile in process: the SM-DP core, the real SM-SR core and real simulated cards (SQLite).

Every byte the card sees went through ES3 (as the SM-SR received it), SCP80 and the card's ES8 front;
the clock is explicit, so expiry and restarts are tested without waiting. The same functions over real
processes and HTTP are in tests/e2e/test_download.py.
"""
from __future__ import annotations

import shutil
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from esx.demo import MNO_OID, SMSR_OID, demo_eid, demo_iccid, init_instance
from esx.outbox import soap_body
from euicc_sim.card import Card
from euicc_sim.network import CARD_FILE
from keys.pki import DevPki
from ota import es8
from smdp_core.download import DOWNLOAD, Es2Request, Settings
from smdp_core.models import StockProfile
from sgp02.codes import PeerUnreachable
from smsr_core.models import SecurityDomainRow
from smsr_core.platform import Timing

from .download_harness import T0, SmdpHarness, at
from tests.smsr_core.ota_harness import OtaHarness

TIMING = Timing(por_timeout=30.0, default_validity=600.0, lease=5.0)
EID1 = demo_eid(1)
FALLBACK1 = demo_iccid(1, 0)
PROFILE_TYPE = "esx-demo-download"


@pytest.fixture(scope="session")
def demo_instance(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("download-instance")
    init_instance(data_dir, demo=2)
    return data_dir


@pytest.fixture
def dp(demo_instance, tmp_path):
    data_dir = tmp_path / "instance"
    shutil.copytree(demo_instance, data_dir)
    h = OtaHarness(data_dir, TIMING)
    yield SmdpHarness(h, Settings(segment_size=512, segments_per_send=3, callback_grace=30.0))
    h.close()


_ids = iter(range(1, 10_000))


def download(dp: SmdpHarness, eid: str = EID1, *, profile_type: str | None = PROFILE_TYPE, iccid: str | None = None,
             enable: bool = True, validity: int | None = None, smsr_id: str = SMSR_OID, now=T0) -> int:
    n = next(_ids)
    op_id, new = dp.downloads.accept(Es2Request(
        function=DOWNLOAD, requester_id=MNO_OID, eid=eid, smsr_id=smsr_id, message_id=f"urn:uuid:es2-{n}",
        function_call_id=f"es2-call-{n}", reply_to=None, validity_period=validity, received_at=now,
        iccid=iccid, profile_type=profile_type, enable=enable))
    assert new
    return op_id


def result(op) -> tuple[str, str | None, str | None]:
    return op.result_status, op.result_subject, op.result_reason


def stock_state(dp: SmdpHarness, iccid: str) -> str:
    with dp.h.db.session() as s:
        return s.get(StockProfile, iccid).state


def available(dp: SmdpHarness) -> int:
    with dp.h.db.session() as s:
        return len(s.scalars(select(StockProfile.iccid).where(StockProfile.state == "available")).all())


def es2_callback(dp: SmdpHarness, message_id: str):
    rows = [m for m in dp.es2_messages() if m.kind == "callback" and m.relates_to == message_id]
    assert len(rows) == 1
    return rows[0]


def card(dp: SmdpHarness, eid: str = EID1) -> Card:
    return Card.load(dp.h.data_dir / "euicc" / eid / CARD_FILE)


def assert_cleaned_up(dp: SmdpHarness, op, stock_before: int) -> None:
    """The ISD-P is gone from the card and the EIS, and the profile is back in stock."""
    assert op.iccid is None or all(p.iccid != op.iccid for p in card(dp).profiles)
    assert len(card(dp).profiles) == 2
    assert set(dp.h.profiles(EID1)) == {demo_iccid(1, 0), demo_iccid(1, 1)}
    assert available(dp) == stock_before
    if op.iccid:
        assert stock_state(dp, op.iccid) == "available"


# -- nominal -------------------------------------------------------------------------------------------------------


def test_download_and_enable_installs_the_ordered_profile_on_the_card(dp):
    before = available(dp)
    op_id = download(dp)
    op = dp.run(op_id, EID1)
    assert result(op) == ("EXECUTED_SUCCESS", None, None)
    iccid = op.iccid
    with dp.h.db.session() as s:
        stock = s.get(StockProfile, iccid)
        imsi, msisdn = stock.imsi, stock.msisdn
    assert stock_state(dp, iccid) == "installed" and available(dp) == before - 1

    # the card: a new ISD-P, ENABLED, carrying the ordered ICCID, IMSI and MSISDN; the fall-back profile DISABLED
    new = next(p for p in card(dp).profiles if p.iccid == iccid)
    assert (new.state_name, new.imsi, new.msisdn) == ("ENABLED", imsi, msisdn)
    assert next(p for p in card(dp).profiles if p.iccid == FALLBACK1).state_name == "DISABLED"
    # the EIS agrees with the card
    profiles = dp.h.profiles(EID1)
    assert profiles[iccid] == ("Enabled", False) and profiles[FALLBACK1] == ("Disabled", True)

    # the MNO's callback carries the ICCID; the SM-SR's ES3 notifications were relayed as ES2 ones
    callback = es2_callback(dp, op.message_id)
    assert callback.operation == "ES2-DownloadProfileCallback" and f"<rps:Iccid>{iccid}</rps:Iccid>".encode() in soap_body(callback)
    relayed = [(m.operation, m.target_oid) for m in dp.es2_messages() if m.kind == "notification"]
    # only the profile this SM-DP installed is notified through it (the demo fall-back profile has no SM-DP:
    # its Disabled notification goes to the MNO over ES4 only)
    assert relayed == [("ES2-HandleProfileEnabledNotification", MNO_OID)]


def test_the_smsr_never_receives_the_profile_in_clear(dp):
    op = dp.run(download(dp), EID1)
    assert op.result_status == "EXECUTED_SUCCESS"
    package = (dp.h.data_dir / "euicc" / EID1 / f"{next(p.aid for p in card(dp).profiles if p.iccid == op.iccid)}.upp.der").read_bytes()
    with dp.h.db.session() as s:
        ki = dp.box.open(op.iccid, s.get(StockProfile, op.iccid).secrets)["ki"]
    crossed = b"".join(bytes.fromhex(params["Data"]) for name, params in dp.sent if name == "ES3-SendData")
    # everything the SM-SR got in SendData, and what it stored, holds no 16-byte run of the package and not the Ki
    stored = b"".join(bytes.fromhex(o.params["data"]) for o in dp.smsr_ops("SendData"))
    for blob in (crossed, stored):
        assert bytes.fromhex(ki) not in blob
        assert not any(package[i:i + 16] in blob for i in range(0, len(package) - 16, 8))
    # the package went as SCP03t '86' segments
    tags = [t for name, params in dp.sent if name == "ES3-SendData"
            for t in (c[0] for c in es8.split_send_data(bytes.fromhex(params["Data"])))]
    assert tags.count(0x86) == -(-len(package) // 512)


def test_download_without_enable_leaves_the_profile_disabled(dp):
    op = dp.run(download(dp, enable=False), EID1)
    assert result(op) == ("EXECUTED_SUCCESS", None, None)
    assert dp.h.profiles(EID1)[op.iccid] == ("Disabled", False)
    assert next(p for p in card(dp).profiles if p.iccid == op.iccid).state_name == "DISABLED"
    assert not any(name == "ES3-EnableProfile" for name, _ in dp.sent)


def test_an_ordered_iccid_is_downloaded(dp):
    with dp.h.db.session() as s:
        iccid = s.scalars(select(StockProfile.iccid).where(StockProfile.state == "available")
                          .order_by(StockProfile.iccid.desc())).first()
    op = dp.run(download(dp, profile_type=None, iccid=iccid), EID1)
    assert result(op) == ("EXECUTED_SUCCESS", None, None) and op.iccid == iccid


# -- refused before anything reaches the card ------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, code", [
    ({"profile_type": "no-such-type"}, ("8.2.5", "3.9")),
    ({"eid": "89049032000000000000000000999999"}, ("8.1.1", "3.9")),
    ({"smsr_id": "1.3.6.1.4.1.99999.1.99"}, ("8.7", "3.9")),
])
def test_refusals_answer_failed_with_the_precise_code_and_keep_the_stock(dp, kwargs, code):
    before = available(dp)
    op = dp.run(download(dp, **kwargs), EID1)
    assert result(op) == ("FAILED", *code)
    assert available(dp) == before
    assert not any(name == "ES3-CreateISDP" for name, _ in dp.sent)


def test_empty_stock_is_unavailable(dp):
    with dp.h.db.session() as s:
        dp.warehouse.add_profile_type(s, mno_id=MNO_OID, name="empty-type", template=b"\x00")
    op = dp.run(download(dp, profile_type="empty-type"), EID1)
    assert result(op) == ("FAILED", "8.2.5", "3.7")


def _replace_ecasd_certificate(dp: SmdpHarness, cert: bytes) -> None:
    """Put another CERT.ECASD.ECKA into the stored EIS (what time, or a rogue EUM, would have done)."""
    with dp.h.db.session() as s:
        row = s.scalars(select(SecurityDomainRow).where(SecurityDomainRow.eid == EID1,
                                                        SecurityDomainRow.role == "ECASD")).one()
        keysets = [dict(ks, items=[{"certificate": {**i["certificate"], "value": cert.hex().upper()}}
                                   if "certificate" in i else i for i in ks["items"]]) for ks in row.keysets]
        row.keysets = keysets


def test_an_expired_ecasd_certificate_is_refused(dp):
    pki = DevPki.load(dp.h.data_dir / "pki")
    _, expired = pki.issue_ecasd(EID1, expiry=date.today() - timedelta(days=1))
    _replace_ecasd_certificate(dp, expired)
    before = available(dp)
    op = dp.run(download(dp), EID1)
    assert result(op) == ("FAILED", "8.5.2", "6.3")
    assert available(dp) == before and not any(name == "ES3-CreateISDP" for name, _ in dp.sent)


def test_an_ecasd_certificate_of_an_unknown_eum_is_refused(dp):
    pki = DevPki.load(dp.h.data_dir / "pki")
    rogue_key, rogue_pem = pki.issue_eum("1.3.6.1.4.1.99999.3.66")
    _, cert = pki.issue_ecasd(EID1, eum_key=rogue_key, eum_cert_pem=rogue_pem)
    _replace_ecasd_certificate(dp, cert)
    op = dp.run(download(dp), EID1)
    assert result(op) == ("FAILED", "8.5.2", "6.1")


# -- failures after the ISD-P exists: cleaned up ---------------------------------------------------------------------


def test_a_card_out_of_memory_fails_and_the_profile_returns_to_stock(dp):
    c = card(dp)
    c.free_memory = 100
    c.save()
    before = available(dp)
    op = dp.run(download(dp), EID1)
    assert result(op) == ("FAILED", "8.1", "4.8")
    assert_cleaned_up(dp, op, before)


def test_a_tampered_receipt_fails_and_the_isdp_is_deleted(dp, monkeypatch):
    original = dp.downloads.on_callback

    def tamper(relates_to, operation, status, failure, *, euicc_response=None, **kw):
        # the SendData answering STORE DATA 3A02 ends with '86' 10 <receipt> 9000: flip the receipt's last bit
        from smdp_core.op_models import SmdpOperation

        with dp.h.db.session() as s:
            step = s.scalars(select(SmdpOperation.step).where(SmdpOperation.awaiting_message_id == relates_to)).first()
        if step == "keyset_2" and euicc_response:
            assert euicc_response[-40:-36] == "8610" and euicc_response.endswith("9000")
            raw = bytearray(bytes.fromhex(euicc_response))
            raw[-3] ^= 0x01
            euicc_response = raw.hex().upper()
        return original(relates_to, operation, status, failure, euicc_response=euicc_response, **kw)

    monkeypatch.setattr(dp.downloads, "on_callback", tamper)
    before = available(dp)
    op = dp.run(download(dp), EID1)
    assert result(op) == ("FAILED", "8.3", "6.1")
    assert any(name == "ES3-DeleteISDP" for name, _ in dp.sent)
    assert_cleaned_up(dp, op, before)


def test_a_silent_card_expires_and_is_cleaned_up_when_it_answers_again(dp):
    c = card(dp)
    c.silent = True
    c.save()
    before = available(dp)
    op_id = download(dp, validity=60)
    for second in (0, 1, 31):
        dp.round(EID1, at(second))
    assert dp.op(op_id).state == "active"
    dp.round(EID1, at(61))  # the SM-SR's CreateISDP expires: EXPIRED callback, the SM-DP cleans up
    assert dp.op(op_id).step == "cleanup"
    c = card(dp)
    c.silent = False
    c.save()
    for second in range(200, 400, 31):  # the automatic audit queued at expiry, then the DeleteISDP
        dp.round(EID1, at(second))
    op = dp.op(op_id)
    assert result(op) == ("EXPIRED", "1.6", "5.3")
    assert_cleaned_up(dp, op, before)


# -- robustness --------------------------------------------------------------------------------------------------------


def test_an_smdp_restart_mid_download_resumes(dp):
    op_id = download(dp)
    for _ in range(3):
        dp.round(EID1)
    assert dp.op(op_id).state == "active"
    # a new SM-DP process: nothing but the database carries over
    fresh = SmdpHarness(dp.h, Settings(segment_size=512, segments_per_send=3, callback_grace=30.0))
    op = fresh.run(op_id, EID1)
    assert result(op) == ("EXECUTED_SUCCESS", None, None)


def test_a_resent_request_keeps_its_message_id_and_is_executed_once(dp):
    op_id = download(dp)
    dp.round(EID1)  # reserve
    dp.downloads.tick(T0)  # CreateISDP sent
    with dp.h.db.session() as s:
        from smdp_core.op_models import SmdpOperation

        row = s.get(SmdpOperation, op_id)
        message_id = row.awaiting_message_id
        row.phase = "send"  # as if the worker died between sending and recording it
    dp.downloads.tick(T0)
    creates = [o for o in dp.smsr_ops("CreateISDP")]
    assert len(creates) == 1 and creates[0].message_id == message_id
    op = dp.run(op_id, EID1)
    assert op.result_status == "EXECUTED_SUCCESS"


def test_an_unreachable_smsr_is_retried(dp):
    dp.reachable = False
    op_id = download(dp)
    dp.round(EID1)
    dp.round(EID1)
    assert dp.op(op_id).state == "active" and dp.op(op_id).attempts >= 1
    dp.reachable = True
    op = dp.run(op_id, EID1, at(10))
    assert op.result_status == "EXECUTED_SUCCESS"


def test_a_callback_from_another_smsr_is_not_taken(dp):
    op_id = download(dp)
    dp.downloads.tick(T0)  # reserve
    dp.downloads.tick(T0)  # CreateISDP sent
    awaiting = dp.op(op_id).awaiting_message_id
    from sgp02.codes import Status

    assert not dp.downloads.on_callback(awaiting, "ES3-CreateISDP", Status.EXECUTED_SUCCESS, None,
                                        isd_p_aid="A0000005591010FFFFFFFF8900001200", sender="1.3.6.1.4.1.99999.1.66")
    assert dp.op(op_id).callback is None
    op = dp.run(op_id, EID1)
    assert op.result_status == "EXECUTED_SUCCESS"


def test_a_cleanup_that_cannot_reach_the_smsr_ends_and_keeps_the_profile_out_of_stock(dp, monkeypatch):
    reachable = dp.request

    def away_for_the_cleanup(operation, **kw):
        if operation == "ES3-DeleteISDP":
            raise PeerUnreachable("the SM-SR is not reachable (test)")
        return reachable(operation, **kw)

    monkeypatch.setattr(dp, "request", away_for_the_cleanup)
    c = card(dp)
    c.free_memory = 100  # CreateISDP fails: the download goes to its clean-up
    c.save()
    op_id = download(dp, validity=60)
    dp.round(EID1)
    dp.round(EID1)
    dp.round(EID1, at(10))
    assert (dp.op(op_id).state, dp.op(op_id).step) == ("active", "cleanup") and dp.op(op_id).attempts >= 1
    op = dp.run(op_id, EID1, at(dp.downloads.settings.default_validity + 1))
    # the MNO still hears what failed first; the ICCID stays out of stock (the ISD-P may exist)
    assert result(op) == ("FAILED", "8.1", "4.8")
    assert stock_state(dp, op.iccid) == "reserved"


def test_a_createisdp_callback_without_a_usable_aid_fails_and_cleans_up(dp, monkeypatch):
    original = dp.downloads.on_callback

    def no_aid(relates_to, operation, status, failure, **kw):
        if operation == "ES3-CreateISDP":
            kw["isd_p_aid"] = "0000000000"
        return original(relates_to, operation, status, failure, **kw)

    monkeypatch.setattr(dp.downloads, "on_callback", no_aid)
    before = available(dp)
    op = dp.run(download(dp), EID1)
    assert result(op) == ("FAILED", "1.2", "4.2")
    assert_cleaned_up(dp, op, before)  # the ISD-P the SM-SR did create is deleted by ICCID


def test_a_step_that_keeps_failing_is_answered_when_the_operation_is_out_of_time(dp, monkeypatch):
    def broken(s, op, now):
        raise RuntimeError("a defect")

    monkeypatch.setattr(dp.downloads, "_send_keyset_1", broken)
    before = available(dp)
    op_id = download(dp, validity=60)
    for second in (0, 1, 40):
        dp.round(EID1, at(second))
    assert dp.op(op_id).state == "active" and dp.op(op_id).step == "keyset_1"  # retried meanwhile
    op = dp.run(op_id, EID1, at(61 + dp.downloads.settings.lease))  # out of time, and the last lease over
    assert result(op) == ("FAILED", "1.2", "4.2")
    assert_cleaned_up(dp, op, before)
