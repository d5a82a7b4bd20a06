"""The SM-DP's asynchronous operations: one row per accepted ES2 request (smdp_core.download).

``smdp_operation`` holds an ES2-DownloadProfile (or a relayed ES2-Enable/Disable/DeleteProfile) from
the moment the MNO gets its ``202 Accepted`` until its callback is in the outbox. Everything a
worker needs to carry on after a crash is here: the step, the ES3 request awaited (its MessageID,
fixed before it is sent, so a resend is a replay the SM-SR recognises), the callback once it came,
and the download's secrets (ephemeral key, ISD-P keyset, SCP03t session), sealed with the SM-DP's
data-directory key (keys.secretbox.SecretBox).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from persistence.db import Base


class SmdpOperation(Base):
    __tablename__ = "smdp_operation"
    __table_args__ = (
        UniqueConstraint("requester_id", "message_id", name="uq_smdp_operation_message_id"),
        UniqueConstraint("requester_id", "function_call_id", name="uq_smdp_operation_function_call_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    function: Mapped[str] = mapped_column(String(32))  # "DownloadProfile" | "EnableProfile" | ...
    requester_id: Mapped[str] = mapped_column(String(64))  # the MNO
    eid: Mapped[str] = mapped_column(String(64), index=True)
    smsr_id: Mapped[str] = mapped_column(String(64))
    iccid: Mapped[str | None] = mapped_column(String(24))
    profile_type: Mapped[str | None] = mapped_column(String(200))
    enable: Mapped[bool] = mapped_column(Boolean, default=False)
    message_id: Mapped[str | None] = mapped_column(String(400))
    function_call_id: Mapped[str | None] = mapped_column(String(400))
    reply_to: Mapped[str | None] = mapped_column(String(1000))
    accepted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # active -> done; cleaning is "active" with a step of the cleanup (see download.py)
    state: Mapped[str] = mapped_column(String(12), index=True)
    step: Mapped[str | None] = mapped_column(String(24))
    phase: Mapped[str | None] = mapped_column(String(8))  # "send" | "await"
    awaiting_message_id: Mapped[str | None] = mapped_column(String(400), index=True)
    callback: Mapped[dict | None] = mapped_column(JSON)  # the awaited ES3 callback, once it came
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    isd_p_aid: Mapped[str | None] = mapped_column(String(32))
    progress: Mapped[dict] = mapped_column(JSON, default=dict)  # non-secret: curve, challenge, segments sent
    secrets: Mapped[bytes | None] = mapped_column(LargeBinary)  # SecretBox-sealed JSON
    failure: Mapped[dict | None] = mapped_column(JSON)  # what the callback will report once cleanup is over
    result_status: Mapped[str | None] = mapped_column(String(24))
    result_subject: Mapped[str | None] = mapped_column(String(16))
    result_reason: Mapped[str | None] = mapped_column(String(16))
    result_message: Mapped[str | None] = mapped_column(Text)
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
