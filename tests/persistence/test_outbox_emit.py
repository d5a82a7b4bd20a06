"""persistence.outbox.emit: an event joins the state change's transaction (committed with it, or not at all), and the
revision 0007 keeps rows written before it deliverable."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from persistence.db import Database, migrate, sqlite_url
from persistence.entities import Entity, get_entity, upsert_entity
from persistence.outbox import OutboxMessage, emit
from sgp02.codes import Status
from sgp02.events import OperationFinished, Outcome, ProfileChange, ProfileStateChanged, from_json

MNO = "1.3.6.1.4.1.99999.2.1"
EID = "89049032000000000000000000000163"
AT = datetime(2026, 12, 3, 10, 0, tzinfo=timezone.utc)
CHANGED = ProfileStateChanged(ProfileChange.ENABLED, EID, "8988299000000001014", MNO, None, AT)
FINISHED = OperationFinished("ES4", "EnableProfile", MNO, "urn:uuid:request", "http://mno/replies", AT, AT,
                             Outcome(Status.EXECUTED_SUCCESS))


@pytest.fixture()
def db(tmp_path):
    url = sqlite_url(tmp_path)
    migrate(url)
    database = Database(url)
    yield database
    database.dispose()


def owe(s, event, **kw):
    return emit(s, event, sender_role="smsr", recipient=MNO, interface="ES4", channel="soap-v3",
                message_id="urn:uuid:delivery", contract="ES4Mno.wsdl", operation="ES4-Whatever", **kw)


def rows(db):
    with db.session() as s:
        found = list(s.scalars(select(OutboxMessage)))
        for r in found:
            s.expunge(r)
        return found


def test_an_event_commits_with_the_state_change(db):
    with db.session() as s:
        upsert_entity(s, oid=MNO, role="mno", name="MNO", endpoint="http://mno")
        owe(s, CHANGED)
    [row] = rows(db)
    assert (row.kind, row.event_type, row.channel, row.interface, row.target_oid) == (
        "notification", "ProfileStateChanged", "soap-v3", "ES4", MNO)
    assert (row.body, row.address, row.relates_to, row.message_id) == (None, None, None, "urn:uuid:delivery")
    assert from_json(row.event_type, row.payload) == CHANGED


def test_a_rolled_back_state_change_leaves_no_outbox_row(db):
    with pytest.raises(RuntimeError):
        with db.session() as s:
            upsert_entity(s, oid=MNO, role="mno", name="MNO", endpoint="http://mno")
            owe(s, CHANGED)
            s.flush()  # the row reached the database inside the transaction ...
            assert s.scalar(select(sa.func.count()).select_from(OutboxMessage)) == 1
            raise RuntimeError("the state change fails after the event was raised")
    assert rows(db) == []  # ... and went with it
    with db.session() as s:
        assert get_entity(s, MNO) is None


def test_a_callback_goes_to_reply_to_and_relates_to_the_request(db):
    with db.session() as s:
        owe(s, FINISHED, operation_id=7)
    [row] = rows(db)
    assert (row.kind, row.address, row.relates_to, row.operation_id) == (
        "callback", "http://mno/replies", "urn:uuid:request", 7)


def test_only_domain_events_are_emitted(db):
    with db.session() as s:
        with pytest.raises(TypeError):
            owe(s, Entity(oid=MNO, role="mno", name="x"))


def test_revision_0007_keeps_the_rows_written_before_it(tmp_path):
    """A row of revision 0006 (a rendered body, no event) is still there, unchanged, after the upgrade."""
    from alembic import command
    from alembic.config import Config

    from persistence.db import MIGRATIONS_DIR

    url = sqlite_url(tmp_path)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "0006")
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.execute(sa.text(
            "INSERT INTO outbox (created_at, kind, wsdl, operation, sender_role, target_oid, message_id, body, attempts,"
            " next_attempt_at) VALUES (:t, 'notification', 'ES4Mno.wsdl', 'ES4-HandleProfileEnabledNotification',"
            " 'smsr', :mno, 'urn:uuid:old', :body, 0, :t)"), {"t": AT, "mno": MNO, "body": b"<old/>"})
    command.upgrade(cfg, "head")
    with engine.connect() as c:
        old = c.execute(sa.text("SELECT body, event_type, payload, channel FROM outbox")).one()
    engine.dispose()
    assert tuple(old) == (b"<old/>", None, None, None)
