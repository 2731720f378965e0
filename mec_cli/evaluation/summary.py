"""Metric summaries from the precision array, kept apart from display (as lvis-api's get_results).

Metric names follow lvis-api: AP, AP50, AP75, APs, APm, APl, APr, APc, APf; values are fractions in
[0, 1], or -1 where nothing could be measured (no ground truth), as the reference tools report it.
Group APs are named ``AP_<group name>`` (e.g. ``AP_rare``), one per group of groups.json.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from mec_cli.evaluation import kernels
from mec_cli.evaluation.engine import AREA_LABELS, IOU_THRS, EvalResult


def _mean_valid(s: np.ndarray) -> float:
    valid = s[s > -1]
    return float(np.mean(valid)) if valid.size else -1.0


class _Means:
    """Means of valid precisions over slices of one precision array, each bit-identical to the reference tools'
    ``np.mean(s[s > -1])`` of the slice (see ``kernels.mean_valid``): every area range's and every category set's
    (at area 'all') in one pass."""

    def __init__(self, res: EvalResult, sets: Dict[str, List[int]]):
        self.p, self.kernels, self.res = res.precision, kernels, res
        num_thr, num_cats, num_area = self.p.shape[0], self.p.shape[2], self.p.shape[3]
        # each category is in at most one set of a grouping: one column per grouping (LVIS frequency, groups.json)
        columns: List[Dict[int, int]] = []
        for s, idx in enumerate(sets.values()):
            column = next((c for c in columns if not set(c) & set(idx)), None)
            if column is None:
                column = {}
                columns.append(column)
            column.update({int(k): s for k in idx})
        set_of = np.full((num_cats, max(1, len(columns))), -1, np.int64)
        for g, column in enumerate(columns):
            set_of[list(column), g] = list(column.values())
        self.names = list(sets)
        self.area, self.area_t = np.empty(num_area), np.empty((num_area, num_thr))
        self.set, self.set_t = np.empty(len(sets)), np.empty((len(sets), num_thr))
        kernels.area_means(self.p, self.area, self.area_t, set_of, AREA_LABELS.index("all"), self.set, self.set_t)

    def categories(self, name: str):
        """(mean over all thresholds, [mean at each threshold]) of the set ``name`` (area 'all')."""
        s = self.names.index(name)
        return float(self.set[s]), self.set_t[s].tolist()

    def per_category(self, area: int) -> np.ndarray:
        if self.res.category_ap is not None and area == AREA_LABELS.index("all"):
            return self.res.category_ap
        out = np.empty(self.p.shape[2])
        self.kernels.category_means(self.p, area, out)
        return out


def category_sets(cat_ids: Sequence[int], frequency: Optional[Dict[int, str]] = None,
                  groups: Optional[Dict[int, int]] = None,
                  group_names: Optional[Sequence[str]] = None) -> Dict[str, List[int]]:
    """The category positions each group metric averages over: ``APr``/``APc``/``APf`` (LVIS frequency, when every
    category has one) and ``AP_<name>`` (groups.json)."""
    cat_ids = [int(c) for c in cat_ids]
    sets: Dict[str, List[int]] = {}
    if frequency and all(frequency.get(c) in ("r", "c", "f") for c in cat_ids):
        for f in ("r", "c", "f"):
            sets[f"AP{f}"] = [k for k, c in enumerate(cat_ids) if frequency[c] == f]
    if groups:
        names = list(group_names) if group_names else [f"g{i}" for i in range(max(groups.values()) + 1)]
        for g, name in enumerate(names):
            sets[f"AP_{name}"] = [k for k, c in enumerate(cat_ids) if groups.get(c) == g]
    return sets


LVIS_GROUPS = {"r": "rare", "c": "common", "f": "frequent"}


def groupings_of(cat_ids: Sequence[int], frequency: Optional[Dict[int, str]] = None,
                 groups: Optional[Dict[int, int]] = None,
                 group_names: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, List[int]]]:
    """The category positions of every group, per grouping, groups ordered rare to frequent: ``'lvis'``
    (rare/common/frequent, when every category has an LVIS frequency) and ``'groups'`` (groups.json), the same
    sets as :func:`category_sets`, named for the study sections of the metrics JSON."""
    sets = category_sets(cat_ids, frequency, groups, group_names)
    out: Dict[str, Dict[str, List[int]]] = {}
    if "APr" in sets:
        out["lvis"] = {name: sets[f"AP{f}"] for f, name in LVIS_GROUPS.items()}
    names = [k[3:] for k in sets if k.startswith("AP_")]
    if names:
        out["groups"] = {name: sets[f"AP_{name}"] for name in names}
    return out


def summarize(res: EvalResult, frequency: Optional[Dict[int, str]] = None, groups: Optional[Dict[int, int]] = None,
              group_names: Optional[Sequence[str]] = None, per_category: bool = True, iou_profile: bool = True) -> Dict:
    """AP metrics of one evaluation.

    Args:
        frequency: category id -> LVIS frequency ('r'/'c'/'f'); adds APr/APc/APf when given.
        groups: category id -> group index (groups.json); adds one ``AP_<name>`` per group.
        iou_profile: add ``AP_per_iou``: for ``AP`` and every group metric, the AP at each IoU threshold
            (``IOU_THRS``, 0.50:0.05:0.95), sliced from the same precision array.
    """
    sets = category_sets(res.cat_ids, frequency, groups, group_names)
    mean = _Means(res, sets)
    all_area = AREA_LABELS.index("all")
    per_iou = mean.area_t[all_area].tolist()
    out: Dict = {
        "AP": float(mean.area[all_area]),
        "AP50": per_iou[int(np.flatnonzero(IOU_THRS == 0.5)[0])],
        "AP75": per_iou[int(np.flatnonzero(IOU_THRS == 0.75)[0])],
        "APs": float(mean.area[AREA_LABELS.index("small")]),
        "APm": float(mean.area[AREA_LABELS.index("medium")]),
        "APl": float(mean.area[AREA_LABELS.index("large")]),
    }
    profile = {"AP": per_iou}
    for name in sets:
        out[name], profile[name] = mean.categories(name)
    if iou_profile:
        out["AP_per_iou"] = profile
    if per_category:
        out["per_category"] = dict(zip(map(str, res.cat_ids.tolist()), mean.per_category(all_area).tolist()))
    return out


FIXED_KEYS = ("AP",)  # Fixed AP reports the AP-type metrics only: AP_fixed and every group's


def fixed_metrics(res: EvalResult, frequency=None, groups=None, group_names=None) -> Dict[str, float]:
    """``AP_fixed``, ``APr_fixed``..., ``AP_<group>_fixed`` of a Fixed-AP evaluation (see ``evaluate``)."""
    p = res.precision
    all_area = AREA_LABELS.index("all")
    out = {"AP_fixed": _mean_valid(p[..., all_area])}
    for name, idx in category_sets(res.cat_ids, frequency, groups, group_names).items():
        out[f"{name}_fixed"] = _mean_valid(p[:, :, idx, all_area])
    return out


def stage_weight_summary(det_cat: np.ndarray, weights: np.ndarray, groupings: Dict[str, Dict[str, List[int]]],
                         num_cats: int) -> Dict:
    """The dynamic ensemble's mean stage weights per group (``modes.<mode>.stage_weights`` of the metrics JSON).

    Args:
        det_cat: (N,) category index (position in the annotation file's sorted category ids) of each detection.
        weights: (N, K) the weight w^k (eq. 5) each of the K stages had in the detection's class.
        groupings: as :func:`groupings_of`; every grouping also gets "all".

    Returns {"stages": K, "groupings": {grouping: {group: {"mean": [w_1..w_K] or None, "detections": n}}}}.
    """
    weights = np.asarray(weights, np.float64).reshape(len(det_cat), -1)
    out: Dict = {"stages": int(weights.shape[1]), "groupings": {}}
    for grouping, groups in groupings.items():
        sections = {}
        for name, idx in [*groups.items(), ("all", range(num_cats))]:
            member = np.zeros(num_cats, np.bool_)
            member[np.asarray(list(idx), np.int64)] = True
            w = weights[member[det_cat]]
            sections[name] = {"mean": [float(v) for v in w.mean(axis=0)] if len(w) else None, "detections": int(len(w))}
        out["groupings"][grouping] = sections
    return out
