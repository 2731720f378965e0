"""numba kernels of the evaluator: ordering and capping detections, greedy matching and precision accumulation.

They reproduce lvis-api's ``LVISEval`` and pycocotools' ``COCOeval`` loop for loop, including their tie rules,
so the numbers are identical, not just close:

* a detection cap keeps the highest scores, ties in file order (LVIS: 300 per image, ``sorted(..., reverse=True)``;
  COCO: 100 per image and category, a mergesort; Fixed AP: K per category over the dataset, a stable sort);
* within an (image, category) pair detections are matched highest score first, ties in file order; a later ground
  truth with an equal IoU wins; a detection matched to a regular ground truth stops at the first ignored one;
* per category, detections are accumulated highest score first, ties in image order, then pair order (the
  reference tools' mergesort of the concatenated per-image lists).

All work is O(N) passes plus small per-image and per-category sorts: detections are matched image by image (the
memory order of a results file) and accumulated category by category, both side by side on the cores (the kernels
release the GIL; :func:`mec_cli.evaluation.compiled.split` runs them on ranges of images or categories in threads,
which the ahead-of-time build can do and numba's ``parallel=True`` could not). Every array here is a plain numpy
array; nothing allocates per detection.
"""
from __future__ import annotations

import numpy as np

from mec_cli.evaluation.compiled import njit, split

EPS = np.spacing(1)
CAP_NONE, CAP_IMAGE, CAP_PAIR, CAP_CATEGORY = 0, 1, 2, 3
BLOCK = 8192  # numpy sums a contiguous array in blocks of its buffer size (see numpy_sum)


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


@njit(cache=True, nogil=True, inline="always")
def _descending_key(score, bits, d):
    """A uint64 that sorts ascending as ``score[d]`` descending: a finite double's sign-folded bits order like the
    double; 0.0 and -0.0 share a key (they compare equal)."""
    u = bits[d]
    if score[d] == 0.0:
        u = np.uint64(0)
    top = np.uint64(1) << np.uint64(63)
    return ~(~u if u & top else u | top)


@njit(cache=True, nogil=True)
def _sort_by_score(items, lo, hi, score, bits, keys, tmp_k, tmp_i, counts, mask):
    """``items[lo:hi]`` in place, highest score first, ties in their present order (a stable sort).

    Short runs by insertion; longer ones by an LSD radix sort on the keys of :func:`_descending_key`: eight 8-bit
    digits counted in one pass, and a digit every key shares (scores within one binade, or the zero low bits of
    float32 scores) skipped. ``keys``, ``tmp_k``, ``tmp_i`` hold at least ``hi - lo`` values; ``counts`` is (8, 256).
    An item is a detection's index in its bits under ``mask`` (the bits above may carry other data).
    """
    n = hi - lo
    if n < 2:
        return
    for i in range(n):
        keys[i] = _descending_key(score, bits, items[lo + i] & mask)
    if n <= 24:
        for i in range(1, n):
            k, it = keys[i], items[lo + i]
            j = i - 1
            while j >= 0 and keys[j] > k:
                keys[j + 1] = keys[j]
                items[lo + j + 1] = items[lo + j]
                j -= 1
            keys[j + 1] = k
            items[lo + j + 1] = it
        return
    counts[:, :] = 0
    for i in range(n):
        key = keys[i]
        for p in range(8):
            counts[p, (key >> np.uint64(8 * p)) & np.uint64(255)] += 1
    src_k, dst_k = keys, tmp_k
    src_i, dst_i = items[lo:hi], tmp_i
    in_items = True  # src_i is the items' own slice
    for p in range(8):
        shift = np.uint64(8 * p)
        if counts[p, (src_k[0] >> shift) & np.uint64(255)] == n:
            continue  # every key has this digit
        acc = 0
        for b in range(256):
            c = counts[p, b]
            counts[p, b] = acc
            acc += c
        for i in range(n):
            b = (src_k[i] >> shift) & np.uint64(255)
            q = counts[p, b]
            dst_k[q] = src_k[i]
            dst_i[q] = src_i[i]
            counts[p, b] = q + 1
        src_k, dst_k = dst_k, src_k
        src_i, dst_i = dst_i, src_i
        in_items = not in_items
    if not in_items:
        for i in range(n):
            items[lo + i] = src_i[i]


