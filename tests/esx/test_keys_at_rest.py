"""Card keys at rest: the SM-SR keeps every key set it holds sealed, never in clear; production refuses test keys."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select, text

from esx.demo import demo_eid, demo_iccid
from esx.server import sqlite_file
from keys.secretbox import SecretBox
from sgp02 import eis as v
from smsr_core.models import Euicc, SecurityDomainRow, seal_clear_keys
from smsr_core.sms_link import SmsLink

from .inprocess import InProcess


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    env = InProcess(tmp_path_factory.mktemp("keys-at-rest"))
    yield env
    env.close()


def card_keys(inst: InProcess, eid: str) -> dict[str, bytes]:
    scp80 = json.loads((Path(inst.config.data_dir) / "euicc" / eid / "card.json").read_text())["scp80"]
    return {name: bytes.fromhex(scp80["keysets"][0][name]) for name in ("enc", "mac", "dek")}


def database_bytes(inst: InProcess) -> bytes:
    inst.db.dispose()  # let SQLite write back what it holds
    path = sqlite_file(inst.config.database_url)
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def test_no_card_key_is_in_the_database_in_clear(inst):
    eid = demo_eid(1)
    keys = card_keys(inst, eid)
    assert len(set(keys.values())) == 3  # the demo's random ISD-R keys
    raw = database_bytes(inst)
    for name, key in keys.items():
        for form in (key, key.hex().encode(), key.hex().upper().encode()):
            assert form not in raw, name


def test_the_sms_link_opens_them_for_the_card(inst):
    eid = demo_eid(1)
    with inst.db.session() as s:
        keyset = SmsLink(inst.runtime.box).keyset(s.get(Euicc, eid))
    keys = card_keys(inst, eid)
    assert (keyset.enc, keyset.mac) == (keys["enc"], keys["mac"])


def test_sealed_keys_are_bound_to_their_euicc(inst):
    """A sealed blob copied onto another eUICC's row does not open there."""
    other = inst.register(7, (InProcess.profile(7, 0, "1.3.6.1.4.1.99999.2.1", enabled=True),))
    with inst.db.session() as s:
        mine = s.scalars(select(SecurityDomainRow).where(SecurityDomainRow.eid == demo_eid(1),
                                                         SecurityDomainRow.role == "ISD-R")).one()
        theirs = s.scalars(select(SecurityDomainRow).where(SecurityDomainRow.eid == other,
                                                           SecurityDomainRow.role == "ISD-R")).one()
        from keys.secretbox import SecretBoxError

        theirs_blob = theirs.sealed_keys
        theirs.sealed_keys = mine.sealed_keys
        s.flush()
        with pytest.raises(SecretBoxError):
            SmsLink(inst.runtime.box).keyset(s.get(Euicc, other))
        theirs.sealed_keys = theirs_blob


def test_keys_an_older_database_holds_in_clear_are_sealed_by_init(inst):
    eid = demo_eid(1)
    keys = card_keys(inst, eid)
    with inst.db.session() as s:  # the row as an older esx wrote it: values in the keysets JSON, nothing sealed
        row = s.scalars(select(SecurityDomainRow).where(SecurityDomainRow.eid == eid,
                                                        SecurityDomainRow.role == "ISD-R")).one()
        keysets = json.loads(json.dumps(row.keysets))
        for item, name in zip(keysets[0]["items"], ("enc", "mac", "dek")):
            item["key"]["components"][0][1] = keys[name].hex().upper()
        row.keysets, row.sealed_keys = keysets, None
    with inst.db.session() as s:
        assert keys["enc"].hex().upper() in s.scalar(text(
            "select keysets from security_domain where eid = :e and role = 'ISD-R'"), {"e": eid})
        assert seal_clear_keys(s, inst.runtime.box) == 1
        assert seal_clear_keys(s, inst.runtime.box) == 0
    for name, key in keys.items():
        assert key.hex().upper().encode() not in database_bytes(inst), name
    with inst.db.session() as s:
        assert SmsLink(inst.runtime.box).keyset(s.get(Euicc, eid)).enc == keys["enc"]


def test_another_instances_key_does_not_open_them(inst):
    from keys.secretbox import SecretBoxError

    with inst.db.session() as s:
        with pytest.raises(SecretBoxError):
            SmsLink(SecretBox(b"\x07" * 32)).keyset(s.get(Euicc, demo_eid(1)))


@pytest.mark.parametrize("key", [bytes(range(0x40, 0x50)), b"\x01" * 16])
def test_production_refuses_a_card_with_a_public_test_key(inst, key):
    from esx.demo import EUM_OID, build_eis, isd_r_domain, register_request, signed_eis_element

    registry = inst.runtime.registry
    registry.refuse_test_keys = True  # what production mode sets (EsxRuntime: mtls, test credentials not allowed)
    try:
        n = 30 + key[0]
        _, cert = inst.pki.issue_ecasd(demo_eid(n))
        eis = build_eis(eid=demo_eid(n), eum_id=EUM_OID, smsr_id=inst.config.smsr_oid, ecasd_cert=cert,
                        profiles=(v.ProfileInfo(iccid=demo_iccid(n, 0), isd_p_aid="A0000005591010FFFFFFFF8900001000",
                                                mno_id="1.3.6.1.4.1.99999.2.1", fallback_attribute=True,
                                                subscription_address=v.SubscriptionAddress("001010000000099", "447000000099"),
                                                state=v.ProfileState.ENABLED, allocated_memory=1024),),
                        isd_r=isd_r_domain({"enc": key, "mac": bytes(range(0x20, 0x30)), "dek": bytes(range(0x60, 0x70))}))
        outcome = inst.call("/smsr/es1", register_request(signed_eis_element(eis, inst.pki.eum_key, inst.pki.eum_cert_pem)),
                            EUM_OID)
        assert (outcome.status, outcome.code) == ("FAILED", ("8.6", "2.1"))
        assert "production mode" in outcome.message
    finally:
        registry.refuse_test_keys = False
