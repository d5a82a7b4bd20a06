"""The simulated eUICC's ISD-R: a state machine over ES5 C-APDUs, persisted as one JSON file.

Theory of operation
-------------------
A :class:`Card` holds what the ISD-R of an SGP.02 eUICC knows: its EID, the ISD-Ps under it (each with its GP
life-cycle byte, fall-back attribute, POL1 and the subscription it carries), the free memory, the SM-SR's SMS
address, the default notifications still waiting for a NotificationConfirmation, and the ISD-R's SCP80 key sets
(:class:`Scp80State`: the TAR and one :class:`Scp80KeySet` per KVN, each with its own counter).

:meth:`Card.process` takes one plain C-APDU (already unwrapped from SCP80/SCP81 by the OTA front) and returns
response data || SW1 SW2. It never raises on bad input and never does I/O other than :meth:`Card.save`, which it
calls whenever the command changed the state, before the answer is returned (so an answer is only given for a
durable state). A command that fails leaves the state exactly as it was. The OTA front says which key set the
packet came under (``kvn``) and the time (``now``, for certificate dates).

Several SCP80 key sets (SM-SR change, sgp02-wire §6.5). The card is made with one key set (its first SM-SR's).
EstablishISDRKeySet (STORE DATA 3A01 then 3A02, relayed by the current SM-SR) adds the new SM-SR's key set
(GP Amd E scenario #3, ``keys.ecka.card_isdr_key_agreement``); FinaliseISDRhandover (DELETE key 'F2', sent by the
new SM-SR under its new key set) removes the old ones. Counters are kept per key set (CHOICE: each key set belongs
to one SM-SR, which allocates its counters; the new SM-SR cannot know the old one's counter, and v4 ES7 no longer
carries an initial counter). Default notifications go under the key set of the SM-SR whose address the card
holds (:meth:`Card.notification_keyset`): at first the card's first key set; a 3A07 (new SM-SR address) moves them
to the key set it came under, and so does a DELETE key that removes the key set they went under. CHOICE: during a
handover the card keeps notifying the SM-SR that is still in charge (SM-SR1, whose address it holds), and after a
handover rolled back (SM-SR2's key set created, never used) nothing changes for SM-SR1.

The ISD-P life cycle (sgp02-wire §5.5) and what moves it here::

    (none) --INSTALL 80E60C00--> SELECTABLE 07 --ES8 key set--> PERSONALIZED 0F --ES8 download--> DISABLED 1F
    DISABLED 1F --3A03 enable--> ENABLED 3F      (the previously enabled profile goes DISABLED in the same step)
    ENABLED 3F  --3A04 disable--> DISABLED 1F    (the fall-back profile goes ENABLED in the same step)
    DISABLED/SELECTABLE/PERSONALIZED --DELETE 80E40040--> (removed, memory released)

ES8 is not an ISD-R command: ``euicc_sim.es8.process_es8`` runs it over the ISD-P's own state kept here (keyset,
key agreement in progress, SCP03t session, partial profile package; see :class:`IsdP`) and asks the card to keep
the installed package as ``<ISD-P AID>.upp.der`` beside the state file (:meth:`Card.stage_package`, written by
:meth:`Card.save`). :meth:`Card.install_profile` is the older stand-in, kept for tests that need an installed
profile without a download; :meth:`Card.update_pol1` stands in for ES6 UpdatePOL1byMNO.

Files beside the state file: ``ecasd.key.pem`` (SK.ECASD.ECKA, written by ``esx init``), ``ci.pem`` (the CI
certificate the ECASD trusts), and one ``<ISD-P AID>.upp.der`` per downloaded profile. :meth:`Card.save` writes the
staged packages before the state that names them, and removes package files no ISD-P names any more.

Rules, each checked in the order written; the first that fails gives the status word:

================  ==============================================================================================
Command           Checks -> SW
================  ==============================================================================================
3A03 enable       unknown 6A88; already ENABLED 9000, no change and no notification (idempotent, so an SM-SR
                  retry after a lost PoR is harmless); not DISABLED 6985; enabled profile has POL1
                  "disable not allowed" 69E1. Else old -> DISABLED, new -> ENABLED, notification 02 for the new
                  AID; delete_on_confirm = [old] when the old one has POL1 "delete when disabled" and is not the
                  fall-back profile (a fall-back profile ignores that rule, sgp02-wire §5.4).
3A04 disable      unknown 6A88; not ENABLED 6985; it is the fall-back profile 6985; POL1 "disable not allowed"
                  69E1; no DISABLED fall-back profile to switch to 6985. Else target -> DISABLED, fall-back ->
                  ENABLED, notification 05 ("profile change after fall-back") for the fall-back AID, with
                  delete_on_confirm = [target] when its POL1 says "delete when disabled".
                  CHOICE 05, not 02: sgp02-wire §6.2 (njiwa) has the SM-SR treat DisableProfile as succeeded on a
                  type 05 notification and EnableProfile on type 02; the card sends what that SM-SR waits for.
3A05 fall-back    unknown 6A88; not DISABLED/ENABLED 6985. Else the attribute moves to this ISD-P (exactly one
                  ISD-P holds it afterwards) 9000.
3A07 addressing   the SMS address is decoded (ota.es5.decode_smsr_addressing) and kept; 9000. Bad layout 6A80.
                  Notifications then go under the key set the command came under (see above).
3A01 SM-SR cert   (EstablishISDRKeySet; P1 '09', the first block of a chain, is accepted here and for 3A02) no CI
                  certificate on the card 6982; DGI value not one '7F21' 6A80; keys.chain.verify_gp_cert_by_ci(
                  CI, cert, now, "smsr") fails for any reason (format, signature, dates, untrusted issuer, usage,
                  certificate type other than SM-SR) 6982. Else a fresh 16-byte RC and PK.SR.ECDSA are kept (a
                  repeated 3A01 replaces them): '85' 10 RC 9000.
3A02 key set      no pending 3A01 6985; no ECASD key on the card 6985; keys.ecka.card_isdr_key_agreement fails:
                  kind "signature" 6982, any other (malformed, wrong curve, KVN outside 1..15, first key id not
                  01) 6A80; the KVN names a key set the card holds 6985 (CHOICE: as INSTALL of an existing AID;
                  replacing the relaying SM-SR's keys would cut it off mid-handover). Else a new SCP80 key set
                  (KIc = Key-ENC, KID = Key-MAC, DEK = Key-DEK) whose counter starts at the CRT's '91' (empty: 0),
                  the RC consumed: ['85' DR] '86' receipt 9000.
DELETE key        (FinaliseISDRhandover, 80E40000 'F2' 03 KVN first last ...) P1 P2 other than 00 00 6A86;
                  malformed, or a range other than a whole key set (first 01, last 02 or 03) 6A80; a KVN the card
                  does not hold 6A88; the KVN of the key set the command came under 6985 (CHOICE: the card never
                  deletes the key set it is being spoken to with, so it always keeps one the SM-SR in charge
                  holds). Else every named key set goes at once; 9000.
3A08 confirm      seq known: the notification is removed and its delete_on_confirm ISD-Ps are deleted (those still
                  present, not enabled and not fall-back); answer '80' {4F ...deleted} 9000. Unknown seq: '80 00'
                  9000, so a duplicate confirmation is harmless.
DELETE 80E40040   ('4F' AID) unknown 6A88; ENABLED or fall-back 6985; POL1 "deletion not allowed" 69E1 (not for a
                  MasterDelete, which carries a '9E' token and bypasses POL1, sgp02-wire §5.4). Else removed,
                  its memory released, 9000. The simulated card holds no token key: any non-empty token is taken.
INSTALL 80E60C00  AID already present (or the ISD-R's) 6985 (the SW GP cards give for an existing AID); quota
                  above free memory 6A84; else a new SELECTABLE ISD-P with that quota (no quota in the install
                  parameters = 0). ELF/module AIDs are not checked.
GET STATUS        80F24002: one 'E3' per ISD-P, or for the asked AID (unknown, or no ISD-P at all, 6A88).
                  Memory use inside an ISD-P is not modelled, so '91' (remaining memory) is left out.
GET DATA          80CAFF21: 'FF21' {81 number of ISD-Ps, 82 free memory, 83 FREE_VOLATILE_MEMORY}; other 6A88.
other             malformed APDU 6700; CLA other than 80-87 6E00; other INS 6D00; other DGI 6A80; chained
                  STORE DATA 6A86; bad data 6A80; a bug in a handler 6F00 (logged, state restored).
================  ==============================================================================================

Profile changes take effect at once. A profile with ``attach_fails`` set simulates one that cannot attach to its
network: enabling it (or falling back to it) answers 9000, but the card rolls back to the profile enabled before
and queues a type 03 notification naming that profile; nothing is deleted. The roll-back that SGP.02 asks for when a
notification is never confirmed [S] is not simulated.

Invariants kept by every method: at most one ISD-P ENABLED (exactly one once a profile has been enabled, since
disable always switches to the fall-back profile), at most one fall-back ISD-P, and it is DISABLED or ENABLED.

Notification sequence numbers run 1..FFFF and wrap to 1. A file holds one card; two processes must not drive the
same file at the same time (the last save wins).
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import os
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Iterator

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from keys import ecka
from keys.chain import verify_gp_cert_by_ci
from keys.errors import CertificateError
from keys.gp_cert import curve_for_ref, curve_ref_for
from keys.pki import load_private_key
from keys.scp03 import StaticKeys
from keys.scp80 import Scp80Keyset
from ota import es5
from ota.es5 import (
    DISABLED,
    ENABLED,
    LIFECYCLE_NAMES,
    NOTIF_FALLBACK,
    NOTIF_FIRST_ATTACH,
    NOTIF_PROFILE_CHANGE_OK,
    NOTIF_PROFILE_CHANGE_ROLLED_BACK,
    NOTIFICATION_TYPE_NAMES,
    PERSONALIZED,
    SELECTABLE,
    SW_CLA,
    SW_CONDITIONS,
    SW_INS,
    SW_MEMORY,
    SW_NOT_FOUND,
    SW_OK,
    SW_POL1,
    SW_SECURITY,
    SW_UNKNOWN,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    Apdu,
)

__all__ = [
    "Pol1", "IsdpKeyset", "PendingKeyAgreement", "Download", "IsdP", "PendingNotification", "Scp80KeySet",
    "Scp80State", "Card", "FREE_VOLATILE_MEMORY", "FORMAT_VERSION", "ECASD_KEY_FILE", "CI_FILE", "PACKAGE_SUFFIX",
    "RC_LENGTH",
]

log = logging.getLogger(__name__)

# 2: several SCP80 key sets (scp80 = {"tar", "keysets": [...]}), notification_kvn, isdr_key_agreement. Version 1
# files (one key set: scp80 = {"kvn", "tar", "counter", "enc", "mac", "dek", "recent"}) still load, and are written
# back as version 2. Fields added within a version default when absent.
FORMAT_VERSION = 2
_READABLE_FORMATS = (1, 2)
ECASD_KEY_FILE = "ecasd.key.pem"
CI_FILE = "ci.pem"
PACKAGE_SUFFIX = ".upp.der"
_PACKAGE_FILE = re.compile(r"^[0-9A-F]{10,32}\.upp\.der$")
FREE_VOLATILE_MEMORY = 8192  # reported in GET DATA 'FF21'/'83'; volatile memory is not otherwise modelled
RC_LENGTH = 16  # the random challenge answered to STORE DATA 3A01 (ISD-R here, ISD-P in euicc_sim.es8)

Response = tuple[bytes, int]


@dataclass
class Pol1:
    """POL1, the on-card policy of a profile (sgp02-wire §5.4)."""

    disable_not_allowed: bool = False
    delete_not_allowed: bool = False
    delete_when_disabled: bool = False

    # CHOICE (ours; the SGP.02 §2.4.x POL1 coding is not checked): POL1 travels in the profile package header
    # ('pol' of the SAIP ProfileHeader, an OCTET STRING) as one byte: bit 1 '01' = disabling not allowed, bit 2
    # '02' = deletion not allowed, bit 3 '04' = delete when disabled. Other bits and further bytes are ignored; an
    # absent or empty 'pol' is POL1 without rules.
    _DISABLE_NOT_ALLOWED = 0x01
    _DELETE_NOT_ALLOWED = 0x02
    _DELETE_WHEN_DISABLED = 0x04

    @classmethod
    def from_pol(cls, pol: bytes | None) -> "Pol1":
        """POL1 from a package header's 'pol' (see the CHOICE above)."""
        value = pol[0] if pol else 0
        return cls(disable_not_allowed=bool(value & cls._DISABLE_NOT_ALLOWED),
                   delete_not_allowed=bool(value & cls._DELETE_NOT_ALLOWED),
                   delete_when_disabled=bool(value & cls._DELETE_WHEN_DISABLED))

    def to_pol(self) -> bytes:
        """The one-byte 'pol' of a package header for this POL1 (see the CHOICE above)."""
        return bytes([self._DISABLE_NOT_ALLOWED * self.disable_not_allowed
                      | self._DELETE_NOT_ALLOWED * self.delete_not_allowed
                      | self._DELETE_WHEN_DISABLED * self.delete_when_disabled])


