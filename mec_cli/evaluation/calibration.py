"""Calibration per frequency group: are rare-group scores on the same scale as frequent-group scores?

The detections: those that count for AP (``EvalResult.order``, the protocol's caps and LVIS's federated rule)
and are not ignored at IoU 0.5 / area "all", so each is a true positive or a false positive there. A
detection belongs to the group of its category.

Scores are binned in ``bins`` equal-width bins over [0, 1] (bin b holds b/B <= score < (b + 1)/B, the last bin
also 1.0; a score outside [0, 1] goes to the nearest end bin). Per bin: the number of detections n_b, their
mean score s_b and their precision p_b (the fraction that are true positives at IoU 0.5). The expected
calibration error is ECE = sum_b n_b / N * |p_b - s_b| over the non-empty bins, N the group's detections:
0 when every score is the probability of being right.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from mec_cli.evaluation.engine import EvalResult

CALIBRATION_BINS = 10
CALIBRATION_IOU = 0.5


def reliability(score: np.ndarray, tp: np.ndarray, bins: int = CALIBRATION_BINS) -> Dict:
    """The reliability diagram of detections with ``score`` (N,) and ``tp`` (N,) bool; module docstring."""
    b = np.clip(np.floor(np.asarray(score, np.float64) * bins), 0, bins - 1).astype(np.int64)
    count = np.bincount(b, minlength=bins)
    score_sum = np.bincount(b, weights=score, minlength=bins)
    tp_sum = np.bincount(b, weights=tp.astype(np.float64), minlength=bins)
    n = int(count.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = score_sum / count
        precision = tp_sum / count
    filled = count > 0
    ece = float(np.sum(count[filled] / n * np.abs(precision[filled] - mean_score[filled]))) if n else None

    def col(values) -> list:
        return [float(v) if f else None for v, f in zip(values, filled)]

    return {"count": count.tolist(), "score": col(mean_score), "precision": col(precision), "ece": ece, "detections": n}


def calibration_summary(res: EvalResult, det_cat: np.ndarray, score: np.ndarray,
                        groupings: Dict[str, Dict[str, Sequence[int]]], bins: int = CALIBRATION_BINS) -> Dict:
    """The ``calibration`` section of the metrics JSON (layout in :mod:`mec_cli.evaluation.api`).

    ``det_cat`` and ``score`` are the category index and score of every detection (file order); ``groupings``
    as :func:`mec_cli.evaluation.summary.groupings_of` gives them.
    """
    order = res.order
    counted = (res.det_ig & np.uint64(1)) == 0  # bit 0: IoU threshold 0.5, area all
    tp = (res.det_tp & np.uint64(1)) != 0
    cat, s, tp = det_cat[order][counted], score[order][counted], tp[counted]
    num_cats = len(res.cat_ids)
    out: Dict = {"bins": int(bins), "iou": CALIBRATION_IOU, "groupings": {}}
    for grouping, groups in groupings.items():
        sections: Dict[str, Optional[Dict]] = {}
        for name, idx in [*groups.items(), ("all", range(num_cats))]:
            member = np.zeros(num_cats, np.bool_)
            member[np.asarray(list(idx), np.int64)] = True
            keep = member[cat]
            sections[name] = reliability(s[keep], tp[keep], bins)
        out["groupings"][grouping] = sections
    return out
