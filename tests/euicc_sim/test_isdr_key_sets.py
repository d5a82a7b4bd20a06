"""SM-SR change on the simulated card: EstablishISDRKeySet, FinaliseISDRhandover and the key sets of the OTA front.

The whole exchange goes as it does between two SM-SRs and a card: SM-SR1 relays STORE DATA 3A01 (SM-SR2's
certificate) and 3A02 (built by keys.ecka.isdr_dgi_3a02 from the ES7 CreateAdditionalKeySet fields SM-SR2 made with
keys.ecka.smsr_key_agreement) in SCP80 packets under its own key set; SM-SR2 checks the receipt
(keys.ecka.smsr_finish), then speaks under its new key set, deletes SM-SR1's and sets its address. Every rule of
the card (euicc_sim/card.py, its table) is then tested on its own with its status word and an unchanged state.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from euicc_sim.card import Card, IsdP
from euicc_sim.network import CardOta, card_keyset
from keys import ecka
from keys.gp_cert import CERT_TYPE_SMSR, parse_gp_certificate
from keys.pki import DevPki, make_ci, make_gp_cert_by_ci, private_key_pem
from keys.scp80 import SPI_SGP02, PorStatus, ResponsePacket, Scp80Keyset, Spi, unwrap_command, unwrap_response, \
    wrap_command
from ota import es5, remote, sms
from ota.es5 import DISABLED, ENABLED
from tests.keys import reference as ref

EID = "89049032000000000000000000000163"
ISD_R = "A0000005591010FFFFFFFF8900000100"
TAR = bytes.fromhex("000001")
P0 = "A0000005591010FFFFFFFF8900001000"
P1 = "A0000005591010FFFFFFFF8900001100"
SMDP_OID, SMSR1_OID, EUM_OID, MNO_OID = ("1.3.6.1.4.1.99999.1.2", "1.3.6.1.4.1.99999.1.1", "1.3.6.1.4.1.99999.3.1",
                                         "1.3.6.1.4.1.99999.2.1")
SMSR2_OID = "1.3.6.1.4.1.99999.1.7"
SMSR1_KEYS = Scp80Keyset(kvn=1, enc=bytes(range(16)), mac=bytes(range(16, 32)))
NOW = datetime.datetime.now(datetime.timezone.utc)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> DevPki:
    return DevPki.generate(tmp_path_factory.mktemp("pki"), smdp_oid=SMDP_OID, smsr_oid=SMSR1_OID, eum_oid=EUM_OID,
                           mno_oid=MNO_OID)


@pytest.fixture(scope="module")
def smsr2(pki: DevPki) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """SK.SR.ECDSA and CERT.SR.ECDSA of the new SM-SR, from the same CI."""
    return pki.issue_smsr(SMSR2_OID)


class Smsr:
    """One SM-SR's side of SCP80 to the card: its key set and its counters."""

    def __init__(self, keys: Scp80Keyset) -> None:
        self.keys, self.counter = keys, 0

    def packet(self, ota: CardOta, apdus: list[bytes]) -> ResponsePacket:
        self.counter += 1
        segments = ota.execute(wrap_command(self.keys, SPI_SGP02, TAR, self.counter,
                                            remote.encode_command_script(apdus)))
        iei, por = sms.reassemble([sms.parse_user_data(s) for s in segments])
        assert iei == sms.RPI
        return unwrap_response(por, self.keys, SPI_SGP02)

    def script(self, ota: CardOta, apdus: list[bytes]) -> list[tuple[bytes, int]]:
        """The R-APDUs (data, SW) of a script that the card received and ran."""
        por = self.packet(ota, apdus)
        assert por.status == PorStatus.POR_OK
        return [es5.split_response(r) for r in remote.decode_response_script(por.data).responses]


