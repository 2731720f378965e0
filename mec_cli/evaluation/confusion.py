"""Which class does the detector give each object, per frequency group: is a rare object taken for a frequent class?

Object by object, not detection by detection. Every regular ground truth (not ignored, not crowd) gets one
**label**: the category of the highest-scoring detection that lies on it, i.e. with IoU >= 0.5 (the evaluation's
own IoU: box, mask or Boundary), among the detections the error analysis sees (:mod:`mec_cli.evaluation.errors`:
those that count for AP, under the protocol's detection cap and LVIS's federated rules), except

* ignored detections (matched to an ignored or crowd ground truth, or unmatched detections of a category that
  is not exhaustively annotated in the image: LVIS cannot say they are wrong), and
* a true positive of another object (it is right about that one);

ties go to the evaluator's tie order (file order within the image). No such detection: the label is **none**.
The label is the detector's top-1 answer for the object, wherever it ranks, so no score threshold is needed.

Under the LVIS federated protocol a detection of a category that the image neither annotates nor lists as
negative never counts (lvis-api drops it before matching), so it cannot be an object's label: a confusion is
only counted where the annotation verifies the wrong class is absent (negative) or present elsewhere in the
image. A wrong label is therefore a verified mistake, never an unannotated synonym.

Per grouping (LVIS frequency, groups.json) the matrix has a row per group of the objects (then 'all') and the
columns ``correct`` (the object's own category), ``as`` a category of each group (another category than the
object's), and ``none``. ``pairs`` lists the most frequent (object category -> label category) confusions over
all objects, each with the object category's count, so that a share can be read per pair.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from mec_cli.evaluation.errors import FG_IOU, DetectionErrors

TOP_PAIRS = 30  # the most frequent category confusions stored


def _row(labels: np.ndarray, cats: np.ndarray, group_of: np.ndarray, group_names: Sequence[str]) -> Dict:
    """One row of the matrix: ``labels`` (object -> label category, -1 none) of objects of categories ``cats``."""
    wrong = (labels >= 0) & (labels != cats)
    as_group = np.bincount(group_of[labels[wrong]] + 1, minlength=len(group_names) + 1)  # slot 0: ungrouped
    return {"objects": int(len(labels)), "correct": int(np.count_nonzero(labels == cats)),
            "as": {name: int(as_group[g + 1]) for g, name in enumerate(group_names)},
            "none": int(np.count_nonzero(labels < 0))}


def confusion_summary(errors: DetectionErrors, cat_ids: Sequence[int], groupings: Dict[str, Dict[str, Sequence[int]]],
                      names: Optional[Dict[int, str]] = None, top: int = TOP_PAIRS) -> Dict:
    """The ``confusion`` section of the metrics JSON (layout in :mod:`mec_cli.evaluation.api`); module docstring.

    ``groupings``: grouping -> {group: category indices}, groups ordered rare to frequent (as
    :func:`mec_cli.evaluation.summary.groupings_of`); ``names``: category id -> name, for the pairs.
    """
    objects = np.flatnonzero(errors.regular)
    cats = errors.gt_cat[objects].astype(np.int64)
    labels = errors.gt_label[objects].astype(np.int64)
    k = errors.num_cats
    out: Dict = {"iou": FG_IOU, "groupings": {}, "pairs": []}
    group_of_by: Dict[str, np.ndarray] = {}
    for grouping, groups in groupings.items():
        group_of = np.full(k, -1, np.int64)
        for g, idx in enumerate(groups.values()):
            group_of[np.asarray(list(idx), np.int64)] = g
        group_of_by[grouping] = group_of
        member = group_of[cats]
        rows = {name: _row(labels[member == g], cats[member == g], group_of, list(groups))
                for g, name in enumerate(groups)}
        rows["all"] = _row(labels, cats, group_of, list(groups))
        out["groupings"][grouping] = rows
    wrong = (labels >= 0) & (labels != cats)
    per_cat = np.bincount(cats, minlength=k)
    if wrong.any():
        keys, counts = np.unique(cats[wrong] * k + labels[wrong], return_counts=True)
        order = np.lexsort((keys, -counts))[:top]  # most objects first, then by category index
        ids = np.asarray(cat_ids, np.int64)
        for key, n in zip(keys[order].tolist(), counts[order].tolist()):
            gi, di = divmod(key, k)
            pair = {"gt": int(ids[gi]), "label": int(ids[di]), "objects": int(n), "gt_objects": int(per_cat[gi])}
            if names:
                pair.update(gt_name=names.get(int(ids[gi])), label_name=names.get(int(ids[di])))
            for grouping, groups in groupings.items():
                group_names: List[str] = list(groups)
                g_of = group_of_by[grouping]
                pair[grouping] = [group_names[g_of[gi]] if g_of[gi] >= 0 else None,
                                  group_names[g_of[di]] if g_of[di] >= 0 else None]
            out["pairs"].append(pair)
    return out
