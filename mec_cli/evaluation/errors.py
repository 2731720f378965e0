"""Where the AP goes, per frequency group: TIDE's error types (Bolya et al., ECCV 2020) under the evaluator's rules.

Which detections are analysed. Exactly those that count for AP (``EvalResult.order``: LVIS's 300 per image
and its federated rule, COCO's 100 per image and category), at IoU 0.5 and area "all". A detection the
evaluator ignores there (it matched an ignored or crowd ground truth, or it is an unmatched detection of a
category that is not exhaustively annotated in its image) stays ignored; a detection of a category neither
annotated nor negative in its image never counted, as in lvis-api. Every other detection is a true positive
or one error. IoUs are of the evaluation's own type (box, mask or Boundary IoU), against the regular
(not ignored, not crowd) ground truths of the detection's image of any category.

The error of a false positive, tested in TIDE's order (t_f = 0.5 foreground, t_b = 0.1 background):

1. **bkg**, when the image has no regular ground truth at all;
2. **loc**: its best IoU with a ground truth of its own category is in [t_b, t_f) (TIDE writes <= t_f; an IoU of
   exactly t_f is a match here, so it can only fall below as a duplicate);
3. **cls**: its best IoU with a ground truth of another category is >= t_f;
4. **dupe**: its best IoU with an already matched ground truth of its own category is >= t_f;
5. **bkg**: its best IoU with any ground truth is <= t_b;
6. **both**: anything else (wrong category and t_b < IoU < t_f, or mixed cases).

**miss**: a regular ground truth that no detection matched and that no cls or loc error could take (below).

The oracle fix of each type, applied alone, then AP at IoU 0.5 recomputed (``fixed_ap``, which gives the
evaluator's own precision array for the unfixed detections); dAP = fixed AP - AP50, never negative since
every fix only removes false positives, turns them into true positives or removes missed ground truths:

* cls: the detection takes the ground truth's category and becomes its true positive, at its own score;
* loc: the detection becomes the ground truth's true positive;
* as TIDE's ``BestGTMatch``: a cls or loc fix whose ground truth is already matched is suppressed instead,
  and of several cls/loc errors on one free ground truth only the highest-scoring (then the earliest in the
  file) is turned into a true positive, the others suppressed; "suppressed" = removed from the ranking;
* both, dupe, bkg: the detection is removed;
* miss: the missed ground truths are removed from the number of ground truths (a category left without
  ground truth keeps its place in the mean, with AP 0, as in TIDE).

Per group (the categories of one frequency group) the AP is the group's AP50 and each dAP is that of the
group's AP. A false positive counts toward the group of its detected category, a missed ground truth toward
its own. The **share** of an error type is its dAP over the sum of the six dAPs of the group.
``cls_to_more_frequent``: of the cls errors on the group's objects (the ground truth belongs to the group), the
fraction whose detected category belongs to a more frequent group (a higher group index: rare < common <
frequent; the groups of groups.json in their order); in the section "all", of every cls error. None when there
are no such cls errors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_utils

from mec_cli.evaluation.boundary import BoundaryIous
from mec_cli.evaluation.compiled import njit
from mec_cli.evaluation.engine import AREA_RNG, REC_THRS, EvalResult

FG_IOU, BG_IOU = 0.5, 0.1
ERROR_TYPES = ("cls", "loc", "both", "dupe", "bkg", "miss")
TP, IGNORED, CLS, LOC, BOTH, DUPE, BKG = 0, -1, 1, 2, 3, 4, 5
CODE = {"cls": CLS, "loc": LOC, "both": BOTH, "dupe": DUPE, "bkg": BKG}


@dataclass
class DetectionErrors:
    """The error of every counted detection and the fate of every ground truth, at IoU 0.5 / area all.

    Per ``EvalResult.order`` position: ``kind`` (TP, IGNORED or an error code), ``target`` (the ground truth a
    cls/loc error points at, in ``gt_*`` order, else -1), ``fix_tp`` (its fix makes a true positive, else it is
    suppressed), ``det_cat`` (category index), ``score``, ``tie`` (the evaluator's tie order), ``match_iou`` (a
    true positive's IoU with the ground truth it matched, else 0: what oLRP's localisation error reads,
    :mod:`mec_cli.evaluation.lrp`). Per ground truth: ``missed``, ``regular`` (counted: not ignored, not crowd) and
    ``gt_label``: the category index of the label the detector gives the object, -1 for none (the highest-scoring
    counted, not ignored detection of any category with IoU >= 0.5 with it, a true positive of another object
    excepted; ties in the evaluator's order: :mod:`mec_cli.evaluation.confusion`).
    """

    kind: np.ndarray
    target: np.ndarray
    fix_tp: np.ndarray
    det_cat: np.ndarray
    score: np.ndarray
    tie: np.ndarray
    gt_cat: np.ndarray
    missed: np.ndarray
    regular: np.ndarray
    num_cats: int
    match_iou: Optional[np.ndarray] = None
    gt_label: Optional[np.ndarray] = None


def _box_ious(db: np.ndarray, gb: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """pycocotools' bbIou of xywh boxes (d, 4) x (g, 4), crowd rule included, with its float operations."""
    d, g = db[:, None, :], gb[None, :, :]
    w = np.minimum(d[..., 0] + d[..., 2], g[..., 0] + g[..., 2]) - np.maximum(d[..., 0], g[..., 0])
    h = np.minimum(d[..., 1] + d[..., 3], g[..., 1] + g[..., 3]) - np.maximum(d[..., 1], g[..., 1])
    inter = w * h
    da = (db[:, 2] * db[:, 3])[:, None]
    union = np.where(crowd[None, :], da, da + (gb[:, 2] * gb[:, 3])[None, :] - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = inter / union
    return np.where((w > 0) & (h > 0), out, 0.0)


def _image_ious(gt, dets, iou_type: str, dilation_ratio: float, det_sorted: np.ndarray, img_of: np.ndarray,
                img_gt_start: np.ndarray, det_start: np.ndarray):
    """IoUs of each counted detection (``det_sorted``, image by image) with every ground truth of its image:
    a flat table and each row's offset (rows are as long as the image has ground truths)."""
    n_img = len(img_gt_start) - 1
    ng = img_gt_start[1:] - img_gt_start[:-1]
    rows = ng[img_of]
    offset = np.zeros(len(det_sorted) + 1, np.int64)
    np.cumsum(rows, out=offset[1:])
    table = np.zeros(int(offset[-1]))
    images = [i for i in range(n_img) if det_start[i + 1] > det_start[i] and ng[i] > 0]
    boundary = None
    if iou_type == "boundary" and images:
        with_gt = ng[img_of] > 0
        gts = np.concatenate([np.arange(img_gt_start[i], img_gt_start[i + 1]) for i in images])
        boundary = BoundaryIous(gt, dets, det_sorted[with_gt], gts, dilation_ratio, keys=img_of[with_gt])
    gt_rles = gt.gt_rles() if iou_type == "segm" else None
    box = dets.bbox
    for i in images:
        d = det_sorted[det_start[i]:det_start[i + 1]]
        gs, ge = int(img_gt_start[i]), int(img_gt_start[i + 1])
        if iou_type == "bbox":
            m = _box_ious(box[d], gt.gt_box[gs:ge], gt.gt_crowd[gs:ge])
        elif iou_type == "segm":
            crowd = [int(c) for c in gt.gt_crowd[gs:ge]]
            m = np.asarray(mask_utils.iou(dets._rles(d), gt_rles[gs:ge], crowd), np.float64)
        else:
            m = boundary.block(d, np.arange(gs, ge))
        m = m.reshape(len(d), ge - gs)
        a = offset[det_start[i]]
        table[a:a + m.size] = m.ravel()
    return table, offset


@njit(cache=True, nogil=True)
def _classify(det_start, img_gt_start, d_cat, d_score, d_file, d_tp, d_ig, g_cat, g_ignore, g_crowd, g_area, g_has_id,
              area_lo, area_hi, table, offset, fg, bg, kind, target, fix_tp, match_iou, gt_label):
    """Replay the greedy matching at IoU ``fg`` (as the evaluator does it) to know which ground truth each true
    positive took and at which IoU (``match_iou``), then give each false positive its error type (module
    docstring) and each cls/loc error its fix, and each regular ground truth the label the detector gives it
    (``gt_label``, :class:`DetectionErrors`). Detections are given image by image, each image's category by
    category in matching order.

    Returns (missed ground truths, number of true positives whose replayed match disagrees with ``d_tp``).
    """
    n_gt = g_cat.shape[0]
    used = np.zeros(n_gt, np.bool_)
    matched = np.zeros(n_gt, np.bool_)
    usable = np.zeros(n_gt, np.bool_)
    best_score = np.full(n_gt, -np.inf)
    best_det = np.full(n_gt, -1, np.int64)
    took = np.full(kind.shape[0], -1, np.int64)  # the ground truth each true positive matched
    disagree = 0
    n_img = det_start.shape[0] - 1
    # 1. the matching, pair by pair (as kernels.match_*: regular ground truths first, crowds re-matchable, a
    #    detection matched to a regular ground truth stops at the first ignored one)
    for im in range(n_img):
        gs, ge = img_gt_start[im], img_gt_start[im + 1]
        s, e = det_start[im], det_start[im + 1]
        p = s
        while p < e:
            k = d_cat[p]
            q = p
            while q < e and d_cat[q] == k:
                q += 1
            order = np.empty(ge - gs, np.int64)
            g_ig = np.empty(ge - gs, np.bool_)
            n = 0
            for g in range(gs, ge):
                if g_cat[g] == k and not (g_ignore[g] or g_area[g] < area_lo or g_area[g] > area_hi):
                    order[n] = g
                    g_ig[n] = False
                    n += 1
            for g in range(gs, ge):
                if g_cat[g] == k and (g_ignore[g] or g_area[g] < area_lo or g_area[g] > area_hi):
                    order[n] = g
                    g_ig[n] = True
                    n += 1
            for r in range(p, q):
                best = min(fg, 1 - 1e-10)
                m = -1
                for j in range(n):
                    g = order[j]
                    if matched[g] and not g_crowd[g]:
                        continue
                    if m > -1 and not g_ig[m] and g_ig[j]:
                        break
                    v = table[offset[r] + (g - gs)]
                    if v < best:
                        continue
                    best = v
                    m = j
                is_tp = False
                if m > -1:
                    g = order[m]
                    matched[g] = True
                    is_tp = (not g_ig[m]) and g_has_id[g]
                    if is_tp:
                        used[g] = True
                        took[r] = g
                        match_iou[r] = best
                if is_tp != d_tp[r]:
                    disagree += 1
            p = q
    # 2. the error of every false positive, in TIDE's order
    for im in range(n_img):
        gs, ge = img_gt_start[im], img_gt_start[im + 1]
        regular = 0
        for g in range(gs, ge):
            if not (g_ignore[g] or g_crowd[g]):
                regular += 1
        for r in range(det_start[im], det_start[im + 1]):
            if d_tp[r]:
                kind[r] = 0
                continue
            if d_ig[r]:
                kind[r] = -1
                continue
            if regular == 0:
                kind[r] = 5
                continue
            same, same_g, other, other_g, dup, anyv = -1.0, -1, -1.0, -1, -1.0, -1.0
            for g in range(gs, ge):
                if g_ignore[g] or g_crowd[g]:
                    continue
                v = table[offset[r] + (g - gs)]
                anyv = max(anyv, v)
                if g_cat[g] == d_cat[r]:
                    if v > same:
                        same, same_g = v, g
                    if used[g]:
                        dup = max(dup, v)
                elif v > other:
                    other, other_g = v, g
            t = -1
            if bg <= same < fg:
                kind[r], t = 2, same_g
            elif other >= fg:
                kind[r], t = 1, other_g
            elif dup >= fg:
                kind[r] = 4
            elif anyv <= bg:
                kind[r] = 5
            else:
                kind[r] = 3
            target[r] = t
            # TIDE's BestGTMatch: a free ground truth is taken by its highest-scoring cls/loc error
            if t >= 0 and not used[t]:
                usable[t] = True
                if d_score[r] > best_score[t] or (d_score[r] == best_score[t] and d_file[r] < best_det[t]):
                    best_score[t] = d_score[r]
                    best_det[t] = d_file[r]
    for r in range(kind.shape[0]):
        t = target[r]
        fix_tp[r] = t >= 0 and not used[t] and best_det[t] == d_file[r]
    missed = np.zeros(n_gt, np.bool_)
    for g in range(n_gt):
        missed[g] = not (g_ignore[g] or g_crowd[g]) and not used[g] and not usable[g]
    # 3. the label of every regular ground truth: its highest-scoring detection at IoU >= fg (ignored ones and true
    #    positives of other objects excepted; ties in file order, as the evaluator breaks them within an image)
    for im in range(n_img):
        gs, ge = img_gt_start[im], img_gt_start[im + 1]
        for g in range(gs, ge):
            gt_label[g] = -1
            if g_ignore[g] or g_crowd[g]:
                continue
            top = -1
            for r in range(det_start[im], det_start[im + 1]):
                if kind[r] == -1 or (kind[r] == 0 and took[r] != g):
                    continue
                if table[offset[r] + (g - gs)] < fg:
                    continue
                if top < 0 or d_score[r] > d_score[top] or (d_score[r] == d_score[top] and d_file[r] < d_file[top]):
                    top = r
            if top >= 0:
                gt_label[g] = d_cat[top]
    return missed, disagree


def analyse_errors(gt, dets, res: EvalResult, dilation_ratio: float = 0.02) -> DetectionErrors:
    """The error of every detection of ``res`` (an evaluation of ``dets`` against ``gt``); module docstring."""
    order = res.order
    det_img = gt.images.lookup(dets.image_id[order])
    det_cat = gt.cats.lookup(dets.category_id[order])
    n_img = len(gt.images)
    # image by image, category by category, then the evaluator's order (score, ties in file order)
    sort = np.lexsort((np.arange(len(order)), det_cat, det_img))
    det_sorted = order[sort]
    img_of = det_img[sort]
    det_start = np.searchsorted(img_of, np.arange(n_img + 1)).astype(np.int64)
    img_gt_start = np.searchsorted(gt.gt_img, np.arange(n_img + 1)).astype(np.int64)
    table, offset = _image_ious(gt, dets, res.iou_type, dilation_ratio, det_sorted, img_of, img_gt_start, det_start)
    tp = (res.det_tp[sort] & np.uint64(1)) != 0  # bit 0: IoU threshold 0.5, area all
    ig = (res.det_ig[sort] & np.uint64(1)) != 0
    kind = np.zeros(len(order), np.int64)
    target = np.full(len(order), -1, np.int64)
    fix_tp = np.zeros(len(order), np.bool_)
    match_iou = np.zeros(len(order))
    gt_label = np.full(len(gt.gt_cat), -1, np.int64)
    missed, disagree = _classify(det_start, img_gt_start, det_cat[sort], dets.score[det_sorted], det_sorted, tp, ig,
                                 gt.gt_cat, gt.gt_ignore, gt.gt_crowd, gt.gt_area, gt.gt_id != 0, AREA_RNG[0, 0],
                                 AREA_RNG[0, 1], table, offset, FG_IOU, BG_IOU, kind, target, fix_tp, match_iou,
                                 gt_label)
    if disagree:
        raise RuntimeError(f"error analysis: {disagree} true positives differ from the evaluator's (a bug in mec)")
    back = np.empty_like(sort)
    back[sort] = np.arange(len(sort))  # from the sorted layout back to order positions
    return DetectionErrors(kind[back], target[back], fix_tp[back], det_cat, dets.score[order],
                           det_img * max(len(dets), 1) + order, gt.gt_cat, missed, ~(gt.gt_ignore | gt.gt_crowd),
                           gt.num_cats, match_iou[back], gt_label)


def category_ap50(cat: np.ndarray, score: np.ndarray, tie: np.ndarray, tp: np.ndarray, num_gt: np.ndarray,
                  num_cats: int) -> np.ndarray:
    """AP at one IoU threshold per category from ranked detections (non-ignored only): the evaluator's
    101-point interpolated precision (COCO), averaged over the recall thresholds.

    ``tie`` orders equal scores (the evaluator: image, then file order). Returns (K,) with 0 for a category
    with detections or ground truth but no ground truth left, and NaN for one never measured (no entries).
    """
    eps = np.spacing(1)
    sort = np.lexsort((tie, -score, cat))
    cat, tp = cat[sort], tp[sort]
    bounds = np.searchsorted(cat, np.arange(num_cats + 1))
    ap = np.zeros(num_cats)
    for k in range(num_cats):
        n_gt = num_gt[k]
        if n_gt <= 0:
            continue
        t = tp[bounds[k]:bounds[k + 1]]
        if not t.size:
            continue
        ctp = np.cumsum(t, dtype=np.float64)
        cfp = np.cumsum(~t, dtype=np.float64)
        rc = ctp / n_gt
        pr = ctp / (cfp + ctp + eps)
        pr = np.maximum.accumulate(pr[::-1])[::-1]
        idx = np.searchsorted(rc, REC_THRS, side="left")
        ap[k] = np.where(idx < len(pr), pr[np.minimum(idx, len(pr) - 1)], 0.0).mean()
    return ap


def fixed_ap(errors: DetectionErrors, fix: Optional[str]) -> np.ndarray:
    """(K,) AP50 per category with the errors of type ``fix`` fixed (module docstring); ``fix=None``: as evaluated."""
    e = errors
    keep = e.kind != IGNORED
    cat, tp = e.det_cat.copy(), e.kind == TP
    gt_counted = np.bincount(e.gt_cat[e.regular], minlength=e.num_cats)
    num_gt = gt_counted.copy()
    if fix == "miss":
        num_gt = num_gt - np.bincount(e.gt_cat[e.missed], minlength=e.num_cats)
    elif fix in ("cls", "loc"):
        hit = e.kind == CODE[fix]
        keep &= ~hit | e.fix_tp
        tp |= hit & e.fix_tp
        if fix == "cls":
            cat[hit & e.fix_tp] = e.gt_cat[e.target[hit & e.fix_tp]]
    elif fix is not None:
        keep &= e.kind != CODE[fix]
    ap = category_ap50(cat[keep], e.score[keep], e.tie[keep], tp[keep], num_gt, e.num_cats)
    ap[gt_counted == 0] = np.nan  # never measured: no ground truth to begin with
    return ap


def _mean(values: np.ndarray) -> Optional[float]:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


def error_summary(errors: DetectionErrors, groupings: Dict[str, Dict[str, Sequence[int]]]) -> Dict:
    """The ``errors`` section of the metrics JSON (layout in :mod:`mec_cli.evaluation.api`).

    ``groupings``: grouping name -> {group name: category indices}, groups ordered rare to frequent.
    """
    base = fixed_ap(errors, None)
    fixed = {t: fixed_ap(errors, t) for t in ERROR_TYPES}
    out: Dict = {"fg_iou": FG_IOU, "bg_iou": BG_IOU, "types": list(ERROR_TYPES), "groupings": {}}
    cls = errors.kind == CLS
    cls_det_cat = errors.det_cat[cls]
    cls_gt_cat = errors.gt_cat[errors.target[cls]]
    for grouping, groups in groupings.items():
        group_of = np.full(errors.num_cats, -1, np.int64)
        for g, idx in enumerate(groups.values()):
            group_of[np.asarray(idx, np.int64)] = g
        sections = {}
        for g, (name, idx) in enumerate([*groups.items(), ("all", range(errors.num_cats))]):
            idx = np.asarray(list(idx), np.int64)
            member = np.zeros(errors.num_cats, np.bool_)
            member[idx] = True
            ap = _mean(base[idx])
            d_ap = {t: (None if ap is None else _mean(fixed[t][idx]) - ap) for t in ERROR_TYPES}
            total = sum(v for v in d_ap.values() if v is not None)
            count = {t: int(((errors.kind == CODE[t]) & member[errors.det_cat]).sum()) for t in CODE}
            count["miss"] = int((errors.missed & member[errors.gt_cat]).sum())
            count = {t: count[t] for t in ERROR_TYPES}
            if name == "all":
                on_group = np.ones(cls_gt_cat.size, np.bool_)
                more = group_of[cls_det_cat] > group_of[cls_gt_cat]
            else:
                on_group = member[cls_gt_cat]
                more = group_of[cls_det_cat[on_group]] > g
            sections[name] = {
                "AP50": ap, "dAP": d_ap,
                "share": {t: (d_ap[t] / total if total > 0 else None) for t in ERROR_TYPES},
                "count": count, "cls_objects": int(on_group.sum()),
                "cls_to_more_frequent": float(more.mean()) if more.size else None,
            }
        out["groupings"][grouping] = sections
    return out


def analyse(gt, dets, res: EvalResult, groupings: Dict[str, Dict[str, List[int]]],
            dilation_ratio: float = 0.02) -> Dict:
    """:func:`analyse_errors`, then :func:`error_summary`."""
    return error_summary(analyse_errors(gt, dets, res, dilation_ratio), groupings)