@dataclass
class IsdpKeyset:
    """The ISD-P's SCP03 keyset from ES8 EstablishISDPKeySet: KVN and first key identifier from the 'A6' CRT, the
    three AES keys in hex."""

    kvn: int
    key_id: int
    enc: str
    mac: str
    dek: str

    def static_keys(self) -> StaticKeys:
        return StaticKeys(bytes.fromhex(self.enc), bytes.fromhex(self.mac), bytes.fromhex(self.dek))


@dataclass
class PendingKeyAgreement:
    """Between STORE DATA 3A01 and 3A02: the random challenge sent (hex) and the public key of the verified
    certificate, PK.DP.ECDSA for an ISD-P or PK.SR.ECDSA for the ISD-R (uncompressed point, hex, and its GP key
    parameter reference)."""

    rc: str
    public_key: str
    curve_ref: int

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PendingKeyAgreement":
        d = dict(d)
        if "smdp_public_key" in d:  # the name of ``public_key`` in state files of format 1
            d["public_key"] = d.pop("smdp_public_key")
        return cls(**d)

    @classmethod
    def for_key(cls, rc: bytes, key: ec.EllipticCurvePublicKey) -> "PendingKeyAgreement":
        point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return cls(rc=rc.hex().upper(), public_key=point.hex().upper(), curve_ref=curve_ref_for(key.curve))

    def key(self) -> ec.EllipticCurvePublicKey:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve_for_ref(self.curve_ref),
                                                            bytes.fromhex(self.public_key))


