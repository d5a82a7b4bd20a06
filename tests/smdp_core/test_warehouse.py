"""The SM-DP's profile warehouse (smdp_core.warehouse): sealed secrets, batch files, reservation and the stock's life.

Database tests run on SQLite and, when reachable, on PostgreSQL (``ESX_TEST_DATABASE_URL``, as in
tests/e2e/conftest.py): one migrated database per backend for the module, emptied after each test.

Reading guide: ``iccid(n)`` is a valid (Luhn) ICCID; ``record(n)`` a valid batch line for it; ``stocked``
is a database with MNO's type ``T1`` (ICCIDs 1-5) and OTHER's type ``T2`` (ICCIDs 101-102) in stock.
"""
from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from esx.models import metadata
from keys.secretbox import SecretBox
from persistence.db import Database, migrate, sqlite_url
from sgp02 import codes
from sgp02.codes import FunctionFailed
from sgp02.identifiers import luhn_digit
from smdp_core.models import ProfileBatch, ProfileType, StockProfile
from smdp_core.warehouse import (
    Reserved,
    StockRecord,
    StockStateError,
    Warehouse,
)
from tests.e2e.conftest import _postgres_database

MNO = "1.3.6.1.4.1.99999.2.1"
OTHER = "1.3.6.1.4.1.99999.2.2"
EID = "89049032000000000000000000000112"
TEMPLATE = b"\xa0\x03\x80\x01\x02"  # stands in for a SAIP package: the warehouse only stores the bytes
HEADER = "iccid,imsi,msisdn,ki,opc,pin1,puk1,pin2,puk2"


def iccid(n: int) -> str:
    body = f"894400000{n:09d}"
    return body + luhn_digit(body)


def record(n: int, **changes) -> StockRecord:
    values = dict(iccid=iccid(n), imsi=f"00101{n:010d}", msisdn=f"4477{n:08d}", ki=f"{n:032X}", opc=f"{n + 1:032x}",
                  pin1="1234", puk1="12345678", pin2="5678", puk2="87654321")
    values.update(changes)
    return StockRecord(**values)


def line(r: StockRecord) -> str:
    return ",".join(v or "" for v in (r.iccid, r.imsi, r.msisdn, r.ki, r.opc, r.pin1, r.puk1, r.pin2, r.puk2))


# -- fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request, tmp_path_factory):
    if request.param == "sqlite":
        url = sqlite_url(tmp_path_factory.mktemp("warehouse"))
        migrate(url)
        db = Database(url)
        yield db
        db.dispose()
    else:
        for url in _postgres_database():
            migrate(url)
            db = Database(url)
            yield db
            db.dispose()


@pytest.fixture
def db(database):
    yield database
    with database.session() as s:
        for table in (StockProfile, ProfileBatch, ProfileType):
            s.execute(sa.delete(table))


@pytest.fixture(scope="module")
def box(tmp_path_factory) -> SecretBox:
    return SecretBox.from_data_dir(tmp_path_factory.mktemp("key"))


@pytest.fixture
def wh(box) -> Warehouse:
    return Warehouse(box)


@pytest.fixture
def stocked(db, wh):
    with db.session() as s:
        wh.add_profile_type(s, mno_id=MNO, name="T1", template=TEMPLATE)
        wh.add_profile_type(s, mno_id=OTHER, name="T2", template=b"\x30\x00")
        wh.import_batch(s, mno_id=MNO, profile_type="T1", name="b1", records=[record(n) for n in range(1, 6)])
        wh.import_batch(s, mno_id=OTHER, profile_type="T2", name="b2", records=[record(n) for n in (101, 102)])
    return db


def reserve(wh, db, *, mno=MNO, profile_type=None, iccid=None, download_id=1) -> Reserved:
    with db.session() as s:
        return wh.reserve(s, mno_id=mno, eid=EID, download_id=download_id, profile_type=profile_type, iccid=iccid)


def state_of(db, n: int) -> tuple:
    with db.session() as s:
        row = s.get(StockProfile, iccid(n))
        return row.state, row.eid, row.download_id, row.releases


def counts(db, wh, mno=None) -> dict:
    with db.session() as s:
        return {t["profile_type"]: t for t in wh.stock(s, mno_id=mno)}


# -- schema --------------------------------------------------------------------------------------------------------


def test_migrations_give_the_models_tables(database):
    """``migrate()`` (hand-written Alembic revisions) and the SQLAlchemy models describe the same schema."""
    with database.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), metadata)
    assert diff == []
    assert {"profile_type", "profile_batch", "stock_profile"} <= set(sa.inspect(database.engine).get_table_names())


