"""`mec demo` end to end at a small size: every step runs for real (synth, groups, two trainings, two
evaluations with the analysis, every report), the index links only files that exist, the study figures agree
with the metrics JSON they were drawn from, and a rerun reuses every step."""
from __future__ import annotations

import json
import math
import re

import pandas as pd
import pytest

SMALL = ("--iters", "2", "--train-images", "150", "--val-images", "8")


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    from mec_cli.demo import DemoOptions, run_demo

    out = tmp_path_factory.mktemp("demo")
    steps = []
    run_demo(DemoOptions(out=out, iters=2, train_images=150, val_images=8), lambda name, status: steps.append(
        (name, status)))
    assert [s for s in steps if s[1] == "skip"] == []
    return out


def test_index_links_every_output_and_each_exists(demo_out):
    index = (demo_out / "README.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", index)
    for name in ("iou_profile", "errors_tiny", "errors_tiny_baseline", "calibration", "weights", "stages_tiny",
                 "baseline_vs_mec", "distribution"):
        assert f"reports/{name}.png" in links, name
        assert (demo_out / "reports" / f"{name}.svg").stat().st_size > 0, name
    for link in links:
        assert (demo_out / link).exists(), link
    summary = json.loads((demo_out / "demo_summary.json").read_text())
    for item in summary["outputs"]:
        assert item["what"] and item["path"] in links, item
        for also in item["also"].split(", "):
            name = also.split(" ")[0]
            assert (demo_out / "reports" / name.removeprefix("reports/")).is_file(), also


def test_iou_profile_csv_is_the_metrics_json(demo_out):
    doc = json.loads((demo_out / "runs" / "tiny" / "metrics.json").read_text())
    base = json.loads((demo_out / "runs" / "tiny_baseline" / "metrics.json").read_text())
    frame = pd.read_csv(demo_out / "reports" / "iou_profile.csv")
    assert set(frame["kind"]) == {"stage", "ensemble", "baseline"}
    assert len(frame) == (3 + 2) * 3 * 10  # (3 stages, MEC's ensemble, the baseline) x 3 groups x 10 thresholds
    keys = {"rare": "APr", "common": "APc", "frequent": "APf"}
    checked = 0
    for row in frame.itertuples():
        source = base if row.kind == "baseline" else doc
        mode = "stage" + row.series.split()[1] if row.kind == "stage" else row.mode
        values = source["modes"][mode]["segm"]["AP_per_iou"][keys[row.group]]
        value = values[round((row.iou - 0.5) / 0.05)]
        if value is None or value < 0:
            assert math.isnan(row.AP), row
        else:
            assert row.AP == pytest.approx(100 * value, abs=0.05 + 1e-9), row  # the CSV holds AP x100 to 0.1
            checked += 1
    assert checked > 0


def test_weights_and_calibration_tables_are_consistent(demo_out):
    weights = pd.read_csv(demo_out / "reports" / "weights.csv")
    stages = [c for c in weights.columns if c.startswith("stage ")]
    assert len(stages) == 3
    kept = weights[weights["detections"] > 0]
    assert len(kept) > 0
    assert (kept[stages].sum(axis=1) - 1).abs().max() < 2e-3  # eq. 5's weights sum to one (rounded to 4 places)
    ece = pd.read_csv(demo_out / "reports" / "calibration_ece.csv")
    assert list(ece["mode"]) == ["mean_logits", "dynamic", "dynamic_ga"]
    bins = pd.read_csv(demo_out / "reports" / "calibration.csv")
    assert set(bins["mode"]) == {"mean_logits", "dynamic", "dynamic_ga"}
    assert ((bins["precision"].dropna() >= 0) & (bins["precision"].dropna() <= 1)).all()
    errors = pd.read_csv(demo_out / "reports" / "errors_tiny.csv")
    assert list(errors["group"])[-1] == "all"


def test_rerun_reuses_every_step(demo_out, run_mec):
    metrics = (demo_out / "runs" / "tiny" / "metrics.json").read_bytes()
    r = run_mec("demo", "--out", str(demo_out), *SMALL)
    assert r.code == 0, r.out + r.err
    assert r.out.count("already complete, skipped") == 6, r.out
    assert (demo_out / "runs" / "tiny" / "metrics.json").read_bytes() == metrics
