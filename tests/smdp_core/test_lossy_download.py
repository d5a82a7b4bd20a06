"""ES2-DownloadProfile over a network that loses SMS (issue 9, item 6), in process with explicit clocks.

The SM-DP core, the real SM-SR core and real simulated cards (tests.smdp_core.download_harness). ES3-SendData relays
ES8 commands that must run exactly once on the card: a second STORE DATA 3A02 has no key agreement to finish, and
a second SCP03t segment breaks the C-MAC chain. So a lost SMS or a lost PoR must be mended by retransmitting the
same packet (the card answers a packet it already ran with the PoR it sent then), never by running it again.
The same over real processes and a lossy loopback SMSC: tests/e2e/test_lossy_network.py.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from euicc_sim.network import Losses
from ota import es8
from smdp_core.models import StockProfile
from smsr_core.ops_models import Operation

from .download_harness import SmdpHarness, at

# The download tests' instance and harness (fixtures demo_instance, dp) and helpers.
from .test_downloads import EID1, TIMING, available, card, demo_instance, download, dp, es2_callback, result  # noqa: F401,F811


def run_until(dp: SmdpHarness, done, start: float = 0.0, step: float = 10.0, rounds: int = 200) -> float:
    """Worker rounds every ``step`` seconds from ``start`` until ``done()``; the time reached."""
    second = start
    for _ in range(rounds):
        if done():
            return second
        dp.round(EID1, at(second))
        second += step
    raise AssertionError("not done in time")


def until_requested(dp: SmdpHarness, accepted, step: float = 1.0, rounds: int = 100) -> float:
    """Worker rounds until the SM-DP's next ES3 request is ``accepted()`` by the SM-SR, stopping before the
    SM-SR sends anything for it; the time reached."""
    second = 0.0
    for _ in range(rounds):
        dp.now = at(second)
        dp.downloads.tick(at(second))
        if accepted():
            return second
        dp.round(EID1, at(second))
        second += step
    raise AssertionError("never requested")


def send_data_tags(op: Operation) -> list[int]:
    return [command[0] for command in es8.split_send_data(bytes.fromhex(op.params["data"]))]


def assert_installed_once(dp: SmdpHarness, op_id: int, stock_before: int) -> None:
    """The download succeeded, once: one new profile on the card, one installed stock profile, one callback."""
    op = dp.op(op_id)
    assert result(op) == ("EXECUTED_SUCCESS", None, None)
    assert [p.iccid for p in card(dp).profiles].count(op.iccid) == 1 and len(card(dp).profiles) == 3
    assert dp.h.profiles(EID1)[op.iccid] == ("Enabled", False)
    assert available(dp) == stock_before - 1
    with dp.h.db.session() as s:
        assert s.scalars(select(StockProfile.iccid).where(StockProfile.state == "installed")).all() == [op.iccid]
    es2_callback(dp, op.message_id)  # exactly one
    assert all(o.result_status == "EXECUTED_SUCCESS" for o in dp.smsr_ops("SendData"))


def test_a_lost_part_of_the_package_is_filled_by_the_retransmission(dp):
    before = available(dp)
    op_id = download(dp)
    package_sent = lambda: any(0x86 in send_data_tags(o) for o in dp.smsr_ops("SendData"))  # noqa: E731
    second = until_requested(dp, package_sent)
    dp.h.start(at(second))
    [first] = dp.h.send_due(at(second), lose={2})
    assert len(first.sms.segments) >= 3 and first.replies == []  # the card holds the other parts, runs nothing
    [again] = dp.h.send_due(at(second + TIMING.por_timeout))
    assert again.sms.segments == first.sms.segments  # the same packet: the card takes part 2 from it
    assert again.replies
    run_until(dp, lambda: dp.op(op_id).state == "done", start=second + TIMING.por_timeout)
    assert_installed_once(dp, op_id, before)
    [package] = [o for o in dp.smsr_ops("SendData") if 0x86 in send_data_tags(o)]
    assert (package.attempts, package.params["retransmissions"]) == (2, 1)


def test_a_lost_por_of_the_key_agreement_is_answered_again_not_run_again(dp):
    """STORE DATA 3A02 ran, its PoR (DR and receipt) was lost: the retransmission gets that PoR again. Run twice,
    the card would answer an error (no key agreement in progress) and the download would fail."""
    before = available(dp)
    op_id = download(dp)
    second = until_requested(dp, lambda: len(dp.smsr_ops("SendData")) == 2)
    dp.h.start(at(second))
    [first] = dp.h.send_due(at(second), lose_reply=True)
    assert first.reached == EID1 and first.replies == [] and first.sent_back  # DR and receipt, lost
    [again] = dp.h.send_due(at(second + TIMING.por_timeout))
    assert again.sent_back == first.sent_back  # the recorded PoR, byte for byte
    run_until(dp, lambda: dp.op(op_id).state == "done", start=second + TIMING.por_timeout)
    assert_installed_once(dp, op_id, before)


@pytest.mark.parametrize("seed", range(6))
def test_a_download_survives_fifteen_percent_loss_each_way(dp, seed):
    dp.h.losses = Losses(0.15, seed)
    before = available(dp)
    op_id = download(dp)
    run_until(dp, lambda: dp.op(op_id).state == "done")
    assert_installed_once(dp, op_id, before)
    assert sum(dp.h.losses.dropped.values()) >= 1
