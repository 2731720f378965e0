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

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import msgspec
import numpy as np
import pycocotools.mask as mask_utils

from mec_cli.data.schema import (
    RLE,
    Dataset,
    Segmentation,
    annotation_columns,
    check_references,
    decode_dataset,
    read_raw,
)
from mec_cli.errors import MecError
from mec_cli.evaluation import compiled, kernels
from mec_cli.evaluation.masks import check_segmentation

IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RNG = np.array([[0.0, 1e5**2], [0.0, 32.0**2], [32.0**2, 96.0**2], [96.0**2, 1e5**2]])
AREA_LABELS = ("all", "small", "medium", "large")
PROTOCOLS = {"lvis": 300, "coco": 100}


class Segmentations:
    """Each detection's mask as the compressed RLE pycocotools reads, made on demand (never 1.5 M objects at once).

    Compressed RLEs (string or bytes counts) pass through; uncompressed RLEs (list counts) are compressed with their
    own size; polygons are rasterised at their image's size, as pycocotools' and lvis-api's ``annToRLE`` do.
    """

    def __init__(self, raw, kinds: np.ndarray, image_ids: np.ndarray, image_size: Optional[Dict] = None):
        self._raw, self.kinds, self._image_ids, self.image_size = raw, kinds, image_ids, image_size or {}

    def __len__(self) -> int:
        return int(self.kinds.shape[0])

    def __getitem__(self, i: int):
        seg = self._raw(i)
        kind = int(self.kinds[i])
        if kind == KIND_RLE:
            return seg
        if kind == KIND_RLE_LIST:
            return mask_utils.frPyObjects(seg, *seg["size"])
        h, w = self.image_size.get(int(self._image_ids[i]), (None, None))
        if not (h and w):
            raise MecError(f"record {i}: a polygon segmentation needs its image's height and width in the "
                           "annotation file")
        return mask_utils.merge(mask_utils.frPyObjects(seg, h, w))

    def take(self, indices) -> List:
        return [self[int(i)] for i in indices]


KIND_NONE, KIND_RLE, KIND_RLE_LIST, KIND_POLYGONS = 0, 1, 2, 3


def _kind(seg) -> int:
    if seg is None:
        return KIND_NONE
    if isinstance(seg, dict):
        return KIND_RLE_LIST if isinstance(seg.get("counts"), list) else KIND_RLE
    return KIND_POLYGONS


