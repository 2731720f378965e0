"""numba kernels of the evaluator: ordering and capping detections, greedy matching and precision accumulation.

They reproduce lvis-api's ``LVISEval`` and pycocotools' ``COCOeval`` loop for loop, including their tie rules,
so the numbers are identical, not just close:

* a detection cap keeps the highest scores, ties in file order (LVIS: 300 per image, ``sorted(..., reverse=True)``;
  COCO: 100 per image and category, a mergesort; Fixed AP: K per category over the dataset, a stable sort);
* within an (image, category) pair detections are matched highest score first, ties in file order; a later ground
  truth with an equal IoU wins; a detection matched to a regular ground truth stops at the first ignored one;
* per category, detections are accumulated highest score first, ties in image order, then pair order (the
  reference tools' mergesort of the concatenated per-image lists).

All work is O(N) passes plus small per-image and per-category sorts; categories are matched and accumulated in
parallel. Every array here is a plain numpy array; nothing allocates per detection.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

EPS = np.spacing(1)
CAP_NONE, CAP_IMAGE, CAP_PAIR, CAP_CATEGORY = 0, 1, 2, 3


@njit(cache=True, nogil=True)
def _stable_bucket_order(keys, num_keys, items):
    """``items`` reordered by ``keys[items]`` (counting sort: stable, O(n + num_keys)); returns (order, ptr)."""
    counts = np.zeros(num_keys + 1, np.int64)
    for i in items:
        counts[keys[i] + 1] += 1
    for k in range(num_keys):
        counts[k + 1] += counts[k]
    ptr = counts.copy()
    out = np.empty(items.shape[0], np.int64)
    for i in items:
        k = keys[i]
        out[counts[k]] = i
        counts[k] += 1
    return out, ptr


@njit(cache=True, nogil=True)
def _score_order(seg, score):
    """The positions of ``seg`` highest score first, ties in ``seg`` order (a stable sort)."""
    neg = np.empty(seg.shape[0])
    for j in range(seg.shape[0]):
        neg[j] = -score[seg[j]]
    return np.argsort(neg, kind="mergesort")


@njit(cache=True, nogil=True)
def _find_pair(img_ptr, img_cat, img, cat):
    """Row of (img, cat) in the ground truth's per-image table (categories sorted), or -1."""
    lo, hi = img_ptr[img], img_ptr[img + 1]
    while lo < hi:
        mid = (lo + hi) // 2
        c = img_cat[mid]
        if c < cat:
            lo = mid + 1
        elif c > cat:
            hi = mid
        else:
            return mid
    return -1


@njit(cache=True, nogil=True)
def pair_rows(img_ptr, img_cat, img, cat):
    """:func:`_find_pair` for arrays of (image, category) indices."""
    out = np.empty(img.shape[0], np.int64)
    for i in range(img.shape[0]):
        out[i] = _find_pair(img_ptr, img_cat, img[i], cat[i])
    return out


@njit(cache=True, nogil=True)
def order_detections(img_idx, cat_idx, score, num_images, num_cats, cap_kind, cap, federated, img_ptr, img_cat, pair_allowed):
    """Which detections count, in accumulation order.

    Args:
        img_idx, cat_idx: (N,) image and category index of every detection (file order).
        score: (N,) float64.
        cap_kind, cap: CAP_IMAGE (LVIS), CAP_PAIR (COCO), CAP_CATEGORY (Fixed AP) or CAP_NONE, and the cap.
        federated: drop detections of categories neither annotated nor negative in their image (LVIS).
        img_ptr, img_cat, pair_allowed: the ground truth's per-image category rows (see ``GroundTruth``).

    Returns:
        order: (M,) kept detection indices, category by category, highest score first, ties in image then
            file order; cat_ptr: (num_cats + 1,) start of each category in ``order``.
    """
    n = img_idx.shape[0]
    everyone = np.arange(n)
    keep = np.ones(n, np.bool_)
    # 1. every detection, image by image, file order kept (a stable counting sort)
    by_img, img_start = _stable_bucket_order(img_idx, num_images, everyone)
    if cap_kind == CAP_IMAGE or cap_kind == CAP_PAIR:
        seen = np.zeros(num_cats, np.int64)
        for im in range(num_images):
            seg = by_img[img_start[im]:img_start[im + 1]]
            if seg.shape[0] <= cap and cap_kind == CAP_IMAGE:
                continue
            o = _score_order(seg, score)
            for j in range(seg.shape[0]):
                d = seg[o[j]]
                if cap_kind == CAP_IMAGE:
                    keep[d] = j < cap
                else:
                    seen[cat_idx[d]] += 1
                    keep[d] = seen[cat_idx[d]] <= cap
            if cap_kind == CAP_PAIR:
                for j in range(seg.shape[0]):
                    seen[cat_idx[seg[j]]] = 0
    elif cap_kind == CAP_CATEGORY:
        by_cat, cat_start = _stable_bucket_order(cat_idx, num_cats, everyone)
        for k in range(num_cats):
            seg = by_cat[cat_start[k]:cat_start[k + 1]]
            if seg.shape[0] > cap:
                o = _score_order(seg, score)
                for j in range(cap, seg.shape[0]):
                    keep[seg[o[j]]] = False
    # 2. the federated rule: a category neither annotated nor negative in the image does not count there
    if federated:
        for d in range(n):
            if keep[d]:
                row = _find_pair(img_ptr, img_cat, img_idx[d], cat_idx[d])
                keep[d] = row >= 0 and pair_allowed[row]
    # 3. category by category (stable, so image and file order hold within), then highest score first
    m = 0
    for d in range(n):
        if keep[d]:
            m += 1
    kept = np.empty(m, np.int64)
    m = 0
    for d in by_img:
        if keep[d]:
            kept[m] = d
            m += 1
    order, cat_ptr = _stable_bucket_order(cat_idx, num_cats, kept)
    for k in range(num_cats):
        s, e = cat_ptr[k], cat_ptr[k + 1]
        if e - s > 1:
            seg = order[s:e].copy()
            o = _score_order(seg, score)
            for j in range(e - s):
                order[s + j] = seg[o[j]]
    return order, cat_ptr


