"""The SM-DP's profile warehouse: profile types, personalisation data, and the life of each stock profile.

Theory of operation
-------------------
An MNO's profiles reach the SM-DP as a *profile type* (the ``ProfileType`` it names in
ES2-DownloadProfile, with a SAIP template) and *batches* of personalisation data: one line per
profile with its ICCID, IMSI, MSISDN and secrets. The secrets (Ki, OPc, PINs, PUKs, ADM1) are
sealed by :class:`SecretBox` before they reach the database, and opened again only in the
:class:`Reserved` handed to the download flow.

Each stock profile then moves through this table, and nothing else moves it::

    event       from                    to           when
    reserve     available               reserved     ES2-DownloadProfile accepted (eid, download_id set)
    downloading reserved                downloading  the profile package is on its way to the eUICC
    installed   downloading             installed    the download completed
    release     reserved, downloading   available    the download failed (eid, download_id cleared; releases += 1)

Rules this module keeps:

- Every move is one conditional ``UPDATE ... WHERE state IN (from)``: of two workers racing on one
  profile exactly one moves it. A move to the state the profile is already in is a no-op (callers
  may retry after a crash); any other move from the wrong state raises :class:`StockStateError`.
- "Any available profile of type T": on PostgreSQL the candidate is locked with
  ``FOR UPDATE SKIP LOCKED``, so concurrent workers take different rows without waiting for each
  other; SQLite has no row locks (one writer at a time), so candidates are tried in turn with the
  conditional UPDATE until one moves.
- Nothing here commits: the caller's session is the unit of work, so a reservation and the download
  transaction that holds it are committed together.
- ES2 errors are :class:`sgp02.codes.FunctionFailed` with the SGP.02 codes; operator errors (bad
  batch files, wrong types) are ``ValueError`` with a message fit for a terminal.
"""
from __future__ import annotations

import csv
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Callable, Iterable, Iterator

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from keys.secretbox import SecretBox
from sgp02 import codes
from sgp02.codes import FunctionFailed
from sgp02.identifiers import luhn_digit

from .models import ProfileBatch, ProfileType, StockProfile

PROGRESS_EVERY = 100


def _now() -> datetime:
    return datetime.now(timezone.utc)




# -- values --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StockRecord:
    """One profile's personalisation data, as one line of a batch file."""

    iccid: str
    imsi: str
    msisdn: str | None
    ki: str = field(repr=False)
    opc: str = field(repr=False)
    pin1: str = field(repr=False)
    puk1: str = field(repr=False)
    pin2: str = field(repr=False)
    puk2: str = field(repr=False)
    adm1: str | None = field(default=None, repr=False)

    def secrets(self) -> dict[str, str]:
        values = asdict(self)
        keys = ("ki", "opc", "pin1", "puk1", "pin2", "puk2") + (("adm1",) if self.adm1 is not None else ())
        return {k: values[k] for k in keys}


@dataclass(frozen=True)
class Reserved:
    """A profile reserved for one download: the template and every value that personalises it."""

    iccid: str
    imsi: str
    msisdn: str | None
    profile_type: str
    template: bytes = field(repr=False)
    ki: bytes = field(repr=False)
    opc: bytes = field(repr=False)
    pin1: str = field(repr=False)
    puk1: str = field(repr=False)
    pin2: str = field(repr=False)
    puk2: str = field(repr=False)
    adm1: str | None = field(repr=False)


@dataclass(frozen=True)
class Claim:
    """A profile chosen for a download (:meth:`Warehouse.claim`): what the download's row keeps, no secret."""

    iccid: str
    imsi: str
    msisdn: str | None
    profile_type: str


class StockState(str, Enum):
    AVAILABLE = "available"
    RESERVED = "reserved"
    DOWNLOADING = "downloading"
    INSTALLED = "installed"


# The table of the theory of operation: event -> (states it moves from, state it moves to).
TRANSITIONS: dict[str, tuple[frozenset[StockState], StockState]] = {
    "reserve": (frozenset({StockState.AVAILABLE}), StockState.RESERVED),
    "downloading": (frozenset({StockState.RESERVED}), StockState.DOWNLOADING),
    "installed": (frozenset({StockState.DOWNLOADING}), StockState.INSTALLED),
    "release": (frozenset({StockState.RESERVED, StockState.DOWNLOADING}), StockState.AVAILABLE),
}


