"""The one persisted step engine: every multi-step flow of esx is a step table run by it.

Theory of operation
-------------------
A *flow* is a step table (:class:`Flow`): for each step, what runs when the step is due and which step follows on
success. The table is the program: a flow's module shows its table first, then the functions the table names. Two
flows run on the engine today: the SM-SR's card operations (smsr_core.platform) and the SM-DP's downloads and
relayed functions (smdp_core.download); SM-SR change and owner campaigns are more tables, not more engines.

Every flow keeps its operations in one table whose rows carry the engine's columns (:class:`EngineRow`): who asked
(requester, MessageID, FunctionCallIdentifier, ReplyTo), when it was accepted and when it expires, where it stands
(state, step, next attempt, lease), and how it ended (status, Subject/Reason, message). The life of a row:

==========================  =========================================  =======================================
row                         event                                      engine function
==========================  =========================================  =======================================
(none)                      a request arrives                          :func:`accept_once`: a new row, or the
                                                                       one the requester's MessageID or
                                                                       FunctionCallIdentifier already made
not done, due, no lease     a worker looks for work                    :func:`due` lists it, :func:`lease`
                                                                       (or :class:`Leaser`) takes it (one
                                                                       worker only), the flow runs the step
                                                                       the table names
leased                      the step sent something and waits          :func:`wait`: next attempt = deadline,
                                                                       lease released
leased                      the peer was away                          :func:`wait` until a retry time
waiting                     the answer came                            the flow handles it in the
                                                                       transaction that stores it
not done                    ``expires_at`` passed                      :func:`expired` lists it
any                         the flow ends it                           :func:`record_result`, in the same
                                                                       transaction as the domain event
==========================  =========================================  =======================================

The rules the engine keeps:

- *Accept once.* A replay (the same requester and MessageID, or the same FunctionCallIdentifier) finds the row in
  force and runs nothing again (the unique constraints make a race between two workers fail, not duplicate).
- *One worker per attempt.* A row is run only under a lease taken with a conditional UPDATE, so several workers
  on one PostgreSQL never run the same attempt. A worker killed mid-step either rolls back (a step that runs in the
  transaction of its lease) or leaves a committed lease that simply runs out (a step that calls a peer after it).
- *No transaction across the wire.* A step that calls a peer commits what it needs first (e.g. the MessageID of
  the request it sends), calls, then records the outcome in a new transaction; a peer may share the database
  (SQLite's writer lock).
- *The state change and what it owes commit together.* Finishing a row and the domain event it owes (a callback,
  a notification) are one transaction (persistence.outbox).
- *Nothing is lost, nothing stops the others.* A step that raises is logged and its row waits for its lease to run
  out; a row that stays broken ends by expiry, so every requester gets an answer.
- *Prompt.* After a transaction that makes work due at once (a request accepted, an answer stored), a flow calls
  its :class:`Doorbell`, so a worker runs the next step now instead of at its next poll (:func:`due_now`: after the
  commit of the unit of work). Polling stays the safety net: a lost ring costs one
  poll interval, never an operation.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, TypeVar

from sqlalchemy import DateTime, Integer, String, Text, bindparam, insert, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from persistence.db import after_commit
from persistence.prepared import Prepared, dbapi
from sgp02.codes import FunctionFailed, Status

log = logging.getLogger(__name__)

ACTIVE, DONE = "active", "done"


class EngineRow:
    """The columns every operation table of the engine has (mixed into each flow's mapped table)."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    requester_id: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str | None] = mapped_column(String(400))
    function_call_id: Mapped[str | None] = mapped_column(String(400))
    reply_to: Mapped[str | None] = mapped_column(String(1000))
    accepted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(12), index=True)
    step: Mapped[str | None] = mapped_column(String(24))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    result_status: Mapped[str | None] = mapped_column(String(24))
    result_subject: Mapped[str | None] = mapped_column(String(16))
    result_reason: Mapped[str | None] = mapped_column(String(16))
    result_message: Mapped[str | None] = mapped_column(Text)
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


Row = TypeVar("Row", bound=EngineRow)


# -- the step table ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One row of a step table: ``run`` is the flow's method that runs when the step is due; ``answer`` the one that
    handles what the step waits for (None: the step waits for nothing); ``then`` the step that follows on success
    (None: the flow ends); ``does`` what the step exchanges, as the table's reader needs it."""

    name: str
    does: str
    run: str
    answer: str | None = None
    then: str | None = None


