"""The paired bootstrap (mec_cli.evaluation.bootstrap): the AP of a resampled multiset of images computed from the
per-image records equals the evaluator run on that multiset written out as images (ties included, LVIS and COCO,
boxes and masks); the records survive the metrics JSON; the interval behaves as it must on constructed pairs."""
import copy

import numpy as np
import pycocotools.mask as mask_utils
import pytest

from mec_cli.errors import MecError
from mec_cli.evaluation.bootstrap import ImageMatches, image_matches, paired_bootstrap, set_aps
from mec_cli.evaluation.engine import Detections, GroundTruth, evaluate
from mec_cli.evaluation.summary import category_sets, summarize
from tests.evaluation.test_boundary import make_dataset


def _evaluated(data, records, protocol, iou_type):
    gt = GroundTruth(copy.deepcopy(data), protocol)
    dets = Detections.from_records(copy.deepcopy(records), image_size=gt.image_size)
    res = evaluate(gt, dets, iou_type)
    sets = category_sets(gt.cat_ids, gt.frequency)
    return gt, res, summarize(res, gt.frequency), image_matches(gt, dets, res, sets)


def _multiset(data, records, weights, image_ids):
    """The annotation file and results of the image multiset: image i (sorted ids) written w_i times, copy c of it
    with id i * 1000 + c + 1, so the copies keep the original images' order."""
    new = {int(old): [] for old in image_ids}
    for i, (old, w) in enumerate(zip(image_ids, weights)):
        new[int(old)] = [i * 1000 + c + 1 for c in range(w)]
    images = [{**im, "id": nid} for im in data["images"] for nid in new[im["id"]]]
    anns, aid = [], 1
    for a in data["annotations"]:
        for nid in new[a["image_id"]]:
            anns.append({**a, "id": aid, "image_id": nid})
            aid += 1
    dets = [{**d, "image_id": nid} for d in records for nid in new[d["image_id"]]]
    return {**data, "images": images, "annotations": anns}, dets


@pytest.mark.parametrize("protocol,iou_type", [("lvis", "bbox"), ("lvis", "segm"), ("coco", "bbox")])
def test_resampled_ap_equals_the_evaluator_on_the_multiset(protocol, iou_type):
    data, records = make_dataset(2, protocol == "lvis", num_images=30, num_cats=7)
    gt, res, summary, matches = _evaluated(data, records, protocol, iou_type)
    names = [n for n in ("AP", "APr", "APc", "APf") if n in matches.sets]
    # every image once: the evaluation itself
    ones = np.ones((1, len(gt.img_ids)), np.int32)
    assert set_aps(matches, ones, names)[0] == pytest.approx([summary[n] for n in names], abs=1e-14)
    rng = np.random.default_rng(0)
    for _ in range(4):
        weights = np.bincount(rng.integers(0, len(gt.img_ids), len(gt.img_ids)), minlength=len(gt.img_ids))
        mdata, mrecords = _multiset(data, records, weights, gt.img_ids)
        *_, expected, _ = _evaluated(mdata, mrecords, protocol, iou_type)
        got = set_aps(matches, weights[None].astype(np.int32), names)[0]
        for n, v in zip(names, got):
            if expected[n] == -1:  # no category of the set keeps a ground truth
                assert np.isnan(v), n
            else:
                assert v == pytest.approx(expected[n], abs=1e-13), n
    assert (weights == 0).any() and (weights > 1).any()


def test_records_are_smaller_than_the_detections_and_survive_json():
    data, records = make_dataset(3, True, num_images=30, num_cats=7)
    gt, res, summary, matches = _evaluated(data, records, "lvis", "segm")
    assert 0 < len(matches.image) < len(res.order)  # the tails after each category's last true positive are gone
    back = ImageMatches.from_json(matches.to_json())
    for field in ("cat_ids", "cat_ptr", "image", "tp", "ig", "tie", "gt_image", "gt_cat", "gt_count"):
        assert np.array_equal(getattr(back, field), getattr(matches, field)), field
    assert back.sets == matches.sets and back.digest == matches.digest
    broken = matches.to_json()
    broken["detections"] += 1
    with pytest.raises(MecError, match="per_image.image holds"):
        ImageMatches.from_json(broken)
    broken = matches.to_json()
    broken["tp"] = "not base64!"
    with pytest.raises(MecError, match="per_image.tp is not valid per-image data"):
        ImageMatches.from_json(broken)


