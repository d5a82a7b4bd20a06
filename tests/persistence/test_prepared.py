"""Prepared statements read rows exactly as SQLAlchemy's own execution does (dates, JSON, booleans, NULLs), on
SQLite and on PostgreSQL, and the engine's listeners still see every statement and commit."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import JSON, Boolean, Column, DateTime, Integer, MetaData, String, Table, bindparam, event, select

from persistence.db import Database
from persistence.prepared import Prepared, dbapi, one_connection
from tests.e2e.conftest import _postgres_database

meta = MetaData()
thing = Table("prepared_thing", meta, Column("id", Integer, primary_key=True), Column("name", String(20)),
              Column("at", DateTime(timezone=True)), Column("doc", JSON), Column("flag", Boolean))
INSERT = Prepared(thing.insert(), column_keys=["id", "name", "at", "doc", "flag"])
BY_ID = Prepared(select(thing).where(thing.c.id == bindparam("id")))
AT = datetime(2026, 12, 3, 13, 37, 53, 123456, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        yield from _made(f"sqlite:///{tmp_path / 'p.sqlite3'}")
    else:
        for url in _postgres_database():
            yield from _made(url)


def _made(url):
    database = Database(url)
    meta.create_all(database.engine)
    yield database
    database.dispose()


def test_rows_read_as_sqlalchemy_reads_them(db):
    statements, commits = [], []
    event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    event.listen(db.engine, "commit", lambda *a: commits.append(1))
    with dbapi(db.engine, commit=True) as conn:
        INSERT.run(conn, id=1, name="x", at=AT, doc={"k": [1, "v"]}, flag=True)
        INSERT.run(conn, id=2, name=None, at=None, doc=None, flag=False)
    assert len(statements) == 2 and len(commits) == 1
    with db.engine.connect() as c:
        expected = [tuple(c.execute(select(thing).where(thing.c.id == i)).one()) for i in (1, 2)]
    with dbapi(db.engine) as conn:
        got = [tuple(BY_ID.first(conn, id=i)) for i in (1, 2)]
        assert BY_ID.first(conn, id=3) is None
        row = BY_ID.first(conn, id=1)
    assert got == expected
    assert (row.name, row.doc, row.flag) == ("x", {"k": [1, "v"]}, True)
    assert row.at.replace(tzinfo=timezone.utc) == AT


def test_a_failed_unit_is_rolled_back(db):
    with pytest.raises(RuntimeError):
        with dbapi(db.engine, commit=True) as conn:
            INSERT.run(conn, id=1, name="x", at=AT, doc=None, flag=True)
            raise RuntimeError("fails before the commit")
    with dbapi(db.engine) as conn:
        assert BY_ID.first(conn, id=1) is None


def test_one_connection_is_shared_by_the_blocks_inside(db):
    checkouts = []
    event.listen(db.engine.pool, "checkout", lambda *a: checkouts.append(1))
    with one_connection():
        with dbapi(db.engine) as first:
            assert BY_ID.first(first, id=1) is None
        with dbapi(db.engine, commit=True) as second:
            INSERT.run(second, id=1, name="x", at=AT, doc=None, flag=True)
        assert second is first
        with one_connection():  # a request served in process inside another has its own
            with dbapi(db.engine) as inner:
                assert inner is not first
    assert len(checkouts) == 2
    with dbapi(db.engine) as conn:
        assert BY_ID.first(conn, id=1).name == "x"  # committed by the block that asked to


def test_a_failed_block_in_one_connection_rolls_back_and_the_next_starts_afresh(db):
    with one_connection():
        with pytest.raises(RuntimeError):
            with dbapi(db.engine) as failed:
                INSERT.run(failed, id=1, name="x", at=AT, doc=None, flag=True)
                raise RuntimeError("fails before the commit")
        with dbapi(db.engine, commit=True) as fresh:
            assert fresh is not failed
            assert BY_ID.first(fresh, id=1) is None
            INSERT.run(fresh, id=2, name="y", at=AT, doc=None, flag=True)
        with dbapi(db.engine) as uncommitted:
            INSERT.run(uncommitted, id=3, name="z", at=AT, doc=None, flag=True)
    with dbapi(db.engine) as conn:  # the scope's end returns its connection: what no block committed is gone
        assert [BY_ID.first(conn, id=i) is not None for i in (1, 2, 3)] == [False, True, False]


def test_postgresql_pings_only_a_connection_that_sat_idle(monkeypatch):
    """persistence.db: no ``SELECT 1`` for a connection in use a moment ago; one that sat idle is pinged, and
    when the server dropped it meanwhile the pool connects afresh instead of failing the call."""
    import sqlalchemy as sa

    from persistence import db as db_module

    for url in _postgres_database():
        database = Database(url)

        def pid():
            with dbapi(database.engine, commit=True) as c:
                cur = c.raw.cursor()
                cur.execute("SELECT pg_backend_pid()")
                return cur.fetchone()[0]

        first = pid()
        monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
        assert pid() == first  # in use a moment ago: handed out as it is
        killer = sa.create_engine(url)
        with killer.connect() as k:
            k.execute(sa.text(f"SELECT pg_terminate_backend({first})"))
            k.commit()
        killer.dispose()
        monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0)
        assert pid() != first  # idle: pinged, found dead, replaced
        database.dispose()