@dataclass
class Detections:
    """Detections as arrays. ``bbox`` is (N, 4) xywh; ``segm`` a :class:`Segmentations` (or a list of RLEs) or None.

    How the reference tools read a results file (both decide by its first record), mirrored here:

    * the first record has a (non-empty) ``bbox``: every record must have one, and every detection's area is
      ``w * h``, for segm evaluation too (``area_from_box``);
    * otherwise the records carry segmentations: the area is the mask's, and a record without a box gets the
      mask's bounding box.
    """

    image_id: np.ndarray
    category_id: np.ndarray
    score: np.ndarray
    bbox: Optional[np.ndarray] = None
    segm: Optional[Sequence] = None
    area_from_box: bool = True

    def __post_init__(self) -> None:
        self.image_id = np.asarray(self.image_id, dtype=np.int64)
        self.category_id = np.asarray(self.category_id, dtype=np.int64)
        self.score = np.ascontiguousarray(self.score, dtype=np.float64)  # the kernels read its bits
        if self.bbox is not None:
            self.bbox = np.ascontiguousarray(self.bbox, dtype=np.float64).reshape(-1, 4)

    def __len__(self) -> int:
        return len(self.score)

    def iou_types(self) -> list:
        """What the records hold: 'bbox' when they carry boxes, 'segm' when segmentations (segm-only results can
        still be scored by box: the mask's bounding box, as pycocotools does, when asked for)."""
        return [t for t, present in (("bbox", self.bbox is not None and self.area_from_box),
                                     ("segm", self.segm is not None))
                if present]

    def scorable_by(self) -> list:
        """Every iou type these detections can be evaluated by."""
        return [t for t, present in (("bbox", self.bbox is not None), ("segm", self.segm is not None)) if present]

    def mask_area(self, indices: np.ndarray) -> np.ndarray:
        """Mask areas of the detections at ``indices``, 255 at a time: pycocotools 2.0's ``area`` of a list of 256 or
        more RLEs fails on NumPy 2 (OverflowError: its count is held in a uint8), while one call per mask, as the
        reference loaders make, works."""
        out = np.zeros(len(indices))
        for a in range(0, len(indices), 255):
            chunk = indices[a:a + 255]
            out[a:a + len(chunk)] = np.asarray(mask_utils.area(self._rles(chunk)), np.float64).reshape(-1)
        return out

    def _rles(self, indices) -> List:
        return self.segm.take(indices) if isinstance(self.segm, Segmentations) else [self.segm[int(i)] for i in indices]

    @classmethod
    def from_records(cls, records: Sequence[Dict], source: str = "results",
                     image_size: Optional[Dict] = None) -> "Detections":
        """From LVIS/COCO results records already in memory ({image_id, category_id, score, bbox and/or
        segmentation})."""
        if not isinstance(records, list):
            raise MecError("results must be a JSON list of detections", source)
        if not records:
            return cls(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 4)), None, True)
        try:
            img = np.fromiter((r["image_id"] for r in records), np.int64, len(records))
            cat = np.fromiter((r["category_id"] for r in records), np.int64, len(records))
            score = np.fromiter((r["score"] for r in records), np.float64, len(records))
            has_box = np.fromiter((bool(r.get("bbox")) for r in records), np.bool_, len(records))
            box = np.array([r["bbox"] if r.get("bbox") else [np.nan] * 4 for r in records],
                           dtype=np.float64).reshape(-1, 4)
            kinds = np.fromiter((_kind(r.get("segmentation")) for r in records), np.int8, len(records))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise MecError(f"a detection is malformed ({type(e).__name__}: {e})", source) from None
        return cls.assemble(img, cat, score, box, has_box, kinds, lambda i: records[i]["segmentation"], source,
                            image_size)

    @classmethod
    def from_scan(cls, arrays, buf, source: str = "results", image_size: Optional[Dict] = None) -> "Detections":
        """From :func:`mec_cli.evaluation.jsonscan.read_results_file`'s arrays (segmentations stay in ``buf``)."""
        def raw(i: int):
            if arrays.segm_kind[i] == KIND_RLE:
                return {"size": arrays.rle_size[i].tolist(), "counts": arrays.rle_counts(buf, i)}
            return arrays.segmentation(buf, i)

        return cls.assemble(arrays.image_id, arrays.category_id, arrays.score, arrays.bbox, arrays.has_bbox,
                            arrays.segm_kind, raw, source, image_size)

    @classmethod
    def assemble(cls, img, cat, score, box, has_box, kinds, raw, source: str,
                 image_size: Optional[Dict]) -> "Detections":
        """Apply the reference tools' reading rules (see the class docstring) to validated columns."""
        n = len(score)
        if n == 0:
            return cls(img, cat, score, np.zeros((0, 4)), None, True)
        has_segm = kinds != KIND_NONE
        if has_box[0]:
            if not has_box.all():
                raise MecError(f"record {int(np.argmin(has_box))} has no 'bbox' although the first record has one "
                               "(pycocotools and lvis-api then read every record's box)", source)
            segm = Segmentations(raw, kinds, img, image_size) if has_segm.all() else None
            return cls(img, cat, score, box, segm, True)
        if not has_segm[0]:
            raise MecError("the first detection has neither 'bbox' nor 'segmentation'", source)
        if not has_segm.all():
            raise MecError(f"record {int(np.argmin(has_segm))} has no 'segmentation' although the first record has one "
                           "and no box", source)
        segm = Segmentations(raw, kinds, img, image_size)
        dets = cls(img, cat, score, np.where(has_box[:, None], box, np.nan), segm, False)
        missing = np.flatnonzero(~has_box)
        if missing.size:  # pycocotools gives such records the mask's bounding box
            dets.bbox[missing] = np.asarray(mask_utils.toBbox(dets._rles(missing)), np.float64).reshape(-1, 4)
        return dets


