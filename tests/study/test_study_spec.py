"""`mec study` without training: the built-in studies against the paper's artefacts, the tiny family, TOML files and
their mistakes, seeds, the aggregation over seeds, and the Slurm plan and submission against stub sbatch/squeue."""
from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pandas as pd
import pytest

from mec_cli.recipes import resolve_recipe
from mec_cli.study.spec import BUILT_INS, StudyOptions, build_spec, load_toml, map_family, resolve_study

GOOD = """
name = "sweep"
seeds = 2
[defaults]
max_iters = 4
[[runs]]
label = "base"
recipe = "tiny_baseline"
[[runs]]
label = "mec-lam0.5"
recipe = "tiny"
baseline = "base"
lam = 0.5
tau = 2.0
cfg_options = { "optim_wrapper.optimizer.lr" = 0.01 }
"""


def test_the_built_ins_are_the_runs_of_the_papers_artefacts():
    t1 = resolve_study("table1")
    pairs = list(zip(t1.reports[0].labels[::2], t1.reports[0].labels[1::2]))
    # Table 1 rows (1)-(12): 4 backbones/frameworks, seesaw and cosine, each without and with MEC
    assert pairs == [("cascade_r50_baseline", "cascade_r50"), ("cascade_r101_baseline", "cascade_r101"),
                     ("htc_r50_baseline", "htc_r50"), ("htc_r101_baseline", "htc_r101"),
                     ("cascade_r50_seesaw_baseline", "cascade_r50_seesaw"),
                     ("cascade_r50_cos_baseline", "cascade_r50_cos")]
    for base, mec in pairs:
        assert not resolve_recipe(base).mec and resolve_recipe(mec).mec
        assert resolve_recipe(base).backbone == resolve_recipe(mec).backbone
    assert t1.reports[0].kind == "compare" and t1.reports[0].reference
    t2c = resolve_study("table2c")
    assert [r.recipe for r in t2c.runs] == ["cascade_r50_baseline", "cascade_r50"]
    assert [r.kind for r in t2c.reports] == ["ablation", "compare"]
    lam = resolve_study("lambda")
    assert [r.lam for r in lam.runs] == [0.1, 0.3, 0.5, 0.7, 0.9] and {r.recipe for r in lam.runs} == {"cascade_r50"}
    assert lam.reports[0].mode == "dynamic"  # Section 5.4: "we utilize the dynamic ensemble for the testing"
    st = resolve_study("stages")
    assert [(resolve_recipe(r.recipe).stages, resolve_recipe(r.recipe).mec) for r in st.runs] == [
        (3, False), (3, True), (4, False), (4, True)]
    coco = resolve_study("coco-lt")
    assert {r.dataset for r in coco.runs} == {"coco_lt"} and coco.reports[0].kind == "models"
    assert all(len(s().expand()) == len(s().runs) for s in BUILT_INS.values())  # one seed each by default


def test_the_tiny_family_keeps_each_studys_shape_and_makes_equal_runs_once():
    t1 = map_family(resolve_study("table1"), "tiny")
    assert [(r.label, r.recipe) for r in t1.runs] == [("tiny_baseline", "tiny_baseline"), ("tiny", "tiny")]
    assert t1.reports[0].labels == ["tiny_baseline", "tiny"] and not t1.reports[0].reference
    assert sum("made once" in n for n in t1.notes) == 10  # the 5 other pairs are the same two tiny runs
    st = map_family(resolve_study("stages"), "tiny")
    assert [r.recipe for r in st.runs] == ["tiny_baseline", "tiny", "tiny_4stage_baseline", "tiny_4stage"]
    lam = map_family(resolve_study("lambda"), "tiny")
    assert [(r.label, r.recipe, r.lam) for r in lam.runs][:2] == [("lambda0.1", "tiny", 0.1),
                                                                  ("lambda0.3", "tiny", 0.3)]
    coco = map_family(resolve_study("coco-lt"), "tiny")
    assert [r.recipe for r in coco.runs] == ["tiny_baseline", "tiny"] and {r.dataset for r in coco.runs} == {None}
    assert any("without its dataset coco_lt" in n for n in coco.notes)


def test_seeds_repeat_every_run_in_its_own_folder():
    spec = build_spec("table2c", StudyOptions(family="tiny", seeds=3))
    runs = spec.expand()
    assert [r.name for r in runs] == [f"{x}-s{s}" for s in range(3) for x in ("tiny_baseline", "tiny")]
    assert [r.seed for r in runs] == [0, 0, 1, 1, 2, 2]


