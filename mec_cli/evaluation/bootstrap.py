"""Paired bootstrap confidence intervals for the AP difference of two runs on the same annotations.

**What is resampled.** Images: a resample draws n images from the n of the annotation file with replacement, a
multiset in which image i appears w_i times (w ~ Multinomial(n, 1/n)), and both runs are scored on the same
multiset (paired), so the interval is that of AP_b - AP_a under the variation of the evaluation set, with the two
runs' correlation kept. (hotcoco's ``compare`` deduplicates each draw into a set of about 63% of the images;
we keep the multiplicities, which is the textbook bootstrap of a statistic of n i.i.d. images.)

**AP of a multiset, exactly.** The detections that count, their matching and whether each is a true positive,
ignored or a false positive are decided image by image (the protocol's per-image cap, LVIS's federated rules,
the greedy matching), so an image repeated w times contributes w identical copies of its matched detections and
w times its ground truths. Each category's detections keep the evaluator's ranking: score, then image (the
copies of an image are consecutive images), then file order. So the w copies of a detection are adjacent unless
other detections of its image share its score and category: such a tie block is repeated w times as a whole
(d1 d2 d1 d2 ...), as the evaluator would rank the copies. Per category and IoU threshold the precision
envelope is read at the true positives only (precision falls between them, as in
:func:`mec_cli.evaluation.kernels.accumulate`), and w adjacent copies of a true positive are one step of w:
within the run precision rises, so the envelope at each copy is that at the last. Hence the 101-point
interpolated precision of every category and threshold is computed exactly from per-image records, weighted,
with no copy made. A category whose ground truths all fall out of a resample has no AP there and is
left out of that resample's mean, as the reference tools leave out a category without ground truth; a group
none of whose categories keeps a ground truth gives no value for that resample (counted in ``valid``). Each AP
of a resample is that of the resampled evaluation set up to the order of floating-point summation (1e-15); the
tests check resamples against the evaluator run on the multiset written out as images.

**What is stored** (``mec eval --per-image``, :class:`ImageMatches`): for each counted detection that can matter
(ranked per category, up to the category's last true positive at any threshold and the rest of its tie block;
detections ignored at every threshold dropped), its image, its true-positive and ignored bits at each IoU
threshold, area 'all', and whether it ties (same score, same image) with the one before; and the number of
non-ignored ground truths of each (image, category). About 9 bytes per kept detection, zlib-compressed.

**The interval.** The percentile interval of the ``resamples`` paired differences at ``confidence``, and the
fraction of resamples in which run b is not better (difference <= 0). The gain is **within noise** when the
interval holds 0.
"""
from __future__ import annotations

import base64
import hashlib
import zlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from mec_cli.errors import SEED_MAX, MecError, check_number
from mec_cli.evaluation.compiled import njit, split
from mec_cli.evaluation.engine import AREA_RNG, IOU_THRS, REC_THRS

EPS = np.spacing(1)
RESAMPLES = 1000
RESAMPLES_MAX = 1_000_000  # the deltas are held in memory (resamples x metrics floats); far past any need
CONFIDENCE = 0.95
FORMAT = "mec.per_image/1"
CHUNK = 64  # resamples drawn and scored together


def _encode(a: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes(),
                                          6)).decode("ascii")


def _decode(text: str, dtype, n: Optional[int], what: str, source) -> np.ndarray:
    try:
        raw = zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True))
        a = np.frombuffer(raw, np.dtype(dtype).newbyteorder("<")).astype(dtype)
    except (ValueError, zlib.error, AttributeError, TypeError):
        raise MecError(f"{what} is not valid per-image data", source) from None
    if n is not None and a.shape[0] != n:
        raise MecError(f"{what} holds {a.shape[0]} values, expected {n}", source)
    return a


def image_digest(image_ids: np.ndarray) -> str:
    """A fingerprint of the evaluated images (sorted ids), to pair two runs."""
    return hashlib.sha256(np.ascontiguousarray(image_ids, "<i8").tobytes()).hexdigest()[:32]


