"""The outbox's retry path, against a receiver that fails first: same MessageID every time, growing capped back-off,
one short log line per failed attempt, `esx outbox show`/`retry`."""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from lxml import etree
from sqlalchemy import select

from esx.binding.ns import GSMA, WSA
from esx.binding.soap import gsma_element
from esx.outbox import MAX_BACKOFF, add_message, backoff, deliver_due, pending, retry_now
from persistence.db import Database, migrate, sqlite_url
from persistence.entities import upsert_entity
from persistence.outbox import OutboxMessage

MNO = "1.3.6.1.4.1.99999.2.1"
SMSR = "1.3.6.1.4.1.99999.1.1"


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
        body = gsma_element("ES4-HandleProfileEnabledNotification")
        for local, text in (("Eid", "89049032000000000000000000000163"), ("Iccid", "8988299000000001014"),
                            ("CompletionTimestamp", "2026-12-03T10:00:00Z")):
            etree.SubElement(body, f"{{{GSMA}}}{local}").text = text
        add_message(s, sender_role="smsr", sender_oid=SMSR, kind="notification", wsdl="ES4Mno.wsdl",
                    operation="ES4-HandleProfileEnabledNotification", target_oid=MNO, body=body)


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
        session = requests.Session()
        caplog.set_level(logging.INFO, logger="esx.outbox")
        start = datetime.now(timezone.utc)
        assert deliver_due(db, from_address=f"http://smsr/?EntityId={SMSR}", session=session, now=start) == 0
        first = row(db)
        assert (first.attempts, first.delivered_at, first.last_error) == (1, None, "HTTP 503")
        assert utc(first.next_attempt_at) - start == timedelta(seconds=2)
        # Not due yet: nothing is sent.
        assert deliver_due(db, from_address="x", session=session, now=start + timedelta(seconds=1)) == 0
        assert len(receiver.bodies) == 1
        assert deliver_due(db, from_address=f"http://smsr/?EntityId={SMSR}", session=session,
                           now=utc(first.next_attempt_at)) == 0
        second = row(db)
        assert second.attempts == 2
        assert utc(second.next_attempt_at) - utc(first.next_attempt_at) == timedelta(seconds=4)  # it grew: 2 s, then 4 s
        assert deliver_due(db, from_address=f"http://smsr/?EntityId={SMSR}", session=session,
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
    deliver_due(db, from_address="x", session=requests.Session())
    (line,) = [r.getMessage() for r in caplog.records if r.name == "esx.outbox"]
    assert "ConnectionError: [Errno 111] Connection refused" in line and len(line) < 200, line
    assert row(db).last_error == "ConnectionError: [Errno 111] Connection refused"
    with db.session() as s:
        assert [r.operation for r in pending(s)] == ["ES4-HandleProfileEnabledNotification"]
        assert retry_now(s) == 1
    assert utc(row(db).next_attempt_at) <= datetime.now(timezone.utc)


def test_back_off_doubles_and_is_capped():
    assert [backoff(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff(9) == 512.0 and backoff(10) == MAX_BACKOFF == 600.0 and backoff(1000) == MAX_BACKOFF
