"""Shared fixtures for the keys tests: one development PKI per test session (generation takes ~0.1 s)."""

from __future__ import annotations

import pytest

from keys.pki import DevPki

SMDP_OID = "1.3.6.1.4.1.99999.1.1"
SMSR_OID = "1.3.6.1.4.1.99999.1.2"
EUM_OID = "1.3.6.1.4.1.99999.1.3"
MNO_OID = "1.3.6.1.4.1.99999.1.4"
OIDS = {"smdp_oid": SMDP_OID, "smsr_oid": SMSR_OID, "eum_oid": EUM_OID, "mno_oid": MNO_OID}

EID = "89049032123451234512345678901235"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return DevPki.generate(tmp_path_factory.mktemp("data") / "pki", **OIDS)
