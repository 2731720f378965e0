"""oLRP (mec_cli.evaluation.lrp) against its authors' code, on pycocotools' and lvis-api's own matching.

The oracle: the oLRP lines of kemaloksuz/LRP-Error (commit ec408f3c8a3bc3408e0fdc84469e0101245f3bfb),
``pycocotools/pycocotools/cocoeval.py`` (``COCOeval.accumulate``) and ``lvis-api/lvis/eval.py``
(``LVISEval.accumulate``), ported literally below (``np.float`` written ``float``), run on the per-image results of
the reference evaluators installed here. The fork's ``evaluateImg`` also records each match's IoU (``dtIoUs``);
the official tools do not, so it is read back from their IoU matrices (``_match_ious``). Every category's oLRP,
components and optimal threshold must be equal, and so must the means (the fork's ``_summarize``).
"""
import copy
import json

import numpy as np
import pytest
from lvis import LVIS, LVISEval, LVISResults
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mec_cli.compat import patch_lvis_numpy
from mec_cli.evaluation.engine import Detections, GroundTruth, evaluate
from mec_cli.evaluation.errors import analyse_errors
from mec_cli.evaluation.lrp import category_olrp, lrp_summary
from mec_cli.evaluation.summary import groupings_of
from tests.evaluation.test_boundary import make_dataset
from tests.evaluation.test_engine_exact import _gt_fixture, _random_dets

patch_lvis_numpy()


def _match_ious(e, gts, ious, matches_key):
    """IoU of each detection's match at each threshold ((T, D), 0 where unmatched): what the fork's evaluateImg
    stores as ``dtIoUs``, read from the reference's IoU matrix (rows: the pair's detections by score, columns: its
    ground truths in file order)."""
    dtm = e[matches_key]
    col = {g["id"]: j for j, g in enumerate(gts)}
    out = np.zeros(dtm.shape)
    for t, d in zip(*np.nonzero(dtm)):
        out[t, d] = ious[d, col[int(dtm[t, d])]]
    return out


def _lrp_lines(tps, fps, dtIoU, npig, dtScoresSorted, iou_thr0):
    """LRP-Error's oLRP lines, verbatim but for the names of the stored outputs (returned instead)."""
    dtIoU = np.multiply(dtIoU, tps)
    # Compute TP number on each detection
    tp_num = np.cumsum(tps[0, :])
    # Compute FP number on each detection
    fp_num = np.cumsum(fps[0, :])
    # Compute FN number on each detection
    fn_num = npig - tp_num
    # There is detection
    if tp_num.shape[0] > 0:
        # There is TP
        if tp_num[-1] > 0:
            # Compute total localisation error
            total_loc = tp_num - np.cumsum(dtIoU[0, :])
            # Compute LRP Error on each detection
            lrps = (total_loc / (1 - iou_thr0) + fp_num + fn_num) / (tp_num + fp_num + fn_num)
            # Find index of oLRP
            opt_pos_idx = np.argmin(lrps)
            # Assign oLRP and components
            olrp = lrps[opt_pos_idx]
            olrp_loc = total_loc[opt_pos_idx] / tp_num[opt_pos_idx]
            olrp_fp = fp_num[opt_pos_idx] / (tp_num[opt_pos_idx] + fp_num[opt_pos_idx])
            olrp_fn = fn_num[opt_pos_idx] / npig
            # Find LRP-optimal threshold
            lrp_opt_thr = dtScoresSorted[opt_pos_idx]
        # There is No TP. Assign errors appropriately.
        else:
            olrp_loc, olrp_fp, olrp_fn, olrp, lrp_opt_thr = np.nan, np.nan, 1., 1., np.nan
    # No detection. Assign errors appropriately.
    else:
        olrp_loc, olrp_fp, olrp_fn, olrp, lrp_opt_thr = np.nan, np.nan, 1., 1., np.nan
    return [olrp, olrp_loc, olrp_fp, olrp_fn, lrp_opt_thr]


def reference_coco(ev):
    """(K, 5) from pycocotools' evalImgs at area 'all' and maxDets 100 (the fork's COCOeval.accumulate)."""
    p = ev.params
    K, I0, A0, maxDet = len(p.catIds), len(p.imgIds), len(p.areaRng), p.maxDets[-1]
    out = -np.ones((K, 5))
    for k in range(K):
        Nk = k * A0 * I0
        E = [ev.evalImgs[Nk + i] for i in range(I0)]
        E = [e for e in E if e is not None]
        if len(E) == 0:
            continue
        dtScores = np.concatenate([e['dtScores'][0:maxDet] for e in E])
        inds = np.argsort(-dtScores, kind='mergesort')
        dtScoresSorted = dtScores[inds]
        dtm = np.concatenate([e['dtMatches'][:, 0:maxDet] for e in E], axis=1)[:, inds]
        dtIg = np.concatenate([e['dtIgnore'][:, 0:maxDet] for e in E], axis=1)[:, inds]
        dtIoU = np.concatenate([_match_ious(e, ev._gts[e['image_id'], e['category_id']],
                                            ev.ious[e['image_id'], e['category_id']], 'dtMatches')[:, 0:maxDet]
                                for e in E], axis=1)[:, inds]
        gtIg = np.concatenate([e['gtIgnore'] for e in E])
        npig = np.count_nonzero(gtIg == 0)
        if npig == 0:
            continue
        tps = np.logical_and(dtm, np.logical_not(dtIg))
        fps = np.logical_and(np.logical_not(dtm), np.logical_not(dtIg))
        out[k] = _lrp_lines(tps, fps, dtIoU, npig, dtScoresSorted, p.iouThrs[0])
    return out


