"""The reports of the analyses the peer evaluators offer, through the real entry point: `mec report confusion`,
`mec report lrp` and `mec report compare --ci` on metrics from real evaluations (`mec eval --analysis
--per-image`); their CSVs and figures are checked against the metrics JSON, and missing data is one line, exit 2.
Also `mec eval` with several --results, --partial and --merge."""
import copy
import json

import numpy as np
import pandas as pd
import pytest

from mec_cli.data.groups import build_groups
from mec_cli.evaluation.api import _summaries, load_metrics, metrics_document
from mec_cli.evaluation.engine import Detections, GroundTruth
from tests.reporting.test_study_reports import CATS, _masks_dataset


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """gt.json, groups.json, dets.json and two runs on them (base: mean_logits; mec: dynamic_ga, rescored and with
    some objects found on top), each with the analysis and the per-image records."""
    root = tmp_path_factory.mktemp("pair")
    gt_doc, dets = _masks_dataset(seed=3, num_images=30)
    (root / "gt.json").write_text(json.dumps(gt_doc))
    (root / "dets.json").write_text(json.dumps(dets))
    groups_doc = build_groups({c: n for c, _, n in CATS}, [10, 100])
    (root / "groups.json").write_text(json.dumps(groups_doc))
    gt = GroundTruth(copy.deepcopy(gt_doc), "lvis")
    groups = {int(k): v for k, v in groups_doc["category_group"].items()}
    names = [g["name"] for g in groups_doc["groups"]]
    rng = np.random.default_rng(2)
    better = copy.deepcopy(dets) + [{"image_id": a["image_id"], "category_id": a["category_id"],
                                     "segmentation": a["segmentation"], "score": 0.97}
                                    for a in gt_doc["annotations"][::3]]
    for d in better:
        d["score"] = round(float(np.clip(d["score"] + rng.normal(0, 0.05), 0, 1)), 2)
    for name, mode, records, recipe in (("base", "mean_logits", dets, "tiny_baseline"),
                                        ("mec", "dynamic_ga", better, "tiny")):
        d = Detections.from_records(copy.deepcopy(records), image_size=gt.image_size)
        modes = {mode: _summaries(gt, d, ["bbox", "segm"], groups, names, mode, analysis=True, per_image=True)}
        doc = metrics_document(modes, "lvis", str(root / "gt.json"), str(root / "groups.json"), recipe=recipe,
                               run={"num_stages": 3, "mec_loss": name == "mec", "lam": 0.7})
        (root / f"{name}.json").write_text(json.dumps(doc))
    return root


def test_confusion_report_equals_the_json(run_mec, pair, tmp_path):
    out, csv = tmp_path / "conf.png", tmp_path / "conf.csv"
    res = run_mec("report", "confusion", pair / "mec.json", "--grouping", "groups", "--out", out, "--csv", csv)
    assert res.code == 0, res.err
    assert out.exists() and out.with_suffix(".svg").exists() and (tmp_path / "conf_pairs.csv").exists()
    section = load_metrics(pair / "mec.json")["modes"]["dynamic_ga"]["segm"]["confusion"]
    rows = section["groupings"]["groups"]
    frame = pd.read_csv(csv)
    assert list(frame["group"]) == ["rare", "common", "frequent", "all"]
    for r in frame.to_dict("records"):
        want = rows[r["group"]]
        assert (r["objects"], r["correct"], r["none"]) == (want["objects"], want["correct"], want["none"])
        assert [r[f"as {g}"] for g in ("rare", "common", "frequent")] == [want["as"][g] for g in
                                                                          ("rare", "common", "frequent")]
        if want["objects"]:
            assert r["correct %"] == pytest.approx(round(100 * want["correct"] / want["objects"], 1))
    pairs = pd.read_csv(tmp_path / "conf_pairs.csv")
    assert len(pairs) == min(15, len(section["pairs"])) > 0
    assert pairs["objects"].tolist() == [p["objects"] for p in section["pairs"][:len(pairs)]]
    assert pairs["object"].iloc[0] == section["pairs"][0]["gt_name"]
    # the figure draws the row shares as the heatmap's cells
    from mec_cli.reporting.figures import confusion_figure
    from mec_cli.reporting.runs import load_runs
    from mec_cli.reporting.studies import confusion_frames

    matrix, top = confusion_frames(load_runs([str(pair / "mec.json")])[0], grouping="groups")
    fig = confusion_figure(matrix, top)
    image = fig.get_axes()[0].get_images()[0].get_array()
    assert image.shape == (4, 5)
    assert image[3, 0] == pytest.approx(100 * rows["all"]["correct"] / rows["all"]["objects"], abs=0.051)
    assert len(fig.get_axes()[1].patches) == len(top)


