"""POL2, the profile policy rules the SM-SR enforces (SGP.02 2.4.4; sgp02-wire.md 5.3), as pure functions.

A rule is (subject PROFILE, action ENABLE | DISABLE | DELETE, qualification Not-Allowed | Auto-Delete):

- *Not-Allowed*: the SM-SR refuses the action on the profile (8.2.3/3.8) before any command leaves. Enabling a
  profile disables the one enabled before it, so that profile's DISABLE rule counts too (smsr_core.isdp).
- *Auto-Delete* (DISABLE only, registry.validate_pol2): once the card confirms the profile is disabled, the SM-SR
  deletes it (smsr_core.isdp.on_profile_change queues the DeleteProfile).
"""
from __future__ import annotations

from collections.abc import Iterable

from sgp02 import eis as v

ENABLE, DISABLE, DELETE = "ENABLE", "DISABLE", "DELETE"
NOT_ALLOWED, AUTO_DELETE = "Not-Allowed", "Auto-Delete"


def forbids(rules: Iterable[v.Pol2Rule], action: str) -> bool:
    """POL2 says ``action`` is Not-Allowed."""
    return any(r.action == action and r.qualification == NOT_ALLOWED for r in rules)


def auto_deletes(rules: Iterable[v.Pol2Rule]) -> bool:
    """POL2 says the profile is deleted once disabled."""
    return any(r.action == DISABLE and r.qualification == AUTO_DELETE for r in rules)
