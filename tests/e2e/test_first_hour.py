"""A newcomer's first hour: what `esx` says when something is off, and what it leaves on disk.

Each case used to go wrong quietly: a second instance kept serving after its SMSC died on a taken port and its
worker bound to the other instance's SMSC; a bind that disagreed with the public URL sent the SM-DP to another
instance; a missing data directory printed a traceback; the database and esx.json were world-readable.
"""
from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import _wait_ready, free_port

REPO = Path(__file__).resolve().parents[2]
ESX = [sys.executable, "-m", "esx.cli"]


def esx(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*ESX, *args], capture_output=True, text=True, timeout=timeout)


def one_error_line(run: subprocess.CompletedProcess) -> str:
    assert run.returncode != 0, run
    assert "Traceback" not in run.stderr + run.stdout, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), run.stderr
    return lines[0]


def init(data_dir: Path, *extra: str) -> dict:
    run = esx("init", "--data-dir", str(data_dir), "--demo", "1", *extra)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`make run` as a newcomer runs it: esx init, then esx serve with its SMSC and workers."""
    data_dir = tmp_path_factory.mktemp("first-hour") / "var"
    port, smsc_port = free_port(), free_port()
    init(data_dir, "--public-url", f"http://127.0.0.1:{port}", "--smsc-port", str(smsc_port))
    log = data_dir.parent / "serve.log"
    proc = subprocess.Popen([*ESX, "serve", "--data-dir", str(data_dir), "--bind", f"127.0.0.1:{port}"],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    _wait_ready(f"http://127.0.0.1:{port}/smsr/es4?wsdl", proc, log)
    yield data_dir, port, smsc_port, proc
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)


def test_help_and_version():
    assert esx("-h").stdout.startswith("Usage: esx")
    assert re.fullmatch(r"esx, version \d+\.\d+\.\d+\n", esx("--version").stdout)
    assert "--allow-test-credentials" in esx("serve", "-h").stdout


@pytest.mark.parametrize("command", [["serve"], ["worker"], ["smsc"], ["eis", "show", "8904"], ["euicc", "show", "8904"],
                                     ["outbox", "show"], ["smdp", "stock"],
                                     ["entity", "add", "--role", "mno", "--oid", "1.2", "--name", "x"]])
def test_a_missing_data_directory_is_one_clean_line(tmp_path, command):
    missing = tmp_path / "nowhere"
    line = one_error_line(esx(*command, "--data-dir", str(missing)))
    assert f"{missing}/esx.json not found" in line and "esx init" in line


def test_a_second_serve_of_the_same_data_directory_says_who_serves_it(served):
    data_dir, port, _, proc = served
    line = one_error_line(esx("serve", "--data-dir", str(data_dir), "--bind", f"127.0.0.1:{port}"))
    assert "SM-SR" in line and "already being served" in line and f"pid {proc.pid}" in line
    assert f"127.0.0.1:{port}" in line


def test_a_bind_the_public_url_does_not_name_is_refused(served, tmp_path):
    _, port, _, _ = served
    other = tmp_path / "other"
    init(other, "--public-url", f"http://127.0.0.1:{port}", "--smsc-port", str(free_port()))
    elsewhere = free_port()
    line = one_error_line(esx("serve", "--data-dir", str(other), "--bind", f"127.0.0.1:{elsewhere}"))
    assert f"http://127.0.0.1:{port}" in line and f"127.0.0.1:{elsewhere}" in line and "--public-url" in line


def test_a_second_instance_on_a_taken_smsc_port_stops_with_one_line(served, tmp_path):
    _, _, smsc_port, _ = served
    other = tmp_path / "second"
    port = free_port()
    init(other, "--public-url", f"http://127.0.0.1:{port}", "--smsc-port", str(smsc_port))
    line = one_error_line(esx("serve", "--data-dir", str(other), "--bind", f"127.0.0.1:{port}"))
    assert f"127.0.0.1:{smsc_port}" in line and "SMSC" in line
    assert esx_processes_of(other) == []  # nothing left running


def test_a_taken_bind_port_stops_with_one_line(served, tmp_path):
    _, port, _, _ = served
    other = tmp_path / "third"
    init(other, "--public-url", f"http://127.0.0.1:{port}", "--smsc-port", str(free_port()))
    line = one_error_line(esx("serve", "--data-dir", str(other), "--bind", f"127.0.0.1:{port}"))
    assert f"127.0.0.1:{port}" in line and "not free" in line


def test_the_data_directory_is_its_owners_only(served):
    data_dir = served[0]
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    files = ["esx.json", "esx.sqlite3", "esx.sqlite3-wal", "esx.sqlite3-shm", "secrets.key"]
    assert {name: oct(stat.S_IMODE((data_dir / name).stat().st_mode)) for name in files} == {
        name: oct(0o600) for name in files}


def test_the_smpp_password_is_the_instances_own(served, tmp_path):
    data_dir = served[0]
    other = tmp_path / "pw"
    init(other)
    mine, theirs = (json.loads((d / "esx.json").read_text())["ota"]["password"] for d in (data_dir, other))
    assert mine != theirs and len(mine) == 8  # SMPP 3.4: 8 characters at most


def esx_processes_of(data_dir: Path) -> list[str]:
    """"<pid> <command line>" of every esx process working on ``data_dir`` (from /proc: ps may cut long lines)."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        line = " ".join(a.decode(errors="replace") for a in args if a)
        if b"esx.cli" in args and str(data_dir).encode() in args:
            out.append(f"{proc.name} {line}")
    return out


