"""The paper's tables as pandas DataFrames (values are AP x100), plus which cell is best per column.

Every table scores baselines with one mode (``baseline_mode``, :data:`mec_cli.ops.modes.BASELINE_MODE` unless
the user picks another) and groups categories one way (``grouping``, see :func:`runs.resolve_grouping`); both
are stated in the table's notes and the group columns are named after the grouping.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import pandas as pd

from mec_cli.data.groups import LVIS_FREQUENCIES, LVIS_FREQUENCY_NAMES
from mec_cli.errors import MecError
from mec_cli.ops.modes import BASELINE_MODE, MEC_MODE
from mec_cli.reporting import paper
from mec_cli.reporting.runs import Run, grouping_note, resolve_grouping

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


def ablation_modes(baseline_mode: str = BASELINE_MODE) -> List[str]:
    """Table 2(c)'s inference rows: the baseline ensemble without and with GA, then DI, SI+GA and DI+GA."""
    return [baseline_mode, f"{baseline_mode}_ga", "dynamic", "sparse_ga", MEC_MODE]


def baseline_note(baseline_mode: str) -> str:
    what = {"mean_logits": "the mean of the stage logits, then softmax: MMDetection's Cascade/HTC heads, with which "
                           "the paper's numbers were made",
            "mean_probs": "the mean of the stage probabilities, as the paper's Section 3.1 writes it",
            }.get(baseline_mode, "")
    return f"baseline = {baseline_mode}" + (f" ({what})" if what else "") + "; change it with --baseline-mode"


def group_columns(runs: Sequence[Run], grouping: str) -> List[str]:
    return list(LVIS_FREQUENCIES) if grouping == "lvis" else runs[0].groups_file_names()


def _box_col(g: str, grouping: str) -> str:
    return f"AP{g}" if grouping == "lvis" else f"AP_{g}"


def _mask_col(g: str, grouping: str) -> str:
    return f"AP^m_{g}"


def _group_of(col: str) -> str:
    return LVIS_FREQUENCY_NAMES.get(col, col)


def marks(run: Run, mode: str) -> Dict[str, str]:
    """Table 2(c) marks read from the recorded run and the mode name, never typed in."""
    return {"Exp.": CHECK if run.mec_loss else "", "DI": CHECK if mode.startswith("dynamic") else "",
            "SI": CHECK if mode.startswith("sparse") else "", "GA": CHECK if mode.endswith("_ga") else ""}


def _paper_row(run: Optional[Run], table: str, **key) -> Optional[Dict[str, float]]:
    """The paper's numbers for a run: only for the recipe and dataset a paper table reports (never for tiny runs)."""
    if run is None:
        return None
    return paper.lookup(table, run.recipe, run.dataset, **key)


def ablation_table(runs: Sequence[Run], modes: Optional[Sequence[str]] = None, reference: bool = False,
                   baseline_mode: Optional[str] = None, grouping: str = "auto") -> ReportTable:
    """Table 2(c): a row per (run, mode); mask AP overall and per group, and box mAP."""
    grouping = resolve_grouping(runs, grouping)
    baseline_mode = baseline_mode or BASELINE_MODE
    if modes:  # modes asked for: each must be some run's (none is replaced or dropped unsaid)
        missing = [m for m in modes if not any(m in run.doc["modes"] for run in runs)]
        if missing:
            have = sorted({m for run in runs for m in run.modes})
            raise MecError(f"no run has mode {missing[0]!r} (they have {', '.join(have)})")
    modes = list(modes or ablation_modes(baseline_mode))
    cols = group_columns(runs, grouping)
    rows = []
    for run in runs:
        for mode in modes:
            if mode not in run.doc["modes"]:
                continue
            row = {"run": run.label, "mode": mode, **marks(run, mode), "mAP^m": _pct(run.metric(mode, "segm", "AP"))}
            for c in cols:
                row[_mask_col(c, grouping)] = _pct(run.group_ap(mode, "segm", _group_of(c), grouping))
            row["mAP"] = _pct(run.metric(mode, "bbox", "AP"))
            if reference:
                # rows without DI or SI are the paper's only when they use the baseline's ensemble
                plain = not (row["DI"] or row["SI"])
                ref = None if plain and mode not in (baseline_mode, f"{baseline_mode}_ga") else \
                    _paper_row(run, "2c", marks=tuple(bool(row[k]) for k in ("Exp.", "DI", "SI", "GA")))
                row["paper mAP^m"] = ref["mAPm"] if ref else None
                row["paper mAP"] = ref["AP"] if ref else None
            rows.append(row)
    if not rows:
        raise MecError(f"none of the runs has any of the modes {', '.join(modes)}")
    values = ["mAP^m", *(_mask_col(c, grouping) for c in cols), "mAP"] + (["paper mAP^m",
                                                                           "paper mAP"] if reference else [])
    notes = [baseline_note(baseline_mode), grouping_note(runs, grouping)]
    if reference:
        notes.append(f"paper columns: {paper.SOURCES['2c']}, only beside runs of that recipe and dataset")
    return ReportTable("Ablation (Table 2(c) style)", pd.DataFrame(rows), values, notes=notes)


