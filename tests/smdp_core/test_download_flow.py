"""The download and the relayed functions on the step engine: the tables are the program, an ES3 callback is handled in
the transaction that stores it, the doorbell rings when a row is due now, and a step costs a known number of SQL
statements (SQLite, in process: the SM-DP core, the real SM-SR core and simulated cards, tests.smdp_core)."""
from __future__ import annotations

import pytest

import smdp_core.download as download_module
from esx.demo import MNO_OID, SMSR_OID, demo_iccid
from persistence.engine import Flow, Step
from smdp_core.download import DOWNLOAD_FLOW, RELAY_FLOW, Downloads, Es2Request, Es3Call, Es3Request, Settings

from .download_harness import T0, SmdpHarness
from .test_downloads import EID1, TIMING, demo_instance, download, dp, result  # noqa: F401,F811
from tests.smsr_core.ota_harness import OtaHarness


class Bell:
    def __init__(self) -> None:
        self.rings = 0

    def ring(self) -> None:
        self.rings += 1


@pytest.fixture
def rung(demo_instance, tmp_path):  # noqa: F811
    import shutil

    data_dir = tmp_path / "instance"
    shutil.copytree(demo_instance, data_dir)
    h = OtaHarness(data_dir, TIMING)
    bell = Bell()
    yield SmdpHarness(h, Settings(segment_size=512, segments_per_send=3, callback_grace=30.0), doorbell=bell), bell
    h.close()


def until_step(dp: SmdpHarness, op_id: int, step: str, rounds: int = 10) -> None:  # noqa: F811
    """SM-DP ticks and SM-SR rounds until the row is at ``step``, not yet sent."""
    for _ in range(rounds):
        op = dp.op(op_id)
        if (op.step, op.phase) == (step, "send"):
            return
        if op.phase == "send":
            dp.downloads.tick(T0)
        else:
            dp.smsr_round(EID1, T0)
    raise AssertionError(f"never at {step}: {dp.op(op_id).step}/{dp.op(op_id).phase}")


# -- the tables are the program ---------------------------------------------------------------------------------------


def test_the_tables_read_as_the_flow():
    assert [s.name for s in DOWNLOAD_FLOW.steps.values()] == [
        "reserve", "create_isdp", "keyset_1", "keyset_2", "scp03t_open", "download", "completed", "enable", "cleanup"]
    assert [s.name for s in RELAY_FLOW.steps.values()] == ["relay_check", "relay"]
    assert "create_isdp  ES3-CreateISDP" in DOWNLOAD_FLOW.table()


def test_downloads_refuse_a_table_that_names_a_method_they_lack(dp, monkeypatch):  # noqa: F811
    broken = Flow("ES2-DownloadProfile", [*DOWNLOAD_FLOW.steps.values(),
                                          Step("audit", "ES3-AuditEIS", run="_send_audit", answer="_answer_audit")])
    monkeypatch.setattr(download_module, "DOWNLOAD_FLOW", broken)
    with pytest.raises(TypeError, match="step audit names _send_audit"):
        Downloads(dp.h.db, dp.downloads.identity, dp.warehouse, dp.box, dp.downloads.sink, dp.downloads.smsr_for,
                  dp.eum_certificate)


def test_a_step_runs_the_method_its_table_row_names(dp, monkeypatch):  # noqa: F811
    """Renaming a step's method in the table is enough to run another: there is no dispatch by name pattern."""
    ran = []

    def keyset_1_by_another_name(s, op, now):
        ran.append(op.step)
        return dp.downloads._send_keyset_1(s, op, now)

    monkeypatch.setattr(dp.downloads, "keyset_1_by_another_name", keyset_1_by_another_name, raising=False)
    steps = [Step(s.name, s.does, run="keyset_1_by_another_name", answer=s.answer, then=s.then)
             if s.name == "keyset_1" else s for s in DOWNLOAD_FLOW.steps.values()]
    monkeypatch.setattr(download_module, "DOWNLOAD_FLOW", Flow("ES2-DownloadProfile", steps))
    op = dp.run(download(dp), EID1)
    assert result(op) == ("EXECUTED_SUCCESS", None, None) and ran == ["keyset_1"]


def test_asynchronous_steps_send_a_request_and_synchronous_ones_make_a_call(dp):  # noqa: F811
    """A step with an ``answer`` in the table returns the ES3 request to send; one without, the ES3 call to make."""
    from smdp_core.op_models import SmdpOperation

    op_id = download(dp)
    for step, kind, operation in (("reserve", Es3Call, None), ("keyset_1", Es3Request, "ES3-SendData")):
        until_step(dp, op_id, step)
        assert (DOWNLOAD_FLOW[step].answer is not None) is (kind is Es3Request)
        with dp.h.db.session() as s:
            exchange = DOWNLOAD_FLOW.runner(dp.downloads, step)(s, s.get(SmdpOperation, op_id), T0)
            s.rollback()
        assert isinstance(exchange, kind)
        assert operation is None or exchange.operation == operation