@njit(cache=True, nogil=True)
def _sort_categories_by_score(order, cat_ptr, score, k0, k1, packed):
    """:func:`_sort_by_score` of the categories k0..k1-1 of ``order``."""
    longest = 0
    for k in range(k0, k1):
        longest = max(longest, cat_ptr[k + 1] - cat_ptr[k])
    bits = score.view(np.uint64)
    keys, tmp_k = np.empty(longest, np.uint64), np.empty(longest, np.uint64)
    tmp_i = np.empty(longest, np.int64)
    counts = np.empty((8, 256), np.int64)
    mask = (1 << 40) - 1 if packed else -1
    for k in range(k0, k1):
        _sort_by_score(order, cat_ptr[k], cat_ptr[k + 1], score, bits, keys, tmp_k, tmp_i, counts, mask)


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
def lookup_ids(values, table, sorted_ids, out):
    """Position of each value among the ids (a dense table when given, else a binary search in ``sorted_ids``), -1
    for an unknown id. Returns the index of the first unknown value, or -1."""
    first_bad = -1
    use_table = table.shape[0] > 0
    n_ids = sorted_ids.shape[0]
    for i in range(values.shape[0]):
        v = values[i]
        pos = -1
        if use_table:
            if 0 <= v < table.shape[0]:
                pos = table[v]
        else:
            j = np.searchsorted(sorted_ids, v)
            if j < n_ids and sorted_ids[j] == v:
                pos = j
        out[i] = pos
        if pos < 0 and first_bad < 0:
            first_bad = i
    return first_bad


@njit(cache=True, nogil=True)
def pair_rows(img_ptr, img_cat, img, cat):
    """:func:`_find_pair` for arrays of (image, category) indices."""
    out = np.empty(img.shape[0], np.int64)
    for i in range(img.shape[0]):
        out[i] = _find_pair(img_ptr, img_cat, img[i], cat[i])
    return out


@njit(cache=True, nogil=True)
def _image_order(img_idx, num_images):
    """Every detection image by image, file order kept within (a stable counting sort), each image's start, and
    whether the detections already lie image by image (usual for results files): then the order is the identity,
    returned empty (``_nth`` reads it)."""
    n = img_idx.shape[0]
    starts = np.zeros(num_images + 1, np.int64)
    grouped = True
    for d in range(n):
        starts[img_idx[d] + 1] += 1
        if d and img_idx[d] < img_idx[d - 1]:
            grouped = False
    for i in range(num_images):
        starts[i + 1] += starts[i]
    if grouped:
        return np.empty(0, np.int64), starts, True
    by_img, starts = _stable_bucket_order(img_idx, num_images, np.arange(n))
    return by_img, starts, False


@njit(cache=True, nogil=True, inline="always")
def _nth(by_img, grouped, j):
    """The j-th detection in image order (see :func:`_image_order`)."""
    return j if grouped else by_img[j]


def order_detections(img_idx, cat_idx, score, num_images, num_cats, cap_kind, cap, federated, img_ptr, img_cat,
                     pair_allowed, pack=True):
    """Which detections count, image by image and in accumulation order.

    Args:
        img_idx, cat_idx: (N,) image and category index of every detection (file order).
        score: (N,) float64.
        cap_kind, cap: CAP_IMAGE (LVIS), CAP_PAIR (COCO), CAP_CATEGORY (Fixed AP) or CAP_NONE, and the cap.
        federated: drop detections of categories neither annotated nor negative in their image (LVIS).
        img_ptr, img_cat, pair_allowed: the ground truth's per-image category rows (see ``GroundTruth``).
        pack: let the sort carry each detection's image in its index's high bits where they fit (False: look it up
            again afterwards; the same result, slower).

    Returns:
        order: (M,) the detections that count, category by category, highest score first, ties in image then
            file order; cat_ptr: (num_cats + 1,) start of each category in ``order``;
        img_seq, img_seq_ptr: the same detections image by image, each image's in ``order``'s order (category by
            category, the matching order), and where each image starts.
    """
    order, cat_ptr, img_seq_ptr, packed = _order_by_category(img_idx, cat_idx, score, num_images, num_cats, cap_kind,
                                                             cap, federated, img_ptr, img_cat, pair_allowed, pack)
    # 3. each category highest score first, categories side by side (about equal numbers of detections per thread)
    split(lambda k0, k1: _sort_categories_by_score(order, cat_ptr, score, k0, k1, packed), cat_ptr)
    img_seq = _matching_order(order, img_seq_ptr, img_idx, packed)
    return order, cat_ptr, img_seq, img_seq_ptr


