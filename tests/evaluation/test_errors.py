"""TIDE-style errors per group (mec_cli.evaluation.errors): each error type on a hand-built case where it is the
only error, so its dAP is the only one above zero; the LVIS federated rules; and, on random data, agreement with
the evaluator (AP50, true positives) for every iou type and protocol."""
import copy

import numpy as np
import pytest

from mec_cli.evaluation.engine import Detections, GroundTruth, evaluate
from mec_cli.evaluation.errors import (
    BKG,
    BOTH,
    CLS,
    DUPE,
    ERROR_TYPES,
    IGNORED,
    LOC,
    TP,
    analyse,
    analyse_errors,
    fixed_ap,
)
from mec_cli.evaluation.summary import groupings_of, summarize

# category 1 "a" is frequent, 2 "b" rare, 3 "c" common; boxes are 20 x 20 in a 100 x 100 image
A1, A2, A3, B1 = [0, 0, 20, 20], [30, 0, 20, 20], [60, 0, 20, 20], [0, 60, 20, 20]
FAR = [75, 75, 20, 20]  # IoU 0 with every ground truth


def shifted(box, dx):
    """IoU with ``box``: (20 - dx) / (20 + dx): 0.6 for dx = 5, 0.29 for dx = 11."""
    return [box[0] + dx, box[1], box[2], box[3]]


def ground_truth(boxes, neg=(3,), nel=()):
    anns = [{"id": i + 1, "image_id": 1, "category_id": c, "bbox": b, "area": float(b[2] * b[3])}
            for i, (c, b) in enumerate(boxes)]
    return GroundTruth({"images": [{"id": 1, "height": 100, "width": 100, "neg_category_ids": list(neg),
                                    "not_exhaustive_category_ids": list(nel)}],
                        "categories": [{"id": 1, "name": "a", "frequency": "f"},
                                       {"id": 2, "name": "b", "frequency": "r"},
                                       {"id": 3, "name": "c", "frequency": "c"}],
                        "annotations": anns}, "lvis")


def detections(dets):
    return Detections([1] * len(dets), [c for c, _, _ in dets], [s for _, _, s in dets], [b for _, b, _ in dets])


def analysis(gt, dets):
    res = evaluate(gt, dets, "bbox")
    errors = analyse_errors(gt, dets, res)
    groupings = groupings_of(gt.cat_ids, gt.frequency)
    return res, errors, analyse(gt, dets, res, groupings)["groupings"]["lvis"]


def only_error(summary, kind, section="all"):
    d_ap = summary[section]["dAP"]
    assert d_ap[kind] > 0.05, (kind, d_ap)
    assert all(v == pytest.approx(0, abs=1e-12) for t, v in d_ap.items() if t != kind), (kind, d_ap)
    assert summary[section]["share"][kind] == pytest.approx(1.0)
    others = {t: n for t, n in summary[section]["count"].items() if t != kind}
    assert summary[section]["count"][kind] == 1 and not any(others.values()), summary[section]["count"]


def test_background_error():
    gt = ground_truth([(1, A1), (1, A2)])
    res, errors, summary = analysis(gt, detections([(1, A1, 0.9), (1, FAR, 0.8), (1, A2, 0.7)]))
    assert sorted(errors.kind.tolist()) == [TP, TP, BKG]
    only_error(summary, "bkg")
    only_error(summary, "bkg", "frequent")
    assert summary["all"]["AP50"] + summary["all"]["dAP"]["bkg"] == pytest.approx(1.0)


