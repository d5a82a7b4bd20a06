"""What ``esx serve`` does around the SOAP server, so that a mistake gives one clear line instead of a quiet mess.

- One server per data directory and role: ``DIR/serve-smsr.lock`` and ``DIR/serve-smdp.lock`` are held
  (``flock``) while serving and say which process serves the role, at which address; a second ``esx serve`` of
  the same role (a second ``make run``) reads it and stops. (The SM-SR and the SM-DP of one instance may be
  served apart: ``--role smsr`` and ``--role smdp``.)
- The ports it needs are free before anything starts (gunicorn alone retries for seconds and prints a
  traceback; the loopback SMSC used to die quietly on a taken port while ``esx serve`` went on).
- The bind and the public URL agree: peers, callbacks and this instance's own SM-DP reach it at the URL in
  esx.json, so serving elsewhere on loopback sends them to whatever listens there (another instance).
- Children (the loopback SMSC, the workers) start before the server. The SMSC must say it listens; a child that
  exits while starting, or later while serving, stops ``esx serve`` with one line that names it.
"""
from __future__ import annotations

import collections
import fcntl
import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

LOCK_FILE = "serve-{role}.lock"
ROLE_NAMES = {"smsr": "SM-SR", "smdp": "SM-DP"}
SMSC_READY = "loopback SMSC on "  # what `esx smsc` prints once it listens (esx.cli.smsc)


class ServeError(Exception):
    """``esx serve`` cannot go on; the text is the one line the operator reads."""


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit() or not port.isascii():
        raise ServeError(f"--bind {bind!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


# -- one server per data directory --------------------------------------------------------------------------------


def hold_locks(data_dir: Path, roles: tuple[str, ...], bind: str) -> list:
    """The open lock files of ``roles`` in ``data_dir``, held until the process ends; ServeError when another process
    holds one."""
    handles = []
    for role in roles:
        handle = os.fdopen(os.open(Path(data_dir) / LOCK_FILE.format(role=role), os.O_RDWR | os.O_CREAT, 0o600), "r+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().strip() or "another process"
            handle.close()
            for held in handles:
                held.close()
            raise ServeError(f"the {ROLE_NAMES[role]} of {data_dir} is already being served ({holder}); stop that "
                             "esx serve first, or serve another --data-dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"esx serve, pid {os.getpid()}, bound to {bind}\n")
        handle.flush()
        handles.append(handle)
    return handles


def check_port_free(host: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn and the SMSC bind
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ServeError(f"{host}:{port} ({what}) is not free: {exc.strerror.lower()} (another esx serve? "
                             f"'ss -ltnp | grep :{port}' shows who listens there)") from None


# -- the bind and the public URL ---------------------------------------------------------------------------------


def check_public_url(url: str, role_name: str, bind: str) -> str | None:
    """ServeError when peers would reach ``role_name`` at ``url`` but this server binds elsewhere on this host; a
    warning (returned) when the URL names another host, which a proxy or NAT may map to the bind."""
    host, port = split_bind(bind)
    parts = urlsplit(url)
    url_port = parts.port or (443 if parts.scheme == "https" else 80)
    url_host = parts.hostname or ""
    loopback_url = is_loopback(url_host)
    here = url_host == host or (loopback_url and (is_loopback(host) or host in ("0.0.0.0", "::")))
    if here and url_port == port or not here and not loopback_url and url_port == port:
        return None
    if here or loopback_url:
        raise ServeError(f"esx.json says peers reach the {role_name} at {url} (public_url), but this server binds "
                         f"{bind}: callbacks and requests would go to whatever listens there. Bind {url_host}:{url_port}, "
                         f"or give the instance that URL (esx init --public-url http://{bind} for a new one, or edit "
                         f"public_url in esx.json)")
    return (f"esx.json says peers reach the {role_name} at {url} while this server binds {bind}: right only if a "
            "proxy or NAT forwards one to the other")


# -- children ----------------------------------------------------------------------------------------------------


@dataclass
class Child:
    name: str  # what the operator reads, e.g. "the loopback SMSC"
    proc: subprocess.Popen
    tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=5))
    ready: threading.Event = field(default_factory=threading.Event)

    def last_words(self) -> str:
        lines = [line for line in self.tail if line.strip()]
        return lines[-1].strip() if lines else f"exit status {self.proc.returncode}"


def start_child(name: str, args: list[str], *, ready_text: str | None = None, timeout: float = 30.0,
                settle: float = 1.0) -> Child:
    """Start ``args``; its stderr goes on to ours. Ready when it prints ``ready_text`` (or, without one, when it is
    still running after ``settle`` seconds). ServeError when it exits first."""
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, bufsize=1)
    child = Child(name, proc)

    def pump() -> None:
        for line in proc.stderr:
            sys.stderr.write(line)
            child.tail.append(line)
            if ready_text and ready_text in line:
                child.ready.set()

    threading.Thread(target=pump, name=f"stderr of {name}", daemon=True).start()
    deadline = time.monotonic() + (timeout if ready_text else settle)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            time.sleep(0.1)  # let the pump read its last line
            raise ServeError(f"{name} could not start: {child.last_words()}")
        if ready_text and child.ready.wait(0.05):
            return child
        if not ready_text:
            time.sleep(0.05)
    if ready_text:
        proc.terminate()
        raise ServeError(f"{name} did not start within {timeout:.0f} s")
    return child


def watch(children: list[Child], stopping: threading.Event) -> threading.Thread:
    """A child that exits while serving stops ``esx serve`` (SIGTERM to this process: gunicorn stops gracefully)."""

    def run() -> None:
        while not stopping.wait(0.5):
            for child in children:
                if child.proc.poll() is not None:
                    log.error("%s (pid %s) exited: %s; esx serve stops", child.name, child.proc.pid, child.last_words())
                    stopping.set()
                    os.kill(os.getpid(), signal.SIGTERM)
                    return

    thread = threading.Thread(target=run, name="children", daemon=True)
    thread.start()
    return thread


def stop_children(children: list[Child]) -> None:
    for child in children:
        if child.proc.poll() is None:
            child.proc.terminate()
    for child in children:
        try:
            child.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.proc.kill()
