"""``esx worker``: executes the asynchronous operations and delivers the outbox.

``--role smsr`` (the default) is the SM-SR's worker, described below; ``--role smdp`` is the
SM-DP's (:class:`SmdpWorker`): it runs the due steps of downloads and relayed ES2 functions
(smdp_core.download) and delivers the SM-DP's outbox rows. Both may share one database.

A worker holds one SMPP transceiver bind (``esx.smpp.Esme``) and runs two loops:

- the operation loop (``SmsrWorker.tick``): expire what ran out of time, handle SMS from the
  inbox (PoRs and card notifications), start queued operations and send due commands;
- the delivery loop: POST due callbacks and notifications from the outbox.

Every SMS the SMSC delivers is written to ``sms_inbox`` inside ``on_deliver_many`` (the deliver_sm that
arrived together, in one transaction), before the ESME answers their ``deliver_sm_resp``: an SMS the SMSC
considers delivered is always in the database.
All state lives in the database, so several workers (on several hosts, one PostgreSQL) share the
work, and a worker killed at any point loses nothing: its leases run out and another worker, or
the same one restarted, carries on.
"""
from __future__ import annotations

import logging
import signal
import threading
from datetime import datetime, timezone
from pathlib import Path

from esx.doorbell import SMDP_OUTBOX, SMDP_STEPS, SMSR_OPERATIONS, SMSR_OUTBOX, Bell, Doorbell
from esx.outbox import deliver_due
from esx.server import Config, EsxRuntime
from esx.smpp import Esme, SmppError
from ota import sms
from ota.smpp import ShortMessage
from persistence.db import Database
from persistence.prepared import Prepared, dbapi
from smsr_core.ops_models import SmsInbox
from smsr_core.sms_link import OutboundSms

log = logging.getLogger(__name__)

_INSERT_SMS = Prepared(SmsInbox.__table__.insert(),
                       column_keys=["received_at", "source_addr", "destination_addr", "user_data", "concat_ref"])


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class _Worker:
    """What both workers share: the runtime, the poll loop, the stop event, an HTTP client for the outbox."""

    role = ""

    def __init__(self, config: Config, db: Database | None = None) -> None:
        self.config = config
        self.db = db or Database(config.database_url)
        self.runtime = EsxRuntime(config, self.db)
        self.poll = float(config.ota_setting("poll_interval"))
        self.http = self.runtime.client_session(self.role)
        self.stop_event = threading.Event()

    def _loop(self, step, bell: Bell) -> None:
        """Run ``step``; when it reports work done (a count), go round again at once (there may be more), else sleep
        until the poll interval ends or the loop's doorbell rings (esx.doorbell)."""
        try:
            while not self.stop_event.is_set():
                busy = False
                try:
                    busy = bool(step())
                except Exception:  # keep going: the next tick retries from the database
                    log.exception("worker step failed")
                if not busy:
                    bell.wait(self.poll)
        finally:
            bell.close()

    def _run_loops(self, tick, deliver, loops: tuple[str, str]) -> None:
        steps, outbox = (Bell(Path(self.config.data_dir), loop) for loop in loops)
        delivery = threading.Thread(target=self._loop, args=(deliver, outbox), name="outbox", daemon=True)
        delivery.start()
        try:
            self._loop(tick, steps)
        finally:
            self.stop_event.set()
            delivery.join(timeout=15)


class SmsrWorker(_Worker):
    role = "smsr"

    def __init__(self, config: Config, db: Database | None = None) -> None:
        super().__init__(config, db)
        self.platform = self.runtime.platform  # rings the operation loop's doorbell (EsxRuntime.platform)
        self.esme = Esme(config.smpp(), on_deliver=self.on_deliver, on_deliver_many=self.on_deliver_many)
        self.inbox_bell = Doorbell(Path(config.data_dir), SMSR_OPERATIONS)

    # -- SMS in ------------------------------------------------------------------------------

    def on_deliver(self, message: ShortMessage) -> None:
        self.on_deliver_many([message])

    def on_deliver_many(self, messages: list[ShortMessage]) -> None:
        """Store the SMS in ``sms_inbox``, in one transaction (a Core INSERT on the DBAPI connection: the hottest
        write of the worker), then ring the operation loop's doorbell."""
        now = utcnow()
        rows = []
        for message in messages:
            try:
                ref = sms.parse_user_data(message.short_message).ref
            except ValueError:
                ref = None
            rows.append({"received_at": now, "source_addr": message.source_addr.lstrip("+"),
                         "destination_addr": message.destination_addr, "user_data": message.short_message,
                         "concat_ref": ref})
        with dbapi(self.db.engine, commit=True) as conn:
            for row in rows:
                _INSERT_SMS.run(conn, **row)
        self.inbox_bell.ring()  # SMS in: the operation loop reads them now, not at its next poll

    # -- SMS out -----------------------------------------------------------------------------

    def send(self, out: OutboundSms) -> bool:
        """Submit every part: True when the SMSC took them all (the caller records it, Platform.sent_many). An SMSC
        away or refusing (SmppError) is tried again later, anything else (a stored value the SMPP layer cannot
        encode, ...) will not get better: that operation fails and frees its eUICC, and the worker carries on with
        the others."""
        try:
            for segment in out.segments:
                self.esme.submit(out.destination, segment)
        except SmppError as exc:
            self.platform.send_failed(out, utcnow(), str(exc))
            return False
        except Exception:
            log.exception("SMS for eUICC %s (operation %s) cannot be submitted", out.eid, out.operation_id)
            self.platform.cannot_send(out, utcnow())
            return False
        return True

    # -- loops -------------------------------------------------------------------------------

    def tick(self) -> None:
        p = self.platform
        now = utcnow()
        p.expire(now)
        taken = [out for out in p.process_inbox(now) if self.send(out)]
        # due_sends starts the queued operations too, each with its first packet in one transaction
        taken += [out for out in p.due_sends(utcnow()) if self.send(out)]
        p.sent_many(taken, utcnow())  # what reached the network, recorded once for the whole tick
        self.runtime.handovers.tick(utcnow())  # SM-SR changes this SM-SR receives (smsr_core.handover)

    def deliver(self) -> int:
        return deliver_due(self.db, from_address=self.runtime.own_address("smsr"), http=self.http,
                           entities=self.runtime.entities, lease=self.platform.timing.lease)

    def run(self) -> None:
        self.esme.start()
        try:
            self._run_loops(self.tick, self.deliver, (SMSR_OPERATIONS, SMSR_OUTBOX))
        finally:
            self.esme.stop()
            self.db.dispose()


class SmdpWorker(_Worker):
    """The SM-DP's worker: runs due download steps (smdp_core.download) and delivers the SM-DP's outbox."""

    role = "smdp"

    def __init__(self, config: Config, db: Database | None = None) -> None:
        super().__init__(config, db)
        self.downloads = self.runtime.downloads

    def tick(self) -> None:
        self.downloads.tick(utcnow())

    def deliver(self) -> int:
        return deliver_due(self.db, from_address=self.runtime.own_address("smdp"), http=self.http,
                           entities=self.runtime.entities, lease=self.downloads.settings.lease, sender_role="smdp")

    def run(self) -> None:
        try:
            self._run_loops(self.tick, self.deliver, (SMDP_STEPS, SMDP_OUTBOX))
        finally:
            self.db.dispose()


def run_worker(config: Config, role: str = "smsr") -> None:
    worker = SmdpWorker(config) if role == "smdp" else SmsrWorker(config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop_event.set())
    worker.run()
