"""Fast, exact LVIS (federated) and COCO evaluation.

The ground truth is indexed once (:class:`GroundTruth`); any number of detection sets (scoring modes)
are then evaluated against it (:func:`evaluate`). The numbers equal lvis-api's ``LVISEval`` and
pycocotools' ``COCOeval`` on the same detections, including their quirks:

* LVIS keeps the 300 highest-scoring detections per image (over all categories); COCO keeps 100 per
  image and category.
* LVIS is federated: a detection counts only for categories that are annotated in the image or
  listed in its ``neg_category_ids``; unmatched detections of a ``not_exhaustive_category_ids``
  category are ignored.
* A result whose records carry ``bbox`` gets ``area = w * h`` even for segm evaluation (both
  reference tools do this); records without ``bbox`` get the mask area.
* COCO ignores crowd ground truth (``iscrowd``) and matches it with IoU = intersection / det area.

Precision is an array (T=10 IoU thresholds, R=101 recall thresholds, K categories, A=4 areas) with
-1 where a category has no (non-ignored) ground truth, exactly as the reference tools hold it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from mec_cli.errors import MecError

IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RNG = np.array([[0.0, 1e5**2], [0.0, 32.0**2], [32.0**2, 96.0**2], [96.0**2, 1e5**2]])
AREA_LABELS = ("all", "small", "medium", "large")
PROTOCOLS = {"lvis": 300, "coco": 100}


@dataclass
class Detections:
    """Detections as arrays. ``bbox`` is (N, 4) xywh; ``segm`` is a list of compressed RLEs or None.

    ``area_from_box`` mirrors the reference tools: results that carry boxes get area w*h.
    """

    image_id: np.ndarray
    category_id: np.ndarray
    score: np.ndarray
    bbox: Optional[np.ndarray] = None
    segm: Optional[List[Dict]] = None
    area_from_box: bool = True

    def __post_init__(self) -> None:
        self.image_id = np.asarray(self.image_id, dtype=np.int64)
        self.category_id = np.asarray(self.category_id, dtype=np.int64)
        self.score = np.asarray(self.score, dtype=np.float64)
        if self.bbox is not None:
            self.bbox = np.asarray(self.bbox, dtype=np.float64).reshape(-1, 4)

    def __len__(self) -> int:
        return len(self.score)

    @classmethod
    def from_records(cls, records: Sequence[Dict], source: str = "results") -> "Detections":
        """From LVIS/COCO results records ({image_id, category_id, score, bbox and/or segmentation})."""
        if not isinstance(records, list):
            raise MecError("results must be a JSON list of detections", source)
        if not records:
            return cls(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 4)), [], True)
        has_box = "bbox" in records[0]
        has_segm = "segmentation" in records[0]
        if not has_box and not has_segm:
            raise MecError("the first detection has neither 'bbox' nor 'segmentation'", source)
        try:
            img = np.fromiter((r["image_id"] for r in records), np.int64, len(records))
            cat = np.fromiter((r["category_id"] for r in records), np.int64, len(records))
            score = np.fromiter((r["score"] for r in records), np.float64, len(records))
            box = np.array([r["bbox"] for r in records], dtype=np.float64).reshape(-1, 4) if has_box else None
            segm = [r["segmentation"] for r in records] if has_segm else None
        except (KeyError, TypeError, ValueError) as e:
            raise MecError(f"a detection is malformed ({type(e).__name__}: {e})", source) from None
        return cls(img, cat, score, box, segm, has_box)


@dataclass
class GroundTruth:
    """A ground-truth annotation dict indexed for evaluation (built once, reused for every mode)."""

    data: Dict
    protocol: str = "lvis"
    img_ids: np.ndarray = field(init=False)
    cat_ids: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise MecError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        data = self.data
        self.img_ids = np.array(sorted({int(i["id"]) for i in data["images"]}), dtype=np.int64)
        self.cat_ids = np.array(sorted({int(c["id"]) for c in data["categories"]}), dtype=np.int64)
        self.num_cats = len(self.cat_ids)
        anns = data["annotations"]
        self.gt_img = np.searchsorted(self.img_ids, np.fromiter((a["image_id"] for a in anns), np.int64, len(anns)))
        self.gt_cat = np.searchsorted(self.cat_ids, np.fromiter((a["category_id"] for a in anns), np.int64, len(anns)))
        self.gt_box = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        self.gt_area = np.fromiter((a.get("area", a["bbox"][2] * a["bbox"][3]) for a in anns), np.float64, len(anns))
        self.gt_id = np.fromiter((a["id"] for a in anns), np.int64, len(anns))
        crowd = np.fromiter((bool(a.get("iscrowd", 0)) for a in anns), np.bool_, len(anns))
        if self.protocol == "coco":
            # pycocotools overwrites any 'ignore' field with iscrowd
            self.gt_crowd = crowd
            self.gt_ignore = crowd.copy()
        else:
            self.gt_crowd = np.zeros(len(anns), np.bool_)
            self.gt_ignore = np.fromiter((bool(a.get("ignore", 0)) for a in anns), np.bool_, len(anns))
        self.gt_keys = np.unique(self.gt_img * self.num_cats + self.gt_cat)
        if self.protocol == "lvis":
            neg, nel = [], []
            for im in data["images"]:
                i = int(np.searchsorted(self.img_ids, im["id"]))
                neg += [i * self.num_cats + c for c in self._cat_index(im.get("neg_category_ids", []))]
                nel += [i * self.num_cats + c for c in self._cat_index(im.get("not_exhaustive_category_ids", []))]
            self.allowed_keys = np.union1d(self.gt_keys, np.array(neg, np.int64))
            self.nel_keys = np.unique(np.array(nel, np.int64))
        # pairs' gt ranges: gts sorted by (cat, img), file order kept within a pair
        self.gt_order = np.lexsort((np.arange(len(anns)), self.gt_img, self.gt_cat))
        self._gt_rles: Optional[List] = None
        self.frequency = {int(c["id"]): c.get("frequency") for c in data["categories"]}

    def _cat_index(self, ids: Sequence[int]) -> List[int]:
        ids = np.asarray(list(ids), dtype=np.int64)
        if ids.size == 0:
            return []
        idx = np.searchsorted(self.cat_ids, ids)
        ok = (idx < self.num_cats) & (self.cat_ids[np.minimum(idx, self.num_cats - 1)] == ids)
        return idx[ok].tolist()

    def gt_rles(self) -> List:
        """Ground-truth masks as RLEs (polygons rasterised at the image size), made once."""
        if self._gt_rles is None:
            import pycocotools.mask as mask_utils

            size = {int(i["id"]): (i.get("height"), i.get("width")) for i in self.data["images"]}
            rles = []
            for a in self.data["annotations"]:
                h, w = size[int(a["image_id"])]
                seg = a.get("segmentation")
                if seg is None:
                    raise MecError(f"annotation id {a['id']} has no segmentation for segm evaluation")
                if isinstance(seg, list):
                    rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
                elif isinstance(seg.get("counts"), list):
                    rle = mask_utils.frPyObjects(seg, h, w)
                else:
                    rle = seg
                rles.append(rle)
            self._gt_rles = rles
        return self._gt_rles


@dataclass
class EvalResult:
    precision: np.ndarray  # (T, R, K, A)
    recall: np.ndarray  # (T, K, A)
    cat_ids: np.ndarray
    protocol: str
    iou_type: str
    num_detections: int


def _limit(dets: Detections, img_idx: np.ndarray, cat_idx: np.ndarray, protocol: str) -> np.ndarray:
    """Indices of the detections each protocol keeps (LVIS: top 300 per image; COCO: top 100 per image and class)."""
    n = len(dets)
    orig = np.arange(n)
    if protocol == "lvis":
        order = np.lexsort((orig, -dets.score, img_idx))
        group = img_idx[order]
    else:
        order = np.lexsort((orig, -dets.score, cat_idx, img_idx))
        group = img_idx[order] * (cat_idx.max(initial=0) + 1) + cat_idx[order]
    starts = np.r_[0, np.flatnonzero(np.diff(group)) + 1] if n else np.zeros(0, np.int64)
    rank = orig - np.repeat(starts, np.diff(np.r_[starts, n]))
    keep = order[rank < PROTOCOLS[protocol]]
    return np.sort(keep)


def _segm_ious(gt: GroundTruth, dt_rles: List, det_start, det_count, gt_start, gt_count, iou_offset, gt_sorted, det_sorted, out) -> None:
    import pycocotools.mask as mask_utils

    gt_rles = gt.gt_rles()
    for p in range(len(det_start)):
        nd, ng = int(det_count[p]), int(gt_count[p])
        if nd == 0 or ng == 0:
            continue
        d = [dt_rles[i] for i in det_sorted[det_start[p]:det_start[p] + nd]]
        g = [gt_rles[i] for i in gt_sorted[gt_start[p]:gt_start[p] + ng]]
        crowd = [int(x) for x in gt.gt_crowd[gt_sorted[gt_start[p]:gt_start[p] + ng]]]
        out[iou_offset[p]:iou_offset[p] + nd * ng] = np.asarray(mask_utils.iou(d, g, crowd), dtype=np.float64).reshape(-1)


def evaluate(gt: GroundTruth, dets: Detections, iou_type: str = "bbox", source: str = "results") -> EvalResult:
    """Evaluate one detection set; see the module docstring for the protocol."""
    from mec_cli.evaluation import kernels

    if iou_type not in ("bbox", "segm"):
        raise MecError(f"--iou-type must be bbox or segm, got {iou_type!r}")
    if iou_type == "bbox" and dets.bbox is None and len(dets):
        raise MecError("bbox evaluation needs 'bbox' in the detections", source)
    if iou_type == "segm" and dets.segm is None and len(dets):
        raise MecError("segm evaluation needs 'segmentation' in the detections", source)
    K = gt.num_cats
    img_idx = np.searchsorted(gt.img_ids, dets.image_id)
    bad = (img_idx >= len(gt.img_ids)) | (gt.img_ids[np.minimum(img_idx, len(gt.img_ids) - 1)] != dets.image_id) if len(dets) else np.zeros(0, bool)
    if bad.any():
        raise MecError(f"detection of image id {int(dets.image_id[np.argmax(bad)])}, which the annotation file does not have", source)
    cat_idx = np.searchsorted(gt.cat_ids, dets.category_id)
    bad = (cat_idx >= K) | (gt.cat_ids[np.minimum(cat_idx, K - 1)] != dets.category_id) if len(dets) else np.zeros(0, bool)
    if bad.any():
        raise MecError(f"detection of category id {int(dets.category_id[np.argmax(bad)])}, which the annotation file does not have", source)

    keep = _limit(dets, img_idx, cat_idx, gt.protocol) if len(dets) else np.zeros(0, np.int64)
    keys = img_idx[keep] * K + cat_idx[keep]
    det_nel = np.zeros(len(keep), np.bool_)
    if gt.protocol == "lvis":
        allowed = np.isin(keys, gt.allowed_keys, assume_unique=False)
        keep, keys = keep[allowed], keys[allowed]
        det_nel = np.isin(keys, gt.nel_keys)
    d_img, d_cat, d_score = img_idx[keep], cat_idx[keep], dets.score[keep]
    if iou_type == "bbox" or dets.area_from_box:
        d_box = dets.bbox[keep] if dets.bbox is not None else np.zeros((len(keep), 4))
        d_area = d_box[:, 2] * d_box[:, 3]
    else:
        import pycocotools.mask as mask_utils

        d_box = np.zeros((len(keep), 4))
        d_area = np.asarray(mask_utils.area([dets.segm[i] for i in keep]), dtype=np.float64).reshape(-1) if len(keep) else np.zeros(0)
    n = len(keep)
    # detections sorted into pairs: (cat, img), then score (stable on the original order)
    d_order = np.lexsort((keep, -d_score, d_img, d_cat))
    d_keys = (d_cat * len(gt.img_ids) + d_img)[d_order]
    g_order = gt.gt_order
    g_keys = (gt.gt_cat * len(gt.img_ids) + gt.gt_img)[g_order]
    pair_keys = np.union1d(d_keys, g_keys)
    det_start = np.searchsorted(d_keys, pair_keys, "left")
    det_count = np.searchsorted(d_keys, pair_keys, "right") - det_start
    gt_start = np.searchsorted(g_keys, pair_keys, "left")
    gt_count = np.searchsorted(g_keys, pair_keys, "right") - gt_start
    sizes = det_count * gt_count
    iou_offset = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64) if len(sizes) else np.zeros(0, np.int64)
    ious = np.zeros(int(sizes.sum()), np.float64)

    sd = d_order  # positions into the kept arrays
    if iou_type == "bbox":
        kernels.box_iou_pairs(d_box[sd], gt.gt_box[g_order], gt.gt_crowd[g_order], det_start, det_count, gt_start, gt_count, iou_offset, ious)
    else:
        _segm_ious(gt, dets.segm, det_start, det_count, gt_start, gt_count, iou_offset, g_order, keep[sd], ious)

    T, A = len(IOU_THRS), len(AREA_RNG)
    det_tp = np.zeros((T, A, n), np.bool_)
    det_ig = np.zeros((T, A, n), np.bool_)
    npig_pair = np.zeros((len(pair_keys), A), np.int64)
    g_sorted = g_order
    kernels.match_pairs(ious, iou_offset, det_start, det_count, d_area[sd], gt_start, gt_count, gt.gt_area[g_sorted],
                        gt.gt_ignore[g_sorted], gt.gt_crowd[g_sorted], gt.gt_id[g_sorted] != 0, det_nel[sd],
                        IOU_THRS, AREA_RNG, det_tp, det_ig, npig_pair)
    pair_cat = pair_keys // len(gt.img_ids)
    npig = np.zeros((K, A), np.int64)
    np.add.at(npig, pair_cat, npig_pair)
    # per category, highest score first; ties in image order, then original order (a stable sort of
    # the pair-ordered list, as the reference tools' mergesort of per-image lists gives)
    s_cat, s_score = d_cat[sd], d_score[sd]
    acc_order = np.lexsort((-s_score, s_cat))
    cat_start = np.searchsorted(s_cat[acc_order], np.arange(K), "left")
    cat_count = np.searchsorted(s_cat[acc_order], np.arange(K), "right") - cat_start
    precision = -np.ones((T, len(REC_THRS), K, A))
    recall = -np.ones((T, K, A))
    kernels.accumulate(cat_start, cat_count, acc_order, det_tp, det_ig, npig, REC_THRS, precision, recall)
    return EvalResult(precision, recall, gt.cat_ids, gt.protocol, iou_type, n)
