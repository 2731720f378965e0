"""`mec eval --results` reads the files the field writes, exactly as lvis-api and pycocotools read them.

Each fixture is written the way its tool writes it: MMDetection (``results2json``: float32-derived numbers, RLE with
string counts beside the box), detectron2 (``instances_to_coco_json``), the COCO API's own demo results (segm as
RLE with string counts and no ``bbox``), polygons, uncompressed RLE (list counts), bbox-only files. Every metric is
compared with the reference tool run on the same file.
"""
import copy
import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from lvis import LVIS, LVISEval, LVISResults
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mec_cli.compat import patch_lvis_numpy

patch_lvis_numpy()
H, W = 96, 128
LVIS_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _mask(x, y, w, h, shape="rect"):
    m = np.zeros((H, W), np.uint8, order="F")
    x0, y0, x1, y1 = int(x), int(y), int(min(W, x + w)), int(min(H, y + h))
    if shape == "rect":
        m[y0:y1, x0:x1] = 1
    else:  # an ellipse, so masks and boxes differ
        yy, xx = np.mgrid[0:H, 0:W]
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, max(1, (x1 - x0) / 2), max(1, (y1 - y0) / 2)
        m[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1] = 1
    return np.asfortranarray(m)


def _ground_truth(lvis=True):
    rng = np.random.default_rng(0)
    cats = [{"id": c, "name": f"c{c}", "frequency": f} for c, f in ((1, "r"), (2, "c"), (3, "f"), (5, "f"))]
    images, anns = [], []
    for i in range(1, 9):
        im = {"id": i, "height": H, "width": W}
        present = sorted(set(rng.choice([1, 2, 3, 5], 2).tolist()))
        if lvis:
            im.update(neg_category_ids=[c for c in (1, 2, 3, 5) if c not in present][:1],
                      not_exhaustive_category_ids=present[:1] if i % 3 == 0 else [])
        images.append(im)
        for c in present:
            x, y = rng.uniform(0, W - 40), rng.uniform(0, H - 40)
            w, h = rng.uniform(10, 40, 2)
            rle = mask_utils.encode(_mask(x, y, w, h, "ellipse"))
            poly_box = mask_utils.toBbox(rle).tolist()
            a = {"id": len(anns) + 1, "image_id": i, "category_id": c, "bbox": poly_box,
                 "area": float(mask_utils.area(rle)),
                 "segmentation": {"size": [H, W], "counts": rle["counts"].decode()}, "iscrowd": 0}
            anns.append(a)
    return {"images": images, "annotations": anns, "categories": cats}


def _detections(gt, rng, n_extra=6):
    """(image_id, category_id, xywh box, score, mask) per detection: jittered objects plus clutter."""
    out = []
    for a in gt["annotations"]:
        for _ in range(2):
            x, y, w, h = (np.array(a["bbox"]) + rng.normal(0, 2, 4)).tolist()
            out.append((a["image_id"], a["category_id"], [x, y, abs(w) + 1, abs(h) + 1], float(rng.random())))
    for im in gt["images"]:
        for _ in range(n_extra):
            x, y = rng.uniform(0, W - 20), rng.uniform(0, H - 20)
            out.append((im["id"], int(rng.choice([1, 2, 3, 5])), [x, y, *rng.uniform(4, 30, 2).tolist()],
                        float(rng.random())))
    return [(i, c, b, s, _mask(*b, "ellipse")) for i, c, b, s in out]


def _f32(v):
    return float(np.float32(v))  # MMDetection dumps float32 tensors through float()


def mmdetection_style(dets, with_segm=True):
    """mmdet.evaluation.CocoMetric.results2json: bbox list and segm list (each segm record carries the box too)."""
    bbox, segm = [], []
    for img, cat, b, s, m in dets:
        rec = {"image_id": img, "bbox": [_f32(v) for v in b], "score": _f32(s), "category_id": cat}
        bbox.append(rec)
        if with_segm:
            rle = mask_utils.encode(m)
            rle["counts"] = rle["counts"].decode()
            segm.append({**rec, "segmentation": rle})
    return bbox, segm


def detectron2_style(dets):
    """detectron2's instances_to_coco_json: box, score, category and an RLE whose counts are decoded to str."""
    out = []
    for img, cat, b, s, m in dets:
        rle = mask_utils.encode(m)
        rle["counts"] = rle["counts"].decode("utf-8")
        out.append({"image_id": img, "category_id": cat, "bbox": [float(v) for v in b], "score": float(s),
                    "segmentation": rle})
    return out


