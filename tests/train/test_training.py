"""Real training of the tiny recipes on the CPU: loss goes down, checkpoints, 2-process DDP, kill and resume,
inference."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lvis import LVIS, LVISEval, LVISResults
from typer.testing import CliRunner

from mec_cli.cli import app
from mec_cli.compat import allow_mmengine_checkpoints, patch_lvis_numpy

pytestmark = pytest.mark.slow


def _free_port() -> str:
    """A TCP port nothing listens on now (a fixed one can be held by a process a crashed run left behind)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def _scalars(work_dir: Path):
    files = sorted(work_dir.glob("*/vis_data/scalars.json"))
    assert files, f"no scalars.json under {work_dir}"
    return [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def trained_tiny(synth_data, tmp_path_factory):
    work = tmp_path_factory.mktemp("tiny_mec")
    res = CliRunner().invoke(app, ["train", "--recipe", "tiny", "--gpus", "0", "--data-root", str(synth_data),
                                   "--work-dir", str(work), "--max-iters", "40", "--seed", "0", "--cfg-options",
                                   "default_hooks.logger.interval=5"])
    assert res.exit_code == 0, res.output
    return work


def test_tiny_mec_training_loss_goes_down_and_checkpoints(trained_tiny):
    losses = [r["loss"] for r in _scalars(trained_tiny) if "loss" in r]
    assert len(losses) >= 6
    assert sum(losses[-2:]) / 2 < 0.8 * sum(losses[:2]) / 2, losses
    assert (trained_tiny / "iter_40.pth").is_file()
    groups = json.loads((trained_tiny / "groups.json").read_text())
    assert groups["bins"] == [10, 100] and all(g["num_categories"] > 0 for g in groups["groups"])
    assert "MECCascadeRoIHead" in (trained_tiny / "config.py").read_text()


def test_per_stage_eval_from_one_pass_matches_lvis_api(trained_tiny, synth_data, tmp_path):
    out, dump = tmp_path / "metrics.json", tmp_path / "dets"
    res = CliRunner().invoke(app, ["eval", "--checkpoint", str(trained_tiny / "iter_40.pth"), "--recipe", "tiny",
                                   "--data-root",
                                   str(synth_data), "--per-stage", "--out", str(out), "--dump-dir", str(dump)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert list(doc["modes"]) == ["stage1", "stage2", "stage3", "mean_probs", "mean_probs_ga", "mean_logits",
                                  "mean_logits_ga", "sparse", "sparse_ga", "dynamic", "dynamic_ga"]
    assert doc["run"]["mec_loss"] is True and doc["recipe"] == "tiny" and doc["groups"]["names"] == ["rare", "common",
                                                                                                     "frequent"]
    for mode in doc["modes"].values():
        for iou_type in ("bbox", "segm"):
            assert {"AP", "APr", "APc", "APf", "AP_rare", "AP_common", "AP_frequent"} <= set(mode[iou_type])
    # the dumped LVIS-format results give lvis-api the same numbers
    patch_lvis_numpy()
    gt = LVIS(str(synth_data / "annotations" / "lvis_v1_val.json"))
    (tmp_path / "single.json").write_text(out.read_text())
    dets = json.loads((dump / "dynamic_ga.json").read_text())
    assert dets and {"image_id", "category_id", "bbox", "score", "segmentation"} <= set(dets[0])
    # every val image is scored (mmengine truncates collected results to the dataset length: one per image)
    assert {d["image_id"] for d in dets} == set(gt.get_img_ids())
    ev = LVISEval(gt, LVISResults(gt, dets), "bbox")
    ev.run()
    for k in ("AP", "APr", "APc", "APf"):  # the dumped file holds the very numbers that were scored
        assert doc["modes"]["dynamic_ga"]["bbox"][k] == pytest.approx(ev.results[k], abs=1e-12)


def test_two_process_eval_equals_one_process(trained_tiny, synth_data, tmp_path):
    """Two ranks each match their own images and rank 0 merges the parts (mec_cli.evaluation.partial): the metrics
    JSON is that of rank 0 evaluating every gathered prediction in one process (forced by --dump-dir), every number
    (stage weights and per-image records too), and the AP that of a one-process run (whose inference may differ
    in the last bits: other thread counts)."""
    outs = {}
    for name, procs, extra in (("one", "1", []), ("parts", "2", []), ("gathered", "2", ["--dump-dir",
                                                                                         str(tmp_path / "dump")])):
        out = tmp_path / f"{name}.json"
        res = CliRunner().invoke(app, ["eval", "--checkpoint", str(trained_tiny / "iter_40.pth"), "--recipe", "tiny",
                                       "--data-root",
                                       str(synth_data), "--modes", "dynamic", "--group-align", "on", "--procs", procs,
                                       "--master-port", _free_port(), "--per-image", "--out", str(out), *extra])
        assert res.exit_code == 0, res.output
        doc = json.loads(out.read_text())
        assert "dynamic_ga" in doc["modes"], (procs, list(doc["modes"]), res.output[-1500:])
        outs[name] = doc["modes"]
    assert outs["parts"] == outs["gathered"]
    assert {"bbox", "segm", "stage_weights"} <= set(outs["parts"]["dynamic_ga"])
    assert "per_image" in outs["parts"]["dynamic_ga"]["segm"] and outs["parts"]["dynamic_ga"]["segm"]["AP"] > 0
    for iou_type in ("bbox", "segm"):
        for k in ("AP", "APr", "APc", "APf"):
            assert outs["parts"]["dynamic_ga"][iou_type][k] == pytest.approx(outs["one"]["dynamic_ga"][iou_type][k],
                                                                             abs=1e-9)


def test_two_process_cpu_ddp_training(synth_data, tmp_path):
    res = CliRunner().invoke(app, ["train", "--recipe", "tiny_baseline", "--gpus", "0", "--procs", "2", "--master-port",
                                   _free_port(),
                                   "--data-root", str(synth_data), "--work-dir", str(tmp_path), "--max-iters", "4"])
    assert res.exit_code == 0, res.output
    assert "--nproc_per_node=2" in res.output
    allow_mmengine_checkpoints()
    ckpt = torch.load(tmp_path / "iter_4.pth", map_location="cpu")
    assert ckpt["meta"]["iter"] == 4
    log = next(tmp_path.glob("*/*.log")).read_text()
    assert "Distributed training: True" in log and "GPU number: 2" in log  # mmengine calls the world size "GPU number"


def test_kill_then_resume_reaches_the_same_final_iteration(synth_data, tmp_path):
    args = [sys.executable, "-m", "mec_cli.cli", "train", "--recipe", "tiny_baseline", "--gpus", "0", "--data-root",
            str(synth_data),
            "--work-dir", str(tmp_path), "--max-iters", "12", "--cfg-options", "default_hooks.checkpoint.interval=4"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    marker = tmp_path / "last_checkpoint"
    deadline = time.time() + 300
    while time.time() < deadline and not (marker.is_file() and marker.read_text().strip().endswith("iter_4.pth")):
        assert proc.poll() is None, "training ended before its first checkpoint"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "iter_4.pth").is_file() and not (tmp_path / "iter_12.pth").exists()
    resumed = subprocess.run(args + ["--resume"], capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    out = resumed.stdout + resumed.stderr
    assert "resumed epoch" in out and "iter: 4" in out
    allow_mmengine_checkpoints()
    ckpt = torch.load(tmp_path / "iter_12.pth", map_location="cpu")
    assert ckpt["meta"]["iter"] == 12
