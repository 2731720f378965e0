"""numba kernels of the evaluator: box IoU, greedy matching and precision accumulation.

They reproduce lvis-api's ``LVISEval`` and pycocotools' ``COCOeval`` loop for loop, including their
tie rules (a later ground truth with an equal IoU wins; a detection matched to a regular ground truth
stops at the first ignored one), so the numbers are identical, not just close.
"""
from __future__ import annotations

import numpy as np
from numba import njit

EPS = np.spacing(1)


@njit(cache=True, nogil=True)
def box_iou_pairs(det_box, gt_box, gt_crowd, det_start, det_count, gt_start, gt_count, iou_offset, out):
    """IoU of every (det, gt) within each pair, as pycocotools' bbIou computes it (xywh, crowd = inter/det).

    ``out[iou_offset[p] + d * gt_count[p] + g]`` receives the IoU of det d and gt g of pair p.
    """
    for p in range(det_start.shape[0]):
        nd = det_count[p]
        ng = gt_count[p]
        if nd == 0 or ng == 0:
            continue
        base = iou_offset[p]
        for d in range(nd):
            di = det_start[p] + d
            dx, dy, dw, dh = det_box[di, 0], det_box[di, 1], det_box[di, 2], det_box[di, 3]
            da = dw * dh
            for g in range(ng):
                gi = gt_start[p] + g
                gx, gy, gw, gh = gt_box[gi, 0], gt_box[gi, 1], gt_box[gi, 2], gt_box[gi, 3]
                w = min(dx + dw, gx + gw) - max(dx, gx)
                iou = 0.0
                if w > 0:
                    h = min(dy + dh, gy + gh) - max(dy, gy)
                    if h > 0:
                        inter = w * h
                        union = da if gt_crowd[gi] else da + gw * gh - inter
                        iou = inter / union
                out[base + d * ng + g] = iou


@njit(cache=True, nogil=True)
def match_pairs(ious, iou_offset, det_start, det_count, det_area, gt_start, gt_count, gt_area, gt_ignore, gt_crowd,
                gt_has_id, det_nel, iou_thrs, area_rng, det_tp, det_ig, npig_pair):
    """Greedy matching of each pair for every IoU threshold and area range.

    Writes ``det_tp[t, a, det]`` (matched to a regular gt with a non-zero id) and ``det_ig[t, a, det]``
    (ignored), and ``npig_pair[p, a]`` (number of non-ignored gts).
    """
    num_thr = iou_thrs.shape[0]
    num_area = area_rng.shape[0]
    for p in range(det_start.shape[0]):
        nd = det_count[p]
        ng = gt_count[p]
        ds = det_start[p]
        gs = gt_start[p]
        base = iou_offset[p]
        order = np.empty(ng, np.int64)
        g_ig = np.empty(ng, np.bool_)
        for a in range(num_area):
            lo = area_rng[a, 0]
            hi = area_rng[a, 1]
            # gt order: regular first, then ignored, each in file order (a stable argsort on _ignore)
            k = 0
            for g in range(ng):
                gi = gs + g
                if not (gt_ignore[gi] or gt_area[gi] < lo or gt_area[gi] > hi):
                    order[k] = g
                    g_ig[k] = False
                    k += 1
            npig_pair[p, a] = k
            for g in range(ng):
                gi = gs + g
                if gt_ignore[gi] or gt_area[gi] < lo or gt_area[gi] > hi:
                    order[k] = g
                    g_ig[k] = True
                    k += 1
            for t in range(num_thr):
                gt_matched = np.zeros(ng, np.bool_)
                for d in range(nd):
                    di = ds + d
                    best = min(iou_thrs[t], 1 - 1e-10)
                    m = -1
                    if ng > 0:
                        for j in range(ng):
                            g = order[j]
                            if gt_matched[j] and not gt_crowd[gs + g]:
                                continue
                            if m > -1 and not g_ig[m] and g_ig[j]:
                                break
                            v = ious[base + d * ng + g]
                            if v < best:
                                continue
                            best = v
                            m = j
                    matched_id = False
                    ignored = False
                    if m > -1:
                        gt_matched[m] = True
                        ignored = g_ig[m]
                        matched_id = gt_has_id[gs + order[m]]
                    # unmatched detections outside the area range (or of a not-exhaustive category) are ignored
                    if not matched_id and (det_area[di] < lo or det_area[di] > hi or det_nel[di]):
                        ignored = True
                    det_tp[t, a, di] = matched_id and not ignored
                    det_ig[t, a, di] = ignored


@njit(cache=True, nogil=True)
def accumulate(cat_start, cat_count, order, det_tp, det_ig, npig, rec_thrs, precision, recall):
    """Precision at each recall threshold, per (thr, cat, area), from detections sorted by score.

    ``order`` lists detection indices category by category, highest score first (ties in image
    order), as lvis-api's and pycocotools' mergesort produce them.
    """
    num_thr = det_tp.shape[0]
    num_area = det_tp.shape[1]
    num_rec = rec_thrs.shape[0]
    for k in range(cat_start.shape[0]):
        n = cat_count[k]
        s = cat_start[k]
        for a in range(num_area):
            num_gt = npig[k, a]
            if num_gt == 0:
                continue
            for t in range(num_thr):
                rc = np.empty(n)
                pr = np.empty(n)
                tp = 0.0
                fp = 0.0
                for i in range(n):
                    di = order[s + i]
                    if det_tp[t, a, di]:
                        tp += 1.0
                    elif not det_ig[t, a, di]:
                        fp += 1.0
                    rc[i] = tp / num_gt
                    pr[i] = tp / (fp + tp + EPS)
                recall[t, k, a] = rc[n - 1] if n else 0.0
                for i in range(n - 1, 0, -1):
                    if pr[i] > pr[i - 1]:
                        pr[i - 1] = pr[i]
                idx = np.searchsorted(rc, rec_thrs, side="left")
                for r in range(num_rec):
                    precision[t, r, k, a] = pr[idx[r]] if idx[r] < n else 0.0
