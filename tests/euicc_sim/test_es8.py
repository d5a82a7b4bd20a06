"""The simulated ISD-P over ES8 (euicc_sim.es8), driven as the SM-DP and the SM-SR would drive it.

Every command goes the whole way: ES8 command TLVs (ota.es8) -> expanded command script -> SCP80 command packet
under the ISD-R's keys with the ISD-P's TAR -> CardOta.execute -> PoR -> response script. The host side uses the
same key-establishment (keys.ecka) and SCP03t (keys.scp03t) modules as the SM-DP, and a personalised demo package.
"""

from __future__ import annotations

import datetime
import json
import os
import stat
from pathlib import Path

import pytest

from euicc_sim.card import Card, IsdP, Pol1
from euicc_sim.network import CardOta
from keys import dgi, ecka, scp03t
from keys.gp_cert import CERT_TYPE_SMDP, parse_gp_certificate
from keys.pki import DevPki, make_ci, make_gp_cert_by_ci, new_key, private_key_pem
from keys.scp03 import StaticKeys
from keys.scp80 import SPI_SGP02, ResponsePacket, Scp80Keyset, unwrap_response, wrap_command
from keys.tlv import encode_tlv
from ota import es5, es8, remote, saip, sms
from ota.es5 import DISABLED, ENABLED, PERSONALIZED, SELECTABLE

EID = "89049032000000000000000000000142"
ISD_R = "A0000005591010FFFFFFFF8900000100"
P0 = "A0000005591010FFFFFFFF8900001000"  # enabled bootstrap profile
P1 = "A0000005591010FFFFFFFF8900001100"  # the empty ISD-P the SM-DP downloads into
SMDP_OID, SMSR_OID, EUM_OID, MNO_OID = "1.3.6.1.4.1.99999.1.2", "1.3.6.1.4.1.99999.1.1", "1.3.6.1.4.1.99999.3.1", \
    "1.3.6.1.4.1.99999.2.1"
ICCID, IMSI, MSISDN = "8988299010000000017", "001019000000001", "447800000001"
SCP80_KEYS = Scp80Keyset(kvn=1, enc=bytes(range(16)), mac=bytes(range(16, 32)))
SEGMENT = 512
CRT = ecka.KeyAgreementCrt(kvn=0x30, key_id=0x01)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> DevPki:
    return DevPki.generate(tmp_path_factory.mktemp("pki"), smdp_oid=SMDP_OID, smsr_oid=SMSR_OID, eum_oid=EUM_OID,
                           mno_oid=MNO_OID)


@pytest.fixture(scope="module")
def package() -> bytes:
    return saip.personalise(saip.demo_template(), saip.Personalisation(
        iccid=ICCID, imsi=IMSI, msisdn=MSISDN, ki=os.urandom(16), opc=os.urandom(16)), pol1=Pol1(
            delete_not_allowed=True).to_pol())


class Link:
    """The SM-SR's side of the OTA link to one card, plus the card's files."""

    def __init__(self, path: Path, ecasd_cert: bytes) -> None:
        self.path = path
        self.ota = CardOta(Card.load(path), path)
        self.counter = 0
        self.ecasd_public_key = parse_gp_certificate(ecasd_cert).public_key()

    @property
    def card(self) -> Card:
        return self.ota.card

    def reload(self) -> None:
        """A new OTA front on the state file, as after a restart of the simulated network."""
        self.ota = CardOta(Card.load(self.path), self.path)

    def packet(self, tar: bytes, script: bytes) -> ResponsePacket:
        self.counter += 1
        segments = self.ota.execute(wrap_command(SCP80_KEYS, SPI_SGP02, tar, self.counter, script))
        iei, por = sms.reassemble([sms.parse_user_data(s) for s in segments])
        assert iei == sms.RPI
        return unwrap_response(por, SCP80_KEYS, SPI_SGP02)

    def send(self, commands: list[bytes], aid: str = P1) -> tuple[int, list[tuple[int, bytes]]]:
        """One ES3.SendData: what the SM-SR builds from ``Data`` and what it hands back as EuiccResponseData."""
        data = es8.send_data_payload(commands)
        script = remote.encode_command_tlvs(es8.split_send_data(data))
        response = self.packet(es8.isdp_tar(bytes.fromhex(aid)), script)
        assert response.status == 0x00
        return es8.parse_send_data_response(response.data)

    def isdp(self, aid: str = P1) -> IsdP:
        p = Card.load(self.path).profile(aid)
        assert p is not None
        return p


