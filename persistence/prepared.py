"""Hot-path SQL without SQLAlchemy's per-execution machinery: a Core statement compiled once per dialect and run
on the pooled DBAPI connection.

Why: a served GetEIS runs about six small indexed statements. SQLAlchemy's ``Connection.execute`` costs
~50-100 us of Python per statement even with its compiled cache (cache key, execution context, result
metadata), several times what SQLite itself spends; the ORM costs more again (BENCHMARKS.md, issue 10). Here
the SQL text, the bind order and the type processors (SQLite's DATETIME strings, JSON text, booleans) are
computed once from SQLAlchemy's own compiler, so a row reads exactly as ``Connection.execute`` would return it.

Rules this file keeps:
- only simple statements whose parameters are named ``bindparam`` s (SELECT, UPDATE) or column keys (INSERT): no
  ``limit()``/``offset()`` (SQLAlchemy makes those anonymous bind parameters), no literal values;
- a statement with a RETURNING clause reads its rows as a SELECT does (:meth:`Prepared.all`);
- the engine's ``before_cursor_execute``/``after_cursor_execute`` and ``commit`` listeners still see every
  statement and commit (the benchmarks count them with those; the connection argument is None); nothing else
  of SQLAlchemy's event system is promised;
- a connection that raised is rolled back before it goes back to the pool; the ping of idle connections (PostgreSQL, persistence.db)
  and reset-on-return still apply, since connections come from ``Engine.raw_connection``;
- inside :func:`one_connection` (one served request: esx.binding.soap.dispatch), every :func:`dbapi` block on that
  engine uses the same connection, checked out at its first use and returned at the end. A block's ``commit``
  commits what the connection did so far (on PostgreSQL the request's reads and its call-audit row are one
  transaction). A block that raised rolls back and gives the connection back; the next block checks out a fresh
  one. A nested :func:`one_connection` (a request this process serves to itself, in process) has its own.
  On PostgreSQL the scope's transaction stays open from its first read to the block that commits (or to the end
  of the scope): "idle in transaction" while a handler works in its own ORM sessions. It holds no row locks, and
  under READ COMMITTED no snapshot beyond each statement.

Pinned to the SQLAlchemy release in setup.cfg: it reads three compiler attributes that are not public API (``_bind_processors``, ``_result_columns``, ``_cached_result_processor``); tests/persistence/test_prepared.py catches a release that changes them.
"""
from __future__ import annotations

from collections import namedtuple
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator

from sqlalchemy.engine import Engine
from sqlalchemy.sql import ClauseElement


class _Compiled:
    __slots__ = ("sql", "names", "positional", "binds", "row", "processors", "converted")

    def __init__(self, stmt: ClauseElement, dialect, column_keys: list[str] | None) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=column_keys)
        self.sql = compiled.string
        self.positional = compiled.positional
        self.names = list(compiled.positiontup) if compiled.positional else list(compiled.binds)
        procs = compiled._bind_processors
        self.binds = [(name, procs.get(name)) for name in self.names]
        if compiled._result_columns:  # a SELECT, or an INSERT/UPDATE ... RETURNING
            cols = [rc[0] for rc in compiled._result_columns]  # keyname per result column, in order
            self.row = namedtuple("Row", cols, rename=True)
            self.processors = [rc[3]._cached_result_processor(dialect, None) for rc in compiled._result_columns]
            # only the columns that have a processor are touched per row (most are plain str/int)
            self.converted = [(i, p) for i, p in enumerate(self.processors) if p is not None]
        else:
            self.row = self.processors = self.converted = None


class Prepared:
    """One statement; :meth:`all`, :meth:`first` and :meth:`run` take the DBAPI connection of :func:`dbapi`."""

    def __init__(self, stmt: ClauseElement, column_keys: list[str] | None = None) -> None:
        self.stmt = stmt
        self.column_keys = column_keys
        self._by_dialect: dict[str, _Compiled] = {}

    def _for(self, engine: Engine) -> _Compiled:
        c = self._by_dialect.get(engine.dialect.name)
        if c is None:
            c = self._by_dialect[engine.dialect.name] = _Compiled(self.stmt, engine.dialect, self.column_keys)
        return c

    def _execute(self, conn: "DbapiConnection", params: dict[str, Any]):
        c = self._for(conn.engine)
        values = [proc(params[name]) if proc else params[name] for name, proc in c.binds]
        args = tuple(values) if c.positional else dict(zip(c.names, values))
        cursor = conn.cursor
        dispatch = conn.engine.dispatch
        if dispatch.before_cursor_execute:
            for fn in dispatch.before_cursor_execute:
                fn(None, cursor, c.sql, args, None, False)
        cursor.execute(c.sql, args)
        if dispatch.after_cursor_execute:
            for fn in dispatch.after_cursor_execute:
                fn(None, cursor, c.sql, args, None, False)
        return c

    def all(self, conn: "DbapiConnection", **params) -> list:
        c = self._execute(conn, params)
        make, converted = c.row._make, c.converted
        rows = conn.cursor.fetchall()
        if not converted:
            return [make(r) for r in rows]
        out = []
        for r in rows:
            values = list(r)
            for i, proc in converted:
                values[i] = proc(values[i])
            out.append(make(values))
        return out

    def first(self, conn: "DbapiConnection", **params):
        rows = self.all(conn, **params)
        return rows[0] if rows else None

    def run(self, conn: "DbapiConnection", **params) -> None:
        self._execute(conn, params)


class DbapiConnection:
    __slots__ = ("engine", "raw", "cursor")

    def __init__(self, engine: Engine, raw) -> None:
        self.engine, self.raw, self.cursor = engine, raw, raw.cursor()


class _Shared:
    """The connections of one :func:`one_connection` scope, by engine (checked out at first use)."""

    __slots__ = ("by_engine",)

    def __init__(self) -> None:
        self.by_engine: dict[int, DbapiConnection] = {}


_scope: ContextVar[_Shared | None] = ContextVar("persistence.prepared.scope", default=None)


@contextmanager
def one_connection() -> Iterator[None]:
    """Every :func:`dbapi` block inside shares one pooled connection per engine (see the module doc)."""
    shared = _Shared()
    token = _scope.set(shared)
    try:
        yield
    finally:
        _scope.reset(token)
        for conn in shared.by_engine.values():
            conn.raw.close()  # back to the pool, which rolls back whatever was not committed


@contextmanager
def dbapi(engine: Engine, *, commit: bool = False) -> Iterator[DbapiConnection]:
    """A pooled DBAPI connection for :class:`Prepared` statements; with ``commit``, committed on success.
    Rolled back on any exception (and, by the pool, on return). Inside :func:`one_connection`, the scope's."""
    shared = _scope.get()
    if shared is not None:
        yield from _shared_block(shared, engine, commit)
        return
    raw = engine.raw_connection()
    try:
        conn = DbapiConnection(engine, raw)
        yield conn
        if commit:
            raw.commit()
            for fn in engine.dispatch.commit:
                fn(None)
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()


def _shared_block(shared: _Shared, engine: Engine, commit: bool) -> Iterator[DbapiConnection]:
    conn = shared.by_engine.get(id(engine))
    if conn is None:
        conn = shared.by_engine[id(engine)] = DbapiConnection(engine, engine.raw_connection())
    try:
        yield conn
        if commit:
            conn.raw.commit()
            for fn in engine.dispatch.commit:
                fn(None)
    except BaseException:
        del shared.by_engine[id(engine)]  # the next block starts afresh on another connection
        try:
            conn.raw.rollback()
        finally:
            conn.raw.close()
        raise