@dataclass
class Download:
    """A profile package being received over SCP03t: the reader's state (``ota.saip.PackageReader.state()``,
    JSON owned by that module), the complete PEs accepted so far and their bytes (hex)."""

    reader: dict
    pe_count: int = 0
    package: str = ""


@dataclass
class IsdP:
    """One ISD-P. ``aid`` is upper-case hex; ``msisdn`` is the number this profile attaches with, which the
    simulated network uses to route SMS; ``memory`` is the quota granted at CreateISDP; ``attach_fails`` is a test
    hook (see the module comment).

    ES8 state (``euicc_sim.es8``): ``keyset`` once EstablishISDPKeySet is done; ``key_agreement`` between its two
    STORE DATA; ``scp03t`` the SCP03t card state (``keys.scp03t.Scp03tCard.state()``, JSON owned by that module,
    holds the keys too) from the key set on; ``download`` while a package arrives; ``package_file`` the file name
    (beside the state file) of the installed package; ``scp03`` the SCP03 secure channel on C-APDUs after the
    download (JSON owned by ``euicc_sim.es8``, holds session keys) and ``connectivity_parameters`` the value of the
    last STORE DATA 3A07 it took (hex), ES8 UpdateConnectivityParameters."""

    aid: str
    lifecycle: int
    fallback: bool = False
    pol1: Pol1 = field(default_factory=Pol1)
    iccid: str | None = None
    imsi: str | None = None
    msisdn: str | None = None
    memory: int = 0
    attach_fails: bool = False
    keyset: IsdpKeyset | None = None
    key_agreement: PendingKeyAgreement | None = None
    scp03t: dict | None = None
    download: Download | None = None
    package_file: str | None = None
    scp03: dict | None = None
    connectivity_parameters: str | None = None

    @property
    def state_name(self) -> str:
        return es5.lifecycle_name(self.lifecycle)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "IsdP":
        d = dict(d)
        d["pol1"] = Pol1(**d.get("pol1", {}))
        d["aid"] = _hex_upper(d["aid"], "ISD-P AID")
        for name, kind in (("keyset", IsdpKeyset), ("download", Download)):
            if d.get(name) is not None:
                d[name] = kind(**d[name])
        if d.get("key_agreement") is not None:
            d["key_agreement"] = PendingKeyAgreement.from_dict(d["key_agreement"])
        return cls(**d)


@dataclass
class PendingNotification:
    """A default notification sent (or to send) and not yet confirmed by a 3A08."""

    seq: int
    type: int
    aid: str
    delete_on_confirm: list[str] = field(default_factory=list)


@dataclass
class Scp80KeySet:
    """One SCP80 key set of the ISD-R: its KVN (1..15) and keys in hex, ``enc`` the KIc key (key id 1), ``mac``
    the KID key (key id 2), ``dek`` the DEK (key id 3; absent from some older state files). ``counter`` is the
    counter of the last packet executed under this key set; ``recent`` the PoRs of the last packets executed
    under it, kept by the OTA front for retransmissions (``euicc_sim.network``; JSON it owns)."""

    kvn: int
    enc: str
    mac: str
    dek: str | None = None
    counter: int = 0
    recent: list[dict] = field(default_factory=list)

    def keyset(self) -> Scp80Keyset:
        return Scp80Keyset(kvn=self.kvn, enc=bytes.fromhex(self.enc), mac=bytes.fromhex(self.mac))

    def __repr__(self) -> str:  # never the key values (logs, exceptions)
        return f"Scp80KeySet(kvn={self.kvn}, counter={self.counter}, <keys>)"