def cocoapi_fake_segm_style(dets):
    """The COCO API's results/instances_val2014_fakesegm100_results.json: RLE with string counts, no bbox."""
    out = []
    for img, cat, _b, s, m in dets:
        rle = mask_utils.encode(m)
        out.append({"image_id": img, "category_id": cat, "segmentation": {"size": rle["size"],
                                                                          "counts": rle["counts"].decode()},
                    "score": round(s, 3)})
    return out


def polygon_style(dets):
    return [{"image_id": img, "category_id": cat, "bbox": b, "score": s,
             "segmentation": [[b[0], b[1], b[0] + b[2], b[1], b[0] + b[2], b[1] + b[3], b[0], b[1] + b[3]]]}
            for img, cat, b, s, _m in dets]


def uncompressed_rle_style(dets):
    out = []
    for img, cat, b, s, m in dets:
        flat = m.flatten(order="F")
        changes = np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]]))  # run lengths starting with zeros
        counts = np.diff(np.r_[0, changes]).tolist()
        if counts and counts[-1] == 0:
            counts = counts[:-1]
        out.append({"image_id": img, "category_id": cat, "bbox": b, "score": s,
                    "segmentation": {"size": [H, W], "counts": counts}})
    return out


def _reference(gt, results, iou_type, protocol, tmp_path):
    (tmp_path / "ref_gt.json").write_text(json.dumps(gt))
    if protocol == "lvis":
        lvis_gt = LVIS(str(tmp_path / "ref_gt.json"))
        ev = LVISEval(lvis_gt, LVISResults(lvis_gt, copy.deepcopy(results)), iou_type)
        ev.run()
        return {k: ev.results[k] for k in LVIS_KEYS}
    coco = COCO(str(tmp_path / "ref_gt.json"))
    ev = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return dict(zip(COCO_KEYS, ev.stats[:6]))


def _ours(run_mec, gt, results, tmp_path, *extra):
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    res = run_mec("eval", "--results", tmp_path / "res.json", "--ann", tmp_path / "gt.json", "--out",
                  tmp_path / "m.json", *extra)
    assert res.code == 0, res.err
    return json.loads((tmp_path / "m.json").read_text())


@pytest.mark.parametrize("protocol", ["lvis", "coco"])
@pytest.mark.parametrize("style", ["mmdetection", "detectron2", "cocoapi_fake_segm", "polygons", "uncompressed_rle",
                                   "bbox_only"])
def test_results_files_as_the_tools_write_them(run_mec, tmp_path, style, protocol):
    gt = _ground_truth(lvis=protocol == "lvis")
    dets = _detections(gt, np.random.default_rng(1))
    results = {"mmdetection": lambda: mmdetection_style(dets)[1], "detectron2": lambda: detectron2_style(dets),
               "cocoapi_fake_segm": lambda: cocoapi_fake_segm_style(dets), "polygons": lambda: polygon_style(dets),
               "uncompressed_rle": lambda: uncompressed_rle_style(dets),
               "bbox_only": lambda: mmdetection_style(dets, False)[0]}[style]()
    doc = _ours(run_mec, gt, results, tmp_path)
    held = {"cocoapi_fake_segm": ["segm"], "bbox_only": ["bbox"]}.get(style, ["bbox", "segm"])
    assert list(doc["modes"]["results"]) == held  # --iou-type defaults to what the results hold
    assert doc["protocol"] == protocol
    for iou_type in held:
        ref = _reference(gt, results, iou_type, protocol, tmp_path)
        for key, value in ref.items():
            assert doc["modes"]["results"][iou_type][key] == pytest.approx(value, abs=1e-12), (style, iou_type, key)


def test_segm_only_results_can_still_be_scored_by_box(run_mec, tmp_path):
    """pycocotools gives a record without a box its mask's bounding box, and its mask's area."""
    gt = _ground_truth(lvis=False)
    results = cocoapi_fake_segm_style(_detections(gt, np.random.default_rng(2)))
    doc = _ours(run_mec, gt, results, tmp_path, "--iou-type", "bbox,segm")
    for iou_type in ("bbox", "segm"):
        ref = _reference(gt, results, iou_type, "coco", tmp_path)
        for key, value in ref.items():
            assert doc["modes"]["results"][iou_type][key] == pytest.approx(value, abs=1e-12), (iou_type, key)