def test_background_error_in_an_image_without_ground_truth():
    gt = GroundTruth({"images": [{"id": 1, "height": 100, "width": 100, "neg_category_ids": [1],
                                  "not_exhaustive_category_ids": []},
                                 {"id": 2, "height": 100, "width": 100, "neg_category_ids": [],
                                  "not_exhaustive_category_ids": []}],
                      "categories": [{"id": 1, "name": "a", "frequency": "f"}],
                      "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": A1, "area": 400.0},
                                      {"id": 2, "image_id": 2, "category_id": 1, "bbox": A2, "area": 400.0}]}, "lvis")
    dets = Detections([2, 1, 2], [1, 1, 1], [0.9, 0.8, 0.7], [A1, A1, A2])  # image 1: category 1 is negative there
    res = evaluate(gt, dets, "bbox")
    summary = analyse(gt, dets, res, groupings_of(gt.cat_ids, gt.frequency))["groupings"]["lvis"]
    only_error(summary, "bkg")


def test_localisation_error_becomes_a_true_positive():
    gt = ground_truth([(1, A1), (1, A2), (1, A3)])
    res, errors, summary = analysis(gt, detections([(1, A1, 0.9), (1, shifted(A2, 11), 0.8), (1, A3, 0.7)]))
    assert sorted(errors.kind.tolist()) == [TP, TP, LOC] and errors.fix_tp[errors.kind == LOC].all()
    assert not errors.missed.any()  # A2 can be taken by the loc fix: not a missed ground truth
    only_error(summary, "loc")
    assert summary["all"]["AP50"] + summary["all"]["dAP"]["loc"] == pytest.approx(1.0)  # three true positives


def test_classification_error_towards_a_more_frequent_class():
    # a rare object (category 2, B1) detected as the frequent category 1
    gt = ground_truth([(1, A1), (1, A2), (2, B1)])
    res, errors, summary = analysis(gt, detections([(1, A1, 0.9), (1, B1, 0.8), (1, A2, 0.7)]))
    assert sorted(errors.kind.tolist()) == [TP, TP, CLS] and errors.fix_tp[errors.kind == CLS].all()
    only_error(summary, "cls")
    assert summary["all"]["AP50"] + summary["all"]["dAP"]["cls"] == pytest.approx(1.0)  # both categories perfect
    assert summary["rare"]["dAP"]["cls"] == pytest.approx(1.0)  # the rare category goes from AP 0 to 1
    assert summary["rare"]["count"]["cls"] == 0 and summary["frequent"]["count"]["cls"] == 1  # by detected category
    assert summary["rare"]["cls_objects"] == 1 and summary["rare"]["cls_to_more_frequent"] == 1.0
    assert summary["frequent"]["cls_objects"] == 0 and summary["frequent"]["cls_to_more_frequent"] is None
    assert summary["all"]["cls_to_more_frequent"] == 1.0


def test_classification_error_towards_a_rarer_class():
    gt = ground_truth([(2, B1), (2, A2), (1, A1)])
    _, _, summary = analysis(gt, detections([(2, B1, 0.9), (2, A1, 0.8), (2, A2, 0.7)]))
    only_error(summary, "cls")
    assert summary["frequent"]["cls_objects"] == 1 and summary["frequent"]["cls_to_more_frequent"] == 0.0


def test_classification_error_on_a_matched_object_is_suppressed():
    # B1 is already found by its own category: the cls fix cannot take it and removes the wrong detection
    gt = ground_truth([(1, A1), (1, A2), (2, B1)])
    _, errors, summary = analysis(gt, detections([(1, A1, 0.9), (2, B1, 0.85), (1, B1, 0.8), (1, A2, 0.7)]))
    assert (errors.kind == CLS).sum() == 1 and not errors.fix_tp.any()
    only_error(summary, "cls")


def test_both_error():
    # wrong category and poorly placed: IoU 0.29 with a ground truth of another category
    gt = ground_truth([(1, A1), (1, A2), (2, B1)])
    _, errors, summary = analysis(gt, detections([(1, A1, 0.9), (1, shifted(B1, 11), 0.8), (1, A2, 0.7), (2, B1, 0.6)]))
    assert sorted(errors.kind.tolist()) == [TP, TP, TP, BOTH]
    only_error(summary, "both")