# -- batch files ---------------------------------------------------------------------------------------------------


def parse(wh, tmp_path, text: str) -> list[StockRecord]:
    path = tmp_path / "batch.csv"
    path.write_text(text)
    return list(wh.parse_batch_file(path))


def test_parse_batch_file(wh, tmp_path):
    r1, r2 = record(1), record(2, msisdn=None)
    got = parse(wh, tmp_path, f"{HEADER}\n{line(r1)}\n\n{line(r2)}\n")
    assert got == [r1, record(2, msisdn=None, opc=r2.opc.upper())]  # Ki/OPc normalised to upper case
    # Columns in any order, header case-insensitive, optional ADM1 (digits or hex).
    got = parse(wh, tmp_path, "IMSI,ICCID,msisdn,ki,opc,pin1,puk1,pin2,puk2,adm1\n"
                              f"{r1.imsi},{r1.iccid},,{r1.ki},{r1.opc},1234,12345678,5678,87654321,0a0b0c0d0e0f1011\n")
    assert (got[0].iccid, got[0].msisdn, got[0].adm1) == (r1.iccid, None, "0A0B0C0D0E0F1011")


@pytest.mark.parametrize("bad, message", [
    (dict(iccid=iccid(3)[:-1] + str((int(iccid(3)[-1]) + 1) % 10)), "line 3: ICCID .* wrong Luhn check digit"),
    (dict(iccid="89440000012"), "line 3: ICCID '89440000012' is not 19-20 digits"),
    (dict(imsi="00101A"), "line 3: IMSI '00101A' is not 6-15 digits"),
    (dict(msisdn="+4477"), "line 3: MSISDN"),
    (dict(ki="00" * 15), "line 3: Ki is not 32 hex digits"),
    (dict(opc="GG" * 16), "line 3: OPc is not 32 hex digits"),
    (dict(pin1="123"), "line 3: PIN1 is not 4-8 digits$"),
    (dict(pin2="123456789"), "line 3: PIN2"),
    (dict(puk1="1234567"), "line 3: PUK1 is not 8 digits$"),
    (dict(puk2="abcdefgh"), "line 3: PUK2"),
])
def test_parse_errors_name_the_line(wh, tmp_path, bad, message):
    text = f"{HEADER}\n{line(record(1))}\n{line(record(3, **bad))}\n{line(record(4))}\n"
    with pytest.raises(ValueError, match=message):
        parse(wh, tmp_path, text)


