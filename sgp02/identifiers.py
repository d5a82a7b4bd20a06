"""SGP.02 identifiers and their checks: EID, ICCID, OID (sgp02-wire.md 5.1; ITU-T E.118 for the ICCID).

Only ASCII digits count as digits here (str.isdigit would take Arabic-Indic or fullwidth ones): identifiers are
ASCII, whatever Unicode calls a digit.
"""
from __future__ import annotations

import re

_EID = re.compile(r"[0-9]{32}")
_ICCID = re.compile(r"[0-9]{18,19}[0-9F]?")  # 19 or 20 digits (E.118), an odd count padded with 'F' on the wire
_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")


def luhn_digit(digits: str) -> str:
    """The Luhn check digit an ICCID ends with (ITU-T E.118), for ``digits`` without it."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return str((10 - total % 10) % 10)


def is_eid(text: str) -> bool:
    """32 ASCII digits (the EID of SGP.02 / GSMA SGP.29)."""
    return _EID.fullmatch(text) is not None


def is_iccid(text: str) -> bool:
    """19 or 20 ASCII digits, optionally 'F'-padded (ITU-T E.118)."""
    return _ICCID.fullmatch(text.upper()) is not None


def is_oid(text: str) -> bool:
    """A dotted object identifier as SGP.02 names its entities (e.g. 1.3.6.1.4.1.99999.1.1)."""
    return _OID.fullmatch(text) is not None
