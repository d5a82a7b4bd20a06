"""Doorbells: a worker sleeps until its poll interval ends or someone rings (persistence.engine.Doorbell).

A worker loop (esx.worker) binds one Unix datagram socket per loop in the data directory's ``run/`` folder,
``<loop>-<pid>.bell``; whoever commits work that is due now (the SOAP process that accepted a request or stored an
ES3 callback, the worker that handled a PoR, a domain event waiting in the outbox) sends one empty datagram to every
bell of that loop. The datagram waits in the socket until the worker next looks, so a ring during a tick is not
lost: the worker goes round again at once.

Best effort by design: a ring to a worker on another host, a full socket buffer or a bell left by a dead process is
simply not heard (a stale bell is removed when sending to it is refused), and the worker finds the work at its next
poll. Correctness never depends on a ring; only latency does.
"""
from __future__ import annotations

import errno
import logging
import os
import select
import socket
import time
from pathlib import Path

log = logging.getLogger(__name__)

# The loops that have bells: the SM-SR's card operations and SMS inbox, the SM-DP's steps, and each role's outbox.
SMSR_OPERATIONS, SMDP_STEPS, SMSR_OUTBOX, SMDP_OUTBOX = "smsr-ops", "smdp-steps", "smsr-outbox", "smdp-outbox"
_REFRESH = 1.0  # seconds a list of bells is reused before the folder is read again
_MAX_PATH = 100  # sockaddr_un holds 108 bytes; a longer path cannot be bound or rung


def bell_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "run"


class Bell:
    """The listening end: one worker loop's socket."""

    def __init__(self, data_dir: Path, loop: str) -> None:
        folder = bell_dir(data_dir)
        folder.mkdir(mode=0o700, exist_ok=True)
        self.path = folder / f"{loop}-{os.getpid()}.bell"
        self.sock: socket.socket | None = None
        if len(str(self.path)) > _MAX_PATH:
            log.info("doorbell %s: path too long for a Unix socket; this loop polls only", self.path)
            return
        try:
            self.path.unlink(missing_ok=True)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(self.path))
            sock.setblocking(False)
            self.sock = sock
        except OSError as exc:
            log.info("doorbell %s: %s; this loop polls only", self.path, exc)

    def wait(self, timeout: float) -> bool:
        """Sleep until rung or ``timeout`` seconds passed; True when rung. Every ring waiting is taken."""
        if self.sock is None:
            time.sleep(timeout)
            return False
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return False
        while True:
            try:
                self.sock.recv(16)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                return True

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            self.path.unlink(missing_ok=True)


class Doorbell:
    """The ringing end (persistence.engine.Doorbell): rings every bell of ``loop`` in the data directory."""

    def __init__(self, data_dir: Path, loop: str) -> None:
        self.folder = bell_dir(data_dir)
        self.loop = loop
        self._bells: list[str] = []
        self._listed_at = 0.0
        self._sock: socket.socket | None = None

    def _targets(self) -> list[str]:
        now = time.monotonic()
        if now - self._listed_at > _REFRESH:
            try:
                self._bells = [str(p) for p in self.folder.glob(f"{self.loop}-*.bell")]
            except OSError:
                self._bells = []
            self._listed_at = now
        return self._bells

    def ring(self) -> None:
        targets = self._targets()
        if not targets:
            return
        if self._sock is None:
            try:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            except OSError:
                return
        for path in targets:
            try:
                self._sock.sendto(b"", path)
            except BlockingIOError:
                pass  # its buffer is full of rings: it is awake anyway
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):  # a bell its process left behind
                    self._listed_at = 0.0
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
