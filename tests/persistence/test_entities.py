"""persistence.entities.EntityCache: how long a process trusts what it read of an entity (a caller, a peer)."""
from __future__ import annotations

import pytest
from sqlalchemy import update

from persistence.db import Database, migrate
from persistence.entities import Entity, EntityCache, set_mno_smdps, upsert_entity


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


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


def test_a_change_from_another_process_is_seen_within_the_ttl(db):
    clock = Clock()
    cache = EntityCache(db.engine, ttl=5.0, clock=clock)
    assert cache.by_oid("1.1").role == "mno"
    assert cache.by_oid("1.2").served_mnos == frozenset({"1.1"})
    with db.engine.begin() as c:  # as `esx entity add` in another process would: no invalidation here
        c.execute(update(Entity.__table__).where(Entity.__table__.c.oid == "1.1").values(role="eum"))
    clock.now += 4.9
    assert cache.by_oid("1.1").role == "mno"  # still within the TTL
    clock.now += 0.2
    assert cache.by_oid("1.1").role == "eum"


def test_a_change_in_this_process_is_seen_at_once_and_unknown_callers_are_not_kept(db):
    cache = EntityCache(db.engine, ttl=3600.0, clock=Clock())
    assert cache.by_oid("1.2").served_mnos == frozenset({"1.1"})
    assert cache.by_oid("1.3") is None
    with db.session() as s:
        set_mno_smdps(s, "1.1", [])
        upsert_entity(s, oid="1.3", role="mno", name="new MNO")
    assert cache.by_oid("1.2").served_mnos == frozenset()
    assert cache.by_oid("1.3").role == "mno"
