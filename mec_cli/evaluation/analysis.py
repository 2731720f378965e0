"""``mec eval --analysis``: the study sections of one evaluation, from one replay of its matching.

The error analysis (:mod:`mec_cli.evaluation.errors`) replays the evaluator's matching once against every ground
truth of each image; its result gives the TIDE-style errors, the object labels of the confusion matrix
(:mod:`mec_cli.evaluation.confusion`) and the matched IoUs of oLRP (:mod:`mec_cli.evaluation.lrp`). Calibration
(:mod:`mec_cli.evaluation.calibration`) reads the evaluation alone.
"""
from __future__ import annotations

from typing import Dict, List

from mec_cli.evaluation.calibration import calibration_summary
from mec_cli.evaluation.confusion import confusion_summary
from mec_cli.evaluation.engine import Detections, EvalResult, GroundTruth
from mec_cli.evaluation.errors import analyse_errors, error_summary
from mec_cli.evaluation.lrp import category_olrp, lrp_summary

ANALYSIS_KEYS = ("errors", "calibration", "confusion", "lrp")  # the sections, in modes.<mode>.<iou type>


def analysis_sections(gt: GroundTruth, dets: Detections, res: EvalResult, groupings: Dict[str, Dict[str, List[int]]],
                      dilation_ratio: float = 0.02) -> Dict:
    """``errors``, ``calibration``, ``confusion`` and ``lrp`` of an evaluation ``res`` of ``dets`` (layouts in
    :mod:`mec_cli.evaluation.api`); ``groupings`` as :func:`mec_cli.evaluation.summary.groupings_of`."""
    errors = analyse_errors(gt, dets, res, dilation_ratio)
    names = {int(c.id): c.name for c in gt.dataset.categories}
    return {"errors": error_summary(errors, groupings),
            "calibration": calibration_summary(res, gt.cats.lookup(dets.category_id), dets.score, groupings),
            "confusion": confusion_summary(errors, res.cat_ids.tolist(), groupings, names),
            "lrp": lrp_summary(category_olrp(errors, gt.gt_npig[:, 0]), res.cat_ids.tolist(), groupings)}