class IdIndex:
    """Ids (sorted, unique) -> their positions; a dense table when the ids are compact, binary search otherwise."""

    def __init__(self, ids: np.ndarray):
        self.ids = np.asarray(ids, np.int64)
        self.table = None
        if self.ids.size and self.ids[0] >= 0 and self.ids[-1] < 4 * self.ids.size + (1 << 22):
            self.table = np.full(int(self.ids[-1]) + 1, -1, np.int64)
            self.table[self.ids] = np.arange(self.ids.size)

    def __len__(self) -> int:
        return int(self.ids.size)

    def lookup(self, values: np.ndarray, dtype=np.int64) -> np.ndarray:
        """Positions of ``values`` (-1 for an id that is not here), as ``dtype``."""
        values = np.ascontiguousarray(values, np.int64)
        out = np.empty(values.shape, dtype)
        kernels.lookup_ids(values, self.table if self.table is not None else np.zeros(0, np.int64), self.ids, out)
        return out


class GroundTruth:
    """A ground truth indexed for evaluation (built once, reused for every mode).

    Built from a typed dataset (:func:`mec_cli.data.schema.read_dataset`, the fast path of ``mec eval``) or from an
    annotation dict (converted and checked by the same schema). Ground truths are held sorted by (image, category,
    file order); ``img_ptr``/``img_cat`` list, image by image, the categories that matter in it (annotated, and for
    LVIS also negative or not exhaustive), sorted, each a "pair row" with its first ground truth, their count,
    whether the federated rule lets detections of it count (``pair_allowed``) and whether it is not exhaustively
    annotated (``pair_nel``).
    """

    def __init__(self, data, protocol: str = "lvis", source: str = "annotations", columns: Optional[np.ndarray] = None):
        if protocol not in PROTOCOLS:
            raise MecError(f"must be one of {', '.join(PROTOCOLS)}, got {protocol!r}", option="protocol")
        self.protocol, self.source = protocol, source
        if isinstance(data, dict):
            try:
                data = msgspec.convert(data, Dataset)
            except msgspec.ValidationError as e:
                raise MecError(f"not an annotation dataset: {e}", source) from None
        self.dataset = ds = data
        self.images = IdIndex(np.unique(np.fromiter((i.id for i in ds.images), np.int64, len(ds.images))))
        self.cats = IdIndex(np.unique(np.fromiter((c.id for c in ds.categories), np.int64, len(ds.categories))))
        self.img_ids, self.cat_ids = self.images.ids, self.cats.ids
        self.num_cats = K = len(self.cats)
        cols = annotation_columns(ds.annotations) if columns is None else columns
        n = len(cols)
        img = self.images.lookup(cols["image_id"])
        cat = self.cats.lookup(cols["category_id"])
        box = np.ascontiguousarray(cols["bbox"]).reshape(-1, 4)
        area = np.where(cols["has_area"], cols["area"], box[:, 2] * box[:, 3])  # no area: the box's, as the tools
        ann_id = np.ascontiguousarray(cols["id"])
        crowd = np.ascontiguousarray(cols["iscrowd"])
        if protocol == "coco":  # pycocotools overwrites any 'ignore' field with iscrowd
            ignore = crowd.copy()
        else:
            crowd = np.zeros(n, np.bool_)
            ignore = np.ascontiguousarray(cols["ignore"])
        # 1. ground truths sorted by (image, category, file order); gt_file maps back to the annotation list
        self.gt_file = np.lexsort((np.arange(n), cat, img))
        self.gt_img, self.gt_cat = img[self.gt_file], cat[self.gt_file]
        self.gt_box, self.gt_area, self.gt_id = box[self.gt_file], area[self.gt_file], ann_id[self.gt_file]
        self.gt_crowd, self.gt_ignore = crowd[self.gt_file], ignore[self.gt_file]
        # 2. pair rows: annotated pairs, plus LVIS's negative and not-exhaustive ones
        gt_keys = self.gt_img * K + self.gt_cat
        keys = [np.unique(gt_keys)]
        neg_keys = nel_keys = np.zeros(0, np.int64)
        if protocol == "lvis":
            im_idx = self.images.lookup(np.fromiter((im.id for im in ds.images), np.int64, len(ds.images)))
            neg_keys, nel_keys = (self._pair_keys(ds.images, im_idx, field)
                                  for field in ("neg_category_ids", "not_exhaustive_category_ids"))
            keys += [neg_keys, nel_keys]
        rows = np.unique(np.concatenate(keys))
        self.img_ptr = np.searchsorted(rows, np.arange(len(self.images) + 1) * K).astype(np.int64)
        self.img_cat = (rows % K).astype(np.int64)
        self.pair_gt_start = np.searchsorted(gt_keys, rows, "left").astype(np.int64)
        self.pair_gt_count = np.searchsorted(gt_keys, rows, "right").astype(np.int64) - self.pair_gt_start
        self.pair_allowed = (self.pair_gt_count > 0) | np.isin(rows, neg_keys)
        self.pair_nel = np.isin(rows, nel_keys)
        # 3. non-ignored ground truths per category and area range (the recall denominators)
        self.gt_npig = np.zeros((K, len(AREA_RNG)), np.int64)
        for a, (lo, hi) in enumerate(AREA_RNG):
            counted = ~self.gt_ignore & (self.gt_area >= lo) & (self.gt_area <= hi)
            self.gt_npig[:, a] = np.bincount(self.gt_cat[counted], minlength=K)
        self._gt_rles: Optional[List] = None
        self.frequency = {int(c.id): (None if c.frequency is msgspec.UNSET else c.frequency) for c in ds.categories}
        self.image_size = {int(i.id): (None if i.height is msgspec.UNSET else i.height,
                                       None if i.width is msgspec.UNSET else i.width)
                           for i in ds.images}

    @classmethod
    def from_file(cls, path, protocol: Optional[str] = None) -> "GroundTruth":
        """Read, check and index an annotation file (segmentations stay raw until segm evaluation needs them).

        ``protocol`` defaults to 'lvis' when the images carry LVIS's federated fields, else 'coco'; LVIS needs
        those fields on every image.
        """
        raw = read_raw(path)
        ds = decode_dataset(raw, path, lazy_segmentation=True)
        columns = annotation_columns(ds.annotations)
        check_references(ds, path, True, columns)
        lvis_fields = [im.neg_category_ids is not msgspec.UNSET and im.not_exhaustive_category_ids is not msgspec.UNSET
                       for im in ds.images]
        protocol = protocol or ("lvis" if lvis_fields and lvis_fields[0] else "coco")
        if protocol == "lvis" and not all(lvis_fields):
            bad = ds.images[lvis_fields.index(False)].id
            raise MecError(f"image id {bad} lacks neg_category_ids/not_exhaustive_category_ids needed by the LVIS "
                           "protocol (use `protocol` coco)", path)
        return cls(ds, protocol, str(path), columns)

    def _pair_keys(self, images, im_idx: np.ndarray, field: str) -> np.ndarray:
        """image * K + category of every (image, category) an image lists in ``field`` (unknown categories
        skipped), sorted and unique."""
        lists = [getattr(im, field) for im in images]
        lists = [ids if ids is not msgspec.UNSET else [] for ids in lists]
        counts = np.fromiter((len(ids) for ids in lists), np.int64, len(lists))
        cats = self.cats.lookup(np.fromiter((c for ids in lists for c in ids), np.int64, int(counts.sum())))
        imgs = np.repeat(im_idx.astype(np.int64), counts)
        known = cats >= 0
        return np.unique(imgs[known] * self.num_cats + cats[known])

    def segmentation(self, f: int):
        """The segmentation of annotation ``f`` (file order) as pycocotools reads it: polygons or an RLE dict."""
        a = self.dataset.annotations[f]
        seg = a.segmentation
        if isinstance(seg, msgspec.Raw):
            if not len(seg):
                seg = msgspec.UNSET
            else:
                try:
                    seg = msgspec.json.decode(seg, type=Segmentation)
                except msgspec.ValidationError as e:
                    raise MecError(f"annotation id {a.id} has a malformed segmentation ({e})", self.source) from None
        if seg is msgspec.UNSET:
            raise MecError(f"annotation id {a.id} has no segmentation for mask evaluation", self.source)
        if isinstance(seg, RLE):
            return {"size": list(seg.size), "counts": seg.counts}
        if any(len(p) % 2 for p in seg):
            raise MecError(f"annotation id {a.id}: a segmentation polygon must be a list of x, y pairs", self.source)
        return seg

    def gt_rles(self) -> List:
        """Ground-truth masks as RLEs in ``gt_*`` order (polygons rasterised at the image size), made once."""
        if self._gt_rles is None:
            anns = self.dataset.annotations
            rles = []
            for f in self.gt_file.tolist():
                a = anns[f]
                h, w = self.image_size[int(a.image_id)]
                seg = self.segmentation(f)
                problem = check_segmentation(seg, (h, w))  # before pycocotools decodes or rasterises it
                if problem:
                    raise MecError(f"annotation id {a.id}: segmentation {problem}", self.source)
                if (isinstance(seg, list) or isinstance(seg.get("counts"), list)) and not (h and w):
                    raise MecError(f"image id {a.image_id} needs height and width to rasterise annotation id {a.id}",
                                   self.source)
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
    order: Optional[np.ndarray] = None  # (M,) indices of the detections that counted, in accumulation order
    det_tp: Optional[np.ndarray] = None  # (M,) uint64 bit t * A + a: matched at IoU threshold t, area range a
    det_ig: Optional[np.ndarray] = None  # (M,) uint64: ignored
    category_ap: Optional[np.ndarray] = None  # (K,) each category's AP (area all), -1 without ground truth


