"""ES5 over SMS, the SM-SR's end: ES5 scripts in, SCP80 secured packets in SMS user data out.

The same codecs run at the card's end (``euicc_sim``), in the other direction:
``ota.remote`` (expanded remote command format), ``keys.scp80`` (secured packets), ``ota.sms``
(concatenation), ``ota.es5`` (the ES5 APDUs and the default notification).

Addressing: an SMS reaches the eUICC through its enabled profile's network, so the destination is
the MSISDN of the profile the EIS says is enabled. When that is unanswered, the next attempts try
the other profiles' MSISDNs in turn (the EIS may be behind the card after a lost notification).
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from keys import scp80
from keys.secretbox import SecretBox
from ota import es5, remote, sms

from . import eis as v
from .models import Euicc, ProfileRow, domain_value


@dataclass(frozen=True)
class OutboundSms:
    eid: str
    destination: str
    segments: list[bytes]  # TP-UD of each SMS, UDH included
    operation_id: int | None  # None for a notification confirmation
    attempt: int


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
    def __init__(self, box: SecretBox) -> None:
        self.box = box  # opens the ISD-R's sealed key values (smsr_core.models)

    def _isd_r(self, euicc: Euicc) -> v.SecurityDomain:
        return domain_value(next(d for d in euicc.domains if d.role == "ISD-R"), self.box)

    def keyset(self, euicc: Euicc) -> scp80.Scp80Keyset:
        return isd_r_keyset(self._isd_r(euicc))

    def tar(self, euicc: Euicc) -> bytes:
        isd_r = self._isd_r(euicc)
        return bytes.fromhex(isd_r.tars[0] if isd_r.tars else isd_r.aid[-6:-2])

    def destination(self, euicc: Euicc, attempt: int) -> str | None:
        numbers = [p.msisdn for p in sorted(euicc.profiles, key=lambda p: p.state != v.ProfileState.ENABLED.value)
                   if p.msisdn]
        return numbers[attempt % len(numbers)] if numbers else None

    def euicc_for_address(self, s: Session, msisdn: str) -> Euicc | None:
        row = s.scalars(select(ProfileRow).where(ProfileRow.msisdn == msisdn.lstrip("+"))).first()
        return s.get(Euicc, row.eid) if row is not None else None

    def command(self, euicc: Euicc, counter: int, apdus: list[bytes], ref: int) -> list[bytes]:
        """C-APDUs for the ISD-R, as SMS user data."""
        return self._segments(euicc, counter, remote.encode_command_script(apdus), ref, None)

    def command_tlvs(self, euicc: Euicc, counter: int, commands: list[bytes], ref: int, *,
                     tar: bytes | None = None) -> list[bytes]:
        """Command TLVs ('22' C-APDUs, ES8 TLVs) for the ISD-R, or for the ISD-P at ``tar``, as SMS user data."""
        return self._segments(euicc, counter, remote.encode_command_tlvs(commands), ref, tar)

    def _segments(self, euicc: Euicc, counter: int, script: bytes, ref: int, tar: bytes | None) -> list[bytes]:
        # Always the ISD-R's SCP80 keyset: an ISD-P has none; the ISD-R forwards what its TAR names.
        packet = scp80.wrap_command(self.keyset(euicc), scp80.SPI_SGP02, tar or self.tar(euicc), counter, script)
        return sms.segment(packet, sms.CPI, ref)

    def read(self, euicc: Euicc, user_data: list[bytes]) -> CardMessage:
        """A PoR or a card notification from complete SMS parts (ValueError when not readable)."""
        parts = [sms.parse_user_data(ud) for ud in user_data]
        if len(parts) < parts[0].total:
            raise ValueError("incomplete concatenated SMS")
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
