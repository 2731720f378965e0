"""The paper's tables as pandas DataFrames (values are AP x100), plus which cell is best per column."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import pandas as pd

from mec_cli.errors import MecError
from mec_cli.reporting import paper
from mec_cli.reporting.runs import Run

ABLATION_MODES = ("mean_probs", "mean_probs_ga", "dynamic", "sparse_ga", "dynamic_ga")
CHECK = "✓"


@dataclass
class ReportTable:
    """A table to render: ``df`` holds label/mark columns and numeric value columns (x100)."""

    title: str
    df: pd.DataFrame
    value_cols: List[str]
    highlight_best: bool = True
    notes: List[str] = field(default_factory=list)

    def best_rows(self) -> Dict[str, List[int]]:
        """Row positions of the best (highest) value in each value column, ties included."""
        out = {}
        for col in self.value_cols:
            values = pd.to_numeric(self.df[col], errors="coerce")
            if self.highlight_best and values.notna().any() and not col.startswith("Δ") and not col.startswith("paper"):
                out[col] = [i for i, v in enumerate(values) if v == values.max()]
        return out


def _pct(v: Optional[float]) -> Optional[float]:
    return None if v is None else round(100.0 * v, 1)


def marks(run: Run, mode: str) -> Dict[str, str]:
    """Table 2(c) marks read from the recorded run and the mode name, never typed in."""
    return {"Exp.": CHECK if run.mec_loss else "", "DI": CHECK if mode.startswith("dynamic") else "",
            "SI": CHECK if mode.startswith("sparse") else "", "GA": CHECK if mode.endswith("_ga") else ""}


def ablation_table(runs: Sequence[Run], modes: Sequence[str] = ABLATION_MODES, reference: bool = False) -> ReportTable:
    """Table 2(c): a row per (run, mode); columns mAP^m, AP^m_r, AP^m_c, AP^m_f and box mAP."""
    rows = []
    for run in runs:
        for mode in modes:
            if mode not in run.doc["modes"]:
                continue
            row = {"run": run.label, "mode": mode, **marks(run, mode),
                   "mAP^m": _pct(run.metric(mode, "segm", "AP")), "AP^m_r": _pct(run.group_ap(mode, "segm", "rare")),
                   "AP^m_c": _pct(run.group_ap(mode, "segm", "common")), "AP^m_f": _pct(run.group_ap(mode, "segm", "frequent")),
                   "mAP": _pct(run.metric(mode, "bbox", "AP"))}
            if reference:
                ref = paper.table2c(tuple(bool(row[k]) for k in ("Exp.", "DI", "SI", "GA")))
                row["paper mAP^m"] = ref["mAPm"] if ref else None
                row["paper mAP"] = ref["AP"] if ref else None
            rows.append(row)
    if not rows:
        raise MecError(f"none of the runs has any of the modes {', '.join(modes)}")
    values = ["mAP^m", "AP^m_r", "AP^m_c", "AP^m_f", "mAP"] + (["paper mAP^m", "paper mAP"] if reference else [])
    notes = ["paper columns: Table 2(c) of the MEC paper (Cascade R50, LVIS v1 val), for the row with the same marks"] if reference else []
    return ReportTable("Ablation (Table 2(c) style)", pd.DataFrame(rows), values, notes=notes)


def _model_row(run: Run, mode: str) -> Dict:
    return {"AP": _pct(run.metric(mode, "bbox", "AP")), "APr": _pct(run.group_ap(mode, "bbox", "rare")),
            "APc": _pct(run.group_ap(mode, "bbox", "common")), "APf": _pct(run.group_ap(mode, "bbox", "frequent")),
            "mAP^m": _pct(run.metric(mode, "segm", "AP")), "AP^m_r": _pct(run.group_ap(mode, "segm", "rare")),
            "AP^m_c": _pct(run.group_ap(mode, "segm", "common")), "AP^m_f": _pct(run.group_ap(mode, "segm", "frequent"))}


VALUE_COLS = ["AP", "APr", "APc", "APf", "mAP^m", "AP^m_r", "AP^m_c", "AP^m_f"]
_PAPER_KEYS = dict(zip(VALUE_COLS, ("AP", "APr", "APc", "APf", "mAPm", "APrm", "APcm", "APfm")))


def pick_mode(run: Run, preferred: str) -> str:
    if preferred in run.doc["modes"]:
        return preferred
    if "results" in run.doc["modes"]:
        return "results"
    raise MecError(f"run {run.label} has no mode {preferred!r} (it has {', '.join(run.modes)})", run.path)


def compare_table(runs: Sequence[Run], baseline_mode: str = "mean_logits", mec_mode: str = "dynamic_ga",
                  reference: bool = False) -> ReportTable:
    """Table 1: baseline and +MEC rows per model, then the delta row."""
    if len(runs) < 2 or len(runs) % 2:
        raise MecError("compare takes runs in pairs: BASELINE MEC [BASELINE MEC ...]")
    rows = []
    for base, mec in zip(runs[::2], runs[1::2]):
        b = {"model": base.label, "MEC": "✗", "mode": pick_mode(base, baseline_mode), **_model_row(base, pick_mode(base, baseline_mode))}
        m = {"model": mec.label, "MEC": CHECK, "mode": pick_mode(mec, mec_mode), **_model_row(mec, pick_mode(mec, mec_mode))}
        d = {"model": f"Δ {mec.label}", "MEC": "", "mode": ""}
        for c in VALUE_COLS:
            d[c] = None if b[c] is None or m[c] is None else round(m[c] - b[c], 1)
        for row, run in ((b, base), (m, mec), (d, None)):
            if reference:
                ref = paper.table1(run.recipe) if run else None
                for c in ("AP", "mAP^m"):
                    row[f"paper {c}"] = ref[_PAPER_KEYS[c]] if ref else None
            rows.append(row)
    cols = VALUE_COLS + (["paper AP", "paper mAP^m"] if reference else [])
    table = ReportTable("Baseline vs MEC (Table 1 style)", pd.DataFrame(rows), cols, highlight_best=False)
    if reference:
        table.notes.append("paper columns: Table 1 of the MEC paper (LVIS v1 val) for the same recipe")
    return table


def stage_count_table(runs: Sequence[Run], baseline_mode: str = "mean_logits", mec_mode: str = "dynamic_ga",
                      reference: bool = False) -> ReportTable:
    """Table 3: baseline and MEC with 3 and 4 stages."""
    rows = []
    for run in sorted(runs, key=lambda r: (r.num_stages, r.mec_loss)):
        mode = pick_mode(run, mec_mode if run.mec_loss else baseline_mode)
        row = {"model": "MEC" if run.mec_loss else "Baseline", "run": run.label, "# of stages": run.num_stages,
               **_model_row(run, mode)}
        if reference:
            ref = paper.table3(run.mec_loss, run.num_stages)
            row["paper AP"] = ref["AP"] if ref else None
            row["paper mAP^m"] = ref["mAPm"] if ref else None
        rows.append(row)
    cols = VALUE_COLS + (["paper AP", "paper mAP^m"] if reference else [])
    table = ReportTable("Number of stages (Table 3 style)", pd.DataFrame(rows), cols)
    if reference:
        table.notes.append("paper columns: Table 3 of the MEC paper (Cascade R50, LVIS v1 val)")
    return table


def stages_frame(run: Run, iou_type: str = "segm") -> pd.DataFrame:
    """Figure 1(a) data: AP x100 of each stage (rows) for each frequency group (columns)."""
    stages = sorted((m for m in run.modes if m.startswith("stage")), key=lambda m: int(m[5:]))
    if not stages:
        raise MecError(f"run {run.label} has no per-stage modes (evaluate it with `mec eval --per-stage`)", run.path)
    groups = run.group_names()
    return pd.DataFrame([{g: _pct(run.group_ap(s, iou_type, g)) for g in groups} for s in stages],
                        index=[f"stage {s[5:]}" for s in stages])


def lambda_frame(runs: Sequence[Run], mode: str = "dynamic_ga") -> pd.DataFrame:
    """Figure 4 data: a row per lambda with box and mask AP (all and per group)."""
    rows = []
    for run in runs:
        if run.lam is None:
            raise MecError(f"run {run.label} records no lambda (is it an MEC run evaluated by `mec eval`?)", run.path)
        m = pick_mode(run, mode)
        rows.append({"lambda": run.lam, "run": run.label, **_model_row(run, m)})
    return pd.DataFrame(rows).sort_values("lambda").reset_index(drop=True)


def baseline_vs_mec(base: Run, mec: Run, baseline_mode: str = "mean_logits", mec_mode: str = "dynamic_ga",
                    iou_type: str = "segm") -> Dict[str, Dict[str, Optional[float]]]:
    """Figure 1(b) data: {run label (mode): {group: AP x100}} for a baseline and an MEC run."""
    out = {}
    for run, preferred in ((base, baseline_mode), (mec, mec_mode)):
        mode = pick_mode(run, preferred)
        out[f"{run.label} ({mode})"] = {g: _pct(run.group_ap(mode, iou_type, g)) for g in run.group_names()}
    return out
