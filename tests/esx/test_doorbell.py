"""Doorbells: a ring wakes the loop's sleeping worker at once, a ring nobody hears costs nothing."""
from __future__ import annotations

import os
import socket
import time

from esx.doorbell import Bell, Doorbell, bell_dir


def test_a_ring_wakes_the_bell_and_is_taken_once(tmp_path):
    bell = Bell(tmp_path, "smsr-ops")
    try:
        assert bell.path.name == f"smsr-ops-{os.getpid()}.bell"
        assert oct(bell_dir(tmp_path).stat().st_mode & 0o777) == "0o700"
        t0 = time.monotonic()
        assert bell.wait(0.05) is False and time.monotonic() - t0 >= 0.04
        ringer = Doorbell(tmp_path, "smsr-ops")
        ringer.ring()
        ringer.ring()  # two rings before the worker looks: one wake-up, both taken
        t0 = time.monotonic()
        assert bell.wait(5.0) is True and time.monotonic() - t0 < 1.0
        assert bell.wait(0.01) is False
        Doorbell(tmp_path, "smdp-steps").ring()  # another loop's bell is not this one
        assert bell.wait(0.01) is False
    finally:
        bell.close()
    assert not bell.path.exists()


def test_ringing_with_no_worker_or_a_dead_one_is_harmless(tmp_path):
    Doorbell(tmp_path / "nowhere", "smsr-ops").ring()  # no folder at all
    folder = bell_dir(tmp_path)
    folder.mkdir()
    stale = folder / "smsr-ops-999999.bell"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(stale))
    s.close()  # its process is gone; the file stays
    Doorbell(tmp_path, "smsr-ops").ring()
    assert not stale.exists()  # removed when the ring was refused