def _pair(seed=4, better=False):
    """Two runs on one dataset (boxes): b rescored with noise, and with ``better`` also every object found."""
    data, records = make_dataset(seed, True, num_images=40, num_cats=7)
    records = [{**d, "bbox": mask_utils.toBbox(d["segmentation"]).tolist()} for d in records]
    rng = np.random.default_rng(seed)
    other = copy.deepcopy(records)
    for d in other:
        d["score"] = round(float(np.clip(d["score"] + rng.normal(0, 0.2), 0, 1)), 2)
    if better:  # every object found by its own class, on top
        other += [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
                  for a in data["annotations"]]
    return _evaluated(data, records, "lvis", "bbox"), _evaluated(data, other, "lvis", "bbox")


def test_a_run_against_itself_is_within_noise():
    (_, _, summary, m), _ = _pair()
    out = paired_bootstrap(m, m, resamples=50, seed=1)
    ap = out["metrics"]["AP"]
    assert ap["a"] == ap["b"] == pytest.approx(summary["AP"], abs=1e-14)
    assert ap["delta"] == ap["low"] == ap["high"] == 0.0 and ap["p_not_better"] == 1.0 and ap["valid"] == 50
    assert "within noise" in ap["verdict"]


def test_a_clearly_better_run_is_outside_noise_and_the_seed_fixes_the_interval():
    (_, _, sa, ma), (_, _, sb, mb) = _pair(better=True)
    out = paired_bootstrap(ma, mb, resamples=200, seed=7)
    ap = out["metrics"]["AP"]
    assert ap["delta"] == pytest.approx(sb["AP"] - sa["AP"], abs=1e-14) and ap["delta"] > 0.1
    assert 0 < ap["low"] <= ap["delta"] <= ap["high"] and ap["p_not_better"] == 0.0
    assert "a real gain" in ap["verdict"]
    for name in ("APr", "APc", "APf"):
        assert out["metrics"][name]["delta"] == pytest.approx(sb[name] - sa[name], abs=1e-14)
    assert paired_bootstrap(ma, mb, resamples=200, seed=7) == out
    assert paired_bootstrap(ma, mb, resamples=200, seed=8)["metrics"]["AP"]["low"] != ap["low"]


def test_a_small_noisy_difference_has_an_interval_around_it():
    (_, _, sa, ma), (_, _, sb, mb) = _pair(seed=5)
    out = paired_bootstrap(ma, mb, resamples=300, seed=0)
    ap = out["metrics"]["AP"]
    assert ap["low"] < ap["delta"] < ap["high"] and ap["high"] - ap["low"] > 0.005
    ones = np.ones((1, ma.num_images), np.int32)
    assert set_aps(mb, ones, ["AP"])[0, 0] - set_aps(ma, ones, ["AP"])[0, 0] == pytest.approx(ap["delta"], abs=1e-15)


def test_runs_on_other_annotations_are_refused():
    (_, _, _, ma), _ = _pair(seed=4)
    (_, _, _, mc), _ = _pair(seed=6)
    with pytest.raises(MecError, match="not evaluated on the same annotations"):
        paired_bootstrap(ma, mc, resamples=10)


def test_a_tie_block_cut_by_the_last_true_positive_is_kept_whole():
    # one image, one object: a true positive and a false positive of the same score, the false positive after it
    # in file order. Two copies of the image rank them d1 d2 d1 d2: precision 2/3 at full recall, not 1.
    data = {"images": [{"id": 1, "height": 100, "width": 100, "neg_category_ids": [],
                        "not_exhaustive_category_ids": []},
                       {"id": 2, "height": 100, "width": 100, "neg_category_ids": [1],
                        "not_exhaustive_category_ids": []}],
            "categories": [{"id": 1, "name": "a", "frequency": "f"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "area": 400.0}]}
    records = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "score": 0.5},
               {"image_id": 1, "category_id": 1, "bbox": [60, 60, 20, 20], "score": 0.5}]
    gt, res, summary, matches = _evaluated(data, records, "lvis", "bbox")
    for weights in ([2, 0], [3, 1], [1, 2]):
        mdata, mrecords = _multiset(data, records, weights, gt.img_ids)
        *_, expected, _ = _evaluated(mdata, mrecords, "lvis", "bbox")
        got = set_aps(matches, np.asarray([weights], np.int32), ["AP"])[0, 0]
        assert got == pytest.approx(expected["AP"], abs=1e-14), weights
    assert expected["AP"] < 1
