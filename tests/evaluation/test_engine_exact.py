"""The fast evaluator equals lvis-api and pycocotools on the same detections, edge cases included."""
import copy
import json

import numpy as np
import pytest
from lvis import LVIS, LVISEval, LVISResults
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from typer.testing import CliRunner

from mec_cli.cli import app
from mec_cli.compat import patch_lvis_numpy
from mec_cli.evaluation.engine import Detections, GroundTruth, evaluate
from mec_cli.evaluation.summary import summarize

patch_lvis_numpy()
METRICS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf"]


def _square(x, y, s):
    return [[x, y, x + s, y, x + s, y + s, x, y + s]]


def _gt_fixture():
    """Inline LVIS-style ground truth: 4 images, 4 categories (r, c, f, and one with no ground truth)."""
    cats = [{"id": 1, "name": "a", "frequency": "r"}, {"id": 2, "name": "b", "frequency": "c"},
            {"id": 3, "name": "c", "frequency": "f"}, {"id": 4, "name": "no_gt", "frequency": "f"}]
    images, anns = [], []
    layout = {1: [(1, 10, 10, 30), (3, 60, 60, 50)], 2: [(2, 5, 5, 20), (2, 40, 40, 80), (3, 100, 10, 40)],
              3: [(3, 10, 100, 100)], 4: []}
    aid = 1
    for img, objs in layout.items():
        images.append({"id": img, "width": 200, "height": 220, "neg_category_ids": [4] if img != 3 else [1, 4],
                       "not_exhaustive_category_ids": [2] if img == 2 else []})
        for cat, x, y, s in objs:
            anns.append({"id": aid, "image_id": img, "category_id": cat, "bbox": [x, y, s, s], "area": float(s * s),
                         "segmentation": _square(x, y, s)})
            aid += 1
    return {"images": images, "annotations": anns, "categories": cats}


def _random_dets(gt, rng, n_per_img=40, cats=(1, 2, 3, 4), tie_scores=True, segm=False, size=200):
    import pycocotools.mask as mask_utils

    dets = []
    for img in gt["images"]:
        for a in [a for a in gt["annotations"] if a["image_id"] == img["id"]]:
            x, y, w, h = a["bbox"]
            dx, dy = rng.normal(0, 0.15 * w, 2)
            dets.append({"image_id": img["id"], "category_id": a["category_id"], "bbox": [x + dx, y + dy, w, h]})
        for _ in range(n_per_img):
            x, y = rng.uniform(0, size - 20, 2)
            s = float(rng.uniform(4, 110))
            dets.append({"image_id": img["id"], "category_id": int(rng.choice(cats)), "bbox": [x, y, s, s]})
    for d in dets:
        d["score"] = float(np.round(rng.random(), 1 if tie_scores else 6))
        if segm:
            x, y, w, h = d["bbox"]
            rle = mask_utils.frPyObjects([[x, y, x + w, y, x + w, y + h, x, y + h]], 220, 200)[0]
            rle["counts"] = rle["counts"].decode()
            d["segmentation"] = rle
    return dets