def test_parse_errors_in_the_file_shape(wh, tmp_path):
    with pytest.raises(ValueError, match=r"line 1: no header"):
        parse(wh, tmp_path, "")
    with pytest.raises(ValueError, match=r"line 1: bad header \(missing puk2; unknown pin3\)"):
        parse(wh, tmp_path, HEADER.replace("puk2", "pin3") + "\n")
    with pytest.raises(ValueError, match=r"line 2: 8 fields, the header names 9"):
        parse(wh, tmp_path, f"{HEADER}\n{line(record(1)).rsplit(',', 1)[0]}\n")
    (tmp_path / "latin1.csv").write_bytes(f"{HEADER}\n".encode() + b"\xe9\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        list(wh.parse_batch_file(tmp_path / "latin1.csv"))


# -- profile types and import --------------------------------------------------------------------------------------


def test_profile_types_belong_to_one_mno(db, wh):
    with db.session() as s:
        wh.add_profile_type(s, mno_id=MNO, name="T1", template=TEMPLATE, description="first")
    with db.session() as s:
        updated = wh.add_profile_type(s, mno_id=MNO, name="T1", template=b"\x30\x01")
        assert (updated.template, updated.description) == (b"\x30\x01", "first")
        with pytest.raises(ValueError, match="another MNO"):
            wh.add_profile_type(s, mno_id=OTHER, name="T1", template=TEMPLATE)
    with db.session() as s:
        assert s.scalars(sa.select(ProfileType.name)).all() == ["T1"]


def test_import_batch(db, wh, box):
    with db.session() as s:
        wh.add_profile_type(s, mno_id=MNO, name="T1", template=TEMPLATE)
    seen = []
    with db.session() as s:
        n = wh.import_batch(s, mno_id=MNO, profile_type="T1", name="b1", records=[record(i) for i in range(1, 251)],
                            progress=seen.append)
    assert n == 250 and seen == [100, 200, 250]
    with db.session() as s:
        batch = s.scalars(sa.select(ProfileBatch)).one()
        assert (batch.name, batch.count) == ("b1", 250)
        row = s.get(StockProfile, iccid(7))
        assert (row.imsi, row.msisdn, row.state, row.batch_id, row.releases) == (record(7).imsi, record(7).msisdn,
                                                                                 "available", batch.id, 0)
        assert b"12345678" not in row.secrets and row.state_changed_at is not None
        assert box.open(iccid(7), row.secrets) == record(7, opc=record(7).opc.upper()).secrets()
    assert counts(db, wh)["T1"]["available"] == 250


@pytest.mark.parametrize("mno, ptype, records, message", [
    (MNO, "nope", [record(9)], "unknown profile type 'nope'"),
    (OTHER, "T1", [record(9)], "profile type 'T1' belongs to another MNO"),
    (MNO, "T1", [record(9), record(3)], f"ICCID {iccid(3)} is already in stock"),
    (MNO, "T1", [record(9), record(10), record(9)], rf"ICCID {iccid(9)} appears twice in the batch \(records 1 and 3"),
    (MNO, "T1", [record(9), record(10, pin1="1")], "record 2: PIN1"),
    (MNO, "T1", [], "no profiles"),
])
def test_import_is_all_or_nothing(stocked, wh, mno, ptype, records, message):
    before = counts(stocked, wh)
    with stocked.session() as s:
        with pytest.raises(ValueError, match=message):
            wh.import_batch(s, mno_id=mno, profile_type=ptype, name="bad", records=records)
        assert not s.new and not s.dirty  # nothing was written before the error
    assert counts(stocked, wh) == before
    with stocked.session() as s:
        assert s.get(StockProfile, iccid(9)) is None and s.scalar(sa.select(sa.func.count(ProfileBatch.id))) == 2


def test_import_from_a_bad_file_adds_nothing(db, wh, tmp_path):
    with db.session() as s:
        wh.add_profile_type(s, mno_id=MNO, name="T1", template=TEMPLATE)
    path = tmp_path / "batch.csv"
    path.write_text(HEADER + "\n" + "\n".join(line(record(i)) for i in range(1, 150)) + "\nbroken\n")
    with pytest.raises(ValueError, match="line 151"):
        with db.session() as s:
            wh.import_batch(s, mno_id=MNO, profile_type="T1", name="b", records=wh.parse_batch_file(path))
    assert counts(db, wh)["T1"]["available"] == 0


# -- reservation ---------------------------------------------------------------------------------------------------


def test_reserve_by_type(stocked, wh):
    got = reserve(wh, stocked, profile_type="T1", download_id=42)
    r1 = record(1)
    assert got == Reserved(iccid=iccid(1), imsi=r1.imsi, msisdn=r1.msisdn, profile_type="T1", template=TEMPLATE,
                           ki=bytes.fromhex(r1.ki), opc=bytes.fromhex(r1.opc), pin1="1234", puk1="12345678",
                           pin2="5678", puk2="87654321", adm1=None)
    assert "ki=" not in repr(got) and "puk1" not in repr(got)  # secrets stay out of logs
    assert state_of(stocked, 1) == ("reserved", EID, 42, 0)
    assert reserve(wh, stocked, profile_type="T1").iccid == iccid(2)


def test_reserve_by_iccid(stocked, wh):
    assert reserve(wh, stocked, iccid=iccid(3)).iccid == iccid(3)
    assert reserve(wh, stocked, iccid=iccid(4), profile_type="T1").profile_type == "T1"
    assert state_of(stocked, 3)[0] == state_of(stocked, 4)[0] == "reserved"


@pytest.mark.parametrize("mno, ptype, iccid_n, code", [
    (MNO, None, None, codes.MISSING_CONDITIONAL_PARAMETER),  # 1.6/2.3
    (MNO, "nope", None, codes.PROFILE_TYPE_UNKNOWN),  # 8.2.5/3.9
    (MNO, "T2", None, codes.PROFILE_TYPE_NOT_ALLOWED),  # 8.2.5/1.2
    (MNO, "nope", 1, codes.PROFILE_TYPE_UNKNOWN),
    (MNO, None, 999, codes.ICCID_UNKNOWN),  # 8.2.1/3.9
    (MNO, None, 101, codes.ICCID_NOT_ALLOWED),  # 8.2.1/1.2
    (OTHER, None, 1, codes.ICCID_NOT_ALLOWED),
    (MNO, None, 5, codes.ICCID_IN_USE),  # 8.2.1/3.3 (ICCID 5 is reserved below)
    (MNO, "T3", 1, codes.ICCID_INVALID),  # 8.2.1/2.1: the MNO's ICCID, but not of the type named
    (OTHER, "T2", 1, codes.ICCID_NOT_ALLOWED),
    (OTHER, "T2", 101, None),
])
def test_reserve_refusals(stocked, wh, mno, ptype, iccid_n, code):
    reserve(wh, stocked, iccid=iccid(5))
    with stocked.session() as s:  # another of the MNO's types, with no stock
        wh.add_profile_type(s, mno_id=MNO, name="T3", template=TEMPLATE)
    target = iccid(iccid_n) if iccid_n else None
    if code is None:
        assert reserve(wh, stocked, mno=mno, profile_type=ptype, iccid=target).iccid == target
        return
    with pytest.raises(FunctionFailed) as err:
        reserve(wh, stocked, mno=mno, profile_type=ptype, iccid=target)
    assert err.value.code == code
    assert counts(stocked, wh)["T1"]["reserved"] == 1  # nothing moved


def test_reserve_codes_are_the_documented_numbers(stocked, wh):
    def failure(**kw) -> tuple[str, str, str | None]:
        with pytest.raises(FunctionFailed) as err:
            reserve(wh, stocked, **kw)
        return err.value.code.subject, err.value.code.reason, err.value.subject_identifier

    with stocked.session() as s:
        wh.add_profile_type(s, mno_id=MNO, name="T3", template=TEMPLATE)
    reserve(wh, stocked, iccid=iccid(5))
    assert failure() == ("1.6", "2.3", None)
    assert failure(profile_type="nope") == ("8.2.5", "3.9", "nope")
    assert failure(profile_type="T2") == ("8.2.5", "1.2", "T2")
    assert failure(profile_type="T3") == ("8.2.5", "3.7", "T3")  # known, ours, but no stock
    assert failure(iccid=iccid(999)) == ("8.2.1", "3.9", iccid(999))
    assert failure(iccid=iccid(101)) == ("8.2.1", "1.2", iccid(101))
    assert failure(iccid=iccid(5)) == ("8.2.1", "3.3", iccid(5))
    assert failure(iccid=iccid(1), profile_type="T3") == ("8.2.1", "2.1", iccid(1))


def test_reserve_until_the_stock_runs_out(stocked, wh):
    got = [reserve(wh, stocked, profile_type="T1", download_id=n).iccid for n in range(5)]
    assert got == [iccid(n) for n in range(1, 6)]
    with pytest.raises(FunctionFailed) as err:
        reserve(wh, stocked, profile_type="T1")
    assert err.value.code == codes.PROFILE_TYPE_NO_STOCK
    wh_counts = counts(stocked, wh)
    assert (wh_counts["T1"]["available"], wh_counts["T1"]["reserved"]) == (0, 5)


def test_reserve_moves_on_when_a_candidate_is_taken_meanwhile(stocked, wh, monkeypatch):
    """SQLite's path: the candidate read a moment ago was reserved by another worker before our UPDATE."""
    real_move = Warehouse._move
    stolen = []

    def racing_move(self, s, target, event, **values):
        if event == "reserve" and not stolen:
            with stocked.session() as other:
                stolen.append(real_move(self, other, target, event, eid="other", download_id=99))
        return real_move(self, s, target, event, **values)

    if stocked.engine.dialect.name == "postgresql":
        pytest.skip("on PostgreSQL the candidate is locked (FOR UPDATE SKIP LOCKED): nobody can take it meanwhile")
    monkeypatch.setattr(Warehouse, "_move", racing_move)
    got = reserve(wh, stocked, profile_type="T1", download_id=1)
    assert stolen == [True] and got.iccid == iccid(2)
    assert state_of(stocked, 1) == ("reserved", "other", 99, 0)


def test_concurrent_reservations_never_share_a_profile(stocked, wh):
    """Four workers reserve until the stock is gone: each profile goes to exactly one of them."""
    with stocked.session() as s:
        wh.import_batch(s, mno_id=MNO, profile_type="T1", name="more", records=[record(n) for n in range(6, 41)])
    taken: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker(k: int) -> None:
        barrier.wait()
        try:
            while True:
                taken.append(reserve(wh, stocked, profile_type="T1", download_id=k).iccid)
        except FunctionFailed as exc:
            if exc.code != codes.PROFILE_TYPE_NO_STOCK:
                errors.append(exc)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(taken) == [iccid(n) for n in range(1, 41)]


def test_postgresql_workers_do_not_wait_for_each_other(stocked, wh):
    """Two open transactions each hold a reservation at the same time (SKIP LOCKED), and not the same one."""
    if stocked.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: the second reservation waits for the first commit")
    barrier = threading.Barrier(2, timeout=20)
    got: dict[int, str] = {}
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            with stocked.session() as s:
                got[k] = wh.reserve(s, mno_id=MNO, eid=EID, download_id=k, profile_type="T1", iccid=None).iccid
                barrier.wait()  # both reserved, neither committed
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(got.values()) == [iccid(1), iccid(2)]
    assert {state_of(stocked, 1)[2], state_of(stocked, 2)[2]} == {1, 2}


# -- the stock's life ------------------------------------------------------------------------------------------------


def test_download_to_installed(stocked, wh):
    reserve(wh, stocked, iccid=iccid(1), download_id=7)
    with stocked.session() as s:
        wh.mark_downloading(s, iccid(1))
        wh.mark_downloading(s, iccid(1))  # a retry is a no-op
    assert state_of(stocked, 1) == ("downloading", EID, 7, 0)
    with stocked.session() as s:
        wh.mark_installed(s, iccid(1))
        wh.mark_installed(s, iccid(1))
    assert state_of(stocked, 1) == ("installed", EID, 7, 0)
    with stocked.session() as s:
        with pytest.raises(StockStateError, match="installed: it cannot be release"):
            wh.release(s, iccid(1))
        with pytest.raises(StockStateError):
            wh.mark_downloading(s, iccid(1))
    with pytest.raises(FunctionFailed) as err:
        reserve(wh, stocked, iccid=iccid(1))
    assert err.value.code == codes.ICCID_IN_USE


def test_held_gives_the_reserved_values_again(stocked, wh):
    """A later step of the download (or another worker after a crash) reads what the reservation gave."""
    got = reserve(wh, stocked, profile_type="T1", download_id=7)
    with stocked.session() as s:
        assert wh.held(s, got.iccid) == got
        wh.mark_downloading(s, got.iccid)
        assert wh.held(s, got.iccid) == got
        with pytest.raises(StockStateError, match="available: no download holds it"):
            wh.held(s, iccid(2))
        with pytest.raises(StockStateError, match="not in stock"):
            wh.held(s, iccid(999))
        wh.mark_installed(s, got.iccid)
        with pytest.raises(StockStateError, match="installed"):
            wh.held(s, got.iccid)


def test_release_returns_the_profile(stocked, wh):
    reserve(wh, stocked, iccid=iccid(1), download_id=7)
    with stocked.session() as s:
        before = s.get(StockProfile, iccid(1)).state_changed_at
        wh.release(s, iccid(1))
        wh.release(s, iccid(1))  # idempotent: counted once
    assert state_of(stocked, 1) == ("available", None, None, 1)
    with stocked.session() as s:
        assert s.get(StockProfile, iccid(1)).state_changed_at >= before
    reserve(wh, stocked, iccid=iccid(1), download_id=8)
    with stocked.session() as s:
        wh.mark_downloading(s, iccid(1))
        wh.release(s, iccid(1))
    assert state_of(stocked, 1) == ("available", None, None, 2)
    assert reserve(wh, stocked, profile_type="T1").iccid == iccid(1)  # back at the front of the queue


def test_transitions_from_the_wrong_state(stocked, wh):
    with stocked.session() as s:
        with pytest.raises(StockStateError, match="available: it cannot be installed"):
            wh.mark_installed(s, iccid(1))
        with pytest.raises(StockStateError, match="available: it cannot be downloading"):
            wh.mark_downloading(s, iccid(1))
        with pytest.raises(StockStateError, match="not in stock"):
            wh.release(s, iccid(999))
    reserve(wh, stocked, iccid=iccid(1))
    with stocked.session() as s:
        with pytest.raises(StockStateError, match="reserved: it cannot be installed"):
            wh.mark_installed(s, iccid(1))


def test_stock_counts(stocked, wh):
    with stocked.session() as s:
        wh.add_profile_type(s, mno_id=MNO, name="T0-empty", template=TEMPLATE)
    for n in (1, 2, 3):
        reserve(wh, stocked, iccid=iccid(n))
    with stocked.session() as s:
        wh.mark_downloading(s, iccid(2))
        wh.mark_downloading(s, iccid(3))
        wh.mark_installed(s, iccid(3))
    zero = {"available": 0, "reserved": 0, "downloading": 0, "installed": 0}
    with stocked.session() as s:
        assert wh.stock(s) == [
            {"profile_type": "T0-empty", "mno_id": MNO, **zero},
            {"profile_type": "T1", "mno_id": MNO, "available": 2, "reserved": 1, "downloading": 1, "installed": 1},
            {"profile_type": "T2", "mno_id": OTHER, **zero, "available": 2},
        ]
        assert [t["profile_type"] for t in wh.stock(s, mno_id=OTHER)] == ["T2"]
        assert wh.stock(s, mno_id="1.2.3") == []
