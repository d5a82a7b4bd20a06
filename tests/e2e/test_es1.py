"""ES1-RegisterEIS (EUM -> SM-SR) over HTTP: the signed EIS, its certificate chain, its refusals."""
from __future__ import annotations

from datetime import date

from esx.binding.ns import GSMA
from keys.pki import make_ci

from .clients import CLIENT_KINDS
from .helpers import eis_for, pki, profile, register

NS = {"rps": GSMA}


_next = iter(range(1000, 100000))


def fresh(instance, **kw):
    n = next(_next)
    return eis_for(instance, n, (profile(n, instance.mno),), **kw)


def test_register_eis_nominal_then_readable(instance, kind):
    eis = fresh(instance)
    reply = register(instance, eis, kind=kind)
    assert (reply.status, reply.code) == ("EXECUTED_SUCCESS", (None, None))
    assert reply.header("Action") == "http://gsma.com/ES1/eUICCManagement/ES1-RegisterEISResponse"
    got = CLIENT_KINDS[kind]("ES4", f"{instance.smsr_url}/smsr/es4", instance.mno)("ES4-GetEIS", Eid=eis.eid)
    assert got.status == "EXECUTED_SUCCESS"
    assert got.text("rps:Eis/rps:ProfileInfo/rps:Iccid") == eis.profiles[0].iccid
    assert got.text("rps:Eis/rps:EumSignedInfo/rps:Ecasd/rps:Keyset/rps:Certificate/rps:Value") == \
        eis.signed_info.ecasd.keysets[0].items[0].value


def test_register_duplicate_eid(instance, kind):
    eis = fresh(instance)
    assert register(instance, eis, kind=kind).status == "EXECUTED_SUCCESS"
    reply = register(instance, eis, kind=kind)
    assert (reply.status, reply.code) == ("FAILED", ("8.1.1", "3.3"))


def test_register_duplicate_iccid(instance):
    first = fresh(instance)
    assert register(instance, first).status == "EXECUTED_SUCCESS"
    n = next(_next)
    second = eis_for(instance, n, (profile(n, instance.mno, iccid=first.profiles[0].iccid),))
    assert register(instance, second).code == ("8.2.1", "3.3")


def test_register_bad_signature(instance, kind):
    def tamper(el):
        el.find("rps:EumSignedInfo/rps:PlatformVersion", NS).text = "9.9.9"

    reply = register(instance, fresh(instance), kind=kind, tamper=tamper)
    assert (reply.status, reply.code) == ("FAILED", ("8.6", "6.1"))
    assert "EumSignature" in reply.message


def test_register_signed_by_another_eum_key(instance):
    key, cert = pki(instance).issue_eum()
    reply = register(instance, fresh(instance), sign_key=key, sign_cert=cert)
    assert (reply.status, reply.code) == ("FAILED", ("8.6", "6.1"))


def test_register_unknown_eum(instance, kind):
    reply = register(instance, fresh(instance), caller="1.3.6.1.4.1.99999.3.77", kind=kind)
    assert (reply.status, reply.code) == ("FAILED", ("1.1", "1.1"))


def test_register_wrong_caller_role(instance):
    reply = register(instance, fresh(instance), caller=instance.mno)
    assert (reply.status, reply.code) == ("FAILED", ("1.1", "1.2"))


def test_register_eis_of_another_eum(instance):
    reply = register(instance, fresh(instance, eum_id="1.3.6.1.4.1.99999.3.9"))
    assert (reply.status, reply.code) == ("FAILED", ("8.6", "1.2"))


def test_register_expired_ecasd_certificate(instance, kind):
    reply = register(instance, fresh(instance, ecasd_expiry=date(2025, 1, 1)), kind=kind)
    assert (reply.status, reply.code) == ("FAILED", ("8.5.2", "6.3"))


def test_register_ecasd_signed_by_unknown_eum(instance):
    ci_key, ci_cert = make_ci()
    from keys.pki import certificate_pem, make_eum

    rogue_key, rogue_cert = make_eum(ci_key, ci_cert, "1.3.6.1.4.1.99999.3.1")
    reply = register(instance, fresh(instance, eum_key=rogue_key, eum_cert_pem=certificate_pem(rogue_cert)))
    assert (reply.status, reply.code) == ("FAILED", ("8.5.2", "6.1"))


def test_register_eis_naming_another_smsr(instance):
    reply = register(instance, fresh(instance, smsr_id="1.3.6.1.4.1.99999.1.99"))
    assert (reply.status, reply.code) == ("FAILED", ("8.7", "3.9"))


def test_register_with_invalidpol2(instance):
    n = next(_next)
    from sgp02.eis import Pol2Rule

    eis = eis_for(instance, n, (profile(n, instance.mno, pol2=(Pol2Rule("PROFILE", "DELETE", "Auto-Delete"),)),))
    assert register(instance, eis).code == ("8.2.3", "2.1")


def test_expired_eum_certificate_refuses_registration(instance, tmp_path):
    """The registered EUM certificate itself is out of date: the chain check fails with 6.3."""
    from datetime import datetime, timedelta, timezone

    p = pki(instance)
    now = datetime.now(timezone.utc)
    key, cert = p.issue_eum("1.3.6.1.4.1.99999.3.5", not_before=now - timedelta(days=400),
                            not_after=now - timedelta(days=1))
    path = tmp_path / "old-eum.pem"
    path.write_bytes(cert)
    instance.esx("entity", "add", "--data-dir", str(instance.data_dir), "--role", "eum",
                 "--oid", "1.3.6.1.4.1.99999.3.5", "--name", "Old EUM", "--signing-cert", str(path))
    n = next(_next)
    eis = eis_for(instance, n, (profile(n, instance.mno),), eum_key=key, eum_cert_pem=cert,
                  eum_id="1.3.6.1.4.1.99999.3.5")
    reply = register(instance, eis, caller="1.3.6.1.4.1.99999.3.5", sign_key=key, sign_cert=cert)
    assert (reply.status, reply.code) == ("FAILED", ("8.5.2", "6.3"))
    assert "eum" in reply.message.lower()


def test_registered_card_keys_are_sealed_in_the_database(instance):
    """On either database: the ISD-R key values of a registered eUICC are nowhere in its rows in clear."""
    import json

    import sqlalchemy as sa

    eid = instance.eids[0]
    scp80 = json.loads((instance.data_dir / "euicc" / eid / "card.json").read_text())["scp80"]
    keys = [bytes.fromhex(scp80["keysets"][0][name]) for name in ("enc", "mac", "dek")]
    engine = sa.create_engine(instance.database_url)
    with engine.connect() as c:
        rows = c.execute(sa.text("select role, keysets, sealed_keys from security_domain where eid = :e"), {"e": eid}).all()
    engine.dispose()
    assert {r.role for r in rows} == {"ISD-R", "ECASD"}
    for role, keysets, sealed in rows:
        stored = (keysets if isinstance(keysets, str) else json.dumps(keysets)).upper()
        assert not any(k.hex().upper() in stored for k in keys), role
        assert sealed is None or not any(k in bytes(sealed) for k in keys), role
    assert next(r.sealed_keys for r in rows if r.role == "ISD-R") is not None
