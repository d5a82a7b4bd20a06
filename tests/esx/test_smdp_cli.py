"""``esx smdp ...`` (the SM-DP's profile warehouse from the command line) and the demo stock of ``esx init``.

One instance (``init_instance(demo=0)``) for the module; the commands run through click's CliRunner
exactly as an operator types them.
"""
from __future__ import annotations

import json
import stat

import pytest
from click.testing import CliRunner

from esx.cli import main
from esx.demo import (
    DEMO_PROFILE_TYPE,
    MNO_OID,
    demo_iccid,
    demo_profiles,
    demo_stock_iccid,
    demo_stock_records,
    init_instance,
)
from keys.secretbox import KEY_FILE

from tests.smdp_core.test_warehouse import HEADER, iccid, line, record

OTHER_MNO = "1.3.6.1.4.1.99999.2.2"


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("smdp-cli")
    return data_dir, init_instance(data_dir, demo=0)


def esx(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def stock(data_dir, mno=None) -> dict:
    result = esx("smdp", "stock", "--data-dir", data_dir, *(("--mno", mno) if mno else ()))
    assert result.exit_code == 0, result.output
    return {t["profile_type"]: t for t in json.loads(result.stdout)}


def test_init_creates_the_demo_stock_once(instance, tmp_path):
    data_dir, doc = instance
    zero = {"reserved": 0, "downloading": 0, "installed": 0}
    assert doc["smdp"] == {"profile_types": [{"profile_type": DEMO_PROFILE_TYPE, "mno_id": MNO_OID, "available": 10,
                                              **zero}]}
    assert stat.S_IMODE((data_dir / KEY_FILE).stat().st_mode) == 0o600
    # Demo stock identifiers never meet the demo eUICCs' profiles.
    demo_side = {p.iccid for n in range(1, 50) for p in demo_profiles(n)}
    demo_imsis = {p.subscription_address.imsi for n in range(1, 50) for p in demo_profiles(n)}
    stock_records = demo_stock_records(50)
    assert not demo_side & {r.iccid for r in stock_records} and not demo_imsis & {r.imsi for r in stock_records}
    assert demo_stock_iccid(1)[:9] != demo_iccid(1)[:9] and len(demo_stock_iccid(1)) == 19
    # Re-running init adds nothing; more demo eUICCs top the stock up to 4 profiles per eUICC.
    assert init_instance(data_dir, demo=0)["smdp"] == doc["smdp"]
    other = tmp_path / "demo3"
    init_instance(other, demo=0)
    grown = init_instance(other, demo=3)
    assert grown["smdp"]["profile_types"][0]["available"] == 12


def test_import_profiles(instance, tmp_path):
    data_dir, _doc = instance
    template = tmp_path / "profile.der"
    template.write_bytes(b"\xa0\x03\x80\x01\x02")
    result = esx("smdp", "add-profile-type", "--data-dir", data_dir, "--name", "cli-type", "--mno", MNO_OID,
                 "--template", template, "--description", "CLI test")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["profile_type"] == "cli-type"

    good = tmp_path / "batch-1.csv"
    good.write_text(HEADER + "\n" + "\n".join(line(record(n)) for n in range(1, 251)) + "\n")
    result = esx("smdp", "import-profiles", "--data-dir", data_dir, "--profile-type", "cli-type", "--mno", MNO_OID,
                 good)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"batch": "batch-1.csv", "profile_type": "cli-type", "mno_id": MNO_OID,
                                         "imported": 250, "available": 250}
    assert "importing batch-1.csv" in result.stderr  # the progress bar, kept off the JSON on stdout

    # A bad line: the error names it, and nothing of the file is imported.
    bad = tmp_path / "batch-2.csv"
    bad.write_text(HEADER + "\n" + "\n".join(line(record(n)) for n in range(300, 310)) + "\n"
                   + line(record(310, ki="XYZ")) + "\n")
    result = esx("smdp", "import-profiles", "--data-dir", data_dir, "--profile-type", "cli-type", "--mno", MNO_OID,
                 "--name", "second", bad)
    assert result.exit_code == 1
    assert "Error: batch-2.csv: line 12: Ki is not 32 hex digits; nothing imported" in result.stderr
    assert result.stdout == ""

    # The same file twice: refused, naming the first ICCID already in stock.
    result = esx("smdp", "import-profiles", "--data-dir", data_dir, "--profile-type", "cli-type", "--mno", MNO_OID,
                 good)
    assert result.exit_code == 1 and f"ICCID {iccid(1)} is already in stock (and 249 more)" in result.stderr

    # Another MNO's type, and an MNO that is not registered.
    result = esx("smdp", "import-profiles", "--data-dir", data_dir, "--profile-type", DEMO_PROFILE_TYPE,
                 "--mno", OTHER_MNO, bad)
    assert result.exit_code == 1 and f"{OTHER_MNO} is not a registered MNO" in result.stderr
    result = esx("smdp", "add-profile-type", "--data-dir", data_dir, "--name", "cli-type", "--mno", OTHER_MNO,
                 "--template", template)
    assert result.exit_code == 1 and "not a registered MNO" in result.stderr

    assert stock(data_dir)["cli-type"] == {"profile_type": "cli-type", "mno_id": MNO_OID, "available": 250,
                                           "reserved": 0, "downloading": 0, "installed": 0}
    assert set(stock(data_dir, MNO_OID)) == {"cli-type", DEMO_PROFILE_TYPE}
    assert stock(data_dir, OTHER_MNO) == {}


