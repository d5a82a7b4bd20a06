"""The simulated eUICC's ISD-P (and the ECASD behind it): a state machine over ES8 commands.

Theory of operation
-------------------
ES8 is the SM-DP's end-to-end interface to one ISD-P (sgp02-wire §6.3-6.4). The SM-DP's ES3.SendData ``Data`` is a
list of ES8 command TLVs (``ota.es8``); the SM-SR sends them unchanged in an expanded command script under the
ISD-R's SCP80 keys with TAR = ``ota.es8.isdp_tar(ISD-P AID)``; the OTA front (``euicc_sim.network.CardOta``)
unwraps the packet, finds the ISD-P by that TAR and calls :func:`process_es8`, which runs the commands in order
and returns the response script ``'AB' L { '80' 01 n, one response TLV per executed command }``, stopping at the
first error (``ota.es8.is_error_response``).

:func:`process_es8` does no I/O of its own: the ECASD key and the CI certificate are passed in, and every state
change goes into the :class:`euicc_sim.card.IsdP` record, saved with :meth:`Card.save` once, after the last
command and before the answer is returned (so an answer is only given for a durable state). The downloaded
package is written beside the state file by that same save (:meth:`Card.stage_package`).

The machines, and what moves them::

    ISD-P life cycle   SELECTABLE 07 --3A02 ok--> PERSONALIZED 0F --'86' completing the package--> DISABLED 1F
    key agreement      none --3A01 ok--> pending (RC, PK.DP.ECDSA) --3A02 ok--> none (keyset stored)
    SCP03t session     keys.scp03t.Scp03tCard (idle -'84'-> initialized -'85'-> authenticated), kept in
                       IsdP.scp03t from the key set on; any '9Fxx' error ends it (that module's rule)
    download           none --first good '86'--> receiving (PackageReader state, PEs, bytes)
                       --end PE--> installed | --error--> none
    SCP03 on '22'      (after the download: DISABLED or ENABLED) idle --INITIALIZE UPDATE--> initialized
                       --EXTERNAL AUTHENTICATE--> authenticated (secured commands accepted); any security
                       failure, or a new INITIALIZE UPDATE, ends the session. Kept in IsdP.scp03 (:class:`_Scp03`)

Rules, each checked in the order written; the first that fails gives the answer:

==================  ============================================================================================
Command             Checks -> answer
==================  ============================================================================================
'22' any            not a short APDU 6700; CLA other than 80-87 6E00; INS other than INSTALL/STORE DATA 6D00;
                    a bug in a handler 6F00 (logged). A '22' that fails changes nothing.
INSTALL [perso]     P1 other than '20' 6A86; malformed data 6A80; AID other than this ISD-P's 6A88; else 9000.
                    Nothing changes: the ISD-P is already the target (by TAR), so STORE DATA does not need it.
STORE DATA          not DGI format or not one DGI 6A80; 3A07 (connectivity parameters) without secure messaging
                    6982; DGI other than 3A01/3A02 6A80.
3A01 certificate    ISD-P not SELECTABLE 6985; no CI certificate on the card 6982; DGI value not one '7F21'
                    6A80; keys.chain.verify_gp_cert_by_ci(CI, cert, now, "smdp") fails, for any reason
                    (format, signature, dates, untrusted issuer, usage, certificate type) 6982. Else a fresh
                    16-byte RC and PK.DP.ECDSA are kept (a repeated 3A01 replaces them): '85' 10 RC 9000.
3A02 key agreement  ISD-P not SELECTABLE 6985; no pending 3A01 6985; no ECASD key on the card 6985;
                    keys.ecka.card_key_agreement fails: kind "signature" 6982, "format"/"curve"/other 6A80
                    (CHOICE: 6982 only for the one failure that is about who signed; a malformed or
                    wrong-curve payload is wrong data). Else the keyset (KVN and key id from the CRT) is stored,
                    the RC consumed, a fresh SCP03t card state made for it, PERSONALIZED: ['85' DR] '86' receipt
                    9000.
'84' '85' '86'      ISD-P has no keyset '9Fxx' 01 02 (unknown key); ISD-P not PERSONALIZED (download done)
                    '9Fxx' 01 03 (no session); else keys.scp03t.Scp03tCard.process decides: its error TLVs are
                    answered as-is and end the session (that module's rule) and, here, discard a partial
                    download too. '84' also discards a partial download (a new session starts over).
'86' good segment   the plaintext feeds the PackageReader; each complete PE is checked with validate_pe, the
                    first must be the header, the running size must stay within the ISD-P's memory quota (when it
                    is > 0). A failure aborts: answer wrap_response(EUICCResponse aborted, PE_OK for the PEs
                    before and the failure's status for the PE at fault), the partial download is discarded
                    and the session ended (keys kept, ISD-P stays PERSONALIZED; a new session may retry), and
                    the script stops there. The end PE completes the package: summarise(); install (ICCID,
                    IMSI, MSISDN, POL1 from the header's 'pol' byte via Pol1.from_pol; DISABLED; package file
                    ``<AID>.upp.der``; session ended): answer wrap_response(EUICCResponse, PE_OK per PE).
                    Otherwise (more to come) wrap_response(b"").
INITIALIZE UPDATE   (80 50 KVN 00 08 host challenge) CLA other than 80 6E00; P2 other than 00 6A86; ISD-P without
                    a keyset, or KVN neither 00 nor the keyset's 6A88; ISD-P not DISABLED/ENABLED (no download
                    done) 6985; host challenge not 8 bytes 6700; sequence counter exhausted 6985. Else the
                    session so far ends, the counter goes up by one and the card challenge is derived from it
                    (keys.scp03.pseudo_random_card_challenge with this ISD-P's AID): the INITIALIZE UPDATE
                    response (keys.scp03.initialize_update_response) 9000.
EXTERNAL AUTHENT.   (84 82 SL 00 10 host cryptogram C-MAC) no INITIALIZE UPDATE just before 6985; CLA other than
                    84 6E00; data not 16 bytes 6700; C-MAC wrong 6982; host cryptogram wrong 6300; SL other than
                    '33' 6A86 (CHOICE: SCP03t's level: connectivity parameters may hold secrets). Every failure
                    ends the session. Else authenticated: 9000.
secured command     (CLA bit '04', any INS but the two above) no authenticated session 6982; C-MAC wrong, or a
                    ciphered part whose '80' padding is wrong, 6982 and the session ends. Else the MCV and the
                    counter move on whatever the command's outcome, and the plain command runs: STORE DATA only
                    (other INS 6D00), not DGI format or not one DGI 6A80, DGI other than 3A07 6A80, a value that is
                    empty or not a sequence of BER-TLVs 6A80; else the value is kept (replacing the last) 9000.
                    A 9000 carries the R-MAC (and R-ENC of data, none here); an error SW is answered plain.
other tag           '90' 01 01 (TS 102 226 §5.2.2 bad format: unknown tag); the script stops. The SM-SR never
                    relays such a tag (ota.es8.split_send_data refuses it).
==================  ============================================================================================

A refused '22' command changes nothing of the ISD-P, except the SCP03 channel: a session a failure ends stays ended,
and a secured command whose C-MAC verified has moved the MCV and the counter even when the command itself fails
(as a card does: the host's next command is MACed over that MCV).

SCP03 sequence counter (CHOICE): the ISD-P counts the sessions of this channel in IsdP.scp03, apart from the
SCP03t sessions of the download (whose card challenge is random, keys.scp03t), so the first session after the
download has counter 1.

PE identification in the EUICCResponse (CHOICE): the PE's 0-based position in the package (header 0), see
:func:`_pe_identification`. An aborted answer lists PE_OK for every PE before the one at fault, then its status.
"""