def test_a_toml_study_reads_runs_overrides_pairs_and_seeds(tmp_path):
    f = tmp_path / "sweep.toml"
    f.write_text(GOOD)
    spec = load_toml(f)
    assert spec.name == "sweep" and spec.seeds == [0, 1]
    base, mec = spec.runs
    assert base.max_iters == mec.max_iters == 4  # [defaults]
    assert mec.train_cfg_options() == {"model.roi_head.mec.lam": 0.5, "optim_wrapper.optimizer.lr": 0.01}
    assert mec.tau == 2.0
    assert [(r.kind, r.labels) for r in spec.reports] == [("models", ["base", "mec-lam0.5"]),
                                                          ("compare", ["base", "mec-lam0.5"])]


@pytest.mark.parametrize("text, words", [
    ("[[runs]]\nrecipe = 'tiny'\nlr = 1\n", "unknown key 'lr'"),
    ("[[runs]]\nrecipe = 'tinny_baseline'\n", "unknown recipe"),
    ("[[runs]]\nrecipe = 'tiny'\n[[runs]]\nrecipe = 'tiny'\n", "two runs have the label 'tiny'"),
    ("[[runs]]\nrecipe = 'tiny'\nbaseline = 'nope'\n", "its baseline 'nope' is not a run"),
    ("[[runs]]\nrecipe = 'tiny_baseline'\nlam = 0.5\n", "`lam` applies to MEC recipes"),
    ("[[runs]]\nrecipe = 'tiny'\nlam = 'high'\n", "lam must be a number"),
    ("[[runs]]\nrecipe = 'tiny'\nbins = [100, 10]\n", "strictly increasing"),
    ("seeds = 0\n[[runs]]\nrecipe = 'tiny'\n", "seeds must be a count"),
    ("reports = ['compare']\n[[runs]]\nrecipe = 'tiny'\n", "give an MEC run `baseline"),
    ("runs = [\n", "malformed TOML"),
    ("name = 'x'\n", "names no runs"),
    ("[[runs]]\nlabel = 'a/b'\nrecipe = 'tiny'\n", "must be letters"),
])
def test_a_bad_study_file_is_one_line_naming_the_file(tmp_path, run_mec, text, words):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    line = run_mec("study", "run", f, "--out", tmp_path / "out", "--dry-run").one_error_line()
    assert str(f) in line and words in line, line
    assert not (tmp_path / "out").exists()


def test_unknown_studies_and_options_are_one_line(tmp_path, run_mec):
    line = run_mec("study", "run", "tabel1", "--out", tmp_path / "o").one_error_line()
    assert "unknown study 'tabel1'" in line and "table1" in line
    line = run_mec("study", "run", "table1", "--out", tmp_path / "o", "--family", "huge").one_error_line()
    assert "--family" in line
    line = run_mec("study", "run", "table1", "--out", tmp_path / "o", "--slurm").one_error_line()
    assert "--partition" in line
    line = run_mec("study", "status", tmp_path / "nothing").one_error_line()
    assert "no such study directory" in line


def test_aggregate_gives_mean_sd_and_the_seeds_behind_each_row():
    from mec_cli.reporting.seeds import aggregate
    from mec_cli.reporting.tables import ReportTable

    def table(rows):
        return ReportTable("t", pd.DataFrame(rows, columns=["model", "AP", "paper AP"]), ["AP", "paper AP"])

    agg = aggregate({0: table([["a", 10.0, 5.0], ["b", 20.0, None], ["Δ b", 10.0, None]]),
                     1: table([["a", 12.0, 5.0], ["b", 21.0, None], ["Δ b", 9.0, None]]),
                     2: table([["a", 14.0, 5.0]])})  # seed 2: only run a evaluated so far
    rows = agg.df.set_index("model")
    assert list(agg.df.columns) == ["model", "seeds", "AP", "paper AP"]
    assert rows.loc["a", "seeds"] == "3" and rows.loc["a", "AP"] == "12.0 ± 2.0" and rows.loc["a", "paper AP"] == "5.0"
    assert rows.loc["b", "seeds"] == "2" and rows.loc["b", "AP"] == "20.5 ± 0.7"
    assert rows.loc["Δ b", "AP"] == "9.5 ± 0.7"  # the spread of the paired gains
    m = agg.machine.set_index("model")
    assert m.loc["a", "AP sd"] == pytest.approx(2.0) and m.loc["a", "AP n"] == 3 and m.loc["b", "AP n"] == 2
    assert agg.best_rows()["AP"] == [1]  # the highest mean
    assert any("standard deviation" in n and "seeds 0, 1, 2" in n for n in agg.notes)
    one = aggregate({0: table([["a", 10.0, None]])})
    assert one.df.loc[0, "AP"] == "10.0" and one.df.loc[0, "seeds"] == "1"


