"""benchmarks/bench_gpu.py runs on the CPU at a tiny size, so that CI exercises what a GPU run does.

The tiny recipe pair with LVIS's 1,203 classes, 64x96 images, few RoIs and proposals, one timed round: every part
runs (train and test steps interleaved, the 11-mode pass, a memory process per model, the host-sync counts), and
the JSON holds what the GPU run reports. Timings are not asserted (no timed assertions in unit tests).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks" / "bench_gpu.py"


def _run(*args, timeout=900):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, str(BENCH), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)


def test_bench_gpu_runs_on_the_cpu_at_a_tiny_size(tmp_path):
    out, md = tmp_path / "gpu.json", tmp_path / "gpu.md"
    res = _run("--device", "cpu", "--size", "64,96", "--recipes", "tiny", "--reps", "1", "--warmup", "0", "--rois",
               "16", "--proposals", "8", "--out", out, "--md", md)
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["device"] == "cpu" and doc["size"] == [64, 96] and doc["precision"] == "fp32"
    pair = doc["pairs"]["tiny"]
    assert pair["recipes"] == {"baseline": "tiny_baseline", "mec": "tiny"} and pair["same_weights"] is True
    for part, names in (("train", ("baseline", "mec")), ("test", ("baseline", "mec", "mec_all_modes"))):
        for name in names:
            assert pair[part][name]["n"] == 1 and pair[part][name]["median_ms"] > 0
    assert pair["test"]["mec_mode"] == "dynamic_ga" and len(pair["test"]["all_modes"]) == 11
    # the multi-expert loss adds no host synchronisation to a training step (mmdet's own are counted alike)
    syncs = pair["host_syncs_train"]
    assert syncs["baseline"]["total"] > 0 and syncs["mec"] == syncs["baseline"], syncs
    mem = pair["memory"]
    for name in ("baseline", "mec"):
        assert mem[name]["train_peak_mib"] > 0 and mem[name]["test_peak_mib"] > 0
    assert mem["mec"]["test_all_modes_peak_mib"] > 0 and "test_all_modes_peak_mib" not in mem["baseline"]
    table = res.stdout
    assert "| tiny |" in table and "Peak memory" in table and md.read_text().endswith(table.rstrip("\n") + "\n")


def test_bench_gpu_refuses_amp_on_the_cpu_and_a_bad_size():
    res = _run("--device", "cpu", "--amp", timeout=120)
    assert res.returncode == 2 and "--amp needs CUDA" in res.stderr and "Traceback" not in res.stderr
    res = _run("--device", "cpu", "--size", "1333x800", timeout=120)
    assert res.returncode == 2 and "WIDTH,HEIGHT" in res.stderr and "Traceback" not in res.stderr
