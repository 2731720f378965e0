"""Object labels and the confusion matrix per group (mec_cli.evaluation.confusion) on hand-built cases: the top
label wins over a lower-scoring true positive, a true positive of another object is not a label, the LVIS
federated rules decide which detections can be labels; and on random data every row adds up to its objects."""
import copy

import numpy as np

from mec_cli.evaluation.confusion import confusion_summary
from mec_cli.evaluation.engine import Detections, GroundTruth, evaluate
from mec_cli.evaluation.errors import analyse_errors
from mec_cli.evaluation.summary import groupings_of

# category 1 "a" is frequent, 2 "b" rare, 3 "c" common; boxes are 20 x 20 in a 100 x 100 image
A1, A2, B1, FAR = [0, 0, 20, 20], [30, 0, 20, 20], [0, 60, 20, 20], [75, 75, 20, 20]


def ground_truth(boxes, neg=(), nel=()):
    anns = [{"id": i + 1, "image_id": 1, "category_id": c, "bbox": b, "area": float(b[2] * b[3])}
            for i, (c, b) in enumerate(boxes)]
    return GroundTruth({"images": [{"id": 1, "height": 100, "width": 100, "neg_category_ids": list(neg),
                                    "not_exhaustive_category_ids": list(nel)}],
                        "categories": [{"id": 1, "name": "a", "frequency": "f"},
                                       {"id": 2, "name": "b", "frequency": "r"},
                                       {"id": 3, "name": "c", "frequency": "c"}],
                        "annotations": anns}, "lvis")


def labels(gt, dets):
    d = Detections([1] * len(dets), [c for c, _, _ in dets], [s for _, _, s in dets], [b for _, b, _ in dets])
    errors = analyse_errors(gt, d, evaluate(gt, d, "bbox"))
    summary = confusion_summary(errors, gt.cat_ids.tolist(), groupings_of(gt.cat_ids, gt.frequency),
                                {1: "a", 2: "b", 3: "c"})
    return [int(gt.cat_ids[x]) if x >= 0 else None for x in errors.gt_label[np.argsort(gt.gt_file)]], summary


def test_a_rare_object_taken_for_a_frequent_class():
    # the rare object B1 is found by its own category at 0.5, but the detector's top answer there is "a" (0.9)
    gt = ground_truth([(1, A1), (2, B1)])
    got, summary = labels(gt, [(1, B1, 0.9), (2, B1, 0.5), (1, A1, 0.8)])
    assert got == [1, 1]
    rows = summary["groupings"]["lvis"]
    assert rows["rare"] == {"objects": 1, "correct": 0, "as": {"rare": 0, "common": 0, "frequent": 1}, "none": 0}
    assert rows["frequent"] == {"objects": 1, "correct": 1, "as": {"rare": 0, "common": 0, "frequent": 0}, "none": 0}
    assert rows["all"]["objects"] == 2 and rows["all"]["correct"] == 1
    assert summary["pairs"] == [{"gt": 2, "label": 1, "objects": 1, "gt_objects": 1, "gt_name": "b",
                                 "label_name": "a", "lvis": ["rare", "frequent"]}]


def test_own_class_on_top_is_correct_and_nothing_is_none():
    gt = ground_truth([(1, A1), (1, A2), (2, B1)])
    # A1: its own class on top (the wrong class scores lower); A2: a duplicate of its own class is still its label;
    # B1: only a detection at IoU 0.29 (below 0.5): no label
    got, summary = labels(gt, [(1, A1, 0.9), (2, A1, 0.6), (1, A2, 0.8), (1, [32, 0, 20, 20], 0.85),
                               (2, [11, 60, 20, 20], 0.7)])
    assert got == [1, 1, None]
    assert summary["groupings"]["lvis"]["rare"]["none"] == 1 and summary["pairs"] == []


def test_a_true_positive_of_another_object_is_not_its_label():
    # A1 and a common object C overlap at IoU 0.6: the detection of "a" on A1 is A1's true positive, so C's label is
    # its own lower-scoring detection
    c_box = [5, 0, 20, 20]
    gt = ground_truth([(1, A1), (3, c_box)], neg=(2,))
    got, _ = labels(gt, [(1, A1, 0.9), (3, c_box, 0.3)])
    assert got == [1, 3]
    # ... but a false positive of "a" on C (A1 already taken by a higher score) is C's label
    got, summary = labels(gt, [(1, A1, 0.9), (1, c_box, 0.8), (3, c_box, 0.3)])
    assert got == [1, 1]
    assert summary["groupings"]["lvis"]["common"]["as"]["frequent"] == 1


def test_federated_rules_decide_which_detections_can_be_labels():
    # category 3 is neither annotated nor negative in the image: its detection on A1 never counts (lvis-api drops
    # it), so A1's label is its own class; category 2 is not exhaustively annotated: its unmatched detection on A1
    # is ignored, not a label
    gt = ground_truth([(1, A1), (2, B1)], nel=(2,))
    got, summary = labels(gt, [(3, A1, 0.99), (2, A1, 0.95), (1, A1, 0.4), (2, B1, 0.3)])
    assert got == [1, 2]
    assert summary["groupings"]["lvis"]["all"]["correct"] == 2
    # once category 3 is verified absent (negative), its detection on A1 is a verified mistake
    gt = ground_truth([(1, A1), (2, B1)], neg=(3,), nel=(2,))
    got, _ = labels(gt, [(3, A1, 0.99), (2, A1, 0.95), (1, A1, 0.4), (2, B1, 0.3)])
    assert got == [3, 2]


def test_random_data_rows_add_up_and_pairs_match_the_labels():
    from tests.evaluation.test_boundary import make_dataset

    data, records = make_dataset(5, True, num_images=40, num_cats=9)
    gt = GroundTruth(copy.deepcopy(data), "lvis")
    dets = Detections.from_records(copy.deepcopy(records), image_size=gt.image_size)
    for iou_type in ("bbox", "segm"):
        errors = analyse_errors(gt, dets, evaluate(gt, dets, iou_type))
        groupings = groupings_of(gt.cat_ids, gt.frequency)
        summary = confusion_summary(errors, gt.cat_ids.tolist(), groupings)
        rows = summary["groupings"]["lvis"]
        for name, row in rows.items():
            assert row["correct"] + sum(row["as"].values()) + row["none"] == row["objects"], name
        assert sum(rows[g]["objects"] for g in ("rare", "common", "frequent")) == rows["all"]["objects"]
        assert rows["all"]["objects"] == int(errors.regular.sum())
        wrong = sum(rows["all"]["as"].values())
        assert wrong > 3 and rows["all"]["correct"] > 10 and rows["all"]["none"] > 0
        assert sum(p["objects"] for p in summary["pairs"]) == wrong  # fewer than 30 pairs here: all of them
        # a label is always a category verified in the object's image (annotated or negative)
        img = gt.gt_img
        has = errors.gt_label >= 0
        for g in np.flatnonzero(has):
            row = np.searchsorted(gt.img_cat[gt.img_ptr[img[g]]:gt.img_ptr[img[g] + 1]], errors.gt_label[g])
            assert gt.pair_allowed[gt.img_ptr[img[g]] + row]