def pair_iou_table(gt: GroundTruth, order: np.ndarray, img_idx: np.ndarray, cat_idx: np.ndarray, pair_ious) -> tuple:
    """IoUs of every counted detection with its pair's ground truths, laid out for :func:`kernels.match_images`:
    (flat table, offset of each detection's row, -1 for the detections that do not count).

    ``pair_ious(det_indices, gt_start, gt_count)`` gives the (len(det_indices), gt_count) IoUs of one pair's
    detections (indices into the detections) with its ground truths (positions ``gt_start..`` in ``gt_*`` order).
    """
    K = gt.num_cats
    rows = kernels.pair_rows(gt.img_ptr, gt.img_cat, img_idx[order], cat_idx[order])
    ng = np.where(rows >= 0, gt.pair_gt_count[np.maximum(rows, 0)], 0)
    offset = np.full(len(img_idx), -1, np.int64)
    starts = np.zeros(len(order), np.int64)
    starts[1:] = np.cumsum(ng)[:-1]
    offset[order] = starts
    table = np.zeros(int(ng.sum()), np.float64)
    has = np.flatnonzero(ng > 0)
    # group the counted detections by pair (their order within a pair is the matching order)
    pair_key = img_idx[order[has]].astype(np.int64) * K + cat_idx[order[has]]
    sort = np.argsort(pair_key, kind="stable")
    grouped, keys = has[sort], pair_key[sort]
    bounds = np.flatnonzero(np.diff(np.r_[-1, keys, -1]))
    for b0, b1 in zip(bounds[:-1], bounds[1:]):
        ps = grouped[b0:b1]
        r = rows[ps[0]]
        gs, n_g = int(gt.pair_gt_start[r]), int(gt.pair_gt_count[r])
        iou = np.asarray(pair_ious(order[ps], gs, n_g), np.float64).reshape(len(ps), n_g)
        for j, p in enumerate(ps):
            table[starts[p]:starts[p] + n_g] = iou[j]
    return table, offset


