"""The per-eUICC OTA fields two SM-SR workers may write at once (smsr_core.platform: _TAKE_SEQ, _MARK_DIRTY,
_CLEAR_DIRTY): the card's last notification sequence number and the EIS's dirty flag.

Two workers handle two SMS of one card at the same moment: both read the eUICC's ``euicc_ota`` row, then each writes.
The tests play that interleaving with one worker's unit of work paused right after its read (the hook in
:func:`other_worker_after_the_read`), while the other handles its SMS to the end; on SQLite and on PostgreSQL. No
thread, no sleep: the paused unit of work holds no lock yet (it has only read), so the other never waits. The last
tests take the case where the other does wait: its UPDATE meets the row the first one wrote and has not committed
(:func:`while_held`); PostgreSQL checks the UPDATE's condition again on the committed row, SQLite runs it once the
database is free.
"""
from __future__ import annotations

import itertools
import random
import threading

import pytest
from sqlalchemy import Integer, bindparam, select, update

from esx.demo import demo_eid, demo_iccid, init_instance
from ota import es5
from sgp02.identifiers import isd_p_aid
from smsr_core.ops_models import EuiccOta
from smsr_core.platform import Function, Platform, Timing, _seq_is_new, _seq_is_new_sql
from tests.e2e.conftest import _postgres_database

from . import ota_harness
from .ota_harness import T0, OtaHarness, at

TIMING = Timing(por_timeout=30.0, default_validity=3600.0, lease=30.0, send_retry=2.0)
EID1, SPARE1 = demo_eid(1), demo_iccid(1, 1)


@pytest.fixture(params=["sqlite", "postgresql"])
def h(request, tmp_path, monkeypatch):
    """One demo eUICC (``esx init --demo 1``) on the backend under test, driven by hand (tests.smsr_core.ota_harness).
    The harness opens the instance's SQLite file; for PostgreSQL it is pointed at the instance's database."""
    data_dir = tmp_path / "instance"
    if request.param == "sqlite":
        init_instance(data_dir, demo=1)
        harness = OtaHarness(data_dir, TIMING)
        yield harness
        harness.close()
    else:
        for url in _postgres_database():
            init_instance(data_dir, demo=1, database_url=url)
            monkeypatch.setattr(ota_harness, "sqlite_url", lambda _data_dir: url)
            harness = OtaHarness(data_dir, TIMING)
            yield harness
            harness.close()


def other_worker_after_the_read(h: OtaHarness, monkeypatch, other) -> None:
    """The next SMS this worker handles is paused right after its unit of work read the eUICC, its OTA row and its
    operation in flight (Platform._card); ``other()`` (another worker's whole handling of another SMS, committed)
    runs then; then this one goes on with what it read."""
    real = h.platform._card
    pending = [other]

    def card(s, msisdn):
        got = real(s, msisdn)
        if pending:
            pending.pop()()
        return got

    monkeypatch.setattr(h.platform, "_card", card)


def outbox_kinds(h: OtaHarness) -> list[str]:
    return [m.operation for m in h.outbox()]


# -- the sequence number rule --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seq, last, new", [
    (1, -1, True),  # nothing seen yet
    (1, 1, False), (2, 1, True), (1, 2, False),  # the same, the next, an older one
    (0x8000, 1, True), (0x8001, 1, False),  # less than half the cycle (0x8000) ahead: new; more: old
    (1, 0xFFFF, True), (2, 0xFFFE, True), (0xFFFF, 1, False),  # the wrap: FFFF is followed by 1
    (0x7FFF, 0xFFFF, True), (0x8000, 0xFFFF, False),
])
def test_a_notification_is_new_when_less_than_half_the_cycle_ahead(seq, last, new):
    assert _seq_is_new(seq, last) is new


def test_the_database_applies_the_same_sequence_rule(h):
    """_TAKE_SEQ's condition agrees with _seq_is_new for the edges and a seeded sample of the whole range, on
    SQLite and PostgreSQL (whose ``%`` of a negative number is not Python's)."""
    edges = [-1, 0, 1, 2, 0x7FFE, 0x7FFF, 0x8000, 0x8001, 0xFFFE, 0xFFFF]
    rng = random.Random(7)
    pairs = list(itertools.product(edges[1:], edges)) + [(rng.randint(1, 0xFFFF), rng.randint(-1, 0xFFFF))
                                                         for _ in range(200)]
    rule = select(_seq_is_new_sql(bindparam("seq", type_=Integer), bindparam("last", type_=Integer)))
    with h.db.engine.connect() as c:
        got = [bool(c.execute(rule, {"seq": seq, "last": last}).scalar()) for seq, last in pairs]
    assert got == [_seq_is_new(seq, last) for seq, last in pairs]


# -- two workers, one card -----------------------------------------------------------------------------------------