@dataclass
class ImageMatches:
    """What AP needs of one evaluation, image by image (module docstring). ``cat_ptr`` (K + 1) splits the
    detections (ranked per category) by category; ``image`` (M,) int32 their image index; ``tp``/``ig`` (M,) uint16,
    bit t: true positive / ignored at IoU threshold t (area 'all'); ``tie`` (M,) uint8: 1 when the detection has the
    score and image of the one before it (a tie block, module docstring); ``gt_image``/``gt_cat``/``gt_count``: the
    non-ignored ground truths of each (image, category) at area 'all'; ``sets``: metric name -> category indices
    (``AP``: all, ``APr``..., ``AP_<group>``)."""

    num_images: int
    digest: str
    cat_ids: np.ndarray
    cat_ptr: np.ndarray
    image: np.ndarray
    tp: np.ndarray
    ig: np.ndarray
    gt_image: np.ndarray
    gt_cat: np.ndarray
    gt_count: np.ndarray
    sets: Dict[str, List[int]]
    tie: np.ndarray
    thresholds: int = len(IOU_THRS)

    @classmethod
    def build(cls, num_images: int, digest: str, cat_ids: np.ndarray, det_cat: np.ndarray, det_img: np.ndarray,
              det_score: np.ndarray, det_tp: np.ndarray, det_ig: np.ndarray, gt_pairs: np.ndarray,
              sets: Dict[str, List[int]], num_area: int = len(AREA_RNG)) -> "ImageMatches":
        """From an evaluation's counted detections in accumulation order (category ``det_cat`` sorted, image index
        ``det_img``, score, the engine's bit masks t * A + a) and ``gt_pairs`` (P, 3): image index, category index
        and non-ignored ground truths at area 'all' (:func:`gt_pairs_of`)."""
        num_thr = len(IOU_THRS)
        tp = np.zeros(len(det_cat), np.uint16)
        ig = np.zeros(len(det_cat), np.uint16)
        for t in range(num_thr):  # bit t * A + 0 (area 'all') -> bit t
            shift = np.uint64(t * num_area)
            tp |= (((det_tp >> shift) & np.uint64(1)).astype(np.uint16) << np.uint16(t))
            ig |= (((det_ig >> shift) & np.uint64(1)).astype(np.uint16) << np.uint16(t))
        k = len(cat_ids)
        det_cat = np.asarray(det_cat, np.int64)
        det_img, det_score = np.asarray(det_img, np.int32), np.asarray(det_score, np.float64)
        n = len(det_cat)
        tie_all = np.zeros(n, np.bool_)  # same category, image and score as the detection before
        tie_all[1:] = (det_cat[1:] == det_cat[:-1]) & (det_img[1:] == det_img[:-1]) & (det_score[1:] == det_score[:-1])
        # per category, nothing after its last true positive at any threshold can change AP, except the rest of that
        # detection's tie block (repeated with it in a resample); nor can a detection ignored at every threshold
        last = np.full(k, -1, np.int64)
        hit = np.flatnonzero(tp != 0)
        np.maximum.at(last, det_cat[hit], hit)
        block_end = np.flatnonzero(np.r_[~tie_all[1:], True])  # the last detection of each tie block
        has = last >= 0
        last[has] = block_end[(np.cumsum(~tie_all) - 1)[last[has]]]
        keep = (np.arange(n) <= last[det_cat]) & (ig != (1 << num_thr) - 1)
        cat_ptr = np.zeros(k + 1, np.int64)
        np.cumsum(np.bincount(det_cat[keep], minlength=k), out=cat_ptr[1:])
        img, score, cat = det_img[keep], det_score[keep], det_cat[keep]
        tie = np.zeros(len(img), np.uint8)
        tie[1:] = (cat[1:] == cat[:-1]) & (img[1:] == img[:-1]) & (score[1:] == score[:-1])
        return cls(int(num_images), digest, np.asarray(cat_ids, np.int64), cat_ptr, img, tp[keep],
                   ig[keep], gt_pairs[:, 0].astype(np.int32), gt_pairs[:, 1].astype(np.int32),
                   gt_pairs[:, 2].astype(np.int32), {name: [int(i) for i in idx] for name, idx in sets.items()}, tie,
                   num_thr)

    def to_json(self) -> Dict:
        return {"format": FORMAT, "images": int(self.num_images), "image_digest": self.digest,
                "thresholds": int(self.thresholds), "detections": int(len(self.image)),
                "gt_pairs": int(len(self.gt_image)), "encoding": "zlib+base64, little-endian",
                "cat_ids": _encode(self.cat_ids.astype(np.int64)), "cat_ptr": _encode(self.cat_ptr.astype(np.int64)),
                "image": _encode(self.image), "tp": _encode(self.tp), "ig": _encode(self.ig), "tie": _encode(self.tie),
                "gt_image": _encode(self.gt_image), "gt_cat": _encode(self.gt_cat), "gt_count": _encode(self.gt_count),
                "sets": self.sets}

    @classmethod
    def from_json(cls, doc: Dict, source=None, where: str = "per_image") -> "ImageMatches":
        """Read a ``per_image`` section back (one MecError naming ``where`` in ``source`` when malformed)."""
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise MecError(f"{where} is not per-image data of format {FORMAT}", source)
        try:
            m, p, n = int(doc["detections"]), int(doc["gt_pairs"]), int(doc["images"])
            thresholds = int(doc["thresholds"])
            sets = {str(name): [int(i) for i in idx] for name, idx in doc["sets"].items()}
            cat_ids = _decode(doc["cat_ids"], np.int64, None, f"{where}.cat_ids", source)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise MecError(f"{where} lacks a field of per-image data", source) from None
        k = len(cat_ids)
        out = cls(n, str(doc.get("image_digest")), cat_ids,
                  _decode(doc["cat_ptr"], np.int64, k + 1, f"{where}.cat_ptr", source),
                  _decode(doc["image"], np.int32, m, f"{where}.image", source),
                  _decode(doc["tp"], np.uint16, m, f"{where}.tp", source),
                  _decode(doc["ig"], np.uint16, m, f"{where}.ig", source),
                  _decode(doc["gt_image"], np.int32, p, f"{where}.gt_image", source),
                  _decode(doc["gt_cat"], np.int32, p, f"{where}.gt_cat", source),
                  _decode(doc["gt_count"], np.int32, p, f"{where}.gt_count", source), sets,
                  _decode(doc["tie"], np.uint8, m, f"{where}.tie", source), thresholds)
        bad = (out.cat_ptr[0] != 0 or out.cat_ptr[-1] != m or (np.diff(out.cat_ptr) < 0).any()
               or (m and (out.image.min() < 0 or out.image.max() >= n))
               or (p and (out.gt_image.min() < 0 or out.gt_image.max() >= n or out.gt_cat.min() < 0
                          or out.gt_cat.max() >= k or out.gt_count.min() < 0))
               or any(i < 0 or i >= k for idx in sets.values() for i in idx) or not 1 <= thresholds <= 16)
        if bad:
            raise MecError(f"{where} is inconsistent (indices out of range)", source)
        return out


