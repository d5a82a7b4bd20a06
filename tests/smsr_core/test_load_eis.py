"""smsr_core.models.load_eis reads the same EIS on PostgreSQL in one JSON-aggregated SELECT as the 4 SELECTs do:
security domains, profiles with POL2, AuditTrail records (their dates to the microsecond) and properties."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from esx.demo import demo_eid, init_instance
from persistence.db import Database
from persistence.prepared import dbapi
from smsr_core import models
from tests.e2e.conftest import _postgres_database


def test_one_json_select_reads_what_four_selects_read(tmp_path):
    for url in _postgres_database():
        init_instance(tmp_path / "i", demo=1, database_url=url, public_url="http://127.0.0.1:1")
        db = Database(url)
        eid = demo_eid(1)
        at = datetime(2026, 12, 3, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
        with db.session() as s:
            for n in range(2):
                s.add(models.EisAuditRecord(eid=eid, smsr_id="1.2.3", operation_date=at + timedelta(seconds=n),
                                            operation_type="0100", requester_id="1.2.4", status="Executed-Success",
                                            iccid="8900000000000000001F", isd_p_aid=None))
            s.add(models.AdditionalProperty(eid=eid, key="b", value="two & <three>"))
            s.add(models.AdditionalProperty(eid=eid, key="a", value="one"))
        with dbapi(db.engine) as c:
            four = models._load_eis_selects(c, eid)
            one = models.load_eis(c, eid)
            unknown = models.load_eis(c, "89" + "0" * 30)
        assert one == four
        assert len(one.audit_trail) == 2 and one.audit_trail[0].operation_date == at
        assert one.additional_properties == (("a", "one"), ("b", "two & <three>"))
        assert len(one.profiles) == 2 and one.signed_info.ecasd == four.signed_info.ecasd
        assert unknown is None
        db.dispose()