def make_card(tmp_path: Path, pki: DevPki, *, ci: bool = True, ecasd: bool = True) -> tuple[Path, ec.EllipticCurvePublicKey]:
    """A card with SM-SR1's key set 1; returns its state file and PK.ECASD.ECKA (as the EIS holds it)."""
    ecasd_key, ecasd_cert = pki.issue_ecasd(EID)
    if ecasd:
        (tmp_path / "ecasd.key.pem").write_bytes(private_key_pem(ecasd_key))
    if ci:
        (tmp_path / "ci.pem").write_bytes(pki.ci_cert_pem)
    profiles = [IsdP(P0, ENABLED, fallback=True, iccid="8988299000000000001", msisdn="447700900001", memory=1000),
                IsdP(P1, DISABLED, iccid="8988299000000000019", msisdn="447700900002", memory=1000)]
    scp80 = {"kvn": 1, "tar": TAR.hex(), "counter": 0, "enc": SMSR1_KEYS.enc.hex(), "mac": SMSR1_KEYS.mac.hex(),
             "dek": "22" * 16}
    Card.create(tmp_path / "card.json", eid=EID, isd_r_aid=ISD_R, profiles=profiles, free_memory=10_000, scp80=scp80)
    return tmp_path / "card.json", parse_gp_certificate(ecasd_cert).public_key()


@pytest.fixture
def card_file(tmp_path: Path, pki: DevPki) -> tuple[Path, ec.EllipticCurvePublicKey]:
    return make_card(tmp_path, pki)


def handover_key_set(ota: CardOta, smsr1: Smsr, smsr2: tuple, ecasd_public: ec.EllipticCurvePublicKey,
                     kvn: int = 2) -> ecka.IsdrKeySet:
    """Steps 7 to 23 of sgp02-wire §6.5: SM-SR1 relays, SM-SR2 computes and checks."""
    sk_sr2, cert_sr2 = smsr2
    [(data, sw)] = smsr1.script(ota, [es5.establish_isdr_key_set_3a01(cert_sr2)])  # ES7 AuthenticateSMSR
    assert sw == es5.SW_OK
    challenge = es5.decode_isdr_challenge(data)  # the AuthenticateSMSR callback's RandomChallenge
    request, ephemeral = ecka.smsr_key_agreement(sk_sr2, challenge, ecasd_public, kvn)  # SM-SR2
    # ES7 CreateAdditionalKeySet: SM-SR1 builds STORE DATA 3A02 from the fields it receives
    dgi_3a02 = ecka.isdr_dgi_3a02(
        key_version_number=request.key_version_number, initial_sequence_counter=request.initial_sequence_counter,
        ecc_key_length=request.ecc_key_length, scenario_parameter=request.scenario_parameter,
        host_id=request.host_id, ephemeral_public_key=request.ephemeral_public_key, signature=request.signature)
    [(data, sw)] = smsr1.script(ota, [es5.establish_isdr_key_set_3a02(dgi_3a02)])
    assert sw == es5.SW_OK
    dr, receipt = es5.decode_isdr_key_set_receipt(data)  # the callback's DerivationRandom and Receipt
    return ecka.smsr_finish(ephemeral, ecasd_public, request, dr, receipt)  # the commit point


# --- the whole exchange --------------------------------------------------------------------------------------------


