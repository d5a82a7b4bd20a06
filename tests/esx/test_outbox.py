"""The outbox: events rendered for their channel only when delivered, with the bytes SGP.02 v3 receivers got before
events; the retry path against a receiver that fails first (same MessageID every time, growing capped back-off, one
short log line per failed attempt); a render failure is one line and a retry, never a crash; `esx outbox show`/`retry`.

Expected bytes here are written out by hand from the WSDL (actions) and the XSD (element order), not taken from the
code under test."""
from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from lxml import etree
from sqlalchemy import select

from esx.binding import contract
from esx.binding.http import HttpClient
from esx.binding.ns import WSA
from esx.outbox import (
    CHANNELS, ES7_PROVIDER, MAX_BACKOFF, SOAP_V3, DeliveryName, OutboxSink, RenderError, SmdpOutboxSink, SoapV3, Wire, backoff,
    deliver_due, enqueue, pending, retry_now, soap_body,
)
from persistence.db import Database, migrate, sqlite_url
from persistence.entities import upsert_entity
from persistence.outbox import OutboxMessage
from sgp02.codes import EUICC_INSUFFICIENT_MEMORY, ICCID_NOT_ALLOWED, FunctionFailed, Status
from sgp02.events import OperationFinished, Outcome, PeerRequested, ProfileChange, ProfileStateChanged, SmsrChanged
from tests import unavailable

MNO = "1.3.6.1.4.1.99999.2.1"
SMSR = "1.3.6.1.4.1.99999.1.1"
SMDP = "1.3.6.1.4.1.99999.3.1"
EID = "89049032000000000000000000000163"
ICCID = "8988299000000001014"
T0 = datetime(2026, 12, 3, 10, 0, tzinfo=timezone.utc)
OFFICIAL = Path(__file__).resolve().parents[2].parent / "shared" / "gsma-sgp02-wsdl"