def make_link(tmp_path: Path, pki: DevPki, curve: str = "P-256", *, memory: int = 20_000) -> Link:
    ecasd_key, ecasd_cert = pki.issue_ecasd(EID, curve)
    (tmp_path / "ecasd.key.pem").write_bytes(private_key_pem(ecasd_key))
    (tmp_path / "ci.pem").write_bytes(pki.ci_cert_pem)
    profiles = [IsdP(P0, ENABLED, fallback=True, iccid="8988299000000000001", imsi="001010000000001",
                     msisdn="447700900001", memory=50_000),
                IsdP(P1, SELECTABLE, memory=memory)]
    scp80 = {"kvn": 1, "tar": "000001", "counter": 0, "enc": SCP80_KEYS.enc.hex(), "mac": SCP80_KEYS.mac.hex()}
    Card.create(tmp_path / "card.json", eid=EID, isd_r_aid=ISD_R, profiles=profiles, free_memory=100_000,
                scp80=scp80)
    return Link(tmp_path / "card.json", ecasd_cert)


def r_apdu(response: tuple[int, bytes]) -> tuple[bytes, int]:
    tag, value = response
    assert tag == es8.TAG_R_APDU
    return es5.split_response(value)


def tlv(response: tuple[int, bytes]) -> bytes:
    """The response TLV, whole again, as the host's SCP03t object takes it ('9Fxx' error TLVs are 1-byte long)."""
    tag, value = response
    if tag >> 8 == 0x9F:
        return tag.to_bytes(2, "big") + bytes([len(value)]) + value
    return encode_tlv(tag, value)


# --- the SM-DP's steps ------------------------------------------------------------------------------------------


def certificate(link: Link, cert: bytes) -> tuple[int, list[tuple[int, bytes]]]:
    return link.send([es8.command_tlv(es8.install_for_personalization(bytes.fromhex(P1))),
                      es8.command_tlv(es8.store_data_3a01(cert))])


def establish_keyset(link: Link, pki: DevPki) -> StaticKeys:
    n, responses = certificate(link, pki.smdp_gp_cert)
    assert n == 2 and r_apdu(responses[0]) == (b"", 0x9000)
    data, sw = r_apdu(responses[1])
    assert sw == 0x9000
    rc = ecka.parse_challenge_response(data)
    assert len(rc) == 16
    dgi, ephemeral = ecka.smdp_key_agreement(pki.smdp_key, rc, link.ecasd_public_key.curve, CRT)
    n, responses = link.send([es8.command_tlv(es8.store_data_3a02(dgi))])
    data, sw = r_apdu(responses[0])
    assert (n, sw) == (1, 0x9000)
    return ecka.smdp_finish(ephemeral, link.ecasd_public_key, CRT, data)


def open_session(link: Link, keys: StaticKeys) -> scp03t.Scp03tHost:
    host = scp03t.Scp03tHost(keys, CRT.kvn)
    n, responses = link.send([host.initialize_update()])
    assert n == 1 and responses[0][0] == 0x84
    n, responses = link.send([host.external_authenticate(tlv(responses[0]))])
    assert n == 1
    host.check_external_authenticate_response(tlv(responses[0]))
    return host


def segments(package: bytes) -> list[bytes]:
    return [package[i:i + SEGMENT] for i in range(0, len(package), SEGMENT)]


def send_segments(link: Link, host: scp03t.Scp03tHost, parts: list[bytes]) -> tuple[int, list[bytes]]:
    """All ``parts`` in one SendData; returns (executed, deciphered answers). Answers are read until an error."""
    n, responses = link.send([host.wrap(p) for p in parts])
    answers = []
    for response in responses:
        if es8.is_error_response(*response):
            break
        answers.append(host.unwrap(tlv(response)))
    return n, answers


def download(link: Link, host: scp03t.Scp03tHost, package: bytes, per_send: int = 2) -> bytes:
    """The whole package, ``per_send`` segments per SendData; returns the last answer (the EUICCResponse)."""
    parts = segments(package)
    answers: list[bytes] = []
    for i in range(0, len(parts), per_send):
        n, got = send_segments(link, host, parts[i:i + per_send])
        assert n == len(got) == len(parts[i:i + per_send])
        answers += got
    assert all(a == b"" for a in answers[:-1])
    return answers[-1]


