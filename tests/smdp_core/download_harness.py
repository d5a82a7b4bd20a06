"""The SM-DP's download machinery in process, against the real SM-SR core and real simulated cards.

:class:`SmdpHarness` plays the SM-SR's ES3 endpoint for :class:`smdp_core.download.Downloads` (its
``SmsrPort``): ES3 requests are accepted by the real :class:`smsr_core.platform.Platform` exactly as the
ES3 handlers accept them, the SM-SR's OTA loop runs through :class:`tests.smsr_core.ota_harness.OtaHarness`
(SCP80 over simulated SMS to the card files), and the SM-SR's ES3 callbacks and notifications, written
to its outbox, are handed to the SM-DP as its ``/smdp/es3`` handlers do. Clocks are explicit.

:class:`SqlCount` counts the SQL statements and transactions the SM-DP runs (the SM-SR's, in the same database,
are left out: the harness pauses the count while it plays the SM-SR).
"""
from __future__ import annotations

import itertools
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterator

from lxml import etree
from sqlalchemy import event, select

from esx.binding.ns import GSMA
from esx.demo import SMDP_OID, SMSR_OID
from esx.outbox import SmdpOutboxSink, soap_body
from keys.pki import DevPki
from keys.secretbox import SecretBox
from persistence.engine import Doorbell
from persistence.entities import mnos_served_by
from persistence.outbox import OutboxMessage
from sgp02.codes import FunctionFailed, Status, StatusCode
from sgp02.roles import Caller
from smdp_core.download import Downloads, Settings, SmdpIdentity
from smdp_core.op_models import SmdpOperation
from smdp_core.warehouse import Warehouse
from smsr_core.ops_models import Operation
from smsr_core.platform import AsyncRequest, Function

from tests.smsr_core.ota_harness import OtaHarness

# The tests' clock starts at the real time: certificates (the dev PKI's, the ECASD's) are checked at "now"
# and were issued today.
T0 = datetime.now(timezone.utc).replace(microsecond=0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)

_P = f"{{{GSMA}}}"
FUNCTIONS = {"ES3-CreateISDP": Function.CREATE_ISDP, "ES3-SendData": Function.SEND_DATA,
             "ES3-EnableProfile": Function.ENABLE, "ES3-DisableProfile": Function.DISABLE,
             "ES3-DeleteISDP": Function.DELETE}


@dataclass
class Counted:
    statements: int = 0
    transactions: int = 0


class SqlCount:
    """SQL statements (``before_cursor_execute``) and transactions (``commit``: what a unit of work writes or reads
    under the ORM, and the commits of persistence.prepared blocks, whose plain reads are no transaction of their own
    on SQLite) on ``engine`` while counting."""

    def __init__(self, engine) -> None:
        self.current: Counted | None = None
        self._paused = 0
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._begin)

    def _statement(self, *args) -> None:
        if self.current is not None and not self._paused:
            self.current.statements += 1

    def _begin(self, *args) -> None:
        if self.current is not None and not self._paused:
            self.current.transactions += 1

    @contextmanager
    def counting(self) -> Iterator[Counted]:
        self.current = counted = Counted()
        try:
            yield counted
        finally:
            self.current = None

    @contextmanager
    def paused(self) -> Iterator[None]:
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1