def reference_lvis(ev):
    """(K, 5) from lvis-api's eval_imgs at area 'all' (the fork's LVISEval.accumulate)."""
    p = ev.params
    num_cats, num_imgs, num_area_rngs = len(p.cat_ids), len(p.img_ids), len(p.area_rng)
    out = -np.ones((num_cats, 5))
    for cat_idx in range(num_cats):
        Nk = cat_idx * num_area_rngs * num_imgs
        E = [ev.eval_imgs[Nk + img_idx] for img_idx in range(num_imgs)]
        E = [e for e in E if e is not None]
        if len(E) == 0:
            continue
        dt_scores = np.concatenate([e["dt_scores"] for e in E], axis=0)
        dt_idx = np.argsort(-dt_scores, kind="mergesort")
        dt_scores = dt_scores[dt_idx]
        dt_m = np.concatenate([e["dt_matches"] for e in E], axis=1)[:, dt_idx]
        dt_ig = np.concatenate([e["dt_ignore"] for e in E], axis=1)[:, dt_idx]
        dt_iou = np.concatenate([_match_ious(e, ev._gts[e["image_id"], e["category_id"]],
                                             ev.ious[e["image_id"], e["category_id"]], "dt_matches")
                                 for e in E], axis=1)[:, dt_idx]
        gt_ig = np.concatenate([e["gt_ignore"] for e in E])
        num_gt = np.count_nonzero(gt_ig == 0)
        if num_gt == 0:
            continue
        tps = np.logical_and(dt_m, np.logical_not(dt_ig))
        fps = np.logical_and(np.logical_not(dt_m), np.logical_not(dt_ig))
        out[cat_idx] = _lrp_lines(tps, fps, dt_iou, num_gt, dt_scores, p.iou_thrs[0])
    return out


def reference_mean(values):
    """The fork's _summarize of one oLRP array (NaN dropped, then the values > -1)."""
    s = values[~np.isnan(values)]
    return -1 if len(s[s > -1]) == 0 else np.mean(s[s > -1])


def ours(data, records, protocol, iou_type):
    gt = GroundTruth(copy.deepcopy(data), protocol)
    dets = Detections.from_records(copy.deepcopy(records), image_size=gt.image_size)
    res = evaluate(gt, dets, iou_type)
    return gt, category_olrp(analyse_errors(gt, dets, res), gt.gt_npig[:, 0])


def _coco_case(seed, masks, segm):
    if masks:
        return make_dataset(seed, lvis=False, num_images=30)
    gt = _gt_fixture()
    for im in gt["images"]:
        im.pop("neg_category_ids")
        im.pop("not_exhaustive_category_ids")
    gt["annotations"].append({"id": 99, "image_id": 3, "category_id": 3, "bbox": [120, 10, 60, 60], "area": 3600.0,
                              "iscrowd": 1, "segmentation": [[120, 10, 180, 10, 180, 70, 120, 70]]})
    for a in gt["annotations"]:
        a.setdefault("iscrowd", 0)
    return gt, _random_dets(gt, np.random.default_rng(seed), n_per_img=150, segm=segm)


def _assert_same(mine, ref):
    assert mine.shape == ref.shape
    for k in range(len(ref)):
        for c in range(5):
            a, b = mine[k, c], ref[k, c]
            assert (np.isnan(a) and np.isnan(b)) or a == b, (k, c, a, b)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("masks", [False, True])