# --- nominal ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("curve", ["P-256", "brainpoolP256r1"])
def test_full_download_installs_the_profile(tmp_path: Path, pki: DevPki, package: bytes, curve: str) -> None:
    link = make_link(tmp_path, pki, curve)
    assert link.isdp().lifecycle == SELECTABLE

    keys = establish_keyset(link, pki)
    p = link.isdp()
    assert p.lifecycle == PERSONALIZED
    assert p.keyset is not None and (p.keyset.kvn, p.keyset.key_id) == (0x30, 0x01)
    assert p.keyset.static_keys() == keys and p.key_agreement is None

    host = open_session(link, keys)
    assert len(segments(package)) == 3
    answer = download(link, host, package)

    statuses, aborted, _ = saip.decode_euicc_response(answer)
    assert not aborted
    assert statuses == [saip.PeStatus(saip.PE_OK, i) for i in range(len(saip.split_pes(package)))]
    p = link.isdp()
    assert p.lifecycle == DISABLED
    assert (p.iccid, p.imsi, p.msisdn) == (ICCID, IMSI, MSISDN)
    assert p.pol1 == Pol1(delete_not_allowed=True)
    assert p.download is None and p.keyset is not None
    path = tmp_path / f"{P1}.upp.der"
    assert p.package_file == path.name
    assert path.read_bytes() == package == Card.load(link.path).package(P1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    shown = Card.load(link.path).view()["profiles"][1]
    assert shown["keyset_kvn"] == 0x30 and shown["package_file"] == path.name and shown["state"] == "DISABLED"
    assert p.keyset.enc not in json.dumps(shown)

    # the installed profile is an ordinary one for ES5: enable it; POL1 forbids its deletion
    assert es5.split_response(link.card.process(es5.enable_profile(bytes.fromhex(P1))))[1] == 0x9000
    assert link.card.enabled_profile().msisdn == MSISDN
    assert link.ota.msisdn == MSISDN  # the simulated network now routes SMS to the card at the package's MSISDN


def test_installed_isdp_refuses_a_new_session(tmp_path: Path, pki: DevPki, package: bytes) -> None:
    link = make_link(tmp_path, pki)
    keys = establish_keyset(link, pki)
    download(link, open_session(link, keys), package, per_send=3)
    host = scp03t.Scp03tHost(keys, CRT.kvn)
    n, responses = link.send([host.initialize_update()])
    assert (n, responses) == (1, [(0x9F84, bytes([scp03t.REASON_NO_SESSION]))])
    n, responses = certificate(link, pki.smdp_gp_cert)
    assert r_apdu(responses[1])[1] == 0x6985  # not SELECTABLE any more


def test_deleting_the_isdp_removes_its_package_file(tmp_path: Path, pki: DevPki, package: bytes) -> None:
    link = make_link(tmp_path, pki)
    download(link, open_session(link, establish_keyset(link, pki)), package)
    assert (tmp_path / f"{P1}.upp.der").exists()
    p1 = bytes.fromhex(P1)
    assert es5.split_response(link.card.process(es5.delete_isdp(p1)))[1] == 0x69E1  # POL1 from the package
    assert (tmp_path / f"{P1}.upp.der").exists()
    assert es5.split_response(link.card.process(es5.master_delete(p1, b"\x01" * 8)))[1] == 0x9000
    assert not (tmp_path / f"{P1}.upp.der").exists()


def test_session_survives_reloading_the_card_between_sms(tmp_path: Path, pki: DevPki, package: bytes) -> None:
    link = make_link(tmp_path, pki)
    keys = establish_keyset(link, pki)
    link.reload()
    host = scp03t.Scp03tHost.from_state(open_session(link, keys).state())
    parts = segments(package)
    assert send_segments(link, host, parts[:1]) == (1, [b""])
    link.reload()
    assert link.isdp().download is not None and link.isdp().download.pe_count > 0
    n, answers = send_segments(link, host, parts[1:])
    assert n == 2 and not saip.decode_euicc_response(answers[-1])[1]
    assert link.isdp().lifecycle == DISABLED


# --- key establishment refused ----------------------------------------------------------------------------------


def test_certificate_of_another_ci_is_refused(tmp_path: Path, pki: DevPki) -> None:
    link = make_link(tmp_path, pki)
    other_ci_key, other_ci = make_ci(common_name="another CI")
    _, cert = make_gp_cert_by_ci(other_ci_key, other_ci, oid=SMDP_OID, cert_type=CERT_TYPE_SMDP)
    n, responses = certificate(link, cert)
    assert n == 2 and r_apdu(responses[1]) == (b"", 0x6982)
    assert link.isdp().lifecycle == SELECTABLE and link.isdp().key_agreement is None


def test_expired_certificate_is_refused(tmp_path: Path, pki: DevPki) -> None:
    link = make_link(tmp_path, pki)
    _, cert = make_gp_cert_by_ci(pki.ci_key, pki.ci_cert, oid=SMDP_OID, cert_type=CERT_TYPE_SMDP,
                                 expiry=datetime.date.today() - datetime.timedelta(days=2))
    assert r_apdu(certificate(link, cert)[1][1]) == (b"", 0x6982)


def test_certificate_check_uses_the_front_clock(tmp_path: Path, pki: DevPki) -> None:
    link = make_link(tmp_path, pki)
    link.ota.clock = lambda: datetime.datetime(2100, 1, 1, tzinfo=datetime.timezone.utc)  # after every expiry
    assert r_apdu(certificate(link, pki.smdp_gp_cert)[1][1])[1] == 0x6982


def test_card_without_ci_refuses_key_establishment(tmp_path: Path, pki: DevPki) -> None:
    link = make_link(tmp_path, pki)
    (tmp_path / "ci.pem").unlink()
    assert r_apdu(certificate(link, pki.smdp_gp_cert)[1][1])[1] == 0x6982


def test_malformed_3a01_is_wrong_data(tmp_path: Path, pki: DevPki) -> None:
    link = make_link(tmp_path, pki)
    apdu = es5.Apdu(0x80, 0xE2, 0x09, 0x00, dgi.encode_dgi(0x3A01, bytes.fromhex("930101"))).to_bytes()
    n, responses = link.send([es8.command_tlv(apdu)])
    assert r_apdu(responses[0])[1] == 0x6A80


def test_3a02_with_a_bad_signature_is_refused(tmp_path: Path, pki: DevPki) -> None:
    link = make_link(tmp_path, pki)
    rc = ecka.parse_challenge_response(r_apdu(certificate(link, pki.smdp_gp_cert)[1][1])[0])
    dgi, _ = ecka.smdp_key_agreement(new_key(), rc, link.ecasd_public_key.curve, CRT)  # not SK.DP.ECDSA
    n, responses = link.send([es8.command_tlv(es8.store_data_3a02(dgi))])
    assert (n, r_apdu(responses[0])) == (1, (b"", 0x6982))
    p = link.isdp()
    assert p.lifecycle == SELECTABLE and p.keyset is None and p.key_agreement is not None  # refused: no change
    # the right signature over the same challenge still works
    dgi, ephemeral = ecka.smdp_key_agreement(pki.smdp_key, rc, link.ecasd_public_key.curve, CRT)
    data, sw = r_apdu(link.send([es8.command_tlv(es8.store_data_3a02(dgi))])[1][0])
    assert sw == 0x9000
    ecka.smdp_finish(ephemeral, link.ecasd_public_key, CRT, data)
    assert link.isdp().lifecycle == PERSONALIZED


def test_3a02_signed_over_another_challenge_is_refused(tmp_path: Path, pki: DevPki) -> None:
    link = make_link(tmp_path, pki)
    certificate(link, pki.smdp_gp_cert)
    dgi, _ = ecka.smdp_key_agreement(pki.smdp_key, bytes(16), link.ecasd_public_key.curve, CRT)
    assert r_apdu(link.send([es8.command_tlv(es8.store_data_3a02(dgi))])[1][0])[1] == 0x6982


def test_3a02_before_3a01_is_refused(tmp_path: Path, pki: DevPki) -> None:
    link = make_link(tmp_path, pki)
    dgi, _ = ecka.smdp_key_agreement(pki.smdp_key, bytes(16), link.ecasd_public_key.curve, CRT)
    n, responses = link.send([es8.command_tlv(es8.store_data_3a02(dgi))])
    assert (n, r_apdu(responses[0])) == (1, (b"", 0x6985))


def test_script_stops_at_the_first_error(tmp_path: Path, pki: DevPki) -> None:
    link = make_link(tmp_path, pki)
    wrong_isdp = es8.install_for_personalization(bytes.fromhex(P0))
    n, responses = link.send([es8.command_tlv(wrong_isdp), es8.command_tlv(es8.store_data_3a01(pki.smdp_gp_cert))])
    assert n == 1 and r_apdu(responses[0]) == (b"", 0x6A88)
    assert link.isdp().key_agreement is None


@pytest.mark.parametrize("apdu,sw", [
    ("80CA00E000", 0x6D00),  # GET DATA: not an ES8 command
    ("00E2090005" "3A01027F21", 0x6E00),  # ISO class
    ("80E62000050000", 0x6700),  # Lc 5, two bytes of data
    ("80E6100016" "0000" "10A0000005591010FFFFFFFF8900001100" "000000", 0x6A86),  # INSTALL, other P1
    ("80E2890005" "3A03024F00", 0x6A80),  # a DGI the ISD-P does not take
])
def test_other_apdus(tmp_path: Path, pki: DevPki, apdu: str, sw: int) -> None:
    link = make_link(tmp_path, pki)
    assert r_apdu(link.send([es8.command_tlv(bytes.fromhex(apdu))])[1][0])[1] == sw


def test_scp03t_before_the_keyset_is_refused(tmp_path: Path, pki: DevPki) -> None:
    link = make_link(tmp_path, pki)
    host = scp03t.Scp03tHost(StaticKeys(bytes(16), bytes(16), bytes(16)), CRT.kvn)
    n, responses = link.send([host.initialize_update()])
    assert (n, responses) == (1, [(0x9F84, bytes([scp03t.REASON_UNKNOWN_KEY]))])


def test_unknown_tar_gets_por_status_09(tmp_path: Path, pki: DevPki) -> None:
    link = make_link(tmp_path, pki)
    script = remote.encode_command_tlvs([es8.command_tlv(es8.install_for_personalization(bytes.fromhex(P1)))])
    response = link.packet(bytes.fromhex("000099"), script)
    assert (response.status, response.data) == (0x09, b"")
    # the ISD-R still answers at its own TAR, with the same keys and counter
    response = link.packet(bytes.fromhex("000001"), remote.encode_command_script([es5.get_status_isdp()]))
    assert response.status == 0x00 and remote.decode_response_script(response.data).last_sw == 0x9000


def test_unparsable_es8_script_executes_nothing(tmp_path: Path, pki: DevPki) -> None:
    link = make_link(tmp_path, pki)
    response = link.packet(es8.isdp_tar(bytes.fromhex(P1)), bytes.fromhex("AA03840100"[:-2]))
    assert response.status == 0x00 and remote.decode_response_tlvs(response.data) == (0, [])


def test_unknown_command_tag_answers_bad_format(tmp_path: Path, pki: DevPki) -> None:
    link = make_link(tmp_path, pki)
    script = remote.encode_command_tlvs([bytes.fromhex("870100"), bytes.fromhex("840100")])
    response = link.packet(es8.isdp_tar(bytes.fromhex(P1)), script)
    assert remote.decode_response_tlvs(response.data) == (1, [(0x90, b"\x01")])


# --- download refused -------------------------------------------------------------------------------------------


def test_tampered_segment_installs_nothing(tmp_path: Path, pki: DevPki, package: bytes) -> None:
    link = make_link(tmp_path, pki)
    keys = establish_keyset(link, pki)
    host = open_session(link, keys)
    first, second, third = segments(package)
    good = host.wrap(first)
    bad = bytearray(host.wrap(second))
    bad[10] ^= 0x01
    n, responses = link.send([good, bytes(bad), host.wrap(third)])
    assert n == 2 and responses[1] == (0x9F86, bytes([scp03t.REASON_BAD_MAC]))
    assert host.unwrap(tlv(responses[0])) == b""
    p = link.isdp()
    assert p.lifecycle == PERSONALIZED and p.download is None and p.iccid is None
    assert not (tmp_path / f"{P1}.upp.der").exists()
    # the error ended the session: a new one may download the whole package again
    answer = download(link, open_session(link, keys), package)
    assert not saip.decode_euicc_response(answer)[1]
    assert link.isdp().lifecycle == DISABLED


def test_malformed_package_aborts(tmp_path: Path, pki: DevPki, package: bytes) -> None:
    link = make_link(tmp_path, pki)
    keys = establish_keyset(link, pki)
    pes = saip.split_pes(package)
    broken = pes[0] + bytes.fromhex("A10401020304") + b"".join(pes[2:])  # PE 1 is no 'mf'
    host = open_session(link, keys)
    n, answers = send_segments(link, host, segments(broken))
    assert n == 1  # the script stops after the aborted answer
    statuses, aborted, _ = saip.decode_euicc_response(answers[0])
    assert aborted
    assert statuses == [saip.PeStatus(saip.PE_OK, 0), saip.PeStatus(saip.INVALID_REQUEST_FORMAT, 1)]
    p = link.isdp()
    assert p.lifecycle == PERSONALIZED and p.keyset is not None and p.download is None and p.iccid is None
    # the session is over; a new one installs the good package
    n, responses = link.send([host.wrap(b"\x00")])
    assert responses == [(0x9F86, bytes([scp03t.REASON_NO_SESSION]))]
    assert not saip.decode_euicc_response(download(link, open_session(link, keys), package))[1]


def test_package_not_starting_with_the_header_aborts(tmp_path: Path, pki: DevPki, package: bytes) -> None:
    link = make_link(tmp_path, pki)
    pes = saip.split_pes(package)
    n, answers = send_segments(link, open_session(link, establish_keyset(link, pki)), [pes[1]])
    statuses, aborted, _ = saip.decode_euicc_response(answers[0])
    assert aborted and statuses == [saip.PeStatus(saip.INVALID_REQUEST_FORMAT, 0)]


def test_package_above_the_quota_aborts(tmp_path: Path, pki: DevPki, package: bytes) -> None:
    link = make_link(tmp_path, pki, memory=len(package) - 1)
    keys = establish_keyset(link, pki)
    host = open_session(link, keys)
    parts = segments(package)
    n, answers = send_segments(link, host, parts)
    statuses, aborted, _ = saip.decode_euicc_response(answers[-1])
    assert aborted and n == len(answers) == len(parts)
    assert statuses[-1].status == saip.NOT_ENOUGH_MEMORY
    assert all(s.status == saip.PE_OK for s in statuses[:-1])
    p = link.isdp()
    assert p.lifecycle == PERSONALIZED and p.download is None and not (tmp_path / f"{P1}.upp.der").exists()


def test_package_within_the_quota_installs(tmp_path: Path, pki: DevPki, package: bytes) -> None:
    link = make_link(tmp_path, pki, memory=len(package))
    download(link, open_session(link, establish_keyset(link, pki)), package)
    assert link.isdp().lifecycle == DISABLED


def test_bytes_after_the_end_pe_abort(tmp_path: Path, pki: DevPki, package: bytes) -> None:
    link = make_link(tmp_path, pki)
    host = open_session(link, establish_keyset(link, pki))
    n, answers = send_segments(link, host, [package + bytes.fromhex("A0")])
    statuses, aborted, _ = saip.decode_euicc_response(answers[-1])
    assert aborted and statuses[-1] == saip.PeStatus(saip.INVALID_REQUEST_FORMAT, len(saip.split_pes(package)) - 1)
    assert link.isdp().lifecycle == PERSONALIZED


def test_new_session_discards_a_partial_download(tmp_path: Path, pki: DevPki, package: bytes) -> None:
    link = make_link(tmp_path, pki)
    keys = establish_keyset(link, pki)
    parts = segments(package)
    send_segments(link, open_session(link, keys), parts[:1])
    assert link.isdp().download is not None
    host = open_session(link, keys)
    assert link.isdp().download is None
    n, answers = send_segments(link, host, parts[1:])  # the rest alone does not start with the header
    assert saip.decode_euicc_response(answers[0])[1]


# --- state file -------------------------------------------------------------------------------------------------


def test_state_without_es8_fields_still_loads(tmp_path: Path, pki: DevPki) -> None:
    link = make_link(tmp_path, pki)
    state = json.loads(link.path.read_text())
    for p in state["profiles"]:
        for name in ("keyset", "key_agreement", "scp03t", "download", "package_file"):
            del p[name]
    link.path.write_text(json.dumps(state))
    p = Card.load(link.path).profile(P1)
    assert p is not None and p.keyset is None and p.download is None and p.package_file is None


def test_keys_are_found_beside_the_state_file(tmp_path: Path, pki: DevPki) -> None:
    link = make_link(tmp_path, pki)
    card = Card.load(link.path)
    assert card.ci_pem() == pki.ci_cert_pem and card.ecasd_key() is not None
    (tmp_path / "ecasd.key.pem").unlink()
    assert card.ecasd_key() is None


@pytest.mark.parametrize("pol,expected", [
    (None, Pol1()), (b"", Pol1()), (b"\x01", Pol1(disable_not_allowed=True)),
    (b"\x02", Pol1(delete_not_allowed=True)), (b"\x04", Pol1(delete_when_disabled=True)),
    (b"\xff\x00", Pol1(True, True, True)),
])
def test_pol1_coding(pol: bytes | None, expected: Pol1) -> None:
    assert Pol1.from_pol(pol) == expected
    assert Pol1.from_pol(expected.to_pol()) == expected