def test_sm_sr_change_end_to_end(card_file, smsr2) -> None:
    path, ecasd_public = card_file
    ota = CardOta(Card.load(path), path, clock=lambda: NOW)
    smsr1 = Smsr(SMSR1_KEYS)
    smsr1.script(ota, [es5.get_status_isdp(None)])  # SM-SR1 at work before the change
    new = handover_key_set(ota, smsr1, smsr2, ecasd_public)
    assert new.kvn == 2 and (new.scp80.kic, new.scp80.kid) == (0x22, 0x22)

    # the card holds both key sets, its notifications still go to SM-SR1, nothing is pending any more
    shown = Card.load(path).view()
    assert shown["scp80"] == {"tar": "000001", "keysets": [{"kvn": 1, "counter": 3}, {"kvn": 2, "counter": 0}],
                              "notification_kvn": 1}
    assert shown["isdr_key_agreement_pending"] is False
    assert new.scp80.enc.hex().upper() not in json.dumps(shown).upper()  # KVNs, never keys
    stored = json.loads(path.read_text())["scp80"]["keysets"][1]  # the card keeps what SM-SR2 derived
    assert (stored["enc"], stored["mac"], stored["dek"]) == (new.scp80.enc.hex().upper(),
                                                             new.scp80.mac.hex().upper(), new.dek.hex().upper())

    # SM-SR2 speaks under its new key set: its own counter, from 1; the PoR comes under the same key set
    smsr2_link = Smsr(new.scp80)
    [(data, sw)] = smsr2_link.script(ota, [es5.get_status_isdp(None)])
    assert sw == es5.SW_OK and len(es5.decode_isdp_statuses(data)) == 2

    # steps 24-26: FinaliseISDRhandover then the new SM-SR address, in one script under the new keys
    responses = smsr2_link.script(ota, [es5.finalise_isdr_handover([1]), es5.update_smsr_addressing("+447000000002")])
    assert responses == [(b"", es5.SW_OK), (b"", es5.SW_OK)]
    card = Card.load(path)
    assert card.scp80.kvns == [2] and card.notification_kvn == 2 and card.smsr_sms_address == "+447000000002"
    assert card.view()["scp80"]["keysets"] == [{"kvn": 2, "counter": 2}]

    # a packet under SM-SR1's old keys is refused: an unsecured PoR '06', nothing runs, nothing is stored
    before = path.read_bytes()
    por = smsr1.packet(ota, [es5.enable_profile(bytes.fromhex(P1))])
    assert (por.status, por.counter, por.data) == (PorStatus.UNIDENTIFIED_SECURITY_ERROR, 0, b"")
    assert path.read_bytes() == before

    # SM-SR2 runs the card; its notifications go under key set 2
    [(_, sw)] = smsr2_link.script(ota, [es5.enable_profile(bytes.fromhex(P1))])
    assert sw == es5.SW_OK
    assert card_keyset(ota.card) == new.scp80
    [submit] = ota.due_notifications("447000000002", retry=10.0, now=0.0)
    iei, packet = sms.reassemble([sms.parse_user_data(sms.decode_sms_submit(submit).ud)])
    assert iei == sms.CPI and packet[5:7] == b"\x22\x22"  # KIc, KID: KVN 2, AES
    note = es5.decode_notification(unwrap_command(packet, new.scp80).data)
    assert (note.type, note.isdp_aid.hex().upper()) == (es5.NOTIF_PROFILE_CHANGE_OK, P1)


def test_the_key_sets_survive_a_restart(card_file, smsr2) -> None:
    path, ecasd_public = card_file
    ota = CardOta(Card.load(path), path, clock=lambda: NOW)
    smsr1 = Smsr(SMSR1_KEYS)
    [(data, _)] = smsr1.script(ota, [es5.establish_isdr_key_set_3a01(smsr2[1])])
    assert Card.load(path).isdr_key_agreement is not None  # the challenge is kept between the two SMS
    ota = CardOta(Card.load(path), path, clock=lambda: NOW)  # the simulated network restarts in between
    request, ephemeral = ecka.smsr_key_agreement(smsr2[0], es5.decode_isdr_challenge(data), ecasd_public, 7)
    [(data, sw)] = smsr1.script(ota, [es5.establish_isdr_key_set_3a02(request.dgi_3a02())])
    new = ecka.smsr_finish(ephemeral, ecasd_public, request, *es5.decode_isdr_key_set_receipt(data))
    ota = CardOta(Card.load(path), path, clock=lambda: NOW)
    assert ota.card.scp80.kvns == [1, 7]
    [(_, sw)] = Smsr(new.scp80).script(ota, [es5.get_status_isdp(None)])
    assert sw == es5.SW_OK