from __future__ import annotations

import copy
import datetime
import hmac
import logging
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from keys import ecka, scp03, scp03t
from keys.chain import verify_gp_cert_by_ci
from keys.errors import CertificateError, TlvError
from keys.tlv import encode_tlv, iter_tlvs
from ota import es8, remote, saip
from ota.es5 import (
    DISABLED,
    ENABLED,
    INS_INSTALL,
    INS_STORE_DATA,
    PERSONALIZED,
    SELECTABLE,
    SW_CLA,
    SW_CONDITIONS,
    SW_INS,
    SW_NOT_FOUND,
    SW_OK,
    SW_SECURITY,
    SW_UNKNOWN,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    Apdu,
    with_sw,
)

from .card import RC_LENGTH, Card, Download, IsdP, IsdpKeyset, PendingKeyAgreement, Pol1

__all__ = ["process_es8", "RC_LENGTH"]

log = logging.getLogger(__name__)

_HEADER_PE = "header"
_END_PE = "end"

Response = tuple[bytes, int]
_UNCHANGED = object()  # _Session.scp03_kept: the command left the SCP03 channel as it was


def process_es8(card: Card, isdp_aid: str, commands: list[tuple[int, bytes]], *,
                ecasd_key: ec.EllipticCurvePrivateKey | None, ci_pem: bytes | None,
                now: datetime.datetime) -> bytes:
    """Run the ES8 ``commands`` ((tag, value) pairs) on the ISD-P ``isdp_aid``; return the response script.

    Saves the card when its state changed (once, before returning). An unknown ISD-P answers like a bad command:
    '6A88' for a '22', '9Fxx' 01 02 for an SCP03t TLV.
    """
    isdp_aid = isdp_aid.upper()
    initial = card._state()
    session = _Session(card, isdp_aid, ecasd_key, ci_pem, now)
    responses: list[bytes] = []
    for tag, value in commands:
        response, stop = session.run(tag, bytes(value))
        responses.append(response)
        answered_tag, answered_value, _ = remote.split_tlvs(response)[0]
        if stop or es8.is_error_response(answered_tag, answered_value):
            break
    if card._state() != initial or card.staged_packages:
        try:
            card.save()
        except BaseException:
            card._apply_state(initial)  # no answer for a state that is not on disk
            card.staged_packages.clear()
            raise
    return remote.encode_response_tlvs(len(responses), responses)


