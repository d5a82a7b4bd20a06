"""ES5 over SMS, the SM-SR's end: ES5 scripts in, SCP80 secured packets in SMS user data out.

The same codecs run at the card's end (``euicc_sim``), in the other direction:
``ota.remote`` (expanded remote command format), ``keys.scp80`` (secured packets), ``ota.sms``
(concatenation), ``ota.es5`` (the ES5 APDUs and the default notification).

Addressing: an SMS reaches the eUICC only through its enabled profile's network (a disabled profile is
attached to none), so the destination is the MSISDN of the profile the EIS says is enabled, and only
that one. Trying the other profiles' numbers would waste attempts on numbers that cannot answer. When
the card has switched profiles and the EIS does not know yet, the card's default notification (re-sent
until confirmed) tells the EIS, and the next attempt goes to the new number. No enabled profile, no
MSISDN, or one that is not an E.164 digit string: :class:`Unreachable`, and the operation fails
cleanly instead of handing the SMPP layer a value it cannot encode.

Packets are a pure function of (ISD-R keyset, counter, script, TAR): the SCP80 wrap is deterministic
and the concatenation reference is the counter modulo 256 (:func:`concatenation_reference`). So a
retransmission rebuilt from the counter kept in the operation row is byte for byte the first
transmission, after a worker restart too.

Reading (:meth:`SmsLink.read`) keeps, for each sequence number, the newest copy of a part: parts of
one PoR that arrived across retransmissions complete it, and duplicates do not spoil it.
"""
from __future__ import annotations

from dataclasses import dataclass


from keys import scp80
from keys.secretbox import SecretBox
from ota import es5, remote, sms
from sgp02 import eis as v

from .models import Euicc, domain_value


@dataclass(frozen=True)
class OutboundSms:
    eid: str
    destination: str
    segments: list[bytes]  # TP-UD of each SMS, UDH included
    operation_id: int | None  # None for a notification confirmation
    attempt: int


class Unreachable(ValueError):
    """No SMS can be addressed to the eUICC (no enabled profile with a usable MSISDN); the message says why."""


MAX_ADDRESS_DIGITS = 20  # SMPP 3.4 destination_addr is a C-octet string of at most 21 octets


def concatenation_reference(counter: int) -> int:
    """The 8-bit concatenation reference of the packet with SCP80 ``counter`` (TS 23.040 §9.2.3.24.1).

    Counters only grow, one per packet, so consecutive packets to a card get different references, and a
    retransmission gets the same one without storing it."""
    return counter % 256


@dataclass(frozen=True)
class CardMessage:
    por: scp80.ResponsePacket | None = None
    responses: remote.ResponseScript | None = None
    notification: es5.Notification | None = None


def isd_r_keyset(isd_r: v.SecurityDomain) -> scp80.Scp80Keyset:
    """The ISD-R's SCP80 keyset from the EIS: key 1 = KIc (ENC), key 2 = KID (MAC), AES."""
    for ks in isd_r.keysets:
        if (ks.type or "").upper() == "SCP80":
            keys = {k.index: bytes.fromhex(k.components[0][1]) for k in ks.items if isinstance(k, v.Key)}
            if 1 in keys and 2 in keys:
                return scp80.Scp80Keyset(kvn=ks.version, enc=keys[1], mac=keys[2])
    raise ValueError("the ISD-R has no SCP80 keyset with key values")