@njit(cache=True, nogil=True)
def _order_by_category(img_idx, cat_idx, score, num_images, num_cats, cap_kind, cap, federated, img_ptr, img_cat,
                       pair_allowed, pack):
    """Steps 1 and 2 of :func:`order_detections`, and step 3 up to the sort: (order, cat_ptr, img_seq_ptr, packed),
    ``order`` category by category in image then file order, each entry carrying its image above bit 40 when
    ``packed``."""
    n = img_idx.shape[0]
    keep = np.ones(n, np.bool_)
    # 1. every detection, image by image, file order kept
    by_img, img_start, grouped = _image_order(img_idx, num_images)
    if cap_kind == CAP_IMAGE or cap_kind == CAP_PAIR:
        seen = np.zeros(num_cats, np.int64)
        for im in range(num_images):
            if img_start[im + 1] - img_start[im] <= cap and cap_kind == CAP_IMAGE:
                continue
            lo, hi = img_start[im], img_start[im + 1]
            seg = np.arange(lo, hi) if grouped else by_img[lo:hi]
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
        by_cat, cat_start = _stable_bucket_order(cat_idx, num_cats, np.arange(n))
        for k in range(num_cats):
            seg = by_cat[cat_start[k]:cat_start[k + 1]]
            if seg.shape[0] > cap:
                o = _score_order(seg, score)
                for j in range(cap, seg.shape[0]):
                    keep[seg[o[j]]] = False
    # 2. the federated rule (a category neither annotated nor negative in the image does not count there; the
    #    image's allowed categories marked in a scratch row), and the counts of what is kept per category and image
    allowed = np.zeros(num_cats if federated else 0, np.bool_)
    cat_ptr = np.zeros(num_cats + 1, np.int64)
    img_seq_ptr = np.zeros(num_images + 1, np.int64)
    for im in range(num_images):
        if federated:
            for row in range(img_ptr[im], img_ptr[im + 1]):
                allowed[img_cat[row]] = pair_allowed[row]
        c = 0
        for j in range(img_start[im], img_start[im + 1]):
            d = _nth(by_img, grouped, j)
            if keep[d]:
                if federated and not allowed[cat_idx[d]]:
                    keep[d] = False
                    continue
                cat_ptr[cat_idx[d] + 1] += 1
                c += 1
        img_seq_ptr[im + 1] = img_seq_ptr[im] + c
        if federated:
            for row in range(img_ptr[im], img_ptr[im + 1]):
                allowed[img_cat[row]] = False
    for k in range(num_cats):
        cat_ptr[k + 1] += cat_ptr[k]
    m = cat_ptr[num_cats]
    # 3. category by category in image then file order (a stable bucket; the caller then sorts each by score); each
    #    entry carries its image in the bits above the detection's index when both fit
    packed = pack and num_images < (1 << 23) and n < (1 << 40)
    order = np.empty(m, np.int64)
    pos = cat_ptr[:-1].copy()
    for im in range(num_images):
        tag = im << 40 if packed else 0
        for j in range(img_start[im], img_start[im + 1]):
            d = _nth(by_img, grouped, j)
            if keep[d]:
                k = cat_idx[d]
                order[pos[k]] = d | tag
                pos[k] += 1
    return order, cat_ptr, img_seq_ptr, packed


@njit(cache=True, nogil=True)
def _matching_order(order, img_seq_ptr, img_idx, packed):
    """Step 4 of :func:`order_detections`: img_seq, and ``order`` without the image bits."""
    m = order.shape[0]
    # 4. the matching order: image by image (a stable bucket of ``order``, so each image's detections stay category
    #    by category, highest score first, ties in file order: each pair's in the order the reference tools match)
    img_seq = np.empty(m, np.int64)
    pos = img_seq_ptr[:-1].copy()
    mask = (1 << 40) - 1
    for p in range(m):
        v = order[p]
        if packed:
            d, im = v & mask, v >> 40
            order[p] = d
        else:
            d, im = v, img_idx[v]
        img_seq[pos[im]] = d
        pos[im] += 1
    return img_seq


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