def _segm_ious(gt: GroundTruth, dets: Detections, order: np.ndarray, img_idx: np.ndarray, cat_idx: np.ndarray):
    """Mask IoUs (pycocotools' maskUtils.iou, crowd rule included) in :func:`pair_iou_table`'s layout."""
    gt_rles = gt.gt_rles()

    def pair_ious(det_indices, gs, n_g):
        return mask_utils.iou(dets._rles(det_indices), gt_rles[gs:gs + n_g], [int(x) for x in gt.gt_crowd[gs:gs + n_g]])

    return pair_iou_table(gt, order, img_idx, cat_idx, pair_ious)


def _index(gt: GroundTruth, dets: Detections, source: str):
    """Image and category index of every detection; an id the annotations lack is a MecError naming it."""
    img_idx = gt.images.lookup(dets.image_id, np.int32)  # positions of images and categories fit 32 bits
    if (img_idx < 0).any():
        raise MecError(f"detection of image id {int(dets.image_id[np.argmax(img_idx < 0)])}, which the annotation "
                       "file does not have", source)
    cat_idx = gt.cats.lookup(dets.category_id, np.int32)
    if (cat_idx < 0).any():
        bad = int(dets.category_id[np.argmax(cat_idx < 0)])
        raise MecError(f"detection of category id {bad}, which the annotation file does not have", source)
    return img_idx, cat_idx


