"""The benchmarks still run: bench/es4_get_eis.py --smoke, end to end, in a few seconds (no timings checked)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_get_eis_benchmark_smoke_run():
    out = subprocess.run([sys.executable, str(REPO / "bench" / "es4_get_eis.py"), "--smoke"],
                         capture_output=True, text=True, timeout=180, cwd=REPO)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULTS_JSON "))
    results = json.loads(line.split(" ", 1)[1])
    runs = {(r["serving"], r["idle"]): r for r in results["runs"]}
    assert set(runs) == {("esx", 0), ("esx", 10)}
    for run in runs.values():
        assert run["requests"] > 0 and run["errors"] == 0 and run["bad_responses"] == 0
    assert runs[("esx", 10)]["held"]["held"] == 10
