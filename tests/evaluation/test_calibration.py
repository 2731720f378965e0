"""Calibration per group: the reliability diagram and ECE on hand-computed cases and under the evaluator's rules."""
import numpy as np
import pytest

from mec_cli.evaluation.calibration import calibration_summary, reliability
from mec_cli.evaluation.engine import Detections, GroundTruth, evaluate
from mec_cli.evaluation.summary import groupings_of


def test_reliability_by_hand():
    score = np.array([0.05, 0.15, 0.95, 0.91, 1.0, 0.55, 1.3, -0.2])
    tp = np.array([False, False, True, False, True, True, True, False])
    r = reliability(score, tp, bins=10)
    # bins: 0 <- 0.05 and -0.2 (below 0: the first bin), 1 <- 0.15, 5 <- 0.55,
    # 9 <- 0.95, 0.91, 1.0 and 1.3 (above 1: the last bin)
    assert r["count"] == [2, 1, 0, 0, 0, 1, 0, 0, 0, 4] and r["detections"] == 8
    assert r["score"][0] == pytest.approx((0.05 - 0.2) / 2) and r["score"][2] is None
    assert r["precision"][9] == pytest.approx(0.75) and r["precision"][0] == 0.0 and r["precision"][5] == 1.0
    s9 = (0.95 + 0.91 + 1.0 + 1.3) / 4
    want = (2 * abs(0 - (-0.075)) + 1 * abs(0 - 0.15) + 1 * abs(1 - 0.55) + 4 * abs(0.75 - s9)) / 8
    assert r["ece"] == pytest.approx(want)


def test_perfect_calibration_has_zero_ece_and_empty_input_none():
    rng = np.random.default_rng(0)
    score = np.repeat([0.05, 0.25, 0.45, 0.65, 0.85], 20)
    tp = np.concatenate([rng.permutation(np.arange(20) < round(20 * s)) for s in (0.05, 0.25, 0.45, 0.65, 0.85)])
    assert reliability(score, tp, 10)["ece"] == pytest.approx(0, abs=1e-12)
    empty = reliability(np.zeros(0), np.zeros(0, bool), 4)
    assert empty["ece"] is None and empty["count"] == [0, 0, 0, 0] and empty["score"] == [None] * 4


def test_calibration_follows_the_evaluator():
    """Only the detections that count and are not ignored at IoU 0.5 enter, each in its category's group."""
    gt = GroundTruth({"images": [{"id": 1, "height": 100, "width": 100, "neg_category_ids": [2],
                                  "not_exhaustive_category_ids": [3]}],
                      "categories": [{"id": c, "name": n, "frequency": f} for c, n, f in
                                     ((1, "a", "f"), (2, "b", "r"), (3, "c", "c"), (4, "d", "r"))],
                      "annotations": [{"id": i, "image_id": 1, "category_id": c, "bbox": b, "area": 400.0}
                                      for i, c, b in ((1, 1, [0, 0, 20, 20]), (2, 3, [50, 50, 20, 20]))]},
                     "lvis")
    dets = Detections([1] * 5, [1, 1, 2, 3, 4], [0.92, 0.81, 0.33, 0.6, 0.7],
                      [[0, 0, 20, 20], [0, 0, 20, 20], [0, 0, 10, 10], [0, 0, 5, 5], [0, 0, 20, 20]])
    # 1: true positive; 2: duplicate (false positive); 3: negative category, false positive; 4: unmatched in a
    # not-exhaustive category, ignored; 5: category 4 neither annotated nor negative, never counted
    res = evaluate(gt, dets, "bbox")
    groupings = groupings_of(gt.cat_ids, gt.frequency)
    cal = calibration_summary(res, gt.cats.lookup(dets.category_id), dets.score, groupings, 10)
    lvis = cal["groupings"]["lvis"]
    assert cal["bins"] == 10 and cal["iou"] == 0.5
    assert lvis["all"]["detections"] == 3 and lvis["frequent"]["detections"] == 2 and lvis["rare"]["detections"] == 1
    assert lvis["common"]["detections"] == 0 and lvis["common"]["ece"] is None
    assert lvis["frequent"]["count"][9] == 1 and lvis["frequent"]["precision"][9] == 1.0
    assert lvis["frequent"]["count"][8] == 1 and lvis["frequent"]["precision"][8] == 0.0
    assert lvis["frequent"]["ece"] == pytest.approx((abs(1 - 0.92) + abs(0 - 0.81)) / 2)
    assert lvis["rare"]["ece"] == pytest.approx(0.33)
