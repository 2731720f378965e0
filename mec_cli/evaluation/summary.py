"""Metric summaries from the precision array, kept apart from display (as lvis-api's get_results).

Metric names follow lvis-api: AP, AP50, AP75, APs, APm, APl, APr, APc, APf; values are fractions in
[0, 1], or -1 where nothing could be measured (no ground truth), as the reference tools report it.
Group APs are named ``AP_<group name>`` (e.g. ``AP_rare``), one per group of groups.json.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from mec_cli.evaluation.engine import AREA_LABELS, IOU_THRS, EvalResult


def _mean_valid(s: np.ndarray) -> float:
    valid = s[s > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def summarize(res: EvalResult, frequency: Optional[Dict[int, str]] = None, groups: Optional[Dict[int, int]] = None,
              group_names: Optional[Sequence[str]] = None, per_category: bool = True) -> Dict:
    """AP metrics of one evaluation.

    Args:
        frequency: category id -> LVIS frequency ('r'/'c'/'f'); adds APr/APc/APf when given.
        groups: category id -> group index (groups.json); adds one ``AP_<name>`` per group.
    """
    p = res.precision  # (T, R, K, A)
    all_area = AREA_LABELS.index("all")
    out: Dict = {
        "AP": _mean_valid(p[..., all_area]),
        "AP50": _mean_valid(p[np.where(IOU_THRS == 0.5)[0]][..., all_area]),
        "AP75": _mean_valid(p[np.where(IOU_THRS == 0.75)[0]][..., all_area]),
        "APs": _mean_valid(p[..., AREA_LABELS.index("small")]),
        "APm": _mean_valid(p[..., AREA_LABELS.index("medium")]),
        "APl": _mean_valid(p[..., AREA_LABELS.index("large")]),
    }
    cat_ids: List[int] = [int(c) for c in res.cat_ids]
    if frequency and all(frequency.get(c) in ("r", "c", "f") for c in cat_ids):
        for f in ("r", "c", "f"):
            idx = [k for k, c in enumerate(cat_ids) if frequency[c] == f]
            out[f"AP{f}"] = _mean_valid(p[:, :, idx, all_area])
    if groups:
        names = list(group_names) if group_names else [f"g{i}" for i in range(max(groups.values()) + 1)]
        for g, name in enumerate(names):
            idx = [k for k, c in enumerate(cat_ids) if groups.get(c) == g]
            out[f"AP_{name}"] = _mean_valid(p[:, :, idx, all_area])
    if per_category:
        out["per_category"] = {str(c): _mean_valid(p[:, :, k, all_area]) for k, c in enumerate(cat_ids)}
    return out
