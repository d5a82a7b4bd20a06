"""Tables of the SM-DP's profile warehouse: profile types, import batches and the stock of profiles.

- ``profile_type``: the ``ProfileType`` an MNO names in ES2-DownloadProfile, with its profile
  template (the DER of a TCA SAIP package, personalised per profile by ``ota.saip``). Names
  are unique per SM-DP; each type belongs to one MNO, and an MNO may only use its own.
- ``profile_batch``: one import of personalisation data (``esx smdp import-profiles``).
- ``stock_profile``: one profile the SM-DP can download, keyed by its ICCID: the public values
  (IMSI, MSISDN) in clear, the secrets (Ki, OPc, PINs, PUKs, ADM1) sealed by
  ``keys.secretbox.SecretBox`` (AES-256-GCM, nonce ‖ ciphertext ‖ tag in one column, the
  ICCID as associated data; the key lives in the data directory, never here). Its life
  (available → reserved → downloading → installed, or released back to available) is the table
  at the top of ``smdp_core.warehouse``.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from persistence.db import Base


class ProfileType(Base):
    __tablename__ = "profile_type"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)  # ES2 ProfileType, unique per SM-DP
    mno_id: Mapped[str] = mapped_column(String(64), index=True)  # the MNO (OID) that owns the type
    template: Mapped[bytes] = mapped_column(LargeBinary)  # DER of the SAIP profile package
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProfileBatch(Base):
    __tablename__ = "profile_batch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    profile_type_id: Mapped[int] = mapped_column(ForeignKey("profile_type.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    count: Mapped[int] = mapped_column(Integer)


class StockProfile(Base):
    __tablename__ = "stock_profile"
    # Reservation picks "the first available profile of a type": this index serves that query.
    __table_args__ = (Index("ix_stock_profile_type_state", "profile_type_id", "state"),)

    iccid: Mapped[str] = mapped_column(String(20), primary_key=True)
    profile_type_id: Mapped[int] = mapped_column(ForeignKey("profile_type.id"))
    batch_id: Mapped[int] = mapped_column(ForeignKey("profile_batch.id"), index=True)
    imsi: Mapped[str] = mapped_column(String(15))
    msisdn: Mapped[str | None] = mapped_column(String(15))
    secrets: Mapped[bytes] = mapped_column(LargeBinary)  # SecretBox.seal(iccid, ...): nonce ‖ ciphertext ‖ tag
    state: Mapped[str] = mapped_column(String(12))  # warehouse.StockState value
    eid: Mapped[str | None] = mapped_column(String(64), index=True)  # the target eUICC, from reservation on
    # The SM-DP download transaction that holds the profile (no foreign key: that table is the
    # download flow's, and a released profile outlives it).
    download_id: Mapped[int | None] = mapped_column(Integer, index=True)
    state_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    releases: Mapped[int] = mapped_column(Integer, default=0)  # times released back to available after a failure
