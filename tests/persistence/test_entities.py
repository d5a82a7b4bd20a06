"""persistence.entities.EntityCache: how long a process trusts what it read of an entity (a caller, a peer)."""
from __future__ import annotations

import pytest
from sqlalchemy import delete, event, update

from persistence.db import Database, migrate
from persistence.entities import Entity, EntityCache, MnoSmdp, set_mno_smdps, upsert_entity


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'e.sqlite3'}"
    migrate(url)
    database = Database(url)
    with database.session() as s:
        upsert_entity(s, oid="1.1", role="mno", name="MNO")
        upsert_entity(s, oid="1.2", role="smdp", name="SM-DP")
        set_mno_smdps(s, "1.1", ["1.2"])
    yield database
    database.dispose()


def counting(db):
    seen = []
    event.listen(db.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_a_change_by_another_process_is_seen_at_the_next_call(db):
    cache = EntityCache(db.engine)
    assert cache.by_oid("1.1").role == "mno"
    assert cache.by_oid("1.2").served_mnos == frozenset({"1.1"})
    with db.engine.begin() as c:  # as `esx entity add` in another process would: plain SQL, no help from this one
        c.execute(update(Entity.__table__).where(Entity.__table__.c.oid == "1.1").values(role="eum"))
    assert cache.by_oid("1.1").role == "eum"
    with db.engine.begin() as c:  # an MNO withdraws its SM-DP
        c.execute(delete(MnoSmdp.__table__))
    assert cache.by_oid("1.2").served_mnos == frozenset()


def test_a_kept_entity_costs_one_read_and_unknown_ones_are_not_kept(db):
    cache = EntityCache(db.engine)
    cache.by_oid("1.2")
    seen = counting(db)
    assert cache.by_oid("1.2").role == "smdp"
    assert len(seen) == 1 and "entity_version" in seen[0]
    assert cache.by_oid("1.3") is None
    with db.session() as s:
        upsert_entity(s, oid="1.3", role="mno", name="new MNO")
    assert cache.by_oid("1.3").role == "mno"


def test_the_version_moves_on_every_change_on_postgresql_too(tmp_path):
    from tests.e2e.conftest import _postgres_database

    for url in _postgres_database():
        migrate(url)
        database = Database(url)
        try:
            with database.session() as s:
                upsert_entity(s, oid="1.2", role="smdp", name="SM-DP")
            cache = EntityCache(database.engine)
            assert cache.by_oid("1.2").name == "SM-DP"
            with database.engine.begin() as c:
                c.execute(update(Entity.__table__).values(name="renamed"))
            assert cache.by_oid("1.2").name == "renamed"
            with database.session() as s:
                upsert_entity(s, oid="1.1", role="mno", name="MNO")
                set_mno_smdps(s, "1.1", ["1.2"])
            assert cache.by_oid("1.2").served_mnos == frozenset({"1.1"})
        finally:
            database.dispose()