def test_lrp_report_equals_the_json(run_mec, pair, tmp_path):
    out, csv = tmp_path / "lrp.png", tmp_path / "lrp.csv"
    res = run_mec("report", "lrp", pair / "base.json", pair / "mec.json", "--iou-type", "bbox", "--out", out,
                  "--csv", csv)
    assert res.code == 0, res.err
    assert out.exists() and out.with_suffix(".svg").exists() and "oLRP" in res.out
    frame = pd.read_csv(csv)
    assert list(frame["series"].unique()) == ["tiny_baseline (mean_logits)", "tiny (dynamic_ga)"]
    for run, mode in (("base", "mean_logits"), ("mec", "dynamic_ga")):
        lrp = load_metrics(pair / f"{run}.json")["modes"][mode]["bbox"]["lrp"]
        assert lrp["groupings"]["lvis"]["all"] == lrp["overall"]
        part = frame[frame["mode"] == mode].set_index("group")
        for g in ("rare", "common", "frequent", "all"):
            block = lrp["groupings"]["lvis"][g]
            for c in ("oLRP", "loc", "fp", "fn"):
                want = block[c]
                assert (pd.isna(part.loc[g, c]) if want is None else
                        part.loc[g, c] == pytest.approx(round(100 * want, 1))), (g, c)
        assert 0 < lrp["overall"]["oLRP"] < 1
    from mec_cli.reporting.figures import lrp_figure
    from mec_cli.reporting.runs import load_runs
    from mec_cli.reporting.studies import lrp_frame

    frame = lrp_frame(load_runs([str(pair / "mec.json")]), iou_type="bbox")
    fig = lrp_figure(frame)
    assert [a.get_title() for a in fig.get_axes()] == ["oLRP", "localisation error", "false-positive error",
                                                       "false-negative error"]
    assert len(fig.get_axes()[0].patches) == 4  # one series x (three groups + all)


def test_compare_ci_says_whether_the_gain_is_within_noise(run_mec, pair, tmp_path):
    md, fig, csv = tmp_path / "t.md", tmp_path / "gain.png", tmp_path / "gain.csv"
    res = run_mec("report", "compare", pair / "base.json", pair / "mec.json", "--ci", "--resamples", "300",
                  "--figure", fig, "--csv", csv, "--out", md)
    assert res.code == 0, res.err
    assert fig.exists() and fig.with_suffix(".svg").exists()
    text = md.read_text()
    assert "95% interval" in text and ("within noise" in text or "a real gain" in text or "a real loss" in text)
    frame = pd.read_csv(csv)
    base, mec = load_metrics(pair / "base.json"), load_metrics(pair / "mec.json")
    assert set(frame["column"]) == {"AP", "APr", "APc", "APf", "mAP^m", "AP^m_r", "AP^m_c", "AP^m_f"}
    for r in frame.to_dict("records"):
        t, name = r["iou type"], r["metric"]
        want = mec["modes"]["dynamic_ga"][t][name] - base["modes"]["mean_logits"][t][name]
        assert r["delta"] == pytest.approx(100 * want, abs=1e-9), r
        assert r["low"] <= r["delta"] <= r["high"] and r["resamples"] <= 300
    ap = frame[frame["column"] == "AP"].iloc[0]
    assert ("within noise" in ap["verdict"]) == (ap["low"] <= 0 <= ap["high"])
    # the same seed gives the same intervals; the table without --ci has no interval row
    again = tmp_path / "again.csv"
    assert run_mec("report", "compare", pair / "base.json", pair / "mec.json", "--ci", "--resamples", "300",
                   "--csv", again).code == 0
    assert again.read_text() == csv.read_text()
    plain = run_mec("report", "compare", pair / "base.json", pair / "mec.json", "--format", "md")
    assert plain.code == 0 and "interval" not in plain.out
    # by the groups of groups.json: their own columns, from the same records
    groups_csv = tmp_path / "groups.csv"
    res = run_mec("report", "compare", pair / "base.json", pair / "mec.json", "--ci", "--resamples", "100",
                  "--grouping", "groups", "--csv", groups_csv)
    assert res.code == 0, res.err
    frame = pd.read_csv(groups_csv)
    assert set(frame["column"]) == {"AP", "AP_rare", "AP_common", "AP_frequent", "mAP^m", "AP^m_rare", "AP^m_common",
                                    "AP^m_frequent"}
    rare = frame[frame["column"] == "AP_rare"].iloc[0]
    want = mec["modes"]["dynamic_ga"]["bbox"]["AP_rare"] - base["modes"]["mean_logits"]["bbox"]["AP_rare"]
    assert rare["delta"] == pytest.approx(100 * want, abs=1e-9) and rare["group"] == "rare"


def test_compare_ci_needs_per_image_data(run_mec, pair, tmp_path):
    plain = tmp_path / "plain.json"
    assert run_mec("eval", "--results", pair / "dets.json", "--ann", pair / "gt.json", "--iou-type", "bbox,segm",
                   "--out", plain).code == 0
    line = run_mec("report", "compare", plain, pair / "mec.json", "--ci").one_error_line()
    assert "--per-image" in line and "plain.json" in line
    line = run_mec("report", "compare", pair / "base.json", pair / "mec.json", "--figure",
                   tmp_path / "f.png").one_error_line()
    assert "add --ci" in line
    line = run_mec("report", "compare", pair / "base.json", pair / "mec.json", "--ci", "--resamples",
                   "1").one_error_line()
    assert "--resamples must be >= 2" in line
    line = run_mec("report", "confusion", plain, "--mode", "results").one_error_line()
    assert "mec eval --analysis" in line


