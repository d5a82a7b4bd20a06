"""ES8 UpdateConnectivityParameters on the simulated ISD-P (euicc_sim.es8): STORE DATA 3A07 under SCP03.

The ISD-P is downloaded for real first (tests.euicc_sim.test_es8's helpers: key establishment, SCP03t); then the
SM-DP's side of an SCP03 session on '22' C-APDUs is built with tests/keys/reference.py, a second implementation
written from the spec text (nothing of keys.scp03 or euicc_sim), and sent as the SM-SR relays ES8 commands: one
expanded script in an SCP80 packet to the ISD-P's TAR.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from euicc_sim.card import Card
from keys.pki import DevPki
from keys.scp03 import StaticKeys
from ota import es8
from ota.es5 import PERSONALIZED
from tests.keys import reference as ref

from .test_es8 import CRT, P1, Link, download, establish_keyset, make_link, open_session, package, pki, r_apdu  # noqa: F401

# The connectivity parameters themselves: any BER-TLVs (the ISD-P keeps them as they came), e.g. an SMS centre.
VALUE = bytes.fromhex("A009800791447700900000")
HOST_CHALLENGE = bytes.fromhex("0102030405060708")


@dataclass
class Session:
    """One SCP03 session as the SM-DP prepares it, and what the card must answer (reference.py)."""

    commands: list[bytes]  # '22' TLVs: INITIALIZE UPDATE, EXTERNAL AUTHENTICATE, then the secured commands
    initialize_update_answer: bytes
    r_macs: list[bytes]  # the R-MAC each secured command's 9000 must carry
    s_enc: bytes
    s_mac: bytes
    s_rmac: bytes
    mcv: bytes  # after the last command


def session(keys: StaticKeys, counter: int, plain: list[bytes], *, aid: str = P1, level: int = 0x33,
            host_cryptogram_of: StaticKeys | None = None, kvn: int = CRT.kvn) -> Session:
    """The session the card will open with sequence ``counter``; ``plain`` are the C-APDUs to send secured.
    ``host_cryptogram_of``: compute the host side with other keys (a host that does not hold the ISD-P's)."""
    host = host_cryptogram_of or keys
    card_challenge = ref.scp03_card_challenge(keys.enc, counter, bytes.fromhex(aid))
    s_enc, s_mac, s_rmac = ref.scp03_session_keys(keys.enc, keys.mac, HOST_CHALLENGE, card_challenge)
    card_cryptogram, _ = ref.scp03_cryptograms(s_mac, HOST_CHALLENGE, card_challenge)
    h_enc, h_mac, _ = ref.scp03_session_keys(host.enc, host.mac, HOST_CHALLENGE, card_challenge)
    _, host_cryptogram = ref.scp03_cryptograms(h_mac, HOST_CHALLENGE, card_challenge)
    ea, mcv = ref.scp03_external_authenticate(h_mac, host_cryptogram, level)
    commands = [ref.tlv(0x22, ref.scp03_initialize_update(kvn, HOST_CHALLENGE)), ref.tlv(0x22, ea)]
    r_macs = []
    for n, apdu in enumerate(plain, start=1):
        wrapped, mcv = ref.scp03_wrap(h_enc, h_mac, mcv, n, apdu)
        commands.append(ref.tlv(0x22, wrapped))
        r_macs.append(ref.scp03_r_mac(s_rmac, mcv, b"", 0x9000))
    answer = ref.scp03_initialize_update_answer(kvn, card_challenge, card_cryptogram, counter)
    return Session(commands, answer, r_macs, s_enc, s_mac, s_rmac, mcv)


def store_3a07(value: bytes = VALUE, dgi: int = 0x3A07) -> bytes:
    """80 E2 88 00 Lc {DGI} (last block, DGI format), as the ES5 3A07 to the ISD-R is framed."""
    data = ref.dgi(dgi, value)
    return bytes([0x80, 0xE2, 0x88, 0x00, len(data)]) + data


@pytest.fixture
def installed(tmp_path: Path, pki: DevPki, package: bytes) -> tuple[Link, StaticKeys]:
    """A card whose ISD-P P1 holds a downloaded profile (DISABLED), and the ISD-P's key set."""
    link = make_link(tmp_path, pki)
    keys = establish_keyset(link, pki)
    download(link, open_session(link, keys), package)
    assert link.isdp().state_name == "DISABLED"
    return link, keys


def answers(link: Link, commands: list[bytes]) -> tuple[int, list[tuple[bytes, int]]]:
    n, responses = link.send(commands)
    return n, [r_apdu(r) for r in responses]


# --- nominal ------------------------------------------------------------------------------------------------------


def test_connectivity_parameters_under_scp03_are_kept(installed) -> None:
    link, keys = installed
    s = session(keys, 1, [store_3a07()])
    n, got = answers(link, s.commands)
    assert n == 3
    assert got == [(s.initialize_update_answer, 0x9000), (b"", 0x9000), (s.r_macs[0], 0x9000)]
    isdp = Card.load(link.path).profile(P1)
    assert isdp.connectivity_parameters == VALUE.hex().upper()
    assert isdp.keyset is not None and isdp.state_name == "DISABLED"  # nothing else moved
    [shown] = [p for p in Card.load(link.path).view()["profiles"] if p["aid"] == P1]
    assert shown["connectivity_parameters"] == VALUE.hex().upper()
    assert "s_mac" not in str(Card.load(link.path).view())  # session keys stay out of the view


def test_the_next_session_has_the_next_counter_and_replaces_the_value(installed) -> None:
    link, keys = installed
    assert answers(link, session(keys, 1, [store_3a07()]).commands)[1][2][1] == 0x9000
    other = bytes.fromhex("A1038101FF")
    s = session(keys, 2, [store_3a07(other)])
    n, got = answers(link, s.commands)
    assert (n, got[0], got[2]) == (3, (s.initialize_update_answer, 0x9000), (s.r_macs[0], 0x9000))
    assert link.isdp().connectivity_parameters == other.hex().upper()


def test_the_session_spans_packets_and_a_reload_of_the_card(installed) -> None:
    # A host that reads the counter first: INITIALIZE UPDATE in one packet (ES3.SendData), the rest in another.
    link, keys = installed
    s = session(keys, 1, [store_3a07()])
    assert answers(link, s.commands[:1]) == (1, [(s.initialize_update_answer, 0x9000)])
    link.reload()
    assert answers(link, s.commands[1:]) == (2, [(b"", 0x9000), (s.r_macs[0], 0x9000)])
    assert link.isdp().connectivity_parameters == VALUE.hex().upper()


def test_a_failed_command_still_moves_the_mac_chain(installed) -> None:
    # An unknown DGI is refused (6A80) after its C-MAC verified: the session goes on with the next MCV and counter.
    link, keys = installed
    s = session(keys, 1, [store_3a07(dgi=0x3A08), store_3a07()])
    n, got = answers(link, s.commands[:3])
    assert (n, got[2]) == (3, (b"", 0x6A80))
    assert link.isdp().connectivity_parameters is None
    assert answers(link, s.commands[3:]) == (1, [(s.r_macs[1], 0x9000)])
    assert link.isdp().connectivity_parameters == VALUE.hex().upper()


# --- refusals -----------------------------------------------------------------------------------------------------


def test_a_bad_mac_is_refused_and_ends_the_session(installed) -> None:
    link, keys = installed
    s = session(keys, 1, [store_3a07(), store_3a07()])
    tampered = s.commands[2][:-2] + bytes([s.commands[2][-2] ^ 0x01]) + s.commands[2][-1:]  # a C-MAC byte
    n, got = answers(link, s.commands[:2] + [tampered])
    assert (n, got[2]) == (3, (b"", 0x6982))
    # the session is gone: the next command, good as it is, is refused too
    assert answers(link, s.commands[3:]) == (1, [(b"", 0x6982)])
    assert link.isdp().connectivity_parameters is None


def test_a_tampered_ciphered_value_is_refused(installed) -> None:
    link, keys = installed
    s = session(keys, 1, [store_3a07()])
    cmd = bytearray(s.commands[2])
    cmd[9] ^= 0x80  # a byte of the ciphered DGI: the C-MAC no longer verifies
    assert answers(link, s.commands[:2] + [bytes(cmd)])[1][2] == (b"", 0x6982)
    assert link.isdp().connectivity_parameters is None


@pytest.mark.parametrize("value", [b"", bytes.fromhex("A005800101"), bytes.fromhex("FF")])
def test_a_value_that_is_no_tlv_sequence_is_wrong_data(installed, value: bytes) -> None:
    link, keys = installed
    s = session(keys, 1, [store_3a07(value)])
    assert answers(link, s.commands)[1][2] == (b"", 0x6A80)
    assert link.isdp().connectivity_parameters is None


def test_3a07_without_secure_messaging_is_refused(installed) -> None:
    link, _ = installed
    assert answers(link, [ref.tlv(0x22, store_3a07())]) == (1, [(b"", 0x6982)])
    assert link.isdp().connectivity_parameters is None


def test_a_host_without_the_keys_fails_external_authenticate(installed) -> None:
    link, keys = installed
    s = session(keys, 1, [store_3a07()], host_cryptogram_of=StaticKeys(os.urandom(16), os.urandom(16),
                                                                        os.urandom(16)))
    n, got = answers(link, s.commands)
    # the C-MAC of EXTERNAL AUTHENTICATE is under the host's own S-MAC: refused before the cryptogram is looked at;
    # the script goes on (6982 is an error: it stops there)
    assert (n, got[1]) == (2, (b"", 0x6982))
    assert link.isdp().connectivity_parameters is None


def test_a_wrong_host_cryptogram_is_6300(installed) -> None:
    link, keys = installed
    s = session(keys, 1, [store_3a07()])
    card_challenge = ref.scp03_card_challenge(keys.enc, 1, bytes.fromhex(P1))
    _, s_mac, _ = ref.scp03_session_keys(keys.enc, keys.mac, HOST_CHALLENGE, card_challenge)
    ea, _ = ref.scp03_external_authenticate(s_mac, bytes(8))  # MACed right, cryptogram wrong
    n, got = answers(link, [s.commands[0], ref.tlv(0x22, ea), s.commands[2]])
    # 6300 lets an expanded script go on (TS 102 226: 63xx is a warning); the secured command then finds no session
    assert (n, got[1:]) == (3, [(b"", 0x6300), (b"", 0x6982)])


def test_a_host_that_predicts_the_wrong_counter_fails_authentication(installed) -> None:
    link, keys = installed
    s = session(keys, 2, [store_3a07()])  # the card is at 1
    n, got = answers(link, s.commands)
    assert got[0][1] == 0x9000 and got[0][0] != s.initialize_update_answer
    # another card challenge, other session keys: the C-MAC of EXTERNAL AUTHENTICATE does not verify
    assert (n, got[1]) == (2, (b"", 0x6982))
    assert link.isdp().connectivity_parameters is None


def test_a_security_level_other_than_33_is_refused(installed) -> None:
    link, keys = installed
    s = session(keys, 1, [store_3a07()], level=0x03)
    assert answers(link, s.commands) == (2, [(s.initialize_update_answer, 0x9000), (b"", 0x6A86)])


def test_external_authenticate_without_initialize_update_is_refused(installed) -> None:
    link, keys = installed
    s = session(keys, 1, [store_3a07()])
    assert answers(link, s.commands[1:2]) == (1, [(b"", 0x6985)])


def test_only_a_downloaded_isdp_opens_a_session(tmp_path: Path, pki: DevPki) -> None:
    link = make_link(tmp_path, pki)
    keys = StaticKeys(bytes(16), bytes(16), bytes(16))
    iu = session(keys, 1, []).commands[:1]
    assert answers(link, iu) == (1, [(b"", 0x6A88)])  # SELECTABLE: no key set yet
    keys = establish_keyset(link, pki)
    assert link.isdp().lifecycle == PERSONALIZED
    assert answers(link, session(keys, 1, []).commands[:1]) == (1, [(b"", 0x6985)])  # download not done


@pytest.mark.parametrize("apdu,sw", [
    ("84500000080102030405060708", 0x6E00),  # INITIALIZE UPDATE with the secure messaging bit
    ("80503100080102030405060708", 0x6A88),  # a KVN the ISD-P does not hold (its key set is '30')
    ("80500001080102030405060708", 0x6A86),  # P2
    ("805000000401020304", 0x6700),  # host challenge of 4 bytes
])
def test_initialize_update_checks(installed, apdu: str, sw: int) -> None:
    link, _ = installed
    assert CRT.kvn == 0x30
    assert answers(link, [ref.tlv(0x22, bytes.fromhex(apdu))]) == (1, [(b"", sw)])


def test_a_state_file_without_the_new_fields_still_loads(installed) -> None:
    import json

    link, _ = installed
    state = json.loads(link.path.read_text())
    for p in state["profiles"]:
        p.pop("scp03", None)
        p.pop("connectivity_parameters", None)
    link.path.write_text(json.dumps(state))
    assert Card.load(link.path).profile(P1).connectivity_parameters is None
    assert es8.DGI_CONNECTIVITY_PARAMETERS == 0x3A07