@njit(cache=True, nogil=True)
def _match_image(im, img_seq, s, e, cat_idx, det_box, det_area, area_from_box, use_table, iou_table, iou_off,
                 img_ptr, img_cat, pair_gt_start, pair_gt_count, pair_nel, gt_box, gt_area, gt_ignore, gt_crowd,
                 gt_has_id, iou_thrs, area_rng, bits, area_bits, thr_bits, max_ng, matched, det_tp, det_ig):
    """:func:`match_images` for the detections ``img_seq[s:e]`` of image ``im`` (pair by pair, in matching order).

    ``matched[gi]`` holds a ground truth's matches as bits t * A + a, like the detections' masks.
    """
    num_thr = iou_thrs.shape[0]
    num_area = area_rng.shape[0]
    lowest = min(iou_thrs[0], 1 - 1e-10)
    ious = np.empty(max_ng)
    gorder = np.empty((num_area, max_ng), np.int64)  # per area range: the pair's ground truths, regular first
    g_ig = np.empty((num_area, max_ng), np.bool_)
    g_igmask = np.empty(max_ng, np.uint64)  # a ground truth's ignored (threshold, area) bits
    cand = np.empty(max_ng, np.int64)
    cand_ig = np.empty(max_ng, np.bool_)
    area_lo, area_hi = area_rng[:, 0].copy(), area_rng[:, 1].copy()
    thr_eff = np.empty(num_thr)  # the IoU a match needs at each threshold, as the tools compare it
    for t in range(num_thr):
        thr_eff[t] = min(iou_thrs[t], 1 - 1e-10)
    every = np.uint64(0)
    for a in range(num_area):
        every |= area_bits[a]
    cur, gs, ng, nel = -1, 0, 0, False
    for j in range(s, e):
        d = img_seq[j]
        k = cat_idx[d]
        if k != cur:  # a new pair: its ground truths, and their matching order in every area range
            cur = k
            row = _find_pair(img_ptr, img_cat, im, k)
            gs = pair_gt_start[row] if row >= 0 else 0
            ng = pair_gt_count[row] if row >= 0 else 0
            nel = pair_nel[row] if row >= 0 else False
            for g in range(ng):
                g_igmask[g] = 0
            for a in range(num_area):
                lo, hi = area_rng[a, 0], area_rng[a, 1]
                # regular first, then ignored, each in file order (the tools' stable argsort on _ignore)
                q = 0
                for g in range(ng):
                    gi = gs + g
                    if not (gt_ignore[gi] or gt_area[gi] < lo or gt_area[gi] > hi):
                        gorder[a, q] = g
                        g_ig[a, q] = False
                        q += 1
                for g in range(ng):
                    gi = gs + g
                    if gt_ignore[gi] or gt_area[gi] < lo or gt_area[gi] > hi:
                        gorder[a, q] = g
                        g_ig[a, q] = True
                        g_igmask[g] |= area_bits[a]
                        q += 1
        # the candidates: ground truths this detection overlaps enough to match at the lowest threshold (the others
        # fail every threshold; dropping them changes nothing, see below)
        nc = 0
        last = 0
        if ng:
            dx, dy, dw, dh = det_box[d, 0], det_box[d, 1], det_box[d, 2], det_box[d, 3]
            box_area = dw * dh
            for g in range(ng):
                if use_table:
                    v = iou_table[iou_off[d] + g]
                else:  # pycocotools' bbIou (crowd: intersection over the detection's area)
                    gi = gs + g
                    gx, gy, gw, gh = gt_box[gi, 0], gt_box[gi, 1], gt_box[gi, 2], gt_box[gi, 3]
                    v = 0.0
                    iw = min(dx + dw, gx + gw) - max(dx, gx)
                    ih = min(dy + dh, gy + gh) - max(dy, gy)
                    if iw > 0 and ih > 0:
                        inter = iw * ih
                        v = inter / (box_area if gt_crowd[gi] else box_area + gw * gh - inter)
                ious[g] = v
                if v >= lowest:
                    nc += 1
                    last = g
        # unmatched, a detection is ignored wherever its area is outside the range or the category is not exhaustive
        da = det_box[d, 2] * det_box[d, 3] if area_from_box else det_area[d]
        out_bits = every if nel else np.uint64(0)
        for a in range(num_area):  # without branches: the comparisons go either way at random
            out_bits |= area_bits[a] * np.uint64((da < area_lo[a]) | (da > area_hi[a]))
        if nc == 0:  # nothing to match: unmatched everywhere
            det_tp[d] = 0
            det_ig[d] = out_bits
            continue
        if nc == 1:
            # one candidate (the common case), for every (threshold, area) at once: at each threshold its IoU
            # reaches, the detection takes it unless it is already taken (a crowd never is)
            gi = gs + last
            v = ious[last]
            reach = np.uint64(0)
            for t in range(num_thr):
                if v >= thr_eff[t]:
                    reach |= thr_bits[t]
            now = reach if gt_crowd[gi] else reach & ~matched[gi]
            matched[gi] |= now
            with_id = now if gt_has_id[gi] else np.uint64(0)
            det_tp[d] = with_id & ~g_igmask[last]
            det_ig[d] = (now & g_igmask[last]) | (out_bits & ~with_id)
            continue
        tp_bits = np.uint64(0)
        ig_bits = np.uint64(0)
        for a in range(num_area):
            # the candidates in matching order (the first ignored candidate stops the search wherever the first
            # ignored ground truth would have)
            nc = 0
            for jj in range(ng):
                g = gorder[a, jj]
                if ious[g] >= lowest:
                    cand[nc] = g
                    cand_ig[nc] = g_ig[a, jj]
                    nc += 1
            for t in range(num_thr):
                bit = bits[t, a]
                best = min(iou_thrs[t], 1 - 1e-10)
                mm = -1
                for c in range(nc):
                    gi = gs + cand[c]
                    if matched[gi] & bit and not gt_crowd[gi]:
                        continue
                    if mm > -1 and not cand_ig[mm] and cand_ig[c]:
                        break
                    v = ious[cand[c]]
                    if v < best:
                        continue
                    best = v
                    mm = c
                matched_id = False
                ignored = False
                if mm > -1:
                    gi = gs + cand[mm]
                    matched[gi] |= bit
                    ignored = cand_ig[mm]
                    matched_id = gt_has_id[gi]
                if not matched_id and out_bits & bit:
                    ignored = True
                if matched_id and not ignored:
                    tp_bits |= bit
                if ignored:
                    ig_bits |= bit
        det_tp[d] = tp_bits
        det_ig[d] = ig_bits


