"""The simulated radio network: a loopback SMSC and the eUICCs it reaches.

``esx smsc`` runs this. The SM-SR binds to the SMSC over SMPP as it would to an operator's. A
``submit_sm`` is routed to the card whose *enabled* profile answers at the destination MSISDN (a
disabled profile is not attached to any network, so an SMS to it is not delivered), handed to the
card as an SMS-PP download (SMS-DELIVER TPDU inside an ENVELOPE 'D1', TS 31.111), and what the
card sends back (PoR, default notifications: SMS-SUBMIT TPDUs, as a proactive SEND SHORT
MESSAGE would) goes to the SM-SR as ``deliver_sm`` from the card's current MSISDN.

Which SM-SR: the card answers a command to the originating address of the SMS that carried it, and sends its
notifications to the SM-SR address it holds (3A07, ``Card.smsr_sms_address``; a card that holds none uses the
network's ``smsr_address``, the first SM-SR's). The SMSC delivers each to the ESME bound for that destination
(``euicc_sim.smsc``), so two SM-SRs reach the same cards through one SMSC and each gets its own answers.

:class:`CardOta` is the card's OTA front (TS 102 225/226 on the card side): reassembly of
concatenated SMS, SCP80 checks (TAR, keys, cryptographic checksum, deciphering, the counter rule
of the SPI), execution of the expanded remote command script, the proof of receipt, and the
mobile-originated default notifications, re-sent until the SM-SR confirms them (3A08).

The TAR picks who runs the script: the ISD-R's TAR -> the ISD-R (:meth:`euicc_sim.card.Card.process`,
ES5); the TAR of an ISD-P (``ota.es8.isdp_tar`` of its AID) -> that ISD-P (``euicc_sim.es8.process_es8``,
ES8 relayed by the SM-SR); any other TAR -> PoR status '09' (TAR unknown). Both are secured with one of the
ISD-R's SCP80 key sets: the ISD-P has no SCP80 keys, the ISD-R forwards to it.

Key sets (the ISD-R may hold several: SM-SR change, ``euicc_sim.card``). The KVN in the high nibble of
KIc and KID (``keys.scp80``) names the key set a packet is unwrapped with; the counter rule, the record
of executed packets and the PoR are those of that key set, and the PoR is secured with it (TS 102 225:
the PoR uses the command's keys). A packet whose KIc and KID do not both name one key set the card
holds (SM-SR1's old keys after FinaliseISDRhandover, or a KVN never created) is not executed. CHOICE:
the card then answers, when the SPI asks for a PoR, an unsecured PoR (no CC, not ciphered) with status
'06' "unidentified security error" and counter 0: TS 102 225 has a card that cannot identify the
security header answer so (keys.scp80 module doc), an unsecured answer reveals nothing, and the sender
gets a definite "not for this card any more" instead of silence it would retry into. The SM-SR side's
``keys.scp80.unwrap_response`` believes such a PoR only because it reports an error.
Default notifications go under the key set :meth:`euicc_sim.card.Card.notification_keyset` names: the
one of the SM-SR whose address the card holds (see ``euicc_sim.card``), with counter 0 as SGP.02 asks.

Card state lives in ``<data_dir>/euicc/<EID>/card.json`` and survives restarts; a card whose
file changes on disk (``esx euicc set``) is reloaded before its next SMS.

Lost SMS (what lets the SM-SR retransmit instead of re-executing; see ``smsr_core.platform``):

- Reassembly (TS 23.040 §9.2.3.24.1): parts are kept by (originator, reference) and by sequence
  number until every part is there, across retransmissions of the same message; a part that comes
  again replaces the one held (the newest copy wins, so a reference reused by a later message
  cannot keep a stale part). At most :data:`MAX_PARTIAL_MESSAGES` messages wait for parts; a new
  one pushes out the oldest.
- Retransmitted secured packet. CHOICE of the simulated card: a command packet whose bytes are
  those of one of the last :data:`RECENT_PACKETS` packets it executed is not executed again; the
  card answers with the very PoR it sent then (same bytes, same concatenation reference). TS 102 225's
  counter rule alone would answer PoR status '02' (counter low) without data, and the SM-SR could
  not tell "executed, PoR lost" from "never arrived"; the SM-SR still handles that answer (an
  outcome it cannot know), for real cards. Remembering a few packets, not only the last, covers a
  notification confirmation that took the next counter while the operation's PoR was lost.
  Replaying a recorded packet changes nothing on the card and reveals nothing new.

``SimulatedNetwork(drop_rate=, drop_seed=)`` (``esx smsc --drop-rate 0.1 --drop-seed 7``) makes the
network lossy: each SMS, mobile-terminated (accepted by the SMSC, never given to the card) or
mobile-originated (sent by the card, never delivered to the SM-SR), is lost with that probability,
drawn from one seeded generator per direction, so a seed gives the same sequence of losses.
"""
from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from keys import scp80
from ota import es5, es8, remote, sms
from ota.smpp import ShortMessage