class SmdpHarness:
    def __init__(self, h: OtaHarness, settings: Settings | None = None, doorbell: Doorbell | None = None) -> None:
        self.h = h
        self.sql = SqlCount(h.db.engine)
        self.now = T0
        pki = DevPki.load(h.data_dir / "pki")
        self.pki = pki
        self.box = SecretBox.from_data_dir(h.data_dir)
        self.warehouse = Warehouse(self.box)
        self.sent: list[tuple[str, dict]] = []  # every ES3 request the SM-DP made: what crossed ES3
        self.reachable = True
        ids, prefix = itertools.count(1), uuid.uuid4().hex[:8]  # unique across harnesses, as UUIDs are
        with h.db.session() as s:  # as the ES3 endpoint identifies the SM-DP (esx.server.EsxRuntime.caller_for)
            self.smdp = Caller(SMDP_OID, "smdp", mnos_served_by(s, SMDP_OID))
        self.downloads = Downloads(
            h.db, SmdpIdentity(SMDP_OID, pki.smdp_key, pki.smdp_gp_cert, pki.ci_cert_pem), self.warehouse, self.box,
            SmdpOutboxSink(SMDP_OID), lambda smsr_id: self if smsr_id == SMSR_OID else None, self.eum_certificate,
            settings or Settings(), new_message_id=lambda: f"urn:uuid:smdp-{prefix}-{next(ids)}", doorbell=doorbell)

    # -- the SM-SR, as the SM-DP's ES3 client sees it (smdp_core.download.SmsrPort) -----------------------------

    def eum_certificate(self, eum_id: str) -> bytes | None:
        return self.pki.eum_cert_pem if eum_id == self.pki.eum_oid else None

    def get_eis(self, eid: str):
        with self.sql.paused():
            return self.h.registry.get_eis(self.smdp, eid)

    def request(self, operation: str, *, message_id: str, validity: int | None, **params) -> None:
        from sgp02.codes import PeerUnreachable

        if not self.reachable:
            raise PeerUnreachable("the SM-SR is not reachable (test)")
        self.sent.append((operation, dict(params)))
        function = FUNCTIONS[operation]
        if function is Function.CREATE_ISDP:
            values = {"iccid": params["Iccid"].upper(), "mno_id": params["Mno-id"],
                      "required_memory": int(params["RequiredMemory"]), "more_to_do": False}
        elif function is Function.SEND_DATA:
            values = {"sd_aid": params["Sd-aid"].upper(), "data": params["Data"].upper(),
                      "more_to_do": bool(params.get("MoreToDo"))}
        else:
            values = {"iccid": params["Iccid"].upper()}
        with self.sql.paused():
            self.h.platform.accept(AsyncRequest(
                function=function, interface="ES3", requester=self.smdp, eid=params["Eid"].upper(),
                message_id=message_id, function_call_id=message_id, reply_to=None, validity_period=validity,
                received_at=self.now, params=values))

    def profile_download_completed(self, eid: str, iccid: str, *, profile_type, address) -> None:
        self.sent.append(("ES3-ProfileDownloadCompleted", {"Eid": eid, "Iccid": iccid}))
        with self.sql.paused():
            self.h.registry.profile_download_completed(self.smdp, eid, iccid, profile_type=profile_type,
                                                       address=address, pol2=None)

    # -- the SM-DP's /smdp/es3: what the SM-SR's outbox holds for the SM-DP ---------------------------------

    def deliver_es3(self) -> int:
        with self.sql.paused(), self.h.db.session() as s:
            rows = s.scalars(select(OutboxMessage).where(OutboxMessage.wsdl == "ES3SmDp.wsdl",
                                                         OutboxMessage.delivered_at.is_(None))
                             .order_by(OutboxMessage.id)).all()
            for row in rows:
                row.delivered_at = self.now
            messages = [(r.kind, r.operation, r.relates_to, soap_body(r)) for r in rows]
        for kind, operation, relates_to, raw in messages:
            body = etree.fromstring(raw)
            if kind == "callback":
                st = body.find(_P + "FunctionExecutionStatus")
                status = Status.parse(st.findtext(_P + "Status"))
                failure = None
                if status in (Status.FAILED, Status.EXPIRED):
                    scd = st.find(_P + "StatusCodeData")
                    failure = FunctionFailed(StatusCode(scd.findtext(_P + "Subject"), scd.findtext(_P + "Reason")),
                                             scd.findtext(_P + "Message"), status=status)
                self.downloads.on_callback(relates_to, operation.removesuffix("Callback"), status, failure,
                                           euicc_response=body.findtext(_P + "EuiccResponseData"),
                                           isd_p_aid=body.findtext(_P + "Isd-p-aid"), sender=SMSR_OID, now=self.now)
            else:
                change = operation.removeprefix("ES3-HandleProfile").removesuffix("Notification")
                self.downloads.on_notification(change, body.findtext(_P + "Mno-id"), body.findtext(_P + "Eid"),
                                               body.findtext(_P + "Iccid"), self.now)
        return len(messages)

    # -- driving ------------------------------------------------------------------------------------------

    def round(self, eid: str, now: datetime | None = None) -> None:
        """One round of both workers, the card's notifications and the SM-SR's ES3 deliveries."""
        now = now or self.now
        self.now = now
        self.downloads.tick(now)
        self.smsr_round(eid, now)
        self.downloads.tick(now)

    def smsr_round(self, eid: str, now: datetime | None = None) -> None:
        """The SM-SR's side of a round: its worker, the card, and its ES3 callbacks and notifications delivered to
        the SM-DP (whose handling is the SM-DP's: it is counted)."""
        now = now or self.now
        self.now = now
        with self.sql.paused():
            self.h.tick(now)
            self.h.process(now)
            self.h.notify(eid, now)
            self.h.process(now)
            self.h.process(now)
        self.deliver_es3()

    def run(self, op_id: int, eid: str, now: datetime | None = None, rounds: int = 40) -> SmdpOperation:
        for _ in range(rounds):
            if self.op(op_id).state == "done":
                break
            self.round(eid, now)
        return self.op(op_id)

    # -- readers ------------------------------------------------------------------------------------------

    def op(self, op_id: int) -> SmdpOperation:
        with self.sql.paused(), self.h.db.session() as s:  # the test's reading, not the SM-DP's work
            op = s.get(SmdpOperation, op_id)
            s.expunge(op)
            return op

    def smsr_ops(self, function: str) -> list[Operation]:
        with self.h.db.session() as s:
            rows = s.scalars(select(Operation).where(Operation.function == function).order_by(Operation.id)).all()
            for r in rows:
                s.expunge(r)
            return rows

    def es2_messages(self) -> list[OutboxMessage]:
        with self.h.db.session() as s:
            rows = s.scalars(select(OutboxMessage).where(OutboxMessage.sender_role == "smdp")
                             .order_by(OutboxMessage.id)).all()
            for r in rows:
                s.expunge(r)
            return rows
