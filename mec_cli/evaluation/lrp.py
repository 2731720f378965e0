"""Optimal LRP (Oksuz et al., "One Metric to Measure them All: Localisation Recall Precision (LRP) for Evaluating
Visual Detection Tasks", TPAMI 2021; first "Localization Recall Precision (LRP): A New Performance Metric for
Object Detection", ECCV 2018), per category, per frequency group and overall.

The LRP error of a category's detections above a score threshold s, with N_TP true positives (IoUs u_i), N_FP
false positives and N_FN missed ground truths at the IoU threshold tau, is::

    LRP(s) = ( sum_i (1 - u_i) / (1 - tau) + N_FP + N_FN ) / ( N_TP + N_FP + N_FN )

oLRP is its minimum over the thresholds (the detections' own scores, highest first), and its components are
those of the optimum: localisation (sum_i (1 - u_i) / N_TP), FP (N_FP / (N_TP + N_FP)) and FN (N_FN / N_GT)
errors. Lower is better; 1 is the worst (nothing found). We compute exactly what the authors' code computes
(kemaloksuz/LRP-Error, ``COCOeval.accumulate`` of its pycocotools and ``LVISEval.accumulate`` of its lvis-api;
the tests compare every category against those lines ported into the test):

* tau = 0.5 (the first IoU threshold), area range "all", the protocol's detection cap (COCO: 100 per image and
  category; LVIS: 300 per image);
* a category's detections are ranked as for AP (highest score first, ties in image then file order), and every
  rank is a candidate threshold, ignored detections included (they repeat the previous rank's value, so the
  first minimum, ``np.argmin``'s, never falls on one unless at rank 0);
* a category without ground truth has no oLRP (excluded from every mean, as AP excludes it); one with ground
  truth but no detection, or no true positive, has oLRP 1, FN error 1 and no localisation or FP error (NaN in
  the reference, null here), and counts in the oLRP and FN means;
* the mean over categories (overall, or over a group) is ``np.mean`` of the categories that have a value, in
  category order, as the reference's ``_summarize``; null where none has one.

(vernier 0.5's ``optimal_lrp`` scans a grid of 101 score thresholds 0.00..1.00 instead of the detections' own
scores, so its values can differ from the authors'; we follow the authors' code.)

**Decision** for the LVIS federated protocol (the reference's lvis-api does the same): oLRP uses the detections
that count for AP and the same true positives, false positives and ignored detections. A detection of a
category neither annotated nor negative in its image never counts; an unmatched detection of a category that is
not exhaustively annotated in its image is ignored (neither a true nor a false positive); N_GT counts the
non-ignored ground truths. So oLRP and AP see the same evidence, and a rare category is only charged for false
positives in images that verify it is absent. The LRP-optimal threshold of each category is stored too (the
score of the optimal rank), which is what the authors propose as a class-wise deployment threshold.

The matched IoUs come from the error analysis's replay of the evaluator's matching
(:class:`mec_cli.evaluation.errors.DetectionErrors`, ``match_iou``), so ``mec eval --analysis`` stores oLRP.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from mec_cli.evaluation.compiled import njit
from mec_cli.evaluation.errors import IGNORED, TP, DetectionErrors

LRP_TAU = 0.5
COMPONENTS = ("oLRP", "loc", "fp", "fn")


@njit(cache=True, nogil=True, error_model="numpy")
def olrp_categories(cat_ptr, kind, match_iou, score, num_gt, tau, out):
    """oLRP of every category from its ranked detections (the reference's arithmetic, step for step).

    Args:
        cat_ptr: (K + 1,) start of each category's detections in the arrays below (ranked highest score first).
        kind: (M,) 0 for a true positive, -1 for an ignored detection, > 0 for a false positive.
        match_iou: (M,) a true positive's IoU with its ground truth (read only for true positives).
        score: (M,) scores; num_gt: (K,) non-ignored ground truths per category; tau: the IoU threshold.
        out: (K, 5) written: oLRP, localisation, FP and FN errors, LRP-optimal threshold; -1 for a category
            without ground truth, NaN where the reference has NaN.
    """
    num_cats = cat_ptr.shape[0] - 1
    for k in range(num_cats):
        n_gt = num_gt[k]
        if n_gt == 0:
            for c in range(5):
                out[k, c] = -1.0
            continue
        tp = 0
        fp = 0
        cum = 0.0  # np.cumsum of the true positives' IoUs (0 for the others: adding 0.0 changes nothing)
        best = np.inf
        b_tp, b_fp, b_loc, b_thr = 0, 0, 0.0, np.nan
        for i in range(cat_ptr[k], cat_ptr[k + 1]):
            if kind[i] == 0:
                tp += 1
                cum += match_iou[i]
            elif kind[i] > 0:
                fp += 1
            fn = n_gt - tp
            total_loc = tp - cum
            lrp = (total_loc / (1 - tau) + fp + fn) / (tp + fp + fn)
            if lrp < best:  # the first minimum, as np.argmin
                best, b_tp, b_fp, b_loc, b_thr = lrp, tp, fp, total_loc, score[i]
        if tp == 0:  # no detection, or no true positive
            out[k, 0], out[k, 1], out[k, 2], out[k, 3], out[k, 4] = 1.0, np.nan, np.nan, 1.0, np.nan
            continue
        out[k, 0] = best
        out[k, 1] = b_loc / b_tp
        out[k, 2] = b_fp / (b_tp + b_fp)
        out[k, 3] = (n_gt - b_tp) / n_gt
        out[k, 4] = b_thr


def category_olrp(errors: DetectionErrors, num_gt: np.ndarray, tau: float = LRP_TAU) -> np.ndarray:
    """(K, 5) oLRP, localisation, FP and FN errors and the LRP-optimal threshold of every category, from the error
    analysis of an evaluation (its detections in the evaluator's ranking) and the non-ignored ground truths per
    category ``num_gt`` (K,); module docstring."""
    cat_ptr = np.searchsorted(errors.det_cat, np.arange(errors.num_cats + 1)).astype(np.int64)
    out = np.empty((errors.num_cats, 5))
    kind = np.where(errors.kind == TP, 0, np.where(errors.kind == IGNORED, -1, 1)).astype(np.int64)
    olrp_categories(cat_ptr, kind, np.ascontiguousarray(errors.match_iou, np.float64),
                    np.ascontiguousarray(errors.score, np.float64), np.asarray(num_gt, np.int64), float(tau), out)
    return out


def mean_of(values: np.ndarray) -> Optional[float]:
    """The reference's summary: np.mean of the values that are neither NaN nor -1; None when none is left."""
    s = values[~np.isnan(values)]
    s = s[s > -1]
    return float(np.mean(s)) if len(s) else None


def _number(v: float) -> Optional[float]:
    return None if np.isnan(v) or v == -1 else float(v)


def lrp_summary(per_category: np.ndarray, cat_ids: Sequence[int], groupings: Dict[str, Dict[str, Sequence[int]]],
                tau: float = LRP_TAU) -> Dict:
    """The ``lrp`` section of the metrics JSON (layout in :mod:`mec_cli.evaluation.api`): the mean oLRP and its
    components overall, per group of every grouping (then 'all'), and every category's values."""
    def block(idx) -> Dict:
        part = per_category[np.asarray(list(idx), np.int64)] if len(idx) else np.empty((0, 5))
        out = {name: mean_of(part[:, c]) for c, name in enumerate(COMPONENTS)}
        out["categories"] = int(np.count_nonzero(part[:, 0] > -1)) if len(part) else 0
        return out

    everything = range(len(cat_ids))
    return {"tau": float(tau), "overall": block(everything),
            "groupings": {grouping: {**{name: block(idx) for name, idx in groups.items()}, "all": block(everything)}
                          for grouping, groups in groupings.items()},
            "per_category": {str(int(c)): {**{name: _number(per_category[k, j]) for j, name in enumerate(COMPONENTS)},
                                           "threshold": _number(per_category[k, 4])}
                             for k, c in enumerate(cat_ids) if per_category[k, 0] > -1}}