IOU_TYPES = ("bbox", "segm", "boundary")
BOUNDARY_DILATION = 0.02  # Boundary IoU's dilation ratio d (Cheng et al. 2021): a fraction of the image diagonal


def evaluate(gt: GroundTruth, dets: Detections, iou_type: str = "bbox", source: str = "results",
             max_dets_per_class: Optional[int] = None, dilation_ratio: float = BOUNDARY_DILATION) -> EvalResult:
    """Evaluate one detection set; see the module docstring for the protocol.

    ``iou_type`` 'boundary' is Boundary AP (Cheng et al. 2021): masks matched by the Boundary IoU of
    :mod:`mec_cli.evaluation.boundary` with ``dilation_ratio``, under the same protocol as 'segm'.
    ``max_dets_per_class`` evaluates Fixed AP instead (Dave et al.): at most that many detections per category
    over the whole dataset (highest scores, ties in file order), and no per-image cap.
    """
    if iou_type not in IOU_TYPES:
        raise MecError(f"iou type must be one of {', '.join(IOU_TYPES)}, got {iou_type!r}", option="iou_type")
    if iou_type == "bbox" and dets.bbox is None and len(dets):
        raise MecError("bbox evaluation needs 'bbox' in the detections", source)
    if iou_type in ("segm", "boundary") and dets.segm is None and len(dets):
        raise MecError(f"{iou_type} evaluation needs 'segmentation' in the detections", source)
    K, A, T = gt.num_cats, len(AREA_RNG), len(IOU_THRS)
    img_idx, cat_idx = _index(gt, dets, source)
    if max_dets_per_class is not None:
        cap_kind, cap = kernels.CAP_CATEGORY, int(max_dets_per_class)
    else:
        cap_kind, cap = (kernels.CAP_IMAGE if gt.protocol == "lvis" else kernels.CAP_PAIR), PROTOCOLS[gt.protocol]
    order, cat_ptr, img_seq, img_seq_ptr = kernels.order_detections(
        img_idx, cat_idx, dets.score, len(gt.images), K, cap_kind, cap, gt.protocol == "lvis", gt.img_ptr, gt.img_cat,
        gt.pair_allowed)
    box = dets.bbox if dets.bbox is not None else np.zeros((len(dets), 4))
    if dets.area_from_box:  # w * h, computed by the matcher
        area = np.zeros(0)
    else:  # results without boxes: the mask's area, as the reference tools set it (needed only where it counts)
        area = np.zeros(len(dets))
        area[order] = dets.mask_area(order)
    if iou_type == "bbox":
        table, offset = np.zeros(1), np.zeros(1, np.int64)  # box IoU is computed on the fly
    elif iou_type == "segm":
        table, offset = _segm_ious(gt, dets, order, img_idx, cat_idx)
    else:
        from mec_cli.evaluation.boundary import boundary_iou_table  # noqa: PLC0415  (boundary imports this module)

        table, offset = boundary_iou_table(gt, dets, order, img_idx, cat_idx, dilation_ratio)
    det_tp = np.empty(len(dets), np.uint64)  # written for every detection that counts
    det_ig = np.empty(len(dets), np.uint64)
    kernels.match_images(img_seq, img_seq_ptr, cat_idx, box, area, dets.area_from_box, iou_type != "bbox", table,
                         offset, gt.img_ptr, gt.img_cat, gt.pair_gt_start, gt.pair_gt_count, gt.pair_nel, gt.gt_box,
                         gt.gt_area, gt.gt_ignore, gt.gt_crowd, gt.gt_id != 0, IOU_THRS, AREA_RNG, det_tp, det_ig)
    del img_seq, img_idx, cat_idx, table, offset, area  # what matching needed; the peak memory is what is held below
    det_tp = det_tp[order]  # accumulation order, read sequentially from here on (one at a time: less memory)
    det_ig = det_ig[order]
    precision = np.empty((T, len(REC_THRS), K, A))  # every entry is written by the kernel
    recall = np.empty((T, K, A))
    cat_mean = np.empty(K)
    kernels.accumulate(det_tp, det_ig, cat_ptr, gt.gt_npig, T, REC_THRS, precision, recall, cat_mean,
                       AREA_LABELS.index("all"))
    return EvalResult(precision, recall, gt.cat_ids, gt.protocol, iou_type, len(order), order, det_tp, det_ig,
                      cat_mean)