def match_images(img_seq, img_seq_ptr, cat_idx, det_box, det_area, area_from_box, use_table, iou_table, iou_off,
                 img_ptr, img_cat, pair_gt_start, pair_gt_count, pair_nel, gt_box, gt_area, gt_ignore, gt_crowd,
                 gt_has_id, iou_thrs, area_rng, det_tp, det_ig):
    """Greedy matching of every (image, category) pair, images side by side (ranges of images in threads), memory
    touched image by image.

    Args:
        img_seq, img_seq_ptr: the counted detections in matching order, from :func:`order_detections`.
        det_box, det_area: (N, 4) xywh boxes and (N,) areas of all detections; with ``area_from_box`` the area is
            the box's w * h, computed here (``det_area`` unused).
        use_table, iou_table, iou_off: precomputed IoUs (segm/boundary): those of detection d with its pair's
            ground truths start at ``iou_off[d]``; without ``use_table``, box IoUs computed on the fly.
        img_ptr, img_cat, pair_*: the ground truth's per-image category rows: first ground truth (in ``gt_*``
            order) and count of the pair, and whether the category is not exhaustively annotated there.

    Writes, for every detection d that counts, ``det_tp[d]``/``det_ig[d]``: bit masks, bit t * A + a set when
    matched to a (non-ignored, id != 0) ground truth / ignored at IoU threshold t and area range a.
    """
    matched = np.zeros(gt_box.shape[0], np.uint64)  # bit t * A + a: the ground truth is taken there
    max_ng = max(1, int(pair_gt_count.max())) if pair_gt_count.shape[0] else 1
    # an image's cost: its detections (a ground truth belongs to one image, so the ranges share nothing)
    split(lambda i0, i1: _match_image_range(i0, i1, img_seq, img_seq_ptr, cat_idx, det_box, det_area, area_from_box,
                                            use_table, iou_table, iou_off, img_ptr, img_cat, pair_gt_start,
                                            pair_gt_count, pair_nel, gt_box, gt_area, gt_ignore, gt_crowd, gt_has_id,
                                            iou_thrs, area_rng, max_ng, matched, det_tp, det_ig), img_seq_ptr)


@njit(cache=True, nogil=True)
def _match_image_range(i0, i1, img_seq, img_seq_ptr, cat_idx, det_box, det_area, area_from_box, use_table, iou_table,
                       iou_off, img_ptr, img_cat, pair_gt_start, pair_gt_count, pair_nel, gt_box, gt_area, gt_ignore,
                       gt_crowd, gt_has_id, iou_thrs, area_rng, max_ng, matched, det_tp, det_ig):
    """:func:`match_images` of images i0..i1-1 (``matched``: every ground truth's bits, zero at first)."""
    num_thr = iou_thrs.shape[0]
    num_area = area_rng.shape[0]
    bits = np.empty((num_thr, num_area), np.uint64)  # the bit of each (threshold, area range)
    area_bits = np.zeros(num_area, np.uint64)  # the bits of every threshold of an area range
    thr_bits = np.zeros(num_thr, np.uint64)  # the bits of every area range of a threshold
    for t in range(num_thr):
        for a in range(num_area):
            bits[t, a] = np.uint64(1) << np.uint64(t * num_area + a)
            area_bits[a] |= bits[t, a]
            thr_bits[t] |= bits[t, a]
    for im in range(i0, i1):
        _match_image(im, img_seq, img_seq_ptr[im], img_seq_ptr[im + 1], cat_idx, det_box, det_area, area_from_box,
                     use_table, iou_table, iou_off, img_ptr, img_cat, pair_gt_start, pair_gt_count, pair_nel, gt_box,
                     gt_area, gt_ignore, gt_crowd, gt_has_id, iou_thrs, area_rng, bits, area_bits, thr_bits, max_ng,
                     matched, det_tp, det_ig)