class _Session:
    """One script's worth of ES8 commands on one ISD-P (the state itself lives in the card)."""

    def __init__(self, card: Card, aid: str, ecasd_key: ec.EllipticCurvePrivateKey | None, ci_pem: bytes | None,
                 now: datetime.datetime) -> None:
        self.card, self.aid, self.ecasd_key, self.ci_pem, self.now = card, aid, ecasd_key, ci_pem, now
        self.scp03_kept = _UNCHANGED  # the SCP03 channel a refused command leaves behind (see the module doc)

    @property
    def isdp(self) -> IsdP | None:
        return self.card.profile(self.aid)

    def run(self, tag: int, value: bytes) -> tuple[bytes, bool]:
        """``(response TLV, stop)`` for one command. ``stop`` is set when the script must end although the answer
        is not an error (an aborted download)."""
        if tag == es8.TAG_C_APDU:
            return encode_tlv(es8.TAG_R_APDU, self._apdu(value)), False
        if tag in (es8.TAG_INITIALIZE_UPDATE, es8.TAG_EXTERNAL_AUTHENTICATE, es8.TAG_PROFILE_SEGMENT):
            return self._scp03t(tag, value)
        return encode_tlv(es8.TAG_BAD_FORMAT, bytes([es8.BAD_FORMAT_UNKNOWN_TAG])), True

    # --- '22' C-APDUs ---------------------------------------------------------------------------------------------

    def _apdu(self, raw: bytes) -> bytes:
        before = self.card._state()
        self.scp03_kept = _UNCHANGED
        try:
            data, sw = self._dispatch(raw)
        except Exception:  # a handler bug must not take the OTA front down; answer 6F00 with the state untouched
            log.exception("simulated eUICC %s, ISD-P %s: ES8 command %s failed", self.card.eid, self.aid, raw.hex())
            data, sw, self.scp03_kept = b"", SW_UNKNOWN, _UNCHANGED
        if sw != SW_OK:
            self.card._apply_state(before)  # a refused command changes nothing, but its secure channel (module doc)
            isdp = self.isdp
            if self.scp03_kept is not _UNCHANGED and isdp is not None:
                isdp.scp03 = self.scp03_kept
        return with_sw(data, sw)

    def _dispatch(self, raw: bytes) -> Response:
        try:
            apdu = Apdu.parse(raw)
        except ValueError:
            return b"", SW_WRONG_LENGTH
        if apdu.cla & 0xF8 != 0x80:
            return b"", SW_CLA
        if apdu.ins == es8.INS_INITIALIZE_UPDATE:
            return self._initialize_update(apdu)
        if apdu.ins == es8.INS_EXTERNAL_AUTHENTICATE:
            return self._external_authenticate(apdu)
        if apdu.cla & scp03.CLA_SECURE_MESSAGING:
            return self._secured(apdu)
        if apdu.ins == INS_INSTALL:
            return self._install(apdu)
        if apdu.ins == INS_STORE_DATA:
            return self._store_data(apdu)
        return b"", SW_INS

    def _install(self, apdu: Apdu) -> Response:
        if apdu.p1 != es8.P1_INSTALL_FOR_PERSONALIZATION:
            return b"", SW_WRONG_P1P2
        try:
            aid = es8.parse_install_for_personalization(apdu)
        except ValueError:
            return b"", SW_WRONG_DATA
        if aid.hex().upper() != self.aid or self.isdp is None:
            return b"", SW_NOT_FOUND
        return b"", SW_OK

    def _store_data(self, apdu: Apdu) -> Response:
        try:
            dgi, _ = es8.parse_store_data(apdu)
        except ValueError:
            return b"", SW_WRONG_DATA
        isdp = self.isdp
        if isdp is None:
            return b"", SW_NOT_FOUND
        if dgi == es8.DGI_SMDP_CERTIFICATE:
            return self._certificate(isdp, apdu.data)
        if dgi == es8.DGI_KEY_AGREEMENT:
            return self._key_agreement(isdp, apdu.data)
        if dgi == es8.DGI_CONNECTIVITY_PARAMETERS:
            return b"", SW_SECURITY  # only under the SCP03 secure channel (_secured)
        return b"", SW_WRONG_DATA

    def _certificate(self, isdp: IsdP, dgi_3a01: bytes) -> Response:
        if isdp.lifecycle != SELECTABLE:
            return b"", SW_CONDITIONS
        if self.ci_pem is None:
            return b"", SW_SECURITY  # nothing to verify the certificate with
        try:
            cert = ecka.parse_dgi_3a01(dgi_3a01)
        except ecka.EckaError:
            return b"", SW_WRONG_DATA
        try:
            verified = verify_gp_cert_by_ci(self.ci_pem, cert, self.now, "smdp")
            public_key = verified.public_key()
        except CertificateError as exc:
            log.info("simulated eUICC %s, ISD-P %s: SM-DP certificate refused: %s", self.card.eid, self.aid, exc)
            return b"", SW_SECURITY
        rc = os.urandom(RC_LENGTH)
        isdp.key_agreement = PendingKeyAgreement.for_key(rc, public_key)
        return ecka.challenge_response(rc), SW_OK

    def _key_agreement(self, isdp: IsdP, dgi_3a02: bytes) -> Response:
        pending = isdp.key_agreement
        if isdp.lifecycle != SELECTABLE or pending is None or self.ecasd_key is None:
            return b"", SW_CONDITIONS
        try:
            answer, keys, crt = ecka.card_key_agreement(self.ecasd_key, pending.key(), bytes.fromhex(pending.rc),
                                                        dgi_3a02)
        except ecka.EckaError as exc:
            log.info("simulated eUICC %s, ISD-P %s: 3A02 refused: %s", self.card.eid, self.aid, exc)
            return b"", SW_SECURITY if exc.kind == "signature" else SW_WRONG_DATA
        isdp.keyset = IsdpKeyset(kvn=crt.kvn, key_id=crt.key_id, enc=keys.enc.hex().upper(),
                                 mac=keys.mac.hex().upper(), dek=keys.dek.hex().upper())
        isdp.scp03t = scp03t.Scp03tCard(keys, crt.kvn).state()
        isdp.key_agreement = None
        isdp.download = None
        isdp.lifecycle = PERSONALIZED
        return answer, SW_OK

    # --- SCP03 on '22' C-APDUs: UpdateConnectivityParameters ------------------------------------------------------

    def _channel(self, isdp: IsdP) -> "_Scp03":
        return _Scp03.from_dict(isdp.scp03) if isdp.scp03 is not None else _Scp03()

    def _keep(self, isdp: IsdP, channel: "_Scp03") -> None:
        """The channel's new state, kept whatever the command's outcome (_apdu)."""
        isdp.scp03 = self.scp03_kept = channel.to_dict()

    def _initialize_update(self, apdu: Apdu) -> Response:
        isdp = self.isdp
        if apdu.cla != 0x80:
            return b"", SW_CLA
        if apdu.p2 != 0x00:
            return b"", SW_WRONG_P1P2
        if isdp is None or isdp.keyset is None or apdu.p1 not in (0x00, isdp.keyset.kvn):
            return b"", SW_NOT_FOUND
        if isdp.lifecycle not in (DISABLED, ENABLED):
            return b"", SW_CONDITIONS
        if len(apdu.data) != 8:
            return b"", SW_WRONG_LENGTH
        channel = self._channel(isdp)
        channel.end()  # INITIALIZE UPDATE ends the session in progress
        if channel.sequence_counter >= scp03.SEQUENCE_COUNTER_MAX:
            self._keep(isdp, channel)
            return b"", SW_CONDITIONS
        keys = isdp.keyset.static_keys()
        channel.sequence_counter += 1
        card_challenge = scp03.pseudo_random_card_challenge(keys.enc, channel.sequence_counter, bytes.fromhex(isdp.aid))
        session = scp03.session_keys(keys, apdu.data, card_challenge)
        channel.phase = _Scp03.INITIALIZED
        channel.keys = session
        channel.host_cryptogram = scp03.host_cryptogram(session, apdu.data, card_challenge)
        self._keep(isdp, channel)
        return scp03.initialize_update_response(isdp.keyset.kvn, card_challenge, scp03.card_cryptogram(
            session, apdu.data, card_challenge), channel.sequence_counter), SW_OK

    def _external_authenticate(self, apdu: Apdu) -> Response:
        isdp = self.isdp
        channel = self._channel(isdp) if isdp is not None else None
        if channel is None or channel.phase != _Scp03.INITIALIZED:
            return b"", SW_CONDITIONS
        sw = self._authenticate(channel, apdu)
        if sw != SW_OK:
            channel.end()
        self._keep(isdp, channel)
        return b"", sw

    @staticmethod
    def _authenticate(channel: "_Scp03", apdu: Apdu) -> int:
        """EXTERNAL AUTHENTICATE's checks, in order; on success the channel is authenticated."""
        if apdu.cla != 0x80 | scp03.CLA_SECURE_MESSAGING:
            return SW_CLA
        if len(apdu.data) != 16:
            return SW_WRONG_LENGTH
        cryptogram, mac = apdu.data[:8], apdu.data[8:]
        full = scp03.command_mac(channel.keys.s_mac, bytes(16), bytes([apdu.cla, apdu.ins, apdu.p1, apdu.p2, 16]),
                                 cryptogram)
        if not hmac.compare_digest(mac, full[:scp03.MAC_LENGTH]):
            return SW_SECURITY
        if not hmac.compare_digest(cryptogram, channel.host_cryptogram):
            return es8.SW_AUTHENTICATION_FAILED
        if apdu.p1 != scp03t.SECURITY_LEVEL or apdu.p2 != 0x00:
            return SW_WRONG_P1P2
        channel.phase, channel.mcv, channel.counter, channel.host_cryptogram = _Scp03.AUTHENTICATED, full, 1, None
        return SW_OK

    def _secured(self, apdu: Apdu) -> Response:
        """A command under secure messaging: checked and deciphered, run, its answer R-MACed."""
        isdp = self.isdp
        channel = self._channel(isdp) if isdp is not None else None
        if channel is None or channel.phase != _Scp03.AUTHENTICATED:
            return b"", SW_SECURITY
        plain = channel.unwrap(apdu)
        self._keep(isdp, channel)
        if plain is None:
            return b"", SW_SECURITY
        data, sw = self._connectivity_parameters(isdp, plain) if plain.ins == INS_STORE_DATA else (b"", SW_INS)
        return channel.wrap_response(data, sw), sw

    @staticmethod
    def _connectivity_parameters(isdp: IsdP, apdu: Apdu) -> Response:
        try:
            dgi, value = es8.parse_store_data(apdu)
        except ValueError:
            return b"", SW_WRONG_DATA
        if dgi != es8.DGI_CONNECTIVITY_PARAMETERS or not value:
            return b"", SW_WRONG_DATA
        try:
            for _ in iter_tlvs(value):
                pass
        except TlvError:
            return b"", SW_WRONG_DATA
        isdp.connectivity_parameters = value.hex().upper()
        return b"", SW_OK

    # --- SCP03t TLVs -----------------------------------------------------------------------------------------------

    def _scp03t(self, tag: int, value: bytes) -> tuple[bytes, bool]:
        isdp = self.isdp
        if isdp is None or isdp.keyset is None or isdp.scp03t is None:
            return scp03t.encode_error(tag, scp03t.REASON_UNKNOWN_KEY), False
        if isdp.lifecycle != PERSONALIZED:
            return scp03t.encode_error(tag, scp03t.REASON_NO_SESSION), False
        before = copy.deepcopy(isdp)
        try:
            return self._scp03t_command(isdp, tag, value)
        except Exception:  # a bug: the state goes back, and the session ends as after any SCP03t error
            log.exception("simulated eUICC %s, ISD-P %s: SCP03t '%02X' failed", self.card.eid, self.aid, tag)
            self._restore(before)
            isdp = self.isdp
            assert isdp is not None
            self._end(isdp, scp03t.Scp03tCard.from_state(isdp.scp03t))
            return scp03t.encode_error(tag, scp03t.REASON_FORMAT), False

    def _restore(self, before: IsdP) -> None:
        self.card.profiles[self.card.profiles.index(self.isdp)] = before

    def _scp03t_command(self, isdp: IsdP, tag: int, value: bytes) -> tuple[bytes, bool]:
        channel = scp03t.Scp03tCard.from_state(isdp.scp03t)
        if tag == es8.TAG_INITIALIZE_UPDATE:
            isdp.download = None  # a new session starts the package over
        answer, plaintext = channel.process(tag, value)
        if plaintext is None:
            if answer[:1] == b"\x9F":
                isdp.download = None  # the error ended the session: what it carried is lost
            isdp.scp03t = channel.state()
            return answer, False
        return self._segment(isdp, channel, plaintext)

    def _segment(self, isdp: IsdP, channel: scp03t.Scp03tCard, plaintext: bytes) -> tuple[bytes, bool]:
        download = isdp.download or Download(reader=saip.PackageReader().state())
        outcome = _receive(download, plaintext, isdp.memory)
        if isinstance(outcome, _Refusal):
            failed = saip.PeStatus(outcome.status, identification=_pe_identification(outcome.index))
            answer = saip.encode_euicc_response(_ok_statuses(outcome.index) + [failed], aborted=True)
            response = channel.wrap_response(answer)
            self._end(isdp, channel)
            return response, True
        if isinstance(outcome, saip.ProfileSummary):
            response = channel.wrap_response(saip.encode_euicc_response(_ok_statuses(download.pe_count)))
            package = bytes.fromhex(download.package)
            isdp.iccid, isdp.imsi, isdp.msisdn = outcome.iccid, outcome.imsi, outcome.msisdn
            isdp.pol1 = Pol1.from_pol(outcome.pol1)
            isdp.package_file = self.card.stage_package(isdp.aid, package)
            isdp.lifecycle = DISABLED
            self._end(isdp, channel)
            return response, False
        isdp.download = download
        response = channel.wrap_response(b"")
        isdp.scp03t = channel.state()
        return response, False

    def _end(self, isdp: IsdP, channel: scp03t.Scp03tCard) -> None:
        """End the SCP03t session (keys and sequence counter kept) and drop any partial download."""
        channel.end_session()
        isdp.scp03t = channel.state()
        isdp.download = None