def parallel_map(fn, items: Sequence, workers: Optional[int] = None) -> List:
    """``[fn(x) for x in items]``, side by side: each item in its own thread with single-threaded kernels (they
    release the GIL), so the cores work on different items instead of sharing one, and the serial steps (ordering,
    summaries) run in parallel too. One item keeps the kernels' own parallelism."""
    items = list(items)
    workers = max(1, min(len(items), workers or os.cpu_count() or 1))
    if workers == 1:
        return [fn(x) for x in items]

    def one(x):
        with compiled.single_threaded():  # this thread's kernels stay on one core
            return fn(x)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, items))


def evaluate_many(gt: GroundTruth, named: Dict[str, Detections], iou_type: str = "bbox", workers: Optional[int] = None,
                  then=None, sources: Optional[Dict[str, str]] = None, **kwargs) -> Dict:
    """:func:`evaluate` several detection sets (the scoring modes of one model) against one ground truth, side by
    side (:func:`parallel_map`); ``then(name, result)``, when given, runs in the same thread and its value replaces
    the result (a summary, computed in parallel too). The results are those of :func:`evaluate` called one by one.
    A set's errors name ``sources[name]`` (default: the name). Boundary AP runs one set at a time (its
    ground-truth boundaries are cached on first use).
    """
    if iou_type in ("segm", "boundary") and any(len(d) for d in named.values()):
        gt.gt_rles()  # built once here, not raced for by the threads
    if iou_type == "boundary":
        workers = 1

    def one(item):
        res = evaluate(gt, item[1], iou_type, source=(sources or {}).get(item[0], item[0]), **kwargs)
        return item[0], (then(item[0], res) if then else res)

    return dict(parallel_map(one, named.items(), workers))
