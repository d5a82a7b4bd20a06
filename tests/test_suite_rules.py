"""The suite itself: under CI=true a missing ../shared or PostgreSQL fails the run instead of skipping it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import unavailable

REPO = Path(__file__).resolve().parents[1]


def test_unavailable_skips_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        unavailable("PostgreSQL not reachable")


def test_unavailable_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        unavailable("PostgreSQL not reachable")


def test_a_postgresql_run_without_postgresql_fails_under_ci():
    env = {**os.environ, "CI": "true", "ESX_TEST_DATABASE_URL": "postgresql+psycopg2://postgres@127.0.0.1:9/test"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                          "tests/e2e/test_colocated.py::test_an_unreachable_smsr_is_named_by_its_oid_not_its_address"
                          "[postgresql]"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0, run.stdout
    assert "PostgreSQL not reachable" in run.stdout and "CI=true" in run.stdout
    assert " skipped" not in run.stdout.splitlines()[-1]