@dataclass
class _Scp03:
    """The ISD-P's SCP03 channel on C-APDUs (GP Amd D, security level '33'), as kept in ``IsdP.scp03``: the sessions
    counted so far, the phase, and in a session its keys, the host cryptogram awaited (initialized) or the MAC
    chaining value and the encryption counter of the next command (authenticated)."""

    IDLE, INITIALIZED, AUTHENTICATED = "idle", "initialized", "authenticated"

    sequence_counter: int = 0
    phase: str = IDLE
    keys: scp03.SessionKeys | None = None
    host_cryptogram: bytes | None = None
    mcv: bytes = bytes(16)
    counter: int = 1

    def end(self) -> None:
        self.phase, self.keys, self.host_cryptogram, self.mcv, self.counter = self.IDLE, None, None, bytes(16), 1

    def unwrap(self, apdu: Apdu) -> Apdu | None:
        """The plain command, the MCV and the counter moved on; None (the session ended) when the C-MAC or the
        padding of the ciphered part is wrong."""
        assert self.keys is not None
        if len(apdu.data) < scp03.MAC_LENGTH:
            self.end()
            return None
        sent, mac = apdu.data[:-scp03.MAC_LENGTH], apdu.data[-scp03.MAC_LENGTH:]
        full = scp03.command_mac(self.keys.s_mac, self.mcv, bytes([apdu.cla, apdu.ins, apdu.p1, apdu.p2,
                                                                      len(apdu.data)]), sent)
        if not hmac.compare_digest(mac, full[:scp03.MAC_LENGTH]):
            self.end()
            return None
        counter, self.mcv, self.counter = self.counter, full, self.counter + 1
        data = b""
        if sent:
            try:
                data = scp03.unpad80(scp03.aes_cbc_decrypt(self.keys.s_enc, scp03.command_icv(self.keys.s_enc, counter),
                                                           sent))
            except ValueError:
                self.end()
                return None
        return Apdu(apdu.cla & ~scp03.CLA_SECURE_MESSAGING, apdu.ins, apdu.p1, apdu.p2, data, apdu.le)

    def wrap_response(self, data: bytes, sw: int) -> bytes:
        """The answer to the command just unwrapped: on 9000, R-ENC of ``data`` and the R-MAC (security level
        '33'); an error SW plain (Amd D: no R-MAC on an error)."""
        if sw != SW_OK or self.keys is None:
            return data
        ciphered = scp03.aes_cbc_encrypt(self.keys.s_enc, scp03.response_icv(self.keys.s_enc, self.counter - 1),
                                         scp03.pad80(data)) if data else b""
        return ciphered + scp03.response_mac(self.keys.s_rmac, self.mcv, ciphered, sw)

    def to_dict(self) -> dict:
        return {"sequence_counter": self.sequence_counter, "phase": self.phase,
                "keys": None if self.keys is None else {"s_enc": self.keys.s_enc.hex(), "s_mac": self.keys.s_mac.hex(),
                                                        "s_rmac": self.keys.s_rmac.hex()},
                "host_cryptogram": None if self.host_cryptogram is None else self.host_cryptogram.hex(),
                "mcv": self.mcv.hex(), "counter": self.counter}

    @classmethod
    def from_dict(cls, d: dict) -> "_Scp03":
        keys = d.get("keys")
        return cls(sequence_counter=d.get("sequence_counter", 0), phase=d.get("phase", cls.IDLE),
                   keys=None if keys is None else scp03.SessionKeys(bytes.fromhex(keys["s_enc"]),
                                                                    bytes.fromhex(keys["s_mac"]),
                                                                    bytes.fromhex(keys["s_rmac"])),
                   host_cryptogram=bytes.fromhex(d["host_cryptogram"]) if d.get("host_cryptogram") else None,
                   mcv=bytes.fromhex(d.get("mcv", "00" * 16)), counter=d.get("counter", 1))