class StockStateError(ValueError):
    """A stock profile asked to move from a state the table does not allow (or not in stock at all)."""


# -- batch file validation ------------------------------------------------------------------------------------------

COLUMNS = ("iccid", "imsi", "msisdn", "ki", "opc", "pin1", "puk1", "pin2", "puk2")
OPTIONAL_COLUMNS = ("adm1",)

_DIGITS = re.compile(r"[0-9]+")
_HEX128 = re.compile(r"[0-9A-Fa-f]{32}")
_ADM1 = re.compile(r"[0-9]{8}|[0-9A-Fa-f]{16}")  # 8 ASCII digits, or the 8 bytes in hex


def _digits(label: str, value: str, lo: int, hi: int, *, secret: bool = False) -> None:
    if not (_DIGITS.fullmatch(value) and lo <= len(value) <= hi):
        size = f"{lo}" if lo == hi else f"{lo}-{hi}"
        shown = "" if secret else f" {value!r}"  # a PIN or PUK never reaches a terminal or a log
        raise ValueError(f"{label}{shown} is not {size} digits")


def validate_record(r: StockRecord) -> StockRecord:
    """The record with Ki/OPc in upper-case hex, or ValueError naming the first bad field."""
    _digits("ICCID", r.iccid, 19, 20)
    if luhn_digit(r.iccid[:-1]) != r.iccid[-1]:
        raise ValueError(f"ICCID {r.iccid} has a wrong Luhn check digit (expected {luhn_digit(r.iccid[:-1])})")
    _digits("IMSI", r.imsi, 6, 15)
    if r.msisdn is not None:
        _digits("MSISDN", r.msisdn, 1, 15)
    for label, value in (("Ki", r.ki), ("OPc", r.opc)):
        if not _HEX128.fullmatch(value):
            raise ValueError(f"{label} is not 32 hex digits")
    for label, value in (("PIN1", r.pin1), ("PIN2", r.pin2)):
        _digits(label, value, 4, 8, secret=True)
    for label, value in (("PUK1", r.puk1), ("PUK2", r.puk2)):
        _digits(label, value, 8, 8, secret=True)
    if r.adm1 is not None and not _ADM1.fullmatch(r.adm1):
        raise ValueError("ADM1 is neither 8 digits nor 16 hex digits")
    return StockRecord(r.iccid, r.imsi, r.msisdn or None, r.ki.upper(), r.opc.upper(), r.pin1, r.puk1, r.pin2,
                       r.puk2, r.adm1.upper() if r.adm1 is not None else None)


# -- the service ----------------------------------------------------------------------------------------------------


