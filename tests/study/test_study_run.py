"""`mec study` for real, on the CPU with the tiny recipes: a 2-run study end to end (trainings, evaluations with
per-image records, the report with its intervals), a rerun that does no work, and a kill of the study command in the
middle of a training, then a resume that ends with the same weights as the study that was never stopped."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
import torch

from mec_cli.compat import allow_mmengine_checkpoints
from mec_cli.study import manifest as mf
from mec_cli.study.engine import run_study
from mec_cli.study.spec import StudyOptions

pytestmark = pytest.mark.slow
ITERS = 6
PAIR = """
name = "pair"
[[runs]]
label = "base"
recipe = "tiny_baseline"
[[runs]]
label = "mec"
recipe = "tiny"
baseline = "base"
"""
ONE = """
name = "one"
[[runs]]
label = "base"
recipe = "tiny_baseline"
"""
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _options(out, data, **kw):
    return StudyOptions(out=str(out), data_root=str(data), gpus=0, max_iters=ITERS,
                        cfg_options={"log_level": "WARNING"}, **kw)


def _cli_args(spec, out, data):
    return ["study", "run", str(spec), "--out", str(out), "--data-root", str(data), "--gpus", "0", "--max-iters",
            str(ITERS), "--cfg-options", "log_level=WARNING"]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """The synthetic data at the smallest size whose three groups all hold categories: 60 training images (a
    training's cost is its iterations) and 8 validation images (an evaluation's cost is its images)."""
    from mec_cli.data.synth import SynthConfig, make_synthetic_dataset

    root = tmp_path_factory.mktemp("small")
    make_synthetic_dataset(SynthConfig(out=root, seed=0, train_images=60, val_images=8, image_size=128, max_count=300,
                                       min_count=3))
    return root


@pytest.fixture(scope="module")
def pair_study(small_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    spec = root / "pair.toml"
    spec.write_text(PAIR)
    events = []
    summary = run_study(str(spec), _options(root / "out", small_data), on_step=lambda s, st: events.append((s, st)))
    return root / "out", spec, events, summary


def _weights(path):
    allow_mmengine_checkpoints()
    return torch.load(path, map_location="cpu")["state_dict"]


def test_a_two_run_study_trains_evaluates_and_reports(pair_study):
    out, _, events, summary = pair_study
    assert events == [("train base-s0", "start"), ("train base-s0", "done"), ("eval base-s0", "start"),
                      ("eval base-s0", "done"), ("train mec-s0", "start"), ("train mec-s0", "done"),
                      ("eval mec-s0", "start"), ("eval mec-s0", "done"), ("report", "start"), ("report", "done")]
    assert summary["failed"] == []
    doc = json.loads((out / "study.json").read_text())
    assert doc["schema"] == "mec.study/1"
    for run in doc["runs"]:
        assert run["train"]["status"] == run["eval"]["status"] == "done"
        assert run["train"]["checkpoint"] == f"runs/{run['name']}/iter_{ITERS}.pth"
        assert run["train"]["command"].startswith("mec train --recipe ") and "--resume" in run["train"]["command"]
        assert "--per-image" in run["eval"]["command"]  # the pair's evaluations keep what the intervals need
        assert (out / run["config"]).is_file() and run["train"]["wall_s"] > 0
        metrics = json.loads((out / run["eval"]["metrics"]).read_text())
        assert metrics["recipe"] == run["recipe"] and "per_image" in metrics["modes"]["dynamic_ga"]["segm"]
    index = out / "report" / "README.md"
    text = index.read_text()
    links = re.findall(r"\]\(([^)]+)\)", text)
    for name in ("models.md", "compare.md", "gain_intervals.png", "runs.csv"):
        assert name in links, name
    for link in links:
        assert (index.parent / link).is_file(), link
    compare = (out / "report" / "compare.md").read_text()
    assert "| seeds |" in compare and "95% interval" in compare and "Δ mec" in compare
    csv = (out / "report" / "compare.csv").read_text().splitlines()[0].split(",")
    assert "seeds" in csv and "AP sd" in csv and "AP n" in csv  # the CSV keeps the numbers and their counts


def test_a_rerun_does_no_work_and_changed_settings_are_refused(pair_study, small_data, run_mec):
    out, spec, _, _ = pair_study
    files = [*out.glob("runs/*/iter_*.pth"), *out.glob("runs/*/metrics.json"), out / "report" / "README.md"]
    before = {f: f.stat().st_mtime_ns for f in files}
    r = run_mec(*_cli_args(spec, out, small_data))
    assert r.code == 0, r.out + r.err
    assert "0 stage(s) run, 4 done before" in r.out and " ... (" not in r.out, r.out
    assert {f: f.stat().st_mtime_ns for f in files} == before
    doc = json.loads((out / "study.json").read_text())
    assert [run["train"]["attempts"] for run in doc["runs"]] == [1, 1]
    status = run_mec("study", "status", out)
    assert status.code == 0 and status.out.count("done") >= 4, status.out
    args = _cli_args(spec, out, small_data)
    args[args.index("--max-iters") + 1] = str(ITERS + 1)
    line = run_mec(*args).one_error_line()
    assert "base-s0 was made with other settings" in line and "max_iters" in line


def test_a_kill_mid_training_then_a_resume_ends_with_the_uninterrupted_weights(pair_study, small_data, tmp_path):
    reference = pair_study[0] / "runs" / "base-s0" / f"iter_{ITERS}.pth"
    spec, out, log = tmp_path / "one.toml", tmp_path / "out", tmp_path / "study.log"
    spec.write_text(ONE)
    cmd = [sys.executable, "-m", "mec_cli.cli", *_cli_args(spec, out, small_data)]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=ENV)
    deadline = time.time() + 600
    while f"train iter 2/{ITERS}" not in log.read_text(errors="replace"):
        assert proc.poll() is None and time.time() < deadline, log.read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    proc.kill()  # SIGKILL of the study command alone: the training's process is told by the kernel (SIGTERM)
    proc.wait()
    busy = mf.busy_path(out, "runs/base-s0")
    while mf.is_busy(busy):  # the training finishes its iteration, saves a checkpoint and records it
        assert time.time() < deadline
        time.sleep(0.2)
    run = json.loads((out / "study.json").read_text())["runs"][0]
    assert run["train"]["status"] == "interrupted", run
    step = run["train"]["iteration"]
    assert 2 <= step < ITERS
    assert (out / "runs" / "base-s0" / f"iter_{step}.pth").is_file()
    events = []
    summary = run_study(str(spec), _options(out, small_data), on_step=lambda s, st: events.append((s, st)))
    assert ("train base-s0", "done") in events and summary["failed"] == []
    doc = json.loads((out / "study.json").read_text())["runs"][0]
    assert doc["train"]["attempts"] == 2 and doc["eval"]["status"] == "done"
    a, b = _weights(reference), _weights(out / "runs" / "base-s0" / f"iter_{ITERS}.pth")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_report_over_two_seeds_gives_spreads_counts_and_the_intervals_of_each_seed(pair_study, tmp_path):
    """The study's report over seeds, from the pair study's runs made a second seed (a copy: every spread is 0)."""
    import copy
    import shutil

    from mec_cli.study.report import build_report

    out = tmp_path / "two"
    shutil.copytree(pair_study[0], out)
    doc = json.loads((out / "study.json").read_text())
    for run in list(doc["runs"]):
        twin = copy.deepcopy(run)
        twin.update(seed=1, name=run["name"].replace("-s0", "-s1"), work_dir=run["work_dir"].replace("-s0", "-s1"))
        twin["eval"]["metrics"] = run["eval"]["metrics"].replace("-s0", "-s1")
        shutil.copytree(out / run["work_dir"], out / twin["work_dir"])
        doc["runs"].append(twin)
    doc["study"]["seeds"] = [0, 1]
    (out / "study.json").write_text(json.dumps(doc))
    result = build_report(out)
    assert result["missing"] == []
    compare = (out / "report" / "compare.md").read_text()
    rows = [line for line in compare.splitlines() if line.startswith("| mec ") or line.startswith("| Δ mec ")]
    assert len(rows) == 2 and all("| 2 |" in r and "± 0.0" in r for r in rows), compare
    assert "seed 0, base -> mec, box AP:" in compare and "seed 1, base -> mec, mask AP:" in compare
    intervals = (out / "report" / "compare_intervals.csv").read_text().splitlines()
    assert intervals[0].startswith("seed,pair,") and {line.split(",")[0] for line in intervals[1:]} == {"0", "1"}
    assert (out / "report" / "gain_intervals.png").is_file()
    assert "| 2 |" in (out / "report" / "models.md").read_text()
