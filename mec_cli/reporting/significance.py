"""``mec report compare --ci``: is a run's gain over its baseline within noise? Paired bootstrap intervals over the
images (:mod:`mec_cli.evaluation.bootstrap`) for every AP column of the Table 1 comparison, per frequency group.

The columns of :func:`mec_cli.reporting.tables.compare_table` are box AP (``AP``, ``APr``.. or ``AP_<group>``) and
mask AP (``mAP^m``, ``AP^m_<group>``); each is the AP of one category set (all, or a group) of one iou type, and
its interval comes from the two runs' per-image records of that iou type (``mec eval --per-image``).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import pandas as pd

from mec_cli.errors import MecError
from mec_cli.evaluation.bootstrap import CONFIDENCE, RESAMPLES, compare_documents
from mec_cli.ops.modes import BASELINE_MODE, MEC_MODE
from mec_cli.reporting.runs import Run, resolve_grouping
from mec_cli.reporting.tables import ReportTable, group_columns, pick_mode

SIGNIFICANCE_COLUMNS = ["pair", "column", "group", "iou type", "metric", "baseline", "run", "delta", "low", "high",
                        "p not better", "resamples", "verdict"]


def _columns(runs: Sequence[Run], grouping: str) -> List[Tuple[str, str, str, str]]:
    """(table column, group, iou type, metric name) of every AP column of the comparison table."""
    out = [("AP", "all", "bbox", "AP")]
    gcols = group_columns(runs, grouping)
    names = {g: (f"AP{g}" if grouping == "lvis" else f"AP_{g}") for g in gcols}
    group_of = {"r": "rare", "c": "common", "f": "frequent"}
    out += [(f"AP{g}" if grouping == "lvis" else f"AP_{g}", group_of.get(g, g), "bbox", names[g]) for g in gcols]
    out.append(("mAP^m", "all", "segm", "AP"))
    out += [(f"AP^m_{g}", group_of.get(g, g), "segm", names[g]) for g in gcols]
    return out


def compare_intervals(runs: Sequence[Run], baseline_mode: Optional[str] = None, mec_mode: Optional[str] = None,
                      grouping: str = "auto", resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                      seed: int = 0, progress=None) -> pd.DataFrame:
    """A row per (pair of runs, AP column of the comparison): the two runs' values on the evaluation set, the
    difference and its paired bootstrap interval (x100 AP points), the fraction of resamples in which the second
    run is not better, and a plain verdict. Runs come in pairs BASELINE MEC; an iou type neither run of a pair
    stored per-image records for is left out (one that only one of them has is an error)."""
    if len(runs) < 2 or len(runs) % 2:
        raise MecError("compare takes runs in pairs: BASELINE MEC [BASELINE MEC ...]")
    grouping = resolve_grouping(runs, grouping)
    columns = _columns(runs, grouping)
    rows: List[Dict] = []
    for base, mec in zip(runs[::2], runs[1::2]):
        bm, mm = pick_mode(base, baseline_mode, BASELINE_MODE), pick_mode(mec, mec_mode, MEC_MODE)
        for iou_type in ("bbox", "segm"):
            held = [_has_records(r, m, iou_type) for r, m in ((base, bm), (mec, mm))]
            if not any(held):
                continue
            names = [metric for _, _, t, metric in columns if t == iou_type]
            ci = compare_documents(base.doc, bm, mec.doc, mm, iou_type, names, resamples, confidence, seed,
                                   (base.label, mec.label), (base.path, mec.path), progress)
            for column, group, t, metric in columns:
                m = ci["metrics"].get(metric) if t == iou_type else None
                if m is None:
                    continue
                rows.append({"pair": f"{base.label} -> {mec.label}", "column": column, "group": group, "iou type": t,
                             "metric": metric, "baseline": _pts(m["a"]), "run": _pts(m["b"]),
                             "delta": _pts(m["delta"]), "low": _pts(m["low"]), "high": _pts(m["high"]),
                             "p not better": m["p_not_better"], "resamples": m["valid"], "verdict": m["verdict"]})
    if not rows:
        raise MecError("none of the runs holds per-image data: evaluate them with `mec eval ... --per-image`")
    frame = pd.DataFrame(rows, columns=SIGNIFICANCE_COLUMNS)
    frame.attrs.update(grouping=grouping, confidence=confidence, resamples=resamples, seed=seed)
    return frame


def _has_records(run: Run, mode: str, iou_type: str) -> bool:
    metrics = run.doc["modes"].get(mode, {}).get(iou_type)
    return isinstance(metrics, dict) and "per_image" in metrics


def _pts(v: Optional[float]) -> Optional[float]:
    return None if v is None else 100.0 * v


def with_intervals(table: ReportTable, intervals: pd.DataFrame) -> ReportTable:
    """The comparison table with, under each pair's delta row, a row of its intervals ("[lo, hi]", AP points) and
    the verdict on AP and mask AP in the notes."""
    pct = f"{100 * intervals.attrs['confidence']:g}%"
    rows = []
    pairs = iter(dict.fromkeys(intervals["pair"]))
    for row in table.df.to_dict("records"):
        rows.append(row)
        if str(row.get("model", "")).startswith("Δ"):
            pair = next(pairs, None)
            part = intervals[intervals["pair"] == pair].set_index("column") if pair else intervals.iloc[:0]
            ci = {c: None for c in table.df.columns}
            ci.update(model=f"{pct} interval", MEC="", mode="")
            for c in table.value_cols:
                if c in part.index and pd.notna(part.loc[c, "low"]):
                    ci[c] = f"[{part.loc[c, 'low']:+.1f}, {part.loc[c, 'high']:+.1f}]"
            rows.append(ci)
    notes = list(table.notes)
    for pair in dict.fromkeys(intervals["pair"]):
        part = intervals[intervals["pair"] == pair]
        for _, r in part[part["group"] == "all"].iterrows():
            what = "box AP" if r["iou type"] == "bbox" else "mask AP"
            notes.append(f"{pair}, {what}: {r['verdict']}")
    notes.append(f"intervals: paired bootstrap over the images, {intervals.attrs['resamples']} resamples, seed "
                 f"{intervals.attrs['seed']}, percentile {pct} (mec_cli/evaluation/bootstrap.py); per group: --csv")
    return ReportTable(table.title + f" with {pct} intervals of the gain", pd.DataFrame(rows), table.value_cols,
                       highlight_best=False, notes=notes)