def test_duplicate_error():
    gt = ground_truth([(1, A1), (1, A2)])
    _, errors, summary = analysis(gt, detections([(1, A1, 0.9), (1, shifted(A1, 5), 0.8), (1, A2, 0.7)]))
    assert sorted(errors.kind.tolist()) == [TP, TP, DUPE]
    only_error(summary, "dupe")


def test_missed_ground_truth():
    gt = ground_truth([(1, A1), (1, A2), (1, A3)])
    _, errors, summary = analysis(gt, detections([(1, A1, 0.9), (1, A2, 0.8)]))
    assert (errors.kind == TP).all() and errors.missed.sum() == 1
    assert summary["all"]["count"]["miss"] == 1
    d_ap = summary["all"]["dAP"]
    assert d_ap["miss"] == pytest.approx(1 / 3, abs=0.01) and not any(v for t, v in d_ap.items() if t != "miss")
    assert summary["all"]["AP50"] + d_ap["miss"] == pytest.approx(1.0)


def test_federated_rules_decide_what_is_analysed():
    # category 3 is neither annotated nor negative in the image: its detections never count (lvis-api drops them);
    # category 2 is not exhaustively annotated: its unmatched detection is ignored, not an error
    gt = ground_truth([(1, A1), (1, A2), (2, B1)], neg=(), nel=(2,))
    dets = detections([(1, A1, 0.9), (3, FAR, 0.85), (2, FAR, 0.8), (1, A2, 0.7), (2, B1, 0.6)])
    res, errors, summary = analysis(gt, dets)
    assert len(res.order) == 4 and 1 not in res.order.tolist()
    assert sorted(errors.kind.tolist()) == [IGNORED, TP, TP, TP]
    for t in ERROR_TYPES:
        assert summary["all"]["count"][t] == 0 and summary["all"]["dAP"][t] == pytest.approx(0, abs=1e-12)
    assert summary["all"]["AP50"] == pytest.approx(1.0)
    assert all(v is None for v in summary["all"]["share"].values())  # no AP gap to share


def _random_case(protocol, iou_type):
    from tests.evaluation.test_boundary import make_dataset

    data, records = make_dataset(11, protocol == "lvis", num_images=30)
    gt = GroundTruth(copy.deepcopy(data), protocol)
    dets = Detections.from_records(copy.deepcopy(records), image_size=gt.image_size)
    return gt, dets, evaluate(gt, dets, iou_type)


@pytest.mark.parametrize("protocol,iou_type", [("lvis", "bbox"), ("lvis", "segm"), ("coco", "segm"),
                                               ("lvis", "boundary"), ("coco", "boundary")])
def test_random_data_agrees_with_the_evaluator(protocol, iou_type):
    gt, dets, res = _random_case(protocol, iou_type)
    errors = analyse_errors(gt, dets, res)  # raises if a replayed true positive differs from the evaluator's
    summary = summarize(res, gt.frequency)
    base = fixed_ap(errors, None)
    assert np.nanmean(base) == pytest.approx(summary["AP50"], abs=1e-12)
    fp = (errors.kind > 0)
    assert fp.sum() > 20 and (errors.kind == TP).sum() > 5
    out = analyse(gt, dets, res, groupings_of(gt.cat_ids, gt.frequency))
    section = out["groupings"]["lvis"]["all"]
    assert sum(section["count"][t] for t in ERROR_TYPES if t != "miss") == fp.sum()
    assert section["AP50"] == pytest.approx(summary["AP50"], abs=1e-12)
    for name, sec in out["groupings"]["lvis"].items():
        assert all(v >= -1e-12 for v in sec["dAP"].values() if v is not None), (name, sec["dAP"])
        if any(sec["share"].values()):
            assert sum(sec["share"].values()) == pytest.approx(1.0)
    assert section["count"]["miss"] > 0 and section["count"]["loc"] + section["count"]["both"] > 0