def accumulate(tp, ig, cat_ptr, gt_npig, num_thr, rec_thrs, precision, recall, cat_mean, mean_area):
    """Precision at each recall threshold of every category (ranges of categories side by side in threads).

    ``tp``/``ig`` are the detections' bit masks (bit t * A + a) in accumulation order (``order`` of
    :func:`order_detections`: category by category, highest score first; gathered beforehand, as a separate
    gather streams where loads inside this loop would stall it). Fills ``precision`` (T, R, K, A) and
    ``recall`` (T, K, A) entirely, -1 where a category has no ground truth, as the reference tools hold them, and
    ``cat_mean`` (K,): each category's mean precision over thresholds and recalls in area range ``mean_area`` (as
    :func:`mean_valid` of that category alone gives it, while its values are at hand).

    Recall only grows at a true positive, and between two of them precision only falls, so the reference tools'
    precision envelope (the max over the detections from a recall threshold on) is the max over the true
    positives from there on: one pass counts, then the few true positives (at most num_gt) give rc and pr as
    tp/num_gt and tp/(fp + tp + eps), exactly as the tools compute them (the counts are whole numbers in doubles,
    so every sum is exact).
    """
    num_cats = cat_ptr.shape[0] - 1
    # a category's cost: its detections, and writing its (T, R, A) precisions
    cost = cat_ptr + np.arange(num_cats + 1) * (num_thr * rec_thrs.shape[0] * gt_npig.shape[1] // 4)
    split(lambda k0, k1: _accumulate_range(k0, k1, tp, ig, cat_ptr, gt_npig, num_thr, rec_thrs, precision, recall,
                                           cat_mean, mean_area), cost)


@njit(cache=True, nogil=True)
def _accumulate_range(k0, k1, tp, ig, cat_ptr, gt_npig, num_thr, rec_thrs, precision, recall, cat_mean, mean_area):
    """:func:`accumulate` of categories k0..k1-1, 8 at a time (:func:`_accumulate_block`)."""
    num_area = gt_npig.shape[1]
    max_gt = 0  # the most true positives any category can have
    for k in range(k0, k1):
        for a in range(num_area):
            max_gt = max(max_gt, gt_npig[k, a])
    block = 8  # categories written together: a category alone touches each (t, r) row of precision apart
    for b0 in range(k0, k1, block):
        _accumulate_block(b0, min(b0 + block, k1), tp, ig, cat_ptr, gt_npig, num_thr, rec_thrs, max_gt, precision,
                          recall, cat_mean, mean_area)


@njit(cache=True, nogil=True)
def _accumulate_block(k0, k1, tp, ig, cat_ptr, gt_npig, num_thr, rec_thrs, max_gt, precision, recall, cat_mean,
                      mean_area):
    """:func:`accumulate` of categories k0..k1-1, computed apart and then written row by row."""
    num_area = gt_npig.shape[1]
    num_rec = rec_thrs.shape[0]
    buf_p = np.empty((k1 - k0, num_thr, num_rec, num_area))
    buf_r = np.empty((k1 - k0, num_thr, num_area))
    values = np.empty(num_thr * num_rec)
    for k in range(k0, k1):
        _accumulate_category(k, tp, ig, cat_ptr[k], cat_ptr[k + 1], gt_npig, num_thr, rec_thrs, max_gt,
                             buf_p[k - k0], buf_r[k - k0])
        if gt_npig[k, mean_area] == 0:
            cat_mean[k] = -1.0
        else:
            for t in range(num_thr):
                for r in range(num_rec):
                    values[t * num_rec + r] = buf_p[k - k0, t, r, mean_area]
            cat_mean[k] = numpy_sum(values, values.shape[0]) / values.shape[0]
    for t in range(num_thr):
        for r in range(num_rec):
            for k in range(k0, k1):
                for a in range(num_area):
                    precision[t, r, k, a] = buf_p[k - k0, t, r, a]
        for k in range(k0, k1):
            for a in range(num_area):
                recall[t, k, a] = buf_r[k - k0, t, a]


@njit(cache=True, nogil=True)
def _accumulate_category(k, tp, ig, s, e, gt_npig, num_thr, rec_thrs, max_gt, precision, recall):
    """:func:`accumulate` of category ``k`` into ``precision`` (T, R, A) and ``recall`` (T, A): one pass over its
    detections for every area range and threshold."""
    num_area = gt_npig.shape[1]
    num_rec = rec_thrs.shape[0]
    most = 0  # the most true positives this category can have
    for a in range(num_area):
        most = max(most, gt_npig[k, a])
    ev_pr = np.empty((num_area, num_thr, most + 1))
    ev_rc = np.empty((num_area, num_thr, most + 1))
    tpc = np.zeros((num_area, num_thr))
    fpc = np.zeros((num_area, num_thr))  # false positives at some thresholds only
    fp_all = np.zeros(num_area, np.int64)  # false positives at every threshold (the common case)
    events = np.zeros((num_area, num_thr), np.int64)
    area_bits = np.zeros(num_area, np.uint64)
    counted = np.uint64(0)  # the bits of the area ranges with ground truth
    for a in range(num_area):
        for t in range(num_thr):
            area_bits[a] |= np.uint64(1) << np.uint64(t * num_area + a)
        if gt_npig[k, a] > 0:
            counted |= area_bits[a]
    first = (np.uint64(1) << np.uint64(num_area)) - np.uint64(1)  # the bits of the first threshold
    spread = np.uint64(0)  # times the first threshold's bits: the same bits at every threshold
    for t in range(num_thr):
        spread |= np.uint64(1) << np.uint64(t * num_area)
    for i in range(s, e):
        tb_all = tp[i] & counted
        gb_all = ig[i] & counted
        low = gb_all & first
        if tb_all == 0 and gb_all == low * spread:
            # the common case: no match, and in each area range ignored at every threshold or at none
            for a in range(num_area):
                fp_all[a] += ((low >> np.uint64(a)) & np.uint64(1)) ^ np.uint64(1)
            continue
        for a in range(num_area):
            ab = area_bits[a]
            if not counted & ab:
                continue
            tb = tb_all & ab
            gb = gb_all & ab
            if tb == 0 and (gb == 0 or gb == ab):
                fp_all[a] += gb == 0  # a false positive at every threshold, or ignored at every one
                continue
            num_gt = gt_npig[k, a]
            for t in range(num_thr):
                bit = np.uint64(1) << np.uint64(t * num_area + a)
                if tb & bit:
                    tpc[a, t] += 1.0
                    ev_rc[a, t, events[a, t]] = tpc[a, t] / num_gt
                    ev_pr[a, t, events[a, t]] = tpc[a, t] / ((fpc[a, t] + fp_all[a]) + tpc[a, t] + EPS)
                    events[a, t] += 1
                elif not gb & bit:
                    fpc[a, t] += 1.0
    for a in range(num_area):
        num_gt = gt_npig[k, a]
        for t in range(num_thr):
            if num_gt == 0:  # nothing to find: -1, as the reference tools leave it
                recall[t, a] = -1.0
                for r in range(num_rec):
                    precision[t, r, a] = -1.0
                continue
            recall[t, a] = tpc[a, t] / num_gt if e > s else 0.0
            m = events[a, t]
            for i in range(m - 1, 0, -1):
                if ev_pr[a, t, i] > ev_pr[a, t, i - 1]:
                    ev_pr[a, t, i - 1] = ev_pr[a, t, i]
            j = 0
            for r in range(num_rec):  # the first true positive whose recall reaches each threshold
                while j < m and ev_rc[a, t, j] < rec_thrs[r]:
                    j += 1
                precision[t, r, a] = ev_pr[a, t, j] if j < m else 0.0


@njit(cache=True, nogil=True)
def valid_precisions(precision, thresholds, categories, area, out):
    """The valid (> -1) entries of ``precision[thresholds][:, :, categories, area]``, in that slice's C order, into
    ``out``; returns how many. np.mean of them is then bit-identical to the reference tools' ``np.mean(s[s > -1])``
    on the same slice (the same values in the same order), without their mask and copy of the whole array."""
    m = 0
    for t in thresholds:
        for r in range(precision.shape[1]):
            for k in categories:
                v = precision[t, r, k, area]
                if v > -1:
                    out[m] = v
                    m += 1
    return m


@njit(cache=True, nogil=True)
def _pairwise_leaf(a, lo, n):
    """numpy's pairwise sum of a[lo:lo + n] for n <= 128: 8 accumulators, then the remainder."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - (n % 8):
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True, nogil=True)
def pairwise_sum(a, lo, n):
    """numpy's pairwise summation of a[lo:lo + n], step for step (8 accumulators up to 128 values, halves above,
    the left half first), so a sum (and a mean) here is bit-identical to np.sum (np.mean) of the same contiguous
    values. The halving runs on an explicit stack: numba's cache mislinks recursive functions."""
    if n <= 128:
        return _pairwise_leaf(a, lo, n)
    los = np.empty(64, np.int64)
    ns = np.empty(64, np.int64)
    waiting = np.zeros(64, np.int64)  # 1: the left half is being summed; 2: the right half
    left = np.empty(64)
    top = 0
    los[0], ns[0] = lo, n
    while True:
        m = ns[top]
        if m > 128:  # split: the left half first
            half = m // 2
            half -= half % 8
            waiting[top] = 1
            top += 1
            los[top], ns[top], waiting[top] = los[top - 1], half, 0
            continue
        ret = _pairwise_leaf(a, los[top], m)
        top -= 1
        while top >= 0:  # hand the sum to the frames waiting for it
            if waiting[top] == 1:  # it was the left half: now the right one
                left[top] = ret
                waiting[top] = 2
                half = ns[top] // 2
                half -= half % 8
                top += 1
                los[top], ns[top], waiting[top] = los[top - 1] + half, ns[top - 1] - half, 0
                break
            ret = left[top] + ret
            top -= 1
        if top < 0:
            return ret