from .card import Card
from .es8 import process_es8
from .smsc import LoopbackSmsc

log = logging.getLogger(__name__)

CARD_FILE = "card.json"
MAX_PARTIAL_MESSAGES = 4  # concatenated messages waiting for parts; one operation and a confirmation need two
RECENT_PACKETS = 8  # executed packets whose PoR is kept, per key set, for a retransmission (Scp80KeySet.recent)


def card_keyset(card: Card) -> scp80.Scp80Keyset:
    """The SCP80 key set the card's notifications go under (its only one, before any SM-SR change);
    :class:`LookupError` for a card without key sets."""
    held = card.notification_keyset()
    if held is None:
        raise LookupError(f"simulated eUICC {card.eid} holds no SCP80 key set")
    return held.keyset()


class CardOta:
    """One card's OTA front (see the module doc). Pure bytes in, bytes out; no sockets."""

    def __init__(self, card: Card, path: Path, *, clock: Callable[[], datetime] | None = None) -> None:
        self.card = card
        self.path = path
        self.clock = clock or (lambda: datetime.now(timezone.utc))  # validity of SM-DP/SM-SR certificates (3A01)
        self.mtime = path.stat().st_mtime_ns if path.exists() else 0
        # (originator, reference) -> {sequence number: part}, oldest message first
        self.parts: dict[tuple[str, int], dict[int, sms.UserDataPart]] = {}
        self.notified_at: dict[int, float] = {}
        self.mo_ref = 0

    @property
    def msisdn(self) -> str | None:
        enabled = self.card.enabled_profile()
        return enabled.msisdn if enabled is not None else None

    def reload_if_changed(self) -> None:
        mtime = self.path.stat().st_mtime_ns
        if mtime != self.mtime:
            self.card = Card.load(self.path)
            self.mtime = mtime

    def _saved(self) -> None:
        self.card.save()
        self.mtime = self.path.stat().st_mtime_ns

    def _next_ref(self) -> int:
        self.mo_ref = (self.mo_ref + 1) % 256
        return self.mo_ref

    def _submits(self, destination: str, user_data: list[bytes]) -> list[bytes]:
        return [sms.encode_sms_submit(sms.SmsSubmit(destination=destination, pid=0x7F, dcs=0xF6, ud=ud, udhi=True,
                                                    mr=self._next_ref())) for ud in user_data]

    def envelope(self, data: bytes) -> list[bytes]:
        """An ENVELOPE (SMS-PP download); returns the SMS-SUBMIT TPDUs the card sends in reply."""
        if self.card.silent:
            return []
        _, tpdu = sms.parse_envelope_sms_pp(data)
        deliver = sms.decode_sms_deliver(tpdu)
        parts = self._reassembled(deliver.originator, sms.parse_user_data(deliver.ud))
        if parts is None:
            return []
        iei, packet = sms.reassemble(parts)
        if iei != sms.CPI:
            return []
        return self._submits(deliver.originator, self.execute(packet))

    def _reassembled(self, originator: str, part: sms.UserDataPart) -> list[sms.UserDataPart] | None:
        """Every part of the message ``part`` belongs to once all are here, else None (kept; module doc)."""
        if part.ref is None or part.total == 1:
            return [part]
        key = (originator, part.ref)
        held = self.parts.pop(key, {})
        if any(p.total != part.total for p in held.values()):
            held = {}  # the reference now names another message: what was held cannot belong to it
        held[part.seq] = part
        if len(held) == part.total:
            return [held[seq] for seq in sorted(held)]
        self.parts[key] = held  # re-inserted last: the most recent message
        while len(self.parts) > MAX_PARTIAL_MESSAGES:
            del self.parts[next(iter(self.parts))]
        return None

    def execute(self, packet: bytes) -> list[bytes]:
        """One command packet; returns the PoR as SMS user data segments (empty when none is due)."""
        try:
            spi, kic, kid, tar = scp80.peek_command(packet)
        except scp80.Scp80Error:
            return []  # not even a header: nothing to answer with
        kvn = kic >> 4
        held = self.card.scp80.keyset(kvn) if kid >> 4 == kvn else None
        run = self._script_runner(tar)
        if held is None:  # no key set of this card is named (module doc): an unsecured '06', or '09' for the TAR
            return self._unsecured_por(spi, tar, 0x09 if run is None else 0x06)
        keyset = held.keyset()
        status, counter, data = 0x00, 0, b""
        if run is None:
            status = 0x09
        else:
            try:
                command = scp80.unwrap_command(packet, keyset)
            except scp80.Scp80Error as exc:
                status = exc.status
            else:
                counter = command.counter
                stored = held.counter
                if spi.counter == "higher" and counter <= stored or spi.counter == "plus_one" and counter != stored + 1:
                    replayed = self._recorded_por(kvn, counter, packet)
                    if replayed is not None:
                        return replayed  # a retransmission of a packet already executed (module doc)
                    status = 0x02 if counter <= stored else 0x03
                else:
                    if spi.counter not in ("higher", "plus_one"):
                        data = run(command.data, kvn)
                        return self._por(keyset, spi, tar, counter, status, data)
                    # The new counter is saved with whatever the script changes, and at the latest with the
                    # PoR record, before the PoR leaves: a replay can never run the script twice.
                    held.counter = counter
                    with self.card.one_save():  # the script's changes, the counter and the PoR record: one write
                        data = run(command.data, kvn)
                        por = self._record(kvn, counter, packet, self._por(keyset, spi, tar, counter, 0x00, data))
                    self.mtime = self.path.stat().st_mtime_ns
                    return por
        return self._por(keyset, spi, tar, counter, status, data)

    def _por(self, keyset: scp80.Scp80Keyset, spi: scp80.Spi, tar: bytes, counter: int, status: int,
             data: bytes) -> list[bytes]:
        if spi.por == "none" or spi.por == "on_error" and status == 0:
            return []
        por = scp80.wrap_response(keyset, spi, tar, counter, status, data)
        return sms.segment(por, sms.RPI, self._next_ref())

    def _unsecured_por(self, spi: scp80.Spi, tar: bytes, status: int) -> list[bytes]:
        """A PoR without CC or ciphering, counter 0: for a packet under no key set the card holds (module doc)."""
        if spi.por == "none":
            return []
        # no key of the card is used: the key set passed only gives wrap_response a block size it does not use
        unused = scp80.Scp80Keyset(kvn=1, enc=bytes(16), mac=bytes(16))
        por = scp80.wrap_response(unused, spi.unsecured_por(), tar, 0, status, b"")
        return sms.segment(por, sms.RPI, self._next_ref())

    def _record(self, kvn: int, counter: int, packet: bytes, por: list[bytes]) -> list[bytes]:
        """Keep the PoR of an executed packet (persisted with the counter), for a retransmission of it.

        The key set is looked up again: a refused command restores the card's state, which makes new objects."""
        held = self.card.scp80.keyset(kvn)
        if held is not None:
            recent = [r for r in held.recent if r["counter"] != counter]
            recent.append({"counter": counter, "sha256": hashlib.sha256(packet).hexdigest(),
                           "por": [s.hex() for s in por]})
            held.recent = recent[-RECENT_PACKETS:]
        self._saved()
        return por

    def _recorded_por(self, kvn: int, counter: int, packet: bytes) -> list[bytes] | None:
        held = self.card.scp80.keyset(kvn)
        digest = hashlib.sha256(packet).hexdigest()
        for r in held.recent if held is not None else []:
            if r["counter"] == counter and r["sha256"] == digest:
                return [bytes.fromhex(s) for s in r["por"]]
        return None

    def _script_runner(self, tar: bytes) -> Callable[[bytes], bytes] | None:
        """What runs a script sent to ``tar``: the ISD-R, one ISD-P, or nothing (unknown TAR)."""
        if tar == bytes.fromhex(self.card.scp80.tar):
            return self.run_script
        for p in self.card.profiles:
            try:
                isdp_tar = es8.isdp_tar(bytes.fromhex(p.aid))
            except ValueError:
                continue  # an AID too short to carry a TAR cannot be reached over SCP80
            if isdp_tar == tar:
                return lambda data, kvn=None, aid=p.aid: self.run_es8(aid, data)
        return None

    def run_es8(self, aid: str, data: bytes) -> bytes:
        """An expanded remote script of ES8 command TLVs for ISD-P ``aid`` (``euicc_sim.es8``)."""
        try:
            commands = remote.decode_command_tlvs(data)
        except ValueError:
            return remote.encode_response_tlvs(0, [])
        return process_es8(self.card, aid, commands, ecasd_key=self.card.ecasd_key(), ci_pem=self.card.ci_pem(),
                           now=self.clock())

    def run_script(self, data: bytes, kvn: int | None = None) -> bytes:
        """The expanded remote command script (TS 102 226 5.2) that came under key set ``kvn``: stops at the first
        error SW."""
        try:
            apdus = remote.decode_command_script(data)
        except ValueError:
            return remote.encode_response_script(0, [])
        responses = []
        now = self.clock()
        for apdu in apdus:
            response = self.card.process(apdu, kvn=kvn, now=now)
            responses.append(response)
            sw1 = response[-2]
            if not (sw1 == 0x90 or sw1 == 0x61 or sw1 in (0x62, 0x63)):
                break
        return remote.encode_response_script(len(responses), responses)

    def due_notifications(self, smsr_address: str, retry: float, now: float) -> list[bytes]:
        """SMS-SUBMIT TPDUs for every unconfirmed notification not sent within ``retry`` seconds."""
        if self.card.silent:
            return []
        out = []
        held = self.card.notification_keyset()
        if held is None:
            return []  # a card without key sets cannot secure a notification
        keyset = held.keyset()
        tar = bytes.fromhex(self.card.scp80.tar)
        for pending in self.card.pending_notifications():
            last = self.notified_at.get(pending.seq)
            if last is not None and now - last < retry:
                continue
            self.notified_at[pending.seq] = now
            body = es5.encode_notification(es5.Notification(
                eid=bytes.fromhex(self.card.eid), type=pending.type, seq=pending.seq, isdp_aid=bytes.fromhex(pending.aid)))
            packet = scp80.wrap_command(keyset, scp80.SPI_NOTIFICATION, tar, 0, body)
            out.extend(self._submits(smsr_address, sms.segment(packet, sms.CPI, self._next_ref())))
        return out


