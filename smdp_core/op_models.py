"""The SM-DP's asynchronous operations: one row per accepted ES2 request (smdp_core.download).

``smdp_operation`` holds an ES2-DownloadProfile (or a relayed ES2-Enable/Disable/DeleteProfile) from
the moment the MNO gets its ``202 Accepted`` until its callback is in the outbox. Everything a
worker needs to carry on after a crash is here: the step, the ES3 request awaited (its MessageID,
fixed before it is sent, so a resend is a replay the SM-SR recognises), the callback once it came,
and the download's secrets (ephemeral key, ISD-P keyset, SCP03t session), sealed with the SM-DP's
data-directory key (keys.secretbox.SecretBox).

The columns every operation table of the step engine has (who asked, when, where the row stands, how it ended)
come from :class:`persistence.engine.EngineRow`; the ones below are the SM-DP's own.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from persistence.db import Base
from persistence.engine import EngineRow


class SmdpOperation(EngineRow, Base):
    __tablename__ = "smdp_operation"
    __table_args__ = (
        UniqueConstraint("requester_id", "message_id", name="uq_smdp_operation_message_id"),
        UniqueConstraint("requester_id", "function_call_id", name="uq_smdp_operation_function_call_id"),
    )

    function: Mapped[str] = mapped_column(String(32))  # "DownloadProfile" | "EnableProfile" | ...
    eid: Mapped[str] = mapped_column(String(64), index=True)
    smsr_id: Mapped[str] = mapped_column(String(64))
    iccid: Mapped[str | None] = mapped_column(String(24))
    profile_type: Mapped[str | None] = mapped_column(String(200))
    enable: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # the step's phase (smdp_core.download): "send" (the ES3 request's MessageID is fixed, the request may not have
    # left yet) or "await" (the SM-SR took it; its callback is awaited until the step's deadline)
    phase: Mapped[str | None] = mapped_column(String(8))
    awaiting_message_id: Mapped[str | None] = mapped_column(String(400), index=True)
    callback: Mapped[dict | None] = mapped_column(JSON)  # an ES3 callback stored but not handled yet (a defect)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    isd_p_aid: Mapped[str | None] = mapped_column(String(32))
    progress: Mapped[dict] = mapped_column(JSON, default=dict)  # non-secret: curve, challenge, segments sent
    secrets: Mapped[bytes | None] = mapped_column(LargeBinary)  # SecretBox-sealed JSON
    failure: Mapped[dict | None] = mapped_column(JSON)  # what the callback will report once cleanup is over