# ---- Slurm ----------------------------------------------------------------------------------------------------
def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture()
def stub_slurm(tmp_path, monkeypatch):
    """sbatch and squeue stubs on PATH: sbatch logs its arguments and prints job ids 1001, 1002, ..."""
    bin_dir, log = tmp_path / "bin", tmp_path / "sbatch.log"
    bin_dir.mkdir()
    _stub(bin_dir, "sbatch", f'n=$(( $(wc -l < {log} 2>/dev/null || echo 0) + 1001 ))\n'
                             f'echo "$@" >> {log}\necho "$n;cluster"\n')
    _stub(bin_dir, "squeue", f'cat {tmp_path / "queue"} 2>/dev/null\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def _slurm_args(out, data):
    return ["study", "run", "table2c", "--family", "tiny", "--seeds", "2", "--out", out, "--data-root", data,
            "--slurm", "--partition", "gpu", "--gpus", "8", "--nodes", "2", "--time", "1-00:00:00"]


def test_slurm_dry_run_prints_arrays_dependencies_and_requeue_and_submits_nothing(synth_data, tmp_path, stub_slurm,
                                                                                  run_mec):
    out = tmp_path / "study"
    r = run_mec(*_slurm_args(out, synth_data), "--dry-run")
    assert r.code == 0, r.out + r.err
    assert not stub_slurm.exists() and not out.exists()  # nothing submitted, nothing written
    text = r.out
    train = text.split("# ---- ")[1]
    assert "#SBATCH --array=0-3" in train and "#SBATCH --nodes=2" in train and "#SBATCH --gres=gpu:8" in train
    assert "#SBATCH --requeue" in train and "#SBATCH --signal=B:TERM@300" in train
    assert 'scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"' in train
    assert "RUNS=(tiny_baseline-s0 tiny-s0 tiny_baseline-s1 tiny-s1)" in train
    assert "--stage train --slurm" in train
    ev = text.split("# ---- ")[2]
    assert "#SBATCH --array=0-3" in ev and "#SBATCH --nodes=1" in ev and "--stage eval" in ev
    assert "RUNS=(tiny_baseline-s0 tiny-s0 tiny_baseline-s1 tiny-s1)" in ev  # task i evaluates training task i
    assert "--dependency=aftercorr:$TRAIN_JOB --kill-on-invalid-dep=yes" in text
    assert "--dependency=afterany:$TRAIN_JOB:$EVAL_JOB --kill-on-invalid-dep=yes" in text
    assert "mec_cli.study.runner report" in text.split("# ---- ")[3]


def test_slurm_submits_three_jobs_chained_records_them_and_refuses_to_submit_twice(synth_data, tmp_path, stub_slurm,
                                                                                   run_mec):
    out = tmp_path / "study"
    r = run_mec(*_slurm_args(out, synth_data))
    assert r.code == 0, r.out + r.err
    calls = stub_slurm.read_text().splitlines()
    assert len(calls) == 3
    assert calls[0].startswith("--parsable ") and calls[0].endswith("slurm/train.sbatch")
    assert "--dependency=aftercorr:1001 --kill-on-invalid-dep=yes" in calls[1] and calls[1].endswith("eval.sbatch")
    assert "--dependency=afterany:1001:1002 --kill-on-invalid-dep=yes" in calls[2]
    for name in ("train", "eval", "report"):
        assert (out / "slurm" / f"{name}.sbatch").is_file()
    doc = json.loads((out / "study.json").read_text())
    assert doc["slurm"]["jobs"] == {"train": "1001", "eval": "1002", "report": "1003"}
    assert [r["train"]["slurm_job"] for r in doc["runs"]] == ["1001_0", "1001_1", "1001_2", "1001_3"]
    assert [r["eval"]["slurm_job"] for r in doc["runs"]] == ["1002_0", "1002_1", "1002_2", "1002_3"]
    assert doc["options"]["nodes"] == 2 and doc["options"]["partition"] == "gpu"
    status = run_mec("study", "status", out)
    assert status.code == 0 and re.search(r"tiny_baseline\s+0\s+tiny_baseline\s+pending", status.out), status.out
    (tmp_path / "queue").write_text("1001\n")  # the training array is still queued
    line = run_mec(*_slurm_args(out, synth_data)).one_error_line()
    assert "1001" in line and "still in the queue" in line
    assert len(stub_slurm.read_text().splitlines()) == 3


def test_a_study_directory_is_run_by_one_command_at_a_time(tmp_path, run_mec):
    from mec_cli.study import manifest as mf

    out = tmp_path / "study"
    with mf.hold_busy(out / mf.BUSY):  # another `mec study run` is working in it
        line = run_mec("study", "run", "table2c", "--family", "tiny", "--gpus", "0", "--out", out).one_error_line()
    assert "is being run by process" in line and str(os.getpid()) in line
    assert not (out / "study.json").exists()
    (tmp_path / "file").write_text("x")
    line = run_mec("study", "run", "table2c", "--out", tmp_path / "file").one_error_line()
    assert "is a file, not a study directory" in line