def model_columns(runs: Sequence[Run], grouping: str) -> List[str]:
    cols = group_columns(runs, grouping)
    return ["AP", *(_box_col(c, grouping) for c in cols), "mAP^m", *(_mask_col(c, grouping) for c in cols)]


def _model_row(run: Run, mode: str, grouping: str, cols: Sequence[str]) -> Dict:
    row = {"AP": _pct(run.metric(mode, "bbox", "AP")), "mAP^m": _pct(run.metric(mode, "segm", "AP"))}
    for c in cols:
        row[_box_col(c, grouping)] = _pct(run.group_ap(mode, "bbox", _group_of(c), grouping))
        row[_mask_col(c, grouping)] = _pct(run.group_ap(mode, "segm", _group_of(c), grouping))
    return row


def pick_mode(run: Run, asked: Optional[str], default: str = MEC_MODE) -> str:
    """The mode a report shows for ``run``: ``asked`` when a mode was asked for (the run must have it: no other mode
    ever stands in for it); else ``default``, or ``results`` for a results-file evaluation (its one mode)."""
    if asked is not None:
        if asked in run.doc["modes"]:
            return asked
        raise MecError(f"run {run.label} has no mode {asked!r} (it has {', '.join(run.modes)})", run.path)
    if default in run.doc["modes"]:
        return default
    if "results" in run.doc["modes"]:
        return "results"
    raise MecError(f"run {run.label} has no mode {default!r} (it has {', '.join(run.modes)}); choose one", run.path)


def compare_table(runs: Sequence[Run], baseline_mode: Optional[str] = None, mec_mode: Optional[str] = None,
                  reference: bool = False, grouping: str = "auto") -> ReportTable:
    """Table 1: baseline and +MEC rows per model, then the delta row."""
    if len(runs) < 2 or len(runs) % 2:
        raise MecError("compare takes runs in pairs: BASELINE MEC [BASELINE MEC ...]")
    grouping = resolve_grouping(runs, grouping)
    gcols = group_columns(runs, grouping)
    value_cols = model_columns(runs, grouping)
    rows = []
    for base, mec in zip(runs[::2], runs[1::2]):
        bm, mm = pick_mode(base, baseline_mode, BASELINE_MODE), pick_mode(mec, mec_mode, MEC_MODE)
        b = {"model": base.label, "MEC": "✗", "mode": bm, **_model_row(base, bm, grouping, gcols)}
        m = {"model": mec.label, "MEC": CHECK, "mode": mm, **_model_row(mec, mm, grouping, gcols)}
        d = {"model": f"Δ {mec.label}", "MEC": "", "mode": ""}
        for c in value_cols:
            d[c] = None if b[c] is None or m[c] is None else round(m[c] - b[c], 1)
        for row, run in ((b, base), (m, mec), (d, None)):
            if reference:
                ref = _paper_row(run, "1")
                row["paper AP"] = ref["AP"] if ref else None
                row["paper mAP^m"] = ref["mAPm"] if ref else None
            rows.append(row)
    cols = value_cols + (["paper AP", "paper mAP^m"] if reference else [])
    table = ReportTable("Baseline vs MEC (Table 1 style)", pd.DataFrame(rows), cols, highlight_best=False,
                        notes=[baseline_note(baseline_mode or BASELINE_MODE), grouping_note(runs, grouping)])
    if reference:
        table.notes.append(f"paper columns: {paper.SOURCES['1']} (LVIS v1) or {paper.SOURCES['2b']} (COCO-LT), "
                           "only beside runs of the same recipe and dataset")
    return table


