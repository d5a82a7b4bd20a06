"""The one ECASD certificate check (sgp02.ecasd), used by ES1 registration and by ES2-DownloadProfile: the verified
PK.ECASD.ECKA, or the 8.5.2 code that says why not."""
from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest

from esx.demo import build_eis
from keys.pki import DevPki
from sgp02.codes import FunctionFailed
from sgp02.ecasd import verified_ecasd_key

EID = "89049032123451234512345678901235"
NOW = datetime.now(timezone.utc)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> DevPki:
    return DevPki.generate(tmp_path_factory.mktemp("pki") / "pki", smdp_oid="1.3.6.1.4.1.99999.1.1",
                           smsr_oid="1.3.6.1.4.1.99999.1.2", eum_oid="1.3.6.1.4.1.99999.1.3",
                           mno_oid="1.3.6.1.4.1.99999.1.4")


def eis_with(pki: DevPki, cert: bytes):
    from sgp02.eis import SecurityDomain

    return build_eis(eid=EID, eum_id=pki.eum_oid, smsr_id="1.3.6.1.4.1.99999.1.2", ecasd_cert=cert, profiles=(),
                     isd_r=SecurityDomain("A0000005591010FFFFFFFF8900000100", "ISD-R", sin="89049032", sdin="01"))


def code_of(info) -> tuple[str, str, str | None]:
    return info.value.code.subject, info.value.code.reason, info.value.subject_identifier


def test_a_good_chain_gives_the_ecasd_key(pki):
    key, cert = pki.issue_ecasd(EID)
    assert verified_ecasd_key(eis_with(pki, cert), pki.ci_cert_pem, pki.eum_cert_pem, NOW) == key.public_key()


def test_an_expired_ecasd_certificate_is_8_5_2_6_3(pki):
    _, cert = pki.issue_ecasd(EID, expiry=date.today() - timedelta(days=1))
    with pytest.raises(FunctionFailed) as info:
        verified_ecasd_key(eis_with(pki, cert), pki.ci_cert_pem, pki.eum_cert_pem, NOW)
    assert code_of(info) == ("8.5.2", "6.3", EID)


def test_another_eums_certificate_or_none_is_8_5_2_6_1(pki):
    rogue_key, rogue_pem = pki.issue_eum("1.3.6.1.4.1.99999.3.66")
    _, cert = pki.issue_ecasd(EID, eum_key=rogue_key, eum_cert_pem=rogue_pem)
    with pytest.raises(FunctionFailed) as info:
        verified_ecasd_key(eis_with(pki, cert), pki.ci_cert_pem, pki.eum_cert_pem, NOW)
    assert code_of(info) == ("8.5.2", "6.1", EID)
    eis = eis_with(pki, cert)
    no_cert = replace(eis, signed_info=replace(eis.signed_info, ecasd=replace(eis.signed_info.ecasd, keysets=())))
    with pytest.raises(FunctionFailed) as info:
        verified_ecasd_key(no_cert, pki.ci_cert_pem, pki.eum_cert_pem, NOW)
    assert code_of(info) == ("8.5.2", "6.1", EID)
