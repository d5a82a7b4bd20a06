"""The simulated ISD-R: every rule of euicc_sim/card.py with its status word, persistence and invariants."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from euicc_sim.card import FREE_VOLATILE_MEMORY, Card, IsdP, PendingNotification, Pol1, Scp80KeySet, Scp80State
from keys import dgi
from ota import es5
from ota.es5 import DISABLED, ENABLED, PERSONALIZED, SELECTABLE

EID = "89049032000000000000000000000142"
ISD_R = "A0000005591010FFFFFFFF8900000100"
ELF = bytes.fromhex("A0000005591010FFFFFFFF8900000D00")
MODULE = bytes.fromhex("A0000005591010FFFFFFFF8900000E00")


def isdp(i: int) -> str:
    return f"A0000005591010FFFFFFFF89{0x10 + i:06X}00"


P0, P1, P2, P3 = isdp(0), isdp(1), isdp(2), isdp(3)
UNKNOWN = isdp(9)


def b(aid: str) -> bytes:
    return bytes.fromhex(aid)


def profiles(**overrides) -> list[IsdP]:
    """P0 bootstrap (ENABLED, fall-back), P1 DISABLED, P2 SELECTABLE (empty ISD-P)."""
    out = [
        IsdP(P0, ENABLED, fallback=True, iccid="8988299000000000001", imsi="001010000000001",
             msisdn="447700900001", memory=100_000),
        IsdP(P1, DISABLED, iccid="8988299000000000019", imsi="001010000000002", msisdn="447700900002",
             memory=100_000),
        IsdP(P2, SELECTABLE, memory=50_000),
    ]
    for p in out:
        for name, value in overrides.get(p.aid, {}).items():
            setattr(p, name, value)
    return out


SCP80 = {"kvn": 1, "tar": "000001", "counter": 5, "enc": "00" * 16, "mac": "11" * 16, "dek": "22" * 16}


def make(tmp_path: Path, plist: list[IsdP] | None = None, free_memory: int = 200_000) -> Card:
    return Card.create(tmp_path / "card.json", eid=EID, isd_r_aid=ISD_R, profiles=profiles() if plist is None
                       else plist, free_memory=free_memory, scp80=SCP80)


def run(card: Card, apdu: bytes) -> tuple[bytes, int]:
    return es5.split_response(card.process(apdu))


def sw(card: Card, apdu: bytes) -> int:
    return run(card, apdu)[1]


def state(card: Card, aid: str) -> int:
    p = card.profile(aid)
    assert p is not None
    return p.lifecycle


def enabled_count(card: Card) -> int:
    return sum(p.lifecycle == ENABLED for p in card.profiles)


@pytest.fixture
def card(tmp_path: Path) -> Card:
    return make(tmp_path)


# --- creation and persistence ----------------------------------------------------------------------------------------

def test_create_and_load_round_trip(card: Card) -> None:
    loaded = Card.load(card.path)
    assert loaded.eid == EID and loaded.isd_r_aid == ISD_R
    assert loaded.profiles == card.profiles
    assert loaded.free_memory == 200_000
    assert loaded.scp80 == Scp80State("000001", [Scp80KeySet(1, "00" * 16, "11" * 16, "22" * 16, counter=5)])
    assert loaded.notification_kvn == 1 and loaded.notification_keyset() == loaded.scp80.keyset(1)
    assert loaded.pending == [] and loaded.next_seq == 1 and loaded.silent is False


def test_create_refuses_existing_file(card: Card) -> None:
    with pytest.raises(FileExistsError):
        make(card.path.parent)
    Card.create(card.path, eid=EID, isd_r_aid=ISD_R, profiles=[], free_memory=1, scp80={}, overwrite=True)
    assert Card.load(card.path).profiles == []


@pytest.mark.parametrize("plist", [
    [IsdP(P0, ENABLED), IsdP(P1, ENABLED)],  # two enabled
    [IsdP(P0, ENABLED, fallback=True), IsdP(P1, DISABLED, fallback=True)],  # two fall-back
    [IsdP(P0, SELECTABLE, fallback=True)],  # fall-back profile not installed
    [IsdP(P0, ENABLED), IsdP(P0.lower(), DISABLED)],  # duplicate AID
    [IsdP(P0, 0x55)],  # unknown life-cycle byte
    [IsdP("A000", ENABLED)],  # AID too short
])
def test_create_refuses_broken_states(tmp_path: Path, plist: list[IsdP]) -> None:
    with pytest.raises(ValueError):
        make(tmp_path, plist)
    assert not (tmp_path / "card.json").exists()


def test_load_refuses_garbage(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    path.write_text("{}")
    with pytest.raises(ValueError):
        Card.load(path)
    path.write_text("not json")
    with pytest.raises(ValueError):
        Card.load(path)


def test_save_leaves_no_temporary_file(card: Card) -> None:
    card.silent = True
    card.save()
    assert [p.name for p in card.path.parent.iterdir()] == ["card.json"]
    assert json.loads(card.path.read_text())["silent"] is True
    assert Card.load(card.path).silent is True


def test_state_change_persists_across_load(card: Card) -> None:
    assert sw(card, es5.enable_profile(b(P1))) == es5.SW_OK
    loaded = Card.load(card.path)
    assert state(loaded, P1) == ENABLED and state(loaded, P0) == DISABLED
    assert loaded.pending == [PendingNotification(1, es5.NOTIF_PROFILE_CHANGE_OK, P1, [])]
    assert loaded.next_seq == 2


def test_refused_command_does_not_touch_the_file(card: Card) -> None:
    before = card.path.read_bytes()
    assert sw(card, es5.enable_profile(b(UNKNOWN))) == es5.SW_NOT_FOUND
    assert sw(card, es5.delete_isdp(b(P0))) == es5.SW_CONDITIONS
    assert card.path.read_bytes() == before


# --- ENABLE 3A03 ---------------------------------------------------------------------------------------------------

def test_enable_switches_and_queues_type_02(card: Card) -> None:
    assert run(card, es5.enable_profile(b(P1))) == (b"", es5.SW_OK)
    assert state(card, P1) == ENABLED and state(card, P0) == DISABLED
    assert card.enabled_profile().aid == P1
    assert card.pending_notifications() == [PendingNotification(1, 0x02, P1, [])]


def test_enable_unknown(card: Card) -> None:
    assert sw(card, es5.enable_profile(b(UNKNOWN))) == es5.SW_NOT_FOUND


def test_enable_already_enabled_is_idempotent(card: Card) -> None:
    assert sw(card, es5.enable_profile(b(P0))) == es5.SW_OK
    assert card.pending == [] and state(card, P0) == ENABLED
    assert sw(card, es5.enable_profile(b(P1))) == es5.SW_OK
    assert sw(card, es5.enable_profile(b(P1))) == es5.SW_OK  # SM-SR retry after a lost PoR
    assert len(card.pending) == 1


@pytest.mark.parametrize("lifecycle", [SELECTABLE, PERSONALIZED])
def test_enable_not_disabled(tmp_path: Path, lifecycle: int) -> None:
    card = make(tmp_path, profiles(**{P2: {"lifecycle": lifecycle}}))
    assert sw(card, es5.enable_profile(b(P2))) == es5.SW_CONDITIONS
    assert state(card, P0) == ENABLED and card.pending == []


def test_enable_blocked_by_pol1_of_enabled_profile(tmp_path: Path) -> None:
    card = make(tmp_path, profiles(**{P0: {"pol1": Pol1(disable_not_allowed=True)}}))
    assert sw(card, es5.enable_profile(b(P1))) == es5.SW_POL1
    assert state(card, P0) == ENABLED and state(card, P1) == DISABLED and card.pending == []


def test_enable_delete_when_disabled_old_profile(tmp_path: Path) -> None:
    # P1 enabled with POL1 "delete when disabled", P0 is the disabled fall-back profile, P3 another disabled one
    plist = [
        IsdP(P0, DISABLED, fallback=True, memory=10),
        IsdP(P1, ENABLED, pol1=Pol1(delete_when_disabled=True), memory=1_000),
        IsdP(P3, DISABLED, memory=10),
    ]
    card = make(tmp_path, plist, free_memory=5)
    assert sw(card, es5.enable_profile(b(P3))) == es5.SW_OK
    assert card.pending_notifications() == [PendingNotification(1, 0x02, P3, [P1])]
    # the deletion happens on the confirmation, and the response lists it
    data, status = run(card, es5.notification_confirmation(1))
    assert status == es5.SW_OK
    assert es5.decode_confirmation_response(data) == [b(P1)]
    assert card.profile(P1) is None and card.free_memory == 1_005 and card.pending == []
    assert Card.load(card.path).profile(P1) is None


def test_fallback_profile_ignores_delete_when_disabled(tmp_path: Path) -> None:
    card = make(tmp_path, profiles(**{P0: {"pol1": Pol1(delete_when_disabled=True)}}))
    assert sw(card, es5.enable_profile(b(P1))) == es5.SW_OK
    assert card.pending_notifications() == [PendingNotification(1, 0x02, P1, [])]


def test_enable_attach_failure_rolls_back(tmp_path: Path) -> None:
    card = make(tmp_path, profiles(**{P1: {"attach_fails": True}}))
    assert sw(card, es5.enable_profile(b(P1))) == es5.SW_OK
    assert state(card, P0) == ENABLED and state(card, P1) == DISABLED
    assert card.pending_notifications() == [PendingNotification(1, es5.NOTIF_PROFILE_CHANGE_ROLLED_BACK, P0, [])]


# --- DISABLE 3A04 --------------------------------------------------------------------------------------------------

@pytest.fixture
def card_p1_enabled(tmp_path: Path) -> Card:
    return make(tmp_path, profiles(**{P0: {"lifecycle": DISABLED}, P1: {"lifecycle": ENABLED}}))


def test_disable_falls_back_and_queues_type_05(card_p1_enabled: Card) -> None:
    card = card_p1_enabled
    assert sw(card, es5.disable_profile(b(P1))) == es5.SW_OK
    assert state(card, P1) == DISABLED and state(card, P0) == ENABLED
    assert card.pending_notifications() == [PendingNotification(1, es5.NOTIF_FALLBACK, P0, [])]


def test_disable_with_delete_when_disabled(tmp_path: Path) -> None:
    card = make(tmp_path, profiles(**{P0: {"lifecycle": DISABLED},
                                      P1: {"lifecycle": ENABLED, "pol1": Pol1(delete_when_disabled=True)}}))
    assert sw(card, es5.disable_profile(b(P1))) == es5.SW_OK
    assert card.pending_notifications() == [PendingNotification(1, 0x05, P0, [P1])]
    data, _ = run(card, es5.notification_confirmation(1))
    assert es5.decode_confirmation_response(data) == [b(P1)]
    assert card.profile(P1) is None


def test_disable_unknown(card: Card) -> None:
    assert sw(card, es5.disable_profile(b(UNKNOWN))) == es5.SW_NOT_FOUND


def test_disable_not_enabled(card: Card) -> None:
    assert sw(card, es5.disable_profile(b(P1))) == es5.SW_CONDITIONS


def test_disable_fallback_profile(card: Card) -> None:
    assert sw(card, es5.disable_profile(b(P0))) == es5.SW_CONDITIONS
    assert state(card, P0) == ENABLED


def test_disable_blocked_by_pol1(tmp_path: Path) -> None:
    card = make(tmp_path, profiles(**{P0: {"lifecycle": DISABLED},
                                      P1: {"lifecycle": ENABLED, "pol1": Pol1(disable_not_allowed=True)}}))
    assert sw(card, es5.disable_profile(b(P1))) == es5.SW_POL1
    assert state(card, P1) == ENABLED


def test_disable_without_fallback_profile(tmp_path: Path) -> None:
    card = make(tmp_path, profiles(**{P0: {"lifecycle": DISABLED, "fallback": False},
                                      P1: {"lifecycle": ENABLED}}))
    assert sw(card, es5.disable_profile(b(P1))) == es5.SW_CONDITIONS
    assert state(card, P1) == ENABLED


def test_disable_attach_failure_of_fallback_rolls_back(tmp_path: Path) -> None:
    card = make(tmp_path, profiles(**{P0: {"lifecycle": DISABLED, "attach_fails": True},
                                      P1: {"lifecycle": ENABLED}}))
    assert sw(card, es5.disable_profile(b(P1))) == es5.SW_OK
    assert state(card, P1) == ENABLED and state(card, P0) == DISABLED
    assert card.pending_notifications() == [PendingNotification(1, 0x03, P1, [])]


# --- SET FALL-BACK 3A05 --------------------------------------------------------------------------------------------

def test_set_fallback_moves_the_attribute(card: Card) -> None:
    assert sw(card, es5.set_fallback_attribute(b(P1))) == es5.SW_OK
    assert [p.aid for p in card.profiles if p.fallback] == [P1]
    assert sw(card, es5.set_fallback_attribute(b(P0))) == es5.SW_OK  # to the enabled one
    assert [p.aid for p in Card.load(card.path).profiles if p.fallback] == [P0]


def test_set_fallback_unknown_and_wrong_state(card: Card) -> None:
    assert sw(card, es5.set_fallback_attribute(b(UNKNOWN))) == es5.SW_NOT_FOUND
    assert sw(card, es5.set_fallback_attribute(b(P2))) == es5.SW_CONDITIONS
    assert [p.aid for p in card.profiles if p.fallback] == [P0]


# --- DELETE --------------------------------------------------------------------------------------------------------

def test_delete_releases_memory(card: Card) -> None:
    assert run(card, es5.delete_isdp(b(P1))) == (b"", es5.SW_OK)
    assert card.profile(P1) is None and card.free_memory == 300_000
    assert sw(card, es5.delete_isdp(b(P2))) == es5.SW_OK  # an empty ISD-P too
    assert Card.load(card.path).free_memory == 350_000


def test_delete_unknown(card: Card) -> None:
    assert sw(card, es5.delete_isdp(b(UNKNOWN))) == es5.SW_NOT_FOUND


def test_delete_enabled(card_p1_enabled: Card) -> None:
    assert sw(card_p1_enabled, es5.delete_isdp(b(P1))) == es5.SW_CONDITIONS


def test_delete_fallback(card_p1_enabled: Card) -> None:
    assert sw(card_p1_enabled, es5.delete_isdp(b(P0))) == es5.SW_CONDITIONS  # disabled, but fall-back


def test_delete_blocked_by_pol1(tmp_path: Path) -> None:
    card = make(tmp_path, profiles(**{P1: {"pol1": Pol1(delete_not_allowed=True)}}))
    assert sw(card, es5.delete_isdp(b(P1))) == es5.SW_POL1
    assert card.profile(P1) is not None


def test_master_delete_bypasses_pol1_but_not_fallback(tmp_path: Path) -> None:
    card = make(tmp_path, profiles(**{P1: {"pol1": Pol1(delete_not_allowed=True)}}))
    assert sw(card, es5.master_delete(b(P0), b"\x01" * 16)) == es5.SW_CONDITIONS
    assert sw(card, es5.master_delete(b(P1), b"\x01" * 16, token_identifier=b"\x01")) == es5.SW_OK
    assert card.profile(P1) is None


def test_delete_bad_p1p2_and_data(card: Card) -> None:
    assert sw(card, es5.Apdu(0x80, 0xE4, 0x00, 0x80, bytes.fromhex("4F10" + P1)).to_bytes()) == es5.SW_WRONG_P1P2
    assert sw(card, bytes.fromhex("80E4004005F203010103")) == es5.SW_WRONG_P1P2  # DELETE key with P2 '40'
    assert sw(card, bytes.fromhex("80E4000005F203050103")) == es5.SW_NOT_FOUND  # no key set 5 (tests/euicc_sim/
    assert card.scp80.kvns == [1]  # test_isdr_key_sets.py has every rule of FinaliseISDRhandover)


# --- INSTALL (CreateISDP) ------------------------------------------------------------------------------------------

def test_create_isdp(card: Card) -> None:
    assert sw(card, es5.create_isdp(ELF, MODULE, b(P3), 150_000)) == es5.SW_OK
    new = card.profile(P3)
    assert new == IsdP(P3, SELECTABLE, memory=150_000)
    assert card.free_memory == 50_000
    assert Card.load(card.path).profile(P3) == new


def test_create_isdp_duplicate(card: Card) -> None:
    assert sw(card, es5.create_isdp(ELF, MODULE, b(P1), 1)) == es5.SW_CONDITIONS
    assert sw(card, es5.create_isdp(ELF, MODULE, b(ISD_R), 1)) == es5.SW_CONDITIONS


def test_create_isdp_out_of_memory(card: Card) -> None:
    assert sw(card, es5.create_isdp(ELF, MODULE, b(P3), 200_001)) == es5.SW_MEMORY
    assert card.profile(P3) is None and card.free_memory == 200_000
    assert sw(card, es5.create_isdp(ELF, MODULE, b(P3), 200_000)) == es5.SW_OK
    assert card.free_memory == 0


def test_create_isdp_wrong_p1(card: Card) -> None:
    raw = bytearray(es5.create_isdp(ELF, MODULE, b(P3), 1))
    raw[2] = 0x04  # INSTALL [for install] only
    assert sw(card, bytes(raw)) == es5.SW_WRONG_P1P2


def test_install_profile_hook_then_enable(card: Card) -> None:
    assert sw(card, es5.create_isdp(ELF, MODULE, b(P3), 1_000)) == es5.SW_OK
    assert sw(card, es5.enable_profile(b(P3))) == es5.SW_CONDITIONS
    card.install_profile(P3, iccid="8988299000000000027", imsi="001010000000003", msisdn="447700900003")
    assert state(Card.load(card.path), P3) == DISABLED
    assert sw(card, es5.enable_profile(b(P3))) == es5.SW_OK
    assert card.enabled_profile().msisdn == "447700900003"
    with pytest.raises(ValueError):
        card.install_profile(P3, iccid="x")


def test_update_pol1_hook(card: Card) -> None:
    card.update_pol1(P1, Pol1(delete_not_allowed=True))
    assert Card.load(card.path).profile(P1).pol1 == Pol1(delete_not_allowed=True)
    assert sw(card, es5.delete_isdp(b(P1))) == es5.SW_POL1


# --- GET STATUS / GET DATA -----------------------------------------------------------------------------------------

def test_get_status_all(card: Card) -> None:
    data, status = run(card, es5.get_status_isdp())
    assert status == es5.SW_OK
    assert es5.decode_isdp_statuses(data) == [
        es5.IsdpStatus(b(P0), ENABLED, True, 100_000),
        es5.IsdpStatus(b(P1), DISABLED, False, 100_000),
        es5.IsdpStatus(b(P2), SELECTABLE, False, 50_000),
    ]


def test_get_status_one_and_unknown(card: Card) -> None:
    data, status = run(card, es5.get_status_isdp(b(P1)))
    assert status == es5.SW_OK
    assert es5.decode_isdp_statuses(data) == [es5.IsdpStatus(b(P1), DISABLED, False, 100_000)]
    assert run(card, es5.get_status_isdp(b(UNKNOWN))) == (b"", es5.SW_NOT_FOUND)


def test_get_status_without_isdp(tmp_path: Path) -> None:
    card = make(tmp_path, [])
    assert sw(card, es5.get_status_isdp()) == es5.SW_NOT_FOUND


def test_get_data_resources(card: Card) -> None:
    data, status = run(card, es5.get_data_resources())
    assert status == es5.SW_OK
    assert es5.decode_card_resources(data) == es5.CardResources(3, 200_000, FREE_VOLATILE_MEMORY)
    assert sw(card, bytes.fromhex("80CABF3000")) == es5.SW_NOT_FOUND


# --- 3A07 / 3A08 ---------------------------------------------------------------------------------------------------

def test_update_smsr_addressing(card: Card) -> None:
    assert sw(card, es5.update_smsr_addressing("+447700900999")) == es5.SW_OK
    assert card.smsr_sms_address == "+447700900999"
    assert Card.load(card.path).smsr_sms_address == "+447700900999"
    bad = es5.Apdu(0x80, 0xE2, 0x88, 0x00, dgi.encode_dgi(0x3A07, bytes.fromhex("A300"))).to_bytes()
    assert sw(card, bad) == es5.SW_WRONG_DATA
    assert card.smsr_sms_address == "+447700900999"


def test_confirmation_removes_pending_and_duplicate_is_harmless(card: Card) -> None:
    assert sw(card, es5.enable_profile(b(P1))) == es5.SW_OK
    assert run(card, es5.notification_confirmation(1)) == (bytes.fromhex("8000"), es5.SW_OK)
    assert card.pending == []
    assert Card.load(card.path).pending == []
    assert run(card, es5.notification_confirmation(1)) == (bytes.fromhex("8000"), es5.SW_OK)
    assert run(card, es5.notification_confirmation(0x4242)) == (bytes.fromhex("8000"), es5.SW_OK)


def test_confirmation_skips_isdp_no_longer_deletable(tmp_path: Path) -> None:
    plist = [IsdP(P0, DISABLED, fallback=True), IsdP(P1, ENABLED, pol1=Pol1(delete_when_disabled=True)),
             IsdP(P3, DISABLED)]
    card = make(tmp_path, plist)
    assert sw(card, es5.enable_profile(b(P3))) == es5.SW_OK  # seq 1 would delete P1
    assert sw(card, es5.enable_profile(b(P1))) == es5.SW_OK  # ... but P1 is enabled again
    data, _ = run(card, es5.notification_confirmation(1))
    assert es5.decode_confirmation_response(data) == []
    assert state(card, P1) == ENABLED


def test_notification_message_and_first_attach(card: Card) -> None:
    first = card.notify_first_attach()
    assert first == PendingNotification(1, es5.NOTIF_FIRST_ATTACH, P0, [])
    assert card.notify_first_attach() is None
    assert Card.load(card.path).first_attach_notified is True
    message = es5.decode_notification(card.notification_message(first))
    assert message == es5.Notification(bytes.fromhex(EID), 0x01, 1, b(P0))


def test_sequence_numbers_wrap_to_one(card: Card) -> None:
    card.next_seq = 0xFFFF
    assert sw(card, es5.enable_profile(b(P1))) == es5.SW_OK
    assert sw(card, es5.enable_profile(b(P0))) == es5.SW_OK
    assert [n.seq for n in card.pending_notifications()] == [1, 0xFFFF]
    assert card.next_seq == 2


# --- bad input -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    ("", es5.SW_WRONG_LENGTH),
    ("80E2", es5.SW_WRONG_LENGTH),
    ("80E28800053A03", es5.SW_WRONG_LENGTH),
    ("00A4040000", es5.SW_CLA),  # ISO class
    ("80990000", es5.SW_INS),
    ("80E28800053A0302AAAA", es5.SW_WRONG_DATA),  # no 4F in 3A03
    ("80E28800043A0302AA", es5.SW_WRONG_DATA),  # DGI length overruns
    ("80E28800033A0100", es5.SW_SECURITY),  # DGI 3A01 (SM-SR change) on a card without a CI certificate
    ("80E20800033A0300", es5.SW_WRONG_P1P2),  # chained STORE DATA
    ("80F24000024F0000", es5.SW_WRONG_P1P2),  # GET STATUS, not TLV format
    ("80F24002025C0000", es5.SW_WRONG_DATA),  # GET STATUS without 4F
    ("80E40040024F00", es5.SW_WRONG_DATA),  # DELETE with an empty AID
    ("80E60C000100", es5.SW_WRONG_DATA),  # truncated INSTALL
])
def test_bad_apdus(card: Card, raw: str, expected: int) -> None:
    before = card.path.read_bytes()
    assert run(card, bytes.fromhex(raw)) == (b"", expected)
    assert card.path.read_bytes() == before


def test_non_bytes_input(card: Card) -> None:
    assert card.process(None) == bytes.fromhex("6700")  # type: ignore[arg-type]


def test_handler_bug_answers_6f00_and_keeps_state(card: Card, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self, aid):
        self.profiles.clear()
        raise RuntimeError("bug")

    monkeypatch.setattr(Card, "_enable", broken)
    assert run(card, es5.enable_profile(b(P1))) == (b"", es5.SW_UNKNOWN)
    assert len(card.profiles) == 3


# --- invariants and view -------------------------------------------------------------------------------------------

def test_exactly_one_enabled_under_random_commands(tmp_path: Path) -> None:
    plist = profiles() + [IsdP(P3, DISABLED, pol1=Pol1(disable_not_allowed=True))]
    card = make(tmp_path, plist)
    rng = random.Random(2026)
    aids = [P0, P1, P2, P3, UNKNOWN]
    builders = [es5.enable_profile, es5.disable_profile, es5.set_fallback_attribute, es5.delete_isdp]
    for _ in range(400):
        apdu = rng.choice(builders)(b(rng.choice(aids)))
        if rng.random() < 0.2 and card.pending:
            apdu = es5.notification_confirmation(rng.choice(card.pending).seq)
        run(card, apdu)
        assert enabled_count(card) == 1
        assert sum(p.fallback for p in card.profiles) <= 1
        assert all(p.lifecycle in (DISABLED, ENABLED) for p in card.profiles if p.fallback)
    reloaded = Card.load(card.path)
    assert reloaded.profiles == card.profiles and reloaded.pending == card.pending


def test_view(card: Card) -> None:
    assert sw(card, es5.enable_profile(b(P1))) == es5.SW_OK
    view = json.loads(json.dumps(card.view()))
    assert view["eid"] == EID and view["free_memory"] == 200_000
    assert [(p["aid"], p["state"], p["fallback"]) for p in view["profiles"]] == [
        (P0, "DISABLED", True), (P1, "ENABLED", False), (P2, "SELECTABLE", False)]
    assert view["profiles"][1]["msisdn"] == "447700900002"
    assert view["profiles"][0]["pol1"] == {"disable_not_allowed": False, "delete_not_allowed": False,
                                           "delete_when_disabled": False}
    assert view["pending_notifications"] == [
        {"seq": 1, "type": 2, "type_name": "profile change succeeded", "aid": P1, "delete_on_confirm": []}]
