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