def test_commands_need_an_instance(tmp_path):
    result = esx("smdp", "stock", "--data-dir", tmp_path / "none")
    assert result.exit_code == 1 and "run 'esx init" in result.stderr


# -- esx smdp update-connectivity ------------------------------------------------------------------------------------


def test_update_connectivity_is_sent_to_the_smsr_which_answers_by_callback(instance):
    """The request goes to the instance's own SM-SR (in process, as esx serve wires a co-located SM-DP) and is
    accepted (202); this instance has no eUICC, so the SM-SR's answer, written with the request, is the refusal
    8.1.1/3.9, due to the SM-DP's /smdp/es3 and relating to the MessageID printed."""
    from lxml import etree
    from sqlalchemy import select

    from esx.binding.ns import GSMA
    from esx.outbox import soap_body
    from esx.server import Config
    from persistence.db import Database
    from persistence.outbox import OutboxMessage

    data_dir, doc = instance
    eid, iccid = "89049032000000000000000000999999", "8988299000000009999"
    parameters = "220D8050000008" + "0102030405060708"
    result = esx("smdp", "update-connectivity", "--data-dir", data_dir, "--eid", eid, "--iccid", iccid,
                 "--connectivity-parameters", parameters, "--validity-period", "600")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert (printed["accepted"], printed["smsr"], printed["eid"], printed["iccid"]) == (True, doc["smsr_id"], eid,
                                                                                       iccid)
    assert printed["callback_to"].endswith("/smdp/es3")
    db = Database(Config.load(data_dir).database_url)
    try:
        with db.session() as s:
            [row] = s.scalars(select(OutboxMessage).where(OutboxMessage.relates_to == printed["message_id"])).all()
            body = etree.fromstring(soap_body(row))
            assert (row.operation, row.target_oid) == ("ES3-UpdateConnectivityParametersCallback", doc["smdp_id"])
    finally:
        db.dispose()
    assert (body.findtext(f".//{{{GSMA}}}Subject"), body.findtext(f".//{{{GSMA}}}Reason")) == ("8.1.1", "3.9")


@pytest.mark.parametrize("args,error", [
    (("--connectivity-parameters", "XYZ"), "not hex"),
    (("--connectivity-parameters", ""), "empty"),
    (("--connectivity-parameters", "00", "--smsr", "1.3.6.1.4.1.99999.9.9"), "8.7/3.9"),
])
def test_update_connectivity_refuses_bad_input_in_one_line(instance, args, error):
    data_dir, _ = instance
    result = esx("smdp", "update-connectivity", "--data-dir", data_dir, "--eid", "89049032000000000000000000999999",
                 "--iccid", "8988299000000009999", *args)
    assert result.exit_code != 0 and error in result.output
    assert "Traceback" not in result.output
