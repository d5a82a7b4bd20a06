"""The benchmarks still run: each one's --smoke mode, end to end, in seconds (no timings checked)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _smoke(script: str) -> dict:
    out = subprocess.run([sys.executable, str(REPO / "bench" / script), "--smoke"],
                         capture_output=True, text=True, timeout=240, cwd=REPO)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULTS_JSON "))
    return json.loads(line.split(" ", 1)[1])


def test_get_eis_benchmark_smoke_run():
    results = _smoke("es4_get_eis.py")
    runs = {(r["serving"], r["idle"]): r for r in results["runs"]}
    assert set(runs) == {("esx", 0), ("esx", 10)}
    for run in runs.values():
        assert run["requests"] > 0 and run["errors"] == 0 and run["bad_responses"] == 0
    assert runs[("esx", 10)]["held"]["held"] == 10


def test_ota_benchmark_smoke_run():
    results = _smoke("ota_ops.py")
    measured, receiver = results["measured"], results["receiver"]
    assert measured["operations"] == 4  # 2 eUICCs x 1 round x 2 phases
    assert receiver["callback_statuses"] == {"ES4-EnableProfileResponse EXECUTED_SUCCESS": 4}
    assert not receiver["unexpected"] and not results["cards"]["mismatches"]


def test_downloads_benchmark_smoke_run():
    results = _smoke("downloads.py")
    assert results["downloads"]["euiccs"] == 2
    assert results["downloads"]["callback_statuses"] == {"EXECUTED_SUCCESS": 2}
    assert results["crypto"]["key_establishments_per_s_P-256"] > 0


def test_handovers_benchmark_smoke_run():
    results = _smoke("handovers.py")
    handovers = results["handovers"]
    assert handovers["euiccs"] == 2 and handovers["handovers_per_s"] > 0
    assert handovers["notifications"] == {"ES4-HandleSMSRChangeNotification": 2}


def test_http_client_benchmark_smoke_run():
    results = _smoke("http_client.py")
    assert set(results["clients"]) == {"requests.Session", "urllib3.PoolManager", "esx HttpClient"}
    assert all(r["posts"] == 50 for r in results["clients"].values())
