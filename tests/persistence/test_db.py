"""The unit of work: after-commit hooks run once the work is committed, never when it rolls back."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from persistence.db import Database, after_commit


def test_after_commit_runs_after_the_commit_only(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    seen = []
    with db.session() as s:
        s.execute(text("CREATE TABLE t (x INTEGER)"))
        s.execute(text("INSERT INTO t VALUES (1)"))
        ring = lambda: seen.append(db.engine.connect().execute(text("SELECT count(*) FROM t")).scalar())  # noqa: E731
        after_commit(s, ring)
        after_commit(s, ring)  # the same hook twice in one unit of work runs once
        assert seen == []
    assert seen == [1]  # it ran after the commit: another connection sees the row
    with pytest.raises(RuntimeError):
        with db.session() as s:
            s.execute(text("INSERT INTO t VALUES (2)"))
            after_commit(s, lambda: seen.append("rolled back"))
            raise RuntimeError("the state change fails")
    assert seen == [1]
    db.dispose()


def test_a_failing_hook_does_not_undo_the_commit(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    with db.session() as s:
        s.execute(text("CREATE TABLE t (x INTEGER)"))
        after_commit(s, lambda: 1 / 0)
    with db.session() as s:
        assert s.execute(text("SELECT count(*) FROM t")).scalar() == 0
    db.dispose()
