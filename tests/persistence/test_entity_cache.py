"""persistence.entities.EntityCache: a found entity is reused for at most max_age seconds; a missing one is not kept."""
from __future__ import annotations

from persistence.db import Database
from persistence.entities import Entity, EntityCache, upsert_entity


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_an_entity_is_reused_within_max_age_and_read_again_after(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'e.sqlite3'}")
    Entity.metadata.create_all(db.engine, tables=[Entity.__table__])
    with db.session() as s:
        upsert_entity(s, oid="1.2.3", role="smsr", name="SM-SR", endpoint="http://a/es3")
    clock = Clock()
    cache = EntityCache(db, max_age=10.0, clock=clock)
    assert cache.get("1.2.3").endpoint == "http://a/es3"
    with db.session() as s:
        upsert_entity(s, oid="1.2.3", role="smsr", name="SM-SR", endpoint="http://b/es3")
    clock.t += 9.9
    assert cache.get("1.2.3").endpoint == "http://a/es3"  # still within the bound
    clock.t += 0.1
    assert cache.get("1.2.3").endpoint == "http://b/es3"  # the bound: 10 s


def test_an_unknown_oid_is_looked_up_again_at_once(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'e.sqlite3'}")
    Entity.metadata.create_all(db.engine, tables=[Entity.__table__])
    cache = EntityCache(db, max_age=10.0, clock=Clock())
    assert cache.get("1.2.4") is None and cache.get(None) is None
    with db.session() as s:
        upsert_entity(s, oid="1.2.4", role="eum", name="EUM")
    assert cache.get("1.2.4").role == "eum"