class Flow:
    """A step table. ``Flow.bind(obj)`` gives the callables the table names on ``obj`` (the flow's implementation):
    a step whose method is missing is a defect found when the flow is built, not when a row reaches it."""

    def __init__(self, name: str, steps: Iterable[Step]) -> None:
        self.name = name
        self.steps = {s.name: s for s in steps}
        for s in self.steps.values():
            if s.then is not None and s.then not in self.steps:
                raise ValueError(f"flow {name}: step {s.name} goes to unknown step {s.then}")

    def __getitem__(self, step: str) -> Step:
        return self.steps[step]

    def __contains__(self, step: str) -> bool:
        return step in self.steps

    def check(self, impl: object) -> None:
        """Every method the table names exists on ``impl``."""
        for s in self.steps.values():
            for method in (s.run, s.answer):
                if method is not None and not callable(getattr(impl, method, None)):
                    raise TypeError(f"flow {self.name}: step {s.name} names {method}, which "
                                    f"{type(impl).__name__} does not have")

    def runner(self, impl: object, step: str) -> Callable[..., Any]:
        return getattr(impl, self.steps[step].run)

    def answerer(self, impl: object, step: str) -> Callable[..., Any] | None:
        method = self.steps[step].answer
        return getattr(impl, method) if method else None

    def table(self) -> str:
        """The table as text (``esx`` prints it; tests compare it with the module's documentation)."""
        width = max(len(s.name) for s in self.steps.values())
        lines = [f"{s.name:<{width}}  {s.does}  ->  {s.then or 'done'}" for s in self.steps.values()]
        return "\n".join(lines)


# -- accepting ---------------------------------------------------------------------------------------------------


def accept_once(s: Session, row: Row) -> tuple[Row, bool]:
    """Add ``row``, a new asynchronous request, unless it replays one already made: same requester and the same
    MessageID or FunctionCallIdentifier. Returns ``(the row in force, True when it is row)``; a new row is flushed,
    so it has its id."""
    existing = replayed(s, row)
    if existing is not None:
        return existing, False
    s.add(row)
    s.flush()
    return row, True


def insert_new(s: Session, row: Row) -> int:
    """Write ``row`` (new, never added to a session) with one INSERT ... RETURNING id in ``s``'s transaction: its id.
    For the hot accept path: what :func:`accept_once` does with ``s.add`` and a flush, without the unit of work (about
    half a millisecond of the ORM per request). The columns the row was given are written; the others take their
    defaults. The row stays transient: read nothing back from it but its id."""
    table = type(row).__table__
    stmt = _INSERT_RETURNING_ID.get(table.name)
    if stmt is None:
        stmt = _INSERT_RETURNING_ID[table.name] = insert(table).returning(table.c.id)
    values = {c.key: row.__dict__[c.key] for c in table.columns if c.key in row.__dict__}
    row.id = s.execute(stmt, values).scalar_one()
    return row.id


_INSERT_RETURNING_ID: dict[str, Any] = {}


def replayed(s: Session, row: Row) -> Row | None:
    """The row in force that ``row`` (a new request, not added yet) replays, or None: :func:`accept_once`'s check, for
    a flow that writes a new row itself once it knows all it holds (one INSERT rather than an INSERT and an UPDATE).
    Such a flow keeps the rule: the unique constraints make a concurrent replay fail at that INSERT."""
    if not row.message_id and not row.function_call_id:
        return None
    model = type(row)
    query = _REPLAYED.get(model)
    if query is None:  # built once per model (a None parameter matches nothing: "= NULL" is never true)
        table = model.__table__
        query = _REPLAYED[model] = select(table.c.id).where(
            table.c.requester_id == bindparam("requester"),
            or_(table.c.message_id == bindparam("message_id"), table.c.function_call_id == bindparam("call_id")))
    # The id first (a plain read: a new request, the common case, loads no object), then the row when there is one.
    found = s.execute(query, {"requester": row.requester_id, "message_id": row.message_id or None,
                              "call_id": row.function_call_id or None}).scalar()
    return None if found is None else s.get(model, found)


_REPLAYED: dict[type, Any] = {}


