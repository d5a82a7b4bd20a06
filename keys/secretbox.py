"""Secrets at rest: AES-256-GCM under a key kept in the data directory (never in the database).

One key per instance (``DIR/secrets.key``, 0600). The SM-DP seals a stock profile's Ki, OPc, PINs and PUKs
(smdp_core.warehouse) and the secrets of a download in flight (smdp_core.download), with the ICCID as the
associated data; the SM-SR seals every card key set it keeps (the ISD-R's SCP80/SCP81 keys, smsr_core.models),
with the eUICC and security domain as the associated data.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["KEY_FILE", "SecretBox", "SecretBoxError"]

KEY_FILE = "secrets.key"
_OLD_KEY_FILE = "smdp-secrets.key"  # its name before the SM-SR used it too; renamed on first use
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # the GCM nonce size NIST SP 800-38D recommends
TAG_BYTES = 16


class SecretBoxError(ValueError):
    """A sealed blob that does not open: another key, another row's ICCID, or damaged bytes."""


class SecretBox:
    """AES-256-GCM under the data directory's key; ``context`` (an ICCID, an EID and domain) is the associated data.

    A blob is ``nonce (12) ‖ ciphertext ‖ tag (16)``; the plaintext is the secrets as compact JSON.
    Binding the context means a ciphertext copied onto another row does not open there.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"an AES-256 key is {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> "SecretBox":
        """The box of the instance in ``data_dir``; creates its key file (0600) on first use."""
        path = Path(data_dir) / KEY_FILE
        old = Path(data_dir) / _OLD_KEY_FILE
        if not path.exists() and old.exists():
            try:
                os.link(old, path)
            except FileExistsError:
                pass
            old.unlink(missing_ok=True)
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            key = _create_key_file(path)
        if len(key) != KEY_BYTES:
            raise ValueError(f"{path}: expected {KEY_BYTES} bytes, found {len(key)}")
        return cls(key)

    def seal(self, context: str, secrets: dict[str, str]) -> bytes:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in secrets.items()):
            raise TypeError("secrets are a dict of str to str")
        plaintext = json.dumps(secrets, sort_keys=True, separators=(",", ":")).encode()
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, context: str, blob: bytes) -> dict[str, str]:
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise SecretBoxError(f"sealed secrets of {context} are truncated")
        try:
            plaintext = self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], context.encode())
        except InvalidTag:
            raise SecretBoxError(f"sealed secrets of {context} do not open: another key, or another row's") from None
        return json.loads(plaintext)


def _create_key_file(path: Path) -> bytes:
    """Write a fresh key as ``path`` unless another process gets there first; return the key in force.

    The key is written completely (0600, fsync) under a private temporary name and then hard-linked
    to ``path``: ``link`` never replaces an existing file, so of two processes starting at once one
    key wins and both use it, and no reader ever sees a partial file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, os.urandom(KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process created it first: use that key
    finally:
        os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path.read_bytes()