def test_serve_stops_when_a_child_it_needs_dies(tmp_path):
    data_dir = tmp_path / "var"
    port = free_port()
    init(data_dir, "--public-url", f"http://127.0.0.1:{port}", "--smsc-port", str(free_port()))
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([*ESX, "serve", "--data-dir", str(data_dir), "--bind", f"127.0.0.1:{port}"],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/smsr/es4?wsdl", proc, log)
        (smsc,) = [line.split()[0] for line in esx_processes_of(data_dir) if " smsc " in line]
        os.kill(int(smsc), signal.SIGKILL)
        assert proc.wait(60) is not None
        assert "the loopback SMSC" in log.read_text() and "esx serve stops" in log.read_text()
        deadline = time.monotonic() + 30
        while esx_processes_of(data_dir) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert esx_processes_of(data_dir) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_production_mode_refuses_the_development_pki(tmp_path):
    data_dir = tmp_path / "prod"
    port = free_port()
    init(data_dir, "--auth", "mtls", "--public-url", f"https://127.0.0.1:{port}", "--smsc-port", str(free_port()))
    line = one_error_line(esx("serve", "--data-dir", str(data_dir), "--bind", f"127.0.0.1:{port}", "--no-background"))
    assert "production mode" in line and "development PKI" in line and "--allow-test-credentials" in line


def test_production_mode_has_no_built_in_smpp_password(tmp_path):
    data_dir = tmp_path / "prod"
    init(data_dir, "--auth", "mtls", "--smsc-port", str(free_port()))
    config_file = data_dir / "esx.json"
    config = json.loads(config_file.read_text())
    del config["ota"]["password"]
    config_file.write_text(json.dumps(config))
    for command in (["worker"], ["smsc"]):
        line = one_error_line(esx(*command, "--data-dir", str(data_dir)))
        assert "no built-in SMPP password" in line and "esx.json" in line


def readme_commands() -> list[list[str]]:
    """Every esx command line of the README's shell blocks, as the words that name the command."""
    text = (REPO / "README.md").read_text()
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            words = line.split("#")[0].split()
            if words and words[0] in ("esx", ".venv/bin/esx"):
                names = []
                for word in words[1:]:
                    if word.startswith("-") or not re.fullmatch(r"[a-z][a-z-]*", word):
                        break
                    names.append(word)
                out.append(names)
    return out


def test_the_readmes_commands_exist_as_written():
    commands = readme_commands()
    assert len(commands) >= 10
    for names in commands:
        run = esx(*names, "--help")
        assert run.returncode == 0, (names, run.stderr)
    # and the README says how `esx` gets on the PATH after `make run`
    assert ". .venv/bin/activate" in (REPO / "README.md").read_text()