def reuses_call_id(row: EngineRow, message_id: str | None) -> bool:
    """A request that found ``row`` in force under another MessageID: its FunctionCallIdentifier names another
    request's call (the flow answers it 1.6/3.3, sgp02.codes.call_id_reused)."""
    return bool(message_id) and row.message_id != message_id


def validity_until(received_at: datetime, requested: float | None, default: float, maximum: float) -> datetime:
    """When a request accepted at ``received_at`` expires: its ValidityPeriod (seconds), else ``default``, never
    more than ``maximum``."""
    seconds = default if requested is None else float(requested)
    return received_at + timedelta(seconds=min(seconds, maximum))


# -- leasing -----------------------------------------------------------------------------------------------------


def free(model: type, now: datetime):
    """The condition "no lease in force at ``now``" on ``model.lease_until``: the rule of :func:`due` and
    :func:`lease`, and of tables leased row by row without being flows (the SM-SR's SMS inbox)."""
    return or_(model.lease_until.is_(None), model.lease_until < now)


def due(s: Session, model: type[Row], now: datetime, *conditions, when=None, limit: int | None = None) -> list[int]:
    """Ids of the rows of ``model`` that are due and not leased (oldest first). ``when`` is the column that says
    when a row is due (default ``next_attempt_at``); ``conditions`` narrow the flow's own states."""
    when = model.next_attempt_at if when is None else when
    query = select(model.id).where(when <= now, free(model, now), *conditions).order_by(model.id)
    if limit is not None:
        query = query.limit(limit)
    return list(s.scalars(query))


def lease(s: Session, model: type[Row], row_id: int, now: datetime, seconds: float, *conditions, when=None,
          due_if=None) -> bool:
    """Take the lease of a due row for ``seconds``; False when another worker holds it or it is no longer due (the
    same conditions as :func:`due`, checked again in the UPDATE: between the two, another worker may have run
    and released it). ``due_if``: the flow's own "due" condition instead of ``when <= now`` (a row due at its next
    attempt or at its expiry, smsr_core.handover)."""
    when = model.next_attempt_at if when is None else when
    due_now_ = (when <= now) if due_if is None else due_if
    return s.execute(update(model).where(model.id == row_id, due_now_, free(model, now), *conditions)
                     .values(lease_until=now + timedelta(seconds=seconds))).rowcount == 1


class Leaser:
    """:func:`lease` for one flow's conditions, its statement built once; with ``returning``, the lease and the row in
    one statement (UPDATE ... RETURNING): the leased row, loaded into the session, or None when no lease was taken.

    A statement built per call costs SQLAlchemy its construction and its cache key (~0.2 ms of Python) before it
    runs; the steps of a flow lease rows many times a second. ``conditions`` name their values as ``bindparam`` s,
    given to each call as keyword arguments (``now`` is there already: ``bindparam("now")`` is the lease's time), under
    names that are not the table's column names (SQLAlchemy keeps those for an UPDATE's SET clause)."""

    def __init__(self, model: type[Row], *conditions, when=None, returning: bool = False) -> None:
        when = model.next_attempt_at if when is None else when
        now = bindparam("now")
        stmt = (update(model).where(model.id == bindparam("row_id"), when <= now,
                                    or_(model.lease_until.is_(None), model.lease_until < now), *conditions)
                .values(lease_until=bindparam("until")))
        if returning:
            stmt = stmt.returning(model).execution_options(populate_existing=True)
        # The session's objects are not synchronised: a step loads (or, returning, reloads) the row it leased.
        self.stmt = stmt.execution_options(synchronize_session=False)
        self.returning = returning

    def __call__(self, s: Session, row_id: int, now: datetime, seconds: float, **params):
        values = dict(params, row_id=row_id, now=now, until=now + timedelta(seconds=seconds))
        if self.returning:
            return s.scalars(self.stmt, values).first()
        return s.execute(self.stmt, values).rowcount == 1


class DueScan:
    """:func:`due` for one flow's conditions as a prepared statement (persistence.prepared: no ORM session, no
    transaction of its own on SQLite), for the per-tick scan of a worker. ``conditions`` as for :class:`Leaser`."""

    def __init__(self, model: type[Row], *conditions) -> None:
        now = bindparam("now")
        self.scan = Prepared(select(model.id).where(
            model.next_attempt_at <= now, or_(model.lease_until.is_(None), model.lease_until < now), *conditions)
            .order_by(model.id))

    def __call__(self, engine, now: datetime, **params) -> list[int]:
        with dbapi(engine) as conn:
            return [r.id for r in self.scan.all(conn, now=now, **params)]