@dataclass
class Scp80State:
    """The ISD-R's SCP80 side: its TAR (hex) and key sets, in the order they were created."""

    tar: str = "000001"
    keysets: list[Scp80KeySet] = field(default_factory=list)

    def keyset(self, kvn: int) -> Scp80KeySet | None:
        return next((k for k in self.keysets if k.kvn == kvn), None)

    @property
    def kvns(self) -> list[int]:
        return [k.kvn for k in self.keysets]

    def to_dict(self) -> dict[str, Any]:
        return {"tar": self.tar, "keysets": [_plain(k) for k in self.keysets]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Scp80State":
        """Format 2 (``{"tar", "keysets"}``), or the one key set of format 1 (``{"kvn", "tar", "counter", "enc",
        "mac", ["dek"], ["recent"]}``, still what ``esx init`` hands to :meth:`Card.create`); ``{}`` is no key set."""
        if not isinstance(d, dict):
            raise ValueError("scp80 must be a dict")
        tar = _hex_upper(d.get("tar", "000001"), "TAR")
        if "keysets" in d:
            return cls(tar, [Scp80KeySet(**k) for k in d["keysets"]])
        if "kvn" not in d:
            return cls(tar, [])
        try:
            keyset = Scp80KeySet(kvn=int(d["kvn"]), enc=d["enc"], mac=d["mac"], dek=d.get("dek"),
                                 counter=int(d.get("counter", 0)), recent=list(d.get("recent", [])))
        except KeyError as exc:
            raise ValueError(f"scp80 key set without {exc}") from None
        return cls(tar, [keyset])


_FIELDS: dict[type, tuple[str, ...]] = {}


def _plain(value: Any) -> Any:
    """``dataclasses.asdict`` for the card's state (dataclasses, lists, dicts and immutable leaves), about three times
    as fast: the state is built two or three times per packet (a snapshot before and after a script, the save)."""
    if isinstance(value, (str, int, float, bool, bytes)) or value is None:
        return value
    if isinstance(value, list):
        return [_plain(x) for x in value]
    if isinstance(value, dict):
        return {k: _plain(x) for k, x in value.items()}
    if isinstance(value, tuple):
        return tuple(_plain(x) for x in value)
    names = _FIELDS.get(type(value))
    if names is None:
        if not is_dataclass(value):
            raise TypeError(f"{type(value).__name__} is not part of a card's state")
        names = _FIELDS[type(value)] = tuple(f.name for f in fields(value))
    return {name: _plain(getattr(value, name)) for name in names}


def _hex_upper(value: str, what: str) -> str:
    try:
        bytes.fromhex(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} {value!r} is not hex") from None
    return value.upper()


@dataclass(eq=False)
class Card:
    path: Path
    eid: str
    isd_r_aid: str
    profiles: list[IsdP]
    free_memory: int
    scp80: Scp80State
    silent: bool = False  # test hook: a card that answers nothing (the OTA front reads it)
    next_seq: int = 1
    pending: list[PendingNotification] = field(default_factory=list)
    smsr_sms_address: str | None = None
    first_attach_notified: bool = False
    notification_kvn: int | None = None  # the key set default notifications go under (module doc)
    isdr_key_agreement: PendingKeyAgreement | None = None  # between the ISD-R's STORE DATA 3A01 and 3A02
    # packages to write beside the state file at the next save (file name -> DER); not part of the state
    staged_packages: dict[str, bytes] = field(default_factory=dict, repr=False)
    # inside one_save(): how deep, and whether a save was asked for (not part of the state)
    _deferring: int = field(default=0, repr=False, compare=False)
    _save_asked: bool = field(default=False, repr=False, compare=False)
    # package files named by the state last saved (None: not saved by this object yet); see save()
    _named: frozenset | None = field(default=None, repr=False, compare=False)
    # inside process(): the KVN of the key set the command came under, and the time (not part of the state)
    _channel_kvn: int | None = field(default=None, repr=False, compare=False)
    _now: datetime.datetime | None = field(default=None, repr=False, compare=False)

    # --- construction and persistence ------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path, *, eid: str, isd_r_aid: str, profiles: list[IsdP], free_memory: int,
               scp80: dict | Scp80State, overwrite: bool = False) -> "Card":
        """A new card, saved at ``path``. Refuses to replace an existing file unless ``overwrite``.

        ``scp80`` is a :class:`Scp80State` or its dict (either format, :meth:`Scp80State.from_dict`); the first key
        set is the one notifications go under."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} already holds a card")
        state = copy.deepcopy(scp80) if isinstance(scp80, Scp80State) else Scp80State.from_dict(scp80)
        card = cls(path=path, eid=eid, isd_r_aid=isd_r_aid, profiles=[copy.deepcopy(p) for p in profiles],
                   free_memory=free_memory, scp80=state,
                   notification_kvn=state.keysets[0].kvn if state.keysets else None)
        card._validate()
        path.parent.mkdir(parents=True, exist_ok=True)
        card.save()
        return card

    @classmethod
    def load(cls, path: Path) -> "Card":
        path = Path(path)
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            card = cls(path=path, eid="", isd_r_aid="", profiles=[], free_memory=0, scp80=Scp80State())
            card._apply_state(state)
            card._validate()
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not a simulated eUICC state file: {exc}") from exc
        return card

    # A card's state survives its process being killed at any point: a temporary file then os.replace, never a
    # half-written state. Surviving a power cut of the host as well needs fsync (file and folder), which costs about
    # half the loopback SMSC's time per command: off by default for a simulated card, on where a lab wants it.
    fsync = False

    @contextmanager
    def one_save(self) -> Iterator[None]:
        """The saves asked for inside (one per command of a script, and the PoR record) become one, when the block
        ends (also when it raises): what the whole packet changed is written at once, before its PoR leaves."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
            if not self._deferring and self._save_asked:
                self.save()

    def save(self) -> None:
        """Write the state atomically: a temporary file in the same folder, (fsync,) os.replace, (fsync the folder).

        Staged packages are written first (same way), so the state never names a missing file; package files that
        no ISD-P names any more are removed afterwards. Inside :meth:`one_save`, only noted."""
        if self._deferring:
            self._save_asked = True
            return
        self._save_asked = False
        written = frozenset(self.staged_packages)
        for name, der in self.staged_packages.items():
            self._write_atomic(self.path.with_name(name), der)
        # The state holds the card's SCP80 and ISD-P keys: owner-only, like the ECASD private key beside it.
        # One line: json's C encoder serves only an unindented dump (an indented one runs in Python, ~3x the time).
        self._write_atomic(self.path, (json.dumps(self._state(), sort_keys=True) + "\n").encode("utf-8"))
        self.staged_packages.clear()
        named = frozenset(p.package_file for p in self.profiles)
        if self._named is None or not named >= self._named | written:  # a package file may be stale only then
            for stale in self.path.parent.glob(f"*{PACKAGE_SUFFIX}"):
                if _PACKAGE_FILE.match(stale.name) and stale.name not in named:
                    stale.unlink(missing_ok=True)
        self._named = named
        self._fsync_folder()

    def _write_atomic(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(data)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()

    def _fsync_folder(self) -> None:
        if not self.fsync:
            return
        try:
            fd = os.open(self.path.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass  # some file systems cannot fsync a directory; the file itself is already durable
        finally:
            os.close(fd)

    def _state(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "eid": self.eid,
            "isd_r_aid": self.isd_r_aid,
            "free_memory": self.free_memory,
            "scp80": self.scp80.to_dict(),
            "notification_kvn": self.notification_kvn,
            "isdr_key_agreement": _plain(self.isdr_key_agreement) if self.isdr_key_agreement else None,
            "silent": self.silent,
            "next_seq": self.next_seq,
            "smsr_sms_address": self.smsr_sms_address,
            "first_attach_notified": self.first_attach_notified,
            "profiles": [_plain(p) for p in self.profiles],
            "pending": [_plain(p) for p in self.pending],
        }

    def _apply_state(self, state: dict[str, Any]) -> None:
        if state.get("format") not in _READABLE_FORMATS:
            raise ValueError(f"unknown state format {state.get('format')!r}")
        self.eid = state["eid"]
        self.isd_r_aid = state["isd_r_aid"]
        self.free_memory = state["free_memory"]
        self.scp80 = Scp80State.from_dict(copy.deepcopy(state["scp80"]))
        if state["format"] == 1:  # one key set, which notifications went under
            self.notification_kvn = self.scp80.keysets[0].kvn if self.scp80.keysets else None
        else:
            self.notification_kvn = state.get("notification_kvn")
        pending = state.get("isdr_key_agreement")
        self.isdr_key_agreement = PendingKeyAgreement.from_dict(pending) if pending else None
        self.silent = bool(state.get("silent", False))
        self.next_seq = state.get("next_seq", 1)
        self.smsr_sms_address = state.get("smsr_sms_address")
        self.first_attach_notified = bool(state.get("first_attach_notified", False))
        self.profiles = [IsdP.from_dict(p) for p in state["profiles"]]
        self.pending = [PendingNotification(**p) for p in state.get("pending", [])]

    def _validate(self) -> None:
        self.eid = _hex_upper(self.eid, "EID")
        if len(self.eid) != 32:
            raise ValueError(f"EID {self.eid} is not 16 bytes")
        self.isd_r_aid = _hex_upper(self.isd_r_aid, "ISD-R AID")
        if not isinstance(self.scp80, Scp80State):
            raise ValueError("scp80 must be an Scp80State")
        self.scp80.tar = _hex_upper(self.scp80.tar, "TAR")
        if len(self.scp80.tar) != 6:
            raise ValueError(f"TAR {self.scp80.tar} is not 3 bytes")
        kvns = self.scp80.kvns
        if len(set(kvns)) != len(kvns):
            raise ValueError(f"SCP80 key versions {kvns} repeat one")
        for k in self.scp80.keysets:
            k.keyset()  # raises ValueError on a KVN outside 1..15 or bad key material
            if k.dek is not None:
                bytes.fromhex(k.dek)
            if not isinstance(k.counter, int) or not 0 <= k.counter < 1 << 40:
                raise ValueError(f"SCP80 key set {k.kvn}: counter {k.counter!r}")
        if self.notification_kvn is not None and self.notification_kvn not in kvns:
            raise ValueError(f"notifications go under key set {self.notification_kvn}, which the card lacks")
        if not isinstance(self.free_memory, int) or self.free_memory < 0:
            raise ValueError(f"free memory {self.free_memory!r}")
        if not 1 <= self.next_seq <= 0xFFFF:
            raise ValueError(f"next sequence number {self.next_seq}")
        aids = set()
        for p in self.profiles:
            p.aid = _hex_upper(p.aid, "ISD-P AID")
            if not 5 <= len(p.aid) // 2 <= 16 or len(p.aid) % 2:
                raise ValueError(f"ISD-P AID {p.aid} is not 5..16 bytes")
            if p.aid in aids or p.aid == self.isd_r_aid:
                raise ValueError(f"ISD-P AID {p.aid} appears twice")
            aids.add(p.aid)
            if p.lifecycle not in LIFECYCLE_NAMES:
                raise ValueError(f"ISD-P {p.aid}: life-cycle byte {p.lifecycle!r}")
            if p.memory < 0:
                raise ValueError(f"ISD-P {p.aid}: negative memory")
            if p.fallback and p.lifecycle not in (DISABLED, ENABLED):
                raise ValueError(f"ISD-P {p.aid}: fall-back profile must be DISABLED or ENABLED")
            if p.package_file is not None and p.package_file != p.aid + PACKAGE_SUFFIX:
                raise ValueError(f"ISD-P {p.aid}: package file {p.package_file!r}")
            if p.keyset is not None:
                p.keyset.static_keys()  # raises ValueError on bad key material
        if sum(p.lifecycle == ENABLED for p in self.profiles) > 1:
            raise ValueError("more than one ENABLED profile")
        if sum(p.fallback for p in self.profiles) > 1:
            raise ValueError("more than one fall-back profile")

    # --- queries ---------------------------------------------------------------------------------------------------

    def profile(self, aid: str) -> IsdP | None:
        aid = aid.upper()
        return next((p for p in self.profiles if p.aid == aid), None)

    def enabled_profile(self) -> IsdP | None:
        return next((p for p in self.profiles if p.lifecycle == ENABLED), None)

    def fallback_profile(self) -> IsdP | None:
        return next((p for p in self.profiles if p.fallback), None)

    def notification_keyset(self) -> Scp80KeySet | None:
        """The key set default notifications go under (module doc): ``notification_kvn``'s, else the newest key
        set (``None`` when the card has none)."""
        chosen = self.scp80.keyset(self.notification_kvn) if self.notification_kvn is not None else None
        return chosen or (self.scp80.keysets[-1] if self.scp80.keysets else None)

    def pending_notifications(self) -> list[PendingNotification]:
        return sorted((copy.deepcopy(p) for p in self.pending), key=lambda p: p.seq)

    def notification_message(self, pending: PendingNotification) -> bytes:
        """The 'E1' default notification for ``pending``, as the OTA front sends it to the SM-SR."""
        return es5.encode_notification(es5.Notification(
            eid=bytes.fromhex(self.eid), type=pending.type, seq=pending.seq, isdp_aid=bytes.fromhex(pending.aid)))

    @property
    def ecasd_key_path(self) -> Path:
        return self.path.with_name(ECASD_KEY_FILE)

    @property
    def ci_path(self) -> Path:
        return self.path.with_name(CI_FILE)

    def ecasd_key(self) -> ec.EllipticCurvePrivateKey | None:
        """SK.ECASD.ECKA from ``ecasd.key.pem`` beside the state file; ``None`` when the card has none."""
        try:
            return load_private_key(self.ecasd_key_path.read_bytes())
        except FileNotFoundError:
            return None

    def ci_pem(self) -> bytes | None:
        """The CI certificate (PEM) the ECASD trusts, from ``ci.pem`` beside the state file; ``None`` when absent."""
        try:
            return self.ci_path.read_bytes()
        except FileNotFoundError:
            return None

    def stage_package(self, aid: str, der: bytes) -> str:
        """Keep ``der`` as the package of ISD-P ``aid``: returns the file name to store in ``IsdP.package_file``.
        The file is written by the next :meth:`save` (nothing is written when the caller rolls back instead)."""
        name = aid.upper() + PACKAGE_SUFFIX
        self.staged_packages[name] = bytes(der)
        return name

    def package(self, aid: str) -> bytes | None:
        """The installed package of ISD-P ``aid`` as kept on disk, or ``None``."""
        p = self.profile(aid)
        if p is None or p.package_file is None:
            return None
        staged = self.staged_packages.get(p.package_file)
        return staged if staged is not None else self.path.with_name(p.package_file).read_bytes()

    def view(self) -> dict[str, Any]:
        """A JSON-able summary for ``esx euicc show`` (key set KVNs and counters only, never keys)."""
        notifying = self.notification_keyset()
        return {
            "eid": self.eid,
            "isd_r_aid": self.isd_r_aid,
            "free_memory": self.free_memory,
            "smsr_sms_address": self.smsr_sms_address,
            "silent": self.silent,
            "scp80": {
                "tar": self.scp80.tar,
                "keysets": [{"kvn": k.kvn, "counter": k.counter} for k in self.scp80.keysets],
                "notification_kvn": notifying.kvn if notifying is not None else None,
            },
            "isdr_key_agreement_pending": self.isdr_key_agreement is not None,
            "profiles": [
                {
                    "aid": p.aid, "iccid": p.iccid, "imsi": p.imsi, "msisdn": p.msisdn, "state": p.state_name,
                    "fallback": p.fallback, "pol1": asdict(p.pol1), "memory": p.memory,
                    "attach_fails": p.attach_fails, "keyset_kvn": p.keyset.kvn if p.keyset is not None else None,
                    "package_file": p.package_file, "download_pes": p.download.pe_count if p.download else None,
                    "connectivity_parameters": p.connectivity_parameters,
                }
                for p in self.profiles
            ],
            "pending_notifications": [
                {
                    "seq": n.seq, "type": n.type, "type_name": NOTIFICATION_TYPE_NAMES.get(n.type, "unknown"),
                    "aid": n.aid, "delete_on_confirm": list(n.delete_on_confirm),
                }
                for n in self.pending_notifications()
            ],
        }

    # --- hooks for the fronts that are not ES5 (each saves) --------------------------------------------------------

    def notify_first_attach(self) -> PendingNotification | None:
        """Queue the type 01 notification (first network attachment), once in the card's life, for the enabled
        profile. ``None`` when it was already queued or no profile is enabled."""
        enabled = self.enabled_profile()
        if self.first_attach_notified or enabled is None:
            return None
        note = self._queue(NOTIF_FIRST_ATTACH, enabled.aid, [])
        self.first_attach_notified = True
        self.save()
        return copy.deepcopy(note)

    def install_profile(self, aid: str, *, iccid: str, imsi: str | None = None, msisdn: str | None = None,
                        pol1: Pol1 | None = None) -> IsdP:
        """Stand-in for ES8 DownloadAndInstallation: a SELECTABLE or PERSONALIZED ISD-P becomes DISABLED and
        carries the profile. :class:`ValueError` when the ISD-P is unknown or in another state.

        ``euicc_sim.es8`` now does this for real from a downloaded package; this stays for tests (and tools) that
        need an installed profile without running ES8. No package file is kept."""
        p = self.profile(aid)
        if p is None or p.lifecycle not in (SELECTABLE, PERSONALIZED):
            raise ValueError(f"no ISD-P {aid} waiting for a profile")
        p.iccid, p.imsi, p.msisdn, p.pol1 = iccid, imsi, msisdn, pol1 or Pol1()
        p.lifecycle = DISABLED
        p.key_agreement, p.download = None, None
        self.save()
        return p

    def update_pol1(self, aid: str, pol1: Pol1) -> None:
        """Stand-in for ES6 UpdatePOL1byMNO."""
        p = self.profile(aid)
        if p is None:
            raise ValueError(f"no ISD-P {aid}")
        p.pol1 = copy.deepcopy(pol1)
        self.save()

    # --- ES5 -------------------------------------------------------------------------------------------------------

    def process(self, apdu: bytes, *, kvn: int | None = None, now: datetime.datetime | None = None) -> bytes:
        """Execute one C-APDU addressed to the ISD-R; return response data || SW1 SW2.

        ``kvn`` is the SCP80 key set the command came under (``None``: not over SCP80, e.g. a test); ``now`` the
        time certificates are checked at (default: the clock)."""
        before = self._state()
        self._channel_kvn = kvn
        self._now = now or datetime.datetime.now(datetime.timezone.utc)
        try:
            data, sw = self._dispatch(apdu)
        except Exception:  # a handler bug must not take the OTA front down; answer 6F00 with the state untouched
            # the command is not logged: a STORE DATA may carry key material
            log.exception("simulated eUICC %s: command %s failed", self.eid,
                          apdu[:4].hex().upper() if isinstance(apdu, (bytes, bytearray)) else type(apdu).__name__)
            data, sw = b"", SW_UNKNOWN
        finally:
            self._channel_kvn, self._now = None, None
        if sw != SW_OK:
            self._apply_state(before)  # a refused command changes nothing, whatever a handler did before refusing
        elif self._state() != before:
            try:
                self.save()
            except BaseException:
                self._apply_state(before)  # no answer for a state that is not on disk
                raise
        return es5.with_sw(data, sw)

    def _dispatch(self, raw: bytes) -> Response:
        if not isinstance(raw, (bytes, bytearray)):
            return b"", SW_WRONG_LENGTH
        try:
            apdu = Apdu.parse(raw)
        except (TypeError, ValueError):
            return b"", SW_WRONG_LENGTH
        if apdu.cla & 0xF8 != 0x80:  # GP proprietary class, with or without secure messaging / logical channel
            return b"", SW_CLA
        handler = {
            es5.INS_STORE_DATA: self._store_data,
            es5.INS_DELETE: self._delete,
            es5.INS_INSTALL: self._install,
            es5.INS_GET_STATUS: self._get_status,
            es5.INS_GET_DATA: self._get_data,
        }.get(apdu.ins)
        if handler is None:
            return b"", SW_INS
        try:
            return handler(apdu)
        except ValueError:  # a codec refused the command data (TlvError is a ValueError too)
            return b"", SW_WRONG_DATA

    def _store_data(self, apdu: Apdu) -> Response:
        if apdu.data[:2] in (b"\x3A\x01", b"\x3A\x02"):
            return self._establish_isdr_key_set(apdu)
        if not apdu.p1 & 0x80:
            return b"", SW_WRONG_P1P2  # chained STORE DATA: every ES5 DGI the ISD-R handles fits one block
        dgi, value = es5.parse_store_data(apdu)
        if dgi == es5.DGI_ENABLE_PROFILE:
            return self._enable(es5.aid_of(value).hex().upper())
        if dgi == es5.DGI_DISABLE_PROFILE:
            return self._disable(es5.aid_of(value).hex().upper())
        if dgi == es5.DGI_SET_FALLBACK:
            return self._set_fallback(es5.aid_of(value).hex().upper())
        if dgi == es5.DGI_SMSR_ADDRESSING:
            self.smsr_sms_address = es5.decode_smsr_addressing(value)
            if self._channel_kvn is not None:
                self.notification_kvn = self._channel_kvn  # the SM-SR that set its address is the one in charge
            return b"", SW_OK
        if dgi == es5.DGI_NOTIFICATION_CONFIRMATION:
            return self._confirm(es5.parse_notification_confirmation(value))
        return b"", SW_WRONG_DATA

    # --- SM-SR change: EstablishISDRKeySet and FinaliseISDRhandover --------------------------------------------------

    def _establish_isdr_key_set(self, apdu: Apdu) -> Response:
        dgi, data = es5.parse_isdr_key_set_store_data(apdu)
        if dgi == ecka.DGI_CERTIFICATE:
            return self._isdr_certificate(data)
        return self._isdr_key_agreement(data)

    def _isdr_certificate(self, dgi_3a01: bytes) -> Response:
        ci_pem = self.ci_pem()
        if ci_pem is None:
            return b"", SW_SECURITY  # nothing to verify the certificate with
        cert = ecka.parse_dgi_3a01(dgi_3a01)  # EckaError is a ValueError: 6A80
        try:
            public_key = verify_gp_cert_by_ci(ci_pem, cert, self._now, "smsr").public_key()
        except CertificateError as exc:
            log.info("simulated eUICC %s: SM-SR certificate refused: %s", self.eid, exc)
            return b"", SW_SECURITY
        rc = os.urandom(RC_LENGTH)
        self.isdr_key_agreement = PendingKeyAgreement.for_key(rc, public_key)
        return ecka.challenge_response(rc), SW_OK

    def _isdr_key_agreement(self, dgi_3a02: bytes) -> Response:
        pending = self.isdr_key_agreement
        ecasd_key = self.ecasd_key()
        if pending is None or ecasd_key is None:
            return b"", SW_CONDITIONS
        try:
            answer, keys, crt = ecka.card_isdr_key_agreement(ecasd_key, pending.key(), bytes.fromhex(pending.rc),
                                                             dgi_3a02)
        except ecka.EckaError as exc:
            log.info("simulated eUICC %s: ISD-R 3A02 refused: %s", self.eid, exc)
            return b"", SW_SECURITY if exc.kind == "signature" else SW_WRONG_DATA
        if self.scp80.keyset(crt.kvn) is not None:
            log.info("simulated eUICC %s: ISD-R 3A02 refused: key set %d exists", self.eid, crt.kvn)
            return b"", SW_CONDITIONS
        self.scp80.keysets.append(Scp80KeySet(
            kvn=keys.kvn, enc=keys.scp80.enc.hex().upper(), mac=keys.scp80.mac.hex().upper(),
            dek=keys.dek.hex().upper(), counter=int.from_bytes(crt.initial_counter, "big")))
        self.isdr_key_agreement = None
        log.info("simulated eUICC %s: SCP80 key set %d created", self.eid, keys.kvn)
        return answer, SW_OK

    def _delete_key_sets(self, apdu: Apdu) -> Response:
        if apdu.p1 != 0x00 or apdu.p2 != 0x00:
            return b"", SW_WRONG_P1P2
        entries = es5.parse_finalise_isdr_handover(apdu)
        if any(e.first_key_id != ecka.SCP80_KEY_ID_KIC or e.last_key_id not in (ecka.SCP80_KEY_ID_KID,
                                                                                 ecka.SCP80_KEY_ID_DEK)
               for e in entries):
            return b"", SW_WRONG_DATA  # only whole key sets: a key set without its KIc or KID key is useless
        if any(self.scp80.keyset(e.kvn) is None for e in entries):
            return b"", SW_NOT_FOUND
        if any(e.kvn == self._channel_kvn for e in entries):
            return b"", SW_CONDITIONS  # never the key set this command came under
        gone = {e.kvn for e in entries}
        self.scp80.keysets = [k for k in self.scp80.keysets if k.kvn not in gone]
        if self.notification_kvn in gone:
            self.notification_kvn = self._channel_kvn if self.scp80.keyset(self._channel_kvn) else None
            if self.notification_kvn is None and self.scp80.keysets:
                self.notification_kvn = self.scp80.keysets[-1].kvn
        log.info("simulated eUICC %s: SCP80 key sets %s deleted", self.eid, sorted(gone))
        return b"", SW_OK

    def _enable(self, aid: str) -> Response:
        target = self.profile(aid)
        if target is None:
            return b"", SW_NOT_FOUND
        if target.lifecycle == ENABLED:
            return b"", SW_OK  # idempotent: a retry after a lost PoR changes nothing and queues nothing
        if target.lifecycle != DISABLED:
            return b"", SW_CONDITIONS
        current = self.enabled_profile()
        if current is not None and current.pol1.disable_not_allowed:
            return b"", SW_POL1
        delete = [current.aid] if current is not None and current.pol1.delete_when_disabled and not current.fallback \
            else []
        self._switch(current, target, NOTIF_PROFILE_CHANGE_OK, delete)
        return b"", SW_OK

    def _disable(self, aid: str) -> Response:
        target = self.profile(aid)
        if target is None:
            return b"", SW_NOT_FOUND
        if target.lifecycle != ENABLED or target.fallback:
            return b"", SW_CONDITIONS
        if target.pol1.disable_not_allowed:
            return b"", SW_POL1
        fallback = self.fallback_profile()
        if fallback is None or fallback.lifecycle != DISABLED:
            return b"", SW_CONDITIONS  # nothing to fall back to
        self._switch(target, fallback, NOTIF_FALLBACK, [target.aid] if target.pol1.delete_when_disabled else [])
        return b"", SW_OK

    def _switch(self, old: IsdP | None, new: IsdP, notification_type: int, delete_on_confirm: list[str]) -> None:
        """Enable ``new`` in place of ``old`` and queue the notification that reports it, or roll back."""
        if new.attach_fails and old is not None:
            # the device refreshed to ``new``, found no network, and came back to ``old``
            self._queue(NOTIF_PROFILE_CHANGE_ROLLED_BACK, old.aid, [])
            return
        if old is not None:
            old.lifecycle = DISABLED
        new.lifecycle = ENABLED
        self._queue(notification_type, new.aid, delete_on_confirm)

    def _queue(self, notification_type: int, aid: str, delete_on_confirm: list[str]) -> PendingNotification:
        note = PendingNotification(self.next_seq, notification_type, aid, list(delete_on_confirm))
        self.pending.append(note)
        self.next_seq = self.next_seq % 0xFFFF + 1
        return note

    def _set_fallback(self, aid: str) -> Response:
        target = self.profile(aid)
        if target is None:
            return b"", SW_NOT_FOUND
        if target.lifecycle not in (DISABLED, ENABLED):
            return b"", SW_CONDITIONS
        for p in self.profiles:
            p.fallback = p is target
        return b"", SW_OK

    def _confirm(self, seq: int) -> Response:
        note = next((n for n in self.pending if n.seq == seq), None)
        deleted: list[bytes] = []
        if note is not None:
            self.pending.remove(note)
            for aid in note.delete_on_confirm:
                p = self.profile(aid)
                if p is not None and p.lifecycle != ENABLED and not p.fallback:
                    self._remove(p)
                    deleted.append(bytes.fromhex(p.aid))
        return es5.encode_confirmation_response(deleted), SW_OK

    def _remove(self, p: IsdP) -> None:
        self.profiles.remove(p)
        self.free_memory += p.memory

    def _delete(self, apdu: Apdu) -> Response:
        if es5.is_key_set_deletion(apdu):
            return self._delete_key_sets(apdu)
        if apdu.p1 != 0x00 or apdu.p2 not in (0x00, es5.P2_DELETE_OBJECT_AND_RELATED):
            return b"", SW_WRONG_P1P2
        request = es5.parse_delete(apdu)
        target = self.profile(request.aid.hex().upper())
        if target is None:
            return b"", SW_NOT_FOUND
        if target.lifecycle == ENABLED or target.fallback:
            return b"", SW_CONDITIONS
        if target.pol1.delete_not_allowed and not request.is_master_delete:
            return b"", SW_POL1
        self._remove(target)
        return b"", SW_OK

    def _install(self, apdu: Apdu) -> Response:
        if apdu.p1 != es5.P1_INSTALL_AND_MAKE_SELECTABLE:
            return b"", SW_WRONG_P1P2
        request = es5.parse_install(apdu)
        aid = request.aid.hex().upper()
        if self.profile(aid) is not None or aid == self.isd_r_aid:
            return b"", SW_CONDITIONS
        memory = request.memory or 0
        if memory > self.free_memory:
            return b"", SW_MEMORY
        self.free_memory -= memory
        self.profiles.append(IsdP(aid=aid, lifecycle=SELECTABLE, memory=memory))
        return b"", SW_OK

    def _get_status(self, apdu: Apdu) -> Response:
        if apdu.p1 != es5.P1_GET_STATUS_APPLICATIONS or apdu.p2 != es5.P2_GET_STATUS_TLV:
            return b"", SW_WRONG_P1P2
        wanted = es5.parse_get_status(apdu)
        selected = self.profiles if wanted is None else [p for p in self.profiles if p.aid == wanted.hex().upper()]
        if not selected:
            return b"", SW_NOT_FOUND
        return b"".join(
            es5.encode_isdp_status(es5.IsdpStatus(bytes.fromhex(p.aid), p.lifecycle, p.fallback, p.memory))
            for p in selected
        ), SW_OK

    def _get_data(self, apdu: Apdu) -> Response:
        if (apdu.p1 << 8 | apdu.p2) != es5.TAG_EXTENDED_CARD_RESOURCES:
            return b"", SW_NOT_FOUND
        return es5.encode_card_resources(
            es5.CardResources(len(self.profiles), self.free_memory, FREE_VOLATILE_MEMORY)), SW_OK
