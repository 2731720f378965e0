"""Results files of many masks without boxes, as the COCO API's own demo file is (issue 19): over 255 and over 65,535
masks, with string counts, list counts and polygons, for segm and Boundary AP, against the reference tools.

pycocotools' ``mask.area`` of a list of 256 or more RLEs overflows on NumPy 2, and counts held in 16 bits would
wrap past 65,535; the images here are 8x8 so that tens of thousands of masks evaluate in seconds. The reference
tools read masks without boxes only as RLE with string counts (their loaders take the area and box from it), so
they are given each file's masks as string counts; ours reads the file as written.
"""
import copy
import functools
import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from lvis import LVIS, LVISEval, LVISResults
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mec_cli.compat import patch_lvis_numpy

patch_lvis_numpy()
H = W = 8
CATS = (1, 2)


def _box_mask(x0, y0, x1, y1):
    m = np.zeros((H, W), np.uint8, order="F")
    m[y0:y1, x0:x1] = 1
    return m


def _polygon(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _data(num_dets: int, per_image: int, seed: int = 0):
    """Ground truth (LVIS fields, RLE masks) and ``num_dets`` detections as (image, category, score, box corners)."""
    rng = np.random.default_rng(seed)
    num_images = -(-num_dets // per_image)
    images, anns, boxes = [], [], {}
    for i in range(1, num_images + 1):
        images.append({"id": i, "height": H, "width": W, "neg_category_ids": [], "not_exhaustive_category_ids": []})
        for c in CATS:
            x0, y0 = (int(v) for v in rng.integers(0, 4, 2))
            x1, y1 = x0 + int(rng.integers(2, 5)), y0 + int(rng.integers(2, 5))
            boxes[i, c] = (x0, y0, x1, y1)
            rle = mask_utils.encode(_box_mask(x0, y0, x1, y1))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c, "iscrowd": 0,
                         "bbox": mask_utils.toBbox(rle).tolist(), "area": float(mask_utils.area(rle)),
                         "segmentation": {"size": [H, W], "counts": rle["counts"].decode()}})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": c, "name": f"c{c}", "frequency": "rf"[c - 1]} for c in CATS]}
    dets = []
    for k in range(num_dets):
        img, cat = k // per_image + 1, int(CATS[k % 2])
        if k % 4 < 2:  # near its image's object of that category (matches at some IoU thresholds)
            x0, y0, x1, y1 = (max(0, min(W, v + int(rng.integers(-1, 2)))) for v in boxes[img, cat])
            x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        else:  # clutter
            x0, y0 = (int(v) for v in rng.integers(0, 5, 2))
            x1, y1 = x0 + int(rng.integers(1, 4)), y0 + int(rng.integers(1, 4))
        score = round(float(rng.random()) / 2 + (0.5 if k % 4 < 2 else 0.0), 4)  # ties too (4 decimals)
        dets.append((img, cat, score, (x0, y0, x1, y1)))
    return gt, dets


@functools.lru_cache(maxsize=None)
def _segmentation(style, box):
    """A box's mask as RLE with string or list counts, or as a polygon (boxes repeat: made once each)."""
    if style == "polygons":
        return _polygon(*box)
    m = _box_mask(*box)
    if style == "string":
        return {"size": [H, W], "counts": mask_utils.encode(m)["counts"].decode()}
    flat = m.flatten(order="F")  # uncompressed RLE: run lengths in column-major order, starting with zeros
    ends = np.flatnonzero(np.diff(np.r_[flat, 2])) + 1
    return {"size": [H, W], "counts": ([0] if flat[0] else []) + np.diff(np.r_[0, ends]).tolist()}


def _results(dets, style):
    """The detections as a results file without boxes: RLE with string or list counts, or polygons."""
    return [{"image_id": img, "category_id": cat, "segmentation": _segmentation(style, box), "score": score}
            for img, cat, score, box in dets]


