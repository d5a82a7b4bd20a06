"""The outbox table: what one party owes another (callbacks, notifications), committed with the state change that
owes it and delivered from here, with retries (esx.outbox delivers). Shared by both roles (``sender_role``).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from persistence.db import Base


class OutboxMessage(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(16))  # "callback" | "notification"
    wsdl: Mapped[str] = mapped_column(String(64))  # the receiver's WSDL, e.g. "ES4Mno.wsdl"
    operation: Mapped[str] = mapped_column(String(64))  # its operation, e.g. "ES4-EnableProfileCallback"
    sender_role: Mapped[str] = mapped_column(String(8))
    target_oid: Mapped[str] = mapped_column(String(64), index=True)
    address: Mapped[str | None] = mapped_column(String(1000))  # wsa:ReplyTo, else the entity's endpoint
    message_id: Mapped[str] = mapped_column(String(400))
    relates_to: Mapped[str | None] = mapped_column(String(400))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    operation_id: Mapped[int | None] = mapped_column(Integer, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