class FlakyReceiver:
    """Answers ``failures`` POSTs with HTTP 503, then 202; keeps every body."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                receiver.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                code = 503 if len(receiver.bodies) <= receiver.failures else 202
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mno"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def db(tmp_path):
    url = sqlite_url(tmp_path)
    migrate(url)
    database = Database(url)
    yield database
    database.dispose()


def notification(db: Database, endpoint: str) -> None:
    with db.session() as s:
        upsert_entity(s, oid=MNO, role="mno", name="MNO", endpoint=endpoint)
        enqueue(s, ProfileStateChanged(ProfileChange.ENABLED, EID, ICCID, MNO, None, T0),
                sender_role="smsr", sender_oid=SMSR, recipient=MNO, interface="ES4")


def row(db: Database) -> OutboxMessage:
    with db.session() as s:
        r = s.scalars(select(OutboxMessage)).one()
        s.expunge(r)
        return r


def message_ids(bodies: list[bytes]) -> set[str]:
    return {etree.fromstring(b).findtext(f".//{{{WSA}}}MessageID") for b in bodies}


def utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def test_a_receiver_that_fails_first_gets_the_same_message_later(db, caplog):
    receiver = FlakyReceiver(failures=2)
    try:
        notification(db, receiver.url)
        http = HttpClient()
        caplog.set_level(logging.INFO, logger="esx.outbox")
        start = datetime.now(timezone.utc)
        assert deliver_due(db, from_address=f"http://smsr/?EntityId={SMSR}", http=http, now=start) == 0
        first = row(db)
        assert (first.attempts, first.delivered_at, first.last_error) == (1, None, "HTTP 503")
        assert utc(first.next_attempt_at) - start == timedelta(seconds=2)
        # Not due yet: nothing is sent.
        assert deliver_due(db, from_address="x", http=http, now=start + timedelta(seconds=1)) == 0
        assert len(receiver.bodies) == 1
        assert deliver_due(db, from_address=f"http://smsr/?EntityId={SMSR}", http=http,
                           now=utc(first.next_attempt_at)) == 0
        second = row(db)
        assert second.attempts == 2
        assert utc(second.next_attempt_at) - utc(first.next_attempt_at) == timedelta(seconds=4)  # it grew: 2 s, then 4 s
        assert deliver_due(db, from_address=f"http://smsr/?EntityId={SMSR}", http=http,
                           now=utc(second.next_attempt_at)) == 1
        done = row(db)
        assert done.delivered_at is not None and done.attempts == 3
        assert len(receiver.bodies) == 3 and message_ids(receiver.bodies) == {done.message_id}
        failures = [r for r in caplog.records if r.name == "esx.outbox"]
        assert len(failures) == 2  # one line per failed attempt
        assert all("\n" not in r.getMessage() and len(r.getMessage()) < 200 for r in failures)
    finally:
        receiver.close()


def test_an_unreachable_receiver_is_one_short_line_and_stays_queued(db, caplog):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    notification(db, f"http://127.0.0.1:{dead}/mno")
    caplog.set_level(logging.INFO, logger="esx.outbox")
    deliver_due(db, from_address="x", http=HttpClient())
    (line,) = [r.getMessage() for r in caplog.records if r.name == "esx.outbox"]
    assert "ConnectionRefusedError: [Errno 111] Connection refused" in line and len(line) < 200, line
    assert row(db).last_error == "ConnectionRefusedError: [Errno 111] Connection refused"
    with db.session() as s:
        assert [r.operation for r in pending(s)] == ["ES4-HandleProfileEnabledNotification"]
        assert retry_now(s) == 1
    assert utc(row(db).next_attempt_at) <= datetime.now(timezone.utc)


def test_back_off_doubles_and_is_capped():
    assert [backoff(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff(9) == 512.0 and backoff(10) == MAX_BACKOFF == 600.0 and backoff(1000) == MAX_BACKOFF


# -- rendering at delivery: the bytes on the wire ----------------------------------------------------------------

ENV_OPEN = ('<?xml version=\'1.0\' encoding=\'utf-8\'?>\n<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" '
            'xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:rps="http://namespaces.gsma.org/esim-messaging/3">')


def delivered(db: Database, receiver: FlakyReceiver) -> bytes:
    assert deliver_due(db, from_address=f"http://smsr.example/?EntityId={SMSR}", http=HttpClient()) == 1
    (body,) = receiver.bodies
    return body


def test_a_notification_event_is_delivered_as_the_v3_envelope(db):
    receiver = FlakyReceiver(failures=0)
    try:
        notification(db, receiver.url)
        [r] = pending_rows(db)
        assert (r.event_type, r.channel, r.interface, r.wsdl, r.operation, r.body) == (
            "ProfileStateChanged", SOAP_V3, "ES4", "ES4Mno.wsdl", "ES4-HandleProfileEnabledNotification", None)
        got = delivered(db, receiver)
    finally:
        receiver.close()
    assert got.decode() == (
        ENV_OPEN + '<env:Header><wsa:From><wsa:Address>http://smsr.example/?EntityId=1.3.6.1.4.1.99999.1.1</wsa:Address>'
        f'</wsa:From><wsa:To env:mustUnderstand="true">{receiver.url}?EntityId=1.3.6.1.4.1.99999.2.1</wsa:To>'
        f'<wsa:MessageID>{r.message_id.replace("&", "&amp;")}</wsa:MessageID><wsa:Action env:mustUnderstand="true">'
        'http://gsma.com/ES4/PlatformManagement/ES4-HandleProfileEnabledNotification</wsa:Action></env:Header>'
        '<env:Body><rps:ES4-HandleProfileEnabledNotification><rps:Eid>89049032000000000000000000000163</rps:Eid>'
        '<rps:Iccid>8988299000000001014</rps:Iccid><rps:CompletionTimestamp>2026-12-03T10:00:00Z</rps:CompletionTimestamp>'
        '</rps:ES4-HandleProfileEnabledNotification></env:Body></env:Envelope>')
    assert r.message_id.startswith(f"//{SMSR}/urn:uuid:")


def pending_rows(db: Database) -> list[OutboxMessage]:
    with db.session() as s:
        rows = pending(s)
        for r in rows:
            s.expunge(r)
        return rows


def smsr_op(interface: str, function: str, **params) -> SimpleNamespace:
    return SimpleNamespace(id=42, interface=interface, function=function, requester_id=MNO if interface == "ES4" else SMDP,
                           message_id="urn:uuid:req-1", reply_to=None, accepted_at=T0, params=params)


@pytest.fixture()
def finished_at(monkeypatch):
    """The sinks stamp ProcessingEnd when the function ends (not when it is delivered): pinned here."""
    end = T0 + timedelta(seconds=3, milliseconds=250)
    monkeypatch.setattr("esx.outbox._utcnow", lambda: end)
    return end


def bodies(db: Database) -> list[tuple[str, str, bytes]]:
    return [(r.operation, r.target_oid, soap_body(r)) for r in pending_rows(db)]


def status(inner: str) -> str:
    return ("<rps:ProcessingStart>2026-12-03T10:00:00Z</rps:ProcessingStart>"
            "<rps:ProcessingEnd>2026-12-03T10:00:03.250Z</rps:ProcessingEnd>"
            f"<rps:FunctionExecutionStatus>{inner}</rps:FunctionExecutionStatus>")


NS = 'xmlns:rps="http://namespaces.gsma.org/esim-messaging/3"'


def test_smsr_callbacks_have_the_v3_bytes(db, finished_at):
    sink = OutboxSink(SMSR)
    with db.session() as s:
        sink.callback(s, smsr_op("ES4", "EnableProfile", iccid=ICCID), Status.FAILED,
                      FunctionFailed(ICCID_NOT_ALLOWED, subject_identifier=ICCID), None, "6985")
        sink.callback(s, smsr_op("ES3", "DeleteProfile", iccid=ICCID), Status.EXECUTED_SUCCESS, None, None, "9000")
        sink.callback(s, smsr_op("ES3", "CreateISDP", isd_p_aid="A0000005591010FFFFFFFF8900001200"), Status.FAILED,
                      FunctionFailed(EUICC_INSUFFICIENT_MEMORY), None, "6A84")
    enable, delete, create = bodies(db)
    assert enable == ("ES4-EnableProfileCallback", MNO, (
        f'<rps:ES4-EnableProfileResponse {NS}>' + status(
            "<rps:Status>FAILED</rps:Status><rps:StatusCodeData><rps:Subject>8.2.1</rps:Subject><rps:Reason>1.2</rps:Reason>"
            "<rps:SubjectIdentifier>8988299000000001014</rps:SubjectIdentifier>"
            "<rps:Message>Requester not allowed to manage this profile</rps:Message></rps:StatusCodeData>")
        + "<rps:EuiccResponseData>6985</rps:EuiccResponseData></rps:ES4-EnableProfileResponse>").encode())
    assert delete == ("ES3-DeleteISDPCallback", SMDP, (
        f'<rps:ES3-DeleteISDPResponse {NS}>' + status("<rps:Status>EXECUTED_SUCCESS</rps:Status>")
        + "<rps:EuiccResponseData>9000</rps:EuiccResponseData></rps:ES3-DeleteISDPResponse>").encode())
    # v3 makes Isd-p-aid mandatory even when no ISD-P was created
    assert create == ("ES3-CreateISDPCallback", SMDP, (
        f'<rps:ES3-CreateISDPResponse {NS}>' + status(
            "<rps:Status>FAILED</rps:Status><rps:StatusCodeData><rps:Subject>8.1</rps:Subject><rps:Reason>4.8</rps:Reason>"
            "<rps:Message>Not enough memory on the eUICC</rps:Message></rps:StatusCodeData>")
        + "<rps:Isd-p-aid>0000000000</rps:Isd-p-aid><rps:EuiccResponseData>6A84</rps:EuiccResponseData>"
        "</rps:ES3-CreateISDPResponse>").encode())
    with db.session() as s:
        callback = s.scalars(select(OutboxMessage)).first()
        assert (callback.kind, callback.relates_to, callback.operation_id, callback.address) == (
            "callback", "urn:uuid:req-1", 42, None)


def test_a_profile_change_is_owed_to_the_mno_and_to_the_smdp_that_installed_it(db):
    profile = SimpleNamespace(iccid=ICCID, mno_id=MNO, smdp_id=SMDP)
    with db.session() as s:
        OutboxSink(SMSR).profile_notification(s, "Deleted", EID, profile, T0)
    es4, es3 = bodies(db)
    leaves = (f"<rps:Eid>{EID}</rps:Eid><rps:Iccid>{ICCID}</rps:Iccid>", "<rps:CompletionTimestamp>2026-12-03T10:00:00Z"
              "</rps:CompletionTimestamp>")
    assert es4 == ("ES4-HandleProfileDeletedNotification", MNO, (
        f"<rps:ES4-HandleProfileDeletedNotification {NS}>{leaves[0]}{leaves[1]}"
        "</rps:ES4-HandleProfileDeletedNotification>").encode())
    assert es3 == ("ES3-HandleProfileDeletedNotification", SMDP, (
        f"<rps:ES3-HandleProfileDeletedNotification {NS}>{leaves[0]}<rps:Mno-id>{MNO}</rps:Mno-id>{leaves[1]}"
        "</rps:ES3-HandleProfileDeletedNotification>").encode())


def test_smdp_callbacks_and_notifications_have_the_v3_bytes(db, finished_at):
    sink = SmdpOutboxSink(SMDP)
    op = SimpleNamespace(function="DownloadProfile", requester_id=MNO, message_id="urn:uuid:req-2",
                         reply_to="http://mno.example/replies", accepted_at=T0, iccid=ICCID)
    with db.session() as s:
        sink.callback(s, op, Status.EXECUTED_SUCCESS, None)
        sink.notification(s, "Enabled", MNO, EID, ICCID, T0)
    callback, enabled = bodies(db)
    assert callback == ("ES2-DownloadProfileCallback", MNO, (
        f"<rps:ES2-DownloadProfileResponse {NS}>" + status("<rps:Status>EXECUTED_SUCCESS</rps:Status>")
        + f"<rps:Iccid>{ICCID}</rps:Iccid></rps:ES2-DownloadProfileResponse>").encode())
    assert enabled == ("ES2-HandleProfileEnabledNotification", MNO, (
        f"<rps:ES2-HandleProfileEnabledNotification {NS}><rps:Eid>{EID}</rps:Eid><rps:Iccid>{ICCID}</rps:Iccid>"
        "<rps:CompletionTimestamp>2026-12-03T10:00:00Z</rps:CompletionTimestamp></rps:ES2-HandleProfileEnabledNotification>"
    ).encode())
    with db.session() as s:
        row = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "callback")).one()
        assert (row.address, row.relates_to, row.sender_role) == ("http://mno.example/replies", "urn:uuid:req-2", "smdp")


# -- every event kind renders to a body both XSDs accept ------------------------------------------------------------


@pytest.fixture(scope="module")
def signed_eis(tmp_path_factory):
    """A real EIS as the SM-SR holds it: built from the demo values, signed by a development EUM, parsed back."""
    from esx.demo import build_eis, demo_profiles, isd_r_domain, signed_eis_element
    from esx.eis_xml import parse_eis
    from keys.pki import DevPki

    pki = DevPki.generate(tmp_path_factory.mktemp("pki") / "pki", smdp_oid=SMDP, smsr_oid=SMSR,
                          eum_oid="1.3.6.1.4.1.99999.4.1", mno_oid=MNO)
    eis = build_eis(eid=EID, eum_id="1.3.6.1.4.1.99999.4.1", smsr_id=SMSR, ecasd_cert=b"\x7f\x21\x00",
                    profiles=demo_profiles(1), isd_r=isd_r_domain({k: bytes(16) for k in ("enc", "mac", "dek")}))
    return parse_eis(signed_eis_element(eis, pki.eum_key, pki.eum_cert_pem))


def every_event(eis) -> list[tuple[str, object]]:
    """(interface, event) for every callback operation of the receivers' WSDLs, succeeded and failed, every profile and
    SM-SR change notification over ES2, ES3 and ES4, and every ES7 request."""
    out = []
    soap = SoapV3()
    results = {"AuthenticateSMSR": (("RandomChallenge", "0123456789ABCDEF0123456789ABCDEF"),),
               "CreateAdditionalKeySet": (("DerivationRandom", "00112233445566778899AABBCCDDEEFF"),
                                          ("Receipt", "FFEEDDCCBBAA99887766554433221100"))}
    for interface, wsdl in soap.CONTRACTS.items():
        for operation in contract.load_service(wsdl).operations:
            if not operation.endswith("Callback"):
                continue
            name = operation[len(interface) + 1:-len("Callback")]
            function = {v: k for k, v in soap.ES3_NAMES.items()}.get(name, name) if interface == "ES3" else name
            base = OperationFinished(interface, function, MNO, "urn:uuid:r", None, T0, T0, Outcome(Status.EXECUTED_SUCCESS),
                                     euicc_response="9000", isd_p_aid="A0000005591010FFFFFFFF8900001200",
                                     iccid=ICCID, eis=eis if function == "AuditEIS" else None,
                                     results=results.get(function, ()))
            out.append((interface, base))
            out.append((interface, replace(base, outcome=Outcome.of(Status.FAILED, FunctionFailed(ICCID_NOT_ALLOWED)))))
            out.append((interface, replace(base, outcome=Outcome(Status.EXPIRED, "1.6", "5.3", "expired"))))
        if interface == "ES7":
            continue
        for change in ProfileChange:
            out.append((interface, ProfileStateChanged(change, EID, ICCID, MNO, SMDP, T0)))
        out.append((interface, SmsrChanged(EID, eis, MNO, T0)))
    fields = {"AuthenticateSMSR": (("SmsrCertificate", "7F2103000000"),),
              "CreateAdditionalKeySet": (("KeyVersionNumber", "2"), ("InitialSequenceCounter", "-1"),
                                         ("ECCKeyLength", "ECC-256"), ("ScenarioParameter", "9"), ("HostId", ""),
                                         ("EphemeralPublicKey", "5F4941" + "04" * 65), ("Signature", "AB" * 64))}
    for function in ("HandoverEUICC", "AuthenticateSMSR", "CreateAdditionalKeySet"):
        out.append(("ES7", PeerRequested(function, EID, "http://smsr1.example/smsr/es7", T0, 600,
                                         fields.get(function, ()), eis if function == "HandoverEUICC" else None)))
    return out


def test_every_event_kind_renders_to_a_body_our_xsd_and_the_official_one_accept(signed_eis):
    if not OFFICIAL.is_dir():
        unavailable(f"official GSMA WSDL set not found at {OFFICIAL}")
    from tests.e2e.conftest import official_schema

    cases = every_event(signed_eis)
    operations = set()
    for interface, event in cases:
        name = SoapV3().delivered_as(event, interface)
        body = SoapV3().body(event, interface, "urn:uuid:m")  # RenderError if our XSD refuses it
        assert contract.validate(body) is None
        if interface != "ES7":  # ES7 against the v4 package: tests/wsdl (the v3 ES7 set names a missing element)
            schema = official_schema(interface)
            assert schema.validate(body), (name.operation, schema.error_log)
        operations.add(name.operation)
    # nothing left out: every callback and notification of the receivers' WSDLs, and every ES7 request, was rendered
    expected = {op for wsdl in SoapV3.CONTRACTS.values() for op in contract.load_service(wsdl).operations
                if op.endswith("Callback") or "-Handle" in op}
    expected |= set(contract.load_service(ES7_PROVIDER).operations)
    assert operations == expected and len(expected) > 30
    audit = next(SoapV3().body(e, "ES4") for i, e in cases if i == "ES4" and getattr(e, "eis", None))
    assert audit.find(".//{http://namespaces.gsma.org/esim-messaging/3}Eis") is not None


def test_an_es7_callback_that_failed_carries_its_result_elements_empty():
    """RandomChallenge, DerivationRandom and Receipt are mandatory in the ES7 schema (v3 and v4), a failure too."""
    failed = OperationFinished("ES7", "CreateAdditionalKeySet", SMSR, "urn:uuid:r", None, T0, T0,
                               Outcome.of(Status.FAILED, FunctionFailed(ICCID_NOT_ALLOWED)),
                               results=(("DerivationRandom", "00"), ("Receipt", "11")))
    body = SoapV3().body(failed, "ES7")
    g = "{http://namespaces.gsma.org/esim-messaging/3}"
    assert [(c.tag.removeprefix(g), c.text or "") for c in body][-2:] == [("DerivationRandom", ""), ("Receipt", "")]


def test_a_body_the_contract_forbids_is_a_render_error():
    event = ProfileStateChanged(ProfileChange.ENABLED, EID, "not-an-iccid", MNO, None, T0)
    with pytest.raises(RenderError, match="ES4-HandleProfileEnabledNotification violates the schema"):
        SoapV3().body(event, "ES4")
    with pytest.raises(ValueError, match="has no operation ES2-AuditEISCallback"):
        SoapV3().delivered_as(OperationFinished("ES2", "AuditEIS", MNO, None, None, T0, T0,
                                                Outcome(Status.EXECUTED_SUCCESS)), "ES2")


# -- delivery: render failures, rows written before events, a second channel ------------------------------------


def test_a_render_failure_is_one_line_a_last_error_and_a_retry_never_a_crash(db, caplog):
    receiver = FlakyReceiver(failures=0)
    try:
        with db.session() as s:
            upsert_entity(s, oid=MNO, role="mno", name="MNO", endpoint=receiver.url)
            enqueue(s, ProfileStateChanged(ProfileChange.ENABLED, EID, "not-an-iccid", MNO, None, T0),
                    sender_role="smsr", sender_oid=SMSR, recipient=MNO, interface="ES4")
            enqueue(s, ProfileStateChanged(ProfileChange.DISABLED, EID, ICCID, MNO, None, T0),
                    sender_role="smsr", sender_oid=SMSR, recipient=MNO, interface="ES4")
            s.flush()
            garbled = s.scalars(select(OutboxMessage).order_by(OutboxMessage.id.desc())).first()
            garbled.payload = '{"change": "Enabled"'  # a payload this version cannot read
        caplog.set_level(logging.INFO, logger="esx.outbox")
        start = datetime.now(timezone.utc)
        assert deliver_due(db, from_address="x", http=HttpClient(), now=start) == 0
        assert receiver.bodies == []  # nothing half-rendered left
        invalid, unreadable = pending_rows(db)
        assert invalid.last_error.startswith("not rendered: RenderError: ES4-HandleProfileEnabledNotification violates "
                                             "the schema")
        assert unreadable.last_error.startswith("not rendered: JSONDecodeError")
        for r in (invalid, unreadable):
            assert r.attempts == 1 and utc(r.next_attempt_at) - start == timedelta(seconds=2)  # the usual back-off
        lines = [r.getMessage() for r in caplog.records if r.name == "esx.outbox"]
        assert len(lines) == 2 and all("\n" not in ln and len(ln) < 600 for ln in lines), lines
        # the worker keeps going: next round, the same rows fail the same way, with a longer delay
        assert deliver_due(db, from_address="x", http=HttpClient(), now=start + timedelta(seconds=2)) == 0
        assert [r.attempts for r in pending_rows(db)] == [2, 2]
    finally:
        receiver.close()


def test_a_row_written_before_events_is_sent_as_it_is(db):
    receiver = FlakyReceiver(failures=0)
    old_body = (f'<rps:ES4-HandleProfileDisabledNotification {NS}><rps:Eid>{EID}</rps:Eid><rps:Iccid>{ICCID}</rps:Iccid>'
                '<rps:CompletionTimestamp>2026-12-01T08:00:00Z</rps:CompletionTimestamp>'
                '</rps:ES4-HandleProfileDisabledNotification>').encode()
    try:
        with db.session() as s:
            upsert_entity(s, oid=MNO, role="mno", name="MNO", endpoint=receiver.url)
            s.add(OutboxMessage(created_at=T0, kind="notification", wsdl="ES4Mno.wsdl",
                                operation="ES4-HandleProfileDisabledNotification", sender_role="smsr", target_oid=MNO,
                                message_id="urn:uuid:old", body=old_body, attempts=0, next_attempt_at=T0))
        got = delivered(db, receiver)
    finally:
        receiver.close()
    assert b"<wsa:MessageID>urn:uuid:old</wsa:MessageID>" in got
    # as before events: the body inside the envelope, whose root already declares rps
    assert got.endswith(b"<env:Body>" + old_body.replace(b" " + NS.encode(), b"") + b"</env:Body></env:Envelope>")
    with db.session() as s:
        assert soap_body(s.scalars(select(OutboxMessage)).one()) == old_body


class JsonLines:
    """A stand-in second channel (what a REST webhook would be): one more renderer in CHANNELS, nothing else."""

    def delivered_as(self, event, interface):
        return DeliveryName("test-json", type(event).__name__)

    def new_message_id(self, sender_oid):
        return f"{sender_oid}/1"

    def render(self, event, interface, name, *, message_id, relates_to, from_address, to):
        return Wire("application/json", f'{{"id": "{message_id}", "event": "{name.operation}", "eid": "{event.eid}"}}'
                    .encode())


def test_a_second_channel_is_one_more_renderer(db, monkeypatch):
    monkeypatch.setitem(CHANNELS, "test-json", JsonLines())
    receiver = FlakyReceiver(failures=0)
    try:
        with db.session() as s:
            upsert_entity(s, oid=MNO, role="mno", name="MNO", endpoint=receiver.url)
            event = ProfileStateChanged(ProfileChange.ENABLED, EID, ICCID, MNO, None, T0)
            enqueue(s, event, sender_role="smsr", sender_oid=SMSR, recipient=MNO, interface="ES4", channel="test-json")
            enqueue(s, event, sender_role="smsr", sender_oid=SMSR, recipient=MNO, interface="ES4")
        assert deliver_due(db, from_address="x", http=HttpClient()) == 2
    finally:
        receiver.close()
    webhook, soap = receiver.bodies
    assert webhook == f'{{"id": "{SMSR}/1", "event": "ProfileStateChanged", "eid": "{EID}"}}'.encode()
    assert b"ES4-HandleProfileEnabledNotification" in soap


def test_outbox_show_names_the_event_and_what_it_is_delivered_as(db, monkeypatch):
    import json

    from click.testing import CliRunner

    from esx import cli

    notification(db, "http://127.0.0.1:9/mno")
    monkeypatch.setattr(cli, "load_config", lambda data_dir: SimpleNamespace(database_url=db.url))
    out = CliRunner().invoke(cli.main, ["outbox", "show", "--data-dir", "var"])
    assert out.exit_code == 0, out.output
    [line] = [json.loads(ln) for ln in out.output.splitlines()]
    assert (line["event"], line["channel"], line["operation"], line["to"], line["attempts"]) == (
        "ProfileStateChanged", SOAP_V3, "ES4-HandleProfileEnabledNotification", MNO, 0)
    out = CliRunner().invoke(cli.main, ["outbox", "retry", "--data-dir", "var"])
    assert json.loads(out.output) == {"due_now": 1}