@njit(cache=True, nogil=True)
def numpy_sum(a, n):
    """np.sum of a contiguous float64 a[:n], bit for bit: numpy (2.2) reduces in blocks of its buffer size, 8192
    values, each summed pairwise (tests/evaluation check it against np.sum and np.mean)."""
    res = 0.0
    i = 0
    while i < n:
        m = min(BLOCK, n - i)
        res += pairwise_sum(a, i, m)
        i += m
    return res


@njit(cache=True, nogil=True)
def mean_valid(precision, thresholds, categories, area, scratch):
    """np.mean of the valid (> -1) entries of ``precision[thresholds][:, :, categories, area]`` (-1 when none),
    bit-identical to the reference tools' ``np.mean(s[s > -1])`` on that slice."""
    m = valid_precisions(precision, thresholds, categories, area, scratch)
    return numpy_sum(scratch, m) / m if m else -1.0


@njit(cache=True, nogil=True)
def _flush(buf, fill, sums, s):
    """Stream s's full block summed pairwise into ``sums[s]``; see :func:`area_means`."""
    sums[s] += pairwise_sum(buf[s], 0, fill[s])
    fill[s] = 0


@njit(cache=True, nogil=True)
def _close(buf, fill, sums, count, s):
    """The mean of stream s over its ``count`` values (-1 when none), and the stream emptied."""
    if fill[s]:
        _flush(buf, fill, sums, s)
    mean = sums[s] / count if count else -1.0
    sums[s] = 0.0
    return mean