def wait(row: EngineRow, until: datetime | None) -> None:
    """The row waits: for an answer until its deadline, or for a retry time (None: until something wakes it)."""
    row.next_attempt_at = until
    row.lease_until = None


def expired(s: Session, model: type[Row], now: datetime, *conditions) -> list[int]:
    """Ids of the rows not done whose validity period is over."""
    return list(s.scalars(select(model.id).where(model.state != DONE, model.expires_at <= now, *conditions)
                          .order_by(model.id)))


def run_leased(ids: Iterable[int], take: Callable[[int], bool], run: Callable[[int], Any],
               defect: Callable[[int], None] | None = None, what: str = "operation") -> int:
    """Run each row whose lease ``take`` gets; a step that raises is logged and handed to ``defect`` (or simply
    waits for its lease to run out): one broken row never stops the others. Returns how many ran."""
    ran = 0
    for row_id in ids:
        if not take(row_id):
            continue
        try:
            run(row_id)
        except Exception:
            log.exception("%s %s: step failed", what, row_id)
            if defect is not None:
                try:
                    defect(row_id)
                except Exception:
                    log.exception("%s %s: could not be ended after a defect", what, row_id)
            continue
        ran += 1
    return ran


# -- finishing ---------------------------------------------------------------------------------------------------


_CLAIM_END: dict[type, Any] = {}


def finish_once(s: Session, row: EngineRow) -> bool:
    """Claim the end of ``row`` for this unit of work, before it records the result and emits what it owes: a
    conditional UPDATE (the row is not done yet) that two units of work cannot both win (SQLite has one writer;
    PostgreSQL makes the second wait for the first's commit, then finds the row done). False: another worker ended it
    meanwhile (its expiry and its answer at the same moment, a lease that ran out); this one must not end it again,
    so a requester never gets two callbacks for one request. A row not written yet (refused as it is accepted) is
    nobody else's to end."""
    if row.id is None:
        return True
    claim = _CLAIM_END.get(type(row))
    if claim is None:  # a Core UPDATE of the row's table, built once per model (its cache key is memoised)
        table = type(row).__table__
        claim = _CLAIM_END[type(row)] = (update(table).where(table.c.id == bindparam("row_id"), table.c.state != bindparam("done"))
                                         .values(state=bindparam("done")))
    with s.no_autoflush:  # the claim first: what this unit of work changed in the row is written only if it wins
        won = s.execute(claim, {"row_id": row.id, "done": DONE}).rowcount == 1
    if not won:
        s.refresh(row)  # the winner's end, as committed: nothing this unit of work does to the row may overwrite it
    return won


def record_result(row: EngineRow, status: Status, failure: FunctionFailed | None, now: datetime) -> None:
    """The row is done: its outcome is recorded (the flow emits the domain event it owes in the same session)."""
    row.state, row.step, row.done_at, row.lease_until = DONE, None, now, None
    row.next_attempt_at = None
    row.result_status = status.value
    if failure is not None:
        row.result_subject, row.result_reason = failure.code.subject, failure.code.reason
        row.result_message = failure.message


def utc(dt: datetime | None) -> datetime | None:
    """SQLite gives back naive datetimes: they are UTC."""
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


# -- waking workers ----------------------------------------------------------------------------------------------


class Doorbell(Protocol):
    """Tells the workers of a flow that a row is due now (esx.doorbell rings a local socket). Best effort: a ring
    may be lost, polling is the safety net."""

    def ring(self) -> None: ...


class Silent:
    """No doorbell: workers find the work at their next poll."""

    def ring(self) -> None:
        return None


def due_now(s: Session, doorbell: Doorbell) -> None:
    """What ``s`` (a :meth:`persistence.db.Database.session`) is about to commit makes a row due at once (accepted,
    answered, moved to its next step, an eUICC freed): ``doorbell`` rings once it has committed, never before (a worker
    woken early would not see the row) and never after a rollback; a ring that fails is logged (polling is the
    safety net). Several calls in one unit of work ring once."""
    after_commit(s, doorbell.ring)