@njit(cache=True, nogil=True)
def _box_iou(db, gb, crowd):
    """IoU of two xywh boxes as pycocotools' bbIou computes it (crowd: intersection over the detection's area)."""
    w = min(db[0] + db[2], gb[0] + gb[2]) - max(db[0], gb[0])
    if w <= 0:
        return 0.0
    h = min(db[1] + db[3], gb[1] + gb[3]) - max(db[1], gb[1])
    if h <= 0:
        return 0.0
    inter = w * h
    da = db[2] * db[3]
    union = da if crowd else da + gb[2] * gb[3] - inter
    return inter / union


@njit(cache=True, nogil=True, parallel=True)
def match_and_accumulate(order, cat_ptr, img_idx, det_box, det_area, iou_table, iou_off, img_ptr, img_cat, pair_gt_start,
                         pair_gt_count, pair_nel, gt_box, gt_area, gt_ignore, gt_crowd, gt_has_id, gt_npig, iou_thrs, area_rng,
                         rec_thrs, precision, recall, det_tp, det_ig):
    """Greedy matching and precision accumulation of every category (in parallel).

    Args:
        order, cat_ptr: from :func:`order_detections`.
        det_box, det_area: (N, 4) xywh boxes and (N,) areas of all detections.
        iou_table, iou_off: precomputed IoUs (segm/boundary): the IoUs of the detection at ``order`` position p
            with its pair's ground truths start at ``iou_off[p]``; ``iou_off[0] == -1`` means: box IoU on the fly.
        img_ptr, img_cat, pair_*: the ground truth's per-image category rows: first ground truth (in
            ``gt_*`` order) and count of the pair, and whether the category is not exhaustively annotated there.
        gt_npig: (K, A) non-ignored ground truths of each category per area range.

    Writes ``precision`` (T, R, K, A), ``recall`` (T, K, A) (-1 stays where a category has no ground truth) and,
    per ``order`` position, ``det_tp``/``det_ig`` bit masks (bit t * A + a: matched / ignored at threshold t, area a).
    """
    num_thr = iou_thrs.shape[0]
    num_area = area_rng.shape[0]
    num_rec = rec_thrs.shape[0]
    num_cats = cat_ptr.shape[0] - 1
    matched = np.zeros((gt_box.shape[0], num_thr, num_area), np.bool_)
    on_the_fly = iou_off.shape[0] == 0 or iou_off[0] < 0
    max_ng = 0
    for r in range(pair_gt_count.shape[0]):
        max_ng = max(max_ng, pair_gt_count[r])
    max_gt = 0  # the most true positives any category can have
    for k in range(gt_npig.shape[0]):
        for a in range(gt_npig.shape[1]):
            max_gt = max(max_gt, gt_npig[k, a])
    for k in prange(num_cats):
        s, e = cat_ptr[k], cat_ptr[k + 1]
        ious = np.empty(max_ng)
        gorder = np.empty(max_ng, np.int64)
        g_ig = np.empty(max_ng, np.bool_)
        # 1. match every detection of the category, highest score first (pair order is score, then file order)
        for p in range(s, e):
            d = order[p]
            row = _find_pair(img_ptr, img_cat, img_idx[d], k)
            gs = pair_gt_start[row] if row >= 0 else 0
            ng = pair_gt_count[row] if row >= 0 else 0
            nel = pair_nel[row] if row >= 0 else False
            for g in range(ng):
                if on_the_fly:
                    ious[g] = _box_iou(det_box[d], gt_box[gs + g], gt_crowd[gs + g])
                else:
                    ious[g] = iou_table[iou_off[p] + g]
            tp_bits = np.uint64(0)
            ig_bits = np.uint64(0)
            best_iou = 0.0
            for g in range(ng):
                best_iou = max(best_iou, ious[g])
            if ng == 0 or best_iou < min(iou_thrs[0], 1 - 1e-10):
                # nothing to match (no ground truth, or none overlaps enough at the lowest threshold): unmatched
                # everywhere, and ignored wherever the area range or the not-exhaustive rule says so
                for a in range(num_area):
                    if det_area[d] < area_rng[a, 0] or det_area[d] > area_rng[a, 1] or nel:
                        for t in range(num_thr):
                            ig_bits |= np.uint64(1) << np.uint64(t * num_area + a)
                det_tp[p] = tp_bits
                det_ig[p] = ig_bits
                continue
            for a in range(num_area):
                lo, hi = area_rng[a, 0], area_rng[a, 1]
                # ground truths regular first, then ignored, each in file order (a stable argsort on _ignore)
                q = 0
                for g in range(ng):
                    gi = gs + g
                    if not (gt_ignore[gi] or gt_area[gi] < lo or gt_area[gi] > hi):
                        gorder[q] = g
                        g_ig[q] = False
                        q += 1
                for g in range(ng):
                    gi = gs + g
                    if gt_ignore[gi] or gt_area[gi] < lo or gt_area[gi] > hi:
                        gorder[q] = g
                        g_ig[q] = True
                        q += 1
                for t in range(num_thr):
                    best = min(iou_thrs[t], 1 - 1e-10)
                    m = -1
                    for j in range(ng):
                        gi = gs + gorder[j]
                        if matched[gi, t, a] and not gt_crowd[gi]:
                            continue
                        if m > -1 and not g_ig[m] and g_ig[j]:
                            break
                        v = ious[gorder[j]]
                        if v < best:
                            continue
                        best = v
                        m = j
                    matched_id = False
                    ignored = False
                    if m > -1:
                        gi = gs + gorder[m]
                        matched[gi, t, a] = True
                        ignored = g_ig[m]
                        matched_id = gt_has_id[gi]
                    # unmatched detections outside the area range (or of a not-exhaustive category) are ignored
                    if not matched_id and (det_area[d] < lo or det_area[d] > hi or nel):
                        ignored = True
                    bit = np.uint64(1) << np.uint64(t * num_area + a)
                    if matched_id and not ignored:
                        tp_bits |= bit
                    if ignored:
                        ig_bits |= bit
            det_tp[p] = tp_bits
            det_ig[p] = ig_bits
        # 2. precision at each recall threshold, per threshold and area range. Recall only grows at a true
        #    positive, and between two of them precision only falls, so the reference tools' precision envelope
        #    (max over the detections from a recall threshold on) is the max over the true positives from there
        #    on: one pass counts, then the few true positives (at most num_gt) give rc and pr as tp/num_gt and
        #    tp/(fp + tp + eps), exactly as the tools compute them.
        n = e - s
        ev_pr = np.empty(max_gt + 1)
        ev_rc = np.empty(max_gt + 1)
        for a in range(num_area):
            num_gt = gt_npig[k, a]
            if num_gt == 0:
                continue
            for t in range(num_thr):
                bit = np.uint64(1) << np.uint64(t * num_area + a)
                tp = 0.0
                fp = 0.0
                events = 0
                for i in range(n):
                    if det_tp[s + i] & bit:
                        tp += 1.0
                        ev_rc[events] = tp / num_gt
                        ev_pr[events] = tp / (fp + tp + EPS)
                        events += 1
                    elif not det_ig[s + i] & bit:
                        fp += 1.0
                recall[t, k, a] = tp / num_gt if n else 0.0
                for i in range(events - 1, 0, -1):
                    if ev_pr[i] > ev_pr[i - 1]:
                        ev_pr[i - 1] = ev_pr[i]
                j = 0
                for r in range(num_rec):  # the first true positive whose recall reaches each threshold
                    while j < events and ev_rc[j] < rec_thrs[r]:
                        j += 1
                    precision[t, r, k, a] = ev_pr[j] if j < events else 0.0