@njit(cache=True, nogil=True)
def area_means(precision, out, out_t, set_of, set_area, set_out, set_out_t):
    """Per area range a: ``out[a]`` = :func:`mean_valid` over every threshold and category, ``out_t[a, t]`` over
    every category at threshold t; and per category set s (``set_of[k, g]``: the set of category k in grouping g, or
    -1) the same at area range ``set_area`` into ``set_out[s]`` and ``set_out_t[s, t]``. One pass over the precision
    array in memory order (-1 where none is valid).

    Each mean is streamed: values go to a block of numpy's size, and a full block is summed pairwise into the
    stream's sum, so the result is :func:`numpy_sum` of all its values without holding them. (The pushes are
    written out in the loop: a call per value, with its arrays' reference counting, costs ten times more.)
    """
    num_thr, num_rec, num_cats, num_area = precision.shape
    num_sets = set_out.shape[0]
    streams = 2 * (num_area + num_sets)  # per area range, then per set: all thresholds, then this threshold's
    buf = np.empty((streams, BLOCK))
    fill = np.zeros(streams, np.int64)
    sums = np.zeros(streams)
    n = np.zeros(num_area + num_sets, np.int64)
    n_t = np.zeros(num_area + num_sets, np.int64)
    half = num_area + num_sets
    for t in range(num_thr):
        n_t[:] = 0
        for r in range(num_rec):
            for k in range(num_cats):
                for a in range(num_area):
                    v = precision[t, r, k, a]
                    if v > -1:
                        n_t[a] += 1
                        s = a
                        buf[s, fill[s]] = v
                        fill[s] += 1
                        if fill[s] == BLOCK:
                            _flush(buf, fill, sums, s)
                        s = half + a
                        buf[s, fill[s]] = v
                        fill[s] += 1
                        if fill[s] == BLOCK:
                            _flush(buf, fill, sums, s)
                        if a == set_area:
                            for g in range(set_of.shape[1]):
                                if set_of[k, g] >= 0:
                                    q = num_area + set_of[k, g]
                                    n_t[q] += 1
                                    s = q
                                    buf[s, fill[s]] = v
                                    fill[s] += 1
                                    if fill[s] == BLOCK:
                                        _flush(buf, fill, sums, s)
                                    s = half + q
                                    buf[s, fill[s]] = v
                                    fill[s] += 1
                                    if fill[s] == BLOCK:
                                        _flush(buf, fill, sums, s)
        for q in range(half):
            mean = _close(buf, fill, sums, n_t[q], half + q)
            if q < num_area:
                out_t[q, t] = mean
            else:
                set_out_t[q - num_area, t] = mean
            n[q] += n_t[q]
    for q in range(half):
        mean = _close(buf, fill, sums, n[q], q)
        if q < num_area:
            out[q] = mean
        else:
            set_out[q - num_area] = mean


@njit(cache=True, nogil=True)
def category_means(precision, area, out):
    """:func:`mean_valid` of every category alone (over all thresholds and recalls), into ``out``."""
    scratch = np.empty(precision.shape[0] * precision.shape[1])
    thresholds = np.arange(precision.shape[0])
    one = np.empty(1, np.int64)
    for k in range(precision.shape[2]):
        one[0] = k
        out[k] = mean_valid(precision, thresholds, one, area, scratch)