# -- an answer is handled where it is stored --------------------------------------------------------------------------


def test_a_callback_is_handled_in_the_transaction_that_stores_it(dp):  # noqa: F811
    op_id = download(dp)
    until_step(dp, op_id, "create_isdp")
    dp.downloads.tick(T0)  # CreateISDP sent
    assert (dp.op(op_id).step, dp.op(op_id).phase) == ("create_isdp", "await")
    with dp.sql.counting() as handled:
        dp.smsr_round(EID1, T0)  # the SM-SR creates the ISD-P; its callback reaches the SM-DP
    op = dp.op(op_id)
    # no SM-DP worker ran: the callback's own transaction moved the download on, due at once
    assert (op.step, op.phase, op.callback, op.isd_p_aid is not None) == ("keyset_1", "send", None, True)
    assert op.next_attempt_at.replace(tzinfo=None) == T0.replace(tzinfo=None)
    assert handled.transactions == 1


def test_a_callback_whose_handler_fails_is_kept_for_the_worker(dp, monkeypatch):  # noqa: F811
    op_id = download(dp)
    until_step(dp, op_id, "create_isdp")
    dp.downloads.tick(T0)

    def defect(*args):
        raise RuntimeError("a defect in the handler")

    monkeypatch.setattr(dp.downloads, "_answer_create_isdp", defect)
    dp.smsr_round(EID1, T0)
    op = dp.op(op_id)
    assert (op.step, op.phase, op.callback is not None) == ("create_isdp", "await", True)
    monkeypatch.undo()
    dp.downloads.tick(T0)  # the worker handles the stored callback
    assert (dp.op(op_id).step, dp.op(op_id).callback) == ("keyset_1", None)
    assert result(dp.run(op_id, EID1)) == ("EXECUTED_SUCCESS", None, None)


# -- the doorbell -----------------------------------------------------------------------------------------------------


def test_the_doorbell_rings_when_a_request_is_accepted_and_when_an_answer_came(rung):
    dp, bell = rung
    op_id = download(dp)
    assert bell.rings == 1  # accepted: reserve is due now
    until_step(dp, op_id, "create_isdp")
    dp.downloads.tick(T0)  # CreateISDP sent: nothing is due now
    before = bell.rings
    dp.smsr_round(EID1, T0)  # its callback: keyset_1 is due now
    assert bell.rings == before + 1
    assert result(dp.run(op_id, EID1)) == ("EXECUTED_SUCCESS", None, None)


def test_the_doorbell_stays_silent_for_what_is_not_due(rung):
    dp, bell = rung
    download(dp, smsr_id="1.3.6.1.4.1.99999.1.99")  # refused at once: answered, nothing to run
    assert bell.rings == 0
    assert not dp.downloads.on_callback("urn:uuid:nobody-awaits-this", "ES3-CreateISDP",
                                        download_module.Status.EXECUTED_SUCCESS, None)
    assert bell.rings == 0
    n = 9000
    dp.downloads.accept(Es2Request(function="EnableProfile", requester_id=MNO_OID, eid=EID1, smsr_id=SMSR_OID,
                                   message_id=f"urn:uuid:es2-{n}", function_call_id=f"es2-call-{n}", reply_to=None,
                                   validity_period=None, received_at=T0, iccid=demo_iccid(1, 1)))
    assert bell.rings == 1  # a relayed function accepted: due now


# -- what a step costs ----------------------------------------------------------------------------------------------


def test_a_send_data_step_costs_at_most_six_statements(dp):  # noqa: F811
    """Measured (SQLite): the worker's tick that sends a keyset SendData runs 4 statements in 2 transactions (what is
    due, a prepared read outside any transaction; the lease taken and the row read in one UPDATE ... RETURNING, the
    row written with its MessageID; await recorded); the callback's transaction 2 (the row found by its MessageID,
    moved to the next step). Before the engine: 11 in 8 (over two ticks) and 2 in 1; before the lease returned the
    row, 5 in 3; before the scan was prepared, 4 in 3."""
    op_id = download(dp)
    until_step(dp, op_id, "keyset_1")
    with dp.sql.counting() as worker:
        assert dp.downloads.tick(T0) == 1
    assert dp.sent[-1][0] == "ES3-SendData"
    with dp.sql.counting() as answered:
        dp.smsr_round(EID1, T0)
    assert dp.op(op_id).step == "keyset_2"
    assert (worker.statements, worker.transactions) == (4, 2)
    assert (answered.statements, answered.transactions) == (2, 1)
    assert worker.statements + answered.statements <= 6
    assert result(dp.run(op_id, EID1)) == ("EXECUTED_SUCCESS", None, None)


