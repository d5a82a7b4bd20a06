"""Roles of the M2M eSIM architecture, the authenticated caller, and who may manage which profile.

Every party esx talks to has one role (SGP.02 section 2: MNO, SM-DP, SM-SR, EUM, and, from v4, the M2M Service
Provider that owns eUICCs). The entity registry (persistence.entities) stores it; the SOAP adapters turn an
authenticated request into a :class:`Caller`; the cores decide with :func:`may_manage`.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sgp02.eis import ProfileInfo


class Role(str, Enum):
    MNO = "mno"
    SMDP = "smdp"
    SMSR = "smsr"
    EUM = "eum"
    OWNER = "owner"


@dataclass(frozen=True)
class Caller:
    """The authenticated requester of a function."""

    oid: str
    role: str  # Role value
    # For an SM-DP: the MNOs that have named it as acting for them (persistence.entities.MnoSmdp), as they were when
    # its request was accepted.
    mnos: frozenset[str] = frozenset()



def may_manage(caller: Caller, profile: ProfileInfo) -> bool:
    """May ``caller`` see and act on ``profile`` (a ProfileInfo, or anything with its ``mno_id`` and ``smdp_id``,
    e.g. the SM-SR's profile row)? The rule is in smsr_core.registry's module doc."""
    if caller.role == "mno":
        return profile.mno_id == caller.oid
    if caller.role == "smdp":
        return profile.smdp_id == caller.oid or profile.mno_id in caller.mnos
    return caller.role == "smsr"  # the SM-SR's own automatic operations
