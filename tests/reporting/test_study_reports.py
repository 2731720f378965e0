"""The study reports (iou-profile, errors, calibration, weights) through the real entry point: the metrics come from
real evaluations of generated masks (`mec eval --results ... --analysis`, and MECMetric fed model-like outputs),
the CSVs and figures are checked against the metrics JSON, and missing or malformed sections are one line, exit 2."""
import copy
import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest

from mec_cli.data.groups import build_groups
from mec_cli.evaluation.api import SCHEMA, _summaries, load_metrics, metrics_document
from mec_cli.evaluation.engine import Detections, GroundTruth

# id, LVIS frequency, training instances
CATS = [(1, "r", 3), (2, "r", 8), (3, "c", 40), (4, "c", 60), (5, "f", 300), (6, "f", 500)]


def _masks_dataset(seed=0, num_images=24):
    """Ellipse masks in 48 x 64 images (LVIS fields), detections: jittered copies, some of another category, clutter."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:48, :64]
    images, anns, dets = [], [], []
    aid = 1

    def ellipse():
        cy, cx, ry, rx = rng.uniform(8, 40), rng.uniform(8, 56), rng.uniform(3, 14), rng.uniform(3, 16)
        return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1, (cy, cx, ry, rx)

    def rle(m):
        r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        return {"size": r["size"], "counts": r["counts"].decode()}

    for i in range(1, num_images + 1):
        present = set()
        for _ in range(int(rng.integers(1, 5))):
            c = int(rng.integers(1, 7))
            present.add(c)
            m, (cy, cx, ry, rx) = ellipse()
            ys, xs = np.nonzero(m)
            anns.append({"id": aid, "image_id": i, "category_id": c, "area": float(m.sum()), "segmentation": rle(m),
                         "bbox": [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)]})
            aid += 1
            for _ in range(int(rng.integers(1, 3))):
                dy, dx, s = rng.normal(0, 1.5), rng.normal(0, 1.5), rng.uniform(0.8, 1.2)
                d = ((yy - cy - dy) / (ry * s)) ** 2 + ((xx - cx - dx) / (rx * s)) ** 2 <= 1
                cat = c if rng.random() < 0.8 else int(rng.integers(1, 7))
                dets.append({"image_id": i, "category_id": cat, "segmentation": rle(d),
                             "score": round(float(rng.random()), 2)})
        for _ in range(int(rng.integers(0, 4))):
            dets.append({"image_id": i, "category_id": int(rng.integers(1, 7)), "segmentation": rle(ellipse()[0]),
                         "score": round(float(rng.random()), 2)})
        others = [c for c in range(1, 7) if c not in present]
        images.append({"id": i, "height": 48, "width": 64, "neg_category_ids": others[:2],
                       "not_exhaustive_category_ids": []})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": c, "name": f"cat{c}", "frequency": f} for c, f, _ in CATS]}
    return gt, dets


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """gt.json, groups.json, dets.json, and metrics.json of five modes (three stages, two ensembles: the same
    detections with different scores) with every study section, evaluated by the real evaluator."""
    root = tmp_path_factory.mktemp("study")
    gt_doc, dets = _masks_dataset()
    (root / "gt.json").write_text(json.dumps(gt_doc))
    (root / "dets.json").write_text(json.dumps(dets))
    groups_doc = build_groups({c: n for c, _, n in CATS}, [10, 100])
    (root / "groups.json").write_text(json.dumps(groups_doc))
    gt = GroundTruth(copy.deepcopy(gt_doc), "lvis")
    base = Detections.from_records(copy.deepcopy(dets), image_size=gt.image_size)
    groups = {int(k): v for k, v in groups_doc["category_group"].items()}
    names = [g["name"] for g in groups_doc["groups"]]
    rng = np.random.default_rng(1)
    modes = {}
    for m in ("stage1", "stage2", "stage3", "mean_logits", "dynamic_ga"):
        d = Detections(base.image_id, base.category_id, np.clip(base.score + rng.normal(0, 0.1, len(base)), 0, 1),
                       base.bbox, base.segm, base.area_from_box)
        modes[m] = _summaries(gt, d, ["segm", "boundary"], groups, names, m, analysis=True)
    doc = metrics_document(modes, "lvis", str(root / "gt.json"), str(root / "groups.json"), dilation_ratio=0.02,
                           recipe="tiny", run={"num_stages": 3, "mec_loss": True, "lam": 0.7})
    (root / "metrics.json").write_text(json.dumps(doc))
    return root


def test_eval_analysis_and_boundary_from_a_results_file(run_mec, study, tmp_path):
    out = tmp_path / "m.json"
    res = run_mec("eval", "--results", study / "dets.json", "--ann", study / "gt.json",
                  "--groups", study / "groups.json",
                  "--iou-type", "segm,boundary", "--analysis", "--out", out)
    assert res.code == 0, res.err
    assert "Boundary AP, dilation ratio 0.02" in res.out and "mec report errors" in res.out
    doc = load_metrics(out)  # the study sections pass the reader's checks
    assert doc["boundary_dilation"] == 0.02
    m = doc["modes"]["results"]
    for t in ("segm", "boundary"):
        assert set(m[t]["errors"]["groupings"]) == {"lvis", "groups"}
        assert list(m[t]["errors"]["groupings"]["groups"]) == ["rare", "common", "frequent", "all"]
        assert m[t]["errors"]["groupings"]["lvis"]["all"]["AP50"] == pytest.approx(m[t]["AP50"], abs=1e-12)
        assert m[t]["calibration"]["groupings"]["lvis"]["all"]["detections"] > 20
    assert m["boundary"]["AP"] < m["segm"]["AP"]  # Boundary AP is the stricter measure on these masks
    # the same without --analysis has no study sections, and the reports say how to make them
    plain = tmp_path / "plain.json"
    assert run_mec("eval", "--results", study / "dets.json", "--ann", study / "gt.json", "--out", plain).code == 0
    assert "errors" not in json.loads(plain.read_text())["modes"]["results"]["segm"]
    for command in ("errors", "calibration"):
        line = run_mec("report", command, plain, "--mode" if command == "errors" else "--iou-type",
                       "results" if command == "errors" else "segm", "--out", tmp_path / "x.png").one_error_line()
        assert "mec eval --analysis" in line and "plain.json" in line
    assert not (tmp_path / "x.png").exists()


def test_iou_profile_csv_and_figure_equal_the_json(run_mec, study, tmp_path):
    base = tmp_path / "base.json"
    doc = json.loads((study / "metrics.json").read_text())
    doc["modes"] = {"mean_logits": doc["modes"]["mean_logits"]}
    doc["recipe"] = "tiny_baseline"
    base.write_text(json.dumps(doc))
    out, csv = tmp_path / "profile.png", tmp_path / "profile.csv"
    res = run_mec("report", "iou-profile", study / "metrics.json", "--baseline", base, "--grouping", "groups",
                  "--out", out,
                  "--csv", csv)
    assert res.code == 0, res.err
    assert out.exists() and out.with_suffix(".svg").exists()
    import pandas as pd

    frame = pd.read_csv(csv)
    metrics = json.loads((study / "metrics.json").read_text())
    assert list(frame["series"].unique()) == ["stage 1", "stage 2", "stage 3", "dynamic_ga",
                                              "baseline tiny_baseline (mean_logits)"]
    assert list(frame["group"].unique()) == ["rare", "common", "frequent"]
    for row in frame.itertuples():
        src = doc if row.kind == "baseline" else metrics
        t = int(round((row.iou - 0.5) / 0.05))
        want = src["modes"][row.mode]["segm"]["AP_per_iou"][f"AP_{row.group}"][t]
        assert row.AP == pytest.approx(round(100 * want, 1)), row
    # the LVIS grouping reads APr/APc/APf instead, and the figure draws what the frame holds
    from mec_cli.reporting.figures import iou_profile_figure
    from mec_cli.reporting.runs import load_runs
    from mec_cli.reporting.studies import iou_profile_frame

    run = load_runs([str(study / "metrics.json")])[0]
    lvis = iou_profile_frame(run, iou_type="boundary", grouping="lvis")
    assert lvis.attrs["groups"] == ["rare", "common", "frequent"]
    rare = lvis[(lvis["group"] == "rare") & (lvis["series"] == "stage 2")]["AP"].tolist()
    assert rare == [round(100 * v, 1) for v in metrics["modes"]["stage2"]["boundary"]["AP_per_iou"]["APr"]]
    fig = iou_profile_figure(lvis)
    axes = fig.get_axes()
    assert [a.get_title() for a in axes] == ["rare", "common", "frequent"]
    assert [ln.get_label() for ln in axes[0].get_lines()] == lvis.attrs["series"]
    assert list(axes[0].get_lines()[1].get_ydata()) == pytest.approx(rare)


def test_a_schema_1_file_asks_for_a_new_evaluation(run_mec, study, tmp_path):
    doc = json.loads((study / "metrics.json").read_text())
    doc["schema"] = "mec.metrics/1"
    for by_type in doc["modes"].values():
        for t in ("segm", "boundary"):
            del by_type[t]["AP_per_iou"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc))
    line = run_mec("report", "iou-profile", old, "--out", tmp_path / "p.png").one_error_line()
    assert "evaluate again with mec eval (schema /2)" in line and "old.json" in line
    assert not (tmp_path / "p.png").exists()


def test_errors_report_equals_the_json(run_mec, study, tmp_path):
    out, csv = tmp_path / "errors.png", tmp_path / "errors.csv"
    res = run_mec("report", "errors", study / "metrics.json", "--grouping", "groups", "--iou-type", "boundary",
                  "--out", out,
                  "--csv", csv)
    assert res.code == 0, res.err
    assert out.exists() and out.with_suffix(".svg").exists()
    import pandas as pd

    frame = pd.read_csv(csv)
    sections = json.loads((study / "metrics.json").read_text())["modes"]["dynamic_ga"]["boundary"]["errors"]
    sections = sections["groupings"]["groups"]
    assert list(frame["group"]) == ["rare", "common", "frequent", "all"]
    for row in frame.to_dict("records"):
        s = sections[row["group"]]
        assert row["AP50"] == pytest.approx(round(100 * s["AP50"], 1))
        for t in ("cls", "loc", "both", "dupe", "bkg", "miss"):
            assert row[f"dAP {t}"] == pytest.approx(round(100 * s["dAP"][t], 2))
            assert row[f"n {t}"] == s["count"][t]
    assert frame["n miss"].iloc[-1] > 0 and frame["n loc"].iloc[-1] > 0


def test_calibration_report_equals_the_json(run_mec, study, tmp_path):
    out, csv = tmp_path / "cal.png", tmp_path / "cal.csv"
    res = run_mec("report", "calibration", study / "metrics.json", "--modes", "mean_logits,dynamic_ga", "--out", out,
                  "--csv", csv)
    assert res.code == 0, res.err
    assert "mean_logits" in res.out and "dynamic_ga" in res.out
    import pandas as pd

    frame = pd.read_csv(csv)
    assert list(frame["mode"].unique()) == ["mean_logits", "dynamic_ga"]
    cal = json.loads((study / "metrics.json").read_text())["modes"]["dynamic_ga"]["segm"]["calibration"]
    rare = frame[(frame["mode"] == "dynamic_ga") & (frame["group"] == "rare")]
    assert rare["count"].tolist() == cal["groupings"]["lvis"]["rare"]["count"]
    from mec_cli.reporting.figures import calibration_figure
    from mec_cli.reporting.runs import load_runs
    from mec_cli.reporting.studies import calibration_frames

    bins, ece = calibration_frames(load_runs([str(study / "metrics.json")])[0], ["dynamic_ga"])
    want = round(100 * cal["groupings"]["lvis"]["rare"]["ece"], 1)
    assert ece.set_index("mode").loc["dynamic_ga", "rare"] == pytest.approx(want)
    fig = calibration_figure(bins, ece)
    labels = [t.get_text() for t in fig.get_axes()[0].get_legend().get_texts()]
    assert labels[0].startswith("rare (ECE ") and len(labels) == 4


def test_stage_weights_from_model_outputs_on_two_ranks(run_mec, study, tmp_path):
    """MECMetric gets each image's dynamic-mode stage weights; rank 0 evaluates the records gathered from both
    ranks; the means per group equal the hand-computed ones, and `mec report weights` draws them."""
    import torch
    from mmengine.structures import InstanceData

    from mec_cli.evaluation.metric import MECMetric

    gt_doc = json.loads((study / "gt.json").read_text())
    cats = [c["id"] for c in gt_doc["categories"]]
    rng = np.random.default_rng(5)
    metrics = [MECMetric(str(study / "gt.json"), ["bbox", "boundary"], "lvis", str(study / "groups.json"),
                         cat_ids=cats, analysis=True) for _ in range(2)]
    kept = []
    for im in gt_doc["images"]:
        n = int(rng.integers(1, 5))
        labels = rng.integers(0, len(cats), n)
        weights = rng.dirichlet([4, 2, 1], n)
        masks = np.zeros((n, 48, 64), bool)
        for k in range(n):
            y, x = rng.integers(0, 30), rng.integers(0, 40)
            masks[k, y:y + 15, x:x + 20] = True
        spans = [m.nonzero() for m in masks]
        boxes = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] for ys, xs in spans],
                             dtype=torch.float32)

        def inst(with_weights):
            i = InstanceData(bboxes=boxes, scores=torch.tensor(rng.random(n), dtype=torch.float32),
                             labels=torch.tensor(labels), masks=torch.tensor(masks))
            if with_weights:
                i.stage_weights = torch.tensor(weights, dtype=torch.float32)
            return i

        sample = {"img_id": im["id"], "mec_modes": {"mean_logits": inst(False), "dynamic_ga": inst(True)}}
        metrics[im["id"] % 2].process(None, [sample])
        kept += [(cats[lab], w) for lab, w in zip(labels, weights.astype(np.float32).astype(np.float64))]
    rank0 = metrics[0]
    rank0.compute_metrics(metrics[0].results + metrics[1].results)  # what collect_results hands rank 0
    out = rank0.last_results
    assert "stage_weights" not in out["mean_logits"] and "boundary" in out["dynamic_ga"]
    assert "errors" in out["dynamic_ga"]["boundary"]
    sw = out["dynamic_ga"]["stage_weights"]
    groups = {int(k): v for k, v in json.loads((study / "groups.json").read_text())["category_group"].items()}
    for g, name in enumerate(["rare", "common", "frequent"]):
        mine = [w for c, w in kept if groups[c] == g]
        assert sw["groupings"]["groups"][name]["detections"] == len(mine)
        assert sw["groupings"]["groups"][name]["mean"] == pytest.approx(np.mean(mine, axis=0).tolist(), abs=1e-12)
    lvis_rare = [w for c, w in kept if c in (1, 2)]
    assert sw["groupings"]["lvis"]["rare"]["mean"] == pytest.approx(np.mean(lvis_rare, axis=0).tolist(), abs=1e-12)
    assert sw["groupings"]["lvis"]["all"]["detections"] == len(kept)
    # the metrics file with them, then the report
    doc = metrics_document(out, "lvis", str(study / "gt.json"), str(study / "groups.json"), dilation_ratio=0.02)
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(doc))
    fig_out, csv = tmp_path / "w.png", tmp_path / "w.csv"
    res = run_mec("report", "weights", path, "--grouping", "groups", "--out", fig_out, "--csv", csv)
    assert res.code == 0, res.err
    assert fig_out.exists() and fig_out.with_suffix(".svg").exists()
    import pandas as pd

    frame = pd.read_csv(csv)
    rare = frame[(frame["mode"] == "dynamic_ga") & (frame["group"] == "rare")].iloc[0]
    assert rare["stage 1"] == pytest.approx(round(sw["groupings"]["groups"]["rare"]["mean"][0], 4))
    from mec_cli.reporting.figures import weights_figure
    from mec_cli.reporting.runs import load_runs
    from mec_cli.reporting.studies import weights_frame

    fig = weights_figure(weights_frame(load_runs([str(path)])[0], "groups"))
    bars = [p for p in fig.get_axes()[0].patches]
    assert len(bars) == 3 * 4  # three stages x (three groups + all)
    assert bars[0].get_height() == pytest.approx(sw["groupings"]["groups"]["rare"]["mean"][0], abs=1e-4)
    # a run without them says how to get them
    line = run_mec("report", "weights", study / "metrics.json", "--out", tmp_path / "none.png").one_error_line()
    assert "records no stage weights" in line and "--modes dynamic" in line


@pytest.mark.parametrize("mutate,needle", [
    (lambda m: m["dynamic_ga"]["segm"]["errors"]["groupings"]["lvis"]["rare"].pop("dAP"),
     "errors.groupings.lvis.rare.dAP"),
    (lambda m: m["dynamic_ga"]["segm"]["errors"]["groupings"]["lvis"].pop("all"), "errors.groupings.lvis"),
    (lambda m: m["stage1"]["segm"]["calibration"]["groupings"]["lvis"]["rare"]["count"].append(3),
     "calibration.groupings"),
    (lambda m: m["stage1"]["segm"]["calibration"].update(bins="10"), "calibration.bins"),
    (lambda m: m["dynamic_ga"].update(stage_weights={"stages": 3, "groupings": {
        "groups": {"all": {"mean": [1, 2], "detections": 1}}}}),
     "stage_weights.groupings.groups.all.mean"),
    (lambda m: m["dynamic_ga"].update(stage_weights=[1]), "stage_weights is not an object"),
])
def test_malformed_study_sections_are_one_line(run_mec, study, tmp_path, mutate, needle):
    doc = json.loads((study / "metrics.json").read_text())
    mutate(doc["modes"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    for command in ("errors", "ablation"):
        out = tmp_path / ("e.png" if command == "errors" else "t.md")
        line = run_mec("report", command, bad, "--out", out).one_error_line()
        assert needle in line and "bad.json" in line


def test_study_sections_leave_the_other_reports_working(run_mec, study, tmp_path):
    doc = json.loads((study / "metrics.json").read_text())
    doc["modes"]["dynamic_ga"]["stage_weights"] = {"stages": 3, "groupings": {"groups": {
        "all": {"mean": [0.5, 0.3, 0.2], "detections": 4}}}}
    path = tmp_path / "with_weights.json"
    path.write_text(json.dumps(doc))
    res = run_mec("report", "stages", path, "--out", tmp_path / "stages.png")
    assert res.code == 0, res.err
    assert run_mec("report", "ablation", path, "--modes", "dynamic_ga", "--format", "md").code == 0


def test_grouping_choices(run_mec, study, tmp_path):
    doc = json.loads((study / "metrics.json").read_text())
    doc["schema"] = SCHEMA
    for by_type in doc["modes"].values():  # as if the annotations had no LVIS frequency
        for t in ("segm", "boundary"):
            for key in ("errors", "calibration"):
                del by_type[t][key]["groupings"]["lvis"]
    path = tmp_path / "no_lvis.json"
    path.write_text(json.dumps(doc))
    line = run_mec("report", "errors", path, "--grouping", "lvis", "--out", tmp_path / "e.png").one_error_line()
    assert "no error analysis by LVIS frequency groups" in line
    res = run_mec("report", "errors", path, "--out", tmp_path / "e.png")  # auto falls back to groups.json
    assert res.code == 0, res.err


@pytest.mark.parametrize("args,needle", [
    (["--iou-type", "boundary", "--boundary-dilation", "0"], "--boundary-dilation must be > 0"),
    (["--iou-type", "boundary", "--boundary-dilation", "1"], "--boundary-dilation must be < 1"),
    (["--iou-type", "boundary", "--boundary-dilation", "nan"], "--boundary-dilation must be a finite number"),
    (["--iou-type", "edges"], "--iou-type must be bbox, segm, boundary"),
])
def test_bad_eval_flags_are_one_line(run_mec, study, tmp_path, args, needle):
    line = run_mec("eval", "--results", study / "dets.json", "--ann", study / "gt.json", *args, "--out",
                   tmp_path / "m.json").one_error_line()
    assert needle in line
    assert not (tmp_path / "m.json").exists()


def test_boundary_needs_segmentations(run_mec, study, tmp_path):
    boxes = [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10], "score": 0.5}]
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(boxes))
    line = run_mec("eval", "--results", path, "--ann", study / "gt.json", "--iou-type", "boundary").one_error_line()
    assert "evaluation by boundary asked for, but the results hold no segmentations" in line
