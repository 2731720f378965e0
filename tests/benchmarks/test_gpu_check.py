"""benchmarks/gpu_check.sh, the prepared GPU check, runs its steps on the CPU (--cpu-dry) and keeps its time boxes.

On a GPU machine the same script installs the carried wheels and builds mmcv first; everything after that is what
runs here: the version-crash diagnostics, `mec doctor`, bench_gpu.py (timing, then peak memory beside the training),
`mec train` and `mec eval --per-stage` through the command line, and one summary.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def _run(out: Path, **env):
    return subprocess.run(["bash", str(SCRIPT), "--cpu-dry", "--out", str(out)], capture_output=True, text=True,
                          timeout=2400, cwd=REPO, env={**os.environ, "PYTHON": sys.executable, **env})


def test_the_gpu_check_runs_every_step_on_the_cpu(tmp_path):
    res = _run(tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    status = {s["step"]: s["status"] for s in doc["steps"]}
    assert status == {"wheels": "skipped (cpu-dry)", "synth": "ok", "ops": "skipped (cpu-dry)",
                      "numba": status["numba"], "mmcv": "skipped (cpu-dry)", "abi": "ok", "doctor": "ok",
                      "bench": "ok", "memory": "ok", "train": "ok", "eval": "ok"}, status
    assert status["numba"] in ("ok", "skipped (this tree compiles the evaluator's kernels on first use)")
    assert doc["doctor"]["problems"] == [] and doc["eval"]["modes"][:3] == ["stage1", "stage2", "stage3"]
    assert len(doc["eval"]["modes"]) == 11 and set(doc["bench"]) == {"tiny"} and set(doc["memory"]) == {"tiny"}
    summary = (tmp_path / "summary.txt").read_text()
    assert res.stdout.rstrip().endswith(summary.rstrip()) and "host syncs per train step" in summary
    bench = json.loads((tmp_path / "bench_gpu.json").read_text())
    syncs = bench["pairs"]["tiny"]["host_syncs_train"]
    assert syncs["mec"]["total"] == syncs["baseline"]["total"] > 0
    listing = subprocess.run(["tar", "-tzf", str(tmp_path / "logs.tar.gz")], capture_output=True, text=True).stdout
    assert {"logs/abi.log", "logs/doctor.log", "logs/train.log", "logs/eval.log", "logs/metrics.json"} <= set(
        listing.split())


def test_no_step_runs_past_the_budget_and_the_summary_still_comes(tmp_path):
    res = _run(tmp_path, MEC_GPU_CHECK_BUDGET="8")
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    status = {s["step"]: s["status"] for s in doc["steps"]}
    assert status["synth"] in ("ok", "timed out after 8 s"), status  # in the background, cut at the budget
    for name in ("abi", "doctor", "bench", "memory", "train"):
        assert status[name] == "skipped (no time left)", status
    assert status["eval"] == "skipped (no checkpoint: train did not finish)"
    assert doc["total_s"] <= 8 + 5 and "gpu_check (cpu-dry): " in res.stdout  # the budget, and timeout's kill grace