def _lvis_reference(gt, dets, iou_type, tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    lvis_gt = LVIS(str(path))
    ev = LVISEval(lvis_gt, LVISResults(lvis_gt, copy.deepcopy(dets)), iou_type)
    ev.run()
    return ev


def _ours(gt, dets, iou_type, protocol="lvis"):
    g = GroundTruth(copy.deepcopy(gt), protocol)
    res = evaluate(g, Detections.from_records(dets), iou_type)
    return res, summarize(res, g.frequency)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lvis_equals_lvis_api_with_federated_cases_and_ties(iou_type, seed, tmp_path):
    gt = _gt_fixture()
    rng = np.random.default_rng(seed)
    dets = _random_dets(gt, rng, segm=iou_type == "segm")
    ev = _lvis_reference(gt, dets, iou_type, tmp_path)
    res, ours = _ours(gt, dets, iou_type)
    np.testing.assert_allclose(res.precision, ev.eval["precision"], atol=1e-12)
    for m in METRICS:
        assert ours[m] == pytest.approx(ev.results[m], abs=1e-4), m
    assert ours["per_category"]["4"] == -1  # a category with no ground truth


def test_more_than_300_detections_per_image(tmp_path):
    gt = _gt_fixture()
    dets = _random_dets(gt, np.random.default_rng(5), n_per_img=400, tie_scores=False)
    assert max(sum(d["image_id"] == i for d in dets) for i in (1, 2, 3, 4)) > 300
    ev = _lvis_reference(gt, dets, "bbox", tmp_path)
    res, ours = _ours(gt, dets, "bbox")
    np.testing.assert_allclose(res.precision, ev.eval["precision"], atol=1e-12)
    assert res.num_detections <= 4 * 300


def test_no_detections_at_all_and_a_category_without_detections(tmp_path):
    gt = _gt_fixture()
    res, ours = _ours(gt, [], "bbox")
    assert ours["AP"] == 0.0 and res.num_detections == 0  # every category with ground truth scores 0
    dets = [d for d in _random_dets(gt, np.random.default_rng(0)) if d["category_id"] != 2]
    ev = _lvis_reference(gt, dets, "bbox", tmp_path)
    res, ours = _ours(gt, dets, "bbox")
    np.testing.assert_allclose(res.precision, ev.eval["precision"], atol=1e-12)
    assert ours["per_category"]["2"] == 0.0


def test_federated_rules():
    gt = _gt_fixture()
    # category 1 is neither annotated nor negative in image 2: its detection there is not counted at all
    base = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9}]
    unverified = base + [{"image_id": 2, "category_id": 1, "bbox": [0, 0, 50, 50], "score": 0.99}]
    assert _ours(gt, base, "bbox")[1]["APr"] == _ours(gt, unverified, "bbox")[1]["APr"] == pytest.approx(1.0)
    # image 3 lists category 1 as negative: a detection there is a false positive
    negative = base + [{"image_id": 3, "category_id": 1, "bbox": [0, 0, 50, 50], "score": 0.99}]
    assert _ours(gt, negative, "bbox")[1]["APr"] < 1.0
    # category 2 is not exhaustively annotated in image 2: unmatched detections there are ignored
    good = [{"image_id": 2, "category_id": 2, "bbox": [5, 5, 20, 20], "score": 0.5},
            {"image_id": 2, "category_id": 2, "bbox": [40, 40, 80, 80], "score": 0.4}]
    extra = good + [{"image_id": 2, "category_id": 2, "bbox": [150, 150, 30, 30], "score": 0.95}]
    assert _ours(gt, good, "bbox")[1]["APc"] == pytest.approx(_ours(gt, extra, "bbox")[1]["APc"]) == pytest.approx(1.0)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_coco_protocol_equals_pycocotools_with_crowd_and_empty_gt(iou_type, tmp_path):
    gt = _gt_fixture()
    for im in gt["images"]:
        im.pop("neg_category_ids")
        im.pop("not_exhaustive_category_ids")
    for c in gt["categories"]:
        c.pop("frequency")
    gt["annotations"].append({"id": 99, "image_id": 3, "category_id": 3, "bbox": [120, 10, 60, 60], "area": 3600.0,
                              "iscrowd": 1, "segmentation": _square(120, 10, 60)})
    for a in gt["annotations"]:
        a.setdefault("iscrowd", 0)
    dets = _random_dets(gt, np.random.default_rng(3), n_per_img=150, segm=iou_type == "segm")
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(gt))
    coco = COCO(str(path))
    ev = COCOeval(coco, coco.loadRes(copy.deepcopy(dets)), iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    res, ours = _ours(gt, dets, iou_type, protocol="coco")
    np.testing.assert_allclose(res.precision, ev.eval["precision"][..., -1], atol=1e-12)
    for m, k in (("AP", 0), ("AP50", 1), ("AP75", 2), ("APs", 3), ("APm", 4), ("APl", 5)):
        assert ours[m] == pytest.approx(ev.stats[k], abs=1e-4), m


def test_group_ap_slices_the_same_precision():
    gt = _gt_fixture()
    dets = _random_dets(gt, np.random.default_rng(7))
    g = GroundTruth(gt, "lvis")
    res = evaluate(g, Detections.from_records(dets), "bbox")
    by_group = summarize(res, g.frequency, {1: 0, 2: 1, 3: 2, 4: 2}, ["rare", "common", "frequent"])
    assert by_group["AP_rare"] == by_group["APr"] and by_group["AP_common"] == by_group["APc"]


def test_cli_results_file_and_bad_inputs(tmp_path):
    gt = _gt_fixture()
    dets = _random_dets(gt, np.random.default_rng(1))
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    out = tmp_path / "m.json"
    res = CliRunner().invoke(app, ["eval", "--results", str(tmp_path / "dets.json"), "--ann", str(tmp_path / "gt.json"),
                                   "--iou-type", "bbox", "--out", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["schema"] == "mec.metrics/2" and doc["protocol"] == "lvis" and list(doc["modes"]) == ["results"]
    ev = _lvis_reference(gt, dets, "bbox", tmp_path)
    assert doc["modes"]["results"]["bbox"]["AP"] == pytest.approx(ev.results["AP"], abs=1e-4)
    bad = copy.deepcopy(dets) + [{"image_id": 77, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    res = CliRunner().invoke(app, ["eval", "--results", str(tmp_path / "bad.json"), "--ann", str(tmp_path / "gt.json")])
    assert res.exit_code == 2 and "image id 77" in res.output and "Traceback" not in res.output


def test_lvis_numpy_compat_is_narrow():
    import lvis.eval as lvis_eval

    assert lvis_eval.np.float is float and lvis_eval.np.cumsum is np.cumsum
    assert "float" not in vars(np)  # the real numpy module is untouched


def _per_class_top(dets, k):
    """The top ``k`` detections of each category by score, ties in file order (a stable sort), file order kept."""
    keep = set()
    for c in {d["category_id"] for d in dets}:
        idx = [i for i, d in enumerate(dets) if d["category_id"] == c]
        idx.sort(key=lambda i: -dets[i]["score"])  # stable: ties keep file order
        keep.update(idx[:k])
    return [d for i, d in enumerate(dets) if i in keep]


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_fixed_ap_equals_lvis_api_without_a_per_image_cap(iou_type, tmp_path):
    """Fixed AP (Dave et al.): the top K per category (ties in file order), no per-image cap; lvis-api run with
    max_dets=-1 on the same per-class-limited detections is the reference."""
    gt = _gt_fixture()
    dets = _random_dets(gt, np.random.default_rng(11), n_per_img=400, tie_scores=True, segm=iou_type == "segm")
    assert max(sum(d["image_id"] == i for d in dets) for i in (1, 2, 3, 4)) > 300  # a per-image cap would bite
    k = 150
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    lvis_gt = LVIS(str(path))
    ev = LVISEval(lvis_gt, LVISResults(lvis_gt, copy.deepcopy(_per_class_top(dets, k)), max_dets=-1), iou_type)
    ev.run()
    g = GroundTruth(copy.deepcopy(gt), "lvis")
    res = evaluate(g, Detections.from_records(dets), iou_type, max_dets_per_class=k)
    np.testing.assert_allclose(res.precision, ev.eval["precision"], atol=1e-12)
    from mec_cli.evaluation.summary import fixed_metrics

    fixed = fixed_metrics(res, g.frequency)
    for key in ("AP", "APr", "APc", "APf"):
        assert fixed[f"{key}_fixed"] == pytest.approx(ev.results[key], abs=1e-12)
    standard = summarize(evaluate(g, Detections.from_records(dets), iou_type), g.frequency)
    assert standard["AP"] != fixed["AP_fixed"]  # a different metric, reported beside the standard one


def test_iou_profile_slices_the_same_precision(tmp_path):
    gt = _gt_fixture()
    dets = _random_dets(gt, np.random.default_rng(12))
    ev = _lvis_reference(gt, dets, "bbox", tmp_path)
    _, ours = _ours(gt, dets, "bbox")
    profile = ours["AP_per_iou"]
    assert set(profile) == {"AP", "APr", "APc", "APf"} and all(len(v) == 10 for v in profile.values())
    assert profile["AP"][0] == pytest.approx(ev.results["AP50"], abs=1e-12)
    assert profile["AP"][5] == pytest.approx(ev.results["AP75"], abs=1e-12)
    assert np.mean(profile["AP"]) == pytest.approx(ours["AP"], abs=1e-12)
    assert np.mean(profile["APr"]) == pytest.approx(ours["APr"], abs=1e-12)


def test_cli_fixed_ap_is_beside_the_standard_metrics(run_mec, tmp_path):
    gt = _gt_fixture()
    dets = _random_dets(gt, np.random.default_rng(13), n_per_img=200)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    res = run_mec("eval", "--results", tmp_path / "dets.json", "--ann", tmp_path / "gt.json", "--fixed-ap",
                  "--dets-per-class", "50", "--out", tmp_path / "m.json")
    assert res.code == 0, res.err
    assert "AP fixed" in res.out
    assert "AP fixed: the 50 highest-scoring detections per category over the dataset, no per-image cap" in \
        " ".join(res.out.split())  # the protocol line says what limited Fixed AP
    doc = json.loads((tmp_path / "m.json").read_text())
    m = doc["modes"]["results"]["bbox"]
    assert {"AP", "APr", "AP_fixed", "APr_fixed", "APc_fixed", "APf_fixed"} <= set(m)
    assert doc["detection_cap"]["fixed_ap_dets_per_class"] == 50
    assert run_mec("eval", "--results", tmp_path / "dets.json", "--ann", tmp_path / "gt.json", "--fixed-ap",
                   "--dets-per-class", "0").one_error_line().endswith("--dets-per-class must be >= 1, got 0")


def test_summaries_sum_exactly_as_numpy_does():
    """The summary means are computed in numba; they must equal np.mean bit for bit (lvis-api's AP is np.mean)."""
    from mec_cli.evaluation import kernels

    rng = np.random.default_rng(0)
    for n in [1, 7, 8, 9, 127, 128, 129, 1010, 8191, 8192, 8193, 20000, 1_210_000]:
        a = rng.random(n) * rng.choice([1, 1e-3, 7])
        assert kernels.numpy_sum(a, n) == np.sum(a), n
    p = np.where(rng.random((10, 101, 50, 4)) < 0.3, -1.0, rng.random((10, 101, 50, 4)))
    scratch = np.empty(10 * 101 * 50)
    for t, k, area in [(np.arange(10), np.arange(50), 0), (np.array([0]), np.arange(50), 2),
                       (np.arange(10), np.array([3, 7, 9]), 1)]:
        s = p[t][:, :, k, area]
        assert kernels.mean_valid(p, t, k, area, scratch) == np.mean(s[s > -1])


def test_score_sort_is_a_stable_descending_sort():
    """The radix sort behind every ordering equals a stable argsort of -score: ties (0.0 and -0.0 included) in their
    given order, float32 and full-double scores, scores above 1, runs short and long."""
    from mec_cli.evaluation import kernels

    rng = np.random.default_rng(0)
    for n in [0, 1, 2, 5, 24, 25, 200, 3000]:
        for kind in ["ties", "float32", "double", "wide"]:
            if kind == "ties":
                score = np.round(rng.random(n), 1)
                score[rng.random(n) < 0.2] = 0.0
                score[rng.random(n) < 0.2] = -0.0
            elif kind == "float32":
                score = rng.random(n).astype(np.float32).astype(np.float64)
            elif kind == "double":
                score = rng.random(n)
            else:
                score = rng.random(n) * 10.0 ** rng.integers(-300, 300, n)
            items = rng.permutation(n).astype(np.int64)
            expect = items[np.argsort(-score[items], kind="stable")]
            got = items.copy()
            scratch = [np.empty(max(n, 1), np.uint64), np.empty(max(n, 1), np.uint64), np.empty(max(n, 1), np.int64)]
            kernels._sort_by_score(got, 0, n, score, score.view(np.uint64), *scratch, np.empty((8, 256), np.int64), -1)
            assert np.array_equal(got, expect), (n, kind)


@pytest.mark.parametrize("protocol", ["lvis", "coco"])
def test_ordering_without_packed_image_bits_is_the_same(protocol):
    """order_detections carries each detection's image in its index's high bits; the plain path must agree."""
    from mec_cli.evaluation import kernels

    gt = GroundTruth(_gt_fixture(), protocol)
    dets = Detections.from_records(_random_dets(_gt_fixture(), np.random.default_rng(3), n_per_img=60))
    img, cat = gt.images.lookup(dets.image_id), gt.cats.lookup(dets.category_id)
    cap_kind = kernels.CAP_IMAGE if protocol == "lvis" else kernels.CAP_PAIR
    args = (img, cat, dets.score, len(gt.images), gt.num_cats, cap_kind, 100 if protocol == "coco" else 30,
            protocol == "lvis", gt.img_ptr, gt.img_cat, gt.pair_allowed)
    for a, b in zip(kernels.order_detections(*args, True), kernels.order_detections(*args, False)):
        assert np.array_equal(a, b)


def _reference_summary(res, sets):
    """Every summary number as the reference tools compute it: np.mean(s[s > -1]) of the slice."""
    def mean(s):
        return float(np.mean(s[s > -1])) if (s > -1).any() else -1.0

    p = res.precision
    out = {"AP": mean(p[..., 0]), "AP50": mean(p[[0], :, :, 0]), "AP75": mean(p[[5], :, :, 0]),
           "APs": mean(p[..., 1]), "APm": mean(p[..., 2]), "APl": mean(p[..., 3])}
    profile = {"AP": [mean(p[[t], :, :, 0]) for t in range(p.shape[0])]}
    for name, idx in sets.items():
        out[name] = mean(p[:, :, idx, 0])
        profile[name] = [mean(p[[t]][:, :, idx, 0]) for t in range(p.shape[0])]
    out["AP_per_iou"] = profile
    out["per_category"] = {str(c): mean(p[:, :, k, 0]) for k, c in enumerate(res.cat_ids.tolist())}
    return out


def test_summaries_equal_numpy_means_bit_for_bit():
    """Every metric of summarize, from an evaluation and from a precision array with holes anywhere."""
    from mec_cli.evaluation.engine import EvalResult
    from mec_cli.evaluation.summary import category_sets

    gt = GroundTruth(_gt_fixture(), "lvis")
    res = evaluate(gt, Detections.from_records(_random_dets(_gt_fixture(), np.random.default_rng(5))))
    rng = np.random.default_rng(1)
    p = np.where(rng.random((10, 101, 40, 4)) < 0.3, -1.0, rng.random((10, 101, 40, 4)))
    p[:, :, 7, :] = -1.0  # a category without ground truth anywhere
    p[:, :, :, 2] = -1.0  # an area range without any
    holes = EvalResult(p, np.zeros((10, 40, 4)), np.arange(1, 41), "lvis", "bbox", 0)
    freq = {c: "rcf"[c % 3] for c in range(1, 41)}
    for r, frequency in [(res, gt.frequency), (holes, freq)]:
        sets = category_sets(r.cat_ids, frequency)
        assert summarize(r, frequency) == _reference_summary(r, sets)
        # two groupings at once (LVIS frequency and groups.json), a category in one set of each
        groups = {int(c): int(c) % 4 for c in r.cat_ids}
        names = ["a", "b", "c", "d"]
        sets = category_sets(r.cat_ids, frequency, groups, names)
        assert summarize(r, frequency, groups, names) == _reference_summary(r, sets)
