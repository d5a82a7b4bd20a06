"""Database plumbing shared by both roles: the declarative base, engines, sessions, migrations.

SQLite is the embedded default (a file in the data directory); PostgreSQL is the production
database. Several gunicorn workers and hosts share one database, so no state lives only in one
process's memory. The schema is owned by Alembic (``esx/migrations``); :func:`migrate` brings a
database to the head revision and is what ``esx init`` and the tests call.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{Path(data_dir).resolve() / 'esx.sqlite3'}"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            # Overwrite deleted content: a key value replaced by its sealed form leaves no copy in a free page.
            cur.execute("PRAGMA secure_delete=ON")
            cur.close()

        return engine
    engine = create_engine(url)
    _ping_idle_connections(engine)
    return engine


# A pooled connection that was in use less than this long ago is handed out without a ping.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_idle_connections(engine: Engine) -> None:
    """Pre-ping (``SELECT 1``) a pooled connection only when it sat idle in the pool for
    ``PING_AFTER_IDLE_SECONDS``; a failed ping makes the pool connect afresh, as ``pool_pre_ping`` does.

    Why: ``pool_pre_ping`` costs a round trip at every checkout, one of the 8 of a served GetEIS (one connection
    per call). A connection dropped while idle (a server restart, an idle timeout, a failover) is still caught
    before it is used. What is given up: a connection that a request returned less than a second ago is not
    checked, so a database restart in that second fails the calls that were using it then (at most one per
    pooled connection: the failed connection is rolled back, invalidated by the pool on its return, and
    replaced), where pre-ping would have caught some of them."""

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_conn, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn, record, _proxy):
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return  # a new connection, or one in use a moment ago
        try:
            cur = dbapi_conn.cursor()
            try:
                cur.execute("SELECT 1")
            finally:
                cur.close()
            dbapi_conn.rollback()  # no transaction left open by the ping
        except Exception as exc:
            log.info("a pooled database connection failed its ping (%s): connecting afresh", exc)
            raise DisconnectionError() from exc


def migrate(url: str) -> None:
    """Upgrade the database at ``url`` to the newest schema revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")


_AFTER_COMMIT = "esx.after_commit"


def after_commit(s: Session, hook: Callable[[], None]) -> None:
    """Run ``hook`` once the unit of work ``s`` (a :meth:`Database.session`) has committed; never when it rolls
    back. For what must follow the commit and must not be part of it, e.g. ringing a worker's doorbell: a worker
    woken before the commit would not see the work yet."""
    hooks = s.info.setdefault(_AFTER_COMMIT, [])
    if hook not in hooks:
        hooks.append(hook)


class Database:
    """An engine and its session factory."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on any exception."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        for hook in session.info.pop(_AFTER_COMMIT, ()):
            try:
                hook()
            except Exception:  # a hook is best effort (a doorbell): the commit stands
                log.exception("after-commit hook failed")

    def dispose(self) -> None:
        self.engine.dispose()