class Losses:
    """A lossy radio network (module doc): :meth:`lost` says whether the next SMS one way is lost.

    One generator per direction ("MT" to the cards, "MO" from them), so the losses of one do not shift
    with the traffic of the other. No seed: a different sequence every run."""

    def __init__(self, rate: float = 0.0, seed: int | None = None) -> None:
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"loss rate {rate} is not in [0, 1)")
        self.rate = rate
        self._draws = {d: random.Random(None if seed is None else f"{seed}/{d}") for d in ("MT", "MO")}
        self.dropped = {"MT": 0, "MO": 0}

    def lost(self, direction: str) -> bool:
        if self.rate <= 0.0 or self._draws[direction].random() >= self.rate:
            return False
        self.dropped[direction] += 1
        return True


class SimulatedNetwork:
    """The loopback SMSC and every simulated card under ``cards_dir`` (see the module doc)."""

    def __init__(self, cards_dir: Path, *, host: str = "127.0.0.1", port: int = 2775, system_id: str = "esx",
                 password: str = "esx", notification_retry: float = 10.0, pdu_log: Path | None = None,
                 smsr_address: str = "882001", drop_rate: float = 0.0, drop_seed: int | None = None) -> None:
        self.cards_dir = cards_dir
        self.losses = Losses(drop_rate, drop_seed)
        self.notification_retry = notification_retry
        self.lock = threading.RLock()
        self.cards: dict[str, CardOta] = {}
        # MSISDN -> the card attached there, as last seen (card_for checks the one it names before trusting it)
        self._at: dict[str, CardOta] = {}
        self.smsc = LoopbackSmsc(host, port, system_id=system_id, password=password, on_submit=self.on_submit,
                                 pdu_log=pdu_log)
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.smsr_address = smsr_address  # where the notifications of a card that holds no SM-SR address go

    def notification_address(self, ota_front: CardOta) -> str:
        """Where ``ota_front``'s card sends its notifications: the SM-SR address it holds (3A07), else the default."""
        return ota_front.card.smsr_sms_address or self.smsr_address

    def load_cards(self) -> None:
        with self.lock:
            for path in sorted(self.cards_dir.glob(f"*/{CARD_FILE}")):
                eid = path.parent.name.upper()
                if eid not in self.cards:
                    self.cards[eid] = CardOta(Card.load(path), path)

    def card_for(self, msisdn: str) -> CardOta | None:
        """The card whose enabled profile has ``msisdn``. The card found there last time, when its file still says
        so (one stat); else every card is looked at again (new card folders, files changed by ``esx card``), and the
        first in EID order that answers there counts."""
        known = self._at.get(msisdn)
        if known is not None:
            known.reload_if_changed()
            if known.msisdn == msisdn:
                return known
        self.load_cards()
        self._at = {}
        for ota_front in self.cards.values():
            ota_front.reload_if_changed()
            if ota_front.msisdn is not None:
                self._at.setdefault(ota_front.msisdn, ota_front)
        return self._at.get(msisdn)

    def on_submit(self, message: ShortMessage) -> None:
        with self.lock:
            if self.losses.lost("MT"):
                log.info("lossy network: SMS to %s lost (%d MT so far)", message.destination_addr,
                         self.losses.dropped["MT"])
                return
            target = self.card_for(message.destination_addr.lstrip("+"))
            if target is None:
                log.info("no attached card answers at %s: SMS dropped", message.destination_addr)
                return
            deliver = sms.SmsDeliver(originator=message.source_addr, pid=message.protocol_id, dcs=message.data_coding,
                                     scts=sms.encode_scts(datetime.now(timezone.utc)), ud=message.short_message, udhi=bool(message.esm_class & 0x40))
            envelope = sms.envelope_sms_pp(sms.encode_sms_deliver(deliver), "4479000000")
            try:
                replies = target.envelope(envelope)
                replies += target.due_notifications(self.notification_address(target), self.notification_retry,
                                                    time.monotonic())
            except Exception:  # a defect in the simulator must not take the network down
                log.exception("card %s failed on an SMS", target.card.eid)
                return
            self._send(target, replies)

    def _send(self, target: CardOta, submits: list[bytes]) -> None:
        source = target.msisdn or ""
        for tpdu in submits:
            submit = sms.decode_sms_submit(tpdu)
            if self.losses.lost("MO"):
                log.info("lossy network: SMS from %s lost (%d MO so far)", source, self.losses.dropped["MO"])
                continue
            self.smsc.deliver(ShortMessage(source_addr=source, destination_addr=submit.destination,
                                           short_message=submit.ud, esm_class=0x40 if submit.udhi else 0,
                                           protocol_id=submit.pid, data_coding=submit.dcs))

    def _notifier(self) -> None:
        while not self.stop_event.wait(0.2):
            with self.lock:
                try:
                    self.load_cards()
                    for ota_front in self.cards.values():
                        ota_front.reload_if_changed()
                        self._send(ota_front, ota_front.due_notifications(
                            self.notification_address(ota_front), self.notification_retry, time.monotonic()))
                except Exception:
                    log.exception("notification round failed")

    def start(self) -> None:
        self.load_cards()
        self.smsc.start()
        self.thread = threading.Thread(target=self._notifier, name="card-notifications", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.smsc.stop()

