"""An in-process OTA loop around the SM-SR's platform core: no sockets, no threads, explicit clocks.

The SM-SR core (:class:`smsr_core.platform.Platform`) consumes events and returns events; this harness plays
every other part by hand, the way ``esx.worker`` and ``euicc_sim.network`` do at run time:

- the requester: :meth:`OtaHarness.request` is what an ES4/ES3 handler does after parsing (``Platform.accept``);
- the worker: :meth:`OtaHarness.start`, :meth:`OtaHarness.send_due`, :meth:`OtaHarness.process`,
  :meth:`OtaHarness.expire`, each with the ``now`` the test chooses;
- the SMSC: an SMS reaches the card whose *enabled* profile answers at the destination MSISDN (as
  ``SimulatedNetwork.card_for``), as an SMS-DELIVER inside an SMS-PP download ENVELOPE; what the card sends
  back (SMS-SUBMIT TPDUs) is stored in ``sms_inbox`` as ``SmsrWorker.on_deliver`` stores it, from the
  card's current MSISDN;
- the card: one :class:`euicc_sim.network.CardOta` per ``<data_dir>/euicc/<EID>/card.json``. Its default
  notifications leave only when the test calls :meth:`OtaHarness.notify`, so the state in between can be
  checked.

Lost SMS: a test loses what it names (``lose=True`` / ``lose_reply=True`` for every part one way, or a set
of part numbers), and :attr:`OtaHarness.losses` (an :class:`euicc_sim.network.Losses`, the loopback SMSC's
own loss model) may lose any SMS at a seeded rate.

Readers (:meth:`op`, :meth:`outbox`, :meth:`profiles`, :meth:`ota`, :func:`body`) return plain values.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from lxml import etree
from sqlalchemy import select

from esx.binding.ns import GSMA
from esx.demo import MNO_OID, SMSR_OID
from esx.outbox import OutboxSink, soap_body
from euicc_sim.card import Card
from euicc_sim.network import CARD_FILE, CardOta, Losses
from keys.pki import DevPki
from keys.secretbox import SecretBox
from ota import sms
from persistence.db import Database, sqlite_url
from persistence.outbox import OutboxMessage
from sgp02.roles import Caller
from smsr_core.models import ProfileRow
from smsr_core.ops_models import EuiccOta, Operation, SmsInbox
from smsr_core.platform import AsyncRequest, Function, Platform, Timing
from smsr_core.registry import EisRegistry
from smsr_core.sms_link import OutboundSms

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
SMSR_ADDRESS = "882001"  # the SM-SR's short code, TP-OA of what it sends and TP-DA of what cards send
SMSC_ADDRESS = "4479000000"  # the SMSC address in the SMS-PP download ENVELOPE
SCTS = bytes.fromhex("62501021000000")  # any fixed TP-SCTS: the card does not read it
MNO = Caller(MNO_OID, "mno")


def at(seconds: float) -> datetime:
    """T0 + ``seconds``: the tests' clock."""
    return T0 + timedelta(seconds=seconds)


@dataclass(frozen=True)
class Transmission:
    """What became of one OutboundSms on the simulated network."""

    sms: OutboundSms
    reached: str | None  # EID of the card that got (some of) it, None when no attached card got any part
    replies: list[sms.SmsSubmit]  # what reached the SM-SR of what that card sent back (PoR segments)
    sent_back: list[bytes] = ()  # the user data of every SMS the card sent back, lost or not


@dataclass(frozen=True)
class OpView:
    id: int
    eid: str
    function: str
    interface: str
    requester_id: str
    state: str
    step: str | None
    attempts: int
    counter: int | None
    sent_any: bool
    result: tuple[str | None, str | None, str | None]  # (result_status, result_subject, result_reason)
    euicc_response: str | None
    params: dict


@dataclass(frozen=True)
class OutboxView:
    kind: str
    operation: str
    target: str
    relates_to: str | None
    operation_id: int | None
    fields: dict[str, str]  # see body()


def body(xml: bytes) -> dict[str, str]:
    """The leaf texts of an outbox body by local name (first occurrence), plus "Eis/Iccids" when an Eis is there."""
    root = etree.fromstring(xml)
    out: dict[str, str] = {}
    for el in root.iter():
        if isinstance(el.tag, str) and len(el) == 0 and el.text is not None:
            out.setdefault(etree.QName(el).localname, el.text)
    eis = root.find(f"{{{GSMA}}}Eis")
    if eis is not None:
        out["Eis/Iccids"] = " ".join(el.text for el in eis.iter(f"{{{GSMA}}}Iccid"))
    return out


