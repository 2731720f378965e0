"""Boundary IoU (Cheng et al., CVPR 2021) for Boundary AP, computed from RLEs within each mask's bounding box.

The definition is the reference one (boundary-iou-api, ``boundary_iou/utils/boundary_utils.py``,
``mask_to_boundary``; ``coco_instance_api/cocoeval.py``, ``computeBoundaryIoU``; its LVIS twin is the same):

1. d = max(1, round(dilation_ratio * sqrt(h^2 + w^2))) pixels, h x w the mask's own (image) size, ``round``
   being Python's (halves to even).
2. The mask's boundary is the mask minus its erosion by d iterations of a 3 x 3 square (OpenCV's ``cv2.erode``
   on the mask zero-padded by one pixel, so a mask cut by the image border has a boundary there too). That
   is the mask minus its erosion by a (2d + 1) x (2d + 1) square with zeros outside the image: every mask
   pixel within chessboard distance d of a background pixel or of the outside.
3. Boundary IoU of a detection and a ground truth = |B_d ∩ B_g| / |B_d ∪ B_g|.
4. The IoU Boundary AP matches with is **min(mask IoU, boundary IoU)** for regular ground truths and the
   plain mask IoU for crowd ones (COCO's ``iscrowd``: intersection over the detection's area), exactly as
   the reference ``ious[:, iscrowd == 0] = np.minimum(mask_ious, boundary_ious)``. The LVIS protocol has no
   crowds here (as lvis-api, the engine treats every LVIS ground truth as regular).

Mask IoU follows pycocotools' ``rleIou`` to the bit: the same integer intersection and union, the same
division, 0 when the intersection is empty, and -1 for masks of different sizes whose (pycocotools)
bounding boxes overlap.

Speed: nothing is decoded at image size. A mask's runs are rasterised only inside its tight bounding box,
which holds the whole boundary; outside that box the mask is zero, so eroding the crop with zeros around it
gives exactly the full-image erosion restricted to the box. The erosion is separable: along columns each run
shrinks by d at both ends, then along rows a sliding sum over 2d + 1 columns keeps the pixels all of them
kept; the boundary is stored as pycocotools-style runs in image coordinates and IoUs are run merges, O(runs).
Only the detections that count (``EvalResult.order``) in a pair with ground truth are processed, in chunks
(bounded memory) and parallel threads (the numba kernels release the GIL); ground-truth boundaries are cached
on the :class:`GroundTruth`, per dilation ratio, for every further mode.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from mec_cli.errors import MecError, check_number
from mec_cli.evaluation import kernels
from mec_cli.evaluation.compiled import njit
from mec_cli.evaluation.engine import pair_iou_table


def check_dilation(dilation_ratio) -> None:
    """The dilation ratio must be a number in (0, 1) (a MecError naming ``boundary_dilation`` otherwise)."""
    check_number("boundary_dilation", dilation_ratio, 0, above=True)
    if dilation_ratio >= 1:
        raise MecError(f"must be < 1 (a fraction of the image diagonal), got {dilation_ratio}",
                       option="boundary_dilation")


def dilation_pixels(h, w, dilation_ratio: float) -> np.ndarray:
    """d of step 1 for masks of height ``h`` and width ``w`` (arrays or numbers): round half to even, at least 1."""
    diag = np.sqrt(np.asarray(h, np.float64) ** 2 + np.asarray(w, np.float64) ** 2)
    return np.maximum(1, np.round(dilation_ratio * diag)).astype(np.int64)


@njit(cache=True, nogil=True)
def _decode_string(buf, s, e, out, o):
    """pycocotools' ``rleFrString``: the counts of the compressed RLE string ``buf[s:e]``, written at ``out[o:]``.

    Returns their number, or -1 when the string ends inside a number.
    """
    m = 0
    p = s
    while p < e:
        x = np.int64(0)
        k = 0
        more = True
        while more:
            if p >= e:
                return -1
            c = np.int64(buf[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = (c & 0x20) != 0
            p += 1
            k += 1
            if not more and (c & 0x10) != 0:
                x |= np.int64(-1) << (5 * k)
        if m > 2:
            x += out[o + m - 2]
        out[o + m] = x
        m += 1
    return m


@njit(cache=True, nogil=True)
def _coco_box(cnt, h):
    """pycocotools' ``rleToBbox`` (its loose rule included: a run over two columns spans the full height) as
    (x0, y0, x1, y1) inclusive; (0, 0, -1, -1) for an empty RLE (pycocotools' [0, 0, 0, 0])."""
    m = (cnt.shape[0] // 2) * 2
    if m == 0:
        return 0, 0, -1, -1
    xs, ys, xe, ye = np.int64(1) << 62, np.int64(1) << 62, np.int64(0), np.int64(0)
    cc = np.int64(0)
    xp = np.int64(0)
    for j in range(m):
        cc += cnt[j]
        t = cc - (j % 2)
        y = t % h
        x = (t - y) // h
        if j % 2 == 0:
            xp = x
        elif xp < x:
            ys = 0
            ye = h - 1
        xs = min(xs, x)
        xe = max(xe, x)
        ys = min(ys, y)
        ye = max(ye, y)
    return xs, ys, xe, ye


@njit(cache=True, nogil=True)
def _tight_box(cnt, h):
    """The mask's area and exact bounding box (x0, y0, x1, y1) inclusive; x1 = -1 when the mask is empty."""
    area = np.int64(0)
    x0, y0, x1, y1 = np.int64(1) << 62, np.int64(1) << 62, np.int64(-1), np.int64(-1)
    pos = np.int64(0)
    for j in range(cnt.shape[0]):
        n = cnt[j]
        if j % 2 == 1 and n > 0:
            area += n
            cs, ce = pos // h, (pos + n - 1) // h
            if cs == ce:
                ys, ye = pos % h, (pos + n - 1) % h
            else:
                ys, ye = 0, h - 1
            x0 = min(x0, cs)
            x1 = max(x1, ce)
            y0 = min(y0, ys)
            y1 = max(y1, ye)
        pos += n
    return area, x0, y0, x1, y1


@njit(cache=True, nogil=True)
def _boundary_of(cnt, h, w, d, x0, y0, x1, y1, crop, col, out, o):
    """Runs of the boundary (step 2) of the mask ``cnt`` (tight box x0..x1, y0..y1), in image coordinates.

    ``crop`` (uint8) and ``col`` (uint8) are scratch arrays of at least (x1 - x0 + 1) * (y1 - y0 + 1) elements.
    The runs are appended to ``out`` at ``o`` (grown when needed), ending with the trailing zeros so that they
    add up to h * w like the mask's (the run merge of :func:`_intersection` needs equal totals); returns (out,
    number of counts, boundary area).
    """
    wc, hc = x1 - x0 + 1, y1 - y0 + 1
    npx = wc * hc
    m = crop[:npx].reshape((wc, hc))  # column-major like the RLE: m[x, y]
    v = col[:npx].reshape((wc, hc))
    m[:] = 0
    v[:] = 0
    # 1. the mask inside its box, and its erosion along columns: a run y = a..b-1 keeps a+d..b-1-d (zeros outside)
    pos = np.int64(0)
    for j in range(cnt.shape[0]):
        n = cnt[j]
        if j % 2 == 1 and n > 0:
            a, b = pos, pos + n  # pixels a..b-1, column-major
            while a < b:
                x, y = a // h, a % h
                stop = min(b, (x + 1) * h)
                ya, yb = y - y0, y - y0 + (stop - a)
                m[x - x0, ya:yb] = 1
                if yb - ya > 2 * d:
                    v[x - x0, ya + d:yb - d] = 1
                a = stop
        pos += n
    # 2. then along rows: a pixel stays in the erosion when the 2d + 1 columns around it all kept it in step 1
    #    (a sliding sum over columns; columns outside the box are zeros); boundary = mask minus erosion
    full = 2 * d + 1
    if wc >= full:
        s = np.zeros(hc, np.int32)
        for xi in range(wc):
            for y in range(hc):
                s[y] += v[xi, y]
            if xi >= full:
                for y in range(hc):
                    s[y] -= v[xi - full, y]
            if xi >= full - 1:
                xc = xi - d
                for y in range(hc):
                    if s[y] == full:
                        m[xc, y] = 0
    # 3. encode the boundary as runs in image coordinates (zeros first, as pycocotools), column by column
    k = 0
    end = np.int64(0)  # end of the last run written
    start = np.int64(-1)
    prev = np.int64(-2)
    area = np.int64(0)
    for x in range(wc):
        if o + k + hc + 4 > out.shape[0]:  # room for this column's runs
            bigger = np.empty(max(o + k + hc + 4, 2 * out.shape[0]), out.dtype)
            bigger[:o + k] = out[:o + k]
            out = bigger
        base = (x + x0) * h + y0
        for y in range(hc):
            if m[x, y]:
                area += 1
                lin = base + y
                if lin != prev + 1:
                    if start >= 0:
                        out[o + k] = start - end
                        out[o + k + 1] = prev + 1 - start
                        k += 2
                        end = prev + 1
                    start = lin
                prev = lin
    if start >= 0:
        out[o + k] = start - end
        out[o + k + 1] = prev + 1 - start
        k += 2
        end = prev + 1
    out[o + k] = h * w - end
    return out, k + 1, area


@njit(cache=True, nogil=True)
def _masks_chunk(sbuf, sptr, size, dil):
    """Decode masks ``i`` (compressed counts ``sbuf[sptr[i]:sptr[i+1]]``, (h, w) = ``size[i]``) and find their
    boundaries with d = ``dil[i]``.

    Returns mask counts and boundary counts (flat, with (n + 1) pointers each), (n, 3) int64 [mask area,
    boundary area, ok], (n, 4) tight boxes and (n, 4) pycocotools boxes (both x0, y0, x1, y1 inclusive).
    ``ok`` is 0 for a malformed RLE (counts that do not add up to h * w, or a negative count).
    """
    n = sptr.shape[0] - 1
    mcnt = np.empty(sptr[n] - sptr[0] + n, np.int64)
    mptr = np.zeros(n + 1, np.int64)
    bcnt = np.empty(max(16, 4 * n), np.int64)
    bptr = np.zeros(n + 1, np.int64)
    info = np.zeros((n, 3), np.int64)
    tbox = np.zeros((n, 4), np.int64)
    cbox = np.zeros((n, 4), np.int64)
    crop = np.zeros(1024, np.uint8)
    col = np.zeros(1024, np.uint8)
    for i in range(n):
        h, w = size[i, 0], size[i, 1]
        o = mptr[i]
        k = _decode_string(sbuf, sptr[i], sptr[i + 1], mcnt, o)
        ok = k >= 0
        if k == 0:  # an empty string: an empty mask
            mcnt[o] = h * w
            k = 1
        total = np.int64(0)
        if ok:
            for j in range(k):
                if mcnt[o + j] < 0:
                    ok = False
                total += mcnt[o + j]
            ok = ok and total == h * w and h > 0 and w > 0
        if not ok:
            k = 0
        mptr[i + 1] = o + k
        info[i, 2] = 1 if ok else 0
        bptr[i + 1] = bptr[i]
        if not ok:
            tbox[i, 2] = -1
            cbox[i, 2] = -1
            continue
        cnt = mcnt[o:o + k]
        cx0, cy0, cx1, cy1 = _coco_box(cnt, h)
        cbox[i, 0], cbox[i, 1], cbox[i, 2], cbox[i, 3] = cx0, cy0, cx1, cy1
        area, x0, y0, x1, y1 = _tight_box(cnt, h)
        info[i, 0] = area
        tbox[i, 0], tbox[i, 1], tbox[i, 2], tbox[i, 3] = x0, y0, x1, y1
        if x1 < 0:  # an empty mask: an empty boundary, [h * w] as pycocotools writes it
            if bptr[i] + 1 > bcnt.shape[0]:
                bigger = np.empty(2 * bcnt.shape[0], np.int64)
                bigger[:bptr[i]] = bcnt[:bptr[i]]
                bcnt = bigger
            bcnt[bptr[i]] = h * w
            bptr[i + 1] = bptr[i] + 1
            continue
        npx = (x1 - x0 + 1) * (y1 - y0 + 1)
        if npx > crop.shape[0]:
            crop = np.zeros(2 * npx, np.uint8)
            col = np.zeros(2 * npx, np.uint8)
        bcnt, nb, barea = _boundary_of(cnt, h, w, dil[i], x0, y0, x1, y1, crop, col, bcnt, bptr[i])
        bptr[i + 1] = bptr[i] + nb
        info[i, 1] = barea
    return mcnt[:mptr[n]].copy(), mptr, bcnt[:bptr[n]].copy(), bptr, info, tbox, cbox


@njit(cache=True, nogil=True)
def _intersection(a, b):
    """|A ∩ B| of two RLEs of the same size, by pycocotools' run merge (``rleIou``'s loop)."""
    ka, kb = a.shape[0], b.shape[0]
    if ka == 0 or kb == 0:
        return np.int64(0)
    ca, cb = a[0], b[0]
    va, vb = False, False
    ia, ib = 1, 1
    inter = np.int64(0)
    ct = 1
    while ct > 0:
        c = min(ca, cb)
        if va and vb:
            inter += c
        ct = 0
        ca -= c
        if ca == 0 and ia < ka:
            ca = a[ia]
            ia += 1
            va = not va
        ct += ca
        cb -= c
        if cb == 0 and ib < kb:
            cb = b[ib]
            ib += 1
            vb = not vb
        ct += cb
    return inter


@njit(cache=True, nogil=True)
def _overlap(a, b) -> bool:
    """Whether two inclusive boxes (x0, y0, x1, y1) share a pixel (pycocotools' bbIou > 0 for its boxes)."""
    return a[2] >= 0 and b[2] >= 0 and min(a[2], b[2]) >= max(a[0], b[0]) and min(a[3], b[3]) >= max(a[1], b[1])


@njit(cache=True, nogil=True)
def _pair_block(dslot, gslot, crowd, dm, dmp, db, dbp, dinfo, dtbox, dcbox, dsize,
                gm, gmp, gb, gbp, ginfo, gtbox, gcbox, gsize, out):
    """IoUs (len(dslot), len(gslot)) of detections and ground truths of one pair, from their stores' slots:
    min(mask IoU, boundary IoU), the mask IoU alone for crowds (module docstring, step 4)."""
    for a in range(dslot.shape[0]):
        i = dslot[a]
        for j in range(gslot.shape[0]):
            g = gslot[j]
            v = 0.0
            if _overlap(dcbox[i], gcbox[g]):  # pycocotools' pre-check on its own boxes
                if dsize[i, 0] != gsize[g, 0] or dsize[i, 1] != gsize[g, 1]:
                    v = -1.0
                elif _overlap(dtbox[i], gtbox[g]):
                    inter = _intersection(dm[dmp[i]:dmp[i + 1]], gm[gmp[g]:gmp[g + 1]])
                    if inter > 0:
                        if crowd[j]:
                            v = inter / dinfo[i, 0]
                        else:
                            v = inter / (dinfo[i, 0] + ginfo[g, 0] - inter)
                            b_inter = _intersection(db[dbp[i]:dbp[i + 1]], gb[gbp[g]:gbp[g + 1]])
                            bv = 0.0
                            if b_inter > 0:
                                bv = b_inter / (dinfo[i, 1] + ginfo[g, 1] - b_inter)
                            v = min(v, bv)
            out[a, j] = v


class MaskStore:
    """Masks and boundaries of some RLEs as flat run arrays, slot by slot: ``mcnt[mptr[i]:mptr[i + 1]]`` the
    mask's counts, ``bcnt[bptr[i]:bptr[i + 1]]`` the boundary's, ``info`` (n, 3) [mask area, boundary area, ok],
    ``tbox``/``cbox`` (n, 4) the tight and the pycocotools box, ``size`` (n, 2) (h, w)."""

    def __init__(self, parts: Sequence[Tuple] = ()):
        """From :func:`_masks_chunk` outputs, each followed by its (n, 2) sizes."""
        self.mcnt, self.mptr = _join([p[0] for p in parts], [p[1] for p in parts])
        self.bcnt, self.bptr = _join([p[2] for p in parts], [p[3] for p in parts])
        for k, (name, shape) in enumerate((("info", 3), ("tbox", 4), ("cbox", 4), ("size", 2))):
            setattr(self, name, np.concatenate([p[4 + k] for p in parts]) if parts else np.zeros((0, shape), np.int64))

    def __len__(self) -> int:
        return int(self.info.shape[0])

    def extend(self, other: "MaskStore") -> "MaskStore":
        out = MaskStore.__new__(MaskStore)
        out.mcnt, out.mptr = _join([self.mcnt, other.mcnt], [self.mptr, other.mptr])
        out.bcnt, out.bptr = _join([self.bcnt, other.bcnt], [self.bptr, other.bptr])
        for name in ("info", "tbox", "cbox", "size"):
            setattr(out, name, np.concatenate([getattr(self, name), getattr(other, name)]))
        return out


def _join(flats: List[np.ndarray], ptrs: List[np.ndarray]):
    """Concatenate run arrays and their pointers."""
    out_ptr = [np.zeros(1, np.int64)]
    base = 0
    for f, p in zip(flats, ptrs):
        out_ptr.append(p[1:] - p[0] + base)
        base += int(p[-1] - p[0])
    return np.concatenate(flats) if flats else np.zeros(0, np.int64), np.concatenate(out_ptr)


def mask_store(rles: Sequence[Dict], dilation_ratio: float, what: str = "detection", labels=None) -> MaskStore:
    """Decode compressed RLEs ({'size': [h, w], 'counts': str or bytes}) and find their boundaries, in threads.

    A malformed RLE is a MecError naming ``what`` and its label (``labels[i]``, default its position).
    """
    n = len(rles)
    try:
        counts = [r["counts"] for r in rles]
        size = np.array([r["size"] for r in rles], np.int64).reshape(n, 2)
    except (KeyError, TypeError, ValueError) as e:
        raise MecError(f"a {what} segmentation is not an RLE ({type(e).__name__}: {e})") from None
    enc = [c.encode() if isinstance(c, str) else bytes(c) for c in counts]
    lens = np.fromiter((len(c) for c in enc), np.int64, n)
    sbuf = np.frombuffer(b"".join(enc), np.uint8) if n else np.zeros(0, np.uint8)
    sptr = np.zeros(n + 1, np.int64)
    np.cumsum(lens, out=sptr[1:])
    dil = dilation_pixels(size[:, 0], size[:, 1], dilation_ratio) if n else np.zeros(0, np.int64)
    workers = max(1, min(os.cpu_count() or 1, 16))
    bounds = np.linspace(0, n, min(n, 4 * workers) + 1).astype(np.int64) if n else np.array([0, 0])

    def run(k):
        a, b = int(bounds[k]), int(bounds[k + 1])
        part = _masks_chunk(sbuf, sptr[a:b + 1], size[a:b], dil[a:b])
        return (*part, size[a:b])

    if len(bounds) > 2 and workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(run, range(len(bounds) - 1)))
    else:
        parts = [run(k) for k in range(len(bounds) - 1)]
    store = MaskStore(parts)
    bad = np.flatnonzero(store.info[:, 2] == 0)
    if bad.size:
        i = int(bad[0])
        label = labels[i] if labels is not None else i
        raise MecError(f"{what} {label}: its RLE segmentation is malformed (counts do not add up to its size "
                       f"{size[i, 0]}x{size[i, 1]})")
    return store


class _GtBoundaries:
    """Ground-truth masks and boundaries of one dilation ratio, computed as pairs need them."""

    def __init__(self, num_gt: int):
        self.slot = np.full(num_gt, -1, np.int64)
        self.store = MaskStore()

    def ensure(self, gt, needed: np.ndarray, dilation_ratio: float) -> None:
        missing = needed[self.slot[needed] < 0]
        if not missing.size:
            return
        rles = gt.gt_rles()
        new = mask_store([rles[int(g)] for g in missing], dilation_ratio, "annotation id",
                         labels=gt.gt_id[missing].tolist())
        self.slot[missing] = len(self.store) + np.arange(missing.size)
        self.store = self.store.extend(new)


def gt_boundaries(gt, dilation_ratio: float) -> _GtBoundaries:
    """The cache of ground-truth boundaries kept on ``gt`` for ``dilation_ratio``."""
    cache = gt.__dict__.setdefault("_boundary_cache", {})
    key = float(dilation_ratio)
    if key not in cache:
        cache[key] = _GtBoundaries(len(gt.gt_id))
    return cache[key]


class BoundaryIous:
    """Boundary AP's IoUs (module docstring, step 4) of chosen detections with any ground truths.

    Ground truths come from the cache on ``gt``, made for ``gt_indices`` (positions in ``gt_*`` order) here and
    kept for later modes. Detections are decoded in chunks of about ``CHUNK``, in the order of ``keys`` (one
    key per detection; a chunk never splits a key), one chunk held at a time: ask for blocks in key order and
    each detection is decoded once, whatever the number of detections.
    """

    CHUNK = 20000

    def __init__(self, gt, dets, det_indices: np.ndarray, gt_indices: np.ndarray, dilation_ratio: float,
                 keys: Optional[np.ndarray] = None):
        check_dilation(dilation_ratio)
        self.gt, self.dets, self.ratio = gt, dets, dilation_ratio
        self.cache = gt_boundaries(gt, dilation_ratio)
        self.cache.ensure(gt, np.asarray(gt_indices, np.int64), dilation_ratio)
        det_indices = np.asarray(det_indices, np.int64)
        keys = np.arange(det_indices.size) if keys is None else np.asarray(keys)
        by_key = np.argsort(keys, kind="stable")
        det_indices, keys = det_indices[by_key], keys[by_key]
        # chunk starts: every CHUNK detections, moved forward to the next change of key
        cuts = [0]
        while cuts[-1] + self.CHUNK < det_indices.size:
            c = cuts[-1] + self.CHUNK
            c += int(np.searchsorted(keys[c:], keys[c], "right"))  # the rest of that key stays in this chunk
            if c >= det_indices.size:
                break
            cuts.append(c)
        self.chunks = [det_indices[a:b] for a, b in zip(cuts, cuts[1:] + [det_indices.size])]
        self.chunk_of = np.full(len(dets), -1, np.int64)
        self.slot = np.full(len(dets), -1, np.int64)
        for c, idx in enumerate(self.chunks):
            self.chunk_of[idx] = c
            self.slot[idx] = np.arange(idx.size)
        self.loaded, self.store = -1, None

    def _load(self, c: int) -> "MaskStore":
        if self.loaded != c:
            idx = self.chunks[c]
            self.store = None  # free the previous chunk first
            self.store = mask_store(self.dets._rles(idx), self.ratio, "detection", labels=idx.tolist())
            self.loaded = c
        return self.store

    def block(self, det_indices: np.ndarray, gt_indices: np.ndarray) -> np.ndarray:
        """(len(det_indices), len(gt_indices)) IoUs; every index must have been given to the constructor."""
        det_indices, gt_indices = np.asarray(det_indices, np.int64), np.asarray(gt_indices, np.int64)
        out = np.empty((len(det_indices), len(gt_indices)))
        g = self.cache.store
        chunks = self.chunk_of[det_indices]
        for c in np.unique(chunks):
            rows = np.flatnonzero(chunks == c) if len(np.unique(chunks)) > 1 else slice(None)
            d = self._load(int(c))
            part = np.empty((len(det_indices[rows]), len(gt_indices)))
            _pair_block(self.slot[det_indices[rows]], self.cache.slot[gt_indices], self.gt.gt_crowd[gt_indices],
                        d.mcnt, d.mptr, d.bcnt, d.bptr, d.info, d.tbox, d.cbox, d.size,
                        g.mcnt, g.mptr, g.bcnt, g.bptr, g.info, g.tbox, g.cbox, g.size, part)
            out[rows] = part
        return out


def boundary_iou_table(gt, dets, order: np.ndarray, img_idx: np.ndarray, cat_idx: np.ndarray,
                       dilation_ratio: float) -> Tuple[np.ndarray, np.ndarray]:
    """Boundary AP's IoUs (module docstring) of the counted detections ``order`` with their pairs' ground
    truths, in :func:`mec_cli.evaluation.engine.pair_iou_table`'s layout."""
    # only the counted detections in a pair with ground truth, and those ground truths, need boundaries
    rows = kernels.pair_rows(gt.img_ptr, gt.img_cat, img_idx[order], cat_idx[order])
    ng = np.where(rows >= 0, gt.pair_gt_count[np.maximum(rows, 0)], 0)
    pairs = np.unique(rows[ng > 0])
    starts, counts = gt.pair_gt_start[pairs], gt.pair_gt_count[pairs]
    needed = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))
    # decoded in the order pair_iou_table visits the pairs: image, then category
    counted = order[ng > 0]
    keys = img_idx[counted].astype(np.int64) * gt.num_cats + cat_idx[counted]
    ious = BoundaryIous(gt, dets, counted, needed, dilation_ratio, keys)
    return pair_iou_table(gt, order, img_idx, cat_idx, lambda d, gs, n_g: ious.block(d, np.arange(gs, gs + n_g)))