# -- the profile package --------------------------------------------------------------------------------------------


def test_the_package_is_personalised_once_per_download(demo_instance, tmp_path, monkeypatch):  # noqa: F811
    """CreateISDP needs the package's size and the download step its bytes: one personalisation serves both (and
    every batch of segments), and the worker forgets it once the last segment is answered."""
    import shutil

    shutil.copytree(demo_instance, tmp_path / "instance")
    h = OtaHarness(tmp_path / "instance", TIMING)
    dp = SmdpHarness(h, Settings(segment_size=512, segments_per_send=1, callback_grace=30.0))  # a SendData per segment
    built = []
    personalise = download_module.saip.personalise
    monkeypatch.setattr(download_module.saip, "personalise", lambda *a, **k: built.append(1) or personalise(*a, **k))
    op_id = download(dp)
    assert result(dp.run(op_id, EID1)) == ("EXECUTED_SUCCESS", None, None)
    sends = [p for op, p in dp.sent if op == "ES3-SendData"]
    assert len(sends) >= 5 and len(built) == 1  # 3 of key establishment and SCP03t, 2+ of segments
    assert dp.downloads._packages == {}
    h.close()


def test_a_worker_that_did_not_build_the_package_builds_the_same_bytes(dp):  # noqa: F811
    """Personalisation is deterministic: a worker on another host (or after a restart) sends what the first would."""
    op_id = download(dp)
    until_step(dp, op_id, "download")
    from smdp_core.op_models import SmdpOperation

    with dp.h.db.session() as s:
        op = s.get(SmdpOperation, op_id)
        kept = dp.downloads._package(s, op)
        fresh = SmdpHarness(dp.h, Settings(segment_size=512, segments_per_send=3, callback_grace=30.0))
        assert fresh.downloads._packages == {}
        assert fresh.downloads._package(s, op) == kept


def test_a_whole_download_costs_a_known_number_of_statements(dp):  # noqa: F811
    """Measured (SQLite): the SM-DP's side of one download with EnableProfile, from ES2 accept to the MNO's callback
    in the outbox, in the harness's rounds (two worker ticks per SM-SR round, so idle ticks' SELECTs count too).
    See the numbers below; before the package was kept, the address kept at reservation and the lease returned
    the row: 74 statements in 38 transactions (SELECT smdp_operation 17, stock_profile 4, profile_type 4)."""
    from collections import Counter

    from sqlalchemy import event

    from esx.demo import demo_eid

    assert result(dp.run(download(dp), EID1)) == ("EXECUTED_SUCCESS", None, None)  # warm-up
    kinds: Counter = Counter()

    def statement(conn, cursor, sql, *args):
        if dp.sql.current is not None and not dp.sql._paused:
            kinds[" ".join(sql.split()[:3 if sql.startswith("SELECT") else 2])] += 1

    event.listen(dp.h.db.engine, "before_cursor_execute", statement)
    eid2 = demo_eid(2)
    with dp.sql.counting() as whole:
        op = dp.run(download(dp, eid2), eid2)
    assert result(op) == ("EXECUTED_SUCCESS", None, None)
    # 64 before the new row was written once at accept (with its reserved profile) and the reserved stock row was no
    # more read again there (both: Downloads.accept, Warehouse.claim): 62; then 63 with the claim that ends the
    # row once (persistence.engine.finish_once: one conditional UPDATE). Transactions: 38 (counted as BEGINs) before
    # the scan of due rows and the "await" record became prepared statements (persistence.engine.DueScan: a read that
    # is no transaction of its own on SQLite); 24 counted as commits after.
    assert (whole.statements, whole.transactions) == (63, 24), kinds
    row_reads = sum(n for k, n in kinds.items() if k.startswith("SELECT smdp_operation.function"))
    row_updates = kinds["UPDATE smdp_operation"]
    stock_rows = sum(n for k, n in kinds.items() if k.startswith("SELECT stock_profile.iccid, stock_profile.profile_type_id"))
    # the row: per callback (6) and per synchronous call's outcome (2) (the replay check at accept reads an id only,
    # persistence.engine.replayed: 9 before); the stock's whole row only once, to personalise (reservation reads the
    # candidate's ICCID, IMSI and MSISDN)
    assert (row_reads, stock_rows) == (8, 1), kinds
    assert row_updates == 29, kinds  # 28, and the end claimed once (finish_once)


