"""keys.secretbox: secrets at rest (AES-256-GCM, the ICCID as associated data, the data-directory key file)."""
from __future__ import annotations

import stat
import threading

import pytest

from keys.secretbox import KEY_FILE, SecretBox, SecretBoxError


def iccid(n: int) -> str:
    return f"89882990100000{n:05d}"


def test_secret_box_round_trip_and_associated_data(tmp_path):
    box = SecretBox.from_data_dir(tmp_path)
    secrets = {"ki": "00" * 16, "opc": "FF" * 16, "pin1": "1234"}
    blob = box.seal(iccid(1), secrets)
    assert box.open(iccid(1), blob) == secrets
    assert b"1234" not in blob and len(blob) > 12 + 16
    assert box.seal(iccid(1), secrets) != blob  # a fresh nonce each time
    with pytest.raises(SecretBoxError):
        box.open(iccid(2), blob)  # moved to another row
    with pytest.raises(SecretBoxError):
        box.open(iccid(1), blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(SecretBoxError):
        SecretBox(b"\x01" * 32).open(iccid(1), blob)  # another instance's key


def test_secret_box_key_file(tmp_path):
    box = SecretBox.from_data_dir(tmp_path)
    key = tmp_path / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no temporary file left behind
    blob = box.seal(iccid(1), {"ki": "k"})
    assert SecretBox.from_data_dir(tmp_path).open(iccid(1), blob) == {"ki": "k"}  # the same key, not a new one
    key.write_bytes(b"short")
    with pytest.raises(ValueError, match="32 bytes"):
        SecretBox.from_data_dir(tmp_path)


def test_secret_box_key_file_race(tmp_path):
    """Processes starting at once all end up with the one key that was written."""
    boxes, barrier = [], threading.Barrier(8)

    def start():
        barrier.wait()
        boxes.append(SecretBox.from_data_dir(tmp_path))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    blob = boxes[0].seal(iccid(1), {"ki": "k"})
    assert all(b.open(iccid(1), blob) == {"ki": "k"} for b in boxes)