class SmsLink:
    """Opening the ISD-R's sealed keys (AES-GCM, JSON) is the costly part of every packet built or read: the
    ISD-R's keyset and TAR are kept per sealed value (its bytes; a domain's keysets, AID and TARs are only ever
    written together with a fresh seal, smsr_core.models.domain_row), at most :attr:`CACHED` of them."""

    CACHED = 4096

    def __init__(self, box: SecretBox) -> None:
        self.box = box  # opens the ISD-R's sealed key values (smsr_core.models)
        self._opened: dict[tuple[str, bytes], tuple[scp80.Scp80Keyset, bytes]] = {}

    def _keys(self, euicc: Euicc) -> tuple[scp80.Scp80Keyset, bytes]:
        row = euicc.isd_r
        key = (row.eid, row.sealed_keys) if row.sealed_keys is not None else None
        found = self._opened.get(key) if key is not None else None
        if found is None:
            isd_r = domain_value(row, self.box)
            found = (isd_r_keyset(isd_r), bytes.fromhex(isd_r.tars[0] if isd_r.tars else isd_r.aid[-6:-2]))
            if key is not None:
                if len(self._opened) >= self.CACHED:
                    self._opened.clear()
                self._opened[key] = found
        return found

    def keyset(self, euicc: Euicc) -> scp80.Scp80Keyset:
        return self._keys(euicc)[0]

    def tar(self, euicc: Euicc) -> bytes:
        return self._keys(euicc)[1]

    def destination(self, euicc: Euicc) -> str:
        """The enabled profile's MSISDN (module doc); :class:`Unreachable` when there is none to use."""
        enabled = next((p for p in euicc.profiles if p.state == v.ProfileState.ENABLED.value), None)
        if enabled is None:
            raise Unreachable(f"eUICC {euicc.eid} has no enabled profile: no network reaches it by SMS")
        msisdn = (enabled.msisdn or "").lstrip("+")
        if not msisdn:
            raise Unreachable(f"the enabled profile {enabled.iccid} has no MSISDN: the eUICC cannot be reached by SMS")
        # isascii() too: str.isdigit() accepts other scripts' digits, which no SMSC takes
        if not (msisdn.isascii() and msisdn.isdigit() and len(msisdn) <= MAX_ADDRESS_DIGITS):
            raise Unreachable(f"the MSISDN stored for the enabled profile {enabled.iccid} is not an E.164 number "
                              "(ASCII digits only): the eUICC cannot be reached by SMS")
        return msisdn

    def command(self, euicc: Euicc, counter: int, apdus: list[bytes]) -> list[bytes]:
        """C-APDUs for the ISD-R, as SMS user data."""
        return self._segments(euicc, counter, remote.encode_command_script(apdus), None)

    def command_tlvs(self, euicc: Euicc, counter: int, commands: list[bytes], *,
                     tar: bytes | None = None) -> list[bytes]:
        """Command TLVs ('22' C-APDUs, ES8 TLVs) for the ISD-R, or for the ISD-P at ``tar``, as SMS user data."""
        return self._segments(euicc, counter, remote.encode_command_tlvs(commands), tar)

    def _segments(self, euicc: Euicc, counter: int, script: bytes, tar: bytes | None) -> list[bytes]:
        # Always the ISD-R's SCP80 keyset: an ISD-P has none; the ISD-R forwards what its TAR names.
        packet = scp80.wrap_command(self.keyset(euicc), scp80.SPI_SGP02, tar or self.tar(euicc), counter, script)
        return sms.segment(packet, sms.CPI, concatenation_reference(counter))

    def read(self, euicc: Euicc, user_data: list[bytes]) -> CardMessage:
        """A PoR or a card notification from SMS parts in arrival order (ValueError when not readable).

        Parts may come more than once (a PoR sent again for a retransmission): the newest copy of each
        sequence number counts. :class:`ota.sms.IncompleteMessage` (a ValueError) while a sequence number is
        missing."""
        parsed = [sms.parse_user_data(ud) for ud in user_data]
        total = parsed[-1].total  # a part of another total is left from an older message under this reference
        newest = {p.seq: p for p in parsed if p.total == total}
        parts = [newest[seq] for seq in sorted(newest)]
        if len(parts) < total:
            raise sms.IncompleteMessage(f"incomplete concatenated SMS: {len(parts)} of {total} parts")
        iei, packet = sms.reassemble(parts)
        keyset = self.keyset(euicc)
        if iei == sms.RPI:
            try:
                por = scp80.unwrap_response(packet, keyset, scp80.SPI_SGP02)
            except scp80.Scp80Error as exc:
                raise ValueError(f"PoR: {exc}") from None
            try:
                script = remote.decode_response_script(por.data) if por.data else None
            except ValueError:
                script = None  # not R-APDUs only (an ISD-P's ES8 answers): the operation reads por.data itself
            return CardMessage(por=por, responses=script)
        if iei == sms.CPI:
            try:
                command = scp80.unwrap_command(packet, keyset)
            except scp80.Scp80Error as exc:
                raise ValueError(f"card notification: {exc}") from None
            return CardMessage(notification=es5.decode_notification(command.data))
        raise ValueError("neither a command nor a response packet")