def test_eval_per_image_then_compare_against_itself(run_mec, pair, tmp_path):
    out = tmp_path / "m.json"
    res = run_mec("eval", "--results", pair / "dets.json", "--ann", pair / "gt.json", "--per-image", "--out", out)
    assert res.code == 0, res.err
    assert "mec report compare --ci" in res.out
    res = run_mec("report", "compare", out, out, "--ci", "--resamples", "50", "--format", "csv")
    assert res.code == 0, res.err
    verdicts = [ln for ln in res.out.splitlines() if ln.startswith(f"{out.parent.name} -> ") and " (mask): " in ln]
    assert len(verdicts) == 4 and all("+0.00 AP (95% interval +0.00 to +0.00): within noise" in v for v in verdicts)
    assert verdicts[0].startswith(f"{out.parent.name} -> {out.parent.name}, mAP^m (mask)")


def test_eval_shards_partials_and_merge_from_the_command_line(run_mec, pair, tmp_path):
    dets = json.loads((pair / "dets.json").read_text())
    parts = []
    for s in range(2):
        p = tmp_path / f"part{s}.json"
        p.write_text(json.dumps([d for d in dets if d["image_id"] % 2 == s]))
        parts.append(p)
    whole, shards, merged = tmp_path / "whole.json", tmp_path / "shards.json", tmp_path / "merged.json"
    common = ["--ann", pair / "gt.json", "--groups", pair / "groups.json", "--iou-type", "bbox,segm"]
    assert run_mec("eval", "--results", pair / "dets.json", *common, "--out", whole).code == 0
    res = run_mec("eval", "--results", parts[0], "--results", parts[1], *common, "--out", shards)
    assert res.code == 0, res.err
    for i, p in enumerate(parts):
        res = run_mec("eval", "--results", p, *common, "--partial", tmp_path / f"p{i}.npz")
        assert res.code == 0 and "Merge the parts with `mec eval --merge`" in res.out, res.err
    res = run_mec("eval", "--merge", tmp_path / "p1.npz", "--merge", tmp_path / "p0.npz", "--out", merged)
    assert res.code == 0, res.err
    want = json.loads(whole.read_text())["modes"]
    assert json.loads(shards.read_text())["modes"] == want == json.loads(merged.read_text())["modes"]
    # combinations that cannot work are one line each
    for args, needle in ((["--merge", tmp_path / "p0.npz", "--results", parts[0]], "--merge takes partial"),
                         (["--merge", tmp_path / "p0.npz", "--analysis"], "need every detection at once"),
                         (["--results", parts[0], "--results", parts[1], *common, "--fixed-ap"],
                          "need every detection at once"),
                         (["--results", parts[0], *common, "--partial", tmp_path / "x.npz", "--per-image"],
                          "give --per-image to --merge"),
                         (["--merge", tmp_path / "missing.npz"], "no such partial file")):
        line = run_mec("eval", *args).one_error_line()
        assert needle in line, (args, line)


def test_coco_annotations_without_groups_give_overall_olrp(run_mec, tmp_path):
    """COCO annotations (no LVIS frequency) evaluated without groups.json have no groups to split the studies by:
    the metrics file still loads, `mec report lrp` shows oLRP overall, the group studies say how to get groups."""
    from tests.evaluation.test_boundary import make_dataset

    data, records = make_dataset(1, False, num_images=12)
    for c in data["categories"]:
        c.pop("frequency")
    (tmp_path / "gt.json").write_text(json.dumps(data))
    (tmp_path / "dets.json").write_text(json.dumps(records))
    out = tmp_path / "m.json"
    assert run_mec("eval", "--results", tmp_path / "dets.json", "--ann", tmp_path / "gt.json", "--analysis",
                   "--out", out).code == 0
    lrp = load_metrics(out)["modes"]["results"]["segm"]["lrp"]
    assert lrp["groupings"] == {} and 0 < lrp["overall"]["oLRP"] < 1
    csv = tmp_path / "lrp.csv"
    res = run_mec("report", "lrp", out, "--out", tmp_path / "lrp.png", "--csv", csv)
    assert res.code == 0, res.err
    frame = pd.read_csv(csv)
    assert list(frame["group"]) == ["all"] and frame["oLRP"].iloc[0] == pytest.approx(round(100 * lrp["overall"]
                                                                                            ["oLRP"], 1))
    line = run_mec("report", "confusion", out, "--mode", "results", "--out", tmp_path / "c.png").one_error_line()
    assert "evaluate it with --groups" in line