def test_asking_for_what_the_results_lack_is_one_line(run_mec, tmp_path):
    gt = _ground_truth()
    results = mmdetection_style(_detections(gt, np.random.default_rng(3)), False)[0]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    line = run_mec("eval", "--results", tmp_path / "res.json", "--ann", tmp_path / "gt.json", "--iou-type",
                   "segm").one_error_line()
    assert "segm" in line and "no segmentations" in line
    mixed = results[:3] + [{k: v for k, v in results[3].items() if k != "bbox"}] + results[4:]
    (tmp_path / "mixed.json").write_text(json.dumps(mixed))
    line = run_mec("eval", "--results", tmp_path / "mixed.json", "--ann", tmp_path / "gt.json").one_error_line()
    assert "record 3 has no 'bbox'" in line


@pytest.mark.parametrize("record,needle", [
    ({"image_id": 1, "category_id": 1, "bbox": ["1", "2", "3", "4"], "score": 0.5}, "'bbox'"),
    ({"image_id": 1, "category_id": 1, "bbox": [1, 2, None, 4], "score": 0.5}, "'bbox'"),
    ({"image_id": [1], "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}, "'image_id'"),
    ({"image_id": 1, "category_id": "1", "bbox": [1, 2, 3, 4], "score": 0.5}, "'category_id'"),
    ({"image_id": 1, "category_id": 2**70, "bbox": [1, 2, 3, 4], "score": 0.5}, "64-bit"),
    ({"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": float("nan")}, "NaN"),
    ({"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": -0.5}, ">= 0"),
    ({"image_id": 1, "category_id": 1, "bbox": [1, 2, -3, 4], "score": 0.5}, "negative"),
    ({"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}, "'score'"),
    ({"image_id": 1, "category_id": 9, "bbox": [1, 2, 3, 4], "score": 0.5}, "category id 9"),
    ({"image_id": 99, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}, "image id 99"),
])
def test_malformed_results_records(run_mec, tmp_path, record, needle):
    gt = _ground_truth()
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    good = {"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9}
    (tmp_path / "res.json").write_text(json.dumps([good, good, record], allow_nan=True))
    line = run_mec("eval", "--results", tmp_path / "res.json", "--ann", tmp_path / "gt.json", "--out",
                   tmp_path / "m.json").one_error_line()
    assert needle in line and "res.json" in line
    assert not (tmp_path / "m.json").exists()


def test_results_read_in_pieces_give_the_same_metrics_and_report_progress(tmp_path, monkeypatch):
    """A large results file is read in pieces side by side (jsonscan.PIECE_BYTES); every metric is the same, masks
    included, and the steps are reported as they go."""
    from mec_cli.evaluation import jsonscan
    from mec_cli.evaluation.api import evaluate_results_file

    gt = _ground_truth(lvis=True)
    results = mmdetection_style(_detections(gt, np.random.default_rng(4)))[1]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    whole = evaluate_results_file(tmp_path / "res.json", tmp_path / "gt.json")
    monkeypatch.setattr(jsonscan, "PIECE_BYTES", 700)
    steps = []
    pieces = evaluate_results_file(tmp_path / "res.json", tmp_path / "gt.json",
                                   progress=lambda step, done=0, total=0: steps.append((step, done, total)))
    assert pieces["modes"] == whole["modes"]
    reads = [(done, total) for step, done, total in steps if step == "reading the results"]
    size = (tmp_path / "res.json").stat().st_size
    assert len(reads) > 2 and reads[-1] == (size, size) and [d for d, _ in reads] == sorted(d for d, _ in reads)
    assert {"reading the annotations", "evaluating bbox, segm"} <= {step for step, _, _ in steps}


def test_the_metrics_files_tool_versions_are_importlib_metadatas(tmp_path, monkeypatch):
    """Read from the dist-info folders' names, the versions are those importlib.metadata gives (the first on
    sys.path), including a package found twice and one found only by importlib.metadata's own search."""
    from importlib.metadata import PackageNotFoundError, version

    from mec_cli.evaluation.api import VERSIONED, tool_versions

    def reference():
        out = {}
        for pkg in VERSIONED:
            try:
                out[pkg] = version(pkg)
            except PackageNotFoundError:
                pass
        return out

    assert tool_versions() == reference() and "numpy" in tool_versions()
    shadow = tmp_path / "site"
    (shadow / "numpy-0.0.1.dist-info").mkdir(parents=True)
    (shadow / "numpy-0.0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: numpy\nVersion: 0.0.1\n")
    monkeypatch.syspath_prepend(str(shadow))
    assert tool_versions()["numpy"] == "0.0.1" == reference()["numpy"]