def test_a_retransmitted_3a02_gets_the_same_answer(card_file, smsr2) -> None:
    """SM-SR1 resends the identical packet after a lost PoR: the card answers the recorded PoR, once keyed."""
    path, ecasd_public = card_file
    ota = CardOta(Card.load(path), path, clock=lambda: NOW)
    smsr1 = Smsr(SMSR1_KEYS)
    [(data, _)] = smsr1.script(ota, [es5.establish_isdr_key_set_3a01(smsr2[1])])
    request, _ = ecka.smsr_key_agreement(smsr2[0], es5.decode_isdr_challenge(data), ecasd_public, 2)
    packet = wrap_command(SMSR1_KEYS, SPI_SGP02, TAR, 2, remote.encode_command_script(
        [es5.establish_isdr_key_set_3a02(request.dgi_3a02())]))
    first = ota.execute(packet)
    assert ota.execute(packet) == first
    assert Card.load(path).scp80.kvns == [1, 2]


def test_old_format_files_load_and_are_written_as_format_2(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    v1 = {"format": 1, "eid": EID, "isd_r_aid": ISD_R, "free_memory": 5, "profiles": [], "pending": [],
          "scp80": {"kvn": 3, "tar": "000001", "counter": 9, "enc": "00" * 16, "mac": "11" * 16, "dek": "22" * 16,
                    "recent": [{"counter": 9, "sha256": "ab", "por": []}]}}
    path.write_text(json.dumps(v1))
    card = Card.load(path)
    assert card.scp80.kvns == [3] and card.notification_kvn == 3
    assert (card.scp80.keyset(3).counter, card.scp80.keyset(3).recent) == (9, v1["scp80"]["recent"])
    card.save()
    saved = json.loads(path.read_text())
    assert saved["format"] == 2 and saved["notification_kvn"] == 3
    assert saved["scp80"] == {"tar": "000001", "keysets": [{"kvn": 3, "enc": "00" * 16, "mac": "11" * 16,
                                                            "dek": "22" * 16, "counter": 9,
                                                            "recent": v1["scp80"]["recent"]}]}


@pytest.mark.parametrize("scp80", [
    {"tar": "000001", "keysets": [{"kvn": 1, "enc": "00" * 16, "mac": "11" * 16}] * 2},  # KVN twice
    {"tar": "000001", "keysets": [{"kvn": 16, "enc": "00" * 16, "mac": "11" * 16}]},  # no SCP80 KVN
    {"tar": "000001", "keysets": [{"kvn": 1, "enc": "00" * 15, "mac": "11" * 16}]},  # short key
    {"kvn": 1, "tar": "000001"},  # format 1 without keys
    {"tar": "0001", "keysets": []},  # TAR of two bytes
])
def test_broken_key_sets_are_refused(tmp_path: Path, scp80: dict) -> None:
    with pytest.raises(ValueError):
        Card.create(tmp_path / "card.json", eid=EID, isd_r_aid=ISD_R, profiles=[], free_memory=1, scp80=scp80)


# --- the card's rules, one by one, with their status words -----------------------------------------------------------


class Direct:
    """The ISD-R without the OTA front: commands as if they came under key set ``kvn``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.card = Card.load(path)

    def run(self, apdu: bytes, kvn: int | None = 1, now: datetime.datetime = NOW) -> tuple[bytes, int]:
        return es5.split_response(self.card.process(apdu, kvn=kvn, now=now))

    def refused(self, apdu: bytes, expected: int, kvn: int | None = 1, now: datetime.datetime = NOW) -> None:
        """``apdu`` is answered ``expected`` with no data, and neither the card object nor its file changes."""
        state, on_disk = self.card._state(), self.path.read_bytes()
        assert self.run(apdu, kvn, now) == (b"", expected)
        assert self.card._state() == state and self.path.read_bytes() == on_disk

    def challenge(self, cert: bytes) -> bytes:
        data, sw = self.run(es5.establish_isdr_key_set_3a01(cert))
        assert sw == es5.SW_OK
        return es5.decode_isdr_challenge(data)


def test_3a01_answers_a_fresh_challenge(card_file, smsr2) -> None:
    direct = Direct(card_file[0])
    first, second = direct.challenge(smsr2[1]), direct.challenge(smsr2[1])
    assert len(first) == len(second) == 16 and first != second  # a repeated 3A01 replaces the challenge
    pending = Card.load(direct.path).isdr_key_agreement
    assert pending is not None and pending.rc == second.hex().upper()
    assert pending.key() == smsr2[0].public_key()


def test_3a01_refuses_what_is_no_certified_sm_sr(card_file, pki, smsr2) -> None:
    direct = Direct(card_file[0])
    other_ci_key, other_ci = make_ci(common_name="another CI")
    _, foreign = make_gp_cert_by_ci(other_ci_key, other_ci, oid=SMSR2_OID, cert_type=CERT_TYPE_SMSR)
    _, expired = pki.issue_smsr(SMSR2_OID, expiry=datetime.date(2020, 1, 1))
    for cert in (pki.smdp_gp_cert,  # an SM-DP certificate ('C8' 01)
                 foreign,  # another CI
                 expired,
                 smsr2[1][:-1] + bytes([smsr2[1][-1] ^ 1])):  # the CI signature broken
        direct.refused(es5.establish_isdr_key_set_3a01(cert), es5.SW_SECURITY)
    direct.refused(es5.establish_isdr_key_set_3a01(smsr2[1]), es5.SW_SECURITY,
                   now=NOW + datetime.timedelta(days=365 * 12))  # checked at the card's time: after its expiry
    not_a_cert = bytes.fromhex("80E20900 0C 3A01 09 7F2006930101420102 00")
    direct.refused(not_a_cert, es5.SW_WRONG_DATA)
    assert direct.card.isdr_key_agreement is None


def test_3a01_without_a_ci_certificate(tmp_path: Path, pki, smsr2) -> None:
    path, _ = make_card(tmp_path, pki, ci=False)
    Direct(path).refused(es5.establish_isdr_key_set_3a01(smsr2[1]), es5.SW_SECURITY)


def test_3a02_refusals_leave_the_card_unchanged(card_file, smsr2) -> None:
    path, ecasd_public = card_file
    direct = Direct(path)
    sk_sr2, cert_sr2 = smsr2
    # before any 3A01
    request, _ = ecka.smsr_key_agreement(sk_sr2, bytes(16), ecasd_public, 2)
    direct.refused(es5.establish_isdr_key_set_3a02(request.dgi_3a02()), es5.SW_CONDITIONS)

    rc = direct.challenge(cert_sr2)
    good, ephemeral = ecka.smsr_key_agreement(sk_sr2, rc, ecasd_public, 2)
    # signed by a key other than the certificate's
    forged, _ = ecka.smsr_key_agreement(ec.generate_private_key(ec.SECP256R1()), rc, ecasd_public, 2)
    direct.refused(es5.establish_isdr_key_set_3a02(forged.dgi_3a02()), es5.SW_SECURITY)
    # signed for another challenge
    stale, _ = ecka.smsr_key_agreement(sk_sr2, bytes(16), ecasd_public, 2)
    direct.refused(es5.establish_isdr_key_set_3a02(stale.dgi_3a02()), es5.SW_SECURITY)
    # SM-SR1 altered the KVN: the signature no longer covers the CRT
    altered = ecka.isdr_dgi_3a02(**{**good.__dict__, "key_version_number": 3})
    direct.refused(es5.establish_isdr_key_set_3a02(altered), es5.SW_SECURITY)
    # the KVN of a key set the card holds (SM-SR1's own)
    taken, _ = ecka.smsr_key_agreement(sk_sr2, rc, ecasd_public, 1)
    direct.refused(es5.establish_isdr_key_set_3a02(taken.dgi_3a02()), es5.SW_CONDITIONS)
    # validly signed, but no SCP80 key set: KVN '30', built by the reference SM-SR2
    epk = ref.public_key_tlv(ec.generate_private_key(ec.SECP256R1()).public_key())
    crt = ref.key_agreement_crt(kvn=0x30, key_id=0x01)
    scp03_kvn = ref.isdr_store_data_3a02(crt, epk, ref.isdr_signature(sk_sr2, crt, epk, rc))
    direct.refused(es5.establish_isdr_key_set_3a02(scp03_kvn), es5.SW_WRONG_DATA)
    # malformed: no signature at all
    direct.refused(es5.establish_isdr_key_set_3a02(ecka.isdr_dgi_3a02(**{**good.__dict__, "signature": None})),
                   es5.SW_WRONG_DATA)

    # none of that consumed the challenge: the genuine 3A02 still goes through
    data, sw = direct.run(es5.establish_isdr_key_set_3a02(good.dgi_3a02()))
    assert sw == es5.SW_OK
    keys = ecka.smsr_finish(ephemeral, ecasd_public, good, *es5.decode_isdr_key_set_receipt(data))
    assert direct.card.scp80.keyset(2).keyset() == keys.scp80 and direct.card.isdr_key_agreement is None
    # and a replay of it finds no challenge any more
    direct.refused(es5.establish_isdr_key_set_3a02(good.dgi_3a02()), es5.SW_CONDITIONS)


def test_3a02_without_an_ecasd_key(tmp_path: Path, pki, smsr2) -> None:
    path, ecasd_public = make_card(tmp_path, pki, ecasd=False)
    direct = Direct(path)
    request, _ = ecka.smsr_key_agreement(smsr2[0], direct.challenge(smsr2[1]), ecasd_public, 2)
    direct.refused(es5.establish_isdr_key_set_3a02(request.dgi_3a02()), es5.SW_CONDITIONS)


@pytest.fixture
def two_key_sets(card_file, smsr2) -> Direct:
    """A card holding key sets 1 (SM-SR1's) and 2 (SM-SR2's, just established)."""
    path, ecasd_public = card_file
    direct = Direct(path)
    request, _ = ecka.smsr_key_agreement(smsr2[0], direct.challenge(smsr2[1]), ecasd_public, 2)
    assert direct.run(es5.establish_isdr_key_set_3a02(request.dgi_3a02()))[1] == es5.SW_OK
    assert direct.card.scp80.kvns == [1, 2]
    return direct


def test_delete_key_set_refusals(two_key_sets: Direct) -> None:
    direct = two_key_sets
    direct.refused(es5.finalise_isdr_handover([1]), es5.SW_CONDITIONS, kvn=1)  # the key set it came under
    direct.refused(es5.finalise_isdr_handover([2, 1]), es5.SW_CONDITIONS, kvn=2)
    direct.refused(es5.finalise_isdr_handover([5]), es5.SW_NOT_FOUND, kvn=2)
    direct.refused(es5.finalise_isdr_handover([1, 5]), es5.SW_NOT_FOUND, kvn=2)  # all or nothing
    direct.refused(es5.finalise_isdr_handover([es5.KeySetDeletion(1, 1, 1)]), es5.SW_WRONG_DATA, kvn=2)  # KIc only
    direct.refused(es5.finalise_isdr_handover([es5.KeySetDeletion(1, 2, 3)]), es5.SW_WRONG_DATA, kvn=2)  # no KIc
    direct.refused(bytes.fromhex("80E4000004F2020101"), es5.SW_WRONG_DATA, kvn=2)
    direct.refused(bytes.fromhex("80E4010005F203010103"), es5.SW_WRONG_P1P2, kvn=2)
    assert direct.card.scp80.kvns == [1, 2] and direct.card.notification_kvn == 1


@pytest.mark.parametrize("last_key_id", [2, 3])
def test_delete_key_set_moves_the_notifications(two_key_sets: Direct, last_key_id: int) -> None:
    direct = two_key_sets
    assert direct.run(es5.finalise_isdr_handover([es5.KeySetDeletion(1, 1, last_key_id)]), kvn=2) == (b"", 0x9000)
    card = Card.load(direct.path)
    assert card.scp80.kvns == [2] and card.notification_kvn == 2


def test_3a07_moves_the_notifications_to_its_key_set(two_key_sets: Direct) -> None:
    direct = two_key_sets
    assert direct.run(es5.update_smsr_addressing("+447000000002"), kvn=2) == (b"", es5.SW_OK)
    assert Card.load(direct.path).notification_kvn == 2
    assert direct.run(es5.update_smsr_addressing("+447000000001"), kvn=1) == (b"", es5.SW_OK)  # a roll-back
    assert Card.load(direct.path).notification_kvn == 1
    assert direct.run(es5.update_smsr_addressing("+447000000003"), kvn=None) == (b"", es5.SW_OK)  # not over SCP80
    assert Card.load(direct.path).notification_kvn == 1


def test_packets_under_unknown_key_sets(card_file) -> None:
    path, _ = card_file
    ota = CardOta(Card.load(path), path)
    before = path.read_bytes()
    stranger = Smsr(Scp80Keyset(kvn=4, enc=bytes(16), mac=bytes(16)))
    por = stranger.packet(ota, [es5.get_status_isdp(None)])
    assert (por.status, por.counter) == (PorStatus.UNIDENTIFIED_SECURITY_ERROR, 0)
    # KIc and KID naming two different key sets
    mixed = bytearray(wrap_command(SMSR1_KEYS, SPI_SGP02, TAR, 1, remote.encode_command_script([])))
    mixed[6] = 0x22
    [segment] = ota.execute(bytes(mixed))
    _, raw = sms.reassemble([sms.parse_user_data(segment)])
    assert unwrap_response(raw, SMSR1_KEYS, SPI_SGP02).status == PorStatus.UNIDENTIFIED_SECURITY_ERROR
    # the TAR is looked at first, as for a key set the card holds
    other_tar = wrap_command(stranger.keys, SPI_SGP02, bytes.fromhex("B00000"), 1, b"")
    [segment] = ota.execute(other_tar)
    _, raw = sms.reassemble([sms.parse_user_data(segment)])
    assert unwrap_response(raw, SMSR1_KEYS, SPI_SGP02).status == PorStatus.TAR_UNKNOWN
    # no PoR asked for: nothing at all
    quiet = wrap_command(stranger.keys, Spi(por="none"), TAR, 1, b"")
    assert ota.execute(quiet) == []
    assert path.read_bytes() == before


def test_counters_are_kept_per_key_set(two_key_sets: Direct) -> None:
    path = two_key_sets.path
    keys2 = two_key_sets.card.scp80.keyset(2).keyset()
    ota = CardOta(Card.load(path), path)
    smsr1, smsr2_link = Smsr(SMSR1_KEYS), Smsr(keys2)
    smsr1.counter = 40
    smsr1.script(ota, [es5.get_status_isdp(None)])  # key set 1 at 41
    smsr2_link.script(ota, [es5.get_status_isdp(None)])  # key set 2 still accepts 1
    smsr2_link.counter = 0
    por = smsr2_link.packet(ota, [es5.get_data_resources()])  # 1 again under key set 2 (another packet): too low
    assert por.status == PorStatus.CNTR_LOW
    assert [(k["kvn"], k["counter"]) for k in Card.load(path).view()["scp80"]["keysets"]] == [(1, 41), (2, 1)]