def stage_count_table(runs: Sequence[Run], baseline_mode: Optional[str] = None, mec_mode: Optional[str] = None,
                      reference: bool = False, grouping: str = "auto") -> ReportTable:
    """Table 3: baseline and MEC with 3 and 4 stages."""
    grouping = resolve_grouping(runs, grouping)
    gcols = group_columns(runs, grouping)
    rows = []
    for run in sorted(runs, key=lambda r: (r.num_stages, r.mec_loss)):
        mode = pick_mode(run, mec_mode, MEC_MODE) if run.mec_loss else pick_mode(run, baseline_mode, BASELINE_MODE)
        row = {"model": "MEC" if run.mec_loss else "Baseline", "run": run.label, "# of stages": run.num_stages,
               "mode": mode, **_model_row(run, mode, grouping, gcols)}
        if reference:
            ref = _paper_row(run, "3")
            row["paper AP"] = ref["AP"] if ref else None
            row["paper mAP^m"] = ref["mAPm"] if ref else None
        rows.append(row)
    cols = model_columns(runs, grouping) + (["paper AP", "paper mAP^m"] if reference else [])
    table = ReportTable("Number of stages (Table 3 style)", pd.DataFrame(rows), cols,
                        notes=[baseline_note(baseline_mode or BASELINE_MODE), grouping_note(runs, grouping)])
    if reference:
        table.notes.append(f"paper columns: {paper.SOURCES['3']}, only beside runs of those recipes")
    return table


def stages_frame(run: Run, iou_type: str = "segm", grouping: str = "auto") -> pd.DataFrame:
    """Figure 1(a) data: AP x100 of each stage (rows) for each group (columns) of the resolved grouping.

    ``frame.attrs['grouping']`` records the grouping, so figures and CSVs can name it.
    """
    stages = sorted((m for m in run.modes if m.startswith("stage") and m[5:].isdigit()), key=lambda m: int(m[5:]))
    if not stages:
        raise MecError(f"run {run.label} has no per-stage modes (evaluate it with `mec eval --per-stage`)", run.path)
    if not any(isinstance(run.doc["modes"][s].get(iou_type), dict) for s in stages):
        held = sorted({t for s in stages for t in run.doc["modes"][s] if t != "stage_weights"})
        raise MecError(f"run {run.label} has no {iou_type} metrics per stage (it has {', '.join(held)})", run.path)
    grouping = resolve_grouping([run], grouping)
    groups = run.group_names(grouping)
    frame = pd.DataFrame([{g: _pct(run.group_ap(s, iou_type, g, grouping)) for g in groups} for s in stages],
                         index=[f"stage {s[5:]}" for s in stages])
    frame.attrs["grouping"] = grouping
    return frame


def lambda_frame(runs: Sequence[Run], mode: Optional[str] = None, grouping: str = "auto") -> pd.DataFrame:
    """Figure 4 data: a row per lambda with box and mask AP (all and per group)."""
    grouping = resolve_grouping(runs, grouping)
    gcols = group_columns(runs, grouping)
    rows = []
    for run in runs:
        if run.lam is None:
            raise MecError(f"run {run.label} records no lambda (is it an MEC run evaluated by `mec eval`?)", run.path)
        m = pick_mode(run, mode, MEC_MODE)
        rows.append({"lambda": run.lam, "run": run.label, **_model_row(run, m, grouping, gcols)})
    frame = pd.DataFrame(rows).sort_values("lambda").reset_index(drop=True)
    frame.attrs["grouping"] = grouping
    frame.attrs["groups"] = [(_box_col(c, grouping), _mask_col(c, grouping), _group_of(c)) for c in gcols]
    return frame


def baseline_vs_mec(base: Run, mec: Run, baseline_mode: Optional[str] = None, mec_mode: Optional[str] = None,
                    iou_type: str = "segm", grouping: str = "auto") -> Dict[str, Dict[str, Optional[float]]]:
    """Figure 1(b) data: {run label (mode): {group: AP x100}} for a baseline and an MEC run."""
    grouping = resolve_grouping([base, mec], grouping)
    out = {}
    for run, asked, default in ((base, baseline_mode, BASELINE_MODE), (mec, mec_mode, MEC_MODE)):
        mode = pick_mode(run, asked, default)
        out[f"{run.label} ({mode})"] = {g: _pct(run.group_ap(mode, iou_type, g,
                                                             grouping)) for g in run.group_names(grouping)}
    return out
