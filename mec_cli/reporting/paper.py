"""Published numbers of the MEC paper (../shared/paper, LVIS v1 val), for `--reference paper`.

Values are AP x100 exactly as printed in the paper. Keys: box ``AP APr APc APf`` and mask
``mAPm APrm APcm APfm``.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

_T1_COLS = ("AP", "APr", "APc", "APf", "mAPm", "APrm", "APcm", "APfm")
_T1 = {  # Table 1: (recipe name) -> values
    "cascade_r50_baseline": (22.1, 1.4, 19.6, 34.3, 19.7, 1.0, 18.0, 29.9),
    "cascade_r50": (25.0, 5.5, 24.5, 34.1, 22.3, 5.4, 22.3, 29.8),
    "cascade_r101_baseline": (24.2, 1.9, 22.9, 35.6, 21.6, 1.8, 20.8, 31.1),
    "cascade_r101": (26.4, 6.4, 26.0, 35.5, 23.5, 6.1, 23.6, 31.1),
    "htc_r50_baseline": (23.3, 1.4, 20.3, 35.2, 20.4, 1.4, 19.3, 31.3),
    "htc_r50": (25.6, 6.1, 23.9, 35.1, 22.8, 5.7, 22.8, 31.4),
    "htc_r101_baseline": (24.2, 1.9, 21.9, 36.7, 22.1, 1.5, 20.7, 32.7),
    "htc_r101": (27.1, 6.8, 26.5, 36.6, 24.9, 6.6, 25.1, 32.7),
    "cascade_r50_seesaw_baseline": (24.3, 2.9, 23.1, 33.5, 21.4, 2.5, 21.7, 29.6),
    "cascade_r50_seesaw": (25.4, 6.4, 24.5, 34.2, 22.3, 5.1, 22.7, 30.2),
    "cascade_r50_cos_baseline": (25.6, 7.1, 24.5, 34.8, 22.6, 6.5, 22.0, 30.3),
    "cascade_r50_cos": (28.9, 18.5, 28.2, 34.1, 25.9, 17.2, 25.9, 29.6),
}
TABLE1 = {name: dict(zip(_T1_COLS, vals)) for name, vals in _T1.items()}

# Table 2(c), Cascade R50: (Exp., DI, SI, GA) -> mask mAP, APr, APc, APf and box mAP
_T2C_COLS = ("mAPm", "APrm", "APcm", "APfm", "AP")
TABLE2C = {
    (False, False, False, False): dict(zip(_T2C_COLS, (19.7, 1.0, 18.0, 29.9, 22.1))),
    (False, True, False, True): dict(zip(_T2C_COLS, (21.0, 3.7, 19.6, 30.1, 23.5))),
    (True, False, False, False): dict(zip(_T2C_COLS, (20.5, 1.4, 19.6, 29.9, 22.9))),
    (True, True, False, False): dict(zip(_T2C_COLS, (21.5, 3.6, 21.1, 29.8, 24.0))),
    (True, False, False, True): dict(zip(_T2C_COLS, (21.3, 2.9, 20.6, 30.2, 23.9))),
    (True, False, True, True): dict(zip(_T2C_COLS, (21.7, 5.2, 21.9, 28.7, 24.2))),
    (True, True, False, True): dict(zip(_T2C_COLS, (22.3, 5.4, 22.3, 29.8, 25.0))),
}

# Table 3, Cascade R50: (MEC, stages) -> values
TABLE3 = {
    (False, 3): dict(zip(_T1_COLS, (22.1, 1.4, 19.6, 34.3, 19.7, 1.0, 18.0, 29.9))),
    (True, 3): dict(zip(_T1_COLS, (25.0, 5.5, 24.5, 34.1, 22.3, 5.4, 22.3, 29.8))),
    (False, 4): dict(zip(_T1_COLS, (22.3, 1.1, 19.6, 34.6, 19.8, 1.0, 18.1, 29.9))),
    (True, 4): dict(zip(_T1_COLS, (26.1, 6.9, 25.8, 34.9, 23.2, 6.7, 23.3, 30.2))),
}


# Table 2(b), COCO-LT (Cascade R50 baseline and MEC): mask mAP, AP50, AP75, APr, APc, APf (mask) and box mAP
_T2B_COLS = ("mAPm", "AP50m", "AP75m", "APrm", "APcm", "APfm", "AP")
TABLE2B = {
    "cascade_r50_baseline": dict(zip(_T2B_COLS, (14.0, 24.5, 14.3, 3.8, 17.7, 20.0, 16.7))),
    "cascade_r50": dict(zip(_T2B_COLS, (14.5, 24.9, 14.5, 5.0, 18.0, 19.8, 17.1))),
}

SOURCES = {"1": "Table 1 of the MEC paper (LVIS v1 val)", "2b": "Table 2(b) of the MEC paper (COCO-LT)",
           "2c": "Table 2(c) of the MEC paper (Cascade R50, LVIS v1 val)",
           "3": "Table 3 of the MEC paper (Cascade R50 with 3 and 4 stages, LVIS v1 val)"}
_T2C_RECIPES = {"cascade_r50_baseline": False, "cascade_r50": True}  # recipe -> its Exp. mark
_T3_RECIPES = {"cascade_r50_baseline": (False, 3), "cascade_r50": (True, 3), "cascade_r50_4stage_baseline": (False, 4),
               "cascade_r50_4stage": (True, 4)}


def lookup(table: str, recipe: Optional[str], dataset: Optional[str] = "lvis_v1",
           marks: Optional[Tuple[bool, bool, bool, bool]] = None) -> Optional[Dict[str, float]]:
    """The paper's numbers for a run of ``recipe`` evaluated on ``dataset``, or None when the paper has none.

    Numbers are keyed by the recipe they were measured with (and the dataset: LVIS v1 for Tables 1, 2(c)
    and 3; COCO-LT for Table 2(b)), never by ablation marks alone, so a tiny or custom run gets none.
    ``table`` is '1' (Table 1, or 2(b) for a COCO-LT run), '2c' (needs ``marks``: Exp., DI, SI, GA) or '3'.
    """
    recipe, dataset = recipe or "", dataset or "lvis_v1"
    if dataset == "coco_lt":
        return TABLE2B.get(recipe) if table == "1" else None
    if dataset != "lvis_v1":
        return None
    if table == "1":
        return TABLE1.get(recipe)
    if table == "2c":
        if recipe not in _T2C_RECIPES or marks is None or bool(marks[0]) != _T2C_RECIPES[recipe]:
            return None
        return TABLE2C.get(tuple(bool(m) for m in marks))
    if table == "3":
        return TABLE3.get(_T3_RECIPES[recipe]) if recipe in _T3_RECIPES else None
    raise ValueError(f"unknown table {table!r}")
