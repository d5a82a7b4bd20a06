"""Tables of the SM-SR's asynchronous machinery: operations, the SMS inbox, OTA state (the outbox is persistence.outbox).

- ``operation``: every accepted asynchronous request (and every automatic one, e.g. the audit
  queued after an unanswered command), persisted before the ``202 Accepted`` leaves. Its life is
  described by ``smsr_core.platform.CARD_OPERATION``.
- ``sms_inbox``: every SMS the SMSC delivered to us (proofs of receipt, card notifications),
  stored before the ``deliver_sm_resp`` is sent, so an acknowledged SMS is never lost.
- ``euicc_ota``: per eUICC, the SM-SR's SCP80 counter, the last card notification sequence
  number seen, the operation in flight (one at a time) and the "dirty" flag (the card may differ
  from the EIS until the next audit). Several workers write it at once: each column is written by an
  UPDATE of its own, any check in its WHERE (smsr_core.platform: _NEXT_COUNTER, _TAKE_SEQ, _MARK_DIRTY,
  _CLEAR_DIRTY, the conditional claim of ``active_operation_id``), never by flushing a row read earlier.
- ``handover_in``: at the new SM-SR of an SM-SR change, one row per ES4-PrepareSMSRChange, which then receives the
  eUICC (ES7-HandoverEUICC) and carries the change to its end; its life is ``smsr_core.handover.RECEIVE``. (At the
  current SM-SR the change is an ``operation`` row of the eUICC's queue.)
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from persistence.db import Base
from persistence.engine import EngineRow


class Operation(EngineRow, Base):
    """A card operation: the step engine's columns (persistence.engine.EngineRow: requester, MessageID, state, step,
    lease, result...) and the SM-SR's own. ``state`` is queued / held / active / done and ``step`` the row of
    smsr_core.platform.CARD_OPERATION it stands on."""

    __tablename__ = "operation"
    __table_args__ = (
        UniqueConstraint("requester_id", "message_id", name="uq_operation_message_id"),
        UniqueConstraint("requester_id", "function_call_id", name="uq_operation_function_call_id"),
    )

    eid: Mapped[str] = mapped_column(String(64), index=True)
    function: Mapped[str] = mapped_column(String(48))  # platform.Function value, e.g. "EnableProfile"
    interface: Mapped[str] = mapped_column(String(8))  # "ES3" | "ES4" | "SMSR" (automatic)
    params: Mapped[dict] = mapped_column(JSON)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    counter: Mapped[int | None] = mapped_column(BigInteger)  # SCP80 counter of the last command sent
    sent_any: Mapped[bool] = mapped_column(Boolean, default=False)
    euicc_response: Mapped[str | None] = mapped_column(Text)  # hex of the last R-APDUs
    # SMSRChange: the MessageID of the ES7-HandoverEUICC request it sent (its callback relates to it)
    awaiting_message_id: Mapped[str | None] = mapped_column(String(400), index=True)


class SmsInbox(Base):
    __tablename__ = "sms_inbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source_addr: Mapped[str] = mapped_column(String(32), index=True)
    destination_addr: Mapped[str] = mapped_column(String(32))
    user_data: Mapped[bytes] = mapped_column(LargeBinary)
    concat_ref: Mapped[int | None] = mapped_column(Integer)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    outcome: Mapped[str | None] = mapped_column(String(200))


class EuiccOta(Base):
    __tablename__ = "euicc_ota"

    eid: Mapped[str] = mapped_column(String(64), primary_key=True)
    counter: Mapped[int] = mapped_column(BigInteger, default=0)  # last SCP80 counter used towards the card
    last_notification_seq: Mapped[int] = mapped_column(Integer, default=-1)
    active_operation_id: Mapped[int | None] = mapped_column(Integer)
    dirty: Mapped[bool] = mapped_column(Boolean, default=False)


class HandoverIn(EngineRow, Base):
    """An SM-SR change as the new SM-SR runs it (smsr_core.handover): prepared by the MNO (the engine's request columns
    are those of the ES4-PrepareSMSRChange), then the eUICC handed over by ``current_smsr_id`` over ES7."""

    __tablename__ = "handover_in"
    __table_args__ = (
        UniqueConstraint("requester_id", "message_id", name="uq_handover_in_message_id"),
        UniqueConstraint("requester_id", "function_call_id", name="uq_handover_in_function_call_id"),
    )

    eid: Mapped[str] = mapped_column(String(64), index=True)
    current_smsr_id: Mapped[str] = mapped_column(String(64))  # the SM-SR that hands the eUICC over
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    # the ES7 request this row awaits the callback of (its MessageID, fixed in the outbox row that carries it)
    awaiting_message_id: Mapped[str | None] = mapped_column(String(400), index=True)
    # the current SM-SR's ES7-HandoverEUICC request: its callback ends the change there
    handover_message_id: Mapped[str | None] = mapped_column(String(400))
    handover_reply_to: Mapped[str | None] = mapped_column(String(1000))
    handover_received_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    eis: Mapped[str | None] = mapped_column(Text)  # the EIS handed over (sgp02.plain JSON), until the commit point
    progress: Mapped[dict] = mapped_column(JSON)  # the challenge, the key set's parameters, the finalising operation
    secrets: Mapped[bytes | None] = mapped_column(LargeBinary)  # sealed (keys.secretbox): the ephemeral private key
