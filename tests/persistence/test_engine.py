"""The step engine's own rules, on a table of its own (no SM-SR, no SM-DP): accept once, lease once, wait,
expire, run every due row even when one step is broken, and step tables that refuse to name what does not exist."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import DateTime, MetaData, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from persistence import engine as e
from persistence.db import Database
from sgp02 import codes
from sgp02.codes import FunctionFailed, Status

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData()


class Job(e.EngineRow, Base):
    __tablename__ = "job"
    function: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


@pytest.fixture()
def sessions(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    Base.metadata.create_all(engine)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def job(requester="1.2.3", message_id=None, call_id=None, due_at=T0, expires=T0 + timedelta(hours=1)) -> Job:
    return Job(function="F", requester_id=requester, message_id=message_id, function_call_id=call_id,
               accepted_at=T0, expires_at=expires, state=e.ACTIVE, step="one", next_attempt_at=due_at, attempts=0)


def test_accept_once_finds_the_replay_by_message_id_or_function_call_id(sessions):
    with sessions.begin() as s:
        first, new = e.accept_once(s, job(message_id="m1", call_id="c1"))
        assert new and first.id == 1
    with sessions.begin() as s:
        again, new = e.accept_once(s, job(message_id="m1", call_id="c9"))
        assert (again.id, new) == (1, False)
        same_call, new = e.accept_once(s, job(message_id="m2", call_id="c1"))
        assert (same_call.id, new) == (1, False)
        assert e.reuses_call_id(same_call, "m2") and not e.reuses_call_id(again, "m1")
        other_requester, new = e.accept_once(s, job(requester="1.2.4", message_id="m1", call_id="c1"))
        assert new and other_requester.id == 2


def test_a_due_row_is_leased_by_one_worker_only(sessions):
    with sessions.begin() as s:
        e.accept_once(s, job())
        e.accept_once(s, job(due_at=T0 + timedelta(seconds=5)))
    with sessions.begin() as s:
        assert e.due(s, Job, T0) == [1]
        assert e.lease(s, Job, 1, T0, 30)
    with sessions.begin() as s:
        assert not e.lease(s, Job, 1, T0 + timedelta(seconds=10), 30)  # the first worker still holds it
        assert e.due(s, Job, T0 + timedelta(seconds=10)) == [2]
        assert e.lease(s, Job, 1, T0 + timedelta(seconds=31), 30)  # its lease ran out: another takes over


def test_wait_releases_the_lease_and_sets_the_next_attempt(sessions):
    with sessions.begin() as s:
        e.accept_once(s, job())
        assert e.lease(s, Job, 1, T0, 30)
    with sessions.begin() as s:
        e.wait(s.get(Job, 1), T0 + timedelta(seconds=3))
    with sessions.begin() as s:
        assert e.due(s, Job, T0 + timedelta(seconds=2)) == []
        assert e.due(s, Job, T0 + timedelta(seconds=3)) == [1]
        e.wait(s.get(Job, 1), None)
    with sessions.begin() as s:
        assert e.due(s, Job, T0 + timedelta(days=1)) == []  # waits for an answer, however long


def test_expired_lists_what_is_not_done_and_out_of_time(sessions):
    with sessions.begin() as s:
        e.accept_once(s, job(expires=T0 + timedelta(seconds=10)))
        done, _ = e.accept_once(s, job(expires=T0 + timedelta(seconds=10)))
        e.record_result(done, Status.EXECUTED_SUCCESS, None, T0)
        e.accept_once(s, job(expires=T0 + timedelta(seconds=60)))
    with sessions.begin() as s:
        assert e.expired(s, Job, T0 + timedelta(seconds=10)) == [1]
        assert e.expired(s, Job, T0 + timedelta(seconds=60)) == [1, 3]


def test_record_result_keeps_the_code_and_ends_the_row(sessions):
    with sessions.begin() as s:
        row, _ = e.accept_once(s, job())
        e.lease(s, Job, row.id, T0, 30)
        e.record_result(row, Status.FAILED, FunctionFailed(codes.ICCID_UNKNOWN, "no such profile"), T0)
    with sessions.begin() as s:
        row = s.get(Job, 1)
        assert (row.state, row.step, row.result_status, row.result_subject, row.result_reason, row.result_message) == (
            "done", None, "FAILED", "8.2.1", "3.9", "no such profile")
        assert row.next_attempt_at is None and row.lease_until is None
        assert e.due(s, Job, T0 + timedelta(days=1)) == []


def test_a_broken_step_does_not_stop_the_others(sessions):
    ran, defects = [], []

    def run(row_id):
        if row_id == 2:
            raise RuntimeError("a stored value this step cannot read")
        ran.append(row_id)

    assert e.run_leased([1, 2, 3], lambda i: i != 3, run, defects.append) == 1
    assert ran == [1] and defects == [2]


def test_a_flow_table_names_steps_and_methods_that_exist():
    with pytest.raises(ValueError, match="unknown step nowhere"):
        e.Flow("f", [e.Step("a", "does a", run="run_a", then="nowhere")])
    flow = e.Flow("f", [e.Step("a", "sends A", run="run_a", answer="on_a", then="b"),
                        e.Step("b", "sends B", run="run_b")])

    class Impl:
        def run_a(self): return "a"
        def on_a(self): return "answer a"

    with pytest.raises(TypeError, match="step b names run_b"):
        flow.check(Impl())
    Impl.run_b = lambda self: "b"
    flow.check(Impl())
    assert flow.runner(Impl(), "a")() == "a" and flow.answerer(Impl(), "a")() == "answer a"
    assert flow.answerer(Impl(), "b") is None
    assert flow.table() == "a  sends A  ->  b\nb  sends B  ->  done"


def test_validity_until_caps_the_requested_period():
    assert e.validity_until(T0, None, 3600, 7200) == T0 + timedelta(hours=1)
    assert e.validity_until(T0, 60, 3600, 7200) == T0 + timedelta(minutes=1)
    assert e.validity_until(T0, 10**9, 3600, 7200) == T0 + timedelta(hours=2)


def test_the_doorbell_rings_after_a_commit_that_made_a_row_due_now(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    Base.metadata.create_all(db.engine)
    rings = []

    class Bell:
        def ring(self):
            with db.session() as s:  # a woken worker sees the row: the commit came first
                rings.append(e.due(s, Job, T0))

    bell = Bell()
    with db.session() as s:
        e.accept_once(s, job(message_id="m1"))
        e.due_now(s, bell)
        e.due_now(s, bell)  # twice in one unit of work: one ring
    assert rings == [[1]]
    with db.session() as s:  # nothing made due: silent
        e.accept_once(s, job(message_id="m2", due_at=T0 + timedelta(hours=1)))
    with pytest.raises(RuntimeError), db.session() as s:  # rolled back: silent
        e.accept_once(s, job(message_id="m3"))
        e.due_now(s, bell)
        raise RuntimeError("the unit of work failed")
    assert rings == [[1]]

    class Broken:
        def ring(self):
            raise OSError("no worker listens")

    with db.session() as s:  # a doorbell that fails costs nothing but the ring
        e.accept_once(s, job(message_id="m4"))
        e.due_now(s, Broken())
    with db.session() as s:
        assert e.due(s, Job, T0) == [1, 3]
    db.dispose()


def test_a_row_is_ended_once_though_two_workers_try(tmp_path):
    """Its expiry and its answer at the same moment: the first unit of work to claim the end wins; the second is
    told, and must not end it again (no second callback)."""
    db = Database(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    Base.metadata.create_all(db.engine)
    with db.session() as s:
        e.accept_once(s, job())
    with db.session() as first, db.session() as second:
        a, b = first.get(Job, 1), second.get(Job, 1)  # both read it while it was not done
        assert e.finish_once(first, a)
        e.record_result(a, Status.EXPIRED, None, T0)
        first.commit()
        b.step = "two"  # what the loser was about to change
        assert not e.finish_once(second, b)
        assert (b.state, b.result_status, b.step) == ("done", "EXPIRED", None)  # it sees the winner's end
    with db.session() as s:
        assert s.get(Job, 1).result_status == "EXPIRED"
    with db.session() as s:
        assert e.finish_once(s, job()) is True  # not written yet: nobody else's to end
    db.dispose()


def test_the_built_once_lease_and_scan_keep_the_rule_of_lease_and_due(sessions):
    """persistence.engine.Leaser and DueScan: the statements of :func:`lease` / :func:`due`, built once, with the
    flow's own conditions as parameters; the returning lease gives the leased row, loaded."""
    from sqlalchemy import bindparam

    with sessions.begin() as s:
        e.accept_once(s, job())
        e.accept_once(s, job(due_at=T0 + timedelta(seconds=5)))
        other = job()
        other.function = "G"
        e.accept_once(s, other)
    engine = sessions.kw["bind"]
    scan = e.DueScan(Job, Job.function == bindparam("b_function"))
    take = e.Leaser(Job, Job.function == bindparam("b_function"))
    take_row = e.Leaser(Job, Job.function == bindparam("b_function"), returning=True)
    assert scan(engine, T0, b_function="F") == [1] and scan(engine, T0, b_function="G") == [3]
    with sessions.begin() as s:
        assert take(s, 1, T0, 30, b_function="F")
        assert not take(s, 3, T0, 30, b_function="F")  # not the flow's: its condition holds it back
    with sessions.begin() as s:
        assert not take(s, 1, T0 + timedelta(seconds=10), 30, b_function="F")  # leased
        assert scan(engine, T0 + timedelta(seconds=10), b_function="F") == [2]
        row = take_row(s, 2, T0 + timedelta(seconds=10), 30, b_function="F")
        assert row.id == 2 and e.utc(row.lease_until) == T0 + timedelta(seconds=40)
        assert take_row(s, 2, T0 + timedelta(seconds=11), 30, b_function="F") is None
    assert scan(engine, T0 + timedelta(seconds=31), b_function="F") == [1]  # its lease ran out


def test_insert_new_writes_the_row_once_and_replayed_finds_it_by_either_identifier(sessions):
    with sessions.begin() as s:
        new = job(message_id="m1", call_id="c1")
        assert e.replayed(s, new) is None
        row_id = e.insert_new(s, new)
        assert new.id == row_id and new not in s  # written, never added to the session
    with sessions.begin() as s:
        stored = s.get(Job, row_id)
        assert (stored.message_id, stored.function_call_id, stored.step, stored.attempts) == ("m1", "c1", "one", 0)
        assert e.replayed(s, job(message_id="m1", call_id="c2")).id == row_id
        assert e.replayed(s, job(message_id="m2", call_id="c1")).id == row_id
        assert e.replayed(s, job(message_id="m2", call_id="c2")) is None
        assert e.replayed(s, job(requester="9.9", message_id="m1", call_id="c1")) is None
        assert e.replayed(s, job(message_id=None, call_id=None)) is None  # nothing to recognise it by