def test_one_notification_handled_by_two_workers_at_once_is_taken_once(h, monkeypatch):
    """The card sent its notification twice (no confirmation yet), and two workers each took one copy. The first to
    record the sequence number takes it as new; the other, which read the OTA row before that, finds it a duplicate
    (one conditional UPDATE: Platform._take_notification_seq). A check of the row read earlier took it as new twice:
    the profile notifications to the MNO sent twice."""
    op_id = h.request(Function.ENABLE, EID1, SPARE1, message_id="urn:uuid:enable")
    h.start()
    h.send_due()
    h.process()
    assert h.op(op_id).step == "await_notification"
    assert h.notify(EID1, at(1)) == 1  # the first copy: this worker takes it

    def other_worker():  # meanwhile the card sends it again and another worker handles that copy to the end
        assert h.notify(EID1, at(1)) == 1
        assert len(h.process(at(1))) == 1

    other_worker_after_the_read(h, monkeypatch, other_worker)
    assert len(h.process(at(1))) == 1  # confirmed again all the same

    # in the order the copies came: the first copy is this worker's, which found it taken by then
    assert h.inbox_outcomes()[-4:-2] == ["notification 1: duplicate, confirmed again",
                                         "notification 1 type 02: 2 state change(s)"]
    assert outbox_kinds(h) == ["ES4-HandleProfileDisabledNotification", "ES4-HandleProfileEnabledNotification",
                               "ES4-EnableProfileCallback"]
    assert h.op(op_id).result == ("EXECUTED_SUCCESS", None, None)
    assert h.ota(EID1).last_notification_seq == 1


def test_a_dirty_mark_made_while_an_audit_is_answered_is_not_cleared_by_it(h, monkeypatch):
    """The EIS is dirty and an audit is on its way back. While one worker handles the audit's PoR, another handles a
    card notification that names an ISD-P the EIS does not know: it marks the EIS dirty and queues an audit. The
    first worker's audit must not clear that mark (the notification took a counter after the audit's packet:
    _CLEAR_DIRTY); it did, writing the "clean" it decided on from the row it had read."""
    with h.db.session() as s:
        h.platform._ota(s, EID1)
        s.execute(update(EuiccOta).where(EuiccOta.eid == EID1).values(dirty=True))  # an outcome unknown before
    audit = h.request(Function.AUDIT, EID1, iccids=[])
    h.start()
    [t] = h.send_due()
    assert len(t.replies) == 1  # the audit's PoR is in the inbox
    card = h.card(EID1)
    # the card says an ISD-P the EIS has no profile for is enabled (queued as the card queues its notifications)
    card._queue(es5.NOTIF_PROFILE_CHANGE_OK, isd_p_aid(5), [])
    card.save()

    def other_worker():
        assert h.notify(EID1, T0) == 1
        assert len(h.process(T0)) == 1
        assert h.ota(EID1).dirty is True

    other_worker_after_the_read(h, monkeypatch, other_worker)
    h.process(T0)

    assert h.op(audit).result == ("EXECUTED_SUCCESS", None, None)
    # the audit's PoR, the notification, the PoR of the notification's confirmation (not handled yet)
    assert h.inbox_outcomes() == [f"operation {audit} executed", "notification 1 type 02: 0 state change(s)", None]
    assert h.ota(EID1).dirty is True
    queued = h.ops()[-1]
    assert (queued.function, queued.interface, queued.state) == ("AuditEIS", "SMSR", "queued")

    # the audit the notification queued runs alone: it clears the flag
    h.start(at(1))
    h.send_due(at(1))
    h.process(at(1))
    assert h.op(queued.id).result == ("EXECUTED_SUCCESS", None, None)
    assert h.ota(EID1).dirty is False


def test_an_audit_answered_with_no_packet_built_since_clears_the_flag(h):
    """The plain case of _CLEAR_DIRTY: dirty before, the audit's PoR handled with nothing else for the card."""
    with h.db.session() as s:
        h.platform._ota(s, EID1)
        s.execute(update(EuiccOta).where(EuiccOta.eid == EID1).values(dirty=True))
    audit = h.request(Function.AUDIT, EID1, iccids=[])
    h.start()
    h.send_due()
    h.process()
    assert h.op(audit).result == ("EXECUTED_SUCCESS", None, None)
    assert h.ota(EID1).dirty is False


# -- the same, the second UPDATE waiting for the first's row -------------------------------------------------------


def while_held(h: OtaHarness, hold, then) -> object:
    """``hold(s)`` in a unit of work left open (it wrote the eUICC's OTA row: locked until commit), while ``then(s)``
    runs in another thread's unit of work; that one must wait for the row, and goes on once the first commits.
    What ``then`` returned."""
    first = h.db.session()
    hold(first.__enter__())
    got = {}

    def other():
        with h.db.session() as s:
            got["value"] = then(s)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(0.5)
    waited = thread.is_alive()
    first.__exit__(None, None, None)
    thread.join(30)
    assert waited and not thread.is_alive()
    return got["value"]


def test_a_notification_taken_in_an_open_unit_of_work_is_not_new_to_one_that_waited_for_it(h):
    with h.db.session() as s:
        h.platform._ota(s, EID1)

    def take(s):
        return Platform._take_notification_seq(s, s.get(EuiccOta, EID1), 1)

    def first(s):
        assert take(s) is True

    assert while_held(h, first, take) is False  # the second copy of notification 1: a duplicate
    assert h.ota(EID1).last_notification_seq == 1


def test_an_audit_that_waited_for_a_notification_marking_dirty_leaves_the_mark(h):
    with h.db.session() as s:
        h.platform._ota(s, EID1)
        s.execute(update(EuiccOta).where(EuiccOta.eid == EID1).values(dirty=True))
        audit_counter = Platform._next_counter(s, s.get(EuiccOta, EID1))  # the audit's packet

    def notification(s):  # its confirmation's counter, then the mark; not committed yet
        ota = s.get(EuiccOta, EID1)
        Platform._next_counter(s, ota)
        Platform._mark_dirty(s, ota)

    def audit(s):
        ota = s.get(EuiccOta, EID1)
        assert ota.dirty is True  # as committed before the notification's unit of work
        Platform._clear_dirty(s, ota, audit_counter)
        return ota.dirty

    assert while_held(h, notification, audit) is True
    assert h.ota(EID1).dirty is True