@functools.lru_cache(maxsize=None)
def _string_counts(seg_json):
    seg = json.loads(seg_json)
    rle = (mask_utils.merge(mask_utils.frPyObjects(seg, H, W)) if isinstance(seg, list)
           else mask_utils.frPyObjects(seg, H, W) if isinstance(seg["counts"], list) else seg)
    counts = rle["counts"]
    return {"size": [H, W], "counts": counts.decode() if isinstance(counts, bytes) else counts}


def _as_string_counts(results):
    """What the reference tools can read: every mask as RLE with string counts (polygons rasterised at the image
    size, as pycocotools' annToRLE does)."""
    return [{**r, "segmentation": _string_counts(json.dumps(r["segmentation"]))} for r in results]


def _ours(run_mec, tmp_path, gt, results, iou_type, protocol):
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    res = run_mec("eval", "--results", tmp_path / "res.json", "--ann", tmp_path / "gt.json", "--iou-type", iou_type,
                  "--protocol", protocol, "--out", tmp_path / "m.json")
    assert res.code == 0, res.err
    return json.loads((tmp_path / "m.json").read_text())["modes"]["results"][iou_type]


def _pycocotools(tmp_path, gt, results, iou_type):
    (tmp_path / "ref_gt.json").write_text(json.dumps(gt))
    coco = COCO(str(tmp_path / "ref_gt.json"))
    ev = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return dict(zip(("AP", "AP50", "AP75", "APs", "APm", "APl"), ev.stats[:6]))


def _lvis_api(tmp_path, gt, results):
    (tmp_path / "ref_gt.json").write_text(json.dumps(gt))
    lvis_gt = LVIS(str(tmp_path / "ref_gt.json"))
    ev = LVISEval(lvis_gt, LVISResults(lvis_gt, copy.deepcopy(results)), "segm")
    ev.run()
    return {k: ev.results[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")}


def _faster_coco_eval_boundary(gt, results):
    from faster_coco_eval import COCO as FCOCO
    from faster_coco_eval import COCOeval_faster

    coco_gt = FCOCO(copy.deepcopy(gt))
    ref = COCOeval_faster(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), "boundary",
                          print_function=lambda *a: None, boundary_dilation_ratio=0.02, boundary_cpu_count=1)
    ref.evaluate()
    ref.accumulate()
    ref.summarize()
    return dict(zip(("AP", "AP50", "AP75", "APs", "APm", "APl"), ref.stats[:6]))


def _same(ours, ref):
    assert ref["AP"] > 0.03  # the detections match some ground truth: the comparison means something
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("style", ["string", "list", "polygons"])
def test_over_255_masks_without_boxes_equal_the_references(run_mec, tmp_path, style):
    gt, dets = _data(300, 30)
    results = _results(dets, style)
    ref_results = _as_string_counts(results)
    assert len(results) > 255 and not any("bbox" in r for r in results)
    _same(_ours(run_mec, tmp_path, gt, results, "segm", "coco"), _pycocotools(tmp_path, gt, ref_results, "segm"))
    _same(_ours(run_mec, tmp_path, gt, results, "segm", "lvis"), _lvis_api(tmp_path, gt, ref_results))
    _same(_ours(run_mec, tmp_path, gt, results, "boundary", "coco"), _faster_coco_eval_boundary(gt, ref_results))


def test_over_65535_masks_without_boxes_equal_the_references(run_mec, tmp_path):
    """One file holding the three kinds in turn (the readers take each record as it comes, as the reference loaders
    do), so that one reference run covers all three."""
    gt, dets = _data(65_700, 100)
    kinds = [_results(dets[k::3], style) for k, style in enumerate(("string", "list", "polygons"))]
    results = [r for triple in zip(*kinds) for r in triple]
    assert len(results) == 65_700 > 65_535 and not any("bbox" in r for r in results)
    ref_results = _as_string_counts(results)
    _same(_ours(run_mec, tmp_path, gt, results, "segm", "coco"), _pycocotools(tmp_path, gt, ref_results, "segm"))
    _same(_ours(run_mec, tmp_path, gt, results, "boundary", "coco"), _faster_coco_eval_boundary(gt, ref_results))