def test_coco_protocol_equals_the_authors_code(iou_type, masks, tmp_path):
    data, records = _coco_case(4, masks, iou_type == "segm")
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    coco = COCO(str(path))
    with np.errstate(invalid="ignore", divide="ignore"):
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(records)), iou_type)
        ev.evaluate()
        ref = reference_coco(ev)
    gt, mine = ours(data, records, "coco", iou_type)
    assert (ref[:, 0] > -1).sum() >= 3 and ((ref[:, 0] > -1) & (ref[:, 0] < 1)).any()  # measured, not trivial
    _assert_same(mine, ref)
    summary = lrp_summary(mine, gt.cat_ids.tolist(), {})
    for c, name in enumerate(("oLRP", "loc", "fp", "fn")):
        assert summary["overall"][name] == reference_mean(ref[:, c]), name


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("seed", [0, 3])
def test_lvis_protocol_equals_the_authors_lvis_api(iou_type, seed, tmp_path):
    data, records = make_dataset(seed, lvis=True, num_images=40, num_cats=9)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    lvis_gt = LVIS(str(path))
    with np.errstate(invalid="ignore", divide="ignore"):
        ev = LVISEval(lvis_gt, LVISResults(lvis_gt, copy.deepcopy(records)), iou_type)
        ev.evaluate()
        ref = reference_lvis(ev)
    gt, mine = ours(data, records, "lvis", iou_type)
    assert ((ref[:, 0] > -1) & (ref[:, 0] < 1)).sum() >= 3 and np.isnan(ref[:, 1]).sum() < len(ref)
    _assert_same(mine, ref)
    groupings = groupings_of(gt.cat_ids, gt.frequency)
    summary = lrp_summary(mine, gt.cat_ids.tolist(), groupings)
    freq_groups = ev._prepare_freq_group()
    for g, name in enumerate(("rare", "common", "frequent")):  # the fork's oLRPr, oLRPc, oLRPf
        expected = reference_mean(ref[freq_groups[g], 0])
        assert summary["groupings"]["lvis"][name]["oLRP"] == (None if expected == -1 else expected), name
    assert summary["groupings"]["lvis"]["all"]["oLRP"] == reference_mean(ref[:, 0])


# --- hand-derived values ---------------------------------------------------------------------------------------

def _one_image(anns, dets, neg=()):
    gt = GroundTruth({"images": [{"id": 1, "height": 100, "width": 100, "neg_category_ids": list(neg),
                                  "not_exhaustive_category_ids": []}],
                      "categories": [{"id": 1, "name": "a", "frequency": "f"}, {"id": 2, "name": "b",
                                                                                "frequency": "r"}],
                      "annotations": [{"id": i + 1, "image_id": 1, "category_id": c, "bbox": b, "area": 400.0}
                                      for i, (c, b) in enumerate(anns)]}, "lvis")
    d = Detections([1] * len(dets), [c for c, _, _ in dets], [s for _, _, s in dets], [b for _, b, _ in dets])
    res = evaluate(gt, d, "bbox")
    return category_olrp(analyse_errors(gt, d, res), gt.gt_npig[:, 0])


def test_hand_derived_optimum():
    # two objects of category 1: a perfect detection (0.9), a false positive (0.8), a detection at IoU 0.6 (0.7).
    # LRP at each rank: (0/0.5 + 0 + 1)/2 = 0.5; (0 + 1 + 1)/3 = 0.667; (0.4/0.5 + 1 + 0)/3 = 0.6 -> optimum rank 1
    out = _one_image([(1, [0, 0, 20, 20]), (1, [40, 0, 20, 20])],
                     [(1, [0, 0, 20, 20], 0.9), (1, [70, 70, 20, 20], 0.8), (1, [45, 0, 20, 20], 0.7)])
    olrp, loc, fp, fn, thr = out[0]
    assert (olrp, loc, fp, fn, thr) == (0.5, 0.0, 0.0, 0.5, 0.9)
    # the same with the false positive last: rank 3 is (0.4/0.5 + 0 + 0)/2 = 0.4, the optimum
    out = _one_image([(1, [0, 0, 20, 20]), (1, [40, 0, 20, 20])],
                     [(1, [0, 0, 20, 20], 0.9), (1, [45, 0, 20, 20], 0.8), (1, [70, 70, 20, 20], 0.7)])
    olrp, loc, fp, fn, thr = out[0]
    assert olrp == pytest.approx(0.4) and loc == pytest.approx(0.2) and (fp, fn, thr) == (0.0, 0.0, 0.8)


def test_nothing_found_is_one_and_no_ground_truth_is_no_value():
    # category 2 (negative in the image, no ground truth): no oLRP; category 1: only a false positive -> 1
    out = _one_image([(1, [0, 0, 20, 20])], [(1, [70, 70, 20, 20], 0.9), (2, [0, 0, 20, 20], 0.8)], neg=(2,))
    assert out[0, 0] == 1.0 and out[0, 3] == 1.0 and np.isnan(out[0, 1]) and np.isnan(out[0, 2])
    assert (out[1] == -1).all()
    summary = lrp_summary(out, [1, 2], {"lvis": {"rare": [1], "frequent": [0]}})
    assert summary["groupings"]["lvis"]["rare"] == {"oLRP": None, "loc": None, "fp": None, "fn": None,
                                                    "categories": 0}
    assert summary["overall"] == {"oLRP": 1.0, "loc": None, "fp": None, "fn": 1.0, "categories": 1}
    assert summary["per_category"] == {"1": {"oLRP": 1.0, "loc": None, "fp": None, "fn": 1.0, "threshold": None}}