class OtaHarness:
    """One SM-SR (``smsr_oid``, SMS address ``address``) and the cards of ``<data_dir>/euicc``; a second SM-SR of a
    change test shares the first one's ``cards`` (one network, tests/smsr_core/test_handover.py)."""

    def __init__(self, data_dir: Path, timing: Timing, *, smsr_oid: str = SMSR_OID, address: str = SMSR_ADDRESS,
                 cards: dict[str, CardOta] | None = None, es7_address: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.smsr_oid, self.address = smsr_oid, address
        self.db = Database(sqlite_url(self.data_dir))
        self.box = box = SecretBox.from_data_dir(self.data_dir)
        self.platform = Platform(self.db, smsr_oid, OutboxSink(smsr_oid, es7_address=es7_address), box, timing)
        self.registry = EisRegistry(self.db, smsr_oid, DevPki.load(self.data_dir / "pki").ci_cert_pem, box)
        self.cards: dict[str, CardOta] = cards if cards is not None else {
            path.parent.name: CardOta(Card.load(path), path)
            for path in sorted((self.data_dir / "euicc").glob(f"*/{CARD_FILE}"))
        }
        self.transmissions: list[Transmission] = []
        self.losses = Losses()  # no loss unless a test sets a rate
        self._ids = itertools.count(1)

    def close(self) -> None:
        self.db.dispose()

    # -- the requester -------------------------------------------------------------------------

    def request(self, function: Function, eid: str, iccid: str | None = None, *, iccids: list[str] | None = None,
                caller: Caller = MNO, interface: str = "ES4", message_id: str | None = "auto",
                function_call_id: str | None = "auto", validity: int | None = None, now: datetime = T0,
                params: dict | None = None) -> int:
        """Accept a request as the ES4/ES3 handler does; the operation id. ``params``: more of what the handler
        reads from the request (e.g. ConnectivityParameters)."""
        n = next(self._ids)
        params = {**({"iccids": [i.upper() for i in iccids or []]} if function is Function.AUDIT else {"iccid": iccid}),
                  **(params or {})}
        op_id, _ = self.platform.accept(AsyncRequest(
            function=function, interface=interface, requester=caller, eid=eid,
            message_id=f"urn:uuid:request-{n}" if message_id == "auto" else message_id,
            function_call_id=f"call-{n}" if function_call_id == "auto" else function_call_id,
            reply_to=None, validity_period=validity, received_at=now, params=params))
        return op_id

    # -- the network ---------------------------------------------------------------------------

    def card(self, eid: str) -> Card:
        ota_front = self.cards[eid]
        ota_front.reload_if_changed()
        return ota_front.card

    def card_at(self, msisdn: str) -> CardOta | None:
        for ota_front in self.cards.values():
            ota_front.reload_if_changed()
            if ota_front.msisdn == msisdn:
                return ota_front
        return None

    def to_card(self, ota_front: CardOta, segments: list[bytes]) -> list[bytes]:
        """Each segment as an SMS-PP download; the SMS-SUBMIT TPDUs the card answers with."""
        replies: list[bytes] = []
        for ud in segments:
            deliver = sms.SmsDeliver(originator=self.address, pid=sms.PID_SIM_DATA_DOWNLOAD, dcs=sms.DCS_8BIT_CLASS2,
                                     scts=SCTS, ud=ud, udhi=True)
            replies += ota_front.envelope(sms.envelope_sms_pp(sms.encode_sms_deliver(deliver), SMSC_ADDRESS))
        return replies

    def to_smsr(self, source: str, tpdus: list[bytes], now: datetime) -> list[sms.SmsSubmit]:
        """Store what a card sent in ``sms_inbox``, as ``SmsrWorker.on_deliver`` does."""
        submits = [sms.decode_sms_submit(t) for t in tpdus]
        with self.db.session() as s:
            for submit in submits:
                assert submit.destination == self.address, (submit.destination, self.address)
                s.add(SmsInbox(received_at=now, source_addr=source, destination_addr=submit.destination,
                               user_data=submit.ud, concat_ref=sms.parse_user_data(submit.ud).ref))
        return submits

    def transmit(self, out: OutboundSms, now: datetime, *, lose: bool | set[int] = False,
                 lose_reply: bool | set[int] = False, to_eid: str | None = None) -> Transmission:
        """The SMSC takes ``out``: its parts reach the attached card, then ``Platform.sent``; the card's answer
        goes to the SM-SR's inbox.

        ``lose`` / ``lose_reply``: True loses every part that way, a set loses those part numbers (1, 2, ...);
        :attr:`losses` may lose others. ``to_eid`` hands it to that card whatever number it was addressed to (to
        test one thing at a time).
        """
        target = self.cards[to_eid] if to_eid else self.card_at(out.destination)
        delivered = [ud for n, ud in enumerate(out.segments, 1) if not self._lost("MT", n, lose)]
        tpdus = self.to_card(target, delivered) if target is not None and delivered else []
        self.platform.sent(out, now)
        kept = [t for n, t in enumerate(tpdus, 1) if not self._lost("MO", n, lose_reply)]
        replies = self.to_smsr(target.msisdn, kept, now) if kept else []
        t = Transmission(out, target.card.eid if target is not None and delivered else None, replies,
                         [sms.decode_sms_submit(tpdu).ud for tpdu in tpdus])
        self.transmissions.append(t)
        return t

    def _lost(self, direction: str, part: int, named: bool | set[int]) -> bool:
        named_lost = named is True or (not isinstance(named, bool) and part in named)
        return self.losses.lost(direction) or named_lost  # drawn for every SMS, so a seed gives one sequence

    def notify(self, eid: str, now: datetime) -> int:
        """The card sends every unconfirmed default notification now; how many SMS reached the SM-SR."""
        ota_front = self.cards[eid]
        ota_front.reload_if_changed()
        tpdus = [t for t in ota_front.due_notifications(self.address, 0.0, time.monotonic())
                 if not self.losses.lost("MO")]
        return len(self.to_smsr(ota_front.msisdn, tpdus, now)) if tpdus else 0

    # -- the worker ----------------------------------------------------------------------------

    def start(self, now: datetime = T0) -> int:
        return self.platform.start_ready(now)

    def send_due(self, now: datetime = T0, **loss) -> list[Transmission]:
        return [self.transmit(out, now, **loss) for out in self.platform.due_sends(now)]

    def process(self, now: datetime = T0, **loss) -> list[Transmission]:
        """Handle the inbox; every confirmation the SM-SR owes goes out at once."""
        return [self.transmit(out, now, **loss) for out in self.platform.process_inbox(now)]

    def expire(self, now: datetime) -> int:
        return self.platform.expire(now)

    def tick(self, now: datetime) -> None:
        """One round of ``SmsrWorker.tick``, in its order."""
        self.expire(now)
        self.process(now)
        self.send_due(now)  # starts the queued operations too (each with its first packet)

    def run(self, eid: str, now: datetime = T0) -> None:
        """Start, send, PoR, notification, confirmation: one operation of ``eid`` from queued to its end."""
        self.start(now)
        self.send_due(now)
        self.process(now)
        self.notify(eid, now)
        self.process(now)
        self.process(now)  # the PoR of the confirmation

    # -- the registry --------------------------------------------------------------------------

    def set_profile(self, iccid: str, **columns) -> None:
        """Change EIS columns of a profile directly (test set-up that no SM-SR function offers)."""
        with self.db.session() as s:
            row = s.scalars(select(ProfileRow).where(ProfileRow.iccid == iccid)).one()
            for name, value in columns.items():
                setattr(row, name, value)

    # -- readers -------------------------------------------------------------------------------

    def op(self, op_id: int) -> OpView:
        with self.db.session() as s:
            o = s.get(Operation, op_id)
            return OpView(o.id, o.eid, o.function, o.interface, o.requester_id, o.state, o.step, o.attempts,
                          o.counter, o.sent_any, (o.result_status, o.result_subject, o.result_reason),
                          o.euicc_response, dict(o.params))

    def ops(self) -> list[OpView]:
        with self.db.session() as s:
            ids = list(s.scalars(select(Operation.id).order_by(Operation.id)))
        return [self.op(i) for i in ids]

    def outbox(self) -> list[OutboxView]:
        with self.db.session() as s:
            return [OutboxView(r.kind, r.operation, r.target_oid, r.relates_to, r.operation_id, body(soap_body(r)))
                    for r in s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))]

    def profiles(self, eid: str) -> dict[str, tuple[str, bool]]:
        """The EIS: {iccid: (state, fall-back attribute)}."""
        with self.db.session() as s:
            return {p.iccid: (p.state, p.fallback_attribute)
                    for p in s.scalars(select(ProfileRow).where(ProfileRow.eid == eid).order_by(ProfileRow.id))}

    def ota(self, eid: str) -> EuiccOta | None:
        with self.db.session() as s:
            row = s.get(EuiccOta, eid)
            if row is not None:
                s.expunge(row)
            return row

    def inbox_outcomes(self) -> list[str]:
        with self.db.session() as s:
            return [r.outcome for r in s.scalars(select(SmsInbox).order_by(SmsInbox.id))]