# -- accepting ES2-DownloadProfile ----------------------------------------------------------------------------------


def test_accepting_a_download_writes_its_row_once_and_reads_no_stock_row(dp):  # noqa: F811
    """Measured (SQLite): ES2-DownloadProfile accepted in 5 statements, 1 transaction: the replay check, the profile
    type, the candidate's ICCID/IMSI/MSISDN, the row INSERTed with the profile it holds, the stock's conditional UPDATE
    (download_id = the row's id). Before (Warehouse.reserve after accept_once): 7, the row INSERTed then UPDATEd with
    its ICCID and progress, and the reserved stock row read again (its secrets opened) after the UPDATE."""
    from collections import Counter

    from sqlalchemy import event

    from smdp_core.models import StockProfile
    from smdp_core.op_models import SmdpOperation

    download(dp)  # warm-up
    kinds: Counter = Counter()

    def statement(conn, cursor, sql, *args):
        kinds[" ".join(sql.split()[:2])] += 1

    with dp.sql.counting() as accepted:
        event.listen(dp.h.db.engine, "before_cursor_execute", statement)
        try:
            op_id = download(dp)
        finally:
            event.remove(dp.h.db.engine, "before_cursor_execute", statement)
    assert (accepted.statements, accepted.transactions) == (5, 1), kinds
    assert kinds["INSERT INTO"] == 1 and kinds["UPDATE stock_profile"] == 1 and kinds["UPDATE smdp_operation"] == 0
    with dp.h.db.session() as s:
        op = s.get(SmdpOperation, op_id)
        stock = s.get(StockProfile, op.iccid)
        assert (stock.state, stock.download_id, stock.eid) == ("reserved", op_id, op.eid)
        assert op.progress == {"reserved": True, "imsi": stock.imsi, "msisdn": stock.msisdn}
    assert result(dp.run(op_id, EID1)) == ("EXECUTED_SUCCESS", None, None)


def test_a_candidate_taken_meanwhile_leaves_the_row_with_the_profile_it_holds(dp):  # noqa: F811
    """SQLite's path (PostgreSQL locks the candidate): another worker reserves the candidate between our SELECT and
    our UPDATE; the row, written with that candidate, is updated to the next one, which names it."""
    from smdp_core.models import StockProfile
    from smdp_core.op_models import SmdpOperation
    from smdp_core.warehouse import Warehouse

    if dp.h.db.engine.dialect.name == "postgresql":
        pytest.skip("on PostgreSQL the candidate is locked (FOR UPDATE SKIP LOCKED): nobody can take it meanwhile")
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    stolen = []

    def steal_first_candidate(session, context, instances):  # just before the row's INSERT
        rows = [o for o in session.new if isinstance(o, SmdpOperation)]
        if rows and not stolen:
            with dp.h.db.session() as other:
                stolen.append((rows[0].iccid, Warehouse._move(dp.downloads.warehouse, other, rows[0].iccid, "reserve",
                                                              eid="other", download_id=99)))

    event.listen(Session, "before_flush", steal_first_candidate)
    try:
        op_id = download(dp)
    finally:
        event.remove(Session, "before_flush", steal_first_candidate)
    with dp.h.db.session() as s:
        op = s.get(SmdpOperation, op_id)
        taken = s.get(StockProfile, stolen[0][0])
        held = s.get(StockProfile, op.iccid)
        assert stolen[0][1] and (taken.eid, taken.download_id) == ("other", 99)
        assert op.iccid != taken.iccid and (held.state, held.download_id) == ("reserved", op_id)
        assert (op.progress["imsi"], op.progress["msisdn"]) == (held.imsi, held.msisdn)


def test_a_refused_reservation_leaves_no_trace_of_a_candidate(dp):  # noqa: F811
    """An ICCID already reserved: refused 8.2.1/3.3, the row written once (done), naming the ICCID asked for, with
    nothing of a reservation in its progress."""
    from smdp_core.op_models import SmdpOperation

    first = download(dp)
    with dp.h.db.session() as s:
        iccid = s.get(SmdpOperation, first).iccid
    refused = download(dp, profile_type=None, iccid=iccid)
    with dp.h.db.session() as s:
        op = s.get(SmdpOperation, refused)
        assert (op.state, op.result_subject, op.result_reason) == ("done", "8.2.1", "3.3")
        assert op.iccid == iccid and "reserved" not in op.progress
