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


# -- AIDs (SGP.02 Annex H layout) ------------------------------------------------------------------------------------
# RID A000000559, PIX 1010FFFFFFFF89, a 3-byte instance number, '00'. The one home of the series: the ISD-R, the
# ECASD and the ISD-P package have fixed instance numbers; ISD-Ps are numbered from 0x10 (the SM-SR allocates them at
# CreateISDP, the demo eUICCs carry the first ones). The instance number also gives an ISD-P's TAR (ota.es8.isdp_tar).

AID_PREFIX = "A0000005591010FFFFFFFF89"


def annex_h_aid(instance: int) -> str:
    """The AID with 3-byte instance number ``instance`` in the Annex H series."""
    return f"{AID_PREFIX}{instance:06X}00"


ISD_R_AID = annex_h_aid(0x01)
ECASD_AID = annex_h_aid(0x02)
ISD_P_LOADFILE_AID = annex_h_aid(0x0D)
ISD_P_MODULE_AID = annex_h_aid(0x0E)
FIRST_ISD_P_INSTANCE = 0x10


def isd_p_aid(index: int) -> str:
    """The AID of ISD-P number ``index`` (0, 1, ...): instance number 0x10 + index."""
    return annex_h_aid(FIRST_ISD_P_INSTANCE + index)


def allocate_isd_p_aid(used: list[str]) -> str:
    """The first ISD-P AID of the series not in ``used``."""
    taken = {aid.upper() for aid in used}
    index = 0
    while isd_p_aid(index) in taken:
        index += 1
    return isd_p_aid(index)
