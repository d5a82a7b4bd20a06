"""The call audit trail: every accepted call to any interface, with its outcome.

This is the service-level record (who called which function, when, with which MessageID, and
the FunctionExecutionStatus it got). The eUICC's own AuditTrail records (card operations with
their SGP.02 operation-type codes) live in ``smsr_core.models.EisAuditRecord``.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, Session, mapped_column

from persistence.db import Base
from persistence.prepared import DbapiConnection, Prepared


class CallRecord(Base):
    __tablename__ = "call_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    function: Mapped[str] = mapped_column(String(64), index=True)
    requester_id: Mapped[str | None] = mapped_column(String(64), index=True)
    message_id: Mapped[str | None] = mapped_column(String(400))
    function_call_id: Mapped[str | None] = mapped_column(String(400))
    eid: Mapped[str | None] = mapped_column(String(64), index=True)
    iccid: Mapped[str | None] = mapped_column(String(24))
    status: Mapped[str] = mapped_column(String(24))
    subject: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text)


def record_call(session: Session, **fields) -> CallRecord:
    fields.setdefault("at", datetime.now(timezone.utc))
    record = CallRecord(**fields)
    session.add(record)
    return record


def append_call(conn: DbapiConnection, **fields) -> None:
    """:func:`record_call` without the ORM: one prepared INSERT (persistence.prepared) in the caller's
    transaction; the hot path of every served call (esx.server.EsxRuntime.record_call)."""
    fields.setdefault("at", datetime.now(timezone.utc))
    _INSERT.run(conn, **{key: fields.get(key) for key in _FIELDS})


_FIELDS = [c.name for c in CallRecord.__table__.c if c.name != "id"]
_INSERT = Prepared(CallRecord.__table__.insert(), column_keys=_FIELDS)