def gt_pairs_of(gt) -> np.ndarray:
    """(P, 3): image index, category index and number of non-ignored ground truths at area 'all' of every (image,
    category) that has any, from a :class:`mec_cli.evaluation.engine.GroundTruth`."""
    lo, hi = AREA_RNG[0]
    counted = ~gt.gt_ignore & (gt.gt_area >= lo) & (gt.gt_area <= hi)
    keys, counts = np.unique(gt.gt_img[counted].astype(np.int64) * gt.num_cats + gt.gt_cat[counted],
                             return_counts=True)
    return np.stack([keys // gt.num_cats, keys % gt.num_cats, counts], axis=1).astype(np.int64)


def image_matches(gt, dets, res, sets: Dict[str, List[int]]) -> ImageMatches:
    """:class:`ImageMatches` of an evaluation ``res`` (:func:`mec_cli.evaluation.engine.evaluate`) of ``dets``."""
    order = res.order
    return ImageMatches.build(len(gt.img_ids), image_digest(gt.img_ids), gt.cat_ids,
                              gt.cats.lookup(dets.category_id[order]), gt.images.lookup(dets.image_id[order]),
                              dets.score[order], res.det_tp, res.det_ig, gt_pairs_of(gt),
                              {"AP": list(range(gt.num_cats)), **sets})


@njit(cache=True, nogil=True, inline="always")
def _step(tb, gb, step, fp_all, n_gt, num_thr, tpc, fpc, events, ev_rc, ev_pr):
    """One detection of weight ``step`` with true-positive bits ``tb`` and ignored bits ``gb``, at every threshold."""
    for t in range(num_thr):
        bit = np.uint16(1) << np.uint16(t)
        if tb & bit:
            tpc[t] += step
            m = events[t]
            ev_rc[t, m] = tpc[t] / n_gt
            ev_pr[t, m] = tpc[t] / ((fpc[t] + fp_all) + tpc[t] + EPS)  # the reference's tp / (fp + tp + eps)
            events[t] = m + 1
        elif not gb & bit:
            fpc[t] += step


@njit(cache=True, nogil=True)
def _category_sum(s, e, w, image, tp, ig, tie, n_gt, num_thr, rec_thrs, ev_rc, ev_pr, tpc, fpc, events):
    """The sum of a category's interpolated precision over thresholds and recall thresholds, its detections
    ``s..e`` weighted by their image's multiplicity ``w`` (module docstring: a tie block is repeated as a whole).
    One pass over the detections for every threshold; a false positive at every threshold (the common case) is
    one addition. ``ev_rc``/``ev_pr`` (T, >= n_gt + 1), ``tpc``/``fpc`` (T,) and ``events`` (T,) are scratch."""
    num_rec = rec_thrs.shape[0]
    for t in range(num_thr):
        tpc[t] = 0.0
        fpc[t] = 0.0
        events[t] = 0
    fp_all = 0.0  # false positives at every threshold
    i = s
    while i < e:
        j = i + 1
        while j < e and tie[j]:
            j += 1
        wi = w[image[i]]
        if wi == 0:
            i = j
            continue
        if j == i + 1:  # one detection: one step of w
            if tp[i] == 0 and ig[i] == 0:
                fp_all += wi
            else:
                _step(tp[i], ig[i], wi, fp_all, n_gt, num_thr, tpc, fpc, events, ev_rc, ev_pr)
        else:  # a tie block: w passes over it
            for _ in range(wi):
                for q in range(i, j):
                    if tp[q] == 0 and ig[q] == 0:
                        fp_all += 1
                    else:
                        _step(tp[q], ig[q], 1, fp_all, n_gt, num_thr, tpc, fpc, events, ev_rc, ev_pr)
        i = j
    total = 0.0
    for t in range(num_thr):
        m = events[t]
        for q in range(m - 1, 0, -1):
            if ev_pr[t, q] > ev_pr[t, q - 1]:
                ev_pr[t, q - 1] = ev_pr[t, q]
        q = 0
        for r in range(num_rec):
            while q < m and ev_rc[t, q] < rec_thrs[r]:
                q += 1
            if q < m:
                total += ev_pr[t, q]
    return total


def resample_ap(weights, cat_ptr, image, tp, ig, tie, gt_image, gt_cat, gt_count, set_of, num_sets, num_thr,
                rec_thrs, out):
    """AP of every category set for each row of ``weights`` (B, n_images): image multiplicities. ``set_of`` (K, G):
    the set of each category in each of G columns (-1 none). Writes ``out`` (B, num_sets), NaN for a set without
    a category with ground truth. Ranges of rows side by side in threads (:func:`mec_cli.evaluation.compiled.split`:
    each row's AP is its own, so the ranges do not change it)."""
    per_row = image.shape[0] + gt_image.shape[0] + 1  # a row's work: a pass over the detections and ground truths
    split(lambda b0, b1: _resample_range(b0, b1, weights, cat_ptr, image, tp, ig, tie, gt_image, gt_cat, gt_count,
                                         set_of, num_sets, num_thr, rec_thrs, out),
          np.arange(weights.shape[0] + 1, dtype=np.int64) * per_row)


@njit(cache=True, nogil=True)
def _resample_range(b0, b1, weights, cat_ptr, image, tp, ig, tie, gt_image, gt_cat, gt_count, set_of, num_sets,
                    num_thr, rec_thrs, out):
    """:func:`resample_ap` of the rows b0..b1-1."""
    num_cats = cat_ptr.shape[0] - 1
    num_rec = rec_thrs.shape[0]
    for b in range(b0, b1):
        w = weights[b]
        n_gt = np.zeros(num_cats)
        for p in range(gt_image.shape[0]):
            n_gt[gt_cat[p]] += w[gt_image[p]] * gt_count[p]
        most = 1.0  # true positives (events) never outnumber the ground truths they match
        for k in range(num_cats):
            most = max(most, n_gt[k])
        ev_rc = np.empty((num_thr, int(most) + 1))
        ev_pr = np.empty((num_thr, int(most) + 1))
        tpc, fpc = np.empty(num_thr), np.empty(num_thr)
        events = np.empty(num_thr, np.int64)
        sums = np.zeros(num_sets)
        counts = np.zeros(num_sets)
        for k in range(num_cats):
            if n_gt[k] == 0:
                continue
            total = _category_sum(cat_ptr[k], cat_ptr[k + 1], w, image, tp, ig, tie, n_gt[k], num_thr, rec_thrs,
                                  ev_rc, ev_pr, tpc, fpc, events)
            for g in range(set_of.shape[1]):
                q = set_of[k, g]
                if q >= 0:
                    sums[q] += total
                    counts[q] += 1
        for q in range(num_sets):
            out[b, q] = sums[q] / (counts[q] * num_thr * num_rec) if counts[q] else np.nan


@njit(cache=True, nogil=True)
def _multiplicities(draws, num_images, out):
    """``out[b, i]``: how many times image i is drawn in row b of ``draws`` (``out`` zero at first)."""
    for b in range(draws.shape[0]):
        for j in range(draws.shape[1]):
            out[b, draws[b, j]] += 1


def _set_columns(sets: Dict[str, List[int]], num_cats: int) -> np.ndarray:
    """(K, G) set index of each category, one column per set that shares a category with an earlier one."""
    columns: List[Dict[int, int]] = []
    for q, idx in enumerate(sets.values()):
        column = next((c for c in columns if not set(c) & set(idx)), None)
        if column is None:
            column = {}
            columns.append(column)
        column.update({int(k): q for k in idx})
    set_of = np.full((num_cats, max(1, len(columns))), -1, np.int64)
    for g, column in enumerate(columns):
        set_of[list(column), g] = list(column.values())
    return set_of


def set_aps(matches: ImageMatches, weights: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """(B, len(names)) AP of the sets ``names`` of ``matches`` for each row of image multiplicities ``weights``."""
    sets = {n: matches.sets[n] for n in names}
    out = np.empty((weights.shape[0], len(names)))
    resample_ap(np.ascontiguousarray(weights, np.int32), matches.cat_ptr, matches.image, matches.tp, matches.ig,
                matches.tie, matches.gt_image, matches.gt_cat, matches.gt_count,
                _set_columns(sets, len(matches.cat_ids)), len(names), matches.thresholds, REC_THRS, out)
    return out


def check_pair(a: ImageMatches, b: ImageMatches, labels=("a", "b")) -> None:
    """The two evaluations were made on the same annotations (images, categories, ground truths), or a MecError."""
    same = (a.num_images == b.num_images and a.digest == b.digest and np.array_equal(a.cat_ids, b.cat_ids)
            and a.thresholds == b.thresholds and np.array_equal(a.gt_image, b.gt_image)
            and np.array_equal(a.gt_cat, b.gt_cat) and np.array_equal(a.gt_count, b.gt_count))
    if not same:
        raise MecError(f"runs {labels[0]} and {labels[1]} were not evaluated on the same annotations (images, "
                       "categories or ground truths differ): a paired bootstrap needs the same evaluation set")


def verdict(delta: Optional[float], low: Optional[float], high: Optional[float], confidence: float) -> str:
    """One plain sentence on whether a difference (x100 AP points when shown) is within noise."""
    if delta is None or low is None or high is None:
        return "no interval (no resample has ground truth for this metric)"
    pct = f"{100 * confidence:g}%"
    span = f"{100 * delta:+.2f} AP ({pct} interval {100 * low:+.2f} to {100 * high:+.2f})"
    if low <= 0 <= high:
        return f"{span}: within noise, the interval holds 0"
    side = ("a real gain", "above") if low > 0 else ("a real loss", "below")
    return f"{span}: {side[0]}, the whole interval is {side[1]} 0"


def check_bootstrap_options(resamples: int, confidence: float, seed: int) -> None:
    """Refuse a resample count outside [2, RESAMPLES_MAX], a confidence outside (0, 1) or a seed numpy cannot take,
    one MecError naming the option."""
    check_number("resamples", resamples, 2, RESAMPLES_MAX, integer=True)
    check_number("confidence", confidence)
    if not 0 < confidence < 1:
        raise MecError(f"must be in (0, 1), got {confidence!r}", option="confidence")
    check_number("seed", seed, 0, SEED_MAX, integer=True)


def paired_bootstrap(a: ImageMatches, b: ImageMatches, names: Optional[Sequence[str]] = None,
                     resamples: int = RESAMPLES, confidence: float = CONFIDENCE, seed: int = 0,
                     labels=("a", "b"), progress=None) -> Dict:
    """Paired bootstrap of AP_b - AP_a over images (module docstring), for each metric in ``names`` (default: every
    set both hold: AP, APr/APc/APf, AP_<group>).

    Returns {"resamples", "confidence", "seed", "metrics": {name: {"a", "b", "delta", "low", "high",
    "p_not_better", "valid", "verdict"}}}: ``a``/``b``/``delta`` on the evaluation set itself (fractions),
    ``low``/``high`` the percentile interval of the resampled deltas, ``p_not_better`` the fraction of resamples
    with delta <= 0, ``valid`` the resamples in which the metric had ground truth.
    ``progress(done, total)`` hears of each chunk of resamples.
    """
    check_pair(a, b, labels)
    check_bootstrap_options(resamples, confidence, seed)
    names = [n for n in (names or a.sets) if n in a.sets and n in b.sets and a.sets[n] == b.sets[n]]
    n = a.num_images
    ones = np.ones((1, n), np.int32)
    point_a, point_b = set_aps(a, ones, names)[0], set_aps(b, ones, names)[0]
    deltas = np.empty((resamples, len(names)))
    rng = np.random.default_rng(seed)
    for start in range(0, resamples, CHUNK):
        c = min(CHUNK, resamples - start)
        draws = rng.integers(0, n, size=(c, n))
        weights = np.zeros((c, n), np.int32)
        _multiplicities(draws, n, weights)
        deltas[start:start + c] = set_aps(b, weights, names) - set_aps(a, weights, names)
        if progress:
            progress(start + c, resamples)
    tail = (1 - confidence) / 2
    out: Dict = {"resamples": resamples, "confidence": confidence, "seed": seed, "metrics": {}}
    for j, name in enumerate(names):
        d = deltas[:, j][~np.isnan(deltas[:, j])]
        pa, pb = point_a[j], point_b[j]
        delta = None if np.isnan(pa) or np.isnan(pb) else float(pb - pa)
        low, high = (float(v) for v in np.quantile(d, [tail, 1 - tail])) if len(d) else (None, None)
        out["metrics"][name] = {"a": None if np.isnan(pa) else float(pa), "b": None if np.isnan(pb) else float(pb),
                                "delta": delta, "low": low, "high": high,
                                "p_not_better": float(np.mean(d <= 0)) if len(d) else None, "valid": int(len(d)),
                                "verdict": verdict(delta, low, high, confidence)}
    return out


def document_matches(doc: Dict, mode: str, iou_type: str, label: str = "run", source=None) -> ImageMatches:
    """The per-image records of ``modes.<mode>.<iou_type>`` of a metrics document (``mec eval --per-image``)."""
    metrics = (doc.get("modes") or {}).get(mode, {}).get(iou_type)
    if not isinstance(metrics, dict):
        raise MecError(f"run {label} has no {iou_type} metrics for mode {mode}", source)
    if "per_image" not in metrics:
        raise MecError(f"run {label}, mode {mode}, {iou_type}, has no per-image data: evaluate it with `mec eval ... "
                       "--per-image`", source)
    return ImageMatches.from_json(metrics["per_image"], source, f"modes.{mode}.{iou_type}.per_image")


def compare_documents(doc_a: Dict, mode_a: str, doc_b: Dict, mode_b: str, iou_type: str,
                      names: Optional[Sequence[str]] = None, resamples: int = RESAMPLES,
                      confidence: float = CONFIDENCE, seed: int = 0, labels=("a", "b"), sources=(None, None),
                      progress=None) -> Dict:
    """:func:`paired_bootstrap` of two metrics documents (mode ``mode_a`` of ``doc_a`` against ``mode_b`` of
    ``doc_b``, one iou type), each with its per-image records; the records must reproduce the document's own
    metrics on the full evaluation set (1e-9), else they are not this run's (a MecError names it)."""
    a = document_matches(doc_a, mode_a, iou_type, labels[0], sources[0])
    b = document_matches(doc_b, mode_b, iou_type, labels[1], sources[1])
    out = paired_bootstrap(a, b, names, resamples, confidence, seed, labels, progress)
    for name, m in out["metrics"].items():
        for value, doc, mode, label, source in ((m["a"], doc_a, mode_a, labels[0], sources[0]),
                                                (m["b"], doc_b, mode_b, labels[1], sources[1])):
            stored = doc["modes"][mode][iou_type].get(name)
            if isinstance(stored, (int, float)) and stored >= 0 and (value is None or abs(value - stored) > 1e-9):
                raise MecError(f"run {label}: the per-image data of mode {mode}, {iou_type}, give {name} = {value}, "
                               f"not the stored {stored}: they do not belong to these metrics", source)
    return out
