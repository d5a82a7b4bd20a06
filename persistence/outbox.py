"""The outbox table: what one party owes another (callbacks, notifications), committed with the state change that
owes it and delivered from here, with retries (esx.outbox delivers). Shared by both roles (``sender_role``).

A row holds a domain event (``sgp02.events``): its type and JSON payload, for one recipient over one channel.
It is rendered for that channel only when it is delivered. What a delivery must keep across retries is fixed when
the row is written: its ``message_id`` (a redelivery after a crash carries the same one), and the name it will be
delivered as (``contract``/``operation``, for ``esx outbox show`` and for whoever reads the table). Rows written
before events (revision 0007) hold the rendered SOAP ``body`` instead, and are sent as they are.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (DateTime, Integer, LargeBinary, String, Text, bindparam, insert, literal_column, null, or_,
                        select, update)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from persistence.db import Base
from persistence.prepared import Prepared, dbapi
from sgp02.events import Event, OperationFinished, PeerRequested, ProfileStateChanged, SmsrChanged, event_type, to_json


class OutboxMessage(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(16))  # "callback" | "notification" | "request" (ES7, to a peer SM-SR)
    wsdl: Mapped[str] = mapped_column(String(64))  # the receiver's contract, e.g. "ES4Mno.wsdl"
    operation: Mapped[str] = mapped_column(String(64))  # delivered as, e.g. "ES4-EnableProfileCallback"
    sender_role: Mapped[str] = mapped_column(String(8))
    target_oid: Mapped[str] = mapped_column(String(64), index=True)
    address: Mapped[str | None] = mapped_column(String(1000))  # wsa:ReplyTo, else the entity's endpoint
    message_id: Mapped[str] = mapped_column(String(400))
    relates_to: Mapped[str | None] = mapped_column(String(400))
    body: Mapped[bytes | None] = mapped_column(LargeBinary)  # rows written before 0007 only: the rendered SOAP body
    event_type: Mapped[str | None] = mapped_column(String(64))  # sgp02.events class name
    payload: Mapped[str | None] = mapped_column(Text)  # sgp02.events.to_json
    channel: Mapped[str | None] = mapped_column(String(16))  # how it is rendered at delivery, e.g. "soap-v3"
    interface: Mapped[str | None] = mapped_column(String(8))  # the SGP.02 interface it reaches the recipient over
    operation_id: Mapped[int | None] = mapped_column(Integer, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    last_error: Mapped[str | None] = mapped_column(Text)


def emit(s: Session, event: Event, *, sender_role: str, recipient: str, interface: str, channel: str,
         message_id: str, contract: str, operation: str, operation_id: int | None = None,
         now: datetime | None = None) -> None:
    """Owe ``event`` to ``recipient`` (an OID) over ``interface``, to be rendered for ``channel`` when delivered.

    The row is written in the caller's session's transaction (a Core INSERT, at once: nobody reads the row back in
    that unit of work): it commits with the state change that raised the event, or not at all.
    ``message_id`` is the delivery's identifier (for SOAP the wsa:MessageID), ``contract``/``operation`` the name it
    will be delivered as; the channel (esx.outbox) chooses both. A callback goes to the request's ReplyTo, if any,
    and relates to the request's MessageID. A request (an SM-SR's ES7 request to another) goes to the recipient's
    registered address; its callback will relate to ``message_id``."""
    now = now or datetime.now(timezone.utc)
    is_callback = isinstance(event, OperationFinished)
    if is_callback:
        kind = "callback"
    elif isinstance(event, (ProfileStateChanged, SmsrChanged)):
        kind = "notification"
    elif isinstance(event, PeerRequested):
        kind = "request"
    else:
        raise TypeError(f"{type(event).__name__} is not a domain event")
    row = dict(
        created_at=now, kind=kind, wsdl=contract, operation=operation,
        sender_role=sender_role, target_oid=recipient, address=event.reply_to if is_callback else None,
        message_id=message_id, relates_to=event.message_id if is_callback else None, body=None,
        event_type=event_type(event), payload=to_json(event), channel=channel, interface=interface,
        operation_id=operation_id, attempts=0, next_attempt_at=now, lease_until=None, delivered_at=None,
        last_error=None,
    )
    with s.no_autoflush:  # the INSERT needs nothing the session holds pending: that is written later, in one flush
        s.execute(_INSERT, row)

_INSERT = insert(OutboxMessage.__table__)  # built once: its cache key is memoised


# -- delivery (esx.outbox.deliver_due): the rows' lease and their outcomes, as prepared statements ---------------------

_T = OutboxMessage.__table__
_FREE = or_(_T.c.lease_until.is_(None), _T.c.lease_until < bindparam("now"))
# The due rows of one sender, oldest first, at most ``limit``, leased and read in one UPDATE ... RETURNING (the
# conditions again outside the subquery: between a worker's SELECT and its UPDATE another may have taken a row).
_LEASE_DUE = Prepared(
    update(_T).where(
        _T.c.id.in_(select(_T.c.id).where(
            _T.c.sender_role == bindparam("role"), _T.c.delivered_at.is_(None), _T.c.next_attempt_at <= bindparam("now"),
            _FREE).order_by(_T.c.id).limit(bindparam("limit")).offset(bindparam("offset")).scalar_subquery()),
        _T.c.delivered_at.is_(None), _FREE)
    .values(lease_until=bindparam("until")).returning(*_T.c))
_DELIVERED = Prepared(update(_T).where(_T.c.id == bindparam("row_id")).values(
    delivered_at=bindparam("at"), attempts=_T.c.attempts + literal_column("1"), lease_until=null()))
_NOT_DELIVERED = Prepared(update(_T).where(_T.c.id == bindparam("row_id")).values(
    attempts=bindparam("attempts"), lease_until=null(), last_error=bindparam("error"),
    next_attempt_at=bindparam("retry_at")))


def lease_due(engine: Engine, sender_role: str, now: datetime, until: datetime, limit: int) -> list:
    """Lease up to ``limit`` due rows of ``sender_role`` until ``until``, in one committed statement: the rows (named
    tuples with the columns of :class:`OutboxMessage`), oldest first."""
    with dbapi(engine, commit=True) as c:
        rows = _LEASE_DUE.all(c, role=sender_role, now=now, until=until, limit=limit, offset=0)
    return sorted(rows, key=lambda r: r.id)  # RETURNING promises no order


def record_outcomes(engine: Engine, delivered: list[int], failed: list[tuple[int, int, str, datetime]],
                    at: datetime) -> None:
    """In one transaction: ``delivered`` rows done at ``at``; each ``failed`` (id, attempts, error, next attempt) row
    released to be tried again."""
    with dbapi(engine, commit=True) as c:
        for row_id in delivered:
            _DELIVERED.run(c, row_id=row_id, at=at)
        for row_id, attempts, error, retry_at in failed:
            _NOT_DELIVERED.run(c, row_id=row_id, attempts=attempts, error=error, retry_at=retry_at)