@dataclass(frozen=True)
class _Refusal:
    """Why a package is refused: the PEStatus code and the 0-based position of the PE at fault."""

    status: int
    index: int


def _receive(download: Download, plaintext: bytes, quota: int) -> _Refusal | saip.ProfileSummary | None:
    """Add one segment to ``download`` (updated in place unless refused). Returns the refusal, the summary of the
    complete package once the end PE is in, or None when more is to come."""
    reader = saip.PackageReader.from_state(download.reader)
    package = bytes.fromhex(download.package)
    index = download.pe_count

    def failure(status: int) -> _Refusal:
        return _Refusal(status, index)

    try:
        raw_pes = reader.feed(plaintext)
    except saip.SaipError as exc:
        return failure(exc.status)
    last = None
    for raw in raw_pes:
        if last == _END_PE:
            return failure(saip.INVALID_REQUEST_FORMAT)  # a PE after the end PE
        try:
            last, _ = saip.validate_pe(raw)
        except saip.SaipError as exc:
            return failure(exc.status)
        if (index == 0) != (last == _HEADER_PE):
            return failure(saip.INVALID_REQUEST_FORMAT)  # the header first, and only first
        if quota > 0 and len(package) + len(raw) > quota:
            return failure(saip.NOT_ENOUGH_MEMORY)
        package += raw
        index += 1
    if quota > 0 and len(package) + reader.pending > quota:
        return failure(saip.NOT_ENOUGH_MEMORY)  # a PE still arriving already exceeds the quota
    download.reader, download.pe_count, download.package = reader.state(), index, package.hex().upper()
    if last != _END_PE:
        return None
    index -= 1  # from here on a failure concerns the end PE (the package as a whole)
    if reader.pending:
        return failure(saip.INVALID_REQUEST_FORMAT)  # bytes after the end PE
    try:
        return saip.summarise(package)
    except saip.SaipError as exc:
        return failure(exc.status)


def _pe_identification(index: int) -> int:
    """The ``identification`` reported for the PE at 0-based position ``index`` in the package (CHOICE: the
    position itself, header = 0; it equals PEHeader.identification in packages that number their PEs from 1 after
    the header, as ota.saip.demo_template and the TS.48 profiles do)."""
    return index


def _ok_statuses(count: int) -> list[saip.PeStatus]:
    """PE_OK for the first ``count`` PEs."""
    return [saip.PeStatus(saip.PE_OK, identification=_pe_identification(i)) for i in range(count)]