class Warehouse:
    def __init__(self, box: SecretBox) -> None:
        self.box = box

    # profile types

    def add_profile_type(self, s: Session, *, mno_id: str, name: str, template: bytes,
                         description: str = "") -> ProfileType:
        """Create the type, or replace the template (and a given description) of the MNO's own type."""
        if not name or len(name) > 64:
            raise ValueError("a profile type name is 1-64 characters")
        if not template:
            raise ValueError("the profile template is empty")
        existing = s.scalar(select(ProfileType).where(ProfileType.name == name))
        if existing is not None:
            if existing.mno_id != mno_id:
                raise ValueError(f"profile type {name!r} already belongs to another MNO")
            existing.template = template
            if description:
                existing.description = description
            return existing
        ptype = ProfileType(name=name, mno_id=mno_id, template=template, description=description, created_at=_now())
        s.add(ptype)
        s.flush()
        return ptype

    # batches

    def parse_batch_file(self, path: Path) -> Iterator[StockRecord]:
        """The records of a CSV batch file, validated; ValueError("line N: ...") at the first bad line.

        Header (any order, case-insensitive): iccid,imsi,msisdn,ki,opc,pin1,puk1,pin2,puk2[,adm1].
        Blank lines are skipped; an empty MSISDN or ADM1 means none.
        """
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                columns = _check_header(header)
                for row in reader:
                    if not any(cell.strip() for cell in row):
                        continue
                    if len(row) != len(columns):
                        raise ValueError(f"line {reader.line_num}: {len(row)} fields, the header names {len(columns)}")
                    values = {c: cell.strip() for c, cell in zip(columns, row)}
                    values["msisdn"] = values["msisdn"] or None
                    values["adm1"] = values.get("adm1") or None
                    try:
                        record = validate_record(StockRecord(**values))
                    except ValueError as exc:
                        raise ValueError(f"line {reader.line_num}: {exc}") from None
                    yield record
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except csv.Error as exc:
            raise ValueError(f"{path}: {exc}") from None

    def import_batch(self, s: Session, *, mno_id: str, profile_type: str, name: str, records: Iterable[StockRecord],
                     progress: Callable[[int], None] | None = None) -> int:
        """Add a batch of available profiles of the MNO's ``profile_type``; return how many.

        All or nothing: every record is read and checked (format, duplicates inside the batch, ICCIDs
        already in stock) before the first row is written, so a ValueError leaves the session as it
        was. ``progress(n)`` is called with the number of profiles written so far, every
        ``PROGRESS_EVERY`` profiles and once at the end.
        """
        ptype = s.scalar(select(ProfileType).where(ProfileType.name == profile_type))
        if ptype is None:
            raise ValueError(f"unknown profile type {profile_type!r}")
        if ptype.mno_id != mno_id:
            raise ValueError(f"profile type {profile_type!r} belongs to another MNO")
        batch: list[StockRecord] = []
        position: dict[str, int] = {}
        for n, record in enumerate(records, 1):
            try:
                record = validate_record(record)
            except ValueError as exc:
                raise ValueError(f"record {n}: {exc}") from None
            if record.iccid in position:
                raise ValueError(f"ICCID {record.iccid} appears twice in the batch (records {position[record.iccid]} "
                                 f"and {n})")
            position[record.iccid] = n
            batch.append(record)
        if not batch:
            raise ValueError("the batch holds no profiles")
        iccids = list(position)
        for i in range(0, len(iccids), 500):
            taken = s.scalars(select(StockProfile.iccid).where(StockProfile.iccid.in_(iccids[i:i + 500]))
                              .order_by(StockProfile.iccid)).all()
            if taken:
                more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
                raise ValueError(f"ICCID {taken[0]} is already in stock{more}")

        now = _now()
        row = ProfileBatch(profile_type_id=ptype.id, name=name, imported_at=now, count=len(batch))
        s.add(row)
        s.flush()
        for i in range(0, len(batch), PROGRESS_EVERY):
            chunk = batch[i:i + PROGRESS_EVERY]
            s.execute(insert(StockProfile), [
                {"iccid": r.iccid, "profile_type_id": ptype.id, "batch_id": row.id, "imsi": r.imsi,
                 "msisdn": r.msisdn, "secrets": self.box.seal(r.iccid, r.secrets()),
                 "state": StockState.AVAILABLE.value, "eid": None, "download_id": None, "state_changed_at": now,
                 "releases": 0}
                for r in chunk])
            if progress is not None:
                progress(i + len(chunk))
        return len(batch)

    # the stock's life

    def reserve(self, s: Session, *, mno_id: str, eid: str, download_id: int, profile_type: str | None,
                iccid: str | None) -> Reserved:
        """Reserve a profile for ES2-DownloadProfile: the ``iccid`` asked for, else any of ``profile_type``; the
        profile's values with its secrets opened. The codes are :meth:`claim`'s."""
        claimed = self.claim(s, mno_id=mno_id, eid=eid, profile_type=profile_type, iccid=iccid,
                             hold=lambda _: download_id)
        return self.held(s, claimed.iccid)

    def claim(self, s: Session, *, mno_id: str, eid: str, profile_type: str | None, iccid: str | None,
              hold: Callable[[Claim], int]) -> Claim:
        """Reserve a profile for a download whose row is not written yet: the ``iccid`` asked for, else any of
        ``profile_type``. ``hold(candidate)`` writes the download's row with the candidate and returns its id; the
        conditional UPDATE then moves the profile with that id as ``download_id``. So the row is written once, with its
        ICCID, and the profile is not read again. A candidate another worker took in between is followed by the next
        one, and ``hold`` is called again with it (the row was written already: the caller updates it). No secret is
        opened here (:meth:`held` does, when a step needs them).

        Codes (sgp02.codes, sgp02-wire.md 4.4 for ES2.DownloadProfile):
        neither given 1.6/2.3; type unknown 8.2.5/3.9, of another MNO 8.2.5/1.2, no profile of the
        type available 8.2.5/3.7; ICCID unknown 8.2.1/3.9, of another MNO 8.2.1/1.2, not of the type
        also given 8.2.1/2.1, not available 8.2.1/3.3.
        """
        if profile_type is None and iccid is None:
            raise FunctionFailed(codes.MISSING_CONDITIONAL_PARAMETER, "DownloadProfile needs a ProfileType or an Iccid")
        ptype = None
        if profile_type is not None:
            ptype = s.scalar(select(ProfileType).where(ProfileType.name == profile_type))
            if ptype is None:
                raise FunctionFailed(codes.PROFILE_TYPE_UNKNOWN, subject_identifier=profile_type)
            if ptype.mno_id != mno_id:
                raise FunctionFailed(codes.PROFILE_TYPE_NOT_ALLOWED, subject_identifier=profile_type)
        if iccid is None:
            return self._claim_any(s, ptype, eid, hold)
        row = s.get(StockProfile, iccid)
        if row is None:
            raise FunctionFailed(codes.ICCID_UNKNOWN, subject_identifier=iccid)
        row_type = s.get(ProfileType, row.profile_type_id)
        if row_type.mno_id != mno_id:
            raise FunctionFailed(codes.ICCID_NOT_ALLOWED, subject_identifier=iccid)
        if ptype is not None and row_type.id != ptype.id:
            raise FunctionFailed(codes.ICCID_INVALID, f"ICCID {iccid} is not of profile type {profile_type}",
                                 subject_identifier=iccid)
        if row.state != StockState.AVAILABLE.value:  # as read; the UPDATE below decides a race
            raise FunctionFailed(codes.ICCID_IN_USE, subject_identifier=iccid)
        claimed = Claim(iccid=row.iccid, imsi=row.imsi, msisdn=row.msisdn, profile_type=row_type.name)
        if not self._move(s, iccid, "reserve", eid=eid, download_id=hold(claimed)):
            raise FunctionFailed(codes.ICCID_IN_USE, subject_identifier=iccid)
        return claimed

    def held(self, s: Session, iccid: str) -> Reserved:
        """The values of a profile a download holds (reserved or downloading), e.g. for a later step or a retry."""
        row = s.get(StockProfile, iccid)
        if row is None:
            raise StockStateError(f"ICCID {iccid} is not in stock")
        if row.state not in (StockState.RESERVED.value, StockState.DOWNLOADING.value):
            raise StockStateError(f"ICCID {iccid} is {row.state}: no download holds it")
        return self._reserved(row, s.get(ProfileType, row.profile_type_id))

    def _reserved(self, row: StockProfile, ptype: ProfileType) -> Reserved:
        sealed = self.box.open(row.iccid, row.secrets)
        return Reserved(iccid=row.iccid, imsi=row.imsi, msisdn=row.msisdn, profile_type=ptype.name,
                        template=ptype.template, ki=bytes.fromhex(sealed["ki"]), opc=bytes.fromhex(sealed["opc"]),
                        pin1=sealed["pin1"], puk1=sealed["puk1"], pin2=sealed["pin2"], puk2=sealed["puk2"],
                        adm1=sealed.get("adm1"))

    def _claim_any(self, s: Session, ptype: ProfileType, eid: str, hold: Callable[[Claim], int]) -> Claim:
        available = (select(StockProfile.iccid, StockProfile.imsi, StockProfile.msisdn)
                     .where(StockProfile.profile_type_id == ptype.id, StockProfile.state == StockState.AVAILABLE.value)
                     .order_by(StockProfile.iccid))
        if s.get_bind().dialect.name == "postgresql":
            # Lock one row the other workers have not locked; the UPDATE below cannot then miss.
            available = available.limit(1).with_for_update(skip_locked=True)
        else:
            available = available.limit(20)
        while True:
            candidates = s.execute(available).all()
            if not candidates:
                raise FunctionFailed(codes.PROFILE_TYPE_NO_STOCK, f"no profile of type {ptype.name} is available",
                                     subject_identifier=ptype.name)
            for iccid, imsi, msisdn in candidates:
                claimed = Claim(iccid=iccid, imsi=imsi, msisdn=msisdn, profile_type=ptype.name)
                if self._move(s, iccid, "reserve", eid=eid, download_id=hold(claimed)):
                    return claimed
            # Every candidate was taken by another worker since the SELECT: look again.

    def mark_downloading(self, s: Session, iccid: str) -> None:
        self._transition(s, iccid, "downloading")

    def mark_installed(self, s: Session, iccid: str) -> None:
        self._transition(s, iccid, "installed")

    def release(self, s: Session, iccid: str) -> None:
        """Back to available after a failed download; a profile already available stays as it is."""
        self._transition(s, iccid, "release", eid=None, download_id=None, releases=StockProfile.releases + 1)

    def _move(self, s: Session, iccid: str, event: str, **values) -> bool:
        """One conditional UPDATE along the table; True if this call moved the profile."""
        sources, target = TRANSITIONS[event]
        # No autoflush: the caller's pending changes (the download's row) are written once, at its commit, not
        # flushed by this statement as a second UPDATE; nothing here reads them.
        with s.no_autoflush:
            result = s.execute(
                update(StockProfile)
                .where(StockProfile.iccid == iccid, StockProfile.state.in_([state.value for state in sources]))
                .values(state=target.value, state_changed_at=_now(), **values)
                .execution_options(synchronize_session="fetch"))
        return result.rowcount == 1

    def _transition(self, s: Session, iccid: str, event: str, **values) -> None:
        if self._move(s, iccid, event, **values):
            return
        state = s.scalar(select(StockProfile.state).where(StockProfile.iccid == iccid))
        if state is None:
            raise StockStateError(f"ICCID {iccid} is not in stock")
        if state != TRANSITIONS[event][1].value:
            raise StockStateError(f"ICCID {iccid} is {state}: it cannot be {event}")

    def owner(self, s: Session, iccid: str) -> str | None:
        """The MNO whose profile ``iccid`` is, when it is one of this SM-DP's stock; else None."""
        return s.scalar(select(ProfileType.mno_id).join(StockProfile, StockProfile.profile_type_id == ProfileType.id)
                        .where(StockProfile.iccid == iccid))

    # reporting

    def stock(self, s: Session, *, mno_id: str | None = None) -> list[dict]:
        """Per profile type (by name): its MNO and how many profiles are in each state."""
        types = select(ProfileType.id, ProfileType.name, ProfileType.mno_id).order_by(ProfileType.name)
        if mno_id is not None:
            types = types.where(ProfileType.mno_id == mno_id)
        out: dict[int, dict] = {}
        for type_id, name, owner in s.execute(types):
            out[type_id] = {"profile_type": name, "mno_id": owner, **{state.value: 0 for state in StockState}}
        counts = (select(StockProfile.profile_type_id, StockProfile.state, func.count())
                  .group_by(StockProfile.profile_type_id, StockProfile.state))
        for type_id, state, count in s.execute(counts):
            if type_id in out:
                out[type_id][state] = count
        return list(out.values())


def _check_header(header: list[str] | None) -> list[str]:
    expected = ",".join(COLUMNS) + "[," + ",".join(OPTIONAL_COLUMNS) + "]"
    if not header:
        raise ValueError(f"line 1: no header line; expected {expected}")
    columns = [h.strip().lower() for h in header]
    missing = [c for c in COLUMNS if c not in columns]
    unknown = [c for c in columns if c not in COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown or len(set(columns)) != len(columns):
        problems = [f"missing {', '.join(missing)}"] if missing else []
        problems += [f"unknown {', '.join(unknown)}"] if unknown else []
        problems += ["a column twice"] if len(set(columns)) != len(columns) else []
        raise ValueError(f"line 1: bad header ({'; '.join(problems)}); expected {expected}")
    return columns
